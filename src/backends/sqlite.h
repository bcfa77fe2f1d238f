/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the SQLite backend (the embedded default).
 *
 * One database file holds many bigfiles. The schema is identified by
 * PRAGMA application_id (BF_SQLITE_APPLICATION_ID) and versioned by
 * PRAGMA user_version (BF_SQLITE_SCHEMA_VERSION). At open:
 *
 *  - a missing file is created (with BF_DB_CREATE) with page_size 65536
 *    (multi-MiB blobs store about twice as fast as with 4 KiB pages) and
 *    journal_mode WAL;
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
 *    locks, which then create nothing either.
 *
 * Read-only (BF_DB_RDONLY): no writer connection. Readers go through
 * SQLite's locks, which need the -shm file beside the database; where it
 * can be neither found nor created (a read-only medium, a directory we may
 * not write) and no -wal holds commits, they open the file immutable (it
 * must not change meanwhile); with commits in such a -wal the open fails
 * with -EROFS. Opening read-write where the file cannot be written fails
 * with -EROFS or -EACCES, saying so.
 *
 * A store transaction is one SQL transaction (BEGIN IMMEDIATE .. COMMIT) on
 * the writer connection, durable when commit returns (synchronous=FULL,
 * unless BF_SQLITE_SYNC=normal is set in the environment for benchmarks).
 * Transactions of different files are serialized by a writer mutex held
 * from begin to commit/abort. An all-zero block is stored as a hole (its
 * row removed). loadblk reads through a pool of read-only connections, one
 * per concurrently loading thread, with incremental BLOB I/O straight into
 * the caller's buffer; in WAL mode readers never wait for the writer.
 * next_stored and stored_blocks (bigfile.h) query the (file, blk) index
 * through the same pool: next_stored is one index seek, stored_blocks a
 * count over the file's index entries (the core caches it). The schema
 * has no per-file block count.
 *
 * Removing a name sets the row's name to NULL; the layer (engine.h) then
 * deletes the row and its blocks in a second transaction, at once or after
 * the file's last bf_file is closed. Opening a database read-write deletes
 * every such row and its blocks (left by a process that died between the
 * two, or while the file was open): so one database is meant
 * to be served by one read-write process at a time (other processes may
 * read it, or change it briefly as the sqlite3 CLI would; a busy_timeout
 * of 5 s absorbs their locks).
 */
#ifndef BIGFILEFS_BACKENDS_SQLITE_H
#define BIGFILEFS_BACKENDS_SQLITE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define BF_SQLITE_APPLICATION_ID 0x42464653 /* "BFFS" */
#define BF_SQLITE_SCHEMA_VERSION 2

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

#endif /* BIGFILEFS_BACKENDS_SQLITE_H */
