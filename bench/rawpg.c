/* SPDX-License-Identifier: MIT */
/* rawpg — plain libpq loops that measure what the pg: engine's design
 * depends on (docs/design/PG-ENGINE.md), with no bigfilefs in between.
 *
 *   rawpg CONNINFO fetch  [--mib M] [--data pattern|sparse]
 *   rawpg CONNINFO upload [--mib M] [--data pattern|sparse]
 *   rawpg CONNINFO commit
 *   rawpg CONNINFO notify [--count N]
 *   rawpg CONNINFO all    [--mib M]
 *
 * Each command creates its tables in the database CONNINFO names (a scratch
 * database: every table and schema it makes is called rawpg_*; tables are
 * dropped first) and prints one line per variant: the median of --runs runs
 * (default 5) and [min..max]. The runs of the variants are interleaved (run
 * 1 of every variant, then run 2, ...), so that a machine's changing load
 * weighs on every variant alike. MiB/s are 2^20 bytes per second. The bytea
 * column of the fetch and upload tables is STORAGE EXTERNAL (no compression
 * attempt, the design's choice) or EXTENDED (the default) as each line
 * says; --data sparse makes every other word zero (compressible).
 *
 * fetch: M MiB of 2 MiB blocks, one row each, read in a loop by 1, 2 and 4
 *   connections (threads; connection t reads blocks t, t+C, ...), each
 *   block copied out of the result into a buffer and its words summed and
 *   checked (a wrong answer fails the run). Variants: PQexecParams with the
 *   SQL each time; a prepared statement; the same with text results
 *   (hex, PQunescapeBytea); a range query of 8 blocks with and without
 *   single-row mode; prepared statements pipelined 4 deep; and the
 *   engine's versioned load (blockmap joined to contents, newest serial <=
 *   a view). The data is warm in the OS page cache (one untimed pass).
 * upload: the same blocks written as the engine's uploads are, each timed
 *   to the end of a commit with synchronous_commit on: one autocommit
 *   INSERT per block (sync, or async with one sync commit at the end — WAL
 *   is flushed in order, so that commit makes every upload durable); one
 *   transaction of INSERTs; COPY BINARY; INSERTs pipelined in one
 *   transaction; and 2 and 4 connections uploading at once (async).
 * commit: the commit section of the design for N = 1, 100, 10000 blocks of
 *   one file of 10000 blocks: lock the counter row (UPDATE .. RETURNING),
 *   check the N blocks' current serials against their bases, supersede
 *   them, insert N map rows, release N uploads, update the file, log the
 *   commit, NOTIFY, COMMIT — as one round trip per statement, and
 *   pipelined (one round trip, then COMMIT); and two other block maps: one
 *   whose superseding UPDATE can be HOT, and an insert-only one (see
 *   enum map_design). Prints the whole section and the time the counter
 *   row is held.
 * notify: a listener connection (LISTEN, poll() on its socket) and a
 *   committer; the time from the committer's COMMIT being acknowledged to
 *   the listener's wake-up, and to the listener having read the new
 *   commit_log row (what a mount needs before it can apply the commit).
 *   p50, p99, max over N commits (default 500).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "pattern.h"
#include "util.h"

#define BLK ((size_t)2 << 20)
#define SEED 7
#define MAXCONN 4
#define RANGE 8 /* blocks per range query */
#define DEPTH 4 /* queries in flight in pipeline mode */

struct cfg {
    const char *conninfo;
    int nblk;
    int runs;
    int count;
    int sparse; /* every other word zero: compressible */
};

static struct cfg cfg = { NULL, 128, 5, 500, 0 };

/* The fetch and upload tables exist twice, in a schema per storage of
 * their bytea column; a connection picks one with its search_path. */
static const char *const storage_names[] = { "external", "extended" };

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("rawpg: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg; /* "table ... does not exist, skipping" and the like */
}

static PGconn *pconnect(void)
{
    const char *keys[] = { "dbname", "connect_timeout", NULL };
    const char *vals[] = { cfg.conninfo, "10", NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK)
        die("connect: %s", c ? PQerrorMessage(c) : "out of memory");
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

static PGresult *xexec(PGconn *c, const char *sql, ExecStatusType want)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != want)
        die("%s: %s", sql, PQerrorMessage(c));
    return r;
}

static void xcmd(PGconn *c, const char *sql)
{
    PQclear(xexec(c, sql, PGRES_COMMAND_OK));
}

static void xok(PGconn *c, PGresult *r, ExecStatusType want, const char *what)
{
    if (PQresultStatus(r) != want)
        die("%s: %s %s", what, PQresStatus(PQresultStatus(r)), PQerrorMessage(c));
    PQclear(r);
}

/* A connection whose unqualified tables are those of storage s. */
static PGconn *pconnect_storage(int s)
{
    char sql[64];
    PGconn *c = pconnect();
    snprintf(sql, sizeof(sql), "SET search_path = rawpg_%s, public", storage_names[s]);
    xcmd(c, sql);
    return c;
}

/* ---- data ---------------------------------------------------------------- */

/* The word sum of a block. Not inlined: with the constant size inlined,
 * GCC 12 warns (wrongly) that bench_sum_words' tail loop overflows. */
__attribute__((noipa)) static uint64_t words_sum(const void *buf, size_t n)
{
    return bench_sum_words(buf, n);
}

static void block_fill(uint64_t *buf, int b)
{
    bench_pattern_fill(buf, BLK, (uint64_t)b * BLK, SEED);
    if (cfg.sparse)
        for (size_t k = 0; k < BLK / 8; k += 2)
            buf[k] = 0;
}

static uint64_t *expected_sums(void)
{
    uint64_t *s = calloc((size_t)cfg.nblk, sizeof(*s)), *buf = malloc(BLK);
    if (!s || !buf)
        die("out of memory");
    for (int b = 0; b < cfg.nblk; b++) {
        block_fill(buf, b);
        s[b] = words_sum(buf, BLK);
    }
    free(buf);
    return s;
}

static uint64_t be64(uint64_t v)
{
    return ((uint64_t)htonl((uint32_t)v) << 32) | htonl((uint32_t)(v >> 32));
}

