/* SPDX-License-Identifier: MIT */
/* bigfilefs — the daemon: options, database, mount, signals, the loop.
 *
 *   bigfilefs [-f] [-o OPTIONS] DATABASE MOUNTPOINT
 *
 * The steps, in this order:
 *  1. Options: every one is checked — ours here, libfuse's by creating the
 *     session — before anything is touched, so that a usage error (exit 2)
 *     creates no database.
 *  2. The database is opened before mounting, so that a bad one — or one
 *     another daemon holds (without -o shared on both) — is reported
 *     clearly (exit 1) without a mount.
 *  3. Mount; kernel.c records the mount (device, mount id) at once.
 *  4. Threads: the notifier, the workers of the long ioctls, the
 *     prefetcher's (prefetch.h), the backend's watcher with the listener of
 *     other mounts' commits (listen.h), the signal thread; then the session
 *     loop.
 *  5. SIGINT, SIGTERM, SIGHUP (signals.h) or an unmount (fusermount3 -u,
 *     umount) end the loop. Then this mount — found by its mount id,
 *     wherever it was moved — is unmounted, never the path it was mounted
 *     on (kernel.h), the listener, the workers, the prefetcher and the
 *     notifier stop, and the handles are closed, their uncommitted changes
 *     discarded, by name, in the log.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <fuse_opt.h>

#include "backends/backend.h"
#include "backends/memory.h"
#include "util/util.h"
#include "core/ram.h"
#include "fs/fs.h"
#include "fs/inode.h"
#include "fs/kernel.h"
#include "fs/log.h"
#include "fs/signals.h"
#include "fs/workq.h"

#define DEFAULT_CACHE ((uint64_t)256 << 20) /* 256 MiB of clean blocks */
/* Dirty blocks kept in memory before they spill to the staging area: an
 * eighth of the machine's memory, at least 64 MiB (1 GiB if the memory is
 * unknown). */
#define DEFAULT_DIRTY_MIN ((uint64_t)64 << 20)
#define DEFAULT_DIRTY_UNKNOWN ((uint64_t)1 << 30)
/* Request threads at least: READs and WRITEs for the kernel's writeback and
 * invalidations, which the workers wait for, while others keep serving. */
#define DEFAULT_MAX_THREADS 16u

struct options {
    char *database;
    char *blksize;
    char *cache;
    char *dirty;
    char *conflicts;
    char *log_keep;
    char *watch_ms;
    char *timeout;
    char *at;
    char *splice;
    char *dio;
    char *readahead;
    int shared;
    int test_inject;
    int ro;
    int show_help;
    int show_version;
};

enum {
    KEY_RO,
    KEY_RW,
    KEY_HELP,
    KEY_VERSION,
    KEY_DROP
};

#define OPT(t, field, v)                      \
    {                                         \
        t, offsetof(struct options, field), v \
    }
static const struct fuse_opt option_spec[] = {
    OPT("blksize=%s", blksize, 0), OPT("cache=%s", cache, 0), OPT("dirty=%s", dirty, 0),
    OPT("test_inject", test_inject, 1), OPT("shared", shared, 1), OPT("conflicts=%s", conflicts, 0),
    OPT("log_keep=%s", log_keep, 0), OPT("watch_ms=%s", watch_ms, 0), OPT("timeout=%s", timeout, 0),
    OPT("at=%s", at, 0), OPT("splice=%s", splice, 0), OPT("dio=%s", dio, 0),
    OPT("readahead=%s", readahead, 0), FUSE_OPT_KEY("ro", KEY_RO), FUSE_OPT_KEY("rw", KEY_RW),
    /* fstab-only options mount(8) or mount.fuse3 may pass on: ignored. */
    FUSE_OPT_KEY("defaults", KEY_DROP), FUSE_OPT_KEY("auto", KEY_DROP),
    FUSE_OPT_KEY("noauto", KEY_DROP), FUSE_OPT_KEY("nofail", KEY_DROP),
    FUSE_OPT_KEY("_netdev", KEY_DROP), FUSE_OPT_KEY("user", KEY_DROP),
    FUSE_OPT_KEY("nouser", KEY_DROP), FUSE_OPT_KEY("users", KEY_DROP), FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP), FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION), FUSE_OPT_END
};

