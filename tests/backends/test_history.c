/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/backends: point-in-time views (backend.h, "point-in-time
 * views"; docs/HISTORY.md) on the engines that keep history — SQLite, and
 * as test_history_pg PostgreSQL: views show each commit's sizes, contents
 * and names; a view's file reads its serial while commits land; retention,
 * gc and pins (also a dead session's); nameless files kept for the
 * history; a file's log; the space history costs; the upgrade of a SQLite
 * database of schema 2; and the engines without history (memory). */
#include "helpers.h"

#define BS 4096u

/* HIST(name, secs): a test body run on a fresh database of each engine
 * that keeps history (SQLite; PostgreSQL in the _pg program), with the
 * default retention. */
static void hist_run(int engine, void (*body)(bf_db *db, struct tb *t))
{
    struct tb t;
    bf_db *db = tb_open_flags(&t, engine, BF_DB_SHARED);
    tb_need_history(db, &t);
    tb_history_keep(db, BF_HISTORY_KEEP_NS); /* tb_open turned it off */
    body(db, &t);
    bf_db_close(db);
    tb_done(&t);
}

#ifndef TB_PG
#define HIST(name, secs)                              \
    static void name##_body(bf_db *db, struct tb *t); \
    Test(sqlite, name, .timeout = secs)               \
    {                                                 \
        hist_run(TB_SQLITE, name##_body);             \
    }                                                 \
    static void name##_body(bf_db *db, struct tb *t)
#else
#define HIST(name, secs)                              \
    static void name##_body(bf_db *db, struct tb *t); \
    Test(pg, name, .timeout = secs)                   \
    {                                                 \
        hist_run(TB_PGSQL, name##_body);              \
    }                                                 \
    static void name##_body(bf_db *db, struct tb *t)
#endif

/* ---- helpers ---------------------------------------------------------------- */

/* The database's serial now. */
static uint64_t now(bf_db *db)
{
    struct bf_history h;
    cr_assert_eq(bf_db_history(db, &h), 0);
    return h.current;
}

/* Create file `name`; *serial (if not NULL) gets the commit's serial. */
static uint64_t mk(bf_db *db, const char *name, uint64_t *serial)
{
    struct bf_fileinfo fi;
    int r = bf_db_create(db, name, BS, 0, 0640, 7, 8, &fi);
    cr_assert_eq(r, 0, "create(%s) = %d", name, r);
    if (serial)
        *serial = now(db);
    return fi.id;
}

static struct bf_history history(bf_db *db)
{
    struct bf_history h;
    cr_assert_eq(bf_db_history(db, &h), 0);
    cr_assert(h.kept);
    return h;
}

static bf_file *open_file(bf_db *db, uint64_t id)
{
    bf_file *f = NULL;
    int r = bf_db_file_open(db, id, &f);
    cr_assert_eq(r, 0, "file_open(%llu) = %d", (unsigned long long)id, r);
    return f;
}

static bf_view *view(bf_db *db, uint64_t serial)
{
    bf_view *v = NULL;
    int r = bf_db_view_open(db, serial, &v);
    cr_assert_eq(r, 0, "view_open(%llu) = %d", (unsigned long long)serial, r);
    cr_assert_eq(bf_view_serial(v), serial);
    return v;
}

static bf_file *view_file(bf_view *v, uint64_t id)
{
    bf_file *f = NULL;
    int r = bf_view_file_open(v, id, &f);
    cr_assert_eq(r, 0, "view_file_open(%llu at %llu) = %d", (unsigned long long)id,
                 (unsigned long long)bf_view_serial(v), r);
    cr_assert_eq(f->serial, bf_view_serial(v));
    return f;
}

/* Block blk of view file f reads tag (< 0: zeros) whatever `at` the core
 * would ask (a view reads its serial). */
static void expect_view_blk(bf_file *f, uint64_t blk, int tag)
{
    tb_expect_at(f, blk, BF_SERIAL_NOW, tag);
    tb_expect_at(f, blk, 1, tag);
}

/* A commit of f: a truncate to `trunc` blocks (UINT64_MAX: none), then
 * blocks [lo, hi) with tag, size `size`; returns its serial. */
static uint64_t commit(bf_file *f, uint64_t lo, uint64_t hi, unsigned tag, uint64_t trunc,
                       uint64_t size)
{
    void *buf = malloc(BS);
    uint64_t s = 0;
    cr_assert_eq(f->ops->begin(f), 0);
    if (trunc != UINT64_MAX)
        cr_assert_eq(f->ops->truncate(f, trunc), 0);
    for (uint64_t b = lo; b < hi; b++) {
        tb_fill(buf, BS, b, tag);
        cr_assert_eq(tb_store(f, b, buf), 0);
    }
    cr_assert_eq(tb_commit_serial(f, size, &s), 0);
    free(buf);
    return s;
}

/* The names a listing gave, in order, joined by spaces. */
struct names {
    char s[256];
};

static int collect(void *arg, const struct bf_fileinfo *fi)
{
    struct names *n = arg;
    size_t len = strlen(n->s);
    snprintf(n->s + len, sizeof(n->s) - len, "%s%s", len ? " " : "", fi->name);
    return 0;
}

static void expect_names(bf_db *db, uint64_t serial, const char *want)
{
    struct names n = { "" };
    bf_view *v = view(db, serial);
    cr_assert_eq(bf_view_list(v, collect, &n), 0);
    cr_assert_str_eq(n.s, want, "names at %llu", (unsigned long long)serial);
    bf_db_view_close(v);
}

/* The id file `name` had at serial (0: none). */
static uint64_t id_at(bf_db *db, uint64_t serial, const char *name)
{
    struct bf_fileinfo fi;
    bf_view *v = view(db, serial);
    int r = bf_view_lookup(v, name, &fi);
    bf_db_view_close(v);
    cr_assert(r == 0 || r == -ENOENT, "lookup(%s at %llu) = %d", name, (unsigned long long)serial,
              r);
    return r == 0 ? fi.id : 0;
}

static void nop_listener(void *arg, const struct bf_commit_rec *rec)
{
    (void)arg, (void)rec;
}

/* Keep no history and run the gc, with the session's applied serial the
 * current one (its watcher caught up), so that what the history no longer
 * needs is collected. */
static struct bf_history gc_none(bf_db *db)
{
    struct bf_history h;
    uint64_t s;
    tb_history_keep(db, 0);
    cr_assert_eq(bf_db_sync(db, &s), 0);
    cr_assert_eq(bf_db_gc(db, &h), 0);
    cr_assert(h.kept);
    return h;
}

/* ---- views ---------------------------------------------------------------------- */

/* Three commits of a file: the view at each shows that commit's size and
 * content, and the file as it was created before them. */
HIST(views_show_each_commit_s_size_and_content, 30)
{
    uint64_t s0;
    uint64_t id = mk(db, "f", &s0);
    bf_file *f = open_file(db, id);
    uint64_t s1 = commit(f, 0, 4, 1, UINT64_MAX, 4 * BS);
    uint64_t s2 = commit(f, 1, 2, 2, UINT64_MAX, 6 * BS);
    uint64_t s3 = commit(f, 0, 1, 3, 2, 2 * BS + 100); /* truncated to 2 blocks */
    bf_db_file_close(db, f);
    cr_assert(s0 < s1 && s1 < s2 && s2 < s3);
    const struct {
        uint64_t serial, size;
        int tags[6];
    } want[] = {
        { s0, 0, { -1, -1, -1, -1, -1, -1 } },
        { s1, 4 * BS, { 1, 1, 1, 1, -1, -1 } },
        { s2, 6 * BS, { 1, 2, 1, 1, -1, -1 } },
        { s3, 2 * BS + 100, { 3, 2, -1, -1, -1, -1 } },
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct bf_fileinfo fi;
        bf_view *v = view(db, want[i].serial);
        cr_assert_eq(bf_view_getinfo(v, id, &fi), 0);
        cr_assert_eq(fi.size, want[i].size, "size at %llu", (unsigned long long)want[i].serial);
        cr_assert_str_eq(fi.name, "f");
        cr_assert_eq(fi.blksize, BS);
        cr_assert_eq(fi.mode, 0640);
        cr_assert_eq(fi.uid, 7);
        bf_file *vf = view_file(v, id);
        cr_assert_eq(vf->size, want[i].size);
        for (uint64_t b = 0; b < 6; b++)
            expect_view_blk(vf, b, want[i].tags[b]);
        bf_db_file_close(db, vf);
        bf_db_view_close(v);
    }
    bf_view *v;
    cr_assert_eq(bf_db_view_open(db, 0, &v), -ENOENT, "serial 0 is never a view");
    cr_assert_eq(bf_db_view_open(db, s3 + 1, &v), -ENOENT, "not yet committed");
    struct bf_history h = history(db);
    cr_assert_eq(h.current, s3);
    cr_assert_leq(h.from, s0);
    cr_assert_eq(h.keep_ns, BF_HISTORY_KEEP_NS);
    cr_assert_eq(h.pinned, 0);
}

/* Names at each serial after create, rename, unlink and a rename that
 * replaces a file. */
HIST(names_at_each_serial, 30)
{
    uint64_t s1, s2;
    uint64_t a = mk(db, "a", &s1);
    uint64_t b = mk(db, "b", &s2);
    cr_assert_eq(bf_db_rename(db, "a", "c", 0), 0);
    uint64_t s3 = now(db);
    cr_assert_eq(bf_db_unlink(db, "b"), 0);
    uint64_t s4 = now(db);
    uint64_t s5;
    uint64_t d = mk(db, "d", &s5);
    cr_assert_eq(bf_db_rename(db, "d", "c", 0), 0); /* replaces a */
    uint64_t s6 = now(db);
    expect_names(db, s1, "a");
    expect_names(db, s2, "a b");
    expect_names(db, s3, "b c");
    expect_names(db, s4, "c");
    expect_names(db, s5, "c d");
    expect_names(db, s6, "c");
    cr_assert_eq(id_at(db, s2, "a"), a);
    cr_assert_eq(id_at(db, s3, "a"), 0);
    cr_assert_eq(id_at(db, s3, "c"), a);
    cr_assert_eq(id_at(db, s3, "b"), b);
    cr_assert_eq(id_at(db, s4, "b"), 0);
    cr_assert_eq(id_at(db, s5, "c"), a);
    cr_assert_eq(id_at(db, s6, "c"), d);
    cr_assert_eq(id_at(db, s6, "d"), 0);
    /* the files without a name are still there by id, as they were */
    struct bf_fileinfo fi;
    bf_view *v = view(db, s6);
    cr_assert_eq(bf_view_getinfo(v, a, &fi), 0);
    cr_assert_str_eq(fi.name, "");
    cr_assert_eq(bf_view_getinfo(v, b, &fi), 0);
    cr_assert_str_eq(fi.name, "");
    bf_db_view_close(v);
    v = view(db, s1);
    cr_assert_eq(bf_view_getinfo(v, d, &fi), -ENOENT, "d did not exist yet");
    bf_file *vf;
    cr_assert_eq(bf_view_file_open(v, d, &vf), -ENOENT);
    bf_db_view_close(v);
}

/* A view's file opened at S reads S while commits land, from this session
 * and from another; it is read-only. */
HIST(a_view_file_keeps_reading_its_serial_while_commits_land, 30)
{
    uint64_t id = mk(db, "f", NULL);
    bf_file *f = open_file(db, id);
    uint64_t s1 = commit(f, 0, 3, 1, UINT64_MAX, 3 * BS);
    bf_view *v = view(db, s1);
    bf_file *vf = view_file(v, id);
    bf_db *o = tb_session(t, BF_DB_SHARED);
    bf_file *g = open_file(o, id);
    for (unsigned tag = 2; tag < 6; tag++) {
        commit(tag % 2 ? f : g, 0, 3, tag, tag == 5 ? 1 : UINT64_MAX, (tag + 1) * BS);
        for (uint64_t b = 0; b < 3; b++)
            expect_view_blk(vf, b, 1);
        cr_assert_eq(vf->size, 3 * BS);
    }
    cr_assert_eq(vf->ops->begin(vf), -EROFS, "a view is read-only");
    bf_db_file_close(o, g);
    bf_db_close(o);
    bf_db_file_close(db, f);
    bf_db_file_close(db, vf);
    bf_db_view_close(v);
}

/* ---- retention, gc, pins ------------------------------------------------------- */

/* With no retention, gc takes every serial but the current one from new
 * views, but not the serial of an open view, which stays readable through
 * the gc; once it is closed, the next gc takes it. */
HIST(gc_takes_unkept_serials_but_not_a_pinned_one, 30)
{
    cr_assert_eq(bf_db_watch(db, nop_listener, NULL), 0);
    uint64_t id = mk(db, "f", NULL);
    bf_file *f = open_file(db, id);
    uint64_t s1 = commit(f, 0, 2, 1, UINT64_MAX, 2 * BS);
    uint64_t s2 = commit(f, 0, 2, 2, UINT64_MAX, 2 * BS);
    uint64_t s3 = commit(f, 0, 2, 3, UINT64_MAX, 2 * BS);
    bf_view *v2 = view(db, s2), *v2b = view(db, s2);
    bf_file *vf = view_file(v2, id);
    cr_assert_eq(history(db).pinned, s2);
    struct bf_history h = gc_none(db);
    cr_assert_eq(h.from, s2, "the pin holds the history back");
    cr_assert_eq(h.pinned, s2);
    cr_assert_eq(h.current, s3);
    cr_assert_eq(h.keep_ns, 0);
    bf_view *v;
    cr_assert_eq(bf_db_view_open(db, s1, &v), -ENOENT, "s1 is gone");
    for (uint64_t b = 0; b < 2; b++)
        expect_view_blk(vf, b, 2);
    bf_db_file_close(db, vf);
    bf_db_view_close(v2);
    cr_assert_eq(history(db).pinned, s2, "a second view of s2 still pins it");
    h = gc_none(db);
    cr_assert_eq(h.from, s2);
    vf = view_file(v2b, id);
    expect_view_blk(vf, 1, 2);
    bf_db_file_close(db, vf);
    bf_db_view_close(v2b);
    cr_assert_eq(history(db).pinned, 0);
    h = gc_none(db);
    cr_assert_eq(h.from, s3);
    cr_assert_eq(bf_db_view_open(db, s2, &v), -ENOENT, "s2 is gone once unpinned");
    v = view(db, s3);
    vf = view_file(v, id);
    expect_view_blk(vf, 0, 3);
    bf_db_file_close(db, vf);
    bf_db_view_close(v);
    bf_db_file_close(db, f);
}

/* A longer retention does not bring back what was collected; a shorter one
 * lets the next gc advance. */
HIST(retention_is_stored_in_the_database, 30)
{
    uint64_t id = mk(db, "f", NULL);
    bf_file *f = open_file(db, id);
    commit(f, 0, 1, 1, UINT64_MAX, BS);
    bf_db_file_close(db, f);
    cr_assert_eq(bf_db_history_keep(db, -1), -EINVAL);
    tb_history_keep(db, 3600LL * 1000000000);
    bf_db *o = tb_session(t, BF_DB_SHARED);
    cr_assert_eq(history(o).keep_ns, 3600LL * 1000000000, "another session sees it");
    struct bf_history h;
    cr_assert_eq(bf_db_gc(o, &h), 0);
    cr_assert_eq(h.from, history(db).from, "nothing is an hour old");
    bf_db_close(o);
    bf_db *r = tb_session(t, BF_DB_RDONLY | BF_DB_SHARED);
    cr_assert_eq(bf_db_history_keep(r, 0), -EROFS);
    cr_assert_eq(bf_db_gc(r, &h), -EROFS);
    bf_db_close(r);
}

/* The retention is a time: with a period shorter than the age of every
 * commit, the gc takes them all but the newest, however many (the
 * housekeeping looks at the log a batch at a time; the gc goes to the
 * end). */
HIST(a_short_retention_lets_the_gc_take_every_older_commit, 60)
{
    uint64_t id = mk(db, "f", NULL);
    uint32_t mode;
    for (int i = 0; i < 1050; i++) { /* more than a batch */
        mode = 0600 | (i & 7);
        cr_assert_eq(bf_db_setattr(db, id, &mode, NULL, NULL, NULL), 0);
    }
    uint64_t last = now(db);
    tb_after(bf_now_ns() + 1); /* every commit is at least 1 ns old */
    tb_history_keep(db, 1);
    struct bf_history h;
    cr_assert_eq(bf_db_gc(db, &h), 0);
    cr_assert_eq(h.from, last);
    struct bf_fileinfo fi;
    bf_view *v = view(db, last);
    cr_assert_eq(bf_view_getinfo(v, id, &fi), 0);
    cr_assert_eq(fi.mode, mode);
    bf_db_view_close(v);
    cr_assert_eq(bf_db_view_open(db, last - 1, &v), -ENOENT);
}

/* The pins of a session that died go with it: the gc then takes its
 * serial. */
struct pin_args {
    const char *spec;
    uint64_t serial;
};

static void pin_child(const void *arg, int fd)
{
    const struct pin_args *a = arg;
    bf_db *db = NULL;
    bf_view *v = NULL;
    if (bf_db_open(a->spec, BF_DB_SHARED, &db, NULL, 0) < 0 ||
        bf_db_view_open(db, a->serial, &v) < 0)
        _exit(2);
    if (write(fd, "x", 1) != 1)
        _exit(3);
    for (;;)
        pause();
}

HIST(a_dead_session_s_pins_go_with_it, 30)
{
    uint64_t id = mk(db, "f", NULL);
    bf_file *f = open_file(db, id);
    uint64_t s1 = commit(f, 0, 1, 1, UINT64_MAX, BS);
    uint64_t s2 = commit(f, 0, 1, 2, UINT64_MAX, BS);
    bf_db_file_close(db, f);
    struct pin_args a = { t->spec, s1 };
    pid_t pid = tb_child_start(pin_child, &a);
    cr_assert_eq(history(db).pinned, s1);
    struct bf_history h = gc_none(db);
    cr_assert_eq(h.from, s1, "the live child's pin holds");
#ifdef TB_PG
    int64_t child = tb_pg_count(t, "SELECT max(id) FROM sessions", 0);
#endif
    tb_kill_child(pid);
#ifdef TB_PG
    /* PostgreSQL takes a session whose lock went for dead only after a
     * grace (docs/design/PG-ENGINE.md, D7; 30 s by default): once the
     * server noticed the child's end, look with a session whose grace is
     * short. */
    const char *live = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                       " AND classid = 1111883777 AND objid = ?1 AND objsubid = 2";
    for (int i = 0; i < 3000 && tb_pg_count(t, live, child) > 0; i++) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(tb_pg_count(t, live, child), 0, "the server noticed the child's end");
    struct bf_pg_options quick = { .dead_grace_ms = 1 };
    bf_db *q = NULL;
    cr_assert_eq(bf_pg_open(t->spec + 3, BF_DB_SHARED, NULL, &quick, &q, NULL, 0), 0);
    h = gc_none(q);
    bf_db_close(q);
#else
    h = gc_none(db);
#endif
    cr_assert_eq(h.pinned, 0, "its pin went with it");
    cr_assert_eq(h.from, s2);
    cr_assert_eq(tb_side_count(t, "SELECT count(*) FROM pins", 0), 0);
}

/* A read-only session's views are not pinned: the gc may take their serial,
 * and its loads then fail with -EIO (never -ESTALE). */
HIST(an_unpinned_view_fails_with_eio_once_collected, 30)
{
    cr_assert_eq(bf_db_watch(db, nop_listener, NULL), 0);
    uint64_t id = mk(db, "f", NULL);
    bf_file *f = open_file(db, id);
    uint64_t s1 = commit(f, 0, 1, 1, UINT64_MAX, BS);
    bf_db *r = tb_session(t, BF_DB_RDONLY | BF_DB_SHARED);
    bf_view *v = view(r, s1);
    bf_file *vf = view_file(v, id);
    expect_view_blk(vf, 0, 1);
    cr_assert_eq(history(db).pinned, 0, "a read-only session pins nothing");
    commit(f, 0, 1, 2, UINT64_MAX, BS);
    gc_none(db);
    void *buf = malloc(BS);
    cr_assert_eq(vf->ops->loadblk(vf, 0, BF_SERIAL_NOW, buf, NULL), -EIO);
    struct bf_fileinfo fi;
    cr_assert_eq(bf_view_getinfo(v, id, &fi), -EIO, "the serial is gone, not the file");
    free(buf);
    bf_db_file_close(r, vf);
    bf_db_view_close(v);
    bf_db_close(r);
    bf_db_file_close(db, f);
}

/* An unlinked file stays readable at the serials it had its name until the
 * gc passes them (also after its last close), then it is deleted. */
HIST(an_unlinked_file_stays_for_the_history_until_the_gc_passes_it, 30)
{
    cr_assert_eq(bf_db_watch(db, nop_listener, NULL), 0);
    uint64_t id = mk(db, "f", NULL);
    bf_file *f = open_file(db, id);
    uint64_t s1 = commit(f, 0, 2, 1, UINT64_MAX, 2 * BS);
    bf_db_file_close(db, f);
    cr_assert_eq(bf_db_unlink(db, "f"), 0);
    uint64_t s2 = now(db);
    cr_assert_eq(bf_db_trim(db), 0);
    cr_assert_eq(id_at(db, s1, "f"), id);
    cr_assert_eq(id_at(db, s2, "f"), 0);
    bf_view *v = view(db, s1);
    bf_file *vf = view_file(v, id);
    expect_view_blk(vf, 1, 1);
    /* no retention, but the view pins s1: the file stays */
    gc_none(db);
    expect_view_blk(vf, 1, 1);
    cr_assert_eq(bf_db_getinfo(db, id, NULL), 0, "kept for the pinned view");
    bf_db_file_close(db, vf);
    bf_db_view_close(v);
    struct bf_history h = gc_none(db);
    cr_assert_eq(h.from, s2);
    cr_assert_eq(bf_db_getinfo(db, id, NULL), -ENOENT, "deleted once the gc passed its unlink");
    cr_assert_eq(tb_side_count(t, "SELECT count(*) FROM blockmap WHERE file=?1", (int64_t)id), 0);
    cr_assert_eq(tb_side_count(t, "SELECT count(*) FROM file_states WHERE file=?1", (int64_t)id),
                 0);
    cr_assert_eq(bf_db_view_open(db, s1, &v), -ENOENT);
}

/* ---- a file's log --------------------------------------------------------------------- */

struct log {
    struct bf_log_entry e[16];
    size_t n;
};

static int log_collect(void *arg, const struct bf_log_entry *e)
{
    struct log *l = arg;
    cr_assert_lt(l->n, 16);
    l->e[l->n++] = *e;
    return 0;
}

static struct log file_log(bf_db *db, uint64_t id, uint64_t before, size_t max)
{
    struct log l = { .n = 0 };
    cr_assert_eq(bf_db_file_log(db, id, before, max, log_collect, &l), 0);
    return l;
}

HIST(a_file_s_log_lists_its_commits_newest_first, 30)
{
    uint64_t s[9];
    uint64_t id = mk(db, "f", &s[0]);
    bf_file *f = open_file(db, id);
    s[1] = commit(f, 0, 3, 1, UINT64_MAX, 3 * BS);
    uint32_t mode = 0600;
    cr_assert_eq(bf_db_setattr(db, id, &mode, NULL, NULL, NULL), 0);
    s[2] = now(db);
    cr_assert_eq(bf_db_rename(db, "f", "g", 0), 0);
    s[3] = now(db);
    s[4] = commit(f, 0, 1, 2, 2, 2 * BS); /* cut at 2 blocks, block 0 stored */
    s[5] = commit(f, 0, 1, 3, 0, BS);     /* cut at 0, block 0 stored again */
    bf_db_file_close(db, f);
    mk(db, "other", &s[6]);
    uint64_t h = mk(db, "h", &s[7]);
    cr_assert_eq(bf_db_rename(db, "h", "g", 0), 0); /* replaces f */
    s[8] = now(db);
    const struct {
        uint64_t serial;
        enum bf_commit_kind kind;
        uint64_t blocks, size;
        bool truncated;
        const char *name;
    } want[] = {
        { s[8], BF_COMMIT_UNLINK, 0, BS, false, "" },
        { s[5], BF_COMMIT_WRITE, 2, BS, true, "g" },     /* 0 stored, 1 dropped */
        { s[4], BF_COMMIT_WRITE, 2, 2 * BS, true, "g" }, /* 0 stored, 2 dropped */
        { s[3], BF_COMMIT_RENAME, 0, 3 * BS, false, "g" },
        { s[2], BF_COMMIT_SETATTR, 0, 3 * BS, false, "f" },
        { s[1], BF_COMMIT_WRITE, 3, 3 * BS, false, "f" },
        { s[0], BF_COMMIT_CREATE, 0, 0, false, "f" },
    };
    struct log all = file_log(db, id, UINT64_MAX, 16);
    cr_assert_eq(all.n, 7);
    for (size_t i = 0; i < 7; i++) {
        const struct bf_log_entry *e = &all.e[i];
        cr_assert_eq(e->serial, want[i].serial, "entry %zu", i);
        cr_assert_eq(e->kind, want[i].kind, "entry %zu: kind %d", i, e->kind);
        cr_assert_eq(e->blocks, want[i].blocks, "entry %zu: %llu blocks", i,
                     (unsigned long long)e->blocks);
        cr_assert_eq(e->size, want[i].size, "entry %zu", i);
        cr_assert_eq(e->truncated, want[i].truncated, "entry %zu", i);
        cr_assert_str_eq(e->name, want[i].name, "entry %zu", i);
        cr_assert_gt(e->time_ns, 0);
        cr_assert(i == 0 || e->time_ns <= all.e[i - 1].time_ns);
    }
    /* paging: two at a time, each page before the last entry of the one
     * before */
    uint64_t before = UINT64_MAX;
    for (size_t page = 0; page < 4; page++) {
        struct log l = file_log(db, id, before, 2);
        size_t n = page < 3 ? 2 : 1;
        cr_assert_eq(l.n, n);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(l.e[i].serial, want[2 * page + i].serial);
        before = l.e[n - 1].serial;
    }
    cr_assert_eq(file_log(db, id, before, 2).n, 0, "none left");
    struct log lh = file_log(db, h, UINT64_MAX, 16);
    cr_assert_eq(lh.n, 2);
    cr_assert_eq(lh.e[0].kind, BF_COMMIT_RENAME);
    cr_assert_str_eq(lh.e[0].name, "g");
    cr_assert_eq(lh.e[1].kind, BF_COMMIT_CREATE);
    cr_assert_str_eq(lh.e[1].name, "h");
    /* the gc leaves the log of the kept history only */
    gc_none(db);
    cr_assert_eq(file_log(db, id, UINT64_MAX, 16).n, 1, "the commit at 'from' only");
}

/* ---- space ------------------------------------------------------------------------------- */

/* A block rewritten ten times keeps ten more versions, not ten copies of
 * the file; with no retention the gc takes them. */
HIST(history_costs_what_changed_not_the_file_size, 30)
{
    cr_assert_eq(bf_db_watch(db, nop_listener, NULL), 0);
    uint64_t id = mk(db, "f", NULL);
    bf_file *f = open_file(db, id);
    commit(f, 0, 64, 1, UINT64_MAX, 64 * BS);
    for (unsigned i = 0; i < 10; i++)
        commit(f, 7, 8, 2 + i, UINT64_MAX, 64 * BS);
    const char *q = "SELECT count(*) FROM blockmap WHERE file=?1";
    cr_assert_eq(tb_side_count(t, q, (int64_t)id), 64 + 10);
    cr_assert_eq(
        tb_side_count(t, "SELECT count(*) FROM blockmap WHERE file=?1 AND blk=7", (int64_t)id), 11);
    gc_none(db);
    cr_assert_eq(tb_side_count(t, q, (int64_t)id), 64);
    tb_expect(f, 7, 11);
    bf_db_file_close(db, f);
}

/* ---- engines without history --------------------------------------------------------- */

#ifndef TB_PG
Test(memory, keeps_no_history, .timeout = 20)
{
    struct tb t;
    bf_db *db = tb_open(&t, TB_MEMORY);
    struct bf_history h = { .kept = true, .from = 9 };
    cr_assert_eq(bf_db_history(db, &h), 0);
    cr_assert(!h.kept);
    cr_assert_eq(h.from + h.current + h.pinned + (uint64_t)h.keep_ns, 0);
    bf_view *v = NULL;
    cr_assert_eq(bf_db_view_open(db, 1, &v), -EOPNOTSUPP);
    cr_assert_null(v);
    cr_assert_eq(bf_db_history_keep(db, 0), -EOPNOTSUPP);
    cr_assert_eq(bf_db_gc(db, &h), -EOPNOTSUPP);
    struct log l = { .n = 0 };
    cr_assert_eq(bf_db_file_log(db, 1, UINT64_MAX, 4, log_collect, &l), -EOPNOTSUPP);
    bf_db_close(db);
    tb_done(&t);
}

/* ---- the upgrade of a SQLite database of schema 2 --------------------------------------- */

/* Schema 2, as bigfilefs wrote it (sqlite_schema.c before schema 3), with
 * files "f" (id 1: blocks 0 and 2, 3 blocks long), "e" (id 2, empty) and a
 * nameless file (id 3) a crash left, at serial 5. */
static const char schema2_sql[] =
    "PRAGMA page_size=65536; PRAGMA journal_mode=WAL;"
    "CREATE TABLE files(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE,"
    " blksize INTEGER NOT NULL, size INTEGER NOT NULL, mode INTEGER NOT NULL,"
    " uid INTEGER NOT NULL, gid INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
    " ctime_ns INTEGER NOT NULL, content_serial INTEGER NOT NULL DEFAULT 0,"
    " content_session INTEGER NOT NULL DEFAULT 0, size_serial INTEGER NOT NULL DEFAULT 0,"
    " size_session INTEGER NOT NULL DEFAULT 0, meta_serial INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE contents(id INTEGER PRIMARY KEY, data BLOB NOT NULL);"
    "CREATE TABLE uploads(session INTEGER NOT NULL, bytes INTEGER NOT NULL,"
    " content INTEGER NOT NULL, since INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(session, bytes, content)) WITHOUT ROWID;"
    "CREATE TABLE blockmap(file INTEGER NOT NULL, blk INTEGER NOT NULL,"
    " serial INTEGER NOT NULL, session INTEGER NOT NULL, content INTEGER, superseded INTEGER,"
    " PRIMARY KEY(file, blk, serial)) WITHOUT ROWID;"
    "CREATE INDEX blockmap_current ON blockmap(file, blk)"
    " WHERE superseded IS NULL AND content IS NOT NULL;"
    "CREATE INDEX blockmap_superseded ON blockmap(superseded) WHERE superseded IS NOT NULL;"
    "CREATE TABLE commit_log(serial INTEGER PRIMARY KEY, session INTEGER NOT NULL,"
    " kind INTEGER NOT NULL, file INTEGER, file2 INTEGER, time_ns INTEGER NOT NULL,"
    " size INTEGER, trunc INTEGER, blocks BLOB, name TEXT, name2 TEXT, flags INTEGER);"
    "CREATE TABLE sessions(id INTEGER PRIMARY KEY AUTOINCREMENT, pid INTEGER, host TEXT,"
    " started_ns INTEGER, applied INTEGER NOT NULL, shared INTEGER NOT NULL);"
    "CREATE TABLE holds(session INTEGER NOT NULL, file INTEGER NOT NULL,"
    " PRIMARY KEY(session, file)) WITHOUT ROWID;"
    "INSERT INTO meta(key, value) VALUES('serial', 5), ('log_trimmed', 0), ('collected', 0);"
    "INSERT INTO files(id, name, blksize, size, mode, uid, gid, mtime_ns, ctime_ns) VALUES"
    " (1, 'f', 4096, 12288, 416, 7, 8, 111, 222), (2, 'e', 4096, 0, 420, 0, 0, 1, 1),"
    " (3, NULL, 4096, 4096, 420, 0, 0, 1, 1);"
    "PRAGMA user_version=2;";

static void make_v2(struct tb *t)
{
    sqlite3 *c;
    sqlite3_stmt *st;
    void *buf = malloc(BS);
    char appid[64];
    tb_mkdir(t);
    t->kind = TB_SQLITE;
    snprintf(t->spec, sizeof(t->spec), "%s", t->path);
    cr_assert_eq(sqlite3_open(t->path, &c), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(c, schema2_sql, NULL, NULL, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(c));
    snprintf(appid, sizeof(appid), "PRAGMA application_id=%d", BF_SQLITE_APPLICATION_ID);
    cr_assert_eq(sqlite3_exec(c, appid, NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(
        sqlite3_prepare_v2(c, "INSERT INTO contents(id, data) VALUES(?1, ?2)", -1, &st, NULL),
        SQLITE_OK);
    static const int rows[][3] = { { 1, 0, 4 }, { 1, 2, 5 }, { 3, 0, 3 } }; /* file, blk, serial */
    for (int i = 0; i < 3; i++) {
        tb_fill(buf, BS, (uint64_t)rows[i][1], 1);
        sqlite3_bind_int(st, 1, i + 1);
        sqlite3_bind_blob(st, 2, buf, BS, SQLITE_STATIC);
        cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
        char q[160];
        snprintf(q, sizeof(q), "INSERT INTO blockmap VALUES(%d, %d, %d, 1, %d, NULL)", rows[i][0],
                 rows[i][1], rows[i][2], i + 1);
        cr_assert_eq(sqlite3_exec(c, q, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(c));
    }
    sqlite3_finalize(st);
    sqlite3_close(c);
    free(buf);
}

/* A database of schema 2 is upgraded at its first read-write open: history
 * starts at its serial then, with the state of every file there. */
Test(sqlite_upgrade, schema_2_gets_history_from_its_serial_at_the_upgrade, .timeout = 30)
{
    struct tb t;
    bf_db *db = NULL;
    char err[512] = "";
    make_v2(&t);
    cr_assert_eq(bf_db_open(t.path, BF_DB_RDONLY, &db, err, sizeof(err)), -EROFS);
    cr_assert_not_null(strstr(err, "schema 2"), "%s", err);
    db = tb_session(&t, 0);
    cr_assert_eq(tb_side_count(&t, "PRAGMA user_version", 0), BF_SQLITE_SCHEMA_VERSION);
    struct bf_history h = history(db);
    cr_assert_eq(h.from, 5);
    cr_assert_eq(h.current, 5);
    cr_assert_eq(h.keep_ns, BF_HISTORY_KEEP_NS);
    cr_assert_eq(tb_side_count(&t, "SELECT count(*) FROM file_states WHERE serial=5", 0), 2,
                 "f and e (the nameless one was purged at the open)");
    bf_view *v;
    cr_assert_eq(bf_db_view_open(db, 4, &v), -ENOENT, "nothing older was kept");
    expect_names(db, 5, "e f");
    v = view(db, 5);
    struct bf_fileinfo fi;
    cr_assert_eq(bf_view_lookup(v, "f", &fi), 0);
    cr_assert_eq(fi.id, 1);
    cr_assert_eq(fi.size, 3 * BS);
    cr_assert_eq(fi.mode, 0640);
    cr_assert_eq(fi.mtime_ns, 111);
    bf_file *vf = view_file(v, 1);
    expect_view_blk(vf, 0, 1);
    expect_view_blk(vf, 1, -1);
    expect_view_blk(vf, 2, 1);
    bf_db_file_close(db, vf);
    bf_db_view_close(v);
    /* the history goes on from there */
    bf_file *f = open_file(db, 1);
    uint64_t s6 = commit(f, 1, 2, 2, UINT64_MAX, 3 * BS);
    bf_db_file_close(db, f);
    v = view(db, 5);
    vf = view_file(v, 1);
    expect_view_blk(vf, 1, -1);
    bf_db_file_close(db, vf);
    bf_db_view_close(v);
    v = view(db, s6);
    vf = view_file(v, 1);
    expect_view_blk(vf, 1, 2);
    bf_db_file_close(db, vf);
    bf_db_view_close(v);
    bf_db_close(db);
    tb_done(&t);
}
#endif
