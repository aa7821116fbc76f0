// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "otlp.pb-c.h"
#include "sinks/otlp_encode.h"
#include "sinks/otlp_metrics.h"
#include "base/clock.h"
#include "request/sink.h"
#include "sinks/otlp_export.h"
#include "sinks/sender.h"

typedef Obs__Otlp__KeyValue KeyValue;
typedef Obs__Otlp__AnyValue AnyValue;
typedef Obs__Otlp__HistogramDataPoint HistPoint;
typedef Obs__Otlp__NumberDataPoint NumPoint;

#define PT_ATTRS	5	/* method, route, scheme, status code, error.type */
#define PREV_HASH_MIN	256

/* A series' totals at the previous collection (delta temporality). */
struct prev {
	struct prev *next;
	enum metrics_kind kind;
	char *key;
	uint64_t value;
	double sum;
	uint64_t *buckets;	/* histograms: n_bounds + 1 */
};

/* An encoded request waiting for the sender. */
struct body {
	uint8_t *buf;
	size_t len, n_points;
};

struct otlp_metrics {
	struct otlp_metrics_config c;
	struct metrics *m;		/* the aggregates it exports (borrowed) */
	struct otlp_export x;
	struct otlp_queue q;		/* struct body, oldest first */
	uint64_t start_wall_ns;		/* cumulative start time: the exporter's creation */
	uint64_t last_wall_ns;		/* the previous collection (delta start time) */
	uint64_t next_mono_ns;		/* when the next collection is due */
	struct prev **prev;		/* delta: the previous totals, hashed by kind and key */
	size_t n_prev_b, n_prev;
	char host[256];
	struct otlp_metrics_stats st;
};

/* What one data point sends: the snapshot's totals, or their change (delta). */
struct emit {
	const struct metrics_point *pt;
	uint64_t value;		/* histogram count, or the sum's value */
	double sum;
	uint64_t *buckets;	/* the snapshot's, or a delta owned by the emit */
	bool own_buckets;
	uint64_t start_ns;
};

static const struct metric_def {
	const char *name, *unit, *desc;
} defs[METRICS_KINDS] = {
	[METRICS_DURATION] = { "http.server.request.duration", "s",
			       "Duration of HTTP server requests." },
	[METRICS_BYTES_IN] = { "obs.http.server.request.size", "By",
			       "Request bytes read by the server: head, body and framing." },
	[METRICS_BYTES_OUT] = { "obs.http.server.response.size", "By",
				"Response bytes written by the server: head, body and framing." },
	[METRICS_IN_FLIGHT] = { "http.server.active_requests", "{request}",
				"Number of active HTTP server requests." },
};

static uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- configuration ---- */

int otlp_metrics_config_endpoint(struct otlp_metrics_config *c, const char *url, bool full,
				 enum otlpm_source src)
{
	char out[sizeof(c->url)];

	if (otlp_url(out, url, full, "/v1/metrics"))
		return -EINVAL;
	if (src < c->url_src || (src == c->url_src && !full && c->url_specific))
		return 0;
	memcpy(c->url, out, sizeof(c->url));
	c->url_src = src;
	c->url_specific = full;
	return 0;
}

int otlp_metrics_config_header(struct otlp_metrics_config *c, const char *kv)
{
	return otlp_header_add(c->headers, &c->n_headers, kv);
}

int otlp_metrics_config_temporality(struct otlp_metrics_config *c, const char *v)
{
	if (!strcasecmp(v, "cumulative"))
		c->delta = false;
	else if (!strcasecmp(v, "delta") || !strcasecmp(v, "lowmemory"))
		c->delta = true;	/* lowmemory: delta for every series obs has but the gauge */
	else
		return -EINVAL;
	return 0;
}

int otlp_metrics_config_exporter(struct otlp_metrics_config *c, const char *v)
{
	if (!strcmp(v, "otlp"))
		c->off = false;
	else if (!strcmp(v, "none"))
		c->off = true;
	else
		return -EINVAL;
	return 0;
}

