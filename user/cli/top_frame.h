/* SPDX-License-Identifier: MIT */
/*
 * top_frame — one frame of `obsctl top`: the numbers of every row over the
 * window (rates, percentiles, error share, in flight), the totals, the
 * event loops and the CPU of obsctl and obsd, the rows sorted and filtered
 * as the options say. The screen and --batch both show frames; the options
 * (struct top_opts) are what the user chose, sort and filter changed by keys.
 */
#ifndef OBS_TOP_FRAME_H
#define OBS_TOP_FRAME_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "cli/top_loops.h"
#include "cli/top_model.h"
#include "cli/top_source.h"

#define TOP_FILTER_MAX	64

enum top_col {
	COL_ROUTE, COL_REQS, COL_RPS, COL_P50, COL_P90, COL_P99, COL_MAX, COL_ERR, COL_INFL,
	COL_BYTES, COL_N
};

struct top_col_def {
	const char *name;		/* --sort, JSON "sort" */
	const char *title;
	int key;			/* sort key on the table screen */
	int width;			/* numbers; the name columns are sized apart */
};

extern const struct top_col_def top_cols[COL_N];

struct top_opts {
	int window;			/* seconds */
	double interval;		/* seconds between frames */
	long iterations;		/* --batch/--json frames; 0: until stopped */
	enum top_col sort;
	bool reverse;			/* sort the other way round */
	bool batch, json;
	const char *daemon;		/* obsd's address; NULL: standalone */
	char filter[TOP_FILTER_MAX];	/* substring of service, method or route; "": all */
};

/* One row's numbers in a frame. */
struct top_row_view {
	const struct top_row *r;	/* rows live as long as the model */
	uint64_t requests;		/* since top started */
	uint64_t win_requests, win_errors;
	double rps, bps, err_pct;	/* over the window */
	double p50, p90, p99, max;	/* ms; meaningful when win_requests */
	uint64_t in_flight;		/* of the row's service */
};

struct top_frame {
	struct top_row_view v[TOP_MAX_ROWS];	/* every row, sorted */
	int n_all;
	const struct top_row_view *shown[TOP_MAX_ROWS];	/* those the filter lets through */
	int n;
	uint64_t requests, in_flight;	/* since top started; now */
	double rps, bps, err_pct;	/* every row, over the window */
	double span;			/* seconds the window covers so far */
	double cpu_ctl, cpu_obsd;	/* % of one CPU since the last frame; < 0: unknown */
	time_t when;
	struct loop_view loops[TOP_LOOPS_MAX];	/* workers of the window, worst first */
	int n_loops;
	uint64_t prev_ns;		/* CLOCK_MONOTONIC of the last frame, 0: none */
	double prev_ctl_cpu, prev_obsd_cpu;	/* CPU seconds then; < 0: unknown */
};

/* Before the first frame. */
void top_frame__init(struct top_frame *f);

/* A new frame of the model, the loops and the source's stats, arranged by o. */
void top_frame__compute(struct top_frame *f, const struct top_model *m,
			const struct top_loops *ls, const struct top_stats *st,
			const struct top_opts *o);

/* Sort and filter again (o's sort or filter changed). */
void top_frame__arrange(struct top_frame *f, const struct top_opts *o);

/* One row's numbers over a window covering span seconds. */
void top_frame__row(const struct top_model *m, const struct top_row *r, double span,
		    const struct top_stats *st, struct top_row_view *v);

#endif
