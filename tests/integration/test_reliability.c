/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: no workload and no reader can freeze a
 * mount, a writeout never misses changes wherever the mount went, SIGTERM
 * unmounts only its own mount, and an ioctl that fails with EFAULT did
 * nothing (issue 9).
 *
 * The starvation tests drive far more concurrent long requests than the
 * daemon has request threads (16), so that they cannot pass because the
 * machine was fast; a regression deadlocks the mount, which the harness
 * then aborts (bft_wait_children, bft_run), so it fails instead of hanging.
 * After each, the mount must still answer a stat. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define BS ((uint64_t)65536)
#define TMPFS_MAGIC 0x01021994

/* The mount answers: stat of path in a child, within 20 s (else the harness
 * aborts the mount and the assertion fails). */
static int child_stat(void *arg)
{
    struct stat st;
    return stat((const char *)arg, &st) == 0 ? 0 : 1;
}

static void expect_mount_answers(const char *path, const char *what)
{
    int ws = bft_run(child_stat, (void *)path, 20);
    cr_assert(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
              "%s: the mount does not answer a stat of %s (status 0x%x)", what, path, ws);
}

/* ---- 1. many concurrent writeouts of files dirtied through mappings ------------- */

#define N_WRITEOUTS 64

struct wo_job {
    char path[PATH_MAX];
    unsigned seed;
    int go[2]; /* the start pipe: EOF on go[0] once every writer closed go[1] */
};

/* Dirty the first page of a fresh file through a shared mapping (no msync),
 * wait for the start signal, then WRITEOUT. Exit 0 if the writeout
 * committed one block. */
