/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: a bf_file kept in memory (mockfile.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mockfile.h"

/* One version of a block: its serial and content (NULL: a hole). */
struct mversion {
    uint64_t serial;
    void *data;
    const void *by; /* the mockfh whose commit made it (NULL: set up by the test) */
};

/* A committed block: its versions, oldest first. */
struct mblock {
    uint64_t blk;
    struct mversion *v;
    size_t n, cap;
};

struct mtable {
    struct mblock *v;
    size_t n, cap;
};

/* A pending store of a transaction (staged: of the staged content `token`,
 * which its commit uses up). */
struct mstore {
    uint64_t blk, base;
    void *data;
    bool staged;
    uint64_t token;
};

/* A staged content. */
struct mstaged {
    uint64_t token;
    void *data;
};

struct mfault {
    bool armed, sticky;
    int err;
    uint64_t blk;
    unsigned skip;
};

struct mgate {
    bool armed;
    uint64_t blk;
    unsigned held;
};

/* One bf_file on the store: a mount's view of the file, with its own
 * transaction. */
struct mockfh {
    bf_file file; /* first: the core's view */
    struct mockfile *m;
    bool in_txn;
    struct mstore *pending; /* stores of the open transaction */
    size_t npending, cappending;
    bool pending_trunc;
    uint64_t pending_nblocks;
    struct mockfh *next; /* the store's other files */
};

struct mockfile {
    struct mockfh main; /* first: mock_file(m) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct mtable committed;
    uint64_t committed_size;
    uint64_t serial;                  /* the last commit's */
    uint64_t size_serial;             /* the last commit that set the size */
    uint64_t content_serial;          /* the last commit of content or size */
    const void *size_by, *content_by; /* their mockfh */
    uint64_t oldest_kept;             /* loads as of an older serial get -ESTALE */
    struct mockfh *others;            /* mock_open_file */

    uint64_t calls[MOCK_NOPS];
    struct mfault fault[MOCK_NOPS];
    struct mgate gate[MOCK_NOPS];
    uint64_t *order; /* storeblk blocks of the last transaction */
    size_t norder, order_cap;

    struct bf_file_ops ops; /* every file's (mock_no_seek, mock_no_stage, mock_no_range) */
    struct mstaged *staged; /* the staging area */
    size_t nstaged, capstaged;
    uint64_t next_token;
    uint64_t range_bytes;
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "mockfile: out of memory\n");
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "mockfile: out of memory\n");
        abort();
    }
    return p;
}

static void *dup_block(const void *data, size_t len)
{
    void *c = xmalloc(len);
    memcpy(c, data, len);
    return c;
}

static struct mblock *tab_find(struct mtable *t, uint64_t blk)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].blk == blk)
            return &t->v[i];
    return NULL;
}

static struct mblock *tab_get(struct mtable *t, uint64_t blk)
{
    struct mblock *b = tab_find(t, blk);
    if (!b) {
        if (t->n == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 16;
            t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
        }
        b = &t->v[t->n++];
        memset(b, 0, sizeof(*b));
        b->blk = blk;
    }
    return b;
}

/* The current version of a block (NULL: never written). */
static struct mversion *cur(struct mblock *b)
{
    return b && b->n ? &b->v[b->n - 1] : NULL;
}

/* The newest version with serial <= at (NULL: none). */
static struct mversion *as_of(struct mblock *b, uint64_t at)
{
    for (size_t i = b ? b->n : 0; i-- > 0;)
        if (b->v[i].serial <= at)
            return &b->v[i];
    return NULL;
}

/* Add a version (takes data, NULL for a hole) made by `by`. */
static void add_version(struct mblock *b, uint64_t serial, void *data, const void *by)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 4;
        b->v = xrealloc(b->v, b->cap * sizeof(*b->v));
    }
    b->v[b->n].serial = serial;
    b->v[b->n].data = data;
    b->v[b->n].by = by;
    b->n++;
}

