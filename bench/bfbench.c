/* SPDX-License-Identifier: MIT */
/* bfbench — one benchmark measurement per invocation, for bench/run.sh.
 *
 * Each command does one run of one measurement on one file (a bigfilefs
 * file, a tmpfs file, or a bigfilefs database for the raw SQLite
 * references) and prints its result as numbers on one line, so that the
 * driver can interleave the runs of a figure and its references and take
 * medians. Every reader checks the word sum of what it read against the
 * pattern's closed form (pattern.h) and fails on a mismatch: a fast wrong
 * answer is not a result.
 *
 *   bfbench fill FILE --length L [--seed S] [--writeout-every N]
 *       write(2) the pattern over [0, L) in 1 MiB chunks; on bigfilefs, commit
 *       every N bytes and at the end (BIGFILE_IOC_WRITEOUT). Prints seconds.
 *   bfbench seqread FILE [--length L] [--offset O] [--seed S] [--cold MODE] [--warm]
 *       mmap the range read-only and sum every word. --warm reads it once
 *       untimed first. Prints "GB/s faults_per_MiB" (page faults taken by
 *       the timed pass: 16 per MiB when the kernel maps 16 pages a fault).
 *   bfbench par FILE --procs P [--length L] [--seed S] [--cold MODE]
 *       P processes read P consecutive slices of [0, L) at once through
 *       mmap. Prints aggregate GB/s (total bytes / time until the last ends).
 *   bfbench randfault FILE --count N [--seed S] [--rng R] [--cold MODE] [--madvise random]
 *       mmap the whole file, then fault one 4 KiB page in each of N distinct
 *       random blocks (chosen by the generator seeded with R), timing each
 *       fault and checking the word read. --madvise random turns the
 *       kernel's read-around off for the mapping (MADV_RANDOM).
 *       Prints "p50_us p99_us max_us".
 *   bfbench touch FILE --count N [--rng R]
 *       read one byte in each of N distinct random blocks (a sparse file's
 *       holes read as zeros). Prints seconds.
 *   bfbench dirty FILE --length L [--seed S]
 *       map [0, L) shared and writable, write the pattern into every word,
 *       then — still mapped, no msync — time BIGFILE_IOC_WRITEOUT (on a
 *       file that is not a bigfile: fsync, the plain-file reference).
 *       Prints "writeout_GBps dirty_secs writeout_secs total_GBps", the
 *       last over dirtying and writeout together.
 *   bfbench follow FILE_A FILE_B --count N
 *       FILE_A and FILE_B are one file on two mounts of one database (-o
 *       shared). Map FILE_B read-only, then N times: write a new value into
 *       a block of FILE_A (the first 8 bytes of block k % blocks), commit
 *       it (BIGFILE_IOC_WRITEOUT), and time until the mapping of FILE_B
 *       shows it — without reopening — from the writeout's return, looking
 *       every 20 us. Prints "p50_ms p99_ms max_ms".
 *   bfbench cold FILE --cold MODE
 *       only make FILE cold (util.h), e.g. to time a daemon's CPU use
 *       without the cost of the reclaim. Prints nothing.
 *   bfbench sqlread DB --name NAME [--seed S] [--cold MODE] [--fresh-buffers]
 *       raw SQLite: read every block of bigfile NAME in a C loop (rawsql.h),
 *       into one reused buffer or a fresh mapping per block. Prints GB/s.
 *   bfbench sqlwrite SCRATCH --schema-from DB --blksize B --length L [--seed S]
 *       raw SQLite: write the blocks of [0, L) in one transaction. Prints GB/s.
 *
 * --seed is the seed of the data pattern (pattern.h), the same for writing
 * and checking a file; --rng seeds the choice of random blocks.
 * GB/s are 10^9 bytes per second. Exit status: 0 ok, 1 failure, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bigfile/ioctl.h>

#include "pattern.h"
#include "rawsql.h"
#include "util.h"

#define PAGE 4096u
#define CHUNK ((size_t)1 << 20)

struct opts {
    uint64_t length, offset, seed, rng, every, count, procs, blksize;
    int has_length, warm, advice, fresh;
    enum bench_cold cold;
    const char *name, *schema_from;
};

static void usage(void)
{
    fputs("usage: bfbench fill|seqread|par|randfault|touch|dirty|sqlread|sqlwrite PATH [options]\n"
          "       bfbench follow PATH_A PATH_B --count N\n"
          "  (see the comment at the top of bench/bfbench.c, and bench/README)\n",
          stderr);
    exit(2);
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bfbench: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        die(path, errno);
    return (uint64_t)st.st_size;
}

static uint32_t file_blksize(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        die(path, errno);
    return (uint32_t)st.st_blksize;
}

static int do_writeout(int fd, double *secs)
{
    struct bigfile_writeout w;
    memset(&w, 0, sizeof(w));
    w.flags = BIGFILE_WRITEOUT_STORE | BIGFILE_WRITEOUT_MARKSTORED;
    double t0 = bench_now();
    int r = ioctl(fd, BIGFILE_IOC_WRITEOUT, &w) < 0 ? -errno : 0;
    if (r == -ENOTTY) /* a plain file: what a program does without bigfilefs */
        r = fsync(fd) < 0 ? -errno : 0;
    if (secs)
        *secs = bench_now() - t0;
    return r;
}

