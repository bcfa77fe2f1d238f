/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/backends: what only the SQLite backend has: durability
 * across reopen, crash atomicity, the orphan sweep, refusing files that are
 * not ours without touching them, read-only mode, and changes made by
 * another connection. */
#define _GNU_SOURCE /* unshare, CLONE_NEWNS */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <grp.h>
#include <sys/wait.h>

#include "helpers.h"
#include "../oscache.h"

#include <criterion/redirect.h> /* after criterion.h */

#define BS 65536u

static bf_db *sq_open(const char *path, unsigned flags)
{
    bf_db *db = NULL;
    char err[512] = "";
    int r = bf_db_open(path, flags, &db, err, sizeof(err));
    cr_assert_eq(r, 0, "open %s: %d %s", path, r, err);
    return db;
}

static const char *const side_suffixes[] = { "-wal", "-shm", "-journal" };

/* Which of path's side files exist: bit i for side_suffixes[i]. */
static unsigned side_files(const char *path)
{
    char p[512];
    unsigned bits = 0;
    for (unsigned i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", path, side_suffixes[i]);
        if (access(p, F_OK) == 0)
            bits |= 1u << i;
    }
    return bits;
}

/* Open must fail with `want` and an errbuf naming the file and containing
 * `words`; nothing is left behind: no byte of a regular file changed, no
 * -wal, -shm or -journal beside it that was not there before. */
static void expect_refused(const char *path, unsigned flags, int want, const char *words)
{
    bf_db *db = (bf_db *)0x1;
    char err[512] = "";
    struct stat st;
    int regular = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    uint64_t before = regular ? tb_checksum(path) : 0;
    unsigned sides = side_files(path);
    int r = bf_db_open(path, flags, &db, err, sizeof(err));
    cr_assert_eq(r, want, "open %s: %d (%s), expected %d", path, r, err, want);
    cr_assert_null(db, "no db on failure");
    cr_assert_not_null(strstr(err, path), "errbuf names the file: '%s'", err);
    cr_assert_not_null(strstr(err, words), "errbuf '%s' should say '%s'", err, words);
    if (regular)
        cr_assert_eq(tb_checksum(path), before, "%s was modified", path);
    unsigned after = side_files(path);
    for (unsigned i = 0; i < 3; i++)
        cr_assert(!(after & ~sides & (1u << i)), "%s%s left behind", path, side_suffixes[i]);
}

/* Make a database at t->path (in an existing t->dir) with file "f"
 * holding blocks [0, n) of tag 1. */
static uint64_t make_db_in(struct tb *t, uint64_t n)
{
    struct bf_fileinfo fi;
    bf_file *f;
    t->kind = TB_SQLITE;
    bf_db *db = sq_open(t->path, BF_DB_CREATE);
    tb_history_keep(db, 0); /* these tests predate history: none kept */
    cr_assert_eq(bf_db_create(db, "f", BS, 0, 0600, 0, 0, &fi), 0);
    cr_assert_eq(bf_db_file_open(db, fi.id, &f), 0);
    if (n)
        tb_store_range(f, 0, n, 1, n * BS);
    bf_db_file_close(db, f);
    bf_db_close(db);
    return fi.id;
}

/* The same in a fresh temporary directory. */
static uint64_t make_db(struct tb *t, uint64_t n)
{
    tb_mkdir(t);
    return make_db_in(t, n);
}

static int64_t side_int(const char *path, const char *sql)
{
    sqlite3 *c;
    sqlite3_stmt *st;
    int64_t v = -1;
    cr_assert_eq(sqlite3_open_v2(path, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(c, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(c));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(c);
    return v;
}

static void side_exec(const char *path, const char *sql)
{
    sqlite3 *c;
    cr_assert_eq(sqlite3_open(path, &c), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(c, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_close(c);
}

/* ---- schema, reopen ------------------------------------------------------ */

Test(sqlite_only, created_schema_and_pragmas, .timeout = 20)
{
    struct tb t;
    make_db(&t, 0);
    cr_assert_eq(side_int(t.path, "PRAGMA application_id"), BF_SQLITE_APPLICATION_ID);
    cr_assert_eq(side_int(t.path, "PRAGMA user_version"), BF_SQLITE_SCHEMA_VERSION);
    cr_assert_eq(side_int(t.path, "PRAGMA page_size"), 4096);
    static const char *const tables[] = { "meta",     "files",      "contents", "uploads",
                                          "blockmap", "commit_log", "sessions", "holds" };
    char q[128];
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        snprintf(q, sizeof(q), "SELECT count(*) FROM sqlite_schema WHERE name='%s'", tables[i]);
        cr_assert_eq(side_int(t.path, q), 1, "table %s", tables[i]);
    }
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM sqlite_schema WHERE type='index' AND "
                                  "name IN ('blockmap_current', 'blockmap_superseded')"),
                 2);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM sqlite_schema WHERE name='blocks' OR "
                                  "name='legacy_blocks'"),
                 0, "a new database has no schema-1 table");
    cr_assert_eq(side_int(t.path, "SELECT value FROM meta WHERE key='serial'"), 1,
                 "the create of f is the one commit");
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM sessions"), 0,
                 "a closed session leaves "
                 "no row");
    /* journal_mode WAL is persistent: the file header says so (bytes 18, 19 = 2) */
    unsigned char hdr[20];
    FILE *fp = fopen(t.path, "rb");
    cr_assert_eq(fread(hdr, 1, 20, fp), 20);
    fclose(fp);
    cr_assert_eq(hdr[18], 2);
    cr_assert_eq(hdr[19], 2);
    tb_rmdir(&t);
}

Test(sqlite_only, reopen_sees_committed, .timeout = 20)
{
    struct tb t;
    struct bf_fileinfo fi, fj;
    bf_file *f;
    uint64_t id = make_db(&t, 4);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_getinfo(db, id, &fi), 0);
    uint32_t mode = 0751;
    cr_assert_eq(bf_db_setattr(db, id, &mode, NULL, NULL, NULL), 0);
    cr_assert_eq(bf_db_create(db, "g", 8192, 77, 0644, 5, 6, NULL), 0);
    cr_assert_eq(bf_db_getinfo(db, id, &fi), 0);
    bf_db_close(db);

    db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_lookup(db, "f", &fj), 0);
    cr_assert_eq(fj.id, id);
    cr_assert_eq(fj.size, 4 * BS);
    cr_assert_eq(fj.blksize, BS);
    cr_assert_eq(fj.mode, 0751);
    cr_assert_eq(fj.mtime_ns, fi.mtime_ns);
    cr_assert_eq(fj.ctime_ns, fi.ctime_ns);
    cr_assert_eq(bf_db_lookup(db, "g", &fj), 0);
    cr_assert_eq(fj.size, 77);
    cr_assert_eq(fj.blksize, 8192);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    cr_assert_eq(f->size, 4 * BS);
    for (uint64_t b = 0; b < 4; b++)
        tb_expect(f, b, 1);
    tb_expect(f, 4, -1);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* Files are looked at through "file:" URIs: a name with the characters a
 * URI gives meaning to is still that file (not "a" with a query). */
Test(sqlite_only, uri_characters_in_the_path, .timeout = 20)
{
    struct tb t;
    char path[256], other[256];
    tb_mkdir(&t);
    snprintf(path, sizeof(path), "%s/a?mode=rwc&immutable=1#x%%41y", t.dir);
    snprintf(other, sizeof(other), "%s/a", t.dir);
    bf_db *db = sq_open(path, BF_DB_CREATE);
    cr_assert_eq(bf_db_create(db, "x", BS, 0, 0644, 0, 0, NULL), 0);
    bf_db_close(db);
    cr_assert_eq(access(other, F_OK), -1, "the database went to another file");
    db = sq_open(path, 0);
    cr_assert_eq(bf_db_lookup(db, "x", NULL), 0);
    bf_db_close(db);
    db = sq_open(path, BF_DB_RDONLY);
    cr_assert_eq(bf_db_lookup(db, "x", NULL), 0);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* ---- crashes ------------------------------------------------------------- */

enum crash_mode {
    CRASH_MID_STORE,     /* signal half way through the stores, never commit */
    CRASH_BEFORE_COMMIT, /* signal after the last store, never commit */
    CRASH_AFTER_COMMIT,  /* commit, then signal */
    CRASH_UNLINKED_OPEN, /* unlink an open file, then signal */
    CRASH_STAGED,        /* stage the new blocks (spilled, uncommitted), then signal */
};

#define CRASH_BLOCKS 64

/* In a child: open the db and do `mode` on file id, writing one byte to fd
 * at the crash point, then wait to be killed. Never returns. */
static void crash_child(const char *path, uint64_t id, enum crash_mode mode, int fd)
{
    bf_db *db;
    bf_file *f;
    char err[256];
    void *buf = malloc(BS);
    if (!buf || bf_db_open(path, 0, &db, err, sizeof(err)) < 0 || bf_db_file_open(db, id, &f) < 0)
        _exit(2);
    if (mode == CRASH_UNLINKED_OPEN) {
        if (bf_db_unlink(db, "f") < 0)
            _exit(3);
    } else if (mode == CRASH_STAGED) {
        uint64_t token;
        for (uint64_t b = 0; b < CRASH_BLOCKS; b++) {
            tb_fill(buf, BS, b, 2);
            if (f->ops->stage(f, b, buf, &token) < 0)
                _exit(5);
        }
    } else {
        if (f->ops->begin(f) < 0)
            _exit(3);
        for (uint64_t b = 0; b < CRASH_BLOCKS; b++) {
            if (mode == CRASH_MID_STORE && b == CRASH_BLOCKS / 2 && write(fd, "x", 1) != 1)
                _exit(4);
            tb_fill(buf, BS, b, 2);
            if (tb_store(f, b, buf) < 0)
                _exit(5);
        }
        if (f->ops->truncate(f, CRASH_BLOCKS) < 0)
            _exit(6);
        if (mode == CRASH_AFTER_COMMIT && tb_commit(f, 2 * CRASH_BLOCKS * BS) < 0)
            _exit(7);
    }
    if (mode != CRASH_MID_STORE && write(fd, "x", 1) != 1)
        _exit(4);
    for (;;)
        pause();
}

struct crash_args {
    const char *path;
    uint64_t id;
    enum crash_mode mode;
};

static void crash_fn(const void *arg, int fd)
{
    const struct crash_args *a = arg;
    crash_child(a->path, a->id, a->mode, fd);
}

static void crash_run(struct tb *t, uint64_t id, enum crash_mode mode)
{
    struct crash_args a = { t->path, id, mode };
    tb_kill_child(tb_child_start(crash_fn, &a));
}

static off_t blocks_size(const char *path, off_t *alloc);

static void crash_test(enum crash_mode mode)
{
    struct tb t;
    struct bf_fileinfo fi;
    bf_file *f;
    off_t alloc;
    /* blocks [0, 96) hold version 1; the crashed transaction writes version
     * 2 into [0, 64), cuts at 64 and sets the size to 128 blocks */
    uint64_t id = make_db(&t, 96);
    crash_run(&t, id, mode);
    if (mode != CRASH_UNLINKED_OPEN) /* its uploads went to the block file */
        cr_assert_geq(blocks_size(t.path, NULL), (96 + (mode == CRASH_MID_STORE ? 32 : 64)) * BS);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_getinfo(db, id, &fi), 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    if (mode == CRASH_AFTER_COMMIT) {
        cr_assert_eq(fi.size, 2 * CRASH_BLOCKS * BS, "all of it");
        for (uint64_t b = 0; b < CRASH_BLOCKS; b++)
            tb_expect(f, b, 2);
        for (uint64_t b = CRASH_BLOCKS; b < 96; b++)
            tb_expect(f, b, -1);
    } else {
        cr_assert_eq(fi.size, 96 * BS, "none of it");
        for (uint64_t b = 0; b < 96; b++)
            tb_expect(f, b, 1);
    }
    /* the dead process's uploads are deleted by the next session */
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads"), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents"),
                 mode == CRASH_AFTER_COMMIT ? CRASH_BLOCKS : 96);
    /* and their extents are punched out of the block file */
    blocks_size(t.path, &alloc);
    cr_assert_leq(alloc, side_int(t.path, "SELECT sum(len) FROM extents"),
                  "%lld bytes allocated to the block file", (long long)alloc);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

