/* SPDX-License-Identifier: MIT */
/*
 * api — obsd's small HTTP/1.1 server for /health, /ready, /metrics and /api/...
 * Non-blocking, one response per connection (Connection: close), bounded:
 * at most API_MAX_CLIENTS at once, API_REQ_MAX bytes of request head, clients
 * idle for API_IDLE_SEC are dropped. It never touches the event path; the
 * handler builds each answer from state the daemon already holds.
 */
#ifndef OBS_API_H
#define OBS_API_H

#include <stdint.h>
#include "base/json.h"

#define API_MAX_CLIENTS	64
#define API_REQ_MAX	8192
#define API_IDLE_SEC	10

struct api_reply {
	int status;			/* default 200 */
	const char *content_type;	/* default application/json */
	struct jbuf body;		/* handler appends the body here */
};

/* Called for each GET/HEAD request; path has no query, query may be "". */
typedef void (*api_handler)(void *ctx, const char *path, const char *query,
			    struct api_reply *reply);

struct api;

/* Listen on "ADDR:PORT" (IPv4 or [IPv6]). NULL with errno set, reason logged. */
struct api *api__new(const char *listen, api_handler fn, void *ctx);

/* An epoll fd that becomes readable when api__process has work. */
int api__fd(const struct api *a);

/* Accept, read, answer, write — whatever is ready, without blocking. */
void api__process(struct api *a);

/* Drop clients idle too long. Call about once a second. */
void api__tick(struct api *a);

/* Close everything. NULL-safe. */
void api__free(struct api *a);

/* Value of key in an URL query ("limit=5&x=1"), copied into out; 0 or -ENOENT. */
int api_query_get(const char *query, const char *key, char *out, size_t n);

#endif