/* COPY ... FROM STDIN BINARY: start it (header), send rows, end it. */
static void copy_begin(PGconn *c, const char *sql)
{
    static const char hdr[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
    xok(c, PQexec(c, sql), PGRES_COPY_IN, sql);
    if (PQputCopyData(c, hdr, sizeof(hdr)) != 1)
        die("copy: %s", PQerrorMessage(c));
}

/* One row: n bigint fields, then a bytea of one block. */
static void copy_row(PGconn *c, const int64_t *ints, int n, const void *block)
{
    char row[2 + 3 * 12 + 4], *p = row;
    uint16_t nf = htons((uint16_t)(n + 1));
    uint32_t l8 = htonl(8), lb = htonl((uint32_t)BLK);
    memcpy(p, &nf, 2);
    p += 2;
    for (int i = 0; i < n && i < 3; i++) {
        uint64_t v = be64((uint64_t)ints[i]);
        memcpy(p, &l8, 4);
        memcpy(p + 4, &v, 8);
        p += 12;
    }
    memcpy(p, &lb, 4);
    p += 4;
    if (PQputCopyData(c, row, (int)(p - row)) != 1 ||
        PQputCopyData(c, (const char *)block, (int)BLK) != 1)
        die("copy: %s", PQerrorMessage(c));
}

static void copy_end(PGconn *c)
{
    uint16_t trailer = 0xffff;
    if (PQputCopyData(c, (const char *)&trailer, 2) != 1 || PQputCopyEnd(c, NULL) != 1)
        die("copy end: %s", PQerrorMessage(c));
    xok(c, PQgetResult(c), PGRES_COMMAND_OK, "copy");
    PQclear(PQgetResult(c));
}

/* The rows blocks(id, data) and blockmap(file 1, blk id, serial 1, content
 * id), filled with COPY BINARY. */
static void setup_blocks(int storage)
{
    char sql[512];
    PGconn *c = pconnect();
    snprintf(sql, sizeof(sql), "CREATE SCHEMA IF NOT EXISTS rawpg_%s", storage_names[storage]);
    xcmd(c, sql);
    PQfinish(c);
    c = pconnect_storage(storage);
    xcmd(c, "DROP TABLE IF EXISTS rawpg_blocks, rawpg_blockmap");
    xcmd(c, "CREATE TABLE rawpg_blocks(id bigint PRIMARY KEY, data bytea NOT NULL)");
    snprintf(sql, sizeof(sql), "ALTER TABLE rawpg_blocks ALTER COLUMN data SET STORAGE %s",
             storage_names[storage]);
    xcmd(c, sql);
    xcmd(c, "CREATE TABLE rawpg_blockmap(file bigint, blk bigint, serial bigint, content bigint, "
            "superseded bigint, PRIMARY KEY(file, blk, serial))");
    xcmd(c, "INSERT INTO rawpg_blockmap SELECT 1, b, 1, b FROM generate_series(0, 9999) b");
    copy_begin(c, "COPY rawpg_blocks FROM STDIN BINARY");
    uint64_t *buf = malloc(BLK);
    if (!buf)
        die("out of memory");
    for (int b = 0; b < cfg.nblk; b++) {
        const int64_t id = b;
        block_fill(buf, b);
        copy_row(c, &id, 1, buf);
    }
    copy_end(c);
    free(buf);
    xcmd(c, "VACUUM ANALYZE rawpg_blocks");
    xcmd(c, "VACUUM ANALYZE rawpg_blockmap");
    PQfinish(c);
}

/* ---- statistics ---------------------------------------------------------- */

static void report(const char *what, double *v, int n, const char *unit)
{
    qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
    printf("%-58s %9.1f %s  [%.1f..%.1f]\n", what, v[n / 2], unit, v[0], v[n - 1]);
    fflush(stdout);
}

/* ---- (a) fetch ----------------------------------------------------------- */

enum fetch_mode {
    F_PARAMS,
    F_PREPARED,
    F_TEXT,
    F_RANGE,
    F_RANGE_SINGLE,
    F_PIPELINE,
    F_VERSIONED,
};

static const char *const fetch_names[] = {
    "PQexecParams, binary",          "prepared, binary",
    "prepared, text (hex)",          "range of 8, one result",
    "range of 8, single-row mode",   "prepared, binary, pipelined 4 deep",
    "versioned load (map + serial)",
};

#define SQL_BY_ID "SELECT data FROM rawpg_blocks WHERE id = $1"
#define SQL_RANGE "SELECT id, data FROM rawpg_blocks WHERE id >= $1 AND id < $2 ORDER BY id"
#define SQL_VERSIONED                                                                             \
    "SELECT m.serial, c.data FROM rawpg_blockmap m LEFT JOIN rawpg_blocks c ON c.id = m.content " \
    "WHERE m.file = 1 AND m.blk = $1 AND m.serial <= $2 ORDER BY m.serial DESC LIMIT 1"

struct fetcher {
    pthread_t thread;
    pthread_barrier_t *start;
    int t, nconn, storage;
    enum fetch_mode mode;
    const uint64_t *sums;
    double t0, t1;
};

static void take_block(const struct fetcher *f, PGresult *r, int row, int col, int b, void *buf)
{
    int len = PQgetlength(r, row, col);
    if (len != (int)BLK)
        die("block %d: %d bytes", b, len);
    memcpy(buf, PQgetvalue(r, row, col), BLK);
    if (words_sum(buf, BLK) != f->sums[b])
        die("block %d: wrong data", b);
}

static PGresult *get_one(PGconn *c, int b)
{
    char id[24];
    const char *v[] = { id };
    snprintf(id, sizeof(id), "%d", b);
    return PQexecPrepared(c, "byid", 1, v, NULL, NULL, 1);
}

static void fetch_pipelined(PGconn *c, struct fetcher *f, void *buf)
{
    int sent = f->t, got = f->t;
    char id[24];
    if (!PQenterPipelineMode(c))
        die("pipeline: %s", PQerrorMessage(c));
    while (got < cfg.nblk) {
        while (sent < cfg.nblk && (sent - got) / f->nconn < DEPTH) {
            const char *v[] = { id }; /* libpq copies it into its send buffer */
            snprintf(id, sizeof(id), "%d", sent);
            if (!PQsendQueryPrepared(c, "byid", 1, v, NULL, NULL, 1) || !PQpipelineSync(c))
                die("send: %s", PQerrorMessage(c));
            sent += f->nconn;
        }
        PGresult *r = PQgetResult(c);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            die("pipelined fetch: %s", PQerrorMessage(c));
        take_block(f, r, 0, 0, got, buf);
        PQclear(r);
        if ((r = PQgetResult(c)) != NULL) /* end of this query's results */
            die("pipelined fetch: more than one result");
        r = PQgetResult(c);
        if (PQresultStatus(r) != PGRES_PIPELINE_SYNC)
            die("pipelined fetch: no sync");
        PQclear(r);
        got += f->nconn;
    }
    PQexitPipelineMode(c);
}

static void fetch_range(PGconn *c, struct fetcher *f, void *buf, int single)
{
    /* connection t reads ranges t, t+C, ... of RANGE blocks */
    for (int lo = f->t * RANGE; lo < cfg.nblk; lo += f->nconn * RANGE) {
        char a[24], z[24];
        const char *v[] = { a, z };
        snprintf(a, sizeof(a), "%d", lo);
        snprintf(z, sizeof(z), "%d", lo + RANGE);
        if (!PQsendQueryPrepared(c, "range", 2, v, NULL, NULL, 1))
            die("send: %s", PQerrorMessage(c));
        if (single && !PQsetSingleRowMode(c))
            die("single-row mode");
        PGresult *r;
        while ((r = PQgetResult(c)) != NULL) {
            ExecStatusType st = PQresultStatus(r);
            if (st != PGRES_TUPLES_OK && st != PGRES_SINGLE_TUPLE)
                die("range: %s", PQerrorMessage(c));
            for (int i = 0; i < PQntuples(r); i++) {
                uint64_t id;
                memcpy(&id, PQgetvalue(r, i, 0), 8);
                take_block(f, r, i, 1, (int)be64(id), buf);
            }
            PQclear(r);
        }
    }
}

static void *fetch_thread(void *arg)
{
    struct fetcher *f = arg;
    PGconn *c = pconnect_storage(f->storage);
    void *buf = aligned_alloc(4096, BLK);
    if (!buf)
        die("out of memory");
    xok(c, PQprepare(c, "byid", SQL_BY_ID, 0, NULL), PGRES_COMMAND_OK, "prepare");
    xok(c, PQprepare(c, "range", SQL_RANGE, 0, NULL), PGRES_COMMAND_OK, "prepare");
    xok(c, PQprepare(c, "versioned", SQL_VERSIONED, 0, NULL), PGRES_COMMAND_OK, "prepare");
    pthread_barrier_wait(f->start);
    f->t0 = bench_now();
    switch (f->mode) {
    case F_PIPELINE:
        fetch_pipelined(c, f, buf);
        break;
    case F_RANGE:
    case F_RANGE_SINGLE:
        fetch_range(c, f, buf, f->mode == F_RANGE_SINGLE);
        break;
    default:
        for (int b = f->t; b < cfg.nblk; b += f->nconn) {
            char id[24];
            const char *v[] = { id, "1" };
            snprintf(id, sizeof(id), "%d", b);
            PGresult *r;
            if (f->mode == F_PARAMS)
                r = PQexecParams(c, SQL_BY_ID, 1, NULL, v, NULL, NULL, 1);
            else if (f->mode == F_VERSIONED)
                r = PQexecPrepared(c, "versioned", 2, v, NULL, NULL, 1);
            else
                r = f->mode == F_TEXT ? PQexecPrepared(c, "byid", 1, v, NULL, NULL, 0)
                                      : get_one(c, b);
            if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
                die("fetch %d: %s", b, PQerrorMessage(c));
            if (f->mode == F_TEXT) {
                size_t n;
                unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0),
                                                     &n);
                if (!raw || n != BLK)
                    die("unescape");
                memcpy(buf, raw, BLK);
                PQfreemem(raw);
                if (words_sum(buf, BLK) != f->sums[b])
                    die("block %d: wrong data", b);
            } else {
                take_block(f, r, 0, f->mode == F_VERSIONED ? 1 : 0, b, buf);
            }
            PQclear(r);
        }
    }
    f->t1 = bench_now();
    free(buf);
    PQfinish(c);
    return NULL;
}

