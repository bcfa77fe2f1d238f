/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: a bf_file kept in memory (mockfile.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mockfile.h"

struct mblock {
    uint64_t blk;
    void *data;
};

struct mtable {
    struct mblock *v;
    size_t n, cap;
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

struct mockfile {
    bf_file file; /* first: the core's view */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct mtable committed;
    uint64_t committed_size;

    bool in_txn;
    struct mtable pending; /* stores of the open transaction */
    bool pending_trunc;
    uint64_t pending_nblocks;

    uint64_t calls[MOCK_NOPS];
    struct mfault fault[MOCK_NOPS];
    struct mgate gate[MOCK_NOPS];
    uint64_t *order; /* storeblk blocks of the last transaction */
    size_t norder, order_cap;
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

static struct mblock *tab_find(struct mtable *t, uint64_t blk)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].blk == blk)
            return &t->v[i];
    return NULL;
}

/* Put a copy of data (len bytes) for blk, replacing. */
static void tab_put(struct mtable *t, uint64_t blk, const void *data, size_t len)
{
    struct mblock *b = tab_find(t, blk);
    if (!b) {
        if (t->n == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 16;
            struct mblock *v = realloc(t->v, t->cap * sizeof(*v));
            if (!v)
                abort();
            t->v = v;
        }
        b = &t->v[t->n++];
        b->blk = blk;
        b->data = xmalloc(len);
    }
    memcpy(b->data, data, len);
}

static void tab_remove_from(struct mtable *t, uint64_t nblocks)
{
    size_t j = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i].blk >= nblocks)
            free(t->v[i].data);
        else
            t->v[j++] = t->v[i];
    }
    t->n = j;
}

static void tab_clear(struct mtable *t)
{
    tab_remove_from(t, 0);
}

static struct mockfile *M(bf_file *f)
{
    return (struct mockfile *)f;
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

static int op_loadblk(bf_file *f, uint64_t blk, void *buf)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_LOADBLK, blk);
    /* Read before the gate: a load held at the gate returns the data of
     * when it started, so a test that changes the committed data meanwhile
     * gets a stale result, which the core must throw away if told to. */
    if (r == 0) {
        struct mblock *b = tab_find(&m->committed, blk);
        if (b)
            memcpy(buf, b->data, f->blksize);
        else
            memset(buf, 0, f->blksize);
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
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_BEGIN, MOCK_ANY);
    if (r == 0 && m->in_txn)
        r = -EBUSY;
    if (r == 0) {
        m->in_txn = true;
        m->pending_trunc = false;
        m->norder = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return r;
}

static int op_storeblk(bf_file *f, uint64_t blk, const void *buf)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_STOREBLK, blk);
    if (!m->in_txn) {
        fprintf(stderr, "mockfile: storeblk outside a transaction\n");
        abort();
    }
    if (m->norder == m->order_cap) {
        m->order_cap = m->order_cap ? 2 * m->order_cap : 64;
        uint64_t *o = realloc(m->order, m->order_cap * sizeof(*o));
        if (!o)
            abort();
        m->order = o;
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
        tab_put(&m->pending, blk, copy, f->blksize);
    pthread_mutex_unlock(&m->mu);
    free(copy);
    return r;
}

static int op_truncate(bf_file *f, uint64_t nblocks)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_TRUNCATE, MOCK_ANY);
    if (!m->in_txn) {
        fprintf(stderr, "mockfile: truncate outside a transaction\n");
        abort();
    }
    if (r == 0) {
        /* Stores made before the truncate in this transaction go too. */
        tab_remove_from(&m->pending, nblocks);
        if (!m->pending_trunc || nblocks < m->pending_nblocks)
            m->pending_nblocks = nblocks;
        m->pending_trunc = true;
    }
    pthread_mutex_unlock(&m->mu);
    return r;
}

static void rollback(struct mockfile *m)
{
    tab_clear(&m->pending);
    m->pending_trunc = false;
    m->in_txn = false;
}

