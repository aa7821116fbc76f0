// SPDX-License-Identifier: MIT
/*
 * obsctl top — the live latency table (see top.h). In this file, in order:
 * the log-linear histogram; rows and the row table; samples (one finished
 * request, from a record or from obsd's JSON); a small JSON reader and HTTP
 * client for --daemon; the two sources; frames (rates and percentiles of
 * every row, sorted and filtered); text and JSON output; the ncurses screens
 * and their keys; options and the main loops.
 */
#include <ctype.h>
#include <curses.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <locale.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include "ids.h"
#include "json.h"
#include "log.h"
#include "pipeline.h"
#include "top.h"

#define NS_PER_S		1000000000ull
#define NS_PER_MS		1000000ull
#define TOP_WINDOW_DEFAULT	10	/* seconds of the sliding window */
#define TOP_WINDOW_MIN		2
#define TOP_WINDOW_MAX		300
#define TOP_INTERVAL_DEFAULT	1.0	/* seconds between frames */
#define TOP_INTERVAL_MIN	0.1
#define TOP_INTERVAL_MAX	3600.0
#define TOP_POLL_MS		50	/* longest wait between ring-buffer drains */
#define TOP_TICK_NS		NS_PER_S	/* pipeline housekeeping period */
#define TOP_MAX_ROWS		1000	/* (service, method, route) rows; more are counted */
#define TOP_HASH_SIZE		2048	/* power of two, > TOP_MAX_ROWS */
#define TOP_SERVICES_MAX	64	/* services with an in-flight gauge */
#define TOP_SLOWEST		10	/* slowest recent requests kept per row */
#define TOP_STATUS_MAX		16	/* distinct status codes per row; more are "other" */
#define TOP_PATH_SHOW		128	/* path bytes kept for a slow request */
#define TOP_TRACE_HEX		33	/* 32 hex digits and NUL */
#define TOP_FILTER_MAX		64
#define TOP_BINS_INIT		8	/* first size of a second's sparse histogram */
#define TOP_LINE_MAX		2048	/* one formatted output line */
#define TOP_METHOD_W		7	/* method column on a screen */
#define TOP_ROUTE_MIN_W		8	/* narrowest route column on a screen */
#define TOP_WIDE_COLS		100	/* from this width the screen also shows REQS */
#define TOP_MIN_COLS		40	/* smaller terminals get a notice only */
#define TOP_MIN_LINES		10
#define TOP_HEAD_LINES		5	/* screen lines above the table rows */
#define TOP_BARS_MAX		16	/* histogram bars in the detail view */
#define TOP_STATUS_SHOW		8	/* status-code lines in the detail view */
#define TOP_LABEL_W		22	/* "  12.34ms -   13.00ms " */
#define TOP_ESC_DELAY_MS	25	/* wait for the rest of an escape sequence */
#define TOP_ERR_MAX		160	/* last problem talking to obsd */
#define TOP_DAEMON_DEFAULT	"127.0.0.1:9464"
#define TOP_DAEMON_LIMIT	100000	/* records asked for per poll */
#define TOP_HTTP_TIMEOUT_S	5
#define TOP_HTTP_CHUNK		65536
#define TOP_HTTP_MAX		(256u << 20)	/* largest obsd answer read */
#define TOP_HOST_MAX		256
#define JR_DEPTH_MAX		32	/* JSON nesting skipped before giving up */
#define JR_KEY_MAX		64
#define JR_NUM_MAX		40
#define KEY_ESC			27
#define KEY_DEL			127
#define KEY_CTRL_H		8

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static volatile sig_atomic_t top_stop;	/* set by SIGINT/SIGTERM */

static void on_signal(int sig)
{
	top_stop = 1;
}

/* ---- log-linear latency histogram (microseconds) ---------------------------
 * Values below 2 * LH_SUB have a bucket each; above, every power of two is cut
 * into LH_SUB equal buckets, so a bucket's midpoint is within 1/(2 * LH_SUB)
 * of any value in it. */

#define LH_SUB_BITS	5
#define LH_SUB		(1u << LH_SUB_BITS)
#define LH_MAX_BITS	32	/* values up to 2^32-1 us (71 min); larger are clamped */
#define LH_BUCKETS	((LH_MAX_BITS - LH_SUB_BITS + 1) * LH_SUB)

