// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "errors.h"
#include "log.h"
#include "otlp.h"
#include "otlp.pb-c.h"
#include "otlp_encode.h"
#include "pipeline.h"

#define BACKOFF_FIRST_MS	1000
#define RESPONSE_MAX		4096	/* bytes of a collector's answer kept */

struct otlp {
	struct otlp_config c;
	struct record *q;		/* ring of max_queue records */
	size_t q_head, q_len;
	CURLM *multi;
	CURL *easy;			/* non-NULL while a request is in flight */
	struct curl_slist *hdrs;
	uint8_t *body;			/* encoded batch being sent or retried */
	size_t body_len, batch_n;
	unsigned attempts;
	uint64_t retry_at_ns;		/* 0: not waiting to retry */
	uint64_t last_export_ns;
	char resp[RESPONSE_MAX];
	size_t resp_len;
	unsigned logged;		/* otlp_err bits already logged */
	struct otlp_stats st;
};

static const char *const err_names[OTLP_E_MAX] = {
	[OTLP_E_CONNECT] = "connect", [OTLP_E_RETRYABLE] = "retryable_status",
	[OTLP_E_REJECTED] = "rejected", [OTLP_E_GAVE_UP] = "gave_up", [OTLP_E_ENCODE] = "encode",
};

const char *otlp_err_name(enum otlp_err e)
{
	return e < OTLP_E_MAX ? err_names[e] : "unknown";
}

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

struct otlp *otlp__new(const struct otlp_config *c)
{
	struct otlp *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->c = *c;
	if (o->c.max_batch > o->c.max_queue)
		o->c.max_batch = o->c.max_queue;
	o->q = calloc(o->c.max_queue, sizeof(*o->q));
	if (!o->q || curl_global_init(CURL_GLOBAL_DEFAULT))
		goto out_free;
	o->multi = curl_multi_init();
	if (!o->multi)
		goto out_free;
	o->hdrs = curl_slist_append(NULL, "Content-Type: application/x-protobuf");
	for (int i = 0; i < o->c.n_headers; i++)
		o->hdrs = curl_slist_append(o->hdrs, o->c.headers[i]);
	o->last_export_ns = mono_ns();
	return o;

out_free:
	free(o->q);
	free(o);
	errno = ENOMEM;
	return NULL;
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

static void log_once(struct otlp *o, enum otlp_err e, const char *detail)
{
	o->st.errors[e]++;
	if (o->logged & (1u << e))
		return;
	o->logged |= 1u << e;
	pr_warn("otlp: export to %s failed (%s): %s (further errors of this kind are only counted)",
		o->c.traces_url, err_names[e], detail);
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
	struct otlp *o = ctx;
	size_t len = size * n, room = RESPONSE_MAX - 1 - o->resp_len;

	memcpy(o->resp + o->resp_len, data, len < room ? len : room);
	o->resp_len += len < room ? len : room;
	return len;
}

/* Take up to max_batch spans off the queue and encode them. */
static int next_batch(struct otlp *o)
{
	size_t n = o->q_len < o->c.max_batch ? o->q_len : o->c.max_batch;
	const struct record **recs = calloc(n, sizeof(*recs));
	int err;

	if (!recs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		recs[i] = &o->q[(o->q_head + i) % o->c.max_queue];
	err = otlp_encode(recs, n, o->c.service_name, &o->body, &o->body_len);
	free(recs);
	if (err) {
		log_once(o, OTLP_E_ENCODE, strerror(-err));
		return err;
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
	o->attempts = 0;
	return 0;
}

static void start_request(struct otlp *o)
{
	CURL *e = curl_easy_init();

	if (!e)
		return;
	curl_easy_setopt(e, CURLOPT_URL, o->c.traces_url);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, o->hdrs);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->c.timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->c.timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, o);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "obs/" OBS_VERSION);
	o->resp_len = 0;
	o->easy = e;
	o->attempts++;
	o->st.batches++;
	curl_multi_add_handle(o->multi, e);
}

static void batch_done(struct otlp *o)
{
	free(o->body);
	o->body = NULL;
	o->body_len = 0;
	o->batch_n = 0;
	o->retry_at_ns = 0;
	o->last_export_ns = mono_ns();
}

