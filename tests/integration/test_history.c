/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: point-in-time views (issue 13;
 * bigfilefs(8) "POINT-IN-TIME VIEWS"): MOUNT/@SERIAL/NAME as committed at
 * SERIAL, from another process and from another mount; mappings of a view
 * that stay as they were while commits land and while a gc runs; EROFS for
 * every change; ENOENT past the kept history; -o at=; bigfilectl log,
 * history and gc; an upgraded database.
 *
 * Every test runs two daemons on one database (mount A is 0, B is 1).
 * Compiled twice: test_history on an SQLite database, test_history_pg
 * (-DBFT_PG) on a PostgreSQL database of the test's own on the program's
 * private server (harness.h); the upgrade of a schema-1 SQLite file only
 * on SQLite. */
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
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define BS (64 * 1024u)
#define MA 0 /* mount A */
#define MB 1 /* mount B */

#ifdef BFT_PG
#define SETUP_SHARED2 bft_setup_pg_shared2
#else
#define SETUP_SHARED2 bft_setup_shared2
#define SETUP_NOMOUNT bft_setup_nomount
#endif

/* ---- helpers ------------------------------------------------------------------ */

/* MOUNT(m)/@serial/name (name NULL: the directory) into buf (PATH_MAX). */
static char *view_path(char *buf, int m, uint64_t serial, const char *name)
{
    snprintf(buf, PATH_MAX, "%s/@%llu%s%s", bft_mnt_of(m), (unsigned long long)serial,
             name ? "/" : "", name ? name : "");
    return buf;
}

/* BIGFILE_IOC_WRITEOUT2 (store and mark stored) of path: the serial. */
static uint64_t commit(const char *path)
{
    struct bigfile_writeout2 w = { .flags = BFT_WO_BOTH };
    int r = bft_ioctl(path, BIGFILE_IOC_WRITEOUT2, &w);
    cr_assert_eq(r, 0, "writeout %s: %s", path, strerror(-r));
    cr_assert_gt(w.serial, 0);
    return w.serial;
}

/* BIGFILE_IOC_SYNC through path: the serial the mount reached (after its
 * own namespace commits: the newest of them). */
static uint64_t sync_on(const char *path)
{
    struct bigfile_serial s = { 0 };
    int r = bft_ioctl(path, BIGFILE_IOC_SYNC, &s);
    cr_assert_eq(r, 0, "SYNC %s: %s", path, strerror(-r));
    return s.serial;
}

/* The ftruncate of path (an uncommitted change). */
static void set_size(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(ftruncate(fd, (off_t)size), 0, "ftruncate %s: %s", path, strerror(errno));
    close(fd);
}

