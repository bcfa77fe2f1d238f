/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/backends: what only the PostgreSQL engine has (the
 * shared behaviour runs as test_backends_pg, test_sessions_pg and
 * test_bconcurrent_pg):
 *  - what it refuses, unchanged (pg_dump before and after): a database of
 *    another application, a newer schema version; what it takes: our
 *    schema beside other tables; no password in any message;
 *  - a session over TCP to 127.0.0.1, as a remote machine's, beside one
 *    over the unix socket;
 *  - parallel loads on several connections at once;
 *  - the server restarted during a load (that load fails, the next one
 *    reconnects), during an upload and during the commit section (the
 *    writeout fails with nothing committed, its retry succeeds);
 *  - the watcher's connection killed (pg_terminate_backend): it reconnects
 *    and delivers the commits made meanwhile, in order; a lost mount-mode
 *    lock fences the session;
 *  - a writer killed mid-writeout: nothing partial, its uploads and holds
 *    collected by another session;
 *  - the upgrade of schema version 1 (before history); a session alone
 *    frees replaced versions at once only while nothing pins them (the
 *    rest of the history runs as test_history_pg).
 * Server-side waits (a statement blocked on a lock) are made by a side
 * connection's lock and waited for in pg_locks: tests wait for events. */
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "helpers.h"

#include <criterion/redirect.h> /* after criterion.h */

#define BS 4096u
#define NB 8

static bf_file *open_file(bf_db *db, uint64_t id)
{
    bf_file *f = NULL;
    int r = bf_db_file_open(db, id, &f);
    cr_assert_eq(r, 0, "file_open(%llu) = %d", (unsigned long long)id, r);
    return f;
}

/* File "f" of NB blocks holding tag 1. */
static uint64_t mkfile(bf_db *db, const char *name)
{
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_create(db, name, BS, 0, 0644, 0, 0, &fi), 0);
    bf_file *f = open_file(db, fi.id);
    tb_store_range(f, 0, NB, 1, NB * BS);
    bf_db_file_close(db, f);
    return fi.id;
}

/* A connection of the test's own to t's database. */
static PGconn *side(struct tb *t)
{
    return pgt_connect(pgt_conninfo(0), t->db);
}

/* Run sql (no rows wanted) on a side connection. */
static void side_sql(struct tb *t, const char *sql)
{
    PGconn *c = side(t);
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* A pg: spec for t's database, over TCP or the unix socket, with `extra`
 * conninfo settings. */
static void spec_of(struct tb *t, int tcp, const char *extra, char *buf, size_t len)
{
    snprintf(buf, len, "pg:%s dbname=%s %s", pgt_conninfo(tcp), t->db, extra ? extra : "");
}

/* Open a session on t's database with the engine's options. */
static bf_db *open_pg(struct tb *t, unsigned flags, const struct bf_pg_options *popt)
{
    char conninfo[512], err[512] = "";
    bf_db *db = NULL;
    snprintf(conninfo, sizeof(conninfo), "%s dbname=%s", pgt_conninfo(0), t->db);
    int r = bf_pg_open(conninfo, flags, NULL, popt, &db, err, sizeof(err));
    cr_assert_eq(r, 0, "bf_pg_open: %d %s", r, err);
    return db;
}

/* A fresh, empty database of the test's own (no bigfilefs schema yet). */
static void fresh_db(struct tb *t)
{
    memset(t, 0, sizeof(*t));
    t->kind = TB_PGSQL;
    pgt_db_create(t->db, sizeof(t->db));
    snprintf(t->spec, sizeof(t->spec), "pg:%s dbname=%s", pgt_conninfo(0), t->db);
}

/* A checksum of everything in t's database: pg_dump's output (schema and
 * data, sequences included), without its per-run \restrict key. */
static uint64_t dump_sum(struct tb *t)
{
    char cmd[1024], line[4096];
    const char *bin = getenv("BF_PGTEST_BINDIR"), *dir = getenv("BF_PGTEST_DIR"),
               *port = getenv("BF_PGTEST_PORT");
    cr_assert(bin && dir && port, "run through tests/pg/pgserver.sh");
    snprintf(cmd, sizeof(cmd), "%s/pg_dump -h %s -p %s -U postgres -d %s", bin, dir, port, t->db);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    uint64_t h = 1469598103934665603ull;
    while (fgets(line, sizeof(line), p)) {
        if (strncmp(line, "\\restrict", 9) == 0 || strncmp(line, "\\unrestrict", 11) == 0)
            continue;
        for (const char *c = line; *c; c++)
            h = (h ^ (unsigned char)*c) * 1099511628211ull;
    }
    cr_assert_eq(pclose(p), 0, "pg_dump failed");
    return h;
}

/* Wait (polling pg_locks, up to 30 s) until at least n lock requests in t's
 * database are waiting. */
static void wait_lock_waiters(struct tb *t, int n)
{
    PGconn *c = side(t);
    for (int i = 0; i < 3000; i++) {
        PGresult *r = pgt_exec(c,
                               "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN "
                               "pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted AND "
                               "a.datname = current_database()",
                               PGRES_TUPLES_OK);
        int got = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (got >= n) {
            PQfinish(c);
            return;
        }
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    PQfinish(c);
    cr_assert(0, "no %d statements came to wait for a lock", n);
}

/* The backend pid holding session id's liveness lock (0: none). */
static int live_pid(struct tb *t, uint64_t id)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
             "classid = 1111883777 AND objid = %llu AND objsubid = 2",
             (unsigned long long)id);
    PGconn *c = side(t);
    PGresult *r = pgt_exec(c, sql, PGRES_TUPLES_OK);
    int pid = PQntuples(r) ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    PQfinish(c);
    return pid;
}

