// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/clock.h"
#include "sinks/otlp_export.h"
#include "sinks/sender.h"

#define FLUSH_STEP_MS	200	/* longest single wait of a flush */

/* ---- configuration ---- */

int otlp_url(char *out, const char *url, bool full, const char *path)
{
	size_t l = strlen(url);

	if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
		return -EINVAL;
	while (!full && l && url[l - 1] == '/')
		l--;
	if (snprintf(out, OTLP_URL_MAX, "%.*s%s", (int)l, url, full ? "" : path) >= OTLP_URL_MAX)
		return -EINVAL;
	return 0;
}

static int hexval(char ch)
{
	return isdigit((unsigned char)ch) ? ch - '0' : tolower((unsigned char)ch) - 'a' + 10;
}

int otlp_header_add(char (*headers)[OTLP_HEADER_MAX], int *n, const char *kv)
{
	const char *eq = strchr(kv, '=');
	char *o;
	size_t kl;

	if (!eq || eq == kv || *n >= OTLP_MAX_HEADERS)
		return -EINVAL;
	while (isspace((unsigned char)*kv))
		kv++;
	kl = eq - kv;
	while (kl && isspace((unsigned char)kv[kl - 1]))
		kl--;
	if (!kl || kl + 3 + strlen(eq) >= OTLP_HEADER_MAX)
		return -EINVAL;
	o = headers[*n];
	o += sprintf(o, "%.*s: ", (int)kl, kv);
	for (const char *p = eq + 1; *p; p++) {	/* %-decode, reject CR/LF */
		char ch = *p;

		if (ch == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
			ch = hexval(p[1]) << 4 | hexval(p[2]);
			p += 2;
		}
		if (ch == '\r' || ch == '\n' || ch == 0)
			return -EINVAL;
		*o++ = ch;
	}
	*o = 0;
	(*n)++;
	return 0;
}

int otlp_env_headers(char (*headers)[OTLP_HEADER_MAX], int *n, const char *name)
{
	const char *v = getenv(name);
	char *dup, *tok, *save;
	int err = 0;

	if (!v || !*v)
		return 0;
	dup = strdup(v);
	if (!dup)
		return -ENOMEM;
	for (tok = strtok_r(dup, ",", &save); tok && !err; tok = strtok_r(NULL, ",", &save))
		err = otlp_header_add(headers, n, tok);
	free(dup);
	if (err)
		fprintf(stderr, "obsd: invalid %s (want key=value,key2=value2)\n", name);
	return err;
}

int otlp_env_uint(const char *name, unsigned *out, unsigned min)
{
	const char *v = getenv(name);
	char *end;
	unsigned long x;

	if (!v || !*v)
		return 0;
	x = strtoul(v, &end, 10);
	if (*end || v[0] == '-' || x < min || x > 100000000) {
		fprintf(stderr, "obsd: invalid %s='%s' (want an integer >= %u)\n", name, v, min);
		return -EINVAL;
	}
	*out = x;
	return 0;
}

/* ---- the queue ---- */

int otlp_queue__init(struct otlp_queue *q, size_t size, size_t cap)
{
	memset(q, 0, sizeof(*q));
	q->items = calloc(cap, size);
	if (!q->items)
		return -ENOMEM;
	q->size = size;
	q->cap = cap;
	return 0;
}

void *otlp_queue__push(struct otlp_queue *q)
{
	if (q->len >= q->cap)
		return NULL;
	return q->items + ((q->head + q->len++) % q->cap) * q->size;
}

void *otlp_queue__at(const struct otlp_queue *q, size_t i)
{
	return q->items + ((q->head + i) % q->cap) * q->size;
}

void otlp_queue__pop(struct otlp_queue *q, size_t n)
{
	q->head = (q->head + n) % q->cap;
	q->len -= n;
}

void otlp_queue__fini(struct otlp_queue *q)
{
	free(q->items);
	q->items = NULL;
	q->len = 0;
}

/* ---- the export ---- */

static void on_done(void *ctx, bool delivered, const char *resp, size_t len)
{
	struct otlp_export *x = ctx;
	size_t n = x->sending;

	x->sending = 0;
	x->last_export_ns = mono_ns();
	x->done(x->ctx, delivered, n, resp, len);
}

int otlp_export__init(struct otlp_export *x, const char *name, const char *url,
		      const char (*headers)[OTLP_HEADER_MAX], int n_headers, unsigned timeout_ms,
		      otlp_done_fn done, void *ctx)
{
	const char *hdrs[OTLP_MAX_HEADERS + 1] = { "Content-Type: application/x-protobuf" };

	memset(x, 0, sizeof(*x));
	for (int i = 0; i < n_headers && i < OTLP_MAX_HEADERS; i++)
		hdrs[i + 1] = headers[i];
	x->done = done;
	x->ctx = ctx;
	x->snd = sender__new(name, url, hdrs, n_headers + 1, timeout_ms, on_done, x);
	if (!x->snd)
		return -ENOMEM;
	x->last_export_ns = mono_ns();
	return 0;
}

bool otlp_export__due(struct otlp_export *x, size_t queued, size_t batch, unsigned delay_ms)
{
	sender__poll(x->snd);
	if (!sender__idle(x->snd) || !queued)
		return false;
	return queued >= batch || mono_ns() - x->last_export_ns >= (uint64_t)delay_ms * 1000000ull;
}

void otlp_export__send(struct otlp_export *x, uint8_t *body, size_t len, size_t n)
{
	x->sending = n;
	sender__send(x->snd, body, len);
}

void otlp_export__encode_error(struct otlp_export *x, int err)
{
	sender__error(x->snd, SEND_E_ENCODE, strerror(err < 0 ? -err : err));
}

void otlp_export__flush(struct otlp_export *x, unsigned timeout_ms, void (*poll)(void *ctx),
			bool (*pending)(void *ctx), void *ctx)
{
	uint64_t end = mono_ns() + (uint64_t)timeout_ms * 1000000ull;

	while ((pending(ctx) || !sender__idle(x->snd)) && sender__healthy(x->snd) &&
	       mono_ns() < end) {
		uint64_t left = (end - mono_ns()) / 1000000ull;

		poll(ctx);
		sender__drain(x->snd, left < FLUSH_STEP_MS ? (unsigned)left : FLUSH_STEP_MS);
	}
}

void otlp_export__fini(struct otlp_export *x)
{
	sender__free(x->snd);
	x->snd = NULL;
}
