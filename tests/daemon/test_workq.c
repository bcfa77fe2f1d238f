/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — unit tests of the worker queue (workq.h). Jobs block
 * on a gate the test opens, so every test waits for events, never for
 * time. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "fs/workq.h"

/* A gate jobs wait at until the test opens it; and a record of what ran. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    int arrived;   /* jobs that reached the gate */
    int order[64]; /* job ids in the order they ran */
    int nrun;
    int cancelled;
    int running_per_file[8], max_per_file[8];
};

static struct gate g;

struct tjob {
    struct bf_work w;
    int id;
    bool wait_gate;
    int cancel_err;
};

static void gate_init(void)
{
    memset(&g, 0, sizeof(g));
    pthread_mutex_init(&g.lock, NULL);
    pthread_cond_init(&g.cond, NULL);
}

static void gate_open(void)
{
    pthread_mutex_lock(&g.lock);
    g.open = true;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
}

/* Wait until n jobs reached the gate. */
static void gate_wait_arrived(int n)
{
    pthread_mutex_lock(&g.lock);
    while (g.arrived < n)
        pthread_cond_wait(&g.cond, &g.lock);
    pthread_mutex_unlock(&g.lock);
}

static void tjob_run(struct bf_work *w)
{
    struct tjob *j = (struct tjob *)w;
    unsigned f = (unsigned)j->w.file % 8;

    pthread_mutex_lock(&g.lock);
    g.order[g.nrun++] = j->id;
    if (++g.running_per_file[f] > g.max_per_file[f])
        g.max_per_file[f] = g.running_per_file[f];
    g.arrived++;
    pthread_cond_broadcast(&g.cond);
    while (j->wait_gate && !g.open)
        pthread_cond_wait(&g.cond, &g.lock);
    g.running_per_file[f]--;
    pthread_mutex_unlock(&g.lock);
}

static void tjob_cancel(struct bf_work *w, int err)
{
    struct tjob *j = (struct tjob *)w;

    pthread_mutex_lock(&g.lock);
    j->cancel_err = err;
    g.cancelled++;
    pthread_mutex_unlock(&g.lock);
}

static void tjob_init(struct tjob *j, int id, uid_t uid, uint64_t file, bool wait_gate)
{
    memset(j, 0, sizeof(*j));
    j->id = id;
    j->w.run = tjob_run;
    j->w.cancel = tjob_cancel;
    j->w.uid = uid;
    j->w.file = file;
    j->wait_gate = wait_gate;
}

static bf_workq *start(unsigned workers, unsigned maxq, unsigned userq, unsigned userrun)
{
    struct bf_workq_limits lim = { workers, maxq, userq, userrun, NULL };
    bf_workq *q = NULL;

    gate_init();
    cr_assert_eq(bf_workq_start(&lim, &q), 0);
    return q;
}

TestSuite(workq, .timeout = 20);

Test(workq, every_job_runs_and_drain_waits_for_them)
{
    static struct tjob j[40];
    bf_workq *q = start(4, 64, 64, 3);

    for (int i = 0; i < 40; i++) {
        tjob_init(&j[i], i, (uid_t)(i % 3), (uint64_t)i, true);
        cr_assert_eq(bf_workq_submit(q, &j[i].w), 0);
    }
    cr_assert(!bf_workq_drain(q, 0), "jobs wait at the gate: not idle");
    gate_open();
    cr_assert(bf_workq_drain(q, 10000), "drained");
    cr_expect_eq(g.nrun, 40);
    bf_workq_stop(q);
}

Test(workq, one_job_of_a_file_runs_at_a_time)
{
    static struct tjob j[8], other;
    bf_workq *q = start(4, 64, 64, 4);

    /* Eight blocking jobs of two files, then one of a third file: with a
     * job per file at a time, the third file's job takes the third worker
     * while the others wait for their files. */
    for (int i = 0; i < 8; i++) {
        tjob_init(&j[i], i, (uid_t)i, (uint64_t)(i % 2), true);
        cr_assert_eq(bf_workq_submit(q, &j[i].w), 0);
    }
    tjob_init(&other, 99, 99, 2, true);
    cr_assert_eq(bf_workq_submit(q, &other.w), 0);
    gate_wait_arrived(3);
    /* The three jobs that run at once are one of each file (the order in
     * which they reach the gate is the scheduler's business). */
    pthread_mutex_lock(&g.lock);
    int files[3];
    for (int i = 0; i < 3; i++)
        files[i] = g.order[i] == 99 ? 2 : g.order[i] % 2;
    pthread_mutex_unlock(&g.lock);
    cr_expect(files[0] != files[1] && files[0] != files[2] && files[1] != files[2],
              "the jobs running at once are of files %d, %d, %d: not one of each", files[0],
              files[1], files[2]);
    gate_open();
    cr_assert(bf_workq_drain(q, 10000));
    cr_expect_eq(g.nrun, 9);
    cr_expect_eq(g.max_per_file[0], 1, "file 0 ran %d jobs at once", g.max_per_file[0]);
    cr_expect_eq(g.max_per_file[1], 1, "file 1 ran %d jobs at once", g.max_per_file[1]);
    bf_workq_stop(q);
}

