// SPDX-License-Identifier: MIT
/* obsctl top's --batch text and --json frames (see top_batch.h). */
#include <stdio.h>
#include "cli/top_batch.h"
#include "cli/top_text.h"

#define TOP_LOOP_SVC_W	20	/* service column of the LOOP section */

/* The LOOP section: one line per worker, worst first. */
static void print_loops(const struct top_frame *f)
{
	char p99[TOP_CELL_MAX];

	if (!f->n_loops)
		return;
	printf("LOOP %-*s %8s %9s %8s %10s\n", TOP_LOOP_SVC_W, "SERVICE", "PID", "P99ms",
	       "BLOCKED", "ITERATIONS");
	for (int i = 0; i < f->n_loops; i++) {
		const struct loop_view *v = &f->loops[i];

		top_fmt_ms(p99, sizeof(p99), v->iterations, v->p99_ms);
		printf("     %-*s %8u %9s %8llu %10llu\n", TOP_LOOP_SVC_W, v->w->service, v->w->pid,
		       p99, (unsigned long long)v->blocked, (unsigned long long)v->iterations);
	}
	putchar('\n');
}

static void print_text(const struct top_batch *b)
{
	const struct top_frame *f = b->f;
	struct top_layout L;
	struct top_line l;

	top_layout__full(&L, f);
	top_line__reset(&l);
	top_text__head_title(&l, f, b->o, true);
	puts(l.s);
	top_line__reset(&l);
	top_text__head_totals(&l, f, b->m);
	puts(l.s);
	top_line__reset(&l);
	top_text__head_system(&l, f, b->m, b->st);
	puts(l.s);
	top_line__reset(&l);
	top_text__title(&l, &L);
	puts(l.s);
	for (int i = 0; i < f->n; i++) {
		top_line__reset(&l);
		top_text__row(&l, f->shown[i], &L);
		puts(l.s);
	}
	putchar('\n');
	print_loops(f);
}

/* A number, or null when there is none. */
static void json_opt(struct jbuf *jb, const char *key, bool have, double v)
{
	if (have) {
		jb_dbl(jb, key, v);
	} else {
		jb_key(jb, key);
		jb_raw(jb, "null", 4);
	}
}

static void row_json(const struct top_row_view *v, struct jbuf *jb)
{
	bool have = v->win_requests;

	jb_obj_open(jb);
	jb_str(jb, "service", v->r->service);
	jb_str(jb, "method", v->r->method);
	jb_str(jb, "route", v->r->route);
	jb_u64(jb, "requests", v->requests);
	jb_u64(jb, "window_requests", v->win_requests);
	jb_dbl(jb, "rps", v->rps);
	json_opt(jb, "p50_ms", have, v->p50);
	json_opt(jb, "p90_ms", have, v->p90);
	json_opt(jb, "p99_ms", have, v->p99);
	json_opt(jb, "max_ms", have, v->max);
	jb_dbl(jb, "error_pct", v->err_pct);
	jb_u64(jb, "in_flight", v->in_flight);
	jb_dbl(jb, "bytes_per_s", v->bps);
	jb_obj_close(jb);
}

/* p99_ms: upper bound of the log2 bucket holding the 99th percentile; null: no iteration. */
static void loop_json(const struct loop_view *v, struct jbuf *jb)
{
	jb_obj_open(jb);
	jb_str(jb, "service", v->w->service);
	jb_u64(jb, "worker", v->w->pid);
	json_opt(jb, "p99_ms", v->iterations, v->p99_ms);
	jb_u64(jb, "blocked_in_window", v->blocked);
	jb_u64(jb, "iterations_in_window", v->iterations);
	jb_obj_close(jb);
}

/* The frame's totals and settings: the members before "rows". */
static void head_json(const struct top_batch *b, struct jbuf *jb)
{
	const struct top_frame *f = b->f;
	const struct top_opts *o = b->o;

	jb_u64(jb, "time", f->when);
	jb_str(jb, "mode", o->daemon ? "daemon" : "standalone");
	if (o->daemon)
		jb_str(jb, "daemon", o->daemon);
	jb_u64(jb, "window_s", o->window);
	jb_dbl(jb, "span_s", f->span);
	jb_dbl(jb, "interval_s", o->interval);
	jb_str(jb, "sort", top_cols[o->sort].name);
	jb_str(jb, "filter", o->filter);
	jb_u64(jb, "requests", f->requests);
	jb_dbl(jb, "rps", f->rps);
	jb_dbl(jb, "error_pct", f->err_pct);
	jb_u64(jb, "in_flight", f->in_flight);
	jb_dbl(jb, "bytes_per_s", f->bps);
	jb_u64(jb, "observed_processes", b->st->processes);
	jb_u64(jb, "events_lost", b->st->events_lost);
	json_opt(jb, "obsctl_cpu_pct", f->cpu_ctl >= 0, f->cpu_ctl);
	json_opt(jb, "obsd_cpu_pct", f->cpu_obsd >= 0, f->cpu_obsd);
	jb_u64(jb, "row_count", f->n_all);
	jb_u64(jb, "overflow_requests", b->m->overflow);
	jb_u64(jb, "late_requests", b->m->late);
	if (b->st->err[0])
		jb_str(jb, "error", b->st->err);
}

static void print_json(const struct top_batch *b)
{
	const struct top_frame *f = b->f;
	struct jbuf *jb = b->jb;

	jb_reset(jb);
	jb_obj_open(jb);
	head_json(b, jb);
	jb_arr_open(jb, "rows");
	for (int i = 0; i < f->n; i++)
		row_json(f->shown[i], jb);
	jb_arr_close(jb);
	jb_arr_open(jb, "loops");
	for (int i = 0; i < f->n_loops; i++)
		loop_json(&f->loops[i], jb);
	jb_arr_close(jb);
	if (b->ls->untracked)
		jb_u64(jb, "loop_workers_untracked", b->ls->untracked);
	jb_obj_close(jb);
	if (!jb->oom)
		printf("%s\n", jb->buf);
}

void top_batch__print(const struct top_batch *b)
{
	if (b->o->json)
		print_json(b);
	else
		print_text(b);
	fflush(stdout);
}