void otlp_metrics_config_init(struct otlp_metrics_config *c)
{
	memset(c, 0, sizeof(*c));
	c->interval_ms = 60000;
	c->timeout_ms = 10000;
}

int otlp_metrics_config_env(struct otlp_metrics_config *c)
{
	return otlp_env_headers(c->headers, &c->n_headers, "OTEL_EXPORTER_OTLP_METRICS_HEADERS") ?:
	       otlp_env_uint("OTEL_EXPORTER_OTLP_TIMEOUT", &c->timeout_ms, 1) ?:
	       otlp_env_uint("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", &c->timeout_ms, 1);
}

/* ---- delta: the previous totals ---- */

static uint64_t prev_hash(enum metrics_kind kind, const char *key)
{
	uint64_t h = 1469598103934665603ull ^ kind;

	while (*key)
		h = (h ^ (unsigned char)*key++) * 1099511628211ull;
	return h;
}

static void prev_grow(struct otlp_metrics *om)
{
	size_t nb = om->n_prev_b ? om->n_prev_b * 2 : PREV_HASH_MIN;
	struct prev **b = calloc(nb, sizeof(*b));

	if (!b)
		return;	/* chains just get longer */
	for (size_t i = 0; i < om->n_prev_b; i++) {
		struct prev *p = om->prev[i], *next;

		for (; p; p = next) {
			size_t j = prev_hash(p->kind, p->key) & (nb - 1);

			next = p->next;
			p->next = b[j];
			b[j] = p;
		}
	}
	free(om->prev);
	om->prev = b;
	om->n_prev_b = nb;
}

/* The previous totals of a series, zero the first time; NULL when memory is short. */
static struct prev *prev_get(struct otlp_metrics *om, const struct metrics_point *pt, int n_b)
{
	struct prev *p;
	size_t i;

	if (om->n_prev >= om->n_prev_b)
		prev_grow(om);
	if (!om->n_prev_b)
		return NULL;
	i = prev_hash(pt->kind, pt->key) & (om->n_prev_b - 1);
	for (p = om->prev[i]; p; p = p->next)
		if (p->kind == pt->kind && !strcmp(p->key, pt->key))
			return p;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->kind = pt->kind;
	p->key = strdup(pt->key);
	p->buckets = n_b ? calloc(n_b, sizeof(*p->buckets)) : NULL;
	if (!p->key || (n_b && !p->buckets)) {
		free(p->key);
		free(p->buckets);
		free(p);
		return NULL;
	}
	p->next = om->prev[i];
	om->prev[i] = p;
	om->n_prev++;
	return p;
}

/*
 * Turn e into the change since the previous collection and remember the new
 * totals. Returns false when there is nothing to send (no change, or no
 * memory to remember the series by).
 */
static bool delta_of(struct otlp_metrics *om, const struct metrics_snapshot *s, struct emit *e)
{
	const struct metrics_point *pt = e->pt;
	int n_b = pt->buckets ? s->n_bounds + 1 : 0;
	struct prev *p = prev_get(om, pt, n_b);

	if (!p || pt->value == p->value)
		return false;
	if (pt->value < p->value) {	/* counters only grow; a reset starts again */
		p->value = p->sum = 0;
		if (n_b)
			memset(p->buckets, 0, n_b * sizeof(*p->buckets));
	}
	if (n_b) {
		e->buckets = malloc(n_b * sizeof(*e->buckets));
		if (!e->buckets)
			return false;
		e->own_buckets = true;
		for (int i = 0; i < n_b; i++) {
			e->buckets[i] = pt->buckets[i] - p->buckets[i];
			p->buckets[i] = pt->buckets[i];
		}
	}
	e->value = pt->value - p->value;
	e->sum = pt->sum - p->sum;
	e->start_ns = om->last_wall_ns;
	p->value = pt->value;
	p->sum = pt->sum;
	return true;
}

