/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the state of one mount and the FUSE operations.
 *
 * One struct bf_fs per daemon (one mount). main.c fills it (options, the
 * database, the ram), creates the session with bf_fs_ops, and runs the
 * multi-threaded loop; ops.c serves the FUSE requests, ioctl.c the ioctls.
 * Its fields are set before the session loop starts and are read-only
 * afterwards, except through the objects' own locking (the inode table,
 * the notifier, the core, the backend) and `busy`, under busy_lock.
 */
#ifndef BIGFILEFS_FS_FS_H
#define BIGFILEFS_FS_FS_H

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <fuse_lowlevel.h>

#include "backends/backend.h"
#include "core/ram.h"
#include "fs/inode.h"
#include "fs/notify.h"

/* Attribute and entry timeout given to the kernel: long, so the kernel
 * keeps attributes stable; the daemon invalidates them when they change
 * behind the kernel's back (discard, setblksize). */
#define BF_ATTR_TIMEOUT 86400.0

/* Largest READ/WRITE and readahead negotiated with the kernel. */
#define BF_MAX_IO (1u << 20)

struct bf_fs {
    bf_db *db;
    bf_ram *ram;
    bf_itable itable;
    struct fuse_session *se;
    bf_notifier *notifier;      /* started once the session is mounted */
    char *mountpoint;           /* absolute path, for fsync at writeout */
    uint32_t blksize;           /* block size of new files */
    bool ro;                    /* -o ro: no write, no writeout */
    bool test_inject;           /* -o test_inject: BIGFILE_TEST_IOC_INJECT served */
    struct timespec mount_time; /* the root directory's times */
    /* Requests that may wait for the kernel (the ioctls), counted so that
     * a termination signal lets them finish first (signals.h). */
    pthread_mutex_t busy_lock;
    pthread_cond_t busy_cond;
    unsigned busy;
};

/* The file handle (fi->fh) ops.c gives the kernel at OPEN/CREATE for a
 * regular file: the inode pointer, with bit 0 set when the file was opened
 * for writing (O_WRONLY or O_RDWR). The kernel sends this fh back with every
 * request on that open file — READ, WRITE, RELEASE, IOCTL — but not the open
 * flags (struct fuse_ioctl_in has none: libfuse hands the IOCTL handler a
 * fuse_file_info whose flags are 0), so the ioctls that change or throw
 * away uncommitted changes learn from bit 0 whether the caller's fd may
 * write (ioctl.c). Inodes are calloc'ed, so bit 0 of their address is 0. */
#define BF_FH_WRITABLE UINT64_C(1)

_Static_assert(_Alignof(bf_inode) >= 2, "bit 0 of an inode pointer is free");

/* fi->fh for inode opened with open(2) flags open_flags. */
static inline uint64_t bf_fh_make(bf_inode *inode, int open_flags)
{
    int acc = open_flags & O_ACCMODE;

    return (uint64_t)(uintptr_t)inode | ((acc == O_WRONLY || acc == O_RDWR) ? BF_FH_WRITABLE : 0);
}

/* The inode of an fh made by bf_fh_make. */
static inline bf_inode *bf_fh_inode(uint64_t fh)
{
    return (bf_inode *)(uintptr_t)(fh & ~BF_FH_WRITABLE);
}

/* Whether the open file of an fh made by bf_fh_make may write. */
static inline bool bf_fh_writable(uint64_t fh)
{
    return (fh & BF_FH_WRITABLE) != 0;
}

/* The low-level operations (ops.c). Userdata of the session: struct bf_fs. */
extern const struct fuse_lowlevel_ops bf_fs_ops;

/* The IOCTL request handler (ioctl.c), called by ops.c for regular files.
 * Replies to req itself. */
void bf_fs_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                 struct fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
                 size_t out_bufsz);

/* Fill *st with the attributes of inode (ops.c): mode, owner, times from
 * the database metadata, size from the handle if it is open (uncommitted
 * size) else the committed size. */
void bf_fs_fill_stat(struct bf_fs *fs, bf_inode *inode, struct stat *st);

#endif /* BIGFILEFS_FS_FS_H */
