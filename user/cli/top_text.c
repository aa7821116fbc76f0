// SPDX-License-Identifier: MIT
/* A frame of obsctl top as text (see top_text.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "cli/top_text.h"

#define TOP_METHOD_W		7	/* method column on a screen */
#define TOP_ROUTE_MIN_W		8	/* narrowest route column on a screen */
#define TOP_WHEN_MAX		32	/* a formatted time of day */
#define TOP_ITEM_MAX		(SERVICE_NAME_MAX + 2 * TOP_CELL_MAX + 16)	/* a worker on the loop line */

void top_line__reset(struct top_line *l)
{
	l->len = 0;
	l->s[0] = 0;
}

void top_line__add(struct top_line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->len + 1 >= sizeof(l->s))
		return;
	va_start(ap, fmt);
	n = vsnprintf(l->s + l->len, sizeof(l->s) - l->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->len = l->len + n < sizeof(l->s) ? l->len + n : sizeof(l->s) - 1;
}

void top_fmt_ms(char *out, size_t n, bool have, double ms)
{
	if (!have)
		snprintf(out, n, "-");
	else
		snprintf(out, n, ms < 10 ? "%.2f" : ms < 100 ? "%.1f" : "%.0f", ms);
}

void top_fmt_dur(char *out, size_t n, double us)
{
	if (us < 1000)
		snprintf(out, n, "%.0fus", us);
	else if (us < 1e6)
		snprintf(out, n, "%.2fms", us / 1000);
	else
		snprintf(out, n, "%.2fs", us / 1e6);
}

