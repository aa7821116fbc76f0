// SPDX-License-Identifier: MIT
/* obsctl top's rows and their sliding windows (see top_model.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/top_model.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The rank (1..count) of quantile q among count values: ceil(q * count). */
static uint64_t rank_of(double q, uint64_t count)
{
	uint64_t r = (uint64_t)ceil(q * count - 1e-9);

	return r < 1 ? 1 : r > count ? count : r;
}

/* Values (us) at quantiles q[0..n-1] (ascending) of the count values in h; 0 if none. */
static void quantiles(const uint32_t *h, uint64_t count, const double *q, double *out, int n)
{
	uint64_t seen = 0;
	unsigned i;
	int k = 0;

	for (i = 0; i < LH_BUCKETS && k < n && count; i++) {
		seen += h[i];
		while (k < n && seen >= rank_of(q[k], count))
			out[k++] = lh_mid(i);
	}
	while (k < n)
		out[k++] = 0;
}

/* Forget a second: its histogram leaves the window's. */
static void slot__drop(struct top_row *r, struct top_slot *sl)
{
	for (uint32_t i = 0; i < sl->hist.len; i++) {
		r->hist[sl->hist.idx[i]] -= sl->hist.n[i];
		r->hist_n -= sl->hist.n[i];
	}
	lhist__clear(&sl->hist);
	sl->used = false;
	sl->requests = sl->errors = sl->bytes = sl->max_us = 0;
}

static void row__count_status(struct top_row *r, int code, uint64_t n)
{
	for (int i = 0; i < r->n_status; i++) {
		if (r->status[i].code == code) {
			r->status[i].n += n;
			return;
		}
	}
	if (r->n_status == TOP_STATUS_MAX)
		r->status_other += n;
	else
		r->status[r->n_status++] = (struct top_status){ .code = code, .n = n };
}

/* Keep s among the slowest of the window: in a free entry, or instead of the
 * fastest kept one when s is slower. */
static void row__note_slow(struct top_row *r, const struct top_slow *s)
{
	int fastest = 0;

	if (r->n_slow < TOP_SLOWEST) {
		r->slow[r->n_slow++] = *s;
		return;
	}
	for (int i = 1; i < r->n_slow; i++)
		if (r->slow[i].dur_us < r->slow[fastest].dur_us)
			fastest = i;
	if (r->slow[fastest].dur_us < s->dur_us)
		r->slow[fastest] = *s;
}

/* The slot of second sec, emptied first when it still holds an older second. */
static struct top_slot *row__slot(struct top_row *r, uint64_t sec, int window)
{
	struct top_slot *sl = &r->slots[sec % window];

	if (sl->used && sl->sec != sec)
		slot__drop(r, sl);
	sl->used = true;
	sl->sec = sec;
	return sl;
}

/* The gain's durations into the slot and the window's histogram. */
static void row__add_bins(struct top_model *m, struct top_row *r, struct top_slot *sl,
			  const struct top_gain *g)
{
	for (uint32_t i = 0; i < g->n_bins; i++) {
		if (g->idx[i] >= LH_BUCKETS || lhist__add(&sl->hist, g->idx[i], g->n[i])) {
			m->oom += g->n[i];
			continue;
		}
		r->hist[g->idx[i]] += g->n[i];
		r->hist_n += g->n[i];
	}
}

static void row__gain(struct top_model *m, struct top_row *r, const struct top_gain *g)
{
	struct top_slot *sl;

	r->requests += g->requests;
	r->errors += g->errors;
	if (g->sec + m->window <= m->now_sec) {
		m->late += g->requests;
		return;
	}
	sl = row__slot(r, g->sec, m->window);
	sl->requests += g->requests;
	sl->errors += g->errors;
	sl->bytes += g->bytes;
	if (g->max_us > sl->max_us)
		sl->max_us = g->max_us;
	row__add_bins(m, r, sl, g);
	if (g->slow)
		row__note_slow(r, g->slow);
}

/* Drop the seconds (and slow requests) that left the window. */
static void row__expire(struct top_row *r, uint64_t now_sec, int window)
{
	for (int i = 0; i < window; i++)
		if (r->slots[i].used && r->slots[i].sec + window <= now_sec)
			slot__drop(r, &r->slots[i]);
	for (int i = 0; i < r->n_slow;) {
		if (r->slow[i].sec + window <= now_sec)
			r->slow[i] = r->slow[--r->n_slow];
		else
			i++;
	}
}

/* s into out (size n), cut to fit; "-" for an empty s. */
static void copy_or_dash(char *out, size_t n, const char *s)
{
	snprintf(out, n, "%s", s && s[0] ? s : "-");
}

static struct top_row *row__new(int window, const char *svc, const char *method,
				const char *route)
{
	struct top_row *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->slots = calloc(window, sizeof(*r->slots));
	if (!r->slots) {
		free(r);
		return NULL;
	}
	copy_or_dash(r->service, sizeof(r->service), svc);
	copy_or_dash(r->method, sizeof(r->method), method);
	copy_or_dash(r->route, sizeof(r->route), route);
	return r;
}

