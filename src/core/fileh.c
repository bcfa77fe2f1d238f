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
    void *data;    /* the buffer being stored */
    uint64_t base; /* the serial its change was made on */
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
        if (pg->conflict) { /* I25: only a DIRTY page is conflicting */
            BF_ASSERT(fh->nconflict > 0);
            fh->nconflict--;
            pg->conflict = false;
        }
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

/* A page for blk, EMPTY and in no map, whose buffer is `data` (a block
 * buffer of bf_blockbuf_alloc*). NULL when out of memory (data is then
 * still the caller's). */
static struct bf_page *page_alloc_buf(bf_fileh *fh, uint64_t blk, void *data)
{
    struct bf_page *pg = malloc(sizeof(*pg));
    if (!pg)
        return NULL;
    pg->data = data;
    pg->state = BF_PAGE_EMPTY;
    pg->blk = blk;
    pg->fh = fh;
    pg->storing = false;
    pg->wpinned = false;
    pg->conflict = false;
    pg->serial = fh->view; /* I24: as of the view, until told otherwise */
    bf_list_init(&pg->lru);
    bf_list_init(&pg->dirty);
    return pg;
}

/* A page for blk, in no map and no state (EMPTY), with a zero-filled
 * buffer, or, when `overwrite` (the caller writes every byte of it before
 * anything reads it: a load, a whole-block write), a buffer of unspecified
 * content (blockbuf.h, bf_blockbuf_alloc_overwrite).
 * NULL when out of memory. */
static struct bf_page *page_alloc(bf_fileh *fh, uint64_t blk, bool overwrite)
{
    void *data = overwrite ? bf_blockbuf_alloc_overwrite(fh->blksize)
                           : bf_blockbuf_alloc(fh->blksize);
    if (!data)
        return NULL;
    struct bf_page *pg = page_alloc_buf(fh, blk, data);
    if (!pg)
        bf_blockbuf_free(data, fh->blksize);
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
    uint64_t at = pg->serial;            /* the view (I24) */