static unsigned lh_index(uint64_t us)
{
	unsigned shift;

	if (us >= 1ull << LH_MAX_BITS)
		us = (1ull << LH_MAX_BITS) - 1;
	if (us < 2 * LH_SUB)
		return us;
	shift = 63 - __builtin_clzll(us) - LH_SUB_BITS;
	return shift * LH_SUB + (us >> shift);
}

static uint64_t lh_width(unsigned i)
{
	return i < 2 * LH_SUB ? 1 : 1ull << (i / LH_SUB - 1);
}

static uint64_t lh_lower(unsigned i)
{
	if (i < 2 * LH_SUB)
		return i;
	return (uint64_t)(i % LH_SUB + LH_SUB) << (i / LH_SUB - 1);
}

static double lh_mid(unsigned i)
{
	return lh_lower(i) + (lh_width(i) - 1) / 2.0;
}

/* Values (us) at quantiles q[0..n-1] (ascending) of the count values in h; 0 if none. */
static void lh_quantiles(const uint32_t *h, uint64_t count, const double *q, double *out, int n)
{
	uint64_t seen = 0;
	unsigned i;
	int k = 0;

	for (i = 0; i < LH_BUCKETS && k < n && count; i++) {
		seen += h[i];
		while (k < n && seen >= (uint64_t)(q[k] * count + 0.999999) && seen)
			out[k++] = lh_mid(i);
	}
	while (k < n)
		out[k++] = 0;
}

/* ---- rows ------------------------------------------------------------------ */

/* One finished request as top needs it, whichever source it came from. */
struct sample {
	uint64_t sec;			/* second it completed, on the table's clock */
	uint64_t wall_ns;		/* its start, epoch ns */
	uint64_t dur_us;
	uint64_t bytes;			/* request + response bytes */
	int status;			/* 0: no response head */
	bool failed;			/* no complete response */
	char service[SERVICE_NAME_MAX];
	char method[H1_METHOD_MAX];
	char route[ROUTE_LEN_MAX];
	char path[TOP_PATH_SHOW];
	char request_id[H1_REQID_MAX];
	char trace_id[TOP_TRACE_HEX];
};

static bool sample__is_error(const struct sample *s)
{
	return s->failed || s->status >= 500;
}

struct hbin {
	uint16_t idx;			/* histogram bucket */
	uint32_t n;
};

/* One second of a row's window: what leaves the window with it. */
struct slot {
	bool used;
	uint64_t sec;			/* the second it holds */
	uint64_t requests, errors, bytes, max_us;
	struct hbin *bins;		/* that second's histogram, sparse, owned */
	uint32_t n_bins, cap_bins;
};

struct slow_req {
	uint64_t dur_us, sec, wall_ns;
	int status;
	char request_id[H1_REQID_MAX];
	char trace_id[TOP_TRACE_HEX];
	char path[TOP_PATH_SHOW];
};

struct status_count {
	int code;
	uint64_t n;
};

struct row {
	char service[SERVICE_NAME_MAX];
	char method[H1_METHOD_MAX];
	char route[ROUTE_LEN_MAX];
	int next;			/* next row of its hash chain, -1: none */
	uint64_t requests, errors;	/* since top started */
	uint32_t hist[LH_BUCKETS];	/* the window's histogram: the slots' summed */
	uint64_t hist_n;
	struct slot *slots;		/* [window], second s in slots[s % window], owned */
	struct status_count status[TOP_STATUS_MAX];	/* since top started */
	int n_status;
	uint64_t status_other;		/* codes beyond TOP_STATUS_MAX distinct ones */
	struct slow_req slow[TOP_SLOWEST];	/* slowest in the window, unordered */
	int n_slow;
};

struct table {
	int window;			/* seconds */
	uint64_t start_ns, now_ns;	/* the source's clock: first and last advance */
	uint64_t now_sec;
	struct row *rows[TOP_MAX_ROWS];	/* owned */
	int n_rows;
	int hash[TOP_HASH_SIZE];	/* first row of each chain, -1: none */
	uint64_t requests;		/* every sample, shown or not */
	uint64_t overflow;		/* samples of rows beyond TOP_MAX_ROWS */
	uint64_t late;			/* samples older than the window: totals only */
	uint64_t oom;			/* samples kept out of the window for lack of memory */
};

