/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: point-in-time views, the layer's part
 * (backend.h, "point-in-time views"; docs/HISTORY.md).
 *
 * The history itself is the engine's (its tables, its housekeeping); the
 * layer adds three things every engine would otherwise repeat:
 *
 *   pins     a session may have many views of one serial (the daemon opens
 *            one per @SERIAL directory user): the database needs one pin
 *            row per session and serial. db->vpins counts the views of each
 *            serial; engine->pin(on) runs at the first view, (off) at the
 *            last close, both under db->vlock so that an open and a close
 *            of one serial never cross. A read-only session records no pin
 *            (it writes nothing): its views are unpinned, their serial is
 *            checked once at open.
 *   files    a view's bf_file is a read-only handle of the engine
 *            (file_open_at): it has no record in the open-file table and
 *            holds nothing; its loadblk reads as of the view's serial
 *            whatever `at` the core gives, and a version collected under an
 *            unpinned view is -EIO, never -ESTALE (which would ask the core
 *            to retry at a newer serial: a view has none).
 *   errors   an engine answers -ENOENT both for "no such file at S" and for
 *            "S is no longer kept"; in an unpinned view the layer tells
 *            them apart (the latter is -EIO, backend.h).
 *
 * Each view's file count is kept under db->vlock too: bf_db_view_close
 * checks that none is left (BF_CHECK).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backends/engine.h"

/* A serial the session's views show (db->vpins, under db->vlock). */
struct bf_vpin {
    struct bf_vpin *next;
    uint64_t serial;
    unsigned nviews; /* open views of it, >= 1 */
    bool pinned;     /* engine->pin(on) succeeded (false: read-only session) */
};

struct bf_view {
    bf_db *db;
    uint64_t serial;
    bool pinned;             /* its serial is pinned for the session */
    unsigned nfiles;         /* bf_files open through it (under db->vlock) */
    struct bf_file_ops fops; /* its files' operations: read-only, at serial */
};

int bf_views_init(bf_db *db)
{
    db->vpins = NULL;
    return pthread_mutex_init(&db->vlock, NULL) == 0 ? 0 : -ENOMEM;
}

void bf_views_close(bf_db *db)
{
    pthread_mutex_lock(&db->vlock);
    struct bf_vpin *p = db->vpins;
    db->vpins = NULL;
    pthread_mutex_unlock(&db->vlock);
    if (!BF_CHECK(p == NULL, "closing a database with a view of serial %llu open",
                  (unsigned long long)p->serial)) {
        /* The views are lost (the engine's close removes the pins with the
         * session). */
        while (p) {
            struct bf_vpin *next = p->next;
            free(p);
            p = next;
        }
    }
}

void bf_views_fini(bf_db *db)
{
    pthread_mutex_destroy(&db->vlock);
}

static bool history_kept(bf_db *db)
{
    return db->ops->history != NULL;
}

int bf_db_history(bf_db *db, struct bf_history *out)
{
    if (!history_kept(db)) {
        *out = (struct bf_history){ .kept = false };
        return 0;
    }
    int r = db->ops->history(db, out);
    if (r == 0)
        BF_ASSERT(out->kept);
    return r;
}

int bf_db_history_keep(bf_db *db, int64_t keep_ns)
{
    if (keep_ns < 0)
        return -EINVAL;
    if (!history_kept(db))
        return -EOPNOTSUPP;
    if (db->flags & BF_DB_RDONLY)
        return -EROFS;
    return db->ops->history_keep(db, keep_ns);
}

int bf_db_gc(bf_db *db, struct bf_history *out)
{
    if (!history_kept(db))
        return -EOPNOTSUPP;
    if (db->flags & BF_DB_RDONLY)
        return -EROFS;
    int r = bf_db_trim(db);
    if (r == 0 && out)
        r = bf_db_history(db, out);
    return r;
}

/* ---- pins ---------------------------------------------------------------- */

/* Caller holds db->vlock. */
static struct bf_vpin **vpin_find(bf_db *db, uint64_t serial)
{
    struct bf_vpin **pp = &db->vpins;
    while (*pp && (*pp)->serial != serial)
        pp = &(*pp)->next;
    return pp;
}

/* Count one more view of serial: the first pins it (a read-only session
 * only checks it is kept). *pinned says whether it is pinned. -ENOENT (not
 * kept), -ENOMEM, the engine's error. */
