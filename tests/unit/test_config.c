// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/daemon/config.c: a valid file with every key and every value
 * shape; unknown keys, values apply() rejects, syntax errors and every
 * other malformed file, each of whose message must name the file, the line
 * and the key; environment overrides; files on disk; every truncation of a
 * valid file. Inputs are copied into heap blocks of exactly their size.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_CALLS 64
#define NAME "obsd.yaml"

#include "check.h"


/* ---- a recording apply() ---- */

struct call {
	char key[32];
	char value[128];
	int line;
};

struct rec {
	struct call calls[MAX_CALLS];
	int n;
	const char *reject_key;		/* apply() answers reject_err for this key ... */
	const char *reject_value;	/* ... and this value (NULL: any value) */
	int reject_err;
};

static int record_apply(void *ctx, const char *key, const char *value, const char *file, int line)
{
	struct rec *r = ctx;

	if (!check(!strcmp(file, NAME) || strstr(file, "obs-test-config"), __FILE__, __LINE__,
		   "apply() got file '%s'", file))
		return -EINVAL;
	if (r->reject_key && !strcmp(key, r->reject_key) &&
	    (!r->reject_value || !strcmp(value, r->reject_value)))
		return r->reject_err;
	if (r->n < MAX_CALLS) {
		snprintf(r->calls[r->n].key, sizeof(r->calls[0].key), "%s", key);
		snprintf(r->calls[r->n].value, sizeof(r->calls[0].value), "%s", value);
		r->calls[r->n].line = line;
	}
	r->n++;
	return 0;
}

/* Parse text from a heap block of exactly its size. */
static int parse(const char *text, struct rec *r, char *err, size_t err_len)
{
	size_t n = strlen(text);
	char *buf = malloc(n ? n : 1);
	int ret;

	if (!buf)
		abort();
	memcpy(buf, text, n);
	ret = config_parse(NAME, buf, n, record_apply, r, err, err_len);
	free(buf);
	return ret;
}

/* ---- a valid file: every key, every value shape ---- */

static const char valid[] =
	"# obsd configuration\n"					/* 1 */
	"listen: 0.0.0.0:9464\n"					/* 2 */
	"pid: 1234\n"							/* 3 */
	"comm: [uvicorn, gunicorn]\n"					/* 4 */
	"port:\n"							/* 5 */
	"  - 8000\n"							/* 6 */
	"  - \"8001\"\n"						/* 7 */
	"service: [\"port:8000=api\", 'comm:gunicorn=web']\n"		/* 8 */
	"route:\n"							/* 9 */
	"  - /users/{id}\n"						/* 10 */
	"  - \"/orders/{id}/items\"\n"					/* 11 */
	"route-cap: 500\n"						/* 12 */
	"worker-label: true\n"						/* 13 */
	"container-label: no\n"						/* 14 */
	"buckets: [0.005, 0.05, 0.5, 5]\n"				/* 15 */
	"trusted-proxy:\n"						/* 16 */
	"  - 10.0.0.0/8\n"						/* 17 */
	"otlp-endpoint: http://otel-collector:4318\n"			/* 18 */
	"otlp-traces-endpoint: http://otel-collector:4318/v1/traces\n"	/* 19 */
	"otlp-header: [\"authorization=Bearer abc\", x-team=web]\n"	/* 20 */
	"service-name: shop\n"						/* 21 */
	"traces-sampler: parentbased_traceidratio\n"			/* 22 */
	"traces-sampler-arg: 0.25\n"					/* 23 */
	"errors-file: /var/log/obsd/errors.jsonl\n"			/* 24 */
	"sentry-dsn: https://key@sentry.example.com/42\n"		/* 25 */
	"sentry-environment: 'no'   # a string, not a boolean\n"	/* 26 */
	"sentry-release: \"1.2.3\"\n"					/* 27 */
	"sentry-sample-rate: .5\n"					/* 28 */
	"capture-bytes: 4096\n"						/* 29 */
	"store-size: 16384\n"						/* 30 */
	"loop-block-ms: 100\n"						/* 31 */
	"unix: [/run/app.sock, \"@abstract\"]\n"			/* 32 */
	"otlp-metrics-endpoint: http://otel-collector:4318/v1/metrics\n"	/* 33 */
	"metrics-exporter: otlp\n"					/* 34 */
	"metric-export-interval: 15000\n"				/* 35 */
	"metrics-temporality: delta\n"					/* 36 */
	"otlp-logs-endpoint: http://otel-collector:4318/v1/logs\n"	/* 37 */
	"logs-exporter: otlp\n"					/* 38 */
	"queue-time: true\n"						/* 39 */
	"syscall-hooks: off\n";					/* 40 */

