/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/backends: the memory backend's fault injection,
 * latency and call counters (memory.h). */
#include <pthread.h>
#include <time.h>

#include "helpers.h"

#define BS 4096u

struct fx {
    bf_db *db;
    uint64_t a, b; /* two files */
    bf_file *fa, *fb;
    void *buf;
};

static void fx_open(struct fx *x)
{
    struct bf_fileinfo fi;
    char err[128];
    cr_assert_eq(bf_db_open("mem:faults", 0, &x->db, err, sizeof(err)), 0);
    cr_assert(bf_db_is_memory(x->db));
    cr_assert_eq(bf_db_create(x->db, "a", BS, 0, 0644, 0, 0, &fi), 0);
    x->a = fi.id;
    cr_assert_eq(bf_db_create(x->db, "b", BS, 0, 0644, 0, 0, &fi), 0);
    x->b = fi.id;
    cr_assert_eq(bf_db_file_open(x->db, x->a, &x->fa), 0);
    cr_assert_eq(bf_db_file_open(x->db, x->b, &x->fb), 0);
    tb_store_range(x->fa, 0, 10, 1, 10 * BS);
    tb_store_range(x->fb, 0, 10, 1, 10 * BS);
    x->buf = malloc(BS);
}

static void fx_close(struct fx *x)
{
    free(x->buf);
    bf_db_file_close(x->db, x->fa);
    bf_db_file_close(x->db, x->fb);
    bf_db_close(x->db);
}

