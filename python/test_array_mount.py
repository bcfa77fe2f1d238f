# SPDX-License-Identifier: MIT
"""bigfilefs.array() on a real mount: the layout stored with the file and
read back by another process (on the other mount of the database when
given), growth of the first axis, transactions over it, refusals.

    test_array_mount.py MOUNTPOINT [MOUNTPOINT2]

Run by python/run-module-test.sh with an interpreter that has numpy
(exit 77 without). Each check prints "ok: ..." or "FAIL: ..."; exits 1 on
any failure."""

import os
import subprocess
import sys

sys.dont_write_bytecode = True
try:
    import numpy
except ImportError:
    print("skip: numpy is not installed for %s" % sys.executable)
    sys.exit(77)
import bigfilefs  # noqa: E402

mnt = sys.argv[1]
mnt2 = sys.argv[2] if len(sys.argv) > 2 else None
failures = 0


def ok(cond, what):
    global failures
    print("%s: %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        failures += 1


class Boom(Exception):
    pass


import subprocess
apath = os.path.join(mnt, "arr")
a = bigfilefs.array(apath, dtype="<f8", shape=(4, 3))
ok(a.shape == (4, 3) and a.dtype == numpy.dtype("<f8") and os.stat(apath).st_size == 96,
   "array() creates a file sized to fit: %r %s, %d bytes" % (a.shape, a.dtype,
                                                            os.stat(apath).st_size))
ok(os.getxattr(apath, bigfilefs.ARRAY_XATTR).startswith(b"{"),
   "the layout is in the extended attribute %s" % bigfilefs.ARRAY_XATTR)
a[:] = numpy.arange(12).reshape(4, 3)
a.flush()
del a
bigfilefs.writeout(apath)
code = ("import sys, bigfilefs; a = bigfilefs.array(sys.argv[1]); "
        "print(a.dtype.str, a.shape, int(a.sum()), int(a[3, 2]))")
out = subprocess.run([sys.executable, "-c", code, apath.replace(mnt, mnt2) if mnt2 else apath],
                     stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
ok(out == "<f8 (4, 3) 66 11\n",
   "another process%s opens array(path) with no dtype: %r"
   % (" on the other mount" if mnt2 else "", out))
b = bigfilefs.array(apath, shape=(6, 3))
ok(b.shape == (6, 3) and int(b[:4].sum()) == 66 and int(b[4:].sum()) == 0,
   "growing the first axis keeps the data: %r, sum %d" % (b.shape, int(b.sum())))
b[5, 0] = 7
b.flush()
del b
bigfilefs.writeout(apath)
c = bigfilefs.array(apath, mode="r")
ok(c.shape == (6, 3) and c[5, 0] == 7, "the grown array reads back: %r" % (c.shape,))
del c
with bigfilefs.transaction(apath):
    g = bigfilefs.array(apath, shape=(8, 3))
    del g
    try:
        with bigfilefs.transaction(apath):
            pass
    except RuntimeError:
        pass
d = bigfilefs.array(apath)
ok(d.shape == (8, 3), "a growth committed by a transaction: %r" % (d.shape,))
del d
try:
    with bigfilefs.transaction(apath):
        g = bigfilefs.array(apath, shape=(10, 3))
        g[9, 0] = 1
        del g
        raise Boom()
except Boom:
    pass
d = bigfilefs.array(apath)
ok(d.shape == (8, 3), "a growth discarded: the shape follows the file: %r" % (d.shape,))
del d
for bad, kw in (("dtype", {"dtype": "i4"}), ("shrink", {"shape": (2, 3)}),
                ("axis", {"shape": (8, 4)})):
    try:
        bigfilefs.array(apath, **kw)
        ok(False, "array(%s) accepted" % bad)
    except ValueError as e:
        ok(True, "array(%s) refused: %s" % (bad, e))
try:
    bigfilefs.array(os.path.join(mnt, "none"))
    ok(False, "array() of a missing file without dtype accepted")
except FileNotFoundError:
    ok(True, "array() of a missing file without dtype: FileNotFoundError")


# access=: the advice reaches the kernel (VmFlags "rr" / "sr" of the
# mapping), and a cold fault of a randomly advised array reads its page
# only, where the default reads around it.
def vmflags(arr):
    start = "%x-" % arr.ctypes.data
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if not first.endswith(":"):          # a mapping's header: "start-end perms ..."
                inside = first.startswith(start)
            elif inside and first == "VmFlags:":
                return line.split()[1:]
    return None


def resident_pages(arr):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    page = os.sysconf("SC_PAGE_SIZE")
    n = (arr.nbytes + page - 1) // page
    vec = (ctypes.c_ubyte * n)()
    if libc.mincore(ctypes.c_void_p(arr.ctypes.data), ctypes.c_size_t(arr.nbytes), vec) != 0:
        raise OSError(ctypes.get_errno(), "mincore")
    return sum(v & 1 for v in vec)


rpath = os.path.join(mnt, "scattered")
r = bigfilefs.array(rpath, dtype="<u8", shape=(1 << 20,))   # 8 MiB, four 2 MiB blocks
r[:] = numpy.arange(1 << 20, dtype="<u8")
r.flush()
del r
bigfilefs.writeout(rpath)
for access, flag in (("random", "rr"), ("sequential", "sr")):
    r = bigfilefs.array(rpath, access=access)
    flags = vmflags(r)
    ok(flags is not None and flag in flags,
       "array(access=%r) advises the mapping: VmFlags %s" % (access, flags))
    del r
counts = {}
for access in (None, "random"):
    bigfilefs.reclaim(rpath)
    r = bigfilefs.array(rpath, mode="r", access=access)
    before = resident_pages(r)
    k = 3 * (1 << 17) + 12345                     # byte 3 MiB + 98760: in the second block
    v = int(r[k])
    counts[access] = (before, resident_pages(r))
    ok(v == k, "array(access=%r) reads the committed word: %d" % (access, v))
    del r
ok(counts["random"] == (0, 1) and counts[None][0] == 0 and counts[None][1] > 1,
   "a cold fault reads its page only with access='random', more without: "
   "pages cached before/after %r" % (counts,))
try:
    bigfilefs.array(rpath, access="fast")
    ok(False, "array(access='fast') accepted")
except ValueError as e:
    ok(True, "array(access='fast') refused: %s" % e)


sys.exit(1 if failures else 0)
