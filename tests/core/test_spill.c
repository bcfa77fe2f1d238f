/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: spilling (fileh.h, "Spilling"): DIRTY blocks
 * past the ram's dirty budget go to the store's staging area (the mock's:
 * mockfile.h) and come back; writeout commits them from there; discard,
 * invalidate, truncate and close drop their staged contents; a full
 * staging area fails the write that needed room and changes nothing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* SEEK_DATA */
#endif
#include <unistd.h>

#include "corehelp.h"

/* env_open, then a dirty budget of `blocks` blocks. */
static void env_spill(struct env *e, uint64_t size, uint64_t nfilled, uint64_t blocks)
{
    env_open(e, size, nfilled, 1 << 20);
    bf_ram_set_dirty_budget(e->ram, blocks * BS);
}

static void expect_states(bf_fileh *fh, uint64_t dirty, uint64_t spilled)
{
    struct bf_fileh_stats st = fstat_of(fh);
    cr_assert_eq(st.dirty_blocks, dirty, "%llu dirty blocks, %llu expected",
                 (unsigned long long)st.dirty_blocks, (unsigned long long)dirty);
    cr_assert_eq(st.spilled_blocks, spilled, "%llu spilled blocks, %llu expected",
                 (unsigned long long)st.spilled_blocks, (unsigned long long)spilled);
}

Test(spill, past_the_budget_the_least_recently_written_blocks_spill, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 2);
    for (uint64_t b = 0; b < 5; b++)
        write_block(e.fh, b, 2);
    expect_states(e.fh, 2, 3);
    cr_assert_eq(rstat_of(e.ram).dirty_bytes, 2 * BS);
    cr_assert_eq(rstat_of(e.ram).spilled_bytes, 3 * BS);
    cr_assert_eq(mock_staged(e.m), 3);
    /* The oldest went first: 0, 1, 2; 3 and 4 stay in memory. */
    for (uint64_t b = 0; b < 3; b++)
        cr_assert_eq(bf_fileh_page_state(e.fh, b), BF_PAGE_SPILLED, "block %llu",
                     (unsigned long long)b);
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 4), BF_PAGE_DIRTY);
    cr_assert(bf_fileh_isdirty(e.fh));
    /* A rewrite makes a block the most recently written. */
    write_block(e.fh, 3, 3);
    write_block(e.fh, 5, 2); /* spills 4, not 3 */
    cr_assert_eq(bf_fileh_page_state(e.fh, 4), BF_PAGE_SPILLED);
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_DIRTY);
    cr_assert_eq(fstat_of(e.fh).spills, 4);
    env_close(&e);
}

Test(spill, a_spilled_block_is_read_back_changed_again_and_committed, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 2);
    for (uint64_t b = 0; b < 4; b++)
        write_block(e.fh, b, 2);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_SPILLED);
    expect_block(e.fh, 0, 2); /* read back, making room first */
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_DIRTY);
    cr_assert_eq(fstat_of(e.fh).unspills, 1);
    cr_assert_leq(rstat_of(e.ram).dirty_bytes, 2 * BS);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 0, "a spilled block was loaded from the store");
    /* Changed again, in part: the rest is its spilled content. */
    char *p = pattern(3, 100, 200);
    cr_assert_eq(bf_fileh_write(e.fh, p, 200, 100), 200);
    free(p);
    /* A partial write of a spilled block reads it back first. */
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_SPILLED);
    p = pattern(3, BS + 10, 20);
    cr_assert_eq(bf_fileh_write(e.fh, p, 20, BS + 10), 20);
    free(p);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_DIRTY);
    uint64_t n;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &n), 0);
    cr_assert_eq(n, 4);
    cr_assert_gt(mock_calls(e.m, MOCK_STOREBLK_STAGED), 0, "no spilled block was committed so");
    cr_assert_eq(mock_staged(e.m), 0, "the commit left staged contents");
    expect_states(e.fh, 0, 0);
    char got[BS], *want = pattern(2, 0, BS), *p3 = pattern(3, 100, 200);
    memcpy(want + 100, p3, 200);
    mock_get_block(e.m, 0, got);
    cr_assert(memcmp(got, want, BS) == 0, "block 0 committed wrong");
    free(want);
    free(p3);
    want = pattern(2, BS, BS);
    p3 = pattern(3, BS + 10, 20);
    memcpy(want + 10, p3, 20);
    mock_get_block(e.m, 1, got);
    cr_assert(memcmp(got, want, BS) == 0, "block 1 committed wrong");
    free(want);
    free(p3);
    expect_committed(e.m, 2, 2);
    expect_committed(e.m, 3, 2);
    cr_assert(!bf_fileh_isdirty(e.fh));
    env_close(&e);
}