static void check_sum(const char *what, uint64_t got, uint64_t off, uint64_t len, uint64_t seed)
{
    uint64_t want = bench_pattern_sum(off, len, seed);
    if (got != want) {
        fprintf(stderr,
                "bfbench: %s: read wrong data (word sum %#" PRIx64 ", expected %#" PRIx64
                " for [%" PRIu64 ", +%" PRIu64 ") seed %" PRIu64 ")\n",
                what, got, want, off, len, seed);
        exit(1);
    }
}

static int cmd_fill(const char *path, const struct opts *o)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        die(path, errno);
    int fuse = bench_on_fuse(path);
    uint64_t *buf = aligned_alloc(PAGE, CHUNK);
    if (!buf)
        die("memory", ENOMEM);
    double t0 = bench_now();
    uint64_t since = 0;
    for (uint64_t off = 0; off < o->length; off += CHUNK) {
        size_t n = o->length - off < CHUNK ? (size_t)(o->length - off) : CHUNK;
        bench_pattern_fill(buf, n, off, o->seed);
        for (size_t done = 0; done < n;) {
            ssize_t w = pwrite(fd, (char *)buf + done, n - done, (off_t)(off + done));
            if (w < 0)
                die("write", errno);
            done += (size_t)w;
        }
        since += n;
        if (fuse && o->every && since >= o->every) {
            int r = do_writeout(fd, NULL);
            if (r < 0)
                die("writeout", r);
            since = 0;
        }
    }
    if (fuse) {
        int r = do_writeout(fd, NULL);
        if (r < 0)
            die("writeout", r);
    }
    printf("%.3f\n", bench_now() - t0);
    free(buf);
    close(fd);
    return 0;
}

/* Map [off, off+len) of path read-only and sum its words; returns the sum. */
static uint64_t map_and_sum(const char *path, uint64_t off, uint64_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path, errno);
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
    if (p == MAP_FAILED)
        die("mmap", errno);
    uint64_t s = bench_sum_words(p, len);
    munmap(p, len);
    close(fd);
    return s;
}

static void range_of(const char *path, const struct opts *o, uint64_t *off, uint64_t *len)
{
    *off = o->offset;
    *len = o->has_length ? o->length : file_size(path) - o->offset;
    if (*off % PAGE || *len % 8 || *len == 0)
        die("range must be page aligned and nonempty", EINVAL);
}

static int cmd_seqread(const char *path, const struct opts *o)
{
    uint64_t off, len;
    range_of(path, o, &off, &len);
    if (o->warm)
        check_sum(path, map_and_sum(path, off, len), off, len, o->seed);
    int r = bench_make_cold(path, o->cold);
    if (r < 0)
        die("making the file cold", r);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = bench_now();
    uint64_t s = map_and_sum(path, off, len);
    double t = bench_now() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    check_sum(path, s, off, len, o->seed);
    printf("%.4f %.1f\n", (double)len / t / 1e9,
           (double)(ru1.ru_minflt - ru0.ru_minflt + ru1.ru_majflt - ru0.ru_majflt) /
               ((double)len / 1048576));
    return 0;
}

