/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/pg: helpers for tests against the private server
 * (see pgtest.h). */
#include "pgtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef CORE_MINICR
#include "../core/minicr.h" /* the TSan build: Criterion cannot run there */
#else
#include <criterion/criterion.h>
#endif

const char *pgt_conninfo(int tcp)
{
    const char *var = tcp ? "BF_PGTEST_CONNINFO_TCP" : "BF_PGTEST_CONNINFO";
    const char *c = getenv(var);
    cr_assert(c && *c,
              "%s is not set: run this program through tests/pg/pgserver.sh "
              "(make check does; by hand: sh tests/pg/pgserver.sh run PROGRAM)",
              var);
    return c;
}

PGconn *pgt_connect(const char *conninfo, const char *dbname)
{
    /* The first dbname is expanded as a conninfo; a second one, a plain
     * name, overrides the database it names. */
    const char *keys[] = { "dbname", "connect_timeout", dbname ? "dbname" : NULL, NULL };
    const char *vals[] = { conninfo, "10", dbname, NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    cr_assert(c && PQstatus(c) == CONNECTION_OK, "connect to %s (database %s): %s", conninfo,
              dbname ? dbname : "as given", c ? PQerrorMessage(c) : "out of memory");
    return c;
}

PGresult *pgt_exec(PGconn *c, const char *sql, ExecStatusType expect)
{
    PGresult *r = PQexec(c, sql);
    cr_assert(PQresultStatus(r) == expect, "%s: %s (%s)", sql, PQresStatus(PQresultStatus(r)),
              PQerrorMessage(c));
    return r;
}

static void admin_exec(const char *sql)
{
    PGconn *c = pgt_connect(pgt_conninfo(0), "postgres");
    PQclear(pgt_exec(c, sql, PGRES_COMMAND_OK));
    PQfinish(c);
}

void pgt_db_create(char *name, size_t n)
{
    static unsigned seq; /* per test process: with the pid, unique in the run */
    char sql[128];
    cr_assert(n >= 64);
    snprintf(name, n, "bft_%ld_%u", (long)getpid(), seq++);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    admin_exec(sql);
}

void pgt_db_drop(const char *name)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", name);
    admin_exec(sql);
}
