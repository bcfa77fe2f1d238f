# SPDX-License-Identifier: MIT
"""bigfilefs benchmarks — figure 13: an array written through numpy.memmap.

    npwrite.py PATH LENGTH SEED

Maps the first LENGTH bytes of PATH (an existing file of at least that
size: a bigfile, or a plain file) as a numpy.memmap of uint64 words, writes
the benchmark pattern into it (w(i) = i * MUL + SEED, bench/pattern.h) a
64 MiB chunk at a time, as a program building a result bigger than RAM
does, then makes it durable: on a bigfile a writeout (the ioctl, through
the bigfilefs module), on any other file fsync(2). Prints
"total_seconds writeout_or_fsync_seconds".

bfbench seqread PATH --length LENGTH --seed SEED checks the result.
"""
import os
import sys
import time

import numpy as np

import bigfilefs

MUL = np.uint64(0x9E3779B97F4A7C15)
CHUNK = 64 << 20  # bytes


def main():
    path, length, seed = sys.argv[1], int(sys.argv[2]), np.uint64(int(sys.argv[3]))
    if length % CHUNK:
        sys.exit("npwrite: LENGTH must be a multiple of 64 MiB")
    words = CHUNK // 8
    t0 = time.monotonic()
    a = np.memmap(path, dtype=np.uint64, mode="r+", shape=(length // 8,))
    idx = np.arange(words, dtype=np.uint64)
    for start in range(0, length // 8, words):
        chunk = a[start:start + words]
        np.multiply(idx + np.uint64(start), MUL, out=chunk)
        chunk += seed
    t1 = time.monotonic()
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            bigfilefs.stat(fd)
            on_bigfile = True
        except OSError:
            on_bigfile = False
        if on_bigfile:
            bigfilefs.writeout(fd)
        else:
            os.fsync(fd)
    finally:
        os.close(fd)
    t2 = time.monotonic()
    del a
    print("%.3f %.3f" % (t2 - t0, t2 - t1))


if __name__ == "__main__":
    main()
