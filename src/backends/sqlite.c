/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the SQLite engine. See sqlite.h; the rules every
 * engine leaves to the layer (open files, one transaction per file, the
 * hold's end at the last close) are in engine.h, the protocol in
 * docs/COHERENCE.md. This file: connections, the reader pool, the WAL,
 * blocks and versions, the commit section, namespace commits, open and
 * close; sqlite_schema.c and sqlite_session.c have the rest
 * (sqlite_internal.h).
 *
 * Schema (user_version 3; COHERENCE.md section 2, docs/HISTORY.md):
 *   meta(key, value)          'serial' (the last commit's), 'log_trimmed'
 *                             (log rows <= it are gone), 'collected'
 *                             (versions superseded at or before it may be),
 *                             'blocks_end' (the block file's allocation
 *                             end)
 *   files(id, name, blksize, size, mode, uid, gid, mtime_ns, ctime_ns,
 *         content_serial, content_session, size_serial, size_session,
 *         meta_serial)        name NULL: unlinked, kept while held
 *   contents(id, data)        block contents, one row per upload: data
 *                             the bytes (a blob), or empty when the
 *                             content is in the block file (extents)
 *   extents(id, off, len, gen)
 *                             where content id is in the block file; gen
 *                             changes when the extent is reused
 *   uploads(session, bytes, content, since)
 *                             contents no version links: an upload of a
 *                             live session's open transaction, or garbage
 *                             (session 0) for the next uploads of its size
 *                             to overwrite, or the housekeeping to delete
 *   blockmap(file, blk, serial, session, content, superseded)
 *                             versions: content NULL a hole, > 0 a
 *                             contents row, < 0 a legacy_blocks row (data
 *                             of schema 1); superseded NULL: current
 *   commit_log(serial, session, kind, file, file2, time_ns, size, trunc,
 *              blocks, name, name2, flags)
 *   sessions(id, pid, host, started_ns, applied, shared)
 *   holds(session, file)
 *   file_states(file, serial, name, blksize, size, mode, uid, gid, mtime_ns)
 *   pins(session, serial)     the history (sqlite_history.c): every commit
 *                             writes the state of each file it touches
 *   extents(id, off, len, gen) where a content's bytes are in the block
 *                             file (sqlite_blocks.c has the file); a
 *                             content without one is a blob (made before
 *                             the block file)
 *   free_extents(off, len, gen) punched-out space for new extents
 *   [legacy_blocks]           the blocks table of schema 1, after an upgrade
 *
 * Writing (COHERENCE.md rules 1, 2, 4): a store transaction uploads each
 * block's content by itself: a short write transaction of its own
 * (synchronous=NORMAL: no fsync) writes a contents row and its extent (a
 * garbage one of the same size if there is one, else a new extent at
 * 'blocks_end') and its uploads row; then the data is written to the block
 * file (see "The block file"). The commit section first makes the block
 * file durable (fdatasync, when the transaction stores any content), then
 * is one write transaction (BEGIN IMMEDIATE, synchronous=FULL: durable
 * when it returns, with every upload before it) that takes the next
 * serial from meta, checks conflicts,
 * links the uploads into versions, updates the file's row and serials,
 * and writes the log row. So another file's commit or a namespace change
 * waits for one block's upload at most, never for a whole writeout.
 * Aborted, refused and failed transactions give their uploads up
 * (garbage). When the session is the only live one ("alone") and the
 * database keeps no history (retention 0, no pin), the commit deletes the
 * versions it replaces at once (no live session can read them any more; a
 * hole then keeps no version; their contents become garbage) and moves
 * 'collected' and 'history_from' to its serial; else they stay,
 * superseded, for the history and the housekeeping.
 *
 * Staging (the core's spilled blocks, COHERENCE.md rule 4): a staged
 * content is an upload of the session made by itself (its own short
 * transaction, into garbage of its size if any); storeblk_staged puts it
 * in the transaction as a pending store that the commit links like any
 * upload, and that an abort or a failed commit leaves the session's;
 * stage_drop gives it up. An all-zero content is token 0: no row.
 *
 * Reading: loadblk(at) reads the newest version with serial <= at through
 * the reader pool; loadblk_range only some bytes of it (pread, or
 * incremental blob I/O, reads only those). When there is none, or it was
 * superseded at or before `at` (its successor is gone), the version as of
 * `at` may have been collected: -ESTALE if at < 'collected', else zeros.
 *
 * The block file (sqlite_blocks.c): DB + "-blocks" holds the contents
 * uploaded since it exists (a database made before it keeps its blob
 * contents, readable; a reused blob content moves to the file). Its data
 * is written and read outside the transactions that map it, so:
 *  - an upload commits its rows (a reused extent's gen bumped) before it
 *    pwrites the data; a failed pwrite gives the upload up (garbage). A
 *    crash before or during the pwrite leaves an upload of a dead
 *    session: garbage, never linked;
 *  - the commit section fdatasyncs the file before its BEGIN (unless
 *    BF_SQLITE_SYNC=normal): every upload it links is durable before the
 *    map points at it. Each write of the file is numbered, and the first
 *    fdatasync after it decides its fate (sq_blocks_write_begin: syncs
 *    exclude writes and each other): the kernel reports a write-back
 *    error once, to one fdatasync, and may have dropped the bytes, so a
 *    commit refuses (-EIO) an upload whose deciding sync failed, whoever
 *    called it; a store is uploaded again at the retry; a staged content
 *    (its write number in its uploads row's `since`) cannot be, and
 *    unstage refuses it too (it would come back as lost bytes);
 *  - a load reads (off, gen) in its lookup's read transaction, preads
 *    after it, then checks in a new read transaction that the extent
 *    still has that gen: if not (reused by a later upload, of any
 *    session, or freed), the bytes may be another content's, and it looks
 *    the block up again (a newer version, or -ESTALE). What the OS does
 *    not cache is read around its cache, O_DIRECT (sq_blocks_read_fd):
 *    the same bytes, since a direct read first writes back dirty pages of
 *    its range, and the same check;
 *  - the housekeeping commits an extent's deletion before it punches the
 *    extent out of the file (FALLOC_FL_PUNCH_HOLE: a sparse file), then,
 *    in a transaction of its own, makes it free (free_extents: off, len,
 *    and the last gen the offset had): a new upload of its size takes it
 *    before growing the file, with a higher gen, so (content, off, gen)
 *    never repeats and the file's size stays at its peak, not at the sum
 *    of everything written (a crash between the two loses the offsets,
 *    never data). Garbage of the right size is reused first (no punch, no
 *    allocation), so a steady rewrite does not grow the file (garbage records
 *    each content's own size, which a block size changed since the
 *    version was stored does not change). The transactions that make
 *    linked contents garbage (collected versions, a purged file) or delete
 *    them are durable: a version must not come back,
 *    after a crash of the machine, over bytes a later upload or punch
 *    changed (an upload's own rows need not be: until a durable commit
 *    links it, nothing reads it).
 *  A read-only session opens the file read-only; a missing file with
 *  extents is -EIO with the last error naming it. The database is the
 *  pair DB and DB-blocks (bigfilefs(8): copy both).
 *
 * Connections and locks:
 *  - one writer connection (absent when read-only), used only with
 *    d->wlock held, for one short transaction at a time: an upload, a
 *    commit section, a namespace commit, a hold, a purge, a step of the
 *    housekeeping. Its synchronous setting is NORMAL but around durable
 *    transactions (FULL, unless BF_SQLITE_SYNC=normal).
 *  - a pool of read-only reader connections (grown on demand up to
 *    SQ_READERS_MAX; a thread waits on pcond when all are busy), each used
 *    by one thread at a time. Each query is its own read transaction, so a
 *    reader always sees the last commit.
 *  - the watcher's connection (sqlite_session.c), used by the watcher
 *    thread only: PRAGMA data_version and the log.
 *  - the count of lock waits (busy_wait) has a leaf lock of its own.
 *  - a checkpointer connection (absent when read-only), used only with
 *    cklock held, which is only ever try-locked (see "The WAL" below).
 *  Lock order: wlock -> plock, elock, the busy count; those are leaves;
 *  cklock is taken with no other lock held.
 *
 * The WAL: a writeout's uploads and commit grow the WAL by the pages of
 * their rows (a few per upload; by its size, were contents blobs);
 * SQLite's automatic checkpoint would copy it into the database inside a
 * COMMIT (holding wlock all the while) and never shrink the file. Instead,
 * the writer's WAL hook records the WAL's size at each commit, and the
 * thread of a durable transaction, once it has released wlock,
 * checkpoints when that exceeds BF_SQLITE_WAL_LIMIT (ck_maybe): a PASSIVE
 * checkpoint, which waits for nobody and copies what no reader's snapshot
 * still needs; then, if it copied everything, a TRUNCATE one with no busy
 * handler, which empties the file unless a reader or writer is in the way
 * at that moment (then the next commit tries again). A reader holding an
 * old snapshot is never waited for: loads go on, and the WAL shrinks after
 * it is done. journal_size_limit bounds the file too where SQLite restarts
 * the WAL.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/ranges.h"
#include "backends/sqlite_internal.h"

#define SQ_SPARES 16     /* garbage contents an upload takes at once for the next ones */
#define SQ_LOAD_TRIES 64 /* lookups of a block whose extent changes while it is read */
#define SQ_STR_(x) #x
#define SQ_STR(x) SQ_STR_(x)

/* SQL: the size in bytes of content C (a column), as stored: its extent's
 * length, else its blob's (length() reads the record header only), else
 * FALLBACK (a legacy block's: nothing reuses those). */
#define SQ_CONTENT_BYTES(c, fallback)                                             \
    "coalesce((SELECT len FROM extents WHERE id=" c "), (SELECT length(data) FROM " \
    "contents WHERE id=" c "), " fallback ")"

static const char *const reader_sql[R_NSTMT] = {
    [R_BEGIN] = "BEGIN",
    [R_COMMIT] = "COMMIT",
    /* with the extent of its content (NULL columns: none, a blob) */
    [R_VERSION] = "SELECT b.serial, b.content, b.superseded, e.off, e.len, e.gen FROM blockmap "
                  "AS b LEFT JOIN extents AS e ON e.id=b.content "
                  "WHERE b.file=?1 AND b.blk=?2 AND b.serial<=?3 ORDER BY b.serial DESC LIMIT 1",
    [R_META] = "SELECT value FROM meta WHERE key=?1",
    [R_BYNAME] = "SELECT " SQ_FILE_COLS " FROM files WHERE name=?1",
    [R_BYID] = "SELECT " SQ_FILE_COLS " FROM files WHERE id=?1",
    [R_LIST] = "SELECT " SQ_FILE_COLS " FROM files "
               "WHERE name IS NOT NULL ORDER BY name",
    /* The partial index holds exactly the current versions with content
     * (the planner would walk every version by the primary key). */
    [R_NEXTBLK] = "SELECT blk FROM blockmap INDEXED BY blockmap_current WHERE file=?1 AND "
                  "blk>=?2 AND superseded IS NULL AND content IS NOT NULL ORDER BY blk LIMIT 1",
    [R_NBLOCKS] = "SELECT count(*) FROM blockmap INDEXED BY blockmap_current WHERE file=?1 AND "
                  "superseded IS NULL AND content IS NOT NULL",
    [R_SESSIONS] = "SELECT id, applied FROM sessions",
    [R_LOGMIN] = "SELECT min(serial) FROM commit_log",
    [R_HASOLD] = "SELECT 1 FROM blockmap WHERE superseded IS NOT NULL AND superseded<=?1 LIMIT 1",
    [R_HASGARBAGE] = "SELECT 1 FROM uploads WHERE session=0 AND (content<0 OR since<=?1) LIMIT 1",
    [R_EXTENT] = "SELECT off, len, gen FROM extents WHERE id=?1",
    [R_UPLOAD_SEQ] = "SELECT since FROM uploads WHERE content=?1 AND session=?2",
    [R_NAMELESS] = "SELECT id FROM files AS f WHERE name IS NULL AND "
                   "coalesce((SELECT max(serial) FROM file_states WHERE file=f.id), 0)<=?1",
    [R_STATE_AT] = "SELECT " SQ_STATE_COLS " FROM file_states WHERE file=?1 AND serial<=?2 "
                   "ORDER BY serial DESC LIMIT 1",
    /* At most one file has a name at a serial: the newest state with the
     * name that is still the file's state then. */
    [R_BYNAME_AT] = "SELECT " SQ_STATE_COLS " FROM file_states AS a WHERE name=?1 AND serial<=?2 "
                    "AND serial=(SELECT max(serial) FROM file_states AS b "
                    "WHERE b.file=a.file AND b.serial<=?2) ORDER BY serial DESC LIMIT 1",
    [R_LIST_AT] = "SELECT a.file, a.name, a.blksize, a.size, a.mode, a.uid, a.gid, a.mtime_ns, "
                  "a.mtime_ns FROM file_states AS a JOIN (SELECT file, max(serial) AS s "
                  "FROM file_states WHERE serial<=?1 GROUP BY file) AS m "
                  "ON a.file=m.file AND a.serial=m.s WHERE a.name IS NOT NULL ORDER BY a.name",
    [R_FILELOG] = "SELECT l.serial, l.kind, l.time_ns, l.file2, l.trunc, l.blocks, l.flags, "
                  "s.size, s.name FROM commit_log AS l LEFT JOIN file_states AS s "
                  "ON s.file=?1 AND s.serial=l.serial WHERE (l.file=?1 OR l.file2=?1) "
                  "AND l.serial<?2 AND l.serial>=?3 ORDER BY l.serial DESC LIMIT ?4",
    [R_PINS] = "SELECT session, min(serial) FROM pins GROUP BY session",
};

static const char *const writer_sql[W_NSTMT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_SYNC_FULL] = "PRAGMA synchronous=FULL",
    [W_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    [W_GETMETA] = "SELECT value FROM meta WHERE key=?1",
    [W_SETMETA] = "UPDATE meta SET value=?2 WHERE key=?1",
    /* a content's data is in the block file (extents): the row's is empty */
    [W_UPLOAD] = "INSERT INTO contents(data) VALUES(x'')",
    /* uploads is keyed (session, bytes, content): every statement finds its
     * rows by the key, and in a small table they share one page */
    [W_UPLOADED] = "INSERT INTO uploads(content, session, bytes, since) VALUES(?1, ?2, ?3, ?4)",
    /* an owned upload's `since` is the number of the write of its bytes
     * (sq_blocks_write_begin); a garbage one's, when it became garbage */
    [W_UPLOAD_SEQ] = "UPDATE uploads SET since=?3 WHERE content=?1 AND session=?2",
    [W_REUSE_FIND] = "SELECT content FROM uploads WHERE session=0 AND bytes=?1 AND content>0 "
                     "LIMIT ?2",
    [W_REUSE_DATA] = "UPDATE contents SET data=x'' WHERE id=?1",
    [W_REUSE_OWN] = "UPDATE uploads SET session=?2, since=0 "
                    "WHERE session=0 AND bytes=?3 AND content=?1",
    [W_LINKED] = "DELETE FROM uploads WHERE content=?1 AND session=?2 AND bytes=?3",
    [W_GIVEUP] = "UPDATE uploads SET session=0, since=?4 "
                 "WHERE content=?1 AND session=?2 AND bytes=?3",
    [W_DELCONTENT] = "DELETE FROM contents WHERE id=?1",
    [W_DELLEGACY] = NULL, /* prepared at its first use: only an upgraded database has the table */
    [W_GARBAGE] = "INSERT OR IGNORE INTO uploads(content, session, bytes, since) "
                  "VALUES(?1, 0, ?2, ?3)",
    [W_FILESTATE] = "SELECT size, size_serial, size_session, content_serial, content_session "
                    "FROM files WHERE id=?1",
    [W_CUR] = "SELECT serial, session, content FROM blockmap "
              "WHERE file=?1 AND blk=?2 AND superseded IS NULL",
    [W_CUR_FROM] = "SELECT blk, serial, session, content FROM blockmap "
                   "WHERE file=?1 AND blk>=?2 AND superseded IS NULL ORDER BY blk",
    [W_SUPERSEDE] = "UPDATE blockmap SET superseded=?4 WHERE file=?1 AND blk=?2 AND serial=?3",
    [W_DELVERSION] = "DELETE FROM blockmap WHERE file=?1 AND blk=?2 AND serial=?3",
    [W_ADDVERSION] = "INSERT INTO blockmap(file, blk, serial, session, content, superseded) "
                     "VALUES(?1, ?2, ?3, ?4, ?5, NULL)",
    [W_SETWRITE] = "UPDATE files SET size=coalesce(?2, size),"
                   " size_serial=CASE WHEN ?3 THEN ?4 ELSE size_serial END,"
                   " size_session=CASE WHEN ?3 THEN ?5 ELSE size_session END,"
                   " content_serial=?4, content_session=?5, meta_serial=?4,"
                   " mtime_ns=?6, ctime_ns=?6 WHERE id=?1",
    [W_LOG] = "INSERT INTO commit_log(serial, session, kind, file, file2, time_ns, size, trunc, "
              "blocks, name, name2, flags) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
              "?12)",
    [W_INSERT] = "INSERT INTO files(" SQ_FILE_ATTR_COLS ", content_serial, content_session, "
                 "size_serial, size_session, meta_serial) "
                 "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?8, ?9, ?8)",
    [W_BYNAME] = "SELECT id FROM files WHERE name=?1",
    [W_BYID] = "SELECT size FROM files WHERE id=?1",
    [W_NAMENULL] = "UPDATE files SET name=NULL, ctime_ns=?2, meta_serial=?3 WHERE id=?1",
    [W_SETNAME] = "UPDATE files SET name=?2, ctime_ns=?3, meta_serial=?4 WHERE id=?1",
    [W_SETATTR] = "UPDATE files SET mode=coalesce(?2,mode), uid=coalesce(?3,uid), "
                  "gid=coalesce(?4,gid), mtime_ns=coalesce(?5,mtime_ns), ctime_ns=?6, "
                  "meta_serial=?7 WHERE id=?1",
    [W_SETBLK] = "UPDATE files SET blksize=?2, ctime_ns=?3, meta_serial=?4 WHERE id=?1",
    [W_HASBLK] = "SELECT 1 FROM blockmap INDEXED BY blockmap_current WHERE file=?1 AND "
                 "superseded IS NULL AND content IS NOT NULL LIMIT 1",
    [W_FILEROW] = "SELECT " SQ_FILE_COLS " FROM files WHERE id=?1",
    [W_HOLD] = "INSERT OR IGNORE INTO holds(session, file) VALUES(?1, ?2)",
    [W_UNHOLD] = "DELETE FROM holds WHERE session=?1 AND file=?2",
    [W_HOLDERS] = "SELECT session FROM holds WHERE file=?1",
    [W_NAMELESS] = "SELECT 1 FROM files WHERE id=?1 AND name IS NULL",
    /* a content's size is its own (the file's block size may have
     * changed since a kept version was stored) */
    [W_PURGE_GARBAGE] = "INSERT OR IGNORE INTO uploads(content, session, bytes, since) "
                        "SELECT b.content, 0, " SQ_CONTENT_BYTES("b.content",
                                                                "(SELECT blksize FROM files "
                                                                "WHERE id=?1)") ", ?2 "
                        "FROM blockmap AS b WHERE b.file=?1 AND b.content IS NOT NULL",
    [W_PURGE_VERSIONS] = "DELETE FROM blockmap WHERE file=?1",
    [W_PURGE_HOLDS] = "DELETE FROM holds WHERE file=?1",
    [W_PURGE_FILE] = "DELETE FROM files WHERE id=?1 AND name IS NULL",
    [W_PURGE_XATTRS] = "DELETE FROM xattrs WHERE file=?1",
    [W_OTHERS] = "SELECT id FROM sessions WHERE id<>?1",
    [W_SESSION_ADD] = "INSERT INTO sessions(pid, host, started_ns, applied, shared) "
                      "VALUES(?1, ?2, ?3, ?4, ?5)",
    [W_SESSION_APPLIED] = "UPDATE sessions SET applied=?2 WHERE id=?1",
    [W_SESSION_DEL] = "DELETE FROM sessions WHERE id=?1",
    [W_SESSION_ORPHANS] = "UPDATE uploads SET session=0, since=?2 WHERE session=?1",
    [W_SESSION_UNHOLD] = "DELETE FROM holds WHERE session=?1",
    [W_LOG_TRIM] = "DELETE FROM commit_log WHERE serial<=?1",
    [W_OLD] = "SELECT b.file, b.blk, b.serial, b.content, " SQ_CONTENT_BYTES("b.content",
                                                                          "f.blksize") " "
              "FROM blockmap AS b JOIN files AS f ON f.id=b.file "
              "WHERE b.superseded IS NOT NULL AND b.superseded<=?1 LIMIT ?2",
    [W_GARBAGE_LIST] = "SELECT content, bytes FROM uploads "
                       "WHERE session=0 AND (content<0 OR since<=?2) LIMIT ?1",
    [W_EXT_GET] = "SELECT off, len, gen FROM extents WHERE id=?1",
    [W_EXT_ADD] = "INSERT INTO extents(id, off, len, gen) VALUES(?1, ?2, ?3, ?4)",
    [W_EXT_BUMP] = "UPDATE extents SET gen=gen+1 WHERE id=?1",
    [W_EXT_DEL] = "DELETE FROM extents WHERE id=?1",
    [W_FREE_TAKE] = "SELECT off, gen FROM free_extents WHERE len=?1 LIMIT 1",
    [W_FREE_DEL] = "DELETE FROM free_extents WHERE off=?1",
    [W_FREE_ADD] = "INSERT OR REPLACE INTO free_extents(off, len, gen) VALUES(?1, ?2, ?3)",
    [W_STATE] = "INSERT OR REPLACE INTO file_states(file, serial, name, blksize, size, mode, uid, "
                "gid, mtime_ns) SELECT id, ?2, name, blksize, size, mode, uid, gid, mtime_ns "
                "FROM files WHERE id=?1",
    [W_LASTSTATE] = "SELECT max(serial) FROM file_states WHERE file=?1",
    [W_PURGE_STATES] = "DELETE FROM file_states WHERE file=?1",
    [W_PIN] = "INSERT OR IGNORE INTO pins(session, serial) VALUES(?1, ?2)",
    [W_UNPIN] = "DELETE FROM pins WHERE session=?1 AND serial=?2",
    [W_SESSION_UNPIN] = "DELETE FROM pins WHERE session=?1",
    [W_PINS] = "SELECT session, min(serial) FROM pins GROUP BY session",
    [W_LOG_AFTER] = "SELECT serial, time_ns FROM commit_log WHERE serial>?1 ORDER BY serial "
                    "LIMIT ?2",
    [W_STATES_NEXT] = "SELECT file, serial FROM file_states WHERE serial>?1 AND serial<=?2 "
                      "ORDER BY serial LIMIT ?3",
    [W_STATES_TRIM] = "DELETE FROM file_states WHERE file=?1 AND serial<?2",
};

/* A pending store of a handle's transaction, and the block's current
 * version as the commit section finds it. */
struct sq_pend {
    uint64_t blk, base; /* blk first: bf_blk_lower */
    int64_t content;    /* the upload; 0: a hole */
    uint64_t seq;       /* the write of its bytes (sq_blocks_write_begin) */
    bool staged;        /* content is a staged one: the core's until the commit links it */
    bool cur;           /* the block has a current version: */
    int64_t cur_serial, cur_session, cur_content; /* (cur_content 0: a hole) */
};

_Static_assert(offsetof(struct sq_pend, blk) == 0, "bf_blk_lower: blk first");

/* A handle. Its transaction state is the layer's (base.tx): pend, drop and
 * trunc_to are meaningful while it is BF_TX_OPEN, and touched by the thread
 * driving the transaction only. */
struct sq_fh {
    struct bf_fh base; /* first */
    struct sq_db *db;
    struct sq_pend *pend; /* sorted by blk */
    size_t npend, cappend;
    int64_t *drop; /* uploads no longer wanted (stored again, truncated away) */
    size_t ndrop, capdrop;
    int64_t spare[SQ_SPARES]; /* garbage contents taken for the next uploads (owned) */
    size_t nspare;
    uint64_t trunc_to; /* smallest truncate; UINT64_MAX: none */
};

static struct sq_fh *FH(struct bf_fh *fh)
{
    return (struct sq_fh *)fh;
}

static int64_t I64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* ---- errors -------------------------------------------------------------- */

int sq_errno(int rc)
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

int sq_fail(struct sq_db *d, sqlite3 *c, int rc, const char *what)
{
    pthread_mutex_lock(&d->elock);
    snprintf(d->lasterr, sizeof(d->lasterr), "%s: %s: %s (sqlite %d)", d->path, what,
             c ? sqlite3_errmsg(c) : sqlite3_errstr(rc), rc);
    fprintf(stderr, "bigfilefs: %s\n", d->lasterr);
    pthread_mutex_unlock(&d->elock);
    return sq_errno(rc);
}

static const struct bf_engine_ops sq_engine_ops;

int bf_sqlite_last_error(bf_db *db, char *buf, size_t len)
{
    if (!db || db->ops != &sq_engine_ops || !buf || !len)
        return -EINVAL;
    struct sq_db *d = SQ(db);
    pthread_mutex_lock(&d->elock);
    snprintf(buf, len, "%s", d->lasterr);
    pthread_mutex_unlock(&d->elock);
    return 0;
}

int bf_sqlite_set_load_hook(bf_db *db, void (*fn)(void *arg), void *arg)
{
    if (!db || db->ops != &sq_engine_ops)
        return -EINVAL;
    SQ(db)->load_hook = fn;
    SQ(db)->load_hook_arg = arg;
    return 0;
}

int bf_sqlite_set_sync_hook(bf_db *db, int (*fn)(void *arg), void *arg)
{
    if (!db || db->ops != &sq_engine_ops)
        return -EINVAL;
    SQ(db)->sync_hook = fn;
    SQ(db)->sync_hook_arg = arg;
    return 0;
}

int bf_sqlite_set_dio_align(bf_db *db, uint32_t align)
{
    if (!db || db->ops != &sq_engine_ops || (align & (align - 1)) != 0)
        return -EINVAL;
    SQ(db)->dio_align_test = align;
    return 0;
}

uint64_t bf_sqlite_busy_waits(bf_db *db)
{
    if (!db || db->ops != &sq_engine_ops)
        return 0;
    return bf_counter_get(&SQ(db)->busy);
}

int bf_sqlite_wait_busy(bf_db *db, uint64_t n, int timeout_ms)
{
    if (!db || db->ops != &sq_engine_ops)
        return -EINVAL;
    return bf_counter_wait(&SQ(db)->busy, true, n, timeout_ms);
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

int sq_open_conn(struct sq_db *d, const char *path, int flags, sqlite3 **out)
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

int sq_prepare_all(sqlite3 *c, const char *const *sql, sqlite3_stmt **st, int n)
{
    for (int i = 0; i < n; i++) {
        if (!sql[i])
            continue; /* prepared where it is used */
        int rc = sqlite3_prepare_v3(c, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

void sq_finalize_all(sqlite3_stmt **st, int n)
{
    for (int i = 0; i < n; i++) {
        sqlite3_finalize(st[i]);
        st[i] = NULL;
    }
}

int sq_query_int(sqlite3 *c, const char *sql, int64_t *out)
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

int sq_reader_get(struct sq_db *d, struct sq_reader **out)
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
    rc = sq_open_conn(d, d->rpath, d->rflags, &r->c);
    if (rc == SQLITE_OK)
        rc = sq_prepare_all(r->c, reader_sql, r->st, R_NSTMT);
    if (rc != SQLITE_OK) {
        int e = sq_fail(d, r->c, rc, "opening a reader connection");
        sq_finalize_all(r->st, R_NSTMT);
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

void sq_reader_put(struct sq_db *d, struct sq_reader *r)
{
    pthread_mutex_lock(&d->plock);
    r->busy = 0;
    pthread_cond_signal(&d->pcond);
    pthread_mutex_unlock(&d->plock);
}

int sq_exec(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

int sq_wexec(struct sq_db *d, int which)
{
    return sq_exec(d->ws[which]);
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

/* ---- write transactions ------------------------------------------------------ */

int sq_wbegin(struct sq_db *d, bool durable)
{
    BF_ASSERT(d->w); /* the layer refuses writes to a read-only database */
    pthread_mutex_lock(&d->wlock);
    int rc = durable && d->durable ? sq_wexec(d, W_SYNC_FULL) : SQLITE_OK;
    if (rc == SQLITE_OK)
        rc = sq_wexec(d, W_BEGIN);
    if (rc != SQLITE_OK) {
        int e = sq_fail(d, d->w, rc, "beginning a transaction");
        if (durable && d->durable)
            sq_wexec(d, W_SYNC_NORMAL);
        pthread_mutex_unlock(&d->wlock);
        return e;
    }
    return 0;
}

int sq_wend(struct sq_db *d, bool durable, int e)
{
    if (e == 0) {
        int rc = sq_wexec(d, W_COMMIT);
        if (rc != SQLITE_OK)
            e = sq_fail(d, d->w, rc, "committing");
    }
    if (e < 0 && !sqlite3_get_autocommit(d->w))
        sq_wexec(d, W_ROLLBACK);
    if (durable && d->durable)
        sq_wexec(d, W_SYNC_NORMAL);
    pthread_mutex_unlock(&d->wlock);
    if (durable)
        ck_maybe(d);
    return e;
}

int sq_step_int(sqlite3_stmt *st, const char *text, int64_t *v)
{
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int sq_wmeta_get(struct sq_db *d, const char *key, int64_t *v)
{
    int rc = sq_step_int(d->ws[W_GETMETA], key, v);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? sq_fail(d, d->w, SQLITE_CORRUPT, "reading meta")
                             : sq_fail(d, d->w, rc, "reading meta");
}

int sq_wmeta_set(struct sq_db *d, const char *key, int64_t v)
{
    sqlite3_stmt *st = d->ws[W_SETMETA];
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, v);
    int rc = sq_exec(st);
    return rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, "writing meta");
}

/* Bind integer parameters 1..n of writer statement `which` and run it. */
int sq_wrun(struct sq_db *d, int which, int n, const int64_t *v, const char *what)
{
    sqlite3_stmt *st = d->ws[which];
    for (int i = 0; i < n; i++)
        sqlite3_bind_int64(st, i + 1, v[i]);
    int rc = sq_exec(st);
    return rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, what);
}

/* Content id's extent {off, len, gen} (len 0: it has none: a blob), on the
 * writer, in its transaction. */
static int ext_get(struct sq_db *d, int64_t id, int64_t ext[3])
{
    sqlite3_stmt *st = d->ws[W_EXT_GET];
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    for (int i = 0; i < 3; i++)
        ext[i] = rc == SQLITE_ROW ? sqlite3_column_int64(st, i) : 0;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_fail(d, d->w, rc, "looking an extent up");
}

int sq_delete_content(struct sq_db *d, int64_t id, int64_t ext[3])
{
    int64_t v[1] = { id > 0 ? id : -id };
    ext[0] = ext[1] = ext[2] = 0;
    if (id > 0) {
        int e = ext_get(d, id, ext);
        if (e == 0 && ext[1])
            e = sq_wrun(d, W_EXT_DEL, 1, v, "deleting a block's content");
        if (e < 0)
            return e;
    }
    if (id < 0 && !d->ws[W_DELLEGACY]) {
        int rc = sqlite3_prepare_v3(d->w, "DELETE FROM legacy_blocks WHERE rowid=?1", -1,
                                    SQLITE_PREPARE_PERSISTENT, &d->ws[W_DELLEGACY], NULL);
        if (rc != SQLITE_OK)
            return sq_fail(d, d->w, rc, "deleting a block's content");
    }
    return sq_wrun(d, id > 0 ? W_DELCONTENT : W_DELLEGACY, 1, v, "deleting a block's content");
}

int sq_free_extents(struct sq_db *d, const int64_t (*ext)[3], size_t n)
{
    int e = 0;
    for (size_t i = 0; e == 0 && i < n; i++)
        e = sq_wrun(d, W_FREE_ADD, 3, ext[i], "freeing a deleted block's space");
    return e;
}

int sq_garbage(struct sq_db *d, int64_t id, uint32_t bytes)
{
    int64_t v[3] = { id, bytes, bf_now_ns() };
    return sq_wrun(d, W_GARBAGE, 3, v, "freeing a block's content");
}

/* The session's upload id (of `bytes` bytes) is not wanted: garbage. */
static int give_up(struct sq_db *d, int64_t id, uint32_t bytes)
{
    int64_t v[4] = { id, (int64_t)d->base.session, bytes, bf_now_ns() };
    return sq_wrun(d, W_GIVEUP, 4, v, "giving an upload up");
}

/* Uploads ids[0..n) (0: none) of blksize bytes are not wanted: they become
 * garbage (rule 4: no session owns them any more; the next uploads reuse
 * them, or the housekeeping deletes them), in one short transaction. On
 * failure they stay the session's, and go to the housekeeping when it
 * ends. */
static void discard_uploads(struct sq_db *d, const int64_t *ids, size_t n, uint32_t blksize)
{
    if (n == 0)
        return;
    int e = sq_wbegin(d, false);
    for (size_t i = 0; e == 0 && i < n; i++)
        if (ids[i])
            e = give_up(d, ids[i], blksize);
    if (sq_wend(d, false, e) < 0)
        bf_db_log(&d->base, "%zu uploads stay until the session ends", n);
}

/* ---- row helpers --------------------------------------------------------- */

void sq_row_info(sqlite3_stmt *st, struct bf_fileinfo *fi)
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

int sq_step_row(struct sq_db *d, sqlite3 *c, sqlite3_stmt *st, struct bf_fileinfo *out)
{
    int rc = sqlite3_step(st), e;
    if (rc == SQLITE_ROW) {
        if (out)
            sq_row_info(st, out);
        e = 0;
    } else if (rc == SQLITE_DONE) {
        e = -ENOENT;
    } else {
        e = sq_fail(d, c, rc, "reading file metadata");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return e;
}

int sq_reader_meta(struct sq_db *d, struct sq_reader *r, const char *key, int64_t *v)
{
    int rc = sq_step_int(r->st[R_META], key, v);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_fail(d, r->c, rc, "reading meta");
}

/* Run a reader query returning one file row; with `serial`, in one read
 * transaction with the database's serial. */
static int reader_row(struct sq_db *d, int which, const char *name, uint64_t id,
                      struct bf_fileinfo *out, uint64_t *serial)
{
    struct sq_reader *r;
    int e = sq_reader_get(d, &r);
    if (e < 0)
        return e;
    int rc = serial ? sq_exec(r->st[R_BEGIN]) : SQLITE_OK;
    if (rc != SQLITE_OK) {
        e = sq_fail(d, r->c, rc, "beginning a read");
    } else {
        sqlite3_stmt *st = r->st[which];
        if (name)
            sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        else
            sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        e = sq_step_row(d, r->c, st, out);
        int64_t s = 0;
        if (e == 0 && serial && (e = sq_reader_meta(d, r, "serial", &s)) == 0)
            *serial = (uint64_t)s;
        if (serial)
            sq_exec(r->st[R_COMMIT]);
    }
    sq_reader_put(d, r);
    return e;
}

/* ---- the file operations (bigfile.h) ------------------------------------- */

/* Log a content whose size is not the file's block size (-EIO). */
static int wrong_size(struct sq_db *d, struct bf_fh *fh, uint64_t blk, int64_t bytes)
{
    pthread_mutex_lock(&d->elock);
    snprintf(d->lasterr, sizeof(d->lasterr),
             "%s: block %llu of file %llu has %lld bytes, expected %u", d->path,
             (unsigned long long)blk, (unsigned long long)fh->id, (long long)bytes,
             fh->file.blksize);
    fprintf(stderr, "bigfilefs: %s\n", d->lasterr);
    pthread_mutex_unlock(&d->elock);
    return -EIO;
}

/* Read bytes [off, off + len) of content id (> 0: contents, < 0:
 * legacy_blocks) into buf, on r. */
static int read_content(struct sq_db *d, struct sq_reader *r, struct bf_fh *fh, uint64_t blk,
                        int64_t content, uint32_t off, uint32_t len, void *buf)
{
    uint32_t bs = fh->file.blksize;
    sqlite3_blob *b = NULL;
    int e;
    int rc = sqlite3_blob_open(r->c, "main", content > 0 ? "contents" : "legacy_blocks", "data",
                               content > 0 ? content : -content, 0, &b);
    if (rc != SQLITE_OK) {
        e = sq_fail(d, r->c, rc, "opening a block");
    } else if ((uint64_t)sqlite3_blob_bytes(b) != bs) {
        e = wrong_size(d, fh, blk, sqlite3_blob_bytes(b));
    } else {
        rc = sqlite3_blob_read(b, buf, (int)len, (int)off);
        e = rc == SQLITE_OK ? 0 : sq_fail(d, r->c, rc, "reading a block");
    }
    sqlite3_blob_close(b);
    return e;
}

/* A content's extent in the block file, as a read transaction found it. */
struct sq_ext {
    int64_t off, len, gen;
};

/* Content's extent in *x, on r in a read transaction of its own; *found
 * false: it has none (a blob, or freed). */
static int reader_extent(struct sq_db *d, struct sq_reader *r, int64_t content, struct sq_ext *x,
                         bool *found)
{
    sqlite3_stmt *st = r->st[R_EXTENT];
    *found = false;
    sqlite3_bind_int64(st, 1, content);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *found = true;
        *x = (struct sq_ext){ sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                              sqlite3_column_int64(st, 2) };
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_fail(d, r->c, rc, "looking an extent up");
}

/* 0 when content still has extent x (same offset and gen: not reused or
 * freed since a lookup found it), -EAGAIN when not (the caller looks the
 * block up again: it has a newer version, or its version was
 * collected), or the lookup's error. */
static int extent_unchanged(struct sq_db *d, struct sq_reader *r, int64_t content,
                            const struct sq_ext *x)
{
    struct sq_ext now;
    bool found = false;
    int e = reader_extent(d, r, content, &now, &found);
    if (e == 0 && !(found && now.off == x->off && now.gen == x->gen))
        e = -EAGAIN;
    return e;
}

/* Read bytes [off, off + len) of block blk's content at extent x (whose
 * lookup's read transaction has ended), then check that the extent was not
 * reused or freed meanwhile (extent_unchanged). */
static int read_extent(struct sq_db *d, struct sq_reader *r, struct bf_fh *fh, uint64_t blk,
                       int64_t content, const struct sq_ext *x, uint32_t off, uint32_t len,
                       void *buf)
{
    if (x->len != fh->file.blksize)
        return wrong_size(d, fh, blk, x->len);
    if (d->load_hook)
        d->load_hook(d->load_hook_arg);
    int e = sq_blocks_read(d, x->off + off, buf, len);
    return e == 0 ? extent_unchanged(d, r, content, x) : e;
}

/* What looking block blk up as of `at` found (version_step). */
enum sq_vfound {
    SQ_V_ZEROS, /* never stored as of `at`, or a hole */
    SQ_V_BLOB,  /* v->content, a blob */
    SQ_V_FILE,  /* v->content, at extent v->x of the block file */
};
struct sq_version {
    int64_t content;
    struct sq_ext x;
};

/* Look block blk up as of `at` on r, leaving r's R_VERSION stepped (its
 * read transaction keeps the snapshot until the caller resets it with
 * version_reset): *found and *v, *serial the version's serial. Errors:
 * -ESTALE (the version as of `at` may have been collected), -EIO. */
static int version_step(struct sq_db *d, struct sq_reader *r, struct bf_fh *fh, uint64_t blk,
                        uint64_t at, enum sq_vfound *found, struct sq_version *v, uint64_t *serial)
{
    sqlite3_stmt *st = r->st[R_VERSION];
    *found = SQ_V_ZEROS;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)fh->id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)blk);
    sqlite3_bind_int64(st, 3, I64(at));
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_fail(d, r->c, rc, "looking a block up");
    if (rc == SQLITE_ROW &&
        (sqlite3_column_type(st, 2) == SQLITE_NULL || (uint64_t)sqlite3_column_int64(st, 2) > at)) {
        /* the version as of `at` */
        *serial = (uint64_t)sqlite3_column_int64(st, 0);
        v->content = sqlite3_column_int64(st, 1);
        if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
            *found = SQ_V_FILE;
            v->x = (struct sq_ext){ sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4),
                                    sqlite3_column_int64(st, 5) };
        } else if (v->content != 0) {
            *found = SQ_V_BLOB;
        }
        return 0;
    }
    /* None, or one whose successor is gone: it may have been collected. */
    int64_t collected = 0;
    int e = sq_reader_meta(d, r, "collected", &collected);
    return e == 0 && at < (uint64_t)collected ? -ESTALE : e;
}

static void version_reset(struct sq_reader *r)
{
    sqlite3_reset(r->st[R_VERSION]);
    sqlite3_clear_bindings(r->st[R_VERSION]);
}

/* Bytes [off, off + len) of block blk as of `at`, looked up once on r:
 * -EAGAIN when its content's extent changed while it was read. */
static int load_once(struct sq_db *d, struct sq_reader *r, struct bf_fh *fh, uint64_t blk,
                     uint64_t at, uint32_t off, uint32_t len, void *buf, uint64_t *serial)
{
    enum sq_vfound found;
    struct sq_version v;
    /* A blob is read while the lookup stays stepped (its read transaction
     * keeps the snapshot); a content of the block file after it: the
     * extent's check keeps the bytes right. */
    int e = version_step(d, r, fh, blk, at, &found, &v, serial);
    if (e == 0 && found == SQ_V_ZEROS)
        memset(buf, 0, len);
    else if (e == 0 && found == SQ_V_BLOB)
        e = read_content(d, r, fh, blk, v.content, off, len, buf);
    version_reset(r);
    if (e == 0 && found == SQ_V_FILE)
        e = read_extent(d, r, fh, blk, v.content, &v.x, off, len, buf);
    return e;
}

/* Send bytes [off, off + len) of block blk as of `at`, looked up once on
 * r (loadblk_send): the extent is checked after it is marked as being
 * sent (sq_blocks_send_begin: a write or punch of it waits) and before
 * the bytes go, so they are the content's from the check to the send's
 * end. -EAGAIN when the extent changed since the lookup; -ENODATA when
 * the block is not in the block file. */
static int send_once(struct sq_db *d, struct sq_reader *r, struct bf_fh *fh, uint64_t blk,
                     uint64_t at, uint32_t off, uint32_t len, struct bf_sink *sink)
{
    enum sq_vfound found;
    struct sq_version v;
    uint64_t serial;
    int e = version_step(d, r, fh, blk, at, &found, &v, &serial);
    version_reset(r);
    if (e < 0)
        return e;
    if (found != SQ_V_FILE || v.x.len != fh->file.blksize)
        return -ENODATA; /* a wrong size: the load says so */
    if (d->load_hook)
        d->load_hook(d->load_hook_arg);
    int64_t pos = v.x.off + off;
    e = sq_blocks_send_begin(d, pos, len);
    if (e < 0)
        return e;
    int fd = -1;
    e = extent_unchanged(d, r, v.content, &v.x);
    bool direct = false;
    if (e == 0)
        e = sq_blocks_read_fd(d, pos, len, NULL, &fd, &direct);
    if (e == 0) {
        e = sink->send(sink, fd, (uint64_t)pos, len);
        if (e == -EINVAL && direct)
            sq_blocks_dio_refused(d); /* the load that follows reads buffered */
        if (e == -EAGAIN || e == -EINVAL)
            e = -EIO; /* the sink's failure, not "look again" */
    }
    sq_blocks_send_end(d, pos, len);
    return e;
}

/* Bytes [off, off + len) of block blk as of `at` (loadblk and
 * loadblk_range: only those are read). */
static int sq_load(struct bf_fh *fh, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                   void *buf, uint64_t *serial)
{
    struct sq_db *d = FH(fh)->db;
    struct sq_reader *r;
    *serial = 0;
    if (blk > (uint64_t)INT64_MAX) {
        memset(buf, 0, len);
        return 0;
    }
    int e = sq_reader_get(d, &r);
    if (e < 0)
        return e;
    /* Each try finds a newer version (or -ESTALE): an extent changes
     * under a load only when its version is gone. */
    for (int tries = 0; (e = load_once(d, r, fh, blk, at, off, len, buf, serial)) == -EAGAIN;)
        if (++tries == SQ_LOAD_TRIES) {
            e = sq_fail(d, NULL, SQLITE_IOERR, "reading a block: its extent keeps changing");
            break;
        }
    sq_reader_put(d, r);
    return e;
}

static int sq_loadblk(struct bf_fh *fh, uint64_t blk, uint64_t at, void *buf, uint64_t *serial)
{
    return sq_load(fh, blk, at, 0, fh->file.blksize, buf, serial);
}

static int sq_loadblk_range(struct bf_fh *fh, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                            void *buf, uint64_t *serial)
{
    return sq_load(fh, blk, at, off, len, buf, serial);
}

static int sq_loadblk_send(struct bf_fh *fh, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                           struct bf_sink *sink)
{
    struct sq_db *d = FH(fh)->db;
    struct sq_reader *r;
    if (blk > (uint64_t)INT64_MAX)
        return -ENODATA;
    int e = sq_reader_get(d, &r);
    if (e < 0)
        return e;
    /* As sq_load: each try finds a newer version (or -ESTALE); past the
     * tries, the load (which the caller falls back to) says what is
     * wrong. */
    for (int tries = 0; (e = send_once(d, r, fh, blk, at, off, len, sink)) == -EAGAIN;)
        if (++tries == SQ_LOAD_TRIES)
            break;
    sq_reader_put(d, r);
    return e;
}

/* loadblk_ahead: a content of the block file that the OS caches in full
 * needs nothing — the sends that follow read it from memory (a
 * POSIX_FADV_WILLNEED per block, to have the kernel read the file ahead
 * of buffered sends, was measured slower: 1.6-2.7 GB/s against 2.3-3.4
 * without, the block file's `dd` 3.8-4.0); one it does not, and a blob,
 * are -ENODATA: prefetch loads them into memory, a block in one read
 * ahead of the reader (a send would read each READ's part of it in turn,
 * directly, while the reader waits). */
static int sq_loadblk_ahead(struct bf_fh *fh, uint64_t blk, uint64_t at)
{
    struct sq_db *d = FH(fh)->db;
    struct sq_reader *r;
    enum sq_vfound found;
    struct sq_version v;
    uint64_t serial;
    if (blk > (uint64_t)INT64_MAX)
        return 0;
    int e = sq_reader_get(d, &r);
    if (e < 0)
        return e;
    e = version_step(d, r, fh, blk, at, &found, &v, &serial);
    version_reset(r);
    sq_reader_put(d, r);
    if (e == 0 && found == SQ_V_BLOB)
        return -ENODATA;
    int fd;
    bool direct;
    if (e == 0 && found == SQ_V_FILE &&
        sq_blocks_read_fd(d, v.x.off, (uint32_t)v.x.len, NULL, &fd, &direct) == 0 && direct)
        return -ENODATA;
    return e;
}

static int sq_begin(struct bf_fh *fh)
{
    struct sq_fh *h = FH(fh);
    /* Nothing to lock: each upload and the commit are transactions of
     * their own. */
    BF_ASSERT(h->npend == 0 && h->ndrop == 0);
    h->trunc_to = UINT64_MAX;
    return 0;
}

/* Room for one more pending store and one more dropped upload (so that
 * storing cannot lose track of an upload). -ENOMEM. */
static int pend_reserve(struct sq_fh *h)
{
    if (h->npend == h->cappend) {
        size_t cap = h->cappend ? 2 * h->cappend : 16;
        struct sq_pend *v = realloc(h->pend, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        h->pend = v;
        h->cappend = cap;
    }
    if (h->ndrop == h->capdrop) {
        size_t cap = h->capdrop ? 2 * h->capdrop : 16;
        int64_t *v = realloc(h->drop, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        h->drop = v;
        h->capdrop = cap;
    }
    return 0;
}

/* Index of the first pending store >= blk. */
static size_t pend_lower(const struct sq_fh *h, uint64_t blk)
{
    return bf_blk_lower(h->pend, h->npend, sizeof(h->pend[0]), blk);
}

/* Take up to max garbage contents of bs bytes into ids[*n..] for the
 * next uploads (they become the session's: one write of uploads for all
 * of them). In a writer transaction. */
static int take_garbage(struct sq_db *d, uint32_t bs, int64_t *ids, size_t max, size_t *n)
{
    sqlite3_stmt *st = d->ws[W_REUSE_FIND];
    size_t first = *n;
    int rc, e = 0;
    sqlite3_bind_int64(st, 1, bs);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n - first < max)
        ids[(*n)++] = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        e = sq_fail(d, d->w, rc, "storing a block");
    for (size_t i = first; e == 0 && i < *n; i++) {
        int64_t v[3] = { ids[i], (int64_t)d->base.session, bs };
        e = sq_wrun(d, W_REUSE_OWN, 3, v, "storing a block");
    }
    return e;
}

/* Take up to SQ_SPARES garbage contents of h's block size for h's next
 * uploads. In a writer transaction. */
static int take_spares(struct sq_fh *h)
{
    return take_garbage(h->db, h->base.file.blksize, h->spare, SQ_SPARES, &h->nspare);
}

/* In a writer transaction: the row of a content of bs bytes, whose data
 * the caller writes at *off in the block file once the transaction has
 * committed (see "The block file"): the session's garbage row `reuse` —
 * its extent's gen bumped (a load that read it meanwhile sees it
 * changed); a blob's data moves to a new extent — or (reuse 0) a new row
 * that the session owns until a commit links it (uploads). A new extent is
 * allocated at the file's end (meta 'blocks_end'). *id is the row. */
static int upload_row(struct sq_db *d, uint32_t bs, int64_t reuse, uint64_t seq, int64_t *id,
                      int64_t *off)
{
    int64_t end = 0, ext[3] = { 0, 0, 0 };
    int fd;
    int e = sq_wmeta_get(d, "blocks_end", &end);
    if (e == 0) /* the file is made (or a stale one emptied) with the first extent */
        e = sq_blocks_fd(d, end == 0 ? SQ_BLOCKS_NEW : SQ_BLOCKS_OPEN, &fd);
    if (e == 0 && reuse)
        e = ext_get(d, reuse, ext);
    if (e < 0)
        return e;
    *id = reuse;
    int64_t sv[3] = { reuse, (int64_t)d->base.session, (int64_t)seq };
    if (reuse && ext[1]) {
        if (!BF_CHECK(ext[1] == bs, "extent of %lld bytes for %u", (long long)ext[1], bs))
            return -EIO;
        *off = ext[0];
        e = sq_wrun(d, W_EXT_BUMP, 1, &reuse, "storing a block");
        return e < 0 ? e : sq_wrun(d, W_UPLOAD_SEQ, 3, sv, "storing a block");
    }
    if (reuse) {
        e = sq_wrun(d, W_REUSE_DATA, 1, &reuse, "storing a block");
        if (e == 0)
            e = sq_wrun(d, W_UPLOAD_SEQ, 3, sv, "storing a block");
    } else {
        int rc = sq_wexec(d, W_UPLOAD);
        if (rc != SQLITE_OK)
            return sq_fail(d, d->w, rc, "storing a block");
        int64_t v[4] = { sqlite3_last_insert_rowid(d->w), (int64_t)d->base.session, bs,
                         (int64_t)seq };
        *id = v[0];
        e = sq_wrun(d, W_UPLOADED, 4, v, "storing a block");
    }
    /* A free extent of its size, else one more at the end. One taken
     * from the free ones gets a gen above every gen its offset had, so
     * that (content, off, gen) never repeats: a load that read the offset
     * for a content deleted since sees the change, whatever id the new
     * content has. */
    int64_t v[4] = { *id, end, bs, 0 };
    bool from_free = false;
    if (e == 0) {
        sqlite3_stmt *st = d->ws[W_FREE_TAKE];
        sqlite3_bind_int64(st, 1, bs);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            from_free = true;
            v[1] = sqlite3_column_int64(st, 0);
            v[3] = sqlite3_column_int64(st, 1) + 1;
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            e = sq_fail(d, d->w, rc, "storing a block");
    }
    if (e == 0 && from_free)
        e = sq_wrun(d, W_FREE_DEL, 1, &v[1], "storing a block");
    if (e == 0)
        e = sq_wrun(d, W_EXT_ADD, 4, v, "storing a block");
    if (e == 0 && !from_free)
        e = sq_wmeta_set(d, "blocks_end", end + bs);
    *off = v[1];
    return e;
}

/* Write upload id's data (bs bytes) at off in the block file, its row
 * committed: on failure, the upload is given up (garbage), and what was
 * written of it is punched out (no load reads it: it is no version's, and
 * its gen changed; on a full disk, that makes room to give it up). */
static int upload_data(struct sq_db *d, int64_t id, int64_t off, const void *buf, uint32_t bs)
{
    int e = sq_blocks_write(d, off, buf, bs);
    if (e < 0) {
        int64_t ext[1][3] = { { off, bs, 0 } };
        sq_blocks_punch(d, (const int64_t(*)[3])ext, 1);
        discard_uploads(d, &id, 1, bs);
    }
    return e;
}

/* Upload content (a contents row owned by the session until linked): its
 * row in a short transaction of its own (a garbage row of the same size
 * if there is one: its extent is overwritten, the file does not grow),
 * then its data (outside any transaction). */
static int upload(struct sq_fh *h, const void *buf, int64_t *id, uint64_t *seq)
{
    struct sq_db *d = h->db;
    uint32_t bs = h->base.file.blksize;
    bool took = h->nspare == 0;
    *seq = sq_blocks_write_begin(d);
    int e = sq_wbegin(d, false);
    if (e < 0) {
        sq_blocks_write_end(d);
        return e;
    }
    if (took)
        e = take_spares(h);
    int64_t reuse = e == 0 && h->nspare ? h->spare[--h->nspare] : 0;
    int64_t made = 0, off = 0;
    if (e == 0)
        e = upload_row(d, bs, reuse, *seq, &made, &off);
    e = sq_wend(d, false, e);
    if (e == 0) {
        e = upload_data(d, made, off, buf, bs);
        if (e == 0)
            *id = made;
    } else if (took) {
        h->nspare = 0; /* rolled back: they are garbage again */
    } else if (reuse) {
        h->spare[h->nspare++] = reuse; /* still ours, as it was */
    }
    sq_blocks_write_end(d);
    return e;
}

/* Put a pending store of content (0: a hole; staged: a staged content)
 * for blk, replacing one of the same block; pend_reserve made room. */
static void pend_put(struct sq_fh *h, uint64_t blk, uint64_t base, int64_t content,
                     uint64_t seq, bool staged)
{
    size_t i = pend_lower(h, blk);
    if (i < h->npend && h->pend[i].blk == blk) {
        if (h->pend[i].content && !h->pend[i].staged)
            h->drop[h->ndrop++] = h->pend[i].content; /* stored twice: the last wins */
    } else {
        memmove(&h->pend[i + 1], &h->pend[i], (h->npend - i) * sizeof(h->pend[0]));
        h->npend++;
    }
    h->pend[i] = (struct sq_pend){
        .blk = blk, .base = base, .content = content, .seq = seq, .staged = staged
    };
}

static int sq_storeblk(struct bf_fh *fh, uint64_t blk, const void *buf, uint64_t base)
{
    struct sq_fh *h = FH(fh);
    uint32_t bs = fh->file.blksize;
    int64_t content = 0; /* a hole */
    if (blk > (uint64_t)INT64_MAX)
        return -EINVAL;
    uint64_t seq = 0;
    int e = pend_reserve(h);
    if (e == 0 && !bf_all_zero(buf, bs))
        e = upload(h, buf, &content, &seq);
    if (e < 0)
        return e;
    pend_put(h, blk, base, content, seq, false);
    return 0;
}

/* ---- staging: staged contents are uploads (COHERENCE.md rule 4) ----------- */


/* A staged content is an upload of the session, as storeblk's are, made
 * outside any transaction of the file: the commit that stores it links
 * it (storeblk_staged: no copy), stage_drop gives it up (garbage), and
 * the housekeeping collects those of a session that ended or died. An
 * all-zero content is token 0 (a hole), which needs no row. */
static int sq_stage(struct bf_fh *fh, uint64_t blk, const void *buf, uint64_t *token)
{
    struct sq_db *d = FH(fh)->db;
    uint32_t bs = fh->file.blksize;
    (void)blk;
    if (bf_all_zero(buf, bs)) {
        *token = 0;
        return 0;
    }
    int64_t reuse = 0, id = 0, off = 0;
    size_t n = 0;
    uint64_t seq = sq_blocks_write_begin(d);
    int e = sq_wbegin(d, false);
    if (e == 0) {
        e = take_garbage(d, bs, &reuse, 1, &n);
        if (e == 0)
            e = upload_row(d, bs, n ? reuse : 0, seq, &id, &off);
        e = sq_wend(d, false, e);
    }
    if (e == 0)
        e = upload_data(d, id, off, buf, bs);
    sq_blocks_write_end(d);
    ck_maybe(d); /* staging alone can fill the WAL: bound it as a commit does */
    if (e == 0)
        *token = (uint64_t)id;
    return e;
}

static int reader_int64(struct sq_db *d, int which, int nargs, int64_t a, int64_t b, uint64_t *out,
                        const char *what);
static int untrusted_upload(struct sq_db *d, bool staged);

/* The write number of staged content `id` (the session's upload). */
static int staged_seq(struct sq_db *d, int64_t id, uint64_t *seq)
{
    return reader_int64(d, R_UPLOAD_SEQ, 2, id, (int64_t)d->base.session, seq,
                        "looking a staged block up");
}

static int sq_unstage(struct bf_fh *fh, uint64_t token, void *buf)
{
    struct sq_db *d = FH(fh)->db;
    uint32_t bs = fh->file.blksize;
    if (token == 0) {
        memset(buf, 0, bs);
        return 0;
    }
    /* Its bytes only if they can be trusted (sq_blocks_write_begin): read
     * back after a write-back error, they may be zeros or older bytes,
     * which a later writeout would commit as the block's. */
    uint64_t seq = 0;
    int e = staged_seq(d, (int64_t)token, &seq);
    int durable = e == 0 && d->durable ? sq_blocks_durable(d, seq) : 1;
    if (durable == -EAGAIN) {
        (void)sq_blocks_sync(d); /* a failure is recorded: the next look says so */
        durable = sq_blocks_durable(d, seq);
    }
    if (e == 0 && durable != 1)
        e = untrusted_upload(d, true);
    if (e < 0)
        return e;
    struct sq_reader *r;
    if ((e = sq_reader_get(d, &r)) < 0)
        return e;
    /* the session's own upload: no other one reuses it meanwhile */
    struct sq_ext x;
    bool in_file = false;
    e = reader_extent(d, r, (int64_t)token, &x, &in_file);
    if (e == 0 && in_file)
        e = x.len != bs ? wrong_size(d, fh, 0, x.len) : sq_blocks_read(d, x.off, buf, bs);
    else if (e == 0)
        e = read_content(d, r, fh, 0, (int64_t)token, 0, bs, buf);
    sq_reader_put(d, r);
    return e;
}

static void sq_stage_drop(struct bf_fh *fh, uint64_t token)
{
    int64_t id = (int64_t)token;
    if (token)
        discard_uploads(FH(fh)->db, &id, 1, fh->file.blksize);
}

static int sq_storeblk_staged(struct bf_fh *fh, uint64_t blk, uint64_t token, uint64_t base)
{
    struct sq_fh *h = FH(fh);
    if (blk > (uint64_t)INT64_MAX)
        return -EINVAL;
    uint64_t seq = 0;
    int e = token ? staged_seq(h->db, (int64_t)token, &seq) : 0;
    if (e == 0)
        e = pend_reserve(h);
    if (e == 0)
        pend_put(h, blk, base, (int64_t)token, seq, token != 0);
    return e;
}

static int sq_truncate(struct bf_fh *fh, uint64_t nblocks)
{
    struct sq_fh *h = FH(fh);
    /* Stores before the truncate go too (their uploads with them). */
    size_t i = pend_lower(h, nblocks), n = 0;
    for (size_t j = i; j < h->npend; j++)
        n += h->pend[j].content != 0 && !h->pend[j].staged;
    if (h->ndrop + n > h->capdrop) {
        int64_t *v = realloc(h->drop, (h->ndrop + n) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        h->drop = v;
        h->capdrop = h->ndrop + n;
    }
    for (size_t j = i; j < h->npend; j++)
        if (h->pend[j].content && !h->pend[j].staged)
            h->drop[h->ndrop++] = h->pend[j].content;
    h->npend = i;
    if (nblocks < h->trunc_to)
        h->trunc_to = nblocks;
    return 0;
}

/* Forget the transaction; with `discard`, its uploads become garbage
 * first (not the staged contents it stored: they stay the core's, for a
 * retry). */
static void tx_clear(struct sq_fh *h, bool discard)
{
    if (discard) {
        uint32_t bs = h->base.file.blksize;
        for (size_t i = 0; i < h->npend; i++)
            if (!h->pend[i].content || h->pend[i].staged)
                continue;
            else if (h->ndrop < h->capdrop)
                h->drop[h->ndrop++] = h->pend[i].content;
            else
                discard_uploads(h->db, &h->pend[i].content, 1, bs);
        discard_uploads(h->db, h->drop, h->ndrop, bs);
        discard_uploads(h->db, h->spare, h->nspare, bs);
    }
    h->nspare = 0; /* given up: by the commit that succeeded, or just now */
    free(h->pend);
    free(h->drop);
    h->pend = NULL;
    h->drop = NULL;
    h->npend = h->cappend = h->ndrop = h->capdrop = 0;
    h->trunc_to = UINT64_MAX;
}

static void sq_abort(struct bf_fh *fh)
{
    tx_clear(FH(fh), true);
}

/* ---- the commit section ------------------------------------------------------ */

/* A current version found by the commit section. */
struct sq_cur {
    uint64_t blk;
    int64_t serial, session, content;
};

/* What the commit section collects besides the database's changes. */
struct sq_section {
    int64_t serial, me;
    bool alone; /* no other live session, no history kept, no pin: replaced versions go now */
    struct sq_cur *trunc; /* current versions of the blocks a truncate drops */
    size_t ntrunc, captrunc;
    uint64_t *conflicts; /* blocks found conflicting (BF_CONFLICT_SIZE: the size) */
    size_t nconflicts, capconflicts;
    struct bf_rangebuf changed;
};

static int push_conflict(struct sq_section *s, uint64_t blk)
{
    if (s->nconflicts == s->capconflicts) {
        size_t cap = s->capconflicts ? 2 * s->capconflicts : 16;
        uint64_t *v = realloc(s->conflicts, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        s->conflicts = v;
        s->capconflicts = cap;
    }
    s->conflicts[s->nconflicts++] = blk;
    return 0;
}

/* Look up the current version of every stored block and of every block
 * the truncate drops. */
static int find_current(struct sq_fh *h, struct sq_section *s)
{
    struct sq_db *d = h->db;
    int64_t file = (int64_t)h->base.id;
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < h->npend; i++) {
        struct sq_pend *p = &h->pend[i];
        sqlite3_stmt *st = d->ws[W_CUR];
        sqlite3_bind_int64(st, 1, file);
        sqlite3_bind_int64(st, 2, (int64_t)p->blk);
        rc = sqlite3_step(st);
        p->cur = rc == SQLITE_ROW;
        if (p->cur) {
            p->cur_serial = sqlite3_column_int64(st, 0);
            p->cur_session = sqlite3_column_int64(st, 1);
            p->cur_content = sqlite3_column_int64(st, 2);
        }
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    if (rc == SQLITE_OK && h->trunc_to != UINT64_MAX && h->trunc_to <= (uint64_t)INT64_MAX) {
        sqlite3_stmt *st = d->ws[W_CUR_FROM];
        sqlite3_bind_int64(st, 1, file);
        sqlite3_bind_int64(st, 2, (int64_t)h->trunc_to);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (s->ntrunc == s->captrunc) {
                size_t cap = s->captrunc ? 2 * s->captrunc : 64;
                struct sq_cur *v = realloc(s->trunc, cap * sizeof(*v));
                if (!v) {
                    rc = SQLITE_NOMEM;
                    break;
                }
                s->trunc = v;
                s->captrunc = cap;
            }
            s->trunc[s->ntrunc++] =
                (struct sq_cur){ (uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                                 sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3) };
        }
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    return rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, "looking up current versions");
}

/* Whether a change (serial s by session `by`) is one the committing
 * session has not seen after `base` (rule 2). */
static bool unseen(int64_t s, int64_t by, const struct sq_section *sec, uint64_t base)
{
    return (uint64_t)s > base && by != sec->me;
}

/* The conflict check (COHERENCE.md rule 2): the conflicts go to s. */
static int check_conflicts(struct sq_fh *h, const struct bf_commit_req *req, const int64_t *state,
                           struct sq_section *s)
{
    /* state: size, size_serial, size_session, content_serial, content_session */
    bool file_changed = (req->flags & BF_COMMIT_FILE_CONFLICTS) &&
                        unseen(state[3], state[4], s, req->file_base);
    int e = 0;
    for (size_t i = 0; e == 0 && i < h->npend; i++) {
        const struct sq_pend *p = &h->pend[i];
        if (file_changed || (p->cur && unseen(p->cur_serial, p->cur_session, s, p->base)))
            e = push_conflict(s, p->blk);
    }
    for (size_t i = 0; e == 0 && i < s->ntrunc; i++)
        if (unseen(s->trunc[i].serial, s->trunc[i].session, s, req->size_base))
            e = push_conflict(s, s->trunc[i].blk);
    if (e == 0 && (req->size_set || h->trunc_to != UINT64_MAX) &&
        unseen(state[1], state[2], s, req->size_base))
        e = push_conflict(s, BF_CONFLICT_SIZE);
    return e;
}

/* Make `content` (0: a hole) block blk's new version at the section's
 * serial, over its current version (have_cur: cur_serial, cur_content).
 * Adds blk to the changed blocks unless nothing changed (a hole over a
 * hole or nothing). */
static int put_version(struct sq_fh *h, struct sq_section *s, uint64_t blk, int64_t content,
                       bool have_cur, int64_t cur_serial, int64_t cur_content)
{
    struct sq_db *d = h->db;
    int64_t file = (int64_t)h->base.id;
    if (!content && !(have_cur && cur_content))
        return 0;
    int e = 0;
    if (have_cur && s->alone) {
        /* its content becomes garbage, for the next uploads to reuse */
        int64_t v[3] = { file, (int64_t)blk, cur_serial };
        e = sq_wrun(d, W_DELVERSION, 3, v, "replacing a version");
        if (e == 0 && cur_content)
            e = sq_garbage(d, cur_content, h->base.file.blksize);
    } else if (have_cur) {
        /* kept, superseded: for the history and the other sessions'
         * snapshots, until the housekeeping collects it */
        int64_t v[4] = { file, (int64_t)blk, cur_serial, s->serial };
        e = sq_wrun(d, W_SUPERSEDE, 4, v, "superseding a version");
    }
    if (e == 0 && (content || !s->alone)) {
        sqlite3_stmt *st = d->ws[W_ADDVERSION];
        sqlite3_bind_int64(st, 1, file);
        sqlite3_bind_int64(st, 2, (int64_t)blk);
        sqlite3_bind_int64(st, 3, s->serial);
        sqlite3_bind_int64(st, 4, s->me);
        if (content)
            sqlite3_bind_int64(st, 5, content);
        int rc = sq_exec(st);
        e = rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, "adding a version");
    }
    if (e == 0 && content) {
        int64_t v[3] = { content, s->me, h->base.file.blksize };
        e = sq_wrun(d, W_LINKED, 3, v, "linking an upload");
    }
    if (e == 0)
        e = bf_ranges_add(&s->changed, blk);
    return e;
}

/* Apply the truncate and the stores, merged in block order (a store gives
 * a dropped block content again). */
static int apply_blocks(struct sq_fh *h, struct sq_section *s)
{
    size_t p = 0, t = 0;
    int e = 0;
    while (e == 0 && (p < h->npend || t < s->ntrunc)) {
        uint64_t bp = p < h->npend ? h->pend[p].blk : UINT64_MAX;
        uint64_t bt = t < s->ntrunc ? s->trunc[t].blk : UINT64_MAX;
        if (bp <= bt) {
            const struct sq_pend *q = &h->pend[p++];
            e = put_version(h, s, q->blk, q->content, q->cur, q->cur_serial, q->cur_content);
            if (bp == bt)
                t++; /* the same current version */
        } else {
            const struct sq_cur *c = &s->trunc[t++];
            e = put_version(h, s, c->blk, 0, true, c->serial, c->content);
        }
    }
    for (size_t i = 0; e == 0 && i < h->ndrop; i++)
        e = give_up(h->db, h->drop[i], h->base.file.blksize);
    for (size_t i = 0; e == 0 && i < h->nspare; i++)
        e = give_up(h->db, h->spare[i], h->base.file.blksize);
    return e;
}

/* Write commit-log row rec (blocks: its ranges, encoded) on the writer. */
static int log_row(struct sq_db *d, const struct bf_commit_rec *rec)
{
    unsigned char *blocks = NULL;
    size_t blen = 0;
    int e = bf_ranges_encode(rec->write.ranges, rec->write.nranges, &blocks, &blen);
    if (e < 0)
        return e;
    sqlite3_stmt *st = d->ws[W_LOG];
    sqlite3_bind_int64(st, 1, (int64_t)rec->serial);
    sqlite3_bind_int64(st, 2, (int64_t)rec->session);
    sqlite3_bind_int64(st, 3, rec->kind);
    if (rec->file)
        sqlite3_bind_int64(st, 4, (int64_t)rec->file);
    if (rec->file2)
        sqlite3_bind_int64(st, 5, (int64_t)rec->file2);
    sqlite3_bind_int64(st, 6, rec->time_ns);
    if (rec->write.size_changed)
        sqlite3_bind_int64(st, 7, (int64_t)rec->write.size);
    if (rec->write.trunc != UINT64_MAX)
        sqlite3_bind_int64(st, 8, I64(rec->write.trunc));
    if (blocks)
        sqlite3_bind_blob(st, 9, blocks, (int)blen, SQLITE_STATIC);
    if (rec->name)
        sqlite3_bind_text(st, 10, rec->name, -1, SQLITE_STATIC);
    if (rec->name2)
        sqlite3_bind_text(st, 11, rec->name2, -1, SQLITE_STATIC);
    if (rec->rename_flags)
        sqlite3_bind_int64(st, 12, rec->rename_flags);
    int rc = sq_exec(st);
    free(blocks);
    return rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, "writing the commit log");
}

/* The next serial (in a writer transaction). */
static int next_serial(struct sq_db *d, int64_t *serial)
{
    int64_t cur;
    int e = sq_wmeta_get(d, "serial", &cur);
    *serial = cur + 1;
    return e;
}

/* The commit section, in its write transaction: conflicts go to s (then
 * nothing is to be committed); else every change is made. */
static int commit_section(struct sq_fh *h, const struct bf_commit_req *req, struct sq_section *s)
{
    struct sq_db *d = h->db;
    int64_t state[5];
    int e = next_serial(d, &s->serial);
    if (e == 0) {
        sqlite3_stmt *st = d->ws[W_FILESTATE];
        sqlite3_bind_int64(st, 1, (int64_t)h->base.id);
        int rc = sqlite3_step(st);
        for (int i = 0; i < 5; i++)
            state[i] = rc == SQLITE_ROW ? sqlite3_column_int64(st, i) : 0;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        e = rc == SQLITE_ROW    ? 0
            : rc == SQLITE_DONE ? -ENOENT
                                : sq_fail(d, d->w, rc, "reading a file's state");
    }
    if (e == 0)
        e = sq_alone(d, &s->alone);
    if (e == 0 && s->alone)
        e = sq_history_none(d, &s->alone);
    if (e == 0)
        e = find_current(h, s);
    if (e == 0 && !(req->flags & BF_COMMIT_OVERWRITE))
        e = check_conflicts(h, req, state, s);
    if (e < 0 || s->nconflicts)
        return e;
    e = apply_blocks(h, s);
    bool trunc = h->trunc_to != UINT64_MAX;
    int64_t now = bf_now_ns();
    if (e == 0) {
        sqlite3_stmt *st = d->ws[W_SETWRITE];
        sqlite3_bind_int64(st, 1, (int64_t)h->base.id);
        if (req->size_set)
            sqlite3_bind_int64(st, 2, (int64_t)req->size);
        sqlite3_bind_int(st, 3, req->size_set || trunc);
        sqlite3_bind_int64(st, 4, s->serial);
        sqlite3_bind_int64(st, 5, s->me);
        sqlite3_bind_int64(st, 6, now);
        int rc = sq_exec(st);
        e = rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, "updating a file");
    }
    if (e == 0)
        e = sq_state_write(d, h->base.id, (uint64_t)s->serial);
    if (e == 0)
        e = sq_wmeta_set(d, "serial", s->serial);
    if (e == 0 && s->alone) /* what it replaced is gone: so is the history before it */
        e = sq_wmeta_set(d, "collected", s->serial);
    if (e == 0 && s->alone)
        e = sq_wmeta_set(d, "history_from", s->serial);
    if (e == 0) {
        struct bf_commit_rec rec = {
            .serial = (uint64_t)s->serial,
            .session = (uint64_t)s->me,
            .kind = BF_COMMIT_WRITE,
            .file = h->base.id,
            .time_ns = now,
            .write = { .ranges = s->changed.v,
                       .nranges = s->changed.n,
                       .trunc = h->trunc_to,
                       .size_changed = req->size_set,
                       .size = req->size },
        };
        e = log_row(d, &rec);
    }
    return e;
}

/* A commit refused because an upload's bytes were written before a failed
 * sync of the block file (the last error, and the log): -EIO. */
static int untrusted_upload(struct sq_db *d, bool staged)
{
    pthread_mutex_lock(&d->elock);
    snprintf(d->lasterr, sizeof(d->lasterr), "%s: %s", d->bpath,
             staged ? "a changed block staged before a write error of the block file cannot be "
                      "committed (its bytes may be lost): discard the file's changes"
                    : "a block written before a write error of the block file: the writeout "
                      "stores it again");
    fprintf(stderr, "bigfilefs: %s\n", d->lasterr);
    pthread_mutex_unlock(&d->elock);
    return -EIO;
}

static int sq_commit(struct bf_fh *fh, const struct bf_commit_req *req, uint64_t *serial)
{
    struct sq_fh *h = FH(fh);
    struct sq_db *d = h->db;
    struct sq_section s = { .me = (int64_t)d->base.session };
    /* Every upload it links is durable before the map points at it. */
    bool uploads = false;
    for (size_t i = 0; i < h->npend && !uploads; i++)
        uploads = h->pend[i].content != 0;
    int e = uploads && d->durable ? sq_blocks_sync(d) : 0;
    /* An upload whose write the first sync after it did not make durable
     * (this one, or another commit's: the kernel reports a write-back
     * error once, to one caller) may not be on the disk: refused. A store
     * is written again at the retry; a staged content cannot be: it is
     * refused until dropped. */
    for (size_t i = 0; e == 0 && d->durable && i < h->npend; i++)
        if (h->pend[i].content && sq_blocks_durable(d, h->pend[i].seq) != 1)
            e = untrusted_upload(d, h->pend[i].staged);
    if (e == 0)
        e = sq_wbegin(d, true);
    if (e == 0) {
        e = commit_section(h, req, &s);
        if (e == 0 && s.nconflicts)
            e = -ESTALE; /* rolled back: nothing committed */
        e = sq_wend(d, true, e);
    }
    if (e == 0)
        *serial = (uint64_t)s.serial;
    tx_clear(h, e < 0); /* a failed commit deletes its uploads */
    if (e == -ESTALE && req->conflict)
        for (size_t i = 0; i < s.nconflicts; i++)
            req->conflict(req->arg, s.conflicts[i]);
    free(s.trunc);
    free(s.conflicts);
    bf_ranges_free(&s.changed);
    return e;
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
    int e = sq_reader_get(d, &r);
    if (e < 0)
        return e;
    sqlite3_stmt *st = r->st[which];
    if (which == R_META)
        sqlite3_bind_text(st, 1, "serial", -1, SQLITE_STATIC);
    else
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
    sq_reader_put(d, r);
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

static int sq_serial_now(bf_db *db, uint64_t *serial)
{
    int e = reader_int64(SQ(db), R_META, 1, 0, 0, serial, "reading the serial");
    return e == -ENXIO ? -EIO : e;
}

/* ---- namespace operations (engine.h) ------------------------------------ */

int sq_list_rows(struct sq_db *d, sqlite3 *c, sqlite3_stmt *st,
                 int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg)
{
    struct bf_fileinfo fi;
    const char *why;
    int rc, e = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((why = row_name_unfit(st))) {
            /* a tampered row: the layer checks the names we can pass on */
            bf_db_log(&d->base, "file %lld left out of the listing: its name %s",
                      (long long)sqlite3_column_int64(st, 0), why);
            continue;
        }
        sq_row_info(st, &fi);
        e = cb(arg, &fi);
        if (e)
            break;
    }
    if (!e && rc != SQLITE_DONE)
        e = sq_fail(d, c, rc, "listing files");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return e;
}

static int sq_list(bf_db *db, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg)
{
    struct sq_db *d = SQ(db);
    struct sq_reader *r;
    int e = sq_reader_get(d, &r);
    if (e < 0)
        return e;
    e = sq_list_rows(d, r->c, r->st[R_LIST], cb, arg);
    sq_reader_put(d, r);
    return e;
}

static int sq_lookup(bf_db *db, const char *name, struct bf_fileinfo *out)
{
    if (!name)
        return -EINVAL;
    return reader_row(SQ(db), R_BYNAME, name, 0, out, NULL);
}

static int sq_getinfo(bf_db *db, uint64_t id, struct bf_fileinfo *out)
{
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    return reader_row(SQ(db), R_BYID, NULL, id, out, NULL);
}

/* Begin a namespace commit (a durable write transaction): *row is its log
 * row, with the next serial, this session, kind, file and the time. */
static int ns_begin(struct sq_db *d, struct bf_commit_rec *row, enum bf_commit_kind kind,
                    uint64_t file)
{
    int64_t s = 0;
    int e = sq_wbegin(d, true);
    if (e == 0 && (e = next_serial(d, &s)) < 0)
        sq_wend(d, true, e);
    memset(row, 0, sizeof(*row));
    row->serial = (uint64_t)s;
    row->session = d->base.session;
    row->kind = kind;
    row->file = file;
    row->time_ns = bf_now_ns();
    row->write.trunc = UINT64_MAX;
    return e;
}

/* End a namespace commit: if e == 0, log `row`, take its serial and commit;
 * else roll back. Returns the final error. */
static int ns_end(struct sq_db *d, const struct bf_commit_rec *row, int e)
{
    /* the state after it of every file it touched */
    if (e == 0 && row->file)
        e = sq_state_write(d, row->file, row->serial);
    if (e == 0 && row->file2)
        e = sq_state_write(d, row->file2, row->serial);
    if (e == 0)
        e = log_row(d, row);
    if (e == 0)
        e = sq_wmeta_set(d, "serial", (int64_t)row->serial);
    return sq_wend(d, true, e);
}

/* Look a name up on the writer (in its transaction): its id, or 0. */
static int w_byname(struct sq_db *d, const char *name, uint64_t *id)
{
    int64_t v;
    int rc = sq_step_int(d->ws[W_BYNAME], name, &v);
    *id = (uint64_t)v;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return 0;
    return sq_fail(d, d->w, rc, "looking a name up");
}

/* Set file id's name (NULL: make it nameless) in commit `row`. Caller
 * holds wlock, in a transaction. */
static int w_setname(struct sq_db *d, uint64_t id, const char *name,
                     const struct bf_commit_rec *row)
{
    sqlite3_stmt *st = d->ws[name ? W_SETNAME : W_NAMENULL];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int k = 2;
    if (name)
        sqlite3_bind_text(st, k++, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, k++, row->time_ns);
    sqlite3_bind_int64(st, k, (int64_t)row->serial);
    int rc = sq_exec(st);
    return rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, name ? "renaming" : "removing a name");
}

static int sq_create(bf_db *db, const char *name, uint32_t blksize, uint64_t size, uint32_t mode,
                     uint32_t uid, uint32_t gid, struct bf_fileinfo *out)
{
    struct sq_db *d = SQ(db);
    struct bf_commit_rec row;
    int e = ns_begin(d, &row, BF_COMMIT_CREATE, 0);
    if (e < 0)
        return e;
    sqlite3_stmt *st = d->ws[W_INSERT];
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, blksize);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)size);
    sqlite3_bind_int64(st, 4, mode & 07777);
    sqlite3_bind_int64(st, 5, uid);
    sqlite3_bind_int64(st, 6, gid);
    sqlite3_bind_int64(st, 7, row.time_ns);
    sqlite3_bind_int64(st, 8, (int64_t)row.serial);
    sqlite3_bind_int64(st, 9, (int64_t)row.session);
    int rc = sq_exec(st);
    if (rc == SQLITE_OK) {
        row.file = (uint64_t)sqlite3_last_insert_rowid(d->w);
        row.name = name;
    } else if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        e = -EEXIST;
    } else {
        e = sq_fail(d, d->w, rc, "creating a file");
    }
    e = ns_end(d, &row, e);
    if (e == 0 && out) {
        memset(out, 0, sizeof(*out));
        out->id = row.file;
        strcpy(out->name, name);
        out->blksize = blksize;
        out->size = size;
        out->mode = mode & 07777;
        out->uid = uid;
        out->gid = gid;
        out->mtime_ns = out->ctime_ns = row.time_ns;
    }
    return e;
}

