/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: file handles under several threads.
 *
 * Gates of the mock file hold a loadblk or a storeblk in progress, so the
 * LOADING and "writeout running" states are reached deterministically, and
 * bf_ram_await_waiters tells when threads wait inside the core: the tests
 * wait for events, never for time, and the assertions hold whatever the
 * scheduling. Also run under ThreadSanitizer
 * (make check-concurrency in a --enable-tsan build).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* SEEK_DATA, SEEK_HOLE */
#endif
#include <pthread.h>
#include <unistd.h>

#include "core/blockbuf.h"
#include "corehelp.h"

#define GATE_MS 10000 /* a gate that is not reached in 10 s is a failure */

struct reader {
    pthread_t thr;
    bf_fileh *fh;
    uint64_t blk;
    char buf[BS];
    ssize_t ret;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    r->ret = bf_fileh_read(r->fh, r->buf, BS, r->blk * BS);
    return NULL;
}

static void reader_start(struct reader *r, bf_fileh *fh, uint64_t blk)
{
    r->fh = fh;
    r->blk = blk;
    r->ret = -12345;
    cr_assert_eq(pthread_create(&r->thr, NULL, reader_main, r), 0);
}

static void reader_expect(struct reader *r, unsigned seed)
{
    pthread_join(r->thr, NULL);
    cr_assert_eq(r->ret, (ssize_t)BS, "reader of block %llu: %zd", (unsigned long long)r->blk,
                 r->ret);
    char *want = pattern(seed, r->blk * BS, BS);
    cr_assert(memcmp(r->buf, want, BS) == 0, "reader of block %llu got other data",
              (unsigned long long)r->blk);
    free(want);
}

Test(concurrency, readers_of_one_block_share_one_load, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    mock_gate(e.m, MOCK_LOADBLK, 3);
    enum {
        N = 8
    };
    struct reader r[N];
    for (int i = 0; i < N; i++)
        reader_start(&r[i], e.fh, 3);
    cr_assert(mock_gate_wait(e.m, MOCK_LOADBLK, 1, GATE_MS), "no load started");
    /* Every other reader waits for that load: none loads it again. */
    cr_assert(bf_ram_await_waiters(e.ram, N - 1, GATE_MS), "the other readers did not wait");
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 1, "a second loadblk of a LOADING block");
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_LOADING);
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.loading_blocks, 1);
    cr_assert_eq(rstat_of(e.ram).loading_bytes, BS);
    /* Other blocks are served meanwhile: the lock is not held by the load. */
    expect_block(e.fh, 5, 1);
    mock_gate_release(e.m, MOCK_LOADBLK);
    for (int i = 0; i < N; i++)
        reader_expect(&r[i], 1);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 2); /* block 3 once, block 5 once */
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_LOADED);
    cr_assert_eq(rstat_of(e.ram).loading_bytes, 0);
    env_close(&e);
}

Test(concurrency, different_blocks_load_in_parallel, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    mock_gate(e.m, MOCK_LOADBLK, MOCK_ANY);
    struct reader a, b;
    reader_start(&a, e.fh, 1);
    reader_start(&b, e.fh, 2);
    cr_assert(mock_gate_wait(e.m, MOCK_LOADBLK, 2, GATE_MS),
              "two loads of different blocks were not in progress at once");
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_LOADING);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_LOADING);
    cr_assert_eq(fstat_of(e.fh).loading_blocks, 2);
    mock_gate_release(e.m, MOCK_LOADBLK);
    reader_expect(&a, 1);
    reader_expect(&b, 1);
    env_close(&e);
}

Test(concurrency, invalidate_while_loading_reloads_new_data, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    mock_gate(e.m, MOCK_LOADBLK, 4);
    struct reader r, w;
    reader_start(&r, e.fh, 4);
    cr_assert(mock_gate_wait(e.m, MOCK_LOADBLK, 1, GATE_MS));
    reader_start(&w, e.fh, 4); /* a waiter too */
    cr_assert_eq(bf_fileh_invalidate(e.fh, 4, 1), 0);
    cr_assert_eq(bf_fileh_page_state(e.fh, 4), BF_PAGE_LOADING_INVALIDATED);
    cr_assert_eq(fstat_of(e.fh).loading_blocks, 1);
    /* The data changes underneath; the held load already read the old
     * data: its result must be thrown away and the block loaded again. */
    mock_set_block(e.m, 4, 8);
    mock_gate_release(e.m, MOCK_LOADBLK);
    reader_expect(&r, 8);
    reader_expect(&w, 8);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 2, "the invalidated load was not redone");
    cr_assert_eq(bf_fileh_page_state(e.fh, 4), BF_PAGE_LOADED);
    env_close(&e);
}

/* Invalidating a LOADING block twice, and by a wide range, still throws
 * one load away and loads once more. */
Test(concurrency, invalidated_load_result_is_thrown_away, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    mock_gate(e.m, MOCK_LOADBLK, 4);
    struct reader r;
    reader_start(&r, e.fh, 4);
    cr_assert(mock_gate_wait(e.m, MOCK_LOADBLK, 1, GATE_MS));
    cr_assert_eq(bf_fileh_invalidate(e.fh, 0, 8), 0);
    cr_assert_eq(bf_fileh_invalidate(e.fh, 4, 1), 0, "invalidating twice");
    mock_gate_release(e.m, MOCK_LOADBLK);
    reader_expect(&r, 1);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 2);
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.loadblk_calls, 2);
    cr_assert_eq(st.invalidated_blocks, 1);
    cr_assert_eq(st.loading_blocks, 0);
    env_close(&e);
}

Test(concurrency, waiters_retry_a_failed_load, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    mock_fail(e.m, MOCK_LOADBLK, EIO, 5, 0, false); /* the first load fails */
    mock_gate(e.m, MOCK_LOADBLK, 5);
    enum {
        N = 4
    };
    struct reader r[N];
    reader_start(&r[0], e.fh, 5);
    cr_assert(mock_gate_wait(e.m, MOCK_LOADBLK, 1, GATE_MS));
    for (int i = 1; i < N; i++)
        reader_start(&r[i], e.fh, 5);
    cr_assert(bf_ram_await_waiters(e.ram, N - 1, GATE_MS), "the waiters did not wait");
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 1);
    mock_gate_release(e.m, MOCK_LOADBLK);
    int failed = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(r[i].thr, NULL);
        if (r[i].ret == -EIO) {
            failed++;
            continue;
        }
        cr_assert_eq(r[i].ret, (ssize_t)BS);
        char *want = pattern(1, 5 * BS, BS);
        cr_assert(memcmp(r[i].buf, want, BS) == 0);
        free(want);
    }
    cr_assert_eq(r[0].ret, -EIO, "the loader did not get its error");
    cr_assert_eq(failed, 1, "a waiter got the loader's error");
    /* One failed load, and the waiters' retry loaded once (or, if a waiter
     * only arrived later, found it LOADED). */
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 2);
    cr_assert_eq(fstat_of(e.fh).errors, 1);
    env_close(&e);
}

