// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for user/proto/h2.c.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iuser -Itests/unit \
 *         tests/fuzz/fuzz_h2.c user/proto/h2.c -lnghttp2 -o build/fuzz_h2
 *
 * Input: bytes 0..7 = seed of the segmenter, the rest = a program that builds
 * an HTTP/2 conversation between a client and a server: header blocks
 * (HPACK-encoded by nghttp2's deflater, one per direction, split into
 * CONTINUATIONs, padded), DATA, RST_STREAM, GOAWAY, PING, SETTINGS,
 * WINDOW_UPDATE, PRIORITY, PUSH_PROMISE, unknown frames, raw input bytes and
 * corrupted bytes, as pieces: the bytes one direction moves until the other
 * speaks (or the program cuts).
 *
 * The conversation is fed three times:
 *   1. one segment per piece, then EOF;
 *   2. pieces cut at random without gaps, then EOF: the callbacks must be
 *      exactly those of 1;
 *   3. pieces cut at random with gaps (head + uncaptured middle + tail, or
 *      pure gaps), the odd h2__lost()/h2__eof() in between.
 * Every pass checks the contract: per stream at most one on_request, then at
 * most one on_response, then exactly one on_stream_done once the connection
 * ended (EOF, lost, error); at most one on_error, and nothing after it;
 * strings NUL-terminated; byte counts within what was fed; sane flags.
 * LeakSanitizer checks that h2__free() frees everything.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <nghttp2/nghttp2.h>

#include "proto/h2.h"

#define CHECK_ABORT	/* a failed check aborts: libFuzzer keeps the input */
#include "check.h"

#define MAX_EVENTS	8192
#define MAX_SIDS	4096	/* stream ids the checker follows (higher ones: any order) */
#define CONV_MAX	(256u << 10)
#define MAX_NV		16
#define MAX_OPS		400

enum { DIR_C = H2_FROM_CLIENT, DIR_S = H2_FROM_SERVER };
enum { ST_Q = 1, ST_R = 2, ST_D = 4 };

struct fz_ev {
	uint64_t a, b;		/* bytes_in/out, or a hash of the head */
	uint32_t sid;
	int32_t status, grpc;
	uint32_t flags, rst;
	uint8_t type;
	uint8_t pad[3];		/* no implicit padding: events are compared with memcmp */
};

struct fz {
	struct fz_ev ev[MAX_EVENTS];
	size_t n_ev;
	uint8_t st[MAX_SIDS];	/* ST_* seen per stream id */
	bool error;
	bool ended;		/* EOF or lost: streams must all be done */
	uint32_t open;		/* streams followed with a request or response, not done */
	uint64_t fed;		/* bytes fed (captured + gaps), both directions */
};

struct piece {
	uint8_t dir;
	size_t off, len;
};

struct conv {
	uint8_t b[CONV_MAX];
	size_t len;
	struct piece pc[MAX_OPS * 4];
	size_t n_pc;
	bool cut;
	nghttp2_hd_deflater *def[2];
	uint32_t next_sid, next_push;
};

