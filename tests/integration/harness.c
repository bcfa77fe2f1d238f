/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: the harness (see harness.h). */
#include "config.h"

#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "fs/test_inject.h"

struct bft_fixture bft;

/* The schema of src/backends/sqlite.c (docs/COHERENCE.md section 2):
 * replace the content of the current version of one stored block, behind
 * the daemons' backs (no commit-log row: no daemon learns of it): its row
 * becomes a blob of the new data, its extent in the block file (if any)
 * goes. ?1 file name, ?2 block number, ?3 data. */
#define BFT_SQL_CURRENT                                           \
    "(SELECT content FROM blockmap WHERE superseded IS NULL AND " \
    "content > 0 AND blk = ?2 AND file = (SELECT id FROM files WHERE name = ?1))"
static const char *const set_block_sql[] = {
    "UPDATE contents SET data = ?3 WHERE id = " BFT_SQL_CURRENT,
    "DELETE FROM extents WHERE id = " BFT_SQL_CURRENT,
};

/* The current stored blocks of every file, as the tests ask about them
 * (schema 1 had a table of them): one row per block holding data, in a
 * TEMP VIEW of each connection the harness opens on a schema-2 database.
 * A content in the block file is read from it (bft_blockfile), schema-1
 * data (upgraded in place) from legacy_blocks. */
#define BFT_SQL_BLOCKS_VIEW                                              \
    "CREATE TEMP VIEW blocks(file, blk, data) AS SELECT file, blk, "     \
    "(SELECT data FROM contents WHERE id = content) FROM main.blockmap " \
    "WHERE superseded IS NULL AND content > 0"
#define BFT_SQL_BLOCKS_VIEW_EXTENTS                                                    \
    "CREATE TEMP VIEW blocks(file, blk, data) AS SELECT file, blk, "                   \
    "coalesce((SELECT bft_blockfile(off, len) FROM main.extents WHERE id = content), " \
    "(SELECT data FROM contents WHERE id = content)) FROM main.blockmap "              \
    "WHERE superseded IS NULL AND content > 0"
#define BFT_SQL_BLOCKS_LEGACY                                       \
    " UNION ALL SELECT m.file, m.blk, l.data FROM main.blockmap m " \
    "JOIN main.legacy_blocks l ON l.rowid = -m.content "            \
    "WHERE m.superseded IS NULL AND m.content < 0"

/* ---- small utilities ----------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bft_wait_for(int (*cond)(void *arg), void *arg, double timeout_s)
{
    double end = now_s() + timeout_s;
    for (;;) {
        if (cond(arg))
            return 1;
        if (now_s() > end)
            return 0;
        sleep_ms(1);
    }
}

struct reap {
    pid_t pid;
    int st; /* its wait status, or -1 */
    int err;
};

/* bft_wait_for's condition: pid was reaped (or cannot be). */
static int reaped(void *arg)
{
    struct reap *w = arg;
    pid_t r = waitpid(w->pid, &w->st, WNOHANG);
    if (r == w->pid)
        return 1;
    if (r < 0 && errno != EINTR) {
        w->err = 1;
        return 1;
    }
    return 0;
}

int bft_wait_pid(pid_t pid, double timeout_s)
{
    struct reap w = { pid, -1, 0 };
    if (!bft_wait_for(reaped, &w, timeout_s) || w.err)
        return -1;
    return w.st;
}

int bft_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* Log the stacks of every thread of pid, a daemon that does not exit, with
 * gdb where the machine has it (bounded: gdb gets 60 s): what its threads
 * wait for is the one clue a rare hang leaves before it is killed. */
static void log_stacks(pid_t pid)
{
    char cmd[192];
    snprintf(cmd, sizeof(cmd),
             "command -v gdb >/dev/null && timeout 60 gdb -q -nx -batch -p %d "
             "-ex 'thread apply all bt' 2>&1",
             (int)pid);
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    size_t cap = (size_t)1 << 20, n = 0, k;
    char *buf = malloc(cap);
    while (buf && n + 1 < cap && (k = fread(buf + n, 1, cap - 1 - n, p)) > 0)
        n += k;
    pclose(p);
    if (buf && n > 0) {
        buf[n] = '\0';
        cr_log_error("daemon %d does not exit; its threads:\n%s", (int)pid, buf);
    }
    free(buf);
}

/* Wait for pid; escalate SIGTERM then SIGKILL (logging its threads'
 * stacks first). */
static int wait_or_kill(pid_t pid, double timeout_s)
{
    int st = bft_wait_pid(pid, timeout_s);
    if (st != -1)
        return st;
    kill(pid, SIGTERM);
    st = bft_wait_pid(pid, 5);
    if (st != -1)
        return st;
    log_stacks(pid);
    kill(pid, SIGKILL);
    return bft_wait_pid(pid, 10);
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

int bft_is_fuse(const char *path)
{
    struct statfs sf;
    return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == BFT_FUSE_SUPER_MAGIC;
}

/* ---- aborting a hung mount ------------------------------------------------ */

#define FUSECTL_DIR "/sys/fs/fuse/connections"
#define FUSECTL_SUPER_MAGIC 0x65735543

/* Mount fusectl in the test's namespace unless it is there. */
static void mount_fusectl(void)
{
    struct statfs sf;
    if (statfs(FUSECTL_DIR, &sf) == 0 && (unsigned long)sf.f_type == FUSECTL_SUPER_MAGIC)
        return;
    if (mount("fusectl", FUSECTL_DIR, "fusectl", 0, NULL) < 0)
        fprintf(stderr,
                "harness: cannot mount fusectl on %s: %s (a hung mount cannot be aborted)\n",
                FUSECTL_DIR, strerror(errno));
}

/* Whether FUSE connection conn is the file system mounted at mnt now
 * (/proc/self/mountinfo: its mount point and device; reading it never
 * waits for a FUSE daemon). A connection's number is its device's, which
 * the kernel hands to the next mount as soon as it is free: a test's
 * daemon that outlives its mount (umount -l) has a number that may be
 * another test's mount by now. */
static bool conn_mounted_at(unsigned conn, const char *mnt)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096], point[4096];
    unsigned maj, min;
    bool found = false;
    if (!f)
        return false;
    while (!found && fgets(line, sizeof(line), f))
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, point) == 3)
            found = strcmp(point, mnt) == 0 && ((maj << 20) | min) == conn;
    fclose(f);
    return found;
}