struct writeout_thr {
    pthread_t thr;
    bf_fileh *fh;
    unsigned flags;
    uint64_t n;
    int ret;
};

static void *writeout_main(void *arg)
{
    struct writeout_thr *w = arg;
    w->ret = writeout_n(w->fh, w->flags, &w->n);
    return NULL;
}

/* A STORE | MARKSTORED writeout of fh in a thread of its own. */
static void writeout_start(struct writeout_thr *w, bf_fileh *fh)
{
    *w = (struct writeout_thr){ .fh = fh, .flags = BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED };
    cr_assert_eq(pthread_create(&w->thr, NULL, writeout_main, w), 0);
}

Test(concurrency, write_during_writeout_is_copy_on_write, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    write_block(e.fh, 1, 2);
    write_block(e.fh, 2, 2);
    write_block(e.fh, 3, 2);
    mock_gate(e.m, MOCK_STOREBLK, 2);
    struct writeout_thr w;
    writeout_start(&w, e.fh);
    cr_assert(mock_gate_wait(e.m, MOCK_STOREBLK, 1, GATE_MS));

    /* While block 2 is being stored: rewrite it (and block 1, already
     * stored, and 3, not yet stored), partially. */
    cr_assert_eq(bf_fileh_write(e.fh, "NEW", 3, 2 * BS + 10), 3);
    cr_assert_eq(bf_fileh_write(e.fh, "NEW", 3, 1 * BS + 10), 3);
    cr_assert_eq(bf_fileh_write(e.fh, "NEW", 3, 3 * BS + 10), 3);
    write_block(e.fh, 6, 3); /* a new dirty block meanwhile */
    char buf[3];
    cr_assert_eq(bf_fileh_read(e.fh, buf, 3, 2 * BS + 10), 3);
    cr_assert(memcmp(buf, "NEW", 3) == 0, "a read during the writeout missed a write");
    /* Other blocks load meanwhile. */
    expect_block(e.fh, 5, 1);

    /* What must wait for the writeout. */
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE, NULL), -EBUSY);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_MARKSTORED, NULL), -EBUSY);
    cr_assert_eq(bf_fileh_discard(e.fh, NULL), -EBUSY);
    cr_assert_eq(bf_fileh_invalidate(e.fh, 0, 1), -EBUSY);
    /* (A shrinking truncate waits: truncate_waits_for_the_writeouts_commit.) */
    cr_assert_eq(bf_fileh_truncate(e.fh, 9 * BS), 0, "growing is fine during a writeout");
    expect_consistent(e.fh); /* storing pages and a copy-on-write buffer held */

    mock_gate_release(e.m, MOCK_STOREBLK);
    pthread_join(w.thr, NULL);
    cr_assert_eq(w.ret, 0);
    cr_assert_eq(w.n, 3);
    /* The writeout committed the snapshot, not the later writes. */
    expect_committed(e.m, 1, 2);
    expect_committed(e.m, 2, 2);
    expect_committed(e.m, 3, 2);
    expect_committed(e.m, 6, 1);
    cr_assert_eq(mock_committed_size(e.m), 8 * BS);
    /* Rewritten blocks stay dirty, even with MARKSTORED. */
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 6), BF_PAGE_DIRTY);
    cr_assert(bf_fileh_isdirty(e.fh));
    struct bf_ram_stats rs = rstat_of(e.ram);
    cr_assert_eq(rs.dirty_bytes, 4 * BS, "the writeout's old buffers are not all freed");

    /* The next writeout stores the new data. */
    uint64_t n;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &n), 0);
    cr_assert_eq(n, 4);
    char *blk = malloc(BS);
    for (uint64_t b = 1; b <= 3; b++) {
        mock_get_block(e.m, b, blk);
        cr_assert(memcmp(blk + 10, "NEW", 3) == 0);
    }
    free(blk);
    expect_committed(e.m, 6, 3);
    cr_assert_eq(mock_committed_size(e.m), 9 * BS);
    cr_assert_not(bf_fileh_isdirty(e.fh));
    env_close(&e);
}

Test(concurrency, failed_writeout_with_concurrent_writes, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    write_block(e.fh, 1, 2);
    write_block(e.fh, 2, 2);
    mock_gate(e.m, MOCK_STOREBLK, 1);
    mock_fail(e.m, MOCK_STOREBLK, ENOSPC, 2, 0, false);
    struct writeout_thr w;
    writeout_start(&w, e.fh);
    cr_assert(mock_gate_wait(e.m, MOCK_STOREBLK, 1, GATE_MS));
    write_block(e.fh, 1, 4);
    mock_gate_release(e.m, MOCK_STOREBLK);
    pthread_join(w.thr, NULL);
    cr_assert_eq(w.ret, -ENOSPC);
    expect_committed(e.m, 1, 1);
    expect_committed(e.m, 2, 1);
    expect_block(e.fh, 1, 4);
    expect_block(e.fh, 2, 2);
    cr_assert_eq(rstat_of(e.ram).dirty_bytes, 2 * BS);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    expect_committed(e.m, 1, 4);
    expect_committed(e.m, 2, 2);
    env_close(&e);
}

/* Threads each own some blocks and write, read back and verify them, while
 * the budget evicts, another thread writes out and reclaims. */
struct worker {
    pthread_t thr;
    bf_fileh *fh;
    bf_ram *ram;
    unsigned id;
    unsigned seed[4]; /* last seed written to each of my blocks */
    int failures;
};

enum {
    NWORKERS = 3,
    WBLOCKS = 4,
    ROUNDS = 150
};

