// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "base/log.h"
#include "base/clock.h"
#include "request/sink.h"
#include "sinks/sender.h"

#define BACKOFF_FIRST_MS	1000

struct sender {
	char name[16];
	char *url;
	CURLM *multi;
	CURL *easy;			/* non-NULL while a POST is in flight */
	struct curl_slist *hdrs;
	unsigned timeout_ms;
	uint8_t *body;			/* being sent or waiting for its retry */
	size_t body_len;
	unsigned attempts;
	uint64_t retry_at_ns;
	char resp[SENDER_RESPONSE_MAX];
	size_t resp_len;
	unsigned logged;		/* send_err bits logged since the last success */
	sender_done_fn done;
	void *ctx;
	struct sender_stats st;
};

static const char *const err_names[SEND_E_MAX] = {
	[SEND_E_CONNECT] = "connect", [SEND_E_RETRYABLE] = "retryable_status",
	[SEND_E_REJECTED] = "rejected", [SEND_E_GAVE_UP] = "gave_up", [SEND_E_ENCODE] = "encode",
};

const char *send_err_name(enum send_err e)
{
	return e < SEND_E_MAX ? err_names[e] : "unknown";
}

struct sender *sender__new(const char *name, const char *url, const char *const *headers,
			   int n_headers, unsigned timeout_ms, sender_done_fn done, void *ctx)
{
	struct sender *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->url = strdup(url);
	if (!s->url || curl_global_init(CURL_GLOBAL_DEFAULT))
		goto out_free;
	s->multi = curl_multi_init();
	if (!s->multi)
		goto out_free;
	for (int i = 0; i < n_headers; i++)
		s->hdrs = curl_slist_append(s->hdrs, headers[i]);
	s->timeout_ms = timeout_ms;
	s->done = done;
	s->ctx = ctx;
	return s;

out_free:
	free(s->url);
	free(s);
	errno = ENOMEM;
	return NULL;
}

bool sender__healthy(const struct sender *s)
{
	return !s->logged && !s->retry_at_ns;
}

bool sender__idle(const struct sender *s)
{
	return !s->easy && !s->body;
}

void sender__error(struct sender *s, enum send_err e, const char *detail)
{
	s->st.errors[e]++;
	if (s->logged & (1u << e))
		return;
	s->logged |= 1u << e;
	pr_warn("%s: export to %s failed (%s): %s (further errors of this kind are only counted)",
		s->name, s->url, err_names[e], detail);
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
	struct sender *s = ctx;
	size_t len = size * n, room = SENDER_RESPONSE_MAX - 1 - s->resp_len;

	memcpy(s->resp + s->resp_len, data, len < room ? len : room);
	s->resp_len += len < room ? len : room;
	return len;
}

static void start(struct sender *s)
{
	CURL *e = curl_easy_init();

	if (!e)
		return;	/* retried at the next poll */
	curl_easy_setopt(e, CURLOPT_URL, s->url);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body_len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->hdrs);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)s->timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "obs/0.1.0");
	s->resp_len = 0;
	s->easy = e;
	s->attempts++;
	s->st.requests++;
	s->retry_at_ns = 0;
	curl_multi_add_handle(s->multi, e);
}

int sender__send(struct sender *s, uint8_t *body, size_t len)
{
	if (!sender__idle(s))
		return -EBUSY;
	s->body = body;
	s->body_len = len;
	s->attempts = 0;
	start(s);
	return 0;
}

static void finish_body(struct sender *s, bool delivered)
{
	s->resp[s->resp_len] = 0;
	if (delivered)
		s->st.delivered++;
	else
		s->st.dropped++;
	free(s->body);
	s->body = NULL;
	s->body_len = 0;
	s->retry_at_ns = 0;
	if (s->done)
		s->done(s->ctx, delivered, s->resp, s->resp_len);
}

/*
 * How long to wait before the next attempt: what a 429 or 503 answer's
 * Retry-After asks for (seconds or an HTTP date; capped), otherwise the
 * exponential backoff.
 */
