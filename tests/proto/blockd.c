/* SPDX-License-Identifier: MIT */
/* blockd — a block server in C (man/bigfilefs-protocol.7), for the tests
 * and the benchmarks.
 *
 *   blockd [options] DB
 *       serve the bigfiles of the bigfilefs database DB (a SQLite file, or
 *       "mem:" for a fresh one in memory) through its own bf_db session
 *       (DB keeps no history: the protocol has none);
 *   blockd [options] --pattern SIZE:BLKSIZE:SEED
 *       serve one read-only file "pattern" of SIZE bytes whose 64-bit word
 *       i is the benchmarks' pattern (bench/pattern.h), computed at each
 *       LOAD straight into the shared area.
 *
 * It speaks on the descriptor of $BIGFILEFS_SERVER_FD (exec:), or with
 * --listen PATH on a unix socket it listens on (one mount at a time: a
 * HELLO of a second connection gets EBUSY; when a connection ends, its
 * open files are closed and the next one may resume). Options:
 *
 *   --threads N          answer with N threads (replies out of order)
 *   --reorder            hold a LOAD of block 0 until a LOAD of block 1 was
 *                        answered (10 s at most), to show replies out of order
 *   --version V          answer HELLO with protocol version V
 *   --crash-load N       exit(3) at the Nth LOAD
 *   --hang-load N        never answer the Nth LOAD
 *   --junk-load N:KIND   answer the Nth LOAD with nonsense: op, len, id,
 *                        errno, big, request, short, more
 *   --crash-commit N     exit(3) at the Nth COMMIT, before it commits
 *   --once PATH          the faults above fire only while PATH does not
 *                        exist; the first that fires creates it
 *   --exit-if PATH       exit(1) at once if PATH exists (a broken restart)
 *   --count PATH         append a line to PATH at each start
 *
 * Every request of the protocol maps onto the bf_db call of the same name;
 * its errors go back by name. Exits 0 at the end of the connection (exec:).
 */
#include "config.h" /* first: _GNU_SOURCE (accept4) */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../bench/pattern.h"
#include "backends/backend.h"
#include "backends/proto_wire.h"

struct ofile {
    struct ofile *next;
    uint64_t id;
    bf_file *f;
    bool tx;
};

static struct {
    bf_db *db; /* NULL: --pattern */
    uint64_t psize, pseed;
    uint32_t pblksize;
    unsigned threads, version;
    bool reorder;
    uint64_t crash_load, hang_load, crash_commit, junk_load;
    const char *junk, *once;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* The transactions' requests, one at a time: the daemon sends a
     * transaction's next request only after the reply to the last, but
     * another thread of ours may take it, and a bf_file's transaction
     * wants its calls ordered in this process too (bigfile.h). */
    pthread_mutex_t txlock;
    struct ofile *files;
    unsigned char *area;
    uint64_t area_size;
    uint64_t nloads, ncommits;
    bool blk1_answered;
    bool busy; /* --listen: a connection is served */
} S = { .threads = 1,
        .version = BF_PROTO_VERSION,
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .cond = PTHREAD_COND_INITIALIZER };

static void die(const char *what)
{
    fprintf(stderr, "blockd: %s\n", what);
    exit(2);
}