static uint64_t worker_blk(unsigned id, unsigned i)
{
    return (uint64_t)i * NWORKERS + id; /* interleaved across threads */
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char *buf = malloc(BS);
    for (unsigned i = 0; i < WBLOCKS; i++) {
        uint64_t blk = worker_blk(w->id, i);
        w->seed[i] = 1 + w->id * 1000 + 500 + i;
        void *p = pattern(w->seed[i], blk * BS, BS);
        if (bf_fileh_write(w->fh, p, BS, blk * BS) != (ssize_t)BS)
            w->failures++;
        free(p);
    }
    for (unsigned round = 0; round < ROUNDS; round++) {
        unsigned i = (round * 7 + w->id) % WBLOCKS;
        uint64_t blk = worker_blk(w->id, i);
        if (round % 3 == 0) {
            unsigned seed = 100 + w->id * 1000 + round;
            void *p = pattern(seed, blk * BS, BS);
            if (bf_fileh_write(w->fh, p, BS, blk * BS) != (ssize_t)BS)
                w->failures++;
            free(p);
            w->seed[i] = seed;
        } else if (round % 3 == 1) {
            /* A partial write keeps the rest of the block. */
            uint64_t off = blk * BS + 100;
            void *p = pattern(w->seed[i], off, 50);
            if (bf_fileh_write(w->fh, p, 50, off) != 50)
                w->failures++;
            free(p);
        }
        if (bf_fileh_read(w->fh, buf, BS, blk * BS) != (ssize_t)BS) {
            w->failures++;
            continue;
        }
        void *want = pattern(w->seed[i], blk * BS, BS);
        if (memcmp(buf, want, BS) != 0)
            w->failures++;
        free(want);
        if (round % 17 == 0)
            bf_ram_reclaim(w->ram, BS);
    }
    free(buf);
    return NULL;
}

struct flusher {
    pthread_t thr;
    bf_fileh *fh;
    volatile int stop; /* set after the workers are joined */
    int busy, ok, failures;
};

static void *flusher_main(void *arg)
{
    struct flusher *f = arg;
    while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
        int r = bf_fileh_writeout(f->fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL);
        if (r == 0)
            f->ok++;
        else if (r == -EBUSY)
            f->busy++;
        else
            f->failures++;
        bf_fileh_reclaim(f->fh, NULL);
        sched_yield();
    }
    return NULL;
}

Test(concurrency, workers_writeouts_and_eviction, .timeout = 60)
{
    struct env e;
    env_open(&e, (uint64_t)NWORKERS * WBLOCKS * BS, 0, 2 * BS);
    struct worker w[NWORKERS];
    struct flusher f = { .fh = e.fh };
    memset(w, 0, sizeof(w));
    cr_assert_eq(pthread_create(&f.thr, NULL, flusher_main, &f), 0);
    for (unsigned i = 0; i < NWORKERS; i++) {
        w[i].fh = e.fh;
        w[i].ram = e.ram;
        w[i].id = i;
        cr_assert_eq(pthread_create(&w[i].thr, NULL, worker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < NWORKERS; i++)
        pthread_join(w[i].thr, NULL);
    __atomic_store_n(&f.stop, 1, __ATOMIC_RELEASE);
    pthread_join(f.thr, NULL);
    for (unsigned i = 0; i < NWORKERS; i++)
        cr_assert_eq(w[i].failures, 0, "worker %u saw %d wrong reads or failed calls", i,
                     w[i].failures);
    cr_assert_eq(f.failures, 0);
    cr_log_info("flusher: %d writeouts, %d busy", f.ok, f.busy);

    /* Final writeout: the backend holds every thread's last data. */
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    for (unsigned t = 0; t < NWORKERS; t++)
        for (unsigned i = 0; i < WBLOCKS; i++)
            expect_committed(e.m, worker_blk(t, i), w[t].seed[i]);
    struct bf_ram_stats rs = rstat_of(e.ram);
    cr_assert_leq(rs.clean_bytes, 2 * BS);
    cr_assert_eq(rs.dirty_bytes, 0);
    cr_assert_eq(rs.loading_bytes, 0);
    env_close(&e);
}

Test(concurrency, budget_zero_concurrent_readers, .timeout = 30)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 0);
    enum {
        N = 6
    };
    struct reader r[N];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < N; i++)
            reader_start(&r[i], e.fh, (uint64_t)(i % 2));
        for (int i = 0; i < N; i++)
            reader_expect(&r[i], 1);
    }
    struct bf_ram_stats rs = rstat_of(e.ram);
    cr_assert_eq(rs.clean_bytes, 0);
    cr_assert_eq(rs.loading_bytes, 0);
    env_close(&e);
}

/* A thread reading by reference (bf_fileh_read_refs) blocks of a file
 * whose every block holds the pattern of seed 1: it compares the held
 * bytes with it before it drops them. `bad` counts the reads that did not
 * match, `errors` those that failed. */
struct refs_reader {
    pthread_t thr;
    bf_fileh *fh;
    unsigned id, rounds, nblk;
    unsigned bad, errors;
    int last_error;
};

static void *refs_reader_main(void *arg)
{
    struct refs_reader *r = arg;
    char buf[2 * BS];
    char *want = malloc(2 * BS);
    unsigned x = r->id * 7919u + 1;
    for (unsigned i = 0; i < r->rounds && want; i++) {
        x = x * 1103515245u + 12345u;
        uint64_t off = (uint64_t)((x >> 8) % ((r->nblk - 2) * BS));
        struct bf_read_refs refs;
        bool sent;
        ssize_t n = bf_fileh_read_refs(r->fh, buf, 2 * BS, off, NULL, &sent, &refs);
        if (n != (ssize_t)(2 * BS)) {
            r->errors++;
            r->last_error = (int)n;
            continue;
        }
        mock_pattern(want, 2 * BS, 1, off);
        size_t at = 0;
        bool ok = true;
        for (unsigned k = 0; k < refs.n; k++) {
            ok = ok && memcmp(refs.iov[k].iov_base, want + at, refs.iov[k].iov_len) == 0;
            at += refs.iov[k].iov_len;
        }
        r->bad += !ok || at != 2 * BS;
        bf_fileh_refs_put(&refs);
    }
    free(want);
    return NULL;
}

/* Readers by reference while another thread drops every cached block
 * again and again (invalidate, reclaim) and the budget of two blocks
 * evicts at every load: the freed buffers are reloaded with other blocks
 * unless the allocator keeps the held ones aside (I33). Every byte a
 * reader holds is its block's. */
Test(concurrency, reads_by_reference_outlive_invalidate_and_eviction, .timeout = 60)
{
    struct env e;
    enum {
        NBLK = 32,
        N = 4
    };
    env_open(&e, NBLK * BS, NBLK, 2 * BS);
    struct refs_reader r[N];
    for (unsigned i = 0; i < N; i++) {
        r[i] = (struct refs_reader){ .fh = e.fh, .id = i, .rounds = 3000, .nblk = NBLK };
        cr_assert_eq(pthread_create(&r[i].thr, NULL, refs_reader_main, &r[i]), 0);
    }
    for (unsigned i = 0; i < 3000; i++) {
        cr_assert_eq(bf_fileh_invalidate(e.fh, 0, NBLK), 0);
        bf_ram_reclaim(e.ram, SIZE_MAX);
    }
    for (unsigned i = 0; i < N; i++) {
        pthread_join(r[i].thr, NULL);
        cr_assert_eq(r[i].errors, 0, "reader %u: %u reads failed (the last: %d)", i, r[i].errors,
                     r[i].last_error);
        cr_assert_eq(r[i].bad, 0, "reader %u: %u reads held bytes of another block", i, r[i].bad);
    }
    struct bf_blockbuf_stats bs;
    bf_blockbuf_stat(&bs);
    cr_assert_eq(bs.held_buffers, 0);
    cr_assert_eq(bs.deferred_bytes, 0);
    env_close(&e);
}

