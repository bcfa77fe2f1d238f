/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the link to a block server. See proto_link.h for
 * the states and the locks, man/bigfilefs-protocol.7 for the protocol.
 *
 * A request, from the engine's thread:
 *   1. under c->lock: take an id, put a `pend` record (on the caller's
 *      stack) on c->pending;
 *   2. send the message (no lock: a SOCK_SEQPACKET send is atomic, so
 *      threads need none between them);
 *   3. wait on the record's condition variable until the reader completes
 *      it, or the timeout passes (then break the connection: the record is
 *      completed with -EIO like every other in flight).
 * The reader thread receives each reply, finds its record by id, checks
 * the reply against it (op, flags, length), copies the body into the
 * caller's buffer and completes the record, all under c->lock; anything
 * that breaks the protocol breaks the connection. When the connection is
 * broken or closed, the reader reaps the server and logs why it ended.
 */
#include "config.h" /* first: _GNU_SOURCE (memfd_create, pthread_tryjoin_np); PACKAGE_VERSION */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backends/proto_link.h"
#include "backends/proto_wire.h"

extern char **environ;

#define UNIT 4096u /* the area's allocation unit */
#define REASON_MAX 256

enum conn_state {
    CONN_UP,      /* requests go */
    CONN_BROKEN,  /* the server failed: see reason */
    CONN_CLOSING, /* the link closes it */
};

/* A request in flight (on its caller's stack). */
struct pend {
    struct pend *next;
    uint32_t id;
    struct bf_rpc *rpc;
    bool done;  /* completed: err says how */
    bool nomem; /* multi: a body could not be kept */
    int err;
    pthread_cond_t cond;
};

struct bf_conn {
    struct bf_link *link;
    uint64_t gen;
    int fd;
    pid_t pid;     /* exec: the server, the leader of its process group; 0: none */
    int pidfd;     /* -1: none */
    unsigned refs; /* atomic: the link's, the reader's, each bf_link_get's */

    unsigned char *area; /* BF_LINK_AREA bytes, shared with the server */
    uint64_t *used;      /* a bit per UNIT of the area */

    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; broadcast when area is freed or the state changes */
    enum conn_state state;
    bool published; /* it was the link's current connection (its end is logged) */
    bool reaping;   /* the reader reaps the server: nobody else kills it */
    bool kill_now;  /* broken by a hang or nonsense: no grace before the kill */
    char reason[REASON_MAX];
    struct pend *pending;
    uint32_t next_id;
    int64_t started_ns, broken_ns;
    pthread_t reader;
    pid_t owner;     /* the process that started it (its reader and server are that one's) */
    int exit_status; /* of the reaped server; -1: none */

    struct bf_conn *next_dead; /* the link's list of retired connections */
};

struct bf_link {
    bf_db *db; /* log lines */
    char *cmd; /* exec: the command; NULL for unix: */
    char *cwd; /* exec: the directory it runs in (current at the open) */
    struct sockaddr_un addr;
    unsigned hello_flags;
    unsigned timeout_ms;
    bf_link_reopen_fn reopen;
    void *arg;

    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast when a start ends */
    struct bf_conn *cur;
    struct bf_conn *dead; /* retired: their readers are joined, then they are freed */
    bool starting, closed;
    bool fresh; /* the next start is the mount's first in this process: no RESUME */
    uint64_t gen;
    unsigned quick; /* connections in a row that broke quickly */
    int64_t next_start_ns;
    bool down_logged;
};

static int64_t ms_ns(unsigned ms)
{
    return (int64_t)ms * 1000000;
}

/* ---- connections: references, breaking, closing ------------------------ */

