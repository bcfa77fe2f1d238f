/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — point-in-time views: the @SERIAL directories (see
 * views.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/errors.h"
#include "fs/fs.h"
#include "fs/inode.h"
#include "fs/log.h"
#include "fs/views.h"
#include "util/debug.h"

#define VIEWS_MIN_BUCKETS 64

struct bf_vnode {
    fuse_ino_t ino;
    uint64_t serial;
    uint64_t id;             /* the file; 0: the directory @serial */
    struct bf_fileinfo info; /* a file's, as at serial (immutable) */

    /* Protected by the table mutex. */
    uint64_t nlookup; /* kernel lookup count */
    uint32_t nopen;   /* OPENs / OPENDIRs not yet released */
    uint32_t refs;    /* holds (bf_views_get/hold .. put) */
    /* While open or held, once opened: the view (the pin), and for a file
     * its bf_file and handle. Set once per open period, cleared when
     * nopen + refs reaches 0. */
    bf_view *view;
    bf_file *file;
    bf_fileh *fh;
    bf_vnode *ino_next, *key_next; /* hash chains */
};

struct bf_views {
    bf_db *db;
    bf_ram *ram;
    uid_t uid;
    gid_t gid;
    struct timespec time;
    uint64_t at;      /* -o at=: the root's serial; 0: none */
    bf_view *at_view; /* its view, for the mount's life */

    pthread_mutex_t lock;
    bf_vnode **by_ino, **by_key;
    size_t nbuckets; /* power of two */
    size_t count;
    uint64_t next; /* the low bits of the next inode number */
};

/* What an inode let go of, to close with no lock held. */
struct vres {
    bf_view *view;
    bf_file *file;
    bf_fileh *fh;
};

uint64_t bf_views_name_serial(const char *name)
{
    uint64_t s = 0;

    if (name[0] != '@' || name[1] < '1' || name[1] > '9')
        return 0;
    for (const char *p = name + 1; *p; p++) {
        if (*p < '0' || *p > '9' || s > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return 0;
        s = s * 10 + (uint64_t)(*p - '0');
    }
    return s;
}

static size_t hash64(const bf_views *vt, uint64_t x)
{
    return (size_t)((x * 0x9E3779B97F4A7C15ull) >> 17) & (vt->nbuckets - 1);
}

static size_t ino_bucket(const bf_views *vt, fuse_ino_t ino)
{
    return hash64(vt, (uint64_t)ino);
}

static size_t key_bucket(const bf_views *vt, uint64_t serial, uint64_t id)
{
    return hash64(vt, serial ^ (id * 0xC2B2AE3D27D4EB4Full));
}

/* Table mutex held. */
static bf_vnode *find_ino_locked(bf_views *vt, fuse_ino_t ino)
{
    for (bf_vnode *v = vt->by_ino[ino_bucket(vt, ino)]; v; v = v->ino_next)
        if (v->ino == ino)
            return v;
    return NULL;
}

static bf_vnode *find_key_locked(bf_views *vt, uint64_t serial, uint64_t id)
{
    for (bf_vnode *v = vt->by_key[key_bucket(vt, serial, id)]; v; v = v->key_next)
        if (v->serial == serial && v->id == id)
            return v;
    return NULL;
}

static void hash_locked(bf_views *vt, bf_vnode *v)
{
    size_t b = ino_bucket(vt, v->ino), k = key_bucket(vt, v->serial, v->id);

    v->ino_next = vt->by_ino[b];
    vt->by_ino[b] = v;
    v->key_next = vt->by_key[k];
    vt->by_key[k] = v;
}

static void unhash_locked(bf_views *vt, bf_vnode *v)
{
    bf_vnode **pp = &vt->by_ino[ino_bucket(vt, v->ino)];

    while (*pp != v)
        pp = &(*pp)->ino_next;
    *pp = v->ino_next;
    pp = &vt->by_key[key_bucket(vt, v->serial, v->id)];
    while (*pp != v)
        pp = &(*pp)->key_next;
    *pp = v->key_next;
    vt->count--;
}

/* Double the buckets when the table is getting full; failure is harmless
 * (longer chains). Table mutex held. */
static void maybe_grow_locked(bf_views *vt)
{
    size_t old_n = vt->nbuckets;
    bf_vnode **old_ino = vt->by_ino, **ni, **nk;

    if (vt->count < old_n * 2)
        return;
    ni = calloc(old_n * 2, sizeof(*ni));
    nk = calloc(old_n * 2, sizeof(*nk));
    if (!ni || !nk) {
        free(ni);
        free(nk);
        return;
    }
    free(vt->by_key);
    vt->by_ino = ni;
    vt->by_key = nk;
    vt->nbuckets = old_n * 2;
    for (size_t b = 0; b < old_n; b++) {
        bf_vnode *v = old_ino[b];

        while (v) {
            bf_vnode *next = v->ino_next;

            hash_locked(vt, v);
            v = next;
        }
    }
    free(old_ino);
}

/* The inode of (serial, id), created if needed (info: a file's, as at
 * serial; NULL for a directory), held. NULL: out of memory. */
static bf_vnode *vnode_get_key(bf_views *vt, uint64_t serial, uint64_t id,
                               const struct bf_fileinfo *info)
{
    bf_vnode *v;

    pthread_mutex_lock(&vt->lock);
    v = find_key_locked(vt, serial, id);
    if (!v && (v = calloc(1, sizeof(*v)))) {
        v->ino = BF_VIEW_INO_BIT | ++vt->next;
        v->serial = serial;
        v->id = id;
        if (info)
            v->info = *info;
        maybe_grow_locked(vt);
        hash_locked(vt, v);
        vt->count++;
    }
    if (v)
        v->refs++;
    pthread_mutex_unlock(&vt->lock);
    return v;
}

/* After a count of v went down (table mutex held): an inode neither open
 * nor held lets go of its view, file and handle (into *res); one the
 * kernel forgot too leaves the table. Returns whether the caller must
 * free v (after closing *res). */
static bool settle_locked(bf_views *vt, bf_vnode *v, struct vres *res)
{
    memset(res, 0, sizeof(*res));
    if (v->nopen || v->refs)
        return false;
    /* open -> closed: the pin goes with the view */
    res->view = v->view;
    res->file = v->file;
    res->fh = v->fh;
    v->view = NULL;
    v->file = NULL;
    v->fh = NULL;
    if (v->nlookup)
        return false;
    unhash_locked(vt, v);
    return true;
}

/* Close what an inode let go of; no lock held. */
static void vres_close(bf_views *vt, struct vres *res)
{
    if (res->fh)
        bf_fileh_close(res->fh);
    if (res->file)
        bf_db_file_close(vt->db, res->file);
    if (res->view)
        bf_db_view_close(res->view);
}

/* After a count of v went down, with the table mutex held: settle v,
 * unlock, close what it let go of, and free it if it left the table. */
static void settle_unlock(bf_views *vt, bf_vnode *v)
{
    struct vres res;
    bool gone = settle_locked(vt, v, &res);

    pthread_mutex_unlock(&vt->lock);
    vres_close(vt, &res);
    if (gone)
        free(v);
}

bf_vnode *bf_views_get(bf_views *vt, fuse_ino_t ino)
{
    bf_vnode *v;

    pthread_mutex_lock(&vt->lock);
    v = find_ino_locked(vt, ino);
    if (v)
        v->refs++;
    pthread_mutex_unlock(&vt->lock);
    return v;
}

void bf_views_hold(bf_views *vt, bf_vnode *vn)
{
    pthread_mutex_lock(&vt->lock);
    vn->refs++;
    pthread_mutex_unlock(&vt->lock);
}

void bf_views_put(bf_views *vt, bf_vnode *vn)
{
    pthread_mutex_lock(&vt->lock);
    BF_ASSERT(vn->refs > 0);
    vn->refs--;
    settle_unlock(vt, vn);
}

bf_fileh *bf_vnode_fh(bf_views *vt, bf_vnode *vn)
{
    bf_fileh *fh;

    pthread_mutex_lock(&vt->lock);
    fh = vn->fh;
    pthread_mutex_unlock(&vt->lock);
    return fh;
}

fuse_ino_t bf_vnode_ino(const bf_vnode *vn)
{
    return vn->ino;
}

uint64_t bf_vnode_id(const bf_vnode *vn)
{
    return vn->id;
}

uint64_t bf_vnode_serial(const bf_vnode *vn)
{
    return vn->serial;
}

const char *bf_vnode_name(const bf_vnode *vn)
{
    return vn->info.name;
}

/* ---- the table ------------------------------------------------------------ */

int bf_views_new(bf_db *db, bf_ram *ram, uid_t uid, gid_t gid, const struct timespec *time,
                 uint64_t at, struct bf_history *h, bf_views **out)
{
    bf_views *vt = calloc(1, sizeof(*vt));
    int r;

    if (!vt)
        return -ENOMEM;
    vt->by_ino = calloc(VIEWS_MIN_BUCKETS, sizeof(*vt->by_ino));
    vt->by_key = calloc(VIEWS_MIN_BUCKETS, sizeof(*vt->by_key));
    if (!vt->by_ino || !vt->by_key) {
        r = -ENOMEM;
        goto fail;
    }
    vt->nbuckets = VIEWS_MIN_BUCKETS;
    vt->db = db;
    vt->ram = ram;
    vt->uid = uid;
    vt->gid = gid;
    vt->time = *time;
    memset(h, 0, sizeof(*h));
    if (at) {
        r = bf_db_history(db, h);
        if (r == 0 && !h->kept)
            r = -EOPNOTSUPP;
        if (r == 0)
            r = bf_db_view_open(db, at, &vt->at_view);
        if (r < 0)
            goto fail;
        vt->at = at;
    }
    pthread_mutex_init(&vt->lock, NULL);
    *out = vt;
    return 0;
fail:
    free(vt->by_ino);
    free(vt->by_key);
    free(vt);
    return r;
}

void bf_views_free(bf_views *vt)
{
    if (!vt)
        return;
    for (size_t b = 0; b < vt->nbuckets; b++) {
        bf_vnode *v = vt->by_ino[b];

        while (v) {
            bf_vnode *next = v->ino_next;
            struct vres res = { v->view, v->file, v->fh };

            vres_close(vt, &res);
            free(v);
            v = next;
        }
    }
    bf_db_view_close(vt->at_view);
    pthread_mutex_destroy(&vt->lock);
    free(vt->by_ino);
    free(vt->by_key);
    free(vt);
}

uint64_t bf_views_at(const bf_views *vt)
{
    return vt->at;
}

/* ---- attributes and entries -------------------------------------------------- */

/* The attributes of a directory of views (ino: its inode number). */
static void dir_stat(const bf_views *vt, fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    st->st_uid = vt->uid;
    st->st_gid = vt->gid;
    st->st_blksize = 4096;
    st->st_mtim = vt->time;
    st->st_ctim = vt->time;
    st->st_atim = vt->time;
}

static void vnode_stat(const bf_views *vt, const bf_vnode *v, struct stat *st)
{
    const struct bf_fileinfo *fi = &v->info;

    if (v->id == 0) {
        dir_stat(vt, v->ino, st);
        return;
    }
    memset(st, 0, sizeof(*st));
    st->st_ino = v->ino;
    st->st_mode = S_IFREG | (fi->mode & 07777);
    st->st_nlink = 1;
    st->st_uid = fi->uid;
    st->st_gid = fi->gid;
    st->st_size = (off_t)fi->size;
    st->st_blksize = fi->blksize;
    st->st_blocks = (blkcnt_t)((fi->size + 511) / 512);
    bf_fs_ns_to_ts(fi->mtime_ns, &st->st_mtim);
    bf_fs_ns_to_ts(fi->mtime_ns, &st->st_atim);
    bf_fs_ns_to_ts(fi->ctime_ns, &st->st_ctim);
}

/* Reply the entry of v (held by the caller), counting one kernel lookup. */
static void reply_entry(bf_views *vt, fuse_req_t req, bf_vnode *v, double entry_timeout)
{
    struct fuse_entry_param e;

    memset(&e, 0, sizeof(e));
    e.ino = v->ino;
    e.attr_timeout = BF_VIEW_TIMEOUT;
    e.entry_timeout = entry_timeout;
    vnode_stat(vt, v, &e.attr);
    pthread_mutex_lock(&vt->lock);
    v->nlookup++;
    pthread_mutex_unlock(&vt->lock);
    if (fuse_reply_entry(req, &e) != 0)
        bf_views_forget(vt, v->ino, 1);
}

void bf_views_lookup_dir(bf_views *vt, fuse_req_t req, uint64_t serial)
{
    struct bf_history h;
    bf_vnode *v;
    int r;

    r = bf_db_history(vt->db, &h);
    if (r < 0) {
        fuse_reply_err(req, bf_errno_ns(r));
        return;
    }
    /* An error, never a negative entry: a serial past current becomes
     * valid later. */
    if (!h.kept || serial < h.from || serial > h.current) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    v = vnode_get_key(vt, serial, 0, NULL);
    if (!v) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* Entry timeout 0: the kernel asks at every walk, so that a serial the
     * housekeeping collected disappears (views.h). */
    reply_entry(vt, req, v, 0.0);
    bf_views_put(vt, v);
}

/* The view to read directory `parent` with (the root of an `-o at=`
 * mount, or a view directory), into *v; *tmp gets a view opened for the
 * call (bf_db_view_close it), *dir the directory's inode held (put it).
 * Returns 0 or -errno (ENOTDIR, ENOENT: the serial was collected). */
static int dir_view(bf_views *vt, fuse_ino_t parent, bf_view **v, bf_view **tmp, bf_vnode **dir)
{
    *tmp = NULL;
    *dir = NULL;
    if (parent == BF_ROOT_INO) {
        if (!vt->at)
            return -ENOTDIR;
        *v = vt->at_view;
        return 0;
    }
    *dir = bf_views_get(vt, parent);
    if (!*dir)
        return -ENOENT;
    if ((*dir)->id != 0)
        return -ENOTDIR;
    pthread_mutex_lock(&vt->lock);
    *v = (*dir)->view; /* stays while held */
    pthread_mutex_unlock(&vt->lock);
    if (*v)
        return 0;
    int r = bf_db_view_open(vt->db, (*dir)->serial, tmp);
    *v = *tmp;
    return r;
}

static void dir_view_end(bf_views *vt, bf_view *tmp, bf_vnode *dir)
{
    bf_db_view_close(tmp);
    if (dir)
        bf_views_put(vt, dir);
}

void bf_views_lookup(bf_views *vt, fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct bf_fileinfo info;
    bf_view *v = NULL, *tmp;
    bf_vnode *dir, *f;
    uint64_t serial;
    bool looked = false;
    int r;

    r = dir_view(vt, parent, &v, &tmp, &dir);
    if (r == 0) {
        r = bf_view_lookup(v, name, &info);
        looked = true;
    }
    serial = dir ? dir->serial : vt->at;
    dir_view_end(vt, tmp, dir);
    if (r == -ENOENT && looked) {
        /* No such name at the serial, forever: a negative entry. */
        struct fuse_entry_param e;

        memset(&e, 0, sizeof(e));
        e.entry_timeout = BF_VIEW_TIMEOUT;
        fuse_reply_entry(req, &e);
        return;
    }
    if (r < 0) {
        fuse_reply_err(req, bf_errno_ns(r));
        return;
    }
    f = vnode_get_key(vt, serial, info.id, &info);
    if (!f) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    reply_entry(vt, req, f, BF_VIEW_TIMEOUT);
    bf_views_put(vt, f);
}

void bf_views_forget(bf_views *vt, fuse_ino_t ino, uint64_t nlookup)
{
    bf_vnode *v;

    pthread_mutex_lock(&vt->lock);
    v = find_ino_locked(vt, ino);
    if (!v) {
        pthread_mutex_unlock(&vt->lock);
        return;
    }
    v->nlookup = nlookup > v->nlookup ? 0 : v->nlookup - nlookup;
    settle_unlock(vt, v);
}

void bf_views_getattr(bf_views *vt, fuse_req_t req, fuse_ino_t ino)
{
    struct stat st;
    bf_vnode *v;

    if (ino == BF_ROOT_INO) {
        dir_stat(vt, ino, &st);
        fuse_reply_attr(req, &st, BF_VIEW_TIMEOUT);
        return;
    }
    v = bf_views_get(vt, ino);
    if (!v) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    vnode_stat(vt, v, &st);
    fuse_reply_attr(req, &st, BF_VIEW_TIMEOUT);
    bf_views_put(vt, v);
}

/* ---- files ------------------------------------------------------------------ */

/* Open v's view, and for a file its bf_file and handle, unless it has them
 * (v held). On success v is counted open. */
static int vnode_open(bf_views *vt, bf_vnode *v)
{
    struct vres res = { NULL, NULL, NULL };
    bool have;
    int r;

    pthread_mutex_lock(&vt->lock);
    have = v->view != NULL;
    if (have)
        v->nopen++;
    pthread_mutex_unlock(&vt->lock);
    if (have)
        return 0;
    /* With no lock: each is a backend call (the view pins its serial). */
    r = bf_db_view_open(vt->db, v->serial, &res.view);
    if (r == 0 && v->id) {
        r = bf_view_file_open(res.view, v->id, &res.file);
        if (r == 0)
            r = bf_fileh_open(res.file, vt->ram, &res.fh);
    }
    if (r < 0) {
        vres_close(vt, &res);
        return r;
    }
    pthread_mutex_lock(&vt->lock);
    if (!v->view) {
        /* closed -> open */
        v->view = res.view;
        v->file = res.file;
        v->fh = res.fh;
        memset(&res, 0, sizeof(res));
    }
    v->nopen++;
    pthread_mutex_unlock(&vt->lock);
    vres_close(vt, &res); /* another open was first */
    return 0;
}

static void vnode_close(bf_views *vt, bf_vnode *v)
{
    pthread_mutex_lock(&vt->lock);
    BF_ASSERT(v->nopen > 0);
    v->nopen--;
    settle_unlock(vt, v);
}

void bf_views_open(bf_views *vt, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    bf_vnode *v;
    int r;

    v = bf_views_get(vt, ino);
    if (!v) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (v->id == 0)
        r = -EISDIR;
    else if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
        r = -EROFS; /* O_RDONLY|O_TRUNC too: the kernel would drop its size */
    else
        r = vnode_open(vt, v);
    if (r < 0) {
        fuse_reply_err(req, bf_errno_ns(r));
    } else {
        fi->fh = (uint64_t)(uintptr_t)v;
        /* Immutable: the kernel's pages stay valid across opens. */
        fi->keep_cache = 1;
        fi->direct_io = 0;
        if (fuse_reply_open(req, fi) != 0)
            vnode_close(vt, v);
    }
    bf_views_put(vt, v);
}

void bf_views_release(bf_views *vt, fuse_req_t req, struct fuse_file_info *fi)
{
    vnode_close(vt, bf_views_fh(fi->fh));
    fuse_reply_err(req, 0);
}

/* ---- directories ---------------------------------------------------------- */

/* A snapshot of a view directory taken at OPENDIR: its entries' inodes,
 * held until RELEASEDIR (so READDIR's inode numbers are those LOOKUP
 * gives). */
struct vdir {
    bf_vnode *dir; /* open; NULL: the root of an `-o at=` mount */
    fuse_ino_t self;
    size_t count, cap;
    struct bf_fileinfo *infos; /* while listing */
    bf_vnode **ents;
};

static int vdir_add(void *arg, const struct bf_fileinfo *fi)
{
    struct vdir *d = arg;

    if (d->count == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 64;
        struct bf_fileinfo *n = realloc(d->infos, ncap * sizeof(*n));

        if (!n)
            return -ENOMEM;
        d->infos = n;
        d->cap = ncap;
    }
    d->infos[d->count++] = *fi;
    return 0;
}

static void vdir_free(bf_views *vt, struct vdir *d)
{
    if (d->ents)
        for (size_t i = 0; i < d->count; i++)
            if (d->ents[i])
                bf_views_put(vt, d->ents[i]);
    if (d->dir)
        vnode_close(vt, d->dir);
    free(d->ents);
    free(d->infos);
    free(d);
}

void bf_views_opendir(bf_views *vt, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct vdir *d = calloc(1, sizeof(*d));
    uint64_t serial = vt->at;
    bf_view *v = vt->at_view;
    bf_vnode *dir = NULL;
    int r = 0;

    if (!d) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    d->self = ino;
    if (ino != BF_ROOT_INO) {
        dir = bf_views_get(vt, ino);
        r = !dir ? -ENOENT : dir->id ? -ENOTDIR : vnode_open(vt, dir);
        if (r == 0) {
            d->dir = dir; /* open: its view stays */
            serial = dir->serial;
            pthread_mutex_lock(&vt->lock);
            v = dir->view;
            pthread_mutex_unlock(&vt->lock);
        }
        if (dir)
            bf_views_put(vt, dir);
    }
    if (r == 0)
        r = bf_view_list(v, vdir_add, d);
    if (r == 0 && d->count && !(d->ents = calloc(d->count, sizeof(*d->ents))))
        r = -ENOMEM;
    for (size_t i = 0; r == 0 && i < d->count; i++)
        if (!(d->ents[i] = vnode_get_key(vt, serial, d->infos[i].id, &d->infos[i])))
            r = -ENOMEM;
    if (r < 0) {
        vdir_free(vt, d);
        fuse_reply_err(req, bf_errno_ns(r));
        return;
    }
    free(d->infos);
    d->infos = NULL;
    fi->fh = (uint64_t)(uintptr_t)d;
    fi->keep_cache = 1;
    fi->cache_readdir = 1; /* immutable */
    if (fuse_reply_open(req, fi) != 0)
        vdir_free(vt, d);
}

/* Entry i of a view directory's snapshot (bf_fs_reply_readdir). */
static const char *vdir_entry(void *arg, size_t i, fuse_ino_t *ino)
{
    struct vdir *d = arg;

    *ino = d->ents[i]->ino;
    return d->ents[i]->info.name;
}

void bf_views_readdir(bf_views *vt, fuse_req_t req, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    struct vdir *d = (struct vdir *)(uintptr_t)fi->fh;

    (void)vt;
    bf_fs_reply_readdir(req, size, off, d->self, d->count, vdir_entry, d);
}

void bf_views_releasedir(bf_views *vt, fuse_req_t req, struct fuse_file_info *fi)
{
    vdir_free(vt, (struct vdir *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}
