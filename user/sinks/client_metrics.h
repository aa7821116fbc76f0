/* SPDX-License-Identifier: MIT */
/*
 * client_metrics — Prometheus series of outgoing calls (REC_CLIENT records,
 * request/client.h): http_client_requests_total and the histogram
 * http_client_request_duration_seconds, both by service, peer, method and
 * status_code. peer is the callee as the record names it ("ip:port", or the
 * socket path of a UNIX server), or "_other" past the request layer's cap of
 * distinct peers (record.peer_other, request/client.h). Methods
 * outside the RFC 9110 set are "_OTHER"; calls without a response count
 * with status_code="0". Rendered by metrics.c after the http_* series.
 */
#ifndef OBS_CLIENT_METRICS_H
#define OBS_CLIENT_METRICS_H

#include "base/json.h"
#include "conn/record.h"

struct client_metrics;

/* bounds: ascending histogram upper bounds in seconds (copied). NULL with errno. */
struct client_metrics *client_metrics__new(const double *bounds, int n_bounds);

/* Account one CLIENT record. */
void client_metrics__record(struct client_metrics *cm, const struct record *r);

/* Append both families (text format 0.0.4). */
void client_metrics__render(const struct client_metrics *cm, struct jbuf *out);

/* NULL-safe. */
void client_metrics__free(struct client_metrics *cm);

#endif
