// SPDX-License-Identifier: MIT
/* The verbs every obsctl top source shares (see top_source.h). */
#include <stdio.h>
#include <string.h>
#include "cli/top_source.h"

void top_source__refresh(struct top_source *src)
{
	src->ops->refresh(src);
}

int top_source__pollfds(struct top_source *src, struct pollfd *pfd, int max, int *timeout_ms)
{
	return src->ops->pollfds(src, pfd, max, timeout_ms);
}

bool top_source__pump(struct top_source *src)
{
	return src->ops->pump(src);
}

void top_source__free(struct top_source *src)
{
	if (src)
		src->ops->free(src);
}

void top_stats__clear_gauges(struct top_stats *st)
{
	st->n_svc = 0;
	st->in_flight = 0;
}

void top_stats__gauge(struct top_stats *st, const char *svc, uint64_t n)
{
	int i;

	if (!svc[0])
		svc = "-";	/* as rows show an empty name */
	st->in_flight += n;
	for (i = 0; i < st->n_svc; i++)
		if (!strcmp(st->svc[i].name, svc))
			break;
	if (i == st->n_svc) {
		if (st->n_svc == TOP_SERVICES_MAX)
			return;
		snprintf(st->svc[i].name, sizeof(st->svc[i].name), "%s", svc);
		st->svc[i].in_flight = 0;
		st->n_svc++;
	}
	st->svc[i].in_flight += n;
}

uint64_t top_stats__in_flight(const struct top_stats *st, const char *svc)
{
	for (int i = 0; i < st->n_svc; i++)
		if (!strcmp(st->svc[i].name, svc))
			return st->svc[i].in_flight;
	return 0;
}
