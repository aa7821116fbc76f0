// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/counters.h"
#include "base/lhist.h"
#include "request/loops.h"
#include "sinks/client_metrics.h"
#include "sinks/metrics.h"

static const double default_buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
					  0.25,	 0.5,	 1,	2.5,  5,     10 };

/* One labelled series; which fields are used depends on the table. */
struct series {
	struct series *next;
	char *key;		/* label values joined by '\x1f' */
	size_t key_len;
	uint64_t hash;		/* hash_more(FNV_OFFSET, key, key_len) */
	uint64_t count;		/* bytes: sent */
	uint64_t count_in;	/* bytes: received */
	double sum;
	uint64_t *buckets;	/* histogram only: non-cumulative counts per bucket */
	/* The duration table only, for /api/stats (not in /metrics): */
	struct lhist latency;	/* durations (us), log-linear (lhist.h) */
	uint64_t errors;	/* failed requests and 5xx responses */
	uint64_t bytes_in, bytes_out;
	/* duration only: the bytes series of its service, and the requests
	 * series of the status it last counted, found once instead of by key
	 * for every request (series are never freed before the table) */
	struct series *bytes, *requests;
	int requests_status;
};

struct table {
	struct series **b;
	size_t n_buckets, n;
};

struct metrics {
	struct metrics_opts o;
	struct table requests;	/* service, method, route, status[, worker] */
	struct table duration;	/* service, method, route[, worker] */
	struct table bytes;	/* service[, worker]: sent (count), received (count_in) */
	struct table grpc;	/* service, grpc_service, grpc_method, grpc_code[, worker] */
	struct table grpc_dur;	/* service, grpc_service, grpc_method[, worker] */
	struct table by_status;	/* service, method, route, status, scheme, error[, worker] */
	struct client_metrics *client;	/* outgoing calls (client_metrics.h) */
};

static const char *const grpc_codes[] = {
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
	"OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
};

#define FNV_OFFSET	1469598103934665603ull
#define FNV_PRIME	1099511628211ull

/* FNV-1a of n bytes, continuing from h (FNV_OFFSET to start): a key's hash
 * can be carried on from the hash of its prefix. */
static uint64_t hash_more(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * FNV_PRIME;
	return h;
}

/*
 * A series key under construction: label values joined by '\x1f', at most
 * KEY_MAX - 1 bytes (longer keys are cut, as snprintf would cut them), with
 * its hash so far. Building keys this way instead of with snprintf took
 * metrics__record from a quarter of obsd's instructions per request to a
 * few percent.
 */
#define KEY_MAX		512

struct key {
	size_t len;
	uint64_t hash;
	char s[KEY_MAX];
};

static void key_init(struct key *k)
{
	k->len = 0;
	k->hash = FNV_OFFSET;
	k->s[0] = 0;
}

static void key_add(struct key *k, const char *v, size_t n)
{
	if (n > KEY_MAX - 1 - k->len)
		n = KEY_MAX - 1 - k->len;
	memcpy(k->s + k->len, v, n);
	k->hash = hash_more(k->hash, v, n);
	k->len += n;
	k->s[k->len] = 0;
}

/* key_add(k, v, strlen(v)) in one pass: label values are short. */
static void key_str(struct key *k, const char *v)
{
	uint64_t h = k->hash;
	size_t i = k->len;

	for (; *v && i < KEY_MAX - 1; v++, i++) {
		k->s[i] = *v;
		h = (h ^ (unsigned char)*v) * FNV_PRIME;
	}
	k->s[i] = 0;
	k->len = i;
	k->hash = h;
}

static void key_sep(struct key *k)
{
	if (k->len < KEY_MAX - 1) {
		k->s[k->len++] = '\x1f';
		k->s[k->len] = 0;
		k->hash = (k->hash ^ 0x1f) * FNV_PRIME;
	}
}

static void key_int(struct key *k, int v)
{
	char d[12], *p = d + sizeof(d);
	unsigned int u = v < 0 ? 0u - (unsigned int)v : (unsigned int)v;

	do
		*--p = '0' + u % 10;
	while (u /= 10);
	if (v < 0)
		*--p = '-';
	key_add(k, p, d + sizeof(d) - p);
}

/* dst = the first len bytes of src, whose hash is hash. */
static void key_prefix(struct key *dst, const struct key *src, size_t len, uint64_t hash)
{
	memcpy(dst->s, src->s, len);
	dst->s[len] = 0;
	dst->len = len;
	dst->hash = hash;
}

