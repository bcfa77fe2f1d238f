/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the PostgreSQL engine ("pg:CONNINFO").
 *
 * One PostgreSQL database holds many bigfiles, shared by any number of
 * sessions (daemons) on any number of machines (docs/COHERENCE.md). Every
 * object lives in the schema `bigfilefs` (BF_PG_SCHEMA_VERSION in its meta
 * table); every statement names its objects with the schema, and every
 * connection runs with search_path = pg_catalog, pg_temp. At open:
 *
 *  - a database without the schema and with no relation of another
 *    application gets it (with BF_DB_CREATE; a read-only open is refused),
 *    in one transaction, under an advisory lock (two first mounts at once
 *    make it once); an existing empty schema `bigfilefs` (made by an
 *    administrator for the role) is filled in;
 *  - a database without the schema but with relations of another
 *    application is refused with -EPROTO, a schema of a newer version with
 *    -EPROTONOSUPPORT, a damaged one with -EPROTO: nothing is changed
 *    (every look before the decision is a read, and no lock or row is
 *    taken before it). A database that has our schema is used even if
 *    other applications' tables live beside it;
 *  - the mount mode is an advisory lock (exclusive, or shared with
 *    BF_DB_SHARED) held for the session's life: -EBUSY when another
 *    session's is in the way;
 *  - a read-write session registers itself (a sessions row, and an
 *    advisory lock of its own as its liveness) and cleans up after dead
 *    sessions.
 *
 * Connections (each non-blocking, every call bounded by a deadline, see
 * pg_internal.h): one writer (uploads, commits, holds), a pool of readers
 * grown on demand up to bf_pg_options.readers (loads and every read-only
 * query: parallel loads run in parallel on the server), and the watcher's
 * (the session's locks, LISTEN, the commit log, the housekeeping). A
 * connection that breaks fails the call that was using it (-EIO) and is
 * opened again at its next use; the watcher's reconnects with a backoff,
 * takes its locks again and catches up from its applied serial.
 *
 * A store transaction uploads each block by itself before the commit (one
 * autocommit INSERT, synchronous_commit off) and commits in one more
 * transaction (synchronous_commit on, which makes every upload before it
 * durable too), whose commit section — from the counter row's lock to
 * COMMIT — is two pipelined round trips. Block contents are immutable rows
 * (bytea, STORAGE EXTERNAL: never compressed), moved as binary parameters
 * and results. The block map is insert-only in the commit section; old
 * versions are collected by the housekeeping (or, by a session alone on
 * its database, right after its commit).
 *
 * Passwords: the conninfo may name one, but it is never logged nor written
 * into an error message: every message names the database by its redacted
 * conninfo (bf_pg_redact). bigfilefs(8) says where a password goes
 * instead (a password file, a service file, PGPASSWORD).
 */
#ifndef BIGFILEFS_BACKENDS_PG_H
#define BIGFILEFS_BACKENDS_PG_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define BF_PG_SCHEMA_VERSION 2
#define BF_PG_READERS 4           /* reader connections at most, by default */
#define BF_PG_READERS_MAX 16      /* ... and at most */
#define BF_PG_DEAD_GRACE_MS 30000 /* see bf_pg_options.dead_grace_ms */

/* The engine's own options (bf_pg_open; NULL or zero fields: defaults). */
struct bf_pg_options {
    /* Reader connections at most (1..BF_PG_READERS_MAX; 0: BF_PG_READERS).
     * They are opened as concurrent loads need them. */
    unsigned readers;
    /* A session is dead when its liveness lock is not held and it has not
     * shown a sign of life (its housekeeping updates its row) for this
     * long, and the server has been up for this long: a server restart
     * drops every lock, and a session's watcher needs a moment to take
     * its own again. Then another session cleans up after it (its uploads
     * and holds go). 0: BF_PG_DEAD_GRACE_MS. */
    unsigned dead_grace_ms;
};

/* Open a session on the PostgreSQL database that `conninfo` names (any
 * libpq form: "host=db1 dbname=arrays", "postgresql://...",
 * "service=NAME"; the spec "pg:CONNINFO" of bf_db_open without its
 * prefix). See bf_db_open in backend.h for flags, errors and errbuf;
 * besides those: -EINVAL (conninfo not understood), -EIO (the server
 * cannot be reached; errbuf has libpq's reason), -ENOENT (no such
 * database), -EACCES (authentication failed, or the role may not create
 * the schema), -EPROTONOSUPPORT (a server older than PostgreSQL 13). */
int bf_pg_open(const char *conninfo, unsigned flags, const struct bf_db_options *opt,
               const struct bf_pg_options *popt, bf_db **out, char *errbuf, size_t errlen);

/* Write "pg:" and conninfo without its password (libpq's keyword form,
 * password=*** in its place; a URI is written in that form too) into buf
 * (always terminated; cut if too long). Returns 0, or -EINVAL when
 * conninfo cannot be parsed (buf then says so, without repeating it). */
int bf_pg_redact(const char *conninfo, char *buf, size_t len);

/* For tests: how many times db's watcher connection was opened again after
 * it broke (0 if db is not a pg: database). Thread-safe. */
uint64_t bf_pg_reconnects(bf_db *db);

/* For tests: wait (on a condition variable) until bf_pg_reconnects(db) is
 * at least n, or timeout_ms milliseconds have passed. Returns 0,
 * -ETIMEDOUT, or -EINVAL (not a pg: database). */
int bf_pg_wait_reconnects(bf_db *db, uint64_t n, int timeout_ms);

#endif /* BIGFILEFS_BACKENDS_PG_H */
