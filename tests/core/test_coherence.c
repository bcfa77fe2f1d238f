/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: two handles on one store as two mounts
 * (fileh.h, "Serials"; docs/COHERENCE.md): snapshot views, another mount's
 * commit applied, conflicts refused and overwritten, the launder window. */
#include <pthread.h>

#include "corehelp.h"

/* Two mounts of one file: A and B, each with its own ram and bf_file on a
 * shared mock store. */
struct two {
    struct mockfile *m;
    bf_ram *ra, *rb;
    bf_fileh *a, *b;
};

static void two_open(struct two *t, uint64_t size, uint64_t nfilled)
{
    t->m = mock_new(BS, size);
    for (uint64_t k = 0; k < nfilled; k++)
        mock_set_block(t->m, k, 1);
    cr_assert_eq(bf_ram_new(1 << 20, &t->ra), 0);
    cr_assert_eq(bf_ram_new(1 << 20, &t->rb), 0);
    cr_assert_eq(bf_fileh_open(mock_file(t->m), t->ra, &t->a), 0);
    cr_assert_eq(bf_fileh_open(mock_open_file(t->m), t->rb, &t->b), 0);
}

static void two_close(struct two *t)
{
    close_checked(t->a);
    close_checked(t->b);
    cr_assert_eq(bf_ram_free(t->ra), 0);
    cr_assert_eq(bf_ram_free(t->rb), 0);
    mock_free(t->m);
}

/* Write out fh (STORE | MARKSTORED | extra); returns the result, asserting
 * the return value `want`. */
static struct bf_writeout_result wo(bf_fileh *fh, unsigned extra, int want)
{
    struct bf_writeout_result res = { 0, 0, 0 };
    int r = bf_fileh_writeout(fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED | extra, &res);
    cr_assert_eq(r, want, "writeout returned %d (%s), expected %d", r, strerror(-r), want);
    return res;
}

/* Apply a commit of `serial` that changed the one range [start, start+count). */
static void apply_range1(bf_fileh *fh, uint64_t serial, uint64_t start, uint64_t count)
{
    struct bf_blkrange rg = { start, count };
    struct bf_commit c = { .serial = serial, .ranges = &rg, .nranges = 1, .trunc = UINT64_MAX };
    cr_assert_eq(bf_fileh_apply(fh, &c), 0);
    bf_fileh_apply_end(fh);
}

/* Write `len` bytes of the pattern of seed at off. */
static void write_part(bf_fileh *fh, uint64_t off, size_t len, unsigned seed)
{
    void *p = pattern(seed, off, len);
    cr_assert_eq(bf_fileh_write(fh, p, len, off), (ssize_t)len);
    free(p);
}

/* The bytes [off, off + len) read through fh equal the pattern of seed. */
static void expect_part(bf_fileh *fh, uint64_t off, size_t len, unsigned seed)
{
    char *got = malloc(len), *want = pattern(seed, off, len);
    cr_assert_eq(bf_fileh_read(fh, got, len, off), (ssize_t)len);
    cr_assert(memcmp(got, want, len) == 0, "bytes %llu+%zu differ from seed %u",
              (unsigned long long)off, len, seed);
    free(got);
    free(want);
}

Test(coherence, a_commit_applied_on_b_drops_bs_older_page)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    expect_block(t.b, 5, 1); /* B caches block 5 as of serial 0 */
    write_block(t.a, 5, 2);
    struct bf_writeout_result r = wo(t.a, 0, 0);
    cr_assert_eq(r.serial, 1);
    cr_assert_eq(bf_fileh_view(t.a), 1, "a commit moves its own handle's view");
    /* Until B learns of it, B keeps its snapshot. */
    expect_block(t.b, 5, 1);
    apply_range1(t.b, r.serial, 5, 1);
    cr_assert_eq(bf_fileh_page_state(t.b, 5), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_view(t.b), 1);
    expect_block(t.b, 5, 2);
    expect_block(t.b, 4, 1); /* other blocks untouched */
    cr_assert_eq(fstat_of(t.b).applied, 1);
    two_close(&t);
}

