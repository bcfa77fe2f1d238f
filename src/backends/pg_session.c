/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the PostgreSQL engine's sessions (COHERENCE.md
 * rules 3-8): the session's locks and liveness, holds and purges, the
 * watcher's connection and reads, and the housekeeping.
 *
 * The watcher's connection (d->v, under vlock) holds the session's
 * advisory locks for its life: the mount mode (PG_LOCK_MODE, exclusive or
 * shared) and, for a registered session, its liveness (PG_CLASS_LIVE, id).
 * It LISTENs on the channel every commit NOTIFYs, reads the commit log,
 * and runs the housekeeping. The generic watcher waits on an epoll
 * descriptor (pg_change_fd) that holds the connection's socket and an
 * eventfd; changed() consumes what the socket brought: a notification (a
 * wake-up only: the log is the truth), or the end of the connection. A
 * notification that arrived while the connection was busy with something
 * else is noted and the eventfd written, so that it is never left unseen
 * in libpq's queue. Every second without a notification the log is read
 * anyway (the timer fallback).
 *
 * The watcher's connection:
 *   open   --a call on it fails, or its socket ends--> closed (retry_at =
 *             now + backoff: 100 ms, doubling up to 5 s)
 *   closed --changed/log_read/trim at or after retry_at: opened, the
 *             locks taken again, LISTEN, the session row checked--> open
 *             (catch_up: the next changed() says yes, and the watcher
 *             reads the log from its applied serial on)
 * Taking the locks again: the liveness lock fails while the server still
 * has our old backend (it has not noticed it died): retried later. The
 * mount-mode lock fails when another session took the database meanwhile
 * (exclusive against shared): the session is fenced — every write fails
 * with EIO, said in the log once — until it is unmounted. A session row
 * gone (another session took this one for dead, after the grace) is
 * registered again with the same id, and the files it holds are held
 * again, the serials its views pin pinned again; its uploads are gone (a writeout in flight fails and is retried),
 * and the log may have been trimmed past it (the watcher delivers a
 * BF_COMMIT_RESET).
 *
 * Liveness (the SQL is LIVE in pg_sql.c): a session is dead when its
 * liveness lock is not held, its row's `seen` is older than the grace, and
 * the server has been up for longer than the grace. `seen` is updated by
 * every housekeeping round (every BF_TRIM_INTERVAL_MS while commits come,
 * a few times that when idle), so a reconnecting session is not taken for
 * dead while it takes its locks again.
 *
 * The housekeeping (pg_trim), each step a short transaction of its own:
 *   1. record the applied serial and the sign of life (the session row);
 *   2. the rest only by one session at a time (the PG_LOCK_TRIM advisory
 *      lock: the watcher's turn skips it when another session holds it,
 *      bf_db_trim waits for it);
 *   3. dead sessions: their uploads become garbage, their holds, pins and
 *      row go;
 *   3a. the history: history_from advances (pg_history.c);
 *   4. versions: with M = the lowest applied serial of the live sessions,
 *      but at most history_from (docs/HISTORY.md: B), the write commits
 *      in (gc_done, M] are read from the log, and for
 *      each block they changed the versions older than theirs go (no live
 *      session can load them: every view is at or past M), their contents
 *      become garbage; versions marked superseded at or before M go too;
 *   5. the log: rows up to gc_done go; beyond it, rows older than the last
 *      log_keep go too, after marking the versions they superseded; never
 *      a row of the kept history (serial >= history_from);
 *   5a. file states older than their file's newest state <= history_from;
 *   6. nameless files no live session holds and the history no longer
 *      needs are purged;
 *   7. garbage contents are deleted, a few at a time.
 * The watcher's turn stops after PG_TRIM_TURN_NS (the next goes on);
 * bf_db_trim goes to the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backends/pg_internal.h"
#include "backends/ranges.h"

#define PG_BACKOFF_MIN_NS 100000000LL  /* 100 ms */
#define PG_BACKOFF_MAX_NS 5000000000LL /* 5 s */
#define PG_FALLBACK_NS 1000000000LL    /* the log is read at least every second */
#define PG_TRIM_TURN_NS 50000000LL     /* the watcher's housekeeping turn: 50 ms */
#define PG_GC_ROWS 256                 /* log rows looked at per query */
#define PG_GC_TRIPLETS 65536           /* versions per statement */
#define PG_GARBAGE_BATCH 8             /* contents deleted per statement */

/* ---- the held files ------------------------------------------------------------ */

/* A list of ids under hlock (the held files, the pinned serials). */
static int list_add(struct pg_db *d, uint64_t **v, size_t *n, size_t *cap, uint64_t id)
{
    int e = 0;
    pthread_mutex_lock(&d->hlock);
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        uint64_t *nv = realloc(*v, c * sizeof(*nv));
        if (nv) {
            *v = nv;
            *cap = c;
        } else {
            e = -ENOMEM;
        }
    }
    if (e == 0)
        (*v)[(*n)++] = id;
    pthread_mutex_unlock(&d->hlock);
    return e;
}

