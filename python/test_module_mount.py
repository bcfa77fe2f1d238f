# SPDX-License-Identifier: MIT
"""Exercise every function of the bigfilefs Python module on a real mount.

    test_module_mount.py MOUNTPOINT

Run by python/run-module-test.sh, which mounts a fresh database on
MOUNTPOINT. Each check prints "ok: ..." or "FAIL: ..."; exits 1 on any
failure."""

import errno
import mmap
import os
import sys

sys.dont_write_bytecode = True
import bigfilefs  # noqa: E402

mnt = sys.argv[1]
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
ok(res == {"blocks": 2, "bytes": 2 * BS}, "writeout(path) -> %r" % res)
st = bigfilefs.stat(fd)
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

# Not a bigfile: the mount's root directory.
dfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
ok(raises(errno.ENOTTY, bigfilefs.stat, dfd), "stat on the mount root -> ENOTTY")
os.close(dfd)

sys.exit(1 if failures else 0)