/* A request on the root of mount m (HISTORY, GC): 0 or -errno. */
static int root_ioctl(int m, unsigned long req, struct bigfile_history *h)
{
    int fd = open(bft_mnt_of(m), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", bft_mnt_of(m), strerror(errno));
    int r = ioctl(fd, req, h) < 0 ? -errno : 0;
    close(fd);
    return r;
}

static struct bigfile_history history_of(int m)
{
    struct bigfile_history h;
    memset(&h, 0, sizeof(h));
    int r = root_ioctl(m, BIGFILE_IOC_HISTORY, &h);
    cr_assert_eq(r, 0, "HISTORY: %s", strerror(-r));
    cr_assert(h.flags & BIGFILE_HISTORY_KEPT, "the database keeps history");
    return h;
}

/* bigfilectl history --keep=0 MOUNT then bigfilectl gc MOUNT (mount m):
 * the history as gc answered it. */
static struct bigfile_history keep_none_and_gc(int m)
{
    char out[512], err[512];
    int rc = bft_ctl(out, sizeof(out), err, sizeof(err), "history", "--keep=0", bft_mnt_of(m),
                     NULL);
    cr_assert_eq(rc, 0, "history --keep=0: %s", err);
    cr_assert(strstr(out, "keep: 0\n"), "history --keep=0 says it: %s", out);
    rc = bft_ctl(out, sizeof(out), err, sizeof(err), "gc", bft_mnt_of(m), NULL);
    cr_assert_eq(rc, 0, "gc: %s", err);
    return history_of(m);
}

/* Whether stat(path) fails with ENOENT. */
static int is_gone(const char *path)
{
    struct stat st;
    return stat(path, &st) < 0 && errno == ENOENT;
}

/* ---- three versions, from another process and another mount ----------------------------- */

/* The versions of the first test: f's content and size at S1, S2, S3, and
 * which names exist at each. */
struct versions {
    uint64_t s[3];
};

/* 1 when path holds exactly [0, size) of what version v (0, 1, 2) of f
 * holds: v0 = 3 blocks of seed 1; v1 = v0 with block 1 of seed 2, cut at
 * 2.5 blocks; v2 = 4 blocks of seed 3. */
static int holds_version(const char *path, int v)
{
    static const uint64_t sizes[] = { 3 * BS, 2 * BS + BS / 2, 4 * BS };
    struct stat st;
    int ok;
    if (stat(path, &st) < 0 || (uint64_t)st.st_size != sizes[v])
        return 0;
    uint8_t *buf = malloc(sizes[v]);
    ok = buf && bft_pread(path, buf, sizes[v], 0) == 0;
    if (ok && v == 0)
        ok = bft_check_pattern(buf, 3 * BS, 1, 0);
    if (ok && v == 1)
        ok = bft_check_pattern(buf, BS, 1, 0) && bft_check_pattern(buf + BS, BS, 2, BS) &&
             bft_check_pattern(buf + 2 * BS, BS / 2, 1, 2 * BS);
    if (ok && v == 2)
        ok = bft_check_pattern(buf, 4 * BS, 3, 0);
    free(buf);
    return ok;
}

/* The names of directory path, sorted, comma-separated, into out. */
static int names_of(const char *path, char *out, size_t len)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "ls -1 '%s' | paste -sd, -", path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    out[0] = '\0';
    if (!fgets(out, (int)len, p))
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    return pclose(p) == 0 ? 0 : -1;
}

/* In a child: every view of the three versions on mount m; returns 0, or
 * the number of the first check that failed. */
static int check_versions_on(int m, const struct versions *v)
{
    static const char *const names[] = { "f,gone,old", "born,f,new", "born,f,new" };
    char p[PATH_MAX], got[256];
    for (int i = 0; i < 3; i++) {
        if (!holds_version(view_path(p, m, v->s[i], "f"), i))
            return 10 + i;
        if (names_of(view_path(p, m, v->s[i], NULL), got, sizeof(got)) < 0 ||
            strcmp(got, names[i]) != 0) {
            fprintf(stderr, "@%llu on mount %d lists %s, not %s\n", (unsigned long long)v->s[i], m,
                    got, names[i]);
            return 20 + i;
        }
    }
    /* What the listing says, a lookup says too. */
    if (!is_gone(view_path(p, m, v->s[0], "born")) || !is_gone(view_path(p, m, v->s[1], "old")) ||
        !is_gone(view_path(p, m, v->s[1], "gone")))
        return 30;
    if (bft_size(view_path(p, m, v->s[0], "old")) != 7 ||
        bft_size(view_path(p, m, v->s[1], "new")) != 7)
        return 31;
    /* The root lists no view; a serial past current or 0 is no view. */
    if (names_of(bft_mnt_of(m), got, sizeof(got)) < 0 || strcmp(got, "born,f,new") != 0)
        return 40;
    if (!is_gone(view_path(p, m, v->s[2] + 1000, NULL)) || !is_gone(view_path(p, m, 0, NULL)))
        return 41;
    snprintf(p, sizeof(p), "%s/@0%llu", bft_mnt_of(m), (unsigned long long)v->s[0]);
    if (!is_gone(p))
        return 42; /* not canonical */
    return 0;
}

struct check_arg {
    int m;
    const struct versions *v;
};

static int child_check_versions(void *arg)
{
    const struct check_arg *a = arg;
    return check_versions_on(a->m, a->v);
}