/* Read partial_success.rejected_spans from a protobuf answer, if any. */
static void count_partial(struct otlp *o)
{
	Obs__Otlp__ExportTraceServiceResponse *r;

	if (!o->resp_len)
		return;
	r = obs__otlp__export_trace_service_response__unpack(NULL, o->resp_len,
							     (uint8_t *)o->resp);
	if (!r)
		return;
	if (r->partial_success && r->partial_success->rejected_spans > 0)
		o->st.spans_rejected_partial += r->partial_success->rejected_spans;
	obs__otlp__export_trace_service_response__free_unpacked(r, NULL);
}

static void finish_request(struct otlp *o, CURLcode res)
{
	long code = 0;
	char detail[128];
	bool retry = false;

	curl_easy_getinfo(o->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(o->multi, o->easy);
	curl_easy_cleanup(o->easy);
	o->easy = NULL;
	if (res == CURLE_OK && code >= 200 && code < 300) {
		o->st.spans_exported += o->batch_n;
		count_partial(o);
		o->logged = 0;	/* healthy again: log the next failure */
		batch_done(o);
		return;
	}
	if (res != CURLE_OK) {
		snprintf(detail, sizeof(detail), "%s", curl_easy_strerror(res));
		log_once(o, OTLP_E_CONNECT, detail);
		retry = true;
	} else if (code == 429 || code == 502 || code == 503 || code == 504) {
		snprintf(detail, sizeof(detail), "HTTP %ld", code);
		log_once(o, OTLP_E_RETRYABLE, detail);
		retry = true;
	} else {
		snprintf(detail, sizeof(detail), "HTTP %ld", code);
		log_once(o, OTLP_E_REJECTED, detail);
	}
	if (retry && o->attempts < OTLP_MAX_ATTEMPTS) {
		o->retry_at_ns = mono_ns() + (uint64_t)BACKOFF_FIRST_MS * 1000000ull *
						     (1u << (o->attempts - 1));
		return;
	}
	if (retry)
		log_once(o, OTLP_E_GAVE_UP, "retries exhausted, batch dropped");
	o->st.spans_dropped_export += o->batch_n;
	batch_done(o);
}

void otlp__poll(struct otlp *o)
{
	uint64_t now = mono_ns();
	CURLMsg *msg;
	int running, left;

	if (o->easy) {
		curl_multi_perform(o->multi, &running);
		while ((msg = curl_multi_info_read(o->multi, &left)))
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == o->easy)
				finish_request(o, msg->data.result);
		if (o->easy)
			return;
	}
	if (o->body) {	/* a batch waiting for its retry */
		if (now >= o->retry_at_ns)
			start_request(o);
	} else if (o->q_len &&
		   (o->q_len >= o->c.max_batch ||
		    now - o->last_export_ns >= (uint64_t)o->c.delay_ms * 1000000ull)) {
		if (!next_batch(o))
			start_request(o);
	}
	if (o->easy)
		curl_multi_perform(o->multi, &running);
}

const struct otlp_stats *otlp__stats(const struct otlp *o)
{
	return &o->st;
}

void otlp__flush(struct otlp *o, unsigned timeout_ms)
{
	uint64_t end = mono_ns() + (uint64_t)timeout_ms * 1000000ull;

	if (!o)
		return;
	o->c.delay_ms = 0;	/* send whatever is queued now */
	while ((o->q_len || o->easy || o->body) && mono_ns() < end) {
		int fds;

		if (o->body && !o->easy && o->retry_at_ns > end)
			break;	/* next retry is past the deadline */
		otlp__poll(o);
		curl_multi_wait(o->multi, NULL, 0, 50, &fds);
	}
}

void otlp__free(struct otlp *o)
{
	if (!o)
		return;
	if (o->easy) {
		curl_multi_remove_handle(o->multi, o->easy);
		curl_easy_cleanup(o->easy);
	}
	curl_multi_cleanup(o->multi);
	curl_slist_free_all(o->hdrs);
	free(o->body);
	for (size_t i = 0; i < o->q_len; i++)
		free((void *)o->q[(o->q_head + i) % o->c.max_queue].exc);
	free(o->q);
	free(o);
	curl_global_cleanup();
}
