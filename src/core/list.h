/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: a small intrusive circular doubly linked list.
 *
 * A struct bf_list is embedded in the structure to link; a list head is a
 * bare struct bf_list. An unlinked node points to itself, so "is it on a
 * list" is a test of the node alone (bf_list_linked).
 *
 * Locking: none inside; the owner of the list serializes.
 */
#ifndef BIGFILEFS_CORE_LIST_H
#define BIGFILEFS_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct bf_list {
    struct bf_list *prev, *next;
};

/* Containing structure of a list node. */
#define bf_list_entry(node, type, member) ((type *)((char *)(node)-offsetof(type, member)))

/* Make `l` an empty head, or an unlinked node. */
static inline void bf_list_init(struct bf_list *l)
{
    l->prev = l->next = l;
}

/* True when the head has no node. */
static inline bool bf_list_empty(const struct bf_list *head)
{
    return head->next == head;
}

/* True when the node is on some list (it was initialized with
 * bf_list_init and removed with bf_list_del). */
static inline bool bf_list_linked(const struct bf_list *node)
{
    return node->next != node;
}

/* Append `node` (unlinked) at the tail of `head`. */
static inline void bf_list_add_tail(struct bf_list *head, struct bf_list *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

/* Unlink `node` from its list and leave it unlinked (self-pointing). A node
 * that is not linked is left as it is. */
static inline void bf_list_del(struct bf_list *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    bf_list_init(node);
}

/* First node of the list, or NULL when empty. */
static inline struct bf_list *bf_list_first(const struct bf_list *head)
{
    return bf_list_empty(head) ? NULL : head->next;
}

/* Iterate; the loop body must not unlink `pos` (use the _safe form). */
#define bf_list_foreach(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

/* Iterate, allowing the body to unlink `pos`. */
#define bf_list_foreach_safe(pos, tmp, head)                         \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
         (pos) = (tmp), (tmp) = (pos)->next)

#endif /* BIGFILEFS_CORE_LIST_H */
