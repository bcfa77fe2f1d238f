/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: the ram — lock, LRU of clean pages, budget (ram.h,
 * ram_internal.h). Knows no page: see ram_internal.h. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/blockbuf.h"
#include "core/ram_internal.h"
#include "util/util.h"

int bf_ram_new(size_t budget, bf_ram **out)
{
    bf_ram *ram = calloc(1, sizeof(*ram));
    if (!ram)
        return -ENOMEM;
    if (pthread_mutex_init(&ram->lock, NULL) != 0) {
        free(ram);
        return -ENOMEM;
    }
    if (pthread_cond_init(&ram->load_done, NULL) != 0) {
        pthread_mutex_destroy(&ram->lock);
        free(ram);
        return -ENOMEM;
    }
    pthread_condattr_t ca;
    bool ok = pthread_condattr_init(&ca) == 0;
    if (ok) {
        ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
             pthread_cond_init(&ram->waiters_changed, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    if (!ok) {
        pthread_cond_destroy(&ram->load_done);
        pthread_mutex_destroy(&ram->lock);
        free(ram);
        return -ENOMEM;
    }
    bf_list_init(&ram->lru);
    bf_list_init(&ram->dlru);
    bf_list_init(&ram->hlist);
    ram->budget = budget;
    ram->dirty_budget = SIZE_MAX;
    bf_blockbuf_user_add();
    *out = ram;
    return 0;
}

int bf_ram_free(bf_ram *ram)
{
    if (!ram)
        return 0;
    bf_ram_lock(ram);
    uint64_t handles = ram->handles;
    BF_ASSERT((handles == 0) == bf_list_empty(&ram->hlist)); /* I13 */
    bf_ram_unlock(ram);
    if (handles)
        return -EBUSY;
    pthread_cond_destroy(&ram->waiters_changed);
    pthread_cond_destroy(&ram->load_done);
    pthread_mutex_destroy(&ram->lock);
    free(ram);
    bf_blockbuf_user_drop();
    return 0;
}

void bf_ram_set_dirty_budget(bf_ram *ram, size_t bytes)
{
    bf_ram_lock(ram);
    ram->dirty_budget = bytes;
    bf_ram_unlock(ram);
}

#ifdef BF_DEBUG
uintptr_t bf_ram_self(void)
{
    static __thread char tag; /* one per thread: its address is the id */
    return (uintptr_t)&tag;
}

bool bf_ram_held(const bf_ram *ram)
{
    return __atomic_load_n(&ram->owner, __ATOMIC_RELAXED) == bf_ram_self();
}

/* The lock is now held by the calling thread (self) or by nobody (0). */
static void set_owner(bf_ram *ram, uintptr_t self)
{
    __atomic_store_n(&ram->owner, self, __ATOMIC_RELAXED);
}

/* The lock is about to be released by its holder. */
static void release_owner(bf_ram *ram)
{
    bf_ram_assert_locked(ram);
    BF_ASSERT(ram->clean_bytes <= ram->budget); /* I6 */
    set_owner(ram, 0);
}
#endif

void bf_ram_lock(bf_ram *ram)
{
    /* I2: not recursive (a second lock would deadlock). */
    BF_ASSERT(!bf_ram_held(ram));
    pthread_mutex_lock(&ram->lock);
    BF_DEBUG_ONLY(set_owner(ram, bf_ram_self()));
}

void bf_ram_unlock(bf_ram *ram)
{
    BF_DEBUG_ONLY(release_owner(ram));
    pthread_mutex_unlock(&ram->lock);
}

void bf_ram_wait(bf_ram *ram, pthread_cond_t *cond)
{
    ram->waiting++;
    pthread_cond_broadcast(&ram->waiters_changed);
    BF_DEBUG_ONLY(release_owner(ram));
    pthread_cond_wait(cond, &ram->lock);
    BF_DEBUG_ONLY(set_owner(ram, bf_ram_self()));
    ram->waiting--;
}

bool bf_ram_await_waiters(bf_ram *ram, unsigned n, unsigned timeout_ms)
{
    int64_t ns = bf_mono_ns() + (int64_t)timeout_ms * 1000000; /* the cond's clock */
    struct timespec dl = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
    bf_ram_lock(ram);
    int r = 0;
    while (ram->waiting < n && r != ETIMEDOUT) {
        BF_DEBUG_ONLY(release_owner(ram));
        r = pthread_cond_timedwait(&ram->waiters_changed, &ram->lock, &dl);
        BF_DEBUG_ONLY(set_owner(ram, bf_ram_self()));
    }
    bool ok = ram->waiting >= n;
    bf_ram_unlock(ram);
    return ok;
}

void bf_ram_wait_load(bf_ram *ram)
{
    bf_ram_wait(ram, &ram->load_done);
}

void bf_ram_wake_loaders(bf_ram *ram)
{
    bf_ram_assert_locked(ram);
    pthread_cond_broadcast(&ram->load_done);
}

void bf_ram_handle_add(bf_ram *ram, struct bf_list *link)
{
    bf_ram_assert_locked(ram);
    bf_list_add_tail(&ram->hlist, link);
    ram->handles++;
}

void bf_ram_handle_remove(bf_ram *ram, struct bf_list *link)
{
    bf_ram_assert_locked(ram);
    BF_ASSERT(ram->handles > 0 && bf_list_linked(link));
    bf_list_del(link);
    ram->handles--;
}

void bf_ram_lru_add(bf_ram *ram, struct bf_list *link)
{
    bf_ram_assert_locked(ram);
    BF_ASSERT(!bf_list_linked(link)); /* I10: on the LRU once */
    bf_list_add_tail(&ram->lru, link);
}

void bf_ram_lru_touch(bf_ram *ram, struct bf_list *link)
{
    bf_ram_assert_locked(ram);
    BF_ASSERT(bf_list_linked(link)); /* I10 */
    bf_list_del(link);
    bf_list_add_tail(&ram->lru, link);
}

void bf_ram_lru_remove(bf_ram *ram, struct bf_list *link)
{
    bf_ram_assert_locked(ram);
    BF_ASSERT(bf_list_linked(link)); /* I10 */
    (void)ram;
    bf_list_del(link);
}

void bf_ram_dlru_add(bf_ram *ram, struct bf_list *link)
{
    bf_ram_assert_locked(ram);
    BF_ASSERT(!bf_list_linked(link)); /* I10 */
    bf_list_add_tail(&ram->dlru, link);
}

void bf_ram_dlru_touch(bf_ram *ram, struct bf_list *link)
{
    bf_ram_assert_locked(ram);
    BF_ASSERT(bf_list_linked(link)); /* I10 */
    bf_list_del(link);
    bf_list_add_tail(&ram->dlru, link);
}

struct bf_list *bf_ram_lru_oldest(bf_ram *ram)
{
    bf_ram_assert_locked(ram);
    return bf_list_first(&ram->lru);
}

bool bf_ram_over_budget(const bf_ram *ram)
{
    bf_ram_assert_locked(ram);
    return ram->clean_bytes > ram->budget;
}

void bf_ram_stat(bf_ram *ram, struct bf_ram_stats *st)
{
    bf_ram_lock(ram);
    st->budget = ram->budget;
    st->clean_bytes = ram->clean_bytes;
    st->dirty_bytes = ram->dirty_bytes;
    st->loading_bytes = ram->loading_bytes;
    st->handles = ram->handles;
    st->evictions = ram->evictions;
    st->dirty_budget = ram->dirty_budget == SIZE_MAX ? UINT64_MAX : ram->dirty_budget;
    st->spilled_bytes = ram->spilled_bytes;
    st->ahead_bytes = ram->ahead_bytes;
    bf_ram_unlock(ram);
    struct bf_blockbuf_stats bs;
    bf_blockbuf_stat(&bs);
    st->recycled_bytes = bs.recycled_bytes;
    st->recycled_buffers = bs.recycled_buffers;
    st->held_buffers = bs.held_buffers;
    st->deferred_bytes = bs.deferred_bytes;
}
