/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: extended attributes (user.* only), stored
 * in the database with the file: round trips, the flags, Linux's limits,
 * the other namespaces, persistence across a remount, deletion with the
 * file, and another mount of the database seeing them at once.
 *
 * Compiled twice: test_xattr on SQLite and memory databases, test_xattr_pg
 * (-DBFT_PG) on a PostgreSQL database of the test's own on the program's
 * private server (harness.h), with what only PostgreSQL has: a database
 * made before the table gaining it. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <criterion/criterion.h>

/* getxattr into buf (size len), NUL-terminated for the asserts; returns
 * the length or -errno. */
static ssize_t get(const char *p, const char *name, char *buf, size_t len)
{
    ssize_t n = getxattr(p, name, buf, len);

    if (n < 0)
        return -errno;
    if ((size_t)n < len)
        buf[n] = '\0';
    return n;
}

static int set(const char *p, const char *name, const char *v, int flags)
{
    return setxattr(p, name, v, strlen(v), flags) < 0 ? -errno : 0;
}

#ifdef BFT_PG
/* A fresh database of the test's own, mounted. */
static void setup_pg(void)
{
    bft_setup_pg_nomount();
    bft_mount();
}
#define XA_TEST_ALL(suite, name, timeout_s) BFT_TEST(suite, name##_pg, setup_pg, timeout_s)
#define SETUP_ONE setup_pg
#define SETUP_SHARED2 bft_setup_pg_shared2
#else
#define XA_TEST_ALL BFT_TEST_BOTH
#define SETUP_ONE bft_setup_sqlite
#define SETUP_SHARED2 bft_setup_shared2
#endif

XA_TEST_ALL(xattr, round_trip_replace_and_remove, 60)
{
    char p[PATH_MAX], buf[256];

    bft_create("f", "64K", "1M");
    bft_path(p, "f");
    cr_expect_eq(get(p, "user.a", buf, sizeof(buf)), -ENODATA, "none yet");
    cr_expect_eq(listxattr(p, buf, sizeof(buf)), 0, "an empty list");
    cr_assert_eq(set(p, "user.a", "hello", 0), 0);
    cr_assert_eq(set(p, "user.b", "", 0), 0, "an empty value is a value");
    cr_expect_eq(getxattr(p, "user.a", NULL, 0), 5, "size 0 asks for the size");
    cr_expect_eq(get(p, "user.a", buf, sizeof(buf)), 5);
    cr_expect_str_eq(buf, "hello");
    cr_expect_eq(get(p, "user.b", buf, sizeof(buf)), 0);
    ssize_t n = listxattr(p, buf, sizeof(buf));
    cr_expect_eq(n, 14, "list: %zd bytes", n);
    cr_expect(n == 14 && memcmp(buf, "user.a\0user.b\0", 14) == 0, "the names, in order");
    cr_expect_eq(listxattr(p, NULL, 0), 14, "size 0 asks for the list's size");

    cr_assert_eq(set(p, "user.a", "bye", 0), 0, "replace");
    cr_expect_eq(get(p, "user.a", buf, sizeof(buf)), 3);
    cr_expect_str_eq(buf, "bye");
    cr_expect_eq(set(p, "user.a", "x", XATTR_CREATE), -EEXIST, "XATTR_CREATE of an existing one");
    cr_expect_eq(set(p, "user.c", "x", XATTR_REPLACE), -ENODATA, "XATTR_REPLACE of a missing one");
    cr_expect_eq(set(p, "user.c", "x", XATTR_CREATE), 0);
    cr_expect_eq(set(p, "user.c", "y", XATTR_REPLACE), 0);
    cr_expect_eq(get(p, "user.c", buf, sizeof(buf)), 1);
    cr_expect_str_eq(buf, "y");

    cr_assert_eq(removexattr(p, "user.a"), 0);
    cr_expect_eq(get(p, "user.a", buf, sizeof(buf)), -ENODATA, "removed");
    cr_expect_eq(removexattr(p, "user.a") < 0 ? errno : 0, ENODATA, "removed twice");
    n = listxattr(p, buf, sizeof(buf));
    cr_expect(n == 14 && memcmp(buf, "user.b\0user.c\0", 14) == 0, "list after remove: %zd", n);

    /* The data and the size are not touched. */
    cr_expect_eq(bft_size(p), (int64_t)BFT_MB);
}

