/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: several daemons on one database (-o
 * shared; docs/COHERENCE.md, bigfilefs(8) "COHERENCE"). Each daemon has a
 * mountpoint and so a page cache of its own (mount A is 0, B is 1, C is
 * 2), each is driven from processes of its own, and every mount is
 * unmounted at the end (harness.h). A test that waits for B to see
 * something waits for the event — a mapping polled with a bounded wait,
 * or BIGFILE_IOC_SYNC — never for time.
 *
 * Compiled twice: test_shared on an SQLite database, test_shared_pg
 * (-DBFT_PG) on a PostgreSQL database of the test's own on the program's
 * private server, B over TCP (harness.h). The tests of the protocol run on
 * both; those that touch an SQLite file behind the daemons' backs only on
 * SQLite; those of a server connection killed and of a server restart only
 * on PostgreSQL. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define BS (64 * 1024u)
#define MA 0 /* mount A */
#define MB 1 /* mount B */

#ifdef BFT_PG
#define SETUP_SHARED2 bft_setup_pg_shared2
#define SETUP_SHARED3 bft_setup_pg_shared3
#define SETUP_NOMOUNT bft_setup_pg_nomount
/* The last serial given, and "block 5 holds A's byte at 0 and not B's at 100". */
#define SQL_SERIAL "SELECT serial FROM counter"
#define SQL_BLOCK5_IS_AS \
    "SELECT get_byte(data, 0) = 65 AND get_byte(data, 100) != 66 FROM blocks WHERE blk = 5"
#else
#define SETUP_SHARED2 bft_setup_shared2
#define SETUP_SHARED3 bft_setup_shared3
#define SETUP_NOMOUNT bft_setup_nomount
#define SQL_SERIAL "SELECT value FROM meta WHERE key = 'serial'"
#define SQL_BLOCK5_IS_AS                                                                           \
    "SELECT substr(data, 1, 1) = x'41' AND substr(data, 101, 1) != x'42' FROM blocks WHERE blk = " \
    "5"
#endif

/* ---- helpers ------------------------------------------------------------------ */

/* BIGFILE_IOC_SYNC through path: the serial that mount reached. */
static uint64_t sync_on(const char *path)
{
    struct bigfile_serial s = { 0 };
    int r = bft_ioctl(path, BIGFILE_IOC_SYNC, &s);
    cr_assert_eq(r, 0, "SYNC %s: %s", path, strerror(-r));
    return s.serial;
}

/* BIGFILE_IOC_WRITEOUT2 (STORE | MARKSTORED | extra) of path: 0 or -errno. */
static int writeout2(const char *path, uint32_t extra, struct bigfile_writeout2 *out)
{
    struct bigfile_writeout2 w = { .flags = BFT_WO_BOTH | extra };
    int r = bft_ioctl(path, BIGFILE_IOC_WRITEOUT2, &w);
    if (out)
        *out = w;
    return r;
}

/* Write len bytes of `byte` at off of path (opened and closed). */
static void put_bytes(const char *path, uint64_t off, size_t len, uint8_t byte)
{
    uint8_t *buf = malloc(len);
    memset(buf, byte, len);
    int r = bft_pwrite(path, buf, len, off);
    free(buf);
    cr_assert_eq(r, 0, "pwrite %s: %s", path, strerror(-r));
}

/* Whether [off, off + len) of path reads as `byte` throughout. */
static int holds_bytes(const char *path, uint64_t off, size_t len, uint8_t byte)
{
    uint8_t *buf = malloc(len);
    int ok = bft_pread(path, buf, len, off) == 0;
    for (size_t i = 0; ok && i < len; i++)
        ok = buf[i] == byte;
    free(buf);
    return ok;
}

/* Write the pattern of seed over [off, off + len) of path and commit it
 * with WRITEOUT2; returns the commit's serial. */
static uint64_t put_commit2(const char *path, uint64_t off, size_t len, unsigned seed)
{
    struct bigfile_writeout2 w;
    bft_put(path, off, len, seed);
    int r = writeout2(path, 0, &w);
    cr_assert_eq(r, 0, "writeout %s: %s", path, strerror(-r));
    cr_assert_gt(w.serial, 0);
    return w.serial;
}

/* Create `name` on mount A with 64 KiB blocks and `nblk` blocks, blocks
 * committed with the pattern of seed (unless seed is BFT_ZEROS); its path
 * on A and on B into pa, pb. */
static void shared_file(const char *name, uint64_t nblk, unsigned seed, char *pa, char *pb)
{
    char size[32];
    snprintf(size, sizeof(size), "%llu", (unsigned long long)(nblk * BS));
    bft_create(name, "64K", size);
    bft_path_on(MA, pa, name);
    bft_path_on(MB, pb, name);
    if (seed != BFT_ZEROS)
        put_commit2(pa, 0, nblk * BS, seed);
}

static struct bigfile_stat stat_of(const char *path)
{
    struct bigfile_stat s;
    int r = bft_stat(path, &s);
    cr_assert_eq(r, 0, "STAT %s: %s", path, strerror(-r));
    return s;
}

/* Mount A with -o shared,a_opts and B with -o shared,b_opts (NULL: none). */
static void mount_two(const char *a_opts, const char *b_opts)
{
    char ob[256];
    snprintf(bft.opts, sizeof(bft.opts), "shared%s%s", a_opts ? "," : "", a_opts ? a_opts : "");
    bft_mount();
    snprintf(ob, sizeof(ob), "shared%s%s", b_opts ? "," : "", b_opts ? b_opts : "");
    bft_mount_on(MB, ob);
}

/* bft_wait_for's condition: a peer's mapping shows a pattern (or the peer
 * died). */
struct peer_shows {
    struct bft_peer *p;
    uint64_t off, len;
    unsigned seed;
    int got;
};

static int peer_shows(void *arg)
{
    struct peer_shows *w = arg;
    w->got = bft_peer_check(w->p, w->off, w->len, w->seed);
    return w->got != 0;
}

/* Wait (10 s at most) until the peer's mapping shows the pattern of seed
 * at [off, off + len); assert it does. */
static void expect_peer_shows(struct bft_peer *p, uint64_t off, uint64_t len, unsigned seed,
                              const char *what)
{
    struct peer_shows w = { p, off, len, seed, 0 };
    bft_wait_for(peer_shows, &w, 10);
    cr_assert_eq(w.got, 1, "%s: the mapping on B did not show it (%d)", what, w.got);
}

