/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the ioctls of <bigfile/ioctl.h> (and the test-only
 * BIGFILE_TEST_IOC_INJECT of test_inject.h).
 *
 * One table, ioc_table[] below, says per request what it takes: the bytes
 * of argument the kernel copies in and out (its encoding), the access it
 * needs, the long operation it records on the inode, whether it waits for
 * the kernel (then it is queued), how its argument is checked, and its
 * handler. One dispatcher, bf_fs_ioctl(), serves every request from it:
 *
 *  1. Find the entry; an unknown request, the test request on a daemon
 *     without `-o test_inject`, a file's request on the root directory or
 *     the root's (STATUS) on a file is ENOTTY.
 *  2. Access (see below): EROFS, EBADF.
 *  3. Sizes: the kernel passes exactly the encoded sizes; fewer bytes are
 *     EINVAL.
 *  4. Copy the argument and check it (EINVAL): nothing has happened yet.
 *  5. A request that does not wait for the kernel (STAT, CONFLICTS,
 *     STATUS, the test INJECT) runs now, on the request thread, and is answered.
 *  6. A long one — it waits for the kernel, which waits for request threads
 *     (kernel.h, D1) — records its operation on the inode (EBUSY while
 *     another runs on the file) and is queued (workq.h; EAGAIN when the
 *     caller's share of the queue is full, ESHUTDOWN while the daemon
 *     exits). The request thread returns to the loop.
 *  7. On a worker: a request that answers data first checks that the
 *     caller's buffer takes it (bf_kernel_probe_user) and fails with EFAULT
 *     before acting if not; then the handler runs, the inode's operation
 *     ends, and the worker answers.
 * Every error reaches the kernel through bf_errno_ioctl() (errors.h).
 *
 * Views: a file of an @SERIAL directory (views.h) answers the requests
 * that only read or only drop clean cache — STAT, CONFLICTS (none), LOG,
 * SYNC, RECLAIM — on its read-only handle; every other is EROFS (nothing
 * can change a view); a view directory answers none (ops.c: ENOTTY).
 * History (root): HISTORY answers the database's kept history, and with
 * SET_KEEP and GC changes it — only the mount's owner or root may (EPERM),
 * never on a read-only mount (EROFS); a database that keeps no history
 * answers "not kept" (no BIGFILE_HISTORY_KEPT), never an error.
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
 * STAT, CONFLICTS, STATUS, SYNC and RECLAIM need no write access: STAT,
 * CONFLICTS and STATUS only answer; SYNC only makes this mount catch up with the
 * database, as it does by itself within milliseconds (a read-only mount may
 * too); RECLAIM drops only clean cached data (dirty pages are written back
 * to the daemon first, where they stay uncommitted), as
 * posix_fadvise(POSIX_FADV_DONTNEED) may through a read-only fd. SYNC and
 * RECLAIM cost the daemon work and wait for the kernel (SYNC waits for the
 * listener, listen.h), so they are queued like the other long requests, in
 * their caller's bounded share.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bigfile/ioctl.h>

#include "backends/memory.h"
#include "fs/errors.h"
#include "fs/fs.h"
#include "fs/kernel.h"
#include "fs/log.h"
#include "fs/test_inject.h"
#include "fs/workq.h"
#include "util/debug.h"

/* The first encodings of DISCARD and RECLAIM (bigfilefs 0.1: _IOR, so the
 * kernel copied nothing in and a bad pointer showed only after the daemon
 * acted), still served for programs built with them. */
#define BIGFILE_IOC_DISCARD_0_1 _IOR(BIGFILE_IOC_MAGIC, 2, struct bigfile_count)
#define BIGFILE_IOC_RECLAIM_0_1 _IOR(BIGFILE_IOC_MAGIC, 5, struct bigfile_count)

/* Every argument struct, in and out. */
union ioc_arg {
    struct bigfile_writeout writeout;
    struct bigfile_writeout2 writeout2;
    struct bigfile_serial serial;
    struct bigfile_conflicts conflicts;
    struct bigfile_status status;
    struct bigfile_range range;
    struct bigfile_count count;
    struct bigfile_stat stat;
    struct bigfile_blksize blksize;
    struct bigfile_test_inject inject;
    struct bigfile_log log;
    struct bigfile_history history;
};

/* What the caller must have to send a request (see "Access" above). */
enum ioc_access {
    IOC_READ,   /* any open file */
    IOC_CHANGE, /* a file open for writing; any on an ro mount (nothing uncommitted) */
    IOC_COMMIT, /* EROFS on an ro mount, else a file open for writing */
};

#define IOC_QUEUED (1u << 0) /* waits for the kernel: run on a worker (step 6) */
#define IOC_TEST (1u << 1)   /* test interface: only with -o test_inject */
#define IOC_ROOT (1u << 2)   /* on the root directory only (no inode: c->inode NULL) */

