/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: a database of bigfiles.
 *
 * A backend instance (bf_db) holds many bigfiles: their metadata (name,
 * block size, committed size, mode, owner, times) and their blocks. The
 * namespace operations here (create, unlink, rename, setattr) are committed
 * at once; a file's content changes only through the store transaction of
 * its bf_file (src/core/bigfile.h), which the core drives at writeout.
 *
 * Backends (storage engines behind one generic layer, engine.h):
 *   "memory"  memory.h — in-process, for tests and benchmarks, with fault
 *             injection and latency;
 *   "sqlite"  sqlite.h — one embedded SQLite database file, the default.
 *
 * Thread safety: every function may be called from any thread, concurrently
 * (a backend serializes internally what must be). Every function returns 0
 * or a negative errno value.
 *
 * Unlinked-but-open files: bf_db_unlink() removes the name at once; the
 * blocks of a file that still has bf_file objects open stay readable
 * through them until the last is closed, and are deleted then (and, after a
 * crash, when the database is next opened).
 *
 * Names: a file name is 1 to BF_NAME_MAX bytes, without '/', and neither "."
 * nor "..". A row of a tampered database whose name is not one is never
 * listed nor found by name; each listing that skips it logs one line.
 */
#ifndef BIGFILEFS_BACKENDS_BACKEND_H
#define BIGFILEFS_BACKENDS_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../core/bigfile.h"

#define BF_NAME_MAX 255 /* bytes of a file name, without the NUL */

typedef struct bf_db bf_db;

/* Metadata of one bigfile. */
struct bf_fileinfo {
    uint64_t id; /* stable, never reused within a database, >= 1 */
    char name[BF_NAME_MAX + 1];
    uint32_t blksize;
    uint64_t size; /* committed size, bytes */
    uint32_t mode; /* permission bits only (07777) */
    uint32_t uid, gid;
    int64_t mtime_ns; /* last commit of content or size */
    int64_t ctime_ns; /* last change of metadata */
};

/* Flags for bf_db_open. */
enum {
    BF_DB_RDONLY = 1 << 0, /* never write; namespace ops and writeout get -EROFS */
    BF_DB_CREATE = 1 << 1, /* create the database if it does not exist */
};

/* Flags for bf_db_rename (the values of renameat2's RENAME_*). */
enum {
    BF_RENAME_NOREPLACE = 1 << 0,
    BF_RENAME_EXCHANGE = 1 << 1,
};

/* Open a database. `spec` is "mem:" or "mem:LABEL" for a fresh memory
 * database, else a path to a SQLite file. On failure returns a negative
 * errno and, if errbuf is not NULL, writes a one-line human-readable reason
 * to errbuf (e.g. "x.db: not a bigfilefs database (no bigfilefs schema)").
 * Errors: -ENOENT (missing and no BF_DB_CREATE), -EPROTO (not a bigfilefs
 * database, or a corrupt one: never modified), -EPROTONOSUPPORT (a newer
 * schema version: never modified), -EACCES, -EROFS, -EIO, -ENOMEM. */
int bf_db_open(const char *spec, unsigned flags, bf_db **out, char *errbuf, size_t errlen);

/* Close a database. Every bf_file must be closed first (a caller bug,
 * BF_CHECK). NULL is a no-op. */
void bf_db_close(bf_db *db);

/* Call cb for every named file, in name order; stop and return cb's value
 * if it returns nonzero. Rows whose name is not a valid file name are left
 * out, each with a line on stderr. */
int bf_db_list(bf_db *db, int (*cb)(void *arg, const struct bf_fileinfo *fi), void *arg);

/* Look a file up by name / by id. -ENOENT if there is none (lookup: also
 * for a name that is not a valid file name; -EINVAL for NULL). getinfo also
 * finds an unlinked-but-open file (its name is then the empty string). */
int bf_db_lookup(bf_db *db, const char *name, struct bf_fileinfo *out);
int bf_db_getinfo(bf_db *db, uint64_t id, struct bf_fileinfo *out);

/* Create a file (committed at once). -EEXIST, -EINVAL (bad blksize, size >
 * BF_SIZE_MAX, empty name or one with '/'), -ENAMETOOLONG, -EROFS. */
int bf_db_create(bf_db *db, const char *name, uint32_t blksize, uint64_t size, uint32_t mode,
                 uint32_t uid, uint32_t gid, struct bf_fileinfo *out);

/* Remove a name (see "Unlinked-but-open" above). -ENOENT (also for a name
 * that is not a valid file name), -EINVAL (NULL), -EROFS. */
int bf_db_unlink(bf_db *db, const char *name);

/* Rename, replacing an existing `to` unless BF_RENAME_NOREPLACE (-EEXIST);
 * BF_RENAME_EXCHANGE swaps two existing names. A replaced file is unlinked
 * as by bf_db_unlink. -ENOENT, -EEXIST, -EINVAL (bad flags or name), -EROFS. */
int bf_db_rename(bf_db *db, const char *from, const char *to, unsigned flags);

/* Change mode, owner, mtime (NULL pointers: unchanged); committed at once;
 * ctime is updated. -ENOENT, -EROFS. */
int bf_db_setattr(bf_db *db, uint64_t id, const uint32_t *mode, const uint32_t *uid,
                  const uint32_t *gid, const int64_t *mtime_ns);

/* Change the block size of an empty file: committed size 0 and no block
 * stored. -ENOENT, -EINVAL (bad blksize), -ENOTEMPTY, -EBUSY (a bf_file is
 * open on it), -EROFS. */
int bf_db_set_blksize(bf_db *db, uint64_t id, uint32_t blksize);

/* Open the content of file `id` for the core (bigfile.h). The bf_file's
 * size is the committed size now. Several bf_file objects may be open on
 * one file. -ENOENT. */
int bf_db_file_open(bf_db *db, uint64_t id, bf_file **out);

/* Close a bf_file. No transaction may be open on it (a caller bug,
 * BF_CHECK: in a release build it is aborted). If the file's name was
 * removed and this was its last bf_file, the file is deleted now. NULL is
 * a no-op. */
void bf_db_file_close(bf_db *db, bf_file *f);

#endif /* BIGFILEFS_BACKENDS_BACKEND_H */
