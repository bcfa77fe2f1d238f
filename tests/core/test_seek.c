/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: SEEK_DATA / SEEK_HOLE and allocated bytes of a
 * handle (bf_fileh_seek_data, bf_fileh_allocated_bytes), single-threaded;
 * the races with a writeout are in test_concurrency.c. */
#define _GNU_SOURCE /* SEEK_DATA, SEEK_HOLE */
#include <unistd.h>

#include "corehelp.h"

/* The result of a seek, or the negative error. */
static int64_t seek(bf_fileh *fh, uint64_t off, int whence)
{
    uint64_t res = UINT64_MAX;
    int r = bf_fileh_seek_data(fh, off, whence, &res);
    if (r < 0)
        return r;
    cr_assert_lt(res, (uint64_t)INT64_MAX);
    return (int64_t)res;
}

static uint64_t allocated(bf_fileh *fh)
{
    uint64_t b = UINT64_MAX;
    cr_assert_eq(bf_fileh_allocated_bytes(fh, &b), 0);
    return b;
}

/* A 10-block file with committed blocks 2, 3, 7 and a handle on it. */
static void env_sparse(struct env *e, uint64_t size)
{
    e->m = mock_new(BS, size);
    mock_set_block(e->m, 2, 1);
    mock_set_block(e->m, 3, 1);
    mock_set_block(e->m, 7, 1);
    cr_assert_eq(bf_ram_new(1 << 20, &e->ram), 0);
    cr_assert_eq(bf_fileh_open(mock_file(e->m), e->ram, &e->fh), 0);
}

Test(seek, committed_blocks, .timeout = 10)
{
    struct env e;
    env_sparse(&e, 10 * BS);
    cr_assert_eq(seek(e.fh, 0, SEEK_DATA), 2 * BS);
    cr_assert_eq(seek(e.fh, 0, SEEK_HOLE), 0);
    cr_assert_eq(seek(e.fh, 2 * BS, SEEK_DATA), 2 * BS);
    cr_assert_eq(seek(e.fh, 2 * BS + 5, SEEK_DATA), 2 * BS + 5);
    cr_assert_eq(seek(e.fh, 2 * BS + 5, SEEK_HOLE), 4 * BS);
    cr_assert_eq(seek(e.fh, 3 * BS, SEEK_HOLE), 4 * BS);
    cr_assert_eq(seek(e.fh, 4 * BS, SEEK_DATA), 7 * BS);
    cr_assert_eq(seek(e.fh, 4 * BS + 1, SEEK_HOLE), 4 * BS + 1);
    cr_assert_eq(seek(e.fh, 7 * BS, SEEK_HOLE), 8 * BS);
    cr_assert_eq(seek(e.fh, 8 * BS, SEEK_DATA), -ENXIO);
    cr_assert_eq(seek(e.fh, 9 * BS + 7, SEEK_HOLE), 9 * BS + 7);
    cr_assert_eq(seek(e.fh, 10 * BS, SEEK_DATA), -ENXIO);
    cr_assert_eq(seek(e.fh, 10 * BS, SEEK_HOLE), -ENXIO);
    cr_assert_eq(seek(e.fh, UINT64_MAX, SEEK_HOLE), -ENXIO);
    uint64_t res;
    cr_assert_eq(bf_fileh_seek_data(e.fh, 0, SEEK_SET, &res), -EINVAL);
    cr_assert_eq(allocated(e.fh), 3 * BS);
    /* Nothing was loaded to answer. */
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 0);
    env_close(&e);
}

Test(seek, data_up_to_the_end, .timeout = 10)
{
    struct env e;
    env_sparse(&e, 7 * BS + 100); /* block 7 is the partial last one */
    cr_assert_eq(seek(e.fh, 4 * BS, SEEK_DATA), 7 * BS);
    cr_assert_eq(seek(e.fh, 7 * BS, SEEK_HOLE), 7 * BS + 100);
    cr_assert_eq(seek(e.fh, 7 * BS + 99, SEEK_DATA), 7 * BS + 99);
    cr_assert_eq(seek(e.fh, 7 * BS + 100, SEEK_DATA), -ENXIO);
    cr_assert_eq(allocated(e.fh), 3 * BS, "a partial block counts whole");
    env_close(&e);
}

