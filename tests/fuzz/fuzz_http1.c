// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for user/proto/http1.c.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iuser \
 *         tests/fuzz/fuzz_http1.c user/proto/http1.c -o build/fuzz_http1
 *
 * Input: byte 0 = options, bytes 1..8 = seed of the segmenter, the rest =
 * the stream. For each direction the stream is cut into segments, some with
 * uncaptured middles (gaps), some pure sendfile gaps, with the odd
 * h1__lost()/h1__eof() in between, and after every call the parser must
 * account for every byte fed: message bytes + incomplete bytes + skipped
 * bytes + the message in progress == bytes fed (<= after a stop). Callbacks
 * must pair up (one on_head, then one on_message/on_incomplete), heads must
 * be sane. Then the stream is fed once whole and once cut without gaps: when
 * the whole feed reports no error, both must give the same callbacks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http1.h"

#define CHECK_ABORT	/* a failed check aborts: libFuzzer keeps the input */
#include "check.h"

#define MAX_EVENTS	4096
#define OPT_STOP	0x01	/* on_head sometimes answers H1_BODY_STOP */
#define OPT_NONE	0x02	/* on_head sometimes answers H1_BODY_NONE */
#define OPT_LOST	0x04	/* call h1__lost() now and then */
#define OPT_EOF		0x08	/* call h1__eof() now and then */
#define OPT_NOGAP	0x10	/* no gaps in the first pass */

struct fz_ev {
	uint64_t bytes;
	uint64_t hash;		/* of the head */
	uint32_t mflags;
	uint8_t type;
	uint8_t err;
	uint16_t pad;		/* no implicit padding: events are compared with memcmp */
};

struct fz {
	const struct h1_parser *p;
	uint8_t opts;
	bool open;		/* a head was reported, its message not ended */
	bool stopped;		/* on_head said H1_BODY_STOP: ignored bytes are never counted */
	uint64_t heads;
	uint64_t msgs;		/* on_message calls */
	uint64_t msg_bytes;
	uint64_t inc_bytes;
	uint64_t errors;
	struct fz_ev ev[MAX_EVENTS];
	size_t n_ev;
	bool overflow;
};

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
	const uint8_t *b = d;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

/* A head must be NUL-terminated everywhere and consistent with its direction. */
static uint64_t head_check(const struct fz *f, const struct h1_head *h)
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
	CHECK(h->version_minor == 0 || h->version_minor == 1);
	CHECK(!(f->p->dir == H1_REQUEST && (h->status || !h->method[0] || !h->target[0])));
	CHECK(!(f->p->dir == H1_RESPONSE && (h->status < 100 || h->status > 999 || h->method[0])));
	CHECK(!((h->flags & H1F_HAS_CL) ? h->content_length > (1ULL << 62) : h->content_length));
	x = fnv(x, h->method, strlen(h->method));
	x = fnv(x, h->target, strlen(h->target));
	x = fnv(x, h->host, strlen(h->host));
	x = fnv(x, h->user_agent, strlen(h->user_agent));
	x = fnv(x, h->content_type, strlen(h->content_type));
	x = fnv(x, h->traceparent, strlen(h->traceparent));
	x = fnv(x, &h->status, sizeof(h->status));
	x = fnv(x, &h->flags, sizeof(h->flags));
	x = fnv(x, &h->head_bytes, sizeof(h->head_bytes));
	return fnv(x, &h->content_length, sizeof(h->content_length));
}

static void ev_add(struct fz *f, uint8_t type, uint64_t bytes, uint32_t mflags, uint8_t err,
		   uint64_t hash)
{
	if (f->n_ev == MAX_EVENTS) {
		f->overflow = true;
		return;
	}
	f->ev[f->n_ev++] = (struct fz_ev){ bytes, hash, mflags, type, err, 0 };
}

static enum h1_body_hint fz_head(void *ctx, const struct h1_head *h)
{
	struct fz *f = ctx;
	uint64_t n = f->heads++;

	CHECK(!f->open);
	f->open = true;
	ev_add(f, 'H', 0, 0, 0, head_check(f, h));
	if ((f->opts & OPT_STOP) && (h->status == 101 || n % 11 == 7)) {
		f->stopped = true;
		return H1_BODY_STOP;
	}
	if ((f->opts & OPT_NONE) && n % 3 == 1)
		return H1_BODY_NONE;
	return H1_BODY_DEFAULT;
}

static void fz_message(void *ctx, const struct h1_head *h, uint64_t bytes, unsigned int mflags)
{
	struct fz *f = ctx;

	CHECK(!(!f->open || (mflags & ~0xfu) || bytes < h->head_bytes));
	f->open = false;
	f->msgs++;
	f->msg_bytes += bytes;
	ev_add(f, 'M', bytes, mflags, 0, head_check(f, h));
}

static void fz_error(void *ctx, enum h1_error err)
{
	struct fz *f = ctx;

	CHECK(!(f->open || err < H1E_BAD_START || err >= H1E_MAX));
	f->errors++;
	ev_add(f, 'E', 0, 0, err, 0);
}