struct ioc_call;

struct ioc_def {
    unsigned int cmd;
    const char *name;
    size_t in_size, out_size; /* bytes the kernel copies in / out */
    enum ioc_access access;
    enum bf_inode_op op;                   /* recorded on the inode while it runs, or BF_OP_NONE */
    unsigned flags;                        /* IOC_* */
    int (*check)(const union ioc_arg *in); /* the argument: 0 or -EINVAL; no side effect */
    int (*run)(struct ioc_call *c);        /* fills c->out; 0 or -errno */
};

/* One request being served. Queued ones are malloc'ed and owned by the
 * worker queue, then by the worker that runs them. */
struct ioc_call {
    struct bf_work work; /* in the worker queue */
    const struct ioc_def *def;
    struct bf_fs *fs;
    fuse_req_t req;
    bf_inode *inode; /* a reference; NULL for an IOC_ROOT request or a view file: */
    bf_vnode *vnode; /* a view file's inode, held (views.h) */
    uid_t uid;       /* the caller */
    pid_t pid;       /* the calling thread */
    void *arg;       /* the argument's address in the caller */
    union ioc_arg in, out;
};

/* ---- handlers -------------------------------------------------------------- */

static void log_failure(struct ioc_call *c, const char *what, int err)
{
    struct bf_fileinfo info;
    bool unlinked;

    bf_inode_info(&c->fs->itable, c->inode, &info, &unlinked);
    bf_err("%s: %s failed: %s", unlinked ? "(unlinked file)" : info.name, what, strerror(-err));
}

/* The handle of c's file (opened on first need for a current file; a
 * view file's is open while the file is): bf_call_fh_put after. */
static int call_fh_get(struct ioc_call *c, bf_fileh **fh)
{
    if (c->vnode) {
        *fh = bf_vnode_fh(c->fs->views, c->vnode);
        return *fh ? 0 : -EIO;
    }
    return bf_inode_fh_get(&c->fs->itable, c->inode, fh);
}

static void call_fh_put(struct ioc_call *c)
{
    if (!c->vnode)
        bf_inode_fh_put(c->inode);
}

static int check_writeout(const union ioc_arg *in)
{
    const struct bigfile_writeout *w = &in->writeout;

    if (w->reserved || !w->flags ||
        (w->flags & ~(BIGFILE_WRITEOUT_STORE | BIGFILE_WRITEOUT_MARKSTORED)))
        return -EINVAL;
    return 0;
}

static int check_writeout2(const union ioc_arg *in)
{
    const struct bigfile_writeout2 *w = &in->writeout2;
    const uint32_t known = BIGFILE_WRITEOUT_STORE | BIGFILE_WRITEOUT_MARKSTORED |
                           BIGFILE_WRITEOUT_OVERWRITE;

    if (w->reserved || !(w->flags & (BIGFILE_WRITEOUT_STORE | BIGFILE_WRITEOUT_MARKSTORED)) ||
        (w->flags & ~known) ||
        ((w->flags & BIGFILE_WRITEOUT_OVERWRITE) && !(w->flags & BIGFILE_WRITEOUT_STORE)))
        return -EINVAL;
    return 0;
}

/* WRITEOUT and WRITEOUT2 with `flags` (BIGFILE_WRITEOUT_*, checked): fills
 * every out field of *out. */
static int writeout(struct ioc_call *c, uint32_t flags, struct bigfile_writeout2 *out)
{
    struct bf_fs *fs = c->fs;
    struct bf_writeout_result res = { 0, 0, 0 };
    struct bf_fileh_stats st;
    unsigned wf = 0;
    uint64_t view, serial;
    uint32_t blksize;
    bf_fileh *fh;
    int r;

    if (flags & BIGFILE_WRITEOUT_STORE)
        wf |= BF_WRITEOUT_STORE | (fs->file_conflicts ? BF_WRITEOUT_FILE_CONFLICTS : 0);
    if (flags & BIGFILE_WRITEOUT_MARKSTORED)
        wf |= BF_WRITEOUT_MARKSTORED;
    if (flags & BIGFILE_WRITEOUT_OVERWRITE)
        wf |= BF_WRITEOUT_OVERWRITE;
    /* 1. Every change made up to now, through any mapping, reaches us. */
    r = bf_kernel_writeback(fs->kernel, c->pid, c->inode->ino);
    if (r < 0) {
        log_failure(c, "writeout (writing back the kernel's dirty pages)", r);
        return r;
    }
    /* 2. Commit atomically; on failure every change stays (a conflict:
     * marked). */
    r = bf_inode_fh_get(&fs->itable, c->inode, &fh);
    if (r < 0)
        return r;
    blksize = bf_fileh_blksize(fh);
    bf_fileh_stat(fh, &st); /* the conflicts an overwrite replaces */
    r = bf_fileh_writeout(fh, wf, &res);
    view = bf_fileh_view(fh);
    bf_inode_fh_put(c->inode);
    if (r == -ESTALE) {
        struct bf_fileinfo info;
        bool unlinked;

        bf_inode_info(&fs->itable, c->inode, &info, &unlinked);
        bf_notice("%s: writeout refused: %llu conflicts (changed blocks, or the size) with "
                  "another mount's commits; every change is kept (discard, or write out with "
                  "overwrite)",
                  unlinked ? "(unlinked file)" : info.name, (unsigned long long)res.conflicts);
        return r;
    }
    if (r < 0) {
        log_failure(c, "writeout", r);
        return r;
    }
    /* 3. Reply once every earlier commit of the other mounts is applied
     * here too: this mount's view of the database is then at least the
     * commit's serial (COHERENCE.md section 3). It committed anyway. */
    if (res.serial && (r = bf_db_sync(fs->db, &serial)) < 0)
        bf_warn("writeout committed serial %llu, but catching up with the other mounts "
                "failed: %s",
                (unsigned long long)res.serial, strerror(-r));
    out->blocks = res.blocks;
    out->bytes = (flags & BIGFILE_WRITEOUT_STORE) ? res.blocks * blksize : 0;
    out->serial = res.serial ? res.serial : view;
    out->conflict_blocks = (flags & BIGFILE_WRITEOUT_OVERWRITE) ? st.conflict_blocks : 0;
    return 0;
}