static void table_grow(struct table *t)
{
	size_t nb = t->n_buckets ? t->n_buckets * 2 : 256;
	struct series **b = calloc(nb, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct series *s = t->b[i], *next;

		for (; s; s = next) {
			next = s->next;
			s->next = b[s->hash & (nb - 1)];
			b[s->hash & (nb - 1)] = s;
		}
	}
	free(t->b);
	t->b = b;
	t->n_buckets = nb;
}

/* Find or create the series for k; NULL when memory is short. */
static struct series *table_find(struct table *t, const char *key, size_t len, uint64_t hash,
				 int n_hist)
{
	struct series *s;
	size_t i;

	if (t->n >= t->n_buckets)
		table_grow(t);
	if (!t->n_buckets)
		return NULL;
	i = hash & (t->n_buckets - 1);
	for (s = t->b[i]; s; s = s->next)
		if (s->hash == hash && s->key_len == len && !memcmp(s->key, key, len))
			return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->key = strndup(key, len);
	s->key_len = len;
	s->hash = hash;
	s->buckets = n_hist ? calloc(n_hist, sizeof(*s->buckets)) : NULL;
	if (!s->key || (n_hist && !s->buckets)) {
		free(s->key);
		free(s->buckets);
		free(s);
		return NULL;
	}
	s->next = t->b[i];
	t->b[i] = s;
	t->n++;
	return s;
}

static struct series *table_get_key(struct table *t, const struct key *k, int n_hist)
{
	return table_find(t, k->s, k->len, k->hash, n_hist);
}

/* The series for the labels of k's first len bytes (hash: their hash)
 * followed by the optional ones (extra, the '\x1f'-joined values of
 * extra_key; usually ""); tmp is scratch. */
static struct series *table_get_extra(struct table *t, const struct key *k, size_t len,
				      uint64_t hash, const char *extra, struct key *tmp, int n_hist)
{
	if (!extra[0])
		return table_find(t, k->s, len, hash, n_hist);
	key_prefix(tmp, k, len, hash);
	key_str(tmp, extra);
	return table_get_key(t, tmp, n_hist);
}

static struct series *table_get(struct table *t, const char *key, int n_hist)
{
	size_t len = strlen(key);

	return table_find(t, key, len, hash_more(FNV_OFFSET, key, len), n_hist);
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct series *s = t->b[i], *next;

		for (; s; s = next) {
			next = s->next;
			free(s->key);
			free(s->buckets);
			lhist__free(&s->latency);
			free(s);
		}
	}
	free(t->b);
}

/* The series of a whole key, NULL when there is none. */
static const struct series *table_lookup(const struct table *t, const char *key)
{
	size_t len = strlen(key);
	uint64_t hash = hash_more(FNV_OFFSET, key, len);
	const struct series *s;

	if (!t->n_buckets)
		return NULL;
	for (s = t->b[hash & (t->n_buckets - 1)]; s; s = s->next)
		if (s->hash == hash && s->key_len == len && !memcmp(s->key, key, len))
			return s;
	return NULL;
}

struct metrics *metrics__new(const struct metrics_opts *o)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	if (o)
		m->o = *o;
	if (!m->o.n_buckets) {
		m->o.n_buckets = sizeof(default_buckets) / sizeof(default_buckets[0]);
		memcpy(m->o.buckets, default_buckets, sizeof(default_buckets));
	}
	m->client = client_metrics__new(m->o.buckets, m->o.n_buckets);
	if (!m->client) {
		free(m);
		return NULL;
	}
	return m;
}

void metrics__free(struct metrics *m)
{
	if (!m)
		return;
	table_free(&m->requests);
	table_free(&m->duration);
	table_free(&m->bytes);
	table_free(&m->grpc);
	table_free(&m->grpc_dur);
	table_free(&m->by_status);
	client_metrics__free(m->client);
	free(m);
}

int metrics_parse_buckets(struct metrics_opts *o, const char *s)
{
	int n = 0;
	char *end;

	while (*s) {
		double v = strtod(s, &end);

		if (end == s || v <= 0 || n >= METRICS_MAX_BUCKETS || (n && v <= o->buckets[n - 1]))
			return -EINVAL;
		o->buckets[n++] = v;
		if (*end == ',')
			end++;
		else if (*end)
			return -EINVAL;
		s = end;
	}
	if (!n)
		return -EINVAL;
	o->n_buckets = n;
	return 0;
}

const char *metrics_method_label(const char *m)
{
	static const char *const known[] = { "GET",    "HEAD",	  "POST",  "PUT",  "DELETE",
					     "CONNECT", "OPTIONS", "TRACE", "PATCH" };

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(m, known[i]))
			return known[i];
	return "_OTHER";
}

