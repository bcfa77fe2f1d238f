/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: what ram.c shares with fileh.c (private to src/core).
 *
 * The dependency is one-way: fileh.c uses the ram; ram.c knows nothing of
 * handles or pages and calls nothing above it. The ram keeps the LRU as a
 * list of opaque links and the byte counters; to drop the least recently
 * used clean block — to stay within the budget, or on reclaim — the page
 * layer (fileh.c) takes the oldest link of the LRU and drops the page it
 * belongs to (the seeds' virtmem, too, reclaims in virtmem.c, with the
 * pages, not in its ram layer). So bf_ram_set_budget and bf_ram_reclaim,
 * which drop pages, are declared in fileh.h and implemented in fileh.c.
 *
 * struct bf_ram is defined here so that fileh.c can keep the counters and
 * take the lock without a call per field. Every field but the lock, the
 * condition variables and `owner` is protected by `lock` (I1 of fileh.h).
 */
#ifndef BIGFILEFS_CORE_RAM_INTERNAL_H
#define BIGFILEFS_CORE_RAM_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/list.h"
#include "core/ram.h"
#include "util/debug.h"

struct bf_ram {
    pthread_mutex_t lock;     /* the big lock: ram and all its handles */
    pthread_cond_t load_done; /* broadcast whenever a load finishes */
    /* broadcast whenever a thread starts a bf_ram_wait (for
     * bf_ram_await_waiters); uses CLOCK_MONOTONIC */
    pthread_cond_t waiters_changed;
    /* Debug builds: the thread holding `lock` (bf_ram_self()), 0 when
     * free; for bf_ram_assert_locked. Accessed atomically (a thread that
     * does not hold the lock reads it to tell that it does not). */
    uintptr_t owner;
    struct bf_list lru;   /* LOADED pages of every handle; head = least recent */
    struct bf_list dlru;  /* DIRTY pages of every handle; head = least recently written */
    struct bf_list hlist; /* open handles (opaque links), for bf_fileh_check */
    size_t budget;        /* bytes of clean pages allowed */
    uint64_t clean_bytes; /* bytes of LOADED pages */
    /* bytes of DIRTY pages, and of old buffers a writeout still holds
     * after copy on write */
    uint64_t dirty_bytes;
    uint64_t loading_bytes; /* bytes of buffers being loaded */
    size_t dirty_budget;    /* bytes of DIRTY pages allowed before spilling (SIZE_MAX: any) */
    uint64_t spilled_bytes; /* bytes of SPILLED pages (staged, not in memory) */
    uint64_t ahead_bytes;   /* bytes of pages prefetched and not read yet (I31) */
    uint64_t nspilling;     /* pages being spilled now (I29) */
    bool room_refused;      /* the last make_room left the budget exceeded because staging
                               refused pages (fileh_internal.h) */
    uint64_t handles;       /* open handles: the length of hlist */
    uint64_t evictions;     /* clean pages dropped by budget or reclaim */
    unsigned waiting;       /* threads in bf_ram_wait now */
};

/* Take / release the big lock. Not recursive: the caller does not hold it
 * on bf_ram_lock (I2 of fileh.h; asserted in debug builds), and holds it on
 * bf_ram_unlock. In debug builds bf_ram_unlock also asserts that the clean
 * bytes are within the budget (I6). */
void bf_ram_lock(bf_ram *ram);
void bf_ram_unlock(bf_ram *ram);

#ifdef BF_DEBUG
/* An id of the calling thread, never 0 (debug builds). */
uintptr_t bf_ram_self(void);
/* Whether the calling thread holds ram's lock (debug builds). */
bool bf_ram_held(const bf_ram *ram);
/* Assert that the calling thread holds ram's lock (I1 of fileh.h). */
#define bf_ram_assert_locked(ram) BF_ASSERT(bf_ram_held(ram))
#else
#define bf_ram_assert_locked(ram) ((void)0)
#endif

/* Wait on `cond` with the lock held (released while waiting, held again on
 * return; I6 is asserted before, as at an unlock). Callers re-check what
 * they wait for: a wake-up says only that something they may wait for
 * happened. Counted in `waiting` meanwhile (bf_ram_await_waiters). */
void bf_ram_wait(bf_ram *ram, pthread_cond_t *cond);

/* bf_ram_wait on load_done: until some load finishes (I5). */
void bf_ram_wait_load(bf_ram *ram);

/* Wake every waiter of bf_ram_wait_load. Lock held. */
void bf_ram_wake_loaders(bf_ram *ram);

/* Handles, lock held: link an opened handle's `link` on the ram (counted
 * in handles) or unlink it at close. */
void bf_ram_handle_add(bf_ram *ram, struct bf_list *link);
void bf_ram_handle_remove(bf_ram *ram, struct bf_list *link);

/* LRU of clean pages, lock held: append `link` as most recently used,
 * move it there (touch), or take it off. The ram never looks inside what
 * the link is embedded in. */
void bf_ram_lru_add(bf_ram *ram, struct bf_list *link);
void bf_ram_lru_touch(bf_ram *ram, struct bf_list *link);
void bf_ram_lru_remove(bf_ram *ram, struct bf_list *link);

/* The least recently used link of the LRU, or NULL when it is empty. Lock
 * held. The caller (fileh.c, which knows the pages) drops that page. */
struct bf_list *bf_ram_lru_oldest(bf_ram *ram);

/* Dirty LRU, lock held: append a DIRTY page's `link` as most recently
 * written, move it there (touch), take it off. */
void bf_ram_dlru_add(bf_ram *ram, struct bf_list *link);
void bf_ram_dlru_touch(bf_ram *ram, struct bf_list *link);

/* True when the clean bytes are over the budget. Lock held. */
bool bf_ram_over_budget(const bf_ram *ram);

#endif /* BIGFILEFS_CORE_RAM_INTERNAL_H */