static int run_writeout(struct ioc_call *c)
{
    struct bigfile_writeout2 w2;
    int r = writeout(c, c->in.writeout.flags, &w2);

    if (r < 0)
        return r;
    c->out.writeout = c->in.writeout;
    c->out.writeout.blocks = w2.blocks;
    c->out.writeout.bytes = w2.bytes;
    return 0;
}

static int run_writeout2(struct ioc_call *c)
{
    c->out.writeout2 = c->in.writeout2;
    return writeout(c, c->in.writeout2.flags, &c->out.writeout2);
}

/* Catch up with every commit of the database now (listen.h): on a worker,
 * it waits for the listener, which waits for the kernel. */
static int run_sync(struct ioc_call *c)
{
    uint64_t serial;
    int r = bf_db_sync(c->fs->db, &serial);

    if (r < 0)
        return r;
    c->out.serial.serial = serial;
    return 0;
}

static int run_conflicts(struct ioc_call *c)
{
    struct bigfile_conflicts *out = &c->out.conflicts;
    struct bf_blkrange rg[BIGFILE_CONFLICTS_MAX];
    struct bf_fileh_stats st;
    uint64_t next;
    bf_fileh *fh;
    size_t n;
    int r;

    r = call_fh_get(c, &fh);
    if (r < 0)
        return r;
    n = bf_fileh_conflicts(fh, c->in.conflicts.start, rg, BIGFILE_CONFLICTS_MAX, &next);
    bf_fileh_stat(fh, &st);
    call_fh_put(c);
    memset(out, 0, sizeof(*out));
    out->start = c->in.conflicts.start;
    out->next = next == UINT64_MAX ? BIGFILE_CONFLICTS_END : next;
    out->count = (uint32_t)n;
    out->flags = st.size_conflict ? BIGFILE_CONFLICTS_SIZE : 0;
    for (size_t i = 0; i < n; i++) {
        out->ranges[i].start = rg[i].start;
        out->ranges[i].count = rg[i].count;
    }
    return 0;
}

static int ino_cmp(const void *a, const void *b)
{
    fuse_ino_t x = (*(bf_inode *const *)a)->ino, y = (*(bf_inode *const *)b)->ino;

    return x < y ? -1 : x > y;
}

/* Fill *f with inode's uncommitted state if its handle is open and has
 * uncommitted changes (changed blocks or size) and the file is linked;
 * returns whether it did. Never opens a handle. */
static bool status_of(struct bf_fs *fs, bf_inode *inode, struct bigfile_status_file *f)
{
    struct bf_fileh_stats st;
    struct bf_fileinfo info;
    bool unlinked;
    bf_fileh *fh;

    bf_inode_fh_peek(inode, &fh);
    if (fh)
        bf_fileh_stat(fh, &st);
    bf_inode_fh_put(inode);
    if (!fh || (st.dirty_blocks == 0 && st.size == st.committed_size))
        return false;
    bf_inode_info(&fs->itable, inode, &info, &unlinked);
    if (unlinked) /* its changes go with its last close */
        return false;
    memset(f, 0, sizeof(*f));
    f->ino = inode->ino;
    f->size = st.size;
    f->committed_size = st.committed_size;
    f->dirty_blocks = st.dirty_blocks;
    f->dirty_bytes = st.dirty_blocks * st.blksize;
    f->conflict_blocks = st.conflict_blocks;
    f->blksize = st.blksize;
    f->flags = st.size_conflict ? BIGFILE_STATUS_SIZE_CONFLICT : 0;
    snprintf(f->name, sizeof(f->name), "%s", info.name);
    return true;
}