static int load(bf_file *f, uint64_t blk, void *buf)
{
    return tb_load(f, blk, buf);
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

Test(memfault, inject_validates, .timeout = 10)
{
    struct fx x;
    fx_open(&x);
    struct bf_mem_fault f = { .op = 0, .blk_hi = UINT64_MAX, .err = EIO };
    cr_assert_eq(bf_mem_inject(x.db, &f), -EINVAL, "bad op");
    f.hold = true;
    cr_assert_eq(bf_mem_inject(x.db, &f), -EINVAL, "bad op, hold");
    f.hold = false;
    f.op = BF_MEM_UNSTAGE + 1; /* the first after the last op */
    cr_assert_eq(bf_mem_inject(x.db, &f), -EINVAL, "bad op");
    f.op = BF_MEM_LOADBLK;
    f.err = -5;
    cr_assert_eq(bf_mem_inject(x.db, &f), -EINVAL, "negative err");
    f.err = EIO;
    f.blk_lo = 5;
    f.blk_hi = 4;
    cr_assert_eq(bf_mem_inject(x.db, &f), -EINVAL, "empty range");
    cr_assert_eq(bf_mem_inject(NULL, &f), -EINVAL);
    fx_close(&x);
}

Test(memfault, loadblk_file_and_range, .timeout = 10)
{
    struct fx x;
    fx_open(&x);
    struct bf_mem_fault f = {
        .op = BF_MEM_LOADBLK,
        .file_id = x.a,
        .blk_lo = 3,
        .blk_hi = 5,
        .err = EIO,
    };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    cr_assert_eq(load(x.fa, 2, x.buf), 0);
    cr_assert_eq(load(x.fa, 3, x.buf), -EIO);
    cr_assert_eq(load(x.fa, 5, x.buf), -EIO);
    cr_assert_eq(load(x.fa, 6, x.buf), 0);
    cr_assert_eq(load(x.fb, 4, x.buf), 0, "another file is not hit");
    cr_assert_eq(load(x.fa, 4, x.buf), -EIO, "unlimited times by default");

    /* file_id 0: every file */
    bf_mem_clear_faults(x.db);
    cr_assert_eq(load(x.fa, 4, x.buf), 0, "cleared");
    f.file_id = 0;
    f.err = ENOMEM;
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    cr_assert_eq(load(x.fa, 4, x.buf), -ENOMEM);
    cr_assert_eq(load(x.fb, 4, x.buf), -ENOMEM);
    /* storeblk is not affected by a loadblk rule */
    tb_store_range(x.fa, 4, 5, 2, 10 * BS);
    fx_close(&x);
}

Test(memfault, after_and_times, .timeout = 10)
{
    struct fx x;
    fx_open(&x);
    struct bf_mem_fault f = {
        .op = BF_MEM_LOADBLK,
        .blk_lo = 0,
        .blk_hi = UINT64_MAX,
        .err = EIO,
        .after = 3,
        .times = 2,
    };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    int got[8];
    for (int i = 0; i < 8; i++)
        got[i] = load(x.fa, (uint64_t)i, x.buf);
    int want[8] = { 0, 0, 0, -EIO, -EIO, 0, 0, 0 };
    for (int i = 0; i < 8; i++)
        cr_assert_eq(got[i], want[i], "call %d: %d, expected %d", i, got[i], want[i]);
    /* a successful load still delivers the data */
    tb_expect(x.fa, 7, 1);
    fx_close(&x);
}

Test(memfault, first_matching_rule_fires, .timeout = 10)
{
    struct fx x;
    fx_open(&x);
    struct bf_mem_fault f1 = { .op = BF_MEM_LOADBLK, .blk_lo = 0, .blk_hi = 1, .err = ENOSPC };
    struct bf_mem_fault f2 = { .op = BF_MEM_LOADBLK, .blk_lo = 0, .blk_hi = UINT64_MAX, .err = EIO };
    cr_assert_eq(bf_mem_inject(x.db, &f1), 0);
    cr_assert_eq(bf_mem_inject(x.db, &f2), 0);
    cr_assert_eq(load(x.fa, 0, x.buf), -ENOSPC);
    cr_assert_eq(load(x.fa, 2, x.buf), -EIO);
    fx_close(&x);
}

Test(memfault, delay_without_error, .timeout = 10)
{
    struct fx x;
    fx_open(&x);
    struct bf_mem_fault f = {
        .op = BF_MEM_LOADBLK,
        .file_id = x.a,
        .blk_lo = 0,
        .blk_hi = UINT64_MAX,
        .err = 0,
        .delay_us = 60000,
    };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    int64_t t0 = now_us();
    cr_assert_eq(load(x.fa, 1, x.buf), 0);
    int64_t t1 = now_us();
    cr_assert_geq(t1 - t0, 60000, "delayed by %lld us", (long long)(t1 - t0));
    tb_expect(x.fa, 1, 1);
    /* Another file is not delayed: with a delay far beyond the test's
     * timeout on file a, a load of file b returning at all shows it. */
    bf_mem_clear_faults(x.db);
    f.delay_us = 4000000000u;
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    cr_assert_eq(load(x.fb, 1, x.buf), 0);
    bf_mem_clear_faults(x.db);
    fx_close(&x);
}

Test(memfault, delay_with_error_and_after, .timeout = 10)
{
    struct fx x;
    fx_open(&x);
    /* the delay applies to matching calls whether they fail or not */
    struct bf_mem_fault f = {
        .op = BF_MEM_STOREBLK,
        .blk_lo = 0,
        .blk_hi = UINT64_MAX,
        .err = EIO,
        .after = 1,
        .delay_us = 30000,
    };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    cr_assert_eq(x.fa->ops->begin(x.fa), 0);
    tb_fill(x.buf, BS, 0, 2);
    int64_t t0 = now_us();
    cr_assert_eq(tb_store(x.fa, 0, x.buf), 0);
    cr_assert_geq(now_us() - t0, 30000);
    t0 = now_us();
    cr_assert_eq(tb_store(x.fa, 1, x.buf), -EIO);
    cr_assert_geq(now_us() - t0, 30000);
    x.fa->ops->abort(x.fa);
    tb_expect(x.fa, 0, 1);
    fx_close(&x);
}

Test(memfault, storeblk_failure_then_abort, .timeout = 10)
{
    struct fx x;
    fx_open(&x);
    struct bf_mem_fault f = {
        .op = BF_MEM_STOREBLK,
        .file_id = x.a,
        .blk_lo = 7,
        .blk_hi = 7,
        .err = ENOSPC,
    };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    cr_assert_eq(x.fa->ops->begin(x.fa), 0);
    for (uint64_t b = 0; b < 10; b++) {
        tb_fill(x.buf, BS, b, 2);
        int r = tb_store(x.fa, b, x.buf);
        cr_assert_eq(r, b == 7 ? -ENOSPC : 0);
    }
    x.fa->ops->abort(x.fa);
    for (uint64_t b = 0; b < 10; b++)
        tb_expect(x.fa, b, 1);
    fx_close(&x);
}

Test(memfault, begin_and_truncate_failures, .timeout = 10)
{
    struct fx x;
    fx_open(&x);
    struct bf_mem_fault fb = { .op = BF_MEM_BEGIN, .file_id = x.a, .err = EBUSY, .times = 1 };
    struct bf_mem_fault ft = { .op = BF_MEM_TRUNCATE, .err = EIO, .times = 1 };
    cr_assert_eq(bf_mem_inject(x.db, &fb), 0);
    cr_assert_eq(bf_mem_inject(x.db, &ft), 0);
    cr_assert_eq(x.fb->ops->begin(x.fb), 0, "other file");
    x.fb->ops->abort(x.fb);
    cr_assert_eq(x.fa->ops->begin(x.fa), -EBUSY);
    cr_assert_eq(x.fa->ops->begin(x.fa), 0, "times = 1");
    cr_assert_eq(x.fa->ops->truncate(x.fa, 2), -EIO);
    x.fa->ops->abort(x.fa);
    tb_expect(x.fa, 5, 1);
    cr_assert_eq(x.fa->ops->begin(x.fa), 0);
    cr_assert_eq(x.fa->ops->truncate(x.fa, 2), 0);
    cr_assert_eq(tb_commit(x.fa, 2 * BS), 0);
    tb_expect(x.fa, 5, -1);
    fx_close(&x);
}

Test(memfault, failed_commit_shows_nothing, .timeout = 10)
{
    struct fx x;
    fx_open(&x);
    struct bf_mem_fault f = { .op = BF_MEM_COMMIT, .file_id = x.a, .err = EIO, .times = 1 };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    cr_assert_eq(x.fa->ops->begin(x.fa), 0);
    cr_assert_eq(x.fa->ops->truncate(x.fa, 5), 0);
    for (uint64_t b = 0; b < 3; b++) {
        tb_fill(x.buf, BS, b, 2);
        cr_assert_eq(tb_store(x.fa, b, x.buf), 0);
    }
    cr_assert_eq(tb_commit(x.fa, 100 * BS), -EIO);
    for (uint64_t b = 0; b < 10; b++)
        tb_expect(x.fa, b, 1);
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_getinfo(x.db, x.a, &fi), 0);
    cr_assert_eq(fi.size, 10 * BS);
    cr_assert_eq(x.fa->size, 10 * BS);
    /* the transaction is closed: a new one works and commits */
    tb_store_range(x.fa, 0, 1, 3, 10 * BS);
    tb_expect(x.fa, 0, 3);
    fx_close(&x);
}

