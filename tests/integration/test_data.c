/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: the data path (reads, writes through
 * mappings and write(2), writeout, discard, sharing, huge sparse files,
 * Python/numpy). */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define KB ((uint64_t)1024)

/* ---- child bodies: each returns 0 when it did its part ------------------ */

struct map_job {
    char path[PATH_MAX];
    uint64_t maplen;     /* bytes to map */
    uint64_t off, len;   /* range to write / check */
    unsigned seed;       /* pattern (BFT_ZEROS: zeros) */
    int64_t truncate_to; /* >= 0: ftruncate first */
};

/* Write the pattern through a MAP_SHARED mapping; no msync; exit. */
static int child_map_write(void *arg)
{
    struct map_job *j = arg;
    int fd = open(j->path, O_RDWR);
    if (fd < 0)
        return 10;
    if (j->truncate_to >= 0 && ftruncate(fd, j->truncate_to) < 0)
        return 11;
    uint8_t *m = mmap(NULL, j->maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 12;
    bft_pattern(m + j->off, j->len, j->seed, j->off);
    return 0; /* exit without msync, munmap or close */
}

/* Check the range through a read-only MAP_SHARED mapping. */
static int child_map_check(void *arg)
{
    struct map_job *j = arg;
    int fd = open(j->path, O_RDONLY);
    if (fd < 0)
        return 10;
    uint8_t *m = mmap(NULL, j->maplen, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 12;
    int ok = j->seed == BFT_ZEROS ? bft_is_zero(m + j->off, j->len)
                                  : bft_check_pattern(m + j->off, j->len, j->seed, j->off);
    return ok ? 0 : 1;
}

static void job(struct map_job *j, const char *name, uint64_t maplen, uint64_t off, uint64_t len,
                unsigned seed)
{
    memset(j, 0, sizeof(*j));
    bft_path(j->path, name);
    j->maplen = maplen;
    j->off = off;
    j->len = len;
    j->seed = seed;
    j->truncate_to = -1;
}

static void run_ok(int (*fn)(void *), void *arg, const char *what)
{
    int st = bft_run(fn, arg, 30);
    cr_assert(st != -1 && WIFEXITED(st), "%s: child %s (status 0x%x)", what,
              st != -1 && WIFSIGNALED(st) ? "killed by a signal" : "hung", st);
    cr_assert_eq(WEXITSTATUS(st), 0, "%s: child failed with code %d", what, WEXITSTATUS(st));
}

/* ---- absent blocks, EOF --------------------------------------------------- */

BFT_TEST_BOTH(data, absent_blocks_read_as_zeros, 60)
{
    char p[PATH_MAX];
    bft_create("z", "64K", "1M");
    bft_path(p, "z");
    cr_assert_eq(bft_size(p), (int64_t)BFT_MB);

    struct map_job j;
    job(&j, "z", BFT_MB, 0, BFT_MB, BFT_ZEROS);
    run_ok(child_map_check, &j, "mmap read of a fresh file");
    bft_expect(p, 0, BFT_MB, BFT_ZEROS, "read(2) of a fresh file");
    bft_expect(p, 100000, 5000, BFT_ZEROS, "unaligned read(2)");

    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0);
    char c[16];
    cr_expect_eq(pread(fd, c, sizeof(c), (off_t)BFT_MB), 0, "read at EOF returns 0");
    cr_expect_eq(pread(fd, c, sizeof(c), (off_t)(5 * BFT_MB)), 0, "read past EOF returns 0");
    cr_expect_eq(pread(fd, c, sizeof(c), (off_t)BFT_MB - 4), 4, "read across EOF is short");
    close(fd);

    /* A file created with O_CREAT and extended (uncommitted) reads zeros too. */
    char q[PATH_MAX];
    bft_path(q, "ext");
    fd = open(q, O_RDWR | O_CREAT | O_EXCL, 0644);
    cr_assert_geq(fd, 0, "O_CREAT: %s", strerror(errno));
    cr_assert_eq(ftruncate(fd, (off_t)(3 * BFT_MB)), 0, "ftruncate: %s", strerror(errno));
    close(fd);
    cr_assert_eq(bft_size(q), (int64_t)(3 * BFT_MB));
    job(&j, "ext", 3 * BFT_MB, 0, 3 * BFT_MB, BFT_ZEROS);
    run_ok(child_map_check, &j, "mmap read of an extended file");
}

/* ---- mapping + bigfilectl writeout + remount -------------------------------- */

BFT_TEST(data, mmap_write_ctl_writeout_survives_remount, bft_setup_sqlite, 60)
{
    char p[PATH_MAX], out[4096], err[4096];
    bft_create("x", NULL, "8M"); /* default block size: 2 MiB */
    bft_path(p, "x");

    struct map_job j;
    job(&j, "x", 8 * BFT_MB, BFT_MB + 100, 3 * BFT_MB, 7); /* spans blocks 0..2 */
    run_ok(child_map_write, &j, "mapping writer");

    int rc = bft_ctl(out, sizeof(out), err, sizeof(err), "writeout", p, (char *)NULL);
    cr_assert_eq(rc, 0, "bigfilectl writeout: exit %d: %s", rc, err);
    int64_t rows = -1;
    cr_assert_eq(bft_sql_int(bft.db,
                             "SELECT count(*) FROM blocks WHERE file = "
                             "(SELECT id FROM files WHERE name = 'x')",
                             &rows),
                 0);
    cr_expect_eq(rows, 3, "the database holds %lld blocks of x, want 3 (blocks 0..2)",
                 (long long)rows);

    bft_remount();
    cr_assert_eq(bft_size(p), (int64_t)(8 * BFT_MB));
    bft_expect(p, BFT_MB + 100, 3 * BFT_MB, 7, "committed data after remount");
    bft_expect(p, 0, BFT_MB + 100, BFT_ZEROS, "untouched head after remount");
    bft_expect(p, 4 * BFT_MB + 100, 4 * BFT_MB - 100, BFT_ZEROS, "untouched tail after remount");
    job(&j, "x", 8 * BFT_MB, BFT_MB + 100, 3 * BFT_MB, 7);
    run_ok(child_map_check, &j, "mapping after remount");
}

BFT_TEST(data, mmap_write_without_writeout_is_gone_after_remount, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    bft_create("x", "64K", "1M");
    bft_path(p, "x");

    struct map_job j;
    job(&j, "x", 2 * BFT_MB, 512 * KB, BFT_MB, 9);
    j.truncate_to = (int64_t)(2 * BFT_MB); /* extension, also uncommitted */
    run_ok(child_map_write, &j, "mapping writer");
    bft_expect(p, 512 * KB, BFT_MB, 9, "uncommitted data visible before remount");
    cr_assert_eq(bft_size(p), (int64_t)(2 * BFT_MB));

    bft_remount();
    int64_t rows = -1;
    cr_assert_eq(bft_sql_int(bft.db, "SELECT count(*) FROM blocks", &rows), 0);
    cr_expect_eq(rows, 0, "no block reached the database without writeout");
    cr_assert_eq(bft_size(p), (int64_t)BFT_MB, "size after remount is the committed size");
    bft_expect(p, 0, BFT_MB, BFT_ZEROS, "uncommitted data gone after remount");
}

/* A process that still has its mapping and never calls msync: writeout must
 * make the kernel write its dirty pages back and commit them. */
BFT_TEST_BOTH(data, writeout_commits_pages_of_a_live_mapping, 60)
{
    char p[PATH_MAX];
    bft_create("live", "64K", "1M");
    bft_path(p, "live");
    struct bft_peer peer;
    cr_assert_eq(bft_peer_start(&peer, p, BFT_MB), 0);
    cr_assert_eq(bft_peer_write(&peer, 3 * 65536 + 17, 0x3C), 0);
    cr_assert_eq(bft_peer_write(&peer, 9 * 65536, 0xC3), 0);

    struct bigfile_writeout w;
    int r = bft_writeout(p, BFT_WO_BOTH, &w);
    cr_assert_eq(r, 0, "writeout: %s", strerror(-r));
    cr_expect_eq(w.blocks, 2,
                 "writeout committed %llu blocks, want 2 (the peer's stores, "
                 "never msynced)",
                 (unsigned long long)w.blocks);
    /* committed: a discard keeps it, in the peer's mapping too */
    cr_assert_eq(bft_discard(p, NULL), 0);
    cr_expect_eq(bft_peer_read(&peer, 3 * 65536 + 17), 0x3C);
    cr_expect_eq(bft_peer_read(&peer, 9 * 65536), 0xC3);
    int st = bft_peer_stop(&peer);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!bft.is_mem) {
        bft_remount();
        uint8_t b[2];
        cr_assert_eq(bft_pread(p, &b[0], 1, 3 * 65536 + 17), 0);
        cr_assert_eq(bft_pread(p, &b[1], 1, 9 * 65536), 0);
        cr_expect(b[0] == 0x3C && b[1] == 0xC3, "after remount: %02x %02x", b[0], b[1]);
    }
}

