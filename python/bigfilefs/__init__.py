# SPDX-License-Identifier: MIT
"""bigfilefs — the ioctls of bigfilefs files, from Python.

A file of a bigfilefs mount is an ordinary file: open it, mmap it (for
instance with numpy.memmap), change it. The changes stay uncommitted until
writeout() commits all of them to the database at once, or discard() throws
them away. This module wraps the requests of <bigfile/ioctl.h> (see
ioctl_bigfile(2)) with the standard library only; transaction() makes a
`with` block commit or discard, and array() gives a numpy.memmap whose
dtype and shape are stored with the file (numpy is needed by array()
only).

Every function takes either a path (str, bytes or os.PathLike), which it
opens and closes itself (as bigfilectl does), or an open file: an int file
descriptor or an object with a fileno() method (a file object, ...).

Permissions: like write(2), writeout(), discard(), invalidate() and
set_blksize() change the file, and the daemon refuses them through a file
not open for writing (OSError EBADF). Given a path, they open it O_RDWR
(so the caller needs write permission on the file: EACCES otherwise);
given a file descriptor or file object, it must be open for writing
(os.O_RDWR or os.O_WRONLY; open(path, "r+b"); numpy.memmap mode "r+").
On a read-only mount writeout() and set_blksize() fail with EROFS, while
discard() and invalidate() also work through a read-only file (a path is
then opened read-only). stat() and reclaim() only need read access.

Failures raise OSError with the errno the daemon returned, for example
EBUSY (a writeout of the file is running), EROFS (read-only mount), EBADF
(the file is not open for writing), EIO (the database failed; every change
is still there), ENOTTY (not a file of a bigfilefs mount).

Several mounts may share one database (bigfilefs -o shared): each sees the
others' commits within milliseconds, and a writeout that would overwrite a
commit of another mount that its changes never saw raises ConflictError
(an OSError with errno ESTALE): nothing was committed, every change is
kept; discard() them, or writeout(..., overwrite=True). Every commit has a
serial; writeout() and sync() return it.

    import bigfilefs, numpy as np
    a = np.memmap("/mnt/arrays/x", dtype="f8", mode="r+")
    a[:10] = 1.5
    bigfilefs.writeout("/mnt/arrays/x")
    # {'blocks': 1, 'bytes': 2097152, 'serial': 42, 'conflict_blocks': 0}
"""

import ast
import errno
import fcntl
import json
import os
import stat as _stat
import struct
import threading

__all__ = [
    "writeout", "discard", "invalidate", "stat", "reclaim", "set_blksize",
    "sync", "conflicts", "status", "transaction", "Transaction", "array",
    "ARRAY_XATTR", "ConflictError",
    "BIGFILE_IOC_MAGIC", "BIGFILE_IOC_WRITEOUT", "BIGFILE_IOC_DISCARD",
    "BIGFILE_IOC_INVALIDATE", "BIGFILE_IOC_STAT", "BIGFILE_IOC_RECLAIM",
    "BIGFILE_IOC_SETBLKSIZE", "BIGFILE_IOC_SYNC", "BIGFILE_IOC_WRITEOUT2",
    "BIGFILE_IOC_CONFLICTS", "BIGFILE_IOC_STATUS", "BIGFILE_WRITEOUT_STORE",
    "BIGFILE_WRITEOUT_MARKSTORED", "BIGFILE_WRITEOUT_OVERWRITE",
    "BIGFILE_CONFLICTS_MAX", "BIGFILE_CONFLICTS_END", "BIGFILE_CONFLICTS_SIZE",
    "BIGFILE_STATUS_MAX", "BIGFILE_STATUS_END", "BIGFILE_STATUS_SIZE_CONFLICT",
    "BIGFILE_STAT_VERSION", "STAT_FIELDS",
]

# --- the encoding of Linux ioctl request numbers (asm-generic/ioctl.h) -----
_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _IOC(direction, typ, nr, size):
    return ((direction << _IOC_DIRSHIFT) | (typ << _IOC_TYPESHIFT) |
            (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT))


