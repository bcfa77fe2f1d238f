# SPDX-License-Identifier: MIT
"""bigfilefs.server — serve bigfiles from Python: a block server.

A bigfilefs mount usually keeps its blocks in a database. Mounted on a
*block server* instead, it asks a program for them: the program computes
them, reads them from its own format, stores the blocks a writeout commits.
Processes map and read the files of such a mount as any other bigfilefs
file; the daemon keeps the page cache, the uncommitted changes and the
ioctls (see bigfilefs(8), ioctl_bigfile(2)).

This module is that program's side, in the model of wendelin.core's
BigFile: subclass BigFile, give it loadblk() (and storeblk() for files that
can be written), and serve() a dict of them::

    import numpy as np
    from bigfilefs.server import BigFile, serve

    class Squares(BigFile):
        def loadblk(self, blk, buf):              # fill one block
            a = np.frombuffer(buf, dtype="<u8")
            i = np.arange(blk * a.size, (blk + 1) * a.size, dtype="<u8")
            np.multiply(i, i, out=a)

    serve({"squares": Squares(size=1 << 30)})

and mount it::

    bigfilefs -o ro "exec:python3 squares.py" /mnt/squares

The daemon starts the script as its child (exec:), and restarts it should
it die; serve(files, path=...) instead listens on a Unix socket for a
daemon mounted with unix:PATH. numpy is optional: buf is a memoryview.

Writes: a writeout of a file is a transaction. By default (BigFile.staged)
its stores are kept aside in memory and handed to storeblk() when the
writeout commits, in block order, then commit() is called: loads never see
them before, and an aborted writeout leaves nothing. A file that must also
survive a crash in the middle of its commit (or that does not want to keep
a writeout in memory) sets staged = False and overrides begin(), storeblk(),
truncate(), commit() and abort() to make its commits atomic itself; see
examples/npy_store.py.

The protocol is bigfilefs-protocol(7). A server serves one mount at a time
and must be the only writer of its files while the mount lives (the daemon
caches what it loaded).
"""

import array
import bisect
import errno
import mmap
import os
import select
import socket
import struct
import sys
import time
import traceback

__all__ = ["BigFile", "serve", "PROTOCOL_VERSION", "BLKSIZE_DEFAULT"]

#: The version of bigfilefs-protocol(7) this module speaks.
PROTOCOL_VERSION = 1

#: The block size a BigFile gets when none is given: 2 MiB.
BLKSIZE_DEFAULT = 2 << 20

_BLKSIZE_MIN, _BLKSIZE_MAX = 4096, 64 << 20
_SIZE_MAX = 1 << 62
_MSG_MAX = 65536
_FD_ENV = "BIGFILEFS_SERVER_FD"

# operations (the header's op; a reply's is op | _REPLY)
(_HELLO, _LIST, _LOOKUP, _GETINFO, _CREATE, _UNLINK, _RENAME, _SETATTR, _SETBLKSIZE, _OPEN,
 _CLOSE, _LOAD, _BEGIN, _STORE, _TRUNCATE, _COMMIT, _ABORT, _SEEKDATA, _STORED) = range(1, 20)
_REPLY = 0x8000
_F_ERROR, _F_MORE = 1, 2
_HELLO_RESUME = 1
_HOLE = 1
_COMMIT_SIZE = 1
_SET_MODE, _SET_UID, _SET_GID, _SET_MTIME = 1, 2, 4, 8
_NOREPLACE, _EXCHANGE = 1, 2

_HDR = struct.Struct("<HHI")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_U64U64 = struct.Struct("<QQ")
_LOADREQ = struct.Struct("<QQQI")
_STOREREQ = struct.Struct("<QQQII")
_COMMITREQ = struct.Struct("<QIQ")
_SETATTRREQ = struct.Struct("<QIIIIq")
_CREATEREQ = struct.Struct("<IIIIQ")
_INFO = struct.Struct("<QQqqIIII")
_HELLOREQ = struct.Struct("<4sHHIQ")
_OPENREP = struct.Struct("<QI")


def _now():
    return time.time_ns()


