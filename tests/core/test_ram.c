/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: block buffers (blockbuf.h) as a ram uses them:
 * the recycle list of small buffers stays within its bounds and is emptied
 * by bf_ram_free; buffers of 2 MiB multiples are aligned, huge-page advised
 * and kept on a bounded huge list, handed out un-zeroed only to a caller
 * that overwrites them; every other buffer handed out reads as zeros. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/blockbuf.h"
#include "corehelp.h"

/* Whether [p, p + size) is mapped in this process (mincore fails with
 * ENOMEM on an unmapped page). */
static bool is_mapped(void *p, size_t size)
{
    size_t pages = size / 4096;
    unsigned char *vec = malloc(pages + 1);
    cr_assert_not_null(vec);
    int r = mincore(p, size, vec);
    int err = errno;
    free(vec);
    cr_assert(r == 0 || err == ENOMEM, "mincore: %s", strerror(err));
    return r == 0;
}

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void expect_within_bounds(bf_ram *ram)
{
    struct bf_ram_stats st = rstat_of(ram);
    cr_assert_leq(st.recycled_buffers, BF_BLOCKBUF_RECYCLE_MAX_BUFFERS);
    cr_assert_leq(st.recycled_bytes, BF_BLOCKBUF_RECYCLE_MAX_BYTES);
}

/* Many small buffers of several sizes allocated, written and freed in
 * waves: the list never holds more than its bounds, every buffer handed out
 * is zero-filled (recycled ones included), and bf_ram_free unmaps them all. */
Test(ram, recycle_list_is_bounded_and_freed_with_the_ram, .timeout = 20)
{
    static const size_t sizes[] = { 4096, 65536, 512 << 10, 1 << 20 };
    enum {
        WAVE = 24
    };
    bf_ram *ram;
    cr_assert_eq(bf_ram_new(1 << 20, &ram), 0);
    struct bf_ram_stats st = rstat_of(ram);
    cr_assert_eq(st.recycled_bytes, 0);
    cr_assert_eq(st.recycled_buffers, 0);

    void *kept[BF_BLOCKBUF_RECYCLE_MAX_BUFFERS];
    size_t kept_size[BF_BLOCKBUF_RECYCLE_MAX_BUFFERS];
    unsigned nkept = 0;
    uint64_t max_bytes = 0, max_bufs = 0;
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            void *bufs[WAVE];
            for (unsigned i = 0; i < WAVE; i++) {
                bufs[i] = bf_blockbuf_alloc(sizes[s]);
                cr_assert_not_null(bufs[i]);
                cr_assert(all_zero(bufs[i], sizes[s]), "a buffer of %zu is not zeroed", sizes[s]);
                memset(bufs[i], 0xa5, sizes[s]);
                expect_within_bounds(ram);
            }
            for (unsigned i = 0; i < WAVE; i++) {
                bf_blockbuf_free(bufs[i], sizes[s]);
                expect_within_bounds(ram);
            }
            st = rstat_of(ram);
            if (sizes[s] == 4096 || sizes[s] == 1 << 20) {
                /* The newest buffers replace older ones of any size: the
                 * list is all of the size in use, up to its first bound. */
                uint64_t n = sizes[s] == 4096 ? BF_BLOCKBUF_RECYCLE_MAX_BUFFERS
                                              : BF_BLOCKBUF_RECYCLE_MAX_BYTES / sizes[s];
                cr_assert_eq(st.recycled_buffers, n);
                cr_assert_eq(st.recycled_bytes, n * sizes[s]);
            }
            if (st.recycled_bytes > max_bytes)
                max_bytes = st.recycled_bytes;
            if (st.recycled_buffers > max_bufs)
                max_bufs = st.recycled_buffers;
        }
    }
    /* 1 MiB buffers fill the byte bound, 4 KiB ones the count bound: both
     * were reached, so the list does recycle. */
    cr_assert_eq(max_bytes, BF_BLOCKBUF_RECYCLE_MAX_BYTES);
    cr_assert_eq(max_bufs, BF_BLOCKBUF_RECYCLE_MAX_BUFFERS);

    /* What is on the list now: take it all back (the same addresses come
     * back, zeroed), put it back, then free the ram. */
    st = rstat_of(ram);
    cr_assert_gt(st.recycled_buffers, 0);
    size_t last = sizes[sizeof(sizes) / sizeof(sizes[0]) - 1];
    while (rstat_of(ram).recycled_buffers > 0 && nkept < BF_BLOCKBUF_RECYCLE_MAX_BUFFERS) {
        kept[nkept] = bf_blockbuf_alloc(last);
        kept_size[nkept] = last;
        cr_assert(all_zero(kept[nkept], last));
        nkept++;
    }
    cr_assert_eq(rstat_of(ram).recycled_buffers, 0, "buffers of another size on the list");
    for (unsigned i = 0; i < nkept; i++) {
        memset(kept[i], 1, kept_size[i]);
        bf_blockbuf_free(kept[i], kept_size[i]);
        cr_assert(is_mapped(kept[i], kept_size[i]), "a recycled buffer was unmapped");
    }
    cr_assert_eq(rstat_of(ram).recycled_bytes, nkept * last);

    cr_assert_eq(bf_ram_free(ram), 0);
    for (unsigned i = 0; i < nkept; i++)
        cr_assert(!is_mapped(kept[i], kept_size[i]), "bf_ram_free left a recycled buffer mapped");

    /* With no ram, nothing is kept. */
    void *p = bf_blockbuf_alloc(4096);
    cr_assert_not_null(p);
    bf_blockbuf_free(p, 4096);
    cr_assert(!is_mapped(p, 4096), "a buffer freed with no ram was kept");
    cr_assert_eq(bf_ram_new(0, &ram), 0);
    st = rstat_of(ram);
    cr_assert_eq(st.recycled_bytes, 0);
    cr_assert_eq(st.recycled_buffers, 0);
    cr_assert_eq(bf_ram_free(ram), 0);
}

