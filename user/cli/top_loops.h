/* SPDX-License-Identifier: MIT */
/*
 * top_loops — the event loops of the observed workers over `obsctl top`'s
 * window, from the cumulative totals a source reports per worker
 * (iterations by log2 busy time, blocked iterations: loops.h).
 *
 * Per worker, the totals of each second are kept (window + 1 of them, the
 * last report of that second): the window's iterations are the current
 * totals less those of the oldest second still in the window. Reports come
 * once a second standalone and once a frame with obsd; when no second of the
 * window has one (frames further apart than the window), the newest older
 * one is used. Totals that go backwards (pid reused, obsd restarted) start
 * the worker over. At most TOP_LOOPS_MAX workers are followed at once; a
 * worker not reported for a whole window gives its place to a new one.
 */
#ifndef OBS_TOP_LOOPS_H
#define OBS_TOP_LOOPS_H

#include <stdint.h>
#include "obs.h"
#include "request/service.h"

#define TOP_LOOPS_MAX	64	/* workers whose event loops are followed */
#define TOP_LOOP_Q	0.99	/* the quantile of loop busy time shown */

struct loop_snap {
	uint64_t sec;			/* second of the report; 0: unused */
	uint64_t blocked;
	uint64_t buckets[OBS_LOOP_BUCKETS];	/* [2^i, 2^(i+1)) us, not cumulative */
};

struct worker_loop {
	uint32_t pid;
	char service[SERVICE_NAME_MAX];
	struct loop_snap cur;		/* totals of the last report */
	struct loop_snap *snaps;	/* [window + 1], second s in snaps[s % (window + 1)], owned */
};

struct top_loops {
	int window;			/* seconds */
	struct worker_loop w[TOP_LOOPS_MAX];
	int n;
	uint64_t untracked;		/* workers of the last refresh beyond TOP_LOOPS_MAX */
};

/* One worker's event loop over the window. */
struct loop_view {
	const struct worker_loop *w;
	uint64_t iterations, blocked;	/* in the window */
	double p99_ms;			/* upper bound of the p99's bucket; 0: none */
};

/* Empty, for a window of `window` seconds. */
void top_loops__init(struct top_loops *ls, int window);

/* Start a refresh: untracked counts the workers of this one. */
void top_loops__begin(struct top_loops *ls);

/* Record a worker's cumulative totals as of second sec. */
void top_loops__report(struct top_loops *ls, uint32_t pid, const char *svc, uint64_t blocked,
		       const uint64_t *buckets, uint64_t sec);

/* The workers reported within the window as of second now, worst first
 * (higher p99, then more blocked, then lower pid), into out; how many. */
int top_loops__views(const struct top_loops *ls, uint64_t now, struct loop_view *out);

/* Free every worker. */
void top_loops__free(struct top_loops *ls);

#endif
