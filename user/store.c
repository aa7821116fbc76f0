// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
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
	s->ring[s->total % s->cap].exc = NULL;	/* valid only during the sink call */
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

struct textring *textring__new(size_t cap)
{
	struct textring *t = calloc(1, sizeof(*t));

	if (!t || !cap)
		goto out_free;
	t->ring = calloc(cap, sizeof(*t->ring));
	if (!t->ring)
		goto out_free;
	t->cap = cap;
	return t;
out_free:
	free(t);
	errno = cap ? ENOMEM : EINVAL;
	return NULL;
}

void textring__push(struct textring *t, const char *s, size_t len)
{
	char *copy = len <= TEXTRING_ENTRY_MAX ? malloc(len + 1) : NULL;
	size_t slot = t->total % t->cap;

	if (!copy) {
		t->dropped++;
		return;
	}
	memcpy(copy, s, len);
	copy[len] = 0;
	free(t->ring[slot]);
	t->ring[slot] = copy;
	t->total++;
}

size_t textring__count(const struct textring *t)
{
	return t->total < t->cap ? t->total : t->cap;
}

const char *textring__get(const struct textring *t, size_t i)
{
	if (i >= textring__count(t))
		return NULL;
	return t->ring[(t->total - 1 - i) % t->cap];
}

void textring__free(struct textring *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->cap; i++)
		free(t->ring[i]);
	free(t->ring);
	free(t);
}