# --- the argument structs: native byte order, no implicit padding -----------
_WRITEOUT = struct.Struct("=IIQQ")      # flags, reserved, blocks, bytes
_WRITEOUT2 = struct.Struct("=IIQQQQ")   # ... serial, conflict_blocks
_SERIAL = struct.Struct("=Q")           # serial
_RANGE = struct.Struct("=QQ")           # start, count
_COUNT = struct.Struct("=QQ")           # blocks, bytes
_BLKSIZE = struct.Struct("=II")         # blksize, reserved
BIGFILE_CONFLICTS_MAX = 64
# start, next, count, flags, ranges[BIGFILE_CONFLICTS_MAX] (start, count)
_CONFLICTS = struct.Struct("=QQII%dQ" % (2 * BIGFILE_CONFLICTS_MAX))
BIGFILE_STATUS_MAX = 32
# ino, size, committed_size, dirty_blocks, dirty_bytes, conflict_blocks,
# blksize, flags, name[256]
_STATUS_FILE = struct.Struct("=6QII256s")
_STATUS_FILE_FIELDS = ("ino", "size", "committed_size", "dirty_blocks", "dirty_bytes",
                       "conflict_blocks", "blksize", "flags", "name")
# start, next, count, reserved, files[BIGFILE_STATUS_MAX]
_STATUS = struct.Struct("=QQII%ds" % (BIGFILE_STATUS_MAX * _STATUS_FILE.size))

#: The fields of struct bigfile_stat after version and blksize, in order.
STAT_FIELDS = (
    "size", "committed_size", "loaded_blocks", "dirty_blocks",
    "loading_blocks", "loadblk_calls", "storeblk_calls", "bytes_loaded",
    "bytes_stored", "writeouts", "discards", "invalidated_blocks",
    "reclaimed_blocks", "errors",
    "serial", "conflict_blocks",            # version 2
    "writeout_blocks", "writeout_total_blocks",  # version 3: the running writeout
    "spilled_blocks", "spills",             # version 4
    "spliced_reads",                        # version 5
)
_STAT = struct.Struct("=II%dQ1Q" % len(STAT_FIELDS))

BIGFILE_IOC_MAGIC = 0xBF
BIGFILE_WRITEOUT_STORE = 1 << 0
BIGFILE_WRITEOUT_MARKSTORED = 1 << 1
BIGFILE_WRITEOUT_OVERWRITE = 1 << 2
BIGFILE_CONFLICTS_END = (1 << 64) - 1
BIGFILE_CONFLICTS_SIZE = 1 << 0
BIGFILE_STATUS_END = (1 << 64) - 1
BIGFILE_STATUS_SIZE_CONFLICT = 1 << 0
BIGFILE_STAT_VERSION = 5

BIGFILE_IOC_WRITEOUT = _IOC(_IOC_READ | _IOC_WRITE, BIGFILE_IOC_MAGIC, 1, _WRITEOUT.size)
BIGFILE_IOC_DISCARD = _IOC(_IOC_READ | _IOC_WRITE, BIGFILE_IOC_MAGIC, 2, _COUNT.size)
BIGFILE_IOC_INVALIDATE = _IOC(_IOC_WRITE, BIGFILE_IOC_MAGIC, 3, _RANGE.size)
BIGFILE_IOC_STAT = _IOC(_IOC_READ, BIGFILE_IOC_MAGIC, 4, _STAT.size)
BIGFILE_IOC_RECLAIM = _IOC(_IOC_READ | _IOC_WRITE, BIGFILE_IOC_MAGIC, 5, _COUNT.size)
BIGFILE_IOC_SETBLKSIZE = _IOC(_IOC_WRITE, BIGFILE_IOC_MAGIC, 6, _BLKSIZE.size)
BIGFILE_IOC_SYNC = _IOC(_IOC_READ | _IOC_WRITE, BIGFILE_IOC_MAGIC, 7, _SERIAL.size)
BIGFILE_IOC_WRITEOUT2 = _IOC(_IOC_READ | _IOC_WRITE, BIGFILE_IOC_MAGIC, 8, _WRITEOUT2.size)
BIGFILE_IOC_CONFLICTS = _IOC(_IOC_READ | _IOC_WRITE, BIGFILE_IOC_MAGIC, 9, _CONFLICTS.size)
BIGFILE_IOC_STATUS = _IOC(_IOC_READ | _IOC_WRITE, BIGFILE_IOC_MAGIC, 10, _STATUS.size)


