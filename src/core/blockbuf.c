/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: block buffers, mmap'ed, huge-page advised and
 * recycled within bounds (blockbuf.h). */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "core/blockbuf.h"
#include "util/debug.h"

/* One recycle list: freed block buffers kept for reuse, oldest first,
 * within two bounds that hold at every moment. */
struct recycle_entry {
    void *buf;
    size_t size;
};

#define RECYCLE_ENTRIES_MAX                                                 \
    (BF_BLOCKBUF_RECYCLE_MAX_BUFFERS > BF_BLOCKBUF_RECYCLE_HUGE_MAX_BUFFERS \
         ? BF_BLOCKBUF_RECYCLE_MAX_BUFFERS                                  \
         : BF_BLOCKBUF_RECYCLE_HUGE_MAX_BUFFERS)

struct recycle_list {
    struct recycle_entry entries[RECYCLE_ENTRIES_MAX]; /* oldest first */
    unsigned count;                                    /* entries in use */
    size_t bytes;                                      /* their total size */
    unsigned max_buffers;                              /* bound on count (<= RECYCLE_ENTRIES_MAX) */
    size_t max_bytes;                                  /* bound on bytes */
};

/* A held buffer (bf_blockbuf_hold): its size, how many holds it has, and
 * whether it was freed meanwhile (its last release frees it then). */
struct held_entry {
    void *buf;
    size_t size;
    unsigned holds; /* > 0 */
    bool freed;
};

/* The recycle list of small block buffers, the list of huge ones, the
 * count of users and the held buffers (blockbuf.h, "Global state").
 * `lock` is a leaf: nothing else is taken, and no system call is made,
 * while it is held. */
static struct {
    pthread_mutex_t lock;
    uint64_t users; /* bf_blockbuf_user_add not yet dropped (live rams) */
    struct recycle_list small;
    struct recycle_list huge;
    struct held_entry held[BF_BLOCKBUF_HOLDS_MAX]; /* [0, nheld) in use, unordered */
    unsigned nheld;
    size_t held_bytes; /* their sizes (bf_blockbuf_hold's): within BF_BLOCKBUF_HOLDS_MAX_BYTES */
} recycle = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .small = { .max_buffers = BF_BLOCKBUF_RECYCLE_MAX_BUFFERS,
               .max_bytes = BF_BLOCKBUF_RECYCLE_MAX_BYTES },
    .huge = { .max_buffers = BF_BLOCKBUF_RECYCLE_HUGE_MAX_BUFFERS,
              .max_bytes = BF_BLOCKBUF_RECYCLE_HUGE_MAX_BYTES },
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

/* The held entry of buf, or NULL. recycle.lock held. */
static struct held_entry *held_find(const void *buf)
{
    for (unsigned i = 0; i < recycle.nheld; i++)
        if (recycle.held[i].buf == buf)
            return &recycle.held[i];
    return NULL;
}

/* Free a buffer: if it is held (bf_blockbuf_hold), only mark it freed,
 * for its last release to free; else keep it as the newest of `l`, if
 * the allocator has a user and it fits the bounds (to stay within them,
 * the oldest buffers, likely of a block size no longer in use, make room
 * and are unmapped), or unmap it. `released`: the caller is that last
 * release, the buffer no longer held. Takes recycle.lock; unmaps after
 * releasing it. */
