/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/proto: the block server engine against blockd, the C
 * block server of the tests (bigfilefs-protocol(7)).
 *
 * The shared behaviour runs in tests/backends (suites proto_c, proto_py);
 * these are what only a block server has: the wire format, the version
 * negotiation, the server's failures (a crash, a hang past the timeout,
 * nonsense of every kind) each failing the calls in flight with EIO while
 * the next call works against a restarted server, the backoff of quick
 * failures, replies out of order, a writeout through the core whose server
 * dies (it fails, every change kept, and the next one commits), unix:
 * servers, and that nothing is left running after a close. blockd's faults
 * fire once (--once MARKER): the restarted server behaves. */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "../backends/helpers.h"
#include "backends/proto.h"
#include "backends/proto_wire.h"
#include "core/fileh.h"
#include "core/ram.h"

#define BS 4096u

/* A directory, blockd's database in it, a spec with `opts` (a %s in opts
 * is the fault marker's path). */
static void setup(struct tb *t, const char *opts)
{
    char o[512], marker[160];
    memset(t, 0, sizeof(*t));
    t->kind = TB_PROTO_C;
    tb_mkdir(t);
    snprintf(marker, sizeof(marker), "%s/marker", t->dir);
    snprintf(o, sizeof(o), opts ? opts : "", marker, marker, marker);
    tb_proto_spec(t, TB_PROTO_C, o);
}

static bf_db *open_opt(struct tb *t, unsigned timeout_ms)
{
    bf_db *db = NULL;
    char err[512] = "";
    struct bf_db_options opt = { .timeout_ms = timeout_ms };
    int r = bf_db_open_ex(t->spec, BF_DB_CREATE, &opt, &db, err, sizeof(err));
    cr_assert_eq(r, 0, "open %s: %d %s", t->spec, r, err);
    cr_assert(bf_db_is_proto(db));
    return db;
}

/* A file "f" with blocks [0, n) of tb_fill(tag 1), opened (*f). */
static uint64_t file_with(bf_db *db, uint64_t n, bf_file **f)
{
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_create(db, "f", BS, 0, 0644, 0, 0, &fi), 0);
    cr_assert_eq(bf_db_file_open(db, fi.id, f), 0);
    tb_store_range(*f, 0, n, 1, n * BS);
    return fi.id;
}

static int load(bf_file *f, uint64_t blk)
{
    void *buf = malloc(BS);
    cr_assert_not_null(buf);
    int r = tb_load(f, blk, buf);
    if (r == 0)
        cr_assert(tb_check(buf, BS, blk, 1), "block %llu: wrong content", (unsigned long long)blk);
    free(buf);
    return r;
}

/* Whether process pid is gone (reaped, not a zombie of ours). */
static bool gone(pid_t pid)
{
    return kill(pid, 0) < 0 && errno == ESRCH;
}

/* ---- the wire --------------------------------------------------------------- */

Test(wire, errno_names_both_ways, .timeout = 5)
{
    cr_assert_str_eq(bf_errno_name(ENOENT), "ENOENT");
    cr_assert_str_eq(bf_errno_name(EAGAIN), "EAGAIN");
    cr_assert_str_eq(bf_errno_name(EOPNOTSUPP), "EOPNOTSUPP");
    cr_assert_null(bf_errno_name(0));
    cr_assert_null(bf_errno_name(100000));
    cr_assert_eq(bf_errno_from_name("ENOENT", 6), ENOENT);
    cr_assert_eq(bf_errno_from_name("ESTALE", 6), ESTALE);
    cr_assert_eq(bf_errno_from_name("EWOULDBLOCK", 11), EAGAIN, "aliases too");
    cr_assert_eq(bf_errno_from_name("ENOTSUP", 7), EOPNOTSUPP);
    cr_assert_eq(bf_errno_from_name("ENOENTX", 6), ENOENT, "the length counts, not a NUL");
    cr_assert_eq(bf_errno_from_name("ENOEN", 5), 0);
    cr_assert_eq(bf_errno_from_name("EWHATEVER", 9), 0);
    for (int e = 1; e < 134; e++) {
        const char *n = bf_errno_name(e);
        if (n)
            cr_assert_eq(bf_errno_from_name(n, strlen(n)), e, "%s", n);
    }
}