/* One run: nconn connections read every block once. Returns MiB/s. */
static double fetch_run(enum fetch_mode mode, int nconn, int storage, const uint64_t *sums)
{
    struct fetcher f[MAXCONN];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)nconn);
    for (int t = 0; t < nconn; t++) {
        f[t] = (struct fetcher){
            .start = &start, .t = t, .nconn = nconn, .storage = storage, .mode = mode, .sums = sums
        };
        pthread_create(&f[t].thread, NULL, fetch_thread, &f[t]);
    }
    double t0 = 1e300, t1 = 0;
    for (int t = 0; t < nconn; t++) {
        pthread_join(f[t].thread, NULL);
        t0 = f[t].t0 < t0 ? f[t].t0 : t0;
        t1 = f[t].t1 > t1 ? f[t].t1 : t1;
    }
    pthread_barrier_destroy(&start);
    return (double)cfg.nblk * BLK / (1 << 20) / (t1 - t0);
}

struct fetch_variant {
    enum fetch_mode mode;
    int conns, storage;
};

static void cmd_fetch(void)
{
    static struct fetch_variant v[32];
    int nv = 0;
    for (int m = F_PARAMS; m <= F_VERSIONED; m++)
        for (int k = 1; k <= 4; k *= 2)
            v[nv++] = (struct fetch_variant){ (enum fetch_mode)m, k, 0 };
    for (int k = 1; k <= 4; k *= 2)
        v[nv++] = (struct fetch_variant){ F_PREPARED, k, 1 };
    setup_blocks(0);
    setup_blocks(1);
    uint64_t *sums = expected_sums();
    fetch_run(F_PREPARED, 2, 0, sums); /* warm the OS cache */
    fetch_run(F_PREPARED, 2, 1, sums);
    printf("# fetch: %d blocks of 2 MiB, %s data; runs interleaved\n", cfg.nblk,
           cfg.sparse ? "sparse" : "pattern");
    static double val[32][16];
    for (int i = 0; i < cfg.runs; i++)
        for (int k = 0; k < nv; k++)
            val[k][i] = fetch_run(v[k].mode, v[k].conns, v[k].storage, sums);
    for (int k = 0; k < nv; k++) {
        char what[128];
        snprintf(what, sizeof(what), "fetch %-34s %-8s conns=%d", fetch_names[v[k].mode],
                 storage_names[v[k].storage], v[k].conns);
        report(what, val[k], cfg.runs, "MiB/s");
    }
    free(sums);
}

