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
 *  - the LRU list of clean blocks of all its handles;
 *  - the lock: one mutex for the ram and every handle opened on it (the
 *    seeds' "big virtmem lock", per ram). It protects pagemaps, page states,
 *    dirty lists, sizes, LRU and counters. It is never held across a backend
 *    call (loadblk, storeblk, begin, truncate, commit, abort): those run
 *    with it released, so slow I/O never blocks other blocks or handles.
 *  - a condition variable, broadcast whenever a load finishes, on which a
 *    thread that needs a block another thread is loading waits (no polling).
 *
 * Block buffers are allocated with mmap(2) and released with munmap(2), so a
 * dropped block returns its memory to the OS at once and the process RSS
 * follows the cached bytes — within a small, bounded slack:
 *
 *  - buffers of a multiple of 2 MiB (BF_RAM_HUGE_SIZE) are 2 MiB-aligned
 *    mappings advised MADV_HUGEPAGE, so that a block is one page fault and
 *    one huge page instead of 512 small ones (when transparent huge pages
 *    are enabled or in `madvise` mode; otherwise the advice is ignored).
 *    A dropped one is kept on a second, *huge recycle list* of at most
 *    BF_RAM_RECYCLE_HUGE_MAX_BUFFERS buffers and
 *    BF_RAM_RECYCLE_HUGE_MAX_BYTES bytes (its oldest unmapped to make room;
 *    a buffer larger than that is unmapped at once), under the same rules
 *    as the small list below. It is handed out *without zeroing* to a
 *    caller that declares it overwrites the whole buffer (a load: loadblk
 *    fills the block; a write of a whole block), which saves the kernel's
 *    zeroing of a fresh huge page per load; zeroed to anyone else.
 *  - smaller buffers (4 KiB .. 1 MiB) are kept on a *recycle list* when
 *    freed, for the next allocation of the same size (zeroed again), which
 *    saves the mmap, the page faults and the munmap of a block per load.
 *    The list is process-wide (block buffers are not tied to a ram), holds
 *    at most BF_RAM_RECYCLE_MAX_BUFFERS buffers and
 *    BF_RAM_RECYCLE_MAX_BYTES bytes (when full, its oldest buffers are
 *    unmapped at once to make room), is only used while some ram exists,
 *    and is emptied (unmapped) by every bf_ram_free, like the huge list.
 *
 * So the RSS is the cached bytes plus at most BF_RAM_RECYCLE_MAX_BYTES +
 * BF_RAM_RECYCLE_HUGE_MAX_BYTES (4 + 4 MiB; in practice one of the two,
 * for the block size in use); bf_ram_stat reports that slack.
 *
 * Global state: the recycle list above and the count of live rams, both
 * behind one private mutex (a leaf lock: taken with or without a ram lock
 * held, never held across anything but the list's own bookkeeping).
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef BIGFILEFS_CORE_RAM_H
#define BIGFILEFS_CORE_RAM_H

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
    /* Added after the fields above (compatible): the recycle lists' slack
     * (small and huge together).
     * Process-wide, so the same for every ram. */
    uint64_t recycled_bytes;   /* freed block buffers kept for reuse, bytes */
    uint64_t recycled_buffers; /* ... and how many */
};

/* Block buffers of a multiple of this size are huge-page advised and kept
 * on the huge recycle list. */
#define BF_RAM_HUGE_SIZE ((size_t)2 << 20)
/* Bounds of the recycle list (both hold at every moment). */
#define BF_RAM_RECYCLE_MAX_BUFFERS 8u
#define BF_RAM_RECYCLE_MAX_BYTES ((size_t)4 << 20)
/* Bounds of the huge recycle list (both hold at every moment): two 2 MiB
 * blocks, enough for a sequential load to take the buffer the eviction
 * it caused just freed. */
#define BF_RAM_RECYCLE_HUGE_MAX_BUFFERS 2u
#define BF_RAM_RECYCLE_HUGE_MAX_BYTES ((size_t)4 << 20)

/* Create a ram with a budget of `budget` bytes of clean blocks. A budget of
 * 0 keeps no clean block once the call that loaded it returns.
 * Returns 0 or -ENOMEM. */
int bf_ram_new(size_t budget, bf_ram **out);

/* Free a ram. Every handle opened on it must be closed first: returns
 * -EBUSY (and frees nothing) otherwise, 0 on success. NULL is a no-op.
 * On success also unmaps every buffer of the recycle list. */
int bf_ram_free(bf_ram *ram);

/* Change the budget; drops LRU clean blocks at once if over it. */
void bf_ram_set_budget(bf_ram *ram, size_t budget);

/* Drop least recently used clean blocks of any handle until at least
 * `bytes` were freed or no clean block is left. Never drops a dirty block or
 * one being loaded. Returns the number of bytes freed. */
size_t bf_ram_reclaim(bf_ram *ram, size_t bytes);

/* Fill *st with a consistent snapshot. */
void bf_ram_stat(bf_ram *ram, struct bf_ram_stats *st);

#endif /* BIGFILEFS_CORE_RAM_H */
