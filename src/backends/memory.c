/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the memory engine. See memory.h; the rules every
 * engine leaves to the layer (open files, one transaction per file, the
 * hold's end at the last close) are in engine.h, the protocol in
 * docs/COHERENCE.md.
 *
 * A *store* is one database: files, their blocks' versions, the serial,
 * the commit log, the registered sessions and their holds. A mem_db is one
 * session on a store (a bf_db); "mem:LABEL" stores are found in the
 * process-wide registry, "mem:" ones are private.
 *
 * Versions (COHERENCE.md rules 2, 3): a commit that changes a block adds a
 * version (serial, session, content or hole) after the block's others; the
 * one before it is then superseded at that serial. When the committing
 * session is the only registered one ("alone") no other session can read
 * an older version: the commit frees the old versions at once (and a
 * block that becomes a hole keeps no version at all), and `collected`
 * moves to its serial. Otherwise the old versions stay until the trim
 * finds every registered session's applied serial at or past the serial
 * that superseded them. loadblk(at) answers the newest version <= at; when
 * there is none, or it was superseded at or before `at`, the answer may
 * have been freed: zeros if at >= collected, else -ESTALE.
 *
 * Locking (the engine's own; the layer's lock never nests with these):
 *  - registry_lock guards the registry and every store's attach count and
 *    exclusive flag. Taken before a store's lock, never inside it.
 *  - st->lock (rwlock) guards everything in the store: records, versions,
 *    the log, the serial, sessions and holds, and every mem_db's `applied`.
 *    loadblk and the other readers take it shared; every change takes it
 *    exclusive, and wakes the watchers (bf_db_kick: the watcher's leaf
 *    lock inside it).
 *  - m->flock (per session) guards the fault rules and release_gen. It is
 *    never held together with st->lock, and never across a sleep; a held
 *    call waits on m->released with it (the wait releases it). The count
 *    of held calls (m->held, a bf_counter) has a leaf lock of its own,
 *    taken inside flock.
 *  - A handle's pending stores (mem_fh.pending) are touched only by the
 *    thread driving its transaction (bigfile.h: one thread at a time), so
 *    they need no lock.
 *  - A handle's staged contents (mem_fh.staged: stage keeps a copy aside,
 *    storeblk_staged stores it without another copy, the commit moves it
 *    into the version) are guarded by its slock, a leaf taken inside
 *    st->lock or alone.
 *  - Call counters are atomics.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/engine.h"
#include "backends/memory.h"
#include "backends/ranges.h"

/* ---- types ---------------------------------------------------------------- */

/* One version of a block: data NULL is a hole. */
struct mver {
    uint64_t serial, session;
    void *data;
};

/* A block's versions, oldest first: v[n - 1] is the current one; n == 0
 * is a block with none (as if absent). */
struct mblock {
    uint64_t blk; /* first: bf_blk_lower */
    struct mver *v;
    size_t n, cap;
};

/* A file's blocks: sorted by blk. */
struct bmap {
    struct mblock *v;
    size_t n, cap;
};

/* One bigfile: linked (has a name) or nameless (unlinked, kept while some
 * session holds it). A purged record is out of the store's list; the last
 * handle open on it frees it. */
/* An extended attribute of a file: a list in name order. */
struct mem_xattr {
    struct mem_xattr *next;
    char *name;
    void *value;
    size_t len;
};

struct mem_rec {
    struct mem_rec *next; /* st->recs */
    uint64_t id;
    int linked;
    char name[BF_NAME_MAX + 1];
    uint32_t blksize;
    uint64_t size;
    uint32_t mode, uid, gid;
    int64_t mtime_ns, ctime_ns;
    uint64_t content_serial, content_session; /* last commit of content or size */
    uint64_t size_serial, size_session;       /* last commit that changed the size */
    struct bmap blocks;
    uint64_t nstored;  /* blocks whose current version has data */
    uint64_t *holders; /* registered sessions holding it */
    size_t nholders, capholders;
    unsigned nopen; /* handles open on it, of any session */
    bool purged;
    struct mem_xattr *xattrs; /* in name order */
};

struct mem_db;

/* One database. */
struct mem_store {
    struct mem_store *next; /* the registry (labelled stores only) */
    char *label;            /* NULL: private */
    unsigned nattached;     /* registry_lock: sessions on it */
    bool exclusive;         /* registry_lock: opened without BF_DB_SHARED */

    pthread_rwlock_t lock;
    struct mem_rec *recs;
    uint64_t next_id;
    uint64_t serial;           /* the last commit's */
    uint64_t log_trimmed;      /* log rows <= it are gone */
    uint64_t collected;        /* versions superseded at or before it may be gone */
    uint64_t nold;             /* versions kept that are not current */
    struct bf_commit_rec *log; /* rows [loghead, nlog), serial order; ranges and names owned */
    size_t loghead, nlog, caplog;
    struct mem_db *dbs; /* every session, for the kicks */
    uint64_t next_session;
};

struct mem_rule {
    struct bf_mem_fault f;
    uint64_t seen;  /* matching calls so far */
    uint64_t fired; /* of which failed or were held */
    bool released;  /* a hold rule after bf_mem_release: matches nothing */
};

#define MEM_NOPS 8 /* enum bf_mem_op values are 1..7 */

/* One session. */
struct mem_db {
    bf_db base;
    struct mem_store *st;
    struct mem_db *snext; /* st->dbs */
    bool registered;      /* a read-write session: its applied and holds count */
    uint64_t applied;     /* st->lock: as the last trim recorded it */

    pthread_mutex_t flock;
    struct mem_rule *rules;
    size_t nrules, caprules;
    uint64_t release_gen;    /* bumped by every release: a held call waits for a change */
    pthread_cond_t released; /* broadcast when release_gen changes */
    struct bf_counter held;  /* calls held now (its lock nests inside flock) */
    bool closing;            /* mem_close released the held calls (a caller bug) */

    uint64_t calls[MEM_NOPS]; /* atomics */
    uint64_t nstaged;         /* atomic: staged contents of the session's handles */
};

/* A pending store of a transaction (data NULL: a hole); staged: data is
 * the staged content `token`'s (not the store's: the commit takes it over
 * and uses the token up). */
struct pstore {
    uint64_t blk, base; /* blk first: bf_blk_lower */
    void *data;
    bool staged;
    uint64_t token;
};

/* A staged content (data NULL: zeros). */
struct mstaged {
    uint64_t token;
    void *data;
};

/* A handle. Its transaction state is the layer's (base.tx): pending and
 * trunc_to are meaningful while it is BF_TX_OPEN. */
struct mem_fh {
    struct bf_fh base; /* first: bf_fh* <-> mem_fh* */
    struct mem_db *db;
    struct mem_rec *rec;
    struct pstore *pending; /* stores of the open transaction, sorted by blk */
    size_t npending, cappending;
    uint64_t trunc_to;     /* smallest truncate of it; UINT64_MAX: none */
    pthread_mutex_t slock; /* guards the staged contents */
    struct mstaged *staged;
    size_t nstaged, capstaged;
    uint64_t next_token;
};

/* bf_blk_lower searches them by their first member */
_Static_assert(offsetof(struct mblock, blk) == 0, "mblock: blk first");
_Static_assert(offsetof(struct pstore, blk) == 0, "pstore: blk first");
_Static_assert(offsetof(struct bf_commit_rec, serial) == 0, "bf_commit_rec: serial first");

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mem_store *registry;