static void prev_free_all(struct otlp_metrics *om)
{
	for (size_t i = 0; i < om->n_prev_b; i++) {
		struct prev *p = om->prev[i], *next;

		for (; p; p = next) {
			next = p->next;
			free(p->key);
			free(p->buckets);
			free(p);
		}
	}
	free(om->prev);
}

/* ---- what to send ---- */

/* Points of one resource: same service, worker and container labels. */
static int cmp_resource(const struct metrics_point *a, const struct metrics_point *b)
{
	if (a->worker != b->worker)
		return a->worker < b->worker ? -1 : 1;
	return strcmp(a->service, b->service) ?: strcmp(a->container_id, b->container_id) ?:
	       strcmp(a->pod_uid, b->pod_uid);
}

/* Resource, then kind: each metric's points end up next to each other. */
static int cmp_emit(const void *x, const void *y)
{
	const struct emit *a = x, *b = y;

	return cmp_resource(a->pt, b->pt) ?: (int)a->pt->kind - (int)b->pt->kind;
}

static void free_emits(struct emit *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (e[i].own_buckets)
			free(e[i].buckets);
	free(e);
}

/* The data points of s to send, sorted by resource and kind. 0 or -ENOMEM. */
static int build_emits(struct otlp_metrics *om, const struct metrics_snapshot *s,
		       struct emit **out, size_t *n_out)
{
	struct emit *e = calloc(s->n_points ? s->n_points : 1, sizeof(*e));
	size_t n = 0;

	if (!e)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_points; i++) {
		const struct metrics_point *pt = &s->points[i];

		e[n] = (struct emit){ .pt = pt, .value = pt->value, .sum = pt->sum,
				      .buckets = pt->buckets, .start_ns = om->start_wall_ns };
		/* the up-down counter stays cumulative in delta mode */
		if (om->c.delta && pt->kind != METRICS_IN_FLIGHT && !delta_of(om, s, &e[n]))
			continue;
		n++;
	}
	qsort(e, n, sizeof(*e), cmp_emit);
	*out = e;
	*n_out = n;
	return 0;
}

/* ---- encoding ---- */

struct pt_mem {
	HistPoint h;
	NumPoint num;
	KeyValue kv[PT_ATTRS];
	AnyValue av[PT_ATTRS];
	KeyValue *kvp[PT_ATTRS];
	char code[12];		/* error.type of a 5xx answer: its status code */
};

struct res_mem {
	Obs__Otlp__ResourceMetrics rm;
	Obs__Otlp__Resource res;
	Obs__Otlp__ScopeMetrics sm;
	Obs__Otlp__ScopeMetrics *smp;
	KeyValue kv[OTLPM_RES_ATTRS];
	AnyValue av[OTLPM_RES_ATTRS];
	KeyValue *kvp[OTLPM_RES_ATTRS];
	Obs__Otlp__Metric metric[METRICS_KINDS];
	Obs__Otlp__Metric *metricp[METRICS_KINDS];
	Obs__Otlp__Histogram hist;
	Obs__Otlp__Sum sum[METRICS_KINDS];
};

/* Everything one request body needs, freed once packed. */
struct body_mem {
	struct pt_mem *pm;
	HistPoint **hp;		/* per emit; a metric's points are a run of these */
	NumPoint **np;
	struct res_mem *rm;
	Obs__Otlp__ResourceMetrics **rmp;
};

static Obs__Otlp__InstrumentationScope scope = OBS__OTLP__INSTRUMENTATION_SCOPE__INIT;

static void kv_str(KeyValue *kv, AnyValue *av, const char *k, const char *v)
{
	obs__otlp__key_value__init(kv);
	obs__otlp__any_value__init(av);
	kv->key = (char *)k;
	av->value_case = OBS__OTLP__ANY_VALUE__VALUE_STRING_VALUE;
	av->string_value = (char *)v;
	kv->value = av;
}

