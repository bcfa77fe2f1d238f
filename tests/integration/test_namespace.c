/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: the namespace (create, mknod, unlink,
 * rename, readdir, attributes, block sizes) and permissions. */
#include "config.h"

#include "harness.h"
#include "../oscache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

/* The names in the mount root, sorted, joined by ',' into buf. */
static void list_root(char *buf, size_t len)
{
    struct dirent **ents = NULL;
    int n = scandir(bft.mnt, &ents, NULL, alphasort);
    buf[0] = 0;
    cr_assert_geq(n, 0, "scandir %s: %s", bft.mnt, strerror(errno));
    for (int i = 0; i < n; i++) {
        const char *nm = ents[i]->d_name;
        if (strcmp(nm, ".") && strcmp(nm, "..")) {
            size_t l = strlen(buf);
            snprintf(buf + l, len - l, "%s%s", l ? "," : "", nm);
        }
        free(ents[i]);
    }
    free(ents);
}

static void touch(const char *name, mode_t mode)
{
    char p[PATH_MAX];
    int fd = open(bft_path(p, name), O_RDWR | O_CREAT | O_EXCL, mode);
    cr_assert_geq(fd, 0, "create %s: %s", p, strerror(errno));
    cr_assert_eq(close(fd), 0);
}

static mode_t mode_of(const char *name)
{
    char p[PATH_MAX];
    struct stat st;
    cr_assert_eq(stat(bft_path(p, name), &st), 0, "stat %s: %s", p, strerror(errno));
    return st.st_mode;
}

BFT_TEST_BOTH(ns, create_mknod_unlink_rename_and_readdir, 60)
{
    char p[PATH_MAX], q[PATH_MAX], names[1024];
    umask(022);
    list_root(names, sizeof(names));
    cr_expect_str_eq(names, "", "a new database lists nothing");

    touch("a", 0640);
    cr_assert_eq(mknod(bft_path(p, "b"), S_IFREG | 0600, 0), 0, "mknod: %s", strerror(errno));
    touch("c", 0644);
    touch("zz", 0644);
    cr_expect_eq(mode_of("a"), S_IFREG | 0640);
    cr_expect_eq(mode_of("b"), S_IFREG | 0600);
    list_root(names, sizeof(names));
    cr_expect_str_eq(names, "a,b,c,zz");

    cr_expect_eq(open(bft_path(p, "a"), O_RDWR | O_CREAT | O_EXCL, 0644), -1);
    cr_expect_eq(errno, EEXIST, "O_EXCL on an existing name");
    cr_assert_eq(rename(bft_path(p, "c"), bft_path(q, "d")), 0, "rename: %s", strerror(errno));
    cr_assert_eq(unlink(bft_path(p, "b")), 0, "unlink: %s", strerror(errno));
    cr_expect_eq(access(bft_path(p, "b"), F_OK), -1);
    cr_expect_eq(errno, ENOENT);
    cr_expect_eq(access(bft_path(p, "c"), F_OK), -1);
    list_root(names, sizeof(names));
    cr_expect_str_eq(names, "a,d,zz");

    /* rename over an existing name replaces it */
    bft_put_commit(bft_path(p, "zz"), 0, 100, 3);
    cr_assert_eq(rename(bft_path(p, "zz"), bft_path(q, "a")), 0);
    list_root(names, sizeof(names));
    cr_expect_str_eq(names, "a,d");
    bft_expect(bft_path(p, "a"), 0, 100, 3, "the renamed file's content");

    /* mkdir, symlink are not bigfiles */
    cr_expect_eq(mkdir(bft_path(p, "dir"), 0755), -1, "mkdir in a bigfilefs root must fail");

    if (!bft.is_mem) {
        /* committed at once: no writeout was made, unmount keeps the names */
        bft_remount();
        list_root(names, sizeof(names));
        cr_expect_str_eq(names, "a,d", "names after remount");
        cr_expect_eq(mode_of("d"), S_IFREG | 0644);
        bft_expect(bft_path(p, "a"), 0, 100, 3, "content after remount");
    }
}