/* ---- (b) upload ---------------------------------------------------------- */

enum upload_mode {
    U_TXN_SYNC,
    U_TXN_ASYNC,
    U_ONE_TXN,
    U_COPY,
    U_PIPELINE,
    U_PAR2,
    U_PAR4,
};

static const char *const upload_names[] = {
    "a transaction per block, each synchronous",
    "a transaction per block, async + one sync commit",
    "one transaction of INSERTs",
    "one transaction, COPY BINARY",
    "one transaction, INSERTs pipelined",
    "2 connections, async transactions + sync commit",
    "4 connections, async transactions + sync commit",
};

#define SQL_UPLOAD "INSERT INTO rawpg_contents(id, session, data) VALUES ($1, 1, $2)"

struct uploader {
    pthread_t thread;
    pthread_barrier_t *start;
    int t, nconn, storage;
    const void *data; /* every block, contiguous */
    double t1;
};

static void upload_one(PGconn *c, int b, const void *data)
{
    uint64_t id = be64((uint64_t)b);
    const char *v[] = { (const char *)&id, (const char *)data + (size_t)b * BLK };
    const int l[] = { 8, (int)BLK }, fm[] = { 1, 1 };
    xok(c, PQexecPrepared(c, "upload", 2, v, l, fm, 0), PGRES_COMMAND_OK, "upload");
}

static PGconn *upload_conn(int storage)
{
    PGconn *c = pconnect_storage(storage);
    xok(c, PQprepare(c, "upload", SQL_UPLOAD, 0, NULL), PGRES_COMMAND_OK, "prepare");
    return c;
}

static void *upload_thread(void *arg)
{
    struct uploader *u = arg;
    PGconn *c = upload_conn(u->storage);
    xcmd(c, "SET synchronous_commit = off");
    pthread_barrier_wait(u->start);
    for (int b = u->t; b < cfg.nblk; b += u->nconn)
        upload_one(c, b, u->data);
    u->t1 = bench_now();
    PQfinish(c);
    return NULL;
}

static void upload_copy(PGconn *c, const void *data)
{
    copy_begin(c, "COPY rawpg_contents(id, session, data) FROM STDIN BINARY");
    for (int b = 0; b < cfg.nblk; b++) {
        const int64_t v[2] = { b, 1 };
        copy_row(c, v, 2, (const char *)data + (size_t)b * BLK);
    }
    copy_end(c);
}

static void upload_pipelined(PGconn *c, const void *data)
{
    if (!PQenterPipelineMode(c))
        die("pipeline: %s", PQerrorMessage(c));
    static uint64_t ids[4096];
    for (int b = 0; b < cfg.nblk; b++) {
        ids[b] = be64((uint64_t)b);
        const char *v[] = { (const char *)&ids[b], (const char *)data + (size_t)b * BLK };
        const int l[] = { 8, (int)BLK }, fm[] = { 1, 1 };
        if (!PQsendQueryPrepared(c, "upload", 2, v, l, fm, 0))
            die("send: %s", PQerrorMessage(c));
    }
    if (!PQpipelineSync(c))
        die("sync: %s", PQerrorMessage(c));
    for (int b = 0; b < cfg.nblk; b++) {
        xok(c, PQgetResult(c), PGRES_COMMAND_OK, "pipelined upload");
        if (PQgetResult(c) != NULL)
            die("pipelined upload: extra result");
    }
    PGresult *r = PQgetResult(c);
    if (PQresultStatus(r) != PGRES_PIPELINE_SYNC)
        die("pipelined upload: no sync");
    PQclear(r);
    PQexitPipelineMode(c);
}

/* One run, from the first upload to the acknowledged durable commit.
 * Returns MiB/s. */
static double upload_run(enum upload_mode mode, int storage, const void *data)
{
    PGconn *c = upload_conn(storage);
    xcmd(c, "TRUNCATE rawpg_contents");
    xcmd(c, "CHECKPOINT");
    double t0 = bench_now();
    switch (mode) {
    case U_TXN_SYNC:
        for (int b = 0; b < cfg.nblk; b++)
            upload_one(c, b, data);
        break;
    case U_TXN_ASYNC:
        xcmd(c, "SET synchronous_commit = off");
        for (int b = 0; b < cfg.nblk; b++)
            upload_one(c, b, data);
        xcmd(c, "SET synchronous_commit = on");
        break;
    case U_ONE_TXN:
    case U_COPY:
    case U_PIPELINE:
        xcmd(c, "BEGIN");
        if (mode == U_COPY)
            upload_copy(c, data);
        else if (mode == U_PIPELINE)
            upload_pipelined(c, data);
        else
            for (int b = 0; b < cfg.nblk; b++)
                upload_one(c, b, data);
        xcmd(c, "COMMIT");
        break;
    case U_PAR2:
    case U_PAR4: {
        int n = mode == U_PAR2 ? 2 : 4;
        struct uploader u[MAXCONN];
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, (unsigned)n + 1);
        for (int t = 0; t < n; t++) {
            u[t] = (struct uploader){
                .start = &start, .t = t, .nconn = n, .storage = storage, .data = data
            };
            pthread_create(&u[t].thread, NULL, upload_thread, &u[t]);
        }
        pthread_barrier_wait(&start);
        t0 = bench_now();
        for (int t = 0; t < n; t++)
            pthread_join(u[t].thread, NULL);
        pthread_barrier_destroy(&start);
        break;
    }
    }
    if (mode == U_TXN_ASYNC || mode == U_PAR2 || mode == U_PAR4)
        /* the commit section's synchronous commit: flushes the WAL of
         * every upload before it */
        xcmd(c, "INSERT INTO rawpg_contents(id, session, data) VALUES (-1, 1, '')");
    double secs = bench_now() - t0;
    PGresult *r = xexec(c, "SELECT count(*) FROM rawpg_contents", PGRES_TUPLES_OK);
    if (atoi(PQgetvalue(r, 0, 0)) < cfg.nblk)
        die("upload: %s rows", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return (double)cfg.nblk * BLK / (1 << 20) / secs;
}

