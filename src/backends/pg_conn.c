/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the PostgreSQL engine's connections (see
 * pg_internal.h for who uses which).
 *
 * Nothing may hang: every connection is non-blocking, and every libpq call
 * goes through one wait (wait_ready: flush what is queued, read until a
 * result is complete) bounded by a deadline — the connect timeout while
 * connecting, then the server's statement_timeout of the connection's kind
 * plus a margin, so that the server's timeout normally fires first (a
 * clean error, the connection stays usable). At the client's deadline the
 * connection is declared broken and closed (no cancel request: PQcancel
 * blocks), and the next use opens a new one. Host names are resolved by
 * libpq synchronously while connecting: a hanging DNS server is not
 * covered (bigfilefs(8) says so).
 *
 * A connection's life:
 *   closed --pgc_open: connected, settings, statements prepared--> open
 *   open   --a call fails on the connection (broken, or past its
 *            deadline), or found ended while idle (pgc_ensure)--> closed
 *   open   --pgc_close--> closed
 *
 * Statements are prepared once per connection (pg_sql.c), sent with binary
 * parameters and read as binary results: block contents and int8[] arrays
 * travel as bytes, never as hex or escaped text.
 *
 * The conninfo is the user's, in any libpq form; the engine puts its own
 * defaults before it (so the user's settings win): TCP keepalives and a
 * TCP user timeout (a vanished server is noticed), client_encoding UTF8,
 * fallback_application_name bigfilefs. It is never logged: messages name
 * the database by its redacted form (bf_pg_redact).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/pg_internal.h"

/* ---- parameters and results ------------------------------------------------- */

static void put_be64(unsigned char *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        b[i] = (unsigned char)v;
        v >>= 8;
    }
}

static uint64_t get_be(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | b[i];
    return v;
}

void pgp_i64(struct pgp *p, int64_t v)
{
    BF_ASSERT(p->n < PGP_MAX);
    put_be64(p->num[p->n], (uint64_t)v);
    p->v[p->n] = (const char *)p->num[p->n];
    p->len[p->n] = 8;
    p->fmt[p->n++] = 1;
}

void pgp_u64(struct pgp *p, uint64_t v)
{
    pgp_i64(p, v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v);
}

void pgp_bool(struct pgp *p, bool v)
{
    BF_ASSERT(p->n < PGP_MAX);
    p->num[p->n][0] = v;
    p->v[p->n] = (const char *)p->num[p->n];
    p->len[p->n] = 1;
    p->fmt[p->n++] = 1;
}

void pgp_null(struct pgp *p)
{
    BF_ASSERT(p->n < PGP_MAX);
    p->v[p->n] = NULL;
    p->len[p->n] = 0;
    p->fmt[p->n++] = 1;
}

void pgp_bytes(struct pgp *p, const void *b, size_t len)
{
    BF_ASSERT(p->n < PGP_MAX && len <= INT_MAX);
    p->v[p->n] = b ? b : "";
    p->len[p->n] = (int)len;
    p->fmt[p->n++] = 1;
}

void pgp_text(struct pgp *p, const char *s)
{
    if (!s)
        pgp_null(p);
    else
        pgp_bytes(p, s, strlen(s));
}

char *pg_array(const int64_t *v, size_t n, int *len)
{
    /* ndim, has-nulls, element type, then (size, lower bound) of the one
     * dimension, then (length, value) per element */
    size_t bytes = 20 + 12 * n;
    if (n > (INT_MAX - 20) / 12)
        return NULL;
    unsigned char *b = malloc(bytes), *p = b;
    if (!b)
        return NULL;
    uint32_t head[5] = { htonl(1), htonl(0), htonl(20), htonl((uint32_t)n), htonl(1) };
    memcpy(p, head, sizeof(head));
    p += sizeof(head);
    for (size_t i = 0; i < n; i++) {
        uint32_t l = htonl(8);
        memcpy(p, &l, 4);
        put_be64(p + 4, (uint64_t)v[i]);
        p += 12;
    }
    *len = (int)bytes;
    return (char *)b;
}

