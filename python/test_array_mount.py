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


sys.exit(1 if failures else 0)
