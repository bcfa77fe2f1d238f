/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — termination signals and a clean exit.
 *
 * Why not libfuse's fuse_set_signal_handlers(): it ends the session loop at
 * once, and the loop then cancels its idle threads and joins the busy ones.
 * A busy one may be an ioctl waiting for the kernel (WRITEOUT's fsync, the
 * kernel invalidation of DISCARD/INVALIDATE/RECLAIM), and the kernel waits
 * for WRITEs that only the cancelled threads could serve: the daemon would
 * never exit. So SIGINT, SIGTERM and SIGHUP are blocked in every thread and
 * taken by a thread of their own (sigwait), which lets the requests that
 * wait for the kernel finish (bounded by BF_EXIT_DRAIN_SECONDS) before it
 * ends the loop.
 *
 * Global state: the signal mask of the process (set by bf_signals_block
 * before any thread exists) and a no-op SIGUSR1 handler used to interrupt
 * the loop's main thread.
 */
#ifndef BIGFILEFS_FS_SIGNALS_H
#define BIGFILEFS_FS_SIGNALS_H

#include <pthread.h>

struct bf_fs;

#define BF_EXIT_DRAIN_SECONDS 30

typedef struct bf_sigwatch bf_sigwatch;

/* Block SIGINT, SIGTERM and SIGHUP in the calling thread (so in every
 * thread it creates afterwards), ignore SIGPIPE, install the wake-up
 * handler. Call in main() before any thread is created. Returns 0 or
 * -errno. */
int bf_signals_block(void);

/* Start the signal thread. On a termination signal it waits for the
 * requests counted by bf_busy_enter to finish (at most
 * BF_EXIT_DRAIN_SECONDS), then ends the session loop that `loop_thread`
 * runs. Returns 0 or -errno. */
int bf_signals_start(struct bf_fs *fs, pthread_t loop_thread, bf_sigwatch **out);

/* Stop the signal thread (after the loop returned) and free w. NULL is a
 * no-op. */
void bf_signals_stop(bf_sigwatch *w);

/* Count a request that may wait for the kernel to be served by other
 * request threads (any thread). */
void bf_busy_enter(struct bf_fs *fs);
void bf_busy_leave(struct bf_fs *fs);

#endif /* BIGFILEFS_FS_SIGNALS_H */
