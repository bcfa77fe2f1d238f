/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: the ram — lock, LRU of clean pages, budget (ram.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/ram_internal.h"

/* One recycle list: freed block buffers kept for reuse, oldest first,
 * within two bounds that hold at every moment. */
struct recycle_entry {
    void *buf;
    size_t size;
};

#define RECYCLE_ENTRIES_MAX                                       \
    (BF_RAM_RECYCLE_MAX_BUFFERS > BF_RAM_RECYCLE_HUGE_MAX_BUFFERS \
         ? BF_RAM_RECYCLE_MAX_BUFFERS                             \
         : BF_RAM_RECYCLE_HUGE_MAX_BUFFERS)

struct recycle_list {
    struct recycle_entry entries[RECYCLE_ENTRIES_MAX]; /* oldest first */
    unsigned count;                                    /* entries in use */
    size_t bytes;                                      /* their total size */
    unsigned max_buffers;                              /* bound on count (<= RECYCLE_ENTRIES_MAX) */
    size_t max_bytes;                                  /* bound on bytes */
};

/* The recycle list of small block buffers, the list of huge ones, and the
 * count of live rams (ram.h, "Global state"). `lock` is a leaf: nothing
 * else is taken, and no system call is made, while it is held. */
static struct {
    pthread_mutex_t lock;
    uint64_t live_rams; /* rams created and not yet freed */
    struct recycle_list small;
    struct recycle_list huge;
} recycle = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .small = { .max_buffers = BF_RAM_RECYCLE_MAX_BUFFERS, .max_bytes = BF_RAM_RECYCLE_MAX_BYTES },
    .huge = { .max_buffers = BF_RAM_RECYCLE_HUGE_MAX_BUFFERS,
              .max_bytes = BF_RAM_RECYCLE_HUGE_MAX_BYTES },
};

/* Remove entry `i` of `l`, keeping the order of the others. recycle.lock
 * held. */
static void recycle_list_remove(struct recycle_list *l, unsigned i)
{
    l->bytes -= l->entries[i].size;
    l->count--;
    memmove(&l->entries[i], &l->entries[i + 1], (l->count - i) * sizeof(l->entries[0]));
}

/* Move every entry of `l` to `out` (room for l->count), emptying it;
 * returns how many. recycle.lock held. */
static unsigned recycle_list_take_all(struct recycle_list *l, struct recycle_entry *out)
{
    unsigned n = l->count;
    memcpy(out, l->entries, n * sizeof(l->entries[0]));
    l->count = 0;
    l->bytes = 0;
    return n;
}

/* Take the newest buffer of `size` off `l`, or NULL (not zeroed: its old
 * content stays). Takes recycle.lock. */
static void *recycle_list_take(struct recycle_list *l, size_t size)
{
    if (size > l->max_bytes) /* never kept: spare the lock */
        return NULL;
    void *p = NULL;
    pthread_mutex_lock(&recycle.lock);
    for (unsigned i = l->count; i-- > 0;) {
        if (l->entries[i].size == size) {
            p = l->entries[i].buf;
            recycle_list_remove(l, i);
            break;
        }
    }
    pthread_mutex_unlock(&recycle.lock);
    return p;
}

/* Keep a buffer as the newest of `l`, if some ram exists and it fits the
 * bounds; to stay within them, the oldest buffers (likely of a block size
 * no longer in use) make room and are unmapped. Else unmap it. Takes
 * recycle.lock; unmaps after releasing it. */
static void recycle_list_put(struct recycle_list *l, void *buf, size_t size)
{
    struct recycle_entry old[RECYCLE_ENTRIES_MAX];
    unsigned nold = 0;
    if (size > l->max_bytes) { /* never kept: spare the lock */
        munmap(buf, size);
        return;
    }
    pthread_mutex_lock(&recycle.lock);
    bool keep = recycle.live_rams > 0;
    if (keep) {
        while (l->count == l->max_buffers || l->bytes + size > l->max_bytes) {
            old[nold++] = l->entries[0];
            recycle_list_remove(l, 0);
        }
        l->entries[l->count].buf = buf;
        l->entries[l->count].size = size;
        l->count++;
        l->bytes += size;
    }
    pthread_mutex_unlock(&recycle.lock);
    if (!keep)
        munmap(buf, size);
    for (unsigned i = 0; i < nold; i++)
        munmap(old[i].buf, old[i].size);
}

/* Unmap every buffer of both recycle lists. */
static void recycle_drain(void)
{
    struct recycle_entry all[2 * RECYCLE_ENTRIES_MAX];
    pthread_mutex_lock(&recycle.lock);
    unsigned n = recycle_list_take_all(&recycle.small, all);
    n += recycle_list_take_all(&recycle.huge, all + n);
    pthread_mutex_unlock(&recycle.lock);
    for (unsigned i = 0; i < n; i++)
        munmap(all[i].buf, all[i].size);
}

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
    bf_list_init(&ram->lru);
    ram->budget = budget;
    pthread_mutex_lock(&recycle.lock);
    recycle.live_rams++;
    pthread_mutex_unlock(&recycle.lock);
    *out = ram;
    return 0;
}

