/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: mounts on block servers
 * (bigfilefs-protocol(7)). The daemon mounts "exec:COMMAND" with the C
 * server tests/proto/blockd (on a SQLite database of its own, DIR/blk.db)
 * and with the Python example examples/npy_store.py (a directory,
 * DIR/store): mapped reads and writes, writeout, discard, a remount (a new
 * server on the same data). Then blockd's fault switches: a server that
 * dies mid-read (EIO to read(2), SIGBUS to a mapped access, then a
 * restarted server serves again), one that hangs past -o timeout, one
 * that answers nonsense, one that dies in a writeout's commit (every
 * change stays dirty, the retry commits); the daemon keeps serving
 * throughout. A unix: server (blockd --listen) that dies and comes back:
 * the daemon connects again. -o timeout is checked before anything
 * starts. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define BS ((uint64_t)65536)
#define NBLK 8

/* How long a test waits for an event (a child ending, a restarted
 * server): only a broken daemon takes that long. */
#define WAIT_S 20

/* Where make check put the build tree (the source tree: bft harness). */
static const char *builddir(void)
{
    const char *d = getenv("BF_BUILDDIR");
    return d ? d : ".";
}

/* The file DIR/name, into buf (PATH_MAX). */
static char *dir_path(char *buf, const char *name)
{
    snprintf(buf, PATH_MAX, "%s/%s", bft.dir, name);
    return buf;
}

/* Mount "exec:" blockd on DIR/blk.db with blockd's fault switches
 * `faults` and the daemon's -o opts ("" for none). The shell command is run
 * again at each restart of the server: the faults apply to every start
 * until the test creates DIR/healed (heal()). */
static void mount_blockd(const char *faults, const char *opts)
{
    int n = snprintf(bft.db, sizeof(bft.db),
                     "exec:f='%s'; [ -e '%s/healed' ] && f=; exec '%s/tests/proto/blockd' $f "
                     "'%s/blk.db'",
                     faults, bft.dir, builddir(), bft.dir);
    cr_assert(n > 0 && (size_t)n < sizeof(bft.db), "the spec is too long");
    snprintf(bft.opts, sizeof(bft.opts), "%s", opts);
    bft_mount();
}

/* The next start of the server has no faults. */
static void heal(void)
{
    char healed[PATH_MAX];
    int fd = open(dir_path(healed, "healed"), O_WRONLY | O_CREAT, 0644);
    cr_assert_geq(fd, 0, "create %s: %s", healed, strerror(errno));
    close(fd);
}

/* Mount "exec:" the Python example npy_store.py on DIR/store. */
static void mount_npy_store(void)
{
    const char *src = getenv("BF_SRCDIR"), *py = getenv("PYTHON");
    cr_assert(src, "BF_SRCDIR is not set (run through make check)");
    int n = snprintf(bft.db, sizeof(bft.db),
                     "exec:PYTHONPATH='%s/python' PYTHONDONTWRITEBYTECODE=1 exec '%s' "
                     "'%s/examples/npy_store.py' '%s/store'",
                     src, py && py[0] ? py : "python3", src, bft.dir);
    cr_assert(n > 0 && (size_t)n < sizeof(bft.db), "the spec is too long");
    bft_mount();
}

/* ---- children: mapped accesses -------------------------------------------- */

struct map_job {
    char path[PATH_MAX];
    uint64_t off, len;
    unsigned seed; /* BFT_ZEROS: zeros */
};

/* Map the file shared and writable and write bft_pattern(seed) over [off,
 * off+len) through the mapping. 0 or a code. */
