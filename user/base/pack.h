/* SPDX-License-Identifier: MIT */
/*
 * pack — strings packed one after another, each with its NUL and without the
 * unused bytes of the array it came from. Records (record.h) and lifecycle
 * events (events.h) are kept this way: a few hundred bytes each instead of
 * their fixed 1-2 KB.
 *
 * A packer may write up to PACK_SLACK bytes past the end it returns: the
 * buffer written to must have that much room beyond what is packed.
 */
#ifndef OBS_PACK_H
#define OBS_PACK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PACK_SLACK	8

/*
 * Pack the string held in the array s[size] (cut at size - 1 bytes, as
 * strnlen(s, size - 1) would); returns the byte after its NUL in o. Eight
 * bytes at a time: each word is copied whole and the first NUL in it found
 * from its zero-byte mask. Reads stay inside s[0..size): s must be an array
 * of that size, not any pointer.
 */
static inline __attribute__((always_inline)) char *pack_arr(char *o, const char *s, size_t size)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	size_t i = 0;

	if (!s[0]) {	/* most optional fields are empty */
		*o = 0;
		return o + 1;
	}
	for (; i + 8 < size; i += 8) {
		uint64_t w, zero;

		memcpy(&w, s + i, 8);
		memcpy(o + i, &w, 8);
		zero = (w - ones) & ~w & highs;	/* lowest set bit: the first NUL */
		if (zero && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
			return o + i + __builtin_ctzll(zero) / 8 + 1;
		if (zero)
			break;
	}
	for (; i < size - 1 && s[i]; i++)
		o[i] = s[i];
	o[i] = 0;
	return o + i + 1;
}

/* dst = the string in src, both arrays of the same size: pack_arr never
 * writes past an array of the size it reads. Bytes after dst's NUL are left
 * as they were. */
#define copy_arr(dst, src)                                                      \
	do {                                                                    \
		_Static_assert(sizeof(dst) == sizeof(src), "arrays of one size"); \
		pack_arr((dst), (src), sizeof(src));                            \
	} while (0)

/* Pack the NUL-terminated string s (any pointer; NULL packs as ""), cut at
 * cap - 1 bytes; returns the byte after its NUL in o. */
static inline char *pack_str(char *o, const char *s, size_t cap)
{
	size_t l;

	if (!s || !s[0]) {
		*o = 0;
		return o + 1;
	}
	l = strnlen(s, cap - 1);
	memcpy(o, s, l);
	o[l] = 0;
	return o + l + 1;
}

/* Unpack the string at p into dst (the array it was packed from, or one as
 * large); returns the packed string after it. */
static inline const char *unpack_str(const char *p, char *dst)
{
	size_t l = strlen(p);

	memcpy(dst, p, l + 1);
	return p + l + 1;
}

#endif