BFT_TEST(history, three_versions_show_from_another_process_and_another_mount, SETUP_SHARED2, 120)
{
    char f[PATH_MAX], p[PATH_MAX], q[PATH_MAX];
    struct versions v;

    bft_create("f", "64K", NULL);
    bft_create("gone", NULL, NULL);
    bft_create("old", NULL, NULL);
    bft_path(f, "f");
    bft_put_commit(bft_path(p, "old"), 0, 7, 9);
    bft_put(f, 0, 3 * BS, 1);
    v.s[0] = commit(f);
    /* S2: names changed before the content's commit. */
    cr_assert_eq(unlink(bft_path(p, "gone")), 0);
    cr_assert_eq(rename(bft_path(p, "old"), bft_path(q, "new")), 0);
    bft_create("born", NULL, NULL);
    bft_put(f, BS, BS, 2);
    set_size(f, 2 * BS + BS / 2);
    v.s[1] = commit(f);
    bft_put(f, 0, 4 * BS, 3);
    v.s[2] = commit(f);
    cr_assert(v.s[0] < v.s[1] && v.s[1] < v.s[2]);
    cr_assert(holds_version(f, 2), "the current file is the last version");

    for (int m = MA; m <= MB; m++) {
        struct check_arg a = { m, &v };
        int st = bft_run(child_check_versions, &a, 60);
        cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "mount %d: check %d of the views failed (0x%x)", m,
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1, st);
    }
    /* A serial between two commits of f shows the older one. */
    cr_expect(holds_version(view_path(p, MB, v.s[1] + 1, "f"), 1) || v.s[1] + 1 == v.s[2]);
    /* The view's inodes are apart from the current files'. */
    struct stat a, b;
    cr_assert_eq(stat(f, &a), 0);
    cr_assert_eq(stat(view_path(p, MA, v.s[2], "f"), &b), 0);
    cr_expect_neq(a.st_ino, b.st_ino, "a view file has an inode number of its own");
    cr_assert_eq(stat(view_path(p, MA, v.s[2], NULL), &b), 0);
    cr_expect(S_ISDIR(b.st_mode) && (b.st_mode & 07777) == 0555, "@S is a directory, 0555");
}

/* ---- mappings ------------------------------------------------------------------ */

/* A read-only shared mapping of len bytes of path (its fd closed). */
static uint8_t *map_ro(const char *path, size_t len)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    uint8_t *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    cr_assert_neq(m, MAP_FAILED, "mmap %s: %s", path, strerror(errno));
    close(fd);
    return m;
}

/* RECLAIM of a view file: the kernel's and the daemon's clean copies go,
 * so the next access loads from the database again. */
static void reclaim(const char *path)
{
    struct bigfile_count c;
    int r = bft_reclaim(path, &c);
    cr_assert_eq(r, 0, "RECLAIM %s: %s", path, strerror(-r));
}

BFT_TEST(history, a_mapped_view_stays_while_commits_land, SETUP_SHARED2, 120)
{
    char fa[PATH_MAX], fb[PATH_MAX], v1[PATH_MAX];

    bft_create("f", "64K", NULL);
    bft_path(fa, "f");
    bft_path_on(MB, fb, "f");
    bft_put(fa, 0, 4 * BS, 1);
    uint64_t s1 = commit(fa);
    uint8_t *m = map_ro(view_path(v1, MB, s1, "f"), 4 * BS);
    cr_assert(bft_check_pattern(m, 4 * BS, 1, 0), "the mapping shows S1");
    for (unsigned seed = 2; seed < 6; seed++) {
        bft_put(fa, 0, 4 * BS, seed);
        set_size(fa, (2 + seed) * BS);
        uint64_t s = commit(fa);
        cr_assert_geq(sync_on(fb), s, "B caught up");
        cr_expect(bft_check_pattern(m, 4 * BS, 1, 0), "the mapping of @S1 after commit %llu",
                  (unsigned long long)s);
        bft_expect(v1, 0, 4 * BS, 1, "read(2) of @S1");
        cr_expect_eq(bft_size(v1), 4 * BS);
        bft_expect(fb, 0, 4 * BS, seed, "the current file on B");
    }
    /* Loaded again from the database: still S1. */
    reclaim(v1);
    cr_expect(bft_check_pattern(m, 4 * BS, 1, 0), "the mapping of @S1, reloaded");
    munmap(m, 4 * BS);
}

/* bft_wait_for's condition: a gc on mount A moved `from` to `want`. */
struct gc_until {
    uint64_t want;
    struct bigfile_history h;
};

static int gc_reaches(void *arg)
{
    struct gc_until *w = arg;
    memset(&w->h, 0, sizeof(w->h));
    return root_ioctl(MA, BIGFILE_IOC_GC, &w->h) == 0 && w->h.from == w->want;
}

