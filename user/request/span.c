// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "request/errors.h"
#include "request/span.h"

void span_add_str(struct span_view *v, const char *key, const char *val)
{
	if (v->n_attrs < SPAN_MAX_ATTRS && val && val[0])
		v->attrs[v->n_attrs++] = (struct span_attr){ .key = key, .type = SPAN_STR, .str = val };
}

void span_add_int(struct span_view *v, const char *key, int64_t val)
{
	if (v->n_attrs < SPAN_MAX_ATTRS)
		v->attrs[v->n_attrs++] = (struct span_attr){ .key = key, .type = SPAN_INT, .i = val };
}

int span_split_addr(const char *addr, char *buf, size_t n)
{
	const char *colon = strrchr(addr, ':');
	size_t l;

	buf[0] = 0;
	if (!colon)
		return 0;
	l = colon - addr;
	if (addr[0] == '[' && l >= 2) {
		addr++;
		l -= 2;
	}
	if (l >= n)
		l = n - 1;
	memcpy(buf, addr, l);
	buf[l] = 0;
	return atoi(colon + 1);
}

/*
 * A request over a UNIX socket: network.transport "unix"; server.address and
 * network.local.address are the socket path (the conventions' "Unix domain
 * socket name"); no port and no client.address (the peer socket has no name).
 * The conventions have no attribute for the process at the other end, so it
 * is obs.peer.pid and obs.peer.name (docs/design.md).
 */
static void unix_attrs(struct span_view *v, const struct record *r)
{
	size_t l;

	span_add_str(v, "network.transport", "unix");
	span_add_str(v, "server.address", r->server);
	span_add_str(v, "network.local.address", r->server);
	if (!r->peer_pid)
		return;
	span_add_int(v, "obs.peer.pid", r->peer_pid);
	l = strcspn(r->client, "[");
	if (l && l < sizeof(v->peer_name)) {
		memcpy(v->peer_name, r->client, l);
		v->peer_name[l] = 0;
		span_add_str(v, "obs.peer.name", v->peer_name);
	}
}

void span_view(struct span_view *v, const struct record *r)
{
	int cport, sport;
	size_t hl;

	if (r->kind == REC_CLIENT) {
		client_span_view(v, r);
		return;
	}
	memset(v, 0, sizeof(*v));
	if (!strncmp(r->content_type, "application/grpc", 16) && r->path[0] == '/')
		snprintf(v->name, sizeof(v->name), "%s", r->path + 1);	/* pkg.Service/Method */
	else
		snprintf(v->name, sizeof(v->name), "%s %s", r->method[0] ? r->method : "HTTP",
			 r->route[0] ? r->route : "");
	if (r->outcome != REC_OK) {
		v->status = SPAN_STATUS_ERROR;
		v->status_message = r->error;
	} else if (r->status >= 500 || r->exc) {
		v->status = SPAN_STATUS_ERROR;
	}
	if (r->exc)	/* the handler raised: name the exception */
		v->status_message = r->exc->type;
	if (r->transport == REC_UNIX) {	/* no addresses: the path names the server */
		cport = sport = 0;
	} else {
		cport = span_split_addr(r->client, v->client_ip, sizeof(v->client_ip));
		sport = span_split_addr(r->server, v->server_ip, sizeof(v->server_ip));
	}
	hl = strcspn(r->host, ":");
	if (r->host[0] == '[')
		hl = strcspn(r->host, "]") + 1;
	snprintf(v->server_host, sizeof(v->server_host), "%.*s", (int)hl, r->host);
	strcpy(v->flavor, r->version_minor ? "1.1" : "1.0");

	span_add_str(v, "http.request.method", r->method);
	span_add_str(v, "url.path", r->path);
	span_add_str(v, "url.scheme", r->tls ? "https" : "http");
	span_add_str(v, "http.route", r->route);
	if (r->status)
		span_add_int(v, "http.response.status_code", r->status);
	if (r->transport == REC_UNIX) {
		unix_attrs(v, r);
	} else {
		span_add_str(v, "network.transport", "tcp");
		span_add_str(v, "server.address", v->server_host[0] ? v->server_host : v->server_ip);
		if (sport)
			span_add_int(v, "server.port", sport);
		span_add_str(v, "client.address", v->client_ip);
		if (cport)
			span_add_int(v, "client.port", cport);
	}
	span_add_str(v, "user_agent.original", r->user_agent);
	span_add_str(v, "network.protocol.name", "http");
	span_add_str(v, "network.protocol.version", v->flavor);
	/* older semantic conventions */
	span_add_str(v, "http.method", r->method);
	span_add_str(v, "http.target", r->path);
	span_add_str(v, "http.scheme", r->tls ? "https" : "http");
	span_add_str(v, "http.host", r->host);
	if (r->status)
		span_add_int(v, "http.status_code", r->status);
	span_add_str(v, "http.flavor", v->flavor);
	span_add_str(v, "http.user_agent", r->user_agent);
	if (sport)
		span_add_int(v, "net.host.port", sport);
	span_add_str(v, "net.peer.ip", v->client_ip);
	/* obs */
	if (r->grpc_status >= 0) {
		const char *slash = strchr(r->path + 1, '/');

		span_add_str(v, "rpc.system", "grpc");
		if (slash) {
			snprintf(v->rpc_service, sizeof(v->rpc_service), "%.*s",
				 (int)(slash - r->path - 1), r->path + 1);
			span_add_str(v, "rpc.service", v->rpc_service);
			span_add_str(v, "rpc.method", slash + 1);
		}
		span_add_int(v, "rpc.grpc.status_code", r->grpc_status);
		if (r->grpc_status && v->status == SPAN_STATUS_UNSET)
			v->status = SPAN_STATUS_ERROR;
	}
	span_add_str(v, "request.id", r->request_id);
	span_add_int(v, "obs.bytes_in", (int64_t)r->bytes_in);
	span_add_int(v, "obs.bytes_out", (int64_t)r->bytes_out);
	span_add_int(v, "obs.ttfb_us", (int64_t)record__ttfb_us(r));
	if (r->queue_ns >= 0)
		span_add_int(v, "obs.queue_us", r->queue_ns / 1000);
	span_add_str(v, "obs.outcome", r->outcome == REC_OK ? "ok" : "failed");
	span_add_str(v, "obs.error", r->error);
	span_add_int(v, "thread.id", r->tid);
}