static void conn_free(struct bf_conn *c)
{
    if (c->area)
        munmap(c->area, BF_LINK_AREA);
    free(c->used);
    if (c->fd >= 0)
        close(c->fd);
    if (c->pidfd >= 0)
        close(c->pidfd);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void bf_conn_put(struct bf_conn *c)
{
    if (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
        conn_free(c);
}

static void conn_ref(struct bf_conn *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

uint64_t bf_conn_gen(const struct bf_conn *c)
{
    return c->gen;
}

/* Complete p with err and take it off c->pending. Caller holds c->lock. */
static void pend_complete(struct bf_conn *c, struct pend *p, int err)
{
    struct pend **pp = &c->pending;
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    p->done = true;
    p->err = err;
    pthread_cond_signal(&p->cond);
}

/* Leave the UP state for `to` (BROKEN or CLOSING): every request in flight
 * fails with -EIO, the reader wakes (shutdown), a hung server is killed at
 * once (kill). Caller holds c->lock. Returns false when c was not UP. */
static bool conn_end(struct bf_conn *c, enum conn_state to, bool kill_now, const char *reason)
{
    if (c->state != CONN_UP)
        return false;
    c->state = to; /* UP -> BROKEN / CLOSING */
    c->broken_ns = bf_mono_ns();
    c->kill_now = kill_now;
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
    while (c->pending)
        pend_complete(c, c->pending, -EIO);
    pthread_cond_broadcast(&c->cond);
    if (kill_now && c->pid > 0 && !c->reaping)
        kill(-c->pid, SIGKILL); /* its group: the server and what it started */
    shutdown(c->fd, SHUT_RDWR);
    return true;
}

/* Break c with a formatted reason; kill_now for a hang or nonsense. */
static void conn_breakv(struct bf_conn *c, bool kill_now, const char *fmt, va_list ap)
{
    char reason[REASON_MAX];
    vsnprintf(reason, sizeof(reason), fmt, ap);
    pthread_mutex_lock(&c->lock);
    conn_end(c, CONN_BROKEN, kill_now, reason);
    pthread_mutex_unlock(&c->lock);
}

static void conn_break(struct bf_conn *c, bool kill_now, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_break(struct bf_conn *c, bool kill_now, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_breakv(c, kill_now, fmt, ap);
    va_end(ap);
}

void bf_conn_break(struct bf_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_breakv(c, true, fmt, ap);
    va_end(ap);
}

/* "exited with status 3" / "was killed by signal 9 (Killed)". */
static void status_str(int st, char *buf, size_t len)
{
    if (st < 0)
        snprintf(buf, len, "has not exited");
    else if (WIFEXITED(st))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, len, "ended with wait status %#x", st);
}

/* The reader's last act for an exec: server: give it `grace` ms to exit
 * (it has the end of the connection), then kill its process group and reap
 * it. */
static void conn_reap(struct bf_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int grace = c->state == CONN_CLOSING ? BF_LINK_EXIT_MS : c->kill_now ? 0 : 1000;
    c->reaping = true; /* nobody else kills it from now on */
    pthread_mutex_unlock(&c->lock);
    if (grace > 0 && c->pidfd >= 0) {
        struct pollfd p = { c->pidfd, POLLIN, 0 };
        while (poll(&p, 1, grace) < 0 && errno == EINTR)
            ;
    }
    /* The leader is not reaped yet, so its pid (the group's id) cannot have
     * been reused. */
    kill(-c->pid, SIGKILL);
    int st = -1;
    while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&c->lock);
    c->exit_status = st;
    pthread_mutex_unlock(&c->lock);
}

/* ---- the reader -------------------------------------------------------- */

/* Handle one received message. Returns false when it broke the
 * connection. */
static bool dispatch(struct bf_conn *c, const unsigned char *msg, size_t n)
{
    char reason[REASON_MAX], nb1[16], nb2[16];
    struct bf_rbuf r;
    struct bf_msghdr h;
    reason[0] = '\0';
    bf_wire_read(&r, msg, n);
    if (!bf_wire_hdr(&r, &h)) {
        conn_break(c, true, "the server sent a message of %zu bytes (shorter than a header)", n);
        return false;
    }
    if (!(h.op & BF_OP_REPLY)) {
        conn_break(c, true, "the server sent a request (%s)", bf_wire_op_name(h.op, nb1));
        return false;
    }
    const unsigned char *body = msg + BF_PROTO_HDR;
    size_t blen = n - BF_PROTO_HDR;
    unsigned op = h.op & ~(unsigned)BF_OP_REPLY;

    pthread_mutex_lock(&c->lock);
    struct pend *p = c->pending;
    while (p && p->id != h.id)
        p = p->next;
    struct bf_rpc *rpc = p ? p->rpc : NULL;
    if (!p) {
        snprintf(reason, sizeof(reason), "the server answered a request not in flight (%s, id %u)",
                 bf_wire_op_name(op, nb1), h.id);
    } else if (op != rpc->op) {
        snprintf(reason, sizeof(reason), "the server answered %s with a reply to %s",
                 bf_wire_op_name(rpc->op, nb1), bf_wire_op_name(op, nb2));
    } else if (h.flags & BF_MSG_ERROR) {
        int e = blen <= BF_PROTO_ERRNAME_MAX ? bf_errno_from_name((const char *)body, blen) : 0;
        if (e)
            pend_complete(c, p, -e);
        else
            snprintf(reason, sizeof(reason),
                     "the server answered %s with an unknown error \"%.*s\"",
                     bf_wire_op_name(op, nb1), (int)(blen < 40 ? blen : 40), (const char *)body);
    } else if ((h.flags & BF_MSG_MORE) && !rpc->multi) {
        snprintf(reason, sizeof(reason), "the server sent more than one reply to %s",
                 bf_wire_op_name(op, nb1));
    } else if (rpc->multi) {
        unsigned char *acc = realloc(rpc->acc, rpc->acc_len + blen + 1);
        if (acc) {
            rpc->acc = acc;
            if (blen)
                memcpy(acc + rpc->acc_len, body, blen);
            rpc->acc_len += blen;
        } else {
            p->nomem = true; /* read on to the last reply, then fail */
        }
        if (!(h.flags & BF_MSG_MORE))
            pend_complete(c, p, p->nomem ? -ENOMEM : 0);
    } else if (blen > rpc->rep_cap) {
        snprintf(reason, sizeof(reason), "the server answered %s with %zu bytes (at most %zu)",
                 bf_wire_op_name(op, nb1), blen, rpc->rep_cap);
    } else {
        if (blen)
            memcpy(rpc->rep, body, blen);
        rpc->rep_len = blen;
        pend_complete(c, p, 0);
    }
    if (reason[0])
        conn_end(c, CONN_BROKEN, true, reason);
    pthread_mutex_unlock(&c->lock);
    return reason[0] == '\0';
}

static void *reader_main(void *arg)
{
    struct bf_conn *c = arg;
    bf_db *db = c->link->db;
    unsigned char *buf = malloc(BF_PROTO_MSG_MAX);
    if (!buf)
        conn_break(c, true, "no memory for the reader");
    while (buf) {
        size_t n = 0;
        int r = bf_wire_recv(c->fd, buf, BF_PROTO_MSG_MAX, &n, NULL);
        if (r == -ENODATA) {
            conn_break(c, false, "the server closed the connection");
            break;
        }
        if (r == -EMSGSIZE || r == -EPROTO) {
            conn_break(c, true, "the server sent %s",
                       r == -EMSGSIZE ? "a message longer than 65536 bytes"
                                      : "a descriptor with a message");
            break;
        }
        if (r < 0) {
            conn_break(c, false, "cannot receive from the server (%s)", strerror(-r));
            break;
        }
        if (!dispatch(c, buf, n))
            break;
    }
    free(buf);
    if (c->pid > 0)
        conn_reap(c);
    /* One line for the end of a connection that served: why it broke, or
     * an unclean exit at close. */
    pthread_mutex_lock(&c->lock);
    char how[96] = "";
    if (c->pid > 0)
        status_str(c->exit_status, how, sizeof(how));
    if (c->published && c->state == CONN_BROKEN)
        bf_db_log(db, "block server failed: %s%s%s; requests fail with EIO until it is back",
                  c->reason, how[0] ? "; it " : "", how);
    else if (c->published && c->pid > 0 && c->exit_status != 0)
        bf_db_log(db, "block server %s at close", how);
    pthread_mutex_unlock(&c->lock);
    bf_conn_put(c);
    return NULL;
}

/* ---- requests ---------------------------------------------------------- */

/* " (file 3, block 7)" for log lines. */
static void about(const struct bf_rpc *rpc, char *buf, size_t len)
{
    buf[0] = '\0';
    if (rpc->file != UINT64_MAX && rpc->blk != UINT64_MAX)
        snprintf(buf, len, " (file %llu, block %llu)", (unsigned long long)rpc->file,
                 (unsigned long long)rpc->blk);
    else if (rpc->file != UINT64_MAX)
        snprintf(buf, len, " (file %llu)", (unsigned long long)rpc->file);
}

static struct timespec deadline_in(unsigned ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

static int cond_init_mono(pthread_cond_t *cond)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -ENOMEM;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int r = pthread_cond_init(cond, &ca) == 0 ? 0 : -ENOMEM;
    pthread_condattr_destroy(&ca);
    return r;
}

/* bf_conn_call, with descriptor passfd attached to the request (HELLO). */
static int conn_call(struct bf_conn *c, struct bf_rpc *rpc, int passfd)
{
    unsigned timeout = c->link->timeout_ms;
    unsigned char msg[BF_LINK_REQ_MAX];
    char nb[16], ab[64];
    struct pend p = { .rpc = rpc };
    struct bf_wbuf w;
    if (cond_init_mono(&p.cond) < 0)
        return -ENOMEM;
    rpc->rep_len = 0;
    rpc->acc = NULL;
    rpc->acc_len = 0;

    pthread_mutex_lock(&c->lock);
    if (c->state != CONN_UP) {
        pthread_mutex_unlock(&c->lock);
        pthread_cond_destroy(&p.cond);
        return -EIO;
    }
    for (bool taken = true; taken;) { /* an id no request in flight has */
        p.id = c->next_id++;
        taken = false;
        for (struct pend *q = c->pending; q && !taken; q = q->next)
            taken = q->id == p.id;
    }
    p.next = c->pending;
    c->pending = &p;
    pthread_mutex_unlock(&c->lock);

    bf_wire_start(&w, msg, sizeof(msg), rpc->op, 0, p.id);
    bf_wire_bytes(&w, rpc->body, rpc->len);
    BF_ASSERT(bf_wire_ok(&w));
    int r = bf_wire_send(c->fd, msg, w.len, passfd);
    if (r < 0) {
        about(rpc, ab, sizeof(ab));
        conn_break(c, r == -EAGAIN, "cannot send %s%s to the server (%s)",
                   bf_wire_op_name(rpc->op, nb), ab,
                   r == -EAGAIN ? "it reads nothing any more" : strerror(-r));
    }

    struct timespec until = deadline_in(timeout);
    pthread_mutex_lock(&c->lock);
    while (!p.done) {
        if (pthread_cond_timedwait(&p.cond, &c->lock, &until) == ETIMEDOUT && !p.done) {
            about(rpc, ab, sizeof(ab));
            char reason[REASON_MAX];
            snprintf(reason, sizeof(reason), "no answer to %s%s within %.3g s",
                     bf_wire_op_name(rpc->op, nb), ab, timeout / 1000.0);
            conn_end(c, CONN_BROKEN, true, reason); /* completes p */
        }
    }
    r = p.err;
    pthread_mutex_unlock(&c->lock);
    pthread_cond_destroy(&p.cond);
    if (r < 0 && rpc->multi) {
        free(rpc->acc);
        rpc->acc = NULL;
        rpc->acc_len = 0;
    }
    return r;
}

int bf_conn_call(struct bf_conn *c, struct bf_rpc *rpc)
{
    return conn_call(c, rpc, -1);
}

/* ---- the area ---------------------------------------------------------- */

/* Whether units [u, u + n) are free. Caller holds c->lock. */
static bool area_free_at(const struct bf_conn *c, size_t u, size_t n)
{
    if (n >= 64) {
        for (size_t w = u / 64; w < (u + n) / 64; w++)
            if (c->used[w])
                return false;
        return true;
    }
    uint64_t mask = (n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1)) << (u % 64);
    return (c->used[u / 64] & mask) == 0;
}

/* Mark units [u, u + n) used (on) or free. Caller holds c->lock. */
static void area_mark(struct bf_conn *c, size_t u, size_t n, bool on)
{
    for (size_t i = u; i < u + n; i++) {
        uint64_t bit = (uint64_t)1 << (i % 64);
        c->used[i / 64] = on ? c->used[i / 64] | bit : c->used[i / 64] & ~bit;
    }
}

void *bf_conn_area_get(struct bf_conn *c, uint32_t len, uint64_t *off)
{
    size_t n = len / UNIT, total = BF_LINK_AREA / UNIT;
    BF_ASSERT(len >= UNIT && (len & (len - 1)) == 0 && len <= BF_BLKSIZE_MAX);
    struct timespec until = deadline_in(c->link->timeout_ms);
    pthread_mutex_lock(&c->lock);
    while (c->state == CONN_UP) {
        for (size_t u = 0; u + n <= total; u += n) { /* lowest first: its pages stay warm */
            if (area_free_at(c, u, n)) {
                area_mark(c, u, n, true);
                pthread_mutex_unlock(&c->lock);
                *off = (uint64_t)u * UNIT;
                return c->area + *off;
            }
        }
        if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT)
            conn_end(c, CONN_BROKEN, true, "the shared area stayed full: requests hang");
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

void bf_conn_area_free(struct bf_conn *c, uint64_t off, uint32_t len)
{
    pthread_mutex_lock(&c->lock);
    area_mark(c, off / UNIT, len / UNIT, false);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* ---- starting a connection --------------------------------------------- */

/* Start COMMAND with sh -c in directory cwd, its own process group, stdin
 * /dev/null, stdout and stderr to ours, sock as fd 3 (BIGFILEFS_SERVER_FD),
 * default signals. Returns 0 and *pid, or -errno. */
static int spawn_server(const char *cmd, const char *cwd, int sock, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    int r, moved = -1;
    /* dup2 onto itself would leave close-on-exec set */
    if (sock == 3) {
        moved = fcntl(sock, F_DUPFD_CLOEXEC, 10);
        if (moved < 0)
            return -errno;
        sock = moved;
    }
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = calloc(nenv + 2, sizeof(*envp));
    if (!envp) {
        if (moved >= 0)
            close(moved);
        return -ENOMEM;
    }
    size_t k = 0;
    static const char fdvar[] = BF_PROTO_FD_ENV "=";
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], fdvar, sizeof(fdvar) - 1) != 0)
            envp[k++] = environ[i];
    envp[k++] = BF_PROTO_FD_ENV "=3";
    envp[k] = NULL;

    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    posix_spawn_file_actions_adddup2(&fa, sock, 3);
    posix_spawn_file_actions_addchdir_np(&fa, cwd);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&fa, 4);
