/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the prefetcher (see prefetch.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/fileh.h"
#include "fs/prefetch.h"

struct pf_job {
    bf_inode *inode; /* referenced (bf_itable_find); or NULL and: */
    bf_views *views; /* a view file's inode, held (bf_views_hold) */
    bf_vnode *vn;
    uint64_t blk, n;
};

struct bf_prefetch {
    bf_itable *t;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct pf_job ring[BF_PREFETCH_QUEUE]; /* queued jobs: [head, head + count) */
    unsigned head, count;
    bool stopping;
    unsigned nthreads;
    pthread_t threads[BF_PREFETCH_THREADS];
};

/* Prefetch the blocks of [blk, end) that hold data, one at a time: a hole
 * needs no load, and a sparse reader (cp --sparse, SEEK_DATA) skips it.
 * Errors end the job: a hint, the READ that needs a block reports its own. */
static void prefetch_data(bf_fileh *fh, uint64_t blk, uint64_t end)
{
    uint64_t bs = bf_fileh_blksize(fh), data;

    while (blk < end) {
        if (bf_fileh_seek_data(fh, blk * bs, SEEK_DATA, &data) < 0)
            return; /* -ENXIO: no data from here on */
        if (data / bs != blk) {
            blk = data / bs; /* the next data block */
            continue;
        }
        if (bf_fileh_prefetch(fh, blk, 1, NULL) < 0)
            return;
        blk++;
    }
}

/* Drop a job's reference. */
static void job_put(bf_prefetch *pf, struct pf_job *j)
{
    if (j->inode)
        bf_itable_put(pf->t, j->inode);
    else
        bf_views_put(j->views, j->vn);
}

static void run_job(bf_prefetch *pf, struct pf_job *j)
{
    bf_fileh *fh;

    if (j->inode) {
        bf_inode_fh_peek(j->inode, &fh);
        if (fh)
            prefetch_data(fh, j->blk, j->blk + j->n);
        bf_inode_fh_put(j->inode);
    } else if ((fh = bf_vnode_fh(j->views, j->vn))) {
        /* held: its handle stays (views.h) */
        prefetch_data(fh, j->blk, j->blk + j->n);
    }
    job_put(pf, j);
}

static void *pf_thread(void *arg)
{
    bf_prefetch *pf = arg;

    pthread_mutex_lock(&pf->lock);
    for (;;) {
        while (!pf->stopping && pf->count == 0)
            pthread_cond_wait(&pf->cond, &pf->lock);
        if (pf->stopping)
            break;
        struct pf_job j = pf->ring[pf->head];
        pf->head = (pf->head + 1) % BF_PREFETCH_QUEUE;
        pf->count--;
        pthread_mutex_unlock(&pf->lock);
        run_job(pf, &j);
        pthread_mutex_lock(&pf->lock);
    }
    pthread_mutex_unlock(&pf->lock);
    return NULL;
}

int bf_prefetch_start(bf_itable *t, bf_prefetch **out)
{
    bf_prefetch *pf = calloc(1, sizeof(*pf));

    if (!pf)
        return -ENOMEM;
    pf->t = t;
    pthread_mutex_init(&pf->lock, NULL);
    pthread_cond_init(&pf->cond, NULL);
    for (unsigned i = 0; i < BF_PREFETCH_THREADS; i++) {
        int e = pthread_create(&pf->threads[i], NULL, pf_thread, pf);
        if (e) {
            bf_prefetch_stop(pf);
            return -e;
        }
        pf->nthreads++;
    }
    *out = pf;
    return 0;
}

/* Queue job j (holding its reference), or drop it (and the reference). */
static void offer(bf_prefetch *pf, struct pf_job *j)
{
    pthread_mutex_lock(&pf->lock);
    if (!pf->stopping && pf->count < BF_PREFETCH_QUEUE) {
        pf->ring[(pf->head + pf->count) % BF_PREFETCH_QUEUE] = *j;
        pf->count++;
        j = NULL;
        pthread_cond_signal(&pf->cond);
    }
    pthread_mutex_unlock(&pf->lock);
    if (j)
        job_put(pf, j); /* filled or stopped meanwhile */
}

/* Whether the queue has room now (a hint: offer checks again). */
static bool has_room(bf_prefetch *pf)
{
    pthread_mutex_lock(&pf->lock);
    bool room = !pf->stopping && pf->count < BF_PREFETCH_QUEUE;
    pthread_mutex_unlock(&pf->lock);
    return room;
}

void bf_prefetch_offer(bf_prefetch *pf, bf_inode *inode, uint64_t blk, uint64_t n)
{
    if (!pf || n == 0 || !has_room(pf))
        return; /* a hint: dropped */
    /* A reference of the job's own (the table mutex: never under pf->lock). */
    struct pf_job j = { .inode = bf_itable_find(pf->t, inode->ino), .blk = blk, .n = n };
    if (j.inode)
        offer(pf, &j);
}

void bf_prefetch_offer_view(bf_prefetch *pf, bf_views *views, bf_vnode *vn, uint64_t blk,
                            uint64_t n)
{
    if (!pf || n == 0 || !has_room(pf))
        return;
    bf_views_hold(views, vn); /* the views' mutex: never under pf->lock */
    struct pf_job j = { .views = views, .vn = vn, .blk = blk, .n = n };
    offer(pf, &j);
}

void bf_prefetch_stop(bf_prefetch *pf)
{
    if (!pf)
        return;
    pthread_mutex_lock(&pf->lock);
    pf->stopping = true;
    pthread_cond_broadcast(&pf->cond);
    pthread_mutex_unlock(&pf->lock);
    for (unsigned i = 0; i < pf->nthreads; i++)
        pthread_join(pf->threads[i], NULL);
    /* No thread is left: the queued jobs are dropped. */
    for (; pf->count; pf->count--, pf->head = (pf->head + 1) % BF_PREFETCH_QUEUE)
        job_put(pf, &pf->ring[pf->head]);
    pthread_cond_destroy(&pf->cond);
    pthread_mutex_destroy(&pf->lock);
    free(pf);
}
