/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the FUSE low-level operations (see fs.h).
 *
 * The mount root is the only directory; it lists the database's bigfiles.
 * Names are committed to the database at once; contents go through the
 * file's shared bf_fileh (inode.h), and reach the database only by the
 * WRITEOUT ioctl (ioctl.c). The @SERIAL directories of point-in-time
 * views (and the whole mount with -o at=) are views.c's: every request on
 * a view inode (bf_ino_is_view) goes there, and what would change a view
 * is EROFS here.
 *
 * Every handler here runs on a request thread and never waits for the
 * kernel (kernel.h, D1). A core or backend error reaches the kernel through
 * errors.h: bf_errno_data() for READ, WRITE and LSEEK, bf_errno_ns() for
 * the others.
 *
 * Global state: a pthread key (created once) whose per-thread value is the
 * READ buffer of that request thread (BF_MAX_IO bytes, freed when the
 * thread exits), so that READs neither allocate nor fault in a fresh buffer
 * each time.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h> /* RENAME_NOREPLACE, RENAME_EXCHANGE */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fs/errors.h"
#include "fs/fs.h"
#include "fs/log.h"
#include "util/debug.h"

static struct bf_fs *fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

/* ---- attributes ---------------------------------------------------------- */

void bf_fs_ns_to_ts(int64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000;
        ts->tv_sec--;
    }
}

void bf_fs_fill_stat(struct bf_fs *fs, bf_inode *inode, struct stat *st)
{
    struct bf_fileinfo info;
    bool unlinked;
    uint64_t size;

    bf_inode_info(&fs->itable, inode, &info, &unlinked);
    size = info.size;
    /* The handle, if open, has the current (uncommitted) size and knows
     * the dirty blocks; else the backend's count of stored blocks. Both
     * are cached, so this stays cheap. On an error: the whole size. */
    uint64_t span = size, alloc, nstored;
    int r;
    pthread_rwlock_rdlock(&inode->fh_lock);
    if (inode->fh) {
        size = bf_fileh_size(inode->fh);
        info.blksize = bf_fileh_blksize(inode->fh);
        r = bf_fileh_allocated_bytes(inode->fh, &alloc);
    } else {
        r = bf_inode_stored_blocks(&fs->itable, inode, &nstored);
        if (r == 0 && bf_blksize_valid(info.blksize)) {
            span = (size + info.blksize - 1) / info.blksize * info.blksize;
            alloc = nstored < span / info.blksize ? nstored * info.blksize : span;
        }
    }
    pthread_rwlock_unlock(&inode->fh_lock);
    if (r < 0 || !bf_blksize_valid(info.blksize))
        alloc = size;

    memset(st, 0, sizeof(*st));
    st->st_ino = inode->ino;
    st->st_mode = S_IFREG | (info.mode & 07777);
    st->st_nlink = unlinked ? 0 : 1;
    st->st_uid = info.uid;
    st->st_gid = info.gid;
    st->st_size = (off_t)size;
    st->st_blksize = info.blksize;
    st->st_blocks = (blkcnt_t)((alloc + 511) / 512); /* 512-byte units */
    bf_fs_ns_to_ts(info.mtime_ns, &st->st_mtim);
    bf_fs_ns_to_ts(info.mtime_ns, &st->st_atim);
    bf_fs_ns_to_ts(info.ctime_ns, &st->st_ctim);
}

static void fill_root_stat(struct bf_fs *fs, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_mtim = fs->mount_time;
    st->st_ctim = fs->mount_time;
    st->st_atim = fs->mount_time;
    st->st_ino = BF_ROOT_INO;
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_blksize = 4096;
}

/* Reply to a LOOKUP/MKNOD with the entry of inode, counting one kernel
 * lookup; undo the count if the kernel did not get the reply. */
static void reply_entry(fuse_req_t req, struct bf_fs *fs, bf_inode *inode)
{
    struct fuse_entry_param e;

    memset(&e, 0, sizeof(e));
    e.ino = inode->ino;
    e.attr_timeout = BF_ATTR_TIMEOUT;
    e.entry_timeout = BF_ATTR_TIMEOUT;
    bf_fs_fill_stat(fs, inode, &e.attr);
    bf_itable_lookup(&fs->itable, inode, 1);
    if (fuse_reply_entry(req, &e) != 0)
        bf_itable_forget(&fs->itable, inode->ino, 1);
}

/* ---- session life -------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct bf_fs *fs = userdata;

    /* Never let an mtime or size change drop the file's whole cache: the
     * daemon invalidates explicitly (notify.h). */
    conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
    if (conn->capable & FUSE_CAP_EXPLICIT_INVAL_DATA)
        conn->want |= FUSE_CAP_EXPLICIT_INVAL_DATA;
    /* Write-through write(2) and plain writeback of mappings. */
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    /* READ replies from the block file are spliced (reply_send). */
    if (conn->capable & FUSE_CAP_SPLICE_WRITE)
        conn->want |= FUSE_CAP_SPLICE_WRITE;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    conn->max_write = BF_MAX_IO;
    conn->max_read = BF_MAX_IO;
    /* The whole -o readahead, not capped at a READ: the kernel sets the
     * mount's readahead to the smaller of this and what it has, so a
     * window up to its 128 KiB holds from INIT on, without root; a larger
     * one is set in the bdi below, and stays whether the kernel applies
     * this reply before or after that (it did both under load, and a cap
     * here undid a larger window that was set first). */
    conn->max_readahead = fs->readahead;
    if (conn->max_background < 64)
        conn->max_background = 64;

    /* The readahead of -o readahead= (1 MiB by default: one READ); let
     * the mount hold up to half the dirty threshold. Once the kernel is
     * initialized; from the notifier, not this request thread (kernel.h). */
    bf_kernel_tune_bdi_later(fs->kernel, fs->readahead / 1024, 50);
}