struct writer {
    pthread_t thr;
    bf_fileh *fh;
    const void *buf;
    size_t count;
    uint64_t off;
    ssize_t ret;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    w->ret = bf_fileh_write(w->fh, w->buf, w->count, w->off);
    return NULL;
}

/* A write over two partial blocks whose second load is held while a fence
 * goes up over the second block: the write is dropped whole, and must
 * leave the first block (which it loaded and kept while waiting) clean,
 * and, with a budget of 0, no clean block cached once it returns. */
Test(concurrency, fenced_write_leaves_no_block_dirty, .timeout = 30)
{
    struct env e;
    env_open(&e, 2 * BS, 2, 0);
    mock_gate(e.m, MOCK_LOADBLK, 1);
    char *buf = pattern(9, BS / 2, BS);
    struct writer w = { .fh = e.fh, .buf = buf, .count = BS, .off = BS / 2, .ret = -12345 };
    cr_assert_eq(pthread_create(&w.thr, NULL, writer_main, &w), 0);
    cr_assert(mock_gate_wait(e.m, MOCK_LOADBLK, 1, GATE_MS), "the load of block 1 did not start");
    cr_assert_eq(bf_fileh_fence(e.fh, 1, 1), 0);
    mock_gate_release(e.m, MOCK_LOADBLK);
    pthread_join(w.thr, NULL);
    free(buf);
    cr_assert_eq(w.ret, (ssize_t)BS, "a fenced write returns its count");
    cr_assert_eq(fstat_of(e.fh).fenced_writes, 1);
    cr_assert_not(bf_fileh_isdirty(e.fh), "a dropped write left the handle dirty");
    cr_assert_eq(fstat_of(e.fh).dirty_blocks, 0);
    struct bf_ram_stats rs = rstat_of(e.ram);
    cr_assert_eq(rs.dirty_bytes, 0);
    cr_assert_eq(rs.clean_bytes, 0, "a clean block outlived its call with budget 0");
    bf_fileh_unfence(e.fh);
    expect_block(e.fh, 0, 1);
    expect_block(e.fh, 1, 1);
    env_close(&e);
}

/* A truncate in a thread of its own; what it saw of the mock's
 * transaction when it returned. */
struct truncater {
    pthread_t thr;
    bf_fileh *fh;
    struct mockfile *m;
    uint64_t size;
    int ret;
    bool txn_open_at_return;    /* the writeout's transaction still open */
    uint64_t commits_at_return; /* commit calls made by then */
    unsigned blk3_seed;         /* committed block 3 had this seed then */
};

static void *truncater_main(void *arg)
{
    struct truncater *t = arg;
    t->ret = bf_fileh_truncate(t->fh, t->size);
    t->txn_open_at_return = mock_in_txn(t->m);
    t->commits_at_return = mock_calls(t->m, MOCK_COMMIT);
    unsigned char *b = malloc(BS), *p = malloc(BS);
    if (b && p) {
        mock_get_block(t->m, 3, b);
        for (unsigned seed = 1; seed <= 2; seed++) {
            mock_pattern(p, BS, seed, 3 * BS);
            if (memcmp(b, p, BS) == 0)
                t->blk3_seed = seed;
        }
    }
    free(b);
    free(p);
    return NULL;
}

static void truncater_start(struct truncater *t, struct env *e, uint64_t size)
{
    *t = (struct truncater){ .fh = e->fh, .m = e->m, .size = size, .ret = -12345 };
    cr_assert_eq(pthread_create(&t->thr, NULL, truncater_main, t), 0);
}

/* A shrinking truncate loads its new last block to zero its tail; a
 * writeout starts during that load. The truncate must wait for the
 * writeout to end — its commit done — and then apply (it used to fail with
 * -EBUSY, which SETATTR and O_TRUNC passed on). While it waits, the block it
 * loaded does not outlive the budget of 0 and nothing has changed. */
Test(concurrency, truncate_waits_for_the_writeouts_commit, .timeout = 30)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 0);
    write_block(e.fh, 3, 2);
    mock_gate(e.m, MOCK_LOADBLK, 1);
    struct truncater t;
    truncater_start(&t, &e, BS + BS / 2);
    cr_assert(mock_gate_wait(e.m, MOCK_LOADBLK, 1, GATE_MS), "the load of block 1 did not start");

    mock_gate(e.m, MOCK_COMMIT, MOCK_ANY);
    struct writeout_thr w;
    writeout_start(&w, e.fh);
    cr_assert(mock_gate_wait(e.m, MOCK_COMMIT, 1, GATE_MS),
              "the writeout did not reach its commit");

    mock_gate_release(e.m, MOCK_LOADBLK);
    cr_assert(bf_ram_await_waiters(e.ram, 1, GATE_MS),
              "the truncate did not wait for the writeout");
    cr_assert_eq(bf_fileh_size(e.fh), 4 * BS, "the truncate applied during the writeout");
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_DIRTY, "a block being stored was dropped");
    cr_assert_eq(rstat_of(e.ram).clean_bytes, 0, "a clean block outlived its call with budget 0");
    expect_consistent(e.fh);

    mock_gate_release(e.m, MOCK_COMMIT);
    pthread_join(w.thr, NULL);
    cr_assert_eq(w.ret, 0);
    cr_assert_eq(w.n, 1);
    pthread_join(t.thr, NULL);
    cr_assert_eq(t.ret, 0, "the truncate failed: %s", strerror(-t.ret));
    cr_assert_not(t.txn_open_at_return, "the truncate returned before the commit was done");
    cr_assert_eq(t.commits_at_return, 1);
    cr_assert_eq(t.blk3_seed, 2, "the truncate returned before block 3 was committed");

    /* The writeout committed its snapshot; the shrink is the next change. */
    expect_committed(e.m, 3, 2);
    cr_assert_eq(mock_committed_size(e.m), 4 * BS);
    cr_assert_eq(bf_fileh_size(e.fh), BS + BS / 2);
    cr_assert(bf_fileh_isdirty(e.fh));
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_DIRTY, "the tail was not zeroed");
    cr_assert_eq(rstat_of(e.ram).clean_bytes, 0);
    /* Grown back: block 1 is its first half, then zeros; the next
     * writeout commits that and forgets blocks 2 and 3. */
    cr_assert_eq(bf_fileh_truncate(e.fh, 2 * BS), 0);
    unsigned char *got = malloc(BS), *want = pattern(1, BS, BS);
    memset(want + BS / 2, 0, BS / 2);
    cr_assert_eq(bf_fileh_read(e.fh, got, BS, BS), (ssize_t)BS);
    cr_assert(memcmp(got, want, BS) == 0, "block 1 after the shrink and growing back");
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    cr_assert_eq(mock_committed_size(e.m), 2 * BS);
    mock_get_block(e.m, 1, got);
    cr_assert(memcmp(got, want, BS) == 0, "committed block 1");
    cr_assert_not(mock_has_block(e.m, 2) || mock_has_block(e.m, 3), "blocks past the shrink kept");
    free(got);
    free(want);
    env_close(&e);
}

