// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/base/lhist.c: the buckets tile the microseconds without gap
 * or overlap, an upper bound maps back to its bucket (what /api/stats readers
 * rely on), widths keep the promised precision, and the sparse histogram
 * equals a dense one fed the same values in any order. main() returns 1 if
 * any check failed.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lhist.h"
#include "check.h"

#define RANDOM_VALUES	20000
#define RANDOM_SEED	12345u


/* Every bucket starts right after the one before and both its ends map to it. */
static void test_tiling(void)
{
	begin("tiling");
	CHECK_U(lh_lower(0), 0);
	for (unsigned i = 0; i < LH_BUCKETS; i++) {
		CHECK_U(lh_index(lh_lower(i)), i);
		CHECK_U(lh_index(lh_upper(i)), i);
		if (i + 1 < LH_BUCKETS)
			CHECK_U(lh_lower(i + 1), lh_upper(i) + 1);
		CHECK(lh_mid(i) >= lh_lower(i) && lh_mid(i) <= lh_upper(i));
	}
	CHECK_U(lh_upper(LH_BUCKETS - 1), (1ull << LH_MAX_BITS) - 1);
}

/* A bucket is at most 1/LH_SUB of its lower bound wide: the midpoint is within
 * 1/(2 * LH_SUB) of every value in it. */
static void test_precision(void)
{
	begin("precision");
	for (unsigned i = 2 * LH_SUB; i < LH_BUCKETS; i++)
		CHECK(lh_width(i) * LH_SUB <= lh_lower(i));
}

static void test_clamp(void)
{
	begin("clamp");
	CHECK_U(lh_index(1ull << LH_MAX_BITS), LH_BUCKETS - 1);
	CHECK_U(lh_index(UINT64_MAX), LH_BUCKETS - 1);
}

/* Random values in random order: the sparse counts equal the dense ones and
 * the entries stay in ascending bucket order. */
static void test_sparse(void)
{
	static uint64_t dense[LH_BUCKETS];
	struct lhist h = {};
	unsigned seed = RANDOM_SEED;

	begin("sparse");
	for (int k = 0; k < RANDOM_VALUES; k++) {
		uint64_t us = (uint64_t)rand_r(&seed) >> (rand_r(&seed) % 31);
		unsigned i = lh_index(us);

		dense[i]++;
		CHECK(lhist__add(&h, i, 1) == 0);
	}
	for (unsigned i = 0; i < LH_BUCKETS; i++)
		CHECK_U(lhist__get(&h, i), dense[i]);
	for (uint32_t k = 1; k < h.len; k++)
		CHECK(h.idx[k - 1] < h.idx[k]);
	CHECK(lhist__add(&h, 7, 5) == 0);
	CHECK_U(lhist__get(&h, 7), dense[7] + 5);
	lhist__clear(&h);
	CHECK_U(h.len, 0);
	CHECK_U(lhist__get(&h, 7), 0);
	lhist__free(&h);
	CHECK(h.idx == NULL && h.n == NULL && h.cap == 0);
	lhist__free(NULL);
}

int main(void)
{
	test_tiling();
	test_precision();
	test_clamp();
	test_sparse();
	printf("test_lhist: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
