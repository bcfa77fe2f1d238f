/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/backends: helpers shared by the backend tests.
 *
 * BOTH(name, timeout) defines one behavioural test body and registers it
 * for every engine: against a fresh memory database (suite "memory"), a
 * fresh SQLite database in a temporary directory (suite "sqlite"), and two
 * block servers (bigfilefs-protocol(7)): tests/proto/blockd, in C, serving
 * a SQLite database of its own (suite "proto_c"), and the Python example
 * examples/npy_store.py (suite "proto_py"; skipped without a python). The
 * body gets the open db and a struct tb describing it. SESSIONS (at the
 * end) does the same with several sessions on one database, as several
 * mounts, for the engines that have sessions (memory, SQLite).
 *
 * Compiled with -DTB_PG (the *_pg test programs, run with a private
 * PostgreSQL server by tests/pg/pgserver.sh), BOTH and SESSIONS register
 * the body once instead, against a fresh PostgreSQL database of the run's
 * server (suite "pg"), dropped when the test ends. */
#ifndef BIGFILEFS_TESTS_BACKENDS_HELPERS_H
#define BIGFILEFS_TESTS_BACKENDS_HELPERS_H

#ifdef CORE_MINICR
#include "../core/minicr.h" /* the TSan build: Criterion cannot run there */
#else
#include <criterion/criterion.h>
#endif
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "backends/backend.h"
#include "backends/memory.h"
#include "backends/sqlite.h"
#include "util/util.h" /* bf_now_ns, bf_parse_size */
#ifdef TB_PG
#include "../pg/pgtest.h"
#include "backends/pg.h"
#endif

/* The engines a test runs on (tb_open's `engine`). */
enum tb_kind {
    TB_MEMORY = 0,
    TB_SQLITE = 1,
    TB_PGSQL = 2,
    TB_PROTO_C = 3,  /* blockd serving t->path */
    TB_PROTO_PY = 4, /* examples/npy_store.py keeping t->dir/store */
};

struct tb {
    int kind;        /* enum tb_kind */
    char dir[64];    /* sqlite, proto: the temporary directory */
    char path[128];  /* sqlite, proto_c: the database file */
    char db[64];     /* pg: the test's database */
    char spec[1024]; /* what bf_db_open gets */
};

/* Where the block servers are: the build and source trees (make check's
 * environment, else where the test was built) and the python. */
#ifndef BF_TEST_BUILDDIR
#define BF_TEST_BUILDDIR "."
#define BF_TEST_SRCDIR ".."
#define BF_TEST_PYTHON "python3"
#endif

static inline const char *tb_env_or(const char *var, const char *dflt)
{
    const char *v = getenv(var);
    return v && *v ? v : dflt;
}

static inline const char *tb_python(void)
{
    const char *py = tb_env_or("PYTHON", BF_TEST_PYTHON);
    return *py ? py : "python3";
}

/* Whether the python of tb_python runs here. */
static inline int tb_have_python(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s' -c 'import sys' >/dev/null 2>&1", tb_python());
    return system(cmd) == 0;
}

/* t->spec: the block server of kind for t's directory: blockd (with the
 * options `opts`, NULL: none) serving t->path, or npy_store.py keeping
 * t->dir/store. */
static inline void tb_proto_spec(struct tb *t, int kind, const char *opts)
{
    if (kind == TB_PROTO_C)
        snprintf(t->spec, sizeof(t->spec), "exec:exec '%s/tests/proto/blockd' %s '%s'",
                 tb_env_or("BF_BUILDDIR", BF_TEST_BUILDDIR), opts ? opts : "", t->path);
    else
        snprintf(t->spec, sizeof(t->spec),
                 "exec:PYTHONPATH='%s/python' PYTHONDONTWRITEBYTECODE=1 exec '%s' "
                 "'%s/examples/npy_store.py' '%s/store'",
                 tb_env_or("BF_SRCDIR", BF_TEST_SRCDIR), tb_python(),
                 tb_env_or("BF_SRCDIR", BF_TEST_SRCDIR), t->dir);
}

/* Make a fresh temporary directory for a test. */
static inline void tb_mkdir(struct tb *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/bf-test-XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir), "mkdtemp: %s", strerror(errno));
    snprintf(t->path, sizeof(t->path), "%s/db.sqlite", t->dir);
}