static const struct call valid_calls[] = {
	{ "listen", "0.0.0.0:9464", 2 },
	{ "pid", "1234", 3 },
	{ "comm", "uvicorn", 4 },
	{ "comm", "gunicorn", 4 },
	{ "port", "8000", 6 },
	{ "port", "8001", 7 },
	{ "service", "port:8000=api", 8 },
	{ "service", "comm:gunicorn=web", 8 },
	{ "route", "/users/{id}", 10 },
	{ "route", "/orders/{id}/items", 11 },
	{ "route-cap", "500", 12 },
	{ "worker-label", "true", 13 },
	{ "container-label", "false", 14 },
	{ "buckets", "0.005,0.05,0.5,5", 15 },
	{ "trusted-proxy", "10.0.0.0/8", 17 },
	{ "otlp-endpoint", "http://otel-collector:4318", 18 },
	{ "otlp-traces-endpoint", "http://otel-collector:4318/v1/traces", 19 },
	{ "otlp-header", "authorization=Bearer abc", 20 },
	{ "otlp-header", "x-team=web", 20 },
	{ "service-name", "shop", 21 },
	{ "traces-sampler", "parentbased_traceidratio", 22 },
	{ "traces-sampler-arg", "0.25", 23 },
	{ "errors-file", "/var/log/obsd/errors.jsonl", 24 },
	{ "sentry-dsn", "https://key@sentry.example.com/42", 25 },
	{ "sentry-environment", "no", 26 },
	{ "sentry-release", "1.2.3", 27 },
	{ "sentry-sample-rate", ".5", 28 },
	{ "capture-bytes", "4096", 29 },
	{ "store-size", "16384", 30 },
	{ "loop-block-ms", "100", 31 },
	{ "unix", "/run/app.sock", 32 },
	{ "unix", "@abstract", 32 },
	{ "otlp-metrics-endpoint", "http://otel-collector:4318/v1/metrics", 33 },
	{ "metrics-exporter", "otlp", 34 },
	{ "metric-export-interval", "15000", 35 },
	{ "metrics-temporality", "delta", 36 },
	{ "otlp-logs-endpoint", "http://otel-collector:4318/v1/logs", 37 },
	{ "logs-exporter", "otlp", 38 },
	{ "queue-time", "true", 39 },
	{ "syscall-hooks", "off", 40 },
};

static void test_valid(void)
{
	struct rec r = {};
	char err[256] = "untouched";
	bool key_used[64] = {};

	cur_case = "valid file";
	CHECK_I(parse(valid, &r, err, sizeof(err)), 0);
	CHECK_S(err, "");
	if (!CHECK_I(r.n, ARRAY_SIZE(valid_calls)))
		return;
	for (size_t i = 0; i < ARRAY_SIZE(valid_calls); i++) {
		CHECK_S(r.calls[i].key, valid_calls[i].key);
		CHECK_S(r.calls[i].value, valid_calls[i].value);
		CHECK_I(r.calls[i].line, valid_calls[i].line);
	}
	/* the file above uses every key there is */
	for (size_t i = 0; i < ARRAY_SIZE(valid_calls); i++) {
		const struct option_def *k = config_key_find(valid_calls[i].key);

		if (CHECK(k != NULL))
			key_used[k - options] = true;
	}
	for (size_t i = 0; i < options_n; i++)
		check(key_used[i] || options[i].kind == CONFIG_NONE, __FILE__, __LINE__,
		      "key %s not in the valid file", options[i].name);
}

