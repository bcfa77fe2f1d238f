/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the SQLite engine's sessions (COHERENCE.md rules
 * 3-7): the database file's locks, sessions and their liveness, holds and
 * purges, the watcher's reads, and the housekeeping.
 *
 * Locks on the database file (lockfd, opened read-only by every session):
 *  - flock(LOCK_EX | LOCK_NB), or LOCK_SH with BF_DB_SHARED, for the
 *    session's life (rule 7): an exclusive session and any other, or a
 *    shared and an exclusive one, never run at once; the one that comes
 *    second is refused, touching nothing.
 *  - a read lock (an OFD lock, fcntl F_OFD_SETLK) on one byte at
 *    SQ_LIVE_BASE + the session's id — far from SQLite's own lock bytes
 *    (around 2^30) — is the session's liveness: the kernel drops it when
 *    the process dies, however it dies. Another session asks with
 *    F_OFD_GETLK whether a write lock there would conflict: if not, the
 *    session is dead. A session's own byte never conflicts with its own
 *    descriptor: it is alive by definition.
 *
 * Descriptors: closing a descriptor of a file drops every POSIX lock the
 * process holds on it, including SQLite's own (which tell other processes
 * that a connection still uses the WAL). So a descriptor of the database
 * file is never closed while another session of this process may have it
 * open: it is parked (its flock and OFD lock released) until the last
 * session of this process on that file closes, and all are closed then.
 * The table of those descriptors (fds, under fds_lock) is this file's
 * only global state.
 *
 * The housekeeping (rule 5.5, sq_trim) runs at open and bf_db_trim to the
 * end, and from the watcher for a few transactions at a time: first the
 * history's `from` advances (sqlite_history.c, docs/HISTORY.md); then a
 * read transaction decides what there is to do; then each step is a short
 * write transaction of its own (each bounded by SQ_TRIM_TX_NS of work):
 *   1. record the session's applied serial in its row;
 *   2. a dead session: its uploads become garbage (session 0), its holds,
 *      pins and row go;
 *   3. the log: rows up to the slowest live session's applied serial, and
 *      beyond it rows older than the last log_keep, go — but none from
 *      `from` on; log_trimmed says up to where;
 *   4. file states the history no longer needs go;
 *   5. versions superseded at or before min(the slowest live session's
 *      applied serial, `from`) go ('collected' says up to where), their
 *      contents become garbage;
 *   6. nameless files no live session holds, whose name went at or before
 *      `from`, are purged (their contents become garbage);
 *   7. garbage contents are deleted: at once at open and by bf_db_trim,
 *      else once they have been garbage for SQ_GARBAGE_KEEP_NS, so that
 *      the next writeouts' uploads may reuse them (sqlite.c, upload); the
 *      extents of those in the block file are punched out once their
 *      deletion has committed (sqlite_blocks.c).
 * A read-only session writes nothing, so it does none of this, and has no
 * row: its applied serial holds nothing back. It learns of the log being
 * trimmed past it by a BF_COMMIT_RESET, of versions collected under its
 * views by -ESTALE (the core then loads the current version), and its
 * open files may be purged under it.
 */
#define _GNU_SOURCE /* F_OFD_SETLK, F_OFD_GETLK */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/ranges.h"
#include "backends/sqlite_internal.h"

#define SQ_LIVE_BASE ((off_t)1 << 62)
#define SQ_TRIM_TX_NS 10000000LL /* work per housekeeping transaction: 10 ms */
#define SQ_TRIM_ROWS 256         /* rows looked at per query */
#define SQ_LOG_TRIM_ROWS 10000   /* log rows deleted per transaction */

/* ---- descriptors of the database file ---------------------------------------- */

struct fdfile {
    struct fdfile *next;
    dev_t dev;
    ino_t ino;
    unsigned users; /* sessions of this process with a descriptor of it */
    int *parked;    /* descriptors of closed sessions, kept open */
    size_t nparked, capparked;
};

static pthread_mutex_t fds_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fdfile *fds;

