/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the interface between the backend layer and its
 * storage engines (private to src/backends).
 *
 * backend.h is what the daemon and the core see: a bf_db (a session) with
 * namespace operations, bf_file objects and a watcher. It is implemented
 * in two parts:
 *
 *   the layer   backend.c, watch.c: the rules every database keeps, once —
 *               argument and name checks, read-only refusals, which files
 *               the session has open (and so holds), one store
 *               transaction per file at a time, ending a hold at the last
 *               close, leaving out of listings rows whose name no file can
 *               have; and the watcher thread, which reads the commit log
 *               through the engine, delivers it in order, keeps the
 *               session's applied serial and runs the housekeeping.
 *   an engine   memory.c, sqlite*.c (later PostgreSQL, a process
 *               protocol): storage only — rows, versions of blocks,
 *               serials, the commit log, sessions and their liveness,
 *               holds, the conflict check, and the housekeeping itself
 *               (docs/COHERENCE.md, rules 1-7).
 *
 * An engine embeds `struct bf_db` as the first member of its database and
 * `struct bf_fh` as the first member of its per-handle structure, fills in
 * a `struct bf_engine_ops`, calls bf_db_init() from its open function,
 * sets db->session and db->start_serial once its session is registered,
 * and calls bf_db_fini() from its close. The layer checks what it can
 * before calling an engine (valid names, block sizes and flags; -EROFS on a
 * read-only database; the transaction state of a handle), so an engine
 * only asserts those (BF_ASSERT).
 *
 * Open files (the layer's table, one record per file the session uses)
 * -------------------------------------------------------------------
 *   (none)    --file_open-->                        OPENING    engine->file_open holds it
 *   OPENING   --opened / failed-->                  LIVE (nopen = 1) / (none)
 *   LIVE      --file_open / file_close-->           LIVE       nopen +1 / -1
 *   LIVE      --last close, read-only session-->    (none)
 *   LIVE      --last close-->                       RELEASING  engine->release runs
 *   RELEASING --release done (or failed)-->         (none)
 *   (none)    --unlink/rename removes the name-->   PURGING    engine->purge runs
 *   PURGING   --purge done (or failed)-->           (none)
 *   (none)    --set_blksize-->                      RESERVED   engine->set_blksize runs
 *   RESERVED  --done, name kept / removed-->        (none) / PURGING
 * A file_open or set_blksize of a file that is OPENING, RELEASING, PURGING
 * or RESERVED waits for the record to settle (LIVE) or go, then asks the
 * engine (which then finds a purged file gone); so does a name removal
 * that finds it OPENING or RELEASING (the hold may be late or gone). The
 * engine decides whether a nameless file is deleted: release and purge
 * delete it only when no live session holds it (the name may have been
 * removed by another session; another session's hold may keep it). A release or purge that fails leaves the
 * nameless row to the housekeeping (engine->trim, and the next open).
 *
 * Store transactions: at most one per file in a session (a record's `tx`
 * names the handle in one), driven by one thread at a time (bigfile.h),
 * so a handle's `tx` state is touched only by that thread and by
 * file_close. Different sessions' transactions of one file are the
 * engine's business (its commit section and conflict check).
 *
 *   IDLE --begin ok--> OPEN --commit (ok or failed) / abort--> IDLE
 *
 * Locks, in the order they are taken
 * ----------------------------------
 *   1. the caller's (the daemon: inode table -> fh_lock -> ram lock);
 *   2. the engine's own (each engine writes its order at its top);
 *   3. the watcher's lock (watch.c), a leaf: engines take it only through
 *      bf_db_kick (which also writes the watcher's eventfd), and the
 *      watcher never holds it across an engine call, the listener or its
 *      wait. (Its trim lock, taken around engine->trim only, comes before
 *      the engine's.)
 *   0. bf_db.vlock (the layer's, view.c): the session's table of pinned
      serials; held across engine->pin (so before the engine's locks),
      never across anything else that takes a lock but bf_db.lock.
   bf_db.lock (the layer's) is a leaf: it guards the open-file table, is
 *   held only to read or change it, and never across an engine call or a
 *   callback; an engine never takes it (it calls only the helpers at the
 *   end of this header, none of which does). So the layer's lock and an
 *   engine's never nest. A bf_counter's lock is a leaf too. What must stay
 *   stable across an engine call is pinned by a record's state instead
 *   (LIVE, RELEASING, PURGING, RESERVED, tx), and waiting is on
 *   bf_db.cond.
 */
#ifndef BIGFILEFS_BACKENDS_ENGINE_H
#define BIGFILEFS_BACKENDS_ENGINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "backends/backend.h"
#include "util/debug.h" /* BF_ASSERT, BF_CHECK */
#include "util/util.h"  /* bf_now_ns, bf_all_zero */

struct bf_fh;
struct bf_open;  /* the layer's record of a file in use (backend.c) */
struct bf_vpin;  /* the layer's record of a serial its views show (view.c) */
struct bf_watch; /* the watcher's state (watch.c) */

/* What an engine implements. Every function returns 0 or a negative errno
 * and may be called from any thread, concurrently, except where noted.
 * Every operation that changes the database is a commit (COHERENCE.md
 * rule 1): it takes the next serial and writes a commit-log row in the same
 * transaction — create, unlink, rename (but onto itself), setattr,
 * set_blksize and the store transaction's commit; purge, release, the
 * holds and the housekeeping are not. */
struct bf_engine_ops {
    const char *name;

    /* The engine wakes the watcher itself (bf_db_kick) at every commit of
     * the database, so the watcher does not poll engine->changed: it waits
     * for a kick (and the housekeeping interval). */
    bool notifies;

    /* End the session and free the database: leave the shared state (the
     * session's registration, its locks), call bf_db_fini(db) once no
     * other session can reach db any more, then free. The layer has
     * stopped the watcher and checked that no file is open. */
    void (*close)(bf_db *db);

    /* As in backend.h. list may include rows whose name is not a valid
     * file name (a tampered database): the layer leaves them out. An engine
     * whose row holds a name it cannot represent in a bf_fileinfo (too
     * long, not text) leaves it out itself, with one log line. */
    int (*list)(bf_db *db, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg);
    int (*lookup)(bf_db *db, const char *name, struct bf_fileinfo *out);
    int (*getinfo)(bf_db *db, uint64_t id, struct bf_fileinfo *out);
    int (*create)(bf_db *db, const char *name, uint32_t blksize, uint64_t size, uint32_t mode,
                  uint32_t uid, uint32_t gid, struct bf_fileinfo *out);
    int (*setattr)(bf_db *db, uint64_t id, const uint32_t *mode, const uint32_t *uid,
                   const uint32_t *gid, const int64_t *mtime_ns);

    /* Remove a name, committed at once, leaving the file nameless (its row
     * and blocks stay, readable by id, until purged); *id gets the file's
     * id. -ENOENT. */
    int (*unlink)(bf_db *db, const char *name, uint64_t *id);

    /* Rename as bf_db_rename; a replaced file is left nameless as by
     * unlink and *replaced gets its id (0 if none was replaced). */
    int (*rename)(bf_db *db, const char *from, const char *to, unsigned flags, uint64_t *replaced);

    /* Change the block size of an empty file. The layer guarantees that no
     * bf_file of it is open in this session, and none opens, meanwhile.
     * -ENOENT, -ENOTEMPTY, -EBUSY (another live session holds the file). */
    int (*set_blksize)(bf_db *db, uint64_t id, uint32_t blksize);

    /* Delete nameless file id, its versions and contents, unless a live
     * session holds it (then nothing is done: 0). A file that has a name,
     * or none at all, is left alone (0). Not a commit. The layer
     * guarantees that this session has no bf_file of it open, and opens
     * none, meanwhile. On failure the file stays as it was, for the
     * housekeeping. */
    int (*purge)(bf_db *db, uint64_t id);

    /* Allocate the engine's handle of file id (named or nameless) and set
     * its file.blksize, file.size and file.serial: the committed size as
     * of the serial, read together. With `hold` (the session's first
     * handle of the file; never in a read-only session), record the
     * session's hold on the file first, atomically with finding it: a
     * purge either sees the hold or has deleted the file (-ENOENT, no hold
     * left). The layer fills in the rest of *out. -ENOENT. file_close
     * frees it (no transaction is open on it). */
    int (*file_open)(bf_db *db, uint64_t id, bool hold, struct bf_fh **out);
    void (*file_close)(struct bf_fh *fh);

    /* End the session's hold on file id (its last handle is closed), then
     * purge it as purge does. The layer guarantees what it does for
     * purge. */
    int (*release)(bf_db *db, uint64_t id);

    /* The content operations of bigfile.h, on the engine's handle. The
     * layer calls begin only when no other handle of the file in this
     * session is in a transaction and the database is writable;
     * storeblk, truncate, commit and abort only in the transaction begin
     * opened. commit checks conflicts as bigfile.h says (a conflict is a
     * commit of another session after a base), rolls back and closes the
     * transaction when it fails, as in bigfile.h, and calls req->conflict
     * with none of its locks held; the layer updates file.size when it
     * succeeds with req->size_set. next_stored and stored_blocks may be
     * NULL. */
    int (*loadblk)(struct bf_fh *fh, uint64_t blk, uint64_t at, void *buf, uint64_t *serial);
    int (*next_stored)(struct bf_fh *fh, uint64_t from, uint64_t *blk);
    int (*stored_blocks)(struct bf_fh *fh, uint64_t *n);
    int (*begin)(struct bf_fh *fh);
    int (*storeblk)(struct bf_fh *fh, uint64_t blk, const void *buf, uint64_t base);
    int (*truncate)(struct bf_fh *fh, uint64_t nblocks);
    int (*commit)(struct bf_fh *fh, const struct bf_commit_req *req, uint64_t *serial);
    void (*abort)(struct bf_fh *fh);

    /* Optional (NULL: the core loads whole blocks): loadblk_range of
     * bigfile.h. */
    int (*loadblk_range)(struct bf_fh *fh, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                         void *buf, uint64_t *serial);

    /* Optional (NULL: never): loadblk_send and loadblk_ahead of
     * bigfile.h. */
    int (*loadblk_send)(struct bf_fh *fh, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                        struct bf_sink *sink);
    int (*loadblk_ahead)(struct bf_fh *fh, uint64_t blk, uint64_t at);

    /* Optional, all four or none (none: the layer stages into its spill
     * file, spillfile.c, and stores a staged content with storeblk): the
     * staging operations of bigfile.h. The layer calls storeblk_staged
     * only in a transaction, and the others never while the handle is in
     * one. A staged content is the session's: a session that ends (or
     * dies) leaves it to the housekeeping, as an upload. */
    int (*stage)(struct bf_fh *fh, uint64_t blk, const void *buf, uint64_t *token);
    int (*unstage)(struct bf_fh *fh, uint64_t token, void *buf);
    void (*stage_drop)(struct bf_fh *fh, uint64_t token);
    int (*storeblk_staged)(struct bf_fh *fh, uint64_t blk, uint64_t token, uint64_t base);

    /* The watcher's (watch.c). changed, log_read and trim are called from
     * the watcher thread only, one at a time; serial_now from any thread. */

    /* *yes = whether the database may have changed since the last call
     * (a cheap look; a false yes costs one log_read). Unused when the
     * engine notifies. */
    int (*changed)(bf_db *db, bool *yes);

    /* Optional (NULL, or -1: none): a descriptor that becomes readable
     * when the database may have changed, so that the watcher need not
     * poll often; changed() drains it and decides. The engine closes it. */
    int (*change_fd)(bf_db *db);

    /* Call fn for each commit-log row with serial > after, in serial
     * order, at most max of them (fn copies what it keeps; rec->own is
     * left to the layer); *current gets the database's serial and
     * *trimmed the highest serial trimmed from the log, as of the same
     * snapshot as the rows. A nonzero fn return stops and is returned. */
    int (*log_read)(bf_db *db, uint64_t after, size_t max,
                    int (*fn)(void *arg, const struct bf_commit_rec *rec), void *arg,
                    uint64_t *current, uint64_t *trimmed);

    /* *serial = the database's serial now (the last commit's). */
    int (*serial_now)(bf_db *db, uint64_t *serial);

    /* Housekeeping (COHERENCE.md rule 5.5): record `applied` as the
     * session's applied serial, then trim the log, collect old versions
     * and orphan uploads, clean up after dead sessions and purge unheld
     * nameless files — each step short, never holding what commits wait
     * for long; with `all` to the end, else for a few tens of ms at most
     * (the watcher's turn; the next one goes on). Never called in a
     * read-only session, nor twice at once (the layer's trim lock). */
    int (*trim)(bf_db *db, uint64_t applied, bool all);

    /* Extended attributes of file id (named or nameless), optional (NULL:
     * the layer answers -ENOTSUP). The layer has checked the name (1 to
     * BF_XATTR_NAME_MAX bytes) and the value's size (at most
     * BF_XATTR_SIZE_MAX) and refuses changes in a read-only session. A
     * change is committed at once but is no commit (no serial, no log
     * row): the kernel caches no attribute, every mount reads them fresh.
     * A file's attributes go with it when it is purged.
     *  getxattr: *value = a malloc'ed copy (NULL when *len is 0), -ENODATA.
     *  listxattr: *names = the names, each NUL-terminated, in name order,
     *      malloc'ed (NULL when *len is 0).
     *  setxattr: BF_XATTR_CREATE: -EEXIST if it exists; BF_XATTR_REPLACE:
     *      -ENODATA if it does not; -ENOENT if the file does not exist.
     *  removexattr: -ENODATA. */
    int (*getxattr)(bf_db *db, uint64_t id, const char *name, void **value, size_t *len);
    int (*listxattr)(bf_db *db, uint64_t id, char **names, size_t *len);
    int (*setxattr)(bf_db *db, uint64_t id, const char *name, const void *value, size_t len,
                    unsigned flags);
    int (*removexattr)(bf_db *db, uint64_t id, const char *name);

    /* History (backend.h, "point-in-time views"; docs/HISTORY.md): all or
     * none (NULL: the layer says kept = false and answers -EOPNOTSUPP).
     * The engine keeps it in its tables and honours it in every step of
     * trim (history's rules on top of COHERENCE.md rule 5) and in purge
     * and release (a nameless file whose name went after `from` stays
     * for the history, its hold gone, until the housekeeping collects
     * it); an engine with history never deletes replaced versions at
     * commit time while it keeps history (a retention > 0, or a pin).
     * With retention 0 it behaves as it would without history: a purge
     * or release may advance `from` first (reading the pins in its
     * transaction, as the housekeeping does), so that an unlinked file
     * still goes at its last close (docs/HISTORY.md, section 3).
     *  history: the snapshot of bf_db_history (kept = true).
     *  history_keep: store keep_ns (>= 0, checked by the layer); never in
     *      a read-only session.
     *  pin: on: record a pin of `serial` by this session, atomically with
     *      checking from <= serial <= current (-ENOENT); off: remove one.
     *      The layer counts a session's views of one serial and calls pin
     *      at the first open (on) and the last close (off) only; never in
     *      a read-only session.
     *  list_at, lookup_at, getinfo_at: as bf_view_list/lookup/getinfo at
     *      `serial` (the layer checked serial >= 1). -ENOENT when the
     *      serial is no longer kept (an unpinned view).
     *  file_open_at: allocate the engine's handle of file id for a view
     *      at `serial`, taking no hold and reading nothing (the layer has
     *      found the file with getinfo_at and sets file.blksize, file.size
     *      and file.serial itself; it calls this outside its table of open
     *      files, and closes the handle with file_close). The layer's
     *      loadblk then calls loadblk(fh, blk, serial, ...) only. -ENOMEM.
     *  file_log: as bf_db_file_log. */
    int (*history)(bf_db *db, struct bf_history *out);
    int (*history_keep)(bf_db *db, int64_t keep_ns);
    int (*pin)(bf_db *db, uint64_t serial, bool on);
    int (*list_at)(bf_db *db, uint64_t serial, int (*cb)(void *arg, const struct bf_fileinfo *fi),
                   void *arg);
    int (*lookup_at)(bf_db *db, uint64_t serial, const char *name, struct bf_fileinfo *out);
    int (*getinfo_at)(bf_db *db, uint64_t serial, uint64_t id, struct bf_fileinfo *out);
    int (*file_open_at)(bf_db *db, uint64_t id, uint64_t serial, struct bf_fh **out);
    int (*file_log)(bf_db *db, uint64_t id, uint64_t before, size_t max,
                    int (*cb)(void *arg, const struct bf_log_entry *e), void *arg);
};

/* The generic part of a database: the first member of an engine's. */
struct bf_db {
    const struct bf_engine_ops *ops;
    unsigned flags; /* BF_DB_* it was opened with */
    char *label;    /* for log lines: the spec it was opened with (NULL: the engine's name) */
    struct bf_db_options opt; /* defaults filled in (bf_db_init) */

    /* Set by the engine's open: the session's id (0: not registered, a
     * read-only session) and the serial it started at. */
    uint64_t session;
    uint64_t start_serial;

    struct bf_file_ops fops; /* the layer's bf_file operations for this engine */

    pthread_mutex_t lock; /* a leaf: guards opens (see "Locks" above) */
    pthread_cond_t cond;  /* broadcast when a record settles (LIVE) or goes */
    struct bf_open *opens;

    struct bf_watch *watch; /* watch.c */

    /* Views (view.c): the serials the session's open views show, each with
     * its count of views and whether it is pinned in the database; under
     * vlock (lock order 0 above). */
    pthread_mutex_t vlock;
    struct bf_vpin *vpins;

    /* The layer's staging area (spillfile.c), when the engine has none or
     * opt.spill_file; NULL otherwise. */
    struct bf_spillfile *spill;
};

/* A handle's transaction state (see "Store transactions" above). */
enum bf_tx_state {
    BF_TX_IDLE, /* no transaction */
    BF_TX_OPEN, /* between begin and commit/abort */
};

/* The generic part of a handle: the first member of an engine's. The layer
 * sets every field but file.blksize, file.size and file.serial. */
struct bf_fh {
    bf_file file; /* first: what the core sees (file.ops are the layer's) */
    bf_db *db;
    uint64_t id;
    struct bf_open *open; /* the file's record in db->opens (NULL: a view's file) */
    struct bf_view *view; /* a view's file (view.c): read-only, as at its serial */
    enum bf_tx_state tx;
    /* OPEN, with the layer's spill file: the staged contents the
     * transaction stored, freed when it commits (kept when it fails) */
    uint64_t *used;
    size_t nused, capused;
};

/* Set up the generic part of a new database: flags and options (NULL: the
 * defaults; zero fields get the defaults). Returns 0 or -ENOMEM (then
 * nothing is left to undo). After it, an engine's open that fails undoes
 * everything with bf_db_close (which calls the engine's close). */
int bf_db_init(bf_db *db, const struct bf_engine_ops *ops, unsigned flags,
               const struct bf_db_options *opt);

/* Release the generic part (the engine's close calls it, once no other
 * thread or session can reach db). */
void bf_db_fini(bf_db *db);

/* A commit may have been made in db's database: wake db's watcher (a no-op
 * if it has none). Any thread; takes the watcher's leaf lock, so an
 * engine may call it with its own locks held. */
void bf_db_kick(bf_db *db);

/* Log one line "bigfilefs: LABEL: MESSAGE" to stderr (backends have no
 * other log). Thread-safe. */
void bf_db_log(const bf_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write a one-line reason for a failed open to errbuf (if not NULL and
 * errlen > 0), printf-style. */
void bf_errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A count that tests wait for instead of sleeping (the memory engine's
 * held calls, SQLite's lock waits). Its mutex is a leaf. */
struct bf_counter {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast at every change */
    uint64_t n;
};

/* Set up a counter at 0. Returns 0 or -ENOMEM (nothing to undo). */
int bf_counter_init(struct bf_counter *c);
void bf_counter_destroy(struct bf_counter *c);

/* Add delta to the count and wake its waiters. A negative delta takes
 * back what was added: below 0 is a caller bug (BF_ASSERT). */
void bf_counter_add(struct bf_counter *c, int64_t delta);

/* The count now. */
uint64_t bf_counter_get(struct bf_counter *c);

/* Wait until the count is at least n (at_least) or 0 (!at_least), or
 * timeout_ms milliseconds have passed (negative: no limit), on a condition
 * variable. Returns 0 or -ETIMEDOUT. */
int bf_counter_wait(struct bf_counter *c, bool at_least, uint64_t n, int timeout_ms);

/* Check a file name for create/rename: 0, -EINVAL (NULL, empty, contains
 * '/', or is "." or ".."), -ENAMETOOLONG (more than BF_NAME_MAX bytes). */
int bf_name_check(const char *name);

/* The layer's spill file (spillfile.c): staged contents of any size, in
 * slots of an unnamed temporary file in `dir` (NULL: $TMPDIR, else
 * /var/tmp), created at the first put; a token is a slot's offset. Thread
 * safe: a leaf mutex guards the free slots; reads and writes run without
 * it. new: -ENOMEM. put: -ENOSPC, -EIO, or open(2)'s error (nothing
 * kept). get: 0 or -EIO. drop: frees the slot and its disk space. */
struct bf_spillfile;
int bf_spillfile_new(const char *dir, struct bf_spillfile **out);
void bf_spillfile_free(struct bf_spillfile *sf);
int bf_spillfile_put(struct bf_spillfile *sf, const void *buf, uint32_t len, uint64_t *token);
int bf_spillfile_get(struct bf_spillfile *sf, uint64_t token, void *buf, uint32_t len);
void bf_spillfile_drop(struct bf_spillfile *sf, uint64_t token, uint32_t len);
/* Slots in use now (for tests). */
uint64_t bf_spillfile_used(struct bf_spillfile *sf);

/* Fill in the layer's fields of a handle the engine opened (backend.c):
 * its file's ops, db, id, its record o (NULL for a view's file) or view v,
 * no transaction. */
void bf_fh_init(struct bf_fh *fh, bf_db *db, uint64_t id, struct bf_open *o, struct bf_view *v,
                const struct bf_file_ops *ops);

/* The layer's filter of listings (backend.c): calls lf->cb for every row
 * whose name is a valid file name, logs one line for any other. */
struct bf_list_filter {
    bf_db *db;
    int (*cb)(void *arg, const struct bf_fileinfo *fi);
    void *arg;
};
int bf_list_valid(void *arg, const struct bf_fileinfo *fi);

/* Views (view.c), for the layer: set up / tear down db's view state
 * (init: -ENOMEM, nothing to undo); views_close: at bf_db_close, forget
 * the views the caller left open (a caller bug, BF_CHECK) before the
 * engine's close ends the session and its pins; view_file_close: close a
 * view's bf_file (fh->view set). */
int bf_views_init(bf_db *db);
void bf_views_close(bf_db *db);
void bf_views_fini(bf_db *db);
void bf_view_file_close(struct bf_fh *fh);

/* The watcher (watch.c), for the layer: set up its state (-ENOMEM), stop
 * its thread (waiting for a running listener call), free its state. */
int bf_watch_init(bf_db *db);
void bf_watch_stop(bf_db *db);
void bf_watch_fini(bf_db *db);

#endif /* BIGFILEFS_BACKENDS_ENGINE_H */