static void recycle_list_put(struct recycle_list *l, void *buf, size_t size, bool released)
{
    struct recycle_entry old[RECYCLE_ENTRIES_MAX];
    unsigned nold = 0;
    pthread_mutex_lock(&recycle.lock);
    struct held_entry *h = released || !recycle.nheld ? NULL : held_find(buf);
    if (h) {
        /* Held: its last release frees it; meanwhile it stays as it is. */
        BF_ASSERT(!h->freed && h->size == size); /* freed once, with its size */
        h->freed = true;
        pthread_mutex_unlock(&recycle.lock);
        return;
    }
    bool keep = recycle.users > 0 && size <= l->max_bytes;
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

void bf_blockbuf_user_add(void)
{
    pthread_mutex_lock(&recycle.lock);
    recycle.users++;
    pthread_mutex_unlock(&recycle.lock);
}

void bf_blockbuf_user_drop(void)
{
    struct recycle_entry all[2 * RECYCLE_ENTRIES_MAX];
    pthread_mutex_lock(&recycle.lock);
    recycle.users--;
    unsigned n = recycle_list_take_all(&recycle.small, all);
    n += recycle_list_take_all(&recycle.huge, all + n);
    pthread_mutex_unlock(&recycle.lock);
    for (unsigned i = 0; i < n; i++)
        munmap(all[i].buf, all[i].size);
}

static void *map_anon(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* A fresh mapping of `size` (a multiple of BF_BLOCKBUF_HUGE_SIZE) aligned
 * to BF_BLOCKBUF_HUGE_SIZE, advised MADV_HUGEPAGE. Recent kernels (6.18
 * here) align anonymous mappings of a multiple of the huge page size
 * themselves; if this one did not, map a huge page more and trim the
 * unaligned head and tail. */
static void *map_huge(size_t size)
{
    char *p = map_anon(size);
    if (p && (uintptr_t)p % BF_BLOCKBUF_HUGE_SIZE != 0) {
        munmap(p, size);
        char *q = map_anon(size + BF_BLOCKBUF_HUGE_SIZE);
        if (!q)
            return NULL;
        size_t head = -(uintptr_t)q % BF_BLOCKBUF_HUGE_SIZE;
        if (head)
            munmap(q, head);
        p = q + head;
        munmap(p + size, BF_BLOCKBUF_HUGE_SIZE - head);
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
    return size % BF_BLOCKBUF_HUGE_SIZE == 0 ? &recycle.huge : &recycle.small;
}

/* A fresh mapping for a buffer of `size`: huge-page aligned and advised
 * if it goes to the huge list. */
static void *map_block(size_t size)
{
    return size % BF_BLOCKBUF_HUGE_SIZE == 0 ? map_huge(size) : map_anon(size);
}

void *bf_blockbuf_alloc_overwrite(size_t size)
{
    if (size % BF_BLOCKBUF_HUGE_SIZE == 0) {
        /* Its old content stays: the caller overwrites every byte, so the
         * kernel's zeroing of a fresh huge page is saved. */
        void *p = recycle_list_take(&recycle.huge, size);
        return p ? p : map_huge(size);
    }
    return bf_blockbuf_alloc(size);
}

void *bf_blockbuf_alloc(size_t size)
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

bool bf_blockbuf_hold(void *buf, size_t size)
{
    bool ok = true;
    pthread_mutex_lock(&recycle.lock);
    struct held_entry *h = held_find(buf);
    if (h) {
        BF_ASSERT(!h->freed && h->size == size); /* held only while not freed */
        h->holds++;
    } else if (recycle.nheld < BF_BLOCKBUF_HOLDS_MAX &&
               size <= BF_BLOCKBUF_HOLDS_MAX_BYTES - recycle.held_bytes) {
        recycle.held[recycle.nheld++] = (struct held_entry){ .buf = buf, .size = size, .holds = 1 };
        recycle.held_bytes += size;
    } else {
        ok = false; /* at a bound: the caller copies */
    }
    pthread_mutex_unlock(&recycle.lock);
    return ok;
}

void bf_blockbuf_release(void *buf)
{
    size_t size = 0;
    bool freed = false;
    pthread_mutex_lock(&recycle.lock);
    struct held_entry *h = held_find(buf);
    BF_ASSERT(h != NULL); /* released only when held */
    if (h && --h->holds == 0) {
        freed = h->freed;
        size = h->size;
        recycle.held_bytes -= size;
        *h = recycle.held[--recycle.nheld]; /* the last entry fills the hole */
    }
    pthread_mutex_unlock(&recycle.lock);
    if (freed)
        recycle_list_put(recycle_list_for(size), buf, size, true); /* the deferred free */
}

void bf_blockbuf_free(void *buf, size_t size)
{
    if (!buf)
        return;
    recycle_list_put(recycle_list_for(size), buf, size, false);
}

void bf_blockbuf_stat(struct bf_blockbuf_stats *st)
{
    pthread_mutex_lock(&recycle.lock);
    st->recycled_bytes = recycle.small.bytes + recycle.huge.bytes;
    st->recycled_buffers = recycle.small.count + recycle.huge.count;
    st->held_buffers = recycle.nheld;
    st->deferred_bytes = 0;
    for (unsigned i = 0; i < recycle.nheld; i++)
        if (recycle.held[i].freed)
            st->deferred_bytes += recycle.held[i].size;
    pthread_mutex_unlock(&recycle.lock);
}