/* One more session uses file (dev, ino). -ENOMEM. */
static int fd_register(dev_t dev, ino_t ino)
{
    pthread_mutex_lock(&fds_lock);
    struct fdfile *f;
    for (f = fds; f; f = f->next)
        if (f->dev == dev && f->ino == ino)
            break;
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f) {
            pthread_mutex_unlock(&fds_lock);
            return -ENOMEM;
        }
        f->dev = dev;
        f->ino = ino;
        f->next = fds;
        fds = f;
    }
    f->users++;
    pthread_mutex_unlock(&fds_lock);
    return 0;
}

/* A session is done with descriptor fd of file (dev, ino), which holds no
 * lock of ours any more: park it, or, for the last session, close it and
 * every parked one. */
static void fd_release(int fd, dev_t dev, ino_t ino)
{
    pthread_mutex_lock(&fds_lock);
    struct fdfile **pp = &fds, *f;
    while ((f = *pp) && !(f->dev == dev && f->ino == ino))
        pp = &f->next;
    if (!BF_CHECK(f != NULL, "descriptor %d of an unknown file", fd)) {
        pthread_mutex_unlock(&fds_lock);
        return; /* kept open: closing it might drop another session's locks */
    }
    if (--f->users > 0) {
        if (f->nparked == f->capparked) {
            size_t cap = f->capparked ? 2 * f->capparked : 4;
            int *v = realloc(f->parked, cap * sizeof(*v));
            if (!v) {
                pthread_mutex_unlock(&fds_lock);
                return; /* kept open, not parked: leaked rather than unsafe */
            }
            f->parked = v;
            f->capparked = cap;
        }
        f->parked[f->nparked++] = fd;
        pthread_mutex_unlock(&fds_lock);
        return;
    }
    *pp = f->next;
    pthread_mutex_unlock(&fds_lock);
    close(fd);
    for (size_t i = 0; i < f->nparked; i++)
        close(f->parked[i]);
    free(f->parked);
    free(f);
}