static void slot__drop(struct row *r, struct slot *sl)
{
	for (uint32_t i = 0; i < sl->n_bins; i++) {
		r->hist[sl->bins[i].idx] -= sl->bins[i].n;
		r->hist_n -= sl->bins[i].n;
	}
	sl->n_bins = 0;
	sl->used = false;
	sl->requests = sl->errors = sl->bytes = sl->max_us = 0;
}

/* Count one value of bucket idx; false (nothing counted) without memory. */
static bool slot__count(struct slot *sl, unsigned idx)
{
	struct hbin *b;
	uint32_t cap;

	for (uint32_t i = 0; i < sl->n_bins; i++) {
		if (sl->bins[i].idx == idx) {
			sl->bins[i].n++;
			return true;
		}
	}
	if (sl->n_bins == sl->cap_bins) {
		cap = sl->cap_bins ? sl->cap_bins * 2 : TOP_BINS_INIT;
		b = realloc(sl->bins, cap * sizeof(*b));
		if (!b)
			return false;
		sl->bins = b;
		sl->cap_bins = cap;
	}
	sl->bins[sl->n_bins++] = (struct hbin){ .idx = idx, .n = 1 };
	return true;
}

static void row__count_status(struct row *r, int code)
{
	for (int i = 0; i < r->n_status; i++) {
		if (r->status[i].code == code) {
			r->status[i].n++;
			return;
		}
	}
	if (r->n_status == TOP_STATUS_MAX)
		r->status_other++;
	else
		r->status[r->n_status++] = (struct status_count){ .code = code, .n = 1 };
}

/* Keep s among the slowest of the window: in a free entry, or instead of the
 * fastest kept one when s is slower. */
static void row__note_slow(struct row *r, const struct sample *s)
{
	struct slow_req *e;
	int fastest = 0;

	if (r->n_slow < TOP_SLOWEST) {
		e = &r->slow[r->n_slow++];
	} else {
		for (int i = 1; i < r->n_slow; i++)
			if (r->slow[i].dur_us < r->slow[fastest].dur_us)
				fastest = i;
		if (r->slow[fastest].dur_us >= s->dur_us)
			return;
		e = &r->slow[fastest];
	}
	e->dur_us = s->dur_us;
	e->sec = s->sec;
	e->wall_ns = s->wall_ns;
	e->status = s->status;
	snprintf(e->request_id, sizeof(e->request_id), "%s", s->request_id);
	snprintf(e->trace_id, sizeof(e->trace_id), "%s", s->trace_id);
	snprintf(e->path, sizeof(e->path), "%s", s->path);
}

static void row__add(struct table *t, struct row *r, const struct sample *s)
{
	unsigned idx = lh_index(s->dur_us);
	struct slot *sl;

	r->requests++;
	r->errors += sample__is_error(s);
	row__count_status(r, s->status);
	if (s->sec + t->window <= t->now_sec) {
		t->late++;
		return;
	}
	sl = &r->slots[s->sec % t->window];
	if (sl->used && sl->sec != s->sec)
		slot__drop(r, sl);
	if (!slot__count(sl, idx)) {
		t->oom++;
		return;
	}
	sl->used = true;
	sl->sec = s->sec;
	sl->requests++;
	sl->errors += sample__is_error(s);
	sl->bytes += s->bytes;
	if (s->dur_us > sl->max_us)
		sl->max_us = s->dur_us;
	r->hist[idx]++;
	r->hist_n++;
	row__note_slow(r, s);
}

/* Drop the seconds (and slow requests) that left the window. */
static void row__expire(struct row *r, uint64_t now_sec, int window)
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

static struct row *row__new(int window, const char *svc, const char *method, const char *route)
{
	struct row *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->slots = calloc(window, sizeof(*r->slots));
	if (!r->slots) {
		free(r);
		return NULL;
	}
	snprintf(r->service, sizeof(r->service), "%s", svc);
	snprintf(r->method, sizeof(r->method), "%s", method);
	snprintf(r->route, sizeof(r->route), "%s", route);
	return r;
}