/* fuse_opt callback: returns 1 to keep the argument for FUSE, 0 to drop it,
 * -1 on error. */
static int option_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    struct options *o = data;

    (void)outargs;
    switch (key) {
    case KEY_RO:
        o->ro = 1;
        return 1; /* also the kernel's read-only mount flag */
    case KEY_RW:
        o->ro = 0;
        return 1;
    case KEY_HELP:
        o->show_help = 1;
        return 0;
    case KEY_VERSION:
        o->show_version = 1;
        return 0;
    case KEY_DROP:
        return 0;
    case FUSE_OPT_KEY_NONOPT:
        if (!o->database) {
            o->database = strdup(arg);
            return o->database ? 0 : -1;
        }
        return 1; /* the mount point, for fuse_parse_cmdline */
    default:
        return 1; /* a FUSE or mount option */
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bigfilefs [-f] [-o OPTIONS] DATABASE MOUNTPOINT\n"
            "\n"
            "Serve the bigfiles of DATABASE as files under MOUNTPOINT that any process can\n"
            "mmap(2). DATABASE is a SQLite file (created if missing), \"pg:CONNINFO\" for a\n"
            "PostgreSQL database (libpq's syntax: \"pg:host=db1 dbname=arrays\",\n"
            "\"pg:postgresql://db1/arrays\", \"pg:service=NAME\"; its schema is created in\n"
            "an empty database), \"mem:\" / \"mem:LABEL\" for an in-memory database that\n"
            "is lost at unmount, or a block server (bigfilefs-protocol(7)):\n"
            "\"exec:COMMAND\" starts COMMAND with sh -c (and again if it dies),\n"
            "\"unix:PATH\" connects to one listening on PATH. Changes stay uncommitted\n"
            "until a writeout (bigfilectl writeout FILE); at unmount, uncommitted\n"
            "changes are discarded.\n"
            "\n"
            "bigfilefs options:\n"
            "    -o blksize=SIZE        block size of new files (default 2M; a power of\n"
            "                           two from 4K to 64M)\n"
            "    -o cache=SIZE          memory the daemon may keep for clean cached blocks\n"
            "                           (default 256M; changed blocks are not counted)\n"
            "    -o dirty=SIZE          memory the daemon may keep for changed blocks not\n"
            "                           yet written out; past it they spill to a staging\n"
            "                           area in the database (default: an eighth of the\n"
            "                           machine's memory, at least 64M)\n"
            "    -o ro                  read-only: writes fail with EROFS, no writeout\n"
            "    -o at=SERIAL           serve the database as it was at commit SERIAL,\n"
            "                           read-only, held for the mount's life (a serial of\n"
            "                           the kept history: bigfilectl history)\n"
            "    -o rw                  read-write (the default)\n"
            "    -o shared              share DATABASE with other bigfilefs daemons that\n"
            "                           mount it with -o shared too (without it, the\n"
            "                           database is this daemon's alone)\n"
            "    -o conflicts=block|file\n"
            "                           a writeout fails with ESTALE when another mount\n"
            "                           committed a block it changes (block, the default),\n"
            "                           or anything of the file since it was clean (file)\n"
            "    -o log_keep=N          commits kept in the log past the slowest mount\n"
            "                           (default %d); a mount that lags further forgets\n"
            "                           every cached page\n"
            "    -o watch_ms=N          look for other mounts' commits every N ms while\n"
            "                           they come (default %d; 1 to 1000)\n"
            "    -o timeout=SECONDS     how long a block server may take to answer one\n"
            "                           request before it counts as hung (default %d;\n"
            "                           1 to 86400; exec: and unix: only)\n"
            "    -o splice=auto|on|off  answer reads of a SQLite database's blocks by\n"
            "                           splicing them from its block file, without a\n"
            "                           copy in the daemon: auto (the default) when\n"
            "                           the daemon may make pipes of 1 MiB and a page\n"
            "                           (fs.pipe-max-size >= 2M, or CAP_SYS_RESOURCE)\n"
            "    -o dio=auto|off        read what the OS does not cache of a SQLite\n"
            "                           database's block file around its cache\n"
            "                           (O_DIRECT): auto (the default) where the kernel\n"
            "                           and file system can; off: always through it\n"
            "    -o readahead=SIZE      how much the kernel reads around a page fault and\n"
            "                           ahead of a sequential reader (default 1M; a\n"
            "                           multiple of 4K up to 64M; above 128K, root)\n"
            "    -o test_inject         serve the fault-injection ioctl of the tests (test\n"
            "                           only; needs a mem: database)\n"
            "    -o allow_other         let other users access the mount (modes and owners\n"
            "                           are always enforced: default_permissions)\n"
            "    SIZE is a number with an optional K, M, G or T suffix (powers of 1024).\n"
            "\n"
            "Without -f the daemon detaches and logs to syslog; with -f it logs to\n"
            "stderr. SIGINT or SIGTERM, fusermount3 -u or umount unmount it.\n"
            "Exit status: 0 after a clean unmount, 1 on failure, 2 on a usage error.\n"
            "\n",
            BF_LOG_KEEP, BF_WATCH_INTERVAL_MS, BF_PROTO_TIMEOUT_MS / 1000);
}