/* More dirty pages than the kernel lets a FUSE mount keep (strictlimit): the
 * writer is throttled, never deadlocked; everything is committed. */
BFT_TEST(data, large_mapping_write_and_writeout, bft_setup_sqlite, 120)
{
    char p[PATH_MAX];
    bft_create("large", NULL, "64M");
    bft_path(p, "large");
    struct map_job j;
    job(&j, "large", 64 * BFT_MB, 0, 64 * BFT_MB, 21);
    run_ok(child_map_write, &j, "64 MiB mapping writer");
    struct bigfile_writeout w;
    int r = bft_writeout(p, BFT_WO_BOTH, &w);
    cr_assert_eq(r, 0, "writeout: %s", strerror(-r));
    cr_expect_eq(w.blocks, 32);
    cr_expect_eq(w.bytes, 64 * BFT_MB);
    bft_remount();
    run_ok(child_map_check, &j, "64 MiB after remount");
}

/* Shrink, extend and write past EOF: uncommitted size changes, committed by
 * writeout. */
BFT_TEST_BOTH(data, size_changes_are_committed_by_writeout, 60)
{
    char p[PATH_MAX];
    bft_create("sz", "64K", "1M");
    bft_path(p, "sz");
    bft_put_commit(p, 0, BFT_MB, 1);

    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 100000), 0);
    close(fd);
    /* write past EOF: a hole then data */
    bft_put(p, 300000, 1000, 2);
    cr_expect_eq(bft_size(p), 301000);
    bft_expect(p, 100000, 200000, BFT_ZEROS, "the truncated range and the hole read zeros");
    bft_expect(p, 0, 100000, 1, "the head survives the shrink");

    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.size, 301000);
    cr_expect_eq(s.committed_size, BFT_MB);
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, NULL), 0);
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.committed_size, 301000);

    cr_assert_eq(bft_discard(p, NULL), 0);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    cr_expect_eq(bft_size(p), 301000);
    bft_expect(p, 100000, 200000, BFT_ZEROS, "no old data resurrected past the shrink point");
    bft_expect(p, 300000, 1000, 2, "data written past the old EOF");
    if (!bft.is_mem) {
        bft_remount();
        cr_expect_eq(bft_size(p), 301000);
        bft_expect(p, 0, 100000, 1, "head after remount");
        bft_expect(p, 100000, 200000, BFT_ZEROS, "zeros after remount");
        int64_t rows = -1;
        cr_assert_eq(bft_sql_int(bft.db,
                                 "SELECT count(*) FROM blocks WHERE blk >= 5 OR blk IN (2, 3)",
                                 &rows),
                     0);
        cr_expect_eq(rows, 0, "the blocks past the shrink point that stayed holes were deleted");
    }
}

