// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "otlp.pb-c.h"
#include "sinks/otlp_encode.h"
#include "sinks/otlp_logs.h"
#include "request/sink.h"
#include "sinks/otlp_export.h"
#include "sinks/sender.h"

typedef Obs__Otlp__KeyValue KeyValue;
typedef Obs__Otlp__AnyValue AnyValue;

#define REC_ATTRS	(LOG_ATTRS_MAX + 4)	/* + log.iostream, thread.id, obs.truncated, obs.trace_link */
#define RES_ATTRS	10

struct otlp_logs {
	struct otlp_logs_config c;
	struct otlp_queue q;		/* struct log_rec *: owned copies */
	struct otlp_export x;
	struct otlp_logs_stats st;
};

/* ---- configuration ---- */

int otlp_logs_config_endpoint(struct otlp_logs_config *c, const char *url, bool full)
{
	return otlp_url(c->url, url, full, "/v1/logs");
}

int otlp_logs_config_exporter(struct otlp_logs_config *c, const char *name)
{
	if (!strcmp(name, "otlp"))
		c->off = false;
	else if (!strcmp(name, "none"))
		c->off = true;
	else
		return -EINVAL;
	return 0;
}

int otlp_logs_config_header(struct otlp_logs_config *c, const char *kv)
{
	return otlp_header_add(c->headers, &c->n_headers, kv);
}

void otlp_logs_config_init(struct otlp_logs_config *c)
{
	memset(c, 0, sizeof(*c));
	c->delay_ms = 1000;
	c->max_batch = 512;
	c->max_queue = 2048;
	c->timeout_ms = 10000;
}

int otlp_logs_config_env(struct otlp_logs_config *c)
{
	return otlp_env_headers(c->headers, &c->n_headers, "OTEL_EXPORTER_OTLP_LOGS_HEADERS") ?:
	       otlp_env_uint("OTEL_BLRP_SCHEDULE_DELAY", &c->delay_ms, 1) ?:
	       otlp_env_uint("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", &c->max_batch, 1) ?:
	       otlp_env_uint("OTEL_BLRP_MAX_QUEUE_SIZE", &c->max_queue, 1) ?:
	       otlp_env_uint("OTEL_EXPORTER_OTLP_TIMEOUT", &c->timeout_ms, 1) ?:
	       otlp_env_uint("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", &c->timeout_ms, 1);
}

/* ---- encoding ---- */

/* Everything one log record needs, allocated per batch. */
struct rec_mem {
	Obs__Otlp__LogRecord lr;
	AnyValue body;
	KeyValue kv[REC_ATTRS];
	AnyValue av[REC_ATTRS];
	KeyValue *kvp[REC_ATTRS];
};

struct res_mem {
	Obs__Otlp__ResourceLogs rl;
	Obs__Otlp__Resource res;
	Obs__Otlp__ScopeLogs sl;
	Obs__Otlp__ScopeLogs *slp;
	KeyValue kv[RES_ATTRS];
	AnyValue av[RES_ATTRS];
	KeyValue *kvp[RES_ATTRS];
	const struct log_rec *first;	/* of the group: pid, comm, container */
	const char *service;
};

/* Decoded strings of a batch: one arena, sized up front. */
struct arena {
	char *buf;
	size_t len;
};

static Obs__Otlp__InstrumentationScope scope = OBS__OTLP__INSTRUMENTATION_SCOPE__INIT;

static AnyValue *kv_init(KeyValue *kv, AnyValue *av, char *key)
{
	obs__otlp__key_value__init(kv);
	obs__otlp__any_value__init(av);
	kv->key = key;
	kv->value = av;
	return av;
}

static void kv_str(KeyValue *kv, AnyValue *av, const char *k, const char *v)
{
	av = kv_init(kv, av, (char *)k);
	av->value_case = OBS__OTLP__ANY_VALUE__VALUE_STRING_VALUE;
	av->string_value = (char *)v;
}

static void kv_int(KeyValue *kv, AnyValue *av, const char *k, int64_t v)
{
	av = kv_init(kv, av, (char *)k);
	av->value_case = OBS__OTLP__ANY_VALUE__VALUE_INT_VALUE;
	av->int_value = v;
}

static void kv_bool(KeyValue *kv, AnyValue *av, const char *k, bool v)
{
	av = kv_init(kv, av, (char *)k);
	av->value_case = OBS__OTLP__ANY_VALUE__VALUE_BOOL_VALUE;
	av->bool_value = v;
}

/* s[0..n) of a JSON string body, unescaped into the arena. */
static char *unescaped(struct arena *a, const char *s, size_t n)
{
	char *out = a->buf + a->len;

	a->len += log_json_unescape(s, n, out) + 1;
	return out;
}