static void row__free(struct row *r, int window)
{
	if (!r)
		return;
	for (int i = 0; i < window; i++)
		free(r->slots[i].bins);
	free(r->slots);
	free(r);
}

static void table__init(struct table *t, int window)
{
	memset(t, 0, sizeof(*t));
	t->window = window;
	for (int i = 0; i < TOP_HASH_SIZE; i++)
		t->hash[i] = -1;
}

static void table__free(struct table *t)
{
	for (int i = 0; i < t->n_rows; i++)
		row__free(t->rows[i], t->window);
	t->n_rows = 0;
}

static uint32_t row_hash(const char *svc, const char *method, const char *route)
{
	const char *parts[] = { svc, method, route };
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
		for (const char *c = parts[i]; *c; c++)
			h = (h ^ (uint8_t)*c) * 16777619u;
		h = (h ^ 0x1f) * 16777619u;
	}
	return h & (TOP_HASH_SIZE - 1);
}

/* The row of (svc, method, route), made on first use; NULL when the table is full. */
static struct row *table__row(struct table *t, const char *svc, const char *method,
			      const char *route)
{
	uint32_t h = row_hash(svc, method, route);
	struct row *r;

	for (int i = t->hash[h]; i >= 0; i = t->rows[i]->next) {
		r = t->rows[i];
		if (!strcmp(r->route, route) && !strcmp(r->method, method) &&
		    !strcmp(r->service, svc))
			return r;
	}
	if (t->n_rows == TOP_MAX_ROWS)
		return NULL;
	r = row__new(t->window, svc, method, route);
	if (!r)
		return NULL;
	r->next = t->hash[h];
	t->hash[h] = t->n_rows;
	t->rows[t->n_rows++] = r;
	return r;
}

static void table__add(struct table *t, const struct sample *s)
{
	struct row *r;

	t->requests++;
	if (s->sec > t->now_sec)
		t->now_sec = s->sec;
	r = table__row(t, s->service, s->method, s->route);
	if (!r)
		t->overflow++;
	else
		row__add(t, r, s);
}

/* Move the table's clock to now_ns (the source's clock) and expire. */
static void table__advance(struct table *t, uint64_t now_ns)
{
	if (!t->start_ns)
		t->start_ns = now_ns;
	t->now_ns = now_ns;
	if (now_ns / NS_PER_S > t->now_sec)
		t->now_sec = now_ns / NS_PER_S;
	for (int i = 0; i < t->n_rows; i++)
		row__expire(t->rows[i], t->now_sec, t->window);
}

/* Seconds the window covers now: whole seconds before the current one, the
 * current one so far, never more than top has been running (at least 1). */
static double table__span(const struct table *t)
{
	double span = t->window - 1 + (double)(t->now_ns % NS_PER_S) / NS_PER_S;
	double up = (double)(t->now_ns - t->start_ns) / NS_PER_S;

	if (up < span)
		span = up;
	return span < 1.0 ? 1.0 : span;
}

/* ---- samples from the two sources -------------------------------------------- */

static void copy_or_dash(char *out, size_t n, const char *s)
{
	snprintf(out, n, "%s", s && s[0] ? s : "-");
}

/* A record of the local pipeline; its clock is CLOCK_MONOTONIC. */
static void sample__from_record(struct sample *s, const struct record *r)
{
	s->sec = r->end_ns / NS_PER_S;
	s->wall_ns = r->wall_start_ns;
	s->dur_us = record__duration_us(r);
	s->bytes = r->bytes_in + r->bytes_out;
	s->status = r->status;
	s->failed = r->outcome == REC_FAILED;
	copy_or_dash(s->service, sizeof(s->service), r->service);
	copy_or_dash(s->method, sizeof(s->method), r->method);
	copy_or_dash(s->route, sizeof(s->route), r->route[0] ? r->route : r->path);
	copy_or_dash(s->path, sizeof(s->path), r->path);
	copy_or_dash(s->request_id, sizeof(s->request_id), r->request_id);
	ids_hex(s->trace_id, r->trace_id, 16);
}

/* ---- a JSON reader for obsd's answers ---------------------------------------
 * Reads objects member by member; whatever the caller does not take is
 * skipped. Any syntax error sets bad and stops everything after it. */

