/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: what ram.c shares with fileh.c (private to src/core).
 *
 * struct bf_ram is defined here so that fileh.c can keep the counters and
 * take the lock without a call per field. Every field except `lock` and
 * `load_done` is protected by `lock`.
 */
#ifndef BIGFILEFS_CORE_RAM_INTERNAL_H
#define BIGFILEFS_CORE_RAM_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/list.h"
#include "core/ram.h"

struct bf_ram {
    pthread_mutex_t lock;     /* the big lock: ram and all its handles */
    pthread_cond_t load_done; /* broadcast whenever a load finishes */
    struct bf_list lru;       /* LOADED pages of every handle; head = least recent */
    size_t budget;            /* bytes of clean pages allowed */
    uint64_t clean_bytes;     /* bytes of LOADED pages */
    /* bytes of DIRTY pages, and of old buffers a writeout still holds
     * after copy on write */
    uint64_t dirty_bytes;
    uint64_t loading_bytes; /* bytes of buffers being loaded */
    uint64_t handles;       /* open handles */
    uint64_t evictions;     /* clean pages dropped by budget or reclaim */
};

/* Take / release the big lock. */
void bf_ram_lock(bf_ram *ram);
void bf_ram_unlock(bf_ram *ram);

/* Wait, with the lock held, until some load finishes (the lock is released
 * while waiting and held again on return). Callers re-check what they wait
 * for: a wake-up says only that some load ended. */
void bf_ram_wait_load(bf_ram *ram);

/* Wake every waiter of bf_ram_wait_load. Lock held. */
void bf_ram_wake_loaders(bf_ram *ram);

/* LRU of clean pages, lock held: append `link` as most recently used,
 * move it there (touch), or take it off. */
void bf_ram_lru_add(bf_ram *ram, struct bf_list *link);
void bf_ram_lru_touch(bf_ram *ram, struct bf_list *link);
void bf_ram_lru_remove(bf_ram *ram, struct bf_list *link);

/* Lock held: drop least recently used clean pages until clean bytes are
 * within the budget. Returns the bytes freed. */
size_t bf_ram_enforce_budget(bf_ram *ram);

/* Implemented by fileh.c, called by ram.c with the lock held: drop the
 * LOADED page whose LRU link is `link` (from its handle's pagemap, the LRU,
 * and memory) and return the bytes freed. Counts it in the handle's
 * reclaimed_blocks and the ram's evictions. */
size_t bf_fileh_evict_lru_page(struct bf_list *link);

#endif /* BIGFILEFS_CORE_RAM_INTERNAL_H */
