/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/backends: several sessions on one database, as several
 * mounts (docs/COHERENCE.md), run against the memory and the SQLite
 * backend (and as test_sessions_pg against the PostgreSQL one): serials and snapshot reads, the conflict rule, every commit
 * logged and delivered by the watcher, bf_db_sync, holds across sessions,
 * the trimming of the log and of old versions, the exclusive/shared rule
 * and read-only sessions. */
#include <pthread.h>

#include "helpers.h"

#define BS 4096u
#define NB 8 /* blocks of the test file */

static bf_file *open_file(bf_db *db, uint64_t id)
{
    bf_file *f = NULL;
    int r = bf_db_file_open(db, id, &f);
    cr_assert_eq(r, 0, "file_open(%llu) = %d", (unsigned long long)id, r);
    return f;
}

/* File "f" of NB blocks, each holding tag 1, made by session db; *serial
 * gets the serial of the commit that filled it. */
static uint64_t mkfile(bf_db *db, uint64_t *serial)
{
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_create(db, "f", BS, 0, 0644, 0, 0, &fi), 0);
    bf_file *f = open_file(db, fi.id);
    uint64_t s = tb_store_range(f, 0, NB, 1, NB * BS);
    if (serial)
        *serial = s;
    bf_db_file_close(db, f);
    return fi.id;
}

/* The database's serial now. */
static uint64_t serial_now(bf_db *db)
{
    uint64_t s = 0;
    cr_assert_eq(bf_db_sync(db, &s), 0);
    return s;
}

/* Store block blk with tag `tag` based on serial `base` (tag 0: zeros). */
static void store_at(bf_file *f, uint64_t blk, unsigned tag, uint64_t base)
{
    void *buf = calloc(1, f->blksize);
    cr_assert_not_null(buf);
    if (tag)
        tb_fill(buf, f->blksize, blk, tag);
    cr_assert_eq(f->ops->storeblk(f, blk, buf, base), 0);
    free(buf);
}

/* The conflicts a commit named. */
struct conflicts {
    uint64_t v[32];
    size_t n;
};

static void on_conflict(void *arg, uint64_t blk)
{
    struct conflicts *c = arg;
    if (c->n < 32)
        c->v[c->n] = blk;
    c->n++;
}

static bool named(const struct conflicts *c, uint64_t blk)
{
    for (size_t i = 0; i < c->n && i < 32; i++)
        if (c->v[i] == blk)
            return true;
    return false;
}

/* Commit f's transaction as asked; *c gets the conflicts, *serial the
 * serial. */
static int commit_req(bf_file *f, struct bf_commit_req req, struct conflicts *c, uint64_t *serial)
{
    uint64_t s = 0;
    memset(c, 0, sizeof(*c));
    req.conflict = on_conflict;
    req.arg = c;
    int r = f->ops->commit(f, &req, &s);
    if (serial)
        *serial = s;
    return r;
}

/* A transaction storing block blk with tag `tag` based on `base`, with
 * req; returns the commit's result. */
static int write1(bf_file *f, uint64_t blk, unsigned tag, uint64_t base, struct bf_commit_req req,
                  struct conflicts *c, uint64_t *serial)
{
    cr_assert_eq(f->ops->begin(f), 0);
    store_at(f, blk, tag, base);
    return commit_req(f, req, c, serial);
}

/* Versions kept of file id's blocks, and commit-log rows kept: through the
 * memory backend's counters or a side connection (tb_side_count). */
static int64_t nversions(struct tb *t, bf_db *db, uint64_t id)
{
    if (t->kind != TB_SQLITE && t->kind != TB_PGSQL)
        return (int64_t)bf_mem_versions(db, id);
    return tb_side_count(t, "SELECT count(*) FROM blockmap WHERE file=?1", (int64_t)id);
}

static int64_t log_rows(struct tb *t, bf_db *db)
{
    if (t->kind != TB_SQLITE && t->kind != TB_PGSQL)
        return (int64_t)bf_mem_log_rows(db);
    return tb_side_count(t, "SELECT count(*) FROM commit_log", 0);
}

/* ---- a listener that records what the watcher delivers ------------------ */

struct seen {
    struct bf_commit_rec rec; /* ranges and names point into the fields below */
    struct bf_blkrange ranges[8];
    char name[BF_NAME_MAX + 1], name2[BF_NAME_MAX + 1];
};

#define MAXSEEN 256

struct listener {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct seen v[MAXSEEN];
    size_t n;
    bool pause;      /* hold the watcher in the listener until unpaused */
    bool in_pause;   /* it is held there now */
    uint64_t loaded; /* blocks the listener loaded (the daemon would) */
};

static void listener_init(struct listener *l)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
}

static void listener_fini(struct listener *l)
{
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
}

static void listen_fn(void *arg, const struct bf_commit_rec *rec)
{
    struct listener *l = arg;
    pthread_mutex_lock(&l->lock);
    if (l->n < MAXSEEN) {
        struct seen *s = &l->v[l->n];
        s->rec = *rec;
        s->rec.write.nranges = rec->write.nranges < 8 ? rec->write.nranges : 8;
        if (s->rec.write.nranges)
            memcpy(s->ranges, rec->write.ranges, s->rec.write.nranges * sizeof(s->ranges[0]));
        s->rec.write.ranges = s->ranges;
        snprintf(s->name, sizeof(s->name), "%s", rec->name ? rec->name : "");
        snprintf(s->name2, sizeof(s->name2), "%s", rec->name2 ? rec->name2 : "");
        s->rec.name = rec->name ? s->name : NULL;
        s->rec.name2 = rec->name2 ? s->name2 : NULL;
    }
    l->n++;
    pthread_cond_broadcast(&l->cond);
    while (l->pause) {
        l->in_pause = true;
        pthread_cond_broadcast(&l->cond);
        pthread_cond_wait(&l->cond, &l->lock);
    }
    l->in_pause = false;
    pthread_mutex_unlock(&l->lock);
}

