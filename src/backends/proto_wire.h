/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the messages of the block server protocol.
 *
 * The protocol is specified in man/bigfilefs-protocol.7; this is its wire
 * format, shared by the engine (proto.c, proto_link.c) and the block
 * server of the tests (tests/proto/blockd.c): the header, the operations,
 * little-endian fields packed with no padding, strings as a u16 length and
 * bytes, the fileinfo record, errno names, and sending and receiving one
 * message (with a descriptor) on a SOCK_SEQPACKET socket.
 *
 * Encoding writes into a caller's buffer and remembers an overflow;
 * decoding reads from a received message and remembers a short or
 * malformed one: a caller checks once at the end (bf_wire_ok,
 * bf_wire_done) instead of after every field. Pure functions but for the
 * socket calls; no locks, no global state.
 */
#ifndef BIGFILEFS_BACKENDS_PROTO_WIRE_H
#define BIGFILEFS_BACKENDS_PROTO_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h" /* struct bf_fileinfo */

#define BF_PROTO_VERSION 1      /* the version this bigfilefs speaks */
#define BF_PROTO_MAGIC "BFSP"   /* opens HELLO and its reply */
#define BF_PROTO_MSG_MAX 65536  /* bytes of one message, header included */
#define BF_PROTO_HDR 8          /* bytes of the header */
#define BF_PROTO_ERRNAME_MAX 31 /* bytes of an errno name */
#define BF_PROTO_FD_ENV "BIGFILEFS_SERVER_FD"

/* Operations (the header's op; a reply's is op | BF_OP_REPLY). */
enum bf_proto_op {
    BF_OP_HELLO = 1,
    BF_OP_LIST = 2,
    BF_OP_LOOKUP = 3,
    BF_OP_GETINFO = 4,
    BF_OP_CREATE = 5,
    BF_OP_UNLINK = 6,
    BF_OP_RENAME = 7,
    BF_OP_SETATTR = 8,
    BF_OP_SETBLKSIZE = 9,
    BF_OP_OPEN = 10,
    BF_OP_CLOSE = 11,
    BF_OP_LOAD = 12,
    BF_OP_BEGIN = 13,
    BF_OP_STORE = 14,
    BF_OP_TRUNCATE = 15,
    BF_OP_COMMIT = 16,
    BF_OP_ABORT = 17,
    BF_OP_SEEKDATA = 18,
    BF_OP_STORED = 19,
    BF_OP_MAX = 19,
    BF_OP_REPLY = 0x8000,
};

/* Header flags of a reply. */
enum {
    BF_MSG_ERROR = 1 << 0, /* the body is an errno name */
    BF_MSG_MORE = 1 << 1,  /* LIST: another reply to this request follows */
};

/* Flags of the operations' bodies. */
enum {
    BF_HELLO_RESUME = 1 << 0, /* a reconnection in the life of the same mount */
    BF_HELLO_RDONLY = 1 << 1, /* a read-only mount */
    BF_LOAD_HOLE = 1 << 0,    /* LOAD reply: the block reads as zeros (area untouched) */
    BF_STORE_HOLE = 1 << 0,   /* STORE: the new content is all zeros (area not to be read) */
    BF_COMMIT_SIZE = 1 << 0,  /* COMMIT: set the committed size */
    BF_COMMIT_OVER = 1 << 1,  /* COMMIT: the user asked to overwrite */
    BF_SET_MODE = 1 << 0,     /* SETATTR: which fields to set */
    BF_SET_UID = 1 << 1,
    BF_SET_GID = 1 << 2,
    BF_SET_MTIME = 1 << 3,
};

/* The header. */
struct bf_msghdr {
    uint16_t op, flags;
    uint32_t id;
};

/* ---- encoding --------------------------------------------------------- */

/* A message being written into buf[0, cap). */
struct bf_wbuf {
    unsigned char *buf;
    size_t len, cap;
    bool overflow; /* a field did not fit: the message is unusable */
};

/* Start a message in buf (cap bytes, at most BF_PROTO_MSG_MAX) with its
 * header. */
void bf_wire_start(struct bf_wbuf *w, void *buf, size_t cap, uint16_t op, uint16_t flags,
                   uint32_t id);
