// SPDX-License-Identifier: MIT
/*
 * Differential fuzzer: user/proto/http1.c against Debian's libhttp-parser
 * (http_parser.h, package libhttp-parser-dev) on VALID HTTP/1 streams.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iuser -Itests/unit \
 *         tests/fuzz/fuzz_diff_http1.c user/proto/http1.c -lhttp_parser -o build/fuzz_diff_http1
 *
 * The input drives a generator (it is not parsed itself): byte 0 picks the
 * direction, then each message takes its method or status, version, target,
 * headers, and body framing (none, Content-Length, chunked with extensions
 * and trailers, or — last response only — delimited by close) from the next
 * bytes. Messages are concatenated (pipelining); the stream is then fed to
 * http1.c cut at input-chosen points, and to http_parser one byte at a time.
 *
 * Both must accept it, and agree on every message: where it ends in the
 * stream (byte offset), method, request-target, status, HTTP version,
 * chunked or Content-Length framing and its value, Connection: close — and
 * http1.c must count exactly the bytes the generator wrote per message.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <http_parser.h>

#include "proto/http1.h"

#define CHECK_ABORT	/* a failed check aborts: libFuzzer keeps the input */
#include "check.h"

#define MAX_MSGS	8
#define STREAM_MAX	(64 * 1024)

struct gen_msg {
	size_t start, end;		/* offsets in the stream */
	char method[16];
	char target[128];
	char host[64];
	int status, minor;
	bool chunked, has_cl, close;
	uint64_t cl;
};

struct got_msg {
	size_t end;
	char method[16];
	char target[H1_TARGET_MAX];
	int status, minor;
	bool chunked, has_cl, close;
	uint64_t cl;
};

struct gen {
	const uint8_t *in;
	size_t n;
	char *out;
	size_t len;
	struct gen_msg m[MAX_MSGS];
	int n_msgs;
};

static uint8_t u8(struct gen *g)
{
	uint8_t v = 0;

	if (g->n) {
		v = *g->in++;
		g->n--;
	}
	return v;
}

static void put(struct gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct gen *g, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(g->out + g->len, STREAM_MAX - g->len, fmt, ap);
	va_end(ap);
	CHECK(k >= 0 && (size_t)k < STREAM_MAX - g->len);	/* the generator keeps far below */
	g->len += k;
}

/* A run of 0..max characters from alphabet, chosen by the input. */
static void word(struct gen *g, const char *alphabet, int min, int max, char *out, size_t cap)
{
	size_t a = strlen(alphabet);
	int n = min + u8(g) % (max - min + 1), i;

	for (i = 0; i < n && (size_t)i < cap - 1; i++)
		out[i] = alphabet[u8(g) % a];
	out[i] = 0;
}

