/* SPDX-License-Identifier: MIT */
/* bigfilefs benchmarks — the raw SQLite references (see rawsql.h). */
#include "rawsql.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pattern.h"

/* The bigfilefs schema (version 2, and 3, whose history tables these
 * queries leave alone), as src/backends/sqlite_schema.c creates it: a
 * block's current version is its blockmap row with content and no
 * superseded mark (the partial index blockmap_current), its bytes a row of
 * contents. */
#define SQL_FILE_BY_NAME "SELECT id, blksize, size FROM files WHERE name = ?1"
#define SQL_BLOCK_ROWID                                                              \
    "SELECT b.content, e.off, e.len FROM blockmap AS b INDEXED BY blockmap_current " \
    "LEFT JOIN extents AS e ON e.id = b.content WHERE b.file = ?1 "                  \
    "AND b.blk = ?2 AND b.superseded IS NULL AND b.content IS NOT NULL"
/* A store as the engine's is at its least: the content, then its version. */
#define SQL_STORE_CONTENT "INSERT INTO contents(data) VALUES (?1)"
#define SQL_STORE_VERSION                                                   \
    "INSERT OR REPLACE INTO blockmap(file, blk, serial, session, content) " \
    "VALUES (?1, ?2, 1, 0, ?3)"
#define BLOCKS_TABLE "contents"
#define BLOCKS_DATA "data"

static int sqlerr(sqlite3 *db, const char *what)
{
    fprintf(stderr, "bfbench: sqlite: %s: %s\n", what, db ? sqlite3_errmsg(db) : "out of memory");
    return -EIO;
}

int rawsql_read(const char *dbpath, const char *name, enum bench_cold cold, int fresh, double *secs,
                uint64_t *bytes, uint64_t *sum)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *qf = NULL, *qb = NULL;
    sqlite3_blob *blob = NULL;
    void *buf = NULL;
    int bfd = -1;
    uint64_t blksize = 0;
    int r;

    r = bench_make_cold(dbpath, cold == BENCH_COLD_DROP ? BENCH_COLD_DROP : BENCH_COLD_NONE);
    if (r < 0)
        return r;
    char bpath[PATH_MAX];
    snprintf(bpath, sizeof(bpath), "%s-blocks", dbpath);
    bfd = open(bpath, O_RDONLY | O_CLOEXEC); /* none: every content is a blob */
    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        r = sqlerr(db, "open");
        goto out;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, SQL_FILE_BY_NAME, -1, &qf, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, SQL_BLOCK_ROWID, -1, &qb, NULL) != SQLITE_OK) {
        r = sqlerr(db, "prepare");
        goto out;
    }
    sqlite3_bind_text(qf, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(qf) != SQLITE_ROW) {
        fprintf(stderr, "bfbench: %s: no bigfile named %s\n", dbpath, name);
        r = -ENOENT;
        goto out;
    }
    int64_t id = sqlite3_column_int64(qf, 0);
    blksize = (uint64_t)sqlite3_column_int64(qf, 1);
    uint64_t size = (uint64_t)sqlite3_column_int64(qf, 2);
    uint64_t nblk = (size + blksize - 1) / blksize;
    if (!fresh) {
        buf = aligned_alloc(4096, blksize);
        if (!buf) {
            r = -ENOMEM;
            goto out;
        }
    }

    uint64_t s = 0;
    double t0 = bench_now();
    /* The loop the backend's loadblk runs per block, minus the core. */
    for (uint64_t b = 0; b < nblk; b++) {
        sqlite3_reset(qb);
        sqlite3_bind_int64(qb, 1, id);
        sqlite3_bind_int64(qb, 2, (int64_t)b);
        int rc = sqlite3_step(qb);
        if (rc == SQLITE_DONE)
            continue; /* a hole: zeros, nothing to add */
        if (rc != SQLITE_ROW) {
            r = sqlerr(db, "lookup");
            goto out;
        }
        int64_t rowid = sqlite3_column_int64(qb, 0);
        if (fresh) {
            /* a new anonymous mapping per block, as the core's
             * bf_blockbuf_alloc gives the backend */
            if (buf)
                munmap(buf, blksize);
            buf = mmap(NULL, blksize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (buf == MAP_FAILED) {
                buf = NULL;
                r = -ENOMEM;
                goto out;
            }
        }
        if (sqlite3_column_type(qb, 1) != SQLITE_NULL) {
            /* in the block file: one pread at its extent */
            int64_t off = sqlite3_column_int64(qb, 1), len = sqlite3_column_int64(qb, 2);
            if (len < 0 || (uint64_t)len > blksize || bfd < 0 ||
                pread(bfd, buf, (size_t)len, off) != (ssize_t)len) {
                fprintf(stderr, "bfbench: block %llu: cannot read its extent\n",
                        (unsigned long long)b);
                r = -EIO;
                goto out;
            }
            s += bench_sum_words(buf, (size_t)len);
            continue;
        }
        rc = blob ? sqlite3_blob_reopen(blob, rowid)
                  : sqlite3_blob_open(db, "main", BLOCKS_TABLE, BLOCKS_DATA, rowid, 0, &blob);
        if (rc != SQLITE_OK) {
            r = sqlerr(db, "blob open");
            goto out;
        }
        int n = sqlite3_blob_bytes(blob);
        if (n < 0 || (uint64_t)n > blksize) {
            fprintf(stderr, "bfbench: block %llu has %d bytes\n", (unsigned long long)b, n);
            r = -EIO;
            goto out;
        }
        if (sqlite3_blob_read(blob, buf, n, 0) != SQLITE_OK) {
            r = sqlerr(db, "blob read");
            goto out;
        }
        s += bench_sum_words(buf, (size_t)n);
    }
    *secs = bench_now() - t0;
    *bytes = size;
    *sum = s;
    r = 0;
out:
    if (bfd >= 0)
        close(bfd);
    if (blob)
        sqlite3_blob_close(blob);
    sqlite3_finalize(qf);
    sqlite3_finalize(qb);
    sqlite3_close(db);
    if (fresh && buf)
        munmap(buf, blksize);
    else
        free(buf);
    return r;
}