static int sq_unlink(bf_db *db, const char *name, uint64_t *id)
{
    struct sq_db *d = SQ(db);
    struct bf_commit_rec row;
    int e = ns_begin(d, &row, BF_COMMIT_UNLINK, 0);
    if (e < 0)
        return e;
    e = w_byname(d, name, id);
    if (e == 0 && *id == 0)
        e = -ENOENT;
    row.file = *id;
    row.name = name;
    if (e == 0)
        e = w_setname(d, *id, NULL, &row);
    return ns_end(d, &row, e);
}

static int sq_rename(bf_db *db, const char *from, const char *to, unsigned flags,
                     uint64_t *replaced)
{
    struct sq_db *d = SQ(db);
    struct bf_commit_rec row;
    uint64_t src = 0, dst = 0;
    *replaced = 0;
    int e = ns_begin(d, &row, BF_COMMIT_RENAME, 0);
    if (e < 0)
        return e;
    e = w_byname(d, from, &src);
    if (e == 0)
        e = w_byname(d, to, &dst);
    if (e < 0) {
        /* lookup failed: e is set */
    } else if (!src || (!dst && (flags & BF_RENAME_EXCHANGE))) {
        e = -ENOENT;
    } else if (dst && (flags & BF_RENAME_NOREPLACE)) {
        e = -EEXIST;
    } else if (dst == src) {
        sq_wend(d, true, -ECANCELED); /* the same file: no change, no commit */
        return 0;
    } else if (flags & BF_RENAME_EXCHANGE) {
        /* through NULL: name is UNIQUE */
        e = w_setname(d, src, NULL, &row);
        if (e == 0)
            e = w_setname(d, dst, from, &row);
        if (e == 0)
            e = w_setname(d, src, to, &row);
    } else {
        if (dst)
            e = w_setname(d, dst, NULL, &row);
        if (e == 0)
            e = w_setname(d, src, to, &row);
    }
    row.file = src;
    row.file2 = dst;
    row.name = from;
    row.name2 = to;
    row.rename_flags = flags;
    e = ns_end(d, &row, e);
    if (e == 0 && dst && !(flags & BF_RENAME_EXCHANGE))
        *replaced = dst;
    return e;
}

