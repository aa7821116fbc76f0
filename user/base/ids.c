// SPDX-License-Identifier: MIT
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "base/ids.h"

static uint64_t rng[4];	/* generator state: written by ids_seed only */

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t next64(void)
{
	uint64_t r = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;

	rng[2] ^= rng[0];
	rng[3] ^= rng[1];
	rng[1] ^= rng[2];
	rng[0] ^= rng[3];
	rng[2] ^= t;
	rng[3] = rotl(rng[3], 45);
	return r;
}

void ids_seed(void)
{
	if (getrandom(rng, sizeof(rng), 0) != sizeof(rng)) {
		rng[0] = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull;
		rng[1] = (uint64_t)getpid() * 0xbf58476d1ce4e5b9ull;
		rng[2] = (uint64_t)clock() ^ 0x94d049bb133111ebull;
	}
	rng[3] |= 1;	/* state must not be all zero */
}

void ids_seed_fixed(uint64_t seed)
{
	for (int i = 0; i < 4; i++) {	/* splitmix64 */
		uint64_t z = (seed += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		rng[i] = z ^ (z >> 31);
	}
	rng[3] |= 1;
}

void ids_random(uint8_t *out, int n)
{
	uint64_t any;

	if (!(rng[0] | rng[1] | rng[2] | rng[3]))
		ids_seed();
	if (n == 16 || n == 8) {	/* trace and span ids: the same draws, unrolled */
		uint64_t a, b = 0;

		do {
			a = next64();
			if (n == 16)
				b = next64();
		} while (!(a | b));
		memcpy(out, &a, 8);
		if (n == 16)
			memcpy(out + 8, &b, 8);
		return;
	}
	do {	/* an id of all zero bytes is invalid: draw again */
		any = 0;
		for (int i = 0; i < n; i += 8) {
			uint64_t v = next64();

			if (n - i >= 8) {
				memcpy(out + i, &v, 8);
				any |= v;
				continue;
			}
			memcpy(out + i, &v, n - i);
			for (int j = i; j < n; j++)
				any |= out[j];
		}
	} while (!any);
}

/* The two lower-case hex digits of every byte value: one load per byte. */
static const char hex_pairs[256][2] = {
#define P(x)	{ "0123456789abcdef"[(x) >> 4], "0123456789abcdef"[(x) & 15] }
#define P4(x)	P(x), P((x) + 1), P((x) + 2), P((x) + 3)
#define P16(x)	P4(x), P4((x) + 4), P4((x) + 8), P4((x) + 12)
#define P64(x)	P16(x), P16((x) + 16), P16((x) + 32), P16((x) + 48)
	P64(0), P64(64), P64(128), P64(192),
#undef P64
#undef P16
#undef P4
#undef P
};

void ids_hex(char *out, const uint8_t *in, int len)
{
	unsigned int i = 0, n = len > 0 ? (unsigned int)len : 0;

	for (; i + 4 <= n; i += 4) {	/* ids are 8 or 16 bytes */
		memcpy(out + 2 * i, hex_pairs[in[i]], 2);
		memcpy(out + 2 * i + 2, hex_pairs[in[i + 1]], 2);
		memcpy(out + 2 * i + 4, hex_pairs[in[i + 2]], 2);
		memcpy(out + 2 * i + 6, hex_pairs[in[i + 3]], 2);
	}
	for (; i < n; i++)
		memcpy(out + 2 * i, hex_pairs[in[i]], 2);
	out[2 * n] = 0;
}

void ids_uuid4_hex(char out[33])
{
	uint8_t b[16];

	ids_random(b, 16);
	b[6] = (b[6] & 0x0f) | 0x40;	/* version 4 */
	b[8] = (b[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	ids_hex(out, b, 16);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;	/* uppercase is invalid in traceparent */
}

static bool parse_hex(const char *s, uint8_t *out, int n)
{
	bool nonzero = false;

	for (int i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = hi << 4 | lo;
		nonzero |= out[i] != 0;
	}
	return nonzero;
}

bool ids_parse_traceparent(const char *s, uint8_t trace_id[16], uint8_t parent_id[8],
			   bool *sampled)
{
	uint8_t ver, flags;
	size_t len = strlen(s);

	if (len < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
		return false;
	if (hexval(s[0]) < 0 || hexval(s[1]) < 0)
		return false;
	ver = hexval(s[0]) << 4 | hexval(s[1]);
	if (ver == 0xff || (ver == 0 && len != 55) || (ver > 0 && len > 55 && s[55] != '-'))
		return false;
	if (!parse_hex(s + 3, trace_id, 16) || !parse_hex(s + 36, parent_id, 8))
		return false;
	if (hexval(s[53]) < 0 || hexval(s[54]) < 0)
		return false;
	flags = hexval(s[53]) << 4 | hexval(s[54]);
	*sampled = flags & 1;
	return true;
}