static void listener_unpause(struct listener *l)
{
    pthread_mutex_lock(&l->lock);
    l->pause = false;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

/* Wait until the watcher is held in the listener. */
static void listener_wait_paused(struct listener *l)
{
    pthread_mutex_lock(&l->lock);
    while (!l->in_pause)
        pthread_cond_wait(&l->cond, &l->lock);
    pthread_mutex_unlock(&l->lock);
}

static void watch(bf_db *db, struct listener *l)
{
    cr_assert_eq(bf_db_watch(db, listen_fn, l), 0);
}

/* The delivered record of serial s (NULL if none). */
static const struct bf_commit_rec *seen_serial(struct listener *l, uint64_t s)
{
    for (size_t i = 0; i < l->n && i < MAXSEEN; i++)
        if (l->v[i].rec.serial == s)
            return &l->v[i].rec;
    return NULL;
}

/* ---- serials and snapshot reads ------------------------------------------ */

SESSIONS(a_load_as_of_a_serial_reads_the_version_of_then, 30)
{
    uint64_t s1;
    uint64_t id = mkfile(db[0], &s1);
    bf_file *a = open_file(db[0], id), *b = open_file(db[1], id);
    cr_assert_eq(b->serial, s1, "a file opens at the database's serial");
    cr_assert_eq(b->size, NB * BS);
    uint64_t s2 = tb_store_range(a, 2, 3, 2, NB * BS);
    cr_assert_gt(s2, s1);
    /* B's view is s1: the block as of then, however new the store is */
    cr_assert_eq(tb_expect_at(b, 2, b->serial, 1), s1, "the version's serial");
    cr_assert_eq(tb_expect_at(b, 2, s2 - 1, 1), s1);
    cr_assert_eq(tb_expect_at(b, 2, s2, 2), s2);
    cr_assert_eq(tb_expect_at(b, 2, BF_SERIAL_NOW, 2), s2);
    cr_assert_eq(tb_expect_at(b, NB + 3, s2, -1), 0, "never written: serial 0");
    /* A shrink: the dropped blocks as of before it are still there */
    cr_assert_eq(a->ops->begin(a), 0);
    cr_assert_eq(a->ops->truncate(a, 2), 0);
    cr_assert_eq(tb_commit(a, 2 * BS), 0);
    uint64_t s3 = serial_now(db[0]);
    tb_expect_at(b, 5, s2, 1);
    tb_expect_at(b, 5, s3, -1);
    tb_expect_at(b, 2, s3, -1);
    tb_expect_at(b, 1, s3, 1);
    /* a file opened now starts at s3 */
    bf_file *c = open_file(db[2], id);
    cr_assert_eq(c->serial, s3);
    cr_assert_eq(c->size, 2 * BS);
    bf_db_file_close(db[2], c);
    bf_db_file_close(db[0], a);
    bf_db_file_close(db[1], b);
}

/* ---- the conflict rule ---------------------------------------------------- */

SESSIONS(both_change_a_block_the_second_is_refused_and_commits_nothing, 30)
{
    uint64_t s1, sa, s;
    struct conflicts c;
    struct bf_commit_req plain = { 0 };
    uint64_t id = mkfile(db[0], &s1);
    bf_file *a = open_file(db[0], id), *b = open_file(db[1], id);
    cr_assert_eq(write1(a, 5, 2, a->serial, plain, &c, &sa), 0);
    cr_assert_gt(sa, s1);

    cr_assert_eq(b->ops->begin(b), 0);
    store_at(b, 5, 3, b->serial); /* made on s1: A's commit is newer */
    store_at(b, 6, 3, b->serial);
    cr_assert_eq(commit_req(b, plain, &c, &s), -ESTALE);
    cr_assert_eq(c.n, 1, "only block 5 conflicts (%zu named)", c.n);
    cr_assert(named(&c, 5));
    /* nothing of B's is committed, and it took no serial */
    tb_expect(b, 5, 2);
    tb_expect(b, 6, 1);
    cr_assert_eq(serial_now(db[1]), sa);
    if (t->kind == TB_SQLITE || t->kind == TB_PGSQL) {
        cr_assert_eq(tb_side_count(t, "SELECT count(*) FROM uploads WHERE session<>0", 0), 0,
                     "a refused commit gives its uploads up");
        int64_t contents = tb_side_count(t, "SELECT count(*) FROM contents", 0);
        cr_assert_eq(bf_db_trim(db[1]), 0);
        cr_assert_eq(tb_side_count(t, "SELECT count(*) FROM uploads", 0), 0);
        cr_assert_eq(tb_side_count(t, "SELECT count(*) FROM contents", 0), contents - 2,
                     "and the housekeeping deletes them");
    }
    /* made on A's commit, the same change commits */
    cr_assert_eq(write1(b, 5, 3, sa, plain, &c, &s), 0);
    cr_assert_gt(s, sa);
    tb_expect(a, 5, 3);
    bf_db_file_close(db[0], a);
    bf_db_file_close(db[1], b);
}

SESSIONS(disjoint_blocks_both_commit_and_both_see_both, 30)
{
    struct conflicts c;
    struct bf_commit_req plain = { 0 };
    uint64_t id = mkfile(db[0], NULL);
    bf_file *a = open_file(db[0], id), *b = open_file(db[1], id);
    uint64_t base = a->serial, sa, sb;
    cr_assert_eq(write1(a, 1, 2, base, plain, &c, &sa), 0);
    cr_assert_eq(write1(b, 2, 3, base, plain, &c, &sb), 0);
    cr_assert_gt(sb, sa);
    for (int k = 0; k < 2; k++) {
        bf_file *f = k ? b : a;
        tb_expect(f, 1, 2);
        tb_expect(f, 2, 3);
        tb_expect(f, 3, 1);
    }
    bf_db_file_close(db[0], a);
    bf_db_file_close(db[1], b);
}

SESSIONS(a_size_another_session_changed_conflicts, 30)
{
    struct conflicts c;
    uint64_t sa, s;
    uint64_t id = mkfile(db[0], NULL);
    bf_file *a = open_file(db[0], id), *b = open_file(db[1], id);
    uint64_t base = b->serial;
    struct bf_commit_req grow = { .size_set = true, .size = 10 * BS, .size_base = a->serial };
    cr_assert_eq(a->ops->begin(a), 0);
    cr_assert_eq(commit_req(a, grow, &c, &sa), 0);
    /* B sets the size on the old one: refused, the size named */
    struct bf_commit_req mine = { .size_set = true, .size = 9 * BS, .size_base = base };
    cr_assert_eq(b->ops->begin(b), 0);
    cr_assert_eq(commit_req(b, mine, &c, &s), -ESTALE);
    cr_assert_eq(c.n, 1);
    cr_assert(named(&c, BF_CONFLICT_SIZE));
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_getinfo(db[1], id, &fi), 0);
    cr_assert_eq(fi.size, 10 * BS, "B's size was not committed");
    /* a block alone does not touch the size: no conflict */
    struct bf_commit_req plain = { .size_base = base };
    cr_assert_eq(write1(b, 3, 3, base, plain, &c, &s), 0);
    /* on the new size, B's size commits */
    mine.size_base = sa;
    cr_assert_eq(b->ops->begin(b), 0);
    cr_assert_eq(commit_req(b, mine, &c, &s), 0);
    cr_assert_eq(bf_db_getinfo(db[0], id, &fi), 0);
    cr_assert_eq(fi.size, 9 * BS);
    bf_db_file_close(db[0], a);
    bf_db_file_close(db[1], b);
}

