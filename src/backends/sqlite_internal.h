/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: what the SQLite engine's files share (private to
 * the sqlite*.c files).
 *
 *   sqlite.c          connections, the reader pool, the WAL, blocks and
 *                     versions, the commit section, namespace commits, open
 *                     and close;
 *   sqlite_schema.c   looking at a file before using it, creating the
 *                     schema, the upgrade of schema 1;
 *   sqlite_session.c  the database file's locks (exclusive or shared, and
 *                     the sessions' liveness), sessions, holds, purges, the
 *                     watcher's reads and the housekeeping;
 *   sqlite_blocks.c   the block file (DB + "-blocks"): the contents the
 *                     extents table maps.
 *   sqlite_history.c  point-in-time views: file states, pins, retention,
 *                     reading at a serial, a file's log, the history's
 *                     steps of the housekeeping.
 *
 * The schema, the locks and the rules are written at the top of sqlite.c.
 */
#ifndef BIGFILEFS_BACKENDS_SQLITE_INTERNAL_H
#define BIGFILEFS_BACKENDS_SQLITE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "backends/engine.h"
#include "backends/sqlite.h"

#define SQ_READERS_MAX 16
#define SQ_BUSY_TIMEOUT 5000 /* ms */

/* The columns of a files row, as sq_row_info decodes them (in this order). */
#define SQ_FILE_ATTR_COLS "name,blksize,size,mode,uid,gid,mtime_ns,ctime_ns"
#define SQ_FILE_COLS "id," SQ_FILE_ATTR_COLS
/* The columns of a file_states row in the order of SQ_FILE_COLS (ctime: as
 * mtime, which is all a state keeps). */
#define SQ_STATE_COLS "file,name,blksize,size,mode,uid,gid,mtime_ns,mtime_ns"

/* Statements of a reader connection. */
enum {
    R_BEGIN,
    R_COMMIT,
    R_VERSION,    /* the newest version of (file, blk) with serial <= at */
    R_META,       /* a meta value */
    R_BYNAME,     /* file row by name */
    R_BYID,       /* file row by id */
    R_LIST,       /* named files in name order */
    R_NEXTBLK,    /* smallest stored blk >= n of a file (current versions) */
    R_NBLOCKS,    /* number of stored blocks of a file (current versions) */
    R_SESSIONS,   /* id, applied of every session */
    R_LOGMIN,     /* the oldest log row */
    R_HASOLD,     /* is a version superseded at or before n kept */
    R_HASGARBAGE, /* is there content for the housekeeping to delete */
    R_EXTENT,     /* off, len, gen of a content's extent */
    R_UPLOAD_SEQ, /* the write number of a session's upload */
    R_NAMELESS,   /* nameless files whose name went at or before a serial */
    R_STATE_AT,   /* a file's state at a serial (SQ_STATE_COLS) */
    R_BYNAME_AT,  /* the file that had a name at a serial */
    R_LIST_AT,    /* the files that had a name at a serial, in name order */
    R_FILELOG,    /* a file's commits, newest first, with its states */
    R_PINS,       /* each session's lowest pinned serial */
    R_NSTMT
};

