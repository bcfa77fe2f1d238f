/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the ioctls of <bigfile/ioctl.h> (and the test-only
 * BIGFILE_TEST_IOC_INJECT of test_inject.h).
 *
 * WRITEOUT, DISCARD, INVALIDATE and SETBLKSIZE are long-running operations
 * on an inode: one at a time per inode (inode.h, bf_inode_op_begin), others
 * get EBUSY. They hold no daemon mutex while they make the kernel write
 * back or forget pages: the kernel then sends WRITEs (and waits for READs)
 * that other request threads serve. Only the inode's fh_lock is held for
 * reading, which those handlers also take for reading (reader-preferring).
 *
 * Access: like write(2), the requests that commit, drop or forget
 * uncommitted changes or change the block size — WRITEOUT, DISCARD,
 * INVALIDATE, SETBLKSIZE — need the file open for writing (the fh bit of
 * fs.h); through a read-only fd they fail with EBADF, so that a user who may
 * only read a file cannot commit or throw away other users' changes. On an
 * `ro` mount WRITEOUT and SETBLKSIZE fail with EROFS instead (no fd there
 * is writable, and EROFS says why), while DISCARD and INVALIDATE are allowed
 * through any fd: no uncommitted change can exist on an ro mount, and
 * INVALIDATE is how a read-only mount sees blocks changed in the database.
 * STAT, RECLAIM (and the test-only INJECT) need no write access.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bigfile/ioctl.h>

#include "backends/memory.h"
#include "fs/fs.h"
#include "fs/test_inject.h"
#include "fs/log.h"
#include "fs/signals.h"

/* Kernel byte range [*off, *off + *len) of blocks [blk, blk + count), *len 0
 * meaning "to the end". Returns false when the blocks lie beyond any offset
 * the kernel can cache (nothing to invalidate there). */
static bool block_range_to_bytes(uint64_t blk, uint64_t count, uint32_t blksize, off_t *off,
                                 off_t *len)
{
    uint64_t max = (uint64_t)INT64_MAX;

    if (blk > max / blksize)
        return false;
    *off = (off_t)(blk * blksize);
    if (count > (max - (uint64_t)*off) / blksize)
        *len = 0;
    else
        *len = (off_t)(count * blksize);
    return true;
}

/* Make the kernel write back every dirty page of inode — whichever process
 * dirtied it, msync'ed or not — as WRITEs to this daemon: open the file
 * through our own mount and fsync it (if its name is gone or now names
 * another file, syncfs the whole mount). Called with no daemon lock held.
 * Returns 0 or -errno (a WRITE the daemon failed, e.g. -EIO). */