BFT_TEST(history, a_gc_takes_nothing_from_a_mapped_view, SETUP_SHARED2, 120)
{
    char fa[PATH_MAX], v1[PATH_MAX];

    bft_create("f", "64K", NULL);
    bft_path(fa, "f");
    bft_put(fa, 0, 4 * BS, 1);
    uint64_t s1 = commit(fa);
    uint8_t *m = map_ro(view_path(v1, MB, s1, "f"), 4 * BS);
    bft_put(fa, 0, 4 * BS, 2);
    uint64_t s2 = commit(fa);
    bft_put(fa, 0, 4 * BS, 3);
    uint64_t s3 = commit(fa);

    /* B's open mapping pins S1: a gc from A keeps it. */
    struct bigfile_history h = keep_none_and_gc(MA);
    cr_expect_eq(h.pinned, s1, "pinned: the mapped view's serial");
    cr_expect_leq(h.from, s1, "S1 is kept");
    reclaim(v1);
    cr_expect(bft_check_pattern(m, 4 * BS, 1, 0), "the mapping of @S1 after the gc, reloaded");
    bft_expect(v1, 0, 4 * BS, 1, "read(2) of @S1 after the gc");

    /* Unmapped (released): the next gc takes S1 and S2 away. */
    munmap(m, 4 * BS);
    cr_assert_eq(sync_on(fa), s3);
    struct gc_until w = { s3, { 0 } };
    bft_wait_for(gc_reaches, &w, 10); /* the kernel's RELEASE follows munmap */
    struct bigfile_history g = w.h;
    cr_expect_eq(g.from, s3, "from: the current serial");
    cr_expect_eq(g.pinned, 0);
    cr_expect(is_gone(view_path(v1, MA, s1, "f")), "@S1 is gone after the gc (mount A)");
    cr_expect(is_gone(view_path(v1, MB, s1, NULL)), "@S1 is gone after the gc (mount B)");
    cr_expect(is_gone(view_path(v1, MB, s2, NULL)), "@S2 is gone after the gc");
    bft_expect(view_path(v1, MB, s3, "f"), 0, 4 * BS, 3, "@S3 (current) stays");
}

/* ---- read-only ------------------------------------------------------------------ */

/* errno of an ioctl on an fd of path opened read-only, 0 on success. */
static int ioctl_err(const char *path, unsigned long req, void *arg)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    int r = ioctl(fd, req, arg) < 0 ? errno : 0;
    close(fd);
    return r;
}

#define EXPECT_EROFS(call, what)                                                  \
    do {                                                                          \
        errno = 0;                                                                \
        int rc_ = (call);                                                         \
        cr_expect(rc_ < 0 && errno == EROFS, "%s: %d, %s (not EROFS)", what, rc_, \
                  strerror(errno));                                               \
    } while (0)

