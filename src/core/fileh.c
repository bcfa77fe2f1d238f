/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: file handles, page states, writeout (fileh.h). The
 * structures are in fileh_internal.h (shared with seek.c).
 *
 * Page state transitions all go through page_set_state(), which keeps the
 * lists (LRU, dirty list) and the byte/block counters in step with the
 * state; each call site says which transition of fileh.h it makes. The
 * numbered invariants (I1 ...) are those of fileh.h; debug builds assert
 * them where the code relies on them.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/blockbuf.h"
#include "core/fileh_internal.h"

/* One block of a writeout's snapshot. */
struct wo_item {
    uint64_t blk;
    void *data; /* the buffer being stored */
    struct bf_page *pg;
};

/* ------------------------------------------------------------------ */
/* Pages                                                               */

/* Leave pg's current state: lists and counters forget it. */
static void state_leave(struct bf_page *pg)
{
    bf_fileh *fh = pg->fh;
    bf_ram *ram = fh->ram;
    switch (pg->state) {
    case BF_PAGE_EMPTY:
        break;
    case BF_PAGE_LOADING:
    case BF_PAGE_LOADING_INVALIDATED:
        BF_ASSERT(fh->nloading > 0 && ram->loading_bytes >= fh->blksize); /* I12, I13 */
        fh->nloading--;
        ram->loading_bytes -= fh->blksize;
        break;
    case BF_PAGE_LOADED:
        BF_ASSERT(fh->nloaded > 0 && ram->clean_bytes >= fh->blksize); /* I12, I13 */
        fh->nloaded--;
        ram->clean_bytes -= fh->blksize;
        bf_ram_lru_remove(ram, &pg->lru); /* I10 */
        break;
    case BF_PAGE_DIRTY:
        BF_ASSERT(fh->ndirty > 0 && ram->dirty_bytes >= fh->blksize); /* I12, I13 */
        BF_ASSERT(bf_list_linked(&pg->dirty));                        /* I11 */
        fh->ndirty--;
        ram->dirty_bytes -= fh->blksize;
        bf_list_del(&pg->dirty);
        break;
    }
    BF_ASSERT(!bf_list_linked(&pg->lru) && !bf_list_linked(&pg->dirty)); /* I10, I11 */
}

/* Enter state `to`: lists and counters learn it. */
static void state_enter(struct bf_page *pg, enum bf_page_state to)
{
    bf_fileh *fh = pg->fh;
    bf_ram *ram = fh->ram;
    pg->state = to;
    switch (to) {
    case BF_PAGE_EMPTY:
        break;
    case BF_PAGE_LOADING:
    case BF_PAGE_LOADING_INVALIDATED:
        fh->nloading++;
        ram->loading_bytes += fh->blksize;
        break;
    case BF_PAGE_LOADED:
        fh->nloaded++;
        ram->clean_bytes += fh->blksize;
        bf_ram_lru_add(ram, &pg->lru); /* I10 */
        break;
    case BF_PAGE_DIRTY:
        fh->ndirty++;
        ram->dirty_bytes += fh->blksize;
        bf_list_add_tail(&fh->dirty, &pg->dirty); /* I11 */
        break;
    }
}

#ifdef BF_DEBUG
/* The transitions of the diagram in fileh.h (I9): allowed[from][to]. */
static const bool transition_allowed[5][5] = {
    [BF_PAGE_EMPTY] = { [BF_PAGE_LOADING] = true, [BF_PAGE_DIRTY] = true },
    [BF_PAGE_LOADING] = { [BF_PAGE_EMPTY] = true,
                          [BF_PAGE_LOADING_INVALIDATED] = true,
                          [BF_PAGE_LOADED] = true },
    [BF_PAGE_LOADING_INVALIDATED] = { [BF_PAGE_EMPTY] = true },
    [BF_PAGE_LOADED] = { [BF_PAGE_EMPTY] = true, [BF_PAGE_DIRTY] = true },
    [BF_PAGE_DIRTY] = { [BF_PAGE_EMPTY] = true, [BF_PAGE_LOADED] = true },
};
#endif

/* The one place a page changes state (I9). Lock held. */
static void page_set_state(struct bf_page *pg, enum bf_page_state to)
{
    bf_ram_assert_locked(pg->fh->ram);            /* I1 */
    BF_ASSERT(transition_allowed[pg->state][to]); /* I9 */
    BF_ASSERT(!pg->storing);                      /* I14 */
    pg->wpinned = false;
    state_leave(pg);
    state_enter(pg, to);
}

