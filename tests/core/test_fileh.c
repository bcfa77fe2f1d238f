/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: file handles, single-threaded (see
 * test_concurrency.c for the rest): loads, page states, budget and
 * reclaim, size semantics, writeout atomicity, invalidate, fence, errors. */
#include "core/blockbuf.h"
#include "corehelp.h"

/* ---------------------------------------------------------------- open */

Test(fileh, open_checks_the_file, .timeout = 10)
{
    bf_ram *ram;
    bf_fileh *fh;
    cr_assert_eq(bf_ram_new(1 << 20, &ram), 0);
    struct mockfile *m = mock_new(BS, 0);
    mock_file(m)->blksize = 1000;
    cr_assert_eq(bf_fileh_open(mock_file(m), ram, &fh), -EINVAL);
    mock_file(m)->blksize = 2048;
    cr_assert_eq(bf_fileh_open(mock_file(m), ram, &fh), -EINVAL);
    mock_file(m)->blksize = BS;
    mock_file(m)->size = BF_SIZE_MAX + 1;
    cr_assert_eq(bf_fileh_open(mock_file(m), ram, &fh), -EINVAL);
    mock_file(m)->size = 3 * BS;
    cr_assert_eq(bf_fileh_open(mock_file(m), ram, &fh), 0);
    cr_assert_eq(bf_fileh_blksize(fh), BS);
    cr_assert_eq(bf_fileh_size(fh), 3 * BS);
    cr_assert_eq(rstat_of(ram).handles, 1);
    cr_assert_eq(bf_ram_free(ram), -EBUSY, "a ram with an open handle is freed");
    close_checked(fh);
    bf_fileh_close(NULL);
    cr_assert_eq(bf_ram_free(ram), 0);
    cr_assert_eq(bf_ram_free(NULL), 0);
    mock_free(m);
}

/* ---------------------------------------------------------------- reads */

Test(fileh, a_block_is_loaded_once, .timeout = 10)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 1 << 20);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_EMPTY);
    expect_block(e.fh, 1, 1);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_LOADED);
    expect_block(e.fh, 1, 1);
    char c;
    cr_assert_eq(bf_fileh_read(e.fh, &c, 1, BS + 77), 1);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 1);
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.loadblk_calls, 1);
    cr_assert_eq(st.bytes_loaded, BS);
    cr_assert_eq(st.loaded_blocks, 1);
    cr_assert_eq(rstat_of(e.ram).clean_bytes, BS);
    cr_assert_not(bf_fileh_isdirty(e.fh));
    env_close(&e);
}

Test(fileh, holes_and_eof, .timeout = 10)
{
    struct env e;
    env_open(&e, 3 * BS + 100, 0, 1 << 20);
    mock_set_block(e.m, 3, 1);
    expect_block(e.fh, 0, 0); /* never stored: zeros */
    char buf[2 * BS];
    /* Short read at the end; nothing at or past it. */
    cr_assert_eq(bf_fileh_read(e.fh, buf, sizeof(buf), 3 * BS), 100);
    char *want = pattern(1, 3 * BS, 100);
    cr_assert(memcmp(buf, want, 100) == 0);
    free(want);
    cr_assert_eq(bf_fileh_read(e.fh, buf, 10, 3 * BS + 100), 0);
    cr_assert_eq(bf_fileh_read(e.fh, buf, 10, UINT64_C(1) << 40), 0);
    cr_assert_eq(bf_fileh_read(e.fh, buf, 10, UINT64_MAX - 3), -EINVAL);
    env_close(&e);
}

Test(fileh, blocks_past_the_size_read_zeros_without_loadblk, .timeout = 10)
{
    struct env e;
    env_open(&e, 2 * BS, 2, 1 << 20);
    /* Garbage past the committed size must never show. */
    mock_set_block(e.m, 5, 7);
    cr_assert_eq(bf_fileh_truncate(e.fh, 10 * BS), 0);
    expect_block(e.fh, 5, 0);
    expect_block(e.fh, 9, 0);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 0);
    cr_assert_eq(bf_fileh_page_state(e.fh, 5), BF_PAGE_EMPTY, "a zero block got cached");
    expect_block(e.fh, 1, 1);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 1);
    env_close(&e);
}

/* ---------------------------------------------------------------- writes */

Test(fileh, read_then_write_dirties, .timeout = 10)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 1 << 20);
    expect_block(e.fh, 2, 1);
    cr_assert_eq(bf_fileh_write(e.fh, "xyz", 3, 2 * BS + 10), 3);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_DIRTY);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 1, "a cached block was loaded again");
    char buf[16];
    cr_assert_eq(bf_fileh_read(e.fh, buf, 16, 2 * BS + 8), 16);
    char *want = pattern(1, 2 * BS + 8, 16);
    memcpy(want + 2, "xyz", 3);
    cr_assert(memcmp(buf, want, 16) == 0);
    free(want);
    expect_committed(e.m, 2, 1); /* nothing reached the backend */
    cr_assert(bf_fileh_isdirty(e.fh));
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.dirty_blocks, 1);
    cr_assert_eq(st.loaded_blocks, 0);
    struct bf_ram_stats rs = rstat_of(e.ram);
    cr_assert_eq(rs.dirty_bytes, BS);
    cr_assert_eq(rs.clean_bytes, 0);
    env_close(&e);
}

Test(fileh, whole_block_write_needs_no_load, .timeout = 10)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 1 << 20);
    write_block(e.fh, 2, 9);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 0);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_DIRTY);
    expect_block(e.fh, 2, 9);
    /* A partial write loads the block first. */
    cr_assert_eq(bf_fileh_write(e.fh, "a", 1, 3 * BS + 5), 1);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 1);
    env_close(&e);
}

