/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the inode table.
 *
 * One bf_inode per bigfile the kernel knows (looked up or open) or whose
 * handle still has uncommitted changes. Inode numbers are file id + 1 (the
 * root directory is 1). Each inode owns, once first needed (open, a size
 * change, an ioctl), the one bf_fileh of its file for this mount: every
 * process that opens the file shares it, as they share its page cache.
 *
 * Lifetime: an inode stays in the table while the kernel holds lookups on
 * it (LOOKUP..FORGET), while it is open (OPEN..RELEASE), while a request
 * handler holds a reference (bf_itable_get/find .. bf_itable_put), and while
 * its handle has uncommitted changes — so a process may write, close and
 * exit, and another commit the changes later with an ioctl. When none of
 * that holds any more (or the file is unlinked and neither open nor looked
 * up), the handle is closed (uncommitted changes of an unlinked file are
 * dropped) and the inode freed. bf_itable_destroy() closes every handle at
 * unmount, logging the uncommitted changes it discards, by name.
 *
 * Locking
 *  - the table mutex protects the hash, every inode's counters, name,
 *    info, unlinked flag and `op` (see enum bf_inode_op). It is never held
 *    across a backend or slow core call, nor a kernel notification.
 *  - each inode's fh_lock (a reader-preferring rwlock) protects the
 *    `file`/`fh` pointers: users of the handle hold it for reading (many at
 *    once: READs, WRITEs, ioctls), opening or closing the handle holds it
 *    for writing. Core calls made under it for reading may block on the
 *    backend: nothing else waits for it for writing but an open, a
 *    SETBLKSIZE or a close.
 *  - order: table mutex → fh_lock → (core) ram lock → backend locks; the
 *    table mutex is never taken while waiting for fh_lock for writing.
 */
#ifndef BIGFILEFS_FS_INODE_H
#define BIGFILEFS_FS_INODE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <fuse_lowlevel.h>

#include "backends/backend.h"
#include "core/fileh.h"

#define BF_ROOT_INO ((fuse_ino_t)1)

/* The long-running operation an ioctl is performing on an inode. Only one
 * runs at a time per inode; another gets EBUSY. */
enum bf_inode_op {
    BF_OP_NONE = 0,
    BF_OP_WRITEOUT,   /* fsync through the mount + core writeout */
    BF_OP_DISCARD,    /* fence + core discard + kernel invalidation */
    BF_OP_INVALIDATE, /* fence range + core invalidate + kernel invalidation */
    BF_OP_SETBLKSIZE, /* handle closed, block size changed, reopened */
};

typedef struct bf_inode {
    uint64_t id;    /* file id in the database */
    fuse_ino_t ino; /* id + 1 */

    /* Protected by the table mutex. */
    /* metadata as last read; info.name is the current name (empty once
     * unlinked) */
    struct bf_fileinfo info;
    bool unlinked;
    uint64_t nlookup;       /* kernel lookup count */
    uint32_t nopen;         /* OPENs not yet RELEASEd */
    uint32_t refs;          /* references held by request handlers */
    enum bf_inode_op op;    /* long-running ioctl in progress */
    struct bf_inode *hnext; /* hash chain */

    /* Protected by fh_lock (see above). */
    pthread_rwlock_t fh_lock;
    bf_file *file;
    bf_fileh *fh;

    /* The backend's count of stored blocks, for st_blocks while fh is NULL
     * (bf_inode_stored_blocks): set with fh_lock held for reading (atomic
     * stores: nstored, then nstored_known), cleared with it held for
     * writing (when the handle opens or closes). */
    bool nstored_known;
    uint64_t nstored;
} bf_inode;

typedef struct bf_itable {
    pthread_mutex_t lock;
    bf_inode **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    bf_db *db;
    bf_ram *ram;
} bf_itable;

/* Initialize an empty table over db, caching in ram. Returns 0 or -ENOMEM. */
int bf_itable_init(bf_itable *t, bf_db *db, bf_ram *ram);

/* Close every handle (logging, for each with uncommitted changes,
 * "discarding uncommitted changes of NAME (N blocks, size S)"), free every
 * inode and the table. No other call may run or follow. */
void bf_itable_destroy(bf_itable *t);

/* Get the inode of file `info->id`, creating it if needed, with a
 * reference. Refreshes the inode's metadata from *info (a LOOKUP or CREATE
 * just read it). Returns NULL on -ENOMEM. */
bf_inode *bf_itable_get(bf_itable *t, const struct bf_fileinfo *info);

