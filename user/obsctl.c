// SPDX-License-Identifier: MIT
/*
 * obsctl — the ad-hoc side of obs.
 *   obsctl trace [--json] [filters]   stream completed requests (loads the probes itself)
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
#include "json.h"
#include "log.h"
#include "pipeline.h"

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
	case 'b':
		f->cap_bytes = strtoul(arg, &end, 10);
		return *end || f->cap_bytes < 64 || f->cap_bytes > OBS_CAP_MAX ? -EINVAL : 0;
	}
	return -EINVAL;
}

static int do_trace(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "pid", required_argument, NULL, 'p' },
		{ "comm", required_argument, NULL, 'c' },
		{ "port", required_argument, NULL, 'P' },
		{ "capture-bytes", required_argument, NULL, 'b' },
		{ "verbose", no_argument, NULL, 'v' },
		{},
	};
	static struct pipeline_opts po;
	struct obs_filter *f = &po.filter;
	struct trace_out out = {};
	struct sigaction sa = { .sa_handler = on_signal };
	struct pipeline *p;
	struct epoll_event ev = { .events = EPOLLIN };
	int o, ep;

	while ((o = getopt_long(argc, argv, "jv", opts, NULL)) != -1) {
		if (o == 'j') {
			out.json = true;
		} else if (o == 'v') {
			log_level++;
		} else if (o == '?' || filter_opt(f, o, optarg)) {
			fprintf(stderr, "usage: obsctl trace [--json] [--pid PID] [--comm NAME] "
					"[--port PORT] [--capture-bytes N]\n");
			return 2;
		}
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	p = pipeline__open(&po);
	if (!p)
		return 1;
	jb_init(&out.jb);
	pipeline__add_sink(p, trace_sink, &out);
	ep = epoll_create1(EPOLL_CLOEXEC);
	epoll_ctl(ep, EPOLL_CTL_ADD, pipeline__fd(p), &ev);
	fprintf(stderr, "obsctl trace: probes attached, waiting for requests (Ctrl-C to stop)\n");
	if (!out.json)
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
	return 0;
}

/* GET path from a running obsd; prints the body. */
static int http_get(const char *addr, const char *path)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char host[64], buf[65536];
	const char *colon = strrchr(addr, ':');
	int fd, n, total = 0;
	char *body;

	if (!colon || colon - addr >= (long)sizeof(host)) {
		fprintf(stderr, "obsctl: bad daemon address '%s' (want ADDR:PORT)\n", addr);
		return 2;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
	sa.sin_port = htons(atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "obsctl: bad daemon address '%s'\n", addr);
		return 2;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "obsctl: cannot reach obsd at %s: %s\n", addr, strerror(errno));
		return 1;
	}
	dprintf(fd, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr);
	while ((n = read(fd, buf + total, sizeof(buf) - 1 - total)) > 0)
		total += n;
	close(fd);
	buf[total] = 0;
	body = strstr(buf, "\r\n\r\n");
	printf("%s\n", body ? body + 4 : buf);
	return strncmp(buf, "HTTP/1.1 200", 12) ? 1 : 0;
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

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} cmds[] = {
	{ "trace", do_trace, "stream completed requests (standalone: loads the probes)" },
	{ "health", do_health, "show a running obsd's /health" },
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