Test(fileh, unaligned_ranges_spanning_blocks, .timeout = 20)
{
    struct env e;
    uint64_t size = 8 * BS;
    env_open(&e, size, 8, 1 << 20);
    /* A reference copy of the file content. */
    char *ref = pattern(1, 0, size);
    struct {
        uint64_t off;
        size_t len;
        unsigned seed;
    } w[] = {
        { BS - 3, 7, 2 },                 /* across one boundary */
        { 2 * BS + 100, 2 * BS + 50, 3 }, /* partial, whole, partial */
        { 5 * BS, BS, 4 },                /* exactly one block */
        { 6 * BS + 1, BS - 2, 5 },        /* inside one block */
        { 7 * BS + 4000, 200, 6 },        /* extends the file */
    };
    for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
        char *p = pattern(w[i].seed, w[i].off, w[i].len);
        cr_assert_eq(bf_fileh_write(e.fh, p, w[i].len, w[i].off), (ssize_t)w[i].len);
        if (w[i].off + w[i].len > size) {
            ref = realloc(ref, w[i].off + w[i].len);
            memset(ref + size, 0, w[i].off + w[i].len - size);
            size = w[i].off + w[i].len;
        }
        memcpy(ref + w[i].off, p, w[i].len);
        free(p);
    }
    cr_assert_eq(bf_fileh_size(e.fh), size);
    /* Blocks 0,1 (write 0), 2,4 (write 1's ends), 6, 7: loaded; 3 and 5
     * written whole: not loaded. */
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 6);
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 8), BF_PAGE_DIRTY);
    /* Read it back in odd windows. */
    char *buf = malloc(size);
    for (uint64_t off = 0; off < size; off += 1531) {
        size_t len = 3 * BS + 17;
        ssize_t n = bf_fileh_read(e.fh, buf, len, off);
        size_t want = off + len > size ? size - off : len;
        cr_assert_eq(n, (ssize_t)want);
        cr_assert(memcmp(buf, ref + off, want) == 0, "window at %llu", (unsigned long long)off);
    }
    /* And what reaches the backend is the same. */
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    cr_assert_eq(mock_committed_size(e.m), size);
    char *blk = malloc(BS);
    for (uint64_t b = 0; b * BS < size; b++) {
        mock_get_block(e.m, b, blk);
        size_t len = (b + 1) * BS > size ? size - b * BS : BS;
        cr_assert(memcmp(blk, ref + b * BS, len) == 0, "committed block %llu",
                  (unsigned long long)b);
    }
    free(blk);
    free(buf);
    free(ref);
    env_close(&e);
}

Test(fileh, write_limits, .timeout = 10)
{
    struct env e;
    env_open(&e, 0, 0, 1 << 20);
    cr_assert_eq(bf_fileh_write(e.fh, "a", 0, 5), 0);
    cr_assert_eq(bf_fileh_size(e.fh), 0, "an empty write extended the file");
    cr_assert_eq(bf_fileh_write(e.fh, "a", 1, BF_SIZE_MAX), -EFBIG);
    cr_assert_eq(bf_fileh_write(e.fh, "ab", 2, BF_SIZE_MAX - 1), -EINVAL);
    cr_assert_eq(bf_fileh_write(e.fh, "a", 1, BF_SIZE_MAX - 1), 1);
    cr_assert_eq(bf_fileh_size(e.fh), BF_SIZE_MAX);
    cr_assert_eq(bf_fileh_truncate(e.fh, BF_SIZE_MAX + 1), -EINVAL);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 0, "a block past the committed size was loaded");
    env_close(&e);
}

/* ---------------------------------------------------------------- memory */

Test(fileh, reclaim_drops_only_clean_blocks, .timeout = 10)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 1 << 20);
    expect_block(e.fh, 0, 1);
    expect_block(e.fh, 1, 1);
    expect_block(e.fh, 2, 1);
    cr_assert_eq(bf_fileh_write(e.fh, "d", 1, BS), 1);
    uint64_t n = 0;
    cr_assert_eq(bf_fileh_reclaim(e.fh, &n), 2 * BS);
    cr_assert_eq(n, 2);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_EMPTY);
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.reclaimed_blocks, 2);
    cr_assert_eq(rstat_of(e.ram).evictions, 2);
    /* An evicted block loads again, with the same data. */
    expect_block(e.fh, 2, 1);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 4);
    /* The dirty one kept its change. */
    char c;
    cr_assert_eq(bf_fileh_read(e.fh, &c, 1, BS), 1);
    cr_assert_eq(c, 'd');
    /* bf_ram_reclaim: by bytes, never the dirty block. */
    expect_block(e.fh, 3, 1);
    cr_assert_eq(bf_ram_reclaim(e.ram, 1), BS);
    cr_assert_eq(bf_ram_reclaim(e.ram, 100 * BS), BS);
    cr_assert_eq(bf_ram_reclaim(e.ram, 100 * BS), 0);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_DIRTY);
    cr_assert_eq(rstat_of(e.ram).clean_bytes, 0);
    env_close(&e);
}