/* Whether the VMA holding p has the "hg" (MADV_HUGEPAGE) flag in smaps. */
static bool vma_has_hugepage_advice(void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    cr_assert_not_null(f);
    char line[512];
    bool in = false, hg = false, found = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            found = true;
            hg = strstr(line, " hg") != NULL;
        }
    }
    fclose(f);
    cr_assert(found, "no VMA for %p in smaps", p);
    return hg;
}

/* 2 MiB and 8 MiB buffers: aligned to 2 MiB, zeroed, advised MADV_HUGEPAGE
 * (when the kernel has THP); freed, a 2 MiB one is kept on the huge list
 * (within its bounds), an 8 MiB one (over the byte bound) unmapped. */
Test(ram, huge_buffers_are_aligned_advised_and_kept_bounded, .timeout = 20)
{
    bf_ram *ram;
    cr_assert_eq(bf_ram_new(1 << 20, &ram), 0);
    bool thp = access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0;
    static const size_t sizes[] = { 2 << 20, 8 << 20 };
    for (unsigned round = 0; round < 4; round++) {
        for (unsigned s = 0; s < 2; s++) {
            size_t size = sizes[s];
            unsigned char *p = bf_blockbuf_alloc(size);
            cr_assert_not_null(p);
            cr_assert_eq((uintptr_t)p % BF_BLOCKBUF_HUGE_SIZE, 0, "%p not 2 MiB-aligned",
                         (void *)p);
            cr_assert(all_zero(p, size), "a zeroing caller got a dirty %zu buffer", size);
            if (thp)
                cr_assert(vma_has_hugepage_advice(p), "no MADV_HUGEPAGE on %p", (void *)p);
            memset(p, 0x5a, size);
            bf_blockbuf_free(p, size);
            bool kept = size <= BF_BLOCKBUF_RECYCLE_HUGE_MAX_BYTES;
            cr_assert_eq(is_mapped(p, size), kept, "a freed %zu buffer %s", size,
                         kept ? "was not kept" : "stayed mapped");
            cr_assert_leq(rstat_of(ram).recycled_bytes, BF_BLOCKBUF_RECYCLE_HUGE_MAX_BYTES);
        }
    }
    cr_assert_eq(bf_ram_free(ram), 0);
}

/* The huge list: a freed 2 MiB buffer comes back, as it was (not zeroed),
 * only through bf_blockbuf_alloc_overwrite; bf_blockbuf_alloc hands it
 * out zeroed; the list never holds more than its bounds, and bf_ram_free
 * unmaps what it holds. */