/* ---- namespace ------------------------------------------------------------ */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct bf_fs *fs = fs_of(req);
    struct bf_fileinfo info;
    bf_inode *inode;
    int r;

    uint64_t serial;

    if (bf_ino_is_view(parent) || (parent == BF_ROOT_INO && bf_views_at(fs->views))) {
        bf_views_lookup(fs->views, req, parent, name);
        return;
    }
    if (parent != BF_ROOT_INO) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    r = bf_db_lookup(fs->db, name, &info);
    /* @SERIAL is a view unless a file has that name (one made before the
     * database kept history, or through the library: it stays reachable). */
    if (r == -ENOENT && fs->history && (serial = bf_views_name_serial(name))) {
        bf_views_lookup_dir(fs->views, req, serial);
        return;
    }
    if (r < 0) {
        fuse_reply_err(req, bf_errno_ns(r));
        return;
    }
    inode = bf_itable_get(&fs->itable, &info);
    if (!inode) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    reply_entry(req, fs, inode);
    bf_itable_put(&fs->itable, inode);
}

/* FORGET of an inode of either space. */
static void forget_ino(struct bf_fs *fs, fuse_ino_t ino, uint64_t nlookup)
{
    if (bf_ino_is_view(ino))
        bf_views_forget(fs->views, ino, nlookup);
    else
        bf_itable_forget(&fs->itable, ino, nlookup);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    forget_ino(fs_of(req), ino, nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    struct bf_fs *fs = fs_of(req);

    for (size_t i = 0; i < count; i++)
        forget_ino(fs, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct bf_fs *fs = fs_of(req);
    struct bf_fileinfo info;
    struct stat st;
    bf_inode *inode;

    (void)fi;
    if (bf_ino_is_view(ino) || (ino == BF_ROOT_INO && bf_views_at(fs->views))) {
        bf_views_getattr(fs->views, req, ino);
        return;
    }
    if (ino == BF_ROOT_INO) {
        fill_root_stat(fs, &st);
        fuse_reply_attr(req, &st, BF_ATTR_TIMEOUT);
        return;
    }
    inode = bf_itable_find(&fs->itable, ino);
    if (!inode) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    /* Refresh the metadata (mode, owner, times, committed size). */
    if (bf_db_getinfo(fs->db, inode->id, &info) == 0)
        bf_itable_set_info(&fs->itable, inode, &info);
    bf_fs_fill_stat(fs, inode, &st);
    fuse_reply_attr(req, &st, BF_ATTR_TIMEOUT);
    bf_itable_put(&fs->itable, inode);
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    struct bf_fs *fs = fs_of(req);
    struct bf_fileinfo info;
    struct stat st;
    bf_inode *inode;
    uint32_t mode, uid, gid;
    int64_t mtime;
    const uint32_t *pmode = NULL, *puid = NULL, *pgid = NULL;
    const int64_t *pmtime = NULL;
    int r = 0;

    (void)fi;
    if (bf_ino_is_view(ino)) {
        fuse_reply_err(req, EROFS); /* truncate, chmod, chown, utimes of a view */
        return;
    }
    if (ino == BF_ROOT_INO) {
        fuse_reply_err(req, EPERM);
        return;
    }
    inode = bf_itable_find(&fs->itable, ino);
    if (!inode) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (fs->ro) {
        r = -EROFS;
        goto out;
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
        bf_fileh *fh;

        if (attr->st_size < 0) {
            r = -EINVAL;
            goto out;
        }
        /* The size is an uncommitted change, like the contents. */
        r = bf_inode_fh_get(&fs->itable, inode, &fh);
        if (r == 0) {
            r = bf_fileh_truncate(fh, (uint64_t)attr->st_size);
            bf_inode_fh_put(inode);
        }
        if (r < 0) {
            if (r != -EBUSY && r != -EINVAL && r != -EFBIG)
                bf_err("truncating inode %llu to %lld failed: %s", (unsigned long long)ino,
                       (long long)attr->st_size, strerror(-r));
            goto out;
        }
    }
    if (to_set & FUSE_SET_ATTR_MODE) {
        mode = attr->st_mode & 07777;
        pmode = &mode;
    }
    if (to_set & FUSE_SET_ATTR_UID) {
        uid = attr->st_uid;
        puid = &uid;
    }
    if (to_set & FUSE_SET_ATTR_GID) {
        gid = attr->st_gid;
        pgid = &gid;
    }
    /* An explicit mtime (utimensat, touch) is metadata, committed at once;
     * the mtime the kernel adds to a truncate is not recorded (mtime is the
     * last commit of the contents). */
    if ((to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) &&
        !(to_set & FUSE_SET_ATTR_SIZE)) {
        mtime = (to_set & FUSE_SET_ATTR_MTIME_NOW)
                    ? now_ns()
                    : (int64_t)attr->st_mtim.tv_sec * 1000000000 + attr->st_mtim.tv_nsec;
        pmtime = &mtime;
    }
    if (pmode || puid || pgid || pmtime) {
        r = bf_db_setattr(fs->db, inode->id, pmode, puid, pgid, pmtime);
        if (r < 0)
            goto out;
    }
    if (bf_db_getinfo(fs->db, inode->id, &info) == 0)
        bf_itable_set_info(&fs->itable, inode, &info);
out:
    if (r < 0) {
        fuse_reply_err(req, bf_errno_ns(r));
    } else {
        bf_fs_fill_stat(fs, inode, &st);
        fuse_reply_attr(req, &st, BF_ATTR_TIMEOUT);
    }
    bf_itable_put(&fs->itable, inode);
}

/* Whether name is reserved in the root: "@SERIAL" names the view of
 * SERIAL in a database that keeps history (views.h) — unless a file has
 * that name (made before the database kept history): it stays a file. */
static bool reserved_name(const struct bf_fs *fs, const char *name)
{
    struct bf_fileinfo info;

    return fs->history && bf_views_name_serial(name) != 0 &&
           bf_db_lookup(fs->db, name, &info) == -ENOENT;
}

/* Create file `name` in the database; on success *inode holds a
 * reference. */
static int create_file(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       bf_inode **inode)
{
    struct bf_fs *fs = fs_of(req);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    struct bf_fileinfo info;
    int r;

    if (bf_ino_is_view(parent))
        return -EROFS;
    if (parent != BF_ROOT_INO)
        return -ENOTDIR;
    if (fs->ro)
        return -EROFS;
    if (!S_ISREG(mode))
        return -EPERM; /* bigfiles only */
    if (reserved_name(fs, name))
        return -EINVAL;
    r = bf_db_create(fs->db, name, fs->blksize, 0, mode & 07777, ctx->uid, ctx->gid, &info);
    if (r < 0)
        return r;
    *inode = bf_itable_get(&fs->itable, &info);
    return *inode ? 0 : -ENOMEM;
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    struct bf_fs *fs = fs_of(req);
    bf_inode *inode;
    int r;

    (void)rdev;
    r = create_file(req, parent, name, mode, &inode);
    if (r < 0) {
        fuse_reply_err(req, bf_errno_ns(r));
        return;
    }
    reply_entry(req, fs, inode);
    bf_itable_put(&fs->itable, inode);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    (void)name;
    (void)mode;
    /* one flat directory */
    fuse_reply_err(req, fs_of(req)->ro || bf_ino_is_view(parent) ? EROFS : EPERM);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    (void)link;
    (void)name;
    fuse_reply_err(req, fs_of(req)->ro || bf_ino_is_view(parent) ? EROFS : EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    (void)newname;
    /* one name per file */
    fuse_reply_err(req, fs_of(req)->ro || bf_ino_is_view(ino) || bf_ino_is_view(newparent) ? EROFS
                                                                                           : EPERM);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct bf_fs *fs = fs_of(req);
    int r;

    if (bf_ino_is_view(parent) || fs->ro) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (parent != BF_ROOT_INO) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    r = bf_db_unlink(fs->db, name);
    if (r == 0)
        bf_itable_unlinked(&fs->itable, name);
    fuse_reply_err(req, bf_errno_ns(r));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct bf_fs *fs = fs_of(req);
    struct bf_fileinfo info;

    if (bf_ino_is_view(parent) || fs->ro || reserved_name(fs, name)) {
        fuse_reply_err(req, EROFS); /* an @SERIAL directory stays */
        return;
    }
    fuse_reply_err(req, bf_db_lookup(fs->db, name, &info) == 0 ? ENOTDIR : ENOENT);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    struct bf_fs *fs = fs_of(req);
    unsigned bflags = 0;
    int r;

    if (bf_ino_is_view(parent) || bf_ino_is_view(newparent) || fs->ro || reserved_name(fs, name)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (parent != BF_ROOT_INO || newparent != BF_ROOT_INO) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    if (reserved_name(fs, newname)) {
        fuse_reply_err(req, (flags & RENAME_EXCHANGE) ? EROFS : EINVAL);
        return;
    }
    if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
        fuse_reply_err(req, EINVAL); /* RENAME_WHITEOUT */
        return;
    }
    if (flags & RENAME_NOREPLACE)
        bflags |= BF_RENAME_NOREPLACE;
    if (flags & RENAME_EXCHANGE)
        bflags |= BF_RENAME_EXCHANGE;
    r = bf_db_rename(fs->db, name, newname, bflags);
    if (r == 0)
        bf_itable_renamed(&fs->itable, name, newname, bflags);
    fuse_reply_err(req, bf_errno_ns(r));
}

/* ---- files ------------------------------------------------------------------ */

/* Open inode for fi (reference held by the caller). */
static int open_inode(struct bf_fs *fs, bf_inode *inode, struct fuse_file_info *fi)
{
    bf_fileh *fh;
    int r;

    if (fs->ro && ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)))
        return -EROFS;
    /* Open the shared handle now, so that errors show at open(2). */
    r = bf_inode_fh_get(&fs->itable, inode, &fh);
    if (r < 0)
        return r;
    /* libfuse asks for atomic O_TRUNC by default: the kernel sends no
     * SETATTR but the flag, and drops its pages and size itself. Like
     * every size change, an uncommitted one. */
    if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY) {
        r = bf_fileh_truncate(fh, 0);
        if (r < 0) {
            bf_inode_fh_put(inode);
            return r;
        }
    }
    bf_inode_fh_put(inode);
    bf_itable_open(&fs->itable, inode);
    /* The inode, and whether this open may write (fs.h): the IOCTL
     * request carries only this fh, not the open flags. */
    fi->fh = bf_fh_make(inode, fi->flags);
    /* Through the page cache, kept across opens (mappings of other
     * processes share it); never direct_io. */
    fi->keep_cache = 1;
    fi->direct_io = 0;
    return 0;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    struct bf_fs *fs = fs_of(req);
    struct fuse_entry_param e;
    bf_inode *inode;
    int r;

    r = create_file(req, parent, name, mode | S_IFREG, &inode);
    if (r < 0) {
        fuse_reply_err(req, bf_errno_ns(r));
        return;
    }
    r = open_inode(fs, inode, fi);
    if (r < 0) {
        fuse_reply_err(req, bf_errno_ns(r));
        bf_itable_put(&fs->itable, inode);
        return;
    }
    memset(&e, 0, sizeof(e));
    e.ino = inode->ino;
    e.attr_timeout = BF_ATTR_TIMEOUT;
    e.entry_timeout = BF_ATTR_TIMEOUT;
    bf_fs_fill_stat(fs, inode, &e.attr);
    bf_itable_lookup(&fs->itable, inode, 1);
    if (fuse_reply_create(req, &e, fi) != 0) {
        /* The kernel did not get it: no lookup, and no RELEASE will come. */
        bf_itable_forget(&fs->itable, inode->ino, 1);
        bf_itable_release(&fs->itable, inode);
    }
    bf_itable_put(&fs->itable, inode);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct bf_fs *fs = fs_of(req);
    bf_inode *inode;
    int r;

    if (bf_ino_is_view(ino)) {
        bf_views_open(fs->views, req, ino, fi);
        return;
    }
    if (ino == BF_ROOT_INO) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    inode = bf_itable_find(&fs->itable, ino);
    if (!inode) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    r = open_inode(fs, inode, fi);
    if (r < 0)
        fuse_reply_err(req, bf_errno_ns(r));
    else if (fuse_reply_open(req, fi) != 0)
        bf_itable_release(&fs->itable, inode);
    bf_itable_put(&fs->itable, inode);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (bf_ino_is_view(ino)) {
        bf_views_release(fs_of(req)->views, req, fi);
        return;
    }
    bf_itable_release(&fs_of(req)->itable, bf_fh_inode(fi->fh));
    fuse_reply_err(req, 0);
}

