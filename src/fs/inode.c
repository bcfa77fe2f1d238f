/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the inode table (see inode.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/inode.h"
#include "fs/log.h"

#define ITABLE_MIN_BUCKETS 64

static size_t bucket_of(const bf_itable *t, uint64_t id)
{
    /* Fibonacci hashing: ids are small consecutive integers. */
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (t->nbuckets - 1);
}

int bf_itable_init(bf_itable *t, bf_db *db, bf_ram *ram)
{
    memset(t, 0, sizeof(*t));
    t->buckets = calloc(ITABLE_MIN_BUCKETS, sizeof(*t->buckets));
    if (!t->buckets)
        return -ENOMEM;
    t->nbuckets = ITABLE_MIN_BUCKETS;
    t->db = db;
    t->ram = ram;
    pthread_mutex_init(&t->lock, NULL);
    return 0;
}

/* Close the handle and file of an inode nobody can reach any more, and
 * free it. No lock held. */
static void inode_free(bf_itable *t, bf_inode *inode)
{
    if (inode->fh) {
        if (bf_fileh_isdirty(inode->fh)) {
            struct bf_fileh_stats st;

            bf_fileh_stat(inode->fh, &st);
            bf_notice(
                "dropping uncommitted changes of unlinked file #%llu (%llu blocks, size %llu)",
                (unsigned long long)inode->id, (unsigned long long)st.dirty_blocks,
                (unsigned long long)st.size);
        }
        bf_fileh_close(inode->fh);
    }
    bf_db_file_close(t->db, inode->file);
    pthread_rwlock_destroy(&inode->fh_lock);
    free(inode);
}

void bf_itable_destroy(bf_itable *t)
{
    for (size_t b = 0; b < t->nbuckets; b++) {
        bf_inode *inode = t->buckets[b];

        while (inode) {
            bf_inode *next = inode->hnext;

            if (inode->fh && bf_fileh_isdirty(inode->fh)) {
                struct bf_fileh_stats st;

                bf_fileh_stat(inode->fh, &st);
                bf_notice("discarding uncommitted changes of %s (%llu blocks, size %llu)",
                          inode->unlinked ? "(unlinked file)" : inode->info.name,
                          (unsigned long long)st.dirty_blocks, (unsigned long long)st.size);
            }
            if (inode->fh)
                bf_fileh_close(inode->fh);
            bf_db_file_close(t->db, inode->file);
            pthread_rwlock_destroy(&inode->fh_lock);
            free(inode);
            inode = next;
        }
    }
    free(t->buckets);
    t->buckets = NULL;
    t->count = 0;
    pthread_mutex_destroy(&t->lock);
}

/* Find by id; table lock held. */
static bf_inode *find_locked(bf_itable *t, uint64_t id)
{
    for (bf_inode *i = t->buckets[bucket_of(t, id)]; i; i = i->hnext)
        if (i->id == id)
            return i;
    return NULL;
}

/* Double the bucket array when the table is getting full; table lock held.
 * Failure to grow is harmless (chains get longer). */
static void maybe_grow(bf_itable *t)
{
    size_t old_n = t->nbuckets, new_n = old_n * 2;
    bf_inode **old = t->buckets, **nb;

    if (t->count < old_n * 2)
        return;
    nb = calloc(new_n, sizeof(*nb));
    if (!nb)
        return;
    t->buckets = nb;
    t->nbuckets = new_n;
    for (size_t b = 0; b < old_n; b++) {
        bf_inode *i = old[b];

        while (i) {
            bf_inode *next = i->hnext;
            size_t nbk = bucket_of(t, i->id);

            i->hnext = nb[nbk];
            nb[nbk] = i;
            i = next;
        }
    }
    free(old);
}

static void unhash_locked(bf_itable *t, bf_inode *inode)
{
    bf_inode **pp = &t->buckets[bucket_of(t, inode->id)];

    while (*pp != inode)
        pp = &(*pp)->hnext;
    *pp = inode->hnext;
    t->count--;
}

/* Decide whether the inode may go; table lock held. Returns true (and
 * removes it from the table) when the caller must inode_free() it after
 * unlocking. */
static bool release_locked(bf_itable *t, bf_inode *inode)
{
    if (inode->refs || inode->nopen || inode->nlookup)
        return false;
    /* Nobody holds a reference, so nobody changes inode->fh now. A clean
     * handle, or the handle of an unlinked file (whose changes nobody can
     * commit any more), goes; a dirty one waits for its writeout or
     * discard. Lock order: table mutex -> ram lock (inside isdirty). */
    if (inode->fh && !inode->unlinked && bf_fileh_isdirty(inode->fh))
        return false;
    unhash_locked(t, inode);
    return true;
}

bf_inode *bf_itable_get(bf_itable *t, const struct bf_fileinfo *info)
{
    bf_inode *inode;

    pthread_mutex_lock(&t->lock);
    inode = find_locked(t, info->id);
    if (!inode) {
        pthread_rwlockattr_t attr;

        inode = calloc(1, sizeof(*inode));
        if (!inode) {
            pthread_mutex_unlock(&t->lock);
            return NULL;
        }
        inode->id = info->id;
        inode->ino = (fuse_ino_t)info->id + 1;
        pthread_rwlockattr_init(&attr);
        /* Readers first: a SETBLKSIZE waiting to close the handle must not
         * block the WRITEs a discard's kernel invalidation waits for. */
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_READER_NP);
        pthread_rwlock_init(&inode->fh_lock, &attr);
        pthread_rwlockattr_destroy(&attr);
        maybe_grow(t);
        inode->hnext = t->buckets[bucket_of(t, inode->id)];
        t->buckets[bucket_of(t, inode->id)] = inode;
        t->count++;
    }
    inode->info = *info;
    inode->unlinked = false;
    inode->refs++;
    pthread_mutex_unlock(&t->lock);
    return inode;
}