/* A shrink to 0 and a grow back, not written out: every block reads as
 * zeros (none from the database, whose blocks are still the committed
 * ones — also not a read answered from the block file), until a discard
 * brings the committed data back. Blocks of 1 MiB: each of the kernel's
 * READs lies in one. */
static void shrink_and_grow_body(void);
static void setup_sqlite_splicing(void)
{
    bft_setup_nomount();
    snprintf(bft.opts, sizeof(bft.opts), "splice=on");
    bft_mount();
}
BFT_TEST(data, shrink_and_grow_read_zeros_until_discard_sqlite, setup_sqlite_splicing, 60)
{
    shrink_and_grow_body();
}
BFT_TEST(data, shrink_and_grow_read_zeros_until_discard_mem, bft_setup_mem, 60)
{
    shrink_and_grow_body();
}
static void shrink_and_grow_body(void)
{
    char p[PATH_MAX];
    bft_create("sg", "1M", "4M");
    bft_path(p, "sg");
    bft_put_commit(p, 0, 4 * BFT_MB, 1);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 0), 0);
    cr_assert_eq(ftruncate(fd, (off_t)(4 * BFT_MB)), 0);
    close(fd);
    bft_expect(p, 0, 4 * BFT_MB, BFT_ZEROS, "after the shrink and the grow");
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    bft_expect(p, 0, 4 * BFT_MB, BFT_ZEROS, "again, from the daemon");
    cr_assert_eq(bft_discard(p, NULL), 0);
    bft_expect(p, 0, 4 * BFT_MB, 1, "after the discard: the committed data");
}

