// SPDX-License-Identifier: MIT
/*
 * obsd — the obs daemon: load the probes, rebuild every HTTP request of the
 * observed servers, keep the newest in a bounded store and serve them, with
 * health and readiness, on --listen.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include "api.h"
#include "log.h"
#include "pipeline.h"
#include "store.h"

#define DEFAULT_LISTEN		"127.0.0.1:9464"
#define LOOP_TIMEOUT_MS		50	/* ring buffer drained at least this often */
#define STALL_NS		(5ull * 1000000000ull)
#define API_LIMIT_DEFAULT	100

static volatile sig_atomic_t stop;	/* set by SIGINT/SIGTERM */

struct daemon {
	struct pipeline *p;
	struct store *store;
	struct api *api;
	uint64_t start_ns;
	const char *listen;
};

static void on_signal(int sig)
{
	stop = 1;
}

static void store_sink(void *ctx, const struct record *r)
{
	store__push(ctx, r);
}

static void h_health(struct daemon *d, struct api_reply *rep)
{
	struct jbuf *jb = &rep->body;

	jb_obj_open(jb);
	jb_str(jb, "status", "ok");
	jb_dbl(jb, "uptime_seconds", (mono_ns() - d->start_ns) / 1e9);
	jb_u64(jb, "observed_processes", pipeline__processes(d->p));
	jb_u64(jb, "active_connections", pipeline__active_conns(d->p));
	jb_u64(jb, "events_lost", pipeline__events_lost(d->p));
	jb_u64(jb, "requests_in_flight", pipeline__stats(d->p)->requests_in_flight);
	jb_u64(jb, "requests_total",
	       pipeline__stats(d->p)->records_ok + pipeline__stats(d->p)->records_failed);
	jb_obj_close(jb);
}

static void h_ready(struct daemon *d, struct api_reply *rep)
{
	bool ok = mono_ns() - pipeline__last_consume_ns(d->p) < STALL_NS;

	rep->status = ok ? 200 : 503;
	jb_obj_open(&rep->body);
	jb_str(&rep->body, "status", ok ? "ready" : "stalled");
	jb_obj_close(&rep->body);
}

static void h_requests(struct daemon *d, const char *query, struct api_reply *rep)
{
	size_t limit = API_LIMIT_DEFAULT, n;
	char v[24];

	if (!api_query_get(query, "limit", v, sizeof(v)))
		limit = strtoul(v, NULL, 10);
	n = store__count(d->store);
	if (limit > n)
		limit = n;
	jb_obj_open(&rep->body);
	jb_u64(&rep->body, "count", limit);
	jb_u64(&rep->body, "total", d->store->total);
	jb_arr_open(&rep->body, "requests");
	for (size_t i = 0; i < limit; i++)
		record__json(store__get(d->store, i), &rep->body);
	jb_arr_close(&rep->body);
	jb_obj_close(&rep->body);
}

static void handler(void *ctx, const char *path, const char *query, struct api_reply *rep)
{
	struct daemon *d = ctx;

	if (!strcmp(path, "/health"))
		h_health(d, rep);
	else if (!strcmp(path, "/ready"))
		h_ready(d, rep);
	else if (!strcmp(path, "/api/requests"))
		h_requests(d, query, rep);
	else {
		rep->status = 404;
		jb_obj_open(&rep->body);
		jb_str(&rep->body, "error", "not found");
		jb_obj_close(&rep->body);
	}
}

