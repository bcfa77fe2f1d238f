/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the SQLite engine's history (backend.h,
 * "point-in-time views"; docs/HISTORY.md).
 *
 * Tables (schema 3, sqlite_schema.c):
 *   file_states(file, serial, name, blksize, size, mode, uid, gid,
 *               mtime_ns)      the state of a file right after commit
 *                              `serial` (name NULL: it had none); every
 *                              commit writes one row per file it touches
 *                              (sq_state_write), in its transaction
 *   pins(session, serial)      the serials live views hold
 *   meta 'history_from'        the oldest serial a view may show
 *        'history_keep_ns'     the retention period
 *        'states_trimmed'      the states with a serial <= it have been
 *                              looked at by the housekeeping (its cursor)
 * The state of file F at S is its row with the greatest serial <= S; the
 * content is the block versions as of S (blockmap), which a commit never
 * deletes: only the housekeeping does, at or before min(from, the slowest
 * live session's applied serial).
 *
 * Reading at S is one read transaction that first checks from <= S <=
 * serial (-ENOENT). A pin checks the same in the write transaction that
 * records it; `from` only advances in the housekeeping's write
 * transaction that reads the pins (sq_history_advance), so a pin either
 * holds the advance or finds its serial gone: no window.
 *
 * The housekeeping's history steps (sqlite_session.c calls them):
 *   advance   from' = max(from, min(T, P)): T the newest logged serial
 *             committed at or before now - keep (keep 0: the serial), P the
 *             lowest pin of a live session;
 *   states    rows older than their file's newest row <= from go (the rows
 *             with a serial in (states_trimmed, from] each delete their
 *             file's older rows; states_trimmed follows);
 *   and, in the steps of the coherence rules: versions are collected up to
 *   min(from', the slowest applied), log rows >= from' stay, and a nameless
 *   file is purged only once its last state is <= from' (sq_history_keeps,
 *   which purge and release ask too).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/ranges.h"
#include "backends/sqlite_internal.h"

#define SQ_HISTORY_ROWS 1000 /* rows looked at per housekeeping transaction */

static int64_t I64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* ---- writing --------------------------------------------------------------- */

int sq_state_write(struct sq_db *d, uint64_t id, uint64_t serial)
{
    int64_t v[2] = { (int64_t)id, (int64_t)serial };
    return sq_wrun(d, W_STATE, 2, v, "recording a file's state");
}

int sq_history_keep(bf_db *db, int64_t keep_ns)
{
    struct sq_db *d = SQ(db);
    int e = sq_wbegin(d, true);
    if (e == 0)
        e = sq_wend(d, true, sq_wmeta_set(d, "history_keep_ns", keep_ns));
    return e;
}

int sq_pin(bf_db *db, uint64_t serial, bool on)
{
    struct sq_db *d = SQ(db);
    int64_t from = 0, cur = 0;
    int64_t v[2] = { (int64_t)db->session, I64(serial) };
    int e = sq_wbegin(d, false);
    if (e < 0)
        return e;
    if (!on) {
        e = sq_wrun(d, W_UNPIN, 2, v, "removing a pin");
    } else if ((e = sq_wmeta_get(d, "history_from", &from)) == 0 &&
               (e = sq_wmeta_get(d, "serial", &cur)) == 0) {
        if (v[1] < from || v[1] > cur)
            e = -ENOENT;
        else
            e = sq_wrun(d, W_PIN, 2, v, "recording a pin");
    }
    return sq_wend(d, false, e);
}

/* ---- reading ------------------------------------------------------------------- */

/* Take a reader and begin a read transaction on it that reads *from
 * (history_from) and *cur (the serial). On failure nothing is left to
 * end. */
static int read_begin(struct sq_db *d, struct sq_reader **out, int64_t *from, int64_t *cur)
{
    struct sq_reader *r;
    int e = sq_reader_get(d, &r);
    if (e < 0)
        return e;
    int rc = sq_exec(r->st[R_BEGIN]);
    e = rc == SQLITE_OK ? 0 : sq_fail(d, r->c, rc, "beginning a read");
    if (e == 0)
        e = sq_reader_meta(d, r, "history_from", from);
    if (e == 0)
        e = sq_reader_meta(d, r, "serial", cur);
    if (e < 0) {
        if (!sqlite3_get_autocommit(r->c))
            sq_exec(r->st[R_COMMIT]);
        sq_reader_put(d, r);
        return e;
    }
    *out = r;
    return 0;
}

/* End what read_begin began. */
static void read_end(struct sq_db *d, struct sq_reader *r)
{
    sq_exec(r->st[R_COMMIT]);
    sq_reader_put(d, r);
}

/* read_begin, and check that serial is kept: -ENOENT (nothing is left to
 * end) if not. */
static int at_begin(struct sq_db *d, struct sq_reader **r, uint64_t serial)
{
    int64_t from = 0, cur = 0;
    int e = read_begin(d, r, &from, &cur);
    if (e == 0 && (serial < (uint64_t)from || serial > (uint64_t)cur)) {
        read_end(d, *r);
        e = -ENOENT;
    }
    return e;
}

/* Run reader statement `which` with text (if not NULL) or id as parameter
 * 1 and serial as parameter 2, for one state row, at serial. */
static int state_row(struct sq_db *d, int which, const char *text, uint64_t id, uint64_t serial,
                     struct bf_fileinfo *out)
{
    struct sq_reader *r;
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    int e = at_begin(d, &r, serial);
    if (e < 0)
        return e;
    sqlite3_stmt *st = r->st[which];
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, (int64_t)id);
    sqlite3_bind_int64(st, 2, I64(serial));
    e = sq_step_row(d, r->c, st, out);
    read_end(d, r);
    return e;
}

