/* bigfilefs — core: the ram — lock, LRU of clean pages, budget (ram.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/ram_internal.h"

/* The recycle list of small block buffers, oldest first, the list of huge
 * ones (newest last), and the count of live rams (ram.h, "Global state").
 * `lock` is a leaf: nothing else is taken, and no system call is made,
 * while it is held. */
static struct {
    pthread_mutex_t lock;
    uint64_t live_rams;             /* rams created and not yet freed */
    unsigned n;                     /* buffers in `buf` */
    size_t   bytes;                 /* their total size */
    struct { void *buf; size_t size; } buf[BF_RAM_RECYCLE_MAX_BUFFERS];
    unsigned nhuge;                 /* buffers in `huge` */
    size_t   huge_bytes;            /* their total size */
    struct { void *buf; size_t size; } huge[BF_RAM_RECYCLE_HUGE_MAX_BUFFERS];
} recycle = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Unmap every buffer of both recycle lists. */
static void recycle_drain(void)
{
    void  *bufs[BF_RAM_RECYCLE_MAX_BUFFERS + BF_RAM_RECYCLE_HUGE_MAX_BUFFERS];
    size_t sizes[BF_RAM_RECYCLE_MAX_BUFFERS + BF_RAM_RECYCLE_HUGE_MAX_BUFFERS];
    pthread_mutex_lock(&recycle.lock);
    unsigned n = 0;
    for (unsigned i = 0; i < recycle.n; i++, n++) {
        bufs[n] = recycle.buf[i].buf;
        sizes[n] = recycle.buf[i].size;
    }
    for (unsigned i = 0; i < recycle.nhuge; i++, n++) {
        bufs[n] = recycle.huge[i].buf;
        sizes[n] = recycle.huge[i].size;
    }
    recycle.n = 0;
    recycle.bytes = 0;
    recycle.nhuge = 0;
    recycle.huge_bytes = 0;
    pthread_mutex_unlock(&recycle.lock);
    for (unsigned i = 0; i < n; i++)
        munmap(bufs[i], sizes[i]);
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

/* Take the newest buffer of `size` off the huge list, or NULL. */
static void *huge_take(size_t size)
{
    void *p = NULL;
    pthread_mutex_lock(&recycle.lock);
    for (unsigned i = recycle.nhuge; i-- > 0;) {
        if (recycle.huge[i].size == size) {
            p = recycle.huge[i].buf;
            recycle.nhuge--;
            memmove(&recycle.huge[i], &recycle.huge[i + 1],
                    (recycle.nhuge - i) * sizeof(recycle.huge[0]));
            recycle.huge_bytes -= size;
            break;
        }
    }
    pthread_mutex_unlock(&recycle.lock);
    return p;
}

void *bf_ram_block_alloc_overwrite(size_t size)
{
    if (size % BF_RAM_HUGE_SIZE == 0) {
        /* Its old content stays: the caller overwrites every byte, so the
         * kernel's zeroing of a fresh huge page is saved. */
        void *p = huge_take(size);
        return p ? p : map_huge(size);
    }
    return bf_ram_block_alloc(size);
}

void *bf_ram_block_alloc(size_t size)
{
    if (size % BF_RAM_HUGE_SIZE == 0) {
        /* A fresh mapping is zero-filled by the kernel. A recycled buffer
         * is handed out too (zeroed here: already resident, no fault), so
         * that the list does not hold buffers nobody takes. */
        void *p = huge_take(size);
        if (!p)
            return map_huge(size);
        memset(p, 0, size);
        return p;
    }
    if (size > BF_RAM_RECYCLE_MAX_BYTES)
        return map_anon(size);
    void *p = NULL;
    pthread_mutex_lock(&recycle.lock);
    for (unsigned i = recycle.n; i-- > 0;) {
        if (recycle.buf[i].size == size) {       /* the newest of that size */
            p = recycle.buf[i].buf;
            recycle.n--;
            memmove(&recycle.buf[i], &recycle.buf[i + 1], (recycle.n - i) * sizeof(recycle.buf[0]));
            recycle.bytes -= size;
            break;
        }
    }
    pthread_mutex_unlock(&recycle.lock);
    if (!p)
        return map_anon(size);
    /* The pages its last use touched are still resident: zeroing them here
     * costs no fault and no kernel zeroing. */
    memset(p, 0, size);
    return p;
}

/* Keep a huge buffer as the newest of the huge list, if some ram exists
 * and it fits the bounds (the oldest make room and are unmapped); else
 * unmap it. */
static void huge_free(void *buf, size_t size)
{
    void  *old[BF_RAM_RECYCLE_HUGE_MAX_BUFFERS];
    size_t old_size[BF_RAM_RECYCLE_HUGE_MAX_BUFFERS];
    unsigned nold = 0;
    pthread_mutex_lock(&recycle.lock);
    bool keep = recycle.live_rams > 0 && size <= BF_RAM_RECYCLE_HUGE_MAX_BYTES;
    if (keep) {
        while (recycle.nhuge == BF_RAM_RECYCLE_HUGE_MAX_BUFFERS ||
               recycle.huge_bytes + size > BF_RAM_RECYCLE_HUGE_MAX_BYTES) {
            old[nold] = recycle.huge[0].buf;
            old_size[nold] = recycle.huge[0].size;
            nold++;
            recycle.huge_bytes -= recycle.huge[0].size;
            recycle.nhuge--;
            memmove(&recycle.huge[0], &recycle.huge[1], recycle.nhuge * sizeof(recycle.huge[0]));
        }
        recycle.huge[recycle.nhuge].buf = buf;
        recycle.huge[recycle.nhuge].size = size;
        recycle.nhuge++;
        recycle.huge_bytes += size;
    }
    pthread_mutex_unlock(&recycle.lock);
    if (!keep)
        munmap(buf, size);
    for (unsigned i = 0; i < nold; i++)
        munmap(old[i], old_size[i]);
}

void bf_ram_block_free(void *buf, size_t size)
{
    if (!buf)
        return;
    if (size % BF_RAM_HUGE_SIZE == 0) {
        huge_free(buf, size);
        return;
    }
    if (size > BF_RAM_RECYCLE_MAX_BYTES) {
        munmap(buf, size);
        return;
    }
    /* Keep it as the newest; to stay within the bounds, the oldest buffers
     * (likely of a block size no longer in use) make room and are unmapped. */
    void  *old[BF_RAM_RECYCLE_MAX_BUFFERS];
    size_t old_size[BF_RAM_RECYCLE_MAX_BUFFERS];
    unsigned nold = 0;
    pthread_mutex_lock(&recycle.lock);
    bool keep = recycle.live_rams > 0;
    if (keep) {
        while (recycle.n == BF_RAM_RECYCLE_MAX_BUFFERS ||
               recycle.bytes + size > BF_RAM_RECYCLE_MAX_BYTES) {
            old[nold] = recycle.buf[0].buf;
            old_size[nold] = recycle.buf[0].size;
            nold++;
            recycle.bytes -= recycle.buf[0].size;
            recycle.n--;
            memmove(&recycle.buf[0], &recycle.buf[1], recycle.n * sizeof(recycle.buf[0]));
        }
        recycle.buf[recycle.n].buf = buf;
        recycle.buf[recycle.n].size = size;
        recycle.n++;
        recycle.bytes += size;
    }
    pthread_mutex_unlock(&recycle.lock);
    if (!keep)
        munmap(buf, size);
    for (unsigned i = 0; i < nold; i++)
        munmap(old[i], old_size[i]);
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
    st->recycled_bytes = recycle.bytes + recycle.huge_bytes;
    st->recycled_buffers = recycle.n + recycle.nhuge;
    pthread_mutex_unlock(&recycle.lock);
}