Test(coherence, loads_are_snapshot_reads_at_the_view)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 3, 2);
    cr_assert_eq(wo(t.a, 0, 0).serial, 1);
    /* B never cached block 3: it still loads it as of its view (0). */
    expect_block(t.b, 3, 1);
    cr_assert_eq(fstat_of(t.b).view, 0);
    apply_range1(t.b, 1, 3, 1);
    expect_block(t.b, 3, 2);
    two_close(&t);
}

Test(coherence, both_change_a_block_a_wins_b_gets_estale_then_discards)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 5, 2);
    write_part(t.b, 5 * BS + 100, 200, 3); /* B's change is based on serial 0 */
    cr_assert_eq(wo(t.a, 0, 0).serial, 1);

    /* B has not applied A's commit: the store refuses anyway. */
    struct bf_writeout_result r = wo(t.b, 0, -ESTALE);
    cr_assert_eq(r.conflicts, 1);
    struct bf_fileh_stats st = fstat_of(t.b);
    cr_assert_eq(st.dirty_blocks, 1, "B's change was dropped");
    cr_assert_eq(st.conflict_blocks, 1);
    cr_assert_eq(st.conflicts, 1);
    expect_part(t.b, 5 * BS + 100, 200, 3);
    expect_committed(t.m, 5, 2); /* nothing of B's in the store */
    cr_assert_eq(mock_serial(t.m), 1);

    /* B learns of A's commit: its change stays, conflicting. */
    apply_range1(t.b, 1, 5, 1);
    cr_assert_eq(bf_fileh_page_state(t.b, 5), BF_PAGE_DIRTY);
    expect_part(t.b, 5 * BS + 100, 200, 3);
    wo(t.b, 0, -ESTALE);

    /* Discard: A's data. */
    cr_assert_eq(bf_fileh_discard(t.b, NULL), 0);
    cr_assert_eq(fstat_of(t.b).conflict_blocks, 0);
    expect_block(t.b, 5, 2);
    two_close(&t);
}

Test(coherence, overwrite_makes_the_last_writer_win)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 5, 2);
    write_block(t.b, 5, 3);
    cr_assert_eq(wo(t.a, 0, 0).serial, 1);
    wo(t.b, 0, -ESTALE);
    struct bf_writeout_result r = wo(t.b, BF_WRITEOUT_OVERWRITE, 0);
    cr_assert_eq(r.serial, 2);
    expect_committed(t.m, 5, 3);
    cr_assert_eq(fstat_of(t.b).conflict_blocks, 0, "a committed block still conflicting");
    /* A learns of it: its clean page of block 5 is older and goes. */
    apply_range1(t.a, 2, 5, 1);
    expect_block(t.a, 5, 3);
    two_close(&t);
}

Test(coherence, a_blind_whole_block_write_made_before_a_commit_conflicts)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.b, 6, 3); /* no load: based on B's view, serial 0 */
    cr_assert_eq(mock_calls(t.m, MOCK_LOADBLK), 0);
    write_block(t.a, 6, 2);
    wo(t.a, 0, 0);
    wo(t.b, 0, -ESTALE);
    /* After B has seen A's commit, a new blind write is no conflict. */
    cr_assert_eq(bf_fileh_discard(t.b, NULL), 0);
    apply_range1(t.b, 1, 6, 1);
    write_block(t.b, 6, 4);
    cr_assert_eq(wo(t.b, 0, 0).serial, 2);
    expect_committed(t.m, 6, 4);
    two_close(&t);
}

Test(coherence, disjoint_blocks_both_commit_and_both_see_both)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 1, 2);
    write_block(t.b, 2, 3);
    struct bf_writeout_result ra = wo(t.a, 0, 0), rb = wo(t.b, 0, 0);
    cr_assert_lt(ra.serial, rb.serial);
    apply_range1(t.b, ra.serial, 1, 1);
    apply_range1(t.a, rb.serial, 2, 1);
    for (int k = 0; k < 2; k++) {
        bf_fileh *fh = k ? t.b : t.a;
        expect_block(fh, 1, 2);
        expect_block(fh, 2, 3);
        expect_block(fh, 3, 1);
    }
    two_close(&t);
}

