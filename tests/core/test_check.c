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
    bf_ram_lock(e.ram);
    e.fh->nloaded++;
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I12");
    bf_ram_lock(e.ram);
    e.fh->nloaded--;
    e.fh->ndirty--;
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I12");
    bf_ram_lock(e.ram);
    e.fh->ndirty++;
    bf_ram_unlock(e.ram);
    env_close(&e);
}

Test(check, byte_counters_of_the_ram, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    bf_ram_lock(e.ram);
    e.ram->dirty_bytes += BS;
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I13");
    bf_ram_lock(e.ram);
    e.ram->dirty_bytes -= BS;
    e.ram->clean_bytes -= BS;
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I13");
    bf_ram_lock(e.ram);
    e.ram->clean_bytes += BS;
    e.ram->handles++;
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I13");
    bf_ram_lock(e.ram);
    e.ram->handles--;
    bf_ram_unlock(e.ram);
    env_close(&e);
}

Test(check, lru_membership, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    struct bf_page *pg = page_at(e.fh, 1);
    bf_ram_lock(e.ram);
    bf_list_del(&pg->lru); /* LOADED, not on the LRU */
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I10");
    bf_ram_lock(e.ram);
    bf_list_add_tail(&e.ram->lru, &pg->lru);
    struct bf_page *d = page_at(e.fh, 2);
    bf_list_add_tail(&e.ram->lru, &d->lru); /* DIRTY, on the LRU */
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I10");
    bf_ram_lock(e.ram);
    bf_list_del(&d->lru);
    bf_ram_unlock(e.ram);
    env_close(&e);
}

Test(check, dirty_list_membership, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    struct bf_page *pg = page_at(e.fh, 3);
    bf_ram_lock(e.ram);
    bf_list_del(&pg->dirty); /* DIRTY, not on the dirty list */
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I11");
    bf_ram_lock(e.ram);
    bf_list_add_tail(&e.fh->dirty, &pg->dirty);
    bf_ram_unlock(e.ram);
    env_close(&e);
}

Test(check, pages_in_the_pagemap, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    struct bf_page *pg = page_at(e.fh, 0);
    bf_ram_lock(e.ram);
    pg->blk = 6; /* mapped at block 0 */
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I8");
    bf_ram_lock(e.ram);
    pg->blk = 0;
    bf_ram_unlock(e.ram);
    env_close(&e);
}

Test(check, storing_only_during_a_writeout, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    struct bf_page *pg = page_at(e.fh, 2);
    bf_ram_lock(e.ram);
    pg->storing = true;
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I14");
    bf_ram_lock(e.ram);
    pg->storing = false;
    e.fh->cow_held = 1; /* an old buffer held with no writeout */
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I19");
    bf_ram_lock(e.ram);
    e.fh->cow_held = 0;
    bf_ram_unlock(e.ram);
    env_close(&e);
}

Test(check, sizes_and_pages_past_them, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    bf_ram_lock(e.ram);
    e.fh->min_size = e.fh->size + 1;
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I17");
    bf_ram_lock(e.ram);
    e.fh->min_size = e.fh->size = BS; /* blocks 1..3 now lie past it */
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I15");
    bf_ram_lock(e.ram);
    e.fh->min_size = e.fh->size = 8 * BS;
    bf_ram_unlock(e.ram);
    env_close(&e);
}

Test(check, fence_is_a_range, .timeout = 10)
{
    struct env e;
    env_mixed(&e);
    cr_assert_eq(bf_fileh_fence(e.fh, 2, 3), 0);
    expect_consistent(e.fh);
    bf_ram_lock(e.ram);
    e.fh->fence_lo = 5;
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I22");
    bf_ram_lock(e.ram);
    e.fh->fence_lo = 2;
    bf_ram_unlock(e.ram);
    bf_fileh_unfence(e.fh);
    env_close(&e);
}

/* A load in progress (held at the mock's gate) past a lowered lowest
 * size: I16. The check runs while another thread is inside the core. */
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
    bf_ram_lock(e.ram);
    e.fh->min_size = 2 * BS;
    bf_ram_unlock(e.ram);
    expect_broken(e.fh, "I16");
    bf_ram_lock(e.ram);
    e.fh->min_size = 8 * BS;
    bf_ram_unlock(e.ram);
    mock_gate_release(e.m, MOCK_LOADBLK);
    pthread_join(l.thr, NULL);
    cr_assert_eq(l.ret, (ssize_t)BS);
    env_close(&e);
}