/* Write "1" to the abort file of FUSE connection conn if it is still the
 * mount at mnt (conn_mounted_at; else the daemon, killed, ends it
 * itself). 0 or -1 (errno ESTALE: not that mount any more). */
static int abort_conn(unsigned conn, const char *mnt)
{
    char path[128];
    if (!conn_mounted_at(conn, mnt)) {
        errno = ESTALE;
        return -1;
    }
    snprintf(path, sizeof(path), FUSECTL_DIR "/%u/abort", conn);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = write(fd, "1", 1) == 1 ? 0 : -1;
    close(fd);
    return r;
}

/* One daemon of the test: mount 0 is the fixture's own (bft.mnt,
 * bft.daemon, ...), mounts 1.. are bft.other[m - 1]. */
struct dref {
    char *mnt, *log, *opts;
    pid_t *pid;
    unsigned *conn;
};

static struct dref dref(int m)
{
    if (m == 0)
        return (struct dref){ bft.mnt, bft.log, bft.opts, &bft.daemon, &bft.conn };
    struct bft_other *o = &bft.other[m - 1];
    return (struct dref){ o->mnt, o->log, o->opts, &o->daemon, &o->conn };
}

int bft_abort_mount(void)
{
    int ret = -1;
    for (int m = 0; m < BFT_MAX_MOUNTS; m++) {
        struct dref d = dref(m);
        if (!*d.pid || !*d.conn)
            continue;
        int r = abort_conn(*d.conn, d.mnt);
        fprintf(stderr, "harness: aborting the FUSE connection %u of %s: %s\n", *d.conn, d.mnt,
                r == 0 ? "done" : strerror(errno));
        if (ret != 0)
            ret = r;
    }
    return ret;
}

/* What the watchdog must abort if the test process dies: the running
 * daemons and their connections (pid 0: none). */
/* One write(2) to the watchdog's pipe, atomic (within PIPE_BUF). */
struct watch_msg {
    pid_t pid[BFT_MAX_MOUNTS];
    unsigned conn[BFT_MAX_MOUNTS];
    char mnt[BFT_MAX_MOUNTS][128]; /* cut short: never matches, never aborted */
};
_Static_assert(sizeof(struct watch_msg) <= PIPE_BUF, "the watchdog's message is one write");

static void watchdog_main(int rd)
{
    struct watch_msg cur, m;
    ssize_t n;
    memset(&cur, 0, sizeof(cur));
    while ((n = read(rd, &m, sizeof(m))) == (ssize_t)sizeof(m) || (n < 0 && errno == EINTR))
        if (n > 0)
            cur = m;
    /* The test process is gone (or done). A daemon still alive now is
     * stuck or orphaned: abort its connection so that it can die. */
    for (int i = 0; i < BFT_MAX_MOUNTS; i++)
        if (cur.pid[i] > 0 && kill(cur.pid[i], 0) == 0) {
            abort_conn(cur.conn[i], cur.mnt[i]);
            kill(cur.pid[i], SIGKILL);
        }
    _exit(0);
}

/* Tell the watchdog (started at the first mount) about the daemons. */
static void watch_send(void)
{
    struct watch_msg m;
    memset(&m, 0, sizeof(m));
    for (int i = 0; i < BFT_MAX_MOUNTS; i++) {
        struct dref d = dref(i);
        m.pid[i] = *d.pid;
        m.conn[i] = *d.conn;
        if (strlen(d.mnt) < sizeof(m.mnt[i]))
            strcpy(m.mnt[i], d.mnt);
    }
    if (bft.watchdog < 0) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
            return;
        fflush(NULL);
        pid_t w = fork();
        if (w == 0) {
            close(p[1]);
            watchdog_main(p[0]);
        }
        close(p[0]);
        if (w < 0) {
            close(p[1]);
            return;
        }
        bft.watchdog = p[1];
    }
    if (write(bft.watchdog, &m, sizeof(m)) != (ssize_t)sizeof(m))
        fprintf(stderr, "harness: cannot reach the watchdog: %s\n", strerror(errno));
}

static int end_holds(void);

/* ---- fixtures ------------------------------------------------------------- */

static void prepare(void)
{
    memset(&bft, 0, sizeof(bft));
    bft.watchdog = -1;
    /* A mount namespace of our own: nothing leaks to the host if we die. */
    cr_assert_eq(unshare(CLONE_NEWNS), 0, "unshare(CLONE_NEWNS): %s", strerror(errno));
    cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "make / private: %s",
                 strerror(errno));
    mount_fusectl();
    snprintf(bft.dir, sizeof(bft.dir), "/tmp/bft-XXXXXX");
    cr_assert_not_null(mkdtemp(bft.dir), "mkdtemp: %s", strerror(errno));
    snprintf(bft.db, sizeof(bft.db), "%s/db", bft.dir);
    snprintf(bft.mnt, sizeof(bft.mnt), "%s/mnt", bft.dir);
    snprintf(bft.log, sizeof(bft.log), "%s/daemon.log", bft.dir);
    cr_assert_eq(mkdir(bft.mnt, 0755), 0, "mkdir %s: %s", bft.mnt, strerror(errno));
    /* Tests that setuid need to traverse the dir. */
    chmod(bft.dir, 0755);
    cr_assert(getenv("BIGFILEFS") && getenv("BIGFILECTL"),
              "BIGFILEFS and BIGFILECTL must be set (run under make check)");
}

void bft_setup_nomount(void)
{
    prepare();
}

void bft_setup_sqlite(void)
{
    prepare();
    bft_mount();
}

void bft_setup_mem(void)
{
    prepare();
    snprintf(bft.db, sizeof(bft.db), "mem:");
    bft.is_mem = 1;
    bft_mount();
}