static int child_map_write(void *arg)
{
    struct map_job *j = arg;
    int fd = open(j->path, O_RDWR);
    if (fd < 0)
        return 10;
    uint8_t *m = mmap(NULL, NBLK * BS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 11;
    bft_pattern(m + j->off, j->len, j->seed, j->off);
    munmap(m, NBLK * BS);
    close(fd);
    return 0;
}

/* Map the file read-only and check [off, off+len) against the pattern: 0
 * it holds it, 1 not; killed by SIGBUS if a page cannot be read. */
static int child_map_check(void *arg)
{
    struct map_job *j = arg;
    signal(SIGBUS, SIG_DFL);
    int fd = open(j->path, O_RDONLY);
    if (fd < 0)
        return 10;
    const uint8_t *m = mmap(NULL, NBLK * BS, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 11;
    int ok = j->seed == BFT_ZEROS ? bft_is_zero(m + j->off, j->len)
                                  : bft_check_pattern(m + j->off, j->len, j->seed, j->off);
    return ok ? 0 : 1;
}

static int map_run(int (*fn)(void *), const char *path, uint64_t off, uint64_t len, unsigned seed)
{
    struct map_job j = { .off = off, .len = len, .seed = seed };
    snprintf(j.path, sizeof(j.path), "%s", path);
    return bft_run(fn, &j, WAIT_S);
}

static void expect_map_ok(const char *path, uint64_t off, uint64_t len, unsigned seed,
                          const char *what)
{
    int st = map_run(child_map_check, path, off, len, seed);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "%s: mapped read: status 0x%x (1: wrong data)", what, st);
}

/* ---- a round trip through a block server ----------------------------------- */

/* File f (64K blocks, 512K): written through a mapping and written out; a
 * later change discarded; after a remount — a new server on the same data
 * — the committed blocks are there, mapped. */
static void roundtrip(void)
{
    char p[PATH_MAX];
    bft_create("f", "64K", "512K");
    bft_path(p, "f");
    expect_map_ok(p, 0, NBLK * BS, BFT_ZEROS, "a new file");

    int st = map_run(child_map_write, p, BS, 3 * BS, 1);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "mapped write: 0x%x", st);
    struct bigfile_writeout wo;
    int r = bft_writeout(p, BFT_WO_BOTH, &wo);
    cr_assert_eq(r, 0, "writeout: %s", strerror(-r));
    cr_expect_eq(wo.blocks, 3, "the writeout stored the 3 changed blocks");

    st = map_run(child_map_write, p, 2 * BS, BS, 2);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "mapped write: 0x%x", st);
    struct bigfile_count dc;
    r = bft_discard(p, &dc);
    cr_assert_eq(r, 0, "discard: %s", strerror(-r));
    cr_expect_eq(dc.blocks, 1, "the discard dropped the 1 changed block");
    expect_map_ok(p, BS, 3 * BS, 1, "after the discard");

    bft_remount();
    bft_path(p, "f");
    cr_expect_eq(bft_size(p), (int64_t)(NBLK * BS), "the size is committed");
    expect_map_ok(p, 0, BS, BFT_ZEROS, "block 0 after the remount (a hole)");
    expect_map_ok(p, BS, 3 * BS, 1, "the committed blocks after the remount");
    expect_map_ok(p, 4 * BS, 4 * BS, BFT_ZEROS, "blocks 4..7 after the remount (holes)");
}

BFT_TEST(blockserver, c_server_map_writeout_discard_remount, bft_setup_nomount, 90)
{
    mount_blockd("", "");
    roundtrip();
}

BFT_TEST(blockserver, python_server_map_writeout_discard_remount, bft_setup_nomount, 120)
{
    mount_npy_store();
    roundtrip();
}

/* ---- failures of the server ------------------------------------------------ */

/* A committed file f: 64K blocks, blocks 0..7 of seed `seed`, through a
 * blockd without faults; then the daemon is mounted again on a blockd with
 * `faults` and the daemon's -o opts: its counts of LOADs and COMMITs start
 * at the test's own requests, and nothing is cached. */
static void committed_file_then(char *p, unsigned seed, const char *faults, const char *opts)
{
    mount_blockd("", "");
    bft_create("f", "64K", "512K");
    bft_path(p, "f");
    bft_put_commit(p, 0, NBLK * BS, seed);
    bft_assert_daemon_clean(bft_unmount(), "the unmount of the setup");
    mount_blockd(faults, opts);
}

struct read_job {
    uint64_t blk;
    unsigned seed;
};

/* read(2) of one block of bft.mnt/f: 0 it holds the pattern, 1 EIO, 2
 * other data, 3 another error. */
static int child_read(void *arg)
{
    struct read_job *j = arg;
    char p[PATH_MAX];
    uint8_t *buf = malloc(BS);
    if (!buf)
        return 3;
    int r = bft_pread(bft_path(p, "f"), buf, BS, j->blk * BS);
    return r == -EIO ? 1 : r < 0 ? 3 : bft_check_pattern(buf, BS, j->seed, j->blk * BS) ? 0 : 2;
}

/* read(2) of block blk of bft.mnt/f from another process, bounded by
 * WAIT_S: 0 it holds the pattern of seed, -EIO, -EILSEQ (other data), or
 * -EPROTO (another error, a hang, a crash). */
static int read_block(uint64_t blk, unsigned seed)
{
    struct read_job j = { .blk = blk, .seed = seed };
    int st = bft_run(child_read, &j, WAIT_S);
    if (st == -1 || !WIFEXITED(st))
        return -EPROTO;
    static const int code[] = { 0, -EIO, -EILSEQ };
    return WEXITSTATUS(st) < 3 ? code[WEXITSTATUS(st)] : -EPROTO;
}

