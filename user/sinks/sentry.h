/* SPDX-License-Identifier: MIT */
/*
 * sentry — error events to Sentry, no SDK: each event becomes an envelope
 * POSTed to the DSN's project envelope endpoint
 * ({scheme}://{host}{path}/api/{project}/envelope/) with X-Sentry-Auth
 * (sentry_version=7, sentry_key from the DSN). The event carries event_id,
 * timestamp, level error, environment (SENTRY_ENVIRONMENT), release
 * (SENTRY_RELEASE), the exception with its stacktrace frames (from the joined
 * Python traceback) or a message, the request context (method, URL without
 * query, sanitized headers, client address), tags service/route/status, and
 * contexts.trace (trace_id, span_id) so Sentry links the event to the trace.
 * Events are sampled (SENTRY_SAMPLE_RATE, default 1.0), queued (bounded,
 * drops counted) and sent one at a time by a sender (sender.h).
 */
#ifndef OBS_SENTRY_H
#define OBS_SENTRY_H

#include <stdint.h>
#include "request/errors.h"
#include "request/sink.h"
#include "conn/record.h"

#define SENTRY_QUEUE_MAX	256

struct sentry_config {
	char dsn[512];		/* "" = disabled */
	char environment[64];
	char release[128];
	double sample_rate;	/* 0..1 */
};

/* Defaults; the caller then applies the options (obsd's option table,
 * options.h, reads their variables: SENTRY_DSN, SENTRY_ENVIRONMENT,
 * SENTRY_RELEASE, SENTRY_SAMPLE_RATE). */
void sentry_config_init(struct sentry_config *c);

struct sentry_stats {
	uint64_t queued, sent, dropped_queue, dropped_send, sampled_out;
};

struct sentry;

/* NULL with errno set (EINVAL: the DSN does not parse; reason printed). */
struct sentry *sentry__new(const struct sentry_config *c);

/* Error sink (pipeline error_sink_fn). */
void sentry__event(void *ctx, const struct record *r, const struct exc_info *exc);

void sentry__poll(struct sentry *s);
void sentry__flush(struct sentry *s, unsigned timeout_ms);
const struct sentry_stats *sentry__stats(const struct sentry *s);
struct sender_stats;
const struct sender_stats *sentry__sender_stats(const struct sentry *s);
void sentry__free(struct sentry *s);

/* The sink (sink.h): error = sentry__event; poll, counters
 * (obs_sentry_events_total), sender, flush, free. */
extern const struct sink_ops sentry_sink;

/* Exposed for tests: parse a DSN into envelope URL and public key. 0 or -EINVAL. */
int sentry_parse_dsn(const char *dsn, char *url, size_t url_len, char *key, size_t key_len);

#endif
