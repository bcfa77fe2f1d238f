/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: uncommitted changes bigger than the dirty
 * budget (-o dirty=SIZE, fileh.h "Spilling").
 *
 * Changed blocks past the budget are staged in the store and dropped from
 * the daemon's memory; these tests dirty many times the budget through a
 * mapping and through write(2), and check that the daemon's memory stays
 * bounded, that a writeout commits exactly what was written, that a
 * discard restores the committed data, that a failing staging area fails
 * the WRITE and loses nothing, and that a daemon killed with staged
 * changes leaves the database as at its last commit (the next one removes
 * the staged debris). And the prefetch of sequential reads, which must
 * never serve what another mount's commit or an invalidate made stale.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs/test_inject.h"
#include "harness.h"
#include "../oscache.h"

/* A kB field ("VmRSS:", "VmHWM:") of /proc/PID/status, in bytes; -1 if
 * not found. */
static int64_t proc_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int64_t v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0) {
            v = strtoll(line + n, NULL, 10) * 1024;
            break;
        }
    fclose(f);
    return v;
}

/* Whether daemon pid runs with a sanitizer's runtime (ASan, TSan: the
 * runtimes gcc links dynamically), whatever this test was built with. */
static bool daemon_sanitized(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    char *maps = bft_slurp(path);
    bool san = maps && (strstr(maps, "/libasan") || strstr(maps, "/libtsan"));
    free(maps);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    san = true; /* a runtime linked statically */
#endif
    return san;
}

/* Mount bft.db (SQLite unless the test chose mem:) with -o opts. */
static void mount_with(const char *opts)
{
    snprintf(bft.opts, sizeof(bft.opts), "%s", opts);
    bft_mount();
}

/* Staged contents of live sessions in the SQLite database: uploads that
 * are no commit's yet (none is in a transaction here: these are spills). */
static int64_t staged_uploads(void)
{
    int64_t n = -1;
    cr_assert_eq(bft_sql_int(bft.db, "SELECT count(*) FROM uploads WHERE session != 0", &n), 0);
    return n;
}

/* Drop the kernel's clean pages of path, so that reads go to the daemon. */
static void drop_kernel_cache(const char *path)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
}

/* Mount a memory database with -o test_inject,dirty=4M and create file
 * "f" of 1 MiB blocks; its path goes to p. */
static void mount_inject_file(char *p)
{
    snprintf(bft.db, sizeof(bft.db), "mem:");
    bft.is_mem = 1;
    mount_with("test_inject,dirty=4M");
    bft_create("f", "1M", NULL);
    bft_path(p, "f");
}

struct map_job {
    const char *path;
    uint64_t len;
    unsigned seed;
    bool sync; /* fsync(2) before the munmap: the kernel writes the pages back now */
};

/* Child: write bft_pattern(seed) over [0, len) of path through a shared
 * mapping, fsync(2) it if j->sync, then unmap (else the pages stay dirty in
 * the kernel until the writeback or a writeout sends them). 0 on success;
 * 3 when fsync failed. */