/* A shrink to a block boundary (nothing to load) while a writeout runs
 * that then fails: the truncate waits for the writeout's end (its abort),
 * then applies to the changes the failed writeout left dirty. */
Test(concurrency, truncate_waits_for_a_failing_writeout, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    write_block(e.fh, 2, 2);
    write_block(e.fh, 6, 2);
    mock_gate(e.m, MOCK_STOREBLK, 6);
    mock_fail(e.m, MOCK_COMMIT, EIO, MOCK_ANY, 0, false);
    struct writeout_thr w;
    writeout_start(&w, e.fh);
    cr_assert(mock_gate_wait(e.m, MOCK_STOREBLK, 1, GATE_MS), "the writeout did not start");

    struct truncater t;
    truncater_start(&t, &e, 4 * BS);
    cr_assert(bf_ram_await_waiters(e.ram, 1, GATE_MS),
              "the truncate did not wait for the writeout");
    cr_assert_eq(bf_fileh_size(e.fh), 8 * BS, "the truncate applied during the writeout");
    cr_assert_eq(bf_fileh_page_state(e.fh, 6), BF_PAGE_DIRTY, "a block being stored was dropped");
    expect_consistent(e.fh);

    mock_gate_release(e.m, MOCK_STOREBLK);
    pthread_join(w.thr, NULL);
    cr_assert_eq(w.ret, -EIO);
    pthread_join(t.thr, NULL);
    cr_assert_eq(t.ret, 0, "the truncate failed: %s", strerror(-t.ret));
    cr_assert_not(t.txn_open_at_return, "the truncate returned before the writeout ended");
    cr_assert_eq(t.commits_at_return, 1);
    cr_assert_eq(t.blk3_seed, 1, "the failed writeout committed something");

    cr_assert_eq(bf_fileh_size(e.fh), 4 * BS);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 6), BF_PAGE_EMPTY);
    cr_assert_eq(mock_committed_size(e.m), 8 * BS);
    expect_committed(e.m, 2, 1);
    expect_committed(e.m, 6, 1);
    /* The retry commits the write and the shrink. */
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    cr_assert_eq(mock_committed_size(e.m), 4 * BS);
    expect_committed(e.m, 2, 2);
    for (uint64_t b = 4; b < 8; b++)
        cr_assert_not(mock_has_block(e.m, b), "block %llu past the shrink kept",
                      (unsigned long long)b);
    env_close(&e);
}

/* ---- SEEK_DATA / SEEK_HOLE racing a writeout -------------------------- */

struct seeker {
    pthread_t thr;
    bf_fileh *fh;
    uint64_t off;
    int whence;
    int ret;
    uint64_t res;
};

static void *seeker_main(void *arg)
{
    struct seeker *s = arg;
    s->ret = bf_fileh_seek_data(s->fh, s->off, s->whence, &s->res);
    return NULL;
}

static void seeker_start(struct seeker *s, bf_fileh *fh, uint64_t off, int whence)
{
    s->fh = fh;
    s->off = off;
    s->whence = whence;
    s->ret = -12345;
    cr_assert_eq(pthread_create(&s->thr, NULL, seeker_main, s), 0);
}

/* A SEEK_DATA asks the backend (nothing stored yet) while block 4 is DIRTY;
 * meanwhile a writeout stores block 4 and the clean block is reclaimed. The
 * backend's old answer ("nothing stored") must not turn block 4 into a
 * hole. */
Test(concurrency, seek_data_racing_a_writeout, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 0, 1 << 20);
    write_block(e.fh, 4, 5);
    mock_gate(e.m, MOCK_NEXT_STORED, MOCK_ANY);
    struct seeker s;
    seeker_start(&s, e.fh, 0, SEEK_DATA);
    cr_assert(mock_gate_wait(e.m, MOCK_NEXT_STORED, 1, GATE_MS), "the seek did not ask");
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    bf_fileh_reclaim(e.fh, NULL);
    cr_assert_eq(bf_fileh_page_state(e.fh, 4), BF_PAGE_EMPTY);
    mock_gate_release(e.m, MOCK_NEXT_STORED);
    pthread_join(s.thr, NULL);
    cr_assert_eq(s.ret, 0);
    cr_assert_eq(s.res, 4 * BS, "SEEK_DATA gave %llu", (unsigned long long)s.res);
    cr_assert_eq(mock_calls(e.m, MOCK_NEXT_STORED), 2, "the stale answer was not asked again");
    env_close(&e);
}

/* The same for SEEK_HOLE: block 0 stored, block 1 DIRTY; the seek learns
 * "block 1 is not stored" just before a writeout stores it. */
Test(concurrency, seek_hole_racing_a_writeout, .timeout = 30)
{
    struct env e;
    env_open(&e, 4 * BS, 1, 1 << 20);
    write_block(e.fh, 1, 5);
    mock_gate(e.m, MOCK_NEXT_STORED, 1);
    struct seeker s;
    seeker_start(&s, e.fh, 0, SEEK_HOLE);
    cr_assert(mock_gate_wait(e.m, MOCK_NEXT_STORED, 1, GATE_MS), "the seek did not ask");
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    bf_fileh_reclaim(e.fh, NULL);
    mock_gate_release(e.m, MOCK_NEXT_STORED);
    pthread_join(s.thr, NULL);
    cr_assert_eq(s.ret, 0);
    cr_assert_eq(s.res, 2 * BS, "SEEK_HOLE gave %llu", (unsigned long long)s.res);
    env_close(&e);
}

/* allocated_bytes counts while a writeout commits: the count it got may
 * be stale, so it is not cached; the next call asks again. */