Test(workq, one_user_leaves_a_worker_to_the_others)
{
    static struct tjob a[8], b;
    bf_workq *q = start(4, 64, 64, 3);

    /* User 1 floods with jobs that block: it gets 3 of the 4 workers. */
    for (int i = 0; i < 8; i++) {
        tjob_init(&a[i], i, 1, (uint64_t)(100 + i), true);
        cr_assert_eq(bf_workq_submit(q, &a[i].w), 0);
    }
    gate_wait_arrived(3);
    /* User 2's job runs on the fourth while user 1's still block. */
    tjob_init(&b, 99, 2, 200, false);
    cr_assert_eq(bf_workq_submit(q, &b.w), 0);
    gate_wait_arrived(4);
    pthread_mutex_lock(&g.lock);
    cr_expect_eq(g.order[3], 99, "the other user's job ran while the flood blocked");
    cr_expect_eq(g.nrun, 4, "user 1 holds no more than 3 workers");
    pthread_mutex_unlock(&g.lock);
    gate_open();
    cr_assert(bf_workq_drain(q, 10000));
    bf_workq_stop(q);
}

Test(workq, users_take_turns)
{
    static struct tjob first, a[3], b[3];
    bf_workq *q = start(1, 64, 64, 1);

    /* The one worker is busy while both users queue three jobs each. */
    tjob_init(&first, 0, 9, 9, true);
    cr_assert_eq(bf_workq_submit(q, &first.w), 0);
    gate_wait_arrived(1);
    for (int i = 0; i < 3; i++) {
        tjob_init(&a[i], 10 + i, 1, (uint64_t)(10 + i), false);
        cr_assert_eq(bf_workq_submit(q, &a[i].w), 0);
    }
    for (int i = 0; i < 3; i++) {
        tjob_init(&b[i], 20 + i, 2, (uint64_t)(20 + i), false);
        cr_assert_eq(bf_workq_submit(q, &b[i].w), 0);
    }
    gate_open();
    cr_assert(bf_workq_drain(q, 10000));
    int want[] = { 0, 10, 20, 11, 21, 12, 22 };
    cr_assert_eq(g.nrun, 7);
    for (int i = 0; i < 7; i++)
        cr_expect_eq(g.order[i], want[i], "job %d: ran %d, want %d", i, g.order[i], want[i]);
    bf_workq_stop(q);
}

Test(workq, full_queue_and_full_share_refuse_at_once)
{
    static struct tjob busy, j[6];
    bf_workq *q = start(1, 3, 2, 1);

    tjob_init(&busy, 0, 5, 5, true);
    cr_assert_eq(bf_workq_submit(q, &busy.w), 0);
    gate_wait_arrived(1);
    for (int i = 0; i < 6; i++)
        tjob_init(&j[i], 1 + i, (uid_t)(i < 3 ? 1 : 2), (uint64_t)(10 + i), false);
    cr_expect_eq(bf_workq_submit(q, &j[0].w), 0);
    cr_expect_eq(bf_workq_submit(q, &j[1].w), 0);
    cr_expect_eq(bf_workq_submit(q, &j[2].w), -EAGAIN, "user 1's share (2) is full");
    cr_expect_eq(bf_workq_submit(q, &j[3].w), 0, "user 2 still has room");
    cr_expect_eq(bf_workq_submit(q, &j[4].w), -EAGAIN, "the queue (3) is full");
    unsigned queued, running;
    bf_workq_counts(q, &queued, &running);
    cr_expect_eq(queued, 3);
    cr_expect_eq(running, 1);
    gate_open();
    cr_assert(bf_workq_drain(q, 10000));
    cr_expect_eq(g.nrun, 4);
    bf_workq_stop(q);
}

static void *stop_thread(void *arg)
{
    bf_workq_stop(arg);
    return NULL;
}

Test(workq, stop_cancels_the_queued_and_waits_for_the_running)
{
    static struct tjob busy, j[5];
    bf_workq *q = start(1, 64, 64, 1);
    pthread_t t;

    tjob_init(&busy, 0, 1, 1, true);
    cr_assert_eq(bf_workq_submit(q, &busy.w), 0);
    gate_wait_arrived(1);
    for (int i = 0; i < 5; i++) {
        tjob_init(&j[i], 1 + i, (uid_t)(i % 2), (uint64_t)(10 + i), false);
        cr_assert_eq(bf_workq_submit(q, &j[i].w), 0);
    }
    bf_workq_close(q);
    struct tjob late;
    tjob_init(&late, 9, 1, 9, false);
    cr_expect_eq(bf_workq_submit(q, &late.w), -ESHUTDOWN, "closed");
    cr_assert_eq(pthread_create(&t, NULL, stop_thread, q), 0);
    /* stop cancels the five queued jobs, then waits for the running one. */
    for (;;) {
        pthread_mutex_lock(&g.lock);
        int c = g.cancelled;
        pthread_mutex_unlock(&g.lock);
        if (c == 5)
            break;
        sched_yield();
    }
    gate_open();
    pthread_join(t, NULL);
    cr_expect_eq(g.nrun, 1, "only the running job ran");
    for (int i = 0; i < 5; i++)
        cr_expect_eq(j[i].cancel_err, -ESHUTDOWN);
}