BFT_TEST_BOTH(ns, rename_keeps_uncommitted_changes, 60)
{
    char p[PATH_MAX], q[PATH_MAX];
    bft_create("r", "64K", "256K");
    bft_put(bft_path(p, "r"), 1000, 5000, 6);
    cr_assert_eq(rename(p, bft_path(q, "r2")), 0);
    bft_expect(q, 1000, 5000, 6, "uncommitted change follows the rename");
    struct bigfile_writeout w;
    cr_assert_eq(bft_writeout(q, BFT_WO_BOTH, &w), 0);
    cr_expect_eq(w.blocks, 1);
    if (!bft.is_mem) {
        bft_remount();
        bft_expect(q, 1000, 5000, 6, "committed under the new name");
    }
}

/* An unlinked file stays usable through an open descriptor; its name is
 * gone at once and its data when the last user closes. */
BFT_TEST_BOTH(ns, unlink_while_open, 60)
{
    char p[PATH_MAX], names[256];
    bft_create("gone", "64K", "256K");
    bft_put_commit(bft_path(p, "gone"), 0, 65536, 1);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t buf[100];
    bft_pattern(buf, sizeof(buf), 2, 1000);
    cr_assert_eq(pwrite(fd, buf, sizeof(buf), 1000), (ssize_t)sizeof(buf));
    bft_history_off(bft.mnt); /* its data gone at the last close: no history keeps it */
    cr_assert_eq(unlink(p), 0, "unlink: %s", strerror(errno));
    list_root(names, sizeof(names));
    cr_expect_str_eq(names, "");
    memset(buf, 0, sizeof(buf));
    cr_assert_eq(pread(fd, buf, sizeof(buf), 1000), (ssize_t)sizeof(buf));
    cr_expect(bft_check_pattern(buf, sizeof(buf), 2, 1000), "the open file keeps its changes");
    cr_assert_eq(pread(fd, buf, sizeof(buf), 5000), (ssize_t)sizeof(buf));
    cr_expect(bft_check_pattern(buf, sizeof(buf), 1, 5000), "and its committed data");
    struct bigfile_writeout w = { .flags = BFT_WO_BOTH };
    int r = ioctl(fd, BIGFILE_IOC_WRITEOUT, &w) < 0 ? -errno : 0;
    cr_expect_eq(r, 0, "writeout of an unlinked open file: %s", strerror(-r));
    close(fd);
    /* a new file of the same name is a new, empty file */
    touch("gone", 0644);
    cr_expect_eq(bft_size(p), 0);
    if (!bft.is_mem) {
        bft_remount();
        int64_t n = -1;
        cr_assert_eq(bft_sql_int(bft.db, "SELECT count(*) FROM files", &n), 0);
        cr_expect_eq(n, 1, "the unlinked file was purged (files rows: %lld)", (long long)n);
        cr_assert_eq(bft_sql_int(bft.db, "SELECT count(*) FROM blocks", &n), 0);
        cr_expect_eq(n, 0, "its blocks too");
    }
}

BFT_TEST_BOTH(ns, renameat2_noreplace_and_exchange, 60)
{
    char p[PATH_MAX], q[PATH_MAX];
    bft_create("one", "64K", "64K");
    bft_create("two", "64K", "64K");
    bft_put_commit(bft_path(p, "one"), 0, 100, 1);
    bft_put_commit(bft_path(q, "two"), 0, 100, 2);
    errno = 0;
    cr_expect_eq(renameat2(AT_FDCWD, p, AT_FDCWD, q, RENAME_NOREPLACE), -1);
    cr_expect_eq(errno, EEXIST, "RENAME_NOREPLACE onto an existing name: %s", strerror(errno));
    int r = renameat2(AT_FDCWD, p, AT_FDCWD, q, RENAME_EXCHANGE);
    cr_assert_eq(r, 0, "RENAME_EXCHANGE: %s", strerror(errno));
    bft_expect(p, 0, 100, 2, "'one' after the exchange");
    bft_expect(q, 0, 100, 1, "'two' after the exchange");
    if (!bft.is_mem) {
        bft_remount();
        bft_expect(p, 0, 100, 2, "'one' after remount");
        bft_expect(q, 0, 100, 1, "'two' after remount");
    }
}

/* truncate(2) by path, O_TRUNC and utimensat: size changes are uncommitted
 * (even with no open file: a later writeout commits them); mtime is
 * metadata, committed at once. */
