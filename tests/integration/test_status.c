/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: the operator's view of uncommitted work —
 * `bigfilectl status` (BIGFILE_IOC_STATUS on the mount's root), the JSON
 * of `status` and `stat`, and the progress of a long writeout (STAT's
 * writeout fields, bigfilectl's progress line on a terminal). */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs/test_inject.h"

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
             (unsigned long long)s.serial, 23);
    cr_expect_str_eq(out, want);
}

/* ---- writeout progress ----------------------------------------------------------- */

static int child_writeout(void *arg)
{
    return -bft_writeout(arg, BFT_WO_BOTH, NULL);
}

/* A STAT from another descriptor while the writeout's store of block 5 is
 * held: 5 of 8 blocks stored. */
BFT_TEST(status, stat_reports_the_progress_of_a_running_writeout, bft_setup_inject, 60)
{
    char p[PATH_MAX];
    struct bigfile_stat s;

    bft_create("w", "64K", NULL);
    bft_path(p, "w");
    bft_put(p, 0, 8 * BS, 1);
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.version, BIGFILE_STAT_VERSION);
    cr_expect(s.writeout_blocks == 0 && s.writeout_total_blocks == 0, "no writeout runs yet");
    cr_assert_eq(bft_hold(p, BIGFILE_TEST_INJECT_STOREBLK, 5, 5, 0, 0), 0);
    pid_t pid = bft_spawn(child_writeout, p);
    cr_assert_gt(pid, 0);
    cr_assert_eq(bft_wait_held(p, 1, 20), 0, "the store of block 5 is held");
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.writeout_blocks, 5);
    cr_expect_eq(s.writeout_total_blocks, 8);
    cr_assert_eq(bft_release(p), 0);
    int st = bft_wait_pid(pid, 20);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the writeout: 0x%x", st);
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect(s.writeout_blocks == 0 && s.writeout_total_blocks == 0,
              "the writeout ended: no progress left in STAT");
    cr_expect_eq(s.dirty_blocks, 0);
}

/* `script -qc CMD` runs CMD on a pseudo-terminal and copies what it prints
 * to our pipe. */
struct pty_job {
    const char *cmd;
    const char *outfile;
};

