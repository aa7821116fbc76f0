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

static const char *method_label(const char *m)
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
		 method_label(r->method), r->route, r->status, r->tls ? "https" : "http", error,
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
	key_str(&base, method_label(r->method));
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

static void label_value(struct jbuf *o, const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '\\' || v[i] == '"')
			jb_raw(o, "\\", 1);
		if (v[i] == '\n')
			jb_raw(o, "\\n", 2);
		else
			jb_raw(o, v + i, 1);
	}
}

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
		label_value(o, p, l);
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
	label_value(o, service, strlen(service));
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

/* Per-service connection gauges, computed from the open connections. */
struct conn_agg {
	struct metrics *m;
	struct pipeline *p;
	struct table active, in_flight;
};

static void agg_conn(void *ctx, const struct conn_view *v)
{
	struct conn_agg *a = ctx;
	char key[256], extra[128];
	struct series *s;

	extra_key(a->m, v->pid, pipeline__container_of(a->p, v->pid), extra, sizeof(extra));
	snprintf(key, sizeof(key), "%s%s", pipeline__service_of(a->p, v->pid, v->comm, v->lport),
		 extra);
	if ((s = table_get(&a->active, key, 0)))
		s->count++;
	if ((s = table_get(&a->in_flight, key, 0)))
		s->count += v->in_flight;
}

/* Every observed process's service gets its gauges, 0 when idle. */
static void agg_proc(void *ctx, const struct proc_view *v)
{
	struct conn_view cv = { .pid = v->pid, .lport = v->lport, .comm = v->comm };
	struct conn_agg *a = ctx;
	char key[256], extra[128];

	extra_key(a->m, cv.pid, pipeline__container_of(a->p, cv.pid), extra, sizeof(extra));
	snprintf(key, sizeof(key), "%s%s", pipeline__service_of(a->p, cv.pid, cv.comm, cv.lport),
		 extra);
	table_get(&a->active, key, 0);
	table_get(&a->in_flight, key, 0);
}

