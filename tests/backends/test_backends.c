/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/backends: the behaviour every backend shares (backend.h
 * and bigfile.h), run against the memory and the SQLite backend, and as
 * test_backends_pg against the PostgreSQL one. */
#include <signal.h>

#include "helpers.h"

#define BS 4096u

static bf_file *open_file(bf_db *db, uint64_t id)
{
    bf_file *f = NULL;
    int r = bf_db_file_open(db, id, &f);
    cr_assert_eq(r, 0, "file_open(%llu) = %d", (unsigned long long)id, r);
    cr_assert_not_null(f);
    return f;
}

static uint64_t mk(bf_db *db, const char *name, uint32_t blksize)
{
    struct bf_fileinfo fi;
    int r = bf_db_create(db, name, blksize, 0, 0640, 1000, 100, &fi);
    cr_assert_eq(r, 0, "create(%s) = %d", name, r);
    return fi.id;
}

/* ---- namespace ----------------------------------------------------------- */

struct names {
    char v[8][BF_NAME_MAX + 1];
    int n, stop_at;
};

static int collect(void *arg, const struct bf_fileinfo *fi)
{
    struct names *ns = arg;
    cr_assert_lt(ns->n, 8);
    strcpy(ns->v[ns->n++], fi->name);
    return ns->n == ns->stop_at ? 42 : 0;
}

BOTH(create_lookup_list, 20)
{
    struct bf_fileinfo fi, fj;
    char longname[BF_NAME_MAX + 2];

    cr_assert_eq(bf_db_create(db, "b", BS, 3 * BS + 1, 0100644, 7, 8, &fi), 0);
    cr_assert_geq(fi.id, 1);
    cr_assert_str_eq(fi.name, "b");
    cr_assert_eq(fi.blksize, BS);
    cr_assert_eq(fi.size, 3 * BS + 1);
    cr_assert_eq(fi.mode, 0644, "only permission bits are kept");
    cr_assert_eq(fi.uid, 7);
    cr_assert_eq(fi.gid, 8);
    cr_assert_gt(fi.mtime_ns, 0);

    cr_assert_eq(bf_db_lookup(db, "b", &fj), 0);
    cr_assert_eq(fj.id, fi.id);
    cr_assert_eq(fj.size, fi.size);
    cr_assert_eq(fj.mode, 0644);
    cr_assert_eq(fj.mtime_ns, fi.mtime_ns);
    cr_assert_eq(bf_db_getinfo(db, fi.id, &fj), 0);
    cr_assert_str_eq(fj.name, "b");

    uint64_t a = mk(db, "a", 1u << 21);
    uint64_t c = mk(db, "c", BF_BLKSIZE_MAX);
    cr_assert(a != fi.id && c != fi.id && a != c);

    cr_assert_eq(bf_db_create(db, "b", BS, 0, 0644, 0, 0, NULL), -EEXIST);
    cr_assert_eq(bf_db_lookup(db, "nope", &fj), -ENOENT);
    cr_assert_eq(bf_db_getinfo(db, 999999, &fj), -ENOENT);

    /* bad names, sizes, block sizes */
    cr_assert_eq(bf_db_create(db, "", BS, 0, 0644, 0, 0, NULL), -EINVAL);
    cr_assert_eq(bf_db_create(db, "x/y", BS, 0, 0644, 0, 0, NULL), -EINVAL);
    cr_assert_eq(bf_db_create(db, ".", BS, 0, 0644, 0, 0, NULL), -EINVAL);
    cr_assert_eq(bf_db_create(db, "..", BS, 0, 0644, 0, 0, NULL), -EINVAL);
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    cr_assert_eq(bf_db_create(db, longname, BS, 0, 0644, 0, 0, NULL), -ENAMETOOLONG);
    longname[BF_NAME_MAX] = '\0'; /* exactly the maximum is fine */
    cr_assert_eq(bf_db_create(db, longname, BS, 0, 0644, 0, 0, NULL), 0);
    cr_assert_eq(bf_db_lookup(db, longname, &fj), 0);
    cr_assert_eq(bf_db_unlink(db, longname), 0);
    cr_assert_eq(bf_db_create(db, "z", 3000, 0, 0644, 0, 0, NULL), -EINVAL);
    cr_assert_eq(bf_db_create(db, "z", 2048, 0, 0644, 0, 0, NULL), -EINVAL);
    cr_assert_eq(bf_db_create(db, "z", BF_BLKSIZE_MAX * 2, 0, 0644, 0, 0, NULL), -EINVAL);
    cr_assert_eq(bf_db_create(db, "z", BS, BF_SIZE_MAX + 1, 0644, 0, 0, NULL), -EINVAL);
    cr_assert_eq(bf_db_create(db, "z", BS, BF_SIZE_MAX, 0644, 0, 0, NULL), 0);
    cr_assert_eq(bf_db_unlink(db, "z"), 0);

    struct names ns = { .stop_at = -1 };
    cr_assert_eq(bf_db_list(db, collect, &ns), 0);
    cr_assert_eq(ns.n, 3);
    cr_assert_str_eq(ns.v[0], "a");
    cr_assert_str_eq(ns.v[1], "b");
    cr_assert_str_eq(ns.v[2], "c");

    struct names ns2 = { .stop_at = 2 };
    cr_assert_eq(bf_db_list(db, collect, &ns2), 42, "list returns the callback's nonzero value");
    cr_assert_eq(ns2.n, 2);
}

