// SPDX-License-Identifier: MIT
/*
 * obsctl top's --daemon source: obsd's GET /api/stats (docs/api.md), fetched
 * with libcurl's multi interface so that no frame, key or quit ever waits for
 * it, and read with json-c. The document holds cumulative totals; what a row
 * gained is the difference with the previous document, remembered per series
 * (struct memo). The first document is only the baseline: top counts what
 * obsd sees from the moment it starts. When obsd restarts (another pid, or
 * less uptime) every series starts over from zero.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include "cli/top_source.h"

#define DAEMON_URL_MAX		320
#define DAEMON_PATH		"/api/stats"
#define DAEMON_TIMEOUT_MS	5000	/* a whole /api/stats transfer */
#define DAEMON_CONNECT_MS	2000
#define DAEMON_BODY_MAX		(256u << 20)	/* largest answer read */
#define DAEMON_BODY_INIT	65536
#define DAEMON_IDLE_POLL_MS	10	/* a transfer under way without a socket yet */
#define DAEMON_JSON_DEPTH	16
#define DAEMON_SERIES_MAX	65536	/* series remembered; more are not counted */
#define DAEMON_MEMO_HASH	4096	/* power of two */
#define DAEMON_KEY_MAX		1024	/* the labels of one series, joined */

/* A series' totals in the previous document. */
struct memo_entry {
	struct memo_entry *next;	/* hash chain */
	char *key;			/* label values joined by '\x1f', owned */
	uint64_t count, errors, bytes;
	struct lhist latency;		/* cumulative, owned */
};

struct memo {
	struct memo_entry *hash[DAEMON_MEMO_HASH];
	size_t n;
	uint64_t untracked;		/* series of the last document not remembered */
};

/* A route's gain being built: its nonzero latency differences. */
struct delta {
	uint16_t idx[LH_BUCKETS];
	uint64_t n[LH_BUCKETS];
	uint32_t len;
	uint64_t max_us;
};

struct body {
	char *buf;			/* owned */
	size_t len, cap;
	bool too_big;
};

struct daemon {
	struct top_source src;		/* first: the generic part */
	const char *addr;		/* borrowed from the options */
	char url[DAEMON_URL_MAX];
	char curl_err[CURL_ERROR_SIZE];
	CURLM *multi;			/* owned */
	CURL *easy;			/* the transfer under way, or NULL; owned */
	struct body body;
	bool done;			/* a refresh completed, pump() has not said so yet */
	bool baseline;			/* the next document only sets the baseline */
	uint64_t obsd_pid;
	double obsd_uptime;
	bool scheme_ok;			/* obsd's latency buckets are lhist's */
	struct memo memo;
	struct delta d;
};

static struct daemon *daemon_of(struct top_source *src)
{
	return (struct daemon *)src;
}

/* Say what went wrong (shown in the frame's header), cut to fit. */
static void daemon__err(struct daemon *dm, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void daemon__err(struct daemon *dm, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dm->src.st.err, sizeof(dm->src.st.err), fmt, ap);
	va_end(ap);
}

/* ---- the memo of previous totals ------------------------------------------ */

static uint32_t memo_hash(const char *key)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	while (*key)
		h = (h ^ (uint8_t)*key++) * 16777619u;
	return h & (DAEMON_MEMO_HASH - 1);
}

/* The entry of key, made (zero) on first use; NULL when full or out of memory. */
static struct memo_entry *memo__get(struct memo *m, const char *key)
{
	uint32_t h = memo_hash(key);
	struct memo_entry *e;

	for (e = m->hash[h]; e; e = e->next)
		if (!strcmp(e->key, key))
			return e;
	if (m->n >= DAEMON_SERIES_MAX)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->key = strdup(key);
	if (!e->key) {
		free(e);
		return NULL;
	}
	e->next = m->hash[h];
	m->hash[h] = e;
	m->n++;
	return e;
}

static void memo__free(struct memo *m)
{
	for (int i = 0; i < DAEMON_MEMO_HASH; i++) {
		struct memo_entry *e = m->hash[i], *next;

		for (; e; e = next) {
			next = e->next;
			lhist__free(&e->latency);
			free(e->key);
			free(e);
		}
		m->hash[i] = NULL;
	}
	m->n = 0;
}

/* ---- reading the document --------------------------------------------------- */

