/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: a database of bigfiles.
 *
 * A backend instance (bf_db) holds many bigfiles: their metadata (name,
 * block size, committed size, mode, owner, times) and their blocks. The
 * namespace operations here (create, unlink, rename, setattr, set_blksize)
 * are committed at once; a file's content changes only through the store
 * transaction of its bf_file (src/core/bigfile.h), which the core drives at
 * writeout.
 *
 * Backends (storage engines behind one generic layer, engine.h):
 *   "memory"  memory.h — in-process, for tests and benchmarks, with fault
 *             injection and latency;
 *   "sqlite"  sqlite.h — one embedded SQLite database file, the default;
 *   "pg"      pg.h — a PostgreSQL database, shared by many machines (built
 *             when configure finds libpq);
 *   "proto"   proto.h — a block server, a program of the user's that
 *             speaks man/bigfilefs-protocol.7 ("exec:COMMAND", "unix:PATH").
 *
 * Thread safety: every function may be called from any thread, concurrently
 * (a backend serializes internally what must be). Every function returns 0
 * or a negative errno value.
 *
 * Sessions (docs/COHERENCE.md): each bf_db is one *session* on its database
 * — one mount. Several may share a database (BF_DB_SHARED on every one of
 * them; a database opened without it is locked for that bf_db alone), in
 * several processes, or in one (two bf_db on one SQLite path, or on one
 * "mem:LABEL"). Every commit of the database — a writeout and every
 * namespace operation — gets a *serial*, strictly increasing in commit
 * order, and a row in the database's commit log; a session learns of every
 * commit through its watcher (bf_db_watch). A bf_file reads snapshots
 * (loadblk as of a serial) and its commit refuses to overwrite a block, a
 * size or a file that another session changed after the version the change
 * was based on (bigfile.h, commit).
 *
 * Unlinked-but-open files: bf_db_unlink() removes the name at once; the
 * blocks of a file that still has bf_file objects open in any live session
 * stay readable through them, and are deleted when the last session that
 * has it open closes it (or, after a crash, when another session notices
 * the dead one). A read-only session does not hold the files it opens (it
 * writes nothing): another session may delete them under it.
 *
 * Names: a file name is 1 to BF_NAME_MAX bytes, without '/', and neither "."
 * nor "..". A row of a tampered database whose name is not one is never
 * listed nor found by name; each listing that skips it logs one line.
 */
#ifndef BIGFILEFS_BACKENDS_BACKEND_H
#define BIGFILEFS_BACKENDS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../core/bigfile.h"

#define BF_NAME_MAX 255 /* bytes of a file name, without the NUL */

typedef struct bf_db bf_db;

/* Metadata of one bigfile. */
struct bf_fileinfo {
    uint64_t id; /* stable, never reused within a database, >= 1 */
    char name[BF_NAME_MAX + 1];
    uint32_t blksize;
    uint64_t size; /* committed size, bytes */
    uint32_t mode; /* permission bits only (07777) */
    uint32_t uid, gid;
    int64_t mtime_ns; /* last commit of content or size */
    int64_t ctime_ns; /* last change of metadata */
};

/* Flags for bf_db_open. */
enum {
    BF_DB_RDONLY = 1 << 0, /* never write; namespace ops and writeout get -EROFS */
    BF_DB_CREATE = 1 << 1, /* create the database if it does not exist */
    /* Share the database with other sessions that open it with this flag
     * too (several daemons: -o shared). Without it the session has the
     * database to itself: an open finds it in use by another session (of
     * any kind) and fails with -EBUSY, and while it is open no other
     * session opens it. */
    BF_DB_SHARED = 1 << 2,
};

/* Flags for bf_db_rename (the values of renameat2's RENAME_*). */
enum {
    BF_RENAME_NOREPLACE = 1 << 0,
    BF_RENAME_EXCHANGE = 1 << 1,
};

