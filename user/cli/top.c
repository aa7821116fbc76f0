// SPDX-License-Identifier: MIT
/*
 * obsctl top — options and the main loop (see top.h). The parts, one
 * concern each: top_model (rows and their windows), top_loops (event loops
 * over the window), top_source_local / top_source_daemon (where the numbers
 * come from), top_frame (one frame's numbers, sorted and filtered),
 * top_text (a frame as text), top_view (the ncurses screens), top_batch
 * (--batch and --json frames).
 *
 * The loop never blocks on anything but poll(): the terminal, the source's
 * descriptors and the time of the next frame. A frame is due every
 * --interval; it asks the source to refresh and is shown once the refresh is
 * complete. q leaves at once: the terminal is given back first, then the
 * source closes without waiting for anything (top_source.h).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/log.h"
#include "cli/top.h"
#include "cli/top_batch.h"
#include "cli/top_frame.h"
#include "cli/top_source.h"
#include "cli/top_view.h"

#define TOP_WINDOW_DEFAULT	10	/* seconds of the sliding window */
#define TOP_INTERVAL_DEFAULT	1.0	/* seconds between frames */
#define TOP_INTERVAL_MIN	0.1
#define TOP_INTERVAL_MAX	3600.0
#define TOP_DAEMON_DEFAULT	"127.0.0.1:9464"	/* obsd's default --listen */
#define NS_PER_MS		1000000ull

static volatile sig_atomic_t top_stop;	/* set by SIGINT/SIGTERM */

static void on_signal(int sig)
{
	top_stop = 1;
}

struct top {
	struct top_opts o;		/* parsed; sort and filter change by key */
	struct pipeline_opts po;	/* standalone: which servers to observe */
	struct top_model m;
	struct top_loops loops;
	struct top_source *src;		/* owned */
	struct top_frame f;
	struct top_view *view;		/* the screen, owned; NULL with --batch */
	struct jbuf jb;			/* --json frames are built here */
};

/* ---- the main loop -------------------------------------------------------------- */

/* Milliseconds from now to `until` (CLOCK_MONOTONIC ns), rounded up; 0 when past. */
static int ms_until(uint64_t until)
{
	uint64_t now = mono_ns();

	return until > now ? (until - now + NS_PER_MS - 1) / NS_PER_MS : 0;
}

/* The frame after the one due at prev; from now when the loop fell behind. */
static uint64_t next_frame(uint64_t prev, double interval)
{
	uint64_t step = (uint64_t)(interval * TOP_NS_PER_S), now = mono_ns();

	return prev + step > now ? prev + step : now + step;
}

static struct top_view_data view_data(struct top *tp)
{
	return (struct top_view_data){ .f = &tp->f, .o = &tp->o, .m = &tp->m,
				       .st = top_source__stats(tp->src) };
}

/* The refresh is complete: show the frame of now. false when stdout is gone (| head). */
static bool top__frame(struct top *tp)
{
	const struct top_stats *st = top_source__stats(tp->src);
	struct top_view_data d = view_data(tp);
	struct top_batch b = { .f = &tp->f, .m = &tp->m, .ls = &tp->loops, .st = st,
			       .o = &tp->o, .jb = &tp->jb };

	top_model__advance(&tp->m, mono_ns());
	if (!tp->view || !top_view__paused(tp->view))
		top_frame__compute(&tp->f, &tp->m, &tp->loops, st, &tp->o);
	if (tp->view) {
		top_view__draw(tp->view, &d);
		return true;
	}
	top_batch__print(&b);
	return !ferror(stdout);
}

/* Wait for the terminal, the source or the next frame, whichever comes first. */
static void top__wait(struct top *tp, int ms)
{
	struct pollfd pfd[1 + TOP_POLLFDS_MAX];
	int n = 0;

	if (tp->view)
		pfd[n++] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
	n += top_source__pollfds(tp->src, pfd + n, TOP_POLLFDS_MAX, &ms);
	poll(pfd, n, ms);
}

