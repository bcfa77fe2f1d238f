/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: bigfilectl (output formats, exit codes:
 * 0 ok, 1 operation failed, 2 usage) and the daemon's own command line. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define BS ((uint64_t)65536)

static char out[16384], err[16384];

#define CTL(...) bft_ctl(out, sizeof(out), err, sizeof(err), __VA_ARGS__, (char *)NULL)

BFT_TEST(cli, help_and_version, bft_setup_nomount, 30)
{
    int rc = CTL("--help");
    cr_assert_eq(rc, 0, "bigfilectl --help: exit %d", rc);
    const char *subs[] = { "writeout", "discard",   "invalidate", "stat",    "reclaim",
                           "create",   "--blksize", "--size",     "--store", "--markstored" };
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        cr_expect(strstr(out, subs[i]), "--help does not mention %s:\n%s", subs[i], out);
    rc = CTL("-h");
    cr_expect_eq(rc, 0, "bigfilectl -h: exit %d", rc);
    rc = CTL("--version");
    cr_expect_eq(rc, 0);
    cr_expect(strstr(out, "0.1.0") || strstr(out, "bigfile"), "--version prints: %s", out);

    /* the daemon's own */
    const char *h[] = { getenv("BIGFILEFS"), "--help", NULL };
    rc = bft_exec(out, sizeof(out), err, sizeof(err), h, 20);
    cr_expect_eq(rc, 0, "bigfilefs --help: exit %d", rc);
    cr_expect(strstr(out, "blksize") || strstr(err, "blksize"), "bigfilefs --help lacks blksize");
    cr_expect(strstr(out, "cache") || strstr(err, "cache"), "bigfilefs --help lacks cache");
    const char *v[] = { getenv("BIGFILEFS"), "--version", NULL };
    rc = bft_exec(out, sizeof(out), err, sizeof(err), v, 20);
    cr_expect_eq(rc, 0, "bigfilefs --version: exit %d", rc);
    const char *bad[] = { getenv("BIGFILEFS"), NULL };
    rc = bft_exec(out, sizeof(out), err, sizeof(err), bad, 20);
    cr_expect_eq(rc, 2, "bigfilefs without arguments: exit %d, want 2 (usage)", rc);
}

BFT_TEST(cli, usage_errors_exit_2, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    bft_create("u", "64K", "1M");
    bft_path(p, "u");
    struct {
        const char *a[5];
    } cases[] = {
        { { NULL } },
        { { "frobnicate", p, NULL } },
        { { "writeout", NULL } },
        { { "writeout", "--bogus", p, NULL } },
        { { "writeout", p, p, NULL } },
        { { "discard", NULL } },
        { { "stat", NULL } },
        { { "reclaim", NULL } },
        { { "invalidate", p, NULL } },
        { { "invalidate", p, "abc", NULL } },
        { { "invalidate", p, "5-2", NULL } },
        { { "create", NULL } },
        { { "create", "--size=lots", p, NULL } },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const *a = cases[i].a;
        int rc = bft_ctl(out, sizeof(out), err, sizeof(err), a[0], a[0] ? a[1] : NULL,
                         a[0] && a[1] ? a[2] : NULL, a[0] && a[1] && a[2] ? a[3] : NULL,
                         (char *)NULL);
        cr_expect_eq(rc, 2, "bigfilectl %s %s %s: exit %d, want 2 (usage)", a[0] ? a[0] : "",
                     a[0] && a[1] ? a[1] : "", a[0] && a[1] && a[2] ? a[2] : "", rc);
        cr_expect(err[0], "bigfilectl %s: a usage error says something on stderr",
                  a[0] ? a[0] : "(no args)");
    }
    /* nothing happened to the file */
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.size, BFT_MB);
}

