/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: the structures of a file handle and its pages, shared
 * by fileh.c (pages, reads, writes, writeout) and seek.c (SEEK_DATA,
 * SEEK_HOLE, allocated bytes). Private to src/core.
 *
 * Every field of a handle and of its pages is protected by the ram's big
 * lock (ram_internal.h), except a page's block buffer while a backend call
 * uses it with the lock released: a loading page's buffer is its loader's,
 * a stored page's the writeout's (I1, I3, I4 of the numbered invariants
 * in fileh.h, which the field comments below cite). Only fileh.c changes
 * a page's state (page_set_state, I9).
 */
#ifndef BIGFILEFS_CORE_FILEH_INTERNAL_H
#define BIGFILEFS_CORE_FILEH_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/fileh.h"
#include "core/list.h"
#include "core/pagemap.h"
#include "core/ram_internal.h"

struct bf_page {
    enum bf_page_state state;
    uint64_t blk;
    void *data; /* blksize bytes, bf_blockbuf_alloc */
    bf_fileh *fh;
    struct bf_list lru;   /* on ram->lru exactly when LOADED (I10) */
    struct bf_list dirty; /* on fh->dirty exactly when DIRTY (I11) */
    bool storing;         /* a running writeout stores `data` (I4, I14) */
    bool conflict;        /* DIRTY: another commit changed the block after
                             `serial` (I25) */
    /* LOADED: the view it was loaded at; DIRTY: the base of the change, the
     * serial of the content it was made on (I24) */
    uint64_t serial;
    /* DIRTY only because a write in progress pinned it (pin_partial):
     * content still the LOADED one; cleared by any change of its content
     * or state */
    bool wpinned;
};

struct bf_fileh {
    bf_file *file;
    bf_ram *ram;
    uint32_t blksize;
    unsigned blkbits;                   /* blksize == 1 << blkbits */
    bf_pagemap pages;                   /* blk -> struct bf_page, every non-EMPTY page (I8) */
    struct bf_list dirty;               /* DIRTY pages, any order (I11) */
    uint64_t nloaded, ndirty, nloading; /* I12 */

    uint64_t size; /* current, uncommitted */
    uint64_t committed_size;
    uint64_t min_size; /* lowest size since the last commit or discard (I17) */

    bool writeout_running; /* I19 */
    /* broadcast when a writeout ends, for the shrinking truncates that wait
     * for it (I18); used with the ram's lock */
    pthread_cond_t writeout_done;
    /* old buffers the running writeout holds after copy on write (counted
     * in the ram's dirty_bytes, I13) */
    uint64_t cow_held;
    /* Progress of the running STORE writeout, for bf_fileh_stat: the
     * blocks it stores (set under the lock as it starts, 0 when none runs)
     * and those stored so far (written by the writeout with the lock
     * released, so accessed atomically). */
    uint64_t wo_total;
    uint64_t wo_done;
    bool fenced;
    uint64_t fence_lo, fence_hi; /* fenced blocks, inclusive */

    /* Serials (fileh.h, "Serials"; I24-I27). */
    uint64_t view;      /* the serial the handle's content is as of */
    uint64_t size_base; /* when the committed size was last learned */
    uint64_t file_base; /* when the handle was last clean (FILE_CONFLICTS) */
    uint64_t nconflict; /* DIRTY pages marked conflicting */
    bool size_conflict; /* the uncommitted size conflicts */
    /* The launder window of the commit being applied (I27): writes into
     * its blocks merge onto the content as of lw_serial - 1. */
    bool lw_open;
    uint64_t lw_serial;
    struct bf_blkrange *lw_ranges; /* a copy of the commit's ranges */
    size_t lw_nranges;
    uint64_t lw_trunc; /* blocks >= it are in the window too */

    /* What the backend stores, for seek_data and allocated_bytes.
     * content_gen counts the events after which the backend's committed
     * content may differ from before (a STORE writeout's commit, an
     * invalidation): a backend answer obtained with the lock released is
     * used only if content_gen did not move meanwhile (I21). */
    uint64_t content_gen;
    bool nstored_known; /* nstored is the backend's count as of content_gen */
    uint64_t nstored;

    struct bf_list ram_link;  /* on the ram's handle list (I13) */
    struct bf_fileh_stats st; /* the counters (state fields filled by stat) */
};

/* Blocks needed to hold `bytes` bytes. */
static inline uint64_t div_ceil_blk(const bf_fileh *fh, uint64_t bytes)
{
    return (bytes >> fh->blkbits) + ((bytes & (fh->blksize - 1)) != 0);
}

/* First block that reads as zeros without asking the backend, when not
 * cached: blocks wholly past the lowest size since the last commit. */
static inline uint64_t zero_from_blk(const bf_fileh *fh)
{
    return div_ceil_blk(fh, fh->min_size);
}

/* bf_fileh_check with the lock held (fileh_check.c): 0 or -EUCLEAN after
 * printing the first broken invariant. */
int bf_fileh_check_locked(bf_fileh *fh);

#endif /* BIGFILEFS_CORE_FILEH_INTERNAL_H */
