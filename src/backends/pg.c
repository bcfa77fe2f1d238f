/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the PostgreSQL engine. See pg.h; the rules every
 * engine leaves to the layer (open files, one transaction per file, the
 * hold's end at the last close) are in engine.h, the protocol in
 * docs/COHERENCE.md, the schema at the top of pg_schema.c, the reasons and
 * measurements in docs/design/PG-ENGINE.md. This file: the content
 * operations, the commit section, namespace commits, open and close;
 * pg_conn.c, pg_session.c and pg_schema.c have the rest (pg_internal.h).
 *
 * Writing (COHERENCE.md rules 1, 2, 4): storeblk uploads each block with
 * content by itself, on the writer, in one autocommit statement
 * (synchronous_commit off: no flush) that inserts a contents row and its
 * uploads row (owned by the session until linked); an all-zero block is a
 * hole (nothing uploaded). The commit section is one transaction, with
 * synchronous_commit on (durable when it returns, with every upload before
 * it: the WAL is flushed in order), in two pipelined round trips:
 *
 *   RT1  BEGIN; SET LOCAL synchronous_commit = on;
 *        (1) UPDATE counter SET serial = serial + 1 RETURNING serial
 *            — S; the row's lock orders the commits: a second committer
 *            waits here until the first has committed, then reads S + 1;
 *        (2) the file's state (size and content serials and sessions) and
 *            whether this session is the only registered one;
 *        (3) the current version of every stored block, (4) of every block
 *            a truncate drops
 *        — READ COMMITTED: each statement's snapshot is taken after (1)
 *        got the lock, so it sees every earlier commit. The client checks
 *        the conflicts (rule 2); any → ROLLBACK, -ESTALE.
 *   RT2  (5) INSERT the new versions (a hole for a dropped block with
 *            data; nothing for zeros over a hole: no change);
 *        (6) DELETE the linked uploads' rows — all must be there, else an
 *            error aborts the transaction (the session was taken for dead,
 *            or a server crash lost an upload that was never flushed);
 *        uploads stored twice or truncated away become garbage;
 *        (7) UPDATE the file's row; INSERT its state after the commit
 *            (file_states, for the history); (8) INSERT the log row;
 *            NOTIFY; COMMIT.
 *
 * The block map is insert-only here: a commit never updates or deletes an
 * old version, so the counter row is held for two round trips and the
 * statements' execution, whatever the size of the file. PostgreSQL makes a
 * transaction visible before it releases its locks: a snapshot that sees
 * commit S + 1 sees S, and a reader of the log never sees a gap fill
 * later. The current version of a block is its newest (the housekeeping
 * never deletes a newest version), which the conflict check, SEEK_DATA
 * and st_blocks read.
 *
 * In doubt: a connection that breaks in RT2 (the server may have run the
 * COMMIT) is resolved on a new connection: a share lock of the counter
 * row waits for the old transaction to end (the server ends it when it
 * notices the dead connection), then the log says whether S is ours.
 * Until then the writeout answers neither success nor failure.
 *
 * Alone (rule 3): when no other session is registered and the database
 * keeps no history (retention 0, no pin: docs/HISTORY.md), right after the
 * commit (in a short transaction of its own, so that the commit section
 * stays insert-only) the versions the commit replaced and the holes it
 * made go, their contents become garbage, and 'collected' and
 * 'history_from' move to S. With history, a commit deletes nothing: the
 * housekeeping collects what no kept serial needs.
 * Aborted, refused and failed transactions give their uploads up
 * (garbage; if that fails, at the writer's next use, or when the session
 * ends). The housekeeping deletes garbage.
 *
 * Reading: loadblk(at) reads the newest version with serial <= at and its
 * content in one statement on a reader (with 'collected': none found and
 * at < collected → -ESTALE, else zeros), and copies the bytes once, from
 * libpq's result into the caller's buffer. A version found is always the
 * one as of `at`: the housekeeping deletes a version only with every older
 * one of its block.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/pg_internal.h"
#include "backends/ranges.h"

/* A pending store of a handle's transaction, and the block's current
 * version as the commit section finds it. */
struct pg_pend {
    uint64_t blk, base; /* blk first: bf_blk_lower */
    int64_t content;    /* the upload; 0: a hole */
    bool cur;           /* the block has a current version: */
    int64_t cur_serial, cur_session;
    bool cur_data; /* ... with content */
};

_Static_assert(offsetof(struct pg_pend, blk) == 0, "bf_blk_lower: blk first");

/* A handle. pend, drop and trunc_to are meaningful while the layer's tx is
 * BF_TX_OPEN, touched by the thread driving the transaction only. */
struct pg_fh {
    struct bf_fh base; /* first */
    struct pg_db *db;
    struct pg_pend *pend; /* sorted by blk */
    size_t npend, cappend;
    int64_t *drop; /* uploads no longer wanted (stored again, truncated away) */
    size_t ndrop, capdrop;
    uint64_t trunc_to; /* smallest truncate; UINT64_MAX: none */
};

static struct pg_fh *FH(struct bf_fh *fh)
{
    return (struct pg_fh *)fh;
}

static const struct bf_engine_ops pg_engine_ops;

/* ---- the writer ------------------------------------------------------------------- */

/* Give up the uploads left to give up (wlock held, writer open). */
static void flush_giveups(struct pg_db *d)
{
    int len = 0;
    char *arr = pg_array(d->giveup, d->ngiveup, &len);
    struct pgp p = { 0 };
    if (!arr)
        return;
    pgp_bytes(&p, arr, (size_t)len);
    pgp_u64(&p, d->base.session);
    if (pgc_run(d, &d->w, PS_GIVEUP, &p, NULL, "giving uploads up") == 0)
        d->ngiveup = 0;
    free(arr);
}

int pg_w_begin(struct pg_db *d)
{
    BF_ASSERT(!(d->base.flags & BF_DB_RDONLY)); /* the layer refuses writes */
    pthread_mutex_lock(&d->wlock);
    int e = pgc_ensure(d, &d->w);
    if (e < 0) {
        pthread_mutex_unlock(&d->wlock);
        return e;
    }
    if (d->ngiveup)
        flush_giveups(d);
    return 0;
}

void pg_w_end(struct pg_db *d)
{
    pthread_mutex_unlock(&d->wlock);
}

/* Uploads ids[0..n) (0: none) are not wanted: garbage, now or at the
 * writer's next use (and at the latest when the session ends). */
static void give_up(struct pg_db *d, const int64_t *ids, size_t n)
{
    pthread_mutex_lock(&d->wlock);
    for (size_t i = 0; i < n; i++) {
        if (!ids[i])
            continue;
        if (d->ngiveup == d->capgiveup) {
            size_t cap = d->capgiveup ? 2 * d->capgiveup : 64;
            int64_t *v = realloc(d->giveup, cap * sizeof(*v));
            if (!v)
                break; /* the session's end gives them up */
            d->giveup = v;
            d->capgiveup = cap;
        }
        d->giveup[d->ngiveup++] = ids[i];
    }
    bool open = d->ngiveup && pgc_ensure(d, &d->w) == 0;
    if (open)
        flush_giveups(d);
    pthread_mutex_unlock(&d->wlock);
}

/* Roll back the writer's transaction after a failure (if the connection
 * is still there). */
static void w_rollback(struct pg_db *d)
{
    if (d->w.c)
        pgc_run(d, &d->w, PS_ROLLBACK, NULL, NULL, "rolling back");
}

/* A commit whose connection broke after (or while) its COMMIT was sent:
 * did commit `serial` happen? On a new connection, wait for the old
 * transaction to end (it holds the counter row), then look the serial up.
 * 0: it happened; -EIO: it did not, or the server cannot tell (logged).
 * wlock held. */
static int resolve_in_doubt(struct pg_db *d, int64_t serial)
{
    int64_t until = bf_mono_ns() + (int64_t)d->connect_timeout_s * 1000000000;
    int e;
    /* The server may be restarting: try again for a connect timeout. */
    while ((e = pgc_open(d, &d->w, NULL, 0)) < 0 && bf_mono_ns() < until) {
        struct timespec ts = { 0, 200000000 };
        nanosleep(&ts, NULL);
    }
    struct pgp p = { 0 };
    pgp_i64(&p, serial);
    pgp_u64(&p, d->base.session);
    struct pgq q[] = { { PS_BEGIN, NULL, NULL },
                       { PS_COUNTER_SHARE, NULL, NULL },
                       { PS_INDOUBT, &p, NULL },
                       { PS_COMMIT, NULL, NULL } };
    if (e == 0)
        e = pgc_pipeline(d, &d->w, q, 4, "looking up a commit in doubt", NULL);
    bool happened = e == 0 && PQntuples(q[2].res) > 0;
    pgq_clear(q, 4);
    if (e < 0)
        w_rollback(d);
    if (e < 0)
        bf_db_log(&d->base,
                  "commit %lld: the connection broke at its COMMIT, and the server cannot be "
                  "asked whether it happened: failing it (a retry commits the same changes again)",
                  (long long)serial);
    else
        bf_db_log(&d->base, "commit %lld: the connection broke at its COMMIT; it %s",
                  (long long)serial,
                  happened ? "happened" : "did not happen (nothing of it is committed)");
    return happened ? 0 : -EIO;
}

/* ---- reads ------------------------------------------------------------------------------ */

int pg_reader_run(struct pg_db *d, int stmt, const struct pgp *p, PGresult **res, const char *what)
{
    struct pg_reader *r;
    *res = NULL; /* also when no reader can be had: callers PQclear it */
    int e = pg_reader_get(d, &r);
    if (e < 0)
        return e;
    e = pgc_run(d, &r->c, stmt, p, res, what);
    pg_reader_put(d, r);
    return e;
}

static int pg_loadblk(struct bf_fh *fh, uint64_t blk, uint64_t at, void *buf, uint64_t *serial)
{
    struct pg_db *d = FH(fh)->db;
    uint32_t bs = fh->file.blksize;
    PGresult *r;
    struct pgp p = { 0 };
    *serial = 0;
    if (blk > (uint64_t)INT64_MAX) {
        memset(buf, 0, bs);
        return 0;
    }
    pgp_u64(&p, fh->id);
    pgp_u64(&p, blk);
    pgp_u64(&p, at);
    int e = pg_reader_run(d, PS_LOAD, &p, &r, "loading a block");
    if (e < 0)
        return e;
    if (PQntuples(r) != 1) {
        bf_db_log(&d->base, "the meta row 'collected' is missing");
        e = -EIO;
    } else if (pgr_null(r, 0, 0)) {
        /* no version as of `at`: never written, or collected */
        if (at < (uint64_t)pgr_i64(r, 0, 3))
            e = -ESTALE;
        else
            memset(buf, 0, bs);
    } else if (pgr_null(r, 0, 1)) {
        *serial = (uint64_t)pgr_i64(r, 0, 0); /* a hole */
        memset(buf, 0, bs);
    } else if (pgr_null(r, 0, 2) || (uint32_t)PQgetlength(r, 0, 2) != bs) {
        bf_db_log(&d->base, "block %llu of file %llu: its content %s", (unsigned long long)blk,
                  (unsigned long long)fh->id,
                  pgr_null(r, 0, 2) ? "is missing" : "has the wrong size");
        e = -EIO;
    } else {
        *serial = (uint64_t)pgr_i64(r, 0, 0);
        memcpy(buf, PQgetvalue(r, 0, 2), bs);
    }
    PQclear(r);
    return e;
}

/* A one-integer reader query: *out; -ENXIO when there is no row. */
static int reader_i64(struct pg_db *d, int stmt, const struct pgp *p, uint64_t *out,
                      const char *what)
{
    PGresult *r;
    int e = pg_reader_run(d, stmt, p, &r, what);
    if (e < 0)
        return e;
    if (PQntuples(r) < 1)
        e = -ENXIO;
    else
        *out = (uint64_t)pgr_i64(r, 0, 0);
    PQclear(r);
    return e;
}

static int pg_next_stored(struct bf_fh *fh, uint64_t from, uint64_t *blk)
{
    struct pgp p = { 0 };
    if (from > (uint64_t)INT64_MAX)
        return -ENXIO; /* no block is stored that far */
    pgp_u64(&p, fh->id);
    pgp_u64(&p, from);
    return reader_i64(FH(fh)->db, PS_NEXTBLK, &p, blk, "looking for the next stored block");
}

static int pg_stored_blocks(struct bf_fh *fh, uint64_t *n)
{
    struct pgp p = { 0 };
    pgp_u64(&p, fh->id);
    int e = reader_i64(FH(fh)->db, PS_NBLOCKS, &p, n, "counting stored blocks");
    return e == -ENXIO ? -EIO : e; /* count(*) always yields a row */
}

static int pg_serial_now(bf_db *db, uint64_t *serial)
{
    int e = reader_i64(PG(db), PS_SERIAL, NULL, serial, "reading the serial");
    return e == -ENXIO ? -EIO : e;
}

/* ---- the store transaction ----------------------------------------------------------------- */

static int fenced(struct pg_db *d)
{
    return __atomic_load_n(&d->fenced, __ATOMIC_SEQ_CST) ? -EIO : 0;
}

static int pg_begin(struct bf_fh *fh)
{
    struct pg_fh *h = FH(fh);
    /* Nothing to lock: each upload and the commit are transactions of
     * their own. */
    BF_ASSERT(h->npend == 0 && h->ndrop == 0);
    h->trunc_to = UINT64_MAX;
    return fenced(h->db);
}

/* Room for one more pending store and one more dropped upload. -ENOMEM. */
static int pend_reserve(struct pg_fh *h)
{
    if (h->npend == h->cappend) {
        size_t cap = h->cappend ? 2 * h->cappend : 16;
        struct pg_pend *v = realloc(h->pend, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        h->pend = v;
        h->cappend = cap;
    }
    if (h->ndrop == h->capdrop) {
        size_t cap = h->capdrop ? 2 * h->capdrop : 16;
        int64_t *v = realloc(h->drop, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        h->drop = v;
        h->capdrop = cap;
    }
    return 0;
}

static size_t pend_lower(const struct pg_fh *h, uint64_t blk)
{
    return bf_blk_lower(h->pend, h->npend, sizeof(h->pend[0]), blk);
}

/* Upload one block's content: *id. */
static int upload(struct pg_fh *h, const void *buf, int64_t *id)
{
    struct pg_db *d = h->db;
    PGresult *r;
    struct pgp p = { 0 };
    pgp_bytes(&p, buf, h->base.file.blksize);
    pgp_u64(&p, d->base.session);
    int e = pg_w_begin(d);
    if (e < 0)
        return e;
    e = pgc_run(d, &d->w, PS_UPLOAD, &p, &r, "storing a block");
    pg_w_end(d);
    if (e == 0 && PQntuples(r) == 1)
        *id = pgr_i64(r, 0, 0);
    else if (e == 0)
        e = -EIO;
    PQclear(r);
    return e;
}

static int pg_storeblk(struct bf_fh *fh, uint64_t blk, const void *buf, uint64_t base)
{
    struct pg_fh *h = FH(fh);
    int64_t content = 0; /* a hole */
    if (blk > (uint64_t)INT64_MAX)
        return -EINVAL;
    int e = fenced(h->db);
    if (e == 0)
        e = pend_reserve(h);
    if (e == 0 && !bf_all_zero(buf, fh->file.blksize))
        e = upload(h, buf, &content);
    if (e < 0)
        return e;
    size_t i = pend_lower(h, blk);
    if (i < h->npend && h->pend[i].blk == blk) {
        if (h->pend[i].content)
            h->drop[h->ndrop++] = h->pend[i].content; /* stored twice: the last wins */
    } else {
        memmove(&h->pend[i + 1], &h->pend[i], (h->npend - i) * sizeof(h->pend[0]));
        h->npend++;
    }
    h->pend[i] = (struct pg_pend){ .blk = blk, .base = base, .content = content };
    return 0;
}

static int pg_truncate(struct bf_fh *fh, uint64_t nblocks)
{
    struct pg_fh *h = FH(fh);
    /* Stores before the truncate go too (their uploads with them). */
    size_t i = pend_lower(h, nblocks), n = 0;
    for (size_t j = i; j < h->npend; j++)
        n += h->pend[j].content != 0;
    if (h->ndrop + n > h->capdrop) {
        int64_t *v = realloc(h->drop, (h->ndrop + n) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        h->drop = v;
        h->capdrop = h->ndrop + n;
    }
    for (size_t j = i; j < h->npend; j++)
        if (h->pend[j].content)
            h->drop[h->ndrop++] = h->pend[j].content;
    h->npend = i;
    if (nblocks < h->trunc_to)
        h->trunc_to = nblocks;
    return 0;
}

/* Forget the transaction; with `discard`, its uploads become garbage. */
static void tx_clear(struct pg_fh *h, bool discard)
{
    if (discard) {
        for (size_t i = 0; i < h->npend; i++)
            give_up(h->db, &h->pend[i].content, 1);
        give_up(h->db, h->drop, h->ndrop);
    }
    free(h->pend);
    free(h->drop);
    h->pend = NULL;
    h->drop = NULL;
    h->npend = h->cappend = h->ndrop = h->capdrop = 0;
    h->trunc_to = UINT64_MAX;
}

static void pg_abort(struct bf_fh *fh)
{
    tx_clear(FH(fh), true);
}

/* ---- the commit section (see the top) -------------------------------------------------------- */

/* A current version found by the commit section. */
struct pg_cur {
    uint64_t blk;
    int64_t serial, session;
    bool data;
};

/* What the commit section collects. */
struct section {
    int64_t serial, me, now;
    bool alone;
    int64_t state[5];     /* size, size_serial, size_session, content_serial, content_session */
    struct pg_cur *trunc; /* current versions of the blocks a truncate drops */
    size_t ntrunc;
    uint64_t *conflicts; /* blocks found conflicting (BF_CONFLICT_SIZE: the size) */
    size_t nconflicts, capconflicts;
    int64_t *blks, *contents, *linked; /* the new versions; the uploads they link */
    size_t nchanged, nlinked;
    struct bf_rangebuf changed;
};

static void section_free(struct section *s)
{
    free(s->trunc);
    free(s->conflicts);
    free(s->blks);
    free(s->contents);
    free(s->linked);
    bf_ranges_free(&s->changed);
}

static int push_conflict(struct section *s, uint64_t blk)
{
    if (s->nconflicts == s->capconflicts) {
        size_t cap = s->capconflicts ? 2 * s->capconflicts : 16;
        uint64_t *v = realloc(s->conflicts, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        s->conflicts = v;
        s->capconflicts = cap;
    }
    s->conflicts[s->nconflicts++] = blk;
    return 0;
}

/* Whether a change (serial v by session `by`) is one the committing session
 * has not seen after `base` (rule 2). */
static bool unseen(int64_t v, int64_t by, const struct section *s, uint64_t base)
{
    return (uint64_t)v > base && by != s->me;
}

/* The conflict check (COHERENCE.md rule 2): the conflicts go to s. */
static int check_conflicts(struct pg_fh *h, const struct bf_commit_req *req, struct section *s)
{
    bool file_changed = (req->flags & BF_COMMIT_FILE_CONFLICTS) &&
                        unseen(s->state[3], s->state[4], s, req->file_base);
    int e = 0;
    for (size_t i = 0; e == 0 && i < h->npend; i++) {
        const struct pg_pend *p = &h->pend[i];
        if (file_changed || (p->cur && unseen(p->cur_serial, p->cur_session, s, p->base)))
            e = push_conflict(s, p->blk);
    }
    for (size_t i = 0; e == 0 && i < s->ntrunc; i++)
        if (unseen(s->trunc[i].serial, s->trunc[i].session, s, req->size_base))
            e = push_conflict(s, s->trunc[i].blk);
    if (e == 0 && (req->size_set || h->trunc_to != UINT64_MAX) &&
        unseen(s->state[1], s->state[2], s, req->size_base))
        e = push_conflict(s, BF_CONFLICT_SIZE);
    return e;
}

/* Take RT1's results: the file's state, the current versions. */
static int take_current(struct pg_fh *h, struct section *s, const PGresult *state,
                        const PGresult *cur, const PGresult *from)
{
    if (PQntuples(state) != 1)
        return -ENOENT; /* purged */
    for (int c = 0; c < 5; c++)
        s->state[c] = pgr_i64(state, 0, c);
    s->alone = pgr_bool(state, 0, 5);
    size_t i = 0;
    for (int row = 0; cur && row < PQntuples(cur); row++) {
        uint64_t blk = (uint64_t)pgr_i64(cur, row, 0);
        while (i < h->npend && h->pend[i].blk < blk)
            i++;
        if (i == h->npend || h->pend[i].blk != blk)
            return -EIO; /* not what was asked */
        h->pend[i].cur = true;
        h->pend[i].cur_serial = pgr_i64(cur, row, 1);
        h->pend[i].cur_session = pgr_i64(cur, row, 2);
        h->pend[i].cur_data = pgr_bool(cur, row, 3);
    }
    int n = from ? PQntuples(from) : 0;
    if (n > 0 && !(s->trunc = calloc((size_t)n, sizeof(*s->trunc))))
        return -ENOMEM;
    for (int row = 0; row < n; row++)
        s->trunc[s->ntrunc++] = (struct pg_cur){ (uint64_t)pgr_i64(from, row, 0),
                                                 pgr_i64(from, row, 1), pgr_i64(from, row, 2),
                                                 pgr_bool(from, row, 3) };
    return 0;
}

/* Add a new version of blk (content 0: a hole). */
static int add_version(struct section *s, uint64_t blk, int64_t content)
{
    s->blks[s->nchanged] = (int64_t)blk;
    s->contents[s->nchanged++] = content;
    if (content)
        s->linked[s->nlinked++] = content;
    return bf_ranges_add(&s->changed, blk);
}

/* The new versions: the stores and the truncate, merged in block order (a
 * store gives a dropped block content again); zeros over a hole or nothing
 * change nothing. */
static int plan_versions(struct pg_fh *h, struct section *s)
{
    size_t most = h->npend + s->ntrunc, p = 0, t = 0;
    int e = 0;
    s->blks = malloc((most ? most : 1) * sizeof(*s->blks));
    s->contents = malloc((most ? most : 1) * sizeof(*s->contents));
    s->linked = malloc((most ? most : 1) * sizeof(*s->linked));
    if (!s->blks || !s->contents || !s->linked)
        return -ENOMEM;
    while (e == 0 && (p < h->npend || t < s->ntrunc)) {
        uint64_t bp = p < h->npend ? h->pend[p].blk : UINT64_MAX;
        uint64_t bt = t < s->ntrunc ? s->trunc[t].blk : UINT64_MAX;
        if (bp <= bt) {
            const struct pg_pend *q = &h->pend[p++];
            if (q->content || (q->cur && q->cur_data))
                e = add_version(s, q->blk, q->content);
            if (bp == bt)
                t++; /* the same current version */
        } else {
            const struct pg_cur *c = &s->trunc[t++];
            if (c->data)
                e = add_version(s, c->blk, 0);
        }
    }
    return e;
}

/* RT1: lock the counter, read what the check needs. */
static int section_read(struct pg_fh *h, struct section *s)
{
    struct pg_db *d = h->db;
    struct pgp pstate = { 0 }, pcur = { 0 }, pfrom = { 0 };
    int len = 0;
    char *blks = NULL;
    int64_t *v = malloc((h->npend ? h->npend : 1) * sizeof(*v));
    for (size_t i = 0; v && i < h->npend; i++)
        v[i] = (int64_t)h->pend[i].blk;
    if (v && h->npend)
        blks = pg_array(v, h->npend, &len);
    free(v);
    if (!v || (h->npend && !blks))
        return -ENOMEM;
    pgp_u64(&pstate, h->base.id);
    pgp_i64(&pstate, s->me);
    pgp_u64(&pcur, h->base.id);
    pgp_bytes(&pcur, blks, (size_t)len);
    pgp_u64(&pfrom, h->base.id);
    pgp_u64(&pfrom, h->trunc_to);
    struct pgq q[6] = { { PS_BEGIN, NULL, NULL },
                        { PS_SYNC_ON, NULL, NULL },
                        { PS_LOCK, NULL, NULL },
                        { PS_STATE, &pstate, NULL } };
    int n = 4, icur = -1, ifrom = -1;
    if (h->npend) {
        icur = n;
        q[n++] = (struct pgq){ PS_CUR, &pcur, NULL };
    }
    if (h->trunc_to != UINT64_MAX && h->trunc_to <= (uint64_t)INT64_MAX) {
        ifrom = n;
        q[n++] = (struct pgq){ PS_CUR_FROM, &pfrom, NULL };
    }
    int e = pgc_pipeline(d, &d->w, q, n, "committing", NULL);
    free(blks);
    if (e == 0) {
        s->serial = pgr_i64(q[2].res, 0, 0);
        e = take_current(h, s, q[3].res, icur >= 0 ? q[icur].res : NULL,
                         ifrom >= 0 ? q[ifrom].res : NULL);
    }
    pgq_clear(q, n);
    return e;
}

/* Fill p with the parameters of commit-log row rec; *blocks gets the
 * encoded ranges (the caller frees them after the statement). */
static int log_params(struct pgp *p, const struct bf_commit_rec *rec, unsigned char **blocks)
{
    size_t blen = 0;
    int e = bf_ranges_encode(rec->write.ranges, rec->write.nranges, blocks, &blen);
    if (e < 0)
        return e;
    pgp_u64(p, rec->serial);
    pgp_u64(p, rec->session);
    pgp_i64(p, rec->kind);
    if (rec->file)
        pgp_u64(p, rec->file);
    else
        pgp_null(p);
    if (rec->file2)
        pgp_u64(p, rec->file2);
    else
        pgp_null(p);
    pgp_i64(p, rec->time_ns);
    if (rec->write.size_changed)
        pgp_u64(p, rec->write.size);
    else
        pgp_null(p);
    if (rec->write.trunc != UINT64_MAX)
        pgp_u64(p, rec->write.trunc);
    else
        pgp_null(p);
    if (*blocks)
        pgp_bytes(p, *blocks, blen);
    else
        pgp_null(p);
    pgp_text(p, rec->name);
    pgp_text(p, rec->name2);
    if (rec->rename_flags)
        pgp_i64(p, rec->rename_flags);
    else
        pgp_null(p);
    return 0;
}

/* Statements of a commit's second round trip; their arrays and bytes. */
struct rt2 {
    struct pgq q[10];
    struct pgp p[10];
    char *mem[8];
    int n, nmem;
};

static void rt2_free(struct rt2 *t)
{
    pgq_clear(t->q, t->n);
    for (int i = 0; i < t->nmem; i++)
        free(t->mem[i]);
}

/* Add statement stmt to t; returns its parameters to fill. */
static struct pgp *rt2_add(struct rt2 *t, int stmt)
{
    BF_ASSERT(t->n < 10);
    t->p[t->n] = (struct pgp){ 0 };
    t->q[t->n] = (struct pgq){ stmt, &t->p[t->n], NULL };
    return &t->p[t->n++];
}

/* An int8[] parameter of t's statement p (kept until t is freed). */
static int rt2_array(struct rt2 *t, struct pgp *p, const int64_t *v, size_t n)
{
    int len = 0;
    char *a = pg_array(v, n, &len);
    if (!a)
        return -ENOMEM;
    BF_ASSERT(t->nmem < 8);
    t->mem[t->nmem++] = a;
    pgp_bytes(p, a, (size_t)len);
    return 0;
}

/* End a commit with the statements of t, the log row `rec`, NOTIFY and
 * COMMIT, in one round trip. A broken connection leaves the commit in
 * doubt: resolved. wlock held. */
static int commit_with(struct pg_db *d, struct rt2 *t, const struct bf_commit_rec *rec)
{
    unsigned char *blocks = NULL;
    bool lost = false;
    /* the state after it of every file it touches (docs/HISTORY.md) */
    uint64_t files[2] = { rec->file, rec->file2 };
    for (int i = 0; i < 2; i++) {
        if (files[i]) {
            struct pgp *p = rt2_add(t, PS_STATE_W);
            pgp_u64(p, files[i]);
            pgp_u64(p, rec->serial);
        }
    }
    int e = log_params(rt2_add(t, PS_LOG), rec, &blocks);
    if (e == 0) {
        t->mem[t->nmem++] = (char *)blocks;
        rt2_add(t, PS_NOTIFY);
        rt2_add(t, PS_COMMIT);
        e = pgc_pipeline(d, &d->w, t->q, t->n, "committing", &lost);
    }
    if (e < 0 && lost)
        return resolve_in_doubt(d, (int64_t)rec->serial);
    if (e < 0)
        w_rollback(d);
    return e;
}

/* RT2 of a write commit. */
static int section_write(struct pg_fh *h, const struct bf_commit_req *req, struct section *s)
{
    struct pg_db *d = h->db;
    struct rt2 t = { 0 };
    bool trunc = h->trunc_to != UINT64_MAX;
    int e = 0;
    if (s->nchanged) {
        struct pgp *p = rt2_add(&t, PS_ADDVERSIONS);
        pgp_u64(p, h->base.id);
        e = rt2_array(&t, p, s->blks, s->nchanged);
        pgp_i64(p, s->serial);
        pgp_i64(p, s->me);
        if (e == 0)
            e = rt2_array(&t, p, s->contents, s->nchanged);
    }
    if (e == 0 && s->nlinked) {
        struct pgp *p = rt2_add(&t, PS_LINK);
        e = rt2_array(&t, p, s->linked, s->nlinked);
        pgp_i64(p, s->me);
        pgp_i64(p, (int64_t)s->nlinked);
    }
    if (e == 0 && h->ndrop) {
        struct pgp *p = rt2_add(&t, PS_GIVEUP);
        e = rt2_array(&t, p, h->drop, h->ndrop);
        pgp_i64(p, s->me);
    }
    if (e == 0) {
        struct pgp *p = rt2_add(&t, PS_SETWRITE);
        pgp_u64(p, h->base.id);
        if (req->size_set)
            pgp_u64(p, req->size);
        else
            pgp_null(p);
        pgp_bool(p, req->size_set || trunc);
        pgp_i64(p, s->serial);
        pgp_i64(p, s->me);
        pgp_i64(p, s->now);
    }
    struct bf_commit_rec rec = {
        .serial = (uint64_t)s->serial,
        .session = (uint64_t)s->me,
        .kind = BF_COMMIT_WRITE,
        .file = h->base.id,
        .time_ns = s->now,
        .write = { .ranges = s->changed.v,
                   .nranges = s->changed.n,
                   .trunc = h->trunc_to,
                   .size_changed = req->size_set,
                   .size = req->size },
    };
    if (e == 0)
        e = commit_with(d, &t, &rec);
    else
        w_rollback(d);
    rt2_free(&t);
    return e;
}

/* The commit section, on the writer (wlock held). */
static int section(struct pg_fh *h, const struct bf_commit_req *req, struct section *s)
{
    int e = section_read(h, s);
    if (e == 0 && !(req->flags & BF_COMMIT_OVERWRITE))
        e = check_conflicts(h, req, s);
    if (e == 0 && s->nconflicts)
        e = -ESTALE; /* rolled back: nothing committed */
    if (e == 0)
        e = plan_versions(h, s);
    if (e == 0)
        return section_write(h, req, s);
    w_rollback(h->db);
    return e;
}

/* Alone on the database: free what commit s replaced (see the top), if
 * the database keeps no history now (history_from locked first, so that a
 * pin of ours either is seen or finds its serial gone). */
static void collect_alone(struct pg_fh *h, const struct section *s)
{
    struct pg_db *d = h->db;
    struct pgp p = { 0 }, pl = { 0 };
    int len = 0;
    char *blks = s->nchanged ? pg_array(s->blks, s->nchanged, &len) : NULL;
    if (!blks || pg_w_begin(d) < 0) {
        free(blks);
        return; /* the housekeeping collects them */
    }
    pgp_i64(&pl, 0);
    pgp_u64(&p, h->base.id);
    pgp_bytes(&p, blks, (size_t)len);
    pgp_i64(&p, s->serial);
    struct pgq q[] = { { PS_BEGIN, NULL, NULL },
                       { PS_FROM_LOCK, &pl, NULL },
                       { PS_ALONE_DEL, &p, NULL },
                       { PS_COMMIT, NULL, NULL } };
    if (pgc_pipeline(d, &d->w, q, 4, "freeing replaced versions", NULL) < 0)
        w_rollback(d);
    pgq_clear(q, 4);
    pg_w_end(d);
    free(blks);
}

static int pg_commit(struct bf_fh *fh, const struct bf_commit_req *req, uint64_t *serial)
{
    struct pg_fh *h = FH(fh);
    struct pg_db *d = h->db;
    struct section s = { .me = (int64_t)d->base.session, .now = bf_now_ns() };
    int e = fenced(d);
    if (e == 0 && (e = pg_w_begin(d)) == 0) {
        e = section(h, req, &s);
        pg_w_end(d);
    }
    if (e == 0 && s.alone)
        collect_alone(h, &s);
    if (e == 0)
        *serial = (uint64_t)s.serial;
    tx_clear(h, e < 0); /* a failed commit gives its uploads up */
    if (e == -ESTALE && req->conflict)
        for (size_t i = 0; i < s.nconflicts; i++)
            req->conflict(req->arg, s.conflicts[i]);
    section_free(&s);
    return e;
}

/* ---- namespace ------------------------------------------------------------------------------- */

static int pg_list(bf_db *db, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg)
{
    struct pg_db *d = PG(db);
    PGresult *r;
    struct bf_fileinfo fi;
    int e = pg_reader_run(d, PS_LIST, NULL, &r, "listing files");
    for (int i = 0; e == 0 && i < PQntuples(r); i++)
        if (pg_row_info(d, r, i, 0, &fi) == 0) /* else left out, logged */
            e = cb(arg, &fi);
    PQclear(r);
    return e;
}

/* A reader query for one file row. */
static int reader_row(struct pg_db *d, int stmt, const struct pgp *p, struct bf_fileinfo *out)
{
    PGresult *r;
    struct bf_fileinfo fi;
    int e = pg_reader_run(d, stmt, p, &r, "reading file metadata");
    if (e == 0)
        e = PQntuples(r) == 1 ? pg_row_info(d, r, 0, 0, &fi) : -ENOENT;
    if (e == 0 && out)
        *out = fi;
    PQclear(r);
    return e;
}

static int pg_lookup(bf_db *db, const char *name, struct bf_fileinfo *out)
{
    struct pgp p = { 0 };
    pgp_text(&p, name);
    return reader_row(PG(db), PS_BYNAME, &p, out);
}

static int pg_getinfo(bf_db *db, uint64_t id, struct bf_fileinfo *out)
{
    struct pgp p = { 0 };
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    pgp_u64(&p, id);
    return reader_row(PG(db), PS_BYID, &p, out);
}

/* A namespace commit: its log row and the reads it decides on. */
struct ns {
    struct bf_commit_rec row;
    struct pgq reads[4];
    int nreads;
};

/* Begin a namespace commit (see the top: RT1) with ns->reads; on success
 * wlock is held and the reads' results are in ns->reads (ns_end clears
 * them). */
static int ns_begin(struct pg_db *d, struct ns *ns, enum bf_commit_kind kind, uint64_t file)
{
    struct pgq q[7] = { { PS_BEGIN, NULL, NULL },
                        { PS_SYNC_ON, NULL, NULL },
                        { PS_LOCK, NULL, NULL } };
    int e = fenced(d);
    if (e == 0)
        e = pg_w_begin(d);
    if (e < 0)
        return e;
    for (int i = 0; i < ns->nreads; i++)
        q[3 + i] = ns->reads[i];
    e = pgc_pipeline(d, &d->w, q, 3 + ns->nreads, "committing", NULL);
    memset(&ns->row, 0, sizeof(ns->row));
    if (e == 0)
        ns->row.serial = (uint64_t)pgr_i64(q[2].res, 0, 0);
    pgq_clear(q, 3);
    for (int i = 0; i < ns->nreads; i++)
        ns->reads[i].res = q[3 + i].res;
    if (e < 0) {
        pgq_clear(ns->reads, ns->nreads);
        w_rollback(d);
        pg_w_end(d);
        return e;
    }
    ns->row.session = d->base.session;
    ns->row.kind = kind;
    ns->row.file = file;
    ns->row.time_ns = bf_now_ns();
    ns->row.write.trunc = UINT64_MAX;
    return 0;
}

/* End a namespace commit: if e == 0, RT2 (t's statements, the log row,
 * NOTIFY, COMMIT); else roll back. Returns the final error. */
static int ns_end(struct pg_db *d, struct ns *ns, struct rt2 *t, int e)
{
    pgq_clear(ns->reads, ns->nreads);
    if (e == 0)
        e = commit_with(d, t, &ns->row);
    else
        w_rollback(d);
    rt2_free(t);
    pg_w_end(d);
    return e;
}

/* The id a PS_WBYNAME read found (0: none). */
static uint64_t found_id(const PGresult *r)
{
    return r && PQntuples(r) > 0 ? (uint64_t)pgr_i64(r, 0, 0) : 0;
}

static void setname(struct rt2 *t, uint64_t id, const char *name, const struct ns *ns)
{
    struct pgp *p = rt2_add(t, PS_SETNAME);
    pgp_u64(p, id);
    pgp_text(p, name);
    pgp_i64(p, ns->row.time_ns);
    pgp_u64(p, ns->row.serial);
}

static int pg_create(bf_db *db, const char *name, uint32_t blksize, uint64_t size, uint32_t mode,
                     uint32_t uid, uint32_t gid, struct bf_fileinfo *out)
{
    struct pg_db *d = PG(db);
    struct ns ns = { .nreads = 2 };
    struct rt2 t = { 0 };
    struct pgp pn = { 0 };
    pgp_text(&pn, name);
    ns.reads[0] = (struct pgq){ PS_NEXTID, NULL, NULL };
    ns.reads[1] = (struct pgq){ PS_WBYNAME, &pn, NULL };
    int e = ns_begin(d, &ns, BF_COMMIT_CREATE, 0);
    if (e < 0)
        return e;
    ns.row.file = found_id(ns.reads[0].res);
    ns.row.name = name;
    if (found_id(ns.reads[1].res))
        e = -EEXIST;
    struct pgp *p = rt2_add(&t, PS_INSERT);
    pgp_u64(p, ns.row.file);
    pgp_text(p, name);
    pgp_i64(p, blksize);
    pgp_u64(p, size);
    pgp_i64(p, mode & 07777);
    pgp_i64(p, uid);
    pgp_i64(p, gid);
    pgp_i64(p, ns.row.time_ns);
    pgp_u64(p, ns.row.serial);
    pgp_u64(p, ns.row.session);
    e = ns_end(d, &ns, &t, e);
    if (e == 0 && out) {
        memset(out, 0, sizeof(*out));
        out->id = ns.row.file;
        strcpy(out->name, name);
        out->blksize = blksize;
        out->size = size;
        out->mode = mode & 07777;
        out->uid = uid;
        out->gid = gid;
        out->mtime_ns = out->ctime_ns = ns.row.time_ns;
    }
    return e;
}

static int pg_unlink(bf_db *db, const char *name, uint64_t *id)
{
    struct pg_db *d = PG(db);
    struct ns ns = { .nreads = 1 };
    struct rt2 t = { 0 };
    struct pgp pn = { 0 };
    pgp_text(&pn, name);
    ns.reads[0] = (struct pgq){ PS_WBYNAME, &pn, NULL };
    int e = ns_begin(d, &ns, BF_COMMIT_UNLINK, 0);
    if (e < 0)
        return e;
    *id = ns.row.file = found_id(ns.reads[0].res);
    ns.row.name = name;
    if (!*id)
        e = -ENOENT;
    setname(&t, *id, NULL, &ns);
    return ns_end(d, &ns, &t, e);
}

static int pg_rename(bf_db *db, const char *from, const char *to, unsigned flags,
                     uint64_t *replaced)
{
    struct pg_db *d = PG(db);
    struct ns ns = { .nreads = 2 };
    struct rt2 t = { 0 };
    struct pgp pf = { 0 }, pt = { 0 };
    pgp_text(&pf, from);
    pgp_text(&pt, to);
    ns.reads[0] = (struct pgq){ PS_WBYNAME, &pf, NULL };
    ns.reads[1] = (struct pgq){ PS_WBYNAME, &pt, NULL };
    *replaced = 0;
    int e = ns_begin(d, &ns, BF_COMMIT_RENAME, 0);
    if (e < 0)
        return e;
    uint64_t src = found_id(ns.reads[0].res), dst = found_id(ns.reads[1].res);
    if (!src || (!dst && (flags & BF_RENAME_EXCHANGE))) {
        e = -ENOENT;
    } else if (dst && (flags & BF_RENAME_NOREPLACE)) {
        e = -EEXIST;
    } else if (dst == src) {
        ns_end(d, &ns, &t, -ECANCELED); /* the same file: no change, no commit */
        return 0;
    } else if (flags & BF_RENAME_EXCHANGE) {
        setname(&t, src, NULL, &ns); /* through NULL: name is UNIQUE */
        setname(&t, dst, from, &ns);
        setname(&t, src, to, &ns);
    } else {
        if (dst)
            setname(&t, dst, NULL, &ns);
        setname(&t, src, to, &ns);
    }
    ns.row.file = src;
    ns.row.file2 = dst;
    ns.row.name = from;
    ns.row.name2 = to;
    ns.row.rename_flags = flags;
    e = ns_end(d, &ns, &t, e);
    if (e == 0 && dst && !(flags & BF_RENAME_EXCHANGE))
        *replaced = dst;
    return e;
}

static int pg_setattr(bf_db *db, uint64_t id, const uint32_t *mode, const uint32_t *uid,
                      const uint32_t *gid, const int64_t *mtime_ns)
{
    struct pg_db *d = PG(db);
    struct ns ns = { .nreads = 1 };
    struct rt2 t = { 0 };
    struct pgp pi = { 0 };
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    pgp_u64(&pi, id);
    ns.reads[0] = (struct pgq){ PS_EXISTS, &pi, NULL };
    int e = ns_begin(d, &ns, BF_COMMIT_SETATTR, id);
    if (e < 0)
        return e;
    if (!found_id(ns.reads[0].res))
        e = -ENOENT;
    struct pgp *p = rt2_add(&t, PS_SETATTR);
    pgp_u64(p, id);
    if (mode)
        pgp_i64(p, *mode & 07777);
    else
        pgp_null(p);
    if (uid)
        pgp_i64(p, *uid);
    else
        pgp_null(p);
    if (gid)
        pgp_i64(p, *gid);
    else
        pgp_null(p);
    if (mtime_ns)
        pgp_i64(p, *mtime_ns);
    else
        pgp_null(p);
    pgp_i64(p, ns.row.time_ns);
    pgp_u64(p, ns.row.serial);
    return ns_end(d, &ns, &t, e);
}

static int pg_set_blksize(bf_db *db, uint64_t id, uint32_t blksize)
{
    struct pg_db *d = PG(db);
    struct ns ns = { .nreads = 3 };
    struct rt2 t = { 0 };
    struct pgp pi = { 0 }, ph = { 0 };
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    pgp_u64(&pi, id);
    pgp_u64(&ph, id);
    pgp_u64(&ph, d->base.session);
    pgp_u64(&ph, d->popt.dead_grace_ms);
    /* The row locked first: an open in another session waits, or is seen. */
    ns.reads[0] = (struct pgq){ PS_LOCKFILE, &pi, NULL };
    ns.reads[1] = (struct pgq){ PS_HASBLK, &pi, NULL };
    ns.reads[2] = (struct pgq){ PS_HELD_OTHERS, &ph, NULL };
    int e = ns_begin(d, &ns, BF_COMMIT_SETBLKSIZE, id);
    if (e < 0)
        return e;
    if (PQntuples(ns.reads[0].res) == 0)
        e = -ENOENT;
    else if (pgr_i64(ns.reads[0].res, 0, 0) != 0 || PQntuples(ns.reads[1].res) > 0)
        e = -ENOTEMPTY;
    else if (PQntuples(ns.reads[2].res) > 0)
        e = -EBUSY; /* another session has it open */
    struct pgp *p = rt2_add(&t, PS_SETBLK);
    pgp_u64(p, id);
    pgp_i64(p, blksize);
    pgp_i64(p, ns.row.time_ns);
    pgp_u64(p, ns.row.serial);
    return ns_end(d, &ns, &t, e);
}

/* ---- handles ------------------------------------------------------------------------------------ */

static int pg_file_open(bf_db *db, uint64_t id, bool hold, struct bf_fh **out)
{
    struct pg_db *d = PG(db);
    struct bf_fileinfo fi;
    uint64_t serial = 0;
    int e;
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    if (hold) {
        e = pg_hold_open(d, id, &fi, &serial);
    } else {
        /* the row and the serial: one statement, one snapshot */
        PGresult *r;
        struct pgp p = { 0 };
        pgp_u64(&p, id);
        e = pg_reader_run(d, PS_BYID_SERIAL, &p, &r, "opening a file");
        if (e == 0)
            e = PQntuples(r) == 1 ? pg_row_info(d, r, 0, 0, &fi) : -ENOENT;
        if (e == 0)
            serial = (uint64_t)pgr_i64(r, 0, 9);
        PQclear(r);
    }
    if (e < 0)
        return e;
    struct pg_fh *h = calloc(1, sizeof(*h));
    if (!h) {
        if (hold)
            pg_release(db, id);
        return -ENOMEM;
    }
    h->base.file.blksize = fi.blksize;
    h->base.file.size = fi.size;
    h->base.file.serial = serial;
    h->db = d;
    h->trunc_to = UINT64_MAX;
    *out = &h->base;
    return 0;
}

/* A view's handle (engine.h, file_open_at): no hold, nothing read (the
 * layer sets what the file was at the serial). */
static int pg_file_open_at(bf_db *db, uint64_t id, uint64_t serial, struct bf_fh **out)
{
    (void)id, (void)serial;
    struct pg_fh *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->db = PG(db);
    h->trunc_to = UINT64_MAX;
    *out = &h->base;
    return 0;
}

static void pg_file_close(struct bf_fh *fh)
{
    struct pg_fh *h = FH(fh);
    BF_ASSERT(h->npend == 0 && h->ndrop == 0);
    free(h->pend);
    free(h->drop);
    free(h);
}

/* ---- open and close ---------------------------------------------------------------------------- */

static void pg_close(bf_db *db)
{
    struct pg_db *d = PG(db);
    pg_session_end(d); /* closes the watcher's connection */
    for (int i = 0; i < d->nrd; i++)
        pgc_close(&d->rd[i].c);
    pgc_close(&d->w);
    pg_watch_fini(d);
    bf_db_fini(db);
    pthread_mutex_destroy(&d->wlock);
    pthread_mutex_destroy(&d->plock);
    pthread_cond_destroy(&d->pcond);
    pthread_mutex_destroy(&d->vlock);
    pthread_mutex_destroy(&d->hlock);
    bf_counter_destroy(&d->reconnects);
    pg_conn_free(d);
    free(d->giveup);
    free(d->held);
    free(d->pinned);
    free(d->label);
    free(d);
}

static const struct bf_engine_ops pg_engine_ops = {
    .name = "pg",
    .notifies = false,
    .close = pg_close,
    .list = pg_list,
    .lookup = pg_lookup,
    .getinfo = pg_getinfo,
    .create = pg_create,
    .setattr = pg_setattr,
    .unlink = pg_unlink,
    .rename = pg_rename,
    .set_blksize = pg_set_blksize,
    .purge = pg_purge,
    .file_open = pg_file_open,
    .file_close = pg_file_close,
    .release = pg_release,
    .loadblk = pg_loadblk,
    .next_stored = pg_next_stored,
    .stored_blocks = pg_stored_blocks,
    .begin = pg_begin,
    .storeblk = pg_storeblk,
    .truncate = pg_truncate,
    .commit = pg_commit,
    .abort = pg_abort,
    .changed = pg_changed,
    .change_fd = pg_change_fd,
    .log_read = pg_log_read,
    .serial_now = pg_serial_now,
    .trim = pg_trim,
    .getxattr = pg_getxattr,
    .listxattr = pg_listxattr,
    .setxattr = pg_setxattr,
    .removexattr = pg_removexattr,
    .history = pg_history,
    .history_keep = pg_history_keep,
    .pin = pg_pin,
    .list_at = pg_list_at,
    .lookup_at = pg_lookup_at,
    .getinfo_at = pg_getinfo_at,
    .file_open_at = pg_file_open_at,
    .file_log = pg_file_log,
};

uint64_t bf_pg_reconnects(bf_db *db)
{
    if (!db || db->ops != &pg_engine_ops)
        return 0;
    return bf_counter_get(&PG(db)->reconnects);
}

int bf_pg_wait_reconnects(bf_db *db, uint64_t n, int timeout_ms)
{
    if (!db || db->ops != &pg_engine_ops)
        return -EINVAL;
    return bf_counter_wait(&PG(db)->reconnects, true, n, timeout_ms);
}

/* Allocate d and the generic part; NULL when out of memory. */
static struct pg_db *pg_alloc(const char *conninfo, unsigned flags, const struct bf_db_options *opt,
                              const struct bf_pg_options *popt)
{
    char label[512];
    struct pg_db *d = calloc(1, sizeof(*d));
    bf_pg_redact(conninfo, label, sizeof(label));
    if (!d || !(d->label = strdup(label)) || bf_counter_init(&d->reconnects) < 0) {
        if (d)
            free(d->label);
        free(d);
        return NULL;
    }
    if (bf_db_init(&d->base, &pg_engine_ops, flags, opt) < 0) {
        bf_counter_destroy(&d->reconnects);
        free(d->label);
        free(d);
        return NULL;
    }
    d->base.label = strdup(label); /* the layer's log lines: never the password */
    pthread_mutex_init(&d->wlock, NULL);
    pthread_mutex_init(&d->plock, NULL);
    pthread_cond_init(&d->pcond, NULL);
    pthread_mutex_init(&d->vlock, NULL);
    pthread_mutex_init(&d->hlock, NULL);
    d->epfd = d->notefd = d->vsock = -1;
    d->w.kind = PGC_WRITER;
    d->v.kind = PGC_WATCHER;
    d->popt = popt ? *popt : (struct bf_pg_options){ 0 };
    if (d->popt.readers == 0)
        d->popt.readers = BF_PG_READERS;
    if (d->popt.readers > BF_PG_READERS_MAX)
        d->popt.readers = BF_PG_READERS_MAX;
    if (d->popt.dead_grace_ms == 0)
        d->popt.dead_grace_ms = BF_PG_DEAD_GRACE_MS;
    return d;
}

int bf_pg_open(const char *conninfo, unsigned flags, const struct bf_db_options *opt,
               const struct bf_pg_options *popt, bf_db **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    bf_errf(errbuf, errlen, "%s", "");
    struct pg_db *d = pg_alloc(conninfo, flags, opt, popt);
    if (!d) {
        bf_errf(errbuf, errlen, "pg: out of memory");
        return -ENOMEM;
    }
    /* Look first (a connection with no statement prepared: ours may not
     * exist yet), then lock and register; nothing is written before the
     * schema is found ours, or made. */
    int e = pg_conn_setup(d, conninfo, errbuf, errlen);
    if (e == 0 && (e = pg_watch_init(d)) < 0)
        bf_errf(errbuf, errlen, "%s: %s", d->label, strerror(-e));
    if (e == 0)
        e = pgc_open_ex(d, &d->v, false, errbuf, errlen);
    if (e == 0)
        e = pg_schema_prepare(d, &d->v, flags, errbuf, errlen);
    if (e == 0)
        e = pgc_prepare(d, &d->v, errbuf, errlen);
    if (e == 0)
        e = pg_session_start(d, errbuf, errlen);
    if (e == 0 && !(flags & BF_DB_RDONLY))
        e = pgc_open(d, &d->w, errbuf, errlen);
    /* The start of a session cleans up after dead ones (COHERENCE.md 5.5). */
    if (e == 0 && !(flags & BF_DB_RDONLY) &&
        (e = pg_trim(&d->base, d->base.start_serial, true)) < 0)
        bf_errf(errbuf, errlen, "%s: cannot clean up the database: %s", d->label, strerror(-e));
    /* One reader now, so that one that cannot be opened fails here. */
    struct pg_reader *r;
    if (e == 0 && (e = pg_reader_get(d, &r)) == 0)
        pg_reader_put(d, r);
    else if (e == -EIO && errbuf && !errbuf[0])
        bf_errf(errbuf, errlen, "%s: cannot open a reader connection", d->label);
    if (e < 0) {
        bf_db_close(&d->base);
        return e;
    }
    *out = &d->base;
    return 0;
}