static int child_map_write(void *arg)
{
    const struct map_job *j = arg;
    int fd = open(j->path, O_RDWR);
    if (fd < 0)
        return 1;
    char *m = mmap(NULL, j->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 2;
    for (uint64_t off = 0; off < j->len; off += BFT_MB)
        bft_pattern(m + off, BFT_MB, j->seed, off);
    int r = j->sync && fsync(fd) < 0 ? 3 : 0;
    munmap(m, j->len);
    close(fd);
    return r;
}

struct refs_reader {
    const char *path;
    uint64_t len;  /* of the file: bft_pattern(5) over [0, len) */
    unsigned seed; /* of the offsets' sequence */
    unsigned reads;
    bool direct; /* O_DIRECT: READs that lock no page, answered with a copy */
};

/* Child: read->reads 1 MiB READs at pseudo-random 1 MiB-aligned offsets,
 * each checked against the pattern and then dropped from the kernel's
 * cache, so that the next read of it is a READ again. 0 when every byte
 * was right; 1 on an I/O error; 2 on a wrong byte. */
static int child_refs_reader(void *arg)
{
    const struct refs_reader *r = arg;
    void *buf = NULL;
    int fd = open(r->path, O_RDONLY | (r->direct ? O_DIRECT : 0));
    if (posix_memalign(&buf, 4096, BFT_MB) != 0 || fd < 0)
        return 1;
    uint64_t x = r->seed * 2654435761u + 1;
    int rc = 0;
    for (unsigned i = 0; i < r->reads && rc == 0; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        uint64_t off = (x >> 33) % (r->len / BFT_MB) * BFT_MB;
        if (pread(fd, buf, BFT_MB, (off_t)off) != (ssize_t)BFT_MB)
            rc = 1;
        else if (!bft_check_pattern(buf, BFT_MB, 5, off))
            rc = 2;
        posix_fadvise(fd, (off_t)off, BFT_MB, POSIX_FADV_DONTNEED);
    }
    close(fd);
    free(buf);
    return rc;
}

/* READs are answered from the cached blocks' buffers (fileh.h I33), an
 * O_DIRECT reader's with a copy; with a budget of one block, three
 * readers make every load evict a block that another reader's reply may
 * still be copied from. Every byte read must be its block's. A smoke test
 * of the reply paths under eviction: the window is a reply's copy, and
 * it missed a broken deferral in 6 runs out of 6; the exact tests are
 * test_fileh's reads_by_reference_hold_the_blocks_they_answer_from and
 * test_concurrency's reads_by_reference_outlive_invalidate_and_eviction. */
BFT_TEST(spill, replies_from_cached_blocks_are_right_under_eviction, bft_setup_nomount, 120)
{
    const uint64_t len = 32 * BFT_MB;
    char p[PATH_MAX];
    snprintf(bft.db, sizeof(bft.db), "mem:");
    bft.is_mem = 1;
    mount_with("cache=2M");
    bft_create("f", "2M", NULL);
    bft_path(p, "f");
    bft_put_commit(p, 0, len, 5);
    drop_kernel_cache(p);

    enum {
        READERS = 3
    };
    struct refs_reader r[READERS];
    pid_t pids[READERS];
    for (unsigned i = 0; i < READERS; i++) {
        r[i] = (struct refs_reader){
            .path = p, .len = len, .seed = i + 1, .reads = 400, .direct = i == 0
        };
        pids[i] = bft_spawn(child_refs_reader, &r[i]);
        cr_assert_gt(pids[i], 0);
    }
    int st[READERS];
    cr_assert_eq(bft_wait_children(pids, READERS, 90, st), 0, "the readers hung");
    for (unsigned i = 0; i < READERS; i++)
        cr_expect(WIFEXITED(st[i]) && WEXITSTATUS(st[i]) == 0, "reader %u: %s (0x%x)", i,
                  WIFEXITED(st[i]) && WEXITSTATUS(st[i]) == 2 ? "a wrong byte" : "failed", st[i]);
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_log_info("%llu blocks loaded, %llu evicted", (unsigned long long)s.loadblk_calls,
                (unsigned long long)s.reclaimed_blocks);
    cr_expect_gt(s.reclaimed_blocks, 100u, "the budget evicted blocks under the readers (%llu)",
                 (unsigned long long)s.reclaimed_blocks);
}

/* 256 MiB dirtied through a mapping with cache=8M,dirty=8M: the writeout
 * commits all of it exactly (checked after a remount, from the database),
 * and the daemon's peak RSS grows by far less than the change: the cache,
 * the budget and a constant — request threads' buffers, SQLite's reader
 * connections and their page caches, the recycled block buffers (measured:
 * +74 MiB for 192 MiB dirtied, +78 MiB for 384 MiB; without a budget it
 * grows with the change). */
BFT_TEST(spill, a_mapping_dirtied_far_past_the_budget_commits_exactly_in_bounded_memory,
         bft_setup_nomount, 180)
{
    const uint64_t len = 256 * BFT_MB, cache = 8 * BFT_MB, dirty = 8 * BFT_MB;
    char p[PATH_MAX];
    mount_with("cache=8M,dirty=8M");
    bft_create("f", "1M", "256M");
    bft_path(p, "f");
    int64_t base = proc_status_kb(bft.daemon, "VmRSS:");
    cr_assert_gt(base, 0);

    struct map_job j = { .path = p, .len = len, .seed = 7 };
    int st = bft_run(child_map_write, &j, 120);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the mapping writer failed (0x%x)", st);
    struct bigfile_writeout w = { .flags = BFT_WO_BOTH };
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &w), 0);
    cr_expect_eq(w.bytes, len, "every block committed (%llu bytes)", (unsigned long long)w.bytes);
    int64_t hwm = proc_status_kb(bft.daemon, "VmHWM:");
    cr_assert_gt(hwm, 0);
    int64_t growth = hwm - base, bound = (int64_t)(cache + dirty + 96 * BFT_MB);
    cr_log_info("daemon RSS: %lld MiB at start, peak %lld MiB (+%lld MiB for %llu MiB dirtied)",
                (long long)(base >> 20), (long long)(hwm >> 20), (long long)(growth >> 20),
                (unsigned long long)(len >> 20));
    if (daemon_sanitized(bft.daemon)) {
        /* ASan's quarantine keeps freed blocks (256 MiB by default), TSan
         * its shadow of every block buffer: the bound of a plain daemon
         * means nothing there. */
        cr_log_info("a sanitizer daemon: its RSS bound is not checked");
    } else {
        cr_expect_leq(growth, bound,
                      "the daemon's peak RSS grew by %lld MiB for %llu MiB dirtied with "
                      "cache=8M, dirty=8M (bound %lld MiB)",
                      (long long)(growth >> 20), (unsigned long long)(len >> 20),
                      (long long)(bound >> 20));
    }
    cr_expect_eq(staged_uploads(), 0, "the writeout used up every staged content");
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_geq(s.spills, (len - dirty) / BFT_MB, "the change was spilled (%llu blocks)",
                  (unsigned long long)s.spills);
    cr_expect_eq(s.spilled_blocks + s.dirty_blocks, 0u, "nothing left uncommitted");

    bft_remount();
    bft_expect(p, 0, len, 7, "the committed data, from the database");
}

