// SPDX-License-Identifier: MIT
/*
 * obsd — the obs daemon: load the probes, rebuild every HTTP request of the
 * observed servers, and serve metrics, health, readiness and the newest
 * request records on --listen.
 *
 * One thread runs the event loop (ring buffer, API, ticks). Loading the BPF
 * programs takes a while, so it runs in a helper thread while the loop
 * already answers /health (200) and /ready (503 until attached).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include "daemon/api.h"
#include "base/cgroup.h"
#include "daemon/config.h"
#include "daemon/options.h"
#include "base/counters.h"
#include "base/log.h"
#include "sinks/logstore.h"
#include "sinks/metrics.h"
#include "sinks/otlp.h"
#include "sinks/otlp_metrics.h"
#include "sinks/otlp_logs.h"
#include "sinks/sender.h"
#include "sinks/sentry.h"
#include "request/span.h"
#include "request/pipeline.h"
#include "request/errors.h"
#include "request/events.h"
#include "base/ids.h"
#include "request/loops.h"
#include "sinks/store.h"

#define LOOP_TIMEOUT_MS		50	/* ring buffer drained at least this often */
/* ... and this often while events arrive, in chunks that yield the CPU
 * (pipeline.c): a 50 ms batch at 20k requests/s is ~1 ms of work, a stall
 * that showed in the servers' p99; a wakeup every 5 ms cost more CPU than
 * it saved. */
#define LOOP_BUSY_MS		20
#define STALL_NS		(5ull * 1000000000ull)
#define API_LIMIT_DEFAULT	100
#define EVENTS_KEPT		4096	/* lifecycle events kept for /api/events */
#define SHUTDOWN_FLUSH_MS	800	/* per exporter, at exit */
#define HEALTH_SERVICES_MAX	64	/* server objects in /health */
#define CONFIG_STRS_MAX		1024	/* values kept from --config and the environment
					   (parse_opt may keep pointers) */

static volatile sig_atomic_t stop;	/* set by SIGINT/SIGTERM */

struct daemon {
	struct pipeline *p;		/* NULL until the loader thread is done */
	struct cgroup_cache *cgroups;	/* container and pod ids by pid */
	const char *config_path;	/* --config */
	bool check_config;		/* --check-config: validate, exit 0 or 2 */
	bool cli_set[OPTIONS_MAX];	/* options given as flags (index: OPT_* - OPT_LISTEN) */
	char *cfg_strs[CONFIG_STRS_MAX];	/* copies of the file's and environment's values */
	int n_cfg_strs;
	struct store *store;
	struct store *calls;	/* outgoing calls' records (?kind=client) */
	struct textring *errors;	/* rendered error events, /api/errors */
	struct slots events;		/* recent lifecycle events, packed (rendered
					   when /api/events is read) */
	struct textring *blocks;	/* rendered LoopBlocked events, /api/loops */
	FILE *errors_out;		/* --errors-file: JSON lines, or NULL */
	const char *errors_path;
	struct jbuf scratch;		/* rendering buffer for sinks */
	struct sinks sinks;		/* everything the pipeline feeds (sink.h) */
	struct metrics *metrics;
	struct otlp *otlp;		/* NULL: no endpoint, spans only in the store */
	struct otlp_config ocfg;
	struct otlp_metrics_config mcfg;
	enum otlpm_source src;		/* where the value parse_opt applies comes from */
	enum otlpm_source traces_ep_src;	/* where --otlp-traces-endpoint came from */
	struct log_store *logs;		/* newest log records, /api/logs */
	struct otlp_logs_config lcfg;
	const char *logs_ep[OTLPM_SRC_FLAG + 1][2];	/* [source][base, full] URLs (resolved
							   after parsing) */
	struct sentry_config scfg;
	struct services *svc;
	struct routes *rt;
	struct api *api;
	uint64_t start_ns;
	uint64_t last_consume_ns;	/* CLOCK_MONOTONIC of the last ring drain (/ready) */
	const char *listen;
	struct pipeline_opts popts;
	struct sampler sampler;
	char sampler_name[32], sampler_arg[32];
	struct trust trust;
	struct metrics_opts mopts;
	size_t store_size;
	unsigned route_cap;
	/* loader thread */
	pthread_t loader;
	int load_efd;
	struct pipeline *loaded;
	int load_err;
};

static void on_signal(int sig)
{
	stop = 1;
}

/* Served requests and outgoing calls are kept apart: /api/requests lists
 * the first, /api/requests?kind=client the second (docs/context.md). */
static struct store *store_of(struct daemon *d, const char *query)
{
	char v[16];

	return !api_query_get(query, "kind", v, sizeof(v)) && !strcmp(v, "client") ? d->calls
										     : d->store;
}

static void error_sink(void *ctx, const struct record *r, const struct exc_info *exc)
{
	struct daemon *d = ctx;
	char id[33];

	ids_uuid4_hex(id);
	jb_reset(&d->scratch);
	error_event_json(r, exc, id, &d->scratch);
	if (d->scratch.oom)
		return;
	textring__push(d->errors, d->scratch.buf, d->scratch.len);
	if (d->errors_out) {
		fprintf(d->errors_out, "%s\n", d->scratch.buf);
		fflush(d->errors_out);
	}
}

static void life_sink(void *ctx, const struct life_event *e)
{
	struct daemon *d = ctx;

	char packed[sizeof(struct life_rec) + PACK_SLACK];

	slots__push(&d->events, packed, life_pack(e, packed));
}

