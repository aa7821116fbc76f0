// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/proto/h2.c. Conversations are built frame by frame (HPACK
 * blocks with nghttp2's deflater, one per direction) as a list of pieces: the
 * bytes of one direction until the other one speaks (or an explicit cut), as
 * one syscall would move them. Every piece is copied into a heap block of
 * exactly its size before it is fed, so that AddressSanitizer catches a read
 * past it. Every valid conversation is also fed byte at a time, cut in two at
 * every offset and cut at random, and must give the same callbacks.
 * A failing check prints the case name; main() returns 1 if any failed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nghttp2/nghttp2.h>

#include "proto/h2.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_PRINTED 200
#define MAX_SID 4096		/* stream ids the conversation builder counts bytes for */
#define MAX_NV 64
#define SPLIT_ALL_MAX 6000	/* conversations up to this size are cut at every offset */
#define RANDOM_RUNS 20

#include "check.h"


static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* ---- recording callbacks ---------------------------------------------- */

struct ev {
	char type;		/* 'Q' request, 'R' response, 'D' stream done, 'E' error */
	uint32_t sid;
	int status;
	struct h2_stream_result res;
	struct h1_head h;
	char why[64];
};

struct rec {
	struct ev *ev;
	int n, cap;
};

static struct ev *rec_push(struct rec *r, char type)
{
	struct ev *e;

	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->ev = realloc(r->ev, r->cap * sizeof(*r->ev));
		if (!r->ev)
			abort();
	}
	e = &r->ev[r->n++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	return e;
}

static void on_request(void *ctx, uint32_t sid, const struct h1_head *h)
{
	struct ev *e = rec_push(ctx, 'Q');

	e->sid = sid;
	e->h = *h;
}

static void on_response(void *ctx, uint32_t sid, int status)
{
	struct ev *e = rec_push(ctx, 'R');

	e->sid = sid;
	e->status = status;
}

static void on_stream_done(void *ctx, const struct h2_stream_result *res)
{
	struct ev *e = rec_push(ctx, 'D');

	e->sid = res->stream_id;
	e->res = *res;
}

static void on_error(void *ctx, const char *why)
{
	struct ev *e = rec_push(ctx, 'E');

	snprintf(e->why, sizeof(e->why), "%s", why);
}

static const struct h2_callbacks rec_cb = {
	.on_request = on_request,
	.on_response = on_response,
	.on_stream_done = on_stream_done,
	.on_error = on_error,
};

static void rec_free(struct rec *r)
{
	free(r->ev);
	memset(r, 0, sizeof(*r));
}

static bool head_eq(const struct h1_head *a, const struct h1_head *b)
{
	return a->content_length == b->content_length && a->flags == b->flags &&
	       a->head_bytes == b->head_bytes && a->version_minor == b->version_minor &&
	       a->status == b->status && !strcmp(a->method, b->method) &&
	       !strcmp(a->target, b->target) && !strcmp(a->reason, b->reason) &&
	       !strcmp(a->host, b->host) && !strcmp(a->user_agent, b->user_agent) &&
	       !strcmp(a->x_request_id, b->x_request_id) &&
	       !strcmp(a->traceparent, b->traceparent) && !strcmp(a->tracestate, b->tracestate) &&
	       !strcmp(a->content_type, b->content_type);
}

static bool res_eq(const struct h2_stream_result *a, const struct h2_stream_result *b)
{
	return a->stream_id == b->stream_id && a->status == b->status &&
	       a->grpc_status == b->grpc_status && a->bytes_in == b->bytes_in &&
	       a->bytes_out == b->bytes_out && a->flags == b->flags &&
	       a->rst_code == b->rst_code;
}

static bool ev_eq(const struct ev *a, const struct ev *b)
{
	return a->type == b->type && a->sid == b->sid && a->status == b->status &&
	       res_eq(&a->res, &b->res) && head_eq(&a->h, &b->h) && !strcmp(a->why, b->why);
}

static void ev_describe(const struct ev *e, char *out, size_t n)
{
	snprintf(out, n, "%c sid=%u status=%d res={%d grpc=%d in=%llu out=%llu fl=%#x rst=%u} "
		 "%s %.60s %s", e->type, e->sid, e->status, e->res.status, e->res.grpc_status,
		 (unsigned long long)e->res.bytes_in, (unsigned long long)e->res.bytes_out,
		 e->res.flags, e->res.rst_code, e->h.method, e->h.target, e->why);
}

static void rec_dump(const struct rec *r)
{
	char d[256];
	int i;

	for (i = 0; i < r->n; i++) {
		ev_describe(&r->ev[i], d, sizeof(d));
		fprintf(stderr, "    %2d: %s\n", i, d);
	}
}

/* Same callbacks in the same order with the same arguments? */
static bool rec_same(const struct rec *a, const struct rec *b, const char *what)
{
	char da[256], db[256];
	int i;

	if (!check(a->n == b->n, __FILE__, __LINE__, "%s: %d events != %d", what, a->n, b->n))
		return false;
	for (i = 0; i < a->n; i++) {
		if (ev_eq(&a->ev[i], &b->ev[i]))
			continue;
		ev_describe(&a->ev[i], da, sizeof(da));
		ev_describe(&b->ev[i], db, sizeof(db));
		check(false, __FILE__, __LINE__, "%s: event %d: %s != %s", what, i, da, db);
		return false;
	}
	n_checks++;
	return true;
}

static int count_type(const struct rec *r, char type)
{
	int i, n = 0;

	for (i = 0; i < r->n; i++)
		n += r->ev[i].type == type;
	return n;
}

/* The one event of a type for a stream; a check fails unless exactly one. */
static const struct ev *ev_of(const struct rec *r, char type, uint32_t sid)
{
	const struct ev *found = NULL;
	int i, n = 0;

	for (i = 0; i < r->n; i++) {
		if (r->ev[i].type == type && r->ev[i].sid == sid) {
			found = &r->ev[i];
			n++;
		}
	}
	if (!check(n == 1, __FILE__, __LINE__, "%d events '%c' for stream %u", n, type, sid)) {
		rec_dump(r);
		return NULL;
	}
	return found;
}

/* ---- conversation builder ---------------------------------------------- */

struct piece {
	uint8_t dir;
	size_t off, len;
};

struct conv {
	uint8_t *b;
	size_t len, cap;
	struct piece *pc;
	int n_pc, cap_pc;
	bool cut;			/* the next bytes start a new piece */
	nghttp2_hd_deflater *def[2];
	uint64_t bytes[2][MAX_SID];	/* frame bytes per direction and stream */
};

static struct conv *cv_new(void)
{
	struct conv *cv = calloc(1, sizeof(*cv));

	if (!cv || nghttp2_hd_deflate_new(&cv->def[0], 65536) ||
	    nghttp2_hd_deflate_new(&cv->def[1], 65536))
		abort();
	return cv;
}

static void cv_free(struct conv *cv)
{
	nghttp2_hd_deflate_del(cv->def[0]);
	nghttp2_hd_deflate_del(cv->def[1]);
	free(cv->b);
	free(cv->pc);
	free(cv);
}

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

static void cv_cut(struct conv *cv)
{
	cv->cut = true;
}

static void cv_raw(struct conv *cv, int dir, const void *p, size_t n)
{
	struct piece *last = cv->n_pc ? &cv->pc[cv->n_pc - 1] : NULL;

	while (cv->len + n > cv->cap) {
		cv->cap = cv->cap ? cv->cap * 2 : 4096;
		cv->b = realloc(cv->b, cv->cap);
		if (!cv->b)
			abort();
	}
	if (!last || cv->cut || last->dir != dir) {
		if (cv->n_pc == cv->cap_pc) {
			cv->cap_pc = cv->cap_pc ? cv->cap_pc * 2 : 16;
			cv->pc = realloc(cv->pc, cv->cap_pc * sizeof(*cv->pc));
			if (!cv->pc)
				abort();
		}
		last = &cv->pc[cv->n_pc++];
		last->dir = dir;
		last->off = cv->len;
		last->len = 0;
		cv->cut = false;
	}
	if (n)
		memcpy(cv->b + cv->len, p, n);
	cv->len += n;
	last->len += n;
}

/* Append one frame; returns its size on the wire. */
static size_t cv_frame(struct conv *cv, int dir, uint8_t type, uint8_t flags, uint32_t sid,
		       const void *payload, size_t n)
{
	uint8_t h[9] = { n >> 16, n >> 8, n, type, flags, sid >> 24, sid >> 16, sid >> 8, sid };

	cv_raw(cv, dir, h, sizeof(h));
	cv_raw(cv, dir, payload, n);
	if (sid < MAX_SID)
		cv->bytes[dir][sid] += sizeof(h) + n;
	return sizeof(h) + n;
}

static size_t nv_from(const char *const *kv, nghttp2_nv *nv)
{
	size_t n = 0;

	for (; kv[0] && n < MAX_NV; kv += 2, n++) {
		nv[n].name = (uint8_t *)kv[0];
		nv[n].value = (uint8_t *)kv[1];
		nv[n].namelen = strlen(kv[0]);
		nv[n].valuelen = strlen(kv[1]);
		nv[n].flags = NGHTTP2_NV_FLAG_NONE;
	}
	return n;
}

/* HPACK-encode kv (name, value, ..., NULL) with the direction's deflater. */
static uint8_t *cv_block(struct conv *cv, int dir, const char *const *kv, size_t *len)
{
	nghttp2_nv nv[MAX_NV];
	size_t n = nv_from(kv, nv);
	size_t bound = nghttp2_hd_deflate_bound(cv->def[dir], nv, n);
	uint8_t *b = malloc(bound);
	ssize_t rv;

	if (!b)
		abort();
	rv = nghttp2_hd_deflate_hd(cv->def[dir], b, bound, nv, n);
	if (rv < 0)
		abort();
	*len = rv;
	return b;
}