/* Statements of the writer connection. */
enum {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_SYNC_FULL,
    W_SYNC_NORMAL,
    W_GETMETA,
    W_SETMETA,
    W_UPLOAD,     /* a content row (its data in the block file) */
    W_UPLOADED,   /* ... owned by its session until linked */
    W_UPLOAD_SEQ, /* an owned upload's write number (in `since`) */
    W_REUSE_FIND, /* garbage content of a size, to upload into */
    W_REUSE_DATA, /* ... a blob one's data moves to the block file */
    W_REUSE_OWN,  /* ... owned by the uploading session */
    W_LINKED,     /* the upload is linked: no longer an upload */
    W_GIVEUP,     /* an upload becomes garbage */
    W_DELCONTENT, /* delete a content row */
    W_DELLEGACY,  /* delete a schema-1 block row */
    W_GARBAGE,    /* make a content garbage (reused, or the housekeeping deletes it) */
    W_FILESTATE,  /* size and the serials of a file */
    W_CUR,        /* the current version of (file, blk) */
    W_CUR_FROM,   /* the current versions of a file's blocks >= n */
    W_SUPERSEDE,  /* mark a version superseded */
    W_DELVERSION, /* delete a version */
    W_ADDVERSION, /* add a version */
    W_SETWRITE,   /* a file's state after a write commit */
    W_LOG,        /* a commit-log row */
    W_INSERT,     /* create a file */
    W_BYNAME,     /* id of a named file */
    W_BYID,       /* size of a file by id */
    W_NAMENULL,   /* remove a name: the file is nameless until purged */
    W_SETNAME,    /* rename */
    W_SETATTR,
    W_SETBLK,
    W_HASBLK,  /* does a file have any stored block */
    W_FILEROW, /* file row by id (file_open with a hold) */
    W_HOLD,
    W_UNHOLD,
    W_HOLDERS,       /* the sessions holding a file */
    W_NAMELESS,      /* is a file nameless */
    W_PURGE_GARBAGE, /* a purged file's contents to the housekeeping */
    W_PURGE_VERSIONS,
    W_PURGE_HOLDS,
    W_PURGE_FILE,
    W_PURGE_XATTRS,
    W_OTHERS, /* the other sessions' ids */
    W_SESSION_ADD,
    W_SESSION_APPLIED,
    W_SESSION_DEL,
    W_SESSION_ORPHANS, /* a session's uploads to the housekeeping */
    W_SESSION_UNHOLD,  /* drop a session's holds */
    W_LOG_TRIM,        /* delete log rows <= n */
    W_OLD,             /* versions superseded at or before n */
    W_GARBAGE_LIST,    /* contents handed to the housekeeping */
    W_EXT_GET,         /* off, len of a content's extent */
    W_EXT_ADD,         /* a new extent */
    W_EXT_BUMP,        /* a reused extent's generation */
    W_EXT_DEL,         /* delete an extent */
    W_FREE_TAKE,       /* a free extent of a size */
    W_FREE_DEL,        /* ... taken */
    W_FREE_ADD,        /* an extent punched out becomes free */
    W_STATE,           /* a file's state after a commit (from its files row) */
    W_LASTSTATE,       /* the serial of a file's newest state */
    W_PURGE_STATES,
    W_PIN,
    W_UNPIN,
    W_SESSION_UNPIN, /* drop a session's pins */
    W_PINS,          /* each session's lowest pinned serial */
    W_LOG_AFTER,     /* serial, time of the log rows after a serial */
    W_STATES_NEXT,   /* states with serials in a range, in serial order */
    W_STATES_TRIM,   /* delete a file's states before a serial */
    W_NSTMT
};

struct sq_reader {
    sqlite3 *c;
    sqlite3_stmt *st[R_NSTMT];
    int busy;
};

/* Statements of the watcher's connection (sqlite_session.c). */
enum {
    V_DATA_VERSION,
    V_BEGIN,
    V_COMMIT,
    V_META,
    V_LOG,
    V_NSTMT
};

struct sq_db {
    bf_db base;
    char *path;
    char *rpath; /* what readers open: path, or an immutable URI (see choose_readers) */
    int rflags;  /* and how: SQLITE_OPEN_READONLY, | SQLITE_OPEN_URI for the URI */

    pthread_mutex_t wlock;
    sqlite3 *w; /* NULL when read-only */
    sqlite3_stmt *ws[W_NSTMT];
    bool durable; /* commits with synchronous=FULL (not BF_SQLITE_SYNC=normal) */

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

    /* sqlite_session.c */
    int lockfd;    /* the database file: flock, and the session's liveness lock; -1: none */
    dev_t lockdev; /* its file */
    ino_t lockino;
    sqlite3 *wc; /* the watcher's connection (the watcher thread only; opened lazily) */
    sqlite3_stmt *vs[V_NSTMT];
    int64_t data_version;      /* the last one the watcher saw (-1: none yet) */
    int inotify;               /* the watcher\'s: IN_MODIFY of the -wal; -1: none */
    uint64_t applied_recorded; /* the applied serial in our sessions row (wlock) */

