/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: the structures of a file handle and its pages, shared
 * by fileh.c (pages, reads, writes, writeout), spill.c (spilling dirty
 * pages to the store's staging area and back) and seek.c (SEEK_DATA,
 * SEEK_HOLE, allocated bytes). Private to src/core.
 *
 * Every field of a handle and of its pages is protected by the ram's big
 * lock (ram_internal.h), except a page's block buffer while a backend call
 * uses it with the lock released: a loading page's buffer is its loader's,
 * a stored page's the writeout's, a page in I/O its I/O's (I1, I3, I4,
 * I29 of the numbered invariants in fileh.h, which the field comments
 * below cite). A page changes state only in bf_pg_set_state (I9).
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

/* A page's I/O in progress with the lock released (I29), on a DIRTY page. */
enum bf_page_io {
    BF_PAGE_IO_NONE = 0,
    BF_PAGE_IO_SPILL,   /* its content is being staged: readers read it, writers wait */
    BF_PAGE_IO_UNSPILL, /* its buffer is being filled from staging: everybody waits */
    BF_PAGE_IO_FILL,    /* a partial page's base is being loaded: writers wait */
};

/* Units of a partial page's bitmap (I30). */
#define BF_UNIT_BITS 12
#define BF_UNIT ((uint32_t)1 << BF_UNIT_BITS)

struct bf_page {
    enum bf_page_state state;
    uint8_t io;    /* enum bf_page_io (I29) */
    bool storing;  /* a running writeout stores `data` or `token` (I4, I14) */
    bool conflict; /* DIRTY, SPILLED: another commit changed the block after
                      `serial` (I25) */
    /* DIRTY only because a write in progress pinned it (pin_partial):
     * content still the LOADED one; cleared by any change of its content
     * or state */
    bool wpinned;
    bool ahead; /* loaded by a prefetch and not read yet (I31) */
    /* DIRTY: staging it failed (the staging area is full, or broken); not
     * tried again until it is written again (I28) */
    bool spill_failed;
    uint64_t blk;
    void *data; /* blksize bytes, bf_blockbuf_alloc; NULL exactly when SPILLED */
    /* A partial page (I30): one bit per BF_UNIT bytes, set when those bytes
     * are valid; the others are filled from the version as of `serial`
     * when needed. NULL: every byte is valid. */
    uint64_t *valid;
    uint64_t token; /* SPILLED (and DIRTY while unspilling): its staged content */
    /* LOADED: the view it was loaded at; DIRTY, SPILLED: the base of the
     * change, the serial of the content it was made on (I24) */
    uint64_t serial;
    bf_fileh *fh;
    /* LOADED: on ram->lru; DIRTY: on ram->dlru, least recently written
     * first (I10) */
    struct bf_list lru;
    struct bf_list dirty; /* on fh->dirty exactly when DIRTY or SPILLED (I11) */
};

struct bf_fileh {
    bf_file *file;
    bf_ram *ram;
    uint32_t blksize;
    unsigned blkbits;     /* blksize == 1 << blkbits */
    bf_pagemap pages;     /* blk -> struct bf_page, every non-EMPTY page (I8) */
    struct bf_list dirty; /* DIRTY and SPILLED pages, any order (I11) */
    uint64_t nloaded, ndirty, nloading, nspilled; /* I12 */
    uint64_t nio;                                 /* pages with I/O in progress (io, I29) */
    uint64_t nahead;                              /* pages prefetched and not read yet (I31) */

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

    /* Sequential access (bf_fileh_readahead): where the last read ended,
     * how many reads in a row continued the one before, and the first
     * block not yet offered for prefetching. */
    uint64_t ra_end;
    uint64_t ra_run;
    uint64_t ra_next;
    /* The last read was answered through a sink (read_send): prefetch
     * then loads nothing into memory for blocks the store sends from its
     * file (a read spanning blocks, e.g. of small blocks, is not sent:
     * those need the blocks in memory). */
    bool ra_sent;

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

/* Units of a block (bits of a partial page's bitmap), and the words of
 * its bitmap. */
static inline uint32_t blk_units(const bf_fileh *fh)
{
    return fh->blksize >> BF_UNIT_BITS;
}

static inline size_t valid_words(const bf_fileh *fh)
{
    return (blk_units(fh) + 63) / 64;
}

static inline bool unit_valid(const uint64_t *valid, uint32_t u)
{
    return !valid || (valid[u / 64] >> (u % 64)) & 1;
}

/* bf_fileh_check with the lock held (fileh_check.c): 0 or -EUCLEAN after
 * printing the first broken invariant. */
int bf_fileh_check_locked(bf_fileh *fh);

/* ---- pages (fileh.c), for spill.c --------------------------------------- */

/* The one place a page changes state (I9): lists and counters follow.
 * Lock held; the page is not `storing` nor in I/O. */
void bf_pg_set_state(struct bf_page *pg, enum bf_page_state to);

/* Free a page that is EMPTY and in no map (its buffer and bitmap too). */
void bf_pg_free(struct bf_page *pg);

/* Mark a DIRTY or SPILLED page conflicting (I25). Lock held. */
void bf_pg_mark_conflict(struct bf_page *pg);

/* Copy the units of src whose bit in `valid` is `which` into dst (both
 * whole blocks of fh); valid NULL: every unit is valid. */
void bf_pg_copy_units(const bf_fileh *fh, void *dst, const void *src, const uint64_t *valid,
                      bool which);

/* Load block blk of f as of `at`, whole, into buf, with no lock held: the
 * content a partial page's missing bytes come from (I30). A version the
 * store no longer keeps (-ESTALE) is replaced by the current one
 * (*stale: the page then conflicts). Returns loadblk's result. */
int bf_pg_load_base(bf_file *f, uint64_t blk, uint64_t at, void *buf, bool *stale);

/* ---- spilling (spill.c) --------------------------------------------------- */

/* Make room for `need` more bytes of DIRTY pages on fh's ram (I28): if
 * they would take its dirty bytes over the dirty budget, spill the least
 * recently written page that can be spilled (never one of fh's blocks
 * [lo, hi], which the caller is about to use; never a page whose spill
 * failed and that was not written since). Lock held, released while
 * spilling. Returns 0 (room, or no page can be spilled: the lock was not
 * released), 1 (the lock was released: look again), or, unless
 * `over_ok`, the error of a spill that failed (-ENOSPC: the staging area
 * is full; the page stays DIRTY, marked spill_failed) — when only refused
 * pages are left, the oldest is offered again first (staging may have
 * room by now). With `over_ok` (a caller that cannot fail: the kernel's
 * writeback of a mapped page, the reload of a spilled page), a failed
 * spill is 1 and the dirty bytes go over the budget instead; the ram's
 * room_refused then says that refused pages kept it exceeded. */
int bf_spill_make_room(bf_fileh *fh, uint64_t need, uint64_t lo, uint64_t hi, bool over_ok);

/* Bring SPILLED page pg (not storing; no writeout of its handle runs)
 * back into memory: room first, then its content from staging, then the
 * staged content dropped. Lock held, released meanwhile. Returns 0 (look
 * again: pg may be DIRTY now, or anything may have changed) or an error
 * (the page stays SPILLED). */
int bf_spill_unspill(struct bf_page *pg);

/* Drop the staged contents of the pages on `list` (SPILLED pages dropped
 * to EMPTY, out of their pagemap, linked by their `dirty` link), and free
 * the pages. With no lock held (I2). */
void bf_spill_drop_list(struct bf_list *list);

#endif /* BIGFILEFS_CORE_FILEH_INTERNAL_H */