/* Files with nothing to apply are valid. */
static void test_empty(void)
{
	static const char *const texts[] = { "", "# only a comment\n", "---\n", "---\n...\n",
					     "~\n", "{}\n", "pid: []\n" };

	for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
		struct rec r = {};
		char err[256];

		cur_case = texts[i];
		CHECK_I(parse(texts[i], &r, err, sizeof(err)), 0);
		CHECK_I(r.n, 0);
	}
}

/* ---- errors: each names the file, the line and the key ---- */

struct err_case {
	const char *name;
	const char *text;
	const char *reject_key, *reject_value;	/* apply() rejects these */
	int reject_err;
	const char *want;	/* the message starts with this */
	int applied;		/* apply() calls that succeeded before the problem: only
				 * apply() rejections leave some, a broken file applies nothing */
};

static const struct err_case err_cases[] = {
	{ "unknown key",
	  "listen: 127.0.0.1:9464\n\nlisten-addr: 0.0.0.0:1\n", NULL, NULL, 0,
	  NAME ":3: key 'listen-addr': unknown key", 0 },
	{ "unknown key (underscore spelling)",
	  "otlp_endpoint: http://c:4318\n", NULL, NULL, 0,
	  NAME ":1: key 'otlp_endpoint': unknown key", 0 },
	{ "bad value: apply() rejects",
	  "pid: 1\nstore-size: lots\n", "store-size", NULL, -EINVAL,
	  NAME ":2: key 'store-size': invalid value 'lots'", 1 },
	{ "bad value: a list element, on its own line",
	  "port:\n  - 8000\n  - 80x0\n  - 9000\n", "port", "80x0", -EINVAL,
	  NAME ":3: key 'port': invalid value '80x0'", 1 },
	{ "bad value: too many",
	  "comm: [a, b]\n", "comm", "b", -E2BIG,
	  NAME ":1: key 'comm': too many values: 'b' is one over the limit", 1 },
	{ "bad value: key the caller does not know",
	  "container-label: true\n", "container-label", NULL, -ENOENT,
	  NAME ":1: key 'container-label': not supported by this obsd", 0 },
	{ "bad value: joined list",
	  "buckets:\n  - 0.5\n  - 0.1\n", "buckets", NULL, -EINVAL,
	  NAME ":2: key 'buckets': invalid value '0.5,0.1'", 0 },
	{ "syntax error inside a value",
	  "listen: 127.0.0.1:9464\npid: [1, 2\nport: 8000\n", NULL, NULL, 0,
	  NAME ":3: key 'pid': syntax error: did not find expected ',' or ']'", 0 },
	{ "syntax error between keys",
	  "listen: 127.0.0.1:9464\nport 8000\ncomm: x\n", NULL, NULL, 0,
	  NAME ":3: after key 'listen': syntax error: could not find expected ':'", 0 },
	{ "syntax error: tab indentation",
	  "port:\n\t- 8000\n", NULL, NULL, 0,
	  NAME ":2: key 'port': syntax error: found character that cannot start any token", 0 },
	{ "syntax error: bad indentation",
	  "port:\n  - 8000\n - 9000\n", NULL, NULL, 0,
	  NAME ":3: after key 'port': syntax error:", 0 },
	{ "syntax error before any key",
	  "\"unterminated: 1\n", NULL, NULL, 0,
	  NAME ":2: syntax error: found unexpected end of stream", 0 },
	{ "not UTF-8",
	  "listen: 127.0.0.1:9464\nservice-name: caf\xe9\n", NULL, NULL, 0,
	  NAME ":2: key 'service-name': not UTF-8 text:", 0 },
	{ "duplicate key",
	  "port: 8000\ncomm: x\nport: 9000\n", NULL, NULL, 0,
	  NAME ":3: key 'port': given twice (first at line 1)", 0 },
	{ "null value",
	  "listen:\nport: 1\n", NULL, NULL, 0,
	  NAME ":1: key 'listen': no value", 0 },
	{ "null list element",
	  "port:\n  - 1\n  -\n", NULL, NULL, 0,
	  NAME ":3: key 'port': no value", 0 },
	{ "list for a single value",
	  "listen: [a, b]\n", NULL, NULL, 0,
	  NAME ":1: key 'listen': takes one value, not a list", 0 },
	{ "mapping as a value",
	  "otlp-endpoint:\n  url: http://c:4318\n", NULL, NULL, 0,
	  NAME ":2: key 'otlp-endpoint': expects a value, not a mapping", 0 },
	{ "list in a list",
	  "port: [[1, 2]]\n", NULL, NULL, 0,
	  NAME ":1: key 'port': list elements must be values, not lists", 0 },
	{ "flag not a boolean",
	  "worker-label: sometimes\n", NULL, NULL, 0,
	  NAME ":1: key 'worker-label': expects true or false, not 'sometimes'", 0 },
	{ "flag as a list",
	  "worker-label: [true]\n", NULL, NULL, 0,
	  NAME ":1: key 'worker-label': takes one value, not a list", 0 },
	{ "alias",
	  "comm: &c uvicorn\nservice-name: *c\n", NULL, NULL, 0,
	  NAME ":2: key 'service-name': aliases (*name) are not supported", 0 },
	{ "NUL byte in a value",
	  "service-name: \"a\\0b\"\n", NULL, NULL, 0,
	  NAME ":1: key 'service-name': value contains a NUL byte", 0 },
	{ "empty joined list",
	  "buckets: []\n", NULL, NULL, 0,
	  NAME ":1: key 'buckets': empty list", 0 },
	{ "two documents",
	  "port: 1\n---\nport: 2\n", NULL, NULL, 0,
	  NAME ":2: more than one document", 0 },
	{ "not a mapping",
	  "- port: 1\n", NULL, NULL, 0,
	  NAME ":1: the file must be a mapping of option: value", 0 },
	{ "a list as a key",
	  "? [a, b]\n: 1\n", NULL, NULL, 0,
	  NAME ":1: keys must be option names, not lists", 0 },
};