SESSIONS(a_truncate_dropping_a_block_another_session_changed_conflicts, 30)
{
    struct conflicts c;
    uint64_t sa, s;
    struct bf_commit_req plain = { 0 };
    uint64_t id = mkfile(db[0], NULL);
    bf_file *a = open_file(db[0], id), *b = open_file(db[1], id);
    uint64_t base = b->serial;
    cr_assert_eq(write1(a, 7, 2, a->serial, plain, &c, &sa), 0);
    /* B cuts at 4 blocks unaware of A's block 7 */
    struct bf_commit_req cut = { .size_set = true, .size = 4 * BS, .size_base = base };
    cr_assert_eq(b->ops->begin(b), 0);
    cr_assert_eq(b->ops->truncate(b, 4), 0);
    cr_assert_eq(commit_req(b, cut, &c, &s), -ESTALE);
    cr_assert(named(&c, 7), "block 7 conflicts");
    cr_assert_not(named(&c, 6), "block 6 is no other session's change after the base");
    cr_assert_not(named(&c, BF_CONFLICT_SIZE), "nobody changed the size");
    tb_expect(a, 7, 2);
    tb_expect(a, 5, 1);
    /* aware of it, the same cut commits */
    cut.size_base = sa;
    cr_assert_eq(b->ops->begin(b), 0);
    cr_assert_eq(b->ops->truncate(b, 4), 0);
    cr_assert_eq(commit_req(b, cut, &c, &s), 0);
    tb_expect(a, 7, -1);
    tb_expect(a, 4, -1);
    tb_expect(a, 3, 1);
    bf_db_file_close(db[0], a);
    bf_db_file_close(db[1], b);
}

SESSIONS(per_file_conflicts_refuse_any_change_of_the_file, 30)
{
    struct conflicts c;
    uint64_t sa, s;
    struct bf_commit_req plain = { 0 };
    uint64_t id = mkfile(db[0], NULL);
    bf_file *a = open_file(db[0], id), *b = open_file(db[1], id);
    uint64_t base = b->serial;
    cr_assert_eq(write1(a, 1, 2, a->serial, plain, &c, &sa), 0);
    struct bf_commit_req per_file = { .flags = BF_COMMIT_FILE_CONFLICTS, .file_base = base };
    cr_assert_eq(write1(b, 2, 3, base, per_file, &c, &s), -ESTALE);
    cr_assert_eq(c.n, 1);
    cr_assert(named(&c, 2), "the block B stores conflicts, though A changed another");
    tb_expect(a, 2, 1);
    per_file.file_base = sa;
    cr_assert_eq(write1(b, 2, 3, sa, per_file, &c, &s), 0);
    tb_expect(a, 2, 3);
    bf_db_file_close(db[0], a);
    bf_db_file_close(db[1], b);
}

SESSIONS(overwrite_makes_the_last_writer_win, 30)
{
    struct conflicts c;
    uint64_t sa, sb;
    struct bf_commit_req plain = { 0 };
    uint64_t id = mkfile(db[0], NULL);
    bf_file *a = open_file(db[0], id), *b = open_file(db[1], id);
    uint64_t base = b->serial;
    cr_assert_eq(write1(a, 5, 2, a->serial, plain, &c, &sa), 0);
    struct bf_commit_req grow = { .size_set = true, .size = 9 * BS, .size_base = a->serial };
    cr_assert_eq(a->ops->begin(a), 0);
    cr_assert_eq(commit_req(a, grow, &c, &sa), 0);
    struct bf_commit_req over = {
        .flags = BF_COMMIT_OVERWRITE, .size_set = true, .size = 6 * BS, .size_base = base
    };
    cr_assert_eq(b->ops->begin(b), 0);
    cr_assert_eq(b->ops->truncate(b, 6), 0);
    store_at(b, 5, 3, base);
    cr_assert_eq(commit_req(b, over, &c, &sb), 0);
    cr_assert_eq(c.n, 0, "no conflict is even looked for");
    tb_expect(a, 5, 3);
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_getinfo(db[0], id, &fi), 0);
    cr_assert_eq(fi.size, 6 * BS);
    bf_db_file_close(db[0], a);
    bf_db_file_close(db[1], b);
}

