/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: the Criterion entry point of the core's tests.
 *
 * Like Criterion's own main, with two changes:
 *
 *  - one job at a time by default: the parallel runner of Criterion 2.4
 *    leaks an allocation of its own, which LeakSanitizer reports in the
 *    ASan build (-j N or CRITERION_JOBS still override it; make check runs
 *    the test binaries in parallel anyway);
 *  - a test whose worker process dies after the test body passed (as
 *    LeakSanitizer makes it do when the test leaked, at the worker's exit)
 *    is only a warning for Criterion: here any warning fails the run, so
 *    that a leak fails the test suite.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <criterion/options.h>
#include <stdio.h>

static size_t run_warnings;

/* In the ASan build: a leak found at a worker's exit aborts it, which
 * Criterion counts as a warning (an exit status of 23 it would not see).
 * ASAN_OPTIONS in the environment still overrides this. Unused otherwise. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "abort_on_error=1";
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    run_warnings = stats->warnings;
}

int main(int argc, char *argv[])
{
    struct criterion_test_set *tests = criterion_initialize();
    criterion_options.jobs = 1;
    int result = 0;
    if (criterion_handle_args(argc, argv, true)) {
        result = !criterion_run_all_tests(tests);
        if (run_warnings) {
            fprintf(stderr,
                    "%zu warning(s) (a worker died after its test, e.g. "
                    "LeakSanitizer found a leak): failing\n",
                    run_warnings);
            result = 1;
        }
    }
    criterion_finalize(tests);
    return result;
}