static void test_errors(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(err_cases); i++) {
		const struct err_case *c = &err_cases[i];
		struct rec r = { .reject_key = c->reject_key, .reject_value = c->reject_value,
				 .reject_err = c->reject_err };
		char err[512];

		cur_case = c->name;
		CHECK_I(parse(c->text, &r, err, sizeof(err)), -EINVAL);
		check(!strncmp(err, c->want, strlen(c->want)), __FILE__, __LINE__,
		      "message \"%s\" does not start with \"%s\"", err, c->want);
		CHECK(strchr(err, '\n') == NULL);
		CHECK_I(r.n, c->applied);
	}
}

/* A long value is quoted cut, on one line; a small or absent buffer is safe. */
static void test_messages(void)
{
	char text[CONFIG_VALUE_MAX + 64], err[512], tiny[12];
	struct rec r = { .reject_key = "service-name", .reject_err = -EINVAL };
	size_t n;

	cur_case = "long value in message";
	n = snprintf(text, sizeof(text), "service-name: \"");
	memset(text + n, 'v', 1000);
	snprintf(text + n + 1000, sizeof(text) - n - 1000, "\\nw\"\n");
	CHECK_I(parse(text, &r, err, sizeof(err)), -EINVAL);
	CHECK(strlen(err) < 200);
	CHECK(strstr(err, "...") != NULL);
	CHECK(strchr(err, '\n') == NULL);

	cur_case = "value too long";
	n = snprintf(text, sizeof(text), "service-name: ");
	memset(text + n, 'v', CONFIG_VALUE_MAX + 1);
	snprintf(text + n + CONFIG_VALUE_MAX + 1, sizeof(text) - n - CONFIG_VALUE_MAX - 1, "\n");
	r = (struct rec){};
	CHECK_I(parse(text, &r, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, NAME ":1: key 'service-name': value longer than") == err);

	cur_case = "tiny and absent error buffers";
	r = (struct rec){};
	CHECK_I(parse("listen-addr: x\n", &r, tiny, sizeof(tiny)), -EINVAL);
	CHECK_I(strlen(tiny), sizeof(tiny) - 1);
	CHECK_I(parse("listen-addr: x\n", &r, NULL, 0), -EINVAL);
	CHECK_I(parse("listen: x\n", &r, NULL, 0), 0);
}