/* A page for blk, in no map and no state (EMPTY), with a zero-filled
 * buffer, or, when `overwrite` (the caller writes every byte of it before
 * anything reads it: a load, a whole-block write), a buffer of unspecified
 * content (blockbuf.h, bf_blockbuf_alloc_overwrite).
 * NULL when out of memory. */
static struct bf_page *page_alloc(bf_fileh *fh, uint64_t blk, bool overwrite)
{
    struct bf_page *pg = malloc(sizeof(*pg));
    if (!pg)
        return NULL;
    pg->data = overwrite ? bf_blockbuf_alloc_overwrite(fh->blksize)
                         : bf_blockbuf_alloc(fh->blksize);
    if (!pg->data) {
        free(pg);
        return NULL;
    }
    pg->state = BF_PAGE_EMPTY;
    pg->blk = blk;
    pg->fh = fh;
    pg->storing = false;
    pg->wpinned = false;
    bf_list_init(&pg->lru);
    bf_list_init(&pg->dirty);
    return pg;
}

/* Free a page that is EMPTY and in no map. */
static void page_free(struct bf_page *pg)
{
    bf_blockbuf_free(pg->data, pg->fh->blksize);
    free(pg);
}

/* Drop a page: -> EMPTY, out of the pagemap, freed. Lock held. The page
 * must not be `storing` (I14: the callers that could meet one wait, or get
 * -EBUSY, while a writeout runs). */
static void page_drop(struct bf_page *pg)
{
    bf_fileh *fh = pg->fh;
    page_set_state(pg, BF_PAGE_EMPTY); /* I8: EMPTY is out of the pagemap */
    bf_pagemap_remove(&fh->pages, pg->blk);
    page_free(pg);
}

/* Load block blk, which is EMPTY (not in the pagemap). Lock held on entry
 * and on return, released around loadblk.
 * Returns 0 with *out LOADED; -EAGAIN when the load was invalidated
 * meanwhile (the page is EMPTY again: look again); -ENOMEM; or the loadblk
 * error (the page is EMPTY again, the error counted). */
static int page_load(bf_fileh *fh, uint64_t blk, struct bf_page **out)
{
    bf_ram *ram = fh->ram;
    bf_ram_assert_locked(ram);
    BF_ASSERT(blk < zero_from_blk(fh));             /* I16: past it, blocks read as zeros */
    struct bf_page *pg = page_alloc(fh, blk, true); /* loadblk fills it */
    if (!pg)
        return -ENOMEM;
    int r = bf_pagemap_insert(&fh->pages, blk, pg);
    if (r < 0) {
        page_free(pg);
        return r;
    }
    page_set_state(pg, BF_PAGE_LOADING); /* EMPTY -> LOADING: ours alone (I5) */

    bf_ram_unlock(ram); /* I2; the buffer is ours meanwhile (I3) */
    r = fh->file->ops->loadblk(fh->file, blk, pg->data);
    bf_ram_lock(ram);

    fh->st.loadblk_calls++;
    if (r < 0)
        fh->st.errors++;
    else
        fh->st.bytes_loaded += fh->blksize;
    bf_ram_wake_loaders(ram); /* I5: waiters look again */

    if (pg->state == BF_PAGE_LOADING_INVALIDATED) {
        page_drop(pg); /* LOADING_INVALIDATED -> EMPTY */
        return -EAGAIN;
    }
    if (r < 0) {
        page_drop(pg); /* LOADING -> EMPTY, error to caller */
        return r;
    }
    page_set_state(pg, BF_PAGE_LOADED); /* LOADING -> LOADED */
    *out = pg;
    return 0;
}

/* The content of block blk, for reading. Lock held on entry and on return,
 * maybe released meanwhile (then anything may have changed).
 * Returns 0 and *out = the LOADED or DIRTY page, or *out = NULL when the
 * block reads as zeros; or the loadblk error / -ENOMEM. */
static int page_get(bf_fileh *fh, uint64_t blk, struct bf_page **out)
{
    bf_ram_assert_locked(fh->ram);
    for (;;) {
        struct bf_page *pg = bf_pagemap_get(&fh->pages, blk);
        if (pg) {
            if (pg->state == BF_PAGE_LOADED || pg->state == BF_PAGE_DIRTY) {
                *out = pg;
                return 0;
            }
            /* LOADING or LOADING_INVALIDATED by another thread: wait for
             * that load to end, then look again (I5). */
            bf_ram_wait_load(fh->ram);
            continue;
        }
        if (blk >= zero_from_blk(fh)) {
            *out = NULL;
            return 0;
        }
        int r = page_load(fh, blk, &pg);
        if (r == -EAGAIN)
            continue;
        if (r < 0)
            return r;
        *out = pg;
        return 0;
    }
}

