// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "request/errors.h"
#include "base/log.h"
#include "sinks/otlp.h"
#include "otlp.pb-c.h"
#include "sinks/otlp_encode.h"
#include "base/clock.h"
#include "sinks/sender.h"


struct otlp {
	struct otlp_config c;
	struct record *q;		/* ring of max_queue records; exc copies owned */
	size_t q_head, q_len;
	struct sender *snd;
	size_t batch_n;			/* spans in the body the sender holds */
	uint64_t last_export_ns;
	struct otlp_stats st;
};

/* ---- configuration ---- */

static int env_uint(const char *name, unsigned *out, unsigned min)
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

int otlp_config_endpoint(struct otlp_config *c, const char *url, bool full)
{
	size_t l = strlen(url);

	if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
		return -EINVAL;
	while (!full && l && url[l - 1] == '/')
		l--;
	if (snprintf(c->traces_url, sizeof(c->traces_url), "%.*s%s", (int)l, url,
		     full ? "" : "/v1/traces") >= (int)sizeof(c->traces_url))
		return -EINVAL;
	return 0;
}

static int hexval(char ch)
{
	return isdigit((unsigned char)ch) ? ch - '0' : tolower((unsigned char)ch) - 'a' + 10;
}

int otlp_config_header(struct otlp_config *c, const char *kv)
{
	const char *eq = strchr(kv, '=');
	char *o;
	size_t kl;

	if (!eq || eq == kv || c->n_headers >= OTLP_MAX_HEADERS)
		return -EINVAL;
	while (isspace((unsigned char)*kv))
		kv++;
	kl = eq - kv;
	while (kl && isspace((unsigned char)kv[kl - 1]))
		kl--;
	if (!kl || kl + 3 + strlen(eq) >= sizeof(c->headers[0]))
		return -EINVAL;
	o = c->headers[c->n_headers];
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
	c->n_headers++;
	return 0;
}

static int env_headers(struct otlp_config *c, const char *name)
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
		err = otlp_config_header(c, tok);
	free(dup);
	if (err)
		fprintf(stderr, "obsd: invalid %s (want key=value,key2=value2)\n", name);
	return err;
}

