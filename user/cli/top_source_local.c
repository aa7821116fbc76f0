// SPDX-License-Identifier: MIT
/*
 * obsctl top's standalone source: the probes loaded by obsctl itself, every
 * finished request a gain of its row (see top_source.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include "base/ids.h"
#include "request/loops.h"
#include "cli/top_source.h"

#define LOCAL_POLL_MS		50	/* longest wait between ring-buffer drains */
#define LOCAL_TICK_NS		TOP_NS_PER_S	/* pipeline housekeeping period */
#define LOCAL_DETACH_WAIT_MS	10000	/* longest a holding child waits for obsctl to exit */
#define LOCAL_STATUS_LINE	256	/* one line of /proc/self/status */

struct local {
	struct top_source src;		/* first: the generic part */
	struct pipeline *p;		/* the probes, owned */
	struct sinks sinks;		/* local_sink: the model */
	uint64_t next_tick_ns;		/* next pipeline__tick */
	bool done;			/* a refresh completed, pump() has not said so yet */
	bool closing;			/* the model may be gone: records go nowhere */
};

static struct local *local_of(struct top_source *src)
{
	return (struct local *)src;
}

/* Loading the probes needs root or CAP_BPF + CAP_PERFMON: check before trying. */
static bool can_load_probes(void)
{
	char line[LOCAL_STATUS_LINE];
	unsigned long long eff = 0;
	FILE *f;

	if (geteuid() == 0)
		return true;
	f = fopen("/proc/self/status", "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	fclose(f);
	return (eff >> CAP_BPF & 1) && (eff >> CAP_PERFMON & 1);
}

/* s into out (size n), cut to fit. */
static void copy_cut(char *out, size_t n, const char *s)
{
	size_t len = strnlen(s, n - 1);

	memcpy(out, s, len);
	out[len] = 0;
}

/* A finished request into the model (CLOCK_MONOTONIC, as the model's clock). */
static void local__count(struct top_model *m, const struct record *r)
{
	const char *route = r->route[0] ? r->route : r->path;
	struct top_slow slow = {
		.dur_us = record__duration_us(r),
		.sec = r->end_ns / TOP_NS_PER_S,
		.wall_ns = r->wall_start_ns,
		.status = r->status,
	};
	uint16_t idx = lh_index(slow.dur_us);
	uint64_t one = 1;
	struct top_gain g = {
		.service = r->service, .method = r->method, .route = route,
		.sec = slow.sec, .requests = 1,
		.errors = r->outcome == REC_FAILED || r->status >= 500,
		.bytes = r->bytes_in + r->bytes_out, .max_us = slow.dur_us,
		.idx = &idx, .n = &one, .n_bins = 1, .slow = &slow,
	};

	copy_cut(slow.request_id, sizeof(slow.request_id), r->request_id);
	ids_hex(slow.trace_id, r->trace_id, 16);
	copy_cut(slow.path, sizeof(slow.path), r->path[0] ? r->path : "-");
	top_model__gain(m, &g);
	top_model__status(m, r->service, r->method, route, r->status, 1);
}

/* The pipeline's sink; once closing, the requests it fails on the way out go nowhere. */
static void local__sink(void *ctx, const struct record *r)
{
	struct local *l = ctx;

	if (!l->closing && r->kind != REC_CLIENT)	/* top shows served requests */
		local__count(l->src.model, r);
}

static const struct sink_ops local_sink = {
	.name = "top",
	.record = local__sink,
};

/* The workers' loop totals of a snapshot (read from the kernel when taken). */
static void local__loops(struct local *l, const struct pipeline_stats *st)
{
	uint64_t sec = mono_ns() / TOP_NS_PER_S;

	top_loops__begin(l->src.loops);
	for (size_t i = 0; i < st->n_loops; i++)
		top_loops__report(l->src.loops, st->loops[i].pid, st->loops[i].service,
				  st->loops[i].s.blocked, st->loops[i].s.buckets, sec);
}

/* Everything at once: the ring buffer is local, nothing to wait for. The
 * gauges and the loops come from a snapshot of the pipeline. */
static void local__refresh(struct top_source *src)
{
	struct local *l = local_of(src);
	struct pipeline_stats st;

	pipeline__consume(l->p);
	top_stats__clear_gauges(&src->st);
	if (!pipeline__snapshot(l->p, &st)) {
		src->st.processes = st.n_observed;
		src->st.events_lost = st.events_lost;
		for (size_t i = 0; i < st.n_procs; i++)
			if (st.procs[i].in_flight)
				top_stats__gauge(&src->st, st.procs[i].service,
						 st.procs[i].in_flight);
		local__loops(l, &st);
		pipeline_stats__fini(&st);
	}
	l->done = true;
}

static int local__pollfds(struct top_source *src, struct pollfd *pfd, int max, int *timeout_ms)
{
	if (max < 1)
		return 0;
	pfd[0] = (struct pollfd){ .fd = pipeline__fd(local_of(src)->p), .events = POLLIN };
	if (local_of(src)->done)
		*timeout_ms = 0;	/* the refresh is complete: say so at once */
	else if (*timeout_ms < 0 || *timeout_ms > LOCAL_POLL_MS)
		*timeout_ms = LOCAL_POLL_MS;
	return 1;
}

/* Drain the ring buffer; housekeeping once a second. */
static bool local__pump(struct top_source *src)
{
	struct local *l = local_of(src);
	uint64_t now = mono_ns();
	bool done = l->done;

	pipeline__consume(l->p);
	if (now >= l->next_tick_ns) {
		struct pipeline_stats st;

		pipeline__tick(l->p);
		if (!pipeline__snapshot(l->p, &st)) {
			local__loops(l, &st);
			pipeline_stats__fini(&st);
		}
		l->next_tick_ns = now + LOCAL_TICK_NS;
	}
	l->done = false;
	return done;
}

/*
 * The child that holds the probes' last references: it waits until obsctl
 * has exited, then exits too; the kernel detaches the probes as it closes
 * the child's descriptors, with no one waiting for it.
 */
static void __attribute__((noreturn)) local__hold(int parent_fd)
{
	struct pollfd pfd = { .fd = parent_fd, .events = POLLIN };
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	setsid();		/* off the terminal: no job-control signals, no output */
	for (int fd = STDIN_FILENO; fd <= STDERR_FILENO && null >= 0; fd++)
		dup2(null, fd);
	while (poll(&pfd, 1, LOCAL_DETACH_WAIT_MS) < 0 && errno == EINTR)
		;
	_exit(0);
}

/*
 * Give the terminal back at once. Detaching a uprobe or a tracepoint waits
 * for RCU grace periods (about 50 ms each, most of a second for all of them)
 * in the close() that drops the last reference, or in the kernel's closing of
 * the descriptors when a process exits. So a child is forked first: it holds
 * a reference to every descriptor until this process has exited (see
 * local__hold). Here, closing them only drops references and returns at
 * once. Without a child, the probes are detached here, the slow way. The
 * model is not touched again (it may be freed already): the requests the
 * pipeline fails on the way out go nowhere.
 */
static void local__free(struct top_source *src)
{
	struct local *l = local_of(src);
	int self = syscall(SYS_pidfd_open, getpid(), 0);
	pid_t child;

	l->closing = true;
	child = self >= 0 ? fork() : -1;
	if (child == 0)
		local__hold(self);
	if (self >= 0)
		close(self);
	pipeline__free(l->p);
	free(l);
}

static const struct top_source_ops local_ops = {
	.refresh = local__refresh,
	.pollfds = local__pollfds,
	.pump = local__pump,
	.free = local__free,
};

struct top_source *top_source_local__open(const struct pipeline_opts *po, struct top_model *m,
					  struct top_loops *ls)
{
	struct pipeline_opts o;
	struct local *l;

	if (!can_load_probes()) {
		fprintf(stderr, "obsctl top: loading the probes needs root (or CAP_BPF and "
				"CAP_PERFMON): run it with sudo, or read a running obsd with "
				"--daemon ADDR:PORT\n");
		return NULL;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		fprintf(stderr, "obsctl top: out of memory\n");
		return NULL;
	}
	l->src = (struct top_source){ .ops = &local_ops, .model = m, .loops = ls,
				      .st.obsd_cpu_s = -1 };
	o = *po;
	o.sinks = &l->sinks;
	sinks__add(&l->sinks, &local_sink, l);
	l->p = pipeline__open(&o);
	if (!l->p) {
		fprintf(stderr, "obsctl top: cannot load the probes: %s\n", strerror(errno));
		free(l);
		return NULL;
	}
	fprintf(stderr, "obsctl top: probes attached\n");
	return &l->src;
}
