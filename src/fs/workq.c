/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the worker queue of the long requests (see workq.h).
 *
 * Users with queued or running jobs sit in a ring; `cursor` is where the
 * next free worker starts looking, and moves past the user it served, so
 * that the users take turns. Running file keys are kept in a small array
 * (at most one per worker). A job is picked when its user is under its
 * running limit and no job of its file runs; the first such job of the
 * first such user in turn is taken. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#include "fs/workq.h"
#include "util/util.h"
#include "util/debug.h"

struct wq_user {
    uid_t uid;
    unsigned queued, running;
    struct bf_work *head, *tail; /* its queued jobs, in submission order */
    struct wq_user *next;        /* the ring */
};

struct bf_workq {
    struct bf_workq_limits lim;
    pthread_mutex_t lock;
    pthread_cond_t work;    /* workers wait on it for a runnable job */
    pthread_cond_t idle;    /* drain waits on it for queued == running == 0 */
    struct wq_user *cursor; /* the ring of users, or NULL */
    unsigned queued, running;
    uint64_t *running_files; /* lim.workers slots */
    bool *slot_used;
    bool closed, stopping;
    unsigned nthreads;
    pthread_t *threads;
};

/* The user entry of uid in the ring, created if create; lock held. */
static struct wq_user *user_get(bf_workq *q, uid_t uid, bool create)
{
    struct wq_user *u = q->cursor;

    if (u) {
        do {
            if (u->uid == uid)
                return u;
            u = u->next;
        } while (u != q->cursor);
    }
    if (!create)
        return NULL;
    u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->uid = uid;
    if (q->cursor) { /* insert before the cursor: served last in this turn */
        struct wq_user *prev = q->cursor;

        while (prev->next != q->cursor)
            prev = prev->next;
        prev->next = u;
        u->next = q->cursor;
    } else {
        u->next = u;
        q->cursor = u;
    }
    return u;
}

/* Remove u from the ring and free it once it has nothing; lock held. */
static void user_put(bf_workq *q, struct wq_user *u)
{
    struct wq_user *prev = u;

    if (u->queued || u->running)
        return;
    while (prev->next != u)
        prev = prev->next;
    if (prev == u) {
        q->cursor = NULL;
    } else {
        prev->next = u->next;
        if (q->cursor == u)
            q->cursor = u->next;
    }
    free(u);
}

static bool file_running(const bf_workq *q, uint64_t file)
{
    for (unsigned i = 0; i < q->lim.workers; i++)
        if (q->slot_used[i] && q->running_files[i] == file)
            return true;
    return false;
}

/* Take the next runnable job (see the top of the file) and mark it running
 * in a slot; NULL if none. Lock held. */
static struct bf_work *pick(bf_workq *q, unsigned *slot)
{
    struct wq_user *u = q->cursor;

    if (!u)
        return NULL;
    do {
        struct bf_work *prev = NULL;

        for (struct bf_work *w = u->head; w && u->running < q->lim.max_user_running;
             prev = w, w = w->next) {
            if (file_running(q, w->file))
                continue;
            if (prev) /* queued -> running */
                prev->next = w->next;
            else
                u->head = w->next;
            if (u->tail == w)
                u->tail = prev;
            u->queued--;
            u->running++;
            q->queued--;
            q->running++;
            for (*slot = 0; q->slot_used[*slot]; (*slot)++)
                ;
            BF_ASSERT(*slot < q->lim.workers);
            q->slot_used[*slot] = true;
            q->running_files[*slot] = w->file;
            q->cursor = u->next; /* the next user's turn */
            return w;
        }
        u = u->next;
    } while (u != q->cursor);
    return NULL;
}