static int sq_setattr(bf_db *db, uint64_t id, const uint32_t *mode, const uint32_t *uid,
                      const uint32_t *gid, const int64_t *mtime_ns)
{
    struct sq_db *d = SQ(db);
    struct bf_commit_rec row;
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    int e = ns_begin(d, &row, BF_COMMIT_SETATTR, id);
    if (e < 0)
        return e;
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
    sqlite3_bind_int64(st, 6, row.time_ns);
    sqlite3_bind_int64(st, 7, (int64_t)row.serial);
    int rc = sq_exec(st);
    e = rc != SQLITE_OK              ? sq_fail(d, d->w, rc, "setting attributes")
        : sqlite3_changes(d->w) == 0 ? -ENOENT
                                     : 0;
    return ns_end(d, &row, e);
}

static int sq_set_blksize(bf_db *db, uint64_t id, uint32_t blksize)
{
    struct sq_db *d = SQ(db);
    struct bf_commit_rec row;
    bool held = false;
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    int e = ns_begin(d, &row, BF_COMMIT_SETBLKSIZE, id);
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
        if (rc == SQLITE_ROW)
            e = -ENOTEMPTY;
        else if (rc != SQLITE_DONE)
            e = sq_fail(d, d->w, rc, "looking for blocks");
        else if ((e = sq_held(d, id, &held)) == 0 && held)
            e = -EBUSY; /* another session has it open */
    }
    if (e == 0) {
        int64_t v[4] = { (int64_t)id, blksize, row.time_ns, (int64_t)row.serial };
        e = sq_wrun(d, W_SETBLK, 4, v, "setting the block size");
    }
    return ns_end(d, &row, e);
}

