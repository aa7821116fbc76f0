/* SPDX-License-Identifier: MIT */
/*
 * top_view — `obsctl top`'s ncurses screens: the table (header lines, one
 * row per route, a selected row), the detail of the selected row (latency
 * histogram of the window, status codes, slowest recent requests), help,
 * and the keys that move between them, sort, filter and pause.
 *
 * While the screen is up, what is written to stderr (libbpf, pipeline
 * warnings) is held in a temporary file and shown once it is closed.
 */
#ifndef OBS_TOP_VIEW_H
#define OBS_TOP_VIEW_H

#include <stdbool.h>
#include "cli/top_frame.h"
#include "cli/top_model.h"
#include "cli/top_source.h"

/* What the screen shows; borrowed. Keys change o's sort and filter and
 * re-arrange f. */
struct top_view_data {
	struct top_frame *f;
	struct top_opts *o;
	const struct top_model *m;
	const struct top_stats *st;
};

enum top_keys {
	TOP_KEYS_NONE,			/* nothing happened */
	TOP_KEYS_CHANGED,		/* the screen was drawn again */
	TOP_KEYS_QUIT,
};

struct top_view;

/* The screen needs a terminal on both stdin and stdout; false with a message
 * (checked before the probes load). */
bool top_view__possible(void);

/* Take the terminal (alternate screen, keys without echo). NULL with a message. */
struct top_view *top_view__open(void);

/* Draw the current screen. */
void top_view__draw(struct top_view *v, const struct top_view_data *d);

/* Handle every key waiting on stdin (never blocks). */
enum top_keys top_view__keys(struct top_view *v, const struct top_view_data *d);

/* Paused: the caller keeps the frame as it is (numbers are still counted). */
bool top_view__paused(const struct top_view *v);

/* Give the terminal back at once and show what stderr held. NULL-safe. */
void top_view__close(struct top_view *v);

#endif
