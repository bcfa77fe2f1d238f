/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the SQLite engine's block file (sqlite_internal.h).
 *
 * Block contents uploaded since the block file exists are kept in a file
 * beside the database, its path + "-blocks", at extents the database
 * allocates (the extents table, meta 'blocks_end'); the database holds the
 * map. The file is written with pwrite(2) outside any transaction, made
 * durable by the commit section's fdatasync(2) before its transaction,
 * read with pread(2) (around the OS cache, O_DIRECT, unless it holds all
 * of what is read: sq_blocks_read_fd), and the extents of deleted
 * contents are punched out (FALLOC_FL_PUNCH_HOLE: the space goes back to
 * the file system, the offsets are never used again). The rules that
 * make this safe are at the top of sqlite.c ("The block file").
 *
 * The descriptor (d->bfd) is opened at its first use: read-write by a
 * read-write session (created only where the database has allocated no
 * extent yet: a missing file with extents is an error, never silently
 * replaced by a sparse one), read-only by a read-only one; the O_DIRECT
 * one (d->dfd) at the first read that could use it. d->bflock guards
 * opening them; once open they stay until close.
 */
#define _GNU_SOURCE /* fallocate, FALLOC_FL_* */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backends/sqlite_internal.h"

/* Record a failure of the block file (the last error, and the log). */
static int blocks_fail(struct sq_db *d, int e, const char *fmt, const char *what)
{
    pthread_mutex_lock(&d->elock);
    snprintf(d->lasterr, sizeof(d->lasterr), fmt, d->bpath, what, strerror(-e));
    fprintf(stderr, "bigfilefs: %s\n", d->lasterr);
    pthread_mutex_unlock(&d->elock);
    return e;
}

/* Make the new file's directory entry durable. */
static void sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