void bft_setup_inject(void)
{
    prepare();
    snprintf(bft.db, sizeof(bft.db), "mem:");
    snprintf(bft.opts, sizeof(bft.opts), "test_inject");
    bft.is_mem = 1;
    bft_mount();
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static int unmount_m(int m);
static void assert_clean_m(int m, int st, const char *what);

void bft_finish(void)
{
    int held = end_holds();
    cr_expect(held == -1 || (WIFEXITED(held) && WEXITSTATUS(held) == 0),
              "calls were still held at the end of the test (status 0x%x): released", held);
    for (int m = BFT_MAX_MOUNTS - 1; m >= 0; m--) {
        int st = unmount_m(m);
        if (st != -1)
            assert_clean_m(m, st, "end of test");
    }
}

void bft_teardown(void)
{
    if (!bft.dir[0])
        return;
    end_holds(); /* after a failed assertion: let the held calls end */
    for (int m = BFT_MAX_MOUNTS - 1; m >= 0; m--) {
        struct dref d = dref(m);
        /* a daemon a test stopped (SIGSTOP) must run to exit */
        if (*d.pid)
            kill(*d.pid, SIGCONT);
        int st = unmount_m(m);
        if (d.mnt[0])
            umount2(d.mnt, MNT_DETACH); /* whatever is left, live or dead */
        if (st != -1)
            assert_clean_m(m, st, "teardown");
    }
    if (bft.pgdb[0] && !(getenv("BFT_KEEP") && *getenv("BFT_KEEP")))
        bft_pg_drop();
    if (getenv("BFT_KEEP") && *getenv("BFT_KEEP"))
        fprintf(stderr, "harness: BFT_KEEP: left %s%s%s\n", bft.dir,
                bft.pgdb[0] ? " and database " : "", bft.pgdb);
    else
        nftw(bft.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    bft.dir[0] = 0;
    if (bft.watchdog >= 0) {
        close(bft.watchdog); /* the watchdog exits: no daemon left */
        bft.watchdog = -1;
    }
}

/* ---- the daemon ------------------------------------------------------------ */

static pid_t spawn_daemon(const char *const *argv, const char *log, int truncate_log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* child */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | (truncate_log ? O_TRUNC : 0), 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    execv(argv[0], (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* bft_wait_for's condition: daemon *arg mounted, or ended. */
static int mounted_or_exited(void *arg)
{
    struct dref *d = arg;
    return bft_is_fuse(d->mnt) || bft_exited(*d->pid);
}

static void mount_m(int m)
{
    struct dref d = dref(m);
    const char *argv[8];
    int n = 0;
    argv[n++] = getenv("BIGFILEFS");
    argv[n++] = "-f";
    if (d.opts[0]) {
        argv[n++] = "-o";
        argv[n++] = d.opts;
    }
    char db[sizeof(bft.db) + 32];
    argv[n++] = bft_db_of(m, db, sizeof(db));
    argv[n++] = d.mnt;
    argv[n] = NULL;

    *d.pid = spawn_daemon(argv, d.log, 0);
    cr_assert_gt(*d.pid, 0, "fork: %s", strerror(errno));
    if (!bft_wait_for(mounted_or_exited, &d, 10)) {
        kill(*d.pid, SIGKILL);
        bft_wait_pid(*d.pid, 5);
        *d.pid = 0;
        cr_assert_fail("bigfilefs did not mount %s within 10 s", d.mnt);
    }
    int ds;
    if (!bft_is_fuse(d.mnt) && waitpid(*d.pid, &ds, WNOHANG) == *d.pid) {
        *d.pid = 0;
        char *log = bft_slurp(d.log);
        cr_log_error("daemon log:\n%s", log ? log : "(none)");
        free(log);
        cr_assert_fail("bigfilefs exited before mounting (status 0x%x)", ds);
    }
    struct stat st;
    cr_assert_eq(stat(d.mnt, &st), 0, "stat %s: %s", d.mnt, strerror(errno));
    /* The connection's number is the kernel's dev_t of the mount. */
    *d.conn = (major(st.st_dev) << 20) | minor(st.st_dev);
    watch_send();
}

void bft_mount(void)
{
    mount_m(0);
}

/* Daemon m was reaped: nothing for the watchdog to abort. */
static void daemon_gone(int m)
{
    struct dref d = dref(m);
    *d.pid = 0;
    *d.conn = 0;
    watch_send();
}

static int unmount_m(int m)
{
    struct dref d = dref(m);
    if (!*d.pid)
        return -1;
    if (bft_is_fuse(d.mnt) && umount2(d.mnt, 0) < 0) {
        /* busy (a process of the test still uses it): the connection would
         * live on after a lazy unmount, so ask the daemon to stop too */
        umount2(d.mnt, MNT_DETACH);
        kill(*d.pid, SIGTERM);
    }
    int st = wait_or_kill(*d.pid, 10);
    daemon_gone(m);
    /* a daemon that died without unmounting leaves a dead mount, on which
     * statfs fails (ENOTCONN) so bft_is_fuse cannot see it: detach anyway */
    umount2(d.mnt, MNT_DETACH);
    return st;
}

int bft_unmount(void)
{
    return unmount_m(0);
}

static int signal_m(int m, int sig, int *still_mounted)
{
    struct dref d = dref(m);
    if (!*d.pid)
        return -1;
    kill(*d.pid, sig);
    int st = wait_or_kill(*d.pid, 10);
    daemon_gone(m);
    struct statfs sf;
    /* still mounted: a live FUSE mount, or a dead one (ENOTCONN) */
    int mounted = bft_is_fuse(d.mnt) || (statfs(d.mnt, &sf) < 0 && errno == ENOTCONN);
    if (still_mounted)
        *still_mounted = mounted;
    umount2(d.mnt, MNT_DETACH);
    return st;
}

int bft_sigterm(int *still_mounted)
{
    return signal_m(0, SIGTERM, still_mounted);
}

int bft_sigterm_sig(int sig, int *still_mounted)
{
    return signal_m(0, sig, still_mounted);
}

static void assert_clean_m(int m, int st, const char *what)
{
    struct dref d = dref(m);
    char *log = bft_slurp(d.log);
    int sanitizer = log && (strstr(log, "ERROR: AddressSanitizer") ||
                            strstr(log, "ERROR: LeakSanitizer") || strstr(log, "runtime error:") ||
                            strstr(log, "WARNING: ThreadSanitizer"));
    int clean = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && !sanitizer;
    if (!clean)
        cr_log_error("daemon log of %s:\n%s", d.mnt, log ? log : "(none)");
    free(log);
    cr_expect(st != -1, "%s: the daemon of %s did not exit", what, d.mnt);
    if (st != -1)
        cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "%s: the daemon of %s did not exit cleanly (%s %d)", what, d.mnt,
                  WIFEXITED(st) ? "exit status" : "signal",
                  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    cr_expect(!sanitizer, "%s: sanitizer report in the log of the daemon of %s", what, d.mnt);
}

void bft_assert_daemon_clean(int st, const char *what)
{
    assert_clean_m(0, st, what);
}

void bft_remount(void)
{
    int st = bft_unmount();
    bft_assert_daemon_clean(st, "remount");
    cr_assert(!bft_is_fuse(bft.mnt), "still mounted after unmount");
    bft_mount();
}

int bft_daemon_run(int timeout_s, const char *const *argv)
{
    const char *full[16];
    int n = 0;
    full[n++] = getenv("BIGFILEFS");
    for (int i = 0; argv[i] && n < 15; i++)
        full[n++] = argv[i];
    full[n] = NULL;
    pid_t pid = spawn_daemon(full, bft.log, 1);
    if (pid < 0)
        return -1;
    int st = bft_wait_pid(pid, timeout_s);
    if (st == -1) {
        kill(pid, SIGKILL);
        st = bft_wait_pid(pid, 5);
        if (bft_is_fuse(bft.mnt))
            umount2(bft.mnt, MNT_DETACH);
    }
    return st;
}

/* ---- several daemons on one database ------------------------------------------ */

void bft_mount_shared(int n)
{
    snprintf(bft.opts, sizeof(bft.opts), "shared");
    bft_mount();
    for (int m = 1; m < n; m++)
        bft_mount_on(m, "shared");
}

void bft_setup_shared2(void)
{
    prepare();
    bft_mount_shared(2);
}

void bft_setup_shared3(void)
{
    prepare();
    bft_mount_shared(3);
}

void bft_mount_on(int m, const char *opts)
{
    cr_assert(m > 0 && m < BFT_MAX_MOUNTS, "no mount %d", m);
    struct bft_other *o = &bft.other[m - 1];
    cr_assert_eq(o->daemon, 0, "mount %d runs already", m);
    char dir[sizeof(bft.dir)];
    memcpy(dir, bft.dir, sizeof(dir));
    snprintf(o->mnt, sizeof(o->mnt), "%s/mnt%d", dir, m);
    snprintf(o->log, sizeof(o->log), "%s/daemon%d.log", dir, m);
    snprintf(o->opts, sizeof(o->opts), "%s", opts ? opts : "");
    if (mkdir(o->mnt, 0755) < 0)
        cr_assert_eq(errno, EEXIST, "mkdir %s: %s", o->mnt, strerror(errno));
    mount_m(m);
}

int bft_unmount_on(int m)
{
    return unmount_m(m);
}

void bft_assert_clean_on(int m, int st, const char *what)
{
    assert_clean_m(m, st, what);
}

int bft_kill_on(int m, int sig)
{
    return signal_m(m, sig, NULL);
}

static int sql_writable_now(const char *db);

/* bft_wait_for's condition: every thread of process *arg is stopped (or
 * the process is gone). */
static int all_threads_stopped(void *arg)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)*(pid_t *)arg);
    DIR *d = opendir(dir);
    if (!d)
        return 1;
    int all = 1;
    struct dirent *e;
    while (all && (e = readdir(d))) {
        char path[sizeof(dir) + sizeof(e->d_name) + 8], buf[512];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
        int fd = open(path, O_RDONLY);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
        if (fd >= 0)
            close(fd);
        if (n <= 0)
            continue; /* the thread ended */
        buf[n] = 0;
        const char *st = strrchr(buf, ')'); /* "pid (comm) S ..." */
        all = st && (st[2] == 'T' || st[2] == 't');
    }
    closedir(d);
    return all;
}

/* bft_wait_for's condition of bft_stop_quiet: daemon *arg stopped, and
 * holding none of the locks; else running again. */
static int stopped_quiet(void *arg)
{
    int m = *(int *)arg;
    pid_t pid = bft_daemon_of(m);
    if (kill(pid, SIGSTOP) < 0)
        return 1; /* bft_stop_quiet says so */
    if (bft_wait_for(all_threads_stopped, &pid, 10) &&
        (bft_db_is_pg(bft.db) ? bft_pg_quiet(m) : sql_writable_now(bft.db)) == 1)
        return 1;
    kill(pid, SIGCONT);
    return 0;
}

int bft_stop_quiet(int m)
{
    int ok = bft_wait_for(stopped_quiet, &m, 20);
    return ok && kill(bft_daemon_of(m), 0) == 0 ? 0 : -1;
}

const char *bft_mnt_of(int m)
{
    return dref(m).mnt;
}

pid_t bft_daemon_of(int m)
{
    return *dref(m).pid;
}

char *bft_path_on(int m, char *buf, const char *name)
{
    snprintf(buf, PATH_MAX, "%s/%s", dref(m).mnt, name);
    return buf;
}

/* ---- paths and files ------------------------------------------------------ */

char *bft_path(char *buf, const char *name)
{
    size_t l = strlen(bft.mnt);
    memcpy(buf, bft.mnt, l);
    buf[l] = '/';
    snprintf(buf + l + 1, PATH_MAX - l - 1, "%s", name);
    return buf;
}

char *bft_slurp(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    return buf;
}

void bft_create(const char *name, const char *blksize, const char *size)
{
    char path[PATH_MAX], bs[64], sz[64], err[1024];
    const char *args[6];
    int n = 0;
    bft_path(path, name);
    if (blksize) {
        snprintf(bs, sizeof(bs), "--blksize=%s", blksize);
        args[n++] = bs;
    }
    if (size) {
        snprintf(sz, sizeof(sz), "--size=%s", size);
        args[n++] = sz;
    }
    args[n++] = path;
    args[n] = NULL;
    int rc = bft_ctl(NULL, 0, err, sizeof(err), "create", n > 0 ? args[0] : NULL,
                     n > 1 ? args[1] : NULL, n > 2 ? args[2] : NULL, (char *)NULL);
    cr_assert_eq(rc, 0, "bigfilectl create %s failed (%d): %s", path, rc, err);
}

int bft_pwrite(const char *path, const void *buf, size_t len, uint64_t off)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -errno;
    size_t done = 0;
    int ret = 0;
    while (done < len) {
        ssize_t r = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            break;
        }
        done += (size_t)r;
    }
    if (close(fd) < 0 && ret == 0)
        ret = -errno;
    return ret;
}