static int child_map_and_writeout(void *arg)
{
    struct wo_job *j = arg;
    close(j->go[1]);
    int fd = open(j->path, O_RDWR | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return 10;
    if (ftruncate(fd, (off_t)BS) < 0)
        return 11;
    uint8_t *m = mmap(NULL, BS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 12;
    bft_pattern(m, 4096, j->seed, 0);
    char c;
    if (read(j->go[0], &c, 1) < 0) /* EOF: go */
        return 13;
    struct bigfile_writeout w = { .flags = BFT_WO_BOTH };
    if (ioctl(fd, BIGFILE_IOC_WRITEOUT, &w) < 0)
        return 20 + (errno & 63);
    munmap(m, BS);
    close(fd);
    return w.blocks == 1 ? 0 : 90;
}

BFT_TEST(reliability, many_writeouts_of_mapped_files_all_finish, bft_setup_nomount, 180)
{
    /* 64 KiB blocks, so that every file holds exactly one changed block. */
    snprintf(bft.opts, sizeof(bft.opts), "blksize=64K");
    bft_mount();
    int go[2];
    cr_assert_eq(pipe(go), 0);
    static struct wo_job jobs[N_WRITEOUTS];
    pid_t pids[N_WRITEOUTS];
    int st[N_WRITEOUTS];
    for (int i = 0; i < N_WRITEOUTS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%02d", i);
        bft_path(jobs[i].path, name);
        jobs[i].seed = 100 + (unsigned)i;
        jobs[i].go[0] = go[0];
        jobs[i].go[1] = go[1];
        pids[i] = bft_spawn(child_map_and_writeout, &jobs[i]);
        cr_assert_gt(pids[i], 0, "fork: %s", strerror(errno));
    }
    close(go[0]);
    close(go[1]); /* all 64 writeouts start now */
    int r = bft_wait_children(pids, N_WRITEOUTS, 90, st);
    cr_assert_eq(r, 0,
                 "%d concurrent writeouts of mapped files did not finish in 90 s "
                 "(the mount was aborted)",
                 N_WRITEOUTS);
    for (int i = 0; i < N_WRITEOUTS; i++)
        cr_expect(WIFEXITED(st[i]) && WEXITSTATUS(st[i]) == 0,
                  "writeout of %s: status 0x%x (20+errno: writeout failed, 90: not 1 block)",
                  jobs[i].path, st[i]);
    expect_mount_answers(bft.mnt, "after the writeouts");
    bft_remount();
    for (int i = 0; i < N_WRITEOUTS; i++)
        bft_expect(jobs[i].path, 0, 4096, jobs[i].seed, "committed through a mapping");
}

/* ---- 2. a reader flooding RECLAIM while others read --------------------------------- */

#define N_RECLAIMERS 20
#define N_READERS 4
#define RECLAIMS_EACH 25
#define READS_EACH 100

struct flood {
    char path[PATH_MAX];
    int failures; /* per-process count, in the child */
};

static void *reclaimer(void *arg)
{
    struct flood *f = arg;
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) {
        __atomic_add_fetch(&f->failures, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    for (int i = 0; i < RECLAIMS_EACH; i++) {
        struct bigfile_count c = { 0, 0 };
        if (ioctl(fd, BIGFILE_IOC_RECLAIM, &c) < 0 && errno != EAGAIN)
            __atomic_add_fetch(&f->failures, 1, __ATOMIC_RELAXED);
    }
    close(fd);
    return NULL;
}

static void *reader(void *arg)
{
    struct flood *f = arg;
    uint8_t *buf = malloc(BS);
    int fd = open(f->path, O_RDONLY);
    if (fd < 0 || !buf) {
        __atomic_add_fetch(&f->failures, 1, __ATOMIC_RELAXED);
        free(buf);
        return NULL;
    }
    for (int i = 0; i < READS_EACH; i++) {
        uint64_t off = (uint64_t)(i % 16) * BS;
        if (pread(fd, buf, BS, (off_t)off) != (ssize_t)BS || !bft_check_pattern(buf, BS, 7, off))
            __atomic_add_fetch(&f->failures, 1, __ATOMIC_RELAXED);
    }
    close(fd);
    free(buf);
    return NULL;
}

/* As uid 65534, who may only read the file: 20 threads RECLAIM in a loop
 * while 4 threads pread it. Exit 0 if every call succeeded (or was refused
 * with EAGAIN by a full queue), 99 if the identity change failed. */
static int child_reclaim_flood(void *arg)
{
    struct flood *f = arg;
    pthread_t t[N_RECLAIMERS + N_READERS];
    if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
        return 99;
    for (int i = 0; i < N_RECLAIMERS + N_READERS; i++)
        if (pthread_create(&t[i], NULL, i < N_RECLAIMERS ? reclaimer : reader, f) != 0)
            return 98;
    for (int i = 0; i < N_RECLAIMERS + N_READERS; i++)
        pthread_join(t[i], NULL);
    return f->failures ? 1 : 0;
}

BFT_TEST(reliability, reclaim_flood_by_a_reader_does_not_freeze_the_mount, bft_setup_nomount, 180)
{
    snprintf(bft.opts, sizeof(bft.opts), "allow_other,blksize=64K");
    bft_mount();
    static struct flood f;
    bft_path(f.path, "shared");
    int fd = open(f.path, O_RDWR | O_CREAT | O_EXCL, 0644);
    cr_assert_geq(fd, 0, "create: %s", strerror(errno));
    close(fd);
    bft_put_commit(f.path, 0, 16 * BS, 7);
    int ws = bft_run(child_reclaim_flood, &f, 90);
    cr_assert(ws != -1 && WIFEXITED(ws),
              "the flood did not finish in 90 s (status 0x%x): the "
              "mount was aborted",
              ws);
    cr_assert_neq(WEXITSTATUS(ws), 99, "could not become uid 65534");
    cr_expect_eq(WEXITSTATUS(ws), 0, "some RECLAIM or pread failed (exit %d)", WEXITSTATUS(ws));
    expect_mount_answers(f.path, "after the RECLAIM flood");
    bft_expect(f.path, 0, 16 * BS, 7, "the data after the flood");
}

/* ---- 3. WRITEOUT reaches the pages wherever the mount went --------------------------- */

/* A file "f" of 64K blocks with committed pattern 1 in block 0, and a peer
 * process that changed its first page through a mapping (no msync). */
static void mapped_change(struct bft_peer *peer, char *p)
{
    bft_create("f", "64K", "1M");
    bft_path(p, "f");
    bft_put_commit(p, 0, BS, 1);
    cr_assert_eq(bft_peer_start(peer, p, BFT_MB), 0);
    cr_assert_eq(bft_peer_write(peer, 10, 0xAB), 0);
}

/* WRITEOUT through fd must commit the peer's change: one block, and the
 * byte in the database. */
static void expect_writeout_commits(int fd, const char *what)
{
    struct bigfile_writeout w = { .flags = BFT_WO_BOTH };
    int r = ioctl(fd, BIGFILE_IOC_WRITEOUT, &w);
    cr_assert_eq(r, 0, "%s: WRITEOUT: %s", what, strerror(errno));
    cr_expect_eq(w.blocks, 1, "%s: WRITEOUT committed %llu blocks, want the mapped change (1)",
                 what, (unsigned long long)w.blocks);
    int64_t v = -1;
    cr_assert_eq(bft_sql_int(bft.db,
                             "SELECT substr(data, 11, 1) = x'AB' FROM blocks WHERE blk = 0 AND "
                             "file = (SELECT id FROM files WHERE name = 'f')",
                             &v),
                 0);
    cr_expect_eq(v, 1, "%s: the database holds the mapped change", what);
}

BFT_TEST(reliability, writeout_after_mount_move_reaches_the_pages, bft_setup_sqlite, 60)
{
    char p[PATH_MAX], moved[256];
    struct bft_peer peer;
    mapped_change(&peer, p);
    /* Move the mount away and put an unrelated filesystem at the old path. */
    snprintf(moved, sizeof(moved), "%s/moved", bft.dir);
    cr_assert_eq(mkdir(moved, 0755), 0);
    cr_assert_eq(mount(bft.mnt, moved, NULL, MS_MOVE, NULL), 0, "mount --move: %s",
                 strerror(errno));
    cr_assert_eq(mount("tmpfs", bft.mnt, "tmpfs", 0, NULL), 0);
    char q[PATH_MAX + 8];
    snprintf(q, sizeof(q), "%s/f", moved);
    int fd = open(q, O_RDWR);
    cr_assert_geq(fd, 0, "open %s: %s", q, strerror(errno));
    expect_writeout_commits(fd, "after mount --move");
    close(fd);
    bft_peer_stop(&peer);
    /* Put things back for the teardown. */
    cr_assert_eq(umount2(bft.mnt, 0), 0);
    cr_assert_eq(mount(moved, bft.mnt, NULL, MS_MOVE, NULL), 0, "move back: %s", strerror(errno));
}

BFT_TEST(reliability, writeout_under_an_overmount_reaches_the_pages, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    struct bft_peer peer;
    mapped_change(&peer, p);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(mount("tmpfs", bft.mnt, "tmpfs", 0, NULL), 0);
    expect_writeout_commits(fd, "under another filesystem mounted on top");
    close(fd);
    bft_peer_stop(&peer);
    cr_assert_eq(umount2(bft.mnt, 0), 0);
}

BFT_TEST(reliability, writeout_after_lazy_unmount_reaches_the_pages, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    struct bft_peer peer;
    mapped_change(&peer, p);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(umount2(bft.mnt, MNT_DETACH), 0);
    expect_writeout_commits(fd, "after umount -l");
    close(fd);
    /* The last user gone, the daemon ends by itself. */
    bft_peer_stop(&peer);
}

/* ---- 4. SIGTERM unmounts this mount only ----------------------------------------------- */

BFT_TEST(reliability, sigterm_after_mount_move_unmounts_only_this_mount, bft_setup_sqlite, 60)
{
    char moved[256], marker[PATH_MAX];
    snprintf(moved, sizeof(moved), "%s/moved", bft.dir);
    cr_assert_eq(mkdir(moved, 0755), 0);
    cr_assert_eq(mount(bft.mnt, moved, NULL, MS_MOVE, NULL), 0, "mount --move: %s",
                 strerror(errno));
    cr_assert_eq(mount("tmpfs", bft.mnt, "tmpfs", 0, NULL), 0);
    snprintf(marker, sizeof(marker), "%s/marker", bft.mnt);
    int fd = open(marker, O_WRONLY | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    close(fd);

    pid_t daemon = bft.daemon;
    kill(daemon, SIGTERM);
    int st = bft_wait_pid(daemon, 20);
    if (st == -1) {
        bft_abort_mount();
        kill(daemon, SIGKILL);
        waitpid(daemon, &st, 0);
    }
    bft.daemon = 0;
    bft.conn = 0;
    bft_assert_daemon_clean(st, "SIGTERM after mount --move");
    struct statfs sf;
    cr_expect(statfs(bft.mnt, &sf) == 0 && (unsigned long)sf.f_type == TMPFS_MAGIC,
              "the filesystem now at the old mount point was left alone");
    cr_expect_eq(access(marker, F_OK), 0, "its file is still there");
    int dead = statfs(moved, &sf) < 0 && errno == ENOTCONN;
    cr_expect(!dead && !bft_is_fuse(moved), "the moved bigfilefs mount was unmounted (%s)",
              dead ? "left dead: ENOTCONN" : "still mounted");
    umount2(moved, MNT_DETACH);
    umount2(bft.mnt, MNT_DETACH);
}

/* ---- 5. EFAULT: nothing happened --------------------------------------------------------- */

/* The first encodings of DISCARD and RECLAIM (bigfilefs 0.1: _IOR), which the
 * daemon still serves. */
#define OLD_IOC_DISCARD _IOR(BIGFILE_IOC_MAGIC, 2, struct bigfile_count)
#define OLD_IOC_RECLAIM _IOR(BIGFILE_IOC_MAGIC, 5, struct bigfile_count)

/* A page holding *init, made read-only. */
static void *readonly_copy(const void *init, size_t len)
{
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(m, MAP_FAILED);
    memcpy(m, init, len);
    cr_assert_eq(mprotect(m, 4096, PROT_READ), 0);
    return m;
}

static void expect_efault(int fd, unsigned long req, void *arg, const char *what)
{
    errno = 0;
    int r = ioctl(fd, req, arg);
    cr_expect(r == -1 && errno == EFAULT, "%s: %d, %s (want EFAULT)", what, r, strerror(errno));
}

/* Nothing changed since s0: the change is still uncommitted, nothing was
 * committed, discarded or reclaimed. */
static void expect_untouched(const char *p, const struct bigfile_stat *s0, const char *what)
{
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 1, "%s: the change is still uncommitted", what);
    cr_expect_eq(s.writeouts, s0->writeouts, "%s: nothing was committed", what);
    cr_expect_eq(s.discards, s0->discards, "%s: nothing was discarded", what);
    cr_expect_eq(s.reclaimed_blocks, s0->reclaimed_blocks, "%s: nothing was reclaimed", what);
    cr_expect_eq(s.loaded_blocks, s0->loaded_blocks, "%s: the cached blocks are still there", what);
}

BFT_TEST_BOTH(reliability, an_ioctl_failing_with_efault_did_nothing, 60)
{
    char p[PATH_MAX];
    bft_create("f", "64K", "1M");
    bft_path(p, "f");
    bft_put_commit(p, 0, 4 * BS, 1); /* blocks 0..3 committed and cached */
    bft_put(p, BS, BS, 2);           /* block 1 changed */
    struct bigfile_stat s0;
    cr_assert_eq(bft_stat(p, &s0), 0);
    cr_assert_eq(s0.dirty_blocks, 1);
    cr_assert_gt(s0.loaded_blocks, 0);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);

    struct bigfile_count zero = { 0, 0 };
    struct bigfile_writeout wo = { .flags = BFT_WO_BOTH };
    void *ro_count = readonly_copy(&zero, sizeof(zero));
    void *ro_wo = readonly_copy(&wo, sizeof(wo));

    const struct {
        unsigned long req;
        void *arg;
        const char *what;
    } bad[] = {
        { BIGFILE_IOC_DISCARD, NULL, "DISCARD, NULL argument" },
        { BIGFILE_IOC_DISCARD, ro_count, "DISCARD, read-only argument" },
        { OLD_IOC_DISCARD, NULL, "DISCARD (old encoding), NULL argument" },
        { BIGFILE_IOC_RECLAIM, NULL, "RECLAIM, NULL argument" },
        { BIGFILE_IOC_RECLAIM, ro_count, "RECLAIM, read-only argument" },
        { OLD_IOC_RECLAIM, NULL, "RECLAIM (old encoding), NULL argument" },
        { BIGFILE_IOC_WRITEOUT, NULL, "WRITEOUT, NULL argument" },
        { BIGFILE_IOC_WRITEOUT, ro_wo, "WRITEOUT, read-only argument" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_efault(fd, bad[i].req, bad[i].arg, bad[i].what);
        expect_untouched(p, &s0, bad[i].what);
    }
    bft_expect(p, BS, BS, 2, "the change after the refused requests");
    if (!bft.is_mem) {
        close(fd);
        bft_remount();
        bft_expect(p, BS, BS, 1, "the database after the refused requests");
        bft_put(p, BS, BS, 2);
        fd = open(p, O_RDWR);
        cr_assert_geq(fd, 0);
    }

    /* The old encodings still work with a good argument. */
    struct bigfile_count c = { 0, 0 };
    cr_expect_eq(ioctl(fd, OLD_IOC_RECLAIM, &c), 0, "RECLAIM (old encoding): %s", strerror(errno));
    c.blocks = 0;
    cr_expect_eq(ioctl(fd, OLD_IOC_DISCARD, &c), 0, "DISCARD (old encoding): %s", strerror(errno));
    cr_expect_eq(c.blocks, 1, "DISCARD (old encoding) dropped the change");
    bft_expect(p, BS, BS, 1, "the committed data after DISCARD");
    close(fd);
    munmap(ro_count, 4096);
    munmap(ro_wo, 4096);
}