/* Create the scratch database's schema from the bigfilefs database's. */
static int copy_schema(sqlite3 *dst, const char *schema_from)
{
    sqlite3 *src = NULL;
    sqlite3_stmt *q = NULL;
    int r = 0;
    if (sqlite3_open_v2(schema_from, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return sqlerr(src, "open schema source");
    sqlite3_busy_timeout(src, 5000);
    if (sqlite3_prepare_v2(src,
                           "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL "
                           "AND name NOT LIKE 'sqlite_%' ORDER BY type = 'table' DESC, rowid",
                           -1, &q, NULL) != SQLITE_OK) {
        r = sqlerr(src, "read schema");
        goto out;
    }
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *sql = (const char *)sqlite3_column_text(q, 0);
        if (sqlite3_exec(dst, sql, NULL, NULL, NULL) != SQLITE_OK) {
            r = sqlerr(dst, sql);
            goto out;
        }
    }
out:
    sqlite3_finalize(q);
    sqlite3_close(src);
    return r;
}

int rawsql_write(const char *scratch, const char *schema_from, uint32_t blksize, uint64_t length,
                 uint64_t seed, double *secs)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL, *ver = NULL;
    void *buf = NULL;
    int r = 0;
    const char *sync = getenv("BF_SQLITE_SYNC");
    const char *sync_pragma = sync && !strcmp(sync, "normal") ? "PRAGMA synchronous=NORMAL"
                                                              : "PRAGMA synchronous=FULL";

    if (sqlite3_open_v2(scratch, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK)
        return sqlerr(db, "open scratch");
    sqlite3_busy_timeout(db, 5000);
    int fresh = 0;
    {
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &q, NULL) !=
                SQLITE_OK ||
            sqlite3_step(q) != SQLITE_ROW) {
            sqlite3_finalize(q);
            r = sqlerr(db, "inspect scratch");
            goto out;
        }
        fresh = sqlite3_column_int(q, 0) == 0;
        sqlite3_finalize(q);
    }
    if (fresh && (sqlite3_exec(db, "PRAGMA page_size=65536", NULL, NULL, NULL) != SQLITE_OK ||
                  (r = copy_schema(db, schema_from)) < 0)) {
        r = r < 0 ? r : sqlerr(db, "page_size");
        goto out;
    }
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, sync_pragma, NULL, NULL, NULL) != SQLITE_OK) {
        r = sqlerr(db, "pragmas");
        goto out;
    }
    if (sqlite3_prepare_v2(db, SQL_STORE_CONTENT, -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, SQL_STORE_VERSION, -1, &ver, NULL) != SQLITE_OK) {
        r = sqlerr(db, "prepare");
        goto out;
    }
    uint64_t nblk = (length + blksize - 1) / blksize;
    /* The blocks are in memory before the clock starts, as the core's dirty
     * blocks are when a writeout begins: only the stores are timed. */
    buf = aligned_alloc(4096, nblk * blksize);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    bench_pattern_fill(buf, nblk * blksize, 0, seed);

    double t0 = bench_now();
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        r = sqlerr(db, "begin");
        goto out;
    }
    for (uint64_t b = 0; b < nblk; b++) {
        sqlite3_reset(ins);
        sqlite3_reset(ver);
        sqlite3_bind_blob(ins, 1, (char *)buf + b * blksize, (int)blksize, SQLITE_STATIC);
        int rc = sqlite3_step(ins);
        if (rc == SQLITE_DONE) {
            sqlite3_bind_int64(ver, 1, 1);
            sqlite3_bind_int64(ver, 2, (int64_t)b);
            sqlite3_bind_int64(ver, 3, sqlite3_last_insert_rowid(db));
            rc = sqlite3_step(ver);
        }
        if (rc != SQLITE_DONE) {
            r = sqlerr(db, "insert");
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            goto out;
        }
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        r = sqlerr(db, "commit");
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        goto out;
    }
    *secs = bench_now() - t0;
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(ver);
    sqlite3_close(db);
    free(buf);
    return r;
}