/* sq_blocks_fd with d->bflock held. */
static int blocks_fd_locked(struct sq_db *d, enum sq_blocks_how how, int *fd)
{
    int e = 0;
    if (d->bfd < 0) {
        bool rw = d->w != NULL;
        struct stat st;
        mode_t mode = stat(d->path, &st) == 0 ? (st.st_mode & 0666) : 0600;
        int flags = (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC;
        int f = open(d->bpath, flags, 0);
        if (f < 0 && errno == ENOENT && rw && how == SQ_BLOCKS_NEW) {
            f = open(d->bpath, flags | O_CREAT | O_EXCL, mode);
            if (f >= 0)
                sync_dir(d->bpath);
            else if (errno == EEXIST)
                f = open(d->bpath, flags, 0); /* another session made it */
        }
        if (f < 0 && errno == ENOENT)
            e = blocks_fail(d, -EIO,
                            "%s: %s: missing (the database's block contents are in it: a "
                            "database is the pair DB and DB-blocks) (%s)",
                            "cannot open the block file");
        else if (f < 0)
            e = blocks_fail(d, -EIO, "%s: %s: %s", "cannot open the block file");
        else
            d->bfd = f;
    }
    if (e == 0 && how == SQ_BLOCKS_NEW && ftruncate(d->bfd, 0) < 0)
        e = blocks_fail(d, -EIO, "%s: %s: %s", "cannot empty a stale block file");
    *fd = d->bfd;
    return e;
}

int sq_blocks_fd(struct sq_db *d, enum sq_blocks_how how, int *fd)
{
    pthread_mutex_lock(&d->bflock);
    int e = blocks_fd_locked(d, how, fd);
    pthread_mutex_unlock(&d->bflock);
    return e;
}

/* cachestat(2), Linux 6.5: the headers of older kernels lack it (its
 * number is 451 on every architecture but alpha). */
#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif
struct cachestat_range {
    uint64_t off, len;
};
struct cachestat {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* Whether the OS caches every page of [off, off + len) of fd: 1 or 0;
 * -errno if the kernel cannot tell (ENOSYS before 6.5; EPERM for a file
 * the process may not write and does not own). */
static int os_caches_all(int fd, int64_t off, uint32_t len)
{
    if (len == 0)
        return 1; /* (a length of 0 would ask to the end of the file) */
    struct cachestat_range r = { (uint64_t)off, len };
    struct cachestat cs;
    if (syscall(SYS_cachestat, fd, &r, &cs, 0) < 0)
        return -errno;
    uint64_t page = (uint64_t)getpagesize();
    uint64_t first = (uint64_t)off / page, end = ((uint64_t)off + len + page - 1) / page;
    return cs.nr_cache >= end - first;
}

/* Open d->dfd (d->bflock held, d->bfd open): the block file O_DIRECT,
 * with the alignment direct reads of it need; for good SQ_DFD_NONE, said
 * in the log, if the file system cannot read the file directly, the
 * kernel cannot tell what it caches, or the path now names another file
 * than d->bfd (the database was moved while open). A failure that may
 * pass (out of descriptors or memory) leaves d->dfd at -1: the next read
 * tries again. */
static void open_direct(struct sq_db *d)
{
    struct stat a, b;
    char why[160] = "";
    int f = -1;
    uint32_t align = 4096; /* a page: what a file system that says nothing takes */
    int e = os_caches_all(d->bfd, 0, 1);
    if (e < 0) {
        snprintf(why, sizeof(why), "%s (%s)",
                 e == -ENOSYS  ? "the kernel cannot tell what the OS caches (cachestat: Linux 6.5)"
                 : e == -EPERM ? "the daemon may not ask what the OS caches of it (cachestat: "
                                 "it neither owns the file nor may write it)"
                               : "cannot ask what the OS caches of it",
                 strerror(-e));
    } else if ((f = open(d->bpath, O_RDONLY | O_DIRECT | O_CLOEXEC)) < 0) {
        if (errno != EINVAL && errno != EOPNOTSUPP)
            return; /* EMFILE, ENOMEM...: try again at the next read */
        snprintf(why, sizeof(why), "its file system cannot open it O_DIRECT (%s)", strerror(errno));
    }
#ifdef STATX_DIOALIGN /* Linux 6.1's headers */
    struct statx sx;
    if (!why[0] && statx(f, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN)) {
        align = sx.stx_dio_offset_align > sx.stx_dio_mem_align ? sx.stx_dio_offset_align
                                                               : sx.stx_dio_mem_align;
        if (sx.stx_dio_offset_align == 0) /* not this file (encrypted, compressed...) */
            snprintf(why, sizeof(why), "its file system cannot read it directly");
    }
#endif
    if (!why[0] &&
        (fstat(f, &a) < 0 || fstat(d->bfd, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino))
        snprintf(why, sizeof(why), "its path names another file now");
    if (why[0]) {
        if (f >= 0)
            close(f);
        d->dfd = SQ_DFD_NONE;
        bf_db_log(&d->base, "%s: read through the OS cache: %s", d->bpath, why);
        return;
    }
    d->dfd = f;
    d->dio_align = d->dio_align_test ? d->dio_align_test : align;
}

int sq_blocks_read_fd(struct sq_db *d, int64_t off, uint32_t len, const void *buf, int *fd,
                      bool *direct)
{
    *direct = false;
    pthread_mutex_lock(&d->bflock); /* once for both descriptors */
    int e = blocks_fd_locked(d, SQ_BLOCKS_OPEN, fd);
    if (e == 0 && d->dfd == -1 && !d->base.opt.buffered_reads)
        open_direct(d);
    int dfd = d->dfd;
    uint32_t align = d->dio_align;
    pthread_mutex_unlock(&d->bflock);
    if (e < 0)
        return e;
    if (dfd >= 0 && !__atomic_load_n(&d->dio_refused, __ATOMIC_RELAXED) &&
        (uint64_t)off % align == 0 && len % align == 0 && (uintptr_t)buf % align == 0 &&
        os_caches_all(*fd, off, len) == 0) {
        *fd = dfd;
        *direct = true;
    }
    return 0;
}

void sq_blocks_dio_refused(struct sq_db *d)
{
    if (!__atomic_exchange_n(&d->dio_refused, true, __ATOMIC_RELAXED))
        bf_db_log(&d->base, "%s: a direct read was refused: read through the OS cache from now on",
                  d->bpath);
}

/* Wait until no send overlaps [off, off + len). */
static void wait_unsent(struct sq_db *d, int64_t off, int64_t len)
{
    pthread_mutex_lock(&d->sendmx);
    for (size_t i = 0; i < d->nsending;)
        if (d->sending[i][0] < off + len && off < d->sending[i][0] + d->sending[i][1]) {
            pthread_cond_wait(&d->sendcv, &d->sendmx);
            i = 0; /* look again */
        } else {
            i++;
        }
    pthread_mutex_unlock(&d->sendmx);
}

int sq_blocks_send_begin(struct sq_db *d, int64_t off, uint32_t len)
{
    int e = 0;
    pthread_mutex_lock(&d->sendmx);
    if (d->nsending == d->capsending) {
        size_t cap = d->capsending ? 2 * d->capsending : 16;
        int64_t(*v)[2] = realloc(d->sending, cap * sizeof(*v));
        if (v) {
            d->sending = v;
            d->capsending = cap;
        } else {
            e = -ENOMEM;
        }
    }
    if (e == 0) {
        d->sending[d->nsending][0] = off;
        d->sending[d->nsending][1] = len;
        d->nsending++;
    }
    pthread_mutex_unlock(&d->sendmx);
    return e;
}

void sq_blocks_send_end(struct sq_db *d, int64_t off, uint32_t len)
{
    pthread_mutex_lock(&d->sendmx);
    for (size_t i = 0; i < d->nsending; i++)
        if (d->sending[i][0] == off && d->sending[i][1] == len) {
            d->sending[i][0] = d->sending[d->nsending - 1][0];
            d->sending[i][1] = d->sending[d->nsending - 1][1];
            d->nsending--;
            break;
        }
    pthread_cond_broadcast(&d->sendcv);
    pthread_mutex_unlock(&d->sendmx);
}

int sq_blocks_read(struct sq_db *d, int64_t off, void *buf, uint32_t len)
{
    int fd;
    bool direct;
    int e = sq_blocks_read_fd(d, off, len, buf, &fd, &direct);
    size_t done = 0;
    while (e == 0 && done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + (int64_t)done));
        if (n < 0 && errno == EINTR)
            continue;
        if (direct && ((n < 0 && errno == EINVAL) || (n > 0 && (size_t)n % d->dio_align != 0))) {
            /* refused (an alignment the file system did not say: never
             * again), or short (the file ends: the rest is not aligned) */
            if (n < 0)
                sq_blocks_dio_refused(d);
            else
                done += (size_t)n;
            direct = false;
            fd = d->bfd;
            continue;
        }
        if (n < 0)
            e = blocks_fail(d, -EIO, "%s: %s: %s", "reading a block");
        else if (n == 0)
            e = blocks_fail(d, -EIO, "%s: %s (%s)",
                            "reading a block: the file ends before the extent the map names");
        else
            done += (size_t)n;
    }
    return e;
}

int sq_blocks_write(struct sq_db *d, int64_t off, const void *buf, uint32_t len)
{
    int fd;
    int e = sq_blocks_fd(d, SQ_BLOCKS_OPEN, &fd);
    size_t done = 0;
    wait_unsent(d, off, len);
    while (e == 0 && done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + (int64_t)done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            e = blocks_fail(d,
                            errno == ENOSPC || errno == EDQUOT || errno == EFBIG ? -ENOSPC : -EIO,
                            "%s: %s: %s", "writing a block");
        else
            done += (size_t)n;
    }
    return e;
}

void sq_blocks_init(struct sq_db *d)
{
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    /* a sync waits for the writes in flight, not for every later one */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&d->sync_rw, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&d->syncmx, NULL);
    pthread_mutex_init(&d->sendmx, NULL);
    pthread_cond_init(&d->sendcv, NULL);
}