#endif
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    char *argv[] = { "sh", "-c", (char *)cmd, NULL };
    r = -posix_spawn(pid, "/bin/sh", &fa, &at, argv, envp);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    if (moved >= 0)
        close(moved);
    return r;
}

/* Connect to the link's unix: socket within the timeout. Returns the
 * socket or -errno. */
static int connect_unix(struct bf_link *l)
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int r = connect(fd, (struct sockaddr *)&l->addr, sizeof(l->addr));
    if (r < 0 && (errno == EINPROGRESS || errno == EAGAIN)) {
        struct pollfd p = { fd, POLLOUT, 0 };
        int e = 0;
        socklen_t el = sizeof(e);
        r = poll(&p, 1, (int)l->timeout_ms);
        if (r == 0)
            errno = ETIMEDOUT;
        else if (r > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0)
            errno = e;
        r = r > 0 && e == 0 ? 0 : -1;
    }
    if (r < 0 || fcntl(fd, F_SETFL, 0) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

/* A new connection (not started): its area, its socket and, for exec:,
 * its server. Returns 0 or -errno with the reason in errbuf. */
static int conn_new(struct bf_link *l, struct bf_conn **out, int *memfd, char *errbuf,
                    size_t errlen)
{
    struct bf_conn *c = calloc(1, sizeof(*c));
    int r, sv[2] = { -1, -1 };
    *memfd = -1;
    if (!c)
        return -ENOMEM;
    c->link = l;
    c->fd = c->pidfd = -1;
    c->exit_status = -1;
    c->refs = 1; /* the link's */
    c->next_id = 1;
    c->owner = getpid();
    c->started_ns = bf_mono_ns();
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return -ENOMEM;
    }
    if ((r = cond_init_mono(&c->cond)) < 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return r;
    }
    c->used = calloc(BF_LINK_AREA / UNIT / 64, sizeof(uint64_t));
    if (!c->used) {
        r = -ENOMEM;
        goto fail;
    }
    *memfd = memfd_create("bigfilefs-area", MFD_CLOEXEC);
    if (*memfd < 0 || ftruncate(*memfd, (off_t)BF_LINK_AREA) < 0) {
        r = -errno;
        bf_errf(errbuf, errlen, "cannot make the shared area: %s", strerror(-r));
        goto fail;
    }
    c->area = mmap(NULL, BF_LINK_AREA, PROT_READ | PROT_WRITE, MAP_SHARED, *memfd, 0);
    if (c->area == MAP_FAILED) {
        c->area = NULL;
        r = -errno;
        bf_errf(errbuf, errlen, "cannot map the shared area: %s", strerror(-r));
        goto fail;
    }
    if (!l->cmd) {
        c->fd = connect_unix(l);
        if (c->fd < 0) {
            r = c->fd;
            bf_errf(errbuf, errlen, "cannot connect to the block server at %s: %s",
                    l->addr.sun_path, strerror(-r));
            goto fail;
        }
    } else {
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
            r = -errno;
            bf_errf(errbuf, errlen, "socketpair: %s", strerror(-r));
            goto fail;
        }
        c->fd = sv[0];
        r = spawn_server(l->cmd, l->cwd, sv[1], &c->pid);
        close(sv[1]);
        if (r < 0) {
            c->pid = 0;
            bf_errf(errbuf, errlen, "cannot start the block server: %s", strerror(-r));
            goto fail;
        }
        c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0); /* -1: reaped without grace */
    }
    struct timeval tv = { (time_t)(l->timeout_ms / 1000), (long)(l->timeout_ms % 1000) * 1000 };
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    *out = c;
    return 0;