Test(spill, discard_drops_every_staged_content, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 1);
    for (uint64_t b = 0; b < 6; b++)
        write_block(e.fh, b, 2);
    cr_assert_eq(mock_staged(e.m), 5);
    uint64_t n;
    cr_assert_eq(bf_fileh_discard(e.fh, &n), 0);
    cr_assert_eq(n, 6);
    cr_assert_eq(mock_staged(e.m), 0, "discard left staged contents");
    cr_assert_eq(mock_calls(e.m, MOCK_STAGE_DROP), 5);
    expect_states(e.fh, 0, 0);
    cr_assert_eq(rstat_of(e.ram).spilled_bytes, 0);
    cr_assert(!bf_fileh_isdirty(e.fh));
    for (uint64_t b = 0; b < 6; b++)
        expect_block(e.fh, b, 1);
    env_close(&e);
}

Test(spill, invalidate_truncate_and_close_drop_staged_contents, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 1);
    for (uint64_t b = 0; b < 6; b++)
        write_block(e.fh, b, 2);
    cr_assert_eq(mock_staged(e.m), 5);
    cr_assert_eq(bf_fileh_invalidate(e.fh, 1, 1), 0);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_EMPTY);
    cr_assert_eq(mock_staged(e.m), 4);
    expect_block(e.fh, 1, 1);
    cr_assert_eq(bf_fileh_truncate(e.fh, 3 * BS), 0); /* drops 3, 4 (spilled), 5 (dirty) */
    cr_assert_eq(mock_staged(e.m), 2);
    expect_states(e.fh, 0, 2);
    close_checked(e.fh);
    cr_assert_eq(mock_staged(e.m), 0, "close left staged contents");
    cr_assert_eq(bf_ram_free(e.ram), 0);
    mock_free(e.m);
}

Test(spill, a_truncate_inside_a_spilled_block_reads_it_back, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 1);
    write_block(e.fh, 2, 2);
    write_block(e.fh, 3, 2);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_SPILLED);
    cr_assert_eq(bf_fileh_truncate(e.fh, 2 * BS + 100), 0);
    char got[BS], *want = pattern(2, 2 * BS, BS);
    memset(want + 100, 0, BS - 100);
    cr_assert_eq(bf_fileh_read(e.fh, got, BS, 2 * BS), 100);
    cr_assert(memcmp(got, want, 100) == 0);
    cr_assert_eq(bf_fileh_truncate(e.fh, 3 * BS), 0);
    cr_assert_eq(bf_fileh_read(e.fh, got, BS, 2 * BS), BS);
    cr_assert(memcmp(got, want, BS) == 0, "the tail of a spilled block was not zeroed");
    free(want);
    env_close(&e);
}

Test(spill, a_whole_block_write_drops_the_staged_content_without_reading_it, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 1);
    write_block(e.fh, 0, 2);
    write_block(e.fh, 1, 2);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_SPILLED);
    write_block(e.fh, 0, 3); /* spills 1 to make room; replaces 0 */
    cr_assert_eq(mock_calls(e.m, MOCK_UNSTAGE), 0);
    cr_assert_eq(mock_calls(e.m, MOCK_STAGE_DROP), 1);
    cr_assert_eq(mock_staged(e.m), 1);
    expect_block(e.fh, 0, 3);
    env_close(&e);
}

/* A writeout that fails half-way leaves every block dirty or spilled,
 * every staged content kept, and a retry commits them all. */
static void fails_half_way(enum mock_op op, unsigned skip)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 2);
    for (uint64_t b = 0; b < 6; b++)
        write_block(e.fh, b, 2);
    expect_states(e.fh, 2, 4);
    mock_fail(e.m, op, EIO, MOCK_ANY, skip, false);
    uint64_t n;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &n), -EIO);
    expect_states(e.fh, 2, 4);
    cr_assert_eq(mock_staged(e.m), 4, "a failed writeout lost staged contents");
    cr_assert_eq(mock_serial(e.m), 0);
    for (uint64_t b = 0; b < 6; b++)
        expect_committed(e.m, b, 1);
    cr_assert(bf_fileh_isdirty(e.fh));
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &n), 0);
    cr_assert_eq(n, 6);
    for (uint64_t b = 0; b < 6; b++)
        expect_committed(e.m, b, 2);
    cr_assert_eq(mock_staged(e.m), 0);
    cr_assert(!bf_fileh_isdirty(e.fh));
    for (uint64_t b = 0; b < 6; b++)
        expect_block(e.fh, b, 2);
    env_close(&e);
}

