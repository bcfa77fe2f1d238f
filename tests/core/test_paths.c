/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: the write and cold-read paths (fileh.h, "Partial
 * pages" and "Prefetch"): writes of whole 4 KiB units need no load, a
 * partial block is completed from its base (never from a newer version),
 * random reads load 64 KiB around them, prefetch loads ahead of a
 * sequential reader and never serves stale data. Blocks of 256 KiB (64
 * units), so that a block can be partial. */
#include <pthread.h>

#include "corehelp.h"

#define BB (256u << 10)

/* A mock of nblk blocks of BB bytes, the first nfilled of seed 1, and a
 * handle on it in a ram of `budget` bytes. */
static void penv_open(struct env *e, uint64_t nblk, uint64_t nfilled, size_t budget)
{
    e->m = mock_new(BB, nblk * BB);
    for (uint64_t b = 0; b < nfilled; b++)
        mock_set_block(e->m, b, 1);
    cr_assert_eq(bf_ram_new(budget, &e->ram), 0);
    cr_assert_eq(bf_fileh_open(mock_file(e->m), e->ram, &e->fh), 0);
}

static void write_at(bf_fileh *fh, uint64_t off, size_t len, unsigned seed)
{
    void *p = pattern(seed, off, len);
    cr_assert_eq(bf_fileh_write(fh, p, len, off), (ssize_t)len);
    free(p);
}

/* Bytes [off, off + len) of the handle are those of the pattern of seed. */
static void expect_at(bf_fileh *fh, uint64_t off, size_t len, unsigned seed)
{
    char *got = malloc(len), *want = pattern(seed, off, len);
    cr_assert_not_null(got);
    cr_assert_eq(bf_fileh_read(fh, got, len, off), (ssize_t)len);
    cr_assert(memcmp(got, want, len) == 0, "bytes [%llu, +%zu) differ from seed %u",
              (unsigned long long)off, len, seed);
    free(got);
    free(want);
}

/* Committed bytes [boff, boff + len) of block blk are those of seed. */
static void expect_committed_at(struct mockfile *m, uint64_t blk, size_t boff, size_t len,
                                unsigned seed)
{
    char *got = malloc(BB), *want = pattern(seed, blk * BB + boff, len);
    cr_assert_not_null(got);
    mock_get_block(m, blk, got);
    cr_assert(memcmp(got + boff, want, len) == 0,
              "committed bytes [%zu, +%zu) of block %llu differ from seed %u", boff, len,
              (unsigned long long)blk, seed);
    free(got);
    free(want);
}

static uint64_t loads(struct mockfile *m)
{
    return mock_calls(m, MOCK_LOADBLK);
}

/* ------------------------------------------------------------ partial */

Test(partial, two_half_block_writes_make_a_block_without_a_load, .timeout = 10)
{
    struct env e;
    penv_open(&e, 4, 4, 8 << 20);
    write_at(e.fh, 0, BB / 2, 2); /* the kernel's writeback: 1 MiB of a 2 MiB block */
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_DIRTY);
    write_at(e.fh, BB / 2, BB / 2, 2);
    cr_assert_eq(loads(e.m), 0, "a block written whole in two halves was loaded");
    expect_at(e.fh, 0, BB, 2);
    uint64_t n;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &n), 0);
    cr_assert_eq(loads(e.m), 0);
    expect_committed_at(e.m, 0, 0, BB, 2);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK_RANGE), 0);
    env_close(&e);
}

Test(partial, reading_the_unwritten_half_loads_the_base, .timeout = 10)
{
    struct env e;
    penv_open(&e, 4, 4, 8 << 20);
    write_at(e.fh, BB, BB / 2, 2);
    expect_at(e.fh, BB, BB / 2, 2); /* written: no load */
    cr_assert_eq(loads(e.m), 0);
    expect_at(e.fh, BB + BB / 2, BB / 2, 1);
    cr_assert_eq(loads(e.m), 1);
    cr_assert_eq(fstat_of(e.fh).fills, 1);
    expect_at(e.fh, BB, BB / 2, 2); /* the written half won */
    env_close(&e);
}

Test(partial, a_writeout_merges_a_partial_block_onto_its_base, .timeout = 10)
{
    struct env e;
    penv_open(&e, 4, 4, 8 << 20);
    write_at(e.fh, BB / 4, BB / 4, 2);
    uint64_t n;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE, &n), 0);
    cr_assert_eq(loads(e.m), 1, "the base of a partial block was not loaded once");
    expect_committed_at(e.m, 0, 0, BB / 4, 1);
    expect_committed_at(e.m, 0, BB / 4, BB / 4, 2);
    expect_committed_at(e.m, 0, BB / 2, BB / 2, 1);
    env_close(&e);
}

