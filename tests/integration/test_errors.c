/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: failures and refusals. Injected backend
 * faults and latency (-o test_inject, memory database): loadblk failures (EIO,
 * SIGBUS), failed writeouts, EBUSY, invalidate racing a load; read-only
 * mounts (EROFS); foreign and corrupt databases; SIGTERM with uncommitted
 * changes. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "fs/test_inject.h"

#define BS ((uint64_t)65536)

static int inject(const char *path, uint32_t mem_op, uint64_t lo, uint64_t hi, int err,
                  uint32_t delay_us, uint64_t after, uint64_t times)
{
    struct bigfile_test_inject in = {
        .op = BIGFILE_TEST_INJECT_ADD,
        .mem_op = mem_op,
        .blk_lo = lo,
        .blk_hi = hi,
        .err = err,
        .delay_us = delay_us,
        .after = after,
        .times = times,
    };
    return bft_ioctl(path, BIGFILE_TEST_IOC_INJECT, &in);
}

static int inject_clear(const char *path)
{
    struct bigfile_test_inject in = { .op = BIGFILE_TEST_INJECT_CLEAR };
    return bft_ioctl(path, BIGFILE_TEST_IOC_INJECT, &in);
}

static void msleep(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* A committed file NAME: 64K blocks, 1 MiB, blocks 0..7 of seed `seed`;
 * caches dropped. */
static void committed_file(char *p, const char *name, unsigned seed)
{
    bft_create(name, "64K", "1M");
    bft_path(p, name);
    bft_put_commit(p, 0, 8 * BS, seed);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
}

/* ---- loadblk failure ------------------------------------------------------------ */

struct touch_job {
    char path[PATH_MAX];
    uint64_t off;
    unsigned seed;
};

/* Touch one byte through a mapping; 0 if it holds the pattern, 1 if not;
 * killed by SIGBUS if the page cannot be read. */
static int child_map_touch(void *arg)
{
    struct touch_job *j = arg;
    signal(SIGBUS, SIG_DFL);
    int fd = open(j->path, O_RDONLY);
    if (fd < 0)
        return 10;
    volatile uint8_t *m = mmap(NULL, BFT_MB, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 11;
    uint8_t v = m[j->off];
    return bft_check_pattern(&v, 1, j->seed, j->off) ? 0 : 1;
}

BFT_TEST(errors, loadblk_failure_gives_eio_and_sigbus_then_recovers, bft_setup_inject, 60)
{
    char p[PATH_MAX], q[PATH_MAX];
    committed_file(p, "failing_file", 1);
    committed_file(q, "healthy_file", 2);

    int r = inject(p, BIGFILE_TEST_INJECT_LOADBLK, 2, 2, EIO, 0, 0, 0);
    cr_assert_eq(r, 0, "INJECT: %s", strerror(-r));

    uint8_t buf[4096];
    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0);
    errno = 0;
    ssize_t n = pread(fd, buf, sizeof(buf), (off_t)(2 * BS + 8192));
    cr_expect_eq(n, -1, "read of a failing block returned %zd", n);
    cr_expect_eq(errno, EIO, "read of a failing block: %s, want EIO", strerror(errno));
    close(fd);

    struct touch_job j = { .off = 2 * BS + 100, .seed = 1 };
    snprintf(j.path, sizeof(j.path), "%s", p);
    int st = bft_run(child_map_touch, &j, 20);
    cr_expect(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS,
              "mapped access of a failing block: status 0x%x, want death by SIGBUS", st);

    /* the daemon keeps serving: other blocks, other files */
    bft_expect(p, 0, 2 * BS, 1, "blocks before the failing one");
    bft_expect(p, 3 * BS, 5 * BS, 1, "blocks after the failing one");
    bft_expect(q, 0, 8 * BS, 2, "another file");
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_geq(s.errors, 1, "STAT errors counts the failed loads");

    char *log = bft_slurp(bft.log);
    cr_expect(log && strstr(log, "failing_file"),
              "the daemon logs the failure naming the file:\n%s", log ? log : "");
    free(log);

    /* once the fault is cleared, the same accesses succeed */
    cr_assert_eq(inject_clear(p), 0);
    bft_expect(p, 2 * BS, BS, 1, "read after clearing the fault");
    j.off = 2 * BS + 100;
    st = bft_run(child_map_touch, &j, 20);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "mapped access after clearing the fault: status 0x%x", st);
}