SESSIONS(a_sessions_own_commits_never_conflict, 30)
{
    struct conflicts c;
    uint64_t s1, s2, s;
    uint64_t id = mkfile(db[0], &s1);
    bf_file *a = open_file(db[0], id), *a2 = open_file(db[0], id);
    struct bf_commit_req plain = { .size_base = s1, .file_base = s1 };
    cr_assert_eq(write1(a, 1, 2, s1, plain, &c, &s2), 0);
    /* again on s1, through another handle of the same session: its own */
    cr_assert_eq(write1(a2, 1, 3, s1, plain, &c, &s), 0);
    struct bf_commit_req per_file = { .flags = BF_COMMIT_FILE_CONFLICTS, .file_base = s1 };
    cr_assert_eq(write1(a, 2, 3, s1, per_file, &c, &s), 0);
    struct bf_commit_req cut = { .size_set = true, .size = BS, .size_base = s1 };
    cr_assert_eq(a2->ops->begin(a2), 0);
    cr_assert_eq(a2->ops->truncate(a2, 1), 0);
    cr_assert_eq(commit_req(a2, cut, &c, &s), 0, "the blocks it drops are its own");
    tb_expect(a, 1, -1);
    bf_db_file_close(db[0], a);
    bf_db_file_close(db[0], a2);
}

/* ---- the log and the watcher ---------------------------------------------- */

/* Every commit — each namespace operation too — takes the next serial and
 * writes a log row, which every session's watcher delivers in order (its
 * own flagged). */
SESSIONS(every_commit_is_logged_and_delivered_in_order, 30)
{
    struct listener la, lb;
    struct bf_fileinfo fx, fz;
    listener_init(&la);
    listener_init(&lb);
    uint64_t s0 = serial_now(db[0]);
    watch(db[0], &la);
    watch(db[1], &lb);
    uint32_t mode = 0600;
    cr_assert_eq(bf_db_create(db[0], "x", BS, 0, 0644, 1, 2, &fx), 0); /* s0 + 1 */
    cr_assert_eq(bf_db_setattr(db[0], fx.id, &mode, NULL, NULL, NULL), 0);
    cr_assert_eq(bf_db_set_blksize(db[0], fx.id, 2 * BS), 0);
    cr_assert_eq(bf_db_rename(db[0], "x", "y", 0), 0);
    cr_assert_eq(bf_db_create(db[0], "z", BS, 0, 0644, 1, 2, &fz), 0); /* s0 + 5 */
    cr_assert_eq(bf_db_rename(db[0], "y", "z", BF_RENAME_EXCHANGE), 0);
    cr_assert_eq(bf_db_rename(db[0], "z", "z", 0), 0, "onto itself: no commit");
    cr_assert_eq(bf_db_rename(db[0], "z", "y", BF_RENAME_NOREPLACE), -EEXIST);
    cr_assert_eq(bf_db_rename(db[0], "z", "y", 0), 0); /* replaces fz ... */
    cr_assert_eq(bf_db_unlink(db[0], "y"), 0);         /* s0 + 8 */
    uint64_t s = serial_now(db[0]);
    cr_assert_eq(s, s0 + 8, "one serial per commit, none for a refusal or a no-op");
    uint64_t got;
    cr_assert_eq(bf_db_sync(db[0], &got), 0);
    cr_assert_eq(got, s);
    cr_assert_eq(bf_db_sync(db[1], &got), 0);
    cr_assert_eq(bf_db_applied(db[1]), s);
    cr_assert_eq(bf_db_applied(db[0]), s);

    static const struct {
        enum bf_commit_kind kind;
        const char *name, *name2;
    } want[] = {
        { BF_COMMIT_CREATE, "x", NULL },      { BF_COMMIT_SETATTR, NULL, NULL },
        { BF_COMMIT_SETBLKSIZE, NULL, NULL }, { BF_COMMIT_RENAME, "x", "y" },
        { BF_COMMIT_CREATE, "z", NULL },      { BF_COMMIT_RENAME, "y", "z" },
        { BF_COMMIT_RENAME, "z", "y" },       { BF_COMMIT_UNLINK, "y", NULL },
    };
    for (int k = 0; k < 2; k++) {
        struct listener *l = k ? &lb : &la;
        pthread_mutex_lock(&l->lock);
        cr_assert_eq(l->n, 8, "session %d got %zu commits", k, l->n);
        for (size_t i = 0; i < 8; i++) {
            const struct bf_commit_rec *r = &l->v[i].rec;
            cr_assert_eq(r->serial, s0 + 1 + i, "in serial order");
            cr_assert_eq(r->kind, want[i].kind, "commit %zu: kind %d", i, r->kind);
            cr_assert_eq(r->own, k == 0, "own flag");
            cr_assert_eq(r->session, bf_db_session(db[0]));
            cr_assert_gt(r->time_ns, 0);
            if (want[i].name)
                cr_assert(r->name && strcmp(r->name, want[i].name) == 0, "commit %zu: name %s", i,
                          r->name ? r->name : "(none)");
            if (want[i].name2)
                cr_assert(r->name2 && strcmp(r->name2, want[i].name2) == 0);
        }
        cr_assert_eq(l->v[0].rec.file, fx.id);
        cr_assert_eq(l->v[1].rec.file, fx.id);
        cr_assert_eq(l->v[2].rec.file, fx.id);
        cr_assert_eq(l->v[5].rec.rename_flags, BF_RENAME_EXCHANGE);
        cr_assert_eq(l->v[5].rec.file, fx.id);
        cr_assert_eq(l->v[5].rec.file2, fz.id, "exchange: the other file");
        cr_assert_eq(l->v[6].rec.file, fx.id);
        cr_assert_eq(l->v[6].rec.file2, fz.id, "the replaced file");
        cr_assert_eq(l->v[7].rec.file, fx.id);
        pthread_mutex_unlock(&l->lock);
    }
    bf_db_close(db[0]);
    bf_db_close(db[1]);
    db[0] = db[1] = NULL;
    listener_fini(&la);
    listener_fini(&lb);
}