/* Options of a session (bf_db_open_ex; NULL: every default). */
struct bf_db_options {
    /* How often the watcher looks for commits of other sessions where the
     * engine must poll (SQLite: PRAGMA data_version), in ms, while commits
     * come; when none has come for a while it looks less often, down to
     * every BF_WATCH_IDLE_FACTOR times this (so an idle watcher costs next
     * to no CPU, and the first commit after a quiet spell is seen within
     * that); 0: the default, BF_WATCH_INTERVAL_MS. The memory engine is
     * notified and does not poll. */
    unsigned watch_interval_ms;
    /* Commit-log rows kept past the slowest live session: beyond that the
     * log is trimmed anyway, and a session that lagged so far gets a
     * BF_COMMIT_RESET; 0: the default, BF_LOG_KEEP. */
    uint64_t log_keep;
    /* Block servers (exec:, unix:): how long a server may take to answer
     * one request, in ms, before it counts as hung (the request fails with
     * -EIO, an exec: server is killed and started again); 0: the default,
     * BF_PROTO_TIMEOUT_MS. Other engines ignore it. */
    unsigned timeout_ms;
    /* Staging (core/bigfile.h, stage: the uncommitted blocks the core
     * spills past its dirty budget): an engine that can stage keeps them
     * itself (SQLite: as uploads in the database, linked by the commit
     * without a copy; memory: aside in memory); for an engine that cannot,
     * the layer keeps them in a spill file of its own: an unnamed
     * temporary file (O_TMPFILE: it goes with the process, whatever
     * happens) in spill_dir (NULL: $TMPDIR, else /var/tmp — a disk, not
     * /tmp, which may be memory). spill_file: use that file even when the
     * engine can stage (for tests). */
    const char *spill_dir;
    bool spill_file;
    /* Reads copied only: the files' ops leave loadblk_send and
     * loadblk_ahead out (core/bigfile.h), as for an engine without them.
     * For a daemon whose READ answers cannot be spliced; always so for a
     * BF_DB_SHARED session (another process may rewrite the bytes of a
     * block being sent). */
    bool copy_reads;
    /* Every read of a store's own files through the OS cache. Unset, the
     * SQLite engine reads data the OS does not cache with O_DIRECT
     * (sqlite_internal.h, sq_blocks_read_fd): the bigfile's page cache
     * keeps what is read, and a second copy in the block file's would
     * only double what the kernel has to reclaim. Other engines ignore
     * it. */
    bool buffered_reads;
};

#define BF_PROTO_TIMEOUT_MS 30000
#define BF_WATCH_INTERVAL_MS 2
#define BF_WATCH_IDLE_FACTOR 16
#define BF_LOG_KEEP 100000

/* Open a database (a session on it). `spec` is "mem:" for a fresh private
 * memory database, "mem:LABEL" for the memory database of that label in
 * this process (created by the first session that opens it, freed when
 * the last one closes), "pg:CONNINFO" for a PostgreSQL database (libpq's
 * connection string; -EPROTONOSUPPORT when built without it),
 * "exec:COMMAND" or "unix:PATH" for a block server (proto.h: it is
 * started, or connected to, now; BF_DB_CREATE means nothing to it,
 * BF_DB_SHARED is refused with -EINVAL, a server of another protocol
 * version with -EPROTONOSUPPORT), else a path to a SQLite file. On failure
 * returns a
 * negative errno and, if errbuf is not NULL, writes a one-line
 * human-readable reason to errbuf (e.g. "x.db: not a bigfilefs database (no
 * bigfilefs schema)"). Errors: -ENOENT (missing and no BF_DB_CREATE),
 * -EBUSY (in use by another session, and not both shared: "DB: in use by
 * another bigfilefs (mount every daemon with -o shared to share it)"),
 * -EPROTO (not a bigfilefs database, or a corrupt one: never modified),
 * -EPROTONOSUPPORT (a newer schema version: never modified), -EROFS (also:
 * an older schema, which only a read-write open upgrades), -EACCES, -EIO,
 * -ENOMEM, -EINVAL (bad flags or options). A failed open leaves the
 * database as it was. */
int bf_db_open_ex(const char *spec, unsigned flags, const struct bf_db_options *opt, bf_db **out,
                  char *errbuf, size_t errlen);

/* Write spec as it may be shown — in the mount table, in messages — into
 * buf[len] (always terminated, cut if too long): a "pg:" spec without its
 * password (bf_pg_redact; "pg:" and a note when it cannot be parsed), any
 * other as it is. Thread-safe. */
void bf_db_spec_shown(const char *spec, char *buf, size_t len);

