/* SPDX-License-Identifier: MIT */
/* bigfilefs benchmarks — the data pattern every benchmark writes and checks.
 *
 * The 64-bit little-endian word at byte offset 8*i of a benchmark file is
 *
 *     w(i) = i * BENCH_PATTERN_MUL + seed
 *
 * It is never an all-zero block (so nothing is stored as a hole), costs one
 * multiply-add to make, and the sum of the words over any range has a closed
 * form (bench_pattern_sum), so every reader proves it read the right bytes
 * without a second pass. All arithmetic is modulo 2^64.
 */
#ifndef BIGFILEFS_BENCH_PATTERN_H
#define BIGFILEFS_BENCH_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#define BENCH_PATTERN_MUL UINT64_C(0x9E3779B97F4A7C15)

/* Fill buf (n bytes, n a multiple of 8, buf 8-aligned) with the pattern of
 * the words starting at byte offset `off` (a multiple of 8). */
static inline void bench_pattern_fill(uint64_t *buf, size_t n, uint64_t off, uint64_t seed)
{
    uint64_t i0 = off / 8;
    for (size_t k = 0; k < n / 8; k++)
        buf[k] = (i0 + k) * BENCH_PATTERN_MUL + seed;
}

/* Sum (mod 2^64) of the pattern words of bytes [off, off + len), both
 * multiples of 8: MUL * (sum of i over the range) + count * seed. */
static inline uint64_t bench_pattern_sum(uint64_t off, uint64_t len, uint64_t seed)
{
    unsigned __int128 a = off / 8, b = (off + len) / 8;
    /* sum_{i=a}^{b-1} i = (b(b-1) - a(a-1)) / 2, exact in 128 bits */
    unsigned __int128 s = (b * (b - 1) - (a ? a * (a - 1) : 0)) / 2;
    return (uint64_t)s * BENCH_PATTERN_MUL + (uint64_t)(b - a) * seed;
}

/* Sum of the 64-bit words of a buffer (n a multiple of 8). */
static inline uint64_t bench_sum_words(const uint64_t *p, size_t n)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t k = 0, w = n / 8;
    for (; k + 4 <= w; k += 4) {
        s0 += p[k];
        s1 += p[k + 1];
        s2 += p[k + 2];
        s3 += p[k + 3];
    }
    for (; k < w; k++)
        s0 += p[k];
    return s0 + s1 + s2 + s3;
}

#endif /* BIGFILEFS_BENCH_PATTERN_H */