/* bft_wait_for's condition: the peer's fstat size is `size`. */
struct peer_size {
    struct bft_peer *p;
    int64_t size, got;
};

static int peer_size_is(void *arg)
{
    struct peer_size *w = arg;
    w->got = bft_peer_size(w->p);
    return w->got == w->size || w->got < 0;
}

static void expect_peer_size(struct bft_peer *p, int64_t size, const char *what)
{
    struct peer_size w = { p, size, -2 };
    bft_wait_for(peer_size_is, &w, 10);
    cr_assert_eq(w.got, size, "%s: fstat on B gives %lld, want %lld", what, (long long)w.got,
                 (long long)size);
}

/* Set the size of path (ftruncate, an uncommitted change) and commit. */
static uint64_t truncate_commit(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(ftruncate(fd, (off_t)size), 0, "ftruncate: %s", strerror(errno));
    close(fd);
    struct bigfile_writeout2 w;
    int r = writeout2(path, 0, &w);
    cr_assert_eq(r, 0, "writeout of the size: %s", strerror(-r));
    return w.serial;
}

/* ---- a commit on A, seen on B ---------------------------------------------------- */

/* A commits; a process that has the file mapped on B sees it without
 * reopening, pushed by B's daemon (no SYNC here: the watcher, by itself);
 * B's size follows A's growth and shrink, and past the new end the mapping
 * gets SIGBUS, as for a local truncate. */
BFT_TEST(shared, a_commit_on_a_shows_in_a_mapping_on_b, SETUP_SHARED2, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    struct bft_peer peer;
    shared_file("f", 8, 1, pa, pb);
    cr_assert_eq(bft_peer_start(&peer, pb, 16 * BS), 0);
    cr_assert_eq(bft_peer_check(&peer, 0, 8 * BS, 1), 1, "B maps the committed data");

    uint64_t s1 = put_commit2(pa, 3 * BS, BS, 2);
    expect_peer_shows(&peer, 3 * BS, BS, 2, "A's commit of block 3");
    cr_expect_eq(bft_peer_check(&peer, 2 * BS, BS, 1), 1, "block 2 untouched");
    cr_expect_geq(stat_of(pb).serial, s1, "B's handle follows A's commit");

    /* growth: B's fstat follows; the new blocks are mapped. (The kernel
     * learns the new size from the fstat's GETATTR; one that races with an
     * invalidation of the file is answered but dropped, so B catches up
     * first.) */
    truncate_commit(pa, 12 * BS);
    uint64_t s2 = put_commit2(pa, 10 * BS, BS, 3);
    cr_assert_geq(sync_on(pb), s2);
    expect_peer_size(&peer, 12 * BS, "A's growth");
    expect_peer_shows(&peer, 10 * BS, BS, 3, "a block of the grown file");
    cr_expect_eq(bft_peer_check(&peer, 9 * BS, BS, BFT_ZEROS), 1, "the grown hole reads zeros");

    /* shrink: B's fstat follows; past the new end, SIGBUS */
    uint64_t s3 = truncate_commit(pa, 2 * BS);
    cr_assert_geq(sync_on(pb), s3);
    expect_peer_size(&peer, 2 * BS, "A's shrink");
    cr_expect_eq(bft_peer_check(&peer, 0, 2 * BS, 1), 1, "the blocks left");
    cr_expect_eq(bft_peer_read(&peer, 5 * BS), -1, "past the new end: SIGBUS");
    int st = bft_peer_stop(&peer);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "the peer died of SIGBUS (0x%x)", st);
    cr_expect_eq(bft_size(pb), (int64_t)(2 * BS));
}

/* A read-only mount follows the others too, and may SYNC. */
BFT_TEST(shared, a_read_only_mount_follows_and_may_sync, SETUP_NOMOUNT, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    mount_two(NULL, "ro");
    shared_file("f", 4, 1, pa, pb);
    bft_expect(pb, 0, 4 * BS, 1, "the read-only mount reads the file");
    uint64_t s = put_commit2(pa, BS, BS, 2);
    cr_expect_geq(sync_on(pb), s, "SYNC on a read-only mount reaches A's commit");
    bft_expect(pb, BS, BS, 2, "the read-only mount reads A's commit");
}

/* ---- conflicts ------------------------------------------------------------------------ */

/* Both change block 5: A commits first; B's writeout fails with ESTALE,
 * its change intact in its mount and nowhere in the database. */
static void both_change_block_5(char *pa, char *pb)
{
    shared_file("f", 8, 1, pa, pb);
    put_bytes(pa, 5 * BS, 50, 'A');
    put_bytes(pb, 5 * BS + 100, 200, 'B');
    struct bigfile_writeout2 w;
    cr_assert_eq(writeout2(pa, 0, &w), 0);
    int r = writeout2(pb, 0, NULL);
    cr_assert_eq(r, -ESTALE, "B's writeout over A's commit: %s", strerror(-r));
    struct bigfile_writeout old = { .flags = BFT_WO_BOTH };
    cr_expect_eq(bft_ioctl(pb, BIGFILE_IOC_WRITEOUT, &old), -ESTALE, "the old WRITEOUT too");
    cr_expect(holds_bytes(pb, 5 * BS + 100, 200, 'B'), "B's change is intact");
    bft_expect(pb, 5 * BS + 300, 100, 1, "B's block around its change: B's base");
    struct bigfile_stat s = stat_of(pb);
    cr_expect_eq(s.dirty_blocks, 1);
    cr_expect_eq(s.conflict_blocks, 1);
    int64_t v = -1;
    cr_assert_eq(bft_sql_int(bft.db, SQL_BLOCK5_IS_AS, &v), 0);
    cr_expect_eq(v, 1, "the database holds A's block 5, nothing of B's");
    struct bigfile_conflicts c = { .start = 0 };
    cr_assert_eq(bft_ioctl(pb, BIGFILE_IOC_CONFLICTS, &c), 0);
    cr_expect(c.count == 1 && c.ranges[0].start == 5 && c.ranges[0].count == 1 &&
                  c.next == BIGFILE_CONFLICTS_END && c.flags == 0,
              "CONFLICTS: %u ranges, first %llu+%llu", c.count,
              (unsigned long long)c.ranges[0].start, (unsigned long long)c.ranges[0].count);
}

