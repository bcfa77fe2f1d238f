/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — logging.
 *
 * One small module every part of the daemon logs through. Until
 * bf_log_to_syslog() is called, messages go to stderr with a "bigfilefs: "
 * prefix (the foreground daemon); afterwards (the daemon detached) they go
 * to syslog(3) under the identity "bigfilefs", facility LOG_DAEMON.
 *
 * Global state: the destination (stderr or syslog) and the verbosity, both
 * set once at startup, before any other thread exists, and only read
 * afterwards. Every function may be called from any thread.
 */
#ifndef BIGFILEFS_FS_LOG_H
#define BIGFILEFS_FS_LOG_H

#include <stdbool.h>
#include <syslog.h> /* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

/* From now on, log to syslog instead of stderr. Call once, before starting
 * threads (e.g. right after detaching). */
void bf_log_to_syslog(void);

/* Log messages of priority up to `level` (LOG_INFO by default; LOG_DEBUG
 * with -d). Call before starting threads. */
void bf_log_set_level(int level);

/* Log one message (printf-style, no trailing newline needed) at `level`. */
void bf_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define bf_err(...) bf_log(LOG_ERR, __VA_ARGS__)
#define bf_warn(...) bf_log(LOG_WARNING, __VA_ARGS__)
#define bf_notice(...) bf_log(LOG_NOTICE, __VA_ARGS__)
#define bf_info(...) bf_log(LOG_INFO, __VA_ARGS__)
#define bf_debug(...) bf_log(LOG_DEBUG, __VA_ARGS__)

#endif /* BIGFILEFS_FS_LOG_H */