static void tab_clear(struct mtable *t)
{
    for (size_t i = 0; i < t->n; i++) {
        for (size_t j = 0; j < t->v[i].n; j++)
            free(t->v[i].v[j].data);
        free(t->v[i].v);
    }
    free(t->v);
    memset(t, 0, sizeof(*t));
}

/* A committed block holds data now (its current version is not a hole). */
static bool stored(struct mblock *b)
{
    struct mversion *v = cur(b);
    return v && v->data;
}

static struct mockfh *FH(bf_file *f)
{
    return (struct mockfh *)f;
}

static struct mockfile *M(bf_file *f)
{
    return FH(f)->m;
}

/* Count the call; return the injected error for it, or 0. Lock held. */
static int hit(struct mockfile *m, enum mock_op op, uint64_t blk)
{
    m->calls[op]++;
    struct mfault *f = &m->fault[op];
    if (!f->armed || (f->blk != MOCK_ANY && blk != MOCK_ANY && f->blk != blk))
        return 0;
    if (f->skip) {
        f->skip--;
        return 0;
    }
    if (!f->sticky)
        f->armed = false;
    return -f->err;
}

/* Hold the call at op's gate while it is armed for blk. Lock held. */
static void pass_gate(struct mockfile *m, enum mock_op op, uint64_t blk)
{
    struct mgate *g = &m->gate[op];
    if (!g->armed || (g->blk != MOCK_ANY && g->blk != blk))
        return;
    g->held++;
    pthread_cond_broadcast(&m->cv);
    while (g->armed)
        pthread_cond_wait(&m->cv, &m->mu);
    g->held--;
}

static int op_loadblk(bf_file *f, uint64_t blk, uint64_t at, void *buf, uint64_t *serial)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_LOADBLK, blk);
    if (r == 0 && at < m->oldest_kept)
        r = -ESTALE;
    /* Read before the gate: a load held at the gate returns the data of
     * when it started, so a test that changes the committed data meanwhile
     * gets a stale result, which the core must throw away if told to. */
    if (r == 0) {
        struct mversion *v = as_of(tab_find(&m->committed, blk), at);
        if (v && v->data)
            memcpy(buf, v->data, f->blksize);
        else
            memset(buf, 0, f->blksize);
        if (serial)
            *serial = v ? v->serial : 0;
    } else {
        memset(buf, 0xEE, f->blksize); /* garbage on error */
    }
    pass_gate(m, MOCK_LOADBLK, blk);
    pthread_mutex_unlock(&m->mu);
    return r;
}