BFT_TEST(cli, operation_failures_exit_1, bft_setup_sqlite, 60)
{
    char p[PATH_MAX], plain[PATH_MAX];
    bft_create("f", "64K", "1M");
    bft_path(p, "f");
    snprintf(plain, sizeof(plain), "%s/plain", bft.dir);
    int fd = open(plain, O_RDWR | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    close(fd);

    int rc = CTL("stat", plain);
    cr_expect_eq(rc, 1, "stat of a file outside bigfilefs: exit %d, want 1", rc);
    cr_expect(err[0], "stat of a foreign file: no message");
    rc = CTL("writeout", plain);
    cr_expect_eq(rc, 1, "writeout of a foreign file: exit %d", rc);
    char missing[PATH_MAX];
    rc = CTL("stat", bft_path(missing, "missing"));
    cr_expect_eq(rc, 1, "stat of a missing file: exit %d", rc);
    rc = CTL("create", p);
    cr_expect_eq(rc, 1, "create of an existing file: exit %d", rc);
    cr_expect(strstr(err, "exist") || strstr(err, "Exist"),
              "create over an existing name says why: %s", err);
    rc = CTL("invalidate", p, "0-0");
    cr_expect_eq(rc, 0, "invalidate of block 0: exit %d: %s", rc, err);
    rc = CTL("create", "--blksize=3K", bft_path(missing, "odd"));
    cr_expect(rc == 1 || rc == 2, "create with a bad block size: exit %d", rc);
    cr_expect_neq(access(missing, F_OK), 0, "a refused create leaves no file behind");
}

BFT_TEST(cli, create_outside_a_bigfilefs_mount_creates_nothing, bft_setup_sqlite, 60)
{
    char plain[PATH_MAX];
    snprintf(plain, sizeof(plain), "%s/not_a_bigfile", bft.dir);
    const char *size[] = { "--size=0", "--size=1M" };
    for (size_t i = 0; i < 2; i++) {
        int rc = CTL("create", size[i], plain);
        cr_expect_eq(rc, 1, "create %s outside a bigfilefs mount: exit %d, want 1", size[i], rc);
        cr_expect(strstr(err, "not on a bigfilefs mount"), "the message says why: %s", err);
        cr_expect_neq(access(plain, F_OK), 0, "create %s: no plain file was created", size[i]);
        unlink(plain);
    }
    int rc;
    /* Inside the mount, through a relative path, it works. */
    char here[PATH_MAX];
    cr_assert(getcwd(here, sizeof(here)));
    cr_assert_eq(chdir(bft.mnt), 0);
    rc = CTL("create", "relative");
    cr_assert_eq(chdir(here), 0);
    cr_expect_eq(rc, 0, "create inside the mount: exit %d: %s", rc, err);
}

BFT_TEST(cli, invalidate_of_an_impossible_block_says_why, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    bft_create("f", "64K", "1M");
    bft_path(p, "f");
    const char *ranges[] = { "18446744073709551615", "0-18446744073709551615" };
    for (size_t i = 0; i < 2; i++) {
        int rc = CTL("invalidate", p, ranges[i]);
        cr_expect_eq(rc, 2, "invalidate %s: exit %d, want 2 (usage)", ranges[i], rc);
        cr_expect(strstr(err, "out of range") && strstr(err, "18446744073709551614"),
                  "invalidate %s: the message names the limit: %s", ranges[i], err);
    }
    int rc = CTL("invalidate", p, "18446744073709551614");
    cr_expect_eq(rc, 0, "the largest block number is fine: exit %d: %s", rc, err);
}

/* The daemon refused its command line: exit status 2, the log says `why`,
 * and no database file was created. */
static void expect_usage_refusal(const char *opts, const char *why)
{
    const char *argv[] = { "-f", "-o", opts, bft.db, bft.mnt, NULL };
    int st = bft_daemon_run(10, argv);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2,
              "-o %s: the daemon must exit 2 (status 0x%x)", opts, st);
    cr_expect(!bft_is_fuse(bft.mnt), "-o %s: nothing is mounted", opts);
    char *log = bft_slurp(bft.log);
    cr_expect(log && strstr(log, why), "-o %s: the message says \"%s\":\n%s", opts, why,
              log ? log : "");
    free(log);
    const char *suffix[] = { "", "-wal", "-shm", "-journal", "-blocks" };
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        char f[PATH_MAX];
        snprintf(f, sizeof(f), "%s%s", bft.db, suffix[i]);
        cr_expect_neq(access(f, F_OK), 0, "-o %s: %s was created", opts, f);
    }
}