Test(wire, fileinfo_round_trip_and_short_reads, .timeout = 5)
{
    unsigned char buf[512];
    struct bf_wbuf w;
    struct bf_rbuf r;
    struct bf_fileinfo fi = { .id = 7,
                              .blksize = 8192,
                              .size = 1ull << 40,
                              .mode = 0100644,
                              .uid = 3,
                              .gid = 4,
                              .mtime_ns = -5,
                              .ctime_ns = 6 };
    strcpy(fi.name, "name");
    bf_wire_start(&w, buf, sizeof(buf), BF_OP_GETINFO | BF_OP_REPLY, 0, 9);
    bf_wire_info(&w, &fi);
    cr_assert(bf_wire_ok(&w));
    cr_assert_eq(w.len, BF_PROTO_HDR + 48 + 2 + 4, "packed, no padding");

    struct bf_msghdr h;
    struct bf_fileinfo back;
    bf_wire_read(&r, buf, w.len);
    cr_assert(bf_wire_hdr(&r, &h));
    cr_assert_eq(h.op, BF_OP_GETINFO | BF_OP_REPLY);
    cr_assert_eq(h.id, 9);
    cr_assert_eq(bf_wire_get_info(&r, &back), 0);
    cr_assert(bf_wire_done(&r));
    cr_assert_eq(back.id, 7);
    cr_assert_eq(back.size, 1ull << 40);
    cr_assert_eq(back.mode, 0644, "the mode is masked to 07777");
    cr_assert_eq(back.mtime_ns, -5);
    cr_assert_str_eq(back.name, "name");

    /* every truncation of it is malformed, never read past its end */
    for (size_t n = 0; n < w.len - BF_PROTO_HDR; n++) {
        bf_wire_read(&r, buf + BF_PROTO_HDR, n);
        cr_assert_eq(bf_wire_get_info(&r, &back), -EPROTO, "%zu bytes", n);
    }
    /* a name no bf_fileinfo holds: too long, or with a NUL */
    unsigned char fixed[48];
    char longname[300];
    memcpy(fixed, buf + BF_PROTO_HDR, sizeof(fixed));
    memset(longname, 'x', sizeof(longname));
    bf_wire_start(&w, buf, sizeof(buf), 0, 0, 0);
    w.len = 0;
    bf_wire_bytes(&w, fixed, sizeof(fixed));
    bf_wire_str(&w, longname, sizeof(longname));
    bf_wire_read(&r, buf, w.len);
    cr_assert_eq(bf_wire_get_info(&r, &back), -ENAMETOOLONG);
    cr_assert(bf_wire_done(&r), "the record is read past the name all the same");
    bf_wire_start(&w, buf, sizeof(buf), 0, 0, 0);
    w.len = 0;
    bf_wire_bytes(&w, fixed, sizeof(fixed));
    bf_wire_str(&w, "a\0b", 3);
    bf_wire_read(&r, buf, w.len);
    cr_assert_eq(bf_wire_get_info(&r, &back), -EILSEQ);

    /* an encoding that does not fit is flagged, not overrun */
    bf_wire_start(&w, buf, 10, 0, 0, 0);
    bf_wire_u64(&w, 1);
    cr_assert(!bf_wire_ok(&w));
}

/* ---- opening ------------------------------------------------------------------ */

Test(open, newer_version_is_refused_naming_both, .timeout = 20)
{
    struct tb t;
    bf_db *db = NULL;
    char err[512] = "";
    setup(&t, "--version 2");
    int r = bf_db_open(t.spec, BF_DB_CREATE, &db, err, sizeof(err));
    cr_assert_eq(r, -EPROTONOSUPPORT, "%d %s", r, err);
    cr_assert_null(db);
    cr_assert_not_null(strstr(err, "speaks protocol version 2"), "%s", err);
    cr_assert_not_null(strstr(err, "this bigfilefs speaks version 1"), "%s", err);
    cr_assert_not_null(strstr(err, "upgrade bigfilefs"), "%s", err);
    tb_rmdir(&t);
}

Test(open, shared_is_refused, .timeout = 20)
{
    struct tb t;
    bf_db *db = NULL;
    char err[512] = "";
    setup(&t, "--count %s");
    cr_assert_eq(bf_db_open(t.spec, BF_DB_SHARED, &db, err, sizeof(err)), -EINVAL);
    cr_assert_not_null(strstr(err, "-o shared"), "%s", err);
    char marker[160];
    snprintf(marker, sizeof(marker), "%s/marker", t.dir);
    cr_assert_neq(access(marker, F_OK), 0, "no server was started");
    tb_rmdir(&t);
}