    /* sqlite_blocks.c */
    char *bpath;            /* the block file: path + "-blocks" */
    pthread_mutex_t bflock; /* a leaf: guards opening bfd and dfd */
    int bfd;                /* -1 until its first use */
    /* Direct reads (sq_blocks_read_fd): the file opened O_DIRECT, read-only
     * (-1 until the first read that could use it, unless the session's
     * options read buffered only; SQ_DFD_NONE: never, because the file
     * system or the kernel cannot), and the alignment its offsets, lengths
     * and buffers need. */
    int dfd;
    uint32_t dio_align;
    bool dio_refused; /* a direct read was refused: none since (atomic) */
    /* Which written bytes a sync made durable (sq_blocks_write_begin):
     * writes hold sync_rw shared from their sequence number to the end of
     * their pwrite, a sync holds it exclusive; syncmx (a leaf) guards the
     * rest. */
    pthread_rwlock_t sync_rw;
    pthread_mutex_t syncmx;
    uint64_t wseq;       /* the last write's sequence number (atomic) */
    uint64_t synced_seq; /* writes <= it were covered by a sync (syncmx) */
    uint64_t (*failed)[2]; /* writes in (lo, hi] were covered by one that failed */
    size_t nfailed, capfailed;
    uint64_t distrust_upto; /* writes <= it are distrusted (out of memory for a range) */
    /* Ranges of the file being sent (sq_blocks_send_begin): a write or a
     * punch that overlaps one waits on sendcv. sendmx is a leaf. */
    pthread_mutex_t sendmx;
    pthread_cond_t sendcv;
    int64_t (*sending)[2]; /* {off, len} */
    size_t nsending, capsending;

    /* bf_sqlite_set_load_hook, bf_sqlite_set_sync_hook (tests) */
    void (*load_hook)(void *arg);
    void *load_hook_arg;
    int (*sync_hook)(void *arg);
    void *sync_hook_arg;
    uint32_t dio_align_test; /* bf_sqlite_set_dio_align (tests): 0, or the alignment to assume */
};

static inline struct sq_db *SQ(bf_db *db)
{
    return (struct sq_db *)db;
}

/* ---- sqlite.c ------------------------------------------------------------- */

/* Record and log a SQLite failure of `what` on connection c; return the
 * errno for rc. */
int sq_fail(struct sq_db *d, sqlite3 *c, int rc, const char *what);

/* The errno for a SQLite result code. */
int sq_errno(int rc);

/* Open a connection; with d, one of d's (its busy handler counts waits),
 * else a short-lived one (a plain busy timeout). */
int sq_open_conn(struct sq_db *d, const char *path, int flags, sqlite3 **out);
int sq_prepare_all(sqlite3 *c, const char *const *sql, sqlite3_stmt **st, int n);
void sq_finalize_all(sqlite3_stmt **st, int n);

/* Run a one-row integer query; *out gets the first column (0 if no row). */
int sq_query_int(sqlite3 *c, const char *sql, int64_t *out);

/* A reader connection from the pool, and back. */
int sq_reader_get(struct sq_db *d, struct sq_reader **out);
void sq_reader_put(struct sq_db *d, struct sq_reader *r);

/* Step a statement that returns no row (or whose row is not needed), then
 * reset it and clear its bindings. Returns SQLITE_OK or the error. */
int sq_exec(sqlite3_stmt *st);
int sq_wexec(struct sq_db *d, int which);

/* A write transaction on the writer: take wlock, then (durable: with
 * synchronous=FULL unless BF_SQLITE_SYNC=normal) BEGIN IMMEDIATE; end it:
 * COMMIT if e == 0, else roll back; release wlock (after a durable one,
 * bound the WAL). Returns the final error. */
int sq_wbegin(struct sq_db *d, bool durable);
int sq_wend(struct sq_db *d, bool durable, int e);

/* Bind integer parameters 1..n of writer statement `which` to v and run it
 * (its rows are not wanted); `what` names the work in the log. */
int sq_wrun(struct sq_db *d, int which, int n, const int64_t *v, const char *what);

/* Bind text parameter 1 of st to text (if not NULL), step it for one
 * integer: *v (0 when there is no row, or NULL), reset it. Returns
 * SQLITE_ROW, SQLITE_DONE or the error. */
int sq_step_int(sqlite3_stmt *st, const char *text, int64_t *v);

/* Decode a row of the SQ_FILE_COLS columns into `fi`. */
void sq_row_info(sqlite3_stmt *st, struct bf_fileinfo *fi);

/* Step statement st (bound) of connection c for one file row into *out
 * (if not NULL): 0, -ENOENT, or the failure; resets st. */
int sq_step_row(struct sq_db *d, sqlite3 *c, sqlite3_stmt *st, struct bf_fileinfo *out);

/* Step statement st (bound) of connection c through its rows of the
 * SQ_FILE_COLS columns, calling cb for each (a row whose name cannot be
 * passed on is left out, with a log line); a nonzero cb return stops and
 * is returned. Resets st. */
int sq_list_rows(struct sq_db *d, sqlite3 *c, sqlite3_stmt *st,
                 int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg);

/* A meta value on reader r (in its read transaction, if one is open). */
int sq_reader_meta(struct sq_db *d, struct sq_reader *r, const char *key, int64_t *v);

