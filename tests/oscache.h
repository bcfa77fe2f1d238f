/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests: what the OS caches of a file, for the tests of the
 * reads around the OS cache (-o dio; sqlite_internal.h, sq_blocks_read_fd)
 * in the engine's and the mount's tests, and of the window a fault reads
 * (-o readahead). Criterion asserts; one test process at a time per file. */
#ifndef BIGFILEFS_TESTS_OSCACHE_H
#define BIGFILEFS_TESTS_OSCACHE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The pages of path that the OS caches (mincore(2) of a mapping: another
 * way to ask than the engine's cachestat(2)). */
static inline size_t oc_cached_pages(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    off_t size = lseek(fd, 0, SEEK_END);
    size_t page = (size_t)getpagesize(), n = ((size_t)size + page - 1) / page, cached = 0;
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    cr_assert_neq(m, MAP_FAILED, "mmap %s: %s", path, strerror(errno));
    unsigned char *vec = malloc(n);
    cr_assert_eq(mincore(m, (size_t)size, vec), 0);
    for (size_t i = 0; i < n; i++)
        cached += vec[i] & 1;
    free(vec);
    munmap(m, (size_t)size);
    close(fd);
    return cached;
}

/* Drop path (a block file) from the OS cache and check that it is gone;
 * skip the test where direct reads cannot be told from buffered ones: a
 * file in memory (tmpfs), a kernel that cannot say what it caches
 * (cachestat(2), Linux 6.5), a file system that cannot read it directly
 * (the engine reads buffered there). */
static inline void oc_evict(const char *path)
{
    struct statfs sf;
    struct statx sx;
    cr_assert_eq(statfs(path, &sf), 0, "statfs %s: %s", path, strerror(errno));
    if (sf.f_type == TMPFS_MAGIC)
        cr_skip_test("%s is on tmpfs: its pages are the file", path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    uint64_t range[2] = { 0, 1 }, cs[5];
    if (syscall(451 /* cachestat */, fd, range, cs, 0) < 0 && errno == ENOSYS)
        cr_skip_test("this kernel cannot say what the OS caches (cachestat: Linux 6.5)");
    int dfd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (dfd < 0 || (statx(dfd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
                    (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align == 0))
        cr_skip_test("the file system of %s cannot read it directly", path);
    close(dfd);
    cr_assert_eq(fdatasync(fd), 0);
    cr_assert_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
    cr_assert_eq(oc_cached_pages(path), 0, "%s: pages left in the OS cache", path);
}

#endif
