// SPDX-License-Identifier: MIT
/*
 * obsctl — the ad-hoc side of obs.
 *   obsctl trace [--json] [filters]   stream completed requests (loads the probes itself)
 *   obsctl logs [--json] [--follow]   a running obsd's log records (/api/logs)
 *   obsctl health [--daemon ADDR]     ask a running obsd how it is
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "request/errors.h"
#include "request/events.h"
#include "base/ids.h"
#include "base/json.h"
#include "request/loops.h"
#include "base/log.h"
#include "request/pipeline.h"
#include "cli/top.h"

#define DEFAULT_DAEMON	"127.0.0.1:9464"

static volatile sig_atomic_t stop;	/* set by SIGINT/SIGTERM */

static void on_signal(int sig)
{
	stop = 1;
}

struct trace_out {
	bool json;
	struct jbuf jb;
};

static void print_text(const struct record *r)
{
	time_t s = r->wall_start_ns / 1000000000ull;
	struct tm tm;
	char when[16];

	localtime_r(&s, &tm);
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	printf("%s.%03u %7u %-15s %-7s %-40s %3d %9.3fms %8llu %8llu %s%s%s\n", when,
	       (unsigned)(r->wall_start_ns / 1000000 % 1000), r->pid, r->comm,
	       r->method[0] ? r->method : "-", r->path[0] ? r->path : "-", r->status,
	       (r->end_ns - r->start_ns) / 1e6, (unsigned long long)r->bytes_in,
	       (unsigned long long)r->bytes_out, r->request_id, r->outcome ? " FAILED:" : "",
	       r->outcome ? r->error : "");
}

static void trace_sink(void *ctx, const struct record *r)
{
	struct trace_out *o = ctx;

	if (o->json) {
		jb_reset(&o->jb);
		record__json(r, &o->jb);
		if (!o->jb.oom)
			printf("%s\n", o->jb.buf);
	} else {
		print_text(r);
	}
	fflush(stdout);
}

struct events_out {
	bool json;
	struct jbuf jb;
};

static void events_life(void *ctx, const struct life_event *e)
{
	struct events_out *o = ctx;

	if (o->json) {
		jb_reset(&o->jb);
		life_event_json(e, &o->jb);
		if (!o->jb.oom)
			printf("%s\n", o->jb.buf);
	} else {
		const struct record *r = e->ce->r;

		printf("%-19s conn=%llu pid=%u %s %s %s%s%s\n", life_type_name(e->type),
		       (unsigned long long)e->ce->conn_id, e->ce->pid, e->ce->client,
		       r ? r->method : "", r ? r->path : "", e->ce->reason ? " " : "",
		       e->ce->reason ? e->ce->reason : "");
	}
	fflush(stdout);
}

static void events_error(void *ctx, const struct record *r, const struct exc_info *exc)
{
	struct events_out *o = ctx;
	char id[33];

	if (!o->json)
		return;
	ids_uuid4_hex(id);
	jb_reset(&o->jb);
	jb_obj_open(&o->jb);
	jb_str(&o->jb, "type", "Error");
	jb_key(&o->jb, "error");
	error_event_json(r, exc, id, &o->jb);
	jb_obj_close(&o->jb);
	if (!o->jb.oom)
		printf("%s\n", o->jb.buf);
	fflush(stdout);
}

static void events_block(void *ctx, const struct loop_block *b)
{
	struct events_out *o = ctx;

	jb_reset(&o->jb);
	loop_block_json(b, &o->jb);
	if (!o->jb.oom)
		printf("%s\n", o->jb.buf);
	fflush(stdout);
}

/* obsctl trace: one line (or JSON object) per finished request. */
static const struct sink_ops trace_printer = {
	.name = "trace",
	.record = trace_sink,
};

/* obsctl events: lifecycle events, error events and blocked loops. */
static const struct sink_ops events_printer = {
	.name = "events",
	.life = events_life,
	.error = events_error,
	.block = events_block,
};

