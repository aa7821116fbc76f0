/* SPDX-License-Identifier: MIT */
/*
 * options — obsd's one option table. Every option is one row: its long name
 * (also its key in the --config file), its id, the name of its argument and
 * its --help text, how the file writes it, and the environment variables
 * that set it and beat the file. getopt's long options (options_long), the
 * --help text (options_usage), the file's keys (config.c) and the
 * environment (options_env) all come from it, so they cannot drift apart.
 *
 * Adding an option: one row in options.c (in --help order), one OPT_* id
 * below, one case in obsd.c's parse_opt() that applies the value; a row with
 * a kind other than CONFIG_NONE is a config-file key too (document it in
 * docs/config.md).
 */
#ifndef OBS_OPTIONS_H
#define OBS_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

/* How the config file writes an option (config.h). */
enum config_kind {
	CONFIG_NONE,	/* not in the file (--config itself, --record, ...) */
	CONFIG_VALUE,	/* one value */
	CONFIG_LIST,	/* repeatable: one value or a list, apply() once per element */
	CONFIG_CSV,	/* one value, or a list that is joined with ',' (buckets) */
	CONFIG_FLAG,	/* option without argument: true or false */
};

/* getopt_long's values of the long options (the short ones are 'v' and 'h'). */
enum opt_id {
	OPT_LISTEN = 256, OPT_PID, OPT_COMM, OPT_PORT, OPT_UNIX, OPT_SERVICE, OPT_ROUTE,
	OPT_ROUTE_CAP, OPT_WORKER, OPT_CONTAINER_LABEL, OPT_BUCKETS, OPT_TRUSTED, OPT_OTLP_EP,
	OPT_OTLP_TRACES_EP, OPT_OTLP_METRICS_EP, OPT_OTLP_LOGS_EP, OPT_LOGS_EXPORTER,
	OPT_OTLP_HEADER, OPT_SVC_NAME, OPT_SAMPLER, OPT_SAMPLER_ARG, OPT_METRICS_EXPORTER,
	OPT_METRIC_INTERVAL, OPT_METRICS_TEMPORALITY, OPT_SENTRY_DSN, OPT_SENTRY_ENV,
	OPT_SENTRY_RELEASE, OPT_SENTRY_RATE, OPT_LOOP_BLOCK, OPT_QUEUE_TIME, OPT_SYSCALL_HOOKS, OPT_RECORD,
	OPT_REPLAY, OPT_ERRORS_FILE, OPT_CAP, OPT_STORE, OPT_CONFIG, OPT_CHECK_CONFIG,
	OPT_MAX
};

#define OPTIONS_DEFAULT_LISTEN	"127.0.0.1:9464"
#define OPTIONS_MAX	(OPT_MAX - OPT_LISTEN + 2)	/* rows: the long ones, -v, -h */

struct option_def {
	const char *name;	/* long option name and config-file key */
	int id;			/* enum opt_id, or the short option's character */
	const char *arg;	/* the argument's name in --help; NULL: takes none */
	enum config_kind kind;	/* in the config file; CONFIG_NONE: not there */
	const char *env[2];	/* environment variables that beat the file; env[0]
				   sets it (env[1] is a shared one that sets a
				   related option: OTEL_EXPORTER_OTLP_ENDPOINT) */
	const char *help;	/* --help text; '\n' continues it on the next line */
};

/* Every option, in --help order. */
extern const struct option_def options[];
extern const size_t options_n;

/* The option named name, or NULL. */
const struct option_def *option_find(const char *name);

/* The option with id, or NULL. */
const struct option_def *option_by_id(int id);

struct option;
/* getopt_long's table: options_n + 1 entries (the last all zero) into out. */
void options_long(struct option *out);

/* The --help text. */
void options_usage(FILE *f);

/* options_env's apply(): the value of variable var for option o; 0 or -errno. */
typedef int (*options_env_fn)(void *ctx, const struct option_def *o, const char *var,
			      const char *value);

/*
 * The environment, in table order: for every row whose env[0] is set and not
 * empty, apply(its value); a repeatable option's (CONFIG_LIST) variable is a
 * comma-separated list, applied once per non-empty element
 * (OTEL_EXPORTER_OTLP_HEADERS=k=v,k2=v2). value is valid only during the
 * call. Returns 0, or the first error of apply() (nothing after it is
 * applied), or -ENOMEM.
 */
int options_env(options_env_fn apply, void *ctx);

#endif