struct alloc_thr {
    pthread_t thr;
    bf_fileh *fh;
    int ret;
    uint64_t bytes;
};

static void *alloc_main(void *arg)
{
    struct alloc_thr *a = arg;
    a->ret = bf_fileh_allocated_bytes(a->fh, &a->bytes);
    return NULL;
}

Test(concurrency, allocated_bytes_racing_a_writeout, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 2, 1 << 20);
    write_block(e.fh, 5, 5);
    mock_gate(e.m, MOCK_STORED_BLOCKS, MOCK_ANY);
    struct alloc_thr a = { .fh = e.fh, .ret = -12345 };
    cr_assert_eq(pthread_create(&a.thr, NULL, alloc_main, &a), 0);
    cr_assert(mock_gate_wait(e.m, MOCK_STORED_BLOCKS, 1, GATE_MS), "the count was not asked");
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    mock_gate_release(e.m, MOCK_STORED_BLOCKS);
    pthread_join(a.thr, NULL);
    cr_assert_eq(a.ret, 0);
    cr_assert_eq(a.bytes, 2 * BS, "the count of before the commit, nothing dirty after it");
    uint64_t b;
    cr_assert_eq(bf_fileh_allocated_bytes(e.fh, &b), 0);
    cr_assert_eq(b, 3 * BS);
    cr_assert_eq(mock_calls(e.m, MOCK_STORED_BLOCKS), 2, "a stale count was cached");
    cr_assert_eq(bf_fileh_allocated_bytes(e.fh, &b), 0);
    cr_assert_eq(mock_calls(e.m, MOCK_STORED_BLOCKS), 2, "a fresh count was not cached");
    env_close(&e);
}

/* ---- spilling, partial pages, prefetch (fileh.h, I28-I31) ---- */

/* The workers and the flusher again, with a dirty budget of two blocks:
 * blocks spill and come back all the time while writeouts run. */
