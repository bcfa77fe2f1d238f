/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the memory engine. See memory.h; the rules every
 * engine leaves to the layer (open files, one transaction per file, purge
 * at the last close) are in engine.h.
 *
 * Locking (the engine's own; the layer's lock never nests with these):
 *  - m->lock (rwlock) guards the file records: the record list and every
 *    record's metadata and committed block map. loadblk takes it shared
 *    (concurrent loads run in parallel); everything that changes a record
 *    takes it exclusive.
 *  - m->flock guards the fault rules and release_gen. It is never held
 *    together with m->lock, and never across a sleep; a held call waits on
 *    m->released with it (the wait releases it). The count of held calls
 *    (m->held, a bf_counter) has a leaf lock of its own, taken inside
 *    flock.
 *  - A handle's pending stores (mem_fh.pending) are touched only by the
 *    thread driving its transaction (bigfile.h: one thread at a time), so
 *    they need no lock.
 *  - Call counters are atomics.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/engine.h"
#include "backends/memory.h"

/* One block in a map. In a committed map data is never NULL; in a pending
 * map NULL means "store a hole" (remove the block at commit). */
struct blkent {
    uint64_t blk;
    void *data;
};

/* A map of blocks: an array sorted by blk. */
struct blkvec {
    struct blkent *v;
    size_t n, cap;
};

/* One bigfile: linked (has a name) or nameless (name[0] == 0: unlinked,
 * kept until the layer purges it). */
struct mem_rec {
    struct mem_rec *next; /* m->recs list */
    uint64_t id;
    int linked;
    char name[BF_NAME_MAX + 1];
    uint32_t blksize;
    uint64_t size;
    uint32_t mode, uid, gid;
    int64_t mtime_ns, ctime_ns;
    struct blkvec blocks; /* committed content */
};

struct mem_rule {
    struct bf_mem_fault f;
    uint64_t seen;  /* matching calls so far */
    uint64_t fired; /* of which failed or were held */
    bool released;  /* a hold rule after bf_mem_release: matches nothing */
};

#define MEM_NOPS 6 /* enum bf_mem_op values are 1..5 */

struct mem_db {
    bf_db base;
    pthread_rwlock_t lock;
    struct mem_rec *recs;
    uint64_t next_id;

    pthread_mutex_t flock;
    struct mem_rule *rules;
    size_t nrules, caprules;
    uint64_t release_gen;    /* bumped by every release: a held call waits for a change */
    pthread_cond_t released; /* broadcast when release_gen changes */
    struct bf_counter held;  /* calls held now (its lock nests inside flock) */
    bool closing;            /* mem_close released the held calls (a caller bug) */

    uint64_t calls[MEM_NOPS]; /* atomics */
};

/* A handle. Its transaction state is the layer's (base.tx): pending and
 * trunc_to are meaningful while it is BF_TX_OPEN. */
struct mem_fh {
    struct bf_fh base; /* first: bf_fh* <-> mem_fh* */
    struct mem_db *db;
    struct mem_rec *rec;
    struct blkvec pending; /* stores of the open transaction */
    uint64_t trunc_to;     /* smallest truncate of it; UINT64_MAX: none */
};

/* ---- block maps ---------------------------------------------------------- */