BFT_TEST(history, every_change_of_a_view_is_erofs, SETUP_SHARED2, 120)
{
    char fa[PATH_MAX], v[PATH_MAX], d[PATH_MAX], x[PATH_MAX];

    bft_create("f", "64K", NULL);
    bft_path(fa, "f");
    cr_assert_eq(setxattr(fa, "user.k", "v1", 2, 0), 0);
    bft_put(fa, 0, 2 * BS, 1);
    uint64_t s = commit(fa);
    view_path(v, MB, s, "f");
    view_path(d, MB, s, NULL);

    EXPECT_EROFS(open(v, O_WRONLY), "open O_WRONLY");
    EXPECT_EROFS(open(v, O_RDWR), "open O_RDWR");
    EXPECT_EROFS(open(v, O_RDWR | O_TRUNC), "open O_TRUNC");
    EXPECT_EROFS(open(v, O_RDONLY | O_TRUNC), "open O_RDONLY|O_TRUNC");
    EXPECT_EROFS(truncate(v, 0), "truncate");
    EXPECT_EROFS(chmod(v, 0600), "chmod");
    EXPECT_EROFS(chown(v, 1, 1), "chown");
    EXPECT_EROFS(utimes(v, NULL), "utimes");
    EXPECT_EROFS(setxattr(v, "user.k", "v2", 2, 0), "setxattr");
    EXPECT_EROFS(removexattr(v, "user.k"), "removexattr");
    EXPECT_EROFS(open(view_path(x, MB, s, "new"), O_CREAT | O_RDWR, 0644), "create");
    EXPECT_EROFS(mknod(x, S_IFREG | 0644, 0), "mknod");
    EXPECT_EROFS(mkdir(view_path(x, MB, s, "dir"), 0755), "mkdir");
    EXPECT_EROFS(symlink("f", view_path(x, MB, s, "sym")), "symlink");
    char y[PATH_MAX];
    EXPECT_EROFS(link(bft_path_on(MB, y, "f"), view_path(x, MB, s, "hard")), "link into it");
    EXPECT_EROFS(link(v, bft_path_on(MB, x, "hard")), "link of a view file");
    EXPECT_EROFS(unlink(v), "unlink");
    EXPECT_EROFS(rename(v, bft_path_on(MB, x, "moved")), "rename out of the view");
    EXPECT_EROFS(rename(bft_path_on(MB, x, "f"), view_path(d, MB, s, "in")), "rename into it");
    view_path(d, MB, s, NULL);
    EXPECT_EROFS(rename(d, bft_path_on(MB, x, "renamed")), "rename of @S");
    EXPECT_EROFS(rmdir(d), "rmdir of @S");

    struct bigfile_writeout w = { .flags = BFT_WO_BOTH };
    struct bigfile_writeout2 w2 = { .flags = BFT_WO_BOTH };
    struct bigfile_count c;
    struct bigfile_blksize b = { .blksize = 4096 };
    struct bigfile_range rg = { 0, 1 };
    cr_expect_eq(ioctl_err(v, BIGFILE_IOC_WRITEOUT, &w), EROFS, "WRITEOUT");
    cr_expect_eq(ioctl_err(v, BIGFILE_IOC_WRITEOUT2, &w2), EROFS, "WRITEOUT2");
    cr_expect_eq(ioctl_err(v, BIGFILE_IOC_DISCARD, &c), EROFS, "DISCARD");
    cr_expect_eq(ioctl_err(v, BIGFILE_IOC_SETBLKSIZE, &b), EROFS, "SETBLKSIZE");
    cr_expect_eq(ioctl_err(v, BIGFILE_IOC_INVALIDATE, &rg), EROFS, "INVALIDATE");

    /* What only reads works. */
    struct bigfile_stat st;
    struct bigfile_conflicts cf;
    struct bigfile_serial sr;
    struct bigfile_log lg;
    memset(&cf, 0, sizeof(cf));
    memset(&lg, 0, sizeof(lg));
    cr_expect_eq(ioctl_err(v, BIGFILE_IOC_STAT, &st), 0, "STAT");
    cr_expect_eq(st.size, 2 * BS);
    cr_expect_eq(st.serial, s, "STAT's serial: the view's");
    cr_expect_eq(ioctl_err(v, BIGFILE_IOC_CONFLICTS, &cf), 0, "CONFLICTS");
    cr_expect_eq(cf.count, 0);
    cr_expect_eq(ioctl_err(v, BIGFILE_IOC_SYNC, &sr), 0, "SYNC");
    cr_expect_eq(ioctl_err(v, BIGFILE_IOC_LOG, &lg), 0, "LOG");
    cr_expect_geq(lg.count, 1);
    cr_expect_eq(lg.e[0].serial, s, "LOG: the view's newest commit first");
    /* The current user.* attributes (not versioned). */
    cr_assert_eq(setxattr(fa, "user.k", "v3", 2, 0), 0);
    char val[8] = "";
    cr_expect_eq(getxattr(v, "user.k", val, sizeof(val)), 2);
    cr_expect(memcmp(val, "v3", 2) == 0, "getxattr of a view file: the current value");
    /* Nothing changed. */
    bft_expect(v, 0, 2 * BS, 1, "the view after the refusals");
    bft_expect(bft_path_on(MB, x, "f"), 0, 2 * BS, 1, "the current file after them");
}

/* ---- retention ---------------------------------------------------------------------- */