/* FLUSH and FSYNC commit nothing: changes reach the database only by
 * writeout. (An fsync does make the kernel write dirty pages back to the
 * daemon first, which WRITEOUT relies on.) */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    (void)fi;
    fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    (void)datasync;
    (void)fi;
    fuse_reply_err(req, 0);
}

static pthread_key_t readbuf_key;
static pthread_once_t readbuf_once = PTHREAD_ONCE_INIT;

static void readbuf_free(void *p)
{
    free(p);
}

static void readbuf_key_create(void)
{
    if (pthread_key_create(&readbuf_key, readbuf_free) != 0)
        abort(); /* only at the first READ; out of keys is a bug */
}

/* This thread's READ buffer of BF_MAX_IO bytes, or NULL. */
static void *readbuf(void)
{
    void *p;

    pthread_once(&readbuf_once, readbuf_key_create);
    p = pthread_getspecific(readbuf_key);
    if (!p) {
        p = malloc(BF_MAX_IO);
        if (p && pthread_setspecific(readbuf_key, p) != 0) {
            free(p);
            p = NULL;
        }
    }
    return p;
}

/* Log a failed READ/WRITE with the file's name and block range. */
static void log_io_error(struct bf_fs *fs, bf_inode *inode, const char *what, uint64_t blksize,
                         off_t off, size_t size, int err)
{
    struct bf_fileinfo info;
    bool unlinked;
    uint64_t lo = (uint64_t)off / blksize;
    uint64_t hi = ((uint64_t)off + (size ? size - 1 : 0)) / blksize;

    bf_inode_info(&fs->itable, inode, &info, &unlinked);
    if (lo == hi)
        bf_err("%s: %s of block %llu failed: %s", unlinked ? "(unlinked file)" : info.name, what,
               (unsigned long long)lo, strerror(err));
    else
        bf_err("%s: %s of blocks %llu-%llu failed: %s", unlinked ? "(unlinked file)" : info.name,
               what, (unsigned long long)lo, (unsigned long long)hi, strerror(err));
}

