// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "base/ids.h"
#include "base/counters.h"
#include "sinks/logstore.h"
#include "request/sink.h"
#include "conn/record.h"

struct log_store *log_store__new(size_t cap)
{
	struct log_store *s = cap ? calloc(1, sizeof(*s)) : NULL;

	if (!s) {
		errno = cap ? ENOMEM : EINVAL;
		return NULL;
	}
	s->ring = calloc(cap, sizeof(*s->ring));
	if (!s->ring) {
		free(s);
		return NULL;
	}
	s->cap = cap;
	return s;
}

void log_store__push(void *ctx, const struct log_rec *r)
{
	struct log_store *s = ctx;
	struct log_rec *c = log_rec_dup(r);

	if (!c) {
		s->dropped++;
		return;
	}
	free(s->ring[s->total % s->cap]);
	s->ring[s->total % s->cap] = c;
	s->total++;
}

size_t log_store__count(const struct log_store *s)
{
	return s->total < s->cap ? s->total : s->cap;
}

const struct log_rec *log_store__get(const struct log_store *s, size_t i)
{
	if (i >= log_store__count(s))
		return NULL;
	return s->ring[(s->total - 1 - i) % s->cap];
}

void log_store__free(struct log_store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->cap; i++)
		free(s->ring[i]);
	free(s->ring);
	free(s);
}

/* A JSON string span of r's line, unescaped (jb_strn escapes it again). */
static void json_span(struct jbuf *jb, const char *key, const struct log_rec *r, size_t off,
		      size_t len)
{
	char *tmp = malloc(len + 1);

	if (!tmp) {
		jb->oom = true;
		return;
	}
	len = log_json_unescape(r->line + off, len, tmp);
	jb_strn(jb, key, tmp, len);
	free(tmp);
}

static void attrs_json(const struct log_rec *r, struct jbuf *jb)
{
	char key[256], num[64];

	jb_key(jb, "attributes");
	jb_obj_open(jb);
	for (int i = 0; i < r->p.n_attrs; i++) {
		const struct log_attr *a = &r->p.attrs[i];
		size_t kl = a->key_len < sizeof(key) ? a->key_len : sizeof(key) - 1;
		size_t vl = a->val_len < sizeof(num) ? a->val_len : sizeof(num) - 1;

		memcpy(num, r->line + a->val_off, vl);
		num[vl] = 0;
		memcpy(key, r->line + a->key_off, kl);
		key[kl] = 0;
		log_json_unescape(key, kl, key);
		switch (a->type) {
		case LOGV_STR:
			json_span(jb, key, r, a->val_off, a->val_len);
			break;
		case LOGV_INT:
			jb_i64(jb, key, strtoll(num, NULL, 10));
			break;
		case LOGV_DBL:
			jb_dbl(jb, key, strtod(num, NULL));
			break;
		case LOGV_BOOL:
			jb_bool(jb, key, num[0] == 't');
			break;
		default:	/* nested: its JSON text, as a string */
			jb_strn(jb, key, r->line + a->val_off, a->val_len);
		}
	}
	jb_obj_close(jb);
}

void log_rec_json(const struct log_rec *r, struct jbuf *jb)
{
	char hex[33], when[40];

	jb_obj_open(jb);
	jb_u64(jb, "ts_ns", r->wall_ns);
	rfc3339(when, sizeof(when), r->wall_ns);
	jb_str(jb, "time", when);
	jb_u64(jb, "pid", r->pid);
	jb_u64(jb, "tid", r->tid);
	jb_str(jb, "comm", r->comm);
	jb_str(jb, "service", r->service);
	jb_str(jb, "stream", r->fd == 2 ? "stderr" : "stdout");
	jb_u64(jb, "severity_number", r->p.severity);
	jb_str(jb, "severity_text", r->p.severity_text);
	if (r->flags & LOGF_BODY_JSON)
		json_span(jb, "body", r, r->p.body_off, r->p.body_len);
	else
		jb_strn(jb, "body", r->line + r->p.body_off, r->p.body_len);
	attrs_json(r, jb);
	jb_str(jb, "link", log_link_name(r->link.kind));
	ids_hex(hex, r->link.trace_id, 16);
	jb_str(jb, "trace_id", r->link.kind == LOG_LINKED ? hex : "");
	ids_hex(hex, r->link.span_id, 8);
	jb_str(jb, "span_id", r->link.kind == LOG_LINKED ? hex : "");
	jb_bool(jb, "truncated", r->flags & LOGF_TRUNCATED);
	if (r->container.container_id[0])
		jb_str(jb, "container_id", r->container.container_id);
	if (r->container.pod_uid[0])
		jb_str(jb, "pod_uid", r->container.pod_uid);
	jb_obj_close(jb);
}

/* ---- the sink (sink.h) ---- */

static void sink_free(void *ctx)
{
	log_store__free(ctx);
}

const struct sink_ops log_store_sink = {
	.name = "log_store",
	.log = log_store__push,
	.free = sink_free,
};