BFT_TEST(cli, daemon_refuses_a_cache_larger_than_memory, bft_setup_nomount, 60)
{
    expect_usage_refusal("cache=99999T", "memory");
}

BFT_TEST(cli, daemon_refuses_a_readahead_it_cannot_set, bft_setup_nomount, 60)
{
    expect_usage_refusal("readahead=3000", "readahead");
    expect_usage_refusal("readahead=0", "readahead");
    expect_usage_refusal("readahead=128M", "readahead");
    expect_usage_refusal("readahead=fast", "readahead");
}

BFT_TEST(cli, daemon_checks_every_option_before_the_database, bft_setup_nomount, 60)
{
    expect_usage_refusal("frobnicate", "frobnicate");
}

BFT_TEST(cli, stat_prints_every_field, bft_setup_sqlite, 60)
{
    char p[PATH_MAX];
    bft_create("s", "64K", "1M");
    bft_path(p, "s");
    bft_put(p, 0, 3 * BS, 1);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)(2 * BFT_MB)), 0);
    close(fd);

    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    int rc = CTL("stat", p);
    cr_assert_eq(rc, 0, "bigfilectl stat: exit %d: %s", rc, err);
    /* (the ABI version need not be printed) */
    struct {
        const char *key;
        uint64_t want;
        int exact;
    } f[] = {
        { "blksize", s.blksize, 1 },
        { "size", s.size, 1 },
        { "committed_size", s.committed_size, 1 },
        { "loaded_blocks", s.loaded_blocks, 0 },
        { "dirty_blocks", s.dirty_blocks, 1 },
        { "loading_blocks", s.loading_blocks, 0 },
        { "loadblk_calls", s.loadblk_calls, 0 },
        { "storeblk_calls", s.storeblk_calls, 1 },
        { "bytes_loaded", s.bytes_loaded, 0 },
        { "bytes_stored", s.bytes_stored, 1 },
        { "writeouts", s.writeouts, 1 },
        { "discards", s.discards, 1 },
        { "invalidated_blocks", s.invalidated_blocks, 1 },
        { "reclaimed_blocks", s.reclaimed_blocks, 0 },
        { "errors", s.errors, 1 },
    };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        uint64_t v = ~0ull;
        int r = bft_kv(out, f[i].key, &v);
        cr_expect_eq(r, 0, "stat output lacks a '%s: N' line:\n%s", f[i].key, out);
        if (r == 0 && f[i].exact)
            cr_expect_eq(v, f[i].want, "stat %s: %llu, the ioctl says %llu", f[i].key,
                         (unsigned long long)v, (unsigned long long)f[i].want);
    }
    uint64_t v;
    cr_assert_eq(bft_kv(out, "dirty_blocks", &v), 0);
    cr_expect_eq(v, 3);
    cr_assert_eq(bft_kv(out, "size", &v), 0);
    cr_expect_eq(v, 2 * BFT_MB);
}