int64_t pgr_i64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    int n = PQgetlength(r, row, col);
    uint64_t v = get_be((const unsigned char *)PQgetvalue(r, row, col), n);
    if (n == 8)
        return (int64_t)v;
    if (n == 4)
        return (int32_t)(uint32_t)v;
    if (n == 2)
        return (int16_t)(uint16_t)v;
    return n == 1 ? (int64_t)v : 0;
}

bool pgr_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetlength(r, row, col) == 1 &&
           PQgetvalue(r, row, col)[0] != 0;
}

bool pgr_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) != 0;
}

/* ---- errors ------------------------------------------------------------------- */

/* Whether the failure of r on c means that the connection is gone. */
static bool conn_gone(const PGresult *r, const PGconn *c)
{
    if (!c || PQstatus(c) != CONNECTION_OK)
        return true;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* class 08: connection exceptions; 57P0x: the server is shutting down,
     * or an administrator ended the backend */
    return !st || strncmp(st, "08", 2) == 0 || strncmp(st, "57P0", 4) == 0;
}

int pg_errno(const PGresult *r, const PGconn *c)
{
    if (!c || PQstatus(c) != CONNECTION_OK)
        return -EIO;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!st)
        return -EIO;
    static const struct {
        const char *state;
        int e;
    } map[] = {
        { "23505", -EEXIST }, /* unique_violation */
        { "42501", -EACCES }, /* insufficient_privilege */
        { "53100", -ENOSPC }, /* disk_full */
        { "25006", -EROFS },  /* read_only_sql_transaction: a standby */
        { "22021", -EINVAL }, /* a name not valid in the database's encoding */
        { "22P05", -EINVAL }, /* ... nor representable in it */
        { "3D000", -ENOENT }, /* invalid_catalog_name: no such database */
        { "28000", -EACCES }, /* invalid_authorization_specification */
        { "28P01", -EACCES }, /* invalid_password */
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(st, map[i].state) == 0)
            return map[i].e;
    return -EIO;
}

/* Log a failure of `what`: libpq's or the server's message, one line. */
static void log_failure(struct pg_db *d, const char *what, const PGresult *r, const PGconn *c,
                        bool timeout)
{
    const char *msg = r ? PQresultErrorMessage(r) : NULL;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!msg || !*msg)
        msg = c ? PQerrorMessage(c) : "";
    if (timeout)
        msg = "no answer from the server in time (the connection is closed)";
    int n = (int)strcspn(msg, "\n");
    bf_db_log(&d->base, "%s: %.*s%s%s%s", what, n, *msg ? msg : "failed", st ? " (SQLSTATE " : "",
              st ? st : "", st ? ")" : "");
}

/* ---- the wait ------------------------------------------------------------------ */

static int64_t deadline_in(int seconds)
{
    return bf_mono_ns() + (int64_t)seconds * 1000000000;
}

static int ms_until(int64_t deadline)
{
    int64_t ns = deadline - bf_mono_ns();
    if (ns <= 0)
        return 0;
    return ns / 1000000 >= INT_MAX ? INT_MAX : (int)(ns / 1000000) + 1;
}

/* Flush what is queued and read until a result is complete (PQgetResult
 * will not block), or fail: -EIO (the connection broke), -ETIMEDOUT (the
 * deadline, CLOCK_MONOTONIC ns). */
static int wait_ready(PGconn *c, int64_t deadline)
{
    for (;;) {
        int f = PQflush(c); /* 1: more to send */
        if (f < 0)
            return -EIO;
        if (f == 0 && !PQisBusy(c))
            return 0;
        int fd = PQsocket(c);
        if (fd < 0)
            return -EIO;
        int ms = ms_until(deadline);
        if (ms <= 0)
            return -ETIMEDOUT;
        struct pollfd p = { fd, (short)(POLLIN | (f ? POLLOUT : 0)), 0 };
        int n = poll(&p, 1, ms);
        if (n < 0 && errno != EINTR)
            return -EIO;
        if (n > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) && !PQconsumeInput(c))
            return -EIO;
    }
}