static void list_del(struct pg_db *d, uint64_t *v, size_t *n, uint64_t id)
{
    pthread_mutex_lock(&d->hlock);
    for (size_t i = 0; i < *n; i++) {
        if (v[i] == id) {
            v[i] = v[--*n];
            break;
        }
    }
    pthread_mutex_unlock(&d->hlock);
}

int pg_held_add(struct pg_db *d, uint64_t id)
{
    return list_add(d, &d->held, &d->nheld, &d->capheld, id);
}

void pg_held_del(struct pg_db *d, uint64_t id)
{
    list_del(d, d->held, &d->nheld, id);
}

int pg_pinned_add(struct pg_db *d, uint64_t serial)
{
    return list_add(d, &d->pinned, &d->npinned, &d->cappinned, serial);
}

void pg_pinned_del(struct pg_db *d, uint64_t serial)
{
    list_del(d, d->pinned, &d->npinned, serial);
}

/* ---- the watcher's connection ------------------------------------------------------ */

int pg_watch_init(struct pg_db *d)
{
    struct epoll_event ev = { .events = EPOLLIN };
    d->vsock = -1;
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    d->notefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ev.data.fd = d->notefd;
    if (d->epfd < 0 || d->notefd < 0 || epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->notefd, &ev) < 0)
        return -errno;
    return 0;
}

void pg_watch_fini(struct pg_db *d)
{
    if (d->epfd >= 0)
        close(d->epfd);
    if (d->notefd >= 0)
        close(d->notefd);
    d->epfd = d->notefd = -1;
}

/* The connection is closed (it broke, or was closed on purpose): forget its
 * socket (closing it took it out of the epoll set) and open it again no
 * earlier than after the backoff. vlock held. */
static void v_closed(struct pg_db *d)
{
    d->vsock = -1;
    d->retry_at_ns = bf_mono_ns() + d->backoff_ns;
    d->backoff_ns = d->backoff_ns * 2 < PG_BACKOFF_MAX_NS ? d->backoff_ns * 2 : PG_BACKOFF_MAX_NS;
}

/* After a use of the connection: note a closed one, and keep the
 * notifications it brought for changed(). vlock held. */
static void v_after(struct pg_db *d)
{
    if (!d->v.c) {
        if (d->vsock >= 0)
            v_closed(d);
        return;
    }
    PGnotify *n;
    bool any = false;
    while ((n = PQnotifies(d->v.c))) {
        PQfreemem(n);
        any = true;
    }
    if (any && !d->note) {
        uint64_t one = 1;
        d->note = true;
        if (write(d->notefd, &one, sizeof(one)) < 0) {
            /* full: the watcher is awake anyway */
        }
    }
}

/* Run a statement on the watcher's connection and note its outcome. */
static int vrun(struct pg_db *d, int stmt, const struct pgp *p, PGresult **res, const char *what)
{
    int e = pgc_run(d, &d->v, stmt, p, res, what);
    v_after(d);
    return e;
}

static int vpipe(struct pg_db *d, struct pgq *q, int n, const char *what)
{
    int e = pgc_pipeline(d, &d->v, q, n, what, NULL);
    pgq_clear(q, n);
    v_after(d);
    return e;
}

/* A one-value query on the watcher's connection: *v (0 if no row). */
static int vrun_i64(struct pg_db *d, int stmt, const struct pgp *p, int64_t *v, const char *what)
{
    PGresult *r;
    int e = vrun(d, stmt, p, &r, what);
    *v = e == 0 && PQntuples(r) > 0 ? pgr_i64(r, 0, 0) : 0;
    PQclear(r);
    return e;
}

static int vrun_bool(struct pg_db *d, int stmt, const struct pgp *p, bool *v, const char *what)
{
    PGresult *r;
    int e = vrun(d, stmt, p, &r, what);
    *v = e == 0 && PQntuples(r) > 0 && pgr_bool(r, 0, 0);
    PQclear(r);
    return e;
}

/* Take the mount-mode lock: -EBUSY when another session's is in the way. */
static int lock_mode(struct pg_db *d)
{
    bool got;
    int e = vrun_bool(d, (d->base.flags & BF_DB_SHARED) ? PS_LOCK_MODE_SH : PS_LOCK_MODE_EX, NULL,
                      &got, "locking the database");
    return e < 0 ? e : got ? 0 : -EBUSY;
}

/* The session's row is gone: another session took it for dead while this
 * one was cut off. Register it again as it was, and hold its files again. */
