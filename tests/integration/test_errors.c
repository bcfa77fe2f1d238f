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
#include <unistd.h>

#include <criterion/criterion.h>

#include "fs/test_inject.h"

#define BS ((uint64_t)65536)

/* How long a test waits for an event (a call getting held, a child
 * ending), and the guard's timeout: only a broken daemon takes that long. */
#define WAIT_S 20

/* Wait for child pid (bounded: a hang fails); its wait status, or -1. */
static int wait_child(pid_t pid)
{
    int st;
    return bft_wait_children(&pid, 1, WAIT_S, &st) == 0 ? st : -1;
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

    int r = bft_inject(p, BIGFILE_TEST_INJECT_LOADBLK, 2, 2, EIO, 0, 0, 0);
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
    cr_assert_eq(bft_inject_clear(p), 0);
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
    cr_expect_eq(bft_inject(p, BIGFILE_TEST_INJECT_LOADBLK, 0, 0, EIO, 0, 0, 0), -ENOTTY);
}

BFT_TEST(errors, inject_option_refused_with_sqlite, bft_setup_nomount, 30)
{
    const char *argv[] = { "-f", "-o", "test_inject", bft.db, bft.mnt, NULL };
    int st = bft_daemon_run(10, argv);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0,
              "-o test_inject with an SQLite database must be refused (status 0x%x)", st);
    cr_expect(!bft_is_fuse(bft.mnt), "nothing is mounted");
}

/* The hold rule of the test ioctl, which the tests below rely on: a held
 * call waits for RELEASE, WAIT_HELD and HELD see it, a released rule holds
 * no more, and a held call with an errno fails with it once released. */
struct read_job {
    const char *path;
    uint64_t blk;
    unsigned seed;
};

/* Read block blk: 0 if it holds the pattern, 1 if not, 100 + errno. */
static int child_read_block(void *arg)
{
    const struct read_job *j = arg;
    uint8_t *buf = malloc(BS);
    int r = bft_pread(j->path, buf, BS, j->blk * BS);
    int ok = r == 0 && bft_check_pattern(buf, BS, j->seed, j->blk * BS);
    free(buf);
    return r ? 100 - r : ok ? 0 : 1;
}

/* WRITEOUT: 0 or its errno. */
static int child_plain_writeout(void *arg)
{
    return -bft_writeout(arg, BFT_WO_BOTH, NULL);
}

BFT_TEST(errors, inject_hold_waits_for_release, bft_setup_inject, 60)
{
    char p[PATH_MAX];
    committed_file(p, "f", 1);
    cr_expect_eq(bft_held(p), 0);
    cr_assert_eq(bft_hold(p, BIGFILE_TEST_INJECT_LOADBLK, 3, 3, 0, 0), 0);
    cr_expect_eq(bft_wait_held(p, 1, 0), -ETIMEDOUT, "WAIT_HELD with nothing held times out");

    struct read_job j = { p, 3, 1 };
    pid_t pid = bft_spawn(child_read_block, &j);
    cr_assert_gt(pid, 0);
    cr_assert_eq(bft_wait_held(p, 1, WAIT_S), 0, "the load of block 3 is held");
    cr_expect_eq(bft_held(p), 1);
    cr_expect(!bft_exited(pid), "the read waits while its load is held");
    cr_assert_eq(bft_release(p), 0);
    int st = wait_child(pid);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the released read: 0x%x", st);
    cr_expect_eq(bft_held(p), 0);

    /* released: the rule holds no more */
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    cr_assert_eq(bft_guard(p, WAIT_S), 0);
    bft_expect(p, 3 * BS, BS, 1, "a read after the release");
    cr_expect_eq(bft_unguard(), 0, "a released hold rule held a later load");

    /* held, then failed (a writeout: the kernel retries a failed read) */
    bft_put(p, 5 * BS, 100, 2);
    cr_assert_eq(bft_hold(p, BIGFILE_TEST_INJECT_STOREBLK, 0, UINT64_MAX, 0, EIO), 0);
    pid = bft_spawn(child_plain_writeout, p);
    cr_assert_gt(pid, 0);
    cr_assert_eq(bft_wait_held(p, 1, WAIT_S), 0, "the store of block 5 is held");
    cr_assert_eq(bft_release(p), 0);
    st = wait_child(pid);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == EIO,
              "a held call with an errno fails with it once released: 0x%x", st);
    cr_assert_eq(bft_inject_clear(p), 0);
}