static int child_script(void *arg)
{
    const struct pty_job *j = arg;
    int fd = open(j->outfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
        return 126;
    execlp("script", "script", "-qec", j->cmd, "/dev/null", (char *)NULL);
    return 127;
}

static int file_has(void *arg)
{
    const char *const *a = arg;
    char *text = bft_slurp(a[0]);
    int found = text && strstr(text, a[1]);

    free(text);
    return found;
}

/* Run bigfilectl `args` on a pseudo-terminal with BIGFILECTL_PROGRESS_MIN=min;
 * its terminal output into buf. Returns the exit status of script. */
static int ctl_on_pty(const char *min, const char *args, char *buf, size_t len)
{
    char cmd[PATH_MAX * 2], file[PATH_MAX];
    struct pty_job j = { cmd, file };

    snprintf(file, sizeof(file), "%s/pty.out", bft.dir);
    snprintf(cmd, sizeof(cmd), "BIGFILECTL_PROGRESS_MIN=%s '%s' %s", min, getenv("BIGFILECTL"),
             args);
    int st = bft_run(child_script, &j, 30);
    char *text = bft_slurp(file);
    snprintf(buf, len, "%s", text ? text : "");
    free(text);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

BFT_TEST(status, writeout_shows_progress_on_a_terminal_only, bft_setup_inject, 90)
{
    char p[PATH_MAX], args[PATH_MAX + 32], pty[8192];
    int rc;

    if (access("/usr/bin/script", X_OK) != 0 && access("/bin/script", X_OK) != 0)
        cr_skip_test("no script(1) for a pseudo-terminal");
    bft_create("w", "64K", NULL);
    bft_path(p, "w");
    snprintf(args, sizeof(args), "writeout '%s'", p);

    /* On a terminal, at or above the threshold: the summary line. */
    bft_put(p, 0, 4 * BS, 1);
    rc = ctl_on_pty("256K", args, pty, sizeof(pty));
    cr_assert_eq(rc, 0, "writeout on a terminal: %d:\n%s", rc, pty);
    cr_expect(strstr(pty, "writeout: stored 4 blocks, 256.0 KiB in "), "terminal:\n%s", pty);
    cr_expect(strstr(pty, "blocks: 4"), "the result is printed too:\n%s", pty);

    /* Below the threshold, or --quiet: nothing but the result. */
    bft_put(p, 0, 4 * BS, 2);
    rc = ctl_on_pty("257K", args, pty, sizeof(pty));
    cr_assert_eq(rc, 0);
    cr_expect(!strstr(pty, "writeout:") && strstr(pty, "blocks: 4"), "below threshold:\n%s", pty);
    bft_put(p, 0, 4 * BS, 3);
    snprintf(args, sizeof(args), "writeout --quiet '%s'", p);
    rc = ctl_on_pty("1", args, pty, sizeof(pty));
    cr_assert_eq(rc, 0);
    cr_expect(!strstr(pty, "writeout:") && strstr(pty, "blocks: 4"), "--quiet:\n%s", pty);

    /* No terminal: quiet whatever the threshold. */
    bft_put(p, 0, 4 * BS, 4);
    setenv("BIGFILECTL_PROGRESS_MIN", "1", 1);
    rc = CTL("writeout", p);
    unsetenv("BIGFILECTL_PROGRESS_MIN");
    cr_assert_eq(rc, 0, "writeout: %s", err);
    cr_expect(!strstr(err, "writeout:") && !strstr(out, "writeout:"), "no terminal:\n%s%s", out,
              err);

    /* While the writeout runs: the line with blocks, bytes and rate,
     * redrawn from STAT (the store of block 5 of 8 is held). */
    char file[PATH_MAX], cmd[PATH_MAX * 2];
    snprintf(file, sizeof(file), "%s/pty.out", bft.dir);
    snprintf(cmd, sizeof(cmd), "BIGFILECTL_PROGRESS_MIN=1 '%s' writeout '%s'", getenv("BIGFILECTL"),
             p);
    struct pty_job j = { cmd, file };
    bft_put(p, 0, 8 * BS, 5);
    cr_assert_eq(bft_hold(p, BIGFILE_TEST_INJECT_STOREBLK, 5, 5, 0, 0), 0);
    pid_t pid = bft_spawn(child_script, &j);
    cr_assert_gt(pid, 0);
    cr_assert_eq(bft_wait_held(p, 1, 20), 0, "the store of block 5 is held");
    const char *want[] = { file, "writeout: 5/8 blocks, 320.0 KiB/512.0 KiB, " };
    int seen = bft_wait_for(file_has, want, 20);
    cr_assert_eq(bft_release(p), 0);
    int st = bft_wait_pid(pid, 20);
    char *text = bft_slurp(file);
    cr_expect(seen, "no progress line while the writeout was held:\n%s", text ? text : "");
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "script: 0x%x", st);
    cr_expect(text && strstr(text, "writeout: stored 8 blocks"), "summary:\n%s", text);
    free(text);
}

/* Versions 3 to 5 grew into the reserved fields only: a reader built for
 * version 1 or 2 finds its fields where they were, in a struct of the same
 * size (the request number encodes it). */
Test(status, stat_versions_3_to_5_keep_the_layout_of_versions_1_and_2)
{
    cr_expect_eq(sizeof(struct bigfile_stat), 184);
    cr_expect_eq(offsetof(struct bigfile_stat, errors), 112);
    cr_expect_eq(offsetof(struct bigfile_stat, serial), 120);
    cr_expect_eq(offsetof(struct bigfile_stat, conflict_blocks), 128);
    cr_expect_eq(offsetof(struct bigfile_stat, writeout_blocks), 136);
    cr_expect_eq(offsetof(struct bigfile_stat, writeout_total_blocks), 144);
    cr_expect_eq(offsetof(struct bigfile_stat, spilled_blocks), 152);
    cr_expect_eq(offsetof(struct bigfile_stat, spills), 160);
    cr_expect_eq(offsetof(struct bigfile_stat, spliced_reads), 168);
    cr_expect_eq(offsetof(struct bigfile_stat, reserved), 176);
}
