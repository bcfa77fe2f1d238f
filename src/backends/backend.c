/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the generic layer over the storage engines.
 *
 * bf_db_open picks an engine by the spec; every other bf_db_* call checks
 * its arguments, applies the per-file rules (open files and the session's
 * holds, one store transaction per file, the hold's end at the last close)
 * and calls the engine. The rules, the states of the open-file table and
 * the lock order are written at the top of engine.h; backend.h has the
 * contracts. The watcher is in watch.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"

#include "backends/engine.h"
#include "backends/memory.h"
#include "backends/proto.h"
#include "backends/sqlite.h"
#ifdef HAVE_POSTGRESQL
#include "backends/pg.h"
#endif

/* A file the session uses (engine.h, "Open files"). */
enum bf_open_state {
    BF_OPEN_OPENING,   /* the session's first handle is being opened (the engine holds it) */
    BF_OPEN_LIVE,      /* nopen handles are open on it (and the session holds it) */
    BF_OPEN_RELEASING, /* no handle left: engine->release runs */
    BF_OPEN_PURGING,   /* its name was removed, no handle: engine->purge runs */
    BF_OPEN_RESERVED,  /* no handle: engine->set_blksize runs */
};

struct bf_open {
    struct bf_open *next; /* db->opens */
    uint64_t id;
    enum bf_open_state state;
    unsigned nopen;   /* LIVE: handles open; OPENING: 1; else 0 */
    bool unlinked;    /* LIVE, RESERVED: its name was removed (RESERVED: purge when done) */
    struct bf_fh *tx; /* LIVE: the handle in a store transaction, or NULL */
};

/* ---- the open-file table ---------------------------------------------- */

/* Caller holds db->lock. */
static struct bf_open *open_find(bf_db *db, uint64_t id)
{
    for (struct bf_open *o = db->opens; o; o = o->next)
        if (o->id == id)
            return o;
    return NULL;
}

/* Put a new record for file id in `state` into the table. Caller holds
 * db->lock. */
static void open_insert(bf_db *db, struct bf_open *o, uint64_t id, enum bf_open_state state)
{
    o->id = id;
    o->state = state;
    o->next = db->opens;
    db->opens = o;
}

/* Take o out of the table and wake whoever waits for it to go. Caller
 * holds db->lock. */
static void open_remove(bf_db *db, struct bf_open *o)
{
    struct bf_open **pp = &db->opens;
    while (*pp != o)
        pp = &(*pp)->next;
    *pp = o->next;
    if (o->state != BF_OPEN_LIVE)
        pthread_cond_broadcast(&db->cond);
}

/* Wait until file id is neither OPENING, RELEASING, PURGING nor RESERVED;
 * return its record (LIVE) or NULL. Caller holds db->lock. */
static struct bf_open *open_settled(bf_db *db, uint64_t id)
{
    struct bf_open *o;
    while ((o = open_find(db, id)) && o->state != BF_OPEN_LIVE)
        pthread_cond_wait(&db->cond, &db->lock);
    return o;
}

/* Run the engine call of a RELEASING or PURGING record o (nothing opens the
 * file meanwhile), then drop the record. Called with no lock held. */
static void open_finish(bf_db *db, struct bf_open *o)
{
    BF_ASSERT((o->state == BF_OPEN_RELEASING || o->state == BF_OPEN_PURGING) && o->nopen == 0);
    int r = o->state == BF_OPEN_RELEASING ? db->ops->release(db, o->id) : db->ops->purge(db, o->id);
    if (r < 0)
        bf_db_log(db, "file %llu: cannot %s (%s); the housekeeping retries",
                  (unsigned long long)o->id,
                  o->state == BF_OPEN_RELEASING ? "end its hold" : "delete it", strerror(-r));
    pthread_mutex_lock(&db->lock);
    open_remove(db, o);
    pthread_mutex_unlock(&db->lock);
    free(o);
}

/* o is done with: LIVE with no handle left, or RESERVED at the end of
 * set_blksize. Drop it, end the session's hold of a LIVE one, purge a
 * RESERVED one whose name was removed. Caller holds db->lock; returns with
 * it released. */
static void open_done(bf_db *db, struct bf_open *o)
{
    BF_ASSERT(o->nopen == 0 && o->tx == NULL);
    if (o->state == BF_OPEN_LIVE && !(db->flags & BF_DB_RDONLY)) {
        /* LIVE -> RELEASING: the session's last handle of the file. */
        o->state = BF_OPEN_RELEASING;
        pthread_mutex_unlock(&db->lock);
        open_finish(db, o);
        return;
    }
    if (o->state == BF_OPEN_RESERVED && o->unlinked) {
        /* RESERVED -> PURGING: its name went while its block size changed. */
        o->state = BF_OPEN_PURGING;
        pthread_mutex_unlock(&db->lock);
        open_finish(db, o);
        return;
    }
    /* LIVE (read-only: no hold) / RESERVED -> (none) */
    open_remove(db, o);
    pthread_mutex_unlock(&db->lock);
    free(o);
}

/* Register one more handle of file id: *out is its record, LIVE, or
 * OPENING when the handle is the session's first of the file (*first; the
 * engine holds the file then, and open_opened ends the state). -ENOMEM. */
static int open_enter(bf_db *db, uint64_t id, struct bf_open **out, bool *first)
{
    struct bf_open *fresh = calloc(1, sizeof(*fresh));
    if (!fresh)
        return -ENOMEM;
    pthread_mutex_lock(&db->lock);
    struct bf_open *o = open_settled(db, id);
    *first = o == NULL;
    if (!o) {
        /* (none) -> OPENING */
        o = fresh;
        fresh = NULL;
        open_insert(db, o, id, BF_OPEN_OPENING);
    }
    o->nopen++;
    pthread_mutex_unlock(&db->lock);
    free(fresh);
    *out = o;
    return 0;
}

/* The engine's open of the session's first handle of o's file is done:
 * OPENING -> LIVE if it succeeded, else -> (none) (nothing is held). */
static void open_opened(bf_db *db, struct bf_open *o, bool ok)
{
    pthread_mutex_lock(&db->lock);
    BF_ASSERT(o->state == BF_OPEN_OPENING && o->nopen == 1);
    if (ok) {
        o->state = BF_OPEN_LIVE;
        pthread_cond_broadcast(&db->cond);
        pthread_mutex_unlock(&db->lock);
        return;
    }
    o->nopen = 0;
    open_remove(db, o);
    pthread_mutex_unlock(&db->lock);
    free(o);
}

/* Unregister one handle of o's file (its last: see open_done). */
static void open_leave(bf_db *db, struct bf_open *o)
{
    pthread_mutex_lock(&db->lock);
    BF_ASSERT(o->state == BF_OPEN_LIVE && o->nopen > 0);
    if (--o->nopen > 0) {
        pthread_mutex_unlock(&db->lock);
        return;
    }
    open_done(db, o);
}

/* The engine removed file id's name (unlink, or replaced by rename): purge
 * it now if the session does not use it (the engine keeps it if another
 * session holds it); a LIVE file is released at its last close, which
 * purges it then; a RESERVED one is purged when set_blksize is done.
 * `spare` is a record allocated before the engine call (so that this
 * cannot fail after the commit); it is used or freed. */
static void name_removed(bf_db *db, uint64_t id, struct bf_open *spare)
{
    pthread_mutex_lock(&db->lock);
    /* A release running now may have looked before the name went: wait for
     * it, and purge after it; an open running now may fail. */
    struct bf_open *o;
    while ((o = open_find(db, id)) &&
           (o->state == BF_OPEN_RELEASING || o->state == BF_OPEN_OPENING))
        pthread_cond_wait(&db->cond, &db->lock);
    if (o) {
        /* LIVE: its last close releases (and so purges) it; RESERVED: purged
         * when set_blksize is done. A nameless file is never PURGING twice. */
        BF_ASSERT(o->state != BF_OPEN_PURGING);
        o->unlinked = true;
        pthread_mutex_unlock(&db->lock);
        free(spare);
        return;
    }
    /* (none) -> PURGING */
    open_insert(db, spare, id, BF_OPEN_PURGING);
    pthread_mutex_unlock(&db->lock);
    open_finish(db, spare);
}

/* ---- bf_file operations: the transaction rule, then the engine -------- */

static struct bf_fh *FH(bf_file *f)
{
    return (struct bf_fh *)f;
}

/* OPEN -> IDLE: the file's transaction slot is free again. */
static void tx_end(struct bf_fh *fh)
{
    bf_db *db = fh->db;
    pthread_mutex_lock(&db->lock);
    BF_ASSERT(fh->open->tx == fh);
    fh->open->tx = NULL;
    pthread_mutex_unlock(&db->lock);
    fh->tx = BF_TX_IDLE;
}

static int fh_loadblk(bf_file *f, uint64_t blk, uint64_t at, void *buf, uint64_t *serial)
{
    struct bf_fh *fh = FH(f);
    uint64_t ignored;
    return fh->db->ops->loadblk(fh, blk, at, buf, serial ? serial : &ignored);
}

static int fh_next_stored(bf_file *f, uint64_t from, uint64_t *blk)
{
    struct bf_fh *fh = FH(f);
    return fh->db->ops->next_stored(fh, from, blk);
}

static int fh_stored_blocks(bf_file *f, uint64_t *n)
{
    struct bf_fh *fh = FH(f);
    return fh->db->ops->stored_blocks(fh, n);
}

static int fh_begin(bf_file *f)
{
    struct bf_fh *fh = FH(f);
    bf_db *db = fh->db;
    if (fh->tx != BF_TX_IDLE)
        return -EBUSY;
    if (db->flags & BF_DB_RDONLY)
        return -EROFS;
    pthread_mutex_lock(&db->lock);
    bool busy = fh->open->tx != NULL;
    if (!busy)
        fh->open->tx = fh; /* one transaction per file */
    pthread_mutex_unlock(&db->lock);
    if (busy)
        return -EBUSY;
    int r = db->ops->begin(fh);
    if (r < 0) {
        pthread_mutex_lock(&db->lock);
        fh->open->tx = NULL;
        pthread_mutex_unlock(&db->lock);
        return r;
    }
    /* IDLE -> OPEN */
    fh->tx = BF_TX_OPEN;
    return 0;
}

static int fh_storeblk(bf_file *f, uint64_t blk, const void *buf, uint64_t base)
{
    struct bf_fh *fh = FH(f);
    if (!BF_CHECK(fh->tx == BF_TX_OPEN, "file %llu: storeblk outside a transaction",
                  (unsigned long long)fh->id))
        return -EINVAL;
    return fh->db->ops->storeblk(fh, blk, buf, base);
}

static int fh_truncate(bf_file *f, uint64_t nblocks)
{
    struct bf_fh *fh = FH(f);
    if (!BF_CHECK(fh->tx == BF_TX_OPEN, "file %llu: truncate outside a transaction",
                  (unsigned long long)fh->id))
        return -EINVAL;
    return fh->db->ops->truncate(fh, nblocks);
}

static void tx_used(struct bf_fh *fh, bool committed);

static void fh_abort(bf_file *f)
{
    struct bf_fh *fh = FH(f);
    if (!BF_CHECK(fh->tx == BF_TX_OPEN, "file %llu: abort outside a transaction",
                  (unsigned long long)fh->id))
        return;
    fh->db->ops->abort(fh);
    tx_end(fh);
    tx_used(fh, false);
}

static int fh_loadblk_send(bf_file *f, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                           struct bf_sink *sink)
{
    struct bf_fh *fh = FH(f);
    return fh->db->ops->loadblk_send(fh, blk, at, off, len, sink);
}

static int fh_loadblk_ahead(bf_file *f, uint64_t blk, uint64_t at)
{
    struct bf_fh *fh = FH(f);
    return fh->db->ops->loadblk_ahead(fh, blk, at);
}

/* ---- staging: the engine's, or the layer's spill file ------------------ */

static int fh_loadblk_range(bf_file *f, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                            void *buf, uint64_t *serial)
{
    struct bf_fh *fh = FH(f);
    uint64_t ignored;
    return fh->db->ops->loadblk_range(fh, blk, at, off, len, buf, serial ? serial : &ignored);
}

static int fh_stage(bf_file *f, uint64_t blk, const void *buf, uint64_t *token)
{
    struct bf_fh *fh = FH(f);
    if (!BF_CHECK(fh->tx == BF_TX_IDLE, "file %llu: stage in a transaction",
                  (unsigned long long)fh->id))
        return -EINVAL;
    if (fh->db->spill)
        return bf_spillfile_put(fh->db->spill, buf, f->blksize, token);
    return fh->db->ops->stage(fh, blk, buf, token);
}

static int fh_unstage(bf_file *f, uint64_t token, void *buf)
{
    struct bf_fh *fh = FH(f);
    if (fh->db->spill)
        return bf_spillfile_get(fh->db->spill, token, buf, f->blksize);
    return fh->db->ops->unstage(fh, token, buf);
}

static void fh_stage_drop(bf_file *f, uint64_t token)
{
    struct bf_fh *fh = FH(f);
    if (fh->db->spill)
        bf_spillfile_drop(fh->db->spill, token, f->blksize);
    else
        fh->db->ops->stage_drop(fh, token);
}

/* With the spill file: the staged content read back and stored as any
 * block, its slot freed only when the transaction commits (a failed one
 * leaves it staged, bigfile.h). */
static int fh_storeblk_staged(bf_file *f, uint64_t blk, uint64_t token, uint64_t base)
{
    struct bf_fh *fh = FH(f);
    if (!BF_CHECK(fh->tx == BF_TX_OPEN, "file %llu: storeblk_staged outside a transaction",
                  (unsigned long long)fh->id))
        return -EINVAL;
    if (!fh->db->spill)
        return fh->db->ops->storeblk_staged(fh, blk, token, base);
    if (fh->nused == fh->capused) {
        size_t cap = fh->capused ? 2 * fh->capused : 64;
        uint64_t *v = realloc(fh->used, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        fh->used = v;
        fh->capused = cap;
    }
    void *buf = malloc(f->blksize);
    if (!buf)
        return -ENOMEM;
    int r = bf_spillfile_get(fh->db->spill, token, buf, f->blksize);
    if (r == 0)
        r = fh->db->ops->storeblk(fh, blk, buf, base);
    free(buf);
    if (r == 0)
        fh->used[fh->nused++] = token;
    return r;
}

/* The transaction is over: with `committed`, the staged contents it used
 * are freed (the commit used them up); else they stay staged. */
static void tx_used(struct bf_fh *fh, bool committed)
{
    for (size_t i = 0; committed && i < fh->nused; i++)
        bf_spillfile_drop(fh->db->spill, fh->used[i], fh->file.blksize);
    free(fh->used);
    fh->used = NULL;
    fh->nused = fh->capused = 0;
}

static int fh_commit(bf_file *f, const struct bf_commit_req *req, uint64_t *serial)
{
    struct bf_fh *fh = FH(f);
    uint64_t s = 0;
    if (!BF_CHECK(fh->tx == BF_TX_OPEN, "file %llu: commit outside a transaction",
                  (unsigned long long)fh->id))
        return -EINVAL;
    if (!req || (req->flags & ~(unsigned)(BF_COMMIT_OVERWRITE | BF_COMMIT_FILE_CONFLICTS)) ||
        (req->size_set && req->size > BF_SIZE_MAX)) {
        fh_abort(f); /* a failed commit rolls back (bigfile.h) */
        return -EINVAL;
    }
    int r = fh->db->ops->commit(fh, req, &s);
    tx_end(fh);
    tx_used(fh, r == 0);
    if (r == 0 && req->size_set)
        f->size = req->size;
    if (r == 0 && serial)
        *serial = s;
    return r;
}

/* ---- opening and closing -------------------------------------------- */

int bf_db_init(bf_db *db, const struct bf_engine_ops *ops, unsigned flags,
               const struct bf_db_options *opt)
{
    if (pthread_mutex_init(&db->lock, NULL) != 0)
        return -ENOMEM;
    if (pthread_cond_init(&db->cond, NULL) != 0) {
        pthread_mutex_destroy(&db->lock);
        return -ENOMEM;
    }
    db->ops = ops;
    db->flags = flags;
    db->label = NULL;
    db->opens = NULL;
    db->session = 0;
    db->start_serial = 0;
    db->opt = opt ? *opt : (struct bf_db_options){ 0 };
    /* loadblk_send keeps the bytes it sends unchanged against this
     * session's writes only (core/bigfile.h): not where other processes
     * write the store too. */
    if (flags & BF_DB_SHARED)
        db->opt.copy_reads = true;
    if (db->opt.watch_interval_ms == 0)
        db->opt.watch_interval_ms = BF_WATCH_INTERVAL_MS;
    if (db->opt.log_keep == 0)
        db->opt.log_keep = BF_LOG_KEEP;
    if (db->opt.timeout_ms == 0)
        db->opt.timeout_ms = BF_PROTO_TIMEOUT_MS;
    db->fops = (struct bf_file_ops){
        .loadblk = fh_loadblk,
        .begin = fh_begin,
        .storeblk = fh_storeblk,
        .truncate = fh_truncate,
        .commit = fh_commit,
        .abort = fh_abort,
        .next_stored = ops->next_stored ? fh_next_stored : NULL,
        .stored_blocks = ops->stored_blocks ? fh_stored_blocks : NULL,
        .loadblk_range = ops->loadblk_range ? fh_loadblk_range : NULL,
        .loadblk_send = ops->loadblk_send && !db->opt.copy_reads ? fh_loadblk_send : NULL,
        .loadblk_ahead = ops->loadblk_ahead && !db->opt.copy_reads ? fh_loadblk_ahead : NULL,
        /* Every engine stages: its own way, or into the spill file. */
        .stage = fh_stage,
        .unstage = fh_unstage,
        .stage_drop = fh_stage_drop,
        .storeblk_staged = fh_storeblk_staged,
    };
    BF_ASSERT(!!ops->stage == !!ops->unstage && !!ops->stage == !!ops->stage_drop &&
              !!ops->stage == !!ops->storeblk_staged); /* all four or none */
    db->spill = NULL;
    if ((!ops->stage || db->opt.spill_file) &&
        bf_spillfile_new(db->opt.spill_dir, &db->spill) < 0) {
        pthread_cond_destroy(&db->cond);
        pthread_mutex_destroy(&db->lock);
        return -ENOMEM;
    }
    db->opt.spill_dir = NULL; /* the caller's string: the spill file has a copy */
    if (bf_watch_init(db) < 0) {
        bf_spillfile_free(db->spill);
        pthread_cond_destroy(&db->cond);
        pthread_mutex_destroy(&db->lock);
        return -ENOMEM;
    }
    if (bf_views_init(db) < 0) {
        bf_watch_fini(db);
        bf_spillfile_free(db->spill);
        pthread_cond_destroy(&db->cond);
        pthread_mutex_destroy(&db->lock);
        return -ENOMEM;
    }
    return 0;
}

void bf_db_fini(bf_db *db)
{
    bf_views_fini(db);
    bf_watch_fini(db);
    bf_spillfile_free(db->spill);
    db->spill = NULL;
    pthread_cond_destroy(&db->cond);
    pthread_mutex_destroy(&db->lock);
    free(db->label);
    db->label = NULL;
}

void bf_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

int bf_db_open_ex(const char *spec, unsigned flags, const struct bf_db_options *opt, bf_db **out,
                  char *errbuf, size_t errlen)
{
    int r;
    bf_errf(errbuf, errlen, "%s", "");
    if (!spec || !out || (flags & ~(unsigned)(BF_DB_RDONLY | BF_DB_CREATE | BF_DB_SHARED))) {
        bf_errf(errbuf, errlen, "bad arguments to bf_db_open");
        return -EINVAL;
    }
    *out = NULL;
    /* "mem:" names a fresh private memory database, "mem:LABEL" the one of
     * that label in this process, "pg:CONNINFO" a PostgreSQL database,
     * "exec:COMMAND" and "unix:PATH" a block server. Anything else is a
     * SQLite path (a file really named "mem:x" or "pg:x" can be reached as
     * "./mem:x", "./pg:x"). */
    if (strncmp(spec, "mem:", 4) == 0) {
        r = bf_mem_open(spec + 4, flags, opt, out, errbuf, errlen);
    } else if (strncmp(spec, "exec:", 5) == 0 || strncmp(spec, "unix:", 5) == 0) {
        r = bf_proto_open(spec, flags, opt, out, errbuf, errlen);
    } else if (strncmp(spec, "pg:", 3) == 0) {
#ifdef HAVE_POSTGRESQL
        r = bf_pg_open(spec + 3, flags, opt, NULL, out, errbuf, errlen);
#else
        bf_errf(errbuf, errlen,
                "pg: this bigfilefs was built without PostgreSQL (configure --with-postgresql)");
        return -EPROTONOSUPPORT;
#endif
    } else if (spec[0] == '\0') {
        bf_errf(errbuf, errlen, "empty database path");
        return -EINVAL;
    } else {
        r = bf_sqlite_open(spec, flags, opt, out, errbuf, errlen);
    }
    /* An engine may have set a label of its own (pg: without the password,
     * or one that logs during its open); NULL (out of memory): logs use the
     * engine's name. */
    if (r == 0 && !(*out)->label)
        (*out)->label = strdup(spec);
    return r;
}

void bf_db_spec_shown(const char *spec, char *buf, size_t len)
{
#ifdef HAVE_POSTGRESQL
    if (strncmp(spec, "pg:", 3) == 0) {
        bf_pg_redact(spec + 3, buf, len);
        return;
    }
#endif
    snprintf(buf, len, "%s", spec);
}

int bf_db_open(const char *spec, unsigned flags, bf_db **out, char *errbuf, size_t errlen)
{
    return bf_db_open_ex(spec, flags, NULL, out, errbuf, errlen);
}

void bf_db_close(bf_db *db)
{
    if (!db)
        return;
    bf_watch_stop(db);
    pthread_mutex_lock(&db->lock);
    struct bf_open *o = db->opens;
    pthread_mutex_unlock(&db->lock);
    if (!BF_CHECK(o == NULL, "closing a database with file %llu in use",
                  (unsigned long long)o->id)) {
        /* Forget the records; the caller's handles are lost with them (the
         * engine's close ends the session's holds). */
        while ((o = db->opens)) {
            db->opens = o->next;
            free(o);
        }
    }
    bf_views_close(db);
    db->ops->close(db); /* calls bf_db_fini */
}

uint64_t bf_db_session(bf_db *db)
{
    return db->session;
}

uint64_t bf_db_spillfile_used(bf_db *db)
{
    return db->spill ? bf_spillfile_used(db->spill) : 0;
}

int bf_db_file_open(bf_db *db, uint64_t id, bf_file **out)
{
    struct bf_open *o;
    struct bf_fh *fh = NULL;
    bool first;
    /* Register first, then let the engine read the row (and hold the file
     * at the first handle): a name removed meanwhile finds the file in use
     * and leaves it to our last close. */
    int r = open_enter(db, id, &o, &first);
    if (r < 0)
        return r;
    r = db->ops->file_open(db, id, first && !(db->flags & BF_DB_RDONLY), &fh);
    if (first)
        open_opened(db, o, r == 0);
    else if (r < 0)
        open_leave(db, o);
    if (r < 0)
        return r;
    bf_fh_init(fh, db, id, o, NULL, &db->fops);
    *out = &fh->file;
    return 0;
}

void bf_fh_init(struct bf_fh *fh, bf_db *db, uint64_t id, struct bf_open *o, struct bf_view *v,
                const struct bf_file_ops *ops)
{
    fh->file.ops = ops;
    fh->db = db;
    fh->id = id;
    fh->open = o;
    fh->view = v;
    fh->tx = BF_TX_IDLE;
    fh->used = NULL;
    fh->nused = fh->capused = 0;
}
void bf_db_file_close(bf_db *db, bf_file *f)
{
    if (!f)
        return;
    struct bf_fh *fh = FH(f);
    struct bf_open *o = fh->open;
    BF_ASSERT(fh->db == db);
    if (fh->view) {
        bf_view_file_close(fh); /* no record, no hold, no transaction */
        return;
    }
    if (!BF_CHECK(fh->tx == BF_TX_IDLE, "file %llu closed with its transaction open",
                  (unsigned long long)fh->id))
        fh_abort(f);
    db->ops->file_close(fh);
    open_leave(db, o);
}

/* ---- namespace ------------------------------------------------------- */

int bf_list_valid(void *arg, const struct bf_fileinfo *fi)
{
    struct bf_list_filter *lf = arg;
    if (bf_name_check(fi->name) < 0) {
        bf_db_log(lf->db, "file %llu left out of the listing: its name \"%s\" is not a valid name",
                  (unsigned long long)fi->id, fi->name);
        return 0;
    }
    return lf->cb(lf->arg, fi);
}

int bf_db_list(bf_db *db, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg)
{
    struct bf_list_filter lf = { db, cb, arg };
    return db->ops->list(db, bf_list_valid, &lf);
}

int bf_db_lookup(bf_db *db, const char *name, struct bf_fileinfo *out)
{
    if (!name)
        return -EINVAL;
    if (bf_name_check(name) < 0)
        return -ENOENT; /* no file can have it (a tampered row is not found) */
    return db->ops->lookup(db, name, out);
}

int bf_db_getinfo(bf_db *db, uint64_t id, struct bf_fileinfo *out)
{
    return db->ops->getinfo(db, id, out);
}

int bf_db_create(bf_db *db, const char *name, uint32_t blksize, uint64_t size, uint32_t mode,
                 uint32_t uid, uint32_t gid, struct bf_fileinfo *out)
{
    int r = bf_name_check(name);
    if (r < 0)
        return r;
    if (!bf_blksize_valid(blksize) || size > BF_SIZE_MAX)
        return -EINVAL;
    if (db->flags & BF_DB_RDONLY)
        return -EROFS;
    return db->ops->create(db, name, blksize, size, mode, uid, gid, out);
}

int bf_db_unlink(bf_db *db, const char *name)
{
    uint64_t id = 0;
    if (!name)
        return -EINVAL;
    if (bf_name_check(name) < 0)
        return -ENOENT;
    if (db->flags & BF_DB_RDONLY)
        return -EROFS;
    struct bf_open *spare = calloc(1, sizeof(*spare));
    if (!spare)
        return -ENOMEM;
    int r = db->ops->unlink(db, name, &id);
    if (r < 0) {
        free(spare);
        return r;
    }
    name_removed(db, id, spare);
    return 0;
}

int bf_db_rename(bf_db *db, const char *from, const char *to, unsigned flags)
{
    uint64_t replaced = 0;
    int r;
    if ((flags & ~(unsigned)(BF_RENAME_NOREPLACE | BF_RENAME_EXCHANGE)) ||
        flags == (BF_RENAME_NOREPLACE | BF_RENAME_EXCHANGE))
        return -EINVAL;
    if ((r = bf_name_check(from)) < 0 || (r = bf_name_check(to)) < 0)
        return r;
    if (db->flags & BF_DB_RDONLY)
        return -EROFS;
    struct bf_open *spare = calloc(1, sizeof(*spare));
    if (!spare)
        return -ENOMEM;
    r = db->ops->rename(db, from, to, flags, &replaced);
    if (r < 0 || replaced == 0) {
        free(spare);
        return r;
    }
    name_removed(db, replaced, spare);
    return 0;
}

int bf_db_setattr(bf_db *db, uint64_t id, const uint32_t *mode, const uint32_t *uid,
                  const uint32_t *gid, const int64_t *mtime_ns)
{
    if (db->flags & BF_DB_RDONLY)
        return -EROFS;
    return db->ops->setattr(db, id, mode, uid, gid, mtime_ns);
}

/* An attribute name's check: 0, -EINVAL (NULL or empty), -ERANGE (too long). */
static int xattr_name_check(const char *name)
{
    if (!name || !*name)
        return -EINVAL;
    return strnlen(name, BF_XATTR_NAME_MAX + 1) > BF_XATTR_NAME_MAX ? -ERANGE : 0;
}

/* Copy len bytes of src (malloc'ed, freed here) to dst of size bytes as
 * getxattr(2) does: size 0 asks for the length only. */
static int xattr_answer(void *src, size_t len, void *dst, size_t size, size_t *out)
{
    int r = 0;

    if (size && len > size)
        r = -ERANGE;
    else if (size && len)
        memcpy(dst, src, len);
    free(src);
    *out = len;
    return r;
}

int bf_db_getxattr(bf_db *db, uint64_t id, const char *name, void *value, size_t size, size_t *len)
{
    void *v = NULL;
    size_t n = 0;
    int r = xattr_name_check(name);

    if (r < 0)
        return r;
    if (!db->ops->getxattr)
        return -ENOTSUP;
    if ((r = db->ops->getxattr(db, id, name, &v, &n)) < 0)
        return r;
    return xattr_answer(v, n, value, size, len);
}

int bf_db_listxattr(bf_db *db, uint64_t id, char *list, size_t size, size_t *len)
{
    char *v = NULL;
    size_t n = 0;
    int r;

    if (!db->ops->listxattr)
        return -ENOTSUP;
    if ((r = db->ops->listxattr(db, id, &v, &n)) < 0)
        return r;
    return xattr_answer(v, n, list, size, len);
}

int bf_db_setxattr(bf_db *db, uint64_t id, const char *name, const void *value, size_t len,
                   unsigned flags)
{
    int r = xattr_name_check(name);

    if (r < 0)
        return r;
    if (flags & ~(unsigned)(BF_XATTR_CREATE | BF_XATTR_REPLACE) ||
        flags == (BF_XATTR_CREATE | BF_XATTR_REPLACE) || (len && !value))
        return -EINVAL;
    if (len > BF_XATTR_SIZE_MAX)
        return -E2BIG;
    if (!db->ops->setxattr)
        return -ENOTSUP;
    if (db->flags & BF_DB_RDONLY)
        return -EROFS;
    return db->ops->setxattr(db, id, name, value, len, flags);
}

int bf_db_removexattr(bf_db *db, uint64_t id, const char *name)
{
    int r = xattr_name_check(name);

    if (r < 0)
        return r;
    if (!db->ops->removexattr)
        return -ENOTSUP;
    if (db->flags & BF_DB_RDONLY)
        return -EROFS;
    return db->ops->removexattr(db, id, name);
}

int bf_db_set_blksize(bf_db *db, uint64_t id, uint32_t blksize)
{
    if (!bf_blksize_valid(blksize))
        return -EINVAL;
    if (db->flags & BF_DB_RDONLY)
        return -EROFS;
    struct bf_open *fresh = calloc(1, sizeof(*fresh));
    if (!fresh)
        return -ENOMEM;
    pthread_mutex_lock(&db->lock);
    if (open_settled(db, id)) {
        pthread_mutex_unlock(&db->lock);
        free(fresh);
        return -EBUSY; /* a bf_file is open on it */
    }
    /* (none) -> RESERVED: no handle opens while the engine changes it. */
    struct bf_open *o = fresh;
    open_insert(db, o, id, BF_OPEN_RESERVED);
    pthread_mutex_unlock(&db->lock);

    int r = db->ops->set_blksize(db, id, blksize);
    pthread_mutex_lock(&db->lock);
    open_done(db, o);
    return r;
}

/* ---- helpers for engines (engine.h) ------------------------------------ */

void bf_db_log(const bf_db *db, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "bigfilefs: %s: %s\n", db->label ? db->label : db->ops->name, msg);
}

int bf_counter_init(struct bf_counter *c)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -ENOMEM;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* for the deadline of waits */
    int r = pthread_cond_init(&c->cond, &ca) == 0 ? 0 : -ENOMEM;
    pthread_condattr_destroy(&ca);
    if (r == 0 && pthread_mutex_init(&c->lock, NULL) != 0) {
        pthread_cond_destroy(&c->cond);
        r = -ENOMEM;
    }
    c->n = 0;
    return r;
}

void bf_counter_destroy(struct bf_counter *c)
{
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
}

void bf_counter_add(struct bf_counter *c, int64_t delta)
{
    pthread_mutex_lock(&c->lock);
    BF_ASSERT(delta >= 0 || c->n >= (uint64_t)-delta);
    c->n += (uint64_t)delta;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

uint64_t bf_counter_get(struct bf_counter *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

int bf_counter_wait(struct bf_counter *c, bool at_least, uint64_t n, int timeout_ms)
{
    struct timespec until;
    int r = 0;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->lock);
    while (r == 0 && (at_least ? c->n < n : c->n > 0)) {
        if (timeout_ms < 0)
            pthread_cond_wait(&c->cond, &c->lock);
        else if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT)
            r = (at_least ? c->n < n : c->n > 0) ? -ETIMEDOUT : 0;
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

int bf_name_check(const char *name)
{
    if (!name || name[0] == '\0' || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return -EINVAL;
    if (strlen(name) > BF_NAME_MAX)
        return -ENAMETOOLONG;
    return 0;
}
