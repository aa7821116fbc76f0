// SPDX-License-Identifier: MIT
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "obs.h"
#include "daemon/options.h"
#include "request/route.h"
#include "sinks/store.h"

#define STR_(x)	#x
#define STR(x)	STR_(x)

#define HELP_COLUMN	25	/* where the help text starts */
#define HELP_WIDTH	92	/* a variable that would end past it goes on a line of its own */

/* The shared OTLP keys feed every signal: only the shared variable replaces
 * them whole; obsd keeps a signal-specific variable from being replaced by
 * them (see config_env_override). */
#define OTLP_ENV		"OTEL_EXPORTER_OTLP_ENDPOINT"
#define OTLP_SIGNAL_ENV(s)	{ "OTEL_EXPORTER_OTLP_" s "_ENDPOINT", OTLP_ENV }

const struct option_def options[] = {
	{ "listen", OPT_LISTEN, "ADDR:PORT", CONFIG_VALUE, {},
	  "API address (default " OPTIONS_DEFAULT_LISTEN ")" },
	{ "pid", OPT_PID, "PID", CONFIG_LIST, {},
	  "observe this process and its children (repeatable)" },
	{ "comm", OPT_COMM, "NAME", CONFIG_LIST, {},
	  "observe processes with this command name (repeatable)" },
	{ "port", OPT_PORT, "PORT", CONFIG_LIST, {},
	  "observe servers on this local TCP port (repeatable)" },
	{ "unix", OPT_UNIX, "PATH", CONFIG_LIST, {},
	  "observe servers listening on this UNIX socket path\n"
	  "('@name': abstract; repeatable; --port never selects one)" },
	{ "service", OPT_SERVICE, "KIND:V=NAME", CONFIG_LIST, {},
	  "name a service: pid:1234=api, port:8000=api, comm:gunicorn=api" },
	{ "route", OPT_ROUTE, "PATTERN", CONFIG_LIST, {},
	  "route template such as /users/{id} (repeatable)" },
	{ "route-cap", OPT_ROUTE_CAP, "N", CONFIG_VALUE, {},
	  "distinct routes per service before overflow (default " STR(ROUTE_CAP_DEFAULT) ")" },
	{ "worker-label", OPT_WORKER, NULL, CONFIG_FLAG, {},
	  "add worker=\"<pid>\" to http_* series" },
	{ "container-label", OPT_CONTAINER_LABEL, NULL, CONFIG_FLAG, {},
	  "add container_id=\"<id>\" and pod_uid=\"<uid>\" to http_* series\n"
	  "(container metadata from /proc/PID/cgroup; spans always\n"
	  "carry container.id and k8s.pod.uid)" },
	{ "buckets", OPT_BUCKETS, "LIST", CONFIG_CSV, {},
	  "duration buckets in seconds, e.g. 0.005,0.05,0.5" },
	{ "trusted-proxy", OPT_TRUSTED, "CIDR", CONFIG_LIST, {},
	  "honour X-Request-ID from these peers (default: none);\n"
	  "'unix': from every peer of a UNIX socket" },
	{ "otlp-endpoint", OPT_OTLP_EP, "URL", CONFIG_VALUE, { OTLP_ENV },
	  "OTLP/HTTP base URL, /v1/traces appended;\n"
	  "none: spans stay local" },
	{ "otlp-traces-endpoint", OPT_OTLP_TRACES_EP, "URL", CONFIG_VALUE, OTLP_SIGNAL_ENV("TRACES"),
	  "full traces URL" },
	{ "otlp-metrics-endpoint", OPT_OTLP_METRICS_EP, "URL", CONFIG_VALUE,
	  OTLP_SIGNAL_ENV("METRICS"),
	  "full metrics URL; with an endpoint, metrics are\n"
	  "exported too (docs/config.md)" },
	{ "otlp-header", OPT_OTLP_HEADER, "K=V", CONFIG_LIST, { "OTEL_EXPORTER_OTLP_HEADERS" },
	  "extra export header" },
	{ "otlp-logs-endpoint", OPT_OTLP_LOGS_EP, "URL", CONFIG_VALUE, OTLP_SIGNAL_ENV("LOGS"),
	  "full logs URL; else the base URL + /v1/logs" },
	{ "logs-exporter", OPT_LOGS_EXPORTER, "NAME", CONFIG_VALUE, { "OTEL_LOGS_EXPORTER" },
	  "otlp (default) or none" },
	{ "service-name", OPT_SVC_NAME, "NAME", CONFIG_VALUE, { "OTEL_SERVICE_NAME" },
	  "resource service.name of every span and metric" },
	{ "traces-sampler", OPT_SAMPLER, "NAME", CONFIG_VALUE, { "OTEL_TRACES_SAMPLER" },
	  "always_on, always_off, traceidratio, parentbased_always_on\n"
	  "(default), parentbased_traceidratio" },
	{ "traces-sampler-arg", OPT_SAMPLER_ARG, "R", CONFIG_VALUE, { "OTEL_TRACES_SAMPLER_ARG" },
	  "ratio for the ratio samplers" },
	{ "metrics-exporter", OPT_METRICS_EXPORTER, "E", CONFIG_VALUE, { "OTEL_METRICS_EXPORTER" },
	  "otlp (default) or none" },
	{ "metric-export-interval", OPT_METRIC_INTERVAL, "MS", CONFIG_VALUE,
	  { "OTEL_METRIC_EXPORT_INTERVAL" },
	  "OTLP metrics export interval (default 60000)" },
	{ "metrics-temporality", OPT_METRICS_TEMPORALITY, "T", CONFIG_VALUE,
	  { "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE" },
	  "cumulative (default), delta or lowmemory" },
	{ "sentry-dsn", OPT_SENTRY_DSN, "DSN", CONFIG_VALUE, { "SENTRY_DSN" },
	  "send error events to Sentry" },
	{ "sentry-environment", OPT_SENTRY_ENV, "E", CONFIG_VALUE, { "SENTRY_ENVIRONMENT" },
	  "the Sentry events' environment" },
	{ "sentry-release", OPT_SENTRY_RELEASE, "R", CONFIG_VALUE, { "SENTRY_RELEASE" },
	  "the Sentry events' release" },
	{ "sentry-sample-rate", OPT_SENTRY_RATE, "X", CONFIG_VALUE, { "SENTRY_SAMPLE_RATE" },
	  "share of error events sent to Sentry, 0 to 1" },
	{ "loop-block-ms", OPT_LOOP_BLOCK, "N", CONFIG_VALUE, {},
	  "event-loop iterations this long count as blocked (default 50)" },
	{ "queue-time", OPT_QUEUE_TIME, NULL, CONFIG_FLAG, {},
	  "time how long requests waited in the socket (queue_us); costs\n"
	  "~0.5 us of kernel time per request (docs/bench.md)" },
	{ "syscall-hooks", OPT_SYSCALL_HOOKS, "MODE", CONFIG_VALUE, {},
	  "auto (default): log lines, event-loop timing and prompt\n"
	  "close of UNIX connections from syscall tracepoints, which\n"
	  "slow every syscall on the node a little; off: none of them\n"
	  "(docs/deploy.md)" },
	{ "record", OPT_RECORD, "FILE", CONFIG_NONE, {},
	  "also write every kernel record to FILE (for --replay)" },
	{ "replay", OPT_REPLAY, "FILE", CONFIG_NONE, {},
	  "no kernel: run a recording through the pipeline, print a\n"
	  "summary and exit (deterministic: benchmarks, debugging)" },
	{ "errors-file", OPT_ERRORS_FILE, "PATH", CONFIG_VALUE, {},
	  "also write error events as JSON lines to PATH ('-': stdout)" },
	{ "capture-bytes", OPT_CAP, "N", CONFIG_VALUE, {},
	  "bytes captured per read/write (default " STR(OBS_CAP_DEFAULT) ", max "
	  STR(OBS_CAP_MAX) ")" },
	{ "store-size", OPT_STORE, "N", CONFIG_VALUE, {},
	  "request records kept for /api/requests (default " STR(STORE_DEFAULT) ")" },
	{ "config", OPT_CONFIG, "FILE", CONFIG_NONE, {},
	  "read options from a YAML file (docs/config.md); flags and\n"
	  "the environment beat it" },
	{ "check-config", OPT_CHECK_CONFIG, NULL, CONFIG_NONE, {},
	  "validate the options and --config, then exit 0 (valid) or 2" },
	{ "verbose", 'v', NULL, CONFIG_NONE, {}, "more logging (twice: libbpf debug)" },
	{ "help", 'h', NULL, CONFIG_NONE, {}, "this text" },
};
const size_t options_n = sizeof(options) / sizeof(options[0]);