static int vpin_enter(bf_db *db, uint64_t serial, bool *pinned)
{
    struct bf_vpin *fresh = calloc(1, sizeof(*fresh));
    struct bf_history h;
    int r = 0;
    if (!fresh)
        return -ENOMEM;
    pthread_mutex_lock(&db->vlock);
    struct bf_vpin **pp = vpin_find(db, serial);
    if (*pp) {
        (*pp)->nviews++;
        *pinned = (*pp)->pinned;
        pthread_mutex_unlock(&db->vlock);
        free(fresh);
        return 0;
    }
    if (!(db->flags & BF_DB_RDONLY)) {
        r = db->ops->pin(db, serial, true);
        fresh->pinned = r == 0;
    } else if ((r = db->ops->history(db, &h)) == 0 && (serial < h.from || serial > h.current)) {
        r = -ENOENT;
    }
    if (r == 0) {
        /* (none) -> counted (pinned unless read-only) */
        fresh->serial = serial;
        fresh->nviews = 1;
        fresh->next = db->vpins;
        db->vpins = fresh;
        *pinned = fresh->pinned;
        fresh = NULL;
    }
    pthread_mutex_unlock(&db->vlock);
    free(fresh);
    return r;
}

/* Count one view of serial less: the last unpins it. */
static void vpin_leave(bf_db *db, uint64_t serial)
{
    pthread_mutex_lock(&db->vlock);
    struct bf_vpin **pp = vpin_find(db, serial), *p = *pp;
    if (!BF_CHECK(p != NULL, "view of serial %llu closed twice", (unsigned long long)serial)) {
        pthread_mutex_unlock(&db->vlock);
        return;
    }
    if (--p->nviews > 0) {
        pthread_mutex_unlock(&db->vlock);
        return;
    }
    /* counted -> (none): the session's last view of the serial */
    *pp = p->next;
    int r = p->pinned ? db->ops->pin(db, serial, false) : 0;
    pthread_mutex_unlock(&db->vlock);
    if (r < 0)
        bf_db_log(db, "serial %llu: cannot remove the pin (%s); it goes with the session",
                  (unsigned long long)serial, strerror(-r));
    free(p);
}

/* ---- a view's bf_file: read-only, at the view's serial ------------------- */

static struct bf_fh *VFH(bf_file *f)
{
    return (struct bf_fh *)f;
}

/* A version gone from under an unpinned view has no newer one to try. */
static int view_load_err(int r)
{
    return r == -ESTALE ? -EIO : r;
}

static int vfh_loadblk(bf_file *f, uint64_t blk, uint64_t at, void *buf, uint64_t *serial)
{
    struct bf_fh *fh = VFH(f);
    uint64_t ignored;
    (void)at; /* a view reads as of its serial */
    return view_load_err(
        fh->db->ops->loadblk(fh, blk, fh->view->serial, buf, serial ? serial : &ignored));
}

static int vfh_loadblk_range(bf_file *f, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                             void *buf, uint64_t *serial)
{
    struct bf_fh *fh = VFH(f);
    uint64_t ignored;
    (void)at;
    return view_load_err(fh->db->ops->loadblk_range(fh, blk, fh->view->serial, off, len, buf,
                                                    serial ? serial : &ignored));
}

static int vfh_loadblk_send(bf_file *f, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                            struct bf_sink *sink)
{
    struct bf_fh *fh = VFH(f);
    (void)at;
    return view_load_err(fh->db->ops->loadblk_send(fh, blk, fh->view->serial, off, len, sink));
}

static int vfh_loadblk_ahead(bf_file *f, uint64_t blk, uint64_t at)
{
    struct bf_fh *fh = VFH(f);
    (void)at;
    return view_load_err(fh->db->ops->loadblk_ahead(fh, blk, fh->view->serial));
}

static int vfh_begin(bf_file *f)
{
    (void)f;
    return -EROFS;
}

/* Never reached (begin fails): the core stores only in a transaction. */
static int vfh_storeblk(bf_file *f, uint64_t blk, const void *buf, uint64_t base)
{
    (void)f, (void)blk, (void)buf, (void)base;
    return -EROFS;
}

static int vfh_truncate(bf_file *f, uint64_t nblocks)
{
    (void)f, (void)nblocks;
    return -EROFS;
}

static int vfh_commit(bf_file *f, const struct bf_commit_req *req, uint64_t *serial)
{
    (void)f, (void)req, (void)serial;
    return -EROFS;
}

static void vfh_abort(bf_file *f)
{
    (void)f;
}

/* ---- views ----------------------------------------------------------------- */