/* Remove directory `dir` and its content. */
static inline void tb_rmtree(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    char p[1024];
    if (!dp)
        return;
    while ((de = readdir(dp))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (snprintf(p, sizeof(p), "%s/%s", dir, de->d_name) >= (int)sizeof(p))
            continue;
        if (unlink(p) < 0 && errno == EISDIR)
            tb_rmtree(p);
    }
    closedir(dp);
    rmdir(dir);
}

/* Remove the temporary directory and its content. */
static inline void tb_rmdir(struct tb *t)
{
    tb_rmtree(t->dir);
}

/* Whether db's engine keeps history (backend.h, point-in-time views). */
static inline int tb_history_kept(bf_db *db)
{
    struct bf_history h;
    cr_assert_eq(bf_db_history(db, &h), 0);
    return h.kept;
}

/* Set the database's history retention where the engine keeps history (a
 * no-op elsewhere). */
static inline void tb_history_keep(bf_db *db, int64_t keep_ns)
{
    int r = bf_db_history_keep(db, keep_ns);
    cr_assert(r == 0 || (r == -EOPNOTSUPP && !tb_history_kept(db)), "history_keep: %d", r);
}

/* Open a fresh database of `engine` (the memory one labelled "test"; a
 * SQLite one, or a block server's, in a new temporary directory; or a new
 * PostgreSQL database of the run's server), with flags besides
 * BF_DB_CREATE. It keeps no history (retention 0: the housekeeping and
 * purges collect as they would without history, which is what the tests
 * written before history describe); tests of the history set their own. */
static inline bf_db *tb_open_flags(struct tb *t, int engine, unsigned flags)
{
    bf_db *db = NULL;
    char err[512] = "";
    memset(t, 0, sizeof(*t));
    t->kind = engine;
    if (engine == TB_PGSQL) {
#ifdef TB_PG
        pgt_db_create(t->db, sizeof(t->db));
        snprintf(t->spec, sizeof(t->spec), "pg:%s dbname=%s", pgt_conninfo(0), t->db);
#else
        cr_assert(0, "built without TB_PG");
#endif
    } else if (engine != TB_MEMORY) {
        tb_mkdir(t);
        if (engine == TB_PROTO_C || engine == TB_PROTO_PY)
            tb_proto_spec(t, engine, NULL);
        else
            snprintf(t->spec, sizeof(t->spec), "%s", t->path);
    } else {
        snprintf(t->spec, sizeof(t->spec), "mem:test");
    }
    int r = bf_db_open(t->spec, BF_DB_CREATE | flags, &db, err, sizeof(err));
    cr_assert_eq(r, 0, "bf_db_open: %d %s", r, err);
    if (!(flags & BF_DB_RDONLY))
        tb_history_keep(db, 0);
    return db;
}

static inline bf_db *tb_open(struct tb *t, int engine)
{
    return tb_open_flags(t, engine, 0);
}

/* What a test leaves behind: its temporary directory (SQLite, block
 * servers), its PostgreSQL database (every session closed). */
static inline void tb_done(struct tb *t)
{
    if (t->kind != TB_MEMORY && t->kind != TB_PGSQL)
        tb_rmdir(t);
#ifdef TB_PG
    if (t->kind == TB_PGSQL)
        pgt_db_drop(t->db);
#endif
}

/* Fail the test (closing db and cleaning up first, so that nothing leaks)
 * unless db's engine keeps history. */
static inline void tb_need_history(bf_db *db, struct tb *t)
{
    if (tb_history_kept(db))
        return;
    bf_db_close(db);
    tb_done(t);
    cr_assert(0, "the engine of %s keeps no history", t->spec);
}

/* Open one more session on t's database (tb_open made it), with flags
 * (BF_DB_SHARED, BF_DB_RDONLY); opt NULL: the defaults. */
static inline bf_db *tb_session_opt(struct tb *t, unsigned flags, const struct bf_db_options *opt)
{
    bf_db *db = NULL;
    char err[512] = "";
    int r = bf_db_open_ex(t->spec, flags, opt, &db, err, sizeof(err));
    cr_assert_eq(r, 0, "another session: %d %s", r, err);
    return db;
}

static inline bf_db *tb_session(struct tb *t, unsigned flags)
{
    return tb_session_opt(t, flags, NULL);
}

#ifdef TB_PG
/* Run a one-number query on t's PostgreSQL database through a connection
 * of its own (search_path bigfilefs: the tables' names are SQLite's), with
 * "?1" standing for arg as in SQLite. */