Test(coherence, per_file_conflicts_refuse_disjoint_blocks)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 1, 2);
    write_block(t.b, 2, 3);
    wo(t.a, 0, 0);
    struct bf_writeout_result r = wo(t.b, BF_WRITEOUT_FILE_CONFLICTS, -ESTALE);
    cr_assert_eq(r.conflicts, 1);
    cr_assert_not(mock_has_block(t.m, 2) && mock_block_serial(t.m, 2) > 0);
    /* Per block (the default) the same change commits. */
    cr_assert_eq(wo(t.b, 0, 0).serial, 2);
    two_close(&t);
}

Test(coherence, per_file_base_moves_when_a_clean_handle_applies)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 1, 2);
    wo(t.a, 0, 0);
    apply_range1(t.b, 1, 1, 1); /* B is clean: its file base moves to 1 */
    write_block(t.b, 2, 3);
    cr_assert_eq(wo(t.b, BF_WRITEOUT_FILE_CONFLICTS, 0).serial, 2);
    two_close(&t);
}

Test(coherence, own_commits_never_conflict)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 1, 2);
    wo(t.a, 0, 0);
    write_block(t.a, 1, 3); /* on top of its own commit */
    write_part(t.a, 2 * BS, 10, 4);
    cr_assert_eq(bf_fileh_truncate(t.a, 3 * BS), 0); /* drops blocks it did not change */
    cr_assert_eq(wo(t.a, BF_WRITEOUT_FILE_CONFLICTS, 0).serial, 2);
    /* A truncate that drops a block A itself committed is no conflict. */
    write_block(t.a, 2, 5);
    wo(t.a, 0, 0);
    cr_assert_eq(bf_fileh_truncate(t.a, BS), 0);
    wo(t.a, 0, 0);
    cr_assert_eq(mock_committed_size(t.m), BS);
    two_close(&t);
}

Test(coherence, a_truncate_that_drops_a_block_another_mount_changed_conflicts)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 7, 2);
    wo(t.a, 0, 0);
    cr_assert_eq(bf_fileh_truncate(t.b, 4 * BS), 0); /* B drops block 7, unaware */
    struct bf_writeout_result r = wo(t.b, 0, -ESTALE);
    cr_assert_geq(r.conflicts, 1);
    expect_committed(t.m, 7, 2);
    cr_assert_eq(mock_committed_size(t.m), 8 * BS);
    cr_assert(fstat_of(t.b).size_conflict);
    two_close(&t);
}

Test(coherence, size_follows_another_mounts_growth_and_shrink)
{
    struct two t;
    two_open(&t, 4 * BS, 4);
    expect_block(t.b, 3, 1);
    write_block(t.a, 5, 2); /* grows to 6 blocks */
    struct bf_writeout_result r = wo(t.a, 0, 0);
    struct bf_blkrange rg = { 5, 1 };
    struct bf_commit c = { .serial = r.serial,
                           .ranges = &rg,
                           .nranges = 1,
                           .trunc = UINT64_MAX,
                           .size_changed = true,
                           .size = 6 * BS };
    cr_assert_eq(bf_fileh_apply(t.b, &c), 0);
    bf_fileh_apply_end(t.b);
    cr_assert_eq(bf_fileh_size(t.b), 6 * BS);
    cr_assert_not(bf_fileh_isdirty(t.b));
    expect_block(t.b, 5, 2);
    expect_block(t.b, 4, 0);

    cr_assert_eq(bf_fileh_truncate(t.a, 2 * BS), 0);
    r = wo(t.a, 0, 0);
    struct bf_commit c2 = { .serial = r.serial, .trunc = 2, .size_changed = true, .size = 2 * BS };
    cr_assert_eq(bf_fileh_apply(t.b, &c2), 0);
    bf_fileh_apply_end(t.b);
    cr_assert_eq(bf_fileh_size(t.b), 2 * BS);
    cr_assert_eq(bf_fileh_page_state(t.b, 3), BF_PAGE_EMPTY, "a page past the new size stayed");
    cr_assert_eq(bf_fileh_page_state(t.b, 5), BF_PAGE_EMPTY);
    cr_assert_not(bf_fileh_isdirty(t.b));
    two_close(&t);
}