/* A write of a mapped page went past the dirty budget because staging
 * failed (the staging area is full): say so, at most once a minute. */
static void warn_over_budget(struct bf_fs *fs, bf_inode *inode)
{
    int64_t now = now_ns(), last = atomic_load(&fs->over_budget_ns);
    if (last && now - last < (int64_t)60 * 1000000000)
        return;
    if (!atomic_compare_exchange_strong(&fs->over_budget_ns, &last, now))
        return;
    struct bf_fileinfo info;
    bool unlinked;
    bf_inode_info(&fs->itable, inode, &info, &unlinked);
    bf_warn("%s: staging is full: changes made through a mapping are kept in memory past the "
            "dirty budget; free space, or write out or discard the changes",
            unlinked ? "(unlinked file)" : info.name);
}

/* Get the handle of an open file's inode for a READ, WRITE or LSEEK, or
 * reply the error and return false (a file gone from the database under an
 * open fd is EIO, errors.h). On success the caller calls bf_inode_fh_put()
 * when done. */
static bool data_fh_get(fuse_req_t req, struct bf_fs *fs, bf_inode *inode, bf_fileh **fh)
{
    int r = bf_inode_fh_get(&fs->itable, inode, fh);

    if (r < 0) {
        fuse_reply_err(req, bf_errno_data(r));
        return false;
    }
    return true;
}