/* The distribution of one observation into a histogram series. */
static void observe(const struct metrics *m, struct series *s, double secs)
{
	int b;

	for (b = 0; b < m->o.n_buckets && secs > m->o.buckets[b]; b++)
		;
	if (b < m->o.n_buckets)
		s->buckets[b]++;
	s->count++;
	s->sum += secs;
}

/* A gRPC call: /pkg.Service/Method, status from the trailers (a call without
 * one — reset, lost — counts as Unknown, as go-grpc-prometheus does). */
static void grpc_record(struct metrics *m, const struct record *r, double secs, const char *worker)
{
	const char *path = r->path[0] == '/' ? r->path + 1 : r->path;
	const char *slash = strchr(path, '/');
	int code = r->grpc_status >= 0 && r->grpc_status <= 16 ? r->grpc_status : 2;
	char key[600];
	struct series *s;

	if (!slash)
		return;
	snprintf(key, sizeof(key), "%s\x1f%.*s\x1f%s\x1f%s%s", r->service, (int)(slash - path), path,
		 slash + 1, grpc_codes[code], worker);
	if ((s = table_get(&m->grpc, key, 0)))
		s->count++;
	snprintf(key, sizeof(key), "%s\x1f%.*s\x1f%s%s", r->service, (int)(slash - path), path,
		 slash + 1, worker);
	s = table_get(&m->grpc_dur, key, m->o.n_buckets);
	if (s)
		observe(m, s, secs);
}

/* by_status: the duration also by status, scheme and failure reason (the
 * attributes of OTel's http.server.request.duration). */
static void status_record(struct metrics *m, const struct record *r, double secs,
			  const char *extra)
{
	const char *error = r->outcome == REC_FAILED && r->error ? r->error : "";
	char key[600];
	struct series *s;
	int b;

	snprintf(key, sizeof(key), "%s\x1f%s\x1f%s\x1f%d\x1f%s\x1f%s%s", r->service,
		 metrics_method_label(r->method), r->route, r->status, r->tls ? "https" : "http", error,
		 extra);
	s = table_get(&m->by_status, key, m->o.n_buckets);
	if (!s)
		return;
	for (b = 0; b < m->o.n_buckets && secs > m->o.buckets[b]; b++)
		;
	if (b < m->o.n_buckets)
		s->buckets[b]++;
	s->count++;
	s->sum += secs;
}

/* The '\x1f'-joined values of the optional labels: worker, container_id, pod_uid. */
static void extra_key(const struct metrics *m, uint32_t pid, const struct cgroup_ident *c,
		      char *out, size_t n)
{
	int l = 0;

	out[0] = 0;
	if (m->o.worker_label)
		l = snprintf(out, n, "\x1f%u", pid);
	if (m->o.container_label)
		snprintf(out + l, n - l, "\x1f%s\x1f%s", c->container_id, c->pod_uid);
}

/* base label names, then the optional ones that are on; returns how many. */
static int label_names(const struct metrics *m, const char *const *base, int n_base,
		       const char **out)
{
	int n = 0;

	while (n < n_base) {
		out[n] = base[n];
		n++;
	}
	if (m->o.worker_label)
		out[n++] = "worker";
	if (m->o.container_label) {
		out[n++] = "container_id";
		out[n++] = "pod_uid";
	}
	return n;
}

/* What /api/stats adds to a route's duration series. A latency that finds no
 * memory is left out of the fine histogram only (its count is kept). */
static void route_extras(struct series *s, const struct record *r)
{
	lhist__add(&s->latency, lh_index(record__duration_us(r)), 1);
	s->errors += r->outcome == REC_FAILED || r->status >= 500;
	s->bytes_in += r->bytes_in;
	s->bytes_out += r->bytes_out;
}