/* Delete a nameless file unless a live session holds it (not a commit). */
static int sq_purge(bf_db *db, uint64_t id)
{
    struct sq_db *d = SQ(db);
    if (id > (uint64_t)INT64_MAX)
        return 0;
    return sq_purge_durable(d, id);
}

static int sq_release(bf_db *db, uint64_t id)
{
    struct sq_db *d = SQ(db);
    if (id > (uint64_t)INT64_MAX)
        return 0;
    int e = sq_wbegin(d, false);
    if (e < 0)
        return e;
    int64_t v[2] = { (int64_t)d->base.session, (int64_t)id };
    e = sq_wend(d, false, sq_wrun(d, W_UNHOLD, 2, v, "ending a hold"));
    /* then a nameless file nobody holds goes, durably (a named one: a
     * transaction that writes nothing) */
    return e < 0 ? e : sq_purge_durable(d, id);
}

static int sq_file_open(bf_db *db, uint64_t id, bool hold, struct bf_fh **out)
{
    struct sq_db *d = SQ(db);
    struct bf_fileinfo fi;
    uint64_t serial = 0;
    int e;
    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    if (hold) {
        /* The hold and the row in one transaction: a purge sees the hold,
         * or has deleted the row. */
        int64_t s = 0;
        e = sq_wbegin(d, false);
        if (e < 0)
            return e;
        sqlite3_bind_int64(d->ws[W_FILEROW], 1, (sqlite3_int64)id);
        e = sq_step_row(d, d->w, d->ws[W_FILEROW], &fi);
        int64_t v[2] = { (int64_t)d->base.session, (int64_t)id };
        if (e == 0)
            e = sq_wrun(d, W_HOLD, 2, v, "holding a file");
        if (e == 0)
            e = sq_wmeta_get(d, "serial", &s);
        serial = (uint64_t)s;
        e = sq_wend(d, false, e);
    } else {
        e = reader_row(d, R_BYID, NULL, id, &fi, &serial);
    }
    if (e < 0)
        return e;
    struct sq_fh *h = calloc(1, sizeof(*h));
    if (!h) {
        if (hold)
            sq_release(db, id);
        return -ENOMEM;
    }
    h->base.file.blksize = fi.blksize;
    h->base.file.size = fi.size;
    h->base.file.serial = serial;
    h->db = d;
    h->trunc_to = UINT64_MAX;
    *out = &h->base;
    return 0;
}

