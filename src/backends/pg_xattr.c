/* SPDX-License-Identifier: MIT */
/* bigfilefs — the PostgreSQL engine: extended attributes (engine.h).
 *
 * One table of the schema (pg_schema.c), PG_XATTRS_TABLE:
 *
 *     xattrs(file, name, value)   PRIMARY KEY (file, name)
 *
 * keyed by the file's id and deleted with the file (PS_PURGE). Names are
 * bytea (any bytes but NUL, sorted bytewise; text would refuse what is
 * not UTF-8). The schema has it since it has existed; a database made
 * before gains it, without a version change, when a read-write session
 * opens it (pg_xattr_table). A read-only session on such a database
 * prepares no statement of the table (PGK_X) and sees no attribute.
 *
 * Reads go through a reader connection. A change is one statement on the
 * writer, in a durable transaction of its own (synchronous_commit on),
 * committed at once, and no commit (no serial, no log row: engine.h); the
 * flags' checks are in the statement (PS_XA_SET, PS_XA_REPLACE).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backends/pg_internal.h"
#include "util/debug.h"

#define PG_STR_(x) #x
#define PG_STR(x) PG_STR_(x)

int pg_xattr_table(struct pg_db *d, struct pgc *c, unsigned flags, char *errbuf, size_t errlen)
{
    PGresult *r;
    int e = pgc_simple(d, c, "SELECT to_regclass('bigfilefs.xattrs') IS NOT NULL", &r,
                       "looking for the xattrs table");
    if (e == 0) {
        d->xattrs = PQgetvalue(r, 0, 0)[0] == 't'; /* simple protocol: text */
        PQclear(r);
    }
    if (e == 0 && !d->xattrs && !(flags & BF_DB_RDONLY)) {
        /* One implicit transaction, under the lock that creates the
         * schema: two mounts at once create it once. */
        e = pgc_simple(d, c,
                       "SELECT pg_advisory_xact_lock(" PG_STR(PG_CLASS) ", " PG_STR(
                           PG_LOCK_SCHEMA) "); CREATE TABLE IF NOT EXISTS " PG_XATTRS_TABLE,
                       NULL, "creating the xattrs table");
        d->xattrs = e == 0;
        if (e == -EACCES)
            bf_errf(errbuf, errlen,
                    "%s: the role may not create the table bigfilefs.xattrs (GRANT CREATE ON "
                    "SCHEMA bigfilefs, or let its owner mount once)",
                    d->label);
    }
    if (e < 0 && errbuf && !errbuf[0])
        bf_errf(errbuf, errlen, "%s: cannot prepare the table bigfilefs.xattrs", d->label);
    return e;
}

/* Run reader statement `stmt` with p; *res gets its result. */
static int xa_read(struct pg_db *d, int stmt, const struct pgp *p, PGresult **res)
{
    struct pg_reader *r;
    int e = pg_reader_get(d, &r);
    if (e < 0)
        return e;
    e = pgc_run(d, &r->c, stmt, p, res, "reading xattrs");
    pg_reader_put(d, r);
    return e;
}

int pg_getxattr(bf_db *db, uint64_t id, const char *name, void **value, size_t *len)
{
    struct pg_db *d = PG(db);
    struct pgp p = { 0 };
    PGresult *r = NULL;
    *value = NULL;
    *len = 0;
    if (!d->xattrs || id > (uint64_t)INT64_MAX)
        return -ENODATA;
    pgp_u64(&p, id);
    pgp_bytes(&p, name, strlen(name));
    int e = xa_read(d, PS_XA_GET, &p, &r);
    if (e == 0 && PQntuples(r) == 0)
        e = -ENODATA;
    size_t n = e == 0 ? (size_t)PQgetlength(r, 0, 0) : 0;
    if (n && !(*value = malloc(n)))
        e = -ENOMEM;
    else if (n)
        memcpy(*value, PQgetvalue(r, 0, 0), n);
    if (e == 0)
        *len = n;
    PQclear(r);
    return e;
}

int pg_listxattr(bf_db *db, uint64_t id, char **names, size_t *len)
{
    struct pg_db *d = PG(db);
    struct pgp p = { 0 };
    PGresult *r = NULL;
    *names = NULL;
    *len = 0;
    if (!d->xattrs || id > (uint64_t)INT64_MAX)
        return 0;
    pgp_u64(&p, id);
    int e = xa_read(d, PS_XA_LIST, &p, &r);
    size_t n = 0;
    for (int i = 0; e == 0 && i < PQntuples(r); i++)
        n += (size_t)PQgetlength(r, i, 0) + 1;
    if (n && !(*names = malloc(n)))
        e = -ENOMEM;
    for (int i = 0, k; e == 0 && n && i < PQntuples(r); i++, *len += (size_t)k + 1) {
        k = PQgetlength(r, i, 0);
        memcpy(*names + *len, PQgetvalue(r, i, 0), (size_t)k);
        (*names)[*len + (size_t)k] = '\0';
    }
    PQclear(r);
    return e;
}

/* Run writer statement `stmt` with p in a durable transaction of its own;
 * *res gets its result. */
static int xa_write(struct pg_db *d, int stmt, const struct pgp *p, PGresult **res)
{
    if (!BF_CHECK(d->xattrs, "a read-write session without the xattrs table") ||
        __atomic_load_n(&d->fenced, __ATOMIC_SEQ_CST))
        return -EIO; /* fenced: writes refused (pg_session.c) */
    int e = pg_w_begin(d);
    if (e < 0)
        return e;
    struct pgq q[] = { { PS_BEGIN, NULL, NULL },
                       { PS_SYNC_ON, NULL, NULL },
                       { stmt, p, NULL },
                       { PS_COMMIT, NULL, NULL } };
    e = pgc_pipeline(d, &d->w, q, 4, "writing xattrs", NULL);
    if (e < 0 && d->w.c)
        pgc_run(d, &d->w, PS_ROLLBACK, NULL, NULL, "rolling back");
    pg_w_end(d);
    *res = q[2].res;
    q[2].res = NULL;
    pgq_clear(q, 4);
    return e;
}

int pg_setxattr(bf_db *db, uint64_t id, const char *name, const void *value, size_t len,
                unsigned flags)
{
    struct pgp p = { 0 };
    PGresult *r = NULL;
    bool replace = flags & BF_XATTR_REPLACE;
    if (id > (uint64_t)INT64_MAX)
        return replace ? -ENODATA : -ENOENT;
    pgp_u64(&p, id);
    pgp_bytes(&p, name, strlen(name));
    pgp_bytes(&p, len ? value : "", len);
    if (!replace)
        pgp_bool(&p, flags & BF_XATTR_CREATE);
    int e = xa_write(PG(db), replace ? PS_XA_REPLACE : PS_XA_SET, &p, &r);
    if (e == 0 && replace && PQntuples(r) == 0)
        e = -ENODATA;
    else if (e == 0 && !replace && !pgr_bool(r, 0, 0))
        e = -ENOENT;
    else if (e == 0 && !replace && !pgr_bool(r, 0, 1))
        e = -EEXIST;
    PQclear(r);
    return e;
}

int pg_removexattr(bf_db *db, uint64_t id, const char *name)
{
    struct pgp p = { 0 };
    PGresult *r = NULL;
    if (id > (uint64_t)INT64_MAX)
        return -ENODATA;
    pgp_u64(&p, id);
    pgp_bytes(&p, name, strlen(name));
    int e = xa_write(PG(db), PS_XA_REMOVE, &p, &r);
    if (e == 0 && PQntuples(r) == 0)
        e = -ENODATA;
    PQclear(r);
    return e;
}
