/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: the pagemap against a sorted-array reference. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "core/pagemap.h"

/* Values: even "pointers" derived from the key (never dereferenced);
 * distinct for keys that differ below bit 63. */
static void *val(uint64_t key)
{
    return (void *)(uintptr_t)(((key * UINT64_C(2654435761)) << 1) + 0x1000);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic per test */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorted, deduplicated reference set. */
struct ref {
    uint64_t *k;
    size_t n;
};

static bool ref_has(const struct ref *r, uint64_t key)
{
    return bsearch(&key, r->k, r->n, sizeof(uint64_t), cmp_u64) != NULL;
}

static void ref_add(struct ref *r, uint64_t key)
{
    size_t i = 0;
    while (i < r->n && r->k[i] < key)
        i++;
    memmove(&r->k[i + 1], &r->k[i], (r->n - i) * sizeof(uint64_t));
    r->k[i] = key;
    r->n++;
}

static void ref_del(struct ref *r, uint64_t key)
{
    size_t i = 0;
    while (r->k[i] != key)
        i++;
    memmove(&r->k[i], &r->k[i + 1], (r->n - i - 1) * sizeof(uint64_t));
    r->n--;
}

/* The map holds exactly the reference's keys, and iterates them in order. */
static void check_against(const bf_pagemap *pm, const struct ref *r)
{
    cr_assert_eq(pm->count, r->n);
    uint64_t k;
    size_t i = 0;
    for (void *v = bf_pagemap_next(pm, 0, &k); v;
         v = (k == UINT64_MAX) ? NULL : bf_pagemap_next(pm, k + 1, &k)) {
        cr_assert_lt(i, r->n, "iteration yields more keys than inserted");
        cr_assert_eq(k, r->k[i], "key %zu: got %llu want %llu", i, (unsigned long long)k,
                     (unsigned long long)r->k[i]);
        cr_assert_eq(v, val(k));
        i++;
    }
    cr_assert_eq(i, r->n);
    for (i = 0; i < r->n; i++)
        cr_assert_eq(bf_pagemap_get(pm, r->k[i]), val(r->k[i]));
}

Test(pagemap, empty, .timeout = 10)
{
    bf_pagemap pm;
    bf_pagemap_init(&pm);
    uint64_t k = 42;
    cr_assert_null(bf_pagemap_get(&pm, 0));
    cr_assert_null(bf_pagemap_get(&pm, UINT64_MAX));
    cr_assert_null(bf_pagemap_next(&pm, 0, &k));
    cr_assert_eq(k, 42);
    cr_assert_null(bf_pagemap_remove(&pm, 7));
    cr_assert_eq(bf_pagemap_memory(&pm), 0);
    bf_pagemap_destroy(&pm);
}

Test(pagemap, bad_values_and_duplicates, .timeout = 10)
{
    bf_pagemap pm;
    bf_pagemap_init(&pm);
    cr_assert_eq(bf_pagemap_insert(&pm, 1, NULL), -EINVAL);
    cr_assert_eq(bf_pagemap_insert(&pm, 1, (void *)(uintptr_t)0x1001), -EINVAL);
    cr_assert_eq(bf_pagemap_insert(&pm, 1, val(1)), 0);
    cr_assert_eq(bf_pagemap_insert(&pm, 1, val(2)), -EEXIST);
    cr_assert_eq(bf_pagemap_get(&pm, 1), val(1), "a refused insert changed the map");
    cr_assert_eq(pm.count, 1);
    bf_pagemap_destroy(&pm);
    cr_assert_eq(pm.count, 0);
}

Test(pagemap, extreme_keys, .timeout = 10)
{
    bf_pagemap pm;
    bf_pagemap_init(&pm);
    /* Values: the address of the key's slot in this table (distinct). */
    static const uint64_t keys[] = { 0,
                                     UINT64_MAX,
                                     1,
                                     UINT64_MAX - 1,
                                     UINT64_C(1) << 63,
                                     (UINT64_C(1) << 63) - 1,
                                     63,
                                     64,
                                     UINT64_C(1) << 60,
                                     (UINT64_C(1) << 60) - 1 };
#define V(i) ((void *)&keys[i])
    size_t n = sizeof(keys) / sizeof(keys[0]);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(bf_pagemap_insert(&pm, keys[i], V(i)), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(bf_pagemap_get(&pm, keys[i]), V(i));
    cr_assert_null(bf_pagemap_get(&pm, 2));
    cr_assert_null(bf_pagemap_get(&pm, UINT64_MAX - 2));

    /* Ordered: 0 first, UINT64_MAX last. */
    uint64_t k;
    cr_assert_eq(bf_pagemap_next(&pm, 0, &k), V(0));
    cr_assert_eq(k, 0);
    cr_assert_eq(bf_pagemap_next(&pm, 2, &k), V(6));
    cr_assert_eq(k, 63);
    cr_assert_eq(bf_pagemap_next(&pm, UINT64_MAX, &k), V(1));
    cr_assert_eq(k, UINT64_MAX);
    cr_assert_eq(bf_pagemap_next(&pm, 65, &k), V(9));
    cr_assert_eq(k, (UINT64_C(1) << 60) - 1);
    cr_assert_eq(bf_pagemap_next(&pm, (UINT64_C(1) << 63) + 1, &k), V(3));
    cr_assert_eq(k, UINT64_MAX - 1);

    for (size_t i = 0; i < n; i++)
        cr_assert_eq(bf_pagemap_remove(&pm, keys[i]), V(i));
#undef V
    cr_assert_eq(pm.count, 0);
    cr_assert_eq(pm.nodes, 0);
    cr_assert_eq(bf_pagemap_memory(&pm), 0);
    bf_pagemap_destroy(&pm);
}

/* Random inserts and removes, checked against the reference throughout. */
static void random_ops(uint64_t seed, uint64_t keymask, size_t nkeys, size_t nops)
{
    rng_state = seed;
    bf_pagemap pm;
    bf_pagemap_init(&pm);
    struct ref r = { calloc(nkeys + 1, sizeof(uint64_t)), 0 };
    uint64_t *pool = calloc(nkeys, sizeof(uint64_t));
    cr_assert(r.k && pool);
    for (size_t i = 0; i < nkeys; i++)
        pool[i] = rnd() & keymask;

    for (size_t op = 0; op < nops; op++) {
        uint64_t key = pool[rnd() % nkeys];
        if (rnd() % 3) {
            int rc = bf_pagemap_insert(&pm, key, val(key));
            if (ref_has(&r, key)) {
                cr_assert_eq(rc, -EEXIST);
            } else {
                cr_assert_eq(rc, 0);
                ref_add(&r, key);
            }
        } else {
            void *v = bf_pagemap_remove(&pm, key);
            if (ref_has(&r, key)) {
                cr_assert_eq(v, val(key));
                ref_del(&r, key);
            } else {
                cr_assert_null(v);
            }
        }
        cr_assert_eq(bf_pagemap_get(&pm, key), ref_has(&r, key) ? val(key) : NULL);
        if (op % 97 == 0)
            check_against(&pm, &r);
        cr_assert_lt(pm.nodes, pm.count > 0 ? pm.count : 1,
                     "every node branches: fewer nodes than entries");
    }
    check_against(&pm, &r);

    /* next() from arbitrary points agrees with the reference. */
    for (int t = 0; t < 200; t++) {
        uint64_t from = rnd() & keymask;
        size_t i = 0;
        while (i < r.n && r.k[i] < from)
            i++;
        uint64_t k;
        void *v = bf_pagemap_next(&pm, from, &k);
        if (i == r.n) {
            cr_assert_null(v);
        } else {
            cr_assert_eq(k, r.k[i]);
            cr_assert_eq(v, val(k));
        }
    }

    while (r.n) {
        uint64_t key = r.k[rnd() % r.n];
        cr_assert_eq(bf_pagemap_remove(&pm, key), val(key));
        ref_del(&r, key);
    }
    cr_assert_eq(pm.count, 0);
    cr_assert_eq(pm.nodes, 0);
    cr_assert_eq(bf_pagemap_memory(&pm), 0, "memory follows the count down to 0");
    bf_pagemap_destroy(&pm);
    free(r.k);
    free(pool);
}

Test(pagemap, random_full_64bit_keys, .timeout = 30)
{
    random_ops(0x1234567, UINT64_MAX, 2000, 20000);
}

Test(pagemap, random_dense_keys, .timeout = 30)
{
    /* Keys in [0, 4096): full, deep nodes at the bottom level. */
    random_ops(0xabcdef, 4095, 3000, 30000);
}

Test(pagemap, random_clustered_keys, .timeout = 30)
{
    /* Bits set only here and there: long skipped levels, many splits. */
    random_ops(0x55aa55, 0xF00000000F0000FFull, 1500, 20000);
}

Test(pagemap, sequential_and_ordered_iteration, .timeout = 30)
{
    bf_pagemap pm;
    bf_pagemap_init(&pm);
    for (uint64_t k = 0; k < 10000; k++)
        cr_assert_eq(bf_pagemap_insert(&pm, 10000 - 1 - k, val(10000 - 1 - k)), 0);
    uint64_t k, want = 0;
    for (void *v = bf_pagemap_next(&pm, 0, &k); v;
         v = (k == UINT64_MAX) ? NULL : bf_pagemap_next(&pm, k + 1, &k)) {
        cr_assert_eq(k, want);
        want++;
    }
    cr_assert_eq(want, 10000);
    /* Removing while iterating: every other key. */
    for (void *v = bf_pagemap_next(&pm, 0, &k); v; v = bf_pagemap_next(&pm, k + 1, &k)) {
        if (k % 2 == 0)
            cr_assert_eq(bf_pagemap_remove(&pm, k), val(k));
    }
    cr_assert_eq(pm.count, 5000);
    cr_assert_null(bf_pagemap_get(&pm, 4242));
    cr_assert_eq(bf_pagemap_get(&pm, 4243), val(4243));
    bf_pagemap_destroy(&pm);
    cr_assert_eq(pm.count, 0);
}

Test(pagemap, sparse_memory_is_small, .timeout = 30)
{
    rng_state = 0xfeedface;
    bf_pagemap pm;
    bf_pagemap_init(&pm);
    uint64_t keys[1000];
    size_t n = 0;
    while (n < 1000) {
        uint64_t k = rnd() & ((UINT64_C(1) << 50) - 1);
        int rc = bf_pagemap_insert(&pm, k, val(k));
        if (rc == -EEXIST)
            continue;
        cr_assert_eq(rc, 0);
        keys[n++] = k;
    }
    size_t mem = bf_pagemap_memory(&pm);
    cr_log_info("1000 random keys in [0, 2^50): %zu bytes, %zu nodes", mem, pm.nodes);
    cr_assert_lt(mem, 100 * 1024, "1000 sparse keys use %zu bytes", mem);
    cr_assert_gt(mem, 0);

    /* Memory shrinks as keys go, and is 0 at the end. */
    for (size_t i = 0; i < 500; i++)
        cr_assert_eq(bf_pagemap_remove(&pm, keys[i]), val(keys[i]));
    size_t half = bf_pagemap_memory(&pm);
    cr_assert_lt(half, mem * 3 / 4, "memory after removing half: %zu of %zu", half, mem);
    for (size_t i = 500; i < 1000; i++)
        cr_assert_eq(bf_pagemap_remove(&pm, keys[i]), val(keys[i]));
    cr_assert_eq(bf_pagemap_memory(&pm), 0);
    cr_assert_eq(pm.nodes, 0);
    bf_pagemap_destroy(&pm);
}

Test(pagemap, dense_memory_per_entry, .timeout = 30)
{
    /* 64 Ki consecutive keys: full nodes, bounded cost per entry. */
    bf_pagemap pm;
    bf_pagemap_init(&pm);
    for (uint64_t k = 0; k < 65536; k++)
        cr_assert_eq(bf_pagemap_insert(&pm, (UINT64_C(1) << 40) + k, val(k)), 0);
    size_t mem = bf_pagemap_memory(&pm);
    cr_assert_lt(mem / 65536, 40, "%zu bytes per dense entry", mem / 65536);
    bf_pagemap_destroy(&pm);
}