static int cmd_par(const char *path, const struct opts *o)
{
    uint64_t off, len;
    range_of(path, o, &off, &len);
    uint64_t procs = o->procs ? o->procs : 2;
    uint64_t slice = len / procs / PAGE * PAGE;
    if (slice == 0)
        die("file too small for that many processes", EINVAL);
    int r = bench_make_cold(path, o->cold);
    if (r < 0)
        die("making the file cold", r);

    int go[2], done[2];
    if (pipe(go) < 0 || pipe(done) < 0)
        die("pipe", errno);
    for (uint64_t k = 0; k < procs; k++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork", errno);
        if (pid == 0) {
            char c;
            close(go[1]);
            close(done[0]);
            if (read(go[0], &c, 1) != 1)
                _exit(1);
            uint64_t so = off + k * slice;
            uint64_t s = map_and_sum(path, so, slice);
            double end = bench_now();
            check_sum(path, s, so, slice, o->seed);
            _exit(write(done[1], &end, sizeof(end)) == (ssize_t)sizeof(end) ? 0 : 1);
        }
    }
    close(go[0]);
    close(done[1]);
    double t0 = bench_now();
    for (uint64_t k = 0; k < procs; k++)
        if (write(go[1], "g", 1) != 1)
            die("pipe", errno);
    double last = t0;
    int failed = 0;
    for (uint64_t k = 0; k < procs; k++) {
        double end;
        if (read(done[0], &end, sizeof(end)) == (ssize_t)sizeof(end)) {
            if (end > last)
                last = end;
        }
    }
    for (uint64_t k = 0; k < procs; k++) {
        int st;
        if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed = 1;
    }
    if (failed) {
        fprintf(stderr, "bfbench: a reader process failed\n");
        return 1;
    }
    printf("%.4f\n", (double)(slice * procs) / (last - t0) / 1e9);
    return 0;
}

static int cmd_randfault(const char *path, const struct opts *o)
{
    uint64_t size = file_size(path), bs = file_blksize(path);
    uint64_t nblk = size / bs;
    size_t count = (size_t)o->count;
    if (count == 0 || count > nblk)
        die("--count must be in [1, number of blocks]", EINVAL);
    uint64_t *blk = calloc(count, sizeof(*blk));
    double *lat = calloc(count, sizeof(*lat));
    if (!blk || !lat)
        die("memory", ENOMEM);
    bench_pick_distinct(blk, count, nblk, o->rng);
    uint64_t st = o->rng ^ 0x5eed;

    int r = bench_make_cold(path, o->cold);
    if (r < 0)
        die("making the file cold", r);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path, errno);
    const uint64_t *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap", errno);
    if (o->advice != MADV_NORMAL && madvise((void *)p, size, o->advice) < 0)
        die("madvise", errno);
    for (size_t k = 0; k < count; k++) {
        uint64_t off = blk[k] * bs + bench_rand(&st) % (bs / PAGE) * PAGE;
        double t0 = bench_now();
        uint64_t w = *(volatile const uint64_t *)(p + off / 8);
        lat[k] = (bench_now() - t0) * 1e6;
        if (w != (off / 8) * BENCH_PATTERN_MUL + o->seed) {
            fprintf(stderr, "bfbench: %s: wrong data at offset %" PRIu64 "\n", path, off);
            return 1;
        }
    }
    munmap((void *)p, size);
    close(fd);
    qsort(lat, count, sizeof(*lat), bench_cmp_double);
    printf("%.1f %.1f %.1f\n", bench_quantile(lat, count, 0.5), bench_quantile(lat, count, 0.99),
           lat[count - 1]);
    free(blk);
    free(lat);
    return 0;
}