static struct json_object *jget(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static uint64_t ju64(struct json_object *o, const char *key)
{
	struct json_object *v = jget(o, key);

	return v ? json_object_get_uint64(v) : 0;
}

static double jdbl(struct json_object *o, const char *key)
{
	struct json_object *v = jget(o, key);

	return v ? json_object_get_double(v) : 0;
}

/* A string member; "" when missing or not a string. */
static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v = jget(o, key);

	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

/* The array member key, or NULL. */
static struct json_object *jarr(struct json_object *o, const char *key)
{
	struct json_object *v = jget(o, key);

	return v && json_object_is_type(v, json_type_array) ? v : NULL;
}

/* A series' identity: every label /api/stats may give it. */
static void series_key(char *out, size_t n, struct json_object *o)
{
	snprintf(out, n, "%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s", jstr(o, "service"),
		 jstr(o, "method"), jstr(o, "route"), jstr(o, "status_code"), jstr(o, "worker"),
		 jstr(o, "container_id"), jstr(o, "pod_uid"));
}

/* The difference of a route's latency with the memo, which takes the new totals. */
static void latency_delta(struct daemon *dm, struct json_object *lat, struct memo_entry *e)
{
	struct delta *d = &dm->d;
	struct lhist prev = e->latency;
	size_t n = lat ? json_object_array_length(lat) : 0;

	d->len = 0;
	d->max_us = 0;
	e->latency = (struct lhist){};
	for (size_t i = 0; i < n; i++) {
		struct json_object *b = json_object_array_get_idx(lat, i);
		uint64_t le, cnt, before;
		unsigned idx;

		if (!json_object_is_type(b, json_type_array) || json_object_array_length(b) != 2)
			continue;	/* not [upper bound, count] */
		le = json_object_get_uint64(json_object_array_get_idx(b, 0));
		cnt = json_object_get_uint64(json_object_array_get_idx(b, 1));
		idx = lh_index(le);
		before = lhist__get(&prev, idx);
		if (lh_upper(idx) != le || lhist__add(&e->latency, idx, cnt))
			continue;	/* not one of lhist's bounds, or no memory */
		if (cnt <= before)
			continue;
		d->idx[d->len] = idx;
		d->n[d->len++] = cnt - before;
		d->max_us = le;		/* ascending: the last one is the highest */
	}
	lhist__free(&prev);
}

/* One route of "routes": its gain since the previous document. */
static void apply_route(struct daemon *dm, struct json_object *o, uint64_t sec)
{
	uint64_t count = ju64(o, "count"), errors = ju64(o, "errors");
	uint64_t bytes = ju64(o, "bytes_received") + ju64(o, "bytes_sent");
	char key[DAEMON_KEY_MAX];
	struct memo_entry *e;
	struct top_gain g;

	series_key(key, sizeof(key), o);
	e = memo__get(&dm->memo, key);
	if (!e) {
		dm->memo.untracked++;
		return;
	}
	if (count < e->count) {		/* the series started over */
		e->count = e->errors = e->bytes = 0;
		lhist__clear(&e->latency);
	}
	latency_delta(dm, dm->scheme_ok ? jarr(o, "latency_us") : NULL, e);
	g = (struct top_gain){
		.service = jstr(o, "service"), .method = jstr(o, "method"),
		.route = jstr(o, "route"), .sec = sec, .requests = count - e->count,
		.errors = errors >= e->errors ? errors - e->errors : 0,
		.bytes = bytes >= e->bytes ? bytes - e->bytes : 0, .max_us = dm->d.max_us,
		.idx = dm->d.idx, .n = dm->d.n, .n_bins = dm->d.len,
	};
	e->count = count;
	e->errors = errors;
	e->bytes = bytes;
	if (!dm->baseline && g.requests)
		top_model__gain(dm->src.model, &g);
}

/* One series of "requests": responses of one status code since the last document. */
static void apply_status(struct daemon *dm, struct json_object *o)
{
	uint64_t count = ju64(o, "count");
	char key[DAEMON_KEY_MAX];
	struct memo_entry *e;

	series_key(key, sizeof(key), o);
	e = memo__get(&dm->memo, key);
	if (!e) {
		dm->memo.untracked++;
		return;
	}
	if (count < e->count)
		e->count = 0;
	if (!dm->baseline && count > e->count)
		top_model__status(dm->src.model, jstr(o, "service"), jstr(o, "method"),
				  jstr(o, "route"), atoi(jstr(o, "status_code")), count - e->count);
	e->count = count;
}

static void apply_services(struct daemon *dm, struct json_object *arr)
{
	size_t n = arr ? json_object_array_length(arr) : 0;

	top_stats__clear_gauges(&dm->src.st);
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);

		top_stats__gauge(&dm->src.st, jstr(o, "service"), ju64(o, "requests_in_flight"));
	}
}