static int op_begin(bf_file *f)
{
    struct mockfile *m = M(f);
    struct mockfh *h = FH(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_BEGIN, MOCK_ANY);
    if (r == 0 && h->in_txn)
        r = -EBUSY;
    if (r == 0) {
        h->in_txn = true;
        h->pending_trunc = false;
        m->norder = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return r;
}

static void must_be_in_txn(struct mockfh *h, const char *what)
{
    if (!h->in_txn) {
        fprintf(stderr, "mockfile: %s outside a transaction\n", what);
        abort();
    }
}

/* Put a pending store (a copy of data) for blk, replacing. Lock held. */
static void pending_put(struct mockfh *h, uint64_t blk, uint64_t base, void *copy, bool staged,
                        uint64_t token)
{
    for (size_t i = 0; i < h->npending; i++) {
        if (h->pending[i].blk == blk) {
            free(h->pending[i].data);
            h->pending[i] = (struct mstore){ blk, base, copy, staged, token };
            return;
        }
    }
    if (h->npending == h->cappending) {
        h->cappending = h->cappending ? 2 * h->cappending : 16;
        h->pending = xrealloc(h->pending, h->cappending * sizeof(*h->pending));
    }
    h->pending[h->npending++] = (struct mstore){ blk, base, copy, staged, token };
}

/* The staged content of token (abort if unknown: the core lost track of
 * one). Lock held. */
static size_t staged_find(struct mockfile *m, uint64_t token, const char *what)
{
    for (size_t i = 0; i < m->nstaged; i++)
        if (m->staged[i].token == token)
            return i;
    fprintf(stderr, "mockfile: %s of token %llu, which is not staged\n", what,
            (unsigned long long)token);
    abort();
}

static void staged_remove(struct mockfile *m, size_t i)
{
    free(m->staged[i].data);
    m->staged[i] = m->staged[--m->nstaged];
}

static void pending_remove_from(struct mockfh *h, uint64_t nblocks)
{
    size_t j = 0;
    for (size_t i = 0; i < h->npending; i++) {
        if (h->pending[i].blk >= nblocks)
            free(h->pending[i].data);
        else
            h->pending[j++] = h->pending[i];
    }
    h->npending = j;
}

static int op_storeblk(bf_file *f, uint64_t blk, const void *buf, uint64_t base)
{
    struct mockfile *m = M(f);
    struct mockfh *h = FH(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_STOREBLK, blk);
    must_be_in_txn(h, "storeblk");
    if (m->norder == m->order_cap) {
        m->order_cap = m->order_cap ? 2 * m->order_cap : 64;
        m->order = xrealloc(m->order, m->order_cap * sizeof(*m->order));
    }
    m->order[m->norder++] = blk;
    pthread_mutex_unlock(&m->mu);

    /* Copy the buffer outside the gate wait's lock release, so that the
     * data stored is the data of the call, read while it is held. */
    void *copy = xmalloc(f->blksize);
    pthread_mutex_lock(&m->mu);
    pass_gate(m, MOCK_STOREBLK, blk);
    pthread_mutex_unlock(&m->mu);
    memcpy(copy, buf, f->blksize);
    pthread_mutex_lock(&m->mu);
    if (r == 0)
        pending_put(h, blk, base, copy, false, 0);
    else
        free(copy);
    pthread_mutex_unlock(&m->mu);
    return r;
}

static int op_truncate(bf_file *f, uint64_t nblocks)
{
    struct mockfile *m = M(f);
    struct mockfh *h = FH(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_TRUNCATE, MOCK_ANY);
    must_be_in_txn(h, "truncate");
    if (r == 0) {
        /* Stores made before the truncate in this transaction go too. */
        pending_remove_from(h, nblocks);
        if (!h->pending_trunc || nblocks < h->pending_nblocks)
            h->pending_nblocks = nblocks;
        h->pending_trunc = true;
    }
    pthread_mutex_unlock(&m->mu);
    return r;
}

static void rollback(struct mockfh *h)
{
    pending_remove_from(h, 0);
    h->pending_trunc = false;
    h->in_txn = false;
}

/* Whether a commit of serial s by `by` is one the committing file h has
 * not seen after `base`: another file's (another mount's) commit, newer
 * than base. A mount sees its own commits. */
static bool unseen(uint64_t s, const void *by, const struct mockfh *h, uint64_t base)
{
    return s > base && by != h;
}

/* The conflict check of a commit (bigfile.h); calls req->conflict for each
 * conflict and returns how many. Lock held. */
static unsigned check_conflicts(struct mockfile *m, struct mockfh *h,
                                const struct bf_commit_req *req)
{
    unsigned n = 0;
    void (*cb)(void *, uint64_t) = req->conflict;
    if (req->flags & BF_COMMIT_OVERWRITE)
        return 0;
    bool file_changed = (req->flags & BF_COMMIT_FILE_CONFLICTS) &&
                        unseen(m->content_serial, m->content_by, h, req->file_base);
    for (size_t i = 0; i < h->npending; i++) {
        struct mversion *v = cur(tab_find(&m->committed, h->pending[i].blk));
        if (file_changed || (v && unseen(v->serial, v->by, h, h->pending[i].base))) {
            n++;
            if (cb)
                cb(req->arg, h->pending[i].blk);
        }
    }
    if (h->pending_trunc) {
        for (size_t i = 0; i < m->committed.n; i++) {
            struct mblock *b = &m->committed.v[i];
            if (b->blk >= h->pending_nblocks &&
                unseen(cur(b)->serial, cur(b)->by, h, req->size_base)) {
                n++;
                if (cb)
                    cb(req->arg, b->blk);
            }
        }
    }
    if ((req->size_set || h->pending_trunc) &&
        unseen(m->size_serial, m->size_by, h, req->size_base)) {
        n++;
        if (cb)
            cb(req->arg, BF_CONFLICT_SIZE);
    }
    return n;
}

static int op_commit(bf_file *f, const struct bf_commit_req *req, uint64_t *serial)
{
    struct mockfile *m = M(f);
    struct mockfh *h = FH(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_COMMIT, MOCK_ANY);
    must_be_in_txn(h, "commit");
    /* Held before anything is applied: the transaction stays open. */
    pass_gate(m, MOCK_COMMIT, MOCK_ANY);
    if (r == 0 && check_conflicts(m, h, req) > 0)
        r = -ESTALE;
    if (r == 0) {
        uint64_t s = ++m->serial;
        if (h->pending_trunc) {
            for (size_t i = 0; i < m->committed.n; i++) {
                struct mblock *b = &m->committed.v[i];
                if (b->blk >= h->pending_nblocks && stored(b))
                    add_version(b, s, NULL, h); /* dropped: a hole from now on */
            }
        }
        for (size_t i = 0; i < h->npending; i++) {
            add_version(tab_get(&m->committed, h->pending[i].blk), s, h->pending[i].data, h);
            h->pending[i].data = NULL; /* the version owns it */
            if (h->pending[i].staged)  /* used up */
                staged_remove(m, staged_find(m, h->pending[i].token, "commit"));
        }
        if (req->size_set || h->pending_trunc) {
            m->committed_size = req->size;
            m->size_serial = s;
            m->size_by = h;
        }
        m->content_serial = s;
        m->content_by = h;
        if (serial)
            *serial = s;
    }
    rollback(h); /* closes the transaction, either way */
    pthread_mutex_unlock(&m->mu);
    return r;
}

static void op_abort(bf_file *f)
{
    struct mockfile *m = M(f);
    struct mockfh *h = FH(f);
    pthread_mutex_lock(&m->mu);
    m->calls[MOCK_ABORT]++;
    must_be_in_txn(h, "abort");
    rollback(h);
    pthread_mutex_unlock(&m->mu);
}

static int op_next_stored(bf_file *f, uint64_t from, uint64_t *blk)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_NEXT_STORED, from);
    if (r == 0) {
        /* Answer first, then the gate: a held call returns the answer of
         * when it started (like loadblk). */
        uint64_t best = UINT64_MAX;
        for (size_t i = 0; i < m->committed.n; i++)
            if (stored(&m->committed.v[i]) && m->committed.v[i].blk >= from &&
                m->committed.v[i].blk < best)
                best = m->committed.v[i].blk;
        if (best == UINT64_MAX)
            r = -ENXIO;
        else
            *blk = best;
    }
    pass_gate(m, MOCK_NEXT_STORED, from);
    pthread_mutex_unlock(&m->mu);
    return r;
}