Test(memfault, call_counters, .timeout = 10)
{
    struct fx x;
    fx_open(&x);
    /* fx_open did 2 transactions of 10 stores each */
    cr_assert_eq(bf_mem_calls(x.db, BF_MEM_BEGIN), 2);
    cr_assert_eq(bf_mem_calls(x.db, BF_MEM_STOREBLK), 20);
    cr_assert_eq(bf_mem_calls(x.db, BF_MEM_COMMIT), 2);
    cr_assert_eq(bf_mem_calls(x.db, BF_MEM_LOADBLK), 0);
    cr_assert_eq(bf_mem_calls(x.db, BF_MEM_TRUNCATE), 0);
    struct bf_mem_fault f = { .op = BF_MEM_LOADBLK, .blk_hi = UINT64_MAX, .err = EIO };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    for (int i = 0; i < 5; i++)
        load(x.fa, 0, x.buf);
    cr_assert_eq(bf_mem_calls(x.db, BF_MEM_LOADBLK), 5, "failed calls count too");
    cr_assert_eq(bf_mem_calls(x.db, 99), 0);
    fx_close(&x);
}

/* ---- hold until released -------------------------------------------------- */

/* One call in a thread of its own: a load, or a whole transaction
 * (begin, store blk with tag 2, commit). */