/* "loop_buckets_us" must be loops.h's: bucket i below 2^(i+1) us. */
static bool loop_bounds_ok(struct json_object *doc)
{
	struct json_object *b = jarr(doc, "loop_buckets_us");

	if (!b || json_object_array_length(b) != OBS_LOOP_BUCKETS)
		return false;
	for (int i = 0; i < OBS_LOOP_BUCKETS; i++)
		if (json_object_get_uint64(json_object_array_get_idx(b, i)) != 2ull << i)
			return false;
	return true;
}

static void apply_loops(struct daemon *dm, struct json_object *doc, uint64_t sec)
{
	struct json_object *arr = jarr(doc, "loops");
	size_t n = arr ? json_object_array_length(arr) : 0;
	uint64_t buckets[OBS_LOOP_BUCKETS];

	top_loops__begin(dm->src.loops);
	if (!loop_bounds_ok(doc))
		return;
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);
		struct json_object *b = jarr(o, "buckets");

		if (!b || json_object_array_length(b) != OBS_LOOP_BUCKETS)
			continue;
		for (int k = 0; k < OBS_LOOP_BUCKETS; k++)
			buckets[k] = json_object_get_uint64(json_object_array_get_idx(b, k));
		top_loops__report(dm->src.loops, ju64(o, "worker"), jstr(o, "service"),
				  ju64(o, "blocked"), buckets, sec);
	}
}

/* obsd's own numbers; a restart makes every series start over. */
static void apply_obsd(struct daemon *dm, struct json_object *doc)
{
	struct json_object *o = jget(doc, "obsd");
	struct top_stats *st = &dm->src.st;
	uint64_t pid = ju64(o, "pid");
	double up = jdbl(o, "uptime_seconds");

	if (dm->obsd_pid && (pid != dm->obsd_pid || up < dm->obsd_uptime))
		memo__free(&dm->memo);
	dm->obsd_pid = pid;
	dm->obsd_uptime = up;
	st->processes = ju64(o, "observed_processes");
	st->events_lost = ju64(o, "events_lost");
	st->obsd_cpu_s = jdbl(o, "cpu_seconds");
}

/* lhist's scheme, or latencies cannot be read (counts still are). */
static bool latency_scheme_ok(struct json_object *doc)
{
	struct json_object *s = jget(doc, "latency_scheme");

	return s && !strcmp(jstr(s, "kind"), "log-linear") && !strcmp(jstr(s, "unit"), "us") &&
	       ju64(s, "sub_buckets") == LH_SUB;
}

static void apply_array(struct daemon *dm, struct json_object *doc, const char *key,
			void (*fn)(struct daemon *dm, struct json_object *o, uint64_t sec),
			uint64_t sec)
{
	struct json_object *arr = jarr(doc, key);
	size_t n = arr ? json_object_array_length(arr) : 0;

	for (size_t i = 0; i < n; i++)
		fn(dm, json_object_array_get_idx(arr, i), sec);
}

static void apply_status_at(struct daemon *dm, struct json_object *o, uint64_t sec)
{
	apply_status(dm, o);
}

/* The whole document into the model, the loops and the stats. */
static void apply(struct daemon *dm, struct json_object *doc)
{
	uint64_t sec = mono_ns() / TOP_NS_PER_S;

	apply_obsd(dm, doc);
	dm->scheme_ok = latency_scheme_ok(doc);
	dm->memo.untracked = 0;
	apply_array(dm, doc, "routes", apply_route, sec);
	apply_array(dm, doc, "requests", apply_status_at, sec);
	apply_services(dm, jarr(doc, "services"));
	apply_loops(dm, doc, sec);
	dm->baseline = false;
	if (!dm->scheme_ok)
		daemon__err(dm, "obsd's latency histogram is not obsctl's: latencies not shown");
	else if (dm->memo.untracked)
		daemon__err(dm, "%llu series beyond %d not counted",
			    (unsigned long long)dm->memo.untracked, DAEMON_SERIES_MAX);
}