Test(open, a_server_that_exits_fails_the_open_with_its_status, .timeout = 20)
{
    bf_db *db = NULL;
    char err[512] = "";
    int r = bf_db_open("exec:echo oops >&2; exit 3", 0, &db, err, sizeof(err));
    cr_assert_eq(r, -EIO, "%d %s", r, err);
    cr_assert_not_null(strstr(err, "exited with status 3"), "%s", err);
    r = bf_db_open("exec:", 0, &db, err, sizeof(err));
    cr_assert_eq(r, -EINVAL, "%s", err);
}

Test(open, close_leaves_no_server_running, .timeout = 20)
{
    struct tb t;
    setup(&t, NULL);
    bf_db *db = open_opt(&t, 0);
    pid_t pid = bf_proto_server_pid(db);
    cr_assert_gt(pid, 0);
    cr_assert(!gone(pid));
    bf_db_close(db);
    cr_assert(gone(pid), "the server exited at the end of its connection and was reaped");
    tb_rmdir(&t);
}

Test(open, read_only_session_refuses_changes, .timeout = 20)
{
    struct tb t;
    bf_db *db = NULL;
    setup(&t, NULL);
    cr_assert_eq(bf_db_open(t.spec, BF_DB_RDONLY | BF_DB_CREATE, &db, NULL, 0), 0);
    cr_assert_eq(bf_db_create(db, "a", BS, 0, 0644, 0, 0, NULL), -EROFS);
    cr_assert_eq(bf_db_session(db), 0);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* The daemon forks (fuse_daemonize) after it opened the database: in the
 * child, the server and the reader thread of the open's connection are the
 * parent's. The child starts its own server at its first request. */
Test(open, a_forked_process_starts_its_own_server, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    setup(&t, NULL);
    bf_db *db = open_opt(&t, 0);
    uint64_t id = file_with(db, 2, &f);
    bf_db_file_close(db, f);
    pid_t first = bf_proto_server_pid(db);
    fflush(NULL);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        bf_file *g;
        void *buf = malloc(BS);
        int ok = bf_db_file_open(db, id, &g) == 0 && tb_load(g, 1, buf) == 0 &&
                 tb_check(buf, BS, 1, 1) && bf_proto_server_pid(db) != first &&
                 bf_proto_server_pid(db) > 0;
        if (ok)
            bf_db_file_close(db, g);
        free(buf);
        bf_db_close(db);
        _exit(ok ? 0 : 1);
    }
    int st;
    cr_assert_eq(waitpid(child, &st, 0), child);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child loaded through its own server");
    bf_db_close(db); /* the parent's server was killed by the child: its end is seen */
    cr_assert(gone(first));
    tb_rmdir(&t);
}

/* ---- failures and restarts ------------------------------------------------------ */

Test(fail, server_crash_mid_load_then_the_next_load_works, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    setup(&t, "--crash-load 1 --once %s");
    bf_db *db = open_opt(&t, 0);
    file_with(db, 4, &f);
    pid_t first = bf_proto_server_pid(db);
    cr_assert_eq(load(f, 1), -EIO, "the load in flight fails");
    cr_assert_eq(load(f, 1), 0, "the next load restarts the server, reopens the file");
    cr_assert_eq(load(f, 3), 0);
    cr_assert_eq(bf_proto_starts(db), 2);
    cr_assert_neq(bf_proto_server_pid(db), first);
    /* and the handle writes again through the new server */
    tb_store_range(f, 0, 1, 2, 4 * BS);
    tb_expect(f, 0, 2);
    bf_db_file_close(db, f);
    bf_db_close(db);
    cr_assert(gone(first), "the crashed server was reaped");
    tb_rmdir(&t);
}