/* ------------------------------------------------------------------ */
/* Eviction: the ram's LRU, dropped from the pages' side               */

/* Drop a LOADED page to free memory (budget or reclaim), counted in its
 * handle's reclaimed_blocks and the ram's evictions. Lock held. Returns
 * the bytes freed. */
static size_t page_evict(struct bf_page *pg)
{
    bf_fileh *fh = pg->fh;
    BF_ASSERT(pg->state == BF_PAGE_LOADED); /* I10: only clean pages go */
    size_t bytes = fh->blksize;
    page_drop(pg); /* LOADED -> EMPTY (budget/reclaim) */
    fh->st.reclaimed_blocks++;
    fh->ram->evictions++;
    return bytes;
}

/* Drop the least recently used clean page of any handle on ram; 0 when
 * there is none. Lock held. Returns the bytes freed. */
static size_t evict_oldest(bf_ram *ram)
{
    struct bf_list *link = bf_ram_lru_oldest(ram);
    return link ? page_evict(bf_list_entry(link, struct bf_page, lru)) : 0;
}

/* Drop LRU pages, oldest first, until the clean bytes fit the budget
 * (I6: called before the lock is released by anything that made pages
 * clean). Lock held. */
static void enforce_budget(bf_ram *ram)
{
    while (bf_ram_over_budget(ram) && evict_oldest(ram) > 0)
        ;
}

void bf_ram_set_budget(bf_ram *ram, size_t budget)
{
    bf_ram_lock(ram);
    ram->budget = budget;
    enforce_budget(ram);
    bf_ram_unlock(ram);
}

size_t bf_ram_reclaim(bf_ram *ram, size_t bytes)
{
    bf_ram_lock(ram);
    size_t freed = 0, n = 1;
    while (freed < bytes && n > 0) {
        n = evict_oldest(ram);
        freed += n;
    }
    bf_ram_unlock(ram);
    return freed;
}

/* ------------------------------------------------------------------ */
/* Open, close                                                         */

int bf_fileh_open(bf_file *file, bf_ram *ram, bf_fileh **out)
{
    if (!file || !ram || !file->ops || !bf_blksize_valid(file->blksize) || file->size > BF_SIZE_MAX)
        return -EINVAL;
    bf_fileh *fh = calloc(1, sizeof(*fh));
    if (!fh)
        return -ENOMEM;
    if (pthread_cond_init(&fh->writeout_done, NULL) != 0) {
        free(fh);
        return -ENOMEM;
    }
    fh->file = file;
    fh->ram = ram;
    fh->blksize = file->blksize;
    fh->blkbits = (unsigned)__builtin_ctz(file->blksize);
    bf_pagemap_init(&fh->pages);
    bf_list_init(&fh->dirty);
    bf_list_init(&fh->ram_link);
    fh->size = fh->committed_size = fh->min_size = file->size;

    bf_ram_lock(ram);
    bf_ram_handle_add(ram, &fh->ram_link);
    bf_ram_unlock(ram);
    *out = fh;
    return 0;
}

void bf_fileh_close(bf_fileh *fh)
{
    if (!fh)
        return;
    bf_ram *ram = fh->ram;
    bf_ram_lock(ram);
    BF_ASSERT(bf_fileh_check_locked(fh) == 0);
    BF_ASSERT(fh->nloading == 0 && !fh->writeout_running); /* I23 */
    uint64_t k;
    struct bf_page *pg;
    while ((pg = bf_pagemap_next(&fh->pages, 0, &k)) != NULL)
        page_drop(pg); /* LOADED/DIRTY -> EMPTY: the handle goes */
    bf_ram_handle_remove(ram, &fh->ram_link);
    bf_ram_unlock(ram);
    pthread_cond_destroy(&fh->writeout_done);
    bf_pagemap_destroy(&fh->pages);
    free(fh);
}

/* ------------------------------------------------------------------ */
/* Read, write, truncate                                               */

