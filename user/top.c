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
#include <limits.h>
#include <locale.h>
#include <math.h>
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
#include "loops.h"
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
#define TOP_HEAD_LINES		6	/* screen lines above the table rows */
#define TOP_BARS_MAX		16	/* histogram bars in the detail view */
#define TOP_BARS_MIN		4	/* bars kept even when the screen is short */
#define TOP_LABEL_W		24	/* " 12.34ms -  13.00ms |" before each bar */
#define TOP_COUNT_W		10	/* the count after each bar */
#define TOP_STATUS_SHOW		8	/* status-code lines in the detail view */
#define TOP_ESC_DELAY_MS	25	/* wait for the rest of an escape sequence */
#define TOP_KEY_ESC		27
#define TOP_KEY_CTRL_H		8
#define TOP_KEY_DEL		127
#define TOP_LOOPS_MAX		64	/* workers whose event loops are followed */
#define TOP_LOOP_Q		0.99	/* the quantile of loop busy time shown */
#define TOP_LOOP_SVC_W		20	/* service column of a --batch LOOP section */
#define TOP_ERR_MAX		160	/* last problem talking to obsd */
#define TOP_DAEMON_DEFAULT	"127.0.0.1:9464"	/* obsd's default --listen */
#define TOP_DAEMON_LIMIT	100000	/* records asked for per poll */
#define TOP_HTTP_TIMEOUT_S	5
#define TOP_HTTP_CHUNK		65536
#define TOP_HTTP_MAX		(256u << 20)	/* largest obsd answer read */
#define TOP_HOST_MAX		256
#define JR_DEPTH_MAX		32	/* JSON nesting skipped before giving up */
#define JR_KEY_MAX		64
#define JR_NUM_MAX		40
#define PROM_LINE_MAX		1024	/* one /metrics line read */

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

/* The rank (1..count) of quantile q among count values: ceil(q * count). */
static uint64_t lh_rank(double q, uint64_t count)
{
	uint64_t r = (uint64_t)ceil(q * count - 1e-9);

	return r < 1 ? 1 : r > count ? count : r;
}

