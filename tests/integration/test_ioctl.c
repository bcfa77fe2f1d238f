/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: the ioctls (STAT, RECLAIM, INVALIDATE,
 * writeout flags) and their refusals (EINVAL, ENOTTY, and EBADF through an
 * fd not open for writing, also for another user). EBUSY, EROFS and fault
 * injection are in test_errors. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define BS ((uint64_t)65536)

static void mkfile(char *p, const char *name, const char *size)
{
    bft_create(name, "64K", size);
    bft_path(p, name);
}

/* ---- STAT ----------------------------------------------------------------- */

BFT_TEST_BOTH(ioctl, stat_fields, 60)
{
    char p[PATH_MAX];
    struct bigfile_stat s;
    mkfile(p, "st", "1M");
    int r = bft_stat(p, &s);
    cr_assert_eq(r, 0, "STAT: %s", strerror(-r));
    cr_expect_eq(s.version, BIGFILE_STAT_VERSION);
    cr_expect_eq(s.blksize, BS);
    cr_expect_eq(s.size, BFT_MB);
    cr_expect_eq(s.committed_size, BFT_MB);
    cr_expect_eq(s.dirty_blocks, 0);
    cr_expect_eq(s.loading_blocks, 0);
    for (size_t i = 0; i < sizeof(s.reserved) / sizeof(s.reserved[0]); i++)
        cr_expect_eq(s.reserved[i], 0, "reserved[%zu] = %llu", i,
                     (unsigned long long)s.reserved[i]);
    cr_expect_gt(s.serial, 0, "the create and the size were commits: the view follows them");
    cr_expect_eq(s.conflict_blocks, 0);

    /* committed content in blocks 0..3, then drop every cache */
    struct bigfile_stat a, b;
    a = s;
    bft_put_commit(p, 0, 4 * BS, 1);
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.writeouts, a.writeouts + 1);
    cr_expect_gt(s.serial, a.serial, "a writeout moves the view to its commit");
    cr_expect_geq(s.storeblk_calls, a.storeblk_calls + 4, "storeblk_calls = %llu",
                  (unsigned long long)s.storeblk_calls);
    cr_expect_geq(s.bytes_stored, a.bytes_stored + 4 * BS);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    cr_assert_eq(bft_stat(p, &a), 0);
    bft_expect(p, 2 * BS, BS, 1, "cold read of block 2");
    cr_assert_eq(bft_stat(p, &b), 0);
    /* Loaded and kept by the daemon, or (SQLite, splice) answered from
     * the block file. */
    bool spliced = b.spliced_reads > a.spliced_reads;
    cr_expect(b.loadblk_calls > a.loadblk_calls || spliced,
              "a cold read loads: loadblk_calls %llu -> %llu, spliced_reads %llu -> %llu",
              (unsigned long long)a.loadblk_calls, (unsigned long long)b.loadblk_calls,
              (unsigned long long)a.spliced_reads, (unsigned long long)b.spliced_reads);
    cr_expect_geq(b.bytes_loaded, a.bytes_loaded + BS);
    cr_expect(spliced ? b.loaded_blocks == 0 : b.loaded_blocks >= 1, "loaded_blocks %llu",
              (unsigned long long)b.loaded_blocks);

    /* changes: blocks 5 and 6, and an extension */
    bft_put(p, 5 * BS + 7, BS, 2);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)(2 * BFT_MB)), 0);
    close(fd);
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 2, "dirty_blocks = %llu after writing blocks 5-6",
                 (unsigned long long)s.dirty_blocks);
    cr_expect_eq(s.size, 2 * BFT_MB);
    cr_expect_eq(s.committed_size, BFT_MB);
    cr_expect_eq(s.blksize, BS);
    cr_expect_eq((int64_t)s.size, bft_size(p), "STAT size and st_size agree");
}

/* ---- RECLAIM ---------------------------------------------------------------- */

