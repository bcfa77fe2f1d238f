/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: helpers shared by the fileh test binaries.
 *
 * An `env` is a mock file, a ram and one handle on them. Blocks are small
 * (4 KiB) so that tests are fast. Every helper asserts (Criterion) rather
 * than returning errors. Handles are closed with close_checked (env_close
 * does), which asserts bf_fileh_check first: every test that opens a handle
 * ends by checking the core's invariants. (A Criterion .fini would not do:
 * it does not fail a test.)
 */
#ifndef BIGFILEFS_TESTS_CORE_COREHELP_H
#define BIGFILEFS_TESTS_CORE_COREHELP_H

#ifdef CORE_MINICR
#include "minicr.h" /* the ThreadSanitizer build: see minicr.h */
#else
#include <criterion/criterion.h>
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileh.h"
#include "core/ram.h"
#include "mockfile.h"

#define BS 4096u

struct env {
    struct mockfile *m;
    bf_ram *ram;
    bf_fileh *fh;
};

/* A mock file of `size` bytes with committed blocks 0..nfilled-1 holding
 * the pattern of seed 1, and a handle on it in a ram of `budget` bytes. */
static inline void env_open(struct env *e, uint64_t size, uint64_t nfilled, size_t budget)
{
    e->m = mock_new(BS, size);
    for (uint64_t b = 0; b < nfilled; b++)
        mock_set_block(e->m, b, 1);
    cr_assert_eq(bf_ram_new(budget, &e->ram), 0);
    cr_assert_eq(bf_fileh_open(mock_file(e->m), e->ram, &e->fh), 0);
}

/* The handle's invariants hold (bf_fileh_check; what broke is on stderr). */
static inline void expect_consistent(bf_fileh *fh)
{
    cr_assert_eq(bf_fileh_check(fh), 0, "bf_fileh_check: an invariant of fileh.h is broken");
}

/* Close a handle after checking it: every test ends this way (through
 * env_close or directly), so that every test checks the invariants. */
static inline void close_checked(bf_fileh *fh)
{
    expect_consistent(fh);
    bf_fileh_close(fh);
}

static inline void env_close(struct env *e)
{
    close_checked(e->fh);
    cr_assert_eq(bf_ram_free(e->ram), 0);
    mock_free(e->m);
}

static inline struct bf_fileh_stats fstat_of(bf_fileh *fh)
{
    struct bf_fileh_stats st;
    bf_fileh_stat(fh, &st);
    return st;
}

static inline struct bf_ram_stats rstat_of(bf_ram *ram)
{
    struct bf_ram_stats st;
    bf_ram_stat(ram, &st);
    return st;
}

/* The pattern of seed for the bytes [off, off + len) of the file. */
static inline void *pattern(unsigned seed, uint64_t off, size_t len)
{
    void *p = malloc(len);
    cr_assert_not_null(p);
    mock_pattern(p, len, seed, off);
    return p;
}

/* Read block blk whole through the handle and compare with the pattern of
 * seed (seed 0: zeros). */
static inline void expect_block(bf_fileh *fh, uint64_t blk, unsigned seed)
{
    char *got = malloc(BS), *want = seed ? pattern(seed, blk * BS, BS) : calloc(1, BS);
    cr_assert(got && want);
    ssize_t n = bf_fileh_read(fh, got, BS, blk * BS);
    cr_assert_eq(n, (ssize_t)BS, "read of block %llu: %zd", (unsigned long long)blk, n);
    cr_assert(memcmp(got, want, BS) == 0, "block %llu differs from seed %u",
              (unsigned long long)blk, seed);
    free(got);
    free(want);
}

/* The committed block blk of the mock equals the pattern of seed (0: zeros). */
static inline void expect_committed(struct mockfile *m, uint64_t blk, unsigned seed)
{
    char *got = malloc(BS), *want = seed ? pattern(seed, blk * BS, BS) : calloc(1, BS);
    cr_assert(got && want);
    mock_get_block(m, blk, got);
    cr_assert(memcmp(got, want, BS) == 0, "committed block %llu differs from seed %u",
              (unsigned long long)blk, seed);
    free(got);
    free(want);
}

/* bf_fileh_writeout, with the number of blocks it handled in *n. */
static inline int writeout_n(bf_fileh *fh, unsigned flags, uint64_t *n)
{
    struct bf_writeout_result res = { 0, 0, 0 };
    int r = bf_fileh_writeout(fh, flags, &res);
    *n = res.blocks;
    return r;
}

/* Write block blk whole with the pattern of seed. */
static inline void write_block(bf_fileh *fh, uint64_t blk, unsigned seed)
{
    void *p = pattern(seed, blk * BS, BS);
    cr_assert_eq(bf_fileh_write(fh, p, BS, blk * BS), (ssize_t)BS);
    free(p);
}

#endif /* BIGFILEFS_TESTS_CORE_COREHELP_H */