/* ---- write(2) + WRITEOUT ioctl from another process ------------------------- */

struct wo_job {
    char path[PATH_MAX];
    struct bigfile_writeout res;
    int err;
};

static int child_writeout(void *arg)
{
    struct wo_job *w = arg;
    int r = bft_writeout(w->path, BFT_WO_BOTH, &w->res);
    /* report through the exit status: 0 ok, else errno; the counts go
     * through a shared mapping set up by the caller */
    return r == 0 ? 0 : -r;
}

BFT_TEST_BOTH(data, write_then_ioctl_writeout_from_other_process, 60)
{
    char p[PATH_MAX];
    bft_create("w", "64K", "1M");
    bft_path(p, "w");
    /* blocks 1, 2 and 5 changed (1..2 by one unaligned write) */
    bft_put(p, 64 * KB + 10, 100 * KB, 3);
    bft_put(p, 5 * 64 * KB + 1, 1, 4);
    struct bigfile_stat s0;
    cr_assert_eq(bft_stat(p, &s0), 0);

    struct wo_job *w = mmap(NULL, sizeof(*w), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                            -1, 0);
    cr_assert_neq(w, MAP_FAILED);
    memset(w, 0, sizeof(*w));
    snprintf(w->path, sizeof(w->path), "%s", p);
    int st = bft_run(child_writeout, w, 30);
    cr_assert(st != -1 && WIFEXITED(st), "writeout child did not exit");
    cr_assert_eq(WEXITSTATUS(st), 0, "WRITEOUT failed: %s", strerror(WEXITSTATUS(st)));
    cr_expect_eq(w->res.blocks, 3, "WRITEOUT blocks = %llu, want 3",
                 (unsigned long long)w->res.blocks);
    cr_expect_eq(w->res.bytes, 3 * 64 * KB, "WRITEOUT bytes = %llu, want %llu",
                 (unsigned long long)w->res.bytes, (unsigned long long)(3 * 64 * KB));

    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 0);
    cr_expect_eq(s.writeouts, s0.writeouts + 1);
    cr_expect_eq(s.committed_size, BFT_MB);

    /* a second writeout has nothing to do */
    struct bigfile_writeout r2;
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &r2), 0);
    cr_expect_eq(r2.blocks, 0, "second writeout handled %llu blocks",
                 (unsigned long long)r2.blocks);

    /* committed: a discard keeps it; and with SQLite a remount too */
    cr_assert_eq(bft_discard(p, NULL), 0);
    bft_expect(p, 64 * KB + 10, 100 * KB, 3, "committed data after discard");
    if (!bft.is_mem) {
        bft_remount();
        bft_expect(p, 64 * KB + 10, 100 * KB, 3, "committed data after remount");
        bft_expect(p, 5 * 64 * KB + 1, 1, 4, "committed byte after remount");
        bft_expect(p, 0, 64 * KB + 10, BFT_ZEROS, "zeros before the write");
    }
    munmap(w, sizeof(*w));
}

/* ---- discard ------------------------------------------------------------------- */