static int kind_timeout(enum pgc_kind kind)
{
    return kind == PGC_READER   ? PG_READER_TIMEOUT_S
           : kind == PGC_WRITER ? PG_WRITER_TIMEOUT_S
                                : PG_WATCHER_TIMEOUT_S;
}

static int64_t call_deadline(const struct pgc *c)
{
    return deadline_in(kind_timeout(c->kind) + PG_CLIENT_MARGIN_S);
}

/* ---- connecting ------------------------------------------------------------------ */

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg; /* "there is no transaction in progress" and the like */
}

void pgc_close(struct pgc *c)
{
    if (c->c)
        PQfinish(c->c);
    c->c = NULL;
}

/* The errno of a failed connection, from libpq's message (no SQLSTATE
 * reaches the client before the connection is made). */
static int connect_errno(const char *msg)
{
    if (strstr(msg, "does not exist"))
        return -ENOENT;
    if (strstr(msg, "authentication") || strstr(msg, "password") ||
        strstr(msg, "permission denied") || strstr(msg, "pg_hba.conf"))
        return -EACCES;
    return -EIO;
}

/* Connect within the connect timeout. */
static int connect_now(struct pg_db *d, PGconn **out, char *errbuf, size_t errlen)
{
    int64_t deadline = deadline_in(d->connect_timeout_s);
    PGconn *c = PQconnectStartParams(d->keys, d->vals, 1);
    *out = NULL;
    if (!c) {
        bf_errf(errbuf, errlen, "%s: out of memory", d->label);
        return -ENOMEM;
    }
    PostgresPollingStatusType st = PQstatus(c) == CONNECTION_BAD ? PGRES_POLLING_FAILED
                                                                 : PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        struct pollfd p = { PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0 };
        int ms = ms_until(deadline);
        if (p.fd < 0 || ms <= 0)
            break;
        if (poll(&p, 1, ms) < 0 && errno != EINTR)
            break;
        st = PQconnectPoll(c);
    }
    if (st != PGRES_POLLING_OK) {
        const char *msg = st == PGRES_POLLING_FAILED ? PQerrorMessage(c) : "";
        int e = *msg ? connect_errno(msg) : -EIO;
        int n = (int)strcspn(msg, "\n");
        if (!*msg)
            bf_errf(errbuf, errlen, "%s: cannot connect: no answer within %d s (connect_timeout)",
                    d->label, d->connect_timeout_s);
        else
            bf_errf(errbuf, errlen, "%s: cannot connect: %.*s", d->label, n, msg);
        PQfinish(c);
        return e;
    }
    if (PQsetnonblocking(c, 1) != 0) {
        bf_errf(errbuf, errlen, "%s: cannot make the connection non-blocking", d->label);
        PQfinish(c);
        return -EIO;
    }
    if (PQserverVersion(c) < PG_SERVER_MIN) {
        bf_errf(errbuf, errlen, "%s: PostgreSQL 13 or newer needed (the server is version %d)",
                d->label, PQserverVersion(c));
        PQfinish(c);
        return -EPROTONOSUPPORT;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    *out = c;
    return 0;
}

/* The session settings of a connection of `kind` (one statement). */
static void settings_sql(const PGconn *c, enum pgc_kind kind, char *buf, size_t len)
{
    snprintf(buf, len,
             "SELECT set_config('search_path', 'pg_catalog, pg_temp', false),"
             " set_config('statement_timeout', '%ds', false),"
             " set_config('lock_timeout', '30s', false),"
             " set_config('idle_in_transaction_session_timeout', '60s', false),"
             " set_config('tcp_keepalives_idle', '10', false),"
             " set_config('tcp_keepalives_interval', '5', false),"
             " set_config('tcp_keepalives_count', '3', false),"
             " set_config('tcp_user_timeout', '30000', false),"
             " set_config('synchronous_commit', 'off', false),"
             " set_config('default_transaction_read_only', '%s', false)%s",
             kind_timeout(kind), kind == PGC_READER ? "on" : "off",
             PQserverVersion(c) >= 140000
                 ? ", set_config('client_connection_check_interval', '5s', false)"
                 : "");
}