/* A READ's reply spliced from a file of the store (bf_fileh_read_sink):
 * the bytes go from that file's page cache into this thread's pipe, by
 * reference (or, from a descriptor opened O_DIRECT, read by the kernel
 * into fresh pages of the pipe), whole (else nothing is answered and the
 * READ falls back to the daemon's cache, whose load reports what is
 * wrong: a reply shorter than asked would make the kernel shrink the
 * file), and libfuse splices them on to /dev/fuse, where the kernel
 * copies them once, into the bigfile's page cache. */
struct reply_sink {
    struct bf_sink sink;
    fuse_req_t req;
};

static pthread_key_t sendpipe_key;
static pthread_once_t sendpipe_once = PTHREAD_ONCE_INIT;
/* The key's value for a thread that cannot send: no pipe of the size
 * could be made, or the block file cannot be spliced. */
static int sendpipe_none[2];

static void sendpipe_free(void *p)
{
    int *fd = p;
    if (fd == sendpipe_none)
        return;
    close(fd[0]);
    close(fd[1]);
    free(fd);
}

static void sendpipe_key_create(void)
{
    if (pthread_key_create(&sendpipe_key, sendpipe_free) != 0)
        abort(); /* only at the first send; out of keys is a bug */
}

/* This thread's empty pipe of BF_MAX_IO bytes, or NULL: then this
 * thread answers from the cache (a pipe failed once: the per-user pipe
 * quota, pipe-max-size below 1 MiB; not tried again). */