static int run(struct daemon *d)
{
	struct epoll_event ev = { .events = EPOLLIN }, evs[4];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	uint64_t next_tick = 0;

	if (ep < 0)
		return -errno;
	ev.data.u32 = 1;
	epoll_ctl(ep, EPOLL_CTL_ADD, pipeline__fd(d->p), &ev);
	ev.data.u32 = 2;
	epoll_ctl(ep, EPOLL_CTL_ADD, api__fd(d->api), &ev);
	pr_info("obsd: attached; API on http://%s (/health /ready /api/requests)", d->listen);
	while (!stop) {
		int n = epoll_wait(ep, evs, 4, LOOP_TIMEOUT_MS);
		uint64_t now;

		if (n < 0 && errno != EINTR)
			break;
		pipeline__consume(d->p);
		for (int i = 0; i < n; i++)
			if (evs[i].data.u32 == 2)
				api__process(d->api);
		now = mono_ns();
		if (now >= next_tick) {
			pipeline__tick(d->p);
			api__tick(d->api);
			next_tick = now + 1000000000ull;
		}
	}
	close(ep);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: obsd [options]\n"
		"Observe HTTP/1 servers (uvicorn, hypercorn, daphne, gunicorn, any other) from the\n"
		"kernel and serve what they do. Needs root (or CAP_BPF, CAP_PERFMON).\n\n"
		"  --listen ADDR:PORT     API address (default " DEFAULT_LISTEN ")\n"
		"  --pid PID              observe this process and its children (repeatable)\n"
		"  --comm NAME            observe processes with this command name (repeatable)\n"
		"  --port PORT            observe servers on this local port (repeatable)\n"
		"  --capture-bytes N      bytes captured per read/write (default %d, max %d)\n"
		"  --store-size N         request records kept for /api/requests (default %d)\n"
		"  -v, --verbose          more logging (twice: libbpf debug)\n"
		"  -h, --help\n",
		OBS_CAP_DEFAULT, OBS_CAP_MAX, STORE_DEFAULT);
}

enum { OPT_LISTEN = 256, OPT_PID, OPT_COMM, OPT_PORT, OPT_CAP, OPT_STORE };

static const struct option long_opts[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "pid", required_argument, NULL, OPT_PID },
	{ "comm", required_argument, NULL, OPT_COMM },
	{ "port", required_argument, NULL, OPT_PORT },
	{ "capture-bytes", required_argument, NULL, OPT_CAP },
	{ "store-size", required_argument, NULL, OPT_STORE },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{},
};

static int parse_args(int argc, char **argv, struct obs_filter *f, struct daemon *d,
		      size_t *store_size)
{
	int o, err = 0;
	char *end;

	while ((o = getopt_long(argc, argv, "vh", long_opts, NULL)) != -1) {
		switch (o) {
		case OPT_LISTEN:
			d->listen = optarg;
			break;
		case OPT_PID:
			err = obs_filter__add_pid(f, optarg);
			break;
		case OPT_COMM:
			err = obs_filter__add_comm(f, optarg);
			break;
		case OPT_PORT:
			err = obs_filter__add_port(f, optarg);
			break;
		case OPT_CAP:
			f->cap_bytes = strtoul(optarg, &end, 10);
			if (*end || f->cap_bytes < 64 || f->cap_bytes > OBS_CAP_MAX)
				err = -EINVAL;
			break;
		case OPT_STORE:
			*store_size = strtoul(optarg, &end, 10);
			if (*end || !*store_size || *store_size > 10000000)
				err = -EINVAL;
			break;
		case 'v':
			log_level++;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
		if (err) {
			fprintf(stderr, "obsd: invalid value for --%s: '%s'\n",
				long_opts[o - OPT_LISTEN].name, optarg);
			return err;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "obsd: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct obs_filter f;
	struct daemon d = { .listen = DEFAULT_LISTEN };
	struct sigaction sa = { .sa_handler = on_signal };
	size_t store_size = STORE_DEFAULT;
	int err;

	if (parse_args(argc, argv, &f, &d, &store_size))
		return 2;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	d.start_ns = mono_ns();
	d.store = store__new(store_size);
	if (!d.store) {
		pr_warn("obsd: cannot allocate the request store: %s", strerror(errno));
		return 1;
	}
	d.api = api__new(d.listen, handler, &d);
	if (!d.api) {
		err = 1;
		goto out_store;
	}
	d.p = pipeline__open(&f);
	if (!d.p) {
		err = 1;
		goto out_api;
	}
	pipeline__add_sink(d.p, store_sink, d.store);
	err = run(&d) ? 1 : 0;
	pr_info("obsd: stopping");
	pipeline__free(d.p);
out_api:
	api__free(d.api);
out_store:
	store__free(d.store);
	return err;
}