BFT_TEST_BOTH(ioctl, reclaim_drops_clean_blocks_and_reload_follows, 60)
{
    char p[PATH_MAX];
    struct bigfile_stat s0, s1, s2;
    struct bigfile_count c;
    mkfile(p, "rc", "1M");
    bft_put_commit(p, 0, 8 * BS, 3);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    bft_expect(p, 0, 8 * BS, 3, "read of 8 committed blocks");
    bft_put(p, 9 * BS, 100, 4); /* one dirty block: reclaim keeps it */
    cr_assert_eq(bft_stat(p, &s0), 0);
    cr_expect_geq(s0.loaded_blocks, 8, "loaded_blocks = %llu after reading 8 blocks",
                  (unsigned long long)s0.loaded_blocks);

    int r = bft_reclaim(p, &c);
    cr_assert_eq(r, 0, "RECLAIM: %s", strerror(-r));
    cr_expect_geq(c.blocks, 8, "RECLAIM dropped %llu blocks, want >= 8",
                  (unsigned long long)c.blocks);
    cr_expect_geq(c.bytes, 8 * BS, "RECLAIM freed %llu bytes", (unsigned long long)c.bytes);
    cr_assert_eq(bft_stat(p, &s1), 0);
    cr_expect_eq(s1.loaded_blocks, 0, "loaded_blocks after reclaim = %llu",
                 (unsigned long long)s1.loaded_blocks);
    cr_expect_eq(s1.dirty_blocks, 1, "reclaim keeps the dirty block");
    cr_expect_geq(s1.reclaimed_blocks, s0.reclaimed_blocks + 8);

    bft_expect(p, 0, 8 * BS, 3, "re-read after reclaim");
    bft_expect(p, 9 * BS, 100, 4, "the dirty block after reclaim");
    cr_assert_eq(bft_stat(p, &s2), 0);
    cr_expect_geq(s2.loadblk_calls, s1.loadblk_calls + 8,
                  "a re-read after reclaim reloads from the database (kernel pages dropped "
                  "too): loadblk_calls %llu -> %llu",
                  (unsigned long long)s1.loadblk_calls, (unsigned long long)s2.loadblk_calls);
}

/* ---- INVALIDATE -------------------------------------------------------------- */

BFT_TEST(ioctl, invalidate_after_database_changed_behind, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    mkfile(p, "inv", "512K");
    bft_put_commit(p, 0, 8 * BS, 1);

    struct bft_peer peer;
    cr_assert_eq(bft_peer_start(&peer, p, 8 * BS), 0);
    cr_assert_eq(bft_peer_check(&peer, 0, 8 * BS, 1), 1, "peer sees committed data");
    bft_expect(p, 0, 8 * BS, 1, "read before the change");

    /* the database changes behind the daemon's back */
    cr_assert_eq(bft_sql_set_block(bft.db, "inv", 2, BS, 8), 0, "UPDATE block 2");
    cr_assert_eq(bft_sql_set_block(bft.db, "inv", 3, BS, 8), 0, "UPDATE block 3");
    /* an uncommitted change of block 3 is dropped by the invalidation too */
    bft_put(p, 3 * BS + 5, 10, 9);

    int r = bft_invalidate(p, 2, 2);
    cr_assert_eq(r, 0, "INVALIDATE [2, +2): %s", strerror(-r));
    bft_expect(p, 2 * BS, 2 * BS, 8, "read(2) of invalidated blocks shows the new data");
    cr_expect_eq(bft_peer_check(&peer, 2 * BS, 2 * BS, 8), 1,
                 "the existing mapping shows the new data");
    bft_expect(p, 0, 2 * BS, 1, "blocks before the range unchanged");
    bft_expect(p, 4 * BS, 4 * BS, 1, "blocks after the range unchanged");

    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 0, "the dirty block was invalidated");
    cr_expect_geq(s.invalidated_blocks, 1);
    int st = bft_peer_stop(&peer);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- writeout flags --------------------------------------------------------------- */

BFT_TEST(ioctl, writeout_store_only_and_markstored_only, bft_setup_sqlite, 60)
{
    char p[PATH_MAX], q[PATH_MAX];
    struct bigfile_writeout w;
    struct bigfile_stat s;
    mkfile(p, "store", "256K");
    mkfile(q, "mark", "256K");

    bft_put(p, 0, 2 * BS, 1);
    int r = bft_writeout(p, BIGFILE_WRITEOUT_STORE, &w);
    cr_assert_eq(r, 0, "WRITEOUT(STORE): %s", strerror(-r));
    cr_expect_eq(w.blocks, 2);
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 2, "STORE alone keeps the blocks dirty");

    bft_put(q, 0, 2 * BS, 2);
    r = bft_writeout(q, BIGFILE_WRITEOUT_MARKSTORED, &w);
    cr_assert_eq(r, 0, "WRITEOUT(MARKSTORED): %s", strerror(-r));
    cr_expect_eq(w.blocks, 2);
    cr_expect_eq(w.bytes, 0, "MARKSTORED alone stores nothing");
    cr_assert_eq(bft_stat(q, &s), 0);
    cr_expect_eq(s.dirty_blocks, 0, "MARKSTORED marks the blocks clean");

    bft_remount();
    bft_expect(p, 0, 2 * BS, 1, "STORE reached the database");
    bft_expect(q, 0, 2 * BS, BFT_ZEROS, "MARKSTORED did not store");
}