Test(concurrency, workers_with_spills_and_writeouts, .timeout = 60)
{
    struct env e;
    env_open(&e, (uint64_t)NWORKERS * WBLOCKS * BS, 0, 2 * BS);
    bf_ram_set_dirty_budget(e.ram, 2 * BS);
    struct worker w[NWORKERS];
    struct flusher f = { .fh = e.fh };
    memset(w, 0, sizeof(w));
    cr_assert_eq(pthread_create(&f.thr, NULL, flusher_main, &f), 0);
    for (unsigned i = 0; i < NWORKERS; i++) {
        w[i].fh = e.fh;
        w[i].ram = e.ram;
        w[i].id = i;
        cr_assert_eq(pthread_create(&w[i].thr, NULL, worker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < NWORKERS; i++)
        pthread_join(w[i].thr, NULL);
    __atomic_store_n(&f.stop, 1, __ATOMIC_RELEASE);
    pthread_join(f.thr, NULL);
    for (unsigned i = 0; i < NWORKERS; i++)
        cr_assert_eq(w[i].failures, 0, "worker %u saw %d wrong reads or failed calls", i,
                     w[i].failures);
    cr_assert_eq(f.failures, 0);
    cr_assert_gt(fstat_of(e.fh).spills, 0, "nothing spilled");
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    for (unsigned t = 0; t < NWORKERS; t++)
        for (unsigned i = 0; i < WBLOCKS; i++)
            expect_committed(e.m, worker_blk(t, i), w[t].seed[i]);
    cr_assert_eq(mock_staged(e.m), 0, "staged contents left");
    cr_assert_eq(rstat_of(e.ram).dirty_bytes, 0);
    env_close(&e);
}

/* Partial pages under threads: 16 KiB blocks (4 units); each thread owns
 * blocks and writes their halves (whole units: no load) with new seeds,
 * reads them back whole, while a flusher writes out and blocks spill. */
#define PB 16384u

struct pworker {
    pthread_t thr;
    bf_fileh *fh;
    unsigned id;
    unsigned seed[4][2]; /* per block, per half */
    int failures;
};

static void *pworker_main(void *arg)
{
    struct pworker *w = arg;
    char *buf = malloc(PB);
    for (unsigned round = 0; round < 120; round++) {
        unsigned i = round % 4, h = (round / 4) % 2;
        uint64_t blk = (uint64_t)i * NWORKERS + w->id;
        uint64_t off = blk * PB + h * (PB / 2);
        unsigned seed = 10 + w->id * 1000 + round;
        void *p = pattern(seed, off, PB / 2);
        if (bf_fileh_write(w->fh, p, PB / 2, off) != (ssize_t)(PB / 2))
            w->failures++;
        free(p);
        w->seed[i][h] = seed;
        if (bf_fileh_read(w->fh, buf, PB, blk * PB) != (ssize_t)PB) {
            w->failures++;
            continue;
        }
        for (unsigned k = 0; k < 2; k++) {
            uint64_t o = blk * PB + k * (PB / 2);
            void *want = pattern(w->seed[i][k], o, PB / 2);
            if (memcmp(buf + k * (PB / 2), want, PB / 2) != 0)
                w->failures++;
            free(want);
        }
    }
    free(buf);
    return NULL;
}

Test(concurrency, partial_pages_with_spills_and_writeouts, .timeout = 60)
{
    struct mockfile *m = mock_new(PB, (uint64_t)NWORKERS * 4 * PB);
    bf_ram *ram;
    bf_fileh *fh;
    /* Seeds 1 + i: the blocks start with content, so that the halves not
     * yet written come from the store. */
    for (uint64_t b = 0; b < NWORKERS * 4; b++)
        mock_set_block(m, b, 1);
    cr_assert_eq(bf_ram_new(4 * PB, &ram), 0);
    bf_ram_set_dirty_budget(ram, 3 * PB);
    cr_assert_eq(bf_fileh_open(mock_file(m), ram, &fh), 0);
    struct pworker w[NWORKERS];
    struct flusher f = { .fh = fh };
    memset(w, 0, sizeof(w));
    for (unsigned i = 0; i < NWORKERS; i++)
        for (unsigned b = 0; b < 4; b++)
            w[i].seed[b][0] = w[i].seed[b][1] = 1;
    cr_assert_eq(pthread_create(&f.thr, NULL, flusher_main, &f), 0);
    for (unsigned i = 0; i < NWORKERS; i++) {
        w[i].fh = fh;
        w[i].id = i;
        cr_assert_eq(pthread_create(&w[i].thr, NULL, pworker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < NWORKERS; i++)
        pthread_join(w[i].thr, NULL);
    __atomic_store_n(&f.stop, 1, __ATOMIC_RELEASE);
    pthread_join(f.thr, NULL);
    for (unsigned i = 0; i < NWORKERS; i++)
        cr_assert_eq(w[i].failures, 0, "worker %u saw %d wrong reads or failed calls", i,
                     w[i].failures);
    cr_assert_eq(f.failures, 0);
    cr_assert_eq(bf_fileh_writeout(fh, BF_WRITEOUT_STORE, NULL), 0);
    char *got = malloc(PB);
    for (unsigned t = 0; t < NWORKERS; t++)
        for (unsigned i = 0; i < 4; i++) {
            uint64_t blk = (uint64_t)i * NWORKERS + t;
            mock_get_block(m, blk, got);
            for (unsigned k = 0; k < 2; k++) {
                void *want = pattern(w[t].seed[i][k], blk * PB + k * (PB / 2), PB / 2);
                cr_assert(memcmp(got + k * (PB / 2), want, PB / 2) == 0,
                          "block %llu half %u committed wrong", (unsigned long long)blk, k);
                free(want);
            }
        }
    free(got);
    cr_assert_eq(mock_staged(m), 0);
    close_checked(fh);
    cr_assert_eq(bf_ram_free(ram), 0);
    mock_free(m);
}

Test(concurrency, readers_of_a_spilled_block_share_one_unspill, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    bf_ram_set_dirty_budget(e.ram, 2 * BS);
    write_block(e.fh, 3, 2);
    write_block(e.fh, 4, 2);
    write_block(e.fh, 5, 2);
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_SPILLED);
    mock_gate(e.m, MOCK_UNSTAGE, MOCK_ANY);
    enum {
        N = 6
    };
    struct reader r[N];
    for (int i = 0; i < N; i++)
        reader_start(&r[i], e.fh, 3);
    cr_assert(mock_gate_wait(e.m, MOCK_UNSTAGE, 1, GATE_MS), "no unspill started");
    cr_assert(bf_ram_await_waiters(e.ram, N - 1, GATE_MS), "the other readers did not wait");
    cr_assert_eq(mock_calls(e.m, MOCK_UNSTAGE), 1, "a second unspill of one block");
    expect_block(e.fh, 6, 1); /* other blocks are served meanwhile */
    mock_gate_release(e.m, MOCK_UNSTAGE);
    for (int i = 0; i < N; i++)
        reader_expect(&r[i], 2);
    cr_assert_eq(mock_calls(e.m, MOCK_UNSTAGE), 1);
    env_close(&e);
}

struct pwriter {
    pthread_t thr;
    bf_fileh *fh;
    uint64_t off;
    size_t len;
    unsigned seed;
    ssize_t ret;
};

static void *pwriter_main(void *arg)
{
    struct pwriter *w = arg;
    void *p = pattern(w->seed, w->off, w->len);
    w->ret = bf_fileh_write(w->fh, p, w->len, w->off);
    free(p);
    return NULL;
}

static void pwriter_start(struct pwriter *w, bf_fileh *fh, uint64_t off, size_t len, unsigned seed)
{
    w->fh = fh;
    w->off = off;
    w->len = len;
    w->seed = seed;
    w->ret = -12345;
    cr_assert_eq(pthread_create(&w->thr, NULL, pwriter_main, w), 0);
}

static void pwriter_join(struct pwriter *w)
{
    pthread_join(w->thr, NULL);
    cr_assert_eq(w->ret, (ssize_t)w->len, "write at %llu: %zd", (unsigned long long)w->off, w->ret);
}

/* A block being spilled: readers read it, a writer waits for the spill
 * and then finds it SPILLED (and reads it back). */
Test(concurrency, a_write_waits_for_the_spill_of_its_block, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    bf_ram_set_dirty_budget(e.ram, BS);
    write_block(e.fh, 0, 2);
    mock_gate(e.m, MOCK_STAGE, 0);
    struct pwriter a, b;
    pwriter_start(&a, e.fh, 1 * BS, BS, 3); /* spills block 0 */
    cr_assert(mock_gate_wait(e.m, MOCK_STAGE, 1, GATE_MS), "no spill started");
    expect_block(e.fh, 0, 2); /* readable while it is spilled */
    pwriter_start(&b, e.fh, 10, 20, 4);
    cr_assert(bf_ram_await_waiters(e.ram, 1, GATE_MS), "the writer of block 0 did not wait");
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_DIRTY);
    mock_gate_release(e.m, MOCK_STAGE);
    pwriter_join(&a);
    pwriter_join(&b);
    char got[BS], *want = pattern(2, 0, BS), *p = pattern(4, 10, 20);
    memcpy(want + 10, p, 20);
    cr_assert_eq(bf_fileh_read(e.fh, got, BS, 0), BS);
    cr_assert(memcmp(got, want, BS) == 0, "the write into a block being spilled was lost");
    free(want);
    free(p);
    expect_block(e.fh, 1, 3);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE, NULL), 0);
    cr_assert_eq(mock_staged(e.m), 0);
    env_close(&e);
}

struct discarder {
    pthread_t thr;
    bf_fileh *fh;
    int ret;
    uint64_t n;
};

static void *discarder_main(void *arg)
{
    struct discarder *d = arg;
    d->ret = bf_fileh_discard(d->fh, &d->n);
    return NULL;
}

Test(concurrency, discard_waits_for_a_spill_in_flight, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    bf_ram_set_dirty_budget(e.ram, BS);
    write_block(e.fh, 0, 2);
    mock_gate(e.m, MOCK_STAGE, 0);
    struct pwriter a;
    pwriter_start(&a, e.fh, 1 * BS, BS, 3);
    cr_assert(mock_gate_wait(e.m, MOCK_STAGE, 1, GATE_MS), "no spill started");
    struct discarder d = { .fh = e.fh, .ret = -12345 };
    cr_assert_eq(pthread_create(&d.thr, NULL, discarder_main, &d), 0);
    cr_assert(bf_ram_await_waiters(e.ram, 1, GATE_MS), "discard did not wait for the spill");
    mock_gate_release(e.m, MOCK_STAGE);
    pwriter_join(&a);
    pthread_join(d.thr, NULL);
    cr_assert_eq(d.ret, 0);
    /* Either order: the discard dropped block 0 (spilled by then) and
     * maybe block 1; nothing staged is left behind by it. */
    uint64_t left = mock_staged(e.m);
    cr_assert_eq(left, 0, "%llu staged contents left", (unsigned long long)left);
    expect_block(e.fh, 0, 1);
    env_close(&e);
}

/* A spill made by a call on another handle: the spilled handle's close
 * waits for it, and drops what it staged. */