class ConflictError(OSError):
    """A writeout refused (errno ESTALE): another mount committed changes to
    blocks (or the size) that this mount's uncommitted changes are based on
    older versions of. Nothing was committed; every change is still there.
    Either discard() them (the mount then shows the other commit), or
    writeout(..., overwrite=True) to commit them over it.

    ranges: the conflicting blocks, a list of (start, count) block ranges;
    size_conflict: whether the uncommitted size conflicts too."""

    def __init__(self, filename=None, ranges=(), size_conflict=False):
        super().__init__(errno.ESTALE,
                         "another mount committed changes this mount's are based on",
                         filename)
        self.ranges = list(ranges)
        self.size_conflict = size_conflict


_READ, _WRITE, _WRITE_OR_RO = 0, 1, 2     # how _ioctl opens a path


def _open(path, access):
    """Open path for a request: _READ read-only; _WRITE O_RDWR; _WRITE_OR_RO
    O_RDWR, or read-only on a read-only mount (EROFS), where the daemon
    allows discard and invalidate through any fd."""
    if access == _READ:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        if e.errno != errno.EROFS or access != _WRITE_OR_RO:
            raise
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


class _Fd:
    """The file descriptor of path_or_fd for the duration of a `with`: a
    path is opened as `access` says (and closed), an fd or a file object's
    fileno() is used as it is."""

    def __init__(self, path_or_fd, access):
        self.path_or_fd, self.access, self.fd, self.own = path_or_fd, access, None, False

    def __enter__(self):
        if isinstance(self.path_or_fd, int):
            self.fd = self.path_or_fd
        elif hasattr(self.path_or_fd, "fileno"):
            self.fd = self.path_or_fd.fileno()
        else:
            self.fd = _open(self.path_or_fd, self.access)
            self.own = True
        return self.fd

    def __exit__(self, *exc):
        if self.own:
            os.close(self.fd)
        return False


def _call(fd, request, arg):
    """Issue `request` with the bytes `arg` on fd; return the bytes the
    daemon wrote back (the whole argument buffer)."""
    buf = bytearray(arg)
    fcntl.ioctl(fd, request, buf, True)
    return bytes(buf)


def _ioctl(path_or_fd, request, arg, access):
    """_call on path_or_fd (a path is opened as `access` says)."""
    with _Fd(path_or_fd, access) as fd:
        return _call(fd, request, arg)


def _conflicts(fd):
    """(ranges, size_conflict) of the file open as fd."""
    ranges, size, start = [], False, 0
    while True:
        arg = _CONFLICTS.pack(start, 0, 0, 0, *([0] * (2 * BIGFILE_CONFLICTS_MAX)))
        out = _CONFLICTS.unpack(_call(fd, BIGFILE_IOC_CONFLICTS, arg))
        nxt, count, flags, flat = out[1], out[2], out[3], out[4:]
        ranges += [(flat[2 * i], flat[2 * i + 1]) for i in range(count)]
        size = size or bool(flags & BIGFILE_CONFLICTS_SIZE)
        if nxt == BIGFILE_CONFLICTS_END:
            return ranges, size
        start = nxt


def writeout(path_or_fd, store=True, markstored=True, overwrite=False):
    """Commit the file's uncommitted changes — made by any process, through
    any mapping or write(2) — to the database, all or nothing.

    store: store the changed blocks and the size in one transaction.
    markstored: afterwards, mark the changed blocks clean (committed).
    At least one must be true.
    overwrite: (with store) commit even over another mount's newer commit
    of the same blocks or size: this mount's changes win.

    Returns {'blocks': changed blocks handled, 'bytes': bytes stored,
    'serial': the commit's serial, 'conflict_blocks': with overwrite, the
    blocks that overwrote another mount's commit} — the 'blocks' and
    'bytes' of bigfilefs 0.1, and two keys more. When it returns, this
    mount has caught up with every commit up to 'serial' (sync()); with
    nothing to commit, 'serial' is the one the file's content is as of.

    Raises ConflictError (an OSError, errno ESTALE) when another mount
    committed what the changes are based on, with its .ranges; other
    failures raise OSError (EIO, ENOSPC, EBUSY, EROFS, ...). Either way
    nothing was committed and every change is still there.

    A path is opened O_RDWR; an fd or file object must be open for writing
    (else EBADF)."""
    flags = ((BIGFILE_WRITEOUT_STORE if store else 0) |
             (BIGFILE_WRITEOUT_MARKSTORED if markstored else 0))
    if not flags:
        raise OSError(errno.EINVAL, "writeout: store or markstored is needed")
    if overwrite:
        if not store:
            raise OSError(errno.EINVAL, "writeout: overwrite needs store")
        flags |= BIGFILE_WRITEOUT_OVERWRITE
    with _Fd(path_or_fd, _WRITE) as fd:
        try:
            out = _call(fd, BIGFILE_IOC_WRITEOUT2, _WRITEOUT2.pack(flags, 0, 0, 0, 0, 0))
        except OSError as e:
            if e.errno != errno.ESTALE:
                raise
            ranges, size = _conflicts(fd)
            name = path_or_fd if isinstance(path_or_fd, (str, bytes, os.PathLike)) else None
            raise ConflictError(name, ranges, size) from None
    _, _, blocks, nbytes, serial, nconflict = _WRITEOUT2.unpack(out)
    return {"blocks": blocks, "bytes": nbytes, "serial": serial,
            "conflict_blocks": nconflict}