BFT_TEST(shared, both_change_a_block_a_wins_b_gets_estale_then_discards, SETUP_SHARED2, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    both_change_block_5(pa, pb);
    struct bigfile_count n;
    cr_assert_eq(bft_discard(pb, &n), 0);
    cr_expect(holds_bytes(pb, 5 * BS, 50, 'A'), "after discard B reads A's commit");
    bft_expect(pb, 5 * BS + 100, 200, 1, "and none of its own change");
    cr_expect_eq(stat_of(pb).conflict_blocks, 0);
    cr_expect_eq(writeout2(pb, 0, NULL), 0, "nothing left to conflict");
}

BFT_TEST(shared, both_change_a_block_overwrite_makes_b_win, SETUP_SHARED2, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    both_change_block_5(pa, pb);
    uint64_t sa = stat_of(pa).serial;
    struct bigfile_writeout2 w;
    cr_assert_eq(writeout2(pb, BIGFILE_WRITEOUT_OVERWRITE, &w), 0);
    cr_expect_gt(w.serial, sa);
    cr_expect_eq(w.blocks, 1);
    cr_expect_eq(w.conflict_blocks, 1, "it overwrote a conflicting block");
    cr_expect_eq(stat_of(pb).conflict_blocks, 0);
    cr_expect_geq(sync_on(pa), w.serial);
    cr_expect(holds_bytes(pa, 5 * BS + 100, 200, 'B'), "A reads B's overwrite");
    bft_expect(pa, 5 * BS, 50, 1, "B's block as B saw it: A's change is gone");
}

/* A whole block written on B without a load, before A committed it: based
 * on B's view, older than A's commit: a conflict. */
BFT_TEST(shared, a_blind_whole_block_write_on_b_conflicts, SETUP_SHARED2, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    shared_file("f", 8, 1, pa, pb);
    bft_put(pb, 6 * BS, BS, 3);
    cr_assert_eq(stat_of(pb).loadblk_calls, 0, "B wrote block 6 without loading it");
    put_commit2(pa, 6 * BS, BS, 2);
    cr_expect_eq(writeout2(pb, 0, NULL), -ESTALE);
    bft_expect(pb, 6 * BS, BS, 3, "B's block is intact");
    /* After B has seen A's commit, a new blind write is none. */
    cr_assert_eq(bft_discard(pb, NULL), 0);
    sync_on(pb);
    bft_put(pb, 6 * BS, BS, 4);
    cr_expect_eq(writeout2(pb, 0, NULL), 0);
    cr_expect_geq(sync_on(pa), stat_of(pb).serial);
    bft_expect(pa, 6 * BS, BS, 4, "A reads B's commit");
}

/* Disjoint blocks: both commit, and both see both. */
BFT_TEST(shared, disjoint_blocks_both_commit_and_both_see_both, SETUP_SHARED2, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    shared_file("f", 8, 1, pa, pb);
    bft_expect(pb, 0, 8 * BS, 1, "B caches every block");
    bft_put(pa, 1 * BS, BS, 2);
    bft_put(pb, 2 * BS, BS, 3);
    struct bigfile_writeout2 wa, wb;
    cr_assert_eq(writeout2(pa, 0, &wa), 0);
    cr_assert_eq(writeout2(pb, 0, &wb), 0, "disjoint blocks are no conflict");
    cr_expect_gt(wb.serial, wa.serial);
    cr_expect_geq(stat_of(pb).serial, wb.serial);
    cr_expect_geq(sync_on(pa), wb.serial);
    for (int m = 0; m < 2; m++) {
        char p[PATH_MAX];
        bft_path_on(m, p, "f");
        bft_expect(p, 1 * BS, BS, 2, m ? "B sees A's block" : "A sees its block");
        bft_expect(p, 2 * BS, BS, 3, m ? "B sees its block" : "A sees B's block");
        bft_expect(p, 3 * BS, BS, 1, "the others are as they were");
    }
}

/* Three daemons (on PostgreSQL: B over TCP, A and C over the socket) each
 * commit a block of their own: every one sees all three. */
BFT_TEST(shared, three_mounts_commit_disjoint_blocks_and_all_see_all, SETUP_SHARED3, 60)
{
    char p[3][PATH_MAX];
    shared_file("f", 8, 1, p[0], p[1]);
    bft_path_on(2, p[2], "f");
    uint64_t last = 0;
    for (int m = 0; m < 3; m++) {
        uint64_t s = put_commit2(p[m], (uint64_t)(2 + m) * BS, BS, 10 + (unsigned)m);
        cr_expect_gt(s, last, "serials grow in commit order");
        last = s;
    }
    for (int m = 0; m < 3; m++) {
        cr_expect_geq(sync_on(p[m]), last, "mount %d caught up", m);
        for (int k = 0; k < 3; k++)
            bft_expect(p[m], (uint64_t)(2 + k) * BS, BS, 10 + (unsigned)k, "each mount's block");
        bft_expect(p[m], 5 * BS, 3 * BS, 1, "the blocks nobody changed");
    }
}

/* -o conflicts=file: any commit of the file since B's handle was clean is
 * a conflict, disjoint blocks too. */
BFT_TEST(shared, conflicts_file_refuses_disjoint_blocks, SETUP_NOMOUNT, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    mount_two(NULL, "conflicts=file");
    shared_file("f", 8, 1, pa, pb);
    bft_put(pb, 2 * BS, BS, 3);
    put_commit2(pa, 1 * BS, BS, 2);
    cr_expect_eq(writeout2(pb, 0, NULL), -ESTALE, "A's commit of another block conflicts");
    cr_expect_eq(writeout2(pb, BIGFILE_WRITEOUT_OVERWRITE, NULL), 0);
    cr_expect_geq(sync_on(pa), stat_of(pb).serial);
    bft_expect(pa, 2 * BS, BS, 3, "B's block, committed over");
    bft_expect(pa, 1 * BS, BS, 2, "A's block stays: B stored only its own");
}

/* A commits block 5 while B has dirty pages of it in its page cache only
 * (dirtied through a mapping, never written back): B's kernel launders
 * them as B applies A's commit; they land on B's old view of the block,
 * marked conflicting — never rebased onto A's data in silence. */