/* The base, not a newer version: another mount commits the block after
 * the change was made on serial 0; a writeout with OVERWRITE stores the
 * change merged onto serial 0's content. */
Test(partial, a_writeout_fills_from_the_base_not_from_a_newer_version, .timeout = 10)
{
    struct env e;
    penv_open(&e, 4, 4, 8 << 20);
    write_at(e.fh, 0, BB / 2, 2);
    bf_fileh *other;
    cr_assert_eq(bf_fileh_open(mock_open_file(e.m), e.ram, &other), 0);
    write_at(other, 0, BB, 3);
    struct bf_writeout_result r;
    cr_assert_eq(bf_fileh_writeout(other, BF_WRITEOUT_STORE, &r), 0);
    close_checked(other);
    struct bf_blkrange rg = { 0, 1 };
    struct bf_commit c = { .serial = r.serial, .ranges = &rg, .nranges = 1, .trunc = UINT64_MAX };
    cr_assert_eq(bf_fileh_apply(e.fh, &c), 0);
    bf_fileh_apply_end(e.fh);
    cr_assert_eq(fstat_of(e.fh).conflict_blocks, 1);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE, &r), -ESTALE);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_OVERWRITE, &r), 0);
    expect_committed_at(e.m, 0, 0, BB / 2, 2);
    expect_committed_at(e.m, 0, BB / 2, BB / 2, 1);
    /* And a read fills it so too. */
    env_close(&e);
}

Test(partial, a_read_fills_from_the_base_not_from_a_newer_version, .timeout = 10)
{
    struct env e;
    penv_open(&e, 4, 4, 8 << 20);
    write_at(e.fh, 0, BB / 2, 2);
    bf_fileh *other;
    cr_assert_eq(bf_fileh_open(mock_open_file(e.m), e.ram, &other), 0);
    write_at(other, 0, BB, 3);
    struct bf_writeout_result r;
    cr_assert_eq(bf_fileh_writeout(other, BF_WRITEOUT_STORE, &r), 0);
    close_checked(other);
    expect_at(e.fh, BB / 2, BB / 2, 1);
    env_close(&e);
}

Test(partial, a_write_covering_a_unit_in_part_loads_the_block, .timeout = 10)
{
    struct env e;
    penv_open(&e, 4, 4, 8 << 20);
    write_at(e.fh, 100, 200, 2);
    cr_assert_eq(loads(e.m), 1);
    write_at(e.fh, BB + 4096, 4096, 2); /* whole units: no load */
    cr_assert_eq(loads(e.m), 1);
    /* Into a partial page, a unit covered in part is filled first. */
    write_at(e.fh, BB + 10000, 100, 3);
    cr_assert_eq(loads(e.m), 2);
    expect_at(e.fh, BB, 4096, 1);
    expect_at(e.fh, BB + 4096, 4096, 2);
    expect_at(e.fh, BB + 8192, 10000 - 8192, 1);
    expect_at(e.fh, BB + 10000, 100, 3);
    expect_at(e.fh, BB + 10100, BB - 10100, 1);
    cr_assert_eq(loads(e.m), 2);
    env_close(&e);
}

Test(partial, a_write_past_the_lowest_size_needs_no_base, .timeout = 10)
{
    struct env e;
    penv_open(&e, 4, 4, 8 << 20);
    cr_assert_eq(bf_fileh_truncate(e.fh, 2 * BB), 0);
    write_at(e.fh, 3 * BB + 4096, 4096, 2);
    cr_assert_eq(loads(e.m), 0);
    char z[4096] = { 0 }, got[4096];
    cr_assert_eq(bf_fileh_read(e.fh, got, 4096, 3 * BB), 4096);
    cr_assert(memcmp(got, z, 4096) == 0, "a block past the lowest size is not zeros");
    env_close(&e);
}

Test(partial, a_spilled_partial_block_is_staged_merged, .timeout = 10)
{
    struct env e;
    penv_open(&e, 4, 4, 8 << 20);
    bf_ram_set_dirty_budget(e.ram, BB);
    write_at(e.fh, 0, BB / 2, 2);
    write_at(e.fh, BB, BB, 2); /* spills block 0: its base loaded for it */
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_SPILLED);
    cr_assert_eq(loads(e.m), 1);
    expect_at(e.fh, 0, BB / 2, 2);
    expect_at(e.fh, BB / 2, BB / 2, 1);
    uint64_t n;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE, &n), 0);
    expect_committed_at(e.m, 0, 0, BB / 2, 2);
    expect_committed_at(e.m, 0, BB / 2, BB / 2, 1);
    env_close(&e);
}

