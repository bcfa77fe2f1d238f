/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the watcher, how a session learns of the
 * database's commits (backend.h: bf_db_watch, bf_db_sync, bf_db_applied;
 * docs/COHERENCE.md section 6).
 *
 * One thread per session, started by bf_db_watch. It waits (poll(2)) for a
 * sign of a change:
 *  - a kick (bf_db_kick, on w->kickfd): the memory engine kicks at every
 *    commit; bf_db_sync and the stop kick too;
 *  - for an engine that must poll, a look at engine->changed (SQLite:
 *    PRAGMA data_version) every opt.watch_interval_ms while commits come,
 *    backing off (doubling) while none does, to BF_WATCH_IDLE_FACTOR times
 *    that — or to BF_TRIM_INTERVAL_MS when the engine also gives a
 *    descriptor that wakes the watcher at a possible change
 *    (engine->change_fd; SQLite: inotify on the -wal), after which it
 *    looks again at the fast pace (the change may become visible a little
 *    after the write that signalled it). Each wake-up costs tens of
 *    microseconds of CPU on a VM: an idle watcher wakes a few times a
 *    second at most.
 * Then it catches up:
 *
 *   1. read up to WATCH_BATCH commit-log rows past `applied` through
 *      engine->log_read, copying them (no engine snapshot or lock is held
 *      while the listener runs: it may block for long);
 *   2. if the log was trimmed past `applied` (applied < trimmed), the rows
 *      in between are gone: deliver one BF_COMMIT_RESET at the current
 *      serial instead, applied = it, and read on from there;
 *   3. else deliver each row, in serial order, own rows flagged, and after
 *      each listener call, applied = its serial (sync waiters wake);
 *   4. a full batch means more may follow: back to 1.
 *
 * Then, at most every BF_TRIM_INTERVAL_MS (BF_TRIM_IDLE_FACTOR times that
 * after a trim that followed no commit) and never in a read-only session,
 * the housekeeping: engine->trim(applied), which also records applied in
 * the database (where the other sessions' trims read it); bf_db_trim runs
 * it at once (w->trim_lock keeps the two apart).
 *
 * States of the watcher (w->state), each change under w->lock:
 *   IDLE     --bf_db_watch-->        RUNNING    the thread runs
 *   RUNNING  --bf_watch_stop-->      STOPPING   the thread ends after the
 *                                               listener call it is in
 *                                               (bf_db_unwatch, bf_db_close)
 *   STOPPING --thread joined-->      STOPPED
 *   IDLE     --bf_watch_stop-->      STOPPED    (never watched)
 *
 * Locking: w->lock is a leaf (engine.h): held to change the state, applied,
 * the kick and the round count, and to wait on w->cond (sync waiters);
 * never across an engine call, the listener or the watcher's own wait.
 * Only the watcher thread changes `applied`, so it reads it without the
 * lock.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "backends/engine.h"

#define WATCH_BATCH 256       /* log rows read at once */
#define BF_TRIM_IDLE_FACTOR 4 /* see the top */

enum bf_watch_state {
    BF_WATCH_IDLE,
    BF_WATCH_RUNNING,
    BF_WATCH_STOPPING,
    BF_WATCH_STOPPED,
};

struct bf_watch {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; broadcast at every change below */
    enum bf_watch_state state;
    pthread_t thread;
    void (*fn)(void *arg, const struct bf_commit_rec *rec);
    void *arg;
    uint64_t applied;          /* RUNNING on: delivered up to here */
    bool kicked;               /* look at the log now (a commit, or a sync request) */
    uint64_t rounds;           /* catch-up rounds done */
    int last_err;              /* of the last round */
    pthread_mutex_t trim_lock; /* one engine->trim at a time (bf_db_trim, the watcher) */
    int kickfd;                /* eventfd: written at every kick (the watcher polls it) */
};

/* Copies of log rows, as read (the strings and ranges are owned). */
struct batch {
    struct bf_commit_rec *v;
    size_t n, cap;
};

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free((void *)b->v[i].write.ranges);
        free((void *)b->v[i].name);
        free((void *)b->v[i].name2);
    }
    free(b->v);
    memset(b, 0, sizeof(*b));
}

