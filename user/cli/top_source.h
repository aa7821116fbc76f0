/* SPDX-License-Identifier: MIT */
/*
 * top_source — where `obsctl top` gets its numbers: the probes, loaded by
 * obsctl itself (top_source_local.c), or a running obsd's /api/stats
 * (top_source_daemon.c). Both feed the model and the loops they were given
 * and keep a few numbers of their own (struct top_stats). The main loop
 * drives either without ever blocking:
 *
 *	top_source__refresh(src);		ask for fresh numbers
 *	n = top_source__pollfds(src, pfd, max, &timeout_ms);
 *	poll(pfd, n + the terminal, timeout_ms);
 *	if (top_source__pump(src))		the refresh asked for is done
 *		draw a frame;
 *
 * A refresh in progress (an HTTP transfer) advances in pump(); between
 * refreshes pump() does the source's housekeeping (draining the ring
 * buffer). top_source__free() returns at once whatever the source was doing:
 * a transfer is abandoned; the probes' detach (it waits for RCU grace
 * periods, most of a second in all) happens after obsctl has exited, in a
 * child holding the last references. So free the source last, right before
 * exiting: every page written after that fork is copied first.
 */
#ifndef OBS_TOP_SOURCE_H
#define OBS_TOP_SOURCE_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include "request/pipeline.h"
#include "request/service.h"
#include "cli/top_loops.h"
#include "cli/top_model.h"

#define TOP_SERVICES_MAX	64	/* services with an in-flight gauge */
#define TOP_ERR_MAX		160	/* the last problem, as text */
#define TOP_POLLFDS_MAX		8	/* descriptors a source may ask to be polled */

struct top_svc_gauge {
	char name[SERVICE_NAME_MAX];
	uint64_t in_flight;
};

/* What a source says besides requests, as of its last refresh. */
struct top_stats {
	uint64_t processes, events_lost;
	double obsd_cpu_s;		/* obsd's CPU seconds so far; < 0: no obsd */
	struct top_svc_gauge svc[TOP_SERVICES_MAX];
	int n_svc;
	uint64_t in_flight;		/* all services */
	char err[TOP_ERR_MAX];		/* the last refresh's problem, "" when none */
};

struct top_source;

/* What each kind of source does; see the verbs below. */
struct top_source_ops {
	void (*refresh)(struct top_source *src);
	int (*pollfds)(struct top_source *src, struct pollfd *pfd, int max, int *timeout_ms);
	bool (*pump)(struct top_source *src);
	void (*free)(struct top_source *src);
};

struct top_source {
	const struct top_source_ops *ops;
	struct top_model *model;	/* borrowed: gains go here */
	struct top_loops *loops;	/* borrowed: loop totals go here */
	struct top_stats st;
};

/*
 * Load the probes (needs root, or CAP_BPF and CAP_PERFMON: checked first)
 * and count every request they see from now on. NULL with the reason printed
 * on stderr.
 */
struct top_source *top_source_local__open(const struct pipeline_opts *po, struct top_model *m,
					  struct top_loops *l);

/*
 * Read obsd at addr ("ADDR:PORT") and count the requests it sees from now
 * on (the first /api/stats is the baseline, fetched before this returns).
 * NULL with the reason printed on stderr.
 */
struct top_source *top_source_daemon__open(const char *addr, struct top_model *m,
					   struct top_loops *l);

/* Ask for fresh numbers; a refresh already under way is not restarted. */
void top_source__refresh(struct top_source *src);

/* The descriptors to poll (at most max) and how long to wait at most
 * (*timeout_ms is only ever lowered). Returns how many. */
int top_source__pollfds(struct top_source *src, struct pollfd *pfd, int max, int *timeout_ms);

/* Do what is ready; true once when the refresh asked for is complete. */
bool top_source__pump(struct top_source *src);

static inline const struct top_stats *top_source__stats(const struct top_source *src)
{
	return &src->st;
}

/* Close at once (see above); the model and loops are not touched again. NULL-safe. */
void top_source__free(struct top_source *src);

/* For sources: forget the in-flight gauges, add n requests in flight in svc. */
void top_stats__clear_gauges(struct top_stats *st);
void top_stats__gauge(struct top_stats *st, const char *svc, uint64_t n);

/* Requests in flight in svc as of the last refresh. */
uint64_t top_stats__in_flight(const struct top_stats *st, const char *svc);

#endif
