/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the layer's spill file, the staging area of the
 * engines that have none (engine.h, bf_spillfile_*; core/bigfile.h,
 * stage).
 *
 * One unnamed temporary file per session (O_TMPFILE, or a file unlinked
 * at once where the file system cannot make one): whatever happens to the
 * process, its staged contents go with it, and nothing is left for a
 * later start to clean up. It is opened at the first put, so a session
 * that never spills has none. Contents live in slots: a slot of `len`
 * bytes at an offset (the token); a freed slot goes on the free list of
 * its size and its disk space back to the file system (a hole punched),
 * and the next put of that size reuses it; a put with no free slot of its
 * size appends one. Sizes are powers of two (block sizes), so a short
 * list per size keeps the file as large as the most slots of each size
 * ever in use at once.
 *
 * Locking: `lock` guards the descriptor's creation and the free lists,
 * and is never held across a read or a write of the file (different
 * slots are read and written at once, with pread/pwrite).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_TMPFILE, fallocate */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/engine.h"

#define SF_SIZES 32 /* free lists: one per power of two */

struct sf_free {
    uint64_t *v;
    size_t n, cap;
};

struct bf_spillfile {
    pthread_mutex_t lock;
    char *dir;
    int fd;       /* -1 until the first put */
    uint64_t end; /* bytes of the file slots were taken from */
    uint64_t used;
    struct sf_free free[SF_SIZES];
};

int bf_spillfile_new(const char *dir, struct bf_spillfile **out)
{
    struct bf_spillfile *sf = calloc(1, sizeof(*sf));
    if (!sf)
        return -ENOMEM;
    if (!dir || !*dir)
        dir = getenv("TMPDIR");
    sf->dir = strdup(dir && *dir ? dir : "/var/tmp");
    if (!sf->dir || pthread_mutex_init(&sf->lock, NULL) != 0) {
        free(sf->dir);
        free(sf);
        return -ENOMEM;
    }
    sf->fd = -1;
    *out = sf;
    return 0;
}

void bf_spillfile_free(struct bf_spillfile *sf)
{
    if (!sf)
        return;
    if (sf->fd >= 0)
        close(sf->fd);
    for (int i = 0; i < SF_SIZES; i++)
        free(sf->free[i].v);
    pthread_mutex_destroy(&sf->lock);
    free(sf->dir);
    free(sf);
}

/* The free list of slots of len bytes (a power of two). */
static struct sf_free *free_list(struct bf_spillfile *sf, uint32_t len)
{
    return &sf->free[__builtin_ctz(len) % SF_SIZES];
}

/* Open the file, lock held. Returns 0 or -errno. */
static int sf_open(struct bf_spillfile *sf)
{
    int fd = open(sf->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        /* No O_TMPFILE here: a named file, unlinked at once. */
        size_t n = strlen(sf->dir) + 32;
        char *path = malloc(n);
        if (!path)
            return -ENOMEM;
        snprintf(path, n, "%s/bigfilefs-spill-XXXXXX", sf->dir);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0)
            unlink(path);
        free(path);
    }
    if (fd < 0)
        return -errno;
    sf->fd = fd;
    return 0;
}

/* Give slot `at` of len bytes back: its disk space, and onto its free
 * list (when the list cannot grow, the slot is lost: the file keeps its
 * size, which is harmless). Lock held. */
static void sf_release(struct bf_spillfile *sf, uint64_t at, uint32_t len)
{
    fallocate(sf->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)at, (off_t)len);
    struct sf_free *fl = free_list(sf, len);
    if (fl->n == fl->cap) {
        size_t cap = fl->cap ? 2 * fl->cap : 64;
        uint64_t *v = realloc(fl->v, cap * sizeof(*v));
        if (!v)
            return;
        fl->v = v;
        fl->cap = cap;
    }
    fl->v[fl->n++] = at;
}

int bf_spillfile_put(struct bf_spillfile *sf, const void *buf, uint32_t len, uint64_t *token)
{
    BF_ASSERT(len > 0 && (len & (len - 1)) == 0);
    pthread_mutex_lock(&sf->lock);
    int r = sf->fd < 0 ? sf_open(sf) : 0;
    if (r < 0) {
        pthread_mutex_unlock(&sf->lock);
        return r;
    }
    struct sf_free *fl = free_list(sf, len);
    uint64_t at;
    if (fl->n) {
        at = fl->v[--fl->n];
    } else {
        at = sf->end;
        sf->end += len;
    }
    sf->used++;
    int fd = sf->fd;
    pthread_mutex_unlock(&sf->lock);

    size_t done = 0;
    while (r == 0 && done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(at + done));
        if (n < 0 && errno != EINTR)
            r = -errno;
        else if (n == 0)
            r = -ENOSPC;
        else if (n > 0)
            done += (size_t)n;
    }
    if (r < 0) {
        pthread_mutex_lock(&sf->lock);
        sf->used--;
        sf_release(sf, at, len);
        pthread_mutex_unlock(&sf->lock);
        return r == -EDQUOT ? -ENOSPC : r;
    }
    *token = at;
    return 0;
}

int bf_spillfile_get(struct bf_spillfile *sf, uint64_t token, void *buf, uint32_t len)
{
    pthread_mutex_lock(&sf->lock);
    int fd = sf->fd;
    bool ok = fd >= 0 && token + len <= sf->end;
    pthread_mutex_unlock(&sf->lock);
    if (!BF_CHECK(ok, "spill file: no slot at %llu", (unsigned long long)token))
        return -EIO;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(token + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EIO;
        done += (size_t)n;
    }
    return 0;
}

void bf_spillfile_drop(struct bf_spillfile *sf, uint64_t token, uint32_t len)
{
    pthread_mutex_lock(&sf->lock);
    if (BF_CHECK(sf->fd >= 0 && sf->used > 0, "spill file: a drop of nothing")) {
        sf->used--;
        sf_release(sf, token, len);
    }
    pthread_mutex_unlock(&sf->lock);
}

uint64_t bf_spillfile_used(struct bf_spillfile *sf)
{
    pthread_mutex_lock(&sf->lock);
    uint64_t n = sf->used;
    pthread_mutex_unlock(&sf->lock);
    return n;
}
