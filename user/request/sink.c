// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stddef.h>
#include "request/sink.h"

int sinks__add(struct sinks *ss, const struct sink_ops *ops, void *ctx)
{
	if (!ctx)
		return -EINVAL;
	if (ss->n >= SINKS_MAX)
		return -E2BIG;
	ss->s[ss->n].ops = ops;
	ss->s[ss->n++].ctx = ctx;
	return 0;
}

void sinks__poll(const struct sinks *ss)
{
	for (int i = 0; i < ss->n; i++)
		if (ss->s[i].ops->poll)
			ss->s[i].ops->poll(ss->s[i].ctx);
}

bool sinks__due(const struct sinks *ss)
{
	for (int i = 0; i < ss->n; i++)
		if (ss->s[i].ops->due && ss->s[i].ops->due(ss->s[i].ctx))
			return true;
	return false;
}

void sinks__collect(const struct sinks *ss, const struct pipeline_stats *st)
{
	for (int i = 0; i < ss->n; i++) {
		const struct sink *s = &ss->s[i];

		if (s->ops->collect && (!s->ops->due || s->ops->due(s->ctx)))
			s->ops->collect(s->ctx, st);
	}
}

void sinks__scrape(const struct sinks *ss, const struct pipeline_stats *st, struct jbuf *out)
{
	for (int i = 0; i < ss->n; i++)
		if (ss->s[i].ops->scrape)
			ss->s[i].ops->scrape(ss->s[i].ctx, st, out);
}

void sinks__counters(const struct sinks *ss, struct counter_visit *v)
{
	for (int i = 0; i < ss->n; i++)
		if (ss->s[i].ops->counters)
			ss->s[i].ops->counters(ss->s[i].ctx, v);
}

void sinks__flush(const struct sinks *ss, const struct pipeline_stats *st, unsigned timeout_ms)
{
	for (int i = 0; i < ss->n; i++)
		if (ss->s[i].ops->flush)
			ss->s[i].ops->flush(ss->s[i].ctx, st, timeout_ms);
}

void sinks__free(struct sinks *ss)
{
	while (ss->n > 0) {
		struct sink *s = &ss->s[--ss->n];

		if (s->ops->free)
			s->ops->free(s->ctx);
	}
}