static int block3_reads_again(void *arg)
{
    (void)arg;
    return read_block(3, 1) == 0;
}

/* The daemon's log holds `what`. */
static void expect_log(const char *what)
{
    char *log = bft_slurp(bft.log);
    cr_expect(log && strstr(log, what), "the daemon's log says \"%s\":\n%s", what, log ? log : "");
    free(log);
}

/* After a failure: the daemon still runs, a (restarted) server serves the
 * block again, read and mapped. */
static void expect_recovery(const char *p)
{
    cr_expect(bft_is_fuse(bft.mnt) && !bft_exited(bft.daemon), "the daemon keeps serving");
    cr_expect(bft_wait_for(block3_reads_again, NULL, WAIT_S), "the server is back");
    cr_expect_eq(bft_reclaim(p, NULL), 0);
    expect_map_ok(p, 0, NBLK * BS, 1, "every block, mapped, once the server is back");
}

/* f committed, then blockd started with `faults` (every start until
 * heal()) that make its LOADs fail: read(2) of a block gets EIO (the
 * kernel tries a failed read twice: two starts fail) and a mapped access
 * SIGBUS, with the daemon's log saying `why` (and `why2`); once healed, a
 * restarted server serves again. */
static void failing_loads_then_recovery(const char *faults, const char *opts, const char *why,
                                        const char *why2)
{
    char p[PATH_MAX];
    committed_file_then(p, 1, faults, opts);
    cr_expect_eq(read_block(3, 1), -EIO, "%s: read(2) gets EIO", faults);
    int st = map_run(child_map_check, p, 3 * BS, BS, 1);
    cr_expect(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS,
              "%s: a mapped access (while the server fails, or waits to restart): status 0x%x, "
              "want SIGBUS",
              faults, st);
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_geq(s.errors, 2, "STAT errors counts the failed loads");
    expect_log(why);
    expect_log(why2);
    heal();
    expect_recovery(p);
}

BFT_TEST(blockserver, server_dying_mid_read_gives_eio_and_sigbus_then_is_restarted,
         bft_setup_nomount, 90)
{
    /* every start of blockd dies at its first LOAD */
    failing_loads_then_recovery("--crash-load 1", "", "block server failed",
                                "exited with status 3");
}

BFT_TEST(blockserver, hung_server_times_out_with_eio_then_is_restarted, bft_setup_nomount, 90)
{
    /* without -o timeout=1 the read would wait the default 30 s: longer
     * than bft_run waits (WAIT_S), so the test fails */
    failing_loads_then_recovery("--hang-load 1", "timeout=1", "no answer to LOAD", "within 1 s");
}

BFT_TEST(blockserver, garbage_from_the_server_is_a_clear_error, bft_setup_nomount, 90)
{
    /* a reply to LOAD of the wrong length */
    failing_loads_then_recovery("--junk-load 1:len", "", "block server failed",
                                "answered LOAD with 2 bytes");
}

static int writeout_succeeds(void *path)
{
    return bft_writeout(path, BFT_WO_BOTH, NULL) == 0;
}

BFT_TEST(blockserver, server_dying_in_a_commit_keeps_every_change_dirty, bft_setup_nomount, 90)
{
    char p[PATH_MAX];
    committed_file_then(p, 1, "--crash-commit 1", "");

    int st = map_run(child_map_write, p, 2 * BS, 3 * BS, 2);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "mapped write: 0x%x", st);
    struct bigfile_writeout wo;
    int r = bft_writeout(p, BFT_WO_BOTH, &wo);
    cr_expect_eq(r, -EIO, "a writeout whose commit dies: %s, want EIO", strerror(-r));
    struct bigfile_stat s;
    cr_assert_eq(bft_stat(p, &s), 0);
    cr_expect_eq(s.dirty_blocks, 3, "every change stays dirty (%llu)",
                 (unsigned long long)s.dirty_blocks);
    bft_expect(p, 2 * BS, 3 * BS, 2, "the changes, after the failed writeout");

    heal();
    cr_expect(bft_wait_for(writeout_succeeds, p, WAIT_S), "the retry, on the restarted server");
    bft_remount();
    bft_path(p, "f");
    bft_expect(p, 0, 2 * BS, 1, "blocks 0..1 after the retry and a remount");
    bft_expect(p, 2 * BS, 3 * BS, 2, "the changes after the retry and a remount");
    bft_expect(p, 5 * BS, 3 * BS, 1, "blocks 5..7 after the retry and a remount");
}