Test(ram, huge_recycled_unzeroed_only_to_overwriters, .timeout = 20)
{
    enum {
        N = BF_BLOCKBUF_RECYCLE_HUGE_MAX_BUFFERS + 3
    };
    const size_t size = BF_BLOCKBUF_HUGE_SIZE;
    bf_ram *ram;
    cr_assert_eq(bf_ram_new(1 << 20, &ram), 0);

    /* Bounded: free N, the list keeps the newest within its bounds and
     * unmaps the rest. */
    unsigned char *b[N];
    for (unsigned i = 0; i < N; i++) {
        b[i] = bf_blockbuf_alloc_overwrite(size);
        cr_assert_not_null(b[i]);
        memset(b[i], 0x10 + i, size);
    }
    for (unsigned i = 0; i < N; i++) {
        bf_blockbuf_free(b[i], size);
        struct bf_ram_stats st = rstat_of(ram);
        cr_assert_leq(st.recycled_buffers, BF_BLOCKBUF_RECYCLE_HUGE_MAX_BUFFERS);
        cr_assert_leq(st.recycled_bytes, BF_BLOCKBUF_RECYCLE_HUGE_MAX_BYTES);
    }
    unsigned nkeep = BF_BLOCKBUF_RECYCLE_HUGE_MAX_BUFFERS;
    if (nkeep > BF_BLOCKBUF_RECYCLE_HUGE_MAX_BYTES / size)
        nkeep = BF_BLOCKBUF_RECYCLE_HUGE_MAX_BYTES / size;
    cr_assert_eq(rstat_of(ram).recycled_buffers, nkeep);
    for (unsigned i = 0; i < N; i++)
        cr_assert_eq(is_mapped(b[i], size), i >= N - nkeep, "buffer %u", i);

    /* An overwriting caller gets the newest back as it was left. */
    unsigned char *p = bf_blockbuf_alloc_overwrite(size);
    cr_assert_eq(p, b[N - 1], "the newest freed buffer was not reused");
    cr_assert_eq(p[0], 0x10 + N - 1);
    cr_assert_eq(p[size - 1], 0x10 + N - 1);
    cr_assert_eq(rstat_of(ram).recycled_buffers, nkeep - 1);

    /* A zeroing caller may get a recycled buffer too, but zeroed. */
    unsigned char *q = bf_blockbuf_alloc(size);
    cr_assert_not_null(q);
    cr_assert(all_zero(q, size), "a zeroing caller got a recycled buffer's content");
    cr_assert_eq(q, b[N - 2], "the recycled buffer was not taken");
    cr_assert_eq(rstat_of(ram).recycled_buffers, 0);

    /* Empty list: an overwriting caller gets a fresh (zero) mapping. */
    unsigned char *r = bf_blockbuf_alloc_overwrite(size);
    cr_assert_not_null(r);
    cr_assert(all_zero(r, size));
    memset(q, 0x77, size);
    bf_blockbuf_free(r, size);
    bf_blockbuf_free(q, size);
    bf_blockbuf_free(p, size);
    cr_assert_eq(rstat_of(ram).recycled_buffers, nkeep);
    cr_assert(!is_mapped(r, size), "the oldest was not unmapped to make room");

    cr_assert_eq(bf_ram_free(ram), 0);
    cr_assert(!is_mapped(p, size) && !is_mapped(q, size), "bf_ram_free left huge buffers mapped");
    /* With no ram, nothing is kept. */
    void *z = bf_blockbuf_alloc_overwrite(size);
    cr_assert_not_null(z);
    bf_blockbuf_free(z, size);
    cr_assert(!is_mapped(z, size), "a huge buffer freed with no ram was kept");
}

/* Through a handle with 2 MiB blocks and a budget of one block: loads,
 * whole-block and partial writes reuse recycled (dirty) buffers, and every
 * block still reads right: stored blocks their pattern, holes zeros, a
 * partially written hole zeros around the written byte. */
