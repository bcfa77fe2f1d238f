/* SPDX-License-Identifier: MIT */
/* bigfilefs — util: assertion failures (debug.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/debug.h"

void bf_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "bigfilefs: %s:%d: %s: assertion '%s' failed\n", file, line, func, expr);
    fflush(stderr);
    abort();
}

bool bf_check_fail(const char *expr, const char *file, int line, const char *func,
                   const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "bigfilefs: internal error: %s:%d: %s: '%s' failed: ", file, line, func,
            expr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return false;
}