#define DIR_C H2_FROM_CLIENT
#define DIR_S H2_FROM_SERVER

enum {
	T_DATA = 0, T_HEADERS, T_PRIORITY, T_RST, T_SETTINGS, T_PUSH, T_PING, T_GOAWAY,
	T_WINDOW, T_CONT,
	ES = 0x1, ACK = 0x1, EH = 0x4, PADDED = 0x8, PRIO = 0x20,
};

struct hopt {
	uint8_t pad;		/* PADDED with this many padding bytes when > 0 */
	bool prio;		/* PRIORITY flag with a 5-byte priority */
	int parts;		/* HEADERS + parts-1 CONTINUATION frames */
	uint32_t promised;	/* PUSH_PROMISE instead of HEADERS, promising this id */
};

/* A header block as HEADERS (or PUSH_PROMISE) + CONTINUATION; returns wire bytes. */
static size_t cv_headers_opt(struct conv *cv, int dir, uint32_t sid, uint8_t flags,
			     const char *const *kv, const struct hopt *o)
{
	size_t blen, step, from, to, total = 0, pl;
	int i, parts = o->parts > 0 ? o->parts : 1;
	uint8_t *blk = cv_block(cv, dir, kv, &blen), *p;
	uint8_t fl;

	step = (blen + parts - 1) / parts;
	for (i = 0; i < parts; i++) {
		from = i * step < blen ? i * step : blen;
		to = i == parts - 1 || (i + 1) * step > blen ? blen : (i + 1) * step;
		fl = i == parts - 1 ? EH : 0;
		if (i) {
			total += cv_frame(cv, dir, T_CONT, fl, sid, blk + from, to - from);
			continue;
		}
		p = calloc(1, to - from + 1 + 5 + 4 + o->pad);
		pl = 0;
		if (o->pad)
			p[pl++] = o->pad;
		if (o->prio && !o->promised) {
			memcpy(p + pl, "\x80\x00\x00\x03\x10", 5);
			pl += 5;
		}
		if (o->promised) {
			p[pl++] = o->promised >> 24;
			p[pl++] = o->promised >> 16;
			p[pl++] = o->promised >> 8;
			p[pl++] = o->promised;
		}
		memcpy(p + pl, blk + from, to - from);
		pl += to - from + o->pad;
		fl |= o->promised ? 0 : flags;
		fl |= (o->pad ? PADDED : 0) | (o->prio && !o->promised ? PRIO : 0);
		total += cv_frame(cv, dir, o->promised ? T_PUSH : T_HEADERS, fl, sid, p, pl);
		free(p);
	}
	free(blk);
	return total;
}

static size_t cv_headers(struct conv *cv, int dir, uint32_t sid, uint8_t flags,
			 const char *const *kv)
{
	static const struct hopt none;

	return cv_headers_opt(cv, dir, sid, flags, kv, &none);
}

static size_t cv_data(struct conv *cv, int dir, uint32_t sid, uint8_t flags, size_t n)
{
	uint8_t *p = malloc(n + 1);
	size_t i, total;

	for (i = 0; i < n; i++)
		p[i] = 'a' + (i + sid) % 26;
	total = cv_frame(cv, dir, T_DATA, flags, sid, p, n);
	free(p);
	return total;
}

static size_t cv_u32_frame(struct conv *cv, int dir, uint8_t type, uint32_t sid, uint32_t v)
{
	uint8_t p[4] = { v >> 24, v >> 16, v >> 8, v };

	return cv_frame(cv, dir, type, 0, sid, p, sizeof(p));
}

static size_t cv_goaway(struct conv *cv, uint32_t last, uint32_t code, const char *debug)
{
	uint8_t p[64] = { last >> 24, last >> 16, last >> 8, last, code >> 24, code >> 16,
			  code >> 8, code };
	size_t n = strlen(debug);

	memcpy(p + 8, debug, n);
	return cv_frame(cv, DIR_S, T_GOAWAY, 0, 0, p, 8 + n);
}

