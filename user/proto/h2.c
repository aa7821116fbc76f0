// SPDX-License-Identifier: MIT
/*
 * h2 — passive HTTP/2 parser. The contract is h2.h.
 *
 * Each direction ("side") is a small state machine: connection preface,
 * frame header, frame payload. A payload is seen as three consecutive parts:
 *
 *   prefix   the fixed bytes we need (pad length, priority, promised stream
 *            id, RST_STREAM error code, GOAWAY last-stream-id), kept in
 *            side.fix[]
 *   fragment a header-block fragment (HEADERS, PUSH_PROMISE, CONTINUATION),
 *            appended to side.blk and decoded when END_HEADERS ends the block
 *   rest     bytes whose content does not matter: DATA, padding, PING,
 *            WINDOW_UPDATE, SETTINGS, GOAWAY debug data, unknown types
 *
 * so that a gap is consumed exactly when it lies in "rest" and makes the
 * connection lost anywhere else. Header blocks are decoded in order on each
 * side, also for streams that are not tracked, so that the HPACK dynamic
 * tables stay in step with the peers'. The inflaters accept dynamic table
 * sizes up to H2_HPACK_TABLE_MAX whatever the SETTINGS say, and more when a
 * captured SETTINGS_HEADER_TABLE_SIZE allows it (SETTINGS entries are read
 * as they go by; one in a gap is skipped, not fatal).
 *
 * Tracked streams live in one array sorted by stream id (binary search). A
 * stream is created by a client HEADERS block with a new odd id (a request),
 * or by a server HEADERS block on a stream id never seen (a response without
 * request, as for stream 1 after an h2c upgrade, or a pushed stream). It is
 * freed when it ends; h2__free() frees what is left without callbacks.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <nghttp2/nghttp2.h>

#include "proto/h2.h"

#define H2_PREFACE_LEN		24
#define H2_FRAME_HDR_LEN	9
#define H2_FIX_MAX		8	/* longest payload prefix kept (GOAWAY) */
#define H2_HPACK_TABLE_MAX	65536	/* dynamic table size accepted without SETTINGS */
#define H2_HPACK_TABLE_HARD_MAX	(1u << 20)	/* ... and with: a larger one is an error */
#define H2_SETTING_LEN		6
#define H2_SETTING_TABLE_SIZE	1	/* SETTINGS_HEADER_TABLE_SIZE */
#define H2_BLK_MIN		256	/* first allocation of a header-block buffer */
#define H2_BLK_KEEP		16384	/* a larger header-block buffer is freed after use */
#define H2_STREAMS_MIN		8	/* first allocation of the stream array */
#define H2_SID_MASK		0x7fffffffu

enum frame_type {
	F_DATA = 0, F_HEADERS, F_PRIORITY, F_RST_STREAM, F_SETTINGS, F_PUSH_PROMISE, F_PING,
	F_GOAWAY, F_WINDOW_UPDATE, F_CONTINUATION,
};

enum {
	FL_END_STREAM	= 0x01,	/* DATA, HEADERS */
	FL_ACK		= 0x01,	/* SETTINGS, PING */
	FL_END_HEADERS	= 0x04,	/* HEADERS, PUSH_PROMISE, CONTINUATION */
	FL_PADDED	= 0x08,	/* DATA, HEADERS, PUSH_PROMISE */
	FL_PRIORITY	= 0x20,	/* HEADERS */
};

enum side_state {
	S_PREFACE,		/* the client preface must come first */
	S_PREFACE_MAYBE,	/* h2c: the client preface may come first */
	S_HEADER,		/* in (or before) a frame header */
	S_PAYLOAD,		/* in a frame payload */
};

struct h2_frame {
	uint32_t len;
	uint32_t sid;
	uint8_t type;
	uint8_t flags;
};

