/* SPDX-License-Identifier: MIT */
/*
 * otlp — export sampled request records as OTLP/HTTP protobuf spans.
 *
 * POST {traces_url} with Content-Type: application/x-protobuf, bodies encoded
 * with protobuf-c from proto/otlp.proto. Batching like the OpenTelemetry
 * SDK's BatchSpanProcessor: a batch leaves every delay_ms or as soon as
 * max_batch spans wait; the queue holds at most max_queue spans and drops
 * (counted) when full. One request in flight, driven by libcurl's multi
 * interface from obsd's loop (otlp__poll), so consumption never blocks on the
 * collector; retries, backoff and error accounting are the sender's
 * (sender.h).
 */
#ifndef OBS_OTLP_H
#define OBS_OTLP_H

#include <stdbool.h>
#include <stdint.h>
#include "conn/record.h"
#include "request/sink.h"
#include "sinks/otlp_export.h"

struct otlp_config {
	char traces_url[OTLP_URL_MAX];	/* "" = no export */
	char headers[OTLP_MAX_HEADERS][OTLP_HEADER_MAX];	/* "Name: value" */
	int n_headers;
	char service_name[64];		/* OTEL_SERVICE_NAME; "" = derived per process */
	unsigned delay_ms;		/* OTEL_BSP_SCHEDULE_DELAY, 5000 */
	unsigned max_batch;		/* OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512 */
	unsigned max_queue;		/* OTEL_BSP_MAX_QUEUE_SIZE, 2048 */
	unsigned timeout_ms;		/* OTEL_EXPORTER_OTLP_TIMEOUT, 10000 */
};

/* Defaults; the caller then applies the options (obsd's option table,
 * options.h, reads their variables: OTEL_EXPORTER_OTLP_ENDPOINT, ...). */
void otlp_config_init(struct otlp_config *c);

/* The variables no option sets: OTEL_EXPORTER_OTLP_TRACES_HEADERS (after
 * the shared headers), OTEL_BSP_*, OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT.
 * 0, or -EINVAL after printing which variable is wrong. */
int otlp_config_env(struct otlp_config *c);

/* Set the endpoint: base ("http://host:4318", /v1/traces appended) or full. */
int otlp_config_endpoint(struct otlp_config *c, const char *url, bool full);

/* Add "key=value" (OTEL_EXPORTER_OTLP_HEADERS syntax, value %-decoded). */
int otlp_config_header(struct otlp_config *c, const char *kv);

struct otlp_stats {
	uint64_t spans_queued;		/* accepted into the queue */
	uint64_t spans_exported;	/* acknowledged by the collector (2xx) */
	uint64_t spans_dropped_queue;	/* queue full */
	uint64_t spans_dropped_export;	/* batch rejected or retries exhausted */
	uint64_t spans_rejected_partial;/* partial_success.rejected_spans */
	uint64_t batches;		/* batches handed to the sender */
	uint64_t queue_len;
};

struct otlp;

/* NULL with errno set. Needs c->traces_url. */
struct otlp *otlp__new(const struct otlp_config *c);

/* Sink: queue r if it is sampled. */
void otlp__span(void *ctx, const struct record *r);

/* Make progress without blocking: start, advance, finish, retry requests. */
void otlp__poll(struct otlp *o);

const struct otlp_stats *otlp__stats(const struct otlp *o);
struct sender_stats;
/* Transport counters, errors by kind (sender.h). */
const struct sender_stats *otlp__sender_stats(const struct otlp *o);

/* Best effort at shutdown: export what is queued within timeout_ms. */
void otlp__flush(struct otlp *o, unsigned timeout_ms);

void otlp__free(struct otlp *o);

/* The sink (sink.h): record = otlp__span; poll, counters (obs_spans_*), sender,
 * flush, free. */
extern const struct sink_ops otlp_sink;

#endif
