/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the link to a block server (man/bigfilefs-protocol.7).
 *
 * A link is the session's way to one block server: "exec:COMMAND" (a child
 * process the link starts, and starts again) or "unix:PATH" (a server that
 * runs on its own, which the link connects to, and again). Over its life a
 * link has a sequence of *connections*, each a SOCK_SEQPACKET socket, a
 * shared area (a memfd both sides map) and, for exec:, a server process;
 * each connection has a number (its generation, 1, 2, ...). The engine
 * (proto.c) sends requests on the current connection; several threads may
 * have requests in flight at once on it: a reader thread per connection
 * receives the replies, in any order, and hands each to the thread that
 * waits for it (by the request's id).
 *
 * A connection breaks when the server closes it or dies, does not answer a
 * request within the timeout, or sends what the protocol does not allow
 * (bf_conn_break for what the engine finds wrong in a reply body). Then
 * every request in flight on it fails with -EIO, one log line says why, an
 * exec: server's process group is killed and reaped (its exit status
 * logged), and the next bf_link_get starts a new connection: HELLO with
 * RESUME, then the engine's reopen callback. Quick failures back off: the
 * first restart is immediate; after a connection that broke within
 * BF_LINK_STABLE_MS of its start, the next waits BF_LINK_BACKOFF_MS,
 * doubling up to BF_LINK_BACKOFF_MAX_MS, and bf_link_get fails at once
 * (-EIO) meanwhile.
 *
 * States of a connection (c->state, changed under c->lock):
 *   UP      --reader: end of connection or error, a waiter's timeout,
 *             bf_conn_break-->                              BROKEN
 *   UP      --bf_link_close-->                              CLOSING
 *   BROKEN, CLOSING: no request is sent any more; the reader thread ends,
 *   kills the process group (CLOSING: after the server had
 *   BF_LINK_EXIT_MS to exit by itself) and reaps the server; the last
 *   reference frees the connection (its area unmapped).
 * States of the link (under l->lock): no current connection or a broken
 * one (a start is due, maybe after the backoff); `starting` (one thread
 * starts a connection, the others wait for it); a current connection UP;
 * closed.
 *
 * A process that forks after the link's open (the daemon daemonizes once
 * the database is open) finds in its child a connection whose reader
 * thread and server are the parent's: its first bf_link_get there kills
 * that server's process group and starts a connection of its own (HELLO
 * without RESUME: for the server, the mount starts then).
 *
 * Locks: l->lock, then c->lock; both leaves for the rest of bigfilefs
 * (never held across a send, a wait for a reply, a callback, a start or a
 * reap; waits on c->lock are on condition variables). The engine's lock is
 * never held across a link call.
 */
#ifndef BIGFILEFS_BACKENDS_PROTO_LINK_H
#define BIGFILEFS_BACKENDS_PROTO_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backends/engine.h"

#define BF_LINK_STABLE_MS 30000      /* a connection that lived less broke quickly */
#define BF_LINK_BACKOFF_MS 1000      /* the wait after the second quick failure */
#define BF_LINK_BACKOFF_MAX_MS 60000 /* ... doubling up to this */
#define BF_LINK_EXIT_MS 5000         /* at close: how long a server may take to exit */
/* At open, a unix: server that answers EBUSY is asked again for this long:
 * it may still be serving a mount that has just ended (it has not read the
 * end of that connection yet), as after an unmount and a mount at once. */
#define BF_LINK_BUSY_WAIT_MS 2000
#define BF_LINK_BUSY_STEP_MS 20
/* The shared area: room for two blocks of the largest size at once (its
 * pages are allocated only where requests use it, lowest offsets first). */
#define BF_LINK_AREA ((uint64_t)2 * BF_BLKSIZE_MAX)

struct bf_link;
struct bf_conn;

