/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the PostgreSQL engine's history (backend.h,
 * "point-in-time views"; docs/HISTORY.md has the model and the rules).
 *
 * Tables (schema version 2, pg_schema.c): file_states(file, serial, name,
 * blksize, size, mode, uid, gid, mtime_ns), pins(session, serial), meta
 * 'history_from' and 'history_keep_ns'. Every commit writes the state
 * after it of each file it touches (PS_STATE_W, in its second pipelined
 * round trip: no round trip more); a commit never deletes the versions it
 * replaces but when the database keeps no history (pg.c, "alone").
 *
 * Reading at S is one statement (one snapshot) on a reader that also says
 * whether from <= S <= serial (else -ENOENT). The state of file F at S is
 * its row with the greatest serial <= S; the content is the block versions
 * as of S (loadblk at S), which only the housekeeping deletes, at or
 * before min(from, the slowest live session's applied serial).
 *
 * No window between a pin and the advance of `from`: a pin share-locks
 * the meta row 'history_from' and then, in a statement of its own (READ
 * COMMITTED: a snapshot taken after the lock), checks from <= S <= serial
 * and inserts; an advance locks the row for update and then, in a
 * statement of its own, reads the live pins and updates it. Whichever
 * gets the lock second sees what the first committed.
 *
 * The housekeeping's history steps (pg_session.c calls them, under the
 * trim lock, after the dead sessions' cleanup, which removes their pins):
 * advance `from`, then collect with the bound min(from, slowest applied)
 * (pg_session.c), trim the file states, keep the log rows >= from, and
 * purge a nameless file only when its last state is <= from (PS_PURGE;
 * a purge and a release advance `from` first, in their transaction, so
 * that with retention 0 and no pin an unlinked file goes at its last
 * close, as without history).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/pg_internal.h"
#include "backends/ranges.h"

/* ---- reading ----------------------------------------------------------------- */

/* A result of PS_STATE_AT, PS_BYNAME_AT or PS_LIST_AT: -ENOENT when the
 * serial is not kept, else 0. */
static int kept(const PGresult *r)
{
    return PQntuples(r) > 0 && pgr_bool(r, 0, 0) ? 0 : -ENOENT;
}

/* One state row at a serial into *out (if not NULL). */
static int state_row(struct pg_db *d, int stmt, const struct pgp *p, struct bf_fileinfo *out)
{
    PGresult *r;
    struct bf_fileinfo fi;
    int e = pg_reader_run(d, stmt, p, &r, "reading a file's state at a serial");
    if (e == 0)
        e = kept(r);
    if (e == 0 && pgr_null(r, 0, 1))
        e = -ENOENT; /* no such file then */
    if (e == 0)
        e = pg_row_info(d, r, 0, 1, &fi);
    if (e == 0 && out)
        *out = fi;
    PQclear(r);
    return e;
}

int pg_getinfo_at(bf_db *db, uint64_t serial, uint64_t id, struct bf_fileinfo *out)
{
    struct pgp p = { 0 };
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    pgp_u64(&p, id);
    pgp_u64(&p, serial);
    return state_row(PG(db), PS_STATE_AT, &p, out);
}

int pg_lookup_at(bf_db *db, uint64_t serial, const char *name, struct bf_fileinfo *out)
{
    struct pgp p = { 0 };
    pgp_text(&p, name);
    pgp_u64(&p, serial);
    return state_row(PG(db), PS_BYNAME_AT, &p, out);
}

int pg_list_at(bf_db *db, uint64_t serial, int (*cb)(void *arg, const struct bf_fileinfo *fi),
               void *arg)
{
    struct pg_db *d = PG(db);
    PGresult *r;
    struct bf_fileinfo fi;
    struct pgp p = { 0 };
    pgp_u64(&p, serial);
    int e = pg_reader_run(d, PS_LIST_AT, &p, &r, "listing files at a serial");
    if (e == 0)
        e = kept(r);
    for (int i = 0; e == 0 && i < PQntuples(r); i++)
        if (!pgr_null(r, i, 1) && pg_row_info(d, r, i, 1, &fi) == 0) /* else left out, logged */
            e = cb(arg, &fi);
    PQclear(r);
    return e;
}

int pg_history(bf_db *db, struct bf_history *out)
{
    struct pg_db *d = PG(db);
    PGresult *r;
    struct pgp p = { 0 };
    pgp_u64(&p, d->popt.dead_grace_ms);
    memset(out, 0, sizeof(*out));
    int e = pg_reader_run(d, PS_HISTORY, &p, &r, "reading the history");
    if (e == 0 && (PQntuples(r) != 1 || pgr_null(r, 0, 0) || pgr_null(r, 0, 2))) {
        bf_db_log(&d->base, "the meta rows of the history are missing");
        e = -EIO;
    }
    if (e == 0) {
        *out = (struct bf_history){ .kept = true,
                                    .from = (uint64_t)pgr_i64(r, 0, 0),
                                    .current = (uint64_t)pgr_i64(r, 0, 1),
                                    .keep_ns = pgr_i64(r, 0, 2),
                                    .pinned = (uint64_t)pgr_i64(r, 0, 3) };
        /* A view never shows serial 0: a new database's history starts at 1. */
        if (out->from == 0)
            out->from = 1;
    }
    PQclear(r);
    return e;
}

/* Decode row `row` of a PS_FILELOG result, of file id, into *e. */
static void log_entry(const PGresult *r, int row, uint64_t id, struct bf_log_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->serial = (uint64_t)pgr_i64(r, row, 0);
    e->kind = (enum bf_commit_kind)pgr_i64(r, row, 1);
    e->time_ns = pgr_i64(r, row, 2);
    bool second = !pgr_null(r, row, 3) && (uint64_t)pgr_i64(r, row, 3) == id;
    unsigned flags = (unsigned)pgr_i64(r, row, 6);
    /* A rename that replaced the file removed its name. */
    if (e->kind == BF_COMMIT_RENAME && second && !(flags & BF_RENAME_EXCHANGE))
        e->kind = BF_COMMIT_UNLINK;
    if (e->kind == BF_COMMIT_WRITE) {
        e->truncated = !pgr_null(r, row, 4);
        /* the blocks it changed: stored, or dropped by its truncate */
        e->blocks = bf_ranges_count(PQgetvalue(r, row, 5), (size_t)PQgetlength(r, row, 5),
                                    UINT64_MAX);
    }
    e->size = (uint64_t)pgr_i64(r, row, 7);
    if (!pgr_null(r, row, 8))
        snprintf(e->name, sizeof(e->name), "%.*s", PQgetlength(r, row, 8), PQgetvalue(r, row, 8));
}

int pg_file_log(bf_db *db, uint64_t id, uint64_t before, size_t max,
                int (*cb)(void *arg, const struct bf_log_entry *e), void *arg)
{
    struct pg_db *d = PG(db);
    PGresult *r;
    struct bf_log_entry ent;
    struct pgp p = { 0 };
    if (id > (uint64_t)INT64_MAX || max == 0)
        return 0;
    pgp_u64(&p, id);
    pgp_u64(&p, before);
    pgp_u64(&p, max);
    int e = pg_reader_run(d, PS_FILELOG, &p, &r, "reading a file's log");
    for (int i = 0; e == 0 && i < PQntuples(r); i++) {
        log_entry(r, i, id, &ent);
        e = cb(arg, &ent);
    }
    PQclear(r);
    return e;
}

/* ---- writing ------------------------------------------------------------------------ */

/* Run the pipeline q[0..n) on the writer (BEGIN ... COMMIT); rolled back
 * on failure. */
static int wpipe(struct pg_db *d, struct pgq *q, int n, const char *what)
{
    int e = pg_w_begin(d);
    if (e < 0)
        return e;
    e = pgc_pipeline(d, &d->w, q, n, what, NULL);
    if (e < 0 && d->w.c)
        pgc_run(d, &d->w, PS_ROLLBACK, NULL, NULL, "rolling back");
    pg_w_end(d);
    return e;
}

int pg_history_keep(bf_db *db, int64_t keep_ns)
{
    struct pg_db *d = PG(db);
    struct pgp p = { 0 };
    pgp_i64(&p, keep_ns);
    struct pgq q[] = { { PS_BEGIN, NULL, NULL },
                       { PS_SYNC_ON, NULL, NULL },
                       { PS_KEEP, &p, NULL },
                       { PS_COMMIT, NULL, NULL } };
    int e = wpipe(d, q, 4, "setting the history's retention");
    pgq_clear(q, 4);
    return e;
}

int pg_pin(bf_db *db, uint64_t serial, bool on)
{
    struct pg_db *d = PG(db);
    struct pgp p = { 0 };
    BF_ASSERT(db->session); /* never in a read-only session */
    pgp_u64(&p, db->session);
    pgp_u64(&p, serial);
    struct pgq q[] = { { PS_BEGIN, NULL, NULL },
                       { on ? PS_FROM_SHARE : PS_UNPIN, on ? NULL : &p, NULL },
                       { PS_PIN, &p, NULL },
                       { PS_COMMIT, NULL, NULL } };
    if (!on)
        q[2] = q[3]; /* BEGIN, UNPIN, COMMIT */
    int n = on ? 4 : 3;
    int e = wpipe(d, q, n, on ? "recording a pin" : "removing a pin");
    if (e == 0 && on && PQntuples(q[2].res) == 0)
        e = -ENOENT; /* not in the kept history (nothing was inserted) */
    pgq_clear(q, n);
    /* remembered, to pin again after a re-registration (pg_session.c);
     * a pin that cannot be remembered is taken back (it would be lost
     * then, and a gc could collect what the view reads) */
    if (e == 0 && on && pg_pinned_add(d, serial) < 0) {
        pg_pin(db, serial, false);
        e = -ENOMEM;
    } else if (e == 0 && !on) {
        pg_pinned_del(d, serial);
    }
    return e;
}

/* ---- the housekeeping's steps ------------------------------------------------------ */

int pg_history_advance(struct pg_db *d, struct pgc *c, int64_t *from)
{
    struct pgp pl = { 0 }, pa = { 0 };
    pgp_i64(&pl, 0);
    pgp_i64(&pa, bf_now_ns());
    pgp_u64(&pa, d->popt.dead_grace_ms);
    pgp_i64(&pa, 0);
    struct pgq q[] = { { PS_BEGIN, NULL, NULL },
                       { PS_FROM_LOCK, &pl, NULL },
                       { PS_ADVANCE, &pa, NULL },
                       { PS_COMMIT, NULL, NULL } };
    int e = pgc_pipeline(d, c, q, 4, "advancing the history", NULL);
    if (e == 0 && PQntuples(q[2].res) != 1) {
        bf_db_log(&d->base, "the meta rows of the history are missing");
        e = -EIO;
    }
    if (e == 0)
        *from = pgr_i64(q[2].res, 0, 0);
    else if (c->c)
        pgc_run(d, c, PS_ROLLBACK, NULL, NULL, "rolling back");
    pgq_clear(q, 4);
    return e;
}

int pg_history_trim_states(struct pg_db *d, struct pgc *c, int64_t from)
{
    struct pgp p = { 0 };
    pgp_i64(&p, from);
    return pgc_run(d, c, PS_STATES_TRIM, &p, NULL, "trimming file states");
}
