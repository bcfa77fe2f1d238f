/* bigfilefs — tests/core: block buffers of the ram (ram.h, ram_internal.h):
 * the recycle list of small buffers stays within its bounds and is emptied
 * by bf_ram_free; buffers of 2 MiB multiples are aligned, huge-page advised
 * and never kept; every buffer handed out reads as zeros. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/ram_internal.h"
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
    cr_assert_leq(st.recycled_buffers, BF_RAM_RECYCLE_MAX_BUFFERS);
    cr_assert_leq(st.recycled_bytes, BF_RAM_RECYCLE_MAX_BYTES);
}

/* Many small buffers of several sizes allocated, written and freed in
 * waves: the list never holds more than its bounds, every buffer handed out
 * is zero-filled (recycled ones included), and bf_ram_free unmaps them all. */
Test(ram, recycle_list_is_bounded_and_freed_with_the_ram, .timeout = 20)
{
    static const size_t sizes[] = { 4096, 65536, 512 << 10, 1 << 20 };
    enum { WAVE = 24 };
    bf_ram *ram;
    cr_assert_eq(bf_ram_new(1 << 20, &ram), 0);
    struct bf_ram_stats st = rstat_of(ram);
    cr_assert_eq(st.recycled_bytes, 0);
    cr_assert_eq(st.recycled_buffers, 0);

    void *kept[BF_RAM_RECYCLE_MAX_BUFFERS];
    size_t kept_size[BF_RAM_RECYCLE_MAX_BUFFERS];
    unsigned nkept = 0;
    uint64_t max_bytes = 0, max_bufs = 0;
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            void *bufs[WAVE];
            for (unsigned i = 0; i < WAVE; i++) {
                bufs[i] = bf_ram_block_alloc(sizes[s]);
                cr_assert_not_null(bufs[i]);
                cr_assert(all_zero(bufs[i], sizes[s]), "a buffer of %zu is not zeroed", sizes[s]);
                memset(bufs[i], 0xa5, sizes[s]);
                expect_within_bounds(ram);
            }
            for (unsigned i = 0; i < WAVE; i++) {
                bf_ram_block_free(bufs[i], sizes[s]);
                expect_within_bounds(ram);
            }
            st = rstat_of(ram);
            if (sizes[s] == 4096 || sizes[s] == 1 << 20) {
                /* The newest buffers replace older ones of any size: the
                 * list is all of the size in use, up to its first bound. */
                uint64_t n = sizes[s] == 4096 ? BF_RAM_RECYCLE_MAX_BUFFERS
                                              : BF_RAM_RECYCLE_MAX_BYTES / sizes[s];
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
    cr_assert_eq(max_bytes, BF_RAM_RECYCLE_MAX_BYTES);
    cr_assert_eq(max_bufs, BF_RAM_RECYCLE_MAX_BUFFERS);

    /* What is on the list now: take it all back (the same addresses come
     * back, zeroed), put it back, then free the ram. */
    st = rstat_of(ram);
    cr_assert_gt(st.recycled_buffers, 0);
    size_t last = sizes[sizeof(sizes) / sizeof(sizes[0]) - 1];
    while (rstat_of(ram).recycled_buffers > 0 && nkept < BF_RAM_RECYCLE_MAX_BUFFERS) {
        kept[nkept] = bf_ram_block_alloc(last);
        kept_size[nkept] = last;
        cr_assert(all_zero(kept[nkept], last));
        nkept++;
    }
    cr_assert_eq(rstat_of(ram).recycled_buffers, 0, "buffers of another size on the list");
    for (unsigned i = 0; i < nkept; i++) {
        memset(kept[i], 1, kept_size[i]);
        bf_ram_block_free(kept[i], kept_size[i]);
        cr_assert(is_mapped(kept[i], kept_size[i]), "a recycled buffer was unmapped");
    }
    cr_assert_eq(rstat_of(ram).recycled_bytes, nkept * last);

    cr_assert_eq(bf_ram_free(ram), 0);
    for (unsigned i = 0; i < nkept; i++)
        cr_assert(!is_mapped(kept[i], kept_size[i]), "bf_ram_free left a recycled buffer mapped");

    /* With no ram, nothing is kept. */
    void *p = bf_ram_block_alloc(4096);
    cr_assert_not_null(p);
    bf_ram_block_free(p, 4096);
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
 * (when the kernel has THP), and unmapped at once when freed. */
Test(ram, huge_buffers_are_aligned_advised_and_never_kept, .timeout = 20)
{
    bf_ram *ram;
    cr_assert_eq(bf_ram_new(1 << 20, &ram), 0);
    bool thp = access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0;
    static const size_t sizes[] = { 2 << 20, 8 << 20 };
    for (unsigned round = 0; round < 4; round++) {
        for (unsigned s = 0; s < 2; s++) {
            size_t size = sizes[s];
            unsigned char *p = bf_ram_block_alloc(size);
            cr_assert_not_null(p);
            cr_assert_eq((uintptr_t)p % BF_RAM_HUGE_SIZE, 0, "%p not 2 MiB-aligned", (void *)p);
            cr_assert(all_zero(p, size));
            if (thp)
                cr_assert(vma_has_hugepage_advice(p), "no MADV_HUGEPAGE on %p", (void *)p);
            memset(p, 0x5a, size);
            bf_ram_block_free(p, size);
            cr_assert(!is_mapped(p, size), "a freed huge buffer stayed mapped");
            cr_assert_eq(rstat_of(ram).recycled_bytes, 0);
        }
    }
    cr_assert_eq(bf_ram_free(ram), 0);
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