int bft_pread(const char *path, void *buf, size_t len, uint64_t off)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    size_t done = 0;
    int ret = 0;
    while (done < len) {
        ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            break;
        }
        if (r == 0) {
            ret = -ENODATA; /* short: EOF */
            break;
        }
        done += (size_t)r;
    }
    close(fd);
    return ret;
}

static uint8_t pattern_byte(unsigned seed, uint64_t off)
{
    uint64_t x = off * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull + (off >> 12);
    x ^= x >> 29;
    return (uint8_t)(x | 1); /* never zero: distinguishable from holes */
}

void bft_pattern(void *buf, size_t len, unsigned seed, uint64_t off)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = pattern_byte(seed, off + i);
}

int bft_check_pattern(const void *buf, size_t len, unsigned seed, uint64_t off)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != pattern_byte(seed, off + i))
            return 0;
    return 1;
}

int bft_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return 0;
    return 1;
}

void bft_put(const char *path, uint64_t off, size_t len, unsigned seed)
{
    void *buf = malloc(len);
    bft_pattern(buf, len, seed, off);
    int r = bft_pwrite(path, buf, len, off);
    free(buf);
    cr_assert_eq(r, 0, "pwrite %s [%llu, +%zu): %s", path, (unsigned long long)off, len,
                 strerror(-r));
}