BFT_TEST(history, serials_past_retention_are_enoent_after_gc, SETUP_SHARED2, 120)
{
    char fa[PATH_MAX], p[PATH_MAX], out[512], err[512];

    bft_create("f", "64K", NULL);
    bft_path(fa, "f");
    bft_put(fa, 0, BS, 1);
    uint64_t s1 = commit(fa);
    bft_put(fa, 0, BS, 2);
    uint64_t s2 = commit(fa);
    bft_put(fa, 0, BS, 3);
    uint64_t s3 = commit(fa);
    cr_expect_eq(bft_ctl(out, sizeof(out), err, sizeof(err), "history", bft_mnt_of(MB), NULL), 0,
                 "history: %s", err);
    uint64_t from = UINT64_MAX, cur = 0;
    cr_expect(bft_kv(out, "from", &from) == 0 && from <= s1, "from <= S1: %s", out);
    cr_expect(bft_kv(out, "current", &cur) == 0 && cur == s3, "current: %s", out);
    cr_expect(strstr(out, "keep: 1d\n") && strstr(out, "pinned: none\n"), "%s", out);
    bft_expect(view_path(p, MB, s1, "f"), 0, BS, 1, "@S1 before the gc");

    struct bigfile_history h = keep_none_and_gc(MB);
    cr_expect_eq(h.from, s3);
    cr_expect_eq(h.keep_ns, 0);
    for (int m = MA; m <= MB; m++) {
        cr_expect(is_gone(view_path(p, m, s1, NULL)), "@S1 on mount %d", m);
        cr_expect(is_gone(view_path(p, m, s1, "f")), "@S1/f on mount %d", m);
        cr_expect(is_gone(view_path(p, m, s2, "f")), "@S2/f on mount %d", m);
        bft_expect(view_path(p, m, s3, "f"), 0, BS, 3, "@S3 (from) stays");
    }
    /* A new commit is kept again (from the current serial on). */
    cr_assert_eq(
        bft_ctl(out, sizeof(out), err, sizeof(err), "history", "--keep=1w", bft_mnt_of(MA), NULL),
        0, "%s", err);
    cr_expect(strstr(out, "keep: 1w\n"), "%s", out);
    bft_put(fa, 0, BS, 4);
    uint64_t s4 = commit(fa);
    bft_put(fa, 0, BS, 5);
    commit(fa);
    bft_expect(view_path(p, MB, s4, "f"), 0, BS, 4, "@S4");
    bft_expect(view_path(p, MB, s3, "f"), 0, BS, 3, "@S3 still");
}

/* ---- -o at= ---------------------------------------------------------------------------- */

BFT_TEST(history, an_at_mount_is_the_database_at_its_serial, SETUP_SHARED2, 120)
{
    char fa[PATH_MAX], p[PATH_MAX], opts[64];

    bft_create("f", "64K", NULL);
    bft_create("g", NULL, NULL);
    bft_path(fa, "f");
    bft_put(fa, 0, 2 * BS, 1);
    uint64_t s1 = commit(fa);
    cr_assert_eq(unlink(bft_path(p, "g")), 0);
    bft_put(fa, 0, 3 * BS, 2);
    uint64_t s2 = commit(fa);

    /* B again, as of S1. */
    cr_assert_eq(bft_unmount_on(MB) >= 0, 1);
    snprintf(opts, sizeof(opts), "shared,at=%llu", (unsigned long long)s1);
    bft_mount_on(MB, opts);
    bft_expect(bft_path_on(MB, p, "f"), 0, 2 * BS, 1, "f at S1");
    cr_expect_eq(bft_size(p), 2 * BS);
    cr_expect_eq(bft_size(bft_path_on(MB, p, "g")), 0, "g existed at S1");
    EXPECT_EROFS(open(bft_path_on(MB, p, "f"), O_RDWR), "open for writing on an at= mount");
    EXPECT_EROFS(open(bft_path_on(MB, p, "new"), O_CREAT | O_RDWR, 0644), "create");
    EXPECT_EROFS(unlink(bft_path_on(MB, p, "g")), "unlink");
    EXPECT_EROFS(truncate(bft_path_on(MB, p, "f"), 0), "truncate");
    struct bigfile_history h;
    memset(&h, 0, sizeof(h));
    cr_expect_eq(root_ioctl(MB, BIGFILE_IOC_GC, &h), -EROFS, "GC on an at= mount");

    /* It pins S1 for its life: a gc from A keeps it. */
    h = keep_none_and_gc(MA);
    cr_expect_eq(h.pinned, s1);
    cr_expect_leq(h.from, s1);
    bft_expect(bft_path_on(MB, p, "f"), 0, 2 * BS, 1, "f at S1 after the gc");
    bft_expect(view_path(p, MA, s1, "f"), 0, 2 * BS, 1, "@S1 on A too");
    int st = bft_unmount_on(MB);
    bft_assert_clean_on(MB, st, "the at= mount");
    h = keep_none_and_gc(MA);
    cr_expect_eq(h.from, s2, "unmounted: S1 goes");

    /* A serial outside the kept history is refused, said in one line. */
    char spec[512], num[32];
    snprintf(num, sizeof(num), "at=%llu", (unsigned long long)s1);
    const char *argv[] = { "-f",           "-o", "shared",
                           "-o",           num,  bft_db_of(MB, spec, sizeof(spec)),
                           bft_mnt_of(MB), NULL };
    st = bft_daemon_run(20, argv);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "at=S1 after the gc: 0x%x", st);
    char *log = bft_slurp(bft.log);
    char want[128];
    snprintf(want, sizeof(want), "serial %llu is not in the kept history (from %llu to %llu)",
             (unsigned long long)s1, (unsigned long long)s2, (unsigned long long)s2);
    cr_expect(log && strstr(log, want), "the refusal says: %s\nlog:\n%s", want, log ? log : "");
    free(log);
    cr_expect(!bft_is_fuse(bft_mnt_of(MB)), "nothing mounted");
}