BOTH(ids_never_reused, 20)
{
    uint64_t a = mk(db, "a", BS);
    cr_assert_eq(bf_db_unlink(db, "a"), 0);
    uint64_t b = mk(db, "a", BS);
    cr_assert_gt(b, a, "a new file gets a new id, even under an old name");
    cr_assert_eq(bf_db_getinfo(db, a, NULL), -ENOENT);
}

BOTH(unlink_basic, 20)
{
    mk(db, "a", BS);
    cr_assert_eq(bf_db_unlink(db, "nope"), -ENOENT);
    cr_assert_eq(bf_db_unlink(db, "a"), 0);
    cr_assert_eq(bf_db_lookup(db, "a", NULL), -ENOENT);
    cr_assert_eq(bf_db_unlink(db, "a"), -ENOENT);
}

BOTH(rename_all_modes, 20)
{
    struct bf_fileinfo fi;
    uint64_t a = mk(db, "a", BS), b = mk(db, "b", BS), c = mk(db, "c", BS);

    /* plain rename */
    cr_assert_eq(bf_db_rename(db, "a", "x", 0), 0);
    cr_assert_eq(bf_db_lookup(db, "a", NULL), -ENOENT);
    cr_assert_eq(bf_db_lookup(db, "x", &fi), 0);
    cr_assert_eq(fi.id, a);

    /* NOREPLACE onto an existing name refuses, onto a new one works */
    cr_assert_eq(bf_db_rename(db, "x", "b", BF_RENAME_NOREPLACE), -EEXIST);
    cr_assert_eq(bf_db_lookup(db, "b", &fi), 0);
    cr_assert_eq(fi.id, b);
    cr_assert_eq(bf_db_rename(db, "x", "y", BF_RENAME_NOREPLACE), 0);

    /* EXCHANGE swaps */
    cr_assert_eq(bf_db_rename(db, "y", "b", BF_RENAME_EXCHANGE), 0);
    cr_assert_eq(bf_db_lookup(db, "y", &fi), 0);
    cr_assert_eq(fi.id, b);
    cr_assert_eq(bf_db_lookup(db, "b", &fi), 0);
    cr_assert_eq(fi.id, a);
    cr_assert_eq(bf_db_rename(db, "y", "nope", BF_RENAME_EXCHANGE), -ENOENT);

    /* replace: the old target is gone */
    cr_assert_eq(bf_db_rename(db, "c", "b", 0), 0);
    cr_assert_eq(bf_db_lookup(db, "b", &fi), 0);
    cr_assert_eq(fi.id, c);
    cr_assert_eq(bf_db_getinfo(db, a, NULL), -ENOENT);
    cr_assert_eq(bf_db_lookup(db, "c", NULL), -ENOENT);

    /* errors */
    cr_assert_eq(bf_db_rename(db, "nope", "q", 0), -ENOENT);
    cr_assert_eq(bf_db_rename(db, "b", "q", BF_RENAME_NOREPLACE | BF_RENAME_EXCHANGE), -EINVAL);
    cr_assert_eq(bf_db_rename(db, "b", "q", 1u << 5), -EINVAL);
    cr_assert_eq(bf_db_rename(db, "b", "q/r", 0), -EINVAL);
    cr_assert_eq(bf_db_rename(db, "b", "", 0), -EINVAL);
    /* renaming onto itself changes nothing */
    cr_assert_eq(bf_db_rename(db, "b", "b", 0), 0);
    cr_assert_eq(bf_db_lookup(db, "b", &fi), 0);
    cr_assert_eq(fi.id, c);
}