void sq_blocks_fini(struct sq_db *d)
{
    pthread_rwlock_destroy(&d->sync_rw);
    pthread_mutex_destroy(&d->syncmx);
    free(d->failed);
    d->failed = NULL;
    pthread_mutex_destroy(&d->sendmx);
    pthread_cond_destroy(&d->sendcv);
    free(d->sending);
    d->sending = NULL;
}

uint64_t sq_blocks_write_begin(struct sq_db *d)
{
    pthread_rwlock_rdlock(&d->sync_rw);
    return __atomic_add_fetch(&d->wseq, 1, __ATOMIC_SEQ_CST);
}

void sq_blocks_write_end(struct sq_db *d)
{
    pthread_rwlock_unlock(&d->sync_rw);
}

/* Writes (lo, hi] were covered by a failed sync (syncmx held). Out of
 * memory: every write up to hi is distrusted (more, never less). */
static void failed_add(struct sq_db *d, uint64_t lo, uint64_t hi)
{
    if (d->nfailed == d->capfailed) {
        size_t cap = d->capfailed ? 2 * d->capfailed : 8;
        uint64_t(*v)[2] = realloc(d->failed, cap * sizeof(*v));
        if (!v) {
            d->distrust_upto = hi;
            return;
        }
        d->failed = v;
        d->capfailed = cap;
    }
    d->failed[d->nfailed][0] = lo;
    d->failed[d->nfailed][1] = hi;
    d->nfailed++;
}

