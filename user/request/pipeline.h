/* SPDX-License-Identifier: MIT */
/*
 * pipeline — kernel to records: loads the probes, consumes the ring buffer,
 * feeds the connection table, finishes each record (wall-clock time, request
 * id, trace context, route) and hands it to the sinks in the order added.
 * Single-threaded: call everything from one event loop.
 */
#ifndef OBS_PIPELINE_H
#define OBS_PIPELINE_H

#include <stdint.h>
#include "conn/conn.h"
#include "capture/loader.h"
#include "request/logs.h"
#include "conn/record.h"
#include "request/route.h"
#include "request/sampler.h"
#include "request/service.h"
#include "request/trust.h"

#define PIPELINE_MAX_SINKS	8

typedef void (*sink_fn)(void *ctx, const struct record *r);
/* An error event: r may be NULL (a traceback no request claimed), exc may be NULL. */
typedef void (*error_sink_fn)(void *ctx, const struct record *r, const struct exc_info *exc);
struct life_event;
typedef void (*life_sink_fn)(void *ctx, const struct life_event *e);
struct loop_block;
typedef void (*block_sink_fn)(void *ctx, const struct loop_block *b);
struct loop_stats;

struct pipeline;

struct pipeline_opts {
	struct obs_filter filter;
	struct services *svc;		/* NULL: defaults */
	struct routes *rt;		/* NULL: defaults */
	const struct sampler *sampler;	/* NULL: parentbased_always_on */
	const struct trust *trust;	/* NULL: no peer's X-Request-ID is honoured */
	struct cgroup_cache *cgroups;	/* NULL: no container metadata (replay) */
	const char *record_path;	/* also append every kernel record to this file */
	const char *replay_path;	/* no kernel: records come from this file (replay) */
};

/*
 * Load and attach. Pointers in o are borrowed: they must outlive the pipeline.
 * NULL with errno set (reason logged).
 */
struct pipeline *pipeline__open(const struct pipeline_opts *o);

struct counter_visit;
/* The obs_client_* and obs_stitch_* families of outgoing calls (client.h). */
void pipeline__client_counters(const struct pipeline *p, struct counter_visit *v);

/* Incoming traceparent headers that were present but invalid (ignored). */
uint64_t pipeline__traceparent_invalid(const struct pipeline *p);

/* The container and pod of a process (cgroup.h); all "" without a cache. */
const struct cgroup_ident *pipeline__container_of(struct pipeline *p, uint32_t pid);

/* The service a connection belongs to (see service.h). */
const char *pipeline__service_of(struct pipeline *p, uint32_t pid, const char *comm,
				 uint16_t lport);

/* An observed process: one that served at least one HTTP/1 connection and
 * has not exited. */
struct proc_view {
	uint32_t pid;
	uint16_t lport;		/* port of its first connection */
	const char *comm;
	uint64_t first_seen_ns;	/* CLOCK_MONOTONIC */
};

void pipeline__foreach_proc(const struct pipeline *p,
			    void (*fn)(void *ctx, const struct proc_view *v), void *ctx);

/* The route table in use (for its counters). */
struct routes *pipeline__routes(const struct pipeline *p);

/* Visit every open connection. */
void pipeline__foreach_conn(const struct pipeline *p,
			    void (*fn)(void *ctx, const struct conn_view *v), void *ctx);

/* Ring-buffer fill (0..1) seen right before the last drain, and the peak. */
double pipeline__ringbuf_fill(const struct pipeline *p);
double pipeline__ringbuf_fill_peak(const struct pipeline *p);

/* Add a sink; 0 or -E2BIG. Record sinks see every finished request (error
 * requests up to ERR_HOLD_NS late, with their traceback); error sinks every
 * error event; life sinks every lifecycle event as it happens. */
int pipeline__add_sink(struct pipeline *p, sink_fn fn, void *ctx);
int pipeline__add_error_sink(struct pipeline *p, error_sink_fn fn, void *ctx);
int pipeline__add_life_sink(struct pipeline *p, life_sink_fn fn, void *ctx);
/* Blocked event-loop iterations, with the requests they held up (loops.h). */
int pipeline__add_block_sink(struct pipeline *p, block_sink_fn fn, void *ctx);

/* Event-loop totals per worker process, read from the kernel now. */
void pipeline__foreach_loop(struct pipeline *p,
			    void (*fn)(void *ctx, uint32_t pid, const char *service,
				       const struct loop_stats *s),
			    void *ctx);

struct err_stats;
const struct err_stats *pipeline__err_stats(const struct pipeline *p);

/* Log records of the observed processes' stdout/stderr lines (logs.h). */
int pipeline__add_log_sink(struct pipeline *p, log_sink_fn fn, void *ctx);
const struct log_stats *pipeline__log_stats(const struct pipeline *p);

/* An fd to poll for readability (ring buffer has data worth a wakeup). */
int pipeline__fd(const struct pipeline *p);

/* Drain the ring buffer now. Returns records consumed or -errno. */
int pipeline__consume(struct pipeline *p);

/* Housekeeping, call about once a second: kernel counters, stale connections. */
void pipeline__tick(struct pipeline *p);

/* Kernel counters as of the last tick (summed over CPUs). */
const uint64_t *pipeline__kcounters(const struct pipeline *p);
const struct conn_stats *pipeline__stats(const struct pipeline *p);
size_t pipeline__active_conns(const struct pipeline *p);
size_t pipeline__processes(const struct pipeline *p);	/* observed processes */
/* CLOCK_MONOTONIC ns of the last ring-buffer drain. */
uint64_t pipeline__last_consume_ns(const struct pipeline *p);
/* Events lost, all reasons (ring full, tables full). */
uint64_t pipeline__events_lost(const struct pipeline *p);

/*
 * Replay mode (opts.replay_path): feed every recorded kernel record through the
 * pipeline as fast as possible, with time taken from the records and fixed
 * random seeds, so the work done is deterministic. Returns records fed or -errno.
 */
long pipeline__replay(struct pipeline *p);

/* Detach and free; pending requests are failed to the sinks first. NULL-safe. */
void pipeline__free(struct pipeline *p);

uint64_t mono_ns(void);

#endif