static struct conv cv;
static struct fz fa, fb;
static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static uint64_t fnv(uint64_t h, const void *d, size_t n)
{
	const uint8_t *p = d;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/* ---- contract checks ---------------------------------------------------- */

static uint64_t head_hash(const struct h1_head *h)
{
	uint64_t x = 0xcbf29ce484222325ULL;

	CHECK_NUL(h->method, sizeof(h->method));
	CHECK_NUL(h->target, sizeof(h->target));
	CHECK_NUL(h->reason, sizeof(h->reason));
	CHECK_NUL(h->host, sizeof(h->host));
	CHECK_NUL(h->user_agent, sizeof(h->user_agent));
	CHECK_NUL(h->x_request_id, sizeof(h->x_request_id));
	CHECK_NUL(h->traceparent, sizeof(h->traceparent));
	CHECK_NUL(h->tracestate, sizeof(h->tracestate));
	CHECK_NUL(h->content_type, sizeof(h->content_type));
	CHECK(!(h->version_minor || h->status || h->reason[0] || (h->flags & H1F_HEAD_TRUNC)));
	CHECK(!(!(h->flags & H1F_HAS_CL) && h->content_length));
	x = fnv(x, h->method, strlen(h->method));
	x = fnv(x, h->target, strlen(h->target));
	x = fnv(x, h->host, strlen(h->host));
	x = fnv(x, h->user_agent, strlen(h->user_agent));
	x = fnv(x, h->x_request_id, strlen(h->x_request_id));
	x = fnv(x, h->traceparent, strlen(h->traceparent));
	x = fnv(x, h->tracestate, strlen(h->tracestate));
	x = fnv(x, h->content_type, strlen(h->content_type));
	x = fnv(x, &h->flags, sizeof(h->flags));
	x = fnv(x, &h->head_bytes, sizeof(h->head_bytes));
	return fnv(x, &h->content_length, sizeof(h->content_length));
}

static struct fz_ev *ev_add(struct fz *f, uint8_t type, uint32_t sid)
{
	struct fz_ev *e;

	CHECK(!(f->error || !sid || sid > 0x7fffffff));
	if (f->n_ev == MAX_EVENTS)
		return NULL;
	e = &f->ev[f->n_ev++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->sid = sid;
	return e;
}

/* Stream sid moves to state bit: each once, in the order Q, R, D. */
static void st_step(struct fz *f, uint32_t sid, uint8_t bit)
{
	uint8_t *s;

	if (sid >= MAX_SIDS)
		return;
	s = &f->st[sid];
	CHECK(!(*s & bit || *s & ST_D || (bit == ST_Q && *s)));
	CHECK(!(bit == ST_D && !*s));	/* done without request nor response call */
	if (!*s)
		f->open++;
	if (bit == ST_D)
		f->open--;
	*s |= bit;
}

static void fz_request(void *ctx, uint32_t sid, const struct h1_head *h)
{
	struct fz *f = ctx;
	struct fz_ev *e = ev_add(f, 'Q', sid);

	CHECK(!(!(sid & 1) || f->ended));
	st_step(f, sid, ST_Q);
	if (e)
		e->a = head_hash(h);
}

static void fz_response(void *ctx, uint32_t sid, int status)
{
	struct fz *f = ctx;
	struct fz_ev *e = ev_add(f, 'R', sid);

	CHECK(!(status < 200 || status > 999 || f->ended));
	st_step(f, sid, ST_R);
	if (e)
		e->status = status;
}

static void fz_done(void *ctx, const struct h2_stream_result *res)
{
	struct fz *f = ctx;
	struct fz_ev *e = ev_add(f, 'D', res->stream_id);
	uint32_t known = H2S_RESET | H2S_LOST | H2S_EOF | H2S_GOAWAY;

	/* Q or R before D; on_response at most once, so only Q if no status */
	if (res->stream_id < MAX_SIDS && !res->status && !f->st[res->stream_id])
		st_step(f, res->stream_id, ST_R);	/* a response without request, 1xx only */
	st_step(f, res->stream_id, ST_D);
	CHECK(!(res->flags & ~known || (res->status && (res->status < 200 || res->status > 999))));
	CHECK(!(res->grpc_status < -1 || res->bytes_in + res->bytes_out > f->fed));
	CHECK(!(!(res->flags & H2S_RESET) && res->rst_code));
	CHECK(!(__builtin_popcount(res->flags & (H2S_RESET | H2S_LOST | H2S_EOF)) > 1));
	CHECK(!((res->flags & H2S_GOAWAY) && !(res->flags & ~H2S_GOAWAY)));
	if (!e)
		return;
	e->a = res->bytes_in;
	e->b = res->bytes_out;
	e->status = res->status;
	e->grpc = res->grpc_status;
	e->flags = res->flags;
	e->rst = res->rst_code;
}

static void fz_error(void *ctx, const char *why)
{
	struct fz *f = ctx;

	struct fz_ev *e;

	CHECK(!(f->error || !why || !why[0]));
	e = ev_add(f, 'E', 1);
	if (e)
		e->sid = 0;
	f->error = true;
}

static const struct h2_callbacks fz_cb = {
	.on_request = fz_request,
	.on_response = fz_response,
	.on_stream_done = fz_done,
	.on_error = fz_error,
};

/* After EOF, lost or error: every stream reported is done. */
static void all_done(const struct fz *f)
{
	CHECK(!f->open);
}

/* ---- conversation builder ----------------------------------------------- */

struct prog {
	const uint8_t *p;
	size_t n;
};

static uint8_t take(struct prog *g)
{
	if (!g->n)
		return 0;
	g->n--;
	return *g->p++;
}

static void cv_raw(int dir, const void *p, size_t n)
{
	struct piece *last = cv.n_pc ? &cv.pc[cv.n_pc - 1] : NULL;

	if (cv.len + n > CONV_MAX)
		return;
	if (!last || cv.cut || last->dir != dir) {
		if (cv.n_pc == sizeof(cv.pc) / sizeof(cv.pc[0]))
			return;
		last = &cv.pc[cv.n_pc++];
		last->dir = dir;
		last->off = cv.len;
		last->len = 0;
		cv.cut = false;
	}
	if (n)
		memcpy(cv.b + cv.len, p, n);
	cv.len += n;
	last->len += n;
}

static void cv_frame(int dir, uint8_t type, uint8_t flags, uint32_t sid, const void *p,
		     size_t n)
{
	uint8_t h[9] = { n >> 16, n >> 8, n, type, flags, sid >> 24, sid >> 16, sid >> 8, sid };

	if (cv.len + 9 + n > CONV_MAX)
		return;
	cv_raw(dir, h, 9);
	cv_raw(dir, p, n);
}

static const char *const names[] = {
	":method", ":path", ":authority", ":scheme", ":status", "host", "user-agent",
	"x-request-id", "traceparent", "tracestate", "content-type", "content-length",
	"grpc-status", "grpc-message", "te", "expect", "x-other", "Upper-Case",
};

static const char *const values[] = {
	"GET", "POST", "/", "/a/b?c=d", "example.com", "https", "200", "204", "100", "103",
	"404", "500", "0", "5", "14", "application/grpc", "trailers", "100-continue", "12",
	"2x0", "", "99999999999999999999",
};

/* A header block from the program: a few fields, names and values from the
 * tables or from the input. */
static size_t make_block(struct prog *g, int dir, bool response, uint8_t *out, size_t cap)
{
	nghttp2_nv nv[MAX_NV];
	char buf[MAX_NV][40];
	size_t n = 0, i, k, bound;
	ssize_t rv;

	nv[n++] = (nghttp2_nv){ (uint8_t *)(response ? ":status" : ":method"),
				(uint8_t *)(response ? "200" : "GET"), 7, 3, 0 };
	k = take(g) % MAX_NV;
	for (i = 1; i < k; i++) {
		uint8_t a = take(g), b = take(g);
		const char *name = names[a % (sizeof(names) / sizeof(names[0]))];
		const char *val = values[b % (sizeof(values) / sizeof(values[0]))];

		if (b & 0x80) {		/* a value from the input */
			size_t l = take(g) % sizeof(buf[i]);

			for (size_t j = 0; j < l; j++)
				buf[i][j] = take(g);
			buf[i][l] = '\0';
			val = buf[i];
		}
		nv[n++] = (nghttp2_nv){ (uint8_t *)name, (uint8_t *)val, strlen(name),
					strlen(val), (uint8_t)(a & 0x80 ? NGHTTP2_NV_FLAG_NO_INDEX :
							      NGHTTP2_NV_FLAG_NONE) };
	}
	bound = nghttp2_hd_deflate_bound(cv.def[dir], nv, n);
	if (bound > cap)
		return 0;
	rv = nghttp2_hd_deflate_hd(cv.def[dir], out, cap, nv, n);
	return rv < 0 ? 0 : rv;
}

/* HEADERS (or PUSH_PROMISE) + CONTINUATIONs carrying one block. */
static void op_headers(struct prog *g, int dir, uint32_t sid, bool response, uint8_t ctl)
{
	static uint8_t blk[8192], payload[8192 + 300];
	size_t blen = make_block(g, dir, response, blk, sizeof(blk)), pl = 0, step, from, to;
	int i, parts = 1 + (ctl >> 4) % 4;
	uint8_t pad = ctl & 0x08 ? take(g) : 0;
	bool push = dir == DIR_S && (ctl & 0x04), prio = ctl & 0x02;
	uint8_t flags = (ctl & 0x01 ? 0x1 : 0) | (pad ? 0x8 : 0);

	if (pad)
		payload[pl++] = pad;
	if (push) {
		uint32_t p = cv.next_push += 2;

		memcpy(payload + pl, (uint8_t[4]){ p >> 24, p >> 16, p >> 8, p }, 4);
		pl += 4;
		flags &= ~0x1;
	} else if (prio) {
		memcpy(payload + pl, "\0\0\0\x01\x10", 5);
		pl += 5;
		flags |= 0x20;
	}
	step = (blen + parts - 1) / parts;
	step = step < blen ? step : blen;
	memcpy(payload + pl, blk, step);
	pl += step;
	memset(payload + pl, 0, pad);
	pl += pad;
	flags |= parts == 1 ? 0x4 : 0;
	cv_frame(dir, push ? 5 : 1, flags, sid, payload, pl);
	for (i = 1; i < parts; i++) {
		from = i * step < blen ? i * step : blen;
		to = i == parts - 1 || (i + 1) * step > blen ? blen : (i + 1) * step;
		cv_frame(dir, 9, i == parts - 1 ? 0x4 : 0, sid, blk + from, to - from);
	}
}

static uint32_t pick_sid(struct prog *g)
{
	uint8_t x = take(g);
	uint32_t hi;

	if (x == 0xff) {
		hi = take(g);
		return hi << 8 | take(g);
	}
	if (x == 0xfe)
		return cv.next_push ? cv.next_push : 2;
	return cv.next_sid ? cv.next_sid - 2 * (x % 8) : 1;
}

static void op_data(struct prog *g, int dir, uint32_t sid, uint8_t ctl)
{
	static uint8_t payload[1 << 16];
	size_t n = take(g) | (ctl & 0x30) << 4;
	uint8_t flags = ctl & 0x01;

	if (ctl & 0x40)
		n *= 16;
	if (n > sizeof(payload) - 256)
		n = sizeof(payload) - 256;
	memset(payload, 'd', n + 256);
	if (ctl & 0x08) {	/* padded */
		uint8_t pad = take(g);

		payload[0] = pad;
		n += 1 + pad;
		flags |= 0x8;
	}
	cv_frame(dir, 0, flags, sid, payload, n);
}

static void op_control(struct prog *g, int dir, uint8_t ctl)
{
	uint8_t p[32], type, flags;
	uint32_t v = take(g), sid;

	v = v << 8 | take(g);
	memset(p, 0, sizeof(p));
	memcpy(p, (uint8_t[4]){ v >> 24, v >> 16, v >> 8, v }, 4);
	switch (ctl % 7) {
	case 0:
		cv_frame(dir, 3, 0, pick_sid(g), p, 4);			/* RST_STREAM */
		break;
	case 1:
		cv_frame(dir, 7, 0, 0, p, 8 + take(g) % 16);		/* GOAWAY */
		break;
	case 2:
		cv_frame(dir, 6, take(g) & 1, 0, p, 8);			/* PING */
		break;
	case 3:
		cv_frame(dir, 4, 0, 0, p, 6 * (take(g) % 4));		/* SETTINGS */
		break;
	case 4:
		cv_frame(dir, 8, 0, take(g) & 1 ? 0 : pick_sid(g), p, 4);	/* WINDOW_UPDATE */
		break;
	case 5:
		cv_frame(dir, 2, 0, pick_sid(g), p, 5);			/* PRIORITY */
		break;
	default:
		type = 10 + take(g);
		flags = take(g);
		sid = pick_sid(g);
		cv_frame(dir, type, flags, sid, p, take(g) % 32);
		break;
	}
}

static void op_raw(struct prog *g, int dir)
{
	uint8_t p[64];
	size_t n = take(g) % sizeof(p), i;

	for (i = 0; i < n; i++)
		p[i] = take(g);
	cv_raw(dir, p, n);
}

static void corrupt(struct prog *g, uint8_t ctl)
{
	size_t at = (size_t)ctl << 8 | take(g);

	if (cv.len)
		cv.b[at % cv.len] ^= 1u << (take(g) % 8);
}

static void build(struct prog *g)
{
	static const uint8_t settings[] = { 0, 4, 0, 1, 0, 0 };
	int ops = 0;

	cv.len = cv.n_pc = 0;
	cv.cut = false;
	cv.next_sid = 0;
	cv.next_push = 0;
	CHECK(!(nghttp2_hd_deflate_new(&cv.def[0], 4096) || nghttp2_hd_deflate_new(&cv.def[1], 4096)));
	if (!(take(g) & 0x80))
		cv_raw(DIR_C, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	cv_frame(DIR_C, 4, 0, 0, settings, sizeof(settings));
	cv_frame(DIR_S, 4, 0, 0, settings, sizeof(settings));
	while (g->n && ops++ < MAX_OPS) {
		uint8_t op = take(g), ctl = take(g);
		int dir = op & 0x80 ? DIR_S : DIR_C;

		switch (op & 0x0f) {
		case 0: case 1: case 2:
			cv.next_sid = cv.next_sid ? cv.next_sid + 2 : 1;
			op_headers(g, DIR_C, cv.next_sid, false, ctl);
			break;
		case 3: case 4: case 5:
			op_headers(g, DIR_S, pick_sid(g), true, ctl);
			break;
		case 6:
			op_headers(g, dir, pick_sid(g), dir == DIR_S, ctl);	/* trailers */
			break;
		case 7: case 8: case 9:
			op_data(g, dir, pick_sid(g), ctl);
			break;
		case 10: case 11:
			op_control(g, dir, ctl);
			break;
		case 12:
			op_raw(g, dir);
			break;
		case 13:		/* corrupt a byte */
			corrupt(g, ctl);
			break;
		default:
			cv.cut = true;
			break;
		}
	}
	nghttp2_hd_deflate_del(cv.def[0]);
	nghttp2_hd_deflate_del(cv.def[1]);
}

/* ---- feeding ------------------------------------------------------------ */

static void feed_seg(struct h2_conn *c, struct fz *f, int dir, const uint8_t *d, size_t n,
		     bool gaps)
{
	size_t h = n, t = 0;
	uint8_t *hb, *tb;

	if (gaps && !(rng() % 4)) {
		h = rng() % (n + 1);
		t = rng() % (n - h + 1);
	}
	hb = h ? malloc(h) : NULL;
	tb = t ? malloc(t) : NULL;
	CHECK(!((h && !hb) || (t && !tb)));
	if (h)
		memcpy(hb, d, h);
	if (t)
		memcpy(tb, d + n - t, t);
	f->fed += n;
	h2__feed(c, dir, hb, h, n - h - t, tb, t);
	free(hb);
	free(tb);
}

static size_t seg_len(size_t left)
{
	static const size_t max[] = { 1, 9, 64, 1024, SIZE_MAX };
	size_t m = max[rng() % 5];

	m = m < left ? m : left;
	return 1 + rng() % m;
}

enum pass { P_WHOLE, P_CUT, P_GAPS };

static void run(struct fz *f, enum pass pass, bool preface_done)
{
	struct h2_conn *c;
	size_t i, at, k;

	memset(f->st, 0, sizeof(f->st));
	f->n_ev = 0;
	f->error = f->ended = false;
	f->open = 0;
	f->fed = 0;
	c = h2__new(&fz_cb, f, preface_done);
	CHECK(c);
	for (i = 0; i < cv.n_pc; i++) {
		const struct piece *pc = &cv.pc[i];

		for (at = 0; at < pc->len; at += k) {
			k = pass == P_WHOLE ? pc->len : seg_len(pc->len - at);
			if (pass == P_GAPS && !(rng() % 64)) {
				h2__lost(c);
				f->ended = true;
				all_done(f);
			}
			if (pass == P_GAPS && !(rng() % 128)) {
				h2__eof(c);
				f->ended = true;
				all_done(f);
			}
			feed_seg(c, f, pc->dir, cv.b + pc->off + at, k, pass == P_GAPS);
			if (f->error)
				all_done(f);
		}
	}
	h2__eof(c);
	f->ended = true;
	all_done(f);
	h2__free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct prog g;
	uint64_t seed = 0;
	bool preface_done;

	if (size < 9)
		return 0;
	memcpy(&seed, data, 8);
	g.p = data + 8;
	g.n = size - 8;
	preface_done = g.p[0] & 0x40;
	build(&g);

	rng_state = seed | 1;
	run(&fa, P_WHOLE, preface_done);
	run(&fb, P_CUT, preface_done);
	CHECK(!(fa.n_ev != fb.n_ev || memcmp(fa.ev, fb.ev, fa.n_ev * sizeof(fa.ev[0]))));
	run(&fb, P_GAPS, preface_done);
	return 0;
}