/* {"count":n,"total":t,"events":[…]} newest first. */
static void h_events(struct daemon *d, const char *query, struct api_reply *rep)
{
	size_t limit = API_LIMIT_DEFAULT, n = slots__count(&d->events);
	struct life_rec lr;
	const void *packed;
	char v[24];

	if (!api_query_get(query, "limit", v, sizeof(v)))
		limit = strtoul(v, NULL, 10);
	if (limit > n)
		limit = n;
	jb_obj_open(&rep->body);
	jb_u64(&rep->body, "count", limit);
	jb_u64(&rep->body, "total", d->events.total);
	jb_arr_open(&rep->body, "events");
	for (size_t i = 0; i < limit; i++) {
		packed = slots__get(&d->events, i);
		if (!packed)	/* not kept: no memory */
			continue;
		life_unpack(packed, &lr);
		life_rec_json(&lr, &rep->body);
	}
	jb_arr_close(&rep->body);
	jb_obj_close(&rep->body);
}

static void block_sink(void *ctx, const struct loop_block *b)
{
	struct daemon *d = ctx;

	jb_reset(&d->scratch);
	loop_block_json(b, &d->scratch);
	if (!d->scratch.oom)
		textring__push(d->blocks, d->scratch.buf, d->scratch.len);
}

/* The API's rings: /api/errors (and --errors-file), /api/events, /api/loops. */
static const struct sink_ops api_rings_sink = {
	.name = "api",
	.error = error_sink,
	.life = life_sink,
	.block = block_sink,
};

/* {"count":n,"<key>":[…]} from a textring, newest first. */
static void h_textring(const struct textring *t, const char *key, const char *query,
		       struct api_reply *rep)
{
	size_t limit = API_LIMIT_DEFAULT, n;
	char v[24];

	if (!api_query_get(query, "limit", v, sizeof(v)))
		limit = strtoul(v, NULL, 10);
	n = textring__count(t);
	if (limit > n)
		limit = n;
	jb_obj_open(&rep->body);
	jb_u64(&rep->body, "count", limit);
	jb_u64(&rep->body, "total", t->total);
	jb_arr_open(&rep->body, key);
	for (size_t i = 0; i < limit; i++) {
		const char *s = textring__get(t, i);

		if (i)
			jb_raw(&rep->body, ",", 1);
		jb_raw(&rep->body, s, strlen(s));
	}
	rep->body.need_comma = true;
	jb_arr_close(&rep->body);
	jb_obj_close(&rep->body);
}

/* obs_* samples: the pipeline's (st may be NULL: not attached), then the sinks'. */
static void obs_counters(struct daemon *d, const struct pipeline_stats *st, counter_fn fn,
			 void *ctx)
{
	struct counter_visit v = { .fn = fn, .ctx = ctx };

	if (st)
		pipeline_stats__counters(st, &v);
	sinks__counters(&d->sinks, &v);
	sender_export_errors(&d->sinks, &v);
}

/* A snapshot of the pipeline into st; NULL when not attached (or out of memory). */
static struct pipeline_stats *snapshot(struct daemon *d, struct pipeline_stats *st)
{
	return d->p && !pipeline__snapshot(d->p, st) ? st : NULL;
}

/* ---- /health ---- */

static double proc_uptime(uint32_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start;
	struct timespec now;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%u/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	/* field 22 (starttime) is the 20th after the ")" */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
				"%*d %*d %*d %llu", &start) != 1)
		return 0;
	clock_gettime(CLOCK_BOOTTIME, &now);
	return now.tv_sec + now.tv_nsec / 1e9 - (double)start / sysconf(_SC_CLK_TCK);
}

/* The server object of the service of observed process i: its workers, the
 * oldest one's uptime, its open connections. */
static void health_server(const struct pipeline_stats *st, size_t i, struct jbuf *jb)
{
	const char *svc = st->procs[i].service;
	uint64_t conns = 0;
	double uptime = 0, up;

	jb_obj_open(jb);
	jb_str(jb, "service", svc);
	jb_arr_open(jb, "worker_ids");
	for (size_t j = i; j < st->n_observed; j++) {
		if (strcmp(st->procs[j].service, svc))
			continue;
		jb_u64(jb, NULL, st->procs[j].pid);
		up = proc_uptime(st->procs[j].pid);
		if (up > uptime)
			uptime = up;
	}
	jb_arr_close(jb);
	for (size_t j = 0; j < st->n_procs; j++)
		if (!strcmp(st->procs[j].service, svc))
			conns += st->procs[j].conns;
	jb_dbl(jb, "uptime_seconds", uptime);
	jb_u64(jb, "active_connections", conns);
	jb_obj_close(jb);
}

/* One server object per service, at most HEALTH_SERVICES_MAX. */
static void health_servers(const struct pipeline_stats *st, struct jbuf *jb)
{
	int n = 0;

	jb_arr_open(jb, "servers");
	for (size_t i = 0; i < st->n_observed && n < HEALTH_SERVICES_MAX; i++) {
		size_t j = 0;

		while (j < i && strcmp(st->procs[j].service, st->procs[i].service))
			j++;
		if (j < i)
			continue;	/* written with an earlier worker */
		health_server(st, i, jb);
		n++;
	}
	jb_arr_close(jb);
}

static double self_cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* How obsd itself is: the members /health and /api/stats's "obsd" share.
 * st: NULL when not attached. */
