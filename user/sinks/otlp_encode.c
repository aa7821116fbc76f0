// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "otlp.pb-c.h"
#include "request/errors.h"
#include "sinks/otlp_encode.h"
#include "request/span.h"

typedef Obs__Otlp__KeyValue KeyValue;
typedef Obs__Otlp__AnyValue AnyValue;

/* Everything one span needs, allocated per batch. */
struct span_mem {
	Obs__Otlp__Span span;
	Obs__Otlp__Status status;
	struct span_view view;
	KeyValue kv[SPAN_MAX_ATTRS];
	AnyValue av[SPAN_MAX_ATTRS];
	KeyValue *kvp[SPAN_MAX_ATTRS];
	/* the "exception" event of a request whose handler raised */
	Obs__Otlp__Span__Event ev;
	Obs__Otlp__Span__Event *evp;
	KeyValue ekv[3];
	AnyValue eav[3];
	KeyValue *ekvp[3];
};

#define RES_ATTRS 10	/* 7 always, container.id, k8s.pod.uid, container.runtime */

struct res_mem {
	Obs__Otlp__ResourceSpans rs;
	Obs__Otlp__Resource res;
	Obs__Otlp__ScopeSpans ss;
	Obs__Otlp__ScopeSpans *ssp;
	KeyValue kv[RES_ATTRS];
	AnyValue av[RES_ATTRS];
	KeyValue *kvp[RES_ATTRS];
	Obs__Otlp__Span **spans;
	const char *service;
	uint32_t pid;
	const char *comm;
	const struct cgroup_ident *container;
};

static Obs__Otlp__InstrumentationScope scope = OBS__OTLP__INSTRUMENTATION_SCOPE__INIT;

static void kv_str(KeyValue *kv, AnyValue *av, const char *k, const char *v)
{
	obs__otlp__key_value__init(kv);
	obs__otlp__any_value__init(av);
	kv->key = (char *)k;
	av->value_case = OBS__OTLP__ANY_VALUE__VALUE_STRING_VALUE;
	av->string_value = (char *)v;
	kv->value = av;
}

static void kv_int(KeyValue *kv, AnyValue *av, const char *k, int64_t v)
{
	obs__otlp__key_value__init(kv);
	obs__otlp__any_value__init(av);
	kv->key = (char *)k;
	av->value_case = OBS__OTLP__ANY_VALUE__VALUE_INT_VALUE;
	av->int_value = v;
	kv->value = av;
}

static void fill_span(struct span_mem *m, const struct record *r)
{
	Obs__Otlp__Span *s = &m->span;
	struct span_view *v = &m->view;

	span_view(v, r);
	obs__otlp__span__init(s);
	obs__otlp__status__init(&m->status);
	s->trace_id = (ProtobufCBinaryData){ 16, (uint8_t *)r->trace_id };
	s->span_id = (ProtobufCBinaryData){ 8, (uint8_t *)r->span_id };
	if (r->has_parent)
		s->parent_span_id = (ProtobufCBinaryData){ 8, (uint8_t *)r->parent_span_id };
	if (r->tracestate[0])
		s->trace_state = (char *)r->tracestate;
	s->name = v->name;
	s->kind = r->kind == REC_CLIENT ? OBS__OTLP__SPAN__SPAN_KIND__SPAN_KIND_CLIENT
					: OBS__OTLP__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
	s->start_time_unix_nano = r->wall_start_ns;
	s->end_time_unix_nano = r->wall_start_ns + (r->end_ns - r->start_ns);
	s->flags = r->sampled ? 1 : 0;	/* W3C trace flags */
	for (int i = 0; i < v->n_attrs; i++) {
		if (v->attrs[i].type == SPAN_STR)
			kv_str(&m->kv[i], &m->av[i], v->attrs[i].key, v->attrs[i].str);
		else
			kv_int(&m->kv[i], &m->av[i], v->attrs[i].key, v->attrs[i].i);
		m->kvp[i] = &m->kv[i];
	}
	s->n_attributes = v->n_attrs;
	s->attributes = m->kvp;
	m->status.code = (Obs__Otlp__Status__StatusCode)v->status;
	if (v->status_message && v->status_message[0])
		m->status.message = (char *)v->status_message;
	s->status = &m->status;
	if (r->exc) {
		const struct exc_info *x = r->exc;

		obs__otlp__span__event__init(&m->ev);
		m->ev.name = "exception";
		m->ev.time_unix_nano = r->wall_start_ns + (x->ts_ns > r->start_ns ?
							   x->ts_ns - r->start_ns : 0);
		kv_str(&m->ekv[0], &m->eav[0], "exception.type", x->type);
		kv_str(&m->ekv[1], &m->eav[1], "exception.message", x->message);
		kv_str(&m->ekv[2], &m->eav[2], "exception.stacktrace", x->text);
		for (int i = 0; i < 3; i++)
			m->ekvp[i] = &m->ekv[i];
		m->ev.n_attributes = 3;
		m->ev.attributes = m->ekvp;
		m->evp = &m->ev;
		s->n_events = 1;
		s->events = &m->evp;
	}
}