XA_TEST_ALL(xattr, limits_are_those_of_linux, 60)
{
    char p[PATH_MAX], name[300], small[4];
    static char big[65537], back[65536];

    bft_create("f", "64K", NULL);
    bft_path(p, "f");
    memset(big, 'v', sizeof(big));
    cr_expect_eq(setxattr(p, "user.big", big, 65536, 0), 0, "a 64 KiB value: %s", strerror(errno));
    cr_expect_eq(getxattr(p, "user.big", back, sizeof(back)), 65536);
    cr_expect(memcmp(back, big, sizeof(back)) == 0, "the 64 KiB value reads back");
    errno = 0;
    cr_expect_eq(setxattr(p, "user.big", big, 65537, 0), -1);
    cr_expect_eq(errno, E2BIG, "a value over 64 KiB: %s", strerror(errno));

    memset(name, 'n', sizeof(name));
    memcpy(name, "user.", 5);
    name[255] = '\0';
    cr_expect_eq(set(p, name, "v", 0), 0, "a 255-byte name");
    name[255] = 'n';
    name[256] = '\0';
    cr_expect_eq(set(p, name, "v", 0), -ERANGE, "a 256-byte name");

    cr_assert_eq(set(p, "user.s", "12345", 0), 0);
    cr_expect_eq(get(p, "user.s", small, sizeof(small)), -ERANGE, "a buffer too small");
    cr_expect_eq(listxattr(p, small, sizeof(small)) < 0 ? errno : 0, ERANGE,
                 "a list buffer too small");
}

BFT_TEST(xattr, other_namespaces_are_not_supported, SETUP_ONE, 60)
{
    char p[PATH_MAX], buf[64];

    bft_create("f", "64K", NULL);
    bft_path(p, "f");
    const char *names[] = { "trusted.x", "security.x", "os2.x", "user." };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int r = set(p, names[i], "v", 0);
        cr_expect(r == -ENOTSUP || r == -EINVAL, "setxattr %s: %s", names[i], strerror(-r));
        r = (int)get(p, names[i], buf, sizeof(buf));
        cr_expect(r == -ENOTSUP || r == -ENODATA || r == -EINVAL, "getxattr %s: %s", names[i],
                  strerror(-r));
    }
    cr_expect_eq(set(p, "trusted.x", "v", 0), -ENOTSUP, "trusted.* (root may set it elsewhere)");
    cr_expect_eq(listxattr(p, buf, sizeof(buf)), 0, "nothing stored");
    cr_expect_eq(set(bft.mnt, "user.x", "v", 0), -ENOTSUP, "the root directory has none");
    cr_expect_eq(listxattr(bft.mnt, buf, sizeof(buf)), 0, "the root's list is empty");
}

BFT_TEST(xattr, persist_across_remount_and_go_with_the_file, SETUP_ONE, 60)
{
    char p[PATH_MAX], buf[64];
    int64_t rows = -1;

    bft_create("f", "64K", NULL);
    bft_path(p, "f");
    cr_assert_eq(set(p, "user.dtype", "<f8", 0), 0);
    cr_assert_eq(set(p, "user.shape", "[3, 4]", 0), 0);
    bft_remount();
    cr_expect_eq(get(p, "user.dtype", buf, sizeof(buf)), 3);
    cr_expect_str_eq(buf, "<f8");
    cr_expect_eq(get(p, "user.shape", buf, sizeof(buf)), 6);
    cr_expect_str_eq(buf, "[3, 4]");

    /* Renamed: they follow the file. Unlinked: they go with it. */
    char q[PATH_MAX];
    bft_path(q, "g");
    cr_assert_eq(rename(p, q), 0);
    cr_expect_eq(get(q, "user.dtype", buf, sizeof(buf)), 3, "after rename");
    bft_history_off(bft.mnt); /* no history keeps the unlinked file */
    cr_assert_eq(unlink(q), 0);
    bft_remount();
    cr_assert_eq(bft_sql_int(bft.db, "SELECT count(*) FROM xattrs", &rows), 0);
    cr_expect_eq(rows, 0, "the unlinked file's attributes are deleted");
    bft_create("f", "64K", NULL);
    cr_expect_eq(get(p, "user.dtype", buf, sizeof(buf)), -ENODATA, "a new file has none");
}

