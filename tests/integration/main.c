/* SPDX-License-Identifier: MIT */
/* bigfilefs — integration tests: the Criterion entry point of every
 * integration test binary.
 *
 * Criterion's own main, changed in two ways:
 *  - one test at a time unless -j N or CRITERION_JOBS says otherwise: the
 *    parallel runner of Criterion 2.4 leaks by itself, which LeakSanitizer
 *    reports in the ASan build; make check runs the five binaries in
 *    parallel anyway, and each test mostly waits on the daemon;
 *  - a run with warnings fails. Criterion only warns when a test's worker
 *    dies after the body passed: a leak LeakSanitizer finds at the worker's
 *    exit, or a crash in the harness's .fini.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <criterion/options.h>

static size_t warnings;

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    warnings = stats->warnings;
}

int main(int argc, char *argv[])
{
    struct criterion_test_set *tests = criterion_initialize();
    const char *jobs = getenv("CRITERION_JOBS");
    if (!jobs || !*jobs)
        criterion_options.jobs = 1;
    int result = 0;
    if (criterion_handle_args(argc, argv, true)) {
        result = !criterion_run_all_tests(tests);
        if (warnings) {
            fprintf(stderr,
                    "%zu warning(s): a test worker died after its test "
                    "(a leak, a crash in teardown): failing the run\n",
                    warnings);
            result = 1;
        }
    }
    criterion_finalize(tests);
    return result;
}
