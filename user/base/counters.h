/* SPDX-License-Identifier: MIT */
/*
 * counters — obsd's own health series (obs_*) as a stream of samples that
 * two writers turn into text: Prometheus exposition for /metrics and JSON
 * members for /api/stats. A producer visits its samples family by family
 * (all samples of a family in a row, the first one announcing it); so both
 * endpoints show the same series and cannot drift apart.
 */
#ifndef OBS_COUNTERS_H
#define OBS_COUNTERS_H

#include <stdbool.h>
#include <stdint.h>
#include "base/json.h"

#define COUNTER_LABELS_MAX	2

/* One sample of one obs_* series. */
struct counter_sample {
	const char *name;		/* the family: "obs_events_lost_total" */
	const char *type;		/* "counter" or "gauge" */
	const char *help;		/* one line */
	const char *label[COUNTER_LABELS_MAX];	/* label names, NULL after the last */
	const char *value[COUNTER_LABELS_MAX];	/* their values */
	uint64_t u;			/* the value, unless real */
	double d;			/* the value when real (ratios) */
	bool real;
	bool none;			/* no sample: the family is only announced */
};

/* Called once per sample by a producer. */
typedef void (*counter_fn)(void *ctx, const struct counter_sample *s);

/* A producer's state: where samples go and the family being visited. */
struct counter_visit {
	counter_fn fn;
	void *ctx;
	struct counter_sample s;	/* internal */
};

/* Start a family: the samples that follow belong to it. */
void counter_family(struct counter_visit *v, const char *name, const char *type,
		    const char *help);

/* One sample of the current family; l0 and l1 are label names (NULL: none) with values. */
void counter_u64(struct counter_visit *v, uint64_t u, const char *l0, const char *v0,
		 const char *l1, const char *v1);

/* A sample of a ratio, without labels. */
void counter_ratio(struct counter_visit *v, double d);

/* No sample yet: announce the family anyway. */
void counter_none(struct counter_visit *v);

/* Prometheus text: HELP and TYPE when a family starts, then its samples. */
struct counters_text {
	struct jbuf *out;		/* appended to, borrowed */
	const char *family;		/* internal: the family being written */
};

/* A label value v[0..n) in the Prometheus text format: backslash, quote and
 * newline escaped. */
void prom_label_value(struct jbuf *o, const char *v, size_t n);
void counters_text(void *ctx, const struct counter_sample *s);

/*
 * JSON members of an object the caller opened: a family without labels is
 * "name": value; with labels, "name": [{"label": "value", ..., "value": v}];
 * an announced family without samples, "name": []. Call counters_json_end
 * once after the last producer.
 */
struct counters_json {
	struct jbuf *out;		/* appended to, borrowed */
	const char *family;		/* internal */
	bool in_array;			/* internal */
};

void counters_json(void *ctx, const struct counter_sample *s);
void counters_json_end(struct counters_json *cj);

#endif