Test(fileh, budget_evicts_least_recently_used, .timeout = 10)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 3 * BS);
    expect_block(e.fh, 0, 1);
    expect_block(e.fh, 1, 1);
    expect_block(e.fh, 2, 1);
    char c;
    cr_assert_eq(bf_fileh_read(e.fh, &c, 1, 0), 1); /* 0 is now the most recent */
    expect_block(e.fh, 3, 1);                       /* over budget: 1 goes */
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_LOADED);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_LOADED);
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_LOADED);
    expect_block(e.fh, 4, 1); /* then 2 */
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_LOADED);
    /* Dirty blocks are not bounded by the budget and never evicted. */
    for (uint64_t b = 4; b < 8; b++)
        cr_assert_eq(bf_fileh_write(e.fh, "w", 1, b * BS), 1);
    expect_block(e.fh, 1, 1);
    expect_block(e.fh, 2, 1);
    for (uint64_t b = 4; b < 8; b++)
        cr_assert_eq(bf_fileh_page_state(e.fh, b), BF_PAGE_DIRTY);
    struct bf_ram_stats rs = rstat_of(e.ram);
    cr_assert_leq(rs.clean_bytes, 3 * BS);
    cr_assert_eq(rs.dirty_bytes, 4 * BS);
    /* A smaller budget drops at once. */
    bf_ram_set_budget(e.ram, BS);
    rs = rstat_of(e.ram);
    cr_assert_eq(rs.clean_bytes, BS);
    cr_assert_eq(rs.budget, BS);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_LOADED, "not the most recent kept");
    env_close(&e);
}

Test(fileh, budget_zero_keeps_no_clean_block, .timeout = 10)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 0);
    expect_block(e.fh, 1, 1);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_EMPTY);
    expect_block(e.fh, 1, 1);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 2);
    /* A read across two blocks gets both, though neither stays. */
    char buf[2 * BS];
    cr_assert_eq(bf_fileh_read(e.fh, buf, sizeof(buf), BS), (ssize_t)sizeof(buf));
    char *want = pattern(1, BS, sizeof(buf));
    cr_assert(memcmp(buf, want, sizeof(buf)) == 0);
    free(want);
    /* Writes work and stay. */
    cr_assert_eq(bf_fileh_write(e.fh, "q", 1, 3 * BS + 1), 1);
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_DIRTY);
    /* MARKSTORED makes it clean: then it goes too. */
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_EMPTY);
    cr_assert_eq(rstat_of(e.ram).clean_bytes, 0);
    env_close(&e);
}

Test(fileh, budget_spans_handles, .timeout = 10)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 2 * BS);
    struct mockfile *m2 = mock_new(BS, 4 * BS);
    mock_set_block(m2, 0, 2);
    bf_fileh *fh2;
    cr_assert_eq(bf_fileh_open(mock_file(m2), e.ram, &fh2), 0);
    expect_block(e.fh, 0, 1);
    expect_block(e.fh, 1, 1);
    expect_block(fh2, 0, 2); /* evicts e.fh's block 0 */
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_LOADED);
    cr_assert_eq(fstat_of(e.fh).reclaimed_blocks, 1);
    cr_assert_eq(fstat_of(fh2).reclaimed_blocks, 0);
    cr_assert_eq(rstat_of(e.ram).handles, 2);
    close_checked(fh2);
    cr_assert_eq(rstat_of(e.ram).clean_bytes, BS, "closing a handle frees its blocks");
    mock_free(m2);
    env_close(&e);
}

Test(fileh, sparse_huge_file, .timeout = 30)
{
    struct env e;
    env_open(&e, UINT64_C(1) << 50, 0, 1 << 20);
    uint64_t blks[1000], x = 12345;
    for (int i = 0; i < 1000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        blks[i] = (x >> 14) % ((UINT64_C(1) << 50) / BS);
        char byte = (char)(i | 1);
        cr_assert_eq(bf_fileh_write(e.fh, &byte, 1, blks[i] * BS + 7), 1);
    }
    size_t mem = bf_fileh_pagemap_memory(e.fh);
    cr_log_info("2^50-byte file, 1000 touched blocks: pagemap %zu bytes", mem);
    cr_assert_lt(mem, 100 * 1024);
    cr_assert_eq(fstat_of(e.fh).dirty_blocks, 1000);
    uint64_t n = 0;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &n), 0);
    cr_assert_eq(n, 1000);
    uint64_t order[1000];
    cr_assert_eq(mock_store_order(e.m, order, 1000), 1000);
    for (int i = 1; i < 1000; i++)
        cr_assert_lt(order[i - 1], order[i], "writeout not in ascending block order");
    for (int i = 0; i < 1000; i++) {
        char byte;
        cr_assert_eq(bf_fileh_read(e.fh, &byte, 1, blks[i] * BS + 7), 1);
    }
    /* Dropping every block gives the memory back. */
    bf_fileh_reclaim(e.fh, NULL);
    cr_assert_eq(bf_fileh_pagemap_memory(e.fh), 0);
    env_close(&e);
}

/* ---------------------------------------------------------------- size */