static int reregister(struct pg_db *d)
{
    char host[256] = "";
    struct pgp p = { 0 };
    gethostname(host, sizeof(host) - 1);
    pgp_u64(&p, d->base.session);
    pgp_i64(&p, getpid());
    pgp_text(&p, host);
    pgp_i64(&p, bf_now_ns());
    pgp_u64(&p, d->applied_recorded);
    pgp_bool(&p, (d->base.flags & BF_DB_SHARED) != 0);
    int e = vrun(d, PS_SESSION_READD, &p, NULL, "registering the session again");
    pthread_mutex_lock(&d->hlock);
    int len = 0, plen = 0;
    char *arr = e == 0 ? pg_array((const int64_t *)d->held, d->nheld, &len) : NULL;
    char *parr = e == 0 ? pg_array((const int64_t *)d->pinned, d->npinned, &plen) : NULL;
    pthread_mutex_unlock(&d->hlock);
    if (e == 0 && (!arr || !parr))
        e = -ENOMEM;
    if (e == 0) {
        struct pgp q = { 0 };
        pgp_u64(&q, d->base.session);
        pgp_bytes(&q, arr, (size_t)len);
        e = vrun(d, PS_REHOLD, &q, NULL, "holding the open files again");
    }
    if (e == 0) {
        /* (a serial the housekeeping passed meanwhile is gone for its
         * views: their loads fail with EIO) */
        struct pgp q = { 0 };
        pgp_u64(&q, d->base.session);
        pgp_bytes(&q, parr, (size_t)plen);
        e = vrun(d, PS_REPIN, &q, NULL, "pinning the open views again");
    }
    free(arr);
    free(parr);
    if (e == 0)
        bf_db_log(&d->base,
                  "session %llu was taken for dead while cut off from the server: registered "
                  "again (a writeout in flight fails and must be retried; commits trimmed from "
                  "the log meanwhile are forgotten by a reset)",
                  (unsigned long long)d->base.session);
    return e;
}

/* Record the applied serial and a sign of life; register again if the row
 * is gone. */
static int seen(struct pg_db *d, uint64_t applied)
{
    struct pgp p = { 0 };
    PGresult *r;
    pgp_u64(&p, d->base.session);
    pgp_u64(&p, applied);
    int e = vrun(d, PS_SESSION_SEEN, &p, &r, "recording the applied serial");
    bool gone = e == 0 && PQntuples(r) == 0;
    PQclear(r);
    if (e == 0 && applied > d->applied_recorded)
        d->applied_recorded = applied;
    return gone ? reregister(d) : e;
}

/* The connection was opened again: take the locks again, LISTEN, check the
 * session row. vlock held. */
static int relock(struct pg_db *d)
{
    int e = 0;
    bool got;
    if (d->base.session) {
        struct pgp p = { 0 };
        pgp_u64(&p, d->base.session);
        e = vrun_bool(d, PS_LOCK_LIVE, &p, &got, "taking the session's lock again");
        if (e == 0 && !got) {
            bf_db_log(&d->base, "the server still has this session's old connection: "
                                "trying again later");
            return -EAGAIN;
        }
    }
    if (e == 0 && (e = lock_mode(d)) == -EBUSY) {
        e = 0;
        if (!__atomic_exchange_n(&d->fenced, true, __ATOMIC_SEQ_CST))
            bf_db_log(&d->base,
                      "another bigfilefs took the database while this one was cut off from the "
                      "server (mounted without -o shared, or this one was): every write fails "
                      "with EIO until this one is unmounted");
    }
    if (e == 0)
        e = vrun(d, PS_LISTEN, NULL, NULL, "listening for commits");
    if (e == 0 && d->base.session)
        e = seen(d, d->applied_recorded);
    return e;
}

/* Whether the open connection is still there: what its socket brought
 * is consumed (notifications wait in libpq's queue for v_after). */
static bool v_alive(struct pg_db *d)
{
    /* An ending connection brings the server's message, then the end of
     * the stream: each takes a read. */
    for (int i = 0; i < 8; i++) {
        struct pollfd p = { PQsocket(d->v.c), POLLIN, 0 };
        if (p.fd < 0 || !PQconsumeInput(d->v.c) || PQstatus(d->v.c) != CONNECTION_OK)
            break;
        if (poll(&p, 1, 0) == 0)
            return true;
    }
    bf_db_log(&d->base, "the watcher's connection broke (%.*s): opening a new one",
              (int)strcspn(PQerrorMessage(d->v.c), "\n"), PQerrorMessage(d->v.c));
    return false;
}

/* Make sure the watcher's connection is open (see the top): one found
 * broken is opened again at once, then with the backoff. vlock held. */
static int v_ensure(struct pg_db *d)
{
    if (d->v.c && v_alive(d))
        return 0;
    if (d->v.c) {
        pgc_close(&d->v);
        d->vsock = -1;
        d->retry_at_ns = 0;
    }
    if (bf_mono_ns() < d->retry_at_ns)
        return -EIO;
    int e = pgc_open(d, &d->v, NULL, 0);
    if (e == 0 && (e = relock(d)) < 0)
        pgc_close(&d->v);
    if (e == 0) {
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = PQsocket(d->v.c) };
        if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, ev.data.fd, &ev) == 0)
            d->vsock = ev.data.fd;
        else
            bf_db_log(&d->base, "cannot watch the connection's socket: %s", strerror(errno));
    }
    if (e < 0) {
        v_closed(d); /* a failed attempt backs off too */
        return -EIO;
    }
    d->backoff_ns = PG_BACKOFF_MIN_NS;
    d->catch_up = true;
    bf_counter_add(&d->reconnects, 1);
    bf_db_log(&d->base, "the watcher's connection is back: catching up");
    return 0;
}