static void self_summary(struct daemon *d, const struct pipeline_stats *st, struct jbuf *jb)
{
	jb_dbl(jb, "uptime_seconds", (mono_ns() - d->start_ns) / 1e9);
	jb_bool(jb, "attached", d->p != NULL);
	jb_dbl(jb, "cpu_seconds", self_cpu_seconds());
	jb_u64(jb, "pid", getpid());
	jb_u64(jb, "observed_processes", st ? st->n_observed : 0);
	jb_u64(jb, "active_connections", st ? st->active_conns : 0);
	jb_u64(jb, "events_lost", st ? st->events_lost : 0);
}

static void h_health(struct daemon *d, struct api_reply *rep)
{
	struct pipeline_stats snap, *st = snapshot(d, &snap);
	struct jbuf *jb = &rep->body;

	jb_obj_open(jb);
	jb_str(jb, "status", "ok");
	self_summary(d, st, jb);
	if (st) {
		jb_u64(jb, "requests_in_flight", st->conns.requests_in_flight);
		jb_u64(jb, "requests_total", st->conns.records_ok + st->conns.records_failed);
		health_servers(st, jb);
	}
	jb_obj_close(jb);
	pipeline_stats__fini(st);
}

/* GET /api/stats: the live aggregates behind /metrics, as one JSON document
 * (docs/api.md): what `obsctl top --daemon` reads every frame. */
static void h_stats(struct daemon *d, struct api_reply *rep)
{
	struct pipeline_stats snap, *st = snapshot(d, &snap);
	struct jbuf *jb = &rep->body;
	struct counters_json cj = { .out = jb };
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	jb_obj_open(jb);
	jb_u64(jb, "time_unix_nano", (uint64_t)now.tv_sec * 1000000000ull + now.tv_nsec);
	jb_key(jb, "obsd");
	jb_obj_open(jb);
	self_summary(d, st, jb);
	jb_obj_close(jb);
	metrics__render_json(d->metrics, st, jb);
	jb_key(jb, "obs");
	jb_obj_open(jb);
	obs_counters(d, st, counters_json, &cj);
	counters_json_end(&cj);
	jb_obj_close(jb);
	jb_obj_close(jb);
	pipeline_stats__fini(st);
}

/* GET /metrics: every sink's series, then the obs_* samples. */
static void h_metrics(struct daemon *d, struct api_reply *rep)
{
	struct pipeline_stats snap, *st = snapshot(d, &snap);
	struct counters_text ct = { .out = &rep->body };

	rep->content_type = "text/plain; version=0.0.4; charset=utf-8";
	sinks__scrape(&d->sinks, st, &rep->body);
	obs_counters(d, st, counters_text, &ct);
	pipeline_stats__fini(st);
}

static void h_ready(struct daemon *d, struct api_reply *rep)
{
	const char *why = NULL;

	if (!d->p)
		why = "attaching";
	else if (mono_ns() - d->last_consume_ns >= STALL_NS)
		why = "stalled";
	rep->status = why ? 503 : 200;
	jb_obj_open(&rep->body);
	jb_str(&rep->body, "status", why ? why : "ready");
	jb_obj_close(&rep->body);
}

static void h_requests(struct daemon *d, const char *query, struct api_reply *rep)
{
	struct store *st = store_of(d, query);
	size_t limit = API_LIMIT_DEFAULT, n;
	struct record tmp;
	const struct record *r;
	char v[24];

	if (!api_query_get(query, "limit", v, sizeof(v)))
		limit = strtoul(v, NULL, 10);
	n = store__count(st);
	/* ?since=T: only records after the T-th ever stored (T = an earlier "total") */
	if (!api_query_get(query, "since", v, sizeof(v))) {
		uint64_t since = strtoull(v, NULL, 10), total = store__total(st);

		n = since >= total ? 0 : total - since < n ? total - since : n;
	}
	if (limit > n)
		limit = n;
	jb_obj_open(&rep->body);
	jb_u64(&rep->body, "count", limit);
	jb_u64(&rep->body, "total", store__total(st));
	jb_arr_open(&rep->body, "requests");
	for (size_t i = 0; i < limit; i++)
		if ((r = store__get(st, i, &tmp)))	/* NULL: not kept (no memory) */
			record__json(r, &rep->body);
	jb_arr_close(&rep->body);
	jb_obj_close(&rep->body);
}

static void span_json(const struct record *r, const char *service, struct jbuf *jb)
{
	static const char *const codes[] = { "UNSET", "OK", "ERROR" };
	struct span_view v;
	char hex[33];

	span_view(&v, r);
	jb_obj_open(jb);
	ids_hex(hex, r->trace_id, 16);
	jb_str(jb, "trace_id", hex);
	ids_hex(hex, r->span_id, 8);
	jb_str(jb, "span_id", hex);
	if (r->has_parent)
		ids_hex(hex, r->parent_span_id, 8);
	else
		hex[0] = 0;
	jb_str(jb, "parent_span_id", hex);
	jb_str(jb, "trace_state", r->tracestate);
	jb_str(jb, "name", v.name);
	jb_str(jb, "kind", r->kind == REC_CLIENT ? "CLIENT" : "SERVER");
	jb_u64(jb, "start_time_unix_nano", r->wall_start_ns);
	jb_u64(jb, "end_time_unix_nano", r->wall_start_ns + (r->end_ns - r->start_ns));
	jb_u64(jb, "duration_us", record__duration_us(r));
	jb_key(jb, "status");
	jb_obj_open(jb);
	jb_str(jb, "code", codes[v.status]);
	jb_str(jb, "message", v.status_message ? v.status_message : "");
	jb_obj_close(jb);
	jb_key(jb, "resource");
	jb_obj_open(jb);
	jb_str(jb, "service.name", service[0] ? service : r->service);
	jb_u64(jb, "process.pid", r->pid);
	jb_str(jb, "process.executable.name", r->comm);
	if (r->container.container_id[0])
		jb_str(jb, "container.id", r->container.container_id);
	if (r->container.pod_uid[0])
		jb_str(jb, "k8s.pod.uid", r->container.pod_uid);
	if (r->container.runtime)
		jb_str(jb, "container.runtime", cgroup_runtime_name(r->container.runtime));
	jb_obj_close(jb);
	jb_key(jb, "attributes");
	jb_obj_open(jb);
	for (int i = 0; i < v.n_attrs; i++) {
		if (v.attrs[i].type == SPAN_STR)
			jb_str(jb, v.attrs[i].key, v.attrs[i].str);
		else
			jb_i64(jb, v.attrs[i].key, v.attrs[i].i);
	}
	jb_obj_close(jb);
	jb_obj_close(jb);
}