int otlp_config_env(struct otlp_config *c)
{
	const char *v;
	int err = 0;

	memset(c, 0, sizeof(*c));
	c->delay_ms = 5000;
	c->max_batch = 512;
	c->max_queue = 2048;
	c->timeout_ms = 10000;
	if ((v = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) && *v)
		err = otlp_config_endpoint(c, v, true);
	else if ((v = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) && *v)
		err = otlp_config_endpoint(c, v, false);
	if (err) {
		fprintf(stderr, "obsd: invalid OTLP endpoint '%s' (want http(s)://host:port)\n", v);
		return err;
	}
	if ((v = getenv("OTEL_SERVICE_NAME")))
		snprintf(c->service_name, sizeof(c->service_name), "%s", v);
	err = env_headers(c, "OTEL_EXPORTER_OTLP_HEADERS") ?:
	      env_headers(c, "OTEL_EXPORTER_OTLP_TRACES_HEADERS") ?:
	      env_uint("OTEL_BSP_SCHEDULE_DELAY", &c->delay_ms, 1) ?:
	      env_uint("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &c->max_batch, 1) ?:
	      env_uint("OTEL_BSP_MAX_QUEUE_SIZE", &c->max_queue, 1) ?:
	      env_uint("OTEL_EXPORTER_OTLP_TIMEOUT", &c->timeout_ms, 1) ?:
	      env_uint("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", &c->timeout_ms, 1);
	return err;
}

/* ---- exporter ---- */

/* Read partial_success.rejected_spans from a protobuf answer, if any. */
static void count_partial(struct otlp *o, const char *resp, size_t len)
{
	Obs__Otlp__ExportTraceServiceResponse *r;

	if (!len)
		return;
	r = obs__otlp__export_trace_service_response__unpack(NULL, len, (const uint8_t *)resp);
	if (!r)
		return;
	if (r->partial_success && r->partial_success->rejected_spans > 0)
		o->st.spans_rejected_partial += r->partial_success->rejected_spans;
	obs__otlp__export_trace_service_response__free_unpacked(r, NULL);
}

static void on_done(void *ctx, bool delivered, const char *resp, size_t len)
{
	struct otlp *o = ctx;

	if (delivered) {
		o->st.spans_exported += o->batch_n;
		count_partial(o, resp, len);
	} else {
		o->st.spans_dropped_export += o->batch_n;
	}
	o->batch_n = 0;
	o->last_export_ns = mono_ns();
}

struct otlp *otlp__new(const struct otlp_config *c)
{
	struct otlp *o = calloc(1, sizeof(*o));
	const char *hdrs[OTLP_MAX_HEADERS + 1] = { "Content-Type: application/x-protobuf" };

	if (!o)
		return NULL;
	o->c = *c;
	if (o->c.max_batch > o->c.max_queue)
		o->c.max_batch = o->c.max_queue;
	for (int i = 0; i < o->c.n_headers; i++)
		hdrs[i + 1] = o->c.headers[i];
	o->q = calloc(o->c.max_queue, sizeof(*o->q));
	o->snd = sender__new("otlp", o->c.traces_url, hdrs, o->c.n_headers + 1, o->c.timeout_ms,
			     on_done, o);
	if (!o->q || !o->snd) {
		sender__free(o->snd);
		free(o->q);
		free(o);
		errno = ENOMEM;
		return NULL;
	}
	o->last_export_ns = mono_ns();
	return o;
}

void otlp__span(void *ctx, const struct record *r)
{
	struct otlp *o = ctx;
	struct record *slot;

	if (!r->sampled)
		return;
	if (o->q_len >= o->c.max_queue) {
		o->st.spans_dropped_queue++;
		return;
	}
	slot = &o->q[(o->q_head + o->q_len) % o->c.max_queue];
	*slot = *r;
	if (r->exc) {	/* the sink's pointer dies with the call: keep a copy */
		struct exc_info *x = malloc(sizeof(*x));

		if (x)
			memcpy(x, r->exc, sizeof(*x));
		slot->exc = x;
	}
	o->q_len++;
	o->st.spans_queued++;
	o->st.queue_len = o->q_len;
}

/* Take up to max_batch spans off the queue, encode and hand them over. */
static void send_batch(struct otlp *o)
{
	size_t n = o->q_len < o->c.max_batch ? o->q_len : o->c.max_batch;
	const struct record **recs = calloc(n, sizeof(*recs));
	uint8_t *body = NULL;
	size_t len = 0;
	int err = -ENOMEM;

	if (recs) {
		for (size_t i = 0; i < n; i++)
			recs[i] = &o->q[(o->q_head + i) % o->c.max_queue];
		err = otlp_encode(recs, n, o->c.service_name, &body, &len);
		free(recs);
	}
	if (err) {
		sender__error(o->snd, SEND_E_ENCODE, strerror(-err));
		return;	/* the spans stay queued; the queue bound still holds */
	}
	for (size_t i = 0; i < n; i++) {
		struct record *r = &o->q[(o->q_head + i) % o->c.max_queue];

		free((void *)r->exc);
		r->exc = NULL;
	}
	o->q_head = (o->q_head + n) % o->c.max_queue;
	o->q_len -= n;
	o->st.queue_len = o->q_len;
	o->batch_n = n;
	o->st.batches++;
	sender__send(o->snd, body, len);
}

void otlp__poll(struct otlp *o)
{
	sender__poll(o->snd);
	if (!sender__idle(o->snd) || !o->q_len)
		return;
	if (o->q_len >= o->c.max_batch ||
	    mono_ns() - o->last_export_ns >= (uint64_t)o->c.delay_ms * 1000000ull)
		send_batch(o);
}

const struct otlp_stats *otlp__stats(const struct otlp *o)
{
	return &o->st;
}

const struct sender_stats *otlp__sender_stats(const struct otlp *o)
{
	return sender__stats(o->snd);
}

void otlp__flush(struct otlp *o, unsigned timeout_ms)
{
	uint64_t end = mono_ns() + (uint64_t)timeout_ms * 1000000ull;

	if (!o || !sender__healthy(o->snd))
		return;	/* the collector is failing: waiting would only delay exit */
	o->c.delay_ms = 0;	/* send whatever is queued now */
	while ((o->q_len || !sender__idle(o->snd)) && mono_ns() < end) {
		uint64_t left = (end - mono_ns()) / 1000000ull;

		otlp__poll(o);
		sender__drain(o->snd, left < 200 ? (unsigned)left : 200);
	}
}

void otlp__free(struct otlp *o)
{
	if (!o)
		return;
	sender__free(o->snd);
	for (size_t i = 0; i < o->q_len; i++)
		free((void *)o->q[(o->q_head + i) % o->c.max_queue].exc);
	free(o->q);
	free(o);
}
