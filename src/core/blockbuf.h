/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: block buffers, the process-wide allocator of the
 * memory that cached blocks live in.
 *
 * Every cached block of every handle (fileh.h) is one buffer of its
 * block size from here. This file knows buffers and sizes only: no page,
 * no handle, no budget (that is the ram, ram.h, one layer up).
 *
 * Buffers are allocated with mmap(2) and released with munmap(2), so a
 * dropped block returns its memory to the OS at once and the process RSS
 * follows the cached bytes — within a small, bounded slack:
 *
 *  - buffers of a multiple of 2 MiB (BF_BLOCKBUF_HUGE_SIZE) are 2 MiB-aligned
 *    mappings advised MADV_HUGEPAGE, so that a block is one page fault and
 *    one huge page instead of 512 small ones (when transparent huge pages
 *    are enabled or in `madvise` mode; otherwise the advice is ignored).
 *    A freed one is kept on the *huge recycle list* of at most
 *    BF_BLOCKBUF_RECYCLE_HUGE_MAX_BUFFERS buffers and
 *    BF_BLOCKBUF_RECYCLE_HUGE_MAX_BYTES bytes (its oldest unmapped to make
 *    room; a buffer larger than that is unmapped at once). It is handed out
 *    *without zeroing* to a caller that declares it overwrites the whole
 *    buffer (bf_blockbuf_alloc_overwrite: a load, whose loadblk fills the
 *    block; a write of a whole block), which saves the kernel's zeroing of
 *    a fresh huge page per load; zeroed to anyone else.
 *  - smaller buffers (4 KiB .. 1 MiB) are kept on the *recycle list* when
 *    freed, for the next allocation of the same size (zeroed again), which
 *    saves the mmap, the page faults and the munmap of a block per load.
 *    It holds at most BF_BLOCKBUF_RECYCLE_MAX_BUFFERS buffers and
 *    BF_BLOCKBUF_RECYCLE_MAX_BYTES bytes (when full, its oldest buffers are
 *    unmapped at once to make room).
 *
 * Both lists are used only while the allocator has a *user* (a live ram:
 * bf_ram_new registers one, bf_ram_free drops it), and every drop of a
 * user empties both (unmaps their buffers). So the RSS is the cached bytes
 * plus at most BF_BLOCKBUF_RECYCLE_MAX_BYTES +
 * BF_BLOCKBUF_RECYCLE_HUGE_MAX_BYTES (4 + 4 MiB; in practice one of the
 * two, for the block size in use); bf_blockbuf_stat reports that slack
 * (and bf_ram_stat passes it on).
 *
 * A buffer may be *held* (bf_blockbuf_hold) while something outside the
 * caller's locks reads it — the daemon's reply to a READ straight from a
 * cached block. A bf_blockbuf_free of a held buffer is deferred to its
 * last bf_blockbuf_release: until then it stays mapped, is recycled to
 * nobody, and keeps the content it had. Such buffers are outside every
 * budget: the RSS may exceed the cached bytes by the held buffers that
 * were freed meanwhile, which bf_blockbuf_stat reports, and never by
 * more than BF_BLOCKBUF_HOLDS_MAX_BYTES (holds past it are refused); in
 * practice by one or two blocks per READ in flight, for a moment.
 *
 * Global state: the two recycle lists, the count of users and the table
 * of held buffers, and nothing else, behind one private mutex. That mutex
 * is a leaf lock: it may be taken with any other lock held (the ram lock
 * in particular), nothing is taken and no system call is made while it
 * is held (buffers are unmapped after it is released).
 *
 * Thread safety: every function may be called from any thread, with any
 * lock held.
 */
#ifndef BIGFILEFS_CORE_BLOCKBUF_H
#define BIGFILEFS_CORE_BLOCKBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Buffers of a multiple of this size are huge-page advised and go to the
 * huge recycle list. */