static int kernel_writeback(struct bf_fs *fs, bf_inode *inode)
{
    struct bf_fileinfo info;
    bool unlinked;
    char *path = NULL;
    int fd, r = 0;

    bf_inode_info(&fs->itable, inode, &info, &unlinked);
    if (!unlinked && info.name[0] && asprintf(&path, "%s/%s", fs->mountpoint, info.name) >= 0) {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        free(path);
        if (fd >= 0) {
            struct stat st;

            if (fstat(fd, &st) == 0 && st.st_ino == inode->ino) {
                if (fsync(fd) < 0)
                    r = -errno;
                close(fd);
                return r;
            }
            close(fd);
        }
    }
    fd = open(fs->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (syncfs(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

static void log_failure(struct bf_fs *fs, bf_inode *inode, const char *what, int err)
{
    struct bf_fileinfo info;
    bool unlinked;

    bf_inode_info(&fs->itable, inode, &info, &unlinked);
    bf_err("%s: %s failed: %s", unlinked ? "(unlinked file)" : info.name, what, strerror(err));
}

/* Answer an ioctl by its outcome r: the error -r, or success with the
 * `size` bytes of out (none if size is 0). */
static void reply_result(fuse_req_t req, int r, const void *out, size_t size)
{
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_ioctl(req, 0, out, size);
}

static void ioc_writeout(fuse_req_t req, struct bf_fs *fs, bf_inode *inode, const void *in_buf,
                         size_t in_bufsz, size_t out_bufsz)
{
    struct bigfile_writeout w;
    unsigned flags = 0;
    uint64_t nblocks = 0;
    uint32_t blksize = 0;
    bf_fileh *fh;
    int r;

    if (in_bufsz < sizeof(w) || out_bufsz < sizeof(w)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    memcpy(&w, in_buf, sizeof(w));
    if (w.reserved || !w.flags ||
        (w.flags & ~(BIGFILE_WRITEOUT_STORE | BIGFILE_WRITEOUT_MARKSTORED))) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (w.flags & BIGFILE_WRITEOUT_STORE)
        flags |= BF_WRITEOUT_STORE;
    if (w.flags & BIGFILE_WRITEOUT_MARKSTORED)
        flags |= BF_WRITEOUT_MARKSTORED;

    /* EBUSY before the fsync if a writeout (or another long operation)
     * of this file runs. */
    r = bf_inode_op_begin(&fs->itable, inode, BF_OP_WRITEOUT);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    /* 1. Every change made up to now, through any mapping, reaches us. */
    r = kernel_writeback(fs, inode);
    if (r < 0) {
        log_failure(fs, inode, "writeout (writing back the kernel's dirty pages)", -r);
    } else {
        /* 2. Commit atomically; on failure every change stays. */
        r = bf_inode_fh_get(&fs->itable, inode, &fh);
        if (r == 0) {
            blksize = bf_fileh_blksize(fh);
            r = bf_fileh_writeout(fh, flags, &nblocks);
            bf_inode_fh_put(inode);
            if (r < 0)
                log_failure(fs, inode, "writeout", -r);
        }
    }
    bf_inode_op_end(&fs->itable, inode);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    w.blocks = nblocks;
    w.bytes = (flags & BF_WRITEOUT_STORE) ? nblocks * blksize : 0;
    fuse_reply_ioctl(req, 0, &w, sizeof(w));
}

static void ioc_discard(fuse_req_t req, struct bf_fs *fs, bf_inode *inode, size_t out_bufsz)
{
    struct bigfile_count c = { 0, 0 };
    uint64_t nblocks = 0;
    bf_fileh *fh;
    int r;

    if (out_bufsz < sizeof(c)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    r = bf_inode_op_begin(&fs->itable, inode, BF_OP_DISCARD);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    r = bf_inode_fh_get(&fs->itable, inode, &fh);
    if (r < 0)
        goto out;
    /* Fence the whole file: the pages the kernel launders back while it
     * forgets them must not resurrect the discarded changes. */
    r = bf_fileh_fence(fh, 0, UINT64_MAX);
    if (r == 0) {
        r = bf_fileh_discard(fh, &nblocks);
        if (r == 0) {
            c.blocks = nblocks;
            c.bytes = nblocks * bf_fileh_blksize(fh);
            /* Every mapping faults the committed data back in, and the
             * kernel asks for the (committed) size again. */
            bf_notify_inval_inode(fs->notifier, inode->ino, 0, 0);
        }
        bf_fileh_unfence(fh);
    }
    bf_inode_fh_put(inode);
out:
    bf_inode_op_end(&fs->itable, inode);
    reply_result(req, r, &c, sizeof(c));
}

static void ioc_invalidate(fuse_req_t req, struct bf_fs *fs, bf_inode *inode, const void *in_buf,
                           size_t in_bufsz)
{
    struct bigfile_range rg;
    bf_fileh *fh;
    off_t off, len;
    int r;

    if (in_bufsz < sizeof(rg)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    memcpy(&rg, in_buf, sizeof(rg));
    if (rg.count == 0 || rg.start + rg.count < rg.start) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    r = bf_inode_op_begin(&fs->itable, inode, BF_OP_INVALIDATE);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    r = bf_inode_fh_get(&fs->itable, inode, &fh);
    if (r < 0)
        goto out;
    r = bf_fileh_fence(fh, rg.start, rg.count);
    if (r == 0) {
        /* Daemon side: LOADED/DIRTY blocks go, LOADING ones will reload. */
        r = bf_fileh_invalidate(fh, rg.start, rg.count);
        /* Kernel side: waits for READs in flight on those pages (their
         * pages are locked until the reply) and drops them, so no stale
         * page survives; dirty ones are laundered into the fence. */
        if (r == 0 && block_range_to_bytes(rg.start, rg.count, bf_fileh_blksize(fh), &off, &len))
            bf_notify_inval_inode(fs->notifier, inode->ino, off, len);
        bf_fileh_unfence(fh);
    }
    bf_inode_fh_put(inode);
out:
    bf_inode_op_end(&fs->itable, inode);
    reply_result(req, r, NULL, 0);
}

static void ioc_stat(fuse_req_t req, struct bf_fs *fs, bf_inode *inode, size_t out_bufsz)
{
    struct bigfile_stat s;
    struct bf_fileh_stats st;
    bf_fileh *fh;
    int r;

    if (out_bufsz < sizeof(s)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    r = bf_inode_fh_get(&fs->itable, inode, &fh);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    bf_fileh_stat(fh, &st);
    bf_inode_fh_put(inode);

    memset(&s, 0, sizeof(s));
    s.version = BIGFILE_STAT_VERSION;
    s.blksize = st.blksize;
    s.size = st.size;
    s.committed_size = st.committed_size;
    s.loaded_blocks = st.loaded_blocks;
    s.dirty_blocks = st.dirty_blocks;
    s.loading_blocks = st.loading_blocks;
    s.loadblk_calls = st.loadblk_calls;
    s.storeblk_calls = st.storeblk_calls;
    s.bytes_loaded = st.bytes_loaded;
    s.bytes_stored = st.bytes_stored;
    s.writeouts = st.writeouts;
    s.discards = st.discards;
    s.invalidated_blocks = st.invalidated_blocks;
    s.reclaimed_blocks = st.reclaimed_blocks;
    s.errors = st.errors;
    fuse_reply_ioctl(req, 0, &s, sizeof(s));
}

static void ioc_reclaim(fuse_req_t req, struct bf_fs *fs, bf_inode *inode, size_t out_bufsz)
{
    struct bigfile_count c = { 0, 0 };
    uint64_t nblocks = 0;
    bf_fileh *fh;
    int r;

    if (out_bufsz < sizeof(c)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    /* The kernel's pages first: dirty ones are written back to the daemon
     * (they stay uncommitted changes there), then all are dropped. No
     * fence: nothing is thrown away. */
    bf_notify_inval_inode(fs->notifier, inode->ino, 0, 0);
    r = bf_inode_fh_get(&fs->itable, inode, &fh);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    c.bytes = bf_fileh_reclaim(fh, &nblocks);
    c.blocks = nblocks;
    bf_inode_fh_put(inode);
    fuse_reply_ioctl(req, 0, &c, sizeof(c));
}

static void ioc_setblksize(fuse_req_t req, struct bf_fs *fs, bf_inode *inode, const void *in_buf,
                           size_t in_bufsz)
{
    struct bigfile_blksize b;
    int r;

    if (in_bufsz < sizeof(b)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    memcpy(&b, in_buf, sizeof(b));
    if (b.reserved || !bf_blksize_valid(b.blksize)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    r = bf_inode_op_begin(&fs->itable, inode, BF_OP_SETBLKSIZE);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    r = bf_inode_set_blksize(&fs->itable, inode, b.blksize);
    bf_inode_op_end(&fs->itable, inode);
    if (r == 0)
        /* st_blksize changed: attributes only. */
        bf_notify_inval_inode(fs->notifier, inode->ino, -1, 0);
    reply_result(req, r, NULL, 0);
}

static void ioc_inject(fuse_req_t req, struct bf_fs *fs, bf_inode *inode, const void *in_buf,
                       size_t in_bufsz)
{
    struct bigfile_test_inject in;
    struct bf_mem_fault f;
    int r;

    if (!fs->test_inject) {
        fuse_reply_err(req, ENOTTY);
        return;
    }
    if (in_bufsz < sizeof(in)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    memcpy(&in, in_buf, sizeof(in));
    if (in.reserved) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    switch (in.op) {
    case BIGFILE_TEST_INJECT_CLEAR:
        bf_mem_clear_faults(fs->db);
        r = 0;
        break;
    case BIGFILE_TEST_INJECT_ADD:
        if (in.mem_op < BIGFILE_TEST_INJECT_LOADBLK || in.mem_op > BIGFILE_TEST_INJECT_COMMIT ||
            in.err < 0 || in.blk_lo > in.blk_hi) {
            r = -EINVAL;
            break;
        }
        memset(&f, 0, sizeof(f));
        f.op = (enum bf_mem_op)in.mem_op;
        f.file_id = inode->id;
        f.blk_lo = in.blk_lo;
        f.blk_hi = in.blk_hi;
        f.err = in.err;
        f.after = in.after;
        f.times = in.times;
        f.delay_us = in.delay_us;
        r = bf_mem_inject(fs->db, &f);
        break;
    default:
        r = -EINVAL;
        break;
    }
    reply_result(req, r, NULL, 0);
}

/* Whether the open file fi may send request cmd (see "Access" above):
 * 0, -EROFS (WRITEOUT or SETBLKSIZE on an ro mount, whatever the fd) or
 * -EBADF (a request that changes the file through an fd not open for
 * writing). The ro check comes first: it is the more helpful answer. */
static int check_access(const struct bf_fs *fs, unsigned int cmd, const struct fuse_file_info *fi)
{
    switch (cmd) {
    case BIGFILE_IOC_WRITEOUT:
    case BIGFILE_IOC_SETBLKSIZE:
        if (fs->ro)
            return -EROFS;
        break;
    case BIGFILE_IOC_DISCARD:
    case BIGFILE_IOC_INVALIDATE:
        if (fs->ro)
            return 0; /* nothing uncommitted to protect on an ro mount */
        break;
    default:
        return 0;
    }
    /* libfuse always passes the fi of the open file; without one, no
     * write access can be shown. */
    return fi && bf_fh_writable(fi->fh) ? 0 : -EBADF;
}

void bf_fs_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                 struct fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
                 size_t out_bufsz)
{
    struct bf_fs *fs = fuse_req_userdata(req);
    bf_inode *inode;

    int r;

    (void)arg;
    (void)flags;
    r = check_access(fs, cmd, fi);
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    inode = bf_itable_find(&fs->itable, ino);
    if (!inode) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    bf_busy_enter(fs);
    switch (cmd) {
    case BIGFILE_IOC_WRITEOUT:
        ioc_writeout(req, fs, inode, in_buf, in_bufsz, out_bufsz);
        break;
    case BIGFILE_IOC_DISCARD:
        ioc_discard(req, fs, inode, out_bufsz);
        break;
    case BIGFILE_IOC_INVALIDATE:
        ioc_invalidate(req, fs, inode, in_buf, in_bufsz);
        break;
    case BIGFILE_IOC_STAT:
        ioc_stat(req, fs, inode, out_bufsz);
        break;
    case BIGFILE_IOC_RECLAIM:
        ioc_reclaim(req, fs, inode, out_bufsz);
        break;
    case BIGFILE_IOC_SETBLKSIZE:
        ioc_setblksize(req, fs, inode, in_buf, in_bufsz);
        break;
    case BIGFILE_TEST_IOC_INJECT:
        ioc_inject(req, fs, inode, in_buf, in_bufsz);
        break;
    default:
        fuse_reply_err(req, ENOTTY);
        break;
    }
    bf_busy_leave(fs);
    bf_itable_put(&fs->itable, inode);
}
