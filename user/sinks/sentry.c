// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "base/ids.h"
#include "base/json.h"
#include "sinks/otlp_encode.h"
#include "base/clock.h"
#include "sinks/sender.h"
#include "request/sink.h"
#include "sinks/sentry.h"

struct sentry {
	struct sentry_config c;
	struct sender *snd;
	char *q[SENTRY_QUEUE_MAX];	/* rendered envelopes, FIFO */
	size_t q_len[SENTRY_QUEUE_MAX];
	size_t head, n;
	char host[256];
	struct sentry_stats st;
};

int sentry_parse_dsn(const char *dsn, char *url, size_t url_len, char *key, size_t key_len)
{
	const char *scheme_end = strstr(dsn, "://"), *at, *host, *slash, *project;
	size_t kl;

	if (!scheme_end || (strncmp(dsn, "http://", 7) && strncmp(dsn, "https://", 8)))
		return -EINVAL;
	at = strchr(scheme_end + 3, '@');
	slash = at ? strchr(at, '/') : NULL;
	if (!at || !slash)
		return -EINVAL;
	project = strrchr(dsn, '/') + 1;
	if (!*project || strspn(project, "0123456789") != strlen(project))
		return -EINVAL;
	kl = strcspn(scheme_end + 3, ":@");	/* public key, before an optional :secret */
	if (!kl || kl >= key_len)
		return -EINVAL;
	memcpy(key, scheme_end + 3, kl);
	key[kl] = 0;
	host = at + 1;
	/* {scheme}://{host}{path}/api/{project}/envelope/ */
	if (snprintf(url, url_len, "%.*s%.*s/api/%s/envelope/", (int)(scheme_end + 3 - dsn), dsn,
		     (int)(project - 1 - host), host, project) >= (int)url_len)
		return -EINVAL;
	return 0;
}

void sentry_config_init(struct sentry_config *c)
{
	memset(c, 0, sizeof(*c));
	c->sample_rate = 1.0;
}

static void on_done(void *ctx, bool delivered, const char *resp, size_t len)
{
	struct sentry *s = ctx;

	if (delivered)
		s->st.sent++;
	else
		s->st.dropped_send++;
}

struct sentry *sentry__new(const struct sentry_config *c)
{
	struct sentry *s = calloc(1, sizeof(*s));
	char url[600], key[128], auth[256];
	const char *hdrs[2] = { "Content-Type: application/x-sentry-envelope", auth };

	if (!s)
		return NULL;
	s->c = *c;
	if (sentry_parse_dsn(c->dsn, url, sizeof(url), key, sizeof(key))) {
		fprintf(stderr, "obsd: invalid SENTRY_DSN (want https://KEY@HOST/PROJECT_ID)\n");
		free(s);
		errno = EINVAL;
		return NULL;
	}
	snprintf(auth, sizeof(auth),
		 "X-Sentry-Auth: Sentry sentry_version=7, sentry_client=obs/" OBS_VERSION
		 ", sentry_key=%s", key);
	s->snd = sender__new("sentry", url, hdrs, 2, 10000, on_done, s);
	if (!s->snd) {
		free(s);
		return NULL;
	}
	gethostname(s->host, sizeof(s->host) - 1);
	return s;
}

static void rfc3339_now(char *out, size_t n)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

static void exception_json(const struct exc_info *x, struct jbuf *jb)
{
	jb_key(jb, "exception");
	jb_obj_open(jb);
	jb_arr_open(jb, "values");
	jb_obj_open(jb);
	jb_str(jb, "type", x->type);
	jb_str(jb, "value", x->message);
	jb_key(jb, "mechanism");
	jb_obj_open(jb);
	jb_str(jb, "type", "obs.traceback");
	jb_bool(jb, "handled", false);
	jb_obj_close(jb);
	jb_key(jb, "stacktrace");
	jb_obj_open(jb);
	jb_arr_open(jb, "frames");	/* oldest first, as Python prints them */
	for (int i = 0; i < x->n_frames; i++) {
		const char *f = x->frames[i].file;
		const char *base = strrchr(f, '/');

		jb_obj_open(jb);
		jb_str(jb, "filename", base ? base + 1 : f);
		jb_str(jb, "abs_path", f);
		jb_str(jb, "function", x->frames[i].function);
		jb_u64(jb, "lineno", x->frames[i].line);
		jb_bool(jb, "in_app", !strstr(f, "/site-packages/") && !strstr(f, "/dist-packages/") &&
					      !strstr(f, "/lib/python"));
		jb_obj_close(jb);
	}
	jb_arr_close(jb);
	jb_obj_close(jb);
	jb_obj_close(jb);
	jb_arr_close(jb);
	jb_obj_close(jb);
}