/* STATUS, on the root: the files with uncommitted changes from inode
 * number `start` on. They are all in the inode table (inode.h: a handle
 * with changes keeps its inode), so the table is the whole answer. */
static int run_status(struct ioc_call *c)
{
    struct bigfile_status *out = &c->out.status;
    bf_inode **all;
    size_t n, i;
    int r;

    r = bf_itable_all(&c->fs->itable, &all, &n);
    if (r < 0)
        return r;
    qsort(all, n, sizeof(*all), ino_cmp);
    memset(out, 0, sizeof(*out));
    out->start = c->in.status.start;
    out->next = BIGFILE_STATUS_END;
    for (i = 0; i < n; i++) {
        if (all[i]->ino < out->start)
            continue;
        if (out->count == BIGFILE_STATUS_MAX) {
            out->next = all[i]->ino; /* more may follow: the next call says */
            break;
        }
        if (status_of(c->fs, all[i], &out->files[out->count]))
            out->count++;
    }
    for (i = 0; i < n; i++)
        bf_itable_put(&c->fs->itable, all[i]);
    free(all);
    return 0;
}

static int check_status(const union ioc_arg *in)
{
    return in->status.reserved ? -EINVAL : 0;
}

static int run_discard(struct ioc_call *c)
{
    uint64_t nblocks = 0;
    bf_fileh *fh;
    int r;

    r = bf_inode_fh_get(&c->fs->itable, c->inode, &fh);
    if (r < 0)
        return r;
    /* Fence the whole file: the pages the kernel launders back while it
     * forgets them must not resurrect the discarded changes. */
    r = bf_fileh_fence(fh, 0, UINT64_MAX);
    if (r == 0) {
        r = bf_fileh_discard(fh, &nblocks);
        if (r == 0) {
            c->out.count.blocks = nblocks;
            c->out.count.bytes = nblocks * bf_fileh_blksize(fh);
            /* Every mapping faults the committed data back in, and the
             * kernel asks for the (committed) size again. */
            r = bf_kernel_inval(c->fs->kernel, c->inode->ino, 0, 0);
        }
        bf_fileh_unfence(fh);
    }
    bf_inode_fh_put(c->inode);
    return r;
}

static int check_range(const union ioc_arg *in)
{
    const struct bigfile_range *rg = &in->range;

    return rg->count == 0 || rg->start + rg->count < rg->start ? -EINVAL : 0;
}

static int run_invalidate(struct ioc_call *c)
{
    const struct bigfile_range *rg = &c->in.range;
    bf_fileh *fh;
    int r;

    r = bf_inode_fh_get(&c->fs->itable, c->inode, &fh);
    if (r < 0)
        return r;
    r = bf_fileh_fence(fh, rg->start, rg->count);
    if (r == 0) {
        /* Daemon side: LOADED/DIRTY blocks go, LOADING ones will reload. */
        r = bf_fileh_invalidate(fh, rg->start, rg->count);
        /* Kernel side: waits for READs in flight on those pages (their
         * pages are locked until the reply) and drops them, so no stale
         * page survives; dirty ones are laundered into the fence. */
        if (r == 0)
            r = bf_kernel_inval_blocks(c->fs->kernel, c->inode->ino, bf_fileh_blksize(fh),
                                       rg->start, rg->count);
        bf_fileh_unfence(fh);
    }
    bf_inode_fh_put(c->inode);
    return r;
}

static int run_stat(struct ioc_call *c)
{
    struct bigfile_stat *s = &c->out.stat;
    struct bf_fileh_stats st;
    bf_fileh *fh;
    int r;

    r = call_fh_get(c, &fh);
    if (r < 0)
        return r;
    bf_fileh_stat(fh, &st);
    call_fh_put(c);

    memset(s, 0, sizeof(*s));
    s->version = BIGFILE_STAT_VERSION;
    s->blksize = st.blksize;
    s->size = st.size;
    s->committed_size = st.committed_size;
    s->loaded_blocks = st.loaded_blocks;
    s->dirty_blocks = st.dirty_blocks;
    s->loading_blocks = st.loading_blocks;
    s->loadblk_calls = st.loadblk_calls;
    s->storeblk_calls = st.storeblk_calls;
    s->bytes_loaded = st.bytes_loaded;
    s->bytes_stored = st.bytes_stored;
    s->writeouts = st.writeouts;
    s->discards = st.discards;
    s->invalidated_blocks = st.invalidated_blocks;
    s->reclaimed_blocks = st.reclaimed_blocks;
    s->errors = st.errors;
    s->serial = st.view;
    s->conflict_blocks = st.conflict_blocks;
    s->writeout_blocks = st.writeout_done;
    s->writeout_total_blocks = st.writeout_total;
    s->spilled_blocks = st.spilled_blocks;
    s->spills = st.spills;
    s->spliced_reads = st.sent_reads;
    return 0;
}

