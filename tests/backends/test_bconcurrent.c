/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/backends: the backends under concurrency, also run
 * under ThreadSanitizer (make check-concurrency):
 *  - concurrent loadblk from several threads while another commits new
 *    versions of every block, against both backends: each loaded block is
 *    one whole committed version (never torn, never an uncommitted one),
 *    and the version a thread sees for a block never goes back; the same
 *    with SQLite's loadblk_send, whose bytes must stay whole while they
 *    are sent although the commits reuse extents in place;
 *  - the layer's per-file rules: handles opening and closing while the
 *    block size changes and the name is removed;
 *  - point-in-time views opened and closed by several threads (the pins
 *    counted per serial) while versions are committed and the gc runs;
 *  - the memory backend's held calls, released from another thread;
 *  - SQLite's WAL checkpoints, run by whichever committer finds the WAL
 *    too big, while another file commits and loads go on;
 *  - the watcher of one session against another session's commits, its
 *    own session's loads and syncs, and the housekeeping, on both
 *    backends;
 *  - a block server (tests/proto/blockd answering with several threads,
 *    out of order): the loads during commits above, and loads of many
 *    threads through a crash of the server, each one whole or -EIO, then
 *    whole again from the restarted server.
 * Compiled with -DTB_PG (test_bconcurrent_pg, with a private PostgreSQL
 * server), the tests that are not about one engine's own machinery run on
 * the PostgreSQL engine instead. */
#include <pthread.h>

#include "helpers.h"
#include "backends/proto.h"

#define BS 4096u
#define NBLK 32
#define NVERSIONS 20
#define NREADERS 4

struct shared {
    bf_db *db;
    uint64_t id;
    int done;   /* atomic: the writer finished */
    int failed; /* atomic: a reader saw something wrong */
    char why[256];
    uint64_t loads; /* atomic */
    bool send;      /* readers use loadblk_send where they can */
};

/* A sink that reads what it is sent, while it is being sent. */
struct read_sink {
    struct bf_sink sink;
    void *buf;
    int err;
};

static int read_sent(struct bf_sink *sink, int fd, uint64_t pos, size_t len)
{
    struct read_sink *rs = (struct read_sink *)sink;
    rs->err = pread(fd, rs->buf, len, (off_t)pos) == (ssize_t)len ? 0 : -EIO;
    return 0;
}

/* Block blk, current version, into buf: loaded, or sent to it. */
static int load_or_send(bf_file *f, uint64_t blk, void *buf, bool send)
{
    if (send) {
        struct read_sink rs = { .sink = { .send = read_sent }, .buf = buf };
        int r = f->ops->loadblk_send(f, blk, BF_SERIAL_NOW, 0, BS, &rs.sink);
        if (r == 0)
            return rs.err;
        if (r != -ENODATA)
            return r;
    }
    return tb_load(f, blk, buf);
}

/* The version tb_fill wrote into buf for blk, or -1 if buf is no version. */
static int version_of(const void *buf, uint64_t blk)
{
    const uint32_t *w = buf;
    uint32_t tag = (w[0] ^ (uint32_t)(blk * 2654435761u) ^ 0x80000000u) >> 24;
    if (tag > NVERSIONS || !tb_check(buf, BS, blk, tag))
        return -1;
    return (int)tag;
}

static void fail(struct shared *s, const char *what, uint64_t blk, int v)
{
    if (__atomic_exchange_n(&s->failed, 1, __ATOMIC_SEQ_CST) == 0)
        snprintf(s->why, sizeof(s->why), "%s: block %llu version %d", what, (unsigned long long)blk,
                 v);
}