static int cmd_touch(const char *path, const struct opts *o)
{
    uint64_t size = file_size(path), bs = file_blksize(path);
    uint64_t nblk = size / bs;
    size_t count = (size_t)o->count;
    if (count == 0 || count > nblk)
        die("--count must be in [1, number of blocks]", EINVAL);
    uint64_t *blk = calloc(count, sizeof(*blk));
    if (!blk)
        die("memory", ENOMEM);
    bench_pick_distinct(blk, count, nblk, o->rng);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path, errno);
    double t0 = bench_now();
    for (size_t k = 0; k < count; k++) {
        char c;
        if (pread(fd, &c, 1, (off_t)(blk[k] * bs)) != 1)
            die("read", errno ? errno : EIO);
    }
    printf("%.3f\n", bench_now() - t0);
    close(fd);
    free(blk);
    return 0;
}

static int cmd_dirty(const char *path, const struct opts *o)
{
    uint64_t len = o->length;
    if (len == 0 || len % PAGE)
        die("--length must be a nonzero multiple of 4096", EINVAL);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        die(path, errno);
    if (file_size(path) < len && ftruncate(fd, (off_t)len) < 0)
        die("ftruncate", errno);
    uint64_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap", errno);
    double t0 = bench_now();
    bench_pattern_fill(p, len, 0, o->seed);
    double t1 = bench_now();
    double wsecs;
    int r = do_writeout(fd, &wsecs);
    if (r < 0)
        die("writeout", r);
    /* The mapping still shows what was written: check it before leaving. */
    check_sum(path, bench_sum_words(p, len), 0, len, o->seed);
    munmap(p, len);
    close(fd);
    printf("%.4f %.3f %.3f %.4f\n", (double)len / wsecs / 1e9, t1 - t0, wsecs,
           (double)len / (t1 - t0 + wsecs) / 1e9);
    return 0;
}

