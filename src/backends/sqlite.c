/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the SQLite engine. See sqlite.h; the rules every
 * engine leaves to the layer (open files, one transaction per file, purge
 * at the last close) are in engine.h.
 *
 * Schema (user_version 1):
 *   files(id INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused
 *         name TEXT UNIQUE,                      -- NULL: unlinked but open
 *         blksize, size, mode, uid, gid, mtime_ns, ctime_ns INTEGER NOT NULL)
 *   blocks(file INTEGER NOT NULL, blk INTEGER NOT NULL, data BLOB NOT NULL,
 *          UNIQUE(file, blk))                    -- a rowid table: blob I/O
 * A block row exists only for a block that is not all zeros. A row with
 * name NULL is a file whose name was removed: the layer purges it once it
 * is not in use, and opening read-write sweeps those a dead process left.
 *
 * Connections and locks:
 *  - one writer connection (absent when read-only), used only with
 *    db->wlock held. A store transaction holds wlock from begin to
 *    commit/abort; every namespace operation holds it for its own short
 *    transaction.
 *  - a pool of read-only reader connections (grown on demand up to
 *    SQ_READERS_MAX; a thread waits on pcond when all are busy), each used
 *    by one thread at a time. Each query is its own read transaction, so a
 *    reader always sees the last commit.
 *  - the count of lock waits (busy_wait) has a leaf lock of its own.
 *  - a checkpointer connection (absent when read-only), used only with
 *    cklock held, which is only ever try-locked (see "The WAL" below).
 *  Lock order: wlock -> plock, elock, the busy count; those are leaves;
 *  cklock is taken with no other lock held.
 *
 * The WAL: a writeout is one transaction, so the WAL grows to its size;
 * SQLite's automatic checkpoint would copy it into the database inside the
 * COMMIT (holding wlock all the while) and never shrink the file. Instead,
 * the writer's WAL hook records the WAL's size at each commit, and the
 * committing thread, once it has released wlock, checkpoints when that
 * exceeds BF_SQLITE_WAL_LIMIT (ck_maybe): a PASSIVE checkpoint, which
 * waits for nobody and copies what no reader's snapshot still needs; then,
 * if it copied everything, a TRUNCATE one with no busy handler, which
 * empties the file unless a reader or writer is in the way at that moment
 * (then the next commit tries again). A reader holding an old snapshot is
 * never waited for: loads go on, and the WAL shrinks after it is done.
 * journal_size_limit bounds the file too where SQLite restarts the WAL.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "backends/engine.h"
#include "backends/sqlite.h"

#define SQ_READERS_MAX 16
#define SQ_BUSY_TIMEOUT 5000                 /* ms */
#define SQ_QUICK_CHECK_MAX ((off_t)64 << 20) /* quick_check dbs up to this size */
#define SQ_STR_(x) #x
#define SQ_STR(x) SQ_STR_(x)

/* The columns of a files row, as row_info decodes them (in this order),
 * and the same without the id (the columns an INSERT gives). */
#define SQ_FILE_ATTR_COLS "name,blksize,size,mode,uid,gid,mtime_ns,ctime_ns"
#define SQ_FILE_COLS "id," SQ_FILE_ATTR_COLS

/* Statements of a reader connection. */
enum {
    R_ROWID,   /* rowid of (file, blk) */
    R_BYNAME,  /* file row by name */
    R_BYID,    /* file row by id */
    R_LIST,    /* named files in name order */
    R_NEXTBLK, /* smallest stored blk >= n of a file */
    R_NBLOCKS, /* number of stored blocks of a file */
    R_NSTMT
};

static const char *const reader_sql[R_NSTMT] = {
    [R_ROWID] = "SELECT rowid FROM blocks WHERE file=?1 AND blk=?2",
    [R_BYNAME] = "SELECT " SQ_FILE_COLS " FROM files WHERE name=?1",
    [R_BYID] = "SELECT " SQ_FILE_COLS " FROM files WHERE id=?1",
    [R_LIST] = "SELECT " SQ_FILE_COLS " FROM files "
               "WHERE name IS NOT NULL ORDER BY name",
    [R_NEXTBLK] = "SELECT blk FROM blocks WHERE file=?1 AND blk>=?2 ORDER BY blk LIMIT 1",
    [R_NBLOCKS] = "SELECT count(*) FROM blocks WHERE file=?1",
};

/* Statements of the writer connection. */
enum {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_PUT,         /* store a block */
    W_DEL,         /* remove a block (hole) */
    W_TRUNC,       /* remove blocks >= n */
    W_SETSIZE,     /* size and times at commit */
    W_INSERT,      /* create a file */
    W_BYNAME,      /* id, size of a named file */
    W_BYID,        /* size of a file by id */
    W_NAMENULL,    /* remove a name: the file is nameless until purged */
    W_SETNAME,     /* rename */
    W_PURGEBLOCKS, /* drop blocks of a nameless file */
    W_PURGEFILE,   /* drop the row of a nameless file */
    W_SETATTR,
    W_SETBLK,
    W_HASBLK, /* does a file have any block */
    W_NSTMT
};

static const char *const writer_sql[W_NSTMT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_PUT] = "INSERT INTO blocks(file,blk,data) VALUES(?1,?2,?3) "
              "ON CONFLICT(file,blk) DO UPDATE SET data=excluded.data",
    [W_DEL] = "DELETE FROM blocks WHERE file=?1 AND blk=?2",
    [W_TRUNC] = "DELETE FROM blocks WHERE file=?1 AND blk>=?2",
    [W_SETSIZE] = "UPDATE files SET size=?2, mtime_ns=?3, ctime_ns=?3 WHERE id=?1",
    [W_INSERT] = "INSERT INTO files(" SQ_FILE_ATTR_COLS ") "
                 "VALUES(?1,?2,?3,?4,?5,?6,?7,?7)",
    [W_BYNAME] = "SELECT id FROM files WHERE name=?1",
    [W_BYID] = "SELECT size FROM files WHERE id=?1",
    [W_NAMENULL] = "UPDATE files SET name=NULL, ctime_ns=?2 WHERE id=?1",
    [W_SETNAME] = "UPDATE files SET name=?2, ctime_ns=?3 WHERE id=?1",
    [W_PURGEBLOCKS] = "DELETE FROM blocks WHERE file=?1 AND "
                      "EXISTS(SELECT 1 FROM files WHERE id=?1 AND name IS NULL)",
    [W_PURGEFILE] = "DELETE FROM files WHERE id=?1 AND name IS NULL",
    [W_SETATTR] = "UPDATE files SET mode=coalesce(?2,mode), uid=coalesce(?3,uid), "
                  "gid=coalesce(?4,gid), mtime_ns=coalesce(?5,mtime_ns), ctime_ns=?6 WHERE id=?1",
    [W_SETBLK] = "UPDATE files SET blksize=?2, ctime_ns=?3 WHERE id=?1",
    [W_HASBLK] = "SELECT 1 FROM blocks WHERE file=?1 LIMIT 1",
};