static void *worker_main(void *arg)
{
    bf_workq *q = arg;

    if (q->lim.thread_start)
        q->lim.thread_start();
    pthread_mutex_lock(&q->lock);
    for (;;) {
        struct bf_work *w = NULL;
        struct wq_user *u;
        unsigned slot = 0;

        while (!q->stopping && !(w = pick(q, &slot)))
            pthread_cond_wait(&q->work, &q->lock);
        if (!w) /* stopping: nothing is queued any more */
            break;
        u = w->user;
        pthread_mutex_unlock(&q->lock);
        w->run(w); /* w is run's now */
        pthread_mutex_lock(&q->lock);
        q->slot_used[slot] = false; /* running -> done */
        u->running--;
        q->running--;
        user_put(q, u);
        /* Another user's or the same file's job may be runnable now. */
        pthread_cond_broadcast(&q->work);
        if (!q->queued && !q->running)
            pthread_cond_broadcast(&q->idle);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

void bf_workq_stop(bf_workq *q);

int bf_workq_start(const struct bf_workq_limits *lim, bf_workq **out)
{
    bf_workq *q;
    int r = 0;

    if (!lim->workers || !lim->max_queued || !lim->max_user_queued || !lim->max_user_running)
        return -EINVAL;
    q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->lim = *lim;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->work, NULL);
    pthread_cond_init(&q->idle, NULL);
    q->running_files = calloc(lim->workers, sizeof(*q->running_files));
    q->slot_used = calloc(lim->workers, sizeof(*q->slot_used));
    q->threads = calloc(lim->workers, sizeof(*q->threads));
    if (!q->running_files || !q->slot_used || !q->threads)
        r = -ENOMEM;
    for (unsigned i = 0; r == 0 && i < lim->workers; i++) {
        r = -pthread_create(&q->threads[i], NULL, worker_main, q);
        if (r == 0)
            q->nthreads++;
    }
    if (r < 0) {
        bf_workq_stop(q);
        return r;
    }
    *out = q;
    return 0;
}

int bf_workq_submit(bf_workq *q, struct bf_work *w)
{
    struct wq_user *u;
    int r = 0;

    pthread_mutex_lock(&q->lock);
    if (q->closed) {
        r = -ESHUTDOWN;
    } else if (q->queued >= q->lim.max_queued) {
        r = -EAGAIN;
    } else {
        u = user_get(q, w->uid, true);
        if (!u)
            r = -ENOMEM;
        else if (u->queued >= q->lim.max_user_queued)
            r = -EAGAIN;
        if (r == 0) { /* -> queued */
            w->user = u;
            w->next = NULL;
            if (u->tail)
                u->tail->next = w;
            else
                u->head = w;
            u->tail = w;
            u->queued++;
            q->queued++;
            pthread_cond_signal(&q->work);
        } else if (u) {
            user_put(q, u);
        }
    }
    pthread_mutex_unlock(&q->lock);
    return r;
}

void bf_workq_close(bf_workq *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_mutex_unlock(&q->lock);
}

bool bf_workq_drain(bf_workq *q, unsigned timeout_ms)
{
    struct timespec deadline;
    bool idle;

    bf_deadline(CLOCK_REALTIME, timeout_ms, &deadline);
    pthread_mutex_lock(&q->lock);
    while ((q->queued || q->running) &&
           pthread_cond_timedwait(&q->idle, &q->lock, &deadline) != ETIMEDOUT)
        ;
    idle = !q->queued && !q->running;
    pthread_mutex_unlock(&q->lock);
    return idle;
}

void bf_workq_counts(bf_workq *q, unsigned *queued, unsigned *running)
{
    pthread_mutex_lock(&q->lock);
    *queued = q->queued;
    *running = q->running;
    pthread_mutex_unlock(&q->lock);
}

void bf_workq_stop(bf_workq *q)
{
    struct bf_work *cancelled = NULL;

    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    /* Take every queued job out (submitted -> cancelled); running ones go
     * on and end normally. */
    while (q->queued) {
        struct wq_user *u = q->cursor;
        struct bf_work *w;

        while (!u->queued)
            u = u->next;
        w = u->head;
        u->head = w->next;
        if (!u->head)
            u->tail = NULL;
        u->queued--;
        q->queued--;
        w->next = cancelled;
        cancelled = w;
        user_put(q, u);
    }
    pthread_mutex_unlock(&q->lock);
    while (cancelled) {
        struct bf_work *w = cancelled;

        cancelled = w->next;
        w->cancel(w, -ESHUTDOWN);
    }
    /* The running jobs end; then the workers see `stopping`. */
    pthread_mutex_lock(&q->lock);
    while (q->running)
        pthread_cond_wait(&q->idle, &q->lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->work);
    pthread_mutex_unlock(&q->lock);
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    BF_ASSERT(!q->cursor && !q->queued && !q->running);
    pthread_cond_destroy(&q->idle);
    pthread_cond_destroy(&q->work);
    pthread_mutex_destroy(&q->lock);
    free(q->threads);
    free(q->slot_used);
    free(q->running_files);
    free(q);
}