struct jr {
	const char *p, *end;
	bool bad;
};

/* Called per member; returns true when it read the value (or set j->bad). */
typedef bool (*jr_member_fn)(void *ctx, struct jr *j, const char *key);
typedef bool (*jr_elem_fn)(void *ctx, struct jr *j);

static bool jr_fail(struct jr *j)
{
	j->bad = true;
	return false;
}

static char jr_peek(struct jr *j)
{
	while (j->p < j->end && isspace((unsigned char)*j->p))
		j->p++;
	return j->p < j->end ? *j->p : 0;
}

static bool jr_eat(struct jr *j, char c)
{
	if (jr_peek(j) != c)
		return false;
	j->p++;
	return true;
}

static void jr_put(char *out, size_t n, size_t *len, unsigned char c)
{
	if (*len + 1 < n)
		out[(*len)++] = c;
}

/* Append code point cp as UTF-8 (surrogates become U+FFFD). */
static void jr_put_utf8(char *out, size_t n, size_t *len, unsigned cp)
{
	if (cp >= 0xd800 && cp <= 0xdfff)
		cp = 0xfffd;
	if (cp < 0x80) {
		jr_put(out, n, len, cp);
	} else if (cp < 0x800) {
		jr_put(out, n, len, 0xc0 | cp >> 6);
		jr_put(out, n, len, 0x80 | (cp & 0x3f));
	} else {
		jr_put(out, n, len, 0xe0 | cp >> 12);
		jr_put(out, n, len, 0x80 | (cp >> 6 & 0x3f));
		jr_put(out, n, len, 0x80 | (cp & 0x3f));
	}
}

static bool jr_escape(struct jr *j, char *out, size_t n, size_t *len)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *e;
	unsigned cp = 0;

	if (j->p >= j->end)
		return jr_fail(j);
	e = strchr(from, *j->p);
	if (*j->p && e) {
		jr_put(out, n, len, to[e - from]);
		j->p++;
		return true;
	}
	if (*j->p != 'u' || j->end - j->p < 5)
		return jr_fail(j);
	for (int i = 1; i <= 4; i++) {
		if (!isxdigit((unsigned char)j->p[i]))
			return jr_fail(j);
		cp = cp * 16 + (isdigit((unsigned char)j->p[i]) ? j->p[i] - '0' :
				(tolower((unsigned char)j->p[i]) - 'a' + 10));
	}
	j->p += 5;
	jr_put_utf8(out, n, len, cp);
	return true;
}

/* A string into out (size n, cut to fit, always terminated; NULL: skip it). */
static bool jr_str(struct jr *j, char *out, size_t n)
{
	size_t len = 0;

	if (!jr_eat(j, '"'))
		return jr_fail(j);
	while (j->p < j->end && *j->p != '"') {
		char c = *j->p++;

		if (c != '\\')
			jr_put(out, n, &len, c);
		else if (!jr_escape(j, out, n, &len))
			return false;
	}
	if (j->p >= j->end)
		return jr_fail(j);
	j->p++;
	if (n)
		out[len] = 0;
	return true;
}

/* The text of a scalar (number, true, false, null) into out. */
static bool jr_scalar(struct jr *j, char *out, size_t n)
{
	size_t len = 0;

	jr_peek(j);
	while (j->p < j->end && (isalnum((unsigned char)*j->p) || strchr("+-.", *j->p)))
		jr_put(out, n, &len, *j->p++);
	if (n)
		out[len] = 0;
	return len ? true : jr_fail(j);
}

static bool jr_u64(struct jr *j, uint64_t *v)
{
	char num[JR_NUM_MAX], *end;

	if (!jr_scalar(j, num, sizeof(num)))
		return false;
	*v = strtoull(num, &end, 10);
	if (*end == '.' || *end == 'e' || *end == 'E')
		*v = num[0] == '-' ? 0 : (uint64_t)strtod(num, NULL);
	else if (num[0] == '-' || *end)
		*v = 0;		/* negative, null, true, false */
	return true;
}

static bool jr_dbl(struct jr *j, double *v)
{
	char num[JR_NUM_MAX];

	if (!jr_scalar(j, num, sizeof(num)))
		return false;
	*v = strtod(num, NULL);
	return true;
}