BOTH(setattr_fields, 20)
{
    struct bf_fileinfo fi, fj;
    cr_assert_eq(bf_db_create(db, "a", BS, 0, 0600, 1, 2, &fi), 0);
    uint32_t mode = 0100755, uid = 33;
    int64_t mt = 1234567890123456789LL;
    tb_after(fi.ctime_ns);
    cr_assert_eq(bf_db_setattr(db, fi.id, &mode, &uid, NULL, &mt), 0);
    cr_assert_eq(bf_db_getinfo(db, fi.id, &fj), 0);
    cr_assert_eq(fj.mode, 0755);
    cr_assert_eq(fj.uid, 33);
    cr_assert_eq(fj.gid, 2, "NULL leaves a field unchanged");
    cr_assert_eq(fj.mtime_ns, mt);
    cr_assert_gt(fj.ctime_ns, fi.ctime_ns, "ctime moves on a metadata change");
    cr_assert_eq(bf_db_setattr(db, fi.id, NULL, NULL, NULL, NULL), 0);
    cr_assert_eq(bf_db_setattr(db, fi.id + 1000, &mode, NULL, NULL, NULL), -ENOENT);
}

BOTH(set_blksize_rules, 20)
{
    struct bf_fileinfo fi;
    uint64_t a = mk(db, "a", BS);
    cr_assert_eq(bf_db_set_blksize(db, a, 3000), -EINVAL);
    cr_assert_eq(bf_db_set_blksize(db, a + 1000, 8192), -ENOENT);
    cr_assert_eq(bf_db_set_blksize(db, a, 8192), 0);
    cr_assert_eq(bf_db_getinfo(db, a, &fi), 0);
    cr_assert_eq(fi.blksize, 8192);

    bf_file *f = open_file(db, a);
    cr_assert_eq(f->blksize, 8192);
    cr_assert_eq(bf_db_set_blksize(db, a, BS), -EBUSY, "refused while open");
    /* a stored block makes it non-empty even at size 0 */
    tb_store_range(f, 0, 1, 1, 0);
    bf_db_file_close(db, f);
    cr_assert_eq(bf_db_set_blksize(db, a, BS), -ENOTEMPTY);

    /* a nonzero size alone makes it non-empty too */
    struct bf_fileinfo fb;
    cr_assert_eq(bf_db_create(db, "b", BS, 1, 0644, 0, 0, &fb), 0);
    cr_assert_eq(bf_db_set_blksize(db, fb.id, 8192), -ENOTEMPTY);
}

/* ---- content ------------------------------------------------------------- */

BOTH(absent_blocks_read_zero, 20)
{
    uint64_t a = mk(db, "a", BS);
    bf_file *f = open_file(db, a);
    cr_assert_eq(f->blksize, BS);
    cr_assert_eq(f->size, 0);
    tb_expect(f, 0, -1);
    tb_expect(f, 123456789, -1);
    tb_expect(f, (BF_SIZE_MAX / BS) - 1, -1);
    bf_db_file_close(db, f);
    cr_assert_eq(bf_db_file_open(db, a + 1000, &f), -ENOENT);
}

