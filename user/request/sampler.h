/* SPDX-License-Identifier: MIT */
/*
 * sampler — which requests become exported spans, with the OpenTelemetry
 * SDK's rules so every node of a trace agrees: always_on, always_off,
 * traceidratio (sampled when the trace id's low 64 bits, big-endian, are
 * below ratio * 2^64), and the parentbased_* variants that follow an incoming
 * traceparent's sampled flag and apply the root sampler otherwise.
 * Default parentbased_always_on. Metrics are never sampled.
 */
#ifndef OBS_SAMPLER_H
#define OBS_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

enum sampler_kind {
	SAMPLER_PARENT_ALWAYS_ON = 0,
	SAMPLER_ALWAYS_ON,
	SAMPLER_ALWAYS_OFF,
	SAMPLER_RATIO,
	SAMPLER_PARENT_RATIO,
	SAMPLER_PARENT_ALWAYS_OFF,
};

struct sampler {
	enum sampler_kind kind;
	double ratio;		/* 0..1, ratio samplers only */
};

/* Parse OTEL_TRACES_SAMPLER-style name and arg (arg may be NULL). 0 or -EINVAL. */
int sampler_parse(struct sampler *s, const char *name, const char *arg);

/* The decision for a new span of trace_id; has_parent/parent_sampled describe
 * the incoming traceparent. s NULL = default. */
bool sampler_decide(const struct sampler *s, const uint8_t trace_id[16], bool has_parent,
		    bool parent_sampled);

const char *sampler_name(const struct sampler *s);

#endif
