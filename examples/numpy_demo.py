#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""numpy_demo — a numpy array backed by a bigfile: change, commit, discard.

    numpy_demo.py FILE           create FILE on a bigfilefs mount (or reuse
                                 it) as 1 Mi float64 values, set every
                                 1000th value through numpy.memmap, commit
                                 with bigfilefs.writeout(), change more and
                                 throw that away with bigfilefs.discard(),
                                 then read the array back;
    numpy_demo.py --check FILE   only check what the first form committed
                                 (e.g. after a remount).

Prints each step; exits 0 when every check holds, 1 otherwise. Needs numpy
and the bigfilefs module (installed by `make install`, or on PYTHONPATH).
See bigfilefs(8) and ioctl_bigfile(2).
"""

import os
import sys

import numpy as np

import bigfilefs

N = 1 << 20                 # float64 values: 8 MiB
STEP = 1000


def expected():
    a = np.zeros(N, dtype="f8")
    a[::STEP] = np.arange(0, N, STEP) * 0.5
    return a


def check(path):
    size = os.stat(path).st_size
    if size != N * 8:
        sys.exit("numpy_demo: FAIL: size is %d, expected %d" % (size, N * 8))
    a = np.memmap(path, dtype="f8", mode="r")
    if not np.array_equal(a, expected()):
        bad = np.flatnonzero(a != expected())
        sys.exit("numpy_demo: FAIL: %d values differ, first at index %d" % (len(bad), bad[0]))
    print("read back %d values through numpy.memmap: as committed" % N)
    del a


def demo(path):
    # Create the file and give it its size: both are cheap, the file is
    # sparse, and the size is an uncommitted change until the writeout.
    with open(path, "ab"):
        pass
    os.truncate(path, N * 8)
    st = bigfilefs.stat(path)
    print("%s: %d float64 values, block size %d, committed size %d"
          % (path, N, st["blksize"], st["committed_size"]))

    a = np.memmap(path, dtype="f8", mode="r+", shape=(N,))
    a[::STEP] = np.arange(0, N, STEP) * 0.5
    print("set a[::%d] through numpy.memmap (no flush)" % STEP)

    res = bigfilefs.writeout(path)
    print("writeout:", res)
    st = bigfilefs.stat(path)
    print("stat after writeout: dirty_blocks %d, committed_size %d, writeouts %d"
          % (st["dirty_blocks"], st["committed_size"], st["writeouts"]))
    if res["blocks"] < 1 or st["dirty_blocks"] != 0 or st["committed_size"] != N * 8:
        sys.exit("numpy_demo: FAIL: the writeout did not commit everything")

    a[:] = -1.0
    print("set every value to -1 through the mapping; a[0] = %g" % a[0])
    res = bigfilefs.discard(path)
    print("discard:", res)
    if not np.array_equal(a, expected()):
        sys.exit("numpy_demo: FAIL: the mapping does not show the committed data after discard")
    print("the same mapping shows the committed data again; a[%d] = %g" % (STEP, a[STEP]))
    del a
    check(path)


def main(argv):
    if len(argv) == 3 and argv[1] == "--check":
        check(argv[2])
    elif len(argv) == 2 and not argv[1].startswith("-"):
        demo(argv[1])
    else:
        sys.stderr.write("usage: numpy_demo.py FILE | numpy_demo.py --check FILE\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
