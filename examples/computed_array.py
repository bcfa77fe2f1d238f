#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""computed_array — bigfiles whose blocks are computed when first touched.

    bigfilefs -o ro "exec:python3 computed_array.py [--size SIZE] [--seed S]" MOUNT
    computed_array.py --check MOUNT     (from another process)

The block server serves two read-only files, each block computed with
numpy the first time a process reads it, straight into the memory the
daemon shares with the server (bigfilefs.server):

  words.u64       SIZE bytes (default 1 GiB; suffixes K, M, G) of
                  little-endian uint64: word i is i * 0x9E3779B97F4A7C15 + S
                  mod 2**64 — the pattern of bigfilefs' benchmarks
                  (bench/pattern.h), so bench/bfbench can read and check it
  mandelbrot.u8   a 2048 x 2048 image of Mandelbrot escape counts, one band
                  of 32 rows per 64 KiB block

--check maps both with numpy.memmap, as any program would, and checks a
few places of each against the same formulas. Needs numpy.
"""

import os
import sys

import numpy as np

from bigfilefs.server import BigFile, serve

MUL = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1
SIDE, MAXITER = 2048, 64


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(s[:-1]) * units[s[-1].upper()] if s[-1].upper() in units else int(s)


class Words(BigFile):
    """word i = i * MUL + seed: one multiply-add, vectorized."""

    def __init__(self, size, seed):
        super().__init__(size=size)
        self.seed = seed
        n = self.blksize // 8
        self.base = np.arange(n, dtype="<u8") * np.uint64(MUL)  # k * MUL, wrapping
        self.n = n

    def loadblk(self, blk, buf):
        a = np.frombuffer(buf, dtype="<u8")
        # word blk*n + k = (blk*n)*MUL + seed + k*MUL
        np.add(self.base, np.uint64((blk * self.n * MUL + self.seed) & M64), out=a)


def mandel_rows(y0, rows):
    """Escape counts (uint8) of rows [y0, y0 + rows) of the image."""
    x = np.linspace(-2.0, 0.6, SIDE)
    y = np.linspace(-1.3, 1.3, SIDE)[y0:y0 + rows]
    c = x[np.newaxis, :] + 1j * y[:, np.newaxis]
    z = np.zeros_like(c)
    count = np.zeros(c.shape, dtype=np.uint8)
    alive = np.ones(c.shape, dtype=bool)
    for _ in range(MAXITER):
        z[alive] = z[alive] * z[alive] + c[alive]
        escaped = alive & (np.abs(z) > 2.0)
        alive &= ~escaped
        count[alive] += 1
    return count


class Mandelbrot(BigFile):
    """A SIDE x SIDE image, SIDE * 32 bytes (32 rows) per block."""

    def __init__(self):
        super().__init__(size=SIDE * SIDE, blksize=SIDE * 32)

    def loadblk(self, blk, buf):
        rows = self.blksize // SIDE
        np.frombuffer(buf, dtype=np.uint8).reshape(rows, SIDE)[:] = mandel_rows(blk * rows, rows)


def check(mount):
    words = np.memmap(os.path.join(mount, "words.u64"), dtype="<u8", mode="r")
    seed = int(words[0])
    for i in (0, 1, 262143, 262144, len(words) // 2 + 3, len(words) - 1):
        want = (i * MUL + seed) & M64
        if int(words[i]) != want:
            sys.exit("computed_array: FAIL: words[%d] = %d, expected %d" % (i, words[i], want))
    print("words.u64: %d words, every one checked is i * MUL + %d" % (len(words), seed))
    image = np.memmap(os.path.join(mount, "mandelbrot.u8"), dtype=np.uint8, mode="r",
                      shape=(SIDE, SIDE))
    for y0 in (0, SIDE // 2, SIDE - 32):
        if not np.array_equal(image[y0:y0 + 32], mandel_rows(y0, 32)):
            sys.exit("computed_array: FAIL: mandelbrot rows %d.. differ" % y0)
    inside = int((image[SIDE // 2] == MAXITER).sum())
    print("mandelbrot.u8: %dx%d, rows checked; %d points of the middle row never escape"
          % (SIDE, SIDE, inside))
    del words, image


def main(argv):
    if len(argv) == 3 and argv[1] == "--check":
        return check(argv[2])
    size, seed = 1 << 30, 7
    args = argv[1:]
    while args:
        opt, val = args[0], args[1] if len(args) > 1 else None
        if opt == "--size" and val:
            size = parse_size(val)
        elif opt == "--seed" and val:
            seed = int(val)
        else:
            sys.exit("usage: computed_array.py [--size SIZE] [--seed S] | --check MOUNT")
        args = args[2:]
    serve({"words.u64": Words(size, seed), "mandelbrot.u8": Mandelbrot()},
          name="computed_array")


if __name__ == "__main__":
    main(sys.argv)