static void render_http(struct metrics *m, struct pipeline *p, struct jbuf *o)
{
	static const char *const req_b[] = { "service", "method", "route", "status_code" };
	const char *req_l[7], *dur_l[6], *svc_l[4];
	int n_req = label_names(m, req_b, 4, req_l), n_dur = label_names(m, req_b, 3, dur_l);
	int n_svc = label_names(m, req_b, 1, svc_l);
	struct conn_agg a = { .m = m, .p = p };

	header(o, "http_requests_total", "counter", "HTTP requests by status code");
	counter_table(o, &m->requests, "http_requests_total", req_l, n_req);
	header(o, "http_request_duration_seconds", "histogram",
	       "Request duration: first request byte read to last response byte written");
	histogram_table(m, &m->duration, o, "http_request_duration_seconds", dur_l, n_dur);
	if (p) {
		pipeline__foreach_proc(p, agg_proc, &a);
		pipeline__foreach_conn(p, agg_conn, &a);
	}
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

static void obs_collapsed(void *ctx, const char *service, uint64_t collapsed, unsigned distinct)
{
	counter_u64(ctx, collapsed, "service", service, NULL, NULL);
}

static void obs_events(struct counter_visit *v, const uint64_t *kc)
{
	static const struct {
		enum obs_counter c;
		const char *reason;
	} lost[] = {
		{ OBS_C_LOST_RINGBUF, "ringbuf_full" },	   { OBS_C_LOST_CONNS_FULL, "conn_table_full" },
		{ OBS_C_LOST_ARGS_FULL, "args_table_full" }, { OBS_C_LOST_TARGETS_FULL, "targets_full" },
		{ OBS_C_READ_FAULT, "read_fault" },	   { OBS_C_STORE_FULL, "socket_storage_full" },
		{ OBS_C_TLS_UNMAPPED, "tls_unmapped" },
	};
	static const struct {
		enum obs_counter c;
		const char *name, *help;
	} kernel[] = {
		{ OBS_C_UNDECODED, "obs_capture_undecoded_total",
		  "Socket reads/writes through calls obs cannot decode (io_uring, splice, recvmmsg): exact-length gaps" },
		{ OBS_C_ADOPT_SKIPPED, "obs_adopt_skipped_reads_total",
		  "Reads on connections first seen mid-stream, before a request start" },
		{ OBS_C_LOG_WRITES, "obs_log_writes_total",
		  "stdout/stderr writes of observed processes captured" },
	};

	counter_family(v, "obs_events_total", "counter", "Kernel records written to the ring buffer");
	counter_u64(v, kc[OBS_C_EVENTS], NULL, NULL, NULL, NULL);
	counter_family(v, "obs_events_lost_total", "counter",
		   "Kernel records or captures lost, by reason");
	for (size_t i = 0; i < sizeof(lost) / sizeof(lost[0]); i++)
		counter_u64(v, kc[lost[i].c], "reason", lost[i].reason, NULL, NULL);
	counter_family(v, "obs_capture_truncated_total", "counter",
		   "Reads/writes longer than the capture (bytes counted, not all copied)");
	counter_u64(v, kc[OBS_C_TRUNCATED], NULL, NULL, NULL, NULL);
	for (size_t i = 0; i < sizeof(kernel) / sizeof(kernel[0]); i++) {
		counter_family(v, kernel[i].name, "counter", kernel[i].help);
		counter_u64(v, kc[kernel[i].c], NULL, NULL, NULL, NULL);
	}
}

static void obs_parsing(struct counter_visit *v, const struct conn_stats *st)
{
	counter_family(v, "obs_parse_errors_total", "counter",
		   "HTTP/1 parse errors by direction and kind");
	for (int d = 0; d < 2; d++)
		for (int e = 1; e < H1E_MAX; e++)
			counter_u64(v, st->parse_errors[d][e], "direction", d ? "response" : "request",
				"error", h1_error_name(e));
	counter_family(v, "obs_connections_lost_events_total", "counter",
		   "Connections on which lost kernel records were noticed");
	counter_u64(v, st->seq_gaps, NULL, NULL, NULL, NULL);
}

static void obs_connections(struct counter_visit *v, struct pipeline *p, const uint64_t *kc)
{
	counter_family(v, "obs_connections_tracked", "gauge", "HTTP connections (TCP and UNIX) followed right now");
	counter_u64(v, pipeline__active_conns(p), NULL, NULL, NULL, NULL);
	counter_family(v, "obs_connections_opened_total", "counter", "Server-side connections (TCP and UNIX) adopted at their first read");
	counter_u64(v, kc[OBS_C_CONNS_OPENED], NULL, NULL, NULL, NULL);
	counter_family(v, "obs_connections_not_http_total", "counter",
		   "Adopted connections whose first bytes were not HTTP");
	counter_u64(v, kc[OBS_C_CONNS_NOT_HTTP], NULL, NULL, NULL, NULL);
}

static void obs_requests(struct counter_visit *v, const struct conn_stats *st)
{
	counter_family(v, "obs_requests_total", "counter", "Request records completed, by outcome");
	counter_u64(v, st->records_ok, "outcome", "ok", NULL, NULL);
	counter_u64(v, st->records_failed, "outcome", "failed", NULL, NULL);
	counter_family(v, "obs_incomplete_requests_total", "counter",
		   "Connections that ended inside a request head (no request to report)");
	counter_u64(v, st->incomplete_requests, NULL, NULL, NULL, NULL);
}

void metrics__obs_counters(struct pipeline *p, counter_fn fn, void *ctx)
{
	const uint64_t *kc = pipeline__kcounters(p);
	const struct conn_stats *st = pipeline__stats(p);
	struct counter_visit v = { .fn = fn, .ctx = ctx };

	obs_events(&v, kc);
	obs_parsing(&v, st);
	obs_connections(&v, p, kc);
	obs_requests(&v, st);
	counter_family(&v, "obs_ringbuf_fill_ratio", "gauge", "Ring buffer fill before the last drain");
	counter_ratio(&v, pipeline__ringbuf_fill(p));
	counter_family(&v, "obs_ringbuf_fill_peak_ratio", "gauge", "Highest ring buffer fill seen");
	counter_ratio(&v, pipeline__ringbuf_fill_peak(p));
	counter_family(&v, "obs_routes_collapsed_total", "counter",
		   "Paths reported as the overflow route because the service hit its route cap");
	counter_none(&v);	/* announced even before any service has a route table */
	routes__foreach_service(pipeline__routes(p), obs_collapsed, &v);
	pipeline__client_counters(p, &v);
}

struct loop_render {
	struct pipeline *p;
	struct jbuf *o;
	bool blocked;	/* second pass: the blocked counter */
};

static void loop_series(void *ctx, uint32_t pid, const char *svc, const struct loop_stats *s)
{
	struct loop_render *lr = ctx;
	struct jbuf *o = lr->o;
	uint64_t cum = 0;

	if (lr->blocked) {
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

static void render_loops(struct pipeline *p, struct jbuf *o)
{
	struct loop_render lr = { .p = p, .o = o };

	header(o, "asyncio_loop_busy_seconds", "histogram",
	       "Event-loop iteration busy time (epoll_wait return to the next wait), per worker");
	pipeline__foreach_loop(p, loop_series, &lr);
	header(o, "asyncio_loop_blocked_total", "counter",
	       "Event-loop iterations longer than the blocked threshold, per worker");
	lr.blocked = true;
	pipeline__foreach_loop(p, loop_series, &lr);
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

static void json_loop(void *ctx, uint32_t pid, const char *svc, const struct loop_stats *s)
{
	struct jbuf *o = ctx;

	jb_obj_open(o);
	jb_str(o, "service", svc);
	jb_u64(o, "worker", pid);
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
static void json_loops(struct pipeline *p, struct jbuf *o)
{
	jb_arr_open(o, "loop_buckets_us");
	for (int i = 0; i < OBS_LOOP_BUCKETS; i++)
		jb_u64(o, NULL, 2ull << i);
	jb_arr_close(o);
	jb_arr_open(o, "loops");
	if (p)
		pipeline__foreach_loop(p, json_loop, o);
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

void metrics__render_json(struct metrics *m, struct pipeline *p, struct jbuf *out)
{
	static const char *const req_b[] = { "service", "method", "route", "status_code" };
	const char *req_l[7], *dur_l[6], *svc_l[4];
	int n_req = label_names(m, req_b, 4, req_l), n_dur = label_names(m, req_b, 3, dur_l);
	int n_svc = label_names(m, req_b, 1, svc_l);
	struct conn_agg a = { .m = m, .p = p };

	json_bounds(m, out);
	json_requests(m, out, req_l, n_req);
	json_routes(m, out, dur_l, n_dur);
	if (p) {
		pipeline__foreach_proc(p, agg_proc, &a);
		pipeline__foreach_conn(p, agg_conn, &a);
	}
	json_services(&a, out, svc_l, n_svc);
	json_bytes(m, out, svc_l, n_svc);
	table_free(&a.active);
	table_free(&a.in_flight);
	json_loops(p, out);
}

void metrics__render(struct metrics *m, struct pipeline *p, struct jbuf *out)
{
	render_http(m, p, out);
	client_metrics__render(m->client, out);
	if (p) {
		struct counters_text ct = { .out = out };

		render_loops(p, out);
		metrics__obs_counters(p, counters_text, &ct);
	}
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

struct snap_procs {
	struct metrics_snapshot *sn;
	struct pipeline *p;
	int err;
};

static void snap_proc(void *ctx, const struct proc_view *v)
{
	struct snap_procs *sp = ctx;
	struct metrics_snapshot *sn = sp->sn;
	struct metrics_proc *mp;

	if (sn->n_procs == sn->cap_procs) {
		size_t cap = sn->cap_procs ? sn->cap_procs * 2 : 16;
		struct metrics_proc *np = realloc(sn->procs, cap * sizeof(*np));

		if (!np) {
			sp->err = -ENOMEM;
			return;
		}
		sn->procs = np;
		sn->cap_procs = cap;
	}
	mp = &sn->procs[sn->n_procs++];
	mp->pid = v->pid;
	snprintf(mp->service, sizeof(mp->service), "%s",
		 pipeline__service_of(sp->p, v->pid, v->comm, v->lport));
	snprintf(mp->comm, sizeof(mp->comm), "%s", v->comm);
	mp->container = *pipeline__container_of(sp->p, v->pid);
}

/* The in-flight gauges (as /metrics computes them) and the observed processes. */
static int snap_pipeline(struct metrics_snapshot *sn, struct metrics *m, struct pipeline *p)
{
	struct conn_agg a = { .m = m, .p = p };
	struct snap_procs sp = { .sn = sn, .p = p };
	int err;

	pipeline__foreach_proc(p, agg_proc, &a);
	pipeline__foreach_conn(p, agg_conn, &a);
	err = snap_table(sn, m, METRICS_IN_FLIGHT, &a.in_flight, 1);
	table_free(&a.active);
	table_free(&a.in_flight);
	if (err)
		return err;
	pipeline__foreach_proc(p, snap_proc, &sp);
	return sp.err;
}

struct metrics_snapshot *metrics__snapshot(struct metrics *m, struct pipeline *p)
{
	struct metrics_snapshot *sn = calloc(1, sizeof(*sn));

	if (!sn)
		return NULL;
	sn->n_bounds = m->o.n_buckets;
	memcpy(sn->bounds, m->o.buckets, sizeof(sn->bounds));
	if (snap_table(sn, m, METRICS_DURATION, &m->by_status, SNAP_DUR_LABELS) ||
	    snap_table(sn, m, METRICS_BYTES_IN, &m->bytes, 1) ||
	    snap_table(sn, m, METRICS_BYTES_OUT, &m->bytes, 1) ||
	    (p && snap_pipeline(sn, m, p))) {
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