/* Spilled blocks come back for a read, for a partial write (changed again,
 * committed) and for a discard: the committed data. */
BFT_TEST(spill, spilled_blocks_read_back_change_again_and_discard, bft_setup_nomount, 120)
{
    const uint64_t len = 32 * BFT_MB;
    char p[PATH_MAX];
    mount_with("dirty=4M");
    bft_create("f", "1M", NULL);
    bft_path(p, "f");
    bft_put_commit(p, 0, len, 1);

    bft_put(p, 0, len, 2);
    cr_assert_gt(staged_uploads(), 0, "32 MiB written with dirty=4M: blocks were spilled");
    drop_kernel_cache(p);
    bft_expect(p, 0, len, 2, "the uncommitted change, read back from staging");

    /* A spilled block changed in part, then the discard. */
    bft_put(p, 3 * BFT_MB + 4096, 8192, 3);
    struct bigfile_count c;
    cr_assert_eq(bft_discard(p, &c), 0);
    cr_expect_eq(c.blocks, len / BFT_MB, "every changed block dropped (%llu)",
                 (unsigned long long)c.blocks);
    cr_expect_eq(staged_uploads(), 0, "the discard dropped the staged contents");
    bft_expect(p, 0, len, 1, "the committed data after the discard");

    /* Spilled again, a spilled block changed in part, committed. */
    bft_put(p, 0, len, 4);
    cr_assert_gt(staged_uploads(), 0);
    bft_put(p, 3 * BFT_MB + 4096, 8192, 5);
    struct bigfile_writeout w;
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &w), 0);
    bft_remount();
    bft_expect(p, 0, 3 * BFT_MB + 4096, 4, "committed: before the second change");
    bft_expect(p, 3 * BFT_MB + 4096, 8192, 5, "committed: the second change");
    bft_expect(p, 3 * BFT_MB + 12288, len - (3 * BFT_MB + 12288), 4, "committed: after it");
}

/* The staging area fails (ENOSPC): the WRITE that needed room fails with
 * ENOSPC and changes nothing, the changes made before stay (in memory),
 * and once there is room again everything is written and committed. */
BFT_TEST(spill, a_failing_staging_area_fails_the_write_and_loses_nothing, bft_setup_nomount, 120)
{
    char p[PATH_MAX];
    mount_inject_file(p);
    cr_assert_eq(bft_inject(p, BIGFILE_TEST_INJECT_STAGE, 0, UINT64_MAX, ENOSPC, 0, 0, 0), 0);
    bft_put(p, 0, 4 * BFT_MB, 1); /* the budget: four blocks */

    char *buf = malloc(BFT_MB);
    cr_assert(buf);
    bft_pattern(buf, BFT_MB, 2, 8 * BFT_MB);
    cr_expect_eq(bft_pwrite(p, buf, BFT_MB, 8 * BFT_MB), -ENOSPC,
                 "a write past the budget that cannot spill fails with ENOSPC");
    free(buf);
    drop_kernel_cache(p);
    bft_expect(p, 0, 4 * BFT_MB, 1, "the changes made before stay");
    cr_expect_eq(bft_size(p), (int64_t)(4 * BFT_MB), "the failed write changed no size");

    cr_assert_eq(bft_inject_clear(p), 0);
    bft_put(p, 4 * BFT_MB, 12 * BFT_MB, 2);
    struct bigfile_writeout w;
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &w), 0);
    cr_expect_eq(w.blocks, 16u);
    cr_assert_eq(bft_invalidate(p, 0, 16), 0);
    bft_expect(p, 0, 4 * BFT_MB, 1, "committed, from the store");
    bft_expect(p, 4 * BFT_MB, 12 * BFT_MB, 2, "committed, from the store");
}