/* ---- the session ------------------------------------------------------------------- */

/* Register a read-write session: an id whose liveness lock we take before
 * the row exists (so that the row never looks dead), then the row. */
static int register_session(struct pg_db *d, char *errbuf, size_t errlen)
{
    char host[256] = "";
    int64_t id = 0, applied = 0;
    bool got = false;
    int e = 0;
    gethostname(host, sizeof(host) - 1);
    for (int tries = 0; e == 0 && !got && tries < 64; tries++) {
        struct pgp p = { 0 };
        e = vrun_i64(d, PS_NEXTSESSION, NULL, &id, "registering the session");
        pgp_i64(&p, id);
        if (e == 0)
            e = vrun_bool(d, PS_LOCK_LIVE, &p, &got, "registering the session");
    }
    if (e == 0 && !got)
        e = -EAGAIN;
    if (e == 0) {
        struct pgp p = { 0 };
        pgp_i64(&p, id);
        pgp_i64(&p, getpid());
        pgp_text(&p, host);
        pgp_i64(&p, bf_now_ns());
        pgp_bool(&p, (d->base.flags & BF_DB_SHARED) != 0);
        e = vrun_i64(d, PS_SESSION_ADD, &p, &applied, "registering the session");
    }
    if (e < 0) {
        bf_errf(errbuf, errlen, "%s: cannot register the session: %s", d->label, strerror(-e));
        return e;
    }
    d->base.session = (uint64_t)id;
    d->base.start_serial = d->applied_recorded = (uint64_t)applied;
    return 0;
}

int pg_session_start(struct pg_db *d, char *errbuf, size_t errlen)
{
    pthread_mutex_lock(&d->vlock);
    int e = lock_mode(d);
    if (e == -EBUSY)
        bf_errf(errbuf, errlen,
                "%s: in use by another bigfilefs (mount every daemon with -o shared to share it)",
                d->label);
    else if (e < 0)
        bf_errf(errbuf, errlen, "%s: cannot lock the database: %s", d->label, strerror(-e));
    if (e == 0 && !(d->base.flags & BF_DB_RDONLY)) {
        e = register_session(d, errbuf, errlen);
    } else if (e == 0) {
        int64_t s;
        if ((e = vrun_i64(d, PS_SERIAL, NULL, &s, "reading the serial")) == 0)
            d->base.start_serial = (uint64_t)s;
    }
    if (e == 0 && (e = vrun(d, PS_LISTEN, NULL, NULL, "listening for commits")) < 0)
        bf_errf(errbuf, errlen, "%s: cannot listen for commits: %s", d->label, strerror(-e));
    if (e == 0) {
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = PQsocket(d->v.c) };
        if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0)
            e = -errno;
        else
            d->vsock = ev.data.fd;
    }
    d->backoff_ns = PG_BACKOFF_MIN_NS;
    d->catch_up = true; /* commits before LISTEN: the first look reads the log */
    pthread_mutex_unlock(&d->vlock);
    return e;
}

void pg_session_end(struct pg_db *d)
{
    pthread_mutex_lock(&d->vlock);
    if (d->base.session && v_ensure(d) == 0) {
        struct pgp p = { 0 };
        pgp_u64(&p, d->base.session);
        struct pgq q[] = { { PS_BEGIN, NULL, NULL },     { PS_ORPHANS, &p, NULL },
                           { PS_UNHOLD_ALL, &p, NULL },  { PS_UNPIN_ALL, &p, NULL },
                           { PS_SESSION_DEL, &p, NULL }, { PS_COMMIT, NULL, NULL } };
        if (vpipe(d, q, 6, "ending the session") < 0)
            bf_db_log(&d->base, "cannot end the session cleanly: the others clean up after it");
    }
    pgc_close(&d->v); /* its locks go with it */
    d->vsock = -1;
    pthread_mutex_unlock(&d->vlock);
}

/* ---- holds and purges (on the writer) -------------------------------------------------- */

int pg_row_info(struct pg_db *d, const PGresult *r, int row, int col, struct bf_fileinfo *fi)
{
    memset(fi, 0, sizeof(*fi));
    fi->id = (uint64_t)pgr_i64(r, row, col);
    if (!pgr_null(r, row, col + 1)) {
        int n = PQgetlength(r, row, col + 1);
        const char *name = PQgetvalue(r, row, col + 1);
        if (n > BF_NAME_MAX || (int)strlen(name) != n) {
            bf_db_log(&d->base, "file %llu: its name %s", (unsigned long long)fi->id,
                      n > BF_NAME_MAX ? "is too long" : "holds a NUL byte");
            return -EIO;
        }
        memcpy(fi->name, name, (size_t)n);
    }
    fi->blksize = (uint32_t)pgr_i64(r, row, col + 2);
    fi->size = (uint64_t)pgr_i64(r, row, col + 3);
    fi->mode = (uint32_t)pgr_i64(r, row, col + 4);
    fi->uid = (uint32_t)pgr_i64(r, row, col + 5);
    fi->gid = (uint32_t)pgr_i64(r, row, col + 6);
    fi->mtime_ns = pgr_i64(r, row, col + 7);
    fi->ctime_ns = pgr_i64(r, row, col + 8);
    return 0;
}