Test(coherence, a_size_b_changed_itself_conflicts_with_anothers_size_change)
{
    struct two t;
    two_open(&t, 4 * BS, 4);
    write_block(t.b, 7, 3); /* B grows to 8 blocks */
    cr_assert_eq(bf_fileh_truncate(t.a, 2 * BS), 0);
    struct bf_writeout_result r = wo(t.a, 0, 0);
    struct bf_commit c = { .serial = r.serial, .trunc = 2, .size_changed = true, .size = 2 * BS };
    cr_assert_eq(bf_fileh_apply(t.b, &c), 0);
    bf_fileh_apply_end(t.b);
    struct bf_fileh_stats st = fstat_of(t.b);
    cr_assert_eq(st.size, 8 * BS, "B's own size was replaced");
    cr_assert_eq(st.committed_size, 2 * BS);
    cr_assert(st.size_conflict);
    expect_block(t.b, 7, 3);
    expect_block(t.b, 3, 0); /* dropped by A: zeros now, as B's view past A's size */
    wo(t.b, 0, -ESTALE);
    cr_assert_eq(wo(t.b, BF_WRITEOUT_OVERWRITE, 0).serial, 2);
    cr_assert_eq(mock_committed_size(t.m), 8 * BS);
    cr_assert_not(fstat_of(t.b).size_conflict);
    two_close(&t);
}

Test(coherence, dirty_blocks_past_anothers_shrink_keep_the_size_and_conflict)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_part(t.b, 6 * BS, 64, 3);
    cr_assert_eq(bf_fileh_truncate(t.a, 2 * BS), 0);
    struct bf_writeout_result r = wo(t.a, 0, 0);
    struct bf_commit c = { .serial = r.serial, .trunc = 2, .size_changed = true, .size = 2 * BS };
    cr_assert_eq(bf_fileh_apply(t.b, &c), 0);
    bf_fileh_apply_end(t.b);
    cr_assert_eq(bf_fileh_size(t.b), 8 * BS);
    cr_assert_eq(fstat_of(t.b).conflict_blocks, 1);
    expect_part(t.b, 6 * BS, 64, 3);
    wo(t.b, 0, -ESTALE);
    cr_assert_eq(bf_fileh_discard(t.b, NULL), 0);
    cr_assert_eq(bf_fileh_size(t.b), 2 * BS);
    two_close(&t);
}

/* The kernel launders a dirty page of block 5 while B applies A's commit
 * of block 5: the WRITE merges onto block 5 as of before A's commit, never
 * onto A's content, and conflicts. */
static void launder_case(bool cached)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    if (cached)
        expect_block(t.b, 5, 1);
    write_block(t.a, 5, 2);
    struct bf_writeout_result r = wo(t.a, 0, 0);
    struct bf_blkrange rg = { 5, 1 };
    struct bf_commit c = { .serial = r.serial, .ranges = &rg, .nranges = 1, .trunc = UINT64_MAX };
    cr_assert_eq(bf_fileh_apply(t.b, &c), 0);
    cr_assert_eq(bf_fileh_apply(t.b, &c), -EBUSY, "two launder windows at once");
    expect_consistent(t.b);
    write_part(t.b, 5 * BS + 512, 1024, 3); /* the laundered page */
    bf_fileh_apply_end(t.b);

    char *got = malloc(BS), *want = pattern(1, 5 * BS, BS), *mine = pattern(3, 5 * BS + 512, 1024);
    memcpy(want + 512, mine, 1024);
    cr_assert_eq(bf_fileh_read(t.b, got, BS, 5 * BS), (ssize_t)BS);
    cr_assert(memcmp(got, want, BS) == 0, "the laundered page was merged onto A's content");
    struct bf_fileh_stats st = fstat_of(t.b);
    cr_assert_eq(st.dirty_blocks, 1);
    cr_assert_eq(st.conflict_blocks, 1);
    wo(t.b, 0, -ESTALE);
    /* Overwrite commits B's view of the block: the old content + its page. */
    cr_assert_eq(wo(t.b, BF_WRITEOUT_OVERWRITE, 0).serial, 2);
    mock_get_block(t.m, 5, got);
    cr_assert(memcmp(got, want, BS) == 0);
    /* After the window, a write is an ordinary one again. */
    write_part(t.b, 4 * BS, 10, 4);
    cr_assert_eq(fstat_of(t.b).conflict_blocks, 0);
    free(got);
    free(want);
    free(mine);
    two_close(&t);
}

Test(coherence, a_laundered_write_merges_onto_the_old_content_of_a_cached_block)
{
    launder_case(true);
}

