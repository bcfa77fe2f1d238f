/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/pg: helpers for tests that talk to the run's private
 * PostgreSQL server.
 *
 * `make check` runs every test of PG_TESTS (tests/pg/local.mk) through
 * tests/pg/pgserver.sh, which starts a server of the test program's own,
 * exports its parameters and stops it when the program ends:
 *
 *   BF_PGTEST_CONNINFO      libpq conninfo over the unix socket
 *   BF_PGTEST_CONNINFO_TCP  the same server over TCP on 127.0.0.1 (how a
 *                           remote machine talks to it)
 *   BF_PGTEST_DIR           the server's directory (socket, log, data)
 *   BF_PGSERVER             the script, e.g. for `$BF_PGSERVER restart DIR`
 *
 * To run a test program by hand: `sh tests/pg/pgserver.sh run
 * tests/pg/test_pgplumbing` (from the build directory).
 *
 * Every helper fails the test (cr_assert) on an error, so a test body reads
 * as its scenario. None keeps state; each may be called from any test
 * process (Criterion forks one per test).
 */
#ifndef BIGFILEFS_TESTS_PG_PGTEST_H
#define BIGFILEFS_TESTS_PG_PGTEST_H

#include <stddef.h>

#include <libpq-fe.h>

/* The run's server: BF_PGTEST_CONNINFO, or with `tcp` BF_PGTEST_CONNINFO_TCP.
 * Fails the test when unset (the program was not run through pgserver.sh). */
const char *pgt_conninfo(int tcp);

/* Connect to `conninfo` (any libpq form), to database `dbname` instead of
 * the one it names if dbname is not NULL, with connect_timeout=10. */
PGconn *pgt_connect(const char *conninfo, const char *dbname);

/* Run `sql` (no parameters, text results) and fail the test unless its
 * status is `expect`. Returns the result (the caller PQclear()s it). */
PGresult *pgt_exec(PGconn *c, const char *sql, ExecStatusType expect);

/* Create a new, empty database for this test on the run's server and write
 * its name (at most 63 bytes) into name[n]. Every call makes another one;
 * pgt_db_drop() drops it (the server's directory goes with the run anyway). */
void pgt_db_create(char *name, size_t n);
void pgt_db_drop(const char *name);

#endif /* BIGFILEFS_TESTS_PG_PGTEST_H */