/* Parser state of one direction. */
struct h2_side {
	nghttp2_hd_inflater *inf;	/* HPACK decoder of this direction's blocks */
	enum side_state state;
	uint32_t preface_off;		/* preface bytes matched so far */
	uint8_t hdr[H2_FRAME_HDR_LEN];	/* partial frame header */
	uint32_t hdr_len;
	bool seen_frame;		/* a first frame (SETTINGS) was seen */
	struct h2_frame f;		/* current frame (S_PAYLOAD) */
	uint32_t off;			/* payload bytes of f consumed */
	uint32_t fix_len;		/* payload prefix length of f */
	uint32_t frag_end;		/* payload offset where f's fragment ends */
	uint8_t fix[H2_FIX_MAX];	/* payload prefix of f */
	uint8_t set[H2_SETTING_LEN];	/* SETTINGS entry in progress */
	bool set_ok;			/* every byte of it was captured */
	uint32_t table_max;		/* dynamic table size limit of inf */
	bool blk_open;			/* a header block waits for CONTINUATION */
	uint8_t blk_type;		/* F_HEADERS or F_PUSH_PROMISE */
	uint8_t blk_flags;		/* flags of the frame that opened the block */
	uint32_t blk_sid;
	uint8_t *blk;			/* header block so far, owned */
	uint32_t blk_len, blk_cap;
	uint64_t blk_bytes;		/* frame bytes (headers + payload) of the block */
};

struct h2_stream {
	struct h2_stream_result r;
	bool final;			/* final response headers seen */
};

struct h2_conn {
	struct h2_callbacks cb;
	void *ctx;
	struct h2_side side[2];		/* [enum h2_dir] */
	struct h2_stream *st;		/* tracked streams, sorted by id, owned */
	uint32_t n_st, cap_st;
	uint32_t last_client_sid;	/* highest odd stream id seen opened */
	uint32_t last_push_sid;		/* highest even stream id seen opened */
	uint32_t goaway_last;		/* lowest last-stream-id of the server's GOAWAYs */
	bool goaway_seen;
	bool dead;			/* lost, failed or ended: input is ignored */
	uint64_t streams_ignored;	/* streams not tracked (H2_MAX_STREAMS) */
	struct h1_head req;		/* request head being decoded */
};

static const char h2_preface[H2_PREFACE_LEN + 1] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- streams ------------------------------------------------------------ */

