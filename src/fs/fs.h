/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the state of one mount and the FUSE operations.
 *
 * One struct bf_fs per daemon (one mount). main.c fills it (options, the
 * database, the ram), creates the session with bf_fs_ops, and runs the
 * multi-threaded loop; ops.c serves the FUSE requests, ioctl.c the ioctls,
 * the worker queue (workq.h) their long part, listen.c other mounts'
 * commits (on the backend's watcher thread), prefetch.c the loads ahead
 * of sequential reads, and kernel.c every dealing with the kernel. Its
 * fields are set before the session loop starts and are read-only
 * afterwards, except through the objects' own locking (the inode table,
 * the kernel's notifier, the worker queue, the core, the backend) and
 * over_budget_ns (atomic).
 */
#ifndef BIGFILEFS_FS_FS_H
#define BIGFILEFS_FS_FS_H

#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <fuse_lowlevel.h>

#include "backends/backend.h"
#include "core/ram.h"
#include "fs/inode.h"
#include "fs/kernel.h"
#include "fs/listen.h"
#include "fs/prefetch.h"
#include "fs/views.h"
#include "fs/workq.h"

/* Attribute and entry timeout given to the kernel: long, so the kernel
 * keeps attributes stable; the daemon invalidates them when they change
 * behind the kernel's back (discard, setblksize, another mount's commit:
 * listen.h). */
#define BF_ATTR_TIMEOUT 86400.0

/* Largest READ and WRITE negotiated with the kernel. */
#define BF_MAX_IO (1u << 20)

/* The mount's readahead (-o readahead=SIZE, the bdi's read_ahead_kb): by
 * default BF_MAX_IO, one READ; a multiple of 4K up to BF_KERNEL_RA_MAX. */
#define BF_KERNEL_RA_DEFAULT BF_MAX_IO
#define BF_KERNEL_RA_MAX (64u << 20)

/* The worker queue of the long ioctls (workq.h): its threads, and how much
 * one user may queue and run. One worker is always left to other users. */
#define BF_WORKERS 4u
#define BF_QUEUE_MAX 1024u
#define BF_QUEUE_USER_MAX 256u
#define BF_QUEUE_USER_RUNNING (BF_WORKERS - 1u)

struct bf_fs {
    bf_db *db;
    bf_ram *ram;
    bf_itable itable;
    struct fuse_session *se;
    bf_kernel *kernel;          /* from the mount on (kernel.h) */
    bf_workq *workq;            /* the long ioctls (workq.h) */
    bf_listener *listener;      /* other mounts' commits (listen.h) */
    bf_prefetch *prefetch;      /* blocks ahead of sequential reads (prefetch.h) */
    bf_views *views;            /* the @SERIAL directories (views.h) */
    bool history;               /* the database keeps history: @SERIAL names are views */
    uint32_t blksize;           /* block size of new files */
    uint32_t readahead;         /* -o readahead=: bytes (ops.c: INIT, then the bdi) */
    bool ro;                    /* -o ro or -o at=: no write, no writeout */
    bool file_conflicts;        /* -o conflicts=file: BF_WRITEOUT_FILE_CONFLICTS */
    bool test_inject;           /* -o test_inject: BIGFILE_TEST_IOC_INJECT served */
    struct timespec mount_time; /* the root directory's times */
    /* When the daemon last warned that mapped changes went past the dirty
     * budget (staging full; ops.c), 0: never — the one field changed
     * while the loop runs, atomically. */
    _Atomic int64_t over_budget_ns;
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

/* The IOCTL request handler (ioctl.c), called by ops.c for regular files
 * (of the inode table or of a view, views.h) and the root directory (ino
 * BF_ROOT_INO: only its own requests, STATUS, HISTORY, GC).
 * Replies to req itself, at once or — for the requests that wait for the
 * kernel — later, from a worker of fs->workq. */
void bf_fs_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                 struct fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
                 size_t out_bufsz);

/* The extended attribute requests (xattr.c): user.* only. */
void bf_fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                    size_t size, int flags);
void bf_fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void bf_fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void bf_fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* Fill *st with the attributes of inode (ops.c): mode, owner, times from
 * the database metadata, size from the handle if it is open (uncommitted
 * size) else the committed size. */
void bf_fs_fill_stat(struct bf_fs *fs, bf_inode *inode, struct stat *st);

/* ns since the epoch as a timespec (ops.c). */
void bf_fs_ns_to_ts(int64_t ns, struct timespec *ts);

/* Answer a READDIR of a directory snapshot of `count` files (ops.c):
 * offsets 0 ".", 1 ".." (the root), 2 + i file i, whose name and inode
 * number entry(arg, i, &ino) gives; an entry's offset is that of the next.
 * self: the directory's inode number. */
void bf_fs_reply_readdir(fuse_req_t req, size_t size, off_t off, fuse_ino_t self, size_t count,
                         const char *(*entry)(void *arg, size_t i, fuse_ino_t *ino), void *arg);

#endif /* BIGFILEFS_FS_FS_H */