BFT_TEST(cli, writeout_discard_reclaim_invalidate, bft_setup_sqlite, 60)
{
    char p[PATH_MAX], num[64];
    struct bigfile_stat s;
    bft_create("c", "64K", "1M");
    bft_path(p, "c");

    /* writeout: prints the blocks and bytes */
    bft_put(p, 0, 2 * BS, 1);
    int rc = CTL("writeout", p);
    cr_assert_eq(rc, 0, "writeout: exit %d: %s", rc, err);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)(2 * BS));
    cr_expect(strstr(out, "2") && strstr(out, num),
              "writeout output should give 2 blocks and %s bytes:\n%s", num, out);

    /* --store keeps dirty; --markstored clears without storing */
    bft_put(p, 4 * BS, 10, 2);
    rc = CTL("writeout", "--store", p);
    cr_assert_eq(rc, 0, "writeout --store: exit %d: %s", rc, err);
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 1, "--store keeps the block dirty");
    rc = CTL("writeout", "--markstored", p);
    cr_assert_eq(rc, 0, "writeout --markstored: exit %d: %s", rc, err);
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 0, "--markstored cleans");

    /* discard */
    bft_put(p, 0, 100, 3);
    rc = CTL("discard", p);
    cr_assert_eq(rc, 0, "discard: exit %d: %s", rc, err);
    cr_expect(strstr(out, "1"), "discard prints the blocks dropped (1):\n%s", out);
    bft_expect(p, 0, 2 * BS, 1, "discard restored the committed data");

    /* reclaim */
    rc = CTL("reclaim", p);
    cr_assert_eq(rc, 0, "reclaim: exit %d: %s", rc, err);
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.loaded_blocks, 0);

    /* invalidate a range and a single block after SQL changes */
    bft_expect(p, 0, 2 * BS, 1, "warm the caches");
    cr_assert_eq(bft_sql_set_block(bft.db, "c", 0, BS, 5), 0);
    cr_assert_eq(bft_sql_set_block(bft.db, "c", 1, BS, 5), 0);
    cr_assert_eq(bft_sql_set_block(bft.db, "c", 4, BS, 6), 0, "block 4 was stored by --store");
    rc = CTL("invalidate", p, "0-1");
    cr_assert_eq(rc, 0, "invalidate 0-1: exit %d: %s", rc, err);
    bft_expect(p, 0, 2 * BS, 5, "blocks 0-1 after invalidate 0-1");
    rc = CTL("invalidate", p, "4");
    cr_assert_eq(rc, 0, "invalidate 4: exit %d: %s", rc, err);
    bft_expect(p, 4 * BS, BS, 6, "block 4 after invalidate 4");
}

/* Another user (uid 65534, through setpriv) with read access only: writeout
 * and discard fail with exit 1 and a message saying that write permission
 * is needed; stat still works; the owner's change is untouched. */
BFT_TEST(cli, read_only_user_cannot_writeout_or_discard, bft_setup_nomount, 60)
{
    char p[PATH_MAX];
    const char *ctl = getenv("BIGFILECTL");
    if (access("/usr/bin/setpriv", X_OK) != 0) {
        cr_log_warn("no /usr/bin/setpriv: cannot run bigfilectl as another user, skipped");
        return;
    }
    snprintf(bft.opts, sizeof(bft.opts), "allow_other");
    bft_mount();
    bft_create("f", "64K", "1M");
    bft_path(p, "f");
    cr_assert_eq(chmod(p, 0644), 0);
    bft_put_commit(p, 0, BS, 1);
    bft_put(p, 0, 100, 2);
    struct bigfile_stat s0, s;
    cr_assert_eq(bft_stat(p, &s0), 0);

    const char *cmds[] = { "writeout", "discard" };
    for (size_t i = 0; i < 2; i++) {
        const char *argv[] = { "/usr/bin/setpriv",
                               "--reuid=65534",
                               "--regid=65534",
                               "--clear-groups",
                               ctl,
                               cmds[i],
                               p,
                               NULL };
        int rc = bft_exec(out, sizeof(out), err, sizeof(err), argv, 30);
        cr_expect_eq(rc, 1, "%s as nobody: exit %d (want 1): %s", cmds[i], rc, err);
        cr_expect(strstr(err, "Permission denied") && strstr(err, "write permission"),
                  "%s as nobody says why:\n%s", cmds[i], err);
    }
    const char *argv[] = {
        "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ctl, "stat", p, NULL
    };
    int rc = bft_exec(out, sizeof(out), err, sizeof(err), argv, 30);
    cr_expect_eq(rc, 0, "stat as nobody: exit %d: %s", rc, err);
    uint64_t v = 0;
    cr_expect_eq(bft_kv(out, "dirty_blocks", &v), 0);
    cr_expect_eq(v, 1, "nobody's stat sees the owner's uncommitted change");

    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.writeouts, s0.writeouts, "nothing was committed");
    cr_expect_eq(s.discards, s0.discards, "nothing was discarded");
    cr_expect_eq(s.dirty_blocks, 1);
    bft_expect(p, 0, 100, 2, "the owner's change is intact");
}