static const char pchar[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			    "-._~!$&'()*+,;=:@%/";
static const char vchar[] = "abcdefghijklmnopqrstuvwxyz0123456789 -_.;,=/\"()<>@[]{}?!#$%&'*+^`|~";
static const char tchar[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			    "!#$%&'*+-.^_`|~";

static void gen_headers(struct gen *g, struct gen_msg *m)
{
	int n = u8(g) % 5;
	char name[24], val[48];

	for (int i = 0; i < n; i++) {
		word(g, tchar, 1, 12, name, sizeof(name));
		/* not a field either parser gives a meaning to */
		if (name[0] == 'c' || name[0] == 'C' || name[0] == 't' || name[0] == 'T' ||
		    name[0] == 'u' || name[0] == 'U' || name[0] == 'p' || name[0] == 'P' ||
		    name[0] == 'k' || name[0] == 'K' || name[0] == 'h' || name[0] == 'H')
			name[0] = 'X';
		word(g, vchar, 0, 30, val, sizeof(val));
		while (strlen(val) && val[strlen(val) - 1] == ' ')
			val[strlen(val) - 1] = 0;
		put(g, "%s:%s%s\r\n", name, u8(g) & 1 ? " " : "", val);
	}
	if (u8(g) & 1) {
		word(g, "abcdefghijklmnopqrstuvwxyz0123456789.-:", 1, 30, m->host, sizeof(m->host));
		put(g, "%s: %s\r\n", u8(g) & 1 ? "Host" : "hOsT", m->host);
	}
}

/* Body framing headers, the blank line, then the body. */
static void gen_body(struct gen *g, struct gen_msg *m, bool last, bool allowed)
{
	uint8_t f = u8(g) % 4;

	if (!allowed)
		f = 0;
	if (allowed && m->status && (f == 0 || f == 3) && !last)
		f = 1;	/* no framing is close-delimited: only the last response */
	if (f == 3 && m->status == 0)
		f = 1;
	if (f == 2 && !m->minor)
		f = 1;	/* chunked: HTTP/1.1 only */
	if (m->close)
		put(g, "Connection: close\r\n");
	else if (!m->minor)
		put(g, "Connection: keep-alive\r\n");
	if (f == 1) {
		m->has_cl = true;
		m->cl = u8(g) % 200;
		put(g, "%s: %llu\r\n\r\n", u8(g) & 1 ? "Content-Length" : "content-length",
		    (unsigned long long)m->cl);
		for (uint64_t i = 0; i < m->cl; i++)
			put(g, "%c", 'a' + (int)(i % 26));
	} else if (f == 2) {
		int chunks = u8(g) % 4;

		m->chunked = true;
		put(g, "Transfer-Encoding: %s\r\n\r\n", u8(g) & 1 ? "chunked" : "Chunked");
		for (int c = 0; c < chunks; c++) {
			int sz = 1 + u8(g) % 64;
			uint8_t v = u8(g);

			put(g, v & 1 ? "%X" : "%x", sz);
			if (v & 2)
				put(g, ";ext%d=v%d", c, sz);
			put(g, "\r\n");
			for (int i = 0; i < sz; i++)
				put(g, "%c", '0' + i % 10);
			put(g, "\r\n");
		}
		put(g, "0\r\n");
		if (u8(g) & 1)
			put(g, "X-Trailer: t\r\n");
		put(g, "\r\n");
	} else {
		put(g, "\r\n");
		if (f == 3)
			for (int i = u8(g); i > 0; i--)
				put(g, "e");
	}
}

static void gen_request(struct gen *g, struct gen_msg *m, bool last)
{
	static const char *const methods[] = { "GET", "POST", "PUT", "DELETE", "OPTIONS",
					       "PATCH", "HEAD" };
	uint8_t v = u8(g);

	snprintf(m->method, sizeof(m->method), "%s", methods[v % 7]);
	m->minor = !(v & 0x80);
	m->close = last && (v & 0x40);
	if (!strcmp(m->method, "OPTIONS") && (v & 0x20)) {
		strcpy(m->target, "*");
	} else {
		char p[80], q[40];

		word(g, pchar, 0, 60, p, sizeof(p));
		word(g, pchar, 0, 30, q, sizeof(q));
		snprintf(m->target, sizeof(m->target), "/%s%s%s", p, v & 0x10 ? "?" : "",
			 v & 0x10 ? q : "");
	}
	put(g, "%s %s HTTP/1.%d\r\n", m->method, m->target, m->minor);
	gen_headers(g, m);
	gen_body(g, m, last, true);
}

static void gen_response(struct gen *g, struct gen_msg *m, bool last)
{
	static const int statuses[] = { 200, 201, 204, 206, 301, 304, 400, 404, 418, 500, 503, 299,
					100, 103 };
	uint8_t v = u8(g);
	char reason[32];

	m->status = statuses[v % 14];
	m->minor = !(v & 0x80);
	m->close = last && (v & 0x40);
	word(g, "abcdefghijklmnopqrstuvwxyz ABCDEFG", 1, 20, reason, sizeof(reason));
	put(g, "HTTP/1.%d %d %s\r\n", m->minor, m->status, reason);
	gen_headers(g, m);
	gen_body(g, m, last, m->status >= 200 && m->status != 204 && m->status != 304);
}

/* ---- http1.c side ---- */

struct h1_side {
	struct got_msg m[MAX_MSGS + 4];
	int n;
	size_t pos;		/* bytes accounted to messages so far */
	int errors;
};

static enum h1_body_hint h1_on_head(void *ctx, const struct h1_head *h)
{
	struct h1_side *s = ctx;
	struct got_msg *m;

	CHECK(s->n < MAX_MSGS + 4);
	m = &s->m[s->n];
	snprintf(m->method, sizeof(m->method), "%s", h->method);
	snprintf(m->target, sizeof(m->target), "%s", h->target);
	m->status = h->status;
	m->minor = h->version_minor;
	m->chunked = h->flags & H1F_CHUNKED;
	m->has_cl = h->flags & H1F_HAS_CL;
	m->cl = h->content_length;
	m->close = h->flags & H1F_CONN_CLOSE;
	return H1_BODY_DEFAULT;
}

static void h1_on_message(void *ctx, const struct h1_head *h, uint64_t bytes, unsigned mflags)
{
	struct h1_side *s = ctx;

	s->pos += bytes;
	s->m[s->n++].end = s->pos;
}

static void h1_on_error(void *ctx, enum h1_error err)
{
	struct h1_side *s = ctx;

	fprintf(stderr, "http1.c: error %s after %d messages\n", h1_error_name(err), s->n);
	s->errors++;
}

static void h1_on_incomplete(void *ctx, const struct h1_head *h, uint64_t bytes)
{
	struct h1_side *s = ctx;

	fprintf(stderr, "http1.c: incomplete message (%llu bytes) after %d messages\n",
		(unsigned long long)bytes, s->n);
	s->errors++;
}

static const struct h1_callbacks h1_cb = {
	.on_head = h1_on_head,
	.on_message = h1_on_message,
	.on_error = h1_on_error,
	.on_incomplete = h1_on_incomplete,
};

/* ---- http_parser side ---- */

struct hp_side {
	struct got_msg m[MAX_MSGS + 4];
	int n;
	size_t at;		/* offset of the byte being fed */
	size_t url_len;
};

static int hp_on_begin(http_parser *p)
{
	struct hp_side *s = p->data;

	CHECK(s->n < MAX_MSGS + 4);
	memset(&s->m[s->n], 0, sizeof(s->m[0]));
	s->url_len = 0;
	return 0;
}

static int hp_on_url(http_parser *p, const char *at, size_t len)
{
	struct hp_side *s = p->data;
	struct got_msg *m = &s->m[s->n];

	CHECK(s->url_len + len < sizeof(m->target));
	memcpy(m->target + s->url_len, at, len);
	s->url_len += len;
	m->target[s->url_len] = 0;
	return 0;
}

static int hp_on_headers(http_parser *p)
{
	struct hp_side *s = p->data;
	struct got_msg *m = &s->m[s->n];

	if (p->type == HTTP_REQUEST)
		snprintf(m->method, sizeof(m->method), "%s", http_method_str(p->method));
	m->status = p->type == HTTP_RESPONSE ? (int)p->status_code : 0;
	m->minor = p->http_minor;
	m->chunked = p->flags & F_CHUNKED;
	m->has_cl = p->flags & F_CONTENTLENGTH;
	m->cl = m->has_cl ? p->content_length : 0;
	m->close = p->http_minor ? !!(p->flags & F_CONNECTION_CLOSE) :
				   !(p->flags & F_CONNECTION_KEEP_ALIVE);
	return 0;
}

static int hp_on_complete(http_parser *p)
{
	struct hp_side *s = p->data;

	s->m[s->n++].end = s->at + 1;
	return 0;
}

static int hp_on_complete_eof(http_parser *p)
{
	struct hp_side *s = p->data;

	s->m[s->n++].end = s->at;	/* at EOF: everything fed */
	return 0;
}

static void fail(const char *what, int i, const struct gen *g)
{
	fprintf(stderr, "--- stream (%zu bytes) ---\n%.*s\n---\n", g->len,
		(int)(g->len > 4000 ? 4000 : g->len), g->out);
	check(false, __FILE__, __LINE__, "message %d: %s", i, what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char stream[STREAM_MAX];
	static struct h1_side hs;
	static struct hp_side ps;
	struct gen g = { .in = data, .n = size, .out = stream };
	enum h1_dir dir;
	struct h1_parser p;
	http_parser hp;
	http_parser_settings st;
	int msgs;
	size_t at;

	if (size < 2)
		return 0;
	dir = data[0] & 1 ? H1_RESPONSE : H1_REQUEST;
	msgs = 1 + (data[0] >> 1) % MAX_MSGS;
	g.in++;
	g.n--;
	for (int i = 0; i < msgs; i++) {
		struct gen_msg *m = &g.m[g.n_msgs++];

		memset(m, 0, sizeof(*m));
		m->start = g.len;
		if (dir == H1_REQUEST)
			gen_request(&g, m, i == msgs - 1);
		else
			gen_response(&g, m, i == msgs - 1);
		m->end = g.len;
	}

	/* http1.c: cut at points the rest of the input chooses */
	memset(&hs, 0, sizeof(hs));
	h1__init(&p, dir, &h1_cb, &hs);
	for (at = 0; at < g.len; ) {
		size_t k = 1 + u8(&g) * (g.n & 1 ? 1 : 37);

		if (k > g.len - at)
			k = g.len - at;
		h1__feed(&p, (const uint8_t *)stream + at, k, 0, NULL, 0);
		at += k;
	}
	h1__eof(&p);
	h1__free(&p);

	/* http_parser: one byte at a time, then EOF */
	memset(&ps, 0, sizeof(ps));
	http_parser_settings_init(&st);
	st.on_message_begin = hp_on_begin;
	st.on_url = hp_on_url;
	st.on_headers_complete = hp_on_headers;
	st.on_message_complete = hp_on_complete;
	http_parser_init(&hp, dir == H1_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
	hp.data = &ps;
	for (ps.at = 0; ps.at < g.len; ps.at++) {
		if (http_parser_execute(&hp, &st, stream + ps.at, 1) != 1 || HTTP_PARSER_ERRNO(&hp))
			fail(http_errno_description(HTTP_PARSER_ERRNO(&hp)), ps.n, &g);
	}
	st.on_message_complete = hp_on_complete_eof;
	http_parser_execute(&hp, &st, NULL, 0);
	if (HTTP_PARSER_ERRNO(&hp))
		fail(http_errno_description(HTTP_PARSER_ERRNO(&hp)), ps.n, &g);

	if (hs.errors)
		fail("http1.c reported an error on a valid stream", hs.n, &g);
	if (ps.n != g.n_msgs)
		fail("http_parser: message count differs from the generator's", ps.n, &g);
	if (hs.n != ps.n)
		fail("message count differs", hs.n, &g);
	for (int i = 0; i < hs.n; i++) {
		const struct got_msg *a = &hs.m[i], *b = &ps.m[i];
		const struct gen_msg *w = &g.m[i];

		if (a->end != b->end || a->end != w->end)
			fail("message boundary differs", i, &g);
		if (strcmp(a->method, b->method) || (dir == H1_REQUEST && strcmp(a->method, w->method)))
			fail("method differs", i, &g);
		if (strcmp(a->target, b->target) || (dir == H1_REQUEST && strcmp(a->target, w->target)))
			fail("request-target differs", i, &g);
		if (a->status != b->status || a->status != w->status)
			fail("status differs", i, &g);
		if (a->minor != b->minor || a->minor != w->minor)
			fail("HTTP version differs", i, &g);
		if (a->chunked != b->chunked || a->chunked != w->chunked)
			fail("chunked framing differs", i, &g);
		if (a->has_cl != b->has_cl || a->has_cl != w->has_cl ||
		    (a->has_cl && (a->cl != b->cl || a->cl != w->cl)))
			fail("Content-Length differs", i, &g);
		if (a->close != b->close)
			fail("Connection: close differs", i, &g);
	}
	return 0;
}