static uint64_t count_stored(struct mockfile *m)
{
    uint64_t n = 0;
    for (size_t i = 0; i < m->committed.n; i++)
        n += stored(&m->committed.v[i]);
    return n;
}

static int op_stored_blocks(bf_file *f, uint64_t *n)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_STORED_BLOCKS, MOCK_ANY);
    if (r == 0)
        *n = count_stored(m);
    pass_gate(m, MOCK_STORED_BLOCKS, MOCK_ANY); /* answer of when it started */
    pthread_mutex_unlock(&m->mu);
    return r;
}

static int op_loadblk_range(bf_file *f, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                            void *buf, uint64_t *serial)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    if (len == 0 || off + (uint64_t)len > f->blksize) {
        fprintf(stderr, "mockfile: loadblk_range of [%u, +%u) of a block of %u\n", off, len,
                f->blksize);
        abort();
    }
    int r = hit(m, MOCK_LOADBLK_RANGE, blk);
    if (r == 0 && at < m->oldest_kept)
        r = -ESTALE;
    if (r == 0) { /* read before the gate, as loadblk */
        struct mversion *v = as_of(tab_find(&m->committed, blk), at);
        if (v && v->data)
            memcpy(buf, (char *)v->data + off, len);
        else
            memset(buf, 0, len);
        if (serial)
            *serial = v ? v->serial : 0;
        m->range_bytes += len;
    } else {
        memset(buf, 0xEE, len);
    }
    pass_gate(m, MOCK_LOADBLK_RANGE, blk);
    pthread_mutex_unlock(&m->mu);
    return r;
}