static const char schema_sql[] = "CREATE TABLE files("
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
                                 " UNIQUE(file, blk));";

struct sq_reader {
    sqlite3 *c;
    sqlite3_stmt *st[R_NSTMT];
    int busy;
};

struct sq_db {
    bf_db base;
    char *path;
    char *rpath; /* what readers open: path, or an immutable URI (see choose_readers) */
    int rflags;  /* and how: SQLITE_OPEN_READONLY, | SQLITE_OPEN_URI for the URI */

    pthread_mutex_t wlock;
    sqlite3 *w; /* NULL when read-only */
    sqlite3_stmt *ws[W_NSTMT];

    pthread_mutex_t cklock; /* a leaf, only ever try-locked: guards ck */
    sqlite3 *ck;            /* the checkpointer (NULL when read-only) */
    int64_t wal_bytes;      /* atomic: bytes in the WAL after the last commit */
    int64_t page_size;      /* of the database, for wal_bytes */

    pthread_mutex_t plock;
    pthread_cond_t pcond;
    struct sq_reader rd[SQ_READERS_MAX];
    int nrd;

    pthread_mutex_t elock;
    char lasterr[512];

    struct bf_counter busy; /* times a connection began to wait for a lock */
};

/* A handle. While its transaction is open (base.tx == BF_TX_OPEN) it holds
 * wlock, from begin to commit/abort. */
struct sq_fh {
    struct bf_fh base; /* first */
    struct sq_db *db;
};

static struct sq_db *DB(bf_db *db)
{
    return (struct sq_db *)db;
}

static struct sq_fh *FH(struct bf_fh *fh)
{
    return (struct sq_fh *)fh;
}

/* ---- errors -------------------------------------------------------------- */

static int rc_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
        return 0;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        return -EACCES;
    default:
        return -EIO; /* CORRUPT, NOTADB, IOERR, ... */
    }
}

/* Record and log a SQLite failure of `what` on connection c; return the
 * errno for rc. */
static int sq_fail(struct sq_db *d, sqlite3 *c, int rc, const char *what)
{
    pthread_mutex_lock(&d->elock);
    snprintf(d->lasterr, sizeof(d->lasterr), "%s: %s: %s (sqlite %d)", d->path, what,
             c ? sqlite3_errmsg(c) : sqlite3_errstr(rc), rc);
    fprintf(stderr, "bigfilefs: %s\n", d->lasterr);
    pthread_mutex_unlock(&d->elock);
    return rc_errno(rc);
}

static const struct bf_engine_ops sq_engine_ops;

int bf_sqlite_last_error(bf_db *db, char *buf, size_t len)
{
    if (!db || db->ops != &sq_engine_ops || !buf || !len)
        return -EINVAL;
    struct sq_db *d = DB(db);
    pthread_mutex_lock(&d->elock);
    snprintf(buf, len, "%s", d->lasterr);
    pthread_mutex_unlock(&d->elock);
    return 0;
}

uint64_t bf_sqlite_busy_waits(bf_db *db)
{
    if (!db || db->ops != &sq_engine_ops)
        return 0;
    return bf_counter_get(&DB(db)->busy);
}

int bf_sqlite_wait_busy(bf_db *db, uint64_t n, int timeout_ms)
{
    if (!db || db->ops != &sq_engine_ops)
        return -EINVAL;
    return bf_counter_wait(&DB(db)->busy, true, n, timeout_ms);
}

static void errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* ---- connections --------------------------------------------------------- */

/* The busy handler of d's connections: count the wait (an event tests can
 * wait for: bf_sqlite_wait_busy), then sleep 1, 2, 4 .. 64, then 100 ms
 * between tries, giving up after SQ_BUSY_TIMEOUT ms in all. */
static int busy_wait(void *arg, int count)
{
    struct sq_db *d = arg;
    if (count == 0)
        bf_counter_add(&d->busy, 1);
    long slept = count < 7 ? (1L << count) - 1 : 127 + 100L * (count - 7);
    long ms = count < 7 ? 1L << count : 100;
    if (slept >= SQ_BUSY_TIMEOUT)
        return 0; /* SQLITE_BUSY to the caller */
    if (ms > SQ_BUSY_TIMEOUT - slept)
        ms = SQ_BUSY_TIMEOUT - slept;
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return 1;
}

/* Open a connection; with d, one of d's (busy_wait counts its waits), else
 * a short-lived one of validation (a plain busy timeout). */
static int open_conn(struct sq_db *d, const char *path, int flags, sqlite3 **out)
{
    sqlite3 *c = NULL;
    int rc = sqlite3_open_v2(path, &c, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_close(c);
        *out = NULL;
        return rc;
    }
    if (d)
        sqlite3_busy_handler(c, busy_wait, d);
    else
        sqlite3_busy_timeout(c, SQ_BUSY_TIMEOUT);
    *out = c;
    return SQLITE_OK;
}