/* engine->log_read's callback: keep a deep copy of rec. */
static int batch_add(void *arg, const struct bf_commit_rec *rec)
{
    struct batch *b = arg;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 16;
        struct bf_commit_rec *v = realloc(b->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        b->v = v;
        b->cap = cap;
    }
    struct bf_commit_rec *c = &b->v[b->n];
    *c = *rec;
    c->write.ranges = NULL;
    c->name = c->name2 = NULL;
    size_t nr = rec->write.nranges;
    struct bf_blkrange *ranges = nr ? malloc(nr * sizeof(*ranges)) : NULL;
    char *name = rec->name ? strdup(rec->name) : NULL;
    char *name2 = rec->name2 ? strdup(rec->name2) : NULL;
    if ((nr && !ranges) || (rec->name && !name) || (rec->name2 && !name2)) {
        free(ranges);
        free(name);
        free(name2);
        return -ENOMEM;
    }
    if (nr)
        memcpy(ranges, rec->write.ranges, nr * sizeof(*ranges));
    c->write.ranges = ranges;
    c->name = name;
    c->name2 = name2;
    b->n++;
    return 0;
}

/* Wake the watcher from its wait (w->kicked or the state says why). */
static void wake(struct bf_watch *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->kickfd, &one, sizeof(one));
    (void)n; /* only fails when the counter is full: it is awake anyway */
}

/* Wait up to ms for a kick or the engine's descriptor cfd (-1: none);
 * *event: cfd fired. */
static void watch_wait(struct bf_watch *w, int cfd, unsigned ms, bool *event)
{
    struct pollfd p[2] = { { w->kickfd, POLLIN, 0 }, { cfd, POLLIN, 0 } };
    uint64_t count;
    int n = poll(p, cfd >= 0 ? 2 : 1, (int)ms);
    if (n > 0 && (p[0].revents & POLLIN)) {
        ssize_t r = read(w->kickfd, &count, sizeof(count));
        (void)r; /* EAGAIN: drained by another read */
    }
    *event = n > 0 && cfd >= 0 && (p[1].revents & POLLIN);
}