void bft_put_commit(const char *path, uint64_t off, size_t len, unsigned seed)
{
    bft_put(path, off, len, seed);
    int r = bft_writeout(path, BFT_WO_BOTH, NULL);
    cr_assert_eq(r, 0, "writeout %s: %s", path, strerror(-r));
}

void bft_expect(const char *path, uint64_t off, size_t len, unsigned seed, const char *what)
{
    uint8_t *buf = malloc(len);
    memset(buf, 0xEE, len);
    int r = bft_pread(path, buf, len, off);
    int ok = r == 0 &&
             (seed == BFT_ZEROS ? bft_is_zero(buf, len) : bft_check_pattern(buf, len, seed, off));
    size_t bad = 0;
    if (r == 0 && !ok) {
        uint8_t want = 0;
        for (bad = 0; bad < len; bad++) {
            if (seed != BFT_ZEROS)
                bft_pattern(&want, 1, seed, off + bad);
            if (buf[bad] != want)
                break;
        }
    }
    uint8_t got = r == 0 && bad < len ? buf[bad] : 0;
    free(buf);
    cr_assert_eq(r, 0, "%s: pread %s [%llu, +%zu): %s", what, path, (unsigned long long)off, len,
                 strerror(-r));
    cr_assert(ok, "%s: %s [%llu, +%zu) does not hold %s: first difference at +%zu (0x%02x)", what,
              path, (unsigned long long)off, len, seed == BFT_ZEROS ? "zeros" : "the expected data",
              bad, got);
}

int64_t bft_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    return st.st_size;
}

/* ---- ioctls ----------------------------------------------------------------- */

int bft_ioctl(const char *path, unsigned long req, void *arg)
{
    /* The requests that change the file need it open for writing (EBADF
     * otherwise); on a ro mount (EROFS at open) send them through a
     * read-only fd, so that the daemon's own answer is what is tested. */
    int changes = req == BIGFILE_IOC_WRITEOUT || req == BIGFILE_IOC_WRITEOUT2 ||
                  req == BIGFILE_IOC_DISCARD || req == BIGFILE_IOC_INVALIDATE ||
                  req == BIGFILE_IOC_SETBLKSIZE;
    int fd = open(path, changes ? O_RDWR : O_RDONLY);
    if (fd < 0 && changes && errno == EROFS)
        fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    int r = ioctl(fd, req, arg);
    int ret = r < 0 ? -errno : 0;
    close(fd);
    return ret;
}

int bft_writeout(const char *path, uint32_t flags, struct bigfile_writeout *out)
{
    struct bigfile_writeout w = { .flags = flags };
    int r = bft_ioctl(path, BIGFILE_IOC_WRITEOUT, &w);
    if (out)
        *out = w;
    return r;
}

int bft_discard(const char *path, struct bigfile_count *out)
{
    struct bigfile_count c = { 0 };
    int r = bft_ioctl(path, BIGFILE_IOC_DISCARD, &c);
    if (out)
        *out = c;
    return r;
}

int bft_invalidate(const char *path, uint64_t start, uint64_t count)
{
    struct bigfile_range rg = { .start = start, .count = count };
    return bft_ioctl(path, BIGFILE_IOC_INVALIDATE, &rg);
}

int bft_stat(const char *path, struct bigfile_stat *out)
{
    memset(out, 0, sizeof(*out));
    return bft_ioctl(path, BIGFILE_IOC_STAT, out);
}

int bft_reclaim(const char *path, struct bigfile_count *out)
{
    struct bigfile_count c = { 0 };
    int r = bft_ioctl(path, BIGFILE_IOC_RECLAIM, &c);
    if (out)
        *out = c;
    return r;
}

/* ---- faults and holds ------------------------------------------------------------ */

/* Send op of the test ioctl with the fields of *t; *t gets the answer. */
static int inject_op(const char *path, uint32_t op, struct bigfile_test_inject *t)
{
    t->op = op;
    return bft_ioctl(path, BIGFILE_TEST_IOC_INJECT, t);
}

/* ADD a rule for path's file. */
static int add_rule(const char *path, uint32_t mem_op, uint64_t lo, uint64_t hi, int err,
                    uint32_t delay_us, uint64_t after, uint64_t times, uint32_t flags)
{
    struct bigfile_test_inject t = {
        .mem_op = mem_op,
        .blk_lo = lo,
        .blk_hi = hi,
        .err = err,
        .delay_us = delay_us,
        .after = after,
        .times = times,
        .flags = flags,
    };
    return inject_op(path, BIGFILE_TEST_INJECT_ADD, &t);
}

int bft_inject(const char *path, uint32_t mem_op, uint64_t lo, uint64_t hi, int err,
               uint32_t delay_us, uint64_t after, uint64_t times)
{
    return add_rule(path, mem_op, lo, hi, err, delay_us, after, times, 0);
}

int bft_inject_clear(const char *path)
{
    struct bigfile_test_inject t = { 0 };
    return inject_op(path, BIGFILE_TEST_INJECT_CLEAR, &t);
}