Test(sqlite_crash, killed_mid_store_none, .timeout = 30)
{
    crash_test(CRASH_MID_STORE);
}

Test(sqlite_crash, killed_before_commit_none, .timeout = 30)
{
    crash_test(CRASH_BEFORE_COMMIT);
}

Test(sqlite_crash, killed_after_commit_all, .timeout = 30)
{
    crash_test(CRASH_AFTER_COMMIT);
}

/* A daemon killed with spilled (staged) changes: the database as at the
 * last commit, the staged contents removed by the next session. */
Test(sqlite_crash, killed_with_staged_blocks_none, .timeout = 30)
{
    crash_test(CRASH_STAGED);
}

/* A commit of staged contents links them: no content is copied again
 * (the contents rows are the staged ones), and none stays an upload. */
Test(sqlite_staging, a_commit_links_staged_contents_without_a_copy, .timeout = 30)
{
    struct tb t;
    uint64_t id = make_db(&t, 8);
    bf_db *db = sq_open(t.path, 0);
    bf_file *f;
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    int64_t contents = side_int(t.path, "SELECT count(*) FROM contents");
    uint64_t tok[8];
    void *buf = malloc(BS);
    for (uint64_t b = 0; b < 8; b++) {
        tb_fill(buf, BS, b, 2);
        cr_assert_eq(f->ops->stage(f, b, buf, &tok[b]), 0);
    }
    free(buf);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads WHERE session<>0"), 8);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents"), contents + 8);
    cr_assert_eq(f->ops->begin(f), 0);
    for (uint64_t b = 0; b < 8; b++)
        cr_assert_eq(f->ops->storeblk_staged(f, b, tok[b], BF_SERIAL_NOW), 0);
    cr_assert_eq(tb_commit(f, 8 * BS), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents"), contents + 8,
                 "the commit copied staged contents");
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads WHERE session<>0"), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM blockmap b JOIN uploads u ON "
                                  "u.content=b.content"),
                 0, "a linked content is still an upload");
    for (uint64_t b = 0; b < 8; b++)
        tb_expect(f, b, 2);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

Test(sqlite_crash, orphan_swept_at_open, .timeout = 30)
{
    struct tb t;
    uint64_t id = make_db(&t, 8);
    crash_run(&t, id, CRASH_UNLINKED_OPEN);
    /* the dead process left the file nameless, its blocks still there */
    char q[128];
    snprintf(q, sizeof(q), "SELECT count(*) FROM files WHERE id=%llu AND name IS NULL",
             (unsigned long long)id);
    cr_assert_eq(side_int(t.path, q), 1);
    cr_assert_eq(tb_nblocks(&t, NULL, id), 8);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_getinfo(db, id, NULL), -ENOENT);
    bf_db_close(db);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM files"), 0);
    cr_assert_eq(tb_nblocks(&t, NULL, id), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents"), 0, "its contents went too");
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM sessions"), 0, "the dead session's row");
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM holds"), 0, "and its hold");
    tb_rmdir(&t);
}

/* ---- refusals ------------------------------------------------------------ */

Test(sqlite_refuse, missing_and_empty, .timeout = 20)
{
    struct tb t;
    bf_db *db = (bf_db *)0x1;
    char err[512];
    tb_mkdir(&t);
    cr_assert_eq(bf_db_open(t.path, 0, &db, err, sizeof(err)), -ENOENT);
    cr_assert_not_null(strstr(err, t.path));
    cr_assert_eq(bf_db_open(t.path, BF_DB_RDONLY | BF_DB_CREATE, &db, err, sizeof(err)), -ENOENT);
    cr_assert_eq(access(t.path, F_OK), -1, "nothing created");

    /* a zero-length file: refused without create, gets the schema with it */
    int fd = open(t.path, O_CREAT | O_WRONLY, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    expect_refused(t.path, 0, -EPROTO, "no bigfilefs schema");
    expect_refused(t.path, BF_DB_RDONLY, -EPROTO, "no bigfilefs schema");
    db = sq_open(t.path, BF_DB_CREATE);
    cr_assert_eq(bf_db_create(db, "x", BS, 0, 0644, 0, 0, NULL), 0);
    bf_db_close(db);
    cr_assert_eq(side_int(t.path, "PRAGMA page_size"), 4096);
    cr_assert_eq(side_int(t.path, "PRAGMA application_id"), BF_SQLITE_APPLICATION_ID);
    tb_rmdir(&t);
}

Test(sqlite_refuse, newer_schema, .timeout = 20)
{
    struct tb t;
    make_db(&t, 2);
    char sql[64], msg[128];
    snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", BF_SQLITE_SCHEMA_VERSION + 1);
    snprintf(msg, sizeof(msg), "created by a newer bigfilefs (schema %d, this build knows %d)",
             BF_SQLITE_SCHEMA_VERSION + 1, BF_SQLITE_SCHEMA_VERSION);
    side_exec(t.path, sql);
    cr_assert_eq(side_files(t.path), 0, "a WAL database, closed clean");
    expect_refused(t.path, 0, -EPROTONOSUPPORT, msg);
    expect_refused(t.path, BF_DB_CREATE, -EPROTONOSUPPORT, "newer");
    expect_refused(t.path, BF_DB_RDONLY, -EPROTONOSUPPORT, "newer");
    tb_rmdir(&t);
}

Test(sqlite_refuse, other_application, .timeout = 20)
{
    struct tb t;
    tb_mkdir(&t);
    side_exec(t.path, "CREATE TABLE t(x); INSERT INTO t VALUES(1), ('two');");
    expect_refused(t.path, 0, -EPROTO, "another application");
    expect_refused(t.path, BF_DB_CREATE, -EPROTO, "not a bigfilefs database");
    /* same with an application_id of its own */
    side_exec(t.path, "PRAGMA application_id=1234");
    expect_refused(t.path, BF_DB_CREATE, -EPROTO, "application_id 0x000004d2");
    tb_rmdir(&t);
}

/* A SQLite database with no table is still another program's as soon as
 * anything in it is set: each of these is refused, and left as it was. */
Test(sqlite_refuse, empty_but_not_in_every_respect, .timeout = 20)
{
    static const char *const setups[] = {
        "PRAGMA application_id=1234",                     /* a foreign application id */
        "PRAGMA user_version=7",                          /* a version of its own */
        "CREATE VIEW v AS SELECT 1",                      /* a view */
        "CREATE TABLE t(x); CREATE INDEX i ON t(x)",      /* a table and an index */
        "PRAGMA journal_mode=WAL; PRAGMA user_version=7", /* the same, in WAL mode */
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); CREATE TRIGGER g AFTER INSERT ON t "
        "BEGIN SELECT 1; END",
    };
    static const char *const words[] = {
        "application_id 0x000004d2", "user_version 7", "1 schema objects",
        "2 schema objects",          "user_version 7", "2 schema objects",
    };
    for (size_t i = 0; i < sizeof(setups) / sizeof(setups[0]); i++) {
        struct tb t;
        tb_mkdir(&t);
        side_exec(t.path, setups[i]);
        cr_assert_eq(side_files(t.path), 0, "%s: closed clean", setups[i]);
        expect_refused(t.path, BF_DB_CREATE, -EPROTO, "another application");
        expect_refused(t.path, BF_DB_CREATE, -EPROTO, words[i]);
        expect_refused(t.path, 0, -EPROTO, words[i]);
        expect_refused(t.path, BF_DB_RDONLY, -EPROTO, words[i]);
        cr_assert_eq(side_int(t.path, "SELECT count(*) FROM sqlite_schema WHERE name='files'"), 0,
                     "%s: no schema added", setups[i]);
        tb_rmdir(&t);
    }
}

/* A SQLite database empty in every respect (here: a table created and
 * dropped leaves its header and free pages) is taken as a new one. */
Test(sqlite_refuse, empty_in_every_respect_is_taken, .timeout = 20)
{
    struct tb t;
    tb_mkdir(&t);
    side_exec(t.path, "CREATE TABLE t(x); DROP TABLE t");
    struct stat st;
    cr_assert_eq(stat(t.path, &st), 0);
    cr_assert_gt(st.st_size, 0);
    bf_db *db = sq_open(t.path, BF_DB_CREATE);
    cr_assert_eq(bf_db_create(db, "x", BS, 0, 0644, 0, 0, NULL), 0);
    bf_db_close(db);
    cr_assert_eq(side_int(t.path, "PRAGMA application_id"), BF_SQLITE_APPLICATION_ID);
    tb_rmdir(&t);
}

/* Only a regular file can be a database: a device or a FIFO is refused
 * without being opened (a FIFO would block) and nothing is created beside
 * it (SQLite put a -journal beside /dev/null). */