static int stmt_types(const char *letters, Oid *types)
{
    int n = 0;
    for (const char *t = letters; *t; t++) {
        BF_ASSERT(n < PGP_MAX);
        types[n++] = *t == 'i' ? 20 : *t == 'I' ? 1016 : *t == 'b' ? 16 : *t == 'B' ? 17 : 25;
    }
    return n;
}

/* Read one result of a pipeline and the NULL that ends it; *res gets it
 * (NULL when the server skipped it). */
static int pipe_result(PGconn *c, int64_t deadline, PGresult **res)
{
    int e = wait_ready(c, deadline);
    *res = e == 0 ? PQgetResult(c) : NULL;
    if (e == 0 && *res && PQresultStatus(*res) != PGRES_PIPELINE_SYNC) {
        e = wait_ready(c, deadline);
        PGresult *end = e == 0 ? PQgetResult(c) : NULL;
        BF_CHECK(end == NULL || e < 0, "a pipeline result has more than one part");
        PQclear(end);
    }
    return e;
}

/* In one pipeline: the session settings of c's kind (with `settings`),
 * and the statements of c's kind (with `prepare`). */
static int set_up(struct pg_db *d, struct pgc *c, PGconn *pc, bool settings, bool prepare,
                  char *errbuf, size_t errlen)
{
    char sql[1024];
    int64_t deadline = deadline_in(d->connect_timeout_s + PG_CLIENT_MARGIN_S);
    int nsent = 0, e = 0;
    settings_sql(pc, c->kind, sql, sizeof(sql));
    if (!PQenterPipelineMode(pc) ||
        (settings && !PQsendQueryParams(pc, sql, 0, NULL, NULL, NULL, NULL, 0)))
        e = -EIO;
    nsent += e == 0 && settings;
    for (int i = 0; e == 0 && prepare && i < PS_NSTMT; i++) {
        if (!(pg_stmts[i].kinds & (1u << c->kind)) || ((pg_stmts[i].kinds & PGK_X) && !d->xattrs))
            continue;
        Oid types[PGP_MAX];
        char name[16];
        snprintf(name, sizeof(name), "bf%d", i);
        int n = stmt_types(pg_stmts[i].types, types);
        if (!PQsendPrepare(pc, name, pg_stmts[i].sql, n, types))
            e = -EIO;
        nsent += e == 0;
    }
    if (e == 0 && !PQpipelineSync(pc))
        e = -EIO;
    const char *failed = NULL;
    for (int i = 0; e == 0 && i <= nsent; i++) {
        PGresult *r;
        e = pipe_result(pc, deadline, &r);
        ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (e == 0 && i < nsent && s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK && !failed) {
            e = pg_errno(r, pc);
            failed = r ? PQresultErrorMessage(r) : PQerrorMessage(pc);
            bf_errf(errbuf, errlen, "%s: cannot set up a connection: %.*s", d->label,
                    (int)strcspn(failed, "\n"), failed);
            e = e == -EIO ? -EPROTO : e; /* our statements do not fit this database */
        }
        PQclear(r);
        if (s == PGRES_PIPELINE_SYNC)
            break;
    }
    if (e == 0 && !PQexitPipelineMode(pc))
        e = -EIO;
    if (e < 0 && !failed)
        bf_errf(errbuf, errlen, "%s: cannot set up a connection: %.*s", d->label,
                (int)strcspn(PQerrorMessage(pc), "\n"), PQerrorMessage(pc));
    return e;
}

/* Log errbuf (when the caller gave none to fill), without the label that
 * bf_db_log puts in front anyway. */
static void log_open_failure(struct pg_db *d, const char *buf)
{
    size_t n = strlen(d->label);
    bf_db_log(&d->base, "%s", strncmp(buf, d->label, n) == 0 && buf[n] == ':' ? buf + n + 2 : buf);
}