static int op_stage(bf_file *f, uint64_t blk, const void *buf, uint64_t *token)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_STAGE, blk);
    pass_gate(m, MOCK_STAGE, blk);
    if (r == 0) {
        /* The buffer is read after the gate: a change of it while the
         * stage is held would show. */
        if (m->nstaged == m->capstaged) {
            m->capstaged = m->capstaged ? 2 * m->capstaged : 16;
            m->staged = xrealloc(m->staged, m->capstaged * sizeof(*m->staged));
        }
        *token = ++m->next_token;
        m->staged[m->nstaged++] = (struct mstaged){ *token, dup_block(buf, f->blksize) };
    }
    pthread_mutex_unlock(&m->mu);
    return r;
}

static int op_unstage(bf_file *f, uint64_t token, void *buf)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_UNSTAGE, MOCK_ANY);
    size_t i = staged_find(m, token, "unstage");
    if (r == 0)
        memcpy(buf, m->staged[i].data, f->blksize);
    pass_gate(m, MOCK_UNSTAGE, MOCK_ANY);
    pthread_mutex_unlock(&m->mu);
    return r;
}

static void op_stage_drop(bf_file *f, uint64_t token)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    m->calls[MOCK_STAGE_DROP]++;
    staged_remove(m, staged_find(m, token, "stage_drop"));
    pthread_mutex_unlock(&m->mu);
}

static int op_storeblk_staged(bf_file *f, uint64_t blk, uint64_t token, uint64_t base)
{
    struct mockfile *m = M(f);
    struct mockfh *h = FH(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_STOREBLK_STAGED, blk);
    must_be_in_txn(h, "storeblk_staged");
    size_t i = staged_find(m, token, "storeblk_staged");
    if (m->norder == m->order_cap) {
        m->order_cap = m->order_cap ? 2 * m->order_cap : 64;
        m->order = xrealloc(m->order, m->order_cap * sizeof(*m->order));
    }
    m->order[m->norder++] = blk;
    if (r == 0)
        pending_put(h, blk, base, dup_block(m->staged[i].data, f->blksize), true, token);
    pthread_mutex_unlock(&m->mu);
    return r;
}

static const struct bf_file_ops mock_ops = {
    .next_stored = op_next_stored,
    .stored_blocks = op_stored_blocks,
    .loadblk = op_loadblk,
    .begin = op_begin,
    .storeblk = op_storeblk,
    .truncate = op_truncate,
    .commit = op_commit,
    .abort = op_abort,
    .loadblk_range = op_loadblk_range,
    .stage = op_stage,
    .unstage = op_unstage,
    .stage_drop = op_stage_drop,
    .storeblk_staged = op_storeblk_staged,
};

