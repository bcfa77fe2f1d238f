/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/pg: the PostgreSQL plumbing of `make check`.
 *
 * Before the pg: engine exists, these prove that a build with libpq gets a
 * private server (tests/pg/pgserver.sh), reaches it over its unix socket
 * and over TCP, and moves a 2 MiB block as the engine will: a bytea in
 * binary format both ways, byte for byte, stored uncompressed.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "pgtest.h"

#define BLOCK ((size_t)2 << 20)

/* Every byte value, NULs and backslashes included, so that any text
 * escaping on the way would show. */
static unsigned char *block_new(void)
{
    unsigned char *b = malloc(BLOCK);
    cr_assert(b);
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (size_t i = 0; i < BLOCK; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (unsigned char)x;
    }
    return b;
}

/* INSERT the block as a binary parameter, SELECT it back as a binary
 * result, and check both the bytes and the length the server stored. */
static void roundtrip(PGconn *c, const unsigned char *block)
{
    PQclear(pgt_exec(c, "CREATE TEMP TABLE blocks(id int PRIMARY KEY, data bytea NOT NULL)",
                     PGRES_COMMAND_OK));
    PQclear(
        pgt_exec(c, "ALTER TABLE blocks ALTER COLUMN data SET STORAGE EXTERNAL", PGRES_COMMAND_OK));

    const char *vals[] = { (const char *)block };
    const int lens[] = { (int)BLOCK }, fmts[] = { 1 };
    PGresult *r = PQexecParams(c, "INSERT INTO blocks VALUES (1, $1)", 1, NULL, vals, lens, fmts,
                               1);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK, "insert: %s", PQerrorMessage(c));
    PQclear(r);

    r = PQexecParams(c, "SELECT data, octet_length(data) FROM blocks WHERE id = 1", 0, NULL, NULL,
                     NULL, NULL, 1);
    cr_assert(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "select: %s",
              PQerrorMessage(c));
    cr_assert(PQfformat(r, 0) == 1, "the result is not in binary format");
    cr_assert_eq(PQgetlength(r, 0, 0), (int)BLOCK);
    cr_assert(memcmp(PQgetvalue(r, 0, 0), block, BLOCK) == 0, "the block came back changed");
    uint32_t be;
    cr_assert_eq(PQgetlength(r, 0, 1), 4);
    memcpy(&be, PQgetvalue(r, 0, 1), 4);
    cr_assert_eq(ntohl(be), (uint32_t)BLOCK, "the server stored %u bytes", ntohl(be));
    PQclear(r);
}

Test(plumbing, a_2mib_bytea_roundtrips_in_binary_over_the_unix_socket, .timeout = 60)
{
    unsigned char *block = block_new();
    PGconn *c = pgt_connect(pgt_conninfo(0), NULL);
    roundtrip(c, block);
    PQfinish(c);
    free(block);
}

Test(plumbing, a_2mib_bytea_roundtrips_in_binary_over_tcp, .timeout = 60)
{
    unsigned char *block = block_new();
    PGconn *c = pgt_connect(pgt_conninfo(1), NULL);
    /* really TCP: a unix-socket connection has no server address */
    PGresult *r = pgt_exec(c, "SELECT host(inet_server_addr())", PGRES_TUPLES_OK);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "127.0.0.1");
    PQclear(r);
    roundtrip(c, block);
    PQfinish(c);
    free(block);
}

/* STORAGE EXTERNAL: a block that compresses well is still stored whole,
 * while the default (EXTENDED) tries and compresses it. */
Test(plumbing, storage_external_stores_a_compressible_block_uncompressed, .timeout = 60)
{
    PGconn *c = pgt_connect(pgt_conninfo(0), NULL);
    PQclear(pgt_exec(c,
                     "CREATE TEMP TABLE t(ext bytea, dflt bytea);"
                     "ALTER TABLE t ALTER COLUMN ext SET STORAGE EXTERNAL;"
                     "INSERT INTO t SELECT b, b FROM (SELECT decode(repeat('ab', 2 << 20), 'hex') "
                     "AS b) s",
                     PGRES_COMMAND_OK));
    PGresult *r = pgt_exec(c, "SELECT pg_column_size(ext), pg_column_size(dflt) FROM t",
                           PGRES_TUPLES_OK);
    long ext = atol(PQgetvalue(r, 0, 0)), dflt = atol(PQgetvalue(r, 0, 1));
    cr_assert_geq(ext, (long)BLOCK, "EXTERNAL stored %ld bytes", ext);
    cr_assert_lt(dflt, (long)BLOCK / 10, "EXTENDED stored %ld bytes", dflt);
    PQclear(r);
    PQfinish(c);
}

Test(plumbing, a_test_gets_an_empty_database_of_its_own, .timeout = 60)
{
    char name[64];
    pgt_db_create(name, sizeof(name));
    PGconn *c = pgt_connect(pgt_conninfo(1), name);
    cr_assert_str_eq(PQdb(c), name);
    PGresult *r = pgt_exec(c,
                           "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON "
                           "n.oid = c.relnamespace WHERE n.nspname NOT IN "
                           "('pg_catalog', 'information_schema', 'pg_toast')",
                           PGRES_TUPLES_OK);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
    PQfinish(c);
    pgt_db_drop(name);
}
