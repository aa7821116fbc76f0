// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/proto/http1.c. Every input is copied into a heap block of
 * exactly its size before it is fed, so that AddressSanitizer catches a read
 * one byte past it; one test also places input right before a guard page.
 * A failing check prints the case name; main() returns 1 if any failed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proto/http1.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_PRINTED 200

#include "check.h"

/* ---- recording callbacks ---------------------------------------------- */

struct ev {
	int type;		/* 'H' head, 'M' message, 'E' error, 'I' incomplete */
	uint64_t bytes;
	unsigned int mflags;
	int err;
	bool has_head;
	struct h1_head h;
};

struct rec {
	struct ev *ev;
	int n, cap;
	const char *hints;	/* on_head answer per head: 'N' none, 'S' stop, else default */
	int heads;
	uint64_t msg_bytes;	/* sum of on_message bytes */
	uint64_t inc_bytes;	/* sum of on_incomplete bytes */
};

static struct ev *rec_push(struct rec *r, int type)
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

static enum h1_body_hint on_head(void *ctx, const struct h1_head *h)
{
	struct rec *r = ctx;
	struct ev *e = rec_push(r, 'H');
	char hint = r->hints && r->heads < (int)strlen(r->hints) ? r->hints[r->heads] : 'D';

	r->heads++;
	e->has_head = true;
	e->h = *h;
	if (hint == 'N')
		return H1_BODY_NONE;
	return hint == 'S' ? H1_BODY_STOP : H1_BODY_DEFAULT;
}

static void on_message(void *ctx, const struct h1_head *h, uint64_t bytes, unsigned int mflags)
{
	struct rec *r = ctx;
	struct ev *e = rec_push(r, 'M');

	e->has_head = true;
	e->h = *h;
	e->bytes = bytes;
	e->mflags = mflags;
	r->msg_bytes += bytes;
}

static void on_error(void *ctx, enum h1_error err)
{
	struct rec *r = ctx;

	rec_push(r, 'E')->err = err;
}

static void on_incomplete(void *ctx, const struct h1_head *h, uint64_t bytes)
{
	struct rec *r = ctx;
	struct ev *e = rec_push(r, 'I');

	e->bytes = bytes;
	e->has_head = h != NULL;
	if (h)
		e->h = *h;
	r->inc_bytes += bytes;
}

static const struct h1_callbacks rec_cb = {
	.on_head = on_head,
	.on_message = on_message,
	.on_error = on_error,
	.on_incomplete = on_incomplete,
};

static void rec_reset(struct rec *r, const char *hints)
{
	r->n = 0;
	r->heads = 0;
	r->hints = hints;
	r->msg_bytes = 0;
	r->inc_bytes = 0;
}