/* A write commit, as another session sees it: the blocks it changed (a
 * store of zeros over data too, not over a hole), the size, the cut. */
SESSIONS(the_watcher_delivers_what_a_write_changed, 30)
{
    struct listener lb;
    struct conflicts c;
    listener_init(&lb);
    uint64_t id = mkfile(db[0], NULL);
    watch(db[1], &lb);
    bf_file *a = open_file(db[0], id);
    struct bf_commit_req grow = { .size_set = true, .size = 20 * BS, .size_base = a->serial };
    uint64_t s1, s2, got;
    cr_assert_eq(a->ops->begin(a), 0);
    store_at(a, 1, 2, a->serial);
    store_at(a, 2, 2, a->serial);
    store_at(a, 3, 0, a->serial);  /* zeros over data: changed */
    store_at(a, 12, 0, a->serial); /* zeros over nothing: no change */
    store_at(a, 17, 2, a->serial);
    cr_assert_eq(commit_req(a, grow, &c, &s1), 0);
    struct bf_commit_req cut = { .size_set = true, .size = 2 * BS + 5, .size_base = s1 };
    cr_assert_eq(a->ops->begin(a), 0);
    cr_assert_eq(a->ops->truncate(a, 3), 0);
    cr_assert_eq(commit_req(a, cut, &c, &s2), 0);
    cr_assert_eq(bf_db_sync(db[1], &got), 0);
    cr_assert_eq(got, s2);

    pthread_mutex_lock(&lb.lock);
    const struct bf_commit_rec *r = seen_serial(&lb, s1);
    cr_assert_not_null(r);
    cr_assert_eq(r->kind, BF_COMMIT_WRITE);
    cr_assert_eq(r->file, id);
    cr_assert_not(r->own);
    cr_assert_eq(r->write.serial, s1);
    cr_assert_eq(r->write.nranges, 2, "ranges: %zu", r->write.nranges);
    cr_assert_eq(r->write.ranges[0].start, 1);
    cr_assert_eq(r->write.ranges[0].count, 3);
    cr_assert_eq(r->write.ranges[1].start, 17);
    cr_assert_eq(r->write.ranges[1].count, 1);
    cr_assert_eq(r->write.trunc, UINT64_MAX);
    cr_assert(r->write.size_changed);
    cr_assert_eq(r->write.size, 20 * BS);
    r = seen_serial(&lb, s2);
    cr_assert_not_null(r);
    cr_assert_eq(r->write.trunc, 3);
    cr_assert(r->write.size_changed);
    cr_assert_eq(r->write.size, 2 * BS + 5);
    /* the blocks it dropped that held data (3 was a hole already) */
    cr_assert_eq(r->write.nranges, 2);
    cr_assert_eq(r->write.ranges[0].start, 4);
    cr_assert_eq(r->write.ranges[0].count, 4);
    cr_assert_eq(r->write.ranges[1].start, 17);
    pthread_mutex_unlock(&lb.lock);
    bf_db_file_close(db[0], a);
    bf_db_close(db[1]);
    db[1] = NULL;
    listener_fini(&lb);
}

/* Three sessions: two commit in turns, the third sees every commit once,
 * in order, each with its author. */
SESSIONS(three_sessions_commit_and_the_third_sees_all_in_order, 30)
{
    struct listener lc;
    struct conflicts c;
    listener_init(&lc);
    uint64_t id = mkfile(db[0], NULL);
    uint64_t start = serial_now(db[2]);
    watch(db[2], &lc); /* from the serial it started at, before mkfile */
    bf_file *f[2] = { open_file(db[0], id), open_file(db[1], id) };
    uint64_t serials[10];
    for (int i = 0; i < 10; i++) {
        struct bf_commit_req plain = { 0 };
        cr_assert_eq(write1(f[i % 2], (uint64_t)i % NB, 10 + (unsigned)i, BF_SERIAL_NOW, plain, &c,
                            &serials[i]),
                     0);
    }
    uint64_t got;
    cr_assert_eq(bf_db_sync(db[2], &got), 0);
    cr_assert_eq(got, serials[9]);
    cr_assert_eq(bf_db_applied(db[2]), serials[9]);
    pthread_mutex_lock(&lc.lock);
    cr_assert_eq(lc.n, 12, "the two commits of mkfile, and these");
    for (int i = 0; i < 10; i++) {
        const struct bf_commit_rec *r = &lc.v[2 + i].rec;
        cr_assert_eq(r->serial, start + 1 + (uint64_t)i);
        cr_assert_eq(r->serial, serials[i]);
        cr_assert_eq(r->session, bf_db_session(db[i % 2]));
        cr_assert_eq(r->write.nranges, 1);
        cr_assert_eq(r->write.ranges[0].start, (uint64_t)i % NB);
    }
    pthread_mutex_unlock(&lc.lock);
    bf_db_file_close(db[0], f[0]);
    bf_db_file_close(db[1], f[1]);
    bf_db_close(db[2]);
    db[2] = NULL;
    listener_fini(&lc);
}

/* Wait (on the listener's condition, up to 10 s) until it got n records. */
static bool listener_wait_n(struct listener *l, size_t n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&l->lock);
    int r = 0;
    while (l->n < n && r == 0)
        r = pthread_cond_timedwait(&l->cond, &l->lock, &until);
    bool ok = l->n >= n;
    pthread_mutex_unlock(&l->lock);
    return ok;
}

/* Without a sync: the watcher notices another session's commit itself
 * (SQLite: its data_version, woken by the -wal's change; memory: the
 * store's kick). */
