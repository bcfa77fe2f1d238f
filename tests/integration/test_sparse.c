/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: sparse files. lseek's SEEK_DATA and
 * SEEK_HOLE and st_blocks (du) see only the blocks that hold data, seen
 * from processes other than the writer, committed or not; and
 * `cp --sparse=always` makes a sparse copy without reading the holes. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define BS (2 * BFT_MB) /* bigfilectl create's default block size */

/* What a child process checks with lseek(2), and what it expects. */
struct seek_case {
    off_t off;
    int whence;
    off_t want; /* -1: fails with ENXIO */
};

struct seek_job {
    const char *path;
    const struct seek_case *cases;
    size_t ncases;
    int64_t want_blocks; /* st_blocks expected (512-byte units) */
};

/* In a child: every case, then st_blocks. Exit status: 0 ok, 10 + i for a
 * wrong case i, 2 for st_blocks, 1 for an unexpected failure. */
static int child_seek(void *arg)
{
    const struct seek_job *j = arg;
    int fd = open(j->path, O_RDONLY);
    if (fd < 0)
        return 1;
    for (size_t i = 0; i < j->ncases; i++) {
        const struct seek_case *c = &j->cases[i];
        errno = 0;
        off_t r = lseek(fd, c->off, c->whence);
        int ok = c->want < 0 ? (r == -1 && errno == ENXIO) : r == c->want;
        if (!ok) {
            fprintf(stderr, "case %zu: lseek(%lld, %s) = %lld (%s), want %lld\n", i,
                    (long long)c->off, c->whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE",
                    (long long)r, r < 0 ? strerror(errno) : "ok", (long long)c->want);
            close(fd);
            return 10 + (int)i;
        }
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return 1;
    }
    close(fd);
    if (st.st_blocks != j->want_blocks) {
        fprintf(stderr, "st_blocks %lld, want %lld\n", (long long)st.st_blocks,
                (long long)j->want_blocks);
        return 2;
    }
    return 0;
}

static void check_from_child(const struct seek_job *j, const char *what)
{
    int st = bft_run(child_seek, (void *)j, 30);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: child status %#x", what, st);
}

static uint64_t loads_of(const char *path)
{
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(path, &s), 0);
    return s.loadblk_calls;
}

/* A 1 GiB file with data in blocks 10, 11 and 300 (the last partially
 * written), written out. */
