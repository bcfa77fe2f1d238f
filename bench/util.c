/* SPDX-License-Identifier: MIT */
/* bigfilefs benchmarks — shared helpers (see util.h). */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <bigfile/ioctl.h>

#define FUSE_SUPER_MAGIC 0x65735546

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int bench_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (shift && *end == 'i')
        end++;
    if (*end == 'B')
        end++;
    if (*end)
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

int bench_parse_cold(const char *s, enum bench_cold *out)
{
    if (!strcmp(s, "none"))
        *out = BENCH_COLD_NONE;
    else if (!strcmp(s, "reclaim"))
        *out = BENCH_COLD_RECLAIM;
    else if (!strcmp(s, "drop"))
        *out = BENCH_COLD_DROP;
    else
        return -EINVAL;
    return 0;
}

int bench_on_fuse(const char *path)
{
    struct statfs sf;
    return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == FUSE_SUPER_MAGIC;
}

static int reclaim(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct bigfile_count c;
    memset(&c, 0, sizeof(c));
    int r = ioctl(fd, BIGFILE_IOC_RECLAIM, &c) < 0 ? -errno : 0;
    close(fd);
    return r;
}

static int drop_caches(void)
{
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = write(fd, "3\n", 2) == 2 ? 0 : -errno;
    close(fd);
    return r;
}

int bench_make_cold(const char *path, enum bench_cold mode)
{
    int r = 0;
    if (mode == BENCH_COLD_NONE)
        return 0;
    if (bench_on_fuse(path))
        r = reclaim(path);
    if (r == 0 && mode == BENCH_COLD_DROP)
        r = drop_caches();
    return r;
}

void bench_pick_distinct(uint64_t *out, size_t count, uint64_t n, uint64_t seed)
{
    uint64_t st = seed;
    for (size_t k = 0; k < count; k++) {
        for (;;) {
            uint64_t v = bench_rand(&st) % n;
            size_t j;
            for (j = 0; j < k && out[j] != v; j++)
                ;
            if (j == k) {
                out[k] = v;
                break;
            }
        }
    }
}

int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_quantile(const double *sorted, size_t n, double q)
{
    if (n == 0)
        return NAN;
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}