ssize_t bf_fileh_read(bf_fileh *fh, void *buf, size_t count, uint64_t off)
{
    if (count > UINT64_MAX - off)
        return -EINVAL;
    bf_ram *ram = fh->ram;
    bf_ram_lock(ram);
    if (off >= fh->size) {
        bf_ram_unlock(ram);
        return 0;
    }
    uint64_t n = fh->size - off;
    if (n > count)
        n = count;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;

    uint64_t done = 0;
    while (done < n) {
        uint64_t pos = off + done;
        uint64_t blk = pos >> fh->blkbits;
        size_t boff = (size_t)(pos & (fh->blksize - 1));
        size_t len = fh->blksize - boff;
        if (len > n - done)
            len = (size_t)(n - done);

        struct bf_page *pg;
        int r = page_get(fh, blk, &pg);
        if (r < 0) {
            bf_ram_unlock(ram);
            return r;
        }
        if (pg) {
            /* Copied with the lock held (I1); a DIRTY page's buffer is not
             * written meanwhile even if stored (I4). */
            memcpy((char *)buf + done, (char *)pg->data + boff, len);
            if (pg->state == BF_PAGE_LOADED)
                bf_ram_lru_touch(ram, &pg->lru);
        } else {
            memset((char *)buf + done, 0, len);
        }
        done += len;
        /* The copy is made: a page loaded for it may go now, and must
         * before the lock is released for the next block (I6). */
        enforce_budget(ram);
    }
    bf_ram_unlock(ram);
    return (ssize_t)n;
}

/* Whether blocks [first, last] touch the fence (I22). Lock held. */
static bool range_fenced(const bf_fileh *fh, uint64_t first, uint64_t last)
{
    return fh->fenced && !(last < fh->fence_lo || first > fh->fence_hi);
}

/* Keep the partially written blocks that are cached from being evicted
 * while the lock is released for the write's other load or wait: LOADED ->
 * DIRTY with their committed content (so no byte changes even if the write
 * then fails), marked `wpinned` until something changes them. */
static void pin_partial(bf_fileh *fh, uint64_t blk)
{
    struct bf_page *pg = bf_pagemap_get(&fh->pages, blk);
    if (pg && pg->state == BF_PAGE_LOADED) {
        page_set_state(pg, BF_PAGE_DIRTY); /* LOADED -> DIRTY (pinned for a write) */
        pg->wpinned = true;
    }
}

/* A write that pinned blocks gives up (fenced, or an error): a pinned block
 * nothing changed since goes back to LOADED, so that a write that changed
 * nothing leaves no block dirty. (If another write pinned it too, that one
 * finds it LOADED or gone when it looks again, and pins or loads it anew.)
 * A block a running writeout stores stays DIRTY: the writeout owns it. */
static void unpin_partial(bf_fileh *fh, uint64_t blk)
{
    struct bf_page *pg = bf_pagemap_get(&fh->pages, blk);
    if (pg && pg->state == BF_PAGE_DIRTY && pg->wpinned && !pg->storing)
        page_set_state(pg, BF_PAGE_LOADED); /* DIRTY -> LOADED (pin of a failed write, unchanged) */
}

/* Leave a write that changed nothing, lock held (released on return):
 * undo its pins and give back the clean blocks it loaded beyond the
 * budget (I6). */
static void write_giveup(bf_fileh *fh, uint64_t first, uint64_t last)
{
    unpin_partial(fh, first);
    if (last != first)
        unpin_partial(fh, last);
    enforce_budget(fh->ram);
    bf_ram_unlock(fh->ram);
}

/* Per block of a write: a page to create, or a buffer for copy on write. */
struct wr_slot {
    struct bf_page *newpg;
    void *cowbuf;
};