static int *sendpipe(void)
{
    pthread_once(&sendpipe_once, sendpipe_key_create);
    int *fd = pthread_getspecific(sendpipe_key);
    if (fd)
        return fd == sendpipe_none ? NULL : fd;
    fd = malloc(2 * sizeof(*fd));
    if (fd && pipe2(fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        free(fd);
        fd = NULL;
    }
    if (fd && fcntl(fd[0], F_SETPIPE_SZ, (int)BF_MAX_IO) < (int)BF_MAX_IO) {
        sendpipe_free(fd);
        fd = NULL;
    }
    if (pthread_setspecific(sendpipe_key, fd ? fd : sendpipe_none) != 0 && fd) {
        sendpipe_free(fd);
        fd = NULL;
    }
    return fd;
}

/* Drop this thread's pipe (it may hold bytes): the next send makes one,
 * or, `never`, none (this thread cannot send). */
static void sendpipe_drop(int *fd, bool never)
{
    pthread_setspecific(sendpipe_key, never ? sendpipe_none : NULL);
    sendpipe_free(fd);
}

static int reply_send(struct bf_sink *sink, int fd, uint64_t pos, size_t len)
{
    struct reply_sink *rs = (struct reply_sink *)sink;
    int *p = sendpipe();
    loff_t at = (loff_t)pos;
    size_t got = 0;
    int left = 0;

    if (!p)
        return -ENOMEM;
    bool never = false;
    while (got < len) {
        /* NONBLOCK: a range that does not fit the pipe (not page-aligned)
         * fails instead of waiting for a reader. */
        ssize_t n = splice(fd, &at, p[1], NULL, len - got, SPLICE_F_NONBLOCK);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else {
            /* the file ends, a read error, the pipe full; a file system
             * that cannot splice: never again. A direct read refused is
             * the store's descriptor's, not the pipe's: said as such
             * (bf_sink), the pipe still empty. */
            if (n < 0 && errno == EINVAL && got == 0 && (fcntl(fd, F_GETFL) & O_DIRECT))
                return -EINVAL;
            never = n < 0 && (errno == EINVAL || errno == ENOSYS) && got == 0;
            break;
        }
    }
    if (got < len) {
        sendpipe_drop(p, never);
        return -EIO;
    }
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
    bv.buf[0].flags = FUSE_BUF_IS_FD;
    bv.buf[0].fd = p[0];
    /* A failure leaves nothing to answer: the request is gone (libfuse
     * frees it either way); the kernel's read sees an error. */
    fuse_reply_data(rs->req, &bv, 0);
    if (ioctl(p[0], FIONREAD, &left) < 0 || left > 0)
        sendpipe_drop(p, false);
    return 0;
}

/* Read into refs (the cached blocks' buffers, held, and buf), or answer
 * req straight from the store: reply_sink. */
static ssize_t read_or_send(fuse_req_t req, bf_fileh *fh, void *buf, size_t size, off_t off,
                            bool *sent, struct bf_read_refs *refs)
{
    struct reply_sink rs = { .sink = { .send = reply_send }, .req = req };
    return bf_fileh_read_refs(fh, buf, size, (uint64_t)off, &rs.sink, sent, refs);
}

/* Answer a READ with the n bytes of read_or_send, unless they were sent:
 * from refs, whose holds are dropped after (the kernel copies the bytes
 * from the blocks' buffers into the bigfile's pages, which it keeps
 * locked meanwhile: I33 of fileh.h), or with refs NULL from buf. */
static void reply_read(fuse_req_t req, bool sent, struct bf_read_refs *refs, const void *buf,
                       ssize_t n)
{
    if (!refs) {
        if (!sent)
            fuse_reply_buf(req, buf, (size_t)n);
        return;
    }
    if (!sent)
        fuse_reply_iov(req, refs->iov, (int)refs->n);
    bf_fileh_refs_put(refs);
}

/* READ of a view file (views.h): the same path as a current file's, on
 * the view's read-only handle, which stays while the file is open. */
static void read_view(fuse_req_t req, struct bf_fs *fs, bf_vnode *vn, void *buf, size_t size,
                      off_t off)
{
    bf_fileh *fh = bf_vnode_fh(fs->views, vn);
    struct bf_read_refs refs;
    uint64_t ra_blk, ra_n;
    bool sent;
    ssize_t n;

    if (!BF_CHECK(fh != NULL, "view inode %llu read with no handle",
                  (unsigned long long)bf_vnode_ino(vn))) {
        fuse_reply_err(req, EIO);
        return;
    }
    n = read_or_send(req, fh, buf, size, off, &sent, &refs);
    if (n < 0) {
        bf_err("@%llu/%s: load at offset %lld failed: %s", (unsigned long long)bf_vnode_serial(vn),
               bf_vnode_name(vn), (long long)off, strerror((int)-n));
        fuse_reply_err(req, bf_errno_data((int)n));
        return;
    }
    if (bf_fileh_readahead(fh, &ra_blk, &ra_n))
        bf_prefetch_offer_view(fs->prefetch, fs->views, vn, ra_blk, ra_n);
    reply_read(req, sent, &refs, buf, n);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct bf_fs *fs = fs_of(req);
    bf_inode *inode = bf_fh_inode(fi->fh);
    struct bf_read_refs refs;
    bf_fileh *fh;
    void *buf;
    bool sent;
    ssize_t n;

    if (size > BF_MAX_IO)
        size = BF_MAX_IO;
    buf = readbuf();
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (bf_ino_is_view(ino)) {
        /* Held: once a sent reply is made, the file may be released. */
        bf_vnode *vn = bf_views_fh(fi->fh);
        bf_views_hold(fs->views, vn);
        read_view(req, fs, vn, buf, size, off);
        bf_views_put(fs->views, vn);
        return;
    }
    /* A reference of our own: once a sent reply is made (read_or_send),
     * the kernel may release and forget the file while this thread still
     * uses the inode (before fh_lock: inode.h, table mutex -> fh_lock). */
    bf_inode *held = bf_itable_find(&fs->itable, inode->ino);
    if (!data_fh_get(req, fs, inode, &fh)) {
        if (held)
            bf_itable_put(&fs->itable, held);
        return;
    }
    /* Short only at the end of the file: holes come back as zeros, so the
     * kernel never takes a short reply for a smaller size. A reader
     * without the page cache (O_DIRECT) gets a copy made under the ram
     * lock: its READ locks no page, so a write of the same bytes could
     * run during a reply by reference (I33) and tear it. (fi->flags are
     * the reader's f_flags: the kernel sends them with every READ.) */
    struct bf_read_refs *byref = fi->flags & O_DIRECT ? NULL : &refs;
    n = read_or_send(req, fh, buf, size, off, &sent, byref);
    if (n < 0) {
        log_io_error(fs, inode, "load", bf_fileh_blksize(fh), off, size, (int)-n);
        bf_inode_fh_put(inode);
        /* read(2) gets EIO, a mapped access SIGBUS; the next access
         * tries again. */
        fuse_reply_err(req, bf_errno_data((int)n));
    } else {
        /* Sequential reads: the blocks after this one load meanwhile, in
         * parallel (prefetch.h). Offered once fh_lock is released: the
         * offer takes the table mutex. */
        uint64_t ra_blk, ra_n;
        bool ahead = bf_fileh_readahead(fh, &ra_blk, &ra_n);
        bf_inode_fh_put(inode);
        if (ahead)
            bf_prefetch_offer(fs->prefetch, inode, ra_blk, ra_n);
        reply_read(req, sent, byref, buf, n);
    }
    if (held)
        bf_itable_put(&fs->itable, held);
}

/* bf_fileh_write_flags() of [off, off + size), one call per block, with
 * `flags`; *over gets whether a block went over the dirty budget. Returns
 * size or the first error. */
static ssize_t write_by_block(bf_fileh *fh, const char *buf, size_t size, uint64_t off,
                              unsigned flags, bool *over)
{
    uint64_t blksize = bf_fileh_blksize(fh);
    size_t done = 0;

    while (done < size) {
        uint64_t pos = off + done;
        size_t chunk = (size_t)(blksize - pos % blksize);
        ssize_t n;

        if (chunk > size - done)
            chunk = size - done;
        bool o;
        n = bf_fileh_write_flags(fh, buf + done, chunk, pos, flags, &o);
        if (n < 0)
            return n;
        *over |= o;
        done += chunk;
    }
    return (ssize_t)size;
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    struct bf_fs *fs = fs_of(req);
    bf_inode *inode = bf_fh_inode(fi->fh);
    bf_fileh *fh;
    ssize_t n;

    if (fs->ro || bf_ino_is_view(ino)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (!data_fh_get(req, fs, inode, &fh))
        return;
    /* An uncommitted change of the shared handle. The kernel may gather
     * dirty pages of several blocks in one WRITE; the core drops a write
     * whole if it touches a fenced block (a discard or an invalidation is
     * running), so write block by block: only the pieces in fenced blocks
     * are dropped, never the pages next to an invalidated range. */
    /* The kernel's writeback of a mapped page (fi->writepage) cannot
     * keep its bytes when the WRITE fails: FUSE does not mark the page
     * dirty again. So it never fails for a full staging area: the change
     * stays in memory past the dirty budget (BF_WRITE_KEEP). write(2)
     * gets ENOSPC instead, and keeps its bytes. */
    bool over = false;
    n = write_by_block(fh, buf, size, (uint64_t)off, fi->writepage ? BF_WRITE_KEEP : 0, &over);
    if (n < 0) {
        if (n != -EFBIG && n != -EINVAL)
            log_io_error(fs, inode, "write (load)", bf_fileh_blksize(fh), off, size, (int)-n);
        bf_inode_fh_put(inode);
        fuse_reply_err(req, bf_errno_write((int)n));
        return;
    }
    if (over)
        warn_over_budget(fs, inode);
    bf_inode_fh_put(inode);
    fuse_reply_write(req, (size_t)n);
}

/* ---- directory ---------------------------------------------------------- */

/* A snapshot of the directory taken at OPENDIR, served by READDIR. */
struct dirsnap {
    size_t count, cap;
    struct dirent_s {
        uint64_t id;
        char *name;
    } * ents;
};

static int dirsnap_add(void *arg, const struct bf_fileinfo *fi)
{
    struct dirsnap *d = arg;

    if (d->count == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 64;
        struct dirent_s *n = realloc(d->ents, ncap * sizeof(*n));

        if (!n)
            return -ENOMEM;
        d->ents = n;
        d->cap = ncap;
    }
    d->ents[d->count].name = strdup(fi->name);
    if (!d->ents[d->count].name)
        return -ENOMEM;
    d->ents[d->count].id = fi->id;
    d->count++;
    return 0;
}

static void dirsnap_free(struct dirsnap *d)
{
    for (size_t i = 0; i < d->count; i++)
        free(d->ents[i].name);
    free(d->ents);
    free(d);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct bf_fs *fs = fs_of(req);
    struct dirsnap *d;
    int r;

    if (bf_ino_is_view(ino) || (ino == BF_ROOT_INO && bf_views_at(fs->views))) {
        bf_views_opendir(fs->views, req, ino, fi);
        return;
    }
    if (ino != BF_ROOT_INO) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    d = calloc(1, sizeof(*d));
    if (!d) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    r = bf_db_list(fs->db, dirsnap_add, d);
    if (r < 0) {
        dirsnap_free(d);
        fuse_reply_err(req, bf_errno_ns(r));
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)d;
    if (fuse_reply_open(req, fi) != 0)
        dirsnap_free(d);
}

void bf_fs_reply_readdir(fuse_req_t req, size_t size, off_t off, fuse_ino_t self, size_t count,
                         const char *(*entry)(void *arg, size_t i, fuse_ino_t *ino), void *arg)
{
    char *buf;
    size_t used = 0;

    buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* Offsets: 0 ".", 1 "..", 2 + i the i-th file; an entry's offset is
     * that of the next. */
    for (size_t i = (size_t)(off < 0 ? 0 : off); i < count + 2; i++) {
        struct stat st;
        const char *name;
        fuse_ino_t ino;
        size_t len;

        memset(&st, 0, sizeof(st));
        if (i < 2) {
            name = i == 0 ? "." : "..";
            st.st_ino = i == 0 ? self : BF_ROOT_INO;
            st.st_mode = S_IFDIR;
        } else {
            name = entry(arg, i - 2, &ino);
            st.st_ino = ino;
            st.st_mode = S_IFREG;
        }
        len = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)(i + 1));
        if (len > size - used)
            break;
        used += len;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

/* Entry i of a root snapshot (bf_fs_reply_readdir). */
static const char *dirsnap_entry(void *arg, size_t i, fuse_ino_t *ino)
{
    struct dirsnap *d = arg;

    *ino = (fuse_ino_t)d->ents[i].id + 1;
    return d->ents[i].name;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    struct bf_fs *fs = fs_of(req);
    struct dirsnap *d = (struct dirsnap *)(uintptr_t)fi->fh;

    if (bf_ino_is_view(ino) || bf_views_at(fs->views)) {
        bf_views_readdir(fs->views, req, size, off, fi);
        return;
    }
    bf_fs_reply_readdir(req, size, off, BF_ROOT_INO, d->count, dirsnap_entry, d);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct bf_fs *fs = fs_of(req);

    if (bf_ino_is_view(ino) || bf_views_at(fs->views)) {
        bf_views_releasedir(fs->views, req, fi);
        return;
    }
    dirsnap_free((struct dirsnap *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static int count_file(void *arg, const struct bf_fileinfo *fi)
{
    (void)fi;
    (*(uint64_t *)arg)++;
    return 0;
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct bf_fs *fs = fs_of(req);
    struct statvfs sv;
    uint64_t files = 0;

    (void)ino;
    memset(&sv, 0, sizeof(sv));
    bf_db_list(fs->db, count_file, &files);
    sv.f_bsize = fs->blksize;
    sv.f_frsize = 4096;
    /* Sparse files of up to 2^62 bytes: report a large, mostly free space
     * (the real limit is the database's file system). */
    sv.f_blocks = UINT64_C(1) << 40;
    sv.f_bfree = sv.f_blocks;
    sv.f_bavail = sv.f_blocks;
    sv.f_files = files + (UINT64_C(1) << 32);
    sv.f_ffree = UINT64_C(1) << 32;
    sv.f_favail = sv.f_ffree;
    sv.f_namemax = BF_NAME_MAX;
    fuse_reply_statfs(req, &sv);
}

static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                     struct fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
                     size_t out_bufsz)
{
    /* The root directory's requests (STATUS, HISTORY, GC) are told apart
     * in ioctl.c; a view directory has none. */
    if ((ino == BF_ROOT_INO) != !!(flags & FUSE_IOCTL_DIR)) {
        fuse_reply_err(req, ENOTTY);
        return;
    }
    bf_fs_ioctl(req, ino, cmd, arg, fi, flags, in_buf, in_bufsz, out_bufsz);
}

/* SEEK_DATA / SEEK_HOLE (the kernel handles SEEK_SET, SEEK_CUR, SEEK_END
 * itself). The core answers from the handle's uncommitted state and the
 * backend's stored blocks; pages dirtied through a mapping and not yet
 * written back are not seen (see LIMITS in bigfilefs(8)). */
static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                     struct fuse_file_info *fi)
{
    struct bf_fs *fs = fs_of(req);
    bf_inode *inode = bf_fh_inode(fi->fh);
    bool view = bf_ino_is_view(ino);
    bf_fileh *fh;
    uint64_t res;
    int r;

    if ((whence != SEEK_DATA && whence != SEEK_HOLE) || off < 0) {
        fuse_reply_err(req, off < 0 ? ENXIO : EINVAL);
        return;
    }
    if (view) {
        /* An open view file's handle stays while it is open. */
        fh = bf_vnode_fh(fs->views, bf_views_fh(fi->fh));
        if (!fh) {
            fuse_reply_err(req, EIO);
            return;
        }
    } else if (!data_fh_get(req, fs, inode, &fh)) {
        return;
    }
    r = bf_fileh_seek_data(fh, (uint64_t)off, whence, &res);
    if (!view)
        bf_inode_fh_put(inode);
    if (r < 0) {
        if (r != -ENXIO)
            bf_err("lseek(%s) of inode %llu failed: %s",
                   whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE", (unsigned long long)ino,
                   strerror(-r));
        fuse_reply_err(req, bf_errno_data(r));
    } else {
        fuse_reply_lseek(req, (off_t)res);
    }
}

const struct fuse_lowlevel_ops bf_fs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .link = op_link,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .create = op_create,
    .open = op_open,
    .release = op_release,
    .flush = op_flush,
    .fsync = op_fsync,
    .read = op_read,
    .write = op_write,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .ioctl = op_ioctl,
    .lseek = op_lseek,
    .setxattr = bf_fs_setxattr,
    .getxattr = bf_fs_getxattr,
    .listxattr = bf_fs_listxattr,
    .removexattr = bf_fs_removexattr,
};