/* A view's handle (engine.h, file_open_at): no hold, nothing read (the
 * layer sets what the file was at the serial). */
static int sq_file_open_at(bf_db *db, uint64_t id, uint64_t serial, struct bf_fh **out)
{
    (void)id, (void)serial;
    struct sq_fh *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->db = SQ(db);
    h->trunc_to = UINT64_MAX;
    *out = &h->base;
    return 0;
}

static void sq_file_close(struct bf_fh *fh)
{
    struct sq_fh *h = FH(fh);
    BF_ASSERT(h->npend == 0 && h->ndrop == 0);
    free(h->pend);
    free(h->drop);
    free(h);
}

static void sq_close(bf_db *db)
{
    struct sq_db *d = SQ(db);
    sq_watch_close(d);
    if (d->w && db->session)
        sq_session_end(d);
    /* Readers first: the writer, closing last, checkpoints the WAL. */
    for (int i = 0; i < d->nrd; i++) {
        sq_finalize_all(d->rd[i].st, R_NSTMT);
        sqlite3_close(d->rd[i].c);
    }
    sqlite3_close(d->ck);
    if (d->w) {
        sq_finalize_all(d->ws, W_NSTMT);
        sqlite3_close(d->w);
    }
    sq_blocks_close(d);
    sq_lock_close(d);
    bf_db_fini(db);
    pthread_mutex_destroy(&d->wlock);
    pthread_mutex_destroy(&d->cklock);
    pthread_mutex_destroy(&d->plock);
    pthread_cond_destroy(&d->pcond);
    pthread_mutex_destroy(&d->elock);
    pthread_mutex_destroy(&d->bflock);
    sq_blocks_fini(d);
    bf_counter_destroy(&d->busy);
    if (d->rpath != d->path)
        free(d->rpath);
    free(d->path);
    free(d->bpath);
    free(d);
}

