/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the PostgreSQL engine's schema, and the look at a
 * database before it is used (pg.h says what is taken and what refused).
 *
 * Schema version 1, in the schema `bigfilefs` (docs/design/PG-ENGINE.md
 * section 2; the protocol is docs/COHERENCE.md's):
 *
 *   meta(key, value)        'version'; 'log_trimmed' (log rows <= it are
 *                           gone); 'collected' (versions superseded at or
 *                           before it may be gone: a load as of an older
 *                           serial that finds none answers -ESTALE);
 *                           'gc_done' (the versions the log rows <= it
 *                           superseded are collected, or marked)
 *   counter(one, serial)    one row: the last serial given; its row lock
 *                           orders the commits
 *   files(id, name, blksize, size, mode, uid, gid, mtime_ns, ctime_ns,
 *         content_serial, content_session, size_serial, size_session,
 *         meta_serial)      name NULL: unlinked, kept while held; names
 *                           sort bytewise (COLLATE "C")
 *   contents(id, data)      block contents, immutable, one row per upload;
 *                           data STORAGE EXTERNAL (never compressed)
 *   uploads(content, session)
 *                           contents no version links: an upload of a live
 *                           session's open transaction, or garbage
 *                           (session 0) for the housekeeping to delete
 *   blockmap(file, blk, serial, session, content, superseded)
 *                           versions, unique on (file, blk, serial DESC):
 *                           the newest of a block is its current one
 *                           (insert-only: a commit never updates an old
 *                           one); content NULL is a hole; superseded is
 *                           only set on versions whose log row the trim
 *                           had to drop before it could collect them
 *   commit_log(serial, session, kind, file, file2, time_ns, size, trunc,
 *              blocks, name, name2, flags)
 *   sessions(id, pid, host, started_ns, applied, shared, seen)
 *                           seen: the last sign of life (server clock)
 *   holds(session, file)
 *   xattrs(file, name, value)
 *                           extended attributes (pg_xattr.c), deleted
 *                           with the file; created if absent when a
 *                           read-write session opens a database of the
 *                           version made without it
 *
 * No foreign keys (they would add lookups to the commit section): the
 * engine keeps the references — every blockmap.content is a contents row,
 * every uploads.content a contents row no version references.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/pg_internal.h"

#define PG_STR_(x) #x
#define PG_STR(x) PG_STR_(x)

static const char schema_sql[] =
    "CREATE SCHEMA IF NOT EXISTS bigfilefs;"
    "COMMENT ON SCHEMA bigfilefs IS 'bigfilefs: bigfiles, their blocks and their commits';"
    "CREATE TABLE bigfilefs.meta (key text PRIMARY KEY, value bigint NOT NULL);"
    "CREATE TABLE bigfilefs.counter (one boolean PRIMARY KEY DEFAULT true CHECK (one),"
    " serial bigint NOT NULL);"
    "CREATE SEQUENCE bigfilefs.file_ids;"
    "CREATE SEQUENCE bigfilefs.content_ids;"
    "CREATE SEQUENCE bigfilefs.session_ids AS integer CYCLE;"
    "CREATE TABLE bigfilefs.files (id bigint PRIMARY KEY, name text COLLATE \"C\" UNIQUE,"
    " blksize integer NOT NULL, size bigint NOT NULL, mode integer NOT NULL,"
    " uid bigint NOT NULL, gid bigint NOT NULL, mtime_ns bigint NOT NULL,"
    " ctime_ns bigint NOT NULL,"
    " content_serial bigint NOT NULL DEFAULT 0, content_session integer NOT NULL DEFAULT 0,"
    " size_serial bigint NOT NULL DEFAULT 0, size_session integer NOT NULL DEFAULT 0,"
    " meta_serial bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE bigfilefs.contents (id bigint PRIMARY KEY, data bytea NOT NULL);"
    "ALTER TABLE bigfilefs.contents ALTER COLUMN data SET STORAGE EXTERNAL;"
    "CREATE TABLE bigfilefs.uploads (content bigint PRIMARY KEY, session integer NOT NULL);"
    "CREATE INDEX uploads_session ON bigfilefs.uploads (session);"
    "CREATE TABLE bigfilefs.blockmap (file bigint NOT NULL, blk bigint NOT NULL,"
    " serial bigint NOT NULL, session integer NOT NULL, content bigint, superseded bigint);"
    "CREATE UNIQUE INDEX blockmap_version ON bigfilefs.blockmap (file, blk, serial DESC);"
    "CREATE INDEX blockmap_superseded ON bigfilefs.blockmap (superseded)"
    " WHERE superseded IS NOT NULL;"
    "CREATE TABLE bigfilefs.commit_log (serial bigint PRIMARY KEY, session integer NOT NULL,"
    " kind smallint NOT NULL, file bigint, file2 bigint, time_ns bigint NOT NULL,"
    " size bigint, trunc bigint, blocks bytea, name text, name2 text, flags integer);"
    "CREATE TABLE bigfilefs.sessions (id integer PRIMARY KEY, pid integer NOT NULL,"
    " host text NOT NULL, started_ns bigint NOT NULL, applied bigint NOT NULL,"
    " shared boolean NOT NULL, seen timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE bigfilefs.holds (session integer NOT NULL, file bigint NOT NULL,"
    " PRIMARY KEY (session, file));"
    "CREATE TABLE " PG_XATTRS_TABLE ";"
    "INSERT INTO bigfilefs.counter VALUES (true, 0);"
    "INSERT INTO bigfilefs.meta VALUES ('version', " PG_STR(
        BF_PG_SCHEMA_VERSION) "),"
                              " ('log_trimmed', 0), ('collected', 0), ('gc_done', 0);";

/* What a database holds, as far as the decision goes. */
struct look {
    bool schema;     /* a schema named bigfilefs */
    bool meta;       /* ... with its meta table */
    int64_t ours;    /* relations in it */
    int64_t foreign; /* tables, views, sequences of other applications (outside the
                        system's schemas) */
    char user[64], db[64];
};

/* Copy a text column (binary: its bytes) into buf. */
static void text_col(const PGresult *r, int col, char *buf, size_t len)
{
    snprintf(buf, len, "%.*s", PQgetlength(r, 0, col), PQgetvalue(r, 0, col));
}

static int look_at(struct pg_db *d, struct pgc *c, struct look *lk)
{
    PGresult *r;
    int e = pgc_simple(
        d, c,
        "SELECT to_regnamespace('bigfilefs') IS NOT NULL, to_regclass('bigfilefs.meta') IS NOT "
        "NULL,"
        " (SELECT count(*) FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace"
        " WHERE n.nspname = 'bigfilefs'),"
        " (SELECT count(*) FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace"
        " WHERE k.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'bigfilefs')"
        " AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'),"
        " current_user, current_database()",
        &r, "looking at the database");
    if (e < 0)
        return e;
    /* simple protocol: text results */
    lk->schema = PQgetvalue(r, 0, 0)[0] == 't';
    lk->meta = PQgetvalue(r, 0, 1)[0] == 't';
    lk->ours = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    lk->foreign = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    text_col(r, 4, lk->user, sizeof(lk->user));
    text_col(r, 5, lk->db, sizeof(lk->db));
    PQclear(r);
    return 0;
}

/* Our schema is there: accept its version or refuse. */
static int check_version(struct pg_db *d, struct pgc *c, char *errbuf, size_t errlen)
{
    PGresult *r;
    int e = pgc_simple(d, c, "SELECT value FROM bigfilefs.meta WHERE key = 'version'", &r,
                       "reading the schema's version");
    if (e == -EACCES) {
        bf_errf(errbuf, errlen,
                "%s: the role may not read the bigfilefs schema (GRANT it USAGE "
                "and the rights on its tables)",
                d->label);
        return e;
    }
    if (e < 0) {
        bf_errf(errbuf, errlen, "%s: cannot read the bigfilefs schema's version", d->label);
        return e == -EIO ? -EPROTO : e;
    }
    long long v = PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    if (v == BF_PG_SCHEMA_VERSION)
        return 0;
    if (v > BF_PG_SCHEMA_VERSION) {
        bf_errf(errbuf, errlen,
                "%s: bigfilefs schema version %lld, newer than this bigfilefs (%d): not changed",
                d->label, v, BF_PG_SCHEMA_VERSION);
        return -EPROTONOSUPPORT;
    }
    bf_errf(errbuf, errlen, "%s: a damaged bigfilefs schema (version %lld): not changed", d->label,
            v);
    return -EPROTO;
}

/* The refusals of a database without our schema, or with a damaged one;
 * 0 when it is empty (or its schema `bigfilefs` is: made for us). */
static int refuse_unless_empty(struct pg_db *d, const struct look *lk, char *errbuf, size_t errlen)
{
    if (lk->schema && lk->ours > 0) {
        bf_errf(errbuf, errlen,
                "%s: a damaged bigfilefs schema (%lld relations, no meta table): not changed",
                d->label, (long long)lk->ours);
        return -EPROTO;
    }
    if (lk->foreign > 0) {
        bf_errf(errbuf, errlen,
                "%s: not a bigfilefs database (another application's tables: %lld, no "
                "bigfilefs schema): not changed",
                d->label, (long long)lk->foreign);
        return -EPROTO;
    }
    return 0;
}

/* Create the schema in one transaction, under the advisory lock that makes
 * two first mounts at once create it once (the second finds it made). */
static int create_schema(struct pg_db *d, struct pgc *c, char *errbuf, size_t errlen)
{
    struct look lk;
    int e = pgc_simple(
        d, c,
        "BEGIN; SELECT pg_advisory_xact_lock(" PG_STR(PG_CLASS) ", " PG_STR(PG_LOCK_SCHEMA) ")",
        NULL, "creating the schema");
    if (e == 0)
        e = look_at(d, c, &lk);
    if (e == 0 && !lk.meta && (e = refuse_unless_empty(d, &lk, errbuf, errlen)) == 0)
        e = pgc_simple(d, c, schema_sql, NULL, "creating the schema");
    if (e == 0)
        e = pgc_simple(d, c, "COMMIT", NULL, "creating the schema");
    if (e < 0 && c->c)
        pgc_simple(d, c, "ROLLBACK", NULL, "creating the schema");
    if (e == -EACCES)
        bf_errf(errbuf, errlen,
                "%s: role %s may not create the bigfilefs schema in database %s (GRANT CREATE ON "
                "DATABASE %s TO %s, or CREATE SCHEMA bigfilefs AUTHORIZATION %s)",
                d->label, lk.user, lk.db, lk.db, lk.user, lk.user);
    else if (e < 0 && errbuf && !errbuf[0])
        bf_errf(errbuf, errlen, "%s: cannot create the bigfilefs schema", d->label);
    if (e == 0 && lk.meta)
        e = check_version(d, c, errbuf, errlen); /* another mount made it meanwhile */
    return e;
}

/* pg_schema_prepare but for the xattrs table. */
static int schema_prepare(struct pg_db *d, struct pgc *c, unsigned flags, char *errbuf,
                          size_t errlen)
{
    struct look lk;
    int e = look_at(d, c, &lk);
    if (e < 0) {
        bf_errf(errbuf, errlen, "%s: cannot look at the database", d->label);
        return e;
    }
    if (lk.meta)
        return check_version(d, c, errbuf, errlen);
    if ((e = refuse_unless_empty(d, &lk, errbuf, errlen)) < 0)
        return e;
    if ((flags & BF_DB_RDONLY) || !(flags & BF_DB_CREATE)) {
        bf_errf(errbuf, errlen, "%s: not a bigfilefs database (empty, no bigfilefs schema)%s",
                d->label,
                (flags & BF_DB_RDONLY) ? "; a read-write mount creates it"
                                       : "; open it with create to make one");
        return -EPROTO;
    }
    return create_schema(d, c, errbuf, errlen);
}

int pg_schema_prepare(struct pg_db *d, struct pgc *c, unsigned flags, char *errbuf, size_t errlen)
{
    int e = schema_prepare(d, c, flags, errbuf, errlen);
    return e < 0 ? e : pg_xattr_table(d, c, flags, errbuf, errlen);
}