BOTH(commit_makes_visible, 20)
{
    struct bf_fileinfo before, after;
    uint64_t a = mk(db, "a", BS);
    cr_assert_eq(bf_db_getinfo(db, a, &before), 0);
    bf_file *f = open_file(db, a), *g = open_file(db, a);
    tb_after(before.mtime_ns);
    tb_store_range(f, 0, 3, 1, 3 * BS);
    tb_store_range(f, 1000, 1001, 1, 1001 * BS - 5);
    cr_assert_eq(f->size, 1001 * BS - 5, "commit updates the committing handle's size");
    for (uint64_t b = 0; b < 3; b++) {
        tb_expect(f, b, 1);
        tb_expect(g, b, 1);
    }
    tb_expect(g, 3, -1);
    tb_expect(g, 1000, 1);
    cr_assert_eq(bf_db_getinfo(db, a, &after), 0);
    cr_assert_eq(after.size, 1001 * BS - 5);
    cr_assert_gt(after.mtime_ns, before.mtime_ns);
    cr_assert_eq(tb_nblocks(t, db, a), 4);
    /* a new handle starts from the committed size */
    bf_file *h = open_file(db, a);
    cr_assert_eq(h->size, 1001 * BS - 5);
    bf_db_file_close(db, h);
    bf_db_file_close(db, g);
    bf_db_file_close(db, f);
}

BOTH(uncommitted_and_aborted_invisible, 20)
{
    uint64_t a = mk(db, "a", BS);
    bf_file *f = open_file(db, a), *g = open_file(db, a);
    void *buf = malloc(BS);
    tb_store_range(f, 0, 2, 1, 2 * BS);

    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(g->ops->begin(g), -EBUSY, "one transaction per file");
    tb_fill(buf, BS, 0, 2);
    cr_assert_eq(tb_store(f, 0, buf), 0);
    tb_fill(buf, BS, 5, 2);
    cr_assert_eq(tb_store(f, 5, buf), 0);
    cr_assert_eq(f->ops->truncate(f, 1), 0);
    /* neither the stores nor the truncate are seen before commit */
    tb_expect(f, 0, 1);
    tb_expect(g, 0, 1);
    tb_expect(g, 1, 1);
    tb_expect(g, 5, -1);
    f->ops->abort(f);
    tb_expect(g, 0, 1);
    tb_expect(g, 1, 1);
    tb_expect(g, 5, -1);
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_getinfo(db, a, &fi), 0);
    cr_assert_eq(fi.size, 2 * BS);
    cr_assert_eq(f->size, 2 * BS);

    /* after abort a new transaction (from the other handle) works */
    cr_assert_eq(g->ops->begin(g), 0);
    tb_fill(buf, BS, 1, 3);
    cr_assert_eq(tb_store(g, 1, buf), 0);
    cr_assert_eq(tb_commit(g, 2 * BS), 0);
    tb_expect(f, 1, 3);
    tb_expect(f, 0, 1);
    free(buf);
    bf_db_file_close(db, g);
    bf_db_file_close(db, f);
}

BOTH(transactions_of_two_files, 20)
{
    uint64_t a = mk(db, "a", BS), b = mk(db, "b", 8192);
    bf_file *fa = open_file(db, a), *fb = open_file(db, b);
    tb_store_range(fa, 0, 2, 1, 2 * BS);
    tb_store_range(fb, 0, 2, 2, 2 * 8192);
    tb_expect(fa, 0, 1);
    tb_expect(fb, 1, 2);
    cr_assert_eq(tb_nblocks(t, db, a), 2);
    cr_assert_eq(tb_nblocks(t, db, b), 2);
    bf_db_file_close(db, fa);
    bf_db_file_close(db, fb);
}

