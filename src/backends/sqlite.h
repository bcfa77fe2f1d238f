/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the SQLite backend (the embedded default).
 *
 * One database file holds many bigfiles, and may be shared by several
 * sessions (daemons; docs/COHERENCE.md) in several processes of one host.
 * Their block contents are in its block file, path + "-blocks" (created
 * with the database, or by the first upload of a read-write session on a
 * database made before it, whose blob contents stay readable): the
 * database is the pair, to be copied together.
 * The schema is identified by PRAGMA application_id
 * (BF_SQLITE_APPLICATION_ID) and versioned by PRAGMA user_version
 * (BF_SQLITE_SCHEMA_VERSION). At open:
 *
 *  - a missing file is created (with BF_DB_CREATE) with page_size 4096
 *    (the contents are in the block file: each page an upload's rows
 *    touch is written to the WAL, then checkpointed) and journal_mode WAL
 *    (a database made before the block file keeps its 64 KiB pages);
 *  - a zero-byte regular file, or a SQLite database empty in every respect
 *    (no table, index, view or trigger; application_id and user_version
 *    0), gets the schema (with BF_DB_CREATE; else -EPROTO): it holds
 *    nothing that could be lost;
 *  - anything else that is not a bigfilefs database is refused with -EPROTO
 *    (another application's SQLite database, however empty otherwise; a
 *    file that is not SQLite; a corrupt one; anything but a regular file,
 *    such as a device or a FIFO); a database of a newer schema version
 *    with -EPROTONOSUPPORT. A refusal leaves the file's bytes as they were
 *    and creates nothing beside it: the file is looked at through an
 *    immutable read-only connection (no locks, no -wal, -shm or -journal),
 *    or, when its -wal and -shm exist (it is in use), through SQLite's
 *    locks, which then create nothing either;
 *  - then the file is locked with flock(2) — exclusively, or shared with
 *    BF_DB_SHARED — for the session's life; another session's lock in the
 *    way is -EBUSY ("in use by another bigfilefs"), the file untouched;
 *  - a database of schema 1 (bigfilefs before sessions) or 2 (before
 *    history, docs/HISTORY.md) is upgraded in place by the first
 *    read-write open, in one transaction (no block is copied; a failure
 *    leaves it as it was; history starts at its serial then); a read-only
 *    open of one is refused with -EROFS;
 *  - a read-write session registers itself (a row, and an OFD lock on a
 *    byte of the file as its liveness) and cleans up after dead sessions.
 *
 * Read-only (BF_DB_RDONLY): no writer connection. Readers go through
 * SQLite's locks, which need the -shm file beside the database; where it
 * can be neither found nor created (a read-only medium, a directory we may
 * not write) and no -wal holds commits, they open the file immutable (it
 * must not change meanwhile); with commits in such a -wal the open fails
 * with -EROFS. Opening read-write where the file cannot be written fails
 * with -EROFS or -EACCES, saying so.
 *
 * A store transaction uploads each block in a short write transaction of
 * its own (synchronous=NORMAL), and commits in one more (BEGIN IMMEDIATE ..
 * COMMIT: the serial, the conflict check, the versions, the log), durable
 * when commit returns with every upload before it (synchronous=FULL,
 * unless BF_SQLITE_SYNC=normal is set in the environment for benchmarks).
 * The writer connection is shared by the whole session under a mutex held
 * for one such transaction at a time, so a namespace change or another
 * file's commit never waits for a whole writeout. An all-zero block is
 * stored as a hole. loadblk reads the version as of a serial through a
 * pool of read-only connections, one per concurrently loading thread, with
 * incremental BLOB I/O straight into the caller's buffer; in WAL mode
 * readers never wait for the writer. next_stored and stored_blocks
 * (bigfile.h) query the partial index of the current versions through the
 * same pool (the core caches the count).
 *
 * Removing a name sets the row's name to NULL (a commit); the file is
 * deleted when no live session holds it — at the last close of the last
 * session that had it open, or by the housekeeping. The watcher learns of
 * commits by PRAGMA data_version on a connection of its own, woken by an
 * inotify watch on the -wal (and polling, backing off, where there is
 * none). Other processes may read the database, or change it briefly as
 * the sqlite3 CLI would; a busy_timeout of 5 s absorbs their locks.
 */
#ifndef BIGFILEFS_BACKENDS_SQLITE_H
#define BIGFILEFS_BACKENDS_SQLITE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define BF_SQLITE_APPLICATION_ID 0x42464653 /* "BFFS" */
#define BF_SQLITE_SCHEMA_VERSION 3

/* A commit that leaves more than this many bytes in the WAL (a big
 * writeout) is followed by a checkpoint that empties the WAL file, unless a
 * reader's older snapshot or another writer is in the way (then a later
 * commit does it). See "The WAL" in sqlite.c. */
#define BF_SQLITE_WAL_LIMIT 67108864 /* 64 MiB */

/* Open (or create, with BF_DB_CREATE) the database at path. See backend.h's
 * bf_db_open for errors and errbuf. */
int bf_sqlite_open(const char *path, unsigned flags, const struct bf_db_options *opt, bf_db **out,
                   char *errbuf, size_t errlen);

/* Copy the last SQLite failure seen by db ("PATH: WHAT: sqlite3_errmsg
 * (sqlite CODE)"; empty if none) to buf. Every such failure is also logged
 * to stderr when it happens, prefixed "bigfilefs: ". Errors: -EINVAL (db is
 * not a SQLite database, or len is 0). Thread-safe. */
int bf_sqlite_last_error(bf_db *db, char *buf, size_t len);

/* For tests: how many times a connection of db found the database locked
 * by another connection and began to wait for it (each wait is retried for
 * up to 5 s before the operation fails with -EBUSY). 0 if db is not a
 * SQLite database. Thread-safe. */
uint64_t bf_sqlite_busy_waits(bf_db *db);

/* For tests: wait (on a condition variable) until bf_sqlite_busy_waits(db)
 * is at least n, or timeout_ms milliseconds have passed. Returns 0,
 * -ETIMEDOUT, or -EINVAL (db is not a SQLite database). Thread-safe. */
int bf_sqlite_wait_busy(bf_db *db, uint64_t n, int timeout_ms);

/* For tests: call fn(arg) in each load of a content of the block file,
 * between its lookup (whose read transaction has ended) and the read of
 * its bytes, on the loading thread (fn NULL: none). Set it before any load
 * runs. -EINVAL if db is not a SQLite database. */
int bf_sqlite_set_load_hook(bf_db *db, void (*fn)(void *arg), void *arg);

/* For tests: call fn(arg) before each fdatasync of the block file; a
 * nonzero return (an errno value: EIO, ENOSPC...) makes that sync fail
 * with it, as a write-back error would, without syncing (fn NULL: none);
 * the caller of the sync gets -EIO, the last error names the errno. Set
 * it while no commit runs. -EINVAL if db is not a SQLite database. */
int bf_sqlite_set_sync_hook(bf_db *db, int (*fn)(void *arg), void *arg);

/* For tests: assume direct reads of the block file need only `align`
 * bytes of alignment (a power of two; 0: what the file system says,
 * statx STATX_DIOALIGN), so that a test can make the file system refuse
 * one (EINVAL) as one with an alignment it did not say would. Set it
 * before any read. -EINVAL if db is not a SQLite database or align is
 * not a power of two. */
int bf_sqlite_set_dio_align(bf_db *db, uint32_t align);

#endif /* BIGFILEFS_BACKENDS_SQLITE_H */