/* Read/write a meta value on the writer, in its transaction. */
int sq_wmeta_get(struct sq_db *d, const char *key, int64_t *v);
int sq_wmeta_set(struct sq_db *d, const char *key, int64_t v);

/* Delete content id (> 0: contents; < 0: a schema-1 block) on the writer,
 * in its transaction, with its extent if it has one: ext gets its {off,
 * len, gen} (len 0: none), to punch out once the transaction has
 * committed, then give to the free extents (sq_free_extents). */
int sq_delete_content(struct sq_db *d, int64_t id, int64_t ext[3]);

/* In a writer transaction: the punched-out extents ext[0..n) ({off, len,
 * gen}) become free, for new uploads of their size (sqlite.c, "The block
 * file"). */
int sq_free_extents(struct sq_db *d, const int64_t (*ext)[3], size_t n);

/* Make content id (of `bytes` bytes) garbage, on the writer, in its
 * transaction: the next upload of that size reuses it, or the
 * housekeeping deletes it after SQ_GARBAGE_KEEP_NS (at once when it is a
 * schema-1 block). */
int sq_garbage(struct sq_db *d, int64_t id, uint32_t bytes);

/* Garbage is kept this long for uploads to reuse before it is deleted. */
#define SQ_GARBAGE_KEEP_NS (10 * 1000000000LL)

/* ---- sqlite_schema.c ------------------------------------------------------ */

/* Outcome of looking at a file before using it. */
enum sq_found {
    SQ_FOUND_OURS,  /* a bigfilefs database of this schema */
    SQ_FOUND_OLDER, /* a bigfilefs database of an older schema: a read-write open upgrades it */
    SQ_FOUND_EMPTY, /* missing, zero bytes, or SQLite empty in every respect */
};

/* Look at the file at path without modifying it, nor creating anything
 * beside it (see sqlite.h). Refusals get a message in errbuf. -ENOENT
 * (*found = SQ_FOUND_EMPTY) when it is missing. *version (if not NULL)
 * gets a bigfilefs database's schema version. */
int sq_validate(const char *path, enum sq_found *found, int *version, char *errbuf, size_t errlen);

/* Create the schema in a missing, zero-length or empty SQLite database. */
int sq_create_schema(const char *path, char *errbuf, size_t errlen);

/* Upgrade a database of schema 1 or 2 in place to ours (1 -> 2 -> 3), in
 * one transaction (a database another session upgraded meanwhile is left
 * alone). On failure it is left as it was and errbuf says why. */
int sq_upgrade(const char *path, char *errbuf, size_t errlen);

/* A "file:" URI for path with the query `query` (malloc'd; NULL when out of
 * memory). */
char *sq_path_uri(const char *path, const char *query);

/* Whether path's side file (suffix "-wal", "-shm" or "-journal") exists;
 * *size gets its size (0 if it does not). */
bool sq_side_file(const char *path, const char *suffix, off_t *size);

/* ---- sqlite_session.c ------------------------------------------------------ */

/* Open the database file for its locks and take flock (shared with
 * BF_DB_SHARED, else exclusive): -EBUSY when another session's lock is in
 * the way (errbuf says so). d->lockfd. */
int sq_lock_open(struct sq_db *d, unsigned flags, char *errbuf, size_t errlen);

/* Release the locks and the descriptor (see "Descriptors" in
 * sqlite_session.c). */
void sq_lock_close(struct sq_db *d);

/* Register the session (a read-write one): its row, its liveness lock;
 * db->session, db->start_serial. */
int sq_session_register(struct sq_db *d, char *errbuf, size_t errlen);

/* End the session's registration (close): its uploads go to the
 * housekeeping, its holds and row go, its liveness lock is released. */
void sq_session_end(struct sq_db *d);

/* Whether session id is live (ours is). */
bool sq_session_alive(struct sq_db *d, uint64_t id);

/* In a writer transaction: whether no other live session exists. */
int sq_alone(struct sq_db *d, bool *alone);

/* In a writer transaction: whether a live session holds file id. */
int sq_held(struct sq_db *d, uint64_t id, bool *held);

/* In a writer transaction: purge nameless file id unless a live session
 * holds it or the history keeps it. */
int sq_purge_unheld(struct sq_db *d, uint64_t id);

/* sq_purge_unheld in a durable write transaction of its own (takes the
 * writer): a purge makes the file's contents garbage, which an upload may
 * overwrite at once, so it must not come back after a crash of the
 * machine (sqlite.c, "The block file"). With nothing to purge it writes
 * nothing, and costs no fsync. */