static void *reader(void *arg)
{
    struct shared *s = arg;
    bf_file *f;
    int seen[NBLK];
    void *buf = malloc(BS);
    unsigned seed = (unsigned)(uintptr_t)&seen;
    if (!buf || bf_db_file_open(s->db, s->id, &f) < 0) {
        fail(s, "setup", 0, 0);
        free(buf);
        return NULL;
    }
    for (int i = 0; i < NBLK; i++)
        seen[i] = 0;
    int rounds_after_done = 0;
    while (rounds_after_done < 2 && !__atomic_load_n(&s->failed, __ATOMIC_SEQ_CST)) {
        if (__atomic_load_n(&s->done, __ATOMIC_SEQ_CST))
            rounds_after_done++;
        for (int i = 0; i < NBLK; i++) {
            uint64_t blk = (uint64_t)(rand_r(&seed) % NBLK);
            int r = load_or_send(f, blk, buf, s->send && f->ops->loadblk_send);
            if (r < 0) {
                fail(s, "loadblk failed", blk, r);
                break;
            }
            int v = version_of(buf, blk);
            if (v < 0)
                fail(s, "torn or unknown content", blk, v);
            else if (v < seen[blk])
                fail(s, "went back in time", blk, v);
            else
                seen[blk] = v;
            __atomic_add_fetch(&s->loads, 1, __ATOMIC_RELAXED);
        }
    }
    bf_db_file_close(s->db, f);
    free(buf);
    return NULL;
}

static void run(bf_db *db, bool send)
{
    struct shared s = { .db = db, .send = send };
    struct bf_fileinfo fi;
    bf_file *w;
    pthread_t th[NREADERS];

    cr_assert_eq(bf_db_create(db, "c", BS, 0, 0644, 0, 0, &fi), 0);
    s.id = fi.id;
    cr_assert_eq(bf_db_file_open(db, s.id, &w), 0);
    tb_store_range(w, 0, NBLK, 1, NBLK * BS);
    for (int i = 0; i < NREADERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, reader, &s), 0);
    for (unsigned v = 2; v <= NVERSIONS && !__atomic_load_n(&s.failed, __ATOMIC_SEQ_CST); v++)
        tb_store_range(w, 0, NBLK, v, NBLK * BS);
    __atomic_store_n(&s.done, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < NREADERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(s.failed, 0, "%s", s.why);
    cr_assert_gt(s.loads, 0);
    for (uint64_t b = 0; b < NBLK; b++)
        tb_expect(w, b, NVERSIONS);
    bf_db_file_close(db, w);
}

static void loads_during_commits(int engine)
{
    struct tb t;
    bf_db *db = tb_open(&t, engine);
    run(db, false);
    bf_db_close(db);
    tb_done(&t);
}

#ifndef TB_PG
Test(concurrent, memory_loads_during_commits, .timeout = 60)
{
    loads_during_commits(TB_MEMORY);
}

Test(concurrent, sqlite_loads_during_commits, .timeout = 60)
{
    loads_during_commits(TB_SQLITE);
}

Test(concurrent, sqlite_sends_during_commits, .timeout = 60)
{
    struct tb t;
    bf_db *db = tb_open(&t, TB_SQLITE);
    run(db, true);
    bf_db_close(db);
    tb_done(&t);
}
#else
Test(concurrent, pg_loads_during_commits, .timeout = 60)
{
    loads_during_commits(TB_PGSQL);
}
#endif

#ifndef TB_PG /* block servers */
/* A block server (blockd with opts) for t. */
static bf_db *proto_open(struct tb *t, const char *opts)
{
    bf_db *db = NULL;
    char err[512] = "";
    memset(t, 0, sizeof(*t));
    t->kind = TB_PROTO_C;
    tb_mkdir(t);
    char o[256];
    snprintf(o, sizeof(o), opts, t->dir);
    tb_proto_spec(t, TB_PROTO_C, o);
    int r = bf_db_open(t->spec, BF_DB_CREATE, &db, err, sizeof(err));
    cr_assert_eq(r, 0, "%s: %s", t->spec, err);
    return db;
}

Test(concurrent, proto_loads_during_commits, .timeout = 120)
{
    struct tb t;
    bf_db *db = proto_open(&t, "--threads 4");
    run(db, false);
    bf_db_close(db);
    tb_rmdir(&t);
}

struct crashy {
    bf_file *f;
    int failed, ok_after; /* loads that failed (-EIO), whole loads after the last failure */
    char why[128];
};

/* Load every block over and over: each load is whole or -EIO; once the
 * restarted server answers, loads are whole again. */
static void *crashy_loader(void *arg)
{
    struct crashy *c = arg;
    void *buf = malloc(BS);
    for (int round = 0; buf && round < 20; round++) {
        for (uint64_t b = 0; b < NBLK; b++) {
            int r = tb_load(c->f, b, buf);
            if (r == -EIO) {
                c->failed++;
                c->ok_after = 0;
            } else if (r < 0 || !tb_check(buf, BS, b, 1)) {
                snprintf(c->why, sizeof(c->why), "block %llu: %d or torn", (unsigned long long)b,
                         r);
                free(buf);
                return NULL;
            } else {
                c->ok_after++;
            }
        }
    }
    free(buf);
    return NULL;
}

