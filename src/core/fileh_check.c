/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: bf_fileh_check, the walk that verifies the invariants
 * of fileh.h that a handle's state shows (those marked [checked]).
 *
 * It reads only, under the ram lock, and reports the first broken rule
 * with its number. It trusts nothing it walks: list walks are bounded by
 * the counts they are checked against, so a corrupted list ends the walk
 * with a report instead of a loop.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/fileh_internal.h"

/* Print "I<n> broken: <what>" for fh; returns -EUCLEAN. */
static int broken(const bf_fileh *fh, unsigned inv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int broken(const bf_fileh *fh, unsigned inv, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "bigfilefs: bf_fileh_check: I%u broken (handle %p): ", inv, (const void *)fh);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -EUCLEAN;
}

/* I17, I19, I22, I26, I27: the handle's scalar state. */
static int check_scalars(const bf_fileh *fh)
{
    if (fh->size > BF_SIZE_MAX || fh->committed_size > BF_SIZE_MAX)
        return broken(fh, 17, "size %" PRIu64 " or committed size %" PRIu64 " past BF_SIZE_MAX",
                      fh->size, fh->committed_size);
    if (fh->min_size > fh->size || fh->min_size > fh->committed_size)
        return broken(fh, 17,
                      "lowest size %" PRIu64 " above the size %" PRIu64
                      " or the committed size %" PRIu64,
                      fh->min_size, fh->size, fh->committed_size);
    if (!fh->writeout_running && fh->cow_held != 0)
        return broken(fh, 19, "%" PRIu64 " copy-on-write buffers held with no writeout",
                      fh->cow_held);
    if (fh->fenced && fh->fence_lo > fh->fence_hi)
        return broken(fh, 22, "fence [%" PRIu64 ", %" PRIu64 "] is empty", fh->fence_lo,
                      fh->fence_hi);
    if (fh->size_base > fh->view || fh->file_base > fh->view)
        return broken(fh, 26,
                      "size base %" PRIu64 " or file base %" PRIu64 " past the view %" PRIu64,
                      fh->size_base, fh->file_base, fh->view);
    if (fh->lw_open
            ? (fh->lw_serial == 0 || fh->lw_serial > fh->view || (fh->lw_nranges && !fh->lw_ranges))
            : (fh->lw_ranges != NULL || fh->lw_nranges != 0))
        return broken(fh, 27, "launder window %s, serial %" PRIu64 ", view %" PRIu64 ", %zu ranges",
                      fh->lw_open ? "open" : "closed", fh->lw_serial, fh->view, fh->lw_nranges);
    return 0;
}

/* I30: whether a partial page misses some unit. */
static bool misses_a_unit(const bf_fileh *fh, const struct bf_page *pg)
{
    for (uint32_t u = 0; u < blk_units(fh); u++)
        if (!unit_valid(pg->valid, u))
            return true;
    return false;
}

/* I8, I10, I11, I14, I15, I16, I24, I25, I29, I30, I31: one page, mapped
 * at block k. */
