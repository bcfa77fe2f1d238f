/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: a minimal stand-in for Criterion, for the
 * ThreadSanitizer build only.
 *
 * Criterion's runner cannot start under ThreadSanitizer (its boxfort arena
 * fails: "Could not initialize inheritable arena", Criterion issue #274),
 * so the --enable-tsan build compiles test_concurrency.c against this
 * header instead (-DCORE_MINICR). It provides the subset of Criterion the
 * concurrency tests use, with the same meaning: Test(suite, name,
 * .timeout = N) and the cr_assert* macros. minicr.c runs every test in a
 * child process of its own with an alarm(timeout) and reports a failure,
 * a crash, a timeout or a ThreadSanitizer report (nonzero exit) as failed.
 */
#ifndef BIGFILEFS_TESTS_CORE_MINICR_H
#define BIGFILEFS_TESTS_CORE_MINICR_H

#include <stdbool.h>
#include <stddef.h>

struct mcr_opts {
    unsigned timeout; /* seconds; 0: 60 */
};

void mcr_register(const char *suite, const char *name, void (*fn)(void), struct mcr_opts opts);
void mcr_check(bool ok, const char *expr, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void mcr_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define Test(suite, name, ...)                                                                  \
    static void mcr_fn_##suite##_##name(void);                                                  \
    __attribute__((constructor)) static void mcr_reg_##suite##_##name(void)                     \
    {                                                                                           \
        mcr_register(#suite, #name, mcr_fn_##suite##_##name, (struct mcr_opts){ __VA_ARGS__ }); \
    }                                                                                           \
    static void mcr_fn_##suite##_##name(void)

#define MCR_CHECK(ok, expr, ...) mcr_check((ok), (expr), __FILE__, __LINE__, "" __VA_ARGS__)
#define cr_assert(c, ...) MCR_CHECK(!!(c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...) MCR_CHECK(!(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_null(p, ...) MCR_CHECK((p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) MCR_CHECK((p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) MCR_CHECK((a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) MCR_CHECK((a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) MCR_CHECK((a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) MCR_CHECK((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) MCR_CHECK((a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) MCR_CHECK((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_log_info(...) mcr_log(__VA_ARGS__)

#endif /* BIGFILEFS_TESTS_CORE_MINICR_H */