Test(fileh, truncate_shrink_drops_and_zeroes_the_tail, .timeout = 10)
{
    struct env e;
    env_open(&e, 6 * BS, 6, 1 << 20);
    expect_block(e.fh, 4, 1);
    write_block(e.fh, 5, 3);
    uint64_t newsize = 2 * BS + 100;
    cr_assert_eq(bf_fileh_truncate(e.fh, newsize), 0);
    cr_assert_eq(bf_fileh_size(e.fh), newsize);
    cr_assert_eq(bf_fileh_page_state(e.fh, 4), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 5), BF_PAGE_EMPTY, "a dirty block past the end stayed");
    /* The new last block was loaded and its tail zeroed: DIRTY. */
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_DIRTY);
    /* Growing again: the tail and the blocks past it read as zeros. */
    cr_assert_eq(bf_fileh_truncate(e.fh, 6 * BS), 0);
    uint64_t loads = mock_calls(e.m, MOCK_LOADBLK);
    char *buf = malloc(4 * BS);
    cr_assert_eq(bf_fileh_read(e.fh, buf, 4 * BS, 2 * BS), 4 * BS);
    char *want = pattern(1, 2 * BS, 100);
    cr_assert(memcmp(buf, want, 100) == 0);
    for (size_t i = 100; i < 4 * BS; i++)
        cr_assert_eq(buf[i], 0, "byte %zu after shrink and grow", i);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), loads, "loaded past the lowest size");
    cr_assert(bf_fileh_isdirty(e.fh), "shrink and grow back is a change");
    free(buf);
    free(want);

    /* The writeout tells the backend to forget the blocks past the lowest
     * size, then stores the zeroed tail. */
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    cr_assert_eq(mock_calls(e.m, MOCK_TRUNCATE), 1);
    cr_assert_not(mock_has_block(e.m, 3));
    cr_assert_not(mock_has_block(e.m, 5));
    cr_assert_eq(mock_committed_size(e.m), 6 * BS);
    cr_assert_not(bf_fileh_isdirty(e.fh));
    char *blk = malloc(BS);
    mock_get_block(e.m, 2, blk);
    want = pattern(1, 2 * BS, 100);
    cr_assert(memcmp(blk, want, 100) == 0);
    for (size_t i = 100; i < BS; i++)
        cr_assert_eq(blk[i], 0, "committed tail byte %zu not zeroed", i);
    free(want);
    free(blk);
    env_close(&e);
}

Test(fileh, truncate_shrink_load_error_changes_nothing, .timeout = 10)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 1 << 20);
    write_block(e.fh, 3, 5);
    mock_fail(e.m, MOCK_LOADBLK, EIO, 1, 0, false);
    cr_assert_eq(bf_fileh_truncate(e.fh, BS + 10), -EIO);
    cr_assert_eq(bf_fileh_size(e.fh), 4 * BS);
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_EMPTY);
    cr_assert_eq(fstat_of(e.fh).errors, 1);
    cr_assert_eq(bf_fileh_truncate(e.fh, BS + 10), 0);
    cr_assert_eq(bf_fileh_size(e.fh), BS + 10);
    env_close(&e);
}

/* ---------------------------------------------------------------- discard */

Test(fileh, discard_restores_committed_data_and_size, .timeout = 10)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 1 << 20);
    write_block(e.fh, 1, 2);
    cr_assert_eq(bf_fileh_write(e.fh, "x", 1, 2 * BS + 3), 1);
    write_block(e.fh, 6, 2); /* extends */
    cr_assert_eq(bf_fileh_size(e.fh), 7 * BS);
    uint64_t n = 0;
    cr_assert_eq(bf_fileh_discard(e.fh, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(bf_fileh_size(e.fh), 4 * BS);
    cr_assert_not(bf_fileh_isdirty(e.fh));
    for (uint64_t b = 0; b < 4; b++)
        expect_block(e.fh, b, 1);
    char c;
    cr_assert_eq(bf_fileh_read(e.fh, &c, 1, 6 * BS), 0);
    /* Shrink + discard: the blocks come back from the backend. */
    cr_assert_eq(bf_fileh_truncate(e.fh, 10), 0);
    cr_assert_eq(bf_fileh_truncate(e.fh, 4 * BS), 0);
    expect_block(e.fh, 3, 0);
    cr_assert_eq(bf_fileh_discard(e.fh, &n), 0);
    cr_assert_eq(n, 1); /* the zeroed block 0 */
    for (uint64_t b = 0; b < 4; b++)
        expect_block(e.fh, b, 1);
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.discards, 2);
    cr_assert_eq(st.dirty_blocks, 0);
    cr_assert_eq(mock_calls(e.m, MOCK_BEGIN), 0);
    env_close(&e);
}

/* ---------------------------------------------------------------- writeout */

Test(fileh, writeout_store_markstored, .timeout = 10)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    write_block(e.fh, 5, 2);
    write_block(e.fh, 1, 3);
    write_block(e.fh, 3, 4);
    write_block(e.fh, 9, 5);
    uint64_t n = 0;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &n), 0);
    cr_assert_eq(n, 4);
    uint64_t order[8];
    cr_assert_eq(mock_store_order(e.m, order, 8), 4);
    cr_assert_eq(order[0], 1);
    cr_assert_eq(order[1], 3);
    cr_assert_eq(order[2], 5);
    cr_assert_eq(order[3], 9);
    expect_committed(e.m, 1, 3);
    expect_committed(e.m, 3, 4);
    expect_committed(e.m, 5, 2);
    expect_committed(e.m, 9, 5);
    expect_committed(e.m, 0, 1);
    cr_assert_eq(mock_committed_size(e.m), 10 * BS);
    cr_assert_eq(mock_calls(e.m, MOCK_TRUNCATE), 0, "truncate without a shrink");
    cr_assert_eq(mock_calls(e.m, MOCK_COMMIT), 1);
    for (uint64_t b = 1; b < 10; b += 2)
        cr_assert_eq(bf_fileh_page_state(e.fh, b), b == 7 ? BF_PAGE_EMPTY : BF_PAGE_LOADED);
    cr_assert_not(bf_fileh_isdirty(e.fh));
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.committed_size, 10 * BS);
    cr_assert_eq(st.storeblk_calls, 4);
    cr_assert_eq(st.bytes_stored, 4 * BS);
    cr_assert_eq(st.writeouts, 1);
    cr_assert_eq(st.loaded_blocks, 4);
    /* Nothing left: the next writeout calls no backend operation. */
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_STORE, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(mock_calls(e.m, MOCK_BEGIN), 1);
    /* Discard now restores the new committed state. */
    cr_assert_eq(bf_fileh_discard(e.fh, NULL), 0);
    cr_assert_eq(bf_fileh_size(e.fh), 10 * BS);
    expect_block(e.fh, 9, 5);
    env_close(&e);
}