static int prepare_all(sqlite3 *c, const char *const *sql, sqlite3_stmt **st, int n)
{
    for (int i = 0; i < n; i++) {
        int rc = sqlite3_prepare_v3(c, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

static void finalize_all(sqlite3_stmt **st, int n)
{
    for (int i = 0; i < n; i++) {
        sqlite3_finalize(st[i]);
        st[i] = NULL;
    }
}

/* Run a one-row integer query; *out gets the first column (0 if no row). */
static int query_int(sqlite3 *c, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(c, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    *out = 0;
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Take a reader connection from the pool (opening one if all are busy and
 * the pool may grow; else wait). */
static int reader_get(struct sq_db *d, struct sq_reader **out)
{
    int rc = SQLITE_OK;
    pthread_mutex_lock(&d->plock);
    for (;;) {
        for (int i = 0; i < d->nrd; i++) {
            if (!d->rd[i].busy) {
                d->rd[i].busy = 1;
                *out = &d->rd[i];
                pthread_mutex_unlock(&d->plock);
                return 0;
            }
        }
        if (d->nrd < SQ_READERS_MAX)
            break;
        pthread_cond_wait(&d->pcond, &d->plock);
    }
    struct sq_reader *r = &d->rd[d->nrd];
    memset(r, 0, sizeof(*r));
    rc = open_conn(d, d->rpath, d->rflags, &r->c);
    if (rc == SQLITE_OK)
        rc = prepare_all(r->c, reader_sql, r->st, R_NSTMT);
    if (rc != SQLITE_OK) {
        int e = sq_fail(d, r->c, rc, "opening a reader connection");
        finalize_all(r->st, R_NSTMT);
        sqlite3_close(r->c);
        r->c = NULL;
        pthread_mutex_unlock(&d->plock);
        return e;
    }
    r->busy = 1;
    d->nrd++;
    *out = r;
    pthread_mutex_unlock(&d->plock);
    return 0;
}

static void reader_put(struct sq_db *d, struct sq_reader *r)
{
    pthread_mutex_lock(&d->plock);
    r->busy = 0;
    pthread_cond_signal(&d->pcond);
    pthread_mutex_unlock(&d->plock);
}

/* Step a writer statement that returns no row, then reset it. */
static int wexec(struct sq_db *d, int which)
{
    sqlite3_stmt *st = d->ws[which];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Roll the writer's transaction back (if one is open). Cannot fail in a
 * way the caller can act on. */
static void wrollback(struct sq_db *d)
{
    if (!sqlite3_get_autocommit(d->w))
        wexec(d, W_ROLLBACK);
}

/* ---- row helpers --------------------------------------------------------- */

/* Decode a row of the SQ_FILE_COLS columns into `fi`. */
static void row_info(sqlite3_stmt *st, struct bf_fileinfo *fi)
{
    memset(fi, 0, sizeof(*fi));
    fi->id = (uint64_t)sqlite3_column_int64(st, 0);
    const unsigned char *name = sqlite3_column_text(st, 1);
    if (name)
        snprintf(fi->name, sizeof(fi->name), "%s", (const char *)name);
    fi->blksize = (uint32_t)sqlite3_column_int64(st, 2);
    fi->size = (uint64_t)sqlite3_column_int64(st, 3);
    fi->mode = (uint32_t)sqlite3_column_int64(st, 4);
    fi->uid = (uint32_t)sqlite3_column_int64(st, 5);
    fi->gid = (uint32_t)sqlite3_column_int64(st, 6);
    fi->mtime_ns = sqlite3_column_int64(st, 7);
    fi->ctime_ns = sqlite3_column_int64(st, 8);
}

/* Why the name of a row of the SQ_FILE_COLS columns cannot be passed on in
 * a bf_fileinfo (it would arrive as another name), or NULL if it can. */
static const char *row_name_unfit(sqlite3_stmt *st)
{
    if (sqlite3_column_type(st, 1) != SQLITE_TEXT)
        return "is not text";
    const char *name = (const char *)sqlite3_column_text(st, 1);
    size_t bytes = (size_t)sqlite3_column_bytes(st, 1);
    if (bytes > BF_NAME_MAX)
        return "is too long";
    if (!name || strlen(name) != bytes)
        return "holds a NUL byte";
    return NULL;
}

/* Run a reader query returning one file row. */
static int reader_row(struct sq_db *d, int which, const char *name, uint64_t id,
                      struct bf_fileinfo *out)
{
    struct sq_reader *r;
    int e = reader_get(d, &r);
    if (e < 0)
        return e;
    sqlite3_stmt *st = r->st[which];
    if (name)
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (out)
            row_info(st, out);
        e = 0;
    } else if (rc == SQLITE_DONE) {
        e = -ENOENT;
    } else {
        e = sq_fail(d, r->c, rc, "reading file metadata");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reader_put(d, r);
    return e;
}

/* ---- the WAL (see "The WAL" at the top) ------------------------------------ */

/* The writer's WAL hook, called in each COMMIT with wlock held. */
static int wal_hook(void *arg, sqlite3 *c, const char *dbname, int frames)
{
    struct sq_db *d = arg;
    (void)c;
    (void)dbname;
    __atomic_store_n(&d->wal_bytes, (int64_t)frames * d->page_size, __ATOMIC_RELAXED);
    return SQLITE_OK;
}

/* Checkpoint if the last commit left more than BF_SQLITE_WAL_LIMIT in the
 * WAL and no other thread is checkpointing; once more if a commit came
 * during a checkpoint that could not empty the WAL (that commit's thread
 * found us at it and left its frames to us). Called with no lock held. */
static void ck_maybe(struct sq_db *d)
{
    if (!d->ck)
        return;
    for (int round = 0; round < 2; round++) {
        int log = 0, done = 0;
        int64_t seen = __atomic_load_n(&d->wal_bytes, __ATOMIC_RELAXED);
        if (seen <= BF_SQLITE_WAL_LIMIT)
            return;
        if (pthread_mutex_trylock(&d->cklock) != 0)
            return; /* another thread is at it */
        int rc = sqlite3_wal_checkpoint_v2(d->ck, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (rc == SQLITE_OK && log == done)
            rc = sqlite3_wal_checkpoint_v2(d->ck, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &done);
        else if (rc == SQLITE_OK)
            rc = SQLITE_BUSY; /* a reader's snapshot needs the rest */
        if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY)
            sq_fail(d, d->ck, rc, "checkpointing the WAL");
        pthread_mutex_unlock(&d->cklock);
        if (rc == SQLITE_OK || __atomic_load_n(&d->wal_bytes, __ATOMIC_RELAXED) == seen)
            return; /* emptied, or nothing new since: the next commit tries again */
    }
}

/* Release wlock after a transaction (committed or not), then bound the
 * WAL. */
static void w_unlock(struct sq_db *d)
{
    pthread_mutex_unlock(&d->wlock);
    ck_maybe(d);
}

/* ---- the file operations (bigfile.h) ------------------------------------- */

static int sq_loadblk(struct bf_fh *fh, uint64_t blk, void *buf)
{
    struct sq_db *d = FH(fh)->db;
    bf_file *f = &fh->file;
    struct sq_reader *r;
    int e = reader_get(d, &r);
    if (e < 0)
        return e;
    if (blk > (uint64_t)INT64_MAX) {
        memset(buf, 0, f->blksize);
        reader_put(d, r);
        return 0;
    }
    /* The rowid lookup stays stepped (not reset) while the blob is read:
     * its read transaction keeps the snapshot, so a concurrent commit
     * cannot move the row between the lookup and the read. */
    sqlite3_stmt *st = r->st[R_ROWID];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)fh->id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)blk);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        memset(buf, 0, f->blksize); /* never stored: a hole */
        e = 0;
    } else if (rc != SQLITE_ROW) {
        e = sq_fail(d, r->c, rc, "looking a block up");
    } else {
        sqlite3_blob *b = NULL;
        sqlite3_int64 rowid = sqlite3_column_int64(st, 0);
        rc = sqlite3_blob_open(r->c, "main", "blocks", "data", rowid, 0, &b);
        if (rc != SQLITE_OK) {
            e = sq_fail(d, r->c, rc, "opening a block");
        } else if ((uint64_t)sqlite3_blob_bytes(b) != f->blksize) {
            pthread_mutex_lock(&d->elock);
            snprintf(d->lasterr, sizeof(d->lasterr),
                     "%s: block %llu of file %llu has %d bytes, expected %u", d->path,
                     (unsigned long long)blk, (unsigned long long)fh->id, sqlite3_blob_bytes(b),
                     f->blksize);
            fprintf(stderr, "bigfilefs: %s\n", d->lasterr);
            pthread_mutex_unlock(&d->elock);
            e = -EIO;
        } else {
            rc = sqlite3_blob_read(b, buf, (int)f->blksize, 0);
            e = rc == SQLITE_OK ? 0 : sq_fail(d, r->c, rc, "reading a block");
        }
        sqlite3_blob_close(b);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reader_put(d, r);
    return e;
}

static int sq_begin(struct bf_fh *fh)
{
    struct sq_db *d = FH(fh)->db;
    BF_ASSERT(d->w);               /* the layer refuses writes to a read-only database */
    pthread_mutex_lock(&d->wlock); /* held until commit/abort */
    int rc = wexec(d, W_BEGIN);
    if (rc != SQLITE_OK) {
        int e = sq_fail(d, d->w, rc, "beginning a transaction");
        pthread_mutex_unlock(&d->wlock);
        return e;
    }
    return 0;
}

static int sq_storeblk(struct bf_fh *fh, uint64_t blk, const void *buf)
{
    struct sq_db *d = FH(fh)->db;
    uint32_t bs = fh->file.blksize;
    if (blk > (uint64_t)INT64_MAX)
        return -EINVAL;
    int which = bf_all_zero(buf, bs) ? W_DEL : W_PUT;
    sqlite3_stmt *st = d->ws[which];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)fh->id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)blk);
    if (which == W_PUT)
        sqlite3_bind_blob(st, 3, buf, (int)bs, SQLITE_STATIC);
    int rc = wexec(d, which);
    return rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, "storing a block");
}