Test(partial, a_truncate_inside_a_partial_block_fills_it, .timeout = 10)
{
    struct env e;
    penv_open(&e, 4, 4, 8 << 20);
    write_at(e.fh, BB, 8192, 2);
    cr_assert_eq(bf_fileh_truncate(e.fh, BB + BB / 2 + 10), 0);
    cr_assert_eq(loads(e.m), 1);
    expect_at(e.fh, BB, 8192, 2);
    expect_at(e.fh, BB + 8192, BB / 2 + 10 - 8192, 1);
    cr_assert_eq(bf_fileh_truncate(e.fh, 2 * BB), 0);
    char z[BB / 2] = { 0 }, got[BB / 2];
    cr_assert_eq(bf_fileh_read(e.fh, got, BB / 2 - 10, BB + BB / 2 + 10), BB / 2 - 10);
    cr_assert(memcmp(got, z, BB / 2 - 10) == 0, "the tail of a partial block was not zeroed");
    env_close(&e);
}

/* After a MARKSTORED writeout a partial block stays partial, LOADED as of
 * the commit: the rest is loaded as of that serial, not newer. */
Test(partial, a_stored_partial_block_loads_the_rest_as_of_its_commit, .timeout = 10)
{
    struct env e;
    penv_open(&e, 4, 4, 8 << 20);
    write_at(e.fh, 0, BB / 2, 2);
    struct bf_writeout_result r;
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &r), 0);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_LOADED);
    bf_fileh *other;
    cr_assert_eq(bf_fileh_open(mock_open_file(e.m), e.ram, &other), 0);
    write_at(other, 0, BB, 3);
    struct bf_writeout_result r2;
    cr_assert_eq(bf_fileh_writeout(other, BF_WRITEOUT_STORE, &r2), 0);
    close_checked(other);
    expect_at(e.fh, BB / 2, BB / 2, 1); /* as of r.serial: not applied yet */
    expect_at(e.fh, 0, BB / 2, 2);
    env_close(&e);
}

/* ------------------------------------------------------------ random reads */

Test(partial, random_reads_load_64k_around_them, .timeout = 10)
{
    struct env e;
    penv_open(&e, 32, 32, 8 << 20);
    expect_at(e.fh, 20 * BB + 70000, 4096, 1);
    cr_assert_eq(loads(e.m), 0);
    cr_assert_eq(mock_range_bytes(e.m), BF_RANGE_LOAD);
    cr_assert_eq(bf_fileh_page_state(e.fh, 20), BF_PAGE_LOADED);
    expect_at(e.fh, 5 * BB + 200000, 4096, 1);
    /* Another part of block 20, far from the last read: random again. */
    expect_at(e.fh, 20 * BB + 200000, 100, 1);
    cr_assert_eq(mock_range_bytes(e.m), 3 * BF_RANGE_LOAD);
    expect_at(e.fh, 20 * BB + 70000, 4096, 1);
    expect_at(e.fh, 5 * BB + 200000, 4096, 1);
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.range_loads, 3);
    cr_assert_eq(st.bytes_loaded, 3 * BF_RANGE_LOAD);
    cr_assert_eq(loads(e.m), 0);
    /* Invalidations drop partial pages like any other. */
    mock_set_block(e.m, 20, 4);
    cr_assert_eq(bf_fileh_invalidate(e.fh, 20, 1), 0);
    cr_assert_eq(bf_fileh_page_state(e.fh, 20), BF_PAGE_EMPTY);
    expect_at(e.fh, 20 * BB + 70000, 4096, 4);
    env_close(&e);
}

Test(partial, a_sequential_read_completes_a_partial_page_whole, .timeout = 10)
{
    struct env e;
    penv_open(&e, 32, 32, 8 << 20);
    expect_at(e.fh, 20 * BB + 70000, 4096, 1);
    expect_at(e.fh, 20 * BB + 70000 + 4096, BB - 70000 - 4096, 1); /* continues it */
    cr_assert_eq(loads(e.m), 1);
    expect_at(e.fh, 20 * BB, BB, 1);
    cr_assert_eq(loads(e.m), 1);
    env_close(&e);
}

