/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: memory accounting shared by file handles.
 *
 * A bf_ram is the memory that file handles (fileh.h) cache blocks in. It
 * holds:
 *
 *  - the budget: how many bytes of *clean* (LOADED) blocks may stay cached.
 *    When a load would push the clean bytes over the budget, the least
 *    recently used clean blocks of any handle on this ram are dropped first.
 *    Dirty blocks and blocks being loaded are never dropped and are not
 *    bounded by the budget (they are counted in the stats).
 *  - the dirty budget: how many bytes of *dirty* (DIRTY) blocks may stay in
 *    memory. A write or a read that would take them over it first
 *    *spills* the least recently written dirty blocks of any handle on
 *    this ram: their content goes to their store's staging area
 *    (bigfile.h, stage) and leaves memory, and the block comes back when
 *    it is read or written again (fileh.h, "Spilling"). Unlimited unless
 *    set (bf_ram_set_dirty_budget); blocks whose store cannot stage are
 *    never spilled.
 *  - the LRU list of clean blocks of all its handles, and the list of
 *    dirty blocks in the order they were last written. The ram keeps the
 *    list and the byte counters but knows no page: the handles' layer
 *    drops the pages, so changing the budget and reclaiming clean blocks of
 *    every handle (bf_ram_set_budget, bf_ram_reclaim) are in fileh.h;
 *  - the lock: one mutex for the ram and every handle opened on it (the
 *    seeds' "big virtmem lock", per ram). It protects pagemaps, page states,
 *    dirty lists, sizes, LRU and counters. It is never held across a backend
 *    call (any bf_file_ops): those run with it released, so slow I/O never
 *    blocks other blocks or handles.
 *  - a condition variable, broadcast whenever a load finishes, on which a
 *    thread that needs a block another thread is loading waits (no polling).
 *
 * The rules of the lock, the LRU and the counters are invariants I1, I2,
 * I5, I6, I10 and I13 of the core's numbered list, in fileh.h.
 *
 * Block buffers (the memory the blocks live in) come from the process-wide
 * allocator of blockbuf.h; a ram is one of its users (bf_ram_new registers
 * it, bf_ram_free drops it, which empties the allocator's recycle lists).
 * bf_ram_stat reports the allocator's slack with the ram's own counters.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef BIGFILEFS_CORE_RAM_H
#define BIGFILEFS_CORE_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bf_ram bf_ram;

struct bf_ram_stats {
    uint64_t budget;        /* bytes of clean blocks allowed */
    uint64_t clean_bytes;   /* LOADED blocks cached, bytes */
    uint64_t dirty_bytes;   /* DIRTY blocks, bytes */
    uint64_t loading_bytes; /* buffers of loads in progress, bytes */
    uint64_t handles;       /* handles open on this ram */
    uint64_t evictions;     /* clean blocks dropped to stay in budget or by reclaim */
    /* Added after the fields above (compatible): the slack of the
     * block-buffer recycle lists (blockbuf.h, bf_blockbuf_stat; small and
     * huge together). Process-wide, so the same for every ram. */
    uint64_t recycled_bytes;   /* freed block buffers kept for reuse, bytes */
    uint64_t recycled_buffers; /* ... and how many */
    /* Added after the fields above (compatible): spilling and prefetching. */
    uint64_t dirty_budget;  /* bytes of DIRTY blocks allowed in memory (UINT64_MAX: any) */
    uint64_t spilled_bytes; /* SPILLED blocks (staged, not in memory), bytes */
    uint64_t ahead_bytes;   /* blocks prefetched and not read yet, bytes */
    /* Added after the fields above (compatible): block buffers held by
     * replies in flight (blockbuf.h, bf_blockbuf_hold; process-wide). */
    uint64_t held_buffers;   /* buffers held */
    uint64_t deferred_bytes; /* held buffers freed meanwhile (outside the budget), bytes */
};

/* Create a ram with a budget of `budget` bytes of clean blocks. A budget of
 * 0 keeps no clean block once the call that loaded it returns.
 * Returns 0 or -ENOMEM. */
int bf_ram_new(size_t budget, bf_ram **out);

/* Set the dirty budget of `ram`: the bytes of DIRTY blocks its handles
 * may keep in memory before the least recently written ones are spilled
 * (SIZE_MAX: no limit, the default of bf_ram_new). Lowering it spills
 * nothing at once: the next call that dirties a block makes room first.
 * A budget under one block acts as one block. */
void bf_ram_set_dirty_budget(bf_ram *ram, size_t bytes);

/* Free a ram. Every handle opened on it must be closed first: returns
 * -EBUSY (and frees nothing) otherwise, 0 on success. NULL is a no-op.
 * On success also empties the block-buffer recycle lists (blockbuf.h). */
int bf_ram_free(bf_ram *ram);

/* For tests: wait until at least `n` threads wait inside core calls on
 * this ram — for a block another thread loads, or for a writeout to end
 * before a shrinking truncate — so that a test knows a thread has reached
 * its wait without sleeping. Returns true, or false after timeout_ms (a
 * test's failure, not a measure). */
bool bf_ram_await_waiters(bf_ram *ram, unsigned n, unsigned timeout_ms);

/* Fill *st with a consistent snapshot. */
void bf_ram_stat(bf_ram *ram, struct bf_ram_stats *st);

#endif /* BIGFILEFS_CORE_RAM_H */
