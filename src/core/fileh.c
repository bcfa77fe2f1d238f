/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: file handles, page states, writeout (fileh.h). The
 * structures are in fileh_internal.h (shared with seek.c and spill.c).
 *
 * Page state transitions all go through bf_pg_set_state(), which keeps the
 * lists (LRU, dirty LRU, dirty list) and the byte/block counters in step
 * with the state; each call site says which transition of fileh.h it
 * makes. The numbered invariants (I1 ...) are those of fileh.h; debug
 * builds assert them where the code relies on them. Spilling (DIRTY <->
 * SPILLED) is in spill.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/blockbuf.h"
#include "core/fileh_internal.h"

/* Sequential access (bf_fileh_read, bf_fileh_readahead): a read that
 * starts within this distance of where the last one ended continues it
 * (the kernel's readahead READs may arrive out of order). */
#define RA_SLACK ((uint64_t)1 << 20)
/* Reads in a row that make an access sequential. */
#define RA_MIN_RUN 2

/* One block of a writeout's snapshot. */
struct wo_item {
    uint64_t blk;
    void *data;      /* the buffer being stored; NULL: a staged content */
    uint64_t *valid; /* a partial page: a copy of its bitmap at the snapshot */
    uint64_t token;  /* staged: its token */
    uint64_t base;   /* the serial its change was made on */
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
        bf_ram_lru_remove(ram, &pg->lru); /* off the dirty LRU (I10) */
        break;
    case BF_PAGE_SPILLED:
        BF_ASSERT(fh->nspilled > 0 && ram->spilled_bytes >= fh->blksize); /* I12, I13 */
        BF_ASSERT(bf_list_linked(&pg->dirty));                            /* I11 */
        fh->nspilled--;
        ram->spilled_bytes -= fh->blksize;
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
        bf_ram_dlru_add(ram, &pg->lru);           /* I10: most recently written */
        break;
    case BF_PAGE_SPILLED:
        fh->nspilled++;
        ram->spilled_bytes += fh->blksize;
        bf_list_add_tail(&fh->dirty, &pg->dirty); /* I11 */
        break;
    }
}

#ifdef BF_DEBUG
/* The transitions of the diagram in fileh.h (I9): allowed[from][to]. */
static const bool transition_allowed[6][6] = {
    [BF_PAGE_EMPTY] = { [BF_PAGE_LOADING] = true, [BF_PAGE_DIRTY] = true },
    [BF_PAGE_LOADING] = { [BF_PAGE_EMPTY] = true,
                          [BF_PAGE_LOADING_INVALIDATED] = true,
                          [BF_PAGE_LOADED] = true },
    [BF_PAGE_LOADING_INVALIDATED] = { [BF_PAGE_EMPTY] = true },
    [BF_PAGE_LOADED] = { [BF_PAGE_EMPTY] = true, [BF_PAGE_DIRTY] = true, [BF_PAGE_LOADING] = true },
    [BF_PAGE_DIRTY] = { [BF_PAGE_EMPTY] = true, [BF_PAGE_LOADED] = true, [BF_PAGE_SPILLED] = true },
    [BF_PAGE_SPILLED] = { [BF_PAGE_EMPTY] = true, [BF_PAGE_DIRTY] = true },
};
#endif

void bf_pg_set_state(struct bf_page *pg, enum bf_page_state to)
{
    bf_fileh *fh = pg->fh;
    bf_ram_assert_locked(fh->ram);                /* I1 */
    BF_ASSERT(transition_allowed[pg->state][to]); /* I9 */
    BF_ASSERT(!pg->storing);                      /* I14 */
    BF_ASSERT(pg->io == BF_PAGE_IO_NONE);         /* I29: its I/O's owner moves it first */
    pg->wpinned = false;
    if (pg->conflict && to != BF_PAGE_DIRTY && to != BF_PAGE_SPILLED) {
        BF_ASSERT(fh->nconflict > 0); /* I25: only an uncommitted change conflicts */
        fh->nconflict--;
        pg->conflict = false;
    }
    if (pg->ahead && to != BF_PAGE_LOADED) {
        BF_ASSERT(fh->ram->ahead_bytes >= fh->blksize); /* I31 */
        fh->ram->ahead_bytes -= fh->blksize;
        fh->nahead--;
        pg->ahead = false;
    }
    state_leave(pg);
    state_enter(pg, to);
}

/* A page short name for the one place a page changes state (I9). */
#define page_set_state bf_pg_set_state

/* A page for blk, EMPTY and in no map, whose buffer is `data` (a block
 * buffer of bf_blockbuf_alloc*). NULL when out of memory (data is then
 * still the caller's). */
static struct bf_page *page_alloc_buf(bf_fileh *fh, uint64_t blk, void *data)
{
    struct bf_page *pg = calloc(1, sizeof(*pg));
    if (!pg)
        return NULL;
    pg->data = data;
    pg->state = BF_PAGE_EMPTY;
    pg->blk = blk;
    pg->fh = fh;
    pg->serial = fh->view; /* I24: as of the view, until told otherwise */
    bf_list_init(&pg->lru);
    bf_list_init(&pg->dirty);
    return pg;
}

/* A page for blk, in no map and no state (EMPTY), with a zero-filled
 * buffer, or, when `overwrite` (the caller writes every byte of it before
 * anything reads it: a load, a whole-block write, a partial page), a
 * buffer of unspecified content (blockbuf.h, bf_blockbuf_alloc_overwrite).
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

void bf_pg_free(struct bf_page *pg)
{
    bf_blockbuf_free(pg->data, pg->fh->blksize);
    free(pg->valid);
    free(pg);
}

/* Drop a page: -> EMPTY, out of the pagemap, freed; a SPILLED one is put
 * on `staged` instead (its staged content is dropped, and the page freed,
 * by bf_spill_drop_list once the lock is released, I32), or freed if
 * `staged` is NULL (only where its staged content was used up by a
 * commit; no other caller meets a SPILLED page). Lock held. The page must
 * not be `storing` nor in I/O (I14, I29: the callers that could meet one
 * wait, or get -EBUSY). */
static void page_drop(struct bf_page *pg, struct bf_list *staged)
{
    bf_fileh *fh = pg->fh;
    bool spilled = pg->state == BF_PAGE_SPILLED;
    page_set_state(pg, BF_PAGE_EMPTY); /* I8: EMPTY is out of the pagemap */
    bf_pagemap_remove(&fh->pages, pg->blk);
    if (spilled && staged)
        bf_list_add_tail(staged, &pg->dirty);
    else
        bf_pg_free(pg);
}

/* Mark a DIRTY or SPILLED page conflicting (I25). Lock held. */
void bf_pg_mark_conflict(struct bf_page *pg)
{
    BF_ASSERT(pg->state == BF_PAGE_DIRTY || pg->state == BF_PAGE_SPILLED); /* I25 */
    if (!pg->conflict) {
        pg->conflict = true;
        pg->fh->nconflict++;
    }
}
#define page_mark_conflict bf_pg_mark_conflict

/* Wait until no page of fh has I/O in progress (I29), lock held (released
 * while waiting). */
static void wait_no_io(bf_fileh *fh)
{
    while (fh->nio > 0)
        bf_ram_wait_load(fh->ram);
}

/* ------------------------------------------------------------------ */
/* Partial pages (I30)                                                 */

void bf_pg_copy_units(const bf_fileh *fh, void *dst, const void *src, const uint64_t *valid,
                      bool which)
{
    uint32_t n = blk_units(fh), u = 0;
    while (u < n) {
        if (unit_valid(valid, u) != which) {
            u++;
            continue;
        }
        uint32_t v = u + 1;
        while (v < n && unit_valid(valid, v) == which)
            v++;
        memcpy((char *)dst + ((size_t)u << BF_UNIT_BITS),
               (const char *)src + ((size_t)u << BF_UNIT_BITS), (size_t)(v - u) << BF_UNIT_BITS);
        u = v;
    }
}