/* Sampled records of the store, as spans, newest first. */
static void h_traces(struct daemon *d, const char *query, struct api_reply *rep)
{
	struct store *st = store_of(d, query);
	size_t limit = API_LIMIT_DEFAULT, n = 0;
	struct record tmp;
	char v[24];

	if (!api_query_get(query, "limit", v, sizeof(v)))
		limit = strtoul(v, NULL, 10);
	jb_obj_open(&rep->body);
	jb_bool(&rep->body, "exporting", d->otlp != NULL);
	jb_arr_open(&rep->body, "spans");
	for (size_t i = 0; n < limit && i < store__count(st); i++) {
		const struct record *r = store__get(st, i, &tmp);

		if (r && r->sampled) {
			span_json(r, d->ocfg.service_name, &rep->body);
			n++;
		}
	}
	jb_arr_close(&rep->body);
	jb_u64(&rep->body, "count", n);
	jb_obj_close(&rep->body);
}

/* {"count":n,"total":t,"logs":[…]} newest first; ?since=T: only records
 * after the T-th ever stored (T = an earlier "total"), for obsctl logs --follow. */
static void h_logs(struct daemon *d, const char *query, struct api_reply *rep)
{
	size_t limit = API_LIMIT_DEFAULT, n = log_store__count(d->logs);
	char v[24];

	if (!api_query_get(query, "limit", v, sizeof(v)))
		limit = strtoul(v, NULL, 10);
	if (!api_query_get(query, "since", v, sizeof(v))) {
		uint64_t since = strtoull(v, NULL, 10);

		if (since >= d->logs->total)
			n = 0;
		else if (d->logs->total - since < n)
			n = d->logs->total - since;
	}
	if (limit > n)
		limit = n;
	jb_obj_open(&rep->body);
	jb_u64(&rep->body, "count", limit);
	jb_u64(&rep->body, "total", d->logs->total);
	jb_arr_open(&rep->body, "logs");
	for (size_t i = 0; i < limit; i++)
		log_rec_json(log_store__get(d->logs, i), &rep->body);
	jb_arr_close(&rep->body);
	jb_obj_close(&rep->body);
}

static void handler(void *ctx, const char *path, const char *query, struct api_reply *rep)
{
	struct daemon *d = ctx;

	if (!strcmp(path, "/health")) {
		h_health(d, rep);
	} else if (!strcmp(path, "/ready")) {
		h_ready(d, rep);
	} else if (!strcmp(path, "/metrics")) {
		h_metrics(d, rep);
	} else if (!strcmp(path, "/api/stats")) {
		h_stats(d, rep);
	} else if (!strcmp(path, "/api/requests")) {
		h_requests(d, query, rep);
	} else if (!strcmp(path, "/api/traces")) {
		h_traces(d, query, rep);
	} else if (!strcmp(path, "/api/errors")) {
		h_textring(d->errors, "errors", query, rep);
	} else if (!strcmp(path, "/api/events")) {
		h_events(d, query, rep);
	} else if (!strcmp(path, "/api/logs")) {
		h_logs(d, query, rep);
	} else if (!strcmp(path, "/api/loops")) {
		h_textring(d->blocks, "blocked", query, rep);
	} else {
		rep->status = 404;
		jb_obj_open(&rep->body);
		jb_str(&rep->body, "error", "not found");
		jb_obj_close(&rep->body);
	}
}

/* The pipeline's options, with the daemon's parts and its sinks. */
static void pipeline_opts(struct daemon *d)
{
	d->popts.svc = d->svc;
	d->popts.rt = d->rt;
	d->popts.sampler = &d->sampler;
	d->popts.trust = &d->trust;
	d->popts.sinks = &d->sinks;
}

/* --replay: the whole pipeline, sinks included, over a recording. */
static int replay(struct daemon *d)
{
	struct pipeline_stats st;
	uint64_t perr = 0;
	struct jbuf jb;
	long n;

	pipeline_opts(d);
	d->p = pipeline__open(&d->popts);
	if (!d->p)
		return 1;
	n = pipeline__replay(d->p);
	if (n < 0 || pipeline__snapshot(d->p, &st))
		return 1;
	for (int dir = 0; dir < 2; dir++)
		for (int e = 0; e < H1E_MAX; e++)
			perr += st.conns.parse_errors[dir][e];
	jb_init(&jb);
	jb_obj_open(&jb);
	jb_u64(&jb, "kernel_records", n);
	jb_u64(&jb, "requests_ok", st.conns.records_ok);
	jb_u64(&jb, "requests_failed", st.conns.records_failed);
	jb_u64(&jb, "requests_in_flight", st.conns.requests_in_flight);
	jb_u64(&jb, "connections", st.conns.conns_opened);
	jb_u64(&jb, "parse_errors", perr);
	jb_u64(&jb, "lost_event_gaps", st.conns.seq_gaps);
	jb_u64(&jb, "error_events", st.errors.events);
	jb_u64(&jb, "log_records", st.logs.records);
	jb_obj_close(&jb);
	printf("%s\n", jb.oom ? "{}" : jb.buf);
	jb_free(&jb);
	pipeline_stats__fini(&st);
	return 0;
}

