/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: SEEK_DATA, SEEK_HOLE and allocated bytes of a handle
 * (fileh.h, bf_fileh_seek_data, bf_fileh_allocated_bytes).
 *
 * What is data combines the handle's pages (fileh_internal.h) with what
 * the backend stores (bf_file_ops.next_stored, stored_blocks). The
 * backend is asked with the ram lock released; its answer is used only if
 * the handle's content_gen did not move meanwhile (a writeout's commit or
 * an invalidation may have changed what is stored), else it is asked
 * again, up to SEEK_ROUNDS times. allocated_bytes caches the backend's
 * count in the handle (nstored) until content_gen moves.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* SEEK_DATA, SEEK_HOLE */
#endif
#include <errno.h>
#include <unistd.h>

#include "core/fileh_internal.h"

/* A backend answer given while the lock was released is thrown away when
 * content_gen moved meanwhile; after this many rounds the seek gives the
 * conservative answer (data) instead of trying again. */
#define SEEK_ROUNDS 8

/* Whether the cached page pg is data by itself: DIRTY or SPILLED, or LOADED at or
 * past zf (only a MARKSTORED-only writeout leaves such a page: its content
 * is not in the backend). A LOADED page below zf holds the committed
 * content: the backend says whether that is stored. (Taking every LOADED
 * page as data would be allowed, but the kernel's readahead loads the hole
 * after each data block a reader such as cp reads, which then would become
 * data too, and so on to the end of the file.) */
static bool page_is_data(const struct bf_page *pg, uint64_t zf)
{
    return pg && (pg->state == BF_PAGE_DIRTY || pg->state == BF_PAGE_SPILLED ||
                  (pg->state == BF_PAGE_LOADED && pg->blk >= zf));
}

/* Smallest block in [from, end) cached as data (page_is_data); UINT64_MAX
 * if none. Lock held. */
static uint64_t next_cached_data(bf_fileh *fh, uint64_t from, uint64_t end, uint64_t zf)
{
    bf_ram_assert_locked(fh->ram); /* I1 */
    uint64_t k;
    struct bf_page *pg = from < end ? bf_pagemap_next(&fh->pages, from, &k) : NULL;
    while (pg && k < end) {
        if (page_is_data(pg, zf))
            return k;
        pg = k == UINT64_MAX ? NULL : bf_pagemap_next(&fh->pages, k + 1, &k);
    }
    return UINT64_MAX;
}

/* The blocks of the current size (*nblk), and the first block that reads
 * as zeros when not cached (*zf, at most *nblk). Lock held. */
static void seek_bounds(const bf_fileh *fh, uint64_t *nblk, uint64_t *zf)
{
    *nblk = div_ceil_blk(fh, fh->size);
    *zf = zero_from_blk(fh);
    if (*zf > *nblk)
        *zf = *nblk;
}

/* SEEK_DATA. Lock held on entry and return, released around the backend
 * call. Block b is data when page_is_data, or when b < zero_from_blk and
 * the backend stores it; blocks at or past the end are holes. */
static int seek_data_locked(bf_fileh *fh, uint64_t off, uint64_t *result)
{
    bf_ram_assert_locked(fh->ram); /* I1 */
    const struct bf_file_ops *ops = fh->file->ops;
    uint64_t blk = off >> fh->blkbits;
    uint64_t stored = UINT64_MAX; /* smallest stored block >= blk, as known */
    bool known = false;
    for (unsigned round = 0;; round++) {
        if (off >= fh->size)
            return -ENXIO;
        uint64_t nblk, zf;
        seek_bounds(fh, &nblk, &zf);
        uint64_t c = next_cached_data(fh, blk, nblk, zf);
        if (!known && blk < zf && blk < c) {
            /* The backend may know of data before c. */
            if (!ops->next_stored || round >= SEEK_ROUNDS) {
                stored = blk; /* conservative: data */
                known = true;
                continue;
            }
            uint64_t gen = fh->content_gen, b = UINT64_MAX;
            bf_ram_unlock(fh->ram); /* I2 */
            int r = ops->next_stored(fh->file, blk, &b);
            bf_ram_lock(fh->ram);
            if (r < 0 && r != -ENXIO) {
                fh->st.errors++;
                return r;
            }
            if (gen != fh->content_gen)
                continue; /* stale: ask again (I21) */
            stored = r == 0 ? b : UINT64_MAX;
            known = true;
            continue; /* the state may have changed: look again */
        }
        uint64_t d = c;
        if (known && stored < zf && stored < d)
            d = stored;
        if (d >= nblk)
            return -ENXIO;
        uint64_t pos = d << fh->blkbits;
        *result = pos > off ? pos : off;
        return 0;
    }
}

