// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for user/base/json.c: whatever bytes reach jb_str/jb_strn
 * (header values, paths, process names straight from the wire), the
 * document must be valid JSON (RFC 8259, strict UTF-8), and each string
 * must decode back to its input with every byte that is not part of valid
 * UTF-8 replaced by U+FFFD.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iuser -Itests/unit \
 *         tests/fuzz/fuzz_json.c user/base/json.c -o build/fuzz_json
 *
 * Input: byte 0 = how to cut the rest into (key, value) pairs and which
 * builder calls to mix in; the pieces become an object with nested arrays
 * and objects. jb_str stops at a NUL, jb_strn does not: both are used.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

#define CHECK_ABORT	/* a failed check aborts: libFuzzer keeps the input */
#include "check.h"
#include "json_valid.h"

#define MAX_STRINGS	64

/* ---- the decoded strings, in document order (json_valid.h) ---- */

struct decoded {
	char *s[MAX_STRINGS * 4];
	size_t len[MAX_STRINGS * 4];
	int n;
};

static void on_string(void *ctx, const char *s, size_t n)
{
	struct decoded *d = ctx;
	char *c;

	if (d->n == MAX_STRINGS * 4)
		return;
	c = malloc(n + 1);
	CHECK(c);
	memcpy(c, s, n);
	d->s[d->n] = c;
	d->len[d->n++] = n;
}

/* ---- expected strings ---- */

struct piece {
	const uint8_t *p;
	size_t n;
};

static void must_decode_to(const struct decoded *d, int at, const uint8_t *in, size_t n)
{
	char *want = malloc(3 * n + 1);
	size_t wl;

	CHECK(want);
	wl = json_expected_text(in, n, want);
	CHECK(at < d->n && d->len[at] == wl && !memcmp(d->s[at], want, wl));
	free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct piece pc[MAX_STRINGS * 2];
	static struct decoded d;
	struct jbuf jb;
	struct jv v;
	uint8_t opts;
	size_t n_pc = 0, at = 1, seg;
	int expect_at = 0;
	char *z;

	if (size < 1)
		return 0;
	opts = data[0];
	seg = 1 + (opts & 31);
	while (at < size && n_pc < MAX_STRINGS * 2) {
		size_t k = size - at < seg ? size - at : seg;

		if (n_pc == MAX_STRINGS * 2 - 1)
			k = size - at;
		pc[n_pc++] = (struct piece){ data + at, k };
		at += k;
	}
	if (n_pc % 2)
		pc[n_pc++] = (struct piece){ data, 0 };

	jb_init(&jb);
	jb_obj_open(&jb);
	for (size_t i = 0; i < n_pc; i += 2) {
		/* keys go through jb_key (NUL-terminated): cut at the first NUL */
		char *key = malloc(pc[i].n + 1);

		CHECK(key);
		memcpy(key, pc[i].p, pc[i].n);
		key[pc[i].n] = 0;
		if (opts & 0x20 && i % 4 == 2) {
			jb_arr_open(&jb, key);
			jb_strn(&jb, NULL, (const char *)pc[i + 1].p, pc[i + 1].n);
			jb_u64(&jb, NULL, pc[i + 1].n);
			jb_obj_open(&jb);
			jb_bool(&jb, "b", i & 1);
			jb_obj_close(&jb);
			jb_arr_close(&jb);
		} else if (opts & 0x40 && i % 4 == 0) {
			z = malloc(pc[i + 1].n + 1);
			CHECK(z);
			memcpy(z, pc[i + 1].p, pc[i + 1].n);
			z[pc[i + 1].n] = 0;
			jb_str(&jb, key, z);	/* stops at the first NUL */
			free(z);
		} else {
			jb_strn(&jb, key, (const char *)pc[i + 1].p, pc[i + 1].n);
		}
		free(key);
	}
	if (opts & 0x80) {
		jb_i64(&jb, "i", -(int64_t)size);
		jb_dbl(&jb, "d", size / 7.0);
	}
	jb_obj_close(&jb);
	CHECK(!jb.oom && jb.buf && strlen(jb.buf) == jb.len);

	d.n = 0;
	v = (struct jv){ (const unsigned char *)jb.buf, (const unsigned char *)jb.buf + jb.len,
			 .on_string = on_string, .ctx = &d };
	CHECK(jv_document(&v));
	/* decoded strings in order: key, value (or "b" after an array value) */
	for (size_t i = 0; i < n_pc && expect_at < d.n; i += 2) {
		size_t kl = strnlen((const char *)pc[i].p, pc[i].n);
		size_t vl = pc[i + 1].n;

		must_decode_to(&d, expect_at++, pc[i].p, kl);
		if (opts & 0x40 && !(opts & 0x20 && i % 4 == 2) && i % 4 == 0)
			vl = strnlen((const char *)pc[i + 1].p, vl);
		must_decode_to(&d, expect_at++, pc[i + 1].p, vl);
		if (opts & 0x20 && i % 4 == 2)
			expect_at++;	/* the "b" key */
	}
	for (int i = 0; i < d.n; i++)
		free(d.s[i]);
	jb_free(&jb);
	return 0;
}
