/* SPDX-License-Identifier: MIT */
/*
 * config — obsd's configuration file: YAML (parsed with libyaml), one
 * mapping whose keys are obsd's long option names and whose values are what
 * the option takes, written as on the command line:
 *
 *   listen: 0.0.0.0:9464
 *   port: [8000, 8001]          # repeatable options take a list (or one value)
 *   buckets: [0.005, 0.05, 0.5] # joined with ',' into one value
 *   worker-label: true          # options without a value: true or false
 *
 * Values are passed on as written (no YAML type conversion: `no` stays
 * "no"); nulls, nested mappings, aliases, duplicate keys and more than one
 * document are errors. The whole format is in docs/config.md.
 *
 * Precedence is the caller's: obsd applies the file first, skips a key that
 * was given as a flag or whose environment variable is set
 * (config_env_override), so flags beat environment beat file.
 */
#ifndef OBS_CONFIG_H
#define OBS_CONFIG_H

#include <stddef.h>
#include "daemon/options.h"

#define CONFIG_FILE_MAX		(1024 * 1024)	/* bytes */
#define CONFIG_VALUE_MAX	4096		/* bytes of one value (a joined list too) */
#define CONFIG_ERR_VALUE_MAX	64		/* bytes of a value quoted in a message */

/* The keys are the rows of the option table (options.h) whose kind is not
 * CONFIG_NONE. The key named name, or NULL. */
const struct option_def *config_key_find(const char *name);

/*
 * The environment variable (set and non-empty) that overrides the file's
 * value of key, or NULL when there is none (or key is unknown). A
 * signal-specific key (otlp-traces-endpoint) is overridden by its signal's
 * variable and by the shared one; the shared keys (otlp-endpoint,
 * otlp-header) only by the shared variable, since they also feed the signals
 * whose variables are not set: keeping a signal-specific variable from being
 * replaced by a shared key of the file is the caller's part.
 */
const char *config_env_override(const char *key);

/*
 * Called for every key/value of the file in file order; for CONFIG_LIST keys
 * once per element, for CONFIG_FLAG keys with "true" or "false". value is
 * NUL-terminated and valid only during the call: copy what you keep. line is
 * the value's (the element's) line. Return 0, or -errno to reject the value
 * (-ENOENT: key unknown to the caller, -E2BIG: too many values).
 */
typedef int (*config_apply_fn)(void *ctx, const char *key, const char *value, const char *file,
			       int line);

/*
 * Parse path and call apply for every value. Returns 0; -EINVAL on a syntax
 * error, an unknown or duplicate key, a value of the wrong shape or a value
 * apply() rejected, with err = "FILE:LINE: key 'KEY': message" (or
 * "FILE:LINE: after key 'KEY': …" for a syntax error between keys,
 * "FILE:LINE: …" before the first key); -errno when the file cannot be
 * read (err = "FILE: message"). The whole file is checked before the first
 * apply(), so a file with a syntax error, an unknown key or a misshapen
 * value applies nothing; when apply() rejects a value, the values before it
 * stay applied (callers exit on error). err may be NULL when err_len is 0.
 */
int config_load(const char *path, config_apply_fn apply, void *ctx, char *err, size_t err_len);

/* config_load over a buffer; name is used in messages. Exposed for tests. */
int config_parse(const char *name, const char *text, size_t len, config_apply_fn apply,
		 void *ctx, char *err, size_t err_len);

#endif