def sync(path_or_fd):
    """Catch up with every commit of the database now — other mounts'
    commits are applied to this mount's caches, as the mount does by itself
    within milliseconds — and return the serial reached. Any open file of
    the mount will do (a read-only mount too); a path is opened read-only."""
    out = _ioctl(path_or_fd, BIGFILE_IOC_SYNC, bytes(_SERIAL.size), _READ)
    return _SERIAL.unpack(out)[0]


def conflicts(path_or_fd):
    """The blocks of the file whose uncommitted changes conflict with
    another mount's commit, as a list of (start, count) block ranges; and
    whether the size conflicts: returns (ranges, size_conflict). Any open
    file will do; a path is opened read-only."""
    with _Fd(path_or_fd, _READ) as fd:
        return _conflicts(fd)


def status(mount):
    """The files of a mount that have uncommitted changes (changed blocks,
    or a size other than the committed one), as a list of dicts with the
    keys name, ino, size, committed_size, dirty_blocks, dirty_bytes,
    conflict_blocks, blksize and size_conflict (bool) — what `bigfilectl
    status` prints. Empty when everything is committed.

    mount: the mount point (a path), or an fd open on it (O_DIRECTORY).
    The daemon answers from the files it holds open and opens none.
    Raises OSError ENOTTY when mount is not the root of a bigfilefs
    mount."""
    if isinstance(mount, int) or hasattr(mount, "fileno"):
        fd, own = (mount if isinstance(mount, int) else mount.fileno()), False
    else:
        fd, own = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), True
    files, start = [], 0
    try:
        while True:
            out = _call(fd, BIGFILE_IOC_STATUS, _STATUS.pack(start, 0, 0, 0, b""))
            _, nxt, count, _, blob = _STATUS.unpack(out)
            for i in range(count):
                f = dict(zip(_STATUS_FILE_FIELDS, _STATUS_FILE.unpack_from(blob, i * _STATUS_FILE.size)))
                f["name"] = os.fsdecode(f["name"].split(b"\0", 1)[0])
                f["size_conflict"] = bool(f.pop("flags") & BIGFILE_STATUS_SIZE_CONFLICT)
                files.append(f)
            if nxt == BIGFILE_STATUS_END:
                return files
            start = nxt
    finally:
        if own:
            os.close(fd)


def discard(path_or_fd):
    """Throw away every uncommitted change of the file: every mapping and
    every read then sees the committed content and size. Returns
    {'blocks': changed blocks the daemon held and dropped, 'bytes': daemon
    memory freed}; pages changed only in the kernel's page cache are
    dropped too, uncounted.

    A path is opened O_RDWR; an fd or file object must be open for writing
    (else EBADF), except on a read-only mount."""
    out = _ioctl(path_or_fd, BIGFILE_IOC_DISCARD, bytes(_COUNT.size), _WRITE_OR_RO)
    blocks, nbytes = _COUNT.unpack(out)
    return {"blocks": blocks, "bytes": nbytes}


def invalidate(path_or_fd, start, count=1):
    """Forget blocks [start, start + count) — changed ones too — in the
    daemon and the kernel, so that the next access loads them from the
    database (after the database was changed underneath the mount).
    Returns None.

    A path is opened O_RDWR; an fd or file object must be open for writing
    (else EBADF), except on a read-only mount."""
    _ioctl(path_or_fd, BIGFILE_IOC_INVALIDATE, _RANGE.pack(start, count),
           _WRITE_OR_RO)