fail:
    if (*memfd >= 0)
        close(*memfd);
    *memfd = -1;
    conn_free(c);
    return r;
}

/* Start c's reader thread (all signals blocked: the daemon's signal thread
 * takes them). */
static int reader_start(struct bf_conn *c)
{
    sigset_t all, old;
    sigfillset(&all);
    conn_ref(c); /* the reader's */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&c->reader, NULL, reader_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        __atomic_sub_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return -r;
}

/* Send HELLO (with the area's descriptor) and check the answer. Returns 0
 * or -errno with the reason in errbuf. */
static int conn_hello(struct bf_link *l, struct bf_conn *c, int memfd, bool resume, char *errbuf,
                      size_t errlen)
{
    unsigned char body[128], rep[BF_PROTO_MSG_MAX - BF_PROTO_HDR];
    static const char client[] = "bigfilefs " PACKAGE_VERSION;
    struct bf_wbuf w;
    struct bf_rbuf rr;
    bf_wire_start(&w, body, sizeof(body), 0, 0, 0);
    w.len = 0; /* a body: no header */
    bf_wire_bytes(&w, BF_PROTO_MAGIC, 4);
    bf_wire_u16(&w, BF_PROTO_VERSION);
    bf_wire_u16(&w, BF_PROTO_VERSION);
    bf_wire_u32(&w, l->hello_flags | (resume ? BF_HELLO_RESUME : 0));
    bf_wire_u64(&w, BF_LINK_AREA);
    bf_wire_str(&w, client, sizeof(client) - 1);
    struct bf_rpc rpc = { .op = BF_OP_HELLO,
                          .body = body,
                          .len = w.len,
                          .file = UINT64_MAX,
                          .blk = UINT64_MAX,
                          .rep = rep,
                          .rep_cap = sizeof(rep) };
    int r = conn_call(c, &rpc, memfd);
    if (r == -EBUSY) {
        bf_errf(errbuf, errlen, "the block server is serving another mount");
        return r;
    }
    if (r < 0) {
        pthread_mutex_lock(&c->lock);
        bool broke = c->state != CONN_UP;
        bf_errf(errbuf, errlen, "the block server %s HELLO: %s",
                broke ? "failed before answering" : "refused", broke ? c->reason : strerror(-r));
        pthread_mutex_unlock(&c->lock);
        return broke ? -EIO : r;
    }
    bf_wire_read(&rr, rep, rpc.rep_len);
    const void *magic = bf_wire_get_bytes(&rr, 4);
    uint16_t version = bf_wire_get_u16(&rr);
    bf_wire_get_u16(&rr);
    bf_wire_get_u32(&rr);
    char name[64];
    int e = bf_wire_get_cstr(&rr, name, sizeof(name));
    if (!magic || memcmp(magic, BF_PROTO_MAGIC, 4) != 0 || !bf_wire_done(&rr)) {
        bf_errf(errbuf, errlen, "the block server's answer to HELLO is not one of this protocol");
        return -EIO;
    }
    if (version != BF_PROTO_VERSION) {
        bf_errf(errbuf, errlen,
                "the block server speaks protocol version %u; this bigfilefs speaks version %u%s",
                version, BF_PROTO_VERSION,
                version > BF_PROTO_VERSION ? " (upgrade bigfilefs)" : " (upgrade the server)");
        return -EPROTONOSUPPORT;
    }
    if (e < 0)
        snprintf(name, sizeof(name), "(unnamed)");
    if (resume || c->pid)
        bf_db_log(l->db, "block server \"%s\" %s (pid %d), protocol version %u", name,
                  resume ? "started again" : "started", (int)c->pid, version);
    return 0;
}