/* Every prefix of the valid file: no read past it, 0 or -EINVAL with a message. */
static void test_truncations(void)
{
	size_t n = strlen(valid);

	cur_case = "truncations";
	for (size_t k = 0; k <= n; k++) {
		char *buf = malloc(k ? k : 1), err[512];
		struct rec r = {};
		int ret;

		if (!buf)
			abort();
		memcpy(buf, valid, k);
		ret = config_parse(NAME, buf, k, record_apply, &r, err, sizeof(err));
		CHECK(ret == 0 || ret == -EINVAL);
		if (ret)
			CHECK(!strncmp(err, NAME ":", strlen(NAME) + 1));
		free(buf);
	}
}

/* ---- environment and files ---- */

static void test_env(void)
{
	cur_case = "environment overrides";
	unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
	unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	unsetenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
	unsetenv("OTEL_SERVICE_NAME");
	CHECK(config_env_override("otlp-endpoint") == NULL);
	CHECK(config_env_override("listen") == NULL);
	CHECK(config_env_override("no-such-key") == NULL);
	setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces", 1);
	/* the shared key still feeds metrics: obsd keeps it off traces */
	CHECK(config_env_override("otlp-endpoint") == NULL);
	CHECK_S(config_env_override("otlp-traces-endpoint") ?: "",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	CHECK(config_env_override("otlp-metrics-endpoint") == NULL);
	unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:4318/v1/metrics", 1);
	CHECK(config_env_override("otlp-endpoint") == NULL);
	CHECK(config_env_override("otlp-traces-endpoint") == NULL);
	CHECK_S(config_env_override("otlp-metrics-endpoint") ?: "",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
	unsetenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", 1);
	CHECK_S(config_env_override("otlp-endpoint") ?: "", "OTEL_EXPORTER_OTLP_ENDPOINT");
	CHECK_S(config_env_override("otlp-traces-endpoint") ?: "", "OTEL_EXPORTER_OTLP_ENDPOINT");
	CHECK_S(config_env_override("otlp-metrics-endpoint") ?: "", "OTEL_EXPORTER_OTLP_ENDPOINT");
	setenv("OTEL_SERVICE_NAME", "", 1);	/* set but empty: no override */
	CHECK(config_env_override("service-name") == NULL);
	setenv("OTEL_SERVICE_NAME", "shop", 1);
	CHECK_S(config_env_override("service-name") ?: "", "OTEL_SERVICE_NAME");
	unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
	unsetenv("OTEL_SERVICE_NAME");
}

/* options_env: each row's first variable, in table order, a list split on ','. */
struct env_seen {
	char got[8][64];
	int n, fail_at;
};

static int env_record(void *ctx, const struct option_def *o, const char *var, const char *value)
{
	struct env_seen *e = ctx;

	if (e->n == e->fail_at)
		return -EINVAL;
	if (e->n < 8)
		snprintf(e->got[e->n], sizeof(e->got[0]), "%s %s=%s", o->name, var, value);
	e->n++;
	return 0;
}

static void test_options_env(void)
{
	struct env_seen e = { .fail_at = -1 };

	cur_case = "options_env";
	for (size_t i = 0; i < options_n; i++)
		for (size_t j = 0; j < 2; j++)
			if (options[i].env[j])
				unsetenv(options[i].env[j]);
	CHECK_I(options_env(env_record, &e), 0);
	CHECK_I(e.n, 0);
	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", 1);	/* otlp-endpoint only */
	setenv("OTEL_EXPORTER_OTLP_HEADERS", ",a=1,,b=2,", 1);	/* a list */
	setenv("OTEL_SERVICE_NAME", "", 1);			/* set but empty: skipped */
	setenv("SENTRY_RELEASE", "r1", 1);
	CHECK_I(options_env(env_record, &e), 0);
	if (CHECK_I(e.n, 4)) {
		CHECK_S(e.got[0], "otlp-endpoint OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318");
		CHECK_S(e.got[1], "otlp-header OTEL_EXPORTER_OTLP_HEADERS=a=1");
		CHECK_S(e.got[2], "otlp-header OTEL_EXPORTER_OTLP_HEADERS=b=2");
		CHECK_S(e.got[3], "sentry-release SENTRY_RELEASE=r1");
	}
	e = (struct env_seen){ .fail_at = 1 };	/* the first error stops the walk */
	CHECK_I(options_env(env_record, &e), -EINVAL);
	CHECK_I(e.n, 1);
	unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
	unsetenv("OTEL_EXPORTER_OTLP_HEADERS");
	unsetenv("OTEL_SERVICE_NAME");
	unsetenv("SENTRY_RELEASE");
}

static void test_keys(void)
{
	cur_case = "key table";
	for (size_t i = 0; i < options_n; i++) {
		const char *n = options[i].name;

		if (options[i].kind == CONFIG_NONE) {
			CHECK(config_key_find(n) == NULL);
			continue;
		}
		CHECK(config_key_find(n) == &options[i]);
		check(strspn(n, "abcdefghijklmnopqrstuvwxyz-") == strlen(n), __FILE__, __LINE__,
		      "key '%s' is not a long option name", n);
	}
	CHECK(config_key_find("config") == NULL);
	CHECK(config_key_find("check-config") == NULL);
	CHECK(config_key_find("") == NULL);
}

static void test_files(void)
{
	char path[] = "/tmp/obs-test-config.XXXXXX", err[512];
	struct rec r = {};
	FILE *f;
	int fd;

	cur_case = "config_load";
	fd = mkstemp(path);
	if (!CHECK(fd >= 0))
		return;
	f = fdopen(fd, "w");
	fputs("listen: 127.0.0.1:9999\nport: [1, 2]\nbogus: 1\n", f);
	fclose(f);
	CHECK_I(config_load(path, record_apply, &r, err, sizeof(err)), -EINVAL);
	CHECK_I(r.n, 0);	/* an unknown key: nothing applied */
	CHECK(!strncmp(err, path, strlen(path)));
	CHECK(strstr(err, ":3: key 'bogus': unknown key") != NULL);

	f = fopen(path, "w");
	fputs("listen: 127.0.0.1:9999\nport: [1, 2]\n", f);
	fclose(f);
	CHECK_I(config_load(path, record_apply, &r, err, sizeof(err)), 0);
	CHECK_I(r.n, 3);

	f = fopen(path, "w");
	for (int i = 0; f && i <= CONFIG_FILE_MAX / 16; i++)
		fputs("# padding.......\n", f);
	if (f)
		fclose(f);
	CHECK_I(config_load(path, record_apply, &r, err, sizeof(err)), -EFBIG);
	CHECK(strstr(err, "larger than") != NULL);
	unlink(path);

	CHECK_I(config_load(path, record_apply, &r, err, sizeof(err)), -ENOENT);
	CHECK(!strncmp(err, path, strlen(path)) && strstr(err, ": cannot open: ") != NULL);
}

int main(void)
{
	test_valid();
	test_empty();
	test_errors();
	test_messages();
	test_truncations();
	test_env();
	test_options_env();
	test_keys();
	test_files();
	printf("test_config: %d checks, %d failed\n", n_checks, n_failed);
	return n_failed ? 1 : 0;
}