static uint64_t retry_delay_ms(const struct sender *s, long code, curl_off_t retry_after)
{
	if ((code == 429 || code == 503) && retry_after > 0)
		return retry_after < SENDER_RETRY_AFTER_MAX_MS / 1000 ? (uint64_t)retry_after * 1000
								      : SENDER_RETRY_AFTER_MAX_MS;
	return (uint64_t)BACKOFF_FIRST_MS << (s->attempts - 1);
}

static void finish_request(struct sender *s, CURLcode res)
{
	long code = 0;
	curl_off_t retry_after = 0;
	char detail[128];
	bool retry = false;

	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(s->easy, CURLINFO_RETRY_AFTER, &retry_after);
	curl_multi_remove_handle(s->multi, s->easy);
	curl_easy_cleanup(s->easy);
	s->easy = NULL;
	if (res == CURLE_OK && code >= 200 && code < 300) {
		s->logged = 0;	/* healthy again: log the next failure */
		finish_body(s, true);
		return;
	}
	if (res != CURLE_OK) {
		snprintf(detail, sizeof(detail), "%s", curl_easy_strerror(res));
		sender__error(s, SEND_E_CONNECT, detail);
		retry = true;
	} else if (code == 429 || code == 502 || code == 503 || code == 504) {
		snprintf(detail, sizeof(detail), "HTTP %ld", code);
		sender__error(s, SEND_E_RETRYABLE, detail);
		retry = true;
	} else {
		snprintf(detail, sizeof(detail), "HTTP %ld", code);
		sender__error(s, SEND_E_REJECTED, detail);
	}
	if (retry && s->attempts < SENDER_MAX_ATTEMPTS) {
		s->retry_at_ns = mono_ns() + retry_delay_ms(s, code, retry_after) * 1000000ull;
		return;
	}
	if (retry)
		sender__error(s, SEND_E_GAVE_UP, "retries exhausted, dropped");
	finish_body(s, false);
}

void sender__poll(struct sender *s)
{
	CURLMsg *msg;
	int running, left;

	if (s->easy) {
		curl_multi_perform(s->multi, &running);
		while ((msg = curl_multi_info_read(s->multi, &left)))
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == s->easy)
				finish_request(s, msg->data.result);
	} else if (s->body && mono_ns() >= s->retry_at_ns) {
		start(s);
		curl_multi_perform(s->multi, &running);
	}
}

void sender__drain(struct sender *s, unsigned timeout_ms)
{
	uint64_t end = mono_ns() + (uint64_t)timeout_ms * 1000000ull;

	while (s->body && mono_ns() < end && !(!s->easy && s->retry_at_ns > end)) {
		int fds;

		sender__poll(s);
		curl_multi_wait(s->multi, NULL, 0, 50, &fds);
	}
}

const struct sender_stats *sender__stats(const struct sender *s)
{
	return &s->st;
}

void sender__free(struct sender *s)
{
	if (!s)
		return;
	if (s->easy) {
		curl_multi_remove_handle(s->multi, s->easy);
		curl_easy_cleanup(s->easy);
	}
	curl_multi_cleanup(s->multi);
	curl_slist_free_all(s->hdrs);
	free(s->body);
	free(s->url);
	free(s);
	curl_global_cleanup();
}

void sender_export_errors(const struct sinks *ss, struct counter_visit *v)
{
	bool any = false;

	for (int i = 0; i < ss->n && !any; i++)
		any = ss->s[i].ops->sender != NULL;
	if (!any)
		return;
	counter_family(v, "obs_export_errors_total", "counter", "Export errors by exporter and kind");
	counter_none(v);
	for (int e = 0; e < SEND_E_MAX; e++) {
		for (int i = 0; i < ss->n; i++) {
			const struct sink *s = &ss->s[i];

			if (s->ops->sender)
				counter_u64(v, s->ops->sender(s->ctx)->errors[e], "exporter",
					    s->ops->name, "kind", send_err_name(e));
		}
	}
}