static char *copied(struct arena *a, const char *s, size_t n)
{
	char *out = a->buf + a->len;

	memcpy(out, s, n);
	out[n] = 0;
	a->len += n + 1;
	return out;
}

/* One JSON field as an attribute. */
static void json_attr(struct rec_mem *m, int i, const struct log_rec *r,
		      const struct log_attr *f, struct arena *a)
{
	const char *v = r->line + f->val_off;
	AnyValue *av = kv_init(&m->kv[i], &m->av[i], unescaped(a, r->line + f->key_off, f->key_len));
	char *txt = copied(a, v, f->val_len);

	switch (f->type) {
	case LOGV_STR:
		av->value_case = OBS__OTLP__ANY_VALUE__VALUE_STRING_VALUE;
		av->string_value = unescaped(a, v, f->val_len);
		break;
	case LOGV_INT:
		av->value_case = OBS__OTLP__ANY_VALUE__VALUE_INT_VALUE;
		av->int_value = strtoll(txt, NULL, 10);
		break;
	case LOGV_DBL:
		av->value_case = OBS__OTLP__ANY_VALUE__VALUE_DOUBLE_VALUE;
		av->double_value = strtod(txt, NULL);
		break;
	case LOGV_BOOL:
		av->value_case = OBS__OTLP__ANY_VALUE__VALUE_BOOL_VALUE;
		av->bool_value = txt[0] == 't';
		break;
	default:	/* objects and arrays: their JSON text */
		av->value_case = OBS__OTLP__ANY_VALUE__VALUE_STRING_VALUE;
		av->string_value = txt;
	}
}

static void fill_record(struct rec_mem *m, const struct log_rec *r, struct arena *a)
{
	Obs__Otlp__LogRecord *lr = &m->lr;
	int n = 0;

	obs__otlp__log_record__init(lr);
	obs__otlp__any_value__init(&m->body);
	lr->time_unix_nano = r->wall_ns;
	lr->observed_time_unix_nano = r->observed_wall_ns;
	lr->severity_number = (Obs__Otlp__SeverityNumber)r->p.severity;
	if (r->p.severity_text[0])
		lr->severity_text = (char *)r->p.severity_text;
	m->body.value_case = OBS__OTLP__ANY_VALUE__VALUE_STRING_VALUE;
	m->body.string_value = r->flags & LOGF_BODY_JSON
		? unescaped(a, r->line + r->p.body_off, r->p.body_len)
		: copied(a, r->line + r->p.body_off, r->p.body_len);
	lr->body = &m->body;
	kv_str(&m->kv[n], &m->av[n], "log.iostream", r->fd == 2 ? "stderr" : "stdout");
	n++;
	kv_int(&m->kv[n], &m->av[n], "thread.id", r->tid);
	n++;
	for (int i = 0; i < r->p.n_attrs; i++, n++)
		json_attr(m, n, r, &r->p.attrs[i], a);
	if (r->flags & LOGF_TRUNCATED)
		kv_bool(&m->kv[n], &m->av[n], "obs.truncated", true), n++;
	if (r->link.kind != LOG_LINKED) {
		kv_str(&m->kv[n], &m->av[n], "obs.trace_link", log_link_name(r->link.kind));
		n++;
	} else {
		lr->trace_id = (ProtobufCBinaryData){ 16, (uint8_t *)r->link.trace_id };
		lr->span_id = (ProtobufCBinaryData){ 8, (uint8_t *)r->link.span_id };
		lr->flags = r->link.sampled ? 1 : 0;	/* W3C trace flags */
	}
	for (int i = 0; i < n; i++)
		m->kvp[i] = &m->kv[i];
	lr->n_attributes = n;
	lr->attributes = m->kvp;
	lr->dropped_attributes_count = r->p.attrs_dropped;
}

