/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the changed blocks of a commit, as sorted ranges.
 *
 * A commit-log row names the blocks its commit changed as sorted, disjoint
 * ranges (struct bf_blkrange, core/bigfile.h). Engines build the list from
 * the blocks of a commit in ascending order (bf_ranges_add merges runs),
 * and an engine that stores the log as bytes keeps it in the compact form
 * of COHERENCE.md section 2: for each range the gap since the end of the
 * previous one (the first: since block 0) and the count, each an unsigned
 * LEB128 varint. The engines' other block-sorted arrays are searched with
 * bf_blk_lower. Pure functions; no locks.
 */
#ifndef BIGFILEFS_BACKENDS_RANGES_H
#define BIGFILEFS_BACKENDS_RANGES_H

#include <stddef.h>
#include <stdint.h>

#include "../core/bigfile.h"

/* A list of ranges being built (zero-initialized: empty). */
struct bf_rangebuf {
    struct bf_blkrange *v;
    size_t n, cap;
};

/* Add block blk, which must be above every block added before (a caller
 * bug otherwise, BF_ASSERT): it extends the last range or starts one.
 * Returns 0 or -ENOMEM (the list is unchanged). */
int bf_ranges_add(struct bf_rangebuf *rb, uint64_t blk);

/* Free the list and make it empty. */
void bf_ranges_free(struct bf_rangebuf *rb);

/* Encode n ranges (sorted, disjoint, non-empty) into *out (malloc'd; NULL
 * and *len 0 for none). Returns 0 or -ENOMEM. */
int bf_ranges_encode(const struct bf_blkrange *v, size_t n, unsigned char **out, size_t *len);

/* Decode len bytes into *out (malloc'd; NULL for none) and *n. Returns 0,
 * -EPROTO (malformed: a truncated varint, an empty range, a block number
 * past 2^64), -ENOMEM. */
int bf_ranges_decode(const void *buf, size_t len, struct bf_blkrange **out, size_t *n);

/* The number of blocks below `below` in the encoded ranges of len bytes
 * (a commit-log row's changed blocks; UINT64_MAX: all of them). 0 for
 * ranges that cannot be decoded (or no memory to decode them). */
uint64_t bf_ranges_count(const void *buf, size_t len, uint64_t below);

/* In an array v of n elements of `size` bytes each, sorted by a uint64_t
 * block number that is their first member: the index of the first element
 * whose block is >= blk (n if there is none). */
size_t bf_blk_lower(const void *v, size_t n, size_t size, uint64_t blk);

#endif /* BIGFILEFS_BACKENDS_RANGES_H */