static void kv_int(KeyValue *kv, AnyValue *av, const char *k, int64_t v)
{
	obs__otlp__key_value__init(kv);
	obs__otlp__any_value__init(av);
	kv->key = (char *)k;
	av->value_case = OBS__OTLP__ANY_VALUE__VALUE_INT_VALUE;
	av->int_value = v;
	kv->value = av;
}

/* Append an attribute to kv/av at *n. */
static void add_str(KeyValue *kv, AnyValue *av, size_t *n, const char *k, const char *v)
{
	kv_str(&kv[*n], &av[*n], k, v);
	(*n)++;
}

static void add_int(KeyValue *kv, AnyValue *av, size_t *n, const char *k, int64_t v)
{
	kv_int(&kv[*n], &av[*n], k, v);
	(*n)++;
}

/* http.server.request.duration's attributes (semantic conventions). */
static size_t duration_attrs(struct pt_mem *m, const struct metrics_point *pt)
{
	size_t n = 0;

	add_str(m->kv, m->av, &n, "http.request.method", pt->method);
	add_str(m->kv, m->av, &n, "http.route", pt->route);
	add_str(m->kv, m->av, &n, "url.scheme", pt->scheme);
	if (pt->status > 0)
		add_int(m->kv, m->av, &n, "http.response.status_code", pt->status);
	if (pt->error[0]) {
		add_str(m->kv, m->av, &n, "error.type", pt->error);
	} else if (pt->status >= 500) {
		snprintf(m->code, sizeof(m->code), "%d", pt->status);
		add_str(m->kv, m->av, &n, "error.type", m->code);
	}
	for (size_t i = 0; i < n; i++)
		m->kvp[i] = &m->kv[i];
	return n;
}

static void fill_hist(struct pt_mem *m, const struct emit *e, const struct metrics_snapshot *s,
		      uint64_t now)
{
	HistPoint *h = &m->h;

	obs__otlp__histogram_data_point__init(h);
	h->start_time_unix_nano = e->start_ns;
	h->time_unix_nano = now;
	h->count = e->value;
	h->optional_sum_case = OBS__OTLP__HISTOGRAM_DATA_POINT__OPTIONAL_SUM_SUM;
	h->sum = e->sum;
	h->n_bucket_counts = s->n_bounds + 1;
	h->bucket_counts = e->buckets;
	h->n_explicit_bounds = s->n_bounds;
	h->explicit_bounds = (double *)s->bounds;
	h->n_attributes = duration_attrs(m, e->pt);
	h->attributes = m->kvp;
}

static void fill_num(struct pt_mem *m, const struct emit *e, uint64_t now)
{
	NumPoint *p = &m->num;

	obs__otlp__number_data_point__init(p);
	p->start_time_unix_nano = e->start_ns;
	p->time_unix_nano = now;
	p->value_case = OBS__OTLP__NUMBER_DATA_POINT__VALUE_AS_INT;
	p->as_int = (int64_t)e->value;
}

/* The metric of kind k in rm, whose points are hp/np[0..n). */
static Obs__Otlp__Metric *fill_metric(struct otlp_metrics *om, struct res_mem *rm,
				      enum metrics_kind k, HistPoint **hp, NumPoint **np, size_t n)
{
	Obs__Otlp__Metric *m = &rm->metric[k];
	bool cumulative = !om->c.delta || k == METRICS_IN_FLIGHT;
	Obs__Otlp__AggregationTemporality t = cumulative ?
		OBS__OTLP__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_CUMULATIVE :
		OBS__OTLP__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_DELTA;

	obs__otlp__metric__init(m);
	m->name = (char *)defs[k].name;
	m->unit = (char *)defs[k].unit;
	m->description = (char *)defs[k].desc;
	if (k == METRICS_DURATION) {
		obs__otlp__histogram__init(&rm->hist);
		rm->hist.aggregation_temporality = t;
		rm->hist.n_data_points = n;
		rm->hist.data_points = hp;
		m->data_case = OBS__OTLP__METRIC__DATA_HISTOGRAM;
		m->histogram = &rm->hist;
	} else {
		obs__otlp__sum__init(&rm->sum[k]);
		rm->sum[k].aggregation_temporality = t;
		rm->sum[k].is_monotonic = k != METRICS_IN_FLIGHT;
		rm->sum[k].n_data_points = n;
		rm->sum[k].data_points = np;
		m->data_case = OBS__OTLP__METRIC__DATA_SUM;
		m->sum = &rm->sum[k];
	}
	return m;
}