bf_inode *bf_itable_find(bf_itable *t, fuse_ino_t ino)
{
    bf_inode *inode;

    if (ino <= BF_ROOT_INO)
        return NULL;
    pthread_mutex_lock(&t->lock);
    inode = find_locked(t, (uint64_t)ino - 1);
    if (inode)
        inode->refs++;
    pthread_mutex_unlock(&t->lock);
    return inode;
}

void bf_itable_put(bf_itable *t, bf_inode *inode)
{
    bool gone;

    pthread_mutex_lock(&t->lock);
    inode->refs--;
    gone = release_locked(t, inode);
    pthread_mutex_unlock(&t->lock);
    if (gone)
        inode_free(t, inode);
}

void bf_itable_lookup(bf_itable *t, bf_inode *inode, uint64_t n)
{
    pthread_mutex_lock(&t->lock);
    inode->nlookup += n;
    pthread_mutex_unlock(&t->lock);
}

void bf_itable_forget(bf_itable *t, fuse_ino_t ino, uint64_t n)
{
    bf_inode *inode;
    bool gone = false;

    if (ino <= BF_ROOT_INO)
        return;
    pthread_mutex_lock(&t->lock);
    inode = find_locked(t, (uint64_t)ino - 1);
    if (inode) {
        inode->nlookup = n > inode->nlookup ? 0 : inode->nlookup - n;
        gone = release_locked(t, inode);
    }
    pthread_mutex_unlock(&t->lock);
    if (gone)
        inode_free(t, inode);
}

void bf_itable_open(bf_itable *t, bf_inode *inode)
{
    pthread_mutex_lock(&t->lock);
    inode->nopen++;
    pthread_mutex_unlock(&t->lock);
}

void bf_itable_release(bf_itable *t, bf_inode *inode)
{
    bool gone;

    pthread_mutex_lock(&t->lock);
    if (inode->nopen)
        inode->nopen--;
    gone = release_locked(t, inode);
    pthread_mutex_unlock(&t->lock);
    if (gone)
        inode_free(t, inode);
}