/* FUSE does not mark a page dirty again when the WRITE of its writeback
 * fails: so a mapped change that cannot be staged (the staging area
 * full) goes over the dirty budget instead of being lost — the writeback
 * succeeds, the daemon keeps the change, and it commits once there is
 * room. (write(2), which can keep its bytes, gets ENOSPC: the test
 * above.) */
BFT_TEST(spill, a_mapped_change_that_cannot_be_staged_is_kept_in_memory, bft_setup_nomount, 120)
{
    char p[PATH_MAX];
    mount_inject_file(p);
    bft_put_commit(p, 0, 16 * BFT_MB, 1);
    cr_assert_eq(bft_inject(p, BIGFILE_TEST_INJECT_STAGE, 0, UINT64_MAX, ENOSPC, 0, 0, 0), 0);
    struct map_job j = { p, 16 * BFT_MB, 2, true };
    cr_assert_eq(bft_run(child_map_write, &j, 60), 0,
                 "the writeback of 16 MiB with dirty=4M and staging full succeeds");
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks + s.spilled_blocks, 16u, "every block is changed");
    cr_expect_gt(s.dirty_blocks, 4u, "past the budget of four blocks, in memory");
    drop_kernel_cache(p);
    bft_expect(p, 0, 16 * BFT_MB, 2, "the mapped change, from the daemon");

    cr_assert_eq(bft_inject_clear(p), 0);
    struct bigfile_writeout w;
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &w), 0);
    cr_expect_eq(w.blocks, 16u);
    cr_assert_eq(bft_invalidate(p, 0, 16), 0);
    bft_expect(p, 0, 16 * BFT_MB, 2, "committed, from the store");
}

/* A real full disk: the database on a small tmpfs, staging in it (SQLite
 * stages uploads in the database). write(2) gets ENOSPC once the disk is
 * full, the changes made before stay readable, a writeout fails keeping
 * them, and once space is freed the writeout commits them all. */
BFT_TEST(spill, a_full_disk_fails_write_with_enospc_and_loses_nothing, bft_setup_nomount, 180)
{
    char small[128], p[PATH_MAX];
    snprintf(small, sizeof(small), "%s/small", bft.dir);
    cr_assert_eq(mkdir(small, 0755), 0);
    cr_assert_eq(mount("tmpfs", small, "tmpfs", 0, "size=40m"), 0, "mount tmpfs: %s",
                 strerror(errno));
    snprintf(bft.db, sizeof(bft.db), "%s/db", small);
    mount_with("dirty=4M");
    bft_create("f", "1M", NULL);
    bft_path(p, "f");
    bft_put_commit(p, 0, 8 * BFT_MB, 1);

    char *buf = malloc(BFT_MB);
    cr_assert(buf);
    uint64_t n = 0;
    int r = 0;
    for (; n < 256 * BFT_MB; n += BFT_MB) {
        bft_pattern(buf, BFT_MB, 2, n);
        r = bft_pwrite(p, buf, BFT_MB, n);
        if (r < 0)
            break;
    }
    free(buf);
    cr_assert_eq(r, -ENOSPC, "a 40 MiB disk fills before 256 MiB are staged (%d after %llu MiB)", r,
                 (unsigned long long)(n / BFT_MB));
    cr_assert_gt(n, 4 * BFT_MB, "the writes before it succeeded");
    cr_expect_eq(bft_size(p), (int64_t)(n > 8 * BFT_MB ? n : 8 * BFT_MB),
                 "the failed write changed no size");
    drop_kernel_cache(p);
    bft_expect(p, 0, n, 2, "the changes made before, spilled ones read back");

    /* A writeout while the disk is full fails and keeps every change. */
    struct bigfile_writeout w;
    r = bft_writeout(p, BFT_WO_BOTH, &w);
    cr_expect(r == -ENOSPC || r == -EIO, "the writeout on a full disk fails (%d)", r);
    drop_kernel_cache(p);
    bft_expect(p, 0, n, 2, "every change kept after the failed writeout");

    /* Space freed (the file system grown): the writeout commits it all. */
    cr_assert_eq(mount("tmpfs", small, "tmpfs", MS_REMOUNT, "size=512m"), 0, "remount: %s",
                 strerror(errno));
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &w), 0, "with room again, the writeout commits");
    bft_remount();
    bft_expect(p, 0, n, 2, "committed");
    if (n < 8 * BFT_MB)
        bft_expect(p, n, 8 * BFT_MB - n, 1, "committed before");
    umount2(small, MNT_DETACH); /* lazily: the daemon still has the database open */
}

/* A writeout that fails half-way with spilled blocks commits nothing and
 * leaves every change (spilled ones too) for the retry. */
