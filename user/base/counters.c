// SPDX-License-Identifier: MIT
/* obs_* samples as Prometheus text or JSON (see counters.h). */
#include <string.h>
#include "base/counters.h"

void counter_family(struct counter_visit *v, const char *name, const char *type,
		    const char *help)
{
	v->s = (struct counter_sample){ .name = name, .type = type, .help = help };
}

void counter_u64(struct counter_visit *v, uint64_t u, const char *l0, const char *v0,
		 const char *l1, const char *v1)
{
	v->s.label[0] = l0;
	v->s.value[0] = v0;
	v->s.label[1] = l1;
	v->s.value[1] = v1;
	v->s.u = u;
	v->s.real = false;
	v->s.none = false;
	v->fn(v->ctx, &v->s);
}

void counter_ratio(struct counter_visit *v, double d)
{
	v->s.label[0] = NULL;
	v->s.d = d;
	v->s.real = true;
	v->s.none = false;
	v->fn(v->ctx, &v->s);
}

void counter_none(struct counter_visit *v)
{
	v->s.label[0] = NULL;
	v->s.none = true;
	v->fn(v->ctx, &v->s);
}

void prom_label_value(struct jbuf *o, const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '\\' || v[i] == '"')
			jb_raw(o, "\\", 1);
		if (v[i] == '\n')
			jb_raw(o, "\\n", 2);
		else
			jb_raw(o, v + i, 1);
	}
}

static void text_labels(struct jbuf *o, const struct counter_sample *s)
{
	if (!s->label[0])
		return;
	jb_raw(o, "{", 1);
	for (int i = 0; i < COUNTER_LABELS_MAX && s->label[i]; i++) {
		jb_printf(o, "%s%s=\"", i ? "," : "", s->label[i]);
		prom_label_value(o, s->value[i], strlen(s->value[i]));
		jb_raw(o, "\"", 1);
	}
	jb_raw(o, "}", 1);
}

void counters_text(void *ctx, const struct counter_sample *s)
{
	struct counters_text *ct = ctx;
	struct jbuf *o = ct->out;

	if (!ct->family || strcmp(ct->family, s->name)) {
		jb_printf(o, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help, s->name, s->type);
		ct->family = s->name;
	}
	if (s->none)
		return;
	jb_raw(o, s->name, strlen(s->name));
	text_labels(o, s);
	if (s->real)
		jb_printf(o, " %.6f\n", s->d);
	else
		jb_printf(o, " %llu\n", (unsigned long long)s->u);
}

static void json_value(struct jbuf *o, const char *key, const struct counter_sample *s)
{
	if (s->real)
		jb_dbl(o, key, s->d);
	else
		jb_u64(o, key, s->u);
}

/* Close the array of the family before, if it had one. */
static void json_family_end(struct counters_json *cj)
{
	if (cj->in_array)
		jb_arr_close(cj->out);
	cj->in_array = false;
}

void counters_json(void *ctx, const struct counter_sample *s)
{
	struct counters_json *cj = ctx;
	struct jbuf *o = cj->out;

	if (!cj->family || strcmp(cj->family, s->name)) {
		json_family_end(cj);
		cj->family = s->name;
		if (s->none || s->label[0]) {
			jb_arr_open(o, s->name);
			cj->in_array = true;
		}
	}
	if (s->none)
		return;
	if (!cj->in_array) {
		json_value(o, s->name, s);
		return;
	}
	jb_obj_open(o);
	for (int i = 0; i < COUNTER_LABELS_MAX && s->label[i]; i++)
		jb_str(o, s->label[i], s->value[i]);
	json_value(o, "value", s);
	jb_obj_close(o);
}

void counters_json_end(struct counters_json *cj)
{
	json_family_end(cj);
	cj->family = NULL;
}