/* ---- EINVAL ------------------------------------------------------------------------ */

BFT_TEST_BOTH(ioctl, einval_for_bad_flags_reserved_and_ranges, 60)
{
    char p[PATH_MAX];
    mkfile(p, "e", "1M");
    bft_put(p, 0, 10, 1);
    struct bigfile_stat s0, s1;
    cr_assert_eq(bft_stat(p, &s0), 0);

    cr_expect_eq(bft_writeout(p, 0, NULL), -EINVAL, "writeout with flags 0");
    cr_expect_eq(bft_writeout(p, 1u << 2, NULL), -EINVAL, "writeout with an unknown flag");
    cr_expect_eq(bft_writeout(p, BFT_WO_BOTH | (1u << 31), NULL), -EINVAL,
                 "writeout with a known and an unknown flag");
    struct bigfile_writeout w = { .flags = BFT_WO_BOTH, .reserved = 1 };
    cr_expect_eq(bft_ioctl(p, BIGFILE_IOC_WRITEOUT, &w), -EINVAL, "writeout with reserved != 0");

    cr_expect_eq(bft_invalidate(p, 0, 0), -EINVAL, "invalidate with count 0");
    cr_expect_eq(bft_invalidate(p, UINT64_MAX, 2), -EINVAL,
                 "invalidate with start+count overflowing");
    cr_expect_eq(bft_invalidate(p, 2, UINT64_MAX), -EINVAL, "invalidate with count overflowing");

    struct bigfile_blksize b = { .blksize = 65536, .reserved = 1 };
    cr_expect_eq(bft_ioctl(p, BIGFILE_IOC_SETBLKSIZE, &b), -EINVAL, "setblksize reserved != 0");

    cr_assert_eq(bft_stat(p, &s1), 0);
    cr_expect_eq(s1.dirty_blocks, s0.dirty_blocks, "refused requests changed nothing");
    cr_expect_eq(s1.writeouts, s0.writeouts);
}

BFT_TEST_BOTH(ioctl, setblksize_rules, 60)
{
    char p[PATH_MAX];
    bft_path(p, "sb");
    int fd = open(p, O_RDWR | O_CREAT | O_EXCL, 0644);
    cr_assert_geq(fd, 0);
    struct bigfile_blksize b = { .blksize = 262144 };
    int r = ioctl(fd, BIGFILE_IOC_SETBLKSIZE, &b) < 0 ? -errno : 0;
    cr_expect_eq(r, 0, "SETBLKSIZE on an empty file: %s", strerror(-r));
    close(fd);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_expect_eq(st.st_blksize, 262144);
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.blksize, 262144);

    b.blksize = 3 * 4096;
    cr_expect_eq(bft_ioctl(p, BIGFILE_IOC_SETBLKSIZE, &b), -EINVAL, "not a power of two");
    b.blksize = 2048;
    cr_expect_eq(bft_ioctl(p, BIGFILE_IOC_SETBLKSIZE, &b), -EINVAL, "below 4K");

    bft_put_commit(p, 0, 10, 1);
    b.blksize = 65536;
    cr_expect_eq(bft_ioctl(p, BIGFILE_IOC_SETBLKSIZE, &b), -ENOTEMPTY, "on a non-empty file");
}

/* ---- ENOTTY ------------------------------------------------------------------------------ */