BFT_TEST(shared, kernel_dirty_pages_on_b_conflict_never_rebase, SETUP_SHARED2, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    struct bft_peer peer;
    shared_file("f", 8, 1, pa, pb);
    cr_assert_eq(bft_peer_start(&peer, pb, 8 * BS), 0);
    cr_assert_eq(bft_peer_write(&peer, 5 * BS + 10, 0x77), 0);
    cr_assert_eq(stat_of(pb).dirty_blocks, 0, "the change is in B's page cache only");

    uint64_t s = put_commit2(pa, 5 * BS, BS, 2);
    cr_assert_geq(sync_on(pb), s, "B applied A's commit");
    cr_expect_eq(bft_peer_read(&peer, 5 * BS + 10), 0x77, "B's mapping keeps B's byte");
    cr_expect_eq(bft_peer_check(&peer, 5 * BS + 16384, 4096, 1), 1,
                 "the rest of B's block is B's old view, not A's data");
    struct bigfile_stat st = stat_of(pb);
    cr_expect_eq(st.dirty_blocks, 1, "the laundered page is B's change");
    cr_expect_eq(st.conflict_blocks, 1, "marked conflicting");
    cr_expect_eq(writeout2(pb, 0, NULL), -ESTALE);
    cr_assert_eq(bft_discard(pb, NULL), 0);
    cr_expect_eq(bft_peer_check(&peer, 5 * BS, BS, 2), 1, "after discard: A's data");
    cr_expect_eq(bft_peer_stop(&peer), 0);
}

/* bigfilectl names the conflicting blocks and the two ways out. */
BFT_TEST(shared, bigfilectl_lists_the_conflicts_and_the_ways_out, SETUP_SHARED2, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX], out[4096], err[4096];
    shared_file("f", 16, 1, pa, pb);
    static const int blocks[] = { 2, 3, 4, 7, 12 };
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
        put_bytes(pa, (uint64_t)blocks[i] * BS, 8, 'A');
        put_bytes(pb, (uint64_t)blocks[i] * BS + 8, 8, 'B');
    }
    put_bytes(pb, 9 * BS, 8, 'B'); /* no conflict */
    cr_assert_eq(writeout2(pa, 0, NULL), 0);
    int rc = bft_ctl(out, sizeof(out), err, sizeof(err), "writeout", pb, (char *)NULL);
    cr_expect_eq(rc, 1, "exit 1 on a conflict: %s", err);
    cr_expect(strstr(err, "conflicting blocks: 2-4, 7, 12\n") != NULL, "the ranges:\n%s", err);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "bigfilectl discard %s\n", pb);
    cr_expect(strstr(err, want) != NULL, "way out 1:\n%s", err);
    snprintf(want, sizeof(want), "bigfilectl writeout --overwrite %s\n", pb);
    cr_expect(strstr(err, want) != NULL, "way out 2:\n%s", err);
    uint64_t v;
    rc = bft_ctl(out, sizeof(out), err, sizeof(err), "stat", pb, (char *)NULL);
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect(bft_kv(out, "conflict_blocks", &v) == 0 && v == 5, "stat:\n%s", out);
    rc = bft_ctl(out, sizeof(out), err, sizeof(err), "writeout", "--overwrite", pb, (char *)NULL);
    cr_assert_eq(rc, 0, "%s", err);
    uint64_t serial;
    cr_expect(bft_kv(out, "serial", &serial) == 0 && serial > 0, "writeout:\n%s", out);
    cr_expect(bft_kv(out, "conflict_blocks", &v) == 0 && v == 5, "writeout:\n%s", out);
    rc = bft_ctl(out, sizeof(out), err, sizeof(err), "sync", pa, (char *)NULL);
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect(bft_kv(out, "serial", &v) == 0 && v >= serial, "sync:\n%s", out);
    cr_expect(holds_bytes(pa, 7 * BS + 8, 8, 'B'), "A reads B's overwrite");
}

/* ---- names ----------------------------------------------------------------------------- */

/* The inode number name has on mount m, or 0 if it has none (stat fails). */
static ino_t ino_on(int m, const char *name)
{
    char p[PATH_MAX];
    struct stat st;
    return stat(bft_path_on(m, p, name), &st) == 0 ? st.st_ino : 0;
}

/* Create, rename (replacing, exchanging) and unlink on A are seen on B at
 * once — B's kernel caches entries for a day: they must be forgotten. */
BFT_TEST(shared, names_changed_on_a_are_seen_on_b_at_once, SETUP_SHARED2, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX], p2[PATH_MAX];
    shared_file("anchor", 1, BFT_ZEROS, pa, pb); /* B's SYNCs go through it */
    bft_create("x", "64K", "64K");
    bft_create("z", "64K", "64K");
    bft_create("w", "64K", "64K");
    ino_t x = ino_on(MB, "x"), z = ino_on(MB, "z"), w = ino_on(MB, "w");
    cr_assert(x && z && w, "B finds the files (and caches their entries)");

    cr_assert_eq(rename(bft_path_on(MA, pa, "x"), bft_path_on(MA, p2, "y")), 0);
    sync_on(pb);
    cr_expect_eq(ino_on(MB, "x"), 0, "the old name is gone on B");
    cr_expect_eq(ino_on(MB, "y"), x, "the new name is the same file on B");

    cr_assert_eq(rename(bft_path_on(MA, pa, "z"), bft_path_on(MA, p2, "w")), 0);
    sync_on(pb);
    cr_expect_eq(ino_on(MB, "z"), 0);
    cr_expect_eq(ino_on(MB, "w"), z, "w is the renamed file, not the replaced one");

    cr_assert_eq(renameat2(AT_FDCWD, bft_path_on(MA, pa, "y"), AT_FDCWD, bft_path_on(MA, p2, "w"),
                           RENAME_EXCHANGE),
                 0);
    sync_on(pb);
    cr_expect_eq(ino_on(MB, "y"), z, "exchanged");
    cr_expect_eq(ino_on(MB, "w"), x, "exchanged");

    cr_assert_eq(unlink(bft_path_on(MA, pa, "y")), 0);
    sync_on(pb);
    cr_expect_eq(ino_on(MB, "y"), 0, "unlinked on A: gone on B");

    int fd = open(bft_path_on(MA, pa, "new"), O_CREAT | O_RDWR, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    sync_on(pb);
    cr_expect_neq(ino_on(MB, "new"), 0, "created on A: there on B");
}