static int sq_truncate(struct bf_fh *fh, uint64_t nblocks)
{
    struct sq_db *d = FH(fh)->db;
    if (nblocks > (uint64_t)INT64_MAX)
        return 0; /* nothing can be stored that far */
    sqlite3_bind_int64(d->ws[W_TRUNC], 1, (sqlite3_int64)fh->id);
    sqlite3_bind_int64(d->ws[W_TRUNC], 2, (sqlite3_int64)nblocks);
    int rc = wexec(d, W_TRUNC);
    return rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, "truncating");
}

static int sq_commit(struct bf_fh *fh, uint64_t size)
{
    struct sq_db *d = FH(fh)->db;
    sqlite3_bind_int64(d->ws[W_SETSIZE], 1, (sqlite3_int64)fh->id);
    sqlite3_bind_int64(d->ws[W_SETSIZE], 2, (sqlite3_int64)size);
    sqlite3_bind_int64(d->ws[W_SETSIZE], 3, bf_now_ns());
    int rc = wexec(d, W_SETSIZE);
    if (rc == SQLITE_OK)
        rc = wexec(d, W_COMMIT);
    int e = rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, "committing");
    if (e < 0)
        wrollback(d); /* failed commit: nothing visible */
    w_unlock(d);
    return e;
}

static void sq_abort(struct bf_fh *fh)
{
    struct sq_db *d = FH(fh)->db;
    wrollback(d);
    pthread_mutex_unlock(&d->wlock);
}

/* Run reader statement `which` with `nargs` (1 or 2) integer parameters and
 * return its first row's first column in *out: 0, -ENXIO when there is no
 * row, or the mapped SQLite error (`what` names the work in the log). On a
 * reader connection: one read transaction, so it sees the last commit and
 * never an open store transaction. */
static int reader_int64(struct sq_db *d, int which, int nargs, int64_t a, int64_t b, uint64_t *out,
                        const char *what)
{
    struct sq_reader *r;
    int e = reader_get(d, &r);
    if (e < 0)
        return e;
    sqlite3_stmt *st = r->st[which];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)a);
    if (nargs > 1)
        sqlite3_bind_int64(st, 2, (sqlite3_int64)b);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = (uint64_t)sqlite3_column_int64(st, 0);
        e = 0;
    } else if (rc == SQLITE_DONE) {
        e = -ENXIO;
    } else {
        e = sq_fail(d, r->c, rc, what);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reader_put(d, r);
    return e;
}

static int sq_next_stored(struct bf_fh *fh, uint64_t from, uint64_t *blk)
{
    if (from > (uint64_t)INT64_MAX)
        return -ENXIO; /* no block is stored that far */
    return reader_int64(FH(fh)->db, R_NEXTBLK, 2, (int64_t)fh->id, (int64_t)from, blk,
                        "looking for the next stored block");
}

static int sq_stored_blocks(struct bf_fh *fh, uint64_t *n)
{
    int e = reader_int64(FH(fh)->db, R_NBLOCKS, 1, (int64_t)fh->id, 0, n, "counting stored blocks");
    return e == -ENXIO ? -EIO : e; /* count(*) always yields a row */
}

/* ---- namespace operations (engine.h) ------------------------------------ */

static int sq_list(bf_db *db, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg)
{
    struct sq_db *d = DB(db);
    struct sq_reader *r;
    int e = reader_get(d, &r);
    if (e < 0)
        return e;
    sqlite3_stmt *st = r->st[R_LIST];
    struct bf_fileinfo fi;
    const char *why;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((why = row_name_unfit(st))) {
            /* a tampered row: the layer checks the names we can pass on */
            bf_db_log(db, "file %lld left out of the listing: its name %s",
                      (long long)sqlite3_column_int64(st, 0), why);
            continue;
        }
        row_info(st, &fi);
        e = cb(arg, &fi);
        if (e)
            break;
    }
    if (!e && rc != SQLITE_DONE)
        e = sq_fail(d, r->c, rc, "listing files");
    sqlite3_reset(st);
    reader_put(d, r);
    return e;
}

static int sq_lookup(bf_db *db, const char *name, struct bf_fileinfo *out)
{
    if (!name)
        return -EINVAL;
    return reader_row(DB(db), R_BYNAME, name, 0, out);
}

static int sq_getinfo(bf_db *db, uint64_t id, struct bf_fileinfo *out)
{
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    return reader_row(DB(db), R_BYID, NULL, id, out);
}

/* Begin a namespace transaction: takes wlock. */
static int ns_begin(struct sq_db *d)
{
    BF_ASSERT(d->w); /* the layer refuses writes to a read-only database */
    pthread_mutex_lock(&d->wlock);
    int rc = wexec(d, W_BEGIN);
    if (rc != SQLITE_OK) {
        int e = sq_fail(d, d->w, rc, "beginning a transaction");
        pthread_mutex_unlock(&d->wlock);
        return e;
    }
    return 0;
}

/* End a namespace transaction: commit if e == 0, else roll back; releases
 * wlock. Returns the final error. */
static int ns_end(struct sq_db *d, int e)
{
    if (e == 0) {
        int rc = wexec(d, W_COMMIT);
        if (rc != SQLITE_OK)
            e = sq_fail(d, d->w, rc, "committing");
    }
    if (e < 0)
        wrollback(d);
    w_unlock(d);
    return e;
}