static void pause_us(long us)
{
    struct timespec ts = { 0, us * 1000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int cmd_follow(const char *path_a, const char *path_b, const struct opts *o)
{
    uint64_t size = file_size(path_a), bs = file_blksize(path_a);
    uint64_t nblk = size / bs;
    size_t count = (size_t)o->count;
    if (count == 0 || nblk == 0)
        die("--count and the file's blocks must be nonzero", EINVAL);
    double *lat = calloc(count, sizeof(*lat));
    int fa = open(path_a, O_RDWR | O_CLOEXEC), fb = open(path_b, O_RDONLY | O_CLOEXEC);
    if (!lat || fa < 0 || fb < 0)
        die(fa < 0 ? path_a : path_b, !lat ? ENOMEM : errno);
    const volatile uint64_t *m = mmap(NULL, nblk * bs, PROT_READ, MAP_SHARED, fb, 0);
    if (m == MAP_FAILED)
        die("mmap", errno);
    for (size_t k = 0; k < count; k++) {
        uint64_t blk = k % nblk, v = o->seed + k + 1;
        const volatile uint64_t *w = m + blk * bs / 8;
        (void)*w; /* B has the page mapped and cached */
        if (pwrite(fa, &v, sizeof(v), (off_t)(blk * bs)) != (ssize_t)sizeof(v))
            die("write", errno);
        int r = do_writeout(fa, NULL);
        if (r < 0)
            die("writeout", r);
        double t0 = bench_now(), t;
        while (*w != v) {
            if ((t = bench_now() - t0) > 10) {
                fprintf(stderr, "bfbench: follow: block %" PRIu64 " not seen on B in 10 s\n", blk);
                return 1;
            }
            pause_us(20);
        }
        lat[k] = (bench_now() - t0) * 1e3;
    }
    munmap((void *)m, nblk * bs);
    close(fa);
    close(fb);
    qsort(lat, count, sizeof(*lat), bench_cmp_double);
    printf("%.3f %.3f %.3f\n", bench_quantile(lat, count, 0.5), bench_quantile(lat, count, 0.99),
           lat[count - 1]);
    free(lat);
    return 0;
}

static int cmd_sqlread(const char *db, const struct opts *o)
{
    if (!o->name)
        usage();
    double secs;
    uint64_t bytes, sum;
    int r = rawsql_read(db, o->name, o->cold, o->fresh, &secs, &bytes, &sum);
    if (r < 0)
        die(db, r);
    check_sum(db, sum, 0, bytes, o->seed);
    printf("%.4f\n", (double)bytes / secs / 1e9);
    return 0;
}

static int cmd_sqlwrite(const char *scratch, const struct opts *o)
{
    if (!o->schema_from || !o->blksize || !o->length)
        usage();
    double secs;
    int r = rawsql_write(scratch, o->schema_from, (uint32_t)o->blksize, o->length, o->seed, &secs);
    if (r < 0)
        die(scratch, r);
    printf("%.4f\n", (double)o->length / secs / 1e9);
    return 0;
}

static uint64_t size_arg(const char *s)
{
    uint64_t v;
    if (bench_parse_size(s, &v) < 0) {
        fprintf(stderr, "bfbench: bad size: %s\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "length", required_argument, NULL, 'l' },
        { "offset", required_argument, NULL, 'o' },
        { "seed", required_argument, NULL, 's' },
        { "rng", required_argument, NULL, 'r' },
        { "writeout-every", required_argument, NULL, 'e' },
        { "count", required_argument, NULL, 'n' },
        { "procs", required_argument, NULL, 'p' },
        { "blksize", required_argument, NULL, 'b' },
        { "cold", required_argument, NULL, 'c' },
        { "warm", no_argument, NULL, 'w' },
        { "name", required_argument, NULL, 'N' },
        { "schema-from", required_argument, NULL, 'S' },
        { "madvise", required_argument, NULL, 'a' },
        { "fresh-buffers", no_argument, NULL, 'F' },
        { NULL, 0, NULL, 0 },
    };
    struct opts o;
    memset(&o, 0, sizeof(o));
    o.seed = 1;
    o.cold = BENCH_COLD_NONE;
    o.advice = MADV_NORMAL;
    if (argc < 3)
        usage();
    const char *cmd = argv[1];
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            o.length = size_arg(optarg);
            o.has_length = 1;
            break;
        case 'o':
            o.offset = size_arg(optarg);
            break;
        case 's':
            o.seed = strtoull(optarg, NULL, 0);
            break;
        case 'r':
            o.rng = strtoull(optarg, NULL, 0);
            break;
        case 'e':
            o.every = size_arg(optarg);
            break;
        case 'n':
            o.count = strtoull(optarg, NULL, 0);
            break;
        case 'p':
            o.procs = strtoull(optarg, NULL, 0);
            break;
        case 'b':
            o.blksize = size_arg(optarg);
            break;
        case 'c':
            if (bench_parse_cold(optarg, &o.cold) < 0)
                usage();
            break;
        case 'w':
            o.warm = 1;
            break;
        case 'N':
            o.name = optarg;
            break;
        case 'F':
            o.fresh = 1;
            break;
        case 'S':
            o.schema_from = optarg;
            break;
        case 'a':
            if (!strcmp(optarg, "random"))
                o.advice = MADV_RANDOM;
            else if (!strcmp(optarg, "normal"))
                o.advice = MADV_NORMAL;
            else
                usage();
            break;
        default:
            usage();
        }
    }
    if (!strcmp(cmd, "follow")) {
        if (optind != argc - 2)
            usage();
        return cmd_follow(argv[optind], argv[optind + 1], &o);
    }
    if (optind != argc - 1)
        usage();
    const char *path = argv[optind];

    if (!strcmp(cmd, "fill"))
        return o.has_length ? cmd_fill(path, &o) : (usage(), 2);
    if (!strcmp(cmd, "seqread"))
        return cmd_seqread(path, &o);
    if (!strcmp(cmd, "par"))
        return cmd_par(path, &o);
    if (!strcmp(cmd, "randfault"))
        return cmd_randfault(path, &o);
    if (!strcmp(cmd, "touch"))
        return cmd_touch(path, &o);
    if (!strcmp(cmd, "dirty"))
        return cmd_dirty(path, &o);
    if (!strcmp(cmd, "cold")) {
        int r = bench_make_cold(path, o.cold);
        if (r < 0)
            die(path, r);
        return 0;
    }
    if (!strcmp(cmd, "sqlread"))
        return cmd_sqlread(path, &o);
    if (!strcmp(cmd, "sqlwrite"))
        return cmd_sqlwrite(path, &o);
    usage();
    return 2;
}
