/* SPDX-License-Identifier: MIT */
/*
 * top_text — a frame of `obsctl top` as lines of text, shared by the screen
 * (top_view.c) and --batch (top_batch.c): the header lines, the table's title
 * and rows in columns sized by a layout, and the number formats (ms, bytes,
 * durations). Lines are built in a fixed buffer and cut at TOP_LINE_MAX.
 */
#ifndef OBS_TOP_TEXT_H
#define OBS_TOP_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include "cli/top_frame.h"
#include "cli/top_model.h"
#include "cli/top_source.h"

#define TOP_LINE_MAX	2048	/* one formatted output line */
#define TOP_CELL_MAX	32	/* one formatted number */
#define TOP_WIDE_COLS	100	/* from this width a screen also shows REQS, times, paths */

struct top_line {
	char s[TOP_LINE_MAX];
	size_t len;
};

void top_line__reset(struct top_line *l);
void top_line__add(struct top_line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "-" without a value, else ms with 2, 1 or 0 decimals as it grows. */
void top_fmt_ms(char *out, size_t n, bool have, double ms);
/* A duration for people: 850us, 12.34ms, 1.23s. */
void top_fmt_dur(char *out, size_t n, double us);
/* Bytes with a binary unit: 512, 1.5K, 3.2M. */
void top_fmt_bytes(char *out, size_t n, double b);

/* Column widths of the table. */
struct top_layout {
	int svc_w, meth_w, route_w;
	bool reqs;			/* REQS shown */
};

/* Widths that show every name whole (batch frames). */
void top_layout__full(struct top_layout *L, const struct top_frame *f);

/* Widths for a screen ncols wide: the names share what the numbers leave. */
void top_layout__fit(struct top_layout *L, const struct top_frame *f, int ncols);

/* The table's title line and one row. */
void top_text__title(struct top_line *l, const struct top_layout *L);
void top_text__row(struct top_line *l, const struct top_row_view *v, const struct top_layout *L);

/* Header lines: what, when and how; totals; obsctl's and obsd's health. */
void top_text__head_title(struct top_line *l, const struct top_frame *f, const struct top_opts *o,
			  bool full_date);
void top_text__head_totals(struct top_line *l, const struct top_frame *f,
			   const struct top_model *m);
void top_text__head_system(struct top_line *l, const struct top_frame *f,
			   const struct top_model *m, const struct top_stats *st);

/* "loop p99  svc/pid 512us  svc/pid 262.14ms(2 blocked)": the worst workers that fit in w. */
void top_text__head_loops(struct top_line *l, const struct top_frame *f, int w);

#endif