Test(seek, cached_and_dirty_blocks_are_data, .timeout = 10)
{
    struct env e;
    env_sparse(&e, 10 * BS);
    write_block(e.fh, 5, 2); /* DIRTY, not stored */
    cr_assert_eq(seek(e.fh, 4 * BS, SEEK_DATA), 5 * BS);
    cr_assert_eq(seek(e.fh, 5 * BS, SEEK_HOLE), 6 * BS);
    cr_assert_eq(allocated(e.fh), 4 * BS);
    /* Past the end, unwritten: the size grows and the new block is data,
     * the blocks between are holes. */
    char c = 'x';
    cr_assert_eq(bf_fileh_write(e.fh, &c, 1, 14 * BS + 3), 1);
    cr_assert_eq(seek(e.fh, 8 * BS, SEEK_DATA), 14 * BS);
    cr_assert_eq(seek(e.fh, 14 * BS, SEEK_HOLE), 14 * BS + 4);
    cr_assert_eq(allocated(e.fh), 5 * BS);
    /* A hole that was read (LOADED, zeros) stays a hole; a stored block
     * that was read stays data. */
    expect_block(e.fh, 9, 0);
    expect_block(e.fh, 7, 1);
    cr_assert_eq(bf_fileh_page_state(e.fh, 9), BF_PAGE_LOADED);
    cr_assert_eq(seek(e.fh, 8 * BS, SEEK_DATA), 14 * BS);
    cr_assert_eq(seek(e.fh, 7 * BS, SEEK_DATA), 7 * BS);
    cr_assert_eq(seek(e.fh, 7 * BS, SEEK_HOLE), 8 * BS);
    /* Written out: the backend has them, the count is asked again. */
    uint64_t before = mock_calls(e.m, MOCK_STORED_BLOCKS);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    bf_fileh_reclaim(e.fh, NULL);
    cr_assert_eq(seek(e.fh, 4 * BS, SEEK_DATA), 5 * BS);
    cr_assert_eq(seek(e.fh, 8 * BS, SEEK_DATA), 14 * BS);
    cr_assert_eq(allocated(e.fh), 5 * BS);
    cr_assert_eq(mock_calls(e.m, MOCK_STORED_BLOCKS), before + 1);
    env_close(&e);
}

Test(seek, markstored_only_blocks_past_the_lowest_size_are_data, .timeout = 10)
{
    struct env e;
    env_sparse(&e, 10 * BS);
    cr_assert_eq(bf_fileh_truncate(e.fh, 4 * BS), 0);
    cr_assert_eq(bf_fileh_truncate(e.fh, 10 * BS), 0);
    write_block(e.fh, 8, 2);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_MARKSTORED, NULL), 0);
    cr_assert_eq(bf_fileh_page_state(e.fh, 8), BF_PAGE_LOADED);
    /* Block 8 holds data while cached (reads return it) though the
     * backend has none of it: data. Block 7 (stored) is past the size
     * kept: a hole. */
    cr_assert_eq(seek(e.fh, 4 * BS, SEEK_DATA), 8 * BS);
    cr_assert_eq(seek(e.fh, 8 * BS, SEEK_HOLE), 9 * BS);
    env_close(&e);
}

Test(seek, discard_makes_holes_again, .timeout = 10)
{
    struct env e;
    env_sparse(&e, 10 * BS);
    write_block(e.fh, 5, 2);
    cr_assert_eq(seek(e.fh, 4 * BS, SEEK_DATA), 5 * BS);
    cr_assert_eq(bf_fileh_discard(e.fh, NULL), 0);
    cr_assert_eq(seek(e.fh, 4 * BS, SEEK_DATA), 7 * BS);
    cr_assert_eq(allocated(e.fh), 3 * BS);
    env_close(&e);
}

Test(seek, shrink_hides_stored_blocks, .timeout = 10)
{
    struct env e;
    env_sparse(&e, 10 * BS);
    cr_assert_eq(bf_fileh_truncate(e.fh, 3 * BS), 0);
    cr_assert_eq(seek(e.fh, 0, SEEK_DATA), 2 * BS);
    cr_assert_eq(seek(e.fh, 2 * BS, SEEK_HOLE), 3 * BS);
    cr_assert_eq(seek(e.fh, 3 * BS, SEEK_DATA), -ENXIO);
    /* Grown back without a writeout: blocks 3 and 7 read as zeros, holes. */
    cr_assert_eq(bf_fileh_truncate(e.fh, 10 * BS), 0);
    cr_assert_eq(seek(e.fh, 2 * BS, SEEK_HOLE), 3 * BS);
    cr_assert_eq(seek(e.fh, 3 * BS, SEEK_DATA), -ENXIO);
    uint64_t a = allocated(e.fh);
    cr_assert(a >= 1 * BS && a <= 3 * BS, "estimate %llu", (unsigned long long)a);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    cr_assert_eq(mock_nblocks(e.m), 1);
    cr_assert_eq(allocated(e.fh), 1 * BS, "exact again after the writeout");
    cr_assert_eq(seek(e.fh, 3 * BS, SEEK_DATA), -ENXIO);
    env_close(&e);
}