/* ---- bigfilectl log ------------------------------------------------------------------------- */

/* The serial of line i (0: the first) of text, or 0. */
static uint64_t serial_of_line(const char *text, int i)
{
    for (; i > 0 && text; i--) {
        text = strchr(text, '\n');
        text = text ? text + 1 : NULL;
    }
    return text ? strtoull(text, NULL, 10) : 0;
}

BFT_TEST(history, bigfilectl_log_lists_a_files_commits_newest_first, SETUP_SHARED2, 120)
{
    char fa[PATH_MAX], g[PATH_MAX], p[PATH_MAX], out[4096], err[512];

    bft_create("f", "64K", NULL); /* a create, then a block size */
    bft_path(fa, "f");
    uint64_t s0 = sync_on(fa);
    bft_put(fa, 0, 3 * BS, 1);
    uint64_t s1 = commit(fa);
    cr_assert_eq(rename(fa, bft_path(g, "g")), 0);
    uint64_t s2 = sync_on(g);
    set_size(g, BS);
    uint64_t s3 = commit(g);

    int rc = bft_ctl(out, sizeof(out), err, sizeof(err), "log", bft_path_on(MB, p, "g"), NULL);
    cr_assert_eq(rc, 0, "log: %s", err);
    char want[4][128];
    snprintf(want[0], sizeof(want[0]), "%llu ", (unsigned long long)s3);
    cr_expect(strncmp(out, want[0], strlen(want[0])) == 0, "newest first: %s", out);
    cr_expect_eq(serial_of_line(out, 0), s3, "%s", out);
    cr_expect_eq(serial_of_line(out, 1), s2, "%s", out);
    cr_expect_eq(serial_of_line(out, 2), s1, "%s", out);
    cr_expect_eq(serial_of_line(out, 3), s0, "%s", out);
    cr_expect_eq(serial_of_line(out, 4), s0 - 1, "%s", out);
    cr_expect_eq(serial_of_line(out, 5), 0, "%s", out);
    cr_expect(strstr(out, " setblksize 0 0 f\n"), "the block size: %s", out);
    cr_expect(strstr(out, " truncate 2 65536 g\n"), "the truncate dropped blocks 1 and 2: %s", out);
    cr_expect(strstr(out, " rename 0 196608 g\n"), "the rename: %s", out);
    cr_expect(strstr(out, " write 3 196608 f\n"), "the write: %s", out);
    cr_expect(strstr(out, " create 0 0 f\n"), "the create: %s", out);

    /* A view's log ends at its serial. */
    rc = bft_ctl(out, sizeof(out), err, sizeof(err), "log", view_path(p, MA, s1, "f"), NULL);
    cr_assert_eq(rc, 0, "log of @S1/f: %s", err);
    cr_expect_eq(serial_of_line(out, 0), s1, "%s", out);
    cr_expect_eq(serial_of_line(out, 1), s0, "%s", out);
    cr_expect_eq(serial_of_line(out, 2), s0 - 1, "%s", out);
    cr_expect_eq(serial_of_line(out, 3), 0, "nothing after the create: %s", out);

    rc = bft_ctl(out, sizeof(out), err, sizeof(err), "log", "--json", g, NULL);
    cr_assert_eq(rc, 0, "log --json: %s", err);
    snprintf(want[1], sizeof(want[1]), "{\"commits\": [\n  {\"serial\": %llu,",
             (unsigned long long)s3);
    cr_expect(strncmp(out, want[1], strlen(want[1])) == 0, "%s", out);
    cr_expect(strstr(out, "\"kind\": \"rename\"") && strstr(out, "\"name\": \"g\""), "%s", out);
}