Test(fail, server_hanging_past_the_timeout, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    setup(&t, "--hang-load 1 --once %s");
    /* the timeout bounds the HELLO too: an ASan blockd on a loaded
     * machine takes more than 300 ms to start */
    bf_db *db = open_opt(&t, 2000);
    file_with(db, 2, &f);
    pid_t hung = bf_proto_server_pid(db);
    int64_t t0 = bf_mono_ns();
    cr_assert_eq(load(f, 0), -EIO, "no answer within the timeout");
    cr_assert_geq(bf_mono_ns() - t0, 2000 * 1000000ll, "it waited for the timeout");
    cr_assert_eq(load(f, 0), 0);
    cr_assert_eq(load(f, 1), 0);
    bf_db_file_close(db, f);
    bf_db_close(db);
    cr_assert(gone(hung), "the hung server was killed and reaped");
    tb_rmdir(&t);
}

Test(fail, nonsense_of_every_kind, .timeout = 60)
{
    static const char *const kinds[] = { "op",  "len",     "id",    "errno",
                                         "big", "request", "short", "more" };
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        struct tb t;
        bf_file *f;
        char opts[128];
        snprintf(opts, sizeof(opts), "--junk-load 1:%s --once %%s", kinds[k]);
        setup(&t, opts);
        bf_db *db = open_opt(&t, 0);
        file_with(db, 2, &f);
        cr_assert_eq(load(f, 1), -EIO, "junk %s", kinds[k]);
        cr_assert_eq(load(f, 1), 0, "junk %s: the next load works", kinds[k]);
        cr_assert_eq(bf_proto_starts(db), 2, "junk %s", kinds[k]);
        bf_db_file_close(db, f);
        bf_db_close(db);
        tb_rmdir(&t);
    }
}