/* Look a name up on the writer (in its transaction): its id, or 0. */
static int w_byname(struct sq_db *d, const char *name, uint64_t *id)
{
    sqlite3_stmt *st = d->ws[W_BYNAME];
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *id = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return 0;
    return sq_fail(d, d->w, rc, "looking a name up");
}

/* Set file id's name (NULL: make it nameless). Caller holds wlock, in a
 * transaction. */
static int w_setname(struct sq_db *d, uint64_t id, const char *name, int64_t now)
{
    sqlite3_stmt *st = d->ws[name ? W_SETNAME : W_NAMENULL];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (name) {
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now);
    } else {
        sqlite3_bind_int64(st, 2, now);
    }
    int rc = wexec(d, name ? W_SETNAME : W_NAMENULL);
    return rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, name ? "renaming" : "removing a name");
}

static int sq_create(bf_db *db, const char *name, uint32_t blksize, uint64_t size, uint32_t mode,
                     uint32_t uid, uint32_t gid, struct bf_fileinfo *out)
{
    struct sq_db *d = DB(db);
    int e;
    int64_t now = bf_now_ns();
    BF_ASSERT(d->w);
    pthread_mutex_lock(&d->wlock);
    sqlite3_stmt *st = d->ws[W_INSERT];
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, blksize);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)size);
    sqlite3_bind_int64(st, 4, mode & 07777);
    sqlite3_bind_int64(st, 5, uid);
    sqlite3_bind_int64(st, 6, gid);
    sqlite3_bind_int64(st, 7, now);
    int rc = wexec(d, W_INSERT);
    if (rc == SQLITE_OK) {
        if (out) {
            memset(out, 0, sizeof(*out));
            out->id = (uint64_t)sqlite3_last_insert_rowid(d->w);
            strcpy(out->name, name);
            out->blksize = blksize;
            out->size = size;
            out->mode = mode & 07777;
            out->uid = uid;
            out->gid = gid;
            out->mtime_ns = out->ctime_ns = now;
        }
        e = 0;
    } else if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        e = -EEXIST;
    } else {
        e = sq_fail(d, d->w, rc, "creating a file");
    }
    w_unlock(d);
    return e;
}

static int sq_unlink(bf_db *db, const char *name, uint64_t *id)
{
    struct sq_db *d = DB(db);
    int e = ns_begin(d);
    if (e < 0)
        return e;
    e = w_byname(d, name, id);
    if (e == 0 && *id == 0)
        e = -ENOENT;
    if (e == 0)
        e = w_setname(d, *id, NULL, bf_now_ns());
    return ns_end(d, e);
}

static int sq_rename(bf_db *db, const char *from, const char *to, unsigned flags,
                     uint64_t *replaced)
{
    struct sq_db *d = DB(db);
    uint64_t src = 0, dst = 0;
    int e;
    *replaced = 0;
    if ((e = ns_begin(d)) < 0)
        return e;
    int64_t now = bf_now_ns();
    e = w_byname(d, from, &src);
    if (e == 0)
        e = w_byname(d, to, &dst);
    if (e < 0) {
        /* lookup failed: e is set */
    } else if (!src) {
        e = -ENOENT;
    } else if (flags & BF_RENAME_EXCHANGE) {
        if (!dst)
            e = -ENOENT;
        else if (src != dst) {
            /* through NULL: name is UNIQUE */
            e = w_setname(d, src, NULL, now);
            if (e == 0)
                e = w_setname(d, dst, from, now);
            if (e == 0)
                e = w_setname(d, src, to, now);
        }
    } else if (dst && (flags & BF_RENAME_NOREPLACE)) {
        e = -EEXIST;
    } else if (dst != src) { /* the same file: nothing to do */
        if (dst)
            e = w_setname(d, dst, NULL, now);
        if (e == 0)
            e = w_setname(d, src, to, now);
    }
    e = ns_end(d, e);
    if (e == 0 && dst && dst != src && !(flags & BF_RENAME_EXCHANGE))
        *replaced = dst;
    return e;
}

static int sq_setattr(bf_db *db, uint64_t id, const uint32_t *mode, const uint32_t *uid,
                      const uint32_t *gid, const int64_t *mtime_ns)
{
    struct sq_db *d = DB(db);
    BF_ASSERT(d->w);
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    pthread_mutex_lock(&d->wlock);
    sqlite3_stmt *st = d->ws[W_SETATTR];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (mode)
        sqlite3_bind_int64(st, 2, *mode & 07777);
    if (uid)
        sqlite3_bind_int64(st, 3, *uid);
    if (gid)
        sqlite3_bind_int64(st, 4, *gid);
    if (mtime_ns)
        sqlite3_bind_int64(st, 5, *mtime_ns);
    sqlite3_bind_int64(st, 6, bf_now_ns());
    int rc = wexec(d, W_SETATTR);
    int e = rc != SQLITE_OK              ? sq_fail(d, d->w, rc, "setting attributes")
            : sqlite3_changes(d->w) == 0 ? -ENOENT
                                         : 0;
    w_unlock(d);
    return e;
}

static int sq_set_blksize(bf_db *db, uint64_t id, uint32_t blksize)
{
    struct sq_db *d = DB(db);
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    int e = ns_begin(d);
    if (e < 0)
        return e;
    sqlite3_stmt *st = d->ws[W_BYID];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = sqlite3_step(st);
    int64_t size = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_DONE) {
        e = -ENOENT;
    } else if (rc != SQLITE_ROW) {
        e = sq_fail(d, d->w, rc, "reading file metadata");
    } else if (size != 0) {
        e = -ENOTEMPTY;
    } else {
        st = d->ws[W_HASBLK];
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc == SQLITE_ROW) {
            e = -ENOTEMPTY;
        } else if (rc != SQLITE_DONE) {
            e = sq_fail(d, d->w, rc, "looking for blocks");
        } else {
            sqlite3_bind_int64(d->ws[W_SETBLK], 1, (sqlite3_int64)id);
            sqlite3_bind_int64(d->ws[W_SETBLK], 2, blksize);
            sqlite3_bind_int64(d->ws[W_SETBLK], 3, bf_now_ns());
            rc = wexec(d, W_SETBLK);
            if (rc != SQLITE_OK)
                e = sq_fail(d, d->w, rc, "setting the block size");
        }
    }
    return ns_end(d, e);
}

/* Delete a nameless file and its blocks (the statements check that it is
 * nameless). */
static int sq_purge(bf_db *db, uint64_t id)
{
    struct sq_db *d = DB(db);
    if (id > (uint64_t)INT64_MAX)
        return 0;
    int e = ns_begin(d);
    if (e < 0)
        return e;
    sqlite3_bind_int64(d->ws[W_PURGEBLOCKS], 1, (sqlite3_int64)id);
    int rc = wexec(d, W_PURGEBLOCKS);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(d->ws[W_PURGEFILE], 1, (sqlite3_int64)id);
        rc = wexec(d, W_PURGEFILE);
    }
    if (rc != SQLITE_OK)
        e = sq_fail(d, d->w, rc, "deleting a nameless file");
    return ns_end(d, e);
}