Test(ram, huge_recycled_buffers_never_leak_into_reads, .timeout = 30)
{
    const size_t bs = BF_BLOCKBUF_HUGE_SIZE;
    struct mockfile *m = mock_new(bs, 12 * bs);
    for (uint64_t b = 0; b < 6; b++)
        mock_set_block(m, b, 1);
    bf_ram *ram;
    bf_fileh *fh;
    cr_assert_eq(bf_ram_new(bs, &ram), 0);
    cr_assert_eq(bf_fileh_open(mock_file(m), ram, &fh), 0);
    unsigned char *got = malloc(bs), *want = malloc(bs), *zero = calloc(1, bs);
    cr_assert(got && want && zero);
    for (unsigned round = 0; round < 2; round++) {
        for (uint64_t b = 0; b < 12; b++) {
            cr_assert_eq(bf_fileh_read(fh, got, bs, b * bs), (ssize_t)bs);
            if (b < 6)
                mock_pattern(want, bs, 1, b * bs);
            cr_assert(memcmp(got, b < 6 ? want : zero, bs) == 0, "block %llu",
                      (unsigned long long)b);
            cr_assert_leq(rstat_of(ram).recycled_bytes, BF_BLOCKBUF_RECYCLE_HUGE_MAX_BYTES);
        }
    }
    cr_assert_gt(rstat_of(ram).recycled_buffers, 0, "no 2 MiB buffer was recycled");
    /* A whole-block write into a hole block: its new page may be a recycled
     * buffer; it reads back as written. */
    memset(want, 0xcd, bs);
    cr_assert_eq(bf_fileh_write(fh, want, bs, 8 * bs), (ssize_t)bs);
    cr_assert_eq(bf_fileh_read(fh, got, bs, 8 * bs), (ssize_t)bs);
    cr_assert(memcmp(got, want, bs) == 0);
    /* Read some blocks to refill the list, then a one-byte write into a hole
     * past the stored blocks: the rest of that block must read zeros. */
    for (uint64_t b = 0; b < 4; b++)
        cr_assert_eq(bf_fileh_read(fh, got, bs, b * bs), (ssize_t)bs);
    unsigned char byte = 0xab;
    cr_assert_eq(bf_fileh_write(fh, &byte, 1, 10 * bs + 100), 1);
    cr_assert_eq(bf_fileh_read(fh, got, bs, 10 * bs), (ssize_t)bs);
    for (size_t i = 0; i < bs; i++)
        cr_assert_eq(got[i], i == 100 ? 0xab : 0, "byte %zu of a partially written hole", i);
    free(got);
    free(want);
    free(zero);
    close_checked(fh);
    cr_assert_eq(bf_ram_free(ram), 0);
    mock_free(m);
}

/* Through a handle with a budget of one block: a long sequential read loads
 * and drops a block per step, the dropped buffers are reused (bounded), and
 * every block reads right (a recycled buffer carries nothing over). */
Test(ram, handle_reads_reuse_buffers_within_bounds, .timeout = 20)
{
    struct env e;
    env_open(&e, 256 * BS, 200, BS);
    for (uint64_t b = 0; b < 256; b++) {
        expect_block(e.fh, b, b < 200 ? 1 : 0);
        expect_within_bounds(e.ram);
    }
    struct bf_ram_stats st = rstat_of(e.ram);
    cr_assert_gt(st.evictions, 100);
    cr_assert_gt(st.recycled_buffers, 0);
    env_close(&e);
}

/* The allocator's held and deferred buffers. */
static struct bf_blockbuf_stats bstat(void)
{
    struct bf_blockbuf_stats st;
    bf_blockbuf_stat(&st);
    return st;
}

/* A held buffer freed stays mapped and as it was, goes to nobody, and is
 * freed by its last release: recycled while there is a user, unmapped
 * when there is none. */