static int check_page(const bf_fileh *fh, uint64_t k, const struct bf_page *pg)
{
    enum bf_page_state st = pg->state;
    if (pg->blk != k || pg->fh != fh || st < BF_PAGE_LOADING || st > BF_PAGE_SPILLED ||
        !pg->data != (st == BF_PAGE_SPILLED))
        return broken(fh, 8, "page %p at block %" PRIu64 ": blk %" PRIu64 ", state %d, buffer %p",
                      (void *)pg, k, pg->blk, (int)st, pg->data);
    if (bf_list_linked(&pg->lru) != (st == BF_PAGE_LOADED || st == BF_PAGE_DIRTY))
        return broken(fh, 10, "block %" PRIu64 " in state %d %s an LRU", k, (int)st,
                      bf_list_linked(&pg->lru) ? "on" : "not on");
    if (bf_list_linked(&pg->dirty) != (st == BF_PAGE_DIRTY || st == BF_PAGE_SPILLED))
        return broken(fh, 11, "block %" PRIu64 " in state %d %s the dirty list", k, (int)st,
                      bf_list_linked(&pg->dirty) ? "on" : "not on");
    if (pg->storing && ((st != BF_PAGE_DIRTY && st != BF_PAGE_SPILLED) || !fh->writeout_running))
        return broken(fh, 14, "block %" PRIu64 " storing in state %d, writeout %s", k, (int)st,
                      fh->writeout_running ? "running" : "not running");
    if (pg->wpinned && st != BF_PAGE_DIRTY)
        return broken(fh, 14, "block %" PRIu64 " pinned in state %d", k, (int)st);
    if (st != BF_PAGE_LOADING_INVALIDATED && k >= div_ceil_blk(fh, fh->size))
        return broken(fh, 15, "block %" PRIu64 " in state %d past the size %" PRIu64, k, (int)st,
                      fh->size);
    if (st == BF_PAGE_LOADING && k >= zero_from_blk(fh))
        return broken(fh, 16, "block %" PRIu64 " loading past the lowest size %" PRIu64, k,
                      fh->min_size);
    if (pg->serial > fh->view)
        return broken(fh, 24, "block %" PRIu64 " as of serial %" PRIu64 ", past the view %" PRIu64,
                      k, pg->serial, fh->view);
    if (pg->conflict && st != BF_PAGE_DIRTY && st != BF_PAGE_SPILLED)
        return broken(fh, 25, "block %" PRIu64 " conflicting in state %d", k, (int)st);
    if (pg->io > BF_PAGE_IO_FILL || (pg->io != BF_PAGE_IO_NONE && st != BF_PAGE_DIRTY) ||
        ((pg->io == BF_PAGE_IO_SPILL || pg->io == BF_PAGE_IO_UNSPILL) && pg->storing))
        return broken(fh, 29, "block %" PRIu64 " in I/O %d in state %d%s", k, (int)pg->io, (int)st,
                      pg->storing ? ", storing" : "");
    if (pg->valid && (st == BF_PAGE_SPILLED || fh->blksize <= BF_UNIT ||
                      (st != BF_PAGE_LOADING_INVALIDATED && k >= zero_from_blk(fh)) ||
                      ((st == BF_PAGE_LOADED || st == BF_PAGE_DIRTY) && !misses_a_unit(fh, pg))))
        return broken(fh, 30,
                      "block %" PRIu64 " partial in state %d (lowest size %" PRIu64
                      ", block size %u, %s)",
                      k, (int)st, fh->min_size, fh->blksize,
                      misses_a_unit(fh, pg) ? "units missing" : "every unit valid");
    if (pg->ahead && st != BF_PAGE_LOADING && st != BF_PAGE_LOADED)
        return broken(fh, 31, "block %" PRIu64 " ahead in state %d", k, (int)st);
    return 0;
}