static int filter_opt(struct obs_filter *f, int o, const char *arg)
{
	char *end;

	switch (o) {
	case 'p':
		return obs_filter__add_pid(f, arg);
	case 'c':
		return obs_filter__add_comm(f, arg);
	case 'P':
		return obs_filter__add_port(f, arg);
	case 'U':
		return obs_filter__add_unix(f, arg);
	case 'b':
		f->cap_bytes = strtoul(arg, &end, 10);
		return *end || f->cap_bytes < 64 || f->cap_bytes > OBS_CAP_MAX ? -EINVAL : 0;
	}
	return -EINVAL;
}

static int stream(int argc, char **argv, bool events);

static int do_trace(int argc, char **argv)
{
	return stream(argc, argv, false);
}

static int do_events(int argc, char **argv)
{
	return stream(argc, argv, true);
}

static int stream(int argc, char **argv, bool events)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "pid", required_argument, NULL, 'p' },
		{ "comm", required_argument, NULL, 'c' },
		{ "port", required_argument, NULL, 'P' },
		{ "unix", required_argument, NULL, 'U' },
		{ "capture-bytes", required_argument, NULL, 'b' },
		{ "verbose", no_argument, NULL, 'v' },
		{},
	};
	static struct pipeline_opts po;
	static struct sinks sinks;
	struct obs_filter *f = &po.filter;
	struct trace_out out = {};
	struct events_out ev_out = {};
	struct sigaction sa = { .sa_handler = on_signal };
	struct pipeline *p;
	struct epoll_event ev = { .events = EPOLLIN };
	int o, ep;

	while ((o = getopt_long(argc, argv, "jv", opts, NULL)) != -1) {
		if (o == 'j') {
			out.json = ev_out.json = true;
		} else if (o == 'v') {
			log_level++;
		} else if (o == '?' || filter_opt(f, o, optarg)) {
			fprintf(stderr, "usage: obsctl %s [--json] [--pid PID] [--comm NAME] "
					"[--port PORT] [--unix PATH] [--capture-bytes N]\n",
				events ? "events" : "trace");
			return 2;
		}
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (events)
		sinks__add(&sinks, &events_printer, &ev_out);
	else
		sinks__add(&sinks, &trace_printer, &out);
	po.sinks = &sinks;
	p = pipeline__open(&po);
	if (!p)
		return 1;
	jb_init(&out.jb);
	jb_init(&ev_out.jb);
	ep = epoll_create1(EPOLL_CLOEXEC);
	epoll_ctl(ep, EPOLL_CTL_ADD, pipeline__fd(p), &ev);
	fprintf(stderr, "obsctl %s: probes attached, waiting for %s (Ctrl-C to stop)\n",
		events ? "events" : "trace", events ? "events" : "requests");
	if (!out.json && !events)
		printf("%-12s %7s %-15s %-7s %-40s %3s %11s %8s %8s %s\n", "TIME", "PID", "COMM",
		       "METHOD", "PATH", "ST", "DURATION", "IN", "OUT", "REQUEST_ID");
	while (!stop) {
		struct epoll_event evs[1];

		epoll_wait(ep, evs, 1, 50);
		pipeline__consume(p);
	}
	close(ep);
	pipeline__free(p);
	jb_free(&out.jb);
	jb_free(&ev_out.jb);
	return 0;
}

/* GET path from a running obsd into a malloc'd NUL-terminated body (*out).
 * Returns the HTTP status, or -1 after printing why. */