def stat(path_or_fd):
    """Return the daemon's state of the file as a dict with the fields of
    struct bigfile_stat: version, blksize, size, committed_size,
    loaded_blocks, dirty_blocks, loading_blocks, loadblk_calls,
    storeblk_calls, bytes_loaded, bytes_stored, writeouts, discards,
    invalidated_blocks, reclaimed_blocks, errors, (version 2) serial —
    the commit the file's content is as of on this mount — and
    conflict_blocks, and (version 3) the progress of a writeout running
    now: writeout_blocks stored so far of writeout_total_blocks (both 0
    when none runs; bytes are blocks times blksize), and (version 4)
    spilled_blocks — changed blocks staged in the database past the
    dirty budget — and spills, and (version 5) spliced_reads — reads
    answered straight from a SQLite database's block file. Any open file
    will do; a path is opened read-only."""
    out = _ioctl(path_or_fd, BIGFILE_IOC_STAT, bytes(_STAT.size), _READ)
    values = _STAT.unpack(out)
    result = {"version": values[0], "blksize": values[1]}
    result.update(zip(STAT_FIELDS, values[2:2 + len(STAT_FIELDS)]))
    return result


def reclaim(path_or_fd):
    """Drop the clean cached data of the file (the daemon's and the
    kernel's); changes are kept. Returns {'blocks': blocks dropped,
    'bytes': daemon memory freed}. Any open file will do; a path is opened
    read-only."""
    out = _ioctl(path_or_fd, BIGFILE_IOC_RECLAIM, bytes(_COUNT.size), _READ)
    blocks, nbytes = _COUNT.unpack(out)
    return {"blocks": blocks, "bytes": nbytes}


def set_blksize(path_or_fd, blksize):
    """Set the block size of an empty file (size 0, nothing ever stored):
    a power of two from 4 KiB to 64 MiB. Raises OSError ENOTEMPTY if the
    file is not empty, EINVAL for a bad size.

    A path is opened O_RDWR; an fd or file object must be open for writing
    (else EBADF)."""
    _ioctl(path_or_fd, BIGFILE_IOC_SETBLKSIZE, _BLKSIZE.pack(blksize, 0),
           _WRITE)


# --- transactions -------------------------------------------------------------
# The targets of the transactions open in this process, (st_dev, st_ino) of
# a file or (st_dev, None) of a mount, under _tx_lock: a transaction
# refuses to start over one of them (nesting).
_tx_lock = threading.Lock()
_tx_active = set()


class Transaction:
    """A transaction on one file, or on every file of a mount; made by
    transaction(), used as a context manager (see there).

    Attributes: path — what it was made on; result — after a commit, the
    writeout() result (a dict; for a mount, a dict of them by file name);
    None before, and after a discard."""

    def __init__(self, path_or_mount):
        self.path = path_or_mount
        self.result = None
        self._key = None
        self._fd = None

    def __enter__(self):
        st = os.stat(self.path)
        if _stat.S_ISDIR(st.st_mode):
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            key, clash = (st.st_dev, None), lambda k: k[0] == st.st_dev
            try:
                status(self._fd)   # ENOTTY now, not at the end, if not a mount root
            except OSError:
                os.close(self._fd)
                raise
        else:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            key = (st.st_dev, st.st_ino)
            clash = lambda k: k == key or k == (st.st_dev, None)  # noqa: E731
        with _tx_lock:
            if self._key is not None or any(clash(k) for k in _tx_active):
                os.close(self._fd)
                self._fd = None
                raise RuntimeError(
                    "bigfilefs.transaction(%r): nested transaction refused: a transaction on "
                    "this file or its mount is already open in this process (a writeout "
                    "commits every change of a file, so transactions cannot nest)" % (self.path,))
            _tx_active.add(key)
            self._key = key
        return self

    def _names(self):
        """The files of the mount with uncommitted changes."""
        return [f["name"] for f in status(self._fd)]

    def commit(self):
        """Commit now (what a normal end of the `with` block does)."""
        if self._key[1] is not None:
            self.result = writeout(self._fd)
            return
        self.result = {}
        for name in self._names():
            self.result[name] = writeout(os.path.join(self.path, name))

    def discard(self):
        """Throw every uncommitted change away now (what an exception in
        the `with` block does)."""
        self.result = None
        if self._key[1] is not None:
            discard(self._fd)
            return
        for name in self._names():
            discard(os.path.join(self.path, name))

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.commit()
            else:
                self.discard()
        finally:
            with _tx_lock:
                _tx_active.discard(self._key)
            self._key = None
            os.close(self._fd)
            self._fd = None
        return False