ssize_t bf_fileh_write(bf_fileh *fh, const void *buf, size_t count, uint64_t off)
{
    if (count == 0)
        return 0;
    if (off >= BF_SIZE_MAX)
        return -EFBIG;
    if (count > BF_SIZE_MAX - off || count > SSIZE_MAX)
        return -EINVAL;

    bf_ram *ram = fh->ram;
    uint64_t end = off + count;
    uint64_t mask = fh->blksize - 1;
    uint64_t first = off >> fh->blkbits, last = (end - 1) >> fh->blkbits;
    bool first_partial = (off & mask) != 0 || (first == last && (end & mask) != 0);
    bool last_partial = (end & mask) != 0;
    int r;

    bf_ram_lock(ram);

    /* Phase 1, lock released at times: every block of the range is out of
     * LOADING, and the partially written ones that need their content are
     * cached. After a release anything may have changed: start over. The
     * fence is checked under the lock at every round (I22). */
    for (;;) {
        if (range_fenced(fh, first, last)) {
            fh->st.fenced_writes++;
            write_giveup(fh, first, last);
            return (ssize_t)count;
        }
        bool busy = false;
        uint64_t k;
        struct bf_page *pg;
        for (pg = bf_pagemap_next(&fh->pages, first, &k); pg && k <= last;
             pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k)) {
            if (pg->state == BF_PAGE_LOADING || pg->state == BF_PAGE_LOADING_INVALIDATED) {
                busy = true;
                break;
            }
        }
        uint64_t zf = zero_from_blk(fh);
        bool need_first = !busy && first_partial && first < zf &&
                          !bf_pagemap_get(&fh->pages, first);
        bool need_last = !busy && !need_first && last_partial && last != first && last < zf &&
                         !bf_pagemap_get(&fh->pages, last);
        if (!busy && !need_first && !need_last)
            break;

        /* Pinned DIRTY, a block loaded in an earlier round neither goes nor
         * counts as clean while the lock is released (I6). */
        if (first_partial)
            pin_partial(fh, first);
        if (last_partial)
            pin_partial(fh, last);
        if (busy) {
            bf_ram_wait_load(ram);
            continue;
        }
        r = page_load(fh, need_first ? first : last, &pg);
        if (r < 0 && r != -EAGAIN) {
            write_giveup(fh, first, last);
            return r;
        }
    }

    /* Phase 2, lock held throughout: allocate what the write needs, then
     * apply it; a failed allocation changes nothing. */
    uint64_t nblk = last - first + 1;
    struct wr_slot one, *slots = &one;
    if (nblk > 1) {
        slots = calloc(nblk, sizeof(*slots));
        if (!slots) {
            write_giveup(fh, first, last);
            return -ENOMEM;
        }
    } else {
        one.newpg = NULL;
        one.cowbuf = NULL;
    }
    r = 0;
    uint64_t inserted = 0;
    for (uint64_t i = 0; i < nblk && r == 0; i++) {
        struct bf_page *pg = bf_pagemap_get(&fh->pages, first + i);
        if (!pg) {
            /* A block the write covers entirely needs no zeros first. */
            bool whole = !(i == 0 && first_partial) && !(i == nblk - 1 && last_partial);
            slots[i].newpg = page_alloc(fh, first + i, whole);
            if (!slots[i].newpg)
                r = -ENOMEM;
        } else if (pg->storing) {
            slots[i].cowbuf = bf_blockbuf_alloc_overwrite(fh->blksize); /* copied over whole */
            if (!slots[i].cowbuf)
                r = -ENOMEM;
        }
    }
    for (uint64_t i = 0; i < nblk && r == 0; i++, inserted++)
        if (slots[i].newpg)
            r = bf_pagemap_insert(&fh->pages, first + i, slots[i].newpg);
    if (r < 0) {
        for (uint64_t i = 0; i < nblk; i++) {
            if (slots[i].newpg) {
                if (i < inserted)
                    bf_pagemap_remove(&fh->pages, first + i);
                page_free(slots[i].newpg);
            }
            bf_blockbuf_free(slots[i].cowbuf, fh->blksize);
        }
        if (slots != &one)
            free(slots);
        write_giveup(fh, first, last);
        return r;
    }

    uint64_t done = 0;
    for (uint64_t i = 0; i < nblk; i++) {
        struct bf_page *pg = slots[i].newpg;
        if (pg) {
            /* EMPTY -> DIRTY: whole block written, or past the lowest
             * size (reads as zeros): no loadblk needed. */
            page_set_state(pg, BF_PAGE_DIRTY);
        } else {
            pg = bf_pagemap_get(&fh->pages, first + i);
            if (pg->state == BF_PAGE_LOADED)
                page_set_state(pg, BF_PAGE_DIRTY); /* LOADED -> DIRTY */
            if (pg->storing) {
                /* Copy on write (I4): the writeout keeps storing the old
                 * buffer (and frees it); the page goes on with a copy and
                 * stays DIRTY after the writeout. */
                BF_ASSERT(fh->writeout_running); /* I14 */
                memcpy(slots[i].cowbuf, pg->data, fh->blksize);
                pg->data = slots[i].cowbuf;
                pg->storing = false;
                fh->cow_held++; /* the old buffer, until freed (I13) */
                ram->dirty_bytes += fh->blksize;
            }
        }
        uint64_t pos = off + done;
        size_t boff = (size_t)(pos & mask);
        size_t len = fh->blksize - boff;
        if (len > count - done)
            len = (size_t)(count - done);
        memcpy((char *)pg->data + boff, (const char *)buf + done, len);
        pg->wpinned = false; /* changed: a real DIRTY now */
        done += len;
    }
    if (end > fh->size)
        fh->size = end;
    bf_ram_unlock(ram);
    if (slots != &one)
        free(slots);
    return (ssize_t)count;
}