SESSIONS(the_watcher_notices_a_commit_by_itself, 30)
{
    struct listener l;
    listener_init(&l);
    watch(db[1], &l);
    uint64_t s1;
    mkfile(db[0], &s1);
    cr_assert(listener_wait_n(&l, 2), "the watcher did not notice the commits");
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_create(db[2], "later", BS, 0, 0644, 0, 0, &fi), 0);
    cr_assert(listener_wait_n(&l, 3), "nor a later one");
    pthread_mutex_lock(&l.lock);
    cr_assert_eq(l.v[1].rec.serial, s1);
    cr_assert_eq(l.v[2].rec.kind, BF_COMMIT_CREATE);
    cr_assert_eq(l.v[2].rec.session, bf_db_session(db[2]));
    pthread_mutex_unlock(&l.lock);
    bf_db_close(db[1]);
    db[1] = NULL;
    listener_fini(&l);
}

SESSIONS(sync_without_a_watcher_gives_the_serial, 20)
{
    uint64_t s1, got = 0;
    mkfile(db[0], &s1);
    cr_assert_eq(bf_db_sync(db[1], &got), 0);
    cr_assert_eq(got, s1);
    cr_assert_eq(bf_db_applied(db[1]), 0, "no watcher: the serial it started at");
    cr_assert_neq(bf_db_session(db[0]), bf_db_session(db[1]));
    cr_assert_gt(bf_db_session(db[2]), 0);
    struct listener l;
    listener_init(&l);
    watch(db[1], &l);
    cr_assert_eq(bf_db_watch(db[1], listen_fn, &l), -EBUSY, "one watcher");
    bf_db_close(db[1]);
    db[1] = NULL;
    listener_fini(&l);
}

/* Unwatched (the daemon, before it frees what its listener uses): no
 * delivery after it returns, a sync says so, the session itself goes on. */
SESSIONS(unwatch_stops_the_deliveries_and_keeps_the_session, 30)
{
    struct listener l;
    listener_init(&l);
    watch(db[1], &l);
    uint64_t s1, got = 0;
    uint64_t id = mkfile(db[0], &s1);
    cr_assert_eq(bf_db_sync(db[1], &got), 0);
    cr_assert_eq(got, s1);
    bf_db_unwatch(db[1]);
    pthread_mutex_lock(&l.lock);
    size_t n = l.n;
    pthread_mutex_unlock(&l.lock);
    cr_assert_geq(n, 2, "the commits up to the sync were delivered");
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_create(db[0], "later", BS, 0, 0644, 0, 0, &fi), 0);
    cr_assert_eq(bf_db_sync(db[1], &got), -ESHUTDOWN, "no watcher to catch up with");
    cr_assert_eq(bf_db_applied(db[1]), s1, "applied stays where the watcher stopped");
    cr_assert_eq(bf_db_watch(db[1], listen_fn, &l), -EBUSY, "no second watcher");
    bf_file *f = open_file(db[1], id);
    tb_expect(f, 0, 1);
    bf_db_file_close(db[1], f);
    cr_assert_eq(bf_db_lookup(db[1], "later", NULL), 0);
    bf_db_unwatch(db[1]); /* again: nothing */
    pthread_mutex_lock(&l.lock);
    cr_assert_eq(l.n, n, "nothing delivered after bf_db_unwatch returned");
    pthread_mutex_unlock(&l.lock);
    bf_db_close(db[1]);
    db[1] = NULL;
    listener_fini(&l);
}

/* ---- holds ------------------------------------------------------------------ */

SESSIONS(an_unlinked_file_lives_while_any_session_holds_it, 30)
{
    struct bf_fileinfo fi;
    uint64_t id = mkfile(db[0], NULL);
    bf_file *a = open_file(db[0], id), *b = open_file(db[1], id);
    cr_assert_eq(bf_db_unlink(db[2], "f"), 0);
    cr_assert_eq(bf_db_lookup(db[0], "f", NULL), -ENOENT);
    tb_expect(a, 3, 1);
    tb_expect(b, 4, 1);
    /* still written, still there */
    tb_store_range(b, 4, 5, 2, NB * BS);
    tb_expect(a, 4, 2);
    bf_db_file_close(db[0], a);
    cr_assert_eq(bf_db_getinfo(db[2], id, &fi), 0, "B still holds it");
    cr_assert_str_eq(fi.name, "");
    tb_expect(b, 0, 1);
    bf_db_file_close(db[1], b);
    cr_assert_eq(bf_db_getinfo(db[2], id, NULL), -ENOENT, "purged at the last holder's close");
    cr_assert_eq(tb_nblocks(t, db[2], id), 0);
}

SESSIONS(the_unlinking_session_purges_a_file_nobody_holds, 30)
{
    uint64_t id = mkfile(db[0], NULL);
    bf_file *b = open_file(db[1], id);
    bf_db_file_close(db[1], b); /* held no more */
    cr_assert_eq(bf_db_unlink(db[0], "f"), 0);
    cr_assert_eq(bf_db_getinfo(db[1], id, NULL), -ENOENT);
    cr_assert_eq(tb_nblocks(t, db[1], id), 0);
}

SESSIONS(set_blksize_is_refused_while_another_session_has_the_file_open, 30)
{
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_create(db[0], "e", BS, 0, 0644, 0, 0, &fi), 0);
    bf_file *b = open_file(db[1], fi.id);
    cr_assert_eq(bf_db_set_blksize(db[0], fi.id, 2 * BS), -EBUSY);
    bf_db_file_close(db[1], b);
    cr_assert_eq(bf_db_set_blksize(db[0], fi.id, 2 * BS), 0);
}

/* ---- trimming --------------------------------------------------------------- */

/* The log is kept for the slowest live session; trimmed once every one
 * has applied it. */
