/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the worker queue of the long requests.
 *
 * Why: a request that waits for the kernel (WRITEOUT's writeback, the page
 * invalidation of DISCARD, INVALIDATE, RECLAIM, SETBLKSIZE) must not wait
 * on a request thread, because the kernel in turn waits for READs and
 * WRITEs that only free request threads can serve (kernel.h, D1). So the
 * request thread queues the work and returns to the loop at once; a small
 * pool of worker threads runs it and answers the request (any thread may).
 *
 * Sharing: the queue is bounded, and shared so that no user and no file can
 * occupy the daemon:
 *  - a user may have at most `max_user_queued` jobs waiting, and all users
 *    together `max_queued`; beyond, bf_workq_submit() refuses (-EAGAIN) at
 *    once — a request thread never waits for room;
 *  - free workers take the users in turn (round robin over the users with
 *    runnable jobs), each user's jobs in submission order;
 *  - one user runs at most `max_user_running` jobs at once (with several
 *    workers: fewer than the workers, so that another user's job always
 *    finds a worker soon);
 *  - one file runs at most one job at a time (jobs carry a file key); its
 *    other jobs wait, without holding a worker.
 *
 * Lifetime of a job (struct bf_work, embedded in the caller's own struct):
 *   submitted --(a worker takes it)--> running --(run returns)--> done
 *   submitted --(bf_workq_stop)--> cancelled
 * run() and cancel() own the job from their call on (they answer and free
 * it); the queue does not touch it afterwards.
 *
 * Locking: one mutex protects the queue; it is never held while a job runs.
 * Thread safety: submit, close and drain from any thread; start and stop
 * from one thread (main).
 */
#ifndef BIGFILEFS_FS_WORKQ_H
#define BIGFILEFS_FS_WORKQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct bf_workq bf_workq;
struct wq_user;

struct bf_work {
    /* Set by the submitter. */
    void (*run)(struct bf_work *w);             /* on a worker thread */
    void (*cancel)(struct bf_work *w, int err); /* never run: err is -ESHUTDOWN */
    uid_t uid;                                  /* whose share it uses */
    uint64_t file;                              /* one running job per file key */
    /* Private to the queue. */
    struct bf_work *next;
    struct wq_user *user;
};

struct bf_workq_limits {
    unsigned workers;           /* worker threads, >= 1 */
    unsigned max_queued;        /* waiting jobs, all users together */
    unsigned max_user_queued;   /* waiting jobs of one user */
    unsigned max_user_running;  /* running jobs of one user, >= 1 */
    void (*thread_start)(void); /* called first in each worker (or NULL) */
};

/* Start the workers. Returns 0, -EINVAL (a zero limit), -ENOMEM or the
 * error of pthread_create (then nothing runs). */
int bf_workq_start(const struct bf_workq_limits *lim, bf_workq **out);

/* Queue w. Returns 0 (w now belongs to the queue: its run or cancel will
 * be called exactly once), -EAGAIN (the queue or the user's share is full)
 * or -ESHUTDOWN (closed); on an error w is untouched and still the
 * caller's. Never blocks but on the queue's mutex. */
int bf_workq_submit(bf_workq *q, struct bf_work *w);

/* Refuse every later submission (-ESHUTDOWN); queued and running jobs
 * go on. */
void bf_workq_close(bf_workq *q);

/* Wait until no job is queued or running, at most timeout_ms. Returns true
 * when the queue is idle. */
bool bf_workq_drain(bf_workq *q, unsigned timeout_ms);

/* Close, cancel every job still queued (cancel(w, -ESHUTDOWN)), wait for the
 * running ones to return, join the workers and free q. NULL is a no-op. The
 * caller makes sure running jobs can end (kernel.h: bf_kernel_abort). */
void bf_workq_stop(bf_workq *q);

/* Counts, for tests and logs: jobs queued and running now. */
void bf_workq_counts(bf_workq *q, unsigned *queued, unsigned *running);

#endif /* BIGFILEFS_FS_WORKQ_H */