int bf_fileh_truncate(bf_fileh *fh, uint64_t size)
{
    if (size > BF_SIZE_MAX)
        return -EINVAL;
    bf_ram *ram = fh->ram;
    uint64_t tail = size & (fh->blksize - 1);
    uint64_t lastblk = size >> fh->blkbits; /* the new partial last block, if tail */

    bf_ram_lock(ram);
    /* Lock released at times (waiting, loading): check again each round. */
    for (;;) {
        /* Leaving here, a tail block loaded in an earlier round is LOADED:
         * give it back if over the budget. */
        if (size >= fh->size) {
            fh->size = size; /* growing: the new part reads as zeros */
            enforce_budget(ram);
            bf_ram_unlock(ram);
            return 0;
        }
        if (fh->writeout_running) {
            /* A shrink waits for the writeout to end (I18): it would drop
             * pages the writeout stores (I14) and lower the size under its
             * snapshot. A tail block loaded in an earlier round goes first
             * if over the budget (I6). */
            enforce_budget(ram);
            bf_ram_wait(ram, &fh->writeout_done);
            continue;
        }
        if (!tail)
            break;
        struct bf_page *pg = bf_pagemap_get(&fh->pages, lastblk);
        if (pg && (pg->state == BF_PAGE_LOADING || pg->state == BF_PAGE_LOADING_INVALIDATED)) {
            bf_ram_wait_load(ram);
            continue;
        }
        if (pg || lastblk >= zero_from_blk(fh))
            break;
        int r = page_load(fh, lastblk, &pg);
        if (r < 0 && r != -EAGAIN) {
            bf_ram_unlock(ram);
            return r;
        }
    }

    /* Shrinking, lock held, no writeout running (I18): zero the tail of
     * the new last block ... */
    BF_ASSERT(!fh->writeout_running);
    if (tail) {
        struct bf_page *pg = bf_pagemap_get(&fh->pages, lastblk);
        if (pg) {
            if (pg->state == BF_PAGE_LOADED)
                page_set_state(pg, BF_PAGE_DIRTY); /* LOADED -> DIRTY (tail zeroed) */
            memset((char *)pg->data + tail, 0, fh->blksize - tail);
            pg->wpinned = false; /* changed: a real DIRTY now */
        }
    }
    /* ... and drop every block past the end (I15, I16: a load past it is
     * invalidated; its loader drops it). */
    uint64_t from = div_ceil_blk(fh, size), k;
    struct bf_page *pg = bf_pagemap_next(&fh->pages, from, &k);
    while (pg) {
        if (pg->state == BF_PAGE_LOADING)
            page_set_state(pg, BF_PAGE_LOADING_INVALIDATED); /* LOADING -> LOADING_INVALIDATED */
        else if (pg->state != BF_PAGE_LOADING_INVALIDATED)
            page_drop(pg); /* LOADED/DIRTY -> EMPTY (truncated) */
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
    fh->size = size;
    if (size < fh->min_size)
        fh->min_size = size; /* I17 */
    bf_ram_unlock(ram);
    return 0;
}

uint64_t bf_fileh_size(bf_fileh *fh)
{
    bf_ram_lock(fh->ram);
    uint64_t size = fh->size;
    bf_ram_unlock(fh->ram);
    return size;
}

uint32_t bf_fileh_blksize(const bf_fileh *fh)
{
    return fh->blksize;
}

/* ------------------------------------------------------------------ */
/* Writeout, discard, invalidate, reclaim                              */

static int wo_item_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct wo_item *)a)->blk, y = ((const struct wo_item *)b)->blk;
    return x < y ? -1 : x > y;
}

/* Writeout with MARKSTORED only: every DIRTY page becomes LOADED (no
 * writeout runs, so none is `storing`: I19). */
static uint64_t mark_all_stored(bf_fileh *fh)
{
    uint64_t n = 0;
    struct bf_list *pos, *tmp;
    bf_list_foreach_safe(pos, tmp, &fh->dirty)
    {
        struct bf_page *pg = bf_list_entry(pos, struct bf_page, dirty);
        page_set_state(pg, BF_PAGE_LOADED); /* DIRTY -> LOADED (marked stored) */
        n++;
    }
    return n;
}

