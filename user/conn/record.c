// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "base/ids.h"
#include "base/json.h"
#include "base/pack.h"
#include "conn/record.h"

void record__clear(struct record *r)
{
	memset(r, 0, offsetof(struct record, request_id));	/* numbers, flags, ids */
	r->request_id[0] = 0;
	r->comm[0] = 0;
	r->service[0] = 0;
	memset(&r->container, 0, sizeof(r->container));
	r->method[0] = 0;
	r->path[0] = 0;
	r->route[0] = 0;
	r->client[0] = 0;
	r->server[0] = 0;
	r->host[0] = 0;
	r->user_agent[0] = 0;
	r->content_type[0] = 0;
	r->x_request_id[0] = 0;
	r->traceparent[0] = 0;
	r->tracestate[0] = 0;
	r->exc = NULL;
}

#define REC_FIXED	offsetof(struct record, request_id)	/* numbers and ids */

/* The strings of a record, in packing order. */
#define REC_STRS(X)                                                                       \
	X(request_id) X(comm) X(service) X(container.container_id) X(container.pod_uid)    \
	X(method) X(path) X(route) X(client) X(server) X(host) X(user_agent) X(content_type) \
	X(x_request_id) X(traceparent) X(tracestate)

size_t record__pack(const struct record *r, void *out)
{
	char *o = out;

	memcpy(o, r, REC_FIXED);
	o += REC_FIXED;
	memcpy(o, &r->container.runtime, sizeof(r->container.runtime));
	o += sizeof(r->container.runtime);
#define PACK(m)	o = pack_arr(o, r->m, sizeof(r->m));
	REC_STRS(PACK)
#undef PACK
	return o - (char *)out;
}

void record__unpack(const void *in, struct record *r)
{
	const char *p = in;

	memcpy(r, p, REC_FIXED);
	p += REC_FIXED;
	memcpy(&r->container.runtime, p, sizeof(r->container.runtime));
	p += sizeof(r->container.runtime);
#define UNPACK(m)	p = unpack_str(p, r->m);
	REC_STRS(UNPACK)
#undef UNPACK
	r->exc = NULL;
}

void record__from_head(struct record *r, const struct h1_head *h)
{
	size_t plen = strcspn(h->target, "?#");

	copy_arr(r->method, h->method);
	if (plen >= sizeof(r->path))
		plen = sizeof(r->path) - 1;
	memcpy(r->path, h->target, plen);
	r->path[plen] = 0;
	if (h->flags & H1F_TARGET_TRUNC)
		r->flags |= RECF_PATH_TRUNC;
	if (h->flags & H1F_HEAD_TRUNC)
		r->flags |= RECF_TRUNCATED;
	r->version_minor = h->version_minor;
	copy_arr(r->host, h->host);
	copy_arr(r->user_agent, h->user_agent);
	copy_arr(r->content_type, h->content_type);
	copy_arr(r->x_request_id, h->x_request_id);
	copy_arr(r->traceparent, h->traceparent);
	copy_arr(r->tracestate, h->tracestate);
}

uint64_t record__duration_us(const struct record *r)
{
	return r->end_ns > r->start_ns ? (r->end_ns - r->start_ns) / 1000 : 0;
}

uint64_t record__ttfb_us(const struct record *r)
{
	return r->resp_start_ns > r->start_ns ? (r->resp_start_ns - r->start_ns) / 1000 : 0;
}

void rfc3339(char *out, size_t n, uint64_t epoch_ns)
{
	time_t s = epoch_ns / 1000000000ull;
	struct tm tm;

	gmtime_r(&s, &tm);
	snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (unsigned)(epoch_ns % 1000000000ull / 1000));
}

static const struct {
	uint32_t bit;
	const char *name;
} flag_names[] = {
	{ RECF_TRUNCATED, "truncated" }, { RECF_INFERRED, "inferred" }, { RECF_LOST, "lost" },
	{ RECF_UNMATCHED, "unmatched" }, { RECF_NO_OPEN, "no_open" },
	{ RECF_PATH_TRUNC, "path_truncated" },
};

const char *record_link_name(unsigned link)
{
	static const char *const names[REC_LINK_KINDS] = {
		[REC_LINK_NONE] = "", [REC_LINKED] = "linked",
		[REC_LINK_NO_REQUEST] = "no_request", [REC_LINK_AMBIGUOUS] = "ambiguous",
	};

	return link < REC_LINK_KINDS ? names[link] : "";
}

void record__json(const struct record *r, struct jbuf *jb)
{
	char ts[64], hex[33];

	rfc3339(ts, sizeof(ts), r->wall_start_ns);
	jb_obj_open(jb);
	jb_str(jb, "ts", ts);
	jb_u64(jb, "ts_ns", r->wall_start_ns);
	jb_str(jb, "request_id", r->request_id);
	ids_hex(hex, r->trace_id, 16);
	jb_str(jb, "trace_id", hex);
	ids_hex(hex, r->span_id, 8);
	jb_str(jb, "span_id", hex);
	if (r->has_parent)
		ids_hex(hex, r->parent_span_id, 8);
	else
		hex[0] = 0;
	jb_str(jb, "parent_span_id", hex);
	jb_bool(jb, "sampled", r->sampled);
	jb_u64(jb, "conn_id", r->conn_id);
	jb_u64(jb, "pid", r->pid);
	jb_u64(jb, "tid", r->tid);
	jb_str(jb, "comm", r->comm);
	jb_str(jb, "service", r->service);
	jb_str(jb, "container_id", r->container.container_id);
	jb_str(jb, "pod_uid", r->container.pod_uid);
	jb_str(jb, "method", r->method);
	jb_str(jb, "path", r->path);
	jb_str(jb, "route", r->route);
	jb_i64(jb, "status", r->status);
	jb_str(jb, "outcome", r->outcome == REC_OK ? "ok" : "failed");
	jb_str(jb, "error", r->error ? r->error : "");
	jb_u64(jb, "duration_us", record__duration_us(r));
	jb_u64(jb, "ttfb_us", record__ttfb_us(r));
	if (r->queue_ns >= 0)	/* omitted where the kernel cannot tell (< 6.3) */
		jb_u64(jb, "queue_us", r->queue_ns / 1000);
	jb_u64(jb, "bytes_in", r->bytes_in);
	jb_u64(jb, "bytes_out", r->bytes_out);
	jb_str(jb, "client", r->client);
	jb_str(jb, "server", r->server);
	jb_str(jb, "transport", r->transport == REC_UNIX ? "unix" : "tcp");
	if (r->transport == REC_UNIX)
		jb_u64(jb, "peer_pid", r->peer_pid);
	jb_str(jb, "version", r->http2 ? "2" : r->version_minor ? "1.1" : "1.0");
	if (r->grpc_status >= 0)
		jb_i64(jb, "grpc_status", r->grpc_status);
	jb_str(jb, "scheme", r->tls ? "https" : "http");
	jb_str(jb, "host", r->host);
	jb_str(jb, "user_agent", r->user_agent);
	jb_str(jb, "content_type", r->content_type);
	if (r->kind == REC_CLIENT) {	/* an outgoing call (docs/context.md) */
		jb_str(jb, "kind", "client");
		jb_str(jb, "link", record_link_name(r->link));
	}
	jb_arr_open(jb, "flags");
	for (size_t i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++)
		if (r->flags & flag_names[i].bit)
			jb_str(jb, NULL, flag_names[i].name);
	jb_arr_close(jb);
	jb_obj_close(jb);
}