BFT_TEST_BOTH(ioctl, enotty_for_unknown_requests_and_the_root, 60)
{
    char p[PATH_MAX];
    mkfile(p, "n", "1M");
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    errno = 0;
    cr_expect_eq(ioctl(fd, _IO(BIGFILE_IOC_MAGIC, 99)), -1);
    cr_expect_eq(errno, ENOTTY, "unknown bigfile number: %s", strerror(errno));
    struct bigfile_range rg = { 0, 1 };
    errno = 0;
    cr_expect_eq(ioctl(fd, _IOW(0xAB, 3, struct bigfile_range), &rg), -1);
    cr_expect_eq(errno, ENOTTY, "foreign magic: %s", strerror(errno));
    errno = 0;
    /* the right number with the wrong size is a different request */
    cr_expect_eq(ioctl(fd, _IOW(BIGFILE_IOC_MAGIC, 3, __u64), &rg), -1);
    cr_expect_eq(errno, ENOTTY, "INVALIDATE's number with another size: %s", strerror(errno));
    close(fd);

    fd = open(bft.mnt, O_RDONLY | O_DIRECTORY);
    cr_assert_geq(fd, 0);
    struct bigfile_writeout w = { .flags = BFT_WO_BOTH };
    struct bigfile_count c;
    struct bigfile_stat s;
    struct bigfile_blksize b = { .blksize = 65536 };
    struct {
        unsigned long req;
        void *arg;
        const char *name;
    } reqs[] = {
        { BIGFILE_IOC_WRITEOUT, &w, "WRITEOUT" },      { BIGFILE_IOC_DISCARD, &c, "DISCARD" },
        { BIGFILE_IOC_INVALIDATE, &rg, "INVALIDATE" }, { BIGFILE_IOC_STAT, &s, "STAT" },
        { BIGFILE_IOC_RECLAIM, &c, "RECLAIM" },        { BIGFILE_IOC_SETBLKSIZE, &b, "SETBLKSIZE" },
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        errno = 0;
        int r = ioctl(fd, reqs[i].req, reqs[i].arg);
        cr_expect(r == -1 && errno == ENOTTY, "%s on the root directory: %d, %s", reqs[i].name, r,
                  strerror(errno));
    }
    close(fd);
}

/* ---- write access (EBADF) ----------------------------------------------------------------- */

/* ioctl on fd: 0 or -errno. */
static int fd_ioctl(int fd, unsigned long req, void *arg)
{
    return ioctl(fd, req, arg) < 0 ? -errno : 0;
}

/* The four requests that change the file, with fresh arguments. */
struct change_reqs {
    struct bigfile_writeout w;
    struct bigfile_count c;
    struct bigfile_range rg;
    struct bigfile_blksize b;
};

static void change_reqs_init(struct change_reqs *a)
{
    memset(a, 0, sizeof(*a));
    a->w.flags = BFT_WO_BOTH;
    a->rg.start = 0;
    a->rg.count = 16;
    a->b.blksize = 4096;
}

#define N_CHANGE_REQS 4
static const char *const change_names[N_CHANGE_REQS] = { "WRITEOUT", "DISCARD", "INVALIDATE",
                                                         "SETBLKSIZE" };

/* Send the four requests on fd; res[i] = 0 or -errno. */
static void send_change_reqs(int fd, int res[N_CHANGE_REQS])
{
    struct change_reqs a;
    change_reqs_init(&a);
    res[0] = fd_ioctl(fd, BIGFILE_IOC_WRITEOUT, &a.w);
    res[1] = fd_ioctl(fd, BIGFILE_IOC_DISCARD, &a.c);
    res[2] = fd_ioctl(fd, BIGFILE_IOC_INVALIDATE, &a.rg);
    res[3] = fd_ioctl(fd, BIGFILE_IOC_SETBLKSIZE, &a.b);
}

/* The file p holds committed pattern 1 in blocks 0..3 and uncommitted
 * pattern 2 in block 1, which the kernel has written back to the daemon:
 * check that this is still so (nothing committed, nothing thrown away). */
static void expect_changes_intact(const char *p, const struct bigfile_stat *before,
                                  const char *what)
{
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 1, "%s: the change is still uncommitted (dirty_blocks %llu)", what,
                 (unsigned long long)s.dirty_blocks);
    cr_expect_eq(s.writeouts, before->writeouts, "%s: nothing was committed", what);
    cr_expect_eq(s.discards, before->discards, "%s: nothing was discarded", what);
    cr_expect_eq(s.invalidated_blocks, before->invalidated_blocks, "%s: nothing was invalidated",
                 what);
    cr_expect_eq(s.blksize, BS, "%s: the block size is unchanged", what);
    bft_expect(p, BS, BS, 2, what);
    bft_expect(p, 0, BS, 1, what);
    if (!bft.is_mem) {
        int64_t n = -1;
        cr_assert_eq(bft_sql_int(bft.db, "SELECT count(*) FROM blocks", &n), 0);
        cr_expect_eq(n, 4, "%s: the database holds the 4 committed blocks only (%lld)", what,
                     (long long)n);
    }
}

