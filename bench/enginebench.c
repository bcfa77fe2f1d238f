/* SPDX-License-Identifier: MIT */
/* enginebench — cold sequential loads through a backend engine, without
 * the daemon: what the engine (and a block server behind it) costs per
 * block, compared with the memory engine.
 *
 *   enginebench SPEC NAME --length L [--threads T] [--seed S] [--fill B]
 *
 * Opens the database SPEC (mem:, a SQLite path, exec:COMMAND, unix:PATH),
 * finds the file NAME — with --fill B first creates it with block size B
 * and commits the pattern of bench/pattern.h over [0, L), untimed (the
 * memory engine's reference) — then loads its blocks [0, L/blksize) once,
 * in order, shared among T threads (each takes the next block), into
 * fresh buffers, as the daemon's readers do; every block's word sum is
 * checked against the pattern with seed S. Prints "GB/s" (10^9 bytes/s)
 * of the timed loads. Exit status: 0 ok, 1 failure, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backends/backend.h"
#include "pattern.h"
#include "util.h"
#include "util/util.h"

static struct {
    bf_file *f;
    uint64_t nblocks, seed;
    uint64_t next; /* atomic: the next block to load */
    int failed;    /* atomic */
} B;

static void *loader(void *arg)
{
    (void)arg;
    uint32_t bs = B.f->blksize;
    for (;;) {
        uint64_t blk = __atomic_fetch_add(&B.next, 1, __ATOMIC_RELAXED);
        if (blk >= B.nblocks || __atomic_load_n(&B.failed, __ATOMIC_RELAXED))
            break;
        /* a fresh buffer, as a cold daemon's pages are */
        uint64_t *buf = mmap(NULL, bs, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        int r = buf == MAP_FAILED ? -ENOMEM : B.f->ops->loadblk(B.f, blk, BF_SERIAL_NOW, buf, NULL);
        if (r < 0 || bench_sum_words(buf, bs) != bench_pattern_sum(blk * bs, bs, B.seed)) {
            fprintf(stderr, "enginebench: block %llu: %s\n", (unsigned long long)blk,
                    r < 0 ? strerror(-r) : "wrong content");
            __atomic_store_n(&B.failed, 1, __ATOMIC_RELAXED);
        }
        if (buf != MAP_FAILED)
            munmap(buf, bs);
    }
    return NULL;
}

/* Create NAME with block size bs and commit the pattern over [0, len). */
static int fill(bf_db *db, const char *name, uint32_t bs, uint64_t len, uint64_t seed)
{
    struct bf_fileinfo fi;
    bf_file *f;
    int r = bf_db_create(db, name, bs, 0, 0644, 0, 0, &fi);
    if (r < 0 || (r = bf_db_file_open(db, fi.id, &f)) < 0)
        return r;
    uint64_t *buf = malloc(bs);
    r = buf ? f->ops->begin(f) : -ENOMEM;
    for (uint64_t b = 0; r == 0 && b < len / bs; b++) {
        bench_pattern_fill(buf, bs, b * bs, seed);
        r = f->ops->storeblk(f, b, buf, BF_SERIAL_NOW);
    }
    struct bf_commit_req req = {
        .size_set = true, .size = len, .size_base = BF_SERIAL_NOW, .file_base = BF_SERIAL_NOW
    };
    uint64_t serial;
    if (r == 0)
        r = f->ops->commit(f, &req, &serial);
    free(buf);
    bf_db_file_close(db, f);
    return r;
}

static int usage(void)
{
    fputs("usage: enginebench SPEC NAME --length L [--threads T] [--seed S] [--fill B]\n", stderr);
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "length", required_argument, NULL, 'l' },
        { "threads", required_argument, NULL, 't' },
        { "seed", required_argument, NULL, 's' },
        { "fill", required_argument, NULL, 'f' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t len = 0, fillbs = 0;
    unsigned threads = 1;
    int c;
    B.seed = 7;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if ((c == 'l' && bf_parse_size(optarg, &len) < 0) ||
            (c == 'f' && bf_parse_size(optarg, &fillbs) < 0) || c == '?')
            return usage();
        if (c == 't')
            threads = (unsigned)atoi(optarg);
        if (c == 's')
            B.seed = strtoull(optarg, NULL, 10);
    }
    if (optind != argc - 2 || !len || threads < 1 || threads > 64)
        return usage();
    bf_db *db;
    char err[512];
    struct bf_fileinfo fi;
    int r = bf_db_open(argv[optind], BF_DB_CREATE, &db, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "enginebench: %s\n", err);
        return 1;
    }
    if (fillbs && (r = fill(db, argv[optind + 1], (uint32_t)fillbs, len, B.seed)) < 0)
        fprintf(stderr, "enginebench: fill: %s\n", strerror(-r));
    if (r == 0 && (r = bf_db_lookup(db, argv[optind + 1], &fi)) == 0)
        r = bf_db_file_open(db, fi.id, &B.f);
    if (r < 0) {
        fprintf(stderr, "enginebench: %s: %s\n", argv[optind + 1], strerror(-r));
        bf_db_close(db);
        return 1;
    }
    B.nblocks = len / B.f->blksize;
    pthread_t th[64];
    double t0 = bench_now();
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, loader, NULL);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double secs = bench_now() - t0;
    uint64_t bytes = B.nblocks * B.f->blksize;
    bf_db_file_close(db, B.f);
    bf_db_close(db);
    if (B.failed)
        return 1;
    printf("%.3f\n", (double)bytes / secs / 1e9);
    return 0;
}
