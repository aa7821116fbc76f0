/* SPDX-License-Identifier: MIT */
/*
 * metrics — Prometheus series from request records (a sink, sink.h) and their
 * text exposition; the gauges and event-loop series come from the pipeline's
 * stats snapshot (stats.h) handed to each scrape.
 *
 * Series (Pounce's names): http_requests_total{service,method,route,
 * status_code}, http_request_duration_seconds{service,method,route}
 * histogram, http_connections_active{service}, http_requests_in_flight
 * {service}, http_bytes_sent_total{service}, http_bytes_received_total
 * {service}. With worker_label, every http_* series also carries
 * worker="<pid>"; with container_label, container_id="<64 hex>" and
 * pod_uid="<uid>" ("" outside containers and pods). Methods outside the RFC 9110 set are "_OTHER"; requests
 * with no response count with status_code="0". Counters only grow.
 *
 * The same aggregates render as JSON members for /api/stats (docs/api.md),
 * where each route also has its errors, bytes and a log-linear latency
 * histogram (lhist.h) finer than the Prometheus buckets.
 */
#ifndef OBS_METRICS_H
#define OBS_METRICS_H

#include <stdbool.h>
#include "base/counters.h"
#include "base/json.h"
#include "conn/record.h"
#include "request/sink.h"
#include "request/stats.h"

#define METRICS_MAX_BUCKETS	32

struct metrics_opts {
	double buckets[METRICS_MAX_BUCKETS];	/* ascending upper bounds, seconds */
	int n_buckets;				/* 0: the default 1 ms .. 10 s */
	bool worker_label;
	bool container_label;	/* container_id="…",pod_uid="…" on http_* series */
	bool by_status;		/* also durations by status, scheme and failure (the
				   OTLP metrics export's, see metrics__snapshot) */
};

struct metrics;

/* NULL with errno set. */
struct metrics *metrics__new(const struct metrics_opts *o);

/* Parse "0.005,0.01,0.1" into o->buckets. 0 or -EINVAL (not ascending, empty, too many). */
int metrics_parse_buckets(struct metrics_opts *o, const char *s);

/* Sink: account one completed record. */
void metrics__record(void *m, const struct record *r);
/* The http.request.method label: a known method's name, or "_OTHER". */
const char *metrics_method_label(const char *m);

/* Append the http_*, grpc_* and asyncio_loop_* series (text format 0.0.4) to
 * out. st may be NULL (not attached: no gauges, no loops). */
void metrics__render(struct metrics *m, const struct pipeline_stats *st, struct jbuf *out);

/*
 * Append the members "duration_buckets_seconds", "latency_scheme",
 * "requests", "routes", "services", "bytes", "loop_buckets_us" and "loops"
 * to the JSON object open in out (docs/api.md). st may be NULL.
 */
void metrics__render_json(struct metrics *m, const struct pipeline_stats *st, struct jbuf *out);

void metrics__free(struct metrics *m);

/*
 * A copy of the http series for an exporter (otlp_metrics.h), so that it
 * never reads the tables. Values are
 * totals since obsd started (counters only grow), but the gauge.
 */
enum metrics_kind {
	METRICS_DURATION,	/* histogram: service, method, route, status, scheme,
				   failure (only with by_status) */
	METRICS_BYTES_IN,	/* counter: request bytes read, per service */
	METRICS_BYTES_OUT,	/* counter: response bytes written, per service */
	METRICS_IN_FLIGHT,	/* gauge: requests being processed, per service */
	METRICS_KINDS
};

struct metrics_point {
	enum metrics_kind kind;
	char *key;		/* identity of the series within its kind (owned) */
	const char *service;
	const char *method;	/* METRICS_DURATION: as the method label ("_OTHER") */
	const char *route;	/* METRICS_DURATION */
	int status;		/* METRICS_DURATION: 0 when no response head was seen */
	const char *scheme;	/* METRICS_DURATION: "http" or "https" */
	const char *error;	/* METRICS_DURATION: failure reason, "" when it completed */
	uint32_t worker;	/* its pid with worker_label, else 0 */
	const char *container_id, *pod_uid;	/* with container_label, else "" */
	uint64_t value;		/* counters and the gauge; histograms: the count */
	double sum;		/* histograms: seconds */
	uint64_t *buckets;	/* histograms: n_bounds + 1 counts, not cumulative,
				   the last one above every bound (owned) */
	char *labels;		/* storage of the strings above (owned) */
};

/* An observed process, for resource attributes. */
struct metrics_proc {
	uint32_t pid;
	char service[SERVICE_NAME_MAX];
	char comm[16];
	struct cgroup_ident container;
};

struct metrics_snapshot {
	double bounds[METRICS_MAX_BUCKETS];	/* histogram bucket upper bounds, seconds */
	int n_bounds;
	struct metrics_point *points;
	size_t n_points, cap_points;
	struct metrics_proc *procs;
	size_t n_procs, cap_procs;
};

/*
 * Copy every http series (durations only with by_status) and, with st, the
 * in-flight gauges and the observed processes. NULL with errno set. Free
 * with metrics_snapshot__free (NULL-safe).
 */
struct metrics_snapshot *metrics__snapshot(struct metrics *m, const struct pipeline_stats *st);
void metrics_snapshot__free(struct metrics_snapshot *s);

/* The sink (sink.h): record = metrics__record, scrape = metrics__render, free. */
extern const struct sink_ops metrics_sink;

#endif