int pgc_open_ex(struct pg_db *d, struct pgc *c, bool prepare, char *errbuf, size_t errlen)
{
    char buf[512];
    PGconn *pc;
    bool mine = !errbuf;
    if (mine) {
        errbuf = buf;
        errlen = sizeof(buf);
    }
    errbuf[0] = '\0';
    pgc_close(c);
    int e = connect_now(d, &pc, errbuf, errlen);
    if (e == 0 && (e = set_up(d, c, pc, true, prepare, errbuf, errlen)) < 0)
        PQfinish(pc);
    if (e == 0)
        c->c = pc;
    else if (mine)
        log_open_failure(d, buf);
    return e;
}

int pgc_open(struct pg_db *d, struct pgc *c, char *errbuf, size_t errlen)
{
    return pgc_open_ex(d, c, true, errbuf, errlen);
}

int pgc_prepare(struct pg_db *d, struct pgc *c, char *errbuf, size_t errlen)
{
    int e = c->c ? set_up(d, c, c->c, false, true, errbuf, errlen) : -EIO;
    if (e < 0)
        pgc_close(c);
    return e;
}

int pgc_ensure(struct pg_db *d, struct pgc *c)
{
    BF_ASSERT(c->kind != PGC_WATCHER); /* its own: notifications come while idle */
    if (c->c && PQstatus(c->c) == CONNECTION_OK) {
        /* Idle, a reader's or writer's connection has nothing to read:
         * data now means that the server is ending it (a restart,
         * pg_terminate_backend). */
        struct pollfd p = { PQsocket(c->c), POLLIN, 0 };
        if (p.fd >= 0 && poll(&p, 1, 0) == 0)
            return 0;
        bf_db_log(&d->base, "a connection was ended by the server: opening a new one");
    }
    pgc_close(c);
    return pgc_open(d, c, NULL, 0);
}

/* ---- calls ------------------------------------------------------------------------ */

static bool send_stmt(PGconn *pc, int stmt, const struct pgp *p)
{
    char name[16];
    snprintf(name, sizeof(name), "bf%d", stmt);
    BF_ASSERT((int)strlen(pg_stmts[stmt].types) == (p ? p->n : 0));
    return PQsendQueryPrepared(pc, name, p ? p->n : 0, p ? p->v : NULL, p ? p->len : NULL,
                               p ? p->fmt : NULL, 1) == 1;
}

static bool result_ok(const PGresult *r)
{
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    return s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK;
}

/* The failure of a call on c (r: its failed result; e < 0: the wait
 * failed): log it unless expected, close c if it broke. Returns the errno. */
static int call_failed(struct pg_db *d, struct pgc *c, const PGresult *r, int e, const char *what)
{
    bool gone = e < 0 || conn_gone(r, c->c);
    int err = gone ? -EIO : pg_errno(r, c->c);
    if (err != -EEXIST)
        log_failure(d, what, r, c->c, e == -ETIMEDOUT);
    if (gone)
        pgc_close(c);
    return err;
}

int pgc_run(struct pg_db *d, struct pgc *c, int stmt, const struct pgp *p, PGresult **res,
            const char *what)
{
    BF_ASSERT(pg_stmts[stmt].kinds & (1u << c->kind));
    if (res)
        *res = NULL;
    if (!c->c)
        return -EIO;
    int64_t deadline = call_deadline(c);
    PGresult *r = NULL;
    int e = send_stmt(c->c, stmt, p) ? 0 : -EIO;
    /* One result, then NULL. */
    while (e == 0) {
        if ((e = wait_ready(c->c, deadline)) < 0)
            break;
        PGresult *x = PQgetResult(c->c);
        if (!x)
            break;
        if (!r)
            r = x;
        else
            PQclear(x);
    }
    if (e < 0 || !result_ok(r)) {
        e = call_failed(d, c, r, e, what);
        PQclear(r);
        return e;
    }
    if (res)
        *res = r;
    else
        PQclear(r);
    return 0;
}

void pgq_clear(struct pgq *q, int n)
{
    for (int i = 0; i < n; i++) {
        PQclear(q[i].res);
        q[i].res = NULL;
    }
}

