# SPDX-License-Identifier: MIT
"""Exercise every function of the bigfilefs Python module on a real mount.

    test_module_mount.py MOUNTPOINT [MOUNTPOINT2]

Run by python/run-module-test.sh, which mounts a fresh database on
MOUNTPOINT and, with -o shared, the same database on MOUNTPOINT2 (another
daemon: another mount of the database, for sync, conflicts and
ConflictError). Each check prints "ok: ..." or "FAIL: ..."; exits 1 on any
failure."""

import errno
import mmap
import os
import sys

sys.dont_write_bytecode = True
import bigfilefs  # noqa: E402

mnt = sys.argv[1]
mnt2 = sys.argv[2] if len(sys.argv) > 2 else None
failures = 0


def ok(cond, what):
    global failures
    print("%s: %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        failures += 1


def raises(want, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OSError as e:
        return e.errno == want
    return False


BS = 64 << 10
path = os.path.join(mnt, "m")

# set_blksize on a new, empty file; then refused once the file has data.
with open(path, "wb"):
    pass
bigfilefs.set_blksize(path, BS)
st = bigfilefs.stat(path)
ok(st["version"] == bigfilefs.BIGFILE_STAT_VERSION, "stat version %d" % st["version"])
ok(st["blksize"] == BS and os.stat(path).st_blksize == BS,
   "set_blksize(64K): stat blksize %d, st_blksize %d" % (st["blksize"], os.stat(path).st_blksize))
ok(raises(errno.EINVAL, bigfilefs.set_blksize, path, 12345), "set_blksize(12345) -> EINVAL")

# Data through write(2), then writeout by path: one block, committed size.
fd = os.open(path, os.O_RDWR)
os.pwrite(fd, b"A" * 100, 0)
os.pwrite(fd, b"B" * 100, 3 * BS)
ok(raises(errno.ENOTEMPTY, bigfilefs.set_blksize, fd, 4096), "set_blksize on a file with data -> ENOTEMPTY")
res = bigfilefs.writeout(path)
ok(res["blocks"] == 2 and res["bytes"] == 2 * BS and res["serial"] > 0
   and res["conflict_blocks"] == 0, "writeout(path) -> %r" % res)
first_serial = res["serial"]
st = bigfilefs.stat(fd)
ok(st["serial"] == first_serial and st["conflict_blocks"] == 0,
   "stat: serial %d is the writeout's, conflict_blocks %d" % (st["serial"], st["conflict_blocks"]))
ok(bigfilefs.sync(path) >= first_serial, "sync(path) reaches the writeout's serial")
ok(st["dirty_blocks"] == 0 and st["committed_size"] == 3 * BS + 100 and st["size"] == 3 * BS + 100,
   "stat(fd) after writeout: dirty %d, size %d, committed_size %d"
   % (st["dirty_blocks"], st["size"], st["committed_size"]))
ok(st["writeouts"] == 1 and st["storeblk_calls"] >= 2, "stat counts writeouts %d, storeblk_calls %d"
   % (st["writeouts"], st["storeblk_calls"]))

# writeout(store only): stored, but the block stays changed.
os.pwrite(fd, b"C" * 10, BS)
res = bigfilefs.writeout(fd, store=True, markstored=False)
st = bigfilefs.stat(fd)
ok(res["blocks"] == 1 and st["dirty_blocks"] == 1, "writeout(markstored=False): %r, dirty still %d"
   % (res, st["dirty_blocks"]))
res = bigfilefs.writeout(fd)
ok(res["blocks"] == 1 and bigfilefs.stat(fd)["dirty_blocks"] == 0, "writeout again: %r, now clean" % res)
ok(raises(errno.EINVAL, bigfilefs.writeout, fd, store=False, markstored=False),
   "writeout with no flag -> EINVAL")
ok(res["serial"] > first_serial, "each commit has a greater serial: %d" % res["serial"])
res = bigfilefs.writeout(fd)
ok(res["blocks"] == 0 and res["serial"] == bigfilefs.stat(fd)["serial"],
   "writeout with nothing to commit -> the serial the content is as of: %r" % res)

# discard through a file object: the mapping shows the committed data again.
with open(path, "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    m[0:5] = b"ZZZZZ"
    m[2 * BS] = 7
    res = bigfilefs.discard(f)
    ok(m[0:5] == b"AAAAA" and m[2 * BS] == 0, "discard(file object) -> %r; mapping shows committed data" % res)
    m.close()
ok(os.pread(fd, 5, 0) == b"AAAAA", "read after discard sees committed data")

# reclaim: the daemon's clean blocks go; the data stays readable.
os.pread(fd, BS, 0)
res = bigfilefs.reclaim(path)
st = bigfilefs.stat(path)
ok(isinstance(res["blocks"], int) and st["loaded_blocks"] == 0,
   "reclaim -> %r; loaded_blocks %d" % (res, st["loaded_blocks"]))
ok(os.pread(fd, 5, 3 * BS) == b"BBBBB", "read after reclaim")

# invalidate: a range, a single block, and bad ranges.
before = bigfilefs.stat(fd)["invalidated_blocks"]
os.pread(fd, 4 * BS, 0)
ok(bigfilefs.invalidate(fd, 0, 4) is None, "invalidate(fd, 0, 4)")
bigfilefs.invalidate(path, 3)
ok(os.pread(fd, 5, 3 * BS) == b"BBBBB", "read after invalidate reloads committed data")
ok(bigfilefs.stat(fd)["invalidated_blocks"] > before, "stat counts invalidated blocks")
ok(raises(errno.EINVAL, bigfilefs.invalidate, fd, 0, 0), "invalidate count 0 -> EINVAL")
ok(raises(errno.EINVAL, bigfilefs.invalidate, fd, (1 << 64) - 1, 2), "invalidate overflowing range -> EINVAL")
os.close(fd)

# A read-only file may not change the file (EBADF, as write(2)); it may
# still ask for the state and drop clean data. The changes a writable fd
# made survive the refused requests.
wfd = os.open(path, os.O_RDWR)
os.pwrite(wfd, b"CCCCC", 0)
rfd = os.open(path, os.O_RDONLY)
ok(raises(errno.EBADF, bigfilefs.writeout, rfd), "writeout(read-only fd) -> EBADF")
ok(raises(errno.EBADF, bigfilefs.discard, rfd), "discard(read-only fd) -> EBADF")
ok(raises(errno.EBADF, bigfilefs.invalidate, rfd, 0, 4), "invalidate(read-only fd) -> EBADF")
ok(raises(errno.EBADF, bigfilefs.set_blksize, rfd, 4096), "set_blksize(read-only fd) -> EBADF")
ok(bigfilefs.sync(rfd) >= first_serial, "sync(read-only fd) works")
ok(bigfilefs.conflicts(rfd) == ([], False), "conflicts(read-only fd): none")
with open(path, "rb") as f:
    ok(raises(errno.EBADF, bigfilefs.discard, f), "discard(file object opened 'rb') -> EBADF")
st = bigfilefs.stat(rfd)
ok(st["size"] == os.fstat(rfd).st_size, "stat(read-only fd) works: size %d" % st["size"])
ok(isinstance(bigfilefs.reclaim(rfd)["blocks"], int), "reclaim(read-only fd) works")
os.fsync(wfd)   # the change reaches the daemon, then a commit must find it
ok(bigfilefs.stat(rfd)["dirty_blocks"] == 1, "the writer's change is still uncommitted")
res = bigfilefs.writeout(wfd)
ok(res["blocks"] == 1, "writeout(writable fd) commits the writer's change: %r" % res)
ok(os.pread(rfd, 5, 0) == b"CCCCC", "the committed change reads back")
os.close(rfd)
os.close(wfd)

# Two mounts of one database: a conflict, and the two ways out.
if mnt2:
    p2 = os.path.join(mnt2, "m")
    ok(bigfilefs.sync(p2) >= bigfilefs.stat(path)["serial"], "sync on the other mount catches up")
    with open(p2, "rb") as f:
        ok(f.read(5) == b"CCCCC", "the other mount reads the commit")
    a, b = os.open(path, os.O_RDWR), os.open(p2, os.O_RDWR)
    os.pwrite(a, b"a" * 10, 2 * BS)
    os.pwrite(b, b"b" * 10, 2 * BS + 100)
    os.pwrite(b, b"b" * 10, 4 * BS)
    sa = bigfilefs.writeout(a)["serial"]
    try:
        bigfilefs.writeout(p2)
        ok(False, "writeout over the other mount's commit raised nothing")
    except bigfilefs.ConflictError as e:
        ok(isinstance(e, OSError) and e.errno == errno.ESTALE and e.filename == p2,
           "writeout(path) -> ConflictError, an OSError with errno ESTALE: %r" % (e,))
        ok(e.ranges == [(2, 1)] and not e.size_conflict,
           "ConflictError.ranges: %r, size_conflict %r" % (e.ranges, e.size_conflict))
    ok(raises(errno.ESTALE, bigfilefs.writeout, b), "writeout(fd) -> ESTALE again")
    ok(bigfilefs.conflicts(p2) == ([(2, 1)], False), "conflicts(): %r" % (bigfilefs.conflicts(p2),))
    st = bigfilefs.stat(b)
    ok(st["conflict_blocks"] == 1 and st["dirty_blocks"] == 2,
       "stat: conflict_blocks %d, dirty_blocks %d: every change kept"
       % (st["conflict_blocks"], st["dirty_blocks"]))
    res = bigfilefs.writeout(b, overwrite=True)
    ok(res["serial"] > sa and res["conflict_blocks"] == 1 and res["blocks"] == 2,
       "writeout(overwrite=True) wins: %r" % res)
    ok(bigfilefs.sync(a) >= res["serial"], "sync returns the serial it reached")
    ok(os.pread(a, 20, 2 * BS + 90) == b"\0" * 10 + b"b" * 10,
       "the first mount reads the overwriting commit")
    os.close(a)
    os.close(b)

# Not a bigfile: the mount's root directory.
dfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
ok(raises(errno.ENOTTY, bigfilefs.stat, dfd), "stat on the mount root -> ENOTTY")
os.close(dfd)

sys.exit(1 if failures else 0)