Test(seek, invalidate_sees_new_blocks_and_count, .timeout = 10)
{
    struct env e;
    env_sparse(&e, 10 * BS);
    cr_assert_eq(allocated(e.fh), 3 * BS);
    cr_assert_eq(allocated(e.fh), 3 * BS);
    cr_assert_eq(mock_calls(e.m, MOCK_STORED_BLOCKS), 1, "the count is cached");
    mock_set_block(e.m, 9, 3); /* changed underneath */
    cr_assert_eq(allocated(e.fh), 3 * BS, "cached until told");
    cr_assert_eq(seek(e.fh, 8 * BS, SEEK_DATA), 9 * BS, "seeks ask the backend");
    cr_assert_eq(bf_fileh_invalidate(e.fh, 9, 1), 0);
    cr_assert_eq(allocated(e.fh), 4 * BS);
    cr_assert_eq(mock_calls(e.m, MOCK_STORED_BLOCKS), 2);
    env_close(&e);
}

Test(seek, without_next_stored_everything_is_data, .timeout = 10)
{
    struct env e;
    e.m = mock_new(BS, 10 * BS);
    mock_set_block(e.m, 2, 1);
    mock_no_seek(e.m);
    cr_assert_eq(bf_ram_new(1 << 20, &e.ram), 0);
    cr_assert_eq(bf_fileh_open(mock_file(e.m), e.ram, &e.fh), 0);
    cr_assert_eq(seek(e.fh, 0, SEEK_DATA), 0);
    cr_assert_eq(seek(e.fh, 5 * BS + 1, SEEK_DATA), 5 * BS + 1);
    cr_assert_eq(seek(e.fh, 0, SEEK_HOLE), 10 * BS);
    cr_assert_eq(allocated(e.fh), 10 * BS);
    /* Shrunk and grown back: past the lowest size it knows the holes. */
    cr_assert_eq(bf_fileh_truncate(e.fh, 4 * BS), 0);
    cr_assert_eq(bf_fileh_truncate(e.fh, 10 * BS), 0);
    cr_assert_eq(seek(e.fh, 0, SEEK_HOLE), 4 * BS);
    cr_assert_eq(seek(e.fh, 4 * BS, SEEK_DATA), -ENXIO);
    cr_assert_eq(allocated(e.fh), 4 * BS);
    env_close(&e);
}

Test(seek, backend_errors_are_returned, .timeout = 10)
{
    struct env e;
    env_sparse(&e, 10 * BS);
    mock_fail(e.m, MOCK_NEXT_STORED, EIO, MOCK_ANY, 0, false);
    cr_assert_eq(seek(e.fh, 0, SEEK_DATA), -EIO);
    cr_assert_eq(fstat_of(e.fh).errors, 1);
    cr_assert_eq(seek(e.fh, 0, SEEK_DATA), 2 * BS, "the next call asks again");
    mock_fail(e.m, MOCK_NEXT_STORED, EIO, 3, 0, false); /* in the run 2, 3 */
    cr_assert_eq(seek(e.fh, 2 * BS, SEEK_HOLE), -EIO);
    cr_assert_eq(seek(e.fh, 2 * BS, SEEK_HOLE), 4 * BS);
    mock_fail(e.m, MOCK_STORED_BLOCKS, ENOMEM, MOCK_ANY, 0, false);
    uint64_t b;
    cr_assert_eq(bf_fileh_allocated_bytes(e.fh, &b), -ENOMEM);
    cr_assert_eq(allocated(e.fh), 3 * BS);
    cr_assert_eq(fstat_of(e.fh).errors, 3);
    env_close(&e);
}

Test(seek, long_runs_and_far_blocks, .timeout = 10)
{
    /* A 1 TiB file: block 1000..1099 stored and one far block; no answer
     * depends on the span of the file. */
    struct env e;
    uint64_t size = (uint64_t)1 << 40;
    e.m = mock_new(BS, size);
    for (uint64_t b = 1000; b < 1100; b++)
        mock_set_block(e.m, b, 1);
    uint64_t far = (size / BS) - 2;
    mock_set_block(e.m, far, 2);
    cr_assert_eq(bf_ram_new(1 << 20, &e.ram), 0);
    cr_assert_eq(bf_fileh_open(mock_file(e.m), e.ram, &e.fh), 0);
    write_block(e.fh, 1100, 3); /* extends the run, dirty */
    cr_assert_eq(seek(e.fh, 0, SEEK_DATA), 1000 * BS);
    cr_assert_eq(seek(e.fh, 1000 * BS, SEEK_HOLE), 1101 * BS);
    cr_assert_eq(seek(e.fh, 1101 * BS, SEEK_DATA), (int64_t)(far * BS));
    cr_assert_eq(seek(e.fh, far * BS, SEEK_HOLE), (int64_t)((far + 1) * BS));
    cr_assert_eq(allocated(e.fh), 102 * BS);
    env_close(&e);
}