BFT_TEST(errors, inject_is_enotty_without_option, bft_setup_mem, 30)
{
    char p[PATH_MAX];
    bft_create("f", "64K", "1M");
    bft_path(p, "f");
    cr_expect_eq(inject(p, BIGFILE_TEST_INJECT_LOADBLK, 0, 0, EIO, 0, 0, 0), -ENOTTY);
}

BFT_TEST(errors, inject_option_refused_with_sqlite, bft_setup_nomount, 30)
{
    const char *argv[] = { "-f", "-o", "test_inject", bft.db, bft.mnt, NULL };
    int st = bft_daemon_run(10, argv);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0,
              "-o test_inject with an SQLite database must be refused (status 0x%x)", st);
    cr_expect(!bft_is_fuse(bft.mnt), "nothing is mounted");
}

/* ---- failed writeouts ----------------------------------------------------------- */

BFT_TEST(errors, failed_storeblk_keeps_changes_and_retry_commits, bft_setup_inject, 60)
{
    char p[PATH_MAX];
    struct bigfile_stat s0, s1;
    struct bigfile_writeout w;
    committed_file(p, "f", 1);
    bft_put(p, BS, 3 * BS, 2); /* blocks 1..3 dirty */
    cr_assert_eq(bft_stat(p, &s0), 0);
    cr_assert_eq(s0.dirty_blocks, 3);

    /* the second storeblk fails */
    cr_assert_eq(inject(p, BIGFILE_TEST_INJECT_STOREBLK, 0, UINT64_MAX, EIO, 0, 1, 0), 0);
    int r = bft_writeout(p, BFT_WO_BOTH, &w);
    cr_expect_eq(r, -EIO, "writeout with a failing storeblk: %s, want EIO", strerror(-r));
    cr_assert_eq(bft_stat(p, &s1), 0);
    cr_expect_eq(s1.dirty_blocks, 3, "every change is still dirty after a failed writeout (%llu)",
                 (unsigned long long)s1.dirty_blocks);
    cr_expect_eq(s1.writeouts, s0.writeouts, "a failed writeout is not counted as one");
    cr_expect_gt(s1.errors, s0.errors);
    bft_expect(p, BS, 3 * BS, 2, "the changes are still visible");

    cr_assert_eq(inject_clear(p), 0);
    r = bft_writeout(p, BFT_WO_BOTH, &w);
    cr_assert_eq(r, 0, "retry: %s", strerror(-r));
    cr_expect_eq(w.blocks, 3);
    cr_assert_eq(bft_discard(p, NULL), 0);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    bft_expect(p, BS, 3 * BS, 2, "the retry committed everything");
    bft_expect(p, 0, BS, 1, "block 0 unchanged");
}

BFT_TEST(errors, failed_commit_is_all_or_nothing, bft_setup_inject, 60)
{
    char p[PATH_MAX];
    struct bigfile_stat s;
    committed_file(p, "f", 1);
    bft_put(p, 0, 4 * BS, 3);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)(2 * BFT_MB)), 0);
    close(fd);

    cr_assert_eq(inject(p, BIGFILE_TEST_INJECT_COMMIT, 0, UINT64_MAX, ENOSPC, 0, 0, 1), 0);
    int r = bft_writeout(p, BFT_WO_BOTH, NULL);
    cr_expect_eq(r, -ENOSPC, "writeout with a failing commit: %s, want ENOSPC", strerror(-r));
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 4, "dirty_blocks after a failed commit: %llu",
                 (unsigned long long)s.dirty_blocks);
    cr_expect_eq(s.size, 2 * BFT_MB);
    cr_expect_eq(s.committed_size, BFT_MB, "the size was not committed");

    /* nothing of the failed transaction is visible after a discard */
    cr_assert_eq(bft_discard(p, NULL), 0);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    cr_expect_eq(bft_size(p), (int64_t)BFT_MB);
    bft_expect(p, 0, 8 * BS, 1, "the database holds the old content only");
}