BFT_TEST_BOTH(data, discard_restores_data_and_size_in_every_mapping, 60)
{
    char p[PATH_MAX];
    const uint64_t bs = 64 * KB;
    bft_create("d", "64K", NULL);
    bft_path(p, "d");
    /* committed: 4 blocks of seed 1 */
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)(4 * bs)), 0);
    close(fd);
    bft_put_commit(p, 0, 4 * bs, 1);

    struct bft_peer peer;
    cr_assert_eq(bft_peer_start(&peer, p, 8 * bs), 0, "peer start");
    cr_assert_eq(bft_peer_check(&peer, 0, 4 * bs, 1), 1, "peer sees committed data");

    /* uncommitted: new data in blocks 1..2 and an extension to 8 blocks */
    bft_put(p, bs, 2 * bs, 2);
    fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)(8 * bs)), 0);
    close(fd);
    bft_put(p, 6 * bs, 10, 3);
    cr_assert_eq(bft_peer_check(&peer, bs, 2 * bs, 2), 1, "peer sees the uncommitted change");
    cr_assert_eq(bft_peer_size(&peer), (int64_t)(8 * bs), "peer sees the extension");

    struct bigfile_count c;
    int r = bft_discard(p, &c);
    cr_assert_eq(r, 0, "DISCARD: %s", strerror(-r));
    cr_expect_geq(c.blocks, 3, "DISCARD dropped %llu blocks, want >= 3",
                  (unsigned long long)c.blocks);

    cr_expect_eq(bft_peer_size(&peer), (int64_t)(4 * bs), "peer's fstat size after discard");
    cr_expect_eq(bft_size(p), (int64_t)(4 * bs), "stat size after discard");
    cr_expect_eq(bft_peer_check(&peer, 0, 4 * bs, 1), 1,
                 "the peer's existing mapping sees the committed data after discard");
    bft_expect(p, 0, 4 * bs, 1, "read(2) after discard");

    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 0);
    cr_expect_eq(s.size, 4 * bs);
    cr_expect_eq(s.committed_size, 4 * bs);
    cr_expect_geq(s.discards, 1);
    int pst = bft_peer_stop(&peer);
    cr_expect(WIFEXITED(pst) && WEXITSTATUS(pst) == 0, "peer ended badly (0x%x)", pst);
}

BFT_TEST_BOTH(data, discard_undoes_a_truncate, 60)
{
    char p[PATH_MAX];
    const uint64_t bs = 64 * KB;
    bft_create("t", "64K", "256K");
    bft_path(p, "t");
    bft_put_commit(p, 0, 4 * bs, 5);

    struct bft_peer peer;
    cr_assert_eq(bft_peer_start(&peer, p, 4 * bs), 0, "peer start");
    cr_assert_eq(bft_peer_check(&peer, 0, 4 * bs, 5), 1);

    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)(bs + 100)), 0, "shrink: %s", strerror(errno));
    close(fd);
    cr_assert_eq(bft_size(p), (int64_t)(bs + 100));
    cr_assert_eq(bft_discard(p, NULL), 0);
    cr_expect_eq(bft_size(p), (int64_t)(4 * bs), "size restored by discard");
    cr_expect_eq(bft_peer_size(&peer), (int64_t)(4 * bs), "peer's size restored");
    bft_expect(p, 0, 4 * bs, 5, "data restored by discard");
    cr_expect_eq(bft_peer_check(&peer, 0, 4 * bs, 5), 1,
                 "the peer's mapping sees the whole committed file again");
    int pst = bft_peer_stop(&peer);
    cr_expect(WIFEXITED(pst) && WEXITSTATUS(pst) == 0,
              "peer died (0x%x): SIGBUS past a stale size?", pst);
}

/* Dirty pages still in the kernel (a live mapping, never written back):
 * discard and invalidate must drop them — the kernel "launders" them back
 * to the daemon first, and that must not resurrect the change. */
BFT_TEST_BOTH(data, discard_and_invalidate_drop_dirty_pages_of_live_mappings, 60)
{
    char p[PATH_MAX];
    const uint64_t bs = 65536;
    bft_create("dm", "64K", "512K");
    bft_path(p, "dm");
    bft_put_commit(p, 0, 8 * bs, 1);
    struct bft_peer peer;
    cr_assert_eq(bft_peer_start(&peer, p, 8 * bs), 0);
    uint8_t committed[2];
    bft_pattern(committed, 1, 1, 2 * bs + 5);
    bft_pattern(committed + 1, 1, 1, 6 * bs + 7);

    cr_assert_eq(bft_peer_write(&peer, 2 * bs + 5, (uint8_t)~committed[0]), 0);
    struct bigfile_count c;
    cr_assert_eq(bft_discard(p, &c), 0);
    cr_expect_eq(bft_peer_read(&peer, 2 * bs + 5), committed[0],
                 "the mapping's own dirty page shows the committed byte after discard");
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 0, "laundered pages resurrected %llu dirty blocks",
                 (unsigned long long)s.dirty_blocks);
    struct bigfile_writeout w;
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &w), 0);
    cr_expect_eq(w.blocks, 0, "a writeout after the discard committed %llu blocks",
                 (unsigned long long)w.blocks);
    bft_expect(p, 2 * bs, bs, 1, "read(2) after discarding a mapping's dirty page");

    cr_assert_eq(bft_peer_write(&peer, 6 * bs + 7, (uint8_t)~committed[1]), 0);
    cr_assert_eq(bft_invalidate(p, 6, 1), 0);
    cr_expect_eq(bft_peer_read(&peer, 6 * bs + 7), committed[1],
                 "the mapping's dirty page shows the database's byte after invalidate");
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 0, "invalidate left %llu dirty blocks",
                 (unsigned long long)s.dirty_blocks);
    int st = bft_peer_stop(&peer);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A page written through a live mapping, committed, then written again:
 * the second change is tracked and committed too. */