static int run_reclaim(struct ioc_call *c)
{
    uint64_t nblocks = 0;
    bf_fileh *fh;
    int r;

    /* The kernel's pages first: dirty ones are written back to the daemon
     * (they stay uncommitted changes there), then all are dropped. No
     * fence: nothing is thrown away. */
    r = bf_kernel_inval(c->fs->kernel, c->vnode ? bf_vnode_ino(c->vnode) : c->inode->ino, 0, 0);
    if (r < 0)
        return r;
    r = call_fh_get(c, &fh);
    if (r < 0)
        return r;
    c->out.count.bytes = bf_fileh_reclaim(fh, &nblocks);
    c->out.count.blocks = nblocks;
    call_fh_put(c);
    return 0;
}

static int check_blksize(const union ioc_arg *in)
{
    return in->blksize.reserved || !bf_blksize_valid(in->blksize.blksize) ? -EINVAL : 0;
}

static int run_setblksize(struct ioc_call *c)
{
    int r = bf_inode_set_blksize(&c->fs->itable, c->inode, c->in.blksize.blksize);

    /* st_blksize changed: attributes only. */
    return r < 0 ? r : bf_kernel_inval(c->fs->kernel, c->inode->ino, -1, 0);
}

static int check_inject(const union ioc_arg *in)
{
    const struct bigfile_test_inject *t = &in->inject;

    if (t->reserved || (t->flags & ~BIGFILE_TEST_INJECT_HOLD))
        return -EINVAL;
    switch (t->op) {
    case BIGFILE_TEST_INJECT_ADD:
        if (t->mem_op < BIGFILE_TEST_INJECT_LOADBLK || t->mem_op > BIGFILE_TEST_INJECT_UNSTAGE ||
            t->err < 0 || t->blk_lo > t->blk_hi)
            return -EINVAL;
        return 0;
    case BIGFILE_TEST_INJECT_WAIT_HELD:
        if (t->timeout_ms > BIGFILE_TEST_INJECT_WAIT_MAX_MS)
            return -EINVAL;
        /* fall through */
    case BIGFILE_TEST_INJECT_CLEAR:
    case BIGFILE_TEST_INJECT_RELEASE:
    case BIGFILE_TEST_INJECT_HELD:
        return t->flags ? -EINVAL : 0;
    default:
        return -EINVAL;
    }
}

/* Not queued, even WAIT_HELD, which waits on this request thread with no
 * daemon lock held, for at most BIGFILE_TEST_INJECT_WAIT_MAX_MS: the bounded
 * exception to kernel.h's D1 that test_inject.h explains. */
static int run_inject(struct ioc_call *c)
{
    const struct bigfile_test_inject *t = &c->in.inject;
    bf_db *db = c->fs->db;
    struct bf_mem_fault f;
    int r = 0;

    switch (t->op) {
    case BIGFILE_TEST_INJECT_ADD:
        memset(&f, 0, sizeof(f));
        f.op = (enum bf_mem_op)t->mem_op;
        f.file_id = c->inode->id;
        f.blk_lo = t->blk_lo;
        f.blk_hi = t->blk_hi;
        f.err = t->err;
        f.hold = t->flags & BIGFILE_TEST_INJECT_HOLD;
        f.after = t->after;
        f.times = t->times;
        f.delay_us = t->delay_us;
        r = bf_mem_inject(db, &f);
        break;
    case BIGFILE_TEST_INJECT_CLEAR:
        bf_mem_clear_faults(db);
        break;
    case BIGFILE_TEST_INJECT_RELEASE:
        bf_mem_release(db);
        break;
    case BIGFILE_TEST_INJECT_WAIT_HELD:
        r = bf_mem_wait_held(db, t->held, (int)t->timeout_ms);
        if (r == -ETIMEDOUT)
            r = -EAGAIN; /* test_inject.h; bf_errno_ioctl() would make ETIMEDOUT an EIO */
        break;
    }
    if (r < 0)
        return r;
    c->out.inject = *t;
    c->out.inject.held = bf_mem_held(db);
    return 0;
}

/* LOG: the file's commits, a page of them. */
struct log_page {
    struct bigfile_log *out;
};

static uint32_t log_kind(enum bf_commit_kind k)
{
    switch (k) {
    case BF_COMMIT_WRITE:
        return BIGFILE_LOG_WRITE;
    case BF_COMMIT_CREATE:
        return BIGFILE_LOG_CREATE;
    case BF_COMMIT_UNLINK:
        return BIGFILE_LOG_UNLINK;
    case BF_COMMIT_RENAME:
        return BIGFILE_LOG_RENAME;
    case BF_COMMIT_SETATTR:
        return BIGFILE_LOG_SETATTR;
    case BF_COMMIT_SETBLKSIZE:
        return BIGFILE_LOG_SETBLKSIZE;
    case BF_COMMIT_RESET:
        break;
    }
    return 0;
}

