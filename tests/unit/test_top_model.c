// SPDX-License-Identifier: MIT
/*
 * Unit tests of obsctl top's model (user/cli/top_model.c) and loop windows
 * (user/cli/top_loops.c): gains land in their second and leave the window with
 * it; percentiles are the middles of the right buckets and never above the
 * maximum; a poll's difference (many buckets at once) counts like the
 * requests one by one; late gains count in totals only; status codes beyond
 * the distinct maximum are "other"; the slowest requests kept are the
 * slowest; rows beyond TOP_MAX_ROWS are counted, not made; a worker's loop
 * iterations over the window are the difference with the oldest report in
 * it, and totals going backwards start the worker over. main() returns 1
 * if any check failed.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/top_loops.h"
#include "cli/top_model.h"
#include "check.h"

#define WINDOW		10
#define T0		1000	/* the first second of every case */

#define CHECK_D(a, b)                                                                 \
	check((a) == (b), __FILE__, __LINE__, "%s == %s: %g != %g", #a, #b, (double)(a), \
	      (double)(b))

static uint64_t ns(uint64_t sec)
{
	return sec * TOP_NS_PER_S;
}

/* One request of `us` microseconds on row (svc, GET, route) in second sec. */
static void one(struct top_model *m, const char *route, uint64_t sec, uint64_t us, bool error)
{
	uint16_t idx = lh_index(us);
	uint64_t n = 1;
	struct top_slow slow = { .dur_us = us, .sec = sec };
	struct top_gain g = {
		.service = "svc", .method = "GET", .route = route, .sec = sec, .requests = 1,
		.errors = error, .bytes = 10, .max_us = us, .idx = &idx, .n = &n, .n_bins = 1,
		.slow = &slow,
	};

	top_model__gain(m, &g);
}

static const struct top_row *row_of(const struct top_model *m, const char *route)
{
	for (int i = 0; i < m->n_rows; i++)
		if (!strcmp(m->rows[i]->route, route))
			return m->rows[i];
	return NULL;
}

/* 1..100 us: p50 is 50 exactly, p99 the middle of 99's bucket [98, 99]. */
static void test_quantiles(void)
{
	struct top_model m;
	struct top_row_window w;
	const struct top_row *r;

	begin("quantiles");
	top_model__init(&m, WINDOW);
	top_model__advance(&m, ns(T0));
	for (uint64_t us = 1; us <= 100; us++)
		one(&m, "/a", T0, us, us % 10 == 0);
	r = row_of(&m, "/a");
	CHECK(r != NULL);
	top_model__window(&m, r, &w);
	CHECK_U(w.requests, 100);
	CHECK_U(w.errors, 10);
	CHECK_U(w.bytes, 1000);
	CHECK_U(w.max_us, 100);
	CHECK_D(w.p50_us, 50.0);
	CHECK_D(w.p99_us, 98.5);
	CHECK_U(r->n_slow, TOP_SLOWEST);
	for (int i = 0; i < r->n_slow; i++)
		CHECK(r->slow[i].dur_us > 100 - TOP_SLOWEST);
	top_model__free(&m);
}

/* A poll's difference, many buckets at once, equals the requests one by one. */
static void test_gain_bins(void)
{
	uint16_t idx[] = { lh_index(5), lh_index(700), lh_index(90000) };
	uint64_t n[] = { 3, 5, 2 };
	struct top_gain g = {
		.service = "", .method = "GET", .route = "/b", .sec = T0, .requests = 10,
		.errors = 2, .bytes = 100, .max_us = lh_upper(idx[2]), .idx = idx, .n = n,
		.n_bins = 3,
	};
	struct top_model a, b;
	struct top_row_window wa, wb;

	begin("gain_bins");
	top_model__init(&a, WINDOW);
	top_model__init(&b, WINDOW);
	top_model__advance(&a, ns(T0));
	top_model__advance(&b, ns(T0));
	top_model__gain(&a, &g);
	for (int i = 0; i < 3; i++)
		for (uint64_t k = 0; k < n[i]; k++)
			one(&b, "/b", T0, lh_upper(idx[i]), false);
	CHECK_U(a.n_rows, 1);
	CHECK(!strcmp(a.rows[0]->service, "-"));	/* an empty name shows as "-" */
	top_model__window(&a, a.rows[0], &wa);
	top_model__window(&b, b.rows[0], &wb);
	CHECK_U(wa.requests, wb.requests);
	CHECK_D(wa.p50_us, wb.p50_us);
	CHECK_D(wa.p90_us, wb.p90_us);
	CHECK(wa.p99_us <= wa.max_us);
	CHECK_U(a.rows[0]->hist_n, 10);
	CHECK_U(wa.max_us, wb.max_us);
	top_model__free(&a);
	top_model__free(&b);
}

