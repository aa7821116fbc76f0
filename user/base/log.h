/* SPDX-License-Identifier: MIT */
/* One logging path: pr_warn/pr_info/pr_debug("subsystem: message"). Messages go
 * to stderr, one line each, with printf-format checking. */
#ifndef OBS_LOG_H
#define OBS_LOG_H

enum log_level { LOG_WARN = 0, LOG_INFO = 1, LOG_DEBUG = 2 };

extern enum log_level log_level;	/* parsed configuration: -v raises it */

void log_print(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pr_warn(...)  log_print(LOG_WARN, __VA_ARGS__)
#define pr_info(...)  log_print(LOG_INFO, __VA_ARGS__)
#define pr_debug(...) log_print(LOG_DEBUG, __VA_ARGS__)

#endif