/* ---- loading and the loop ---- */

static void *load_thread(void *arg)
{
	struct daemon *d = arg;
	uint64_t one = 1;

	pipeline_opts(d);
	d->popts.cgroups = d->cgroups;
	d->loaded = pipeline__open(&d->popts);
	d->load_err = d->loaded ? 0 : errno;
	if (write(d->load_efd, &one, sizeof(one)) != sizeof(one))
		pr_warn("obsd: cannot signal load completion: %s", strerror(errno));
	return NULL;
}

/* The loader thread finished: adopt its pipeline. 0 or -errno. */
static int adopt_pipeline(struct daemon *d, int ep)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 1 };

	pthread_join(d->loader, NULL);
	if (!d->loaded)
		return -d->load_err;
	d->p = d->loaded;
	epoll_ctl(ep, EPOLL_CTL_ADD, pipeline__fd(d->p), &ev);
	pipeline__tick(d->p);
	d->last_consume_ns = mono_ns();
	pr_info("obsd: attached; API on http://%s (/metrics /health /ready /api/requests)",
		d->listen);
	return 0;
}

/* The sinks' periodic work (OTLP metrics): a snapshot when one is due. */
static void collect(struct daemon *d)
{
	struct pipeline_stats st;

	if (!d->p || !sinks__due(&d->sinks) || pipeline__snapshot(d->p, &st))
		return;
	sinks__collect(&d->sinks, &st);
	pipeline_stats__fini(&st);
}

static int run(struct daemon *d)
{
	struct epoll_event ev = { .events = EPOLLIN }, evs[4];
	int ep = epoll_create1(EPOLL_CLOEXEC), err = 0;
	uint64_t next_tick = 0;
	bool busy = false;

	if (ep < 0)
		return -errno;
	ev.data.u32 = 2;
	epoll_ctl(ep, EPOLL_CTL_ADD, api__fd(d->api), &ev);
	ev.data.u32 = 3;
	epoll_ctl(ep, EPOLL_CTL_ADD, d->load_efd, &ev);
	while (!stop) {
		int n = epoll_wait(ep, evs, 4, busy ? LOOP_BUSY_MS : LOOP_TIMEOUT_MS);
		uint64_t now;

		if (n < 0 && errno != EINTR) {
			err = -errno;
			break;
		}
		if (d->p) {
			busy = pipeline__consume(d->p) > 0;
			d->last_consume_ns = mono_ns();
		}
		collect(d);
		sinks__poll(&d->sinks);
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u32 == 2) {
				api__process(d->api);
			} else if (evs[i].data.u32 == 3) {
				epoll_ctl(ep, EPOLL_CTL_DEL, d->load_efd, NULL);
				err = adopt_pipeline(d, ep);
				if (err)
					goto out;
			}
		}
		now = mono_ns();
		if (now >= next_tick) {
			if (d->p)
				pipeline__tick(d->p);
			api__tick(d->api);
			next_tick = now + 1000000000ull;
		}
	}
out:
	close(ep);
	return err;
}

/* ---- options (options.h: the table) ---- */

static struct option long_opts[OPTIONS_MAX + 1];

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno || end == s || *end || s[0] == '-' || *out < min || *out > max ? -EINVAL : 0;
}

static bool env_set(const char *name)
{
	const char *v = getenv(name);

	return v && *v;
}

/*
 * A shared OTLP option (--otlp-endpoint, --otlp-header) applies to every
 * signal; from the file, not to a signal whose own variable is set (the
 * environment beats the file). The base URL does not replace a signal's own
 * URL given at the same level or above (flags, environment, file), in either
 * order.
 */
static int otlp_shared(struct daemon *d, int o, const char *arg)
{
	bool file = d->src == OTLPM_SRC_FILE;
	int err = 0;

	if (o == OPT_OTLP_EP) {
		d->logs_ep[d->src][0] = arg;
		if (d->traces_ep_src < d->src)
			err = otlp_config_endpoint(&d->ocfg, arg, false);
		return err ?: otlp_metrics_config_endpoint(&d->mcfg, arg, false, d->src);
	}
	if (!(file && env_set("OTEL_EXPORTER_OTLP_TRACES_HEADERS")))
		err = otlp_config_header(&d->ocfg, arg);
	if (!err && !(file && env_set("OTEL_EXPORTER_OTLP_METRICS_HEADERS")))
		err = otlp_metrics_config_header(&d->mcfg, arg);
	if (!err && !(file && env_set("OTEL_EXPORTER_OTLP_LOGS_HEADERS")))
		err = otlp_logs_config_header(&d->lcfg, arg);
	return err;
}

/* A string option into dst[size]; too long: -EINVAL, but a variable's value
 * is cut to fit (as the environment's always was). */
static int set_str(struct daemon *d, char *dst, size_t size, const char *arg)
{
	if (strlen(arg) >= size && d->src != OTLPM_SRC_ENV)
		return -EINVAL;
	snprintf(dst, size, "%s", arg);
	return 0;
}

