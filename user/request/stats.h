/* SPDX-License-Identifier: MIT */
/*
 * stats — a snapshot of the pipeline's state for its readers: the sinks
 * (collect, scrape, flush: sink.h), /health, /api/stats and obsctl top.
 * pipeline__snapshot() fills it (reading the kernel's counters and event-loop
 * map once), so a reader never calls into the pipeline or the kernel. It is
 * a copy: valid until pipeline_stats__fini(), whatever the pipeline does.
 */
#ifndef OBS_STATS_H
#define OBS_STATS_H

#include <stddef.h>
#include <stdint.h>
#include "obs.h"
#include "base/cgroup.h"
#include "base/counters.h"
#include "conn/conn.h"
#include "request/client.h"
#include "request/errors.h"
#include "request/logs.h"
#include "request/loops.h"
#include "request/service.h"

/* An observed process: one that served at least one HTTP connection and has
 * not exited (or one with open connections). */
struct stats_proc {
	uint32_t pid;
	uint16_t lport;			/* port of its first connection */
	char comm[OBS_COMM_LEN];
	char service[SERVICE_NAME_MAX];
	struct cgroup_ident container;	/* all "" without container metadata */
	uint64_t first_seen_ns;		/* CLOCK_MONOTONIC */
	uint64_t conns;			/* its open connections */
	uint64_t in_flight;		/* requests read whose response is not complete */
};

/* Event-loop totals of one worker process. */
struct stats_loop {
	uint32_t pid;
	char service[SERVICE_NAME_MAX];
	struct loop_stats s;
};

/* A service's route table (route.h): paths collapsed past its cap. */
struct stats_routes {
	char service[SERVICE_NAME_MAX];
	uint64_t collapsed;
	unsigned distinct;
};

struct pipeline_stats {
	uint64_t now_ns;			/* CLOCK_MONOTONIC when taken */
	uint64_t kc[OBS_C_MAX];			/* kernel counters as of the last tick */
	struct conn_stats conns;
	size_t active_conns;
	uint64_t events_lost;			/* all reasons (ring full, tables full) */
	double fill, fill_peak;			/* ring-buffer fill before the last drain, peak */
	uint64_t last_consume_ns;		/* CLOCK_MONOTONIC of the last drain */
	uint64_t traceparent_invalid;		/* present but invalid: ignored */
	struct err_stats errors;
	struct log_stats logs;
	struct client_stats calls;		/* outgoing calls and stitching */
	size_t n_procs, n_loops, n_routes;
	size_t n_observed;			/* of procs: the observed processes (the rest
						   only have connections) */
	struct stats_proc *procs;		/* observed processes first */
	struct stats_loop *loops;
	struct stats_routes *routes;
};

/* Free what a snapshot holds (the struct itself is the caller's). NULL-safe. */
void pipeline_stats__fini(struct pipeline_stats *st);

/* The pipeline's obs_* samples (counters.h), family by family. */
void pipeline_stats__counters(const struct pipeline_stats *st, struct counter_visit *v);

#endif
