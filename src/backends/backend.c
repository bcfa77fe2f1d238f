/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: bf_db_open's dispatch, the bf_db_* wrappers over a
 * backend's operations, and bf_name_check. See backend.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/common.h"
#include "backends/memory.h"
#include "backends/sqlite.h"

int bf_db_open(const char *spec, unsigned flags, bf_db **out, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!spec || !out || (flags & ~(unsigned)(BF_DB_RDONLY | BF_DB_CREATE))) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "bad arguments to bf_db_open");
        return -EINVAL;
    }
    *out = NULL;
    /* "mem:" and "mem:LABEL" name a fresh memory database; the label only
     * tells databases apart in logs. Anything else is a SQLite path (a file
     * really named "mem:x" can be reached as "./mem:x"). */
    if (strncmp(spec, "mem:", 4) == 0) {
        int r = bf_mem_open(flags, out);
        if (r < 0 && errbuf && errlen)
            snprintf(errbuf, errlen, "%s: cannot create memory database: %s", spec, strerror(-r));
        return r;
    }
    if (spec[0] == '\0') {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "empty database path");
        return -EINVAL;
    }
    return bf_sqlite_open(spec, flags, out, errbuf, errlen);
}

void bf_db_close(bf_db *db)
{
    if (db)
        db->ops->close(db);
}

int bf_db_list(bf_db *db, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg)
{
    return db->ops->list(db, cb, arg);
}

int bf_db_lookup(bf_db *db, const char *name, struct bf_fileinfo *out)
{
    return db->ops->lookup(db, name, out);
}

int bf_db_getinfo(bf_db *db, uint64_t id, struct bf_fileinfo *out)
{
    return db->ops->getinfo(db, id, out);
}

int bf_db_create(bf_db *db, const char *name, uint32_t blksize, uint64_t size, uint32_t mode,
                 uint32_t uid, uint32_t gid, struct bf_fileinfo *out)
{
    return db->ops->create(db, name, blksize, size, mode, uid, gid, out);
}

int bf_db_unlink(bf_db *db, const char *name)
{
    return db->ops->unlink(db, name);
}

int bf_db_rename(bf_db *db, const char *from, const char *to, unsigned flags)
{
    return db->ops->rename(db, from, to, flags);
}

int bf_db_setattr(bf_db *db, uint64_t id, const uint32_t *mode, const uint32_t *uid,
                  const uint32_t *gid, const int64_t *mtime_ns)
{
    return db->ops->setattr(db, id, mode, uid, gid, mtime_ns);
}

int bf_db_set_blksize(bf_db *db, uint64_t id, uint32_t blksize)
{
    return db->ops->set_blksize(db, id, blksize);
}

int bf_db_file_open(bf_db *db, uint64_t id, bf_file **out)
{
    return db->ops->file_open(db, id, out);
}

void bf_db_file_close(bf_db *db, bf_file *f)
{
    if (f)
        db->ops->file_close(f);
}

int bf_name_check(const char *name)
{
    if (!name || name[0] == '\0' || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return -EINVAL;
    if (strlen(name) > BF_NAME_MAX)
        return -ENAMETOOLONG;
    return 0;
}
