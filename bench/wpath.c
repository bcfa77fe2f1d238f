/* SPDX-License-Identifier: MIT */
/* bigfilefs benchmarks — wpath: what a writeout's store costs on this disk
 * (issue 12, "the write path"), measured below the daemon: no FUSE, no
 * core, only the bytes a writeout of N blocks makes the store write.
 *
 *   wpath file DIR N BS       pwrite N blocks of BS bytes to a new file,
 *                             then fdatasync (what `dd conv=fdatasync`
 *                             does: the reference)
 *   wpath engine DIR N BS     the SQLite engine (libbfbackends): one store
 *                             transaction of N blocks (begin, storeblk
 *                             each: its rows, then its data in the block
 *                             file; commit with the block file's
 *                             fdatasync, its FULL sync and the WAL
 *                             checkpoint it runs), then the same again
 *                             over the same blocks (an overwrite)
 *   wpath stage DIR N BS      the engine staging N blocks (spilling), then
 *                             one transaction committing them
 *                             (storeblk_staged: no copy), as a writeout of
 *                             spilled blocks does
 *   wpath blockfile DIR N BS  the prototype of the engine's block file:
 *                             block contents appended to a file beside a
 *                             SQLite map; a
 *                             commit is the data's fdatasync and one small
 *                             SQLite transaction of N map rows
 *                             (synchronous=FULL, WAL)
 *
 * Each prints one line: mode, bytes, seconds, GB/s. Block contents are a
 * pattern (never zeros: a zero block may be stored as a hole). Run on a
 * disk (not tmpfs) after `sync`; the files are removed at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "backends/backend.h"
#include "bench/util.h"

static void fill(unsigned char *buf, size_t len, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t v = bench_rand(&s);
        memcpy(buf + i, &v, 8);
    }
}

static void die(const char *what, int e)
{
    fprintf(stderr, "wpath: %s: %s\n", what, strerror(e < 0 ? -e : e));
    exit(1);
}

static void report(const char *mode, uint64_t bytes, double secs)
{
    printf("%-12s %8.0f MiB %7.2f s %6.3f GB/s\n", mode, bytes / 1048576.0, secs,
           bytes / secs / 1e9);
    fflush(stdout);
}

static double run_file(const char *dir, uint64_t n, uint32_t bs, unsigned char *buf)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/wpath.file", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die(path, errno);
    double t0 = bench_now();
    for (uint64_t i = 0; i < n; i++) {
        buf[0] = (unsigned char)i;
        if (pwrite(fd, buf, bs, (off_t)(i * bs)) != (ssize_t)bs)
            die("pwrite", errno);
    }
    if (fdatasync(fd) < 0)
        die("fdatasync", errno);
    double t = bench_now() - t0;
    close(fd);
    unlink(path);
    return t;
}

static void paths(const char *dir, char *db, size_t len)
{
    snprintf(db, len, "%s/wpath.db", dir);
    char side[4200];
    unlink(db);
    snprintf(side, sizeof(side), "%s-wal", db);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", db);
    unlink(side);
    snprintf(side, sizeof(side), "%s-blocks", db);
    unlink(side);
}

static void run_engine(const char *dir, uint64_t n, uint32_t bs, unsigned char *buf, bool staged)
{
    char db[4096], err[256];
    paths(dir, db, sizeof(db));
    bf_db *d;
    int r = bf_db_open(db, BF_DB_CREATE, &d, err, sizeof(err));
    if (r < 0)
        die(err, r);
    struct bf_fileinfo fi;
    if ((r = bf_db_create(d, "f", bs, n * bs, 0644, 0, 0, &fi)) < 0)
        die("create", r);
    bf_file *f;
    if ((r = bf_db_file_open(d, fi.id, &f)) < 0)
        die("file_open", r);
    uint64_t *tok = calloc(n, sizeof(*tok));
    if (!tok)
        die("calloc", ENOMEM);
    struct bf_commit_req req = { .flags = BF_COMMIT_OVERWRITE };
    for (int round = 0; round < 2; round++) {
        double t0 = bench_now();
        if (staged) {
            if (!f->ops->stage)
                die("the engine stages nothing", EINVAL);
            for (uint64_t i = 0; i < n; i++) {
                buf[0] = (unsigned char)(i + round);
                if ((r = f->ops->stage(f, i, buf, &tok[i])) < 0)
                    die("stage", r);
            }
            report(round ? "stage-again" : "stage", n * bs, bench_now() - t0);
            t0 = bench_now();
        }
        if ((r = f->ops->begin(f)) < 0)
            die("begin", r);
        for (uint64_t i = 0; i < n; i++) {
            buf[0] = (unsigned char)(i + round);
            r = staged ? f->ops->storeblk_staged(f, i, tok[i], 0) : f->ops->storeblk(f, i, buf, 0);
            if (r < 0)
                die("storeblk", r);
        }
        uint64_t serial;
        if ((r = f->ops->commit(f, &req, &serial)) < 0)
            die("commit", r);
        report(staged ? (round ? "commit-again" : "commit") : (round ? "overwrite" : "engine"),
               n * bs, bench_now() - t0);
    }
    free(tok);
    bf_db_file_close(d, f);
    bf_db_close(d);
    paths(dir, db, sizeof(db));
}

static void run_blockfile(const char *dir, uint64_t n, uint32_t bs, unsigned char *buf)
{
    char db[4096], data[4200];
    paths(dir, db, sizeof(db));
    snprintf(data, sizeof(data), "%s/wpath.blocks", dir);
    sqlite3 *c;
    if (sqlite3_open(db, &c) != SQLITE_OK)
        die("sqlite3_open", EIO);
    sqlite3_stmt *ins;
    if (sqlite3_exec(c,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE map(file INTEGER, blk INTEGER, serial INTEGER, off INTEGER, "
                     "PRIMARY KEY(file, blk, serial)) WITHOUT ROWID;",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c, "INSERT INTO map VALUES(1, ?1, ?2, ?3)", -1, &ins, NULL) != SQLITE_OK)
        die(sqlite3_errmsg(c), EIO);
    int fd = open(data, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die(data, errno);
    for (int round = 0; round < 2; round++) {
        double t0 = bench_now();
        for (uint64_t i = 0; i < n; i++) {
            buf[0] = (unsigned char)(i + round);
            off_t at = (off_t)((round * n + i) * bs); /* append-only */
            if (pwrite(fd, buf, bs, at) != (ssize_t)bs)
                die("pwrite", errno);
        }
        if (fdatasync(fd) < 0)
            die("fdatasync", errno);
        if (sqlite3_exec(c, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            die("begin", EIO);
        for (uint64_t i = 0; i < n; i++) {
            sqlite3_bind_int64(ins, 1, (sqlite3_int64)i);
            sqlite3_bind_int64(ins, 2, round + 1);
            sqlite3_bind_int64(ins, 3, (sqlite3_int64)((round * n + i) * bs));
            if (sqlite3_step(ins) != SQLITE_DONE)
                die("insert", EIO);
            sqlite3_reset(ins);
        }
        if (sqlite3_exec(c, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            die("commit", EIO);
        report(round ? "bfile-again" : "blockfile", n * bs, bench_now() - t0);
    }
    sqlite3_finalize(ins);
    sqlite3_close(c);
    close(fd);
    unlink(data);
    paths(dir, db, sizeof(db));
}

int main(int argc, char **argv)
{
    uint64_t n, bs;
    if (argc != 5 || bench_parse_size(argv[3], &n) < 0 || bench_parse_size(argv[4], &bs) < 0 ||
        !bf_blksize_valid(bs) || n == 0) {
        fprintf(stderr, "usage: wpath file|engine|stage|blockfile DIR NBLOCKS BLKSIZE\n");
        return 2;
    }
    unsigned char *buf = malloc(bs);
    if (!buf)
        die("malloc", ENOMEM);
    fill(buf, bs, 42);
    if (strcmp(argv[1], "file") == 0)
        report("file", n * bs, run_file(argv[2], n, (uint32_t)bs, buf));
    else if (strcmp(argv[1], "engine") == 0)
        run_engine(argv[2], n, (uint32_t)bs, buf, false);
    else if (strcmp(argv[1], "stage") == 0)
        run_engine(argv[2], n, (uint32_t)bs, buf, true);
    else if (strcmp(argv[1], "blockfile") == 0)
        run_blockfile(argv[2], n, (uint32_t)bs, buf);
    else
        return 2;
    free(buf);
    return 0;
}
