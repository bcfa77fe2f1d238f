/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the listener: other mounts' commits, applied here
 * (see listen.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/fs.h"
#include "fs/kernel.h"
#include "fs/listen.h"
#include "fs/log.h"
#include "util/util.h"

struct bf_listener {
    struct bf_fs *fs;
    pthread_mutex_t lock; /* protects busy and stopping */
    pthread_cond_t idle;  /* CLOCK_MONOTONIC; broadcast when busy falls */
    bool busy;            /* a record is being applied */
    bool stopping;        /* bf_listener_quiesce: skip every record */
};

int bf_listener_new(struct bf_fs *fs, bf_listener **out)
{
    bf_listener *l = calloc(1, sizeof(*l));
    pthread_condattr_t ca;

    if (!l || pthread_condattr_init(&ca) != 0) {
        free(l);
        return -ENOMEM;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->idle, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&l->lock, NULL);
    l->fs = fs;
    *out = l;
    return 0;
}

int bf_listener_start(bf_listener *l)
{
    return bf_db_watch(l->fs->db, bf_listener_commit, l);
}

bool bf_listener_quiesce(bf_listener *l, unsigned timeout_ms)
{
    struct timespec until;
    int r = 0;
    bool idle;

    bf_deadline(CLOCK_MONOTONIC, timeout_ms, &until);
    pthread_mutex_lock(&l->lock);
    l->stopping = true;
    while (l->busy && r == 0)
        r = pthread_cond_timedwait(&l->idle, &l->lock, &until);
    idle = !l->busy;
    pthread_mutex_unlock(&l->lock);
    return idle;
}

void bf_listener_free(bf_listener *l)
{
    if (!l)
        return;
    pthread_cond_destroy(&l->idle);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/* ---- helpers --------------------------------------------------------------- */

/* The inode of file id, with a reference, or NULL: the kernel knows
 * nothing of a file the daemon has no inode for (it holds one while the
 * kernel has it looked up). */
static bf_inode *inode_of(struct bf_fs *fs, uint64_t id)
{
    return id ? bf_itable_find(&fs->itable, (fuse_ino_t)(id + 1)) : NULL;
}

/* Read the inode's metadata again (not its name, inode.h). Sets *info
 * (if not NULL) and returns 0, or the error of the database (-ENOENT: the
 * file is gone, purged). */
static int refresh_info(struct bf_fs *fs, bf_inode *inode, struct bf_fileinfo *info)
{
    struct bf_fileinfo fi;
    int r = bf_db_getinfo(fs->db, inode->id, &fi);

    if (r == 0)
        bf_itable_set_info(&fs->itable, inode, &fi);
    if (r == 0 && info)
        *info = fi;
    return r;
}

/* The kernel forgets the root's entry `name`, if any. */
static void forget_entry(struct bf_fs *fs, const char *name)
{
    if (name && *name)
        bf_kernel_inval_entry(fs->kernel, BF_ROOT_INO, name);
}

/* ---- WRITE --------------------------------------------------------------- */

/* The kernel forgets the pages commit c changed of inode (of block size
 * bs), and from byte `tail` on (UINT64_MAX: none), and the attributes. */
static void forget_pages(struct bf_fs *fs, bf_inode *inode, uint32_t bs, const struct bf_commit *c,
                         uint64_t tail)
{
    bool sent = false;

    if (c->trunc != UINT64_MAX && c->trunc <= BF_SIZE_MAX / bs && c->trunc * bs < tail)
        tail = c->trunc * bs;
    for (size_t i = 0; i < c->nranges; i++) {
        if (c->ranges[i].start > BF_SIZE_MAX / bs || c->ranges[i].start * bs >= tail)
            break; /* sorted: the rest is past the tail, forgotten with it */
        bf_kernel_inval_blocks(fs->kernel, inode->ino, bs, c->ranges[i].start, c->ranges[i].count);
        sent = true;
    }
    if (tail != UINT64_MAX) {
        bf_kernel_inval(fs->kernel, inode->ino, (off_t)tail, 0);
        sent = true;
    }
    if (!sent) /* the mtime changed */
        bf_kernel_inval(fs->kernel, inode->ino, -1, 0);
}

static void apply_write(struct bf_fs *fs, const struct bf_commit_rec *rec)
{
    const struct bf_commit *c = &rec->write;
    bf_inode *inode = inode_of(fs, rec->file);
    struct bf_fileinfo info;
    uint64_t tail = UINT64_MAX;
    uint32_t bs;
    bf_fileh *fh;
    int r;

    if (!inode)
        return;
    bf_inode_info(&fs->itable, inode, &info, NULL);
    bs = info.blksize;
    bf_inode_fh_peek(inode, &fh);
    if (fh) {
        uint64_t size = bf_fileh_size(fh);

        /* The size the kernel was told: the handle's (uncommitted) one. */
        if (size < info.size)
            info.size = size;
        bs = bf_fileh_blksize(fh);
        /* 1. */
        r = bf_fileh_apply(fh, c);
        if (r < 0)
            bf_err("inode %llu: cannot apply commit %llu of another mount: %s (its cached "
                   "blocks may be stale until invalidated)",
                   (unsigned long long)inode->ino, (unsigned long long)rec->serial, strerror(-r));
    } else {
        /* No handle: nothing to keep open across the kernel's wait. A
         * handle opened meanwhile opens at the database's serial, past
         * this commit. */
        bf_inode_fh_put(inode);
    }
    /* 2. Every page from the lower of the old and new sizes on: a grown
     * file's old last page, a shrunk one's dropped pages. */
    if (c->size_changed)
        tail = c->size < info.size ? c->size : info.size;
    if (bf_blksize_valid(bs))
        forget_pages(fs, inode, bs, c, tail);
    /* 3. */
    if (fh) {
        bf_fileh_apply_end(fh);
        bf_inode_fh_put(inode);
    }
    /* 4. */
    refresh_info(fs, inode, NULL);
    bf_itable_put(&fs->itable, inode);
}

/* ---- names, metadata ------------------------------------------------------- */

/* The inode of file id (if any) is named `name` now (NULL: unlinked). */
static void rename_inode(struct bf_fs *fs, uint64_t id, const char *name)
{
    bf_inode *inode = inode_of(fs, id);

    if (!inode)
        return;
    bf_itable_set_name(&fs->itable, inode, name);
    if (!name) /* its link count */
        bf_kernel_inval(fs->kernel, inode->ino, -1, 0);
    bf_itable_put(&fs->itable, inode);
}

static void apply_names(struct bf_fs *fs, const struct bf_commit_rec *rec)
{
    forget_entry(fs, rec->name);
    if (rec->kind == BF_COMMIT_RENAME)
        forget_entry(fs, rec->name2);
    switch (rec->kind) {
    case BF_COMMIT_UNLINK:
        rename_inode(fs, rec->file, NULL);
        break;
    case BF_COMMIT_RENAME:
        rename_inode(fs, rec->file, rec->name2);
        if (rec->file2)
            rename_inode(fs, rec->file2,
                         (rec->rename_flags & BF_RENAME_EXCHANGE) ? rec->name : NULL);
        break;
    default:
        break; /* CREATE: no inode of a new file yet */
    }
}

static void apply_meta(struct bf_fs *fs, const struct bf_commit_rec *rec)
{
    bf_inode *inode = inode_of(fs, rec->file);

    if (!inode)
        return;
    refresh_info(fs, inode, NULL);
    bf_kernel_inval(fs->kernel, inode->ino, -1, 0);
    bf_itable_put(&fs->itable, inode);
}

/* ---- RESET ------------------------------------------------------------------- */

static void reset_inode(struct bf_fs *fs, bf_inode *inode, uint64_t serial)
{
    struct bf_fileinfo old, info;
    bool unlinked;
    bf_fileh *fh;
    int r;

    bf_inode_info(&fs->itable, inode, &old, &unlinked);
    if (!unlinked)
        forget_entry(fs, old.name);
    r = refresh_info(fs, inode, &info);
    if (r == 0 || r == -ENOENT)
        bf_itable_set_name(&fs->itable, inode, r == 0 ? info.name : NULL);
    bf_inode_fh_peek(inode, &fh);
    if (fh) {
        struct bf_fileh_stats st;

        if (r < 0) { /* its size as of the reset is unknown: keep it */
            bf_fileh_stat(fh, &st);
            info.size = st.committed_size;
        }
        r = bf_fileh_reset(fh, serial, info.size);
        if (r < 0)
            bf_err("inode %llu: cannot reset its cache: %s", (unsigned long long)inode->ino,
                   strerror(-r));
    } else {
        bf_inode_fh_put(inode);
    }
    bf_kernel_inval(fs->kernel, inode->ino, 0, 0);
    if (fh) {
        bf_fileh_apply_end(fh);
        bf_inode_fh_put(inode);
    }
}

static void apply_reset(struct bf_fs *fs, const struct bf_commit_rec *rec)
{
    bf_inode **v;
    size_t n;

    bf_warn("lost track of other mounts' commits (trimmed from the log): every cached page "
            "and entry is forgotten, changes are kept (serial %llu)",
            (unsigned long long)rec->serial);
    if (bf_itable_all(&fs->itable, &v, &n) < 0) {
        bf_err("cannot reset the caches: out of memory (cached pages may be stale)");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        reset_inode(fs, v[i], rec->serial);
        bf_itable_put(&fs->itable, v[i]);
    }
    free(v);
}

/* ---- the record ---------------------------------------------------------------- */

/* Whether to apply a record (not stopping); marks the listener busy. */
static bool listener_begin(bf_listener *l)
{
    bool go;

    pthread_mutex_lock(&l->lock);
    go = !l->stopping;
    l->busy = go;
    pthread_mutex_unlock(&l->lock);
    return go;
}

static void listener_end(bf_listener *l)
{
    pthread_mutex_lock(&l->lock);
    l->busy = false;
    pthread_cond_broadcast(&l->idle);
    pthread_mutex_unlock(&l->lock);
}

void bf_listener_commit(void *arg, const struct bf_commit_rec *rec)
{
    bf_listener *l = arg;
    struct bf_fs *fs = l->fs;

    bf_kernel_thread_may_wait(); /* the watcher thread (kernel.h, D2) */
    if (!listener_begin(l))
        return;
    bf_debug("commit %llu of session %llu%s: kind %d, file %llu", (unsigned long long)rec->serial,
             (unsigned long long)rec->session, rec->own ? " (own)" : "", (int)rec->kind,
             (unsigned long long)rec->file);
    if (rec->own) {
        /* Applied when it was made; the metadata it changed (mtime). */
        if (rec->kind == BF_COMMIT_WRITE || rec->kind == BF_COMMIT_SETATTR) {
            bf_inode *inode = inode_of(fs, rec->file);

            if (inode) {
                refresh_info(fs, inode, NULL);
                bf_itable_put(&fs->itable, inode);
            }
        }
    } else {
        switch (rec->kind) {
        case BF_COMMIT_WRITE:
            apply_write(fs, rec);
            break;
        case BF_COMMIT_CREATE:
        case BF_COMMIT_UNLINK:
        case BF_COMMIT_RENAME:
            apply_names(fs, rec);
            break;
        case BF_COMMIT_SETATTR:
        case BF_COMMIT_SETBLKSIZE:
            apply_meta(fs, rec);
            break;
        case BF_COMMIT_RESET:
            apply_reset(fs, rec);
            break;
        }
    }
    listener_end(l);
}
