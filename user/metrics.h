/* SPDX-License-Identifier: MIT */
/*
 * metrics — Prometheus series from request records (a pipeline sink) and the
 * text exposition of them plus obsd's own obs_* series.
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
#include "counters.h"
#include "json.h"
#include "pipeline.h"
#include "record.h"

#define METRICS_MAX_BUCKETS	32

struct metrics_opts {
	double buckets[METRICS_MAX_BUCKETS];	/* ascending upper bounds, seconds */
	int n_buckets;				/* 0: the default 1 ms .. 10 s */
	bool worker_label;
	bool container_label;	/* container_id="…",pod_uid="…" on http_* series */
};

struct metrics;

/* NULL with errno set. */
struct metrics *metrics__new(const struct metrics_opts *o);

/* Parse "0.005,0.01,0.1" into o->buckets. 0 or -EINVAL (not ascending, empty, too many). */
int metrics_parse_buckets(struct metrics_opts *o, const char *s);

/* Sink: account one completed record. */
void metrics__record(void *m, const struct record *r);

/* Append the whole exposition (text format 0.0.4) to out. p may be NULL. */
void metrics__render(struct metrics *m, struct pipeline *p, struct jbuf *out);

/*
 * Append the members "duration_buckets_seconds", "latency_scheme",
 * "requests", "routes", "services", "bytes", "loop_buckets_us" and "loops"
 * to the JSON object open in out (docs/api.md). p may be NULL.
 */
void metrics__render_json(struct metrics *m, struct pipeline *p, struct jbuf *out);

/* Visit the pipeline's obs_* samples (counters.h), family by family. */
void metrics__obs_counters(struct pipeline *p, counter_fn fn, void *ctx);

void metrics__free(struct metrics *m);

#endif
