/* SPDX-License-Identifier: MIT */
/*
 * store — the embedded store: the newest N completed request records in a
 * ring. Memory is allocated once at store__new (N * sizeof(struct record)).
 */
#ifndef OBS_STORE_H
#define OBS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "record.h"

#define STORE_DEFAULT	8192

struct store {
	struct record *ring;	/* cap slots, owned */
	size_t cap;
	uint64_t total;		/* records ever pushed; slot = total % cap */
};

/* NULL with errno set when cap is 0 or memory is short. */
struct store *store__new(size_t cap);
void store__push(struct store *s, const struct record *r);
/* The i-th newest record (0 = newest), NULL beyond what is held. */
const struct record *store__get(const struct store *s, size_t i);
size_t store__count(const struct store *s);
void store__free(struct store *s);

#endif

/*
 * textring — the newest N rendered JSON documents (error events, lifecycle
 * events). Each entry is a malloc'd copy, freed when overwritten; entries
 * longer than TEXTRING_ENTRY_MAX are not kept (counted in dropped).
 */
#define TEXTRING_ENTRY_MAX	(64 * 1024)

struct textring {
	char **ring;
	size_t cap;
	uint64_t total, dropped;
};

struct textring *textring__new(size_t cap);
void textring__push(struct textring *t, const char *s, size_t len);
/* i-th newest (0 = newest), NULL beyond what is held. */
const char *textring__get(const struct textring *t, size_t i);
size_t textring__count(const struct textring *t);
void textring__free(struct textring *t);