static struct mem_db *DB(bf_db *db)
{
    return (struct mem_db *)db;
}

static struct mem_fh *FH(struct bf_fh *fh)
{
    return (struct mem_fh *)fh;
}

/* ---- blocks and versions -------------------------------------------------- */

/* Index of the first block >= blk. */
static size_t bmap_lower(const struct bmap *bm, uint64_t blk)
{
    return bf_blk_lower(bm->v, bm->n, sizeof(bm->v[0]), blk);
}

static struct mblock *bmap_find(const struct bmap *bm, uint64_t blk)
{
    size_t i = bmap_lower(bm, blk);
    return i < bm->n && bm->v[i].blk == blk ? &bm->v[i] : NULL;
}

/* Block blk's entry, made (with no version) if missing; NULL when out of
 * memory. Pointers into bm are stale afterwards. */
static struct mblock *bmap_get(struct bmap *bm, uint64_t blk)
{
    size_t i = bmap_lower(bm, blk);
    if (i < bm->n && bm->v[i].blk == blk)
        return &bm->v[i];
    if (bm->n == bm->cap) {
        size_t cap = bm->cap ? 2 * bm->cap : 16;
        struct mblock *v = realloc(bm->v, cap * sizeof(*v));
        if (!v)
            return NULL;
        bm->v = v;
        bm->cap = cap;
    }
    memmove(&bm->v[i + 1], &bm->v[i], (bm->n - i) * sizeof(bm->v[0]));
    memset(&bm->v[i], 0, sizeof(bm->v[i]));
    bm->v[i].blk = blk;
    bm->n++;
    return &bm->v[i];
}

/* Drop the entries left with no version. */
static void bmap_compact(struct bmap *bm)
{
    size_t j = 0;
    for (size_t i = 0; i < bm->n; i++) {
        if (bm->v[i].n)
            bm->v[j++] = bm->v[i];
        else
            free(bm->v[i].v);
    }
    bm->n = j;
}