/* bft_wait_for's condition: a SQL count is *want (or the query failed). */
struct sql_count {
    const char *sql;
    int64_t want, got;
};

static int sql_count_is(void *arg)
{
    struct sql_count *w = arg;
    return bft_sql_int(bft.db, w->sql, &w->got) < 0 || w->got == w->want;
}

/* Wait (10 s at most) until the query gives want; assert it. */
static void expect_sql_count(const char *sql, int64_t want, const char *what)
{
    struct sql_count w = { sql, want, -1 };
    bft_wait_for(sql_count_is, &w, 10);
    cr_assert_eq(w.got, want, "%s: %s gives %lld, want %lld", what, sql, (long long)w.got,
                 (long long)want);
}

/* A file unlinked on A but open on B stays readable there; when B closes
 * it, it is purged. */
BFT_TEST(shared, a_file_unlinked_on_a_stays_readable_on_b_then_is_purged, SETUP_SHARED2, 60)
{
    char pa[PATH_MAX], pb[PATH_MAX], q[128];
    shared_file("f", 4, 1, pa, pb);
    bft_history_off(bft.mnt); /* no history keeps it after B's close */
    int64_t id = -1;
    cr_assert_eq(bft_sql_int(bft.db, "SELECT id FROM files WHERE name = 'f'", &id), 0);
    int fd = open(pb, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(unlink(pa), 0);
    struct bigfile_serial sr;
    cr_assert_eq(ioctl(fd, BIGFILE_IOC_SYNC, &sr), 0, "SYNC: %s", strerror(errno));
    struct stat st;
    cr_expect_eq(stat(pb, &st), -1, "the name is gone on B");
    cr_assert_eq(fstat(fd, &st), 0);
    cr_expect_eq(st.st_nlink, 0, "B's open file is unlinked");
    uint8_t *buf = malloc(4 * BS), *want = malloc(4 * BS);
    bft_pattern(want, 4 * BS, 1, 0);
    cr_expect_eq(pread(fd, buf, 4 * BS, 0), (ssize_t)(4 * BS), "B still reads it");
    cr_expect(memcmp(buf, want, 4 * BS) == 0, "its committed data");
    free(buf);
    free(want);
    snprintf(q, sizeof(q), "SELECT count(*) FROM files WHERE id = %lld", (long long)id);
    int64_t n = -1;
    cr_assert_eq(bft_sql_int(bft.db, q, &n), 0);
    cr_expect_eq(n, 1, "B holds it: not purged");
    close(fd);
    /* B's kernel forgets the inode after the close; B's daemon then ends
     * its hold, and no session holds the file any more. */
    expect_sql_count(q, 0, "purged once B closed it");
    snprintf(q, sizeof(q), "SELECT count(*) FROM blockmap WHERE file = %lld", (long long)id);
    expect_sql_count(q, 0, "its blocks too");
}

/* ---- a lagging mount, a dying mount ----------------------------------------------------- */

/* The database's log_trimmed (meta), or -1. */
static int64_t log_trimmed(void)
{
    int64_t v = -1;
    bft_sql_int(bft.db, "SELECT value FROM meta WHERE key = 'log_trimmed'", &v);
    return v;
}

struct trimmed_past {
    int64_t serial;
};

static int trimmed_past(void *arg)
{
    return log_trimmed() > ((struct trimmed_past *)arg)->serial;
}

/* B's daemon is stopped while A commits many times and trims the log past
 * what B applied (-o log_keep=2 on A): B lost track. Resumed, B forgets
 * every cached page (a RESET) but its own uncommitted change, and serves
 * the data as it is now. */
BFT_TEST(shared, a_stopped_mount_that_lost_track_resets_and_serves_correct_data, SETUP_NOMOUNT, 90)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    struct bft_peer peer;
    mount_two("log_keep=2", NULL);
    bft_history_off(bft.mnt); /* no history keeps the log */
    shared_file("f", 8, 1, pa, pb);
    bft_put(pb, 7 * BS, BS, 9); /* B's uncommitted change */
    cr_assert_eq(bft_peer_start(&peer, pb, 8 * BS), 0);
    cr_assert_eq(bft_peer_check(&peer, 0, 7 * BS, 1), 1, "B caches blocks 0..6");
    struct trimmed_past tp = { (int64_t)sync_on(pb) };

    /* Stopped outside a write of its own (its housekeeping writes too):
     * else A's commits would wait for it, and fail with EBUSY. */
    cr_assert_eq(bft_stop_quiet(MB), 0, "B could not be stopped holding no lock");
    for (unsigned k = 0; k < 8; k++)
        put_commit2(pa, (k % 4) * BS, BS, 10 + k); /* blocks 0..3 end with seeds 14..17 */
    cr_assert(bft_wait_for(trimmed_past, &tp, 20), "A did not trim the log past B (%lld <= %lld)",
              (long long)log_trimmed(), (long long)tp.serial);
    cr_assert_eq(kill(bft_daemon_of(MB), SIGCONT), 0);

    uint64_t s = sync_on(pb);
    cr_expect_geq(s, stat_of(pa).serial);
    char *log = bft_slurp(bft.other[0].log);
    cr_expect(log && strstr(log, "lost track"), "B says it lost track:\n%s", log ? log : "");
    free(log);
    for (unsigned k = 0; k < 4; k++) {
        char what[64];
        snprintf(what, sizeof(what), "block %u as A last committed it", k);
        cr_expect_eq(bft_peer_check(&peer, k * BS, BS, 14 + k), 1, "B's mapping: %s", what);
        bft_expect(pb, k * BS, BS, 14 + k, what);
    }
    bft_expect(pb, 4 * BS, 3 * BS, 1, "the blocks nobody changed");
    bft_expect(pb, 7 * BS, BS, 9, "B's own change survived the reset");
    struct bigfile_stat st = stat_of(pb);
    cr_expect_eq(st.dirty_blocks, 1);
    cr_expect_geq(st.serial, s, "B's view moved to the reset");
    cr_expect_eq(writeout2(pb, 0, NULL), 0, "nobody else changed block 7");
    cr_expect_geq(sync_on(pa), stat_of(pb).serial);
    bft_expect(pa, 7 * BS, BS, 9, "A reads B's commit");
    cr_expect_eq(bft_peer_stop(&peer), 0);
}

