// SPDX-License-Identifier: MIT
#include <stdio.h>
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

void life_event_json(const struct life_event *e, struct jbuf *jb)
{
	const struct conn_event *c = e->ce;
	const struct record *r = c->r;
	char ts[64], hex[33];

	rfc3339(ts, sizeof(ts), e->wall_ns);
	jb_obj_open(jb);
	jb_str(jb, "type", names[e->type]);
	jb_str(jb, "ts", ts);
	jb_u64(jb, "ts_ns", e->wall_ns);
	jb_u64(jb, "conn_id", c->conn_id);
	jb_u64(jb, "pid", c->pid);
	jb_str(jb, "comm", c->comm);
	jb_str(jb, "service", e->service);
	jb_str(jb, "client", c->client);
	jb_str(jb, "server", c->server);
	if (c->reason)
		jb_str(jb, "reason", c->reason);
	if (e->type == LIFE_CLIENT_DISCONNECTED)
		jb_u64(jb, "in_flight", c->in_flight);
	if (r) {
		jb_str(jb, "request_id", r->request_id);
		ids_hex(hex, r->trace_id, 16);
		jb_str(jb, "trace_id", hex);
		ids_hex(hex, r->span_id, 8);
		jb_str(jb, "span_id", hex);
		jb_str(jb, "method", r->method);
		jb_str(jb, "path", r->path);
		jb_str(jb, "route", r->route);
		if (e->type != LIFE_REQUEST_STARTED) {
			jb_i64(jb, "status", r->status);
			jb_u64(jb, "duration_us", record__duration_us(r));
			jb_u64(jb, "bytes_in", r->bytes_in);
			jb_u64(jb, "bytes_out", r->bytes_out);
			if (r->outcome != REC_OK)
				jb_str(jb, "error", r->error);
		}
	}
	jb_obj_close(jb);
}