/* Wait (polling, up to 30 s) until no backend holds session id's lock. */
static void wait_lock_gone(struct tb *t, uint64_t id)
{
    for (int i = 0; i < 3000 && live_pid(t, id); i++) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(live_pid(t, id), 0, "session %llu's lock is still held", (unsigned long long)id);
}

/* Restart the server as a crash would: every backend ends at once (a
 * statement waiting for a lock cannot get it from a holder that ends
 * first, and answer after all). */
static void restart_server(void)
{
    char cmd[512];
    const char *srv = getenv("BF_PGSERVER"), *dir = getenv("BF_PGTEST_DIR");
    cr_assert(srv && dir, "run through tests/pg/pgserver.sh");
    snprintf(cmd, sizeof(cmd), "sh '%s' restart '%s' immediate", srv, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* ---- what is refused, what is taken ------------------------------------------ */

static void expect_refused(struct tb *t, unsigned flags, int err, const char *why)
{
    bf_db *db = (bf_db *)0x1;
    char msg[512] = "";
    uint64_t before = dump_sum(t);
    int r = bf_db_open(t->spec, flags, &db, msg, sizeof(msg));
    cr_assert_eq(r, err, "open: %d (%s)", r, msg);
    cr_assert_null(db);
    cr_assert_not_null(strstr(msg, why), "%s", msg);
    cr_assert_not_null(strstr(msg, t->db), "the message names the database: %s", msg);
    cr_assert_eq(dump_sum(t), before, "the database was modified");
}

Test(pg_refuse, another_applications_database_unchanged, .timeout = 60)
{
    struct tb t;
    fresh_db(&t);
    side_sql(&t, "CREATE TABLE public.accounts (id int PRIMARY KEY, owner text);"
                 "INSERT INTO public.accounts VALUES (1, 'a'), (2, 'b')");
    expect_refused(&t, BF_DB_CREATE, -EPROTO, "not a bigfilefs database");
    expect_refused(&t, BF_DB_CREATE | BF_DB_SHARED, -EPROTO, "another application's tables: 1,");
    expect_refused(&t, BF_DB_RDONLY, -EPROTO, "not a bigfilefs database");
    cr_assert_eq(
        tb_pg_count(&t, "SELECT count(*) FROM pg_namespace WHERE nspname = 'bigfilefs'", 0), 0);
    tb_done(&t);
}

Test(pg_refuse, a_newer_schema_version_unchanged, .timeout = 60)
{
    struct tb t;
    fresh_db(&t);
    bf_db *db = tb_session(&t, BF_DB_CREATE);
    mkfile(db, "f");
    bf_db_close(db);
    char sql[128], why[64];
    snprintf(sql, sizeof(sql), "UPDATE bigfilefs.meta SET value = %d WHERE key = 'version'",
             BF_PG_SCHEMA_VERSION + 1);
    snprintf(why, sizeof(why), "schema version %d, newer", BF_PG_SCHEMA_VERSION + 1);
    side_sql(&t, sql);
    expect_refused(&t, BF_DB_CREATE, -EPROTONOSUPPORT, why);
    expect_refused(&t, BF_DB_RDONLY | BF_DB_SHARED, -EPROTONOSUPPORT, why);
    tb_done(&t);
}

/* ---- the upgrade of version 1 (before history) -------------------------------- */

static int no_entry(void *arg, const struct bf_log_entry *e)
{
    (void)arg, (void)e;
    return 1;
}

/* A database of schema version 1, as bigfilefs before history left it:
 * files f (NB blocks of tag 1) and g (empty), and *serial its serial. Made
 * by this build, with what version 2 added taken away again (the xattrs
 * table too: it came later than version 1's first release). */
static void make_v1(struct tb *t, uint64_t *f, uint64_t *g, uint64_t *serial)
{
    struct bf_fileinfo gi;
    fresh_db(t);
    bf_db *db = tb_session(t, BF_DB_CREATE);
    *f = mkfile(db, "f");
    cr_assert_eq(bf_db_create(db, "g", BS, 0, 0644, 0, 0, &gi), 0);
    *g = gi.id;
    cr_assert_eq(bf_db_sync(db, serial), 0);
    bf_db_close(db);
    side_sql(t, "DROP TABLE bigfilefs.file_states, bigfilefs.pins, bigfilefs.xattrs;"
                "DELETE FROM bigfilefs.meta WHERE key IN ('history_from', 'history_keep_ns');"
                "UPDATE bigfilefs.meta SET value = 1 WHERE key = 'version'");
}

/* A read-only open of version 1 is refused, changing nothing; the first
 * read-write open upgrades it in place: history kept from the serial of the
 * upgrade on, each file's state as it was then. */
Test(pg_upgrade, version_1_is_upgraded_at_its_first_read_write_open, .timeout = 60)
{
    struct tb t;
    uint64_t f, g, s;
    make_v1(&t, &f, &g, &s);
    expect_refused(&t, BF_DB_RDONLY | BF_DB_SHARED, -EROFS,
                   "upgrade it by mounting it read-write once");
    bf_db *db = tb_session(&t, BF_DB_SHARED);
    cr_assert_eq(tb_pg_count(&t, "SELECT value FROM meta WHERE key = 'version'", 0),
                 BF_PG_SCHEMA_VERSION);
    cr_assert_eq(tb_pg_count(&t, "SELECT count(*) FROM file_states WHERE serial = ?1", (int64_t)s),
                 2, "one state a file, at the serial of the upgrade");
    cr_assert_eq(tb_pg_count(&t, "SELECT count(*) FROM file_states", 0), 2);
    struct bf_history h;
    cr_assert_eq(bf_db_history(db, &h), 0);
    cr_assert(h.kept);
    cr_assert_eq(h.from, s, "history starts at the upgrade");
    cr_assert_eq(h.current, s);
    cr_assert_eq(h.keep_ns, BF_HISTORY_KEEP_NS);
    bf_view *v;
    cr_assert_eq(bf_db_view_open(db, s - 1, &v), -ENOENT, "nothing older was kept");
    cr_assert_eq(bf_db_unlink(db, "g"), 0);
    cr_assert_eq(bf_db_view_open(db, s, &v), 0);
    struct bf_fileinfo fi;
    cr_assert_eq(bf_view_lookup(v, "f", &fi), 0);
    cr_assert_eq(fi.id, f);
    cr_assert_eq(fi.size, NB * BS);
    cr_assert_eq(bf_view_lookup(v, "g", &fi), 0, "g had its name at the upgrade");
    cr_assert_eq(fi.id, g);
    bf_file *vf;
    cr_assert_eq(bf_view_file_open(v, f, &vf), 0);
    for (uint64_t b = 0; b < NB; b++)
        tb_expect(vf, b, 1);
    bf_db_file_close(db, vf);
    bf_db_view_close(v);
    cr_assert_eq(bf_db_file_log(db, f, UINT64_MAX, 16, no_entry, NULL), 0,
                 "f was created before history began");
    cr_assert_eq(bf_db_setxattr(db, f, "user.a", "1", 1, 0), 0, "the xattrs table was made");
    bf_db_close(db);
    /* upgraded once: a read-only open takes it now, unchanged */
    uint64_t sum = dump_sum(&t);
    db = tb_session(&t, BF_DB_RDONLY | BF_DB_SHARED);
    cr_assert_eq(bf_db_history(db, &h), 0);
    cr_assert_eq(h.from, s);
    bf_db_close(db);
    cr_assert_eq(dump_sum(&t), sum);
    tb_done(&t);
}

Test(pg_refuse, an_empty_database_read_only_or_without_create, .timeout = 60)
{
    struct tb t;
    fresh_db(&t);
    expect_refused(&t, BF_DB_RDONLY, -EPROTO, "a read-write mount creates it");
    expect_refused(&t, 0, -EPROTO, "open it with create");
    char spec[512], msg[512] = "";
    bf_db *db = NULL;
    snprintf(spec, sizeof(spec), "pg:%s dbname=bft_no_such_database", pgt_conninfo(0));
    cr_assert_eq(bf_db_open(spec, BF_DB_CREATE, &db, msg, sizeof(msg)), -ENOENT, "%s", msg);
    cr_assert_not_null(strstr(msg, "bft_no_such_database"), "%s", msg);
    cr_assert_eq(bf_db_open("pg:host=", BF_DB_CREATE, &db, msg, sizeof(msg)) < 0, 1);
    cr_assert_eq(bf_db_open("pg:nonsense without equals = =", 0, &db, msg, sizeof(msg)), -EINVAL,
                 "%s", msg);
    tb_done(&t);
}

/* Our schema is used even with another application's tables beside it. */
Test(pg_open, our_schema_beside_other_tables, .timeout = 60)
{
    struct tb t;
    fresh_db(&t);
    bf_db *db = tb_session(&t, BF_DB_CREATE);
    uint64_t id = mkfile(db, "f");
    bf_db_close(db);
    side_sql(&t,
             "CREATE TABLE public.other (x int); CREATE SCHEMA app; CREATE TABLE app.y (z int)");
    db = tb_session(&t, BF_DB_CREATE);
    bf_file *f = open_file(db, id);
    tb_expect(f, 3, 1);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_done(&t);
}

/* An empty schema bigfilefs (made by an administrator for the role) is
 * filled in. */
Test(pg_open, an_empty_schema_made_for_it_is_filled_in, .timeout = 60)
{
    struct tb t;
    fresh_db(&t);
    side_sql(&t, "CREATE SCHEMA bigfilefs");
    bf_db *db = tb_session(&t, BF_DB_CREATE);
    mkfile(db, "f");
    bf_db_close(db);
    tb_done(&t);
}

Test(pg_open, no_password_in_messages, .init = cr_redirect_stderr, .timeout = 60)
{
    struct tb t;
    char buf[512], msg[512] = "", spec[512];
    bf_db *db = NULL;
    cr_assert_eq(bf_pg_redact("host=db1 password=s3cret dbname=arrays", buf, sizeof(buf)), 0);
    cr_assert_null(strstr(buf, "s3cret"), "%s", buf);
    cr_assert_not_null(strstr(buf, "password=***"), "%s", buf);
    cr_assert_not_null(strstr(buf, "dbname=arrays"), "%s", buf);
    cr_assert_eq(
        bf_pg_redact("postgresql://u:s3cret@db1:5433/arrays?sslmode=disable", buf, sizeof(buf)), 0);
    cr_assert_null(strstr(buf, "s3cret"), "%s", buf);
    cr_assert_not_null(strstr(buf, "host=db1"), "%s", buf);
    cr_assert_eq(bf_pg_redact("postgresql://u:s3%zz@db1/x", buf, sizeof(buf)), -EINVAL);
    cr_assert_null(strstr(buf, "s3"), "%s", buf);
    /* a failed open, a working session whose connections break */
    snprintf(spec, sizeof(spec), "pg:%s dbname=bft_none password=s3cret", pgt_conninfo(0));
    cr_assert_lt(bf_db_open(spec, BF_DB_CREATE, &db, msg, sizeof(msg)), 0);
    cr_assert_null(strstr(msg, "s3cret"), "%s", msg);
    fresh_db(&t);
    spec_of(&t, 0, "password=s3cret", spec, sizeof(spec));
    cr_assert_eq(bf_db_open(spec, BF_DB_CREATE, &db, msg, sizeof(msg)), 0, "%s", msg);
    uint64_t id = mkfile(db, "f");
    side_sql(&t, "SELECT pg_terminate_backend(pid, 20000) FROM pg_stat_activity WHERE datname = "
                 "current_database() AND pid <> pg_backend_pid()");
    bf_file *f = open_file(db, id);
    tb_expect(f, 0, 1);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_done(&t);
    fflush(stderr);
    FILE *err = cr_get_redirected_stderr();
    char line[1024];
    int lines = 0;
    while (fgets(line, sizeof(line), err)) {
        cr_assert_null(strstr(line, "s3cret"), "a password in the log: %s", line);
        lines++;
    }
    cr_assert_gt(lines, 0, "the broken connections were logged");
}

/* ---- a session over TCP ------------------------------------------------------ */

struct seen {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t serials[64];
    enum bf_commit_kind kinds[64];
    size_t n;
};

static void listen_fn(void *arg, const struct bf_commit_rec *rec)
{
    struct seen *s = arg;
    pthread_mutex_lock(&s->lock);
    if (s->n < 64) {
        s->serials[s->n] = rec->serial;
        s->kinds[s->n] = rec->kind;
    }
    s->n++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void seen_init(struct seen *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

/* Wait (up to 30 s, on the condition) until s holds n records. */
static bool seen_wait(struct seen *s, size_t n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&s->lock);
    int r = 0;
    while (s->n < n && r == 0)
        r = pthread_cond_timedwait(&s->cond, &s->lock, &until);
    bool ok = s->n >= n;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

Test(pg_tcp, a_session_over_tcp_beside_one_over_the_socket, .timeout = 60)
{
    struct tb t;
    char spec[512], msg[512] = "";
    struct seen sb;
    seen_init(&sb);
    bf_db *a = tb_open_flags(&t, TB_PGSQL, BF_DB_SHARED), *b = NULL;
    spec_of(&t, 1, NULL, spec, sizeof(spec));
    cr_assert_eq(bf_db_open(spec, BF_DB_SHARED, &b, msg, sizeof(msg)), 0, "%s", msg);
    /* B really talks TCP to the server, as a remote machine would */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT host(client_addr) FROM pg_stat_activity WHERE pid = %d AND client_addr IS "
             "NOT NULL",
             live_pid(&t, bf_db_session(b)));
    PGconn *c = side(&t);
    PGresult *r = pgt_exec(c, sql, PGRES_TUPLES_OK);
    cr_assert_eq(PQntuples(r), 1, "B's watcher is not on TCP");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "127.0.0.1");
    PQclear(r);
    PQfinish(c);
    cr_assert_eq(bf_db_watch(b, listen_fn, &sb), 0);
    uint64_t id = mkfile(a, "f"); /* two commits */
    cr_assert(seen_wait(&sb, 2), "B's watcher did not hear of A's commits");
    bf_file *fb = open_file(b, id), *fa = open_file(a, id);
    tb_expect(fb, 5, 1);
    tb_store_range(fb, 5, 6, 2, NB * BS);
    tb_expect(fa, 5, 2);
    uint64_t s;
    cr_assert_eq(bf_db_sync(b, &s), 0);
    cr_assert_eq(bf_db_applied(b), s);
    bf_db_file_close(a, fa);
    bf_db_file_close(b, fb);
    bf_db_close(b);
    bf_db_close(a);
    tb_done(&t);
}

/* ---- loads ----------------------------------------------------------------------- */

struct loader {
    bf_file *f;
    uint64_t blk;
    int tag; /* expected */
    int r;
    bool ok;
};

static void *load_one(void *arg)
{
    struct loader *l = arg;
    void *buf = malloc(l->f->blksize);
    l->r = buf ? tb_load(l->f, l->blk, buf) : -ENOMEM;
    l->ok = l->r == 0 && tb_check(buf, l->f->blksize, l->blk, (unsigned)l->tag);
    free(buf);
    return NULL;
}

/* Loads of one session run on several connections at once: four loads
 * held by a lock on the server are four backends waiting. */
Test(pg_load, parallel_loads_run_on_several_connections, .timeout = 60)
{
    struct tb t;
    pthread_t th[4];
    struct loader l[4];
    bf_db *db = tb_open(&t, TB_PGSQL);
    uint64_t id = mkfile(db, "f");
    PGconn *c = side(&t);
    PQclear(pgt_exec(c, "BEGIN; LOCK TABLE bigfilefs.contents IN ACCESS EXCLUSIVE MODE",
                     PGRES_COMMAND_OK));
    bf_file *f = open_file(db, id);
    for (int i = 0; i < 4; i++) {
        l[i] = (struct loader){ .f = f, .blk = (uint64_t)i, .tag = 1 };
        cr_assert_eq(pthread_create(&th[i], NULL, load_one, &l[i]), 0);
    }
    wait_lock_waiters(&t, 4);
    PQclear(pgt_exec(c, "COMMIT", PGRES_COMMAND_OK));
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert(l[i].ok, "load %d: %d", i, l[i].r);
    }
    PQfinish(c);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_done(&t);
}

/* The server restarts while a load waits on it: that load fails with EIO,
 * nothing hangs, and the next load reconnects and succeeds. */
Test(pg_restart, during_a_load_that_load_fails_the_next_reconnects, .timeout = 120)
{
    struct tb t;
    pthread_t th;
    bf_db *db = tb_open(&t, TB_PGSQL);
    uint64_t id = mkfile(db, "f");
    bf_file *f = open_file(db, id);
    tb_expect(f, 1, 1); /* the reader connection is open */
    PGconn *c = side(&t);
    PQclear(pgt_exec(c, "BEGIN; LOCK TABLE bigfilefs.contents IN ACCESS EXCLUSIVE MODE",
                     PGRES_COMMAND_OK));
    struct loader l = { .f = f, .blk = 2, .tag = 1 };
    cr_assert_eq(pthread_create(&th, NULL, load_one, &l), 0);
    wait_lock_waiters(&t, 1);
    restart_server();
    pthread_join(th, NULL);
    cr_assert_eq(l.r, -EIO, "the load during the restart: %d", l.r);
    PQfinish(c);
    for (uint64_t b = 0; b < NB; b++)
        tb_expect(f, b, 1);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_done(&t);
}

/* ---- writeouts during a restart ------------------------------------------------- */

struct storer {
    bf_file *f;
    uint64_t lo, hi;
    unsigned tag;
    bool commit;
    int r;
};

/* Store blocks [lo, hi) with tag in the open transaction, then (commit)
 * commit it; r: the first failure. */
static void *store_some(void *arg)
{
    struct storer *s = arg;
    void *buf = malloc(s->f->blksize);
    s->r = buf ? 0 : -ENOMEM;
    for (uint64_t b = s->lo; s->r == 0 && b < s->hi; b++) {
        tb_fill(buf, s->f->blksize, b, s->tag);
        s->r = tb_store(s->f, b, buf);
    }
    if (s->r == 0 && s->commit)
        s->r = tb_commit(s->f, NB * BS);
    free(buf);
    return NULL;
}

/* A writeout whose upload (lock: the contents table) or commit section
 * (lock: the counter row) is waiting on the server when it restarts: it
 * fails with EIO, nothing of it is committed; retried, it commits. */
static void restart_during_writeout(const char *lock, bool in_upload)
{
    struct tb t;
    pthread_t th;
    bf_db *db = tb_open(&t, TB_PGSQL);
    uint64_t id = mkfile(db, "f");
    bf_file *f = open_file(db, id);
    uint64_t before, now;
    cr_assert_eq(bf_db_sync(db, &before), 0);
    PGconn *c = side(&t);
    PQclear(pgt_exec(c, "BEGIN", PGRES_COMMAND_OK));
    PQclear(pgt_exec(c, lock, in_upload ? PGRES_COMMAND_OK : PGRES_TUPLES_OK));
    cr_assert_eq(f->ops->begin(f), 0);
    struct storer s = { .f = f, .lo = 0, .hi = 4, .tag = 2, .commit = true };
    cr_assert_eq(pthread_create(&th, NULL, store_some, &s), 0);
    wait_lock_waiters(&t, 1);
    restart_server();
    pthread_join(th, NULL);
    PQfinish(c);
    cr_assert_eq(s.r, -EIO, "the writeout during the restart: %d", s.r);
    if (in_upload)
        f->ops->abort(f); /* a failed store leaves the transaction to the core, which aborts */
    /* nothing of it committed */
    cr_assert_eq(bf_db_sync(db, &now), 0);
    cr_assert_eq(now, before, "a serial was taken");
    for (uint64_t b = 0; b < NB; b++)
        tb_expect(f, b, 1);
    /* the retry, as the core makes it */
    cr_assert_eq(f->ops->begin(f), 0);
    s = (struct storer){ .f = f, .lo = 0, .hi = 4, .tag = 2, .commit = true };
    store_some(&s);
    cr_assert_eq(s.r, 0, "the retry: %d", s.r);
    for (uint64_t b = 0; b < NB; b++)
        tb_expect(f, b, b < 4 ? 2 : 1);
    cr_assert_eq(bf_db_trim(db), 0);
    cr_assert_eq(tb_pg_count(&t, "SELECT count(*) FROM uploads", 0), 0,
                 "the failed attempt's uploads were given up and deleted");
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_done(&t);
}

Test(pg_restart, during_an_upload_the_writeout_fails_and_its_retry_commits, .timeout = 120)
{
    restart_during_writeout("LOCK TABLE bigfilefs.contents IN ACCESS EXCLUSIVE MODE", true);
}

Test(pg_restart, during_the_commit_section_the_writeout_fails_and_its_retry_commits, .timeout = 120)
{
    restart_during_writeout("SELECT serial FROM bigfilefs.counter FOR UPDATE", false);
}

/* ---- the watcher's connection ---------------------------------------------------- */

/* Killed (pg_terminate_backend), the watcher's connection comes back: the
 * session's lock is taken again, and the commits made meanwhile are
 * delivered, in order, none twice. */
Test(pg_watch, a_killed_watcher_reconnects_and_catches_up, .timeout = 60)
{
    struct tb t;
    struct seen sb;
    seen_init(&sb);
    bf_db *a = tb_open_flags(&t, TB_PGSQL, BF_DB_SHARED);
    bf_db *b = tb_session(&t, BF_DB_SHARED);
    cr_assert_eq(bf_db_watch(b, listen_fn, &sb), 0);
    uint64_t id = mkfile(a, "f"), s;
    cr_assert_eq(bf_db_sync(b, &s), 0);
    int pid = live_pid(&t, bf_db_session(b));
    cr_assert_gt(pid, 0);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d, 20000)", pid);
    PGconn *c = side(&t);
    PQclear(pgt_exec(c, sql, PGRES_TUPLES_OK));
    PQfinish(c);
    bf_file *f = open_file(a, id);
    for (unsigned i = 0; i < 5; i++)
        tb_store_range(f, i, i + 1, 3 + i, NB * BS);
    cr_assert_eq(bf_db_create(a, "g", BS, 0, 0644, 0, 0, NULL), 0);
    bf_db_file_close(a, f);
    cr_assert(seen_wait(&sb, 8), "B heard of %zu commits", sb.n);
    cr_assert_eq(bf_pg_wait_reconnects(b, 1, 30000), 0);
    cr_assert_eq(bf_db_sync(b, &s), 0);
    pthread_mutex_lock(&sb.lock);
    cr_assert_eq(sb.n, 8, "every commit once: %zu", sb.n);
    for (size_t i = 1; i < sb.n; i++)
        cr_assert_eq(sb.serials[i], sb.serials[i - 1] + 1, "in order, none missing");
    cr_assert_eq(sb.kinds[7], BF_COMMIT_CREATE);
    cr_assert_eq(sb.serials[7], s);
    pthread_mutex_unlock(&sb.lock);
    int again = live_pid(&t, bf_db_session(b));
    cr_assert(again > 0 && again != pid, "B's session lock is held again");
    bf_db_close(b);
    bf_db_close(a);
    tb_done(&t);
}