/* bft_wait_for's condition: A's writeout has begun to upload (the
 * database holds an upload of a live session). */
static int uploading(void *arg)
{
    (void)arg;
    int64_t n = 0;
    return bft_sql_int(bft.db, "SELECT count(*) FROM uploads WHERE session != 0", &n) == 0 && n > 0;
}

struct big_writeout {
    char path[PATH_MAX];
};

/* In a child: the writeout of A's changes (blocked until A dies). */
static int child_writeout(void *arg)
{
    struct big_writeout *w = arg;
    struct bigfile_writeout o = { .flags = BFT_WO_BOTH };
    return bft_ioctl(w->path, BIGFILE_IOC_WRITEOUT, &o) == 0 ? 0 : 1;
}

/* A is killed while its writeout uploads: nothing of it is committed, and
 * B goes on (it reads the data as before, and commits). */
BFT_TEST(shared, a_daemon_killed_mid_writeout_commits_nothing_and_b_goes_on, SETUP_SHARED2, 120)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    const uint64_t nblk = 256; /* 256 MiB in 1 MiB blocks: an upload of a while */
    bft_create("f", "1M", "256M");
    bft_path_on(MA, pa, "f");
    bft_path_on(MB, pb, "f");
    bft_put_commit(pa, 0, 4 * BFT_MB, 1);
    bft_expect(pb, 0, 4 * BFT_MB, 1, "B reads the committed data");
    int64_t before = -1;
    cr_assert_eq(bft_sql_int(bft.db, SQL_SERIAL, &before), 0);
    for (uint64_t k = 0; k < nblk; k += 16)
        bft_put(pa, k * BFT_MB, 16 * BFT_MB, 2); /* A's uncommitted change */

    struct big_writeout w;
    snprintf(w.path, sizeof(w.path), "%s", pa);
    pid_t child = bft_spawn(child_writeout, &w);
    cr_assert_gt(child, 0);
    cr_assert(bft_wait_for(uploading, NULL, 30), "A's writeout never began to upload");
    /* Freeze A, check the commit has not happened, kill it. */
    cr_assert_eq(kill(bft_daemon_of(MA), SIGSTOP), 0);
    int64_t after = -1;
    cr_assert_eq(bft_sql_int(bft.db, SQL_SERIAL, &after), 0);
    cr_assert_eq(after, before, "A's writeout committed before it could be killed");
    int st = bft_kill_on(MA, SIGKILL);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "A died of SIGKILL (0x%x)", st);
    int cst = bft_wait_pid(child, 20);
    cr_expect(cst != -1 && WIFEXITED(cst) && WEXITSTATUS(cst) == 1,
              "the writer's writeout failed with A's death (0x%x)", cst);

    cr_assert_eq(bft_sql_int(bft.db, SQL_SERIAL, &after), 0);
    cr_expect_eq(after, before, "nothing committed");
    int64_t n = -1;
    cr_assert_eq(bft_sql_int(bft.db, "SELECT count(*) FROM blocks WHERE blk >= 4", &n), 0);
    cr_expect_eq(n, 0, "no block of the writeout is in the database");
    bft_expect(pb, 0, 4 * BFT_MB, 1, "B reads the data as before");
    bft_expect(pb, 4 * BFT_MB, 4 * BFT_MB, BFT_ZEROS, "and the holes");
    bft_put(pb, 8 * BFT_MB, BFT_MB, 3);
    struct bigfile_writeout2 wb;
    cr_expect_eq(writeout2(pb, 0, &wb), 0, "B commits after A's death");
    cr_expect_gt(wb.serial, (uint64_t)before);
}

#ifndef BFT_PG
/* ---- refusals, the upgrade (SQLite: the file's bytes) ------------------------------------------------------------ */

/* Start a daemon on bft.db at DIR/mnt2 with -o opts (NULL: none); expect
 * it to be refused (exit 1, the database named, "in use") and the
 * database's bytes unchanged (A is stopped meanwhile, so that nothing
 * else writes). */
static void expect_in_use(const char *opts, const char *what)
{
    char mnt[PATH_MAX + 16];
    snprintf(mnt, sizeof(mnt), "%s/mnt2", bft.dir);
    mkdir(mnt, 0755);
    cr_assert_eq(kill(bft.daemon, SIGSTOP), 0);
    char *db0 = bft_slurp(bft.db);
    struct stat st0, st1;
    cr_assert_eq(stat(bft.db, &st0), 0);
    const char *argv[8] = { "-f" };
    int n = 1;
    if (opts) {
        argv[n++] = "-o";
        argv[n++] = opts;
    }
    argv[n++] = bft.db;
    argv[n++] = mnt;
    argv[n] = NULL;
    int st = bft_daemon_run(10, argv);
    cr_assert_eq(stat(bft.db, &st1), 0);
    char *db1 = bft_slurp(bft.db);
    kill(bft.daemon, SIGCONT);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "%s: exit 1 (0x%x)", what, st);
    cr_expect(!bft_is_fuse(mnt), "%s: nothing mounted", what);
    char *log = bft_slurp(bft.log);
    cr_expect(log && strstr(log, bft.db) && strstr(log, "in use"),
              "%s: the message names the database and says it is in use:\n%s", what,
              log ? log : "");
    free(log);
    cr_expect(st0.st_size == st1.st_size && st0.st_mtim.tv_nsec == st1.st_mtim.tv_nsec && db0 &&
                  db1 && memcmp(db0, db1, (size_t)st0.st_size) == 0,
              "%s: the database's bytes changed", what);
    free(db0);
    free(db1);
}

BFT_TEST(shared, a_second_daemon_without_shared_is_refused, bft_setup_sqlite, 60)
{
    bft_create("f", "64K", "64K");
    expect_in_use(NULL, "a second daemon, neither shared");
    expect_in_use("shared", "a shared daemon on an exclusive one's database");
    char p[PATH_MAX];
    bft_expect(bft_path(p, "f"), 0, BS, BFT_ZEROS, "the first daemon serves on");
}