Test(fileh, writeout_store_only_keeps_blocks_dirty, .timeout = 10)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 1 << 20);
    write_block(e.fh, 2, 7);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE, NULL), 0);
    expect_committed(e.m, 2, 7);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_DIRTY);
    cr_assert(bf_fileh_isdirty(e.fh));
    /* Stored again by the next writeout. */
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE, NULL), 0);
    cr_assert_eq(mock_calls(e.m, MOCK_STOREBLK), 2);
    env_close(&e);
}

Test(fileh, writeout_markstored_only_calls_no_backend, .timeout = 10)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 1 << 20);
    write_block(e.fh, 2, 7);
    write_block(e.fh, 4, 7); /* size 5 blocks now */
    uint64_t n = 0;
    cr_assert_eq(writeout_n(e.fh, BF_WRITEOUT_MARKSTORED, &n), 0);
    cr_assert_eq(n, 2);
    for (int op = 0; op < MOCK_NOPS; op++)
        cr_assert_eq(mock_calls(e.m, op), 0, "backend op %d called", op);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_LOADED);
    expect_block(e.fh, 2, 7);
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.size, 5 * BS);
    cr_assert_eq(st.committed_size, 4 * BS, "MARKSTORED alone changed the size state");
    cr_assert(bf_fileh_isdirty(e.fh), "the size change is still uncommitted");
    env_close(&e);
}

Test(fileh, writeout_flags, .timeout = 10)
{
    struct env e;
    env_open(&e, 4 * BS, 4, 1 << 20);
    write_block(e.fh, 2, 7);
    cr_assert_eq(bf_fileh_writeout(e.fh, 0, NULL), -EINVAL);
    cr_assert_eq(bf_fileh_writeout(e.fh, 4, NULL), -EINVAL);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | 16, NULL), -EINVAL);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_MARKSTORED | BF_WRITEOUT_OVERWRITE, NULL),
                 -EINVAL);
    cr_assert_eq(bf_fileh_writeout(e.fh, ~0u, NULL), -EINVAL);
    cr_assert_eq(mock_calls(e.m, MOCK_BEGIN), 0);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_DIRTY);
    cr_assert_eq(fstat_of(e.fh).writeouts, 0);
    env_close(&e);
}

/* The writeout fails at `op` (on its k-th call, counting from 0): nothing is
 * committed, every change stays, and a retry commits exactly what a clean
 * writeout would have. */
static void writeout_fails_then_retries(enum mock_op op, unsigned k)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    /* Changes: blocks 1, 2, 6 rewritten, a shrink to 5.5 blocks, then
     * growth to 7 blocks. */
    write_block(e.fh, 6, 2);
    write_block(e.fh, 1, 3);
    cr_assert_eq(bf_fileh_truncate(e.fh, 5 * BS + BS / 2), 0);
    cr_assert_eq(bf_fileh_truncate(e.fh, 7 * BS), 0);
    write_block(e.fh, 2, 4);
    write_block(e.fh, 6, 5);
    struct bf_fileh_stats before = fstat_of(e.fh);
    cr_assert_eq(before.dirty_blocks, 4); /* 1, 2, 5 (tail), 6 */

    mock_fail(e.m, op, EIO, MOCK_ANY, k, false);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), -EIO);
    cr_assert_not(mock_in_txn(e.m), "the transaction was left open");
    if (op != MOCK_BEGIN && op != MOCK_COMMIT)
        cr_assert_eq(mock_calls(e.m, MOCK_ABORT), 1);
    /* Nothing committed. */
    cr_assert_eq(mock_committed_size(e.m), 8 * BS);
    for (uint64_t b = 0; b < 8; b++)
        expect_committed(e.m, b, 1);
    /* Everything still there. */
    struct bf_fileh_stats after = fstat_of(e.fh);
    cr_assert_eq(after.dirty_blocks, 4);
    cr_assert_eq(after.size, 7 * BS);
    cr_assert_eq(after.committed_size, 8 * BS);
    cr_assert_eq(after.errors, before.errors + 1);
    cr_assert_eq(after.writeouts, 0);
    cr_assert(bf_fileh_isdirty(e.fh));
    expect_block(e.fh, 1, 3);
    expect_block(e.fh, 6, 5);
    expect_block(e.fh, 7 - 1, 5);

    /* Retry: succeeds, and commits the same as an unfailed writeout. */
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0);
    cr_assert_eq(mock_committed_size(e.m), 7 * BS);
    expect_committed(e.m, 0, 1);
    expect_committed(e.m, 1, 3);
    expect_committed(e.m, 2, 4);
    expect_committed(e.m, 3, 1);
    expect_committed(e.m, 4, 1);
    expect_committed(e.m, 6, 5);
    cr_assert_not(mock_has_block(e.m, 7), "the truncate was not committed");
    char *blk = malloc(BS), *want = pattern(1, 5 * BS, BS / 2);
    mock_get_block(e.m, 5, blk);
    cr_assert(memcmp(blk, want, BS / 2) == 0);
    for (size_t i = BS / 2; i < BS; i++)
        cr_assert_eq(blk[i], 0);
    free(blk);
    free(want);
    cr_assert_not(bf_fileh_isdirty(e.fh));
    cr_assert_eq(fstat_of(e.fh).dirty_blocks, 0);
    env_close(&e);
}