Test(spill, a_writeout_failing_at_a_staged_store_is_retried, .timeout = 10)
{
    fails_half_way(MOCK_STOREBLK_STAGED, 2);
}

Test(spill, a_writeout_failing_at_a_store_is_retried, .timeout = 10)
{
    fails_half_way(MOCK_STOREBLK, 1);
}

Test(spill, a_writeout_failing_at_the_commit_is_retried, .timeout = 10)
{
    fails_half_way(MOCK_COMMIT, 0);
}

/* The RSS bound: whatever is written through a handle, the dirty bytes in
 * memory stay within the budget (and the content round-trips). */
Test(spill, fifty_times_the_budget_stays_within_it, .timeout = 30)
{
    struct env e;
    const uint64_t budget = 4, nblk = 50 * budget;
    env_spill(&e, 0, 0, budget);
    uint64_t most = 0;
    for (uint64_t b = 0; b < nblk; b++) {
        write_block(e.fh, b, 5);
        uint64_t d = rstat_of(e.ram).dirty_bytes;
        most = d > most ? d : most;
    }
    cr_assert_leq(most, budget * BS + BS, "%llu dirty bytes in memory, budget %llu",
                  (unsigned long long)most, (unsigned long long)(budget * BS));
    cr_assert_eq(mock_staged(e.m), nblk - budget);
    for (uint64_t b = 0; b < nblk; b++) {
        expect_block(e.fh, b, 5);
        cr_assert_leq(rstat_of(e.ram).dirty_bytes, budget * BS + BS);
    }
    uint64_t n;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &n), 0);
    cr_assert_eq(n, nblk);
    for (uint64_t b = 0; b < nblk; b++)
        expect_committed(e.m, b, 5);
    cr_assert_eq(mock_staged(e.m), 0);
    cr_assert_eq(mock_committed_size(e.m), nblk * BS);
    env_close(&e);
}

Test(spill, a_full_staging_area_fails_the_write_and_changes_nothing, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 2);
    write_block(e.fh, 0, 2);
    write_block(e.fh, 1, 2);
    expect_block(e.fh, 4, 1); /* LOADED: a partial write of it pins it */
    mock_fail(e.m, MOCK_STAGE, ENOSPC, MOCK_ANY, 0, true);
    char *p = pattern(3, 2 * BS, BS);
    cr_assert_eq(bf_fileh_write(e.fh, p, BS, 2 * BS), -ENOSPC);
    free(p);
    p = pattern(3, 4 * BS + 8, 8);
    cr_assert_eq(bf_fileh_write(e.fh, p, 8, 4 * BS + 8), -ENOSPC);
    free(p);
    p = pattern(3, 10 * BS, 8);
    cr_assert_eq(bf_fileh_write(e.fh, p, 8, 10 * BS), -ENOSPC, "a growing write");
    free(p);
    /* Nothing changed. */
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 4), BF_PAGE_LOADED, "a failed write left a pin");
    cr_assert_eq(bf_fileh_size(e.fh), 8 * BS);
    expect_states(e.fh, 2, 0);
    expect_block(e.fh, 2, 1);
    expect_block(e.fh, 4, 1);
    cr_assert_eq(mock_staged(e.m), 0);
    /* A write into a block already dirty needs no room. */
    write_block(e.fh, 1, 3);
    /* Writeout still works, and frees the room. */
    uint64_t n;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &n), 0);
    cr_assert_eq(n, 2);
    expect_committed(e.m, 1, 3);
    write_block(e.fh, 2, 3);
    write_block(e.fh, 3, 3);
    /* So does discard. */
    cr_assert_eq(bf_fileh_discard(e.fh, &n), 0);
    cr_assert_eq(n, 2);
    expect_block(e.fh, 2, 1);
    mock_clear_faults(e.m);
    env_close(&e);
}

/* The kernel's writeback of a mapped page cannot keep its bytes when its
 * WRITE fails (FUSE does not mark the page dirty again): such a write goes
 * over the budget when staging is full, and so does reading a spilled
 * block back; write(2) still gets ENOSPC. */