_Static_assert(sizeof(options) / sizeof(options[0]) == OPTIONS_MAX, "one row per option id");

const struct option_def *option_find(const char *name)
{
	for (size_t i = 0; i < options_n; i++)
		if (!strcmp(options[i].name, name))
			return &options[i];
	return NULL;
}

const struct option_def *option_by_id(int id)
{
	for (size_t i = 0; i < options_n; i++)
		if (options[i].id == id)
			return &options[i];
	return NULL;
}

void options_long(struct option *out)
{
	for (size_t i = 0; i < options_n; i++)
		out[i] = (struct option){ options[i].name,
					  options[i].arg ? required_argument : no_argument, NULL,
					  options[i].id };
	out[options_n] = (struct option){};
}

/* "  -v, --verbose" or "  --listen ADDR:PORT", padded to the help column. */
static void usage_row(FILE *f, const struct option_def *o)
{
	const char *h = o->help;
	int n, pad;

	if (o->id < OPT_LISTEN)
		n = fprintf(f, "  -%c, --%s", o->id, o->name);
	else
		n = fprintf(f, "  --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
	pad = n < HELP_COLUMN - 1 ? HELP_COLUMN - n : 2;
	fprintf(f, "%*s", pad, "");
	n += pad;
	for (const char *nl; (nl = strchr(h, '\n')); h = nl + 1) {
		fprintf(f, "%.*s\n%*s", (int)(nl - h), h, HELP_COLUMN, "");
		n = HELP_COLUMN;
	}
	n += fprintf(f, "%s", h);
	if (o->env[0] && n + 3 + (int)strlen(o->env[0]) > HELP_WIDTH)
		fprintf(f, "\n%*s(%s)", HELP_COLUMN, "", o->env[0]);
	else if (o->env[0])
		fprintf(f, " (%s)", o->env[0]);
	fputc('\n', f);
}

void options_usage(FILE *f)
{
	fputs("Usage: obsd [options]\n"
	      "Observe HTTP servers (uvicorn, hypercorn, daphne, gunicorn, any other) on TCP or\n"
	      "UNIX sockets from the kernel and serve what they do. Needs root (or CAP_BPF, "
	      "CAP_PERFMON).\n\n", f);
	for (size_t i = 0; i < options_n; i++)
		usage_row(f, &options[i]);
}

/* A comma-separated list: apply() once per non-empty element. */
static int env_list(options_env_fn apply, void *ctx, const struct option_def *o, const char *v)
{
	char *dup = strdup(v), *tok, *save;
	int err = 0;

	if (!dup)
		return -ENOMEM;
	for (tok = strtok_r(dup, ",", &save); tok && !err; tok = strtok_r(NULL, ",", &save))
		err = apply(ctx, o, o->env[0], tok);
	free(dup);
	return err;
}

int options_env(options_env_fn apply, void *ctx)
{
	int err = 0;

	for (size_t i = 0; i < options_n && !err; i++) {
		const struct option_def *o = &options[i];
		const char *v = o->env[0] ? getenv(o->env[0]) : NULL;

		if (!v || !*v)
			continue;
		err = o->kind == CONFIG_LIST ? env_list(apply, ctx, o, v) : apply(ctx, o, o->env[0], v);
	}
	return err;
}