int sq_blocks_sync(struct sq_db *d)
{
    int fd;
    int e = sq_blocks_fd(d, SQ_BLOCKS_OPEN, &fd);
    if (e < 0)
        return e;
    /* Exclusive: every write numbered up to `upto` has returned, none runs
     * meanwhile, and no other sync (of which the kernel could report this
     * file's write-back error to one only) runs at once. */
    pthread_rwlock_wrlock(&d->sync_rw);
    uint64_t upto = __atomic_load_n(&d->wseq, __ATOMIC_SEQ_CST);
    int hooked = d->sync_hook ? d->sync_hook(d->sync_hook_arg) : 0; /* tests */
    if (hooked)
        errno = hooked;
    bool failed = hooked || fdatasync(fd) < 0;
    int err = errno;
    pthread_mutex_lock(&d->syncmx);
    if (failed && upto > d->synced_seq)
        failed_add(d, d->synced_seq, upto);
    if (upto > d->synced_seq)
        d->synced_seq = upto;
    pthread_mutex_unlock(&d->syncmx);
    pthread_rwlock_unlock(&d->sync_rw);
    if (failed) {
        /* the message says what failed (ENOSPC: a delayed allocation,
         * a full disk); the caller gets -EIO, whatever it was */
        blocks_fail(d, -(err ? err : EIO), "%s: %s: %s", "making the uploads durable");
        e = -EIO;
    }
    return e;
}

int sq_blocks_durable(struct sq_db *d, uint64_t seq)
{
    int r = 1;
    pthread_mutex_lock(&d->syncmx);
    if (seq > d->synced_seq)
        r = -EAGAIN;
    else if (seq <= d->distrust_upto)
        r = 0;
    for (size_t i = 0; r == 1 && i < d->nfailed; i++)
        if (seq > d->failed[i][0] && seq <= d->failed[i][1])
            r = 0;
    pthread_mutex_unlock(&d->syncmx);
    return r;
}

void sq_blocks_punch(struct sq_db *d, const int64_t (*ext)[3], size_t n)
{
    int fd;
    if (n == 0 || sq_blocks_fd(d, SQ_BLOCKS_OPEN, &fd) < 0)
        return; /* logged: their space stays taken */
    bool logged = false;
    for (size_t i = 0; i < n; i++) {
        wait_unsent(d, ext[i][0], ext[i][1]);
        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)ext[i][0],
                      (off_t)ext[i][1]) < 0 &&
            errno != EOPNOTSUPP && !logged) {
            blocks_fail(d, -errno, "%s: %s: %s", "freeing a deleted block's space");
            logged = true;
        }
    }
}

void sq_blocks_close(struct sq_db *d)
{
    if (d->bfd >= 0)
        close(d->bfd);
    if (d->dfd >= 0)
        close(d->dfd);
    d->bfd = -1;
    d->dfd = -1;
}
