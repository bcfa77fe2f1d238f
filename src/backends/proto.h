/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the block server engine.
 *
 * A database whose files and blocks a program of the user's keeps: a
 * *block server* that speaks the protocol of man/bigfilefs-protocol.7
 * ("exec:COMMAND": started as the session's child; "unix:PATH": one that
 * listens there). The server keeps names, metadata and blocks, and makes
 * each store transaction atomic; this engine keeps what the protocol
 * leaves out — sessions, serials and the commit log — for the one session
 * a server serves: it numbers the session's commits itself (every one is
 * the session's own), and loads answer the server's current content
 * (every version's serial is 0, as bigfile.h allows a store that is never
 * shared). So BF_DB_SHARED is refused; BF_DB_RDONLY is told to the server
 * (HELLO); BF_DB_CREATE means nothing.
 *
 * The link (proto_link.h) carries the requests, several at once from
 * several threads (loads of different blocks run in parallel when the
 * server answers out of order), and survives the server: a crash, a hang
 * past opt.timeout_ms or a reply that breaks the protocol fails the
 * requests in flight with -EIO, and the next request starts the server
 * again (with backoff), reopening the files the session has open. A
 * transaction open when its connection broke is lost: its stores and its
 * commit fail with -EIO (the core keeps every change dirty), its abort
 * just forgets it.
 *
 * next_stored and stored_blocks ask the server (SEEKDATA, STORED); a
 * server that does not know which blocks it stores answers ENOSYS, and
 * then every block below the committed size counts as stored.
 */
#ifndef BIGFILEFS_BACKENDS_PROTO_H
#define BIGFILEFS_BACKENDS_PROTO_H

#include <stdint.h>
#include <sys/types.h>

#include "backend.h"

/* Open a session on the block server of spec ("exec:COMMAND" or
 * "unix:PATH"); see bf_db_open_ex for flags, options and the error
 * reporting. Errors: -EINVAL (BF_DB_SHARED, a bad spec), those of
 * bf_link_open (proto_link.h: -EPROTONOSUPPORT, -EBUSY, -ETIMEDOUT, -EIO,
 * -ENOENT, -ECONNREFUSED ...), -ENOMEM. */
int bf_proto_open(const char *spec, unsigned flags, const struct bf_db_options *opt, bf_db **out,
                  char *errbuf, size_t errlen);

/* Return nonzero when db is a block server session. */
int bf_db_is_proto(const bf_db *db);

/* For tests: the pid of the exec: server running now (0: none runs, or
 * db is no block server session), and how many connections to the server
 * were started so far (1 after the open). */
pid_t bf_proto_server_pid(bf_db *db);
uint64_t bf_proto_starts(bf_db *db);

#endif /* BIGFILEFS_BACKENDS_PROTO_H */