Test(spill, with_staging_full_a_kept_write_and_a_reload_go_over_the_budget, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 2);
    write_block(e.fh, 0, 2);
    write_block(e.fh, 1, 2);
    write_block(e.fh, 2, 2); /* block 0 spills */
    expect_states(e.fh, 2, 1);
    mock_fail(e.m, MOCK_STAGE, ENOSPC, MOCK_ANY, 0, true);
    char *p = pattern(4, 3 * BS, BS);
    bool over;
    ssize_t kw = bf_fileh_write_flags(e.fh, p, BS, 3 * BS, BF_WRITE_KEEP, &over);
    cr_assert_eq(kw, BS, "%zd", kw);
    cr_assert(over);
    free(p);
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.kept_writes, 1);
    cr_assert_geq(st.spill_failures, 1);
    expect_states(e.fh, 3, 1);
    expect_block(e.fh, 3, 4);
    /* write(2) still fails, changing nothing (the oldest refused page is
     * offered again, and refused again). */
    p = pattern(5, 4 * BS, BS);
    cr_assert_eq(bf_fileh_write(e.fh, p, BS, 4 * BS), -ENOSPC);
    free(p);
    cr_assert_eq(bf_fileh_page_state(e.fh, 4), BF_PAGE_EMPTY);
    /* A spilled block reads back (over the budget). */
    expect_block(e.fh, 0, 2);
    expect_states(e.fh, 4, 0);
    /* Everything commits. */
    mock_clear_faults(e.m);
    uint64_t n;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &n), 0);
    cr_assert_eq(n, 4);
    expect_committed(e.m, 0, 2);
    expect_committed(e.m, 1, 2);
    expect_committed(e.m, 2, 2);
    expect_committed(e.m, 3, 4);
    env_close(&e);
}

/* A page staging refused is passed over (the next one is tried), and
 * offered again once it is written again. */
Test(spill, a_refused_page_is_passed_over_until_it_is_written_again, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 2);
    write_block(e.fh, 0, 2);
    write_block(e.fh, 1, 2);
    mock_fail(e.m, MOCK_STAGE, ENOSPC, MOCK_ANY, 0, true);
    char *p = pattern(3, 2 * BS, BS);
    cr_assert_eq(bf_fileh_write(e.fh, p, BS, 2 * BS), -ENOSPC); /* block 0 refused */
    mock_clear_faults(e.m);
    cr_assert_eq(bf_fileh_write(e.fh, p, BS, 2 * BS), BS);
    free(p);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_DIRTY, "passed over");
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_SPILLED);
    write_block(e.fh, 0, 4); /* written again: offered again */
    write_block(e.fh, 3, 2); /* spills block 2, the least recently written */
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_SPILLED);
    write_block(e.fh, 4, 2); /* spills block 0 */
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_SPILLED);
    expect_block(e.fh, 0, 4);
    env_close(&e);
}

/* When only refused pages are left, a write that can fail offers the
 * oldest again: once staging has room (a writeout elsewhere freed some),
 * write(2) works again without the refused pages being written first. */
Test(spill, with_only_refused_pages_left_staging_is_tried_again, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 2);
    write_block(e.fh, 0, 2);
    write_block(e.fh, 1, 2);
    mock_fail(e.m, MOCK_STAGE, ENOSPC, MOCK_ANY, 0, true);
    char *p = pattern(3, 2 * BS, BS);
    cr_assert_eq(bf_fileh_write(e.fh, p, BS, 2 * BS), -ENOSPC); /* block 0 refused */
    cr_assert_eq(bf_fileh_write(e.fh, p, BS, 2 * BS), -ENOSPC); /* block 1 refused */
    cr_assert_eq(bf_fileh_write(e.fh, p, BS, 2 * BS), -ENOSPC, "both refused, still full");
    mock_clear_faults(e.m);
    cr_assert_eq(bf_fileh_write(e.fh, p, BS, 2 * BS), BS, "staging has room again");
    free(p);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_SPILLED);
    expect_block(e.fh, 2, 3);
    expect_block(e.fh, 0, 2);
    env_close(&e);
}

Test(spill, an_unspill_that_fails_leaves_the_block_spilled, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 1);
    write_block(e.fh, 0, 2);
    write_block(e.fh, 1, 2);
    mock_fail(e.m, MOCK_UNSTAGE, EIO, MOCK_ANY, 0, false);
    char buf[BS];
    cr_assert_eq(bf_fileh_read(e.fh, buf, BS, 0), -EIO);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_SPILLED);
    cr_assert_eq(mock_staged(e.m), 2, "the one made room for, and block 0's");
    expect_block(e.fh, 0, 2);
    env_close(&e);
}