/* I8 .. I16, I29, I31 over the pagemap, I11 and I12 over the dirty list. */
static int check_pages(const bf_fileh *fh)
{
    uint64_t n[BF_PAGE_SPILLED + 1] = { 0 }, k, nconflict = 0, nio = 0, nahead = 0;
    const struct bf_page *pg = bf_pagemap_next(&fh->pages, 0, &k);
    while (pg) {
        int r = check_page(fh, k, pg);
        if (r < 0)
            return r;
        n[pg->state]++;
        nconflict += pg->conflict;
        nio += pg->io != BF_PAGE_IO_NONE;
        nahead += pg->ahead;
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
    if (nconflict != fh->nconflict)
        return broken(fh, 25, "counted %" PRIu64 " conflicting blocks, the pages have %" PRIu64,
                      fh->nconflict, nconflict);
    if (nio != fh->nio)
        return broken(fh, 29, "counted %" PRIu64 " pages in I/O, the pages have %" PRIu64, fh->nio,
                      nio);
    if (nahead != fh->nahead)
        return broken(fh, 31, "counted %" PRIu64 " pages ahead, the pages have %" PRIu64,
                      fh->nahead, nahead);
    uint64_t nloading = n[BF_PAGE_LOADING] + n[BF_PAGE_LOADING_INVALIDATED];
    if (fh->nloaded != n[BF_PAGE_LOADED] || fh->ndirty != n[BF_PAGE_DIRTY] ||
        fh->nspilled != n[BF_PAGE_SPILLED] || fh->nloading != nloading)
        return broken(fh, 12,
                      "counted %" PRIu64 " loaded, %" PRIu64 " dirty, %" PRIu64 " spilled, %" PRIu64
                      " loading; the pages are %" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64,
                      fh->nloaded, fh->ndirty, fh->nspilled, fh->nloading, n[BF_PAGE_LOADED],
                      n[BF_PAGE_DIRTY], n[BF_PAGE_SPILLED], nloading);
    uint64_t total = fh->nloaded + fh->ndirty + fh->nspilled + fh->nloading;
    if (fh->pages.count != total)
        return broken(fh, 12, "the pagemap holds %zu pages, counted %" PRIu64, fh->pages.count,
                      total);

    uint64_t len = 0, nd = fh->ndirty + fh->nspilled;
    const struct bf_list *pos;
    for (pos = fh->dirty.next; pos != &fh->dirty && len <= nd; pos = pos->next, len++) {
        const struct bf_page *d = bf_list_entry(pos, struct bf_page, dirty);
        if (d->fh != fh || (d->state != BF_PAGE_DIRTY && d->state != BF_PAGE_SPILLED) ||
            bf_pagemap_get(&fh->pages, d->blk) != d)
            return broken(fh, 11,
                          "dirty list entry %p (block %" PRIu64
                          ", state %d) not a dirty or spilled page of the handle",
                          (const void *)d, d->blk, (int)d->state);
    }
    if (len != nd)
        return broken(fh, 11, "dirty list of %s%" PRIu64 " pages, %" PRIu64 " dirty or spilled",
                      len > nd ? "more than " : "", len, nd);
    return 0;
}

/* Walk an LRU list of the ram (`dirty`: the dirty LRU) for n pages of
 * state `st`. I10. */
static int check_lru(const bf_fileh *fh, const struct bf_list *head, uint64_t n,
                     enum bf_page_state st, const char *what)
{
    const bf_ram *ram = fh->ram;
    uint64_t len = 0;
    const struct bf_list *pos;
    for (pos = head->next; pos != head && len <= n; pos = pos->next, len++) {
        const struct bf_page *pg = bf_list_entry(pos, struct bf_page, lru);
        if (pg->state != st || pg->fh->ram != ram || bf_pagemap_get(&pg->fh->pages, pg->blk) != pg)
            return broken(fh, 10, "%s entry %p (block %" PRIu64 ", state %d) not a page of the ram",
                          what, (const void *)pg, pg->blk, (int)pg->state);
    }
    if (len != n)
        return broken(fh, 10, "%s of %s%" PRIu64 " pages, %" PRIu64 " expected", what,
                      len > n ? "more than " : "", len, n);
    return 0;
}

/* I6, I10, I13, I29, I31: the ram's LRUs and its counters over every
 * handle. */
static int check_ram(const bf_fileh *fh)
{
    const bf_ram *ram = fh->ram;
    uint64_t nh = 0, clean = 0, loading = 0, dirty = 0, spilled = 0, ahead = 0, nloaded = 0,
             ndirty = 0, nio = 0;
    const struct bf_list *pos;
    for (pos = ram->hlist.next; pos != &ram->hlist && nh <= ram->handles; pos = pos->next, nh++) {
        const bf_fileh *h = bf_list_entry(pos, bf_fileh, ram_link);
        if (h->ram != ram)
            return broken(fh, 13, "handle %p on the ram's list has another ram", (const void *)h);
        clean += h->nloaded * h->blksize;
        loading += h->nloading * h->blksize;
        dirty += (h->ndirty + h->cow_held) * h->blksize;
        spilled += h->nspilled * h->blksize;
        ahead += h->nahead * h->blksize;
        nloaded += h->nloaded;
        ndirty += h->ndirty;
        nio += h->nio;
    }
    if (nh != ram->handles)
        return broken(fh, 13, "the ram counts %" PRIu64 " handles, its list holds %s%" PRIu64,
                      ram->handles, nh > ram->handles ? "more than " : "", nh);
    if (ram->clean_bytes != clean || ram->loading_bytes != loading || ram->dirty_bytes != dirty ||
        ram->spilled_bytes != spilled)
        return broken(fh, 13,
                      "the ram counts %" PRIu64 " clean, %" PRIu64 " loading, %" PRIu64
                      " dirty, %" PRIu64 " spilled bytes; its handles %" PRIu64 ", %" PRIu64
                      ", %" PRIu64 ", %" PRIu64,
                      ram->clean_bytes, ram->loading_bytes, ram->dirty_bytes, ram->spilled_bytes,
                      clean, loading, dirty, spilled);
    if (ram->ahead_bytes != ahead)
        return broken(fh, 31, "the ram counts %" PRIu64 " bytes ahead, its handles %" PRIu64,
                      ram->ahead_bytes, ahead);
    if (ram->nspilling > nio)
        return broken(fh, 29,
                      "the ram counts %" PRIu64 " pages spilling, its handles %" PRIu64
                      " pages in I/O",
                      ram->nspilling, nio);
    if (ram->clean_bytes > ram->budget)
        return broken(fh, 6, "%" PRIu64 " clean bytes over the budget of %zu", ram->clean_bytes,
                      ram->budget);
    int r = check_lru(fh, &ram->lru, nloaded, BF_PAGE_LOADED, "LRU");
    return r < 0 ? r : check_lru(fh, &ram->dlru, ndirty, BF_PAGE_DIRTY, "dirty LRU");
}

int bf_fileh_check_locked(bf_fileh *fh)
{
    bf_ram_assert_locked(fh->ram); /* I1 */
    int r = check_scalars(fh);
    if (r == 0)
        r = check_pages(fh);
    if (r == 0)
        r = check_ram(fh);
    return r;
}

int bf_fileh_check(bf_fileh *fh)
{
    bf_ram_lock(fh->ram);
    int r = bf_fileh_check_locked(fh);
    bf_ram_unlock(fh->ram);
    return r;
}