int bf_pg_load_base(bf_file *f, uint64_t blk, uint64_t at, void *buf, bool *stale)
{
    *stale = false;
    int r = f->ops->loadblk(f, blk, at, buf, NULL);
    if (r == -ESTALE) {
        *stale = true;
        r = f->ops->loadblk(f, blk, BF_SERIAL_NOW, buf, NULL);
    }
    return r;
}

/* Set the bits of the units of bytes [off, off + len) of a partial page's
 * bitmap; free it when every unit is valid. Lock held. */
static void valid_set(struct bf_page *pg, size_t off, size_t len)
{
    if (!pg->valid)
        return;
    uint32_t u0 = (uint32_t)(off >> BF_UNIT_BITS), u1 = (uint32_t)((off + len - 1) >> BF_UNIT_BITS);
    for (uint32_t u = u0; u <= u1; u++)
        pg->valid[u / 64] |= (uint64_t)1 << (u % 64);
    bf_fileh *fh = pg->fh;
    uint32_t n = blk_units(fh);
    for (uint32_t u = 0; u < n; u++)
        if (!unit_valid(pg->valid, u))
            return;
    free(pg->valid);
    pg->valid = NULL;
}

/* Whether bytes [off, off + len) of pg are valid. */
static bool range_valid(const struct bf_page *pg, size_t off, size_t len)
{
    if (!pg->valid)
        return true;
    for (size_t u = off >> BF_UNIT_BITS; u <= (off + len - 1) >> BF_UNIT_BITS; u++)
        if (!unit_valid(pg->valid, (uint32_t)u))
            return false;
    return true;
}

/* A zeroed bitmap for a partial page of fh, or NULL (out of memory). */
static uint64_t *valid_new(const bf_fileh *fh)
{
    return calloc(valid_words(fh), sizeof(uint64_t));
}

/* Whether reads of fh may load parts of blocks (loadblk_range). */
static bool range_loads(const bf_fileh *fh)
{
    return fh->file->ops->loadblk_range && fh->blksize > BF_RANGE_LOAD;
}

/* Give a page that a running writeout stores a new buffer (copy on write,
 * I4): the writeout keeps storing the old one and frees it at its end; the
 * page goes on with `buf` and stays DIRTY after the writeout. Lock held. */
static void page_cow(struct bf_page *pg, void *buf)
{
    bf_fileh *fh = pg->fh;
    BF_ASSERT(pg->storing && fh->writeout_running && pg->state == BF_PAGE_DIRTY); /* I14 */
    pg->data = buf;
    pg->storing = false;
    fh->cow_held++; /* the old buffer, until freed (I13) */
    fh->ram->dirty_bytes += fh->blksize;
}

/* Complete a DIRTY partial page (fill, I30): load the version its change
 * was made on (as of its base) and keep the page's valid bytes over it;
 * the page becomes whole. Lock held on entry and on return, released
 * around the load; writers of the page wait meanwhile (I29). Returns 0
 * (look again: anything may have changed), or the loadblk error
 * (counted; the page is as it was). */
static int page_fill(struct bf_page *pg)
{
    bf_fileh *fh = pg->fh;
    bf_ram *ram = fh->ram;
    BF_ASSERT(pg->state == BF_PAGE_DIRTY && pg->valid && pg->io == BF_PAGE_IO_NONE);
    void *buf = bf_blockbuf_alloc_overwrite(fh->blksize); /* loadblk fills it */
    if (!buf)
        return -ENOMEM;
    uint64_t blk = pg->blk, base = pg->serial;
    bool stale;
    pg->io = BF_PAGE_IO_FILL; /* I29 */
    fh->nio++;
    bf_ram_unlock(ram); /* I2 */
    int r = bf_pg_load_base(fh->file, blk, base, buf, &stale);
    bf_ram_lock(ram);
    pg->io = BF_PAGE_IO_NONE;
    fh->nio--;
    bf_ram_wake_loaders(ram);
    fh->st.loadblk_calls++;
    fh->st.fills++;
    if (r < 0) {
        fh->st.errors++;
        bf_blockbuf_free(buf, fh->blksize);
        return r;
    }
    fh->st.bytes_loaded += fh->blksize;
    /* The page's valid bytes over its base (I30), into the new buffer. */
    bf_pg_copy_units(fh, buf, pg->data, pg->valid, true);
    if (pg->storing) {
        page_cow(pg, buf); /* the writeout keeps reading the old buffer (I4) */
    } else {
        bf_blockbuf_free(pg->data, fh->blksize);
        pg->data = buf;
    }
    free(pg->valid);
    pg->valid = NULL;
    if (stale)
        page_mark_conflict(pg); /* its base is gone: someone changed the block since */
    return 0;
}

/* ------------------------------------------------------------------ */
/* Loads                                                               */

/* Load block blk, which is EMPTY (not in the pagemap), whole; `ahead`: for
 * a prefetch (I31). Lock held on entry and on return, released around
 * loadblk. Returns 0 with *out LOADED; -EAGAIN when the load was
 * invalidated meanwhile (the page is EMPTY again: look again); -ENOMEM; or
 * the loadblk error (the page is EMPTY again, the error counted). */
static int page_load(bf_fileh *fh, uint64_t blk, bool ahead, struct bf_page **out)
{
    bf_ram *ram = fh->ram;
    bf_ram_assert_locked(ram);
    BF_ASSERT(blk < zero_from_blk(fh));             /* I16: past it, blocks read as zeros */
    struct bf_page *pg = page_alloc(fh, blk, true); /* loadblk fills it */
    if (!pg)
        return -ENOMEM;
    int r = bf_pagemap_insert(&fh->pages, blk, pg);
    if (r < 0) {
        bf_pg_free(pg);
        return r;
    }
    page_set_state(pg, BF_PAGE_LOADING); /* EMPTY -> LOADING: ours alone (I5) */
    if (ahead) {
        pg->ahead = true; /* I31 */
        fh->nahead++;
        ram->ahead_bytes += fh->blksize;
    }
    uint64_t at = pg->serial; /* the view (I24) */

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
        page_drop(pg, NULL); /* LOADING_INVALIDATED -> EMPTY */
        return -EAGAIN;
    }
    if (r < 0) {
        page_drop(pg, NULL); /* LOADING -> EMPTY, error to caller */
        return r;
    }
    page_set_state(pg, BF_PAGE_LOADED); /* LOADING -> LOADED */
    *out = pg;
    return 0;
}

/* Load bytes [off, off + len) of block blk (partial load, I30), as for
 * page_load: the new page is a partial LOADED page as of the view, or
 * (completing, *pg given LOADED and partial) the bytes of pg that are not
 * valid yet, as of pg's serial, with `whole` the whole block. Lock held on
 * entry and on return, released around the load. Returns 0 (the page
 * LOADED, those bytes valid); -EAGAIN (invalidated meanwhile, or the
 * version is gone: the page is EMPTY, look again); -ENOMEM; or the load's
 * error (counted: a new page is EMPTY again, a completed one as before). */
