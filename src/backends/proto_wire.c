/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the messages of the block server protocol (see
 * proto_wire.h and man/bigfilefs-protocol.7). */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backends/proto_wire.h"

/* ---- encoding --------------------------------------------------------- */

void bf_wire_start(struct bf_wbuf *w, void *buf, size_t cap, uint16_t op, uint16_t flags,
                   uint32_t id)
{
    w->buf = buf;
    w->len = 0;
    w->cap = cap;
    w->overflow = false;
    bf_wire_u16(w, op);
    bf_wire_u16(w, flags);
    bf_wire_u32(w, id);
}

void bf_wire_bytes(struct bf_wbuf *w, const void *p, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    if (n)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
}

void bf_wire_u16(struct bf_wbuf *w, uint16_t v)
{
    v = htole16(v);
    bf_wire_bytes(w, &v, sizeof(v));
}

void bf_wire_u32(struct bf_wbuf *w, uint32_t v)
{
    v = htole32(v);
    bf_wire_bytes(w, &v, sizeof(v));
}

void bf_wire_u64(struct bf_wbuf *w, uint64_t v)
{
    v = htole64(v);
    bf_wire_bytes(w, &v, sizeof(v));
}

void bf_wire_i64(struct bf_wbuf *w, int64_t v)
{
    bf_wire_u64(w, (uint64_t)v);
}

void bf_wire_str(struct bf_wbuf *w, const char *s, size_t n)
{
    if (n > UINT16_MAX) {
        w->overflow = true;
        return;
    }
    bf_wire_u16(w, (uint16_t)n);
    bf_wire_bytes(w, s, n);
}

void bf_wire_info(struct bf_wbuf *w, const struct bf_fileinfo *fi)
{
    bf_wire_u64(w, fi->id);
    bf_wire_u64(w, fi->size);
    bf_wire_i64(w, fi->mtime_ns);
    bf_wire_i64(w, fi->ctime_ns);
    bf_wire_u32(w, fi->blksize);
    bf_wire_u32(w, fi->mode);
    bf_wire_u32(w, fi->uid);
    bf_wire_u32(w, fi->gid);
    bf_wire_str(w, fi->name, strlen(fi->name));
}

void bf_wire_set_flags(struct bf_wbuf *w, uint16_t flags)
{
    uint16_t v = htole16(flags);
    if (w->cap >= 4)
        memcpy(w->buf + 2, &v, sizeof(v));
}

/* ---- decoding --------------------------------------------------------- */

const void *bf_wire_get_bytes(struct bf_rbuf *r, size_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = true;
        return NULL;
    }
    const void *p = r->p + r->pos;
    r->pos += n;
    return p;
}

uint16_t bf_wire_get_u16(struct bf_rbuf *r)
{
    uint16_t v = 0;
    const void *p = bf_wire_get_bytes(r, sizeof(v));
    if (p)
        memcpy(&v, p, sizeof(v));
    return le16toh(v);
}

