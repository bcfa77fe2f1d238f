/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: bf_fileh_check finds a broken invariant.
 *
 * Every other core test ends with bf_fileh_check (corehelp.h,
 * close_checked) and expects it to pass; these prove that it can fail.
 * Each corrupts one thing of a handle or its ram through the private
 * structures (fileh_internal.h, ram_internal.h — the tests' hook into the
 * core), under the lock, expects -EUCLEAN and the number of the broken
 * invariant of fileh.h on stderr, undoes the corruption and expects the
 * check to pass again (so that the handle closes cleanly).
 */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "core/fileh_internal.h"
#include "corehelp.h"

/* bf_fileh_check with its stderr captured into out (size bytes, NUL
 * terminated). */
static int check_captured(bf_fileh *fh, char *out, size_t size)
{
    FILE *tmp = tmpfile();
    cr_assert_not_null(tmp);
    fflush(stderr);
    int saved = dup(2);
    cr_assert_geq(saved, 0);
    cr_assert_geq(dup2(fileno(tmp), 2), 0);
    int r = bf_fileh_check(fh);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, size - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return r;
}

/* The check fails naming invariant `inv` ("I12 broken"). */
static void expect_broken(bf_fileh *fh, const char *inv)
{
    char out[1024], want[32];
    int r = check_captured(fh, out, sizeof(out));
    cr_assert_eq(r, -EUCLEAN, "bf_fileh_check missed a broken %s: %d", inv, r);
    snprintf(want, sizeof(want), "%s broken", inv);
    cr_assert(strstr(out, want) != NULL, "bf_fileh_check did not name %s: \"%s\"", inv, out);
}

/* A handle with blocks 0, 1 LOADED and 2, 3 DIRTY, in an 8-block file. */
static void env_mixed(struct env *e)
{
    env_open(e, 8 * BS, 8, 1 << 20);
    expect_block(e->fh, 0, 1);
    expect_block(e->fh, 1, 1);
    write_block(e->fh, 2, 2);
    write_block(e->fh, 3, 2);
    expect_consistent(e->fh);
}

static struct bf_page *page_at(bf_fileh *fh, uint64_t blk)
{
    struct bf_page *pg = bf_pagemap_get(&fh->pages, blk);
    cr_assert_not_null(pg);
    return pg;
}

/* A corruption: make(fh, true) breaks one thing, make(fh, false) undoes
 * it; both run under the lock. */
typedef void corruption(bf_fileh *fh, bool make);

/* The check fails on the corruption naming `inv`, and passes once undone. */
static void expect_caught(bf_fileh *fh, corruption *c, const char *inv)
{
    bf_ram_lock(fh->ram);
    c(fh, true);
    bf_ram_unlock(fh->ram);
    expect_broken(fh, inv);
    bf_ram_lock(fh->ram);
    c(fh, false);
    bf_ram_unlock(fh->ram);
    expect_consistent(fh);
}

static int64_t step(bool make)
{
    return make ? 1 : -1;
}

static void loaded_miscounted(bf_fileh *fh, bool make)
{
    fh->nloaded += step(make);
}

static void dirty_miscounted(bf_fileh *fh, bool make)
{
    fh->ndirty -= step(make);
}

static void ram_dirty_bytes_off(bf_fileh *fh, bool make)
{
    fh->ram->dirty_bytes += step(make) * BS;
}

static void ram_clean_bytes_off(bf_fileh *fh, bool make)
{
    fh->ram->clean_bytes -= step(make) * BS; /* down: the budget holds (I6) */
}

static void ram_handles_off(bf_fileh *fh, bool make)
{
    fh->ram->handles += step(make);
}

/* Block 1 is LOADED: take it off the LRU. */
static void loaded_off_the_lru(bf_fileh *fh, bool make)
{
    struct bf_page *pg = page_at(fh, 1);
    if (make)
        bf_list_del(&pg->lru);
    else
        bf_list_add_tail(&fh->ram->lru, &pg->lru);
}

/* Block 2 is DIRTY: move it from the dirty LRU to the (clean) LRU. */
static void dirty_on_the_lru(bf_fileh *fh, bool make)
{
    struct bf_page *pg = page_at(fh, 2);
    bf_list_del(&pg->lru);
    bf_list_add_tail(make ? &fh->ram->lru : &fh->ram->dlru, &pg->lru);
}