BFT_TEST(xattr, another_mount_sees_them_at_once, SETUP_SHARED2, 60)
{
    char p[PATH_MAX], p2[PATH_MAX], buf[64];

    bft_create("f", "64K", NULL);
    bft_path(p, "f");
    bft_path_on(1, p2, "f");
    cr_assert_eq(bft_ioctl(p2, BIGFILE_IOC_SYNC, &(struct bigfile_serial){ 0 }), 0);
    cr_assert_eq(set(p, "user.k", "one", 0), 0);
    cr_expect_eq(get(p2, "user.k", buf, sizeof(buf)), 3);
    cr_expect_str_eq(buf, "one");
    cr_assert_eq(set(p2, "user.k", "two", 0), 0);
    cr_expect_eq(get(p, "user.k", buf, sizeof(buf)), 3);
    cr_expect_str_eq(buf, "two");
}

#ifdef BFT_PG
/* A database whose schema is of the current version but was made before
 * the xattrs table: a read-only mount sees no attribute (and works), a
 * read-write one creates the table. */
BFT_TEST(xattr, a_database_made_before_gains_the_table, SETUP_ONE, 60)
{
    char p[PATH_MAX], buf[64];
    int64_t has = -1;

    bft_create("f", "64K", NULL);
    bft_path(p, "f");
    cr_assert_eq(set(p, "user.a", "v", 0), 0);
    cr_assert_eq(bft_unmount(), 0);
    cr_assert_eq(bft_sql_exec(bft.db, "DROP TABLE xattrs"), 0);

    snprintf(bft.opts, sizeof(bft.opts), "ro");
    bft_mount();
    cr_expect_eq(get(p, "user.a", buf, sizeof(buf)), -ENODATA, "read-only: none");
    cr_expect_eq(listxattr(p, buf, sizeof(buf)), 0, "read-only: an empty list");
    cr_assert_eq(bft_sql_int(bft.db, "SELECT to_regclass('bigfilefs.xattrs') IS NULL", &has), 0);
    cr_expect_eq(has, 1, "a read-only mount creates nothing");

    bft.opts[0] = '\0';
    bft_remount();
    cr_assert_eq(bft_sql_int(bft.db, "SELECT to_regclass('bigfilefs.xattrs') IS NOT NULL", &has),
                 0);
    cr_expect_eq(has, 1, "a read-write mount creates the table");
    cr_expect_eq(get(p, "user.a", buf, sizeof(buf)), -ENODATA, "what was dropped is gone");
    cr_assert_eq(set(p, "user.a", "w", XATTR_CREATE), 0);
    cr_expect_eq(get(p, "user.a", buf, sizeof(buf)), 1);
    cr_expect_str_eq(buf, "w");
}

/* Names are any bytes but NUL (not only UTF-8), sorted bytewise. */
BFT_TEST(xattr, names_are_bytes, SETUP_ONE, 60)
{
    char p[PATH_MAX], buf[64];

    bft_create("f", "64K", NULL);
    bft_path(p, "f");
    cr_assert_eq(set(p, "user.\xff", "hi", 0), 0, "a name that is not UTF-8");
    cr_assert_eq(set(p, "user.B", "", 0), 0);
    cr_assert_eq(set(p, "user.a", "", 0), 0);
    cr_expect_eq(get(p, "user.\xff", buf, sizeof(buf)), 2);
    ssize_t n = listxattr(p, buf, sizeof(buf));
    cr_expect(n == 21 && memcmp(buf, "user.B\0user.a\0user.\xff\0", 21) == 0, "bytewise order: %zd",
              n);
}
#endif /* BFT_PG */
