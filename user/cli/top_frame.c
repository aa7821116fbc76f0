// SPDX-License-Identifier: MIT
/* One frame of obsctl top (see top_frame.h). */
#include <stdlib.h>
#include <string.h>
#include "cli/top_frame.h"

const struct top_col_def top_cols[COL_N] = {
	[COL_ROUTE] = { "route", "ROUTE", 'n', 0 },
	[COL_REQS] = { "requests", "REQS", 'c', 8 },
	[COL_RPS] = { "rps", "REQ/S", 'r', 7 },
	[COL_P50] = { "p50", "P50ms", '5', 6 },
	[COL_P90] = { "p90", "P90ms", '9', 6 },
	[COL_P99] = { "p99", "P99ms", 'p', 6 },
	[COL_MAX] = { "max", "MAXms", 'm', 6 },
	[COL_ERR] = { "err", "ERR%", 'e', 5 },
	[COL_INFL] = { "inflight", "INFL", 'i', 4 },
	[COL_BYTES] = { "bytes", "BYTES/S", 'b', 7 },
};

void top_frame__init(struct top_frame *f)
{
	memset(f, 0, sizeof(*f));
	f->prev_obsd_cpu = -1;
}

void top_frame__row(const struct top_model *m, const struct top_row *r, double span,
		    const struct top_stats *st, struct top_row_view *v)
{
	struct top_row_window w;

	top_model__window(m, r, &w);
	*v = (struct top_row_view){
		.r = r,
		.requests = r->requests,
		.win_requests = w.requests,
		.win_errors = w.errors,
		.rps = w.requests / span,
		.bps = w.bytes / span,
		.err_pct = w.requests ? 100.0 * w.errors / w.requests : 0,
		.p50 = w.p50_us / 1000,
		.p90 = w.p90_us / 1000,
		.p99 = w.p99_us / 1000,
		.max = w.max_us / 1000.0,
		.in_flight = top_stats__in_flight(st, r->service),
	};
}

/* The value a numeric column sorts by; rows without requests in the window last. */
static double view_key(const struct top_row_view *v, enum top_col c)
{
	bool have = v->win_requests;

	switch (c) {
	case COL_REQS:
		return v->requests;
	case COL_RPS:
		return v->rps;
	case COL_P50:
		return have ? v->p50 : -1;
	case COL_P90:
		return have ? v->p90 : -1;
	case COL_P99:
		return have ? v->p99 : -1;
	case COL_MAX:
		return have ? v->max : -1;
	case COL_ERR:
		return have ? v->err_pct : -1;
	case COL_INFL:
		return v->in_flight;
	case COL_BYTES:
		return v->bps;
	default:
		return 0;
	}
}

static int view_cmp_name(const struct top_row_view *a, const struct top_row_view *b)
{
	int d = strcmp(a->r->route, b->r->route);

	if (!d)
		d = strcmp(a->r->method, b->r->method);
	return d ? d : strcmp(a->r->service, b->r->service);
}

/* Numbers largest first, names A to Z; o->reverse turns it round; ties by name. */
static int view_cmp(const void *pa, const void *pb, void *ctx)
{
	const struct top_opts *o = ctx;
	const struct top_row_view *a = pa, *b = pb;
	double ka, kb;
	int d = 0;

	if (o->sort == COL_ROUTE) {
		d = view_cmp_name(a, b);
		return o->reverse ? -d : d;
	}
	ka = view_key(a, o->sort);
	kb = view_key(b, o->sort);
	if (ka != kb)
		d = ka > kb ? -1 : 1;
	if (o->reverse)
		d = -d;
	return d ? d : view_cmp_name(a, b);
}

static bool view__matches(const struct top_row_view *v, const char *text)
{
	return !text[0] || strcasestr(v->r->service, text) || strcasestr(v->r->route, text) ||
	       strcasestr(v->r->method, text);
}

void top_frame__arrange(struct top_frame *f, const struct top_opts *o)
{
	qsort_r(f->v, f->n_all, sizeof(f->v[0]), view_cmp, (void *)o);
	f->n = 0;
	for (int i = 0; i < f->n_all; i++)
		if (view__matches(&f->v[i], o->filter))
			f->shown[f->n++] = &f->v[i];
}

static double cpu_self(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU of obsctl and obsd since the last frame, in % of one CPU. */
static void frame__cpu(struct top_frame *f, const struct top_stats *st)
{
	uint64_t now = mono_ns();
	double ctl = cpu_self(), obsd = st->obsd_cpu_s;
	double dt = f->prev_ns ? (double)(now - f->prev_ns) / TOP_NS_PER_S : 0;

	f->cpu_ctl = dt > 0 ? 100 * (ctl - f->prev_ctl_cpu) / dt : -1;
	f->cpu_obsd = dt > 0 && obsd >= 0 && f->prev_obsd_cpu >= 0 ?
		      100 * (obsd - f->prev_obsd_cpu) / dt : -1;
	f->prev_ns = now;
	f->prev_ctl_cpu = ctl;
	f->prev_obsd_cpu = obsd;
}

void top_frame__compute(struct top_frame *f, const struct top_model *m,
			const struct top_loops *ls, const struct top_stats *st,
			const struct top_opts *o)
{
	uint64_t win = 0, err = 0;

	f->span = top_model__span(m);
	f->rps = f->bps = 0;
	for (int i = 0; i < m->n_rows; i++) {
		struct top_row_view *v = &f->v[i];

		top_frame__row(m, m->rows[i], f->span, st, v);
		f->rps += v->rps;
		f->bps += v->bps;
		win += v->win_requests;
		err += v->win_errors;
	}
	f->n_all = m->n_rows;
	f->requests = m->requests;
	f->in_flight = st->in_flight;
	f->err_pct = win ? 100.0 * err / win : 0;
	f->when = time(NULL);
	f->n_loops = top_loops__views(ls, mono_ns() / TOP_NS_PER_S, f->loops);
	frame__cpu(f, st);
	top_frame__arrange(f, o);
}