int pg_hold_open(struct pg_db *d, uint64_t id, struct bf_fileinfo *fi, uint64_t *serial)
{
    struct pgp p = { 0 }, ph = { 0 };
    pgp_u64(&p, id);
    pgp_u64(&ph, d->base.session);
    pgp_u64(&ph, id);
    int e = pg_held_add(d, id);
    if (e < 0)
        return e;
    if ((e = pg_w_begin(d)) < 0) {
        pg_held_del(d, id);
        return e;
    }
    /* The row locked against a purge, read with the serial, held. */
    struct pgq q[] = { { PS_BEGIN, NULL, NULL },
                       { PS_ROWLOCK, &p, NULL },
                       { PS_ROW_SERIAL, &p, NULL },
                       { PS_HOLD, &ph, NULL },
                       { PS_COMMIT, NULL, NULL } };
    e = pgc_pipeline(d, &d->w, q, 5, "opening a file", NULL);
    if (e == 0 && PQntuples(q[2].res) == 0)
        e = -ENOENT;
    if (e == 0 && (e = pg_row_info(d, q[2].res, 0, 0, fi)) == 0)
        *serial = (uint64_t)pgr_i64(q[2].res, 0, 9);
    if (e < 0 && d->w.c)
        pgc_run(d, &d->w, PS_ROLLBACK, NULL, NULL, "rolling back");
    pgq_clear(q, 5);
    pg_w_end(d);
    if (e < 0)
        pg_held_del(d, id);
    return e;
}

/* Purge nameless file id unless a live session holds it or the history
 * needs it (its name went after history_from); with `unhold`,
 * end our hold of it first, in the same transaction. On connection c
 * (the writer or the watcher's), locked by the caller. */
static int purge_on(struct pg_db *d, struct pgc *c, uint64_t id, bool unhold)
{
    struct pgp p = { 0 }, pu = { 0 }, pl = { 0 }, pa = { 0 };
    pgp_u64(&p, id);
    pgp_u64(&p, d->popt.dead_grace_ms);
    pgp_u64(&pu, d->base.session);
    pgp_u64(&pu, id);
    pgp_u64(&pl, id);
    pgp_i64(&pa, bf_now_ns());
    pgp_u64(&pa, d->popt.dead_grace_ms);
    pgp_u64(&pa, id);
    struct pgq q[7];
    int n = 0;
    q[n++] = (struct pgq){ PS_BEGIN, NULL, NULL };
    if (unhold)
        q[n++] = (struct pgq){ PS_UNHOLD, &pu, NULL };
    q[n++] = (struct pgq){ PS_NAMELESS_LOCK, &pl, NULL };
    /* history_from advanced first, as the housekeeping would now (only
     * for a nameless file): a file whose name went after it stays */
    q[n++] = (struct pgq){ PS_FROM_LOCK, &pl, NULL };
    q[n++] = (struct pgq){ PS_ADVANCE, &pa, NULL };
    q[n++] = (struct pgq){ PS_PURGE, &p, NULL };
    q[n++] = (struct pgq){ PS_COMMIT, NULL, NULL };
    int e = pgc_pipeline(d, c, q, n, unhold ? "ending a hold" : "deleting a nameless file", NULL);
    if (e < 0 && c->c)
        pgc_run(d, c, PS_ROLLBACK, NULL, NULL, "rolling back");
    pgq_clear(q, n);
    return e;
}

int pg_release(bf_db *db, uint64_t id)
{
    struct pg_db *d = PG(db);
    int e = pg_w_begin(d);
    if (e == 0) {
        e = purge_on(d, &d->w, id, true);
        pg_w_end(d);
    }
    if (e == 0)
        pg_held_del(d, id); /* else held still, for the re-registration */
    return e;
}

int pg_purge(bf_db *db, uint64_t id)
{
    struct pg_db *d = PG(db);
    int e = pg_w_begin(d);
    if (e == 0) {
        e = purge_on(d, &d->w, id, false);
        pg_w_end(d);
    }
    return e;
}

/* ---- the watcher's reads ------------------------------------------------------------------ */

int pg_change_fd(bf_db *db)
{
    return PG(db)->epfd;
}

int pg_changed(bf_db *db, bool *yes)
{
    struct pg_db *d = PG(db);
    uint64_t count;
    if (read(d->notefd, &count, sizeof(count)) < 0) {
        /* EAGAIN: nothing noted */
    }
    pthread_mutex_lock(&d->vlock);
    *yes = false;
    int e = v_ensure(d); /* consumes what the socket brought */
    v_after(d);
    if (e == 0) {
        *yes = d->note || d->catch_up || bf_mono_ns() - d->last_read_ns >= PG_FALLBACK_NS;
        d->note = false;
        d->catch_up = false;
    }
    pthread_mutex_unlock(&d->vlock);
    return e;
}

