// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "events.h"
#include "ids.h"

static const char *const names[] = {
	[LIFE_CONNECTION_OPENED] = "ConnectionOpened",
	[LIFE_REQUEST_STARTED] = "RequestStarted",
	[LIFE_RESPONSE_COMPLETED] = "ResponseCompleted",
	[LIFE_REQUEST_FAILED] = "RequestFailed",
	[LIFE_CLIENT_DISCONNECTED] = "ClientDisconnected",
	[LIFE_CONNECTION_CLOSED] = "ConnectionClosed",
};

const char *life_type_name(enum life_type t)
{
	return names[t];
}

static void copy(char *dst, size_t n, const char *src)
{
	size_t l = src ? strnlen(src, n - 1) : 0;

	memcpy(dst, src ? src : "", l);
	dst[l] = 0;
}

void life_rec_from(struct life_rec *lr, const struct life_event *e)
{
	const struct conn_event *c = e->ce;
	const struct record *r = c->r;

	lr->type = e->type;
	lr->wall_ns = e->wall_ns;
	lr->conn_id = c->conn_id;
	lr->in_flight = c->in_flight;
	lr->pid = c->pid;
	copy(lr->comm, sizeof(lr->comm), c->comm);
	copy(lr->service, sizeof(lr->service), e->service);
	copy(lr->client, sizeof(lr->client), c->client);
	copy(lr->server, sizeof(lr->server), c->server);
	lr->on_unix = c->transport == REC_UNIX;
	copy(lr->reason, sizeof(lr->reason), c->reason);
	lr->has_req = r != NULL;
	if (!r)
		return;
	copy(lr->request_id, sizeof(lr->request_id), r->request_id);
	memcpy(lr->trace_id, r->trace_id, sizeof(lr->trace_id));
	memcpy(lr->span_id, r->span_id, sizeof(lr->span_id));
	copy(lr->method, sizeof(lr->method), r->method);
	copy(lr->path, sizeof(lr->path), r->path);
	copy(lr->route, sizeof(lr->route), r->route);
	lr->status = r->status;
	lr->duration_us = record__duration_us(r);
	lr->bytes_in = r->bytes_in;
	lr->bytes_out = r->bytes_out;
	lr->failed = r->outcome != REC_OK;
	lr->error = r->error;
}

void life_rec_json(const struct life_rec *lr, struct jbuf *jb)
{
	char ts[64], hex[33];

	rfc3339(ts, sizeof(ts), lr->wall_ns);
	jb_obj_open(jb);
	jb_str(jb, "type", names[lr->type]);
	jb_str(jb, "ts", ts);
	jb_u64(jb, "ts_ns", lr->wall_ns);
	jb_u64(jb, "conn_id", lr->conn_id);
	jb_u64(jb, "pid", lr->pid);
	jb_str(jb, "comm", lr->comm);
	jb_str(jb, "service", lr->service);
	jb_str(jb, "client", lr->client);
	jb_str(jb, "server", lr->server);
	jb_str(jb, "transport", lr->on_unix ? "unix" : "tcp");
	if (lr->reason[0])
		jb_str(jb, "reason", lr->reason);
	if (lr->type == LIFE_CLIENT_DISCONNECTED)
		jb_u64(jb, "in_flight", lr->in_flight);
	if (lr->has_req) {
		jb_str(jb, "request_id", lr->request_id);
		ids_hex(hex, lr->trace_id, 16);
		jb_str(jb, "trace_id", hex);
		ids_hex(hex, lr->span_id, 8);
		jb_str(jb, "span_id", hex);
		jb_str(jb, "method", lr->method);
		jb_str(jb, "path", lr->path);
		jb_str(jb, "route", lr->route);
		if (lr->type != LIFE_REQUEST_STARTED) {
			jb_i64(jb, "status", lr->status);
			jb_u64(jb, "duration_us", lr->duration_us);
			jb_u64(jb, "bytes_in", lr->bytes_in);
			jb_u64(jb, "bytes_out", lr->bytes_out);
			if (lr->failed)
				jb_str(jb, "error", lr->error);
		}
	}
	jb_obj_close(jb);
}

void life_event_json(const struct life_event *e, struct jbuf *jb)
{
	struct life_rec lr;

	life_rec_from(&lr, e);
	life_rec_json(&lr, jb);
}