/* Client preface and SETTINGS, server SETTINGS and ACK, client ACK. */
static void cv_start_opt(struct conv *cv, bool preface)
{
	static const uint8_t settings[] = { 0, 3, 0, 0, 0, 100, 0, 4, 0, 1, 0, 0 };

	if (preface)
		cv_raw(cv, DIR_C, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	cv_frame(cv, DIR_C, T_SETTINGS, 0, 0, settings, sizeof(settings));
	cv_u32_frame(cv, DIR_C, T_WINDOW, 0, 1 << 20);
	cv_frame(cv, DIR_S, T_SETTINGS, 0, 0, settings, 6);
	cv_frame(cv, DIR_S, T_SETTINGS, ACK, 0, NULL, 0);
	cv_frame(cv, DIR_C, T_SETTINGS, ACK, 0, NULL, 0);
}

static void cv_start(struct conv *cv)
{
	cv_start_opt(cv, true);
}

/* ---- feeding ------------------------------------------------------------ */

static uint8_t *dup_exact(const void *d, size_t n)
{
	uint8_t *b;

	if (!n)
		return NULL;
	b = malloc(n);
	if (!b)
		abort();
	memcpy(b, d, n);
	return b;
}

static void feed_seg(struct h2_conn *c, int dir, const void *head, size_t head_len, uint64_t gap,
		     const void *tail, size_t tail_len)
{
	uint8_t *h = dup_exact(head, head_len), *t = dup_exact(tail, tail_len);

	h2__feed(c, dir, h, head_len, gap, t, tail_len);
	free(h);
	free(t);
}

static void feed(struct h2_conn *c, int dir, const void *d, size_t n)
{
	feed_seg(c, dir, d, n, 0, NULL, 0);
}

enum feed_mode { FEED_ONE, FEED_BYTE, FEED_CUT, FEED_RANDOM };

static void feed_piece(struct h2_conn *c, const struct conv *cv, const struct piece *pc,
		       enum feed_mode mode, size_t cut)
{
	const uint8_t *p = cv->b + pc->off;
	size_t i, k;

	switch (mode) {
	case FEED_ONE:
		feed(c, pc->dir, p, pc->len);
		break;
	case FEED_BYTE:
		for (i = 0; i < pc->len; i++)
			feed(c, pc->dir, p + i, 1);
		break;
	case FEED_CUT:
		if (cut > pc->off && cut < pc->off + pc->len) {
			feed(c, pc->dir, p, cut - pc->off);
			feed(c, pc->dir, cv->b + cut, pc->off + pc->len - cut);
		} else {
			feed(c, pc->dir, p, pc->len);
		}
		break;
	case FEED_RANDOM:
		for (i = 0; i < pc->len; i += k) {
			k = rng() % 4 ? 16 : 4096;
			k = 1 + rng() % k;
			if (k > pc->len - i)
				k = pc->len - i;
			feed(c, pc->dir, p + i, k);
		}
		break;
	}
}

struct run_opt {
	bool preface_done;
	bool eof;		/* h2__eof() after the last piece */
};

static struct h2_conn *conn_new(struct rec *r, bool preface_done)
{
	struct h2_conn *c = h2__new(&rec_cb, r, preface_done);

	if (!c)
		abort();
	return c;
}

static void run(const struct conv *cv, const struct run_opt *o, enum feed_mode mode, size_t cut,
		struct rec *r)
{
	struct h2_conn *c = conn_new(r, o->preface_done);
	int i;

	for (i = 0; i < cv->n_pc; i++)
		feed_piece(c, cv, &cv->pc[i], mode, cut);
	if (o->eof)
		h2__eof(c);
	h2__free(c);
}

/* Feed cv whole (one segment a piece) into r, then check that byte-at-a-time,
 * every 2-way cut (small conversations) and random cuts give the same. */
static void run_all(const struct conv *cv, const struct run_opt *o, struct rec *r)
{
	struct rec x = { 0 };
	size_t k;
	int i;

	run(cv, o, FEED_ONE, 0, r);
	run(cv, o, FEED_BYTE, 0, &x);
	rec_same(&x, r, "byte at a time");
	for (k = 1; cv->len <= SPLIT_ALL_MAX && k < cv->len; k++) {
		x.n = 0;
		run(cv, o, FEED_CUT, k, &x);
		if (!rec_same(&x, r, "2-way cut")) {
			fprintf(stderr, "    cut at %zu\n", k);
			break;
		}
	}
	for (i = 0; i < RANDOM_RUNS; i++) {
		x.n = 0;
		run(cv, o, FEED_RANDOM, 0, &x);
		rec_same(&x, r, "random cuts");
	}
	rec_free(&x);
}

static const struct run_opt opt_eof = { .eof = true };

/* Find the piece holding cv offset off. */
static const struct piece *piece_at(const struct conv *cv, size_t off)
{
	int i;

	for (i = 0; i < cv->n_pc; i++)
		if (off >= cv->pc[i].off && off < cv->pc[i].off + cv->pc[i].len)
			return &cv->pc[i];
	return NULL;
}

/* Feed cv, but the bytes [from, to) of one piece are a gap in the middle of a
 * segment (captured head before, captured tail after, to the piece's end). */
static void feed_with_gap(struct h2_conn *c, const struct conv *cv, size_t from, size_t to)
{
	const struct piece *gp = piece_at(cv, from);
	int i;

	for (i = 0; i < cv->n_pc; i++) {
		const struct piece *pc = &cv->pc[i];

		if (pc != gp) {
			feed(c, pc->dir, cv->b + pc->off, pc->len);
			continue;
		}
		feed_seg(c, pc->dir, cv->b + pc->off, from - pc->off, to - from, cv->b + to,
			 pc->off + pc->len - to);
	}
}

/* ---- checks ------------------------------------------------------------- */

static void check_done(const struct rec *r, uint32_t sid, int status, int grpc, uint64_t in,
		       uint64_t out, uint32_t flags, uint32_t rst)
{
	const struct ev *e = ev_of(r, 'D', sid);

	if (!e)
		return;
	CHECK_U(e->res.stream_id, sid);
	CHECK_U(e->res.status, status);
	CHECK_U(e->res.grpc_status, grpc);
	CHECK_U(e->res.bytes_in, in);
	CHECK_U(e->res.bytes_out, out);
	CHECK_U(e->res.flags, flags);
	CHECK_U(e->res.rst_code, rst);
}

/* The stream's bytes as the conversation builder counted them. */
static void check_done_cv(const struct rec *r, const struct conv *cv, uint32_t sid, int status,
			  int grpc, uint32_t flags, uint32_t rst)
{
	check_done(r, sid, status, grpc, cv->bytes[DIR_C][sid], cv->bytes[DIR_S][sid], flags, rst);
}

static void check_response(const struct rec *r, uint32_t sid, int status)
{
	const struct ev *e = ev_of(r, 'R', sid);

	if (e)
		CHECK_U(e->status, status);
}

static const struct h1_head *request_of(const struct rec *r, uint32_t sid)
{
	const struct ev *e = ev_of(r, 'Q', sid);

	return e ? &e->h : NULL;
}

/* Per stream: request (if any) before response before done; nothing after E. */
static void check_order(const struct rec *r)
{
	int i, j;

	for (i = 0; i < r->n; i++) {
		if (r->ev[i].type == 'E')
			CHECK_U(i, r->n - 1);
		for (j = i + 1; j < r->n; j++) {
			if (r->ev[j].sid != r->ev[i].sid || r->ev[i].type == 'E')
				continue;
			CHECK(r->ev[i].type != 'D');
			CHECK(!(r->ev[i].type == 'R' && r->ev[j].type == 'Q'));
		}
	}
}

/* ---- cases -------------------------------------------------------------- */

static const char *const get_req[] = {
	":method", "GET", ":scheme", "https", ":path", "/index.html?q=1", ":authority",
	"example.com:8443", "user-agent", "curl/8.5.0", "accept", "*/*", NULL
};

static const char *const resp_200[] = {
	":status", "200", "content-type", "text/html", "server", "hypercorn-h2", NULL
};

static void test_get(void)
{
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	const struct h1_head *h;
	size_t q, s, d;

	begin("get_simple");
	cv_start(cv);
	q = cv_headers(cv, DIR_C, 1, ES, get_req);
	s = cv_headers(cv, DIR_S, 1, 0, resp_200);
	d = cv_data(cv, DIR_S, 1, ES, 5);
	run_all(cv, &opt_eof, &r);
	CHECK_U(r.n, 3);
	h = request_of(&r, 1);
	if (h) {
		CHECK_S(h->method, "GET");
		CHECK_S(h->target, "/index.html?q=1");
		CHECK_S(h->host, "example.com:8443");
		CHECK_S(h->user_agent, "curl/8.5.0");
		CHECK_S(h->content_type, "");
		CHECK_U(h->version_minor, 0);
		CHECK_U(h->flags, 0);
		CHECK_U(h->head_bytes, q);
	}
	check_response(&r, 1, 200);
	check_done(&r, 1, 200, -1, q, s + d, 0, 0);
	CHECK(r.n == 3 && r.ev[0].type == 'Q' && r.ev[1].type == 'R' && r.ev[2].type == 'D');
	rec_free(&r);
	cv_free(cv);
}

static void test_post(void)
{
	static const char *const req[] = {
		":method", "POST", ":scheme", "http", ":path", "/api/items", ":authority",
		"api.local", "content-type", "application/json", "content-length", "11",
		"x-request-id", "req-42", "traceparent",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate",
		"congo=t61rcWkgMzE", "host", "ignored.example", "expect", "100-continue", NULL
	};
	static const char *const resp[] = { ":status", "201", NULL };
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	const struct h1_head *h;
	size_t in = 0, out = 0;

	begin("post_with_data");
	cv_start(cv);
	in += cv_headers(cv, DIR_C, 1, 0, req);
	in += cv_data(cv, DIR_C, 1, 0, 6);
	cv_cut(cv);
	in += cv_data(cv, DIR_C, 1, ES, 5);
	cv_u32_frame(cv, DIR_S, T_WINDOW, 0, 11);	/* connection level: not counted */
	out += cv_u32_frame(cv, DIR_S, T_WINDOW, 1, 11);
	cv_frame(cv, DIR_S, T_PING, 0, 0, "12345678", 8);
	out += cv_headers(cv, DIR_S, 1, 0, resp);
	cv_frame(cv, DIR_C, T_PING, ACK, 0, "12345678", 8);
	out += cv_data(cv, DIR_S, 1, 0, 2);
	out += cv_frame(cv, DIR_S, T_DATA, ES, 1, NULL, 0);
	run_all(cv, &opt_eof, &r);
	h = request_of(&r, 1);
	if (h) {
		CHECK_S(h->method, "POST");
		CHECK_S(h->target, "/api/items");
		CHECK_S(h->host, "api.local");
		CHECK_S(h->content_type, "application/json");
		CHECK_S(h->x_request_id, "req-42");
		CHECK_S(h->traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
		CHECK_S(h->tracestate, "congo=t61rcWkgMzE");
		CHECK_U(h->flags, H1F_HAS_CL | H1F_EXPECT_CONTINUE);
		CHECK_U(h->content_length, 11);
	}
	check_response(&r, 1, 201);
	check_done(&r, 1, 201, -1, in, out, 0, 0);
	CHECK_U(r.n, 3);
	rec_free(&r);
	cv_free(cv);
}

/* Build the multi-stream conversation: n streams (ids 1, 3, ...), request
 * DATA interleaved, responses in a shuffled order with interleaved DATA. */
#define CONC_N 10

static void build_concurrent(struct conv *cv, int *status, uint32_t *done_order)
{
	static const char *const post[] = {
		":method", "POST", ":scheme", "https", ":path", "/upload", ":authority", "h",
		"content-type", "application/octet-stream", NULL
	};
	char st[16];
	const char *resp[] = { ":status", st, "content-type", "text/plain", NULL };
	int perm[CONC_N], i, j, t, round;

	cv_start(cv);
	for (i = 0; i < CONC_N; i++)
		perm[i] = i;
	for (i = CONC_N - 1; i > 0; i--) {
		j = rng() % (i + 1);
		t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (i = 0; i < CONC_N; i++) {
		cv_headers(cv, DIR_C, 2 * i + 1, 0, post);
		if (i % 3 == 2)
			cv_cut(cv);
	}
	for (round = 0; round < 3; round++) {
		for (i = 0; i < CONC_N; i++)
			cv_data(cv, DIR_C, 2 * i + 1, round == 2 ? ES : 0, 7 * i + round);
		/* the server answers half of the streams between rounds */
		for (j = 0; j < CONC_N / 2 && round == 1; j++) {
			i = perm[j];
			status[i] = 200 + i;
			snprintf(st, sizeof(st), "%d", status[i]);
			cv_headers(cv, DIR_S, 2 * i + 1, 0, resp);
			cv_u32_frame(cv, DIR_S, T_WINDOW, 2 * i + 1, 1000);
		}
	}
	for (j = CONC_N / 2; j < CONC_N; j++) {
		i = perm[j];
		status[i] = 400 + i;
		snprintf(st, sizeof(st), "%d", status[i]);
		cv_headers(cv, DIR_S, 2 * i + 1, 0, resp);
	}
	for (j = 0; j < CONC_N; j++) {
		cv_data(cv, DIR_S, 2 * perm[j] + 1, 0, 3 * j);
		cv_frame(cv, DIR_C, T_PRIORITY, 0, 2 * perm[j] + 1, "\0\0\0\0\x10", 5);
	}
	for (j = CONC_N - 1; j >= 0; j--) {
		cv_data(cv, DIR_S, 2 * perm[j] + 1, ES, j);
		done_order[CONC_N - 1 - j] = 2 * perm[j] + 1;
	}
}

static void test_concurrent(void)
{
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	int status[CONC_N], i, k = 0;
	uint32_t order[CONC_N];
	const struct h1_head *h;

	begin("concurrent_streams");
	build_concurrent(cv, status, order);
	run_all(cv, &opt_eof, &r);
	CHECK_U(count_type(&r, 'Q'), CONC_N);
	CHECK_U(count_type(&r, 'R'), CONC_N);
	CHECK_U(count_type(&r, 'D'), CONC_N);
	CHECK_U(count_type(&r, 'E'), 0);
	for (i = 0; i < CONC_N; i++) {
		h = request_of(&r, 2 * i + 1);
		if (h)
			CHECK_S(h->content_type, "application/octet-stream");
		check_response(&r, 2 * i + 1, status[i]);
		check_done_cv(&r, cv, 2 * i + 1, status[i], -1, 0, 0);
	}
	for (i = 0; i < r.n; i++)
		if (r.ev[i].type == 'D' && k < CONC_N) {
			CHECK_U(r.ev[i].sid, order[k]);
			k++;
		}
	check_order(&r);
	rec_free(&r);
	cv_free(cv);
}

static char *repeat_str(char c, size_t n)
{
	char *s = malloc(n + 1);

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void test_continuation(void)
{
	char *ua = repeat_str('u', 300), *ts = repeat_str('t', 300), *big = repeat_str('b', 900);
	const char *req[] = {
		":method", "GET", ":scheme", "https", ":path", "/c", ":authority", "cont.example",
		"user-agent", ua, "tracestate", ts, "x-big-1", big, "x-big-2", big, NULL
	};
	const char *resp[] = { ":status", "204", "x-big", big, NULL };
	static const struct hopt four = { .parts = 4 }, two = { .parts = 2 };
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	const struct h1_head *h;
	size_t q, s;

	begin("continuation");
	cv_start(cv);
	q = cv_headers_opt(cv, DIR_C, 1, ES, req, &four);
	s = cv_headers_opt(cv, DIR_S, 1, ES, resp, &two);
	/* the same headers again: now indexed, a one-frame block */
	cv_headers_opt(cv, DIR_C, 3, ES, req, &two);
	cv_headers(cv, DIR_S, 3, ES, resp);
	run_all(cv, &opt_eof, &r);
	h = request_of(&r, 1);
	if (h) {
		CHECK_S(h->host, "cont.example");
		CHECK_U(strlen(h->user_agent), H1_UA_MAX - 1);
		CHECK_U(strlen(h->tracestate), H1_TRACESTATE_MAX - 1);
		CHECK_U(h->head_bytes, q);
	}
	h = request_of(&r, 3);
	if (h) {
		CHECK_U(strlen(h->user_agent), H1_UA_MAX - 1);
		CHECK_U(h->flags, 0);
	}
	check_done(&r, 1, 204, -1, q, s, 0, 0);
	check_done_cv(&r, cv, 3, 204, -1, 0, 0);
	CHECK_U(count_type(&r, 'E'), 0);
	rec_free(&r);
	cv_free(cv);
	free(ua);
	free(ts);
	free(big);
}

static size_t cv_data_padded(struct conv *cv, int dir, uint32_t sid, uint8_t flags, size_t n,
			     uint8_t pad)
{
	uint8_t *p = calloc(1, n + pad + 1);
	size_t total;

	p[0] = pad;
	memset(p + 1, 'p', n);
	total = cv_frame(cv, dir, T_DATA, flags | PADDED, sid, p, n + pad + 1);
	free(p);
	return total;
}

static void test_padded(void)
{
	static const struct hopt pad_prio = { .pad = 17, .prio = true };
	static const struct hopt pad_cont = { .pad = 255, .parts = 3 };
	static const struct hopt prio = { .prio = true };
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	const struct h1_head *h;

	begin("padded");
	cv_start(cv);
	cv_headers_opt(cv, DIR_C, 1, 0, get_req, &pad_prio);
	cv_data_padded(cv, DIR_C, 1, ES, 10, 5);
	cv_headers_opt(cv, DIR_S, 1, 0, resp_200, &pad_cont);
	cv_data_padded(cv, DIR_S, 1, 0, 0, 0);
	cv_data_padded(cv, DIR_S, 1, ES, 100, 200);
	cv_headers_opt(cv, DIR_C, 3, ES, get_req, &prio);
	cv_headers_opt(cv, DIR_S, 3, ES, resp_200, &pad_prio);
	run_all(cv, &opt_eof, &r);
	h = request_of(&r, 1);
	if (h)
		CHECK_S(h->target, "/index.html?q=1");
	h = request_of(&r, 3);
	if (h)
		CHECK_S(h->user_agent, "curl/8.5.0");
	check_done_cv(&r, cv, 1, 200, -1, 0, 0);
	check_done_cv(&r, cv, 3, 200, -1, 0, 0);
	CHECK_U(count_type(&r, 'E'), 0);
	rec_free(&r);
	cv_free(cv);
}

static void test_interim(void)
{
	static const char *const r100[] = { ":status", "100", NULL };
	static const char *const r103[] = { ":status", "103", "link", "</s.css>", NULL };
	struct conv *cv = cv_new();
	struct rec r = { 0 };

	begin("interim_100_continue");
	cv_start(cv);
	cv_headers(cv, DIR_C, 1, 0, get_req);
	cv_headers(cv, DIR_S, 1, 0, r100);
	cv_data(cv, DIR_C, 1, ES, 30);
	cv_headers(cv, DIR_S, 1, 0, r103);
	cv_headers(cv, DIR_S, 1, 0, resp_200);
	cv_data(cv, DIR_S, 1, ES, 3);
	run_all(cv, &opt_eof, &r);
	CHECK_U(count_type(&r, 'R'), 1);
	check_response(&r, 1, 200);
	check_done_cv(&r, cv, 1, 200, -1, 0, 0);
	CHECK_U(r.n, 3);
	rec_free(&r);
	cv_free(cv);
}

static void test_rst(void)
{
	struct conv *cv = cv_new();
	struct rec r = { 0 };

	begin("rst_stream");
	cv_start(cv);
	cv_headers(cv, DIR_C, 1, 0, get_req);
	cv_data(cv, DIR_C, 1, 0, 10);
	cv_u32_frame(cv, DIR_C, T_RST, 1, 8);			/* CANCEL from the client */
	cv_headers(cv, DIR_C, 3, ES, get_req);
	cv_headers(cv, DIR_S, 3, 0, resp_200);
	cv_data(cv, DIR_S, 3, 0, 10);
	cv_u32_frame(cv, DIR_S, T_RST, 3, 2);			/* INTERNAL_ERROR */
	cv_u32_frame(cv, DIR_C, T_WINDOW, 3, 10);		/* after the end: ignored */
	cv_u32_frame(cv, DIR_C, T_RST, 3, 8);
	cv_u32_frame(cv, DIR_S, T_RST, 1, 5);
	cv_headers(cv, DIR_C, 5, ES, get_req);
	cv_headers(cv, DIR_S, 5, ES, resp_200);
	run_all(cv, &opt_eof, &r);
	check_done(&r, 1, 0, -1, cv->bytes[DIR_C][1], 0, H2S_RESET, 8);
	check_done(&r, 3, 200, -1, cv->bytes[DIR_C][3] - 26, cv->bytes[DIR_S][3], H2S_RESET, 2);
	check_done_cv(&r, cv, 5, 200, -1, 0, 0);
	CHECK_U(count_type(&r, 'R'), 2);
	CHECK_U(r.n, 8);
	rec_free(&r);
	cv_free(cv);
}

static void test_goaway(void)
{
	struct conv *cv = cv_new();
	struct rec r = { 0 };

	begin("goaway");
	cv_start(cv);
	cv_headers(cv, DIR_C, 1, ES, get_req);
	cv_headers(cv, DIR_C, 3, ES, get_req);
	cv_headers(cv, DIR_C, 5, ES, get_req);
	cv_goaway(cv, 0x7fffffff, 0, "graceful");
	cv_goaway(cv, 3, 0, "");
	cv_headers(cv, DIR_S, 1, 0, resp_200);
	cv_headers(cv, DIR_C, 7, ES, get_req);
	cv_data(cv, DIR_S, 1, ES, 20);
	cv_headers(cv, DIR_S, 3, 0, resp_200);
	cv_u32_frame(cv, DIR_S, T_RST, 7, 7);			/* REFUSED_STREAM */
	cv_goaway(cv, 5, 0, "a later, higher id is ignored");
	run_all(cv, &opt_eof, &r);
	check_done_cv(&r, cv, 1, 200, -1, 0, 0);
	check_done_cv(&r, cv, 3, 200, -1, H2S_EOF, 0);
	check_done_cv(&r, cv, 5, 0, -1, H2S_EOF | H2S_GOAWAY, 0);
	check_done_cv(&r, cv, 7, 0, -1, H2S_RESET | H2S_GOAWAY, 7);
	CHECK_U(r.n, 4 + 4 + 2);
	/* the EOF ends come in stream order, after the others */
	CHECK(r.n == 10 && r.ev[8].sid == 3 && r.ev[9].sid == 5);
	rec_free(&r);
	cv_free(cv);
}

static const char *const grpc_req[] = {
	":method", "POST", ":scheme", "http", ":path", "/helloworld.Greeter/SayHello",
	":authority", "localhost:50051", "content-type", "application/grpc", "te", "trailers",
	"user-agent", "grpc-python/1.62.0 grpc-c/39.0.0 (linux; chttp2)", "grpc-accept-encoding",
	"identity,deflate,gzip", NULL
};

static size_t cv_grpc_msg(struct conv *cv, int dir, uint32_t sid, uint8_t flags, const char *m)
{
	uint8_t p[64] = { 0, 0, 0, 0, strlen(m) };

	memcpy(p + 5, m, strlen(m));
	return cv_frame(cv, dir, T_DATA, flags, sid, p, 5 + strlen(m));
}

static void test_grpc(void)
{
	static const char *const resp[] = {
		":status", "200", "content-type", "application/grpc", "grpc-status", "3", NULL
	};
	static const char *const trailers[] = { "grpc-status", "0", "grpc-message", "", NULL };
	static const char *const only[] = {
		":status", "200", "content-type", "application/grpc", "grpc-status", "5",
		"grpc-message", "not found", NULL
	};
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	const struct h1_head *h;

	begin("grpc_unary_and_trailers_only");
	cv_start(cv);
	cv_headers(cv, DIR_C, 1, 0, grpc_req);
	cv_grpc_msg(cv, DIR_C, 1, ES, "\x0a\x05world");
	cv_headers(cv, DIR_S, 1, 0, resp);	/* grpc-status in non-final headers: ignored */
	cv_grpc_msg(cv, DIR_S, 1, 0, "\x0a\x0bHello world");
	cv_headers(cv, DIR_S, 1, ES, trailers);
	cv_headers(cv, DIR_C, 3, 0, grpc_req);
	cv_grpc_msg(cv, DIR_C, 3, ES, "\x0a\x01x");
	cv_headers(cv, DIR_S, 3, ES, only);
	cv_headers(cv, DIR_C, 5, 0, grpc_req);
	cv_grpc_msg(cv, DIR_C, 5, ES, "");
	cv_headers(cv, DIR_S, 5, 0, resp);	/* no trailers: no grpc-status */
	cv_frame(cv, DIR_S, T_DATA, ES, 5, NULL, 0);
	run_all(cv, &opt_eof, &r);
	h = request_of(&r, 1);
	if (h) {
		CHECK_S(h->target, "/helloworld.Greeter/SayHello");
		CHECK_S(h->content_type, "application/grpc");
		CHECK_S(h->host, "localhost:50051");
	}
	check_done_cv(&r, cv, 1, 200, 0, 0, 0);
	check_done_cv(&r, cv, 3, 200, 5, 0, 0);
	check_done_cv(&r, cv, 5, 200, -1, 0, 0);
	CHECK_U(r.n, 9);
	rec_free(&r);
	cv_free(cv);
}

static void test_hpack_dynamic(void)
{
	char id[32];
	const char *req[] = {
		":method", "GET", ":scheme", "https", ":path", "/same/path", ":authority",
		"dyn.example", "user-agent", "python-httpx/0.27.0", "x-request-id", id,
		"x-custom", "a fairly long custom header value that gets indexed", NULL
	};
	static const char *const resp[] = {
		":status", "200", "content-type", "application/json", "x-server", "same again",
		NULL
	};
	size_t q[6], s[6];
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	const struct h1_head *h;
	int i;

	begin("hpack_dynamic_table");
	cv_start(cv);
	for (i = 0; i < 6; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		if (i == 3) {	/* a table size update inside a header block, both ways */
			nghttp2_hd_deflate_change_table_size(cv->def[DIR_C], 65536);
			nghttp2_hd_deflate_change_table_size(cv->def[DIR_S], 256);
		}
		q[i] = cv_headers(cv, DIR_C, 2 * i + 1, ES, req);
		s[i] = cv_headers(cv, DIR_S, 2 * i + 1, ES, resp);
	}
	run_all(cv, &opt_eof, &r);
	CHECK(q[1] * 2 < q[0]);
	CHECK(s[1] * 2 < s[0]);
	for (i = 0; i < 6; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		h = request_of(&r, 2 * i + 1);
		if (h) {
			CHECK_S(h->x_request_id, id);
			CHECK_S(h->user_agent, "python-httpx/0.27.0");
			CHECK_S(h->host, "dyn.example");
		}
		check_done(&r, 2 * i + 1, 200, -1, q[i], s[i], 0, 0);
	}
	CHECK_U(count_type(&r, 'E'), 0);
	rec_free(&r);
	cv_free(cv);
}

/* A dynamic table larger than H2_HPACK_TABLE_MAX, allowed by SETTINGS. */
static void test_hpack_big_table(void)
{
	static const uint8_t settings[] = { 0, 1, 0, 3, 0x0d, 0x40 };	/* 200000 */
	char *big = repeat_str('{', 3000), name[16];
	const char *req[] = { ":method", "GET", ":path", "/t", name, big, NULL };
	struct conv *cv = cv_new();
	struct rec r = { 0 }, x = { 0 };
	struct h2_conn *c;
	size_t set_off = 0;
	int i;

	begin("hpack_table_from_settings");
	nghttp2_hd_deflate_del(cv->def[DIR_C]);
	if (nghttp2_hd_deflate_new(&cv->def[DIR_C], 200000))
		abort();
	cv_raw(cv, DIR_C, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	/* a client asking for no dynamic table, that the server ignores: tolerated */
	cv_frame(cv, DIR_C, T_SETTINGS, 0, 0, "\0\x01\0\0\0\0", 6);
	cv_frame(cv, DIR_S, T_SETTINGS, 0, 0, "\0\x01\0\0\x10\0", 6);
	set_off = cv->len;
	cv_frame(cv, DIR_S, T_SETTINGS, 0, 0, settings, sizeof(settings));
	nghttp2_hd_deflate_change_table_size(cv->def[DIR_C], 200000);
	for (i = 0; i < 60; i++) {	/* 60 entries of 3 KB: all indexed */
		snprintf(name, sizeof(name), "x-%d", i);
		cv_headers(cv, DIR_C, 2 * i + 1, ES, req);
	}
	for (i = 0; i < 60; i++) {
		snprintf(name, sizeof(name), "x-%d", i);
		cv_headers(cv, DIR_C, 2 * i + 121, ES, req);
	}
	for (i = 0; i < 3; i++)
		cv_headers(cv, DIR_S, 2 * i + 1, ES, resp_200);
	CHECK(cv->bytes[DIR_C][121] < 100);
	CHECK(cv->bytes[DIR_S][5] < 20);
	run_all(cv, &opt_eof, &r);
	CHECK_U(count_type(&r, 'Q'), 120);
	for (i = 0; i < 3; i++)
		check_done_cv(&r, cv, 2 * i + 1, 200, -1, 0, 0);
	CHECK_U(count_type(&r, 'E'), 0);

	/* without the SETTINGS entry (uncaptured), the size update is an error */
	begin("hpack_table_settings_in_gap");
	c = conn_new(&x, false);
	feed_with_gap(c, cv, set_off + 9 + 1, set_off + 9 + 2);	/* same byte as before */
	h2__eof(c);
	h2__free(c);
	CHECK_U(count_type(&x, 'Q'), 0);
	CHECK(x.n == 1 && x.ev[0].type == 'E' && !strcmp(x.ev[0].why, "HPACK decoding error"));
	rec_free(&r);
	rec_free(&x);
	cv_free(cv);
	free(big);
}

/* The multi-stream conversation under every 2-way split and byte at a time
 * (run_all), plus every 3-way split over its first kilobyte. */
static void test_splits(void)
{
	struct conv *cv = cv_new();
	struct rec r = { 0 }, x = { 0 };
	int status[CONC_N];
	uint32_t order[CONC_N];
	struct h2_conn *c;
	size_t a, b, lim;

	begin("splits_equal_one_shot");
	build_concurrent(cv, status, order);
	run_all(cv, &opt_eof, &r);
	CHECK_U(count_type(&r, 'D'), CONC_N);
	lim = cv->len < 1024 ? cv->len : 1024;
	for (a = 1; a < lim; a += 7) {
		for (b = a + 1; b < cv->len; b += 13) {
			const struct run_opt *o = &opt_eof;
			int i;

			x.n = 0;
			c = conn_new(&x, o->preface_done);
			for (i = 0; i < cv->n_pc; i++) {
				const struct piece *pc = &cv->pc[i];
				size_t at = pc->off, end = pc->off + pc->len;

				if (a > at && a < end) {
					feed(c, pc->dir, cv->b + at, a - at);
					at = a;
				}
				if (b > at && b < end) {
					feed(c, pc->dir, cv->b + at, b - at);
					at = b;
				}
				feed(c, pc->dir, cv->b + at, end - at);
			}
			h2__eof(c);
			h2__free(c);
			if (!rec_same(&x, &r, "3-way cut")) {
				fprintf(stderr, "    cuts at %zu %zu\n", a, b);
				goto out;
			}
		}
	}
out:
	rec_free(&r);
	rec_free(&x);
	cv_free(cv);
}

static void test_gap_data(void)
{
	struct conv *cv = cv_new();
	struct rec r = { 0 }, ref = { 0 };
	size_t data_off, ping_off, big = 100000;
	struct h2_conn *c;

	begin("gap_in_big_data");
	cv_start(cv);
	cv_headers(cv, DIR_C, 1, 0, get_req);
	data_off = cv->len;
	cv_data(cv, DIR_C, 1, ES, big);		/* larger than any max frame size: tolerated */
	cv_headers(cv, DIR_C, 3, ES, get_req);
	cv_headers(cv, DIR_S, 3, 0, resp_200);
	ping_off = cv->len;
	cv_frame(cv, DIR_S, T_PING, 0, 0, "pingpong", 8);
	cv_data(cv, DIR_S, 3, ES, 40000);
	cv_headers(cv, DIR_S, 1, ES, resp_200);
	run(cv, &opt_eof, FEED_ONE, 0, &ref);
	check_done_cv(&ref, cv, 1, 200, -1, 0, 0);
	CHECK_U(cv->bytes[DIR_C][1] > big, 1);

	/* gap inside the payload, tail = the rest of the payload + the next frame */
	c = conn_new(&r, false);
	feed_with_gap(c, cv, data_off + 9 + 50, data_off + 9 + big - 40);
	h2__eof(c);
	h2__free(c);
	rec_same(&r, &ref, "gap inside DATA");

	/* the gap covers the whole DATA payload exactly, and a PING payload */
	r.n = 0;
	c = conn_new(&r, false);
	feed_with_gap(c, cv, data_off + 9, data_off + 9 + big);
	h2__eof(c);
	h2__free(c);
	rec_same(&r, &ref, "gap = DATA payload");
	r.n = 0;
	c = conn_new(&r, false);
	feed_with_gap(c, cv, ping_off + 9, ping_off + 17);
	h2__eof(c);
	h2__free(c);
	rec_same(&r, &ref, "gap = PING payload");

	/* a pure gap (sendfile) for the payload: head and tail empty */
	r.n = 0;
	c = conn_new(&r, false);
	for (int i = 0; i < cv->n_pc; i++) {
		const struct piece *pc = &cv->pc[i];

		if (data_off < pc->off || data_off >= pc->off + pc->len) {
			feed(c, pc->dir, cv->b + pc->off, pc->len);
			continue;
		}
		feed(c, pc->dir, cv->b + pc->off, data_off + 9 - pc->off);
		feed_seg(c, pc->dir, NULL, 0, big, NULL, 0);
		feed(c, pc->dir, cv->b + data_off + 9 + big, pc->off + pc->len - data_off - 9 - big);
	}
	h2__eof(c);
	h2__free(c);
	rec_same(&r, &ref, "sendfile gap");
	rec_free(&r);
	rec_free(&ref);
	cv_free(cv);
}

static void test_gap_lost(void)
{
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	size_t data_off, hdr_off;
	struct h2_conn *c;

	cv_start(cv);
	cv_headers(cv, DIR_C, 1, ES, get_req);
	cv_headers(cv, DIR_C, 3, ES, get_req);
	cv_headers(cv, DIR_S, 3, 0, resp_200);
	data_off = cv->len;
	cv_data(cv, DIR_S, 3, 0, 1000);
	hdr_off = cv->len;
	cv_headers(cv, DIR_S, 1, 0, resp_200);
	cv_data(cv, DIR_S, 1, ES, 10);
	cv_data(cv, DIR_S, 3, ES, 10);

	begin("gap_over_frame_header");
	c = conn_new(&r, false);
	feed_with_gap(c, cv, data_off + 100, hdr_off + 3);	/* into the next header */
	CHECK_U(r.n, 5);
	check_done(&r, 1, 0, -1, cv->bytes[DIR_C][1], 0, H2S_LOST, 0);
	/* the gap consumed the rest of the DATA payload; its last DATA never came */
	check_done(&r, 3, 200, -1, cv->bytes[DIR_C][3], cv->bytes[DIR_S][3] - 19, H2S_LOST, 0);
	CHECK_U(count_type(&r, 'E'), 0);
	feed(c, DIR_S, cv->b + hdr_off, 20);		/* ignored from now on */
	h2__eof(c);
	CHECK_U(r.n, 5);
	h2__free(c);

	begin("gap_at_frame_boundary");
	r.n = 0;
	c = conn_new(&r, false);
	feed_with_gap(c, cv, hdr_off, hdr_off + 9);
	CHECK_U(count_type(&r, 'D'), 2);
	CHECK(r.n && r.ev[r.n - 1].res.flags == H2S_LOST);
	h2__free(c);

	begin("gap_in_headers_payload");
	r.n = 0;
	c = conn_new(&r, false);
	feed_with_gap(c, cv, hdr_off + 10, hdr_off + 12);
	CHECK_U(count_type(&r, 'D'), 2);
	CHECK_U(count_type(&r, 'R'), 1);	/* stream 3 only */
	check_done(&r, 1, 0, -1, cv->bytes[DIR_C][1], 0, H2S_LOST, 0);
	h2__free(c);

	begin("explicit_lost");
	r.n = 0;
	c = conn_new(&r, false);
	for (int i = 0; i < cv->n_pc && cv->pc[i].off < data_off; i++)
		feed(c, cv->pc[i].dir, cv->b + cv->pc[i].off,
		     min_sz(cv->pc[i].len, data_off - cv->pc[i].off));
	h2__lost(c);
	check_done(&r, 1, 0, -1, cv->bytes[DIR_C][1], 0, H2S_LOST, 0);
	check_done(&r, 3, 200, -1, cv->bytes[DIR_C][3], cv->bytes[DIR_S][3] - 1009 - 19, H2S_LOST,
		   0);
	h2__lost(c);
	h2__eof(c);
	feed(c, DIR_S, cv->b + data_off, 30);
	CHECK_U(count_type(&r, 'D'), 2);
	h2__free(c);
	rec_free(&r);
	cv_free(cv);
}

static void test_bad_preface(void)
{
	static const char http1[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	struct h2_conn *c;
	size_t k;

	begin("bad_preface");
	for (k = 1; k <= sizeof(http1) - 1; k++) {
		r.n = 0;
		c = conn_new(&r, false);
		feed(c, DIR_C, http1, k);
		feed(c, DIR_C, http1 + k, sizeof(http1) - 1 - k);
		CHECK_U(r.n, 1);
		CHECK(r.n == 1 && r.ev[0].type == 'E');
		h2__eof(c);
		CHECK_U(r.n, 1);
		h2__free(c);
	}
	/* a preface broken in its last byte, then valid frames: all ignored */
	cv_start(cv);
	cv_headers(cv, DIR_C, 1, ES, get_req);
	cv->b[23] = 'X';
	r.n = 0;
	run(cv, &opt_eof, FEED_ONE, 0, &r);
	CHECK(r.n == 1 && r.ev[0].type == 'E' && !strcmp(r.ev[0].why, "bad connection preface"));
	rec_free(&r);
	cv_free(cv);
}

/* Protocol errors after a valid start with stream 1 open: stream 1 ends LOST,
 * then on_error, then nothing. */
struct pcase {
	const char *name;
	int dir;
	uint8_t type, flags;
	uint32_t sid;
	const char *payload;
	size_t len;
	bool ok;		/* not an error */
};

static const struct pcase pcases[] = {
	{ "continuation_alone", DIR_C, T_CONT, EH, 1, "\x82", 1 },
	{ "data_stream_0", DIR_S, T_DATA, 0, 0, "x", 1 },
	{ "headers_stream_0", DIR_C, T_HEADERS, EH, 0, "\x82", 1 },
	{ "rst_len_3", DIR_S, T_RST, 0, 1, "\0\0\0", 3 },
	{ "rst_stream_0", DIR_C, T_RST, 0, 0, "\0\0\0\x08", 4 },
	{ "ping_len_7", DIR_C, T_PING, 0, 0, "1234567", 7 },
	{ "ping_on_stream", DIR_C, T_PING, 0, 1, "12345678", 8 },
	{ "settings_len_5", DIR_S, T_SETTINGS, 0, 0, "12345", 5 },
	{ "settings_ack_len_6", DIR_C, T_SETTINGS, ACK, 0, "123456", 6 },
	{ "settings_stream_1", DIR_C, T_SETTINGS, 0, 1, "", 0 },
	{ "goaway_len_4", DIR_S, T_GOAWAY, 0, 0, "\0\0\0\0", 4 },
	{ "window_update_len_3", DIR_C, T_WINDOW, 0, 1, "\0\0\0", 3 },
	{ "priority_stream_0", DIR_C, T_PRIORITY, 0, 0, "\0\0\0\0\x10", 5 },
	{ "push_from_client", DIR_C, T_PUSH, EH, 1, "\0\0\0\x02\x82", 5 },
	{ "hpack_garbage", DIR_S, T_HEADERS, EH, 1, "\xff\xff\xff\xff\xff\xff", 6 },
	{ "hpack_bad_index", DIR_C, T_HEADERS, EH, 3, "\x80", 1 },
	{ "headers_padding_too_long", DIR_C, T_HEADERS, EH | PADDED, 3, "\x05\x82", 2 },
	{ "headers_padded_empty", DIR_C, T_HEADERS, EH | PADDED, 3, "", 0 },
	{ "headers_priority_short", DIR_C, T_HEADERS, EH | PRIO, 3, "\0\0\0", 3 },
	{ "headers_not_continued", DIR_C, T_HEADERS, 0, 3, "\x82", 1 },
	{ "unknown_type_skipped", DIR_C, 0x42, 0xff, 1, "whatever", 8, true },
	{ "unknown_type_stream_0", DIR_S, 0xfa, 0, 0, "", 0, true },
	{ "data_unknown_stream", DIR_S, T_DATA, ES, 9, "x", 1, true },
	{ "rst_unknown_stream", DIR_C, T_RST, 0, 11, "\0\0\0\x08", 4, true },
	{ "window_update_stream_0", DIR_S, T_WINDOW, 0, 0, "\0\0\0\x01", 4, true },
};

static void test_protocol_errors(void)
{
	struct rec r = { 0 };
	const struct ev *e;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(pcases); i++) {
		const struct pcase *pc = &pcases[i];
		struct conv *cv = cv_new();

		begin(pc->name);
		cv_start(cv);
		cv_headers(cv, DIR_C, 1, ES, get_req);
		cv_frame(cv, pc->dir, pc->type, pc->flags, pc->sid, pc->payload, pc->len);
		if (pc->type == T_HEADERS && !(pc->flags & EH))
			cv_data(cv, DIR_C, 3, 0, 1);
		cv_headers(cv, DIR_S, 1, ES, resp_200);
		r.n = 0;
		run_all(cv, &opt_eof, &r);
		if (pc->ok) {
			check_done_cv(&r, cv, 1, 200, -1, 0, 0);
			CHECK_U(r.n, 3);
			cv_free(cv);
			continue;
		}
		CHECK_U(r.n, 3);
		e = ev_of(&r, 'D', 1);
		if (e)
			CHECK_U(e->res.flags, H2S_LOST);
		CHECK(r.n == 3 && r.ev[2].type == 'E');
		cv_free(cv);
	}
	begin("first_frame_not_settings");
	for (i = 0; i < 2; i++) {
		struct conv *cv = cv_new();

		if (!i)
			cv_raw(cv, DIR_C, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
		cv_frame(cv, i, T_PING, 0, 0, "12345678", 8);
		r.n = 0;
		run(cv, &opt_eof, FEED_ONE, 0, &r);
		/* the client must open with SETTINGS; the server's SETTINGS may
		 * have been written before obs followed the connection */
		if (!i)
			CHECK(r.n == 1 && r.ev[0].type == 'E');
		else
			CHECK_U(r.n, 0);
		cv_free(cv);
	}
	rec_free(&r);
}

static void test_garbage(void)
{
	struct conv *start = cv_new();
	uint8_t buf[512];
	struct rec r = { 0 };
	struct h2_conn *c;
	int i, j, dir, errors = 0;
	uint64_t gap;
	size_t n;

	begin("garbage");
	cv_start(start);
	cv_headers(start, DIR_C, 1, 0, get_req);
	for (i = 0; i < 2000; i++) {
		r.n = 0;
		c = conn_new(&r, i & 1);
		if (i & 2)
			for (j = 0; j < start->n_pc; j++)
				feed(c, start->pc[j].dir, start->b + start->pc[j].off,
				     start->pc[j].len);
		for (j = 0; j < 8; j++) {
			n = rng() % sizeof(buf);
			for (size_t k = 0; k < n; k++)
				buf[k] = rng() % 4 ? rng() & 0xff : rng() & 0x3;
			dir = rng() & 1;
			gap = rng() % 3 ? 0 : rng() % 100000;
			feed_seg(c, dir, buf, n, gap, buf, rng() % 16);
		}
		h2__eof(c);
		check_order(&r);
		CHECK(count_type(&r, 'E') <= 1);
		errors += count_type(&r, 'E');
		if (i & 2)
			CHECK(ev_of(&r, 'D', 1) != NULL);
		h2__free(c);
	}
	CHECK(errors > 1000);
	/* TLS-looking bytes on the server side: a frame header that opens
	 * nothing; no stream is invented */
	r.n = 0;
	c = conn_new(&r, false);
	feed(c, DIR_S, "\x17\x03\x03\x00\x45garbage", 12);
	CHECK(count_type(&r, 'R') == 0 && count_type(&r, 'D') == 0);
	h2__free(c);
	rec_free(&r);
	cv_free(start);
}

static void test_eof(void)
{
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	struct h2_conn *c;

	begin("eof_open_streams");
	cv_start(cv);
	cv_headers(cv, DIR_C, 5, 0, get_req);
	cv_headers(cv, DIR_C, 1, ES, get_req);		/* lower id after 5: not a new stream */
	cv_headers(cv, DIR_C, 7, ES, get_req);
	cv_headers(cv, DIR_S, 7, 0, resp_200);
	cv_data(cv, DIR_S, 7, 0, 99);
	cv_data(cv, DIR_C, 5, 0, 10);
	run_all(cv, &opt_eof, &r);
	CHECK_U(count_type(&r, 'Q'), 2);
	check_done_cv(&r, cv, 5, 0, -1, H2S_EOF, 0);
	check_done_cv(&r, cv, 7, 200, -1, H2S_EOF, 0);
	CHECK(r.n == 5 && r.ev[3].sid == 5 && r.ev[4].sid == 7);

	/* EOF in the middle of a frame: bytes seen so far are counted */
	r.n = 0;
	c = conn_new(&r, false);
	for (int i = 0; i < cv->n_pc; i++)
		feed(c, cv->pc[i].dir, cv->b + cv->pc[i].off,
		     cv->pc[i].len - (i == cv->n_pc - 1 ? 4 : 0));
	h2__eof(c);
	h2__eof(c);
	feed(c, DIR_C, cv->b + cv->len - 4, 4);
	check_done(&r, 5, 0, -1, cv->bytes[DIR_C][5] - 4, 0, H2S_EOF, 0);
	CHECK_U(r.n, 5);
	h2__free(c);
	rec_free(&r);
	cv_free(cv);
}

static void test_block_limit(void)
{
	char *v = repeat_str('{', 9000);	/* long Huffman code: sent as is */
	const char *req[2 * 10 + 9] = { ":method", "GET", ":path", "/big", ":scheme", "http" };
	char names[10][8];
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	static const struct hopt parts = { .parts = 5 };
	int i, n = 6;

	begin("header_block_too_large");
	for (i = 0; i < 7; i++) {
		snprintf(names[i], sizeof(names[i]), "x-h%d", i);
		req[n++] = names[i];
		req[n++] = v;
	}
	cv_start(cv);
	cv_headers(cv, DIR_C, 1, 0, get_req);
	cv_headers_opt(cv, DIR_C, 3, ES, req, &parts);	/* 63 KB: fits */
	cv_headers(cv, DIR_S, 3, ES, resp_200);
	snprintf(names[7], sizeof(names[7]), "x-h7");
	req[n++] = names[7];
	req[n++] = v;
	cv_headers_opt(cv, DIR_C, 5, ES, req, &parts);	/* 72 KB: too large */
	cv_headers(cv, DIR_S, 5, ES, resp_200);
	run_all(cv, &opt_eof, &r);
	check_done_cv(&r, cv, 3, 200, -1, 0, 0);
	check_done(&r, 1, 0, -1, cv->bytes[DIR_C][1], 0, H2S_LOST, 0);
	CHECK(r.n && r.ev[r.n - 1].type == 'E' &&
	      !strcmp(r.ev[r.n - 1].why, "header block too large"));
	CHECK_U(count_type(&r, 'Q'), 2);
	rec_free(&r);
	cv_free(cv);
	free(v);
}

static void test_stream_limit(void)
{
	static const char *const resp[] = { ":status", "503", NULL };
	uint32_t n = H2_MAX_STREAMS + 6, i, sid;
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	struct h2_conn *c;

	begin("stream_limit");
	cv_start(cv);
	for (i = 0; i < n; i++)
		cv_headers(cv, DIR_C, 2 * i + 1, ES, get_req);
	for (i = H2_MAX_STREAMS - 2; i < n; i++)	/* answers to 2 tracked, 6 ignored */
		cv_headers(cv, DIR_S, 2 * i + 1, ES, resp);
	c = conn_new(&r, false);
	for (int k = 0; k < cv->n_pc; k++)
		feed(c, cv->pc[k].dir, cv->b + cv->pc[k].off, cv->pc[k].len);
	CHECK_U(h2__streams_ignored(c), 6);
	CHECK_U(count_type(&r, 'Q'), H2_MAX_STREAMS);
	CHECK_U(count_type(&r, 'R'), 2);
	CHECK_U(count_type(&r, 'D'), 2);
	h2__eof(c);
	CHECK_U(count_type(&r, 'D'), H2_MAX_STREAMS);
	for (i = 0; i < H2_MAX_STREAMS - 2; i++) {
		sid = 2 * i + 1;
		if (i % 97 == 0)
			check_done_cv(&r, cv, sid, 0, -1, H2S_EOF, 0);
	}
	check_done_cv(&r, cv, 2 * (H2_MAX_STREAMS - 1) + 1, 503, -1, 0, 0);
	CHECK_U(count_type(&r, 'E'), 0);
	h2__free(c);

	/* streams freed when done make room again */
	begin("stream_slots_reused");
	cv_free(cv);
	cv = cv_new();
	cv_start(cv);
	for (i = 0; i < 3 * H2_MAX_STREAMS; i++) {
		cv_headers(cv, DIR_C, 2 * i + 1, ES, get_req);
		cv_headers(cv, DIR_S, 2 * i + 1, ES, resp);
	}
	r.n = 0;
	c = conn_new(&r, false);
	for (int k = 0; k < cv->n_pc; k++)
		feed(c, cv->pc[k].dir, cv->b + cv->pc[k].off, cv->pc[k].len);
	CHECK_U(h2__streams_ignored(c), 0);
	CHECK_U(count_type(&r, 'D'), 3 * H2_MAX_STREAMS);
	h2__free(c);
	rec_free(&r);
	cv_free(cv);
}

/* h2c without a preface whose first frame starts like one: a SETTINGS frame
 * of 0x505200 bytes ("PR\0"), its payload uncaptured. */
static void test_h2c_replay(void)
{
	static const uint8_t hdr[9] = { 'P', 'R', 0, T_SETTINGS, 0, 0, 0, 0, 0 };
	struct conv *cv = cv_new();
	struct rec r = { 0 }, ref = { 0 };
	struct h2_conn *c;

	begin("h2c_preface_like_frame");
	cv_frame(cv, DIR_C, T_SETTINGS, 0, 0, NULL, 0);
	cv_headers(cv, DIR_C, 1, ES, get_req);
	cv_headers(cv, DIR_S, 1, ES, resp_200);
	c = conn_new(&r, true);
	feed(c, DIR_C, hdr, 1);
	feed_seg(c, DIR_C, hdr + 1, 8, 0x505200 - 10, "tail of it", 10);
	feed(c, DIR_C, cv->b + 9, cv->pc[0].len - 9);
	feed(c, DIR_S, cv->b + cv->pc[1].off, cv->pc[1].len);
	h2__eof(c);
	h2__free(c);
	run(cv, &(struct run_opt){ .preface_done = true, .eof = true }, FEED_ONE, 0, &ref);
	rec_same(&r, &ref, "after a preface-like SETTINGS frame");
	CHECK_U(count_type(&r, 'D'), 1);
	rec_free(&r);
	rec_free(&ref);
	cv_free(cv);
}

/* The preface content is known: a gap over it is consumed, except when an
 * h2c connection might not send one. */
static void test_preface_gap(void)
{
	struct conv *cv = cv_new();
	struct rec r = { 0 }, ref = { 0 };
	struct h2_conn *c;
	int mode;

	cv_start(cv);
	cv_headers(cv, DIR_C, 1, ES, get_req);
	cv_headers(cv, DIR_S, 1, ES, resp_200);
	run(cv, &opt_eof, FEED_ONE, 0, &ref);
	CHECK_U(ref.n, 3);
	for (mode = 0; mode < 3; mode++) {
		const struct piece *p0 = &cv->pc[0];

		begin(mode == 0 ? "preface_gap" : mode == 1 ? "preface_gap_h2c_started" :
		      "preface_gap_h2c_lost");
		r.n = 0;
		c = conn_new(&r, mode > 0);
		if (mode == 0)
			feed_seg(c, DIR_C, NULL, 0, 24, cv->b + 24, p0->len - 24);
		else if (mode == 1)
			feed_seg(c, DIR_C, cv->b, 6, 18, cv->b + 24, p0->len - 24);
		else
			feed_seg(c, DIR_C, NULL, 0, 24, cv->b + 24, p0->len - 24);
		for (int i = 1; i < cv->n_pc; i++)
			feed(c, cv->pc[i].dir, cv->b + cv->pc[i].off, cv->pc[i].len);
		h2__eof(c);
		h2__free(c);
		if (mode < 2)
			rec_same(&r, &ref, "gap over the preface");
		else
			CHECK_U(r.n, 0);
	}
	rec_free(&r);
	rec_free(&ref);
	cv_free(cv);
}

static void test_h2c(void)
{
	static const struct run_opt upgraded = { .preface_done = true, .eof = true };
	struct rec r = { 0 };
	int with_preface;

	for (with_preface = 0; with_preface < 2; with_preface++) {
		struct conv *cv = cv_new();

		begin(with_preface ? "h2c_upgrade_with_preface" : "h2c_upgrade_no_preface");
		cv_start_opt(cv, with_preface);
		cv_headers(cv, DIR_S, 1, 0, resp_200);
		cv_data(cv, DIR_S, 1, ES, 12);
		cv_headers(cv, DIR_C, 3, ES, get_req);
		cv_headers(cv, DIR_S, 3, ES, resp_200);
		r.n = 0;
		run_all(cv, &upgraded, &r);
		CHECK_U(count_type(&r, 'Q'), 1);
		check_response(&r, 1, 200);
		check_done(&r, 1, 200, -1, 0, cv->bytes[DIR_S][1], 0, 0);
		check_done_cv(&r, cv, 3, 200, -1, 0, 0);
		CHECK_U(r.n, 5);
		cv_free(cv);
	}
	test_h2c_replay();
	rec_free(&r);
}

static void test_push(void)
{
	static const char *const promise[] = {
		":method", "GET", ":scheme", "https", ":path", "/style.css", ":authority",
		"example.com:8443", NULL
	};
	static const char *const css[] = { ":status", "200", "content-type", "text/css", NULL };
	static const struct hopt push2 = { .promised = 2, .parts = 2 };
	static const struct hopt push4 = { .promised = 4, .pad = 3 };
	struct conv *cv = cv_new();
	struct rec r = { 0 };

	begin("push_promise");
	cv_start(cv);
	cv_headers(cv, DIR_C, 1, ES, get_req);
	cv_headers_opt(cv, DIR_S, 1, 0, promise, &push2);
	cv_headers(cv, DIR_S, 1, 0, resp_200);
	cv_headers(cv, DIR_S, 2, 0, css);
	cv_data(cv, DIR_S, 1, ES, 100);
	cv_data(cv, DIR_S, 2, ES, 50);
	cv_headers(cv, DIR_C, 3, ES, get_req);
	cv_headers_opt(cv, DIR_S, 3, 0, promise, &push4);
	cv_headers(cv, DIR_S, 3, ES, resp_200);	/* indexed entries from the promise blocks */
	cv_u32_frame(cv, DIR_S, T_RST, 4, 8);
	run_all(cv, &opt_eof, &r);
	check_done_cv(&r, cv, 1, 200, -1, 0, 0);
	check_done(&r, 2, 200, -1, 0, cv->bytes[DIR_S][2], 0, 0);
	check_done_cv(&r, cv, 3, 200, -1, 0, 0);
	CHECK_U(count_type(&r, 'Q'), 2);
	CHECK_U(count_type(&r, 'D'), 3);
	CHECK_U(count_type(&r, 'E'), 0);
	rec_free(&r);
	cv_free(cv);
}

static void test_client_trailers(void)
{
	static const char *const trailers[] = { "x-checksum", "abc", NULL };
	struct conv *cv = cv_new();
	struct rec r = { 0 };

	begin("client_trailers");
	cv_start(cv);
	cv_headers(cv, DIR_C, 1, 0, grpc_req);
	cv_data(cv, DIR_C, 1, 0, 10);
	cv_headers(cv, DIR_C, 1, ES, trailers);
	cv_headers(cv, DIR_S, 1, ES, resp_200);
	run_all(cv, &opt_eof, &r);
	CHECK_U(count_type(&r, 'Q'), 1);
	check_done_cv(&r, cv, 1, 200, -1, 0, 0);
	rec_free(&r);
	cv_free(cv);
}

static void test_fields(void)
{
	char *path = repeat_str('p', 600), *reqid = repeat_str('r', 200);
	const char *req[] = {
		"host", "host.example", ":method", "VERYLONGMETHODNAME", ":path", path,
		":authority", "authority.example", "host", "second.example", "x-request-id", reqid,
		"content-length", "12x", "tracestate", "", "tracestate", "late", NULL
	};
	const char *req2[] = {
		":method", "GET", ":path", "/", "host", "only-host", "host", "second",
		"content-length", "7", "content-length", "8", NULL
	};
	static const char *const bad_status[] = { ":status", "2x0", NULL };
	struct conv *cv = cv_new();
	struct rec r = { 0 };
	const struct h1_head *h;

	begin("field_extraction");
	cv_start(cv);
	cv_headers(cv, DIR_C, 1, ES, req);
	cv_headers(cv, DIR_C, 3, ES, req2);
	cv_headers(cv, DIR_S, 1, ES, bad_status);
	run_all(cv, &opt_eof, &r);
	h = request_of(&r, 1);
	if (h) {
		CHECK_S(h->method, "VERYLONGMETHODN");
		CHECK_U(strlen(h->target), H1_TARGET_MAX - 1);
		CHECK_S(h->host, "authority.example");
		CHECK_U(strlen(h->x_request_id), H1_REQID_MAX - 1);
		CHECK_S(h->tracestate, "");
		CHECK_U(h->flags, H1F_TARGET_TRUNC);
	}
	h = request_of(&r, 3);
	if (h) {
		CHECK_S(h->host, "only-host");
		CHECK_U(h->flags, H1F_HAS_CL);
		CHECK_U(h->content_length, 7);
	}
	CHECK_U(count_type(&r, 'R'), 0);
	check_done_cv(&r, cv, 1, 0, -1, 0, 0);
	check_done_cv(&r, cv, 3, 0, -1, H2S_EOF, 0);
	rec_free(&r);
	cv_free(cv);
	free(path);
	free(reqid);
}

static void test_misc_api(void)
{
	static const uint8_t pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nmore";
	struct h2_conn *c;
	struct rec r = { 0 };

	begin("preface_prefix");
	CHECK(h2_preface_prefix(pre, 1));
	CHECK(h2_preface_prefix(pre, 24));
	CHECK(h2_preface_prefix(pre, sizeof(pre) - 1));
	CHECK(h2_preface_prefix((const uint8_t *)"PRI * HT", 8));
	CHECK(!h2_preface_prefix((const uint8_t *)"PRI * HTTP/1.1", 14));
	CHECK(!h2_preface_prefix((const uint8_t *)"GET / HTTP/1.1\r\n", 16));
	CHECK(h2_preface_prefix(NULL, 0));

	begin("api_edges");
	errno = 0;
	CHECK(!h2__new(NULL, NULL, false) && errno == EINVAL);
	h2__free(NULL);
	c = conn_new(&r, false);
	h2__feed(c, (enum h2_dir)7, pre, 24, 0, NULL, 0);	/* bad direction: ignored */
	h2__feed(c, DIR_C, NULL, 0, 0, NULL, 0);
	h2__feed(c, DIR_C, NULL, 0, 10, pre, 24);		/* gap over the preface */
	CHECK_U(r.n, 1);
	CHECK(r.n == 1 && r.ev[0].type == 'E');			/* "more" is not SETTINGS */
	h2__free(c);
	/* callbacks left NULL are not called */
	{
		static const struct h2_callbacks none;
		struct conv *cv = cv_new();

		c = h2__new(&none, NULL, false);
		cv_start(cv);
		cv_headers(cv, DIR_C, 1, ES, get_req);
		cv_headers(cv, DIR_S, 1, 0, resp_200);
		cv_raw(cv, DIR_C, "\0\0\0\x09\0\0\0\0\0", 9);
		for (int k = 0; k < cv->n_pc; k++)
			feed(c, cv->pc[k].dir, cv->b + cv->pc[k].off, cv->pc[k].len);
		h2__eof(c);
		h2__free(c);
		cv_free(cv);
	}
	rec_free(&r);
}

int main(void)
{
	test_get();
	test_post();
	test_concurrent();
	test_continuation();
	test_padded();
	test_interim();
	test_rst();
	test_goaway();
	test_grpc();
	test_hpack_dynamic();
	test_hpack_big_table();
	test_splits();
	test_gap_data();
	test_gap_lost();
	test_bad_preface();
	test_protocol_errors();
	test_garbage();
	test_eof();
	test_block_limit();
	test_stream_limit();
	test_preface_gap();
	test_h2c();
	test_push();
	test_client_trailers();
	test_fields();
	test_misc_api();
	printf("test_h2: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
