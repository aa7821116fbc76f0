/* SPDX-License-Identifier: MIT */
/*
 * ids — request ids and W3C trace context. Random ids come from a xoshiro256**
 * generator seeded once from getrandom(): fast, never zero where W3C forbids it.
 */
#ifndef OBS_IDS_H
#define OBS_IDS_H

#include <stdbool.h>
#include <stdint.h>

/* Seed the generator (getrandom, falling back to time and pid). */
void ids_seed(void);

/* Seed deterministically (replays, tests). */
void ids_seed_fixed(uint64_t seed);

/* n random bytes, never all zero. */
void ids_random(uint8_t *out, int n);

/* A UUID4 as 32 lowercase hex characters plus NUL (out holds 33 bytes). */
void ids_uuid4_hex(char out[33]);

/* Lowercase hex of n bytes into out (2n + 1 bytes). */
void ids_hex(char *out, const uint8_t *in, int n);

/*
 * Parse a W3C traceparent header (version 00: exactly
 * "00-<32 hex>-<16 hex>-<2 hex>", lowercase; later versions: the same prefix
 * followed by '-' or the end). Rejects all-zero ids and version ff.
 * Returns true and fills the ids and sampled flag when valid.
 */
bool ids_parse_traceparent(const char *s, uint8_t trace_id[16], uint8_t parent_id[8],
			   bool *sampled);

#endif