BFT_TEST(history, bigfilectl_log_pages_through_many_commits, SETUP_SHARED2, 120)
{
    char fa[PATH_MAX], out[16384], err[512];

    bft_create("f", "4K", NULL);
    bft_path(fa, "f");
    uint64_t last = 0;
    for (unsigned i = 0; i < BIGFILE_LOG_MAX + 5; i++) {
        bft_put(fa, i * 4096, 10, i);
        last = commit(fa);
    }
    int rc = bft_ctl(out, sizeof(out), err, sizeof(err), "log", fa, NULL);
    cr_assert_eq(rc, 0, "log: %s", err);
    int lines = 0, writes = 0;
    for (const char *c = out; *c; c++)
        lines += *c == '\n';
    for (const char *c = out; (c = strstr(c, " write 1 ")); c++)
        writes++;
    cr_expect_eq(writes, BIGFILE_LOG_MAX + 5, "every write: %s", out);
    cr_expect_eq(lines, BIGFILE_LOG_MAX + 7, "the writes, the block size, the create: %s", out);
    cr_expect_eq(serial_of_line(out, 0), last);
    for (int i = 1; i < lines; i++)
        cr_expect_lt(serial_of_line(out, i), serial_of_line(out, i - 1), "newest first");
}

#ifndef BFT_PG
/* ---- an upgraded database ----------------------------------------------------------------- */

/* A database made before history (schema 1, upgraded through 2 to 3 by a
 * read-write mount): its history starts at the upgrade. */
BFT_TEST(history, an_upgraded_database_keeps_history_from_the_upgrade, SETUP_NOMOUNT, 120)
{
    char p[PATH_MAX], v[PATH_MAX], out[2048], err[512];

    cr_assert_eq(bft_sql_exec(bft.db, bft_schema1_sql), 0);
    /* a file whose name became a view's name when history came */
    cr_assert_eq(
        bft_sql_exec(bft.db, "INSERT INTO files VALUES(2, '@1', 65536, 5, 420, 0, 0, 111, 222);"),
        0);
    bft_mount_shared(2);
    struct stat st;
    char q[PATH_MAX];
    cr_expect_eq(stat(bft_path(q, "@1"), &st), 0, "@1: %s", strerror(errno));
    cr_expect(S_ISREG(st.st_mode) && st.st_size == 5, "a file named @1 stays a file");
    cr_expect_eq(unlink(q), 0, "and can be removed: %s", strerror(errno));
    int64_t ver = 0;
    cr_assert_eq(bft_sql_int(bft.db, "PRAGMA user_version", &ver), 0);
    cr_expect_eq(ver, 3, "upgraded to schema 3");
    struct bigfile_history h = history_of(MA);
    bft_path(p, "old");
    cr_expect(is_gone(view_path(v, MA, h.from, NULL)) || h.from == h.current,
              "nothing before the upgrade is viewable");
    uint8_t b = 'b';
    cr_assert_eq(bft_pwrite(p, &b, 1, BS + 5), 0);
    uint64_t s = commit(p);
    view_path(v, MB, s, "old");
    cr_expect_eq(bft_size(v), 196618);
    uint8_t *buf = malloc(3 * BS);
    cr_assert_eq(bft_pread(v, buf, 3 * BS, 0), 0);
    cr_expect(buf[0] == 'a' && buf[BS - 1] == 'a' && buf[BS + 5] == 'b' && buf[BS + 4] == 0 &&
                  buf[2 * BS] == 'c',
              "the old blocks and the new one at S");
    free(buf);
    int rc = bft_ctl(out, sizeof(out), err, sizeof(err), "log", p, NULL);
    cr_assert_eq(rc, 0, "log: %s", err);
    cr_expect_eq(serial_of_line(out, 0), s, "%s", out);
    cr_expect_eq(serial_of_line(out, 1), 0, "no commit from before the upgrade: %s", out);
}
#endif /* !BFT_PG */