/* One request and its reply. */
struct bf_rpc {
    uint16_t op;        /* BF_OP_* */
    const void *body;   /* the request's body */
    size_t len;         /* its length (it must fit in BF_LINK_REQ_MAX with the header) */
    uint64_t file, blk; /* what it is about, for log lines (UINT64_MAX: nothing) */
    void *rep;          /* the reply's body goes here ... */
    size_t rep_cap;     /* ... at most this long (longer: the connection breaks) */
    size_t rep_len;     /* out: its length */
    bool multi;         /* LIST: replies with MORE are allowed; every body is
                            appended to acc */
    unsigned char *acc; /* out (multi): the bodies, malloc'd: the caller frees it */
    size_t acc_len;
};

#define BF_LINK_REQ_MAX 1024 /* bytes of a request, header included */

/* What the engine does after a new connection's HELLO, before anything
 * else uses it (reopen its files). A connection that breaks meanwhile
 * makes the start fail. */
typedef void (*bf_link_reopen_fn)(void *arg, struct bf_conn *c);

/* Start the link for spec ("exec:COMMAND" or "unix:PATH") and its first
 * connection (HELLO without RESUME; hello_flags: BF_HELLO_RDONLY). COMMAND
 * runs, every time it is started, in the directory current now; a
 * relative PATH is taken from the directory current now.
 * timeout_ms bounds every request (and the start with its HELLO). db is for
 * log lines only. On failure returns a negative errno with a one-line
 * reason in errbuf: -EINVAL (a bad spec), -ENAMETOOLONG (a socket path too
 * long), -EPROTONOSUPPORT (the server speaks another protocol version:
 * both are named), -EBUSY (the server serves another mount), -ETIMEDOUT
 * (no answer to HELLO), -EIO (the server exited or broke the protocol),
 * -ENOENT / -ECONNREFUSED / -EACCES (unix: cannot connect), -ENOMEM, the
 * spawn's errno; nothing is left running. */
int bf_link_open(bf_db *db, const char *spec, unsigned hello_flags, unsigned timeout_ms,
                 bf_link_reopen_fn reopen, void *arg, struct bf_link **out, char *errbuf,
                 size_t errlen);

/* Close the current connection (the server gets the end of it, and
 * BF_LINK_EXIT_MS to exit before its process group is killed), wait for
 * every reader thread, free the link. No request may be in flight. NULL is
 * a no-op. */
void bf_link_close(struct bf_link *l);

/* A reference to the current connection, UP: started now if there is none
 * (or it broke) and the backoff allows, which may take up to the timeout;
 * while another thread starts one, wait for it. Returns 0, or -EIO (no
 * server: the reason is logged). bf_conn_put drops the reference. */
int bf_link_get(struct bf_link *l, struct bf_conn **out);
void bf_conn_put(struct bf_conn *c);

/* The connection's generation: 1 for the link's first, then 2, ... */
uint64_t bf_conn_gen(const struct bf_conn *c);

/* Send rpc on c and wait for its reply (at most the timeout). Returns 0;
 * the negative errno of an error reply (by its name); -EIO when the
 * connection broke before the reply (or breaks now: no answer in time, a
 * reply that breaks the protocol); -ENOMEM. */
int bf_conn_call(struct bf_conn *c, struct bf_rpc *rpc);

/* Break c (if it is UP) because a reply made no sense: fmt says why, for
 * the log line. Requests in flight fail with -EIO. */
void bf_conn_break(struct bf_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A range of len bytes (a power of two >= 4096) of c's area, aligned to
 * len: *off its offset, the return its address; NULL when c broke (or the
 * area stayed full for the timeout: then c breaks). bf_conn_area_free gives
 * it back once the request that named it has its reply (or failed). */
void *bf_conn_area_get(struct bf_conn *c, uint32_t len, uint64_t *off);
void bf_conn_area_free(struct bf_conn *c, uint64_t off, uint32_t len);

/* For tests: the current server's pid (exec: only; 0 when none runs) and
 * the number of connections started so far. */
pid_t bf_link_server_pid(struct bf_link *l);
uint64_t bf_link_starts(struct bf_link *l);

#endif /* BIGFILEFS_BACKENDS_PROTO_LINK_H */