/* ---- unix: a server that runs on its own ---------------------------------- */

/* Run blockd --listen DIR/sock DIR/blk.db (it dies with the test). */
static int child_blockd_listen(void *arg)
{
    char blockd[PATH_MAX], sock[PATH_MAX], db[PATH_MAX];
    (void)arg;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    snprintf(blockd, sizeof(blockd), "%s/tests/proto/blockd", builddir());
    execl(blockd, "blockd", "--listen", dir_path(sock, "sock"), dir_path(db, "blk.db"),
          (char *)NULL);
    return 127;
}

/* Whether DIR/sock is a listening socket (/proc/net/unix: flags
 * __SO_ACCEPTCON). */
static int sock_listens(void *arg)
{
    char sock[PATH_MAX], line[PATH_MAX + 128];
    int found = 0;
    (void)arg;
    dir_path(sock, "sock");
    FILE *f = fopen("/proc/net/unix", "r");
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof(line), f)) {
        char flags[16] = "", path[PATH_MAX] = "";
        if (sscanf(line, "%*s %*s %*s %15s %*s %*s %*s %4095s", flags, path) == 2)
            found = strcmp(path, sock) == 0 && strcmp(flags, "00010000") == 0;
    }
    fclose(f);
    return found;
}

static pid_t start_blockd_listen(void)
{
    pid_t pid = bft_spawn(child_blockd_listen, NULL);
    cr_assert_gt(pid, 0);
    cr_assert(bft_wait_for(sock_listens, NULL, WAIT_S), "blockd listens on DIR/sock");
    return pid;
}

static void stop_blockd(pid_t pid)
{
    kill(pid, SIGKILL);
    cr_assert_neq(bft_wait_pid(pid, WAIT_S), -1, "blockd ended");
}

BFT_TEST(blockserver, unix_server_mount_and_reconnect, bft_setup_nomount, 90)
{
    char p[PATH_MAX];
    pid_t srv = start_blockd_listen();
    /* relative: taken from the daemon's directory at the start */
    cr_assert_eq(chdir(bft.dir), 0);
    snprintf(bft.db, sizeof(bft.db), "unix:sock");
    bft_mount();
    bft_create("f", "64K", "512K");
    bft_path(p, "f");
    bft_put_commit(p, 0, NBLK * BS, 1);
    cr_assert_eq(bft_reclaim(p, NULL), 0);

    stop_blockd(srv);
    cr_expect_eq(read_block(3, 1), -EIO, "read(2) while no server listens: EIO");
    srv = start_blockd_listen();
    cr_expect(bft_wait_for(block3_reads_again, NULL, WAIT_S), "the daemon connects again");
    expect_map_ok(p, 0, NBLK * BS, 1, "every block, through the new connection");
    cr_assert_eq(chdir("/"), 0);
    bft_assert_daemon_clean(bft_unmount(), "the unmount");
    stop_blockd(srv);
}

/* ---- -o timeout ------------------------------------------------------------ */

/* The daemon refuses -o opts on bft.db: exit 2, the log says `why`, no
 * server was started (blockd --count would have written DIR/count). */
static void expect_refusal(const char *opts, const char *why)
{
    char count[PATH_MAX];
    const char *argv[] = { "-f", "-o", opts, bft.db, bft.mnt, NULL };
    int st = bft_daemon_run(10, argv);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2,
              "-o %s on %s: the daemon must exit 2 (status 0x%x)", opts, bft.db, st);
    cr_expect(!bft_is_fuse(bft.mnt), "-o %s: nothing is mounted", opts);
    cr_expect_neq(access(dir_path(count, "count"), F_OK), 0, "-o %s: a server was started", opts);
    expect_log(why);
}

BFT_TEST(blockserver, timeout_option_is_checked_before_anything_starts, bft_setup_nomount, 60)
{
    int n = snprintf(bft.db, sizeof(bft.db),
                     "exec:exec '%s/tests/proto/blockd' --count '%s/count' mem:", builddir(),
                     bft.dir);
    cr_assert(n > 0 && (size_t)n < sizeof(bft.db), "the spec is too long");
    expect_refusal("timeout=0", "bad timeout '0'");
    expect_refusal("timeout=1s", "bad timeout '1s'");
    expect_refusal("timeout=86401", "bad timeout '86401'");
    snprintf(bft.db, sizeof(bft.db), "%s/db", bft.dir);
    expect_refusal("timeout=5", "-o timeout is for block servers");
    struct stat sb;
    cr_expect_neq(stat(bft.db, &sb), 0, "no database was created");
}