/* An exclusive session cut off from the server finds, when its watcher's
 * connection comes back, another session has taken the database: it
 * refuses writes (EIO) from then on, and reads go on. */
Test(pg_watch, a_lost_mount_lock_fences_the_session, .init = cr_redirect_stderr, .timeout = 60)
{
    struct tb t;
    bf_db *a = tb_open(&t, TB_PGSQL);
    uint64_t id = mkfile(a, "f");
    side_sql(&t, "SELECT pg_terminate_backend(pid, 20000) FROM pg_stat_activity WHERE datname = "
                 "current_database() AND pid <> pg_backend_pid()");
    bf_db *b = tb_session(&t, BF_DB_SHARED); /* the database looks free */
    cr_assert_eq(bf_db_trim(a), -EIO, "A's watcher comes back and cannot take its lock");
    bf_file *f = open_file(a, id);
    tb_expect(f, 2, 1);
    cr_assert_eq(f->ops->begin(f), -EIO);
    cr_assert_eq(bf_db_create(a, "g", BS, 0, 0644, 0, 0, NULL), -EIO);
    bf_db_file_close(a, f);
    bf_db_close(a);
    bf_db_close(b);
    tb_done(&t);
}

/* ---- a writer killed mid-writeout ------------------------------------------------- */

/* The child: a session that holds file gid and uploads 16 blocks of file
 * id, tells the parent (one byte on fd), and waits to be killed. */