/* Decode log row `row` of a PS_LOGREAD result into rec (ranges: *ranges,
 * malloc'd). A row whose blocks cannot be decoded says "every block may
 * have changed" (trunc 0), with a log line. */
static int decode_row(struct pg_db *d, const PGresult *r, int row, struct bf_commit_rec *rec,
                      struct bf_blkrange **ranges)
{
    memset(rec, 0, sizeof(*rec));
    rec->serial = (uint64_t)pgr_i64(r, row, 2);
    rec->session = (uint64_t)pgr_i64(r, row, 3);
    rec->kind = (enum bf_commit_kind)pgr_i64(r, row, 4);
    rec->file = (uint64_t)pgr_i64(r, row, 5);
    rec->file2 = (uint64_t)pgr_i64(r, row, 6);
    rec->time_ns = pgr_i64(r, row, 7);
    rec->write.serial = rec->serial;
    rec->write.size_changed = !pgr_null(r, row, 8);
    rec->write.size = (uint64_t)pgr_i64(r, row, 8);
    rec->write.trunc = pgr_null(r, row, 9) ? UINT64_MAX : (uint64_t)pgr_i64(r, row, 9);
    /* libpq ends every value with a NUL, binary ones too */
    rec->name = pgr_null(r, row, 11) ? NULL : PQgetvalue(r, row, 11);
    rec->name2 = pgr_null(r, row, 12) ? NULL : PQgetvalue(r, row, 12);
    rec->rename_flags = (unsigned)pgr_i64(r, row, 13);
    *ranges = NULL;
    int e = bf_ranges_decode(PQgetvalue(r, row, 10), (size_t)PQgetlength(r, row, 10), ranges,
                             &rec->write.nranges);
    if (e == -EPROTO) {
        bf_db_log(&d->base,
                  "commit %llu: its changed blocks cannot be read: taking every block of file "
                  "%llu for changed",
                  (unsigned long long)rec->serial, (unsigned long long)rec->file);
        rec->write.trunc = 0;
        rec->write.nranges = 0;
        e = 0;
    }
    rec->write.ranges = *ranges;
    return e;
}

int pg_log_read(bf_db *db, uint64_t after, size_t max,
                int (*fn)(void *arg, const struct bf_commit_rec *rec), void *arg, uint64_t *current,
                uint64_t *trimmed)
{
    struct pg_db *d = PG(db);
    PGresult *r = NULL;
    struct pgp p = { 0 };
    pgp_u64(&p, after);
    pgp_u64(&p, max);
    pthread_mutex_lock(&d->vlock);
    int e = v_ensure(d);
    if (e == 0)
        e = vrun(d, PS_LOGREAD, &p, &r, "reading the commit log");
    if (e == 0 && PQntuples(r) < 1) {
        bf_db_log(&d->base, "the counter or meta row is missing");
        e = -EIO;
    }
    if (e == 0) {
        *current = (uint64_t)pgr_i64(r, 0, 0);
        *trimmed = (uint64_t)pgr_i64(r, 0, 1);
        d->last_read_ns = bf_mono_ns();
    }
    for (int i = 0; e == 0 && i < PQntuples(r); i++) {
        if (pgr_null(r, i, 2))
            continue; /* no row past `after` */
        struct bf_commit_rec rec;
        struct bf_blkrange *ranges;
        e = decode_row(d, r, i, &rec, &ranges);
        if (e == 0)
            e = fn(arg, &rec);
        free(ranges);
    }
    PQclear(r);
    pthread_mutex_unlock(&d->vlock);
    return e;
}

/* ---- the housekeeping -------------------------------------------------------------------------- */

/* (file, blk, serial) triplets: the versions older than them are
 * superseded. */
struct triplets {
    int64_t *file, *blk, *serial;
    size_t n, cap;
};

static void trip_free(struct triplets *t)
{
    free(t->file);
    free(t->blk);
    free(t->serial);
    memset(t, 0, sizeof(*t));
}

static int trip_add(struct triplets *t, int64_t file, int64_t blk, int64_t serial)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1024;
        int64_t *f = realloc(t->file, cap * sizeof(*f));
        if (f)
            t->file = f;
        int64_t *b = f ? realloc(t->blk, cap * sizeof(*b)) : NULL;
        if (b)
            t->blk = b;
        int64_t *s = b ? realloc(t->serial, cap * sizeof(*s)) : NULL;
        if (!s)
            return -ENOMEM;
        t->serial = s;
        t->cap = cap;
    }
    t->file[t->n] = file;
    t->blk[t->n] = blk;
    t->serial[t->n++] = serial;
    return 0;
}

/* Run PS_GC_DEL (with `upto` for gc_done) or PS_MARK on the triplets, and
 * empty them. */