BFT_TEST(data, rewrite_of_a_mapped_page_after_writeout_is_committed, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    bft_create("rw", "64K", "256K");
    bft_path(p, "rw");
    struct bft_peer peer;
    cr_assert_eq(bft_peer_start(&peer, p, 256 * 1024), 0);
    cr_assert_eq(bft_peer_write(&peer, 100, 0x11), 0);
    struct bigfile_writeout w;
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &w), 0);
    cr_expect_eq(w.blocks, 1);
    cr_assert_eq(bft_peer_write(&peer, 200, 0x22), 0);
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &w), 0);
    cr_expect_eq(w.blocks, 1, "the second store into the same page was not seen (%llu blocks)",
                 (unsigned long long)w.blocks);
    int st = bft_peer_stop(&peer);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    bft_remount();
    uint8_t a = 0, b = 0;
    cr_assert_eq(bft_pread(p, &a, 1, 100), 0);
    cr_assert_eq(bft_pread(p, &b, 1, 200), 0);
    cr_expect(a == 0x11 && b == 0x22, "after remount: %02x %02x, want 11 22", a, b);
}

/* ---- sharing ------------------------------------------------------------------------ */

static int child_write_byte(void *arg)
{
    const char *path = arg;
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return 10;
    uint8_t v = 0xA5;
    if (pwrite(fd, &v, 1, 10 * 65536 + 3) != 1)
        return 11;
    return close(fd) == 0 ? 0 : 12;
}

static int child_read_bytes(void *arg)
{
    const char *path = arg;
    int fd = open(path, O_RDONLY);
    uint8_t v[2];
    if (fd < 0)
        return 10;
    if (pread(fd, &v[0], 1, 70000) != 1 || pread(fd, &v[1], 1, 10 * 65536 + 3) != 1)
        return 11;
    close(fd);
    return v[0] == 0x5A && v[1] == 0xA5 ? 0 : 1;
}

BFT_TEST_BOTH(data, processes_share_uncommitted_changes, 60)
{
    char p[PATH_MAX];
    bft_create("s", "64K", "1M");
    bft_path(p, "s");

    struct bft_peer a, b;
    cr_assert_eq(bft_peer_start(&a, p, BFT_MB), 0);
    cr_assert_eq(bft_peer_start(&b, p, BFT_MB), 0);
    cr_assert_eq(bft_peer_write(&a, 70000, 0x5A), 0);
    cr_expect_eq(bft_peer_read(&b, 70000), 0x5A, "B sees A's store through its mapping");
    /* A exits: its dirty page reaches the daemon as an uncommitted change
     * of the one shared handle, which outlives A's open. */
    int st = bft_peer_stop(&a);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    run_ok(child_write_byte, p, "write(2) in a process that closes and exits");
    run_ok(child_read_bytes, p, "a third process sees both uncommitted changes");
    cr_expect_eq(bft_peer_read(&b, 10 * 65536 + 3), 0xA5, "B sees the write(2)");

    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 2, "dirty_blocks = %llu after changes to blocks 1 and 10",
                 (unsigned long long)s.dirty_blocks);

    struct bigfile_writeout w;
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &w), 0);
    cr_expect_eq(w.blocks, 2, "writeout by yet another process committed %llu blocks, want 2",
                 (unsigned long long)w.blocks);
    cr_assert_eq(bft_discard(p, NULL), 0);
    cr_expect_eq(bft_peer_read(&b, 70000), 0x5A, "committed change survives a discard");
    st = bft_peer_stop(&b);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- huge sparse files ------------------------------------------------------------------ */