Test(spill, without_staging_the_dirty_blocks_stay_in_memory, .timeout = 10)
{
    struct env e;
    e.m = mock_new(BS, 8 * BS);
    mock_no_stage(e.m);
    cr_assert_eq(bf_ram_new(1 << 20, &e.ram), 0);
    cr_assert_eq(bf_fileh_open(mock_file(e.m), e.ram, &e.fh), 0);
    bf_ram_set_dirty_budget(e.ram, BS);
    for (uint64_t b = 0; b < 4; b++)
        write_block(e.fh, b, 2);
    expect_states(e.fh, 4, 0);
    cr_assert_eq(rstat_of(e.ram).dirty_bytes, 4 * BS);
    env_close(&e);
}

Test(spill, staging_is_all_four_operations_or_none, .timeout = 10)
{
    struct mockfile *m = mock_new(BS, 0);
    bf_ram *ram;
    bf_fileh *fh;
    cr_assert_eq(bf_ram_new(0, &ram), 0);
    struct bf_file_ops ops = *mock_file(m)->ops;
    const struct bf_file_ops *saved = mock_file(m)->ops;
    ops.stage_drop = NULL;
    mock_file(m)->ops = &ops;
    cr_assert_eq(bf_fileh_open(mock_file(m), ram, &fh), -EINVAL);
    mock_file(m)->ops = saved;
    cr_assert_eq(bf_ram_free(ram), 0);
    mock_free(m);
}

Test(spill, markstored_alone_leaves_spilled_blocks_spilled, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 1);
    write_block(e.fh, 0, 2);
    write_block(e.fh, 1, 2);
    uint64_t n;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_MARKSTORED, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_SPILLED);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_LOADED);
    cr_assert(bf_fileh_isdirty(e.fh));
    env_close(&e);
}

Test(spill, store_without_markstored_empties_spilled_blocks, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 1);
    write_block(e.fh, 0, 2);
    write_block(e.fh, 1, 2);
    uint64_t n;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_DIRTY);
    expect_committed(e.m, 0, 2);
    expect_block(e.fh, 0, 2);
    env_close(&e);
}

Test(spill, spilled_blocks_are_data_and_allocated, .timeout = 10)
{
    struct env e;
    env_spill(&e, 0, 0, 1);
    write_block(e.fh, 3, 2);
    write_block(e.fh, 6, 2);
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_SPILLED);
    uint64_t res, bytes;
    cr_assert_eq(bf_fileh_seek_data(e.fh, 0, SEEK_DATA, &res), 0);
    cr_assert_eq(res, 3 * BS);
    cr_assert_eq(bf_fileh_allocated_bytes(e.fh, &bytes), 0);
    cr_assert_eq(bytes, 2 * BS);
    env_close(&e);
}

/* Another mount's commit marks a spilled block conflicting like a dirty
 * one; the refused writeout keeps it staged; OVERWRITE commits it. */
Test(spill, another_mounts_commit_makes_a_spilled_block_conflict, .timeout = 10)
{
    struct env e;
    env_spill(&e, 8 * BS, 8, 1);
    write_block(e.fh, 2, 2);
    write_block(e.fh, 3, 2);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_SPILLED);
    /* The other mount. */
    bf_fileh *other;
    cr_assert_eq(bf_fileh_open(mock_open_file(e.m), e.ram, &other), 0);
    write_block(other, 2, 4); /* spills our block 3 */
    struct bf_writeout_result r;
    cr_assert_eq(bf_fileh_writeout(other, BF_WRITEOUT_STORE, &r), 0);
    close_checked(other);
    struct bf_blkrange rg = { 2, 1 };
    struct bf_commit c = { .serial = r.serial, .ranges = &rg, .nranges = 1, .trunc = UINT64_MAX };
    cr_assert_eq(bf_fileh_apply(e.fh, &c), 0);
    bf_fileh_apply_end(e.fh);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_SPILLED);
    cr_assert_eq(fstat_of(e.fh).conflict_blocks, 1);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE, &r), -ESTALE);
    cr_assert_eq(r.conflicts, 1);
    cr_assert_eq(mock_staged(e.m), 2);
    expect_block(e.fh, 2, 2); /* read back, still conflicting */
    cr_assert_eq(fstat_of(e.fh).conflict_blocks, 1, "the conflict was lost reading it back");
    write_block(e.fh, 4, 2); /* spills one of them again */
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_OVERWRITE, &r), 0);
    expect_committed(e.m, 2, 2);
    expect_committed(e.m, 3, 2);
    expect_committed(e.m, 4, 2);
    cr_assert_eq(mock_staged(e.m), 0);
    cr_assert_eq(fstat_of(e.fh).conflict_blocks, 0);
    env_close(&e);
}