/* Parse the body and apply it; false with st.err set when it is not JSON. */
static bool parse(struct daemon *dm)
{
	struct json_tokener *tok = json_tokener_new_ex(DAEMON_JSON_DEPTH);
	struct json_object *doc;
	enum json_tokener_error e;

	if (!tok) {
		daemon__err(dm, "out of memory");
		return false;
	}
	doc = json_tokener_parse_ex(tok, dm->body.buf, dm->body.len);
	e = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (!doc || e != json_tokener_success || !json_object_is_type(doc, json_type_object)) {
		daemon__err(dm, "obsd %s: unreadable JSON (%s)", DAEMON_PATH,
			    json_tokener_error_desc(e));
		json_object_put(doc);
		return false;
	}
	apply(dm, doc);
	json_object_put(doc);
	return true;
}

/* ---- the transfer ----------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct body *b = ctx;
	size_t n = size * nmemb, cap;
	char *nb;

	if (b->len + n + 1 > DAEMON_BODY_MAX) {
		b->too_big = true;
		return 0;	/* ends the transfer with an error */
	}
	if (b->len + n + 1 > b->cap) {
		for (cap = b->cap ? b->cap : DAEMON_BODY_INIT; cap < b->len + n + 1; cap *= 2)
			;
		nb = realloc(b->buf, cap);
		if (!nb)
			return 0;
		b->buf = nb;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, data, n);
	b->len += n;
	b->buf[b->len] = 0;
	return n;
}