BFT_TEST(spill, a_writeout_failing_half_way_with_spilled_blocks_keeps_everything, bft_setup_nomount,
         120)
{
    char p[PATH_MAX];
    mount_inject_file(p);
    bft_put_commit(p, 0, 16 * BFT_MB, 1);
    bft_put(p, 0, 16 * BFT_MB, 2);
    cr_assert_eq(bft_inject(p, BIGFILE_TEST_INJECT_STOREBLK, 0, UINT64_MAX, EIO, 0, 8, 1), 0);
    struct bigfile_writeout w;
    cr_expect_eq(bft_writeout(p, BFT_WO_BOTH, &w), -EIO, "the writeout fails at its 9th block");
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_gt(s.spilled_blocks, 0u, "some blocks were spilled");
    cr_expect_eq(s.dirty_blocks + s.spilled_blocks, 16u,
                 "every block is still changed (%llu in memory, %llu spilled)",
                 (unsigned long long)s.dirty_blocks, (unsigned long long)s.spilled_blocks);
    drop_kernel_cache(p);
    bft_expect(p, 0, 16 * BFT_MB, 2, "the changes, spilled ones too");
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, &w), 0, "the retry commits");
    cr_assert_eq(bft_invalidate(p, 0, 16), 0);
    bft_expect(p, 0, 16 * BFT_MB, 2, "committed, from the store");
}

/* A daemon killed with staged changes: the database is as at its last
 * commit, and the next daemon removes the dead one's staged contents. */
BFT_TEST(spill, a_daemon_killed_with_staged_changes_leaves_the_last_commit, bft_setup_nomount, 120)
{
    char p[PATH_MAX];
    mount_with("dirty=4M");
    bft_create("f", "1M", NULL);
    bft_path(p, "f");
    bft_put_commit(p, 0, 16 * BFT_MB, 1);
    int64_t before = -1, after = -1;
    cr_assert_eq(bft_sql_int(bft.db, "SELECT value FROM meta WHERE key = 'serial'", &before), 0);
    bft_put(p, 0, 32 * BFT_MB, 2);
    cr_assert_gt(staged_uploads(), 0, "32 MiB written with dirty=4M: blocks were spilled");

    int st = bft_kill_on(0, SIGKILL);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "killed (0x%x)", st);
    cr_assert_eq(bft_sql_int(bft.db, "SELECT value FROM meta WHERE key = 'serial'", &after), 0);
    cr_expect_eq(after, before, "nothing committed");

    bft_mount();
    cr_expect_eq(staged_uploads(), 0, "the next daemon removed the staged contents");
    cr_expect_eq(bft_size(p), (int64_t)(16 * BFT_MB), "the committed size");
    bft_expect(p, 0, 16 * BFT_MB, 1, "the data of the last commit");
}

/* -o dirty is checked before the database is touched: nonsense is a usage
 * error (exit 2) that creates no database. */
BFT_TEST(spill, nonsensical_dirty_budgets_are_refused_before_the_database, bft_setup_nomount, 60)
{
    const char *bad[] = { "dirty=0", "dirty=lots", "dirty=4K", "dirty=1024T" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[] = { "-f", "-o", bad[i], bft.db, bft.mnt, NULL };
        int st = bft_daemon_run(10, argv);
        cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2,
                  "-o %s: a usage error (status 0x%x)", bad[i], st);
        char *log = bft_slurp(bft.log);
        cr_expect(log && strstr(log, "dirty"), "-o %s: the message names the option:\n%s", bad[i],
                  log ? log : "");
        free(log);
        cr_expect(access(bft.db, F_OK) != 0, "-o %s: no database created", bad[i]);
        cr_expect(!bft_is_fuse(bft.mnt), "-o %s: nothing mounted", bad[i]);
    }
}

/* ---- prefetch ------------------------------------------------------------- */

struct loaded_arg {
    const char *path;
    uint64_t min;
};

static int loaded_at_least(void *arg)
{
    const struct loaded_arg *a = arg;
    struct bigfile_stat s;
    return bft_stat(a->path, &s) == 0 && s.loaded_blocks >= a->min;
}

/* Two mounts of one database that copy their reads (-o splice=off): a
 * sequential reader's prefetch loads into the daemon's memory. */
static void setup_shared2_copying(void)
{
    bft_setup_nomount();
    snprintf(bft.opts, sizeof(bft.opts), "shared,splice=off");
    bft_mount();
    bft_mount_on(1, "shared,splice=off");
}

/* A sequential reader on mount B gets the blocks after its reads loaded
 * ahead (far past the kernel's 1 MiB readahead); another mount's commit
 * then makes B read the new data, never the prefetched old one, and an
 * invalidate drops what was prefetched since. */