BFT_TEST(ns, truncate_by_path_otrunc_and_times, bft_setup_sqlite, 60)
{
    char p[PATH_MAX], q[PATH_MAX], out[1024], err[1024];
    bft_create("t", "64K", "1M");
    bft_create("o", "64K", "1M");
    bft_put_commit(bft_path(q, "o"), 0, 1000, 5);
    cr_assert_eq(truncate(bft_path(p, "t"), 3 * 65536 + 5), 0, "truncate: %s", strerror(errno));
    cr_expect_eq(bft_size(p), 3 * 65536 + 5);
    int rc = bft_ctl(out, sizeof(out), err, sizeof(err), "writeout", p, (char *)NULL);
    cr_expect_eq(rc, 0, "writeout: %s", err);

    int fd = open(q, O_WRONLY | O_TRUNC);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_expect_eq(bft_size(q), 0, "O_TRUNC");
    cr_assert_eq(bft_discard(q, NULL), 0);
    cr_expect_eq(bft_size(q), (int64_t)BFT_MB, "discard undoes O_TRUNC");
    bft_expect(q, 0, 1000, 5, "data back after discarding O_TRUNC");

    struct timespec ts[2] = { { 1000000000, 0 }, { 1234567890, 0 } };
    cr_assert_eq(utimensat(AT_FDCWD, q, ts, 0), 0, "utimensat: %s", strerror(errno));
    struct stat st;
    cr_assert_eq(stat(q, &st), 0);
    cr_expect_eq(st.st_mtime, 1234567890);

    bft_remount();
    cr_expect_eq(bft_size(p), 3 * 65536 + 5, "truncate by path committed by writeout");
    cr_assert_eq(stat(q, &st), 0);
    cr_expect_eq(st.st_mtime, 1234567890, "mtime survives remount");
}

/* The daemon raises the mount's readahead (and dirty ratio) right after
 * mounting: poll (up to 3 s) since the mount is visible before it is tuned. */
static int read_bdi(const struct stat *st, const char *knob)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/%s", major(st->st_dev), minor(st->st_dev),
             knob);
    char *v = bft_slurp(path);
    int n = v ? atoi(v) : -1;
    free(v);
    return n;
}

struct bdi {
    struct stat st; /* of the mount's root */
    int want_ra;    /* the read_ahead_kb waited for */
    int ra, ratio;  /* read_ahead_kb, max_ratio */
};

/* bft_wait_for's condition: the bdi is tuned. */
static int bdi_tuned(void *arg)
{
    struct bdi *b = arg;
    b->ra = read_bdi(&b->st, "read_ahead_kb");
    b->ratio = read_bdi(&b->st, "max_ratio");
    return b->ra == b->want_ra && b->ratio > 1;
}

BFT_TEST(ns, mount_raises_readahead, bft_setup_mem, 30)
{
    struct bdi b = { .want_ra = 1024, .ra = -1, .ratio = -1 };
    cr_assert_eq(stat(bft.mnt, &b.st), 0);
    bft_wait_for(bdi_tuned, &b, 3);
    int ra = b.ra, ratio = b.ratio;
    cr_assert_neq(ra, -1, "no /sys/class/bdi entry for the mount");
    cr_expect_eq(ra, 1024, "read_ahead_kb = %d", ra);
    cr_expect_gt(ratio, 1, "max_ratio = %d: not raised", ratio);
}

/* -o readahead=SIZE sets the mount's readahead in place of the 1 MiB: the
 * bdi's read_ahead_kb, and so what a cold fault reads around its page
 * (64K: 16 pages, where the default reads 256). */