struct call {
    bf_file *f;
    uint64_t blk;
    int txn; /* 0: loadblk; 1: a transaction */
    void *buf;
    int r;    /* its result */
    int done; /* atomic: it returned */
    pthread_t th;
};

static void *call_run(void *arg)
{
    struct call *c = arg;
    if (!c->txn) {
        c->r = tb_load(c->f, c->blk, c->buf);
    } else {
        tb_fill(c->buf, BS, c->blk, 2);
        c->r = c->f->ops->begin(c->f);
        if (c->r == 0 && (c->r = tb_store(c->f, c->blk, c->buf)) < 0)
            c->f->ops->abort(c->f);
        if (c->r == 0)
            c->r = tb_commit(c->f, 10 * BS);
    }
    __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void call_start(struct call *c, bf_file *f, uint64_t blk, int txn)
{
    memset(c, 0, sizeof(*c));
    c->f = f;
    c->blk = blk;
    c->txn = txn;
    c->buf = malloc(BS);
    cr_assert_not_null(c->buf);
    cr_assert_eq(pthread_create(&c->th, NULL, call_run, c), 0);
}

/* Join the call's thread; return its result. */
static int call_join(struct call *c)
{
    cr_assert_eq(pthread_join(c->th, NULL), 0);
    return c->r;
}

static int call_done(struct call *c)
{
    return __atomic_load_n(&c->done, __ATOMIC_SEQ_CST);
}

Test(memhold, held_until_released_then_proceeds, .timeout = 10)
{
    struct fx x;
    struct call c;
    fx_open(&x);
    struct bf_mem_fault f = {
        .op = BF_MEM_LOADBLK, .file_id = x.a, .blk_lo = 3, .blk_hi = 3, .hold = true
    };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    call_start(&c, x.fa, 3, 0);
    cr_assert_eq(bf_mem_wait_held(x.db, 1, 5000), 0);
    cr_assert_eq(bf_mem_held(x.db), 1);
    cr_assert_not(call_done(&c), "a held call does not return before the release");
    /* Everything else goes on meanwhile: other blocks, other files, a
     * commit of another file. */
    cr_assert_eq(load(x.fa, 2, x.buf), 0);
    cr_assert_eq(load(x.fb, 3, x.buf), 0);
    tb_store_range(x.fb, 3, 4, 2, 10 * BS);
    tb_expect(x.fb, 3, 2);
    cr_assert_eq(bf_mem_held(x.db), 1);
    cr_assert_not(call_done(&c));

    bf_mem_release(x.db);
    cr_assert_eq(call_join(&c), 0, "no err: the call proceeds normally");
    cr_assert(tb_check(c.buf, BS, 3, 1), "and delivers the block");
    cr_assert_eq(bf_mem_held(x.db), 0);
    /* The rule is inactive now: the same call passes (a regression would
     * hang here until the test's timeout). */
    cr_assert_eq(load(x.fa, 3, x.buf), 0);
    cr_assert_eq(bf_mem_held(x.db), 0);
    free(c.buf);
    fx_close(&x);
}

Test(memhold, held_then_fails_with_err, .timeout = 10)
{
    struct fx x;
    struct call c;
    fx_open(&x);
    /* the second matching call is held and then fails; only once */
    struct bf_mem_fault f = {
        .op = BF_MEM_LOADBLK,
        .blk_hi = UINT64_MAX,
        .err = EIO,
        .hold = true,
        .after = 1,
        .times = 1,
    };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    cr_assert_eq(load(x.fa, 0, x.buf), 0, "after = 1: the first passes");
    call_start(&c, x.fa, 1, 0);
    cr_assert_eq(bf_mem_wait_held(x.db, 1, 5000), 0);
    cr_assert_eq(load(x.fb, 2, x.buf), 0, "times = 1: the third passes, not held");
    cr_assert_eq(bf_mem_held(x.db), 1);
    cr_assert_not(call_done(&c));
    bf_mem_release(x.db);
    cr_assert_eq(call_join(&c), -EIO, "a held call with err fails once released");
    cr_assert_eq(load(x.fa, 1, x.buf), 0);
    free(c.buf);
    fx_close(&x);
}

Test(memhold, release_makes_rules_inactive, .timeout = 10)
{
    struct fx x;
    fx_open(&x);
    /* a hold rule with err, released with nothing held: later calls pass
     * it entirely (neither held nor failed) */
    struct bf_mem_fault f = { .op = BF_MEM_LOADBLK, .blk_hi = UINT64_MAX, .err = EIO, .hold = true };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    bf_mem_release(x.db);
    cr_assert_eq(load(x.fa, 0, x.buf), 0);
    /* a plain failure rule is not touched by a release */
    struct bf_mem_fault g = { .op = BF_MEM_LOADBLK, .blk_hi = UINT64_MAX, .err = ENOSPC };
    cr_assert_eq(bf_mem_inject(x.db, &g), 0);
    bf_mem_release(x.db);
    cr_assert_eq(load(x.fa, 0, x.buf), -ENOSPC);
    fx_close(&x);
}

Test(memhold, wait_held_counts_and_times_out, .timeout = 10)
{
    struct fx x;
    struct call c1, c2;
    fx_open(&x);
    cr_assert_eq(bf_mem_wait_held(x.db, 1, 20), -ETIMEDOUT, "nothing is held");
    cr_assert_eq(bf_mem_wait_held(x.db, 0, 0), 0, "waiting for none returns at once");
    cr_assert_eq(bf_mem_wait_held(NULL, 1, 0), -EINVAL);
    cr_assert_eq(bf_mem_held(NULL), 0);
    struct bf_mem_fault f = { .op = BF_MEM_LOADBLK, .blk_hi = UINT64_MAX, .hold = true };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    call_start(&c1, x.fa, 0, 0);
    call_start(&c2, x.fb, 0, 0);
    cr_assert_eq(bf_mem_wait_held(x.db, 2, 5000), 0);
    cr_assert_eq(bf_mem_held(x.db), 2);
    cr_assert_eq(bf_mem_wait_held(x.db, 3, 20), -ETIMEDOUT, "only two are");
    /* clearing the rules releases the held calls too */
    bf_mem_clear_faults(x.db);
    cr_assert_eq(call_join(&c1), 0);
    cr_assert_eq(call_join(&c2), 0);
    cr_assert_eq(bf_mem_held(x.db), 0);
    free(c1.buf);
    free(c2.buf);
    fx_close(&x);
}

Test(memhold, held_commit_shows_nothing_until_released, .timeout = 10)
{
    struct fx x;
    struct call c;
    fx_open(&x);
    struct bf_mem_fault f = { .op = BF_MEM_COMMIT, .file_id = x.a, .hold = true };
    cr_assert_eq(bf_mem_inject(x.db, &f), 0);
    call_start(&c, x.fa, 4, 1);
    cr_assert_eq(bf_mem_wait_held(x.db, 1, 5000), 0);
    /* held before its work: the old version is still what loads see, and
     * the file's transaction is still open */
    bf_file *g;
    cr_assert_eq(bf_db_file_open(x.db, x.a, &g), 0);
    tb_expect(g, 4, 1);
    cr_assert_eq(g->ops->begin(g), -EBUSY);
    bf_mem_release(x.db);
    cr_assert_eq(call_join(&c), 0);
    tb_expect(g, 4, 2);
    bf_db_file_close(x.db, g);
    free(c.buf);
    fx_close(&x);
}