static int log_add(void *arg, const struct bf_log_entry *e)
{
    struct bigfile_log *out = arg;
    struct bigfile_log_entry *o;

    if (!BF_CHECK(out->count < BIGFILE_LOG_MAX, "file log gave more entries than asked"))
        return 1;
    o = &out->e[out->count++];
    o->serial = e->serial;
    o->time_ns = e->time_ns;
    o->blocks = e->blocks;
    o->size = e->size;
    o->kind = log_kind(e->kind);
    o->flags = e->truncated ? BIGFILE_LOG_TRUNCATED : 0;
    snprintf(o->name, sizeof(o->name), "%s", e->name);
    return 0;
}

static int check_log(const union ioc_arg *in)
{
    return in->log.reserved ? -EINVAL : 0;
}

/* LOG, on a file: a view file's log ends at its serial. A database without
 * history has none: no entry. */
static int run_log(struct ioc_call *c)
{
    struct bigfile_log *out = &c->out.log;
    uint64_t before = c->in.log.before ? c->in.log.before : UINT64_MAX;
    uint64_t id = c->vnode ? bf_vnode_id(c->vnode) : c->inode->id;
    int r;

    if (c->vnode && bf_vnode_serial(c->vnode) < before)
        before = bf_vnode_serial(c->vnode) + 1;
    memset(out, 0, sizeof(*out));
    out->before = c->in.log.before;
    r = bf_db_file_log(c->fs->db, id, before, BIGFILE_LOG_MAX, log_add, out);
    if (r == -EOPNOTSUPP)
        r = 0;
    if (r < 0)
        return r;
    /* A full page: the next call starts below its last entry. */
    out->next = out->count == BIGFILE_LOG_MAX ? out->e[out->count - 1].serial : BIGFILE_LOG_END;
    return 0;
}

static int check_history(const union ioc_arg *in)
{
    const struct bigfile_history *h = &in->history;

    if ((h->flags & ~BIGFILE_HISTORY_SET_KEEP) || h->reserved || h->from || h->current ||
        h->pinned || h->reserved2[0] || h->reserved2[1] || h->reserved2[2] ||
        ((h->flags & BIGFILE_HISTORY_SET_KEEP) ? h->keep_ns < 0 : h->keep_ns != 0))
        return -EINVAL;
    return 0;
}

static int check_gc(const union ioc_arg *in)
{
    return in->history.flags ? -EINVAL : check_history(in);
}

/* Whether c's caller may change the history: the mount's owner or root. */
static int may_change_history(struct ioc_call *c)
{
    if (c->fs->ro)
        return -EROFS;
    return c->uid == 0 || c->uid == getuid() ? 0 : -EPERM;
}

static void history_out(struct bigfile_history *out, const struct bf_history *h)
{
    memset(out, 0, sizeof(*out));
    if (!h->kept)
        return;
    out->flags = BIGFILE_HISTORY_KEPT;
    out->keep_ns = h->keep_ns;
    out->from = h->from;
    out->current = h->current;
    out->pinned = h->pinned;
}

static int run_history(struct ioc_call *c)
{
    struct bf_history h;
    int r;

    if (c->in.history.flags & BIGFILE_HISTORY_SET_KEEP) {
        r = may_change_history(c);
        if (r == 0)
            r = bf_db_history_keep(c->fs->db, c->in.history.keep_ns);
        if (r < 0 && r != -EOPNOTSUPP) /* not kept: said by the answer */
            return r;
    }
    r = bf_db_history(c->fs->db, &h);
    if (r < 0)
        return r;
    history_out(&c->out.history, &h);
    return 0;
}

/* GC, on a worker: the housekeeping to the end may take a while. */
static int run_gc(struct ioc_call *c)
{
    struct bf_history h = { .kept = false };
    int r = may_change_history(c);

    if (r == 0)
        r = bf_db_gc(c->fs->db, &h);
    if (r == -EOPNOTSUPP) /* not kept: said by the answer */
        r = 0;
    if (r < 0)
        return r;
    history_out(&c->out.history, &h);
    return 0;
}

/* ---- the table ------------------------------------------------------------------ */

#define SZ(type) sizeof(struct type)