/* SEEK_HOLE, same rules. Lock held on entry and return, released around
 * backend calls. The backend's answers are kept as "blocks [ks, ke) are
 * stored, and ke is not if kunstored". */
static int seek_hole_locked(bf_fileh *fh, uint64_t off, uint64_t *result)
{
    bf_ram_assert_locked(fh->ram); /* I1 */
    const struct bf_file_ops *ops = fh->file->ops;
    uint64_t x = off >> fh->blkbits;
    uint64_t ks = 0, ke = 0;
    bool kunstored = false;
    unsigned round = 0;
    for (;;) {
        if (off >= fh->size)
            return -ENXIO;
        uint64_t nblk, zf;
        seek_bounds(fh, &nblk, &zf);
        /* Look at blocks from x on until a hole or a question for the
         * backend. */
        bool ask = false;
        while (x < nblk) {
            if (page_is_data(bf_pagemap_get(&fh->pages, x), zf)) {
                x++;
                continue;
            }
            if (x >= zf)
                break; /* reads as zeros: a hole */
            if (x >= ks && x < ke) {
                x = ke < zf ? ke : zf; /* stored run */
                continue;
            }
            if (x == ke && kunstored)
                break; /* not stored: a hole */
            ask = true;
            break;
        }
        if (x >= nblk) {
            *result = fh->size; /* the implicit hole at the end */
            return 0;
        }
        if (!ask) {
            uint64_t pos = x << fh->blkbits;
            *result = pos > off ? pos : off;
            return 0;
        }
        if (!ops->next_stored || round >= SEEK_ROUNDS) {
            /* Conservative: every block below zf is data. */
            ks = x;
            ke = zf;
            kunstored = false;
            continue;
        }
        /* Walk the stored run that starts at x, lock released. */
        uint64_t gen = fh->content_gen, e = x;
        bool unstored = false;
        int r = 0;
        bf_ram_unlock(fh->ram); /* I2 */
        while (e < zf) {
            uint64_t b;
            r = ops->next_stored(fh->file, e, &b);
            if (r == -ENXIO || (r == 0 && b != e)) {
                r = 0;
                unstored = true;
                break;
            }
            if (r < 0)
                break;
            e++;
        }
        bf_ram_lock(fh->ram);
        if (r < 0) {
            fh->st.errors++;
            return r;
        }
        if (gen != fh->content_gen) { /* stale (I21) */
            round++;
            ks = ke = 0; /* stale: forget it */
            kunstored = false;
            continue;
        }
        ks = x;
        ke = e;
        kunstored = unstored;
    }
}

int bf_fileh_seek_data(bf_fileh *fh, uint64_t off, int whence, uint64_t *result)
{
    if (whence != SEEK_DATA && whence != SEEK_HOLE)
        return -EINVAL;
    bf_ram_lock(fh->ram);
    int r = whence == SEEK_DATA ? seek_data_locked(fh, off, result)
                                : seek_hole_locked(fh, off, result);
    bf_ram_unlock(fh->ram);
    return r;
}

int bf_fileh_allocated_bytes(bf_fileh *fh, uint64_t *bytes)
{
    const struct bf_file_ops *ops = fh->file->ops;
    bf_ram_lock(fh->ram);
    uint64_t nstored = UINT64_MAX; /* no count: as if all stored */
    if (fh->nstored_known) {
        nstored = fh->nstored;
    } else if (ops->stored_blocks) {
        uint64_t gen = fh->content_gen, n = 0;
        bf_ram_unlock(fh->ram); /* I2 */
        int r = ops->stored_blocks(fh->file, &n);
        bf_ram_lock(fh->ram);
        if (r < 0) {
            fh->st.errors++;
            bf_ram_unlock(fh->ram);
            return r;
        }
        nstored = n;
        if (gen == fh->content_gen) { /* still the current content: keep it (I21) */
            fh->nstored = n;
            fh->nstored_known = true;
        }
    }
    /* Stored blocks count only below the lowest size (past it the file
     * reads as zeros); dirty blocks are counted whether stored or not. */
    uint64_t zf = zero_from_blk(fh);
    uint64_t nblk = div_ceil_blk(fh, fh->size);
    uint64_t n = nstored < zf ? nstored : zf;
    uint64_t nd = fh->ndirty + fh->nspilled;
    n = n + nd < n ? UINT64_MAX : n + nd;
    if (n > nblk)
        n = nblk;
    *bytes = n << fh->blkbits;
    bf_ram_unlock(fh->ram);
    return 0;
}