/* Get an existing inode by inode number, with a reference; NULL if the
 * table has none. */
bf_inode *bf_itable_find(bf_itable *t, fuse_ino_t ino);

/* Drop a reference (from get/find); frees the inode if nothing keeps it. */
void bf_itable_put(bf_itable *t, bf_inode *inode);

/* Count `n` kernel lookups (LOOKUP, CREATE, MKNOD replies) / forget them. */
void bf_itable_lookup(bf_itable *t, bf_inode *inode, uint64_t n);
void bf_itable_forget(bf_itable *t, fuse_ino_t ino, uint64_t n);

/* Count an OPEN / a RELEASE. */
void bf_itable_open(bf_itable *t, bf_inode *inode);
void bf_itable_release(bf_itable *t, bf_inode *inode);

/* Get the inode's handle, opening it (bf_db_file_open + bf_fileh_open) on
 * first need, and hold fh_lock for reading: the caller must call
 * bf_inode_fh_put() when done with *fh. Returns 0 or the error of opening
 * (-ENOENT if the file is gone from the database, -ENOMEM, ...). */
int bf_inode_fh_get(bf_itable *t, bf_inode *inode, bf_fileh **fh);
void bf_inode_fh_put(bf_inode *inode);

/* The inode's handle if it is open, else NULL — never opening it — with
 * fh_lock held for reading either way: the caller calls bf_inode_fh_put()
 * when done. For the listener (listen.h): a handle opened later opens at
 * the database's current serial, so it needs no commit applied. */
void bf_inode_fh_peek(bf_inode *inode, bf_fileh **fh);

/* For SETBLKSIZE: with no fh_lock held by the caller, close the handle and
 * bf_file (waiting for their users), call bf_db_set_blksize, and reopen
 * the handle on next need. The handle must be clean (checked again under
 * the write lock: -ENOTEMPTY if it has changes or a nonzero size). */
int bf_inode_set_blksize(bf_itable *t, bf_inode *inode, uint32_t blksize);

/* For st_blocks while the inode has no handle: the number of blocks the
 * backend stores for the file (bf_file_ops.stored_blocks, through a
 * bf_file opened for the call), cached in the inode until a handle is
 * opened or closed — with a handle, bf_fileh_allocated_bytes answers. Takes
 * no table mutex (the cache is guarded by fh_lock, see bf_inode). The
 * caller holds fh_lock for reading and saw inode->fh == NULL (so no handle
 * appears meanwhile). Returns 0, -ENOTSUP (the backend cannot count), or
 * the error of opening the file or of the count. */
int bf_inode_stored_blocks(bf_itable *t, bf_inode *inode, uint64_t *n);

/* Copy the inode's metadata (under the table mutex). */
void bf_inode_info(bf_itable *t, bf_inode *inode, struct bf_fileinfo *out, bool *unlinked);

/* Start a long-running ioctl operation: returns 0 and records `op`, or
 * -EBUSY if another is in progress. bf_inode_op_end() ends it. */
int bf_inode_op_begin(bf_itable *t, bf_inode *inode, enum bf_inode_op op);
void bf_inode_op_end(bf_itable *t, bf_inode *inode);

/* Namespace changes made in the database: keep inode names in step. After
 * bf_db_unlink(name): the inode named `name`, if any, is unlinked. After
 * bf_db_rename(from, to, flags): renamed (the replaced one unlinked, or the
 * two names swapped for BF_RENAME_EXCHANGE). */
void bf_itable_unlinked(bf_itable *t, const char *name);
void bf_itable_renamed(bf_itable *t, const char *from, const char *to, unsigned flags);

/* Another mount's namespace change, by file (listen.h): the inode is now
 * named `name`, or, with name NULL or "", unlinked (its handle stays
 * usable while it is open). */
void bf_itable_set_name(bf_itable *t, bf_inode *inode, const char *name);

/* Update the cached metadata of the inode (after SETATTR / getinfo),
 * but for its name: names change only through the calls above, in the
 * order of the commits (getinfo may already see a later rename). */
void bf_itable_set_info(bf_itable *t, bf_inode *inode, const struct bf_fileinfo *info);

/* Every inode of the table, each with a reference (bf_itable_put each),
 * in a malloc'ed array (*out, *n; free it). Returns 0 or -ENOMEM. */
int bf_itable_all(bf_itable *t, bf_inode ***out, size_t *n);

#endif /* BIGFILEFS_FS_INODE_H */