int bf_ram_free(bf_ram *ram)
{
    if (!ram)
        return 0;
    bf_ram_lock(ram);
    uint64_t handles = ram->handles;
    bf_ram_unlock(ram);
    if (handles)
        return -EBUSY;
    pthread_cond_destroy(&ram->load_done);
    pthread_mutex_destroy(&ram->lock);
    free(ram);
    pthread_mutex_lock(&recycle.lock);
    recycle.live_rams--;
    pthread_mutex_unlock(&recycle.lock);
    recycle_drain();
    return 0;
}

void bf_ram_lock(bf_ram *ram)
{
    pthread_mutex_lock(&ram->lock);
}

void bf_ram_unlock(bf_ram *ram)
{
    pthread_mutex_unlock(&ram->lock);
}

void bf_ram_wait_load(bf_ram *ram)
{
    pthread_cond_wait(&ram->load_done, &ram->lock);
}

void bf_ram_wake_loaders(bf_ram *ram)
{
    pthread_cond_broadcast(&ram->load_done);
}

static void *map_anon(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* A fresh mapping of `size` (a multiple of BF_RAM_HUGE_SIZE) aligned to
 * BF_RAM_HUGE_SIZE, advised MADV_HUGEPAGE. Recent kernels (6.18 here) align
 * anonymous mappings of a multiple of the huge page size themselves; if
 * this one did not, map a huge page more and trim the unaligned head and
 * tail. */
static void *map_huge(size_t size)
{
    char *p = map_anon(size);
    if (p && (uintptr_t)p % BF_RAM_HUGE_SIZE != 0) {
        munmap(p, size);
        char *q = map_anon(size + BF_RAM_HUGE_SIZE);
        if (!q)
            return NULL;
        size_t head = -(uintptr_t)q % BF_RAM_HUGE_SIZE;
        if (head)
            munmap(q, head);
        p = q + head;
        munmap(p + size, BF_RAM_HUGE_SIZE - head);
    }
    /* A hint only: it fails (EINVAL) on a kernel without transparent huge
     * pages, and is ignored when they are "never"; the buffer works as a
     * buffer of small pages then. */
    if (p)
        (void)madvise(p, size, MADV_HUGEPAGE);
    return p;
}

/* The recycle list that buffers of `size` go to. */
static struct recycle_list *recycle_list_for(size_t size)
{
    return size % BF_RAM_HUGE_SIZE == 0 ? &recycle.huge : &recycle.small;
}

/* A fresh mapping for a buffer of `size`: huge-page aligned and advised
 * if it goes to the huge list. */
static void *map_block(size_t size)
{
    return size % BF_RAM_HUGE_SIZE == 0 ? map_huge(size) : map_anon(size);
}

void *bf_ram_block_alloc_overwrite(size_t size)
{
    if (size % BF_RAM_HUGE_SIZE == 0) {
        /* Its old content stays: the caller overwrites every byte, so the
         * kernel's zeroing of a fresh huge page is saved. */
        void *p = recycle_list_take(&recycle.huge, size);
        return p ? p : map_huge(size);
    }
    return bf_ram_block_alloc(size);
}

void *bf_ram_block_alloc(size_t size)
{
    /* A fresh mapping is zero-filled by the kernel. A recycled buffer is
     * handed out too, zeroed here: the pages its last use touched are
     * still resident, so that costs no fault and no kernel zeroing (and
     * the huge list does not hold buffers nobody takes). */
    void *p = recycle_list_take(recycle_list_for(size), size);
    if (!p)
        return map_block(size);
    memset(p, 0, size);
    return p;
}

void bf_ram_block_free(void *buf, size_t size)
{
    if (!buf)
        return;
    recycle_list_put(recycle_list_for(size), buf, size);
}

void bf_ram_lru_add(bf_ram *ram, struct bf_list *link)
{
    bf_list_add_tail(&ram->lru, link);
}

void bf_ram_lru_touch(bf_ram *ram, struct bf_list *link)
{
    bf_list_del(link);
    bf_list_add_tail(&ram->lru, link);
}

void bf_ram_lru_remove(bf_ram *ram, struct bf_list *link)
{
    (void)ram;
    bf_list_del(link);
}

/* Drop LRU pages, oldest first, until clean bytes fit the budget
 * (to_budget) or `want` bytes were freed. Lock held. */
static size_t evict_while(bf_ram *ram, size_t want, bool to_budget)
{
    size_t freed = 0;
    struct bf_list *link;
    while ((link = bf_list_first(&ram->lru)) != NULL) {
        if (to_budget ? ram->clean_bytes <= ram->budget : freed >= want)
            break;
        freed += bf_fileh_evict_lru_page(link);
    }
    return freed;
}

size_t bf_ram_enforce_budget(bf_ram *ram)
{
    return evict_while(ram, 0, true);
}

void bf_ram_set_budget(bf_ram *ram, size_t budget)
{
    bf_ram_lock(ram);
    ram->budget = budget;
    bf_ram_enforce_budget(ram);
    bf_ram_unlock(ram);
}

size_t bf_ram_reclaim(bf_ram *ram, size_t bytes)
{
    bf_ram_lock(ram);
    size_t freed = evict_while(ram, bytes, false);
    bf_ram_unlock(ram);
    return freed;
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
    bf_ram_unlock(ram);
    pthread_mutex_lock(&recycle.lock);
    st->recycled_bytes = recycle.small.bytes + recycle.huge.bytes;
    st->recycled_buffers = recycle.small.count + recycle.huge.count;
    pthread_mutex_unlock(&recycle.lock);
}