int bf_inode_fh_get(bf_itable *t, bf_inode *inode, bf_fileh **fh)
{
    for (;;) {
        int r;

        pthread_rwlock_rdlock(&inode->fh_lock);
        if (inode->fh) {
            *fh = inode->fh;
            return 0;
        }
        pthread_rwlock_unlock(&inode->fh_lock);

        /* First need: open the handle under the write lock (another thread
         * may have opened it meanwhile). */
        pthread_rwlock_wrlock(&inode->fh_lock);
        if (!inode->fh) {
            r = bf_db_file_open(t->db, inode->id, &inode->file);
            if (r == 0) {
                r = bf_fileh_open(inode->file, t->ram, &inode->fh);
                inode->nstored_known = false; /* the handle counts from now on */
                if (r < 0) {
                    bf_db_file_close(t->db, inode->file);
                    inode->file = NULL;
                    inode->fh = NULL;
                }
            } else {
                inode->file = NULL;
            }
            if (r < 0) {
                pthread_rwlock_unlock(&inode->fh_lock);
                return r;
            }
        }
        pthread_rwlock_unlock(&inode->fh_lock);
    }
}

void bf_inode_fh_put(bf_inode *inode)
{
    pthread_rwlock_unlock(&inode->fh_lock);
}

void bf_inode_fh_peek(bf_inode *inode, bf_fileh **fh)
{
    pthread_rwlock_rdlock(&inode->fh_lock);
    *fh = inode->fh;
}

int bf_inode_set_blksize(bf_itable *t, bf_inode *inode, uint32_t blksize)
{
    int r;

    pthread_rwlock_wrlock(&inode->fh_lock);
    if (inode->fh) {
        struct bf_fileh_stats st;

        bf_fileh_stat(inode->fh, &st);
        if (st.size || st.committed_size || st.dirty_blocks) {
            pthread_rwlock_unlock(&inode->fh_lock);
            return -ENOTEMPTY;
        }
        /* The backend refuses to change the block size while a bf_file is
         * open: close ours; the next user reopens it with the new size. */
        bf_fileh_close(inode->fh);
        bf_db_file_close(t->db, inode->file);
        inode->fh = NULL;
        inode->file = NULL;
    }
    r = bf_db_set_blksize(t->db, inode->id, blksize);
    inode->nstored_known = false; /* the handle may have changed it */
    pthread_rwlock_unlock(&inode->fh_lock);
    if (r == 0) {
        pthread_mutex_lock(&t->lock);
        inode->info.blksize = blksize;
        pthread_mutex_unlock(&t->lock);
    }
    return r;
}

int bf_inode_stored_blocks(bf_itable *t, bf_inode *inode, uint64_t *n)
{
    bf_file *f;
    int r;

    if (__atomic_load_n(&inode->nstored_known, __ATOMIC_ACQUIRE)) {
        *n = __atomic_load_n(&inode->nstored, __ATOMIC_RELAXED);
        return 0;
    }
    /* fh_lock is held for reading: no handle opens, no SETBLKSIZE runs,
     * nothing clears the cache; other readers may set it too, alike. */
    r = bf_db_file_open(t->db, inode->id, &f);
    if (r < 0)
        return r;
    r = f->ops->stored_blocks ? f->ops->stored_blocks(f, n) : -ENOTSUP;
    bf_db_file_close(t->db, f);
    if (r == 0) {
        __atomic_store_n(&inode->nstored, *n, __ATOMIC_RELAXED);
        __atomic_store_n(&inode->nstored_known, true, __ATOMIC_RELEASE);
    }
    return r;
}