int sq_getinfo_at(bf_db *db, uint64_t serial, uint64_t id, struct bf_fileinfo *out)
{
    return state_row(SQ(db), R_STATE_AT, NULL, id, serial, out);
}

int sq_lookup_at(bf_db *db, uint64_t serial, const char *name, struct bf_fileinfo *out)
{
    return state_row(SQ(db), R_BYNAME_AT, name, 0, serial, out);
}

int sq_list_at(bf_db *db, uint64_t serial, int (*cb)(void *arg, const struct bf_fileinfo *fi),
               void *arg)
{
    struct sq_db *d = SQ(db);
    struct sq_reader *r;
    int e = at_begin(d, &r, serial);
    if (e < 0)
        return e;
    sqlite3_bind_int64(r->st[R_LIST_AT], 1, I64(serial));
    e = sq_list_rows(d, r->c, r->st[R_LIST_AT], cb, arg);
    read_end(d, r);
    return e;
}

int sq_history(bf_db *db, struct bf_history *out)
{
    struct sq_db *d = SQ(db);
    struct sq_reader *r;
    int64_t from = 0, cur = 0, keep = 0;
    int rc = SQLITE_DONE, e = read_begin(d, &r, &from, &cur);
    if (e < 0)
        return e;
    e = sq_reader_meta(d, r, "history_keep_ns", &keep);
    *out = (struct bf_history){
        .kept = true, .from = (uint64_t)from, .current = (uint64_t)cur, .keep_ns = keep
    };
    sqlite3_stmt *st = r->st[R_PINS];
    while (e == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t s = (uint64_t)sqlite3_column_int64(st, 1);
        if (sq_session_alive(d, (uint64_t)sqlite3_column_int64(st, 0)) &&
            (out->pinned == 0 || s < out->pinned))
            out->pinned = s;
    }
    if (e == 0 && rc != SQLITE_DONE)
        e = sq_fail(d, r->c, rc, "reading the pins");
    sqlite3_reset(st);
    read_end(d, r);
    /* A view never shows serial 0: a new database's history starts at 1. */
    if (e == 0 && out->from == 0)
        out->from = 1;
    return e;
}

