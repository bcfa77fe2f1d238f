/* SPDX-License-Identifier: MIT */
/* bigfilectl — a command over the ioctls of bigfilefs files
 * (<bigfile/ioctl.h>). One subcommand per request; see usage() and
 * bigfilectl(1).
 *
 * Exit status: 0 success, 1 the operation failed, 2 usage error.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <bigfile/ioctl.h>

#include "core/bigfile.h" /* bf_blksize_valid, BF_SIZE_MAX */
#include "ctl/progress.h"
#include "util/util.h" /* bf_parse_size */

enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,
    EXIT_USAGE = 2
};

static void usage(FILE *f)
{
    fprintf(f, "usage: bigfilectl COMMAND [OPTIONS] FILE\n"
               "\n"
               "Commands (FILE is a file of a bigfilefs mount):\n"
               "  writeout [--store|--markstored] [--overwrite] [--quiet] FILE\n"
               "                      commit every uncommitted change of FILE, made by any\n"
               "                      process, atomically (default: store and mark stored;\n"
               "                      --store: store, blocks stay changed; --markstored: only\n"
               "                      mark changed blocks committed, store nothing); refused\n"
               "                      if another mount committed the same blocks meanwhile,\n"
               "                      unless --overwrite (then this mount's changes win); on a\n"
               "                      terminal, shows its progress when it stores at least\n"
               "                      $BIGFILECTL_PROGRESS_MIN (a SIZE, default 256M) unless\n"
               "                      --quiet\n"
               "  discard FILE        throw away every uncommitted change of FILE\n"
               "  sync FILE           catch up with every commit of the database now (other\n"
               "                      mounts' too) and print the serial reached\n"
               "  invalidate FILE BLK[-BLK]\n"
               "                      forget blocks BLK..BLK (inclusive) so they are reloaded\n"
               "                      from the database (their uncommitted changes are lost)\n"
               "  stat [--json] FILE  print the daemon's state of FILE as \"key: value\" lines\n"
               "                      (serial: the commit its content is as of), or as JSON\n"
               "  status [--json] MOUNT\n"
               "                      list the files of the mount MOUNT (its mount point) that\n"
               "                      have uncommitted changes, one line each (nothing when\n"
               "                      all is committed), or as JSON\n"
               "  reclaim FILE        drop the clean cached data of FILE\n"
               "  create [--blksize=SIZE] [--size=SIZE] FILE\n"
               "                      create FILE (it must not exist) with block size SIZE\n"
               "                      (default: the mount's) and commit size SIZE (default 0)\n"
               "  log [--json] FILE   list the commits of FILE in the kept history, newest\n"
               "                      first: serial, time, kind, blocks stored, size, name\n"
               "  history [--keep=DURATION] [--json] MOUNT\n"
               "                      print the mount's kept history (from, current, keep,\n"
               "                      pinned); --keep sets how long history is kept\n"
               "                      (DURATION: N[smhdw], 0 keeps none but open views)\n"
               "  gc MOUNT            collect the history older than the retention now\n"
               "\n"
               "writeout, discard, invalidate and create open FILE for writing and need\n"
               "write permission on it (stat, sync and reclaim only read it); on a read-only\n"
               "mount writeout fails, discard and invalidate work.\n"
               "SIZE: a number with an optional K, M, G or T suffix (powers of 1024).\n"
               "Options: -h, --help   this help;  -V, --version   the version.\n"
               "Exit status: 0 success, 1 the operation failed, 2 usage error.\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "bigfilectl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'bigfilectl --help'.\n");
    return EXIT_USAGE;
}

/* An option getopt_long refused (at argv[optind - 1]). */
static int bad_option(const char *cmd, char **argv)
{
    fprintf(stderr, "bigfilectl: %s: unknown option or missing argument '%s'\n", cmd,
            argv[optind - 1]);
    fprintf(stderr, "Try 'bigfilectl --help'.\n");
    return EXIT_USAGE;
}

/* Report a failed system call on FILE for COMMAND; returns EXIT_FAIL. */
static int fail(const char *cmd, const char *file, const char *what, int err)
{
    const char *hint = "";

    if (err == ENOTTY)
        hint = " (not a file of a bigfilefs mount?)";
    else if (err == EBADF)
        hint = " (the file must be open for writing)";
    else if (err == EBUSY)
        hint = " (another writeout, discard or invalidation of the file is running)";
    fprintf(stderr, "bigfilectl: %s %s: %s%s%s%s\n", cmd, file, what, *what ? ": " : "",
            strerror(err), hint);
    return EXIT_FAIL;
}

/* Open FILE for a request that reads only (stat, reclaim): O_RDONLY. */
static int open_file(const char *cmd, const char *file, int *fd)
{
    *fd = open(file, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return fail(cmd, file, "cannot open", errno);
    return EXIT_OK;
}

/* Open FILE for a request that changes it (writeout, discard, invalidate):
 * the daemon refuses those through an fd not open for writing (EBADF), as
 * write(2) does, so O_RDWR. On a read-only mount (EROFS) discard and
 * invalidate may still go through a read-only fd (ro_ok): nothing is
 * uncommitted there, and invalidate is how such a mount sees blocks changed
 * in the database; writeout is refused, with a message that says why. */
static int open_file_rw(const char *cmd, const char *file, bool ro_ok, int *fd)
{
    int err;

    *fd = open(file, O_RDWR | O_CLOEXEC);
    if (*fd >= 0)
        return EXIT_OK;
    err = errno;
    if (err == EROFS && ro_ok) {
        *fd = open(file, O_RDONLY | O_CLOEXEC);
        if (*fd >= 0)
            return EXIT_OK;
        err = errno;
    }
    if (err == EACCES) {
        fprintf(stderr,
                "bigfilectl: %s %s: cannot open for writing: %s "
                "(%s needs write permission on the file)\n",
                cmd, file, strerror(err), cmd);
        return EXIT_FAIL;
    }
    if (err == EROFS) {
        fprintf(stderr,
                "bigfilectl: %s %s: cannot open for writing: %s "
                "(the mount is read-only: nothing there can be committed)\n",
                cmd, file, strerror(err));
        return EXIT_FAIL;
    }
    return fail(cmd, file, "cannot open", err);
}

/* Common parsing for "CMD [options] FILE": getopt over longopts, exactly
 * one operand left, returned in *file. */
static int one_operand(int argc, char **argv, const char *cmd, const char **file)
{
    if (optind != argc - 1)
        return usage_error(optind >= argc ? "%s: missing FILE" : "%s: too many arguments", cmd);
    *file = argv[optind];
    return EXIT_OK;
}

/* Print a range list "5, 8-9, 12" of the conflicting blocks of fd, at
 * most `show` ranges (then how many more), to stderr. */
static void print_conflicts(int fd, const char *file)
{
    const unsigned show = 32;
    struct bigfile_conflicts c;
    unsigned long long shown = 0, more = 0;
    bool size = false;

    memset(&c, 0, sizeof(c));
    fprintf(stderr, "conflicting blocks:");
    do {
        if (ioctl(fd, BIGFILE_IOC_CONFLICTS, &c) < 0) {
            fprintf(stderr, " (cannot list them: %s)", strerror(errno));
            break;
        }
        size = size || (c.flags & BIGFILE_CONFLICTS_SIZE);
        for (uint32_t i = 0; i < c.count; i++) {
            uint64_t lo = c.ranges[i].start, hi = lo + c.ranges[i].count - 1;

            if (shown == show) {
                more++;
                continue;
            }
            fprintf(stderr, shown ? ", %" PRIu64 : " %" PRIu64, lo);
            if (hi != lo)
                fprintf(stderr, "-%" PRIu64, hi);
            shown++;
        }
        c.start = c.next;
    } while (c.next != BIGFILE_CONFLICTS_END);
    if (more)
        fprintf(stderr, " and %llu more ranges", more);
    if (!shown && !more)
        fprintf(stderr, " none listed");
    fprintf(stderr, "%s\n", size ? "; the size conflicts too" : "");
    fprintf(stderr,
            "Nothing was committed; every change of this mount is kept. Either drop them\n"
            "(the other mount's commit stays):\n"
            "    bigfilectl discard %s\n"
            "or commit them over the other mount's commit:\n"
            "    bigfilectl writeout --overwrite %s\n",
            file, file);
}

/* One writeout request on fd, for bfctl_progress_run: WRITEOUT2, or for a
 * daemon older than it (bigfilefs 0.1, ENOTTY) WRITEOUT without serial. */
struct writeout_call {
    int fd;
    struct bigfile_writeout2 w;
    bool has_serial;
};

static int writeout_run(void *arg)
{
    struct writeout_call *wc = arg;
    struct bigfile_writeout w1;
    int r;

    wc->has_serial = true;
    r = ioctl(wc->fd, BIGFILE_IOC_WRITEOUT2, &wc->w) < 0 ? errno : 0;
    if (r != ENOTTY || (wc->w.flags & BIGFILE_WRITEOUT_OVERWRITE))
        return r;
    memset(&w1, 0, sizeof(w1));
    w1.flags = wc->w.flags;
    r = ioctl(wc->fd, BIGFILE_IOC_WRITEOUT, &w1) < 0 ? errno : 0;
    wc->w.blocks = w1.blocks;
    wc->w.bytes = w1.bytes;
    wc->has_serial = false;
    return r;
}

/* The progress display of a writeout of `file`: on when stderr is a
 * terminal and not quiet; its threshold from $BIGFILECTL_PROGRESS_MIN.
 * Returns an exit status. */
static int progress_setup(const char *file, bool quiet, struct bfctl_progress *p)
{
    const char *min = getenv("BIGFILECTL_PROGRESS_MIN");

    p->stat_fd = -1;
    p->min_bytes = BFCTL_PROGRESS_MIN_DEFAULT;
    if (quiet || !isatty(STDERR_FILENO))
        return EXIT_OK;
    if (min && *min && bf_parse_size(min, &p->min_bytes) < 0)
        return usage_error("writeout: bad BIGFILECTL_PROGRESS_MIN '%s' (a SIZE)", min);
    p->stat_fd = open(file, O_RDONLY | O_CLOEXEC); /* -1: no progress, the writeout goes on */
    return EXIT_OK;
}

static int cmd_writeout(int argc, char **argv)
{
    static const struct option lo[] = { { "store", no_argument, NULL, 's' },
                                        { "markstored", no_argument, NULL, 'm' },
                                        { "overwrite", no_argument, NULL, 'o' },
                                        { "quiet", no_argument, NULL, 'q' },
                                        { NULL, 0, NULL, 0 } };
    struct writeout_call wc;
    struct bigfile_writeout2 *w = &wc.w;
    struct bfctl_progress prog;
    const char *file;
    int c, fd, r;
    bool store = false, mark = false, overwrite = false, quiet = false;

    while ((c = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
        switch (c) {
        case 's':
            store = true;
            break;
        case 'm':
            mark = true;
            break;
        case 'o':
            overwrite = true;
            break;
        case 'q':
            quiet = true;
            break;
        default:
            return bad_option("writeout", argv);
        }
    }
    if (store && mark)
        return usage_error(
            "%s: --store and --markstored exclude each other (give neither for both)", "writeout");
    if (mark && overwrite)
        return usage_error("%s: --overwrite commits, --markstored stores nothing", "writeout");
    if ((r = one_operand(argc, argv, "writeout", &file)) != EXIT_OK)
        return r;
    memset(&wc, 0, sizeof(wc));
    w->flags = store  ? BIGFILE_WRITEOUT_STORE
               : mark ? BIGFILE_WRITEOUT_MARKSTORED
                      : BIGFILE_WRITEOUT_STORE | BIGFILE_WRITEOUT_MARKSTORED;
    if (overwrite)
        w->flags |= BIGFILE_WRITEOUT_OVERWRITE;
    if ((r = open_file_rw("writeout", file, false, &fd)) != EXIT_OK)
        return r;
    if ((r = progress_setup(file, quiet, &prog)) != EXIT_OK) {
        close(fd);
        return r;
    }
    wc.fd = fd;
    r = bfctl_progress_run(&prog, writeout_run, &wc);
    bfctl_progress_end(&prog, r, w->blocks, w->bytes);
    if (prog.stat_fd >= 0)
        close(prog.stat_fd);
    if (r == ESTALE) {
        fprintf(stderr,
                "bigfilectl: writeout %s: refused (ESTALE): another mount committed changes "
                "to what this mount's changes are based on\n",
                file);
        print_conflicts(fd, file);
    } else if (r) {
        fail("writeout", file, "", r);
    }
    if (r) {
        close(fd);
        return EXIT_FAIL;
    }
    close(fd);
    printf("blocks: %" PRIu64 "\nbytes: %" PRIu64 "\n", (uint64_t)w->blocks, (uint64_t)w->bytes);
    if (wc.has_serial)
        printf("serial: %" PRIu64 "\n", (uint64_t)w->serial);
    if (overwrite)
        printf("conflict_blocks: %" PRIu64 "\n", (uint64_t)w->conflict_blocks);
    return EXIT_OK;
}

/* discard and reclaim: no input, a struct bigfile_count out. discard
 * changes the file (opened for writing), reclaim only reads. */
static int cmd_count(int argc, char **argv, const char *cmd, unsigned long req)
{
    struct bigfile_count cnt;
    const char *file;
    int fd, r;

    if (getopt_long(argc, argv, "+", (const struct option[]){ { NULL, 0, NULL, 0 } }, NULL) != -1)
        return bad_option(cmd, argv);
    if ((r = one_operand(argc, argv, cmd, &file)) != EXIT_OK)
        return r;
    r = req == BIGFILE_IOC_DISCARD ? open_file_rw(cmd, file, true, &fd) : open_file(cmd, file, &fd);
    if (r != EXIT_OK)
        return r;
    memset(&cnt, 0, sizeof(cnt));
    if (ioctl(fd, req, &cnt) < 0) {
        r = fail(cmd, file, "", errno);
        close(fd);
        return r;
    }
    close(fd);
    printf("blocks: %" PRIu64 "\nbytes: %" PRIu64 "\n", (uint64_t)cnt.blocks, (uint64_t)cnt.bytes);
    return EXIT_OK;
}

/* Parse a block number: decimal digits only. */
static int parse_blk(const char *s, uint64_t *out)
{
    char *end;

    if (!*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return (errno || *end) ? -1 : 0;
}

static int cmd_invalidate(int argc, char **argv)
{
    struct bigfile_range rg;
    uint64_t lo, hi;
    const char *file;
    char *range, *dash;
    int fd, r;

    if (getopt_long(argc, argv, "+", (const struct option[]){ { NULL, 0, NULL, 0 } }, NULL) != -1)
        return bad_option("invalidate", argv);
    if (argc - optind != 2)
        return usage_error("%s: expected FILE BLK[-BLK]", "invalidate");
    file = argv[optind];
    range = strdup(argv[optind + 1]);
    if (!range)
        return fail("invalidate", file, "", ENOMEM);
    dash = strchr(range, '-');
    if (dash)
        *dash = '\0';
    r = parse_blk(range, &lo);
    if (r == 0)
        r = dash ? parse_blk(dash + 1, &hi) : (hi = lo, 0);
    free(range);
    if (r < 0 || hi < lo)
        return usage_error("invalidate: bad block range '%s' (expected BLK or BLK-BLK, BLK <= BLK)",
                           argv[optind + 1]);
    /* The request takes a start and a count: start + count must fit. */
    if (hi == UINT64_MAX) {
        fprintf(stderr,
                "bigfilectl: invalidate: block %" PRIu64 " is out of range: the largest block "
                "number is %" PRIu64 "\nTry 'bigfilectl --help'.\n",
                hi, UINT64_MAX - 1);
        return EXIT_USAGE;
    }
    rg.start = lo;
    rg.count = hi - lo + 1;
    if ((r = open_file_rw("invalidate", file, true, &fd)) != EXIT_OK)
        return r;
    if (ioctl(fd, BIGFILE_IOC_INVALIDATE, &rg) < 0) {
        r = fail("invalidate", file, "", errno);
        close(fd);
        return r;
    }
    close(fd);
    return EXIT_OK;
}

/* Options of a command that takes only --json: sets *json. Returns an
 * exit status. */
static int json_option(int argc, char **argv, const char *cmd, bool *json)
{
    static const struct option lo[] = { { "json", no_argument, NULL, 'j' }, { NULL, 0, NULL, 0 } };
    int c;

    *json = false;
    while ((c = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
        if (c != 'j')
            return bad_option(cmd, argv);
        *json = true;
    }
    return EXIT_OK;
}

/* Print s as a JSON string (quoted, escaped) to stdout. */
static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* A request that only reads FILE (stat, sync): one operand, the file
 * opened read-only, `req` with *arg (zeroed first, len bytes). With json
 * non-NULL, the option --json is accepted and sets *json; else no option.
 * Returns an exit status (EXIT_OK: *arg holds the answer). */
static int read_request(int argc, char **argv, const char *cmd, unsigned long req, void *arg,
                        size_t len, bool *json)
{
    const char *file;
    int fd, r;

    if (json) {
        if ((r = json_option(argc, argv, cmd, json)) != EXIT_OK)
            return r;
    } else if (getopt_long(argc, argv, "+", (const struct option[]){ { NULL, 0, NULL, 0 } },
                           NULL) != -1) {
        return bad_option(cmd, argv);
    }
    if ((r = one_operand(argc, argv, cmd, &file)) != EXIT_OK)
        return r;
    if ((r = open_file(cmd, file, &fd)) != EXIT_OK)
        return r;
    memset(arg, 0, len);
    r = ioctl(fd, req, arg) < 0 ? fail(cmd, file, "", errno) : EXIT_OK;
    close(fd);
    return r;
}

static int cmd_sync(int argc, char **argv)
{
    struct bigfile_serial sr;
    int r = read_request(argc, argv, "sync", BIGFILE_IOC_SYNC, &sr, sizeof(sr), NULL);

    if (r == EXIT_OK)
        printf("serial: %" PRIu64 "\n", (uint64_t)sr.serial);
    return r;
}

/* One field of `stat`: a "key: value" line, or a JSON member after *sep. */
static void stat_field(bool json, const char **sep, const char *name, uint64_t v)
{
    if (json)
        printf("%s\"%s\": %" PRIu64, *sep, name, v);
    else
        printf("%s: %" PRIu64 "\n", name, v);
    *sep = ", ";
}

static int cmd_stat(int argc, char **argv)
{
    struct bigfile_stat s;
    bool json;
    const char *sep = "{";
    int r = read_request(argc, argv, "stat", BIGFILE_IOC_STAT, &s, sizeof(s), &json);

    if (r != EXIT_OK)
        return r;
        /* "key: value" lines, or one JSON object with the same keys (and the
     * version, which tells which keys there are). */
#define P(field) stat_field(json, &sep, #field, s.field)
    if (json)
        P(version);
    P(blksize);
    P(size);
    P(committed_size);
    P(loaded_blocks);
    P(dirty_blocks);
    P(loading_blocks);
    P(loadblk_calls);
    P(storeblk_calls);
    P(bytes_loaded);
    P(bytes_stored);
    P(writeouts);
    P(discards);
    P(invalidated_blocks);
    P(reclaimed_blocks);
    P(errors);
    if (s.version >= 2) {
        P(serial);
        P(conflict_blocks);
    }
    if (s.version >= 3) {
        P(writeout_blocks);
        P(writeout_total_blocks);
    }
    if (s.version >= 4) {
        P(spilled_blocks);
        P(spills);
    }
    if (s.version >= 5)
        P(spliced_reads);
#undef P
    if (json)
        printf("}\n");
    return EXIT_OK;
}

/* One file of `status`: "NAME: N changed blocks (B bytes)[, size C -> S][,
 * K conflicting blocks][, the size conflicts]". */
static void status_line(const struct bigfile_status_file *f)
{
    printf("%s: %" PRIu64 " changed block%s (%" PRIu64 " bytes)", f->name,
           (uint64_t)f->dirty_blocks, f->dirty_blocks == 1 ? "" : "s", (uint64_t)f->dirty_bytes);
    if (f->size != f->committed_size)
        printf(", size %" PRIu64 " -> %" PRIu64, (uint64_t)f->committed_size, (uint64_t)f->size);
    if (f->conflict_blocks)
        printf(", %" PRIu64 " conflicting block%s", (uint64_t)f->conflict_blocks,
               f->conflict_blocks == 1 ? "" : "s");
    if (f->flags & BIGFILE_STATUS_SIZE_CONFLICT)
        printf(", the size conflicts");
    printf("\n");
}

static void status_json(const struct bigfile_status_file *f, bool first)
{
    printf("%s\n  {\"name\": ", first ? "" : ",");
    json_string(f->name);
    printf(", \"ino\": %" PRIu64 ", \"dirty_blocks\": %" PRIu64 ", \"dirty_bytes\": %" PRIu64
           ", \"size\": %" PRIu64 ", \"committed_size\": %" PRIu64 ", \"blksize\": %" PRIu32
           ", \"conflict_blocks\": %" PRIu64 ", \"size_conflict\": %s}",
           (uint64_t)f->ino, (uint64_t)f->dirty_blocks, (uint64_t)f->dirty_bytes, (uint64_t)f->size,
           (uint64_t)f->committed_size, (uint32_t)f->blksize, (uint64_t)f->conflict_blocks,
           (f->flags & BIGFILE_STATUS_SIZE_CONFLICT) ? "true" : "false");
}

/* Open the root directory MNT of a mount for a request of its own
 * (status, history, gc). Returns an exit status. */
static int open_mount(const char *cmd, const char *mnt, int *fd)
{
    *fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd >= 0)
        return EXIT_OK;
    if (errno == ENOTDIR) {
        fprintf(stderr, "bigfilectl: %s %s: not a directory (give the mount point)\n", cmd, mnt);
        return EXIT_FAIL;
    }
    return fail(cmd, mnt, "cannot open", errno);
}

/* status MOUNT: BIGFILE_IOC_STATUS on the mount's root directory, one call
 * per BIGFILE_STATUS_MAX files. */
static int cmd_status(int argc, char **argv)
{
    struct bigfile_status *st;
    const char *mnt;
    bool json, first = true;
    int fd, r;

    if ((r = json_option(argc, argv, "status", &json)) != EXIT_OK)
        return r;
    if (optind != argc - 1)
        return usage_error(optind >= argc ? "%s: missing MOUNT" : "%s: too many arguments",
                           "status");
    mnt = argv[optind];
    if ((r = open_mount("status", mnt, &fd)) != EXIT_OK)
        return r;
    st = calloc(1, sizeof(*st));
    if (!st) {
        close(fd);
        return fail("status", mnt, "", ENOMEM);
    }
    if (json)
        printf("{\"files\": [");
    do {
        st->count = 0;
        r = ioctl(fd, BIGFILE_IOC_STATUS, st) < 0 ? errno : 0;
        if (r)
            break;
        for (uint32_t i = 0; i < st->count; i++) {
            if (json)
                status_json(&st->files[i], first);
            else
                status_line(&st->files[i]);
            first = false;
        }
        st->start = st->next;
    } while (st->next != BIGFILE_STATUS_END);
    free(st);
    close(fd);
    if (r) {
        if (json)
            printf("\n");
        fflush(stdout);
        if (r == ENOTTY) {
            fprintf(stderr,
                    "bigfilectl: status %s: not the mount point of a bigfilefs mount "
                    "(or a daemon older than STATUS)\n",
                    mnt);
            return EXIT_FAIL;
        }
        return fail("status", mnt, "", r);
    }
    if (json)
        printf("%s]}\n", first ? "" : "\n");
    return EXIT_OK;
}

/* ---- history: log, history, gc ---------------------------------------- */

static const char *log_kind_name(const struct bigfile_log_entry *e)
{
    switch (e->kind) {
    case BIGFILE_LOG_WRITE:
        return (e->flags & BIGFILE_LOG_TRUNCATED) ? "truncate" : "write";
    case BIGFILE_LOG_CREATE:
        return "create";
    case BIGFILE_LOG_UNLINK:
        return "unlink";
    case BIGFILE_LOG_RENAME:
        return "rename";
    case BIGFILE_LOG_SETATTR:
        return "setattr";
    case BIGFILE_LOG_SETBLKSIZE:
        return "setblksize";
    default:
        return "unknown";
    }
}

/* ns since the epoch as ISO 8601 local time, to the second. */
static void iso_time(int64_t ns, char *buf, size_t len)
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;

    if (!localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%S%z", &tm) == 0)
        snprintf(buf, len, "%" PRId64, ns);
}

static void log_line(const struct bigfile_log_entry *e, bool json, bool first)
{
    char when[64];

    iso_time(e->time_ns, when, sizeof(when));
    if (!json) {
        printf("%" PRIu64 " %s %s %" PRIu64 " %" PRIu64 " %s\n", (uint64_t)e->serial, when,
               log_kind_name(e), (uint64_t)e->blocks, (uint64_t)e->size,
               e->name[0] ? e->name : "-");
        return;
    }
    printf("%s\n  {\"serial\": %" PRIu64 ", \"time\": \"%s\", \"time_ns\": %" PRId64
           ", \"kind\": \"%s\", \"blocks\": %" PRIu64 ", \"size\": %" PRIu64
           ", \"truncated\": %s, \"name\": ",
           first ? "" : ",", (uint64_t)e->serial, when, (int64_t)e->time_ns, log_kind_name(e),
           (uint64_t)e->blocks, (uint64_t)e->size,
           (e->flags & BIGFILE_LOG_TRUNCATED) ? "true" : "false");
    json_string(e->name);
    printf("}");
}

/* log FILE: BIGFILE_IOC_LOG, one call per BIGFILE_LOG_MAX commits. */
static int cmd_log(int argc, char **argv)
{
    struct bigfile_log *lg;
    const char *file;
    bool json, first = true;
    int fd, r;

    if ((r = json_option(argc, argv, "log", &json)) != EXIT_OK)
        return r;
    if ((r = one_operand(argc, argv, "log", &file)) != EXIT_OK)
        return r;
    if ((r = open_file("log", file, &fd)) != EXIT_OK)
        return r;
    lg = calloc(1, sizeof(*lg));
    if (!lg) {
        close(fd);
        return fail("log", file, "", ENOMEM);
    }
    if (json)
        printf("{\"commits\": [");
    do {
        lg->count = 0;
        r = ioctl(fd, BIGFILE_IOC_LOG, lg) < 0 ? errno : 0;
        if (r)
            break;
        for (uint32_t i = 0; i < lg->count; i++, first = false)
            log_line(&lg->e[i], json, first);
        lg->before = lg->next;
    } while (lg->next != BIGFILE_LOG_END);
    free(lg);
    close(fd);
    if (r) {
        if (json)
            printf("\n");
        fflush(stdout);
        return fail("log", file, "", r);
    }
    if (json)
        printf("%s]}\n", first ? "" : "\n");
    return EXIT_OK;
}

/* A DURATION: N[smhdw] (no suffix: seconds), into ns. Returns 0 or -1. */
static int parse_duration(const char *s, int64_t *ns)
{
    static const struct {
        char suffix;
        int64_t secs;
    } units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 }, { 'w', 604800 } };
    int64_t mult = 1;
    uint64_t n;
    char *end;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    n = strtoull(s, &end, 10);
    if (errno)
        return -1;
    if (*end) {
        size_t i;

        for (i = 0; i < sizeof(units) / sizeof(units[0]) && units[i].suffix != *end; i++)
            ;
        if (i == sizeof(units) / sizeof(units[0]) || end[1])
            return -1;
        mult = units[i].secs;
    }
    if (n > (uint64_t)INT64_MAX / 1000000000 / (uint64_t)mult)
        return -1;
    *ns = (int64_t)n * mult * 1000000000;
    return 0;
}

/* ns as the largest unit that divides it (1d, 90m, 0), or ns. */
static void format_duration(int64_t ns, char *buf, size_t len)
{
    static const struct {
        const char *suffix;
        int64_t secs;
    } units[] = { { "w", 604800 }, { "d", 86400 }, { "h", 3600 }, { "m", 60 }, { "s", 1 } };

    if (ns == 0) {
        snprintf(buf, len, "0");
        return;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (ns % (units[i].secs * 1000000000) == 0) {
            snprintf(buf, len, "%" PRId64 "%s", ns / (units[i].secs * 1000000000), units[i].suffix);
            return;
        }
    snprintf(buf, len, "%" PRId64 "ns", ns);
}

static void history_print(const struct bigfile_history *h, bool json)
{
    char keep[32];

    format_duration(h->keep_ns, keep, sizeof(keep));
    if (json)
        printf("{\"kept\": true, \"from\": %" PRIu64 ", \"current\": %" PRIu64
               ", \"keep\": \"%s\", \"keep_ns\": %" PRId64 ", \"pinned\": %" PRIu64 "}\n",
               (uint64_t)h->from, (uint64_t)h->current, keep, (int64_t)h->keep_ns,
               (uint64_t)h->pinned);
    else if (h->pinned)
        printf("from: %" PRIu64 "\ncurrent: %" PRIu64 "\nkeep: %s\npinned: %" PRIu64 "\n",
               (uint64_t)h->from, (uint64_t)h->current, keep, (uint64_t)h->pinned);
    else
        printf("from: %" PRIu64 "\ncurrent: %" PRIu64 "\nkeep: %s\npinned: none\n",
               (uint64_t)h->from, (uint64_t)h->current, keep);
}

/* A request on the mount's root with a struct bigfile_history (history,
 * gc). Returns an exit status; *h holds the answer. */
static int history_request(const char *cmd, const char *mnt, unsigned long req,
                           struct bigfile_history *h)
{
    int fd, r;

    if ((r = open_mount(cmd, mnt, &fd)) != EXIT_OK)
        return r;
    r = ioctl(fd, req, h) < 0 ? errno : 0;
    close(fd);
    if (r == ENOTTY) {
        fprintf(stderr,
                "bigfilectl: %s %s: not the mount point of a bigfilefs mount (or a daemon "
                "older than history)\n",
                cmd, mnt);
        return EXIT_FAIL;
    }
    if (r == EPERM) {
        fprintf(stderr, "bigfilectl: %s %s: %s (only the mount's owner or root may)\n", cmd, mnt,
                strerror(r));
        return EXIT_FAIL;
    }
    if (r)
        return fail(cmd, mnt, "", r);
    if (!(h->flags & BIGFILE_HISTORY_KEPT)) {
        fprintf(stderr, "bigfilectl: %s %s: this mount's database keeps no history\n", cmd, mnt);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

/* history [--keep=DURATION] [--json] MOUNT */
static int cmd_history(int argc, char **argv)
{
    static const struct option lo[] = { { "json", no_argument, NULL, 'j' },
                                        { "keep", required_argument, NULL, 'k' },
                                        { NULL, 0, NULL, 0 } };
    struct bigfile_history h;
    bool json = false;
    int c, r;

    memset(&h, 0, sizeof(h));
    while ((c = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
        if (c == 'j') {
            json = true;
        } else if (c == 'k') {
            int64_t ns;

            if (parse_duration(optarg, &ns) < 0)
                return usage_error("history: bad DURATION '%s' (N[smhdw], e.g. 1d or 0)", optarg);
            h.keep_ns = ns;
            h.flags = BIGFILE_HISTORY_SET_KEEP;
        } else {
            return bad_option("history", argv);
        }
    }
    if (optind != argc - 1)
        return usage_error(optind >= argc ? "%s: missing MOUNT" : "%s: too many arguments",
                           "history");
    r = history_request("history", argv[optind], BIGFILE_IOC_HISTORY, &h);
    if (r == EXIT_OK)
        history_print(&h, json);
    return r;
}

/* gc MOUNT */
static int cmd_gc(int argc, char **argv)
{
    struct bigfile_history h;
    int r;

    if (getopt_long(argc, argv, "+", (const struct option[]){ { NULL, 0, NULL, 0 } }, NULL) != -1)
        return bad_option("gc", argv);
    if (optind != argc - 1)
        return usage_error(optind >= argc ? "%s: missing MOUNT" : "%s: too many arguments", "gc");
    memset(&h, 0, sizeof(h));
    r = history_request("gc", argv[optind], BIGFILE_IOC_GC, &h);
    if (r == EXIT_OK)
        history_print(&h, false);
    return r;
}

/* Whether the directory that would hold `file` is on a bigfilefs mount: its
 * device is that of a "fuse.bigfilefs" mount in /proc/self/mountinfo.
 * Returns 1, 0, or -errno (the directory cannot be looked at). */
static int on_bigfilefs(const char *file)
{
    char *dir = strdup(file), *slash, *line = NULL;
    struct stat st;
    size_t cap = 0;
    FILE *f;
    int found = 0;

    if (!dir)
        return -ENOMEM;
    slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (stat(dir, &st) < 0) {
        found = -errno;
        free(dir);
        return found;
    }
    free(dir);
    f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    while (!found && getline(&line, &cap, f) > 0) {
        unsigned maj, min;
        char *sep = strstr(line, " - ");
        char fstype[64];

        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE ... */
        if (sep && sscanf(line, "%*u %*u %u:%u", &maj, &min) == 2 &&
            sscanf(sep + 3, "%63s", fstype) == 1 && makedev(maj, min) == st.st_dev &&
            strcmp(fstype, "fuse.bigfilefs") == 0)
            found = 1;
    }
    free(line);
    fclose(f);
    return found;
}

static int cmd_create(int argc, char **argv)
{
    static const struct option lo[] = { { "blksize", required_argument, NULL, 'b' },
                                        { "size", required_argument, NULL, 's' },
                                        { NULL, 0, NULL, 0 } };
    const char *file, *blksize_s = NULL, *size_s = NULL;
    uint64_t blksize = 0, size = 0;
    int c, fd, r;

    while ((c = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
        switch (c) {
        case 'b':
            blksize_s = optarg;
            break;
        case 's':
            size_s = optarg;
            break;
        default:
            return bad_option("create", argv);
        }
    }
    if (blksize_s && (bf_parse_size(blksize_s, &blksize) < 0 || !bf_blksize_valid(blksize)))
        return usage_error("create: bad --blksize '%s' (a power of two from 4K to 64M)", blksize_s);
    if (size_s && (bf_parse_size(size_s, &size) < 0 || size > BF_SIZE_MAX))
        return usage_error("create: bad --size '%s'", size_s);
    if ((r = one_operand(argc, argv, "create", &file)) != EXIT_OK)
        return r;
    /* Elsewhere open(O_CREAT) would make a plain file: refuse first. */
    r = on_bigfilefs(file);
    if (r < 0)
        return fail("create", file, "cannot look at its directory", -r);
    if (r == 0) {
        fprintf(stderr, "bigfilectl: create %s: not on a bigfilefs mount (nothing created)\n",
                file);
        return EXIT_FAIL;
    }

    /* O_RDWR: SETBLKSIZE and WRITEOUT need an fd open for writing. */
    fd = open(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        int err = errno;

        if (err == EACCES || err == EROFS) {
            fprintf(stderr, "bigfilectl: create %s: cannot create: %s (%s)\n", file, strerror(err),
                    err == EACCES
                        ? "creating a file needs write permission on the mount's directory"
                        : "the mount is read-only");
            return EXIT_FAIL;
        }
        return fail("create", file, "cannot create", err);
    }
    if (blksize) {
        struct bigfile_blksize b = { .blksize = (__u32)blksize, .reserved = 0 };

        if (ioctl(fd, BIGFILE_IOC_SETBLKSIZE, &b) < 0) {
            r = fail("create", file, "cannot set the block size", errno);
            goto undo;
        }
    }
    if (size) {
        struct bigfile_writeout w;

        if (ftruncate(fd, (off_t)size) < 0) {
            r = fail("create", file, "cannot set the size", errno);
            goto undo;
        }
        memset(&w, 0, sizeof(w));
        w.flags = BIGFILE_WRITEOUT_STORE | BIGFILE_WRITEOUT_MARKSTORED;
        if (ioctl(fd, BIGFILE_IOC_WRITEOUT, &w) < 0) {
            r = fail("create", file, "cannot commit the size", errno);
            goto undo;
        }
    }
    if (close(fd) < 0)
        return fail("create", file, "close", errno);
    return EXIT_OK;

undo:
    /* Leave no half-made file behind. */
    close(fd);
    unlink(file);
    return r;
}

int main(int argc, char **argv)
{
    const char *cmd;

    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("bigfilectl %s\n", PACKAGE_VERSION);
        return EXIT_OK;
    }
    /* The subcommand parses argv[1..]: getopt starts after argv[0] = CMD. */
    argc--;
    argv++;
    optind = 1;
    opterr = 0; /* bad_option() reports, naming the subcommand */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return EXIT_OK;
        }
    }
    if (!strcmp(cmd, "writeout"))
        return cmd_writeout(argc, argv);
    if (!strcmp(cmd, "discard"))
        return cmd_count(argc, argv, "discard", BIGFILE_IOC_DISCARD);
    if (!strcmp(cmd, "reclaim"))
        return cmd_count(argc, argv, "reclaim", BIGFILE_IOC_RECLAIM);
    if (!strcmp(cmd, "invalidate"))
        return cmd_invalidate(argc, argv);
    if (!strcmp(cmd, "stat"))
        return cmd_stat(argc, argv);
    if (!strcmp(cmd, "status"))
        return cmd_status(argc, argv);
    if (!strcmp(cmd, "sync"))
        return cmd_sync(argc, argv);
    if (!strcmp(cmd, "create"))
        return cmd_create(argc, argv);
    if (!strcmp(cmd, "log"))
        return cmd_log(argc, argv);
    if (!strcmp(cmd, "history"))
        return cmd_history(argc, argv);
    if (!strcmp(cmd, "gc"))
        return cmd_gc(argc, argv);
    return usage_error("unknown command '%s'", cmd);
}
