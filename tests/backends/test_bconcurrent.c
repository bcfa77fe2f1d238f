/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/backends: concurrent loadblk from several threads,
 * while another thread commits new versions of every block, against both
 * backends. Each loaded block must be one whole committed version (never
 * torn, never an uncommitted one), and the version a thread sees for a
 * block never goes back. Also run under ThreadSanitizer
 * (make check-concurrency). */
#include <pthread.h>

#include "helpers.h"

#define BS 4096u
#define NBLK 32
#define NVERSIONS 20
#define NREADERS 4

struct shared {
    bf_db *db;
    uint64_t id;
    int done;   /* atomic: the writer finished */
    int failed; /* atomic: a reader saw something wrong */
    char why[256];
    uint64_t loads; /* atomic */
};

/* The version tb_fill wrote into buf for blk, or -1 if buf is no version. */
static int version_of(const void *buf, uint64_t blk)
{
    const uint32_t *w = buf;
    uint32_t tag = (w[0] ^ (uint32_t)(blk * 2654435761u) ^ 0x80000000u) >> 24;
    if (tag > NVERSIONS || !tb_check(buf, BS, blk, tag))
        return -1;
    return (int)tag;
}

static void fail(struct shared *s, const char *what, uint64_t blk, int v)
{
    if (__atomic_exchange_n(&s->failed, 1, __ATOMIC_SEQ_CST) == 0)
        snprintf(s->why, sizeof(s->why), "%s: block %llu version %d", what, (unsigned long long)blk,
                 v);
}

static void *reader(void *arg)
{
    struct shared *s = arg;
    bf_file *f;
    int seen[NBLK];
    void *buf = malloc(BS);
    unsigned seed = (unsigned)(uintptr_t)&seen;
    if (!buf || bf_db_file_open(s->db, s->id, &f) < 0) {
        fail(s, "setup", 0, 0);
        free(buf);
        return NULL;
    }
    for (int i = 0; i < NBLK; i++)
        seen[i] = 0;
    int rounds_after_done = 0;
    while (rounds_after_done < 2 && !__atomic_load_n(&s->failed, __ATOMIC_SEQ_CST)) {
        if (__atomic_load_n(&s->done, __ATOMIC_SEQ_CST))
            rounds_after_done++;
        for (int i = 0; i < NBLK; i++) {
            uint64_t blk = (uint64_t)(rand_r(&seed) % NBLK);
            int r = f->ops->loadblk(f, blk, buf);
            if (r < 0) {
                fail(s, "loadblk failed", blk, r);
                break;
            }
            int v = version_of(buf, blk);
            if (v < 0)
                fail(s, "torn or unknown content", blk, v);
            else if (v < seen[blk])
                fail(s, "went back in time", blk, v);
            else
                seen[blk] = v;
            __atomic_add_fetch(&s->loads, 1, __ATOMIC_RELAXED);
        }
    }
    bf_db_file_close(s->db, f);
    free(buf);
    return NULL;
}

static void run(bf_db *db)
{
    struct shared s = { .db = db };
    struct bf_fileinfo fi;
    bf_file *w;
    pthread_t th[NREADERS];

    cr_assert_eq(bf_db_create(db, "c", BS, 0, 0644, 0, 0, &fi), 0);
    s.id = fi.id;
    cr_assert_eq(bf_db_file_open(db, s.id, &w), 0);
    tb_store_range(w, 0, NBLK, 1, NBLK * BS);
    for (int i = 0; i < NREADERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, reader, &s), 0);
    for (unsigned v = 2; v <= NVERSIONS && !__atomic_load_n(&s.failed, __ATOMIC_SEQ_CST); v++)
        tb_store_range(w, 0, NBLK, v, NBLK * BS);
    __atomic_store_n(&s.done, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < NREADERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(s.failed, 0, "%s", s.why);
    cr_assert_gt(s.loads, 0);
    for (uint64_t b = 0; b < NBLK; b++)
        tb_expect(w, b, NVERSIONS);
    bf_db_file_close(db, w);
}

Test(concurrent, memory_loads_during_commits, .timeout = 60)
{
    struct tb t;
    bf_db *db = tb_open(&t, 0);
    run(db);
    bf_db_close(db);
}

Test(concurrent, sqlite_loads_during_commits, .timeout = 60)
{
    struct tb t;
    bf_db *db = tb_open(&t, 1);
    run(db);
    bf_db_close(db);
    tb_rmdir(&t);
}

struct many {
    bf_db *db;
    uint64_t id;
    int failed; /* atomic */
};

static void *many_loader(void *arg)
{
    struct many *m = arg;
    bf_file *f;
    void *buf = malloc(BS);
    if (!buf || bf_db_file_open(m->db, m->id, &f) < 0) {
        __atomic_store_n(&m->failed, 1, __ATOMIC_SEQ_CST);
        free(buf);
        return NULL;
    }
    for (int i = 0; i < 50; i++) {
        uint64_t blk = (uint64_t)i % NBLK;
        if (f->ops->loadblk(f, blk, buf) < 0 || !tb_check(buf, BS, blk, 1))
            __atomic_store_n(&m->failed, 1, __ATOMIC_SEQ_CST);
    }
    bf_db_file_close(m->db, f);
    free(buf);
    return NULL;
}

/* More loading threads than the SQLite backend keeps reader connections
 * (16): the extra ones wait for a free connection, none fails. */
Test(concurrent, sqlite_more_threads_than_readers, .timeout = 60)
{
    enum {
        NTHREADS = 24
    };
    struct tb t;
    struct bf_fileinfo fi;
    bf_file *w;
    pthread_t th[NTHREADS];
    bf_db *db = tb_open(&t, 1);
    struct many m = { .db = db };
    cr_assert_eq(bf_db_create(db, "m", BS, 0, 0644, 0, 0, &fi), 0);
    m.id = fi.id;
    cr_assert_eq(bf_db_file_open(db, m.id, &w), 0);
    tb_store_range(w, 0, NBLK, 1, NBLK * BS);
    for (int i = 0; i < NTHREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, many_loader, &m), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(m.failed, 0);
    bf_db_file_close(db, w);
    bf_db_close(db);
    tb_rmdir(&t);
}