/* The watcher thread: applied = s (sync waiters wake). */
static void set_applied(struct bf_watch *w, uint64_t s)
{
    pthread_mutex_lock(&w->lock);
    w->applied = s;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static bool stopping(struct bf_watch *w)
{
    pthread_mutex_lock(&w->lock);
    bool stop = w->state != BF_WATCH_RUNNING;
    pthread_mutex_unlock(&w->lock);
    return stop;
}

/* Deliver every commit past applied (steps 1-4 at the top). Watcher
 * thread only. */
static int catch_up(bf_db *db)
{
    struct bf_watch *w = db->watch;
    for (;;) {
        struct batch b = { 0 };
        uint64_t current = 0, trimmed = 0;
        int r = db->ops->log_read(db, w->applied, WATCH_BATCH, batch_add, &b, &current, &trimmed);
        if (r < 0) {
            batch_free(&b);
            return r;
        }
        if (w->applied < trimmed) {
            /* The rows past applied are gone: the session lost track. */
            struct bf_commit_rec reset = { .serial = current, .kind = BF_COMMIT_RESET };
            bf_db_log(db,
                      "lost track of the commits %llu..%llu (trimmed from the log): "
                      "resetting at %llu",
                      (unsigned long long)w->applied + 1, (unsigned long long)trimmed,
                      (unsigned long long)current);
            w->fn(w->arg, &reset);
            set_applied(w, current);
            batch_free(&b);
            if (stopping(w))
                return 0;
            continue;
        }
        size_t n = b.n;
        for (size_t i = 0; i < n; i++) {
            struct bf_commit_rec *rec = &b.v[i];
            BF_CHECK(rec->serial > w->applied, "log row %llu after %llu",
                     (unsigned long long)rec->serial, (unsigned long long)w->applied);
            rec->own = db->session != 0 && rec->session == db->session;
            rec->write.serial = rec->serial;
            w->fn(w->arg, rec);
            set_applied(w, rec->serial);
            if (stopping(w)) {
                batch_free(&b);
                return 0;
            }
        }
        batch_free(&b);
        if (n < WATCH_BATCH)
            return 0;
    }
}

/* The session's housekeeping, with the applied serial now. */
static int trim(bf_db *db, bool all)
{
    struct bf_watch *w = db->watch;
    pthread_mutex_lock(&w->trim_lock);
    int r = db->ops->trim(db, bf_db_applied(db), all);
    pthread_mutex_unlock(&w->trim_lock);
    return r;
}

int bf_db_trim(bf_db *db)
{
    return (db->flags & BF_DB_RDONLY) ? 0 : trim(db, true);
}

static void *watch_main(void *arg)
{
    bf_db *db = arg;
    struct bf_watch *w = db->watch;
    const int64_t trim_ns = (int64_t)BF_TRIM_INTERVAL_MS * 1000000;
    int64_t next_trim = bf_mono_ns() + trim_ns;
    uint64_t applied_at_trim = w->applied;
    int logged = 0;     /* the error last logged: each new one is logged once */
    bool retry = false; /* the last round failed: look again in the next */
    /* How long to wait (see the top): fast_ms after a sign of change,
     * doubling up to slow_ms while there is none. */
    int cfd = !db->ops->notifies && db->ops->change_fd ? db->ops->change_fd(db) : -1;
    unsigned fast_ms = db->ops->notifies ? BF_TRIM_INTERVAL_MS : db->opt.watch_interval_ms;
    unsigned slow_ms = db->ops->notifies || cfd >= 0 ? BF_TRIM_INTERVAL_MS
                                                     : fast_ms * BF_WATCH_IDLE_FACTOR;
    unsigned wait_ms = fast_ms;

    pthread_mutex_lock(&w->lock);
    while (w->state == BF_WATCH_RUNNING) {
        bool kicked = w->kicked, event = false;
        pthread_mutex_unlock(&w->lock);
        if (!kicked)
            watch_wait(w, cfd, wait_ms, &event);
        pthread_mutex_lock(&w->lock);
        if (w->state != BF_WATCH_RUNNING)
            break;
        bool look = w->kicked || retry;
        w->kicked = false;
        pthread_mutex_unlock(&w->lock);

        int r = 0;
        if (!db->ops->notifies) {
            bool yes = false;
            r = db->ops->changed(db, &yes);
            look = look || yes;
        }
        if (r == 0 && look)
            r = catch_up(db);
        wait_ms = look || event ? fast_ms : wait_ms * 2 < slow_ms ? wait_ms * 2 : slow_ms;
        if (r < 0 && r != logged)
            bf_db_log(db, "watcher: cannot read the commit log (%s); trying again", strerror(-r));
        logged = r;
        retry = r < 0;
        if (!(db->flags & BF_DB_RDONLY) && bf_mono_ns() >= next_trim) {
            int t = trim(db, false);
            if (t < 0)
                bf_db_log(db, "housekeeping failed (%s); trying again later", strerror(-t));
            /* quiet since the last one: the next in a while (dead sessions
             * and old garbage are all it can find) */
            bool quiet = w->applied == applied_at_trim;
            applied_at_trim = w->applied;
            next_trim = bf_mono_ns() + (quiet ? BF_TRIM_IDLE_FACTOR : 1) * trim_ns;
        }

        pthread_mutex_lock(&w->lock);
        w->rounds++;
        w->last_err = r;
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int bf_watch_init(bf_db *db)
{
    struct bf_watch *w = calloc(1, sizeof(*w));
    pthread_condattr_t ca;
    if (!w)
        return -ENOMEM;
    if (pthread_condattr_init(&ca) != 0) {
        free(w);
        return -ENOMEM;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int r = pthread_cond_init(&w->cond, &ca) == 0 ? 0 : -ENOMEM;
    pthread_condattr_destroy(&ca);
    if (r == 0 && pthread_mutex_init(&w->lock, NULL) != 0) {
        pthread_cond_destroy(&w->cond);
        r = -ENOMEM;
    }
    if (r == 0 && pthread_mutex_init(&w->trim_lock, NULL) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
        r = -ENOMEM;
    }
    if (r == 0 && (w->kickfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        r = -errno;
        pthread_mutex_destroy(&w->trim_lock);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
    }
    if (r < 0) {
        free(w);
        return r;
    }
    w->state = BF_WATCH_IDLE;
    db->watch = w;
    return 0;
}

void bf_watch_stop(bf_db *db)
{
    struct bf_watch *w = db->watch;
    pthread_mutex_lock(&w->lock);
    enum bf_watch_state was = w->state;
    if (was == BF_WATCH_RUNNING) {
        w->state = BF_WATCH_STOPPING; /* RUNNING -> STOPPING */
        pthread_cond_broadcast(&w->cond);
        wake(w);
    }
    pthread_mutex_unlock(&w->lock);
    if (was == BF_WATCH_RUNNING)
        pthread_join(w->thread, NULL);
    pthread_mutex_lock(&w->lock);
    w->state = BF_WATCH_STOPPED; /* STOPPING (joined) / IDLE -> STOPPED */
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void bf_watch_fini(bf_db *db)
{
    struct bf_watch *w = db->watch;
    if (!w)
        return;
    BF_ASSERT(w->state == BF_WATCH_IDLE || w->state == BF_WATCH_STOPPED);
    close(w->kickfd);
    pthread_mutex_destroy(&w->trim_lock);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
    db->watch = NULL;
}

void bf_db_kick(bf_db *db)
{
    struct bf_watch *w = db->watch;
    pthread_mutex_lock(&w->lock);
    w->kicked = true;
    pthread_mutex_unlock(&w->lock);
    wake(w);
}

int bf_db_watch(bf_db *db, void (*fn)(void *arg, const struct bf_commit_rec *rec), void *arg)
{
    struct bf_watch *w = db->watch;
    sigset_t all, old;
    if (!fn)
        return -EINVAL;
    pthread_mutex_lock(&w->lock);
    if (w->state != BF_WATCH_IDLE) {
        pthread_mutex_unlock(&w->lock);
        return -EBUSY;
    }
    w->fn = fn;
    w->arg = arg;
    w->applied = db->start_serial;
    w->state = BF_WATCH_RUNNING; /* IDLE -> RUNNING */
    /* The thread takes no signal: the daemon's signal thread does. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&w->thread, NULL, watch_main, db);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        w->state = BF_WATCH_IDLE; /* RUNNING -> IDLE: no thread */
    pthread_mutex_unlock(&w->lock);
    return r == 0 ? 0 : -r;
}

void bf_db_unwatch(bf_db *db)
{
    bf_watch_stop(db);
}

int bf_db_sync(bf_db *db, uint64_t *serial)
{
    struct bf_watch *w = db->watch;
    uint64_t current;
    int r = db->ops->serial_now(db, &current);
    if (r < 0)
        return r;
    pthread_mutex_lock(&w->lock);
    if (!BF_CHECK(w->state != BF_WATCH_RUNNING || !pthread_equal(w->thread, pthread_self()),
                  "bf_db_sync called from the watcher's listener")) {
        pthread_mutex_unlock(&w->lock);
        return -EDEADLK;
    }
    if (w->state == BF_WATCH_RUNNING) {
        w->kicked = true;
        wake(w);
        /* The round running now may have read the log before `current`
         * was committed; the one after it surely reads it. */
        uint64_t asked = w->rounds;
        while (w->state == BF_WATCH_RUNNING && w->applied < current && r == 0) {
            if (w->rounds >= asked + 2 && w->last_err < 0)
                r = w->last_err;
            else
                pthread_cond_wait(&w->cond, &w->lock);
        }
        if (r == 0 && w->applied < current)
            r = -ESHUTDOWN;
    } else if (w->state != BF_WATCH_IDLE) {
        r = -ESHUTDOWN;
    }
    pthread_mutex_unlock(&w->lock);
    if (r == 0)
        *serial = current;
    return r;
}

uint64_t bf_db_applied(bf_db *db)
{
    struct bf_watch *w = db->watch;
    pthread_mutex_lock(&w->lock);
    uint64_t s = w->state == BF_WATCH_IDLE ? db->start_serial : w->applied;
    pthread_mutex_unlock(&w->lock);
    return s;
}