static int http_fetch(const char *addr, const char *path, char **out)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char host[64];
	const char *colon = strrchr(addr, ':');
	size_t total = 0, cap = 65536;
	char *buf, *body;
	int fd, status = -1;
	ssize_t n;

	if (!colon || colon - addr >= (long)sizeof(host)) {
		fprintf(stderr, "obsctl: bad daemon address '%s' (want ADDR:PORT)\n", addr);
		return -1;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
	sa.sin_port = htons(atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "obsctl: bad daemon address '%s'\n", addr);
		return -1;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "obsctl: cannot reach obsd at %s: %s\n", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	dprintf(fd, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr);
	buf = malloc(cap);
	while (buf && (n = read(fd, buf + total, cap - 1 - total)) > 0) {
		total += n;
		if (total == cap - 1) {
			char *nb = realloc(buf, cap * 2);

			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	close(fd);
	if (!buf)
		return -1;
	buf[total] = 0;
	sscanf(buf, "HTTP/1.%*c %d", &status);
	body = strstr(buf, "\r\n\r\n");
	*out = strdup(body ? body + 4 : "");
	free(buf);
	return *out ? status : -1;
}

static int http_get(const char *addr, const char *path)
{
	char *body = NULL;
	int status = http_fetch(addr, path, &body);

	if (status < 0)
		return 1;
	printf("%s\n", body);
	free(body);
	return status == 200 ? 0 : 1;
}

static int do_health(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "daemon", required_argument, NULL, 'd' },
		{},
	};
	const char *addr = DEFAULT_DAEMON;
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o != 'd') {
			fprintf(stderr, "usage: obsctl health [--daemon ADDR:PORT]\n");
			return 2;
		}
		addr = optarg;
	}
	return http_get(addr, "/health");
}

/* Minimal extraction of "key":value from one flat JSON object text. */
static void json_field(const char *obj, const char *key, char *out, size_t n)
{
	char pat[64];
	const char *p;
	size_t i = 0;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(obj, pat);
	out[0] = 0;
	if (!p)
		return;
	p += strlen(pat);
	if (*p == '"') {
		for (p++; *p && *p != '"' && i + 1 < n; p++)
			out[i++] = *p == '\\' && p[1] ? *++p : *p;
	} else {
		while (*p && *p != ',' && *p != '}' && i + 1 < n)
			out[i++] = *p++;
	}
	out[i] = 0;
}

static int do_traces(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "daemon", required_argument, NULL, 'd' },
		{ "limit", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{},
	};
	const char *addr = DEFAULT_DAEMON;
	char path[64], *body = NULL, *p;
	int o, limit = 20, status;
	bool json = false;

	while ((o = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		if (o == 'd') {
			addr = optarg;
		} else if (o == 'n') {
			limit = atoi(optarg);
		} else if (o == 'j') {
			json = true;
		} else {
			fprintf(stderr, "usage: obsctl traces [--daemon ADDR:PORT] [--limit N] [--json]\n");
			return 2;
		}
	}
	snprintf(path, sizeof(path), "/api/traces?limit=%d", limit > 0 ? limit : 20);
	status = http_fetch(addr, path, &body);
	if (status != 200) {
		if (status > 0)
			fprintf(stderr, "obsctl: obsd answered %d: %s\n", status, body);
		free(body);
		return 1;
	}
	if (json) {
		printf("%s\n", body);
		free(body);
		return 0;
	}
	printf("%-32s %-16s %-40s %-6s %10s\n", "TRACE_ID", "SPAN_ID", "NAME", "STATUS", "DURATION");
	/* spans are objects whose first key is "trace_id" */
	for (p = strstr(body, "{\"trace_id\""); p; p = strstr(p + 1, "{\"trace_id\"")) {
		char tid[40], sid[24], name[300], code[16], dur[24];

		json_field(p, "trace_id", tid, sizeof(tid));
		json_field(p, "span_id", sid, sizeof(sid));
		json_field(p, "name", name, sizeof(name));
		json_field(p, "code", code, sizeof(code));
		json_field(p, "duration_us", dur, sizeof(dur));
		printf("%-32s %-16s %-40s %-6s %8.3fms\n", tid, sid, name, code, atof(dur) / 1000);
	}
	free(body);
	return 0;
}

/* ---- obsctl logs ---- */

#define LOGS_FOLLOW_MS	500
#define LOGS_FETCH_MAX	100000

/* One record of /api/logs as a line of text. */
static void print_log_text(const char *obj)
{
	char when[40], sev[16], pid[16], tid[40], link[16], body[4096];

	json_field(obj, "time", when, sizeof(when));
	json_field(obj, "severity_text", sev, sizeof(sev));
	json_field(obj, "pid", pid, sizeof(pid));
	json_field(obj, "trace_id", tid, sizeof(tid));
	json_field(obj, "link", link, sizeof(link));
	json_field(obj, "body", body, sizeof(body));
	printf("%-15.15s %-8s %7s %-32s %s\n", strlen(when) > 11 ? when + 11 : when,
	       sev[0] ? sev : "-", pid, tid[0] ? tid : link, body);
}