Test(coherence, a_laundered_write_merges_onto_the_old_content_of_an_uncached_block)
{
    launder_case(false);
}

Test(coherence, a_read_in_the_window_sees_the_new_content)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    expect_block(t.b, 5, 1);
    write_block(t.a, 5, 2);
    struct bf_writeout_result r = wo(t.a, 0, 0);
    struct bf_blkrange rg = { 5, 1 };
    struct bf_commit c = { .serial = r.serial, .ranges = &rg, .nranges = 1, .trunc = UINT64_MAX };
    cr_assert_eq(bf_fileh_apply(t.b, &c), 0);
    expect_block(t.b, 5, 2);        /* a process faulting the page back in */
    write_part(t.b, 5 * BS, 16, 3); /* then a laundered page: onto the old content */
    bf_fileh_apply_end(t.b);
    expect_part(t.b, 5 * BS, 16, 3);
    char *got = malloc(BS), *old = pattern(1, 5 * BS, BS);
    cr_assert_eq(bf_fileh_read(t.b, got, BS, 5 * BS), (ssize_t)BS);
    cr_assert(memcmp(got + 16, old + 16, BS - 16) == 0);
    free(got);
    free(old);
    two_close(&t);
}

struct wthr {
    pthread_t thr;
    bf_fileh *fh;
    int ret;
    struct bf_writeout_result res;
};

static void *wthr_main(void *arg)
{
    struct wthr *w = arg;
    w->ret = bf_fileh_writeout(w->fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &w->res);
    return NULL;
}

Test(coherence, a_commit_applied_during_a_writeout_marks_its_blocks, .timeout = 30)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 5, 2);
    wo(t.a, 0, 0);
    write_block(t.b, 5, 3);
    write_block(t.b, 6, 3);
    expect_block(t.b, 4, 1);
    mock_gate(t.m, MOCK_COMMIT, MOCK_ANY);
    struct wthr w = { .fh = t.b };
    cr_assert_eq(pthread_create(&w.thr, NULL, wthr_main, &w), 0);
    cr_assert(mock_gate_wait(t.m, MOCK_COMMIT, 1, 10000), "B's writeout did not reach its commit");
    /* A's commit reaches B while B's blocks are being stored. */
    struct bf_blkrange rg = { 4, 2 };
    struct bf_commit c = { .serial = 1, .ranges = &rg, .nranges = 1, .trunc = UINT64_MAX };
    cr_assert_eq(bf_fileh_apply(t.b, &c), 0);
    bf_fileh_apply_end(t.b);
    cr_assert_eq(bf_fileh_page_state(t.b, 5), BF_PAGE_DIRTY);
    cr_assert_eq(bf_fileh_page_state(t.b, 4), BF_PAGE_EMPTY, "B's older clean block 4 stayed");
    cr_assert_eq(fstat_of(t.b).conflict_blocks, 1);
    expect_consistent(t.b);
    mock_gate_release(t.m, MOCK_COMMIT);
    pthread_join(w.thr, NULL);
    cr_assert_eq(w.ret, -ESTALE);
    cr_assert_eq(w.res.conflicts, 1);
    struct bf_fileh_stats st = fstat_of(t.b);
    cr_assert_eq(st.dirty_blocks, 2);
    cr_assert_eq(st.conflict_blocks, 1, "block 6 is no conflict, block 5 is");
    expect_block(t.b, 5, 3);
    two_close(&t);
}

Test(coherence, a_load_older_than_the_store_keeps_falls_back_to_the_current_version)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 2, 2);
    wo(t.a, 0, 0);
    mock_forget_before(t.m, 1);
    expect_block(t.b, 2, 2); /* B's view is 0, which the store no longer keeps */
    cr_assert_eq(fstat_of(t.b).view, 0);
    two_close(&t);
}

/* A commit B learns of after it opened (B's view is already past it: the
 * watcher lags) opens no launder window: a write B makes meanwhile is made
 * on B's view, never merged onto the content before the commit. */