/* Block 2 is DIRTY: take it off the dirty LRU. */
static void dirty_off_the_dirty_lru(bf_fileh *fh, bool make)
{
    struct bf_page *pg = page_at(fh, 2);
    if (make)
        bf_list_del(&pg->lru);
    else
        bf_list_add_tail(&fh->ram->dlru, &pg->lru);
}

/* Block 1 is LOADED: move it from the LRU to the dirty LRU. */
static void loaded_on_the_dirty_lru(bf_fileh *fh, bool make)
{
    struct bf_page *pg = page_at(fh, 1);
    bf_list_del(&pg->lru);
    bf_list_add_tail(make ? &fh->ram->dlru : &fh->ram->lru, &pg->lru);
}

/* Block 3 is DIRTY: take it off the dirty list. */
static void dirty_off_the_dirty_list(bf_fileh *fh, bool make)
{
    struct bf_page *pg = page_at(fh, 3);
    if (make)
        bf_list_del(&pg->dirty);
    else
        bf_list_add_tail(&fh->dirty, &pg->dirty);
}

static void page_with_another_key(bf_fileh *fh, bool make)
{
    page_at(fh, 0)->blk = make ? 6 : 0;
}

static void storing_without_a_writeout(bf_fileh *fh, bool make)
{
    page_at(fh, 2)->storing = make;
}

static void cow_buffer_without_a_writeout(bf_fileh *fh, bool make)
{
    fh->cow_held = make ? 1 : 0;
}

static void lowest_size_above_the_size(bf_fileh *fh, bool make)
{
    fh->min_size = make ? fh->size + 1 : fh->size;
}

/* Blocks 1..3 lie past a size of one block. */
static void pages_past_the_size(bf_fileh *fh, bool make)
{
    fh->min_size = fh->size = make ? BS : 8 * BS;
}

/* With a fence [2, 4] up: an empty fence. */
static void empty_fence(bf_fileh *fh, bool make)
{
    fh->fence_lo = make ? 5 : 2;
}

Test(check, a_consistent_handle_passes, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    char out[256];
    cr_assert_eq(check_captured(e.fh, out, sizeof(out)), 0);
    cr_assert_eq(out[0], '\0', "a passing check printed \"%s\"", out);
    env_close(&e);
}

Test(check, counters_of_the_handle, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    expect_caught(e.fh, loaded_miscounted, "I12");
    expect_caught(e.fh, dirty_miscounted, "I12");
    env_close(&e);
}

Test(check, counters_of_the_ram, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    expect_caught(e.fh, ram_dirty_bytes_off, "I13");
    expect_caught(e.fh, ram_clean_bytes_off, "I13");
    expect_caught(e.fh, ram_handles_off, "I13");
    env_close(&e);
}

Test(check, lru_and_dirty_list_membership, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    expect_caught(e.fh, loaded_off_the_lru, "I10");
    expect_caught(e.fh, dirty_on_the_lru, "I10");
    expect_caught(e.fh, dirty_off_the_dirty_lru, "I10");
    expect_caught(e.fh, loaded_on_the_dirty_lru, "I10");
    expect_caught(e.fh, dirty_off_the_dirty_list, "I11");
    env_close(&e);
}

Test(check, pages_of_the_pagemap, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    expect_caught(e.fh, page_with_another_key, "I8");
    expect_caught(e.fh, pages_past_the_size, "I15");
    env_close(&e);
}

Test(check, storing_only_during_a_writeout, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    expect_caught(e.fh, storing_without_a_writeout, "I14");
    expect_caught(e.fh, cow_buffer_without_a_writeout, "I19");
    env_close(&e);
}

Test(check, sizes_and_fence, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    expect_caught(e.fh, lowest_size_above_the_size, "I17");
    cr_assert_eq(bf_fileh_fence(e.fh, 2, 3), 0);
    expect_consistent(e.fh);
    expect_caught(e.fh, empty_fence, "I22");
    bf_fileh_unfence(e.fh);
    env_close(&e);
}

/* A load in progress (held at the mock's gate) past a lowered lowest
 * size: I16. The check runs while another thread is inside the core. */
static void lowest_size_below_a_load(bf_fileh *fh, bool make)
{
    fh->min_size = make ? 2 * BS : 8 * BS;
}

