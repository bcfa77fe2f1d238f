/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — termination signals (see signals.h). */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"
#include "fs/log.h"
#include "fs/signals.h"

struct bf_sigwatch {
    struct bf_fs *fs;
    pthread_t thread;
    pthread_t loop_thread;
    bool stopping;        /* set by bf_signals_stop before it signals */
    pthread_mutex_t lock; /* protects stopping */
};

static void term_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

/* Only interrupts a blocking call of the loop's thread (sem_wait). */
static void wake_handler(int sig)
{
    (void)sig;
}

int bf_signals_block(void)
{
    struct sigaction sa;
    sigset_t set;
    int r;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) < 0)
        return -errno;
    /* A write past a file-size limit (RLIMIT_FSIZE, the file system's
     * largest file) fails with EFBIG, which the block file reports as
     * ENOSPC, instead of killing the daemon. */
    if (sigaction(SIGXFSZ, &sa, NULL) < 0)
        return -errno;
    sa.sa_handler = wake_handler; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) < 0)
        return -errno;
    term_set(&set);
    r = pthread_sigmask(SIG_BLOCK, &set, NULL);
    return -r;
}

static void *sigwatch_main(void *arg)
{
    bf_sigwatch *w = arg;
    sigset_t set;
    int sig;
    bool stop;

    term_set(&set);
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        pthread_mutex_lock(&w->lock);
        stop = w->stopping;
        pthread_mutex_unlock(&w->lock);
        if (stop)
            return NULL;
        bf_info("received %s: unmounting", strsignal(sig));
        bf_workq_close(w->fs->workq);
        if (!bf_workq_drain(w->fs->workq, BF_EXIT_DRAIN_SECONDS * 1000u))
            bf_warn("requests waiting for the kernel still run after %d s; exiting anyway",
                    BF_EXIT_DRAIN_SECONDS);
        fuse_session_exit(w->fs->se);
        /* The loop's thread waits in sem_wait, which a signal interrupts;
         * it then sees the session exited. */
        pthread_kill(w->loop_thread, SIGUSR1);
        return NULL;
    }
}

int bf_signals_start(struct bf_fs *fs, pthread_t loop_thread, bf_sigwatch **out)
{
    bf_sigwatch *w = calloc(1, sizeof(*w));
    int r;

    if (!w)
        return -ENOMEM;
    w->fs = fs;
    w->loop_thread = loop_thread;
    pthread_mutex_init(&w->lock, NULL);
    r = pthread_create(&w->thread, NULL, sigwatch_main, w);
    if (r) {
        pthread_mutex_destroy(&w->lock);
        free(w);
        return -r;
    }
    *out = w;
    return 0;
}

void bf_signals_stop(bf_sigwatch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_mutex_unlock(&w->lock);
    /* Wakes sigwait if the thread still waits (SIGTERM is blocked
     * everywhere, so only sigwait can take it); harmless if it returned. */
    pthread_kill(w->thread, SIGTERM);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
