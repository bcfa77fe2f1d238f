/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: the harness.
 *
 * Every test mounts a real bigfilefs of its own and drives it from separate
 * processes. A test declares its fixture with the .init/.fini hooks below,
 * e.g.
 *
 *     Test(data, zeros, .init = bft_setup_sqlite, .fini = bft_teardown,
 *          .timeout = 60)
 *
 * Setup (in the test's own process, which Criterion forks for each test):
 *  - unshare(CLONE_NEWNS) and make "/" private, so that the mount lives in a
 *    mount namespace of the test's own and vanishes with its processes;
 *  - mkdtemp a directory /tmp/bft-XXXXXX holding the database ("db"), the
 *    mountpoint ("mnt") and the daemon's stderr ("daemon.log");
 *  - mount the FUSE control filesystem (fusectl) on
 *    /sys/fs/fuse/connections in that namespace, if it is not there yet;
 *  - start `$BIGFILEFS -f [-o OPTS] DB MNT` as a child with
 *    PR_SET_PDEATHSIG = SIGKILL (if the test process dies, so does the
 *    daemon, and the namespace and mount with it) and wait (at most 10 s)
 *    until statfs(MNT).f_type is FUSE_SUPER_MAGIC; record the mount's FUSE
 *    connection (bft.conn).
 *
 * Hangs fail, they never hang the run. A daemon that deadlocked cannot be
 * killed: its threads sleep in the kernel, waiting for requests that only
 * it could answer. So whenever the harness gives up waiting for something
 * that involves the mount — bft_run, bft_wait_children at their timeout —
 * it first aborts the mount's FUSE connection through
 * /sys/fs/fuse/connections/N/abort (bft_abort_mount): every waiter then
 * fails with ECONNABORTED or ENOTCONN, the daemon can exit, and the test
 * fails on its own assertion. A watchdog process started with the first
 * mount does the same if the test process dies (Criterion's .timeout kills
 * it) while a daemon still runs.
 *
 * Several daemons on one database (bft_setup_shared2/3, bft_mount_on): each
 * has a mountpoint, a log and so a page cache of its own, all on DIR/db; a
 * test drives each from processes of its own, as two machines' programs
 * would.
 *
 * End of the test body (bft_finish, see BFT_TEST): unmount, wait for the
 * daemons (bounded; SIGTERM then SIGKILL), then check that each exited
 * with status 0 and that its log holds no sanitizer report — otherwise the
 * test fails. Teardown (.fini, also after a failed assertion): the same
 * cleanup if still needed (a stopped daemon is continued first), and
 * remove the directory.
 *
 * Global state: the single fixture `bft` below, one per test process
 * (Criterion runs each test in a process of its own). Helpers that need the
 * mount use it. Child processes started by helpers must not call Criterion
 * assertions: they report through their exit status.
 *
 * Environment: BIGFILEFS, BIGFILECTL (absolute paths of the programs),
 * BF_SRCDIR, PYTHON — set by `make check`; BFT_KEEP=1 keeps each test's
 * directory (the database, the daemons' logs) for a post-mortem.
 */
#ifndef BIGFILEFS_TESTS_INTEGRATION_HARNESS_H
#define BIGFILEFS_TESTS_INTEGRATION_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <bigfile/ioctl.h>

#define BFT_FUSE_SUPER_MAGIC 0x65735546
#define BFT_MB ((uint64_t)1 << 20)
#define BFT_GB ((uint64_t)1 << 30)

/* The most daemons a test runs at once on its database: the fixture's own
 * (mount 0) and others (bft_mount_on). */
#define BFT_MAX_MOUNTS 3

/* Another daemon of the test on bft.db (mounts 1 .. BFT_MAX_MOUNTS-1). */
struct bft_other {
    char mnt[256];  /* DIR/mntN */
    char log[256];  /* DIR/daemonN.log */
    char opts[512]; /* -o options ("" for none) */
    pid_t daemon;   /* 0 when not running */
    unsigned conn;  /* FUSE connection number of the mount (0: none) */
};

struct bft_fixture {
    char dir[64];                               /* the temp dir */
    char db[256];                               /* database spec: DIR/db, "mem:" or "pg:..." */
    char pgdb[64];                              /* the test's PostgreSQL database, or "" */
    char mnt[256];                              /* DIR/mnt */
    char log[256];                              /* DIR/daemon.log: the daemon's stdout+stderr */
    char opts[512];                             /* -o options ("" for none) */
    pid_t daemon;                               /* 0 when not running */
    int is_mem;                                 /* database is "mem:" */
    unsigned conn;                              /* FUSE connection number of the mount (0: none) */
    int watchdog;                               /* write end of the watchdog's pipe (-1: none) */
    char hold_path[PATH_MAX];                   /* a file given a hold rule (bft_hold), or "" */
    pid_t guard;                                /* the running guard (bft_guard), or 0 */
    struct bft_other other[BFT_MAX_MOUNTS - 1]; /* mounts 1.. */
};

/* The fixture of this test process. */
extern struct bft_fixture bft;

/* ---- fixtures (Criterion .init / .fini) ---------------------------------- */

/* Prepare the namespace and temp dir and mount with an SQLite database /
 * a memory database / a memory database with -o test_inject. */
void bft_setup_sqlite(void);
void bft_setup_mem(void);
void bft_setup_inject(void);
/* Prepare the namespace and temp dir only (the test mounts itself, with
 * bft_mount, after choosing bft.opts or bft.db). Default db: DIR/db. */
void bft_setup_nomount(void);
/* Unmount (if bft_finish did not run, e.g. after a failed assertion), stop
 * the daemon, remove the temp dir. Cannot fail the test (Criterion ignores
 * .fini failures): it only logs an unclean daemon exit. */
void bft_teardown(void);

/* Criterion ignores failures (and crashes) in .fini, so the daemon's clean
 * exit is checked at the end of the test body: tests are declared with
 * these macros, which run the body, then bft_finish().
 *     BFT_TEST(data, name, bft_setup_sqlite, 60) { ...body using bft... }
 * declares one test; BFT_TEST_BOTH(data, name, 60) { ... } declares two,
 * name_sqlite and name_mem, running the body on an SQLite and on a memory
 * database. */
#define BFT_TEST(suite, name, setup, timeout_s)                                    \
    static void suite##_##name##_body(void);                                       \
    Test(suite, name, .init = setup, .fini = bft_teardown, .timeout = (timeout_s)) \
    {                                                                              \
        suite##_##name##_body();                                                   \
        bft_finish();                                                              \
    }                                                                              \
    static void suite##_##name##_body(void)

#define BFT_TEST_BOTH(suite, name, timeout_s)                                                    \
    static void suite##_##name##_body(void);                                                     \
    Test(suite, name##_sqlite, .init = bft_setup_sqlite, .fini = bft_teardown,                   \
         .timeout = (timeout_s))                                                                 \
    {                                                                                            \
        suite##_##name##_body();                                                                 \
        bft_finish();                                                                            \
    }                                                                                            \
    Test(suite, name##_mem, .init = bft_setup_mem, .fini = bft_teardown, .timeout = (timeout_s)) \
    {                                                                                            \
        suite##_##name##_body();                                                                 \
        bft_finish();                                                                            \
    }                                                                                            \
    static void suite##_##name##_body(void)

/* End of a test body: unmount if mounted and assert (cr_expect) that the
 * daemon exited with status 0 and left no sanitizer report in its log. */
void bft_finish(void);

/* ---- mount control ------------------------------------------------------- */

/* Start the daemon on bft.db / bft.mnt with bft.opts and wait for the mount.
 * Fails the test (cr_assert) if it does not come up in 10 s. */
void bft_mount(void);

/* Unmount and wait for the daemon to exit (SIGTERM after 5 s, SIGKILL after
 * 10 s). Returns the daemon's wait status, or -1 if none was running. Does
 * not assert. */
int bft_unmount(void);

/* Send SIGTERM to the daemon and wait for it to exit (bounded). Sets
 * *still_mounted (if not NULL) to whether the mount was still there after the
 * daemon exited, then detaches it if so. Returns the wait status. */
int bft_sigterm(int *still_mounted);
/* The same with another signal (SIGINT, ...). */
int bft_sigterm_sig(int sig, int *still_mounted);

/* bft_unmount, assert a clean exit (status 0, no sanitizer report in the
 * log), then bft_mount again on the same database. */
void bft_remount(void);

/* Assert that wait status st is a clean exit (0) of the daemon and that the
 * log has no sanitizer report. `what` names the occasion in messages. */
void bft_assert_daemon_clean(int st, const char *what);

/* Run the daemon with extra arguments argv (NULL-terminated, after the
 * program name) in the foreground and wait at most `timeout_s` for it to
 * exit; stderr goes to bft.log (truncated first). Returns the wait status
 * (SIGKILLed after the timeout). For tests of refusals. */
int bft_daemon_run(int timeout_s, const char *const *argv);

/* Nonzero when path is on a FUSE file system now. */
int bft_is_fuse(const char *path);

/* Abort the FUSE connection of every running daemon's mount (bft.conn,
 * and the other mounts') through /sys/fs/fuse/connections/N/abort: every
 * request waiting on them fails, and a deadlocked daemon can exit. Logs
 * what it did. Returns 0, or -1 if there was nothing to abort or a write
 * failed. */
int bft_abort_mount(void);

/* ---- several daemons on one database ------------------------------------------
 * Mount 0 is the fixture's (bft.mnt, bft.daemon); mounts 1 .. BFT_MAX_MOUNTS-1
 * run other daemons on bft.db, each on DIR/mntN with its log DIR/daemonN.log.
 * bft_finish and the teardown unmount them all and check each. */

/* Prepare, then mount an SQLite database with -o shared from 2 / 3 daemons
 * (mounts 0 and 1 / 0, 1 and 2). */
void bft_setup_shared2(void);
void bft_setup_shared3(void);
/* Mount bft.db with -o shared from n daemons (mounts 0 .. n-1), as the
 * fixtures above do after their preparation. */
void bft_mount_shared(int n);
/* Start daemon m (>= 1) on bft.db with -o opts (NULL or "": none) and wait
 * for its mount, as bft_mount. */
void bft_mount_on(int m, const char *opts);
/* Unmount mount m and wait for its daemon, as bft_unmount (m 0 is it). */
int bft_unmount_on(int m);
/* bft_assert_daemon_clean for daemon m (its own log). */
void bft_assert_clean_on(int m, int st, const char *what);
/* Send sig to daemon m and reap it (bounded; SIGTERM then SIGKILL after),
 * then detach its mount; returns its wait status. For SIGKILL: a dead
 * daemon. */
int bft_kill_on(int m, int sig);
/* Stop daemon m (SIGSTOP; every thread stopped) at a moment it holds
 * none of the database's locks that another mount's commit or housekeeping
 * would wait for — on SQLite the write lock, on PostgreSQL an open
 * transaction or the housekeeping lock — so that the others go on while it
 * is stopped: while it holds one, it is let run (SIGCONT) and stopped
 * again, for 20 s at most. 0, or -1 (then it may run). SIGCONT resumes it. */
int bft_stop_quiet(int m);
/* The mountpoint and the daemon's pid (0: none) of mount m. */
const char *bft_mnt_of(int m);
pid_t bft_daemon_of(int m);
/* bft_path on mount m. */
char *bft_path_on(int m, char *buf, const char *name);

/* ---- paths and files ----------------------------------------------------- */

/* Write bft.mnt + "/" + name into buf (PATH_MAX) and return buf. */
char *bft_path(char *buf, const char *name);

/* Read the whole file `path` into a malloc'd NUL-terminated buffer (caller
 * frees); NULL on error. */
char *bft_slurp(const char *path);

/* Create file `name` in the mount with `bigfilectl create` (sizes as
 * strings, NULL for the default) and assert success. */
void bft_create(const char *name, const char *blksize, const char *size);

/* pwrite/pread the whole buffer at off on path (opened and closed).
 * Return 0 or -errno. */
int bft_pwrite(const char *path, const void *buf, size_t len, uint64_t off);
int bft_pread(const char *path, void *buf, size_t len, uint64_t off);

/* Fill buf with a pattern depending on (seed, offset). */
void bft_pattern(void *buf, size_t len, unsigned seed, uint64_t off);
/* Nonzero when buf holds bft_pattern(seed, off). */
int bft_check_pattern(const void *buf, size_t len, unsigned seed, uint64_t off);
/* Nonzero when buf is all zeros. */
int bft_is_zero(const void *buf, size_t len);

/* Write bft_pattern(seed) over [off, off+len) of path with pwrite and
 * assert success. */
void bft_put(const char *path, uint64_t off, size_t len, unsigned seed);
/* Write as bft_put, then WRITEOUT (store+markstored) and assert success. */
void bft_put_commit(const char *path, uint64_t off, size_t len, unsigned seed);
/* Assert that pread of [off, off+len) of path gives bft_pattern(seed), or
 * zeros when seed is ~0u. `what` names the check in messages. */
void bft_expect(const char *path, uint64_t off, size_t len, unsigned seed, const char *what);
/* st_size of path (stat), or -errno. */
int64_t bft_size(const char *path);

#define BFT_ZEROS (~0u)
#define BFT_WO_BOTH (BIGFILE_WRITEOUT_STORE | BIGFILE_WRITEOUT_MARKSTORED)

/* ---- ioctls: each opens path O_RDWR for WRITEOUT, WRITEOUT2, DISCARD,
 * INVALIDATE and SETBLKSIZE (O_RDONLY on a ro mount, where O_RDWR fails),
 * else O_RDONLY --- */
/* All return 0 or -errno. */
int bft_ioctl(const char *path, unsigned long req, void *arg);
int bft_writeout(const char *path, uint32_t flags, struct bigfile_writeout *out);
int bft_discard(const char *path, struct bigfile_count *out);
int bft_invalidate(const char *path, uint64_t start, uint64_t count);
int bft_stat(const char *path, struct bigfile_stat *out);
int bft_reclaim(const char *path, struct bigfile_count *out);

/* ---- faults and holds (bft_setup_inject: fs/test_inject.h) -------------------
 * The memory backend's fault rules, through the daemon's test ioctl. A
 * hold lets a test wait for an event, never for time:
 *
 *     cr_assert_eq(bft_hold(p, BIGFILE_TEST_INJECT_STOREBLK, 0, UINT64_MAX, 0, 0), 0);
 *     pid = fork(): the child writes p out, and blocks in storeblk;
 *     cr_assert_eq(bft_wait_held(p, 1, 20), 0);   the writeout is held now
 *     cr_assert_eq(bft_guard(p, 20), 0);
 *     ... act and check: what must not wait for the held writeout ...
 *     cr_expect_eq(bft_unguard(), 0, "the checks waited for the writeout");
 *     cr_expect_eq(bft_held(p), 1, "still held: the checks ran meanwhile");
 *     cr_assert_eq(bft_release(p), 0);
 *     wait for the child.
 *
 * A daemon must not end with calls held: bft_finish fails a test that left
 * some (and releases them), and the teardown releases them after a failed
 * assertion. All return 0 or -errno unless said otherwise. */

/* Add a rule for path's file: the calls mem_op (BIGFILE_TEST_INJECT_*) on
 * its blocks [lo, hi] fail with err (positive errno; 0: do not fail), take
 * delay_us longer, after the first `after` of them, at most `times` times
 * (0: always). */
int bft_inject(const char *path, uint32_t mem_op, uint64_t lo, uint64_t hi, int err,
               uint32_t delay_us, uint64_t after, uint64_t times);
/* Remove every rule (of every file) and release every held call. */
int bft_inject_clear(const char *path);
/* Hold the calls mem_op on path's blocks [lo, hi] — the first `times` of
 * them, 0: every one — until bft_release; then fail them with err
 * (positive errno), or with 0 let them go on. */
int bft_hold(const char *path, uint32_t mem_op, uint64_t lo, uint64_t hi, uint64_t times, int err);
/* Wait until at least n calls are held (of any file), at most timeout_s
 * seconds: 0, -ETIMEDOUT, or -errno. */
int bft_wait_held(const char *path, uint64_t n, int timeout_s);
/* The number of calls held now (of any file), or -errno. */
int64_t bft_held(const char *path);
/* Release every held call (of any file); hold rules fire no more. */
int bft_release(const char *path);

/* While a call is held, an action that the test expects not to wait for it
 * would, if it did, wait forever. bft_guard starts a guard process that
 * releases every held call (through path) unless bft_unguard stops it
 * within timeout_s: such an action then ends late, and the test fails on
 * bft_unguard's answer instead of hanging. One guard at a time. */
int bft_guard(const char *path, int timeout_s);
/* Stop the guard. Returns 1 if it had released the holds (what the test did
 * meanwhile outlasted its timeout), 0 if not, -1 if none ran. */
int bft_unguard(void);

/* ---- processes ----------------------------------------------------------- */

/* Fork; the child runs fn(arg) and _exits with its return value. Wait at
 * most timeout_s seconds; then abort the mount (bft_abort_mount, if a
 * daemon runs) and SIGKILL the child. Return the wait status. */
int bft_run(int (*fn)(void *arg), void *arg, int timeout_s);

/* Fork a child running fn(arg) (as bft_run) and return its pid at once,
 * or -1. */
pid_t bft_spawn(int (*fn)(void *arg), void *arg);

/* Wait for the n children pids (from bft_spawn) together, at most
 * timeout_s seconds in all, storing each wait status in st[i]. At the
 * timeout: abort the mount (bft_abort_mount), SIGKILL the children left,
 * reap them (their st[i] is then -1) and return -1. Returns 0 when all
 * exited in time. */
int bft_wait_children(const pid_t *pids, int n, int timeout_s, int *st);

/* Wait for child pid at most timeout_s seconds (it is not killed); return
 * its wait status, or -1 at the timeout or on an error. */
int bft_wait_pid(pid_t pid, double timeout_s);

/* Nonzero when child pid has ended (it is not reaped: waitpid still
 * gives its status). */
int bft_exited(pid_t pid);

/* Call cond(arg) every millisecond until it returns nonzero, at most
 * timeout_s seconds: for a condition that no event announces (a sysfs
 * value, a daemon counter, a child's exit). Returns 1 when it held, 0 at
 * the timeout. */
int bft_wait_for(int (*cond)(void *arg), void *arg, double timeout_s);

/* Run `$BIGFILECTL args...` (NULL-terminated), capturing stdout into out
 * (NUL-terminated, truncated to outlen) and stderr into err (may be NULL).
 * Returns the exit code, or 128+signal, or -1 on failure to run. */
int bft_ctl(char *out, size_t outlen, char *err, size_t errlen, ...) __attribute__((sentinel));

/* Run argv[0] with argv, capture as bft_ctl does. */
int bft_exec(char *out, size_t outlen, char *err, size_t errlen, const char *const *argv,
             int timeout_s);

/* Find "key: value" in text (start of a line); store value; 0 or -ENOENT. */
int bft_kv(const char *text, const char *key, uint64_t *value);

/* ---- peers: a child process holding a shared mapping ---------------------- */

/* A peer opens path O_RDWR, mmaps maplen bytes MAP_SHARED and serves
 * commands from the test over a socket, so that the test can look at "an
 * existing mapping in another process". A peer that died makes the calls
 * fail (-1), never the test (no SIGPIPE). */
struct bft_peer {
    pid_t pid;
    int sock; /* commands to the peer, its replies */
};

/* Start a peer; 0 or -errno (asserts nothing). */
int bft_peer_start(struct bft_peer *p, const char *path, size_t maplen);
/* Byte at off of the peer's mapping (0..255), or -1 if the peer died (e.g.
 * of SIGBUS). */
int bft_peer_read(struct bft_peer *p, uint64_t off);
/* Store byte val at off through the peer's mapping; 0 or -1. */
int bft_peer_write(struct bft_peer *p, uint64_t off, uint8_t val);
/* Compare len bytes at off of the mapping with bft_pattern(seed, off);
 * 1 equal, 0 differ, -1 peer died. seed ~0u: compare with zeros. */
int bft_peer_check(struct bft_peer *p, uint64_t off, uint64_t len, unsigned seed);
/* fstat size of the peer's fd, or -1. */
int64_t bft_peer_size(struct bft_peer *p);
/* Tell the peer to exit (munmap, close); return its wait status. */
int bft_peer_stop(struct bft_peer *p);

/* ---- several daemons on one PostgreSQL database (harness_pg.c) --------------
 * For programs run through tests/pg/pgserver.sh (PG_TESTS: one private
 * server per program, BF_PGTEST_CONNINFO). Each test gets a fresh database
 * of its own (bft.pgdb), dropped by the teardown; bft.db is its spec
 * "pg:CONNINFO dbname=NAME". Daemon m connects with application_name
 * bft_mM (so that a test can find its connections), mount 1 (B) over TCP
 * to 127.0.0.1 as a remote machine would, the others over the unix
 * socket. Without libpq the fixtures fail the test. */

/* Prepare and create the database only / and mount it -o shared from 2 / 3
 * daemons, as bft_setup_shared2/3. */
void bft_setup_pg_nomount(void);
void bft_setup_pg_shared2(void);
void bft_setup_pg_shared3(void);
/* The database spec daemon m is started with, into buf[n]; returns buf.
 * On pg: bft.db (with what the test appended to it), over TCP for m 1. */
const char *bft_db_of(int m, char *buf, size_t n);
/* Nonzero when db is a "pg:" spec. */
int bft_db_is_pg(const char *db);
/* End every server connection of daemon m (pg_terminate_backend, waiting
 * until they are gone); returns how many, or -1. */
int bft_pg_terminate(int m);
/* Whether every server connection of daemon m is idle, outside a
 * transaction, and none holds the housekeeping lock: 1, 0, or -1. */
int bft_pg_quiet(int m);
/* Restart the run's server (pgserver.sh restart, fast: every connection
 * ends); 0 or -1. */
int bft_pg_restart(void);
/* Run sql (no result rows) on the server's database `postgres`, as the
 * run's superuser: e.g. ALTER DATABASE. 0 or -1 (said on stderr). */
int bft_pg_admin(const char *sql);
/* Drop bft.pgdb if there is one (the teardown calls it); 0 or -1. */
int bft_pg_drop(void);
/* bft_sql_exec and bft_sql_int on a "pg:" spec (they dispatch here): the
 * connection's search_path is the schema bigfilefs, and a TEMP VIEW
 * blocks(file, blk, data) shows the current stored blocks that hold data,
 * as on SQLite. A boolean result reads as 1 or 0. */
int bft_pg_sql_exec(const char *db, const char *sql);
int bft_pg_sql_int(const char *db, const char *sql, int64_t *out);

/* ---- the database behind the daemon's back (SQLite) ----------------------- */

/* Execute SQL on the SQLite database file `db` (a separate connection;
 * the file is created if missing), or on a "pg:" one (above); 0 or -1 (the
 * message goes to stderr).
 * On a bigfilefs database (schema 2) each such connection has a TEMP VIEW
 * `blocks(file, blk, data)`: the current stored blocks that hold data (what
 * schema 1 kept in a table of that name), for the tests' questions about
 * what the database holds; it changes nothing in the file. */
int bft_sql_exec(const char *db, const char *sql);

/* An SQLite database of bigfilefs 0.1 (schema 1), for bft_sql_exec on a
 * fresh DIR/db: one file "old" (blksize 64 KiB, size 196618, mode 0644,
 * mtime 111, ctime 222) whose block 0 is 64 KiB of 'a', block 2 of 'c'
 * (block 1 a hole). */
extern const char bft_schema1_sql[];
/* Run a query returning one integer; store it; 0 or -1. */
int bft_sql_int(const char *db, const char *sql, int64_t *out);

/* Make bft.db keep no history (retention 0: an unlinked file goes at its
 * last close, the log and old versions are trimmed as they were before
 * history), through mount point mnt: BIGFILE_IOC_HISTORY on its root, or,
 * with a daemon that has no such ioctl, the meta row of the database
 * (SQLite or PostgreSQL).
 * A no-op on "mem:". For the tests that predate history (issue 13). */
void bft_history_off(const char *mnt);
/* Replace the stored content of block blk of file `name` (its current
 * version, which must hold data): blksize bytes of bft_pattern(seed, blk *
 * blksize), behind the daemons' backs — no commit-log row, so no daemon
 * learns of it (as an INVALIDATE test needs). 0 or -1. */
int bft_sql_set_block(const char *db, const char *name, uint64_t blk, uint32_t blksize,
                      unsigned seed);

/* Stage the same change in an open transaction of a connection of its own
 * (synchronous=OFF: only visibility matters here), so that a test can make
 * it visible at a precise moment with bft_sql_stage_commit, which commits,
 * closes and frees. NULL / -1 on failure. */
struct bft_sql_stage;
struct bft_sql_stage *bft_sql_stage_block(const char *db, const char *name, uint64_t blk,
                                          uint32_t blksize, unsigned seed);
int bft_sql_stage_commit(struct bft_sql_stage *st);

#endif /* BIGFILEFS_TESTS_INTEGRATION_HARNESS_H */