void top_fmt_bytes(char *out, size_t n, double b)
{
	static const char units[] = "KMGTP";
	int u = -1;

	while (b >= 1024 && u + 1 < (int)sizeof(units) - 1) {
		b /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(out, n, "%.0f", b);
	else
		snprintf(out, n, "%.1f%c", b, units[u]);
}

static void fmt_pct(char *out, size_t n, double pct)
{
	if (pct < 0)
		snprintf(out, n, "-");
	else
		snprintf(out, n, "%.1f%%", pct);
}

static void fmt_cell(char *out, size_t n, const struct top_row_view *v, enum top_col c)
{
	bool have = v->win_requests;

	switch (c) {
	case COL_REQS:
		snprintf(out, n, "%llu", (unsigned long long)v->requests);
		break;
	case COL_RPS:
		snprintf(out, n, v->rps < 10000 ? "%.1f" : "%.0f", v->rps);
		break;
	case COL_P50:
		top_fmt_ms(out, n, have, v->p50);
		break;
	case COL_P90:
		top_fmt_ms(out, n, have, v->p90);
		break;
	case COL_P99:
		top_fmt_ms(out, n, have, v->p99);
		break;
	case COL_MAX:
		top_fmt_ms(out, n, have, v->max);
		break;
	case COL_ERR:
		snprintf(out, n, have ? "%.1f" : "-", v->err_pct);
		break;
	case COL_INFL:
		snprintf(out, n, "%llu", (unsigned long long)v->in_flight);
		break;
	case COL_BYTES:
		top_fmt_bytes(out, n, v->bps);
		break;
	default:
		out[0] = 0;
	}
}

static int layout__numbers_w(const struct top_layout *L)
{
	int w = 0;

	for (int c = COL_REQS; c < COL_N; c++)
		if (c != COL_REQS || L->reqs)
			w += 1 + top_cols[c].width;
	return w;
}

static int max_i(int a, int b)
{
	return a > b ? a : b;
}

void top_layout__full(struct top_layout *L, const struct top_frame *f)
{
	L->svc_w = strlen("SERVICE");
	L->meth_w = strlen("METHOD");
	L->route_w = strlen("ROUTE");
	L->reqs = true;
	for (int i = 0; i < f->n; i++) {
		L->svc_w = max_i(L->svc_w, strlen(f->shown[i]->r->service));
		L->meth_w = max_i(L->meth_w, strlen(f->shown[i]->r->method));
		L->route_w = max_i(L->route_w, strlen(f->shown[i]->r->route));
	}
}

void top_layout__fit(struct top_layout *L, const struct top_frame *f, int ncols)
{
	int names;

	top_layout__full(L, f);
	L->reqs = ncols >= TOP_WIDE_COLS;
	names = ncols - layout__numbers_w(L) - 2;
	if (L->meth_w > TOP_METHOD_W)
		L->meth_w = TOP_METHOD_W;
	if (L->svc_w > names / 3)
		L->svc_w = max_i(names / 3, 1);
	L->route_w = max_i(names - L->svc_w - L->meth_w, TOP_ROUTE_MIN_W);
}

/* Cut src to w columns into out (size > w): the head, or for routes the tail; '~' marks a cut. */
static void fit(char *out, const char *src, int w, bool keep_tail)
{
	int len = strlen(src);

	if (len <= w) {
		memcpy(out, src, len + 1);
		return;
	}
	if (w < 1) {
		out[0] = 0;
		return;
	}
	if (keep_tail) {
		out[0] = '~';
		memcpy(out + 1, src + len - (w - 1), w - 1);
	} else {
		memcpy(out, src, w - 1);
		out[w - 1] = '~';
	}
	out[w] = 0;
}

void top_text__title(struct top_line *l, const struct top_layout *L)
{
	top_line__add(l, "%-*s %-*s %-*s", L->svc_w, "SERVICE", L->meth_w, "METHOD", L->route_w,
		      "ROUTE");
	for (int c = COL_REQS; c < COL_N; c++)
		if (c != COL_REQS || L->reqs)
			top_line__add(l, " %*s", top_cols[c].width, top_cols[c].title);
}

void top_text__row(struct top_line *l, const struct top_row_view *v, const struct top_layout *L)
{
	char svc[SERVICE_NAME_MAX], meth[H1_METHOD_MAX], route[ROUTE_LEN_MAX], cell[TOP_CELL_MAX];

	fit(svc, v->r->service, L->svc_w, false);
	fit(meth, v->r->method, L->meth_w, false);
	fit(route, v->r->route, L->route_w, true);
	top_line__add(l, "%-*s %-*s %-*s", L->svc_w, svc, L->meth_w, meth, L->route_w, route);
	for (int c = COL_REQS; c < COL_N; c++) {
		if (c == COL_REQS && !L->reqs)
			continue;
		fmt_cell(cell, sizeof(cell), v, c);
		top_line__add(l, " %*s", top_cols[c].width, cell);
	}
}

void top_text__head_title(struct top_line *l, const struct top_frame *f, const struct top_opts *o,
			  bool full_date)
{
	char when[TOP_WHEN_MAX];
	struct tm tm;

	localtime_r(&f->when, &tm);
	strftime(when, sizeof(when), full_date ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &tm);
	top_line__add(l, "obsctl top %s  sort %s%s  window %ds", when, top_cols[o->sort].name,
		      o->reverse ? " reversed" : "", o->window);
	if (f->span < o->window - 1)
		top_line__add(l, " (%.0fs so far)", f->span);
	top_line__add(l, "  every %gs  %s%s", o->interval, o->daemon ? "obsd " : "standalone",
		      o->daemon ? o->daemon : "");
}

void top_text__head_totals(struct top_line *l, const struct top_frame *f,
			   const struct top_model *m)
{
	char bytes[TOP_CELL_MAX];

	top_fmt_bytes(bytes, sizeof(bytes), f->bps);
	top_line__add(l, "requests %llu total, %.1f/s - errors %.1f%% - in flight %llu - %sB/s - "
		      "rows %d", (unsigned long long)f->requests, f->rps, f->err_pct,
		      (unsigned long long)f->in_flight, bytes, f->n_all);
	if (m->overflow)
		top_line__add(l, " (+%llu requests beyond %d rows)",
			      (unsigned long long)m->overflow, TOP_MAX_ROWS);
}

void top_text__head_system(struct top_line *l, const struct top_frame *f,
			   const struct top_model *m, const struct top_stats *st)
{
	char ctl[TOP_CELL_MAX], obsd[TOP_CELL_MAX];

	fmt_pct(ctl, sizeof(ctl), f->cpu_ctl);
	fmt_pct(obsd, sizeof(obsd), f->cpu_obsd);
	top_line__add(l, "processes %llu - events lost %llu - cpu obsctl %s obsd %s",
		      (unsigned long long)st->processes, (unsigned long long)st->events_lost, ctl,
		      obsd);
	if (m->late)
		top_line__add(l, " - late %llu", (unsigned long long)m->late);
	if (m->oom)
		top_line__add(l, " - out of memory %llu", (unsigned long long)m->oom);
	if (st->err[0])
		top_line__add(l, " - %s", st->err);
}

/* One worker on the loop line: "  svc/pid 262.14ms(2 blocked)". */
static void loop_item(char *out, size_t n, const struct loop_view *v)
{
	char dur[TOP_CELL_MAX], blk[TOP_CELL_MAX];

	top_fmt_dur(dur, sizeof(dur), v->p99_ms * 1000);
	blk[0] = 0;
	if (v->blocked)
		snprintf(blk, sizeof(blk), "(%llu blocked)", (unsigned long long)v->blocked);
	snprintf(out, n, "  %s/%u %s%s", v->w->service, v->w->pid, v->iterations ? dur : "-", blk);
}

void top_text__head_loops(struct top_line *l, const struct top_frame *f, int w)
{
	char item[TOP_ITEM_MAX], more[TOP_CELL_MAX];
	int active = 0, shown = 0;

	for (int i = 0; i < f->n_loops; i++)
		active += f->loops[i].iterations || f->loops[i].blocked;
	top_line__add(l, "loop p99");
	if (!active) {
		top_line__add(l, "  (no event-loop iteration in the window)");
		return;
	}
	for (int i = 0; i < f->n_loops; i++) {
		const struct loop_view *v = &f->loops[i];

		if (!v->iterations && !v->blocked)
			continue;
		loop_item(item, sizeof(item), v);
		snprintf(more, sizeof(more), "  +%d", active - shown - 1);
		if ((int)(l->len + strlen(item) + (shown + 1 < active ? strlen(more) : 0)) > w) {
			snprintf(more, sizeof(more), "  +%d", active - shown);
			if ((int)(l->len + strlen(more)) <= w)
				top_line__add(l, "%s", more);
			break;
		}
		top_line__add(l, "%s", item);
		shown++;
	}
}