static void upload_child(const char *spec, uint64_t id, uint64_t gid, int fd)
{
    bf_db *db;
    bf_file *f, *g;
    char err[512];
    void *buf = malloc(BS);
    if (!buf || bf_db_open(spec, BF_DB_SHARED, &db, err, sizeof(err)) < 0 ||
        bf_db_file_open(db, id, &f) < 0 || bf_db_file_open(db, gid, &g) < 0)
        _exit(2);
    if (f->ops->begin(f) < 0)
        _exit(3);
    for (uint64_t b = 0; b < 16; b++) {
        tb_fill(buf, BS, b, 2);
        if (tb_store(f, b, buf) < 0)
            _exit(4);
    }
    if (write(fd, "x", 1) != 1)
        _exit(5);
    for (;;)
        pause();
}

Test(pg_crash, a_writer_killed_mid_writeout_leaves_nothing_and_its_uploads_are_collected,
     .timeout = 60)
{
    struct tb t;
    struct bf_fileinfo gi;
    struct bf_pg_options quick = { .dead_grace_ms = 1 };
    fresh_db(&t);
    bf_db *a = open_pg(&t, BF_DB_CREATE | BF_DB_SHARED, &quick);
    tb_history_keep(a, 0); /* no history: g goes once no session holds it */
    uint64_t id = mkfile(a, "f");
    cr_assert_eq(bf_db_create(a, "g", BS, 0, 0644, 0, 0, &gi), 0);
    int64_t contents = tb_pg_count(&t, "SELECT count(*) FROM contents", 0);
    uint64_t before;
    cr_assert_eq(bf_db_sync(a, &before), 0);
    int p[2];
    char ch;
    cr_assert_eq(pipe(p), 0);
    pid_t parent = getpid(), pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(1);
        close(p[0]);
        upload_child(t.spec, id, gi.id, p[1]);
        _exit(1);
    }
    close(p[1]);
    cr_assert_eq(read(p[0], &ch, 1), 1, "the child died early");
    close(p[0]);
    cr_assert_eq(tb_pg_count(&t, "SELECT count(*) FROM sessions", 0), 2);
    cr_assert_eq(tb_pg_count(&t, "SELECT count(*) FROM uploads WHERE session <> 0", 0), 16);
    int64_t child = tb_pg_count(&t, "SELECT max(id) FROM sessions", 0);
    /* alive, the child keeps g and its uploads */
    cr_assert_eq(bf_db_unlink(a, "g"), 0);
    cr_assert_eq(bf_db_trim(a), 0);
    cr_assert_eq(bf_db_getinfo(a, gi.id, NULL), 0, "held by the live child");
    cr_assert_eq(tb_pg_count(&t, "SELECT count(*) FROM uploads", 0), 16, "a live session's");

    int st;
    kill(pid, SIGKILL);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    wait_lock_gone(&t, (uint64_t)child); /* the server noticed */
    cr_assert_eq(bf_db_trim(a), 0);
    cr_assert_eq(tb_pg_count(&t, "SELECT count(*) FROM uploads", 0), 0, "its uploads went");
    cr_assert_eq(tb_pg_count(&t, "SELECT count(*) FROM contents", 0), contents);
    cr_assert_eq(tb_pg_count(&t, "SELECT count(*) FROM sessions", 0), 1, "its row went");
    cr_assert_eq(tb_pg_count(&t, "SELECT count(*) FROM holds", 0), 0, "and its holds");
    cr_assert_eq(bf_db_getinfo(a, gi.id, NULL), -ENOENT, "g was held by it alone: purged");
    uint64_t now;
    cr_assert_eq(bf_db_sync(a, &now), 0);
    cr_assert_eq(now, before + 1, "the unlink, and nothing of the child's");
    bf_file *f = open_file(a, id);
    for (uint64_t b = 0; b < NB; b++)
        tb_expect(f, b, 1);
    bf_db_file_close(a, f);
    bf_db_close(a);
    tb_done(&t);
}