Test(concurrent, proto_loads_through_a_crash, .timeout = 120)
{
    struct tb t;
    bf_file *w;
    struct bf_fileinfo fi;
    pthread_t th[NREADERS];
    struct crashy c[NREADERS];
    bf_db *db = proto_open(&t, "--threads 4 --crash-load 100 --once %s/marker");
    cr_assert_eq(bf_db_create(db, "c", BS, 0, 0644, 0, 0, &fi), 0);
    cr_assert_eq(bf_db_file_open(db, fi.id, &w), 0);
    tb_store_range(w, 0, NBLK, 1, NBLK * BS);
    for (int i = 0; i < NREADERS; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        cr_assert_eq(bf_db_file_open(db, fi.id, &c[i].f), 0);
        cr_assert_eq(pthread_create(&th[i], NULL, crashy_loader, &c[i]), 0);
    }
    int failed = 0;
    for (int i = 0; i < NREADERS; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(c[i].why[0], '\0', "%s", c[i].why);
        cr_assert_gt(c[i].ok_after, 0, "whole loads after the restart");
        failed += c[i].failed;
        bf_db_file_close(db, c[i].f);
    }
    cr_assert_gt(failed, 0, "the crash failed the loads in flight");
    cr_assert_geq(bf_proto_starts(db), 2);
    bf_db_file_close(db, w);
    bf_db_close(db);
    tb_rmdir(&t);
}

#endif /* block servers */

struct many {
    bf_db *db;
    uint64_t id;
    int failed; /* atomic */
};

static void *many_loader(void *arg)
{
    struct many *m = arg;
    bf_file *f;
    void *buf = malloc(BS);
    if (!buf || bf_db_file_open(m->db, m->id, &f) < 0) {
        __atomic_store_n(&m->failed, 1, __ATOMIC_SEQ_CST);
        free(buf);
        return NULL;
    }
    for (int i = 0; i < 50; i++) {
        uint64_t blk = (uint64_t)i % NBLK;
        if (tb_load(f, blk, buf) < 0 || !tb_check(buf, BS, blk, 1))
            __atomic_store_n(&m->failed, 1, __ATOMIC_SEQ_CST);
    }
    bf_db_file_close(m->db, f);
    free(buf);
    return NULL;
}

/* More loading threads than the backend keeps reader connections
 * (SQLite: 16; PostgreSQL: 4 by default): the extra ones wait for a free
 * connection, none fails. */
static void more_threads_than_readers(int engine)
{
    enum {
        NTHREADS = 24
    };
    struct tb t;
    struct bf_fileinfo fi;
    bf_file *w;
    pthread_t th[NTHREADS];
    bf_db *db = tb_open(&t, engine);
    struct many m = { .db = db };
    cr_assert_eq(bf_db_create(db, "m", BS, 0, 0644, 0, 0, &fi), 0);
    m.id = fi.id;
    cr_assert_eq(bf_db_file_open(db, m.id, &w), 0);
    tb_store_range(w, 0, NBLK, 1, NBLK * BS);
    for (int i = 0; i < NTHREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, many_loader, &m), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(m.failed, 0);
    bf_db_file_close(db, w);
    bf_db_close(db);
    tb_done(&t);
}

#ifndef TB_PG
Test(concurrent, sqlite_more_threads_than_readers, .timeout = 60)
{
    more_threads_than_readers(TB_SQLITE);
}
#else
Test(concurrent, pg_more_threads_than_readers, .timeout = 60)
{
    more_threads_than_readers(TB_PGSQL);
}
#endif

/* ---- the layer's per-file rules under concurrency ------------------------ */

#define RACERS 4
#define RACE_ROUNDS 200

struct race {
    bf_db *db;
    uint64_t id;
    int failed; /* atomic */
};