BFT_TEST(shared, an_exclusive_daemon_on_a_shared_database_is_refused, SETUP_SHARED2, 60)
{
    expect_in_use(NULL, "an exclusive daemon on shared daemons' database");
}

/* A database of bigfilefs 0.1 (schema 1), mounted read-write: upgraded in
 * place, its data intact and committable; read-only, refused. */
BFT_TEST(shared, a_schema_1_database_is_upgraded_by_a_read_write_mount, SETUP_NOMOUNT, 60)
{
    char p[PATH_MAX];
    cr_assert_eq(bft_sql_exec(bft.db, bft_schema1_sql), 0);
    int64_t v = -1;
    cr_assert_eq(bft_sql_int(bft.db, "SELECT length(data) FROM main.blocks WHERE blk = 0", &v), 0);
    cr_assert_eq(v, 65536, "the schema-1 block was made as wanted");
    const char *argv[] = { "-f", "-o", "ro", bft.db, bft.mnt, NULL };
    int st = bft_daemon_run(10, argv);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "ro: refused (0x%x)", st);
    char *log = bft_slurp(bft.log);
    cr_expect(log && strstr(log, "read-write"), "ro: says a read-write mount upgrades it:\n%s",
              log ? log : "");
    free(log);
    cr_assert_eq(bft_sql_int(bft.db, "PRAGMA user_version", &v), 0);
    cr_expect_eq(v, 1, "the refused mount changed nothing");

    bft_mount();
    cr_assert_eq(bft_sql_int(bft.db, "PRAGMA user_version", &v), 0);
    cr_expect_eq(v, 3, "upgraded (schema 3: 1 -> 2 -> 3)");
    bft_path(p, "old");
    cr_expect_eq(bft_size(p), 196618);
    cr_expect(holds_bytes(p, 0, BS, 'a'), "block 0 intact");
    cr_expect(holds_bytes(p, BS, BS, 0), "block 1, a hole");
    cr_expect(holds_bytes(p, 2 * BS, BS, 'c'), "block 2 intact");
    cr_expect(holds_bytes(p, 3 * BS, 10, 0), "the tail");
    put_bytes(p, BS + 5, 5, 'b');
    cr_assert_eq(writeout2(p, 0, NULL), 0, "a commit on the upgraded database");
    bft_remount();
    cr_expect(holds_bytes(p, 0, BS, 'a') && holds_bytes(p, BS + 5, 5, 'b') &&
                  holds_bytes(p, 2 * BS, BS, 'c'),
              "the old data and the new commit after a remount");
}
#endif /* !BFT_PG */

#ifdef BFT_PG
/* ---- what only PostgreSQL has: connections and a server that go away ------------- */

/* bft_wait_for's condition: a WRITEOUT2 of path succeeded, or failed otherwise than
 * with EIO (the server still away). */
struct writeout_ok {
    const char *path;
    struct bigfile_writeout2 w;
    int r, eio;
};

static int writeout_ok(void *arg)
{
    struct writeout_ok *w = arg;
    w->r = writeout2(w->path, 0, &w->w);
    w->eio += w->r == -EIO;
    return w->r != -EIO;
}

/* And for a SYNC of path reaching serial. */
struct synced {
    const char *path;
    uint64_t serial, got;
    int r;
};

static int synced(void *arg)
{
    struct synced *w = arg;
    struct bigfile_serial s = { 0 };
    w->r = bft_ioctl(w->path, BIGFILE_IOC_SYNC, &s);
    w->got = s.serial;
    return w->r == 0 && s.serial >= w->serial;
}

/* Retry a writeout of path while it fails with EIO (20 s at most); assert
 * it succeeded and return its serial. Every failed one kept the changes. */
static uint64_t writeout_until_ok(const char *path, const char *what)
{
    struct writeout_ok w = { .path = path };
    bft_wait_for(writeout_ok, &w, 20);
    cr_assert_eq(w.r, 0, "%s: the writeout: %s (after %d EIO)", what, strerror(-w.r), w.eio);
    return w.w.serial;
}

/* Wait (20 s at most) until SYNC through path reaches serial. */
static void sync_until(const char *path, uint64_t serial, const char *what)
{
    struct synced w = { .path = path, .serial = serial };
    bft_wait_for(synced, &w, 20);
    cr_assert(w.r == 0 && w.got >= serial, "%s: SYNC gives %llu (%s), want %llu", what,
              (unsigned long long)w.got, strerror(-w.r), (unsigned long long)serial);
}

/* Every server connection of B's daemon is ended (pg_terminate_backend).
 * While the database takes connections, B reopens them as it needs them:
 * nothing fails. While it takes none, B serves what it has cached, a load
 * and a writeout fail with EIO (the change kept); once it takes them
 * again, B loads, its next writeout succeeds, and its watcher follows A's
 * next commit. */
BFT_TEST(shared, a_mount_whose_connections_are_killed_serves_its_cache_then_reconnects,
         SETUP_SHARED2, 90)
{
    char pa[PATH_MAX], pb[PATH_MAX], ga[PATH_MAX], gb[PATH_MAX], ha[PATH_MAX], hb[PATH_MAX];
    char sql[128];
    shared_file("f", 8, 1, pa, pb);
    shared_file("g", 4, 5, ga, gb); /* B reads g only once its connections are gone */
    shared_file("h", 4, 6, ha, hb); /* ... and h only once they cannot come back */
    bft_expect(pb, 0, 8 * BS, 1, "B loads f");

    cr_assert_gt(bft_pg_terminate(MB), 0, "B's daemon had connections");
    bft_expect(pb, 0, BS, 1, "B serves what it cached");
    bft_expect(gb, 0, BS, 5, "B reopens a reader for a load");
    uint64_t sb = put_commit2(pb, 6 * BS, BS, 2);
    sync_until(pa, sb, "A sees B's commit");
    bft_expect(pa, 6 * BS, BS, 2, "A reads B's block");

    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS false", bft.pgdb);
    cr_assert_eq(bft_pg_admin(sql), 0);
    cr_assert_gt(bft_pg_terminate(MB), 0, "B's daemon had connections");
    bft_expect(pb, 0, 6 * BS, 1, "B serves what it cached");
    uint8_t *buf = malloc(BS);
    cr_expect_eq(bft_pread(hb, buf, BS, 0), -EIO, "a load B cannot make: EIO");
    free(buf);
    bft_put(pb, 7 * BS, BS, 3);
    cr_expect_eq(writeout2(pb, 0, NULL), -EIO, "a writeout B cannot make: EIO");
    cr_expect_eq(stat_of(pb).dirty_blocks, 1, "its change is kept");

    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS true", bft.pgdb);
    cr_assert_eq(bft_pg_admin(sql), 0);
    bft_expect(hb, 0, BS, 6, "B loads again");
    struct bigfile_writeout2 w;
    cr_expect_eq(writeout2(pb, 0, &w), 0, "B's next writeout succeeds");
    sync_until(pa, w.serial, "A sees B's commit");
    bft_expect(pa, 7 * BS, BS, 3, "A reads B's retried block");
    uint64_t sa = put_commit2(pa, 3 * BS, BS, 4);
    sync_until(pb, sa, "B's watcher came back");
    bft_expect(pb, 3 * BS, BS, 4, "B reads A's next commit");
}