/* Decode the row of R_FILELOG st stands on, of file id, into *e. */
static void log_entry(sqlite3_stmt *st, uint64_t id, struct bf_log_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->serial = (uint64_t)sqlite3_column_int64(st, 0);
    e->kind = (enum bf_commit_kind)sqlite3_column_int(st, 1);
    e->time_ns = sqlite3_column_int64(st, 2);
    bool second = (uint64_t)sqlite3_column_int64(st, 3) == id;
    unsigned flags = (unsigned)sqlite3_column_int(st, 6);
    /* A rename that replaced the file removed its name. */
    if (e->kind == BF_COMMIT_RENAME && second && !(flags & BF_RENAME_EXCHANGE))
        e->kind = BF_COMMIT_UNLINK;
    if (e->kind == BF_COMMIT_WRITE) {
        bool trunc = sqlite3_column_type(st, 4) != SQLITE_NULL;
        e->truncated = trunc;
        /* the blocks it changed: the row names those it stored and
         * those its truncate dropped (what other mounts invalidate) */
        e->blocks = bf_ranges_count(sqlite3_column_blob(st, 5), (size_t)sqlite3_column_bytes(st, 5),
                                    UINT64_MAX);
    }
    e->size = (uint64_t)sqlite3_column_int64(st, 7);
    const unsigned char *name = sqlite3_column_text(st, 8);
    if (name)
        snprintf(e->name, sizeof(e->name), "%s", (const char *)name);
}

int sq_file_log(bf_db *db, uint64_t id, uint64_t before, size_t max,
                int (*cb)(void *arg, const struct bf_log_entry *e), void *arg)
{
    struct sq_db *d = SQ(db);
    struct sq_reader *r;
    struct bf_log_entry ent;
    int64_t from = 0, cur = 0;
    if (id > (uint64_t)INT64_MAX)
        return 0;
    int rc = SQLITE_DONE, e = read_begin(d, &r, &from, &cur);
    if (e < 0)
        return e;
    sqlite3_stmt *st = r->st[R_FILELOG];
    sqlite3_bind_int64(st, 1, (int64_t)id);
    sqlite3_bind_int64(st, 2, I64(before));
    sqlite3_bind_int64(st, 3, from);
    sqlite3_bind_int64(st, 4, max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        log_entry(st, id, &ent);
        if ((e = cb(arg, &ent)) != 0)
            break;
    }
    if (e == 0 && rc != SQLITE_DONE)
        e = sq_fail(d, r->c, rc, "reading a file's log");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    read_end(d, r);
    return e;
}

/* ---- the housekeeping's steps ---------------------------------------------------- */

/* T (see the top) from the log rows after `from`, up to `limit` (a pin:
 * beyond it T does not matter), at most SQ_HISTORY_ROWS of them; *more:
 * the batch ended before T was found. */
static int keep_bound(struct sq_db *d, uint64_t from, uint64_t limit, int64_t cut, uint64_t *t,
                      bool *more)
{
    sqlite3_stmt *st = d->ws[W_LOG_AFTER];
    int rc, n = 0;
    *t = from;
    *more = false;
    sqlite3_bind_int64(st, 1, (int64_t)from);
    sqlite3_bind_int64(st, 2, SQ_HISTORY_ROWS);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *t < limit) {
        if (sqlite3_column_int64(st, 1) > cut)
            break;
        *t = (uint64_t)sqlite3_column_int64(st, 0);
        *more = ++n == SQ_HISTORY_ROWS;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_fail(d, d->w, rc, "reading the log");
}

/* The lowest serial a live session pins (UINT64_MAX: none), on the writer. */
static int lowest_pin(struct sq_db *d, uint64_t *p)
{
    sqlite3_stmt *st = d->ws[W_PINS];
    int rc;
    *p = UINT64_MAX;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t s = (uint64_t)sqlite3_column_int64(st, 1);
        if (s < *p && sq_session_alive(d, (uint64_t)sqlite3_column_int64(st, 0)))
            *p = s;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(d, d->w, rc, "reading the pins");
}

/* In a writer transaction: advance history_from as the housekeeping does
 * (see the top), over SQ_HISTORY_ROWS log rows at most (*more: it may go
 * further); *from_out = its value after. The pins are read in the same
 * transaction, so a pin recorded before holds it back. */