static inline int64_t tb_pg_count(struct tb *t, const char *sql, int64_t arg)
{
    char q[512], a[32];
    const char *vals[1] = { a };
    size_t j = 0;
    for (const char *p = sql; *p && j + 2 < sizeof(q); p++) {
        q[j++] = p[0] == '?' && p[1] == '1' ? '$' : *p;
    }
    q[j] = '\0';
    snprintf(a, sizeof(a), "%lld", (long long)arg);
    PGconn *c = pgt_connect(pgt_conninfo(0), t->db);
    PQclear(pgt_exec(c, "SET search_path = bigfilefs", PGRES_COMMAND_OK));
    PGresult *r = PQexecParams(c, q, strstr(q, "$1") ? 1 : 0, NULL, vals, NULL, NULL, 0);
    cr_assert(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", q, PQerrorMessage(c));
    int64_t n = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    PQfinish(c);
    return n;
}
#endif

/* Run a one-number query (?1 = arg, if the query has it) on t's SQLite or
 * PostgreSQL database through a connection of its own (the tables have the
 * same names); -1 if there is no row. */
static inline int64_t tb_side_count(struct tb *t, const char *sql, int64_t arg)
{
#ifdef TB_PG
    if (t->kind == TB_PGSQL)
        return tb_pg_count(t, sql, arg);
#endif
    sqlite3 *c;
    sqlite3_stmt *st;
    int64_t n = -1;
    cr_assert_eq(sqlite3_open_v2(t->path, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(c, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(c));
    if (sqlite3_bind_parameter_count(st))
        sqlite3_bind_int64(st, 1, arg);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(c);
    return n;
}

#ifndef CORE_MINICR
/* Fork a child that runs fn(arg, fd), which writes one byte to fd when it
 * is where the test wants it and never returns; return its pid once it is
 * there. The child dies with the test's process, should the test fail
 * before it kills it. */
static inline pid_t tb_child_start(void (*fn)(const void *arg, int fd), const void *arg)
{
    int p[2];
    char c;
    cr_assert_eq(pipe(p), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(1);
        close(p[0]);
        fn(arg, p[1]);
        _exit(1);
    }
    close(p[1]);
    cr_assert_eq(read(p[0], &c, 1), 1, "the child died early");
    close(p[0]);
    return pid;
}

/* Kill a child as a crash would (SIGKILL) and reap it. */
static inline void tb_kill_child(pid_t pid)
{
    int st;
    kill(pid, SIGKILL);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the child ended by itself: %d", st);
}
#endif

/* Count stored (non-hole) blocks of file id, through a side channel: the
 * memory backend's counter, or a separate SQLite or PostgreSQL connection
 * (PostgreSQL: a block's current version is its newest). */
static inline int64_t tb_nblocks(struct tb *t, bf_db *db, uint64_t id)
{
#ifdef TB_PG
    if (t->kind == TB_PGSQL)
        return tb_pg_count(t,
                           "SELECT count(*) FROM (SELECT DISTINCT ON (blk) content FROM blockmap "
                           "WHERE file = ?1 ORDER BY blk, serial DESC) c WHERE content IS NOT NULL",
                           (int64_t)id);
#endif
    if (t->kind == TB_MEMORY)
        return (int64_t)bf_mem_blocks(db, id);
    if (t->kind == TB_PROTO_PY) { /* npy_store.py: a file per committed block */
        char d[256];
        int64_t n = 0;
        snprintf(d, sizeof(d), "%s/store/blocks/%llu", t->dir, (unsigned long long)id);
        DIR *dp = opendir(d);
        for (struct dirent *de; dp && (de = readdir(dp));)
            n += strlen(de->d_name) > 4 && strcmp(de->d_name + strlen(de->d_name) - 4, ".npy") == 0;
        if (dp)
            closedir(dp);
        return n;
    }
    sqlite3 *c;
    sqlite3_stmt *st;
    int64_t n = -1;
    cr_assert_eq(sqlite3_open_v2(t->path, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(c,
                                    "SELECT count(*) FROM blockmap WHERE file=? AND superseded IS "
                                    "NULL AND content IS NOT NULL",
                                    -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(c));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(c);
    return n;
}

/* Wait until the clock of the stored times (bf_now_ns) has passed t, so
 * that a change made now gets a later time stamp than one made at t. An
 * event wait on the clock itself, not a guessed sleep. */
static inline void tb_after(int64_t t)
{
    while (bf_now_ns() <= t)
        sched_yield();
}

/* Fill a block with a pattern derived from (blk, tag): never all zeros. */
static inline void tb_fill(void *buf, uint32_t blksize, uint64_t blk, unsigned tag)
{
    uint32_t *w = buf;
    for (uint32_t i = 0; i < blksize / 4; i++)
        w[i] = (uint32_t)(blk * 2654435761u) ^ (tag << 24) ^ i ^ 0x80000000u;
}

/* Nonzero when buf holds tb_fill(blk, tag). */
static inline int tb_check(const void *buf, uint32_t blksize, uint64_t blk, unsigned tag)
{
    const uint32_t *w = buf;
    for (uint32_t i = 0; i < blksize / 4; i++)
        if (w[i] != ((uint32_t)(blk * 2654435761u) ^ (tag << 24) ^ i ^ 0x80000000u))
            return 0;
    return 1;
}

static inline int tb_is_zero(const void *buf, uint32_t n)
{
    const unsigned char *c = buf;
    for (uint32_t i = 0; i < n; i++)
        if (c[i])
            return 0;
    return 1;
}

/* The content operations with what a single session's tests need: the
 * current version (loads), a change made on the newest content (stores
 * and commits based on BF_SERIAL_NOW: never a conflict), a commit that
 * sets the size. Tests of serials and conflicts call the operations
 * themselves. */
static inline int tb_load(bf_file *f, uint64_t blk, void *buf)
{
    return f->ops->loadblk(f, blk, BF_SERIAL_NOW, buf, NULL);
}

static inline int tb_store(bf_file *f, uint64_t blk, const void *buf)
{
    return f->ops->storeblk(f, blk, buf, BF_SERIAL_NOW);
}

/* Commit with the size set to `size`; *serial (if not NULL) gets the
 * commit's serial. */
static inline int tb_commit_serial(bf_file *f, uint64_t size, uint64_t *serial)
{
    struct bf_commit_req req = {
        .size_set = true, .size = size, .size_base = BF_SERIAL_NOW, .file_base = BF_SERIAL_NOW
    };
    uint64_t s = 0;
    int r = f->ops->commit(f, &req, &s);
    if (serial)
        *serial = s;
    return r;
}

static inline int tb_commit(bf_file *f, uint64_t size)
{
    return tb_commit_serial(f, size, NULL);
}

/* Store blocks [lo, hi) with tb_fill(.., tag) in one committed transaction;
 * returns its serial. */
static inline uint64_t tb_store_range(bf_file *f, uint64_t lo, uint64_t hi, unsigned tag,
                                      uint64_t size)
{
    uint64_t serial = 0;
    void *buf = malloc(f->blksize);
    cr_assert_not_null(buf);
    cr_assert_eq(f->ops->begin(f), 0);
    for (uint64_t b = lo; b < hi; b++) {
        tb_fill(buf, f->blksize, b, tag);
        cr_assert_eq(tb_store(f, b, buf), 0);
    }
    cr_assert_eq(tb_commit_serial(f, size, &serial), 0);
    cr_assert_gt(serial, 0);
    free(buf);
    return serial;
}

/* Assert block blk as of serial `at` reads as tb_fill(tag) (tag < 0: as
 * zeros); returns the serial of the version read. */
static inline uint64_t tb_expect_at(bf_file *f, uint64_t blk, uint64_t at, int tag)
{
    void *buf = malloc(f->blksize);
    uint64_t serial = UINT64_MAX;
    cr_assert_not_null(buf);
    memset(buf, 0x5a, f->blksize);
    int r = f->ops->loadblk(f, blk, at, buf, &serial);
    cr_assert_eq(r, 0, "loadblk(%llu at %llu) = %d", (unsigned long long)blk,
                 (unsigned long long)at, r);
    cr_assert_neq(serial, UINT64_MAX, "no serial");
    if (tag < 0)
        cr_assert(tb_is_zero(buf, f->blksize), "block %llu at %llu should read as zeros",
                  (unsigned long long)blk, (unsigned long long)at);
    else
        cr_assert(tb_check(buf, f->blksize, blk, (unsigned)tag),
                  "block %llu at %llu should hold version %d", (unsigned long long)blk,
                  (unsigned long long)at, tag);
    free(buf);
    return serial;
}

/* Assert block blk reads as tb_fill(tag) (tag < 0: as zeros). */
static inline void tb_expect(bf_file *f, uint64_t blk, int tag)
{
    void *buf = malloc(f->blksize);
    cr_assert_not_null(buf);
    memset(buf, 0x5a, f->blksize);
    int r = tb_load(f, blk, buf);
    cr_assert_eq(r, 0, "loadblk(%llu) = %d", (unsigned long long)blk, r);
    if (tag < 0)
        cr_assert(tb_is_zero(buf, f->blksize), "block %llu should read as zeros",
                  (unsigned long long)blk);
    else
        cr_assert(tb_check(buf, f->blksize, blk, (unsigned)tag),
                  "block %llu should hold version %d", (unsigned long long)blk, tag);
    free(buf);
}

/* A cheap checksum of a whole file (FNV-1a), to show it was not modified. */
static inline uint64_t tb_checksum(const char *path)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
    uint64_t h = 1469598103934665603ull;
    int c;
    while ((c = getc(fp)) != EOF)
        h = (h ^ (unsigned char)c) * 1099511628211ull;
    fclose(fp);
    return h;
}

#ifndef TB_PG
/* Run a BOTH body against a fresh database of engine. */
static inline void tb_run(int engine, void (*body)(bf_db *db, struct tb *t))
{
    struct tb t;
    bf_db *db = tb_open(&t, engine);
    body(db, &t);
    bf_db_close(db);
    tb_done(&t);
}

#define BOTH(name, secs)                                \
    static void name##_body(bf_db *db, struct tb *t);   \
    Test(memory, name, .timeout = secs)                 \
    {                                                   \
        tb_run(TB_MEMORY, name##_body);                 \
    }                                                   \
    Test(sqlite, name, .timeout = secs)                 \
    {                                                   \
        tb_run(TB_SQLITE, name##_body);                 \
    }                                                   \
    Test(proto_c, name, .timeout = secs)                \
    {                                                   \
        tb_run(TB_PROTO_C, name##_body);                \
    }                                                   \
    Test(proto_py, name, .timeout = secs)               \
    {                                                   \
        if (!tb_have_python())                          \
            cr_skip_test("no python: %s", tb_python()); \
        tb_run(TB_PROTO_PY, name##_body);               \
    }                                                   \
    static void name##_body(bf_db *db, struct tb *t)
#else
#define BOTH(name, secs)                              \
    static void name##_body(bf_db *db, struct tb *t); \
    Test(pg, name, .timeout = secs)                   \
    {                                                 \
        struct tb t;                                  \
        bf_db *db = tb_open(&t, TB_PGSQL);            \
        name##_body(db, &t);                          \
        bf_db_close(db);                              \
        tb_done(&t);                                  \
    }                                                 \
    static void name##_body(bf_db *db, struct tb *t)
#endif

/* SESSIONS(name, timeout): like BOTH, with TB_NSESSIONS sessions on one
 * database, all shared (db[0] created it); the body gets them in db[] and
 * may close one and set it to NULL. */
#define TB_NSESSIONS 3
#define SESSIONS_RUN(name)                               \
    static void name##_body(bf_db **db, struct tb *t);   \
    static void name##_run(int engine)                   \
    {                                                    \
        struct tb t;                                     \
        bf_db *db[TB_NSESSIONS];                         \
        db[0] = tb_open_flags(&t, engine, BF_DB_SHARED); \
        for (int i = 1; i < TB_NSESSIONS; i++)           \
            db[i] = tb_session(&t, BF_DB_SHARED);        \
        name##_body(db, &t);                             \
        for (int i = 0; i < TB_NSESSIONS; i++)           \
            bf_db_close(db[i]);                          \
        tb_done(&t);                                     \
    }
#ifndef TB_PG
#define SESSIONS(name, secs)            \
    SESSIONS_RUN(name)                  \
    Test(memory, name, .timeout = secs) \
    {                                   \
        name##_run(TB_MEMORY);          \
    }                                   \
    Test(sqlite, name, .timeout = secs) \
    {                                   \
        name##_run(TB_SQLITE);          \
    }                                   \
    static void name##_body(bf_db **db, struct tb *t)
#else
#define SESSIONS(name, secs)        \
    SESSIONS_RUN(name)              \
    Test(pg, name, .timeout = secs) \
    {                               \
        name##_run(TB_PGSQL);       \
    }                               \
    static void name##_body(bf_db **db, struct tb *t)
#endif

#endif /* BIGFILEFS_TESTS_BACKENDS_HELPERS_H */