/* Open, load, close, again and again, until the file is gone. */
static void *open_close_loop(void *arg)
{
    struct race *rc = arg;
    void *buf = malloc(BF_BLKSIZE_MIN * 2);
    for (int i = 0; i < RACE_ROUNDS && buf; i++) {
        bf_file *f;
        int r = bf_db_file_open(rc->db, rc->id, &f);
        if (r == -ENOENT)
            break; /* purged */
        if (r < 0 || tb_load(f, 0, buf) < 0 || !tb_is_zero(buf, f->blksize) ||
            (f->blksize != BF_BLKSIZE_MIN && f->blksize != 2 * BF_BLKSIZE_MIN))
            __atomic_store_n(&rc->failed, 1, __ATOMIC_SEQ_CST);
        if (r == 0)
            bf_db_file_close(rc->db, f);
    }
    free(buf);
    return NULL;
}

/* Handles open and close while the block size changes under them (only
 * when none is open) and the name is removed: every handle sees one block
 * size, and the file is deleted when the last one closes. */
static void race_open_close_unlink(bf_db *db, struct tb *t)
{
    struct bf_fileinfo fi;
    pthread_t th[RACERS];
    cr_assert_eq(bf_db_create(db, "r", BF_BLKSIZE_MIN, 0, 0644, 0, 0, &fi), 0);
    struct race rc = { .db = db, .id = fi.id };
    for (int i = 0; i < RACERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, open_close_loop, &rc), 0);
    for (int i = 0; i < RACE_ROUNDS / 4; i++) {
        int r = bf_db_set_blksize(db, fi.id, (i & 1) ? BF_BLKSIZE_MIN : 2 * BF_BLKSIZE_MIN);
        cr_assert(r == 0 || r == -EBUSY, "set_blksize: %d", r);
    }
    cr_assert_eq(bf_db_unlink(db, "r"), 0);
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(rc.failed, 0);
    cr_assert_eq(bf_db_getinfo(db, fi.id, NULL), -ENOENT, "deleted at the last close");
    cr_assert_eq(tb_nblocks(t, db, fi.id), 0);
}

static void open_close_unlink(int engine)
{
    struct tb t;
    bf_db *db = tb_open(&t, engine);
    race_open_close_unlink(db, &t);
    bf_db_close(db);
    tb_done(&t);
}

#ifndef TB_PG
Test(concurrent, memory_open_close_unlink, .timeout = 60)
{
    open_close_unlink(TB_MEMORY);
}

Test(concurrent, sqlite_open_close_unlink, .timeout = 60)
{
    open_close_unlink(TB_SQLITE);
}
#else
Test(concurrent, pg_open_close_unlink, .timeout = 60)
{
    open_close_unlink(TB_PGSQL);
}
#endif

/* ---- views under concurrency --------------------------------------------- */

#define VIEW_ROUNDS 100

struct views_race {
    bf_db *db;
    uint64_t id;
    uint64_t serial[NVERSIONS]; /* serial[k]: the commit of version k + 1 */
    int nserial;                /* atomic: serials published so far */
    int failed;                 /* atomic */
    uint64_t loads;             /* atomic */
};

/* Open views of the published serials (the first round: the first one,
 * which the main thread pins meanwhile), load through each, close: a view
 * shows its version or is refused (-ENOENT: collected), never another. */
static void *view_loop(void *arg)
{
    struct views_race *vr = arg;
    void *buf = malloc(BS);
    unsigned seed = (unsigned)(uintptr_t)&seed;
    for (int i = 0; i < VIEW_ROUNDS && buf; i++) {
        int n = __atomic_load_n(&vr->nserial, __ATOMIC_ACQUIRE);
        int k = i == 0 ? 0 : (int)(rand_r(&seed) % (unsigned)n);
        bf_view *v = NULL;
        bf_file *f = NULL;
        int r = bf_db_view_open(vr->db, vr->serial[k], &v);
        if (r == -ENOENT && i > 0)
            continue; /* collected meanwhile */
        if (r == 0)
            r = bf_view_file_open(v, vr->id, &f);
        if (r == 0)
            r = tb_load(f, 0, buf);
        if (r < 0 || !tb_check(buf, BS, 0, (unsigned)k + 1))
            __atomic_store_n(&vr->failed, 1, __ATOMIC_SEQ_CST);
        else
            __atomic_add_fetch(&vr->loads, 1, __ATOMIC_RELAXED);
        bf_db_file_close(vr->db, f);
        bf_db_view_close(v);
    }
    free(buf);
    return NULL;
}

