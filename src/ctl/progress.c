/* SPDX-License-Identifier: MIT */
/* bigfilectl — the progress line of a long writeout (progress.h). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include <bigfile/ioctl.h>

#include "ctl/progress.h"

#define PROGRESS_TICK_MS 250

/* The call running on its thread, and its end, under `lock`. */
struct job {
    int (*run)(void *arg);
    void *arg;
    int result;
    bool done;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* signalled when done (CLOCK_MONOTONIC) */
};

static void *job_thread(void *a)
{
    struct job *j = a;
    int r = j->run(j->arg);

    pthread_mutex_lock(&j->lock);
    j->result = r;
    j->done = true;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

static double since(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* "812.0 KiB", "1.5 GiB" into buf. */
static const char *human(char *buf, size_t len, double bytes)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    unsigned u = 0;

    while (bytes >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
    return buf;
}

/* Redraw the line from a STAT answer, if the writeout is large enough. */
static void draw(struct bfctl_progress *p, const struct bigfile_stat *s)
{
    char done[32], total[32], rate[32], eta[32] = "";
    double t = since(&p->t0), r;
    uint64_t done_bytes = s->writeout_blocks * s->blksize;
    uint64_t total_bytes = s->writeout_total_blocks * s->blksize;

    if (s->version < 3 || total_bytes < p->min_bytes || total_bytes == 0)
        return;
    r = t > 0 ? (double)done_bytes / t : 0;
    if (r > 0) {
        uint64_t left = (uint64_t)((double)(total_bytes - done_bytes) / r);

        snprintf(eta, sizeof(eta), ", ETA %" PRIu64 ":%02" PRIu64, left / 60, left % 60);
    }
    fprintf(stderr, "\rwriteout: %" PRIu64 "/%" PRIu64 " blocks, %s/%s, %s/s%s\033[K",
            (uint64_t)s->writeout_blocks, (uint64_t)s->writeout_total_blocks,
            human(done, sizeof(done), (double)done_bytes),
            human(total, sizeof(total), (double)total_bytes), human(rate, sizeof(rate), r), eta);
    fflush(stderr);
    p->shown = true;
}

int bfctl_progress_run(struct bfctl_progress *p, int (*run)(void *arg), void *arg)
{
    struct job j = { .run = run, .arg = arg, .result = 0, .done = false };
    pthread_condattr_t ca;
    pthread_t th;
    int r;

    clock_gettime(CLOCK_MONOTONIC, &p->t0);
    p->shown = false;
    if (p->stat_fd < 0)
        return run(arg);
    pthread_mutex_init(&j.lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j.cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&th, NULL, job_thread, &j) != 0) {
        r = run(arg);
        goto out;
    }
    pthread_mutex_lock(&j.lock);
    while (!j.done) {
        struct timespec until;
        struct bigfile_stat s;

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += PROGRESS_TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        /* Wake at the writeout's end, or at the next tick to poll. */
        if (pthread_cond_timedwait(&j.cond, &j.lock, &until) != ETIMEDOUT || j.done)
            continue;
        pthread_mutex_unlock(&j.lock);
        memset(&s, 0, sizeof(s));
        if (ioctl(p->stat_fd, BIGFILE_IOC_STAT, &s) == 0)
            draw(p, &s);
        pthread_mutex_lock(&j.lock);
    }
    pthread_mutex_unlock(&j.lock);
    pthread_join(th, NULL);
    r = j.result;
out:
    pthread_cond_destroy(&j.cond);
    pthread_mutex_destroy(&j.lock);
    return r;
}

void bfctl_progress_end(struct bfctl_progress *p, int err, uint64_t blocks, uint64_t bytes)
{
    char b[32], rate[32];
    double t;

    if (p->stat_fd < 0)
        return;
    if (err || (!p->shown && bytes < p->min_bytes)) {
        if (p->shown)
            fprintf(stderr, "\r\033[K");
        return;
    }
    t = since(&p->t0);
    fprintf(stderr, "\rwriteout: stored %" PRIu64 " blocks, %s in %.1f s (%s/s)\033[K\n", blocks,
            human(b, sizeof(b), (double)bytes), t,
            human(rate, sizeof(rate), t > 0 ? (double)bytes / t : 0));
}
