// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include "store.h"

struct store *store__new(size_t cap)
{
	struct store *s;

	if (!cap) {
		errno = EINVAL;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->ring = calloc(cap, sizeof(*s->ring));
	if (!s->ring) {
		free(s);
		return NULL;
	}
	s->cap = cap;
	return s;
}

void store__push(struct store *s, const struct record *r)
{
	s->ring[s->total % s->cap] = *r;
	s->total++;
}

size_t store__count(const struct store *s)
{
	return s->total < s->cap ? s->total : s->cap;
}

const struct record *store__get(const struct store *s, size_t i)
{
	if (i >= store__count(s))
		return NULL;
	return &s->ring[(s->total - 1 - i) % s->cap];
}

void store__free(struct store *s)
{
	if (!s)
		return;
	free(s->ring);
	free(s);
}