/* Make and start a new connection: the server, HELLO, then (resume) the
 * engine's reopen. Returns 0 and *out (UP, the link's reference), or
 * -errno with the reason in errbuf (nothing left running). */
static int conn_start(struct bf_link *l, bool resume, struct bf_conn **out, char *errbuf,
                      size_t errlen)
{
    struct bf_conn *c = NULL;
    int memfd;
    int r = conn_new(l, &c, &memfd, errbuf, errlen);
    if (r < 0)
        return r;
    pthread_mutex_lock(&l->lock);
    c->gen = ++l->gen;
    pthread_mutex_unlock(&l->lock);
    r = reader_start(c);
    if (r < 0) {
        close(memfd);
        bf_errf(errbuf, errlen, "cannot start a thread: %s", strerror(-r));
        conn_break(c, true, "no reader");
        if (c->pid > 0) {
            kill(-c->pid, SIGKILL);
            waitpid(c->pid, NULL, 0);
        }
        bf_conn_put(c);
        return r;
    }
    r = conn_hello(l, c, memfd, resume, errbuf, errlen);
    close(memfd); /* the mapping keeps it; the server has its own */
    if (r == 0 && resume && l->reopen) {
        l->reopen(l->arg, c);
        pthread_mutex_lock(&c->lock);
        if (c->state != CONN_UP) {
            bf_errf(errbuf, errlen, "the block server failed while files were reopened: %s",
                    c->reason);
            r = -EIO;
        }
        pthread_mutex_unlock(&c->lock);
    }
    if (r == 0) {
        *out = c;
        return 0;
    }
    conn_break(c, true, "it failed to start");
    pthread_join(c->reader, NULL);
    if (c->exit_status != -1 && c->pid > 0) {
        char how[96];
        size_t n = strlen(errbuf ? errbuf : "");
        status_str(c->exit_status, how, sizeof(how));
        if (errbuf && n + 8 < errlen)
            snprintf(errbuf + n, errlen - n, " (it %s)", how);
    }
    bf_conn_put(c);
    return r;
}