SESSIONS(the_log_is_kept_until_every_live_session_applied_it, 30)
{
    struct listener l[TB_NSESSIONS];
    for (int i = 0; i < TB_NSESSIONS; i++) {
        listener_init(&l[i]);
        watch(db[i], &l[i]);
    }
    l[2].pause = true; /* session 2 lags: held in its first delivery */
    uint64_t id = mkfile(db[0], NULL);
    listener_wait_paused(&l[2]);
    bf_file *a = open_file(db[0], id);
    for (unsigned i = 0; i < 10; i++)
        tb_store_range(a, i % NB, i % NB + 1, 3 + i, NB * BS);
    uint64_t s;
    cr_assert_eq(bf_db_sync(db[0], &s), 0);
    cr_assert_eq(bf_db_sync(db[1], &s), 0);
    cr_assert_eq(bf_db_trim(db[1]), 0);
    cr_assert_eq(bf_db_trim(db[0]), 0);
    cr_assert_geq(log_rows(t, db[0]), 10, "session 2 has not applied them");
    listener_unpause(&l[2]);
    cr_assert_eq(bf_db_sync(db[2], &s), 0);
    cr_assert_eq(bf_db_trim(db[2]), 0);
    cr_assert_eq(bf_db_trim(db[0]), 0);
    /* (with history, the row of the serial the history starts at stays:
     * tb_open keeps none, so that is the last) */
    cr_assert_eq(log_rows(t, db[0]), tb_history_kept(db[0]) ? 1 : 0, "every session applied them");
    bf_db_file_close(db[0], a);
    for (int i = 0; i < TB_NSESSIONS; i++) {
        bf_db_close(db[i]);
        db[i] = NULL;
        listener_fini(&l[i]);
    }
}

/* A session whose watcher lags more than log_keep rows behind loses track:
 * it gets one BF_COMMIT_RESET at the current serial instead of the commits
 * trimmed under it, and goes on from there. */
SESSIONS(a_session_lagging_past_log_keep_gets_a_reset, 30)
{
    struct listener lb;
    struct bf_db_options keep4 = { .log_keep = 4 };
    listener_init(&lb);
    bf_db_close(db[0]);
    db[0] = tb_session_opt(t, BF_DB_SHARED, &keep4);
    lb.pause = true;
    watch(db[1], &lb);
    uint64_t s1;
    uint64_t id = mkfile(db[0], &s1); /* two commits: B holds in the first */
    listener_wait_paused(&lb);
    bf_file *a = open_file(db[0], id);
    for (unsigned i = 0; i < 20; i++)
        tb_store_range(a, i % NB, i % NB + 1, 3 + i, NB * BS);
    uint64_t now = serial_now(db[0]);
    cr_assert_eq(bf_db_trim(db[0]), 0);
    cr_assert_leq(log_rows(t, db[0]), 4, "log_keep bounds the log: %lld rows",
                  (long long)log_rows(t, db[0]));
    listener_unpause(&lb);
    uint64_t got;
    cr_assert_eq(bf_db_sync(db[1], &got), 0);
    cr_assert_eq(got, now);
    cr_assert_eq(bf_db_applied(db[1]), now);
    pthread_mutex_lock(&lb.lock);
    const struct bf_commit_rec *last = &lb.v[lb.n - 1].rec;
    cr_assert_eq(last->kind, BF_COMMIT_RESET);
    cr_assert_eq(last->serial, now);
    for (size_t i = 0; i + 1 < lb.n; i++)
        cr_assert_neq(lb.v[i].rec.kind, BF_COMMIT_RESET, "one reset");
    cr_assert_lt(lb.n, 20, "the trimmed commits are not delivered");
    pthread_mutex_unlock(&lb.lock);
    /* and from there on, commits again */
    tb_store_range(a, 0, 1, 40, NB * BS);
    cr_assert_eq(bf_db_sync(db[1], &got), 0);
    pthread_mutex_lock(&lb.lock);
    cr_assert_eq(lb.v[lb.n - 1].rec.kind, BF_COMMIT_WRITE);
    cr_assert_eq(lb.v[lb.n - 1].rec.serial, got);
    pthread_mutex_unlock(&lb.lock);
    bf_db_file_close(db[0], a);
    bf_db_close(db[1]);
    db[1] = NULL;
    listener_fini(&lb);
}

/* Old versions stay while a live session may read them (its applied serial
 * is before the commit that replaced them), then go; a load as of a serial
 * whose version went is -ESTALE. */
SESSIONS(old_versions_go_once_no_live_session_can_read_them, 30)
{
    struct listener l[TB_NSESSIONS];
    uint64_t id = mkfile(db[0], NULL);
    for (int i = 0; i < TB_NSESSIONS; i++)
        listener_init(&l[i]);
    /* Only the writer's watcher runs for now: another session's watcher
     * records its applied serial in its own housekeeping turns, which may
     * come at any time (BF_TRIM_INTERVAL_MS) — after that the old versions
     * may rightly go, and a loaded machine made this test flaky. */
    watch(db[0], &l[0]);
    bf_file *a = open_file(db[0], id), *b = open_file(db[1], id);
    uint64_t view = b->serial;
    uint64_t base_versions = (uint64_t)nversions(t, db[0], id);
    for (unsigned i = 0; i < 3; i++)
        tb_store_range(a, 0, 1, 3 + i, NB * BS);
    cr_assert_eq(bf_db_trim(db[0]), 0);
    cr_assert_eq((uint64_t)nversions(t, db[0], id), base_versions + 3,
                 "the other sessions may still read the old ones");
    tb_expect_at(b, 0, view, 1);
    for (int i = 1; i < TB_NSESSIONS; i++)
        watch(db[i], &l[i]);
    uint64_t s;
    for (int i = 0; i < TB_NSESSIONS; i++) {
        cr_assert_eq(bf_db_sync(db[i], &s), 0);
        cr_assert_eq(bf_db_trim(db[i]), 0); /* records its applied serial */
    }
    cr_assert_eq(bf_db_trim(db[0]), 0);
    cr_assert_eq((uint64_t)nversions(t, db[0], id), base_versions, "collected");
    void *buf = malloc(BS);
    cr_assert_eq(b->ops->loadblk(b, 0, view, buf, NULL), -ESTALE, "its version is gone");
    free(buf);
    tb_expect_at(b, 0, s, 5);
    bf_db_file_close(db[0], a);
    bf_db_file_close(db[1], b);
    for (int i = 0; i < TB_NSESSIONS; i++) {
        bf_db_close(db[i]);
        db[i] = NULL;
        listener_fini(&l[i]);
    }
}

