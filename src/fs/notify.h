/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the notifier thread: the executor of kernel.h's
 * notifications.
 *
 * Kernel notifications (fuse_lowlevel_notify_inval_inode) lock page-cache
 * pages and wait for READs and WRITEs in flight on them, which the request
 * threads must be free to serve (kernel.h, K3 and D3). They are therefore
 * sent from a thread of their own, never by a request thread, and never by
 * a thread holding a daemon lock a READ or WRITE handler needs. kernel.c
 * hands them over (from a worker, which waits) and posts start-up jobs that
 * must not run on a request thread (the bdi tuning, which waits for INIT).
 *
 * The notifier knows nothing of what its jobs do: it runs them one at a
 * time, in the order they were queued.
 *
 * Thread safety: every function except start/stop may be called from any
 * thread; start and stop from the main thread.
 */
#ifndef BIGFILEFS_FS_NOTIFY_H
#define BIGFILEFS_FS_NOTIFY_H

#include <sys/types.h>

#include <fuse_lowlevel.h>

typedef struct bf_notifier bf_notifier;

/* Start the notifier thread for session se. Returns 0, -ENOMEM, or the
 * error of pthread_create. */
int bf_notifier_start(struct fuse_session *se, bf_notifier **out);

/* Stop the thread: queued jobs not yet started are dropped (an
 * asynchronous job's `drop` callback is called; a waiting caller of
 * bf_notifier_call gets -ESHUTDOWN). Joins the thread and frees n. NULL is
 * a no-op. */
void bf_notifier_stop(bf_notifier *n);

/* Run fn(arg) on the notifier thread and wait for it; returns fn's result,
 * or -ESHUTDOWN if the notifier stopped first. The caller must hold no
 * daemon lock that a READ or WRITE handler takes. */
int bf_notifier_call(bf_notifier *n, int (*fn)(struct fuse_session *se, void *arg), void *arg);

/* Queue fn(arg) to run on the notifier thread and return at once. If the
 * job is dropped at stop, drop(arg) is called instead (may be NULL).
 * Returns 0 or -ENOMEM / -ESHUTDOWN (then nothing is called). */
int bf_notifier_post(bf_notifier *n, int (*fn)(struct fuse_session *se, void *arg),
                     void (*drop)(void *arg), void *arg);

#endif /* BIGFILEFS_FS_NOTIFY_H */