Test(coherence, a_late_commit_opens_no_window)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 5, 2);
    struct bf_writeout_result r = wo(t.a, 0, 0);
    bf_fileh *late;
    cr_assert_eq(bf_fileh_open(mock_open_file(t.m), t.rb, &late), 0);
    cr_assert_eq(bf_fileh_view(late), r.serial, "opened after A's commit");
    struct bf_blkrange rg = { 5, 1 };
    struct bf_commit c = { .serial = r.serial, .ranges = &rg, .nranges = 1, .trunc = UINT64_MAX };
    cr_assert_eq(bf_fileh_apply(late, &c), 0);
    write_part(late, 5 * BS + 512, 1024, 3);
    cr_assert_eq(bf_fileh_apply(late, &c), 0, "no window was open");
    bf_fileh_apply_end(late);
    bf_fileh_apply_end(late);
    char *got = malloc(BS), *want = pattern(2, 5 * BS, BS), *mine = pattern(3, 5 * BS + 512, 1024);
    memcpy(want + 512, mine, 1024);
    cr_assert_eq(bf_fileh_read(late, got, BS, 5 * BS), (ssize_t)BS);
    cr_assert(memcmp(got, want, BS) == 0, "the write was merged onto the content before A's");
    cr_assert_eq(fstat_of(late).conflict_blocks, 0);
    cr_assert_eq(wo(late, 0, 0).serial, 2, "no conflict");
    free(got);
    free(want);
    free(mine);
    close_checked(late);
    two_close(&t);
}

/* A reset (the mount lost track of commits 1..2): B's clean pages older
 * than it go, whatever blocks the lost commits changed; its change stays,
 * unmarked, and the store still catches the conflict by its base. */
Test(coherence, a_reset_drops_clean_pages_and_keeps_changes_unmarked)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    expect_block(t.b, 2, 1);
    expect_block(t.b, 3, 1);
    write_block(t.b, 5, 3); /* based on serial 0 */
    write_block(t.b, 6, 3);
    write_block(t.a, 2, 2);
    write_block(t.a, 5, 2);
    cr_assert_eq(wo(t.a, 0, 0).serial, 1);
    write_block(t.a, 4, 2);
    cr_assert_eq(wo(t.a, 0, 0).serial, 2);
    cr_assert_eq(bf_fileh_reset(t.b, 2, 8 * BS), 0);
    cr_assert_eq(bf_fileh_reset(t.b, 2, 8 * BS), -EBUSY, "two launder windows at once");
    bf_fileh_apply_end(t.b);
    cr_assert_eq(bf_fileh_page_state(t.b, 2), BF_PAGE_EMPTY);
    cr_assert_eq(bf_fileh_page_state(t.b, 3), BF_PAGE_EMPTY, "unchanged, but it cannot know");
    struct bf_fileh_stats st = fstat_of(t.b);
    cr_assert_eq(st.view, 2);
    cr_assert_eq(st.dirty_blocks, 2);
    cr_assert_eq(st.conflict_blocks, 0, "a reset does not know which changes conflict");
    expect_block(t.b, 2, 2);
    expect_block(t.b, 4, 2);
    expect_block(t.b, 5, 3);
    struct bf_writeout_result r = wo(t.b, 0, -ESTALE);
    cr_assert_eq(r.conflicts, 1, "block 5 conflicts, block 6 does not");
    cr_assert_eq(fstat_of(t.b).conflict_blocks, 1);
    cr_assert_eq(bf_fileh_reset(t.b, 0, 0), -EINVAL);
    two_close(&t);
}

/* A page the kernel launders during a reset merges onto the content of
 * the old view, and conflicts if the block changed since. */
Test(coherence, a_laundered_write_during_a_reset_merges_onto_the_old_view)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    write_block(t.a, 5, 2);
    wo(t.a, 0, 0);
    write_block(t.a, 1, 2);
    wo(t.a, 0, 0);
    cr_assert_eq(bf_fileh_reset(t.b, 2, 8 * BS), 0);
    write_part(t.b, 5 * BS + 512, 1024, 3);
    bf_fileh_apply_end(t.b);
    char *got = malloc(BS), *want = pattern(1, 5 * BS, BS), *mine = pattern(3, 5 * BS + 512, 1024);
    memcpy(want + 512, mine, 1024);
    cr_assert_eq(bf_fileh_read(t.b, got, BS, 5 * BS), (ssize_t)BS);
    cr_assert(memcmp(got, want, BS) == 0, "the laundered page was rebased onto A's content");
    cr_assert_eq(fstat_of(t.b).conflict_blocks, 1);
    wo(t.b, 0, -ESTALE);
    expect_block(t.b, 1, 2);
    free(got);
    free(want);
    free(mine);
    two_close(&t);
}