static int trip_flush(struct pg_db *d, struct triplets *t, int stmt, int64_t upto)
{
    int lf = 0, lb = 0, ls = 0;
    char *af = pg_array(t->file, t->n, &lf);
    char *ab = pg_array(t->blk, t->n, &lb);
    char *as = pg_array(t->serial, t->n, &ls);
    int e = af && ab && as ? 0 : -ENOMEM;
    struct pgp p = { 0 };
    pgp_bytes(&p, af, (size_t)lf);
    pgp_bytes(&p, ab, (size_t)lb);
    pgp_bytes(&p, as, (size_t)ls);
    if (stmt == PS_GC_DEL)
        pgp_i64(&p, upto);
    if (e == 0)
        e = vrun(d, stmt, &p, NULL,
                 stmt == PS_GC_DEL ? "collecting old versions" : "marking old versions");
    free(af);
    free(ab);
    free(as);
    t->n = 0;
    return e;
}

/* Add the versions the write commits of result r superseded. */
static int trip_rows(struct pg_db *d, struct triplets *t, const PGresult *r, int row)
{
    struct bf_blkrange *v = NULL;
    size_t n = 0;
    int64_t serial = pgr_i64(r, row, 0), file = pgr_i64(r, row, 1);
    int e = bf_ranges_decode(PQgetvalue(r, row, 2), (size_t)PQgetlength(r, row, 2), &v, &n);
    if (e == -EPROTO) {
        bf_db_log(&d->base, "commit %lld: its changed blocks cannot be read: its old versions stay",
                  (long long)serial);
        return 0;
    }
    for (size_t i = 0; e == 0 && i < n; i++)
        for (uint64_t b = v[i].start; e == 0 && b - v[i].start < v[i].count; b++)
            e = trip_add(t, file, (int64_t)b, serial);
    free(v);
    return e;
}

struct trim_state {
    int64_t serial, log_trimmed, gc_done, collected, lowest;
    int64_t from; /* history_from, as the history's step advanced it */
    int64_t deadline;
};

/* Walk the write commits in (from, to], batch by batch: PS_GC_DEL (or, with
 * `mark`, PS_MARK and the log rows' deletion) of what they superseded. */
static int walk_commits(struct pg_db *d, struct trim_state *s, int64_t from, int64_t to, bool mark)
{
    struct triplets t = { 0 };
    int e = 0;
    while (e == 0 && from < to && bf_mono_ns() < s->deadline) {
        PGresult *r;
        struct pgp p = { 0 };
        pgp_i64(&p, from);
        pgp_i64(&p, to);
        pgp_i64(&p, PG_GC_ROWS);
        if ((e = vrun(d, PS_GC_ROWS, &p, &r, "reading the log")) < 0)
            break;
        int n = PQntuples(r);
        int64_t upto = n < PG_GC_ROWS ? to : pgr_i64(r, n - 1, 0);
        for (int i = 0; e == 0 && i < n; i++) {
            e = trip_rows(d, &t, r, i);
            /* a big batch: its versions in several statements (gc_done
             * moves at the batch's end only) */
            if (e == 0 && t.n >= PG_GC_TRIPLETS)
                e = trip_flush(d, &t, mark ? PS_MARK : PS_GC_DEL, from);
        }
        PQclear(r);
        if (e == 0)
            e = trip_flush(d, &t, mark ? PS_MARK : PS_GC_DEL, upto);
        if (e == 0 && mark) {
            struct pgp q = { 0 };
            pgp_i64(&q, upto);
            pgp_i64(&q, upto);
            e = vrun(d, PS_LOG_TRIM, &q, NULL, "trimming the log");
        }
        if (e == 0) {
            from = upto;
            s->gc_done = upto > s->gc_done ? upto : s->gc_done;
            if (mark)
                s->log_trimmed = upto;
        }
    }
    trip_free(&t);
    return e;
}

/* Step 3: dead sessions. */
static int trim_dead(struct pg_db *d)
{
    PGresult *r;
    struct pgp p = { 0 };
    pgp_u64(&p, d->base.session);
    pgp_u64(&p, d->popt.dead_grace_ms);
    int e = vrun(d, PS_DEAD, &p, &r, "looking for dead sessions");
    for (int i = 0; e == 0 && i < PQntuples(r); i++) {
        struct pgp q = { 0 };
        int64_t id = pgr_i64(r, i, 0);
        pgp_i64(&q, id);
        struct pgq s[] = { { PS_BEGIN, NULL, NULL },     { PS_ORPHANS, &q, NULL },
                           { PS_UNHOLD_ALL, &q, NULL },  { PS_UNPIN_ALL, &q, NULL },
                           { PS_SESSION_DEL, &q, NULL }, { PS_COMMIT, NULL, NULL } };
        e = vpipe(d, s, 6, "cleaning up after a dead session");
        if (e == 0)
            bf_db_log(&d->base,
                      "session %lld is dead (its process or machine ended without closing it): "
                      "cleaned up after it",
                      (long long)id);
    }
    PQclear(r);
    return e;
}

