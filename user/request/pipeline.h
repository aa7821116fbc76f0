/* SPDX-License-Identifier: MIT */
/*
 * pipeline — kernel to records: loads the probes, consumes the ring buffer,
 * feeds the connection table (HTTP/1 and HTTP/2, TCP and UNIX), finishes
 * each record (wall-clock time, request id, trace context, route) and hands
 * it and every other event (errors, lifecycle events, blocked loops, log
 * records) to its sinks (sink.h) in the order they were registered. Readers
 * of its state take a snapshot (pipeline__snapshot, stats.h).
 * Single-threaded: call everything from one event loop.
 */
#ifndef OBS_PIPELINE_H
#define OBS_PIPELINE_H

#include <stdint.h>
#include "base/clock.h"
#include "capture/loader.h"
#include "request/route.h"
#include "request/sampler.h"
#include "request/service.h"
#include "request/sink.h"
#include "request/stats.h"
#include "request/trust.h"

struct pipeline;

struct pipeline_opts {
	struct obs_filter filter;
	const struct sinks *sinks;	/* NULL: none; taken at open (sink.h) */
	struct services *svc;		/* NULL: defaults */
	struct routes *rt;		/* NULL: defaults */
	const struct sampler *sampler;	/* NULL: parentbased_always_on */
	const struct trust *trust;	/* NULL: no peer's X-Request-ID is honoured */
	struct cgroup_cache *cgroups;	/* NULL: no container metadata (replay) */
	const char *record_path;	/* also append every kernel record to this file */
	const char *replay_path;	/* no kernel: records come from this file (replay) */
};

/*
 * Load and attach. Pointers in o are borrowed: they must outlive the pipeline
 * (the sinks too: the pipeline never frees them). NULL with errno set (reason
 * logged).
 */
struct pipeline *pipeline__open(const struct pipeline_opts *o);

/* An fd to poll for readability (ring buffer has data worth a wakeup). */
int pipeline__fd(const struct pipeline *p);

/* Drain the ring buffer now. Returns records consumed or -errno. */
int pipeline__consume(struct pipeline *p);

/* Housekeeping, call about once a second: kernel counters, stale connections. */
void pipeline__tick(struct pipeline *p);

/*
 * Fill st with a copy of the pipeline's state now: counters (the kernel's as
 * of the last tick), observed processes with their services and connection
 * gauges, event-loop totals (read from the kernel now), route caps.
 * 0, or -ENOMEM (st empty). Free with pipeline_stats__fini.
 */
int pipeline__snapshot(struct pipeline *p, struct pipeline_stats *st);

/*
 * Replay mode (opts.replay_path): feed every recorded kernel record through the
 * pipeline as fast as possible, with time taken from the records and fixed
 * random seeds, so the work done is deterministic. Returns records fed or -errno.
 */
long pipeline__replay(struct pipeline *p);

/* Detach and free. Requests still waiting for their response are dropped, not
 * reported (conn.h); error requests held for their traceback and partial log
 * lines go to the sinks first. NULL-safe. */
void pipeline__free(struct pipeline *p);

#endif