/* The machine's memory in bytes (0 if unknown). */
static uint64_t phys_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);

    return pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
}

/* A decimal number in [lo, hi] for option `name`, or -EINVAL (said). */
static int parse_num_opt(const char *name, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;

    errno = 0;
    *out = s[0] >= '0' && s[0] <= '9' ? strtoull(s, &end, 10) : 0;
    if (s[0] < '0' || s[0] > '9' || errno || *end || *out < lo || *out > hi) {
        fprintf(stderr, "bigfilefs: bad %s '%s': a number from %llu to %llu is needed\n", name, s,
                (unsigned long long)lo, (unsigned long long)hi);
        return -EINVAL;
    }
    return 0;
}

/* The serial of -o at=: canonical decimal, not 0; 0 and said if bad. */
static uint64_t parse_at(const char *s)
{
    char name[32];
    uint64_t serial = 0;

    if (strlen(s) < sizeof(name) - 1) {
        snprintf(name, sizeof(name), "@%s", s);
        serial = bf_views_name_serial(name);
    }
    if (!serial)
        fprintf(stderr,
                "bigfilefs: bad at '%s': a commit serial (a decimal number from 1) is "
                "needed\n",
                s);
    return serial;
}

/* Whether spec names a block server (exec:, unix:). */
static bool is_block_server(const char *spec)
{
    return strncmp(spec, "exec:", 5) == 0 || strncmp(spec, "unix:", 5) == 0;
}

/* The options of the database's session (-o log_keep, watch_ms, timeout)
 * and the conflict granularity (-o conflicts); 0 or -EINVAL (said). */
static int parse_db_opts(const struct options *o, struct bf_db_options *dbo, bool *file_conflicts)
{
    uint64_t v;

    memset(dbo, 0, sizeof(*dbo));
    *file_conflicts = false;
    /* READ answers straight from the store's files: worth it only when
     * libfuse can splice them (else it copies each through a new
     * buffer). */
    if (!o->splice || strcmp(o->splice, "auto") == 0) {
        dbo->copy_reads = !bf_kernel_can_splice_reads(BF_MAX_IO);
    } else if (strcmp(o->splice, "on") == 0 || strcmp(o->splice, "off") == 0) {
        dbo->copy_reads = strcmp(o->splice, "off") == 0;
    } else {
        fprintf(stderr, "bigfilefs: bad splice '%s': auto, on or off is needed\n", o->splice);
        return -EINVAL;
    }
    if (o->dio && strcmp(o->dio, "auto") != 0 && strcmp(o->dio, "off") != 0) {
        fprintf(stderr, "bigfilefs: bad dio '%s': auto or off is needed\n", o->dio);
        return -EINVAL;
    }
    dbo->buffered_reads = o->dio && strcmp(o->dio, "off") == 0;
    if (o->conflicts) {
        if (strcmp(o->conflicts, "file") != 0 && strcmp(o->conflicts, "block") != 0) {
            fprintf(stderr, "bigfilefs: bad conflicts '%s': block or file is needed\n",
                    o->conflicts);
            return -EINVAL;
        }
        *file_conflicts = strcmp(o->conflicts, "file") == 0;
    }
    if (o->log_keep) {
        if (parse_num_opt("log_keep", o->log_keep, 1, UINT64_MAX, &v) < 0)
            return -EINVAL;
        dbo->log_keep = v;
    }
    if (o->watch_ms) {
        if (parse_num_opt("watch_ms", o->watch_ms, 1, 1000, &v) < 0)
            return -EINVAL;
        dbo->watch_interval_ms = (unsigned)v;
    }
    if (o->timeout) {
        if (!is_block_server(o->database)) {
            fprintf(stderr, "bigfilefs: -o timeout is for block servers (exec:, unix:), not %s\n",
                    o->database);
            return -EINVAL;
        }
        if (parse_num_opt("timeout", o->timeout, 1, 86400, &v) < 0)
            return -EINVAL;
        dbo->timeout_ms = (unsigned)v * 1000;
    }
    return 0;
}