static const struct ioc_def ioc_table[] = {
    { BIGFILE_IOC_WRITEOUT, "WRITEOUT", SZ(bigfile_writeout), SZ(bigfile_writeout), IOC_COMMIT,
      BF_OP_WRITEOUT, IOC_QUEUED, check_writeout, run_writeout },
    { BIGFILE_IOC_DISCARD, "DISCARD", SZ(bigfile_count), SZ(bigfile_count), IOC_CHANGE,
      BF_OP_DISCARD, IOC_QUEUED, NULL, run_discard },
    { BIGFILE_IOC_DISCARD_0_1, "DISCARD", 0, SZ(bigfile_count), IOC_CHANGE, BF_OP_DISCARD,
      IOC_QUEUED, NULL, run_discard },
    { BIGFILE_IOC_INVALIDATE, "INVALIDATE", SZ(bigfile_range), 0, IOC_CHANGE, BF_OP_INVALIDATE,
      IOC_QUEUED, check_range, run_invalidate },
    { BIGFILE_IOC_STAT, "STAT", 0, SZ(bigfile_stat), IOC_READ, BF_OP_NONE, 0, NULL, run_stat },
    { BIGFILE_IOC_RECLAIM, "RECLAIM", SZ(bigfile_count), SZ(bigfile_count), IOC_READ, BF_OP_NONE,
      IOC_QUEUED, NULL, run_reclaim },
    { BIGFILE_IOC_RECLAIM_0_1, "RECLAIM", 0, SZ(bigfile_count), IOC_READ, BF_OP_NONE, IOC_QUEUED,
      NULL, run_reclaim },
    { BIGFILE_IOC_SETBLKSIZE, "SETBLKSIZE", SZ(bigfile_blksize), 0, IOC_COMMIT, BF_OP_SETBLKSIZE,
      IOC_QUEUED, check_blksize, run_setblksize },
    { BIGFILE_IOC_SYNC, "SYNC", SZ(bigfile_serial), SZ(bigfile_serial), IOC_READ, BF_OP_NONE,
      IOC_QUEUED, NULL, run_sync },
    { BIGFILE_IOC_WRITEOUT2, "WRITEOUT2", SZ(bigfile_writeout2), SZ(bigfile_writeout2), IOC_COMMIT,
      BF_OP_WRITEOUT, IOC_QUEUED, check_writeout2, run_writeout2 },
    { BIGFILE_IOC_CONFLICTS, "CONFLICTS", SZ(bigfile_conflicts), SZ(bigfile_conflicts), IOC_READ,
      BF_OP_NONE, 0, NULL, run_conflicts },
    { BIGFILE_IOC_STATUS, "STATUS", SZ(bigfile_status), SZ(bigfile_status), IOC_READ, BF_OP_NONE,
      IOC_ROOT, check_status, run_status },
    { BIGFILE_IOC_LOG, "LOG", SZ(bigfile_log), SZ(bigfile_log), IOC_READ, BF_OP_NONE, 0, check_log,
      run_log },
    { BIGFILE_IOC_HISTORY, "HISTORY", SZ(bigfile_history), SZ(bigfile_history), IOC_READ,
      BF_OP_NONE, IOC_ROOT, check_history, run_history },
    { BIGFILE_IOC_GC, "GC", SZ(bigfile_history), SZ(bigfile_history), IOC_READ, BF_OP_NONE,
      IOC_ROOT | IOC_QUEUED, check_gc, run_gc },
    { BIGFILE_TEST_IOC_INJECT, "TEST_INJECT", SZ(bigfile_test_inject), SZ(bigfile_test_inject),
      IOC_READ, BF_OP_NONE, IOC_TEST, check_inject, run_inject },
};

/* The entry of cmd, or NULL. */
static const struct ioc_def *ioc_find(unsigned int cmd)
{
    for (size_t i = 0; i < sizeof(ioc_table) / sizeof(ioc_table[0]); i++)
        if (ioc_table[i].cmd == cmd)
            return &ioc_table[i];
    return NULL;
}

/* ---- the dispatcher ------------------------------------------------------------- */

/* Step 2: 0, -EROFS or -EBADF. The ro check comes first: it is the more
 * helpful answer. */
static int check_access(const struct bf_fs *fs, const struct ioc_def *def,
                        const struct fuse_file_info *fi)
{
    switch (def->access) {
    case IOC_READ:
        return 0;
    case IOC_CHANGE:
        if (fs->ro)
            return 0; /* nothing uncommitted to protect on an ro mount */
        break;
    case IOC_COMMIT:
        if (fs->ro)
            return -EROFS;
        break;
    }
    /* libfuse always passes the fi of the open file; without one, no
     * write access can be shown. */
    return fi && bf_fh_writable(fi->fh) ? 0 : -EBADF;
}

/* Answer c's request by its outcome r and release c's resources; frees c
 * if it was queued. */
static void finish(struct ioc_call *c, int r)
{
    /* The operation ends before the answer: a caller that sends the next
     * request as soon as it has this one's answer must not get EBUSY. */
    if (c->def->op != BF_OP_NONE)
        bf_inode_op_end(&c->fs->itable, c->inode);
    if (r < 0)
        fuse_reply_err(c->req, bf_errno_ioctl(r));
    else
        fuse_reply_ioctl(c->req, 0, c->def->out_size ? &c->out : NULL, c->def->out_size);
    if (c->inode)
        bf_itable_put(&c->fs->itable, c->inode);
    if (c->vnode)
        bf_views_put(c->fs->views, c->vnode);
    if (c->def->flags & IOC_QUEUED)
        free(c);
}