/* Index of the first stream with an id >= sid. */
static uint32_t stream_index(const struct h2_conn *c, uint32_t sid)
{
	uint32_t lo = 0, hi = c->n_st, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (c->st[mid].r.stream_id < sid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct h2_stream *stream_find(struct h2_conn *c, uint32_t sid)
{
	uint32_t i = stream_index(c, sid);

	return i < c->n_st && c->st[i].r.stream_id == sid ? &c->st[i] : NULL;
}

/* Track a new stream sid (not tracked yet). NULL when the table is full or
 * memory is short: the stream is counted in streams_ignored. */
static struct h2_stream *stream_add(struct h2_conn *c, uint32_t sid)
{
	uint32_t i, cap;
	struct h2_stream *st;

	if (c->n_st == c->cap_st) {
		cap = c->cap_st ? c->cap_st * 2 : H2_STREAMS_MIN;
		if (c->n_st >= H2_MAX_STREAMS)
			goto ignore;
		if (cap > H2_MAX_STREAMS)
			cap = H2_MAX_STREAMS;
		st = realloc(c->st, cap * sizeof(*st));
		if (!st)
			goto ignore;
		c->st = st;
		c->cap_st = cap;
	}
	i = stream_index(c, sid);
	memmove(&c->st[i + 1], &c->st[i], (c->n_st - i) * sizeof(*c->st));
	c->n_st++;
	st = &c->st[i];
	memset(st, 0, sizeof(*st));
	st->r.stream_id = sid;
	st->r.grpc_status = -1;
	return st;
ignore:
	c->streams_ignored++;
	return NULL;
}

/* H2S_GOAWAY when a server GOAWAY excluded the client stream sid. */
static uint32_t goaway_flag(const struct h2_conn *c, uint32_t sid)
{
	return c->goaway_seen && (sid & 1) && sid > c->goaway_last ? H2S_GOAWAY : 0;
}

static void stream_report(struct h2_conn *c, struct h2_stream_result *res, uint32_t flags)
{
	if (flags)
		flags |= goaway_flag(c, res->stream_id);
	res->flags |= flags;
	if (c->cb.on_stream_done)
		c->cb.on_stream_done(c->ctx, res);
}

/* End stream sid if tracked: flags 0 for a complete response, else H2S_*. */
static void stream_finish(struct h2_conn *c, uint32_t sid, uint32_t flags, uint32_t rst_code)
{
	struct h2_stream_result res;
	struct h2_stream *st = stream_find(c, sid);
	uint32_t i;

	if (!st)
		return;
	res = st->r;
	res.rst_code = rst_code;
	i = st - c->st;
	memmove(&c->st[i], &c->st[i + 1], (c->n_st - i - 1) * sizeof(*c->st));
	c->n_st--;
	stream_report(c, &res, flags);
}

/* End every tracked stream with flags, in stream id order, and free them. */
static void streams_end_all(struct h2_conn *c, uint32_t flags)
{
	struct h2_stream *st = c->st;
	uint32_t i, n = c->n_st;

	c->st = NULL;
	c->n_st = c->cap_st = 0;
	for (i = 0; i < n; i++)
		stream_report(c, &st[i].r, flags);
	free(st);
}

/* The connection is lost (why == NULL) or broken (why: on_error after the
 * streams ended). Nothing more is parsed. */
static void conn_fail(struct h2_conn *c, const char *why)
{
	c->dead = true;
	streams_end_all(c, H2S_LOST);
	if (why && c->cb.on_error)
		c->cb.on_error(c->ctx, why);
}

/* ---- header blocks ------------------------------------------------------ */

/* Copy v[0..n) into dst[cap] NUL-terminated; true if it was truncated. */
static bool field_copy(char *dst, size_t cap, const uint8_t *v, size_t n)
{
	size_t k = min_sz(n, cap - 1);

	if (k)
		memcpy(dst, v, k);
	dst[k] = '\0';
	return k < n;
}

static bool name_is(const nghttp2_nv *nv, const char *name)
{
	size_t n = strlen(name);

	return nv->namelen == n && !memcmp(nv->name, name, n);
}

/* Parse a decimal number of at most max_digits digits; -1 if it is not one. */
static long parse_dec(const uint8_t *v, size_t n, size_t max_digits)
{
	long x = 0;
	size_t i;

	if (!n || n > max_digits)
		return -1;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (v[i] - '0');
	}
	return x;
}

/* Request fields copied into struct h1_head; the first occurrence wins,
 * except that :authority wins over host. */
enum req_field_id {
	RF_METHOD, RF_PATH, RF_AUTHORITY, RF_HOST, RF_UA, RF_REQID, RF_TRACEPARENT,
	RF_TRACESTATE, RF_CTYPE, RF_MAX
};

static const struct req_field {
	const char *name;
	size_t off;		/* destination in struct h1_head */
	size_t cap;
} req_fields[RF_MAX] = {
	[RF_METHOD] = { ":method", offsetof(struct h1_head, method), H1_METHOD_MAX },
	[RF_PATH] = { ":path", offsetof(struct h1_head, target), H1_TARGET_MAX },
	[RF_AUTHORITY] = { ":authority", offsetof(struct h1_head, host), H1_HOST_MAX },
	[RF_HOST] = { "host", offsetof(struct h1_head, host), H1_HOST_MAX },
	[RF_UA] = { "user-agent", offsetof(struct h1_head, user_agent), H1_UA_MAX },
	[RF_REQID] = { "x-request-id", offsetof(struct h1_head, x_request_id), H1_REQID_MAX },
	[RF_TRACEPARENT] = { "traceparent", offsetof(struct h1_head, traceparent),
			     H1_TRACEPARENT_MAX },
	[RF_TRACESTATE] = { "tracestate", offsetof(struct h1_head, tracestate),
			    H1_TRACESTATE_MAX },
	[RF_CTYPE] = { "content-type", offsetof(struct h1_head, content_type), H1_CTYPE_MAX },
};

struct req_ctx {
	struct h1_head *h;
	uint32_t seen;		/* 1u << enum req_field_id */
	bool seen_cl;
};

/* Content-Length and Expect, the two fields that set h1_head flags. */
static void req_flag_field(struct req_ctx *rc, const nghttp2_nv *nv)
{
	long cl;

	if (name_is(nv, "content-length") && !rc->seen_cl) {
		rc->seen_cl = true;
		cl = parse_dec(nv->value, nv->valuelen, 18);
		if (cl >= 0) {
			rc->h->content_length = cl;
			rc->h->flags |= H1F_HAS_CL;
		}
	} else if (name_is(nv, "expect") && nv->valuelen == 12 &&
		   !strncasecmp((const char *)nv->value, "100-continue", 12)) {
		rc->h->flags |= H1F_EXPECT_CONTINUE;
	}
}

static void req_nv(void *arg, const nghttp2_nv *nv)
{
	struct req_ctx *rc = arg;
	const struct req_field *f;
	bool trunc;
	int i;

	for (i = 0; i < RF_MAX; i++)
		if (name_is(nv, req_fields[i].name))
			break;
	if (i == RF_MAX) {
		req_flag_field(rc, nv);
		return;
	}
	if (rc->seen & (1u << i) || (i == RF_HOST && rc->seen & (1u << RF_AUTHORITY)))
		return;
	rc->seen |= 1u << i;
	f = &req_fields[i];
	trunc = field_copy((char *)rc->h + f->off, f->cap, nv->value, nv->valuelen);
	if (i == RF_PATH && trunc)
		rc->h->flags |= H1F_TARGET_TRUNC;
}

struct resp_ctx {
	int status;		/* :status, 0 if none or invalid */
	int grpc;		/* grpc-status, -1 if none or invalid */
};

static void resp_nv(void *arg, const nghttp2_nv *nv)
{
	struct resp_ctx *rc = arg;
	long x;

	if (name_is(nv, ":status") && !rc->status) {
		x = parse_dec(nv->value, nv->valuelen, 3);
		if (x >= 100)
			rc->status = x;
	} else if (name_is(nv, "grpc-status") && rc->grpc < 0) {
		x = parse_dec(nv->value, nv->valuelen, 9);
		if (x >= 0)
			rc->grpc = x;
	}
}

static void ignore_nv(void *arg, const nghttp2_nv *nv)
{
}

/* Decode the side's complete header block, calling fn for every field. On
 * an HPACK error the connection fails and -1 is returned. */
static int block_inflate(struct h2_conn *c, struct h2_side *s,
			 void (*fn)(void *arg, const nghttp2_nv *nv), void *arg)
{
	static const uint8_t empty[1];
	const uint8_t *in = s->blk ? s->blk : empty;
	size_t left = s->blk_len;
	nghttp2_nv nv;
	ssize_t rv;
	int fl;

	for (;;) {
		fl = 0;
		rv = nghttp2_hd_inflate_hd2(s->inf, &nv, &fl, in, left, 1);
		if (rv < 0)
			break;
		in += rv;
		left -= rv;
		if (fl & NGHTTP2_HD_INFLATE_EMIT)
			fn(arg, &nv);
		if (fl & NGHTTP2_HD_INFLATE_FINAL) {
			nghttp2_hd_inflate_end_headers(s->inf);
			return 0;
		}
		if (!(fl & NGHTTP2_HD_INFLATE_EMIT) && !rv)
			break;
	}
	conn_fail(c, "HPACK decoding error");
	return -1;
}

/* A request header block (or client trailers) is complete. */
static void request_block(struct h2_conn *c, struct h2_side *s)
{
	struct req_ctx rc = { .h = &c->req };
	uint32_t sid = s->blk_sid;
	struct h2_stream *st;

	memset(&c->req, 0, sizeof(c->req));
	if (block_inflate(c, s, req_nv, &rc) < 0)
		return;
	st = stream_find(c, sid);
	if (st) {
		st->r.bytes_in += s->blk_bytes;	/* trailers */
		return;
	}
	if (!(sid & 1) || sid <= c->last_client_sid)
		return;			/* a stream already over, or a bogus id */
	c->last_client_sid = sid;
	st = stream_add(c, sid);
	if (!st)
		return;
	st->r.bytes_in = s->blk_bytes;
	c->req.head_bytes = s->blk_bytes > UINT32_MAX ? UINT32_MAX : s->blk_bytes;
	if (c->cb.on_request)
		c->cb.on_request(c->ctx, sid, &c->req);
}

/* A server HEADERS block on a stream not tracked: a response whose request
 * was not seen as HTTP/2 (h2c upgrade) or a pushed stream. Stream ids that
 * were seen before belong to streams already over or ignored. */
static struct h2_stream *stream_adopt(struct h2_conn *c, uint32_t sid)
{
	uint32_t *last = sid & 1 ? &c->last_client_sid : &c->last_push_sid;

	if (sid <= *last)
		return NULL;
	*last = sid;
	return stream_add(c, sid);
}

/* A response header block (interim, final, trailers) is complete. */
static void response_block(struct h2_conn *c, struct h2_side *s)
{
	struct resp_ctx rc = { .status = 0, .grpc = -1 };
	bool end = s->blk_flags & FL_END_STREAM;
	struct h2_stream *st;
	bool trailers;

	if (block_inflate(c, s, resp_nv, &rc) < 0)
		return;
	st = stream_find(c, s->blk_sid);
	if (!st)
		st = stream_adopt(c, s->blk_sid);
	if (!st)
		return;
	st->r.bytes_out += s->blk_bytes;
	trailers = st->final;
	if (!st->final && rc.status >= 200) {
		st->final = true;
		st->r.status = rc.status;
		if (c->cb.on_response)
			c->cb.on_response(c->ctx, s->blk_sid, rc.status);
	}
	if (rc.grpc >= 0 && (trailers || end))
		st->r.grpc_status = rc.grpc;
	if (end)
		stream_finish(c, s->blk_sid, 0, 0);
}

/* A PUSH_PROMISE block: decoded for HPACK state only. */
static void promise_block(struct h2_conn *c, struct h2_side *s)
{
	struct h2_stream *st;

	if (block_inflate(c, s, ignore_nv, NULL) < 0)
		return;
	st = stream_find(c, s->blk_sid);
	if (st)
		st->r.bytes_out += s->blk_bytes;
}

static void block_done(struct h2_conn *c, struct h2_side *s, enum h2_dir dir)
{
	s->blk_open = false;
	if (dir == H2_FROM_CLIENT)
		request_block(c, s);
	else if (s->blk_type == F_HEADERS)
		response_block(c, s);
	else
		promise_block(c, s);
	s->blk_len = 0;
	if (s->blk_cap > H2_BLK_KEEP) {
		free(s->blk);
		s->blk = NULL;
		s->blk_cap = 0;
	}
}

static int block_append(struct h2_conn *c, struct h2_side *s, const uint8_t *p, size_t n)
{
	size_t need = (size_t)s->blk_len + n, cap = s->blk_cap ? s->blk_cap : H2_BLK_MIN;
	uint8_t *b;

	if (need > H2_HEADER_BLOCK_MAX) {
		conn_fail(c, "header block too large");
		return -1;
	}
	while (cap < need)
		cap *= 2;
	if (cap > H2_HEADER_BLOCK_MAX)
		cap = H2_HEADER_BLOCK_MAX;
	if (cap != s->blk_cap) {
		b = realloc(s->blk, cap);
		if (!b) {
			conn_fail(c, "out of memory");
			return -1;
		}
		s->blk = b;
		s->blk_cap = cap;
	}
	memcpy(s->blk + s->blk_len, p, n);
	s->blk_len += n;
	return 0;
}

/* ---- frames ------------------------------------------------------------- */

static bool is_block_frame(uint8_t type)
{
	return type == F_HEADERS || type == F_PUSH_PROMISE || type == F_CONTINUATION;
}

/* Count n bytes of the current frame to its stream (header blocks: to the
 * block, counted to the stream once the block is decoded). */
static void side_count(struct h2_conn *c, struct h2_side *s, enum h2_dir dir, uint64_t n)
{
	struct h2_stream *st;

	if (is_block_frame(s->f.type)) {
		s->blk_bytes += n;
		return;
	}
	if (!s->f.sid)
		return;
	st = stream_find(c, s->f.sid);
	if (!st)
		return;
	if (dir == H2_FROM_CLIENT)
		st->r.bytes_in += n;
	else
		st->r.bytes_out += n;
}

/* NULL if frame f may come now on side s, else why not. */
static const char *frame_check(const struct h2_side *s, enum h2_dir dir,
			       const struct h2_frame *f)
{
	if (s->blk_open)
		return f->type == F_CONTINUATION && f->sid == s->blk_sid ? NULL :
		       "header block not continued";
	/* The client's first frame must be SETTINGS (it follows the preface).
	 * The server's may be missed: obs only starts following a connection at
	 * the client's first bytes, and a server sends its SETTINGS before. */
	if (!s->seen_frame && dir == H2_FROM_CLIENT && (f->type != F_SETTINGS || f->flags & FL_ACK))
		return "first frame is not SETTINGS";
	switch (f->type) {
	case F_DATA:
	case F_HEADERS:
		return f->sid ? NULL : "DATA or HEADERS on stream 0";
	case F_PRIORITY:
		return f->sid && f->len == 5 ? NULL : "bad PRIORITY frame";
	case F_RST_STREAM:
		return f->sid && f->len == 4 ? NULL : "bad RST_STREAM frame";
	case F_SETTINGS:
		return !f->sid && !(f->len % 6) && !(f->flags & FL_ACK && f->len) ? NULL :
		       "bad SETTINGS frame";
	case F_PUSH_PROMISE:
		return f->sid && dir == H2_FROM_SERVER ? NULL : "bad PUSH_PROMISE frame";
	case F_PING:
		return !f->sid && f->len == 8 ? NULL : "bad PING frame";
	case F_GOAWAY:
		return !f->sid && f->len >= 8 ? NULL : "bad GOAWAY frame";
	case F_WINDOW_UPDATE:
		return f->len == 4 ? NULL : "bad WINDOW_UPDATE frame";
	case F_CONTINUATION:
		return "CONTINUATION without a header block";
	}
	return NULL;
}

static uint32_t frame_fix_len(const struct h2_frame *f)
{
	uint32_t pad = f->flags & FL_PADDED ? 1 : 0;

	switch (f->type) {
	case F_HEADERS:
		return pad + (f->flags & FL_PRIORITY ? 5 : 0);
	case F_PUSH_PROMISE:
		return pad + 4;
	case F_RST_STREAM:
		return 4;
	case F_GOAWAY:
		return 8;
	}
	return 0;
}

/* The payload prefix is in s->fix: find where the fragment ends. */
static int frame_prefix_done(struct h2_conn *c, struct h2_side *s)
{
	const struct h2_frame *f = &s->f;
	uint32_t pad = 0;

	if (f->type == F_CONTINUATION)
		s->frag_end = f->len;
	if (f->type != F_HEADERS && f->type != F_PUSH_PROMISE)
		return 0;
	if (f->flags & FL_PADDED)
		pad = s->fix[0];
	if (s->fix_len + pad > f->len) {
		conn_fail(c, "padding longer than the frame");
		return -1;
	}
	s->frag_end = f->len - pad;
	return 0;
}

static void frame_end(struct h2_conn *c, struct h2_side *s, enum h2_dir dir)
{
	const struct h2_frame *f = &s->f;
	uint32_t last;

	s->state = S_HEADER;
	switch (f->type) {
	case F_DATA:
		if (dir == H2_FROM_SERVER && f->flags & FL_END_STREAM)
			stream_finish(c, f->sid, 0, 0);
		break;
	case F_HEADERS:
	case F_PUSH_PROMISE:
	case F_CONTINUATION:
		if (f->flags & FL_END_HEADERS)
			block_done(c, s, dir);
		break;
	case F_RST_STREAM:
		stream_finish(c, f->sid, H2S_RESET, get_be32(s->fix));
		break;
	case F_GOAWAY:
		last = get_be32(s->fix) & H2_SID_MASK;
		if (dir == H2_FROM_SERVER && (!c->goaway_seen || last < c->goaway_last)) {
			c->goaway_seen = true;
			c->goaway_last = last;
		}
		break;
	}
}

/* The 9-byte frame header in s->hdr is complete. */
static void frame_begin(struct h2_conn *c, struct h2_side *s, enum h2_dir dir)
{
	struct h2_frame *f = &s->f;
	const char *why;

	f->len = (uint32_t)s->hdr[0] << 16 | (uint32_t)s->hdr[1] << 8 | s->hdr[2];
	f->type = s->hdr[3];
	f->flags = s->hdr[4];
	f->sid = get_be32(s->hdr + 5) & H2_SID_MASK;
	why = frame_check(s, dir, f);
	s->fix_len = frame_fix_len(f);
	if (!why && s->fix_len > f->len)
		why = "frame too short";
	if (why) {
		conn_fail(c, why);
		return;
	}
	s->seen_frame = true;
	if (f->type == F_HEADERS || f->type == F_PUSH_PROMISE) {
		s->blk_open = true;
		s->blk_type = f->type;
		s->blk_flags = f->flags;
		s->blk_sid = f->sid;
		s->blk_len = 0;
		s->blk_bytes = 0;
	}
	side_count(c, s, dir, H2_FRAME_HDR_LEN);
	s->state = S_PAYLOAD;
	s->off = 0;
	s->frag_end = s->fix_len;
	if (!s->fix_len && frame_prefix_done(c, s) < 0)
		return;
	if (!f->len)
		frame_end(c, s, dir);
}

/* ---- input -------------------------------------------------------------- */

static void side_bytes(struct h2_conn *c, enum h2_dir dir, const uint8_t *p, size_t n);

static size_t preface_eat(struct h2_conn *c, enum h2_dir dir, const uint8_t *p, size_t n)
{
	struct h2_side *s = &c->side[dir];
	size_t k = min_sz(n, H2_PREFACE_LEN - s->preface_off);
	uint32_t replay;

	if (memcmp(p, &h2_preface[s->preface_off], k)) {
		if (s->state == S_PREFACE) {
			conn_fail(c, "bad connection preface");
			return n;
		}
		/* h2c without a preface: what matched so far was frame bytes */
		replay = s->preface_off;
		s->state = S_HEADER;
		s->preface_off = 0;
		side_bytes(c, dir, (const uint8_t *)h2_preface, replay);
		return 0;
	}
	s->preface_off += k;
	if (s->preface_off == H2_PREFACE_LEN)
		s->state = S_HEADER;
	return k;
}

static size_t header_eat(struct h2_conn *c, enum h2_dir dir, const uint8_t *p, size_t n)
{
	struct h2_side *s = &c->side[dir];
	size_t k = min_sz(n, H2_FRAME_HDR_LEN - s->hdr_len);

	memcpy(s->hdr + s->hdr_len, p, k);
	s->hdr_len += k;
	if (s->hdr_len == H2_FRAME_HDR_LEN) {
		s->hdr_len = 0;
		frame_begin(c, s, dir);
	}
	return k;
}

/* A SETTINGS entry from dir: HEADER_TABLE_SIZE bounds the dynamic table of
 * the other direction's encoder. The limit is only ever raised. */
static void settings_apply(struct h2_conn *c, enum h2_dir dir, const uint8_t *e)
{
	struct h2_side *peer = &c->side[dir == H2_FROM_CLIENT ? H2_FROM_SERVER : H2_FROM_CLIENT];
	uint32_t v = get_be32(e + 2);

	if ((e[0] << 8 | e[1]) != H2_SETTING_TABLE_SIZE)
		return;
	if (v > H2_HPACK_TABLE_HARD_MAX)
		v = H2_HPACK_TABLE_HARD_MAX;
	if (v > peer->table_max && !nghttp2_hd_inflate_change_table_size(peer->inf, v))
		peer->table_max = v;
}

/* SETTINGS payload bytes p[0..n) at payload offset s->off. */
static void settings_eat(struct h2_conn *c, struct h2_side *s, enum h2_dir dir,
			 const uint8_t *p, size_t n)
{
	uint32_t pos;
	size_t i;

	for (i = 0; i < n; i++) {
		pos = (s->off + i) % H2_SETTING_LEN;
		if (!pos)
			s->set_ok = true;
		s->set[pos] = p[i];
		if (pos == H2_SETTING_LEN - 1 && s->set_ok)
			settings_apply(c, dir, s->set);
	}
}

static size_t payload_eat(struct h2_conn *c, enum h2_dir dir, const uint8_t *p, size_t n)
{
	struct h2_side *s = &c->side[dir];
	size_t k;

	if (s->off < s->fix_len) {
		k = min_sz(n, s->fix_len - s->off);
		memcpy(s->fix + s->off, p, k);
		s->off += k;
		side_count(c, s, dir, k);
		if (s->off == s->fix_len && frame_prefix_done(c, s) < 0)
			return k;
	} else if (s->off < s->frag_end) {
		k = min_sz(n, s->frag_end - s->off);
		if (block_append(c, s, p, k) < 0)
			return k;
		s->off += k;
		side_count(c, s, dir, k);
	} else {
		k = min_sz(n, s->f.len - s->off);
		if (s->f.type == F_SETTINGS)
			settings_eat(c, s, dir, p, k);
		s->off += k;
		side_count(c, s, dir, k);
	}
	if (s->off == s->f.len)
		frame_end(c, s, dir);
	return k;
}

static void side_bytes(struct h2_conn *c, enum h2_dir dir, const uint8_t *p, size_t n)
{
	size_t k;

	while (n && !c->dead) {
		switch (c->side[dir].state) {
		case S_PREFACE:
		case S_PREFACE_MAYBE:
			k = preface_eat(c, dir, p, n);
			break;
		case S_HEADER:
			k = header_eat(c, dir, p, n);
			break;
		default:
			k = payload_eat(c, dir, p, n);
			break;
		}
		p += k;
		n -= k;
	}
}

/* A gap over the preface: its content is known. */
static uint64_t preface_gap(struct h2_side *s, uint64_t gap)
{
	uint64_t k = H2_PREFACE_LEN - s->preface_off;

	if (gap < k)
		k = gap;
	s->preface_off += k;
	if (s->preface_off == H2_PREFACE_LEN)
		s->state = S_HEADER;
	return k;
}

/* Consume up to gap uncaptured bytes; 0 when the connection is lost. */
static uint64_t gap_eat(struct h2_conn *c, enum h2_dir dir, uint64_t gap)
{
	struct h2_side *s = &c->side[dir];
	uint64_t k;

	switch (s->state) {
	case S_PREFACE:
		return preface_gap(s, gap);
	case S_PREFACE_MAYBE:
		if (s->preface_off)	/* a started preface is taken to go on */
			return preface_gap(s, gap);
		break;
	case S_PAYLOAD:
		if (s->off < s->frag_end)
			break;
		k = s->f.len - s->off;
		if (gap < k)
			k = gap;
		s->set_ok = false;	/* a SETTINGS entry in the gap is not known */
		s->off += k;
		side_count(c, s, dir, k);
		if (s->off == s->f.len)
			frame_end(c, s, dir);
		return k;
	case S_HEADER:
		break;
	}
	conn_fail(c, NULL);
	return 0;
}

static void side_gap(struct h2_conn *c, enum h2_dir dir, uint64_t gap)
{
	while (gap && !c->dead)
		gap -= gap_eat(c, dir, gap);
}

/* ---- API ---------------------------------------------------------------- */

static int side_init(struct h2_side *s, enum side_state state)
{
	s->state = state;
	s->table_max = H2_HPACK_TABLE_MAX;
	if (nghttp2_hd_inflate_new(&s->inf))
		return -1;
	/* Accept any table size the encoder announces up to H2_HPACK_TABLE_MAX
	 * even if the SETTINGS that allowed it were not seen. */
	return nghttp2_hd_inflate_change_table_size(s->inf, s->table_max) ? -1 : 0;
}

struct h2_conn *h2__new(const struct h2_callbacks *cb, void *ctx, bool preface_done)
{
	struct h2_conn *c;

	if (!cb) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->cb = *cb;
	c->ctx = ctx;
	if (side_init(&c->side[H2_FROM_CLIENT], preface_done ? S_PREFACE_MAYBE : S_PREFACE) ||
	    side_init(&c->side[H2_FROM_SERVER], S_HEADER)) {
		h2__free(c);
		errno = ENOMEM;
		return NULL;
	}
	return c;
}

void h2__feed(struct h2_conn *c, enum h2_dir dir, const uint8_t *head, size_t head_len,
	      uint64_t gap, const uint8_t *tail, size_t tail_len)
{
	if (dir != H2_FROM_CLIENT && dir != H2_FROM_SERVER)
		return;
	side_bytes(c, dir, head, head_len);
	side_gap(c, dir, gap);
	side_bytes(c, dir, tail, tail_len);
}

void h2__lost(struct h2_conn *c)
{
	if (!c->dead)
		conn_fail(c, NULL);
}

void h2__eof(struct h2_conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	streams_end_all(c, H2S_EOF);
}

uint64_t h2__streams_ignored(const struct h2_conn *c)
{
	return c->streams_ignored;
}

void h2__free(struct h2_conn *c)
{
	int i;

	if (!c)
		return;
	for (i = 0; i < 2; i++) {
		if (c->side[i].inf)
			nghttp2_hd_inflate_del(c->side[i].inf);
		free(c->side[i].blk);
	}
	free(c->st);
	free(c);
}

bool h2_preface_prefix(const uint8_t *p, size_t n)
{
	return !n || !memcmp(p, h2_preface, min_sz(n, H2_PREFACE_LEN));
}