/* Step 4 and 5: versions and the log. */
static int trim_versions_and_log(struct pg_db *d, struct trim_state *s, uint64_t applied)
{
    PGresult *r;
    struct pgp p = { 0 };
    pgp_u64(&p, d->base.session);
    int e = vrun(d, PS_TRIM_STATE, &p, &r, "housekeeping");
    if (e < 0)
        return e;
    s->serial = pgr_i64(r, 0, 0);
    s->log_trimmed = pgr_i64(r, 0, 1);
    s->gc_done = pgr_i64(r, 0, 2);
    s->collected = pgr_i64(r, 0, 3);
    s->lowest = applied < (uint64_t)s->serial ? (int64_t)applied : s->serial;
    if (!pgr_null(r, 0, 4) && pgr_i64(r, 0, 4) < s->lowest)
        s->lowest = pgr_i64(r, 0, 4);
    PQclear(r);
    /* versions superseded at or before min(from, the slowest) go */
    if (s->from < s->lowest)
        s->lowest = s->from;
    /* the log rows of the kept history stay (a file's log reads them) */
    int64_t log_bound = s->from > 0 ? s->from - 1 : 0;
    if (s->gc_done < s->lowest)
        e = walk_commits(d, s, s->gc_done, s->lowest, false);
    if (e == 0) {
        struct pgp q = { 0 };
        pgp_i64(&q, s->lowest);
        e = vrun(d, PS_GC_MARKED, &q, NULL, "collecting old versions");
    }
    /* Beyond the slowest session, at most log_keep rows are kept. */
    uint64_t keep = d->base.opt.log_keep;
    int64_t over = (uint64_t)s->serial > keep ? s->serial - (int64_t)keep : 0;
    if (over > log_bound)
        over = log_bound;
    if (e == 0 && over > s->gc_done)
        e = walk_commits(d, s, s->gc_done, over, true);
    int64_t upto = s->gc_done < log_bound ? s->gc_done : log_bound;
    if (e == 0 && s->log_trimmed < upto) {
        struct pgp q = { 0 };
        pgp_i64(&q, upto);
        pgp_i64(&q, s->gc_done);
        e = vrun(d, PS_LOG_TRIM, &q, NULL, "trimming the log");
    }
    return e;
}

/* Step 6: nameless files no live session holds. */
static int trim_nameless(struct pg_db *d, const struct trim_state *s)
{
    PGresult *r;
    int e = vrun(d, PS_NAMELESS, NULL, &r, "looking for nameless files");
    for (int i = 0; e == 0 && i < PQntuples(r) && bf_mono_ns() < s->deadline; i++) {
        e = purge_on(d, &d->v, (uint64_t)pgr_i64(r, i, 0), false);
        v_after(d);
    }
    PQclear(r);
    return e;
}

/* Step 7: garbage contents, a few per statement. */
static int trim_garbage(struct pg_db *d, const struct trim_state *s)
{
    int e = 0;
    for (;;) {
        PGresult *r;
        struct pgp p = { 0 };
        pgp_i64(&p, PG_GARBAGE_BATCH);
        if ((e = vrun(d, PS_GARBAGE, &p, &r, "deleting garbage")) < 0)
            break;
        int64_t n = pgr_i64(r, 0, 0);
        PQclear(r);
        if (n < PG_GARBAGE_BATCH || bf_mono_ns() >= s->deadline)
            break;
    }
    return e;
}

int pg_trim(bf_db *db, uint64_t applied, bool all)
{
    struct pg_db *d = PG(db);
    struct trim_state s = { .deadline = all ? INT64_MAX : bf_mono_ns() + PG_TRIM_TURN_NS };
    bool got = false;
    if (d->base.flags & BF_DB_RDONLY)
        return 0;
    pthread_mutex_lock(&d->vlock);
    int e = v_ensure(d);
    if (e == 0 && __atomic_load_n(&d->fenced, __ATOMIC_SEQ_CST))
        e = -EIO; /* writes nothing; its lock says it is alive */
    if (e == 0)
        e = seen(d, applied);
    if (e == 0)
        e = vrun_bool(d, all ? PS_TRIMLOCK : PS_TRIMLOCK_TRY, NULL, &got, "housekeeping");
    if (all)
        got = e == 0; /* pg_advisory_lock waits, and returns void */
    if (e == 0 && got) {
        e = trim_dead(d);
        if (e == 0) {
            e = pg_history_advance(d, &d->v, &s.from);
            v_after(d);
        }
        if (e == 0)
            e = trim_versions_and_log(d, &s, applied);
        if (e == 0) {
            e = pg_history_trim_states(d, &d->v, s.from);
            v_after(d);
        }
        if (e == 0)
            e = trim_nameless(d, &s);
        if (e == 0)
            e = trim_garbage(d, &s);
        int u = vrun(d, PS_TRIMUNLOCK, NULL, NULL, "housekeeping");
        e = e < 0 ? e : u;
    }
    pthread_mutex_unlock(&d->vlock);
    return e;
}