int pgc_pipeline(struct pg_db *d, struct pgc *c, struct pgq *q, int n, const char *what, bool *lost)
{
    int e = 0, i;
    if (lost)
        *lost = false;
    for (i = 0; i < n; i++)
        q[i].res = NULL;
    if (!c->c) {
        if (lost)
            *lost = true;
        return -EIO;
    }
    int64_t deadline = call_deadline(c);
    PGconn *pc = c->c;
    if (!PQenterPipelineMode(pc))
        e = -EIO;
    for (i = 0; e == 0 && i < n; i++)
        if (!send_stmt(pc, q[i].stmt, q[i].p))
            e = -EIO;
    if (e == 0 && !PQpipelineSync(pc))
        e = -EIO;
    /* Every statement's result, then the sync's. */
    PGresult *bad = NULL;
    for (i = 0; e == 0 && i <= n; i++) {
        PGresult *r;
        e = pipe_result(pc, deadline, &r);
        if (e < 0)
            break;
        if (i == n) {
            bool sync = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
            PQclear(r);
            e = sync ? 0 : -EIO;
            break;
        }
        if (r && PQresultStatus(r) == PGRES_PIPELINE_ABORTED) {
            PQclear(r);
            continue; /* skipped after the first failure */
        }
        if (!result_ok(r) && !bad) {
            bad = r; /* the first failure: reported below */
            continue;
        }
        q[i].res = r;
    }
    if (e == 0 && !PQexitPipelineMode(pc))
        e = -EIO;
    if (e < 0 || bad) {
        bool gone = e < 0 || conn_gone(bad, c->c);
        if (lost)
            *lost = gone;
        e = call_failed(d, c, bad, e, what);
        PQclear(bad);
        if (gone)
            pgq_clear(q, n);
        return e;
    }
    return 0;
}

int pgc_simple(struct pg_db *d, struct pgc *c, const char *sql, PGresult **res, const char *what)
{
    if (res)
        *res = NULL;
    if (!c->c)
        return -EIO;
    int64_t deadline = call_deadline(c);
    PGresult *last = NULL, *bad = NULL;
    int e = PQsendQuery(c->c, sql) ? 0 : -EIO;
    while (e == 0) {
        if ((e = wait_ready(c->c, deadline)) < 0)
            break;
        PGresult *x = PQgetResult(c->c);
        if (!x)
            break;
        if (!result_ok(x) && !bad) {
            bad = x;
            continue;
        }
        PQclear(last);
        last = x;
    }
    if (e < 0 || bad) {
        e = call_failed(d, c, bad, e, what);
        PQclear(bad);
        PQclear(last);
        return e;
    }
    if (res)
        *res = last;
    else
        PQclear(last);
    return 0;
}

/* ---- the reader pool ----------------------------------------------------------------- */

int pg_reader_get(struct pg_db *d, struct pg_reader **out)
{
    struct pg_reader *r = NULL;
    pthread_mutex_lock(&d->plock);
    while (!r) {
        /* an open one first, then a closed one, then a new one */
        for (int i = 0; i < d->nrd && !r; i++)
            if (!d->rd[i].busy && d->rd[i].c.c)
                r = &d->rd[i];
        for (int i = 0; i < d->nrd && !r; i++)
            if (!d->rd[i].busy)
                r = &d->rd[i];
        if (!r && d->nrd < (int)d->popt.readers) {
            r = &d->rd[d->nrd++];
            r->c = (struct pgc){ NULL, PGC_READER };
        }
        if (!r)
            pthread_cond_wait(&d->pcond, &d->plock);
    }
    r->busy = true;
    pthread_mutex_unlock(&d->plock);
    int e = pgc_ensure(d, &r->c);
    if (e < 0) {
        pg_reader_put(d, r);
        return e;
    }
    *out = r;
    return 0;
}

void pg_reader_put(struct pg_db *d, struct pg_reader *r)
{
    pthread_mutex_lock(&d->plock);
    r->busy = false;
    pthread_cond_signal(&d->pcond);
    pthread_mutex_unlock(&d->plock);
}

/* ---- the conninfo ------------------------------------------------------------------------ */