/* ---- history ------------------------------------------------------------------ */

/* A session alone on a database that keeps no history frees what its
 * commits replace at once (COHERENCE.md rule 3), but not while a view of
 * its own pins an older serial. */
Test(pg_history, a_pin_keeps_what_a_session_alone_would_free, .timeout = 60)
{
    struct tb t;
    fresh_db(&t);
    bf_db *db = open_pg(&t, BF_DB_CREATE, NULL);
    tb_history_keep(db, 0);
    uint64_t id = mkfile(db, "f"), s1;
    cr_assert_eq(bf_db_sync(db, &s1), 0);
    const char *q = "SELECT count(*) FROM blockmap WHERE file = ?1 AND blk = 0";
    cr_assert_eq(tb_pg_count(&t, q, (int64_t)id), 1);
    bf_view *v;
    bf_file *vf;
    cr_assert_eq(bf_db_view_open(db, s1, &v), 0);
    cr_assert_eq(bf_view_file_open(v, id, &vf), 0);
    bf_file *f = open_file(db, id);
    tb_store_range(f, 0, 1, 2, NB * BS);
    cr_assert_eq(tb_pg_count(&t, q, (int64_t)id), 2, "the pinned serial's version stays");
    tb_expect(vf, 0, 1);
    bf_db_file_close(db, vf);
    bf_db_view_close(v);
    uint64_t s3 = tb_store_range(f, 0, 1, 3, NB * BS);
    cr_assert_eq(tb_pg_count(&t, q, (int64_t)id), 1, "unpinned: freed at the commit");
    struct bf_history h;
    cr_assert_eq(bf_db_history(db, &h), 0);
    cr_assert_eq(h.from, s3, "and the history with it");
    tb_expect(f, 0, 3);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_done(&t);
}