static int op_commit(bf_file *f, uint64_t size)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_COMMIT, MOCK_ANY);
    if (!m->in_txn) {
        fprintf(stderr, "mockfile: commit outside a transaction\n");
        abort();
    }
    /* Held before anything is applied: the transaction stays open. */
    pass_gate(m, MOCK_COMMIT, MOCK_ANY);
    if (r == 0) {
        if (m->pending_trunc)
            tab_remove_from(&m->committed, m->pending_nblocks);
        for (size_t i = 0; i < m->pending.n; i++)
            tab_put(&m->committed, m->pending.v[i].blk, m->pending.v[i].data, f->blksize);
        m->committed_size = size;
    }
    rollback(m); /* closes the transaction, either way */
    pthread_mutex_unlock(&m->mu);
    return r;
}

static void op_abort(bf_file *f)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    m->calls[MOCK_ABORT]++;
    if (!m->in_txn) {
        fprintf(stderr, "mockfile: abort outside a transaction\n");
        abort();
    }
    rollback(m);
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
            if (m->committed.v[i].blk >= from && m->committed.v[i].blk < best)
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

static int op_stored_blocks(bf_file *f, uint64_t *n)
{
    struct mockfile *m = M(f);
    pthread_mutex_lock(&m->mu);
    int r = hit(m, MOCK_STORED_BLOCKS, MOCK_ANY);
    if (r == 0)
        *n = m->committed.n;
    pass_gate(m, MOCK_STORED_BLOCKS, MOCK_ANY); /* answer of when it started */
    pthread_mutex_unlock(&m->mu);
    return r;
}

/* The same without next_stored and stored_blocks (mock_no_seek). */
static const struct bf_file_ops mock_ops_noseek = {
    .loadblk = op_loadblk,
    .begin = op_begin,
    .storeblk = op_storeblk,
    .truncate = op_truncate,
    .commit = op_commit,
    .abort = op_abort,
};

static const struct bf_file_ops mock_ops = {
    .next_stored = op_next_stored,
    .stored_blocks = op_stored_blocks,
    .loadblk = op_loadblk,
    .begin = op_begin,
    .storeblk = op_storeblk,
    .truncate = op_truncate,
    .commit = op_commit,
    .abort = op_abort,
};

struct mockfile *mock_new(uint32_t blksize, uint64_t size)
{
    struct mockfile *m = xmalloc(sizeof(*m));
    memset(m, 0, sizeof(*m));
    m->file.ops = &mock_ops;
    m->file.blksize = blksize;
    m->file.size = size;
    m->committed_size = size;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    return m;
}

void mock_free(struct mockfile *m)
{
    if (!m)
        return;
    tab_clear(&m->committed);
    tab_clear(&m->pending);
    free(m->committed.v);
    free(m->pending.v);
    free(m->order);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

bf_file *mock_file(struct mockfile *m)
{
    return &m->file;
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
    void *buf = xmalloc(m->file.blksize);
    mock_pattern(buf, m->file.blksize, seed, blk * m->file.blksize);
    mock_put_block(m, blk, buf);
    free(buf);
}

void mock_put_block(struct mockfile *m, uint64_t blk, const void *data)
{
    pthread_mutex_lock(&m->mu);
    tab_put(&m->committed, blk, data, m->file.blksize);
    pthread_mutex_unlock(&m->mu);
}

void mock_get_block(struct mockfile *m, uint64_t blk, void *out)
{
    pthread_mutex_lock(&m->mu);
    struct mblock *b = tab_find(&m->committed, blk);
    if (b)
        memcpy(out, b->data, m->file.blksize);
    else
        memset(out, 0, m->file.blksize);
    pthread_mutex_unlock(&m->mu);
}

bool mock_has_block(struct mockfile *m, uint64_t blk)
{
    pthread_mutex_lock(&m->mu);
    bool has = tab_find(&m->committed, blk) != NULL;
    pthread_mutex_unlock(&m->mu);
    return has;
}

uint64_t mock_nblocks(struct mockfile *m)
{
    pthread_mutex_lock(&m->mu);
    uint64_t n = m->committed.n;
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
    bool t = m->in_txn;
    pthread_mutex_unlock(&m->mu);
    return t;
}

void mock_no_seek(struct mockfile *m)
{
    m->file.ops = &mock_ops_noseek;
}