/* ---- the link ---------------------------------------------------------- */

/* exec:COMMAND: the command, and the current directory it will run in
 * (the daemon changes to / when it detaches; the server restarts later).
 * Returns 0 or -errno (the reason in errbuf). */
static int link_exec_spec(struct bf_link *l, const char *spec, char *errbuf, size_t errlen)
{
    if (!spec[5]) {
        bf_errf(errbuf, errlen, "%s: no command after exec:", spec);
        return -EINVAL;
    }
    if (!(l->cwd = getcwd(NULL, 0))) {
        int r = -errno;
        bf_errf(errbuf, errlen, "%s: cannot find the current directory: %s", spec, strerror(-r));
        return r;
    }
    return (l->cmd = strdup(spec + 5)) ? 0 : -ENOMEM;
}

/* unix:PATH: the socket's address, a relative PATH made absolute (the
 * link connects again later, maybe from another directory). Returns 0 or
 * -errno (the reason in errbuf). */
static int link_unix_spec(struct bf_link *l, const char *spec, char *errbuf, size_t errlen)
{
    const char *path = spec + 5;
    char *cwd = NULL;
    int n;
    l->addr.sun_family = AF_UNIX;
    if (!path[0]) {
        bf_errf(errbuf, errlen, "%s: no path after unix:", spec);
        return -EINVAL;
    }
    if (path[0] != '/' && !(cwd = getcwd(NULL, 0))) {
        int r = -errno;
        bf_errf(errbuf, errlen, "%s: cannot find the current directory: %s", spec, strerror(-r));
        return r;
    }
    n = snprintf(l->addr.sun_path, sizeof(l->addr.sun_path), "%s%s%s", cwd ? cwd : "",
                 cwd ? "/" : "", path);
    free(cwd);
    if (n < 0 || (size_t)n >= sizeof(l->addr.sun_path)) {
        bf_errf(errbuf, errlen, "%s: the socket path is too long", spec);
        return -ENAMETOOLONG;
    }
    return 0;
}

