/* SPDX-License-Identifier: MIT */
/* bigfilefs benchmarks — the raw SQLite references.
 *
 * What the SQLite backend does for a block, written as a plain C loop with
 * no FUSE, no core and no page cache in between: the ceiling the daemon's
 * SQLite path is measured against. Both work on the bigfilefs schema, version
 * 3 (src/backends/sqlite_schema.c): a block's current version is a blockmap
 * row (file, blk, serial, content) found by the partial index
 * blockmap_current; its bytes are at the content's extent (off, len) in the
 * block file, DB + "-blocks", or, for a content without one, a row of
 * contents(id, data).
 */
#ifndef BIGFILEFS_BENCH_RAWSQL_H
#define BIGFILEFS_BENCH_RAWSQL_H

#include <stdint.h>

#include "util.h"

/* Read every block of the bigfile `name` of database `db` through a
 * read-only connection, as the backend's loadblk does (look the row up
 * with its extent, pread from the block file — or incremental BLOB I/O for
 * a content without an extent — into one reused buffer — or, with `fresh`, into a
 * new anonymous mapping per block, as the core hands loadblk a fresh
 * buffer), summing the words of each block. `cold` is applied to the database file first (DROP drops the OS
 * cache; RECLAIM is a no-op here). On success *secs is the time of the loop,
 * *bytes the bytes of the file's size, *sum the word sum (absent blocks
 * count as zeros). Errors: -ENOENT (no such file), -EIO (SQLite error,
 * printed to stderr), -ENOMEM. */
int rawsql_read(const char *db, const char *name, enum bench_cold cold, int fresh, double *secs,
                uint64_t *bytes, uint64_t *sum);

/* Write `length` bytes of the benchmark pattern (seed) as blocks of blksize
 * into `scratch` — a database created on first use with the schema copied
 * from the bigfilefs database `schema_from` and the backend's settings
 * (page_size 65536, WAL, synchronous as BF_SQLITE_SYNC says: FULL by
 * default) — in ONE transaction, as a writeout does: BEGIN IMMEDIATE,
 * per block a contents row and its blockmap version, COMMIT. *secs is the time from BEGIN to the
 * end of COMMIT. Errors: -EIO (SQLite error, printed), -ENOMEM. */
int rawsql_write(const char *scratch, const char *schema_from, uint32_t blksize, uint64_t length,
                 uint64_t seed, double *secs);

#endif /* BIGFILEFS_BENCH_RAWSQL_H */
