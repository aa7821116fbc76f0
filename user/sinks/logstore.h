/* SPDX-License-Identifier: MIT */
/*
 * logstore — the newest N log records for /api/logs, their JSON, and the
 * obs_log_* series of /metrics.
 */
#ifndef OBS_LOGSTORE_H
#define OBS_LOGSTORE_H

#include <stddef.h>
#include <stdint.h>
#include "base/json.h"
#include "request/sink.h"
#include "request/logs.h"

#define LOG_STORE_DEFAULT	4096

struct log_store {
	struct log_rec **ring;	/* cap owned copies */
	size_t cap;
	uint64_t total;		/* records ever pushed; slot = total % cap */
	uint64_t dropped;	/* copies that could not be made */
};

/* NULL with errno set. */
struct log_store *log_store__new(size_t cap);
/* Sink (log_sink_fn): keep a copy of r, dropping the oldest. */
void log_store__push(void *ctx, const struct log_rec *r);
/* The i-th newest (0 = newest), NULL beyond what is held. */
const struct log_rec *log_store__get(const struct log_store *s, size_t i);
size_t log_store__count(const struct log_store *s);
void log_store__free(struct log_store *s);

/* Append r as one JSON object (fields in docs/logs.md). */
void log_rec_json(const struct log_rec *r, struct jbuf *jb);

/* The sink (sink.h): log = log_store__push, free. */
extern const struct sink_ops log_store_sink;

#endif
