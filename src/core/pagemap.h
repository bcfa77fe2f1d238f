/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: pagemap, a map from 64-bit block index to a pointer.
 *
 * A compressed radix trie with 64-way nodes (6 bits of the key per level):
 *
 *  - lookup walks at most 11 nodes whatever the key: O(1), no hashing;
 *  - a slot holds NULL, a child node, or one entry directly (an entry whose
 *    key prefix is unique hangs off the deepest node that branches), and a
 *    node skips the levels where no branching happens; so memory is
 *    proportional to the number of entries, not to the span of the keys:
 *    1000 random keys in [0, 2^50) cost tens of kilobytes, not megabytes;
 *  - ordered iteration (bf_pagemap_next) for writeout order and ranges.
 *
 * Values are opaque non-NULL pointers with the low bit clear (the trie tags
 * slots with it); the structures we store are at least 2-aligned.
 *
 * Locking: none inside. The caller serializes every call on one pagemap
 * (in the core: the bf_ram lock).
 */
#ifndef BIGFILEFS_CORE_PAGEMAP_H
#define BIGFILEFS_CORE_PAGEMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct bf_pagemap {
    void *root;   /* private: the root slot */
    size_t count; /* number of entries */
    size_t nodes; /* number of trie nodes allocated (for stats/tests) */
} bf_pagemap;

/* Initialize an empty pagemap. Cannot fail (allocates nothing). */
void bf_pagemap_init(bf_pagemap *pm);

/* Free every node. The values are not touched (free them first). */
void bf_pagemap_destroy(bf_pagemap *pm);

/* Return the value for key, or NULL. */
void *bf_pagemap_get(const bf_pagemap *pm, uint64_t key);

/* Map key to value (non-NULL, low bit clear). Returns 0, -EEXIST if key is
 * already mapped (the map is unchanged), -EINVAL for a bad value, -ENOMEM. */
int bf_pagemap_insert(bf_pagemap *pm, uint64_t key, void *value);

/* Remove key; return its value, or NULL if it was not mapped. Frees nodes
 * that become unnecessary, so memory follows the entry count down. */
void *bf_pagemap_remove(bf_pagemap *pm, uint64_t key);

/* Return the value with the smallest key >= from, storing that key in
 * *key_out; NULL when there is none. Iterate with
 *     for (v = next(pm, 0, &k); v; v = (k == UINT64_MAX) ? NULL : next(pm, k + 1, &k))
 * The map may be modified between calls. */
void *bf_pagemap_next(const bf_pagemap *pm, uint64_t from, uint64_t *key_out);

/* Bytes of memory the trie's nodes use (not counting the values). */
size_t bf_pagemap_memory(const bf_pagemap *pm);

#endif /* BIGFILEFS_CORE_PAGEMAP_H */
