// SPDX-License-Identifier: MIT
/* The log-linear histogram (see lhist.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "base/lhist.h"

unsigned lh_index(uint64_t us)
{
	unsigned shift;

	if (us >= 1ull << LH_MAX_BITS)
		us = (1ull << LH_MAX_BITS) - 1;
	if (us < 2 * LH_SUB)
		return us;
	shift = 63 - __builtin_clzll(us) - LH_SUB_BITS;
	return shift * LH_SUB + (us >> shift);
}

uint64_t lh_width(unsigned i)
{
	return i < 2 * LH_SUB ? 1 : 1ull << (i / LH_SUB - 1);
}

uint64_t lh_lower(unsigned i)
{
	if (i < 2 * LH_SUB)
		return i;
	return (uint64_t)(i % LH_SUB + LH_SUB) << (i / LH_SUB - 1);
}

uint64_t lh_upper(unsigned i)
{
	return lh_lower(i) + lh_width(i) - 1;
}

double lh_mid(unsigned i)
{
	return lh_lower(i) + (lh_width(i) - 1) / 2.0;
}

/* The position of idx in h, or where it would go. */
static uint32_t lhist_find(const struct lhist *h, unsigned idx)
{
	uint32_t lo = 0, hi = h->len;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (h->idx[mid] < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int lhist_grow(struct lhist *h)
{
	uint32_t cap = h->cap ? h->cap * 2 : LH_SPARSE_INIT;
	uint16_t *idx;
	uint64_t *n;

	idx = realloc(h->idx, cap * sizeof(*idx));
	if (!idx)
		return -ENOMEM;
	h->idx = idx;
	n = realloc(h->n, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	h->n = n;
	h->cap = cap;
	return 0;
}

int lhist__add(struct lhist *h, unsigned idx, uint64_t n)
{
	uint32_t at = lhist_find(h, idx);

	if (at < h->len && h->idx[at] == idx) {
		h->n[at] += n;
		return 0;
	}
	if (h->len == h->cap && lhist_grow(h))
		return -ENOMEM;
	memmove(h->idx + at + 1, h->idx + at, (h->len - at) * sizeof(*h->idx));
	memmove(h->n + at + 1, h->n + at, (h->len - at) * sizeof(*h->n));
	h->idx[at] = idx;
	h->n[at] = n;
	h->len++;
	return 0;
}

uint64_t lhist__get(const struct lhist *h, unsigned idx)
{
	uint32_t at = lhist_find(h, idx);

	return at < h->len && h->idx[at] == idx ? h->n[at] : 0;
}

void lhist__clear(struct lhist *h)
{
	h->len = 0;
}

void lhist__free(struct lhist *h)
{
	if (!h)
		return;
	free(h->idx);
	free(h->n);
	memset(h, 0, sizeof(*h));
}