Test(partial, without_loadblk_range_random_reads_load_whole_blocks, .timeout = 10)
{
    struct env e;
    e.m = mock_new(BB, 32 * BB);
    mock_no_range(e.m);
    mock_set_block(e.m, 20, 1);
    cr_assert_eq(bf_ram_new(8 << 20, &e.ram), 0);
    cr_assert_eq(bf_fileh_open(mock_file(e.m), e.ram, &e.fh), 0);
    expect_at(e.fh, 20 * BB + 70000, 4096, 1);
    cr_assert_eq(loads(e.m), 1);
    env_close(&e);
}

Test(partial, another_mounts_commit_drops_a_partial_page, .timeout = 10)
{
    struct env e;
    penv_open(&e, 32, 32, 8 << 20);
    expect_at(e.fh, 20 * BB + 70000, 4096, 1);
    bf_fileh *other;
    cr_assert_eq(bf_fileh_open(mock_open_file(e.m), e.ram, &other), 0);
    write_at(other, 20 * BB, BB, 3);
    struct bf_writeout_result r;
    cr_assert_eq(bf_fileh_writeout(other, BF_WRITEOUT_STORE, &r), 0);
    close_checked(other);
    struct bf_blkrange rg = { 20, 1 };
    struct bf_commit c = { .serial = r.serial, .ranges = &rg, .nranges = 1, .trunc = UINT64_MAX };
    cr_assert_eq(bf_fileh_apply(e.fh, &c), 0);
    bf_fileh_apply_end(e.fh);
    cr_assert_eq(bf_fileh_page_state(e.fh, 20), BF_PAGE_EMPTY);
    expect_at(e.fh, 20 * BB + 200000, 4096, 3);
    env_close(&e);
}

struct reader {
    pthread_t thr;
    bf_fileh *fh;
    uint64_t off;
    size_t len;
    char *buf;
    ssize_t ret;
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    rd->ret = bf_fileh_read(rd->fh, rd->buf, rd->len, rd->off);
    return NULL;
}

Test(partial, a_partial_load_in_flight_is_thrown_away_when_invalidated, .timeout = 20)
{
    struct env e;
    penv_open(&e, 32, 32, 8 << 20);
    mock_gate(e.m, MOCK_LOADBLK_RANGE, 20);
    struct reader rd = { .fh = e.fh, .off = 20 * BB + 70000, .len = 4096, .ret = -12345 };
    rd.buf = malloc(4096);
    cr_assert_eq(pthread_create(&rd.thr, NULL, reader_main, &rd), 0);
    cr_assert(mock_gate_wait(e.m, MOCK_LOADBLK_RANGE, 1, 10000), "the partial load did not start");
    mock_set_block(e.m, 20, 4);
    cr_assert_eq(bf_fileh_invalidate(e.fh, 20, 1), 0);
    mock_gate_release(e.m, MOCK_LOADBLK_RANGE);
    pthread_join(rd.thr, NULL);
    cr_assert_eq(rd.ret, 4096);
    char *want = pattern(4, rd.off, 4096);
    cr_assert(memcmp(rd.buf, want, 4096) == 0, "a partial load invalidated in flight was served");
    free(want);
    free(rd.buf);
    env_close(&e);
}

/* ------------------------------------------------------------ prefetch */

Test(prefetch, sequential_reads_offer_the_next_blocks, .timeout = 10)
{
    struct env e;
    penv_open(&e, 16, 16, 16 * BB);
    uint64_t blk, n, loaded;
    expect_at(e.fh, 0, BB, 1);
    cr_assert_not(bf_fileh_readahead(e.fh, &blk, &n), "one read is not a sequence");
    expect_at(e.fh, BB, BB, 1);
    cr_assert(bf_fileh_readahead(e.fh, &blk, &n));
    cr_assert_eq(blk, 2);
    cr_assert_eq(n, 4, "the window is a quarter of the budget");
    cr_assert_not(bf_fileh_readahead(e.fh, &blk, &n), "the same blocks offered twice");
    cr_assert_eq(bf_fileh_prefetch(e.fh, 2, 4, &loaded), 0);
    cr_assert_eq(loaded, 4);
    cr_assert_eq(rstat_of(e.ram).ahead_bytes, 4 * BB);
    cr_assert_eq(fstat_of(e.fh).prefetched_blocks, 4);
    uint64_t before = loads(e.m);
    expect_at(e.fh, 2 * BB, BB, 1);
    cr_assert_eq(loads(e.m), before, "a prefetched block was loaded again");
    cr_assert_eq(rstat_of(e.ram).ahead_bytes, 3 * BB);
    cr_assert(bf_fileh_readahead(e.fh, &blk, &n));
    cr_assert_eq(blk, 6);
    cr_assert_eq(n, 1);
    /* A random read ends the sequence. */
    expect_at(e.fh, 12 * BB, 4096, 1);
    cr_assert_not(bf_fileh_readahead(e.fh, &blk, &n));
    env_close(&e);
}