static void cmd_upload(void)
{
    static const struct {
        enum upload_mode mode;
        int storage;
    } v[] = {
        { U_TXN_SYNC, 0 }, { U_TXN_ASYNC, 0 }, { U_ONE_TXN, 0 },
        { U_COPY, 0 },     { U_PIPELINE, 0 },  { U_PAR2, 0 },
        { U_PAR4, 0 },     { U_TXN_ASYNC, 1 }, { U_ONE_TXN, 1 },
    };
    enum {
        NV = sizeof(v) / sizeof(v[0])
    };
    PGconn *c = pconnect();
    PGresult *r = xexec(c, "SHOW fsync", PGRES_TUPLES_OK);
    printf("# upload: %d blocks of 2 MiB, %s data, fsync %s; runs interleaved\n", cfg.nblk,
           cfg.sparse ? "sparse" : "pattern", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    for (int st = 0; st < 2; st++) {
        char sql[256];
        c = pconnect();
        snprintf(sql, sizeof(sql), "CREATE SCHEMA IF NOT EXISTS rawpg_%s", storage_names[st]);
        xcmd(c, sql);
        PQfinish(c);
        c = pconnect_storage(st);
        xcmd(c, "DROP TABLE IF EXISTS rawpg_contents");
        xcmd(c, "CREATE TABLE rawpg_contents(id bigint PRIMARY KEY, session bigint, data bytea "
                "NOT NULL)");
        snprintf(sql, sizeof(sql), "ALTER TABLE rawpg_contents ALTER COLUMN data SET STORAGE %s",
                 storage_names[st]);
        xcmd(c, sql);
        PQfinish(c);
    }
    uint64_t *data = aligned_alloc(4096, (size_t)cfg.nblk * BLK);
    if (!data || cfg.nblk > 4096)
        die("out of memory");
    for (int b = 0; b < cfg.nblk; b++)
        block_fill(data + (size_t)b * (BLK / 8), b);
    static double val[NV][16];
    for (int i = 0; i < cfg.runs; i++)
        for (int k = 0; k < NV; k++)
            val[k][i] = upload_run(v[k].mode, v[k].storage, data);
    for (int k = 0; k < NV; k++) {
        char what[128];
        snprintf(what, sizeof(what), "upload %-48s %s", upload_names[v[k].mode],
                 storage_names[v[k].storage]);
        report(what, val[k], cfg.runs, "MiB/s");
    }
    free(data);
}

/* ---- (c) the commit section ---------------------------------------------- */

#define NFILEBLK 10000

/* How the block map records that a version was replaced. */
enum map_design {
    /* superseded set by the commit, a partial index on the current
     * versions (the design of COHERENCE.md, as SQLite does it) */
    MAP_SUPERSEDE_INDEXED,
    /* superseded set by the commit, no index mentions it and the table
     * has room on its pages (fillfactor 50): the UPDATE can be HOT */
    MAP_SUPERSEDE_HOT,
    /* insert-only: the current version is the newest serial; superseded
     * is derived later (the trim), never in the commit section */
    MAP_INSERT_ONLY,
};

static const char *const map_names[] = { "supersede+index", "supersede,HOT", "insert-only" };

static void commit_schema(PGconn *c, enum map_design d)
{
    xcmd(c, "DEALLOCATE ALL");
    xcmd(c, "DROP TABLE IF EXISTS rawpg_counter, rawpg_map, rawpg_uploads, rawpg_files, "
            "rawpg_log");
    xcmd(c, "CREATE TABLE rawpg_counter(one boolean PRIMARY KEY CHECK (one), serial bigint NOT "
            "NULL)");
    xcmd(c, "INSERT INTO rawpg_counter VALUES (true, 1)");
    xcmd(c, d == MAP_SUPERSEDE_HOT
                ? "CREATE TABLE rawpg_map(file bigint NOT NULL, blk bigint NOT NULL, serial bigint "
                  "NOT NULL, content bigint, superseded bigint, PRIMARY KEY(file, blk, serial)) "
                  "WITH (fillfactor = 50)"
                : "CREATE TABLE rawpg_map(file bigint NOT NULL, blk bigint NOT NULL, serial bigint "
                  "NOT NULL, content bigint, superseded bigint, PRIMARY KEY(file, blk, serial))");
    if (d == MAP_SUPERSEDE_INDEXED)
        xcmd(c, "CREATE INDEX rawpg_map_current ON rawpg_map(file, blk) WHERE superseded IS NULL "
                "AND content IS NOT NULL");
    xcmd(c, "CREATE TABLE rawpg_uploads(content bigint PRIMARY KEY, session bigint NOT NULL)");
    xcmd(c, "CREATE TABLE rawpg_files(id bigint PRIMARY KEY, size bigint, mtime_ns bigint, "
            "content_serial bigint, size_serial bigint, meta_serial bigint)");
    xcmd(c, "INSERT INTO rawpg_files VALUES (1, 20971520000, 0, 1, 1, 1)");
    xcmd(c, "CREATE TABLE rawpg_log(serial bigint PRIMARY KEY, session bigint NOT NULL, kind int "
            "NOT NULL, file bigint, time_ns bigint NOT NULL, size bigint, blocks bytea)");
    xcmd(c, "INSERT INTO rawpg_map SELECT 1, b, 1, b, NULL FROM generate_series(0, 9999) b");
    xcmd(c, "VACUUM ANALYZE rawpg_map");
}

/* The section's statements. Parameters: $1 blks int8[], $2 bases int8[]
 * or contents int8[], $1 mtime, $2 the block list. S is read back from
 * the counter row the transaction holds. The counter also returns when
 * the server took the row's lock (the client and the server share a clock
 * here: the row is held from then to COMMIT's acknowledgement). */
#define SQL_COUNTER                                                   \
    "UPDATE rawpg_counter SET serial = serial + 1 RETURNING serial, " \
    "extract(epoch FROM clock_timestamp())"
#define SQL_CHECK_CURRENT                                                                \
    "SELECT m.blk FROM rawpg_map m JOIN unnest($1::int8[], $2::int8[]) AS u(blk, base) " \
    "ON m.file = 1 AND m.blk = u.blk AND m.superseded IS NULL WHERE m.serial > u.base"
#define SQL_CHECK_NEWEST                                                                     \
    "SELECT u.blk FROM unnest($1::int8[], $2::int8[]) AS u(blk, base) WHERE EXISTS (SELECT " \
    "1 FROM rawpg_map m WHERE m.file = 1 AND m.blk = u.blk AND m.serial > u.base)"
#define SQL_SUPERSEDE                                                                          \
    "UPDATE rawpg_map SET superseded = (SELECT serial FROM rawpg_counter) WHERE file = 1 AND " \
    "blk = ANY($1::int8[]) AND superseded IS NULL"
#define SQL_LINK                                                                              \
    "INSERT INTO rawpg_map(file, blk, serial, content) SELECT 1, u.blk, (SELECT serial FROM " \
    "rawpg_counter), u.content FROM unnest($1::int8[], $2::int8[]) AS u(blk, content)"
#define SQL_RELEASE "DELETE FROM rawpg_uploads WHERE content = ANY($1::int8[])"
#define SQL_FILE                                                                               \
    "UPDATE rawpg_files SET content_serial = c.serial, meta_serial = c.serial, mtime_ns = $1 " \
    "FROM rawpg_counter c WHERE id = 1"
#define SQL_LOG                                                                              \
    "INSERT INTO rawpg_log(serial, session, kind, file, time_ns, blocks) SELECT serial, 1, " \
    "1, 1, $1, $2 FROM rawpg_counter"
#define SQL_NOTIFY "SELECT pg_notify('rawpg', serial::text) FROM rawpg_counter"

enum {
    ST_COUNTER,
    ST_CHECK,
    ST_SUPERSEDE,
    ST_LINK,
    ST_RELEASE,
    ST_FILE,
    ST_LOG,
    ST_NOTIFY,
    NST
};

static void prepare_section(PGconn *c, enum map_design d)
{
    static const char *const sql[NST] = { SQL_COUNTER, NULL,     SQL_SUPERSEDE, SQL_LINK,
                                          SQL_RELEASE, SQL_FILE, SQL_LOG,       SQL_NOTIFY };
    for (int i = 0; i < NST; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        const char *q = i != ST_CHECK          ? sql[i]
                        : d == MAP_INSERT_ONLY ? SQL_CHECK_NEWEST
                                               : SQL_CHECK_CURRENT;
        xok(c, PQprepare(c, name, q, 0, NULL), PGRES_COMMAND_OK, q);
    }
}

/* The parameters of one section, binary. */
struct section {
    char *arr[3]; /* blks, bases, contents: int8[] */
    int alen[3];
    char mtime[24];
    char blocks[64];
};

/* A binary int8[] of n values. */
static char *int8_array(const int64_t *v, int n, int *len)
{
    *len = 20 + 12 * n;
    char *a = malloc((size_t)*len), *p = a;
    if (!a)
        die("out of memory");
    uint32_t hdr[5] = { htonl(1), 0, htonl(20 /* INT8OID */), htonl((uint32_t)n), htonl(1) };
    memcpy(p, hdr, sizeof(hdr));
    p += sizeof(hdr);
    for (int i = 0; i < n; i++) {
        uint32_t l = htonl(8);
        uint64_t x = be64((uint64_t)v[i]);
        memcpy(p, &l, 4);
        memcpy(p + 4, &x, 8);
        p += 12;
    }
    return a;
}

static int send_stmt(PGconn *c, int i, const struct section *s)
{
    char name[16];
    const char *v[2] = { NULL, NULL };
    int l[2] = { 0, 0 }, f[2] = { 1, 1 }, n = 2;
    snprintf(name, sizeof(name), "s%d", i);
    switch (i) {
    case ST_COUNTER: /* text: the lock time is a numeric */
    case ST_NOTIFY:
        return PQsendQueryPrepared(c, name, 0, NULL, NULL, NULL, 0);
    case ST_CHECK:
    case ST_LINK:
        v[0] = s->arr[0], l[0] = s->alen[0];
        v[1] = s->arr[i == ST_CHECK ? 1 : 2], l[1] = s->alen[i == ST_CHECK ? 1 : 2];
        break;
    case ST_SUPERSEDE:
    case ST_RELEASE:
        v[0] = s->arr[i == ST_RELEASE ? 2 : 0], l[0] = s->alen[i == ST_RELEASE ? 2 : 0];
        n = 1;
        break;
    case ST_FILE:
        v[0] = s->mtime, f[0] = 0, n = 1;
        break;
    default: /* ST_LOG */
        v[0] = s->mtime, f[0] = 0;
        v[1] = s->blocks, l[1] = (int)sizeof(s->blocks);
    }
    return PQsendQueryPrepared(c, name, n, v, l, f, 1);
}

/* Check one result of the section; returns the lock time (CLOCK_REALTIME
 * seconds) for the counter's, else 0. */
static double section_result(PGconn *c, PGresult *r, int i)
{
    ExecStatusType st = PQresultStatus(r);
    double tl = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        die("section statement %d: %s", i, PQerrorMessage(c));
    if (i == ST_COUNTER)
        tl = atof(PQgetvalue(r, 0, 1));
    if (i == ST_CHECK && PQntuples(r) != 0)
        die("unexpected conflict");
    PQclear(r);
    return tl;
}

/* One commit section; *held = seconds from the counter row's lock to the
 * acknowledged COMMIT. Returns the whole section's seconds. Pipelined:
 * every statement in one round trip, then COMMIT (or, on a conflict the
 * check reported, ROLLBACK) in a second one. */
static double section_run(PGconn *c, const struct section *s, enum map_design d, int pipelined,
                          double *held)
{
    double t0 = bench_now(), tl = 0;
    int skip = d == MAP_INSERT_ONLY ? ST_SUPERSEDE : -1;
    if (pipelined && !PQenterPipelineMode(c))
        die("pipeline");
    if (!PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0))
        die("send: %s", PQerrorMessage(c));
    if (pipelined) {
        for (int i = 0; i < NST; i++)
            if (i != skip && !send_stmt(c, i, s))
                die("send: %s", PQerrorMessage(c));
        if (!PQpipelineSync(c))
            die("sync: %s", PQerrorMessage(c));
        section_result(c, PQgetResult(c), -1);
        PQgetResult(c);
        for (int i = 0; i < NST; i++) {
            if (i == skip)
                continue;
            double t = section_result(c, PQgetResult(c), i);
            tl = t ? t : tl;
            PQgetResult(c); /* the NULL after each statement's result */
        }
        PGresult *r = PQgetResult(c);
        if (PQresultStatus(r) != PGRES_PIPELINE_SYNC)
            die("no sync");
        PQclear(r);
        PQexitPipelineMode(c);
    } else {
        section_result(c, PQgetResult(c), -1);
        PQgetResult(c);
        for (int i = 0; i < NST; i++) {
            if (i == skip)
                continue;
            if (!send_stmt(c, i, s))
                die("send: %s", PQerrorMessage(c));
            double t = section_result(c, PQgetResult(c), i);
            tl = t ? t : tl;
            PQgetResult(c);
        }
    }
    xcmd(c, "COMMIT");
    double t1 = bench_now();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    *held = (double)now.tv_sec + (double)now.tv_nsec * 1e-9 - tl;
    return t1 - t0;
}