/*
 * Print the records of an /api/logs answer oldest first (it lists them newest
 * first). Records are the objects starting with {"ts_ns": (a string value
 * cannot hold that unescaped). Returns the answer's "total", or -1.
 */
static long long print_logs(char *body, bool json)
{
	char *starts[8192], total[24];
	int n = 0;

	json_field(body, "total", total, sizeof(total));
	for (char *p = strstr(body, "{\"ts_ns\":"); p && n < 8192; p = strstr(p + 1, "{\"ts_ns\":"))
		starts[n++] = p;
	for (int i = n - 1; i >= 0; i--) {
		char *end = i + 1 < n ? starts[i + 1] - 1 : strrchr(starts[i], ']');

		if (!end)
			continue;
		*end = 0;	/* the ',' before the next record, or the closing ']' */
		if (json)
			printf("%s\n", starts[i]);
		else
			print_log_text(starts[i]);
	}
	fflush(stdout);
	return total[0] ? atoll(total) : -1;
}

static int fetch_logs(const char *addr, long long since, int limit, char **body)
{
	char path[96];
	int status;

	if (since >= 0)
		snprintf(path, sizeof(path), "/api/logs?limit=%d&since=%lld", limit, since);
	else
		snprintf(path, sizeof(path), "/api/logs?limit=%d", limit);
	status = http_fetch(addr, path, body);
	if (status != 200 && status > 0)
		fprintf(stderr, "obsctl: obsd answered %d: %s\n", status, *body);
	return status == 200 ? 0 : -1;
}

static int do_logs(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "daemon", required_argument, NULL, 'd' },
		{ "limit", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "follow", no_argument, NULL, 'f' },
		{},
	};
	struct sigaction sa = { .sa_handler = on_signal };
	const char *addr = DEFAULT_DAEMON;
	bool json = false, follow = false;
	int o, limit = 50;
	long long total;
	char *body = NULL;

	while ((o = getopt_long(argc, argv, "n:f", opts, NULL)) != -1) {
		if (o == 'd') {
			addr = optarg;
		} else if (o == 'n') {
			limit = atoi(optarg);
		} else if (o == 'j') {
			json = true;
		} else if (o == 'f') {
			follow = true;
		} else {
			fprintf(stderr, "usage: obsctl logs [--daemon ADDR:PORT] [--limit N] [--json] "
					"[--follow]\n");
			return 2;
		}
	}
	if (!json)
		printf("%-15s %-8s %7s %-32s %s\n", "TIME", "LEVEL", "PID", "TRACE_ID", "BODY");
	if (fetch_logs(addr, -1, limit > 0 ? limit : 50, &body))
		return free(body), 1;
	total = print_logs(body, json);
	free(body);
	if (!follow)
		return 0;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (!stop && total >= 0) {	/* new records since the last answer's total */
		usleep(LOGS_FOLLOW_MS * 1000);
		body = NULL;
		if (stop || fetch_logs(addr, total, LOGS_FETCH_MAX, &body)) {
			free(body);
			break;
		}
		total = print_logs(body, json);
		free(body);
	}
	return stop ? 0 : 1;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} cmds[] = {
	{ "trace", do_trace, "stream completed requests (standalone: loads the probes)" },
	{ "events", do_events, "stream lifecycle and error events (standalone: loads the probes)" },
	{ "traces", do_traces, "list a running obsd's recent spans (/api/traces)" },
	{ "logs", do_logs, "a running obsd's log records (/api/logs; --follow, --json)" },
	{ "health", do_health, "show a running obsd's /health" },
	{ "top", top_main, "live latency table per route (ncurses; --batch, --json)" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: obsctl COMMAND [options]\n\nCommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "obsctl: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