static void request_json(const struct record *r, struct jbuf *jb)
{
	char url[H1_HOST_MAX + REC_PATH_MAX + 16], ip[REC_ADDR_MAX];
	const char *colon = r->transport == REC_UNIX ? NULL : strrchr(r->client, ':');
	const char *host = r->host[0] ? r->host : r->transport == REC_UNIX ? "localhost" : r->server;

	/* a UNIX peer has no address: no REMOTE_ADDR */
	snprintf(url, sizeof(url), "http://%s%s", host, r->path);
	snprintf(ip, sizeof(ip), "%.*s", colon ? (int)(colon - r->client) : 0, r->client);
	jb_key(jb, "request");
	jb_obj_open(jb);
	jb_str(jb, "method", r->method);
	jb_str(jb, "url", url);	/* never the query string */
	jb_key(jb, "headers");
	jb_obj_open(jb);
	if (r->host[0])
		jb_str(jb, "Host", r->host);
	if (r->user_agent[0])
		jb_str(jb, "User-Agent", r->user_agent);
	if (r->content_type[0])
		jb_str(jb, "Content-Type", r->content_type);
	jb_obj_close(jb);
	jb_key(jb, "env");
	jb_obj_open(jb);
	jb_str(jb, "REMOTE_ADDR", ip);
	jb_obj_close(jb);
	jb_obj_close(jb);
}

/* The event payload (Sentry's event schema). */
static void event_json(struct sentry *s, const struct record *r, const struct exc_info *x,
		       const char *id, const char *ts, struct jbuf *jb)
{
	char hex[33], status[8], msg[REC_PATH_MAX + 64];

	jb_obj_open(jb);
	jb_str(jb, "event_id", id);
	jb_str(jb, "timestamp", ts);
	jb_str(jb, "platform", "python");
	jb_str(jb, "level", "error");
	jb_str(jb, "logger", "obs");
	jb_str(jb, "server_name", s->host);
	if (s->c.environment[0])
		jb_str(jb, "environment", s->c.environment);
	if (s->c.release[0])
		jb_str(jb, "release", s->c.release);
	jb_key(jb, "sdk");
	jb_obj_open(jb);
	jb_str(jb, "name", "obs");
	jb_str(jb, "version", OBS_VERSION);
	jb_obj_close(jb);
	if (x) {
		exception_json(x, jb);
	} else if (r) {
		snprintf(msg, sizeof(msg), "%s %s: %s", r->method, r->path,
			 r->outcome != REC_OK ? r->error : "server error");
		jb_key(jb, "message");
		jb_obj_open(jb);
		jb_str(jb, "formatted", msg);
		jb_obj_close(jb);
	}
	if (!r) {
		jb_obj_close(jb);
		return;
	}
	jb_str(jb, "transaction", r->route[0] ? r->route : r->path);
	request_json(r, jb);
	snprintf(status, sizeof(status), "%d", r->status);
	jb_key(jb, "tags");
	jb_obj_open(jb);
	jb_str(jb, "service", r->service);
	jb_str(jb, "route", r->route);
	jb_str(jb, "http.status_code", status);
	jb_str(jb, "outcome", r->outcome == REC_OK ? "ok" : r->error);
	jb_obj_close(jb);
	jb_key(jb, "contexts");
	jb_obj_open(jb);
	jb_key(jb, "trace");
	jb_obj_open(jb);
	ids_hex(hex, r->trace_id, 16);
	jb_str(jb, "trace_id", hex);
	ids_hex(hex, r->span_id, 8);
	jb_str(jb, "span_id", hex);
	if (r->has_parent) {
		ids_hex(hex, r->parent_span_id, 8);
		jb_str(jb, "parent_span_id", hex);
	}
	jb_str(jb, "op", "http.server");
	jb_str(jb, "status", "internal_error");
	jb_obj_close(jb);
	jb_obj_close(jb);
	jb_key(jb, "extra");
	jb_obj_open(jb);
	jb_str(jb, "request_id", r->request_id);
	jb_u64(jb, "pid", r->pid);
	jb_u64(jb, "duration_us", record__duration_us(r));
	jb_obj_close(jb);
	jb_obj_close(jb);
}

