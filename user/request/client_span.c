// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "request/span.h"

static void add_str(struct span_view *v, const char *key, const char *val)
{
	if (v->n_attrs < SPAN_MAX_ATTRS && val && val[0])
		v->attrs[v->n_attrs++] = (struct span_attr){ .key = key, .type = SPAN_STR, .str = val };
}

static void add_int(struct span_view *v, const char *key, int64_t val)
{
	if (v->n_attrs < SPAN_MAX_ATTRS)
		v->attrs[v->n_attrs++] = (struct span_attr){ .key = key, .type = SPAN_INT, .i = val };
}

/* "ip:port" / "[v6]:port" into ip (buf) and port; 0 without a port. */
static int split_addr(const char *addr, char *buf, size_t n)
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
		port = split_addr(r->server, v->server_ip, sizeof(v->server_ip));
	/* the Host header names the target as the caller wrote it */
	hl = r->host[0] == '[' ? strcspn(r->host, "]") + 1 : strcspn(r->host, ":");
	snprintf(v->server_host, sizeof(v->server_host), "%.*s", (int)hl, r->host);
	authority = r->host[0] ? r->host : r->transport == REC_UNIX ? "localhost" : r->server;
	snprintf(v->url_full, sizeof(v->url_full), "%s://%s%s", scheme, authority,
		 r->path[0] ? r->path : "/");
	strcpy(v->flavor, r->version_minor ? "1.1" : "1.0");

	add_str(v, "http.request.method", r->method);
	add_str(v, "url.full", v->url_full);
	if (r->status)
		add_int(v, "http.response.status_code", r->status);
	if (r->outcome != REC_OK)
		add_str(v, "error.type", r->error);
	else if (r->status >= 500) {	/* the conventions' error.type: the status code */
		snprintf(v->peer_name, sizeof(v->peer_name), "%d", r->status);
		add_str(v, "error.type", v->peer_name);
	}
	if (r->transport == REC_UNIX) {
		add_str(v, "network.transport", "unix");
		add_str(v, "server.address", r->server);	/* the socket path */
		add_str(v, "network.peer.address", r->server);
		if (r->peer_pid)
			add_int(v, "obs.peer.pid", r->peer_pid);
	} else {
		add_str(v, "network.transport", "tcp");
		add_str(v, "server.address", v->server_host[0] ? v->server_host : v->server_ip);
		if (port)
			add_int(v, "server.port", port);
		add_str(v, "network.peer.address", v->server_ip);
		if (port)
			add_int(v, "network.peer.port", port);
	}
	add_str(v, "user_agent.original", r->user_agent);
	add_str(v, "network.protocol.name", "http");
	add_str(v, "network.protocol.version", v->flavor);
	add_str(v, "request.id", r->request_id);
	add_str(v, "obs.link", record_link_name(r->link));
	add_int(v, "obs.bytes_in", (int64_t)r->bytes_in);
	add_int(v, "obs.bytes_out", (int64_t)r->bytes_out);
	add_int(v, "obs.ttfb_us", (int64_t)record__ttfb_us(r));
	add_str(v, "obs.outcome", r->outcome == REC_OK ? "ok" : "failed");
	add_str(v, "obs.error", r->error);
	add_int(v, "thread.id", r->tid);
}