#define BF_BLOCKBUF_HUGE_SIZE ((size_t)2 << 20)
/* Bounds of the recycle list (both hold at every moment). */
#define BF_BLOCKBUF_RECYCLE_MAX_BUFFERS 8u
#define BF_BLOCKBUF_RECYCLE_MAX_BYTES ((size_t)4 << 20)
/* Bounds of the huge recycle list (both hold at every moment): two 2 MiB
 * blocks, enough for a sequential load to take the buffer the eviction
 * it caused just freed. */
#define BF_BLOCKBUF_RECYCLE_HUGE_MAX_BUFFERS 2u
#define BF_BLOCKBUF_RECYCLE_HUGE_MAX_BYTES ((size_t)4 << 20)

/* At most this many buffers, of at most this many bytes in all, are held
 * at once (bf_blockbuf_hold). */
#define BF_BLOCKBUF_HOLDS_MAX 128u
#define BF_BLOCKBUF_HOLDS_MAX_BYTES ((size_t)64 << 20)

struct bf_blockbuf_stats {
    uint64_t recycled_bytes;   /* freed buffers kept for reuse (both lists), bytes */
    uint64_t recycled_buffers; /* ... and how many */
    uint64_t held_buffers;     /* buffers held (bf_blockbuf_hold) */
    uint64_t deferred_bytes;   /* held buffers freed meanwhile, waiting for their
                                  last release, bytes */
};

/* A zero-filled buffer of `size` bytes (a multiple of 4 KiB), or NULL
 * (out of memory). A multiple of BF_BLOCKBUF_HUGE_SIZE is taken from the
 * huge recycle list (and zeroed) when it holds one of that size, else a
 * fresh mapping aligned to BF_BLOCKBUF_HUGE_SIZE and advised MADV_HUGEPAGE;
 * a smaller size is taken from the recycle list (and zeroed) when it holds
 * one of that size, else a fresh mapping. */
void *bf_blockbuf_alloc(size_t size);

/* Like bf_blockbuf_alloc, but for a caller that overwrites all `size`
 * bytes before anything reads them: the content is unspecified (a buffer
 * of a multiple of BF_BLOCKBUF_HUGE_SIZE may come off the huge recycle
 * list as it was freed, not zeroed). NULL when out of memory. */
void *bf_blockbuf_alloc_overwrite(size_t size);

/* Release a buffer of bf_blockbuf_alloc or bf_blockbuf_alloc_overwrite of
 * the same `size`: onto the recycle list of its kind (small, or huge for a
 * multiple of BF_BLOCKBUF_HUGE_SIZE) if the allocator has a user and the
 * buffer fits the list's bounds (the list's oldest buffers are unmapped if
 * needed to stay within them); otherwise back to the OS at once (munmap).
 * NULL: no-op. */
void bf_blockbuf_free(void *buf, size_t size);

/* Hold `buf` (a buffer of bf_blockbuf_alloc* of `size`, not yet freed)
 * against bf_blockbuf_free: a free of it made before the matching
 * bf_blockbuf_release is carried out by that release (the last one, if
 * held several times). The caller must take the hold while the buffer
 * cannot be freed (under the lock of whatever owns it) and must not write
 * it after the owner freed it. Returns false, holding nothing, when
 * BF_BLOCKBUF_HOLDS_MAX distinct buffers, or BF_BLOCKBUF_HOLDS_MAX_BYTES
 * with this one, would be held (the caller copies what it needed
 * instead). Holding a buffer freed already, or releasing one not held,
 * is a bug (asserted in debug builds). */
bool bf_blockbuf_hold(void *buf, size_t size);

/* Drop one hold of bf_blockbuf_hold on `buf`; the last one frees it if
 * bf_blockbuf_free was called meanwhile (as that call would have). */
void bf_blockbuf_release(void *buf);

/* Register a user: while there is one, freed buffers are recycled. */
void bf_blockbuf_user_add(void);

/* Drop a user (one of bf_blockbuf_user_add) and empty both recycle lists:
 * every buffer they hold is unmapped. */
void bf_blockbuf_user_drop(void);

/* Fill *st with a consistent snapshot of the recycle lists and the held
 * buffers. */
void bf_blockbuf_stat(struct bf_blockbuf_stats *st);

#endif /* BIGFILEFS_CORE_BLOCKBUF_H */
