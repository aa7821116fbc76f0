/* SPDX-License-Identifier: MIT */
/*
 * top_model — what `obsctl top` knows about requests: one row per (service,
 * method, route), its totals since top started and its numbers over a
 * sliding window of whole seconds.
 *
 * Sources feed rows with gains: what a row gained in one second, either one
 * finished request (standalone) or the difference between two polls of
 * obsd's cumulative aggregates (--daemon). Each row keeps the log-linear
 * histogram (lhist.h) of its window and, per second of the window, the
 * sparse part of it that falls out when that second leaves the window.
 * Rows are bounded (TOP_MAX_ROWS); gains of rows beyond that are counted,
 * not shown.
 *
 * The model's clock is the caller's (CLOCK_MONOTONIC ns); a gain names the
 * second it happened in. Single-threaded; the model owns every row.
 */
#ifndef OBS_TOP_MODEL_H
#define OBS_TOP_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include "proto/http1.h"
#include "base/lhist.h"
#include "request/route.h"
#include "request/service.h"

#define TOP_NS_PER_S		1000000000ull
#define TOP_WINDOW_MIN		2	/* seconds */
#define TOP_WINDOW_MAX		300
#define TOP_MAX_ROWS		1000	/* (service, method, route) rows; more are counted */
#define TOP_HASH_SIZE		2048	/* power of two, > TOP_MAX_ROWS */
#define TOP_SLOWEST		10	/* slowest recent requests kept per row */
#define TOP_STATUS_MAX		16	/* distinct status codes per row; more are "other" */
#define TOP_PATH_SHOW		128	/* path bytes kept for a slow request */
#define TOP_TRACE_HEX		33	/* 32 hex digits and NUL */

/* One of the slowest requests of a row's window (standalone only: obsd's
 * aggregates have no single requests). */
struct top_slow {
	uint64_t dur_us;
	uint64_t sec;			/* second it completed, model clock */
	uint64_t wall_ns;		/* its start, epoch ns */
	int status;			/* 0: no response head */
	char request_id[H1_REQID_MAX];
	char trace_id[TOP_TRACE_HEX];
	char path[TOP_PATH_SHOW];
};

/* What one row gained in one second. */
struct top_gain {
	const char *service, *method, *route;	/* the row; "" shows as "-" */
	uint64_t sec;			/* the second, model clock */
	uint64_t requests;
	uint64_t errors;		/* failed requests and 5xx responses */
	uint64_t bytes;			/* request + response bytes */
	uint64_t max_us;		/* slowest of them (or its bucket's upper bound) */
	const uint16_t *idx;		/* their durations: n[i] in lhist bucket idx[i] */
	const uint64_t *n;
	uint32_t n_bins;
	const struct top_slow *slow;	/* the request itself, or NULL */
};

struct top_status {
	int code;			/* 0: no response head */
	uint64_t n;
};

/* One second of a row's window: what leaves the window with it. */
struct top_slot {
	bool used;
	uint64_t sec;			/* the second it holds */
	uint64_t requests, errors, bytes, max_us;
	struct lhist hist;		/* that second's durations, owned */
};

struct top_row {
	char service[SERVICE_NAME_MAX];
	char method[H1_METHOD_MAX];
	char route[ROUTE_LEN_MAX];
	int next;			/* next row of its hash chain, -1: none */
	uint64_t requests, errors;	/* since top started */
	uint32_t hist[LH_BUCKETS];	/* the window's histogram: the slots' summed */
	uint64_t hist_n;
	struct top_slot *slots;		/* [window], second s in slots[s % window], owned */
	struct top_status status[TOP_STATUS_MAX];	/* since top started */
	int n_status;
	uint64_t status_other;		/* codes beyond TOP_STATUS_MAX distinct ones */
	/* The slowest requests of the window, unordered. An entry that leaves the
	 * window is refilled by later requests only, not by slower earlier ones. */
	struct top_slow slow[TOP_SLOWEST];
	int n_slow;
};

struct top_model {
	int window;			/* seconds */
	uint64_t start_ns, now_ns;	/* first and last advance */
	uint64_t now_sec;
	struct top_row *rows[TOP_MAX_ROWS];	/* owned */
	int n_rows;
	int hash[TOP_HASH_SIZE];	/* first row of each chain, -1: none */
	uint64_t requests;		/* every request gained, shown or not */
	uint64_t overflow;		/* requests of rows beyond TOP_MAX_ROWS */
	uint64_t late;			/* requests older than the window: totals only */
	uint64_t oom;			/* requests kept out of the window for lack of memory */
};

/* A row's numbers over the window. */
struct top_row_window {
	uint64_t requests, errors, bytes, max_us;
	double p50_us, p90_us, p99_us;	/* 0 without requests */
};

/* An empty model with a window of `window` seconds (TOP_WINDOW_MIN..MAX). */
void top_model__init(struct top_model *m, int window);

/* Free every row; the model is empty afterwards. */
void top_model__free(struct top_model *m);

/* Add what a row gained (made on first use). */
void top_model__gain(struct top_model *m, const struct top_gain *g);

/* Count n responses with status code of a row since top started. */
void top_model__status(struct top_model *m, const char *service, const char *method,
		       const char *route, int code, uint64_t n);

/* Move the clock to now_ns and drop what left the window. */
void top_model__advance(struct top_model *m, uint64_t now_ns);

/* Seconds the window covers now: whole seconds before the current one, the
 * current one so far, never more than the model has run (at least 1). */
double top_model__span(const struct top_model *m);

/* r's numbers over the window. */
void top_model__window(const struct top_model *m, const struct top_row *r,
		       struct top_row_window *w);

#endif