static void fill_resource(struct res_mem *rm, const char *host)
{
	const struct log_rec *r = rm->first;
	const char *rt = cgroup_runtime_name(r->container.runtime);
	int n = 7;

	obs__otlp__resource_logs__init(&rm->rl);
	obs__otlp__resource__init(&rm->res);
	obs__otlp__scope_logs__init(&rm->sl);
	kv_str(&rm->kv[0], &rm->av[0], "service.name", rm->service);
	kv_int(&rm->kv[1], &rm->av[1], "process.pid", r->pid);
	kv_str(&rm->kv[2], &rm->av[2], "process.executable.name", r->comm);
	kv_str(&rm->kv[3], &rm->av[3], "host.name", host);
	kv_str(&rm->kv[4], &rm->av[4], "telemetry.sdk.name", "obs");
	kv_str(&rm->kv[5], &rm->av[5], "telemetry.sdk.language", "c");
	kv_str(&rm->kv[6], &rm->av[6], "telemetry.sdk.version", OBS_VERSION);
	if (r->container.container_id[0])
		kv_str(&rm->kv[n], &rm->av[n], "container.id", r->container.container_id), n++;
	if (r->container.pod_uid[0])
		kv_str(&rm->kv[n], &rm->av[n], "k8s.pod.uid", r->container.pod_uid), n++;
	if (rt[0])
		kv_str(&rm->kv[n], &rm->av[n], "container.runtime", rt), n++;
	for (int i = 0; i < n; i++)
		rm->kvp[i] = &rm->kv[i];
	rm->res.n_attributes = n;
	rm->res.attributes = rm->kvp;
	rm->rl.resource = &rm->res;
	scope.name = "obs";
	scope.version = OBS_VERSION;
	rm->sl.scope = &scope;
	rm->slp = &rm->sl;
	rm->rl.n_scope_logs = 1;
	rm->rl.scope_logs = &rm->slp;
}

static const char *service_of(const struct log_rec *r, const char *override)
{
	return override && override[0] ? override : r->service;
}

int otlp_logs_encode(const struct log_rec *const *recs, size_t n, const char *service_name,
		     uint8_t **out, size_t *len)
{
	Obs__Otlp__ExportLogsServiceRequest req = OBS__OTLP__EXPORT_LOGS_SERVICE_REQUEST__INIT;
	size_t m = n ? n : 1, n_res = 0, used = 0, text = 1;
	struct rec_mem *rec = calloc(m, sizeof(*rec));
	struct res_mem *rm = calloc(m, sizeof(*rm));
	Obs__Otlp__ResourceLogs **rlp = calloc(m, sizeof(*rlp));
	Obs__Otlp__LogRecord **lrs = calloc(m, sizeof(*lrs));
	struct arena a = { 0 };
	char host[256] = "";
	int err = -ENOMEM;

	for (size_t i = 0; i < n; i++)	/* unescaping only shrinks; + NULs, + raw copies */
		text += 2 * (recs[i]->len + 2 * recs[i]->p.n_attrs + 2);
	a.buf = malloc(text);
	if (!rec || !rm || !rlp || !lrs || !a.buf)
		goto out;
	gethostname(host, sizeof(host) - 1);
	for (size_t i = 0; i < n; i++) {
		const char *svc = service_of(recs[i], service_name);
		size_t g;

		for (g = 0; g < n_res; g++)
			if (rm[g].first->pid == recs[i]->pid && !strcmp(rm[g].service, svc))
				break;
		if (g == n_res) {
			rm[g].first = recs[i];
			rm[g].service = svc;
			n_res++;
		}
		fill_record(&rec[i], recs[i], &a);
	}
	for (size_t g = 0; g < n_res; g++) {	/* each group's records contiguous */
		size_t first = used;

		for (size_t i = 0; i < n; i++)
			if (rm[g].first->pid == recs[i]->pid &&
			    !strcmp(rm[g].service, service_of(recs[i], service_name)))
				lrs[used++] = &rec[i].lr;
		fill_resource(&rm[g], host);
		rm[g].sl.n_log_records = used - first;
		rm[g].sl.log_records = lrs + first;
		rlp[g] = &rm[g].rl;
	}
	req.n_resource_logs = n_res;
	req.resource_logs = rlp;
	*len = obs__otlp__export_logs_service_request__get_packed_size(&req);
	*out = malloc(*len ? *len : 1);
	if (!*out)
		goto out;
	obs__otlp__export_logs_service_request__pack(&req, *out);
	err = 0;
out:
	free(a.buf);
	free(rec);
	free(rm);
	free(rlp);
	free(lrs);
	return err;
}

/* ---- exporter ---- */

static void count_partial(struct otlp_logs *o, const char *resp, size_t len)
{
	Obs__Otlp__ExportLogsServiceResponse *r;

	if (!len)
		return;
	r = obs__otlp__export_logs_service_response__unpack(NULL, len, (const uint8_t *)resp);
	if (!r)
		return;
	if (r->partial_success && r->partial_success->rejected_log_records > 0)
		o->st.rejected_partial += r->partial_success->rejected_log_records;
	obs__otlp__export_logs_service_response__free_unpacked(r, NULL);
}

static void on_done(void *ctx, bool delivered, size_t n, const char *resp, size_t len)
{
	struct otlp_logs *o = ctx;

	if (delivered) {
		o->st.exported += n;
		count_partial(o, resp, len);
	} else {
		o->st.dropped_export += n;
	}
}