/* Committed pattern 1 in blocks 0..3, then pattern 2 in block 1 through an
 * O_RDWR fd, fsync'ed to the daemon (fsync commits nothing). Returns the
 * state after that. */
static void make_uncommitted_change(char *p, const char *name, struct bigfile_stat *s)
{
    mkfile(p, name, "1M");
    bft_put_commit(p, 0, 4 * BS, 1);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0, "open O_RDWR: %s", strerror(errno));
    uint8_t *buf = malloc(BS);
    cr_assert(buf);
    bft_pattern(buf, BS, 2, BS);
    cr_assert_eq(pwrite(fd, buf, BS, BS), (ssize_t)BS);
    free(buf);
    cr_assert_eq(fsync(fd), 0);
    close(fd);
    cr_assert_eq(bft_stat(p, s), 0);
    cr_assert_eq(s->dirty_blocks, 1, "the change reached the daemon");
}

BFT_TEST_BOTH(ioctl, readonly_fd_may_not_change_the_file, 60)
{
    char p[PATH_MAX], q[PATH_MAX];
    struct bigfile_stat s0;
    make_uncommitted_change(p, "ro", &s0);

    /* Like write(2): a read-only fd may not commit, drop, forget or
     * change the block size... */
    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0);
    int res[N_CHANGE_REQS];
    send_change_reqs(fd, res);
    for (int i = 0; i < N_CHANGE_REQS; i++)
        cr_expect_eq(res[i], -EBADF, "%s through an O_RDONLY fd: %s (want EBADF)", change_names[i],
                     strerror(-res[i]));
    /* ... but may look and drop clean data. */
    struct bigfile_stat s;
    int r = fd_ioctl(fd, BIGFILE_IOC_STAT, &s);
    cr_expect_eq(r, 0, "STAT through an O_RDONLY fd: %s", strerror(-r));
    cr_expect_eq(s.dirty_blocks, 1);
    struct bigfile_count c = { 0, 0 };
    r = fd_ioctl(fd, BIGFILE_IOC_RECLAIM, &c);
    cr_expect_eq(r, 0, "RECLAIM through an O_RDONLY fd: %s", strerror(-r));
    close(fd);
    expect_changes_intact(p, &s0, "after the refused requests");

    /* SETBLKSIZE on an empty file: the same refusal, the size unchanged. */
    bft_path(q, "empty");
    fd = open(q, O_RDWR | O_CREAT | O_EXCL, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    fd = open(q, O_RDONLY);
    cr_assert_geq(fd, 0);
    struct bigfile_blksize b = { .blksize = 262144 };
    r = fd_ioctl(fd, BIGFILE_IOC_SETBLKSIZE, &b);
    cr_expect_eq(r, -EBADF, "SETBLKSIZE on an empty file through O_RDONLY: %s", strerror(-r));
    close(fd);
    struct stat st;
    cr_assert_eq(stat(q, &st), 0);
    cr_expect_neq(st.st_blksize, 262144, "the block size did not change");

    /* An O_WRONLY fd is open for writing: its WRITEOUT commits. */
    fd = open(p, O_WRONLY);
    cr_assert_geq(fd, 0);
    struct bigfile_writeout w = { .flags = BFT_WO_BOTH };
    r = fd_ioctl(fd, BIGFILE_IOC_WRITEOUT, &w);
    cr_expect_eq(r, 0, "WRITEOUT through an O_WRONLY fd: %s", strerror(-r));
    cr_expect_eq(w.blocks, 1);
    close(fd);
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 0);
    cr_expect_eq(s.writeouts, s0.writeouts + 1);
    if (!bft.is_mem) {
        bft_remount();
        bft_expect(p, BS, BS, 2, "the change, committed by its writer, after remount");
    }
}

/* ---- another user (uid 65534) on an allow_other mount --------------------------------- */