BOTH(zero_block_is_a_hole, 20)
{
    uint64_t a = mk(db, "a", BS);
    bf_file *f = open_file(db, a);
    void *zero = calloc(1, BS);
    tb_store_range(f, 0, 4, 1, 4 * BS);
    cr_assert_eq(tb_nblocks(t, db, a), 4);
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(tb_store(f, 1, zero), 0);
    cr_assert_eq(tb_store(f, 2, zero), 0);
    cr_assert_eq(tb_store(f, 9, zero), 0); /* never stored: stays a hole */
    cr_assert_eq(tb_commit(f, 10 * BS), 0);
    tb_expect(f, 0, 1);
    tb_expect(f, 1, -1);
    tb_expect(f, 2, -1);
    tb_expect(f, 3, 1);
    tb_expect(f, 9, -1);
    cr_assert_eq(tb_nblocks(t, db, a), 2, "zero blocks are not stored");
    free(zero);
    bf_db_file_close(db, f);
}

/* next_stored / stored_blocks: committed blocks only, holes skipped, the
 * open transaction's stores and truncate invisible until commit. */
static int64_t next_st(bf_file *f, uint64_t from)
{
    uint64_t b = UINT64_MAX;
    int r = f->ops->next_stored(f, from, &b);
    return r < 0 ? r : (int64_t)b;
}

static int64_t nstored(bf_file *f)
{
    uint64_t n = UINT64_MAX;
    int r = f->ops->stored_blocks(f, &n);
    return r < 0 ? r : (int64_t)n;
}

BOTH(next_stored_and_count, 20)
{
    uint64_t a = mk(db, "a", BS), other = mk(db, "b", BS);
    bf_file *f = open_file(db, a), *g = open_file(db, other);
    cr_assert_not_null(f->ops->next_stored);
    cr_assert_not_null(f->ops->stored_blocks);
    cr_assert_eq(next_st(f, 0), -ENXIO);
    cr_assert_eq(nstored(f), 0);
    tb_store_range(f, 3, 5, 1, 1000 * BS);
    tb_store_range(f, 900, 901, 1, 1000 * BS);
    tb_store_range(g, 0, 10, 1, 10 * BS); /* another file's blocks */
    cr_assert_eq(next_st(f, 0), 3);
    cr_assert_eq(next_st(f, 3), 3);
    cr_assert_eq(next_st(f, 4), 4);
    cr_assert_eq(next_st(f, 5), 900);
    cr_assert_eq(next_st(f, 900), 900);
    cr_assert_eq(next_st(f, 901), -ENXIO);
    cr_assert_eq(next_st(f, UINT64_MAX), -ENXIO);
    cr_assert_eq(next_st(g, 10), -ENXIO);
    cr_assert_eq(nstored(f), 3);
    cr_assert_eq(nstored(g), 10);

    /* An open transaction is invisible: a store, a hole, a truncate. */
    void *buf = malloc(BS), *zero = calloc(1, BS);
    cr_assert(buf && zero);
    tb_fill(buf, BS, 1, 2);
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(tb_store(f, 1, buf), 0);
    cr_assert_eq(tb_store(f, 3, zero), 0);
    cr_assert_eq(f->ops->truncate(f, 500), 0);
    cr_assert_eq(next_st(f, 0), 3);
    cr_assert_eq(next_st(f, 5), 900);
    cr_assert_eq(nstored(f), 3);
    cr_assert_eq(tb_commit(f, 500 * BS), 0);
    cr_assert_eq(next_st(f, 0), 1);
    cr_assert_eq(next_st(f, 2), 4, "the zero block is a hole");
    cr_assert_eq(next_st(f, 5), -ENXIO, "truncated");
    cr_assert_eq(nstored(f), 2);

    /* An aborted transaction leaves nothing. */
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(tb_store(f, 7, buf), 0);
    f->ops->abort(f);
    cr_assert_eq(next_st(f, 5), -ENXIO);
    cr_assert_eq(nstored(f), 2);
    free(buf);
    free(zero);
    bf_db_file_close(db, f);
    bf_db_file_close(db, g);
}