/* Apply option o's value arg, from d->src (a flag, the environment, the file). */
static int parse_opt(struct daemon *d, int o, const char *arg)
{
	unsigned long v;
	int err;

	switch (o) {
	case OPT_LISTEN:
		d->listen = arg;
		return 0;
	case OPT_PID:
		return obs_filter__add_pid(&d->popts.filter, arg);
	case OPT_COMM:
		return obs_filter__add_comm(&d->popts.filter, arg);
	case OPT_PORT:
		return obs_filter__add_port(&d->popts.filter, arg);
	case OPT_UNIX:
		return obs_filter__add_unix(&d->popts.filter, arg);
	case OPT_CAP:
		err = parse_uint(arg, 64, OBS_CAP_MAX, &v);
		d->popts.filter.cap_bytes = v;
		return err;
	case OPT_STORE:
		err = parse_uint(arg, 1, 10000000, &v);
		d->store_size = v;
		return err;
	case OPT_SERVICE:
		return services__add_rule(d->svc, arg);
	case OPT_ROUTE:
		return routes__add_pattern(d->rt, arg);
	case OPT_ROUTE_CAP:
		err = parse_uint(arg, 1, 100000, &v);
		d->route_cap = v;
		return err;
	case OPT_WORKER:
		d->mopts.worker_label = true;
		return 0;
	case OPT_CONTAINER_LABEL:
		d->mopts.container_label = true;
		return 0;
	case OPT_CONFIG:
	case OPT_CHECK_CONFIG:
		return 0;	/* taken by parse_args' first pass */
	case OPT_BUCKETS:
		return metrics_parse_buckets(&d->mopts, arg);
	case OPT_TRUSTED:
		return trust_add(&d->trust, arg);
	case OPT_OTLP_EP:
	case OPT_OTLP_HEADER:
		return otlp_shared(d, o, arg);
	case OPT_OTLP_TRACES_EP:
		d->traces_ep_src = d->src;
		return otlp_config_endpoint(&d->ocfg, arg, true);
	case OPT_OTLP_METRICS_EP:
		return otlp_metrics_config_endpoint(&d->mcfg, arg, true, d->src);
	case OPT_METRICS_EXPORTER:
		return otlp_metrics_config_exporter(&d->mcfg, arg);
	case OPT_METRIC_INTERVAL:
		err = parse_uint(arg, 1, 100000000, &v);
		d->mcfg.interval_ms = v;
		return err;
	case OPT_METRICS_TEMPORALITY:
		return otlp_metrics_config_temporality(&d->mcfg, arg);
	case OPT_OTLP_LOGS_EP:
		d->logs_ep[d->src][1] = arg;
		return otlp_logs_config_endpoint(&d->lcfg, arg, true);
	case OPT_LOGS_EXPORTER:
		return otlp_logs_config_exporter(&d->lcfg, arg);
	case OPT_SVC_NAME:
		if (!*arg || set_str(d, d->ocfg.service_name, sizeof(d->ocfg.service_name), arg))
			return -EINVAL;
		snprintf(d->mcfg.service_name, sizeof(d->mcfg.service_name), "%s", arg);
		snprintf(d->lcfg.service_name, sizeof(d->lcfg.service_name), "%s", arg);
		return 0;
	case OPT_SAMPLER:
		snprintf(d->sampler_name, sizeof(d->sampler_name), "%s", arg);
		return 0;
	case OPT_ERRORS_FILE:
		d->errors_path = arg;
		return 0;
	case OPT_LOOP_BLOCK:
		err = parse_uint(arg, 1, 600000, &v);
		d->popts.filter.loop_block_ns = v * 1000000ull;
		return err;
	case OPT_QUEUE_TIME:
		d->popts.filter.queue_time = true;
		return 0;
	case OPT_SYSCALL_HOOKS:
		if (strcmp(arg, "auto") && strcmp(arg, "off"))
			return -EINVAL;
		d->popts.filter.no_syscall_hooks = !strcmp(arg, "off");
		return 0;
	case OPT_RECORD:
		d->popts.record_path = arg;
		return 0;
	case OPT_REPLAY:
		d->popts.replay_path = arg;
		return 0;
	case OPT_SENTRY_DSN:
		return set_str(d, d->scfg.dsn, sizeof(d->scfg.dsn), arg);
	case OPT_SENTRY_ENV:
		return set_str(d, d->scfg.environment, sizeof(d->scfg.environment), arg);
	case OPT_SENTRY_RELEASE:
		return set_str(d, d->scfg.release, sizeof(d->scfg.release), arg);
	case OPT_SENTRY_RATE: {
		char *end;

		d->scfg.sample_rate = strtod(arg, &end);
		return *end || !(d->scfg.sample_rate >= 0 && d->scfg.sample_rate <= 1) ? -EINVAL : 0;
	}
	case OPT_SAMPLER_ARG:
		snprintf(d->sampler_arg, sizeof(d->sampler_arg), "%s", arg);
		return 0;
	}
	return -EINVAL;
}

/* A copy of value that lives as long as obsd (parse_opt may keep it, as it
 * keeps argv's), or NULL. */
static char *keep_str(struct daemon *d, const char *value)
{
	char *v;

	if (d->n_cfg_strs == CONFIG_STRS_MAX)
		return NULL;
	v = strdup(value);
	if (v)
		d->cfg_strs[d->n_cfg_strs++] = v;
	return v;
}

/* options_env's apply(): a variable is one more option, applied before the
 * file (whose keys it beats: config_apply) and the flags (which beat it). */
static int env_apply(void *ctx, const struct option_def *o, const char *var, const char *value)
{
	struct daemon *d = ctx;
	char *v = keep_str(d, value);
	int err;

	if (!v)
		return -ENOMEM;
	d->src = OTLPM_SRC_ENV;
	err = parse_opt(d, o->id, v);
	d->src = OTLPM_SRC_FLAG;
	if (err)
		fprintf(stderr, "obsd: invalid value for %s: '%s'\n", var, value);
	return err;
}

