/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: the runner of minicr.h (ThreadSanitizer build). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "minicr.h"

#define MCR_MAX 128

struct mcr_test {
    const char *suite, *name;
    void (*fn)(void);
    struct mcr_opts opts;
};

/* Filled by constructors before main, read-only afterwards. */
static struct mcr_test tests[MCR_MAX];
static size_t ntests;

void mcr_register(const char *suite, const char *name, void (*fn)(void), struct mcr_opts opts)
{
    if (ntests == MCR_MAX) {
        fprintf(stderr, "minicr: more than %d tests\n", MCR_MAX);
        abort();
    }
    tests[ntests++] = (struct mcr_test){ suite, name, fn, opts };
}

void mcr_check(bool ok, const char *expr, const char *file, int line, const char *fmt, ...)
{
    if (ok)
        return;
    fprintf(stderr, "%s:%d: Assertion failed: %s", file, line, expr);
    if (fmt[0]) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    exit(1);
}

void mcr_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[info] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int main(int argc, char *argv[])
{
    const char *filter = argc > 1 ? argv[1] : NULL; /* a substring of suite::name */
    size_t failed = 0, run = 0;
    for (size_t i = 0; i < ntests; i++) {
        char full[256];
        snprintf(full, sizeof(full), "%s::%s", tests[i].suite, tests[i].name);
        if (filter && !strstr(full, filter))
            continue;
        run++;
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("minicr: fork");
            return 1;
        }
        if (pid == 0) {
            alarm(tests[i].opts.timeout ? tests[i].opts.timeout : 60);
            tests[i].fn();
            exit(0);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
            ;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            fprintf(stderr, "[PASS] %s\n", full);
        } else {
            failed++;
            if (WIFSIGNALED(status))
                fprintf(stderr, "[FAIL] %s: %s%s\n", full, strsignal(WTERMSIG(status)),
                        WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
            else
                fprintf(stderr, "[FAIL] %s: exit status %d\n", full, WEXITSTATUS(status));
        }
    }
    fprintf(stderr, "[====] Synthesis: Tested: %zu | Passing: %zu | Failing: %zu\n", run,
            run - failed, failed);
    return failed ? 1 : 0;
}