/* Step 7, on a worker. */
static void run_queued(struct bf_work *w)
{
    struct ioc_call *c = (struct ioc_call *)w;
    int r = 0;

    /* EFAULT before acting: the kernel copies the answer out only after
     * the reply; a buffer it cannot write would leave the caller with
     * EFAULT for a request that did act. When the daemon cannot tell (no
     * privilege over the caller), it acts (ioctl_bigfile(2), NOTES). */
    if (c->def->out_size && bf_kernel_probe_user(c->pid, c->arg, c->def->out_size) == -EFAULT)
        r = -EFAULT;
    if (r == 0)
        r = c->def->run(c);
    finish(c, r);
}

static void cancel_queued(struct bf_work *w, int err)
{
    finish((struct ioc_call *)w, err);
}

/* Steps 2-4 for c: access, sizes, the argument, the inode (a reference on
 * success). Returns 0 or -errno (then c holds nothing). */
static int ioc_begin(struct ioc_call *c, const struct ioc_def *def, fuse_req_t req, fuse_ino_t ino,
                     void *arg, const struct fuse_file_info *fi, const void *in_buf,
                     size_t in_bufsz, size_t out_bufsz)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    int r;

    memset(c, 0, sizeof(*c));
    c->def = def;
    c->fs = fuse_req_userdata(req);
    c->req = req;
    c->pid = ctx->pid;
    c->arg = arg;
    c->work.uid = ctx->uid;
    c->uid = ctx->uid;
    /* A view file changes nothing (see the top of the file). */
    if (bf_ino_is_view(ino) && def->access != IOC_READ)
        return -EROFS;
    r = check_access(c->fs, def, fi);
    if (r < 0)
        return r;
    if (in_bufsz < def->in_size || out_bufsz < def->out_size)
        return -EINVAL;
    if (def->in_size) /* else in_buf may be NULL */
        memcpy(&c->in, in_buf, def->in_size);
    if (def->check && (r = def->check(&c->in)) < 0)
        return r;
    if (def->flags & IOC_ROOT)
        return 0;
    if (bf_ino_is_view(ino)) {
        c->vnode = bf_views_get(c->fs->views, ino);
        return c->vnode ? 0 : -ENOENT;
    }
    c->inode = bf_itable_find(&c->fs->itable, ino);
    return c->inode ? 0 : -ENOENT;
}

void bf_fs_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                 struct fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
                 size_t out_bufsz)
{
    struct bf_fs *fs = fuse_req_userdata(req);
    const struct ioc_def *def = ioc_find(cmd);
    struct ioc_call *c;
    int r;

    (void)flags;
    /* 1. */
    if (!def || ((def->flags & IOC_TEST) && (!fs->test_inject || bf_ino_is_view(ino))) ||
        (ino == BF_ROOT_INO) != !!(def->flags & IOC_ROOT)) {
        fuse_reply_err(req, ENOTTY);
        return;
    }
    BF_ASSERT(def->in_size == ((_IOC_DIR(cmd) & _IOC_WRITE) ? _IOC_SIZE(cmd) : 0u));
    BF_ASSERT(def->out_size == ((_IOC_DIR(cmd) & _IOC_READ) ? _IOC_SIZE(cmd) : 0u));
    /* 5. */
    if (!(def->flags & IOC_QUEUED)) {
        struct ioc_call now;

        r = ioc_begin(&now, def, req, ino, arg, fi, in_buf, in_bufsz, out_bufsz);
        if (r < 0)
            fuse_reply_err(req, bf_errno_ioctl(r));
        else
            finish(&now, def->run(&now));
        return;
    }
    /* 6. */
    c = malloc(sizeof(*c));
    r = c ? ioc_begin(c, def, req, ino, arg, fi, in_buf, in_bufsz, out_bufsz) : -ENOMEM;
    if (r == 0 && def->op != BF_OP_NONE &&
        (r = bf_inode_op_begin(&fs->itable, c->inode, def->op)) < 0)
        bf_itable_put(&fs->itable, c->inode);
    if (r < 0) {
        fuse_reply_err(req, bf_errno_ioctl(r));
        free(c);
        return;
    }
    c->work.run = run_queued;
    c->work.cancel = cancel_queued;
    /* One job per file at a time: a view file's key is its inode number
     * (never a file id), the root's requests share key 0 (no file's). */
    c->work.file = c->inode ? c->inode->id : c->vnode ? bf_vnode_ino(c->vnode) : 0;
    r = bf_workq_submit(fs->workq, &c->work);
    if (r < 0)
        finish(c, r);
}