/* bf_db_open_ex with the default options. */
int bf_db_open(const char *spec, unsigned flags, bf_db **out, char *errbuf, size_t errlen);

/* Close a database: stop its watcher (waiting for a running listener call
 * to return), end the session. Every bf_file must be closed first (a
 * caller bug, BF_CHECK). NULL is a no-op. */
void bf_db_close(bf_db *db);

/* Call cb for every named file, in name order; stop and return cb's value
 * if it returns nonzero. Rows whose name is not a valid file name are left
 * out, each with a line on stderr. */
int bf_db_list(bf_db *db, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg);

/* Look a file up by name / by id. -ENOENT if there is none (lookup: also
 * for a name that is not a valid file name; -EINVAL for NULL). getinfo also
 * finds an unlinked-but-open file (its name is then the empty string). */
int bf_db_lookup(bf_db *db, const char *name, struct bf_fileinfo *out);
int bf_db_getinfo(bf_db *db, uint64_t id, struct bf_fileinfo *out);

/* Create a file (committed at once). -EEXIST, -EINVAL (bad blksize, size >
 * BF_SIZE_MAX, empty name or one with '/'), -ENAMETOOLONG, -EROFS. */
int bf_db_create(bf_db *db, const char *name, uint32_t blksize, uint64_t size, uint32_t mode,
                 uint32_t uid, uint32_t gid, struct bf_fileinfo *out);

/* Remove a name (see "Unlinked-but-open" above). -ENOENT (also for a name
 * that is not a valid file name), -EINVAL (NULL), -EROFS. */
int bf_db_unlink(bf_db *db, const char *name);

/* Rename, replacing an existing `to` unless BF_RENAME_NOREPLACE (-EEXIST);
 * BF_RENAME_EXCHANGE swaps two existing names. A replaced file is unlinked
 * as by bf_db_unlink. Renaming a name onto itself changes nothing (and is
 * no commit). -ENOENT, -EEXIST, -EINVAL (bad flags or name), -EROFS. */
int bf_db_rename(bf_db *db, const char *from, const char *to, unsigned flags);

/* Change mode, owner, mtime (NULL pointers: unchanged); committed at once;
 * ctime is updated. -ENOENT, -EROFS. */
int bf_db_setattr(bf_db *db, uint64_t id, const uint32_t *mode, const uint32_t *uid,
                  const uint32_t *gid, const int64_t *mtime_ns);

/* Change the block size of an empty file: committed size 0 and no block
 * stored. -ENOENT, -EINVAL (bad blksize), -ENOTEMPTY, -EBUSY (a bf_file is
 * open on it, in this session or another live one), -EROFS. */
int bf_db_set_blksize(bf_db *db, uint64_t id, uint32_t blksize);

/* ---- extended attributes ---------------------------------------------------
 * Named values stored with a file (the daemon serves the user.* ones as
 * extended attributes: bigfilefs(8)). A change is committed at once, like a
 * name, but is not a commit (no serial: the kernel caches no attribute, so
 * every mount reads them fresh). They are deleted with the file. An engine
 * without them answers -ENOTSUP to every call. Names are 1 to
 * BF_XATTR_NAME_MAX bytes (-ERANGE beyond, -EINVAL empty or NULL), values at
 * most BF_XATTR_SIZE_MAX bytes (-E2BIG) — the limits of Linux. */
#define BF_XATTR_NAME_MAX 255
#define BF_XATTR_SIZE_MAX 65536
enum {
    BF_XATTR_CREATE = 1 << 0,  /* setxattr: -EEXIST if it exists (XATTR_CREATE) */
    BF_XATTR_REPLACE = 1 << 1, /* setxattr: -ENODATA if it does not (XATTR_REPLACE) */
};

/* The value of attribute `name` of file id: with size 0, only *len = its
 * length; else copied to value when it fits (*len = its length), -ERANGE
 * when it does not (nothing copied). -ENODATA (none), -ENOTSUP. */
int bf_db_getxattr(bf_db *db, uint64_t id, const char *name, void *value, size_t size, size_t *len);

/* The names of file id's attributes, each NUL-terminated, in name order,
 * as listxattr(2): with size 0 only *len, else -ERANGE when they do not fit
 * in size bytes. -ENOTSUP. */