BFT_TEST(ns, readahead_option_sets_the_window_of_a_fault, bft_setup_nomount, 60)
{
    snprintf(bft.opts, sizeof(bft.opts), "readahead=64K");
    bft_mount();
    struct bdi b = { .want_ra = 64, .ra = -1, .ratio = -1 };
    cr_assert_eq(stat(bft.mnt, &b.st), 0);
    bft_wait_for(bdi_tuned, &b, 3);
    cr_expect_eq(b.ra, 64, "read_ahead_kb = %d with -o readahead=64K", b.ra);

    char p[PATH_MAX];
    const size_t len = 8 * BFT_MB;
    bft_create("ra", "2M", "8M");
    bft_path(p, "ra");
    bft_put(p, 0, len, 5);
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, NULL), 0);
    cr_assert_eq(bft_reclaim(p, NULL), 0);
    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0);
    const uint8_t *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    cr_assert_neq(m, MAP_FAILED, "mmap: %s", strerror(errno));
    cr_expect_eq(oc_cached_pages(p), 0, "the file is cold after a reclaim");
    const size_t at = 3 * BFT_MB + 12345;
    uint8_t want;
    bft_pattern(&want, 1, 5, at);
    cr_expect_eq(m[at], want, "the faulted byte");
    size_t k = oc_cached_pages(p);
    cr_expect(k > 1 && k <= 16, "a cold fault read %zu pages around its page: want 2..16", k);
    munmap((void *)m, len);
    close(fd);
}

/* The edges of -o readahead: 4096 (set by INIT alone, as any user could)
 * and 64M (set in the bdi by the daemon). */
BFT_TEST(ns, readahead_option_takes_4k_and_64m, bft_setup_nomount, 60)
{
    const struct {
        const char *opt;
        int kb;
    } edge[] = { { "readahead=4096", 4 }, { "readahead=64M", 65536 } };
    for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++) {
        snprintf(bft.opts, sizeof(bft.opts), "%s", edge[i].opt);
        bft_mount();
        struct bdi b = { .want_ra = edge[i].kb, .ra = -1, .ratio = -1 };
        cr_assert_eq(stat(bft.mnt, &b.st), 0);
        bft_wait_for(bdi_tuned, &b, 3);
        cr_expect_eq(b.ra, edge[i].kb, "-o %s: read_ahead_kb = %d", edge[i].opt, b.ra);
        bft_assert_daemon_clean(bft_unmount(), edge[i].opt);
    }
}

BFT_TEST(ns, blksize_and_size_of_bigfilectl_create, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    struct stat st;
    bft_create("big", "256K", "1G");
    bft_create("dflt", NULL, NULL);
    cr_assert_eq(stat(bft_path(p, "big"), &st), 0);
    cr_expect_eq(st.st_blksize, 262144);
    cr_expect_eq(st.st_size, (off_t)BFT_GB);
    cr_expect(S_ISREG(st.st_mode));
    cr_assert_eq(stat(bft_path(p, "dflt"), &st), 0);
    cr_expect_eq(st.st_blksize, 2 * 1024 * 1024, "default block size 2M");
    cr_expect_eq(st.st_size, 0);
    /* a size that is not a multiple of the page size */
    bft_create("odd", "64K", "1000001");
    cr_assert_eq(stat(bft_path(p, "odd"), &st), 0);
    cr_expect_eq(st.st_size, 1000001);
    uint8_t last = 0x42;
    cr_assert_eq(bft_pwrite(p, &last, 1, 1000000), 0);
    cr_assert_eq(bft_writeout(p, BFT_WO_BOTH, NULL), 0);

    struct bigfile_stat s;
    cr_assert_eq(bft_stat(bft_path(p, "big"), &s), 0);
    cr_expect_eq(s.committed_size, BFT_GB, "the size of create --size is committed");
    cr_expect_eq(s.dirty_blocks, 0);

    bft_remount();
    cr_assert_eq(stat(bft_path(p, "big"), &st), 0);
    cr_expect_eq(st.st_blksize, 262144, "block size survives remount");
    cr_expect_eq(st.st_size, (off_t)BFT_GB, "size survives remount");
    cr_assert_eq(stat(bft_path(p, "odd"), &st), 0);
    cr_expect_eq(st.st_size, 1000001);
    bft_expect(p, 0, 1000000, BFT_ZEROS, "odd-sized file");
    cr_assert_eq(bft_pread(p, &last, 1, 1000000), 0);
    cr_expect_eq(last, 0x42);
}

