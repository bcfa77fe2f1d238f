/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the PostgreSQL engine's schema, and the look at a
 * database before it is used (pg.h says what is taken and what refused).
 *
 * Schema version 2, in the schema `bigfilefs` (docs/design/PG-ENGINE.md
 * section 2; the protocol is docs/COHERENCE.md's; history is
 * docs/HISTORY.md's):
 *
 *   meta(key, value)        'version'; 'log_trimmed' (log rows <= it are
 *                           gone); 'collected' (versions superseded at or
 *                           before it may be gone: a load as of an older
 *                           serial that finds none answers -ESTALE);
 *                           'gc_done' (the versions the log rows <= it
 *                           superseded are collected, or marked);
 *                           'history_keep_ns' (the retention period);
 *                           'history_from' (the oldest serial a view may
 *                           show; 0 in a new database: serial 1 is)
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
 *   file_states(file, serial, name, blksize, size, mode, uid, gid, mtime_ns)
 *                           a file's state right after commit `serial`
 *                           (name NULL: it had none), written by every
 *                           commit that touches the file (pg_history.c)
 *   pins(session, serial)   the serials live views hold
 *   xattrs(file, name, value)
 *                           extended attributes (pg_xattr.c), deleted
 *                           with the file; created if absent when a
 *                           read-write session opens a database of the
 *                           version made without it
 *
 * Version 1 had no history (no file_states, pins, history_*): a read-write
 * open upgrades it in place, in one transaction under the schema-creation
 * lock (upgrade_sql): the tables, one state per file as it is now at the
 * current serial, and history from that serial on (nothing older was
 * kept). A read-only open of it is refused (-EROFS), as is any open of a
 * newer version (-EPROTONOSUPPORT), changing nothing.
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

/* What history adds (version 2): also what the upgrade of version 1
 * creates. */
#define HISTORY_TABLES_SQL                                                              \
    "CREATE TABLE bigfilefs.file_states (file bigint NOT NULL, serial bigint NOT NULL," \
    " name text COLLATE \"C\", blksize integer NOT NULL, size bigint NOT NULL,"         \
    " mode integer NOT NULL, uid bigint NOT NULL, gid bigint NOT NULL,"                 \
    " mtime_ns bigint NOT NULL, PRIMARY KEY (file, serial));"                           \
    "CREATE INDEX file_states_name ON bigfilefs.file_states (name, serial)"             \
    " WHERE name IS NOT NULL;"                                                          \
    "CREATE TABLE bigfilefs.pins (session integer NOT NULL, serial bigint NOT NULL,"    \
    " PRIMARY KEY (session, serial));"

/* BF_HISTORY_KEEP_NS, as SQL */
#define HISTORY_KEEP_SQL "86400000000000"
_Static_assert(BF_HISTORY_KEEP_NS == 86400000000000LL, "HISTORY_KEEP_SQL");

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
    "CREATE TABLE " PG_XATTRS_TABLE ";" HISTORY_TABLES_SQL
    "INSERT INTO bigfilefs.counter VALUES (true, 0);"
    "INSERT INTO bigfilefs.meta VALUES ('version', " PG_STR(
        BF_PG_SCHEMA_VERSION) "),"
                              " ('log_trimmed', 0), ('collected', 0), ('gc_done', 0),"
                              " ('history_keep_ns', " HISTORY_KEEP_SQL "), ('history_from', 0);";

/* Version 1 -> 2, in the transaction that holds the schema lock and the
 * counter row (no commit lands meanwhile). */
static const char upgrade_sql[] = HISTORY_TABLES_SQL
    "INSERT INTO bigfilefs.file_states (file, serial, name, blksize, size, mode, uid, gid,"
    " mtime_ns) SELECT f.id, c.serial, f.name, f.blksize, f.size, f.mode, f.uid, f.gid,"
    " f.mtime_ns FROM bigfilefs.files f, bigfilefs.counter c;"
    "INSERT INTO bigfilefs.meta SELECT 'history_keep_ns', " HISTORY_KEEP_SQL
    " UNION ALL SELECT 'history_from', serial FROM bigfilefs.counter;"
    "UPDATE bigfilefs.meta SET value = 2 WHERE key = 'version';";
_Static_assert(BF_PG_SCHEMA_VERSION == 2, "upgrade_sql goes from 1 to BF_PG_SCHEMA_VERSION");

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

/* The schema's version (0: none readable), read through c; errbuf says
 * why it cannot be. */
static int read_version(struct pg_db *d, struct pgc *c, const char *sql, long long *v, char *errbuf,
                        size_t errlen)
{
    PGresult *r;
    int e = pgc_simple(d, c, sql, &r, "reading the schema's version");
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
    *v = PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return 0;
}

/* Upgrade version 1 in place (see the top), in one transaction; a schema
 * another session upgraded meanwhile is left alone. On failure nothing is
 * changed and errbuf says why. */
static int upgrade(struct pg_db *d, struct pgc *c, char *errbuf, size_t errlen)
{
    long long v = 0;
    int e = pgc_simple(
        d, c,
        "BEGIN; SELECT pg_advisory_xact_lock(" PG_STR(PG_CLASS) ", " PG_STR(PG_LOCK_SCHEMA) ")",
        NULL, "upgrading the schema");
    if (e == 0)
        e = read_version(d, c, "SELECT value FROM bigfilefs.meta WHERE key = 'version' FOR UPDATE",
                         &v, errbuf, errlen);
    if (e == 0 && v == 1)
        e = pgc_simple(d, c, "SELECT serial FROM bigfilefs.counter FOR UPDATE", NULL,
                       "upgrading the schema");
    if (e == 0 && v == 1)
        e = pgc_simple(d, c, upgrade_sql, NULL, "upgrading the schema");
    if (e == 0 && v != 1 && v != BF_PG_SCHEMA_VERSION) {
        bf_errf(errbuf, errlen, "%s: the bigfilefs schema's version changed to %lld meanwhile",
                d->label, v);
        e = -EPROTO;
    }
    if (e == 0)
        e = pgc_simple(d, c, "COMMIT", NULL, "upgrading the schema");
    if (e < 0 && c->c)
        pgc_simple(d, c, "ROLLBACK", NULL, "upgrading the schema");
    if (e < 0 && errbuf && !errbuf[0])
        bf_errf(errbuf, errlen,
                "%s: cannot upgrade the bigfilefs schema from version 1 to %d: %s (it is left at "
                "version 1)",
                d->label, BF_PG_SCHEMA_VERSION, strerror(-e));
    else if (e == 0 && v == 1)
        bf_db_log(&d->base,
                  "the bigfilefs schema was upgraded from version 1 to %d: history is kept from "
                  "now on",
                  BF_PG_SCHEMA_VERSION);
    return e;
}

/* Our schema is there: accept its version, upgrade an older one (never
 * read-only), or refuse. */
static int check_version(struct pg_db *d, struct pgc *c, unsigned flags, char *errbuf,
                         size_t errlen)
{
    long long v = 0;
    int e = read_version(d, c, "SELECT value FROM bigfilefs.meta WHERE key = 'version'", &v, errbuf,
                         errlen);
    if (e < 0)
        return e;
    if (v == BF_PG_SCHEMA_VERSION)
        return 0;
    if (v > BF_PG_SCHEMA_VERSION) {
        bf_errf(errbuf, errlen,
                "%s: bigfilefs schema version %lld, newer than this bigfilefs (%d): not changed",
                d->label, v, BF_PG_SCHEMA_VERSION);
        return -EPROTONOSUPPORT;
    }
    if (v == 1 && (flags & BF_DB_RDONLY)) {
        bf_errf(errbuf, errlen,
                "%s: bigfilefs schema version 1 (an older bigfilefs): upgrade it by mounting it "
                "read-write once (to version %d); a read-only mount cannot",
                d->label, BF_PG_SCHEMA_VERSION);
        return -EROFS;
    }
    if (v == 1)
        return upgrade(d, c, errbuf, errlen);
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
static int create_schema(struct pg_db *d, struct pgc *c, unsigned flags, char *errbuf,
                         size_t errlen)
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
        e = check_version(d, c, flags, errbuf, errlen); /* another mount made it meanwhile */
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
        return check_version(d, c, flags, errbuf, errlen);
    if ((e = refuse_unless_empty(d, &lk, errbuf, errlen)) < 0)
        return e;
    if ((flags & BF_DB_RDONLY) || !(flags & BF_DB_CREATE)) {
        bf_errf(errbuf, errlen, "%s: not a bigfilefs database (empty, no bigfilefs schema)%s",
                d->label,
                (flags & BF_DB_RDONLY) ? "; a read-write mount creates it"
                                       : "; open it with create to make one");
        return -EPROTO;
    }
    return create_schema(d, c, flags, errbuf, errlen);
}

int pg_schema_prepare(struct pg_db *d, struct pgc *c, unsigned flags, char *errbuf, size_t errlen)
{
    int e = schema_prepare(d, c, flags, errbuf, errlen);
    return e < 0 ? e : pg_xattr_table(d, c, flags, errbuf, errlen);
}