int bf_db_listxattr(bf_db *db, uint64_t id, char *list, size_t size, size_t *len);

/* Set attribute `name` of file id to len bytes of value (flags:
 * BF_XATTR_*). -EEXIST, -ENODATA (see the flags), -E2BIG, -ERANGE, -EINVAL
 * (bad flags), -ENOENT (no such file), -EROFS, -ENOTSUP. */
int bf_db_setxattr(bf_db *db, uint64_t id, const char *name, const void *value, size_t len,
                   unsigned flags);

/* Remove attribute `name` of file id. -ENODATA, -EROFS, -ENOTSUP. */
int bf_db_removexattr(bf_db *db, uint64_t id, const char *name);

/* Open the content of file `id` for the core (bigfile.h). The bf_file's
 * size is the committed size as of its `serial`, the database's serial
 * now (the core's handle view starts there). The session holds the file
 * while it has a bf_file open on it (see "Unlinked-but-open"). Several
 * bf_file objects may be open on one file. -ENOENT. */
int bf_db_file_open(bf_db *db, uint64_t id, bf_file **out);

/* Close a bf_file. No transaction may be open on it (a caller bug,
 * BF_CHECK: in a release build it is aborted). If this was the session's
 * last bf_file of the file, the session's hold ends: a file whose name was
 * removed and that no other live session holds is deleted now. NULL is a
 * no-op. */
void bf_db_file_close(bf_db *db, bf_file *f);

/* ---- commits of the database, as a session learns of them -------------- */

enum bf_commit_kind {
    BF_COMMIT_WRITE = 1,  /* content and/or size of `file`: `write` says what */
    BF_COMMIT_CREATE,     /* `file` created as `name` */
    BF_COMMIT_UNLINK,     /* `name` (file `file`) removed */
    BF_COMMIT_RENAME,     /* `name` -> `name2` (rename_flags); file2: the file it
                             replaced (0: none) or, with EXCHANGE, the other */
    BF_COMMIT_SETATTR,    /* mode/owner/mtime of `file` */
    BF_COMMIT_SETBLKSIZE, /* block size of `file` */
    BF_COMMIT_RESET,      /* the session lost track (its applied serial fell below the
                             trimmed log): forget everything cached; `serial` is where
                             it resumes */
};

/* A commit, as the watcher delivers it. Pointers are valid during the
 * listener's call only. */
struct bf_commit_rec {
    uint64_t serial;
    uint64_t session; /* who committed it (0 for RESET) */
    bool own;         /* this bf_db's own session made it (already applied by the commit itself) */
    enum bf_commit_kind kind;
    uint64_t file, file2;
    int64_t time_ns;          /* when it was committed (CLOCK_REALTIME) */
    struct bf_commit write;   /* BF_COMMIT_WRITE: ranges, trunc, size (core/bigfile.h);
                               write.serial = serial */
    const char *name, *name2; /* NULL when the kind has none */
    unsigned rename_flags;    /* BF_RENAME_* */
};

/* Start the session's watcher thread: from now on it calls fn(arg, rec)
 * for every commit after the serial the session started at, in serial
 * order, one at a time, from the watcher thread — own commits too, with
 * own = true — and a BF_COMMIT_RESET in place of the commits it can no
 * longer read. After fn returns the commit counts as applied
 * (bf_db_applied). fn may block (the daemon waits for kernel notifications
 * in it): the session then lags, which holds back the trimming of the log
 * and of old versions by every session, up to log_keep log rows. fn must
 * not call bf_db_sync nor bf_db_close. The watcher also runs the session's
 * share of the database's housekeeping (the trim: COHERENCE.md rule 5),
 * at most every BF_TRIM_INTERVAL_MS (less often while no commit comes). Returns 0, -EBUSY (already
 * watching), -EINVAL (fn NULL), -ENOMEM/-EAGAIN (no thread). The watcher
 * stops in bf_db_close, which waits for a running fn. */
int bf_db_watch(bf_db *db, void (*fn)(void *arg, const struct bf_commit_rec *rec), void *arg);

#define BF_TRIM_INTERVAL_MS 250