int sq_lock_open(struct sq_db *d, unsigned flags, char *errbuf, size_t errlen)
{
    struct stat st;
    int fd = open(d->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        bf_errf(errbuf, errlen, "%s: %s", d->path, strerror(e));
        return -e;
    }
    if (fstat(fd, &st) < 0 || fd_register(st.st_dev, st.st_ino) < 0) {
        close(fd); /* no other session of ours has it: nothing to drop */
        bf_errf(errbuf, errlen, "%s: out of memory", d->path);
        return -ENOMEM;
    }
    if (flock(fd, ((flags & BF_DB_SHARED) ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
        int e = errno == EWOULDBLOCK ? EBUSY : errno;
        if (e == EBUSY)
            bf_errf(errbuf, errlen,
                    "%s: in use by another bigfilefs (mount every daemon with -o shared to "
                    "share it)",
                    d->path);
        else
            bf_errf(errbuf, errlen, "%s: cannot lock: %s", d->path, strerror(e));
        fd_release(fd, st.st_dev, st.st_ino);
        return -e;
    }
    d->lockfd = fd;
    d->lockdev = st.st_dev;
    d->lockino = st.st_ino;
    return 0;
}

/* Take (F_RDLCK) or drop (F_UNLCK) the liveness lock of session id. */
static int live_lock(struct sq_db *d, uint64_t id, short type)
{
    struct flock fl = {
        .l_type = type, .l_whence = SEEK_SET, .l_start = SQ_LIVE_BASE + (off_t)id, .l_len = 1
    };
    return fcntl(d->lockfd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

void sq_lock_close(struct sq_db *d)
{
    if (d->lockfd < 0)
        return;
    if (d->base.session)
        live_lock(d, d->base.session, F_UNLCK);
    flock(d->lockfd, LOCK_UN);
    fd_release(d->lockfd, d->lockdev, d->lockino);
    d->lockfd = -1;
}

/* ---- sessions, holds, purges ---------------------------------------------- */

bool sq_session_alive(struct sq_db *d, uint64_t id)
{
    if (id == d->base.session)
        return true;
    struct flock fl = {
        .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = SQ_LIVE_BASE + (off_t)id, .l_len = 1
    };
    if (fcntl(d->lockfd, F_OFD_GETLK, &fl) < 0)
        return true; /* cannot tell: never take a live one for dead */
    return fl.l_type != F_UNLCK;
}

int sq_session_register(struct sq_db *d, char *errbuf, size_t errlen)
{
    char host[256] = "";
    int64_t serial = 0, id = 0;
    gethostname(host, sizeof(host) - 1);
    int e = sq_wbegin(d, false);
    if (e == 0)
        e = sq_wmeta_get(d, "serial", &serial);
    if (e == 0) {
        sqlite3_stmt *st = d->ws[W_SESSION_ADD];
        sqlite3_bind_int64(st, 1, getpid());
        sqlite3_bind_text(st, 2, host, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, bf_now_ns());
        sqlite3_bind_int64(st, 4, serial);
        sqlite3_bind_int(st, 5, (d->base.flags & BF_DB_SHARED) != 0);
        int rc = sq_exec(st);
        e = rc == SQLITE_OK ? 0 : sq_fail(d, d->w, rc, "registering the session");
        id = sqlite3_last_insert_rowid(d->w);
    }
    /* Alive before the row is visible: no other session takes it for a
     * dead one. */
    if (e == 0 && (e = live_lock(d, (uint64_t)id, F_RDLCK)) < 0)
        bf_errf(errbuf, errlen, "%s: cannot take the session's lock: %s", d->path, strerror(-e));
    e = sq_wend(d, false, e);
    if (e < 0) {
        if (id)
            live_lock(d, (uint64_t)id, F_UNLCK);
        if (errbuf && !errbuf[0])
            bf_errf(errbuf, errlen, "%s: cannot register the session: %s", d->path, strerror(-e));
        return e;
    }
    d->base.session = (uint64_t)id;
    d->base.start_serial = d->applied_recorded = (uint64_t)serial;
    return 0;
}

void sq_session_end(struct sq_db *d)
{
    int64_t v[2] = { (int64_t)d->base.session, bf_now_ns() };
    int e = sq_wbegin(d, false);
    if (e == 0)
        e = sq_wrun(d, W_SESSION_ORPHANS, 2, v, "ending the session");
    if (e == 0)
        e = sq_wrun(d, W_SESSION_UNHOLD, 1, v, "ending the session");
    if (e == 0)
        e = sq_wrun(d, W_SESSION_UNPIN, 1, v, "ending the session");
    if (e == 0)
        e = sq_wrun(d, W_SESSION_DEL, 1, v, "ending the session");
    if (sq_wend(d, false, e) < 0)
        bf_db_log(&d->base, "cannot end the session cleanly: the others clean up after it");
}

/* Whether any session that writer statement `which` (with parameter 1 =
 * arg) lists is live. */
static int any_alive(struct sq_db *d, int which, int64_t arg, bool *alive)
{
    sqlite3_stmt *st = d->ws[which];
    int rc;
    *alive = false;
    sqlite3_bind_int64(st, 1, arg);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (sq_session_alive(d, (uint64_t)sqlite3_column_int64(st, 0)))
            *alive = true;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(d, d->w, rc, "looking at the sessions");
}

int sq_alone(struct sq_db *d, bool *alone)
{
    bool others;
    int e = any_alive(d, W_OTHERS, (int64_t)d->base.session, &others);
    *alone = !others;
    return e;
}

int sq_held(struct sq_db *d, uint64_t id, bool *held)
{
    return any_alive(d, W_HOLDERS, (int64_t)id, held);
}

int sq_purge_unheld(struct sq_db *d, uint64_t id)
{
    sqlite3_stmt *st = d->ws[W_NAMELESS];
    bool held = false;
    sqlite3_bind_int64(st, 1, (int64_t)id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_DONE)
        return 0; /* named, or gone */
    if (rc != SQLITE_ROW)
        return sq_fail(d, d->w, rc, "looking a file up");
    bool keep = false;
    int e = sq_held(d, id, &held);
    if (e == 0 && !held)
        e = sq_history_keeps(d, id, &keep); /* its name went after history_from */
    if (e < 0 || held || keep)
        return e;
    /* Its contents to the housekeeping (a big file's would take long to
     * delete here), then the versions, states, holds of dead sessions and
     * row. */
    int64_t v[2] = { (int64_t)id, bf_now_ns() };
    e = sq_wrun(d, W_PURGE_GARBAGE, 2, v, "deleting a nameless file");
    static const int steps[] = { W_PURGE_VERSIONS, W_PURGE_STATES, W_PURGE_XATTRS, W_PURGE_HOLDS,
                                 W_PURGE_FILE };
    for (size_t i = 0; e == 0 && i < sizeof(steps) / sizeof(steps[0]); i++)
        e = sq_wrun(d, steps[i], 1, v, "deleting a nameless file");
    return e;
}

int sq_purge_durable(struct sq_db *d, uint64_t id)
{
    int e = sq_wbegin(d, true);
    if (e < 0)
        return e;
    return sq_wend(d, true, sq_purge_unheld(d, id));
}

/* ---- the watcher's reads ------------------------------------------------------ */

static const char *const watch_sql[V_NSTMT] = {
    [V_DATA_VERSION] = "PRAGMA data_version",
    [V_BEGIN] = "BEGIN",
    [V_COMMIT] = "COMMIT",
    [V_META] = "SELECT value FROM meta WHERE key=?1",
    [V_LOG] = "SELECT serial, session, kind, file, file2, time_ns, size, trunc, blocks, name, "
              "name2, flags FROM commit_log WHERE serial>?1 ORDER BY serial LIMIT ?2",
};

/* The watcher's connection, opened at its first use. */
static int watch_open(struct sq_db *d)
{
    if (d->wc)
        return 0;
    int rc = sq_open_conn(d, d->rpath, d->rflags, &d->wc);
    if (rc == SQLITE_OK)
        rc = sq_prepare_all(d->wc, watch_sql, d->vs, V_NSTMT);
    if (rc != SQLITE_OK) {
        int e = sq_fail(d, d->wc, rc, "opening the watcher's connection");
        sq_watch_close(d);
        return e;
    }
    return 0;
}

void sq_watch_close(struct sq_db *d)
{
    sq_finalize_all(d->vs, V_NSTMT);
    sqlite3_close(d->wc);
    d->wc = NULL;
    if (d->inotify >= 0)
        close(d->inotify); /* not the database file: no lock of SQLite's is lost */
    d->inotify = -1;
}

/* Every commit writes the -wal (the database is in WAL mode, and the file
 * stays while a connection of ours is open): a modification of it is the
 * sign. An immutable database (read-only, no -wal) never changes. */
int sq_change_fd(bf_db *db)
{
    struct sq_db *d = SQ(db);
    char wal[PATH_MAX];
    if (d->inotify >= 0 || (d->rflags & SQLITE_OPEN_URI))
        return d->inotify;
    if ((size_t)snprintf(wal, sizeof(wal), "%s-wal", d->path) >= sizeof(wal))
        return -1;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd >= 0 && inotify_add_watch(fd, wal, IN_MODIFY) < 0) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        bf_db_log(db, "cannot watch %s (%s): polling", wal, strerror(errno));
    d->inotify = fd;
    return fd;
}

int sq_changed(bf_db *db, bool *yes)
{
    struct sq_db *d = SQ(db);
    char events[4096];
    while (d->inotify >= 0 && read(d->inotify, events, sizeof(events)) > 0)
        ; /* drained: data_version says what happened */
    int e = watch_open(d);
    if (e < 0)
        return e;
    sqlite3_stmt *st = d->vs[V_DATA_VERSION];
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return sq_fail(d, d->wc, rc, "polling for changes");
    *yes = v != d->data_version;
    d->data_version = v;
    return 0;
}

static int watch_meta(struct sq_db *d, const char *key, uint64_t *v)
{
    int64_t x;
    int rc = sq_step_int(d->vs[V_META], key, &x);
    *v = (uint64_t)x;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_fail(d, d->wc, rc, "reading meta");
}

/* Decode the log row st stands on into rec (ranges: *ranges, malloc'd). A
 * row whose blocks cannot be decoded says "every block may have changed"
 * (trunc 0), with a log line. */
static int decode_row(struct sq_db *d, sqlite3_stmt *st, struct bf_commit_rec *rec,
                      struct bf_blkrange **ranges)
{
    memset(rec, 0, sizeof(*rec));
    rec->serial = (uint64_t)sqlite3_column_int64(st, 0);
    rec->session = (uint64_t)sqlite3_column_int64(st, 1);
    rec->kind = (enum bf_commit_kind)sqlite3_column_int(st, 2);
    rec->file = (uint64_t)sqlite3_column_int64(st, 3);
    rec->file2 = (uint64_t)sqlite3_column_int64(st, 4);
    rec->time_ns = sqlite3_column_int64(st, 5);
    rec->write.serial = rec->serial;
    rec->write.size_changed = sqlite3_column_type(st, 6) != SQLITE_NULL;
    rec->write.size = (uint64_t)sqlite3_column_int64(st, 6);
    rec->write.trunc = sqlite3_column_type(st, 7) == SQLITE_NULL
                           ? UINT64_MAX
                           : (uint64_t)sqlite3_column_int64(st, 7);
    rec->name = (const char *)sqlite3_column_text(st, 9);
    rec->name2 = (const char *)sqlite3_column_text(st, 10);
    rec->rename_flags = (unsigned)sqlite3_column_int(st, 11);
    *ranges = NULL;
    const void *blob = sqlite3_column_blob(st, 8);
    int e = bf_ranges_decode(blob, (size_t)sqlite3_column_bytes(st, 8), ranges,
                             &rec->write.nranges);
    if (e == -EPROTO) {
        bf_db_log(&d->base,
                  "commit %llu: its changed blocks cannot be read: taking every block "
                  "of file %llu for changed",
                  (unsigned long long)rec->serial, (unsigned long long)rec->file);
        rec->write.trunc = 0;
        rec->write.nranges = 0;
        e = 0;
    }
    rec->write.ranges = *ranges;
    return e;
}

int sq_log_read(bf_db *db, uint64_t after, size_t max,
                int (*fn)(void *arg, const struct bf_commit_rec *rec), void *arg, uint64_t *current,
                uint64_t *trimmed)
{
    struct sq_db *d = SQ(db);
    int e = watch_open(d);
    if (e < 0)
        return e;
    int rc = sq_exec(d->vs[V_BEGIN]);
    if (rc != SQLITE_OK)
        return sq_fail(d, d->wc, rc, "beginning a read");
    e = watch_meta(d, "serial", current);
    if (e == 0)
        e = watch_meta(d, "log_trimmed", trimmed);
    sqlite3_stmt *st = d->vs[V_LOG];
    sqlite3_bind_int64(st, 1, (int64_t)after);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    while (e == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct bf_commit_rec rec;
        struct bf_blkrange *ranges;
        e = decode_row(d, st, &rec, &ranges);
        if (e == 0)
            e = fn(arg, &rec);
        free(ranges);
    }
    if (e == 0 && rc != SQLITE_DONE)
        e = sq_fail(d, d->wc, rc, "reading the commit log");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    sq_exec(d->vs[V_COMMIT]);
    return e;
}

/* ---- the housekeeping ----------------------------------------------------------- */

/* What the read phase found. */
struct trim_plan {
    uint64_t serial, log_trimmed, collected, logmin; /* logmin 0: no row */
    uint64_t lowest;                                 /* the slowest live session's applied */
    uint64_t from;  /* history_from, as the history's step advanced it */
    uint64_t bound; /* versions superseded at or before it go: min(lowest, from) */
    uint64_t *dead; /* dead sessions */
    size_t ndead;
    uint64_t *nameless; /* nameless files */
    size_t nnameless;
    bool old, garbage; /* versions to collect, contents to delete */
    int64_t cutoff;    /* garbage since then or before is deleted */
};

static void plan_free(struct trim_plan *p)
{
    free(p->dead);
    free(p->nameless);
}

/* Append v to the array *a of *n. -ENOMEM. */
static int push_u64(uint64_t **a, size_t *n, uint64_t v)
{
    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4 ...: grow to the next power of two */
        uint64_t *p = realloc(*a, (*n ? 2 * *n : 1) * sizeof(*p));
        if (!p)
            return -ENOMEM;
        *a = p;
    }
    (*a)[(*n)++] = v;
    return 0;
}

/* Reader statement `which` with integer parameter 1 = arg (if bind), for
 * one integer: *v (0 if no row or NULL). */
static int reader_one(struct sq_db *d, struct sq_reader *r, int which, int64_t arg, bool bind,
                      uint64_t *v)
{
    int64_t x;
    if (bind)
        sqlite3_bind_int64(r->st[which], 1, arg);
    int rc = sq_step_int(r->st[which], NULL, &x);
    *v = (uint64_t)x;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_fail(d, r->c, rc, "housekeeping");
}

/* A meta value, on a reader. */
static int reader_meta_u64(struct sq_db *d, struct sq_reader *r, const char *key, uint64_t *v)
{
    int64_t x;
    int e = sq_reader_meta(d, r, key, &x);
    *v = (uint64_t)x;
    return e;
}

/* The read phase: one read transaction. */
static int trim_look(struct sq_db *d, uint64_t applied, struct trim_plan *p)
{
    struct sq_reader *r;
    int e = sq_reader_get(d, &r);
    if (e < 0)
        return e;
    int rc = sq_exec(r->st[R_BEGIN]);
    if (rc != SQLITE_OK)
        e = sq_fail(d, r->c, rc, "beginning a read");
    if (e == 0)
        e = reader_meta_u64(d, r, "serial", &p->serial);
    if (e == 0)
        e = reader_meta_u64(d, r, "log_trimmed", &p->log_trimmed);
    if (e == 0)
        e = reader_meta_u64(d, r, "collected", &p->collected);
    p->lowest = applied < p->serial ? applied : p->serial;
    sqlite3_stmt *st = r->st[R_SESSIONS];
    while (e == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
        uint64_t their = (uint64_t)sqlite3_column_int64(st, 1);
        if (id == d->base.session)
            continue; /* ours: `applied`, fresher than its row */
        if (!sq_session_alive(d, id))
            e = push_u64(&p->dead, &p->ndead, id);
        else if (their < p->lowest)
            p->lowest = their;
    }
    if (e == 0 && rc != SQLITE_DONE)
        e = sq_fail(d, r->c, rc, "looking at the sessions");
    sqlite3_reset(st);
    uint64_t yes = 0;
    p->bound = p->lowest < p->from ? p->lowest : p->from;
    if (e == 0)
        e = reader_one(d, r, R_LOGMIN, 0, false, &p->logmin);
    if (e == 0 && (e = reader_one(d, r, R_HASOLD, (int64_t)p->bound, true, &yes)) == 0)
        p->old = yes;
    if (e == 0 && (e = reader_one(d, r, R_HASGARBAGE, p->cutoff, true, &yes)) == 0)
        p->garbage = yes;
    st = r->st[R_NAMELESS];
    sqlite3_bind_int64(st, 1, (int64_t)p->from);
    while (e == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
        e = push_u64(&p->nameless, &p->nnameless, (uint64_t)sqlite3_column_int64(st, 0));
    if (e == 0 && rc != SQLITE_DONE)
        e = sq_fail(d, r->c, rc, "looking for nameless files");
    sqlite3_reset(st);
    sq_exec(r->st[R_COMMIT]);
    sq_reader_put(d, r);
    return e;
}

/* Step 2: clean up after dead session id. */
static int trim_dead(struct sq_db *d, uint64_t id)
{
    int64_t v[2] = { (int64_t)id, bf_now_ns() };
    int e = sq_wbegin(d, false);
    if (e < 0)
        return e;
    e = sq_wrun(d, W_SESSION_ORPHANS, 2, v, "cleaning up after a dead session");
    if (e == 0)
        e = sq_wrun(d, W_SESSION_UNHOLD, 1, v, "cleaning up after a dead session");
    if (e == 0)
        e = sq_wrun(d, W_SESSION_UNPIN, 1, v, "cleaning up after a dead session");
    if (e == 0)
        e = sq_wrun(d, W_SESSION_DEL, 1, v, "cleaning up after a dead session");
    e = sq_wend(d, false, e);
    if (e == 0)
        bf_db_log(&d->base,
                  "session %llu is dead (its process ended without closing it): "
                  "cleaned up after it",
                  (unsigned long long)id);
    return e;
}

/* Step 3: log rows <= bound, SQ_LOG_TRIM_ROWS per transaction. */
static int trim_log(struct sq_db *d, struct trim_plan *p, uint64_t bound, int64_t deadline)
{
    int e = 0;
    uint64_t from = p->logmin;
    while (e == 0 && from && from <= bound && bf_mono_ns() < deadline) {
        uint64_t upto = bound - from >= SQ_LOG_TRIM_ROWS ? from + SQ_LOG_TRIM_ROWS - 1 : bound;
        int64_t v[1] = { (int64_t)upto };
        if ((e = sq_wbegin(d, false)) < 0)
            break;
        e = sq_wrun(d, W_LOG_TRIM, 1, v, "trimming the log");
        if (e == 0 && upto > p->log_trimmed)
            e = sq_wmeta_set(d, "log_trimmed", (int64_t)upto);
        if ((e = sq_wend(d, false, e)) == 0 && upto > p->log_trimmed)
            p->log_trimmed = upto;
        from = upto + 1;
    }
    return e;
}

/* Step 5, one transaction: versions superseded at or before p->bound go,
 * their contents become garbage. *more: some may be left. Durable: an
 * upload may overwrite that garbage at once (the block file is written
 * outside the transactions), so the versions must not come back after a
 * crash of the machine. */
static int trim_versions(struct sq_db *d, struct trim_plan *p, bool *more)
{
    int e = sq_wbegin(d, true);
    if (e < 0)
        return e;
    int64_t start = bf_mono_ns();
    /* First: a load as of a serial before this finds nothing and says so. */
    if (p->bound > p->collected && (e = sq_wmeta_set(d, "collected", (int64_t)p->bound)) == 0)
        p->collected = p->bound;
    *more = false;
    while (e == 0 && bf_mono_ns() - start < SQ_TRIM_TX_NS) {
        int64_t rows[SQ_TRIM_ROWS][5];
        size_t n = 0;
        sqlite3_stmt *st = d->ws[W_OLD];
        sqlite3_bind_int64(st, 1, (int64_t)p->bound);
        sqlite3_bind_int64(st, 2, SQ_TRIM_ROWS);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            for (int c = 0; c < 5; c++)
                rows[n][c] = sqlite3_column_int64(st, c); /* content NULL: 0 */
            n++;
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE) {
            e = sq_fail(d, d->w, rc, "collecting versions");
            break;
        }
        for (size_t i = 0; e == 0 && i < n; i++) {
            e = sq_wrun(d, W_DELVERSION, 3, rows[i], "collecting versions");
            if (e == 0 && rows[i][3])
                e = sq_garbage(d, rows[i][3], (uint32_t)rows[i][4]);
        }
        *more = n == SQ_TRIM_ROWS;
        if (!*more)
            break;
    }
    return sq_wend(d, true, e);
}

/* Step 7, one transaction: delete garbage contents; once it has
 * committed, punch their extents out of the block file (a load that read
 * one meanwhile finds its row gone, and looks again); durable, so that
 * no row comes back after a crash of the machine over a punched extent.
 * *more: some may be left. */
static int trim_garbage(struct sq_db *d, int64_t cutoff, bool *more)
{
    int e = sq_wbegin(d, true);
    if (e < 0)
        return e;
    int64_t start = bf_mono_ns();
    int64_t(*holes)[3] = NULL; /* off, len, gen */
    size_t nholes = 0, capholes = 0;
    *more = false;
    while (e == 0 && bf_mono_ns() - start < SQ_TRIM_TX_NS) {
        int64_t ids[SQ_TRIM_ROWS][3]; /* content, session 0, bytes */
        size_t n = 0;
        sqlite3_stmt *st = d->ws[W_GARBAGE_LIST];
        sqlite3_bind_int64(st, 1, SQ_TRIM_ROWS);
        sqlite3_bind_int64(st, 2, cutoff);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            ids[n][0] = sqlite3_column_int64(st, 0);
            ids[n][1] = 0;
            ids[n][2] = sqlite3_column_int64(st, 1);
            n++;
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE) {
            e = sq_fail(d, d->w, rc, "deleting garbage");
            break;
        }
        /* One at a time, checking the time: a content may be big. */
        size_t i;
        for (i = 0; e == 0 && i < n && bf_mono_ns() - start < SQ_TRIM_TX_NS; i++) {
            if (nholes == capholes) {
                size_t cap = capholes ? 2 * capholes : SQ_TRIM_ROWS;
                int64_t(*v)[3] = realloc(holes, cap * sizeof(*v));
                if (!v) {
                    e = -ENOMEM;
                    break;
                }
                holes = v;
                capholes = cap;
            }
            e = sq_delete_content(d, ids[i][0], holes[nholes]);
            nholes += e == 0 && holes[nholes][1] > 0;
            if (e == 0)
                e = sq_wrun(d, W_LINKED, 3, ids[i], "deleting garbage");
        }
        *more = i < n || n == SQ_TRIM_ROWS;
        if (!*more)
            break;
    }
    e = sq_wend(d, true, e);
    if (e == 0 && nholes) {
        /* Free for new uploads only once punched out (a punch after a
         * reuse would erase the new bytes). Lost in a crash between the
         * two transactions: those offsets are never used again. */
        sq_blocks_punch(d, (const int64_t(*)[3])holes, nholes);
        if ((e = sq_wbegin(d, false)) == 0)
            e = sq_wend(d, false, sq_free_extents(d, (const int64_t(*)[3])holes, nholes));
    }
    free(holes);
    return e;
}

/* Record the session's applied serial in its row (step 1). */
static int trim_applied(struct sq_db *d, uint64_t applied)
{
    if (applied == d->applied_recorded)
        return 0;
    int64_t v[2] = { (int64_t)d->base.session, (int64_t)applied };
    int e = sq_wbegin(d, false);
    if (e == 0)
        e = sq_wrun(d, W_SESSION_APPLIED, 2, v, "recording the applied serial");
    e = sq_wend(d, false, e);
    if (e == 0)
        d->applied_recorded = applied;
    return e;
}

int sq_trim(bf_db *db, uint64_t applied, bool all)
{
    struct sq_db *d = SQ(db);
    /* The watcher's turn: a few transactions, and the garbage uploads may
     * still reuse is kept; to the end: everything. */
    int64_t deadline = all ? INT64_MAX : bf_mono_ns() + 5 * SQ_TRIM_TX_NS;
    struct trim_plan p = { .cutoff = all ? INT64_MAX : bf_now_ns() - SQ_GARBAGE_KEEP_NS };
    bool more;
    if (!d->w)
        return 0;
    /* The history first: what the steps below may collect depends on it. */
    int e = sq_history_advance(d, all, &p.from);
    if (e == 0)
        e = trim_look(d, applied, &p);
    if (e == 0)
        e = trim_applied(d, applied);
    for (size_t i = 0; e == 0 && i < p.ndead && bf_mono_ns() < deadline; i++)
        e = trim_dead(d, p.dead[i]);
    if (e == 0 && p.ndead)
        p.garbage = true; /* their uploads */
    /* The log: up to the slowest session, and at most log_keep rows beyond
     * it. */
    uint64_t bound = p.lowest;
    if (p.serial > d->base.opt.log_keep && p.serial - d->base.opt.log_keep > bound)
        bound = p.serial - d->base.opt.log_keep;
    if (bound >= p.from)
        bound = p.from ? p.from - 1 : 0; /* the history's rows stay (file_log) */
    if (e == 0 && bound)
        e = trim_log(d, &p, bound, deadline);
    more = true;
    while (e == 0 && more && bf_mono_ns() < deadline)
        e = sq_history_trim_states(d, p.from, &more);
    more = p.old;
    while (e == 0 && more && bf_mono_ns() < deadline) {
        e = trim_versions(d, &p, &more);
        p.garbage = true;
    }
    for (size_t i = 0; e == 0 && i < p.nnameless && bf_mono_ns() < deadline; i++) {
        e = sq_purge_durable(d, p.nameless[i]);
        p.garbage = true;
    }
    more = p.garbage;
    while (e == 0 && more && bf_mono_ns() < deadline)
        e = trim_garbage(d, p.cutoff, &more);
    plan_free(&p);
    return e;
}