Test(fileh, writeout_fails_at_begin, .timeout = 10)
{
    writeout_fails_then_retries(MOCK_BEGIN, 0);
}
Test(fileh, writeout_fails_at_truncate, .timeout = 10)
{
    writeout_fails_then_retries(MOCK_TRUNCATE, 0);
}
Test(fileh, writeout_fails_at_1st_store, .timeout = 10)
{
    writeout_fails_then_retries(MOCK_STOREBLK, 0);
}
Test(fileh, writeout_fails_at_3rd_store, .timeout = 10)
{
    writeout_fails_then_retries(MOCK_STOREBLK, 2);
}
Test(fileh, writeout_fails_at_last_store, .timeout = 10)
{
    writeout_fails_then_retries(MOCK_STOREBLK, 3);
}
Test(fileh, writeout_fails_at_commit, .timeout = 10)
{
    writeout_fails_then_retries(MOCK_COMMIT, 0);
}

/* ---------------------------------------------------------------- invalidate */

Test(fileh, invalidate_absent_clean_dirty, .timeout = 10)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    expect_block(e.fh, 1, 1); /* clean */
    write_block(e.fh, 2, 3);  /* dirty */
    /* The backend changes underneath. */
    mock_set_block(e.m, 1, 6);
    mock_set_block(e.m, 2, 6);
    mock_set_block(e.m, 3, 6);
    expect_block(e.fh, 1, 1); /* still the cached copy */
    cr_assert_eq(bf_fileh_invalidate(e.fh, 0, 4), 0);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 2), BF_PAGE_EMPTY);
    cr_assert_eq(fstat_of(e.fh).invalidated_blocks, 2);
    expect_block(e.fh, 1, 6);
    expect_block(e.fh, 2, 6); /* the dirty change is lost */
    expect_block(e.fh, 3, 6);
    /* Past the end, and the whole range: fine. */
    cr_assert_eq(bf_fileh_invalidate(e.fh, 1000, 5), 0);
    cr_assert_eq(bf_fileh_invalidate(e.fh, 0, UINT64_MAX), 0);
    cr_assert_eq(bf_fileh_invalidate(e.fh, 1, UINT64_MAX), 0, "a range ending at 2^64 is valid");
    cr_assert_eq(fstat_of(e.fh).loaded_blocks, 0);
    /* Bad ranges. */
    cr_assert_eq(bf_fileh_invalidate(e.fh, 0, 0), -EINVAL);
    cr_assert_eq(bf_fileh_invalidate(e.fh, 2, UINT64_MAX), -EINVAL);
    env_close(&e);
}

/* ---------------------------------------------------------------- fence */

Test(fileh, fence_drops_writes, .timeout = 10)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    cr_assert_eq(bf_fileh_fence(e.fh, 2, 2), 0);
    cr_assert_eq(bf_fileh_fence(e.fh, 6, 1), -EBUSY);
    cr_assert_eq(bf_fileh_write(e.fh, "abc", 3, 3 * BS + 1), 3);
    cr_assert_eq(bf_fileh_write(e.fh, "abc", 3, 2 * BS - 1), 3, "a write touching the fence");
    cr_assert_eq(bf_fileh_write(e.fh, "abc", 3, 20 * BS), 3);
    cr_assert_eq(bf_fileh_write(e.fh, "abc", 3, 4 * BS), 3); /* outside */
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_EMPTY, "half a fenced write was applied");
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 4), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_size(e.fh), 20 * BS + 3, "the write outside the fence");
    cr_assert_eq(fstat_of(e.fh).fenced_writes, 2);
    expect_block(e.fh, 3, 1);
    bf_fileh_unfence(e.fh);
    cr_assert_eq(bf_fileh_write(e.fh, "abc", 3, 3 * BS + 1), 3);
    cr_assert_eq(bf_fileh_page_state(e.fh, 3), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_fence(e.fh, 0, 0), -EINVAL);
    cr_assert_eq(bf_fileh_fence(e.fh, 5, UINT64_MAX), -EINVAL);
    cr_assert_eq(bf_fileh_fence(e.fh, 0, UINT64_MAX), 0);
    cr_assert_eq(bf_fileh_write(e.fh, "abc", 3, 0), 3);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_EMPTY);
    bf_fileh_unfence(e.fh);
    env_close(&e);
}

/* ---------------------------------------------------------------- errors */

Test(fileh, loadblk_failure_is_returned_and_retried, .timeout = 10)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    mock_fail(e.m, MOCK_LOADBLK, EIO, 1, 0, true);
    char buf[BS];
    cr_assert_eq(bf_fileh_read(e.fh, buf, BS, BS), -EIO);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_read(e.fh, buf, 2 * BS, 0), -EIO, "a read over a failing block");
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.errors, 2);
    cr_assert_eq(st.loading_blocks, 0);
    cr_assert_eq(rstat_of(e.ram).loading_bytes, 0);

    /* A write that needs the block: the error, and no byte changed, not
     * even in the other block it spans. */
    expect_block(e.fh, 0, 1);
    cr_assert_eq(bf_fileh_write(e.fh, "0123456789", 10, BS - 5), -EIO);
    expect_block(e.fh, 0, 1);
    cr_assert_eq(bf_fileh_size(e.fh), 8 * BS);
    /* A whole-block write needs no load: it works. */
    write_block(e.fh, 1, 4);
    cr_assert_eq(bf_fileh_invalidate(e.fh, 1, 1), 0);

    /* Fault cleared: the next call loads. */
    mock_clear_faults(e.m);
    expect_block(e.fh, 1, 1);
    cr_assert_eq(bf_fileh_write(e.fh, "0123456789", 10, BS - 5), 10);
    cr_assert_eq(fstat_of(e.fh).errors, 3);
    env_close(&e);
}