BFT_TEST(errors, inject_refuses_bad_arguments, bft_setup_inject, 30)
{
    char p[PATH_MAX];
    bft_create("f", "64K", "1M");
    bft_path(p, "f");
    const struct bigfile_test_inject bad[] = {
        { .op = 0 },
        { .op = BIGFILE_TEST_INJECT_WAIT_HELD + 1 },
        { .op = BIGFILE_TEST_INJECT_ADD, .mem_op = 0 },
        { .op = BIGFILE_TEST_INJECT_ADD, .mem_op = BIGFILE_TEST_INJECT_UNSTAGE + 1 },
        { .op = BIGFILE_TEST_INJECT_ADD, .mem_op = BIGFILE_TEST_INJECT_LOADBLK, .err = -5 },
        { .op = BIGFILE_TEST_INJECT_ADD, .mem_op = BIGFILE_TEST_INJECT_LOADBLK, .blk_lo = 2 },
        { .op = BIGFILE_TEST_INJECT_ADD, .mem_op = BIGFILE_TEST_INJECT_LOADBLK, .flags = 2 },
        { .op = BIGFILE_TEST_INJECT_ADD, .mem_op = BIGFILE_TEST_INJECT_LOADBLK, .reserved = 1 },
        { .op = BIGFILE_TEST_INJECT_RELEASE, .flags = BIGFILE_TEST_INJECT_HOLD },
        { .op = BIGFILE_TEST_INJECT_WAIT_HELD, .timeout_ms = BIGFILE_TEST_INJECT_WAIT_MAX_MS + 1 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct bigfile_test_inject t = bad[i];
        int r = bft_ioctl(p, BIGFILE_TEST_IOC_INJECT, &t);
        cr_expect_eq(r, -EINVAL, "bad argument %zu: %s, want EINVAL", i, strerror(-r));
    }
    cr_expect_eq(bft_held(p), 0);
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
    cr_assert_eq(bft_inject(p, BIGFILE_TEST_INJECT_STOREBLK, 0, UINT64_MAX, EIO, 0, 1, 0), 0);
    int r = bft_writeout(p, BFT_WO_BOTH, &w);
    cr_expect_eq(r, -EIO, "writeout with a failing storeblk: %s, want EIO", strerror(-r));
    cr_assert_eq(bft_stat(p, &s1), 0);
    cr_expect_eq(s1.dirty_blocks, 3, "every change is still dirty after a failed writeout (%llu)",
                 (unsigned long long)s1.dirty_blocks);
    cr_expect_eq(s1.writeouts, s0.writeouts, "a failed writeout is not counted as one");
    cr_expect_gt(s1.errors, s0.errors);
    bft_expect(p, BS, 3 * BS, 2, "the changes are still visible");

    cr_assert_eq(bft_inject_clear(p), 0);
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

    cr_assert_eq(bft_inject(p, BIGFILE_TEST_INJECT_COMMIT, 0, UINT64_MAX, ENOSPC, 0, 0, 1), 0);
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

/* The calls the memory backend holds: each test below holds one, waits
 * until it is held, acts and checks under a guard (harness.h: an action
 * that waited for the held call fails the test instead of hanging it),
 * checks that the call was still held meanwhile, and releases it. */

/* Hold the calls mem_op on path's blocks [blk_lo, blk_hi], start fn(arg)
 * in a child, wait until its call is held and start a guard; returns the
 * child. */
static pid_t start_held(const char *path, uint32_t mem_op, uint64_t blk_lo, uint64_t blk_hi,
                        int (*fn)(void *arg), void *arg)
{
    cr_assert_eq(bft_hold(path, mem_op, blk_lo, blk_hi, 0, 0), 0);
    pid_t pid = bft_spawn(fn, arg);
    cr_assert_gt(pid, 0, "fork: %s", strerror(errno));
    int r = bft_wait_held(path, 1, WAIT_S);
    cr_assert_eq(r, 0, "the backend call was never held: %s", strerror(-r));
    cr_assert_eq(bft_guard(path, WAIT_S), 0);
    return pid;
}

/* End what start_held began: stop the guard, check that the call was held
 * through what the test did meanwhile (`what`), release it and wait for
 * the child; returns its wait status. */
static int end_held(const char *path, pid_t pid, const char *what)
{
    cr_expect_eq(bft_unguard(), 0, "%s: waited for the held call", what);
    cr_expect_eq(bft_held(path), 1, "%s: the call was not held throughout", what);
    cr_assert_eq(bft_release(path), 0);
    int st = wait_child(pid);
    cr_assert_eq(bft_inject_clear(path), 0);
    return st;
}

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
    pid_t pid = start_held(p, BIGFILE_TEST_INJECT_STOREBLK, 0, UINT64_MAX, child_slow_writeout, p);
    int busy_w = bft_writeout(p, BFT_WO_BOTH, NULL);
    int busy_d = bft_discard(p, NULL);
    int st = end_held(p, pid, "WRITEOUT and DISCARD during a writeout");
    cr_expect_eq(busy_w, -EBUSY, "writeout during a writeout: %s, want EBUSY", strerror(-busy_w));
    cr_expect_eq(busy_d, -EBUSY, "discard during a writeout: %s, want EBUSY", strerror(-busy_d));
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the slow writeout failed: %d",
              st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
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
    pid_t pid = start_held(p, BIGFILE_TEST_INJECT_STOREBLK, 0, UINT64_MAX, child_writeout_blocks,
                           p);
    bft_put(p, 0, BS, 3); /* while block 0 is being stored */
    int st = end_held(p, pid, "a write of the block being stored");
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 101,
              "writeout: exit %d (want 101: 1 block)",
              st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
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

/* While a writeout of file A is stuck in storeblk (held), a writeout of
 * file B, loads of A's other blocks and of B's blocks all proceed. */
BFT_TEST(errors, a_slow_writeout_blocks_no_other_file_or_block, bft_setup_inject, 60)
{
    char a[PATH_MAX], b[PATH_MAX];
    committed_file(a, "a", 1);
    committed_file(b, "b", 2);
    bft_put(a, 0, 100, 3);
    bft_put(b, 0, 100, 4);
    pid_t pid = start_held(a, BIGFILE_TEST_INJECT_STOREBLK, 0, UINT64_MAX, child_plain_writeout, a);
    bft_expect(a, 5 * BS, BS, 1, "another block of the file being written out");
    bft_expect(b, 5 * BS, BS, 2, "another file");
    int r = bft_writeout(b, BFT_WO_BOTH, NULL);
    int st = end_held(a, pid, "loads of other blocks and files, a writeout of another file");
    cr_expect_eq(r, 0, "writeout of another file during a slow writeout: %s", strerror(-r));
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the slow writeout failed: %d",
              st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    cr_assert_eq(bft_discard(b, NULL), 0);
    bft_expect(b, 0, 100, 4, "the other file's writeout committed");
}

static int child_read_block0_any(void *arg)
{
    uint8_t buf[4096];
    return bft_pread(arg, buf, sizeof(buf), 0) ? 1 : 0;
}

/* While block 0 is stuck in loadblk (held), other blocks load in parallel
 * and STAT answers. */
BFT_TEST(errors, a_slow_load_blocks_no_other_block, bft_setup_inject, 60)
{
    char p[PATH_MAX];
    committed_file(p, "f", 1);
    pid_t pid = start_held(p, BIGFILE_TEST_INJECT_LOADBLK, 0, 0, child_read_block0_any, p);
    bft_expect(p, 4 * BS, BS, 1, "another block during a slow load");
    struct bigfile_stat s;
    int r = bft_stat(p, &s);
    int st = end_held(p, pid, "a load of another block, STAT");
    cr_expect_eq(r, 0, "STAT during a slow load: %s", strerror(-r));
    cr_expect_geq(s.loading_blocks, 1, "STAT shows block 0 loading");
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the slow read failed (0x%x)", st);
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

static int child_invalidate_block0(void *arg)
{
    return -bft_invalidate(arg, 0, 1);
}

struct invalidated {
    const char *path;
    uint64_t before; /* STAT invalidated_blocks before */
};

/* bft_wait_for's condition: STAT counts one more invalidated block. */
static int invalidation_counted(void *arg)
{
    struct invalidated *c = arg;
    struct bigfile_stat s;
    return bft_stat(c->path, &s) == 0 && s.invalidated_blocks > c->before;
}

/* bft_wait_for's condition: STAT shows no block loading. */
static int no_block_loading(void *arg)
{
    struct bigfile_stat s;
    return bft_stat(arg, &s) == 0 && s.loading_blocks == 0;
}

BFT_TEST(errors, invalidate_racing_a_slow_load, bft_setup_inject, 60)
{
    char p[PATH_MAX];
    struct bigfile_stat s0, s1, mid;
    committed_file(p, "f", 1);
    cr_assert_eq(bft_stat(p, &s0), 0);
    /* the first load of block 0 is held; the one after the invalidation
     * is not */
    cr_assert_eq(bft_hold(p, BIGFILE_TEST_INJECT_LOADBLK, 0, 0, 1, 0), 0);
    pid_t pids[2];
    pids[0] = bft_spawn(child_read_block0, p);
    cr_assert_gt(pids[0], 0);
    int r = bft_wait_held(p, 1, WAIT_S);
    cr_assert_eq(r, 0, "the load of block 0 was never held: %s", strerror(-r));
    cr_assert_eq(bft_stat(p, &mid), 0);
    cr_expect_geq(mid.loading_blocks, 1, "block 0 is loading when the invalidation comes");

    /* INVALIDATE waits for the READ in flight (its pages are locked until
     * the answer): it runs in a child, and the daemon's side of it shows
     * in STAT before that */
    pids[1] = bft_spawn(child_invalidate_block0, p);
    cr_assert_gt(pids[1], 0);
    struct invalidated c = { p, mid.invalidated_blocks };
    cr_expect(bft_wait_for(invalidation_counted, &c, WAIT_S),
              "the invalidation did not reach the loading block 0 while it was held");
    cr_expect_eq(bft_held(p), 1, "the load was still held when it was invalidated");
    cr_assert_eq(bft_release(p), 0);

    int st[2];
    cr_expect_eq(bft_wait_children(pids, 2, WAIT_S, st), 0, "the reader or INVALIDATE hung");
    cr_expect(st[1] != -1 && WIFEXITED(st[1]) && WEXITSTATUS(st[1]) == 0,
              "INVALIDATE during a load: %s",
              st[1] != -1 && WIFEXITED(st[1]) ? strerror(WEXITSTATUS(st[1])) : "killed");
    cr_expect(st[0] != -1 && WIFEXITED(st[0]) && WEXITSTATUS(st[0]) == 0,
              "the reader racing the invalidation got %s (status 0x%x)",
              st[0] != -1 && WIFEXITED(st[0]) && WEXITSTATUS(st[0]) == 1 ? "wrong data"
                                                                         : "an error",
              st[0]);
    /* every block the reader's READs loaded is cached once, and block 0
     * was loaded twice */
    struct bigfile_stat after;
    cr_assert_eq(bft_stat(p, &after), 0);
    uint64_t loads = after.loadblk_calls - s0.loadblk_calls;
    uint64_t cached = after.loaded_blocks - s0.loaded_blocks;
    cr_expect_gt(loads, cached, "the invalidated load was done again (%llu loads for %llu blocks)",
                 (unsigned long long)loads, (unsigned long long)cached);
    cr_assert_eq(bft_inject_clear(p), 0);
    bft_expect(p, 0, BS, 1, "re-read after the race");
    cr_assert_eq(bft_stat(p, &s1), 0);
    cr_expect_geq(s1.loadblk_calls, s0.loadblk_calls + 2,
                  "the invalidated load was done again (loadblk_calls %llu -> %llu)",
                  (unsigned long long)s0.loadblk_calls, (unsigned long long)s1.loadblk_calls);
    /* nothing stays loading: the re-read may have started prefetching the
     * blocks after block 0, so wait for those loads to end */
    cr_expect(bft_wait_for(no_block_loading, p, WAIT_S),
              "a load is still in flight after the race (loading_blocks %llu)",
              (unsigned long long)s1.loading_blocks);
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

struct reader {
    const char *path;
    pid_t pid;
};

/* bft_wait_for's condition: STAT shows a block loading, or the reader
 * ended. */
static int block0_loading_or_read(void *arg)
{
    struct reader *r = arg;
    struct bigfile_stat s;
    return bft_exited(r->pid) || (bft_stat(r->path, &s) == 0 && s.loading_blocks);
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
        /* Where the invalidation lands: in even rounds right away (the
         * reader's READ may not have reached the daemon yet), in odd ones
         * once block 0 is seen loading (or the reader is done). */
        struct reader rd = { p, pid };
        if (round % 2)
            bft_wait_for(block0_loading_or_read, &rd, WAIT_S);
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
    cr_log_info("the invalidation came while block 0 was loading in %u of 4 rounds", raced);
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