int bf_fileh_writeout(bf_fileh *fh, unsigned flags, uint64_t *nblocks)
{
    if (flags == 0 || (flags & ~(unsigned)(BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED)))
        return -EINVAL;
    bf_ram *ram = fh->ram;
    const struct bf_file_ops *ops = fh->file->ops;

    bf_ram_lock(ram);
    if (fh->writeout_running) {
        bf_ram_unlock(ram);
        return -EBUSY; /* I19 */
    }
    BF_ASSERT(fh->cow_held == 0); /* I19 */
    if (!(flags & BF_WRITEOUT_STORE)) {
        uint64_t n = mark_all_stored(fh);
        fh->st.writeouts++;
        enforce_budget(ram);
        bf_ram_unlock(ram);
        if (nblocks)
            *nblocks = n;
        return 0;
    }

    /* Snapshot: the dirty pages in block order, the size state. */
    uint64_t n = fh->ndirty;
    uint64_t snap_size = fh->size;
    bool shrunk = fh->min_size < fh->committed_size;
    uint64_t trunc_blocks = zero_from_blk(fh);
    if (n == 0 && !shrunk && snap_size == fh->committed_size) {
        fh->st.writeouts++; /* nothing to store */
        bf_ram_unlock(ram);
        if (nblocks)
            *nblocks = 0;
        return 0;
    }
    struct wo_item *items = NULL;
    if (n) {
        items = malloc(n * sizeof(*items));
        if (!items) {
            bf_ram_unlock(ram);
            return -ENOMEM;
        }
    }
    uint64_t i = 0;
    struct bf_list *pos;
    bf_list_foreach(pos, &fh->dirty)
    {
        struct bf_page *pg = bf_list_entry(pos, struct bf_page, dirty);
        items[i].blk = pg->blk;
        items[i].data = pg->data;
        items[i].pg = pg;
        pg->storing = true; /* I4, I14: its buffer is the writeout's to read */
        i++;
    }
    if (n)
        qsort(items, n, sizeof(*items), wo_item_cmp);
    fh->writeout_running = true;
    bf_ram_unlock(ram);

    /* The transaction, lock released (I2), the only one of the handle
     * (I20). */
    uint64_t stores = 0, stored = 0;
    bool began = false;
    int r = ops->begin(fh->file);
    if (r == 0) {
        began = true;
        if (shrunk)
            r = ops->truncate(fh->file, trunc_blocks);
    }
    for (i = 0; r == 0 && i < n; i++) {
        stores++;
        r = ops->storeblk(fh->file, items[i].blk, items[i].data);
        if (r == 0)
            stored++;
    }
    bool committed = false;
    if (r == 0) {
        r = ops->commit(fh->file, snap_size); /* a failed commit rolls back itself */
        committed = r == 0;
    } else if (began) {
        ops->abort(fh->file);
    }

    bf_ram_lock(ram);
    fh->st.storeblk_calls += stores;
    fh->st.bytes_stored += stored * fh->blksize;
    for (i = 0; i < n; i++) {
        struct bf_page *pg = items[i].pg;
        if (pg->data != items[i].data) {
            /* Rewritten during the writeout: the page has its own copy and
             * stays DIRTY; the stored buffer is ours to free (I4). */
            BF_ASSERT(fh->cow_held > 0 && ram->dirty_bytes >= fh->blksize); /* I13 */
            bf_blockbuf_free(items[i].data, fh->blksize);
            fh->cow_held--;
            ram->dirty_bytes -= fh->blksize;
            continue;
        }
        BF_ASSERT(pg->storing && pg->state == BF_PAGE_DIRTY); /* I14 */
        pg->storing = false;
        if (committed && (flags & BF_WRITEOUT_MARKSTORED))
            page_set_state(pg, BF_PAGE_LOADED); /* DIRTY -> LOADED (stored) */
    }
    if (committed) {
        fh->content_gen++; /* the backend's content changed (I21) */
        fh->nstored_known = false;
        fh->committed_size = snap_size;
        /* No shrink ran during the writeout (I18), so size >= snap_size. */
        BF_ASSERT(fh->size >= snap_size);
        fh->min_size = snap_size;
        fh->st.writeouts++;
        enforce_budget(ram); /* I6: MARKSTORED made pages clean */
    } else {
        fh->st.errors++;
    }
    BF_ASSERT(fh->cow_held == 0); /* I19 */
    fh->writeout_running = false;
    pthread_cond_broadcast(&fh->writeout_done); /* shrinking truncates go on */
    bf_ram_unlock(ram);
    free(items);
    if (r == 0 && nblocks)
        *nblocks = n;
    return r;
}

int bf_fileh_discard(bf_fileh *fh, uint64_t *nblocks)
{
    bf_ram *ram = fh->ram;
    bf_ram_lock(ram);
    if (fh->writeout_running) {
        bf_ram_unlock(ram);
        return -EBUSY; /* its pages are `storing` (I14) */
    }
    uint64_t n = 0;
    struct bf_list *pos, *tmp;
    bf_list_foreach_safe(pos, tmp, &fh->dirty)
    {
        page_drop(bf_list_entry(pos, struct bf_page, dirty)); /* DIRTY -> EMPTY (discarded) */
        n++;
    }
    fh->size = fh->min_size = fh->committed_size; /* I17 */
    fh->st.discards++;
    bf_ram_unlock(ram);
    if (nblocks)
        *nblocks = n;
    return 0;
}