/* Append s to buf[*at..len) (always terminated). */
static void append(char *buf, size_t len, size_t *at, const char *s)
{
    size_t n = strlen(s);
    if (*at + 1 >= len)
        return;
    if (n > len - 1 - *at)
        n = len - 1 - *at;
    memcpy(buf + *at, s, n);
    *at += n;
    buf[*at] = '\0';
}

/* Append a conninfo value, quoted when it must be. */
static void append_value(char *buf, size_t len, size_t *at, const char *v)
{
    bool quote = !*v || strpbrk(v, " \t\n'\\") != NULL;
    if (quote)
        append(buf, len, at, "'");
    for (const char *p = v; *p; p++) {
        char c[3] = { '\\', *p, '\0' };
        append(buf, len, at, (*p == '\'' || *p == '\\') ? c : c + 1);
    }
    if (quote)
        append(buf, len, at, "'");
}

/* The secrets a conninfo may hold. */
static bool secret(const char *keyword)
{
    return strcmp(keyword, "password") == 0 || strcmp(keyword, "sslpassword") == 0;
}

int bf_pg_redact(const char *conninfo, char *buf, size_t len)
{
    char *err = NULL;
    size_t at = 0;
    if (!len)
        return -EINVAL;
    buf[0] = '\0';
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &err);
    PQfreemem(err);
    append(buf, len, &at, "pg:");
    if (!opts) {
        append(buf, len, &at, "(a connection string libpq cannot parse)");
        return -EINVAL;
    }
    bool first = true;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (!first)
            append(buf, len, &at, " ");
        first = false;
        append(buf, len, &at, o->keyword);
        append(buf, len, &at, "=");
        if (secret(o->keyword))
            append(buf, len, &at, "***");
        else
            append_value(buf, len, &at, o->val);
    }
    PQconninfoFree(opts);
    return 0;
}

/* The connect timeout in seconds: the conninfo's, libpq's environment's,
 * or ours (at least 2: libpq's own rule). */
static int connect_timeout(const PQconninfoOption *opts)
{
    const char *v = getenv("PGCONNECT_TIMEOUT");
    for (const PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val && *o->val)
            v = o->val;
    int s = v ? atoi(v) : PG_CONNECT_TIMEOUT_S;
    return s <= 0 ? PG_CONNECT_TIMEOUT_S : s < 2 ? 2 : s;
}

int pg_conn_setup(struct pg_db *d, const char *conninfo, char *errbuf, size_t errlen)
{
    static const char *const defaults[][2] = {
        { "keepalives", "1" },
        { "keepalives_idle", "10" },
        { "keepalives_interval", "5" },
        { "keepalives_count", "3" },
        { "tcp_user_timeout", "30000" },
        { "client_encoding", "UTF8" },
        { "fallback_application_name", "bigfilefs" },
    };
    enum {
        NDEF = sizeof(defaults) / sizeof(defaults[0])
    };
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (!opts) {
        /* libpq's message may quote a part of the string: not repeated */
        bf_errf(errbuf, errlen,
                "pg: not a connection string libpq understands (key=value ... or "
                "postgresql://...)%s",
                err ? "" : ": out of memory");
        PQfreemem(err);
        return err ? -EINVAL : -ENOMEM;
    }
    d->connect_timeout_s = connect_timeout(opts);
    PQconninfoFree(opts);
    d->keys = calloc(NDEF + 2, sizeof(*d->keys));
    d->vals = calloc(NDEF + 2, sizeof(*d->vals));
    d->conninfo = strdup(conninfo);
    if (!d->keys || !d->vals || !d->conninfo) {
        bf_errf(errbuf, errlen, "pg: out of memory");
        return -ENOMEM;
    }
    for (int i = 0; i < NDEF; i++) {
        d->keys[i] = defaults[i][0];
        d->vals[i] = defaults[i][1];
    }
    d->keys[NDEF] = "dbname"; /* expanded: the user's settings override ours */
    d->vals[NDEF] = d->conninfo;
    return 0;
}

void pg_conn_free(struct pg_db *d)
{
    free(d->keys);
    free(d->vals);
    free(d->conninfo);
    d->keys = d->vals = NULL;
    d->conninfo = NULL;
}