Test(concurrency, close_waits_for_a_spill_by_another_handle, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    bf_ram_set_dirty_budget(e.ram, BS);
    bf_fileh *other;
    struct mockfile *m2 = mock_new(BS, 8 * BS);
    cr_assert_eq(bf_fileh_open(mock_file(m2), e.ram, &other), 0);
    write_block(e.fh, 0, 2);
    mock_gate(e.m, MOCK_STAGE, 0);
    struct pwriter a;
    pwriter_start(&a, other, 0, BS, 3); /* spills e.fh's block 0 */
    cr_assert(mock_gate_wait(e.m, MOCK_STAGE, 1, GATE_MS), "no spill started");
    cr_assert_eq(bf_fileh_check(e.fh), 0);
    struct discarder d = { .fh = e.fh, .ret = -12345 };
    cr_assert_eq(pthread_create(&d.thr, NULL, discarder_main, &d), 0);
    cr_assert(bf_ram_await_waiters(e.ram, 1, GATE_MS), "the discard did not wait");
    mock_gate_release(e.m, MOCK_STAGE);
    pwriter_join(&a);
    pthread_join(d.thr, NULL);
    cr_assert_eq(mock_staged(e.m), 0);
    write_block(e.fh, 2, 2); /* spills the other handle's block */
    cr_assert_eq(mock_staged(m2), 1);
    close_checked(other);
    cr_assert_eq(mock_staged(m2), 0, "close left a staged content");
    mock_free(m2);
    env_close(&e);
}

struct wouter {
    pthread_t thr;
    bf_fileh *fh;
    int ret;
};

static void *wouter_main(void *arg)
{
    struct wouter *w = arg;
    w->ret = bf_fileh_writeout(w->fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL);
    return NULL;
}

/* A SPILLED block that a writeout stores: a reader waits for the writeout
 * to end and then reads the committed block (never its staged content,
 * which the commit used up). */
Test(concurrency, a_read_of_a_spilled_block_waits_for_the_writeout, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    bf_ram_set_dirty_budget(e.ram, BS);
    write_block(e.fh, 0, 2);
    write_block(e.fh, 1, 2);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_SPILLED);
    mock_gate(e.m, MOCK_COMMIT, MOCK_ANY);
    struct wouter wo = { .fh = e.fh, .ret = -12345 };
    cr_assert_eq(pthread_create(&wo.thr, NULL, wouter_main, &wo), 0);
    cr_assert(mock_gate_wait(e.m, MOCK_COMMIT, 1, GATE_MS), "the writeout did not commit");
    struct reader r;
    reader_start(&r, e.fh, 0);
    cr_assert(bf_ram_await_waiters(e.ram, 1, GATE_MS), "the reader did not wait");
    /* A whole-block write of a stored SPILLED block goes on (it becomes
     * DIRTY, the writeout keeps its staged content). */
    struct pwriter w;
    pwriter_start(&w, e.fh, 0, BS, 5);
    mock_gate_release(e.m, MOCK_COMMIT);
    pthread_join(wo.thr, NULL);
    cr_assert_eq(wo.ret, 0);
    pwriter_join(&w);
    pthread_join(r.thr, NULL);
    cr_assert_eq(r.ret, (ssize_t)BS);
    char *want2 = pattern(2, 0, BS), *want5 = pattern(5, 0, BS);
    cr_assert(memcmp(r.buf, want2, BS) == 0 || memcmp(r.buf, want5, BS) == 0,
              "the reader got neither the stored nor the new content");
    free(want2);
    free(want5);
    cr_assert_eq(mock_calls(e.m, MOCK_UNSTAGE), 0, "a stored block was unspilled");
    expect_committed(e.m, 0, 2);
    expect_block(e.fh, 0, 5);
    cr_assert_eq(mock_staged(e.m), 0);
    env_close(&e);
}

struct prefetcher {
    pthread_t thr;
    bf_fileh *fh;
    uint64_t blk, n, loaded;
    int ret;
};

static void *prefetcher_main(void *arg)
{
    struct prefetcher *p = arg;
    p->ret = bf_fileh_prefetch(p->fh, p->blk, p->n, &p->loaded);
    return NULL;
}

Test(concurrency, a_reader_waits_for_the_prefetch_of_its_block, .timeout = 30)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 16 * BS);
    mock_gate(e.m, MOCK_LOADBLK, 3);
    struct prefetcher p = { .fh = e.fh, .blk = 3, .n = 1, .ret = -12345 };
    cr_assert_eq(pthread_create(&p.thr, NULL, prefetcher_main, &p), 0);
    cr_assert(mock_gate_wait(e.m, MOCK_LOADBLK, 1, GATE_MS), "the prefetch did not load");
    struct reader r;
    reader_start(&r, e.fh, 3);
    cr_assert(bf_ram_await_waiters(e.ram, 1, GATE_MS), "the reader did not wait");
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 1);
    mock_gate_release(e.m, MOCK_LOADBLK);
    pthread_join(p.thr, NULL);
    cr_assert_eq(p.ret, 0);
    cr_assert_eq(p.loaded, 1);
    reader_expect(&r, 1);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 1, "the block was loaded twice");
    cr_assert_eq(rstat_of(e.ram).ahead_bytes, 0, "a block read is still ahead");
    env_close(&e);
}

/* Prefetchers and readers of the same blocks, the blocks invalidated and
 * rewritten underneath: every read sees the content of when it started or
 * later, never an invalidated load's. */
struct churn {
    pthread_t thr;
    bf_fileh *fh;
    struct mockfile *m;
    volatile int *stop;
    int failures;
};

static void *prefetch_churn(void *arg)
{
    struct churn *c = arg;
    while (!__atomic_load_n(c->stop, __ATOMIC_ACQUIRE)) {
        if (bf_fileh_prefetch(c->fh, 0, 8, NULL) < 0)
            c->failures++;
        bf_fileh_reclaim(c->fh, NULL);
        sched_yield();
    }
    return NULL;
}

Test(concurrency, prefetch_racing_invalidations, .timeout = 60)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 8 * BS);
    volatile int stop = 0;
    struct churn c = { .fh = e.fh, .m = e.m, .stop = &stop };
    cr_assert_eq(pthread_create(&c.thr, NULL, prefetch_churn, &c), 0);
    for (unsigned round = 2; round < 200; round++) {
        uint64_t blk = round % 8;
        mock_set_block(e.m, blk, round);
        cr_assert_eq(bf_fileh_invalidate(e.fh, blk, 1), 0);
        expect_block(e.fh, blk, round); /* never an old prefetch */
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    pthread_join(c.thr, NULL);
    cr_assert_eq(c.failures, 0);
    env_close(&e);
}
