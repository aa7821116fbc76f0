/* SPDX-License-Identifier: MIT */
/*
 * otlp_export — what the three OTLP/HTTP exporters (traces otlp.c, metrics
 * otlp_metrics.c, logs otlp_logs.c) share, so that each one only encodes:
 *
 * - configuration: endpoint URLs (a base URL with the signal's path appended,
 *   or the signal's URL whole), OTEL_EXPORTER_OTLP_HEADERS syntax, numeric
 *   OTEL_* variables;
 * - a bounded queue of fixed-size items (struct otlp_queue);
 * - the export: one protobuf body in flight through the sender (sender.h:
 *   retries, backoff, error accounting), a batch sent when enough items wait
 *   or after a delay, the outcome counted per item, and a bounded flush at
 *   shutdown (struct otlp_export).
 */
#ifndef OBS_OTLP_EXPORT_H
#define OBS_OTLP_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTLP_MAX_HEADERS	15
#define OTLP_HEADER_MAX		256	/* bytes of one "Name: value" */
#define OTLP_URL_MAX		512

/* ---- configuration ---- */

/* url whole (full) or as a base URL with path appended ("/v1/traces"); out
 * holds OTLP_URL_MAX bytes. 0, or -EINVAL (not http(s), too long). */
int otlp_url(char *out, const char *url, bool full, const char *path);

/* Add "key=value" (OTEL_EXPORTER_OTLP_HEADERS syntax, value %-decoded) to
 * headers[*n] as "key: value". 0, or -EINVAL (syntax, CR/LF, too many). */
int otlp_header_add(char (*headers)[OTLP_HEADER_MAX], int *n, const char *kv);

/* Every "k=v" of the comma-separated variable name; 0, or -EINVAL after
 * printing which variable is wrong. Unset or empty: 0. */
int otlp_env_headers(char (*headers)[OTLP_HEADER_MAX], int *n, const char *name);

/* An integer variable >= min into *out (unchanged when unset or empty); 0, or
 * -EINVAL after printing which variable is wrong. */
int otlp_env_uint(const char *name, unsigned *out, unsigned min);

/* ---- the queue ---- */

/* A ring of cap items of size bytes, zero-filled at init. */
struct otlp_queue {
	uint8_t *items;
	size_t size, cap;
	size_t head, len;
};

/* 0 or -ENOMEM. */
int otlp_queue__init(struct otlp_queue *q, size_t size, size_t cap);

/* The slot for a new item at the tail, or NULL when full (nothing changes). */
void *otlp_queue__push(struct otlp_queue *q);

/* The i-th item from the head (i < len). */
void *otlp_queue__at(const struct otlp_queue *q, size_t i);

/* Forget the n items at the head (the caller released what they hold). */
void otlp_queue__pop(struct otlp_queue *q, size_t n);

void otlp_queue__fini(struct otlp_queue *q);

/* ---- the export ---- */

/* What became of the body in flight: its n items delivered (2xx; resp/len the
 * answer, for partial success) or dropped. */
typedef void (*otlp_done_fn)(void *ctx, bool delivered, size_t n, const char *resp, size_t len);

struct otlp_export {
	struct sender *snd;
	size_t sending;			/* items in the body the sender holds */
	uint64_t last_export_ns;	/* CLOCK_MONOTONIC of the last outcome */
	otlp_done_fn done;
	void *ctx;
};

/* POSTs of application/x-protobuf with headers to url. 0 or -ENOMEM. */
int otlp_export__init(struct otlp_export *x, const char *name, const char *url,
		      const char (*headers)[OTLP_HEADER_MAX], int n_headers, unsigned timeout_ms,
		      otlp_done_fn done, void *ctx);

/* Advance the sender; then is a batch due: nothing in flight, items queued,
 * and at least batch of them or delay_ms since the last outcome? */
bool otlp_export__due(struct otlp_export *x, size_t queued, size_t batch, unsigned delay_ms);

/* Hand over an encoded body of n items (ownership taken). */
void otlp_export__send(struct otlp_export *x, uint8_t *body, size_t len, size_t n);

/* A body could not be encoded (counted as the sender's SEND_E_ENCODE). */
void otlp_export__encode_error(struct otlp_export *x, int err);

/*
 * At shutdown: call poll(ctx) and wait for the sender until pending(ctx) is
 * false and nothing is in flight, within timeout_ms; nothing when the
 * collector is failing (waiting would only delay exit).
 */
void otlp_export__flush(struct otlp_export *x, unsigned timeout_ms, void (*poll)(void *ctx),
			bool (*pending)(void *ctx), void *ctx);

void otlp_export__fini(struct otlp_export *x);

#endif