struct otlp_logs *otlp_logs__new(const struct otlp_logs_config *c)
{
	struct otlp_logs *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->c = *c;
	if (o->c.max_batch > o->c.max_queue)
		o->c.max_batch = o->c.max_queue;
	if (otlp_queue__init(&o->q, sizeof(struct log_rec *), o->c.max_queue) ||
	    otlp_export__init(&o->x, "otlp_logs", o->c.url, o->c.headers, o->c.n_headers,
			      o->c.timeout_ms, on_done, o)) {
		otlp_queue__fini(&o->q);
		free(o);
		errno = ENOMEM;
		return NULL;
	}
	return o;
}

void otlp_logs__record(void *ctx, const struct log_rec *r)
{
	struct otlp_logs *o = ctx;
	struct log_rec *copy, **slot;

	if (o->q.len >= o->q.cap || !(copy = log_rec_dup(r))) {
		o->st.dropped_queue++;
		return;
	}
	slot = otlp_queue__push(&o->q);
	*slot = copy;
	o->st.queued++;
	o->st.queue_len = o->q.len;
}

static struct log_rec *queued(const struct otlp_logs *o, size_t i)
{
	return *(struct log_rec **)otlp_queue__at(&o->q, i);
}

/* Take up to max_batch records off the queue, encode and hand them over. */
static void send_batch(struct otlp_logs *o)
{
	size_t n = o->q.len < o->c.max_batch ? o->q.len : o->c.max_batch;
	const struct log_rec **recs = calloc(n, sizeof(*recs));
	uint8_t *body = NULL;
	size_t len = 0;
	int err = -ENOMEM;

	if (recs) {
		for (size_t i = 0; i < n; i++)
			recs[i] = queued(o, i);
		err = otlp_logs_encode(recs, n, o->c.service_name, &body, &len);
		free(recs);
	}
	if (err) {
		otlp_export__encode_error(&o->x, err);
		return;	/* the records stay queued; the queue bound still holds */
	}
	for (size_t i = 0; i < n; i++)
		free(queued(o, i));
	otlp_queue__pop(&o->q, n);
	o->st.queue_len = o->q.len;
	o->st.batches++;
	otlp_export__send(&o->x, body, len, n);
}

void otlp_logs__poll(struct otlp_logs *o)
{
	if (otlp_export__due(&o->x, o->q.len, o->c.max_batch, o->c.delay_ms))
		send_batch(o);
}

static void poll_cb(void *ctx)
{
	otlp_logs__poll(ctx);
}

static bool pending_cb(void *ctx)
{
	return ((struct otlp_logs *)ctx)->q.len;
}

void otlp_logs__flush(struct otlp_logs *o, unsigned timeout_ms)
{
	if (!o)
		return;
	o->c.delay_ms = 0;
	otlp_export__flush(&o->x, timeout_ms, poll_cb, pending_cb, o);
}

const struct otlp_logs_stats *otlp_logs__stats(const struct otlp_logs *o)
{
	return &o->st;
}

const struct sender_stats *otlp_logs__sender_stats(const struct otlp_logs *o)
{
	return sender__stats(o->x.snd);
}

void otlp_logs__free(struct otlp_logs *o)
{
	if (!o)
		return;
	otlp_export__fini(&o->x);
	for (size_t i = 0; i < o->q.len; i++)
		free(queued(o, i));
	otlp_queue__fini(&o->q);
	free(o);
}

/* ---- the sink (sink.h) ---- */

static void sink_counters(void *ctx, struct counter_visit *v)
{
	const struct otlp_logs_stats *st = otlp_logs__stats(ctx);

	counter_family(v, "obs_log_records_exported_total", "counter",
		       "Log records acknowledged by the OTLP endpoint");
	counter_u64(v, st->exported, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_log_records_dropped_total", "counter",
		       "Log records not exported, by reason");
	counter_u64(v, st->dropped_queue, "reason", "queue_full", NULL, NULL);
	counter_u64(v, st->dropped_export, "reason", "export_failed", NULL, NULL);
	counter_family(v, "obs_log_records_queued", "gauge", "Log records waiting for export");
	counter_u64(v, st->queue_len, NULL, NULL, NULL, NULL);
}

static const struct sender_stats *sink_sender(void *ctx)
{
	return otlp_logs__sender_stats(ctx);
}

static void sink_flush(void *ctx, const struct pipeline_stats *st, unsigned timeout_ms)
{
	otlp_logs__flush(ctx, timeout_ms);
}

static void sink_free(void *ctx)
{
	otlp_logs__free(ctx);
}

const struct sink_ops otlp_logs_sink = {
	.name = "otlp_logs",
	.log = otlp_logs__record,
	.poll = poll_cb,
	.counters = sink_counters,
	.sender = sink_sender,
	.flush = sink_flush,
	.free = sink_free,
};
