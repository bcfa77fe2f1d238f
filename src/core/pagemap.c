/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: pagemap, a compressed 64-way radix trie (pagemap.h).
 *
 * Layout
 * ------
 * A slot (the root, or one slot of a node) holds one of:
 *   - NULL;
 *   - a node pointer (low bit clear);
 *   - a leaf pointer with the low bit set: a leaf is {key, value}, one entry.
 *
 * A node branches on 6 bits of the key, bits [shift, shift + 6); `shift` is
 * a multiple of 6 in [0, 60]. Every key below a node has the same bits above
 * shift + 6: the node's `prefix` (lower bits zero). A child sits below its
 * parent at any lower shift: levels where all keys agree are skipped, and a
 * key alone in its slot is a leaf right there. Hence every node branches
 * (holds at least two items) and the number of nodes is below the number of
 * entries.
 *
 * Nodes are sparse: a 64-bit bitmap says which of the 64 slots are used and
 * only those are stored, in index order (the position of slot i is the
 * popcount of the bitmap bits below i). A node grows by doubling its slot
 * array and shrinks when it is a quarter full, so memory follows the entry
 * count both ways.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/pagemap.h"

#define PM_BITS 6
#define PM_FANOUT 64
#define PM_SHIFTMAX 60 /* the top level holds bits 60..63 */

struct pm_leaf {
    uint64_t key;
    void *value;
};

struct pm_node {
    uint64_t prefix; /* key bits above shift + 6; lower bits are 0 */
    uint64_t bitmap; /* bit i set: slot i is used */
    uint8_t shift;   /* lowest key bit this node branches on */
    uint8_t cap;     /* slots allocated in slot[] */
    void *slot[];    /* popcount(bitmap) used slots, in index order */
};

static inline bool slot_is_leaf(const void *s)
{
    return ((uintptr_t)s & 1) != 0;
}

static inline struct pm_leaf *slot_leaf(const void *s)
{
    return (struct pm_leaf *)((uintptr_t)s & ~(uintptr_t)1);
}

static inline void *leaf_slot(struct pm_leaf *l)
{
    return (void *)((uintptr_t)l | 1);
}

/* Bits of `key` above the levels [shift, shift + 6), others cleared. */
static inline uint64_t key_prefix(uint64_t key, unsigned shift)
{
    if (shift + PM_BITS >= 64)
        return 0;
    return key & ~((UINT64_C(1) << (shift + PM_BITS)) - 1);
}

static inline unsigned key_index(uint64_t key, unsigned shift)
{
    return (unsigned)(key >> shift) & (PM_FANOUT - 1);
}

/* Shift of the level at which keys a and b (a != b) first differ. */
static inline unsigned diff_shift(uint64_t a, uint64_t b)
{
    unsigned hibit = 63 - (unsigned)__builtin_clzll(a ^ b);
    return hibit / PM_BITS * PM_BITS;
}

static inline unsigned node_used(const struct pm_node *n)
{
    return (unsigned)__builtin_popcountll(n->bitmap);
}

/* Position in slot[] of index i (whether or not it is used). */
static inline unsigned node_pos(const struct pm_node *n, unsigned i)
{
    return (unsigned)__builtin_popcountll(n->bitmap & ((UINT64_C(1) << i) - 1));
}

static inline size_t node_bytes(unsigned cap)
{
    return sizeof(struct pm_node) + (size_t)cap * sizeof(void *);
}

static struct pm_node *node_new(bf_pagemap *pm, unsigned shift, uint64_t key, unsigned cap)
{
    struct pm_node *n = malloc(node_bytes(cap));
    if (!n)
        return NULL;
    n->prefix = key_prefix(key, shift);
    n->bitmap = 0;
    n->shift = (uint8_t)shift;
    n->cap = (uint8_t)cap;
    pm->nodes++;
    return n;
}

static void node_free(bf_pagemap *pm, struct pm_node *n)
{
    free(n);
    pm->nodes--;
}

/* A new node at `shift` holding the two items a (key ka) and b (key kb),
 * which fall into different slots at that shift. */