/* Threads open and close views of one serial and of others while new
 * versions are committed and the gc runs with no retention (so that the
 * pins alone decide, and a commit alone may free what it replaces when
 * no view pins anything): each view reads its own version, and when all
 * are closed no pin is left. */
static void views_while_committing(int engine)
{
    struct tb t;
    struct bf_fileinfo fi;
    struct bf_history h;
    pthread_t th[RACERS];
    bf_db *db = tb_open(&t, engine); /* no retention */
    tb_need_history(db, &t);
    cr_assert_eq(bf_db_create(db, "v", BS, 0, 0644, 0, 0, &fi), 0);
    bf_file *f;
    cr_assert_eq(bf_db_file_open(db, fi.id, &f), 0);
    struct views_race vr = { .db = db, .id = fi.id };
    vr.serial[0] = tb_store_range(f, 0, 1, 1, BS);
    vr.nserial = 1;
    bf_view *first;
    cr_assert_eq(bf_db_view_open(db, vr.serial[0], &first), 0);
    for (int i = 0; i < RACERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, view_loop, &vr), 0);
    for (int k = 1; k < NVERSIONS; k++) {
        vr.serial[k] = tb_store_range(f, 0, 1, (unsigned)k + 1, BS);
        __atomic_store_n(&vr.nserial, k + 1, __ATOMIC_RELEASE);
        if (k == NVERSIONS / 2) {
            bf_db_view_close(first);
            first = NULL;
        }
        if (k % 4 == 0)
            cr_assert_eq(bf_db_gc(db, NULL), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    bf_db_view_close(first);
    cr_assert_eq(vr.failed, 0, "a view read another version, or a call failed");
    cr_assert_geq(vr.loads, RACERS, "every thread read the pinned first serial");
    cr_assert_eq(bf_db_history(db, &h), 0);
    cr_assert_eq(h.pinned, 0, "no pin left");
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_done(&t);
}

#ifndef TB_PG
Test(concurrent, sqlite_views_while_committing, .timeout = 60)
{
    views_while_committing(TB_SQLITE);
}
#else
Test(concurrent, pg_views_while_committing, .timeout = 60)
{
    views_while_committing(TB_PGSQL);
}
#endif

#ifndef TB_PG /* the memory engine's held calls, SQLite's checkpoints */
struct held_load {
    bf_file *f;
    int r;
};

static void *held_loader(void *arg)
{
    struct held_load *h = arg;
    void *buf = malloc(BS);
    h->r = buf ? tb_load(h->f, 0, buf) : -ENOMEM;
    free(buf);
    return NULL;
}

/* Calls held in several threads at once, released from another. */
Test(concurrent, memory_hold_and_release, .timeout = 60)
{
    struct tb t;
    struct bf_fileinfo fi;
    pthread_t th[RACERS];
    struct held_load h[RACERS];
    bf_db *db = tb_open(&t, 0);
    cr_assert_eq(bf_db_create(db, "h", BS, 0, 0644, 0, 0, &fi), 0);
    struct bf_mem_fault rule = { .op = BF_MEM_LOADBLK, .blk_hi = UINT64_MAX, .hold = true };
    cr_assert_eq(bf_mem_inject(db, &rule), 0);
    for (int i = 0; i < RACERS; i++) {
        cr_assert_eq(bf_db_file_open(db, fi.id, &h[i].f), 0);
        cr_assert_eq(pthread_create(&th[i], NULL, held_loader, &h[i]), 0);
    }
    cr_assert_eq(bf_mem_wait_held(db, RACERS, 30000), 0);
    bf_mem_release(db);
    for (int i = 0; i < RACERS; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(h[i].r, 0);
        bf_db_file_close(db, h[i].f);
    }
    cr_assert_eq(bf_mem_held(db), 0);
    bf_db_close(db);
}

/* ---- SQLite: checkpoints while others commit and load --------------------- */

struct wal_writer {
    bf_db *db;
    uint64_t id;
    int r;
};

#define WAL_BS ((uint32_t)1 << 20)

/* Commit blocks of 1 MiB, a few at a time, to the writer's own file. */
static void *wal_write(void *arg)
{
    struct wal_writer *w = arg;
    bf_file *f = NULL;
    void *buf = malloc(WAL_BS);
    w->r = buf ? bf_db_file_open(w->db, w->id, &f) : -ENOMEM;
    for (uint64_t b = 0; w->r == 0 && b < 48; b += 8) {
        w->r = f->ops->begin(f);
        for (uint64_t i = b; w->r == 0 && i < b + 8; i++) {
            tb_fill(buf, WAL_BS, i, 1);
            w->r = tb_store(f, i, buf);
        }
        if (w->r == 0)
            w->r = tb_commit(f, (b + 8) * WAL_BS);
        else
            f->ops->abort(f);
    }
    bf_db_file_close(w->db, f);
    free(buf);
    return NULL;
}

struct wal_loader {
    bf_db *db;
    uint64_t id;
    int done;   /* atomic: the writers are done */
    int failed; /* atomic */
    uint64_t loads;
};

/* Load blocks of a file being written: each reads as zeros (not committed
 * yet) or as its committed content, never anything else. */
static void *wal_load(void *arg)
{
    struct wal_loader *l = arg;
    bf_file *f;
    void *buf = malloc(WAL_BS);
    if (!buf || bf_db_file_open(l->db, l->id, &f) < 0) {
        __atomic_store_n(&l->failed, 1, __ATOMIC_SEQ_CST);
        free(buf);
        return NULL;
    }
    for (uint64_t b = 0; !__atomic_load_n(&l->done, __ATOMIC_SEQ_CST); b = (b + 5) % 48) {
        if (tb_load(f, b, buf) < 0 || !(tb_is_zero(buf, WAL_BS) || tb_check(buf, WAL_BS, b, 1)))
            __atomic_store_n(&l->failed, 1, __ATOMIC_SEQ_CST);
        l->loads++;
    }
    bf_db_file_close(l->db, f);
    free(buf);
    return NULL;
}

/* Two files' writeouts together pass the WAL limit several times: the
 * checkpoints run in whichever committer finds the WAL too big, with
 * loads going on; everything committed reads back. */
Test(concurrent, sqlite_checkpoints_while_committing, .timeout = 120)
{
    struct tb t;
    struct bf_fileinfo fi;
    pthread_t th[2], tl;
    struct wal_writer w[2];
    bf_db *db = tb_open(&t, 1);
    for (int i = 0; i < 2; i++) {
        char name[8];
        snprintf(name, sizeof(name), "w%d", i);
        cr_assert_eq(bf_db_create(db, name, WAL_BS, 0, 0644, 0, 0, &fi), 0);
        w[i] = (struct wal_writer){ .db = db, .id = fi.id };
    }
    struct wal_loader l = { .db = db, .id = w[0].id };
    cr_assert_eq(pthread_create(&tl, NULL, wal_load, &l), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, wal_write, &w[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(w[i].r, 0, "writer %d: %d", i, w[i].r);
    }
    __atomic_store_n(&l.done, 1, __ATOMIC_SEQ_CST);
    pthread_join(tl, NULL);
    cr_assert_eq(l.failed, 0, "a load saw something else than zeros or committed content");
    cr_assert_gt(l.loads, 0);
    bf_file *f;
    void *buf = malloc(WAL_BS);
    cr_assert_eq(bf_db_file_open(db, w[1].id, &f), 0);
    for (uint64_t b = 0; b < 48; b += 7) {
        cr_assert_eq(tb_load(f, b, buf), 0);
        cr_assert(tb_check(buf, WAL_BS, b, 1), "block %llu", (unsigned long long)b);
    }
    bf_db_file_close(db, f);
    free(buf);
    bf_db_close(db);
    tb_rmdir(&t);
}

#endif /* TB_PG */

/* ---- the watcher against loads and commits ------------------------------- */

/* Session B watches while session A commits NVERSIONS versions of every
 * block (and A's watcher runs its housekeeping meanwhile). B's listener
 * loads the blocks each commit changed, as of its serial, as the daemon
 * re-reads what it invalidates; B's loaders read the current versions; a
 * thread syncs B again and again. Every load is a whole committed version,
 * never going back; the listener sees every commit once, in order. */
struct wshared {
    bf_db *a, *b;
    uint64_t id;
    bf_file *fb;
    int done;   /* atomic: A finished */
    int failed; /* atomic */
    char why[256];
    uint64_t delivered, last_serial; /* the listener's (the watcher thread only) */
    int last_version;
};

static void wfail(struct wshared *s, const char *what, uint64_t a, uint64_t b)
{
    if (__atomic_exchange_n(&s->failed, 1, __ATOMIC_SEQ_CST) == 0)
        snprintf(s->why, sizeof(s->why), "%s: %llu %llu", what, (unsigned long long)a,
                 (unsigned long long)b);
}

static void wlisten(void *arg, const struct bf_commit_rec *rec)
{
    struct wshared *s = arg;
    void *buf = malloc(BS);
    if (rec->serial <= s->last_serial)
        wfail(s, "out of order", rec->serial, s->last_serial);
    s->last_serial = rec->serial;
    s->delivered++;
    if (rec->kind == BF_COMMIT_WRITE && rec->file == s->id && buf) {
        for (size_t i = 0; i < rec->write.nranges; i++) {
            for (uint64_t b = rec->write.ranges[i].start;
                 b < rec->write.ranges[i].start + rec->write.ranges[i].count; b++) {
                int r = s->fb->ops->loadblk(s->fb, b, rec->serial, buf, NULL);
                /* each commit stores one version in every block */
                int v = r < 0 ? r : version_of(buf, b);
                if (v < 0)
                    wfail(s, "the listener's load failed or was torn", b, (uint64_t)-v);
                else if (v < s->last_version)
                    wfail(s, "the listener's load went back", b, (uint64_t)v);
                else
                    s->last_version = v;
            }
        }
    }
    free(buf);
}

static void *wloader(void *arg)
{
    struct wshared *s = arg;
    int seen[NBLK] = { 0 };
    void *buf = malloc(BS);
    while (buf && !__atomic_load_n(&s->done, __ATOMIC_SEQ_CST)) {
        for (uint64_t b = 0; b < NBLK; b++) {
            int v = tb_load(s->fb, b, buf) < 0 ? -1 : version_of(buf, b);
            if (v < 0 || v < seen[b])
                wfail(s, "a load saw a torn or older version", b, (uint64_t)v);
            else
                seen[b] = v;
        }
    }
    free(buf);
    return NULL;
}

static void *wsyncer(void *arg)
{
    struct wshared *s = arg;
    uint64_t last = 0, got;
    while (!__atomic_load_n(&s->done, __ATOMIC_SEQ_CST)) {
        if (bf_db_sync(s->b, &got) < 0 || got < last)
            wfail(s, "sync", got, last);
        if (bf_db_applied(s->b) < got)
            wfail(s, "applied behind a finished sync", bf_db_applied(s->b), got);
        last = got;
    }
    return NULL;
}

static void nothing(void *arg, const struct bf_commit_rec *rec)
{
    (void)arg;
    (void)rec;
}

static void watcher_run(int engine)
{
    struct tb t;
    struct bf_fileinfo fi;
    bf_file *fa;
    pthread_t tl[2], ts;
    struct wshared s = { 0 };
    s.a = tb_open_flags(&t, engine, BF_DB_SHARED);
    s.b = tb_session(&t, BF_DB_SHARED);
    cr_assert_eq(bf_db_create(s.a, "w", BS, 0, 0644, 0, 0, &fi), 0);
    s.id = fi.id;
    cr_assert_eq(bf_db_file_open(s.a, s.id, &fa), 0);
    tb_store_range(fa, 0, NBLK, 1, NBLK * BS);
    cr_assert_eq(bf_db_file_open(s.b, s.id, &s.fb), 0);
    uint64_t start = bf_db_applied(s.b);
    cr_assert_eq(bf_db_watch(s.a, nothing, NULL), 0);
    cr_assert_eq(bf_db_watch(s.b, wlisten, &s), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&tl[i], NULL, wloader, &s), 0);
    cr_assert_eq(pthread_create(&ts, NULL, wsyncer, &s), 0);
    for (unsigned v = 2; v <= NVERSIONS && !__atomic_load_n(&s.failed, __ATOMIC_SEQ_CST); v++)
        tb_store_range(fa, 0, NBLK, v, NBLK * BS);
    uint64_t end;
    cr_assert_eq(bf_db_sync(s.b, &end), 0);
    __atomic_store_n(&s.done, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 2; i++)
        pthread_join(tl[i], NULL);
    pthread_join(ts, NULL);
    cr_assert_eq(s.failed, 0, "%s", s.why);
    cr_assert_eq(bf_db_applied(s.b), end);
    /* No commit follows: the listener is not called again, and closing B
     * stops its watcher (the listener's fields are ours after it). */
    bf_db_file_close(s.b, s.fb);
    bf_db_close(s.b);
    cr_assert_eq(s.delivered, end - start, "every commit once: %llu of %llu",
                 (unsigned long long)s.delivered, (unsigned long long)(end - start));
    cr_assert_eq(s.last_version, NVERSIONS);
    bf_db_file_close(s.a, fa);
    bf_db_close(s.a);
    tb_done(&t);
}

#ifndef TB_PG
Test(concurrent, memory_watcher_against_loads_and_commits, .timeout = 120)
{
    watcher_run(TB_MEMORY);
}

Test(concurrent, sqlite_watcher_against_loads_and_commits, .timeout = 120)
{
    watcher_run(TB_SQLITE);
}
#else
Test(concurrent, pg_watcher_against_loads_and_commits, .timeout = 120)
{
    watcher_run(TB_PGSQL);
}
#endif

#ifndef TB_PG /* staging: the memory and SQLite engines, the spill file */
/* ---- staging from several threads ------------------------------------------ */

/* Threads stage, read back and drop contents of one file at once (the
 * core spills from any thread, bigfile.h), while loads go on: every
 * content comes back as staged. Against both engines and the layer's spill
 * file. */
struct sshared {
    bf_file *f;
    int failed; /* atomic */
};

static void *stager(void *arg)
{
    struct sshared *s = arg;
    void *buf = malloc(BS), *got = malloc(BS);
    uint64_t tok[8];
    unsigned me = (unsigned)(uintptr_t)pthread_self() & 0xff;
    for (unsigned round = 0; round < 30 && buf && got; round++) {
        for (unsigned i = 0; i < 8; i++) {
            tb_fill(buf, BS, i, (me + round + i) & 0x7f);
            if (s->f->ops->stage(s->f, i, buf, &tok[i]) < 0)
                __atomic_store_n(&s->failed, 1, __ATOMIC_SEQ_CST);
        }
        for (unsigned i = 0; i < 8; i++) {
            if (s->f->ops->unstage(s->f, tok[i], got) < 0 ||
                !tb_check(got, BS, i, (me + round + i) & 0x7f))
                __atomic_store_n(&s->failed, 1, __ATOMIC_SEQ_CST);
            s->f->ops->stage_drop(s->f, tok[i]);
        }
        if (tb_load(s->f, round % 8, got) < 0)
            __atomic_store_n(&s->failed, 1, __ATOMIC_SEQ_CST);
    }
    free(buf);
    free(got);
    return NULL;
}

static void staging_run(int sqlite, bool spill_file)
{
    struct tb t;
    struct bf_db_options opt = { .spill_file = spill_file, .spill_dir = "/tmp" };
    char err[256];
    bf_db *db;
    memset(&t, 0, sizeof(t));
    t.kind = sqlite ? TB_SQLITE : TB_MEMORY;
    if (sqlite)
        tb_mkdir(&t);
    cr_assert_eq(
        bf_db_open_ex(sqlite ? t.path : "mem:test", BF_DB_CREATE, &opt, &db, err, sizeof(err)), 0,
        "%s", err);
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_create(db, "f", BS, 8 * BS, 0644, 0, 0, &fi), 0);
    struct sshared s = { 0 };
    cr_assert_eq(bf_db_file_open(db, fi.id, &s.f), 0);
    pthread_t thr[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&thr[i], NULL, stager, &s), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(thr[i], NULL);
    cr_assert_eq(s.failed, 0, "a staged content came back wrong, or a call failed");
    cr_assert_eq(bf_db_spillfile_used(db), 0);
    if (!sqlite && !spill_file)
        cr_assert_eq(bf_mem_staged(db), 0);
    bf_db_file_close(db, s.f);
    bf_db_close(db);
    if (sqlite)
        tb_rmdir(&t);
}

Test(concurrent, memory_staging_from_threads, .timeout = 60)
{
    staging_run(0, false);
}

Test(concurrent, sqlite_staging_from_threads, .timeout = 120)
{
    staging_run(1, false);
}

Test(concurrent, spillfile_staging_from_threads, .timeout = 60)
{
    staging_run(0, true);
}
#endif /* staging */
