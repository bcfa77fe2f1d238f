/* SPDX-License-Identifier: MIT */
/* bigfilefs — util: size parsing, clocks, zero test (util.h). */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

int bf_parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0, mult = 1;
    const char *p = s;

    if (!s || !out)
        return -EINVAL;
    /* Digits only: no sign, no leading blanks, no hex/octal prefixes. */
    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL; /* overflow */
        v = v * 10 + d;
    }
    int unit = 0;
    switch (*p) {
    case 'k':
    case 'K':
        mult = (uint64_t)1 << 10;
        unit = 1;
        p++;
        break;
    case 'm':
    case 'M':
        mult = (uint64_t)1 << 20;
        unit = 1;
        p++;
        break;
    case 'g':
    case 'G':
        mult = (uint64_t)1 << 30;
        unit = 1;
        p++;
        break;
    case 't':
    case 'T':
        mult = (uint64_t)1 << 40;
        unit = 1;
        p++;
        break;
    default:
        break;
    }
    /* Optional tail: "B" always; "i" and "iB" only after a unit letter. */
    if (unit && *p == 'i') {
        p++;
        if (*p == 'B' || *p == 'b')
            p++;
    } else if (*p == 'B' || *p == 'b') {
        p++;
    }
    if (*p != '\0')
        return -EINVAL;
    if (v > UINT64_MAX / mult)
        return -EINVAL; /* overflow */
    *out = v * mult;
    return 0;
}

static int64_t clock_ns(clockid_t clk)
{
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bf_now_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

void bf_deadline(clockid_t clk, unsigned ms, struct timespec *out)
{
    clock_gettime(clk, out);
    out->tv_sec += ms / 1000;
    out->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (out->tv_nsec >= 1000000000L) {
        out->tv_sec++;
        out->tv_nsec -= 1000000000L;
    }
}

int64_t bf_mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int bf_all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    /* Check a short head by hand, then compare the buffer with itself
     * shifted by 16 bytes: memcmp is vectorized, a byte loop is not. */
    size_t head = n < 16 ? n : 16;
    for (size_t i = 0; i < head; i++)
        if (c[i])
            return 0;
    return n <= 16 || memcmp(c, c + 16, n - 16) == 0;
}
