/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the changed blocks of a commit (ranges.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backends/ranges.h"
#include "util/debug.h"

/* Append the range [start, start + count). -ENOMEM (nothing changed). */
static int push(struct bf_rangebuf *rb, uint64_t start, uint64_t count)
{
    if (rb->n == rb->cap) {
        size_t cap = rb->cap ? 2 * rb->cap : 8;
        struct bf_blkrange *v = realloc(rb->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        rb->v = v;
        rb->cap = cap;
    }
    rb->v[rb->n++] = (struct bf_blkrange){ start, count };
    return 0;
}

int bf_ranges_add(struct bf_rangebuf *rb, uint64_t blk)
{
    if (rb->n) {
        struct bf_blkrange *last = &rb->v[rb->n - 1];
        BF_ASSERT(blk >= last->start + last->count);
        if (blk == last->start + last->count) {
            last->count++;
            return 0;
        }
    }
    return push(rb, blk, 1);
}

void bf_ranges_free(struct bf_rangebuf *rb)
{
    free(rb->v);
    rb->v = NULL;
    rb->n = rb->cap = 0;
}

static unsigned char *put_varint(unsigned char *p, uint64_t x)
{
    while (x >= 0x80) {
        *p++ = (unsigned char)(x | 0x80);
        x >>= 7;
    }
    *p++ = (unsigned char)x;
    return p;
}

int bf_ranges_encode(const struct bf_blkrange *v, size_t n, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (n == 0)
        return 0;
    unsigned char *buf = malloc(n * 20), *p = buf; /* 10 bytes per varint at most */
    if (!buf)
        return -ENOMEM;
    uint64_t end = 0;
    for (size_t i = 0; i < n; i++) {
        BF_ASSERT(v[i].count > 0 && v[i].start >= end);
        p = put_varint(p, v[i].start - end);
        p = put_varint(p, v[i].count);
        end = v[i].start + v[i].count;
    }
    *out = buf;
    *len = (size_t)(p - buf);
    return 0;
}

/* Read one varint at *p (< e); -EPROTO if truncated or longer than 64 bits. */
static int get_varint(const unsigned char **p, const unsigned char *e, uint64_t *x)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p == e)
            return -EPROTO;
        unsigned char c = *(*p)++;
        if (shift == 63 && c > 1)
            return -EPROTO;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *x = v;
            return 0;
        }
    }
    return -EPROTO;
}

int bf_ranges_decode(const void *buf, size_t len, struct bf_blkrange **out, size_t *n)
{
    const unsigned char *p = buf, *e = p + len;
    struct bf_rangebuf rb = { 0 };
    uint64_t end = 0;
    int r = 0;
    while (r == 0 && p < e) {
        uint64_t gap, count;
        if ((r = get_varint(&p, e, &gap)) < 0 || (r = get_varint(&p, e, &count)) < 0)
            break;
        if (count == 0 || gap > UINT64_MAX - end || count > UINT64_MAX - (end + gap)) {
            r = -EPROTO;
            break;
        }
        if ((r = push(&rb, end + gap, count)) < 0)
            break;
        end += gap + count;
    }
    if (r < 0) {
        bf_ranges_free(&rb);
        return r;
    }
    *out = rb.v;
    *n = rb.n;
    return 0;
}

size_t bf_blk_lower(const void *v, size_t n, size_t size, uint64_t blk)
{
    const unsigned char *base = v;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t key;
        memcpy(&key, base + mid * size, sizeof(key));
        if (key < blk)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t bf_ranges_count(const void *buf, size_t len, uint64_t below)
{
    struct bf_blkrange *v = NULL;
    size_t n = 0;
    uint64_t count = 0;
    if (bf_ranges_decode(buf, len, &v, &n) < 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t end = v[i].count < below - v[i].start ? v[i].start + v[i].count : below;
        if (below > v[i].start)
            count += end - v[i].start;
    }
    free(v);
    return count;
}