static bool jr_skip(struct jr *j, int depth);

static bool jr_object(struct jr *j, jr_member_fn fn, void *ctx, int depth)
{
	char key[JR_KEY_MAX];

	if (depth > JR_DEPTH_MAX || !jr_eat(j, '{'))
		return jr_fail(j);
	if (jr_eat(j, '}'))
		return true;
	do {
		if (!jr_str(j, key, sizeof(key)) || !jr_eat(j, ':'))
			return jr_fail(j);
		if (!(fn && fn(ctx, j, key)) && !jr_skip(j, depth + 1))
			return false;
		if (j->bad)
			return false;
	} while (jr_eat(j, ','));
	return jr_eat(j, '}') ? true : jr_fail(j);
}

static bool jr_array(struct jr *j, jr_elem_fn fn, void *ctx, int depth)
{
	if (depth > JR_DEPTH_MAX || !jr_eat(j, '['))
		return jr_fail(j);
	if (jr_eat(j, ']'))
		return true;
	do {
		if (!(fn ? fn(ctx, j) : jr_skip(j, depth + 1)) || j->bad)
			return jr_fail(j);
	} while (jr_eat(j, ','));
	return jr_eat(j, ']') ? true : jr_fail(j);
}

static bool jr_skip(struct jr *j, int depth)
{
	switch (jr_peek(j)) {
	case '"':
		return jr_str(j, NULL, 0);
	case '{':
		return jr_object(j, NULL, NULL, depth);
	case '[':
		return jr_array(j, NULL, NULL, depth);
	default:
		return jr_scalar(j, NULL, 0);
	}
}

/* Record fields top reads from /api/requests (docs/records.md). */
struct jrec {
	struct sample s;
	uint64_t ts_ns, dur_us, bytes_in, bytes_out, status;
	char outcome[16];
};

enum jtype { JT_STR, JT_U64 };

#define JFIELD(key, type, member) \
	{ key, type, offsetof(struct jrec, member), sizeof(((struct jrec *)0)->member) }

static const struct jfield {
	const char *key;
	enum jtype type;
	size_t off, size;
} rec_fields[] = {
	JFIELD("service", JT_STR, s.service),
	JFIELD("method", JT_STR, s.method),
	JFIELD("route", JT_STR, s.route),
	JFIELD("path", JT_STR, s.path),
	JFIELD("request_id", JT_STR, s.request_id),
	JFIELD("trace_id", JT_STR, s.trace_id),
	JFIELD("outcome", JT_STR, outcome),
	JFIELD("status", JT_U64, status),
	JFIELD("ts_ns", JT_U64, ts_ns),
	JFIELD("duration_us", JT_U64, dur_us),
	JFIELD("bytes_in", JT_U64, bytes_in),
	JFIELD("bytes_out", JT_U64, bytes_out),
};

static bool jrec_member(void *ctx, struct jr *j, const char *key)
{
	char *base = ctx;

	for (size_t i = 0; i < ARRAY_SIZE(rec_fields); i++) {
		const struct jfield *f = &rec_fields[i];

		if (strcmp(key, f->key))
			continue;
		if (f->type == JT_U64)
			return jr_u64(j, (uint64_t *)(base + f->off));
		if (jr_peek(j) != '"')
			return jr_skip(j, 0);	/* null: stays "" */
		return jr_str(j, base + f->off, f->size);
	}
	return false;
}

/* A record of obsd's /api/requests; its clock is CLOCK_REALTIME. */
static void sample__from_jrec(struct sample *s, struct jrec *jr)
{
	*s = jr->s;
	s->wall_ns = jr->ts_ns;
	s->dur_us = jr->dur_us;
	s->sec = (jr->ts_ns + jr->dur_us * 1000) / NS_PER_S;
	s->bytes = jr->bytes_in + jr->bytes_out;
	s->status = (int)jr->status;
	s->failed = !strcmp(jr->outcome, "failed");
	copy_or_dash(s->service, sizeof(s->service), jr->s.service);
	copy_or_dash(s->method, sizeof(s->method), jr->s.method);
	copy_or_dash(s->route, sizeof(s->route), jr->s.route[0] ? jr->s.route : jr->s.path);
}

/* ---- a small HTTP client for obsd ------------------------------------------- */