BFT_TEST(prefetch, prefetched_blocks_never_outlive_another_mounts_commit, setup_shared2_copying,
         120)
{
    const uint64_t len = 48 * BFT_MB;
    char pa[PATH_MAX], pb[PATH_MAX];
    bft_create("f", "1M", NULL);
    bft_path_on(0, pa, "f");
    bft_path_on(1, pb, "f");
    bft_put_commit(pa, 0, len, 1);
    struct bigfile_serial sy = { 0 };
    cr_assert_eq(bft_ioctl(pb, BIGFILE_IOC_SYNC, &sy), 0);

    bft_expect(pb, 0, 4 * BFT_MB, 1, "B reads the first blocks in order");
    struct loaded_arg la = { .path = pb, .min = 16 };
    cr_assert(bft_wait_for(loaded_at_least, &la, 30),
              "B prefetched the blocks after its reads (16 loaded at least)");

    bft_put_commit(pa, 0, len, 2);
    cr_assert_eq(bft_ioctl(pb, BIGFILE_IOC_SYNC, &sy), 0);
    bft_expect(pb, 0, len, 2, "B reads A's commit, not what it prefetched");

    /* Prefetched again, then invalidated behind B's back: the store's. */
    drop_kernel_cache(pb);
    bft_expect(pb, 0, 4 * BFT_MB, 2, "B reads in order again");
    la.min = 24;
    cr_assert(bft_wait_for(loaded_at_least, &la, 30), "B prefetched again (24 loaded at least)");
    cr_assert_eq(bft_sql_set_block(bft.db, "f", 20, BFT_MB, 3), 0);
    cr_assert_eq(bft_invalidate(pb, 20, 1), 0);
    bft_expect(pb, 20 * BFT_MB, BFT_MB, 3, "after an invalidate: the database's block");
}

/* One mount that answers reads from the block file (-o splice=on; libfuse
 * copies where it cannot splice): a sequential reader (1 MiB reads, each
 * in one block) keeps nothing in the daemon; a block changed in
 * the database behind its back and invalidated, a writeout of its own and
 * a discard are read right, from the first block to the last. */
static void setup_splicing(void)
{
    bft_setup_nomount();
    /* dio=off: what the OS does not cache of the block file would be
     * prefetched into memory instead (the next test) */
    snprintf(bft.opts, sizeof(bft.opts), "splice=on,dio=off");
    bft_mount();
}

BFT_TEST(prefetch, spliced_reads_follow_invalidates_writeouts_and_discards, setup_splicing, 120)
{
    const uint64_t len = 48 * BFT_MB;
    char p[PATH_MAX];
    struct bigfile_stat s0, s1;
    bft_create("f", "1M", NULL);
    bft_path(p, "f");
    bft_put_commit(p, 0, len, 1);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    cr_assert_eq(bft_stat(p, &s0), 0);
    bft_expect(p, 0, len, 1, "a cold read in order");
    cr_assert_eq(bft_stat(p, &s1), 0);
    cr_expect_geq(s1.spliced_reads, s0.spliced_reads + 48, "spliced_reads %llu -> %llu",
                  (unsigned long long)s0.spliced_reads, (unsigned long long)s1.spliced_reads);
    cr_expect_eq(s1.loaded_blocks, 0, "nothing kept in the daemon: %llu blocks",
                 (unsigned long long)s1.loaded_blocks);

    cr_assert_eq(bft_sql_set_block(bft.db, "f", 20, BFT_MB, 3), 0);
    cr_assert_eq(bft_invalidate(p, 20, 1), 0);
    bft_expect(p, 20 * BFT_MB, BFT_MB, 3, "after an invalidate: the database's block");
    bft_expect(p, 0, 20 * BFT_MB, 1, "the blocks before it");

    bft_put_commit(p, 0, len, 2);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    bft_expect(p, 0, len, 2, "after a writeout, cold");
    bft_put(p, 5 * BFT_MB, BFT_MB, 4);
    cr_assert_eq(bft_discard(p, NULL), 0);
    bft_expect(p, 0, len, 2, "after a discard");
}

/* A block file cut short under the mount (damage, or a copy of the database
 * without all of its block file): a read of a block past its end fails
 * with EIO and says so — never a short read, which the kernel would take
 * for the end of the file; the blocks before it still read. */