BOTH(truncate_in_transaction, 20)
{
    uint64_t a = mk(db, "a", BS);
    bf_file *f = open_file(db, a);
    void *buf = malloc(BS);
    tb_store_range(f, 0, 5, 1, 5 * BS);
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(f->ops->truncate(f, 2), 0);
    tb_fill(buf, BS, 3, 2);
    cr_assert_eq(tb_store(f, 3, buf), 0); /* grows back past the cut */
    cr_assert_eq(tb_commit(f, 4 * BS), 0);
    tb_expect(f, 0, 1);
    tb_expect(f, 1, 1);
    tb_expect(f, 2, -1);
    tb_expect(f, 3, 2);
    tb_expect(f, 4, -1);
    cr_assert_eq(tb_nblocks(t, db, a), 3);

    /* truncate to 0 and commit size 0 empties the file */
    cr_assert_eq(f->ops->begin(f), 0);
    cr_assert_eq(f->ops->truncate(f, 0), 0);
    cr_assert_eq(tb_commit(f, 0), 0);
    cr_assert_eq(tb_nblocks(t, db, a), 0);
    tb_expect(f, 0, -1);
    free(buf);
    bf_db_file_close(db, f);
}

BOTH(unlinked_but_open, 20)
{
    struct bf_fileinfo fi;
    uint64_t a = mk(db, "a", BS);
    bf_file *f = open_file(db, a);
    tb_store_range(f, 0, 3, 1, 3 * BS);
    cr_assert_eq(bf_db_unlink(db, "a"), 0);
    cr_assert_eq(bf_db_lookup(db, "a", NULL), -ENOENT);
    /* still readable, still visible by id, under no name */
    tb_expect(f, 2, 1);
    cr_assert_eq(bf_db_getinfo(db, a, &fi), 0);
    cr_assert_str_eq(fi.name, "");
    cr_assert_eq(fi.size, 3 * BS);
    /* and writable: a writeout of an unlinked file still works */
    tb_store_range(f, 3, 4, 2, 4 * BS);
    tb_expect(f, 3, 2);
    /* the name is free for a new, independent file */
    uint64_t b = mk(db, "a", BS);
    cr_assert_neq(a, b);
    bf_file *g = open_file(db, b);
    tb_expect(g, 0, -1);
    bf_db_file_close(db, g);
    struct names ns = { .stop_at = -1 };
    cr_assert_eq(bf_db_list(db, collect, &ns), 0);
    cr_assert_eq(ns.n, 1, "an unlinked file is not listed");

    cr_assert_eq(tb_nblocks(t, db, a), 4);
    bf_db_file_close(db, f);
    cr_assert_eq(bf_db_getinfo(db, a, NULL), -ENOENT, "purged at last close");
    cr_assert_eq(tb_nblocks(t, db, a), 0);
    cr_assert_eq(bf_db_getinfo(db, b, NULL), 0);
}

BOTH(replaced_by_rename_but_open, 20)
{
    uint64_t a = mk(db, "a", BS);
    mk(db, "b", BS);
    bf_file *f = open_file(db, a), *f2 = open_file(db, a);
    tb_store_range(f, 0, 2, 1, 2 * BS);
    cr_assert_eq(bf_db_rename(db, "b", "a", 0), 0);
    tb_expect(f2, 1, 1);
    bf_db_file_close(db, f);
    tb_expect(f2, 1, 1); /* one handle still open */
    cr_assert_eq(bf_db_getinfo(db, a, NULL), 0);
    bf_db_file_close(db, f2);
    cr_assert_eq(bf_db_getinfo(db, a, NULL), -ENOENT);
    cr_assert_eq(tb_nblocks(t, db, a), 0);
}

BOTH(removed_name_of_a_closed_file_deletes_it, 20)
{
    uint64_t a = mk(db, "a", BS), b = mk(db, "b", BS);
    bf_file *f = open_file(db, a);
    tb_store_range(f, 0, 3, 1, 3 * BS);
    bf_db_file_close(db, f);
    f = open_file(db, b);
    tb_store_range(f, 0, 2, 1, 2 * BS);
    bf_db_file_close(db, f);

    cr_assert_eq(bf_db_unlink(db, "a"), 0);
    cr_assert_eq(bf_db_getinfo(db, a, NULL), -ENOENT, "no handle: deleted at once");
    cr_assert_eq(bf_db_file_open(db, a, &f), -ENOENT);
    cr_assert_eq(tb_nblocks(t, db, a), 0);

    mk(db, "c", BS);
    cr_assert_eq(bf_db_rename(db, "c", "b", 0), 0);
    cr_assert_eq(bf_db_getinfo(db, b, NULL), -ENOENT, "replaced by a rename: deleted at once");
    cr_assert_eq(tb_nblocks(t, db, b), 0);
}

