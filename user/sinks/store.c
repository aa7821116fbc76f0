// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "request/sink.h"
#include "sinks/store.h"

struct slot {
	uint32_t size;		/* bytes for data */
	bool own;		/* malloc'd on its own, else carved from a block */
	char data[];
};

/* Slots are first carved from blocks of this size: filling a ring does not
 * malloc each slot, and freeing it frees a block at a time. A block is
 * mapped with its pages present: one system call instead of a page fault per
 * 4 KB. obsd's rings first fill in ~1,000 faults, each tens of microseconds
 * in a VM (docs/bench.md, sixth round). */
#define SLOT_BLOCK	(256 * 1024)
#define SLOT_ROUND	64	/* slot sizes are multiples of this: reuse is likely */

struct slot_block {
	struct slot_block *next;
	size_t used;		/* bytes of mem carved */
	char mem[];
};

#define BLOCK_ROOM	(SLOT_BLOCK - offsetof(struct slot_block, mem))

int slots__init(struct slots *s, size_t cap)
{
	memset(s, 0, sizeof(*s));
	if (!cap)
		return -EINVAL;
	s->ring = calloc(cap, sizeof(*s->ring));
	if (!s->ring)
		return -ENOMEM;
	s->cap = cap;
	return 0;
}

/*
 * A new slot for size bytes. The first slot of a ring position is carved
 * from the current block; one that replaces a slot of another size is
 * malloc'd on its own (and freed when replaced in turn), so that what blocks
 * hold never grows past one slot per position.
 */
static struct slot *slot_new(struct slots *s, size_t size, bool first)
{
	size_t need = sizeof(struct slot) + size;
	struct slot_block *b = s->blocks;
	struct slot *sl;

	if (!first || need > BLOCK_ROOM) {
		sl = malloc(need);
		if (sl)
			sl->own = true;
	} else {
		if (!b || b->used + need > BLOCK_ROOM) {
			b = mmap(NULL, SLOT_BLOCK, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
			if (b == MAP_FAILED)
				return NULL;
			b->next = s->blocks;
			b->used = 0;
			s->blocks = b;
		}
		sl = (struct slot *)(b->mem + b->used);
		b->used += need;
		sl->own = false;
	}
	if (sl)
		sl->size = size;
	return sl;
}

static void slot_free(struct slot *sl)
{
	if (sl && sl->own)
		free(sl);
}

/* The slot at i, able to hold n bytes: the one there if it fits and is not
 * much too large, else a new one. NULL (and the slot freed) without memory. */
static struct slot *slot_fit(struct slots *s, size_t i, size_t n)
{
	struct slot *sl = s->ring[i];
	size_t size = (n + SLOT_ROUND - 1) / SLOT_ROUND * SLOT_ROUND;

	if (sl && sl->size >= n && sl->size <= 2 * size)
		return sl;
	slot_free(sl);
	s->ring[i] = slot_new(s, size, !sl);
	return s->ring[i];
}

void slots__push(struct slots *s, const void *data, size_t n)
{
	struct slot *sl = slot_fit(s, s->total % s->cap, n);

	if (sl)
		memcpy(sl->data, data, n);
	else
		s->dropped++;
	s->total++;
}

size_t slots__count(const struct slots *s)
{
	return s->total < s->cap ? s->total : s->cap;
}

const void *slots__get(const struct slots *s, size_t i)
{
	const struct slot *sl;

	if (i >= slots__count(s))
		return NULL;
	sl = s->ring[(s->total - 1 - i) % s->cap];
	return sl ? sl->data : NULL;
}

void slots__fini(struct slots *s)
{
	struct slot_block *b, *next;

	for (size_t i = 0; i < s->cap; i++)
		slot_free(s->ring[i]);
	for (b = s->blocks; b; b = next) {
		next = b->next;
		munmap(b, SLOT_BLOCK);
	}
	s->blocks = NULL;
	free(s->ring);
	s->ring = NULL;
	s->cap = 0;
}

struct store *store__new(size_t cap)
{
	struct store *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return NULL;
	err = slots__init(&s->slots, cap);
	if (err) {
		free(s);
		errno = -err;
		return NULL;
	}
	return s;
}

void store__push(struct store *s, const struct record *r)
{
	char packed[sizeof(struct record) + PACK_SLACK];

	slots__push(&s->slots, packed, record__pack(r, packed));
}

size_t store__count(const struct store *s)
{
	return slots__count(&s->slots);
}

uint64_t store__total(const struct store *s)
{
	return s->slots.total;
}

const struct record *store__get(const struct store *s, size_t i, struct record *tmp)
{
	const void *packed = slots__get(&s->slots, i);

	if (!packed)
		return NULL;
	record__unpack(packed, tmp);
	return tmp;
}

void store__free(struct store *s)
{
	if (!s)
		return;
	slots__fini(&s->slots);
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

/* ---- the sink (sink.h) ---- */

/* Served requests and outgoing calls go to two stores (/api/requests and
 * /api/requests?kind=client). */
static void sink_record(void *ctx, const struct record *r)
{
	if (r->kind != REC_CLIENT)
		store__push(ctx, r);
}

static void call_sink_record(void *ctx, const struct record *r)
{
	if (r->kind == REC_CLIENT)
		store__push(ctx, r);
}

static void sink_free(void *ctx)
{
	store__free(ctx);
}

const struct sink_ops store_sink = {
	.name = "store",
	.record = sink_record,
	.free = sink_free,
};

const struct sink_ops call_store_sink = {
	.name = "call store",
	.record = call_sink_record,
	.free = sink_free,
};