static void short_block_file(bool evict)
{
    char p[PATH_MAX], bp[PATH_MAX + 16], buf[4096];
    bft_create("f", "1M", NULL);
    bft_path(p, "f");
    bft_put_commit(p, 0, 4 * BFT_MB, 1);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    snprintf(bp, sizeof(bp), "%s-blocks", bft.db);
    struct stat st;
    cr_assert_eq(stat(bp, &st), 0, "%s: %s", bp, strerror(errno));
    cr_assert_geq(st.st_size, (off_t)(4 * BFT_MB));
    /* read directly: cut at an unaligned length too (a short direct
     * read that ends mid-sector goes on buffered, then finds the end) */
    cr_assert_eq(truncate(bp, st.st_size - (off_t)(BFT_MB / 2) - (evict ? 100 : 0)), 0);
    if (evict)
        oc_evict(bp);
    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0);
    int bad = -1;
    for (int b = 0; b < 4; b++) {
        errno = 0;
        ssize_t n = pread(fd, buf, sizeof(buf), (off_t)b * (off_t)BFT_MB + (off_t)BFT_MB - 4096);
        cr_expect(n == (ssize_t)sizeof(buf) || (n < 0 && errno == EIO),
                  "block %d: pread = %zd (%s): whole or EIO", b, n, strerror(errno));
        if (n < 0 && bad < 0)
            bad = b;
    }
    close(fd);
    cr_expect_geq(bad, 0, "no block failed: the cut did not reach an extent");
    cr_expect_eq(bft_size(p), (int64_t)(4 * BFT_MB), "the size is unchanged");
    char *log = bft_slurp(bft.log);
    cr_expect(log && strstr(log, "ends before the extent"), "the daemon says why:\n%s",
              log ? log : "");
    free(log);
}

BFT_TEST(prefetch, a_short_block_file_is_eio_not_a_short_read, setup_splicing, 60)
{
    short_block_file(false);
}

/* The same with the reads around the OS cache (-o dio=auto): a direct
 * read that the file's end cuts short. */
static void setup_splicing_dio(void)
{
    bft_setup_nomount();
    snprintf(bft.opts, sizeof(bft.opts), "splice=on,dio=auto");
    bft_mount();
}

BFT_TEST(prefetch, a_short_block_file_is_eio_read_directly_too, setup_splicing_dio, 60)
{
    short_block_file(true);
}

/* Each of bad[] (an -o option) is a usage error (exit 2) whose message
 * names the option, that creates no database and mounts nothing. */
static void expect_usage_errors(const char *const *bad, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        const char *argv[] = { "-f", "-o", bad[i], bft.db, bft.mnt, NULL };
        int st = bft_daemon_run(10, argv);
        cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2,
                  "-o %s: a usage error (status 0x%x)", bad[i], st);
        char *log = bft_slurp(bft.log);
        cr_expect(log && strstr(log, name), "-o %s: the message names the option:\n%s", bad[i],
                  log ? log : "");
        free(log);
        cr_expect(access(bft.db, F_OK) != 0, "-o %s: no database created", bad[i]);
        cr_expect(!bft_is_fuse(bft.mnt), "-o %s: nothing mounted", bad[i]);
    }
}

/* -o splice takes auto, on or off. */
BFT_TEST(prefetch, a_bad_splice_value_is_a_usage_error, bft_setup_nomount, 60)
{
    const char *const bad[] = { "splice=yes", "splice=", "splice=1" };
    expect_usage_errors(bad, sizeof(bad) / sizeof(bad[0]), "splice");
}

/* Bytes [off, off + len) of path mapped and checked against seed, a page
 * at a time in a scattered order (faults, not one sequential pass). */
static void expect_mapped(const char *path, uint64_t off, size_t len, unsigned seed)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    uint8_t *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
    cr_assert_neq(m, MAP_FAILED, "mmap %s: %s", path, strerror(errno));
    size_t pages = len / 4096;
    uint8_t *want = malloc(4096);
    for (size_t i = 0; i < pages; i++) {
        size_t pg = (i * 37) % pages; /* 37 and a power of two: every page once */
        bft_pattern(want, 4096, seed, off + pg * 4096);
        cr_assert(memcmp(m + pg * 4096, want, 4096) == 0, "%s: page at +%zu", path, pg * 4096);
    }
    free(want);
    munmap(m, len);
    close(fd);
}

/* Reads of what the OS does not cache of the block file go around its
 * cache (-o dio=auto, the default): a cold sequential reader and mapped
 * faults read the right bytes, and leave nothing of the block file in the
 * OS cache (the bigfile's own pages hold what was read: a second copy
 * would only double what the kernel reclaims). With -o dio=off the same
 * reads go through it. */