Test(sqlite_refuse, not_a_regular_file, .timeout = 20)
{
    struct tb t;
    char fifo[256];
    cr_assert_eq(side_files("/dev/null"), 0);
    expect_refused("/dev/null", BF_DB_CREATE, -EPROTO, "a character device");
    expect_refused("/dev/zero", BF_DB_CREATE, -EPROTO, "a regular file");
    expect_refused("/dev/null", BF_DB_RDONLY, -EPROTO, "a character device");
    tb_mkdir(&t);
    snprintf(fifo, sizeof(fifo), "%s/fifo", t.dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    expect_refused(fifo, BF_DB_CREATE, -EPROTO, "a FIFO");
    tb_rmdir(&t);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    cr_assert_eq(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

Test(sqlite_refuse, not_sqlite, .timeout = 20)
{
    struct tb t;
    tb_mkdir(&t);
    static const char text[] = "this is a text file, not a database\n";
    write_file(t.path, text, sizeof(text) - 1);
    expect_refused(t.path, 0, -EPROTO, "not a SQLite database");
    expect_refused(t.path, BF_DB_CREATE, -EPROTO, "not a bigfilefs database");

    unsigned char *rnd = malloc(200000);
    srandom(12345);
    for (size_t i = 0; i < 200000; i++)
        rnd[i] = (unsigned char)random();
    write_file(t.path, rnd, 200000);
    free(rnd);
    expect_refused(t.path, BF_DB_CREATE, -EPROTO, "not a SQLite database");
    expect_refused(t.path, BF_DB_RDONLY, -EPROTO, "not a SQLite database");
    /* a directory */
    expect_refused(t.dir, BF_DB_CREATE, -EPROTO, "directory");
    tb_rmdir(&t);
}

/* Overwrite n bytes at off with a pattern. */
static void scribble(const char *path, off_t off, size_t n)
{
    unsigned char *junk = malloc(n);
    for (size_t i = 0; i < n; i++)
        junk[i] = (unsigned char)(0xA5 ^ i);
    int fd = open(path, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, junk, n, off), (ssize_t)n);
    close(fd);
    free(junk);
}

Test(sqlite_refuse, corrupt_btree_page, .timeout = 20)
{
    struct tb t;
    make_db(&t, 6);
    char wal[256];
    snprintf(wal, sizeof(wal), "%s-wal", t.path);
    cr_assert_eq(access(wal, F_OK), -1, "WAL checkpointed and removed at close");
    /* page 2 is the root of the files table: wreck its b-tree header */
    scribble(t.path, side_int(t.path, "PRAGMA page_size"), 64);
    expect_refused(t.path, 0, -EPROTO, "corrupt");
    expect_refused(t.path, BF_DB_CREATE, -EPROTO, "corrupt");
    expect_refused(t.path, BF_DB_RDONLY, -EPROTO, "corrupt");
    tb_rmdir(&t);
}

Test(sqlite_refuse, corrupt_schema_page, .timeout = 20)
{
    struct tb t;
    make_db(&t, 2);
    /* the schema's cells sit at the end of page 1 */
    scribble(t.path, side_int(t.path, "PRAGMA page_size") - 400, 400);
    expect_refused(t.path, 0, -EPROTO, "corrupt");
    tb_rmdir(&t);
}

Test(sqlite_refuse, missing_table, .timeout = 20)
{
    struct tb t;
    make_db(&t, 1);
    side_exec(t.path, "DROP TABLE blockmap");
    expect_refused(t.path, 0, -EPROTO, "tables or columns missing");
    tb_rmdir(&t);
}

/* ---- read-only ----------------------------------------------------------- */

Test(sqlite_only, read_only_refuses_writes, .timeout = 20)
{
    struct tb t;
    bf_file *f;
    uint64_t id = make_db(&t, 3);
    uint64_t before = tb_checksum(t.path);
    bf_db *db = sq_open(t.path, BF_DB_RDONLY);
    uint32_t mode = 0700;
    cr_assert_eq(bf_db_lookup(db, "f", NULL), 0);
    cr_assert_eq(bf_db_create(db, "x", BS, 0, 0644, 0, 0, NULL), -EROFS);
    cr_assert_eq(bf_db_unlink(db, "f"), -EROFS);
    cr_assert_eq(bf_db_rename(db, "f", "g", 0), -EROFS);
    cr_assert_eq(bf_db_setattr(db, id, &mode, NULL, NULL, NULL), -EROFS);
    cr_assert_eq(bf_db_set_blksize(db, id, 8192), -EROFS);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    tb_expect(f, 2, 1);
    cr_assert_eq(f->ops->begin(f), -EROFS);
    bf_db_file_close(db, f);
    bf_db_close(db);
    cr_assert_eq(tb_checksum(t.path), before);
    tb_rmdir(&t);
}

/* ---- a tampered database ------------------------------------------------- */

struct listed {
    int n;
    char names[4][BF_NAME_MAX + 1];
};

static int note_name(void *arg, const struct bf_fileinfo *fi)
{
    struct listed *l = arg;
    cr_assert_lt(l->n, 4, "unexpected name '%s'", fi->name);
    strcpy(l->names[l->n++], fi->name);
    return 0;
}

/* Count the lines of the redirected stderr that contain `what`. */
static int stderr_lines(const char *what)
{
    char line[1024];
    int n = 0;
    fflush(stderr);
    FILE *fp = cr_get_redirected_stderr();
    while (fgets(line, sizeof(line), fp))
        n += strstr(line, what) != NULL;
    return n;
}

/* Rows whose name no file can have (another program wrote them): a listing
 * leaves each out with one log line, instead of failing (ls of the mount
 * got EIO), and a lookup does not find them. */
Test(sqlite_tampered, impossible_names_are_left_out, .init = cr_redirect_stderr, .timeout = 20)
{
    struct tb t;
    struct listed l = { 0 };
    make_db(&t, 1);
    side_exec(t.path,
              "INSERT INTO files(name,blksize,size,mode,uid,gid,mtime_ns,ctime_ns) VALUES"
              " ('a/b',65536,0,420,0,0,0,0), ('../x',65536,0,420,0,0,0,0),"
              " ('.',65536,0,420,0,0,0,0), ('..',65536,0,420,0,0,0,0),"
              " ('',65536,0,420,0,0,0,0), (printf('%.300c','n'),65536,0,420,0,0,0,0),"
              " ('ab' || char(0) || 'cd',65536,0,420,0,0,0,0), (x'6869',65536,0,420,0,0,0,0),"
              " ('good',65536,0,420,0,0,0,0)");
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_list(db, note_name, &l), 0);
    cr_assert_eq(l.n, 2, "only the two real names are listed");
    cr_assert_str_eq(l.names[0], "f");
    cr_assert_str_eq(l.names[1], "good");
    cr_assert_eq(stderr_lines("left out of the listing"), 8, "one line per impossible name");
    static const char *const bad[] = { "a/b", "../x", ".", "..", "", "ab", "hi" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(bf_db_lookup(db, bad[i], NULL), -ENOENT, "'%s' found", bad[i]);
    cr_assert_eq(bf_db_lookup(db, "good", NULL), 0);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* ---- the WAL after big writeouts ------------------------------------------ */

static off_t wal_size(const char *path)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s-wal", path);
    return stat(p, &st) == 0 ? st.st_size : 0;
}

/* A file of 64 KiB blocks, and the number of them that makes a writeout
 * well past the WAL limit: the data is in the block file, and each upload
 * writes at least two pages to the WAL (its contents and extents rows). */
static bf_file *big_file(const char *path, bf_db *db, uint64_t *id, uint64_t *n)
{
    struct bf_fileinfo fi;
    bf_file *f;
    cr_assert_eq(bf_db_create(db, "big", BS, 0, 0644, 0, 0, &fi), 0);
    cr_assert_eq(bf_db_file_open(db, fi.id, &f), 0);
    *id = fi.id;
    *n = BF_SQLITE_WAL_LIMIT / (2 * (uint64_t)side_int(path, "PRAGMA page_size")) + 16;
    return f;
}

/* The WAL held the whole of the largest writeout until the database was
 * closed (4.3 GB after a 4 GiB writeout); now it is emptied after one. */
Test(sqlite_wal, bounded_after_a_big_writeout, .timeout = 120)
{
    struct tb t;
    uint64_t id, n;
    tb_mkdir(&t);
    bf_db *db = sq_open(t.path, BF_DB_CREATE);
    bf_file *f = big_file(t.path, db, &id, &n);
    tb_store_range(f, 0, n, 1, n * BS);
    off_t w = wal_size(t.path);
    cr_assert_leq(w, BF_SQLITE_WAL_LIMIT / 4,
                  "the WAL holds %lld bytes after a %llu-block writeout", (long long)w,
                  (unsigned long long)n);
    tb_expect(f, 0, 1);
    tb_expect(f, n - 1, 1);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* A reader holding a snapshot older than a big commit: the checkpoint
 * cannot pass it and does not wait for it (the commit returns, loads go
 * on); once it is gone, the next commit empties the WAL. */
Test(sqlite_wal, an_old_snapshot_is_not_waited_for, .timeout = 120)
{
    struct tb t;
    uint64_t id, n;
    sqlite3 *c;
    tb_mkdir(&t);
    bf_db *db = sq_open(t.path, BF_DB_CREATE);
    bf_file *f = big_file(t.path, db, &id, &n);
    cr_assert_eq(sqlite3_open(t.path, &c), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(c, "BEGIN; SELECT count(*) FROM files;", NULL, NULL, NULL),
                 SQLITE_OK);
    tb_store_range(f, 0, n, 1, n * BS);
    cr_assert_gt(wal_size(t.path), BF_SQLITE_WAL_LIMIT, "the old snapshot pins the WAL");
    tb_expect(f, 3, 1);
    cr_assert_eq(sqlite3_exec(c, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(c);
    uint32_t mode = 0600;
    cr_assert_eq(bf_db_setattr(db, id, &mode, NULL, NULL, NULL), 0);
    off_t w = wal_size(t.path);
    cr_assert_leq(w, BF_SQLITE_WAL_LIMIT / 4, "the WAL holds %lld bytes", (long long)w);
    tb_expect(f, n - 1, 1);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* ---- read-only media and directories ------------------------------------- */

/* Read a database made by make_db(n = 3) read-only, and check that nothing
 * can be changed; in a child process: exit status 0 or the failed step. */
static int read_only_steps(const char *path, uint64_t id)
{
    bf_db *db;
    bf_file *f;
    char err[512];
    void *buf = malloc(BS);
    if (bf_db_open(path, BF_DB_RDONLY, &db, err, sizeof(err)) < 0) {
        fprintf(stderr, "open read-only: %s\n", err);
        return 10;
    }
    if (bf_db_lookup(db, "f", NULL) < 0 || bf_db_file_open(db, id, &f) < 0)
        return 11;
    for (uint64_t b = 0; b < 4; b++)
        if (tb_load(f, b, buf) < 0 || (b < 3 ? !tb_check(buf, BS, b, 1) : !tb_is_zero(buf, BS)))
            return 12;
    if (f->ops->begin(f) != -EROFS || bf_db_create(db, "x", BS, 0, 0644, 0, 0, NULL) != -EROFS)
        return 13;
    bf_db_file_close(db, f);
    bf_db_close(db);
    free(buf);
    /* writing is refused with a reason, before anything is created */
    int r = bf_db_open(path, BF_DB_CREATE, &db, err, sizeof(err));
    if (r != -EROFS && r != -EACCES) {
        fprintf(stderr, "open read-write: %d %s\n", r, err);
        return 14;
    }
    if (!strstr(err, "cannot open for writing") || !strstr(err, "read-only")) {
        fprintf(stderr, "unclear: %s\n", err);
        return 15;
    }
    return 0;
}

/* Run fn(path, id) in a child as user nobody; return its exit status. */
static int as_nobody(int (*fn)(const char *, uint64_t), const char *path, uint64_t id)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
            _exit(2);
        _exit(fn(path, id));
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "child died: %d", st);
    return WEXITSTATUS(st);
}

Test(sqlite_readonly, read_only_medium, .timeout = 30)
{
    struct tb t;
    tb_mkdir(&t);
    /* a tmpfs of this test's own mount namespace, remounted read-only */
    if (unshare(CLONE_NEWNS) < 0) {
        tb_rmdir(&t);
        cr_skip_test("no mount namespace: %s", strerror(errno));
    }
    cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "%s", strerror(errno));
    cr_assert_eq(mount("tmpfs", t.dir, "tmpfs", 0, "size=16m"), 0, "%s", strerror(errno));
    uint64_t id = make_db_in(&t, 3);
    cr_assert_eq(side_files(t.path), 0);
    uint64_t before = tb_checksum(t.path);
    cr_assert_eq(mount(NULL, t.dir, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0, "%s", strerror(errno));
    cr_assert_eq(read_only_steps(t.path, id), 0);
    cr_assert_eq(side_files(t.path), 0);
    cr_assert_eq(tb_checksum(t.path), before);
    cr_assert_eq(umount2(t.dir, MNT_DETACH), 0);
    tb_rmdir(&t);
}

Test(sqlite_readonly, directory_not_writable, .timeout = 30)
{
    struct tb t;
    if (geteuid() != 0)
        cr_skip_test("needs root to act as another user");
    uint64_t id = make_db(&t, 3);
    uint64_t before = tb_checksum(t.path);
    cr_assert_eq(chmod(t.path, 0644), 0);
    cr_assert_eq(chmod(t.dir, 0555), 0);
    int st = as_nobody(read_only_steps, t.path, id);
    cr_assert_eq(chmod(t.dir, 0700), 0);
    cr_assert_eq(st, 0, "step %d failed", st);
    cr_assert_eq(side_files(t.path), 0);
    cr_assert_eq(tb_checksum(t.path), before);
    tb_rmdir(&t);
}

/* In a child: reading must be refused, saying why. */
static int refused_for_wal(const char *path, uint64_t id)
{
    bf_db *db;
    char err[512];
    (void)id;
    int r = bf_db_open(path, BF_DB_RDONLY, &db, err, sizeof(err));
    if (r != -EROFS || !strstr(err, "-wal holds commits")) {
        fprintf(stderr, "open read-only: %d %s\n", r, err);
        return 20;
    }
    return 0;
}

/* A -wal with commits but no -shm, in a directory that cannot be written:
 * the file alone is not the database, and SQLite cannot index the -wal. */
Test(sqlite_readonly, wal_with_commits_cannot_be_read, .timeout = 30)
{
    struct tb t;
    char shm[256];
    if (geteuid() != 0)
        cr_skip_test("needs root to act as another user");
    uint64_t id = make_db(&t, 96);
    crash_run(&t, id, CRASH_AFTER_COMMIT);
    cr_assert_eq(side_files(t.path), 3u, "-wal and -shm left by the crash");
    snprintf(shm, sizeof(shm), "%s-shm", t.path);
    cr_assert_eq(unlink(shm), 0);
    cr_assert_eq(chmod(t.path, 0644), 0);
    cr_assert_eq(chmod(t.dir, 0555), 0);
    int st = as_nobody(refused_for_wal, t.path, id);
    cr_assert_eq(chmod(t.dir, 0700), 0);
    cr_assert_eq(st, 0, "step %d failed", st);
    cr_assert_eq(side_files(t.path), 1u, "nothing created");
    tb_rmdir(&t);
}

/* ---- another connection -------------------------------------------------- */

Test(sqlite_only, change_behind_the_back, .timeout = 20)
{
    struct tb t;
    bf_file *f;
    uint64_t id = make_db(&t, 2);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    tb_expect(f, 1, 1);

    sqlite3 *c;
    sqlite3_stmt *st;
    void *buf = malloc(BS);
    tb_fill(buf, BS, 1, 9);
    cr_assert_eq(sqlite3_open(t.path, &c), SQLITE_OK);
    /* block 1's content becomes a blob of other bytes (its extent goes) */
    static const char *const sql[] = {
        "UPDATE contents SET data=?1 WHERE id=(SELECT content FROM "
        "blockmap WHERE file=?2 AND blk=1 AND superseded IS NULL)",
        "DELETE FROM extents WHERE id=(SELECT content FROM "
        "blockmap WHERE file=?2 AND blk=1 AND superseded IS NULL)",
    };
    cr_assert_eq(sqlite3_exec(c, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(sqlite3_prepare_v2(c, sql[i], -1, &st, NULL), SQLITE_OK);
        if (i == 0)
            sqlite3_bind_blob(st, 1, buf, BS, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
        cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
        cr_assert_eq(sqlite3_changes(c), 1);
        sqlite3_finalize(st);
    }
    cr_assert_eq(sqlite3_exec(c, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    tb_expect(f, 1, 9); /* no stale snapshot */
    tb_expect(f, 0, 1);
    sqlite3_close(c);
    free(buf);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

struct holder {
    const char *path;
    int ready[2]; /* the holder has the write lock */
    int go[2];    /* the holder may let go of it */
};

/* Take the database's write lock through a connection of our own, and keep
 * it until told to let go. */
static void *hold_write_lock(void *arg)
{
    struct holder *h = arg;
    sqlite3 *c;
    char x;
    if (sqlite3_open(h->path, &c) != SQLITE_OK)
        return NULL;
    sqlite3_exec(c, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (write(h->ready[1], "x", 1) == 1 && read(h->go[0], &x, 1) == 1)
        sqlite3_exec(c, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(c);
    return NULL;
}

struct committer {
    bf_db *db;
    bf_file *f;
    int store, create; /* results */
};

/* Commit block 0 with tag 4, then create a file: both need the lock. */
static void *commit_and_create(void *arg)
{
    struct committer *c = arg;
    void *buf = malloc(BS);
    tb_fill(buf, BS, 0, 4);
    c->store = c->f->ops->begin(c->f);
    if (c->store == 0 && (c->store = tb_store(c->f, 0, buf)) < 0)
        c->f->ops->abort(c->f);
    if (c->store == 0)
        c->store = tb_commit(c->f, BS);
    c->create = bf_db_create(c->db, "later", BS, 0, 0644, 0, 0, NULL);
    free(buf);
    return NULL;
}

Test(sqlite_only, waits_for_a_busy_writer, .timeout = 20)
{
    struct tb t;
    bf_file *f;
    char c;
    pthread_t th, tc;
    uint64_t id = make_db(&t, 1);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    struct holder h = { .path = t.path };
    cr_assert_eq(pipe(h.ready), 0);
    cr_assert_eq(pipe(h.go), 0);
    cr_assert_eq(pthread_create(&th, NULL, hold_write_lock, &h), 0);
    cr_assert_eq(read(h.ready[0], &c, 1), 1);
    uint64_t waits = bf_sqlite_busy_waits(db);

    /* The other connection holds the lock: the commit finds it taken and
     * waits (the busy handler's event), and goes on once it is let go. */
    struct committer cm = { .db = db, .f = f };
    cr_assert_eq(pthread_create(&tc, NULL, commit_and_create, &cm), 0);
    cr_assert_eq(bf_sqlite_wait_busy(db, waits + 1, 10000), 0, "the commit waits for the lock");
    cr_assert_eq(write(h.go[1], "x", 1), 1);
    pthread_join(tc, NULL);
    pthread_join(th, NULL);
    cr_assert_eq(cm.store, 0, "the commit went on after the wait: %d", cm.store);
    cr_assert_eq(cm.create, 0);
    tb_expect(f, 0, 4);
    cr_assert_eq(bf_sqlite_wait_busy(db, waits + 2, 10), -ETIMEDOUT, "one wait, not more");
    close(h.ready[0]);
    close(h.ready[1]);
    close(h.go[0]);
    close(h.go[1]);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

Test(sqlite_only, last_error_hook, .timeout = 10)
{
    struct tb t;
    char msg[256] = "junk";
    make_db(&t, 0);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_sqlite_last_error(db, msg, sizeof(msg)), 0);
    cr_assert_str_eq(msg, "", "no failure yet");
    bf_db *mem;
    cr_assert_eq(bf_db_open("mem:", 0, &mem, NULL, 0), 0);
    cr_assert_eq(bf_sqlite_last_error(mem, msg, sizeof(msg)), -EINVAL);
    cr_assert_eq(bf_sqlite_busy_waits(mem), 0);
    cr_assert_eq(bf_sqlite_wait_busy(mem, 1, 0), -EINVAL);
    bf_db_close(mem);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* ---- sessions of other processes ------------------------------------------- */

/* In a child: open a shared session, hold file "f" (id) and file "g"
 * (gid), upload 16 blocks of f in a transaction, tell fd, and wait at the
 * commit to be killed (a daemon killed mid-writeout). */
static void upload_child(const char *path, uint64_t id, uint64_t gid, int fd)
{
    bf_db *db;
    bf_file *f, *g;
    char err[256];
    void *buf = malloc(BS);
    if (!buf || bf_db_open(path, BF_DB_SHARED, &db, err, sizeof(err)) < 0 ||
        bf_db_file_open(db, id, &f) < 0 || bf_db_file_open(db, gid, &g) < 0)
        _exit(2);
    if (f->ops->begin(f) < 0)
        _exit(3);
    for (uint64_t b = 0; b < 16; b++) {
        tb_fill(buf, BS, b, 2);
        if (tb_store(f, b, buf) < 0)
            _exit(4);
    }
    if (write(fd, "x", 1) != 1)
        _exit(5);
    for (;;)
        pause();
}

struct upload_args {
    const char *path;
    uint64_t id, gid;
};

static void upload_fn(const void *arg, int fd)
{
    const struct upload_args *a = arg;
    upload_child(a->path, a->id, a->gid, fd);
}

/* A daemon killed at the commit of a writeout leaves its uploads and its
 * holds behind: a live session that looks finds it dead and cleans up
 * (its uploads deleted, the file only it held purged), the database as
 * at the last commit. */
static void dead_session_test(bool reopen)
{
    struct tb t;
    struct bf_fileinfo gi;
    uint64_t id = make_db(&t, 8);
    bf_db *a = sq_open(t.path, BF_DB_SHARED);
    cr_assert_eq(bf_db_create(a, "g", BS, 0, 0644, 0, 0, &gi), 0);
    int64_t contents = side_int(t.path, "SELECT count(*) FROM contents");
    struct upload_args ua = { t.path, id, gi.id };
    pid_t pid = tb_child_start(upload_fn, &ua);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM sessions"), 2);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads"), 16);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents"), contents + 16);
    /* the child is alive: it keeps g, and the database is shared */
    cr_assert_eq(bf_db_unlink(a, "g"), 0);
    cr_assert_eq(bf_db_getinfo(a, gi.id, NULL), 0, "held by the live child");
    cr_assert_eq(bf_db_trim(a), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads"), 16, "a live session's");
    expect_refused(t.path, 0, -EBUSY, "in use by another bigfilefs");

    tb_kill_child(pid);
    if (reopen) {
        bf_db_close(a);
        a = sq_open(t.path, 0); /* the next session to open notices */
    } else {
        cr_assert_eq(bf_db_trim(a), 0); /* a live one's housekeeping notices */
    }
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads"), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents"), contents, "uploads deleted");
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM sessions"), 1, "its row went");
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM holds"), 0, "and its holds");
    cr_assert_eq(bf_db_getinfo(a, gi.id, NULL), -ENOENT, "g was held by it alone: purged");
    bf_file *f;
    cr_assert_eq(bf_db_file_open(a, id, &f), 0);
    for (uint64_t b = 0; b < 8; b++)
        tb_expect(f, b, 1);
    bf_db_file_close(a, f);
    bf_db_close(a);
    tb_rmdir(&t);
}

Test(sqlite_sessions, a_live_session_cleans_up_after_a_killed_one, .timeout = 30)
{
    dead_session_test(false);
}

Test(sqlite_sessions, the_next_session_cleans_up_after_a_killed_one, .timeout = 30)
{
    dead_session_test(true);
}

/* ---- the upgrade of schema 1 ------------------------------------------------ */

/* The SQL of schema 1, as bigfilefs wrote it (git show
 * e784c70:src/backends/sqlite.c). */
static const char schema1_sql[] = "PRAGMA page_size=65536; PRAGMA journal_mode=WAL;"
                                  "CREATE TABLE files("
                                  " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                                  " name TEXT UNIQUE,"
                                  " blksize INTEGER NOT NULL,"
                                  " size INTEGER NOT NULL,"
                                  " mode INTEGER NOT NULL,"
                                  " uid INTEGER NOT NULL,"
                                  " gid INTEGER NOT NULL,"
                                  " mtime_ns INTEGER NOT NULL,"
                                  " ctime_ns INTEGER NOT NULL);"
                                  "CREATE TABLE blocks("
                                  " file INTEGER NOT NULL,"
                                  " blk INTEGER NOT NULL,"
                                  " data BLOB NOT NULL,"
                                  " UNIQUE(file, blk));"
                                  "PRAGMA user_version=1;";

/* A schema-1 database at t->path: "f" (id 1: 3 blocks of tag 1 and a
 * hole, 3 * BS + 10 bytes, mode 0640, uid 7, gid 8, times 111 and 222),
 * "e" (id 2, empty) and a nameless file (id 3, 2 blocks) a crash left. */
static void make_v1(struct tb *t)
{
    sqlite3 *c;
    sqlite3_stmt *st;
    void *buf = malloc(BS);
    tb_mkdir(t);
    t->kind = TB_SQLITE;
    cr_assert_eq(sqlite3_open(t->path, &c), SQLITE_OK);
    char appid[64];
    snprintf(appid, sizeof(appid), "PRAGMA application_id=%d", BF_SQLITE_APPLICATION_ID);
    cr_assert_eq(sqlite3_exec(c, schema1_sql, NULL, NULL, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(c));
    cr_assert_eq(sqlite3_exec(c, appid, NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(c,
                     "INSERT INTO files VALUES(1, 'f', 65536, 196618, 416, 7, 8, 111, 222),"
                     " (2, 'e', 65536, 0, 420, 0, 0, 1, 1),"
                     " (3, NULL, 65536, 131072, 420, 0, 0, 1, 1)",
                     NULL, NULL, NULL),
        SQLITE_OK, "%s", sqlite3_errmsg(c));
    cr_assert_eq(sqlite3_prepare_v2(c, "INSERT INTO blocks VALUES(?1, ?2, ?3)", -1, &st, NULL),
                 SQLITE_OK);
    static const int rows[][2] = { { 1, 0 }, { 1, 1 }, { 1, 3 }, { 3, 0 }, { 3, 1 } };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        tb_fill(buf, BS, (uint64_t)rows[i][1], 1);
        sqlite3_bind_int(st, 1, rows[i][0]);
        sqlite3_bind_int(st, 2, rows[i][1]);
        sqlite3_bind_blob(st, 3, buf, BS, SQLITE_STATIC);
        cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_close(c);
    free(buf);
    cr_assert_eq(side_files(t->path), 0, "closed clean");
}

static void expect_v1_content(bf_db *db)
{
    struct bf_fileinfo fi;
    bf_file *f;
    cr_assert_eq(bf_db_lookup(db, "f", &fi), 0);
    cr_assert_eq(fi.id, 1);
    cr_assert_eq(fi.size, 3 * BS + 10);
    cr_assert_eq(fi.blksize, BS);
    cr_assert_eq(fi.mode, 0640);
    cr_assert_eq(fi.uid, 7);
    cr_assert_eq(fi.gid, 8);
    cr_assert_eq(fi.mtime_ns, 111);
    cr_assert_eq(fi.ctime_ns, 222);
    cr_assert_eq(bf_db_lookup(db, "e", &fi), 0);
    cr_assert_eq(fi.size, 0);
    cr_assert_eq(bf_db_file_open(db, 1, &f), 0);
    cr_assert_eq(f->size, 3 * BS + 10);
    tb_expect(f, 0, 1);
    tb_expect(f, 1, 1);
    tb_expect(f, 2, -1);
    tb_expect(f, 3, 1);
    uint64_t n = 0, next = 0;
    cr_assert_eq(f->ops->stored_blocks(f, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(f->ops->next_stored(f, 2, &next), 0);
    cr_assert_eq(next, 3);
    bf_db_file_close(db, f);
}

Test(sqlite_upgrade, schema_1_is_upgraded_in_place_at_its_first_read_write_open, .timeout = 30)
{
    struct tb t;
    make_v1(&t);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(side_int(t.path, "PRAGMA user_version"), BF_SQLITE_SCHEMA_VERSION);
    expect_v1_content(db);
    cr_assert_eq(bf_db_getinfo(db, 3, NULL), -ENOENT, "the nameless file a crash left is purged");
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM legacy_blocks"), 3,
                 "no blob copied: the old rows stay, but the purged file's");
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents"), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM blockmap WHERE content < 0 AND serial = 0 "
                                  "AND session = 0"),
                 3);
    /* a commit replaces a schema-1 block: its row goes (once no history
     * needs it) */
    tb_history_keep(db, 0);
    bf_file *f;
    cr_assert_eq(bf_db_file_open(db, 1, &f), 0);
    tb_store_range(f, 1, 2, 2, 3 * BS + 10);
    tb_expect(f, 1, 2);
    bf_db_file_close(db, f);
    cr_assert_eq(bf_db_trim(db), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM legacy_blocks"), 2);
    bf_db_close(db);
    /* idempotent: opened again (and read-only), it is of our schema as it
     * was */
    uint64_t sum = tb_checksum(t.path);
    db = sq_open(t.path, BF_DB_RDONLY);
    cr_assert_eq(side_int(t.path, "PRAGMA user_version"), BF_SQLITE_SCHEMA_VERSION);
    bf_db_close(db);
    cr_assert_eq(tb_checksum(t.path), sum);
    db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_file_open(db, 1, &f), 0);
    tb_expect(f, 0, 1);
    tb_expect(f, 1, 2);
    tb_expect(f, 3, 1);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

Test(sqlite_upgrade, a_read_only_open_of_schema_1_is_refused, .timeout = 20)
{
    struct tb t;
    make_v1(&t);
    expect_refused(t.path, BF_DB_RDONLY, -EROFS, "open it read-write once, which upgrades it");
    expect_refused(t.path, BF_DB_RDONLY | BF_DB_SHARED, -EROFS, "schema 1");
    cr_assert_eq(side_int(t.path, "PRAGMA user_version"), 1);
    tb_rmdir(&t);
}

/* The upgrade is one transaction: when a step fails, the database stays at
 * schema 1, as it was. */
Test(sqlite_upgrade, a_failing_upgrade_leaves_schema_1, .timeout = 20)
{
    struct tb t;
    make_v1(&t);
    side_exec(t.path, "CREATE TABLE commit_log(x)"); /* in the way of the upgrade */
    expect_refused(t.path, 0, -EIO, "left at schema 1");
    cr_assert_eq(side_int(t.path, "PRAGMA user_version"), 1);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM sqlite_schema WHERE name IN ('blockmap', "
                                  "'meta', 'legacy_blocks', 'sessions')"),
                 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM blocks"), 5);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM pragma_table_info('files')"), 9);
    /* out of the way, it upgrades */
    side_exec(t.path, "DROP TABLE commit_log");
    bf_db *db = sq_open(t.path, 0);
    expect_v1_content(db);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* ---- garbage reused ---------------------------------------------------------- */

/* The contents a commit replaces become garbage that the next uploads of
 * their size overwrite: overwriting a file again and again does not grow
 * the database; what a transaction took and did not use goes back. */
Test(sqlite_only, overwrites_reuse_the_contents_they_replaced, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    uint64_t id = make_db(&t, 8);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    tb_store_range(f, 0, 8, 2, 8 * BS); /* the 8 first contents become garbage */
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents"), 16);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads WHERE session=0"), 8);
    /* an aborted transaction takes garbage and gives it back */
    void *buf = malloc(BS);
    tb_fill(buf, BS, 0, 9);
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(tb_store(f, 0, buf), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads WHERE session<>0"), 8,
                 "it took all the garbage of its size at once");
    f->ops->abort(f);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads WHERE session<>0"), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads WHERE session=0"), 8);
    /* overwriting twice more reuses: no new content */
    for (unsigned tag = 3; tag <= 4; tag++)
        tb_store_range(f, 0, 8, tag, 8 * BS);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents"), 16);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads WHERE session<>0"), 0);
    for (uint64_t b = 0; b < 8; b++)
        tb_expect(f, b, 4);
    /* the housekeeping deletes garbage nobody reused */
    cr_assert_eq(bf_db_trim(db), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents"), 8);
    free(buf);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* ---- the block file ------------------------------------------------------------ */

/* path + "-blocks" in buf. */
static const char *blocks_path(const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "%s-blocks", path);
    return buf;
}

/* The block file's size, and (*alloc) the bytes allocated to it. */
static off_t blocks_size(const char *path, off_t *alloc)
{
    char p[512];
    struct stat st;
    cr_assert_eq(stat(blocks_path(path, p, sizeof(p)), &st), 0, "%s: %s", p, strerror(errno));
    if (alloc)
        *alloc = (off_t)st.st_blocks * 512;
    return st.st_size;
}

/* The pages of the block file of the database at path that the OS
 * caches. */
static size_t blocks_cached(const char *path)
{
    char p[512];
    return oc_cached_pages(blocks_path(path, p, sizeof(p)));
}

/* Drop the block file of the database at path from the OS cache (or skip
 * the test: oscache.h). */
static void blocks_evict(const char *path)
{
    char p[512];
    oc_evict(blocks_path(path, p, sizeof(p)));
}

/* Read the block file of the database at path through the OS cache. */
static void blocks_warm(const char *path)
{
    char p[512], buf[65536];
    int fd = open(blocks_path(path, p, sizeof(p)), O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    close(fd);
}

/* Blocks [lo, hi) of file id read as tb_fill(tag) in a read-only session
 * of the database at path, opened for this and closed. */
static void expect_read_only(const char *path, uint64_t id, uint64_t lo, uint64_t hi, int tag)
{
    bf_file *f;
    bf_db *db = sq_open(path, BF_DB_RDONLY);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    for (uint64_t b = lo; b < hi; b++)
        tb_expect(f, b, tag);
    bf_db_file_close(db, f);
    bf_db_close(db);
}

/* Every content is in the block file: an empty blob and an extent. */
static void all_in_the_file(const char *path)
{
    cr_assert_eq(side_int(path, "SELECT count(*) FROM contents WHERE length(data)<>0"), 0,
                 "a content is a blob");
    cr_assert_eq(side_int(path, "SELECT count(*) FROM contents WHERE id NOT IN "
                                "(SELECT id FROM extents)"),
                 0, "a content has no extent");
}

Test(sqlite_blockfile, contents_go_to_the_block_file, .timeout = 20)
{
    struct tb t;
    uint64_t id = make_db(&t, 8);
    cr_assert_eq(blocks_size(t.path, NULL), 8 * BS);
    all_in_the_file(t.path);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM extents"), 8);
    cr_assert_eq(side_int(t.path, "SELECT value FROM meta WHERE key='blocks_end'"), 8 * BS);
    expect_read_only(t.path, id, 0, 8, 1);
    tb_rmdir(&t);
}

/* Rewriting the same blocks reuses the extents the last commit freed: the
 * file stays at twice the data; what the housekeeping deletes is punched
 * out (its space given back, the file's size kept). */
Test(sqlite_blockfile, rewrites_reuse_extents_and_the_file_does_not_grow, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    uint64_t id = make_db(&t, 8);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    for (unsigned tag = 2; tag <= 11; tag++) {
        tb_store_range(f, 0, 8, tag, 8 * BS);
        cr_assert_eq(blocks_size(t.path, NULL), 16 * BS, "rewrite %u grew the file", tag - 1);
    }
    for (uint64_t b = 0; b < 8; b++)
        tb_expect(f, b, 11);
    all_in_the_file(t.path);
    cr_assert_eq(side_int(t.path, "SELECT max(gen) FROM extents"), 5, "each reused 5 times");
    cr_assert_eq(bf_db_trim(db), 0);
    off_t alloc;
    cr_assert_eq(blocks_size(t.path, &alloc), 16 * BS);
    cr_assert_leq(alloc, 8 * BS, "the freed extents were not punched out (%lld bytes)",
                  (long long)alloc);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM extents"), 8);
    for (uint64_t b = 0; b < 8; b++)
        tb_expect(f, b, 11);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* Turn the database at path into one upgraded from before the block
 * file: every content a blob, no extent, 'blocks_end' 0, no block file. */
static void make_blobs(const char *path)
{
    char bp[512];
    int fd = open(blocks_path(path, bp, sizeof(bp)), O_RDONLY);
    cr_assert_geq(fd, 0);
    sqlite3 *c;
    sqlite3_stmt *sel, *upd;
    cr_assert_eq(sqlite3_open(path, &c), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(c, "SELECT id, off, len FROM extents", -1, &sel, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(c, "UPDATE contents SET data=?2 WHERE id=?1", -1, &upd, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_exec(c, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    void *buf = malloc(BS);
    while (sqlite3_step(sel) == SQLITE_ROW) {
        cr_assert_eq(sqlite3_column_int64(sel, 2), BS);
        cr_assert_eq(pread(fd, buf, BS, sqlite3_column_int64(sel, 1)), BS);
        sqlite3_bind_int64(upd, 1, sqlite3_column_int64(sel, 0));
        sqlite3_bind_blob(upd, 2, buf, BS, SQLITE_STATIC);
        cr_assert_eq(sqlite3_step(upd), SQLITE_DONE);
        sqlite3_reset(upd);
    }
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    free(buf);
    close(fd);
    cr_assert_eq(sqlite3_exec(c,
                              "DELETE FROM extents; UPDATE meta SET value=0 WHERE key='blocks_end';"
                              "COMMIT",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(c);
    cr_assert_eq(unlink(bp), 0);
}

/* A database upgraded from before the block file (its contents blobs,
 * no extent) keeps them readable, read-only too; new uploads go to the
 * file, which the first one creates; a reused blob content moves to the
 * file. */
Test(sqlite_blockfile, blob_contents_stay_readable_and_new_ones_go_to_the_file, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    char bp[512];
    uint64_t id = make_db(&t, 8);
    make_blobs(t.path);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents WHERE length(data)=65536"), 8);
    expect_read_only(t.path, id, 0, 8, 1);
    cr_assert_eq(access(blocks_path(t.path, bp, sizeof(bp)), F_OK), -1, "made by a reader");

    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(access(bp, F_OK), -1, "made before an upload");
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    for (uint64_t b = 0; b < 8; b++)
        tb_expect(f, b, 1);
    tb_store_range(f, 0, 4, 2, 8 * BS); /* new extents: no garbage yet */
    cr_assert_eq(blocks_size(t.path, NULL), 4 * BS);
    tb_store_range(f, 0, 4, 3, 8 * BS); /* into the 4 blobs the last commit freed */
    cr_assert_eq(blocks_size(t.path, NULL), 8 * BS);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM contents WHERE length(data)=65536"), 4);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM extents"), 8);
    for (uint64_t b = 0; b < 8; b++)
        tb_expect(f, b, b < 4 ? 3 : 1);
    bf_db_file_close(db, f);
    bf_db_close(db);
    expect_read_only(t.path, id, 0, 4, 3);
    expect_read_only(t.path, id, 4, 8, 1);
    tb_rmdir(&t);
}

/* A load held between its lookup and its read (the load hook). */
struct held_load {
    pthread_mutex_t m;
    pthread_cond_t c;
    int calls;
    bool held, go;
    bf_file *f;
    void *buf;
    int r;
};

static void hold_first_load(void *arg)
{
    struct held_load *h = arg;
    pthread_mutex_lock(&h->m);
    if (h->calls++ == 0) {
        h->held = true;
        pthread_cond_broadcast(&h->c);
        while (!h->go)
            pthread_cond_wait(&h->c, &h->m);
    }
    pthread_mutex_unlock(&h->m);
}

static void *held_loader(void *arg)
{
    struct held_load *h = arg;
    h->r = tb_load(h->f, 0, h->buf);
    return NULL;
}

/* A load (or send: `fn` runs it on h) looked block 0 up, then a commit
 * replaced it and another upload reused its extent (gen bumped, new
 * bytes written) before it read it: it sees that the extent changed,
 * looks again, and returns the block's new content, never the other
 * block's bytes. */
static void race_a_reuse(void *(*fn)(void *))
{
    struct tb t;
    bf_file *f;
    uint64_t id = make_db(&t, 2);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    struct held_load h = { .f = f, .buf = malloc(BS), .r = 1 };
    pthread_mutex_init(&h.m, NULL);
    pthread_cond_init(&h.c, NULL);
    cr_assert_eq(bf_sqlite_set_load_hook(db, hold_first_load, &h), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fn, &h), 0);
    pthread_mutex_lock(&h.m);
    while (!h.held)
        pthread_cond_wait(&h.c, &h.m);
    pthread_mutex_unlock(&h.m);
    int64_t off0 = side_int(t.path, "SELECT off FROM extents WHERE id=(SELECT content FROM "
                                    "blockmap WHERE blk=0)");
    tb_store_range(f, 0, 1, 2, 2 * BS); /* block 0's content becomes garbage */
    tb_store_range(f, 1, 2, 3, 2 * BS); /* block 1's new content reuses it */
    cr_assert_eq(side_int(t.path, "SELECT off FROM extents WHERE id=(SELECT content FROM "
                                  "blockmap WHERE blk=1)"),
                 off0, "block 1 did not reuse block 0's extent");
    pthread_mutex_lock(&h.m);
    h.go = true;
    pthread_cond_broadcast(&h.c);
    pthread_mutex_unlock(&h.m);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(h.r, 0);
    cr_assert(tb_check(h.buf, BS, 0, 2), "it returned bytes of another content");
    cr_assert_eq(h.calls, 2, "it looked again once");
    cr_assert_eq(bf_sqlite_set_load_hook(db, NULL, NULL), 0);
    free(h.buf);
    pthread_mutex_destroy(&h.m);
    pthread_cond_destroy(&h.c);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

Test(sqlite_blockfile, a_load_racing_a_reuse_looks_again, .timeout = 30)
{
    race_a_reuse(held_loader);
}

/* A sink for loadblk_send that reads what it is sent into buf, then runs
 * `during` (if set) before returning, while the bytes are still being
 * sent. */
struct test_sink {
    struct bf_sink sink;
    char *buf;
    size_t len;
    int calls;
    bool direct; /* the last send's file was opened O_DIRECT */
    void (*during)(struct test_sink *ts, int fd, uint64_t pos);
    void *arg;
};

/* pread len bytes at pos of a file a send passed on, into buf: through
 * a page-aligned buffer, which a descriptor opened O_DIRECT needs.
 * Returns pread's result (buf is filled only when it read them all);
 * errno is pread's. */
static ssize_t bounce_pread(int fd, void *buf, size_t len, uint64_t pos)
{
    void *b = aligned_alloc(4096, (len + 4095) / 4096 * 4096);
    cr_assert_not_null(b);
    ssize_t n = pread(fd, b, len, (off_t)pos);
    int e = errno;
    if (n == (ssize_t)len)
        memcpy(buf, b, len);
    free(b);
    errno = e;
    return n;
}

/* bounce_pread, which must read all len bytes. */
static void sent_pread(int fd, void *buf, size_t len, uint64_t pos)
{
    cr_assert_eq(bounce_pread(fd, buf, len, pos), (ssize_t)len, "pread: %s", strerror(errno));
}

static int test_send(struct bf_sink *sink, int fd, uint64_t pos, size_t len)
{
    struct test_sink *ts = (struct test_sink *)sink;
    ts->calls++;
    ts->len = len;
    ts->direct = (fcntl(fd, F_GETFL) & O_DIRECT) != 0;
    sent_pread(fd, ts->buf, len, pos);
    if (ts->during)
        ts->during(ts, fd, pos);
    return 0;
}

static int tb_send(bf_file *f, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                   struct test_sink *ts)
{
    ts->sink.send = test_send;
    return f->ops->loadblk_send(f, blk, at, off, len, &ts->sink);
}

/* loadblk_send passes on exactly the bytes loadblk reads, as of the
 * serial asked, any range of a block; a hole and a block never stored
 * are -ENODATA (read them with loadblk); loadblk_ahead needs nothing
 * for any of them. */
Test(sqlite_blockfile, send_passes_on_the_stored_bytes, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    uint64_t id = make_db(&t, 2);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    cr_assert_not_null(f->ops->loadblk_send);
    cr_assert_not_null(f->ops->loadblk_ahead);
    char *want = malloc(BS);
    struct test_sink ts = { .buf = malloc(BS) };
    uint64_t s1 = 0;
    cr_assert_eq(f->ops->loadblk(f, 0, BF_SERIAL_NOW, want, &s1), 0);
    tb_history_keep(db, (int64_t)3600 * 1000000000);  /* keep the version of s1 */
    uint64_t s2 = tb_store_range(f, 0, 1, 2, 3 * BS); /* block 0 again; block 2 never stored */
    blocks_warm(t.path); /* what the OS caches is read through its cache (the next test) */
    for (uint64_t b = 0; b < 2; b++) {
        cr_assert_eq(tb_send(f, b, BF_SERIAL_NOW, 0, BS, &ts), 0);
        cr_assert(tb_check(ts.buf, BS, b, b == 0 ? 2 : 1), "block %llu", (unsigned long long)b);
        cr_assert_eq(f->ops->loadblk_ahead(f, b, BF_SERIAL_NOW), 0);
    }
    cr_assert_eq(tb_send(f, 0, s2 + 10, 4096, 8192, &ts), 0, "a range, as of a later serial");
    tb_fill(want, BS, 0, 2);
    cr_assert_eq(memcmp(ts.buf, want + 4096, 8192), 0);
    cr_assert_eq(tb_send(f, 0, s1, 512, BS - 512, &ts), 0, "the older version");
    tb_fill(want, BS, 0, 1);
    cr_assert_eq(memcmp(ts.buf, want + 512, BS - 512), 0);
    int calls = ts.calls;
    cr_assert_eq(tb_send(f, 2, BF_SERIAL_NOW, 0, BS, &ts), -ENODATA, "never stored");
    cr_assert_eq(f->ops->begin(f), 0);
    memset(want, 0, BS);
    cr_assert_eq(tb_store(f, 1, want), 0);
    cr_assert_eq(tb_commit(f, 3 * BS), 0);
    cr_assert_eq(tb_send(f, 1, BF_SERIAL_NOW, 0, BS, &ts), -ENODATA, "a hole");
    cr_assert_eq(f->ops->loadblk_ahead(f, 1, BF_SERIAL_NOW), 0);
    cr_assert_eq(ts.calls, calls, "sent nothing");
    free(want);
    free(ts.buf);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* Contents kept as blobs (a database from before the block file): not
 * sent (-ENODATA: loadblk reads them), and prefetch is told to load them
 * into memory (loadblk_ahead -ENODATA). */
Test(sqlite_blockfile, blob_contents_are_not_sent, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    uint64_t id = make_db(&t, 2);
    make_blobs(t.path);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    struct test_sink ts = { .buf = malloc(BS) };
    for (uint64_t b = 0; b < 2; b++) {
        cr_assert_eq(tb_send(f, b, BF_SERIAL_NOW, 0, BS, &ts), -ENODATA);
        cr_assert_eq(f->ops->loadblk_ahead(f, b, BF_SERIAL_NOW), -ENODATA);
        tb_expect(f, b, 1);
    }
    cr_assert_eq(ts.calls, 0);
    free(ts.buf);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* Block b (of tb_fill tag) loaded, with loadblk, into a page-aligned
 * buffer (what a direct read needs; the core's buffers are). */
static void expect_aligned_load(bf_file *f, uint64_t b, int tag)
{
    void *buf = aligned_alloc(4096, BS);
    uint64_t serial;
    cr_assert_not_null(buf);
    cr_assert_eq(f->ops->loadblk(f, b, BF_SERIAL_NOW, buf, &serial), 0);
    cr_assert(tb_check(buf, BS, b, (unsigned)tag), "block %llu", (unsigned long long)b);
    free(buf);
}

/* What the OS does not cache of the block file is read around its cache
 * (O_DIRECT): loads and sends read the right bytes and leave nothing in
 * it, and prefetch is told to load such blocks into memory (one request
 * ahead of the reader instead of a send per read). What it caches in
 * full is read through it: sends get the buffered descriptor, and
 * prefetch leaves those blocks to the sends. A block cached in part is
 * read directly. */
Test(sqlite_blockfile, cold_reads_go_around_the_os_cache, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    uint64_t id = make_db(&t, 4);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    struct test_sink ts = { .buf = malloc(BS) };
    blocks_evict(t.path);
    for (uint64_t b = 0; b < 4; b++) {
        expect_aligned_load(f, b, 1);
        cr_assert_eq(f->ops->loadblk_ahead(f, b, BF_SERIAL_NOW), -ENODATA);
        cr_assert_eq(tb_send(f, b, BF_SERIAL_NOW, 0, BS, &ts), 0);
        cr_assert(ts.direct, "block %llu sent from the O_DIRECT descriptor", (unsigned long long)b);
        cr_assert(tb_check(ts.buf, BS, b, 1));
    }
    char *odd = malloc(BS + 16);
    uint64_t serial;
    cr_assert_eq(f->ops->loadblk(f, 2, BF_SERIAL_NOW, odd + 16, &serial), 0);
    cr_assert(tb_check(odd + 16, BS, 2, 1), "an unaligned buffer: read buffered");
    free(odd);
    cr_assert_eq(tb_send(f, 3, BF_SERIAL_NOW, 100, 1000, &ts), 0, "an unaligned range");
    cr_assert_not(ts.direct);
    blocks_evict(t.path);
    expect_aligned_load(f, 0, 1);
    expect_aligned_load(f, 1, 1);
    cr_assert_eq(blocks_cached(t.path), 0, "direct loads left pages in the OS cache");

    blocks_warm(t.path);
    size_t all = blocks_cached(t.path);
    cr_assert_geq(all, 4 * BS / (size_t)getpagesize());
    for (uint64_t b = 0; b < 4; b++) {
        cr_assert_eq(f->ops->loadblk_ahead(f, b, BF_SERIAL_NOW), 0);
        cr_assert_eq(tb_send(f, b, BF_SERIAL_NOW, 0, BS, &ts), 0);
        cr_assert_not(ts.direct, "block %llu is cached: sent buffered", (unsigned long long)b);
        cr_assert(tb_check(ts.buf, BS, b, 1));
    }

    /* block 1 cached in part: its first page (read without readahead) */
    blocks_evict(t.path);
    int64_t off1 = side_int(t.path, "SELECT off FROM extents WHERE id=(SELECT content FROM "
                                    "blockmap WHERE blk=1)");
    char p[512], page[4096];
    int fd = open(blocks_path(t.path, p, sizeof(p)), O_RDONLY | O_CLOEXEC);
    cr_assert_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM), 0);
    cr_assert_eq(pread(fd, page, sizeof(page), off1), (ssize_t)sizeof(page));
    close(fd);
    size_t some = blocks_cached(t.path);
    cr_assert(some > 0 && some < BS / (size_t)getpagesize(), "%zu pages cached", some);
    cr_assert_eq(tb_send(f, 1, BF_SERIAL_NOW, 0, BS, &ts), 0);
    cr_assert(ts.direct, "a block cached in part is read directly");
    cr_assert(tb_check(ts.buf, BS, 1, 1));
    free(ts.buf);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* A sink like the daemon's (src/fs/ops.c reply_send): a direct read that
 * the file system refuses is said as -EINVAL, anything else is read. */
static int refusing_send(struct bf_sink *sink, int fd, uint64_t pos, size_t len)
{
    struct test_sink *ts = (struct test_sink *)sink;
    ts->calls++;
    ts->direct = (fcntl(fd, F_GETFL) & O_DIRECT) != 0;
    ssize_t n = bounce_pread(fd, ts->buf, len, pos);
    if (n == (ssize_t)len)
        return 0;
    return n < 0 && errno == EINVAL && ts->direct ? -EINVAL : -EIO;
}

/* A direct read that the file system refuses (EINVAL: an alignment it did
 * not say, made here by assuming an alignment of 1 byte) is read again
 * through the OS cache, right, and turns direct reads off for the
 * session: a load's pread, and a send's (the sink says -EINVAL; the send
 * fails, and the caller loads the bytes instead). */
Test(sqlite_blockfile, a_refused_direct_read_reads_buffered_from_then_on,
     .init = cr_redirect_stderr, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    uint64_t id = make_db(&t, 4);
    char *want = aligned_alloc(4096, BS), *odd = malloc(BS + 1);
    cr_assert(want && odd);
    uint64_t serial;
    for (int round = 0; round < 2; round++) {
        bf_db *db = sq_open(t.path, 0);
        cr_assert_eq(bf_sqlite_set_dio_align(db, 1), 0);
        cr_assert_eq(bf_db_file_open(db, id, &f), 0);
        blocks_evict(t.path);
        cr_assert_eq(f->ops->loadblk(f, 1, BF_SERIAL_NOW, want, &serial), 0);
        cr_assert(tb_check(want, BS, 1, 1));
        cr_assert_eq(blocks_cached(t.path), 0, "an aligned load is read directly");
        if (round == 0) {
            /* a load of 1000 bytes at 101: tried directly, refused */
            cr_assert_eq(f->ops->loadblk_range(f, 1, BF_SERIAL_NOW, 101, 1000, odd + 1, &serial),
                         0);
            cr_assert(memcmp(odd + 1, want + 101, 1000) == 0, "the refused range read wrong");
        } else {
            /* a send of 1000 bytes at 100: the sink gets the O_DIRECT
             * descriptor, which refuses */
            struct test_sink ts = { .sink = { .send = refusing_send }, .buf = odd };
            cr_assert_eq(f->ops->loadblk_send(f, 1, BF_SERIAL_NOW, 100, 1000, &ts.sink), -EIO);
            cr_assert(ts.direct && ts.calls == 1, "the send was not tried directly");
        }
        /* From then on, every read goes through the OS cache. */
        blocks_evict(t.path);
        expect_aligned_load(f, 2, 1);
        cr_assert_gt(blocks_cached(t.path), 0, "direct reads were not turned off (round %d)",
                     round);
        bf_db_file_close(db, f);
        bf_db_close(db);
    }
    free(want);
    free(odd);
    tb_rmdir(&t);
}

/* A block file cut short in the middle of an extent, at an unaligned
 * length (damage, or a copy of the database without all of its block
 * file): a direct load of that block gets the part before the end, then
 * reads on buffered and fails with -EIO at the end (never a block padded
 * with whatever the buffer held); the blocks before it still load. */
Test(sqlite_blockfile, a_block_file_cut_mid_extent_is_eio_read_directly_too,
     .init = cr_redirect_stderr, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    char p[512];
    uint64_t id = make_db(&t, 4);
    int64_t off3 = side_int(t.path, "SELECT off FROM extents WHERE id=(SELECT content FROM "
                                    "blockmap WHERE blk=3)");
    cr_assert_eq(truncate(blocks_path(t.path, p, sizeof(p)), off3 + BS / 2 + 100), 0);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    blocks_evict(t.path);
    void *buf = aligned_alloc(4096, BS);
    uint64_t serial;
    memset(buf, 0x5a, BS);
    cr_assert_eq(f->ops->loadblk(f, 3, BF_SERIAL_NOW, buf, &serial), -EIO);
    free(buf);
    for (uint64_t b = 0; b < 3; b++)
        expect_aligned_load(f, b, 1);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* With bf_db_options.buffered_reads (-o dio=off), every read goes
 * through the OS cache, as before direct reads: it caches what a load
 * reads, sends get the buffered descriptor, prefetch leaves blocks in
 * the file to the sends. */
Test(sqlite_blockfile, buffered_reads_go_through_the_os_cache, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    bf_db *db = NULL;
    char err[512] = "";
    uint64_t id = make_db(&t, 4);
    struct bf_db_options opt = { .buffered_reads = true };
    cr_assert_eq(bf_db_open_ex(t.path, 0, &opt, &db, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    struct test_sink ts = { .buf = malloc(BS) };
    blocks_evict(t.path);
    for (uint64_t b = 0; b < 2; b++) {
        expect_aligned_load(f, b, 1);
        cr_assert_eq(f->ops->loadblk_ahead(f, b + 2, BF_SERIAL_NOW), 0);
        cr_assert_eq(tb_send(f, b + 2, BF_SERIAL_NOW, 0, BS, &ts), 0);
        cr_assert_not(ts.direct);
        cr_assert(tb_check(ts.buf, BS, b + 2, 1));
    }
    cr_assert_geq(blocks_cached(t.path), 2 * BS / (size_t)getpagesize(),
                  "buffered loads cache what they read");
    free(ts.buf);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

static void *held_sender(void *arg)
{
    struct held_load *h = arg;
    struct test_sink ts = { .buf = h->buf };
    h->r = tb_send(h->f, 0, BF_SERIAL_NOW, 0, BS, &ts);
    return NULL;
}

/* The same for a send: it looks again and sends block 0's new content. */
Test(sqlite_blockfile, a_send_racing_a_reuse_looks_again, .timeout = 30)
{
    race_a_reuse(held_sender);
}

/* A commit and an upload that reuses the extent being sent, in another
 * thread. */
struct reuser {
    bf_file *f;
    pthread_mutex_t m;
    pthread_cond_t c;
    bool done;
};

static void *reuse_block0(void *arg)
{
    struct reuser *u = arg;
    tb_store_range(u->f, 0, 1, 2, 2 * BS); /* block 0's content becomes garbage */
    tb_store_range(u->f, 1, 2, 3, 2 * BS); /* block 1's new content reuses it */
    pthread_mutex_lock(&u->m);
    u->done = true;
    pthread_cond_broadcast(&u->c);
    pthread_mutex_unlock(&u->m);
    return NULL;
}

static void reuse_during_send(struct test_sink *ts, int fd, uint64_t pos)
{
    struct reuser *u = ts->arg;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, reuse_block0, u), 0);
    /* The upload must not write the bytes being sent: it waits for the
     * send's end, so it is not done after a second (the absence of an
     * event: only a bounded wait can tell). */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    pthread_mutex_lock(&u->m);
    while (!u->done && pthread_cond_timedwait(&u->c, &u->m, &until) == 0)
        ;
    bool done = u->done;
    pthread_mutex_unlock(&u->m);
    char *now = malloc(BS);
    sent_pread(fd, now, BS, pos);
    cr_assert(tb_check(now, BS, 0, 1), "the bytes changed while they were sent");
    cr_assert_not(done, "the reuse did not wait for the send");
    free(now);
    pthread_detach(th);
}

/* While a send passes an extent's bytes on (by reference: the kernel
 * copies them when the reply is made), an upload that reuses the extent
 * waits to write it until the send is over; then it writes, and both
 * contents read right. */
Test(sqlite_blockfile, a_reuse_waits_for_the_send_of_its_extent, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    uint64_t id = make_db(&t, 2);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    struct reuser u = { .f = f };
    pthread_mutex_init(&u.m, NULL);
    pthread_cond_init(&u.c, NULL);
    int64_t off0 = side_int(t.path, "SELECT off FROM extents WHERE id=(SELECT content FROM "
                                    "blockmap WHERE blk=0)");
    struct test_sink ts = { .buf = malloc(BS), .during = reuse_during_send, .arg = &u };
    cr_assert_eq(tb_send(f, 0, BF_SERIAL_NOW, 0, BS, &ts), 0);
    cr_assert(tb_check(ts.buf, BS, 0, 1));
    pthread_mutex_lock(&u.m);
    while (!u.done)
        pthread_cond_wait(&u.c, &u.m);
    pthread_mutex_unlock(&u.m);
    cr_assert_eq(side_int(t.path, "SELECT off FROM extents WHERE id=(SELECT content FROM "
                                  "blockmap WHERE blk=1)"),
                 off0, "block 1 did not reuse block 0's extent");
    tb_expect(f, 0, 2);
    tb_expect(f, 1, 3);
    free(ts.buf);
    pthread_mutex_destroy(&u.m);
    pthread_cond_destroy(&u.c);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* A database whose block file is gone: loads fail with EIO and say why;
 * an upload does not make a new, empty one under the extents. */
Test(sqlite_blockfile, a_missing_block_file_is_eio, .init = cr_redirect_stderr, .timeout = 20)
{
    struct tb t;
    bf_file *f;
    char bp[512], err[512];
    uint64_t id = make_db(&t, 2);
    cr_assert_eq(unlink(blocks_path(t.path, bp, sizeof(bp))), 0);
    void *buf = malloc(BS);
    for (int ro = 0; ro < 2; ro++) {
        bf_db *db = sq_open(t.path, ro ? BF_DB_RDONLY : 0);
        cr_assert_eq(bf_db_file_open(db, id, &f), 0);
        cr_assert_eq(tb_load(f, 0, buf), -EIO);
        cr_assert_eq(bf_sqlite_last_error(db, err, sizeof(err)), 0);
        cr_assert_not_null(strstr(err, bp), "'%s' does not name the block file", err);
        cr_assert_not_null(strstr(err, "missing"), "'%s' does not say it is missing", err);
        if (!ro) {
            tb_fill(buf, BS, 0, 2);
            cr_assert_eq(f->ops->begin(f), 0);
            cr_assert_eq(tb_store(f, 0, buf), -EIO);
            f->ops->abort(f);
            cr_assert_eq(access(bp, F_OK), -1, "an upload made a new block file");
        }
        bf_db_file_close(db, f);
        bf_db_close(db);
    }
    free(buf);
    tb_rmdir(&t);
}

/* A full file system under the block file: the upload's pwrite fails, the
 * store fails with ENOSPC, nothing is committed, and the database is as
 * it was once there is room again. */
Test(sqlite_blockfile, a_failed_write_fails_the_store, .init = cr_redirect_stderr, .timeout = 60)
{
    struct tb t;
    struct bf_fileinfo fi;
    bf_file *f;
    char filler[600], err[512];
    tb_mkdir(&t);
    if (unshare(CLONE_NEWNS) < 0) {
        tb_rmdir(&t);
        cr_skip_test("no mount namespace: %s", strerror(errno));
    }
    cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "%s", strerror(errno));
    cr_assert_eq(mount("tmpfs", t.dir, "tmpfs", 0, "size=32m"), 0, "%s", strerror(errno));
    const uint32_t big = 4u << 20;
    bf_db *db = sq_open(t.path, BF_DB_CREATE);
    cr_assert_eq(bf_db_create(db, "f", big, 0, 0600, 0, 0, &fi), 0);
    cr_assert_eq(bf_db_file_open(db, fi.id, &f), 0);
    tb_store_range(f, 0, 1, 1, big);
    int64_t serial = side_int(t.path, "SELECT value FROM meta WHERE key='serial'");
    /* fill the file system, then leave 1 MiB: room for an upload's rows,
     * not for its data */
    snprintf(filler, sizeof(filler), "%s/filler", t.dir);
    int fd = open(filler, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0);
    void *buf = malloc(big);
    memset(buf, 0x5a, big);
    ssize_t n;
    while ((n = write(fd, buf, 65536)) > 0)
        ;
    cr_assert(n < 0 && errno == ENOSPC, "filling: %zd %s", n, strerror(errno));
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq(ftruncate(fd, st.st_size - (1 << 20)), 0);
    cr_assert_eq(f->ops->begin(f), 0);
    tb_fill(buf, big, 1, 2);
    cr_assert_eq(tb_store(f, 1, buf), -ENOSPC);
    cr_assert_eq(bf_sqlite_last_error(db, err, sizeof(err)), 0);
    cr_assert_not_null(strstr(err, "writing a block"), "not the block file's write: '%s'", err);
    f->ops->abort(f);
    cr_assert_eq(side_int(t.path, "SELECT value FROM meta WHERE key='serial'"), serial,
                 "something was committed");
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM blockmap"), 1);
    /* room again: the failed upload is garbage, the data as it was */
    close(fd);
    cr_assert_eq(unlink(filler), 0);
    cr_assert_eq(bf_db_trim(db), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads"), 0);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM extents"), 1);
    cr_assert_eq(tb_load(f, 0, buf), 0);
    cr_assert(tb_check(buf, big, 0, 1));
    cr_assert_eq(tb_load(f, 1, buf), 0);
    cr_assert(tb_is_zero(buf, big));
    free(buf);
    bf_db_file_close(db, f);
    bf_db_close(db);
    cr_assert_eq(umount2(t.dir, MNT_DETACH), 0);
    tb_rmdir(&t);
}

/* Versions kept by the history of a file whose block size changed since
 * become garbage of their own size when purged (or collected), never of
 * the file's new size: an upload of the new size does not take them. */
Test(sqlite_blockfile, kept_versions_of_an_older_block_size_are_garbage_of_their_size,
     .timeout = 30)
{
    struct tb t;
    struct bf_fileinfo fa, fb;
    bf_file *f;
    tb_mkdir(&t);
    t.kind = TB_SQLITE;
    bf_db *db = sq_open(t.path, BF_DB_CREATE); /* history kept (the default retention) */
    cr_assert_eq(bf_db_create(db, "a", BS, 0, 0600, 0, 0, &fa), 0);
    cr_assert_eq(bf_db_file_open(db, fa.id, &f), 0);
    tb_store_range(f, 0, 4, 1, 4 * BS);
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(f->ops->truncate(f, 0), 0);
    cr_assert_eq(tb_commit(f, 0), 0); /* its 4 versions superseded, kept */
    bf_db_file_close(db, f);
    cr_assert_eq(bf_db_set_blksize(db, fa.id, 2 * BS), 0);
    tb_history_keep(db, 0);
    cr_assert_eq(bf_db_unlink(db, "a"), 0); /* purged: its contents are garbage */
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads WHERE session=0"), 4);
    cr_assert_eq(side_int(t.path, "SELECT count(*) FROM uploads WHERE session=0 AND bytes=65536"),
                 4);
    cr_assert_eq(bf_db_create(db, "b", 2 * BS, 0, 0600, 0, 0, &fb), 0);
    cr_assert_eq(bf_db_file_open(db, fb.id, &f), 0);
    tb_store_range(f, 0, 4, 2, 8 * BS);
    for (uint64_t b = 0; b < 4; b++)
        tb_expect(f, b, 2);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

static int sync_fails(void *arg)
{
    return *(const int *)arg;
}

/* Linux reports a write-back error to one fdatasync only, and the bytes
 * that failed may be gone: bytes whose first sync after their write failed
 * are never committed, whichever commit's sync it was. A store's upload is
 * written again at the retry; a staged content cannot be (EIO at commit
 * and at unstage, until it is dropped); bytes a successful sync covered
 * stay good whatever fails later. */
Test(sqlite_blockfile, bytes_written_before_a_failed_sync_are_never_committed, .timeout = 30)
{
    struct tb t;
    struct bf_fileinfo fg;
    int fail = 0;
    uint64_t id = make_db(&t, 0);
    bf_db *db = sq_open(t.path, 0);
    cr_assert_eq(bf_sqlite_set_sync_hook(db, sync_fails, &fail), 0);
    bf_file *f, *g;
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    cr_assert_eq(bf_db_create(db, "g", BS, 0, 0600, 0, 0, &fg), 0);
    cr_assert_eq(bf_db_file_open(db, fg.id, &g), 0);
    char buf[BS];
    uint64_t token = 0;
    tb_fill(buf, BS, 1, 7);
    cr_assert_eq(f->ops->stage(f, 1, buf, &token), 0); /* before the failure */

    /* f's upload, then g's commit meets the failure: f's commit, whose
     * own sync succeeds, is refused all the same */
    tb_fill(buf, BS, 0, 5);
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(tb_store(f, 0, buf), 0);
    cr_assert_eq(g->ops->begin(g), 0);
    cr_assert_eq(tb_store(g, 0, buf), 0);
    fail = ENOSPC; /* a delayed allocation that found the disk full */
    cr_assert_eq(tb_commit(g, BS), -EIO);
    char msg[256];
    cr_assert_eq(bf_sqlite_last_error(db, msg, sizeof(msg)), 0);
    cr_assert(strstr(msg, "making the uploads durable") && strstr(msg, strerror(ENOSPC)),
              "the error says what failed: %s", msg);
    fail = 0;
    cr_assert_eq(tb_commit(f, 2 * BS), -EIO);
    tb_expect(f, 0, -1);
    /* the retry stores it again: committed */
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(tb_store(f, 0, buf), 0);
    cr_assert_eq(tb_commit(f, 2 * BS), 0);
    tb_expect(f, 0, 5);

    /* the staged content is never committed, however often it is tried */
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(f->ops->begin(f), 0);
        cr_assert_eq(f->ops->storeblk_staged(f, 1, token, BF_SERIAL_NOW), 0);
        cr_assert_eq(tb_commit(f, 2 * BS), -EIO);
    }
    tb_expect(f, 1, -1);
    cr_assert_eq(f->ops->unstage(f, token, buf), -EIO, "lost bytes read back");
    f->ops->stage_drop(f, token);
    /* staged after the failure, covered by a sync that succeeded (g's
     * commit), then another sync fails: it is committed all the same */
    tb_fill(buf, BS, 1, 8);
    cr_assert_eq(f->ops->stage(f, 1, buf, &token), 0);
    cr_assert_eq(g->ops->begin(g), 0);
    cr_assert_eq(tb_store(g, 0, buf), 0);
    cr_assert_eq(tb_commit(g, BS), 0);
    cr_assert_eq(g->ops->begin(g), 0);
    cr_assert_eq(tb_store(g, 0, buf), 0);
    fail = EIO;
    cr_assert_eq(tb_commit(g, BS), -EIO);
    fail = 0;
    char back[BS];
    cr_assert_eq(f->ops->unstage(f, token, back), 0);
    cr_assert(tb_check(back, BS, 1, 8));
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(f->ops->storeblk_staged(f, 1, token, BF_SERIAL_NOW), 0);
    cr_assert_eq(tb_commit(f, 2 * BS), 0);
    tb_expect(f, 1, 8);
    bf_db_file_close(db, g);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* The space of deleted contents is punched out, then reused: files
 * written and deleted over and over keep the block file at its peak size
 * (its offsets reused, each with a gen above any it had), not at the sum
 * of everything ever written. */
Test(sqlite_blockfile, deleted_extents_are_reused_and_the_file_stays_at_its_peak, .timeout = 30)
{
    struct tb t;
    struct bf_fileinfo gi;
    bf_file *f, *g;
    uint64_t id = make_db(&t, 8);
    bf_db *db = sq_open(t.path, 0);
    for (unsigned round = 0; round < 5; round++) {
        cr_assert_eq(bf_db_create(db, "g", BS, 0, 0600, 0, 0, &gi), 0);
        cr_assert_eq(bf_db_file_open(db, gi.id, &g), 0);
        tb_store_range(g, 0, 8, 20 + round, 8 * BS);
        for (uint64_t b = 0; b < 8; b++)
            tb_expect(g, b, (int)(20 + round));
        bf_db_file_close(db, g);
        cr_assert_eq(bf_db_unlink(db, "g"), 0); /* its contents are garbage */
        cr_assert_eq(bf_db_trim(db), 0);        /* deleted, punched out, free */
        off_t alloc;
        cr_assert_eq(blocks_size(t.path, &alloc), 16 * BS, "round %u grew the file", round);
        cr_assert_leq(alloc, 8 * BS, "round %u: the deleted extents were not punched out",
                      round);
        cr_assert_eq(side_int(t.path, "SELECT count(*) FROM free_extents"), 8);
    }
    cr_assert_eq(side_int(t.path, "SELECT min(gen) FROM free_extents"), 4,
                 "each offset's gen went up at each reuse");
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    for (uint64_t b = 0; b < 8; b++)
        tb_expect(f, b, 1);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* A database opened through a symbolic link has its block file beside the
 * database file itself, as SQLite's -wal: both paths name one pair. */
Test(sqlite_blockfile, a_symbolic_link_names_the_same_block_file, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    char link[PATH_MAX], lbp[PATH_MAX + 8];
    uint64_t id = make_db(&t, 0);
    snprintf(link, sizeof(link), "%s.link", t.path);
    cr_assert_eq(symlink(t.path, link), 0);
    bf_db *db = sq_open(link, 0);
    cr_assert_eq(bf_db_file_open(db, id, &f), 0);
    tb_store_range(f, 0, 4, 3, 4 * BS);
    bf_db_file_close(db, f);
    bf_db_close(db);
    snprintf(lbp, sizeof(lbp), "%s-blocks", link);
    cr_assert_eq(access(lbp, F_OK), -1, "a block file beside the link");
    cr_assert_eq(blocks_size(t.path, NULL), 4 * BS);
    expect_read_only(t.path, id, 0, 4, 3);
    unlink(link);
    tb_rmdir(&t);
}
