/* SPDX-License-Identifier: MIT */
/* bigfilefs benchmarks — shared helpers: clock, sizes, cold caches, RNG.
 *
 * Every function returns 0 or a negative errno value unless said otherwise;
 * none keeps global state. Not thread-safe where it says so.
 */
#ifndef BIGFILEFS_BENCH_UTIL_H
#define BIGFILEFS_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Seconds on CLOCK_MONOTONIC (system-wide, so comparable across processes). */
double bench_now(void);

/* Parse a size with an optional K/M/G/T suffix (powers of 1024, optional
 * "i"/"iB"/"B") into *out. -EINVAL on anything else. */
int bench_parse_size(const char *s, uint64_t *out);

/* How a measurement makes the file's data "cold" before it runs. */
enum bench_cold {
    BENCH_COLD_NONE, /* leave every cache as it is (warm measurements) */
    /* bigfilefs: BIGFILE_IOC_RECLAIM drops the daemon's and the kernel's
     * clean pages of the file; the database file stays in the OS page
     * cache */
    BENCH_COLD_RECLAIM,
    /* RECLAIM (on bigfilefs) plus sync and /proc/sys/vm/drop_caches=3: the
     * database file leaves the OS page cache too */
    BENCH_COLD_DROP,
};

/* Parse "none", "reclaim" or "drop". -EINVAL otherwise. */
int bench_parse_cold(const char *s, enum bench_cold *out);

/* Make `path` cold as `mode` says. RECLAIM on a file that is not on a FUSE
 * mount is a no-op (tmpfs pages cannot be dropped without losing them).
 * Errors: those of open(2), ioctl(2), or writing drop_caches. */
int bench_make_cold(const char *path, enum bench_cold mode);

/* Nonzero when path lies on a FUSE filesystem (statfs magic). */
int bench_on_fuse(const char *path);

/* splitmix64: a small, good, seedable generator. State is the caller's. */
static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Pick `count` distinct values in [0, n) (count <= n) into out[], in random
 * order. O(count^2) time: meant for count <= a few thousand. */
void bench_pick_distinct(uint64_t *out, size_t count, uint64_t n, uint64_t seed);

/* qsort comparator for double. */
int bench_cmp_double(const void *a, const void *b);

/* The q-quantile (0..1, nearest rank) of n sorted values. */
double bench_quantile(const double *sorted, size_t n, double q);

#endif /* BIGFILEFS_BENCH_UTIL_H */