/* Values (us) at quantiles q[0..n-1] (ascending) of the count values in h; 0 if none. */
static void lh_quantiles(const uint32_t *h, uint64_t count, const double *q, double *out, int n)
{
	uint64_t seen = 0;
	unsigned i;
	int k = 0;

	for (i = 0; i < LH_BUCKETS && k < n && count; i++) {
		seen += h[i];
		while (k < n && seen >= lh_rank(q[k], count))
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
	/* The slowest requests of the window, unordered. An entry that leaves the
	 * window is refilled by later requests only, not by slower earlier ones. */
	struct slow_req slow[TOP_SLOWEST];
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

/* s into out (size n), cut to fit; "-" for an empty or missing s. */
static void copy_or_dash(char *out, size_t n, const char *s)
{
	size_t len;

	if (!s || !s[0])
		s = "-";
	len = strnlen(s, n - 1);
	memcpy(out, s, len);
	out[len] = 0;
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
	const char *start;
	size_t len = 0;

	jr_peek(j);
	start = j->p;
	while (j->p < j->end && (isalnum((unsigned char)*j->p) || strchr("+-.", *j->p)))
		jr_put(out, n, &len, *j->p++);
	if (n)
		out[len] = 0;
	return j->p > start ? true : jr_fail(j);
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

/* ---- event loops ----------------------------------------------------------------- */

/*
 * The sources give cumulative loop totals per worker (iterations by log2 busy
 * time, blocked iterations). Per worker, the totals of each second are kept
 * (window + 1 of them, second s in snaps[s % (window + 1)], the last report of
 * that second): the window's iterations are the current totals less those of
 * the oldest second still in the window. Reports are taken once a second
 * standalone and once a frame with obsd; when no second of the window has one
 * (frames further apart than the window), the newest older one is used.
 */
struct loop_snap {
	uint64_t sec;			/* source second of the report; 0: unused */
	uint64_t blocked;
	uint64_t buckets[OBS_LOOP_BUCKETS];	/* [2^i, 2^(i+1)) us, not cumulative */
};

struct worker_loop {
	uint32_t pid;
	char service[SERVICE_NAME_MAX];
	struct loop_snap cur;		/* totals of the last report */
	struct loop_snap *snaps;	/* [window + 1], owned */
};

struct loopset {
	int window;			/* seconds */
	struct worker_loop w[TOP_LOOPS_MAX];
	int n;
	uint64_t untracked;		/* workers of the last refresh beyond TOP_LOOPS_MAX */
};

static void loopset__free(struct loopset *ls)
{
	for (int i = 0; i < ls->n; i++)
		free(ls->w[i].snaps);
	ls->n = 0;
}

static void worker_loop__reset(struct worker_loop *w, int window)
{
	memset(w->snaps, 0, (window + 1) * sizeof(*w->snaps));
	memset(&w->cur, 0, sizeof(w->cur));
}

/* The entry of pid: found, new, or one not reported for a window; NULL when full. */
static struct worker_loop *loopset__worker(struct loopset *ls, uint32_t pid, uint64_t sec)
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

/* Record a worker's cumulative totals as of second sec. */
static void loopset__report(struct loopset *ls, uint32_t pid, const char *svc, uint64_t blocked,
			    const uint64_t *buckets, uint64_t sec)
{
	struct worker_loop *w = loopset__worker(ls, pid, sec);
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

/* One worker's event loop over the window. */
struct loop_view {
	const struct worker_loop *w;
	uint64_t iterations, blocked;	/* in the window */
	double p99_ms;			/* upper bound of the p99's bucket; 0: none */
};

/* The report the window's counts start from: see struct loop_snap; NULL: none. */
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
	struct loopset loops;		/* event loops of the workers */
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
		snprintf(st->svc[i].name, sizeof(st->svc[i].name), "%s", svc);
		st->svc[i].in_flight = 0;
		st->n_svc++;
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

struct loop_walk {
	struct loopset *ls;
	uint64_t sec;
};

static void standalone__loop(void *ctx, uint32_t pid, const char *svc, const struct loop_stats *s)
{
	struct loop_walk *w = ctx;

	loopset__report(w->ls, pid, svc, s->blocked, s->buckets, w->sec);
}

/* The workers' loop totals, read from the kernel now. */
static void standalone__loops(struct source *src)
{
	struct loop_walk w = { .ls = &src->loops, .sec = source__clock(src) / NS_PER_S };

	src->loops.untracked = 0;
	pipeline__foreach_loop(src->p, standalone__loop, &w);
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
	standalone__loops(src);
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

static bool health_member(void *ctx, struct jr *j, const char *key)
{
	struct src_stats *st = ctx;

	if (!strcmp(key, "cpu_seconds"))
		return jr_dbl(j, &st->obsd_cpu_s);
	if (!strcmp(key, "observed_processes"))
		return jr_u64(j, &st->processes);
	if (!strcmp(key, "events_lost"))
		return jr_u64(j, &st->events_lost);
	return false;
}

/* The value of label name in one exposition line "metric{a=\"x\",b=\"y\"} v". */
static bool prom_label(const char *line, const char *name, char *out, size_t n)
{
	char pat[JR_KEY_MAX];
	const char *p;
	size_t len = 0;

	snprintf(pat, sizeof(pat), "%s=\"", name);
	for (p = strchr(line, '{'); p && (p = strstr(p, pat)); p++)
		if (p[-1] == '{' || p[-1] == ',')
			break;
	if (!p)
		return false;
	for (p += strlen(pat); *p && *p != '"'; p++) {
		if (*p == '\\' && p[1])
			p++;
		jr_put(out, n, &len, *p == 'n' && p[-1] == '\\' ? '\n' : *p);
	}
	out[len] = 0;
	return true;
}

/* Per-service in-flight gauges from obsd's /metrics text. */
static void metrics__in_flight(struct src_stats *st, const char *text)
{
	static const char name[] = "http_requests_in_flight{";
	char line[PROM_LINE_MAX], svc[SERVICE_NAME_MAX];
	const char *l, *eol, *close;
	size_t len;

	for (l = text; l && *l; l = eol ? eol + 1 : NULL) {
		eol = strchr(l, '\n');
		len = eol ? (size_t)(eol - l) : strlen(l);
		if (strncmp(l, name, sizeof(name) - 1) || len >= sizeof(line))
			continue;
		memcpy(line, l, len);
		line[len] = 0;
		close = strrchr(line, '}');
		if (close && prom_label(line, "service", svc, sizeof(svc)))
			stats__gauge(st, svc, (uint64_t)strtod(close + 1, NULL));
	}
}

/* One worker's series of asyncio_loop_busy_seconds_bucket, as they come in /metrics. */
struct prom_loop {
	bool have;
	char svc[SERVICE_NAME_MAX];
	uint32_t pid;
	uint64_t cum[OBS_LOOP_BUCKETS];	/* cumulative over le, as exposed */
};

/* The bucket index of le = 2^(i+1) us in seconds; -1: +Inf or not one of ours. */
static int loop_le_index(const char *le)
{
	double us = strtod(le, NULL) * 1e6;

	for (int i = 0; i < OBS_LOOP_BUCKETS; i++)
		if (fabs(us - (double)(2ull << i)) < 0.5)
			return i;
	return -1;
}

/* The blocked total of (svc, pid) in /metrics text; 0 when absent. */
static uint64_t metrics__loop_blocked(const char *text, const char *svc, uint32_t pid)
{
	static const char name[] = "asyncio_loop_blocked_total{";
	char line[PROM_LINE_MAX], lsvc[SERVICE_NAME_MAX], worker[16];
	const char *l, *eol, *close;
	size_t len;

	for (l = strstr(text, name); l; l = eol ? strstr(eol, name) : NULL) {
		eol = strchr(l, '\n');
		len = eol ? (size_t)(eol - l) : strlen(l);
		if ((l != text && l[-1] != '\n') || len >= sizeof(line))
			continue;
		memcpy(line, l, len);
		line[len] = 0;
		close = strrchr(line, '}');
		if (close && prom_label(line, "service", lsvc, sizeof(lsvc)) &&
		    prom_label(line, "worker", worker, sizeof(worker)) && !strcmp(lsvc, svc) &&
		    strtoul(worker, NULL, 10) == pid)
			return strtoull(close + 1, NULL, 10);
	}
	return 0;
}

static void prom_loop__flush(struct prom_loop *pl, struct loopset *ls, const char *text,
			     uint64_t sec)
{
	uint64_t b[OBS_LOOP_BUCKETS];

	if (!pl->have)
		return;
	for (int i = 0; i < OBS_LOOP_BUCKETS; i++)
		b[i] = pl->cum[i] - (i && pl->cum[i - 1] <= pl->cum[i] ? pl->cum[i - 1] : 0);
	loopset__report(ls, pl->pid, pl->svc, metrics__loop_blocked(text, pl->svc, pl->pid), b,
			sec);
	pl->have = false;
}

/* Per-worker loop totals from obsd's /metrics text (asyncio_loop_*). */
static void metrics__loops(struct loopset *ls, const char *text, uint64_t sec)
{
	static const char name[] = "asyncio_loop_busy_seconds_bucket{";
	char line[PROM_LINE_MAX], svc[SERVICE_NAME_MAX], worker[16], le[JR_NUM_MAX];
	struct prom_loop pl = {};
	const char *l, *eol, *close;
	uint32_t pid;
	size_t len;
	int i;

	ls->untracked = 0;
	for (l = text; l && *l; l = eol ? eol + 1 : NULL) {
		eol = strchr(l, '\n');
		len = eol ? (size_t)(eol - l) : strlen(l);
		if (strncmp(l, name, sizeof(name) - 1) || len >= sizeof(line))
			continue;
		memcpy(line, l, len);
		line[len] = 0;
		close = strrchr(line, '}');
		if (!close || !prom_label(line, "service", svc, sizeof(svc)) ||
		    !prom_label(line, "worker", worker, sizeof(worker)) ||
		    !prom_label(line, "le", le, sizeof(le)))
			continue;
		pid = strtoul(worker, NULL, 10);
		if (pl.have && (pl.pid != pid || strcmp(pl.svc, svc)))
			prom_loop__flush(&pl, ls, text, sec);
		if (!pl.have) {
			memset(&pl, 0, sizeof(pl));
			pl.have = true;
			pl.pid = pid;
			snprintf(pl.svc, sizeof(pl.svc), "%s", svc);
		}
		i = loop_le_index(le);
		if (i >= 0)
			pl.cum[i] = strtoull(close + 1, NULL, 10);
	}
	prom_loop__flush(&pl, ls, text, sec);
}

static void daemon__metrics(struct source *src)
{
	char *body;
	int status = http_get(src->addr, "/metrics", &body, src->err, sizeof(src->err));

	stats__clear_gauges(&src->st);
	if (status == 200) {
		metrics__in_flight(&src->st, body);
		metrics__loops(&src->loops, body, source__clock(src) / NS_PER_S);
	}
	else if (status > 0)
		snprintf(src->err, sizeof(src->err), "obsd /metrics answered %d", status);
	free(body);
}

/* One poll of obsd: in-flight gauges, health, new records. */
static void daemon__refresh(struct source *src, struct table *t)
{
	src->err[0] = 0;
	daemon__metrics(src);
	if (daemon__get_json(src, "/health", health_member, &src->st))
		src->st.obsd_cpu_s = -1;
	daemon__poll_requests(src, t);
}

/* Standalone between frames: drain the ring buffer, housekeeping once a second. */
static void standalone__pump(struct source *src)
{
	uint64_t now = mono_ns();

	pipeline__consume(src->p);
	if (now >= src->next_tick_ns) {
		pipeline__tick(src->p);
		standalone__loops(src);
		src->next_tick_ns = now + TOP_TICK_NS;
	}
}

/* ---- frames -------------------------------------------------------------------- */

enum col {
	COL_ROUTE, COL_REQS, COL_RPS, COL_P50, COL_P90, COL_P99, COL_MAX, COL_ERR, COL_INFL,
	COL_BYTES, COL_N
};

static const struct col_def {
	const char *name;		/* --sort, JSON "sort" */
	const char *title;
	int key;			/* sort key on the table screen */
	int width;			/* numbers; the name columns are sized apart */
} cols[COL_N] = {
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

struct opts {
	int window;			/* seconds */
	double interval;		/* seconds between frames */
	long iterations;		/* --batch/--json frames; 0: until stopped */
	enum col sort;
	bool reverse;			/* sort the other way round */
	bool batch, json;
	const char *daemon;		/* obsd's address; NULL: standalone */
	char filter[TOP_FILTER_MAX];	/* substring of service, method or route; "": all */
	struct pipeline_opts po;	/* standalone: which servers to observe */
};

struct row_view {
	const struct row *r;
	uint64_t requests;		/* since top started */
	uint64_t win_requests, win_errors;
	double rps, bps, err_pct;	/* over the window */
	double p50, p90, p99, max;	/* ms; meaningful when win_requests */
	uint64_t in_flight;		/* of the row's service */
};

struct frame {
	struct row_view v[TOP_MAX_ROWS];	/* every row, sorted */
	int n_all;
	const struct row_view *shown[TOP_MAX_ROWS];	/* those the filter lets through */
	int n;
	uint64_t requests, in_flight;	/* since top started; now */
	double rps, bps, err_pct;	/* every row, over the window */
	double span;			/* seconds the window covers so far */
	double cpu_ctl, cpu_obsd;	/* % of one CPU since the last frame; < 0: unknown */
	time_t when;
	struct loop_view loops[TOP_LOOPS_MAX];	/* workers of the window, worst first */
	int n_loops;
};

enum top_screen { SCR_TABLE, SCR_DETAIL, SCR_HELP };

struct ui {
	SCREEN *term;
	enum top_screen scr, back;		/* shown; where help returns to */
	bool paused, editing;
	char edit_prev[TOP_FILTER_MAX];	/* filter to restore when an edit is cancelled */
	const struct row *sel;		/* selected row (rows live as long as top) */
	int offset;			/* first table row on screen */
	int err_saved, err_tmp;		/* stderr while the screen is up; -1: none */
};

struct top {
	struct opts o;			/* parsed configuration; filter and sort change by key */
	struct table t;
	struct source src;
	struct frame f;
	struct ui ui;
	struct jbuf jb;
	uint64_t prev_ns;		/* CLOCK_MONOTONIC of the last frame, 0: none */
	double prev_ctl_cpu, prev_obsd_cpu;
};

static double min_d(double a, double b)
{
	return a < b ? a : b;
}

static void row__view(const struct table *t, const struct row *r, double span,
		      struct row_view *v)
{
	static const double q[] = { 0.50, 0.90, 0.99 };
	double us[ARRAY_SIZE(q)];
	uint64_t bytes = 0, max_us = 0;

	memset(v, 0, sizeof(*v));
	v->r = r;
	v->requests = r->requests;
	for (int i = 0; i < t->window; i++) {
		const struct slot *sl = &r->slots[i];

		if (!sl->used)
			continue;
		v->win_requests += sl->requests;
		v->win_errors += sl->errors;
		bytes += sl->bytes;
		if (sl->max_us > max_us)
			max_us = sl->max_us;
	}
	lh_quantiles(r->hist, r->hist_n, q, us, ARRAY_SIZE(q));
	v->max = max_us / 1000.0;
	v->p50 = min_d(us[0] / 1000, v->max);
	v->p90 = min_d(us[1] / 1000, v->max);
	v->p99 = min_d(us[2] / 1000, v->max);
	v->rps = v->win_requests / span;
	v->bps = bytes / span;
	v->err_pct = v->win_requests ? 100.0 * v->win_errors / v->win_requests : 0;
}

static double view_key(const struct row_view *v, enum col c)
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

static int view_cmp_name(const struct row_view *a, const struct row_view *b)
{
	int d = strcmp(a->r->route, b->r->route);

	if (!d)
		d = strcmp(a->r->method, b->r->method);
	return d ? d : strcmp(a->r->service, b->r->service);
}

/* Numbers largest first, names A to Z; o->reverse turns it round; ties by name. */
static int view_cmp(const void *pa, const void *pb, void *ctx)
{
	const struct opts *o = ctx;
	const struct row_view *a = pa, *b = pb;
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

static bool view__matches(const struct row_view *v, const char *text)
{
	return !text[0] || strcasestr(v->r->service, text) || strcasestr(v->r->route, text) ||
	       strcasestr(v->r->method, text);
}

/* Sort every row and pick those the filter shows. */
static void frame__arrange(struct top *tp)
{
	struct frame *f = &tp->f;

	qsort_r(f->v, f->n_all, sizeof(f->v[0]), view_cmp, &tp->o);
	f->n = 0;
	for (int i = 0; i < f->n_all; i++)
		if (view__matches(&f->v[i], tp->o.filter))
			f->shown[f->n++] = &f->v[i];
}

static double cpu_self(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void frame__cpu(struct top *tp)
{
	struct frame *f = &tp->f;
	uint64_t now = mono_ns();
	double ctl = cpu_self(), obsd = tp->src.st.obsd_cpu_s;
	double dt = tp->prev_ns ? (double)(now - tp->prev_ns) / NS_PER_S : 0;

	f->cpu_ctl = dt > 0 ? 100 * (ctl - tp->prev_ctl_cpu) / dt : -1;
	f->cpu_obsd = dt > 0 && obsd >= 0 && tp->prev_obsd_cpu >= 0 ?
		      100 * (obsd - tp->prev_obsd_cpu) / dt : -1;
	tp->prev_ns = now;
	tp->prev_ctl_cpu = ctl;
	tp->prev_obsd_cpu = obsd;
}

/* The event loop of every worker reported within the window, worst first. */
static void frame__loops(struct top *tp)
{
	const struct loopset *ls = &tp->src.loops;
	uint64_t now = source__clock(&tp->src) / NS_PER_S;
	struct frame *f = &tp->f;

	f->n_loops = 0;
	for (int i = 0; i < ls->n; i++)
		if (ls->w[i].cur.sec + ls->window >= now)
			worker_loop__view(&ls->w[i], ls->window, &f->loops[f->n_loops++]);
	qsort(f->loops, f->n_loops, sizeof(f->loops[0]), loop_view_cmp);
}

/* Fetch what the source has and move the window to now. */
static void top__collect(struct top *tp)
{
	if (tp->src.p)
		standalone__refresh(&tp->src);
	else
		daemon__refresh(&tp->src, &tp->t);
	table__advance(&tp->t, source__clock(&tp->src));
}

/* A new frame: every row's numbers, the totals, sorted and filtered. */
static void top__compute(struct top *tp)
{
	struct frame *f = &tp->f;
	uint64_t win = 0, err = 0;

	f->span = table__span(&tp->t);
	f->rps = f->bps = 0;
	for (int i = 0; i < tp->t.n_rows; i++) {
		struct row_view *v = &f->v[i];

		row__view(&tp->t, tp->t.rows[i], f->span, v);
		v->in_flight = stats__in_flight(&tp->src.st, v->r->service);
		f->rps += v->rps;
		f->bps += v->bps;
		win += v->win_requests;
		err += v->win_errors;
	}
	f->n_all = tp->t.n_rows;
	f->requests = tp->t.requests;
	f->in_flight = tp->src.st.in_flight;
	f->err_pct = win ? 100.0 * err / win : 0;
	f->when = time(NULL);
	frame__loops(tp);
	frame__cpu(tp);
	frame__arrange(tp);
}

/* ---- text ------------------------------------------------------------------------ */

struct line {
	char s[TOP_LINE_MAX];
	size_t len;
};

static void line_reset(struct line *l)
{
	l->len = 0;
	l->s[0] = 0;
}

static __attribute__((format(printf, 2, 3))) void line_add(struct line *l, const char *fmt, ...)
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

static void fmt_ms(char *out, size_t n, bool have, double ms)
{
	if (!have)
		snprintf(out, n, "-");
	else
		snprintf(out, n, ms < 10 ? "%.2f" : ms < 100 ? "%.1f" : "%.0f", ms);
}

/* A duration for people: 850us, 12.34ms, 1.23s. */
static void fmt_dur(char *out, size_t n, double us)
{
	if (us < 1000)
		snprintf(out, n, "%.0fus", us);
	else if (us < 1e6)
		snprintf(out, n, "%.2fms", us / 1000);
	else
		snprintf(out, n, "%.2fs", us / 1e6);
}

static void fmt_bytes(char *out, size_t n, double b)
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

static void fmt_cell(char *out, size_t n, const struct row_view *v, enum col c)
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
		fmt_ms(out, n, have, v->p50);
		break;
	case COL_P90:
		fmt_ms(out, n, have, v->p90);
		break;
	case COL_P99:
		fmt_ms(out, n, have, v->p99);
		break;
	case COL_MAX:
		fmt_ms(out, n, have, v->max);
		break;
	case COL_ERR:
		snprintf(out, n, have ? "%.1f" : "-", v->err_pct);
		break;
	case COL_INFL:
		snprintf(out, n, "%llu", (unsigned long long)v->in_flight);
		break;
	case COL_BYTES:
		fmt_bytes(out, n, v->bps);
		break;
	default:
		out[0] = 0;
	}
}

/* Column widths of the table. */
struct layout {
	int svc_w, meth_w, route_w;
	bool reqs;			/* REQS shown */
};

static int layout__numbers_w(const struct layout *L)
{
	int w = 0;

	for (int c = COL_REQS; c < COL_N; c++)
		if (c != COL_REQS || L->reqs)
			w += 1 + cols[c].width;
	return w;
}

static int max_i(int a, int b)
{
	return a > b ? a : b;
}

static int min_i(int a, int b)
{
	return a < b ? a : b;
}

/* Widths that show every name whole (batch frames). */
static void layout__full(struct layout *L, const struct frame *f)
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

/* Widths for a screen ncols wide: the names share what the numbers leave. */
static void layout__fit(struct layout *L, const struct frame *f, int ncols)
{
	int names;

	layout__full(L, f);
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

static void fmt_title(struct line *l, const struct layout *L)
{
	line_add(l, "%-*s %-*s %-*s", L->svc_w, "SERVICE", L->meth_w, "METHOD", L->route_w,
		 "ROUTE");
	for (int c = COL_REQS; c < COL_N; c++)
		if (c != COL_REQS || L->reqs)
			line_add(l, " %*s", cols[c].width, cols[c].title);
}

static void fmt_row(struct line *l, const struct row_view *v, const struct layout *L)
{
	char svc[SERVICE_NAME_MAX], meth[H1_METHOD_MAX], route[ROUTE_LEN_MAX], cell[32];

	fit(svc, v->r->service, L->svc_w, false);
	fit(meth, v->r->method, L->meth_w, false);
	fit(route, v->r->route, L->route_w, true);
	line_add(l, "%-*s %-*s %-*s", L->svc_w, svc, L->meth_w, meth, L->route_w, route);
	for (int c = COL_REQS; c < COL_N; c++) {
		if (c == COL_REQS && !L->reqs)
			continue;
		fmt_cell(cell, sizeof(cell), v, c);
		line_add(l, " %*s", cols[c].width, cell);
	}
}

static void head_title(struct line *l, const struct top *tp, bool full_date)
{
	char when[32];
	struct tm tm;

	localtime_r(&tp->f.when, &tm);
	strftime(when, sizeof(when), full_date ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &tm);
	line_add(l, "obsctl top %s  sort %s%s  window %ds", when, cols[tp->o.sort].name,
		 tp->o.reverse ? " reversed" : "", tp->o.window);
	if (tp->f.span < tp->o.window - 1)
		line_add(l, " (%.0fs so far)", tp->f.span);
	line_add(l, "  every %gs  %s%s", tp->o.interval, tp->o.daemon ? "obsd " : "standalone",
		 tp->o.daemon ? tp->o.daemon : "");
}

static void head_totals(struct line *l, const struct top *tp)
{
	const struct frame *f = &tp->f;
	char bytes[16];

	fmt_bytes(bytes, sizeof(bytes), f->bps);
	line_add(l, "requests %llu total, %.1f/s - errors %.1f%% - in flight %llu - %sB/s - "
		 "rows %d", (unsigned long long)f->requests, f->rps, f->err_pct,
		 (unsigned long long)f->in_flight, bytes, f->n_all);
	if (tp->t.overflow)
		line_add(l, " (+%llu requests beyond %d rows)", (unsigned long long)tp->t.overflow,
			 TOP_MAX_ROWS);
}

static void head_system(struct line *l, const struct top *tp)
{
	const struct src_stats *st = &tp->src.st;
	char ctl[16], obsd[16];

	fmt_pct(ctl, sizeof(ctl), tp->f.cpu_ctl);
	fmt_pct(obsd, sizeof(obsd), tp->f.cpu_obsd);
	line_add(l, "processes %llu - events lost %llu - cpu obsctl %s obsd %s",
		 (unsigned long long)st->processes, (unsigned long long)st->events_lost, ctl,
		 obsd);
	if (st->missed)
		line_add(l, " - missed %llu (left obsd's store unread)",
			 (unsigned long long)st->missed);
	if (tp->t.late)
		line_add(l, " - late %llu", (unsigned long long)tp->t.late);
	if (tp->t.oom)
		line_add(l, " - out of memory %llu", (unsigned long long)tp->t.oom);
	if (tp->src.err[0])
		line_add(l, " - %s", tp->src.err);
}

/* The LOOP section of a --batch frame: one line per worker, worst first. */
static void print_loops(const struct top *tp)
{
	const struct frame *f = &tp->f;
	char p99[16];

	if (!f->n_loops)
		return;
	printf("LOOP %-*s %8s %9s %8s %10s\n", TOP_LOOP_SVC_W, "SERVICE", "PID", "P99ms",
	       "BLOCKED", "ITERATIONS");
	for (int i = 0; i < f->n_loops; i++) {
		const struct loop_view *v = &f->loops[i];

		fmt_ms(p99, sizeof(p99), v->iterations, v->p99_ms);
		printf("     %-*s %8u %9s %8llu %10llu\n", TOP_LOOP_SVC_W, v->w->service, v->w->pid,
		       p99, (unsigned long long)v->blocked, (unsigned long long)v->iterations);
	}
	putchar('\n');
}

/* "loop p99  svc/pid 512us  svc/pid 262.14ms(2 blocked)": the worst workers that fit in w. */
static void head_loops(struct line *l, const struct top *tp, int w)
{
	const struct frame *f = &tp->f;
	char item[SERVICE_NAME_MAX + 64], dur[16], blk[32], more[16];
	int active = 0, shown = 0;

	for (int i = 0; i < f->n_loops; i++)
		active += f->loops[i].iterations || f->loops[i].blocked;
	line_add(l, "loop p99");
	if (!active) {
		line_add(l, "  (no event-loop iteration in the window)");
		return;
	}
	for (int i = 0; i < f->n_loops; i++) {
		const struct loop_view *v = &f->loops[i];

		if (!v->iterations && !v->blocked)
			continue;
		fmt_dur(dur, sizeof(dur), v->p99_ms * 1000);
		blk[0] = 0;
		if (v->blocked)
			snprintf(blk, sizeof(blk), "(%llu blocked)",
				 (unsigned long long)v->blocked);
		snprintf(item, sizeof(item), "  %s/%u %s%s", v->w->service, v->w->pid,
			 v->iterations ? dur : "-", blk);
		snprintf(more, sizeof(more), "  +%d", active - shown - 1);
		if ((int)(l->len + strlen(item) + (shown + 1 < active ? strlen(more) : 0)) > w) {
			snprintf(more, sizeof(more), "  +%d", active - shown);
			if ((int)(l->len + strlen(more)) <= w)
				line_add(l, "%s", more);
			break;
		}
		line_add(l, "%s", item);
		shown++;
	}
}

static void print_text_frame(const struct top *tp)
{
	struct layout L;
	struct line l;

	layout__full(&L, &tp->f);
	line_reset(&l);
	head_title(&l, tp, true);
	puts(l.s);
	line_reset(&l);
	head_totals(&l, tp);
	puts(l.s);
	line_reset(&l);
	head_system(&l, tp);
	puts(l.s);
	line_reset(&l);
	fmt_title(&l, &L);
	puts(l.s);
	for (int i = 0; i < tp->f.n; i++) {
		line_reset(&l);
		fmt_row(&l, tp->f.shown[i], &L);
		puts(l.s);
	}
	putchar('\n');
	print_loops(tp);
	fflush(stdout);
}

/* ---- JSON frames -------------------------------------------------------------------- */

static void json_opt(struct jbuf *jb, const char *key, bool have, double v)
{
	if (have) {
		jb_dbl(jb, key, v);
	} else {
		jb_key(jb, key);
		jb_raw(jb, "null", 4);
	}
}

static void row_json(const struct row_view *v, struct jbuf *jb)
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

static void frame__json(const struct top *tp, struct jbuf *jb)
{
	const struct frame *f = &tp->f;
	const struct src_stats *st = &tp->src.st;

	jb_obj_open(jb);
	jb_u64(jb, "time", f->when);
	jb_str(jb, "mode", tp->o.daemon ? "daemon" : "standalone");
	if (tp->o.daemon)
		jb_str(jb, "daemon", tp->o.daemon);
	jb_u64(jb, "window_s", tp->o.window);
	jb_dbl(jb, "span_s", f->span);
	jb_dbl(jb, "interval_s", tp->o.interval);
	jb_str(jb, "sort", cols[tp->o.sort].name);
	jb_str(jb, "filter", tp->o.filter);
	jb_u64(jb, "requests", f->requests);
	jb_dbl(jb, "rps", f->rps);
	jb_dbl(jb, "error_pct", f->err_pct);
	jb_u64(jb, "in_flight", f->in_flight);
	jb_dbl(jb, "bytes_per_s", f->bps);
	jb_u64(jb, "observed_processes", st->processes);
	jb_u64(jb, "events_lost", st->events_lost);
	json_opt(jb, "obsctl_cpu_pct", f->cpu_ctl >= 0, f->cpu_ctl);
	json_opt(jb, "obsd_cpu_pct", f->cpu_obsd >= 0, f->cpu_obsd);
	jb_u64(jb, "row_count", f->n_all);
	jb_u64(jb, "overflow_requests", tp->t.overflow);
	jb_u64(jb, "late_requests", tp->t.late);
	jb_u64(jb, "missed_requests", st->missed);
	if (tp->src.err[0])
		jb_str(jb, "error", tp->src.err);
	jb_arr_open(jb, "rows");
	for (int i = 0; i < f->n; i++)
		row_json(f->shown[i], jb);
	jb_arr_close(jb);
	jb_arr_open(jb, "loops");
	for (int i = 0; i < f->n_loops; i++)
		loop_json(&f->loops[i], jb);
	jb_arr_close(jb);
	if (tp->src.loops.untracked)
		jb_u64(jb, "loop_workers_untracked", tp->src.loops.untracked);
	jb_obj_close(jb);
}

static void print_json_frame(struct top *tp)
{
	jb_reset(&tp->jb);
	frame__json(tp, &tp->jb);
	if (!tp->jb.oom)
		printf("%s\n", tp->jb.buf);
	fflush(stdout);
}

/* ---- the screen ------------------------------------------------------------------- */

/* Text on line y, cut to the screen (a column short on the last line) and padded. */
static void ui__put(int y, attr_t attr, const char *text)
{
	int w = COLS - (y == LINES - 1);

	if (y < 0 || y >= LINES || w <= 0)
		return;
	attrset(attr);
	mvprintw(y, 0, "%-*.*s", w, w, text);
	attrset(A_NORMAL);
}

/* Index of the selected row among those shown; selects the first when it is not shown. */
static int ui__sel_index(struct top *tp)
{
	const struct frame *f = &tp->f;

	for (int i = 0; i < f->n; i++)
		if (f->shown[i]->r == tp->ui.sel)
			return i;
	tp->ui.sel = f->n ? f->shown[0]->r : NULL;
	return 0;
}

static void ui__select(struct top *tp, int delta)
{
	int i = ui__sel_index(tp) + delta;

	if (!tp->f.n)
		return;
	if (i < 0)
		i = 0;
	if (i >= tp->f.n)
		i = tp->f.n - 1;
	tp->ui.sel = tp->f.shown[i]->r;
}

static int ui__table_rows(void)
{
	return LINES - TOP_HEAD_LINES - 1;
}

static void ui__hints(struct line *l)
{
	line_add(l, "q quit  h help  / filter  space pause  Enter detail  sort:");
	for (int c = COL_RPS; c < COL_N + COL_RPS; c++)
		line_add(l, " %c", cols[c % COL_N].key);
}

static void ui__status_line(const struct top *tp, struct line *l)
{
	if (tp->ui.editing)
		line_add(l, "filter: %s_   (Enter keeps it, Esc cancels)", tp->o.filter);
	else if (tp->o.filter[0])
		line_add(l, "filter: %s   (%d of %d rows; Esc clears)", tp->o.filter, tp->f.n,
			 tp->f.n_all);
	if (tp->ui.paused)
		line_add(l, "%sPAUSED (space resumes)", l->len ? "   " : "");
}

static void ui__table(struct top *tp)
{
	int h = ui__table_rows(), sel = ui__sel_index(tp), y = TOP_HEAD_LINES;
	struct layout L;
	struct line l;

	line_reset(&l);
	head_title(&l, tp, false);
	ui__put(0, A_BOLD, l.s);
	line_reset(&l);
	head_totals(&l, tp);
	ui__put(1, A_NORMAL, l.s);
	line_reset(&l);
	head_system(&l, tp);
	ui__put(2, A_NORMAL, l.s);
	line_reset(&l);
	head_loops(&l, tp, COLS - 1);
	ui__put(3, A_NORMAL, l.s);
	line_reset(&l);
	ui__status_line(tp, &l);
	ui__put(4, A_BOLD, l.s);
	layout__fit(&L, &tp->f, COLS);
	line_reset(&l);
	fmt_title(&l, &L);
	ui__put(5, A_REVERSE, l.s);
	if (sel < tp->ui.offset)
		tp->ui.offset = sel;
	if (sel >= tp->ui.offset + h)
		tp->ui.offset = sel - h + 1;
	tp->ui.offset = max_i(0, tp->ui.offset < tp->f.n - h ? tp->ui.offset : tp->f.n - h);
	for (int i = tp->ui.offset; i < tp->f.n && y < TOP_HEAD_LINES + h; i++, y++) {
		line_reset(&l);
		fmt_row(&l, tp->f.shown[i], &L);
		ui__put(y, i == sel ? A_REVERSE | A_BOLD : A_NORMAL, l.s);
	}
	if (!tp->f.n)
		ui__put(y, A_NORMAL, tp->f.n_all ? "  (no row matches the filter)" :
					       "  (no request seen yet)");
	line_reset(&l);
	ui__hints(&l);
	ui__put(LINES - 1, A_DIM, l.s);
}

/* The window's histogram of r as up to `bars` bars from line y; lines used. */
static int ui__histogram(const struct row *r, int y, int bars)
{
	unsigned lo = LH_BUCKETS, hi = 0, span, first, last;
	int n, len, bar_w = COLS - TOP_LABEL_W - TOP_COUNT_W - 1;
	uint64_t cnt[TOP_BARS_MAX] = {}, top = 0;
	char a[16], b[16], bar[TOP_LINE_MAX];
	struct line l;

	for (unsigned i = 0; i < LH_BUCKETS; i++) {
		if (!r->hist[i])
			continue;
		if (lo == LH_BUCKETS)
			lo = i;
		hi = i;
	}
	if (lo == LH_BUCKETS) {
		ui__put(y, A_NORMAL, "  (no request in the window)");
		return 1;
	}
	bar_w = bar_w < 1 ? 1 : bar_w >= TOP_LINE_MAX ? TOP_LINE_MAX - 1 : bar_w;
	span = (hi - lo + bars) / bars;
	n = (hi - lo + span) / span;
	for (unsigned i = lo; i <= hi; i++)
		cnt[(i - lo) / span] += r->hist[i];
	for (int k = 0; k < n; k++)
		top = cnt[k] > top ? cnt[k] : top;
	for (int k = 0; k < n; k++) {
		first = lo + k * span;
		last = first + span - 1 < hi ? first + span - 1 : hi;
		len = cnt[k] ? max_i(1, cnt[k] * bar_w / top) : 0;
		memset(bar, '#', len);
		bar[len] = 0;
		fmt_dur(a, sizeof(a), lh_lower(first));
		fmt_dur(b, sizeof(b), lh_lower(last) + lh_width(last));
		line_reset(&l);
		line_add(&l, " %9s - %-9s |%-*s %llu", a, b, bar_w, bar,
			 (unsigned long long)cnt[k]);
		ui__put(y + k, A_NORMAL, l.s);
	}
	return n;
}

/* Status codes of r since top started, from line y, at most max lines; lines used. */
static int ui__status_codes(const struct row *r, int y, int max)
{
	struct status_count s[TOP_STATUS_MAX], tmp;
	int n = r->n_status, used = 0;
	char code[32];
	struct line l;

	memcpy(s, r->status, n * sizeof(s[0]));
	for (int i = 1; i < n; i++)
		for (int k = i; k > 0 && s[k - 1].code > s[k].code; k--) {
			tmp = s[k];
			s[k] = s[k - 1];
			s[k - 1] = tmp;
		}
	for (int i = 0; i <= n && used < max; i++) {
		uint64_t cnt = i < n ? s[i].n : r->status_other;

		if (i == n && !cnt)
			break;
		if (i == n)
			snprintf(code, sizeof(code), "other");
		else if (s[i].code)
			snprintf(code, sizeof(code), "%d", s[i].code);
		else
			snprintf(code, sizeof(code), "none (no response head)");
		line_reset(&l);
		line_add(&l, "  %10llu  %5.1f%%  %s", (unsigned long long)cnt,
			 r->requests ? 100.0 * cnt / r->requests : 0, code);
		ui__put(y + used++, A_NORMAL, l.s);
	}
	return used;
}

/* The slowest requests of r's window, from line y (header included), at most max lines. */
static void ui__slowest(const struct row *r, int y, int max)
{
	bool wide = COLS >= TOP_WIDE_COLS;
	struct slow_req s[TOP_SLOWEST], tmp;
	char dur[16], when[16], st[8];
	int n = r->n_slow;
	struct line l;
	struct tm tm;
	time_t sec;

	memcpy(s, r->slow, n * sizeof(s[0]));
	for (int i = 1; i < n; i++)
		for (int k = i; k > 0 && s[k - 1].dur_us < s[k].dur_us; k--) {
			tmp = s[k];
			s[k] = s[k - 1];
			s[k - 1] = tmp;
		}
	line_reset(&l);
	line_add(&l, " %8s %3s %s%-32s %-32s%s", "DURATION", "ST", wide ? "TIME         " : "",
		 "REQUEST_ID", "TRACE_ID", wide ? " PATH" : "");
	ui__put(y, A_UNDERLINE, l.s);
	for (int i = 0; i < n && i + 1 < max; i++) {
		fmt_dur(dur, sizeof(dur), s[i].dur_us);
		snprintf(st, sizeof(st), s[i].status ? "%d" : "---", s[i].status);
		sec = s[i].wall_ns / NS_PER_S;
		localtime_r(&sec, &tm);
		strftime(when, sizeof(when), "%H:%M:%S", &tm);
		line_reset(&l);
		line_add(&l, " %8s %3s ", dur, st);
		if (wide)
			line_add(&l, "%s.%03u ", when, (unsigned)(s[i].wall_ns / NS_PER_MS % 1000));
		line_add(&l, "%-32.32s %-32s", s[i].request_id, s[i].trace_id);
		if (wide)
			line_add(&l, " %s", s[i].path);
		ui__put(y + 1 + i, A_NORMAL, l.s);
	}
}

static void ui__detail_head(struct top *tp, const struct row *r)
{
	char p50[16], p90[16], p99[16], max[16], bytes[16];
	struct row_view v;
	struct line l;

	row__view(&tp->t, r, table__span(&tp->t), &v);
	v.in_flight = stats__in_flight(&tp->src.st, r->service);
	line_reset(&l);
	line_add(&l, "%s %s - service %s - last %ds", r->method, r->route, r->service,
		 tp->o.window);
	ui__put(0, A_BOLD, l.s);
	fmt_bytes(bytes, sizeof(bytes), v.bps);
	line_reset(&l);
	line_add(&l, "requests %llu total, %.1f/s - errors %.1f%% - in flight %llu (service) - "
		 "%sB/s", (unsigned long long)v.requests, v.rps, v.err_pct,
		 (unsigned long long)v.in_flight, bytes);
	ui__put(1, A_NORMAL, l.s);
	fmt_ms(p50, sizeof(p50), v.win_requests, v.p50);
	fmt_ms(p90, sizeof(p90), v.win_requests, v.p90);
	fmt_ms(p99, sizeof(p99), v.win_requests, v.p99);
	fmt_ms(max, sizeof(max), v.win_requests, v.max);
	line_reset(&l);
	line_add(&l, "latency ms: p50 %s  p90 %s  p99 %s  max %s  (%llu requests in the window)",
		 p50, p90, p99, max, (unsigned long long)v.win_requests);
	ui__put(2, A_NORMAL, l.s);
}

/*
 * Detail of the selected row: the header (3 lines), then the histogram, the
 * status codes and the slowest requests share the rest; each section has a
 * title and a blank line before it, the hints take the last line.
 */
static void ui__detail(struct top *tp, const struct row *r)
{
	int rest = LINES - 1 - 3 - 3 * 2 - 1, codes, slow, bars, y = 4;
	struct line l;

	ui__detail_head(tp, r);
	codes = r->n_status + (r->status_other > 0);
	codes = codes < TOP_STATUS_SHOW ? codes : TOP_STATUS_SHOW;
	slow = r->n_slow;
	bars = rest - codes - slow;
	bars = bars < TOP_BARS_MIN ? TOP_BARS_MIN : bars > TOP_BARS_MAX ? TOP_BARS_MAX : bars;
	slow = max_i(0, rest - codes - bars < slow ? rest - codes - bars : slow);
	line_reset(&l);
	line_add(&l, "Latency histogram, last %ds", tp->o.window);
	ui__put(y++, A_BOLD, l.s);
	y += ui__histogram(r, y, bars) + 1;
	ui__put(y++, A_BOLD, "Status codes since top started");
	y += ui__status_codes(r, y, codes) + 1;
	line_reset(&l);
	line_add(&l, "Slowest requests, last %ds", tp->o.window);
	ui__put(y++, A_BOLD, l.s);
	if (y < LINES - 1)
		ui__slowest(r, y, min_i(slow + 1, LINES - 1 - y));
	ui__put(LINES - 1, A_DIM, "Esc/q back  up/down previous/next row  space pause  h help");
}

static const char *const help_text[] = {
	"obsctl top - help (Esc or q to leave)",
	"",
	"  q              quit (on the detail or help screen: back)",
	"  h ?            this help",
	"  up/down j k    select a row; PgUp/PgDn, Home/End (g G) jump",
	"  Enter          detail of the selected row: latency histogram, status",
	"                 codes, slowest recent requests with request and trace ids",
	"  /              filter rows by a substring of service, method or route",
	"                 (Enter keeps it, Esc cancels; Esc on the table clears it)",
	"  space          pause/resume the table (requests are still counted)",
	"  sort keys      r REQ/S  5 P50  9 P90  p P99  m MAX  e ERR%  i INFL",
	"                 b BYTES/S  n route name  c REQS; the same key again or R",
	"                 reverses; < and > step through the columns",
	"",
	"Columns; rates and percentiles cover the window (--window, default 10 s):",
	"  REQS     requests since top started (wide screens)",
	"  REQ/S    requests completed per second",
	"  P50ms .. latency percentiles and maximum, ms: first request byte read to",
	"           last response byte written (log-linear histogram, within 2%)",
	"  ERR%     5xx responses and failed requests (no complete response)",
	"  INFL     requests in flight in the row's service: per service, shared by",
	"           its routes; standalone from the open connections, with --daemon",
	"           from obsd's /metrics http_requests_in_flight",
	"  BYTES/S  request + response bytes per second",
	"Line 4, loop p99: the workers with the slowest event-loop iterations in the",
	"  window (upper bound of the log2 bucket of the p99) and blocked iterations",
};

static void ui__help(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(help_text); i++)
		ui__put(i, i ? A_NORMAL : A_BOLD, help_text[i]);
}

static void ui__draw(struct top *tp)
{
	erase();
	if (COLS < TOP_MIN_COLS || LINES < TOP_MIN_LINES)
		ui__put(0, A_NORMAL, "obsctl top: terminal too small");
	else if (tp->ui.scr == SCR_HELP)
		ui__help();
	else if (tp->ui.scr == SCR_DETAIL && tp->ui.sel)
		ui__detail(tp, tp->ui.sel);
	else
		ui__table(tp);
	wnoutrefresh(stdscr);
	doupdate();
}

static void ui__key_edit(struct top *tp, int ch)
{
	size_t len = strlen(tp->o.filter);

	if (ch == TOP_KEY_ESC) {
		memcpy(tp->o.filter, tp->ui.edit_prev, sizeof(tp->o.filter));
		tp->ui.editing = false;
	} else if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
		tp->ui.editing = false;
	} else if (ch == KEY_BACKSPACE || ch == TOP_KEY_DEL || ch == TOP_KEY_CTRL_H) {
		if (len)
			tp->o.filter[len - 1] = 0;
	} else if (ch >= ' ' && ch < TOP_KEY_DEL && len + 1 < sizeof(tp->o.filter)) {
		tp->o.filter[len] = ch;
		tp->o.filter[len + 1] = 0;
	}
}

/* A sort key: that column, or the other way round when it is already the one. */
static void ui__sort_key(struct top *tp, int ch)
{
	for (int c = 0; c < COL_N; c++) {
		if (cols[c].key != ch)
			continue;
		if (tp->o.sort == (enum col)c) {
			tp->o.reverse = !tp->o.reverse;
		} else {
			tp->o.sort = c;
			tp->o.reverse = false;
		}
	}
}

/* A key on the table screen; false to quit. */
static bool ui__key_table(struct top *tp, int ch)
{
	int page = max_i(ui__table_rows() - 1, 1);

	switch (ch) {
	case 'q':
		return false;
	case 'h':
	case '?':
		tp->ui.back = SCR_TABLE;
		tp->ui.scr = SCR_HELP;
		break;
	case ' ':
		tp->ui.paused = !tp->ui.paused;
		break;
	case '/':
		memcpy(tp->ui.edit_prev, tp->o.filter, sizeof(tp->ui.edit_prev));
		tp->ui.editing = true;
		break;
	case TOP_KEY_ESC:
		tp->o.filter[0] = 0;
		break;
	case KEY_UP:
	case 'k':
		ui__select(tp, -1);
		break;
	case KEY_DOWN:
	case 'j':
		ui__select(tp, 1);
		break;
	case KEY_PPAGE:
		ui__select(tp, -page);
		break;
	case KEY_NPAGE:
		ui__select(tp, page);
		break;
	case KEY_HOME:
	case 'g':
		ui__select(tp, -TOP_MAX_ROWS);
		break;
	case KEY_END:
	case 'G':
		ui__select(tp, TOP_MAX_ROWS);
		break;
	case '\n':
	case '\r':
	case KEY_ENTER:
		ui__sel_index(tp);
		if (tp->ui.sel)
			tp->ui.scr = SCR_DETAIL;
		break;
	case 'R':
		tp->o.reverse = !tp->o.reverse;
		break;
	case '<':
	case '>':
		tp->o.sort = (tp->o.sort + (ch == '>' ? 1 : COL_N - 1)) % COL_N;
		tp->o.reverse = false;
		break;
	default:
		ui__sort_key(tp, ch);
	}
	return true;
}

static void ui__key_detail(struct top *tp, int ch)
{
	switch (ch) {
	case 'q':
	case TOP_KEY_ESC:
	case KEY_BACKSPACE:
	case KEY_LEFT:
		tp->ui.scr = SCR_TABLE;
		break;
	case 'h':
	case '?':
		tp->ui.back = SCR_DETAIL;
		tp->ui.scr = SCR_HELP;
		break;
	case KEY_UP:
	case 'k':
		ui__select(tp, -1);
		break;
	case KEY_DOWN:
	case 'j':
		ui__select(tp, 1);
		break;
	case ' ':
		tp->ui.paused = !tp->ui.paused;
		break;
	}
}

/* One key; false to quit. */
static bool ui__key(struct top *tp, int ch)
{
	if (ch == KEY_RESIZE)
		return true;
	if (tp->ui.editing) {
		ui__key_edit(tp, ch);
		return true;
	}
	if (tp->ui.scr == SCR_DETAIL) {
		ui__key_detail(tp, ch);
		return true;
	}
	if (tp->ui.scr != SCR_HELP)
		return ui__key_table(tp, ch);
	if (ch == 'q' || ch == 'h' || ch == '?' || ch == TOP_KEY_ESC || ch == '\n' || ch == '\r')
		tp->ui.scr = tp->ui.back;
	return true;
}

/* Keep what is written to stderr (libbpf, pipeline warnings) off the screen
 * until it is closed; it is shown then. */
static void stderr_hold(struct ui *ui)
{
	fflush(stderr);
	ui->err_tmp = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (ui->err_tmp < 0)
		return;
	ui->err_saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
	if (ui->err_saved < 0 || dup2(ui->err_tmp, STDERR_FILENO) < 0) {
		if (ui->err_saved >= 0)
			close(ui->err_saved);
		close(ui->err_tmp);
		ui->err_saved = ui->err_tmp = -1;
	}
}

static void stderr_release(struct ui *ui)
{
	char buf[4096];
	ssize_t n;

	if (ui->err_saved < 0)
		return;
	fflush(stderr);
	dup2(ui->err_saved, STDERR_FILENO);
	close(ui->err_saved);
	lseek(ui->err_tmp, 0, SEEK_SET);
	while ((n = read(ui->err_tmp, buf, sizeof(buf))) > 0)
		if (write(STDERR_FILENO, buf, n) != n)
			break;
	close(ui->err_tmp);
	ui->err_saved = ui->err_tmp = -1;
}

/* The screen needs a terminal on both stdin and stdout; checked before the probes load. */
static bool ui__possible(void)
{
	if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO))
		return true;
	fprintf(stderr, "obsctl top: not a terminal; use --batch or --json for plain output\n");
	return false;
}

static int ui__open(struct ui *ui)
{
	setlocale(LC_ALL, "");
	ui->term = newterm(NULL, stdout, stdin);
	if (!ui->term) {
		fprintf(stderr, "obsctl top: cannot drive the terminal (TERM=%s); try --batch\n",
			getenv("TERM") ? getenv("TERM") : "");
		return -1;
	}
	cbreak();
	noecho();
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	curs_set(0);
	set_escdelay(TOP_ESC_DELAY_MS);
	stderr_hold(ui);
	return 0;
}

static void ui__close(struct ui *ui)
{
	if (!ui->term)
		return;
	endwin();
	delscreen(ui->term);
	ui->term = NULL;
	stderr_release(ui);
}

/* ---- main loops ------------------------------------------------------------------ */

/* Wait until `until` (CLOCK_MONOTONIC ns) or a key; standalone, drain the ring meanwhile. */
static void top__wait(struct top *tp, uint64_t until, bool keys)
{
	uint64_t now = mono_ns();
	int n = 0, ms = until > now ? (until - now + NS_PER_MS - 1) / NS_PER_MS : 0;
	struct pollfd pfd[2];

	if (keys)
		pfd[n++] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
	if (tp->src.p) {
		pfd[n++] = (struct pollfd){ .fd = pipeline__fd(tp->src.p), .events = POLLIN };
		ms = ms < TOP_POLL_MS ? ms : TOP_POLL_MS;
	}
	poll(pfd, n, ms);
	if (tp->src.p)
		standalone__pump(&tp->src);
}

static uint64_t next_frame(uint64_t prev, double interval)
{
	uint64_t next = prev + (uint64_t)(interval * NS_PER_S), now = mono_ns();

	return next > now ? next : now + (uint64_t)(interval * NS_PER_S);
}

static int top__run_batch(struct top *tp)
{
	uint64_t next = mono_ns();
	long frames = 0;

	while (!top_stop) {
		if (mono_ns() >= next) {
			top__collect(tp);
			top__compute(tp);
			if (tp->o.json)
				print_json_frame(tp);
			else
				print_text_frame(tp);
			if (fflush(stdout) == EOF || ferror(stdout))
				break;	/* the reader went away (| head) */
			if (tp->o.iterations && ++frames >= tp->o.iterations)
				break;
			next = next_frame(next, tp->o.interval);
		}
		top__wait(tp, next, false);
	}
	return 0;
}

static int top__run_screen(struct top *tp)
{
	uint64_t next = mono_ns();
	bool quit = false, dirty;
	int ch;

	if (ui__open(&tp->ui))
		return 1;
	while (!top_stop && !quit) {
		dirty = false;
		if (mono_ns() >= next) {
			top__collect(tp);
			if (!tp->ui.paused)
				top__compute(tp);
			next = next_frame(next, tp->o.interval);
			dirty = true;
		}
		if (dirty)
			ui__draw(tp);
		top__wait(tp, next, true);
		while (!quit && (ch = getch()) != ERR) {
			quit = !ui__key(tp, ch);
			dirty = true;
		}
		if (dirty && !quit) {
			frame__arrange(tp);
			ui__draw(tp);
		}
	}
	ui__close(&tp->ui);
	return 0;
}

static void top__sink(void *ctx, const struct record *r)
{
	struct top *tp = ctx;
	struct sample s;

	sample__from_record(&s, r);
	table__add(&tp->t, &s);
}

static int standalone__open(struct top *tp)
{
	if (!can_load_probes()) {
		fprintf(stderr, "obsctl top: loading the probes needs root (or CAP_BPF and "
				"CAP_PERFMON): run it with sudo, or read a running obsd with "
				"--daemon ADDR:PORT\n");
		return 1;
	}
	tp->src.p = pipeline__open(&tp->o.po);
	if (!tp->src.p) {
		fprintf(stderr, "obsctl top: cannot load the probes: %s\n", strerror(errno));
		return 1;
	}
	if (pipeline__add_sink(tp->src.p, top__sink, tp)) {
		fprintf(stderr, "obsctl top: no room for another pipeline sink\n");
		return 1;
	}
	tp->src.st.obsd_cpu_s = -1;
	fprintf(stderr, "obsctl top: probes attached\n");
	return 0;
}

/* Start counting at obsd's current total: earlier records are not top's. */
static int daemon__open(struct top *tp)
{
	tp->src.addr = tp->o.daemon;
	tp->src.st.obsd_cpu_s = -1;
	if (daemon__poll_requests(&tp->src, NULL)) {
		fprintf(stderr, "obsctl top: %s\n", tp->src.err);
		return 1;
	}
	tp->src.err[0] = 0;
	return 0;
}

static int top__open(struct top *tp)
{
	struct sigaction sa = { .sa_handler = on_signal };

	table__init(&tp->t, tp->o.window);
	tp->src.loops.window = tp->o.window;
	jb_init(&tp->jb);
	tp->prev_obsd_cpu = -1;
	tp->ui.err_saved = tp->ui.err_tmp = -1;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	return tp->o.daemon ? daemon__open(tp) : standalone__open(tp);
}

/* The pipeline goes first: requests it fails on the way out still reach the table. */
static void top__close(struct top *tp)
{
	pipeline__free(tp->src.p);
	tp->src.p = NULL;
	table__free(&tp->t);
	loopset__free(&tp->src.loops);
	jb_free(&tp->jb);
}

/* ---- options -------------------------------------------------------------------- */

static void top__usage(FILE *f)
{
	fprintf(f,
		"Usage: obsctl top [options]\n"
		"Live latency table: one row per (service, method, route) with requests/s,\n"
		"p50/p90/p99/max latency, error %%, in flight and bytes/s over a sliding\n"
		"window.\n\n"
		"  --window S          window of rates and percentiles in seconds\n"
		"                      (default %d, %d..%d)\n"
		"  --interval S        seconds between frames (default %g)\n"
		"  --sort COLUMN       rps, p50, p90, p99, max, err, inflight, bytes, route,\n"
		"                      requests (default rps; numbers largest first)\n"
		"  --filter TEXT       only rows whose service, method or route contains TEXT\n"
		"  -b, --batch         plain-text frames on stdout instead of the screen\n"
		"  --json              one JSON object per frame on stdout (implies --batch)\n"
		"  -n, --iterations N  with --batch/--json: stop after N frames (default: never)\n"
		"  --daemon ADDR:PORT  read a running obsd (/api/requests, /health, /metrics)\n"
		"                      instead of loading the probes (obsd's default: %s)\n"
		"  --pid PID, --comm NAME, --port PORT, --unix PATH, --capture-bytes N\n"
		"                      without --daemon: which servers to observe, as obsd\n"
		"  -v, --verbose, -h, --help\n\n"
		"Without --daemon obsctl loads the probes itself: that needs root (or CAP_BPF\n"
		"and CAP_PERFMON). Requests are counted from the moment top starts.\n"
		"Columns: REQS requests since top started; REQ/S, P50ms..MAXms, ERR%% (5xx and\n"
		"failed requests), BYTES/S (request + response) over the window; INFL requests\n"
		"in flight in the row's service (per service, shared by its routes): from the\n"
		"open connections standalone, from obsd's /metrics http_requests_in_flight\n"
		"with --daemon. Event loops, per worker over the window: p99 busy time of an\n"
		"iteration (upper bound of its log2 bucket) and blocked iterations: the\n"
		"\"loop p99\" line, the LOOP section of --batch, \"loops\" in --json.\n"
		"Keys on the screen: h or ? for help, q to quit.\n",
		TOP_WINDOW_DEFAULT, TOP_WINDOW_MIN, TOP_WINDOW_MAX, TOP_INTERVAL_DEFAULT,
		TOP_DAEMON_DEFAULT);
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_seconds(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= TOP_INTERVAL_MIN && v <= TOP_INTERVAL_MAX))
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_sort(const char *s, enum col *out)
{
	for (int c = 0; c < COL_N; c++) {
		if (!strcmp(s, cols[c].name)) {
			*out = c;
			return 0;
		}
	}
	return -EINVAL;
}

/* A standalone target option (the same as obsd's). */
static int target_opt(struct obs_filter *f, int o, const char *arg)
{
	long v;

	switch (o) {
	case 'p':
		return obs_filter__add_pid(f, arg);
	case 'c':
		return obs_filter__add_comm(f, arg);
	case 'P':
		return obs_filter__add_port(f, arg);
	case 'U':
		return obs_filter__add_unix(f, arg);
	case 'C':
		if (parse_long(arg, OBS_TAIL_MAX, OBS_CAP_MAX, &v))
			return -EINVAL;
		f->cap_bytes = v;
		return 0;
	}
	return -EINVAL;
}

static int opt_one(struct opts *o, int c, const char *arg, bool *targets)
{
	long v;

	switch (c) {
	case 'w':
		if (parse_long(arg, TOP_WINDOW_MIN, TOP_WINDOW_MAX, &v))
			return -EINVAL;
		o->window = v;
		return 0;
	case 'i':
		return parse_seconds(arg, &o->interval);
	case 's':
		return parse_sort(arg, &o->sort);
	case 'f':
		snprintf(o->filter, sizeof(o->filter), "%s", arg);
		return 0;
	case 'b':
		o->batch = true;
		return 0;
	case 'j':
		o->json = o->batch = true;
		return 0;
	case 'n':
		return parse_long(arg, 0, LONG_MAX, &o->iterations);
	case 'd':
		o->daemon = arg;
		return 0;
	case 'v':
		log_level++;
		return 0;
	}
	*targets = true;
	return target_opt(&o->po.filter, c, arg);
}

/* 0: run; 1: help shown; 2: bad usage (said why). */
static int opts__parse(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "window", required_argument, NULL, 'w' },
		{ "interval", required_argument, NULL, 'i' },
		{ "sort", required_argument, NULL, 's' },
		{ "filter", required_argument, NULL, 'f' },
		{ "batch", no_argument, NULL, 'b' },
		{ "json", no_argument, NULL, 'j' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "daemon", required_argument, NULL, 'd' },
		{ "pid", required_argument, NULL, 'p' },
		{ "comm", required_argument, NULL, 'c' },
		{ "port", required_argument, NULL, 'P' },
		{ "unix", required_argument, NULL, 'U' },
		{ "capture-bytes", required_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	bool targets = false;
	int c;

	o->window = TOP_WINDOW_DEFAULT;
	o->interval = TOP_INTERVAL_DEFAULT;
	o->sort = COL_RPS;
	while ((c = getopt_long(argc, argv, "bn:vh", lo, NULL)) != -1) {
		if (c == 'h') {
			top__usage(stdout);
			return 1;
		}
		if (c == '?' || opt_one(o, c, optarg, &targets)) {
			if (c != '?')
				fprintf(stderr, "obsctl top: bad value '%s' for %s\n", optarg,
					argv[optind - 1]);
			top__usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "obsctl top: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (targets && o->daemon) {
		fprintf(stderr, "obsctl top: --pid/--comm/--port/--unix/--capture-bytes choose what "
				"obsctl's own probes observe; with --daemon, obsd's options do\n");
		return 2;
	}
	return 0;
}

int top_main(int argc, char **argv)
{
	struct top *tp = calloc(1, sizeof(*tp));
	int rc;

	if (!tp) {
		fprintf(stderr, "obsctl top: out of memory\n");
		return 1;
	}
	rc = opts__parse(&tp->o, argc, argv);
	if (rc == 1) {
		free(tp);
		return 0;
	}
	if (!rc && !tp->o.batch && !ui__possible())
		rc = 1;
	if (!rc)
		rc = top__open(tp);
	if (!rc)
		rc = tp->o.batch ? top__run_batch(tp) : top__run_screen(tp);
	top__close(tp);
	free(tp);
	return rc;
}