static const struct bf_engine_ops sq_engine_ops = {
    .name = "sqlite",
    .notifies = false,
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
    .release = sq_release,
    .loadblk = sq_loadblk,
    .next_stored = sq_next_stored,
    .stored_blocks = sq_stored_blocks,
    .begin = sq_begin,
    .storeblk = sq_storeblk,
    .truncate = sq_truncate,
    .commit = sq_commit,
    .abort = sq_abort,
    .loadblk_range = sq_loadblk_range,
    .loadblk_send = sq_loadblk_send,
    .loadblk_ahead = sq_loadblk_ahead,
    .stage = sq_stage,
    .unstage = sq_unstage,
    .stage_drop = sq_stage_drop,
    .storeblk_staged = sq_storeblk_staged,
    .changed = sq_changed,
    .change_fd = sq_change_fd,
    .log_read = sq_log_read,
    .serial_now = sq_serial_now,
    .trim = sq_trim,
    .getxattr = sq_getxattr,
    .listxattr = sq_listxattr,
    .setxattr = sq_setxattr,
    .removexattr = sq_removexattr,
    .history = sq_history,
    .history_keep = sq_history_keep,
    .pin = sq_pin,
    .list_at = sq_list_at,
    .lookup_at = sq_lookup_at,
    .getinfo_at = sq_getinfo_at,
    .file_open_at = sq_file_open_at,
    .file_log = sq_file_log,
};

