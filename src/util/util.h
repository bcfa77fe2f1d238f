/* SPDX-License-Identifier: MIT */
/* bigfilefs — util: small helpers every part of bigfilefs may use.
 *
 * libbfutil has no dependency but libc: the core, the backends, the daemon
 * and bigfilectl link it (bigfilectl links nothing else of ours, so that
 * parsing "2M" does not pull in SQLite). No function here takes a lock or
 * keeps state; all are safe to call from any thread.
 */
#ifndef BIGFILEFS_UTIL_UTIL_H
#define BIGFILEFS_UTIL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Parse a size with an optional K/M/G/T suffix (powers of 1024, with an
 * optional trailing "i"/"iB"/"B") into *out. Digits only before the suffix:
 * no sign, no blanks, no hex or octal prefix. Returns 0, or -EINVAL on
 * anything else or on overflow. */
int bf_parse_size(const char *s, uint64_t *out);

/* Nanoseconds since the epoch (CLOCK_REALTIME): for times stored with
 * files. */
int64_t bf_now_ns(void);

/* Nanoseconds of CLOCK_MONOTONIC: for intervals and deadlines. */
int64_t bf_mono_ns(void);

/* The time `ms` milliseconds from now on clock `clk` (CLOCK_REALTIME,
 * CLOCK_MONOTONIC), for pthread_cond_timedwait: a bounded wait. */
void bf_deadline(clockid_t clk, unsigned ms, struct timespec *out);

/* Nonzero when the n bytes at p are all zero. */
int bf_all_zero(const void *p, size_t n);

#endif /* BIGFILEFS_UTIL_UTIL_H */