/* The process a resource stands for: its worker, or the service's only process. */
static const struct metrics_proc *resource_proc(const struct metrics_snapshot *s,
						const struct metrics_point *pt)
{
	const struct metrics_proc *found = NULL;

	for (size_t i = 0; i < s->n_procs; i++) {
		const struct metrics_proc *p = &s->procs[i];

		if (pt->worker ? p->pid != pt->worker : strcmp(p->service, pt->service))
			continue;
		if (found)
			return NULL;	/* a service of several processes */
		found = p;
	}
	return found;
}

/* Resource attributes as spans have them (otlp_encode.h), for one service. */
static void fill_resource(struct otlp_metrics *om, struct res_mem *rm,
			  const struct metrics_snapshot *s, const struct metrics_point *pt)
{
	const struct metrics_proc *proc = resource_proc(s, pt);
	const char *cid = pt->container_id, *pod = pt->pod_uid;
	size_t n = 0;

	add_str(rm->kv, rm->av, &n, "service.name",
		om->c.service_name[0] ? om->c.service_name : pt->service);
	if (om->c.service_name[0])	/* keep the services' series apart */
		add_str(rm->kv, rm->av, &n, "obs.service", pt->service);
	add_str(rm->kv, rm->av, &n, "host.name", om->host);
	if (pt->worker || proc)
		add_int(rm->kv, rm->av, &n, "process.pid", pt->worker ?: proc->pid);
	if (proc)
		add_str(rm->kv, rm->av, &n, "process.executable.name", proc->comm);
	if (!cid[0] && proc)
		cid = proc->container.container_id;
	if (!pod[0] && proc)
		pod = proc->container.pod_uid;
	if (cid[0])
		add_str(rm->kv, rm->av, &n, "container.id", cid);
	if (pod[0])
		add_str(rm->kv, rm->av, &n, "k8s.pod.uid", pod);
	if (proc && proc->container.runtime)
		add_str(rm->kv, rm->av, &n, "container.runtime",
			cgroup_runtime_name(proc->container.runtime));
	add_str(rm->kv, rm->av, &n, "telemetry.sdk.name", "obs");
	add_str(rm->kv, rm->av, &n, "telemetry.sdk.language", "c");
	add_str(rm->kv, rm->av, &n, "telemetry.sdk.version", OBS_VERSION);
	for (size_t i = 0; i < n; i++)
		rm->kvp[i] = &rm->kv[i];
	obs__otlp__resource__init(&rm->res);
	rm->res.n_attributes = n;
	rm->res.attributes = rm->kvp;
}

/* One resource: e[0..n) are its points, sorted by kind; bm's arrays from index base. */
static void fill_group(struct otlp_metrics *om, struct body_mem *bm, struct res_mem *rm,
		       const struct metrics_snapshot *s, const struct emit *e, size_t base,
		       size_t n, uint64_t now)
{
	size_t n_metrics = 0;

	obs__otlp__resource_metrics__init(&rm->rm);
	obs__otlp__scope_metrics__init(&rm->sm);
	fill_resource(om, rm, s, e[0].pt);
	for (size_t i = 0; i < n;) {
		enum metrics_kind k = e[i].pt->kind;
		size_t j = i;

		for (; j < n && e[j].pt->kind == k; j++) {
			if (k == METRICS_DURATION)
				fill_hist(&bm->pm[base + j], &e[j], s, now);
			else
				fill_num(&bm->pm[base + j], &e[j], now);
			bm->hp[base + j] = &bm->pm[base + j].h;
			bm->np[base + j] = &bm->pm[base + j].num;
		}
		rm->metricp[n_metrics++] = fill_metric(om, rm, k, bm->hp + base + i, bm->np + base + i,
						       j - i);
		i = j;
	}
	scope.name = "obs";
	scope.version = OBS_VERSION;
	rm->sm.scope = &scope;
	rm->sm.n_metrics = n_metrics;
	rm->sm.metrics = rm->metricp;
	rm->smp = &rm->sm;
	rm->rm.resource = &rm->res;
	rm->rm.n_scope_metrics = 1;
	rm->rm.scope_metrics = &rm->smp;
}