/* Stop the session's watcher before the session ends: wait for a running
 * fn to return; fn is not called again, and bf_db_sync fails with
 * -ESHUTDOWN from now on (the session stays open: its files, loads and
 * commits work). For a caller whose listener uses objects it must free
 * before bf_db_close (the daemon's inodes and handles: bf_db_close wants
 * every bf_file closed first). A no-op if the watcher is not running; no
 * bf_db_watch may follow. From any thread but the watcher's. */
void bf_db_unwatch(bf_db *db);

/* Catch up now: return once every commit up to the database's current
 * serial has been delivered to fn (and fn has returned), with *serial =
 * that serial; waits on a condition variable (a blocked fn blocks it).
 * Safe from any thread but the watcher's (fn's). Without a watcher: just
 * *serial = the current serial. Returns 0, or the engine's error reading
 * the serial (-EIO ...), or -ESHUTDOWN (the watcher stopped: the database
 * is being closed). */
int bf_db_sync(bf_db *db, uint64_t *serial);

/* Run the session's share of the housekeeping now, as the watcher does
 * every BF_TRIM_INTERVAL_MS (docs/COHERENCE.md rule 5.5), to the end:
 * record the applied serial, trim the log and the old versions no live
 * session can read, clean up after dead sessions, purge the nameless files
 * no live session holds, delete what they left. Each step is a short
 * transaction of its own. Never at the same time as the watcher's. Returns
 * 0 (also in a read-only session: it writes nothing) or the engine's
 * error. */
int bf_db_trim(bf_db *db);

/* The serial this session has applied: every commit up to it has been
 * delivered through fn (the serial the session started at before its
 * watcher delivered anything; it moves only through the watcher). */
uint64_t bf_db_applied(bf_db *db);

/* Staged contents in the layer's spill file now (bf_db_options,
 * spill_file), for tests; 0 when the engine stages itself. */
uint64_t bf_db_spillfile_used(bf_db *db);

/* This session's id in its database (>= 1; 0 for a read-only session,
 * which is not registered); a bf_commit_rec's `session` names it. */
uint64_t bf_db_session(bf_db *db);

/* ---- point-in-time views: history (docs/HISTORY.md) --------------------
 *
 * Every commit has a serial (COHERENCE.md). A database that keeps history
 * shows the whole namespace, and every file's size and content, as they
 * were right after any serial S of its kept history [from, current]: "the
 * state at S" is the state after the newest commit <= S. Nothing else
 * (mode, owner, times, xattrs) is versioned: a view shows the file's
 * attributes as committed at S where the engine keeps them (mode, uid, gid,
 * mtime) and the current user.* attributes.
 *
 * Retention: the database stores a period, keep_ns (BF_HISTORY_KEEP_NS by
 * default; set with bf_db_history_keep; 0 keeps none but what pins hold).
 * `from` is the serial that was current keep_ns ago — the newest commit
 * whose time is <= now - keep_ns — but never after the lowest serial a
 * live session pins, never before the first serial the database kept
 * history for (an upgraded database's history starts at the upgrade), and
 * it never moves back. The housekeeping (bf_db_trim, the watchers' turns
 * on every live session: any live session may run any step, each a short
 * transaction, so no election is needed) advances `from` and collects
 * what no serial >= from needs: block versions superseded at or before
 * from, file states older than a file's newest state <= from, log rows
 * below from (and the log rows the coherence rules trim), and nameless
 * files whose name went at or before from and that no session holds.
 *
 * Pins: a view (bf_db_view_open) pins its serial for the session, in the
 * database, atomically with checking that the serial is kept; a pin goes
 * with bf_db_view_close, or with its session (a dead session's pins are
 * removed by the housekeeping that cleans up after it). A read-only
 * session cannot record a pin: its views are unpinned, and a gc may take
 * their serial away (their loads then fail with -EIO).
 *
 * Engines: SQLite and PostgreSQL keep history. mem: and block servers do
 * not: bf_db_history says kept = false, and every other call below fails
 * with -EOPNOTSUPP. */
#define BF_HISTORY_KEEP_NS ((int64_t)86400 * 1000000000) /* one day */