static int page_load_part(bf_fileh *fh, uint64_t blk, struct bf_page *pg, size_t off, size_t len)
{
    bf_ram *ram = fh->ram;
    const struct bf_file_ops *ops = fh->file->ops;
    bool whole = len == fh->blksize;
    BF_ASSERT(blk < zero_from_blk(fh)); /* I16, I30 */
    BF_ASSERT(whole || range_loads(fh));
    void *tmp = NULL;
    if (pg) {
        /* Completing: the new bytes go to a buffer of their own and only
         * those that are not valid yet into the page. */
        BF_ASSERT(pg->state == BF_PAGE_LOADED && pg->valid);
        tmp = bf_blockbuf_alloc_overwrite(fh->blksize);
        if (!tmp)
            return -ENOMEM;
        page_set_state(pg, BF_PAGE_LOADING); /* LOADED -> LOADING (completing) */
    } else {
        pg = page_alloc(fh, blk, true);
        uint64_t *valid = pg ? valid_new(fh) : NULL;
        int r = valid ? bf_pagemap_insert(&fh->pages, blk, pg) : -ENOMEM;
        if (r < 0) {
            free(valid);
            if (pg)
                bf_pg_free(pg);
            return r;
        }
        pg->valid = valid;
        page_set_state(pg, BF_PAGE_LOADING); /* EMPTY -> LOADING (partial) */
    }
    uint64_t at = pg->serial;
    void *dst = tmp ? tmp : pg->data;

    bf_ram_unlock(ram); /* I2; the buffer is ours meanwhile (I3) */
    int r = whole ? ops->loadblk(fh->file, blk, at, dst, NULL)
                  : ops->loadblk_range(fh->file, blk, at, (uint32_t)off, (uint32_t)len,
                                       (char *)dst + off, NULL);
    bool now = false;
    if (r == -ESTALE && !tmp) {
        /* A new page: the version as of the view is gone (as in
         * page_load): the current one, whole. */
        r = ops->loadblk(fh->file, blk, BF_SERIAL_NOW, dst, NULL);
        now = true;
    }
    bf_ram_lock(ram);

    fh->st.loadblk_calls += whole || now;
    fh->st.range_loads += !whole;
    if (r < 0 && r != -ESTALE)
        fh->st.errors++;
    else if (r == 0)
        fh->st.bytes_loaded += now ? fh->blksize : len;
    if (now) {
        off = 0;
        len = fh->blksize;
    }
    bf_ram_wake_loaders(ram); /* I5 */
    if (pg->state == BF_PAGE_LOADING_INVALIDATED || r == -ESTALE || (r < 0 && !tmp)) {
        /* Thrown away (LOADING(_INVALIDATED) -> EMPTY): invalidated, or the
         * version of the page's other bytes is gone (the page loads anew
         * as of the view), or a new page whose load failed. */
        bf_blockbuf_free(tmp, fh->blksize);
        page_drop(pg, NULL);
        return r == 0 || r == -ESTALE ? -EAGAIN : r;
    }
    page_set_state(pg, BF_PAGE_LOADED); /* LOADING -> LOADED (partial, or completed) */
    if (r == 0 && tmp)
        bf_pg_copy_units(fh, (char *)pg->data, tmp, pg->valid, false);
    if (r == 0)
        valid_set(pg, off, len);
    bf_blockbuf_free(tmp, fh->blksize);
    return r;
}

/* The content of bytes [boff, boff + len) of block blk, for reading, the
 * access `random` (bf_fileh_read). Lock held on entry and on return, maybe
 * released meanwhile (then anything may have changed). Returns 0 and *out
 * = the LOADED or DIRTY page with those bytes valid, or *out = NULL when
 * the block reads as zeros; or the load's error / -ENOMEM. */
static int page_get(bf_fileh *fh, uint64_t blk, size_t boff, size_t len, bool random,
                    struct bf_page **out)
{
    bf_ram_assert_locked(fh->ram);
    /* A random read loads the 64 KiB-aligned bytes around it (I30). */
    size_t lo = boff & ~(size_t)(BF_RANGE_LOAD - 1);
    size_t hi = (boff + len + BF_RANGE_LOAD - 1) & ~(size_t)(BF_RANGE_LOAD - 1);
    if (hi > fh->blksize)
        hi = fh->blksize;
    bool part = random && range_loads(fh);
    for (;;) {
        struct bf_page *pg = bf_pagemap_get(&fh->pages, blk);
        int r = 0;
        if (!pg) {
            if (blk >= zero_from_blk(fh)) {
                *out = NULL;
                return 0;
            }
            r = part ? page_load_part(fh, blk, NULL, lo, hi - lo) : page_load(fh, blk, false, &pg);
        } else if (pg->state == BF_PAGE_LOADING || pg->state == BF_PAGE_LOADING_INVALIDATED ||
                   (pg->state == BF_PAGE_DIRTY && pg->io == BF_PAGE_IO_UNSPILL)) {
            /* Another thread loads it: wait for that to end, then look
             * again (I5, I29). */
            bf_ram_wait_load(fh->ram);
        } else if (pg->state == BF_PAGE_SPILLED) {
            /* Its content comes back from staging (never during a
             * writeout of the handle: it may be storing it, I29). */
            if (fh->writeout_running)
                bf_ram_wait(fh->ram, &fh->writeout_done);
            else
                r = bf_spill_unspill(pg);
        } else if (range_valid(pg, boff, len)) {
            *out = pg;
            return 0;
        } else if (pg->state == BF_PAGE_LOADED) {
            r = part ? page_load_part(fh, blk, pg, lo, hi - lo)
                     : page_load_part(fh, blk, pg, 0, fh->blksize);
        } else if (pg->io != BF_PAGE_IO_NONE) {
            bf_ram_wait_load(fh->ram); /* I29 */
        } else {
            r = page_fill(pg); /* DIRTY, partial */
        }
        if (r < 0 && r != -EAGAIN)
            return r;
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
    page_drop(pg, NULL); /* LOADED -> EMPTY (budget/reclaim) */
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
    const struct bf_file_ops *ops = file->ops;
    if (!!ops->stage != !!ops->unstage || !!ops->stage != !!ops->stage_drop ||
        !!ops->stage != !!ops->storeblk_staged)
        return -EINVAL; /* staging is all four operations or none (bigfile.h) */
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
    struct bf_list staged;
    bf_list_init(&staged);
    bf_ram_lock(ram);
    BF_ASSERT(bf_fileh_check_locked(fh) == 0);
    BF_ASSERT(fh->nloading == 0 && !fh->writeout_running); /* I23 */
    /* Another handle's write may be spilling one of its pages (I29). */
    wait_no_io(fh);
    uint64_t k;
    struct bf_page *pg;
    while ((pg = bf_pagemap_next(&fh->pages, 0, &k)) != NULL)
        page_drop(pg, &staged); /* LOADED/DIRTY/SPILLED -> EMPTY: the handle goes */
    bf_ram_handle_remove(ram, &fh->ram_link);
    bf_ram_unlock(ram);
    bf_spill_drop_list(&staged);
    free(fh->lw_ranges);
    pthread_cond_destroy(&fh->writeout_done);
    bf_pagemap_destroy(&fh->pages);
    free(fh);
}

/* ------------------------------------------------------------------ */
/* Read, prefetch                                                      */

/* Note a read of n bytes at off for sequential access; returns whether it
 * continues the last one. Lock held. */
static bool ra_note(bf_fileh *fh, uint64_t off, uint64_t n)
{
    bool seq = off <= fh->ra_end + RA_SLACK && off + RA_SLACK >= fh->ra_end;
    if (seq) {
        if (fh->ra_run < UINT64_MAX)
            fh->ra_run++;
        if (off + n > fh->ra_end)
            fh->ra_end = off + n;
    } else {
        fh->ra_run = 0;
        fh->ra_end = off + n;
        fh->ra_next = 0;
    }
    return seq;
}

/* Answer the read of [off, off + n) through sink (loadblk_send) if the
 * bytes are one block's, with nothing of it in memory and nothing zeroed
 * since the last commit (I16): then they are the committed content as of
 * the view, which the store sends from its file. Lock held on entry and
 * on return, released around the send. Returns whether the read was
 * answered; when not (the store keeps the bytes another way, or the send
 * failed before sending), the caller reads as usual, which also reports
 * any error. */
static bool read_send(bf_fileh *fh, uint64_t off, uint64_t n, struct bf_sink *sink)
{
    const struct bf_file_ops *ops = fh->file->ops;
    uint64_t blk = off >> fh->blkbits;
    size_t boff = (size_t)(off & (fh->blksize - 1));
    if (!ops->loadblk_send || n > fh->blksize - boff || blk >= zero_from_blk(fh) ||
        bf_pagemap_get(&fh->pages, blk))
        return false;
    uint64_t at = fh->view; /* I24, as a new page's */
    /* Counted before the reply, which lets the reader go on (a STAT it
     * makes next must see its read); taken back if nothing was sent. */
    fh->st.sent_reads++;
    fh->st.bytes_loaded += n;
    /* No page to load into, so nothing of the core's changes meanwhile:
     * the kernel keeps the pages of a READ locked until it is answered,
     * so a write, truncate or invalidate of them waits for the answer
     * (docs/ARCHITECTURE.md, "Reads answered from the block file"). */
    bf_ram_unlock(fh->ram);
    int r = ops->loadblk_send(fh->file, blk, at, (uint32_t)boff, (uint32_t)n, sink);
    bf_ram_lock(fh->ram);
    if (r == 0)
        return true;
    fh->st.sent_reads--;
    fh->st.bytes_loaded -= n;
    return false;
}

/* Append the `len` bytes at p to refs' pieces, joined to the last one if
 * they follow it. */
static void refs_add(struct bf_read_refs *refs, char *p, size_t len)
{
    struct iovec *last = refs->n ? &refs->iov[refs->n - 1] : NULL;
    if (last && (char *)last->iov_base + last->iov_len == p) {
        last->iov_len += len;
        return;
    }
    BF_ASSERT(refs->n < BF_READ_REFS_MAX);
    refs->iov[refs->n].iov_base = p;
    refs->iov[refs->n].iov_len = len;
    refs->n++;
}

void bf_fileh_refs_put(struct bf_read_refs *refs)
{
    for (unsigned i = 0; i < refs->nheld; i++)
        bf_blockbuf_release(refs->held[i]);
    refs->nheld = 0;
    refs->n = 0;
}

ssize_t bf_fileh_read(bf_fileh *fh, void *buf, size_t count, uint64_t off)
{
    bool sent;
    return bf_fileh_read_refs(fh, buf, count, off, NULL, &sent, NULL);
}

ssize_t bf_fileh_read_sink(bf_fileh *fh, void *buf, size_t count, uint64_t off,
                           struct bf_sink *sink, bool *sent)
{
    return bf_fileh_read_refs(fh, buf, count, off, sink, sent, NULL);
}

/* bf_fileh_read_refs, or with refs NULL bf_fileh_read_sink: every byte
 * copied into buf. */
ssize_t bf_fileh_read_refs(bf_fileh *fh, void *buf, size_t count, uint64_t off,
                           struct bf_sink *sink, bool *sent, struct bf_read_refs *refs)
{
    *sent = false;
    if (refs)
        refs->n = refs->nheld = 0;
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
    bool random = !ra_note(fh, off, n);
    fh->ra_sent = sink && read_send(fh, off, n, sink);
    if (fh->ra_sent) {
        bf_ram_unlock(ram);
        *sent = true;
        return (ssize_t)n;
    }
    /* By reference only over few blocks: else the whole read is copied,
     * as one piece. */
    struct bf_read_refs *byref = refs;
    if (byref && ((off + n - 1) >> fh->blkbits) - (off >> fh->blkbits) >= BF_READ_REFS_MAX)
        byref = NULL;