static void fz_incomplete(void *ctx, const struct h1_head *h, uint64_t bytes)
{
	struct fz *f = ctx;

	CHECK(f->open == (h != NULL) && bytes);
	f->open = false;
	f->inc_bytes += bytes;
	ev_add(f, 'I', bytes, 0, 0, h ? head_check(f, h) : 0);
}

static const struct h1_callbacks fz_cb = {
	.on_head = fz_head,
	.on_message = fz_message,
	.on_error = fz_error,
	.on_incomplete = fz_incomplete,
};

/* Every byte fed is in a message, an incomplete report, skipped, or in progress. */
static void account_check(const struct fz *f, const struct h1_parser *p, uint64_t fed)
{
	uint64_t seen = f->msg_bytes + f->inc_bytes + p->skipped_bytes + p->msg_bytes;

	CHECK(!(p->stopped && !f->stopped));
	CHECK(!(f->stopped ? seen > fed : seen != fed));
	CHECK(p->messages == f->msgs);
}

/* Feed one segment made of data[0..n): a captured head, a gap, a captured tail. */
static uint64_t feed_segment(struct h1_parser *p, const uint8_t *d, size_t n, bool gaps)
{
	size_t h = n, t = 0;
	uint8_t *hb, *tb;
	uint64_t gap;

	if (gaps && !(rng() % 4)) {
		h = rng() % (n + 1);
		t = rng() % (n - h + 1);
	}
	gap = n - h - t;
	hb = h ? malloc(h) : NULL;
	tb = t ? malloc(t) : NULL;
	CHECK(!((h && !hb) || (t && !tb)));
	if (h)
		memcpy(hb, d, h);
	if (t)
		memcpy(tb, d + n - t, t);
	h1__feed(p, hb, h, gap, tb, t);
	free(hb);
	free(tb);
	return n;
}

static size_t seg_len(size_t left)
{
	static const size_t max[] = { 4, 64, 1024, SIZE_MAX };
	size_t m = max[rng() % 4];

	m = m < left ? m : left;
	return 1 + rng() % m;
}

/* First pass: gaps, sendfile segments, losses and EOFs; accounting after every call. */
static void pass_gaps(struct fz *f, enum h1_dir dir, const uint8_t *d, size_t n)
{
	struct h1_parser p;
	uint64_t fed = 0, extra;
	size_t at = 0, k;

	h1__init(&p, dir, &fz_cb, f);
	f->p = &p;
	while (at < n) {
		if ((f->opts & OPT_LOST) && !(rng() % 32)) {
			h1__lost(&p);
			account_check(f, &p, fed);
			CHECK(!f->open);
		}
		if ((f->opts & OPT_EOF) && !(rng() % 64)) {
			h1__eof(&p);
			account_check(f, &p, fed);
			CHECK(!(p.msg_bytes || f->open));
		}
		if (!(f->opts & OPT_NOGAP) && !(rng() % 16)) {
			extra = rng() % 20000;
			h1__feed(&p, NULL, 0, extra, NULL, 0);
			fed += extra;
			account_check(f, &p, fed);
		}
		k = seg_len(n - at);
		fed += feed_segment(&p, d + at, k, !(f->opts & OPT_NOGAP));
		at += k;
		account_check(f, &p, fed);
	}
	h1__eof(&p);
	account_check(f, &p, fed);
	CHECK(!(p.msg_bytes || f->open || p.buf));
	h1__free(&p);
}

/* Feed d[0..n) whole (cut = false) or in random gap-free pieces; then EOF. */
static void pass_plain(struct fz *f, enum h1_dir dir, const uint8_t *d, size_t n, bool cut)
{
	struct h1_parser p;
	size_t at = 0, k;

	h1__init(&p, dir, &fz_cb, f);
	f->p = &p;
	while (at < n) {
		k = cut ? seg_len(n - at) : n;
		feed_segment(&p, d + at, k, false);
		at += k;
		account_check(f, &p, at);
	}
	h1__eof(&p);
	account_check(f, &p, n);
	h1__free(&p);
}

static void fz_reset(struct fz *f, uint8_t opts)
{
	memset(f, 0, sizeof(*f));
	f->opts = opts;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz a, b;
	uint8_t opts;
	uint64_t seed = 0;
	int dir;

	if (size < 9)
		return 0;
	opts = data[0];
	memcpy(&seed, data + 1, 8);
	data += 9;
	size -= 9;
	for (dir = H1_REQUEST; dir <= H1_RESPONSE; dir++) {
		rng_state = seed | 1;
		fz_reset(&a, opts);
		pass_gaps(&a, dir, data, size);

		fz_reset(&a, opts);
		pass_plain(&a, dir, data, size, false);
		fz_reset(&b, opts);
		pass_plain(&b, dir, data, size, true);
		if (a.errors || a.overflow || b.overflow)
			continue;
		CHECK(!(a.n_ev != b.n_ev || memcmp(a.ev, b.ev, a.n_ev * sizeof(a.ev[0]))));
	}
	return 0;
}