    bf_ram_unlock(ram); /* I2; the buffer is ours meanwhile (I3) */
    r = fh->file->ops->loadblk(fh->file, blk, at, pg->data, NULL);
    if (r == -ESTALE) {
        /* The store no longer keeps the block as of the view (this mount
         * lagged behind so far that the versions it reads were collected):
         * the current version is newer than the view but never older than
         * what the kernel may hold; the commits in between, when applied,
         * drop the page (its serial stays the view). */
        r = fh->file->ops->loadblk(fh->file, blk, BF_SERIAL_NOW, pg->data, NULL);
    }
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
    fh->view = fh->size_base = fh->file_base = file->serial; /* I24, I26 */
    fh->lw_trunc = UINT64_MAX;

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
    free(fh->lw_ranges);
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

/* Mark a DIRTY page conflicting (I25). Lock held. */
static void page_mark_conflict(struct bf_page *pg)
{
    BF_ASSERT(pg->state == BF_PAGE_DIRTY); /* I25 */
    if (!pg->conflict) {
        pg->conflict = true;
        pg->fh->nconflict++;
    }
}

/* Give a page that a running writeout stores a new buffer (copy on write,
 * I4): the writeout keeps storing the old one and frees it at its end; the
 * page goes on with `buf` and stays DIRTY after the writeout. Lock held. */
static void page_cow(struct bf_page *pg, void *buf)
{
    bf_fileh *fh = pg->fh;
    BF_ASSERT(pg->storing && fh->writeout_running); /* I14 */
    pg->data = buf;
    pg->storing = false;
    fh->cow_held++; /* the old buffer, until freed (I13) */
    fh->ram->dirty_bytes += fh->blksize;
}

/* Whether block blk is in the launder window (I27). Lock held. */
static bool in_window(const bf_fileh *fh, uint64_t blk)
{
    if (!fh->lw_open)
        return false;
    if (blk >= fh->lw_trunc)
        return true;
    size_t lo = 0, hi = fh->lw_nranges; /* binary search: ranges are sorted */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct bf_blkrange *rg = &fh->lw_ranges[mid];
        if (blk < rg->start)
            hi = mid;
        else if (blk - rg->start >= rg->count)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* The first of the partially written blocks of a write (first if
 * first_partial, last if last_partial) that lies in the launder window
 * below the size and is not a real DIRTY page (it is EMPTY, LOADED, or
 * DIRTY only pinned: its content is not the one the write belongs to);
 * UINT64_MAX if none. Lock held. */
static uint64_t window_needs_old(const bf_fileh *fh, uint64_t first, uint64_t last,
                                 bool first_partial, bool last_partial)
{
    uint64_t cand[2] = { first_partial ? first : UINT64_MAX, last_partial ? last : UINT64_MAX };
    for (int i = 0; i < 2; i++) {
        uint64_t b = cand[i];
        if (b == UINT64_MAX || !in_window(fh, b) || b >= div_ceil_blk(fh, fh->size))
            continue;
        const struct bf_page *pg = bf_pagemap_get(&fh->pages, b);
        if (!pg || pg->state == BF_PAGE_LOADED || (pg->state == BF_PAGE_DIRTY && pg->wpinned))
            return b;
    }
    return UINT64_MAX;
}

/* Give block blk of the launder window the content it had as of the
 * window's serial - 1, as a DIRTY conflicting page with that base: the
 * kernel's laundered pages are merged onto it (I27). Lock held on entry
 * and on return, released around the load. Returns 0; -EAGAIN when the
 * window, or the block, changed meanwhile (look again); -ENOMEM; or the
 * loadblk error (counted). */
static int window_load(bf_fileh *fh, uint64_t blk)
{
    bf_ram *ram = fh->ram;
    uint64_t serial = fh->lw_serial;
    BF_ASSERT(fh->lw_open && serial > 0);                 /* I27 */
    void *buf = bf_blockbuf_alloc_overwrite(fh->blksize); /* loadblk fills it */
    if (!buf)
        return -ENOMEM;
    bf_ram_unlock(ram); /* I2 */
    int r = fh->file->ops->loadblk(fh->file, blk, serial - 1, buf, NULL);
    bf_ram_lock(ram);
    fh->st.loadblk_calls++;
    if (r < 0) {
        fh->st.errors++;
        bf_blockbuf_free(buf, fh->blksize);
        return r;
    }
    fh->st.bytes_loaded += fh->blksize;
    struct bf_page *pg = bf_pagemap_get(&fh->pages, blk);
    if (!fh->lw_open || fh->lw_serial != serial || blk >= div_ceil_blk(fh, fh->size) ||
        (pg && pg->state != BF_PAGE_LOADED && !(pg->state == BF_PAGE_DIRTY && pg->wpinned))) {
        bf_blockbuf_free(buf, fh->blksize); /* the window moved, or the block is busy or dirty */
        return -EAGAIN;
    }
    if (!pg) {
        pg = page_alloc_buf(fh, blk, buf);
        if (!pg || bf_pagemap_insert(&fh->pages, blk, pg) < 0) {
            if (pg)
                free(pg);
            bf_blockbuf_free(buf, fh->blksize);
            return -ENOMEM;
        }
        page_set_state(pg, BF_PAGE_DIRTY); /* EMPTY -> DIRTY (old content, laundered) */
    } else {
        if (pg->state == BF_PAGE_LOADED)
            page_set_state(pg, BF_PAGE_DIRTY); /* LOADED -> DIRTY (old content, laundered) */
        if (pg->storing) {
            page_cow(pg, buf);
        } else {
            bf_blockbuf_free(pg->data, fh->blksize);
            pg->data = buf;
        }
    }
    pg->wpinned = false;
    pg->serial = serial - 1; /* I24, I27 */
    page_mark_conflict(pg);
    return 0;
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
        /* Into the launder window (I27): the partially written blocks
         * first get the content the kernel's pages were made on. */
        uint64_t wb = busy ? UINT64_MAX
                           : window_needs_old(fh, first, last, first_partial, last_partial);
        if (wb != UINT64_MAX) {
            r = window_load(fh, wb);
            if (r < 0 && r != -EAGAIN) {
                write_giveup(fh, first, last);
                return r;
            }
            continue;
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
                memcpy(slots[i].cowbuf, pg->data, fh->blksize);
                page_cow(pg, slots[i].cowbuf);
            }
        }
        if (in_window(fh, first + i)) {
            /* A laundered page: it belongs to the content before the
             * window's commit, and conflicts with it (I27). */
            if (pg->serial >= fh->lw_serial)
                pg->serial = fh->lw_serial - 1;
            page_mark_conflict(pg);
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

/* The blocks a backend named conflicting during a commit (the lock is
 * released then: collected here, marked after). */
struct conflict_list {
    uint64_t *blks;
    size_t n, cap;
    bool size;    /* BF_CONFLICT_SIZE was named */
    bool overrun; /* out of memory: some were not kept */
};

static void conflict_collect(void *arg, uint64_t blk)
{
    struct conflict_list *cl = arg;
    if (blk == BF_CONFLICT_SIZE) {
        cl->size = true;
        return;
    }
    if (cl->n == cl->cap) {
        size_t ncap = cl->cap ? 2 * cl->cap : 16;
        uint64_t *v = realloc(cl->blks, ncap * sizeof(*v));
        if (!v) {
            cl->overrun = true;
            return;
        }
        cl->blks = v;
        cl->cap = ncap;
    }
    cl->blks[cl->n++] = blk;
}

/* A refused commit: mark the blocks the backend named conflicting (every
 * dirty block if it named more than could be kept); a named block with no
 * dirty page is one the handle's shrink drops: a conflict of the size.
 * Lock held. Returns the number of conflicts (the size counts one). */
static uint64_t mark_conflicts(bf_fileh *fh, const struct conflict_list *cl)
{
    uint64_t n = 0;
    bool size = cl->size;
    if (cl->overrun) {
        struct bf_list *pos;
        bf_list_foreach(pos, &fh->dirty)
        {
            page_mark_conflict(bf_list_entry(pos, struct bf_page, dirty));
            n++;
        }
    } else {
        for (size_t i = 0; i < cl->n; i++) {
            struct bf_page *pg = bf_pagemap_get(&fh->pages, cl->blks[i]);
            if (pg && pg->state == BF_PAGE_DIRTY) {
                page_mark_conflict(pg);
                n++;
            } else {
                size = true; /* a block the handle's shrink drops */
            }
        }
    }
    if (size) {
        fh->size_conflict = true;
        n++;
    }
    return n;
}

int bf_fileh_writeout(bf_fileh *fh, unsigned flags, struct bf_writeout_result *res)
{
    const unsigned known = BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED | BF_WRITEOUT_OVERWRITE |
                           BF_WRITEOUT_FILE_CONFLICTS;
    if (!(flags & (BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED)) || (flags & ~known) ||
        ((flags & (BF_WRITEOUT_OVERWRITE | BF_WRITEOUT_FILE_CONFLICTS)) &&
         !(flags & BF_WRITEOUT_STORE)))
        return -EINVAL;
    bf_ram *ram = fh->ram;
    const struct bf_file_ops *ops = fh->file->ops;
    struct bf_writeout_result out = { 0, 0, 0 };

    bf_ram_lock(ram);
    if (fh->writeout_running) {
        bf_ram_unlock(ram);
        return -EBUSY; /* I19 */
    }
    BF_ASSERT(fh->cow_held == 0); /* I19 */
    if (!(flags & BF_WRITEOUT_STORE)) {
        out.blocks = mark_all_stored(fh);
        fh->st.writeouts++;
        enforce_budget(ram);
        bf_ram_unlock(ram);
        if (res)
            *res = out;
        return 0;
    }

    /* Snapshot: the dirty pages in block order with their bases, the size
     * state and the bases of the size and the file. */
    uint64_t n = fh->ndirty;
    uint64_t snap_size = fh->size;
    bool shrunk = fh->min_size < fh->committed_size;
    uint64_t trunc_blocks = zero_from_blk(fh);
    struct conflict_list cl = { NULL, 0, 0, false, false };
    struct bf_commit_req req = {
        .flags = ((flags & BF_WRITEOUT_OVERWRITE) ? BF_COMMIT_OVERWRITE : 0) |
                 ((flags & BF_WRITEOUT_FILE_CONFLICTS) ? BF_COMMIT_FILE_CONFLICTS : 0),
        .size_set = shrunk || snap_size != fh->committed_size,
        .size = snap_size,
        .size_base = fh->size_base,
        .file_base = fh->file_base,
        .conflict = conflict_collect,
        .arg = &cl,
    };
    if (n == 0 && !req.size_set) {
        fh->st.writeouts++; /* nothing to store */
        bf_ram_unlock(ram);
        if (res)
            *res = out;
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
        items[i].base = pg->serial;
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
    uint64_t stores = 0, stored = 0, serial = 0;
    bool began = false;
    int r = ops->begin(fh->file);
    if (r == 0) {
        began = true;
        if (shrunk)
            r = ops->truncate(fh->file, trunc_blocks);
    }
    for (i = 0; r == 0 && i < n; i++) {
        stores++;
        r = ops->storeblk(fh->file, items[i].blk, items[i].data, items[i].base);
        if (r == 0)
            stored++;
    }
    bool committed = false;
    if (r == 0) {
        r = ops->commit(fh->file, &req, &serial); /* a failed commit rolls back itself */
        committed = r == 0;
    } else if (began) {
        ops->abort(fh->file);
    }

    bf_ram_lock(ram);
    fh->st.storeblk_calls += stores;
    fh->st.bytes_stored += stored * fh->blksize;
    if (committed && serial > fh->view)
        fh->view = serial; /* I24: before the stored pages take it */
    for (i = 0; i < n; i++) {
        struct bf_page *pg = items[i].pg;
        if (pg->data != items[i].data) {
            /* Rewritten during the writeout: the page has its own copy and
             * stays DIRTY, made on what was just committed; the stored
             * buffer is ours to free (I4). */
            BF_ASSERT(fh->cow_held > 0 && ram->dirty_bytes >= fh->blksize); /* I13 */
            bf_blockbuf_free(items[i].data, fh->blksize);
            fh->cow_held--;
            ram->dirty_bytes -= fh->blksize;
        } else {
            BF_ASSERT(pg->storing && pg->state == BF_PAGE_DIRTY); /* I14 */
            pg->storing = false;
        }
        if (!committed || pg->state != BF_PAGE_DIRTY)
            continue;
        pg->serial = serial; /* its content (or the base of its change) is committed now */
        if (pg->conflict) {
            pg->conflict = false;
            fh->nconflict--;
        }
        if ((flags & BF_WRITEOUT_MARKSTORED) && pg->data == items[i].data)
            page_set_state(pg, BF_PAGE_LOADED); /* DIRTY -> LOADED (stored) */
    }
    if (committed) {
        fh->content_gen++; /* the backend's content changed (I21) */
        fh->nstored_known = false;
        if (req.size_set) {
            /* No shrink ran during the writeout (I18), so size >= snap_size. */
            BF_ASSERT(fh->size >= snap_size);
            fh->committed_size = fh->min_size = snap_size;
            fh->size_base = serial;
            fh->size_conflict = false;
        }
        fh->file_base = serial; /* I26: serial <= view */
        fh->st.writeouts++;
        out.blocks = n;
        out.serial = serial;
        enforce_budget(ram); /* I6: MARKSTORED made pages clean */
    } else if (r == -ESTALE) {
        fh->st.conflicts++; /* refused, not failed: nothing went wrong in the backend */
        out.conflicts = mark_conflicts(fh, &cl);
    } else {
        fh->st.errors++;
    }
    BF_ASSERT(fh->cow_held == 0); /* I19 */
    fh->writeout_running = false;
    pthread_cond_broadcast(&fh->writeout_done); /* shrinking truncates go on */
    bf_ram_unlock(ram);
    free(items);
    free(cl.blks);
    if (res && (r == 0 || r == -ESTALE))
        *res = out;
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
    /* A clean page with bytes past the committed size holds what a
     * MARKSTORED-only writeout marked clean without storing: past the size
     * the file reads as zeros again (I15, I16). */
    uint64_t k;
    struct bf_page *pg = bf_pagemap_next(&fh->pages, fh->committed_size >> fh->blkbits, &k);
    while (pg) {
        if (pg->state == BF_PAGE_LOADED)
            page_drop(pg); /* LOADED -> EMPTY (past the restored size) */
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
    fh->size = fh->min_size = fh->committed_size; /* I17 */
    fh->size_conflict = false;
    fh->file_base = fh->view; /* clean now (I26) */
    fh->st.discards++;
    bf_ram_unlock(ram);
    if (nblocks)
        *nblocks = n;
    return 0;
}

/* Apply commit `serial` to one cached page of a block it changed: older
 * pages go (LOADED) or reload (LOADING), an older change conflicts
 * (DIRTY); a page already as new stays. Lock held. */
static void apply_page(struct bf_page *pg, uint64_t serial)
{
    if (pg->serial >= serial)
        return; /* already reflects it (loaded, or committed, as of it or later) */
    switch (pg->state) {
    case BF_PAGE_LOADED:
        pg->fh->st.invalidated_blocks++;
        page_drop(pg); /* LOADED -> EMPTY (another mount's commit) */
        break;
    case BF_PAGE_LOADING:
        pg->fh->st.invalidated_blocks++;
        page_set_state(pg, BF_PAGE_LOADING_INVALIDATED); /* LOADING -> LOADING_INVALIDATED */
        break;
    case BF_PAGE_DIRTY:
        page_mark_conflict(pg); /* DIRTY stays DIRTY: never replaced silently */
        break;
    default:
        break; /* LOADING_INVALIDATED: its load is thrown away already */
    }
}

/* apply_page for every cached page of blocks [from, to]. Lock held. */
static void apply_range(bf_fileh *fh, uint64_t from, uint64_t to, uint64_t serial)
{
    uint64_t k;
    struct bf_page *pg = bf_pagemap_next(&fh->pages, from, &k);
    while (pg && k <= to) {
        apply_page(pg, serial);
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
}

/* Whether the handle has a DIRTY page at block `from` or later. Lock held. */
static bool dirty_from(bf_fileh *fh, uint64_t from)
{
    uint64_t k;
    struct bf_page *pg = bf_pagemap_next(&fh->pages, from, &k);
    while (pg) {
        if (pg->state == BF_PAGE_DIRTY)
            return true;
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
    return false;
}

/* The committed size of another mount's commit `serial` is `size`: the
 * handle follows it unless it changed the size itself (or has blocks
 * past the new end): then its size conflicts. Lock held. */
static void apply_size(bf_fileh *fh, uint64_t serial, uint64_t size)
{
    uint64_t nblk = div_ceil_blk(fh, size);
    /* Pages past the new committed size are as a truncate leaves them,
     * whether or not the store named the dropped blocks in trunc (I15,
     * I16: none loads or stays clean past the sizes below). */
    apply_range(fh, nblk, UINT64_MAX, serial);
    bool local = fh->size != fh->committed_size || fh->min_size < fh->committed_size;
    fh->committed_size = size;
    if (!local && !dirty_from(fh, nblk)) {
        fh->size = fh->min_size = size; /* the handle follows */
        fh->size_base = serial;
    } else {
        /* The handle's own size (or its blocks past the new end) stays
         * its view; committing it needs an overwrite (I17 kept). */
        fh->size_conflict = true;
        if (fh->min_size > size)
            fh->min_size = size;
    }
}

/* The end of an apply or a reset of `serial`: the view moves. Lock held. */
static void apply_finish(bf_fileh *fh, uint64_t serial, bool clean)
{
    fh->content_gen++; /* the backend's content changed (I21) */
    fh->nstored_known = false;
    if (serial > fh->view)
        fh->view = serial; /* I24 */
    if (clean && serial > fh->file_base)
        fh->file_base = serial; /* I26 */
    fh->st.applied++;
    enforce_budget(fh->ram); /* nothing became clean, but cheap and keeps I6 obvious */
}

/* Open the launder window (I27) over `ranges` (taken over) and the blocks
 * from `trunc` on, merging onto the content as of lw_serial - 1. Lock
 * held. */
static void window_open(bf_fileh *fh, uint64_t lw_serial, struct bf_blkrange *ranges,
                        size_t nranges, uint64_t trunc)
{
    fh->lw_open = true;
    fh->lw_serial = lw_serial;
    fh->lw_ranges = ranges;
    fh->lw_nranges = nranges;
    fh->lw_trunc = trunc;
}

/* Whether the handle has no uncommitted change. Lock held. */
static bool is_clean(const bf_fileh *fh)
{
    return fh->ndirty == 0 && fh->size == fh->committed_size && fh->min_size == fh->committed_size;
}

int bf_fileh_apply(bf_fileh *fh, const struct bf_commit *c)
{
    if (!c || c->serial == 0 || (c->nranges && !c->ranges) ||
        (c->size_changed && c->size > BF_SIZE_MAX))
        return -EINVAL;
    for (size_t i = 0; i < c->nranges; i++) {
        const struct bf_blkrange *rg = &c->ranges[i];
        if (rg->count == 0 || rg->count - 1 > UINT64_MAX - rg->start ||
            (i > 0 && (rg->start < c->ranges[i - 1].start ||
                       rg->start - c->ranges[i - 1].start < c->ranges[i - 1].count)))
            return -EINVAL; /* empty, overflowing, or not sorted and disjoint */
    }
    struct bf_blkrange *copy = NULL;
    if (c->nranges) {
        copy = malloc(c->nranges * sizeof(*copy));
        if (!copy)
            return -ENOMEM;
        memcpy(copy, c->ranges, c->nranges * sizeof(*copy));
    }
    bf_ram *ram = fh->ram;
    uint64_t serial = c->serial;
    bf_ram_lock(ram);
    if (fh->lw_open) {
        bf_ram_unlock(ram);
        free(copy);
        return -EBUSY; /* I27: one window at a time */
    }
    bool clean = is_clean(fh);
    /* A late commit (the handle's view is past it: opened after it, or
     * moved by its own later commit) finds no page of the kernel's made on
     * the content before it but those the pages dropped below held: no
     * window, so that a write made on the handle's view is never merged
     * onto older content (COHERENCE.md: "if S <= view: nothing"). */
    bool late = serial <= fh->view;

    for (size_t i = 0; i < c->nranges; i++)
        apply_range(fh, c->ranges[i].start, c->ranges[i].start + (c->ranges[i].count - 1), serial);
    if (c->trunc != UINT64_MAX)
        apply_range(fh, c->trunc, UINT64_MAX, serial);
    if (c->size_changed && serial > fh->size_base)
        apply_size(fh, serial, c->size);
    apply_finish(fh, serial, clean);
    if (!late)
        window_open(fh, serial, copy, c->nranges, c->trunc);
    bf_ram_unlock(ram);
    if (late)
        free(copy);
    return 0;
}

int bf_fileh_reset(bf_fileh *fh, uint64_t serial, uint64_t size)
{
    if (serial == 0 || size > BF_SIZE_MAX)
        return -EINVAL;
    bf_ram *ram = fh->ram;
    bf_ram_lock(ram);
    if (fh->lw_open) {
        bf_ram_unlock(ram);
        return -EBUSY; /* I27: one window at a time */
    }
    bool clean = is_clean(fh);
    /* The kernel's pages are as of the old view (or older): laundered ones
     * merge onto the content of then, never onto `serial`'s (I27). */
    uint64_t lw_serial = (fh->view < serial - 1 ? fh->view : serial - 1) + 1;
    /* Every clean page older than serial may be stale; a DIRTY page keeps
     * its base, unmarked: the store's check compares it at the writeout. */
    uint64_t k;
    struct bf_page *pg = bf_pagemap_next(&fh->pages, 0, &k);
    while (pg) {
        struct bf_page *next = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
        if (pg->state != BF_PAGE_DIRTY)
            apply_page(pg, serial); /* LOADED -> EMPTY, LOADING -> LOADING_INVALIDATED */
        pg = next;
    }
    if (size != fh->committed_size && serial > fh->size_base)
        apply_size(fh, serial, size);
    apply_finish(fh, serial, clean);
    window_open(fh, lw_serial, NULL, 0, 0);
    bf_ram_unlock(ram);
    return 0;
}

size_t bf_fileh_conflicts(bf_fileh *fh, uint64_t from, struct bf_blkrange *out, size_t max,
                          uint64_t *next)
{
    size_t n = 0;
    uint64_t k, resume = UINT64_MAX;
    bf_ram_lock(fh->ram);
    struct bf_page *pg = bf_pagemap_next(&fh->pages, from, &k);
    while (pg) {
        if (pg->state == BF_PAGE_DIRTY && pg->conflict) {
            if (n > 0 && out[n - 1].start + out[n - 1].count == k) {
                out[n - 1].count++;
            } else if (n == max) {
                resume = k; /* out is full: the next call starts here */
                break;
            } else {
                out[n].start = k;
                out[n].count = 1;
                n++;
            }
        }
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
    bf_ram_unlock(fh->ram);
    if (next)
        *next = resume;
    return n;
}

void bf_fileh_apply_end(bf_fileh *fh)
{
    bf_ram_lock(fh->ram);
    struct bf_blkrange *ranges = fh->lw_ranges;
    fh->lw_open = false;
    fh->lw_serial = 0;
    fh->lw_ranges = NULL;
    fh->lw_nranges = 0;
    fh->lw_trunc = UINT64_MAX;
    bf_ram_unlock(fh->ram);
    free(ranges);
}

uint64_t bf_fileh_view(bf_fileh *fh)
{
    bf_ram_lock(fh->ram);
    uint64_t v = fh->view;
    bf_ram_unlock(fh->ram);
    return v;
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
    st->view = fh->view;
    st->conflict_blocks = fh->nconflict;
    st->size_conflict = fh->size_conflict;
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