Test(prefetch, loads_at_most_a_quarter_of_the_budget_ahead, .timeout = 10)
{
    struct env e;
    penv_open(&e, 16, 16, 8 * BB);
    uint64_t loaded;
    cr_assert_eq(bf_fileh_prefetch(e.fh, 0, 100, &loaded), 0);
    cr_assert_eq(loaded, 2);
    cr_assert_eq(rstat_of(e.ram).ahead_bytes, 2 * BB);
    /* Cached, dirty or past the size: nothing to do. */
    write_at(e.fh, 3 * BB, BB, 2);
    expect_at(e.fh, 0, BB, 1);
    cr_assert_eq(bf_fileh_prefetch(e.fh, 3, 1, &loaded), 0);
    cr_assert_eq(loaded, 0);
    cr_assert_eq(bf_fileh_prefetch(e.fh, 16, 5, &loaded), 0);
    cr_assert_eq(loaded, 0);
    cr_assert_eq(bf_fileh_prefetch(e.fh, UINT64_MAX, 2, &loaded), -EINVAL);
    env_close(&e);
}

Test(prefetch, a_discarded_block_is_not_served_from_a_prefetch, .timeout = 10)
{
    struct env e;
    penv_open(&e, 16, 16, 16 * BB);
    uint64_t loaded;
    cr_assert_eq(bf_fileh_prefetch(e.fh, 3, 1, &loaded), 0);
    write_at(e.fh, 3 * BB, 4096, 2);
    cr_assert_eq(bf_fileh_discard(e.fh, NULL), 0);
    cr_assert_eq(bf_fileh_prefetch(e.fh, 3, 1, &loaded), 0);
    expect_at(e.fh, 3 * BB, BB, 1);
    env_close(&e);
}

struct prefetcher {
    pthread_t thr;
    bf_fileh *fh;
    uint64_t blk, loaded;
    int ret;
};

static void *prefetcher_main(void *arg)
{
    struct prefetcher *p = arg;
    p->ret = bf_fileh_prefetch(p->fh, p->blk, 1, &p->loaded);
    return NULL;
}

/* A prefetch's load is held with the old content; the block changes
 * (invalidate, or another mount's commit applied); released, the load is
 * thrown away and a read sees the new content. */
static void stale_prefetch(bool by_apply)
{
    struct env e;
    penv_open(&e, 16, 16, 16 * BB);
    mock_gate(e.m, MOCK_LOADBLK, 3);
    struct prefetcher p = { .fh = e.fh, .blk = 3, .ret = -12345 };
    cr_assert_eq(pthread_create(&p.thr, NULL, prefetcher_main, &p), 0);
    cr_assert(mock_gate_wait(e.m, MOCK_LOADBLK, 1, 10000), "the prefetch did not load");
    if (by_apply) {
        bf_fileh *other;
        cr_assert_eq(bf_fileh_open(mock_open_file(e.m), e.ram, &other), 0);
        write_at(other, 3 * BB, BB, 9); /* whole: no load */
        struct bf_writeout_result r;
        cr_assert_eq(bf_fileh_writeout(other, BF_WRITEOUT_STORE, &r), 0);
        close_checked(other);
        struct bf_blkrange rg = { 3, 1 };
        struct bf_commit c = {
            .serial = r.serial, .ranges = &rg, .nranges = 1, .trunc = UINT64_MAX
        };
        cr_assert_eq(bf_fileh_apply(e.fh, &c), 0);
        bf_fileh_apply_end(e.fh);
    } else {
        mock_set_block(e.m, 3, 9);
        cr_assert_eq(bf_fileh_invalidate(e.fh, 3, 1), 0);
    }
    mock_gate_release(e.m, MOCK_LOADBLK);
    pthread_join(p.thr, NULL);
    cr_assert_eq(p.ret, 0);
    cr_assert_eq(p.loaded, 0, "an invalidated prefetch counted as loaded");
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_EMPTY);
    expect_at(e.fh, 3 * BB, BB, 9);
    env_close(&e);
}

Test(prefetch, never_serves_stale_data_after_an_invalidate, .timeout = 20)
{
    stale_prefetch(false);
}

Test(prefetch, never_serves_stale_data_after_another_mounts_commit, .timeout = 20)
{
    stale_prefetch(true);
}
