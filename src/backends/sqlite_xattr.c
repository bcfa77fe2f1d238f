/* SPDX-License-Identifier: MIT */
/* bigfilefs — the SQLite engine: extended attributes (engine.h).
 *
 * One table, created if absent when a read-write session opens the
 * database (sq_xattr_table) — so databases of earlier releases gain it
 * without a schema change:
 *
 *     xattrs(file, name, value)   PRIMARY KEY(file, name), WITHOUT ROWID
 *
 * keyed by the file's id and deleted with the file (W_PURGE_XATTRS in the
 * purge). Reads go through a reader connection; a read-only session on a
 * database that never had a read-write session since has no table: no
 * attribute. A change is a short durable write transaction on the writer,
 * committed at once, and not a commit (no serial, no log row: engine.h).
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "backends/sqlite_internal.h"

const char sq_xattr_table_sql[] = "CREATE TABLE IF NOT EXISTS xattrs(file INTEGER NOT NULL,"
                                  " name TEXT NOT NULL, value BLOB NOT NULL,"
                                  " PRIMARY KEY(file, name)) WITHOUT ROWID";

/* Run query `sql` (?1 = id, ?2 = name if not NULL) on a reader; for each
 * row, append column 0 to *buf (with a NUL after it when `nul`). Returns
 * 0, -ENODATA when there is no row and `need_row`, or the error. */
static int xa_read(struct sq_db *d, const char *sql, uint64_t id, const char *name, bool nul,
                   bool need_row, char **buf, size_t *len)
{
    struct sq_reader *r;
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    char *v = NULL;
    int rc, e = sq_reader_get(d, &r);

    if (e < 0)
        return e;
    rc = sqlite3_prepare_v2(r->c, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        /* no table (read-only, never opened read-write since): none */
        e = strstr(sqlite3_errmsg(r->c), "no such table") ? 0
                                                          : sq_fail(d, r->c, rc, "reading xattrs");
        sqlite3_finalize(st);
        sq_reader_put(d, r);
        return e == 0 && need_row ? -ENODATA : e;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (name)
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    bool any = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const void *p = sqlite3_column_blob(st, 0);
        size_t k = (size_t)sqlite3_column_bytes(st, 0);
        char *nv = realloc(v, n + k + nul + 1);

        any = true;
        if (!nv) {
            e = -ENOMEM;
            break;
        }
        v = nv;
        if (k)
            memcpy(v + n, p, k);
        n += k;
        if (nul)
            v[n++] = '\0';
    }
    if (e == 0 && rc != SQLITE_DONE)
        e = sq_fail(d, r->c, rc, "reading xattrs");
    sqlite3_finalize(st);
    sq_reader_put(d, r);
    if (e == 0 && need_row && !any)
        e = -ENODATA;
    if (e < 0 || n == 0) {
        free(v);
        v = NULL;
    }
    if (e == 0) {
        *buf = v;
        *len = n;
    }
    return e;
}

int sq_getxattr(bf_db *db, uint64_t id, const char *name, void **value, size_t *len)
{
    char *v = NULL;
    int e = xa_read(SQ(db), "SELECT value FROM xattrs WHERE file=?1 AND name=?2", id, name, false,
                    true, &v, len);

    *value = v;
    return e;
}

int sq_listxattr(bf_db *db, uint64_t id, char **names, size_t *len)
{
    return xa_read(SQ(db), "SELECT name FROM xattrs WHERE file=?1 ORDER BY name", id, NULL, true,
                   false, names, len);
}

/* Step `sql` on the writer, in its transaction, with ?1 = id, ?2 = name,
 * ?3 = value (if bound: vlen >= 0); *changes = rows changed, or for a
 * query whether it gave a row. */
static int xa_wstep(struct sq_db *d, const char *sql, uint64_t id, const char *name,
                    const void *value, ssize_t vlen, int *changes)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(d->w, sql, -1, &st, NULL);

    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        if (vlen >= 0)
            sqlite3_bind_blob(st, 3, vlen ? value : "", (int)vlen, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    *changes = st && sqlite3_stmt_readonly(st) ? rc == SQLITE_ROW : sqlite3_changes(d->w);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_fail(d, d->w, rc, "writing xattrs");
}

int sq_setxattr(bf_db *db, uint64_t id, const char *name, const void *value, size_t len,
                unsigned flags)
{
    struct sq_db *d = SQ(db);
    int exists = 0, changed = 0, e;

    if (id > (uint64_t)INT64_MAX)
        return -ENOENT;
    if ((e = sq_wbegin(d, true)) < 0)
        return e;
    e = xa_wstep(d, "SELECT 1 FROM xattrs WHERE file=?1 AND name=?2", id, name, NULL, -1, &exists);
    if (e == 0 && exists && (flags & BF_XATTR_CREATE))
        e = -EEXIST;
    else if (e == 0 && !exists && (flags & BF_XATTR_REPLACE))
        e = -ENODATA;
    if (e == 0)
        e = xa_wstep(d,
                     "INSERT OR REPLACE INTO xattrs(file, name, value) SELECT ?1, ?2, ?3"
                     " WHERE EXISTS(SELECT 1 FROM files WHERE id=?1)",
                     id, name, value, (ssize_t)len, &changed);
    if (e == 0 && !changed)
        e = -ENOENT;
    return sq_wend(d, true, e);
}

int sq_removexattr(bf_db *db, uint64_t id, const char *name)
{
    struct sq_db *d = SQ(db);
    int changed = 0, e;

    if (id > (uint64_t)INT64_MAX)
        return -ENODATA;
    if ((e = sq_wbegin(d, true)) < 0)
        return e;
    e = xa_wstep(d, "DELETE FROM xattrs WHERE file=?1 AND name=?2", id, name, NULL, -1, &changed);
    if (e == 0 && !changed)
        e = -ENODATA;
    return sq_wend(d, true, e);
}