struct bf_history {
    bool kept;        /* the engine keeps history (false: the rest is 0) */
    uint64_t from;    /* the oldest serial a view may show */
    uint64_t current; /* the database's serial now */
    int64_t keep_ns;  /* the retention period stored in the database */
    uint64_t pinned;  /* the lowest serial a live session pins; 0: none */
};

/* The database's history now (one snapshot). Returns 0 or the engine's
 * error (-EIO ...). */
int bf_db_history(bf_db *db, struct bf_history *out);

/* Store a new retention period (ns, >= 0), committed at once; it applies
 * from the next housekeeping on (a shorter period lets `from` advance; a
 * longer one cannot bring back what was collected). -EINVAL (< 0),
 * -EROFS, -EOPNOTSUPP. */
int bf_db_history_keep(bf_db *db, int64_t keep_ns);

/* Run the housekeeping now, to the end, as bf_db_trim does (which it is),
 * then *out (if not NULL) gets bf_db_history's answer. Never removes what
 * a pin, a hold or a serial >= from needs. Returns 0 or the engine's
 * error; -EROFS in a read-only session. */
int bf_db_gc(bf_db *db, struct bf_history *out);

typedef struct bf_view bf_view;

/* Open a view of the database at `serial` (pinned, see above). Several
 * views may be open, of one serial or of several. -ENOENT: serial < from,
 * or > current, or 0. -EOPNOTSUPP. -ENOMEM, -EIO. A view lives until
 * bf_db_view_close, which must come before bf_db_close, after every
 * bf_file opened through it is closed (BF_CHECK). */
int bf_db_view_open(bf_db *db, uint64_t serial, bf_view **out);
void bf_db_view_close(bf_view *v);

/* The serial a view shows. */
uint64_t bf_view_serial(const bf_view *v);

/* As bf_db_list / bf_db_lookup / bf_db_getinfo, at the view's serial: the
 * files that had a name then, with their name, blksize, size, mode, owner
 * and mtime as committed at it (ctime_ns: as mtime_ns). getinfo finds a
 * file that existed at the serial without a name (name ""). -ENOENT for a
 * file that did not exist at the serial; -EIO when the view is unpinned
 * and its serial was collected. */
int bf_view_list(bf_view *v, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg);
int bf_view_lookup(bf_view *v, const char *name, struct bf_fileinfo *out);
int bf_view_getinfo(bf_view *v, uint64_t id, struct bf_fileinfo *out);

/* A read-only bf_file of file id as at the view: its blksize, size and
 * serial (= the view's) are as at the view's serial, and its loadblk reads
 * the content as of that serial whatever `at` it is given; begin fails
 * with -EROFS (so no transaction, store or commit); loadblk never answers
 * -ESTALE (a version gone from under an unpinned view is -EIO). It holds
 * nothing (an unlinked file stays for the history, not for it). Closed
 * with bf_db_file_close. -ENOENT (the file did not exist at the serial),
 * -ENOMEM, -EIO. */
int bf_view_file_open(bf_view *v, uint64_t id, bf_file **out);

/* One commit of a file, for bf_db_file_log. */
struct bf_log_entry {
    uint64_t serial;
    int64_t time_ns;            /* when it was committed (CLOCK_REALTIME) */
    enum bf_commit_kind kind;   /* WRITE, CREATE, UNLINK, RENAME, SETATTR, SETBLKSIZE */
    uint64_t blocks;            /* WRITE: blocks changed — stored, or dropped by its
                                   truncate; else 0 */
    uint64_t size;              /* the file's committed size after it */
    bool truncated;             /* WRITE: blocks were dropped by a truncate */
    char name[BF_NAME_MAX + 1]; /* the file's name after it ("" if none) */
};

/* The commits of file id in the kept history, newest first: those with
 * serial < before (UINT64_MAX: from the newest), at most max, each
 * delivered to cb (which copies what it keeps); a nonzero cb return stops
 * and is returned. A rename that replaced the file shows as its UNLINK.
 * Returns 0 (also when none is left), -EOPNOTSUPP, or the engine's error.
 * A file created before history began has no CREATE entry. */
int bf_db_file_log(bf_db *db, uint64_t id, uint64_t before, size_t max,
                   int (*cb)(void *arg, const struct bf_log_entry *e), void *arg);

#endif /* BIGFILEFS_BACKENDS_BACKEND_H */