struct loader {
    pthread_t thr;
    bf_fileh *fh;
    ssize_t ret;
};

static void *loader_main(void *arg)
{
    struct loader *l = arg;
    char buf[BS];
    l->ret = bf_fileh_read(l->fh, buf, BS, 4 * BS);
    return NULL;
}

Test(check, loading_past_the_lowest_size, .timeout = 20)
{
    struct env e;
    env_open(&e, 8 * BS, 8, 1 << 20);
    mock_gate(e.m, MOCK_LOADBLK, 4);
    struct loader l = { .fh = e.fh, .ret = -12345 };
    cr_assert_eq(pthread_create(&l.thr, NULL, loader_main, &l), 0);
    cr_assert(mock_gate_wait(e.m, MOCK_LOADBLK, 1, 10000), "the load did not start");
    expect_consistent(e.fh); /* a LOADING page below the lowest size */
    expect_caught(e.fh, lowest_size_below_a_load, "I16");
    mock_gate_release(e.m, MOCK_LOADBLK);
    pthread_join(l.thr, NULL);
    cr_assert_eq(l.ret, (ssize_t)BS);
    env_close(&e);
}

/* ---- spilling, partial pages, prefetch (I28-I31) ---- */

/* env_mixed, then block 2 spilled: a dirty budget of one block, block 4
 * written. */
static void env_spilled(struct env *e)
{
    env_mixed(e);
    bf_ram_set_dirty_budget(e->ram, 2 * BS);
    write_block(e->fh, 4, 2);
    cr_assert_eq(bf_fileh_page_state(e->fh, 2), BF_PAGE_SPILLED);
    expect_consistent(e->fh);
}

static void spilled_miscounted(bf_fileh *fh, bool make)
{
    fh->nspilled += step(make);
}

static void ram_spilled_bytes_off(bf_fileh *fh, bool make)
{
    fh->ram->spilled_bytes += step(make) * BS;
}

/* Block 2 is SPILLED: give it block 3's buffer. */
static void spilled_with_a_buffer(bf_fileh *fh, bool make)
{
    page_at(fh, 2)->data = make ? page_at(fh, 3)->data : NULL;
}

/* Block 0 is LOADED: in I/O. */
static void io_on_a_loaded_page(bf_fileh *fh, bool make)
{
    page_at(fh, 0)->io = make ? BF_PAGE_IO_SPILL : BF_PAGE_IO_NONE;
}

/* Block 3 is DIRTY: in I/O, uncounted. */
static void io_uncounted(bf_fileh *fh, bool make)
{
    page_at(fh, 3)->io = make ? BF_PAGE_IO_FILL : BF_PAGE_IO_NONE;
}

/* Block 3 is DIRTY: partial, in a handle of one-unit blocks. */
static void partial_with_one_unit_blocks(bf_fileh *fh, bool make)
{
    static uint64_t bits;
    page_at(fh, 3)->valid = make ? &bits : NULL;
}

/* Block 3 is DIRTY: ahead (only a prefetched, unread clean page is). */
static void ahead_when_dirty(bf_fileh *fh, bool make)
{
    page_at(fh, 3)->ahead = make;
    fh->nahead += step(make);
    fh->ram->ahead_bytes += step(make) * BS;
}

static void ram_ahead_bytes_off(bf_fileh *fh, bool make)
{
    fh->ram->ahead_bytes += step(make) * BS;
}

Test(check, spilled_pages, .timeout = 10)
{
    struct env e;
    env_spilled(&e);
    expect_caught(e.fh, spilled_miscounted, "I12");
    expect_caught(e.fh, ram_spilled_bytes_off, "I13");
    expect_caught(e.fh, spilled_with_a_buffer, "I8");
    env_close(&e);
}

Test(check, page_io_partial_pages_and_prefetch, .timeout = 10)
{
    struct env e;
    env_spilled(&e);
    expect_caught(e.fh, io_on_a_loaded_page, "I29");
    expect_caught(e.fh, io_uncounted, "I29");
    expect_caught(e.fh, partial_with_one_unit_blocks, "I30");
    expect_caught(e.fh, ahead_when_dirty, "I31");
    expect_caught(e.fh, ram_ahead_bytes_off, "I31");
    env_close(&e);
}