/* Make the n uploads a section of blocks [first, first+n) links (untimed)
 * and its parameters. */
static void section_make(PGconn *c, struct section *sec, int first, int n, int64_t *next_content)
{
    int64_t *v = malloc(sizeof(int64_t) * (size_t)n * 3);
    if (!v)
        die("out of memory");
    PGresult *r = xexec(c, "SELECT serial FROM rawpg_counter", PGRES_TUPLES_OK);
    int64_t cur = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    for (int i = 0; i < n; i++) {
        v[i] = first + i;
        v[n + i] = cur;
        v[2 * n + i] = (*next_content)++;
    }
    for (int a = 0; a < 3; a++)
        sec->arr[a] = int8_array(v + a * n, n, &sec->alen[a]);
    free(v);
    const char *p[] = { sec->arr[2] };
    const int one[] = { 1 };
    xok(c,
        PQexecParams(c, "INSERT INTO rawpg_uploads SELECT u, 1 FROM unnest($1::int8[]) u", 1, NULL,
                     p, &sec->alen[2], one, 0),
        PGRES_COMMAND_OK, "uploads");
    snprintf(sec->mtime, sizeof(sec->mtime), "%d", first);
    memset(sec->blocks, 0, sizeof(sec->blocks));
}

static void cmd_commit(void)
{
    static const struct {
        enum map_design d;
        int pipelined;
    } v[] = {
        { MAP_SUPERSEDE_INDEXED, 0 },
        { MAP_SUPERSEDE_INDEXED, 1 },
        { MAP_SUPERSEDE_HOT, 1 },
        { MAP_INSERT_ONLY, 1 },
    };
    enum {
        NV = sizeof(v) / sizeof(v[0])
    };
    static const int ns[] = { 1, 100, 10000 };
    PGconn *c[NV];
    int64_t next_content[NV];
    /* a schema and a connection per variant, so that their runs can be
     * interleaved */
    for (int k = 0; k < NV; k++) {
        char sql[96];
        c[k] = pconnect();
        snprintf(sql, sizeof(sql), "CREATE SCHEMA IF NOT EXISTS rawpg_c%d", k);
        xcmd(c[k], sql);
        snprintf(sql, sizeof(sql), "SET search_path = rawpg_c%d", k);
        xcmd(c[k], sql);
        commit_schema(c[k], v[k].d);
        prepare_section(c[k], v[k].d);
        next_content[k] = NFILEBLK;
    }
    PGresult *r = xexec(c[0], "SHOW fsync", PGRES_TUPLES_OK);
    printf("# commit section: one file of %d blocks, fsync %s; ms; runs interleaved\n", NFILEBLK,
           PQgetvalue(r, 0, 0));
    PQclear(r);
    for (unsigned i = 0; i < 3; i++) {
        int n = ns[i], reps = n == 1 ? 200 : n == 100 ? 50 : 9;
        static double whole[NV][200], held[NV][200];
        for (int rep = 0; rep < reps; rep++)
            for (int k = 0; k < NV; k++) {
                struct section sec;
                section_make(c[k], &sec, (int)((rep * 7919L) % (NFILEBLK - n + 1)), n,
                             &next_content[k]);
                whole[k][rep] = 1e3 *
                                section_run(c[k], &sec, v[k].d, v[k].pipelined, &held[k][rep]);
                held[k][rep] *= 1e3;
                for (int a = 0; a < 3; a++)
                    free(sec.arr[a]);
            }
        for (int k = 0; k < NV; k++) {
            char what[128];
            const char *how = v[k].pipelined ? "pipelined" : "serial";
            snprintf(what, sizeof(what), "commit N=%-5d %-15s %-9s whole", n, map_names[v[k].d],
                     how);
            report(what, whole[k], reps, "ms");
            snprintf(what, sizeof(what), "commit N=%-5d %-15s %-9s row held", n, map_names[v[k].d],
                     how);
            report(what, held[k], reps, "ms");
        }
    }
    for (int k = 0; k < NV; k++)
        PQfinish(c[k]);
}