void metrics__record(void *ctx, const struct record *r)
{
	struct metrics *m = ctx;
	struct key base, k;
	char worker[128];
	double secs = (double)(r->end_ns > r->start_ns ? r->end_ns - r->start_ns : 0) / 1e9;
	struct series *d, *s;
	uint64_t svc_hash;
	size_t svc_len;

	if (r->kind == REC_CLIENT) {	/* an outgoing call: its own series */
		client_metrics__record(m->client, r);
		return;
	}
	extra_key(m, r->pid, &r->container, worker, sizeof(worker));
	key_init(&base);	/* service, method, route[, worker]: duration */
	key_str(&base, r->service);
	svc_len = base.len;
	svc_hash = base.hash;
	key_sep(&base);
	key_str(&base, metrics_method_label(r->method));
	key_sep(&base);
	key_str(&base, r->route);
	d = table_get_extra(&m->duration, &base, base.len, base.hash, worker, &k,
			    m->o.n_buckets);
	if (d) {
		observe(m, d, secs);
		route_extras(d, r);
	}
	s = d ? d->bytes : NULL;	/* service[, worker]: bytes */
	if (!s)
		s = table_get_extra(&m->bytes, &base, svc_len, svc_hash, worker, &k, 0);
	if (s) {
		s->count += r->bytes_out;
		s->count_in += r->bytes_in;
	}
	if (d)
		d->bytes = s;
	s = d && d->requests && d->requests_status == r->status ? d->requests : NULL;
	if (!s) {		/* service, method, route, status[, worker]: requests */
		key_sep(&base);
		key_int(&base, r->status);
		s = table_get_extra(&m->requests, &base, base.len, base.hash, worker, &k, 0);
	}
	if (s)
		s->count++;
	if (d) {
		d->requests = s;
		d->requests_status = r->status;
	}
	if (r->content_type[0] == 'a' && !strncmp(r->content_type, "application/grpc", 16))
		grpc_record(m, r, secs, worker);	/* (the first byte saves a call) */
	if (m->o.by_status)
		status_record(m, r, secs, worker);
}

/* ---- exposition ---- */

/* Write {a="x",b="y"[,extra]} from a '\x1f'-joined key and label names. */
static void labels(struct jbuf *o, const char *const *names, int n, const char *key,
		   const char *extra)
{
	const char *p = key;

	jb_raw(o, "{", 1);
	for (int i = 0; i < n; i++) {
		size_t l = strcspn(p, "\x1f");

		if (i)
			jb_raw(o, ",", 1);
		jb_raw(o, names[i], strlen(names[i]));
		jb_raw(o, "=\"", 2);
		prom_label_value(o, p, l);
		jb_raw(o, "\"", 1);
		p += l + (p[l] ? 1 : 0);
	}
	if (extra) {
		jb_raw(o, ",", 1);
		jb_raw(o, extra, strlen(extra));
	}
	jb_raw(o, "}", 1);
}

/* service="…",worker="pid" */
static void labels_kv(struct jbuf *o, const char *service, uint32_t pid)
{
	jb_raw(o, "service=\"", 9);
	prom_label_value(o, service, strlen(service));
	jb_printf(o, "\",worker=\"%u\"", pid);
}