static struct pm_node *node_pair(bf_pagemap *pm, unsigned shift, void *a, uint64_t ka, void *b,
                                 uint64_t kb)
{
    struct pm_node *n = node_new(pm, shift, ka, 2);
    if (!n)
        return NULL;
    unsigned ia = key_index(ka, shift), ib = key_index(kb, shift);
    n->bitmap = (UINT64_C(1) << ia) | (UINT64_C(1) << ib);
    n->slot[ia < ib ? 0 : 1] = a;
    n->slot[ia < ib ? 1 : 0] = b;
    return n;
}

void bf_pagemap_init(bf_pagemap *pm)
{
    pm->root = NULL;
    pm->count = 0;
    pm->nodes = 0;
}

static void slot_destroy(bf_pagemap *pm, void *s)
{
    if (!s)
        return;
    if (slot_is_leaf(s)) {
        free(slot_leaf(s));
        return;
    }
    struct pm_node *n = s;
    unsigned used = node_used(n);
    for (unsigned p = 0; p < used; p++)
        slot_destroy(pm, n->slot[p]);
    node_free(pm, n);
}

void bf_pagemap_destroy(bf_pagemap *pm)
{
    slot_destroy(pm, pm->root);
    bf_pagemap_init(pm);
}

void *bf_pagemap_get(const bf_pagemap *pm, uint64_t key)
{
    const void *s = pm->root;
    while (s) {
        if (slot_is_leaf(s)) {
            const struct pm_leaf *l = slot_leaf(s);
            return l->key == key ? l->value : NULL;
        }
        const struct pm_node *n = s;
        if (key_prefix(key, n->shift) != n->prefix)
            return NULL;
        unsigned i = key_index(key, n->shift);
        if (!(n->bitmap & (UINT64_C(1) << i)))
            return NULL;
        s = n->slot[node_pos(n, i)];
    }
    return NULL;
}

/* Put `item` into the unused slot i of the node in *np, growing the node if
 * it is full (then *np is updated). */
static int node_add(bf_pagemap *pm, struct pm_node **np, unsigned i, void *item)
{
    struct pm_node *n = *np;
    unsigned used = node_used(n);
    if (used == n->cap) {
        unsigned cap = n->cap * 2 > PM_FANOUT ? PM_FANOUT : n->cap * 2u;
        struct pm_node *g = realloc(n, node_bytes(cap));
        if (!g)
            return -ENOMEM;
        g->cap = (uint8_t)cap;
        *np = n = g;
    }
    unsigned p = node_pos(n, i);
    memmove(&n->slot[p + 1], &n->slot[p], (used - p) * sizeof(void *));
    n->slot[p] = item;
    n->bitmap |= UINT64_C(1) << i;
    return 0;
}

int bf_pagemap_insert(bf_pagemap *pm, uint64_t key, void *value)
{
    if (!value || ((uintptr_t)value & 1))
        return -EINVAL;

    void **sp = &pm->root;
    for (;;) {
        void *s = *sp;
        if (!s)
            break; /* empty slot: the leaf goes here */

        if (slot_is_leaf(s)) {
            struct pm_leaf *l = slot_leaf(s);
            if (l->key == key)
                return -EEXIST;
            /* Two keys share this slot: a node at the level where they
             * differ takes both. */
            struct pm_leaf *nl = malloc(sizeof(*nl));
            if (!nl)
                return -ENOMEM;
            nl->key = key;
            nl->value = value;
            struct pm_node *n = node_pair(pm, diff_shift(l->key, key), s, l->key, leaf_slot(nl),
                                          key);
            if (!n) {
                free(nl);
                return -ENOMEM;
            }
            *sp = n;
            pm->count++;
            return 0;
        }

        struct pm_node *n = s;
        if (key_prefix(key, n->shift) != n->prefix) {
            /* The key leaves the node's prefix above it: split the skipped
             * levels with a node where key and prefix first differ. */
            struct pm_leaf *nl = malloc(sizeof(*nl));
            if (!nl)
                return -ENOMEM;
            nl->key = key;
            nl->value = value;
            struct pm_node *p = node_pair(pm, diff_shift(n->prefix, key), n, n->prefix,
                                          leaf_slot(nl), key);
            if (!p) {
                free(nl);
                return -ENOMEM;
            }
            *sp = p;
            pm->count++;
            return 0;
        }

        unsigned i = key_index(key, n->shift);
        if (!(n->bitmap & (UINT64_C(1) << i))) {
            struct pm_leaf *nl = malloc(sizeof(*nl));
            if (!nl)
                return -ENOMEM;
            nl->key = key;
            nl->value = value;
            int r = node_add(pm, (struct pm_node **)sp, i, leaf_slot(nl));
            if (r < 0) {
                free(nl);
                return r;
            }
            pm->count++;
            return 0;
        }
        sp = &n->slot[node_pos(n, i)];
    }

    struct pm_leaf *nl = malloc(sizeof(*nl));
    if (!nl)
        return -ENOMEM;
    nl->key = key;
    nl->value = value;
    *sp = leaf_slot(nl);
    pm->count++;
    return 0;
}

