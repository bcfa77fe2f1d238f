/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the block server engine. See proto.h; the
 * protocol is man/bigfilefs-protocol.7, its transport proto_link.c, its
 * messages proto_wire.c.
 *
 * Every engine call is one request (or none): build the body, get the
 * current connection (bf_link_get: it may start the server), send, check
 * the reply's body — a body of the wrong length, or an answer about
 * another file, breaks the connection (bf_conn_break) — and, for a change,
 * take the session's next serial and log the commit.
 *
 * The files the session uses (their content: between the first handle's
 * OPEN and the last one's CLOSE) are the engine's table of `pfile`s:
 *
 *   (none)   --first file_open-->             OPENING  OPEN in flight
 *   OPENING  --OPEN ok / failed-->            OPEN (nopen = 1) / (none)
 *   OPEN     --file_open / file_close-->      OPEN     nopen +1 / -1
 *   OPEN     --last file_close-->             CLOSING  CLOSE in flight
 *   CLOSING  --CLOSE answered (or failed)-->  (none)
 *
 * A file_open of a file OPENING or CLOSING waits for it to settle. An OPEN
 * file records the connection (generation) it is open on: after a restart,
 * the link's reopen callback sends OPEN again for every OPEN file (marked
 * `reopening` meanwhile: its last close waits) and records the new
 * generation, or 0 when the server does not open it again (its requests
 * then fail with -EIO). A request about a file goes only on the connection
 * the file is open on.
 *
 * A handle's transaction records the generation its BEGIN went on: its
 * STOREs and COMMIT go only there (a restart loses the transaction: -EIO),
 * and the blocks it stored, for the commit's log row.
 *
 * Locking: px->lock guards the table, the serial and the log; it is a
 * leaf, never held across a link call (proto_link.h's locks are never
 * taken inside it either), and waits are on px->cond. A handle's
 * transaction fields are touched only by the thread driving it
 * (bigfile.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/engine.h"
#include "backends/proto.h"
#include "backends/proto_link.h"
#include "backends/proto_wire.h"
#include "backends/ranges.h"

enum pfile_state {
    PF_OPENING, /* the first handle's OPEN is in flight */
    PF_OPEN,    /* nopen handles use it */
    PF_CLOSING, /* the last handle's CLOSE is in flight */
};

struct pfile {
    struct pfile *next;
    uint64_t id;
    enum pfile_state state;
    unsigned nopen;
    bool reopening; /* the reopen callback sends its OPEN: its close waits */
    uint64_t gen;   /* OPEN: the connection it is open on; 0: lost */
    uint32_t blksize;
    uint64_t size; /* the committed size as of px->serial (this session makes
                      every change: OPEN's answer, then each commit's) */
};

struct proto_db {
    bf_db base;
    struct bf_link *link;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast when a pfile settles or goes */
    struct pfile *files;
    uint64_t serial;           /* the last commit's */
    uint64_t trimmed;          /* log rows <= it are gone */
    bool no_stored;            /* atomic: the server answered SEEKDATA or STORED with ENOSYS */
    struct bf_commit_rec *log; /* rows [loghead, nlog), serial order; names and ranges owned */
    size_t loghead, nlog, caplog;
};

struct proto_fh {
    struct bf_fh base; /* first */
    struct proto_db *px;
    struct pfile *pf;
    uint64_t tx_gen;  /* the connection of the open transaction */
    uint64_t *stored; /* the blocks it stored, in the order they came */
    size_t nstored, capstored;
    uint64_t trunc; /* its truncate; UINT64_MAX: none */
};

static struct proto_db *PX(bf_db *db)
{
    return (struct proto_db *)db;
}

static struct proto_fh *FH(struct bf_fh *fh)
{
    return (struct proto_fh *)fh;
}

/* ---- requests ------------------------------------------------------------- */

/* A request body being built on the stack. */
struct req {
    unsigned char buf[BF_LINK_REQ_MAX - BF_PROTO_HDR];
    struct bf_wbuf w;
};

static void req_start(struct req *q)
{
    bf_wire_start(&q->w, q->buf, sizeof(q->buf), 0, 0, 0);
    q->w.len = 0; /* a body: no header */
}

/* The reply of a request: room for any but LIST's, and the connection it
 * came on (a reference, until reply_end). */
struct reply {
    unsigned char buf[BF_PROTO_MSG_MAX - BF_PROTO_HDR];
    struct bf_rbuf r;
    struct bf_conn *c;
};

/* Send q as op on connection c (a reference the caller holds) and wait for
 * its reply: into rep, read from rep->r (rep NULL: the reply must be empty).
 * file/blk for the log lines. Returns 0, -errno of the server's error, or
 * -EIO. */
static int call_on(struct bf_conn *c, uint16_t op, struct req *q, struct reply *rep, uint64_t file,
                   uint64_t blk)
{
    struct bf_rpc rpc = { .op = op, .body = q->buf, .len = q->w.len, .file = file, .blk = blk };
    if (rep) {
        rpc.rep = rep->buf;
        rpc.rep_cap = sizeof(rep->buf);
    }
    BF_ASSERT(bf_wire_ok(&q->w));
    int r = bf_conn_call(c, &rpc);
    if (r == 0 && rep)
        bf_wire_read(&rep->r, rep->buf, rpc.rep_len);
    return r;
}

/* Send q as op on the current connection and wait for its reply into *rep
 * (which then holds the connection: reply_end). file/blk for the log
 * lines. Returns 0, -errno of the server's error, or -EIO. */
static int call(struct proto_db *px, uint16_t op, struct req *q, struct reply *rep, uint64_t file,
                uint64_t blk)
{
    int r = bf_link_get(px->link, &rep->c);
    if (r < 0)
        return r;
    r = call_on(rep->c, op, q, rep, file, blk);
    if (r < 0)
        bf_conn_put(rep->c);
    return r;
}

/* Done with a reply: fine (why NULL: 0), or not what its request answers
 * (the connection breaks: -EIO). */
static int reply_end(struct reply *rep, const char *why)
{
    if (why)
        bf_conn_break(rep->c, "%s", why);
    bf_conn_put(rep->c);
    return why ? -EIO : 0;
}

/* A fileinfo reply (lookup, getinfo, create): the file must be `id` (0:
 * any) and have `name` (NULL: any). */
static int reply_info(struct reply *rep, uint64_t id, const char *name, struct bf_fileinfo *out,
                      const char *op)
{
    struct bf_fileinfo fi;
    char why[160];
    int e = bf_wire_get_info(&rep->r, &fi);
    if (e == -EPROTO || !bf_wire_done(&rep->r))
        snprintf(why, sizeof(why), "the server answered %s with a malformed fileinfo", op);
    else if (e < 0)
        snprintf(why, sizeof(why), "the server answered %s with a name no file can have", op);
    else if (fi.id == 0 || (id && fi.id != id) || (name && strcmp(fi.name, name) != 0))
        snprintf(why, sizeof(why), "the server answered %s about another file (%llu)", op,
                 (unsigned long long)fi.id);
    else if (!bf_blksize_valid(fi.blksize) || fi.size > BF_SIZE_MAX)
        snprintf(why, sizeof(why), "the server answered %s with a bad block size or size", op);
    else
        why[0] = '\0';
    if (why[0] == '\0' && out)
        *out = fi;
    return reply_end(rep, why[0] ? why : NULL);
}

/* A reply of u64s only: n of them into v. */
static int reply_u64s(struct reply *rep, uint64_t *v, size_t n, const char *op)
{
    char why[96];
    for (size_t i = 0; i < n; i++)
        v[i] = bf_wire_get_u64(&rep->r);
    snprintf(why, sizeof(why), "the server answered %s with a malformed reply", op);
    return reply_end(rep, bf_wire_done(&rep->r) ? NULL : why);
}

/* ---- the commit log (every row the session's own) --------------------------- */

static void row_free(struct bf_commit_rec *rec)
{
    free((void *)rec->write.ranges);
    free((void *)rec->name);
    free((void *)rec->name2);
}

/* Log a commit: the next serial, the row (its strings copied, ranges
 * taken), the new size of file `sized` (NULL: none changed), a kick for
 * the watcher. Out of memory, the row is left out (the
 * watcher skips the session's own rows anyway) but the serial is taken.
 * Returns the serial. */
static uint64_t commit_row(struct proto_db *px, struct bf_commit_rec *row, const char *name,
                           const char *name2, struct pfile *sized)
{
    row->session = px->base.session;
    row->time_ns = bf_now_ns();
    row->name = name ? strdup(name) : NULL;
    row->name2 = name2 ? strdup(name2) : NULL;
    pthread_mutex_lock(&px->lock);
    uint64_t s = row->serial = ++px->serial;
    row->write.serial = s;
    if (sized) /* a commit that set the size: it is as of s */
        sized->size = row->write.size;
    if (px->loghead > 0 && px->loghead >= px->nlog / 2) {
        memmove(px->log, px->log + px->loghead, (px->nlog - px->loghead) * sizeof(px->log[0]));
        px->nlog -= px->loghead;
        px->loghead = 0;
    }
    if (px->nlog == px->caplog) {
        size_t cap = px->caplog ? 2 * px->caplog : 64;
        struct bf_commit_rec *v = realloc(px->log, cap * sizeof(*v));
        if (v) {
            px->log = v;
            px->caplog = cap;
        }
    }
    bool kept = px->nlog < px->caplog && (!name || row->name) && (!name2 || row->name2);
    if (kept)
        px->log[px->nlog++] = *row;
    pthread_mutex_unlock(&px->lock);
    if (!kept)
        row_free(row);
    bf_db_kick(&px->base);
    return s;
}

/* ---- the files in use ------------------------------------------------------- */

static struct pfile *pfile_find(struct proto_db *px, uint64_t id)
{
    for (struct pfile *pf = px->files; pf; pf = pf->next)
        if (pf->id == id)
            return pf;
    return NULL;
}

/* Take pf out of the table and free it. Caller holds px->lock. */
static void pfile_remove(struct proto_db *px, struct pfile *pf)
{
    struct pfile **pp = &px->files;
    while (*pp != pf)
        pp = &(*pp)->next;
    *pp = pf->next;
    pthread_cond_broadcast(&px->cond);
    free(pf);
}

/* Send OPEN of file id on c: 0 with *blksize and *size, or -errno. */
static int send_open(struct proto_db *px, struct bf_conn *c, uint64_t id, uint32_t *blksize,
                     uint64_t *size)
{
    struct req q;
    struct reply rep;
    req_start(&q);
    bf_wire_u64(&q.w, id);
    int r = call_on(c, BF_OP_OPEN, &q, &rep, id, UINT64_MAX);
    if (r < 0)
        return r;
    *size = bf_wire_get_u64(&rep.r);
    *blksize = bf_wire_get_u32(&rep.r);
    if (!bf_wire_done(&rep.r) || !bf_blksize_valid(*blksize) || *size > BF_SIZE_MAX) {
        bf_conn_break(c, "the server answered OPEN of file %llu with a malformed reply",
                      (unsigned long long)id);
        return -EIO;
    }
    (void)px;
    return 0;
}

/* The link's reopen callback: OPEN every file in use again on the new
 * connection c (see the top). */
static void px_reopen(void *arg, struct bf_conn *c)
{
    struct proto_db *px = arg;
    size_t n = 0, k = 0;
    pthread_mutex_lock(&px->lock);
    for (struct pfile *pf = px->files; pf; pf = pf->next)
        n += pf->state == PF_OPEN;
    struct pfile **v = n ? malloc(n * sizeof(*v)) : NULL;
    for (struct pfile *pf = px->files; v && pf; pf = pf->next) {
        if (pf->state == PF_OPEN) {
            pf->reopening = true; /* its last close waits: pf stays */
            v[k++] = pf;
        }
    }
    pthread_mutex_unlock(&px->lock);
    if (n && !v)
        bf_db_log(&px->base, "no memory to reopen the files in use: their reads fail with EIO");
    for (size_t i = 0; i < k; i++) {
        uint32_t blksize = 0;
        uint64_t size = 0;
        int r = send_open(px, c, v[i]->id, &blksize, &size);
        if (r == 0 && blksize != v[i]->blksize)
            r = -ESTALE;
        if (r < 0)
            bf_db_log(&px->base,
                      "file %llu could not be opened again (%s): its requests fail "
                      "with EIO",
                      (unsigned long long)v[i]->id,
                      r == -ESTALE ? "its block size changed" : strerror(-r));
        pthread_mutex_lock(&px->lock);
        v[i]->gen = r == 0 ? bf_conn_gen(c) : 0;
        v[i]->reopening = false;
        pthread_cond_broadcast(&px->cond);
        pthread_mutex_unlock(&px->lock);
    }
    free(v);
}

/* Whether pf is open on connection c. */
static bool pfile_on(struct proto_db *px, struct pfile *pf, struct bf_conn *c)
{
    pthread_mutex_lock(&px->lock);
    bool on = pf->gen == bf_conn_gen(c);
    pthread_mutex_unlock(&px->lock);
    return on;
}

/* The current connection, if file pf is open on it: 0 and *c (a
 * reference), or -EIO. */
static int conn_of(struct proto_db *px, struct pfile *pf, struct bf_conn **c)
{
    int r = bf_link_get(px->link, c);
    if (r < 0)
        return r;
    if (!pfile_on(px, pf, *c)) {
        bf_conn_put(*c);
        return -EIO; /* logged when the reopen failed */
    }
    return 0;
}

static int px_file_open(bf_db *db, uint64_t id, bool hold, struct bf_fh **out)
{
    struct proto_db *px = PX(db);
    struct proto_fh *h = calloc(1, sizeof(*h));
    struct pfile *fresh = calloc(1, sizeof(*fresh));
    (void)hold; /* one session: the server needs no holds */
    if (!h || !fresh) {
        free(h);
        free(fresh);
        return -ENOMEM;
    }
    h->px = px;
    h->trunc = UINT64_MAX;
    pthread_mutex_lock(&px->lock);
    struct pfile *pf;
    while ((pf = pfile_find(px, id)) && pf->state != PF_OPEN)
        pthread_cond_wait(&px->cond, &px->lock);
    if (pf) {
        pf->nopen++; /* OPEN -> OPEN */
        h->pf = pf;
        h->base.file.blksize = pf->blksize;
        h->base.file.size = pf->size; /* as of the serial: both under the lock */
        h->base.file.serial = px->serial;
        pthread_mutex_unlock(&px->lock);
        free(fresh);
        *out = &h->base;
        return 0;
    }
    /* (none) -> OPENING */
    pf = fresh;
    pf->id = id;
    pf->state = PF_OPENING;
    pf->next = px->files;
    px->files = pf;
    uint64_t serial = px->serial;
    pthread_mutex_unlock(&px->lock);

    struct bf_conn *c;
    uint32_t blksize = 0;
    uint64_t size = 0;
    int r = bf_link_get(px->link, &c);
    if (r == 0) {
        r = send_open(px, c, id, &blksize, &size);
        pf->gen = bf_conn_gen(c);
        bf_conn_put(c);
    }
    pthread_mutex_lock(&px->lock);
    if (r < 0) {
        pfile_remove(px, pf); /* OPENING -> (none) */
        pthread_mutex_unlock(&px->lock);
        free(h);
        return r;
    }
    pf->state = PF_OPEN; /* OPENING -> OPEN */
    pf->nopen = 1;
    pf->blksize = blksize;
    pf->size = size;
    pthread_cond_broadcast(&px->cond);
    pthread_mutex_unlock(&px->lock);
    h->pf = pf;
    h->base.file.blksize = blksize;
    h->base.file.size = size;
    h->base.file.serial = serial;
    *out = &h->base;
    return 0;
}

static void px_file_close(struct bf_fh *fh)
{
    struct proto_fh *h = FH(fh);
    struct proto_db *px = h->px;
    struct pfile *pf = h->pf;
    BF_ASSERT(h->nstored == 0);
    free(h->stored);
    free(h);
    pthread_mutex_lock(&px->lock);
    while (pf->reopening)
        pthread_cond_wait(&px->cond, &px->lock);
    if (--pf->nopen > 0) {
        pthread_mutex_unlock(&px->lock);
        return;
    }
    pf->state = PF_CLOSING; /* OPEN -> CLOSING */
    pthread_mutex_unlock(&px->lock);

    struct bf_conn *c;
    if (conn_of(px, pf, &c) == 0) {
        struct req q;
        req_start(&q);
        bf_wire_u64(&q.w, pf->id);
        int r = call_on(c, BF_OP_CLOSE, &q, NULL, pf->id, UINT64_MAX);
        if (r < 0 && r != -EIO)
            bf_db_log(&px->base, "the server could not close file %llu (%s)",
                      (unsigned long long)pf->id, strerror(-r));
        bf_conn_put(c);
    }
    pthread_mutex_lock(&px->lock);
    pfile_remove(px, pf); /* CLOSING -> (none) */
    pthread_mutex_unlock(&px->lock);
}

/* ---- the content operations (bigfile.h, through the layer) ----------------- */

static int px_loadblk(struct bf_fh *fh, uint64_t blk, uint64_t at, void *buf, uint64_t *serial)
{
    struct proto_fh *h = FH(fh);
    struct proto_db *px = h->px;
    uint32_t bs = fh->file.blksize;
    struct bf_conn *c;
    uint64_t off;
    unsigned char rep[4];
    (void)at; /* no versions: the current content is every version's */
    int r = conn_of(px, h->pf, &c);
    if (r < 0)
        return r;
    void *slot = bf_conn_area_get(c, bs, &off);
    if (!slot) {
        bf_conn_put(c);
        return -EIO;
    }
    struct req q;
    req_start(&q);
    bf_wire_u64(&q.w, fh->id);
    bf_wire_u64(&q.w, blk);
    bf_wire_u64(&q.w, off);
    bf_wire_u32(&q.w, bs);
    struct bf_rpc rpc = { .op = BF_OP_LOAD,
                          .body = q.buf,
                          .len = q.w.len,
                          .file = fh->id,
                          .blk = blk,
                          .rep = rep,
                          .rep_cap = sizeof(rep) };
    r = bf_conn_call(c, &rpc);
    if (r == 0 && rpc.rep_len != sizeof(rep)) {
        bf_conn_break(c, "the server answered LOAD with %zu bytes", rpc.rep_len);
        r = -EIO;
    }
    if (r == 0) {
        struct bf_rbuf rr;
        bf_wire_read(&rr, rep, sizeof(rep));
        if (bf_wire_get_u32(&rr) & BF_LOAD_HOLE)
            memset(buf, 0, bs);
        else
            memcpy(buf, slot, bs); /* the one copy */
        *serial = 0;
    }
    bf_conn_area_free(c, off, bs);
    bf_conn_put(c);
    return r == -ESTALE ? -EIO : r; /* a server has no versions to be stale */
}

/* A transaction request on the handle's transaction connection: 0, or
 * -EIO when that connection is gone. The reference is the caller's. */
static int tx_conn(struct proto_fh *h, struct bf_conn **c)
{
    int r = bf_link_get(h->px->link, c);
    if (r < 0)
        return r;
    if (bf_conn_gen(*c) != h->tx_gen) {
        bf_conn_put(*c);
        return -EIO; /* the server restarted: the transaction is lost */
    }
    return 0;
}

/* Forget the transaction's records. */
static void tx_forget(struct proto_fh *h)
{
    h->nstored = 0;
    h->trunc = UINT64_MAX;
    h->tx_gen = 0;
}

static int px_begin(struct bf_fh *fh)
{
    struct proto_fh *h = FH(fh);
    struct bf_conn *c;
    int r = conn_of(h->px, h->pf, &c);
    if (r < 0)
        return r;
    struct req q;
    req_start(&q);
    bf_wire_u64(&q.w, fh->id);
    r = call_on(c, BF_OP_BEGIN, &q, NULL, fh->id, UINT64_MAX);
    if (r == 0) {
        tx_forget(h);
        h->tx_gen = bf_conn_gen(c);
    }
    bf_conn_put(c);
    return r;
}

static int px_storeblk(struct bf_fh *fh, uint64_t blk, const void *buf, uint64_t base)
{
    struct proto_fh *h = FH(fh);
    uint32_t bs = fh->file.blksize;
    struct bf_conn *c;
    uint64_t off = 0;
    void *slot = NULL;
    (void)base; /* one session: no conflict to check */
    if (h->nstored == h->capstored) {
        size_t cap = h->capstored ? 2 * h->capstored : 64;
        uint64_t *v = realloc(h->stored, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        h->stored = v;
        h->capstored = cap;
    }
    int r = tx_conn(h, &c);
    if (r < 0)
        return r;
    bool hole = bf_all_zero(buf, bs);
    if (!hole) {
        slot = bf_conn_area_get(c, bs, &off);
        if (!slot) {
            bf_conn_put(c);
            return -EIO;
        }
        memcpy(slot, buf, bs); /* the one copy */
    }
    struct req q;
    req_start(&q);
    bf_wire_u64(&q.w, fh->id);
    bf_wire_u64(&q.w, blk);
    bf_wire_u64(&q.w, off);
    bf_wire_u32(&q.w, bs);
    bf_wire_u32(&q.w, hole ? BF_STORE_HOLE : 0);
    r = call_on(c, BF_OP_STORE, &q, NULL, fh->id, blk);
    if (slot)
        bf_conn_area_free(c, off, bs);
    bf_conn_put(c);
    if (r == 0)
        h->stored[h->nstored++] = blk;
    return r;
}

static int px_truncate(struct bf_fh *fh, uint64_t nblocks)
{
    struct proto_fh *h = FH(fh);
    struct bf_conn *c;
    int r = tx_conn(h, &c);
    if (r < 0)
        return r;
    struct req q;
    req_start(&q);
    bf_wire_u64(&q.w, fh->id);
    bf_wire_u64(&q.w, nblocks);
    r = call_on(c, BF_OP_TRUNCATE, &q, NULL, fh->id, UINT64_MAX);
    bf_conn_put(c);
    if (r == 0 && nblocks < h->trunc)
        h->trunc = nblocks;
    return r;
}

static void px_abort(struct bf_fh *fh)
{
    struct proto_fh *h = FH(fh);
    struct bf_conn *c;
    if (tx_conn(h, &c) == 0) {
        struct req q;
        req_start(&q);
        bf_wire_u64(&q.w, fh->id);
        int r = call_on(c, BF_OP_ABORT, &q, NULL, fh->id, UINT64_MAX);
        if (r < 0 && r != -EIO)
            bf_db_log(&h->px->base, "the server could not abort a transaction of file %llu (%s)",
                      (unsigned long long)fh->id, strerror(-r));
        bf_conn_put(c);
    }
    tx_forget(h);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The stored blocks as sorted ranges, for the log row (out of memory: as
 * far as they go; the row is the session's own, which nobody applies). */
static void stored_ranges(struct proto_fh *h, struct bf_rangebuf *rb)
{
    if (h->nstored == 0)
        return; /* h->stored may be NULL: qsort wants an array */
    qsort(h->stored, h->nstored, sizeof(h->stored[0]), cmp_u64);
    for (size_t i = 0; i < h->nstored; i++)
        if ((i == 0 || h->stored[i] != h->stored[i - 1]) && bf_ranges_add(rb, h->stored[i]) < 0)
            break;
}

static int px_commit(struct bf_fh *fh, const struct bf_commit_req *req, uint64_t *serial)
{
    struct proto_fh *h = FH(fh);
    struct bf_conn *c;
    int r = tx_conn(h, &c);
    if (r == 0) {
        struct req q;
        req_start(&q);
        bf_wire_u64(&q.w, fh->id);
        bf_wire_u32(&q.w, (req->size_set ? BF_COMMIT_SIZE : 0) |
                              ((req->flags & BF_COMMIT_OVERWRITE) ? BF_COMMIT_OVER : 0));
        bf_wire_u64(&q.w, req->size_set ? req->size : 0);
        r = call_on(c, BF_OP_COMMIT, &q, NULL, fh->id, UINT64_MAX);
        bf_conn_put(c);
    }
    if (r == 0) {
        struct bf_rangebuf rb = { 0 };
        stored_ranges(h, &rb);
        struct bf_commit_rec row = {
            .kind = BF_COMMIT_WRITE,
            .file = fh->id,
            .write = { .ranges = rb.v,
                       .nranges = rb.n,
                       .trunc = h->trunc,
                       .size_changed = req->size_set,
                       .size = req->size_set ? req->size : 0 },
        };
        *serial = commit_row(h->px, &row, NULL, NULL, req->size_set ? h->pf : NULL);
    }
    /* -ESTALE: the server found its data changed; it names no block */
    tx_forget(h);
    return r;
}

/* SEEKDATA or STORED of file id (the server's answer in *v): 0, -ENXIO
 * (SEEKDATA: none), -ENOSYS (the server does not say), or -errno. */
static int stored_call(struct proto_fh *h, uint16_t op, uint64_t from, uint64_t *v)
{
    struct proto_db *px = h->px;
    struct req q;
    struct reply rep;
    if (__atomic_load_n(&px->no_stored, __ATOMIC_RELAXED))
        return -ENOSYS;
    req_start(&q);
    bf_wire_u64(&q.w, h->base.id);
    if (op == BF_OP_SEEKDATA)
        bf_wire_u64(&q.w, from);
    int r = call(px, op, &q, &rep, h->base.id, UINT64_MAX);
    if (r == -ENOSYS)
        __atomic_store_n(&px->no_stored, true, __ATOMIC_RELAXED); /* no need to ask again */
    if (r < 0)
        return r;
    *v = bf_wire_get_u64(&rep.r);
    if (!bf_wire_done(&rep.r))
        return reply_end(&rep, "the server answered SEEKDATA or STORED with a malformed reply");
    if (op == BF_OP_SEEKDATA && *v < from)
        return reply_end(&rep, "the server answered SEEKDATA with a block before the one asked");
    return reply_end(&rep, NULL);
}

/* The committed size of the handle's file in blocks (for a server that
 * does not say which blocks it stores). */
static uint64_t size_blocks(struct proto_fh *h)
{
    pthread_mutex_lock(&h->px->lock);
    uint64_t size = h->pf->size;
    pthread_mutex_unlock(&h->px->lock);
    uint32_t bs = h->base.file.blksize;
    return size / bs + (size % bs != 0);
}

static int px_next_stored(struct bf_fh *fh, uint64_t from, uint64_t *blk)
{
    struct proto_fh *h = FH(fh);
    int r = stored_call(h, BF_OP_SEEKDATA, from, blk);
    if (r != -ENOSYS)
        return r;
    if (from >= size_blocks(h))
        return -ENXIO;
    *blk = from;
    return 0;
}

static int px_stored_blocks(struct bf_fh *fh, uint64_t *n)
{
    struct proto_fh *h = FH(fh);
    int r = stored_call(h, BF_OP_STORED, 0, n);
    if (r != -ENOSYS)
        return r;
    *n = size_blocks(h);
    return 0;
}

/* ---- the namespace ---------------------------------------------------------- */

static int cmp_info_name(const void *a, const void *b)
{
    return strcmp(((const struct bf_fileinfo *)a)->name, ((const struct bf_fileinfo *)b)->name);
}

/* Parse LIST's replies (acc: their bodies one after the other) into *v, *n
 * (leaving out, with a log line, the names a bf_fileinfo cannot hold).
 * Returns 0, -EPROTO (malformed), -ENOMEM. */
static int list_parse(struct proto_db *px, const unsigned char *acc, size_t len,
                      struct bf_fileinfo **v, size_t *n)
{
    struct bf_rbuf r;
    size_t cap = 0;
    *v = NULL;
    *n = 0;
    bf_wire_read(&r, acc, len);
    while (r.pos < r.len) {
        uint32_t count = bf_wire_get_u32(&r);
        for (uint32_t i = 0; i < count && bf_wire_good(&r); i++) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 64;
                struct bf_fileinfo *nv = realloc(*v, cap * sizeof(**v));
                if (!nv)
                    return -ENOMEM;
                *v = nv;
            }
            int e = bf_wire_get_info(&r, &(*v)[*n]);
            if (e == -EPROTO)
                break;
            if (e < 0) {
                bf_db_log(&px->base,
                          "file %llu left out of the listing: the server gave it a "
                          "name that is %s",
                          (unsigned long long)(*v)[*n].id,
                          e == -ENAMETOOLONG ? "too long" : "not text");
                continue;
            }
            if (bf_blksize_valid((*v)[*n].blksize) && (*v)[*n].size <= BF_SIZE_MAX && (*v)[*n].id)
                ++*n;
            else
                r.bad = true;
        }
        if (!bf_wire_good(&r))
            return -EPROTO;
    }
    return 0;
}

static int px_list(bf_db *db, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg)
{
    struct proto_db *px = PX(db);
    struct bf_conn *c;
    int r = bf_link_get(px->link, &c);
    if (r < 0)
        return r;
    struct bf_rpc rpc = { .op = BF_OP_LIST, .file = UINT64_MAX, .blk = UINT64_MAX, .multi = true };
    r = bf_conn_call(c, &rpc);
    struct bf_fileinfo *v = NULL;
    size_t n = 0;
    if (r == 0)
        r = list_parse(px, rpc.acc, rpc.acc_len, &v, &n);
    if (r == -EPROTO) {
        bf_conn_break(c, "the server answered LIST with a malformed reply");
        r = -EIO;
    }
    bf_conn_put(c);
    free(rpc.acc);
    if (r == 0 && n)
        qsort(v, n, sizeof(*v), cmp_info_name); /* backend.h: in name order */
    for (size_t i = 0; r == 0 && i < n; i++)
        r = cb(arg, &v[i]);
    free(v);
    return r;
}

static int px_lookup(bf_db *db, const char *name, struct bf_fileinfo *out)
{
    struct proto_db *px = PX(db);
    struct req q;
    struct reply rep;
    req_start(&q);
    bf_wire_str(&q.w, name, strlen(name));
    int r = call(px, BF_OP_LOOKUP, &q, &rep, UINT64_MAX, UINT64_MAX);
    return r < 0 ? r : reply_info(&rep, 0, name, out, "LOOKUP");
}

static int px_getinfo(bf_db *db, uint64_t id, struct bf_fileinfo *out)
{
    struct proto_db *px = PX(db);
    struct req q;
    struct reply rep;
    req_start(&q);
    bf_wire_u64(&q.w, id);
    int r = call(px, BF_OP_GETINFO, &q, &rep, id, UINT64_MAX);
    return r < 0 ? r : reply_info(&rep, id, NULL, out, "GETINFO");
}

static int px_create(bf_db *db, const char *name, uint32_t blksize, uint64_t size, uint32_t mode,
                     uint32_t uid, uint32_t gid, struct bf_fileinfo *out)
{
    struct proto_db *px = PX(db);
    struct req q;
    struct reply rep;
    struct bf_fileinfo fi;
    req_start(&q);
    bf_wire_u32(&q.w, blksize);
    bf_wire_u32(&q.w, mode & 07777);
    bf_wire_u32(&q.w, uid);
    bf_wire_u32(&q.w, gid);
    bf_wire_u64(&q.w, size);
    bf_wire_str(&q.w, name, strlen(name));
    int r = call(px, BF_OP_CREATE, &q, &rep, UINT64_MAX, UINT64_MAX);
    if (r == 0)
        r = reply_info(&rep, 0, name, &fi, "CREATE");
    if (r < 0)
        return r;
    struct bf_commit_rec row = { .kind = BF_COMMIT_CREATE, .file = fi.id };
    commit_row(px, &row, name, NULL, NULL);
    if (out)
        *out = fi;
    return 0;
}

static int px_unlink(bf_db *db, const char *name, uint64_t *id)
{
    struct proto_db *px = PX(db);
    struct req q;
    struct reply rep;
    req_start(&q);
    bf_wire_str(&q.w, name, strlen(name));
    int r = call(px, BF_OP_UNLINK, &q, &rep, UINT64_MAX, UINT64_MAX);
    if (r == 0)
        r = reply_u64s(&rep, id, 1, "UNLINK");
    if (r < 0)
        return r;
    struct bf_commit_rec row = { .kind = BF_COMMIT_UNLINK, .file = *id };
    commit_row(px, &row, name, NULL, NULL);
    return 0;
}

static int px_rename(bf_db *db, const char *from, const char *to, unsigned flags,
                     uint64_t *replaced)
{
    struct proto_db *px = PX(db);
    struct req q;
    struct reply rep;
    uint64_t ids[2] = { 0, 0 };
    req_start(&q);
    bf_wire_u32(&q.w, flags);
    bf_wire_str(&q.w, from, strlen(from));
    bf_wire_str(&q.w, to, strlen(to));
    int r = call(px, BF_OP_RENAME, &q, &rep, UINT64_MAX, UINT64_MAX);
    if (r == 0)
        r = reply_u64s(&rep, ids, 2, "RENAME");
    if (r < 0)
        return r;
    *replaced = (flags & BF_RENAME_EXCHANGE) ? 0 : ids[1];
    if (strcmp(from, to) == 0)
        return 0; /* no change, no commit */
    struct bf_commit_rec row = {
        .kind = BF_COMMIT_RENAME, .file = ids[0], .file2 = ids[1], .rename_flags = flags
    };
    commit_row(px, &row, from, to, NULL);
    return 0;
}

static int px_setattr(bf_db *db, uint64_t id, const uint32_t *mode, const uint32_t *uid,
                      const uint32_t *gid, const int64_t *mtime_ns)
{
    struct proto_db *px = PX(db);
    struct req q;
    req_start(&q);
    bf_wire_u64(&q.w, id);
    bf_wire_u32(&q.w, (mode ? BF_SET_MODE : 0) | (uid ? BF_SET_UID : 0) | (gid ? BF_SET_GID : 0) |
                          (mtime_ns ? BF_SET_MTIME : 0));
    bf_wire_u32(&q.w, mode ? *mode & 07777 : 0);
    bf_wire_u32(&q.w, uid ? *uid : 0);
    bf_wire_u32(&q.w, gid ? *gid : 0);
    bf_wire_i64(&q.w, mtime_ns ? *mtime_ns : 0);
    struct reply rep;
    int r = call(px, BF_OP_SETATTR, &q, &rep, id, UINT64_MAX);
    if (r == 0)
        r = reply_u64s(&rep, NULL, 0, "SETATTR");
    if (r < 0)
        return r;
    struct bf_commit_rec row = { .kind = BF_COMMIT_SETATTR, .file = id };
    commit_row(px, &row, NULL, NULL, NULL);
    return 0;
}

static int px_set_blksize(bf_db *db, uint64_t id, uint32_t blksize)
{
    struct proto_db *px = PX(db);
    struct req q;
    struct reply rep;
    req_start(&q);
    bf_wire_u64(&q.w, id);
    bf_wire_u32(&q.w, blksize);
    int r = call(px, BF_OP_SETBLKSIZE, &q, &rep, id, UINT64_MAX);
    if (r == 0)
        r = reply_u64s(&rep, NULL, 0, "SETBLKSIZE");
    if (r < 0)
        return r;
    struct bf_commit_rec row = { .kind = BF_COMMIT_SETBLKSIZE, .file = id };
    commit_row(px, &row, NULL, NULL, NULL);
    return 0;
}

/* The server deletes a nameless file itself, at UNLINK (or RENAME) when it
 * is not open, else at its CLOSE: nothing is left to purge, no hold to end. */
static int px_purge(bf_db *db, uint64_t id)
{
    (void)db;
    (void)id;
    return 0;
}

/* ---- the watcher's operations ------------------------------------------------ */

static int px_log_read(bf_db *db, uint64_t after, size_t max,
                       int (*fn)(void *arg, const struct bf_commit_rec *rec), void *arg,
                       uint64_t *current, uint64_t *trimmed)
{
    struct proto_db *px = PX(db);
    int r = 0;
    pthread_mutex_lock(&px->lock);
    size_t lo = px->loghead + bf_blk_lower(px->log + px->loghead, px->nlog - px->loghead,
                                           sizeof(px->log[0]), after + 1);
    for (size_t i = lo; i < px->nlog && i - lo < max && r == 0; i++)
        r = fn(arg, &px->log[i]);
    *current = px->serial;
    *trimmed = px->trimmed;
    pthread_mutex_unlock(&px->lock);
    return r;
}

static int px_serial_now(bf_db *db, uint64_t *serial)
{
    struct proto_db *px = PX(db);
    pthread_mutex_lock(&px->lock);
    *serial = px->serial;
    pthread_mutex_unlock(&px->lock);
    return 0;
}

/* The log up to the applied serial (the only session's), and beyond
 * log_keep rows; nothing else to keep house for. */
static int px_trim(bf_db *db, uint64_t applied, bool all)
{
    struct proto_db *px = PX(db);
    (void)all;
    pthread_mutex_lock(&px->lock);
    uint64_t bound = applied;
    if (px->serial > db->opt.log_keep && px->serial - db->opt.log_keep > bound)
        bound = px->serial - db->opt.log_keep;
    while (px->loghead < px->nlog && px->log[px->loghead].serial <= bound)
        row_free(&px->log[px->loghead++]);
    if (bound > px->trimmed)
        px->trimmed = bound;
    pthread_mutex_unlock(&px->lock);
    return 0;
}

/* ---- open and close ------------------------------------------------------------ */

static void px_close(bf_db *db)
{
    struct proto_db *px = PX(db);
    bf_link_close(px->link);
    while (px->files) /* a caller that closed with files open (BF_CHECK'd by the layer) */
        pfile_remove(px, px->files);
    for (size_t i = px->loghead; i < px->nlog; i++)
        row_free(&px->log[i]);
    free(px->log);
    bf_db_fini(db);
    pthread_cond_destroy(&px->cond);
    pthread_mutex_destroy(&px->lock);
    free(px);
}

static const struct bf_engine_ops proto_engine_ops = {
    .name = "proto",
    .notifies = true,
    .close = px_close,
    .list = px_list,
    .lookup = px_lookup,
    .getinfo = px_getinfo,
    .create = px_create,
    .setattr = px_setattr,
    .unlink = px_unlink,
    .rename = px_rename,
    .set_blksize = px_set_blksize,
    .purge = px_purge,
    .file_open = px_file_open,
    .file_close = px_file_close,
    .release = px_purge,
    .loadblk = px_loadblk,
    .next_stored = px_next_stored,
    .stored_blocks = px_stored_blocks,
    .begin = px_begin,
    .storeblk = px_storeblk,
    .truncate = px_truncate,
    .commit = px_commit,
    .abort = px_abort,
    .changed = NULL, /* notifies */
    .log_read = px_log_read,
    .serial_now = px_serial_now,
    .trim = px_trim,
};

int bf_db_is_proto(const bf_db *db)
{
    return db && db->ops == &proto_engine_ops;
}

pid_t bf_proto_server_pid(bf_db *db)
{
    return bf_db_is_proto(db) ? bf_link_server_pid(PX(db)->link) : 0;
}

uint64_t bf_proto_starts(bf_db *db)
{
    return bf_db_is_proto(db) ? bf_link_starts(PX(db)->link) : 0;
}

int bf_proto_open(const char *spec, unsigned flags, const struct bf_db_options *opt, bf_db **out,
                  char *errbuf, size_t errlen)
{
    if (flags & BF_DB_SHARED) {
        bf_errf(errbuf, errlen,
                "%s: a block server serves one mount (protocol version %u): -o shared is not "
                "supported",
                spec, BF_PROTO_VERSION);
        return -EINVAL;
    }
    struct proto_db *px = calloc(1, sizeof(*px));
    if (!px)
        goto nomem;
    if (pthread_mutex_init(&px->lock, NULL) != 0) {
        free(px);
        goto nomem;
    }
    if (pthread_cond_init(&px->cond, NULL) != 0) {
        pthread_mutex_destroy(&px->lock);
        free(px);
        goto nomem;
    }
    if (bf_db_init(&px->base, &proto_engine_ops, flags, opt) < 0) {
        pthread_cond_destroy(&px->cond);
        pthread_mutex_destroy(&px->lock);
        free(px);
        goto nomem;
    }
    px->base.label = strdup(spec); /* the link logs from now on */
    int r = bf_link_open(&px->base, spec, (flags & BF_DB_RDONLY) ? BF_HELLO_RDONLY : 0,
                         px->base.opt.timeout_ms, px_reopen, px, &px->link, errbuf, errlen);
    if (r < 0) {
        px->link = NULL;
        bf_db_close(&px->base);
        return r;
    }
    px->base.session = (flags & BF_DB_RDONLY) ? 0 : 1;
    px->base.start_serial = 0;
    *out = &px->base;
    return 0;
nomem:
    bf_errf(errbuf, errlen, "%s: %s", spec, strerror(ENOMEM));
    return -ENOMEM;
}