int bft_hold(const char *path, uint32_t mem_op, uint64_t lo, uint64_t hi, uint64_t times, int err)
{
    int r = add_rule(path, mem_op, lo, hi, err, 0, 0, times, BIGFILE_TEST_INJECT_HOLD);
    if (r == 0)
        snprintf(bft.hold_path, sizeof(bft.hold_path), "%s", path);
    return r;
}

int bft_wait_held(const char *path, uint64_t n, int timeout_s)
{
    struct bigfile_test_inject t = { .held = n, .timeout_ms = (uint32_t)timeout_s * 1000u };
    int r = inject_op(path, BIGFILE_TEST_INJECT_WAIT_HELD, &t);
    return r == -EAGAIN ? -ETIMEDOUT : r; /* EAGAIN: the time passed first */
}

int64_t bft_held(const char *path)
{
    struct bigfile_test_inject t = { 0 };
    int r = inject_op(path, BIGFILE_TEST_INJECT_HELD, &t);
    return r < 0 ? r : (int64_t)t.held;
}

int bft_release(const char *path)
{
    struct bigfile_test_inject t = { 0 };
    return inject_op(path, BIGFILE_TEST_INJECT_RELEASE, &t);
}

int bft_guard(const char *path, int timeout_s)
{
    sigset_t stop, old;
    if (bft.guard)
        return -EBUSY;
    /* SIGTERM (bft_unguard) is blocked from the fork on: the guard takes
     * it with sigtimedwait, also when it comes before it waits, and not
     * while it releases. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, &old);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct timespec ts = { timeout_s, 0 };
        int sig;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        while ((sig = sigtimedwait(&stop, NULL, &ts)) < 0 && errno == EINTR)
            ;
        if (sig == SIGTERM)
            _exit(0);
        fprintf(stderr, "harness: the guard releases the held calls after %d s\n", timeout_s);
        _exit(bft_release(path) == 0 ? 1 : 2);
    }
    int err = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        return -err;
    bft.guard = pid;
    return 0;
}

int bft_unguard(void)
{
    if (!bft.guard)
        return -1;
    kill(bft.guard, SIGTERM);
    int st = bft_wait_pid(bft.guard, 10);
    if (st == -1) {
        kill(bft.guard, SIGKILL);
        bft_wait_pid(bft.guard, 5);
    }
    bft.guard = 0;
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0 ? 1 : 0;
}

/* In a child (bft_run: bounded): release the calls held now. Exits 0 if none
 * was held, 1 if some were (released), 2 if the daemon did not answer. */
static int release_leftovers(void *arg)
{
    int64_t n = bft_held(arg);
    if (n < 0)
        return 2;
    if (n > 0 && bft_release(arg) < 0)
        return 2;
    return n > 0 ? 1 : 0;
}

/* Stop the guard and release the calls a test left held (see harness.h).
 * Returns release_leftovers' status, or -1 when there was nothing to do. */
static int end_holds(void)
{
    if (bft.guard)
        bft_unguard();
    if (!bft.hold_path[0] || !bft.daemon)
        return -1;
    int st = bft_run(release_leftovers, bft.hold_path, 10);
    bft.hold_path[0] = 0;
    return st;
}

/* ---- processes ----------------------------------------------------------------- */

pid_t bft_spawn(int (*fn)(void *arg), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(fn(arg));
    }
    return pid;
}

int bft_run(int (*fn)(void *arg), void *arg, int timeout_s)
{
    pid_t pid = bft_spawn(fn, arg);
    if (pid < 0)
        return -1;
    int st = bft_wait_pid(pid, timeout_s);
    if (st == -1) {
        bft_abort_mount();
        kill(pid, SIGKILL);
        st = bft_wait_pid(pid, 5);
    }
    return st;
}

struct children {
    const pid_t *pids;
    int n, left;
    int *st; /* -2: still running */
};

/* bft_wait_for's condition: every child was reaped. */
static int all_reaped(void *arg)
{
    struct children *c = arg;
    for (int i = 0; i < c->n; i++) {
        int s;
        if (c->st[i] == -2 && waitpid(c->pids[i], &s, WNOHANG) == c->pids[i]) {
            c->st[i] = s;
            c->left--;
        }
    }
    return c->left == 0;
}

int bft_wait_children(const pid_t *pids, int n, int timeout_s, int *st)
{
    struct children c = { pids, n, n, st };
    for (int i = 0; i < n; i++) {
        st[i] = pids[i] > 0 ? -2 : -1;
        if (pids[i] <= 0)
            c.left--;
    }
    if (bft_wait_for(all_reaped, &c, timeout_s))
        return 0;
    bft_abort_mount();
    for (int i = 0; i < n; i++)
        if (st[i] == -2)
            kill(pids[i], SIGKILL);
    for (int i = 0; i < n; i++)
        if (st[i] == -2) {
            bft_wait_pid(pids[i], 10);
            st[i] = -1;
        }
    return -1;
}

static void read_file_into(const char *path, char *buf, size_t len)
{
    if (!buf || !len)
        return;
    buf[0] = 0;
    char *s = bft_slurp(path);
    if (s) {
        snprintf(buf, len, "%s", s);
        free(s);
    }
}

int bft_exec(char *out, size_t outlen, char *err, size_t errlen, const char *const *argv,
             int timeout_s)
{
    char opath[PATH_MAX], epath[PATH_MAX];
    const char *dir = bft.dir[0] ? bft.dir : "/tmp";
    snprintf(opath, sizeof(opath), "%s/exec.%d.out", dir, (int)getpid());
    snprintf(epath, sizeof(epath), "%s/exec.%d.err", dir, (int)getpid());
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int o = open(opath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(epath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0)
            _exit(126);
        dup2(o, 1);
        dup2(e, 2);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st = bft_wait_pid(pid, timeout_s);
    if (st == -1) {
        kill(pid, SIGKILL);
        st = bft_wait_pid(pid, 5);
    }
    read_file_into(opath, out, outlen);
    read_file_into(epath, err, errlen);
    unlink(opath);
    unlink(epath);
    if (st == -1)
        return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
}

int bft_ctl(char *out, size_t outlen, char *err, size_t errlen, ...)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = env_or("BIGFILECTL", "bigfilectl");
    va_list ap;
    va_start(ap, errlen);
    const char *a;
    while (n < 31 && (a = va_arg(ap, const char *)) != NULL)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return bft_exec(out, outlen, err, errlen, argv, 30);
}