void *bf_pagemap_remove(bf_pagemap *pm, uint64_t key)
{
    /* The path: slot pointers holding each node walked, deepest last. */
    void **path[PM_SHIFTMAX / PM_BITS + 2];
    unsigned depth = 0;
    void **sp = &pm->root;

    for (;;) {
        void *s = *sp;
        if (!s)
            return NULL;
        if (slot_is_leaf(s))
            break;
        struct pm_node *n = s;
        if (key_prefix(key, n->shift) != n->prefix)
            return NULL;
        unsigned i = key_index(key, n->shift);
        if (!(n->bitmap & (UINT64_C(1) << i)))
            return NULL;
        path[depth++] = sp;
        sp = &n->slot[node_pos(n, i)];
    }

    struct pm_leaf *l = slot_leaf(*sp);
    if (l->key != key)
        return NULL;
    void *value = l->value;
    free(l);
    pm->count--;

    if (depth == 0) {
        *sp = NULL; /* the root was this leaf */
        return value;
    }

    /* Take the slot out of its node. */
    void **np = path[depth - 1];
    struct pm_node *n = *np;
    unsigned i = key_index(key, n->shift);
    unsigned p = node_pos(n, i), used = node_used(n);
    memmove(&n->slot[p], &n->slot[p + 1], (used - p - 1) * sizeof(void *));
    n->bitmap &= ~(UINT64_C(1) << i);
    used--;

    if (used == 1) {
        /* A node left with one item no longer branches: its item takes its
         * place in the parent slot (it keeps its own shift and prefix). */
        *np = n->slot[0];
        node_free(pm, n);
    } else if (n->cap > 2 && used <= n->cap / 4u) {
        unsigned cap = n->cap / 2u;
        struct pm_node *g = realloc(n, node_bytes(cap));
        if (g) { /* a failed shrink just keeps the room */
            g->cap = (uint8_t)cap;
            *np = g;
        }
    }
    return value;
}

/* Smallest entry >= from below slot s. */
static void *slot_next(const void *s, uint64_t from, uint64_t *key_out)
{
    if (!s)
        return NULL;
    if (slot_is_leaf(s)) {
        const struct pm_leaf *l = slot_leaf(s);
        if (l->key < from)
            return NULL;
        *key_out = l->key;
        return l->value;
    }
    const struct pm_node *n = s;
    uint64_t fp = key_prefix(from, n->shift);
    unsigned i;
    if (n->prefix < fp)
        return NULL; /* the whole node lies below from */
    if (n->prefix > fp) {
        from = 0; /* the whole node lies above from */
        i = 0;
    } else {
        i = key_index(from, n->shift);
    }
    uint64_t rest = n->bitmap & ~((UINT64_C(1) << i) - 1);
    while (rest) {
        unsigned j = (unsigned)__builtin_ctzll(rest);
        void *v = slot_next(n->slot[node_pos(n, j)], j == i ? from : 0, key_out);
        if (v)
            return v;
        rest &= rest - 1;
    }
    return NULL;
}

void *bf_pagemap_next(const bf_pagemap *pm, uint64_t from, uint64_t *key_out)
{
    uint64_t k = 0;
    void *v = slot_next(pm->root, from, &k);
    if (v && key_out)
        *key_out = k;
    return v;
}

static size_t slot_memory(const void *s)
{
    if (!s)
        return 0;
    if (slot_is_leaf(s))
        return sizeof(struct pm_leaf);
    const struct pm_node *n = s;
    size_t bytes = node_bytes(n->cap);
    unsigned used = node_used(n);
    for (unsigned p = 0; p < used; p++)
        bytes += slot_memory(n->slot[p]);
    return bytes;
}

size_t bf_pagemap_memory(const bf_pagemap *pm)
{
    return slot_memory(pm->root);
}