void bf_wire_u16(struct bf_wbuf *w, uint16_t v);
void bf_wire_u32(struct bf_wbuf *w, uint32_t v);
void bf_wire_u64(struct bf_wbuf *w, uint64_t v);
void bf_wire_i64(struct bf_wbuf *w, int64_t v);
void bf_wire_bytes(struct bf_wbuf *w, const void *p, size_t n);
/* A str: u16 length (n at most 65535), then the bytes. */
void bf_wire_str(struct bf_wbuf *w, const char *s, size_t n);
void bf_wire_info(struct bf_wbuf *w, const struct bf_fileinfo *fi);
/* Patch the header's flags of a started message. */
void bf_wire_set_flags(struct bf_wbuf *w, uint16_t flags);

/* Whether everything fitted. */
static inline bool bf_wire_ok(const struct bf_wbuf *w)
{
    return !w->overflow;
}

/* ---- decoding --------------------------------------------------------- */

/* A received message (or a body) being read. */
struct bf_rbuf {
    const unsigned char *p;
    size_t len, pos;
    bool bad; /* a field ran past the end, or was malformed */
};

static inline void bf_wire_read(struct bf_rbuf *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->bad = false;
}

/* Read the header of a whole message (r starts at the message); false when
 * it is shorter than a header. */
bool bf_wire_hdr(struct bf_rbuf *r, struct bf_msghdr *h);
uint16_t bf_wire_get_u16(struct bf_rbuf *r);
uint32_t bf_wire_get_u32(struct bf_rbuf *r);
uint64_t bf_wire_get_u64(struct bf_rbuf *r);
int64_t bf_wire_get_i64(struct bf_rbuf *r);
/* n bytes: a pointer into the message (NULL when short). */
const void *bf_wire_get_bytes(struct bf_rbuf *r, size_t n);
/* A str: a pointer into the message and its length (not NUL-terminated;
 * NULL when short). */
const char *bf_wire_get_str(struct bf_rbuf *r, size_t *n);

/* A str as a C string into out (cap bytes with the NUL): 0; -ENAMETOOLONG
 * when it does not fit, -EILSEQ when it holds a NUL byte (r stays good:
 * the caller decides); a short message marks r bad (-EPROTO). */
int bf_wire_get_cstr(struct bf_rbuf *r, char *out, size_t cap);

/* A fileinfo into *fi: 0, or -ENAMETOOLONG / -EILSEQ for a name that a
 * bf_fileinfo cannot hold (the rest is read: r stays good), -EPROTO when
 * the record is malformed (r bad). The mode is masked to 07777. */
int bf_wire_get_info(struct bf_rbuf *r, struct bf_fileinfo *fi);

/* Whether everything read so far was there. */
static inline bool bf_wire_good(const struct bf_rbuf *r)
{
    return !r->bad;
}

/* Whether the message was read exactly to its end. */
static inline bool bf_wire_done(const struct bf_rbuf *r)
{
    return !r->bad && r->pos == r->len;
}

/* ---- errno names ------------------------------------------------------ */

/* The name of errno value err (> 0), e.g. "ENOENT"; NULL for a value
 * without one. */
const char *bf_errno_name(int err);

/* The errno value of a name of n bytes (aliases such as EWOULDBLOCK and
 * ENOTSUP too); 0 for an unknown name. */
int bf_errno_from_name(const char *name, size_t n);

/* The name of an operation, for log lines ("LOAD"; "op 99" style for an
 * unknown one goes through buf, which must hold 16 bytes). */
const char *bf_wire_op_name(unsigned op, char buf[16]);

/* ---- one message on a SOCK_SEQPACKET socket --------------------------- */

/* Send msg (len bytes) whole, with descriptor passfd attached (-1: none);
 * never raises SIGPIPE. Returns 0, or -errno (-EPIPE, -ECONNRESET: the
 * peer is gone; -EAGAIN: the socket's send timeout passed). */
int bf_wire_send(int fd, const void *msg, size_t len, int passfd);

/* Receive one message into buf (cap bytes); *len its length, *passfd a
 * descriptor that came with it (close-on-exec; -1: none; pass NULL to
 * refuse any: one that comes is closed and the message is -EPROTO).
 * Returns 0; -ENODATA at the end of the connection; -EMSGSIZE for a
 * message longer than cap (or a truncated descriptor list); -errno. */
int bf_wire_recv(int fd, void *buf, size_t cap, size_t *len, int *passfd);

#endif /* BIGFILEFS_BACKENDS_PROTO_WIRE_H */