static int http_connect(const char *addr, char *err, size_t n)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai, *a;
	struct timeval tv = { .tv_sec = TOP_HTTP_TIMEOUT_S };
	const char *colon = strrchr(addr, ':');
	char host[TOP_HOST_MAX];
	int fd = -1, rc, e = 0;

	if (!colon || colon == addr || colon - addr >= (long)sizeof(host)) {
		snprintf(err, n, "bad daemon address '%s' (want ADDR:PORT)", addr);
		return -1;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc) {
		snprintf(err, n, "bad daemon address '%s': %s", addr, gai_strerror(rc));
		return -1;
	}
	for (a = ai; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, a->ai_addr, a->ai_addrlen)) {
			e = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (fd < 0)
		snprintf(err, n, "cannot reach obsd at %s: %s", addr, strerror(e ? e : EINVAL));
	return fd;
}

/* Everything until EOF into a malloc'd NUL-terminated buffer; NULL with errno. */
static char *read_all(int fd, size_t *len)
{
	size_t cap = TOP_HTTP_CHUNK, n = 0;
	char *buf = malloc(cap), *nb;
	ssize_t r;

	while (buf) {
		if (cap - n < 2) {
			nb = cap < TOP_HTTP_MAX ? realloc(buf, cap * 2) : NULL;
			if (!nb) {
				free(buf);
				errno = cap < TOP_HTTP_MAX ? ENOMEM : EFBIG;
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return NULL;
		}
		if (!r)
			break;
		n += r;
	}
	if (buf) {
		buf[n] = 0;
		*len = n;
	}
	return buf;
}

/*
 * GET path from obsd at addr. Returns the HTTP status with the body (malloc'd,
 * NUL-terminated) in *body, or -1 with the reason in err and *body NULL.
 */
static int http_get(const char *addr, const char *path, char **body, char *err, size_t n)
{
	int fd = http_connect(addr, err, n), status = -1;
	char *buf, *start;
	size_t len = 0;

	*body = NULL;
	if (fd < 0)
		return -1;
	if (dprintf(fd, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path,
		    addr) < 0) {
		snprintf(err, n, "obsd at %s: send: %s", addr, strerror(errno));
		close(fd);
		return -1;
	}
	buf = read_all(fd, &len);
	close(fd);
	start = buf ? strstr(buf, "\r\n\r\n") : NULL;
	if (!start || sscanf(buf, "HTTP/1.%*c %d", &status) != 1) {
		snprintf(err, n, "obsd at %s: %s", addr, buf ? "bad answer" : strerror(errno));
		free(buf);
		return -1;
	}
	start += 4;
	memmove(buf, start, len - (start - buf) + 1);
	*body = buf;
	return status;
}

/* ---- sources ------------------------------------------------------------------ */

struct svc_gauge {
	char name[SERVICE_NAME_MAX];
	uint64_t in_flight;
};

/* What the source says besides requests, as of its last refresh. */
struct src_stats {
	uint64_t processes, events_lost;
	double obsd_cpu_s;		/* obsd's CPU seconds so far; < 0: no obsd */
	struct svc_gauge svc[TOP_SERVICES_MAX];
	int n_svc;
	uint64_t in_flight;		/* all services */
	uint64_t missed;		/* records gone from obsd's store before read */
};

struct source {
	struct pipeline *p;		/* standalone: the probes, owned */
	uint64_t next_tick_ns;		/* standalone: next pipeline__tick */
	const char *addr;		/* --daemon: obsd's API address */
	uint64_t since;			/* --daemon: obsd's "total" at the last poll */
	struct src_stats st;
	char err[TOP_ERR_MAX];		/* last problem talking to obsd, "" when none */
};

static void stats__gauge(struct src_stats *st, const char *svc, uint64_t n)
{
	int i;

	st->in_flight += n;
	for (i = 0; i < st->n_svc; i++)
		if (!strcmp(st->svc[i].name, svc))
			break;
	if (i == st->n_svc) {
		if (st->n_svc == TOP_SERVICES_MAX)
			return;
		snprintf(st->svc[st->n_svc++].name, sizeof(st->svc[0].name), "%s", svc);
	}
	st->svc[i].in_flight += n;
}

static uint64_t stats__in_flight(const struct src_stats *st, const char *svc)
{
	for (int i = 0; i < st->n_svc; i++)
		if (!strcmp(st->svc[i].name, svc))
			return st->svc[i].in_flight;
	return 0;
}

static void stats__clear_gauges(struct src_stats *st)
{
	st->n_svc = 0;
	st->in_flight = 0;
}

/* The clock samples of this source are on: monotonic standalone, wall with obsd. */
static uint64_t source__clock(const struct source *src)
{
	struct timespec ts;

	if (src->p)
		return mono_ns();
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

struct conn_walk {
	struct pipeline *p;
	struct src_stats *st;
};

static void standalone__conn(void *ctx, const struct conn_view *v)
{
	struct conn_walk *w = ctx;

	if (v->in_flight)
		stats__gauge(w->st, pipeline__service_of(w->p, v->pid, v->comm, v->lport),
			     v->in_flight);
}

static void standalone__refresh(struct source *src)
{
	struct conn_walk w = { .p = src->p, .st = &src->st };

	pipeline__consume(src->p);
	src->st.processes = pipeline__processes(src->p);
	src->st.events_lost = pipeline__events_lost(src->p);
	src->st.obsd_cpu_s = -1;
	stats__clear_gauges(&src->st);
	pipeline__foreach_conn(src->p, standalone__conn, &w);
}

/* Loading the probes needs root or CAP_BPF + CAP_PERFMON: check before trying. */
static bool can_load_probes(void)
{
	unsigned long long eff = 0;
	char line[256];
	FILE *f;

	if (geteuid() == 0)
		return true;
	f = fopen("/proc/self/status", "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	fclose(f);
	return (eff >> CAP_BPF & 1) && (eff >> CAP_PERFMON & 1);
}

/* /api/requests?since=: each new record into the table. */
struct req_doc {
	struct table *t;
	uint64_t total, parsed;
	bool has_total;
};

static bool req_doc_record(void *ctx, struct jr *j)
{
	struct req_doc *d = ctx;
	struct jrec jr = {};
	struct sample s;

	if (!jr_object(j, jrec_member, &jr, 1))
		return false;
	sample__from_jrec(&s, &jr);
	if (d->t)
		table__add(d->t, &s);
	d->parsed++;
	return true;
}

static bool req_doc_member(void *ctx, struct jr *j, const char *key)
{
	struct req_doc *d = ctx;

	if (!strcmp(key, "total")) {
		d->has_total = true;
		return jr_u64(j, &d->total);
	}
	if (!strcmp(key, "requests"))
		return jr_array(j, req_doc_record, d, 1);
	return false;
}

/* GET path as JSON and walk its top-level object with fn; 0 or -1 (src->err set). */
static int daemon__get_json(struct source *src, const char *path, jr_member_fn fn, void *ctx)
{
	char *body;
	int status = http_get(src->addr, path, &body, src->err, sizeof(src->err));
	struct jr j;

	if (status < 0)
		return -1;
	j = (struct jr){ .p = body, .end = body + strlen(body) };
	if (status != 200)
		snprintf(src->err, sizeof(src->err), "obsd %s answered %d", path, status);
	else if (!jr_object(&j, fn, ctx, 0))
		snprintf(src->err, sizeof(src->err), "obsd %s: unreadable JSON", path);
	free(body);
	return status == 200 && !j.bad ? 0 : -1;
}

/* New records since the last poll (t NULL: only learn where obsd's count is). */
static int daemon__poll_requests(struct source *src, struct table *t)
{
	struct req_doc d = { .t = t };
	char path[96];

	snprintf(path, sizeof(path), "/api/requests?since=%llu&limit=%d",
		 (unsigned long long)src->since, t ? TOP_DAEMON_LIMIT : 0);
	if (daemon__get_json(src, path, req_doc_member, &d) || !d.has_total) {
		if (!src->err[0])
			snprintf(src->err, sizeof(src->err), "obsd %s: no \"total\"", path);
		return -1;
	}
	if (t && d.total >= src->since && d.total - src->since > d.parsed)
		src->st.missed += d.total - src->since - d.parsed;
	src->since = d.total;	/* lower after an obsd restart: start over from there */
	return 0;
}