void sentry__event(void *ctx, const struct record *r, const struct exc_info *exc)
{
	struct sentry *s = ctx;
	struct jbuf env, ev;
	char id[33], ts[64], item[96];
	uint8_t rnd[4];
	uint32_t u;

	ids_random(rnd, 4);
	memcpy(&u, rnd, 4);
	if (s->c.sample_rate < 1.0 && (double)u / 4294967296.0 >= s->c.sample_rate) {
		s->st.sampled_out++;
		return;
	}
	if (s->n >= SENTRY_QUEUE_MAX) {
		s->st.dropped_queue++;
		return;
	}
	ids_uuid4_hex(id);
	rfc3339_now(ts, sizeof(ts));
	jb_init(&ev);
	event_json(s, r, exc, id, ts, &ev);
	jb_init(&env);
	jb_obj_open(&env);
	jb_str(&env, "event_id", id);
	jb_str(&env, "dsn", s->c.dsn);
	jb_str(&env, "sent_at", ts);
	jb_obj_close(&env);
	jb_raw(&env, item, snprintf(item, sizeof(item),
				    "\n{\"type\":\"event\",\"length\":%zu,"
				    "\"content_type\":\"application/json\"}\n", ev.len));
	jb_raw(&env, ev.buf ? ev.buf : "", ev.len);
	jb_raw(&env, "\n", 1);
	if (env.oom || ev.oom) {
		s->st.dropped_queue++;
		jb_free(&env);
	} else {
		size_t slot = (s->head + s->n) % SENTRY_QUEUE_MAX;

		s->q[slot] = env.buf;
		s->q_len[slot] = env.len;
		s->n++;
		s->st.queued++;
	}
	jb_free(&ev);
}

void sentry__poll(struct sentry *s)
{
	sender__poll(s->snd);
	if (s->n && sender__idle(s->snd)) {
		sender__send(s->snd, (uint8_t *)s->q[s->head], s->q_len[s->head]);
		s->q[s->head] = NULL;
		s->head = (s->head + 1) % SENTRY_QUEUE_MAX;
		s->n--;
	}
}

void sentry__flush(struct sentry *s, unsigned timeout_ms)
{
	struct timespec t0, t;

	if (!s || !sender__healthy(s->snd))
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		sentry__poll(s);
		sender__drain(s->snd, 100);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((s->n || !sender__idle(s->snd)) &&
		 (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < timeout_ms);
}

const struct sentry_stats *sentry__stats(const struct sentry *s)
{
	return &s->st;
}

const struct sender_stats *sentry__sender_stats(const struct sentry *s)
{
	return sender__stats(s->snd);
}

void sentry__free(struct sentry *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->q[(s->head + i) % SENTRY_QUEUE_MAX]);
	sender__free(s->snd);
	free(s);
}

/* ---- the sink (sink.h) ---- */

static void sink_poll(void *ctx)
{
	sentry__poll(ctx);
}

static void sink_counters(void *ctx, struct counter_visit *v)
{
	const struct sentry_stats *ss = sentry__stats(ctx);

	counter_family(v, "obs_sentry_events_total", "counter", "Sentry events by result");
	counter_u64(v, ss->sent, "result", "sent", NULL, NULL);
	counter_u64(v, ss->dropped_queue, "result", "dropped_queue_full", NULL, NULL);
	counter_u64(v, ss->dropped_send, "result", "dropped_send_failed", NULL, NULL);
	counter_u64(v, ss->sampled_out, "result", "sampled_out", NULL, NULL);
}

static const struct sender_stats *sink_sender(void *ctx)
{
	return sentry__sender_stats(ctx);
}

static void sink_flush(void *ctx, const struct pipeline_stats *st, unsigned timeout_ms)
{
	sentry__flush(ctx, timeout_ms);
}

static void sink_free(void *ctx)
{
	sentry__free(ctx);
}

const struct sink_ops sentry_sink = {
	.name = "sentry",
	.error = sentry__event,
	.poll = sink_poll,
	.counters = sink_counters,
	.sender = sink_sender,
	.flush = sink_flush,
	.free = sink_free,
};