BFT_TEST(ns, mount_option_blksize_applies_to_new_files, bft_setup_nomount, 60)
{
    char p[PATH_MAX];
    struct stat st;
    snprintf(bft.opts, sizeof(bft.opts), "blksize=64K");
    bft_mount();
    touch("n", 0644);
    cr_assert_eq(stat(bft_path(p, "n"), &st), 0);
    cr_expect_eq(st.st_blksize, 65536, "st_blksize of a file created under -o blksize=64K");
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.blksize, 65536);
    bft_create("c", NULL, "1M");
    cr_assert_eq(stat(bft_path(p, "c"), &st), 0);
    cr_expect_eq(st.st_blksize, 65536, "bigfilectl create without --blksize uses the mount's");

    /* an existing file keeps its block size under another mount option */
    bft_assert_daemon_clean(bft_unmount(), "unmount");
    snprintf(bft.opts, sizeof(bft.opts), "blksize=1M");
    bft_mount();
    cr_assert_eq(stat(bft_path(p, "n"), &st), 0);
    cr_expect_eq(st.st_blksize, 65536, "a file's block size is its own");
    touch("m", 0644);
    cr_assert_eq(stat(bft_path(p, "m"), &st), 0);
    cr_expect_eq(st.st_blksize, 1 << 20);
}

/* ---- permissions ---------------------------------------------------------------------- */

struct perm_job {
    char path[PATH_MAX];
    int flags;
};

/* As uid/gid 65534: open; return 0 on success, else the errno. */
static int child_open_as_nobody(void *arg)
{
    struct perm_job *j = arg;
    if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
        return 99;
    int fd = open(j->path, j->flags);
    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

static int open_as_nobody(const char *path, int flags)
{
    struct perm_job j;
    snprintf(j.path, sizeof(j.path), "%s", path);
    j.flags = flags;
    int st = bft_run(child_open_as_nobody, &j, 20);
    cr_assert(st != -1 && WIFEXITED(st), "child did not exit");
    cr_assert_neq(WEXITSTATUS(st), 99, "could not become uid 65534");
    return WEXITSTATUS(st);
}

/* Without allow_other only the mounting user gets in at all: mount with it,
 * so that the modes and owners are what decides. */
static void default_permissions_body(void);
BFT_TEST(ns, default_permissions_are_enforced_sqlite, bft_setup_nomount, 60)
{
    snprintf(bft.opts, sizeof(bft.opts), "allow_other");
    bft_mount();
    default_permissions_body();
}
BFT_TEST(ns, default_permissions_are_enforced_mem, bft_setup_nomount, 60)
{
    snprintf(bft.opts, sizeof(bft.opts), "allow_other");
    snprintf(bft.db, sizeof(bft.db), "mem:");
    bft.is_mem = 1;
    bft_mount();
    default_permissions_body();
}
static void default_permissions_body(void)
{
    char p[PATH_MAX];
    touch("secret", 0600);
    bft_path(p, "secret");
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_expect_eq(st.st_uid, 0);
    cr_expect_eq(open_as_nobody(p, O_RDONLY), EACCES, "a 0600 root file is not readable by nobody");

    cr_assert_eq(chmod(p, 0644), 0, "chmod: %s", strerror(errno));
    cr_expect_eq(open_as_nobody(p, O_RDONLY), 0, "0644: readable by nobody");
    cr_expect_eq(open_as_nobody(p, O_WRONLY), EACCES, "0644: not writable by nobody");

    cr_assert_eq(chown(p, 65534, 65534), 0, "chown: %s", strerror(errno));
    cr_assert_eq(chmod(p, 0600), 0);
    cr_expect_eq(open_as_nobody(p, O_RDWR), 0, "the owner may open its 0600 file");

    /* the root directory: nobody may not create (root dir mode is 0755 or so) */
    char q[PATH_MAX];
    cr_assert_eq(stat(bft.mnt, &st), 0);
    if (!(st.st_mode & S_IWOTH))
        cr_expect_eq(open_as_nobody(bft_path(q, "new"), O_RDWR | O_CREAT), EACCES,
                     "nobody may not create in a root not writable by others");

    if (!bft.is_mem) {
        bft_remount();
        cr_assert_eq(stat(p, &st), 0);
        cr_expect_eq(st.st_mode & 07777, 0600, "mode survives remount");
        cr_expect_eq(st.st_uid, 65534, "owner survives remount");
    }
}
