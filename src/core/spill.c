/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: spilling, the DIRTY <-> SPILLED transitions (fileh.h,
 * "Spilling"; I28, I29).
 *
 * A ram's dirty budget bounds the bytes of DIRTY pages its handles keep
 * in memory. A call that is about to make a page DIRTY (a write, an
 * unspill) first makes room: it spills the least recently written DIRTY
 * page of any handle on the ram (the ram's dirty LRU) that can be spilled,
 * one at a time, until the new page fits or none is left. Spilling hands
 * the page's content to its store's staging area (bigfile.h, stage) with
 * the lock released, then drops the buffer: the page is SPILLED, with its
 * token. A read or a partial write of a SPILLED page unspills it: room
 * first, then the staged content read back (unstage) and dropped.
 *
 * While a page is being spilled, readers read its buffer (unchanged: it is
 * read by the spiller with the lock released), writers wait (I29), and so
 * do the calls that would drop it or snapshot it (discard, invalidate,
 * truncate, close, writeout): a page in I/O never changes state but by its
 * I/O's thread. A partial page is completed for staging from its base
 * (I30) in a buffer of the spiller's. Pages of a handle whose writeout
 * runs are never spilled, nor unspilled (stage and unstage never run with
 * the file's transaction open, bigfile.h), and neither are pinned pages
 * (a write in progress keeps them).
 */
#include <errno.h>
#include <stdlib.h>

#include "core/blockbuf.h"
#include "core/fileh_internal.h"

/* Whether pg can be spilled now, for a call on fh that is about to use its
 * blocks [lo, hi]. Lock held. */
static bool spillable(const struct bf_page *pg, const bf_fileh *fh, uint64_t lo, uint64_t hi)
{
    const bf_fileh *owner = pg->fh;
    return pg->state == BF_PAGE_DIRTY && pg->io == BF_PAGE_IO_NONE && !pg->storing &&
           !pg->wpinned && !owner->writeout_running && owner->file->ops->stage &&
           !(owner == fh && pg->blk >= lo && pg->blk <= hi);
}

/* Whether staging refused pg (DIRTY) and it was not written since (I28).
 * Lock held. */
static bool refused(const struct bf_page *pg)
{
    return pg->state == BF_PAGE_DIRTY && pg->spill_failed;
}

/* Spill pg (spillable): DIRTY -> SPILLED. Lock held on entry and on
 * return, released around the stage (and the load of a partial page's
 * base). Returns 0, or the error (counted: the page stays DIRTY, its
 * content unchanged). */
static int page_spill(struct bf_page *pg)
{
    bf_fileh *fh = pg->fh;
    bf_ram *ram = fh->ram;
    bf_file *f = fh->file;
    uint64_t blk = pg->blk, base = pg->serial, token = 0;
    const void *data = pg->data;
    const uint64_t *valid = pg->valid;
    void *tmp = NULL;
    bool stale = false, loaded = false;
    int r = 0;

    pg->io = BF_PAGE_IO_SPILL; /* I29: writers wait, its buffer stays as it is */
    fh->nio++;
    ram->nspilling++;
    bf_ram_unlock(ram); /* I2 */
    if (valid) {
        /* A partial page is staged whole: its base, its bytes over it. */
        tmp = bf_blockbuf_alloc_overwrite(fh->blksize);
        r = tmp ? bf_pg_load_base(f, blk, base, tmp, &stale) : -ENOMEM;
        loaded = tmp != NULL;
        if (r == 0)
            bf_pg_copy_units(fh, tmp, data, valid, true);
    }
    if (r == 0)
        r = f->ops->stage(f, blk, tmp ? tmp : data, &token);
    bf_blockbuf_free(tmp, fh->blksize);
    bf_ram_lock(ram);

    pg->io = BF_PAGE_IO_NONE;
    fh->nio--;
    ram->nspilling--;
    bf_ram_wake_loaders(ram); /* I29: waiters look again */
    fh->st.loadblk_calls += loaded;
    if (r < 0) {
        fh->st.errors++;
        fh->st.spill_failures++;
        pg->spill_failed = true; /* DIRTY still: passed over while others can go */
        return r;
    }
    fh->st.bytes_loaded += loaded ? fh->blksize : 0;
    bf_pg_set_state(pg, BF_PAGE_SPILLED); /* DIRTY -> SPILLED (spilled) */
    bf_blockbuf_free(pg->data, fh->blksize);
    free(pg->valid);
    pg->data = NULL;
    pg->valid = NULL;
    pg->token = token;
    if (stale)
        bf_pg_mark_conflict(pg); /* its base is gone: someone changed the block since */
    fh->st.spills++;
    return 0;
}

int bf_spill_make_room(bf_fileh *fh, uint64_t need, uint64_t lo, uint64_t hi, bool over_ok)
{
    bf_ram *ram = fh->ram;
    bf_ram_assert_locked(ram); /* I1 */
    if (ram->dirty_budget == SIZE_MAX || ram->dirty_bytes + need <= ram->dirty_budget)
        return 0;
    /* The least recently written page that can go. The walk passes over
     * the pages that cannot: at most the dirty pages in memory, which the
     * budget bounds (but for the handles writing out, and the pages
     * staging refused). */
    struct bf_page *full = NULL; /* the least recently written refused page */
    ram->room_refused = false;
    struct bf_list *pos;
    bf_list_foreach(pos, &ram->dlru)
    {
        struct bf_page *pg = bf_list_entry(pos, struct bf_page, lru);
        if (!spillable(pg, fh, lo, hi))
            continue;
        if (refused(pg)) {
            if (!full)
                full = pg;
            continue;
        }
        int r = page_spill(pg);
        return r < 0 && !over_ok ? r : 1;
    }
    if (ram->nspilling > 0) {
        bf_ram_wait_load(ram); /* others are making room: see what is left after */
        return 1;
    }
    if (!full)
        return 0; /* nothing can go: over the budget */
    if (over_ok) {
        ram->room_refused = true; /* over the budget because staging refused */
        return 0;
    }
    /* Only pages staging refused are left, and the caller can fail (and
     * keep its bytes: write(2) gets ENOSPC): offer the oldest again —
     * staging may have room now (a writeout or discard freed some). */
    full->spill_failed = false;
    int r = page_spill(full);
    return r < 0 ? r : 1;
}

int bf_spill_unspill(struct bf_page *pg)
{
    bf_fileh *fh = pg->fh;
    bf_ram *ram = fh->ram;
    bf_file *f = fh->file;
    BF_ASSERT(pg->state == BF_PAGE_SPILLED && !pg->storing && !fh->writeout_running);
    /* Room if it can be made; else the reload goes over the budget (a
     * read must not fail because staging is full). */
    int r = bf_spill_make_room(fh, fh->blksize, pg->blk, pg->blk, true);
    if (r != 0)
        return 0; /* after a release, pg may be gone: look again */
    void *buf = bf_blockbuf_alloc_overwrite(fh->blksize); /* unstage fills it */
    if (!buf)
        return -ENOMEM;
    uint64_t token = pg->token;
    bf_pg_set_state(pg, BF_PAGE_DIRTY); /* SPILLED -> DIRTY (unspilling) */
    pg->data = buf;
    pg->io = BF_PAGE_IO_UNSPILL; /* I29: everybody waits for its content */
    fh->nio++;
    bf_ram_unlock(ram); /* I2 */
    r = f->ops->unstage(f, token, buf);
    if (r == 0)
        f->ops->stage_drop(f, token); /* in memory again: the staged copy goes */
    bf_ram_lock(ram);

    pg->io = BF_PAGE_IO_NONE;
    fh->nio--;
    bf_ram_wake_loaders(ram); /* I29 */
    if (r < 0) {
        fh->st.errors++;
        bf_pg_set_state(pg, BF_PAGE_SPILLED); /* DIRTY -> SPILLED (unspill failed) */
        pg->data = NULL;
        pg->token = token;
        bf_blockbuf_free(buf, fh->blksize);
        return r;
    }
    pg->token = 0;
    fh->st.unspills++;
    return 0;
}

void bf_spill_drop_list(struct bf_list *list)
{
    struct bf_list *pos, *tmp;
    bf_list_foreach_safe(pos, tmp, list)
    {
        struct bf_page *pg = bf_list_entry(pos, struct bf_page, dirty);
        bf_list_del(&pg->dirty);
        bf_file *f = pg->fh->file;
        f->ops->stage_drop(f, pg->token); /* I2: no lock held */
        bf_pg_free(pg);
    }
}