int bf_db_view_open(bf_db *db, uint64_t serial, bf_view **out)
{
    if (!history_kept(db))
        return -EOPNOTSUPP;
    if (serial == 0)
        return -ENOENT;
    struct bf_view *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    int r = vpin_enter(db, serial, &v->pinned);
    if (r < 0) {
        free(v);
        return r;
    }
    v->db = db;
    v->serial = serial;
    v->fops = (struct bf_file_ops){
        .loadblk = vfh_loadblk,
        .begin = vfh_begin,
        .storeblk = vfh_storeblk,
        .truncate = vfh_truncate,
        .commit = vfh_commit,
        .abort = vfh_abort,
        .loadblk_range = db->ops->loadblk_range ? vfh_loadblk_range : NULL,
        .loadblk_send = db->ops->loadblk_send && !db->opt.copy_reads ? vfh_loadblk_send : NULL,
        .loadblk_ahead = db->ops->loadblk_ahead && !db->opt.copy_reads ? vfh_loadblk_ahead : NULL,
        /* next_stored, stored_blocks: the engines answer for the current
         * versions only; staging: nothing is ever dirty. */
    };
    *out = v;
    return 0;
}

void bf_db_view_close(bf_view *v)
{
    if (!v)
        return;
    bf_db *db = v->db;
    pthread_mutex_lock(&db->vlock);
    unsigned n = v->nfiles;
    pthread_mutex_unlock(&db->vlock);
    BF_CHECK(n == 0, "view of serial %llu closed with %u files open", (unsigned long long)v->serial,
             n);
    vpin_leave(db, v->serial);
    free(v);
}

uint64_t bf_view_serial(const bf_view *v)
{
    return v->serial;
}

/* An engine's -ENOENT in view v: in an unpinned view whose serial is no
 * longer kept, -EIO (backend.h); else as it is. */
static int view_err(bf_view *v, int r)
{
    struct bf_history h;
    if (r != -ENOENT || v->pinned)
        return r;
    if (v->db->ops->history(v->db, &h) == 0 && v->serial < h.from)
        return -EIO;
    return r;
}

int bf_view_list(bf_view *v, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg)
{
    struct bf_list_filter lf = { v->db, cb, arg };
    int r = v->db->ops->list_at(v->db, v->serial, bf_list_valid, &lf);
    return r == -ENOENT ? -EIO : r; /* list_at: -ENOENT only for a serial gone */
}

int bf_view_lookup(bf_view *v, const char *name, struct bf_fileinfo *out)
{
    if (!name)
        return -EINVAL;
    if (bf_name_check(name) < 0)
        return -ENOENT;
    return view_err(v, v->db->ops->lookup_at(v->db, v->serial, name, out));
}

int bf_view_getinfo(bf_view *v, uint64_t id, struct bf_fileinfo *out)
{
    return view_err(v, v->db->ops->getinfo_at(v->db, v->serial, id, out));
}

int bf_view_file_open(bf_view *v, uint64_t id, bf_file **out)
{
    bf_db *db = v->db;
    struct bf_fileinfo fi;
    struct bf_fh *fh = NULL;
    int r = db->ops->getinfo_at(db, v->serial, id, &fi);
    if (r == 0)
        r = db->ops->file_open_at(db, id, v->serial, &fh);
    if (r < 0)
        return view_err(v, r);
    /* the file as at the view's serial, found above: read once */
    fh->file.blksize = fi.blksize;
    fh->file.size = fi.size;
    fh->file.serial = v->serial;
    bf_fh_init(fh, db, id, NULL, v, &v->fops);
    pthread_mutex_lock(&db->vlock);
    v->nfiles++;
    pthread_mutex_unlock(&db->vlock);
    *out = &fh->file;
    return 0;
}

void bf_view_file_close(struct bf_fh *fh)
{
    bf_view *v = fh->view;
    bf_db *db = fh->db;
    db->ops->file_close(fh);
    pthread_mutex_lock(&db->vlock);
    BF_ASSERT(v->nfiles > 0);
    v->nfiles--;
    pthread_mutex_unlock(&db->vlock);
}

/* ---- a file's log ------------------------------------------------------------ */

int bf_db_file_log(bf_db *db, uint64_t id, uint64_t before, size_t max,
                   int (*cb)(void *arg, const struct bf_log_entry *e), void *arg)
{
    if (!cb)
        return -EINVAL;
    if (!history_kept(db))
        return -EOPNOTSUPP;
    if (max == 0 || before == 0)
        return 0;
    return db->ops->file_log(db, id, before, max, cb, arg);
}