struct other_user {
    char path[PATH_MAX];
    int open_rdwr;          /* 0 or errno of open(O_RDWR) */
    int open_wronly;        /* 0 or errno of open(O_WRONLY) */
    int open_rdonly;        /* 0 or errno of open(O_RDONLY) */
    int res[N_CHANGE_REQS]; /* the four requests through O_RDONLY */
    int stat_res;
    int reclaim_res;
    uint64_t dirty_seen; /* dirty_blocks the other user's STAT saw */
};

/* As uid/gid 65534: try to open the file for writing, then send the four
 * requests and STAT/RECLAIM through a read-only fd. Results in the shared
 * struct; exit status 99 if the identity change failed. */
static int child_other_user(void *arg)
{
    struct other_user *o = arg;
    if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
        return 99;
    int fd = open(o->path, O_RDWR);
    o->open_rdwr = fd < 0 ? errno : 0;
    if (fd >= 0)
        close(fd);
    fd = open(o->path, O_WRONLY);
    o->open_wronly = fd < 0 ? errno : 0;
    if (fd >= 0)
        close(fd);
    fd = open(o->path, O_RDONLY);
    o->open_rdonly = fd < 0 ? errno : 0;
    if (fd < 0)
        return 0;
    send_change_reqs(fd, o->res);
    struct bigfile_stat s;
    memset(&s, 0, sizeof(s));
    o->stat_res = fd_ioctl(fd, BIGFILE_IOC_STAT, &s);
    o->dirty_seen = s.dirty_blocks;
    struct bigfile_count c = { 0, 0 };
    o->reclaim_res = fd_ioctl(fd, BIGFILE_IOC_RECLAIM, &c);
    close(fd);
    return 0;
}

static void other_user_body(void);
BFT_TEST(ioctl, other_user_cannot_commit_or_discard_sqlite, bft_setup_nomount, 60)
{
    snprintf(bft.opts, sizeof(bft.opts), "allow_other");
    bft_mount();
    other_user_body();
}
BFT_TEST(ioctl, other_user_cannot_commit_or_discard_mem, bft_setup_nomount, 60)
{
    snprintf(bft.opts, sizeof(bft.opts), "allow_other");
    snprintf(bft.db, sizeof(bft.db), "mem:");
    bft.is_mem = 1;
    bft_mount();
    other_user_body();
}
static void other_user_body(void)
{
    char p[PATH_MAX];
    struct bigfile_stat s0;
    make_uncommitted_change(p, "shared", &s0);
    cr_assert_eq(chmod(p, 0644), 0, "chmod: %s", strerror(errno));
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_uid, 0, "the file belongs to root");

    struct other_user *o = mmap(NULL, sizeof(*o), PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(o, MAP_FAILED);
    memset(o, 0x7f, sizeof(*o));
    snprintf(o->path, sizeof(o->path), "%s", p);
    int ws = bft_run(child_other_user, o, 20);
    cr_assert(ws != -1 && WIFEXITED(ws), "the child did not exit (0x%x)", ws);
    cr_assert_neq(WEXITSTATUS(ws), 99, "could not become uid 65534");
    cr_assert_eq(WEXITSTATUS(ws), 0);

    cr_expect_eq(o->open_rdwr, EACCES, "nobody: open O_RDWR of a 0644 root file: %s",
                 strerror(o->open_rdwr));
    cr_expect_eq(o->open_wronly, EACCES, "nobody: open O_WRONLY: %s", strerror(o->open_wronly));
    cr_assert_eq(o->open_rdonly, 0, "nobody: open O_RDONLY: %s", strerror(o->open_rdonly));
    for (int i = 0; i < N_CHANGE_REQS; i++)
        cr_expect_eq(o->res[i], -EBADF, "nobody: %s through O_RDONLY: %s (want EBADF)",
                     change_names[i], strerror(-o->res[i]));
    cr_expect_eq(o->stat_res, 0, "nobody: STAT: %s", strerror(-o->stat_res));
    cr_expect_eq(o->dirty_seen, 1, "nobody's STAT sees the owner's change");
    cr_expect_eq(o->reclaim_res, 0, "nobody: RECLAIM: %s", strerror(-o->reclaim_res));
    munmap(o, sizeof(*o));

    /* The owner's change is intact, and the owner can still commit it. */
    expect_changes_intact(p, &s0, "after another user's requests");
    struct bigfile_writeout w;
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &w), 0);
    cr_expect_eq(w.blocks, 1, "the owner commits its change");
    bft_expect(p, BS, BS, 2, "the owner's committed change");
}