static int parse_size_opt(const char *name, const char *s, uint64_t *out)
{
    int r = bf_parse_size(s, out);

    if (r < 0)
        fprintf(stderr, "bigfilefs: bad %s '%s': expected a size like 4096, 64K, 2M or 1G\n", name,
                s);
    return r;
}

/* The database spec to open: a relative path made absolute. The backend
 * opens more connections later (the watcher's, the readers'), after
 * fuse_daemonize has changed the directory to "/". Returns a malloc'ed
 * string, or NULL (out of memory, or no current directory: said). */
static char *absolute_database(const char *spec)
{
    char *cwd, *abs = NULL;

    if (spec[0] == '/' || strncmp(spec, "mem:", 4) == 0 || strncmp(spec, "pg:", 3) == 0 ||
        is_block_server(spec))
        return strdup(spec); /* a block server's link keeps its own directory */
    cwd = getcwd(NULL, 0);
    if (!cwd) {
        fprintf(stderr, "bigfilefs: %s: cannot find the current directory: %s\n", spec,
                strerror(errno));
        return NULL;
    }
    if (asprintf(&abs, "%s/%s", cwd, spec) < 0)
        abs = NULL;
    free(cwd);
    return abs;
}

/* Add "-o fsname=DATABASE,subtype=bigfilefs,default_permissions,max_read=N"
 * to args, DATABASE as it may be shown (a pg: conninfo without its
 * password: the mount table is world-readable). Returns 0 or -1. */
static int add_fixed_options(struct fuse_args *args, const char *database)
{
    char *opts = NULL, *fsname = NULL, *arg = NULL;
    char buf[64], shown[PATH_MAX];
    int r = -1;

    bf_db_spec_shown(database, shown, sizeof(shown));
    if (asprintf(&fsname, "fsname=%s", shown) < 0)
        return -1;
    snprintf(buf, sizeof(buf), "max_read=%u", BF_MAX_IO);
    if (fuse_opt_add_opt_escaped(&opts, fsname) == 0 &&
        fuse_opt_add_opt(&opts, "subtype=bigfilefs") == 0 &&
        fuse_opt_add_opt(&opts, "default_permissions") == 0 && fuse_opt_add_opt(&opts, buf) == 0 &&
        asprintf(&arg, "-o%s", opts) >= 0) {
        r = fuse_opt_add_arg(args, arg);
    }
    free(arg);
    free(opts);
    free(fsname);
    return r;
}

/* Step 5: unmount this mount (by its mount id), stop the listener, the
 * workers and the notifier, end the connection. After the loop: no request
 * thread runs. */
