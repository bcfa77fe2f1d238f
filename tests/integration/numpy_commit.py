# SPDX-License-Identifier: MIT
"""Change a bigfile through numpy.memmap and commit it with the WRITEOUT
ioctl — a Python user's view of bigfilefs, driven by test_data.

usage: numpy_commit.py FILE
FILE is a 1 MiB bigfile with 64 KiB blocks. Writes float64 k*0.5 into
elements 16384 .. 32767 (bytes 128 KiB .. 256 KiB: blocks 2 and 3) and 42.0
into element 100000 (block 12), without flush, then commits and prints the
writeout's result as "key: value" lines. Exit 77 when numpy is missing.
"""
import fcntl
import struct
import sys

try:
    import numpy as np
except ImportError:
    sys.exit(77)

# _IOWR(0xBF, 1, struct bigfile_writeout): dir 3 (read|write), size 24
BIGFILE_IOC_WRITEOUT = (3 << 30) | (24 << 16) | (0xBF << 8) | 1
STORE, MARKSTORED = 1, 2

path = sys.argv[1]
a = np.memmap(path, dtype="<f8", mode="r+")
assert a.shape == (131072,), a.shape
assert not a.any(), "a fresh file must read as zeros"
a[16384:32768] = np.arange(16384, dtype="<f8") * 0.5
a[100000] = 42.0
del a   # unmapped without flush: the kernel writes the pages back

# WRITEOUT needs the file open for writing (EBADF through a read-only fd).
with open(path, "r+b") as f:
    arg = struct.pack("=IIQQ", STORE | MARKSTORED, 0, 0, 0)
    res = fcntl.ioctl(f.fileno(), BIGFILE_IOC_WRITEOUT, arg)
_, _, blocks, nbytes = struct.unpack("=IIQQ", res)
print("blocks: %d" % blocks)
print("bytes: %d" % nbytes)