/* A write over two partial blocks loads the first, then the second: a
 * failure of the second load returns the error and must leave the first
 * block as it was, clean (not DIRTY with unchanged content, which would
 * make the handle look changed and be stored again), and, with a budget
 * of 0, not cached either. */
Test(fileh, failed_write_leaves_no_block_dirty, .timeout = 10)
{
    struct env e;
    env_open(&e, 2 * BS, 2, 0);
    mock_fail(e.m, MOCK_LOADBLK, EIO, 1, 0, false);
    char *buf = pattern(9, BS / 2, BS);
    cr_assert_eq(bf_fileh_write(e.fh, buf, BS, BS / 2), -EIO);
    free(buf);
    cr_assert_eq(mock_calls(e.m, MOCK_LOADBLK), 2, "block 0 then block 1 loaded");
    cr_assert_not(bf_fileh_isdirty(e.fh), "a failed write left the handle dirty");
    struct bf_fileh_stats st = fstat_of(e.fh);
    cr_assert_eq(st.dirty_blocks, 0);
    cr_assert_eq(rstat_of(e.ram).dirty_bytes, 0);
    cr_assert_eq(rstat_of(e.ram).clean_bytes, 0, "a clean block outlived its call with budget 0");
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_writeout(e.fh, BF_WRITEOUT_STORE, NULL), 0);
    cr_assert_eq(mock_calls(e.m, MOCK_STOREBLK), 0, "an unchanged block was stored");
    expect_block(e.fh, 0, 1);
    expect_block(e.fh, 1, 1);

    /* The same with room in the budget: block 0 stays cached, clean. */
    bf_ram_set_budget(e.ram, 1 << 20);
    mock_fail(e.m, MOCK_LOADBLK, EIO, 1, 0, false);
    buf = pattern(9, BS / 2, BS);
    cr_assert_eq(bf_fileh_write(e.fh, buf, BS, BS / 2), -EIO);
    free(buf);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_LOADED);
    cr_assert_not(bf_fileh_isdirty(e.fh));
    /* And a successful retry still writes both blocks. */
    buf = pattern(9, BS / 2, BS);
    cr_assert_eq(bf_fileh_write(e.fh, buf, BS, BS / 2), (ssize_t)BS);
    char got[BS];
    cr_assert_eq(bf_fileh_read(e.fh, got, BS, BS / 2), (ssize_t)BS);
    cr_assert(memcmp(got, buf, BS) == 0);
    free(buf);
    cr_assert_eq(bf_fileh_page_state(e.fh, 0), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_page_state(e.fh, 1), BF_PAGE_DIRTY);
    env_close(&e);
}

Test(fileh, close_with_changes_frees_everything, .timeout = 10)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    for (uint64_t b = 0; b < 8; b += 2)
        expect_block(e.fh, b, 1);
    for (uint64_t b = 1; b < 8; b += 2)
        write_block(e.fh, b, 2);
    close_checked(e.fh);
    struct bf_ram_stats rs = rstat_of(e.ram);
    cr_assert_eq(rs.clean_bytes, 0);
    cr_assert_eq(rs.dirty_bytes, 0);
    cr_assert_eq(rs.handles, 0);
    cr_assert_eq(bf_ram_free(e.ram), 0);
    cr_assert_eq(mock_calls(e.m, MOCK_BEGIN), 0, "close committed something");
    mock_free(e.m);
}

/* ------------------------------------------------------ reads by reference */

/* The held and deferred buffers of the allocator (blockbuf.h). */
static struct bf_blockbuf_stats bstat(void)
{
    struct bf_blockbuf_stats st;
    bf_blockbuf_stat(&st);
    return st;
}

/* Whether a piece of refs lies in [buf, buf + size). */
static bool refs_in_buf(const struct bf_read_refs *refs, const char *buf, size_t size)
{
    for (unsigned i = 0; i < refs->n; i++) {
        const char *p = refs->iov[i].iov_base;
        if (p >= buf && p < buf + size)
            return true;
    }
    return false;
}

/* The bytes of refs' pieces, in order, compared with the pattern of seed
 * for [off, off + len) (seed 0: zeros). */
static void expect_refs(const struct bf_read_refs *refs, uint64_t off, size_t len, unsigned seed)
{
    char *got = malloc(len), *want = seed ? pattern(seed, off, len) : calloc(1, len);
    cr_assert(got && want);
    size_t at = 0;
    for (unsigned i = 0; i < refs->n; i++) {
        cr_assert_leq(at + refs->iov[i].iov_len, len, "the pieces hold more than was read");
        memcpy(got + at, refs->iov[i].iov_base, refs->iov[i].iov_len);
        at += refs->iov[i].iov_len;
    }
    cr_assert_eq(at, len, "the pieces hold %zu bytes, not %zu", at, len);
    cr_assert(memcmp(got, want, len) == 0, "the pieces differ from seed %u", seed);
    free(got);
    free(want);
}

/* A read by reference answers from the cached blocks' buffers, held; the
 * invalidate, eviction and discard that free them meanwhile leave the
 * bytes as they were until the holds are dropped, and nothing loaded
 * meanwhile lands in them. */
