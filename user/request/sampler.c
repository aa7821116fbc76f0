// SPDX-License-Identifier: MIT
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "request/sampler.h"

static const char *const names[] = {
	[SAMPLER_PARENT_ALWAYS_ON] = "parentbased_always_on",
	[SAMPLER_ALWAYS_ON] = "always_on",
	[SAMPLER_ALWAYS_OFF] = "always_off",
	[SAMPLER_RATIO] = "traceidratio",
	[SAMPLER_PARENT_RATIO] = "parentbased_traceidratio",
	[SAMPLER_PARENT_ALWAYS_OFF] = "parentbased_always_off",
};

int sampler_parse(struct sampler *s, const char *name, const char *arg)
{
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(name, names[i]))
			break;
	if (i == sizeof(names) / sizeof(names[0]))
		return -EINVAL;
	s->kind = i;
	s->ratio = 1.0;
	if (s->kind == SAMPLER_RATIO || s->kind == SAMPLER_PARENT_RATIO) {
		char *end;

		if (arg && *arg) {
			s->ratio = strtod(arg, &end);
			if (*end || isnan(s->ratio) || s->ratio < 0 || s->ratio > 1)
				return -EINVAL;
		}
	}
	return 0;
}

static bool ratio_decide(double ratio, const uint8_t id[16])
{
	uint64_t low = 0;

	for (int i = 8; i < 16; i++)
		low = low << 8 | id[i];
	if (ratio >= 1.0)
		return true;
	/* ratio * 2^64, as the SDKs compute the bound */
	return (double)low < ratio * 18446744073709551616.0;
}

bool sampler_decide(const struct sampler *s, const uint8_t trace_id[16], bool has_parent,
		    bool parent_sampled)
{
	enum sampler_kind k = s ? s->kind : SAMPLER_PARENT_ALWAYS_ON;

	switch (k) {
	case SAMPLER_ALWAYS_ON:
		return true;
	case SAMPLER_ALWAYS_OFF:
		return false;
	case SAMPLER_RATIO:
		return ratio_decide(s->ratio, trace_id);
	case SAMPLER_PARENT_RATIO:
		return has_parent ? parent_sampled : ratio_decide(s->ratio, trace_id);
	case SAMPLER_PARENT_ALWAYS_OFF:
		return has_parent ? parent_sampled : false;
	case SAMPLER_PARENT_ALWAYS_ON:
		break;
	}
	return has_parent ? parent_sampled : true;
}

const char *sampler_name(const struct sampler *s)
{
	return names[s ? s->kind : SAMPLER_PARENT_ALWAYS_ON];
}