/* The server restarts while A and B are mounted (B maps the file): both
 * resume. A's writeout succeeds (after EIO while the server was away, its
 * changes kept), B's mapping shows it, and B commits in turn. */
BFT_TEST(shared, a_server_restart_under_two_mounts_both_resume, SETUP_SHARED2, 120)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    struct bft_peer peer;
    shared_file("f", 8, 1, pa, pb);
    cr_assert_eq(bft_peer_start(&peer, pb, 8 * BS), 0);
    cr_assert_eq(bft_peer_check(&peer, 0, 8 * BS, 1), 1, "B maps the committed data");
    bft_put(pa, 3 * BS, BS, 2);

    cr_assert_eq(bft_pg_restart(), 0, "the server restarts");

    cr_expect_eq(bft_peer_check(&peer, 0, 8 * BS, 1), 1, "B's mapping kept its pages");
    uint64_t sa = writeout_until_ok(pa, "A after the restart");
    bft_expect(pa, 3 * BS, BS, 2, "A's change");
    expect_peer_shows(&peer, 3 * BS, BS, 2, "A's commit after the restart, in B's mapping");
    sync_until(pb, sa, "B caught up");
    bft_put(pb, 5 * BS, BS, 3);
    uint64_t sb = writeout_until_ok(pb, "B after the restart");
    cr_expect_gt(sb, sa);
    sync_until(pa, sb, "A sees B's commit");
    bft_expect(pa, 5 * BS, BS, 3, "A reads B's block");
    cr_expect_eq(bft_peer_stop(&peer), 0);
}
/* ---- the mount's refusals ------------------------------------------------------------- */

/* `bigfilefs -f -o shared SPEC MNT` is refused: exit 1, nothing mounted,
 * one line that contains `names`, and never the password "sekrit". */
static void expect_refused(const char *spec, const char *names, const char *what)
{
    const char *argv[] = { "-f", "-o", "shared", spec, bft.mnt, NULL };
    int st = bft_daemon_run(30, argv);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "%s: exit 1 (0x%x)", what, st);
    cr_expect(!bft_is_fuse(bft.mnt), "%s: nothing mounted", what);
    char *log = bft_slurp(bft.log);
    cr_assert_not_null(log);
    cr_expect(strstr(log, names) != NULL, "%s: the message names %s:\n%s", what, names, log);
    cr_expect(strstr(log, "sekrit") == NULL, "%s: the password is shown:\n%s", what, log);
    char *nl = strchr(log, '\n');
    cr_expect(nl && nl[1] == 0, "%s: one line:\n%s", what, log);
    free(log);
}

/* A bad conninfo, a missing database, a refused login and another
 * application's database: each a clear line and exit 1; the foreign
 * database is not touched. */
BFT_TEST(shared, refused_pg_mounts_name_the_database_never_the_password, SETUP_NOMOUNT, 90)
{
    char spec[sizeof(bft.db) + 64], want[128];
    expect_refused("pg:host=/nowhere password=sekrit no_such_keyword=1",
                   "pg:", "a conninfo libpq does not understand");
    snprintf(spec, sizeof(spec), "%s_none password=sekrit", bft.db);
    snprintf(want, sizeof(want), "dbname=%s_none", bft.pgdb);
    expect_refused(spec, want, "a database that does not exist");
    snprintf(spec, sizeof(spec), "%s user=nobody_here password=sekrit", bft.db);
    snprintf(want, sizeof(want), "dbname=%s", bft.pgdb);
    expect_refused(spec, want, "a role the server refuses");
    cr_assert_eq(bft_sql_exec(bft.db, "CREATE TABLE public.theirs (x int); "
                                      "INSERT INTO public.theirs VALUES (7)"),
                 0);
    snprintf(spec, sizeof(spec), "%s password=sekrit", bft.db);
    expect_refused(spec, want, "another application's database");
    int64_t v = -1;
    cr_assert_eq(bft_sql_int(bft.db,
                             "SELECT (SELECT x FROM public.theirs) = 7 AND "
                             "to_regnamespace('bigfilefs') IS NULL",
                             &v),
                 0);
    cr_expect_eq(v, 1, "the foreign database is as it was, no schema bigfilefs in it");
}

/* The mount table and the daemon's log show a pg: database without its
 * password. */
BFT_TEST(shared, the_mount_table_never_shows_the_password, SETUP_NOMOUNT, 60)
{
    snprintf(bft.db + strlen(bft.db), sizeof(bft.db) - strlen(bft.db), " password=sekrit");
    bft_mount();
    char *mounts = bft_slurp("/proc/self/mountinfo");
    cr_assert_not_null(mounts);
    char want[128];
    snprintf(want, sizeof(want), "dbname=%s", bft.pgdb);
    const char *line = strstr(mounts, bft.mnt);
    cr_expect(line && strstr(line, "fuse.bigfilefs") && strstr(line, "pg:"),
              "the mount is listed with its pg: database:\n%s", mounts);
    cr_expect(strstr(mounts, "sekrit") == NULL, "no password in the mount table:\n%s", mounts);
    free(mounts);
    bft_unmount();
    char *log = bft_slurp(bft.log);
    cr_expect(log && strstr(log, "serving pg:") && !strstr(log, "sekrit"),
              "the daemon's log names the database without its password:\n%s", log ? log : "");
    free(log);
}
#endif /* BFT_PG */