static void header(struct jbuf *o, const char *name, const char *type, const char *help)
{
	jb_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One line per series of t: its count, or its count_in when in is set. */
static void counter_table_of(struct jbuf *o, const struct table *t, const char *name,
			     const char *const *names, int n, bool in)
{
	for (size_t i = 0; i < t->n_buckets; i++) {
		for (const struct series *s = t->b[i]; s; s = s->next) {
			jb_raw(o, name, strlen(name));
			labels(o, names, n, s->key, NULL);
			jb_printf(o, " %llu\n", (unsigned long long)(in ? s->count_in : s->count));
		}
	}
}

static void counter_table(struct jbuf *o, const struct table *t, const char *name,
			  const char *const *names, int n)
{
	counter_table_of(o, t, name, names, n, false);
}

static void histogram_table(struct metrics *m, const struct table *t, struct jbuf *o,
			    const char *name, const char *const *names, int n)
{
	for (size_t i = 0; i < t->n_buckets; i++) {
		for (const struct series *s = t->b[i]; s; s = s->next) {
			uint64_t cum = 0;
			char le[48];

			for (int b = 0; b < m->o.n_buckets; b++) {
				cum += s->buckets[b];
				snprintf(le, sizeof(le), "le=\"%g\"", m->o.buckets[b]);
				jb_printf(o, "%s_bucket", name);
				labels(o, names, n, s->key, le);
				jb_printf(o, " %llu\n", (unsigned long long)cum);
			}
			jb_printf(o, "%s_bucket", name);
			labels(o, names, n, s->key, "le=\"+Inf\"");
			jb_printf(o, " %llu\n%s_sum", (unsigned long long)s->count, name);
			labels(o, names, n, s->key, NULL);
			jb_printf(o, " %.9f\n%s_count", s->sum, name);
			labels(o, names, n, s->key, NULL);
			jb_printf(o, " %llu\n", (unsigned long long)s->count);
		}
	}
}

/* Per-service connection gauges, from the processes' open connections
 * (every observed process's service gets its gauges, 0 when idle). */
struct conn_agg {
	struct table active, in_flight;
};

static void conn_agg(struct conn_agg *a, const struct metrics *m, const struct pipeline_stats *st)
{
	for (size_t i = 0; st && i < st->n_procs; i++) {
		const struct stats_proc *sp = &st->procs[i];
		char key[256], extra[128];
		struct series *s;

		extra_key(m, sp->pid, &sp->container, extra, sizeof(extra));
		snprintf(key, sizeof(key), "%s%s", sp->service, extra);
		if ((s = table_get(&a->active, key, 0)))
			s->count += sp->conns;
		if ((s = table_get(&a->in_flight, key, 0)))
			s->count += sp->in_flight;
	}
}

static void render_http(struct metrics *m, const struct pipeline_stats *st, struct jbuf *o)
{
	static const char *const req_b[] = { "service", "method", "route", "status_code" };
	const char *req_l[7], *dur_l[6], *svc_l[4];
	int n_req = label_names(m, req_b, 4, req_l), n_dur = label_names(m, req_b, 3, dur_l);
	int n_svc = label_names(m, req_b, 1, svc_l);
	struct conn_agg a = {};

	header(o, "http_requests_total", "counter", "HTTP requests by status code");
	counter_table(o, &m->requests, "http_requests_total", req_l, n_req);
	header(o, "http_request_duration_seconds", "histogram",
	       "Request duration: first request byte read to last response byte written");
	histogram_table(m, &m->duration, o, "http_request_duration_seconds", dur_l, n_dur);
	conn_agg(&a, m, st);
	header(o, "http_connections_active", "gauge", "Open TCP connections");
	counter_table(o, &a.active, "http_connections_active", svc_l, n_svc);
	header(o, "http_requests_in_flight", "gauge", "Requests being processed");
	counter_table(o, &a.in_flight, "http_requests_in_flight", svc_l, n_svc);
	header(o, "http_bytes_sent_total", "counter", "Total response bytes");
	counter_table_of(o, &m->bytes, "http_bytes_sent_total", svc_l, n_svc, false);
	header(o, "http_bytes_received_total", "counter", "Total request bytes");
	counter_table_of(o, &m->bytes, "http_bytes_received_total", svc_l, n_svc, true);
	table_free(&a.active);
	table_free(&a.in_flight);
	if (m->grpc.n) {
		static const char *const g_b[] = { "service", "grpc_service", "grpc_method",
						   "grpc_code" };
		const char *g_l[8], *gd_l[8];
		int n_g = label_names(m, g_b, 4, g_l), n_gd = label_names(m, g_b, 3, gd_l);

		header(o, "grpc_server_handled_total", "counter",
		       "gRPC calls completed on the server, by status code");
		counter_table(o, &m->grpc, "grpc_server_handled_total", g_l, n_g);
		header(o, "grpc_server_handling_seconds", "histogram",
		       "gRPC call duration on the server");
		histogram_table(m, &m->grpc_dur, o, "grpc_server_handling_seconds", gd_l, n_gd);
	}
}

static void loop_series(struct jbuf *o, bool blocked, const struct stats_loop *sl)
{
	const struct loop_stats *s = &sl->s;
	const char *svc = sl->service;
	uint32_t pid = sl->pid;
	uint64_t cum = 0;

	if (blocked) {
		jb_printf(o, "asyncio_loop_blocked_total{");
		labels_kv(o, svc, pid);
		jb_printf(o, "} %llu\n", (unsigned long long)s->blocked);
		return;
	}
	for (int i = 0; i < OBS_LOOP_BUCKETS; i++) {
		cum += s->buckets[i];
		jb_printf(o, "asyncio_loop_busy_seconds_bucket{");
		labels_kv(o, svc, pid);
		jb_printf(o, ",le=\"%g\"} %llu\n", (double)(2ull << i) / 1e6, (unsigned long long)cum);
	}
	jb_printf(o, "asyncio_loop_busy_seconds_bucket{");
	labels_kv(o, svc, pid);
	jb_printf(o, ",le=\"+Inf\"} %llu\nasyncio_loop_busy_seconds_sum{", (unsigned long long)s->count);
	labels_kv(o, svc, pid);
	jb_printf(o, "} %.9f\nasyncio_loop_busy_seconds_count{", s->sum_ns / 1e9);
	labels_kv(o, svc, pid);
	jb_printf(o, "} %llu\n", (unsigned long long)s->count);
}

static void render_loops(const struct pipeline_stats *st, struct jbuf *o)
{
	header(o, "asyncio_loop_busy_seconds", "histogram",
	       "Event-loop iteration busy time (epoll_wait return to the next wait), per worker");
	for (size_t i = 0; i < st->n_loops; i++)
		loop_series(o, false, &st->loops[i]);
	header(o, "asyncio_loop_blocked_total", "counter",
	       "Event-loop iterations longer than the blocked threshold, per worker");
	for (size_t i = 0; i < st->n_loops; i++)
		loop_series(o, true, &st->loops[i]);
}

/* ---- the same aggregates as JSON (/api/stats) ---- */

/* The labels of a series as string members: names[i] takes the i-th value of key. */
static void json_labels(struct jbuf *o, const char *const *names, int n, const char *key)
{
	const char *p = key;

	for (int i = 0; i < n; i++) {
		size_t l = strcspn(p, "\x1f");

		jb_strn(o, names[i], p, l);
		p += l + (p[l] ? 1 : 0);
	}
}

/* "requests": one object per http_requests_total series. */
static void json_requests(struct metrics *m, struct jbuf *o, const char *const *names, int n)
{
	const struct table *t = &m->requests;

	jb_arr_open(o, "requests");
	for (size_t i = 0; i < t->n_buckets; i++) {
		for (const struct series *s = t->b[i]; s; s = s->next) {
			jb_obj_open(o);
			json_labels(o, names, n, s->key);
			jb_u64(o, "count", s->count);
			jb_obj_close(o);
		}
	}
	jb_arr_close(o);
}

/* A route's http_request_duration_seconds: the counts per bucket of
 * "duration_buckets_seconds", not cumulative, and one more for +Inf. */
static void json_duration(const struct metrics *m, const struct series *s, struct jbuf *o)
{
	uint64_t below = 0;

	jb_key(o, "duration_seconds");
	jb_obj_open(o);
	jb_dbl(o, "sum", s->sum);
	jb_arr_open(o, "buckets");
	for (int b = 0; b < m->o.n_buckets; b++) {
		jb_u64(o, NULL, s->buckets[b]);
		below += s->buckets[b];
	}
	jb_u64(o, NULL, s->count - below);
	jb_arr_close(o);
	jb_obj_close(o);
}

/* A route's latency: [upper bound us, count] of each bucket that has counts. */
static void json_latency(const struct series *s, struct jbuf *o)
{
	jb_arr_open(o, "latency_us");
	for (uint32_t i = 0; i < s->latency.len; i++) {
		jb_arr_open(o, NULL);
		jb_u64(o, NULL, lh_upper(s->latency.idx[i]));
		jb_u64(o, NULL, s->latency.n[i]);
		jb_arr_close(o);
	}
	jb_arr_close(o);
}

/* "routes": one object per http_request_duration_seconds series, with what
 * /api/stats adds to it. */
static void json_routes(struct metrics *m, struct jbuf *o, const char *const *names, int n)
{
	const struct table *t = &m->duration;

	jb_arr_open(o, "routes");
	for (size_t i = 0; i < t->n_buckets; i++) {
		for (const struct series *s = t->b[i]; s; s = s->next) {
			jb_obj_open(o);
			json_labels(o, names, n, s->key);
			jb_u64(o, "count", s->count);
			jb_u64(o, "errors", s->errors);
			jb_u64(o, "bytes_received", s->bytes_in);
			jb_u64(o, "bytes_sent", s->bytes_out);
			json_duration(m, s, o);
			json_latency(s, o);
			jb_obj_close(o);
		}
	}
	jb_arr_close(o);
}

/* "services": the connection gauges of every observed service. */
static void json_services(const struct conn_agg *a, struct jbuf *o, const char *const *names,
			  int n)
{
	const struct table *t = &a->active;

	jb_arr_open(o, "services");
	for (size_t i = 0; i < t->n_buckets; i++) {
		for (const struct series *s = t->b[i]; s; s = s->next) {
			const struct series *fl = table_lookup(&a->in_flight, s->key);

			jb_obj_open(o);
			json_labels(o, names, n, s->key);
			jb_u64(o, "connections_active", s->count);
			jb_u64(o, "requests_in_flight", fl ? fl->count : 0);
			jb_obj_close(o);
		}
	}
	jb_arr_close(o);
}

/* "bytes": http_bytes_sent_total and http_bytes_received_total per service. */
static void json_bytes(struct metrics *m, struct jbuf *o, const char *const *names, int n)
{
	const struct table *t = &m->bytes;

	jb_arr_open(o, "bytes");
	for (size_t i = 0; i < t->n_buckets; i++) {
		for (const struct series *s = t->b[i]; s; s = s->next) {
			jb_obj_open(o);
			json_labels(o, names, n, s->key);
			jb_u64(o, "sent", s->count);
			jb_u64(o, "received", s->count_in);
			jb_obj_close(o);
		}
	}
	jb_arr_close(o);
}

static void json_loop(struct jbuf *o, const struct stats_loop *sl)
{
	const struct loop_stats *s = &sl->s;

	jb_obj_open(o);
	jb_str(o, "service", sl->service);
	jb_u64(o, "worker", sl->pid);
	jb_u64(o, "iterations", s->count);
	jb_dbl(o, "busy_seconds", s->sum_ns / 1e9);
	jb_u64(o, "blocked", s->blocked);
	jb_arr_open(o, "buckets");
	for (int i = 0; i < OBS_LOOP_BUCKETS; i++)
		jb_u64(o, NULL, s->buckets[i]);
	jb_arr_close(o);
	jb_obj_close(o);
}

/* "loops": asyncio_loop_* per worker; bucket i counts busy times below
 * "loop_buckets_us"[i] (and at least the bound before). */
static void json_loops(const struct pipeline_stats *st, struct jbuf *o)
{
	jb_arr_open(o, "loop_buckets_us");
	for (int i = 0; i < OBS_LOOP_BUCKETS; i++)
		jb_u64(o, NULL, 2ull << i);
	jb_arr_close(o);
	jb_arr_open(o, "loops");
	for (size_t i = 0; st && i < st->n_loops; i++)
		json_loop(o, &st->loops[i]);
	jb_arr_close(o);
}

/* The bounds every route's histograms share. */
static void json_bounds(const struct metrics *m, struct jbuf *o)
{
	jb_arr_open(o, "duration_buckets_seconds");
	for (int b = 0; b < m->o.n_buckets; b++)
		jb_dbl(o, NULL, m->o.buckets[b]);
	jb_arr_close(o);
	jb_key(o, "latency_scheme");
	jb_obj_open(o);
	jb_str(o, "kind", "log-linear");
	jb_str(o, "unit", "us");
	jb_u64(o, "sub_buckets", LH_SUB);
	jb_u64(o, "max_us", lh_upper(LH_BUCKETS - 1));
	jb_obj_close(o);
}

void metrics__render_json(struct metrics *m, const struct pipeline_stats *st, struct jbuf *out)
{
	static const char *const req_b[] = { "service", "method", "route", "status_code" };
	const char *req_l[7], *dur_l[6], *svc_l[4];
	int n_req = label_names(m, req_b, 4, req_l), n_dur = label_names(m, req_b, 3, dur_l);
	int n_svc = label_names(m, req_b, 1, svc_l);
	struct conn_agg a = {};

	json_bounds(m, out);
	json_requests(m, out, req_l, n_req);
	json_routes(m, out, dur_l, n_dur);
	conn_agg(&a, m, st);
	json_services(&a, out, svc_l, n_svc);
	json_bytes(m, out, svc_l, n_svc);
	table_free(&a.active);
	table_free(&a.in_flight);
	json_loops(st, out);
}

void metrics__render(struct metrics *m, const struct pipeline_stats *st, struct jbuf *out)
{
	render_http(m, st, out);
	client_metrics__render(m->client, out);
	if (st)
		render_loops(st, out);
}

/* ---- snapshot (exporters) ---- */

#define SNAP_DUR_LABELS	6	/* by_status: service, method, route, status, scheme, error */
#define SNAP_MAX_FIELDS	(SNAP_DUR_LABELS + 3)	/* then worker, container_id, pod_uid */

/* Split labels (a copy of a key) in place into n values; missing ones are "". */
static void split_labels(char *labels, const char **f, int n)
{
	char *p = labels;

	for (int i = 0; i < n; i++) {
		char *sep = p ? strchr(p, '\x1f') : NULL;

		f[i] = p ? p : "";
		if (sep)
			*sep = 0;
		p = sep ? sep + 1 : NULL;
	}
}

/* The label values of pt from its key: n_base of the table, then the optional ones. */
static void point_labels(const struct metrics *m, struct metrics_point *pt, int n_base)
{
	const char *f[SNAP_MAX_FIELDS];
	int n = n_base;

	split_labels(pt->labels, f, n_base + m->o.worker_label + 2 * m->o.container_label);
	pt->service = f[0];
	pt->method = pt->route = pt->scheme = pt->error = "";
	if (n_base == SNAP_DUR_LABELS) {
		pt->method = f[1];
		pt->route = f[2];
		pt->status = atoi(f[3]);
		pt->scheme = f[4];
		pt->error = f[5];
	}
	if (m->o.worker_label)
		pt->worker = strtoul(f[n++], NULL, 10);
	pt->container_id = pt->pod_uid = "";
	if (m->o.container_label) {
		pt->container_id = f[n++];
		pt->pod_uid = f[n++];
	}
}

/* Histogram buckets as n_bounds + 1 counts, the last one above every bound. */
static uint64_t *copy_buckets(const struct metrics *m, const struct series *s)
{
	uint64_t *b = malloc((m->o.n_buckets + 1) * sizeof(*b)), below = 0;

	if (!b)
		return NULL;
	for (int i = 0; i < m->o.n_buckets; i++)
		below += b[i] = s->buckets[i];
	b[m->o.n_buckets] = s->count - below;
	return b;
}

/* Append series s of a table with n_base label values as a point. 0 or -ENOMEM. */
static int snap_series(struct metrics_snapshot *sn, const struct metrics *m, enum metrics_kind kind,
		       const struct series *s, int n_base)
{
	struct metrics_point *pt;

	if (sn->n_points == sn->cap_points) {
		size_t cap = sn->cap_points ? sn->cap_points * 2 : 64;
		struct metrics_point *np = realloc(sn->points, cap * sizeof(*np));

		if (!np)
			return -ENOMEM;
		sn->points = np;
		sn->cap_points = cap;
	}
	pt = &sn->points[sn->n_points];
	memset(pt, 0, sizeof(*pt));
	pt->kind = kind;
	pt->key = strdup(s->key);
	pt->labels = strdup(s->key);
	pt->buckets = kind == METRICS_DURATION ? copy_buckets(m, s) : NULL;
	if (!pt->key || !pt->labels || (kind == METRICS_DURATION && !pt->buckets)) {
		free(pt->key);
		free(pt->labels);
		free(pt->buckets);
		return -ENOMEM;
	}
	point_labels(m, pt, n_base);
	pt->value = kind == METRICS_BYTES_IN ? s->count_in : s->count;
	pt->sum = s->sum;
	sn->n_points++;
	return 0;
}

static int snap_table(struct metrics_snapshot *sn, const struct metrics *m, enum metrics_kind kind,
		      const struct table *t, int n_base)
{
	for (size_t i = 0; i < t->n_buckets; i++)
		for (const struct series *s = t->b[i]; s; s = s->next)
			if (snap_series(sn, m, kind, s, n_base))
				return -ENOMEM;
	return 0;
}

/* The in-flight gauges (as /metrics computes them) and the observed processes. */
static int snap_pipeline(struct metrics_snapshot *sn, struct metrics *m,
			 const struct pipeline_stats *st)
{
	struct conn_agg a = {};
	int err;

	conn_agg(&a, m, st);
	err = snap_table(sn, m, METRICS_IN_FLIGHT, &a.in_flight, 1);
	table_free(&a.active);
	table_free(&a.in_flight);
	if (err)
		return err;
	sn->procs = calloc(st->n_observed ?: 1, sizeof(*sn->procs));
	if (!sn->procs)
		return -ENOMEM;
	sn->cap_procs = st->n_observed;
	for (size_t i = 0; i < st->n_observed; i++) {
		struct metrics_proc *mp = &sn->procs[sn->n_procs++];

		mp->pid = st->procs[i].pid;
		snprintf(mp->service, sizeof(mp->service), "%s", st->procs[i].service);
		snprintf(mp->comm, sizeof(mp->comm), "%s", st->procs[i].comm);
		mp->container = st->procs[i].container;
	}
	return 0;
}

struct metrics_snapshot *metrics__snapshot(struct metrics *m, const struct pipeline_stats *st)
{
	struct metrics_snapshot *sn = calloc(1, sizeof(*sn));

	if (!sn)
		return NULL;
	sn->n_bounds = m->o.n_buckets;
	memcpy(sn->bounds, m->o.buckets, sizeof(sn->bounds));
	if (snap_table(sn, m, METRICS_DURATION, &m->by_status, SNAP_DUR_LABELS) ||
	    snap_table(sn, m, METRICS_BYTES_IN, &m->bytes, 1) ||
	    snap_table(sn, m, METRICS_BYTES_OUT, &m->bytes, 1) ||
	    (st && snap_pipeline(sn, m, st))) {
		metrics_snapshot__free(sn);
		errno = ENOMEM;
		return NULL;
	}
	return sn;
}

void metrics_snapshot__free(struct metrics_snapshot *sn)
{
	if (!sn)
		return;
	for (size_t i = 0; i < sn->n_points; i++) {
		free(sn->points[i].key);
		free(sn->points[i].labels);
		free(sn->points[i].buckets);
	}
	free(sn->points);
	free(sn->procs);
	free(sn);
}

/* ---- the sink (sink.h) ---- */

static void sink_scrape(void *ctx, const struct pipeline_stats *st, struct jbuf *out)
{
	metrics__render(ctx, st, out);
}

static void sink_free(void *ctx)
{
	metrics__free(ctx);
}

const struct sink_ops metrics_sink = {
	.name = "metrics",
	.record = metrics__record,
	.scrape = sink_scrape,
	.free = sink_free,
};