/* Start a GET of /api/stats; false with st.err set when it cannot start. */
static bool transfer__start(struct daemon *dm)
{
	CURL *c = curl_easy_init();

	if (!c) {
		daemon__err(dm, "cannot start a transfer");
		return false;
	}
	dm->body.len = 0;
	dm->body.too_big = false;
	dm->curl_err[0] = 0;
	curl_easy_setopt(c, CURLOPT_URL, dm->url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");	/* obsd is ours: never via a proxy */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)DAEMON_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)DAEMON_CONNECT_MS);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &dm->body);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, dm->curl_err);
	if (curl_multi_add_handle(dm->multi, c) != CURLM_OK) {
		curl_easy_cleanup(c);
		daemon__err(dm, "cannot start a transfer");
		return false;
	}
	dm->easy = c;
	return true;
}

/* Drop the transfer under way, if any: nothing waits for it. */
static void transfer__drop(struct daemon *dm)
{
	if (!dm->easy)
		return;
	curl_multi_remove_handle(dm->multi, dm->easy);
	curl_easy_cleanup(dm->easy);
	dm->easy = NULL;
}

/* A finished transfer: its problem into st.err or, when good, the document
 * into the model; false when it went wrong. */
static bool transfer__finish(struct daemon *dm, CURLcode rc)
{
	long status = 0;

	curl_easy_getinfo(dm->easy, CURLINFO_RESPONSE_CODE, &status);
	transfer__drop(dm);
	dm->src.st.err[0] = 0;
	if (rc != CURLE_OK)
		daemon__err(dm, "obsd at %s: %s", dm->addr,
			    dm->body.too_big ? "answer too large" :
			    dm->curl_err[0] ? dm->curl_err : curl_easy_strerror(rc));
	else if (status == 404)
		daemon__err(dm, "obsd at %s has no %s (older than obsctl?)", dm->addr, DAEMON_PATH);
	else if (status != 200)
		daemon__err(dm, "obsd %s answered %ld", DAEMON_PATH, status);
	else
		return parse(dm);
	return false;
}

/* ---- the source ------------------------------------------------------------- */

static void daemon__refresh(struct top_source *src)
{
	struct daemon *dm = daemon_of(src);

	if (dm->easy)
		return;
	if (!transfer__start(dm)) {
		src->st.obsd_cpu_s = -1;
		dm->done = true;
	}
}

/* curl's sockets as pollfds; a transfer without one yet is polled again soon. */
static int daemon__pollfds(struct top_source *src, struct pollfd *pfd, int max,
			   int *timeout_ms)
{
	struct daemon *dm = daemon_of(src);
	fd_set r, w, x;
	int maxfd = -1, n = 0;
	long ms = -1;

	if (!dm->easy)
		return 0;
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_ZERO(&x);
	curl_multi_fdset(dm->multi, &r, &w, &x, &maxfd);
	for (int fd = 0; fd <= maxfd && n < max; fd++) {
		short ev = (FD_ISSET(fd, &r) ? POLLIN : 0) | (FD_ISSET(fd, &w) ? POLLOUT : 0);

		if (ev || FD_ISSET(fd, &x))
			pfd[n++] = (struct pollfd){ .fd = fd, .events = ev | POLLPRI };
	}
	curl_multi_timeout(dm->multi, &ms);
	if (!n && (ms < 0 || ms > DAEMON_IDLE_POLL_MS))
		ms = DAEMON_IDLE_POLL_MS;
	if (ms >= 0 && (*timeout_ms < 0 || ms < *timeout_ms))
		*timeout_ms = ms;
	return n;
}

static bool daemon__pump(struct top_source *src)
{
	struct daemon *dm = daemon_of(src);
	bool done = dm->done;
	CURLMsg *msg;
	int running, left;

	if (dm->easy) {
		curl_multi_perform(dm->multi, &running);
		while ((msg = curl_multi_info_read(dm->multi, &left))) {
			if (msg->msg != CURLMSG_DONE || msg->easy_handle != dm->easy)
				continue;
			if (!transfer__finish(dm, msg->data.result))
				src->st.obsd_cpu_s = -1;
			done = true;
			break;
		}
	}
	dm->done = false;
	return done;
}

static void daemon__free(struct top_source *src)
{
	struct daemon *dm = daemon_of(src);

	transfer__drop(dm);
	curl_multi_cleanup(dm->multi);
	curl_global_cleanup();
	memo__free(&dm->memo);
	free(dm->body.buf);
	free(dm);
}

static const struct top_source_ops daemon_ops = {
	.refresh = daemon__refresh,
	.pollfds = daemon__pollfds,
	.pump = daemon__pump,
	.free = daemon__free,
};

/* Wait for the baseline; false with st.err set (or interrupted by a signal). */
static bool daemon__baseline(struct daemon *dm)
{
	struct pollfd pfd[TOP_POLLFDS_MAX];
	int n, ms;

	dm->baseline = true;
	daemon__refresh(&dm->src);
	for (;;) {
		ms = -1;
		n = daemon__pollfds(&dm->src, pfd, TOP_POLLFDS_MAX, &ms);
		if (poll(pfd, n, ms) < 0 && errno == EINTR) {
			daemon__err(dm, "interrupted");
			return false;
		}
		if (daemon__pump(&dm->src))
			return !dm->baseline;	/* read: later problems are shown, not fatal */
	}
}

/* "ADDR:PORT" (IPv6 as "[ADDR]:PORT") into the URL of /api/stats. */
static int daemon__url(struct daemon *dm, const char *addr)
{
	const char *colon = strrchr(addr, ':');

	if (!colon || colon == addr || !colon[1] ||
	    snprintf(dm->url, sizeof(dm->url), "http://%s%s", addr, DAEMON_PATH) >=
		    (int)sizeof(dm->url))
		return -EINVAL;
	return 0;
}

struct top_source *top_source_daemon__open(const char *addr, struct top_model *m,
					   struct top_loops *ls)
{
	struct daemon *dm = calloc(1, sizeof(*dm));

	if (!dm) {
		fprintf(stderr, "obsctl top: out of memory\n");
		return NULL;
	}
	dm->src = (struct top_source){ .ops = &daemon_ops, .model = m, .loops = ls,
				       .st.obsd_cpu_s = -1 };
	dm->addr = addr;
	if (daemon__url(dm, addr)) {
		fprintf(stderr, "obsctl top: bad daemon address '%s' (want ADDR:PORT)\n", addr);
		free(dm);
		return NULL;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	dm->multi = curl_multi_init();
	if (!dm->multi || !daemon__baseline(dm)) {
		fprintf(stderr, "obsctl top: %s\n",
			dm->multi ? dm->src.st.err : "cannot start libcurl");
		daemon__free(&dm->src);
		return NULL;
	}
	return &dm->src;
}