    uint64_t done = 0;
    while (done < n) {
        uint64_t pos = off + done;
        uint64_t blk = pos >> fh->blkbits;
        size_t boff = (size_t)(pos & (fh->blksize - 1));
        size_t len = fh->blksize - boff;
        if (len > n - done)
            len = (size_t)(n - done);

        struct bf_page *pg;
        int r = page_get(fh, blk, boff, len, random, &pg);
        if (r < 0) {
            enforce_budget(ram);
            bf_ram_unlock(ram);
            if (refs)
                bf_fileh_refs_put(refs);
            return r;
        }
        if (pg) {
            char *src = (char *)pg->data + boff;
            if (byref && bf_blockbuf_hold(pg->data, fh->blksize)) {
                /* Read after the lock is released, held (I33). */
                byref->held[byref->nheld++] = pg->data;
                refs_add(byref, src, len);
            } else {
                /* Copied with the lock held (I1); a DIRTY page's buffer
                 * is not written meanwhile even if stored or spilled (I4,
                 * I29). */
                memcpy((char *)buf + done, src, len);
                if (byref)
                    refs_add(byref, (char *)buf + done, len);
            }
            if (pg->state == BF_PAGE_LOADED) {
                bf_ram_lru_touch(ram, &pg->lru);
                if (pg->ahead) {
                    pg->ahead = false; /* read now (I31) */
                    fh->nahead--;
                    ram->ahead_bytes -= fh->blksize;
                }
            }
        } else {
            memset((char *)buf + done, 0, len);
            if (byref)
                refs_add(byref, (char *)buf + done, len);
        }
        done += len;
        /* The copy is made (or the buffer held): a page loaded for it may
         * go now, and must before the lock is released for the next block
         * (I6). */
        enforce_budget(ram);
    }
    bf_ram_unlock(ram);
    if (refs && !byref && n > 0)
        refs_add(refs, buf, (size_t)n);
    return (ssize_t)n;
}

/* The blocks prefetch may load: below the size and the lowest size since
 * the last commit (I16). Lock held. */
static uint64_t prefetch_end(const bf_fileh *fh)
{
    uint64_t end = div_ceil_blk(fh, fh->size), zf = zero_from_blk(fh);
    return zf < end ? zf : end;
}

bool bf_fileh_readahead(bf_fileh *fh, uint64_t *blk, uint64_t *n)
{
    bf_ram *ram = fh->ram;
    bool ok = false;
    bf_ram_lock(ram);
    if (fh->ra_run >= RA_MIN_RUN && fh->ra_end > 0) {
        uint64_t window = (ram->budget / 4 < BF_READAHEAD_MAX ? ram->budget / 4
                                                              : BF_READAHEAD_MAX) >>
                          fh->blkbits;
        uint64_t cur = (fh->ra_end - 1) >> fh->blkbits;
        uint64_t from = cur + 1 > fh->ra_next ? cur + 1 : fh->ra_next;
        uint64_t to = cur + 1 + window, end = prefetch_end(fh);
        if (to > end)
            to = end;
        if (from < to) {
            *blk = from;
            *n = to - from;
            fh->ra_next = to;
            ok = true;
        }
    }
    bf_ram_unlock(ram);
    return ok;
}

int bf_fileh_prefetch(bf_fileh *fh, uint64_t blk, uint64_t n, uint64_t *loaded)
{
    if (n > 0 && n - 1 > UINT64_MAX - blk)
        return -EINVAL;
    bf_ram *ram = fh->ram;
    uint64_t done = 0;
    int r = 0;
    const struct bf_file_ops *ops = fh->file->ops;
    bf_ram_lock(ram);
    bool ahead = ops->loadblk_send && ops->loadblk_ahead && fh->ra_sent;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t b = blk + i;
        if (b >= prefetch_end(fh))
            break;
        if (bf_pagemap_get(&fh->pages, b))
            continue; /* cached, loading, dirty or spilled: nothing to do */
        if (ahead) {
            /* Its reads will be sent from the store's file (read_send),
             * unless the store keeps it another way: then into memory. */
            uint64_t at = fh->view;
            bf_ram_unlock(ram);
            r = ops->loadblk_ahead(fh->file, b, at);
            bf_ram_lock(ram);
            if (r == 0)
                continue;
            if (r != -ENODATA)
                break;
            r = 0; /* not in the store's file: read into memory */
            if (b >= prefetch_end(fh))
                break; /* shrunk meanwhile */
            if (bf_pagemap_get(&fh->pages, b))
                continue; /* meanwhile */
        }
        if (ram->ahead_bytes + fh->blksize > ram->budget / 4)
            break; /* I31: never evict what a reader is about to use */
        struct bf_page *pg;
        r = page_load(fh, b, true, &pg);
        if (r == -EAGAIN) {
            r = 0; /* invalidated meanwhile: a reader loads it */
            continue;
        }
        if (r < 0)
            break;
        done++;
        fh->st.prefetched_blocks++;
        enforce_budget(ram);
    }
    enforce_budget(ram);
    bf_ram_unlock(ram);
    if (loaded)
        *loaded = done;
    return r;
}