/* ---- EBUSY ------------------------------------------------------------------------ */

static int child_slow_writeout(void *arg)
{
    struct bigfile_writeout w;
    int r = bft_writeout(arg, BFT_WO_BOTH, &w);
    if (r)
        return -r;
    return w.blocks == 1 ? 0 : 100;
}

BFT_TEST(errors, ebusy_while_a_writeout_runs, bft_setup_inject, 60)
{
    char p[PATH_MAX];
    committed_file(p, "f", 1);
    bft_put(p, 0, 100, 2);
    cr_assert_eq(inject(p, BIGFILE_TEST_INJECT_STOREBLK, 0, UINT64_MAX, 0, 3000000, 0, 0), 0);

    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(child_slow_writeout(p));
    msleep(600);
    int busy_w = bft_writeout(p, BFT_WO_BOTH, NULL);
    int busy_d = bft_discard(p, NULL);
    int st;
    pid_t done = waitpid(pid, &st, WNOHANG);
    cr_expect_eq(done, 0, "the slow writeout ended before the checks: the test proved nothing");
    cr_expect_eq(busy_w, -EBUSY, "writeout during a writeout: %s, want EBUSY", strerror(-busy_w));
    cr_expect_eq(busy_d, -EBUSY, "discard during a writeout: %s, want EBUSY", strerror(-busy_d));

    if (done == 0)
        cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the slow writeout failed: %d",
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    cr_assert_eq(inject_clear(p), 0);
    /* the refused discard dropped nothing: the first writeout committed */
    cr_assert_eq(bft_discard(p, NULL), 0);
    bft_expect(p, 0, 100, 2, "committed by the slow writeout");
}

/* A block rewritten while a writeout stores it: the writeout commits its
 * snapshot, the new write stays an uncommitted change. */
static int child_writeout_blocks(void *arg)
{
    struct bigfile_writeout w;
    int r = bft_writeout(arg, BFT_WO_BOTH, &w);
    return r ? -r : (int)(w.blocks & 0x7f) + 100;
}

BFT_TEST(errors, write_during_writeout_stays_dirty, bft_setup_inject, 60)
{
    char p[PATH_MAX];
    committed_file(p, "f", 1);
    bft_put(p, 0, BS, 2);
    cr_assert_eq(inject(p, BIGFILE_TEST_INJECT_STOREBLK, 0, UINT64_MAX, 0, 1500000, 0, 0), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(child_writeout_blocks(p));
    msleep(500);
    bft_put(p, 0, BS, 3); /* while block 0 is being stored */
    int st;
    cr_expect_eq(waitpid(pid, &st, WNOHANG), 0,
                 "the writeout ended before the rewrite: the test proved nothing");
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 101, "writeout: exit %d (want 101: 1 block)",
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    cr_assert_eq(inject_clear(p), 0);
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 1, "the block rewritten during the writeout stays dirty");
    bft_expect(p, 0, BS, 3, "the newest data is visible");
    cr_assert_eq(bft_discard(p, NULL), 0);
    bft_expect(p, 0, BS, 2, "the writeout committed its snapshot");
}

/* ---- a killed daemon -------------------------------------------------------------------------- */

BFT_TEST(errors, killed_daemon_gives_errors_and_leaves_the_database_intact, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    bft_create("k", "64K", "1M");
    bft_path(p, "k");
    bft_put_commit(p, 0, 4 * BS, 1);
    bft_put(p, 0, 2 * BS, 2); /* uncommitted */
    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0);

    kill(bft.daemon, SIGKILL);
    int st;
    cr_assert_eq(waitpid(bft.daemon, &st, 0), bft.daemon);
    bft.daemon = 0;
    uint8_t b;
    errno = 0;
    cr_expect_eq(pread(fd, &b, 1, 5 * BS), -1, "reads fail once the daemon is gone");
    cr_expect(errno == ENOTCONN || errno == EIO, "errno %s", strerror(errno));
    close(fd);
    umount2(bft.mnt, MNT_DETACH);

    bft_mount();
    bft_expect(p, 0, 4 * BS, 1, "the committed data survived the kill");
    cr_expect_eq(bft_size(p), (int64_t)BFT_MB);
}

