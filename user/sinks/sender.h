/* SPDX-License-Identifier: MIT */
/*
 * sender — one HTTP POST at a time to a fixed URL, without ever blocking the
 * caller: libcurl's multi interface, advanced by sender__poll() from obsd's
 * loop. Transport errors and 429/502/503/504 are retried with exponential
 * backoff (1 s doubling, SENDER_MAX_ATTEMPTS tries), or after the delay a
 * 429 or 503 answer's Retry-After asks for (at most SENDER_RETRY_AFTER_MAX_MS);
 * any other non-2xx drops the body. Each kind of failure is logged once (until the next success) and
 * always counted. Used by the OTLP and Sentry exporters.
 */
#ifndef OBS_SENDER_H
#define OBS_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SENDER_MAX_ATTEMPTS	5
#define SENDER_MAX_HEADERS	16
#define SENDER_RESPONSE_MAX	4096	/* bytes of an answer kept for the caller */
#define SENDER_RETRY_AFTER_MAX_MS	60000	/* a longer Retry-After is cut to this */

enum send_err {
	SEND_E_CONNECT,		/* could not connect / timeout / transport error */
	SEND_E_RETRYABLE,	/* 429, 502, 503, 504 */
	SEND_E_REJECTED,	/* other non-2xx: body dropped */
	SEND_E_GAVE_UP,		/* retries exhausted: body dropped */
	SEND_E_ENCODE,		/* the caller could not build a body */
	SEND_E_MAX
};

struct sender_stats {
	uint64_t requests;		/* POSTs started, retries included */
	uint64_t delivered, dropped;	/* bodies */
	uint64_t errors[SEND_E_MAX];
};

/* Outcome of one body: delivered (2xx) or dropped; resp/len = the answer. */
typedef void (*sender_done_fn)(void *ctx, bool delivered, const char *resp, size_t len);

struct sender;

/* headers: "Name: value" strings (copied). NULL with errno set. */
struct sender *sender__new(const char *name, const char *url, const char *const *headers,
			   int n_headers, unsigned timeout_ms, sender_done_fn done, void *ctx);

/* Can a new body be handed over (nothing in flight or waiting to retry)? */
bool sender__idle(const struct sender *s);

/* Start sending body (ownership taken, freed when done). -EBUSY if not idle. */
int sender__send(struct sender *s, uint8_t *body, size_t len);

/* Advance transfers, finish them, start due retries. */
void sender__poll(struct sender *s);

/* Wait up to timeout_ms for the body in flight, if any (shutdown only). */
void sender__drain(struct sender *s, unsigned timeout_ms);

/* No failure since the last success (nothing waiting for a retry). */
bool sender__healthy(const struct sender *s);

/* Record a caller-side error (e.g. SEND_E_ENCODE) with the same log-once rule. */
void sender__error(struct sender *s, enum send_err e, const char *detail);

const struct sender_stats *sender__stats(const struct sender *s);
const char *send_err_name(enum send_err e);
void sender__free(struct sender *s);

struct sinks;
struct counter_visit;
/* obs_export_errors_total{exporter,kind} of the sinks with a sender (sink.h);
 * nothing when none has one. */
void sender_export_errors(const struct sinks *ss, struct counter_visit *v);

#endif
