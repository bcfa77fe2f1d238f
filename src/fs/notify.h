/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the notifier thread.
 *
 * Kernel notifications (fuse_lowlevel_notify_inval_inode) lock page-cache
 * pages and wait for READs and WRITEs in flight on them, which other daemon
 * threads must be free to serve. They are therefore issued from a thread of
 * their own, never by a thread holding a daemon lock a READ or WRITE handler
 * needs. A request handler that must notify (an ioctl) hands the work to the
 * notifier, waits for it with no daemon lock held, and replies afterwards.
 *
 * The notifier also runs small start-up jobs that must not run on a request
 * thread (bdi.h's tuning, which stats the mount point).
 *
 * Jobs run one at a time, in the order they were queued.
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

/* Make the kernel forget the cached pages of inode ino in [off, off + len)
 * (len 0: to the end; off < 0: attributes only) and its attributes, from
 * the notifier thread, and wait. Dirty pages are first written back to the
 * daemon (as WRITEs). Returns 0, or a negative errno of the notification;
 * -ENOENT (the kernel does not know the inode: nothing cached) is returned
 * as 0. */
int bf_notify_inval_inode(bf_notifier *n, fuse_ino_t ino, off_t off, off_t len);

#endif /* BIGFILEFS_FS_NOTIFY_H */
