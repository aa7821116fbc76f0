/* SPDX-License-Identifier: MIT */
/*
 * otlp_metrics — export the http series of /metrics as OTLP/HTTP protobuf
 * metrics under the OpenTelemetry semantic-convention names.
 *
 * The exporter never reads the pipeline: every interval_ms
 * (OTEL_METRIC_EXPORT_INTERVAL) it takes a snapshot of the aggregates
 * (metrics__snapshot, metrics.h) from the pipeline's stats its collect()
 * gets (sink.h), which is encoded at once into
 * ExportMetricsServiceRequest bodies of at most OTLPM_MAX_POINTS data points
 * and queued; at most OTLPM_MAX_QUEUE bodies wait (when full, the oldest is
 * dropped, counted). POST {url}, Content-Type: application/x-protobuf, one
 * body at a time, driven from obsd's loop by the sender (retries, backoff,
 * Retry-After and error accounting: sender.h).
 *
 * Metrics, one resource per service (and per worker with --worker-label),
 * scope "obs":
 *   http.server.request.duration    histogram, s, bucket bounds = --buckets;
 *       http.request.method, http.route, url.scheme, http.response.status_code
 *       (when a response head was seen), error.type (the failure reason, or
 *       the status code for 5xx)
 *   http.server.active_requests     up-down counter (sum, not monotonic),
 *       {request}: requests being processed now
 *   obs.http.server.request.size    counter (sum, monotonic), By: request
 *   obs.http.server.response.size   bytes on the wire, head and framing
 *       included (obs counts messages, not bodies: the semantic conventions'
 *       http.server.*.body.size histograms cannot be made from that)
 *
 * Temporality: cumulative (start = obsd's start), or with delta the change
 * since the previous collection (start = its time; series that did not change
 * are left out) for the counters and the histogram; the up-down counter is
 * cumulative either way, as the OpenTelemetry specification asks.
 */
#ifndef OBS_OTLP_METRICS_H
#define OBS_OTLP_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include "base/json.h"
#include "sinks/metrics.h"
#include "request/sink.h"
#include "sinks/otlp_export.h"

#define OTLPM_MAX_POINTS	1000	/* data points per request body */
#define OTLPM_MAX_QUEUE		16	/* request bodies waiting for the collector */
#define OTLPM_RES_ATTRS		12	/* resource attributes at most */

/* Where a setting came from, lowest precedence first (flags beat the
 * environment beat the file). */
enum otlpm_source { OTLPM_SRC_NONE, OTLPM_SRC_FILE, OTLPM_SRC_ENV, OTLPM_SRC_FLAG };

struct otlp_metrics_config {
	char url[OTLP_URL_MAX];		/* "" = no export */
	enum otlpm_source url_src;	/* where url came from */
	bool url_specific;		/* url is the metrics URL given whole, not a base */
	char headers[OTLP_MAX_HEADERS][OTLP_HEADER_MAX];	/* "Name: value" */
	int n_headers;
	char service_name[64];		/* OTEL_SERVICE_NAME; "" = each service's own */
	unsigned interval_ms;		/* OTEL_METRIC_EXPORT_INTERVAL, 60000 */
	unsigned timeout_ms;		/* OTEL_EXPORTER_OTLP_(METRICS_)TIMEOUT, 10000 */
	bool delta;			/* ..._METRICS_TEMPORALITY_PREFERENCE=delta|lowmemory */
	bool off;			/* OTEL_METRICS_EXPORTER=none */
};

/* Defaults; the caller then applies the options (obsd's option table,
 * options.h, reads their variables: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
 * OTEL_METRIC_EXPORT_INTERVAL, ...). */
void otlp_metrics_config_init(struct otlp_metrics_config *c);

/* The variables no option sets: OTEL_EXPORTER_OTLP_METRICS_HEADERS (after
 * the shared headers), OTEL_EXPORTER_OTLP_(METRICS_)TIMEOUT. 0, or -EINVAL
 * after printing which variable is wrong. */
int otlp_metrics_config_env(struct otlp_metrics_config *c);

/*
 * Set the endpoint from src: a base URL ("http://host:4318", /v1/metrics
 * appended) or, with full, the metrics URL itself. It replaces the URL set so
 * far when src has the higher precedence, or the same one unless it is a base
 * URL and the URL so far was given whole (the metrics-specific setting beats
 * the shared one, in whatever order they come). 0, or -EINVAL when url is not
 * an http(s) URL (nothing changes then).
 */
int otlp_metrics_config_endpoint(struct otlp_metrics_config *c, const char *url, bool full,
				 enum otlpm_source src);

/* Add "key=value" (OTEL_EXPORTER_OTLP_HEADERS syntax, value %-decoded). */
int otlp_metrics_config_header(struct otlp_metrics_config *c, const char *kv);

/* "cumulative", "delta" or "lowmemory" (any case). 0 or -EINVAL. */
int otlp_metrics_config_temporality(struct otlp_metrics_config *c, const char *v);

/* "otlp" or "none". 0 or -EINVAL. */
int otlp_metrics_config_exporter(struct otlp_metrics_config *c, const char *v);

struct otlp_metrics_stats {
	uint64_t collections;		/* snapshots encoded */
	uint64_t points_queued;		/* data points put in queued bodies */
	uint64_t points_exported;	/* acknowledged by the collector (2xx) */
	uint64_t points_rejected;	/* of those, partial_success.rejected_data_points */
	uint64_t exports_dropped_queue;	/* bodies dropped: the queue was full */
	uint64_t points_dropped_queue;
	uint64_t exports_dropped_failed;/* bodies rejected or retries exhausted */
	uint64_t points_dropped_failed;
	uint64_t queue_len;		/* bodies waiting (the one being sent not included) */
};

struct otlp_metrics;

/* NULL with errno set. Needs c->url. m: the aggregates to export (borrowed:
 * it must outlive the exporter). */
struct otlp_metrics *otlp_metrics__new(const struct otlp_metrics_config *c, struct metrics *m);

/* Is a collection due (interval_ms since the last one)? */
bool otlp_metrics__due(const struct otlp_metrics *om);

/* Encode snapshot s now and queue it; the next collection is due interval_ms
 * later. s is only read during the call. */
void otlp_metrics__collect(struct otlp_metrics *om, const struct metrics_snapshot *s);

/* Make progress without blocking: send queued bodies, advance, retry. */
void otlp_metrics__poll(struct otlp_metrics *om);

/* At shutdown: collect s (may be NULL) and send what is queued, within
 * timeout_ms; nothing when the collector is failing. NULL-safe. */
void otlp_metrics__flush(struct otlp_metrics *om, const struct metrics_snapshot *s,
			 unsigned timeout_ms);

const struct otlp_metrics_stats *otlp_metrics__stats(const struct otlp_metrics *om);

/* Append the exporter's own obs_metric_* series (Prometheus text) to o. */
void otlp_metrics__render(const struct otlp_metrics *om, struct jbuf *o);

void otlp_metrics__free(struct otlp_metrics *om);

/* The sink (sink.h): due/collect take metrics__snapshot of the pipeline's
 * stats every interval_ms; poll, scrape (obs_metric_* text), flush (a last
 * collection), free. */
extern const struct sink_ops otlp_metrics_sink;

#endif
