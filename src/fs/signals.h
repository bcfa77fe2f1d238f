/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — termination signals and a clean exit.
 *
 * Why not libfuse's fuse_set_signal_handlers(): it ends the session loop at
 * once, and the loop then cancels its idle threads. The long ioctls running
 * on the workers (workq.h) may be waiting for the kernel (WRITEOUT's
 * writeback, the invalidation of DISCARD/INVALIDATE/RECLAIM), and the
 * kernel waits for WRITEs that only the request threads can serve: they
 * would never end. So SIGINT, SIGTERM and SIGHUP are blocked in every
 * thread and taken by a thread of their own (sigwait), which closes the
 * worker queue (later long requests get ESHUTDOWN), lets the queued and
 * running ones finish (bounded by BF_EXIT_DRAIN_SECONDS) and then ends the
 * loop.
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
 * thread it creates afterwards), ignore SIGPIPE and SIGXFSZ, install the wake-up
 * handler. Call in main() before any thread is created. Returns 0 or
 * -errno. */
int bf_signals_block(void);

/* Start the signal thread. On a termination signal it closes fs->workq and
 * waits for its jobs to finish (at most BF_EXIT_DRAIN_SECONDS), then ends
 * the session loop that `loop_thread` runs. Returns 0 or -errno. */
int bf_signals_start(struct bf_fs *fs, pthread_t loop_thread, bf_sigwatch **out);

/* Stop the signal thread (after the loop returned) and free w. NULL is a
 * no-op. */
void bf_signals_stop(bf_sigwatch *w);

#endif /* BIGFILEFS_FS_SIGNALS_H */
