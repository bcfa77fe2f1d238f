/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/backends: helpers shared by the backend tests.
 *
 * BOTH(name, timeout) defines one behavioural test body and registers it
 * twice: once against a fresh memory database (suite "memory") and once
 * against a fresh SQLite database in a temporary directory (suite
 * "sqlite"). The body gets the open db and a struct tb describing it. */
#ifndef BIGFILEFS_TESTS_BACKENDS_HELPERS_H
#define BIGFILEFS_TESTS_BACKENDS_HELPERS_H

#ifdef CORE_MINICR
#include "../core/minicr.h" /* the TSan build: Criterion cannot run there */
#else
#include <criterion/criterion.h>
#endif
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "backends/backend.h"
#include "backends/memory.h"
#include "backends/sqlite.h"
#include "util/util.h" /* bf_now_ns, bf_parse_size */

struct tb {
    int is_sqlite;
    char dir[64];   /* sqlite: the temporary directory */
    char path[128]; /* sqlite: the database file */
};

/* Make a fresh temporary directory for a test. */
static inline void tb_mkdir(struct tb *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/bf-test-XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir), "mkdtemp: %s", strerror(errno));
    snprintf(t->path, sizeof(t->path), "%s/db.sqlite", t->dir);
}

/* Remove the temporary directory and its (flat) content. */
static inline void tb_rmdir(struct tb *t)
{
    DIR *dp = opendir(t->dir);
    struct dirent *de;
    char p[512];
    if (!dp)
        return;
    while ((de = readdir(dp))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", t->dir, de->d_name);
        unlink(p);
    }
    closedir(dp);
    rmdir(t->dir);
}

static inline bf_db *tb_open(struct tb *t, int sqlite)
{
    bf_db *db = NULL;
    char err[512] = "";
    memset(t, 0, sizeof(*t));
    t->is_sqlite = sqlite;
    if (sqlite)
        tb_mkdir(t);
    int r = bf_db_open(sqlite ? t->path : "mem:test", BF_DB_CREATE, &db, err, sizeof(err));
    cr_assert_eq(r, 0, "bf_db_open: %d %s", r, err);
    return db;
}

/* Count stored (non-hole) blocks of file id, through a side channel: the
 * memory backend's counter, or a separate SQLite connection. */
static inline int64_t tb_nblocks(struct tb *t, bf_db *db, uint64_t id)
{
    if (!t->is_sqlite)
        return (int64_t)bf_mem_blocks(db, id);
    sqlite3 *c;
    sqlite3_stmt *st;
    int64_t n = -1;
    cr_assert_eq(sqlite3_open_v2(t->path, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(c, "SELECT count(*) FROM blocks WHERE file=?", -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(c));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(c);
    return n;
}

/* Wait until the clock of the stored times (bf_now_ns) has passed t, so
 * that a change made now gets a later time stamp than one made at t. An
 * event wait on the clock itself, not a guessed sleep. */
static inline void tb_after(int64_t t)
{
    while (bf_now_ns() <= t)
        sched_yield();
}

/* Fill a block with a pattern derived from (blk, tag): never all zeros. */
static inline void tb_fill(void *buf, uint32_t blksize, uint64_t blk, unsigned tag)
{
    uint32_t *w = buf;
    for (uint32_t i = 0; i < blksize / 4; i++)
        w[i] = (uint32_t)(blk * 2654435761u) ^ (tag << 24) ^ i ^ 0x80000000u;
}

/* Nonzero when buf holds tb_fill(blk, tag). */
static inline int tb_check(const void *buf, uint32_t blksize, uint64_t blk, unsigned tag)
{
    const uint32_t *w = buf;
    for (uint32_t i = 0; i < blksize / 4; i++)
        if (w[i] != ((uint32_t)(blk * 2654435761u) ^ (tag << 24) ^ i ^ 0x80000000u))
            return 0;
    return 1;
}

static inline int tb_is_zero(const void *buf, uint32_t n)
{
    const unsigned char *c = buf;
    for (uint32_t i = 0; i < n; i++)
        if (c[i])
            return 0;
    return 1;
}

/* Store blocks [lo, hi) with tb_fill(.., tag) in one committed transaction. */
static inline void tb_store_range(bf_file *f, uint64_t lo, uint64_t hi, unsigned tag, uint64_t size)
{
    void *buf = malloc(f->blksize);
    cr_assert_not_null(buf);
    cr_assert_eq(f->ops->begin(f), 0);
    for (uint64_t b = lo; b < hi; b++) {
        tb_fill(buf, f->blksize, b, tag);
        cr_assert_eq(f->ops->storeblk(f, b, buf), 0);
    }
    cr_assert_eq(f->ops->commit(f, size), 0);
    free(buf);
}

/* Assert block blk reads as tb_fill(tag) (tag < 0: as zeros). */
static inline void tb_expect(bf_file *f, uint64_t blk, int tag)
{
    void *buf = malloc(f->blksize);
    cr_assert_not_null(buf);
    memset(buf, 0x5a, f->blksize);
    int r = f->ops->loadblk(f, blk, buf);
    cr_assert_eq(r, 0, "loadblk(%llu) = %d", (unsigned long long)blk, r);
    if (tag < 0)
        cr_assert(tb_is_zero(buf, f->blksize), "block %llu should read as zeros",
                  (unsigned long long)blk);
    else
        cr_assert(tb_check(buf, f->blksize, blk, (unsigned)tag),
                  "block %llu should hold version %d", (unsigned long long)blk, tag);
    free(buf);
}

/* A cheap checksum of a whole file (FNV-1a), to show it was not modified. */
static inline uint64_t tb_checksum(const char *path)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
    uint64_t h = 1469598103934665603ull;
    int c;
    while ((c = getc(fp)) != EOF)
        h = (h ^ (unsigned char)c) * 1099511628211ull;
    fclose(fp);
    return h;
}

#define BOTH(name, secs)                              \
    static void name##_body(bf_db *db, struct tb *t); \
    Test(memory, name, .timeout = secs)               \
    {                                                 \
        struct tb t;                                  \
        bf_db *db = tb_open(&t, 0);                   \
        name##_body(db, &t);                          \
        bf_db_close(db);                              \
    }                                                 \
    Test(sqlite, name, .timeout = secs)               \
    {                                                 \
        struct tb t;                                  \
        bf_db *db = tb_open(&t, 1);                   \
        name##_body(db, &t);                          \
        bf_db_close(db);                              \
        tb_rmdir(&t);                                 \
    }                                                 \
    static void name##_body(bf_db *db, struct tb *t)

#endif /* BIGFILEFS_TESTS_BACKENDS_HELPERS_H */