BFT_TEST_BOTH(sparse, committed_blocks_seek_du_and_cp, 120)
{
    char path[PATH_MAX];
    bft_path(path, "s");
    bft_create("s", NULL, "1G");
    bft_put_commit(path, 10 * BS, 2 * BS, 1);
    bft_put_commit(path, 300 * BS + 4096, 100, 2);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_blksize, BS);
    cr_assert_eq(st.st_size, (off_t)BFT_GB);

    const struct seek_case cases[] = {
        { 0, SEEK_DATA, 10 * BS },
        { 0, SEEK_HOLE, 0 },
        { 10 * BS + 5, SEEK_DATA, 10 * BS + 5 },
        { 10 * BS, SEEK_HOLE, 12 * BS },
        { 12 * BS, SEEK_DATA, 300 * BS },
        { 300 * BS, SEEK_HOLE, 301 * BS },
        { 301 * BS, SEEK_DATA, -1 },
        { (off_t)BFT_GB - 1, SEEK_HOLE, (off_t)BFT_GB - 1 },
        { (off_t)BFT_GB, SEEK_DATA, -1 },
        { (off_t)BFT_GB, SEEK_HOLE, -1 },
    };
    struct seek_job j = { path, cases, sizeof(cases) / sizeof(cases[0]), 3 * BS / 512 };
    check_from_child(&j, "committed");

    /* The same after a remount: nothing cached, all from the database
     * (the memory database does not survive one). */
    if (!bft.is_mem) {
        bft_remount();
        check_from_child(&j, "after a remount");
    }

    /* cp --sparse=always to a tmpfs: a sparse copy with the same content,
     * made without loading the holes. */
    char tdir[PATH_MAX], dst[PATH_MAX + 8];
    snprintf(tdir, sizeof(tdir), "%s/tmpfs", bft.dir);
    cr_assert_eq(mkdir(tdir, 0700), 0);
    cr_assert_eq(mount("tmpfs", tdir, "tmpfs", 0, "size=64m"), 0, "mount tmpfs: %s",
                 strerror(errno));
    snprintf(dst, sizeof(dst), "%s/copy", tdir);
    cr_assert_eq(bft_reclaim(path, NULL), 0);
    uint64_t loads = loads_of(path);
    char out[4096], err[4096];
    const char *const cp[] = { "cp", "--sparse=always", path, dst, NULL };
    int rc = bft_exec(out, sizeof(out), err, sizeof(err), cp, 60);
    cr_assert_eq(rc, 0, "cp: %d %s", rc, err);
    uint64_t cp_loads = loads_of(path) - loads;
    /* The 3 data blocks, and the kernel's readahead (1 MiB) around each
     * data run, that loads the neighbouring holes: a handful, not the 512
     * blocks of the file. */
    cr_assert_leq(cp_loads, 8, "cp loaded %llu blocks: it read the holes",
                  (unsigned long long)cp_loads);
    struct stat cst;
    cr_assert_eq(stat(dst, &cst), 0);
    cr_assert_eq(cst.st_size, (off_t)BFT_GB);
    cr_assert_leq(cst.st_blocks, 3 * BS / 512, "the copy is not sparse: %lld blocks",
                  (long long)cst.st_blocks);
    cr_assert_geq(cst.st_blocks, (2 * BS + 100) / 512);
    const char *const cmp[] = { "cmp", path, dst, NULL };
    rc = bft_exec(out, sizeof(out), err, sizeof(err), cmp, 60);
    cr_assert_eq(rc, 0, "cmp: %d %s %s", rc, out, err);
    cr_assert_eq(umount(tdir), 0);
}

/* Blocks written but not written out are data too, for every process;
 * a discard makes them holes again. */
BFT_TEST_BOTH(sparse, uncommitted_blocks_are_data, 60)
{
    char path[PATH_MAX];
    bft_path(path, "u");
    bft_create("u", NULL, "1G");
    bft_put_commit(path, 5 * BS, BS, 1);
    bft_put(path, 20 * BS, BS, 2);      /* dirty, not stored */
    bft_put(path, 21 * BS + 10, 10, 3); /* partial: dirty too */
    const struct seek_case cases[] = {
        { 0, SEEK_DATA, 5 * BS },       { 5 * BS, SEEK_HOLE, 6 * BS },
        { 6 * BS, SEEK_DATA, 20 * BS }, { 20 * BS, SEEK_HOLE, 22 * BS },
        { 22 * BS, SEEK_DATA, -1 },
    };
    struct seek_job j = { path, cases, sizeof(cases) / sizeof(cases[0]), 3 * BS / 512 };
    check_from_child(&j, "uncommitted");

    /* Past the end: the file grows, the blocks between are holes. */
    bft_put(path, BFT_GB + 3 * BS, 4096, 4);
    const struct seek_case grown[] = {
        { 22 * BS, SEEK_DATA, (off_t)(BFT_GB + 3 * BS) },
        { (off_t)(BFT_GB + 3 * BS), SEEK_HOLE, (off_t)(BFT_GB + 3 * BS + 4096) },
    };
    struct seek_job g = { path, grown, 2, 4 * BS / 512 };
    check_from_child(&g, "grown");

    cr_assert_eq(bft_discard(path, NULL), 0);
    const struct seek_case after[] = {
        { 0, SEEK_DATA, 5 * BS },
        { 6 * BS, SEEK_DATA, -1 },
        { 6 * BS, SEEK_HOLE, 6 * BS },
    };
    struct seek_job d = { path, after, 3, 1 * BS / 512 };
    check_from_child(&d, "discarded");
}
