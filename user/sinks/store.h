/* SPDX-License-Identifier: MIT */
/*
 * store — the embedded store: the newest N completed request records in a
 * ring. Records are kept packed (record__pack: a few hundred bytes for a
 * typical one instead of 2.3 KB), in slots.
 */
#ifndef OBS_STORE_H
#define OBS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "conn/record.h"

#define STORE_DEFAULT	8192

/*
 * slots — the newest N byte strings (packed records, packed events) in a
 * ring. Each slot is a buffer of its own, reused when its entry is replaced
 * by one that fits (and is not much smaller), so memory follows what is kept
 * and the steady state does not allocate.
 */
struct slot;
struct slot_block;

struct slots {
	struct slot **ring;	/* cap slots, owned; NULL until used */
	struct slot_block *blocks;	/* where slots are first carved from */
	size_t cap;
	uint64_t total;		/* entries ever pushed; slot = total % cap */
	uint64_t dropped;	/* entries not kept: no memory for their slot */
};

/* 0, or -EINVAL (cap 0) / -ENOMEM. */
int slots__init(struct slots *s, size_t cap);
/* Keep data[0..n) as the newest entry (the oldest goes when full). */
void slots__push(struct slots *s, const void *data, size_t n);
/* The i-th newest entry (0 = newest); NULL beyond what is held, or for an
 * entry that could not be kept. */
const void *slots__get(const struct slots *s, size_t i);
size_t slots__count(const struct slots *s);
void slots__fini(struct slots *s);

struct store {
	struct slots slots;	/* packed records */
};

/* NULL with errno set when cap is 0 or memory is short. */
struct store *store__new(size_t cap);
void store__push(struct store *s, const struct record *r);
/*
 * The i-th newest record (0 = newest), unpacked into *tmp; returns tmp, or
 * NULL beyond what is held or for a record that could not be kept.
 */
const struct record *store__get(const struct store *s, size_t i, struct record *tmp);
size_t store__count(const struct store *s);
/* Records ever pushed. */
uint64_t store__total(const struct store *s);
void store__free(struct store *s);

/* The sinks (sink.h): record = store__push of served requests (store_sink)
 * or of outgoing calls (call_store_sink), free. */
extern const struct sink_ops store_sink;
extern const struct sink_ops call_store_sink;

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
