/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: small helpers shared by the backends (private to
 * src/backends; not part of the bf_db contract). Implemented in backend.c.
 * None takes a lock; all are safe to call from any thread. */
#ifndef BIGFILEFS_BACKENDS_COMMON_H
#define BIGFILEFS_BACKENDS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h" /* bf_now_ns, bf_all_zero */

/* Check a file name for create/rename: 0, -EINVAL (NULL, empty, contains
 * '/', or is "." or ".."), -ENAMETOOLONG (more than BF_NAME_MAX bytes). */
int bf_name_check(const char *name);


#endif /* BIGFILEFS_BACKENDS_COMMON_H */
