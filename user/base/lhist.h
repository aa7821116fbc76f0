/* SPDX-License-Identifier: MIT */
/*
 * lhist — the log-linear latency histogram of request durations in whole
 * microseconds, shared by obsd (/api/stats "latency_us") and `obsctl top`.
 *
 * Values below 2 * LH_SUB have a bucket each; above, every power of two is
 * cut into LH_SUB equal buckets, so a bucket's midpoint is within
 * 1/(2 * LH_SUB) of any value in it. Values of 2^LH_MAX_BITS us (71 min) and
 * more are counted in the last bucket. Bucket i holds the integers
 * lh_lower(i) .. lh_upper(i); lh_index(lh_upper(i)) == i, which is how a
 * reader maps an upper bound it was sent back to the bucket.
 *
 * struct lhist is a sparse histogram: only the buckets that have counts, in
 * ascending order. Zero-filled is empty; lhist__free releases its arrays.
 */
#ifndef OBS_LHIST_H
#define OBS_LHIST_H

#include <stdint.h>

#define LH_SUB_BITS	5
#define LH_SUB		(1u << LH_SUB_BITS)
#define LH_MAX_BITS	32
#define LH_BUCKETS	((LH_MAX_BITS - LH_SUB_BITS + 1) * LH_SUB)
#define LH_SPARSE_INIT	8	/* first capacity of a sparse histogram */

/* The bucket of a value (us). */
unsigned lh_index(uint64_t us);

/* Smallest and largest value (us) of bucket i, and its width. */
uint64_t lh_lower(unsigned i);
uint64_t lh_upper(unsigned i);
uint64_t lh_width(unsigned i);

/* The middle of bucket i: what a quantile falling in it is reported as. */
double lh_mid(unsigned i);

struct lhist {
	uint16_t *idx;			/* bucket of each entry, ascending; owned */
	uint64_t *n;			/* its count; owned */
	uint32_t len, cap;
};

/* Count n values of bucket idx (< LH_BUCKETS). 0, or -ENOMEM with nothing counted. */
int lhist__add(struct lhist *h, unsigned idx, uint64_t n);

/* The count of bucket idx. */
uint64_t lhist__get(const struct lhist *h, unsigned idx);

/* Forget every count, keep the arrays. */
void lhist__clear(struct lhist *h);

/* Release the arrays; h is empty afterwards. NULL-safe. */
void lhist__free(struct lhist *h);

#endif