/* A second leaves the window WINDOW seconds later; older gains count in totals only. */
static void test_window(void)
{
	struct top_model m;
	struct top_row_window w;
	const struct top_row *r;

	begin("window");
	top_model__init(&m, WINDOW);
	top_model__advance(&m, ns(T0));
	one(&m, "/w", T0, 1000, false);
	one(&m, "/w", T0 + 1, 3000, false);
	top_model__advance(&m, ns(T0 + WINDOW - 1));
	r = row_of(&m, "/w");
	top_model__window(&m, r, &w);
	CHECK_U(w.requests, 2);
	CHECK_U(w.max_us, 3000);
	top_model__advance(&m, ns(T0 + WINDOW));
	top_model__window(&m, r, &w);
	CHECK_U(w.requests, 1);
	CHECK_U(r->hist_n, 1);
	CHECK_U(r->n_slow, 1);
	one(&m, "/w", T0, 500, false);	/* left the window already */
	CHECK_U(m.late, 1);
	CHECK_U(r->requests, 3);
	top_model__advance(&m, ns(T0 + 2 * WINDOW));
	top_model__window(&m, r, &w);
	CHECK_U(w.requests, 0);
	CHECK_U(r->hist_n, 0);
	CHECK_D(w.p99_us, 0.0);
	CHECK_D(top_model__span(&m), WINDOW - 1.0);
	top_model__free(&m);
}

static void test_status(void)
{
	struct top_model m;
	const struct top_row *r;

	begin("status");
	top_model__init(&m, WINDOW);
	for (int code = 0; code < TOP_STATUS_MAX + 3; code++)
		top_model__status(&m, "svc", "GET", "/s", 200 + code, 2);
	top_model__status(&m, "svc", "GET", "/s", 200, 5);
	r = row_of(&m, "/s");
	CHECK_U(r->n_status, TOP_STATUS_MAX);
	CHECK_U(r->status[0].n, 7);
	CHECK_U(r->status_other, 3 * 2);
	top_model__free(&m);
}

static void test_rows_bounded(void)
{
	struct top_model m;
	char route[32];

	begin("rows_bounded");
	top_model__init(&m, WINDOW);
	top_model__advance(&m, ns(T0));
	for (int i = 0; i < TOP_MAX_ROWS + 5; i++) {
		snprintf(route, sizeof(route), "/r%d", i);
		one(&m, route, T0, 10, false);
	}
	one(&m, "/r0", T0, 10, false);
	CHECK_U(m.n_rows, TOP_MAX_ROWS);
	CHECK_U(m.overflow, 5);
	CHECK_U(m.requests, TOP_MAX_ROWS + 6);
	CHECK_U(row_of(&m, "/r0")->requests, 2);
	top_model__free(&m);
}

/* Totals at T0, T0+1 .. : the window's iterations are the newest less the
 * oldest report in the window; p99 is the upper bound of its log2 bucket. */
static void test_loops(void)
{
	uint64_t b[OBS_LOOP_BUCKETS] = {};
	struct loop_view v[TOP_LOOPS_MAX];
	struct top_loops ls;
	int n;

	begin("loops");
	top_loops__init(&ls, WINDOW);
	for (int s = 0; s <= WINDOW + 2; s++) {
		b[3] += 100;		/* [8, 16) us */
		b[17] += s == WINDOW + 2;	/* one 131 ms iteration in the last second */
		top_loops__report(&ls, 42, "svc", s == WINDOW + 2, b, T0 + s);
	}
	n = top_loops__views(&ls, T0 + WINDOW + 2, v);
	CHECK_U(n, 1);
	CHECK_U(v[0].iterations, WINDOW * 100 + 1);	/* since the report of T0 + 2 */
	CHECK_U(v[0].blocked, 1);
	CHECK_D(v[0].p99_ms, 0.016);
	b[3] = 0;			/* went backwards: the pid was reused */
	top_loops__report(&ls, 42, "svc", 0, b, T0 + WINDOW + 3);
	n = top_loops__views(&ls, T0 + WINDOW + 3, v);
	CHECK_U(n, 1);
	CHECK_U(v[0].iterations, 0);
	CHECK_U(top_loops__views(&ls, T0 + 3 * WINDOW, v), 0);
	top_loops__free(&ls);
}

int main(void)
{
	test_quantiles();
	test_gain_bins();
	test_window();
	test_status();
	test_rows_bounded();
	test_loops();
	printf("test_top_model: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