/* ------------------------------------------------------------------ */
/* Write                                                               */

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
    if (pg && pg->state == BF_PAGE_DIRTY && pg->wpinned && !pg->storing &&
        pg->io == BF_PAGE_IO_NONE)
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
        (pg && ((pg->state != BF_PAGE_LOADED && !(pg->state == BF_PAGE_DIRTY && pg->wpinned)) ||
                pg->io != BF_PAGE_IO_NONE))) {
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
        free(pg->valid); /* whole now (I30) */
        pg->valid = NULL;
    }
    pg->wpinned = false;
    pg->serial = serial - 1; /* I24, I27 */
    page_mark_conflict(pg);
    return 0;
}

/* The bytes [*bo, *be) of block b that a write of [off, end) covers. */
static void write_span(const bf_fileh *fh, uint64_t b, uint64_t off, uint64_t end, size_t *bo,
                       size_t *be)
{
    uint64_t start = b << fh->blkbits;
    *bo = off > start ? (size_t)(off - start) : 0;
    *be = end - start < fh->blksize ? (size_t)(end - start) : fh->blksize;
}

/* Whether a write of bytes [bo, be) of a page with bitmap `valid` (NULL:
 * every unit valid; `empty`: no page, no unit valid) leaves only whole
 * units behind: its first and last units are covered whole or already
 * valid (I30). */
static bool edges_ok(const uint64_t *valid, bool empty, size_t bo, size_t be)
{
    bool head = (bo & (BF_UNIT - 1)) == 0 ||
                (!empty && unit_valid(valid, (uint32_t)(bo >> BF_UNIT_BITS)));
    bool tail = (be & (BF_UNIT - 1)) == 0 ||
                (!empty && unit_valid(valid, (uint32_t)((be - 1) >> BF_UNIT_BITS)));
    return head && tail;
}

/* What a block of a write needs before the write can apply. */
enum wr_need {
    WR_NONE,          /* nothing */
    WR_WAIT_LOAD,     /* a load or another I/O of the page runs: wait (I5, I29) */
    WR_WAIT_WRITEOUT, /* SPILLED, partially written, while a writeout runs */
    WR_LOAD,          /* EMPTY, partially written, not unit-aligned: load it */
    WR_UNSPILL,       /* SPILLED, partially written: its content back */
    WR_FILL,          /* partial page, a unit the write covers in part is not valid */
};

/* What block b (page pg, maybe NULL) needs for a write of its bytes [bo,
 * be). Lock held. */
static enum wr_need write_need(const bf_fileh *fh, uint64_t b, const struct bf_page *pg, size_t bo,
                               size_t be)
{
    bool whole = bo == 0 && be == fh->blksize;
    if (!pg) {
        if (whole || b >= zero_from_blk(fh))
            return WR_NONE; /* no content needed */
        return fh->blksize > BF_UNIT && edges_ok(NULL, true, bo, be) ? WR_NONE : WR_LOAD;
    }
    switch (pg->state) {
    case BF_PAGE_LOADING:
    case BF_PAGE_LOADING_INVALIDATED:
        return WR_WAIT_LOAD;
    case BF_PAGE_SPILLED:
        if (whole)
            return WR_NONE; /* replaced whole: the staged content is dropped */
        return fh->writeout_running ? WR_WAIT_WRITEOUT : WR_UNSPILL;
    case BF_PAGE_DIRTY:
        if (pg->io != BF_PAGE_IO_NONE)
            return WR_WAIT_LOAD;
        /* fall through */
    default:
        return whole || edges_ok(pg->valid, false, bo, be) ? WR_NONE : WR_FILL;
    }
}

/* Per block of a write: a page to create, a buffer (copy on write, or for
 * a SPILLED block written whole), a bitmap for a new partial page, and a
 * staged content to drop once the lock is released. */
struct wr_slot {
    struct bf_page *newpg;
    void *buf;
    uint64_t *valid;
    bool drop;
    uint64_t token;
};

/* Phase 1 of a write (bf_fileh_write): make every block of the write
 * ready, releasing the lock at most once. Returns 1 when ready (the lock
 * held throughout), 0 after a release (look again), or an error (nothing
 * changed by the write yet). */
static int write_prepare(bf_fileh *fh, uint64_t off, uint64_t end, uint64_t first, uint64_t last,
                         unsigned flags, bool *over)
{
    bf_ram *ram = fh->ram;
    size_t bo, be;
    write_span(fh, first, off, end, &bo, &be);
    bool first_partial = bo != 0 || be != fh->blksize;
    write_span(fh, last, off, end, &bo, &be);
    bool last_partial = be != fh->blksize;

    /* Every block: out of loads and other I/O. */
    uint64_t k;
    struct bf_page *pg, *act = NULL;
    enum wr_need need = WR_NONE;
    for (pg = bf_pagemap_next(&fh->pages, first, &k); pg && k <= last;
         pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k)) {
        write_span(fh, k, off, end, &bo, &be);
        enum wr_need n = write_need(fh, k, pg, bo, be);
        if (n == WR_WAIT_LOAD || n == WR_WAIT_WRITEOUT) {
            need = n;
            break;
        }
    }
    /* Into the launder window (I27): the partially written blocks first
     * get the content the kernel's pages were made on. */
    uint64_t wb = need != WR_NONE ? UINT64_MAX
                                  : window_needs_old(fh, first, last, first_partial, last_partial);
    /* The partially written blocks: their content, or whole units. */
    uint64_t nb = UINT64_MAX;
    for (int i = 0; i < 2 && need == WR_NONE && wb == UINT64_MAX; i++) {
        uint64_t b = i == 0 ? first : last;
        if ((i == 0 && !first_partial) || (i == 1 && (!last_partial || last == first)))
            continue;
        write_span(fh, b, off, end, &bo, &be);
        act = bf_pagemap_get(&fh->pages, b);
        need = write_need(fh, b, act, bo, be);
        nb = b;
    }

    /* Pinned DIRTY, a block loaded in an earlier round neither goes nor
     * counts as clean while the lock is released (I6). */
    if (first_partial)
        pin_partial(fh, first);
    if (last_partial)
        pin_partial(fh, last);
    int r;
    if (wb != UINT64_MAX) {
        r = window_load(fh, wb);
        return r == -EAGAIN ? 0 : r;
    }
    switch (need) {
    case WR_WAIT_LOAD:
        bf_ram_wait_load(ram);
        return 0;
    case WR_WAIT_WRITEOUT:
        bf_ram_wait(ram, &fh->writeout_done);
        return 0;
    case WR_LOAD:
        r = page_load(fh, nb, false, &pg);
        return r == -EAGAIN ? 0 : r;
    case WR_UNSPILL:
        r = bf_spill_unspill(act);
        return r > 0 ? 0 : r;
    case WR_FILL:
        /* pin_partial made a LOADED page DIRTY (pinned) */
        r = page_fill(act);
        return r;
    case WR_NONE:
        break;
    }

    /* Room for the blocks that become dirty in memory (I28). */
    uint64_t room = 0;
    for (uint64_t b = first; b <= last; b++) {
        pg = bf_pagemap_get(&fh->pages, b);
        if (!pg || pg->state != BF_PAGE_DIRTY)
            room += fh->blksize;
    }
    bool keep = flags & BF_WRITE_KEEP;
    r = bf_spill_make_room(fh, room, first, last, keep);
    if (r == 0 && keep && ram->room_refused) {
        fh->st.kept_writes++; /* goes over the budget: staging refused the rest */
        if (over)
            *over = true;
    }
    return r > 0 ? 0 : r < 0 ? r : 1;
}