int sq_purge_durable(struct sq_db *d, uint64_t id);

/* The engine operations of the same names (engine.h). */
int sq_changed(bf_db *db, bool *yes);
int sq_change_fd(bf_db *db);
int sq_log_read(bf_db *db, uint64_t after, size_t max,
                int (*fn)(void *arg, const struct bf_commit_rec *rec), void *arg, uint64_t *current,
                uint64_t *trimmed);
int sq_trim(bf_db *db, uint64_t applied, bool all);

/* ---- sqlite_history.c ------------------------------------------------------ */

/* On the writer, in a commit's transaction: record file id's state after
 * commit `serial` (a copy of its files row). */
int sq_state_write(struct sq_db *d, uint64_t id, uint64_t serial);

/* On the writer, in a transaction: advance history_from as the
 * housekeeping would now, then *keep = whether nameless file id must stay
 * for the history (its name went after history_from). */
int sq_history_keeps(struct sq_db *d, uint64_t id, bool *keep);

/* On the writer, in a transaction: *none = whether the database keeps no
 * history now (retention 0 and no live pin), so that a commit of a session
 * alone may delete what it replaces at once (sqlite.c). */
int sq_history_none(struct sq_db *d, bool *none);

/* The housekeeping's history steps, each a write transaction of its own
 * (or several): advance history_from (*from = its value after; with
 * `all`, as far as it goes, else over a batch of log rows); trim the file
 * states up to `from` (*more: a batch is left). */
int sq_history_advance(struct sq_db *d, bool all, uint64_t *from);
int sq_history_trim_states(struct sq_db *d, uint64_t from, bool *more);

/* The engine's history operations (engine.h). */
int sq_history(bf_db *db, struct bf_history *out);
int sq_history_keep(bf_db *db, int64_t keep_ns);
int sq_pin(bf_db *db, uint64_t serial, bool on);
int sq_list_at(bf_db *db, uint64_t serial, int (*cb)(void *arg, const struct bf_fileinfo *fi),
               void *arg);
int sq_lookup_at(bf_db *db, uint64_t serial, const char *name, struct bf_fileinfo *out);
int sq_getinfo_at(bf_db *db, uint64_t serial, uint64_t id, struct bf_fileinfo *out);
int sq_file_log(bf_db *db, uint64_t id, uint64_t before, size_t max,
                int (*cb)(void *arg, const struct bf_log_entry *e), void *arg);

/* Close the watcher's connection and descriptor. */
void sq_watch_close(struct sq_db *d);

/* ---- sqlite_blocks.c ------------------------------------------------------- */

/* How sq_blocks_fd opens the block file. */
enum sq_blocks_how {
    SQ_BLOCKS_OPEN, /* it exists */
    SQ_BLOCKS_NEW,  /* the first extent of the database is being made (its
                     * 'blocks_end' is 0, in the writer's transaction: no
                     * extent exists, so no session reads the file): created
                     * when missing, else emptied (a stale one, left by a
                     * deleted database of the same name) */
};

/* The block file's descriptor in *fd, opened at the first call (d->bflock):
 * read-write for a read-write session, else read-only; `how` says what
 * may be made or emptied. A missing file, or one that cannot be opened or
 * emptied: -EIO, with the last error saying so. */
int sq_blocks_fd(struct sq_db *d, enum sq_blocks_how how, int *fd);

/* dfd when direct reads are out of the question. */
#define SQ_DFD_NONE (-2)

/* The descriptor to read [off, off + len) of the block file with, into
 * buf (NULL: into pages the kernel allocates, a send's splice), in *fd;
 * *direct tells whether it is the O_DIRECT one.
 *
 * Reads of data the OS does not cache go around its cache: what a
 * bigfile's page cache (or the daemon's) will hold is not worth a second
 * copy in the block file's, which for data bigger than RAM only doubles
 * what the kernel has to reclaim. So the O_DIRECT descriptor is given
 * unless the OS caches every page of the range (cachestat(2)), provided
 * the offset, the length and buf are aligned as the file system needs
 * (statx's STATX_DIOALIGN, else 4 KiB) and the session's options allow it
 * (bf_db_options.buffered_reads); else the buffered one (sq_blocks_fd).
 * A range cached in part is read directly too: a buffered read would
 * make the kernel's readahead of the block file cache what follows, and
 * the next range would be read buffered in turn. Where the kernel cannot
 * say what it caches (cachestat(2): before Linux 6.5, or a file the
 * process neither owns nor may write), or the file system cannot open the
 * file O_DIRECT, every read is buffered (said once in the log).
 *
 * Both descriptors read the same bytes: a direct read first writes back
 * the dirty pages of its range, and the rules of "The block file"
 * (sqlite.c) keep a read off an extent being rewritten either way. The
 * O_DIRECT descriptor is opened at its first use (d->bflock) and checked
 * to be the same file as the buffered one. -EIO as sq_blocks_fd. */
