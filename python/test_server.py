# SPDX-License-Identifier: MIT
"""Check bigfilefs.server on its own: a client here speaks the protocol of
bigfilefs-protocol(7) to serve() running in a thread, over a socket pair
and a memfd, as the daemon does. The daemon's side of the same server is
checked by the shared backend suite (tests/backends, suite proto_py, on
examples/npy_store.py) and by the examples' run scripts.

Each check prints one line; the last line counts them. Run by `make check`
(PY_LOG_COMPILER) with BF_SRCDIR set; needs no numpy."""

import errno
import os
import socket
import struct
import sys
import tempfile
import threading

srcdir = os.environ.get("BF_SRCDIR") or os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.path.join(srcdir, "python"))
sys.dont_write_bytecode = True
from bigfilefs import server  # noqa: E402
from bigfilefs.server import BigFile, serve  # noqa: E402

HDR = struct.Struct("<HHI")
AREA = 1 << 20
BS = 4096
passed = failed = 0


def check(what, ok):
    global passed, failed
    print(("ok: " if ok else "FAIL: ") + what)
    if ok:
        passed += 1
    else:
        failed += 1


class Client:
    """The daemon's side: requests one at a time, the area mapped."""

    def __init__(self, files, resume=False, **kw):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.thread = threading.Thread(target=serve, args=(files,),
                                       kwargs=dict(fd=theirs.detach(), **kw))
        self.thread.start()
        self.id = 0
        fd = os.memfd_create("area")
        os.ftruncate(fd, AREA)
        import mmap
        self.area = mmap.mmap(fd, AREA)
        body = struct.pack("<4sHHIQ", b"BFSP", 1, 1, 1 if resume else 0, AREA) + b"\0\0"
        self.sock.sendmsg([HDR.pack(1, 0, 0) + body],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
        os.close(fd)
        self.hello = self.sock.recv(65536)

    def call(self, op, body=b""):
        """(error name or None, [reply bodies])"""
        self.id += 1
        self.sock.send(HDR.pack(op, 0, self.id) + body)
        bodies = []
        while True:
            msg = self.sock.recv(65536)
            rop, flags, rid = HDR.unpack_from(msg)
            assert rop == op | 0x8000 and rid == self.id, (rop, rid)
            if flags & 1:
                return msg[8:].decode(), []
            bodies.append(msg[8:])
            if not flags & 2:
                return None, bodies

    def close(self):
        self.sock.close()
        self.thread.join(10)
        return not self.thread.is_alive()


def s(name):
    b = name.encode()
    return struct.pack("<H", len(b)) + b


def info(body):
    fid, size, mt, ct, bs, mode, uid, gid, n = struct.unpack_from("<QQqqIIIIH", body)
    return dict(id=fid, size=size, blksize=bs, mode=mode, name=body[50:50 + n].decode())


class Pattern(BigFile):
    def loadblk(self, blk, buf):
        buf[:] = bytes([blk % 251 + 1]) * len(buf)


class Mem(BigFile):
    """Blocks in a dict; every call logged."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.data, self.log = {}, []

    def loadblk(self, blk, buf):
        buf[:] = self.data.get(blk, bytes(len(buf)))

    def storeblk(self, blk, buf):
        self.log.append(("store", blk))
        self.data[blk] = bytes(buf)

    def commit(self, size):
        self.log.append(("commit", size))

    def stored(self):
        return sorted(b for b, d in self.data.items() if any(d))

    def delete(self):
        self.log.append(("delete",))


def load(c, fid, blk, off=0):
    err, rep = c.call(12, struct.pack("<QQQI", fid, blk, off, BS))
    return err, None if err else c.area[off:off + BS]


def store(c, fid, blk, data, off=BS):
    c.area[off:off + BS] = data
    return c.call(14, struct.pack("<QQQII", fid, blk, off, BS, 0))[0]


# ---- hello, names, loads ------------------------------------------------
ro = Pattern(size=3 * BS, blksize=BS)
c = Client({"ro": ro})
op, flags, _ = HDR.unpack_from(c.hello)
check("HELLO is answered with version 1 and the magic",
      op == 0x8001 and flags == 0 and c.hello[8:12] == b"BFSP"
      and struct.unpack_from("<H", c.hello, 12)[0] == 1)
err, rep = c.call(3, s("ro"))
fi = info(rep[0])
check("LOOKUP gives the fileinfo (a read-only file is 0444)",
      err is None and fi["name"] == "ro" and fi["size"] == 3 * BS and fi["blksize"] == BS
      and fi["mode"] == 0o444 and fi["id"] == 1)
check("LOOKUP of a missing name: ENOENT", c.call(3, s("nope"))[0] == "ENOENT")
check("LOAD of a file not opened: EBADF", load(c, 1, 0)[0] == "EBADF")
err, rep = c.call(10, struct.pack("<Q", 1))
check("OPEN gives size and block size", err is None and rep[0] == struct.pack("<QI", 3 * BS, BS))
err, data = load(c, 1, 2, off=8 * BS)
check("LOAD fills the area range it names", err is None and data == bytes([3]) * BS)
check("LOAD of a range outside the area: EINVAL",
      c.call(12, struct.pack("<QQQI", 1, 0, AREA, BS))[0] == "EINVAL")
check("BEGIN of a read-only file: EROFS", c.call(13, struct.pack("<Q", 1))[0] == "EROFS")
check("CREATE without create(): EROFS",
      c.call(5, struct.pack("<IIIIQ", BS, 0o644, 0, 0, 0) + s("new"))[0] == "EROFS")
check("an unknown request: ENOSYS", c.call(99)[0] == "ENOSYS")
check("SEEKDATA of a file that does not say: ENOSYS",
      c.call(18, struct.pack("<QQ", 1, 0))[0] == "ENOSYS")
check("the server returns at the end of the connection", c.close())

# ---- staged transactions --------------------------------------------------
m = Mem(size=2 * BS, blksize=BS)
m.data = {0: b"a" * BS, 1: b"b" * BS}
c = Client({"m": m})
c.call(10, struct.pack("<Q", 1))
c.call(13, struct.pack("<Q", 1))
store(c, 1, 0, b"x" * BS)
c.call(14, struct.pack("<QQQII", 1, 1, 0, BS, 1))  # a hole
check("staged stores reach no storeblk() before the commit", m.log == [])
check("a load in the transaction sees the committed content", load(c, 1, 0)[1] == b"a" * BS)
err = c.call(16, struct.pack("<QIQ", 1, 1, 5 * BS))[0]
check("COMMIT hands the stores to storeblk() in block order, then commit(size)",
      err is None and m.log == [("store", 0), ("store", 1), ("commit", 5 * BS)]
      and m.size == 5 * BS)
check("the hole is stored as zeros", m.data[1] == bytes(BS) and load(c, 1, 0)[1] == b"x" * BS)
m.log.clear()
c.call(13, struct.pack("<Q", 1))
store(c, 1, 0, b"y" * BS)
c.call(17, struct.pack("<Q", 1))
check("ABORT leaves nothing", m.log == [] and load(c, 1, 0)[1] == b"x" * BS)
c.call(13, struct.pack("<Q", 1))
c.call(15, struct.pack("<QQ", 1, 0))
c.call(16, struct.pack("<QIQ", 1, 1, 0))
check("the default truncate stores zeros over the dropped blocks",
      m.data[0] == bytes(BS) and m.size == 0)
err, rep = c.call(19, struct.pack("<Q", 1))
check("STORED counts the blocks stored() gives", err is None and rep[0] == struct.pack("<Q", 0))
check("SEEKDATA past the last stored block: ENXIO",
      c.call(18, struct.pack("<QQ", 1, 0))[0] == "ENXIO")
c.close()

# ---- errors from the file ------------------------------------------------------


class Failing(BigFile):
    def loadblk(self, blk, buf):
        if blk == 0:
            raise OSError(errno.ENOSPC, "full")
        if blk == 1:
            raise KeyError("a bug")
        buf[:] = bytes(len(buf))


c = Client({"f": Failing(size=4 * BS, blksize=BS)})
c.call(10, struct.pack("<Q", 1))
check("an OSError travels as its errno name", load(c, 1, 0)[0] == "ENOSPC")
check("any other exception is EIO (and printed)", load(c, 1, 1)[0] == "EIO")
check("the next request is served", load(c, 1, 2)[0] is None)
c.close()

# ---- the namespace ------------------------------------------------------------------
made = []


def create(name, blksize, size, mode, uid, gid):
    f = Mem(blksize=blksize, size=size)
    made.append(f)
    return f


changes = []
many = {"f%04d" % i: Pattern(size=BS, blksize=BS) for i in range(1500)}
c = Client(many, create=create, changed=lambda: changes.append(1))
err, rep = c.call(2)
names = [info(r)["name"] for body in rep for r in [body[4:]]]
total = sum(struct.unpack_from("<I", body)[0] for body in rep)
check("LIST of 1500 files comes in several replies with MORE, every one there",
      err is None and len(rep) > 1 and total == 1500 and all(len(b) <= 65536 - 8 for b in rep))
err, rep = c.call(5, struct.pack("<IIIIQ", BS, 0o100640, 7, 8, 0) + s("new"))
fi = info(rep[0])
check("CREATE makes a file with a new id, the mode masked",
      err is None and fi["id"] == 1501 and fi["mode"] == 0o640 and len(made) == 1 and changes)
check("CREATE of an existing name: EEXIST",
      c.call(5, struct.pack("<IIIIQ", BS, 0o644, 0, 0, 0) + s("new"))[0] == "EEXIST")
c.call(10, struct.pack("<Q", 1501))
err, rep = c.call(6, s("new"))
check("UNLINK gives the id; an open file stays, nameless",
      err is None and rep[0] == struct.pack("<Q", 1501)
      and info(c.call(4, struct.pack("<Q", 1501))[1][0])["name"] == "")
c.call(11, struct.pack("<Q", 1501))
check("its CLOSE deletes it", made[0].log == [("delete",)]
      and c.call(4, struct.pack("<Q", 1501))[0] == "ENOENT")
err, rep = c.call(7, struct.pack("<I", 0) + s("f0001") + s("f0002"))
check("RENAME over a closed file: both ids, the replaced one deleted",
      err is None and rep[0] == struct.pack("<QQ", 2, 3)
      and c.call(4, struct.pack("<Q", 3))[0] == "ENOENT")
check("RENAME NOREPLACE onto an existing name: EEXIST",
      c.call(7, struct.pack("<I", 1) + s("f0002") + s("f0003"))[0] == "EEXIST")
err, rep = c.call(7, struct.pack("<I", 2) + s("f0002") + s("f0003"))
check("RENAME EXCHANGE swaps",
      err is None and info(c.call(3, s("f0003"))[1][0])["id"] == 2
      and info(c.call(3, s("f0002"))[1][0])["id"] == 4)
check("SETATTR sets the fields asked",
      c.call(8, struct.pack("<QIIIIq", 2, 1 | 8, 0o600, 9, 9, 1234))[0] is None
      and many["f0001"].mode == 0o600 and many["f0001"].mtime_ns == 1234
      and many["f0001"].uid != 9)
c.close()

# ---- unix: one mount at a time ------------------------------------------------------------
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "sock")
    t = threading.Thread(target=serve, args=({"ro": Pattern(size=BS, blksize=BS)},),
                         kwargs=dict(path=path), daemon=True)
    t.start()
    for _ in range(1000):
        if os.path.exists(path):
            break
        threading.Event().wait(0.01)

    def connect():
        sk = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sk.connect(path)
        fd = os.memfd_create("area")
        os.ftruncate(fd, AREA)
        body = struct.pack("<4sHHIQ", b"BFSP", 1, 1, 0, AREA) + b"\0\0"
        sk.sendmsg([HDR.pack(1, 0, 7) + body],
                   [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
        os.close(fd)
        return sk, sk.recv(65536)

    a, ha = connect()
    b, hb = connect()
    check("a second mount at once is refused with EBUSY",
          HDR.unpack_from(ha)[1] == 0 and HDR.unpack_from(hb)[1] == 1 and hb[8:] == b"EBUSY")
    b.close()
    a.close()
    a, ha = connect()
    check("the next mount is served once the first is gone", HDR.unpack_from(ha)[1] == 0)
    a.close()

check("bigfilefs.server documents itself", all(
    getattr(server, n).__doc__ for n in ("BigFile", "serve"))
    and all(getattr(BigFile, m).__doc__ for m in ("loadblk", "storeblk", "begin", "truncate",
                                                   "commit", "abort", "stored", "delete")))
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