void bf_inode_info(bf_itable *t, bf_inode *inode, struct bf_fileinfo *out, bool *unlinked)
{
    pthread_mutex_lock(&t->lock);
    *out = inode->info;
    if (unlinked)
        *unlinked = inode->unlinked;
    pthread_mutex_unlock(&t->lock);
}

void bf_itable_set_info(bf_itable *t, bf_inode *inode, const struct bf_fileinfo *info)
{
    char name[sizeof(inode->info.name)];

    pthread_mutex_lock(&t->lock);
    /* Keep our idea of the name: the database's may be ahead of the
     * renames we applied (inode.h). */
    memcpy(name, inode->info.name, sizeof(name));
    inode->info = *info;
    memcpy(inode->info.name, name, sizeof(name));
    pthread_mutex_unlock(&t->lock);
}

void bf_itable_set_name(bf_itable *t, bf_inode *inode, const char *name)
{
    pthread_mutex_lock(&t->lock);
    if (!name || !*name) {
        inode->unlinked = true;
        inode->info.name[0] = '\0';
    } else if (!inode->unlinked) {
        snprintf(inode->info.name, sizeof(inode->info.name), "%s", name);
    }
    pthread_mutex_unlock(&t->lock);
}

int bf_itable_all(bf_itable *t, bf_inode ***out, size_t *n)
{
    bf_inode **v;
    size_t k = 0;

    pthread_mutex_lock(&t->lock);
    v = malloc((t->count ? t->count : 1) * sizeof(*v));
    if (!v) {
        pthread_mutex_unlock(&t->lock);
        return -ENOMEM;
    }
    for (size_t b = 0; b < t->nbuckets; b++)
        for (bf_inode *i = t->buckets[b]; i; i = i->hnext) {
            i->refs++;
            v[k++] = i;
        }
    pthread_mutex_unlock(&t->lock);
    *out = v;
    *n = k;
    return 0;
}

int bf_inode_op_begin(bf_itable *t, bf_inode *inode, enum bf_inode_op op)
{
    int r = 0;

    pthread_mutex_lock(&t->lock);
    if (inode->op != BF_OP_NONE)
        r = -EBUSY;
    else
        inode->op = op; /* NONE -> op */
    pthread_mutex_unlock(&t->lock);
    return r;
}

void bf_inode_op_end(bf_itable *t, bf_inode *inode)
{
    pthread_mutex_lock(&t->lock);
    inode->op = BF_OP_NONE; /* op -> NONE */
    pthread_mutex_unlock(&t->lock);
}

/* Find the linked inode named `name`; table lock held. O(inodes). */
static bf_inode *find_name_locked(bf_itable *t, const char *name)
{
    for (size_t b = 0; b < t->nbuckets; b++)
        for (bf_inode *i = t->buckets[b]; i; i = i->hnext)
            if (!i->unlinked && strcmp(i->info.name, name) == 0)
                return i;
    return NULL;
}

void bf_itable_unlinked(bf_itable *t, const char *name)
{
    bf_inode *inode;

    pthread_mutex_lock(&t->lock);
    inode = find_name_locked(t, name);
    if (inode) {
        inode->unlinked = true;
        inode->info.name[0] = '\0';
    }
    pthread_mutex_unlock(&t->lock);
}

void bf_itable_renamed(bf_itable *t, const char *from, const char *to, unsigned flags)
{
    bf_inode *src, *dst;

    pthread_mutex_lock(&t->lock);
    src = find_name_locked(t, from);
    dst = find_name_locked(t, to);
    if (flags & BF_RENAME_EXCHANGE) {
        if (src)
            snprintf(src->info.name, sizeof(src->info.name), "%s", to);
        if (dst)
            snprintf(dst->info.name, sizeof(dst->info.name), "%s", from);
    } else {
        if (dst && dst != src) {
            dst->unlinked = true;
            dst->info.name[0] = '\0';
        }
        if (src)
            snprintf(src->info.name, sizeof(src->info.name), "%s", to);
    }
    pthread_mutex_unlock(&t->lock);
}