/* Index of the first entry with blk >= key. */
static size_t vec_lower(const struct blkvec *bv, uint64_t key)
{
    size_t lo = 0, hi = bv->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bv->v[mid].blk < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int vec_reserve(struct blkvec *bv, size_t want)
{
    if (want <= bv->cap)
        return 0;
    size_t cap = bv->cap ? bv->cap : 16;
    while (cap < want)
        cap *= 2;
    struct blkent *v = realloc(bv->v, cap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    bv->v = v;
    bv->cap = cap;
    return 0;
}

/* Set blk's entry to data, freeing a previous one. Needs room for one more
 * entry when blk is new (reserve first: then it cannot fail). */
static void vec_put(struct blkvec *bv, uint64_t blk, void *data)
{
    size_t i = vec_lower(bv, blk);
    if (i < bv->n && bv->v[i].blk == blk) {
        free(bv->v[i].data);
        bv->v[i].data = data;
        return;
    }
    memmove(&bv->v[i + 1], &bv->v[i], (bv->n - i) * sizeof(bv->v[0]));
    bv->v[i].blk = blk;
    bv->v[i].data = data;
    bv->n++;
}

static void vec_del(struct blkvec *bv, uint64_t blk)
{
    size_t i = vec_lower(bv, blk);
    if (i < bv->n && bv->v[i].blk == blk) {
        free(bv->v[i].data);
        memmove(&bv->v[i], &bv->v[i + 1], (bv->n - i - 1) * sizeof(bv->v[0]));
        bv->n--;
    }
}

/* Drop every entry with blk >= from. */
static void vec_cut(struct blkvec *bv, uint64_t from)
{
    size_t i = vec_lower(bv, from);
    for (size_t j = i; j < bv->n; j++)
        free(bv->v[j].data);
    bv->n = i;
}

static void vec_free(struct blkvec *bv)
{
    vec_cut(bv, 0);
    free(bv->v);
    bv->v = NULL;
    bv->cap = 0;
}

/* ---- records ------------------------------------------------------------- */

static struct mem_db *DB(bf_db *db)
{
    return (struct mem_db *)db;
}

/* Caller holds m->lock (either way). */
static struct mem_rec *find_name(struct mem_db *m, const char *name)
{
    for (struct mem_rec *r = m->recs; r; r = r->next)
        if (r->linked && strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

/* Caller holds m->lock (either way). Finds nameless files too. */
static struct mem_rec *find_id(struct mem_db *m, uint64_t id)
{
    for (struct mem_rec *r = m->recs; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

static void fill_info(const struct mem_rec *r, struct bf_fileinfo *fi)
{
    memset(fi, 0, sizeof(*fi));
    fi->id = r->id;
    if (r->linked)
        strcpy(fi->name, r->name);
    fi->blksize = r->blksize;
    fi->size = r->size;
    fi->mode = r->mode;
    fi->uid = r->uid;
    fi->gid = r->gid;
    fi->mtime_ns = r->mtime_ns;
    fi->ctime_ns = r->ctime_ns;
}

/* Unlink and free a record. Caller holds m->lock exclusive. */
static void rec_destroy(struct mem_db *m, struct mem_rec *r)
{
    for (struct mem_rec **pp = &m->recs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    vec_free(&r->blocks);
    free(r);
}

/* Remove r's name: it stays, nameless, until the layer purges it. Caller
 * holds m->lock exclusive. */
static void rec_drop_name(struct mem_rec *r)
{
    r->linked = 0;
    r->name[0] = '\0';
    r->ctime_ns = bf_now_ns();
}

/* ---- faults -------------------------------------------------------------- */

/* Hold the calling thread until the next release. Returns -EIO if the
 * release came from closing the database (the call must not touch it
 * again), else 0. Caller holds m->flock. */
static int fault_hold(struct mem_db *m)
{
    uint64_t gen = m->release_gen;
    bf_counter_add(&m->held, 1);
    while (m->release_gen == gen)
        pthread_cond_wait(&m->released, &m->flock);
    bf_counter_add(&m->held, -1);
    return m->closing ? -EIO : 0;
}

/* Release every held call. Caller holds m->flock. */
static void fault_release(struct mem_db *m)
{
    m->release_gen++;
    pthread_cond_broadcast(&m->released);
}

/* Count a call of op and apply the fault rules to it: the first rule that
 * fires holds the call (until a release) and/or fails it. Returns 0 or
 * that rule's -errno; sleeps the delays of the matching rules looked at
 * (the firing one included), with no lock held. */
static int fault_check(struct mem_db *m, enum bf_mem_op op, uint64_t file_id, uint64_t blk)
{
    int err = 0;
    uint64_t delay = 0;

    __atomic_add_fetch(&m->calls[op], 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&m->flock);
    for (size_t i = 0; i < m->nrules; i++) {
        struct mem_rule *ru = &m->rules[i];
        const struct bf_mem_fault *f = &ru->f;
        int ranged = (op == BF_MEM_LOADBLK || op == BF_MEM_STOREBLK);
        if (f->op != op || ru->released)
            continue;
        if (f->file_id && f->file_id != file_id)
            continue;
        if (ranged && (blk < f->blk_lo || blk > f->blk_hi))
            continue;
        ru->seen++;
        delay += f->delay_us;
        if ((f->err || f->hold) && ru->seen > f->after && (f->times == 0 || ru->fired < f->times)) {
            ru->fired++;
            err = -f->err;
            if (f->hold && fault_hold(m) < 0) {
                /* the rules may have changed meanwhile: ru is not used again */
                pthread_mutex_unlock(&m->flock);
                return -EIO;
            }
            break;
        }
    }
    pthread_mutex_unlock(&m->flock);
    if (delay) {
        struct timespec ts = { (time_t)(delay / 1000000), (long)(delay % 1000000) * 1000 };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    return err;
}

int bf_mem_inject(bf_db *db, const struct bf_mem_fault *fault)
{
    if (!bf_db_is_memory(db) || !fault)
        return -EINVAL;
    if (fault->op < BF_MEM_LOADBLK || fault->op > BF_MEM_COMMIT || fault->err < 0 ||
        fault->blk_lo > fault->blk_hi)
        return -EINVAL;
    struct mem_db *m = DB(db);
    int r = 0;
    pthread_mutex_lock(&m->flock);
    if (m->nrules == m->caprules) {
        size_t cap = m->caprules ? 2 * m->caprules : 8;
        struct mem_rule *v = realloc(m->rules, cap * sizeof(*v));
        if (!v) {
            r = -ENOMEM;
            goto out;
        }
        m->rules = v;
        m->caprules = cap;
    }
    m->rules[m->nrules].f = *fault;
    m->rules[m->nrules].seen = 0;
    m->rules[m->nrules].fired = 0;
    m->rules[m->nrules].released = false;
    m->nrules++;
out:
    pthread_mutex_unlock(&m->flock);
    return r;
}

void bf_mem_clear_faults(bf_db *db)
{
    if (!bf_db_is_memory(db))
        return;
    struct mem_db *m = DB(db);
    pthread_mutex_lock(&m->flock);
    m->nrules = 0;
    fault_release(m);
    pthread_mutex_unlock(&m->flock);
}

void bf_mem_release(bf_db *db)
{
    if (!bf_db_is_memory(db))
        return;
    struct mem_db *m = DB(db);
    pthread_mutex_lock(&m->flock);
    for (size_t i = 0; i < m->nrules; i++)
        if (m->rules[i].f.hold)
            m->rules[i].released = true;
    fault_release(m);
    pthread_mutex_unlock(&m->flock);
}

uint64_t bf_mem_held(bf_db *db)
{
    if (!bf_db_is_memory(db))
        return 0;
    return bf_counter_get(&DB(db)->held);
}

int bf_mem_wait_held(bf_db *db, uint64_t n, int timeout_ms)
{
    if (!bf_db_is_memory(db))
        return -EINVAL;
    return bf_counter_wait(&DB(db)->held, true, n, timeout_ms);
}

uint64_t bf_mem_calls(bf_db *db, enum bf_mem_op op)
{
    if (!bf_db_is_memory(db) || op < BF_MEM_LOADBLK || op > BF_MEM_COMMIT)
        return 0;
    return __atomic_load_n(&DB(db)->calls[op], __ATOMIC_RELAXED);
}

uint64_t bf_mem_blocks(bf_db *db, uint64_t id)
{
    if (!bf_db_is_memory(db))
        return 0;
    struct mem_db *m = DB(db);
    uint64_t n = 0;
    pthread_rwlock_rdlock(&m->lock);
    struct mem_rec *rec = find_id(m, id);
    if (rec)
        n = rec->blocks.n;
    pthread_rwlock_unlock(&m->lock);
    return n;
}

/* ---- the file operations (bigfile.h, through the layer) ------------------ */

static struct mem_fh *FH(struct bf_fh *fh)
{
    return (struct mem_fh *)fh;
}

static int mem_loadblk(struct bf_fh *fh, uint64_t blk, void *buf)
{
    struct mem_fh *h = FH(fh);
    struct mem_db *m = h->db;
    uint32_t bs = fh->file.blksize;
    int r = fault_check(m, BF_MEM_LOADBLK, fh->id, blk);
    if (r < 0)
        return r;
    pthread_rwlock_rdlock(&m->lock);
    const struct blkvec *bv = &h->rec->blocks;
    size_t i = vec_lower(bv, blk);
    if (i < bv->n && bv->v[i].blk == blk)
        memcpy(buf, bv->v[i].data, bs);
    else
        memset(buf, 0, bs);
    pthread_rwlock_unlock(&m->lock);
    return 0;
}

static int mem_begin(struct bf_fh *fh)
{
    struct mem_fh *h = FH(fh);
    int r = fault_check(h->db, BF_MEM_BEGIN, fh->id, 0);
    if (r < 0)
        return r;
    /* Stores go aside until commit. */
    BF_ASSERT(h->pending.n == 0);
    h->trunc_to = UINT64_MAX;
    return 0;
}

static int mem_storeblk(struct bf_fh *fh, uint64_t blk, const void *buf)
{
    struct mem_fh *h = FH(fh);
    uint32_t bs = fh->file.blksize;
    int r = fault_check(h->db, BF_MEM_STOREBLK, fh->id, blk);
    if (r < 0)
        return r;
    void *data = NULL; /* NULL: a hole */
    if (!bf_all_zero(buf, bs)) {
        data = malloc(bs);
        if (!data)
            return -ENOMEM;
        memcpy(data, buf, bs);
    }
    if (vec_reserve(&h->pending, h->pending.n + 1) < 0) {
        free(data);
        return -ENOMEM;
    }
    vec_put(&h->pending, blk, data);
    return 0;
}

static int mem_truncate(struct bf_fh *fh, uint64_t nblocks)
{
    struct mem_fh *h = FH(fh);
    int r = fault_check(h->db, BF_MEM_TRUNCATE, fh->id, 0);
    if (r < 0)
        return r;
    vec_cut(&h->pending, nblocks);
    if (nblocks < h->trunc_to)
        h->trunc_to = nblocks;
    return 0;
}

/* Throw the pending stores away (the layer closes the transaction). */
static void mem_abort(struct bf_fh *fh)
{
    struct mem_fh *h = FH(fh);
    vec_free(&h->pending);
    h->trunc_to = UINT64_MAX;
}

static int mem_commit(struct bf_fh *fh, uint64_t size)
{
    struct mem_fh *h = FH(fh);
    struct mem_db *m = h->db;
    struct mem_rec *rec = h->rec;
    int r = fault_check(m, BF_MEM_COMMIT, fh->id, 0);
    if (r == 0) {
        pthread_rwlock_wrlock(&m->lock);
        /* Reserve first so that applying cannot fail half way. */
        r = vec_reserve(&rec->blocks, rec->blocks.n + h->pending.n);
        if (r == 0) {
            if (h->trunc_to != UINT64_MAX)
                vec_cut(&rec->blocks, h->trunc_to);
            for (size_t i = 0; i < h->pending.n; i++) {
                struct blkent *e = &h->pending.v[i];
                if (e->data)
                    vec_put(&rec->blocks, e->blk, e->data);
                else
                    vec_del(&rec->blocks, e->blk);
                e->data = NULL; /* moved */
            }
            h->pending.n = 0;
            rec->size = size;
            rec->mtime_ns = rec->ctime_ns = bf_now_ns();
        }
        pthread_rwlock_unlock(&m->lock);
    }
    mem_abort(fh); /* what is left: nothing after success, everything after a failure */
    return r;
}

static int mem_next_stored(struct bf_fh *fh, uint64_t from, uint64_t *blk)
{
    struct mem_fh *h = FH(fh);
    struct mem_db *m = h->db;
    pthread_rwlock_rdlock(&m->lock);
    const struct blkvec *bv = &h->rec->blocks;
    size_t i = vec_lower(bv, from);
    int r = -ENXIO;
    if (i < bv->n) {
        *blk = bv->v[i].blk;
        r = 0;
    }
    pthread_rwlock_unlock(&m->lock);
    return r;
}

static int mem_stored_blocks(struct bf_fh *fh, uint64_t *n)
{
    struct mem_fh *h = FH(fh);
    struct mem_db *m = h->db;
    pthread_rwlock_rdlock(&m->lock);
    *n = h->rec->blocks.n;
    pthread_rwlock_unlock(&m->lock);
    return 0;
}

/* ---- the database operations (engine.h) ---------------------------------- */

static void mem_close(bf_db *db)
{
    struct mem_db *m = DB(db);
    uint64_t held = bf_counter_get(&m->held);
    if (!BF_CHECK(held == 0, "closing a memory database with %llu calls held",
                  (unsigned long long)held)) {
        /* Let them go, failing, and wait until they no longer wait. */
        pthread_mutex_lock(&m->flock);
        m->closing = true;
        fault_release(m);
        pthread_mutex_unlock(&m->flock);
        bf_counter_wait(&m->held, false, 0, -1);
        /* they left the count under flock: once we have had it, they are
         * past their last touch of it */
        pthread_mutex_lock(&m->flock);
        pthread_mutex_unlock(&m->flock);
    }
    while (m->recs)
        rec_destroy(m, m->recs);
    free(m->rules);
    pthread_rwlock_destroy(&m->lock);
    pthread_cond_destroy(&m->released);
    bf_counter_destroy(&m->held);
    pthread_mutex_destroy(&m->flock);
    free(m);
}

static int cmp_info_name(const void *a, const void *b)
{
    return strcmp(((const struct bf_fileinfo *)a)->name, ((const struct bf_fileinfo *)b)->name);
}

static int mem_list(bf_db *db, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg)
{
    struct mem_db *m = DB(db);
    size_t n = 0, i = 0;
    /* Snapshot under the lock, call back without it: cb may call into db. */
    pthread_rwlock_rdlock(&m->lock);
    for (struct mem_rec *r = m->recs; r; r = r->next)
        n += r->linked;
    struct bf_fileinfo *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) {
        pthread_rwlock_unlock(&m->lock);
        return -ENOMEM;
    }
    for (struct mem_rec *r = m->recs; r; r = r->next)
        if (r->linked)
            fill_info(r, &v[i++]);
    pthread_rwlock_unlock(&m->lock);
    qsort(v, n, sizeof(*v), cmp_info_name);
    int ret = 0;
    for (i = 0; i < n && ret == 0; i++)
        ret = cb(arg, &v[i]);
    free(v);
    return ret;
}

/* Copy the record found by name (name != NULL) or id into *out. */
static int mem_find(struct mem_db *m, const char *name, uint64_t id, struct bf_fileinfo *out)
{
    int r = -ENOENT;
    pthread_rwlock_rdlock(&m->lock);
    struct mem_rec *rec = name ? find_name(m, name) : find_id(m, id);
    if (rec) {
        if (out)
            fill_info(rec, out);
        r = 0;
    }
    pthread_rwlock_unlock(&m->lock);
    return r;
}

static int mem_lookup(bf_db *db, const char *name, struct bf_fileinfo *out)
{
    return mem_find(DB(db), name, 0, out);
}

static int mem_getinfo(bf_db *db, uint64_t id, struct bf_fileinfo *out)
{
    return mem_find(DB(db), NULL, id, out);
}

static int mem_create(bf_db *db, const char *name, uint32_t blksize, uint64_t size, uint32_t mode,
                      uint32_t uid, uint32_t gid, struct bf_fileinfo *out)
{
    struct mem_db *m = DB(db);
    struct mem_rec *rec = calloc(1, sizeof(*rec));
    if (!rec)
        return -ENOMEM;
    pthread_rwlock_wrlock(&m->lock);
    if (find_name(m, name)) {
        pthread_rwlock_unlock(&m->lock);
        free(rec);
        return -EEXIST;
    }
    rec->id = m->next_id++;
    rec->linked = 1;
    strcpy(rec->name, name);
    rec->blksize = blksize;
    rec->size = size;
    rec->mode = mode & 07777;
    rec->uid = uid;
    rec->gid = gid;
    rec->mtime_ns = rec->ctime_ns = bf_now_ns();
    rec->next = m->recs;
    m->recs = rec;
    if (out)
        fill_info(rec, out);
    pthread_rwlock_unlock(&m->lock);
    return 0;
}

static int mem_unlink(bf_db *db, const char *name, uint64_t *id)
{
    struct mem_db *m = DB(db);
    pthread_rwlock_wrlock(&m->lock);
    struct mem_rec *rec = find_name(m, name);
    if (rec) {
        *id = rec->id;
        rec_drop_name(rec);
    }
    pthread_rwlock_unlock(&m->lock);
    return rec ? 0 : -ENOENT;
}

static int mem_rename(bf_db *db, const char *from, const char *to, unsigned flags,
                      uint64_t *replaced)
{
    struct mem_db *m = DB(db);
    int r = 0;
    pthread_rwlock_wrlock(&m->lock);
    struct mem_rec *src = find_name(m, from), *dst = find_name(m, to);
    int64_t now = bf_now_ns();
    *replaced = 0;
    if (!src) {
        r = -ENOENT;
    } else if (flags & BF_RENAME_EXCHANGE) {
        if (!dst) {
            r = -ENOENT;
        } else {
            strcpy(src->name, to);
            strcpy(dst->name, from);
            src->ctime_ns = dst->ctime_ns = now;
        }
    } else if (dst && (flags & BF_RENAME_NOREPLACE)) {
        r = -EEXIST;
    } else if (dst != src) { /* the same name: nothing to do */
        if (dst) {
            rec_drop_name(dst);
            *replaced = dst->id;
        }
        strcpy(src->name, to);
        src->ctime_ns = now;
    }
    pthread_rwlock_unlock(&m->lock);
    return r;
}

static int mem_setattr(bf_db *db, uint64_t id, const uint32_t *mode, const uint32_t *uid,
                       const uint32_t *gid, const int64_t *mtime_ns)
{
    struct mem_db *m = DB(db);
    pthread_rwlock_wrlock(&m->lock);
    struct mem_rec *rec = find_id(m, id);
    if (rec) {
        if (mode)
            rec->mode = *mode & 07777;
        if (uid)
            rec->uid = *uid;
        if (gid)
            rec->gid = *gid;
        if (mtime_ns)
            rec->mtime_ns = *mtime_ns;
        rec->ctime_ns = bf_now_ns();
    }
    pthread_rwlock_unlock(&m->lock);
    return rec ? 0 : -ENOENT;
}

static int mem_set_blksize(bf_db *db, uint64_t id, uint32_t blksize)
{
    struct mem_db *m = DB(db);
    int r = 0;
    pthread_rwlock_wrlock(&m->lock);
    struct mem_rec *rec = find_id(m, id);
    if (!rec) {
        r = -ENOENT;
    } else if (rec->size || rec->blocks.n) {
        r = -ENOTEMPTY;
    } else {
        rec->blksize = blksize;
        rec->ctime_ns = bf_now_ns();
    }
    pthread_rwlock_unlock(&m->lock);
    return r;
}

static int mem_purge(bf_db *db, uint64_t id)
{
    struct mem_db *m = DB(db);
    pthread_rwlock_wrlock(&m->lock);
    struct mem_rec *rec = find_id(m, id);
    if (rec && !rec->linked)
        rec_destroy(m, rec);
    pthread_rwlock_unlock(&m->lock);
    return 0;
}

static int mem_file_open(bf_db *db, uint64_t id, struct bf_fh **out)
{
    struct mem_db *m = DB(db);
    struct mem_fh *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    pthread_rwlock_rdlock(&m->lock);
    struct mem_rec *rec = find_id(m, id);
    if (!rec) {
        pthread_rwlock_unlock(&m->lock);
        free(h);
        return -ENOENT;
    }
    /* rec stays until the layer purges it, after our file_close. */
    h->base.file.blksize = rec->blksize;
    h->base.file.size = rec->size;
    h->db = m;
    h->rec = rec;
    h->trunc_to = UINT64_MAX;
    pthread_rwlock_unlock(&m->lock);
    *out = &h->base;
    return 0;
}

static void mem_file_close(struct bf_fh *fh)
{
    struct mem_fh *h = FH(fh);
    BF_ASSERT(h->pending.n == 0);
    vec_free(&h->pending);
    free(h);
}

static const struct bf_engine_ops mem_engine_ops = {
    .name = "memory",
    .close = mem_close,
    .list = mem_list,
    .lookup = mem_lookup,
    .getinfo = mem_getinfo,
    .create = mem_create,
    .setattr = mem_setattr,
    .unlink = mem_unlink,
    .rename = mem_rename,
    .set_blksize = mem_set_blksize,
    .purge = mem_purge,
    .file_open = mem_file_open,
    .file_close = mem_file_close,
    .loadblk = mem_loadblk,
    .next_stored = mem_next_stored,
    .stored_blocks = mem_stored_blocks,
    .begin = mem_begin,
    .storeblk = mem_storeblk,
    .truncate = mem_truncate,
    .commit = mem_commit,
    .abort = mem_abort,
};

int bf_db_is_memory(const bf_db *db)
{
    return db && db->ops == &mem_engine_ops;
}

int bf_mem_open(unsigned flags, bf_db **out)
{
    struct mem_db *m = calloc(1, sizeof(*m));
    if (!m || bf_counter_init(&m->held) < 0) {
        free(m);
        return -ENOMEM;
    }
    if (bf_db_init(&m->base, &mem_engine_ops, flags) < 0) {
        bf_counter_destroy(&m->held);
        free(m);
        return -ENOMEM;
    }
    pthread_rwlock_init(&m->lock, NULL);
    pthread_mutex_init(&m->flock, NULL);
    pthread_cond_init(&m->released, NULL);
    m->next_id = 1;
    *out = &m->base;
    return 0;
}