static void row__free(struct top_row *r, int window)
{
	if (!r)
		return;
	for (int i = 0; i < window; i++)
		lhist__free(&r->slots[i].hist);
	free(r->slots);
	free(r);
}

void top_model__init(struct top_model *m, int window)
{
	memset(m, 0, sizeof(*m));
	m->window = window;
	for (int i = 0; i < TOP_HASH_SIZE; i++)
		m->hash[i] = -1;
}

void top_model__free(struct top_model *m)
{
	for (int i = 0; i < m->n_rows; i++)
		row__free(m->rows[i], m->window);
	top_model__init(m, m->window);
}

/* The names as a row shows them: "-" for an empty one, cut to fit. */
struct row_key {
	char service[SERVICE_NAME_MAX];
	char method[H1_METHOD_MAX];
	char route[ROUTE_LEN_MAX];
};

static void row_key(struct row_key *k, const char *svc, const char *method, const char *route)
{
	copy_or_dash(k->service, sizeof(k->service), svc);
	copy_or_dash(k->method, sizeof(k->method), method);
	copy_or_dash(k->route, sizeof(k->route), route);
}

static uint32_t row_hash(const struct row_key *k)
{
	const char *parts[] = { k->service, k->method, k->route };
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
		for (const char *c = parts[i]; *c; c++)
			h = (h ^ (uint8_t)*c) * 16777619u;
		h = (h ^ 0x1f) * 16777619u;
	}
	return h & (TOP_HASH_SIZE - 1);
}

/* The row of (svc, method, route), made on first use; NULL when the model is full. */
static struct top_row *model__row(struct top_model *m, const char *svc, const char *method,
				  const char *route)
{
	struct row_key k;
	struct top_row *r;
	uint32_t h;

	row_key(&k, svc, method, route);
	h = row_hash(&k);
	for (int i = m->hash[h]; i >= 0; i = m->rows[i]->next) {
		r = m->rows[i];
		if (!strcmp(r->route, k.route) && !strcmp(r->method, k.method) &&
		    !strcmp(r->service, k.service))
			return r;
	}
	if (m->n_rows == TOP_MAX_ROWS)
		return NULL;
	r = row__new(m->window, k.service, k.method, k.route);
	if (!r)
		return NULL;
	r->next = m->hash[h];
	m->hash[h] = m->n_rows;
	m->rows[m->n_rows++] = r;
	return r;
}

void top_model__gain(struct top_model *m, const struct top_gain *g)
{
	struct top_row *r;

	m->requests += g->requests;
	if (g->sec > m->now_sec)
		m->now_sec = g->sec;
	r = model__row(m, g->service, g->method, g->route);
	if (!r)
		m->overflow += g->requests;
	else
		row__gain(m, r, g);
}

void top_model__status(struct top_model *m, const char *service, const char *method,
		       const char *route, int code, uint64_t n)
{
	struct top_row *r = model__row(m, service, method, route);

	if (r)
		row__count_status(r, code, n);
}

void top_model__advance(struct top_model *m, uint64_t now_ns)
{
	if (!m->start_ns)
		m->start_ns = now_ns;
	m->now_ns = now_ns;
	if (now_ns / TOP_NS_PER_S > m->now_sec)
		m->now_sec = now_ns / TOP_NS_PER_S;
	for (int i = 0; i < m->n_rows; i++)
		row__expire(m->rows[i], m->now_sec, m->window);
}

double top_model__span(const struct top_model *m)
{
	double span = m->window - 1 + (double)(m->now_ns % TOP_NS_PER_S) / TOP_NS_PER_S;
	double up = (double)(m->now_ns - m->start_ns) / TOP_NS_PER_S;

	if (up < span)
		span = up;
	return span < 1.0 ? 1.0 : span;
}

static double min_d(double a, double b)
{
	return a < b ? a : b;
}

void top_model__window(const struct top_model *m, const struct top_row *r,
		       struct top_row_window *w)
{
	static const double q[] = { 0.50, 0.90, 0.99 };
	double us[ARRAY_SIZE(q)];

	memset(w, 0, sizeof(*w));
	for (int i = 0; i < m->window; i++) {
		const struct top_slot *sl = &r->slots[i];

		if (!sl->used)
			continue;
		w->requests += sl->requests;
		w->errors += sl->errors;
		w->bytes += sl->bytes;
		if (sl->max_us > w->max_us)
			w->max_us = sl->max_us;
	}
	quantiles(r->hist, r->hist_n, q, us, ARRAY_SIZE(q));
	/* a quantile is its bucket's middle: never show it above the maximum */
	w->p50_us = min_d(us[0], w->max_us);
	w->p90_us = min_d(us[1], w->max_us);
	w->p99_us = min_d(us[2], w->max_us);
}