/* config_load's apply(): a key of the file is one more option, unless the same
 * option was given as a flag or its environment variable is set. */
static int config_apply(void *ctx, const char *key, const char *value, const char *file, int line)
{
	const struct option_def *o = config_key_find(key);
	struct daemon *d = ctx;
	char *v;
	int err;

	if (!o)
		return -ENOENT;
	if (d->cli_set[o->id - OPT_LISTEN] || config_env_override(key))
		return 0;
	if (!o->arg)
		return strcmp(value, "true") ? 0 : parse_opt(d, o->id, NULL);
	if (d->n_cfg_strs == CONFIG_STRS_MAX)
		return -E2BIG;
	v = keep_str(d, value);
	if (!v)
		return -ENOMEM;
	d->src = OTLPM_SRC_FILE;
	err = parse_opt(d, o->id, v);
	d->src = OTLPM_SRC_FLAG;
	return err;
}

/* First pass: which options are flags, --config, --check-config; then the
 * file (flags and environment beat it); second pass: the flags. */
static int parse_config(int argc, char **argv, struct daemon *d)
{
	char err[512];
	int o, idx;

	options_long(long_opts);
	while ((o = getopt_long(argc, argv, "vh", long_opts, &idx)) != -1) {
		if (o == 'h') {
			options_usage(stdout);
			exit(0);
		} else if (o == '?') {
			options_usage(stderr);
			return -EINVAL;
		} else if (o >= OPT_LISTEN) {
			d->cli_set[o - OPT_LISTEN] = true;
			if (o == OPT_CONFIG)
				d->config_path = optarg;
			else if (o == OPT_CHECK_CONFIG)
				d->check_config = true;
		}
	}
	optind = 0;	/* glibc: rescan argv from the start */
	if (d->config_path && config_load(d->config_path, config_apply, d, err, sizeof(err))) {
		fprintf(stderr, "obsd: %s\n", err);
		return -EINVAL;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct daemon *d)
{
	int o, idx;

	if (parse_config(argc, argv, d))
		return -EINVAL;
	while ((o = getopt_long(argc, argv, "vh", long_opts, &idx)) != -1) {
		if (o == 'v') {
			log_level++;
		} else if (o == 'h') {
			options_usage(stdout);
			exit(0);
		} else if (o == '?') {
			options_usage(stderr);
			return -EINVAL;
		} else if (parse_opt(d, o, optarg)) {
			fprintf(stderr, "obsd: invalid value for --%s: '%s'\n", long_opts[idx].name,
				optarg);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "obsd: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/*
 * The logs URL: a flag beats the environment beats the file, and within one
 * source the logs-specific URL beats the base URL + /v1/logs.
 */
static int resolve_logs_endpoint(struct daemon *d)
{
	for (int s = OTLPM_SRC_FLAG; s > OTLPM_SRC_NONE; s--) {
		const char *full = d->logs_ep[s][1], *base = d->logs_ep[s][0];

		if (full)
			return otlp_logs_config_endpoint(&d->lcfg, full, true);
		if (base)
			return otlp_logs_config_endpoint(&d->lcfg, base, false);
	}
	return 0;
}

/*
 * obsd yields to the servers it observes: as SCHED_BATCH its wakeups never
 * preempt a running server (the ring buffer absorbs the wait), while it keeps
 * its fair share of the CPU under load, so nothing is lost. OBS_SCHED=normal
 * keeps the default policy; OBS_SCHED=idle runs only on an idle CPU.
 */
static void yield_to_servers(void)
{
	const char *want = getenv("OBS_SCHED") ?: "batch";
	struct sched_param sp = { 0 };
	int policy;

	if (!strcmp(want, "normal"))
		return;
	policy = !strcmp(want, "idle") ? SCHED_IDLE : SCHED_BATCH;
	if (sched_setscheduler(0, policy, &sp))
		pr_warn("obsd: cannot set scheduling policy %s: %s", want, strerror(errno));
}

/* The sinks, in the order they see each event (sink.h). 0, or the exit code. */
static int add_sinks(struct daemon *d)
{
	struct otlp_metrics *om;
	struct otlp_logs *ol;
	struct sentry *se;

	d->errors = textring__new(512);
	d->blocks = textring__new(512);
	jb_init(&d->scratch);
	if (!d->errors || !d->blocks || slots__init(&d->events, EVENTS_KEPT))
		goto out_nomem;
	if (d->errors_path) {
		d->errors_out = strcmp(d->errors_path, "-") ? fopen(d->errors_path, "a") : stdout;
		if (!d->errors_out) {
			pr_warn("obsd: cannot open --errors-file %s: %s", d->errors_path,
				strerror(errno));
			return 1;
		}
	}
	if (d->mcfg.url[0] && !d->mcfg.off)
		d->mopts.by_status = true;	/* the OTLP durations' attributes */
	d->store = store__new(d->store_size);
	d->calls = store__new(d->store_size);
	d->metrics = metrics__new(&d->mopts);
	d->logs = log_store__new(LOG_STORE_DEFAULT);
	if (sinks__add(&d->sinks, &store_sink, d->store) ||
	    sinks__add(&d->sinks, &call_store_sink, d->calls) ||
	    sinks__add(&d->sinks, &metrics_sink, d->metrics) ||
	    sinks__add(&d->sinks, &api_rings_sink, d) ||
	    sinks__add(&d->sinks, &log_store_sink, d->logs))
		goto out_nomem;
	if (d->ocfg.traces_url[0]) {
		d->otlp = otlp__new(&d->ocfg);
		if (sinks__add(&d->sinks, &otlp_sink, d->otlp))
			goto out_nomem;
		pr_info("obsd: exporting spans to %s (sampler %s)", d->ocfg.traces_url,
			sampler_name(&d->sampler));
	}
	if (d->scfg.dsn[0]) {
		se = sentry__new(&d->scfg);
		if (sinks__add(&d->sinks, &sentry_sink, se))
			return 2;
		pr_info("obsd: sending error events to Sentry");
	}
	if (d->lcfg.url[0] && !d->lcfg.off) {
		ol = otlp_logs__new(&d->lcfg);
		if (sinks__add(&d->sinks, &otlp_logs_sink, ol))
			goto out_nomem;
		pr_info("obsd: exporting log records to %s", d->lcfg.url);
	}
	if (d->mopts.by_status) {
		om = otlp_metrics__new(&d->mcfg, d->metrics);
		if (sinks__add(&d->sinks, &otlp_metrics_sink, om))
			goto out_nomem;
		pr_info("obsd: exporting metrics to %s every %u ms (%s)", d->mcfg.url,
			d->mcfg.interval_ms, d->mcfg.delta ? "delta" : "cumulative");
	}
	return 0;

out_nomem:
	pr_warn("obsd: out of memory at start: %s", strerror(errno));
	return 1;
}

/* At exit, best effort and bounded (SIGTERM must end obsd within a few
 * seconds): every exporter sends what it holds, OTLP metrics a last collection. */
static void flush(struct daemon *d)
{
	struct pipeline_stats snap, *st = snapshot(d, &snap);

	sinks__flush(&d->sinks, st, SHUTDOWN_FLUSH_MS);
	pipeline_stats__fini(st);
}

int main(int argc, char **argv)
{
	static struct daemon d = { .listen = OPTIONS_DEFAULT_LISTEN, .store_size = STORE_DEFAULT,
				   .src = OTLPM_SRC_FLAG,
				   .sampler_name = "parentbased_always_on" };
	struct sigaction sa = { .sa_handler = on_signal };
	int err = 1;

	d.svc = services__new();
	d.rt = routes__new(ROUTE_CAP_DEFAULT);
	if (!d.svc || !d.rt)
		goto out;
	otlp_config_init(&d.ocfg);
	otlp_metrics_config_init(&d.mcfg);
	otlp_logs_config_init(&d.lcfg);
	sentry_config_init(&d.scfg);
	/* the option table's variables, then those no option sets (after the
	 * shared ones: OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_BSP_*, ...);
	 * the file and the flags come next */
	if (options_env(env_apply, &d) || otlp_config_env(&d.ocfg) ||
	    otlp_metrics_config_env(&d.mcfg) || otlp_logs_config_env(&d.lcfg)) {
		err = 2;
		goto out;
	}
	if (parse_args(argc, argv, &d) || resolve_logs_endpoint(&d)) {
		err = 2;
		goto out;
	}
	if (sampler_parse(&d.sampler, d.sampler_name, d.sampler_arg)) {
		fprintf(stderr, "obsd: invalid traces sampler '%s' (arg '%s')\n", d.sampler_name,
			d.sampler_arg);
		err = 2;
		goto out;
	}
	if (d.check_config) {
		char url[600], key[128];

		if (d.scfg.dsn[0] && sentry_parse_dsn(d.scfg.dsn, url, sizeof(url), key, sizeof(key))) {
			fprintf(stderr, "obsd: invalid SENTRY_DSN (want https://KEY@HOST/PROJECT_ID)\n");
			err = 2;
			goto out;
		}
		printf("obsd: configuration is valid\n");
		err = 0;
		goto out;
	}
	yield_to_servers();	/* before any thread starts: they inherit it */
	if (d.route_cap)
		routes__with_cap(d.rt, d.route_cap);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	d.start_ns = mono_ns();
	err = add_sinks(&d);
	if (err)
		goto out;
	err = 1;
	d.load_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d.load_efd < 0) {
		pr_warn("obsd: cannot make an eventfd: %s", strerror(errno));
		goto out;
	}
	if (d.popts.replay_path) {
		err = replay(&d);
		goto out;
	}
	d.api = api__new(d.listen, handler, &d);
	if (!d.api)
		goto out;
	d.cgroups = cgroup_cache__new(NULL);
	if (!d.cgroups)
		goto out;
	if (pthread_create(&d.loader, NULL, load_thread, &d)) {
		pr_warn("obsd: cannot start the loader thread");
		goto out;
	}
	err = run(&d) ? 1 : 0;
	if (!d.p && !err)	/* stopped while loading: wait for the thread */
		pthread_join(d.loader, NULL), d.p = d.loaded;
	pr_info("obsd: stopping");
	flush(&d);
out:
	pipeline__free(d.p);	/* first: what it still emits goes to live sinks */
	sinks__free(&d.sinks);
	api__free(d.api);
	textring__free(d.errors);
	slots__fini(&d.events);
	textring__free(d.blocks);
	jb_free(&d.scratch);
	if (d.errors_out && d.errors_out != stdout)
		fclose(d.errors_out);
	routes__free(d.rt);
	services__free(d.svc);
	cgroup_cache__free(d.cgroups);
	for (int i = 0; i < d.n_cfg_strs; i++)
		free(d.cfg_strs[i]);
	if (d.load_efd > 0)
		close(d.load_efd);
	return err;
}