/* Whether a fault may fire now (--once); creates the marker if so. */
static bool fault_fires(void)
{
    if (!S.once)
        return true;
    int fd = open(S.once, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* ---- replies ------------------------------------------------------------ */

/* A request comes after the replies it depends on (the daemon waits for
 * them), possibly to another thread of ours, which then reads what the
 * first wrote (an area range, a file it opened): an order through the
 * daemon, which ThreadSanitizer cannot see. Every thread passes this point
 * after each receive (acquire) and before each send (release), so the
 * order is in this process too. */
static unsigned long epoch;

static void epoch_pass(void)
{
    __atomic_fetch_add(&epoch, 1, __ATOMIC_ACQ_REL);
}

static void send_msg(int fd, const struct bf_wbuf *w)
{
    epoch_pass();
    if (bf_wire_send(fd, w->buf, w->len, -1) < 0)
        fprintf(stderr, "blockd: send: %s\n", strerror(errno));
}

static void reply_err(int fd, const struct bf_msghdr *h, int err)
{
    unsigned char buf[64];
    struct bf_wbuf w;
    const char *name = bf_errno_name(err > 0 ? err : -err);
    bf_wire_start(&w, buf, sizeof(buf), h->op | BF_OP_REPLY, BF_MSG_ERROR, h->id);
    bf_wire_bytes(&w, name ? name : "EIO", strlen(name ? name : "EIO"));
    send_msg(fd, &w);
}

/* ---- files -------------------------------------------------------------- */

static struct ofile *ofile_find(uint64_t id)
{
    for (struct ofile *o = S.files; o; o = o->next)
        if (o->id == id)
            return o;
    return NULL;
}

/* The bf_file of open file id (NULL: not open). */
static bf_file *file_of(uint64_t id)
{
    pthread_mutex_lock(&S.lock);
    struct ofile *o = ofile_find(id);
    bf_file *f = o ? o->f : NULL;
    pthread_mutex_unlock(&S.lock);
    return f;
}

static void set_tx(uint64_t id, bool on)
{
    pthread_mutex_lock(&S.lock);
    struct ofile *o = ofile_find(id);
    if (o)
        o->tx = on;
    pthread_mutex_unlock(&S.lock);
}

/* Close o, no longer on S.files, rolling back its transaction; free it. */
static void ofile_close(struct ofile *o)
{
    if (o->tx)
        o->f->ops->abort(o->f);
    if (S.db)
        bf_db_file_close(S.db, o->f);
    else
        free(o->f); /* --pattern: the file is only its bf_file */
    free(o);
}

/* Close every open file (at the end of a connection), rolling back. */
static void close_all(void)
{
    pthread_mutex_lock(&S.lock);
    while (S.files) {
        struct ofile *o = S.files;
        S.files = o->next;
        ofile_close(o);
    }
    pthread_mutex_unlock(&S.lock);
}

static void pattern_info(struct bf_fileinfo *fi)
{
    memset(fi, 0, sizeof(*fi));
    fi->id = 1;
    strcpy(fi->name, "pattern");
    fi->blksize = S.pblksize;
    fi->size = S.psize;
    fi->mode = 0444;
}

/* ---- the requests -------------------------------------------------------- */

static int list_one(void *arg, const struct bf_fileinfo *fi);

struct lister {
    int fd;
    const struct bf_msghdr *h;
    unsigned char buf[BF_PROTO_MSG_MAX];
    struct bf_wbuf w;
    uint32_t count;
};

static void list_start(struct lister *ls)
{
    bf_wire_start(&ls->w, ls->buf, sizeof(ls->buf), ls->h->op | BF_OP_REPLY, 0, ls->h->id);
    bf_wire_u32(&ls->w, 0);
    ls->count = 0;
}

static void list_flush(struct lister *ls, bool more)
{
    uint32_t c = htole32(ls->count);
    memcpy(ls->buf + BF_PROTO_HDR, &c, sizeof(c));
    bf_wire_set_flags(&ls->w, more ? BF_MSG_MORE : 0);
    send_msg(ls->fd, &ls->w);
    list_start(ls);
}

static int list_one(void *arg, const struct bf_fileinfo *fi)
{
    struct lister *ls = arg;
    size_t before = ls->w.len;
    bf_wire_info(&ls->w, fi);
    if (!bf_wire_ok(&ls->w)) {
        ls->w.len = before;
        ls->w.overflow = false;
        list_flush(ls, true);
        bf_wire_info(&ls->w, fi);
    }
    ls->count++;
    return 0;
}

static void do_list(int fd, const struct bf_msghdr *h)
{
    struct lister *ls = malloc(sizeof(*ls));
    if (!ls) {
        reply_err(fd, h, ENOMEM);
        return;
    }
    ls->fd = fd;
    ls->h = h;
    list_start(ls);
    int r = 0;
    if (S.db) {
        r = bf_db_list(S.db, list_one, ls);
    } else {
        struct bf_fileinfo fi;
        pattern_info(&fi);
        list_one(ls, &fi);
    }
    if (r < 0)
        reply_err(fd, h, -r);
    else
        list_flush(ls, false);
    free(ls);
}

/* LOAD: the faults first, then the block into the area. */
static int do_load(int fd, const struct bf_msghdr *h, uint64_t id, uint64_t blk, uint64_t off,
                   uint32_t len, struct bf_wbuf *w)
{
    pthread_mutex_lock(&S.lock);
    uint64_t nth = ++S.nloads;
    pthread_mutex_unlock(&S.lock);
    if (nth == S.crash_load && fault_fires())
        _exit(3);
    if (nth == S.hang_load && fault_fires())
        for (;;)
            pause();
    if (nth == S.junk_load && fault_fires()) {
        unsigned char big[70000];
        struct bf_wbuf j;
        memset(big, 0, sizeof(big));
        bf_wire_start(&j, big, sizeof(big), h->op | BF_OP_REPLY, 0, h->id);
        if (!strcmp(S.junk, "op")) {
            bf_wire_start(&j, big, sizeof(big), BF_OP_OPEN | BF_OP_REPLY, 0, h->id);
            bf_wire_u32(&j, 0);
        } else if (!strcmp(S.junk, "len")) {
            bf_wire_u16(&j, 0);
        } else if (!strcmp(S.junk, "id")) {
            bf_wire_start(&j, big, sizeof(big), h->op | BF_OP_REPLY, 0, h->id + 1000);
            bf_wire_u32(&j, 0);
        } else if (!strcmp(S.junk, "errno")) {
            bf_wire_set_flags(&j, BF_MSG_ERROR);
            bf_wire_bytes(&j, "EWHATEVER", 9);
        } else if (!strcmp(S.junk, "big")) {
            j.len = sizeof(big);
        } else if (!strcmp(S.junk, "request")) {
            bf_wire_start(&j, big, sizeof(big), BF_OP_LOAD, 0, h->id);
        } else if (!strcmp(S.junk, "short")) {
            j.len = 4;
        } else { /* more */
            bf_wire_set_flags(&j, BF_MSG_MORE);
            bf_wire_u32(&j, 0);
        }
        send_msg(fd, &j);
        return 1; /* answered */
    }
    if (S.reorder && blk == 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        pthread_mutex_lock(&S.lock);
        while (!S.blk1_answered && pthread_cond_timedwait(&S.cond, &S.lock, &until) == 0)
            ;
        pthread_mutex_unlock(&S.lock);
    }
    if (!S.area || off > S.area_size || len > S.area_size - off)
        return -EINVAL;
    int r;
    if (!S.db) {
        if (id != 1)
            return -ENOENT;
        if (len != S.pblksize)
            return -EINVAL;
        bench_pattern_fill((uint64_t *)(S.area + off), len, blk * len, S.pseed);
        r = 0;
    } else {
        bf_file *f = file_of(id);
        if (!f)
            return -EBADF;
        if (len != f->blksize)
            return -EINVAL;
        r = f->ops->loadblk(f, blk, BF_SERIAL_NOW, S.area + off, NULL);
    }
    if (r == 0)
        bf_wire_u32(w, 0);
    return r;
}

static int do_commit(uint64_t id, uint32_t flags, uint64_t size)
{
    pthread_mutex_lock(&S.lock);
    uint64_t nth = ++S.ncommits;
    pthread_mutex_unlock(&S.lock);
    if (nth == S.crash_commit && fault_fires())
        _exit(3);
    bf_file *f = file_of(id);
    if (!f)
        return -EBADF;
    struct bf_commit_req req = { .flags = (flags & BF_COMMIT_OVER) ? BF_COMMIT_OVERWRITE : 0,
                                 .size_set = (flags & BF_COMMIT_SIZE) != 0,
                                 .size = size,
                                 .size_base = BF_SERIAL_NOW,
                                 .file_base = BF_SERIAL_NOW };
    uint64_t serial;
    int r = f->ops->commit(f, &req, &serial);
    set_tx(id, false);
    return r;
}

static int do_open(uint64_t id, struct bf_wbuf *w)
{
    bf_file *f;
    if (!S.db) {
        if (id != 1)
            return -ENOENT;
        f = calloc(1, sizeof(*f));
        if (!f)
            return -ENOMEM;
        f->blksize = S.pblksize;
        f->size = S.psize;
    } else {
        int r = bf_db_file_open(S.db, id, &f);
        if (r < 0)
            return r;
    }
    struct ofile *o = calloc(1, sizeof(*o));
    if (!o) {
        if (S.db)
            bf_db_file_close(S.db, f);
        else
            free(f);
        return -ENOMEM;
    }
    o->id = id;
    o->f = f;
    pthread_mutex_lock(&S.lock);
    o->next = S.files;
    S.files = o;
    pthread_mutex_unlock(&S.lock);
    bf_wire_u64(w, f->size);
    bf_wire_u32(w, f->blksize);
    return 0;
}

static int do_close(uint64_t id)
{
    pthread_mutex_lock(&S.lock);
    struct ofile **pp = &S.files;
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    struct ofile *o = *pp;
    if (o)
        *pp = o->next;
    pthread_mutex_unlock(&S.lock);
    if (!o)
        return -EBADF;
    ofile_close(o);
    return 0;
}

/* The namespace requests (a --pattern server changes nothing). */
static int do_namespace(const struct bf_msghdr *h, struct bf_rbuf *r, struct bf_wbuf *w)
{
    char name[BF_NAME_MAX + 1], name2[BF_NAME_MAX + 1];
    struct bf_fileinfo fi, fj;
    int e = 0;
    if (!S.db) {
        if (h->op == BF_OP_LOOKUP || h->op == BF_OP_GETINFO) {
            pattern_info(&fi);
            if (h->op == BF_OP_LOOKUP)
                e = bf_wire_get_cstr(r, name, sizeof(name)) < 0 || strcmp(name, fi.name) ? -ENOENT
                                                                                         : 0;
            else
                e = bf_wire_get_u64(r) == 1 ? 0 : -ENOENT;
            if (e == 0)
                bf_wire_info(w, &fi);
            return e;
        }
        return -EROFS;
    }
    switch (h->op) {
    case BF_OP_LOOKUP:
        if ((e = bf_wire_get_cstr(r, name, sizeof(name))) < 0)
            return -EINVAL;
        if ((e = bf_db_lookup(S.db, name, &fi)) == 0)
            bf_wire_info(w, &fi);
        return e;
    case BF_OP_GETINFO:
        if ((e = bf_db_getinfo(S.db, bf_wire_get_u64(r), &fi)) == 0)
            bf_wire_info(w, &fi);
        return e;
    case BF_OP_CREATE: {
        uint32_t bs = bf_wire_get_u32(r), mode = bf_wire_get_u32(r), uid = bf_wire_get_u32(r),
                 gid = bf_wire_get_u32(r);
        uint64_t size = bf_wire_get_u64(r);
        if (bf_wire_get_cstr(r, name, sizeof(name)) < 0)
            return -EINVAL;
        if ((e = bf_db_create(S.db, name, bs, size, mode, uid, gid, &fi)) == 0)
            bf_wire_info(w, &fi);
        return e;
    }
    case BF_OP_UNLINK:
        if (bf_wire_get_cstr(r, name, sizeof(name)) < 0)
            return -EINVAL;
        if ((e = bf_db_lookup(S.db, name, &fi)) == 0 && (e = bf_db_unlink(S.db, name)) == 0)
            bf_wire_u64(w, fi.id);
        return e;
    case BF_OP_RENAME: {
        uint32_t flags = bf_wire_get_u32(r);
        if (bf_wire_get_cstr(r, name, sizeof(name)) < 0 ||
            bf_wire_get_cstr(r, name2, sizeof(name2)) < 0)
            return -EINVAL;
        if ((e = bf_db_lookup(S.db, name, &fi)) < 0)
            return e;
        if (bf_db_lookup(S.db, name2, &fj) < 0 || strcmp(name, name2) == 0)
            fj.id = 0;
        if ((e = bf_db_rename(S.db, name, name2, flags)) == 0) {
            bf_wire_u64(w, fi.id);
            bf_wire_u64(w, fj.id);
        }
        return e;
    }
    case BF_OP_SETATTR: {
        uint64_t id = bf_wire_get_u64(r);
        uint32_t set = bf_wire_get_u32(r), mode = bf_wire_get_u32(r), uid = bf_wire_get_u32(r),
                 gid = bf_wire_get_u32(r);
        int64_t mt = bf_wire_get_i64(r);
        return bf_db_setattr(S.db, id, (set & BF_SET_MODE) ? &mode : NULL,
                             (set & BF_SET_UID) ? &uid : NULL, (set & BF_SET_GID) ? &gid : NULL,
                             (set & BF_SET_MTIME) ? &mt : NULL);
    }
    case BF_OP_SETBLKSIZE: {
        uint64_t id = bf_wire_get_u64(r);
        return bf_db_set_blksize(S.db, id, bf_wire_get_u32(r));
    }
    }
    return -ENOSYS;
}

/* One request: its reply (or none, for a fault). */
static void handle(int fd, const unsigned char *msg, size_t n)
{
    unsigned char out[1024];
    struct bf_rbuf r;
    struct bf_msghdr h;
    struct bf_wbuf w;
    int e = 0;
    bf_wire_read(&r, msg, n);
    if (!bf_wire_hdr(&r, &h))
        return;
    bf_wire_start(&w, out, sizeof(out), h.op | BF_OP_REPLY, 0, h.id);
    bool tx = h.op == BF_OP_BEGIN || h.op == BF_OP_STORE || h.op == BF_OP_TRUNCATE ||
              h.op == BF_OP_COMMIT || h.op == BF_OP_ABORT || h.op == BF_OP_CLOSE;
    if (tx)
        pthread_mutex_lock(&S.txlock);
    switch (h.op) {
    case BF_OP_LIST:
        do_list(fd, &h);
        return;
    case BF_OP_OPEN:
        e = do_open(bf_wire_get_u64(&r), &w);
        break;
    case BF_OP_CLOSE:
        e = do_close(bf_wire_get_u64(&r));
        break;
    case BF_OP_LOAD: {
        uint64_t id = bf_wire_get_u64(&r), blk = bf_wire_get_u64(&r), off = bf_wire_get_u64(&r);
        uint32_t len = bf_wire_get_u32(&r);
        e = do_load(fd, &h, id, blk, off, len, &w);
        if (e == 1)
            return;
        if (e == 0 && blk == 1 && S.reorder) {
            send_msg(fd, &w);
            pthread_mutex_lock(&S.lock);
            S.blk1_answered = true;
            pthread_cond_broadcast(&S.cond);
            pthread_mutex_unlock(&S.lock);
            return;
        }
        break;
    }
    case BF_OP_BEGIN: {
        uint64_t id = bf_wire_get_u64(&r);
        bf_file *f = file_of(id);
        e = !S.db ? -EROFS : f ? f->ops->begin(f) : -EBADF;
        if (e == 0)
            set_tx(id, true);
        break;
    }
    case BF_OP_STORE: {
        uint64_t id = bf_wire_get_u64(&r), blk = bf_wire_get_u64(&r), off = bf_wire_get_u64(&r);
        uint32_t len = bf_wire_get_u32(&r), flags = bf_wire_get_u32(&r);
        bf_file *f = file_of(id);
        if (!f)
            e = -EBADF;
        else if (len != f->blksize ||
                 (!(flags & BF_STORE_HOLE) && (off > S.area_size || len > S.area_size - off)))
            e = -EINVAL;
        else if (flags & BF_STORE_HOLE) {
            void *zero = calloc(1, len);
            e = zero ? f->ops->storeblk(f, blk, zero, BF_SERIAL_NOW) : -ENOMEM;
            free(zero);
        } else {
            e = f->ops->storeblk(f, blk, S.area + off, BF_SERIAL_NOW);
        }
        break;
    }
    case BF_OP_TRUNCATE: {
        uint64_t id = bf_wire_get_u64(&r);
        bf_file *f = file_of(id);
        e = f ? f->ops->truncate(f, bf_wire_get_u64(&r)) : -EBADF;
        break;
    }
    case BF_OP_COMMIT: {
        uint64_t id = bf_wire_get_u64(&r);
        uint32_t flags = bf_wire_get_u32(&r);
        e = do_commit(id, flags, bf_wire_get_u64(&r));
        break;
    }
    case BF_OP_SEEKDATA:
    case BF_OP_STORED: {
        uint64_t id = bf_wire_get_u64(&r), v = 0;
        bf_file *f = file_of(id);
        if (!f || !S.db)
            e = !f ? -EBADF : -ENOSYS; /* a pattern: every block is data */
        else if (h.op == BF_OP_SEEKDATA)
            e = f->ops->next_stored(f, bf_wire_get_u64(&r), &v);
        else
            e = f->ops->stored_blocks(f, &v);
        if (e == 0)
            bf_wire_u64(&w, v);
        break;
    }
    case BF_OP_ABORT: {
        uint64_t id = bf_wire_get_u64(&r);
        bf_file *f = file_of(id);
        if (f)
            f->ops->abort(f);
        set_tx(id, false);
        break;
    }
    default:
        e = do_namespace(&h, &r, &w);
        break;
    }
    if (tx)
        pthread_mutex_unlock(&S.txlock);
    if (e == 0 && !bf_wire_ok(&w))
        e = -EOVERFLOW;
    if (e < 0)
        reply_err(fd, &h, -e);
    else
        send_msg(fd, &w);
}

/* ---- connections ----------------------------------------------------------- */

/* Receive and answer HELLO. Returns 0, or -1 (the connection is done). */
static int hello(int fd, bool refuse)
{
    unsigned char msg[512], out[128];
    size_t n;
    int memfd = -1;
    struct bf_rbuf r;
    struct bf_msghdr h;
    struct bf_wbuf w;
    if (bf_wire_recv(fd, msg, sizeof(msg), &n, &memfd) < 0)
        return -1;
    bf_wire_read(&r, msg, n);
    if (!bf_wire_hdr(&r, &h) || h.op != BF_OP_HELLO) {
        if (memfd >= 0)
            close(memfd);
        return -1;
    }
    if (refuse) {
        reply_err(fd, &h, EBUSY);
        if (memfd >= 0)
            close(memfd);
        return -1;
    }
    const void *magic = bf_wire_get_bytes(&r, 4);
    bf_wire_get_u16(&r); /* vmin */
    bf_wire_get_u16(&r); /* vmax */
    bf_wire_get_u32(&r); /* flags */
    uint64_t size = bf_wire_get_u64(&r);
    if (!magic || memcmp(magic, BF_PROTO_MAGIC, 4) != 0 || memfd < 0) {
        reply_err(fd, &h, EPROTO);
        if (memfd >= 0)
            close(memfd);
        return -1;
    }
    void *area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    close(memfd);
    if (area == MAP_FAILED) {
        reply_err(fd, &h, errno);
        return -1;
    }
    pthread_mutex_lock(&S.lock);
    if (S.area)
        munmap(S.area, S.area_size);
    S.area = area;
    S.area_size = size;
    pthread_mutex_unlock(&S.lock);
    bf_wire_start(&w, out, sizeof(out), BF_OP_HELLO | BF_OP_REPLY, 0, h.id);
    bf_wire_bytes(&w, BF_PROTO_MAGIC, 4);
    bf_wire_u16(&w, (uint16_t)S.version);
    bf_wire_u16(&w, 0);
    bf_wire_u32(&w, 0);
    bf_wire_str(&w, "blockd", 6);
    send_msg(fd, &w);
    return 0;
}

static void *worker(void *arg)
{
    int fd = (int)(intptr_t)arg;
    unsigned char *buf = malloc(BF_PROTO_MSG_MAX);
    size_t n;
    while (buf && bf_wire_recv(fd, buf, BF_PROTO_MSG_MAX, &n, NULL) == 0) {
        epoch_pass();
        handle(fd, buf, n);
    }
    free(buf);
    return NULL;
}

/* Serve one connection to its end with S.threads threads. */
static void serve(int fd)
{
    pthread_t t[64];
    unsigned n = S.threads > 64 ? 64 : S.threads;
    for (unsigned i = 1; i < n; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)fd) != 0)
            die("pthread_create");
    worker((void *)(intptr_t)fd);
    for (unsigned i = 1; i < n; i++)
        pthread_join(t[i], NULL);
    close_all();
}

