// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "request/events.h"
#include "base/ids.h"
#include "base/pack.h"
#include "request/service.h"

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

#define LIFE_FIXED	offsetof(struct life_rec, comm)	/* the numbers */

/* Strings are packed straight from the arrays that hold them (pack_arr), a
 * word at a time: each must be the size of the life_rec's. */
#define LR_SIZE(m)	sizeof(((struct life_rec *)0)->m)
#define REC_SIZE(m)	sizeof(((struct record *)0)->m)
_Static_assert(LR_SIZE(request_id) == REC_SIZE(request_id) && LR_SIZE(method) == REC_SIZE(method) &&
	       LR_SIZE(path) == REC_SIZE(path) && LR_SIZE(route) == REC_SIZE(route) &&
	       LR_SIZE(comm) == OBS_COMM_LEN && LR_SIZE(service) == SERVICE_NAME_MAX &&
	       LR_SIZE(client) == REC_ADDR_MAX && LR_SIZE(server) == REC_SERVER_MAX,
	       "life_rec strings sized as the arrays they come from");

size_t life_pack(const struct life_event *e, void *out)
{
	const struct conn_event *c = e->ce;
	const struct record *r = c->r;
	struct life_rec lr;	/* only its numbers: zeroing all of it cost more than the rest */
	char *o = out;

	memset(&lr, 0, LIFE_FIXED);
	lr.type = e->type;
	lr.wall_ns = e->wall_ns;
	lr.conn_id = c->conn_id;
	lr.in_flight = c->in_flight;
	lr.pid = c->pid;
	lr.on_unix = c->transport == REC_UNIX;
	lr.has_req = r != NULL;
	if (r) {
		memcpy(lr.trace_id, r->trace_id, sizeof(lr.trace_id));
		memcpy(lr.span_id, r->span_id, sizeof(lr.span_id));
		lr.status = r->status;
		lr.duration_us = record__duration_us(r);
		lr.bytes_in = r->bytes_in;
		lr.bytes_out = r->bytes_out;
		lr.failed = r->outcome != REC_OK;
		lr.error = r->error;
	}
	memcpy(o, &lr, LIFE_FIXED);
	o += LIFE_FIXED;
	memcpy(o, c->ident, c->ident_len);	/* comm, client, server: packed once */
	o += c->ident_len;
	o = pack_arr(o, e->service, sizeof(lr.service));
	o = pack_str(o, c->reason, sizeof(lr.reason));	/* a string literal */
	if (r) {
		o = pack_arr(o, r->request_id, sizeof(r->request_id));
		o = pack_arr(o, r->method, sizeof(r->method));
		o = pack_arr(o, r->path, sizeof(r->path));
		o = pack_arr(o, r->route, sizeof(r->route));
	}
	return o - (char *)out;
}

void life_unpack(const void *in, struct life_rec *lr)
{
	const char *p = in;

	memcpy(lr, p, LIFE_FIXED);
	p += LIFE_FIXED;
	p = unpack_str(p, lr->comm);
	p = unpack_str(p, lr->client);
	p = unpack_str(p, lr->server);
	p = unpack_str(p, lr->service);
	p = unpack_str(p, lr->reason);
	if (!lr->has_req) {
		lr->request_id[0] = lr->method[0] = lr->path[0] = lr->route[0] = 0;
		return;
	}
	p = unpack_str(p, lr->request_id);
	p = unpack_str(p, lr->method);
	p = unpack_str(p, lr->path);
	unpack_str(p, lr->route);
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
	char packed[sizeof(struct life_rec) + PACK_SLACK];
	struct life_rec lr;

	life_pack(e, packed);
	life_unpack(packed, &lr);
	life_rec_json(&lr, jb);
}
