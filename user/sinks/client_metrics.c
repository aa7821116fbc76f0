// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sinks/client_metrics.h"
#include "sinks/metrics.h"

#define CM_BUCKETS_MAX	32
#define CM_HASH		1024	/* chains of the series table (power of two) */

struct cm_series {
	struct cm_series *next;
	uint64_t hash;
	char *service, *peer;	/* owned */
	const char *method;	/* static */
	int status;
	uint64_t count;
	double sum;
	uint64_t buckets[];	/* non-cumulative, one per bound */
};

struct client_metrics {
	double bounds[CM_BUCKETS_MAX];
	int n_bounds;
	struct cm_series *t[CM_HASH];
};

struct client_metrics *client_metrics__new(const double *bounds, int n_bounds)
{
	struct client_metrics *cm = calloc(1, sizeof(*cm));

	if (!cm)
		return NULL;
	if (n_bounds > CM_BUCKETS_MAX)
		n_bounds = CM_BUCKETS_MAX;
	memcpy(cm->bounds, bounds, n_bounds * sizeof(*bounds));
	cm->n_bounds = n_bounds;
	return cm;
}

void client_metrics__free(struct client_metrics *cm)
{
	if (!cm)
		return;
	for (int i = 0; i < CM_HASH; i++) {
		struct cm_series *s = cm->t[i], *next;

		for (; s; s = next) {
			next = s->next;
			free(s->service);
			free(s->peer);
			free(s);
		}
	}
	free(cm);
}

static uint64_t hash_str(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return (h ^ 0x1f) * 0x100000001b3ull;
}

void client_metrics__record(struct client_metrics *cm, const struct record *r)
{
	const char *method = metrics_method_label(r->method), *peer = r->peer_other ? "_other" : r->server;
	double secs = (double)(r->end_ns > r->start_ns ? r->end_ns - r->start_ns : 0) / 1e9;
	uint64_t h = hash_str(hash_str(hash_str(0xcbf29ce484222325ull, r->service), peer), method);
	struct cm_series *s;
	int b;

	h = (h ^ (uint64_t)r->status) * 0x100000001b3ull;
	for (s = cm->t[h & (CM_HASH - 1)]; s; s = s->next)
		if (s->hash == h && s->status == r->status && s->method == method &&
		    !strcmp(s->peer, peer) && !strcmp(s->service, r->service))
			break;
	if (!s) {
		s = calloc(1, sizeof(*s) + cm->n_bounds * sizeof(s->buckets[0]));
		if (!s)
			return;
		s->service = strdup(r->service);
		s->peer = strdup(peer);
		if (!s->service || !s->peer) {
			free(s->service);
			free(s->peer);
			free(s);
			return;
		}
		s->hash = h;
		s->method = method;
		s->status = r->status;
		s->next = cm->t[h & (CM_HASH - 1)];
		cm->t[h & (CM_HASH - 1)] = s;
	}
	for (b = 0; b < cm->n_bounds && secs > cm->bounds[b]; b++)
		;
	if (b < cm->n_bounds)
		s->buckets[b]++;
	s->count++;
	s->sum += secs;
}

static void labels(struct jbuf *o, const struct cm_series *s)
{
	jb_raw(o, "{service=\"", 10);
	prom_label_value(o, s->service, strlen(s->service));
	jb_raw(o, "\",peer=\"", 8);
	prom_label_value(o, s->peer, strlen(s->peer));
	jb_printf(o, "\",method=\"%s\",status_code=\"%d\"", s->method, s->status);
}

void client_metrics__render(const struct client_metrics *cm, struct jbuf *o)
{
	jb_printf(o, "# HELP http_client_requests_total Outgoing HTTP calls of observed servers, by status code\n"
		     "# TYPE http_client_requests_total counter\n");
	for (int i = 0; i < CM_HASH; i++) {
		for (const struct cm_series *s = cm->t[i]; s; s = s->next) {
			jb_raw(o, "http_client_requests_total", 26);
			labels(o, s);
			jb_printf(o, "} %llu\n", (unsigned long long)s->count);
		}
	}
	jb_printf(o, "# HELP http_client_request_duration_seconds Outgoing HTTP call duration: first request byte written to last response byte read\n"
		     "# TYPE http_client_request_duration_seconds histogram\n");
	for (int i = 0; i < CM_HASH; i++) {
		for (const struct cm_series *s = cm->t[i]; s; s = s->next) {
			uint64_t cum = 0;

			for (int b = 0; b < cm->n_bounds; b++) {
				cum += s->buckets[b];
				jb_raw(o, "http_client_request_duration_seconds_bucket", 43);
				labels(o, s);
				jb_printf(o, ",le=\"%g\"} %llu\n", cm->bounds[b], (unsigned long long)cum);
			}
			jb_raw(o, "http_client_request_duration_seconds_bucket", 43);
			labels(o, s);
			jb_printf(o, ",le=\"+Inf\"} %llu\n", (unsigned long long)s->count);
			jb_raw(o, "http_client_request_duration_seconds_sum", 40);
			labels(o, s);
			jb_printf(o, "} %.9g\n", s->sum);
			jb_raw(o, "http_client_request_duration_seconds_count", 42);
			labels(o, s);
			jb_printf(o, "} %llu\n", (unsigned long long)s->count);
		}
	}
}