ssize_t bf_fileh_write(bf_fileh *fh, const void *buf, size_t count, uint64_t off)
{
    return bf_fileh_write_flags(fh, buf, count, off, 0, NULL);
}

ssize_t bf_fileh_write_flags(bf_fileh *fh, const void *buf, size_t count, uint64_t off,
                             unsigned flags, bool *over)
{
    if (over)
        *over = false;
    if (count == 0)
        return 0;
    if (off >= BF_SIZE_MAX)
        return -EFBIG;
    if (count > BF_SIZE_MAX - off || count > SSIZE_MAX)
        return -EINVAL;

    bf_ram *ram = fh->ram;
    uint64_t end = off + count;
    uint64_t first = off >> fh->blkbits, last = (end - 1) >> fh->blkbits;
    int r;

    bf_ram_lock(ram);

    /* Phase 1, lock released at times: every block of the range is out of
     * loads and other I/O, and the partially written ones have the content
     * they need (or need none), and there is room for the blocks that
     * become dirty. After a release anything may have changed: start over.
     * The fence is checked under the lock at every round (I22). */
    for (;;) {
        if (range_fenced(fh, first, last)) {
            fh->st.fenced_writes++;
            write_giveup(fh, first, last);
            return (ssize_t)count;
        }
        r = write_prepare(fh, off, end, first, last, flags, over);
        if (r < 0) {
            write_giveup(fh, first, last);
            return r;
        }
        if (r > 0)
            break;
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
        memset(&one, 0, sizeof(one));
    }
    r = 0;
    uint64_t inserted = 0;
    for (uint64_t i = 0; i < nblk && r == 0; i++) {
        uint64_t b = first + i;
        struct bf_page *pg = bf_pagemap_get(&fh->pages, b);
        size_t bo, be;
        write_span(fh, b, off, end, &bo, &be);
        bool whole = bo == 0 && be == fh->blksize;
        if (!pg) {
            /* A block the write covers entirely needs no zeros first, nor
             * does a partial page (I30). */
            bool partial = !whole && b < zero_from_blk(fh);
            slots[i].newpg = page_alloc(fh, b, whole || partial);
            if (partial && slots[i].newpg)
                slots[i].valid = valid_new(fh);
            if (!slots[i].newpg || (partial && !slots[i].valid))
                r = -ENOMEM;
        } else if (pg->storing || pg->state == BF_PAGE_SPILLED) {
            slots[i].buf = bf_blockbuf_alloc_overwrite(
                fh->blksize); /* copied over or written whole */
            if (!slots[i].buf)
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
                bf_pg_free(slots[i].newpg);
            }
            bf_blockbuf_free(slots[i].buf, fh->blksize);
            free(slots[i].valid);
        }
        if (slots != &one)
            free(slots);
        write_giveup(fh, first, last);
        return r;
    }

    uint64_t done = 0;
    for (uint64_t i = 0; i < nblk; i++) {
        struct bf_page *pg = slots[i].newpg;
        size_t bo, be;
        write_span(fh, first + i, off, end, &bo, &be);
        if (pg) {
            /* EMPTY -> DIRTY: whole block written, past the lowest size
             * (reads as zeros), or a partial page: no loadblk needed. */
            pg->valid = slots[i].valid;
            page_set_state(pg, BF_PAGE_DIRTY);
        } else {
            pg = bf_pagemap_get(&fh->pages, first + i);
            if (pg->state == BF_PAGE_LOADED) {
                page_set_state(pg, BF_PAGE_DIRTY); /* LOADED -> DIRTY */
            } else if (pg->state == BF_PAGE_SPILLED) {
                /* Written whole (a partial write unspilled it first). A
                 * running writeout keeps storing the staged content, and
                 * drops it if its commit fails; else it is dropped now. */
                if (pg->storing) {
                    pg->storing = false;
                } else {
                    slots[i].drop = true;
                    slots[i].token = pg->token;
                }
                page_set_state(pg, BF_PAGE_DIRTY); /* SPILLED -> DIRTY (written whole) */
                pg->data = slots[i].buf;
                slots[i].buf = NULL;
            } else if (pg->storing) {
                memcpy(slots[i].buf, pg->data, fh->blksize);
                page_cow(pg, slots[i].buf);
                slots[i].buf = NULL;
            }
            bf_ram_dlru_touch(ram, &pg->lru); /* I28: most recently written */
            pg->spill_failed = false;         /* new content: staging may take it now */
        }
        if (in_window(fh, first + i)) {
            /* A laundered page: it belongs to the content before the
             * window's commit, and conflicts with it (I27). */
            if (pg->serial >= fh->lw_serial)
                pg->serial = fh->lw_serial - 1;
            page_mark_conflict(pg);
        }
        memcpy((char *)pg->data + bo, (const char *)buf + done, be - bo);
        if (bo == 0 && be == fh->blksize) {
            free(pg->valid); /* whole now (I30) */
            pg->valid = NULL;
        } else {
            valid_set(pg, bo, be - bo);
        }
        pg->wpinned = false; /* changed: a real DIRTY now */
        done += be - bo;
    }
    if (end > fh->size)
        fh->size = end;
    bf_ram_unlock(ram);
    for (uint64_t i = 0; i < nblk; i++)
        if (slots[i].drop)
            fh->file->ops->stage_drop(fh->file, slots[i].token); /* I2: lock released */
    if (slots != &one)
        free(slots);
    return (ssize_t)count;
}

/* ------------------------------------------------------------------ */
/* Truncate                                                            */