static void body_mem_free(struct body_mem *bm)
{
	free(bm->pm);
	free(bm->hp);
	free(bm->np);
	free(bm->rm);
	free(bm->rmp);
}

/* How many resources the sorted e[0..n) (n > 0) span. */
static size_t count_resources(const struct emit *e, size_t n)
{
	size_t r = 1;

	for (size_t i = 1; i < n; i++)
		r += cmp_resource(e[i - 1].pt, e[i].pt) != 0;
	return r;
}

/* Pack e[0..n) (sorted, n > 0) into one ExportMetricsServiceRequest. 0 or -ENOMEM. */
static int encode_body(struct otlp_metrics *om, const struct metrics_snapshot *s,
		       const struct emit *e, size_t n, uint64_t now, uint8_t **out, size_t *len)
{
	Obs__Otlp__ExportMetricsServiceRequest req = OBS__OTLP__EXPORT_METRICS_SERVICE_REQUEST__INIT;
	size_t n_res = count_resources(e, n);
	struct body_mem bm = {
		.pm = calloc(n, sizeof(*bm.pm)), .hp = calloc(n, sizeof(*bm.hp)),
		.np = calloc(n, sizeof(*bm.np)), .rm = calloc(n_res, sizeof(*bm.rm)),
		.rmp = calloc(n_res, sizeof(*bm.rmp)),
	};
	int err = -ENOMEM;

	if (!bm.pm || !bm.hp || !bm.np || !bm.rm || !bm.rmp)
		goto out;
	n_res = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;

		while (j < n && !cmp_resource(e[i].pt, e[j].pt))
			j++;
		fill_group(om, &bm, &bm.rm[n_res], s, e + i, i, j - i, now);
		bm.rmp[n_res] = &bm.rm[n_res].rm;
		n_res++;
		i = j;
	}
	req.n_resource_metrics = n_res;
	req.resource_metrics = bm.rmp;
	*len = obs__otlp__export_metrics_service_request__get_packed_size(&req);
	*out = malloc(*len ? *len : 1);
	if (!*out)
		goto out;
	obs__otlp__export_metrics_service_request__pack(&req, *out);
	err = 0;
out:
	body_mem_free(&bm);
	return err;
}

/* ---- queue and sending ---- */

/* Queue a body; when the queue is full the oldest goes (a newer collection
 * holds the same cumulative totals). */
static void enqueue(struct otlp_metrics *om, uint8_t *buf, size_t len, size_t n_points)
{
	struct body *b;

	if (om->q.len == om->q.cap) {
		struct body *old = otlp_queue__at(&om->q, 0);

		om->st.exports_dropped_queue++;
		om->st.points_dropped_queue += old->n_points;
		free(old->buf);
		otlp_queue__pop(&om->q, 1);
	}
	b = otlp_queue__push(&om->q);
	*b = (struct body){ buf, len, n_points };
	om->st.points_queued += n_points;
	om->st.queue_len = om->q.len;
}

/* partial_success.rejected_data_points of a protobuf answer, if any. */
static void count_partial(struct otlp_metrics *om, const char *resp, size_t len)
{
	Obs__Otlp__ExportMetricsServiceResponse *r;

	if (!len)
		return;
	r = obs__otlp__export_metrics_service_response__unpack(NULL, len, (const uint8_t *)resp);
	if (!r)
		return;
	if (r->partial_success && r->partial_success->rejected_data_points > 0)
		om->st.points_rejected += r->partial_success->rejected_data_points;
	obs__otlp__export_metrics_service_response__free_unpacked(r, NULL);
}