int sq_blocks_read_fd(struct sq_db *d, int64_t off, uint32_t len, const void *buf, int *fd,
                      bool *direct);

/* A direct read of an aligned range was refused (EINVAL: an alignment the
 * file system did not report): sq_blocks_read_fd gives the buffered
 * descriptor from now on (said once in the log). Any thread. */
void sq_blocks_dio_refused(struct sq_db *d);

/* len bytes at off in the block file, read or written whole (pread,
 * pwrite; no lock; a read with the descriptor sq_blocks_read_fd gives,
 * buffered again if a direct read is refused). Read: -EIO (the file is shorter, or failed); write:
 * -ENOSPC (no room, or a quota or file-size limit), or -EIO. Each failure
 * is the last error, and logged. */
int sq_blocks_read(struct sq_db *d, int64_t off, void *buf, uint32_t len);
int sq_blocks_write(struct sq_db *d, int64_t off, const void *buf, uint32_t len);

/* A write of the block file is numbered: sq_blocks_write_begin gives it
 * its sequence number and must be followed, once its pwrite has returned
 * (or failed), by sq_blocks_write_end; no sync runs in between. Its fate
 * is decided by the first sync after it: if that one succeeds, its bytes
 * are durable; if it fails, they may be lost (the kernel reports a
 * write-back error once, to one fdatasync, and may drop the pages), and
 * no later success changes that. Any thread; not with wlock held (a sync
 * waits for the writes, and a commit takes wlock after its sync). */
uint64_t sq_blocks_write_begin(struct sq_db *d);
void sq_blocks_write_end(struct sq_db *d);

/* fdatasync(2) the block file, deciding every write numbered before it.
 * -EIO if it failed (the last error and the log say how: ENOSPC for a
 * full disk, EIO...). */
int sq_blocks_sync(struct sq_db *d);

/* Whether write `seq`'s bytes are durable: 1; 0: a failed sync covered
 * it (they may be lost); -EAGAIN: no sync covered it yet. */
int sq_blocks_durable(struct sq_db *d, uint64_t seq);

/* Bytes [off, off + len) of the file are being sent (loadblk_send:
 * their page cache is passed on by reference, so the bytes must not change
 * until the reply is made): from sq_blocks_send_begin to
 * sq_blocks_send_end, a write (sq_blocks_write) or a punch of any of them
 * waits. A sender checks its extent after begin: an extent's reuse or
 * deletion commits before its write or punch, so either the check sees
 * the change or the write waits for the send. Any thread, no lock needed
 * or taken but a leaf. Begin: 0 or -ENOMEM. */
int sq_blocks_send_begin(struct sq_db *d, int64_t off, uint32_t len);
void sq_blocks_send_end(struct sq_db *d, int64_t off, uint32_t len);

/* Set up and tear down the above (with the sq_db). */
void sq_blocks_init(struct sq_db *d);
void sq_blocks_fini(struct sq_db *d);

/* Give the space of extents ext[0..n) ({off, len, gen}: the gen is not
 * used) back to the file system (punched out, the file's size kept); a
 * failure is logged (the first), that space stays taken. Called once their
 * rows' deletion has committed. */
void sq_blocks_punch(struct sq_db *d, const int64_t (*ext)[3], size_t n);

/* Close the descriptor. */
void sq_blocks_close(struct sq_db *d);

/* Extended attributes (sqlite_xattr.c): the engine's ops (engine.h), and
 * the statement that creates their table if absent, run by a read-write
 * session before it prepares its writer statements. */
extern const char sq_xattr_table_sql[];
int sq_getxattr(bf_db *db, uint64_t id, const char *name, void **value, size_t *len);
int sq_listxattr(bf_db *db, uint64_t id, char **names, size_t *len);
int sq_setxattr(bf_db *db, uint64_t id, const char *name, const void *value, size_t len,
                unsigned flags);
int sq_removexattr(bf_db *db, uint64_t id, const char *name);

#endif /* BIGFILEFS_BACKENDS_SQLITE_INTERNAL_H */