/* ---- (d) LISTEN/NOTIFY latency ------------------------------------------- */

struct listener {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;        /* listening */
    int stop;         /* the next notification ends the thread */
    long seen;        /* serial of the last row read */
    double woke, got; /* times of the last wake-up and of its row */
};

static void *listen_thread(void *arg)
{
    struct listener *l = arg;
    PGconn *c = pconnect();
    xcmd(c, "LISTEN rawpg");
    xok(c,
        PQprepare(c, "rows", "SELECT serial FROM rawpg_log WHERE serial > $1 ORDER BY serial", 0,
                  NULL),
        PGRES_COMMAND_OK, "prepare");
    pthread_mutex_lock(&l->mu);
    l->ready = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    long applied = 0;
    for (;;) {
        struct pollfd p = { .fd = PQsocket(c), .events = POLLIN };
        if (poll(&p, 1, 10000) <= 0)
            die("listener: no notification in 10 s");
        double woke = bench_now();
        if (!PQconsumeInput(c))
            die("listener: %s", PQerrorMessage(c));
        PGnotify *n;
        int any = 0;
        while ((n = PQnotifies(c)) != NULL) {
            any = 1;
            PQfreemem(n);
        }
        if (!any)
            continue;
        pthread_mutex_lock(&l->mu);
        int stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop)
            break;
        char a[24];
        const char *v[] = { a };
        snprintf(a, sizeof(a), "%ld", applied);
        PGresult *r = PQexecPrepared(c, "rows", 1, v, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
            die("listener: the notified row is not visible (%s)", PQerrorMessage(c));
        applied = atol(PQgetvalue(r, PQntuples(r) - 1, 0));
        PQclear(r);
        pthread_mutex_lock(&l->mu);
        l->woke = woke;
        l->got = bench_now();
        l->seen = applied;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    PQfinish(c);
    return NULL;
}

static void cmd_notify(void)
{
    PGconn *c = pconnect();
    xcmd(c, "DROP TABLE IF EXISTS rawpg_log, rawpg_counter");
    xcmd(c, "CREATE TABLE rawpg_counter(one boolean PRIMARY KEY CHECK (one), serial bigint NOT "
            "NULL)");
    xcmd(c, "INSERT INTO rawpg_counter VALUES (true, 0)");
    xcmd(c, "CREATE TABLE rawpg_log(serial bigint PRIMARY KEY, session bigint NOT NULL, kind int "
            "NOT NULL, file bigint, time_ns bigint NOT NULL, size bigint, blocks bytea)");
    struct listener l = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
    pthread_create(&l.thread, NULL, listen_thread, &l);
    pthread_mutex_lock(&l.mu);
    while (!l.ready)
        pthread_cond_wait(&l.cv, &l.mu);
    pthread_mutex_unlock(&l.mu);
    int n = cfg.count;
    double *wake = malloc(sizeof(double) * (size_t)n), *row = malloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) {
        PQclear(xexec(c,
                      "BEGIN; UPDATE rawpg_counter SET serial = serial + 1; INSERT INTO rawpg_log "
                      "SELECT serial, 1, 1, 1, 0 FROM rawpg_counter; SELECT pg_notify('rawpg', "
                      "serial::text) FROM rawpg_counter; COMMIT",
                      PGRES_COMMAND_OK));
        double acked = bench_now();
        pthread_mutex_lock(&l.mu);
        while (l.seen != i + 1)
            pthread_cond_wait(&l.cv, &l.mu);
        wake[i] = 1e3 * (l.woke - acked);
        row[i] = 1e3 * (l.got - acked);
        pthread_mutex_unlock(&l.mu);
    }
    pthread_mutex_lock(&l.mu);
    l.stop = 1;
    pthread_mutex_unlock(&l.mu);
    xcmd(c, "NOTIFY rawpg");
    pthread_join(l.thread, NULL);
    PQfinish(c);
    printf("# notify: %d commits; ms from the committer's acknowledged COMMIT\n", n);
    qsort(wake, (size_t)n, sizeof(double), bench_cmp_double);
    qsort(row, (size_t)n, sizeof(double), bench_cmp_double);
    printf("%-58s p50 %.3f  p99 %.3f  max %.3f ms\n", "notify: listener woken", wake[n / 2],
           bench_quantile(wake, (size_t)n, 0.99), wake[n - 1]);
    printf("%-58s p50 %.3f  p99 %.3f  max %.3f ms\n", "notify: commit_log row read", row[n / 2],
           bench_quantile(row, (size_t)n, 0.99), row[n - 1]);
    free(wake);
    free(row);
}

