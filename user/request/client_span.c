// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "request/span.h"

void client_span_view(struct span_view *v, const struct record *r)
{
	const char *scheme = r->tls ? "https" : "http", *authority;
	int port = 0;
	size_t hl;

	memset(v, 0, sizeof(*v));
	snprintf(v->name, sizeof(v->name), "%s", r->method[0] ? r->method : "HTTP");
	if (r->outcome != REC_OK) {
		v->status = SPAN_STATUS_ERROR;
		v->status_message = r->error;
	} else if (r->status >= 500) {
		v->status = SPAN_STATUS_ERROR;
	}
	if (r->transport != REC_UNIX)
		port = span_split_addr(r->server, v->server_ip, sizeof(v->server_ip));
	/* the Host header names the target as the caller wrote it */
	hl = r->host[0] == '[' ? strcspn(r->host, "]") + 1 : strcspn(r->host, ":");
	snprintf(v->server_host, sizeof(v->server_host), "%.*s", (int)hl, r->host);
	authority = r->host[0] ? r->host : r->transport == REC_UNIX ? "localhost" : r->server;
	snprintf(v->url_full, sizeof(v->url_full), "%s://%s%s", scheme, authority,
		 r->path[0] ? r->path : "/");
	strcpy(v->flavor, r->version_minor ? "1.1" : "1.0");

	span_add_str(v, "http.request.method", r->method);
	span_add_str(v, "url.full", v->url_full);
	if (r->status)
		span_add_int(v, "http.response.status_code", r->status);
	if (r->outcome != REC_OK)
		span_add_str(v, "error.type", r->error);
	else if (r->status >= 500) {	/* the conventions' error.type: the status code */
		snprintf(v->peer_name, sizeof(v->peer_name), "%d", r->status);
		span_add_str(v, "error.type", v->peer_name);
	}
	if (r->transport == REC_UNIX) {
		span_add_str(v, "network.transport", "unix");
		span_add_str(v, "server.address", r->server);	/* the socket path */
		span_add_str(v, "network.peer.address", r->server);
		if (r->peer_pid)
			span_add_int(v, "obs.peer.pid", r->peer_pid);
	} else {
		span_add_str(v, "network.transport", "tcp");
		span_add_str(v, "server.address", v->server_host[0] ? v->server_host : v->server_ip);
		if (port)
			span_add_int(v, "server.port", port);
		span_add_str(v, "network.peer.address", v->server_ip);
		if (port)
			span_add_int(v, "network.peer.port", port);
	}
	span_add_str(v, "user_agent.original", r->user_agent);
	span_add_str(v, "network.protocol.name", "http");
	span_add_str(v, "network.protocol.version", v->flavor);
	span_add_str(v, "request.id", r->request_id);
	span_add_str(v, "obs.link", record_link_name(r->link));
	span_add_int(v, "obs.bytes_in", (int64_t)r->bytes_in);
	span_add_int(v, "obs.bytes_out", (int64_t)r->bytes_out);
	span_add_int(v, "obs.ttfb_us", (int64_t)record__ttfb_us(r));
	span_add_str(v, "obs.outcome", r->outcome == REC_OK ? "ok" : "failed");
	span_add_str(v, "obs.error", r->error);
	span_add_int(v, "thread.id", r->tid);
}