static int top__run(struct top *tp)
{
	uint64_t next = mono_ns();
	bool waiting = false;		/* a frame is due, its refresh under way */
	long frames = 0;

	while (!top_stop) {
		if (!waiting && mono_ns() >= next) {
			top_source__refresh(tp->src);
			waiting = true;
		}
		top__wait(tp, waiting ? -1 : ms_until(next));
		if (tp->view) {
			struct top_view_data d = view_data(tp);

			if (top_view__keys(tp->view, &d) == TOP_KEYS_QUIT)
				break;
		}
		if (!top_source__pump(tp->src) || !waiting)
			continue;
		waiting = false;
		if (!top__frame(tp))
			break;
		if (tp->o.iterations && ++frames >= tp->o.iterations)
			break;
		next = next_frame(next, tp->o.interval);
	}
	return 0;
}

static int top__open(struct top *tp)
{
	struct sigaction sa = { .sa_handler = on_signal };

	top_model__init(&tp->m, tp->o.window);
	top_loops__init(&tp->loops, tp->o.window);
	top_frame__init(&tp->f);
	jb_init(&tp->jb);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (tp->o.daemon)
		tp->src = top_source_daemon__open(tp->o.daemon, &tp->m, &tp->loops);
	else
		tp->src = top_source_local__open(&tp->po, &tp->m, &tp->loops);
	if (!tp->src)
		return 1;
	if (!tp->o.batch) {
		tp->view = top_view__open();
		if (!tp->view)
			return 1;
	}
	return 0;
}

/*
 * The terminal first, so that it is back before anything else is undone; the
 * source last: standalone, closing it forks the probes' teardown, and every
 * page this process writes after a fork is copied first.
 */
static void top__close(struct top *tp)
{
	top_view__close(tp->view);
	tp->view = NULL;
	top_model__free(&tp->m);
	top_loops__free(&tp->loops);
	jb_free(&tp->jb);
	top_source__free(tp->src);
	tp->src = NULL;
}

/* ---- options -------------------------------------------------------------------- */

static void top__usage(FILE *f)
{
	fprintf(f,
		"Usage: obsctl top [options]\n"
		"Live latency table: one row per (service, method, route) with requests/s,\n"
		"p50/p90/p99/max latency, error %%, in flight and bytes/s over a sliding\n"
		"window.\n\n"
		"  --window S          window of rates and percentiles in seconds\n"
		"                      (default %d, %d..%d)\n"
		"  --interval S        seconds between frames (default %g)\n"
		"  --sort COLUMN       rps, p50, p90, p99, max, err, inflight, bytes, route,\n"
		"                      requests (default rps; numbers largest first)\n"
		"  --filter TEXT       only rows whose service, method or route contains TEXT\n"
		"  -b, --batch         plain-text frames on stdout instead of the screen\n"
		"  --json              one JSON object per frame on stdout (implies --batch)\n"
		"  -n, --iterations N  with --batch/--json: stop after N frames (default: never)\n"
		"  --daemon ADDR:PORT  read a running obsd (its /api/stats, once a frame)\n"
		"                      instead of loading the probes (obsd's default: %s)\n"
		"  --pid PID, --comm NAME, --port PORT, --unix PATH, --capture-bytes N\n"
		"                      without --daemon: which servers to observe, as obsd\n"
		"  -v, --verbose, -h, --help\n\n"
		"Without --daemon obsctl loads the probes itself: that needs root (or CAP_BPF\n"
		"and CAP_PERFMON). Requests are counted from the moment top starts.\n"
		"Columns: REQS requests since top started; REQ/S, P50ms..MAXms, ERR%% (5xx and\n"
		"failed requests), BYTES/S (request + response) over the window; INFL requests\n"
		"in flight in the row's service (per service, shared by its routes): from the\n"
		"open connections standalone, from obsd's http_requests_in_flight (/api/stats)\n"
		"with --daemon. With --daemon the slowest single requests are not known (obsd\n"
		"keeps totals) and MAXms is the upper bound of the slowest latency bucket.\n"
		"Event loops, per worker over the window: p99 busy time of an\n"
		"iteration (upper bound of its log2 bucket) and blocked iterations: the\n"
		"\"loop p99\" line, the LOOP section of --batch, \"loops\" in --json.\n"
		"Keys on the screen: h or ? for help, q to quit.\n",
		TOP_WINDOW_DEFAULT, TOP_WINDOW_MIN, TOP_WINDOW_MAX, TOP_INTERVAL_DEFAULT,
		TOP_DAEMON_DEFAULT);
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_seconds(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= TOP_INTERVAL_MIN && v <= TOP_INTERVAL_MAX))
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_sort(const char *s, enum top_col *out)
{
	for (int c = 0; c < COL_N; c++) {
		if (!strcmp(s, top_cols[c].name)) {
			*out = c;
			return 0;
		}
	}
	return -EINVAL;
}