BOTH(reopened_by_id_while_unlinked, 20)
{
    uint64_t a = mk(db, "a", BS);
    bf_file *f = open_file(db, a);
    tb_store_range(f, 0, 2, 1, 2 * BS);
    cr_assert_eq(bf_db_unlink(db, "a"), 0);
    /* a nameless file in use can be opened again by id, and written */
    bf_file *g = open_file(db, a);
    tb_expect(g, 1, 1);
    bf_db_file_close(db, f);
    cr_assert_eq(bf_db_getinfo(db, a, NULL), 0, "g still holds it");
    tb_store_range(g, 2, 3, 2, 3 * BS);
    tb_expect(g, 2, 2);
    bf_db_file_close(db, g);
    cr_assert_eq(bf_db_getinfo(db, a, NULL), -ENOENT, "purged at the last close");
    cr_assert_eq(tb_nblocks(t, db, a), 0);
}

BOTH(set_blksize_after_last_close, 20)
{
    struct bf_fileinfo fi;
    uint64_t a = mk(db, "a", BS);
    bf_file *f = open_file(db, a), *g = open_file(db, a);
    cr_assert_eq(bf_db_set_blksize(db, a, 8192), -EBUSY);
    bf_db_file_close(db, f);
    cr_assert_eq(bf_db_set_blksize(db, a, 8192), -EBUSY, "one handle is still open");
    bf_db_file_close(db, g);
    cr_assert_eq(bf_db_set_blksize(db, a, 8192), 0);
    cr_assert_eq(bf_db_getinfo(db, a, &fi), 0);
    cr_assert_eq(fi.blksize, 8192);
    f = open_file(db, a);
    cr_assert_eq(f->blksize, 8192);
    bf_db_file_close(db, f);
}

BOTH(big_blocks, 30)
{
    uint64_t a = mk(db, "a", 2u << 20);
    bf_file *f = open_file(db, a);
    tb_store_range(f, 0, 3, 7, 3u << 21);
    tb_expect(f, 0, 7);
    tb_expect(f, 2, 7);
    tb_expect(f, 3, -1);
    bf_db_file_close(db, f);
}

/* ---- read-only ----------------------------------------------------------- */

#ifndef TB_PG /* the rest is not the engines': once is enough */
Test(memory, read_only_refuses_writes, .timeout = 10)
{
    bf_db *db;
    char err[256];
    cr_assert_eq(bf_db_open("mem:", BF_DB_RDONLY, &db, err, sizeof(err)), 0);
    cr_assert(bf_db_is_memory(db));
    cr_assert_eq(bf_db_create(db, "a", BS, 0, 0644, 0, 0, NULL), -EROFS);
    cr_assert_eq(bf_db_unlink(db, "a"), -EROFS);
    cr_assert_eq(bf_db_rename(db, "a", "b", 0), -EROFS);
    bf_db_close(db);
}

/* ---- caller bugs are caught ---------------------------------------------- */

/* Closing a handle in a transaction, and transaction calls outside one, are
 * caller bugs: BF_CHECK aborts in a debug build (the test builds); a
 * release build logs them and recovers (the transaction is rolled back,
 * the stray call fails with -EINVAL). */
enum misuse {
    MISUSE_CLOSE_IN_TX,
    MISUSE_STORE_OUTSIDE,
    MISUSE_COMMIT_OUTSIDE,
    MISUSE_ABORT_OUTSIDE,
};