static void on_done(void *ctx, bool delivered, size_t n, const char *resp, size_t len)
{
	struct otlp_metrics *om = ctx;

	if (delivered) {
		om->st.points_exported += n;
		count_partial(om, resp, len);
	} else {
		om->st.exports_dropped_failed++;
		om->st.points_dropped_failed += n;
	}
}

struct otlp_metrics *otlp_metrics__new(const struct otlp_metrics_config *c, struct metrics *m)
{
	struct otlp_metrics *om = calloc(1, sizeof(*om));

	if (!om)
		return NULL;
	om->c = *c;
	om->m = m;
	if (otlp_queue__init(&om->q, sizeof(struct body), OTLPM_MAX_QUEUE) ||
	    otlp_export__init(&om->x, "otlp-metrics", om->c.url, om->c.headers, om->c.n_headers,
			      om->c.timeout_ms, on_done, om)) {
		otlp_queue__fini(&om->q);
		free(om);
		errno = ENOMEM;
		return NULL;
	}
	gethostname(om->host, sizeof(om->host) - 1);
	om->start_wall_ns = om->last_wall_ns = wall_ns();
	om->next_mono_ns = mono_ns() + om->c.interval_ms * 1000000ull;
	return om;
}

bool otlp_metrics__due(const struct otlp_metrics *om)
{
	return mono_ns() >= om->next_mono_ns;
}

void otlp_metrics__collect(struct otlp_metrics *om, const struct metrics_snapshot *s)
{
	uint64_t now = wall_ns();
	struct emit *e;
	size_t n;

	om->next_mono_ns = mono_ns() + om->c.interval_ms * 1000000ull;
	om->st.collections++;
	if (build_emits(om, s, &e, &n)) {
		otlp_export__encode_error(&om->x, -ENOMEM);
		return;
	}
	for (size_t i = 0; i < n; i += OTLPM_MAX_POINTS) {
		size_t k = n - i < OTLPM_MAX_POINTS ? n - i : OTLPM_MAX_POINTS;
		uint8_t *buf;
		size_t len;

		if (encode_body(om, s, e + i, k, now, &buf, &len)) {
			otlp_export__encode_error(&om->x, -ENOMEM);
			break;
		}
		enqueue(om, buf, len, k);
	}
	free_emits(e, n);
	om->last_wall_ns = now;
}

void otlp_metrics__poll(struct otlp_metrics *om)
{
	struct body *b;

	if (!otlp_export__due(&om->x, om->q.len, 1, 0))
		return;
	b = otlp_queue__at(&om->q, 0);
	otlp_export__send(&om->x, b->buf, b->len, b->n_points);	/* the sender frees it */
	otlp_queue__pop(&om->q, 1);
	om->st.queue_len = om->q.len;
}

static void poll_cb(void *ctx)
{
	otlp_metrics__poll(ctx);
}

static bool pending_cb(void *ctx)
{
	return ((struct otlp_metrics *)ctx)->q.len;
}

void otlp_metrics__flush(struct otlp_metrics *om, const struct metrics_snapshot *s,
			 unsigned timeout_ms)
{
	if (!om || !sender__healthy(om->x.snd))
		return;	/* the collector is failing: waiting would only delay exit */
	if (s)
		otlp_metrics__collect(om, s);
	otlp_export__flush(&om->x, timeout_ms, poll_cb, pending_cb, om);
}

const struct otlp_metrics_stats *otlp_metrics__stats(const struct otlp_metrics *om)
{
	return &om->st;
}