struct mockfile *mock_new(uint32_t blksize, uint64_t size)
{
    struct mockfile *m = xmalloc(sizeof(*m));
    memset(m, 0, sizeof(*m));
    m->ops = mock_ops;
    m->main.file.ops = &m->ops;
    m->main.file.blksize = blksize;
    m->main.file.size = size;
    m->main.m = m;
    m->committed_size = size;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    return m;
}

static void mockfh_release(struct mockfh *h)
{
    pending_remove_from(h, 0);
    free(h->pending);
}

void mock_free(struct mockfile *m)
{
    if (!m)
        return;
    while (m->others) {
        struct mockfh *h = m->others;
        m->others = h->next;
        mockfh_release(h);
        free(h);
    }
    mockfh_release(&m->main);
    tab_clear(&m->committed);
    free(m->order);
    while (m->nstaged)
        staged_remove(m, 0);
    free(m->staged);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

bf_file *mock_file(struct mockfile *m)
{
    return &m->main.file;
}

bf_file *mock_open_file(struct mockfile *m)
{
    struct mockfh *h = xmalloc(sizeof(*h));
    memset(h, 0, sizeof(*h));
    pthread_mutex_lock(&m->mu);
    h->file.ops = m->main.file.ops;
    h->file.blksize = m->main.file.blksize;
    h->file.size = m->committed_size;
    h->file.serial = m->serial;
    h->m = m;
    h->next = m->others;
    m->others = h;
    pthread_mutex_unlock(&m->mu);
    return &h->file;
}

uint64_t mock_serial(struct mockfile *m)
{
    pthread_mutex_lock(&m->mu);
    uint64_t s = m->serial;
    pthread_mutex_unlock(&m->mu);
    return s;
}

uint64_t mock_block_serial(struct mockfile *m, uint64_t blk)
{
    pthread_mutex_lock(&m->mu);
    struct mversion *v = cur(tab_find(&m->committed, blk));
    uint64_t s = v ? v->serial : 0;
    pthread_mutex_unlock(&m->mu);
    return s;
}

void mock_get_block_at(struct mockfile *m, uint64_t blk, uint64_t at, void *out)
{
    pthread_mutex_lock(&m->mu);
    struct mversion *v = as_of(tab_find(&m->committed, blk), at);
    if (v && v->data)
        memcpy(out, v->data, m->main.file.blksize);
    else
        memset(out, 0, m->main.file.blksize);
    pthread_mutex_unlock(&m->mu);
}

void mock_forget_before(struct mockfile *m, uint64_t serial)
{
    pthread_mutex_lock(&m->mu);
    m->oldest_kept = serial;
    pthread_mutex_unlock(&m->mu);
}

void mock_pattern(void *buf, size_t len, unsigned seed, uint64_t base)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        uint64_t x = (base + i) * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull + seed;
        x ^= x >> 29;
        p[i] = (unsigned char)(x ^ (x >> 17) ^ (x >> 41));
    }
}

void mock_set_block(struct mockfile *m, uint64_t blk, unsigned seed)
{
    void *buf = xmalloc(m->main.file.blksize);
    mock_pattern(buf, m->main.file.blksize, seed, blk * m->main.file.blksize);
    mock_put_block(m, blk, buf);
    free(buf);
}

void mock_put_block(struct mockfile *m, uint64_t blk, const void *data)
{
    pthread_mutex_lock(&m->mu);
    struct mblock *b = tab_get(&m->committed, blk);
    struct mversion *v = cur(b);
    /* Underneath the versions: the current one changes in place (or a
     * first one appears as of serial 0), as a store changed behind the
     * protocol's back would. */
    if (v) {
        free(v->data);
        v->data = dup_block(data, m->main.file.blksize);
    } else {
        add_version(b, 0, dup_block(data, m->main.file.blksize), NULL);
    }
    pthread_mutex_unlock(&m->mu);
}

void mock_get_block(struct mockfile *m, uint64_t blk, void *out)
{
    mock_get_block_at(m, blk, UINT64_MAX, out);
}

