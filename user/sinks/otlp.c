// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "request/errors.h"
#include "request/sink.h"
#include "sinks/otlp.h"
#include "otlp.pb-c.h"
#include "sinks/otlp_encode.h"
#include "sinks/otlp_export.h"
#include "sinks/sender.h"

struct otlp {
	struct otlp_config c;
	struct otlp_queue q;		/* struct record; exc copies owned */
	struct otlp_export x;
	struct otlp_stats st;
};

/* ---- configuration ---- */

int otlp_config_endpoint(struct otlp_config *c, const char *url, bool full)
{
	return otlp_url(c->traces_url, url, full, "/v1/traces");
}

int otlp_config_header(struct otlp_config *c, const char *kv)
{
	return otlp_header_add(c->headers, &c->n_headers, kv);
}

void otlp_config_init(struct otlp_config *c)
{
	memset(c, 0, sizeof(*c));
	c->delay_ms = 5000;
	c->max_batch = 512;
	c->max_queue = 2048;
	c->timeout_ms = 10000;
}

int otlp_config_env(struct otlp_config *c)
{
	return otlp_env_headers(c->headers, &c->n_headers, "OTEL_EXPORTER_OTLP_TRACES_HEADERS") ?:
	       otlp_env_uint("OTEL_BSP_SCHEDULE_DELAY", &c->delay_ms, 1) ?:
	       otlp_env_uint("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &c->max_batch, 1) ?:
	       otlp_env_uint("OTEL_BSP_MAX_QUEUE_SIZE", &c->max_queue, 1) ?:
	       otlp_env_uint("OTEL_EXPORTER_OTLP_TIMEOUT", &c->timeout_ms, 1) ?:
	       otlp_env_uint("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", &c->timeout_ms, 1);
}

/* ---- exporter ---- */

/* Read partial_success.rejected_spans from a protobuf answer, if any. */
static void count_partial(struct otlp *o, const char *resp, size_t len)
{
	Obs__Otlp__ExportTraceServiceResponse *r;

	if (!len)
		return;
	r = obs__otlp__export_trace_service_response__unpack(NULL, len, (const uint8_t *)resp);
	if (!r)
		return;
	if (r->partial_success && r->partial_success->rejected_spans > 0)
		o->st.spans_rejected_partial += r->partial_success->rejected_spans;
	obs__otlp__export_trace_service_response__free_unpacked(r, NULL);
}

static void on_done(void *ctx, bool delivered, size_t n, const char *resp, size_t len)
{
	struct otlp *o = ctx;

	if (delivered) {
		o->st.spans_exported += n;
		count_partial(o, resp, len);
	} else {
		o->st.spans_dropped_export += n;
	}
}

struct otlp *otlp__new(const struct otlp_config *c)
{
	struct otlp *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->c = *c;
	if (o->c.max_batch > o->c.max_queue)
		o->c.max_batch = o->c.max_queue;
	if (otlp_queue__init(&o->q, sizeof(struct record), o->c.max_queue) ||
	    otlp_export__init(&o->x, "otlp", o->c.traces_url, o->c.headers, o->c.n_headers,
			      o->c.timeout_ms, on_done, o)) {
		otlp_queue__fini(&o->q);
		free(o);
		errno = ENOMEM;
		return NULL;
	}
	return o;
}

void otlp__span(void *ctx, const struct record *r)
{
	struct otlp *o = ctx;
	struct record *slot;

	if (!r->sampled)
		return;
	slot = otlp_queue__push(&o->q);
	if (!slot) {
		o->st.spans_dropped_queue++;
		return;
	}
	*slot = *r;
	if (r->exc) {	/* the sink's pointer dies with the call: keep a copy */
		struct exc_info *x = malloc(sizeof(*x));

		if (x)
			memcpy(x, r->exc, sizeof(*x));
		slot->exc = x;
	}
	o->st.spans_queued++;
	o->st.queue_len = o->q.len;
}

/* Take up to max_batch spans off the queue, encode and hand them over. */
static void send_batch(struct otlp *o)
{
	size_t n = o->q.len < o->c.max_batch ? o->q.len : o->c.max_batch;
	const struct record **recs = calloc(n, sizeof(*recs));
	uint8_t *body = NULL;
	size_t len = 0;
	int err = -ENOMEM;

	if (recs) {
		for (size_t i = 0; i < n; i++)
			recs[i] = otlp_queue__at(&o->q, i);
		err = otlp_encode(recs, n, o->c.service_name, &body, &len);
		free(recs);
	}
	if (err) {
		otlp_export__encode_error(&o->x, err);
		return;	/* the spans stay queued; the queue bound still holds */
	}
	for (size_t i = 0; i < n; i++) {
		struct record *r = otlp_queue__at(&o->q, i);

		free((void *)r->exc);
		r->exc = NULL;
	}
	otlp_queue__pop(&o->q, n);
	o->st.queue_len = o->q.len;
	o->st.batches++;
	otlp_export__send(&o->x, body, len, n);
}

void otlp__poll(struct otlp *o)
{
	if (otlp_export__due(&o->x, o->q.len, o->c.max_batch, o->c.delay_ms))
		send_batch(o);
}

const struct otlp_stats *otlp__stats(const struct otlp *o)
{
	return &o->st;
}

const struct sender_stats *otlp__sender_stats(const struct otlp *o)
{
	return sender__stats(o->x.snd);
}

static void poll_cb(void *ctx)
{
	otlp__poll(ctx);
}

static bool pending_cb(void *ctx)
{
	return ((struct otlp *)ctx)->q.len;
}

void otlp__flush(struct otlp *o, unsigned timeout_ms)
{
	if (!o)
		return;
	o->c.delay_ms = 0;	/* send whatever is queued now */
	otlp_export__flush(&o->x, timeout_ms, poll_cb, pending_cb, o);
}

void otlp__free(struct otlp *o)
{
	if (!o)
		return;
	otlp_export__fini(&o->x);
	for (size_t i = 0; i < o->q.len; i++)
		free((void *)((struct record *)otlp_queue__at(&o->q, i))->exc);
	otlp_queue__fini(&o->q);
	free(o);
}

/* ---- the sink (sink.h) ---- */

static void sink_counters(void *ctx, struct counter_visit *v)
{
	const struct otlp_stats *st = otlp__stats(ctx);

	counter_family(v, "obs_spans_exported_total", "counter",
		       "Spans acknowledged by the OTLP endpoint");
	counter_u64(v, st->spans_exported, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_spans_dropped_total", "counter", "Spans not exported, by reason");
	counter_u64(v, st->spans_dropped_queue, "reason", "queue_full", NULL, NULL);
	counter_u64(v, st->spans_dropped_export, "reason", "export_failed", NULL, NULL);
	counter_family(v, "obs_spans_queued", "gauge", "Spans waiting for export");
	counter_u64(v, st->queue_len, NULL, NULL, NULL, NULL);
}

static const struct sender_stats *sink_sender(void *ctx)
{
	return otlp__sender_stats(ctx);
}

static void sink_flush(void *ctx, const struct pipeline_stats *st, unsigned timeout_ms)
{
	otlp__flush(ctx, timeout_ms);
}

static void sink_free(void *ctx)
{
	otlp__free(ctx);
}

const struct sink_ops otlp_sink = {
	.name = "otlp",
	.record = otlp__span,
	.poll = poll_cb,
	.counters = sink_counters,
	.sender = sink_sender,
	.flush = sink_flush,
	.free = sink_free,
};