static int advance(struct sq_db *d, uint64_t *from_out, bool *more)
{
    int64_t from = 0, keep = 0, cur = 0;
    uint64_t t = 0, p = UINT64_MAX;
    int e;
    *more = false;
    if ((e = sq_wmeta_get(d, "history_from", &from)) == 0 &&
        (e = sq_wmeta_get(d, "history_keep_ns", &keep)) == 0 &&
        (e = sq_wmeta_get(d, "serial", &cur)) == 0)
        e = lowest_pin(d, &p);
    if (e == 0 && keep <= 0)
        t = (uint64_t)cur; /* keep none */
    else if (e == 0)
        e = keep_bound(d, (uint64_t)from, p, bf_now_ns() - keep, &t, more);
    uint64_t nf = t < p ? t : p;
    if (nf < (uint64_t)from)
        nf = (uint64_t)from; /* it never moves back */
    if (e == 0 && nf > (uint64_t)from)
        e = sq_wmeta_set(d, "history_from", (int64_t)nf);
    if (e == 0)
        *from_out = nf;
    return e;
}

int sq_history_advance(struct sq_db *d, bool all, uint64_t *from)
{
    bool more = true;
    int e = 0;
    while (e == 0 && more) {
        if ((e = sq_wbegin(d, false)) == 0)
            e = sq_wend(d, false, advance(d, from, &more));
        more = more && all;
    }
    return e;
}

int sq_history_keeps(struct sq_db *d, uint64_t id, bool *keep)
{
    int64_t last = 0;
    uint64_t from = 0;
    bool more;
    /* As far as the history lets it go now: with no retention, a file
     * nobody pins is deleted at its last close, as without history. */
    int e = advance(d, &from, &more);
    if (e < 0)
        return e;
    sqlite3_bind_int64(d->ws[W_LASTSTATE], 1, (int64_t)id);
    int rc = sq_step_int(d->ws[W_LASTSTATE], NULL, &last);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_fail(d, d->w, rc, "reading a file's history");
    *keep = (uint64_t)last > from;
    return 0;
}

int sq_history_none(struct sq_db *d, bool *none)
{
    int64_t keep = 0;
    uint64_t p = UINT64_MAX;
    int e = sq_wmeta_get(d, "history_keep_ns", &keep);
    if (e == 0)
        e = lowest_pin(d, &p);
    *none = e == 0 && keep <= 0 && p == UINT64_MAX;
    return e;
}

int sq_history_trim_states(struct sq_db *d, uint64_t from, bool *more)
{
    int64_t done = 0;
    int64_t rows[SQ_HISTORY_ROWS][2];
    size_t n = 0;
    int rc;
    *more = false;
    int e = sq_wbegin(d, false);
    if (e < 0)
        return e;
    if ((e = sq_wmeta_get(d, "states_trimmed", &done)) < 0 || (uint64_t)done >= from)
        return sq_wend(d, false, e);
    sqlite3_stmt *st = d->ws[W_STATES_NEXT];
    sqlite3_bind_int64(st, 1, done);
    sqlite3_bind_int64(st, 2, (int64_t)from);
    sqlite3_bind_int64(st, 3, SQ_HISTORY_ROWS);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rows[n][0] = sqlite3_column_int64(st, 0);
        rows[n][1] = sqlite3_column_int64(st, 1);
        n++;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        e = sq_fail(d, d->w, rc, "trimming file states");
    for (size_t i = 0; e == 0 && i < n; i++)
        e = sq_wrun(d, W_STATES_TRIM, 2, rows[i], "trimming file states");
    /* A full batch may have cut a commit's rows (a rename writes two):
     * its serial is looked at again. */
    *more = n == SQ_HISTORY_ROWS;
    if (e == 0)
        e = sq_wmeta_set(d, "states_trimmed", *more ? rows[n - 1][1] - 1 : (int64_t)from);
    return sq_wend(d, false, e);
}