int bf_fileh_invalidate(bf_fileh *fh, uint64_t blk, uint64_t count)
{
    if (count == 0 || count - 1 > UINT64_MAX - blk)
        return -EINVAL;
    uint64_t last = blk + (count - 1);
    bf_ram *ram = fh->ram;
    bf_ram_lock(ram);
    if (fh->writeout_running) {
        bf_ram_unlock(ram);
        return -EBUSY; /* its pages are `storing` (I14) */
    }
    /* Told that the stored content changed underneath (I21). */
    fh->content_gen++;
    fh->nstored_known = false;
    uint64_t k;
    struct bf_page *pg = bf_pagemap_next(&fh->pages, blk, &k);
    while (pg && k <= last) {
        switch (pg->state) {
        case BF_PAGE_LOADING:
            /* LOADING -> LOADING_INVALIDATED: its loader throws the
             * result away and loads again (I3, I5) */
            page_set_state(pg, BF_PAGE_LOADING_INVALIDATED);
            fh->st.invalidated_blocks++;
            break;
        case BF_PAGE_LOADED:
        case BF_PAGE_DIRTY:
            page_drop(pg); /* LOADED/DIRTY -> EMPTY (invalidated) */
            fh->st.invalidated_blocks++;
            break;
        default:
            break; /* already being reloaded */
        }
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
    bf_ram_unlock(ram);
    return 0;
}

size_t bf_fileh_reclaim(bf_fileh *fh, uint64_t *nblocks)
{
    bf_ram *ram = fh->ram;
    bf_ram_lock(ram);
    uint64_t n = 0, k;
    struct bf_page *pg = bf_pagemap_next(&fh->pages, 0, &k);
    while (pg) {
        if (pg->state == BF_PAGE_LOADED) {
            page_evict(pg); /* LOADED -> EMPTY (reclaimed) */
            n++;
        }
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
    bf_ram_unlock(ram);
    if (nblocks)
        *nblocks = n;
    return (size_t)(n * fh->blksize);
}

/* ------------------------------------------------------------------ */
/* Fence, state, stats                                                 */

int bf_fileh_fence(bf_fileh *fh, uint64_t blk, uint64_t count)
{
    if (count == 0 || count - 1 > UINT64_MAX - blk)
        return -EINVAL;
    bf_ram_lock(fh->ram);
    if (fh->fenced) {
        bf_ram_unlock(fh->ram);
        return -EBUSY;
    }
    fh->fenced = true; /* one range (I22) */
    fh->fence_lo = blk;
    fh->fence_hi = blk + (count - 1);
    bf_ram_unlock(fh->ram);
    return 0;
}

void bf_fileh_unfence(bf_fileh *fh)
{
    bf_ram_lock(fh->ram);
    fh->fenced = false;
    bf_ram_unlock(fh->ram);
}

bool bf_fileh_isdirty(bf_fileh *fh)
{
    bf_ram_lock(fh->ram);
    bool dirty = fh->ndirty != 0 || fh->size != fh->committed_size ||
                 fh->min_size < fh->committed_size;
    bf_ram_unlock(fh->ram);
    return dirty;
}

void bf_fileh_stat(bf_fileh *fh, struct bf_fileh_stats *st)
{
    bf_ram_lock(fh->ram);
    *st = fh->st;
    st->blksize = fh->blksize;
    st->size = fh->size;
    st->committed_size = fh->committed_size;
    st->loaded_blocks = fh->nloaded;
    st->dirty_blocks = fh->ndirty;
    st->loading_blocks = fh->nloading;
    bf_ram_unlock(fh->ram);
}

enum bf_page_state bf_fileh_page_state(bf_fileh *fh, uint64_t blk)
{
    bf_ram_lock(fh->ram);
    struct bf_page *pg = bf_pagemap_get(&fh->pages, blk);
    enum bf_page_state s = pg ? pg->state : BF_PAGE_EMPTY;
    bf_ram_unlock(fh->ram);
    return s;
}

size_t bf_fileh_pagemap_memory(bf_fileh *fh)
{
    bf_ram_lock(fh->ram);
    size_t bytes = bf_pagemap_memory(&fh->pages);
    bf_ram_unlock(fh->ram);
    return bytes;
}