int bf_fileh_truncate(bf_fileh *fh, uint64_t size)
{
    if (size > BF_SIZE_MAX)
        return -EINVAL;
    bf_ram *ram = fh->ram;
    uint64_t tail = size & (fh->blksize - 1);
    uint64_t lastblk = size >> fh->blkbits; /* the new partial last block, if tail */
    struct bf_list staged;
    bf_list_init(&staged);

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
        int r = 0;
        if (fh->writeout_running) {
            /* A shrink waits for the writeout to end (I18): it would drop
             * pages the writeout stores (I14) and lower the size under its
             * snapshot. A tail block loaded in an earlier round goes first
             * if over the budget (I6). */
            enforce_budget(ram);
            bf_ram_wait(ram, &fh->writeout_done);
            continue;
        }
        if (fh->nio > 0) {
            enforce_budget(ram);
            wait_no_io(fh); /* no page it drops or zeroes is in I/O (I29) */
            continue;
        }
        if (!tail)
            break;
        /* The new last block, whole and in memory, for its tail to be
         * zeroed. */
        struct bf_page *pg = bf_pagemap_get(&fh->pages, lastblk);
        if (pg && (pg->state == BF_PAGE_LOADING || pg->state == BF_PAGE_LOADING_INVALIDATED)) {
            bf_ram_wait_load(ram);
            continue;
        }
        if (!pg && lastblk >= zero_from_blk(fh))
            break;
        if (!pg)
            r = page_load(fh, lastblk, false, &pg);
        else if (pg->state == BF_PAGE_SPILLED)
            r = bf_spill_unspill(pg);
        else if (pg->valid && pg->state == BF_PAGE_LOADED)
            r = page_load_part(fh, lastblk, pg, 0, fh->blksize);
        else if (pg->valid)
            r = page_fill(pg);
        else
            break;
        if (r < 0 && r != -EAGAIN) {
            enforce_budget(ram);
            bf_ram_unlock(ram);
            return r;
        }
    }

    /* Shrinking, lock held, no writeout running (I18), no I/O (I29): zero
     * the tail of the new last block ... */
    BF_ASSERT(!fh->writeout_running && fh->nio == 0);
    if (tail) {
        struct bf_page *pg = bf_pagemap_get(&fh->pages, lastblk);
        if (pg) {
            BF_ASSERT(!pg->valid && pg->data); /* whole (I30) */
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
            page_drop(pg, &staged); /* LOADED/DIRTY/SPILLED -> EMPTY (truncated) */
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
    fh->size = size;
    if (size < fh->min_size)
        fh->min_size = size; /* I17 */
    enforce_budget(ram);
    bf_ram_unlock(ram);
    bf_spill_drop_list(&staged);
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
 * writeout runs, so none is `storing`: I19; no page is in I/O: I29). A
 * SPILLED page stays SPILLED: making it clean would need its content
 * back, and this writeout calls nothing. */
static uint64_t mark_all_stored(bf_fileh *fh)
{
    uint64_t n = 0;
    struct bf_list *pos, *tmp;
    bf_list_foreach_safe(pos, tmp, &fh->dirty)
    {
        struct bf_page *pg = bf_list_entry(pos, struct bf_page, dirty);
        if (pg->state != BF_PAGE_DIRTY)
            continue;
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
            if (pg && (pg->state == BF_PAGE_DIRTY || pg->state == BF_PAGE_SPILLED)) {
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

/* Store the writeout's blocks, lock released (I2): a staged one through
 * storeblk_staged, a partial one merged onto its base in *tmp (allocated
 * at the first), the others as they are. *loads counts the loads of bases,
 * stale[i] says the base of item i was gone, *calls counts the store
 * calls and *stored the blocks stored. Returns 0 or the first error. */
static int wo_store(bf_fileh *fh, const struct wo_item *items, uint64_t n, bool *stale, void **tmp,
                    uint64_t *loads, uint64_t *calls, uint64_t *stored)
{
    const struct bf_file_ops *ops = fh->file->ops;
    int r = 0;
    for (uint64_t i = 0; r == 0 && i < n; i++) {
        const struct wo_item *it = &items[i];
        (*calls)++;
        if (!it->data) {
            r = ops->storeblk_staged(fh->file, it->blk, it->token, it->base);
        } else if (it->valid) {
            /* The bytes it never had come from the content its change was
             * made on (I30), never from a newer one. */
            if (!*tmp && !(*tmp = bf_blockbuf_alloc_overwrite(fh->blksize))) {
                r = -ENOMEM;
                break;
            }
            (*loads)++;
            r = bf_pg_load_base(fh->file, it->blk, it->base, *tmp, &stale[i]);
            if (r == 0) {
                bf_pg_copy_units(fh, *tmp, it->data, it->valid, true);
                r = ops->storeblk(fh->file, it->blk, *tmp, it->base);
            }
        } else {
            r = ops->storeblk(fh->file, it->blk, it->data, it->base);
        }
        if (r == 0)
            __atomic_store_n(&fh->wo_done, ++*stored, __ATOMIC_RELAXED); /* for stat */
    }
    return r;
}

/* Take the writeout's snapshot of the dirty and spilled pages: *items in
 * block order, each page `storing` (I4, I14), a copy of each partial
 * page's bitmap. Lock held. Returns 0 or -ENOMEM (nothing changed). */
static int wo_snapshot(bf_fileh *fh, struct wo_item **out, uint64_t *nout)
{
    uint64_t n = fh->ndirty + fh->nspilled, i = 0;
    struct wo_item *items = n ? calloc(n, sizeof(*items)) : NULL;
    if (n && !items)
        return -ENOMEM;
    struct bf_list *pos;
    bf_list_foreach(pos, &fh->dirty)
    {
        struct bf_page *pg = bf_list_entry(pos, struct bf_page, dirty);
        items[i] = (struct wo_item){
            .blk = pg->blk, .data = pg->data, .token = pg->token, .base = pg->serial, .pg = pg
        };
        if (pg->valid) {
            items[i].valid = malloc(valid_words(fh) * sizeof(uint64_t));
            if (!items[i].valid) {
                while (i-- > 0)
                    free(items[i].valid);
                free(items);
                return -ENOMEM;
            }
            memcpy(items[i].valid, pg->valid, valid_words(fh) * sizeof(uint64_t));
        }
        i++;
    }
    BF_ASSERT(i == n); /* I11, I12 */
    for (i = 0; i < n; i++)
        items[i].pg->storing = true; /* its buffer or token is the writeout's (I4, I14) */
    if (n)
        qsort(items, n, sizeof(*items), wo_item_cmp);
    *out = items;
    *nout = n;
    return 0;
}

/* The end of a writeout, for item it, lock held: its page leaves
 * `storing`; committed (at `serial`), it takes the serial; a staged page
 * is then EMPTY (its content is the store's now), a DIRTY one LOADED with
 * MARKSTORED. A staged content the page no longer needs (rewritten during
 * the writeout, and the commit failed) is returned in *drop. */
static void wo_finish(bf_fileh *fh, struct wo_item *it, bool committed, uint64_t serial,
                      unsigned flags, bool stale, uint64_t *drop, bool *dropit)
{
    struct bf_page *pg = it->pg;
    *dropit = false;
    if (!it->data) {
        if (pg->state == BF_PAGE_SPILLED && pg->storing) {
            pg->storing = false;
            if (committed) {
                page_drop(pg, NULL); /* SPILLED -> EMPTY (committed: the token is used up) */
                return;
            }
        } else if (!committed) {
            *drop = it->token; /* rewritten whole meanwhile: its content is not wanted */
            *dropit = true;
        }
    } else if (pg->data != it->data) {
        /* Rewritten (or filled) during the writeout: the page has its own
         * copy and stays DIRTY, made on what was just committed; the
         * stored buffer is ours to free (I4). */
        BF_ASSERT(fh->cow_held > 0 && fh->ram->dirty_bytes >= fh->blksize); /* I13 */
        bf_blockbuf_free(it->data, fh->blksize);
        fh->cow_held--;
        fh->ram->dirty_bytes -= fh->blksize;
    } else {
        BF_ASSERT(pg->storing && pg->state == BF_PAGE_DIRTY); /* I14 */
        pg->storing = false;
    }
    if (stale && (pg->state == BF_PAGE_DIRTY || pg->state == BF_PAGE_SPILLED))
        page_mark_conflict(pg); /* its base is gone: someone changed the block since */
    if (!committed || pg->state != BF_PAGE_DIRTY)
        return;
    pg->serial = serial; /* its content (or the base of its change) is committed now */
    if (pg->conflict) {
        pg->conflict = false;
        fh->nconflict--;
    }
    /* A page in I/O (a writer filling a partial page from its base, with
     * the lock released) is its I/O thread's to change (I29): it stays
     * DIRTY — its content is what was just committed, and the next
     * writeout stores it again. */
    if ((flags & BF_WRITEOUT_MARKSTORED) && pg->data == it->data && pg->io == BF_PAGE_IO_NONE)
        page_set_state(pg, BF_PAGE_LOADED); /* DIRTY -> LOADED (stored) */
}

/* A writeout ends: shrinking truncates, unspills and partial writes of
 * SPILLED blocks go on (I19). Lock held. */
static void wo_end(bf_fileh *fh)
{
    BF_ASSERT(fh->writeout_running && fh->cow_held == 0); /* I19 */
    fh->writeout_running = false;
    fh->wo_total = 0;
    __atomic_store_n(&fh->wo_done, 0, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&fh->writeout_done);
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
    /* Running from now on: no spill or unspill of the handle's pages
     * starts; those in flight (and fills) end before the snapshot takes
     * buffers and tokens as they are (I29). */
    fh->writeout_running = true;
    wait_no_io(fh);
    if (!(flags & BF_WRITEOUT_STORE)) {
        out.blocks = mark_all_stored(fh);
        fh->st.writeouts++;
        enforce_budget(ram);
        wo_end(fh);
        bf_ram_unlock(ram);
        if (res)
            *res = out;
        return 0;
    }

    /* Snapshot: the dirty and spilled pages in block order with their
     * bases, the size state and the bases of the size and the file. */
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
    if (fh->ndirty + fh->nspilled == 0 && !req.size_set) {
        fh->st.writeouts++; /* nothing to store */
        wo_end(fh);
        bf_ram_unlock(ram);
        if (res)
            *res = out;
        return 0;
    }
    uint64_t n;
    struct wo_item *items;
    int r = wo_snapshot(fh, &items, &n);
    bool *stale = r == 0 && n ? calloc(n, sizeof(*stale)) : NULL;
    uint64_t *drops = stale ? calloc(n, sizeof(*drops)) : NULL;
    if (r == 0 && n && !drops) {
        for (uint64_t i = 0; i < n; i++) {
            items[i].pg->storing = false;
            free(items[i].valid);
        }
        free(items);
        free(stale);
        r = -ENOMEM;
    }
    if (r < 0) {
        wo_end(fh);
        bf_ram_unlock(ram);
        return r;
    }
    fh->wo_total = n; /* progress, for stat */
    __atomic_store_n(&fh->wo_done, 0, __ATOMIC_RELAXED);
    bf_ram_unlock(ram);

    /* The transaction, lock released (I2), the only one of the handle
     * (I20). */
    uint64_t stored = 0, serial = 0, loads = 0, calls = 0;
    void *tmp = NULL;
    bool began = false;
    r = ops->begin(fh->file);
    if (r == 0) {
        began = true;
        if (shrunk)
            r = ops->truncate(fh->file, trunc_blocks);
    }
    if (r == 0)
        r = wo_store(fh, items, n, stale, &tmp, &loads, &calls, &stored);
    bool committed = false;
    if (r == 0) {
        r = ops->commit(fh->file, &req, &serial); /* a failed commit rolls back itself */
        committed = r == 0;
    } else if (began) {
        ops->abort(fh->file);
    }
    bf_blockbuf_free(tmp, fh->blksize);

    bf_ram_lock(ram);
    fh->st.storeblk_calls += calls;
    fh->st.bytes_stored += stored * fh->blksize;
    fh->st.loadblk_calls += loads;
    fh->st.bytes_loaded += loads * fh->blksize;
    if (committed && serial > fh->view)
        fh->view = serial; /* I24: before the stored pages take it */
    uint64_t ndrop = 0;
    for (uint64_t i = 0; i < n; i++) {
        bool dropit;
        wo_finish(fh, &items[i], committed, serial, flags, stale[i], &drops[ndrop], &dropit);
        ndrop += dropit;
        free(items[i].valid);
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
    wo_end(fh);
    bf_ram_unlock(ram);
    /* The transaction is closed: staged contents may be dropped now. */
    for (uint64_t i = 0; i < ndrop; i++)
        ops->stage_drop(fh->file, drops[i]);
    free(items);
    free(stale);
    free(drops);
    free(cl.blks);
    if (res && (r == 0 || r == -ESTALE))
        *res = out;
    return r;
}

/* Wait until no page of the handle is in I/O; then -EBUSY if a writeout
 * runs (its pages are `storing`, I14), else 0. Lock held (released while
 * waiting). */
static int wait_idle(bf_fileh *fh)
{
    while (fh->nio > 0 && !fh->writeout_running)
        bf_ram_wait_load(fh->ram);
    return fh->writeout_running ? -EBUSY : 0;
}

int bf_fileh_discard(bf_fileh *fh, uint64_t *nblocks)
{
    bf_ram *ram = fh->ram;
    struct bf_list staged;
    bf_list_init(&staged);
    bf_ram_lock(ram);
    int r = wait_idle(fh);
    if (r < 0) {
        bf_ram_unlock(ram);
        return r;
    }
    uint64_t n = 0;
    struct bf_list *pos, *tmp;
    bf_list_foreach_safe(pos, tmp, &fh->dirty)
    {
        /* DIRTY/SPILLED -> EMPTY (discarded) */
        page_drop(bf_list_entry(pos, struct bf_page, dirty), &staged);
        n++;
    }
    /* A clean page with bytes past the committed size holds what a
     * MARKSTORED-only writeout marked clean without storing: past the size
     * the file reads as zeros again (I15, I16). */
    uint64_t k;
    struct bf_page *pg = bf_pagemap_next(&fh->pages, fh->committed_size >> fh->blkbits, &k);
    while (pg) {
        if (pg->state == BF_PAGE_LOADED)
            page_drop(pg, NULL); /* LOADED -> EMPTY (past the restored size) */
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
    fh->size = fh->min_size = fh->committed_size; /* I17 */
    fh->size_conflict = false;
    fh->file_base = fh->view; /* clean now (I26) */
    fh->st.discards++;
    bf_ram_unlock(ram);
    bf_spill_drop_list(&staged);
    if (nblocks)
        *nblocks = n;
    return 0;
}

/* Apply commit `serial` to one cached page of a block it changed: older
 * pages go (LOADED) or reload (LOADING), an older change conflicts
 * (DIRTY, SPILLED); a page already as new stays. Lock held. */
static void apply_page(struct bf_page *pg, uint64_t serial)
{
    if (pg->serial >= serial)
        return; /* already reflects it (loaded, or committed, as of it or later) */
    switch (pg->state) {
    case BF_PAGE_LOADED:
        pg->fh->st.invalidated_blocks++;
        page_drop(pg, NULL); /* LOADED -> EMPTY (another mount's commit) */
        break;
    case BF_PAGE_LOADING:
        pg->fh->st.invalidated_blocks++;
        page_set_state(pg, BF_PAGE_LOADING_INVALIDATED); /* LOADING -> LOADING_INVALIDATED */
        break;
    case BF_PAGE_DIRTY:
    case BF_PAGE_SPILLED:
        page_mark_conflict(pg); /* stays: never replaced silently */
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

/* Whether the handle has a DIRTY or SPILLED page at block `from` or
 * later. Lock held. */
static bool dirty_from(bf_fileh *fh, uint64_t from)
{
    uint64_t k;
    struct bf_page *pg = bf_pagemap_next(&fh->pages, from, &k);
    while (pg) {
        if (pg->state == BF_PAGE_DIRTY || pg->state == BF_PAGE_SPILLED)
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
    return fh->ndirty == 0 && fh->nspilled == 0 && fh->size == fh->committed_size &&
           fh->min_size == fh->committed_size;
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
    /* Every clean page older than serial may be stale; a DIRTY or SPILLED
     * page keeps its base, unmarked: the store's check compares it at the
     * writeout. */
    uint64_t k;
    struct bf_page *pg = bf_pagemap_next(&fh->pages, 0, &k);
    while (pg) {
        struct bf_page *next = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
        if (pg->state != BF_PAGE_DIRTY && pg->state != BF_PAGE_SPILLED)
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
        if ((pg->state == BF_PAGE_DIRTY || pg->state == BF_PAGE_SPILLED) && pg->conflict) {
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
    struct bf_list staged;
    bf_list_init(&staged);
    bf_ram_lock(ram);
    int r = wait_idle(fh);
    if (r < 0) {
        bf_ram_unlock(ram);
        return r;
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
        case BF_PAGE_SPILLED:
            page_drop(pg, &staged); /* LOADED/DIRTY/SPILLED -> EMPTY (invalidated) */
            fh->st.invalidated_blocks++;
            break;
        default:
            break; /* already being reloaded */
        }
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
    bf_ram_unlock(ram);
    bf_spill_drop_list(&staged);
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
    bool dirty = fh->ndirty != 0 || fh->nspilled != 0 || fh->size != fh->committed_size ||
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
    st->spilled_blocks = fh->nspilled;
    st->view = fh->view;
    st->conflict_blocks = fh->nconflict;
    st->size_conflict = fh->size_conflict;
    st->writeout_total = fh->wo_total;
    st->writeout_done = __atomic_load_n(&fh->wo_done, __ATOMIC_RELAXED);
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