static int child_sparse_check(void *arg)
{
    const char *path = arg;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 10;
    const uint64_t len = 8 * BFT_GB;
    uint8_t *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 11;
    const uint64_t offs[] = { 0,          BFT_GB + 4096,  3 * BFT_GB + 12345,
                              5 * BFT_GB, 7 * BFT_GB - 1, len - 4096 };
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
        if (!bft_is_zero(m + offs[i], 4096 - (offs[i] % 4096)))
            return 1;
    return 0;
}

BFT_TEST(data, multi_gib_sparse_file, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    bft_create("huge", NULL, "8G");
    bft_path(p, "huge");
    cr_assert_eq(bft_size(p), (int64_t)(8 * BFT_GB));
    run_ok(child_sparse_check, p, "far-apart pages of an 8 GiB sparse mapping are zeros");

    uint8_t one = 0x77;
    cr_assert_eq(bft_pwrite(p, &one, 1, 7 * BFT_GB), 0);
    struct bigfile_writeout w;
    int r = bft_writeout(p, BFT_WO_BOTH, &w);
    cr_assert_eq(r, 0, "writeout: %s", strerror(-r));
    cr_expect_eq(w.blocks, 1);

    bft_remount();
    cr_assert_eq(bft_size(p), (int64_t)(8 * BFT_GB));
    uint8_t got[2] = { 0, 0xEE };
    cr_assert_eq(bft_pread(p, got, 2, 7 * BFT_GB), 0);
    cr_expect_eq(got[0], 0x77, "the byte at 7 GiB after remount: 0x%02x", got[0]);
    cr_expect_eq(got[1], 0, "the byte after it is zero");
    run_ok(child_sparse_check, p, "sparse pages still zeros after remount");
}

/* ---- Python / numpy ------------------------------------------------------------------------ */

BFT_TEST(data, python_numpy_memmap_writeout, bft_setup_sqlite, 90)
{
    const char *py = getenv("PYTHON");
    const char *src = getenv("BF_SRCDIR");
    if (!py || !*py)
        cr_skip_test("no PYTHON");
    char p[PATH_MAX], script[PATH_MAX], out[4096], err[8192];
    snprintf(script, sizeof(script), "%s/tests/integration/numpy_commit.py", src ? src : ".");
    bft_create("arr", "64K", "1M");
    bft_path(p, "arr");

    const char *argv[] = { py, script, p, NULL };
    int rc = bft_exec(out, sizeof(out), err, sizeof(err), argv, 60);
    if (rc == 77 && access("/usr/bin/python3", X_OK) == 0) {
        /* $PYTHON (e.g. a pyenv one) lacks numpy: the system's may have it */
        argv[0] = "/usr/bin/python3";
        rc = bft_exec(out, sizeof(out), err, sizeof(err), argv, 60);
    }
    if (rc == 77)
        cr_skip_test("numpy is not installed for %s", py);
    cr_assert_eq(rc, 0, "python script failed (%d):\n%s\n%s", rc, out, err);
    uint64_t blocks = 0;
    cr_assert_eq(bft_kv(out, "blocks", &blocks), 0, "script output:\n%s", out);
    cr_expect_eq(blocks, 3, "the script's writeout committed %llu blocks, want 3",
                 (unsigned long long)blocks);

    bft_remount();
    /* float64 i*0.5 at elements [8192*2 + k] for k < 16384 (bytes 128K..256K),
     * and element 100000 = 42.0 */
    double d[16384];
    cr_assert_eq(bft_pread(p, d, sizeof(d), 16384 * sizeof(double)), 0);
    int bad = -1;
    for (int k = 0; k < 16384 && bad < 0; k++)
        if (d[k] != (double)k * 0.5)
            bad = k;
    cr_expect_eq(bad, -1, "element %d differs after remount", bad);
    double x = 0;
    cr_assert_eq(bft_pread(p, &x, sizeof(x), 100000 * sizeof(double)), 0);
    cr_expect_eq(x, 42.0);
}