uint32_t bf_wire_get_u32(struct bf_rbuf *r)
{
    uint32_t v = 0;
    const void *p = bf_wire_get_bytes(r, sizeof(v));
    if (p)
        memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

uint64_t bf_wire_get_u64(struct bf_rbuf *r)
{
    uint64_t v = 0;
    const void *p = bf_wire_get_bytes(r, sizeof(v));
    if (p)
        memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

int64_t bf_wire_get_i64(struct bf_rbuf *r)
{
    return (int64_t)bf_wire_get_u64(r);
}

bool bf_wire_hdr(struct bf_rbuf *r, struct bf_msghdr *h)
{
    h->op = bf_wire_get_u16(r);
    h->flags = bf_wire_get_u16(r);
    h->id = bf_wire_get_u32(r);
    return bf_wire_good(r);
}

const char *bf_wire_get_str(struct bf_rbuf *r, size_t *n)
{
    *n = bf_wire_get_u16(r);
    return bf_wire_get_bytes(r, *n);
}

int bf_wire_get_cstr(struct bf_rbuf *r, char *out, size_t cap)
{
    size_t n;
    const char *s = bf_wire_get_str(r, &n);
    out[0] = '\0';
    if (!s)
        return -EPROTO;
    if (n >= cap)
        return -ENAMETOOLONG;
    if (memchr(s, '\0', n))
        return -EILSEQ;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int bf_wire_get_info(struct bf_rbuf *r, struct bf_fileinfo *fi)
{
    memset(fi, 0, sizeof(*fi));
    fi->id = bf_wire_get_u64(r);
    fi->size = bf_wire_get_u64(r);
    fi->mtime_ns = bf_wire_get_i64(r);
    fi->ctime_ns = bf_wire_get_i64(r);
    fi->blksize = bf_wire_get_u32(r);
    fi->mode = bf_wire_get_u32(r) & 07777;
    fi->uid = bf_wire_get_u32(r);
    fi->gid = bf_wire_get_u32(r);
    int e = bf_wire_get_cstr(r, fi->name, sizeof(fi->name));
    return bf_wire_good(r) ? e : -EPROTO;
}

/* ---- errno names ------------------------------------------------------ */

struct errname {
    const char *name;
    int err;
};

#define E(x)  \
    {         \
#x, x \
    }
static const struct errname errnames[] = {
    E(EPERM),
    E(ENOENT),
    E(ESRCH),
    E(EINTR),
    E(EIO),
    E(ENXIO),
    E(E2BIG),
    E(ENOEXEC),
    E(EBADF),
    E(ECHILD),
    E(EAGAIN),
    E(ENOMEM),
    E(EACCES),
    E(EFAULT),
    E(ENOTBLK),
    E(EBUSY),
    E(EEXIST),
    E(EXDEV),
    E(ENODEV),
    E(ENOTDIR),
    E(EISDIR),
    E(EINVAL),
    E(ENFILE),
    E(EMFILE),
    E(ENOTTY),
    E(ETXTBSY),
    E(EFBIG),
    E(ENOSPC),
    E(ESPIPE),
    E(EROFS),
    E(EMLINK),
    E(EPIPE),
    E(EDOM),
    E(ERANGE),
    E(EDEADLK),
    E(ENAMETOOLONG),
    E(ENOLCK),
    E(ENOSYS),
    E(ENOTEMPTY),
    E(ELOOP),
    E(ENOMSG),
    E(EIDRM),
    E(ECHRNG),
    E(EL2NSYNC),
    E(EL3HLT),
    E(EL3RST),
    E(ELNRNG),
    E(EUNATCH),
    E(ENOCSI),
    E(EL2HLT),
    E(EBADE),
    E(EBADR),
    E(EXFULL),
    E(ENOANO),
    E(EBADRQC),
    E(EBADSLT),
    E(EBFONT),
    E(ENOSTR),
    E(ENODATA),
    E(ETIME),
    E(ENOSR),
    E(ENONET),
    E(ENOPKG),
    E(EREMOTE),
    E(ENOLINK),
    E(EADV),
    E(ESRMNT),
    E(ECOMM),
    E(EPROTO),
    E(EMULTIHOP),
    E(EDOTDOT),
    E(EBADMSG),
    E(EOVERFLOW),
    E(ENOTUNIQ),
    E(EBADFD),
    E(EREMCHG),
    E(ELIBACC),
    E(ELIBBAD),
    E(ELIBSCN),
    E(ELIBMAX),
    E(ELIBEXEC),
    E(EILSEQ),
    E(ERESTART),
    E(ESTRPIPE),
    E(EUSERS),
    E(ENOTSOCK),
    E(EDESTADDRREQ),
    E(EMSGSIZE),
    E(EPROTOTYPE),
    E(ENOPROTOOPT),
    E(EPROTONOSUPPORT),
    E(ESOCKTNOSUPPORT),
    E(EOPNOTSUPP),
    E(EPFNOSUPPORT),
    E(EAFNOSUPPORT),
    E(EADDRINUSE),
    E(EADDRNOTAVAIL),
    E(ENETDOWN),
    E(ENETUNREACH),
    E(ENETRESET),
    E(ECONNABORTED),
    E(ECONNRESET),
    E(ENOBUFS),
    E(EISCONN),
    E(ENOTCONN),
    E(ESHUTDOWN),
    E(ETOOMANYREFS),
    E(ETIMEDOUT),
    E(ECONNREFUSED),
    E(EHOSTDOWN),
    E(EHOSTUNREACH),
    E(EALREADY),
    E(EINPROGRESS),
    E(ESTALE),
    E(EUCLEAN),
    E(ENOTNAM),
    E(ENAVAIL),
    E(EISNAM),
    E(EREMOTEIO),
    E(EDQUOT),
    E(ENOMEDIUM),
    E(EMEDIUMTYPE),
    E(ECANCELED),
    E(ENOKEY),
    E(EKEYEXPIRED),
    E(EKEYREVOKED),
    E(EKEYREJECTED),
    E(EOWNERDEAD),
    E(ENOTRECOVERABLE),
    E(ERFKILL),
    E(EHWPOISON),
    /* aliases: names only (bf_errno_name finds the canonical one first) */
    E(EWOULDBLOCK),
    E(EDEADLOCK),
    E(ENOTSUP),
};
#undef E

const char *bf_errno_name(int err)
{
    for (size_t i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
        if (errnames[i].err == err)
            return errnames[i].name;
    return NULL;
}

int bf_errno_from_name(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
        if (strlen(errnames[i].name) == n && memcmp(errnames[i].name, name, n) == 0)
            return errnames[i].err;
    return 0;
}

const char *bf_wire_op_name(unsigned op, char buf[16])
{
    static const char *const names[] = {
        [BF_OP_HELLO] = "HELLO",     [BF_OP_LIST] = "LIST",       [BF_OP_LOOKUP] = "LOOKUP",
        [BF_OP_GETINFO] = "GETINFO", [BF_OP_CREATE] = "CREATE",   [BF_OP_UNLINK] = "UNLINK",
        [BF_OP_RENAME] = "RENAME",   [BF_OP_SETATTR] = "SETATTR", [BF_OP_SETBLKSIZE] = "SETBLKSIZE",
        [BF_OP_OPEN] = "OPEN",       [BF_OP_CLOSE] = "CLOSE",     [BF_OP_LOAD] = "LOAD",
        [BF_OP_BEGIN] = "BEGIN",     [BF_OP_STORE] = "STORE",     [BF_OP_TRUNCATE] = "TRUNCATE",
        [BF_OP_COMMIT] = "COMMIT",   [BF_OP_ABORT] = "ABORT",     [BF_OP_SEEKDATA] = "SEEKDATA",
        [BF_OP_STORED] = "STORED",
    };
    if (op >= 1 && op <= BF_OP_MAX)
        return names[op];
    snprintf(buf, 16, "op %u", op & 0xffff);
    return buf;
}

/* ---- one message on a SOCK_SEQPACKET socket --------------------------- */

int bf_wire_send(int fd, const void *msg, size_t len, int passfd)
{
    struct iovec iov = { (void *)msg, len };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (passfd >= 0) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &passfd, sizeof(int));
    }
    for (;;) {
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n >= 0)
            return (size_t)n == len ? 0 : -EMSGSIZE;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* Close every descriptor that came in the control data of mh. */
static void close_passed(struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int pfd;
            memcpy(&pfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            close(pfd);
        }
    }
}

int bf_wire_recv(int fd, void *buf, size_t cap, size_t *len, int *passfd)
{
    struct iovec iov = { buf, cap };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 4)];
    } ctl;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n;
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof(ctl.buf);
    if (passfd)
        *passfd = -1;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (n == 0 && mh.msg_controllen == 0)
        return -ENODATA; /* SEQPACKET: 0 bytes with nothing else is the end */
    int r = 0;
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
        r = -EMSGSIZE;
    /* Take one descriptor if the caller wants it; close any other. */
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (r == 0 && passfd && c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int)) && !CMSG_NXTHDR(&mh, c)) {
        memcpy(passfd, CMSG_DATA(c), sizeof(int));
    } else if (c) {
        close_passed(&mh);
        if (r == 0)
            r = -EPROTO;
    }
    *len = (size_t)n;
    return r;
}