/* container.id, k8s.pod.uid, container.runtime when known, from kv[n]; returns the new n. */
static int container_attrs(struct res_mem *rm, int n)
{
	const struct cgroup_ident *c = rm->container;
	const char *rt = cgroup_runtime_name(c->runtime);

	if (c->container_id[0]) {
		kv_str(&rm->kv[n], &rm->av[n], "container.id", c->container_id);
		n++;
	}
	if (c->pod_uid[0]) {
		kv_str(&rm->kv[n], &rm->av[n], "k8s.pod.uid", c->pod_uid);
		n++;
	}
	if (rt[0]) {
		kv_str(&rm->kv[n], &rm->av[n], "container.runtime", rt);
		n++;
	}
	return n;
}

static void fill_resource(struct res_mem *rm, const char *host)
{
	int n;

	obs__otlp__resource_spans__init(&rm->rs);
	obs__otlp__resource__init(&rm->res);
	obs__otlp__scope_spans__init(&rm->ss);
	kv_str(&rm->kv[0], &rm->av[0], "service.name", rm->service);
	kv_int(&rm->kv[1], &rm->av[1], "process.pid", rm->pid);
	kv_str(&rm->kv[2], &rm->av[2], "process.executable.name", rm->comm);
	kv_str(&rm->kv[3], &rm->av[3], "host.name", host);
	kv_str(&rm->kv[4], &rm->av[4], "telemetry.sdk.name", "obs");
	kv_str(&rm->kv[5], &rm->av[5], "telemetry.sdk.language", "c");
	kv_str(&rm->kv[6], &rm->av[6], "telemetry.sdk.version", OBS_VERSION);
	n = container_attrs(rm, 7);
	for (int i = 0; i < n; i++)
		rm->kvp[i] = &rm->kv[i];
	rm->res.n_attributes = n;
	rm->res.attributes = rm->kvp;
	rm->rs.resource = &rm->res;
	scope.name = "obs";
	scope.version = OBS_VERSION;
	rm->ss.scope = &scope;
	rm->ssp = &rm->ss;
	rm->rs.n_scope_spans = 1;
	rm->rs.scope_spans = &rm->ssp;
}

int otlp_encode(const struct record *const *recs, size_t n, const char *service_name,
		uint8_t **out, size_t *len)
{
	Obs__Otlp__ExportTraceServiceRequest req = OBS__OTLP__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	struct span_mem *sm = calloc(n ? n : 1, sizeof(*sm));
	struct res_mem *rm = calloc(n ? n : 1, sizeof(*rm));
	Obs__Otlp__ResourceSpans **rsp = calloc(n ? n : 1, sizeof(*rsp));
	Obs__Otlp__Span **spans = calloc(n ? n : 1, sizeof(*spans));
	size_t n_res = 0, used = 0;
	char host[256] = "";
	int err = -ENOMEM;

	if (!sm || !rm || !rsp || !spans)
		goto out;
	gethostname(host, sizeof(host) - 1);
	/* Group records by resource, keeping each group's spans contiguous. */
	for (size_t i = 0; i < n; i++) {
		const char *svc = service_name && service_name[0] ? service_name : recs[i]->service;
		size_t g;

		for (g = 0; g < n_res; g++)
			if (rm[g].pid == recs[i]->pid && !strcmp(rm[g].service, svc))
				break;
		if (g == n_res) {
			rm[g].service = svc;
			rm[g].pid = recs[i]->pid;
			rm[g].comm = recs[i]->comm;
			rm[g].container = &recs[i]->container;
			n_res++;
		}
		fill_span(&sm[i], recs[i]);
	}
	for (size_t g = 0; g < n_res; g++) {
		rm[g].spans = spans + used;
		for (size_t i = 0; i < n; i++) {
			const char *svc = service_name && service_name[0] ? service_name
									   : recs[i]->service;

			if (rm[g].pid == recs[i]->pid && !strcmp(rm[g].service, svc))
				spans[used++] = &sm[i].span;
		}
		fill_resource(&rm[g], host);
		rm[g].ss.n_spans = spans + used - rm[g].spans;
		rm[g].ss.spans = rm[g].spans;
		rsp[g] = &rm[g].rs;
	}
	req.n_resource_spans = n_res;
	req.resource_spans = rsp;
	*len = obs__otlp__export_trace_service_request__get_packed_size(&req);
	*out = malloc(*len ? *len : 1);
	if (!*out)
		goto out;
	obs__otlp__export_trace_service_request__pack(&req, *out);
	err = 0;
out:
	free(sm);
	free(rm);
	free(rsp);
	free(spans);
	return err;
}
