/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — logging (see log.h). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fs/log.h"

/* Set at startup before threads exist, read-only afterwards (log.h). */
static bool log_syslog;
static int log_level = LOG_INFO;

void bf_log_to_syslog(void)
{
    openlog("bigfilefs", LOG_PID, LOG_DAEMON);
    log_syslog = true;
}

void bf_log_set_level(int level)
{
    log_level = level;
}

void bf_log(int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (level > log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (log_syslog)
        syslog(level, "%s", msg);
    else
        /* One fprintf per message: stdio locks the stream, so lines of
         * different threads do not interleave. */
        fprintf(stderr, "bigfilefs: %s\n", msg);
}
