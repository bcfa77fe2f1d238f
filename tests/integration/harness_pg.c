/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: the harness's PostgreSQL side (harness.h,
 * "several daemons on one PostgreSQL database"): a fresh database per
 * test on the program's private server (tests/pg/pgserver.sh), the specs
 * the daemons are started with, their connections ended, the server
 * restarted, and SQL behind the daemons' backs. */
#include "config.h"

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#ifdef HAVE_POSTGRESQL
#include <libpq-fe.h>

#include "../pg/pgtest.h"
#include "backends/pg_internal.h"
#endif

int bft_db_is_pg(const char *db)
{
    return strncmp(db, "pg:", 3) == 0;
}

const char *bft_db_of(int m, char *buf, size_t n)
{
    if (!bft.pgdb[0]) {
        snprintf(buf, n, "%s", bft.db);
        return buf;
    }
#ifdef HAVE_POSTGRESQL
    /* bft.db is "pg:" BF_PGTEST_CONNINFO " dbname=NAME" and what a test
     * added; B talks to the server over TCP, as from another machine. */
    const char *tail = bft.db + 3 + strlen(pgt_conninfo(0));
    snprintf(buf, n, "pg:%s%s application_name=bft_m%d", pgt_conninfo(m == 1), tail, m);
#else
    (void)m;
    snprintf(buf, n, "%s", bft.db);
#endif
    return buf;
}

#ifdef HAVE_POSTGRESQL

void bft_setup_pg_nomount(void)
{
    bft_setup_nomount();
    pgt_db_create(bft.pgdb, sizeof(bft.pgdb));
    snprintf(bft.db, sizeof(bft.db), "pg:%s dbname=%s", pgt_conninfo(0), bft.pgdb);
}

/* A connection to the test's database (to `postgres` with admin), or NULL
 * (said on stderr): never asserts, so that a teardown and a wait's
 * condition may use it. */
static PGconn *connect_to(const char *db, int admin)
{
    const char *keys[] = { "dbname", "connect_timeout", "options", admin ? "dbname" : NULL, NULL };
    const char *vals[] = { db, "10", "-c search_path=bigfilefs", "postgres", NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "harness: connect to %s: %s", db, c ? PQerrorMessage(c) : "no memory\n");
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* Run sql on c; the result if its status is `want`, else NULL (said). */
static PGresult *run(PGconn *c, const char *sql, ExecStatusType want)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == want)
        return r;
    fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return NULL;
}

/* A connection to the spec db ("pg:..."), with the TEMP VIEW blocks when
 * the schema is there. */
static PGconn *sql_open(const char *db)
{
    PGconn *c = connect_to(db + 3, 0);
    if (!c)
        return NULL;
    PGresult *r = run(c,
                      "DO $$ BEGIN IF to_regclass('bigfilefs.blockmap') IS NOT NULL THEN "
                      "CREATE TEMP VIEW blocks(file, blk, data) AS SELECT v.file, v.blk, c.data "
                      "FROM (SELECT DISTINCT ON (file, blk) file, blk, content "
                      "FROM bigfilefs.blockmap ORDER BY file, blk, serial DESC) v "
                      "JOIN bigfilefs.contents c ON c.id = v.content; END IF; END $$",
                      PGRES_COMMAND_OK);
    PQclear(r);
    return c;
}

/* Run sql (no result rows) on c (NULL: a connection failed), then close
 * c: 0 or -1. */
static int exec_on(PGconn *c, const char *sql)
{
    if (!c)
        return -1;
    PGresult *r = run(c, sql, PGRES_COMMAND_OK);
    int ret = r ? 0 : -1;
    PQclear(r);
    PQfinish(c);
    return ret;
}

int bft_pg_sql_exec(const char *db, const char *sql)
{
    return exec_on(sql_open(db), sql);
}

/* The integer (or boolean: 1, 0) sql gives on c, into *out: 0 or -1.
 * Closes c. */
static int int_on(PGconn *c, const char *sql, int64_t *out)
{
    PGresult *r = run(c, sql, PGRES_TUPLES_OK);
    int ret = -1;
    if (r && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
        const char *v = PQgetvalue(r, 0, 0);
        *out = strcmp(v, "t") == 0 ? 1 : strcmp(v, "f") == 0 ? 0 : strtoll(v, NULL, 10);
        ret = 0;
    } else if (r) {
        fprintf(stderr, "harness: %s: no value\n", sql);
    }
    PQclear(r);
    PQfinish(c);
    return ret;
}

int bft_pg_sql_int(const char *db, const char *sql, int64_t *out)
{
    PGconn *c = sql_open(db);
    return c ? int_on(c, sql, out) : -1;
}

int bft_pg_terminate(int m)
{
    char sql[256];
    int64_t n = -1;
    /* pg_terminate_backend with a timeout returns once the backend is gone. */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 20000)) "
             "FROM pg_stat_activity WHERE datname = '%s' AND application_name = 'bft_m%d'",
             bft.pgdb, m);
    PGconn *c = connect_to(bft.db + 3, 1); /* the test's database may refuse connections */
    return c && int_on(c, sql, &n) == 0 ? (int)n : -1;
}

int bft_pg_quiet(int m)
{
    char sql[768];
    int64_t n = -1;
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity a WHERE datname = '%s'"
             " AND application_name = 'bft_m%d' AND (state <> 'idle' OR EXISTS"
             " (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.granted AND"
             " l.locktype = 'advisory' AND l.classid = %lld AND l.objid = %d))",
             bft.pgdb, m, (long long)PG_CLASS, PG_LOCK_TRIM);
    PGconn *c = connect_to(bft.db + 3, 1);
    return c && int_on(c, sql, &n) == 0 ? n == 0 : -1;
}

int bft_pg_restart(void)
{
    const char *script = getenv("BF_PGSERVER"), *dir = getenv("BF_PGTEST_DIR");
    char cmd[PATH_MAX * 2 + 32];
    if (!script || !dir)
        return -1;
    snprintf(cmd, sizeof(cmd), "sh '%s' restart '%s' fast", script, dir);
    int st = system(cmd);
    return st == 0 ? 0 : -1;
}

int bft_pg_admin(const char *sql)
{
    return exec_on(connect_to(bft.db + 3, 1), sql);
}

int bft_pg_drop(void)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", bft.pgdb);
    int ret = bft_pg_admin(sql);
    bft.pgdb[0] = 0;
    return ret;
}

#else /* !HAVE_POSTGRESQL */

void bft_setup_pg_nomount(void)
{
    cr_assert_fail("this build has no PostgreSQL (configure --with-postgresql)");
}

int bft_pg_sql_exec(const char *db, const char *sql)
{
    (void)db;
    (void)sql;
    return -1;
}

int bft_pg_sql_int(const char *db, const char *sql, int64_t *out)
{
    (void)db;
    (void)sql;
    (void)out;
    return -1;
}

int bft_pg_terminate(int m)
{
    (void)m;
    return -1;
}

int bft_pg_quiet(int m)
{
    (void)m;
    return -1;
}

int bft_pg_restart(void)
{
    return -1;
}

int bft_pg_admin(const char *sql)
{
    (void)sql;
    return -1;
}

int bft_pg_drop(void)
{
    return -1;
}

#endif

void bft_setup_pg_shared2(void)
{
    bft_setup_pg_nomount();
    bft_mount_shared(2);
}

void bft_setup_pg_shared3(void)
{
    bft_setup_pg_nomount();
    bft_mount_shared(3);
}
