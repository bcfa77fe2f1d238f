/* bigfilefs — tests/core: the Criterion entry point of the core's tests.
 *
 * Same as Criterion's own main, but one job at a time by default: the
 * parallel runner of Criterion 2.4 leaks an allocation of its own, which
 * LeakSanitizer reports in the ASan build. -j N or CRITERION_JOBS still
 * override it. Each test binary is small; make check runs them in parallel.
 */
#include <criterion/criterion.h>
#include <criterion/options.h>

int main(int argc, char *argv[])
{
    struct criterion_test_set *tests = criterion_initialize();
    criterion_options.jobs = 1;
    int result = 0;
    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}