def transaction(path_or_mount):
    """A transaction on a file of a bigfilefs mount, or on all of a mount:

        with bigfilefs.transaction("/mnt/arrays/x") as tx:
            a = numpy.memmap("/mnt/arrays/x", dtype="f8", mode="r+")
            a[:10] = 1.5
        # committed: tx.result is the writeout() result

    When the block ends normally, every uncommitted change of the file is
    committed at once (writeout()); when it raises, every one is discarded
    (discard()) and the exception goes on. A commit that another mount's
    commit conflicts with raises ConflictError: nothing was committed and
    every change is kept (discard() them, or writeout(..., overwrite=True)).

    The daemon does not tell changes apart by who made them: every
    uncommitted change of the file counts, also those made before the
    block or by other processes. Given a mount point (a directory), the end
    of the block commits (or discards) every file of the mount that has
    uncommitted changes (status()), one after the other: each file is
    committed atomically, the files together are not.

    Transactions do not nest: opening one on a file (or mount) that a
    transaction open in this process already covers raises RuntimeError.
    The path is opened O_RDWR (a file) for the duration of the block."""
    return Transaction(path_or_mount)


# --- arrays -------------------------------------------------------------------
#: The extended attribute where array() keeps an array's layout: JSON
#: {"dtype": repr of numpy.lib.format.dtype_to_descr(dtype), "shape": [...],
#: "order": "C" or "F"}.
ARRAY_XATTR = "user.bigfilefs.array"


def _layout_get(fd):
    """(dtype, shape, order) stored with the file open as fd, or None."""
    import numpy
    try:
        raw = os.getxattr(fd, ARRAY_XATTR)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise
    meta = json.loads(raw.decode())
    descr = ast.literal_eval(meta["dtype"])
    return (numpy.lib.format.descr_to_dtype(descr), tuple(meta["shape"]), meta["order"])


def _layout_set(fd, dtype, shape, order):
    import numpy
    meta = {"dtype": repr(numpy.lib.format.dtype_to_descr(dtype)),
            "shape": [int(n) for n in shape], "order": order}
    os.setxattr(fd, ARRAY_XATTR, json.dumps(meta).encode())


def _nbytes(dtype, shape):
    n = dtype.itemsize
    for k in shape:
        n *= k
    return n


# array(access=...): the madvise(2) advice given for the whole mapping
_ACCESS = {"normal": "MADV_NORMAL", "random": "MADV_RANDOM", "sequential": "MADV_SEQUENTIAL"}


