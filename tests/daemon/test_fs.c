/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — unit tests of the inode table (inode.h) and the
 * notifier (notify.h), over the memory backend. The FUSE paths themselves
 * are covered by tests/integration, which mounts the real daemon. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "core/fileh.h"
#include "core/ram.h"
#include "fs/inode.h"
#include "fs/notify.h"

static bf_db *db;
static bf_ram *ram;
static bf_itable t;

static void setup(void)
{
    char err[256];

    cr_assert_eq(bf_db_open("mem:", BF_DB_CREATE, &db, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(bf_ram_new(1 << 20, &ram), 0);
    cr_assert_eq(bf_itable_init(&t, db, ram), 0);
}

static void teardown(void)
{
    bf_itable_destroy(&t);
    cr_assert_eq(bf_ram_free(ram), 0, "a handle was left open");
    bf_db_close(db);
}

static bf_inode *make(const char *name, struct bf_fileinfo *info)
{
    bf_inode *i;

    cr_assert_eq(bf_db_create(db, name, 4096, 0, 0644, 0, 0, info), 0);
    i = bf_itable_get(&t, info);
    cr_assert_not_null(i);
    cr_assert_eq(i->ino, info->id + 1);
    return i;
}

/* Make inode's handle dirty: one byte written at off. */
static void dirty(bf_inode *i, uint64_t off)
{
    bf_fileh *fh;

    cr_assert_eq(bf_inode_fh_get(&t, i, &fh), 0);
    cr_assert_eq(bf_fileh_write(fh, "x", 1, off), 1);
    bf_inode_fh_put(i);
}

TestSuite(inode, .init = setup, .fini = teardown, .timeout = 20);

Test(inode, freed_when_nothing_holds_it)
{
    struct bf_fileinfo info;
    bf_inode *i = make("a", &info), *j;

    j = bf_itable_find(&t, i->ino);
    cr_assert_eq(j, i);
    bf_itable_put(&t, j);
    bf_itable_put(&t, i);
    cr_assert_null(bf_itable_find(&t, info.id + 1), "unreferenced inode must be gone");
    cr_assert_null(bf_itable_find(&t, BF_ROOT_INO), "the root is not in the table");
}

Test(inode, lookups_and_opens_keep_it)
{
    struct bf_fileinfo info;
    bf_inode *i = make("a", &info);

    bf_itable_lookup(&t, i, 2);
    bf_itable_open(&t, i);
    bf_itable_put(&t, i);
    bf_itable_forget(&t, info.id + 1, 2);
    i = bf_itable_find(&t, info.id + 1);
    cr_assert_not_null(i, "still open");
    bf_itable_put(&t, i);
    bf_itable_release(&t, i);
    cr_assert_null(bf_itable_find(&t, info.id + 1));
}

Test(inode, dirty_handle_outlives_release_and_forget)
{
    struct bf_fileinfo info;
    bf_inode *i = make("a", &info);
    bf_fileh *fh;
    struct bf_writeout_result res;

    bf_itable_lookup(&t, i, 1);
    bf_itable_open(&t, i);
    dirty(i, 5000);
    bf_itable_put(&t, i);
    bf_itable_release(&t, i);
    bf_itable_forget(&t, info.id + 1, 1);

    /* Another process commits later: the same handle, with the change. */
    i = bf_itable_find(&t, info.id + 1);
    cr_assert_not_null(i, "a dirty handle must keep its inode");
    cr_assert_eq(bf_inode_fh_get(&t, i, &fh), 0);
    cr_assert_eq(bf_fileh_size(fh), 5001);
    cr_assert_eq(bf_fileh_writeout(fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, &res), 0);
    cr_assert_eq(res.blocks, 1);
    bf_inode_fh_put(i);
    bf_itable_put(&t, i);
    cr_assert_null(bf_itable_find(&t, info.id + 1), "clean now: freed");
    cr_assert_eq(bf_db_getinfo(db, info.id, &info), 0);
    cr_assert_eq(info.size, 5001, "the writeout was committed");
}

Test(inode, unlinked_dirty_handle_is_dropped)
{
    struct bf_fileinfo info;
    bf_inode *i = make("a", &info);
    struct bf_fileinfo copy;
    bool unlinked;

    bf_itable_lookup(&t, i, 1);
    dirty(i, 0);
    cr_assert_eq(bf_db_unlink(db, "a"), 0);
    bf_itable_unlinked(&t, "a");
    bf_inode_info(&t, i, &copy, &unlinked);
    cr_assert(unlinked);
    cr_assert_str_empty(copy.name);
    bf_itable_put(&t, i);
    bf_itable_forget(&t, info.id + 1, 1);
    cr_assert_null(bf_itable_find(&t, info.id + 1), "nobody can commit an unlinked file's changes");
}

Test(inode, rename_tracks_names)
{
    struct bf_fileinfo ia, ib, got;
    bf_inode *a = make("a", &ia), *b = make("b", &ib);
    bool unlinked;

    bf_itable_renamed(&t, "a", "c", 0);
    bf_inode_info(&t, a, &got, &unlinked);
    cr_assert_str_eq(got.name, "c");
    bf_itable_renamed(&t, "c", "b", BF_RENAME_EXCHANGE);
    bf_inode_info(&t, a, &got, NULL);
    cr_assert_str_eq(got.name, "b");
    bf_inode_info(&t, b, &got, NULL);
    cr_assert_str_eq(got.name, "c");
    bf_itable_renamed(&t, "c", "b", 0); /* c replaces b: a is unlinked */
    bf_inode_info(&t, a, &got, &unlinked);
    cr_assert(unlinked);
    bf_inode_info(&t, b, &got, &unlinked);
    cr_assert(!unlinked);
    cr_assert_str_eq(got.name, "b");
    bf_itable_put(&t, a);
    bf_itable_put(&t, b);
}

Test(inode, one_long_operation_at_a_time)
{
    struct bf_fileinfo info;
    bf_inode *i = make("a", &info);

    cr_assert_eq(bf_inode_op_begin(&t, i, BF_OP_WRITEOUT), 0);
    cr_assert_eq(bf_inode_op_begin(&t, i, BF_OP_WRITEOUT), -EBUSY);
    cr_assert_eq(bf_inode_op_begin(&t, i, BF_OP_DISCARD), -EBUSY);
    bf_inode_op_end(&t, i);
    cr_assert_eq(bf_inode_op_begin(&t, i, BF_OP_DISCARD), 0);
    bf_inode_op_end(&t, i);
    bf_itable_put(&t, i);
}

Test(inode, set_blksize_only_when_empty)
{
    struct bf_fileinfo info;
    bf_inode *i = make("a", &info);
    bf_fileh *fh;

    cr_assert_eq(bf_inode_fh_get(&t, i, &fh), 0); /* open, as after create */
    bf_inode_fh_put(i);
    cr_assert_eq(bf_inode_set_blksize(&t, i, 65536), 0);
    cr_assert_eq(bf_inode_fh_get(&t, i, &fh), 0);
    cr_assert_eq(bf_fileh_blksize(fh), 65536, "the handle is reopened with the new size");
    bf_inode_fh_put(i);
    dirty(i, 10);
    cr_assert_eq(bf_inode_set_blksize(&t, i, 8192), -ENOTEMPTY);
    cr_assert_eq(bf_inode_fh_get(&t, i, &fh), 0);
    cr_assert_eq(bf_fileh_blksize(fh), 65536);
    cr_assert_eq(bf_fileh_discard(fh, NULL), 0);
    bf_inode_fh_put(i);
    bf_itable_put(&t, i);
}

Test(inode, many_inodes_and_destroy_with_changes)
{
    struct bf_fileinfo info;
    char name[32];

    /* More inodes than the initial buckets: the table grows. */
    for (int k = 0; k < 300; k++) {
        bf_inode *i;

        snprintf(name, sizeof(name), "f%d", k);
        i = make(name, &info);
        bf_itable_lookup(&t, i, 1);
        if (k % 50 == 0)
            dirty(i, (uint64_t)k * 4096);
        bf_itable_put(&t, i);
    }
    cr_assert_eq(t.count, 300);
    for (int k = 0; k < 300; k++) {
        bf_inode *i = bf_itable_find(&t, (fuse_ino_t)k + 2);

        cr_assert_not_null(i);
        cr_assert_eq(i->id, (uint64_t)k + 1);
        bf_itable_put(&t, i);
    }
    /* teardown destroys the table with dirty handles: they are closed. */
}

/* ---- notifier ---------------------------------------------------------- */

static pthread_t caller;

static int record_thread(struct fuse_session *se, void *arg)
{
    (void)se;
    *(int *)arg = !pthread_equal(pthread_self(), caller);
    return 42;
}

static int append(struct fuse_session *se, void *arg)
{
    static char order[8];
    static int len;

    (void)se;
    if (!arg) /* the query: how many ran, -1 if out of order */
        return strncmp(order, "abc", (size_t)len) == 0 ? len : -1;
    order[len++] = *(char *)arg;
    return 0;
}

static int block_until(struct fuse_session *se, void *arg)
{
    (void)se;
    while (!__atomic_load_n((int *)arg, __ATOMIC_ACQUIRE))
        usleep(1000);
    return 0;
}

static void count_drop(void *arg)
{
    __atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED);
}

static int never(struct fuse_session *se, void *arg)
{
    (void)se;
    (void)arg;
    cr_assert_fail("a dropped job ran");
    return 0;
}

Test(notifier, call_runs_on_its_thread, .timeout = 10)
{
    bf_notifier *n;
    int other = 0;

    caller = pthread_self();
    cr_assert_eq(bf_notifier_start(NULL, &n), 0);
    cr_assert_eq(bf_notifier_call(n, record_thread, &other), 42);
    cr_assert_eq(other, 1, "the job must run on the notifier thread");
    bf_notifier_stop(n);
}

Test(notifier, jobs_run_in_order, .timeout = 10)
{
    static char a = 'a', b = 'b', c = 'c';
    bf_notifier *n;

    cr_assert_eq(bf_notifier_start(NULL, &n), 0);
    cr_assert_eq(bf_notifier_post(n, append, NULL, &a), 0);
    cr_assert_eq(bf_notifier_post(n, append, NULL, &b), 0);
    cr_assert_eq(bf_notifier_call(n, append, &c), 0);
    cr_assert_eq(bf_notifier_call(n, append, NULL), 3, "a, b, c ran before");
    bf_notifier_stop(n);
}

static void *release_later(void *arg)
{
    usleep(100000);
    __atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
    return NULL;
}

Test(notifier, stop_drops_queued_jobs, .timeout = 10)
{
    bf_notifier *n;
    pthread_t th;
    int go = 0, dropped = 0;

    cr_assert_eq(bf_notifier_start(NULL, &n), 0);
    cr_assert_eq(bf_notifier_post(n, block_until, NULL, &go), 0);
    cr_assert_eq(bf_notifier_post(n, never, count_drop, &dropped), 0);
    cr_assert_eq(bf_notifier_post(n, never, count_drop, &dropped), 0);
    /* The running job ends 100 ms after the stop was requested (stop sets
     * its flag at once, then joins): the queued jobs must be dropped. */
    pthread_create(&th, NULL, release_later, &go);
    bf_notifier_stop(n);
    pthread_join(th, NULL);
    cr_assert_eq(dropped, 2);
}
