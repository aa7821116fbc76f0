// SPDX-License-Identifier: MIT
/* Event loops over obsctl top's window (see top_loops.h). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/top_loops.h"

void top_loops__init(struct top_loops *ls, int window)
{
	memset(ls, 0, sizeof(*ls));
	ls->window = window;
}

void top_loops__free(struct top_loops *ls)
{
	for (int i = 0; i < ls->n; i++)
		free(ls->w[i].snaps);
	ls->n = 0;
}

void top_loops__begin(struct top_loops *ls)
{
	ls->untracked = 0;
}

static void worker_loop__reset(struct worker_loop *w, int window)
{
	memset(w->snaps, 0, (window + 1) * sizeof(*w->snaps));
	memset(&w->cur, 0, sizeof(w->cur));
}

/* The entry of pid: found, new, or one not reported for a window; NULL when full. */
static struct worker_loop *loops__worker(struct top_loops *ls, uint32_t pid, uint64_t sec)
{
	struct worker_loop *w = NULL;

	for (int i = 0; i < ls->n; i++)
		if (ls->w[i].pid == pid)
			return &ls->w[i];
	for (int i = 0; i < ls->n && !w; i++)
		if (ls->w[i].cur.sec + ls->window < sec)
			w = &ls->w[i];
	if (!w && ls->n < TOP_LOOPS_MAX) {
		w = &ls->w[ls->n];
		w->snaps = calloc(ls->window + 1, sizeof(*w->snaps));
		if (!w->snaps)
			return NULL;
		ls->n++;
	}
	if (!w)
		return NULL;
	worker_loop__reset(w, ls->window);
	w->pid = pid;
	return w;
}

void top_loops__report(struct top_loops *ls, uint32_t pid, const char *svc, uint64_t blocked,
		       const uint64_t *buckets, uint64_t sec)
{
	struct worker_loop *w = loops__worker(ls, pid, sec);
	bool behind = false;

	if (!w) {
		ls->untracked++;
		return;
	}
	for (int i = 0; i < OBS_LOOP_BUCKETS; i++)
		behind |= buckets[i] < w->cur.buckets[i];
	if (behind || blocked < w->cur.blocked)	/* pid reused, or obsd restarted */
		worker_loop__reset(w, ls->window);
	snprintf(w->service, sizeof(w->service), "%s", svc);
	w->cur.sec = sec;
	w->cur.blocked = blocked;
	memcpy(w->cur.buckets, buckets, sizeof(w->cur.buckets));
	w->snaps[sec % (ls->window + 1)] = w->cur;
}

/* The report the window's counts start from (see top_loops.h); NULL: none. */
static const struct loop_snap *worker_loop__base(const struct worker_loop *w, int window)
{
	const struct loop_snap *in = NULL, *before = NULL;
	uint64_t now = w->cur.sec;

	for (int i = 0; i <= window; i++) {
		const struct loop_snap *sn = &w->snaps[i];

		if (!sn->sec || sn->sec >= now)
			continue;
		if (sn->sec + window >= now) {
			if (!in || sn->sec < in->sec)
				in = sn;
		} else if (!before || sn->sec > before->sec) {
			before = sn;
		}
	}
	return in ? in : before;
}

static void worker_loop__view(const struct worker_loop *w, int window, struct loop_view *v)
{
	const struct loop_snap *base = worker_loop__base(w, window);
	uint64_t d[OBS_LOOP_BUCKETS], seen = 0, rank;

	*v = (struct loop_view){ .w = w };
	if (!base)
		return;
	for (int i = 0; i < OBS_LOOP_BUCKETS; i++) {
		d[i] = w->cur.buckets[i] - base->buckets[i];
		v->iterations += d[i];
	}
	v->blocked = w->cur.blocked - base->blocked;
	if (!v->iterations)
		return;
	rank = (uint64_t)ceil(TOP_LOOP_Q * v->iterations - 1e-9);
	for (int i = 0; i < OBS_LOOP_BUCKETS; i++) {
		seen += d[i];
		if (seen >= rank) {
			v->p99_ms = (double)(2ull << i) / 1000;
			break;
		}
	}
}

/* Worst first: higher p99, then more blocked iterations, then lower pid. */
static int loop_view_cmp(const void *pa, const void *pb)
{
	const struct loop_view *a = pa, *b = pb;

	if (a->p99_ms != b->p99_ms)
		return a->p99_ms < b->p99_ms ? 1 : -1;
	if (a->blocked != b->blocked)
		return a->blocked < b->blocked ? 1 : -1;
	return a->w->pid < b->w->pid ? -1 : a->w->pid > b->w->pid;
}

int top_loops__views(const struct top_loops *ls, uint64_t now, struct loop_view *out)
{
	int n = 0;

	for (int i = 0; i < ls->n; i++)
		if (ls->w[i].cur.sec + ls->window >= now)
			worker_loop__view(&ls->w[i], ls->window, &out[n++]);
	qsort(out, n, sizeof(out[0]), loop_view_cmp);
	return n;
}