def array(path, dtype=None, shape=None, order="C", mode="r+", access=None):
    """An array stored in a file of a bigfilefs mount, as a numpy.memmap.

    Creating: give dtype and shape (an int or a tuple); the file is
    created if missing, sized to fit (its size committed at once for a new
    file), and dtype, shape and order are stored with it, in the extended
    attribute ARRAY_XATTR (committed at once, like a name).

    Opening: give only the path; dtype, shape and order come back from the
    file, so bigfilefs.array(path) gives the same array in another process
    or on another mount of the database. A dtype or order given that
    differs from the stored one raises ValueError.

    Growing the first axis (append; order "C"): open with a shape whose
    first axis is larger and whose other axes are the stored ones: the file
    grows, existing data stay, the new rows read as zeros. The growth is an
    uncommitted change like any other (writeout() or a transaction commits
    it); the stored shape is updated at once, and when the file is smaller
    than it says (a growth discarded) the first axis follows the file's
    size. Shrinking is refused (ValueError).

    mode: "r+" (default: read and change), "r" (read only), "c" (copy on
    write, numpy's), "w+" (create or overwrite: dtype and shape needed).
    Changes made through the array stay uncommitted until writeout(path)
    or the end of a transaction(path).

    access: how the array will be read, told to the kernel with
    madvise(2) for the whole mapping. None (default) leaves the kernel's
    read-around: a page fault on data not cached reads the mount's
    readahead around the page (1 MiB by default), which a scan wants.
    "random" (MADV_RANDOM) makes each fault read only its page: for
    scattered reads of a large array, a cold fault costs a fraction of the
    default's (bigfilefs(8), DATA PATH).
    "sequential" (MADV_SEQUENTIAL) reads ahead and lets the kernel drop
    pages behind the reader sooner; "normal" is the default advice.

    Needs numpy (ImportError otherwise); the rest of the module does not."""
    try:
        import numpy
    except ImportError as e:
        raise ImportError("bigfilefs.array() needs numpy") from e
    if order not in ("C", "F"):
        raise ValueError("order must be 'C' or 'F'")
    if mode not in ("r", "r+", "c", "w+"):
        raise ValueError("mode must be 'r', 'r+', 'c' or 'w+'")
    if access is not None:
        if access not in _ACCESS:
            raise ValueError("access must be None, 'normal', 'random' or 'sequential'")
        import mmap
        if not hasattr(mmap.mmap, "madvise") or not hasattr(mmap, _ACCESS[access]):
            raise NotImplementedError("array(access=%r) needs mmap.madvise (Python >= 3.8) "
                                      "and %s" % (access, _ACCESS[access]))
    if shape is not None and not isinstance(shape, tuple):
        shape = tuple(shape) if hasattr(shape, "__iter__") else (int(shape),)
    dt = numpy.dtype(dtype) if dtype is not None else None
    created = False
    if mode == "r":
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    else:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            if dt is None or shape is None:
                raise
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            created = True
    try:
        stored = None if (mode == "w+" or created) else _layout_get(fd)
        if stored is None:
            if dt is None or shape is None:
                raise ValueError("%s: no array layout stored with the file: give dtype and "
                                 "shape to create one" % (path,))
            if mode == "r":
                raise ValueError("%s: no array layout stored, and mode 'r' cannot store one"
                                 % (path,))
            os.ftruncate(fd, 0 if mode == "w+" else os.fstat(fd).st_size)
            os.ftruncate(fd, _nbytes(dt, shape))
            if created or mode == "w+":
                writeout(fd)        # the size, committed: the layout is never ahead of it
            _layout_set(fd, dt, shape, order)
        else:
            sdt, sshape, sorder = stored
            if dt is not None and dt != sdt:
                raise ValueError("%s: stored dtype is %s, not %s" % (path, sdt, dt))
            if order != sorder and order != "C":
                raise ValueError("%s: stored order is %s, not %s" % (path, sorder, order))
            order, dt = sorder, sdt
            size = os.fstat(fd).st_size
            if sorder == "C" and sshape and _nbytes(dt, sshape) != size:
                # the file's size decides the first axis (a growth discarded)
                row = _nbytes(dt, sshape[1:])
                sshape = (size // row if row else sshape[0],) + sshape[1:]
            if shape is None or shape == sshape:
                shape = sshape
            else:
                if len(shape) != len(sshape) or shape[1:] != sshape[1:] or sorder != "C":
                    raise ValueError("%s: stored shape is %r, order %s: only the first axis "
                                     "of a C-order array can grow" % (path, sshape, sorder))
                if shape[0] < sshape[0]:
                    raise ValueError("%s: shrinking from %r to %r is refused"
                                     % (path, sshape, shape))
                if mode in ("r", "c"):
                    raise ValueError("%s: growing needs mode 'r+'" % (path,))
                os.ftruncate(fd, _nbytes(dt, shape))
                _layout_set(fd, dt, shape, order)
        m = numpy.memmap(path, dtype=dt, mode="r+" if mode == "w+" else mode,
                         shape=shape, order=order)
    finally:
        os.close(fd)
    if access is not None:
        _advise(m, access)
    return m


def _advise(m, access):
    """madvise(2) the whole mapping of numpy.memmap m with _ACCESS[access]
    (checked by array() before it touches the file), through the mmap
    object that is the memmap's base."""
    import mmap
    mm = m.base if isinstance(m.base, mmap.mmap) else getattr(m, "_mmap", None)
    if not isinstance(mm, mmap.mmap):
        raise NotImplementedError("array(access=%r): numpy.memmap keeps no mmap object" % access)
    mm.madvise(getattr(mmap, _ACCESS[access]))
