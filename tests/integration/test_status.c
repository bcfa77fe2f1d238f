/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: the operator's view of uncommitted work —
 * `bigfilectl status` (BIGFILE_IOC_STATUS on the mount's root), the JSON
 * of `status` and `stat`, and the progress of a long writeout (STAT's
 * writeout fields, bigfilectl's progress line on a terminal). */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define BS ((uint64_t)65536)

static char out[65536], err[16384];

#define CTL(...) bft_ctl(out, sizeof(out), err, sizeof(err), __VA_ARGS__, (char *)NULL)

/* Parse `json` with $PYTHON and print the value of the Python expression
 * `expr` over it (bound to d) into out. Returns the exit code (77: no
 * PYTHON). */
static int py_json(const char *json, const char *expr)
{
    const char *py = getenv("PYTHON");
    char file[PATH_MAX], code[1024], perr[4096];
    FILE *f;

    if (!py || !*py)
        return 77;
    snprintf(file, sizeof(file), "%s/json", bft.dir);
    f = fopen(file, "w");
    if (!f)
        return -1;
    fputs(json, f);
    fclose(f);
    snprintf(code, sizeof(code), "import json, sys; d = json.load(open(sys.argv[1])); print(%s)",
             expr);
    const char *argv[] = { py, "-c", code, file, NULL };
    return bft_exec(out, sizeof(out), perr, sizeof(perr), argv, 30);
}

BFT_TEST(status, lists_exactly_the_files_with_uncommitted_changes, bft_setup_sqlite, 60)
{
    char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
    int rc;

    bft_create("a", "64K", "1M");
    bft_create("b", "64K", "1M");
    bft_create("c", "64K", "1M");
    bft_path(a, "a");
    bft_path(b, "b");
    bft_path(c, "c");
    bft_put_commit(a, 0, BS, 1); /* changed, then committed: clean */
    bft_expect(c, 0, BS, BFT_ZEROS, "c read: its handle is open and clean");

    rc = CTL("status", bft.mnt);
    cr_assert_eq(rc, 0, "status of a clean mount: exit %d: %s", rc, err);
    cr_expect_str_empty(out, "status of a clean mount prints nothing, got:\n%s", out);
    rc = CTL("status", "--json", bft.mnt);
    cr_assert_eq(rc, 0, "status --json: exit %d: %s", rc, err);
    rc = py_json(out, "len(d['files'])");
    if (rc == 77)
        cr_skip_test("no PYTHON to parse the JSON");
    cr_assert_eq(rc, 0, "status --json is not JSON");
    cr_expect_str_eq(out, "0\n");

    /* b: 3 changed blocks; c: only its size grew. */
    bft_put(b, 0, 2 * BS + 1, 2);
    cr_assert_eq(truncate(c, (off_t)(3 * BFT_MB)), 0);
    rc = CTL("status", bft.mnt);
    cr_assert_eq(rc, 0, "status: exit %d: %s", rc, err);
    cr_expect(strstr(out, "b: 3 changed blocks (196608 bytes)\n"), "status:\n%s", out);
    cr_expect(strstr(out, "c: 0 changed blocks (0 bytes), size 1048576 -> 3145728\n"),
              "status:\n%s", out);
    cr_expect(!strstr(out, "a:"), "a is committed, yet listed:\n%s", out);

    rc = CTL("status", "--json", bft.mnt);
    cr_assert_eq(rc, 0, "status --json: exit %d: %s", rc, err);
    rc = py_json(out, "sorted((f['name'], f['dirty_blocks'], f['dirty_bytes'], f['size'], "
                      "f['committed_size'], f['conflict_blocks'], f['size_conflict']) "
                      "for f in d['files'])");
    cr_assert_eq(rc, 0, "status --json is not JSON");
    cr_expect_str_eq(out, "[('b', 3, 196608, 1048576, 1048576, 0, False), "
                          "('c', 0, 0, 3145728, 1048576, 0, False)]\n");

    /* Committed and discarded: nothing left to list. */
    cr_assert_eq(bft_writeout(b, BFT_WO_BOTH, NULL), 0);
    cr_assert_eq(bft_discard(c, NULL), 0);
    rc = CTL("status", bft.mnt);
    cr_assert_eq(rc, 0, "status: exit %d: %s", rc, err);
    cr_expect_str_empty(out, "everything committed or discarded, yet:\n%s", out);
}

/* More files than one STATUS call answers: bigfilectl pages through all. */
BFT_TEST(status, pages_through_more_files_than_one_call_holds, bft_setup_mem, 120)
{
    const int n = BIGFILE_STATUS_MAX * 2 + 3;
    char p[PATH_MAX], name[32];
    int rc, lines = 0;

    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "f%03d", i);
        bft_path(p, name);
        int fd = open(p, O_RDWR | O_CREAT, 0644);
        cr_assert_geq(fd, 0, "create %s: %s", name, strerror(errno));
        cr_assert_eq(pwrite(fd, "x", 1, 0), 1);
        close(fd);
    }
    rc = CTL("status", bft.mnt);
    cr_assert_eq(rc, 0, "status: exit %d: %s", rc, err);
    for (const char *s = out; (s = strchr(s, '\n')); s++)
        lines++;
    cr_expect_eq(lines, n, "status lists %d files, want %d", lines, n);
    for (int i = 0; i < n; i++) {
        char want[64];

        snprintf(want, sizeof(want), "f%03d: 1 changed block (", i);
        cr_expect(strstr(out, want), "%s missing from status", want);
    }
}