/* ---- open: validation, schema, connections ------------------------------- */

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
    int rc = sq_open_conn(NULL, d->path, SQLITE_OPEN_READONLY, &c);
    if (rc == SQLITE_OK)
        rc = sq_query_int(c, "SELECT count(*) FROM sqlite_schema", &n);
    sqlite3_close(c);
    if (rc == SQLITE_OK)
        return 0;
    /* CANTOPEN: a read-only medium; READONLY(_DIRECTORY): a directory we
     * may not write. Both only matter when the -shm is missing. */
    if (((rc & 0xff) != SQLITE_CANTOPEN && (rc & 0xff) != SQLITE_READONLY) ||
        sq_side_file(d->path, "-shm", &wal)) {
        bf_errf(errbuf, errlen, "%s: cannot read the database: %s", d->path, sqlite3_errstr(rc));
        return sq_errno(rc);
    }
    if (sq_side_file(d->path, "-wal", &wal) && wal > 0) {
        bf_errf(errbuf, errlen,
                "%s: cannot open read-only: %s-wal holds commits not yet in the database file, "
                "and %s-shm cannot be created beside it (read-only directory or medium); open it "
                "once read-write, or from a writable directory",
                d->path, d->path, d->path);
        return -EROFS;
    }
    if (!(d->rpath = sq_path_uri(d->path, "mode=ro&immutable=1"))) {
        d->rpath = d->path;
        bf_errf(errbuf, errlen, "%s: out of memory", d->path);
        return -ENOMEM;
    }
    d->rflags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
    fprintf(stderr,
            "bigfilefs: %s: its directory cannot be written: reading the file as immutable (it "
            "must not change while mounted)\n",
            d->path);
    return 0;
}