int bft_kv(const char *text, const char *key, uint64_t *value)
{
    size_t klen = strlen(key);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(line + klen + 1, &end, 0);
            if (errno || end == line + klen + 1)
                return -EINVAL;
            *value = v;
            return 0;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -ENOENT;
}

/* ---- peers ------------------------------------------------------------------------- */

struct peer_cmd {
    char op; /* 'r' read byte, 'w' write byte, 'c' check, 's' size, 'q' quit */
    uint8_t val;
    uint32_t seed;
    uint64_t off;
    uint64_t len;
};

static int full_read(int fd, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = read(fd, (char *)buf + done, len - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

/* On the peer's socket: MSG_NOSIGNAL, so that a command to a peer that
 * died (of SIGBUS, as some tests want) fails with EPIPE instead of killing
 * the test with SIGPIPE. */
static int full_write(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = send(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

static void peer_main(const char *path, size_t maplen, int sock)
{
    signal(SIGBUS, SIG_DFL);
    int fd = open(path, O_RDWR);
    int64_t ok = fd < 0 ? -errno : 0;
    uint8_t *map = NULL;
    if (fd >= 0) {
        map = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED)
            ok = -errno;
    }
    full_write(sock, &ok, sizeof(ok));
    if (ok < 0)
        _exit(1);
    struct peer_cmd c;
    while (full_read(sock, &c, sizeof(c)) == 0) {
        int64_t r = 0;
        struct stat st;
        switch (c.op) {
        case 'r':
            r = map[c.off];
            break;
        case 'w':
            map[c.off] = c.val;
            break;
        case 'c':
            r = 1;
            for (uint64_t i = 0; i < c.len && r; i++) {
                uint8_t want = 0;
                if (c.seed != ~0u)
                    bft_pattern(&want, 1, c.seed, c.off + i);
                if (map[c.off + i] != want)
                    r = 0;
            }
            break;
        case 's':
            r = fstat(fd, &st) == 0 ? st.st_size : -1;
            break;
        case 'q':
            munmap(map, maplen);
            close(fd);
            _exit(0);
        }
        if (full_write(sock, &r, sizeof(r)) < 0)
            break;
    }
    _exit(2);
}

int bft_peer_start(struct bft_peer *p, const char *path, size_t maplen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(sv[0]);
        close(sv[1]);
        return e;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(sv[0]);
        peer_main(path, maplen, sv[1]);
    }
    close(sv[1]);
    p->pid = pid;
    p->sock = sv[0];
    int64_t ok;
    if (full_read(p->sock, &ok, sizeof(ok)) < 0)
        return -EPIPE;
    return (int)ok;
}

static int64_t peer_call(struct bft_peer *p, const struct peer_cmd *c)
{
    int64_t r;
    if (full_write(p->sock, c, sizeof(*c)) < 0 || full_read(p->sock, &r, sizeof(r)) < 0)
        return -1;
    return r;
}

int bft_peer_read(struct bft_peer *p, uint64_t off)
{
    struct peer_cmd c = { .op = 'r', .off = off };
    return (int)peer_call(p, &c);
}

int bft_peer_write(struct bft_peer *p, uint64_t off, uint8_t val)
{
    struct peer_cmd c = { .op = 'w', .off = off, .val = val };
    return peer_call(p, &c) < 0 ? -1 : 0;
}

int bft_peer_check(struct bft_peer *p, uint64_t off, uint64_t len, unsigned seed)
{
    struct peer_cmd c = { .op = 'c', .off = off, .len = len, .seed = seed };
    return (int)peer_call(p, &c);
}

int64_t bft_peer_size(struct bft_peer *p)
{
    struct peer_cmd c = { .op = 's' };
    return peer_call(p, &c);
}

int bft_peer_stop(struct bft_peer *p)
{
    struct peer_cmd c = { .op = 'q' };
    full_write(p->sock, &c, sizeof(c));
    close(p->sock);
    int st = bft_wait_pid(p->pid, 20);
    if (st == -1) {
        kill(p->pid, SIGKILL);
        st = bft_wait_pid(p->pid, 5);
    }
    return st;
}

/* ---- SQLite behind the daemon's back ----------------------------------------------- */

/* Whether the main database of h has a table named `name`. */
static int sql_has_table(sqlite3 *h, const char *name)
{
    sqlite3_stmt *st = NULL;
    int yes = 0;
    if (sqlite3_prepare_v2(h, "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        yes = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return yes;
}

/* SQL function bft_blockfile(off, len): len bytes at off in the block
 * file (the connection's database path + "-blocks", its user data). */
static void sql_blockfile(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    char path[4200];
    (void)argc;
    snprintf(path, sizeof(path), "%s-blocks", (const char *)sqlite3_user_data(ctx));
    int64_t off = sqlite3_value_int64(argv[0]), len = sqlite3_value_int64(argv[1]);
    void *buf = len > 0 && len <= INT32_MAX ? malloc((size_t)len) : NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (buf && fd >= 0 && pread(fd, buf, (size_t)len, off) == len)
        sqlite3_result_blob(ctx, buf, (int)len, free);
    else {
        sqlite3_result_error(ctx, "cannot read the block file", -1);
        free(buf);
    }
    if (fd >= 0)
        close(fd);
}

static sqlite3 *sql_open(const char *db)
{
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite3_open %s: %s\n", db, h ? sqlite3_errmsg(h) : "?");
        sqlite3_close(h);
        return NULL;
    }
    sqlite3_busy_timeout(h, 5000);
    /* A TEMP VIEW changes nothing in the file (harness.h). */
    if (sql_has_table(h, "blockmap")) {
        char *path = strdup(db);
        char view[1024];
        bool ext = sql_has_table(h, "extents");
        if (path && sqlite3_create_function_v2(h, "bft_blockfile", 2, SQLITE_UTF8, path,
                                               sql_blockfile, NULL, NULL, free) != SQLITE_OK)
            path = NULL; /* freed by SQLite */
        snprintf(view, sizeof(view), "%s%s",
                 ext && path ? BFT_SQL_BLOCKS_VIEW_EXTENTS : BFT_SQL_BLOCKS_VIEW,
                 sql_has_table(h, "legacy_blocks") ? BFT_SQL_BLOCKS_LEGACY : "");
        sqlite3_exec(h, view, NULL, NULL, NULL);
    }
    return h;
}

/* Replace the current content of block blk of file `name` with buf
 * (blksize bytes) on h (bft_sql_set_block): whether it did. */
static bool sql_set_block(sqlite3 *h, const char *name, uint64_t blk, const void *buf,
                          uint32_t blksize)
{
    bool ok = true, ext = sql_has_table(h, "extents");
    for (int i = 0; ok && i < (ext ? 2 : 1); i++) {
        sqlite3_stmt *st = NULL;
        ok = sqlite3_prepare_v2(h, set_block_sql[i], -1, &st, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)blk);
            if (i == 0)
                sqlite3_bind_blob(st, 3, buf, (int)blksize, SQLITE_STATIC);
            ok = sqlite3_step(st) == SQLITE_DONE && (i > 0 || sqlite3_changes(h) == 1);
        }
        sqlite3_finalize(st);
    }
    return ok;
}

/* Whether a write transaction can begin on SQLite database db at once (1),
 * or another connection holds the write lock (0); -1 on another failure. */
static int sql_writable_now(const char *db)
{
    sqlite3 *h = NULL;
    int ret = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
        /* no busy timeout: SQLITE_BUSY at once while another holds the lock */
        int rc = sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        ret = rc == SQLITE_OK;
        if (rc == SQLITE_OK)
            sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
        else if (rc != SQLITE_BUSY)
            ret = -1;
    }
    sqlite3_close(h);
    return ret;
}