bool mock_has_block(struct mockfile *m, uint64_t blk)
{
    pthread_mutex_lock(&m->mu);
    bool has = stored(tab_find(&m->committed, blk));
    pthread_mutex_unlock(&m->mu);
    return has;
}

uint64_t mock_nblocks(struct mockfile *m)
{
    pthread_mutex_lock(&m->mu);
    uint64_t n = count_stored(m);
    pthread_mutex_unlock(&m->mu);
    return n;
}

uint64_t mock_committed_size(struct mockfile *m)
{
    pthread_mutex_lock(&m->mu);
    uint64_t s = m->committed_size;
    pthread_mutex_unlock(&m->mu);
    return s;
}

uint64_t mock_calls(struct mockfile *m, enum mock_op op)
{
    pthread_mutex_lock(&m->mu);
    uint64_t n = m->calls[op];
    pthread_mutex_unlock(&m->mu);
    return n;
}

size_t mock_store_order(struct mockfile *m, uint64_t *blks, size_t max)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->norder;
    for (size_t i = 0; i < n && i < max; i++)
        blks[i] = m->order[i];
    pthread_mutex_unlock(&m->mu);
    return n;
}

void mock_fail(struct mockfile *m, enum mock_op op, int err, uint64_t blk, unsigned skip,
               bool sticky)
{
    pthread_mutex_lock(&m->mu);
    m->fault[op] =
        (struct mfault){ .armed = true, .sticky = sticky, .err = err, .blk = blk, .skip = skip };
    pthread_mutex_unlock(&m->mu);
}

void mock_clear_faults(struct mockfile *m)
{
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < MOCK_NOPS; i++)
        m->fault[i].armed = false;
    pthread_mutex_unlock(&m->mu);
}

void mock_gate(struct mockfile *m, enum mock_op op, uint64_t blk)
{
    pthread_mutex_lock(&m->mu);
    m->gate[op].armed = true;
    m->gate[op].blk = blk;
    pthread_mutex_unlock(&m->mu);
}

bool mock_gate_wait(struct mockfile *m, enum mock_op op, unsigned n, unsigned timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&m->mu);
    bool ok = true;
    while (m->gate[op].held < n) {
        if (pthread_cond_timedwait(&m->cv, &m->mu, &dl) == ETIMEDOUT) {
            ok = m->gate[op].held >= n;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return ok;
}

void mock_gate_release(struct mockfile *m, enum mock_op op)
{
    pthread_mutex_lock(&m->mu);
    m->gate[op].armed = false;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

unsigned mock_gate_held(struct mockfile *m, enum mock_op op)
{
    pthread_mutex_lock(&m->mu);
    unsigned n = m->gate[op].held;
    pthread_mutex_unlock(&m->mu);
    return n;
}

bool mock_in_txn(struct mockfile *m)
{
    pthread_mutex_lock(&m->mu);
    bool t = m->main.in_txn;
    for (struct mockfh *h = m->others; h; h = h->next)
        t = t || h->in_txn;
    pthread_mutex_unlock(&m->mu);
    return t;
}

void mock_no_seek(struct mockfile *m)
{
    m->ops.next_stored = NULL;
    m->ops.stored_blocks = NULL;
}

void mock_no_stage(struct mockfile *m)
{
    m->ops.stage = NULL;
    m->ops.unstage = NULL;
    m->ops.stage_drop = NULL;
    m->ops.storeblk_staged = NULL;
}

void mock_no_range(struct mockfile *m)
{
    m->ops.loadblk_range = NULL;
}

uint64_t mock_staged(struct mockfile *m)
{
    pthread_mutex_lock(&m->mu);
    uint64_t n = m->nstaged;
    pthread_mutex_unlock(&m->mu);
    return n;
}

uint64_t mock_range_bytes(struct mockfile *m)
{
    pthread_mutex_lock(&m->mu);
    uint64_t n = m->range_bytes;
    pthread_mutex_unlock(&m->mu);
    return n;
}