/* Open and set up the writer connection and the checkpointer. Writes are
 * made with synchronous=NORMAL, durable ones with FULL (sq_wbegin); with
 * BF_SQLITE_SYNC=normal in the environment (benchmarks) every one with
 * NORMAL. */
static int open_writer(struct sq_db *d, char *errbuf, size_t errlen)
{
    const char *sync = getenv("BF_SQLITE_SYNC");
    d->durable = !(sync && strcmp(sync, "normal") == 0);
    int rc = sq_open_conn(d, d->path, SQLITE_OPEN_READWRITE, &d->w);
    if (rc != SQLITE_OK) {
        bf_errf(errbuf, errlen, "%s: cannot open for writing: %s", d->path, sqlite3_errstr(rc));
        return sq_errno(rc);
    }
    if (sqlite3_db_readonly(d->w, "main") == 1) {
        /* SQLite fell back to reading: the file or its medium is read-only */
        int e = access(d->path, W_OK) < 0 && errno == EACCES ? -EACCES : -EROFS;
        bf_errf(errbuf, errlen, "%s: cannot open for writing (%s); it can be opened read-only",
                d->path, e == -EACCES ? "no write permission" : "a read-only file system");
        return e;
    }
    rc = sqlite3_exec(d->w, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(d->w, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(d->w, "PRAGMA journal_size_limit=" SQ_STR(BF_SQLITE_WAL_LIMIT), NULL,
                          NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sq_query_int(d->w, "PRAGMA page_size", &d->page_size);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(d->w, sq_xattr_table_sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sq_prepare_all(d->w, writer_sql, d->ws, W_NSTMT);
    if (rc != SQLITE_OK) {
        bf_errf(errbuf, errlen, "%s: cannot set up the writer: %s%s", d->path, sqlite3_errmsg(d->w),
                (rc & 0xff) == SQLITE_CANTOPEN ? " (SQLite keeps the -wal and -shm files beside "
                                                 "the database: its directory must be writable)"
                                               : "");
        return sq_errno(rc);
    }
    /* Our hook instead of SQLite's automatic checkpoint (see "The WAL"),
     * and the checkpointer: no busy handler, it never waits for anyone. */
    sqlite3_wal_hook(d->w, wal_hook, d);
    rc = sq_open_conn(NULL, d->path, SQLITE_OPEN_READWRITE, &d->ck);
    if (rc == SQLITE_OK) {
        sqlite3_busy_handler(d->ck, NULL, NULL);
        rc = sqlite3_exec(d->ck,
                          d->durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                          NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        bf_errf(errbuf, errlen, "%s: cannot set up the checkpointer: %s", d->path,
                d->ck ? sqlite3_errmsg(d->ck) : sqlite3_errstr(rc));
        return sq_errno(rc);
    }
    return 0;
}

/* Make sure path holds a bigfilefs database this build can open with
 * flags: create the schema where there is none (with BF_DB_CREATE, never
* read-only). *older: it is of an older schema (a read-only open is
 * refused). */
static int prepare_file(const char *path, unsigned flags, bool *older, char *errbuf, size_t errlen)
{
    enum sq_found found = SQ_FOUND_EMPTY;
    int version = 0;
    int e = sq_validate(path, &found, &version, errbuf, errlen);
    if (e == -ENOENT || (e == 0 && found == SQ_FOUND_EMPTY)) {
        bool missing = e == -ENOENT;
        if (!(flags & BF_DB_CREATE) || (flags & BF_DB_RDONLY)) {
            if (missing) {
                bf_errf(errbuf, errlen, "%s: no such database%s", path,
                        (flags & BF_DB_CREATE) ? " (cannot create it read-only)" : "");
                return -ENOENT;
            }
            bf_errf(errbuf, errlen, "%s: not a bigfilefs database (empty, no bigfilefs schema)%s",
                    path, (flags & BF_DB_RDONLY) ? "" : "; open it with create to make one");
            return -EPROTO;
        }
        e = sq_create_schema(path, errbuf, errlen);
        if (e == 0)
            e = sq_validate(path, &found, NULL, errbuf, errlen);
        if (e == 0 && found == SQ_FOUND_EMPTY) {
            bf_errf(errbuf, errlen, "%s: the schema could not be created", path);
            e = -EIO;
        }
    }
    if (e < 0)
        return e;
    *older = found == SQ_FOUND_OLDER;
    if (*older && (flags & BF_DB_RDONLY)) {
        bf_errf(errbuf, errlen,
                "%s: a bigfilefs database of schema %d (an older bigfilefs): open it read-write "
                "once, which upgrades it to schema %d; a read-only open cannot",
                path, version, BF_SQLITE_SCHEMA_VERSION);
        return -EROFS;
    }
    return 0;
}

int bf_sqlite_open(const char *path, unsigned flags, const struct bf_db_options *opt, bf_db **out,
                   char *errbuf, size_t errlen)
{
    bool older = false;
    *out = NULL;
    bf_errf(errbuf, errlen, "%s", "");
    int e = prepare_file(path, flags, &older, errbuf, errlen);
    if (e < 0)
        return e;

    struct sq_db *d = calloc(1, sizeof(*d));
    /* The block file is beside the database file itself, as SQLite puts
     * its -wal and -shm: a path through a symbolic link names the same
     * pair. */
    char *real = realpath(path, NULL);
    const char *base = real ? real : path;
    size_t blen = strlen(base) + sizeof("-blocks");
    if (!d || !(d->path = strdup(path)) || !(d->bpath = malloc(blen)) ||
        bf_counter_init(&d->busy) < 0) {
        if (d) {
            free(d->path);
            free(d->bpath);
        }
        free(d);
        free(real);
        bf_errf(errbuf, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    if (bf_db_init(&d->base, &sq_engine_ops, flags, opt) < 0) {
        bf_counter_destroy(&d->busy);
        free(d->path);
        free(d->bpath);
        free(d);
        free(real);
        bf_errf(errbuf, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    pthread_mutex_init(&d->wlock, NULL);
    pthread_mutex_init(&d->cklock, NULL);
    pthread_mutex_init(&d->plock, NULL);
    pthread_cond_init(&d->pcond, NULL);
    pthread_mutex_init(&d->elock, NULL);
    pthread_mutex_init(&d->bflock, NULL);
    sq_blocks_init(d);
    snprintf(d->bpath, blen, "%s-blocks", base);
    free(real);
    d->bfd = -1;
    d->dfd = -1;
    d->rpath = d->path;
    d->rflags = SQLITE_OPEN_READONLY;
    d->lockfd = -1;
    d->data_version = -1;
    d->inotify = -1;
    /* The file's lock first: nothing is changed in a database another
     * session has to itself (the upgrade included). */
    e = sq_lock_open(d, flags, errbuf, errlen);
    if (e == 0 && older)
        e = sq_upgrade(path, errbuf, errlen);
    if (e == 0)
        e = (flags & BF_DB_RDONLY) ? choose_readers(d, errbuf, errlen)
                                   : open_writer(d, errbuf, errlen);
    if (e == 0 && !(flags & BF_DB_RDONLY))
        e = sq_session_register(d, errbuf, errlen);
    if (e == 0 && (flags & BF_DB_RDONLY)) {
        e = sq_serial_now(&d->base, &d->base.start_serial);
        if (e < 0)
            bf_errf(errbuf, errlen, "%s: cannot read the database", path);
    }
    /* The start of a session cleans up after dead ones (COHERENCE.md 5.5). */
    if (e == 0 && !(flags & BF_DB_RDONLY) &&
        (e = sq_trim(&d->base, d->base.start_serial, true)) < 0)
        bf_errf(errbuf, errlen, "%s: cannot clean up the database: %s", path, strerror(-e));
    if (e < 0) {
        bf_db_close(&d->base);
        return e;
    }
    /* One reader now, so that a file that cannot be read fails here. */
    struct sq_reader *r;
    e = sq_reader_get(d, &r);
    if (e < 0) {
        bf_errf(errbuf, errlen, "%s: cannot open a reader connection", path);
        bf_db_close(&d->base);
        return e;
    }
    sq_reader_put(d, r);
    *out = &d->base;
    return 0;
}