static void rec_free(struct rec *r)
{
	free(r->ev);
	r->ev = NULL;
	r->n = r->cap = 0;
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

static bool ev_eq(const struct ev *a, const struct ev *b)
{
	return a->type == b->type && a->bytes == b->bytes && a->mflags == b->mflags &&
	       a->err == b->err && a->has_head == b->has_head &&
	       (!a->has_head || head_eq(&a->h, &b->h));
}

static void ev_describe(const struct ev *e, char *out, size_t n)
{
	snprintf(out, n, "%c bytes=%llu mflags=%#x err=%d head=%s/%.60s/%d", e->type,
		 (unsigned long long)e->bytes, e->mflags, e->err, e->has_head ? e->h.method : "-",
		 e->has_head ? e->h.target : "-", e->has_head ? e->h.status : 0);
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

/* ---- feeding helpers: every byte comes from an exact-size heap copy ----- */

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

static void feed_seg(struct h1_parser *p, const void *head, size_t head_len, uint64_t gap,
		     const void *tail, size_t tail_len)
{
	uint8_t *h = dup_exact(head, head_len), *t = dup_exact(tail, tail_len);

	h1__feed(p, h, head_len, gap, t, tail_len);
	free(h);
	free(t);
}

static void feed(struct h1_parser *p, const void *d, size_t n)
{
	feed_seg(p, d, n, 0, NULL, 0);
}

static void feed_str(struct h1_parser *p, const char *s)
{
	feed(p, s, strlen(s));
}

/* Feed d[0..n) in pieces cut at the sorted offsets cuts[0..ncuts). */
static void feed_cuts(struct h1_parser *p, const uint8_t *d, size_t n, const size_t *cuts,
		      int ncuts)
{
	size_t at = 0;
	int i;

	for (i = 0; i < ncuts; i++) {
		feed(p, d + at, cuts[i] - at);
		at = cuts[i];
	}
	feed(p, d + at, n - at);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* ---- table of valid messages ------------------------------------------ */

#define X10 "xxxxxxxxxx"
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10

struct want {
	const char *method, *target, *reason, *host, *ua, *reqid, *tp, *ts, *ctype;
	int status, minor;
	uint32_t flags;
	uint64_t cl;
};

struct vmsg {
	const char *lead;	/* empty lines before the start line */
	const char *head;
	const char *body;	/* on the wire, framing included */
	char hint;		/* on_head answer: 'N' none, 'S' stop, else default */
	bool eof;		/* body delimited by close: the case's last message */
	unsigned int mflags;
	struct want x;
};

struct vcase {
	const char *name;
	enum h1_dir dir;
	struct vmsg m[5];
	const char *after;	/* bytes after a stopped message */
};

static const struct vcase valid[] = {
	{ .name = "get_simple", .dir = H1_REQUEST, .m = {
		{ .head = "GET /index.html?q=1&r=%20 HTTP/1.1\r\nHost: example.com\r\n"
			  "User-Agent: curl/8.0\r\nAccept: */*\r\n\r\n",
		  .x = { "GET", "/index.html?q=1&r=%20", .host = "example.com",
			 .ua = "curl/8.0", .minor = 1 } } } },
	{ .name = "post_cl_all_fields", .dir = H1_REQUEST, .m = {
		{ .head = "POST /api/items HTTP/1.1\r\nHost: api.local:8000\r\n"
			  "Content-Type: application/json\r\nContent-Length: 12\r\n"
			  "X-Request-ID: abc-123\r\n"
			  "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
			  "tracestate: congo=t61rcWkgMzE\r\nUser-Agent: python-httpx/0.27\r\n\r\n",
		  .body = "hello, world",
		  .x = { "POST", "/api/items", .host = "api.local:8000", .ua = "python-httpx/0.27",
			 .reqid = "abc-123",
			 .tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			 .ts = "congo=t61rcWkgMzE", .ctype = "application/json", .minor = 1,
			 .flags = H1F_HAS_CL, .cl = 12 } } } },
	{ .name = "chunked_ext_trailers", .dir = H1_REQUEST, .m = {
		{ .head = "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		  .body = "5;name=val\r\nhello\r\n6 ; x=\"y\"\r\n world\r\nA\r\n0123456789\r\n"
			  "000\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
		  .x = { "POST", "/upload", .host = "a", .minor = 1, .flags = H1F_CHUNKED } },
		{ .head = "GET /next HTTP/1.1\r\n\r\n", .x = { "GET", "/next", .minor = 1 } } } },
	{ .name = "chunked_response_pipelined", .dir = H1_RESPONSE, .m = {
		{ .head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
			  "Content-Type: text/event-stream\r\n\r\n",
		  .body = "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
		  .x = { .reason = "OK", .ctype = "text/event-stream", .status = 200, .minor = 1,
			 .flags = H1F_CHUNKED } },
		{ .head = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n", .body = "{}",
		  .x = { .reason = "Created", .status = 201, .minor = 1, .flags = H1F_HAS_CL,
			 .cl = 2 } } } },
	{ .name = "head_response_body_none", .dir = H1_RESPONSE, .m = {
		{ .head = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n"
			  "Content-Type: text/html\r\n\r\n",
		  .hint = 'N',
		  .x = { .reason = "OK", .ctype = "text/html", .status = 200, .minor = 1,
			 .flags = H1F_HAS_CL, .cl = 1234 } },
		{ .head = "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n", .body = "abc",
		  .x = { .reason = "Not Found", .status = 404, .minor = 1, .flags = H1F_HAS_CL,
			 .cl = 3 } } } },
	{ .name = "continue_then_200", .dir = H1_RESPONSE, .m = {
		{ .head = "HTTP/1.1 100 Continue\r\n\r\n",
		  .x = { .reason = "Continue", .status = 100, .minor = 1 } },
		{ .head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", .body = "ok",
		  .x = { .reason = "OK", .status = 200, .minor = 1, .flags = H1F_HAS_CL,
			 .cl = 2 } } } },
	{ .name = "expect_continue_request", .dir = H1_REQUEST, .m = {
		{ .head = "PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
			  "Content-Length: 4\r\n\r\n",
		  .body = "data",
		  .x = { "PUT", "/f", .host = "h", .minor = 1,
			 .flags = H1F_EXPECT_CONTINUE | H1F_HAS_CL, .cl = 4 } } } },
	{ .name = "upgrade_101_stop", .dir = H1_RESPONSE, .m = {
		{ .head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			  "Connection: Upgrade\r\n\r\n",
		  .hint = 'S',
		  .x = { .reason = "Switching Protocols", .status = 101, .minor = 1,
			 .flags = H1F_UPGRADE } } },
	  .after = "\x81\x05hello\x82\x7e garbage \xff\x01 HTTP/1.1 200 OK\r\n\r\n" },
	{ .name = "upgrade_request_stop", .dir = H1_REQUEST, .m = {
		{ .head = "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
			  "Connection: keep-alive, Upgrade\r\n\r\n",
		  .hint = 'S',
		  .x = { "GET", "/chat", .host = "h", .minor = 1, .flags = H1F_UPGRADE } } },
	  .after = "\x81\x85garbage GET / HTTP/1.1\r\n\r\n" },
	{ .name = "no_body_204_304", .dir = H1_RESPONSE, .m = {
		{ .head = "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
		  .x = { .reason = "No Content", .status = 204, .minor = 1, .flags = H1F_HAS_CL,
			 .cl = 10 } },
		{ .head = "HTTP/1.1 304 Not Modified\r\nContent-Length: 500\r\nETag: \"x\"\r\n\r\n",
		  .x = { .reason = "Not Modified", .status = 304, .minor = 1,
			 .flags = H1F_HAS_CL, .cl = 500 } },
		{ .head = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", .body = "x",
		  .x = { .reason = "OK", .status = 200, .minor = 1, .flags = H1F_HAS_CL,
			 .cl = 1 } } } },
	{ .name = "http10_close_delimited", .dir = H1_RESPONSE, .m = {
		{ .head = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n",
		  .body = "all the rest until the connection closes\r\n\r\n", .eof = true,
		  .mflags = H1M_EOF,
		  .x = { .reason = "OK", .ctype = "text/plain", .status = 200, .minor = 0,
			 .flags = H1F_CONN_CLOSE } } } },
	{ .name = "http11_close_delimited", .dir = H1_RESPONSE, .m = {
		{ .head = "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n",
		  .body = "boom", .eof = true, .mflags = H1M_EOF,
		  .x = { .reason = "Internal Server Error", .status = 500, .minor = 1,
			 .flags = H1F_CONN_CLOSE } } } },
	{ .name = "connection_tokens", .dir = H1_REQUEST, .m = {
		{ .head = "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n",
		  .x = { "GET", "/a", .minor = 1, .flags = H1F_CONN_CLOSE } },
		{ .head = "GET /b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
		  .x = { "GET", "/b", .minor = 0 } },
		{ .head = "GET /c HTTP/1.0\r\n\r\n",
		  .x = { "GET", "/c", .minor = 0, .flags = H1F_CONN_CLOSE } },
		{ .head = "GET /d HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
		  .x = { "GET", "/d", .minor = 1 } },
		{ .head = "GET /e HTTP/1.1\r\nConnection: foo,  ,keep-alive\r\nUpgrade: h2c\r\n"
			  "Connection: Close , UPGRADE\r\n\r\n",
		  .x = { "GET", "/e", .minor = 1, .flags = H1F_CONN_CLOSE | H1F_UPGRADE } } } },
	{ .name = "lf_only_lines", .dir = H1_REQUEST, .m = {
		{ .head = "GET /lf HTTP/1.1\nHost: lf\n\n",
		  .x = { "GET", "/lf", .host = "lf", .minor = 1 } },
		{ .head = "POST /lf2 HTTP/1.1\nContent-Length: 3\n\n", .body = "abc",
		  .x = { "POST", "/lf2", .minor = 1, .flags = H1F_HAS_CL, .cl = 3 } },
		{ .head = "POST /lf3 HTTP/1.1\r\nTransfer-Encoding: chunked\n\r\n",
		  .body = "3\nabc\n0\n\n",
		  .x = { "POST", "/lf3", .minor = 1, .flags = H1F_CHUNKED } } } },
	{ .name = "leading_empty_lines", .dir = H1_REQUEST, .m = {
		{ .lead = "\r\n\r\n", .head = "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		  .x = { "GET", "/", .host = "x", .minor = 1 } },
		{ .lead = "\n", .head = "DELETE /2 HTTP/1.1\r\n\r\n",
		  .x = { "DELETE", "/2", .minor = 1 } },
		{ .lead = "\r\n", .head = "OPTIONS * HTTP/1.1\r\n\r\n",
		  .x = { "OPTIONS", "*", .minor = 1 } } } },
	{ .name = "header_extraction", .dir = H1_REQUEST, .m = {
		{ .head = "GET /x HTTP/1.1\r\nhOsT:   first.example  \r\nHost: second\r\n"
			  "USER-AGENT:\tUA/1 (x; y)\t\r\nx-request-id: r1\r\nX-Request-Id: r2\r\n"
			  "TRACEPARENT:00-aa-bb-01\r\nX-Host: nope\r\nHostname: nope\r\n"
			  "Content-Type: " X100 X100 "\r\ncontent-type: second\r\n"
			  "Tracestate: \r\ntracestate: late\r\n"
			  "X-Weird: \x80\xff caf\xc3\xa9\r\n\r\n",
		  .x = { "GET", "/x", .host = "first.example", .ua = "UA/1 (x; y)", .reqid = "r1",
			 .tp = "00-aa-bb-01", .ts = "",
			 .ctype = X100 X10 X10 "xxxxxxx", .minor = 1 } } } },
	{ .name = "long_fields_truncated", .dir = H1_REQUEST, .m = {
		{ .head = "GET /" X100 X100 X100 X100 X100 X100 " HTTP/1.1\r\n"
			  "Host: " X100 X100 "\r\ntraceparent: " X100 "\r\n\r\n",
		  .x = { "GET", "/" X100 X100 X100 X100 X100 X10,
			 .host = X100 X10 X10 "xxxxxxx", .tp = X10 X10 X10 X10 X10 X10 "xxx",
			 .minor = 1, .flags = H1F_TARGET_TRUNC } } } },
	{ .name = "te_gzip_chunked_wins_over_cl", .dir = H1_RESPONSE, .m = {
		{ .head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n"
			  "Content-Length: 99\r\n\r\n",
		  .body = "2\r\nhi\r\n0\r\n\r\n",
		  .x = { .reason = "OK", .status = 200, .minor = 1,
			 .flags = H1F_CHUNKED | H1F_HAS_CL, .cl = 99 } } } },
	{ .name = "te_other_response_close_delimited", .dir = H1_RESPONSE, .m = {
		{ .head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
			  "Transfer-Encoding: gzip\r\n\r\n",
		  .body = "2\r\nhi\r\n0\r\n\r\n", .eof = true, .mflags = H1M_EOF,
		  .x = { .reason = "OK", .status = 200, .minor = 1, .flags = H1F_TE_OTHER } } } },
	{ .name = "status_without_reason", .dir = H1_RESPONSE, .m = {
		{ .head = "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
		  .x = { .status = 200, .minor = 1, .flags = H1F_HAS_CL } },
		{ .head = "HTTP/1.1 503 \r\nContent-Length: 0\r\n\r\n",
		  .x = { .status = 503, .minor = 1, .flags = H1F_HAS_CL } },
		{ .head = "HTTP/1.0 302 Found\tok \r\nContent-Length: 1\r\n"
			  "Connection: keep-alive\r\n\r\n",
		  .body = "z",
		  .x = { .reason = "Found\tok ", .status = 302, .minor = 0, .flags = H1F_HAS_CL,
			 .cl = 1 } } } },
	{ .name = "repeated_equal_cl", .dir = H1_REQUEST, .m = {
		{ .head = "POST / HTTP/1.1\r\nContent-Length: 003\r\ncontent-length: 3\r\n\r\n",
		  .body = "abc",
		  .x = { "POST", "/", .minor = 1, .flags = H1F_HAS_CL, .cl = 3 } } } },
	{ .name = "chunked_only_last_chunk", .dir = H1_RESPONSE, .m = {
		{ .head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n",
		  .body = "0\r\n\r\n",
		  .x = { .reason = "OK", .status = 200, .minor = 1, .flags = H1F_CHUNKED } },
		{ .lead = "", .head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		  .body = "0;last\r\n\r\n",
		  .x = { .reason = "OK", .status = 200, .minor = 1, .flags = H1F_CHUNKED } } } },
	{ .name = "methods_and_targets", .dir = H1_REQUEST, .m = {
		{ .head = "PATCH /users/42?x=[1]&y={2} HTTP/1.1\r\n\r\n",
		  .x = { "PATCH", "/users/42?x=[1]&y={2}", .minor = 1 } },
		{ .head = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		  .x = { "CONNECT", "example.com:443", .host = "example.com:443", .minor = 1 } },
		{ .head = "M-SEARCH http://a/b\x80\xfe HTTP/1.1\r\n\r\n",
		  .x = { "M-SEARCH", "http://a/b\x80\xfe", .minor = 1 } },
		{ .head = "BASELINE-CONTROL / HTTP/1.1\r\n\r\n",
		  .x = { "BASELINE-CONTRO", "/", .minor = 1 } } } },
};

struct want_ev {
	int type;
	uint64_t bytes;
	unsigned int mflags;
	int msg;		/* index into the case's messages, -1 for no head */
};

static size_t case_input(const struct vcase *c, char *out, size_t cap)
{
	size_t n = 0;
	int i;

	out[0] = '\0';
	for (i = 0; i < (int)ARRAY_SIZE(c->m) && c->m[i].head; i++)
		n += snprintf(out + n, cap - n, "%s%s%s", c->m[i].lead ? c->m[i].lead : "",
			      c->m[i].head, c->m[i].body ? c->m[i].body : "");
	if (c->after)
		n += snprintf(out + n, cap - n, "%s", c->after);
	return n;
}

/*
 * The callbacks a case must produce when its first k bytes are fed and then
 * h1__eof() is called. *counted: bytes that must show up in messages,
 * incomplete reports and skipped_bytes (all but those after a stop).
 */
static int case_expect(const struct vcase *c, size_t k, struct want_ev *w, uint64_t *counted)
{
	size_t start = 0, head_end, end, lead;
	const struct vmsg *m;
	int i, n = 0;

	*counted = k;
	for (i = 0; i < (int)ARRAY_SIZE(c->m) && c->m[i].head; i++) {
		m = &c->m[i];
		lead = m->lead ? strlen(m->lead) : 0;
		head_end = start + lead + strlen(m->head);
		end = head_end + (m->body ? strlen(m->body) : 0);
		if (k < head_end) {
			if (k - start > lead)
				w[n++] = (struct want_ev){ 'I', k - start, 0, -1 };
			break;
		}
		w[n++] = (struct want_ev){ 'H', 0, 0, i };
		if (m->hint == 'S') {
			w[n++] = (struct want_ev){ 'M', head_end - start, m->mflags, i };
			*counted = head_end;
			break;
		}
		if (m->eof) {
			w[n++] = (struct want_ev){ 'M', k - start, m->mflags, i };
			break;
		}
		if (k < end && m->hint != 'N') {
			w[n++] = (struct want_ev){ 'I', k - start, 0, i };
			break;
		}
		w[n++] = (struct want_ev){ 'M', end - start, m->mflags, i };
		start = end;
	}
	return n;
}

static void check_head(const struct h1_head *h, const struct vmsg *m)
{
	const struct want *x = &m->x;

	CHECK_S(h->method, x->method ? x->method : "");
	CHECK_S(h->target, x->target ? x->target : "");
	CHECK_S(h->reason, x->reason ? x->reason : "");
	CHECK_S(h->host, x->host ? x->host : "");
	CHECK_S(h->user_agent, x->ua ? x->ua : "");
	CHECK_S(h->x_request_id, x->reqid ? x->reqid : "");
	CHECK_S(h->traceparent, x->tp ? x->tp : "");
	CHECK_S(h->tracestate, x->ts ? x->ts : "");
	CHECK_S(h->content_type, x->ctype ? x->ctype : "");
	CHECK_U(h->status, x->status);
	CHECK_U(h->version_minor, x->minor);
	CHECK_U(h->flags, x->flags);
	CHECK_U(h->content_length, x->cl);
	CHECK_U(h->head_bytes, strlen(m->head));
}

static void check_case_run(const struct vcase *c, const struct rec *r, const struct h1_parser *p,
			   size_t k)
{
	struct want_ev w[16];
	uint64_t counted;
	int i, n = case_expect(c, k, w, &counted);

	if (!check(r->n == n, __FILE__, __LINE__, "k=%zu: %d events, want %d", k, r->n, n))
		return;
	for (i = 0; i < n; i++) {
		const struct ev *e = &r->ev[i];

		check(e->type == w[i].type, __FILE__, __LINE__, "k=%zu ev %d: type %c want %c", k,
		      i, e->type, w[i].type);
		CHECK_U(e->bytes, w[i].bytes);
		CHECK_U(e->mflags, w[i].mflags);
		CHECK(e->has_head == (w[i].msg >= 0));
		if (e->has_head && w[i].msg >= 0)
			check_head(&e->h, &c->m[w[i].msg]);
	}
	CHECK_U(r->msg_bytes + r->inc_bytes + p->skipped_bytes, counted);
	CHECK_U(p->msg_bytes, 0);
}

/* The on_head answers of a case, as a string for struct rec. */
static const char *case_hints(const struct vcase *c)
{
	static char hints[ARRAY_SIZE(((struct vcase *)0)->m) + 1];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(c->m); i++)
		hints[i] = c->m[i].head && c->m[i].hint ? c->m[i].hint : 'D';
	hints[i] = '\0';
	return hints;
}

static void run_cuts(const struct vcase *c, struct rec *r, struct h1_parser *p, const uint8_t *in,
		     size_t n, const size_t *cuts, int ncuts)
{
	rec_reset(r, case_hints(c));
	h1__init(p, c->dir, &rec_cb, r);
	feed_cuts(p, in, n, cuts, ncuts);
	h1__eof(p);
	h1__free(p);
}

static void test_valid_case(const struct vcase *c)
{
	static char in[8192];
	struct rec one = { 0 }, r = { 0 };
	struct h1_parser p = { 0 };
	size_t n = case_input(c, in, sizeof(in)), k, i, j, cuts[2];
	char what[64];
	int s;

	cur_case = c->name;
	n_cases++;
	/* one shot, then every truncation point */
	for (k = 0; k <= n; k++) {
		run_cuts(c, &r, &p, (const uint8_t *)in, k, NULL, 0);
		check_case_run(c, &r, &p, k);
	}
	run_cuts(c, &one, &p, (const uint8_t *)in, n, NULL, 0);

	/* byte at a time */
	rec_reset(&r, case_hints(c));
	h1__init(&p, c->dir, &rec_cb, &r);
	for (i = 0; i < n; i++)
		feed(&p, in + i, 1);
	h1__eof(&p);
	h1__free(&p);
	rec_same(&one, &r, "byte at a time");

	/* every 2-way split, sampled 3-way splits */
	for (i = 1; i < n; i++) {
		cuts[0] = i;
		run_cuts(c, &r, &p, (const uint8_t *)in, n, cuts, 1);
		snprintf(what, sizeof(what), "split at %zu", i);
		if (!rec_same(&one, &r, what))
			break;
	}
	for (s = 0; s < 3000 && n > 2; s++) {
		i = 1 + rng() % (n - 1);
		j = 1 + rng() % (n - 1);
		cuts[0] = i < j ? i : j;
		cuts[1] = i < j ? j : i;
		run_cuts(c, &r, &p, (const uint8_t *)in, n, cuts, 2);
		snprintf(what, sizeof(what), "split at %zu,%zu", cuts[0], cuts[1]);
		if (!rec_same(&one, &r, what))
			break;
	}
	rec_free(&one);
	rec_free(&r);
}

static void test_valid(void)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(valid); i++)
		test_valid_case(&valid[i]);
}

/* ---- pipelining ------------------------------------------------------- */

static size_t build_requests(char *out, size_t cap, uint64_t *sizes)
{
	size_t n = 0, m;
	int i;

	for (i = 0; i < 10; i++) {
		m = n;
		if (i % 3 == 1)
			n += snprintf(out + n, cap - n,
				      "POST /items/%d HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n"
				      "\r\n%.*s", i, i * 7, i * 7, X100);
		else if (i % 3 == 2)
			n += snprintf(out + n, cap - n,
				      "PUT /c/%d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				      "%x\r\n%.*s\r\n0\r\n\r\n", i, i, i, X10);
		else
			n += snprintf(out + n, cap - n,
				      "GET /r/%d HTTP/1.1\r\nHost: h\r\n"
				      "X-Request-ID: id-%d\r\n\r\n",
				      i, i);
		sizes[i] = n - m;
	}
	return n;
}

static size_t build_responses(char *out, size_t cap, uint64_t *sizes)
{
	size_t n = 0, m;
	int i;

	for (i = 0; i < 10; i++) {
		m = n;
		if (i % 2)
			n += snprintf(out + n, cap - n,
				      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				      "%x;i=%d\r\n%.*s\r\n3\r\nend\r\n0\r\nT: %d\r\n\r\n",
				      i * 9, i, i * 9, X100, i);
		else
			n += snprintf(out + n, cap - n,
				      "HTTP/1.1 %d OK\r\nContent-Length: %d\r\n\r\n%.*s",
				      210 + i, i * 11, i * 11, X100 X100);
		sizes[i] = n - m;
	}
	return n;
}

static void test_pipeline_dir(const char *name, enum h1_dir dir)
{
	static char in[8192];
	struct rec one = { 0 }, r = { 0 };
	struct h1_parser p = { 0 };
	uint64_t sizes[10];
	size_t n, i, cut;
	char what[64];
	int m = 0;

	begin(name);
	n = dir == H1_REQUEST ? build_requests(in, sizeof(in), sizes) :
				build_responses(in, sizeof(in), sizes);
	h1__init(&p, dir, &rec_cb, &one);
	feed(&p, in, n);
	CHECK_U(p.messages, 10);
	CHECK_U(one.n, 20);
	for (i = 0; i < (size_t)one.n; i++) {
		if (one.ev[i].type != 'M')
			continue;
		CHECK_U(one.ev[i].bytes, sizes[m]);
		CHECK_U(one.ev[i].mflags, 0);
		if (dir == H1_RESPONSE && !(m % 2))
			CHECK_U(one.ev[i].h.status, 210 + m);
		m++;
	}
	CHECK_U(m, 10);
	h1__eof(&p);
	CHECK_U(one.n, 20);
	for (cut = 1; cut < n; cut++) {
		rec_reset(&r, NULL);
		h1__init(&p, dir, &rec_cb, &r);
		feed(&p, in, cut);
		feed(&p, in + cut, n - cut);
		h1__eof(&p);
		h1__free(&p);
		snprintf(what, sizeof(what), "split at %zu", cut);
		if (!rec_same(&one, &r, what))
			break;
	}
	rec_free(&one);
	rec_free(&r);
}

static void test_pipeline(void)
{
	test_pipeline_dir("pipelined_10_requests", H1_REQUEST);
	test_pipeline_dir("pipelined_10_responses", H1_RESPONSE);
}

/* ---- chunked bodies split everywhere ---------------------------------- */

static void test_chunked_splits(void)
{
	static const char in[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "10;a=b;c\r\n0123456789abcdef\r\n1\r\nz\r\nFF\r\n"
				 X100 X100 X10 X10
				 X10 X10 X10 "xxxxx\r\n0\r\nTrailer-A: 1\r\nTrailer-B: "
				 X100 "\r\n\r\n";
	size_t n = sizeof(in) - 1, a, b, cuts[2];
	struct rec r = { 0 };
	struct h1_parser p = { 0 };

	cur_case = "chunked_every_split";
	n_cases++;
	for (a = 1; a < n; a++) {
		for (b = a; b < n; b += 7) {
			rec_reset(&r, NULL);
			h1__init(&p, H1_RESPONSE, &rec_cb, &r);
			cuts[0] = a;
			cuts[1] = b;
			feed_cuts(&p, (const uint8_t *)in, n, cuts, 2);
			h1__free(&p);
			if (!CHECK_U(r.n, 2) || !CHECK_U(r.ev[1].bytes, n) ||
			    !CHECK_U(r.ev[1].mflags, 0) || !CHECK_U(p.messages, 1))
				goto out;
		}
	}
out:
	rec_free(&r);
}

/* ---- gaps ------------------------------------------------------------- */

static void expect_ev(const struct rec *r, int i, int type, uint64_t bytes, unsigned int mflags,
		      int line)
{
	char d[256];

	if (!check(i < r->n, __FILE__, line, "event %d missing (have %d)", i, r->n))
		return;
	ev_describe(&r->ev[i], d, sizeof(d));
	check(r->ev[i].type == type && r->ev[i].bytes == bytes && r->ev[i].mflags == mflags,
	      __FILE__, line, "event %d is %s, want %c bytes=%llu mflags=%#x", i, d, type,
	      (unsigned long long)bytes, mflags);
}

#define EXPECT_EV(r, i, t, b, f) expect_ev((r), (i), (t), (b), (f), __LINE__)

/* Start a named case on p (zero-filled or used before: what it owns is freed). */
static void begin_parse(const char *name, struct h1_parser *p, enum h1_dir dir, struct rec *r)
{
	h1__free(p);
	cur_case = name;
	n_cases++;
	rec_reset(r, NULL);
	h1__init(p, dir, &rec_cb, r);
}

/* Every byte fed is in a message, skipped, or the message in progress. */
static void check_accounting(const struct rec *r, const struct h1_parser *p, uint64_t total,
			     int line)
{
	check(r->msg_bytes + r->inc_bytes + p->skipped_bytes + p->msg_bytes == total, __FILE__,
	      line, "accounting: msgs %llu + inc %llu + skipped %llu + cur %llu != %llu",
	      (unsigned long long)r->msg_bytes, (unsigned long long)r->inc_bytes,
	      (unsigned long long)p->skipped_bytes, (unsigned long long)p->msg_bytes,
	      (unsigned long long)total);
}

#define CHECK_ACCOUNTING(r, p, t) check_accounting((r), (p), (t), __LINE__)

static const char resp_cl100[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
static const char resp_cl10[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
static const char resp_chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
static const char resp_204[] = "HTTP/1.1 204 No Content\r\n\r\n";
static const char req_ok[] = "GET /ok HTTP/1.1\r\nHost: ok\r\n\r\n";
static const char resp_ok[] = "HTTP/1.1 299 Fine\r\nContent-Length: 2\r\n\r\nok";

static void test_gap_cl_body(void)
{
	struct rec r = { 0 };
	struct h1_parser p = { 0 };
	char seg[256];
	size_t hl = strlen(resp_cl100), total;

	begin_parse("gap_in_cl_body", &p, H1_RESPONSE, &r);
	snprintf(seg, sizeof(seg), "%s0123456789", resp_cl100);
	feed_seg(&p, seg, hl + 10, 80, "abcdefghij", 10);
	EXPECT_EV(&r, 0, 'H', 0, 0);
	EXPECT_EV(&r, 1, 'M', hl + 100, 0);
	feed_str(&p, resp_204);
	EXPECT_EV(&r, 3, 'M', strlen(resp_204), 0);
	total = hl + 100 + strlen(resp_204);
	CHECK_U(p.skipped_bytes, 0);
	CHECK_ACCOUNTING(&r, &p, total);

	/* the gap ends exactly with the body: the tail is the next message */
	begin_parse("gap_ends_with_cl_body", &p, H1_RESPONSE, &r);
	hl = strlen(resp_cl10);
	snprintf(seg, sizeof(seg), "%s01234", resp_cl10);
	feed_seg(&p, seg, hl + 5, 5, resp_204, strlen(resp_204));
	EXPECT_EV(&r, 1, 'M', hl + 10, 0);
	EXPECT_EV(&r, 3, 'M', strlen(resp_204), 0);
	CHECK_U(r.ev[2].h.status, 204);
	CHECK_U(p.skipped_bytes, 0);

	/* the gap ends inside the body, the tail finishes it and starts the next message */
	begin_parse("tail_after_cl_body", &p, H1_RESPONSE, &r);
	snprintf(seg, sizeof(seg), "56789%s", resp_204);
	feed_seg(&p, resp_cl10, hl, 5, seg, strlen(seg));
	EXPECT_EV(&r, 1, 'M', hl + 10, 0);
	EXPECT_EV(&r, 3, 'M', strlen(resp_204), 0);
	CHECK_U(p.skipped_bytes, 0);
	h1__free(&p);
	rec_free(&r);
}

static void test_gap_cl_spill(void)
{
	struct rec r = { 0 };
	struct h1_parser p = { 0 };
	char seg[256];
	size_t hl = strlen(resp_cl10), total;

	begin_parse("gap_spills_past_cl_body", &p, H1_RESPONSE, &r);
	snprintf(seg, sizeof(seg), "%s01234", resp_cl10);
	feed_seg(&p, seg, hl + 5, 20, "tail!", 5);
	CHECK_U(r.n, 2);
	EXPECT_EV(&r, 1, 'M', hl + 10, 0);
	CHECK_U(p.skipped_bytes, 20);
	feed_str(&p, "more bytes of an unseen message");
	CHECK_U(r.n, 2);
	CHECK_U(p.skipped_bytes, 20 + 31);
	feed_str(&p, resp_ok);
	EXPECT_EV(&r, 2, 'H', 0, 0);
	EXPECT_EV(&r, 3, 'M', strlen(resp_ok), 0);
	CHECK_U(r.ev[2].h.status, 299);
	total = hl + 5 + 20 + 5 + 31 + strlen(resp_ok);
	CHECK_ACCOUNTING(&r, &p, total);
	CHECK(!r.n || r.ev[r.n - 1].type != 'E');
	h1__free(&p);
	rec_free(&r);
}

static void test_gap_sendfile(void)
{
	static const char h10[] = "HTTP/1.0 200 OK\r\n"
				  "Content-Type: application/octet-stream\r\n\r\n";
	struct rec r = { 0 };
	struct h1_parser p = { 0 };
	char head[128];
	size_t hl;

	begin_parse("sendfile_cl_body", &p, H1_RESPONSE, &r);
	snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n");
	hl = strlen(head);
	feed_str(&p, head);
	CHECK_U(r.n, 1);
	feed_seg(&p, NULL, 0, 3000, NULL, 0);
	CHECK_U(r.n, 1);
	CHECK_U(p.msg_bytes, hl + 3000);
	feed_seg(&p, "abc", 3, 1990, "1234567", 7);
	EXPECT_EV(&r, 1, 'M', hl + 5000, 0);
	feed_str(&p, resp_ok);
	EXPECT_EV(&r, 3, 'M', strlen(resp_ok), 0);
	CHECK_U(p.skipped_bytes, 0);

	begin_parse("sendfile_close_delimited", &p, H1_RESPONSE, &r);
	hl = strlen(h10);
	feed_str(&p, h10);
	feed_seg(&p, NULL, 0, 10000, NULL, 0);
	feed_seg(&p, NULL, 0, 5, "xyz", 3);
	CHECK_U(r.n, 1);
	h1__eof(&p);
	EXPECT_EV(&r, 1, 'M', hl + 10008, H1M_EOF);
	CHECK_U(p.skipped_bytes, 0);
	h1__free(&p);
	rec_free(&r);
}

static void test_gap_chunk_lost(void)
{
	struct rec r = { 0 };
	struct h1_parser p = { 0 };
	char seg[512];
	size_t n1;
	static const char tail_end[] = "last bytes\r\n0\r\n\r\n";

	/* lost and found again in the same segment */
	begin_parse("chunk_lost_same_segment", &p, H1_RESPONSE, &r);
	n1 = snprintf(seg, sizeof(seg), "%s1000\r\n%s", resp_chunked, X100);
	feed_seg(&p, seg, n1, 5000, tail_end, strlen(tail_end));
	EXPECT_EV(&r, 1, 'M', n1 + 5000 + strlen(tail_end), H1M_INFERRED);
	feed_str(&p, resp_ok);
	EXPECT_EV(&r, 3, 'M', strlen(resp_ok), 0);
	CHECK_U(p.skipped_bytes, 0);

	/* lost, then the end comes in later segments */
	begin_parse("chunk_lost_later_segments", &p, H1_RESPONSE, &r);
	feed_seg(&p, seg, n1, 5000, "no end", 6);
	CHECK_U(r.n, 1);
	feed_str(&p, "abc\r\n5\r\nhello\r\n");
	feed_seg(&p, "xx", 2, 100, "yy\r\n", 4);
	CHECK_U(r.n, 1);
	feed_str(&p, "0\r\n\r\n");
	EXPECT_EV(&r, 1, 'M', n1 + 5006 + 15 + 106 + 5, H1M_INFERRED);
	feed_str(&p, resp_ok);
	EXPECT_EV(&r, 3, 'M', strlen(resp_ok), 0);

	/* the end in a fully captured segment's last bytes */
	begin_parse("chunk_lost_end_in_captured_segment", &p, H1_RESPONSE, &r);
	feed_seg(&p, seg, n1, 5000, NULL, 0);
	feed_str(&p, "data\r\n0\r\n\r\n");
	EXPECT_EV(&r, 1, 'M', n1 + 5000 + 11, H1M_INFERRED);

	/* "0\r\n\r\n" not preceded by CRLF is chunk data, not the last chunk */
	begin_parse("chunk_lost_near_terminators", &p, H1_RESPONSE, &r);
	n1 = snprintf(seg, sizeof(seg), "%s1000\r\n%s", resp_chunked, X100);
	feed_seg(&p, seg, n1, 5000, "data 0\r\n\r\n", 10);
	feed_seg(&p, "x", 1, 5000, "\n0\r\n\r\n", 6);
	feed_seg(&p, "0\r\n\r\n", 5, 10, NULL, 0);
	feed_str(&p, "x0\r\n\r\n");
	feed_seg(&p, "\r\n0\r\n", 5, 0, "\r\n", 2);
	CHECK_U(r.n, 2);
	EXPECT_EV(&r, 1, 'M', n1 + 5010 + 5007 + 15 + 6 + 7, H1M_INFERRED);

	/* a gap in a chunk-size line loses the framing too */
	begin_parse("chunk_lost_in_size_line", &p, H1_RESPONSE, &r);
	n1 = snprintf(seg, sizeof(seg), "%s5\r\nhello\r\n1", resp_chunked);
	feed_seg(&p, seg, n1, 3, "\r\n0\r\n\r\n", 7);
	EXPECT_EV(&r, 1, 'M', n1 + 10, H1M_INFERRED);

	/* a gap in the trailer: its empty line ends it */
	begin_parse("chunk_lost_in_trailer", &p, H1_RESPONSE, &r);
	n1 = snprintf(seg, sizeof(seg), "%s5\r\nhello\r\n0\r\nX-T: 1", resp_chunked);
	feed_seg(&p, seg, n1, 30, "xyz\r\n\r\n", 7);
	EXPECT_EV(&r, 1, 'M', n1 + 37, H1M_INFERRED);

	/* a gap that fits in the chunk keeps the framing */
	begin_parse("gap_inside_chunk_data", &p, H1_RESPONSE, &r);
	n1 = snprintf(seg, sizeof(seg), "%s64\r\n0123456789", resp_chunked);
	feed_seg(&p, seg, n1, 80, "0123456789\r\n0\r\n\r\n", 17);
	EXPECT_EV(&r, 1, 'M', n1 + 97, 0);

	/* eof and loss while lost */
	begin_parse("chunk_lost_then_eof", &p, H1_RESPONSE, &r);
	n1 = snprintf(seg, sizeof(seg), "%s10\r\nabc", resp_chunked);
	feed_seg(&p, seg, n1, 100, "zz", 2);
	h1__eof(&p);
	EXPECT_EV(&r, 1, 'I', n1 + 102, 0);
	CHECK(r.ev[1].has_head);
	begin_parse("chunk_lost_then_lost", &p, H1_RESPONSE, &r);
	feed_seg(&p, seg, n1, 100, "zz", 2);
	h1__lost(&p);
	EXPECT_EV(&r, 1, 'M', n1 + 102, H1M_INFERRED | H1M_LOST);
	h1__free(&p);
	rec_free(&r);
}

static void test_gap_in_head(void)
{
	static const char h1[] = "GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: tr";
	static const char t_end[] = "ing\r\nAccept: */*\r\n\r\n";
	static const char t_open[] = "ing\r\nAccept: */*";
	struct rec r = { 0 };
	struct h1_parser p = { 0 };
	size_t n1 = strlen(h1), total;

	begin_parse("gap_in_head_tail_ends_head", &p, H1_REQUEST, &r);
	feed_seg(&p, h1, n1, 40, t_end, strlen(t_end));
	total = n1 + 40 + strlen(t_end);
	EXPECT_EV(&r, 0, 'H', 0, 0);
	EXPECT_EV(&r, 1, 'M', total, H1M_TRUNCATED | H1M_INFERRED);
	CHECK_S(r.ev[0].h.target, "/x");
	CHECK_S(r.ev[0].h.host, "a");
	CHECK_S(r.ev[0].h.user_agent, "");
	CHECK_U(r.ev[0].h.flags, H1F_HEAD_TRUNC);
	CHECK_U(r.ev[0].h.head_bytes, total);
	feed_str(&p, req_ok);
	EXPECT_EV(&r, 3, 'M', strlen(req_ok), 0);
	CHECK_S(r.ev[3].h.target, "/ok");

	begin_parse("gap_in_head_end_unknown", &p, H1_REQUEST, &r);
	feed_seg(&p, h1, n1, 40, t_open, strlen(t_open));
	total = n1 + 40 + strlen(t_open);
	EXPECT_EV(&r, 0, 'H', 0, 0);
	EXPECT_EV(&r, 1, 'M', total, H1M_TRUNCATED | H1M_LOST);
	feed_str(&p, "Content-Length-less junk");
	CHECK_U(p.skipped_bytes, 24);
	feed_str(&p, req_ok);
	EXPECT_EV(&r, 3, 'M', strlen(req_ok), 0);
	CHECK_ACCOUNTING(&r, &p, total + 24 + strlen(req_ok));

	begin_parse("gap_in_start_line", &p, H1_REQUEST, &r);
	feed_seg(&p, "GET /very/long/pa", 17, 100, "th HTTP/1.1\r\n\r\n", 15);
	CHECK_U(r.n, 1);
	CHECK(r.n == 1 && r.ev[0].type == 'E' && r.ev[0].err == H1E_GAP_IN_HEAD);
	CHECK_U(p.skipped_bytes, 132);
	feed_str(&p, req_ok);
	EXPECT_EV(&r, 2, 'M', strlen(req_ok), 0);

	begin_parse("gap_in_head_with_cl_body", &p, H1_REQUEST, &r);
	feed_seg(&p, "POST /p HTTP/1.1\r\nContent-Length: 5\r\nX-Pad: aaa", 47, 30,
		 "aa\r\n\r\n", 6);
	CHECK_U(r.n, 1);
	CHECK_U(r.ev[0].h.flags, H1F_HAS_CL | H1F_HEAD_TRUNC);
	feed_str(&p, "hel");
	feed_str(&p, "lo");
	EXPECT_EV(&r, 1, 'M', 47 + 30 + 6 + 5, H1M_TRUNCATED | H1M_INFERRED);
	feed_str(&p, req_ok);
	EXPECT_EV(&r, 3, 'M', strlen(req_ok), 0);

	begin_parse("gap_in_response_head_no_framing", &p, H1_RESPONSE, &r);
	feed_seg(&p, "HTTP/1.1 200 OK\r\nServer: x", 26, 100, "\r\n\r\n", 4);
	EXPECT_EV(&r, 1, 'M', 130, H1M_TRUNCATED | H1M_INFERRED);
	CHECK_U(r.ev[0].h.status, 200);
	feed_str(&p, resp_ok);
	EXPECT_EV(&r, 3, 'M', strlen(resp_ok), 0);

	begin_parse("gap_in_head_lf_only_tail", &p, H1_REQUEST, &r);
	feed_seg(&p, "GET /lf HTTP/1.1\nA: b", 21, 5, "c\n\n", 3);
	EXPECT_EV(&r, 1, 'M', 29, H1M_TRUNCATED | H1M_INFERRED);

	begin_parse("gap_in_101_head_stop", &p, H1_RESPONSE, &r);
	r.hints = "SSS";
	feed_seg(&p, "HTTP/1.1 101 Switching Protocols\r\nUpgr", 39, 50, "ade", 3);
	EXPECT_EV(&r, 1, 'M', 92, H1M_TRUNCATED | H1M_LOST);
	CHECK(p.stopped);
	feed_str(&p, resp_ok);
	CHECK_U(r.n, 2);
	h1__eof(&p);
	feed_seg(&p, "HTTP/1.1 101 Switching Protocols\r\nUpgr", 39, 50, "\r\n\r\nxx", 6);
	EXPECT_EV(&r, 3, 'M', 39 + 50 + 6, H1M_TRUNCATED | H1M_LOST);
	feed_seg(&p, "HTTP/1.1 101 Switching Protocols\r\nUpgr", 39, 50, "a\r\n\r\n", 5);
	CHECK_U(r.n, 4);
	h1__eof(&p);
	feed_seg(&p, "HTTP/1.1 101 Switching Protocols\r\nUpgr", 39, 50, "a\r\n\r\n", 5);
	EXPECT_EV(&r, 5, 'M', 94, H1M_TRUNCATED | H1M_INFERRED);
	CHECK(p.stopped);
	CHECK_U(p.skipped_bytes, 0);

	begin_parse("gap_in_buffered_head", &p, H1_REQUEST, &r);
	feed_str(&p, "GET /b HTTP/1.1\r\nHo");
	feed_seg(&p, "st: b\r\nX: ", 10, 10, "y\r\n\r\n", 5);
	EXPECT_EV(&r, 1, 'M', 19 + 25, H1M_TRUNCATED | H1M_INFERRED);
	CHECK_S(r.ev[0].h.host, "b");

	begin_parse("gap_in_head_bad_captured_header", &p, H1_REQUEST, &r);
	feed_seg(&p, "GET / HTTP/1.1\r\nBad Header: x\r\nY", 32, 10, "\r\n\r\n", 4);
	CHECK(r.n == 1 && r.ev[0].type == 'E' && r.ev[0].err == H1E_BAD_HEADER);
	CHECK_U(p.skipped_bytes, 46);

	begin_parse("gap_while_idle", &p, H1_REQUEST, &r);
	feed_str(&p, req_ok);
	feed_seg(&p, NULL, 0, 100, "T / HTTP/1.1\r\n\r\n", 16);
	CHECK_U(r.n, 2);
	CHECK_U(p.skipped_bytes, 116);
	feed_str(&p, req_ok);
	CHECK_U(r.n, 4);
	CHECK_ACCOUNTING(&r, &p, 2 * strlen(req_ok) + 116);
	h1__free(&p);
	rec_free(&r);
}

/* ---- hostile input ---------------------------------------------------- */

struct hcase {
	const char *name;
	enum h1_dir dir;
	const char *in;
	size_t len;
	int err;
};

#define BIN(s) s, sizeof(s) - 1
#define RCH "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

static const struct hcase hostile[] = {
	{ "nul_in_name", H1_REQUEST, BIN("GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n"), H1E_BAD_HEADER },
	{ "nul_in_value", H1_REQUEST, BIN("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"), H1E_BAD_HEADER },
	{ "ctl_in_value", H1_REQUEST, BIN("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n"),
	  H1E_BAD_HEADER },
	{ "del_in_value", H1_REQUEST, BIN("GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n"),
	  H1E_BAD_HEADER },
	{ "cr_in_value", H1_REQUEST, BIN("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), H1E_BAD_HEADER },
	{ "esc_in_value", H1_RESPONSE, BIN("HTTP/1.1 200 OK\r\nX: \x1b[31m\r\n\r\n"),
	  H1E_BAD_HEADER },
	{ "space_before_colon", H1_REQUEST, BIN("GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
	  H1E_BAD_HEADER },
	{ "obs_fold", H1_REQUEST, BIN("GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n"), H1E_BAD_HEADER },
	{ "obs_fold_tab", H1_RESPONSE, BIN("HTTP/1.1 200 OK\r\nX-A: a\r\n\tb\r\n\r\n"),
	  H1E_BAD_HEADER },
	{ "empty_name", H1_REQUEST, BIN("GET / HTTP/1.1\r\n: a\r\n\r\n"), H1E_BAD_HEADER },
	{ "no_colon", H1_REQUEST, BIN("GET / HTTP/1.1\r\nHost a\r\n\r\n"), H1E_BAD_HEADER },
	{ "bare_cr_line", H1_REQUEST, BIN("GET / HTTP/1.1\r\n\r\r\n\r\n"), H1E_BAD_HEADER },
	{ "nul_in_method", H1_REQUEST, BIN("G\0T / HTTP/1.1\r\n\r\n"), H1E_BAD_START },
	{ "ctl_in_target", H1_REQUEST, BIN("GET /a\x01z HTTP/1.1\r\n\r\n"), H1E_BAD_START },
	{ "del_in_target", H1_REQUEST, BIN("GET /a\x7fz HTTP/1.1\r\n\r\n"), H1E_BAD_START },
	{ "two_spaces", H1_REQUEST, BIN("GET  / HTTP/1.1\r\n\r\n"), H1E_BAD_START },
	{ "trailing_space", H1_REQUEST, BIN("GET / HTTP/1.1 \r\n\r\n"), H1E_BAD_START },
	{ "http2_version", H1_REQUEST, BIN("GET / HTTP/2.0\r\n\r\n"), H1E_BAD_START },
	{ "http09", H1_REQUEST, BIN("GET /\r\n\r\n"), H1E_BAD_START },
	{ "http09_version", H1_REQUEST, BIN("GET / HTTP/0.9\r\n\r\n"), H1E_BAD_START },
	{ "http12", H1_REQUEST, BIN("GET / HTTP/1.2\r\n\r\n"), H1E_BAD_START },
	{ "lowercase_http", H1_REQUEST, BIN("GET / http/1.1\r\n\r\n"), H1E_BAD_START },
	{ "h2_preface", H1_REQUEST, BIN("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), H1E_BAD_START },
	{ "cr_then_junk", H1_REQUEST, BIN("\rGET / HTTP/1.1\r\n\r\n"), H1E_BAD_START },
	{ "tls_client_hello", H1_REQUEST,
	  BIN("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
	  H1E_BAD_START },
	{ "cl_negative", H1_REQUEST, BIN("POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n"),
	  H1E_BAD_CL },
	{ "cl_plus", H1_REQUEST, BIN("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"), H1E_BAD_CL },
	{ "cl_hex", H1_REQUEST, BIN("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"),
	  H1E_BAD_CL },
	{ "cl_empty", H1_REQUEST, BIN("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"), H1E_BAD_CL },
	{ "cl_inner_space", H1_REQUEST, BIN("POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n"),
	  H1E_BAD_CL },
	{ "cl_list", H1_REQUEST, BIN("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
	  H1E_BAD_CL },
	{ "cl_overflow", H1_REQUEST,
	  BIN("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"), H1E_BAD_CL },
	{ "cl_above_2_62", H1_RESPONSE,
	  BIN("HTTP/1.1 200 OK\r\nContent-Length: 4611686018427387905\r\n\r\n"), H1E_BAD_CL },
	{ "cl_conflict", H1_REQUEST,
	  BIN("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"),
	  H1E_BAD_CL },
	{ "cl_conflict_response", H1_RESPONSE,
	  BIN("HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 50\r\n\r\n"), H1E_BAD_CL },
	{ "te_gzip_request", H1_REQUEST,
	  BIN("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), H1E_BAD_TE },
	{ "te_chunked_not_last_request", H1_REQUEST,
	  BIN("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), H1E_BAD_TE },
	{ "status_two_digits", H1_RESPONSE, BIN("HTTP/1.1 20 OK\r\n\r\n"), H1E_BAD_START },
	{ "status_letters", H1_RESPONSE, BIN("HTTP/1.1 2x0 OK\r\n\r\n"), H1E_BAD_START },
	{ "status_zero", H1_RESPONSE, BIN("HTTP/1.1 000 OK\r\n\r\n"), H1E_BAD_START },
	{ "status_four_digits", H1_RESPONSE, BIN("HTTP/1.1 2000 OK\r\n\r\n"), H1E_BAD_START },
	{ "response_http2", H1_RESPONSE, BIN("HTTP/2 200 OK\r\n\r\n"), H1E_BAD_START },
	{ "response_ctl_reason", H1_RESPONSE, BIN("HTTP/1.1 200 O\x01K\r\n\r\n"), H1E_BAD_START },
	{ "chunk_nonhex", H1_RESPONSE, BIN(RCH "zz\r\nhello\r\n0\r\n\r\n"), H1E_BAD_CHUNK },
	{ "chunk_empty_size", H1_RESPONSE, BIN(RCH "\r\nhello\r\n0\r\n\r\n"), H1E_BAD_CHUNK },
	{ "chunk_only_ext", H1_RESPONSE, BIN(RCH ";a=b\r\nhello\r\n0\r\n\r\n"), H1E_BAD_CHUNK },
	{ "chunk_leading_space", H1_RESPONSE, BIN(RCH " 5\r\nhello\r\n0\r\n\r\n"), H1E_BAD_CHUNK },
	{ "chunk_junk_after_space", H1_RESPONSE, BIN(RCH "5 x\r\nhello\r\n0\r\n\r\n"),
	  H1E_BAD_CHUNK },
	{ "chunk_negative", H1_RESPONSE, BIN(RCH "-5\r\nhello\r\n0\r\n\r\n"), H1E_BAD_CHUNK },
	{ "chunk_overflow_64", H1_RESPONSE, BIN(RCH "10000000000000000\r\nx\r\n"), H1E_BAD_CHUNK },
	{ "chunk_above_2_62", H1_RESPONSE, BIN(RCH "4000000000000001\r\nx\r\n"), H1E_BAD_CHUNK },
	{ "chunk_missing_crlf", H1_RESPONSE, BIN(RCH "3\r\nabcX\r\n0\r\n\r\n"), H1E_BAD_CHUNK },
	{ "chunk_junk_instead_of_cr", H1_RESPONSE, BIN(RCH "3\r\nabcX\n0\r\n\r\n"),
	  H1E_BAD_CHUNK },
	{ "chunk_space_between_digits", H1_RESPONSE, BIN(RCH "5 6\r\nhello\r\n0\r\n\r\n"),
	  H1E_BAD_CHUNK },
	{ "trailer_cr_junk", H1_RESPONSE, BIN(RCH "0\r\n\rX\r\n\r\n"), H1E_BAD_CHUNK },
	{ "chunk_cr_without_lf", H1_RESPONSE, BIN(RCH "3\r\nabc\r\r\n0\r\n\r\n"), H1E_BAD_CHUNK },
	{ "chunk_size_cr_junk", H1_RESPONSE, BIN(RCH "3\rX\nabc\r\n0\r\n\r\n"), H1E_BAD_CHUNK },
	{ "chunk_ctl_in_ext", H1_RESPONSE, BIN(RCH "3;a\x01\r\nabc\r\n0\r\n\r\n"), H1E_BAD_CHUNK },
	{ "chunk_request_nul_size", H1_REQUEST,
	  BIN("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\0\r\n"), H1E_BAD_CHUNK },
};

/* After the error, a new segment starting with a valid message must parse. */
static void check_resync(struct h1_parser *p, struct rec *r, enum h1_dir dir, uint64_t fed)
{
	const char *ok = dir == H1_REQUEST ? req_ok : resp_ok;
	int before = r->n;

	feed_str(p, ok);
	fed += strlen(ok);
	if (!CHECK_U(r->n, before + 2))
		return;
	EXPECT_EV(r, before + 1, 'M', strlen(ok), 0);
	if (dir == H1_REQUEST)
		CHECK_S(r->ev[before + 1].h.target, "/ok");
	else
		CHECK_U(r->ev[before + 1].h.status, 299);
	CHECK_ACCOUNTING(r, p, fed);
}

/* The first error reported must be err; before it only heads and lost messages. */
static void check_first_error(const struct rec *r, int err)
{
	int i;

	for (i = 0; i < r->n; i++) {
		if (r->ev[i].type == 'E')
			break;
		CHECK(r->ev[i].type == 'H' ||
		      (r->ev[i].type == 'M' && (r->ev[i].mflags & H1M_LOST)));
	}
	if (check(i < r->n, __FILE__, __LINE__, "no error reported"))
		check(r->ev[i].err == err, __FILE__, __LINE__, "error %s, want %s",
		      h1_error_name(r->ev[i].err), h1_error_name(err));
}

static void test_hostile_one(const char *name, enum h1_dir dir, const char *in, size_t len,
			     int err)
{
	struct rec r = { 0 };
	struct h1_parser p = { 0 };
	size_t i;

	begin_parse(name, &p, dir, &r);
	feed(&p, in, len);
	check_first_error(&r, err);
	CHECK_ACCOUNTING(&r, &p, len);
	check_resync(&p, &r, dir, len);
	h1__free(&p);

	/* byte at a time: the same first error */
	rec_reset(&r, NULL);
	h1__init(&p, dir, &rec_cb, &r);
	for (i = 0; i < len; i++)
		feed(&p, in + i, 1);
	check_first_error(&r, err);
	CHECK_ACCOUNTING(&r, &p, len);
	h1__lost(&p);
	check_resync(&p, &r, dir, len);
	h1__free(&p);
	rec_free(&r);
}

static char *repeat(const char *pre, const char *unit, size_t times, const char *post, size_t *len)
{
	size_t pl = strlen(pre), ul = strlen(unit), sl = strlen(post), i;
	char *b = malloc(pl + ul * times + sl + 1);

	if (!b)
		abort();
	memcpy(b, pre, pl);
	for (i = 0; i < times; i++)
		memcpy(b + pl + i * ul, unit, ul);
	memcpy(b + pl + ul * times, post, sl + 1);
	*len = pl + ul * times + sl;
	return b;
}

static void test_hostile(void)
{
	size_t i, len;
	char *b;

	for (i = 0; i < ARRAY_SIZE(hostile); i++)
		test_hostile_one(hostile[i].name, hostile[i].dir, hostile[i].in, hostile[i].len,
				 hostile[i].err);

	b = repeat("GET / HTTP/1.1\r\nX-Big: ", "a", 65536, "\r\n\r\n", &len);
	test_hostile_one("header_line_64k", H1_REQUEST, b, len, H1E_HEAD_TOO_LARGE);
	free(b);
	b = repeat("GET / HTTP/1.1\r\n", "X-Header-Name: value\r\n", 10000, "\r\n", &len);
	test_hostile_one("10000_headers", H1_REQUEST, b, len, H1E_HEAD_TOO_LARGE);
	free(b);
	b = repeat("HTTP/1.1 200 OK\r\n", "A: b\r\n", 10000, "\r\n", &len);
	test_hostile_one("10000_response_headers", H1_RESPONSE, b, len, H1E_HEAD_TOO_LARGE);
	free(b);
	b = repeat("", "\r\n", 20000, "GET / HTTP/1.1\r\n\r\n", &len);
	test_hostile_one("endless_empty_lines", H1_REQUEST, b, len, H1E_HEAD_TOO_LARGE);
	free(b);
	b = repeat(RCH "1;", "x", 2000, "\r\nz\r\n0\r\n\r\n", &len);
	test_hostile_one("chunk_line_too_long", H1_RESPONSE, b, len, H1E_BAD_CHUNK);
	free(b);
	b = repeat(RCH "0\r\n", "Trailer: xxxxxxxxxxxxxxxx\r\n", 1000, "\r\n", &len);
	test_hostile_one("trailer_too_large", H1_RESPONSE, b, len, H1E_HEAD_TOO_LARGE);
	free(b);
}

/*
 * Every byte value at every position of field values of several lengths:
 * only HTAB, SP, VCHAR and obs-text are allowed (values are checked eight
 * bytes at a time, the last word reaching back into the name). CR and LF
 * end the line, so they are not tried.
 */
static void test_value_bytes(void)
{
	static const char pre[] = "GET / HTTP/1.1\r\nX-Long:", post[] = "\r\n\r\n";
	static const int lens[] = { 1, 3, 7, 8, 9, 13, 16, 23 };
	char in[sizeof(pre) + 24 + sizeof(post)];
	struct rec r = { 0 };
	struct h1_parser p = { 0 };

	for (int b = 0; b < 256; b++) {
		bool ok = b == '\t' || (b >= 0x20 && b != 0x7f);

		if (b == '\r' || b == '\n')
			continue;
		for (size_t li = 0; li < ARRAY_SIZE(lens); li++) {
			for (int pos = 0; pos < lens[li]; pos++) {
				size_t n = sizeof(pre) - 1;

				memcpy(in, pre, n);
				memset(in + n, 'v', lens[li]);
				in[n + pos] = (char)b;
				memcpy(in + n + lens[li], post, sizeof(post));
				n += lens[li] + sizeof(post) - 1;
				begin_parse("value_bytes", &p, H1_REQUEST, &r);
				feed(&p, in, n);
				if (ok)
					check(r.n == 2 && r.ev[0].type == 'H', __FILE__, __LINE__,
					      "byte %#x at %d of %d refused", b, pos, lens[li]);
				else
					check(r.n >= 1 && r.ev[0].type == 'E' &&
					      r.ev[0].err == H1E_BAD_HEADER, __FILE__, __LINE__,
					      "byte %#x at %d of %d accepted", b, pos, lens[li]);
				h1__free(&p);
			}
		}
	}
	rec_free(&r);
}

/* Extracted header names match in any case, and only whole names do. */
static void test_field_names(void)
{
	static const struct {
		const char *line;
		const char *host, *ctype;
	} cases[] = {
		{ "HOST: a", "a", "" },
		{ "hOsT: b", "b", "" },
		{ "Hosts: c", "", "" },
		{ "Hos: d", "", "" },
		{ "CONTENT-TYPE: e", "", "e" },
		{ "Content-Typf: f", "", "" },
		{ "Content_Type: g", "", "" },
		{ "X-Request-ID: h", "", "" },
	};
	struct rec r = { 0 };
	struct h1_parser p = { 0 };
	char in[128];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(in, sizeof(in), "GET / HTTP/1.1\r\n%s\r\n\r\n", cases[i].line);
		begin_parse(cases[i].line, &p, H1_REQUEST, &r);
		feed_str(&p, in);
		if (CHECK(r.n == 2 && r.ev[0].type == 'H')) {
			CHECK_S(r.ev[0].h.host, cases[i].host);
			CHECK_S(r.ev[0].h.content_type, cases[i].ctype);
		}
		h1__free(&p);
	}
	rec_free(&r);
}

/* A head of exactly H1_HEAD_MAX bytes is accepted, one byte more is not. */
static void test_head_limit(void)
{
	static char in[H1_HEAD_MAX + 64];
	const char *pre = "GET / HTTP/1.1\r\nX: ";
	size_t pl = strlen(pre), fill = H1_HEAD_MAX - pl - 4, extra, cut;
	struct rec r = { 0 };
	struct h1_parser p = { 0 };

	for (extra = 0; extra < 2; extra++) {
		memcpy(in, pre, pl);
		memset(in + pl, 'v', fill + extra);
		memcpy(in + pl + fill + extra, "\r\n\r\n", 4);
		for (cut = 0; cut < 3; cut++) {
			begin_parse(extra ? "head_max_plus_one" : "head_exactly_max", &p, H1_REQUEST, &r);
			if (cut == 1) {
				feed(&p, in, 100);
				feed(&p, in + 100, H1_HEAD_MAX + extra - 100);
			} else if (cut == 2) {
				feed(&p, in, H1_HEAD_MAX + extra - 1);
				feed(&p, in + H1_HEAD_MAX + extra - 1, 1);
			} else {
				feed(&p, in, H1_HEAD_MAX + extra);
			}
			if (extra) {
				check_first_error(&r, H1E_HEAD_TOO_LARGE);
			} else {
				EXPECT_EV(&r, 1, 'M', H1_HEAD_MAX, 0);
			}
			CHECK_ACCOUNTING(&r, &p, H1_HEAD_MAX + extra);
			h1__free(&p);
		}
	}
	rec_free(&r);
}

/* A head fed a byte at a time is searched for its end only once per byte. */
static void test_scan_resume(void)
{
	struct rec r = { 0 };
	struct h1_parser p = { 0 };
	size_t len, i;
	char *b = repeat("GET / HTTP/1.1\r\n", "X-H: v\r\n", 1500, "\r\n", &len);

	begin_parse("head_search_resumes", &p, H1_REQUEST, &r);
	for (i = 0; i + 1 < len; i++) {
		feed(&p, b + i, 1);
		if (!CHECK(p.buf_len == i + 1 && p.scan_off + 2 >= p.buf_len))
			break;
	}
	feed(&p, b + len - 1, 1);
	EXPECT_EV(&r, 1, 'M', len, 0);
	CHECK(!p.buf && !p.buf_len);
	h1__free(&p);
	free(b);
	rec_free(&r);
}

/* Random bytes, random cuts, random gaps: no crash, exact accounting, then resync. */
static void test_garbage(void)
{
	static uint8_t buf[4096];
	static const char *alphabet[] = { "GET ", "HTTP/1.1 ", "\r\n", "\n", "0\r\n\r\n",
					  "Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n",
					  ": ", "5\r\n", " ", "\x00", "\xff" };
	struct rec r = { 0 };
	struct h1_parser p = { 0 };
	size_t n, at, k, a;
	uint64_t fed, gap;
	int iter, dir;

	cur_case = "random_garbage";
	n_cases++;
	for (iter = 0; iter < 4000; iter++) {
		for (n = 0; n < sizeof(buf) - 64 && rng() % 200;) {
			if (rng() % 2) {
				buf[n++] = rng();
			} else {
				a = rng() % ARRAY_SIZE(alphabet);
				k = a == 10 ? 1 : strlen(alphabet[a]);
				memcpy(buf + n, alphabet[a], k);
				n += k;
			}
		}
		dir = iter % 2;
		rec_reset(&r, NULL);
		h1__init(&p, dir, &rec_cb, &r);
		for (at = 0, fed = 0; at < n; at += k) {
			k = 1 + rng() % (n - at);
			gap = rng() % 4 ? 0 : rng() % 100;
			a = gap ? rng() % (k + 1) : k;
			feed_seg(&p, buf + at, a, gap, buf + at + a, k - a);
			fed += k + gap;
			if (!(rng() % 50)) {
				h1__lost(&p);
				CHECK_U(p.msg_bytes, 0);
			}
		}
		CHECK_ACCOUNTING(&r, &p, fed);
		h1__lost(&p);
		check_resync(&p, &r, dir, fed);
		h1__eof(&p);
		h1__free(&p);
	}
	rec_free(&r);
}

/* ---- loss, eof, stop -------------------------------------------------- */

static void test_lost(void)
{
	static const char post[] = "POST /l HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789";
	struct rec r = { 0 };
	struct h1_parser p = { 0 };

	begin_parse("lost_in_body", &p, H1_REQUEST, &r);
	feed_str(&p, post);
	h1__lost(&p);
	EXPECT_EV(&r, 1, 'M', strlen(post), H1M_LOST);
	feed_str(&p, "ody bytes after the loss");
	CHECK_U(r.n, 2);
	feed_str(&p, req_ok);
	EXPECT_EV(&r, 3, 'M', strlen(req_ok), 0);
	CHECK_S(r.ev[3].h.target, "/ok");
	CHECK_ACCOUNTING(&r, &p, strlen(post) + 24 + strlen(req_ok));

	begin_parse("bad_te_reports_head_then_lost", &p, H1_REQUEST, &r);
	feed_str(&p, "POST /te HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nbody");
	CHECK_U(r.n, 3);
	EXPECT_EV(&r, 0, 'H', 0, 0);
	CHECK_S(r.ev[0].h.target, "/te");
	CHECK_U(r.ev[0].h.flags, H1F_TE_OTHER);
	EXPECT_EV(&r, 1, 'M', 46, H1M_LOST);
	CHECK(r.n == 3 && r.ev[2].type == 'E' && r.ev[2].err == H1E_BAD_TE);
	CHECK_U(p.skipped_bytes, 4);

	begin_parse("lost_in_partial_head", &p, H1_REQUEST, &r);
	feed_str(&p, "GET /partial HT");
	h1__lost(&p);
	CHECK_U(r.n, 0);
	CHECK_U(p.skipped_bytes, 15);
	feed_str(&p, req_ok);
	EXPECT_EV(&r, 1, 'M', strlen(req_ok), 0);

	begin_parse("lost_in_close_delimited", &p, H1_RESPONSE, &r);
	feed_str(&p, "HTTP/1.0 200 OK\r\n\r\nabc");
	h1__lost(&p);
	EXPECT_EV(&r, 1, 'M', 22, H1M_LOST);
	feed_str(&p, resp_ok);
	EXPECT_EV(&r, 3, 'M', strlen(resp_ok), 0);

	begin_parse("lost_resync_partial_prefix", &p, H1_REQUEST, &r);
	h1__lost(&p);
	feed_str(&p, "PO");
	feed_str(&p, "ST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nz");
	EXPECT_EV(&r, 1, 'M', 2 + strlen("ST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nz"), 0);
	CHECK_S(r.ev[1].h.method, "POST");
	h1__lost(&p);
	feed_str(&p, "HTTP/1.1 200 OK\r\n\r\n");
	feed_str(&p, "ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n");
	feed_str(&p, "ABCDEFGHIJKLMNOPQ");
	feed_str(&p, " GET / HTTP/1.1\r\n\r\n");
	feed_str(&p, "get / HTTP/1.1\r\n\r\n");
	feed_str(&p, "\r\nGET / HTTP/1.1\r\n\r\n");
	CHECK_U(r.n, 2);
	CHECK_U(p.skipped_bytes, 19 + 32 + 17 + 19 + 18 + 20);
	/* after a loss only RFC 9110 methods restart parsing: a segment starting
	 * "ABCDEFGHIJKLMNOP " could be the middle of anything */
	feed_str(&p, "ABCDEFGHIJKLMNOP");
	feed_str(&p, " / HTTP/1.1\r\n\r\n");
	CHECK_U(r.n, 2);
	feed_str(&p, "DELETE /y HTTP/1.1\r\n\r\n");
	EXPECT_EV(&r, 3, 'M', 22, 0);
	CHECK_S(r.ev[3].h.method, "DELETE");
	h1__free(&p);
	rec_free(&r);
}

static void test_eof_and_stop(void)
{
	struct rec r = { 0 };
	struct h1_parser p = { 0 };

	begin_parse("eof_resets_parser", &p, H1_RESPONSE, &r);
	r.hints = "S";
	feed_str(&p, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		     "Connection: upgrade\r\n\r\n\x81\x01x");
	CHECK(p.stopped);
	CHECK_U(r.n, 2);
	feed_str(&p, resp_ok);
	feed_seg(&p, NULL, 0, 1000, "x", 1);
	h1__lost(&p);
	CHECK_U(r.n, 2);
	CHECK_U(p.skipped_bytes, 0);
	h1__eof(&p);
	CHECK(!p.stopped);
	CHECK_U(r.n, 2);
	feed_str(&p, resp_ok);
	EXPECT_EV(&r, 3, 'M', strlen(resp_ok), 0);
	CHECK_U(p.messages, 2);

	begin_parse("eof_partial_head", &p, H1_REQUEST, &r);
	feed_str(&p, "\r\nGET / HTTP/1.1\r\nHost");
	h1__eof(&p);
	EXPECT_EV(&r, 0, 'I', 22, 0);
	CHECK(!r.ev[0].has_head);

	begin_parse("eof_after_empty_lines", &p, H1_REQUEST, &r);
	feed_str(&p, req_ok);
	feed_str(&p, "\r\n");
	h1__eof(&p);
	CHECK_U(r.n, 2);
	CHECK_U(p.skipped_bytes, 2);

	begin_parse("error_names", &p, H1_REQUEST, &r);
	CHECK_S(h1_error_name(H1E_BAD_START), "bad_start");
	CHECK_S(h1_error_name(H1E_GAP_IN_HEAD), "gap_in_head");
	CHECK_S(h1_error_name(H1E_MAX), "unknown");
	CHECK_S(h1_error_name(0), "unknown");
	h1__free(&p);
	h1__free(NULL);
	rec_free(&r);
}

/* Input that ends right before an unmapped page: no read past its end. */
static void test_guard_page(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	static const char in[] = "POST /g HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "3;e\r\nabc\r\n0\r\nT: 1\r\n\r\n";
	size_t n = sizeof(in) - 1, k;
	struct rec r = { 0 };
	struct h1_parser p = { 0 };

	cur_case = "guard_page";
	n_cases++;
	if (!CHECK(m != MAP_FAILED) || !CHECK(!mprotect(m + pg, pg, PROT_NONE)))
		return;
	for (k = 1; k <= n; k++) {
		rec_reset(&r, NULL);
		h1__init(&p, H1_REQUEST, &rec_cb, &r);
		memcpy(m + pg - k, in, k);
		h1__feed(&p, m + pg - k, k, 0, NULL, 0);
		memcpy(m + pg - (n - k), in + k, n - k);
		h1__feed(&p, m + pg - (n - k), n - k, 0, NULL, 0);
		CHECK_U(p.messages, 1);
		h1__free(&p);
	}
	munmap(m, 2 * pg);
	rec_free(&r);
}

int main(void)
{
	test_valid();
	test_pipeline();
	test_chunked_splits();
	test_gap_cl_body();
	test_gap_cl_spill();
	test_gap_sendfile();
	test_gap_chunk_lost();
	test_gap_in_head();
	test_hostile();
	test_value_bytes();
	test_field_names();
	test_head_limit();
	test_scan_resume();
	test_garbage();
	test_lost();
	test_eof_and_stop();
	test_guard_page();
	printf("test_http1: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