static void *one_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    pthread_mutex_lock(&S.lock);
    bool refuse = S.busy;
    S.busy = true;
    pthread_mutex_unlock(&S.lock);
    if (hello(fd, refuse) == 0)
        serve(fd);
    close(fd);
    if (!refuse) {
        pthread_mutex_lock(&S.lock);
        S.busy = false;
        pthread_mutex_unlock(&S.lock);
    }
    return NULL;
}

static void listen_on(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0 || strlen(path) >= sizeof(a.sun_path))
        die("socket");
    strcpy(a.sun_path, path);
    unlink(path);
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 4) < 0)
        die("bind/listen");
    for (;;) {
        int fd = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        pthread_t t;
        if (fd < 0)
            continue;
        if (pthread_create(&t, NULL, one_conn, (void *)(intptr_t)fd) != 0)
            die("pthread_create");
        pthread_detach(t);
    }
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "pattern", required_argument, NULL, 'p' },
        { "threads", required_argument, NULL, 't' },
        { "reorder", no_argument, NULL, 'r' },
        { "version", required_argument, NULL, 'V' },
        { "crash-load", required_argument, NULL, 'c' },
        { "hang-load", required_argument, NULL, 'h' },
        { "junk-load", required_argument, NULL, 'j' },
        { "crash-commit", required_argument, NULL, 'C' },
        { "once", required_argument, NULL, 'o' },
        { "exit-if", required_argument, NULL, 'x' },
        { "count", required_argument, NULL, 'n' },
        { "listen", required_argument, NULL, 'l' },
        { NULL, 0, NULL, 0 },
    };
    const char *pattern = NULL, *exit_if = NULL, *count = NULL, *listen_path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'p':
            pattern = optarg;
            break;
        case 't':
            S.threads = (unsigned)atoi(optarg);
            break;
        case 'r':
            S.reorder = true;
            break;
        case 'V':
            S.version = (unsigned)atoi(optarg);
            break;
        case 'c':
            S.crash_load = strtoull(optarg, NULL, 10);
            break;
        case 'h':
            S.hang_load = strtoull(optarg, NULL, 10);
            break;
        case 'j': {
            char *colon;
            S.junk_load = strtoull(optarg, &colon, 10);
            S.junk = *colon == ':' ? colon + 1 : "op";
            break;
        }
        case 'C':
            S.crash_commit = strtoull(optarg, NULL, 10);
            break;
        case 'o':
            S.once = optarg;
            break;
        case 'x':
            exit_if = optarg;
            break;
        case 'n':
            count = optarg;
            break;
        case 'l':
            listen_path = optarg;
            break;
        default:
            die("usage: blockd [options] DB | --pattern SIZE:BLKSIZE:SEED");
        }
    }
    if (exit_if && access(exit_if, F_OK) == 0)
        exit(1);
    if (count) {
        FILE *fp = fopen(count, "a");
        if (fp) {
            fprintf(fp, "start %d\n", (int)getpid());
            fclose(fp);
        }
    }
    if (pattern) {
        unsigned long long size, bs, seed;
        if (sscanf(pattern, "%llu:%llu:%llu", &size, &bs, &seed) != 3 || !bf_blksize_valid(bs))
            die("--pattern SIZE:BLKSIZE:SEED");
        S.psize = size;
        S.pblksize = (uint32_t)bs;
        S.pseed = seed;
    } else {
        char err[512];
        if (optind != argc - 1)
            die("usage: blockd [options] DB | --pattern SIZE:BLKSIZE:SEED");
        int r = bf_db_open(argv[optind], BF_DB_CREATE, &S.db, err, sizeof(err));
        if (r < 0) {
            fprintf(stderr, "blockd: %s\n", err);
            exit(2);
        }
        /* The protocol has no history: DB keeps none (mem: has none). */
        r = bf_db_history_keep(S.db, 0);
        if (r < 0 && r != -EOPNOTSUPP) {
            fprintf(stderr, "blockd: %s: cannot turn its history off: %s\n", argv[optind],
                    strerror(-r));
            exit(2);
        }
    }
    if (listen_path) {
        listen_on(listen_path); /* never returns */
    } else {
        const char *e = getenv(BF_PROTO_FD_ENV);
        if (!e)
            die(BF_PROTO_FD_ENV " is not set (run me as exec:blockd, or with --listen)");
        int fd = atoi(e);
        if (hello(fd, false) == 0)
            serve(fd);
        close(fd);
    }
    bf_db_close(S.db);
    return 0;
}