/* Room for `more` versions more. -ENOMEM. */
static int mb_reserve(struct mblock *mb, size_t more)
{
    if (mb->n + more <= mb->cap)
        return 0;
    size_t cap = mb->cap ? mb->cap : 2;
    while (cap < mb->n + more)
        cap *= 2;
    struct mver *v = realloc(mb->v, cap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    mb->v = v;
    mb->cap = cap;
    return 0;
}

static struct mver *mb_cur(const struct mblock *mb)
{
    return mb && mb->n ? &mb->v[mb->n - 1] : NULL;
}

/* Free the versions before the last `keep`; returns how many went. */
static size_t mb_drop_old(struct mblock *mb, size_t keep)
{
    if (mb->n <= keep)
        return 0;
    size_t drop = mb->n - keep;
    for (size_t i = 0; i < drop; i++)
        free(mb->v[i].data);
    memmove(mb->v, mb->v + drop, keep * sizeof(mb->v[0]));
    mb->n = keep;
    return drop;
}

static void bmap_free(struct bmap *bm)
{
    for (size_t i = 0; i < bm->n; i++) {
        mb_drop_old(&bm->v[i], 0);
        free(bm->v[i].v);
    }
    free(bm->v);
    memset(bm, 0, sizeof(*bm));
}

/* ---- records -------------------------------------------------------------- */

/* Caller holds st->lock (either way). */
static struct mem_rec *find_name(struct mem_store *st, const char *name)
{
    for (struct mem_rec *r = st->recs; r; r = r->next)
        if (r->linked && strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

/* Caller holds st->lock (either way). Finds nameless files too. */
static struct mem_rec *find_id(struct mem_store *st, uint64_t id)
{
    for (struct mem_rec *r = st->recs; r; r = r->next)
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

static void xattr_free(struct mem_xattr *x)
{
    free(x->name);
    free(x->value);
    free(x);
}

static void rec_free(struct mem_store *st, struct mem_rec *r)
{
    while (r->xattrs) {
        struct mem_xattr *x = r->xattrs;

        r->xattrs = x->next;
        xattr_free(x);
    }
    for (size_t i = 0; i < r->blocks.n; i++)
        st->nold -= r->blocks.v[i].n ? r->blocks.v[i].n - 1 : 0;
    bmap_free(&r->blocks);
    free(r->holders);
    free(r);
}

/* Take r out of the store (it is nameless and nobody holds it): freed now,
 * or by the last handle open on it. Caller holds st->lock exclusive. */
static void rec_purge(struct mem_store *st, struct mem_rec *r)
{
    for (struct mem_rec **pp = &st->recs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    r->purged = true;
    if (r->nopen == 0)
        rec_free(st, r);
}

/* Purge r if it is nameless and no session holds it. Caller holds st->lock
 * exclusive. */
static void rec_purge_if_unheld(struct mem_store *st, struct mem_rec *r)
{
    if (!r->linked && r->nholders == 0 && !r->purged)
        rec_purge(st, r);
}

static bool rec_held_by(const struct mem_rec *r, uint64_t session)
{
    for (size_t i = 0; i < r->nholders; i++)
        if (r->holders[i] == session)
            return true;
    return false;
}

static int rec_hold(struct mem_rec *r, uint64_t session)
{
    if (rec_held_by(r, session))
        return 0;
    if (r->nholders == r->capholders) {
        size_t cap = r->capholders ? 2 * r->capholders : 4;
        uint64_t *v = realloc(r->holders, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        r->holders = v;
        r->capholders = cap;
    }
    r->holders[r->nholders++] = session;
    return 0;
}

static void rec_unhold(struct mem_rec *r, uint64_t session)
{
    for (size_t i = 0; i < r->nholders; i++) {
        if (r->holders[i] == session) {
            r->holders[i] = r->holders[--r->nholders];
            return;
        }
    }
}

/* ---- the commit log --------------------------------------------------------- */

/* Room for one more row (so that a commit cannot fail after its checks).
 * Caller holds st->lock exclusive. -ENOMEM. */
static int log_reserve(struct mem_store *st)
{
    if (st->loghead > 0 && st->loghead >= st->nlog / 2) {
        memmove(st->log, st->log + st->loghead, (st->nlog - st->loghead) * sizeof(st->log[0]));
        st->nlog -= st->loghead;
        st->loghead = 0;
    }
    if (st->nlog < st->caplog)
        return 0;
    size_t cap = st->caplog ? 2 * st->caplog : 64;
    struct bf_commit_rec *v = realloc(st->log, cap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    st->log = v;
    st->caplog = cap;
    return 0;
}

static void log_row_free(struct bf_commit_rec *rec)
{
    free((void *)rec->write.ranges);
    free((void *)rec->name);
    free((void *)rec->name2);
}

/* The next serial: caller holds st->lock exclusive, has reserved a log row
 * and commits (nothing fails after this). */
static uint64_t next_serial(struct mem_store *st)
{
    return ++st->serial;
}

/* Append row rec (its strings and ranges are taken; room reserved) and wake
 * every session's watcher. Caller holds st->lock exclusive. */
static void log_push(struct mem_store *st, const struct bf_commit_rec *rec)
{
    BF_ASSERT(st->nlog < st->caplog && rec->serial == st->serial);
    st->log[st->nlog++] = *rec;
    for (struct mem_db *m = st->dbs; m; m = m->snext)
        bf_db_kick(&m->base);
}

/* A namespace commit's row: kind, file, names copied. NULL names: none.
 * Returns 0 or -ENOMEM (nothing to free then). */
static int ns_row(struct bf_commit_rec *rec, enum bf_commit_kind kind, uint64_t session,
                  uint64_t file, const char *name, const char *name2)
{
    memset(rec, 0, sizeof(*rec));
    rec->kind = kind;
    rec->session = session;
    rec->file = file;
    rec->time_ns = bf_now_ns();
    rec->write.trunc = UINT64_MAX;
    if (name && !(rec->name = strdup(name)))
        return -ENOMEM;
    if (name2 && !(rec->name2 = strdup(name2))) {
        log_row_free(rec);
        return -ENOMEM;
    }
    return 0;
}

/* ---- faults --------------------------------------------------------------- */

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
        int ranged = (op == BF_MEM_LOADBLK || op == BF_MEM_STOREBLK || op == BF_MEM_STAGE);
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
    if (fault->op < BF_MEM_LOADBLK || fault->op > BF_MEM_UNSTAGE || fault->err < 0 ||
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
    if (!bf_db_is_memory(db) || op < BF_MEM_LOADBLK || op > BF_MEM_UNSTAGE)
        return 0;
    return __atomic_load_n(&DB(db)->calls[op], __ATOMIC_RELAXED);
}

/* What bf_mem_blocks and bf_mem_versions count. */
static uint64_t count_of(bf_db *db, uint64_t id, bool versions)
{
    if (!bf_db_is_memory(db))
        return 0;
    struct mem_store *st = DB(db)->st;
    uint64_t n = 0;
    pthread_rwlock_rdlock(&st->lock);
    struct mem_rec *rec = find_id(st, id);
    if (rec && !versions)
        n = rec->nstored;
    for (size_t i = 0; rec && versions && i < rec->blocks.n; i++)
        n += rec->blocks.v[i].n;
    pthread_rwlock_unlock(&st->lock);
    return n;
}

uint64_t bf_mem_blocks(bf_db *db, uint64_t id)
{
    return count_of(db, id, false);
}

uint64_t bf_mem_versions(bf_db *db, uint64_t id)
{
    return count_of(db, id, true);
}

uint64_t bf_mem_log_rows(bf_db *db)
{
    if (!bf_db_is_memory(db))
        return 0;
    struct mem_store *st = DB(db)->st;
    pthread_rwlock_rdlock(&st->lock);
    uint64_t n = st->nlog - st->loghead;
    pthread_rwlock_unlock(&st->lock);
    return n;
}

uint64_t bf_mem_staged(bf_db *db)
{
    if (!bf_db_is_memory(db))
        return 0;
    return __atomic_load_n(&DB(db)->nstaged, __ATOMIC_RELAXED);
}

/* ---- the file operations (bigfile.h, through the layer) ------------------ */

/* Bytes [off, off + len) of block blk as of `at` into buf (loadblk and
 * loadblk_range). */
static int mem_load(struct bf_fh *fh, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                    void *buf, uint64_t *serial)
{
    struct mem_fh *h = FH(fh);
    struct mem_store *st = h->db->st;
    int r = fault_check(h->db, BF_MEM_LOADBLK, fh->id, blk);
    if (r < 0)
        return r;
    pthread_rwlock_rdlock(&st->lock);
    const struct mblock *mb = bmap_find(&h->rec->blocks, blk);
    const struct mver *v = NULL;
    for (size_t i = mb ? mb->n : 0; i-- > 0;) {
        if (mb->v[i].serial <= at) {
            v = &mb->v[i];
            break;
        }
    }
    if (!v && at < st->collected) {
        r = -ESTALE; /* the version as of `at` may have been freed */
    } else if (v && v->data) {
        memcpy(buf, (const char *)v->data + off, len);
        *serial = v->serial;
    } else {
        memset(buf, 0, len); /* a hole, or never stored */
        *serial = v ? v->serial : 0;
    }
    pthread_rwlock_unlock(&st->lock);
    return r;
}

static int mem_loadblk(struct bf_fh *fh, uint64_t blk, uint64_t at, void *buf, uint64_t *serial)
{
    return mem_load(fh, blk, at, 0, fh->file.blksize, buf, serial);
}

static int mem_loadblk_range(struct bf_fh *fh, uint64_t blk, uint64_t at, uint32_t off,
                             uint32_t len, void *buf, uint64_t *serial)
{
    return mem_load(fh, blk, at, off, len, buf, serial);
}

/* ---- staging ---------------------------------------------------------------- */

/* The index of staged content token of h, or SIZE_MAX (a caller bug,
 * logged). slock held. */
static size_t staged_find(struct mem_fh *h, uint64_t token)
{
    for (size_t i = 0; i < h->nstaged; i++)
        if (h->staged[i].token == token)
            return i;
    (void)BF_CHECK(false, "file %llu: no staged content %llu", (unsigned long long)h->base.id,
                   (unsigned long long)token);
    return SIZE_MAX;
}

/* Forget staged content i of h (its data is the caller's now). slock held. */
static void staged_forget(struct mem_fh *h, size_t i)
{
    h->staged[i] = h->staged[--h->nstaged];
    __atomic_sub_fetch(&h->db->nstaged, 1, __ATOMIC_RELAXED);
}

static int mem_stage(struct bf_fh *fh, uint64_t blk, const void *buf, uint64_t *token)
{
    struct mem_fh *h = FH(fh);
    uint32_t bs = fh->file.blksize;
    int r = fault_check(h->db, BF_MEM_STAGE, fh->id, blk);
    if (r < 0)
        return r;
    void *data = NULL; /* zeros: nothing to keep */
    if (!bf_all_zero(buf, bs)) {
        data = malloc(bs);
        if (!data)
            return -ENOMEM;
        memcpy(data, buf, bs);
    }
    pthread_mutex_lock(&h->slock);
    if (h->nstaged == h->capstaged) {
        size_t cap = h->capstaged ? 2 * h->capstaged : 16;
        struct mstaged *v = realloc(h->staged, cap * sizeof(*v));
        if (!v) {
            pthread_mutex_unlock(&h->slock);
            free(data);
            return -ENOMEM;
        }
        h->staged = v;
        h->capstaged = cap;
    }
    *token = ++h->next_token;
    h->staged[h->nstaged++] = (struct mstaged){ *token, data };
    __atomic_add_fetch(&h->db->nstaged, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&h->slock);
    return 0;
}

static int mem_unstage(struct bf_fh *fh, uint64_t token, void *buf)
{
    struct mem_fh *h = FH(fh);
    uint32_t bs = fh->file.blksize;
    int r = fault_check(h->db, BF_MEM_UNSTAGE, fh->id, 0);
    if (r < 0)
        return r;
    pthread_mutex_lock(&h->slock);
    size_t i = staged_find(h, token);
    if (i == SIZE_MAX)
        r = -EINVAL;
    else if (h->staged[i].data)
        memcpy(buf, h->staged[i].data, bs);
    else
        memset(buf, 0, bs);
    pthread_mutex_unlock(&h->slock);
    return r;
}

static void mem_stage_drop(struct bf_fh *fh, uint64_t token)
{
    struct mem_fh *h = FH(fh);
    pthread_mutex_lock(&h->slock);
    size_t i = staged_find(h, token);
    if (i != SIZE_MAX) {
        free(h->staged[i].data);
        staged_forget(h, i);
    }
    pthread_mutex_unlock(&h->slock);
}

static int mem_begin(struct bf_fh *fh)
{
    struct mem_fh *h = FH(fh);
    int r = fault_check(h->db, BF_MEM_BEGIN, fh->id, 0);
    if (r < 0)
        return r;
    /* Stores go aside until commit. */
    BF_ASSERT(h->npending == 0);
    h->trunc_to = UINT64_MAX;
    return 0;
}

/* Index of the first pending store >= blk. */
static size_t pending_lower(const struct mem_fh *h, uint64_t blk)
{
    return bf_blk_lower(h->pending, h->npending, sizeof(h->pending[0]), blk);
}

/* Free a pending store's data unless a staged content owns it. */
static void pending_free(struct pstore *p)
{
    if (!p->staged)
        free(p->data);
    p->data = NULL;
}

/* Put pending store p (replacing one of the same block). -ENOMEM (p's
 * data is still the caller's). */
static int pending_put(struct mem_fh *h, const struct pstore *p)
{
    size_t i = pending_lower(h, p->blk);
    if (i < h->npending && h->pending[i].blk == p->blk) {
        pending_free(&h->pending[i]); /* stored twice: the last wins */
        h->pending[i] = *p;
        return 0;
    }
    if (h->npending == h->cappending) {
        size_t cap = h->cappending ? 2 * h->cappending : 16;
        struct pstore *v = realloc(h->pending, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        h->pending = v;
        h->cappending = cap;
    }
    memmove(&h->pending[i + 1], &h->pending[i], (h->npending - i) * sizeof(h->pending[0]));
    h->pending[i] = *p;
    h->npending++;
    return 0;
}

static int mem_storeblk(struct bf_fh *fh, uint64_t blk, const void *buf, uint64_t base)
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
    r = pending_put(h, &(struct pstore){ .blk = blk, .base = base, .data = data });
    if (r < 0)
        free(data);
    return r;
}

static int mem_storeblk_staged(struct bf_fh *fh, uint64_t blk, uint64_t token, uint64_t base)
{
    struct mem_fh *h = FH(fh);
    int r = fault_check(h->db, BF_MEM_STOREBLK, fh->id, blk);
    if (r < 0)
        return r;
    pthread_mutex_lock(&h->slock);
    size_t i = staged_find(h, token);
    void *data = i == SIZE_MAX ? NULL : h->staged[i].data;
    pthread_mutex_unlock(&h->slock);
    if (i == SIZE_MAX)
        return -EINVAL;
    /* The staged copy itself, no other: the commit takes it over. */
    return pending_put(
        h,
        &(struct pstore){ .blk = blk, .base = base, .data = data, .staged = true, .token = token });
}

/* Drop the pending stores of blocks >= from. */
static void pending_cut(struct mem_fh *h, uint64_t from)
{
    size_t i = pending_lower(h, from);
    for (size_t j = i; j < h->npending; j++)
        pending_free(&h->pending[j]);
    h->npending = i;
}

static int mem_truncate(struct bf_fh *fh, uint64_t nblocks)
{
    struct mem_fh *h = FH(fh);
    int r = fault_check(h->db, BF_MEM_TRUNCATE, fh->id, 0);
    if (r < 0)
        return r;
    pending_cut(h, nblocks); /* stores before the truncate go too */
    if (nblocks < h->trunc_to)
        h->trunc_to = nblocks;
    return 0;
}

/* Throw the pending stores away (the layer closes the transaction). */
static void mem_abort(struct bf_fh *fh)
{
    struct mem_fh *h = FH(fh);
    pending_cut(h, 0);
    free(h->pending);
    h->pending = NULL;
    h->cappending = 0;
    h->trunc_to = UINT64_MAX;
}

/* Conflicts found by a commit, reported once the store's lock is gone. */
struct conflicts {
    uint64_t *v;
    size_t n, named, cap; /* found; of which in v (out of memory: not named) */
};

static void conflict_add(struct conflicts *c, uint64_t blk)
{
    c->n++;
    if (c->named == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        uint64_t *v = realloc(c->v, cap * sizeof(*v));
        if (!v)
            return; /* still a conflict: counted, not named */
        c->v = v;
        c->cap = cap;
    }
    c->v[c->named++] = blk;
}

/* Whether a version (serial s, by session `by`) is a change the committing
 * session `me` has not seen after `base` (rule 2). */
static bool unseen(uint64_t s, uint64_t by, uint64_t me, uint64_t base)
{
    return s > base && by != me;
}

/* The conflict check of a commit (COHERENCE.md rule 2). Caller holds
 * st->lock. */
static void check_conflicts(struct mem_fh *h, const struct bf_commit_req *req, struct conflicts *c)
{
    struct mem_rec *rec = h->rec;
    uint64_t me = h->db->base.session;
    bool file_changed = (req->flags & BF_COMMIT_FILE_CONFLICTS) &&
                        unseen(rec->content_serial, rec->content_session, me, req->file_base);
    for (size_t i = 0; i < h->npending; i++) {
        const struct mver *v = mb_cur(bmap_find(&rec->blocks, h->pending[i].blk));
        if (file_changed || (v && unseen(v->serial, v->session, me, h->pending[i].base)))
            conflict_add(c, h->pending[i].blk);
    }
    if (h->trunc_to != UINT64_MAX) {
        for (size_t i = bmap_lower(&rec->blocks, h->trunc_to); i < rec->blocks.n; i++) {
            const struct mver *v = mb_cur(&rec->blocks.v[i]);
            if (v && unseen(v->serial, v->session, me, req->size_base))
                conflict_add(c, rec->blocks.v[i].blk);
        }
    }
    if ((req->size_set || h->trunc_to != UINT64_MAX) &&
        unseen(rec->size_serial, rec->size_session, me, req->size_base))
        conflict_add(c, BF_CONFLICT_SIZE);
}

/* Make a new version of mb at serial s by `me` with data (NULL: a hole;
 * room reserved), or, alone, replace every version (a hole: none). Returns
 * whether the block's content changed (a new hole over a hole or nothing
 * is no change). Caller holds st->lock exclusive. */
static bool put_version(struct mem_store *st, struct mem_rec *rec, struct mblock *mb, uint64_t s,
                        uint64_t me, void *data, bool alone)
{
    struct mver *cur = mb_cur(mb);
    bool had = cur && cur->data;
    if (!data && !had)
        return false;
    rec->nstored += (data != NULL) - had;
    if (alone) {
        st->nold -= mb->n ? mb->n - 1 : 0;
        mb_drop_old(mb, 0);
        if (data)
            mb->v[mb->n++] = (struct mver){ s, me, data };
        return true;
    }
    st->nold += mb->n > 0;
    mb->v[mb->n++] = (struct mver){ s, me, data };
    return true;
}

/* Apply the transaction at serial s (every allocation made: nothing
 * fails): the truncate's blocks and the stores, merged in block order (a
 * store gives a dropped block content again). Adds the changed blocks to
 * rb. Caller holds st->lock exclusive. */
static void apply_tx(struct mem_fh *h, uint64_t s, bool alone, struct bf_rangebuf *rb)
{
    struct mem_store *st = h->db->st;
    struct mem_rec *rec = h->rec;
    struct bmap *bm = &rec->blocks;
    size_t p = 0, i = h->trunc_to == UINT64_MAX ? bm->n : bmap_lower(bm, h->trunc_to);
    for (;;) {
        uint64_t next_trunc = i < bm->n ? bm->v[i].blk : UINT64_MAX;
        uint64_t next_store = p < h->npending ? h->pending[p].blk : UINT64_MAX;
        if (next_trunc == UINT64_MAX && next_store == UINT64_MAX)
            break;
        uint64_t blk = next_trunc < next_store ? next_trunc : next_store;
        struct mblock *mb = bmap_find(bm, blk); /* made by reserve_tx for a store */
        void *data = NULL;
        if (blk == next_store) {
            struct pstore *ps = &h->pending[p++];
            data = ps->data;
            ps->data = NULL; /* the version owns it */
            if (ps->staged) {
                /* The staged content is used up: the version has it. */
                pthread_mutex_lock(&h->slock);
                size_t k = staged_find(h, ps->token);
                if (k != SIZE_MAX)
                    staged_forget(h, k);
                pthread_mutex_unlock(&h->slock);
            }
        }
        if (blk == next_trunc)
            i++;
        if (put_version(st, rec, mb, s, h->db->base.session, data, alone))
            bf_ranges_add(rb, blk); /* room reserved: cannot fail */
        else
            free(data);
    }
    h->npending = 0;
    bmap_compact(bm);
}

/* Reserve what apply_tx needs: an entry and a version's room for every
 * stored block, a version's room for every block a truncate drops, the
 * ranges, a log row. -ENOMEM (then nothing visible changed: entries with
 * no version read as absent). Caller holds st->lock exclusive. */
static int reserve_tx(struct mem_fh *h, struct bf_rangebuf *rb)
{
    struct bmap *bm = &h->rec->blocks;
    size_t nchanged = h->npending;
    for (size_t p = 0; p < h->npending; p++) {
        struct mblock *mb = bmap_get(bm, h->pending[p].blk);
        if (!mb || mb_reserve(mb, 1) < 0)
            return -ENOMEM;
    }
    if (h->trunc_to != UINT64_MAX) {
        for (size_t i = bmap_lower(bm, h->trunc_to); i < bm->n; i++, nchanged++)
            if (mb_reserve(&bm->v[i], 1) < 0)
                return -ENOMEM;
    }
    if (nchanged) {
        rb->v = malloc(nchanged * sizeof(*rb->v));
        if (!rb->v)
            return -ENOMEM;
        rb->cap = nchanged;
    }
    return log_reserve(h->db->st);
}

static int mem_commit(struct bf_fh *fh, const struct bf_commit_req *req, uint64_t *serial)
{
    struct mem_fh *h = FH(fh);
    struct mem_db *m = h->db;
    struct mem_store *st = m->st;
    struct mem_rec *rec = h->rec;
    struct conflicts c = { 0 };
    struct bf_rangebuf rb = { 0 };
    int r = fault_check(m, BF_MEM_COMMIT, fh->id, 0);
    if (r < 0)
        goto out;
    pthread_rwlock_wrlock(&st->lock);
    if (!(req->flags & BF_COMMIT_OVERWRITE))
        check_conflicts(h, req, &c);
    r = c.n ? -ESTALE : reserve_tx(h, &rb);
    if (r < 0) {
        bmap_compact(&rec->blocks); /* entries made for nothing */
        pthread_rwlock_unlock(&st->lock);
        goto out;
    }
    /* The commit section: nothing fails from here on. */
    uint64_t s = next_serial(st), me = m->base.session;
    bool alone = true;
    for (struct mem_db *o = st->dbs; o; o = o->snext)
        alone = alone && (o == m || !o->registered);
    bool trunc = h->trunc_to != UINT64_MAX;
    apply_tx(h, s, alone, &rb);
    if (alone)
        st->collected = s; /* the versions it replaced are gone */
    if (req->size_set)
        rec->size = req->size;
    if (req->size_set || trunc) {
        rec->size_serial = s;
        rec->size_session = me;
    }
    rec->content_serial = s;
    rec->content_session = me;
    rec->mtime_ns = rec->ctime_ns = bf_now_ns();
    struct bf_commit_rec row = {
        .serial = s,
        .session = me,
        .kind = BF_COMMIT_WRITE,
        .file = rec->id,
        .time_ns = rec->mtime_ns,
        .write = { .serial = s,
                   .ranges = rb.v,
                   .nranges = rb.n,
                   .trunc = h->trunc_to,
                   .size_changed = req->size_set,
                   .size = req->size_set ? req->size : 0 },
    };
    rb.v = NULL; /* the row owns it */
    log_push(st, &row);
    pthread_rwlock_unlock(&st->lock);
    *serial = s;
out:
    mem_abort(fh); /* what is left: nothing after success, everything after a failure */
    if (r == -ESTALE && req->conflict)
        for (size_t i = 0; i < c.named; i++)
            req->conflict(req->arg, c.v[i]);
    free(c.v);
    bf_ranges_free(&rb);
    return r;
}

/* The blocks for next_stored and stored_blocks: current versions with
 * data. */
static int mem_next_stored(struct bf_fh *fh, uint64_t from, uint64_t *blk)
{
    struct mem_fh *h = FH(fh);
    struct mem_store *st = h->db->st;
    int r = -ENXIO;
    pthread_rwlock_rdlock(&st->lock);
    const struct bmap *bm = &h->rec->blocks;
    for (size_t i = bmap_lower(bm, from); i < bm->n; i++) {
        const struct mver *v = mb_cur(&bm->v[i]);
        if (v && v->data) {
            *blk = bm->v[i].blk;
            r = 0;
            break;
        }
    }
    pthread_rwlock_unlock(&st->lock);
    return r;
}

static int mem_stored_blocks(struct bf_fh *fh, uint64_t *n)
{
    struct mem_fh *h = FH(fh);
    struct mem_store *st = h->db->st;
    pthread_rwlock_rdlock(&st->lock);
    *n = h->rec->nstored;
    pthread_rwlock_unlock(&st->lock);
    return 0;
}

/* ---- the database operations (engine.h) ---------------------------------- */

static int cmp_info_name(const void *a, const void *b)
{
    return strcmp(((const struct bf_fileinfo *)a)->name, ((const struct bf_fileinfo *)b)->name);
}

static int mem_list(bf_db *db, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg)
{
    struct mem_store *st = DB(db)->st;
    size_t n = 0, i = 0;
    /* Snapshot under the lock, call back without it: cb may call into db. */
    pthread_rwlock_rdlock(&st->lock);
    for (struct mem_rec *r = st->recs; r; r = r->next)
        n += r->linked;
    struct bf_fileinfo *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) {
        pthread_rwlock_unlock(&st->lock);
        return -ENOMEM;
    }
    for (struct mem_rec *r = st->recs; r; r = r->next)
        if (r->linked)
            fill_info(r, &v[i++]);
    pthread_rwlock_unlock(&st->lock);
    qsort(v, n, sizeof(*v), cmp_info_name);
    int ret = 0;
    for (i = 0; i < n && ret == 0; i++)
        ret = cb(arg, &v[i]);
    free(v);
    return ret;
}

/* Copy the record found by name (name != NULL) or id into *out. */
static int mem_find(struct mem_store *st, const char *name, uint64_t id, struct bf_fileinfo *out)
{
    int r = -ENOENT;
    pthread_rwlock_rdlock(&st->lock);
    struct mem_rec *rec = name ? find_name(st, name) : find_id(st, id);
    if (rec) {
        if (out)
            fill_info(rec, out);
        r = 0;
    }
    pthread_rwlock_unlock(&st->lock);
    return r;
}

static int mem_lookup(bf_db *db, const char *name, struct bf_fileinfo *out)
{
    return mem_find(DB(db)->st, name, 0, out);
}

static int mem_getinfo(bf_db *db, uint64_t id, struct bf_fileinfo *out)
{
    return mem_find(DB(db)->st, NULL, id, out);
}

static int mem_create(bf_db *db, const char *name, uint32_t blksize, uint64_t size, uint32_t mode,
                      uint32_t uid, uint32_t gid, struct bf_fileinfo *out)
{
    struct mem_store *st = DB(db)->st;
    struct bf_commit_rec row;
    struct mem_rec *rec = calloc(1, sizeof(*rec));
    if (!rec || ns_row(&row, BF_COMMIT_CREATE, db->session, 0, name, NULL) < 0) {
        free(rec);
        return -ENOMEM;
    }
    pthread_rwlock_wrlock(&st->lock);
    int r = find_name(st, name) ? -EEXIST : log_reserve(st);
    if (r < 0) {
        pthread_rwlock_unlock(&st->lock);
        log_row_free(&row);
        free(rec);
        return r;
    }
    uint64_t s = next_serial(st);
    rec->id = st->next_id++;
    rec->linked = 1;
    strcpy(rec->name, name);
    rec->blksize = blksize;
    rec->size = size;
    rec->mode = mode & 07777;
    rec->uid = uid;
    rec->gid = gid;
    rec->mtime_ns = rec->ctime_ns = row.time_ns;
    rec->content_serial = rec->size_serial = s;
    rec->content_session = rec->size_session = db->session;
    rec->next = st->recs;
    st->recs = rec;
    if (out)
        fill_info(rec, out);
    row.serial = s;
    row.file = rec->id;
    log_push(st, &row);
    pthread_rwlock_unlock(&st->lock);
    return 0;
}

/* Remove r's name (a commit: its serial taken, its row logged by the
 * caller): it stays, nameless, until purged. Caller holds st->lock
 * exclusive. */
static void rec_drop_name(struct mem_rec *r, int64_t now)
{
    r->linked = 0;
    r->name[0] = '\0';
    r->ctime_ns = now;
}

static int mem_unlink(bf_db *db, const char *name, uint64_t *id)
{
    struct mem_store *st = DB(db)->st;
    struct bf_commit_rec row;
    if (ns_row(&row, BF_COMMIT_UNLINK, db->session, 0, name, NULL) < 0)
        return -ENOMEM;
    pthread_rwlock_wrlock(&st->lock);
    struct mem_rec *rec = find_name(st, name);
    int r = rec ? log_reserve(st) : -ENOENT;
    if (r == 0) {
        row.serial = next_serial(st);
        row.file = *id = rec->id;
        rec_drop_name(rec, row.time_ns);
        log_push(st, &row);
    }
    pthread_rwlock_unlock(&st->lock);
    if (r < 0)
        log_row_free(&row);
    return r;
}

static int mem_rename(bf_db *db, const char *from, const char *to, unsigned flags,
                      uint64_t *replaced)
{
    struct mem_store *st = DB(db)->st;
    struct bf_commit_rec row;
    if (ns_row(&row, BF_COMMIT_RENAME, db->session, 0, from, to) < 0)
        return -ENOMEM;
    row.rename_flags = flags;
    pthread_rwlock_wrlock(&st->lock);
    struct mem_rec *src = find_name(st, from), *dst = find_name(st, to);
    int r = 0;
    *replaced = 0;
    if (!src || (!dst && (flags & BF_RENAME_EXCHANGE)))
        r = -ENOENT;
    else if (dst && (flags & BF_RENAME_NOREPLACE))
        r = -EEXIST;
    else if (dst == src)
        r = 1; /* the same file: nothing to do, no commit */
    else
        r = log_reserve(st);
    if (r == 0) {
        row.serial = next_serial(st);
        row.file = src->id;
        row.file2 = dst ? dst->id : 0;
        if (flags & BF_RENAME_EXCHANGE) {
            strcpy(src->name, to);
            strcpy(dst->name, from);
            src->ctime_ns = dst->ctime_ns = row.time_ns;
        } else {
            if (dst) {
                rec_drop_name(dst, row.time_ns);
                *replaced = dst->id;
            }
            strcpy(src->name, to);
            src->ctime_ns = row.time_ns;
        }
        log_push(st, &row);
    }
    pthread_rwlock_unlock(&st->lock);
    if (r != 0)
        log_row_free(&row);
    return r < 0 ? r : 0;
}

/* A namespace commit on file id by id (setattr, set_blksize): find the
 * record, reserve the row, run fn (which may refuse), log. */
static int ns_commit_id(bf_db *db, uint64_t id, enum bf_commit_kind kind,
                        int (*fn)(struct mem_rec *rec, const void *arg, int64_t now),
                        const void *arg)
{
    struct mem_store *st = DB(db)->st;
    struct bf_commit_rec row;
    if (ns_row(&row, kind, db->session, id, NULL, NULL) < 0)
        return -ENOMEM;
    pthread_rwlock_wrlock(&st->lock);
    struct mem_rec *rec = find_id(st, id);
    int r = rec ? log_reserve(st) : -ENOENT;
    if (r == 0)
        r = fn(rec, arg, row.time_ns);
    if (r == 0) {
        row.serial = next_serial(st);
        log_push(st, &row);
    }
    pthread_rwlock_unlock(&st->lock);
    if (r < 0)
        log_row_free(&row);
    return r;
}

struct attrs {
    const uint32_t *mode, *uid, *gid;
    const int64_t *mtime_ns;
};

static int set_attrs(struct mem_rec *rec, const void *arg, int64_t now)
{
    const struct attrs *a = arg;
    if (a->mode)
        rec->mode = *a->mode & 07777;
    if (a->uid)
        rec->uid = *a->uid;
    if (a->gid)
        rec->gid = *a->gid;
    if (a->mtime_ns)
        rec->mtime_ns = *a->mtime_ns;
    rec->ctime_ns = now;
    return 0;
}

static int mem_setattr(bf_db *db, uint64_t id, const uint32_t *mode, const uint32_t *uid,
                       const uint32_t *gid, const int64_t *mtime_ns)
{
    struct attrs a = { mode, uid, gid, mtime_ns };
    return ns_commit_id(db, id, BF_COMMIT_SETATTR, set_attrs, &a);
}

static int set_blksize(struct mem_rec *rec, const void *arg, int64_t now)
{
    if (rec->size || rec->nstored)
        return -ENOTEMPTY;
    if (rec->nholders)
        return -EBUSY; /* another session has it open */
    rec->blksize = *(const uint32_t *)arg;
    rec->ctime_ns = now;
    return 0;
}

static int mem_set_blksize(bf_db *db, uint64_t id, uint32_t blksize)
{
    return ns_commit_id(db, id, BF_COMMIT_SETBLKSIZE, set_blksize, &blksize);
}

/* ---- extended attributes (engine.h: no commit) ---- */

/* Where attribute `name` of rec is, or would be inserted: *pp points at
 * it (or at the first one after it). */
static struct mem_xattr **xattr_find(struct mem_rec *rec, const char *name, bool *found)
{
    struct mem_xattr **pp = &rec->xattrs;
    int c = 1;

    while (*pp && (c = strcmp((*pp)->name, name)) < 0)
        pp = &(*pp)->next;
    *found = *pp && c == 0;
    return pp;
}

static int mem_getxattr(bf_db *db, uint64_t id, const char *name, void **value, size_t *len)
{
    struct mem_store *st = DB(db)->st;
    struct mem_rec *rec;
    bool found = false;
    int r = 0;

    pthread_rwlock_rdlock(&st->lock);
    rec = find_id(st, id);
    struct mem_xattr **pp = rec ? xattr_find(rec, name, &found) : NULL;
    if (!found) {
        r = rec ? -ENODATA : -ENOENT;
    } else if (((*len = (*pp)->len)) && !(*value = malloc(*len))) {
        r = -ENOMEM;
    } else if (*len) {
        memcpy(*value, (*pp)->value, *len);
    }
    pthread_rwlock_unlock(&st->lock);
    return r;
}

static int mem_listxattr(bf_db *db, uint64_t id, char **names, size_t *len)
{
    struct mem_store *st = DB(db)->st;
    struct mem_rec *rec;
    size_t n = 0;
    int r = 0;

    pthread_rwlock_rdlock(&st->lock);
    rec = find_id(st, id);
    for (struct mem_xattr *x = rec ? rec->xattrs : NULL; x; x = x->next)
        n += strlen(x->name) + 1;
    if (!rec) {
        r = -ENOENT;
    } else if (n && !(*names = malloc(n))) {
        r = -ENOMEM;
    } else {
        char *p = *names;

        for (struct mem_xattr *x = rec->xattrs; x; x = x->next)
            p = stpcpy(p, x->name) + 1;
        *len = n;
    }
    pthread_rwlock_unlock(&st->lock);
    return r;
}

static int mem_setxattr(bf_db *db, uint64_t id, const char *name, const void *value, size_t len,
                        unsigned flags)
{
    struct mem_store *st = DB(db)->st;
    struct mem_xattr *x = calloc(1, sizeof(*x)), **pp;
    struct mem_rec *rec;
    bool found = false;
    int r = 0;

    if (!x || !(x->name = strdup(name)) || (len && !(x->value = malloc(len)))) {
        if (x)
            xattr_free(x);
        return -ENOMEM;
    }
    if (len)
        memcpy(x->value, value, len);
    x->len = len;
    pthread_rwlock_wrlock(&st->lock);
    rec = find_id(st, id);
    pp = rec ? xattr_find(rec, name, &found) : NULL;
    if (!rec)
        r = -ENOENT;
    else if (found && (flags & BF_XATTR_CREATE))
        r = -EEXIST;
    else if (!found && (flags & BF_XATTR_REPLACE))
        r = -ENODATA;
    if (r == 0) {
        x->next = found ? (*pp)->next : *pp;
        if (found)
            xattr_free(*pp);
        *pp = x;
        x = NULL;
    }
    pthread_rwlock_unlock(&st->lock);
    if (x)
        xattr_free(x);
    return r;
}

static int mem_removexattr(bf_db *db, uint64_t id, const char *name)
{
    struct mem_store *st = DB(db)->st;
    struct mem_rec *rec;
    bool found = false;
    int r = 0;

    pthread_rwlock_wrlock(&st->lock);
    rec = find_id(st, id);
    struct mem_xattr **pp = rec ? xattr_find(rec, name, &found) : NULL;
    if (!found) {
        r = rec ? -ENODATA : -ENOENT;
    } else {
        struct mem_xattr *x = *pp;

        *pp = x->next;
        xattr_free(x);
    }
    pthread_rwlock_unlock(&st->lock);
    return r;
}

static int mem_purge(bf_db *db, uint64_t id)
{
    struct mem_store *st = DB(db)->st;
    pthread_rwlock_wrlock(&st->lock);
    struct mem_rec *rec = find_id(st, id);
    if (rec)
        rec_purge_if_unheld(st, rec);
    pthread_rwlock_unlock(&st->lock);
    return 0;
}

static int mem_release(bf_db *db, uint64_t id)
{
    struct mem_store *st = DB(db)->st;
    pthread_rwlock_wrlock(&st->lock);
    struct mem_rec *rec = find_id(st, id);
    if (rec) {
        rec_unhold(rec, db->session);
        rec_purge_if_unheld(st, rec);
    }
    pthread_rwlock_unlock(&st->lock);
    return 0;
}

static int mem_file_open(bf_db *db, uint64_t id, bool hold, struct bf_fh **out)
{
    struct mem_store *st = DB(db)->st;
    struct mem_fh *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    pthread_rwlock_wrlock(&st->lock);
    struct mem_rec *rec = find_id(st, id);
    int r = !rec ? -ENOENT : hold ? rec_hold(rec, db->session) : 0;
    if (r < 0) {
        pthread_rwlock_unlock(&st->lock);
        free(h);
        return r;
    }
    rec->nopen++; /* rec stays allocated until our file_close */
    h->base.file.blksize = rec->blksize;
    h->base.file.size = rec->size;
    h->base.file.serial = st->serial;
    h->db = DB(db);
    h->rec = rec;
    h->trunc_to = UINT64_MAX;
    pthread_mutex_init(&h->slock, NULL);
    pthread_rwlock_unlock(&st->lock);
    *out = &h->base;
    return 0;
}

static void mem_file_close(struct bf_fh *fh)
{
    struct mem_fh *h = FH(fh);
    struct mem_store *st = h->db->st;
    BF_ASSERT(h->npending == 0);
    pthread_rwlock_wrlock(&st->lock);
    if (--h->rec->nopen == 0 && h->rec->purged)
        rec_free(st, h->rec); /* purged under us */
    pthread_rwlock_unlock(&st->lock);
    free(h->pending);
    /* Staged contents the core did not drop (it drops them all): gone with
     * the handle, as a session's are with the session. */
    while (h->nstaged) {
        free(h->staged[0].data);
        staged_forget(h, 0);
    }
    free(h->staged);
    pthread_mutex_destroy(&h->slock);
    free(h);
}

/* ---- the watcher's operations ---------------------------------------------- */

static int mem_log_read(bf_db *db, uint64_t after, size_t max,
                        int (*fn)(void *arg, const struct bf_commit_rec *rec), void *arg,
                        uint64_t *current, uint64_t *trimmed)
{
    struct mem_store *st = DB(db)->st;
    int r = 0;
    pthread_rwlock_rdlock(&st->lock);
    /* the serial is a row's first member */
    size_t lo = st->loghead + bf_blk_lower(st->log + st->loghead, st->nlog - st->loghead,
                                           sizeof(st->log[0]), after + 1);
    for (size_t i = lo; i < st->nlog && i - lo < max && r == 0; i++)
        r = fn(arg, &st->log[i]);
    *current = st->serial;
    *trimmed = st->log_trimmed;
    pthread_rwlock_unlock(&st->lock);
    return r;
}

static int mem_serial_now(bf_db *db, uint64_t *serial)
{
    struct mem_store *st = DB(db)->st;
    pthread_rwlock_rdlock(&st->lock);
    *serial = st->serial;
    pthread_rwlock_unlock(&st->lock);
    return 0;
}

/* Free the old versions superseded at or before `bound`. Caller holds
 * st->lock exclusive. */
static void collect_versions(struct mem_store *st, uint64_t bound)
{
    for (struct mem_rec *r = st->recs; r && st->nold; r = r->next) {
        for (size_t i = 0; i < r->blocks.n; i++) {
            struct mblock *mb = &r->blocks.v[i];
            size_t keep = mb->n;
            /* v[k] is superseded at v[k + 1].serial */
            while (keep > 1 && mb->v[mb->n - keep + 1].serial <= bound)
                keep--;
            st->nold -= mb_drop_old(mb, keep);
        }
    }
    if (bound > st->collected)
        st->collected = bound;
}

/* The housekeeping (COHERENCE.md rule 5.5): no session dies but by closing,
 * so there are no dead sessions' leftovers nor orphan uploads. */
static int mem_trim(bf_db *db, uint64_t applied, bool all)
{
    (void)all; /* it is quick */
    struct mem_db *m = DB(db);
    struct mem_store *st = m->st;
    pthread_rwlock_wrlock(&st->lock);
    m->applied = applied;
    uint64_t lowest = st->serial;
    for (struct mem_db *o = st->dbs; o; o = o->snext)
        if (o->registered && o->applied < lowest)
            lowest = o->applied;
    /* The log: up to the slowest session, and at most log_keep rows
     * beyond it. */
    uint64_t bound = lowest;
    if (st->serial > db->opt.log_keep && st->serial - db->opt.log_keep > bound)
        bound = st->serial - db->opt.log_keep;
    while (st->loghead < st->nlog && st->log[st->loghead].serial <= bound)
        log_row_free(&st->log[st->loghead++]);
    if (bound > st->log_trimmed)
        st->log_trimmed = bound;
    if (st->nold)
        collect_versions(st, lowest);
    for (struct mem_rec *r = st->recs, *next; r; r = next) {
        next = r->next;
        rec_purge_if_unheld(st, r);
    }
    pthread_rwlock_unlock(&st->lock);
    return 0;
}

/* ---- sessions: open and close ---------------------------------------------- */

static void store_free(struct mem_store *st)
{
    while (st->recs) {
        struct mem_rec *r = st->recs;
        st->recs = r->next;
        rec_free(st, r);
    }
    for (size_t i = st->loghead; i < st->nlog; i++)
        log_row_free(&st->log[i]);
    free(st->log);
    pthread_rwlock_destroy(&st->lock);
    free(st->label);
    free(st);
}

/* Find or make the store of label ("": a private one) and attach a session
 * to it, if the sharing rule allows (BF_DB_SHARED on both sides). */
static int store_attach(const char *label, unsigned flags, struct mem_store **out, char *errbuf,
                        size_t errlen)
{
    struct mem_store *st = NULL;
    pthread_mutex_lock(&registry_lock);
    for (st = label[0] ? registry : NULL; st; st = st->next)
        if (strcmp(st->label, label) == 0)
            break;
    if (st && (st->exclusive || !(flags & BF_DB_SHARED))) {
        pthread_mutex_unlock(&registry_lock);
        bf_errf(errbuf, errlen,
                "mem:%s: in use by another bigfilefs (mount every daemon with -o shared to share "
                "it)",
                label);
        return -EBUSY;
    }
    if (!st) {
        st = calloc(1, sizeof(*st));
        if (!st || (label[0] && !(st->label = strdup(label)))) {
            pthread_mutex_unlock(&registry_lock);
            free(st);
            return -ENOMEM;
        }
        pthread_rwlock_init(&st->lock, NULL);
        st->next_id = 1;
        st->next_session = 1;
        st->exclusive = !(flags & BF_DB_SHARED);
        if (label[0]) {
            st->next = registry;
            registry = st;
        }
    }
    st->nattached++;
    pthread_mutex_unlock(&registry_lock);
    *out = st;
    return 0;
}

static void store_detach(struct mem_store *st)
{
    pthread_mutex_lock(&registry_lock);
    bool last = --st->nattached == 0;
    if (last && st->label) {
        struct mem_store **pp = &registry;
        while (*pp != st)
            pp = &(*pp)->next;
        *pp = st->next;
    }
    pthread_mutex_unlock(&registry_lock);
    if (last)
        store_free(st);
}

static void mem_close(bf_db *db)
{
    struct mem_db *m = DB(db);
    struct mem_store *st = m->st;
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
    if (st) {
        /* Leave the store: our holds end (a caller that closed with files
         * open left them), and nothing kicks us any more. */
        pthread_rwlock_wrlock(&st->lock);
        for (struct mem_db **pp = &st->dbs; *pp; pp = &(*pp)->snext) {
            if (*pp == m) {
                *pp = m->snext;
                break;
            }
        }
        for (struct mem_rec *r = st->recs, *next; r && m->registered; r = next) {
            next = r->next;
            rec_unhold(r, db->session);
            rec_purge_if_unheld(st, r);
        }
        pthread_rwlock_unlock(&st->lock);
    }
    bf_db_fini(db);
    if (st)
        store_detach(st);
    free(m->rules);
    pthread_cond_destroy(&m->released);
    bf_counter_destroy(&m->held);
    pthread_mutex_destroy(&m->flock);
    free(m);
}

static const struct bf_engine_ops mem_engine_ops = {
    .name = "memory",
    .notifies = true,
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
    .release = mem_release,
    .loadblk = mem_loadblk,
    .next_stored = mem_next_stored,
    .stored_blocks = mem_stored_blocks,
    .begin = mem_begin,
    .storeblk = mem_storeblk,
    .truncate = mem_truncate,
    .commit = mem_commit,
    .abort = mem_abort,
    .loadblk_range = mem_loadblk_range,
    .stage = mem_stage,
    .unstage = mem_unstage,
    .stage_drop = mem_stage_drop,
    .storeblk_staged = mem_storeblk_staged,
    .changed = NULL, /* notifies */
    .log_read = mem_log_read,
    .serial_now = mem_serial_now,
    .trim = mem_trim,
    .getxattr = mem_getxattr,
    .listxattr = mem_listxattr,
    .setxattr = mem_setxattr,
    .removexattr = mem_removexattr,
};

int bf_db_is_memory(const bf_db *db)
{
    return db && db->ops == &mem_engine_ops;
}

int bf_mem_open(const char *label, unsigned flags, const struct bf_db_options *opt, bf_db **out,
                char *errbuf, size_t errlen)
{
    struct mem_db *m = calloc(1, sizeof(*m));
    if (!m || bf_counter_init(&m->held) < 0) {
        free(m);
        goto nomem;
    }
    if (bf_db_init(&m->base, &mem_engine_ops, flags, opt) < 0) {
        bf_counter_destroy(&m->held);
        free(m);
        goto nomem;
    }
    pthread_mutex_init(&m->flock, NULL);
    pthread_cond_init(&m->released, NULL);
    int r = store_attach(label, flags, &m->st, errbuf, errlen);
    if (r < 0) {
        bf_db_close(&m->base);
        return r;
    }
    /* Register the session (a read-only one only listens). */
    struct mem_store *st = m->st;
    pthread_rwlock_wrlock(&st->lock);
    m->registered = !(flags & BF_DB_RDONLY);
    if (m->registered)
        m->base.session = st->next_session++;
    m->base.start_serial = m->applied = st->serial;
    m->snext = st->dbs;
    st->dbs = m;
    pthread_rwlock_unlock(&st->lock);
    *out = &m->base;
    return 0;
nomem:
    bf_errf(errbuf, errlen, "mem:%s: cannot create memory database: %s", label, strerror(ENOMEM));
    return -ENOMEM;
}