Test(coherence, a_reset_makes_the_size_follow)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    cr_assert_eq(bf_fileh_truncate(t.a, 3 * BS), 0);
    wo(t.a, 0, 0);
    cr_assert_eq(bf_fileh_reset(t.b, 1, 3 * BS), 0);
    bf_fileh_apply_end(t.b);
    cr_assert_eq(bf_fileh_size(t.b), 3 * BS);
    cr_assert_eq(fstat_of(t.b).committed_size, 3 * BS);
    two_close(&t);
}

/* The conflicting blocks, as ranges, a bounded number at a time. */
Test(coherence, conflicts_lists_the_marked_blocks_as_ranges)
{
    struct two t;
    two_open(&t, 16 * BS, 16);
    static const uint64_t mine[] = { 1, 2, 3, 5, 8, 9, 12 }, theirs[] = { 2, 3, 5, 8, 9, 12 };
    for (size_t i = 0; i < sizeof(mine) / sizeof(mine[0]); i++)
        write_block(t.b, mine[i], 3);
    for (size_t i = 0; i < sizeof(theirs) / sizeof(theirs[0]); i++)
        write_block(t.a, theirs[i], 2);
    struct bf_writeout_result r = wo(t.a, 0, 0);
    struct bf_blkrange rg[2] = { { 2, 4 }, { 8, 5 } }; /* more than B has */
    struct bf_commit c = { .serial = r.serial, .ranges = rg, .nranges = 2, .trunc = UINT64_MAX };
    cr_assert_eq(bf_fileh_apply(t.b, &c), 0);
    bf_fileh_apply_end(t.b);
    struct bf_blkrange out[4];
    uint64_t next = 0;
    cr_assert_eq(bf_fileh_conflicts(t.b, 0, out, 4, &next), 4);
    cr_assert_eq(next, UINT64_MAX);
    static const uint64_t want[4][2] = { { 2, 2 }, { 5, 1 }, { 8, 2 }, { 12, 1 } };
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(out[i].start, want[i][0], "range %d starts at %llu", i,
                     (unsigned long long)out[i].start);
        cr_assert_eq(out[i].count, want[i][1]);
    }
    cr_assert_eq(bf_fileh_conflicts(t.b, 0, out, 2, &next), 2);
    cr_assert_eq(next, 8, "a full array ends where the next call starts");
    cr_assert_eq(bf_fileh_conflicts(t.b, next, out, 2, &next), 2);
    cr_assert_eq(out[0].start, 8);
    cr_assert_eq(next, UINT64_MAX);
    cr_assert_eq(bf_fileh_conflicts(t.b, 3, out, 4, NULL), 4, "a block inside a range");
    cr_assert_eq(out[0].start, 3);
    cr_assert_eq(out[0].count, 1);
    cr_assert_eq(bf_fileh_discard(t.b, NULL), 0);
    cr_assert_eq(bf_fileh_conflicts(t.b, 0, out, 4, &next), 0);
    cr_assert_eq(next, UINT64_MAX);
    two_close(&t);
}

Test(coherence, apply_refuses_bad_commits)
{
    struct two t;
    two_open(&t, 8 * BS, 8);
    struct bf_blkrange bad[2] = { { 4, 2 }, { 5, 1 } }; /* overlapping */
    struct bf_commit c = { .serial = 1, .ranges = bad, .nranges = 2, .trunc = UINT64_MAX };
    cr_assert_eq(bf_fileh_apply(t.b, &c), -EINVAL);
    struct bf_blkrange rev[2] = { { 6, 1 }, { 2, 1 } }; /* not sorted */
    c.ranges = rev;
    cr_assert_eq(bf_fileh_apply(t.b, &c), -EINVAL);
    struct bf_blkrange empty = { 3, 0 };
    c.ranges = &empty;
    c.nranges = 1;
    cr_assert_eq(bf_fileh_apply(t.b, &c), -EINVAL);
    c.nranges = 0;
    c.serial = 0;
    cr_assert_eq(bf_fileh_apply(t.b, &c), -EINVAL);
    cr_assert_eq(fstat_of(t.b).applied, 0);
    two_close(&t);
}