static int sq_file_open(bf_db *db, uint64_t id, struct bf_fh **out)
{
    struct sq_db *d = DB(db);
    struct bf_fileinfo fi;
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    int e = reader_row(d, R_BYID, NULL, id, &fi);
    if (e < 0)
        return e;
    struct sq_fh *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->base.file.blksize = fi.blksize;
    h->base.file.size = fi.size;
    h->db = d;
    *out = &h->base;
    return 0;
}

static void sq_file_close(struct bf_fh *fh)
{
    free(FH(fh));
}

static void sq_close(bf_db *db)
{
    struct sq_db *d = DB(db);
    /* Readers first: the writer, closing last, checkpoints the WAL. */
    for (int i = 0; i < d->nrd; i++) {
        finalize_all(d->rd[i].st, R_NSTMT);
        sqlite3_close(d->rd[i].c);
    }
    sqlite3_close(d->ck);
    if (d->w) {
        finalize_all(d->ws, W_NSTMT);
        sqlite3_close(d->w);
    }
    pthread_mutex_destroy(&d->wlock);
    pthread_mutex_destroy(&d->cklock);
    pthread_mutex_destroy(&d->plock);
    pthread_cond_destroy(&d->pcond);
    pthread_mutex_destroy(&d->elock);
    bf_counter_destroy(&d->busy);
    if (d->rpath != d->path)
        free(d->rpath);
    free(d->path);
    free(d);
}

static const struct bf_engine_ops sq_engine_ops = {
    .name = "sqlite",
    .close = sq_close,
    .list = sq_list,
    .lookup = sq_lookup,
    .getinfo = sq_getinfo,
    .create = sq_create,
    .setattr = sq_setattr,
    .unlink = sq_unlink,
    .rename = sq_rename,
    .set_blksize = sq_set_blksize,
    .purge = sq_purge,
    .file_open = sq_file_open,
    .file_close = sq_file_close,
    .loadblk = sq_loadblk,
    .next_stored = sq_next_stored,
    .stored_blocks = sq_stored_blocks,
    .begin = sq_begin,
    .storeblk = sq_storeblk,
    .truncate = sq_truncate,
    .commit = sq_commit,
    .abort = sq_abort,
};

/* ---- open: validation, schema, connections ------------------------------- */

/* Outcome of looking at a file before using it. */
enum sq_found {
    SQ_FOUND_OURS,  /* a bigfilefs database of this schema */
    SQ_FOUND_EMPTY, /* missing, zero bytes, or SQLite empty in every respect */
};

/* Map a failure while reading a file we are validating. */
static int validate_fail(const char *path, sqlite3 *c, int rc, char *errbuf, size_t errlen)
{
    switch (rc & 0xff) {
    case SQLITE_NOTADB:
        errf(errbuf, errlen, "%s: not a bigfilefs database (not a SQLite database: %s)", path,
             sqlite3_errmsg(c));
        return -EPROTO;
    case SQLITE_CORRUPT:
        errf(errbuf, errlen, "%s: corrupt bigfilefs database (%s)", path, sqlite3_errmsg(c));
        return -EPROTO;
    default:
        errf(errbuf, errlen, "%s: cannot read the database: %s", path, sqlite3_errmsg(c));
        return rc_errno(rc);
    }
}

/* Whether path's side file (suffix "-wal", "-shm" or "-journal") exists;
 * *size gets its size (0 if it does not). */
static bool side_file(const char *path, const char *suffix, off_t *size)
{
    char p[PATH_MAX];
    struct stat st;
    *size = 0;
    if ((size_t)snprintf(p, sizeof(p), "%s%s", path, suffix) >= sizeof(p) || stat(p, &st) < 0)
        return false;
    *size = st.st_size;
    return true;
}

/* A "file:" URI for path with the query `query` (malloc'd; NULL when out of
 * memory). '?', '#' and '%' are escaped; an absolute path gets an empty
 * authority ("file:///..."), so that "//x" is a path, not a host. */
static char *path_uri(const char *path, const char *query)
{
    size_t n = strlen(path);
    char *u = malloc(3 * n + strlen(query) + 16);
    if (!u)
        return NULL;
    char *p = u + sprintf(u, "file:%s", path[0] == '/' ? "//" : "");
    for (const char *c = path; *c; c++) {
        if (*c == '?' || *c == '#' || *c == '%')
            p += sprintf(p, "%%%02X", (unsigned char)*c);
        else
            *p++ = *c;
    }
    sprintf(p, "?%s", query);
    return u;
}

/* Open path read-only, creating nothing beside it. A database whose -wal
 * and -shm both exist is in use (or was left by a crash: its -wal may hold
 * commits), and is opened through SQLite's locks, which then creates
 * nothing; any other is opened immutable: the file alone, no locks, no
 * -wal, -shm or -journal (a -wal with no -shm, copied by hand, is then not
 * read: the file alone decides). */
static int open_untouched(const char *path, sqlite3 **c)
{
    off_t n;
    bool live = side_file(path, "-wal", &n) && side_file(path, "-shm", &n);
    char *uri = path_uri(path, live ? "mode=ro" : "mode=ro&immutable=1");
    if (!uri)
        return SQLITE_NOMEM;
    int rc = open_conn(NULL, uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, c);
    free(uri);
    return rc;
}

/* What kind of file st is, for a message. */
static const char *file_kind(const struct stat *st)
{
    return S_ISDIR(st->st_mode)    ? "a directory"
           : S_ISCHR(st->st_mode)  ? "a character device"
           : S_ISBLK(st->st_mode)  ? "a block device"
           : S_ISFIFO(st->st_mode) ? "a FIFO"
           : S_ISSOCK(st->st_mode) ? "a socket"
                                   : "not a regular file";
}

/* Look at the file at path without modifying it, nor creating anything
 * beside it: a regular file; zero bytes long (empty), or a SQLite database
 * that is empty in every respect (no schema object, application_id and
 * user_version 0), or a bigfilefs database of our schema. Anything else is
 * refused with a message in errbuf. */