/* ---- concurrency: slow backend calls block nobody else ------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int child_plain_writeout(void *arg)
{
    int r = bft_writeout(arg, BFT_WO_BOTH, NULL);
    return r ? -r : 0;
}

/* While a writeout of file A is stuck in storeblk (2 s), a writeout of file
 * B, loads of A's other blocks and of B's blocks all proceed at once. */
BFT_TEST(errors, a_slow_writeout_blocks_no_other_file_or_block, bft_setup_inject, 60)
{
    char a[PATH_MAX], b[PATH_MAX];
    committed_file(a, "a", 1);
    committed_file(b, "b", 2);
    bft_put(a, 0, 100, 3);
    bft_put(b, 0, 100, 4);
    cr_assert_eq(inject(a, BIGFILE_TEST_INJECT_STOREBLK, 0, UINT64_MAX, 0, 2000000, 0, 0), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(child_plain_writeout(a));
    msleep(300);

    double t0 = now_s();
    bft_expect(a, 5 * BS, BS, 1, "another block of the file being written out");
    double t_read_a = now_s() - t0;
    t0 = now_s();
    bft_expect(b, 5 * BS, BS, 2, "another file");
    double t_read_b = now_s() - t0;
    t0 = now_s();
    int r = bft_writeout(b, BFT_WO_BOTH, NULL);
    double t_wo_b = now_s() - t0;
    int st;
    pid_t done = waitpid(pid, &st, WNOHANG);

    cr_expect_eq(r, 0, "writeout of another file during a slow writeout: %s", strerror(-r));
    cr_expect_eq(done, 0, "the slow writeout ended before the checks: the test proved nothing");
    cr_expect_lt(t_read_a, 0.7, "a load of another block waited %.2f s for the writeout", t_read_a);
    cr_expect_lt(t_read_b, 0.7, "a load of another file waited %.2f s for the writeout", t_read_b);
    cr_expect_lt(t_wo_b, 0.7, "a writeout of another file waited %.2f s", t_wo_b);
    if (done == 0)
        cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the slow writeout failed: %d",
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static int child_read_block0_any(void *arg)
{
    uint8_t buf[4096];
    return bft_pread(arg, buf, sizeof(buf), 0) ? 1 : 0;
}

/* While block 0 is stuck in loadblk (2 s), other blocks load in parallel
 * and STAT answers. */
BFT_TEST(errors, a_slow_load_blocks_no_other_block, bft_setup_inject, 60)
{
    char p[PATH_MAX];
    committed_file(p, "f", 1);
    cr_assert_eq(inject(p, BIGFILE_TEST_INJECT_LOADBLK, 0, 0, 0, 2000000, 0, 0), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(child_read_block0_any(p));
    msleep(300);
    double t0 = now_s();
    bft_expect(p, 4 * BS, BS, 1, "another block during a slow load");
    double t_read = now_s() - t0;
    t0 = now_s();
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    double t_stat = now_s() - t0;
    int st;
    pid_t done = waitpid(pid, &st, WNOHANG);
    cr_expect_eq(done, 0, "the slow load ended before the checks: the test proved nothing");
    cr_expect_lt(t_read, 0.7, "a load of another block waited %.2f s", t_read);
    cr_expect_lt(t_stat, 0.7, "STAT waited %.2f s for a load", t_stat);
    if (done == 0)
        cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- invalidate racing a load ---------------------------------------------------------- */

static int child_read_block0(void *arg)
{
    const char *path = arg;
    uint8_t *buf = malloc(BS);
    int r = bft_pread(path, buf, BS, 0);
    int ok = r == 0 && bft_check_pattern(buf, BS, 1, 0);
    free(buf);
    return r ? 20 : ok ? 0 : 1;
}

BFT_TEST(errors, invalidate_racing_a_slow_load, bft_setup_inject, 60)
{
    char p[PATH_MAX];
    struct bigfile_stat s0, s1;
    committed_file(p, "f", 1);
    cr_assert_eq(bft_stat(p, &s0), 0);
    cr_assert_eq(inject(p, BIGFILE_TEST_INJECT_LOADBLK, 0, 0, 0, 1000000, 0, 0), 0);

    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(child_read_block0(p));
    msleep(300);
    struct bigfile_stat mid;
    cr_assert_eq(bft_stat(p, &mid), 0);
    cr_expect_geq(mid.loading_blocks, 1, "block 0 is loading when the invalidation comes");
    int r = bft_invalidate(p, 0, 1);
    cr_expect_eq(r, 0, "INVALIDATE during a load: %s", strerror(-r));
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "the reader racing the invalidation got %s (status 0x%x)",
              WIFEXITED(st) && WEXITSTATUS(st) == 1 ? "wrong data" : "an error", st);
    cr_assert_eq(inject_clear(p), 0);
    bft_expect(p, 0, BS, 1, "re-read after the race");
    cr_assert_eq(bft_stat(p, &s1), 0);
    cr_expect_geq(s1.loadblk_calls, s0.loadblk_calls + 2,
                  "the invalidated load was done again (loadblk_calls %llu -> %llu)",
                  (unsigned long long)s0.loadblk_calls, (unsigned long long)s1.loadblk_calls);
    cr_expect_eq(s1.loading_blocks, 0);
}

static int child_read_big_block(void *arg)
{
    const char *path = arg;
    size_t len = 16 * BFT_MB;
    uint8_t *buf = malloc(len);
    int r = bft_pread(path, buf, len, 0);
    free(buf);
    return r ? 20 : 0;
}

/* With SQLite: change a 16 MiB block behind the daemon while a reader may
 * be loading it, then invalidate. Whatever the timing, once INVALIDATE has
 * returned nobody may see the old content — neither read(2) nor an existing
 * mapping (no stale page left in the page cache by the racing READ). */
BFT_TEST(errors, invalidate_racing_a_load_never_leaves_stale_pages, bft_setup_sqlite, 90)
{
    char p[PATH_MAX];
    const uint64_t bs = 16 * BFT_MB;
    bft_create("big", "16M", "16M");
    bft_path(p, "big");
    bft_put_commit(p, 0, bs, 1);

    struct bft_peer peer;
    cr_assert_eq(bft_peer_start(&peer, p, bs), 0);
    unsigned raced = 0;
    for (unsigned round = 0; round < 4; round++) {
        unsigned seed = 10 + round;
        cr_assert_eq(bft_reclaim(p, NULL), 0);
        /* the new content waits in an open transaction: the reader's load
         * starts on the old one */
        struct bft_sql_stage *stage = bft_sql_stage_block(bft.db, "big", 0, (uint32_t)bs, seed);
        cr_assert_not_null(stage, "stage the change of block 0");
        fflush(NULL);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
            _exit(child_read_big_block(p));
        msleep(1 + 2 * round);
        cr_assert_eq(bft_sql_stage_commit(stage), 0);
        struct bigfile_stat mid;
        if (bft_stat(p, &mid) == 0 && mid.loading_blocks)
            raced++;
        int r = bft_invalidate(p, 0, 1);
        cr_expect_eq(r, 0, "INVALIDATE: %s", strerror(-r));
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "racing reader failed (0x%x)", st);
        bft_expect(p, 0, 64 * 1024, seed, "head of the block after the racing invalidation");
        bft_expect(p, bs - 64 * 1024, 64 * 1024, seed,
                   "tail of the block after the racing invalidation");
        cr_expect_eq(bft_peer_check(&peer, 0, bs, seed), 1,
                     "round %u: the mapping shows the new content everywhere", round);
    }
    cr_log_info("invalidation came while block 0 was loading in %u of 4 rounds", raced);
    int st = bft_peer_stop(&peer);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- read-only mounts -------------------------------------------------------------------- */

BFT_TEST(errors, ro_mount_refuses_writes_and_writeout, bft_setup_nomount, 60)
{
    char p[PATH_MAX], q[PATH_MAX];
    bft_mount();
    bft_create("f", "64K", "1M");
    bft_path(p, "f");
    bft_put_commit(p, 0, BS, 4);
    bft_assert_daemon_clean(bft_unmount(), "unmount");
    snprintf(bft.opts, sizeof(bft.opts), "ro");
    bft_mount();

    bft_expect(p, 0, BS, 4, "reads work on a ro mount");
    errno = 0;
    cr_expect_eq(open(p, O_WRONLY), -1);
    cr_expect_eq(errno, EROFS, "open O_WRONLY: %s", strerror(errno));
    errno = 0;
    cr_expect_eq(open(p, O_RDWR), -1);
    cr_expect_eq(errno, EROFS, "open O_RDWR: %s", strerror(errno));
    errno = 0;
    cr_expect_eq(open(bft_path(q, "new"), O_RDWR | O_CREAT, 0644), -1);
    cr_expect_eq(errno, EROFS, "create: %s", strerror(errno));
    cr_expect_eq(unlink(p), -1);
    cr_expect_eq(bft_writeout(p, BFT_WO_BOTH, NULL), -EROFS, "WRITEOUT on a ro mount");
    struct bigfile_stat s;
    cr_expect_eq(bft_stat(p, &s), 0, "STAT works on a ro mount");
    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0);
    errno = 0;
    cr_expect_eq(write(fd, "x", 1), -1);
    /* Through the only kind of fd a ro mount has: WRITEOUT and SETBLKSIZE
     * say EROFS (more helpful than EBADF); DISCARD and INVALIDATE work, as
     * nothing can be uncommitted and INVALIDATE is how a ro mount sees
     * database changes. */
    struct bigfile_writeout w = { .flags = BFT_WO_BOTH };
    errno = 0;
    cr_expect_eq(ioctl(fd, BIGFILE_IOC_WRITEOUT, &w), -1);
    cr_expect_eq(errno, EROFS, "WRITEOUT through O_RDONLY on a ro mount: %s", strerror(errno));
    struct bigfile_blksize b = { .blksize = 4096 };
    errno = 0;
    cr_expect_eq(ioctl(fd, BIGFILE_IOC_SETBLKSIZE, &b), -1);
    cr_expect_eq(errno, EROFS, "SETBLKSIZE through O_RDONLY on a ro mount: %s", strerror(errno));
    struct bigfile_count c = { 0, 0 };
    cr_expect_eq(ioctl(fd, BIGFILE_IOC_DISCARD, &c), 0, "DISCARD on a ro mount: %s",
                 strerror(errno));
    cr_expect_eq(c.blocks, 0, "nothing to discard on a ro mount");
    struct bigfile_range rg = { .start = 0, .count = 4 };
    cr_expect_eq(ioctl(fd, BIGFILE_IOC_INVALIDATE, &rg), 0, "INVALIDATE on a ro mount: %s",
                 strerror(errno));
    close(fd);
    bft_expect(p, 0, BS, 4, "reads after INVALIDATE on a ro mount");
}

/* ---- bad databases ------------------------------------------------------------------------- */

static void expect_refused(const char *what)
{
    char *before = bft_slurp(bft.db);
    struct stat st0, st1;
    cr_assert_eq(stat(bft.db, &st0), 0);
    const char *argv[] = { "-f", bft.db, bft.mnt, NULL };
    int st = bft_daemon_run(10, argv);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0,
              "%s: bigfilefs must exit nonzero (status 0x%x)", what, st);
    cr_expect(!bft_is_fuse(bft.mnt), "%s: nothing is mounted", what);
    char *log = bft_slurp(bft.log);
    cr_expect(log && strstr(log, bft.db), "%s: the message names the database:\n%s", what,
              log ? log : "");
    cr_expect(log && (strstr(log, "not a bigfilefs") || strstr(log, "corrupt") ||
                      strstr(log, "malformed") || strstr(log, "not a database")),
              "%s: the message says what is wrong:\n%s", what, log ? log : "");
    free(log);
    cr_assert_eq(stat(bft.db, &st1), 0);
    char *after = bft_slurp(bft.db);
    cr_expect_eq(st0.st_size, st1.st_size, "%s: the file size changed", what);
    cr_expect(before && after && memcmp(before, after, (size_t)st0.st_size) == 0,
              "%s: the file was modified", what);
    free(before);
    free(after);
}

BFT_TEST(errors, foreign_sqlite_database_is_refused, bft_setup_nomount, 30)
{
    cr_assert_eq(bft_sql_exec(bft.db, "CREATE TABLE t(x); INSERT INTO t VALUES(1);"), 0);
    expect_refused("a SQLite database of another application");
}

BFT_TEST(errors, non_sqlite_file_is_refused, bft_setup_nomount, 30)
{
    int fd = open(bft.db, O_WRONLY | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    char text[8192];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + i % 26);
    cr_assert_eq(write(fd, text, sizeof(text)), (ssize_t)sizeof(text));
    close(fd);
    expect_refused("a text file");
}

BFT_TEST(errors, corrupt_bigfilefs_database_is_refused, bft_setup_nomount, 30)
{
    char p[PATH_MAX];
    bft_mount();
    bft_create("f", "64K", "1M");
    bft_put_commit(bft_path(p, "f"), 0, 4 * BS, 1);
    bft_assert_daemon_clean(bft_unmount(), "unmount");
    /* checkpointed at close: overwrite the schema page's b-tree (after the
     * 100-byte header of page 1) with garbage */
    int fd = open(bft.db, O_WRONLY);
    cr_assert_geq(fd, 0);
    char junk[2048];
    memset(junk, 0xA7, sizeof(junk));
    cr_assert_eq(pwrite(fd, junk, sizeof(junk), 100), (ssize_t)sizeof(junk));
    close(fd);
    char wal[PATH_MAX];
    snprintf(wal, sizeof(wal), "%s-wal", bft.db);
    unlink(wal);
    expect_refused("a corrupt bigfilefs database");
}

/* ---- signals --------------------------------------------------------------------------------- */

BFT_TEST(errors, sigterm_unmounts_and_discards_naming_the_file, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    bft_create("pending_changes", "64K", "1M");
    bft_path(p, "pending_changes");
    bft_put_commit(p, 0, BS, 1);
    bft_put(p, 0, 2 * BS, 2); /* uncommitted, file closed */

    int mounted = 1;
    int st = bft_sigterm_sig(SIGTERM, &mounted);
    bft_assert_daemon_clean(st, "SIGTERM");
    cr_expect(!mounted, "SIGTERM unmounts");
    char *log = bft_slurp(bft.log);
    cr_expect(log && strstr(log, "pending_changes"),
              "the log names the file whose changes were discarded:\n%s", log ? log : "");
    free(log);

    bft_mount();
    bft_expect(p, 0, BS, 1, "committed data after SIGTERM");
    bft_expect(p, BS, BS, BFT_ZEROS, "uncommitted data discarded by SIGTERM");
}

BFT_TEST(errors, sigint_and_umount_also_discard_naming_the_file, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    bft_create("dropped_by_sigint", "64K", "1M");
    bft_put(bft_path(p, "dropped_by_sigint"), 0, 100, 1);
    int mounted = 1;
    int st = bft_sigterm_sig(SIGINT, &mounted);
    bft_assert_daemon_clean(st, "SIGINT");
    cr_expect(!mounted, "SIGINT unmounts");
    char *log = bft_slurp(bft.log);
    cr_expect(log && strstr(log, "dropped_by_sigint"), "SIGINT: the log names the file:\n%s",
              log ? log : "");
    free(log);

    bft_mount();
    bft_expect(p, 0, 100, BFT_ZEROS, "discarded by SIGINT");
    bft_create("dropped_by_umount", "64K", "1M");
    bft_put(bft_path(p, "dropped_by_umount"), 0, 100, 1);
    bft_assert_daemon_clean(bft_unmount(), "umount");
    log = bft_slurp(bft.log);
    cr_expect(log && strstr(log, "dropped_by_umount"), "umount: the log names the file:\n%s",
              log ? log : "");
    free(log);
}
