/* SPDX-License-Identifier: MIT */
/*
 * otlp_logs — export log records (logs.h) as OTLP/HTTP protobuf logs.
 *
 * POST {url} (OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT
 * + "/v1/logs") with ExportLogsServiceRequest bodies. The same discipline as
 * the span exporter (otlp.h), with the OpenTelemetry SDK's
 * BatchLogRecordProcessor settings: a batch leaves every OTEL_BLRP_SCHEDULE_DELAY
 * ms (1000) or as soon as OTEL_BLRP_MAX_EXPORT_BATCH_SIZE (512) records wait;
 * the queue holds OTEL_BLRP_MAX_QUEUE_SIZE (2048) records and drops (counted)
 * when full; one request in flight, retries and error accounting by the
 * sender (sender.h). OTEL_LOGS_EXPORTER=none switches export off.
 *
 * Each record: time (the write), observed time, severity number and text,
 * body (a string), attributes log.iostream ("stdout"/"stderr"), thread.id,
 * the JSON fields of a JSON line, obs.truncated when the line was cut, and
 * obs.trace_link = "no_request"/"ambiguous"/"buffered" when it is not
 * linked; trace_id, span_id and the sampled flag when it is. Records of the
 * same (service, pid) share a ResourceLogs with the span resource's
 * attributes.
 */
#ifndef OBS_OTLP_LOGS_H
#define OBS_OTLP_LOGS_H

#include <stdbool.h>
#include <stdint.h>
#include "request/logs.h"
#include "request/sink.h"
#include "sinks/otlp_export.h"

struct otlp_logs_config {
	char url[OTLP_URL_MAX];		/* "" = no export */
	bool off;			/* OTEL_LOGS_EXPORTER=none */
	char headers[OTLP_MAX_HEADERS][OTLP_HEADER_MAX];	/* "Name: value" */
	int n_headers;
	char service_name[64];		/* "" = derived per process */
	unsigned delay_ms;		/* OTEL_BLRP_SCHEDULE_DELAY, 1000 */
	unsigned max_batch;		/* OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, 512 */
	unsigned max_queue;		/* OTEL_BLRP_MAX_QUEUE_SIZE, 2048 */
	unsigned timeout_ms;		/* OTEL_EXPORTER_OTLP_(LOGS_)TIMEOUT, 10000 */
};

/* Defaults; the caller then applies the options (obsd's option table,
 * options.h, reads their variables: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
 * OTEL_LOGS_EXPORTER, ...). */
void otlp_logs_config_init(struct otlp_logs_config *c);

/* The variables no option sets: OTEL_EXPORTER_OTLP_LOGS_HEADERS (after the
 * shared headers), OTEL_BLRP_*, OTEL_EXPORTER_OTLP_(LOGS_)TIMEOUT. 0, or
 * -EINVAL after printing which variable is wrong. */
int otlp_logs_config_env(struct otlp_logs_config *c);

/* The endpoint: a base URL ("/v1/logs" appended) or, full, the logs URL. */
int otlp_logs_config_endpoint(struct otlp_logs_config *c, const char *url, bool full);

/* "otlp" or "none" (OTEL_LOGS_EXPORTER); 0 or -EINVAL. */
int otlp_logs_config_exporter(struct otlp_logs_config *c, const char *name);

/* Add "key=value" as a header (OTEL_EXPORTER_OTLP_HEADERS syntax). */
int otlp_logs_config_header(struct otlp_logs_config *c, const char *kv);

struct otlp_logs_stats {
	uint64_t queued;		/* accepted into the queue */
	uint64_t exported;		/* acknowledged by the collector (2xx) */
	uint64_t dropped_queue;		/* queue full */
	uint64_t dropped_export;	/* batch rejected or retries exhausted */
	uint64_t rejected_partial;	/* partial_success.rejected_log_records */
	uint64_t batches;
	uint64_t queue_len;
};

struct otlp_logs;

/* NULL with errno set. Needs c->url. */
struct otlp_logs *otlp_logs__new(const struct otlp_logs_config *c);

/* Sink (log_sink_fn): queue a copy of r. */
void otlp_logs__record(void *ctx, const struct log_rec *r);

/* Make progress without blocking. */
void otlp_logs__poll(struct otlp_logs *o);

/* Best effort at shutdown: export what is queued within timeout_ms. */
void otlp_logs__flush(struct otlp_logs *o, unsigned timeout_ms);

const struct otlp_logs_stats *otlp_logs__stats(const struct otlp_logs *o);
struct sender_stats;
const struct sender_stats *otlp_logs__sender_stats(const struct otlp_logs *o);

/*
 * Encode n records into one ExportLogsServiceRequest (malloc'd *out, *len).
 * service_name overrides every record's service when non-empty. 0 or -ENOMEM.
 */
int otlp_logs_encode(const struct log_rec *const *recs, size_t n, const char *service_name,
		     uint8_t **out, size_t *len);

/* NULL-safe. */
void otlp_logs__free(struct otlp_logs *o);

/* The sink (sink.h): log = otlp_logs__record; poll, counters
 * (obs_log_records_exported/dropped/queued), sender, flush, free. */
extern const struct sink_ops otlp_logs_sink;

#endif