static int validate(const char *path, enum sq_found *found, char *errbuf, size_t errlen)
{
    struct stat stb;
    if (stat(path, &stb) < 0) {
        int e = errno;
        if (e == ENOENT) {
            *found = SQ_FOUND_EMPTY;
            return -ENOENT;
        }
        errf(errbuf, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(stb.st_mode)) {
        /* Not even opened: a FIFO would block, a device is no place for a
         * database, and SQLite would put a -journal beside it. */
        errf(errbuf, errlen, "%s: not a bigfilefs database (%s; a database is a regular file)",
             path, file_kind(&stb));
        return -EPROTO;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        errf(errbuf, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    close(fd);
    if (stb.st_size == 0) {
        *found = SQ_FOUND_EMPTY;
        return 0;
    }

    sqlite3 *c;
    int rc = open_untouched(path, &c);
    if (rc != SQLITE_OK) {
        errf(errbuf, errlen, "%s: cannot open: %s", path, sqlite3_errstr(rc));
        return rc_errno(rc);
    }
    int e = 0;
    int64_t appid, version, nobj, ncols;
    if ((rc = query_int(c, "PRAGMA application_id", &appid)) != SQLITE_OK ||
        (rc = query_int(c, "PRAGMA user_version", &version)) != SQLITE_OK ||
        (rc = query_int(c, "SELECT count(*) FROM sqlite_schema", &nobj)) != SQLITE_OK) {
        e = validate_fail(path, c, rc, errbuf, errlen);
        goto out;
    }
    if (appid != BF_SQLITE_APPLICATION_ID) {
        if (appid == 0 && version == 0 && nobj == 0) {
            *found = SQ_FOUND_EMPTY; /* a SQLite database empty in every respect */
            goto out;
        }
        errf(errbuf, errlen,
             "%s: not a bigfilefs database (a SQLite database of another "
             "application: application_id 0x%08llx, user_version %lld, %lld schema objects)",
             path, (unsigned long long)(uint32_t)appid, (long long)version, (long long)nobj);
        e = -EPROTO;
        goto out;
    }
    if (version > BF_SQLITE_SCHEMA_VERSION) {
        errf(errbuf, errlen, "%s: created by a newer bigfilefs (schema %lld, this build knows %d)",
             path, (long long)version, BF_SQLITE_SCHEMA_VERSION);
        e = -EPROTONOSUPPORT;
        goto out;
    }
    if (version != BF_SQLITE_SCHEMA_VERSION) {
        errf(errbuf, errlen, "%s: corrupt bigfilefs database (schema version %lld)", path,
             (long long)version);
        e = -EPROTO;
        goto out;
    }
    rc = query_int(c,
                   "SELECT (SELECT count(*) FROM pragma_table_info('files') WHERE name IN "
                   "('id','name','blksize','size','mode','uid','gid','mtime_ns','ctime_ns'))"
                   " + (SELECT count(*) FROM pragma_table_info('blocks') WHERE name IN "
                   "('file','blk','data'))",
                   &ncols);
    if (rc != SQLITE_OK) {
        e = validate_fail(path, c, rc, errbuf, errlen);
        goto out;
    }
    if (ncols != 12) {
        errf(errbuf, errlen, "%s: corrupt bigfilefs database (tables or columns missing)", path);
        e = -EPROTO;
        goto out;
    }
    /* A cheap check that the b-trees are sound: a full quick_check for a
     * small database; for a big one, walk the small structures (the files
     * table and the blocks index) only. */
    if (stb.st_size <= SQ_QUICK_CHECK_MAX) {
        sqlite3_stmt *st;
        rc = sqlite3_prepare_v2(c, "PRAGMA quick_check(1)", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                const char *res = (const char *)sqlite3_column_text(st, 0);
                if (!res || strcmp(res, "ok") != 0) {
                    errf(errbuf, errlen, "%s: corrupt bigfilefs database (quick_check: %s)", path,
                         res ? res : "?");
                    e = -EPROTO;
                }
                rc = SQLITE_OK;
            }
            sqlite3_finalize(st);
        }
    } else {
        int64_t n;
        rc = query_int(c, "SELECT count(*) FROM files", &n);
        if (rc == SQLITE_OK)
            rc = query_int(c, "SELECT count(*) FROM blocks", &n);
    }
    if (e == 0 && rc != SQLITE_OK) {
        e = validate_fail(path, c, rc, errbuf, errlen);
        goto out;
    }
    if (e == 0)
        *found = SQ_FOUND_OURS;
out:
    sqlite3_close(c);
    return e;
}

/* Create the schema in a missing, zero-length or empty SQLite database. */
static int create_schema(const char *path, char *errbuf, size_t errlen)
{
    sqlite3 *c;
    int rc = open_conn(NULL, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &c);
    if (rc != SQLITE_OK) {
        errf(errbuf, errlen, "%s: cannot create: %s", path, sqlite3_errstr(rc));
        return rc_errno(rc) == -EIO ? -EACCES : rc_errno(rc);
    }
    int64_t nobj = 0;
    char sql[256];
    /* page_size only takes effect on a database with no page yet. */
    rc = sqlite3_exec(c, "PRAGMA page_size=65536; PRAGMA journal_mode=WAL;", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = query_int(c, "SELECT count(*) FROM sqlite_schema", &nobj);
    if (rc == SQLITE_OK && nobj == 0) {
        /* Nobody created it meanwhile (another process may race us). */
        snprintf(sql, sizeof(sql), "PRAGMA application_id=%d; PRAGMA user_version=%d;",
                 BF_SQLITE_APPLICATION_ID, BF_SQLITE_SCHEMA_VERSION);
        rc = sqlite3_exec(c, schema_sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(c, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c, "COMMIT", NULL, NULL, NULL);
    int e = 0;
    if (rc != SQLITE_OK) {
        e = validate_fail(path, c, rc, errbuf, errlen);
        sqlite3_exec(c, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_close(c);
    return e;
}

/* How the readers of a read-only database open it. Normally through
 * SQLite's locks, which need the -shm file: it exists, or is created (and
 * the -wal with it). Where it can be neither (a read-only medium, or a
 * directory we may not write) and no -wal holds commits, the file alone
 * is the database: readers open it immutable (no locks, nothing created;
 * changes made by others meanwhile are not seen). With commits in a -wal
 * that we cannot index, it cannot be read at all. */
static int choose_readers(struct sq_db *d, char *errbuf, size_t errlen)
{
    sqlite3 *c;
    int64_t n;
    off_t wal;
    d->rpath = d->path;
    d->rflags = SQLITE_OPEN_READONLY;
    int rc = open_conn(NULL, d->path, SQLITE_OPEN_READONLY, &c);
    if (rc == SQLITE_OK)
        rc = query_int(c, "SELECT count(*) FROM sqlite_schema", &n);
    sqlite3_close(c);
    if (rc == SQLITE_OK)
        return 0;
    /* CANTOPEN: a read-only medium; READONLY(_DIRECTORY): a directory we
     * may not write. Both only matter when the -shm is missing. */
    if (((rc & 0xff) != SQLITE_CANTOPEN && (rc & 0xff) != SQLITE_READONLY) ||
        side_file(d->path, "-shm", &wal)) {
        errf(errbuf, errlen, "%s: cannot read the database: %s", d->path, sqlite3_errstr(rc));
        return rc_errno(rc);
    }
    if (side_file(d->path, "-wal", &wal) && wal > 0) {
        errf(errbuf, errlen,
             "%s: cannot open read-only: %s-wal holds commits not yet in the database file, and "
             "%s-shm cannot be created beside it (read-only directory or medium); open it once "
             "read-write, or from a writable directory",
             d->path, d->path, d->path);
        return -EROFS;
    }
    if (!(d->rpath = path_uri(d->path, "mode=ro&immutable=1"))) {
        d->rpath = d->path;
        errf(errbuf, errlen, "%s: out of memory", d->path);
        return -ENOMEM;
    }
    d->rflags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
    fprintf(stderr,
            "bigfilefs: %s: its directory cannot be written: reading the file as immutable (it "
            "must not change while mounted)\n",
            d->path);
    return 0;
}

/* Open and set up the writer connection; sweep orphans of a crash. */
/* The durability of a connection that writes: synchronous=FULL, each
 * commit durable when it returns, or NORMAL when BF_SQLITE_SYNC=normal
 * (benchmarks). */
static int set_sync(sqlite3 *c)
{
    const char *sync = getenv("BF_SQLITE_SYNC");
    int normal = sync && strcmp(sync, "normal") == 0;
    return sqlite3_exec(c, normal ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL", NULL,
                        NULL, NULL);
}

static int open_writer(struct sq_db *d, char *errbuf, size_t errlen)
{
    int rc = open_conn(d, d->path, SQLITE_OPEN_READWRITE, &d->w);
    if (rc != SQLITE_OK) {
        errf(errbuf, errlen, "%s: cannot open for writing: %s", d->path, sqlite3_errstr(rc));
        return rc_errno(rc);
    }
    if (sqlite3_db_readonly(d->w, "main") == 1) {
        /* SQLite fell back to reading: the file or its medium is read-only */
        int e = access(d->path, W_OK) < 0 && errno == EACCES ? -EACCES : -EROFS;
        errf(errbuf, errlen, "%s: cannot open for writing (%s); it can be opened read-only",
             d->path, e == -EACCES ? "no write permission" : "a read-only file system");
        return e;
    }
    rc = set_sync(d->w);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(d->w, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(d->w, "PRAGMA journal_size_limit=" SQ_STR(BF_SQLITE_WAL_LIMIT), NULL,
                          NULL, NULL);
    if (rc == SQLITE_OK)
        rc = query_int(d->w, "PRAGMA page_size", &d->page_size);
    /* Files unlinked while open when the last process using them died. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(
            d->w,
            "BEGIN IMMEDIATE;"
            "DELETE FROM blocks WHERE file IN (SELECT id FROM files WHERE name IS NULL);"
            "DELETE FROM files WHERE name IS NULL;"
            "COMMIT;",
            NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = prepare_all(d->w, writer_sql, d->ws, W_NSTMT);
    if (rc != SQLITE_OK) {
        errf(errbuf, errlen, "%s: cannot set up the writer: %s%s", d->path, sqlite3_errmsg(d->w),
             (rc & 0xff) == SQLITE_CANTOPEN ? " (SQLite keeps the -wal and -shm files beside the "
                                              "database: its directory must be writable)"
                                            : "");
        if (!sqlite3_get_autocommit(d->w))
            sqlite3_exec(d->w, "ROLLBACK", NULL, NULL, NULL);
        return rc_errno(rc);
    }
    /* Our hook instead of SQLite's automatic checkpoint (see "The WAL"),
     * and the checkpointer: no busy handler, it never waits for anyone. */
    sqlite3_wal_hook(d->w, wal_hook, d);
    rc = open_conn(NULL, d->path, SQLITE_OPEN_READWRITE, &d->ck);
    if (rc == SQLITE_OK) {
        sqlite3_busy_handler(d->ck, NULL, NULL);
        rc = set_sync(d->ck);
    }
    if (rc != SQLITE_OK) {
        errf(errbuf, errlen, "%s: cannot set up the checkpointer: %s", d->path,
             d->ck ? sqlite3_errmsg(d->ck) : sqlite3_errstr(rc));
        return rc_errno(rc);
    }
    return 0;
}

int bf_sqlite_open(const char *path, unsigned flags, bf_db **out, char *errbuf, size_t errlen)
{
    enum sq_found found = SQ_FOUND_EMPTY;
    int e;

    *out = NULL;
    if (errbuf && errlen)
        errbuf[0] = '\0';
    e = validate(path, &found, errbuf, errlen);
    if (e == -ENOENT || (e == 0 && found == SQ_FOUND_EMPTY)) {
        int missing = e == -ENOENT;
        if (!(flags & BF_DB_CREATE) || (flags & BF_DB_RDONLY)) {
            if (missing) {
                errf(errbuf, errlen, "%s: no such database%s", path,
                     (flags & BF_DB_CREATE) ? " (cannot create it read-only)" : "");
                return -ENOENT;
            }
            errf(errbuf, errlen, "%s: not a bigfilefs database (empty, no bigfilefs schema)%s",
                 path, (flags & BF_DB_RDONLY) ? "" : "; open it with create to make one");
            return -EPROTO;
        }
        e = create_schema(path, errbuf, errlen);
        if (e == 0)
            e = validate(path, &found, errbuf, errlen);
        if (e == 0 && found != SQ_FOUND_OURS) {
            errf(errbuf, errlen, "%s: the schema could not be created", path);
            e = -EIO;
        }
    }
    if (e < 0)
        return e;

    struct sq_db *d = calloc(1, sizeof(*d));
    if (!d || !(d->path = strdup(path)) || bf_counter_init(&d->busy) < 0) {
        if (d)
            free(d->path);
        free(d);
        errf(errbuf, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    if (bf_db_init(&d->base, &sq_engine_ops, flags) < 0) {
        bf_counter_destroy(&d->busy);
        free(d->path);
        free(d);
        errf(errbuf, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    pthread_mutex_init(&d->wlock, NULL);
    pthread_mutex_init(&d->cklock, NULL);
    pthread_mutex_init(&d->plock, NULL);
    pthread_cond_init(&d->pcond, NULL);
    pthread_mutex_init(&d->elock, NULL);
    d->rpath = d->path;
    d->rflags = SQLITE_OPEN_READONLY;
    e = (flags & BF_DB_RDONLY) ? choose_readers(d, errbuf, errlen) : open_writer(d, errbuf, errlen);
    if (e < 0) {
        bf_db_close(&d->base);
        return e;
    }
    /* One reader now, so that a file that cannot be read fails here. */
    struct sq_reader *r;
    e = reader_get(d, &r);
    if (e < 0) {
        errf(errbuf, errlen, "%s: cannot open a reader connection", path);
        bf_db_close(&d->base);
        return e;
    }
    reader_put(d, r);
    *out = &d->base;
    return 0;
}
