/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/backends: the optional operations of bigfile.h that
 * the engines implement for issue 12: staging (stage, unstage, stage_drop,
 * storeblk_staged) and partial loads (loadblk_range).
 *
 * STAGING(name) runs a body four times: against the memory and the SQLite
 * engine staging their own way (memory: aside in memory; SQLite: uploads
 * linked by the commit), and against both with the layer's spill file
 * (bf_db_options.spill_file: what an engine without staging gets). Every
 * database is opened shared, so that a second session can make a commit
 * conflict. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* unshare */
#endif
#include <sched.h>
#include <sys/mount.h>

#include "core/fileh.h"
#include "helpers.h"

#define BS 4096u

struct st {
    struct tb t;
    bf_db *db;
    bool spillfile;
};

/* Contents staged now in st's session. */
static int64_t staged(struct st *s)
{
    if (s->spillfile)
        return (int64_t)bf_db_spillfile_used(s->db);
    if (s->t.kind != TB_SQLITE)
        return (int64_t)bf_mem_staged(s->db);
    sqlite3 *c;
    sqlite3_stmt *q;
    int64_t n = -1;
    cr_assert_eq(sqlite3_open_v2(s->t.path, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(
        sqlite3_prepare_v2(c, "SELECT count(*) FROM uploads WHERE session=?", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)bf_db_session(s->db));
    if (sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(c);
    return n;
}

static void st_open(struct st *s, int sqlite, bool spillfile)
{
    struct bf_db_options opt = { .spill_file = spillfile, .spill_dir = "/tmp" };
    char err[512] = "";
    memset(s, 0, sizeof(*s));
    s->spillfile = spillfile;
    s->t.kind = sqlite ? TB_SQLITE : TB_MEMORY;
    if (sqlite)
        tb_mkdir(&s->t);
    snprintf(s->t.spec, sizeof(s->t.spec), "%s", sqlite ? s->t.path : "mem:test");
    int r = bf_db_open_ex(s->t.spec, BF_DB_CREATE | BF_DB_SHARED, &opt, &s->db, err, sizeof(err));
    cr_assert_eq(r, 0, "bf_db_open: %d %s", r, err);
}

static void st_close(struct st *s)
{
    bf_db_close(s->db);
    if (s->t.kind == TB_SQLITE)
        tb_rmdir(&s->t);
}

#define STAGING(name, secs)                       \
    static void name##_body(struct st *s);        \
    static void name##_run(int sqlite, bool sf)   \
    {                                             \
        struct st s;                              \
        st_open(&s, sqlite, sf);                  \
        name##_body(&s);                          \
        st_close(&s);                             \
    }                                             \
    Test(memory, name, .timeout = secs)           \
    {                                             \
        name##_run(0, false);                     \
    }                                             \
    Test(sqlite, name, .timeout = secs)           \
    {                                             \
        name##_run(1, false);                     \
    }                                             \
    Test(memory_spillfile, name, .timeout = secs) \
    {                                             \
        name##_run(0, true);                      \
    }                                             \
    Test(sqlite_spillfile, name, .timeout = secs) \
    {                                             \
        name##_run(1, true);                      \
    }                                             \
    static void name##_body(struct st *s)

/* A file of nblk blocks, committed with tb_fill(tag 1), and a bf_file. */
static bf_file *st_file(struct st *s, const char *name, uint64_t nblk, uint64_t *id)
{
    struct bf_fileinfo fi;
    bf_file *f;
    cr_assert_eq(bf_db_create(s->db, name, BS, 0, 0644, 0, 0, &fi), 0);
    cr_assert_eq(bf_db_file_open(s->db, fi.id, &f), 0);
    if (nblk)
        tb_store_range(f, 0, nblk, 1, nblk * BS);
    if (id)
        *id = fi.id;
    return f;
}

static uint64_t stage_fill(bf_file *f, uint64_t blk, unsigned tag)
{
    char buf[BS];
    uint64_t token = UINT64_MAX;
    tb_fill(buf, BS, blk, tag);
    cr_assert_eq(f->ops->stage(f, blk, buf, &token), 0);
    return token;
}

static void expect_unstage(bf_file *f, uint64_t token, uint64_t blk, int tag)
{
    char buf[BS];
    memset(buf, 0x5a, BS);
    cr_assert_eq(f->ops->unstage(f, token, buf), 0);
    if (tag < 0)
        cr_assert(tb_is_zero(buf, BS), "a staged block of zeros came back otherwise");
    else
        cr_assert(tb_check(buf, BS, blk, (unsigned)tag), "staged block %llu came back wrong",
                  (unsigned long long)blk);
}

STAGING(stage_unstage_and_drop, 20)
{
    bf_file *f = st_file(s, "f", 4, NULL);
    uint64_t t0 = stage_fill(f, 0, 2), t1 = stage_fill(f, 1, 3), t2 = stage_fill(f, 0, 4);
    cr_assert(t0 != t1 && t1 != t2 && t0 != t2, "tokens reused");
    cr_assert_eq(staged(s), 3);
    expect_unstage(f, t1, 1, 3);
    expect_unstage(f, t0, 0, 2);
    expect_unstage(f, t2, 0, 4);
    expect_unstage(f, t0, 0, 2); /* unstage keeps it */
    tb_expect(f, 0, 1);          /* no reader sees a staged content */
    f->ops->stage_drop(f, t1);
    cr_assert_eq(staged(s), 2);
    expect_unstage(f, t0, 0, 2);
    f->ops->stage_drop(f, t0);
    f->ops->stage_drop(f, t2);
    cr_assert_eq(staged(s), 0);
    /* Zeros round-trip (SQLite keeps no row for them). */
    char z[BS] = { 0 };
    uint64_t tz;
    cr_assert_eq(f->ops->stage(f, 3, z, &tz), 0);
    expect_unstage(f, tz, 3, -1);
    f->ops->stage_drop(f, tz);
    cr_assert_eq(staged(s), 0);
    bf_db_file_close(s->db, f);
}

STAGING(a_commit_links_staged_contents_and_uses_them_up, 20)
{
    uint64_t id;
    bf_file *f = st_file(s, "f", 8, &id);
    uint64_t tok[4];
    for (uint64_t b = 0; b < 4; b++)
        tok[b] = stage_fill(f, 2 * b, 5);
    cr_assert_eq(f->ops->begin(f), 0);
    for (uint64_t b = 0; b < 4; b++)
        cr_assert_eq(f->ops->storeblk_staged(f, 2 * b, tok[b], BF_SERIAL_NOW), 0);
    char buf[BS];
    tb_fill(buf, BS, 1, 6);
    cr_assert_eq(tb_store(f, 1, buf), 0); /* with a plain store */
    for (uint64_t b = 0; b < 8; b++)
        tb_expect(f, b, 1); /* not before the commit */
    cr_assert_eq(tb_commit(f, 8 * BS), 0);
    cr_assert_eq(staged(s), 0, "the commit did not use its staged contents up");
    for (uint64_t b = 0; b < 8; b++)
        tb_expect(f, b, b % 2 == 0 ? 5 : b == 1 ? 6 : 1);
    bf_db_file_close(s->db, f);
    /* Durable: another session (or a reopened one) reads them. */
    bf_db *o = tb_session(&s->t, BF_DB_SHARED);
    cr_assert_eq(bf_db_file_open(o, id, &f), 0);
    for (uint64_t b = 0; b < 8; b += 2)
        tb_expect(f, b, 5);
    bf_db_file_close(o, f);
    bf_db_close(o);
}

STAGING(an_aborted_or_refused_transaction_keeps_its_staged_contents, 20)
{
    uint64_t id;
    bf_file *f = st_file(s, "f", 4, &id);
    uint64_t serial0;
    cr_assert_eq(f->ops->loadblk(f, 0, BF_SERIAL_NOW, (char[BS]){ 0 }, &serial0), 0);
    uint64_t t0 = stage_fill(f, 0, 2), t1 = stage_fill(f, 1, 2);
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(f->ops->storeblk_staged(f, 0, t0, serial0), 0);
    cr_assert_eq(f->ops->storeblk_staged(f, 1, t1, serial0), 0);
    f->ops->abort(f);
    cr_assert_eq(staged(s), 2, "an abort lost staged contents");
    expect_unstage(f, t0, 0, 2);
    /* Another session changes block 1 after the base: refused. */
    bf_db *o = tb_session(&s->t, BF_DB_SHARED);
    bf_file *g;
    cr_assert_eq(bf_db_file_open(o, id, &g), 0);
    tb_store_range(g, 1, 2, 3, 4 * BS);
    bf_db_file_close(o, g);
    bf_db_close(o);
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(f->ops->storeblk_staged(f, 0, t0, serial0), 0);
    cr_assert_eq(f->ops->storeblk_staged(f, 1, t1, serial0), 0);
    struct bf_commit_req req = { .size_base = serial0, .file_base = serial0 };
    uint64_t serial;
    cr_assert_eq(f->ops->commit(f, &req, &serial), -ESTALE);
    cr_assert_eq(staged(s), 2, "a refused commit lost staged contents");
    expect_unstage(f, t1, 1, 2);
    tb_expect(f, 0, 1);
    tb_expect(f, 1, 3);
    /* Retried with OVERWRITE: committed. */
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(f->ops->storeblk_staged(f, 0, t0, serial0), 0);
    cr_assert_eq(f->ops->storeblk_staged(f, 1, t1, serial0), 0);
    req.flags = BF_COMMIT_OVERWRITE;
    cr_assert_eq(f->ops->commit(f, &req, &serial), 0);
    cr_assert_eq(staged(s), 0);
    tb_expect(f, 0, 2);
    tb_expect(f, 1, 2);
    bf_db_file_close(s->db, f);
}

STAGING(loadblk_range_reads_part_of_a_version, 20)
{
    bf_file *f = st_file(s, "f", 4, NULL);
    bf_db *o = tb_session(&s->t, BF_DB_SHARED); /* not alone: old versions are kept */
    uint64_t s1 = 0;
    cr_assert_eq(f->ops->loadblk(f, 0, BF_SERIAL_NOW, (char[BS]){ 0 }, &s1), 0);
    tb_store_range(f, 0, 1, 2, 4 * BS);
    cr_assert_not_null(f->ops->loadblk_range);
    char want[BS], got[BS];
    uint64_t serial = UINT64_MAX;
    tb_fill(want, BS, 0, 1);
    memset(got, 0x5a, BS);
    cr_assert_eq(f->ops->loadblk_range(f, 0, s1, 1000, 1500, got, &serial), 0);
    cr_assert(memcmp(got, want + 1000, 1500) == 0, "the range as of the first version");
    cr_assert_eq(serial, s1);
    tb_fill(want, BS, 0, 2);
    cr_assert_eq(f->ops->loadblk_range(f, 0, BF_SERIAL_NOW, BS - 8, 8, got, NULL), 0);
    cr_assert(memcmp(got, want + BS - 8, 8) == 0, "the range of the current version");
    cr_assert_eq(f->ops->loadblk_range(f, 9, BF_SERIAL_NOW, 0, 100, got, NULL), 0);
    cr_assert(tb_is_zero(got, 100), "a block never stored reads as zeros");
    bf_db_file_close(s->db, f);
    bf_db_close(o);
}

Test(memory, a_failing_stage_keeps_nothing, .timeout = 20)
{
    struct st s;
    st_open(&s, 0, false);
    bf_file *f = st_file(&s, "f", 2, NULL);
    struct bf_mem_fault fault = { .op = BF_MEM_STAGE, .err = ENOSPC, .blk_hi = UINT64_MAX };
    cr_assert_eq(bf_mem_inject(s.db, &fault), 0);
    char buf[BS];
    uint64_t tok;
    tb_fill(buf, BS, 0, 2);
    cr_assert_eq(f->ops->stage(f, 0, buf, &tok), -ENOSPC);
    cr_assert_eq(staged(&s), 0);
    cr_assert_eq(bf_mem_calls(s.db, BF_MEM_STAGE), 1);
    bf_mem_clear_faults(s.db);
    tok = stage_fill(f, 0, 2);
    fault.op = BF_MEM_UNSTAGE;
    fault.err = EIO;
    cr_assert_eq(bf_mem_inject(s.db, &fault), 0);
    cr_assert_eq(f->ops->unstage(f, tok, buf), -EIO);
    bf_mem_clear_faults(s.db);
    expect_unstage(f, tok, 0, 2);
    f->ops->stage_drop(f, tok);
    bf_db_file_close(s.db, f);
    st_close(&s);
}

/* A staging area on a small file system fills up: -ENOSPC, what was
 * staged stays readable, and dropping a content makes room again. In a
 * private mount namespace, a 256 KiB tmpfs (root only: skipped else). */
static void full_staging_area(int sqlite, bool spillfile)
{
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        cr_log_info("no private mount namespace (%s): skipped", strerror(errno));
        return;
    }
    char dir[] = "/tmp/bf-full-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(mount("tmpfs", dir, "tmpfs", 0, sqlite && !spillfile ? "size=4m" : "size=256k"), 0,
                 "mount: %s", strerror(errno));
    struct st s;
    memset(&s, 0, sizeof(s));
    s.spillfile = spillfile;
    snprintf(s.t.dir, sizeof(s.t.dir), "%s", dir);
    snprintf(s.t.path, sizeof(s.t.path), "%s/db.sqlite", dir);
    s.t.kind = sqlite ? TB_SQLITE : TB_MEMORY;
    snprintf(s.t.spec, sizeof(s.t.spec), "%s", sqlite ? s.t.path : "mem:test");
    struct bf_db_options opt = { .spill_file = spillfile, .spill_dir = dir };
    char err[256];
    cr_assert_eq(bf_db_open_ex(sqlite ? s.t.path : "mem:test", BF_DB_CREATE | BF_DB_SHARED, &opt,
                               &s.db, err, sizeof(err)),
                 0, "%s", err);
    bf_file *f = st_file(&s, "f", 1, NULL);
    uint64_t tok[1024], n = 0;
    char buf[BS];
    int r = 0;
    while (n < 1024) {
        tb_fill(buf, BS, n, 2);
        r = f->ops->stage(f, n, buf, &tok[n]);
        if (r < 0)
            break;
        n++;
    }
    cr_assert_eq(r, -ENOSPC, "a full staging area answered %d after %llu blocks", r,
                 (unsigned long long)n);
    cr_assert_gt(n, 0);
    for (uint64_t i = 0; i < n; i += 7)
        expect_unstage(f, tok[i], i, 2);
    f->ops->stage_drop(f, tok[0]);
    f->ops->stage_drop(f, tok[1]);
    if (spillfile) {
        /* The spill file gives a dropped slot's space back at once (SQLite
         * reuses it too, but its WAL may still be full). */
        tok[0] = stage_fill(f, 0, 3);
        expect_unstage(f, tok[0], 0, 3);
    } else {
        tok[0] = UINT64_MAX;
    }
    for (uint64_t i = 0; i < n; i++)
        if (i != 1 && tok[i] != UINT64_MAX)
            f->ops->stage_drop(f, tok[i]);
    /* SQLite cannot give uploads up while its WAL is full: they stay the
     * session's, for the housekeeping once it ends — and so may the one
     * whose data found no room in the block file (its rows committed
     * before its write failed). */
    if (spillfile)
        cr_assert_eq(staged(&s), 0);
    else
        cr_assert_leq(staged(&s), (int64_t)n + 1);
    bf_db_file_close(s.db, f);
    bf_db_close(s.db);
    umount(dir);
    rmdir(dir);
}

Test(sqlite, a_full_staging_area_answers_enospc, .timeout = 60)
{
    full_staging_area(1, false);
}

Test(memory_spillfile, a_full_staging_area_answers_enospc, .timeout = 60)
{
    full_staging_area(0, true);
}

/* The core over each engine: a handle writes 16x its dirty budget, the
 * blocks past it spill into the engine's staging area (or the spill file),
 * come back when read, and a writeout commits them all. */
STAGING(the_core_spills_into_the_store, 60)
{
    uint64_t id;
    bf_file *f = st_file(s, "f", 0, &id);
    bf_ram *ram;
    bf_fileh *fh;
    cr_assert_eq(bf_ram_new(1 << 20, &ram), 0);
    bf_ram_set_dirty_budget(ram, 4 * BS);
    cr_assert_eq(bf_fileh_open(f, ram, &fh), 0);
    char buf[BS];
    for (uint64_t b = 0; b < 64; b++) {
        tb_fill(buf, BS, b, 7);
        cr_assert_eq(bf_fileh_write(fh, buf, BS, b * BS), (ssize_t)BS);
        struct bf_ram_stats rs;
        bf_ram_stat(ram, &rs);
        cr_assert_leq(rs.dirty_bytes, 5 * BS);
    }
    struct bf_fileh_stats st;
    bf_fileh_stat(fh, &st);
    cr_assert_eq(st.spilled_blocks, 60);
    cr_assert_eq(staged(s), 60);
    for (uint64_t b = 0; b < 64; b += 9) {
        cr_assert_eq(bf_fileh_read(fh, buf, BS, b * BS), (ssize_t)BS);
        cr_assert(tb_check(buf, BS, b, 7), "block %llu read back wrong", (unsigned long long)b);
    }
    struct bf_writeout_result res;
    cr_assert_eq(bf_fileh_writeout(fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &res), 0);
    cr_assert_eq(res.blocks, 64);
    cr_assert_eq(staged(s), 0);
    for (uint64_t b = 0; b < 64; b++)
        tb_expect(f, b, 7);
    cr_assert_eq(bf_fileh_check(fh), 0);
    bf_fileh_close(fh);
    cr_assert_eq(bf_ram_free(ram), 0);
    bf_db_file_close(s->db, f);
}