static void unmount_and_stop(struct bf_fs *fs, bool mounted)
{
    bool by_path = mounted && !fs->kernel, idle = true;

    if (fs->kernel && bf_kernel_unmount(fs->kernel) == -EPERM)
        /* Not root: only fusermount3 may unmount, by path; use it only if
         * the path still leads to this mount. */
        by_path = bf_kernel_at_mountpoint(fs->kernel);
    /* Jobs and a listener still waiting for the kernel (a drain that timed
     * out, a lazy unmount others still use) must end before the workers
     * and the watcher are joined: abort the connection. The listener
     * skips every later commit. */
    if (fs->listener)
        idle = bf_listener_quiesce(fs->listener, 1000);
    if (fs->workq)
        idle = bf_workq_drain(fs->workq, 1000) && idle;
    if (!idle && fs->kernel)
        bf_kernel_abort(fs->kernel);
    /* Before the handles are closed: the listener uses them. */
    if (fs->db)
        bf_db_unwatch(fs->db);
    if (fs->workq) {
        bf_workq_stop(fs->workq);
        fs->workq = NULL;
    }
    /* Before the handles are closed: its jobs use them. */
    bf_prefetch_stop(fs->prefetch);
    fs->prefetch = NULL;
    bf_kernel_free(fs->kernel);
    fs->kernel = NULL;
    if (!mounted)
        return;
    if (!by_path)
        bf_kernel_end_connection(fs->se);
    /* Unmounts by path only if by_path; frees libfuse's copy of it. */
    fuse_session_unmount(fs->se);
}

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct options o;
    struct fuse_cmdline_opts cmd;
    struct fuse_loop_config *loop_cfg = NULL;
    struct bf_fs fs;
    uint64_t blksize = BF_BLKSIZE_DEFAULT, cache = DEFAULT_CACHE, dirty, mem;
    uint64_t readahead = BF_KERNEL_RA_DEFAULT;
    const struct bf_workq_limits limits = {
        .workers = BF_WORKERS,
        .max_queued = BF_QUEUE_MAX,
        .max_user_queued = BF_QUEUE_USER_MAX,
        .max_user_running = BF_QUEUE_USER_RUNNING,
        .thread_start = bf_kernel_thread_may_wait,
    };
    struct bf_db_options dbopts;
    char errbuf[512] = "", *dbpath = NULL;
    bf_sigwatch *sigwatch = NULL;
    bool itable_ready = false, mounted = false, file_conflicts;
    uint64_t at = 0;
    unsigned open_flags;
    struct bf_history hist;
    int r, status = 1;

    memset(&o, 0, sizeof(o));
    memset(&cmd, 0, sizeof(cmd));
    memset(&fs, 0, sizeof(fs));

    /* Before any thread exists: every thread inherits the mask. */
    r = bf_signals_block();
    if (r < 0) {
        fprintf(stderr, "bigfilefs: cannot set up signals: %s\n", strerror(-r));
        goto out_args;
    }

    /* 1. Options: all of them, before the database is touched. */
    if (fuse_opt_parse(&args, &o, option_spec, option_proc) != 0) {
        usage(stderr);
        status = 2;
        goto out_args;
    }
    if (o.show_help) {
        usage(stdout);
        fflush(stdout);
        printf("FUSE options:\n");
        fflush(stdout);
        fuse_cmdline_help();
        fuse_lowlevel_help();
        status = 0;
        goto out_args;
    }
    if (o.show_version) {
        printf("bigfilefs %s\n", PACKAGE_VERSION);
        printf("FUSE library version %s\n", fuse_pkgversion());
        fflush(stdout);
        fuse_lowlevel_version();
        status = 0;
        goto out_args;
    }
    if (fuse_parse_cmdline(&args, &cmd) != 0) {
        status = 2;
        goto out_args;
    }
    if (!o.database || !cmd.mountpoint) {
        fprintf(stderr, "bigfilefs: %s\n",
                !o.database ? "missing DATABASE and MOUNTPOINT" : "missing MOUNTPOINT");
        usage(stderr);
        status = 2;
        goto out_args;
    }
    status = 2; /* usage errors from here to the session */
    if ((o.blksize && parse_size_opt("blksize", o.blksize, &blksize) < 0) ||
        (o.cache && parse_size_opt("cache", o.cache, &cache) < 0) ||
        (o.dirty && parse_size_opt("dirty", o.dirty, &dirty) < 0) ||
        (o.readahead && parse_size_opt("readahead", o.readahead, &readahead) < 0))
        goto out_args;
    if (readahead == 0 || readahead % 4096 || readahead > BF_KERNEL_RA_MAX) {
        fprintf(stderr, "bigfilefs: bad readahead %s: a multiple of 4K from 4K to 64M is needed\n",
                o.readahead);
        goto out_args;
    }
    if (!bf_blksize_valid(blksize)) {
        fprintf(stderr, "bigfilefs: bad blksize %s: a power of two from 4K to 64M is needed\n",
                o.blksize);
        goto out_args;
    }
    mem = phys_memory();
    if (cache > SIZE_MAX || (mem && cache > mem)) {
        fprintf(stderr,
                "bigfilefs: cache=%s is more than this machine's memory (%llu MiB): the cache "
                "holds blocks in memory\n",
                o.cache, (unsigned long long)(mem >> 20));
        goto out_args;
    }
    if (o.dirty && dirty < blksize) {
        fprintf(stderr,
                "bigfilefs: dirty=%s is less than one block (%llu bytes): at least one changed "
                "block must fit in memory\n",
                o.dirty, (unsigned long long)blksize);
        goto out_args;
    }
    if (o.dirty && (dirty > SIZE_MAX || (mem && dirty > mem))) {
        fprintf(stderr,
                "bigfilefs: dirty=%s is more than this machine's memory (%llu MiB): the budget "
                "holds changed blocks in memory\n",
                o.dirty, (unsigned long long)(mem >> 20));
        goto out_args;
    }
    if (!o.dirty)
        dirty = !mem                          ? DEFAULT_DIRTY_UNKNOWN
                : mem / 8 > DEFAULT_DIRTY_MIN ? mem / 8
                                              : DEFAULT_DIRTY_MIN;
    if (parse_db_opts(&o, &dbopts, &file_conflicts) < 0)
        goto out_args;
    if (o.at && !(at = parse_at(o.at)))
        goto out_args;
    if (o.test_inject && strncmp(o.database, "mem:", 4) != 0) {
        fprintf(stderr, "bigfilefs: -o test_inject needs a mem: database\n");
        goto out_args;
    }
    if (cmd.debug)
        bf_log_set_level(LOG_DEBUG);
    /* -o at=: the kernel's read-only mount flag too (open for writing,
     * create, ... fail with EROFS before they reach the daemon). */
    if (add_fixed_options(&args, o.database) < 0 || (at && fuse_opt_add_arg(&args, "-oro") < 0)) {
        fprintf(stderr, "bigfilefs: out of memory\n");
        status = 1;
        goto out_args;
    }
    /* libfuse checks its options here (an unknown one is refused, and says
     * so); it neither mounts nor calls an operation yet. */
    fs.se = fuse_session_new(&args, &bf_fs_ops, sizeof(bf_fs_ops), &fs);
    if (!fs.se)
        goto out_args;
    status = 1;

    /* 2. The database, before mounting. */
    dbpath = absolute_database(o.database);
    if (!dbpath)
        goto out_session;
    /* -o at= opens an existing database, read-write only so that its view
     * can be pinned (views.h); -o ro with it: unpinned. */
    open_flags = o.ro ? BF_DB_RDONLY : at ? 0 : BF_DB_CREATE;
    r = bf_db_open_ex(dbpath, open_flags | (o.shared ? BF_DB_SHARED : 0), &dbopts, &fs.db, errbuf,
                      sizeof(errbuf));
    if (r < 0) {
        fprintf(stderr, "bigfilefs: %s\n", errbuf[0] ? errbuf : strerror(-r));
        goto out_session;
    }
    r = bf_ram_new((size_t)cache, &fs.ram);
    if (r == 0)
        bf_ram_set_dirty_budget(fs.ram, (size_t)dirty);
    if (r < 0 || bf_itable_init(&fs.itable, fs.db, fs.ram) < 0 ||
        bf_listener_new(&fs, &fs.listener) < 0) {
        fprintf(stderr, "bigfilefs: out of memory\n");
        goto out_session;
    }
    itable_ready = true;
    clock_gettime(CLOCK_REALTIME, &fs.mount_time);
    r = bf_views_new(fs.db, fs.ram, getuid(), getgid(), &fs.mount_time, at, &hist, &fs.views);
    if (r < 0) {
        char shown[PATH_MAX];

        bf_db_spec_shown(o.database, shown, sizeof(shown));
        if (r == -ENOENT && hist.kept)
            fprintf(stderr,
                    "bigfilefs: %s: serial %llu is not in the kept history (from %llu to %llu)\n",
                    shown, (unsigned long long)at, (unsigned long long)hist.from,
                    (unsigned long long)hist.current);
        else if (r == -EOPNOTSUPP)
            fprintf(stderr, "bigfilefs: %s: -o at=: this database keeps no history\n", shown);
        else
            fprintf(stderr, "bigfilefs: %s: %s\n", shown, strerror(-r));
        goto out_session;
    }
    fs.history = bf_db_history(fs.db, &hist) == 0 && hist.kept;
    fs.blksize = (uint32_t)blksize;
    fs.readahead = (uint32_t)readahead;
    fs.ro = o.ro || at;
    fs.file_conflicts = file_conflicts;
    fs.test_inject = o.test_inject;

    /* 3. The mount. */
    if (fuse_session_mount(fs.se, cmd.mountpoint) != 0)
        goto out_session;
    mounted = true;
    r = bf_kernel_attach(fs.se, cmd.mountpoint, &fs.kernel);
    if (r < 0) {
        fprintf(stderr, "bigfilefs: cannot find the new mount on %s: %s\n", cmd.mountpoint,
                strerror(-r));
        goto out_session;
    }
    if (!cmd.foreground)
        bf_log_to_syslog();
    if (fuse_daemonize(cmd.foreground) != 0)
        goto out_session;

    /* 4. Threads: after daemonizing (fork keeps only the calling thread). */
    r = bf_kernel_start(fs.kernel);
    if (r < 0) {
        bf_err("cannot start the notifier thread: %s", strerror(-r));
        goto out_session;
    }
    r = bf_workq_start(&limits, &fs.workq);
    if (r < 0) {
        bf_err("cannot start the worker threads: %s", strerror(-r));
        goto out_session;
    }
    r = bf_prefetch_start(&fs.itable, &fs.prefetch);
    if (r < 0) {
        bf_err("cannot start the prefetch threads: %s", strerror(-r));
        goto out_session;
    }
    /* Other mounts' commits, from the serial the database was opened at. */
    r = bf_listener_start(fs.listener);
    if (r < 0) {
        bf_err("cannot start the watcher thread: %s", strerror(-r));
        goto out_session;
    }
    r = bf_signals_start(&fs, pthread_self(), &sigwatch);
    if (r < 0) {
        bf_err("cannot start the signal thread: %s", strerror(-r));
        goto out_session;
    }
    loop_cfg = fuse_loop_cfg_create();
    if (!loop_cfg) {
        bf_err("out of memory");
        goto out_session;
    }
    if (cmd.singlethread)
        bf_warn("-s ignored: the kernel's writeback and invalidations need several threads");
    fuse_loop_cfg_set_clone_fd(loop_cfg, (unsigned)cmd.clone_fd);
    /* fuse_parse_cmdline leaves UINT_MAX for "not given". */
    if (cmd.max_idle_threads != UINT_MAX)
        fuse_loop_cfg_set_idle_threads(loop_cfg, cmd.max_idle_threads);
    fuse_loop_cfg_set_max_threads(loop_cfg, cmd.max_threads != UINT_MAX &&
                                                    cmd.max_threads > DEFAULT_MAX_THREADS
                                                ? cmd.max_threads
                                                : DEFAULT_MAX_THREADS);
    char shown[PATH_MAX];
    bf_db_spec_shown(o.database, shown, sizeof(shown)); /* never a password in the log */
    bf_info("serving %s on %s (blksize %u, cache %llu bytes, dirty %llu bytes%s%s)", shown,
            cmd.mountpoint, fs.blksize, (unsigned long long)cache, (unsigned long long)dirty,
            fs.ro ? ", read-only" : "", o.shared ? ", shared" : "");
    if (at)
        bf_info("the mount shows serial %llu", (unsigned long long)at);

    r = fuse_session_loop_mt(fs.se, loop_cfg);
    status = r < 0 ? 1 : 0;
    if (r < 0)
        bf_err("session loop failed: %s", strerror(-r));
    bf_info("unmounting %s", cmd.mountpoint);

out_session:
    /* 5. */
    unmount_and_stop(&fs, mounted);
    bf_signals_stop(sigwatch);
    if (fs.se)
        fuse_session_destroy(fs.se);
    fuse_loop_cfg_destroy(loop_cfg);
    if (itable_ready)
        bf_itable_destroy(&fs.itable);
    bf_views_free(fs.views); /* after the prefetcher stopped, before the database */
    if (fs.ram && bf_ram_free(fs.ram) < 0)
        bf_err("internal error: handles left open at exit");
    bf_db_close(fs.db);
    bf_listener_free(fs.listener);
out_args:
    free(cmd.mountpoint);
    free(o.database);
    free(dbpath);
    free(o.blksize);
    free(o.cache);
    free(o.dirty);
    free(o.conflicts);
    free(o.splice);
    free(o.dio);
    free(o.readahead);
    free(o.log_keep);
    free(o.watch_ms);
    free(o.timeout);
    free(o.at);
    fuse_opt_free_args(&args);
    return status;
}