int bf_link_open(bf_db *db, const char *spec, unsigned hello_flags, unsigned timeout_ms,
                 bf_link_reopen_fn reopen, void *arg, struct bf_link **out, char *errbuf,
                 size_t errlen)
{
    struct bf_link *l = calloc(1, sizeof(*l));
    char why[512] = "";
    int r;
    if (!l)
        return -ENOMEM;
    l->db = db;
    l->hello_flags = hello_flags;
    l->timeout_ms = timeout_ms;
    l->reopen = reopen;
    l->arg = arg;
    r = strncmp(spec, "exec:", 5) == 0 ? link_exec_spec(l, spec, errbuf, errlen)
                                       : link_unix_spec(l, spec, errbuf, errlen);
    if (r < 0) {
        free(l->cmd);
        free(l->cwd);
        free(l);
        return r;
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    r = conn_start(l, false, &l->cur, why, sizeof(why));
    int64_t until = bf_mono_ns() + ms_ns(BF_LINK_BUSY_WAIT_MS);
    while (r == -EBUSY && !l->cmd && bf_mono_ns() < until) {
        usleep(BF_LINK_BUSY_STEP_MS * 1000); /* the previous mount may have just ended */
        r = conn_start(l, false, &l->cur, why, sizeof(why));
    }
    if (r < 0) {
        bf_errf(errbuf, errlen, "%s: %s", spec, why);
        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
        free(l->cmd);
        free(l->cwd);
        free(l);
        return r;
    }
    l->cur->published = true;
    *out = l;
    return 0;
}

/* Join and free the retired connections whose reader is done (all: wait
 * for them). Caller holds l->lock, or is the only thread left. */
static void link_reap_dead(struct bf_link *l, bool all)
{
    for (struct bf_conn **pp = &l->dead; *pp;) {
        struct bf_conn *c = *pp;
        if (all ? pthread_join(c->reader, NULL) == 0 : pthread_tryjoin_np(c->reader, NULL) == 0) {
            *pp = c->next_dead;
            bf_conn_put(c);
        } else {
            pp = &c->next_dead;
        }
    }
}

/* The delay before a start after the quick-th quick failure in a row. */
static int64_t backoff_ns(unsigned quick)
{
    if (quick <= 1)
        return 0;
    int64_t ms = BF_LINK_BACKOFF_MS;
    for (unsigned i = 2; i < quick && ms < BF_LINK_BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms_ns(ms < BF_LINK_BACKOFF_MAX_MS ? (unsigned)ms : BF_LINK_BACKOFF_MAX_MS);
}

/* l->cur broke: retire it and schedule the next start. Caller holds
 * l->lock. */
static void link_retire(struct bf_link *l)
{
    struct bf_conn *c = l->cur;
    pthread_mutex_lock(&c->lock);
    int64_t lived = c->broken_ns - c->started_ns, broken = c->broken_ns;
    pthread_mutex_unlock(&c->lock);
    l->quick = lived < ms_ns(BF_LINK_STABLE_MS) ? l->quick + 1 : 1;
    l->next_start_ns = broken + backoff_ns(l->quick);
    l->down_logged = false;
    c->next_dead = l->dead;
    l->dead = c;
    l->cur = NULL;
    link_reap_dead(l, false);
}

/* The process forked since l's connections were started (the daemon's
 * fuse_daemonize runs after the database is open): their reader threads
 * and their servers belong to the parent. Kill the current server's
 * process group (the parent exits, nobody else will), leave those
 * connections as they are (their locks may have been held by threads that
 * do not exist here), and start anew. Caller holds l->lock. */
static void link_abandon_inherited(struct bf_link *l)
{
    if (l->cur && l->cur->pid > 0)
        kill(-l->cur->pid, SIGKILL);
    if (l->cur)
        close(l->cur->fd); /* this process's copy: the server sees the end */
    l->cur = NULL;
    l->dead = NULL;
    l->quick = 0;
    l->next_start_ns = 0;
    l->fresh = true; /* for this process, the mount starts now */
}

int bf_link_get(struct bf_link *l, struct bf_conn **out)
{
    pthread_mutex_lock(&l->lock);
    if (l->cur && l->cur->owner != getpid())
        link_abandon_inherited(l);
    for (;;) {
        if (l->closed)
            break;
        struct bf_conn *c = l->cur;
        if (c) {
            pthread_mutex_lock(&c->lock);
            bool up = c->state == CONN_UP;
            pthread_mutex_unlock(&c->lock);
            if (up) {
                conn_ref(c);
                pthread_mutex_unlock(&l->lock);
                *out = c;
                return 0;
            }
            link_retire(l);
        }
        if (l->starting) {
            pthread_cond_wait(&l->cond, &l->lock);
            continue;
        }
        bool resume = !l->fresh; /* a restart in the life of the mount */
        int64_t now = bf_mono_ns();
        if (now < l->next_start_ns) {
            if (!l->down_logged)
                bf_db_log(l->db,
                          "no block server: the next start in %.1f s; requests fail meanwhile",
                          (double)(l->next_start_ns - now) / 1e9);
            l->down_logged = true;
            break;
        }
        /* (none) -> starting */
        l->starting = true;
        pthread_mutex_unlock(&l->lock);
        char why[512] = "";
        int r = conn_start(l, resume, &c, why, sizeof(why));
        if (r < 0)
            bf_db_log(l->db, "cannot start the block server again: %s", why);
        pthread_mutex_lock(&l->lock);
        l->starting = false; /* starting -> UP / (none) */
        if (r == 0) {
            c->published = true;
            l->fresh = false;
            l->cur = c; /* a close that came meanwhile waited for this and takes it */
        } else {
            l->quick++;
            l->next_start_ns = bf_mono_ns() + backoff_ns(l->quick);
            l->down_logged = false;
        }
        pthread_cond_broadcast(&l->cond);
        if (r < 0)
            break;
    }
    pthread_mutex_unlock(&l->lock);
    return -EIO;
}

void bf_link_close(struct bf_link *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    if (l->cur && l->cur->owner != getpid())
        link_abandon_inherited(l);
    l->closed = true;
    while (l->starting)
        pthread_cond_wait(&l->cond, &l->lock);
    struct bf_conn *c = l->cur;
    l->cur = NULL;
    pthread_mutex_unlock(&l->lock);
    if (c) {
        pthread_mutex_lock(&c->lock);
        conn_end(c, CONN_CLOSING, false, "closed");
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->reader, NULL);
        bf_conn_put(c);
    }
    link_reap_dead(l, true);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    free(l->cmd);
    free(l->cwd);
    free(l);
}

pid_t bf_link_server_pid(struct bf_link *l)
{
    pthread_mutex_lock(&l->lock);
    pid_t pid = 0;
    if (l->cur) {
        pthread_mutex_lock(&l->cur->lock);
        pid = l->cur->state == CONN_UP ? l->cur->pid : 0;
        pthread_mutex_unlock(&l->cur->lock);
    }
    pthread_mutex_unlock(&l->lock);
    return pid;
}

uint64_t bf_link_starts(struct bf_link *l)
{
    pthread_mutex_lock(&l->lock);
    uint64_t n = l->gen;
    pthread_mutex_unlock(&l->lock);
    return n;
}