BFT_TEST(prefetch, cold_reads_leave_the_block_file_out_of_the_os_cache, bft_setup_sqlite, 120)
{
    const uint64_t len = 32 * BFT_MB;
    char p[PATH_MAX], bp[PATH_MAX + 16];
    bft_create("f", "1M", NULL);
    bft_path(p, "f");
    bft_put_commit(p, 0, len, 1);
    snprintf(bp, sizeof(bp), "%s-blocks", bft.db);
    for (int dio_off = 0; dio_off < 2; dio_off++) {
        if (dio_off) {
            bft_assert_daemon_clean(bft_unmount(), "unmount");
            mount_with("dio=off");
        }
        cr_assert_eq(bft_reclaim(p, NULL), 0);
        oc_evict(bp);
        bft_expect(p, 0, len / 2, 1, "a cold read in order");
        if (!dio_off) {
            /* the sequential reader's blocks are loaded ahead of it (a
             * send would read each READ from the disk in turn) */
            struct loaded_arg la = { .path = p, .min = 1 };
            cr_assert(bft_wait_for(loaded_at_least, &la, 30),
                      "dio=auto: no block prefetched into memory");
        }
        expect_mapped(p, len / 2, len / 2, 1);
        size_t bcached = oc_cached_pages(bp), fcached = oc_cached_pages(p);
        size_t want = len / (size_t)getpagesize();
        /* All of them, but for the few the kernel may have dropped by
         * now (a CI run found 8167 of 8192 once): the reads happened, and
         * through the bigfile's page cache. */
        cr_expect_geq(fcached, want - want / 16,
                      "dio=%s: the bigfile's pages are cached: %zu of %zu",
                      dio_off ? "off" : "auto", fcached, want);
        if (dio_off)
            cr_expect_geq(bcached, want / 2,
                          "dio=off: the block file is read through the OS cache");
        else
            cr_expect_eq(bcached, 0, "dio=auto: %zu pages of the block file cached", bcached);
    }
}

/* A send of a block the OS does not cache reads it around the OS cache
 * (-o dio=auto: the kernel reads it into fresh pages of the reply's pipe):
 * single READs in no order (the bigfile read without readahead, nothing
 * for prefetch to follow) are spliced, read right, and leave nothing of
 * the block file in the OS cache. */
BFT_TEST(prefetch, cold_reads_spliced_around_the_os_cache, setup_splicing_dio, 60)
{
    char p[PATH_MAX], bp[PATH_MAX + 16];
    const size_t chunk = 256 << 10;
    struct bigfile_stat s0, s1;
    bft_create("f", "1M", NULL);
    bft_path(p, "f");
    bft_put_commit(p, 0, 16 * BFT_MB, 1);
    snprintf(bp, sizeof(bp), "%s-blocks", bft.db);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    oc_evict(bp);
    cr_assert_eq(bft_stat(p, &s0), 0);
    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM), 0);
    uint8_t *buf = malloc(chunk);
    for (uint64_t i = 0; i < 16; i++) {
        uint64_t off = (i * 5 % 16) * BFT_MB + chunk; /* 5 and 16: every block once */
        cr_assert_eq(pread(fd, buf, chunk, (off_t)off), (ssize_t)chunk);
        cr_assert(bft_check_pattern(buf, chunk, 1, off), "block at %llu", (unsigned long long)off);
    }
    free(buf);
    close(fd);
    cr_assert_eq(bft_stat(p, &s1), 0);
    cr_expect_geq(s1.spliced_reads, s0.spliced_reads + 16, "spliced_reads %llu -> %llu",
                  (unsigned long long)s0.spliced_reads, (unsigned long long)s1.spliced_reads);
    cr_expect_eq(s1.loaded_blocks, 0, "nothing kept in the daemon: %llu blocks",
                 (unsigned long long)s1.loaded_blocks);
    cr_expect_eq(oc_cached_pages(bp), 0, "the sends left the block file in the OS cache");
}

/* -o dio takes auto or off. */
BFT_TEST(prefetch, a_bad_dio_value_is_a_usage_error, bft_setup_nomount, 60)
{
    const char *const bad[] = { "dio=on", "dio=", "dio=0" };
    expect_usage_errors(bad, sizeof(bad) / sizeof(bad[0]), "dio");
}

/* Mounts sharing a database never answer from the block file, even with
 * -o splice=on: another daemon may rewrite the space of a block while it
 * is being sent (bigfile.h, loadblk_send). */
static void setup_shared2_splice_on(void)
{
    bft_setup_nomount();
    snprintf(bft.opts, sizeof(bft.opts), "shared,splice=on");
    bft_mount();
    bft_mount_on(1, "shared,splice=on");
}

BFT_TEST(prefetch, shared_mounts_copy_their_reads, setup_shared2_splice_on, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    struct bigfile_stat s;
    bft_create("f", "1M", NULL);
    bft_path_on(0, pa, "f");
    bft_path_on(1, pb, "f");
    bft_put_commit(pa, 0, 8 * BFT_MB, 1);
    struct bigfile_serial sy = { 0 };
    cr_assert_eq(bft_ioctl(pb, BIGFILE_IOC_SYNC, &sy), 0);
    bft_expect(pb, 0, 8 * BFT_MB, 1, "B reads A's commit");
    cr_assert_eq(bft_stat(pb, &s), 0);
    cr_expect_eq(s.spliced_reads, 0);
    cr_expect_gt(s.loadblk_calls, 0);
}
