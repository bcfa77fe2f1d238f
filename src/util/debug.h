/* SPDX-License-Identifier: MIT */
/* bigfilefs — util: assertions of invariants.
 *
 * BF_ASSERT(expr) states an invariant the code relies on. In a debug build
 * (configure --enable-debug, which defines BF_DEBUG; the test builds use
 * it) a false invariant prints "bigfilefs: FILE:LINE: FUNC: assertion
 * 'EXPR' failed" to stderr and aborts, as SQLite's assert() and the seeds'
 * BUG_ON do. In a release build it compiles to nothing: the expression is
 * not evaluated, so it must have no side effect.
 *
 * BF_CHECK(expr, fmt, ...) is for the places that cannot rule a broken
 * invariant out and recover from it (a backend told to close a file with a
 * transaction still open, say): in a debug build it is BF_ASSERT; in a
 * release build a false expr logs "bigfilefs: internal error: FILE:LINE:
 * FUNC: 'EXPR' failed: <message>" to stderr and the caller goes on with its
 * recovery. It evaluates to the truth of expr in both builds, so it can
 * guard that recovery: `if (!BF_CHECK(x == NULL, "leaked %p", x)) free(x);`
 *
 * BF_DEBUG_ONLY(stmt) runs stmt in a debug build only (bookkeeping that
 * exists for assertions, like the owner of a lock).
 */
#ifndef BIGFILEFS_UTIL_DEBUG_H
#define BIGFILEFS_UTIL_DEBUG_H

#include <stdbool.h>

/* Print the failure of BF_ASSERT/BF_CHECK and abort. Never returns. */
void bf_assert_fail(const char *expr, const char *file, int line, const char *func)
    __attribute__((noreturn));

/* Log the failure of BF_CHECK in a release build (a printf-style message
 * follows the expression); returns false. */
bool bf_check_fail(const char *expr, const char *file, int line, const char *func,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#ifdef BF_DEBUG
#define BF_ASSERT(expr) \
    ((expr) ? (void)0 : bf_assert_fail(#expr, __FILE__, __LINE__, __func__))
#define BF_CHECK(expr, ...) \
    ((expr) ? true : (bf_assert_fail(#expr, __FILE__, __LINE__, __func__), false))
#define BF_DEBUG_ONLY(stmt) \
    do {                    \
        stmt;               \
    } while (0)
#else
#define BF_ASSERT(expr) ((void)0)
#define BF_CHECK(expr, ...) \
    ((expr) ? true : bf_check_fail(#expr, __FILE__, __LINE__, __func__, __VA_ARGS__))
#define BF_DEBUG_ONLY(stmt) \
    do {                    \
    } while (0)
#endif

#endif /* BIGFILEFS_UTIL_DEBUG_H */