Test(fail, quick_failures_back_off, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    char count[160];
    /* the first load crashes; every restart exits at once */
    setup(&t, "--crash-load 1 --once %s --exit-if %s --count %s.count");
    snprintf(count, sizeof(count), "%s/marker.count", t.dir);
    bf_db *db = open_opt(&t, 0);
    file_with(db, 1, &f);
    cr_assert_eq(load(f, 0), -EIO, "crash");
    cr_assert_eq(load(f, 0), -EIO, "the immediate restart fails");
    cr_assert_eq(bf_proto_starts(db), 2);
    cr_assert_eq(load(f, 0), -EIO, "within the backoff: fails at once");
    cr_assert_eq(bf_proto_starts(db), 2, "without starting the server");
    FILE *fp = fopen(count, "r");
    cr_assert_not_null(fp);
    int lines = 0;
    for (int c; (c = getc(fp)) != EOF;)
        lines += c == '\n';
    fclose(fp);
    cr_assert_eq(lines, 1, "the restart exited before it counted itself");
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

Test(fail, transaction_lost_with_its_server, .timeout = 30)
{
    struct tb t;
    bf_file *f, *g;
    void *buf = malloc(BS);
    setup(&t, "--crash-load 1 --once %s");
    bf_db *db = open_opt(&t, 0);
    uint64_t id = file_with(db, 2, &f);
    cr_assert_eq(bf_db_file_open(db, id, &g), 0);
    cr_assert_eq(f->ops->begin(f), 0);
    tb_fill(buf, BS, 0, 5);
    cr_assert_eq(tb_store(f, 0, buf), 0);
    cr_assert_eq(load(g, 1), -EIO, "the server crashes under the transaction");
    cr_assert_eq(tb_store(f, 1, buf), -EIO, "the transaction went with the server");
    cr_assert_eq(tb_commit(f, 2 * BS), -EIO);
    tb_expect(g, 0, 1); /* nothing of it was committed */
    cr_assert_eq(f->ops->begin(f), 0, "a new transaction works");
    cr_assert_eq(tb_store(f, 0, buf), 0);
    cr_assert_eq(tb_commit(f, 2 * BS), 0);
    tb_expect(g, 0, 5);
    free(buf);
    bf_db_file_close(db, g);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* A writeout through the core (bf_fileh) whose server dies at COMMIT: it
 * fails with EIO, every change stays dirty, and the next writeout commits
 * them to the restarted server. */
Test(fail, writeout_whose_server_dies_keeps_every_change, .timeout = 30)
{
    struct tb t;
    bf_file *f;
    bf_ram *ram;
    bf_fileh *fh;
    struct bf_fileh_stats st;
    char data[3 * BS];
    setup(&t, "--crash-commit 2 --once %s");
    bf_db *db = open_opt(&t, 0);
    uint64_t id = file_with(db, 3, &f);
    cr_assert_eq(bf_ram_new(1 << 20, &ram), 0);
    cr_assert_eq(bf_fileh_open(f, ram, &fh), 0);
    memset(data, 0x77, sizeof(data));
    cr_assert_eq(bf_fileh_write(fh, data, sizeof(data), BS), (ssize_t)sizeof(data));
    cr_assert_eq(bf_fileh_writeout(fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), -EIO);
    bf_fileh_stat(fh, &st);
    cr_assert_eq(st.dirty_blocks, 3, "every change kept");
    cr_assert_eq(st.size, 4 * BS);
    cr_assert_eq(st.committed_size, 3 * BS);
    cr_assert_eq(bf_fileh_writeout(fh, BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED, NULL), 0,
                 "the next one commits");
    bf_fileh_stat(fh, &st);
    cr_assert_eq(st.dirty_blocks, 0);
    cr_assert_eq(st.committed_size, 4 * BS);
    bf_fileh_close(fh);
    bf_ram_free(ram);
    /* the data is the server's: a new handle reads it from there */
    bf_file *g;
    char back[BS];
    cr_assert_eq(bf_db_file_open(db, id, &g), 0);
    cr_assert_eq(g->size, 4 * BS);
    cr_assert_eq(tb_load(g, 3, back), 0);
    cr_assert_eq(memcmp(back, data, BS), 0);
    tb_expect(g, 0, 1);
    bf_db_file_close(db, g);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* ---- concurrency ------------------------------------------------------------------ */

struct one_load {
    bf_file *f;
    uint64_t blk;
    int r;
};

static void *load_thread(void *arg)
{
    struct one_load *l = arg;
    l->r = load(l->f, l->blk);
    return NULL;
}

/* blockd answers the load of block 1 before the load of block 0, which it
 * holds until then (for 10 s at most, past the test's timeout): both are
 * in flight at once and each gets its own answer. */
Test(concurrent, replies_out_of_order, .timeout = 8)
{
    struct tb t;
    bf_file *f;
    pthread_t th[2];
    struct one_load l[2];
    setup(&t, "--threads 2 --reorder");
    bf_db *db = open_opt(&t, 0);
    file_with(db, 2, &f);
    for (int i = 0; i < 2; i++) {
        l[i] = (struct one_load){ f, (uint64_t)i, -1 };
        cr_assert_eq(pthread_create(&th[i], NULL, load_thread, &l[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(l[i].r, 0, "load of block %d", i);
    }
    cr_assert_eq(bf_proto_starts(db), 1);
    bf_db_file_close(db, f);
    bf_db_close(db);
    tb_rmdir(&t);
}

/* ---- unix: ------------------------------------------------------------------------- */

Test(unix_socket, connect_serve_refuse_a_second_mount, .timeout = 30)
{
    struct tb t;
    char sock[160], blockd[512], spec[200], err[512];
    bf_file *f;
    memset(&t, 0, sizeof(t));
    tb_mkdir(&t);
    snprintf(sock, sizeof(sock), "%s/sock", t.dir);
    snprintf(blockd, sizeof(blockd), "%s/tests/proto/blockd",
             tb_env_or("BF_BUILDDIR", BF_TEST_BUILDDIR));
    snprintf(spec, sizeof(spec), "unix:%s", sock);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl(blockd, "blockd", "--listen", sock, t.path, (char *)NULL);
        _exit(127);
    }
    bf_db *db = NULL, *db2 = NULL;
    int r = -1;
    for (int i = 0; i < 1000 && r < 0; i++) { /* until it listens */
        r = bf_db_open(spec, 0, &db, err, sizeof(err));
        if (r < 0)
            usleep(10000);
    }
    cr_assert_eq(r, 0, "%s", err);
    file_with(db, 2, &f);
    cr_assert_eq(load(f, 1), 0);
    cr_assert_eq(bf_db_open(spec, 0, &db2, err, sizeof(err)), -EBUSY);
    cr_assert_not_null(strstr(err, "serving another mount"), "%s", err);
    bf_db_file_close(db, f);
    bf_db_close(db);
    /* the server goes on: the next mount finds the data */
    cr_assert_eq(bf_db_open(spec, 0, &db, err, sizeof(err)), 0, "%s", err);
    struct bf_fileinfo fi;
    cr_assert_eq(bf_db_lookup(db, "f", &fi), 0);
    cr_assert_eq(fi.size, 2 * BS);
    bf_db_close(db);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    tb_rmdir(&t);
}