BFT_TEST(status, refuses_what_is_not_a_mount_root, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    int rc;

    bft_create("f", "64K", "1M");
    bft_path(p, "f");
    rc = CTL("status", p);
    cr_expect_eq(rc, 1, "status of a file: exit %d", rc);
    cr_expect(strstr(err, "not a directory"), "status of a file says: %s", err);
    rc = CTL("status", bft.dir);
    cr_expect_eq(rc, 1, "status of a directory elsewhere: exit %d", rc);
    cr_expect(strstr(err, "not the mount point of a bigfilefs mount"), "says: %s", err);
    rc = CTL("status");
    cr_expect_eq(rc, 2, "status without MOUNT: exit %d", rc);

    /* A file's request on the root, and the root's on a file: ENOTTY. */
    struct bigfile_stat s;
    struct bigfile_status st;
    int fd = open(bft.mnt, O_RDONLY | O_DIRECTORY);
    cr_assert_geq(fd, 0);
    errno = 0;
    cr_expect_eq(ioctl(fd, BIGFILE_IOC_STAT, &s), -1);
    cr_expect_eq(errno, ENOTTY, "STAT on the root: %s", strerror(errno));
    memset(&st, 0, sizeof(st));
    st.reserved = 1;
    errno = 0;
    cr_expect_eq(ioctl(fd, BIGFILE_IOC_STATUS, &st), -1);
    cr_expect_eq(errno, EINVAL, "STATUS with reserved set: %s", strerror(errno));
    close(fd);
    memset(&st, 0, sizeof(st));
    cr_expect_eq(bft_ioctl(p, BIGFILE_IOC_STATUS, &st), -ENOTTY, "STATUS on a file");
}

BFT_TEST(status, stat_json_has_every_field, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    struct bigfile_stat s;
    int rc;

    bft_create("s", "64K", "1M");
    bft_path(p, "s");
    bft_put(p, 0, 3 * BS, 1);
    cr_assert_eq(bft_stat(p, &s), 0);
    rc = CTL("stat", "--json", p);
    cr_assert_eq(rc, 0, "stat --json: exit %d: %s", rc, err);
    rc = py_json(out, "d['version'], d['blksize'], d['size'], d['dirty_blocks'], d['serial'], "
                      "len(d)");
    if (rc == 77)
        cr_skip_test("no PYTHON to parse the JSON");
    cr_assert_eq(rc, 0, "stat --json is not JSON");
    char want[256];
    snprintf(want, sizeof(want), "%u 65536 1048576 3 %llu %d\n", BIGFILE_STAT_VERSION,
             (unsigned long long)s.serial, 18);
    cr_expect_str_eq(out, want);
}