Test(ram, held_buffers_are_freed_at_their_last_release, .timeout = 20)
{
    bf_ram *ram;
    size_t size = BF_BLOCKBUF_HUGE_SIZE;
    cr_assert_eq(bf_ram_new(1 << 20, &ram), 0);
    unsigned char *p = bf_blockbuf_alloc(size);
    cr_assert_not_null(p);
    memset(p, 0x5a, size);
    cr_assert(bf_blockbuf_hold(p, size));
    cr_assert(bf_blockbuf_hold(p, size));
    cr_assert_eq(bstat().held_buffers, 1, "a buffer held twice is one entry");
    bf_blockbuf_free(p, size);
    cr_assert_eq(bstat().deferred_bytes, size);
    cr_assert_eq(bstat().recycled_buffers, 0, "a held buffer went to the recycle list");
    unsigned char *q = bf_blockbuf_alloc_overwrite(size);
    cr_assert_not_null(q);
    cr_assert(q != p, "a held buffer was handed out again");
    memset(q, 0xa5, size);
    bf_blockbuf_release(p);
    cr_assert(is_mapped(p, size));
    cr_assert_eq(p[0], 0x5a);
    cr_assert_eq(p[size - 1], 0x5a);
    bf_blockbuf_release(p);
    struct bf_blockbuf_stats st = bstat();
    cr_assert_eq(st.held_buffers, 0);
    cr_assert_eq(st.deferred_bytes, 0);
    cr_assert_eq(st.recycled_buffers, 1, "the last release did not free the buffer");
    /* Held, released without a free: nothing happens to it. */
    cr_assert(bf_blockbuf_hold(q, size));
    bf_blockbuf_release(q);
    cr_assert_eq(bstat().recycled_buffers, 1);
    cr_assert_eq(q[0], 0xa5);
    bf_blockbuf_free(q, size);
    cr_assert_eq(bf_ram_free(ram), 0);

    /* No user: the last release unmaps it. */
    p = bf_blockbuf_alloc(size);
    cr_assert_not_null(p);
    cr_assert(bf_blockbuf_hold(p, size));
    bf_blockbuf_free(p, size);
    cr_assert(is_mapped(p, size));
    bf_blockbuf_release(p);
    cr_assert(!is_mapped(p, size), "the deferred free left the buffer mapped");
}

/* At most BF_BLOCKBUF_HOLDS_MAX buffers, of BF_BLOCKBUF_HOLDS_MAX_BYTES
 * in all, are held: one more is refused, and room made by a release is
 * taken again. */
Test(ram, holds_are_bounded, .timeout = 20)
{
    void *bufs[BF_BLOCKBUF_HOLDS_MAX + 1];
    for (unsigned i = 0; i <= BF_BLOCKBUF_HOLDS_MAX; i++)
        cr_assert_not_null(bufs[i] = bf_blockbuf_alloc(4096));
    for (unsigned i = 0; i < BF_BLOCKBUF_HOLDS_MAX; i++)
        cr_assert(bf_blockbuf_hold(bufs[i], 4096));
    cr_assert(!bf_blockbuf_hold(bufs[BF_BLOCKBUF_HOLDS_MAX], 4096), "a hold past the bound");
    cr_assert(bf_blockbuf_hold(bufs[0], 4096), "a second hold of a held buffer needs no slot");
    bf_blockbuf_release(bufs[0]);
    bf_blockbuf_release(bufs[0]);
    cr_assert(bf_blockbuf_hold(bufs[BF_BLOCKBUF_HOLDS_MAX], 4096));
    cr_assert_eq(bstat().held_buffers, BF_BLOCKBUF_HOLDS_MAX);
    for (unsigned i = 1; i <= BF_BLOCKBUF_HOLDS_MAX; i++) {
        bf_blockbuf_free(bufs[i], 4096);
        bf_blockbuf_release(bufs[i]);
    }
    bf_blockbuf_free(bufs[0], 4096);
    cr_assert_eq(bstat().held_buffers, 0);
    cr_assert_eq(bstat().deferred_bytes, 0);

    /* And at most BF_BLOCKBUF_HOLDS_MAX_BYTES in all. */
    size_t half = BF_BLOCKBUF_HOLDS_MAX_BYTES / 2;
    void *big[3];
    for (unsigned i = 0; i < 3; i++)
        cr_assert_not_null(big[i] = bf_blockbuf_alloc(half));
    cr_assert(bf_blockbuf_hold(big[0], half));
    cr_assert(bf_blockbuf_hold(big[1], half));
    cr_assert(!bf_blockbuf_hold(big[2], half), "a hold past the byte bound");
    bf_blockbuf_release(big[1]);
    cr_assert(bf_blockbuf_hold(big[2], half));
    bf_blockbuf_release(big[0]);
    bf_blockbuf_release(big[2]);
    for (unsigned i = 0; i < 3; i++)
        bf_blockbuf_free(big[i], half);
    cr_assert_eq(bstat().held_buffers, 0);
}