static void header(struct jbuf *o, const char *name, const char *type, const char *help)
{
	jb_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void otlp_metrics__render(const struct otlp_metrics *om, struct jbuf *o)
{
	const struct otlp_metrics_stats *st = &om->st;
	const struct sender_stats *ss = sender__stats(om->x.snd);

	header(o, "obs_metric_collections_total", "counter",
	       "Snapshots of the http series encoded for OTLP metrics export");
	jb_printf(o, "obs_metric_collections_total %llu\n", (unsigned long long)st->collections);
	header(o, "obs_metric_points_exported_total", "counter",
	       "Metric data points acknowledged by the OTLP endpoint");
	jb_printf(o, "obs_metric_points_exported_total %llu\n",
		  (unsigned long long)st->points_exported);
	header(o, "obs_metric_points_rejected_total", "counter",
	       "Acknowledged data points the OTLP endpoint reported as rejected (partial success)");
	jb_printf(o, "obs_metric_points_rejected_total %llu\n",
		  (unsigned long long)st->points_rejected);
	header(o, "obs_metric_points_dropped_total", "counter",
	       "Metric data points not exported, by reason");
	jb_printf(o, "obs_metric_points_dropped_total{reason=\"queue_full\"} %llu\n"
		  "obs_metric_points_dropped_total{reason=\"export_failed\"} %llu\n",
		  (unsigned long long)st->points_dropped_queue,
		  (unsigned long long)st->points_dropped_failed);
	header(o, "obs_metric_exports_dropped_total", "counter",
	       "OTLP metrics export requests not delivered, by reason");
	jb_printf(o, "obs_metric_exports_dropped_total{reason=\"queue_full\"} %llu\n"
		  "obs_metric_exports_dropped_total{reason=\"export_failed\"} %llu\n",
		  (unsigned long long)st->exports_dropped_queue,
		  (unsigned long long)st->exports_dropped_failed);
	header(o, "obs_metric_exports_queued", "gauge",
	       "OTLP metrics export requests waiting (the one being sent not included)");
	jb_printf(o, "obs_metric_exports_queued %llu\n", (unsigned long long)st->queue_len);
	header(o, "obs_metric_export_errors_total", "counter",
	       "OTLP metrics export errors by kind (retries included)");
	for (int e = 0; e < SEND_E_MAX; e++)
		jb_printf(o, "obs_metric_export_errors_total{kind=\"%s\"} %llu\n", send_err_name(e),
			  (unsigned long long)ss->errors[e]);
}

void otlp_metrics__free(struct otlp_metrics *om)
{
	if (!om)
		return;
	otlp_export__fini(&om->x);
	for (size_t i = 0; i < om->q.len; i++)
		free(((struct body *)otlp_queue__at(&om->q, i))->buf);
	otlp_queue__fini(&om->q);
	prev_free_all(om);
	free(om);
}

/* ---- the sink (sink.h) ---- */

static bool sink_due(void *ctx)
{
	return otlp_metrics__due(ctx);
}

/* A snapshot of the aggregates when one is due. */
static void sink_collect(void *ctx, const struct pipeline_stats *st)
{
	struct otlp_metrics *om = ctx;
	struct metrics_snapshot *s = metrics__snapshot(om->m, st);

	if (s)
		otlp_metrics__collect(om, s);
	metrics_snapshot__free(s);
}

static void sink_scrape(void *ctx, const struct pipeline_stats *st, struct jbuf *out)
{
	otlp_metrics__render(ctx, out);
}

/* At exit: one last collection, so that what happened since the last one is sent. */
static void sink_flush(void *ctx, const struct pipeline_stats *st, unsigned timeout_ms)
{
	struct otlp_metrics *om = ctx;
	struct metrics_snapshot *s = metrics__snapshot(om->m, st);

	otlp_metrics__flush(om, s, timeout_ms);
	metrics_snapshot__free(s);
}

static void sink_free(void *ctx)
{
	otlp_metrics__free(ctx);
}

const struct sink_ops otlp_metrics_sink = {
	.name = "otlp_metrics",
	.poll = poll_cb,
	.due = sink_due,
	.collect = sink_collect,
	.scrape = sink_scrape,
	.flush = sink_flush,
	.free = sink_free,
};