/* ---- main ---------------------------------------------------------------- */

static void usage(void)
{
    fputs("usage: rawpg CONNINFO fetch|upload|commit|notify|all [--mib M] [--runs R] "
          "[--count N]\n"
          "       [--data pattern|sparse]\n"
          "  (see the comment at the top of bench/rawpg.c)\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        usage();
    cfg.conninfo = argv[1];
    const char *cmd = argv[2];
    for (int i = 3; i < argc; i += 2) {
        if (i + 1 >= argc)
            usage();
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--mib"))
            cfg.nblk = atoi(v) / 2;
        else if (!strcmp(o, "--runs"))
            cfg.runs = atoi(v);
        else if (!strcmp(o, "--count"))
            cfg.count = atoi(v);
        else if (!strcmp(o, "--data") && (!strcmp(v, "pattern") || !strcmp(v, "sparse")))
            cfg.sparse = !strcmp(v, "sparse");
        else
            usage();
    }
    if (cfg.nblk < 8 || cfg.nblk > 4096 || cfg.runs < 1 || cfg.runs > 15 || cfg.count < 1)
        usage();
    int all = !strcmp(cmd, "all");
    if (all || !strcmp(cmd, "fetch"))
        cmd_fetch();
    if (all || !strcmp(cmd, "upload"))
        cmd_upload();
    if (all || !strcmp(cmd, "commit"))
        cmd_commit();
    if (all || !strcmp(cmd, "notify"))
        cmd_notify();
    if (!all && strcmp(cmd, "fetch") && strcmp(cmd, "upload") && strcmp(cmd, "commit") &&
        strcmp(cmd, "notify"))
        usage();
    return 0;
}