static void misuse(enum misuse what)
{
    bf_db *db;
    bf_file *f, *g;
    cr_assert_eq(bf_db_open("mem:misuse", 0, &db, NULL, 0), 0);
    uint64_t a = mk(db, "a", BS);
    f = open_file(db, a);
    void *buf = calloc(1, BS);
    int r = 0;
    switch (what) {
    case MISUSE_CLOSE_IN_TX:
        cr_assert_eq(f->ops->begin(f), 0);
        bf_db_file_close(db, f);
        f = NULL;
        g = open_file(db, a);
        r = g->ops->begin(g); /* the transaction was rolled back and freed */
        if (r == 0)
            g->ops->abort(g);
        bf_db_file_close(db, g);
        break;
    case MISUSE_STORE_OUTSIDE:
        r = tb_store(f, 0, buf) == -EINVAL ? 0 : -1;
        break;
    case MISUSE_COMMIT_OUTSIDE:
        r = tb_commit(f, BS) == -EINVAL ? 0 : -1;
        break;
    case MISUSE_ABORT_OUTSIDE:
        f->ops->abort(f);
        break;
    }
    free(buf);
    bf_db_file_close(db, f);
    bf_db_close(db);
    cr_assert_eq(r, 0);
}

#ifdef BF_DEBUG
#define MISUSE_TEST(name, what)                          \
    Test(misuse, name, .timeout = 10, .signal = SIGABRT) \
    {                                                    \
        misuse(what);                                    \
    }
#else
#define MISUSE_TEST(name, what)       \
    Test(misuse, name, .timeout = 10) \
    {                                 \
        misuse(what);                 \
    }
#endif

MISUSE_TEST(close_in_a_transaction, MISUSE_CLOSE_IN_TX)
MISUSE_TEST(storeblk_outside_a_transaction, MISUSE_STORE_OUTSIDE)
MISUSE_TEST(commit_outside_a_transaction, MISUSE_COMMIT_OUTSIDE)
MISUSE_TEST(abort_outside_a_transaction, MISUSE_ABORT_OUTSIDE)

Test(misuse_db, close_with_a_file_open, .timeout = 10
#ifdef BF_DEBUG
     ,
     .signal = SIGABRT
#endif
)
{
    bf_db *db;
    cr_assert_eq(bf_db_open("mem:misuse", 0, &db, NULL, 0), 0);
    bf_file *f = open_file(db, mk(db, "a", BS));
    bf_db_close(db);
    free(f); /* a release build forgets the record; the handle is the caller's */
}

/* ---- bf_parse_size ------------------------------------------------------- */

Test(parse_size, accepts, .timeout = 5)
{
    static const struct {
        const char *s;
        uint64_t v;
    } ok[] = {
        { "0", 0 },
        { "4096", 4096 },
        { "64k", 64 << 10 },
        { "64K", 64 << 10 },
        { "2M", 2 << 20 },
        { "2MiB", 2 << 20 },
        { "2Mi", 2 << 20 },
        { "2MB", 2 << 20 },
        { "3G", 3ull << 30 },
        { "1T", 1ull << 40 },
        { "4096B", 4096 },
        { "18446744073709551615", UINT64_MAX },
        { "16777215T", 16777215ull << 40 },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1;
        cr_assert_eq(bf_parse_size(ok[i].s, &v), 0, "%s", ok[i].s);
        cr_assert_eq(v, ok[i].v, "%s -> %llu", ok[i].s, (unsigned long long)v);
    }
}

Test(parse_size, rejects, .timeout = 5)
{
    static const char *const bad[] = {
        "",          "k",
        "-1",        "+1",
        " 1",        "1 ",
        "1x",        "1KK",
        "1iB",       "0x10",
        "1.5M",      "18446744073709551616",
        "16777216T", "99999999999999999999",
        "2Mib2",     "M2",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 77;
        cr_assert_eq(bf_parse_size(bad[i], &v), -EINVAL, "'%s' accepted", bad[i]);
        cr_assert_eq(v, 77, "'%s': output untouched on error", bad[i]);
    }
}
#endif /* TB_PG */
