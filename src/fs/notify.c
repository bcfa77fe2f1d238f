/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the notifier thread (see notify.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fs/notify.h"

/* One queued job. A synchronous job lives on its caller's stack and is
 * completed by setting `done`; an asynchronous one is malloc'ed and freed by
 * the notifier. */
struct job {
    int (*fn)(struct fuse_session *se, void *arg);
    void (*drop)(void *arg);
    void *arg;
    bool sync;
    bool done;  /* sync only: fn ran (or the job was dropped) */
    int result; /* sync only */
    struct job *next;
};

struct bf_notifier {
    struct fuse_session *se;
    pthread_t thread;
    pthread_mutex_t lock; /* protects the queue, stopping and job->done */
    pthread_cond_t wake;  /* the thread waits for jobs on it */
    pthread_cond_t done;  /* callers of bf_notifier_call wait on it */
    struct job *head, *tail;
    bool stopping;
};

static void *notifier_main(void *arg)
{
    bf_notifier *n = arg;

    pthread_mutex_lock(&n->lock);
    for (;;) {
        struct job *j;
        int r;

        while (!n->head && !n->stopping)
            pthread_cond_wait(&n->wake, &n->lock);
        if (n->stopping)
            break;
        j = n->head;
        n->head = j->next;
        if (!n->head)
            n->tail = NULL;
        /* Run the job with no lock held: it may wait for the kernel, which
         * waits for request handlers. */
        pthread_mutex_unlock(&n->lock);
        r = j->fn(n->se, j->arg);
        pthread_mutex_lock(&n->lock);
        if (j->sync) {
            j->result = r;
            j->done = true;
            pthread_cond_broadcast(&n->done);
        } else {
            free(j);
        }
    }
    /* Stopping: drop what is left. */
    while (n->head) {
        struct job *j = n->head;

        n->head = j->next;
        if (j->sync) {
            j->result = -ESHUTDOWN;
            j->done = true;
        } else {
            if (j->drop)
                j->drop(j->arg);
            free(j);
        }
    }
    n->tail = NULL;
    pthread_cond_broadcast(&n->done);
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

int bf_notifier_start(struct fuse_session *se, bf_notifier **out)
{
    bf_notifier *n = calloc(1, sizeof(*n));
    int r;

    if (!n)
        return -ENOMEM;
    n->se = se;
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->wake, NULL);
    pthread_cond_init(&n->done, NULL);
    r = pthread_create(&n->thread, NULL, notifier_main, n);
    if (r) {
        pthread_cond_destroy(&n->done);
        pthread_cond_destroy(&n->wake);
        pthread_mutex_destroy(&n->lock);
        free(n);
        return -r;
    }
    *out = n;
    return 0;
}

void bf_notifier_stop(bf_notifier *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->lock);
    n->stopping = true;
    pthread_cond_signal(&n->wake);
    pthread_mutex_unlock(&n->lock);
    pthread_join(n->thread, NULL);
    pthread_cond_destroy(&n->done);
    pthread_cond_destroy(&n->wake);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

/* Append j to the queue; lock held. */
static void enqueue(bf_notifier *n, struct job *j)
{
    j->next = NULL;
    if (n->tail)
        n->tail->next = j;
    else
        n->head = j;
    n->tail = j;
    pthread_cond_signal(&n->wake);
}

int bf_notifier_call(bf_notifier *n, int (*fn)(struct fuse_session *se, void *arg), void *arg)
{
    struct job j = { .fn = fn, .arg = arg, .sync = true };

    pthread_mutex_lock(&n->lock);
    if (n->stopping) {
        pthread_mutex_unlock(&n->lock);
        return -ESHUTDOWN;
    }
    enqueue(n, &j);
    while (!j.done)
        pthread_cond_wait(&n->done, &n->lock);
    pthread_mutex_unlock(&n->lock);
    return j.result;
}

int bf_notifier_post(bf_notifier *n, int (*fn)(struct fuse_session *se, void *arg),
                     void (*drop)(void *arg), void *arg)
{
    struct job *j = calloc(1, sizeof(*j));

    if (!j)
        return -ENOMEM;
    j->fn = fn;
    j->drop = drop;
    j->arg = arg;
    pthread_mutex_lock(&n->lock);
    if (n->stopping) {
        pthread_mutex_unlock(&n->lock);
        free(j);
        return -ESHUTDOWN;
    }
    enqueue(n, j);
    pthread_mutex_unlock(&n->lock);
    return 0;
}
