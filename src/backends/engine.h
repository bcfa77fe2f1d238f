/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the interface between the backend layer and its
 * storage engines (private to src/backends).
 *
 * backend.h is what the daemon and the core see: a bf_db with namespace
 * operations and bf_file objects. It is implemented in two parts:
 *
 *   the layer   backend.c: the rules every database keeps, once — argument
 *               and name checks, read-only refusals, which files are open,
 *               one store transaction per file at a time, purging a file
 *               whose name was removed once its last bf_file closes, and
 *               leaving out of listings rows whose name no file can have.
 *               Per-database shared state belongs here (the sessions of
 *               several daemons sharing one database will).
 *   an engine   memory.c, sqlite.c (later PostgreSQL, a process protocol):
 *               storage only — rows, blocks, transactions, and its own
 *               clean-up after a crash (the orphan sweep at open).
 *
 * An engine embeds `struct bf_db` as the first member of its database and
 * `struct bf_fh` as the first member of its per-handle structure, fills in
 * a `struct bf_engine_ops`, and calls bf_db_init() from its open function.
 * The layer checks what it can before calling an engine (valid names, block
 * sizes and flags; -EROFS on a read-only database; the transaction state of
 * a handle), so an engine only asserts those (BF_ASSERT).
 *
 * Open files (the layer's table, one record per file in use)
 * ----------------------------------------------------------
 *   (none)  --file_open-->                  LIVE       nopen = 1
 *   LIVE    --file_open / file_close-->     LIVE       nopen +1 / -1
 *   LIVE    --last close, name kept-->      (none)
 *   LIVE    --last close, name removed-->   PURGING    engine->purge runs
 *   (none)  --unlink/rename removes name--> PURGING    engine->purge runs
 *   PURGING --purge done (or failed)-->     (none)
 *   (none)  --set_blksize-->                RESERVED   engine->set_blksize runs
 *   RESERVED --done, name kept / removed--> (none) / PURGING
 * A file_open or set_blksize of a file that is PURGING or RESERVED waits for
 * the record to go, then asks the engine (which then finds the purged file
 * gone). A name removed while LIVE or RESERVED sets `unlinked`: the purge
 * follows the last close. A purge that fails leaves the nameless row to the
 * engine's orphan sweep at the next open.
 *
 * Store transactions: at most one per file (a record's `tx` names the handle
 * in one), driven by one thread at a time (bigfile.h), so a handle's `tx`
 * state is touched only by that thread and by file_close.
 *
 *   IDLE --begin ok--> OPEN --commit (ok or failed) / abort--> IDLE
 *
 * Locks, in the order they are taken
 * ----------------------------------
 *   1. the caller's (the daemon: inode table -> fh_lock -> ram lock);
 *   2. the engine's own (each engine writes its order at its top).
 *   bf_db.lock (the layer's) is a leaf: it guards the open-file table, is
 *   held only to read or change it, and never across an engine call or a
 *   callback; an engine never takes it (it calls only the helpers at the
 *   end of this header, none of which does). So the layer's lock and an
 *   engine's never nest. A bf_counter's lock is a leaf too. What must stay stable
 *   across an engine call is pinned by a record's state instead (LIVE,
 *   PURGING, RESERVED, tx), and waiting is on bf_db.cond.
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
struct bf_open; /* the layer's record of a file in use (backend.c) */

/* What an engine implements. Every function returns 0 or a negative errno
 * and may be called from any thread, concurrently, except where noted. */
struct bf_engine_ops {
    const char *name;

    /* Free the database (the layer has checked that no file is open and
     * has released its own state). */
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
     * and blocks stay, readable by id, until purge); *id gets the file's
     * id. -ENOENT. */
    int (*unlink)(bf_db *db, const char *name, uint64_t *id);

    /* Rename as bf_db_rename; a replaced file is left nameless as by
     * unlink and *replaced gets its id (0 if none was replaced). */
    int (*rename)(bf_db *db, const char *from, const char *to, unsigned flags, uint64_t *replaced);

    /* Change the block size of an empty file. The layer guarantees that no
     * bf_file of it is open, and none opens, meanwhile. -ENOENT,
     * -ENOTEMPTY. */
    int (*set_blksize)(bf_db *db, uint64_t id, uint32_t blksize);

    /* Delete nameless file id and its blocks, committed at once. The layer
     * guarantees that it has no bf_file open, and none opens, meanwhile. A
     * file that has a name, or none at all, is left alone (0). On failure
     * the file stays as it was, for the orphan sweep of a later open. */
    int (*purge)(bf_db *db, uint64_t id);

    /* Allocate the engine's handle of file id (named or nameless) and set
     * its file.blksize and file.size (the committed size now); the layer
     * fills in the rest of *out. -ENOENT. file_close frees it (no
     * transaction is open on it). */
    int (*file_open)(bf_db *db, uint64_t id, struct bf_fh **out);
    void (*file_close)(struct bf_fh *fh);

    /* The content operations of bigfile.h, on the engine's handle. The
     * layer calls begin only when no other handle of the file is in a
     * transaction and the database is writable; storeblk, truncate,
     * commit and abort only in the transaction begin opened. commit
     * rolls back and closes the transaction when it fails, as in
     * bigfile.h; the layer updates file.size when it succeeds.
     * next_stored and stored_blocks may be NULL. */
    int (*loadblk)(struct bf_fh *fh, uint64_t blk, void *buf);
    int (*next_stored)(struct bf_fh *fh, uint64_t from, uint64_t *blk);
    int (*stored_blocks)(struct bf_fh *fh, uint64_t *n);
    int (*begin)(struct bf_fh *fh);
    int (*storeblk)(struct bf_fh *fh, uint64_t blk, const void *buf);
    int (*truncate)(struct bf_fh *fh, uint64_t nblocks);
    int (*commit)(struct bf_fh *fh, uint64_t size);
    void (*abort)(struct bf_fh *fh);
};

/* The generic part of a database: the first member of an engine's. */
struct bf_db {
    const struct bf_engine_ops *ops;
    unsigned flags; /* BF_DB_* it was opened with */
    char *label;    /* for log lines: the spec it was opened with (NULL: the engine's name) */

    struct bf_file_ops fops; /* the layer's bf_file operations for this engine */

    pthread_mutex_t lock; /* a leaf: guards opens (see "Locks" above) */
    pthread_cond_t cond;  /* broadcast when a PURGING or RESERVED record goes */
    struct bf_open *opens;
};

/* A handle's transaction state (see "Store transactions" above). */
enum bf_tx_state {
    BF_TX_IDLE, /* no transaction */
    BF_TX_OPEN, /* between begin and commit/abort */
};

/* The generic part of a handle: the first member of an engine's. The layer
 * sets every field but file.blksize and file.size. */
struct bf_fh {
    bf_file file; /* first: what the core sees (file.ops are the layer's) */
    bf_db *db;
    uint64_t id;
    struct bf_open *open; /* the file's record in db->opens */
    enum bf_tx_state tx;
};

/* Set up the generic part of a new database. Returns 0 or -ENOMEM (then
 * nothing is left to undo). After it, an engine's open that fails undoes
 * everything with bf_db_close (which calls the engine's close). */
int bf_db_init(bf_db *db, const struct bf_engine_ops *ops, unsigned flags);

/* Log one line "bigfilefs: LABEL: MESSAGE" to stderr (backends have no
 * other log). Thread-safe. */
void bf_db_log(const bf_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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

#endif /* BIGFILEFS_BACKENDS_ENGINE_H */