/* The SQL of schema 1, as bigfilefs wrote it (harness.h). */
const char bft_schema1_sql[] =
    "PRAGMA page_size=65536; PRAGMA journal_mode=WAL; PRAGMA application_id=1111901779;"
    "CREATE TABLE files(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE,"
    " blksize INTEGER NOT NULL, size INTEGER NOT NULL, mode INTEGER NOT NULL,"
    " uid INTEGER NOT NULL, gid INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
    " ctime_ns INTEGER NOT NULL);"
    "CREATE TABLE blocks(file INTEGER NOT NULL, blk INTEGER NOT NULL, data BLOB NOT NULL,"
    " UNIQUE(file, blk));"
    "PRAGMA user_version=1;"
    "INSERT INTO files VALUES(1, 'old', 65536, 196618, 420, 0, 0, 111, 222);"
    /* blocks 0 and 2 of 'old': 64 KiB of 'a' and of 'c' (the 65536 '0'
     * of hex(zeroblob(32768)), each pair replaced) */
    "INSERT INTO blocks VALUES(1, 0, CAST(replace(hex(zeroblob(32768)), '00', 'aa') AS BLOB));"
    "INSERT INTO blocks VALUES(1, 2, CAST(replace(hex(zeroblob(32768)), '00', 'cc') AS BLOB));";

int bft_sql_exec(const char *db, const char *sql)
{
    if (bft_db_is_pg(db))
        return bft_pg_sql_exec(db, sql);
    sqlite3 *h = sql_open(db);
    if (!h)
        return -1;
    char *msg = NULL;
    int rc = sqlite3_exec(h, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "sqlite3 %s: %s\n", sql, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    sqlite3_close(h);
    return rc == SQLITE_OK ? 0 : -1;
}

int bft_sql_int(const char *db, const char *sql, int64_t *out)
{
    if (bft_db_is_pg(db))
        return bft_pg_sql_int(db, sql, out);
    sqlite3 *h = sql_open(db);
    if (!h)
        return -1;
    sqlite3_stmt *st = NULL;
    int ret = -1;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        ret = 0;
    } else {
        fprintf(stderr, "sqlite3 %s: %s\n", sql, sqlite3_errmsg(h));
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return ret;
}

int bft_sql_set_block(const char *db, const char *name, uint64_t blk, uint32_t blksize,
                      unsigned seed)
{
    sqlite3 *h = sql_open(db);
    if (!h)
        return -1;
    void *buf = malloc(blksize);
    bft_pattern(buf, blksize, seed, blk * blksize);
    int ret = -1;
    if (sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK &&
        sql_set_block(h, name, blk, buf, blksize) &&
        sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        ret = 0;
    if (ret)
        fprintf(stderr, "sqlite3 setting a block: %s\n", sqlite3_errmsg(h));
    sqlite3_close(h);
    free(buf);
    return ret;
}

struct bft_sql_stage {
    sqlite3 *h;
};

struct bft_sql_stage *bft_sql_stage_block(const char *db, const char *name, uint64_t blk,
                                          uint32_t blksize, unsigned seed)
{
    sqlite3 *h = sql_open(db);
    if (!h)
        return NULL;
    void *buf = malloc(blksize);
    bft_pattern(buf, blksize, seed, blk * blksize);
    int ok = sqlite3_exec(h, "PRAGMA synchronous=OFF; BEGIN IMMEDIATE", NULL, NULL, NULL) ==
                 SQLITE_OK &&
             sql_set_block(h, name, blk, buf, blksize);
    free(buf);
    if (!ok) {
        fprintf(stderr, "sqlite3 stage: %s\n", sqlite3_errmsg(h));
        sqlite3_close(h);
        return NULL;
    }
    struct bft_sql_stage *s = malloc(sizeof(*s));
    s->h = h;
    return s;
}

int bft_sql_stage_commit(struct bft_sql_stage *s)
{
    if (!s)
        return -1;
    int rc = sqlite3_exec(s->h, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        fprintf(stderr, "sqlite3 COMMIT: %s\n", sqlite3_errmsg(s->h));
    sqlite3_close(s->h);
    free(s);
    return rc == SQLITE_OK ? 0 : -1;
}

void bft_history_off(const char *mnt)
{
    struct bigfile_history h = { .flags = BIGFILE_HISTORY_SET_KEEP, .keep_ns = 0 };
    if (bft.is_mem)
        return;
    int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "%s: %s", mnt, strerror(errno));
    int r = ioctl(fd, BIGFILE_IOC_HISTORY, &h);
    close(fd);
    if (r == 0)
        return;
    /* a daemon without the ioctl: in the database (SQLite and PostgreSQL
     * name the meta row alike) */
    cr_assert_eq(bft_sql_exec(bft.db, "UPDATE meta SET value = 0 WHERE key = 'history_keep_ns'"),
                 0);
}
