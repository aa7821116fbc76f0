/* SPDX-License-Identifier: MIT */
/*
 * loops — event-loop health of the observed servers (asyncio, uvloop).
 *
 * The kernel times every loop iteration of threads of observed processes as
 * the time from one epoll_wait/epoll_pwait return to the next wait (the
 * thread was busy running callbacks: handlers, parsing, writes) into per-thread
 * log2 histograms ("loops" map), and reports iterations longer than the
 * threshold as OBS_EV_LOOP records. Here the per-thread statistics are folded
 * into per-process (worker) totals that never go backwards, even when threads
 * exit, and each long iteration becomes a LoopBlocked event naming the
 * requests that were in progress on that worker while it was blocked.
 */
#ifndef OBS_LOOPS_H
#define OBS_LOOPS_H

#include <stdint.h>
#include "base/json.h"
#include "obs.h"
#include "conn/record.h"

#define LOOPS_MAX_WORKERS	1024
#define LOOPS_RECENT		256	/* completed requests remembered for blame */
#define LOOP_BLAME_MAX		8	/* requests named per blocked iteration */

struct loop_stats {
	uint64_t count, sum_ns, blocked;
	uint64_t buckets[OBS_LOOP_BUCKETS];	/* [2^i, 2^(i+1)) us, not cumulative */
};

struct loop_blame {
	char request_id[H1_REQID_MAX];
	char method[H1_METHOD_MAX];
	char route[REC_ROUTE_MAX];
	bool in_flight;		/* still waiting for its response when the block ended */
};

struct loop_block {
	uint32_t pid, tid;
	uint64_t start_ns, busy_ns;	/* CLOCK_MONOTONIC */
	uint64_t cpu_wait_ns;		/* of busy_ns, waiting for a CPU */
	uint64_t wall_start_ns;
	const char *service;
	int n;
	struct loop_blame reqs[LOOP_BLAME_MAX];
};

struct loops;

struct loops *loops__new(void);

/* Fold the kernel map (fd of "loops") into per-worker totals. */
void loops__refresh(struct loops *l, int map_fd);

/* Give workers seen for the first time their service name (kept after exit). */
void loops__name(struct loops *l, const char *(*name)(void *ctx, uint32_t pid), void *ctx);

/* Visit each worker's totals (threads summed, exited threads kept). */
void loops__foreach(const struct loops *l,
		    void (*fn)(void *ctx, uint32_t pid, const char *service,
			       const struct loop_stats *s),
		    void *ctx);

/* Remember a completed request for blame. */
void loops__remember(struct loops *l, const struct record *r);

/* Name the remembered requests of b->pid overlapping [start, start+busy]. */
void loops__blame_recent(const struct loops *l, struct loop_block *b);

/* Add one request to b's list (deduplicated by request id, bounded). */
void loop_block__add(struct loop_block *b, const struct record *r, bool in_flight);

void loop_block_json(const struct loop_block *b, struct jbuf *jb);

void loops__free(struct loops *l);

#endif