class BigFile:
    """One bigfile served to a bigfilefs mount: a size, fixed-size blocks.

    Subclass it and implement loadblk(); implement storeblk() too for a
    file that the mount may change (without it the file is read-only:
    mode 0444, and a writeout fails with EROFS).

    Attributes (the server reads them, and keeps them up to date: set them
    in __init__ or before serve(), not while serving):
      size      committed size in bytes
      blksize   block size: a power of two, 4096 to 64 MiB
      mode      permission bits; uid, gid: the owner (default: the
                server's)
      mtime_ns, ctime_ns   times of the last change of content / of
                anything (ns since the epoch)
      id        a number >= 1 naming the file for the mount's life, also
                across restarts of the server: None lets serve() give one
                (in name order at its start, then counting up)
      name      the file's name, set by serve(); None once it has none
      staged    see the class attribute

    Errors: raise OSError(errno.X, ...) from any method: the request fails
    with that errno (a read gets EIO, a writeout its errno). Any other
    exception is printed to stderr (the daemon's log) and gives EIO.
    """

    #: Keep the stores of a writeout aside and give them to storeblk() at
    #: commit (True), or call storeblk() as they come (False: the file then
    #: keeps them invisible to loadblk() until commit() itself).
    staged = True

    def __init__(self, size=0, blksize=BLKSIZE_DEFAULT, mode=None, uid=None, gid=None,
                 mtime_ns=None, id=None):
        if not (_BLKSIZE_MIN <= blksize <= _BLKSIZE_MAX and blksize & (blksize - 1) == 0):
            raise ValueError("blksize must be a power of two from 4096 to 64 MiB")
        if not 0 <= size <= _SIZE_MAX:
            raise ValueError("size must be from 0 to 2**62")
        self.size = size
        self.blksize = blksize
        if mode is None:
            mode = 0o644 if type(self).storeblk is not BigFile.storeblk else 0o444
        self.mode = mode & 0o7777
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.mtime_ns = self.ctime_ns = _now() if mtime_ns is None else mtime_ns
        self.id = id
        self.name = None

    def loadblk(self, blk, buf):
        """Fill buf with the committed content of block blk.

        buf is a writable memoryview of blksize bytes (in memory shared
        with the daemon): write every byte of it (its content on entry is
        whatever was there before). numpy: a = np.frombuffer(buf, dtype).
        Do not keep buf, nor an array made from it, after returning.
        """
        raise NotImplementedError

    def storeblk(self, blk, buf):
        """Store buf, a read-only memoryview of blksize bytes, as the new
        content of block blk (copy what you keep: buf is reused).

        staged files: called at commit, for each stored block in order,
        before commit(). Others: as the writeout stores it, between
        begin() and commit() or abort(); loadblk() must not see it before
        commit().
        """
        raise OSError(errno.EROFS, "read-only bigfile")

    def begin(self):
        """A writeout of the file starts (staged files: its commit)."""

    def truncate(self, nblocks):
        """Every block from nblocks on reads as zeros once committed.

        Called before the stores (staged: at commit, before storeblk()).
        The default stores a zero block over each block in
        [nblocks, the committed size's end): right for any storeblk().
        """
        end = -(-self.size // self.blksize)
        zeros = memoryview(bytes(self.blksize))
        for blk in range(nblocks, end):
            self.storeblk(blk, zeros)

    def commit(self, size):
        """Make the writeout's stores (and truncate) the committed content,
        all at once and durably; size is the new size (None: unchanged).
        mtime_ns and ctime_ns are already the commit's time."""

    def abort(self):
        """Forget the writeout's stores (not staged files: their own)."""

    def stored(self):
        """The sorted block numbers whose committed content is not all
        zeros (a zero block may be in it; a block with data never is left
        out), for SEEK_DATA and st_blocks; None (the default): unknown,
        every block below the size counts as stored."""
        return None

    def delete(self):
        """The file is gone: it has no name and is not open. Free what it
        holds."""


class _Error(Exception):
    """A request's failure with an errno."""

    def __init__(self, err):
        super().__init__(err)
        self.err = err


class _Tx:
    """A staged writeout: its stores (None: a hole) and its truncate."""

    def __init__(self):
        self.stores = {}
        self.trunc = None


class _Server:
    """The protocol: one connection at a time, answered in order."""

    def __init__(self, files, create, changed, name):
        self.by_id = {}
        self.by_name = {}
        self.create_fn = create
        self.changed_fn = changed
        self.name = (name or "bigfilefs.server (python %d.%d)" % sys.version_info[:2]).encode()
        self.opened = set()
        self.tx = {}
        self.area = None
        self.area_mv = None
        self.warned_buf = False
        items = files.items() if hasattr(files, "items") else files
        pending = []
        for fname, f in sorted(items, key=lambda kv: (kv[0] is None, kv[0] or "")):
            if not isinstance(f, BigFile):
                raise TypeError("%r is not a BigFile" % (f,))
            f.name = fname
            if fname is not None:  # None: a nameless file (kept for a resuming daemon)
                _check_name(fname)
                if fname in self.by_name:
                    raise ValueError("two files are named %r" % (fname,))
                self.by_name[fname] = f
            if f.id is None:
                pending.append(f)
            elif f.id in self.by_id or f.id < 1:
                raise ValueError("two files have the id %r" % (f.id,))
            else:
                self.by_id[f.id] = f
        self.next_id = max(self.by_id, default=0) + 1
        for f in pending:
            self._give_id(f)
        self.ops = {
            _LIST: self._list, _LOOKUP: self._lookup, _GETINFO: self._getinfo,
            _CREATE: self._create, _UNLINK: self._unlink, _RENAME: self._rename,
            _SETATTR: self._setattr, _SETBLKSIZE: self._setblksize, _OPEN: self._open,
            _CLOSE: self._close, _LOAD: self._load, _BEGIN: self._begin, _STORE: self._store,
            _TRUNCATE: self._truncate, _COMMIT: self._commit, _ABORT: self._abort,
            _SEEKDATA: self._seekdata, _STORED: self._stored,
        }

    def _give_id(self, f):
        f.id = self.next_id
        self.next_id += 1
        self.by_id[f.id] = f

    # ---- helpers -------------------------------------------------------

    def _file(self, fid, opened=False):
        f = self.by_id.get(fid)
        if f is None:
            raise _Error(errno.ENOENT)
        if opened and fid not in self.opened:
            raise _Error(errno.EBADF)
        return f

    def _changed(self):
        if self.changed_fn:
            self.changed_fn()

    def _delete(self, f):
        """f lost its name: delete it unless it is open."""
        if f.id in self.opened:
            return
        del self.by_id[f.id]
        f.delete()

    def _buf(self, off, length, blksize):
        if length != blksize or off < 0 or off + length > len(self.area):
            raise _Error(errno.EINVAL)
        return self.area_mv[off:off + length]

    def _release(self, buf):
        try:
            buf.release()
        except BufferError:
            if not self.warned_buf:
                print("bigfilefs.server: a loadblk() or storeblk() kept its buffer (an array "
                      "made from it?): the memory is reused", file=sys.stderr)
                self.warned_buf = True

    @staticmethod
    def _info(f):
        name = (f.name or "").encode("utf-8", "surrogateescape")
        return _INFO.pack(f.id, f.size, f.mtime_ns, f.ctime_ns, f.blksize, f.mode, f.uid,
                          f.gid) + struct.pack("<H", len(name)) + name

    # ---- the namespace -------------------------------------------------

    def _list(self, body):
        chunks, cur, count = [], [], 0
        size = 4
        for fname in sorted(self.by_name):
            rec = self._info(self.by_name[fname])
            if size + len(rec) > _MSG_MAX - 8:
                chunks.append(_U32.pack(count) + b"".join(cur))
                cur, count, size = [], 0, 4
            cur.append(rec)
            count += 1
            size += len(rec)
        chunks.append(_U32.pack(count) + b"".join(cur))
        return chunks

    def _lookup(self, body):
        f = self.by_name.get(_str(body, 0)[0])
        if f is None:
            raise _Error(errno.ENOENT)
        return self._info(f)

    def _getinfo(self, body):
        return self._info(self._file(_U64.unpack_from(body)[0]))

    def _create(self, body):
        blksize, mode, uid, gid, size = _CREATEREQ.unpack_from(body)
        fname = _str(body, _CREATEREQ.size)[0]
        if fname in self.by_name:
            raise _Error(errno.EEXIST)
        if self.create_fn is None:
            raise _Error(errno.EROFS)
        f = self.create_fn(fname, blksize, size, mode & 0o7777, uid, gid)
        f.name = fname
        f.blksize, f.size, f.mode, f.uid, f.gid = blksize, size, mode & 0o7777, uid, gid
        f.mtime_ns = f.ctime_ns = _now()
        if f.id is None or f.id in self.by_id:
            f.id = None
            self._give_id(f)
        else:
            self.by_id[f.id] = f
            self.next_id = max(self.next_id, f.id + 1)
        self.by_name[fname] = f
        self._changed()
        return self._info(f)

    def _unlink(self, body):
        fname = _str(body, 0)[0]
        f = self.by_name.pop(fname, None)
        if f is None:
            raise _Error(errno.ENOENT)
        f.name = None
        f.ctime_ns = _now()
        self._delete(f)
        self._changed()
        return _U64.pack(f.id)

    def _rename(self, body):
        flags = _U32.unpack_from(body)[0]
        src, pos = _str(body, 4)
        dst = _str(body, pos)[0]
        f, g = self.by_name.get(src), self.by_name.get(dst)
        if f is None or (g is None and flags & _EXCHANGE):
            raise _Error(errno.ENOENT)
        if g is not None and flags & _NOREPLACE:
            raise _Error(errno.EEXIST)
        if f is g:
            return _U64U64.pack(f.id, 0)
        now = _now()
        if flags & _EXCHANGE:
            self.by_name[src], self.by_name[dst] = g, f
            f.name, g.name = dst, src
            f.ctime_ns = g.ctime_ns = now
        else:
            del self.by_name[src]
            self.by_name[dst] = f
            f.name, f.ctime_ns = dst, now
            if g is not None:
                g.name, g.ctime_ns = None, now
                self._delete(g)
        self._changed()
        return _U64U64.pack(f.id, g.id if g is not None else 0)

    def _setattr(self, body):
        fid, which, mode, uid, gid, mtime = _SETATTRREQ.unpack_from(body)
        f = self._file(fid)
        if which & _SET_MODE:
            f.mode = mode & 0o7777
        if which & _SET_UID:
            f.uid = uid
        if which & _SET_GID:
            f.gid = gid
        if which & _SET_MTIME:
            f.mtime_ns = mtime
        f.ctime_ns = _now()
        self._changed()
        return b""

    def _setblksize(self, body):
        fid, blksize = struct.unpack_from("<QI", body)
        f = self._file(fid)
        if f.size or f.stored():
            raise _Error(errno.ENOTEMPTY)
        f.blksize, f.ctime_ns = blksize, _now()
        self._changed()
        return b""

    # ---- content -------------------------------------------------------

    def _open(self, body):
        f = self._file(_U64.unpack_from(body)[0])
        self.opened.add(f.id)
        return _OPENREP.pack(f.size, f.blksize)

    def _close(self, body):
        fid = _U64.unpack_from(body)[0]
        f = self._file(fid, opened=True)
        self._end_tx(f)
        self.opened.discard(fid)
        if f.name is None:
            self._delete(f)
            self._changed()
        return b""

    def _load(self, body):
        fid, blk, off, length = _LOADREQ.unpack_from(body)
        f = self._file(fid, opened=True)
        buf = self._buf(off, length, f.blksize)
        try:
            f.loadblk(blk, buf)
        finally:
            self._release(buf)
        return b"\0\0\0\0"

    def _begin(self, body):
        f = self._file(_U64.unpack_from(body)[0], opened=True)
        if f.staged and type(f).storeblk is BigFile.storeblk:
            raise _Error(errno.EROFS)
        if not f.staged:
            f.begin()
        self.tx[f.id] = _Tx()
        return b""

    def _tx_of(self, fid):
        f = self._file(fid, opened=True)
        tx = self.tx.get(fid)
        if tx is None:
            raise _Error(errno.EINVAL)
        return f, tx

    def _store(self, body):
        fid, blk, off, length, flags = _STOREREQ.unpack_from(body)
        f, tx = self._tx_of(fid)
        if flags & _HOLE:
            if length != f.blksize:
                raise _Error(errno.EINVAL)
            data = None
        else:
            data = self._buf(off, length, f.blksize)
        if f.staged:
            tx.stores[blk] = None if data is None else bytes(data)
            if data is not None:
                self._release(data)
            return b""
        if data is None:
            buf = memoryview(bytes(f.blksize))
        else:  # read-only (Python >= 3.8; older ones get the view itself)
            buf = data.toreadonly() if hasattr(data, "toreadonly") else data
        try:
            f.storeblk(blk, buf)
        finally:
            self._release(buf)
            if data is not None:
                self._release(data)
        return b""

    def _truncate(self, body):
        fid, nblocks = _U64U64.unpack_from(body)
        f, tx = self._tx_of(fid)
        if f.staged:
            tx.trunc = nblocks if tx.trunc is None else min(tx.trunc, nblocks)
            for blk in [b for b in tx.stores if b >= nblocks]:
                del tx.stores[blk]
        else:
            f.truncate(nblocks)
        return b""

    def _commit(self, body):
        fid, flags, size = _COMMITREQ.unpack_from(body)
        f, tx = self._tx_of(fid)
        del self.tx[fid]
        new_size = size if flags & _COMMIT_SIZE else None
        times = (f.mtime_ns, f.ctime_ns)
        f.mtime_ns = f.ctime_ns = _now()
        try:
            if f.staged:
                f.begin()
                if tx.trunc is not None:
                    f.truncate(tx.trunc)
                zeros = None
                for blk in sorted(tx.stores):
                    data = tx.stores[blk]
                    if data is None:
                        zeros = zeros or memoryview(bytes(f.blksize))
                    f.storeblk(blk, zeros if data is None else memoryview(data))
            f.commit(new_size)
        except BaseException:
            f.mtime_ns, f.ctime_ns = times
            if not f.staged:
                f.abort()
            raise
        if new_size is not None:
            f.size = new_size
        return b""

    def _abort(self, body):
        f = self._file(_U64.unpack_from(body)[0], opened=True)
        self._end_tx(f)
        return b""

    def _end_tx(self, f):
        if self.tx.pop(f.id, None) is not None and not f.staged:
            f.abort()

    def _seekdata(self, body):
        fid, start = _U64U64.unpack_from(body)
        blocks = self._file(fid, opened=True).stored()
        if blocks is None:
            raise _Error(errno.ENOSYS)
        i = bisect.bisect_left(blocks, start)
        if i == len(blocks):
            raise _Error(errno.ENXIO)
        return _U64.pack(blocks[i])

    def _stored(self, body):
        blocks = self._file(_U64.unpack_from(body)[0], opened=True).stored()
        if blocks is None:
            raise _Error(errno.ENOSYS)
        return _U64.pack(len(blocks))

    # ---- connections ---------------------------------------------------

    def hello(self, sock, busy=False):
        """Receive and answer HELLO; False when the connection is over."""
        try:
            msg, anc, _, _ = sock.recvmsg(_MSG_MAX, socket.CMSG_SPACE(4 * 4))
        except OSError:
            return False
        fds = array.array("i")
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        try:
            if len(msg) < 8:
                return False
            op, _, rid = _HDR.unpack_from(msg)
            if op != _HELLO:
                return False
            if busy:
                _send(sock, _HELLO | _REPLY, _F_ERROR, rid, b"EBUSY")
                return False
            magic, vmin, vmax, flags, area_size = _HELLOREQ.unpack_from(msg, 8)
            if magic != b"BFSP" or len(fds) != 1:
                _send(sock, _HELLO | _REPLY, _F_ERROR, rid, b"EPROTO")
                return False
            self.area = mmap.mmap(fds[0], area_size)
            self.area_mv = memoryview(self.area)
            if not flags & _HELLO_RESUME:  # a new mount: no nameless file is in use
                nameless = [f for f in self.by_id.values() if f.name is None]
                for f in nameless:
                    self._delete(f)
                if nameless:
                    self._changed()
            _send(sock, _HELLO | _REPLY, 0, rid,
                  b"BFSP" + struct.pack("<HHIH", PROTOCOL_VERSION, 0, 0, len(self.name))
                  + self.name)
            return True
        finally:
            for fd in fds:
                os.close(fd)

    def request(self, sock, msg):
        """Answer one request."""
        op, _, rid = _HDR.unpack_from(msg)
        handler = self.ops.get(op)
        try:
            if handler is None:
                raise _Error(errno.ENOSYS)
            out = handler(memoryview(msg)[8:])
        except _Error as e:
            return _send_err(sock, op, rid, e.err)
        except OSError as e:
            return _send_err(sock, op, rid, e.errno or errno.EIO)
        except (struct.error, UnicodeDecodeError, ValueError):
            return _send_err(sock, op, rid, errno.EINVAL)
        except NotImplementedError:
            return _send_err(sock, op, rid, errno.ENOSYS)
        except MemoryError:
            return _send_err(sock, op, rid, errno.ENOMEM)
        except Exception:
            traceback.print_exc()
            return _send_err(sock, op, rid, errno.EIO)
        if isinstance(out, list):
            for i, chunk in enumerate(out):
                _send(sock, op | _REPLY, _F_MORE if i < len(out) - 1 else 0, rid, chunk)
        else:
            _send(sock, op | _REPLY, 0, rid, out)
        return None

    def connection_ended(self):
        """Close what the connection had open (rolling back); keep the
        nameless files for a daemon that resumes."""
        for fid in list(self.opened):
            f = self.by_id.get(fid)
            if f is not None:
                self._end_tx(f)
        self.opened.clear()
        self.tx.clear()
        if self.area_mv is not None:
            try:
                self.area_mv.release()
                self.area.close()
            except BufferError:
                pass
        self.area = self.area_mv = None

    def serve_conn(self, sock, listener=None):
        """Answer requests until the connection ends (refusing, meanwhile,
        the HELLO of other connections to listener: one mount at a time)."""
        try:
            while True:
                if listener is not None:
                    ready = select.select([sock, listener], [], [])[0]
                    if sock not in ready:  # only a newcomer (the connection first:
                        other, _ = listener.accept()  # its end frees the server)
                        with other:
                            self.hello(other, busy=True)
                        continue
                try:
                    msg = sock.recv(_MSG_MAX)
                except ConnectionError:
                    return
                if not msg:
                    return
                if len(msg) >= 8:
                    self.request(sock, msg)
        finally:
            self.connection_ended()


def _check_name(name):
    if (not isinstance(name, str) or not name or "/" in name or name in (".", "..")
            or len(name.encode()) > 255 or "\0" in name):
        raise ValueError("not a bigfile name: %r" % (name,))


def _str(body, pos):
    (n,) = struct.unpack_from("<H", body, pos)
    raw = bytes(body[pos + 2:pos + 2 + n])
    if len(raw) != n:
        raise struct.error("short string")
    return raw.decode("utf-8", "surrogateescape"), pos + 2 + n


def _send(sock, op, flags, rid, body):
    sock.send(_HDR.pack(op, flags, rid) + body)


def _send_err(sock, op, rid, err):
    name = errno.errorcode.get(err, "EIO")
    _send(sock, op | _REPLY, _F_ERROR, rid, name.encode())


def serve(files, *, create=None, changed=None, path=None, fd=None, name=None):
    """Serve files to a bigfilefs mount; returns when the mount ends.

    files    a dict from names to BigFile objects, or (name, file) pairs:
             the files of the mount (a pair may have the name None: a
             nameless file a restarted server keeps for a daemon that
             resumes, see bigfilefs-protocol(7)). serve() keeps its own
             view of the names from then on: each file's .name.
    create   create(name, blksize, size, mode, uid, gid) -> a new BigFile,
             for a file created in the mount (e.g. bigfilectl create);
             None: creating fails with EROFS. Raise OSError to refuse.
    changed  changed() is called after each change of the names or of a
             file's metadata (create, unlink, rename, chmod/chown/utime,
             block size, a file deleted): a server that persists its
             catalog saves it there (commits save themselves: commit()).
    path     listen on this Unix socket path (SOCK_SEQPACKET) for a daemon
             mounted with unix:PATH; serves one mount after another,
             forever (a second one at once is refused with EBUSY).
    fd       serve the connection on this descriptor.
    name     how the daemon's log names this server.

    Without path and fd, the connection is the descriptor named by the
    environment variable BIGFILEFS_SERVER_FD, set by a daemon mounted with
    exec:COMMAND; serve() then returns when the daemon closes it (at
    unmount), and the program should exit.
    """
    server = _Server(files, create, changed, name)
    if path is None:
        if fd is None:
            env = os.environ.get(_FD_ENV)
            if env is None:
                raise RuntimeError("no connection: run me as bigfilefs exec:COMMAND, or give "
                                   "serve() a path to listen on")
            fd = int(env)
        sock = socket.socket(fileno=fd)
        with sock:
            if server.hello(sock):
                server.serve_conn(sock)
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with listener:
        # The socket appears at `path` only once it listens (bound under a
        # temporary name, then renamed over path): a client that sees the
        # name never gets ECONNREFUSED from a server still starting.
        tmp = "%s.%d.tmp" % (path, os.getpid())
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        listener.bind(tmp)
        listener.listen(4)
        os.rename(tmp, path)
        while True:
            conn, _ = listener.accept()
            with conn:
                if server.hello(conn):
                    server.serve_conn(conn, listener)
