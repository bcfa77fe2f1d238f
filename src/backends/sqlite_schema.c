/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the SQLite engine's schema: looking at a file
 * before using it, creating the schema, and the upgrades of schemas 1 and
 * 2 (sqlite.h says what is refused; the tables are described at the top of
 * sqlite.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/sqlite_internal.h"

#define SQ_QUICK_CHECK_MAX ((off_t)64 << 20) /* quick_check dbs up to this size */

/* Schema 2 (COHERENCE.md section 2), in the order an upgrade creates it
 * (the files table of schema 1 gets its new columns by ALTER TABLE). */
#define SQ_SCHEMA2_TABLES                                                                      \
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"                            \
    "CREATE TABLE contents(id INTEGER PRIMARY KEY, data BLOB NOT NULL);"                       \
    "CREATE TABLE uploads(session INTEGER NOT NULL, bytes INTEGER NOT NULL,"                   \
    " content INTEGER NOT NULL, since INTEGER NOT NULL DEFAULT 0,"                             \
    " PRIMARY KEY(session, bytes, content)) WITHOUT ROWID;"                                    \
    "CREATE TABLE blockmap(file INTEGER NOT NULL, blk INTEGER NOT NULL,"                       \
    " serial INTEGER NOT NULL, session INTEGER NOT NULL, content INTEGER, superseded INTEGER," \
    " PRIMARY KEY(file, blk, serial)) WITHOUT ROWID;"                                          \
    "CREATE INDEX blockmap_current ON blockmap(file, blk)"                                     \
    " WHERE superseded IS NULL AND content IS NOT NULL;"                                       \
    "CREATE INDEX blockmap_superseded ON blockmap(superseded) WHERE superseded IS NOT NULL;"   \
    "CREATE TABLE commit_log(serial INTEGER PRIMARY KEY, session INTEGER NOT NULL,"            \
    " kind INTEGER NOT NULL, file INTEGER, file2 INTEGER, time_ns INTEGER NOT NULL,"           \
    " size INTEGER, trunc INTEGER, blocks BLOB, name TEXT, name2 TEXT, flags INTEGER);"        \
    "CREATE TABLE sessions(id INTEGER PRIMARY KEY AUTOINCREMENT, pid INTEGER, host TEXT,"      \
    " started_ns INTEGER, applied INTEGER NOT NULL, shared INTEGER NOT NULL);"                 \
    "CREATE TABLE holds(session INTEGER NOT NULL, file INTEGER NOT NULL,"                      \
    " PRIMARY KEY(session, file)) WITHOUT ROWID;"                                              \
    "INSERT INTO meta(key, value) VALUES('serial', 0), ('log_trimmed', 0), ('collected', 0);"

/* Schema 3: history (docs/HISTORY.md) and the block file
 * (sqlite_blocks.c). A new database keeps history from serial 1 on
 * (history_from 0); an upgraded one from the serial at the upgrade, with
 * one state of every file there (named or nameless, as it is), since
 * nothing older was kept. An upgraded database keeps its contents as blobs
 * (a content without an extent); new uploads go to the block file. */
#define SQ_SCHEMA3_TABLES                                                                       \
    "CREATE TABLE IF NOT EXISTS extents(id INTEGER PRIMARY KEY, off INTEGER NOT NULL,"          \
    " len INTEGER NOT NULL, gen INTEGER NOT NULL);"                                             \
    "CREATE TABLE IF NOT EXISTS free_extents(off INTEGER PRIMARY KEY, len INTEGER NOT NULL,"    \
    " gen INTEGER NOT NULL);"                                                                   \
    "INSERT OR IGNORE INTO meta(key, value) VALUES('blocks_end', 0);"                           \
    "CREATE TABLE file_states(file INTEGER NOT NULL, serial INTEGER NOT NULL, name TEXT,"       \
    " blksize INTEGER NOT NULL, size INTEGER NOT NULL, mode INTEGER NOT NULL,"                  \
    " uid INTEGER NOT NULL, gid INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"                   \
    " PRIMARY KEY(file, serial)) WITHOUT ROWID;"                                                \
    "CREATE INDEX file_states_name ON file_states(name, serial) WHERE name IS NOT NULL;"        \
    "CREATE INDEX file_states_serial ON file_states(serial);"                                   \
    "CREATE TABLE pins(session INTEGER NOT NULL, serial INTEGER NOT NULL,"                      \
    " PRIMARY KEY(session, serial)) WITHOUT ROWID;"                                             \
    "INSERT INTO meta(key, value) SELECT 'history_from', value FROM meta WHERE key='serial';"   \
    "INSERT INTO meta(key, value) SELECT 'states_trimmed', value FROM meta WHERE key='serial';" \
    "INSERT INTO meta(key, value) VALUES('history_keep_ns', 86400000000000);"                   \
    "INSERT INTO file_states(file, serial, name, blksize, size, mode, uid, gid, mtime_ns)"      \
    " SELECT id, (SELECT value FROM meta WHERE key='serial'), name, blksize, size, mode,"       \
    " uid, gid, mtime_ns FROM files;"
_Static_assert(BF_HISTORY_KEEP_NS == 86400000000000, "the default in SQ_SCHEMA3_TABLES");

static const char schema_sql[] =
    "CREATE TABLE files("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT UNIQUE,"
    " blksize INTEGER NOT NULL,"
    " size INTEGER NOT NULL,"
    " mode INTEGER NOT NULL,"
    " uid INTEGER NOT NULL,"
    " gid INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL,"
    " ctime_ns INTEGER NOT NULL,"
    " content_serial INTEGER NOT NULL DEFAULT 0,"
    " content_session INTEGER NOT NULL DEFAULT 0,"
    " size_serial INTEGER NOT NULL DEFAULT 0,"
    " size_session INTEGER NOT NULL DEFAULT 0,"
    " meta_serial INTEGER NOT NULL DEFAULT 0);" SQ_SCHEMA2_TABLES SQ_SCHEMA3_TABLES;

/* The upgrade of schema 1 (files, blocks) in place: no blob is copied —
 * the old rows stay in legacy_blocks and the versions point at them by a
 * negative content id; every version gets serial 0, session 0. */
static const char upgrade_sql[] =
    "ALTER TABLE blocks RENAME TO legacy_blocks;"
    "ALTER TABLE files ADD COLUMN content_serial INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE files ADD COLUMN content_session INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE files ADD COLUMN size_serial INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE files ADD COLUMN size_session INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE files ADD COLUMN meta_serial INTEGER NOT NULL DEFAULT 0;" SQ_SCHEMA2_TABLES
    "INSERT INTO blockmap(file, blk, serial, session, content, superseded)"
    " SELECT file, blk, 0, 0, -rowid, NULL FROM legacy_blocks;";

/* The upgrade of schema 2: history begins now. */
static const char upgrade2_sql[] = SQ_SCHEMA3_TABLES;

/* The columns each schema's tables must have: a query counting those
 * present, and how many that is. */
static const char cols1_sql[] =
    "SELECT (SELECT count(*) FROM pragma_table_info('files') WHERE name IN "
    "('id','name','blksize','size','mode','uid','gid','mtime_ns','ctime_ns'))"
    " + (SELECT count(*) FROM pragma_table_info('blocks') WHERE name IN ('file','blk','data'))";
#define SQ_COLS1 12
static const char cols2_sql[] =
    "SELECT (SELECT count(*) FROM pragma_table_info('files') WHERE name IN "
    "('id','name','blksize','size','mode','uid','gid','mtime_ns','ctime_ns','content_serial',"
    "'content_session','size_serial','size_session','meta_serial'))"
    " + (SELECT count(*) FROM pragma_table_info('meta') WHERE name IN ('key','value'))"
    " + (SELECT count(*) FROM pragma_table_info('contents') WHERE name IN ('id','data'))"
    " + (SELECT count(*) FROM pragma_table_info('uploads') WHERE name IN "
    "('content','session','bytes','since'))"
    " + (SELECT count(*) FROM pragma_table_info('blockmap') WHERE name IN "
    "('file','blk','serial','session','content','superseded'))"
    " + (SELECT count(*) FROM pragma_table_info('commit_log') WHERE name IN "
    "('serial','session','kind','file','file2','time_ns','size','trunc','blocks','name','name2',"
    "'flags'))"
    " + (SELECT count(*) FROM pragma_table_info('sessions') WHERE name IN "
    "('id','pid','host','started_ns','applied','shared'))"
    " + (SELECT count(*) FROM pragma_table_info('holds') WHERE name IN ('session','file'))";
#define SQ_COLS2 48
static const char cols3_sql[] =
    "SELECT (SELECT count(*) FROM pragma_table_info('file_states') WHERE name IN "
    "('file','serial','name','blksize','size','mode','uid','gid','mtime_ns'))"
    " + (SELECT count(*) FROM pragma_table_info('pins') WHERE name IN ('session','serial'))"
    " + (SELECT count(*) FROM pragma_table_info('extents') WHERE name IN "
    "('id','off','len','gen'))"
    " + (SELECT count(*) FROM pragma_table_info('free_extents') WHERE name IN "
    "('off','len','gen'))";
#define SQ_COLS3 18

/* Map a failure while reading a file we are validating. */
static int validate_fail(const char *path, sqlite3 *c, int rc, char *errbuf, size_t errlen)
{
    switch (rc & 0xff) {
    case SQLITE_NOTADB:
        bf_errf(errbuf, errlen, "%s: not a bigfilefs database (not a SQLite database: %s)", path,
                sqlite3_errmsg(c));
        return -EPROTO;
    case SQLITE_CORRUPT:
        bf_errf(errbuf, errlen, "%s: corrupt bigfilefs database (%s)", path, sqlite3_errmsg(c));
        return -EPROTO;
    default:
        bf_errf(errbuf, errlen, "%s: cannot read the database: %s", path, sqlite3_errmsg(c));
        return sq_errno(rc);
    }
}

/* Whether path's side file (suffix "-wal", "-shm" or "-journal") exists;
 * *size gets its size (0 if it does not). */
bool sq_side_file(const char *path, const char *suffix, off_t *size)
{
    char p[PATH_MAX];
    struct stat st;
    *size = 0;
    if ((size_t)snprintf(p, sizeof(p), "%s%s", path, suffix) >= sizeof(p) || stat(p, &st) < 0)
        return false;
    *size = st.st_size;
    return true;
}

/* A "file:" URI for path with the query `query` (malloc'd; NULL when out of
 * memory). '?', '#' and '%' are escaped; an absolute path gets an empty
 * authority ("file:///..."), so that "//x" is a path, not a host. */
char *sq_path_uri(const char *path, const char *query)
{
    size_t n = strlen(path);
    char *u = malloc(3 * n + strlen(query) + 16);
    if (!u)
        return NULL;
    char *p = u + sprintf(u, "file:%s", path[0] == '/' ? "//" : "");
    for (const char *c = path; *c; c++) {
        if (*c == '?' || *c == '#' || *c == '%')
            p += sprintf(p, "%%%02X", (unsigned char)*c);
        else
            *p++ = *c;
    }
    sprintf(p, "?%s", query);
    return u;
}

/* Open path read-only, creating nothing beside it. A database whose -wal
 * and -shm both exist is in use (or was left by a crash: its -wal may hold
 * commits), and is opened through SQLite's locks, which then creates
 * nothing; any other is opened immutable: the file alone, no locks, no
 * -wal, -shm or -journal (a -wal with no -shm, copied by hand, is then not
 * read: the file alone decides). */
static int open_untouched(const char *path, sqlite3 **c)
{
    off_t n;
    bool live = sq_side_file(path, "-wal", &n) && sq_side_file(path, "-shm", &n);
    char *uri = sq_path_uri(path, live ? "mode=ro" : "mode=ro&immutable=1");
    if (!uri)
        return SQLITE_NOMEM;
    int rc = sq_open_conn(NULL, uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, c);
    free(uri);
    return rc;
}

/* What kind of file st is, for a message. */
static const char *file_kind(const struct stat *st)
{
    return S_ISDIR(st->st_mode)    ? "a directory"
           : S_ISCHR(st->st_mode)  ? "a character device"
           : S_ISBLK(st->st_mode)  ? "a block device"
           : S_ISFIFO(st->st_mode) ? "a FIFO"
           : S_ISSOCK(st->st_mode) ? "a socket"
                                   : "not a regular file";
}

/* Look at the file at path without modifying it, nor creating anything
 * beside it: a regular file; zero bytes long (empty), or a SQLite database
 * that is empty in every respect (no schema object, application_id and
 * user_version 0), or a bigfilefs database of our schema or of schema 1.
 * Anything else is refused with a message in errbuf. */
int sq_validate(const char *path, enum sq_found *found, int *version_out, char *errbuf,
                size_t errlen)
{
    struct stat stb;
    if (stat(path, &stb) < 0) {
        int e = errno;
        if (e == ENOENT) {
            *found = SQ_FOUND_EMPTY;
            return -ENOENT;
        }
        bf_errf(errbuf, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(stb.st_mode)) {
        /* Not even opened: a FIFO would block, a device is no place for a
         * database, and SQLite would put a -journal beside it. */
        bf_errf(errbuf, errlen, "%s: not a bigfilefs database (%s; a database is a regular file)",
                path, file_kind(&stb));
        return -EPROTO;
    }
    /* Not open(2) and close(2): closing a descriptor of the file would drop
     * the POSIX locks SQLite holds on it for this process's other
     * sessions. */
    if (access(path, R_OK) < 0) {
        int e = errno;
        bf_errf(errbuf, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    if (stb.st_size == 0) {
        *found = SQ_FOUND_EMPTY;
        return 0;
    }

    sqlite3 *c;
    int rc = open_untouched(path, &c);
    if (rc != SQLITE_OK) {
        bf_errf(errbuf, errlen, "%s: cannot open: %s", path, sqlite3_errstr(rc));
        return sq_errno(rc);
    }
    int e = 0;
    int64_t appid, version, nobj, ncols;
    if ((rc = sq_query_int(c, "PRAGMA application_id", &appid)) != SQLITE_OK ||
        (rc = sq_query_int(c, "PRAGMA user_version", &version)) != SQLITE_OK ||
        (rc = sq_query_int(c, "SELECT count(*) FROM sqlite_schema", &nobj)) != SQLITE_OK) {
        e = validate_fail(path, c, rc, errbuf, errlen);
        goto out;
    }
    if (appid != BF_SQLITE_APPLICATION_ID) {
        if (appid == 0 && version == 0 && nobj == 0) {
            *found = SQ_FOUND_EMPTY; /* a SQLite database empty in every respect */
            goto out;
        }
        bf_errf(errbuf, errlen,
                "%s: not a bigfilefs database (a SQLite database of another "
                "application: application_id 0x%08llx, user_version %lld, %lld schema objects)",
                path, (unsigned long long)(uint32_t)appid, (long long)version, (long long)nobj);
        e = -EPROTO;
        goto out;
    }
    if (version > BF_SQLITE_SCHEMA_VERSION) {
        bf_errf(errbuf, errlen,
                "%s: created by a newer bigfilefs (schema %lld, this build knows %d)", path,
                (long long)version, BF_SQLITE_SCHEMA_VERSION);
        e = -EPROTONOSUPPORT;
        goto out;
    }
    if (version < 1) {
        bf_errf(errbuf, errlen, "%s: corrupt bigfilefs database (schema version %lld)", path,
                (long long)version);
        e = -EPROTO;
        goto out;
    }
    bool v1 = version == 1;
    int64_t ncols3 = SQ_COLS3;
    rc = sq_query_int(c, v1 ? cols1_sql : cols2_sql, &ncols);
    if (rc == SQLITE_OK && version >= 3)
        rc = sq_query_int(c, cols3_sql, &ncols3);
    if (rc != SQLITE_OK) {
        e = validate_fail(path, c, rc, errbuf, errlen);
        goto out;
    }
    if (ncols != (v1 ? SQ_COLS1 : SQ_COLS2) || ncols3 != SQ_COLS3) {
        bf_errf(errbuf, errlen, "%s: corrupt bigfilefs database (tables or columns missing)", path);
        e = -EPROTO;
        goto out;
    }
    /* A cheap check that the b-trees are sound: a full quick_check for a
     * small database; for a big one, walk the small structures (the files
     * table and the block map) only. */
    if (stb.st_size <= SQ_QUICK_CHECK_MAX) {
        sqlite3_stmt *st;
        rc = sqlite3_prepare_v2(c, "PRAGMA quick_check(1)", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                const char *res = (const char *)sqlite3_column_text(st, 0);
                if (!res || strcmp(res, "ok") != 0) {
                    bf_errf(errbuf, errlen, "%s: corrupt bigfilefs database (quick_check: %s)",
                            path, res ? res : "?");
                    e = -EPROTO;
                }
                rc = SQLITE_OK;
            }
            sqlite3_finalize(st);
        }
    } else {
        int64_t n;
        rc = sq_query_int(c, "SELECT count(*) FROM files", &n);
        if (rc == SQLITE_OK)
            rc = sq_query_int(
                c, v1 ? "SELECT count(*) FROM blocks" : "SELECT count(*) FROM blockmap", &n);
    }
    if (e == 0 && rc != SQLITE_OK) {
        e = validate_fail(path, c, rc, errbuf, errlen);
        goto out;
    }
    if (e == 0)
        *found = version < BF_SQLITE_SCHEMA_VERSION ? SQ_FOUND_OLDER : SQ_FOUND_OURS;
    if (e == 0 && version_out)
        *version_out = (int)version;
out:
    sqlite3_close(c);
    return e;
}

/* On connection c, in one write transaction: if the integer query `check`
 * answers `want` (nobody did it meanwhile: another process may race us),
 * run `sql`, then `pragmas`; commit. Returns the SQLite code; on failure
 * the transaction is left for the caller to roll back (rollback_after),
 * once it has read sqlite3_errmsg. */
static int schema_change(sqlite3 *c, const char *check, int64_t want, const char *sql,
                         const char *pragmas)
{
    int64_t got = -1;
    int rc = sqlite3_exec(c, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sq_query_int(c, check, &got);
    if (rc == SQLITE_OK && got == want) {
        rc = sqlite3_exec(c, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(c, pragmas, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c, "COMMIT", NULL, NULL, NULL);
    return rc;
}

/* Roll back what schema_change left open, and close c. */
static void rollback_after(sqlite3 *c)
{
    if (c && !sqlite3_get_autocommit(c))
        sqlite3_exec(c, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(c);
}

/* Create the schema in a missing, zero-length or empty SQLite database. */
int sq_create_schema(const char *path, char *errbuf, size_t errlen)
{
    sqlite3 *c;
    char pragmas[128];
    int rc = sq_open_conn(NULL, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &c);
    if (rc != SQLITE_OK) {
        bf_errf(errbuf, errlen, "%s: cannot create: %s", path, sqlite3_errstr(rc));
        return sq_errno(rc) == -EIO ? -EACCES : sq_errno(rc);
    }
    /* page_size only takes effect on a database with no page yet. */
    rc = sqlite3_exec(c, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL;", NULL, NULL, NULL);
    snprintf(pragmas, sizeof(pragmas), "PRAGMA application_id=%d; PRAGMA user_version=%d;",
             BF_SQLITE_APPLICATION_ID, BF_SQLITE_SCHEMA_VERSION);
    if (rc == SQLITE_OK)
        rc = schema_change(c, "SELECT count(*) FROM sqlite_schema", 0, schema_sql, pragmas);
    int e = rc == SQLITE_OK ? 0 : validate_fail(path, c, rc, errbuf, errlen);
    rollback_after(c);
    return e;
}

/* The upgrade from schema `from` (1 or 2) to ours, in the transaction
 * schema_change opened: 1 -> 2 -> 3. */
static int upgrade_steps(sqlite3 *c, int64_t from)
{
    int rc = from == 1 ? sqlite3_exec(c, upgrade_sql, NULL, NULL, NULL) : SQLITE_OK;
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c, upgrade2_sql, NULL, NULL, NULL);
    return rc;
}

int sq_upgrade(const char *path, char *errbuf, size_t errlen)
{
    sqlite3 *c;
    char pragmas[64];
    int64_t from = 0;
    snprintf(pragmas, sizeof(pragmas), "PRAGMA user_version=%d;", BF_SQLITE_SCHEMA_VERSION);
    int rc = sq_open_conn(NULL, path, SQLITE_OPEN_READWRITE, &c);
    /* In one write transaction: the version as it is now (another process
     * may have upgraded it meanwhile), every step, the new version. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sq_query_int(c, "PRAGMA user_version", &from);
    if (rc == SQLITE_OK && (from == 1 || from == 2)) {
        rc = upgrade_steps(c, from);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(c, pragmas, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c, "COMMIT", NULL, NULL, NULL);
    int e = 0;
    if (rc != SQLITE_OK) {
        bf_errf(errbuf, errlen,
                "%s: cannot upgrade the database from schema %lld to %d: %s (it is left at schema "
                "%lld)",
                path, (long long)from, BF_SQLITE_SCHEMA_VERSION,
                c ? sqlite3_errmsg(c) : sqlite3_errstr(rc), (long long)from);
        e = sq_errno(rc);
    }
    rollback_after(c);
    return e;
}
