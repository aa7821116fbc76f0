/* SPDX-License-Identifier: MIT */
/*
 * sink — the one interface of everything the pipeline feeds: the request
 * store, Prometheus metrics, the OTLP exporters, Sentry, obsd's error and
 * event rings, obsctl's printers. A sink is one file that fills a
 * `struct sink_ops` (any callback may be NULL) and one line of wiring that
 * registers it:
 *
 *   sinks__add(&d->sinks, &my_sink_ops, my_sink__new(...));
 *
 * The pipeline takes the registered set at open (pipeline_opts.sinks) and
 * calls the event callbacks in registration order, from its one thread. A
 * sink never reaches back into the pipeline or the kernel: what it needs of
 * their state comes as a `struct pipeline_stats` snapshot (stats.h), handed
 * to collect(), scrape() and flush().
 */
#ifndef OBS_SINK_H
#define OBS_SINK_H

#include <stdbool.h>
#include "base/counters.h"
#include "base/json.h"

#define SINKS_MAX	12

struct record;
struct exc_info;
struct life_event;
struct loop_block;
struct log_rec;
struct pipeline_stats;
struct sender_stats;

struct sink_ops {
	const char *name;	/* "otlp", "sentry", … (obs_export_errors_total's exporter) */
	/* Every finished request (error requests up to ERR_HOLD_NS late, with
	 * their traceback in r->exc). r is only valid during the call. */
	void (*record)(void *ctx, const struct record *r);
	/* Every error event: r may be NULL (a traceback no request claimed), exc too. */
	void (*error)(void *ctx, const struct record *r, const struct exc_info *exc);
	/* Every lifecycle event, as it happens (events.h). */
	void (*life)(void *ctx, const struct life_event *e);
	/* Every blocked event-loop iteration, with the requests it held up (loops.h). */
	void (*block)(void *ctx, const struct loop_block *b);
	/* Every log record of the observed processes' stdout/stderr (logs.h). */
	void (*log)(void *ctx, const struct log_rec *r);
	/* Progress without blocking (sending), from every pass of the event loop. */
	void (*poll)(void *ctx);
	/* Periodic work on the pipeline's state: when due() says so, collect()
	 * gets a fresh snapshot (read only during the call). */
	bool (*due)(void *ctx);
	void (*collect)(void *ctx, const struct pipeline_stats *st);
	/* GET /metrics: append Prometheus text of the sink's own series. st may be NULL
	 * (not attached yet). */
	void (*scrape)(void *ctx, const struct pipeline_stats *st, struct jbuf *out);
	/* obs_* samples of the sink's health (counters.h): /metrics and /api/stats. */
	void (*counters)(void *ctx, struct counter_visit *v);
	/* The transport's counters of an exporter (sender.h) for
	 * obs_export_errors_total (sender_export_errors), or NULL. */
	const struct sender_stats *(*sender)(void *ctx);
	/* At shutdown: a last collect() with st (may be NULL) and delivery of what
	 * is queued, within timeout_ms. Nothing is fed after it. */
	void (*flush)(void *ctx, const struct pipeline_stats *st, unsigned timeout_ms);
	/* Free the sink (ctx). */
	void (*free)(void *ctx);
};

struct sink {
	const struct sink_ops *ops;
	void *ctx;
};

/* A set of sinks, in registration order. Zero-filled is empty. */
struct sinks {
	struct sink s[SINKS_MAX];
	int n;
};

/* Register a sink; 0, -EINVAL (ctx NULL: its constructor failed) or -E2BIG. */
int sinks__add(struct sinks *ss, const struct sink_ops *ops, void *ctx);

/* Every sink's poll(). */
void sinks__poll(const struct sinks *ss);

/* Is any sink's collect() due? */
bool sinks__due(const struct sinks *ss);

/* collect(st) of every sink that is due. */
void sinks__collect(const struct sinks *ss, const struct pipeline_stats *st);

/* Every sink's scrape(). */
void sinks__scrape(const struct sinks *ss, const struct pipeline_stats *st, struct jbuf *out);

/* Every sink's counters(). */
void sinks__counters(const struct sinks *ss, struct counter_visit *v);

/* Every sink's flush(), each within timeout_ms. */
void sinks__flush(const struct sinks *ss, const struct pipeline_stats *st, unsigned timeout_ms);

/* Free every sink, the last registered first; the set is empty after. */
void sinks__free(struct sinks *ss);

#endif