/* A standalone target option (the same as obsd's). */
static int target_opt(struct obs_filter *f, int o, const char *arg)
{
	long v;

	switch (o) {
	case 'p':
		return obs_filter__add_pid(f, arg);
	case 'c':
		return obs_filter__add_comm(f, arg);
	case 'P':
		return obs_filter__add_port(f, arg);
	case 'U':
		return obs_filter__add_unix(f, arg);
	case 'C':
		if (parse_long(arg, OBS_TAIL_MAX, OBS_CAP_MAX, &v))
			return -EINVAL;
		f->cap_bytes = v;
		return 0;
	}
	return -EINVAL;
}

static int opt_one(struct top *tp, int c, const char *arg, bool *targets)
{
	struct top_opts *o = &tp->o;
	long v;

	switch (c) {
	case 'w':
		if (parse_long(arg, TOP_WINDOW_MIN, TOP_WINDOW_MAX, &v))
			return -EINVAL;
		o->window = v;
		return 0;
	case 'i':
		return parse_seconds(arg, &o->interval);
	case 's':
		return parse_sort(arg, &o->sort);
	case 'f':
		snprintf(o->filter, sizeof(o->filter), "%s", arg);
		return 0;
	case 'b':
		o->batch = true;
		return 0;
	case 'j':
		o->json = o->batch = true;
		return 0;
	case 'n':
		return parse_long(arg, 0, LONG_MAX, &o->iterations);
	case 'd':
		o->daemon = arg;
		return 0;
	case 'v':
		log_level++;
		return 0;
	}
	*targets = true;
	return target_opt(&tp->po.filter, c, arg);
}

/* 0: run; 1: help shown; 2: bad usage (said why). */
static int opts__parse(struct top *tp, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "window", required_argument, NULL, 'w' },
		{ "interval", required_argument, NULL, 'i' },
		{ "sort", required_argument, NULL, 's' },
		{ "filter", required_argument, NULL, 'f' },
		{ "batch", no_argument, NULL, 'b' },
		{ "json", no_argument, NULL, 'j' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "daemon", required_argument, NULL, 'd' },
		{ "pid", required_argument, NULL, 'p' },
		{ "comm", required_argument, NULL, 'c' },
		{ "port", required_argument, NULL, 'P' },
		{ "unix", required_argument, NULL, 'U' },
		{ "capture-bytes", required_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	bool targets = false;
	int c;

	tp->o.window = TOP_WINDOW_DEFAULT;
	tp->o.interval = TOP_INTERVAL_DEFAULT;
	tp->o.sort = COL_RPS;
	while ((c = getopt_long(argc, argv, "bn:vh", lo, NULL)) != -1) {
		if (c == 'h') {
			top__usage(stdout);
			return 1;
		}
		if (c == '?' || opt_one(tp, c, optarg, &targets)) {
			if (c != '?')
				fprintf(stderr, "obsctl top: bad value '%s' for %s\n", optarg,
					argv[optind - 1]);
			top__usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "obsctl top: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (targets && tp->o.daemon) {
		fprintf(stderr, "obsctl top: --pid/--comm/--port/--unix/--capture-bytes choose what "
				"obsctl's own probes observe; with --daemon, obsd's options do\n");
		return 2;
	}
	return 0;
}

int top_main(int argc, char **argv)
{
	struct top *tp = calloc(1, sizeof(*tp));
	int rc;

	if (!tp) {
		fprintf(stderr, "obsctl top: out of memory\n");
		return 1;
	}
	rc = opts__parse(tp, argc, argv);
	if (rc == 1) {
		free(tp);
		return 0;
	}
	if (!rc && !tp->o.batch && !top_view__possible())
		rc = 1;
	if (!rc)
		rc = top__open(tp);
	if (!rc)
		rc = top__run(tp);
	top__close(tp);
	free(tp);
	return rc;
}