/* Alone on its database a session's commit frees what it replaces at
 * once (COHERENCE.md rule 3). */
SESSIONS(a_session_alone_frees_replaced_versions_at_once, 30)
{
    uint64_t s1;
    uint64_t id = mkfile(db[0], &s1);
    bf_db_close(db[1]);
    bf_db_close(db[2]);
    db[1] = db[2] = NULL;
    bf_file *a = open_file(db[0], id);
    for (unsigned i = 0; i < 3; i++)
        tb_store_range(a, 0, 1, 3 + i, NB * BS);
    cr_assert_eq(nversions(t, db[0], id), NB, "one version a block");
    void *buf = malloc(BS);
    cr_assert_eq(a->ops->loadblk(a, 0, s1, buf, NULL), -ESTALE);
    free(buf);
    tb_expect_at(a, 1, s1, 1);
    tb_expect(a, 0, 5);
    bf_db_file_close(db[0], a);
}

/* ---- sharing ---------------------------------------------------------------- */

/* What shows that a database was not modified: a SQLite file's checksum;
 * for PostgreSQL its sessions, the ids given to sessions, the serial and
 * the holds; nothing for a memory one. */
static uint64_t fingerprint(struct tb *t)
{
    if (t->kind == TB_SQLITE)
        return tb_checksum(t->path);
#ifdef TB_PG
    if (t->kind == TB_PGSQL)
        return (uint64_t)tb_side_count(t,
                                       "SELECT (SELECT count(*) FROM sessions) * 1000000000 + "
                                       "(SELECT last_value FROM session_ids) * 1000000 + "
                                       "(SELECT serial FROM counter) * 1000 + "
                                       "(SELECT count(*) FROM holds)",
                                       0);
#endif
    return 0;
}

/* Open must fail with -EBUSY and say why; the database is unchanged. */
static void expect_busy(struct tb *t, unsigned flags)
{
    bf_db *db = (bf_db *)0x1;
    char err[512] = "";
    uint64_t before = fingerprint(t);
    int r = bf_db_open(t->spec, flags, &db, err, sizeof(err));
    cr_assert_eq(r, -EBUSY, "open with flags %u: %d (%s)", flags, r, err);
    cr_assert_null(db);
    cr_assert_not_null(strstr(err, "in use by another bigfilefs (mount every daemon with -o "
                                   "shared to share it)"),
                       "%s", err);
    if (t->kind != TB_PGSQL)
        cr_assert_not_null(strstr(err, t->spec), "%s", err);
    else
        cr_assert_not_null(strstr(err, t->db), "%s", err);
    cr_assert_eq(fingerprint(t), before, "the database was modified");
}

static void exclusive_and_shared(int engine)
{
    struct tb t;
    bf_db *a = tb_open(&t, engine); /* exclusive */
    expect_busy(&t, 0);
    expect_busy(&t, BF_DB_SHARED);
    expect_busy(&t, BF_DB_SHARED | BF_DB_RDONLY);
    expect_busy(&t, BF_DB_RDONLY);
    bf_db_close(a);
    /* shared: several, and an exclusive one is refused */
    a = tb_session(&t, BF_DB_SHARED);
    bf_db *b = tb_session(&t, BF_DB_SHARED);
    bf_db *c = tb_session(&t, BF_DB_SHARED | BF_DB_RDONLY);
    expect_busy(&t, 0);
    expect_busy(&t, BF_DB_RDONLY);
    bf_db_close(a);
    bf_db_close(b);
    bf_db_close(c);
    a = tb_session(&t, 0); /* all gone: exclusive again */
    bf_db_close(a);
    tb_done(&t);
}

#ifndef TB_PG
Test(memory, exclusive_unless_every_session_shares, .timeout = 20)
{
    exclusive_and_shared(TB_MEMORY);
}

Test(sqlite, exclusive_unless_every_session_shares, .timeout = 20)
{
    exclusive_and_shared(TB_SQLITE);
}
#else
Test(pg, exclusive_unless_every_session_shares, .timeout = 20)
{
    exclusive_and_shared(TB_PGSQL);
}
#endif

/* A read-only session learns of commits too, but registers nothing and
 * holds nothing. */
SESSIONS(a_read_only_session_watches_and_writes_nothing, 30)
{
    struct listener l;
    listener_init(&l);
    bf_db *ro = tb_session(t, BF_DB_SHARED | BF_DB_RDONLY);
    cr_assert_eq(bf_db_session(ro), 0, "not registered");
    watch(ro, &l);
    uint64_t s1, got;
    uint64_t id = mkfile(db[0], &s1);
    cr_assert_eq(bf_db_sync(ro, &got), 0);
    cr_assert_eq(got, s1);
    pthread_mutex_lock(&l.lock);
    cr_assert_eq(l.n, 2, "create and write");
    cr_assert_eq(l.v[1].rec.kind, BF_COMMIT_WRITE);
    cr_assert_not(l.v[1].rec.own);
    pthread_mutex_unlock(&l.lock);
    bf_file *f = open_file(ro, id);
    tb_expect(f, 3, 1);
    cr_assert_eq(f->ops->begin(f), -EROFS);
    cr_assert_eq(bf_db_trim(ro), 0, "nothing to do");
    if (t->kind == TB_SQLITE || t->kind == TB_PGSQL) {
        cr_assert_eq(tb_side_count(t, "SELECT count(*) FROM sessions", 0), TB_NSESSIONS);
        cr_assert_eq(tb_side_count(t, "SELECT count(*) FROM holds", 0), 0);
    }
    bf_db_file_close(ro, f);
    bf_db_close(ro);
    listener_fini(&l);
}