Test(fileh, reads_by_reference_hold_the_blocks_they_answer_from, .timeout = 10)
{
    struct env e;
    env_open(&e, 12 * BS, 10, 1 << 20);
    size_t cap = 16 * BS;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    struct bf_read_refs refs;
    bool sent;
    uint64_t off = BS + 100;
    size_t len = 2 * BS + 5; /* blocks 1..3 */

    cr_assert_eq(bf_fileh_read_refs(e.fh, buf, len, off, NULL, &sent, &refs), (ssize_t)len);
    cr_assert(!sent);
    cr_assert_eq(refs.nheld, 3);
    cr_assert(!refs_in_buf(&refs, buf, cap), "cached bytes were copied");
    cr_assert_eq(bstat().held_buffers, 3);
    expect_refs(&refs, off, len, 1);

    /* Everything goes: the cached copies (invalidate), then their new
     * loads (reclaim). */
    for (uint64_t b = 0; b < 10; b++)
        mock_set_block(e.m, b, 6);
    cr_assert_eq(bf_fileh_invalidate(e.fh, 0, 12), 0);
    cr_assert_eq(bstat().deferred_bytes, 3 * BS, "the invalidated buffers were not deferred");
    for (uint64_t b = 0; b < 10; b++)
        expect_block(e.fh, b, 6);
    cr_assert_gt(bf_ram_reclaim(e.ram, SIZE_MAX), 0);
    expect_refs(&refs, off, len, 1);

    bf_fileh_refs_put(&refs);
    cr_assert_eq(refs.n, 0);
    bf_fileh_refs_put(&refs); /* a no-op */
    cr_assert_eq(bstat().held_buffers, 0);
    cr_assert_eq(bstat().deferred_bytes, 0);

    /* A DIRTY block: held too, and kept through a discard. */
    write_block(e.fh, 4, 3);
    cr_assert_eq(bf_fileh_read_refs(e.fh, buf, BS, 4 * BS, NULL, &sent, &refs), (ssize_t)BS);
    cr_assert_eq(refs.nheld, 1);
    cr_assert_eq(bf_fileh_discard(e.fh, NULL), 0);
    expect_block(e.fh, 4, 6);
    expect_refs(&refs, 4 * BS, BS, 3);
    bf_fileh_refs_put(&refs);

    /* Held across the handle's close and the ram's end: freed at the
     * release, after. */
    cr_assert_eq(bf_fileh_read_refs(e.fh, buf, BS, 0, NULL, &sent, &refs), (ssize_t)BS);
    cr_assert_eq(refs.nheld, 1);
    env_close(&e);
    expect_refs(&refs, 0, BS, 6);
    bf_fileh_refs_put(&refs);
    cr_assert_eq(bstat().held_buffers, 0);
    free(buf);
}

/* Holes are zeros in the caller's buffer; a read over more than
 * BF_READ_REFS_MAX blocks is copied whole into it; an error holds
 * nothing. */
Test(fileh, reads_by_reference_copy_what_they_cannot_hold, .timeout = 10)
{
    struct env e;
    uint64_t nblk = BF_READ_REFS_MAX + 4;
    env_open(&e, (nblk - 2) * BS, nblk - 2, 16 << 20);
    size_t cap = nblk * BS;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    struct bf_read_refs refs;
    bool sent;

    /* The last two blocks lie past the lowest size: zeros, no page; the
     * one before them is cached. */
    cr_assert_eq(bf_fileh_truncate(e.fh, nblk * BS), 0);
    uint64_t off = (nblk - 3) * BS;
    cr_assert_eq(bf_fileh_read_refs(e.fh, buf, 3 * BS, off, NULL, &sent, &refs), (ssize_t)3 * BS);
    cr_assert_eq(refs.nheld, 1);
    cr_assert(refs_in_buf(&refs, buf, cap), "the holes' zeros are not in buf");
    char *want = pattern(1, off, BS);
    cr_assert(memcmp(refs.iov[0].iov_base, want, BS) == 0);
    free(want);
    cr_assert_eq(refs.n, 2);
    cr_assert_eq(refs.iov[1].iov_len, 2 * BS);
    cr_assert(refs.iov[1].iov_base == buf + BS, "the zeros are not where they are read");
    bf_fileh_refs_put(&refs);

    /* BF_READ_REFS_MAX blocks: all held; one more: all copied. */
    cr_assert_eq(bf_fileh_read_refs(e.fh, buf, BF_READ_REFS_MAX * BS, 0, NULL, &sent, &refs),
                 (ssize_t)(BF_READ_REFS_MAX * BS));
    cr_assert_eq(refs.nheld, BF_READ_REFS_MAX);
    expect_refs(&refs, 0, BF_READ_REFS_MAX * BS, 1);
    bf_fileh_refs_put(&refs);
    size_t len = (BF_READ_REFS_MAX + 1) * BS;
    cr_assert_eq(bf_fileh_read_refs(e.fh, buf, len, 0, NULL, &sent, &refs), (ssize_t)len);
    cr_assert_eq(refs.nheld, 0);
    cr_assert_eq(refs.n, 1);
    cr_assert(refs.iov[0].iov_base == buf);
    expect_refs(&refs, 0, len, 1);
    bf_fileh_refs_put(&refs);

    /* At and past the end: nothing. */
    cr_assert_eq(bf_fileh_read_refs(e.fh, buf, BS, nblk * BS, NULL, &sent, &refs), 0);
    cr_assert_eq(refs.n, 0);
    bf_fileh_refs_put(&refs);

    /* A load that fails after a block was held: the error, nothing held. */
    cr_assert_eq(bf_fileh_invalidate(e.fh, 0, nblk), 0);
    expect_block(e.fh, 0, 1);
    mock_fail(e.m, MOCK_LOADBLK, EIO, 1, 0, true);
    cr_assert_eq(bf_fileh_read_refs(e.fh, buf, 2 * BS, 0, NULL, &sent, &refs), -EIO);
    cr_assert_eq(refs.n, 0);
    cr_assert_eq(refs.nheld, 0);
    cr_assert_eq(bstat().held_buffers, 0);
    mock_clear_faults(e.m);
    env_close(&e);
    free(buf);
}
