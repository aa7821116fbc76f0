// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for user/base/json.c: whatever bytes reach jb_str/jb_strn
 * (header values, paths, process names straight from the wire), the
 * document must be valid JSON (RFC 8259, strict UTF-8), and each string
 * must decode back to its input with every byte that is not part of valid
 * UTF-8 replaced by U+FFFD.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iuser \
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

#define MAX_STRINGS	64

/* ---- strict validator that also decodes strings ---- */

struct jv {
	const unsigned char *s, *end;
	int depth;
	/* decoded strings, in document order */
	char *dec[MAX_STRINGS * 4];
	size_t dec_len[MAX_STRINGS * 4];
	int n_dec;
};

static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0], cp;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c < 0xc2 || c > 0xf4)
		return 0;
	n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
	if ((size_t)(end - p) < n)
		return 0;
	cp = c & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

static void ws(struct jv *v)
{
	while (v->s < v->end && (*v->s == ' ' || *v->s == '\t' || *v->s == '\r' || *v->s == '\n'))
		v->s++;
}

static bool lit(struct jv *v, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(v->end - v->s) < n || memcmp(v->s, w, n))
		return false;
	v->s += n;
	return true;
}

static int hexd(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool jstring(struct jv *v)
{
	char *out = malloc(v->end - v->s + 1);
	size_t o = 0;

	if (!out)
		abort();
	if (v->s >= v->end || *v->s != '"')
		goto bad;
	v->s++;
	while (v->s < v->end && *v->s != '"') {
		unsigned c = *v->s;

		if (c < 0x20)
			goto bad;
		if (c == '\\') {
			if (v->end - v->s < 2)
				goto bad;
			c = v->s[1];
			v->s += 2;
			if (c == 'u') {
				int x = 0;

				if (v->end - v->s < 4)
					goto bad;
				for (int i = 0; i < 4; i++) {
					int d = hexd(v->s[i]);

					if (d < 0)
						goto bad;
					x = x << 4 | d;
				}
				v->s += 4;
				if (x >= 0x80)	/* json.c escapes only control bytes */
					goto bad;
				out[o++] = (char)x;
			} else if (c == '"' || c == '\\' || c == '/') {
				out[o++] = (char)c;
			} else if (c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
				out[o++] = c == 'b' ? '\b' : c == 'f' ? '\f' : c == 'n' ? '\n' :
					   c == 'r' ? '\r' : '\t';
			} else {
				goto bad;
			}
		} else {
			size_t n = utf8_seq(v->s, v->end);

			if (!n)
				goto bad;
			memcpy(out + o, v->s, n);
			o += n;
			v->s += n;
		}
	}
	if (v->s >= v->end)
		goto bad;
	v->s++;
	if (v->n_dec < (int)(sizeof(v->dec) / sizeof(v->dec[0]))) {
		v->dec[v->n_dec] = out;
		v->dec_len[v->n_dec++] = o;
		return true;
	}
	free(out);
	return true;
bad:
	free(out);
	return false;
}

static bool jnumber(struct jv *v)
{
	const unsigned char *st = v->s;

	if (v->s < v->end && *v->s == '-')
		v->s++;
	if (v->s >= v->end)
		return false;
	if (*v->s == '0')
		v->s++;
	else if (*v->s >= '1' && *v->s <= '9')
		while (v->s < v->end && *v->s >= '0' && *v->s <= '9')
			v->s++;
	else
		return false;
	if (v->s < v->end && *v->s == '.') {
		v->s++;
		if (v->s >= v->end || *v->s < '0' || *v->s > '9')
			return false;
		while (v->s < v->end && *v->s >= '0' && *v->s <= '9')
			v->s++;
	}
	return v->s > st;
}

static bool jvalue(struct jv *v);

static bool jcontainer(struct jv *v, char close, bool keys)
{
	v->s++;
	if (++v->depth > 64)
		return false;
	ws(v);
	if (v->s < v->end && *v->s == close) {
		v->s++;
		v->depth--;
		return true;
	}
	for (;;) {
		ws(v);
		if (keys) {
			if (!jstring(v))
				return false;
			ws(v);
			if (v->s >= v->end || *v->s != ':')
				return false;
			v->s++;
		}
		if (!jvalue(v))
			return false;
		ws(v);
		if (v->s < v->end && *v->s == ',') {
			v->s++;
			continue;
		}
		if (v->s < v->end && *v->s == close) {
			v->s++;
			v->depth--;
			return true;
		}
		return false;
	}
}

static bool jvalue(struct jv *v)
{
	ws(v);
	if (v->s >= v->end)
		return false;
	switch (*v->s) {
	case '{':
		return jcontainer(v, '}', true);
	case '[':
		return jcontainer(v, ']', false);
	case '"':
		return jstring(v);
	case 't':
		return lit(v, "true");
	case 'f':
		return lit(v, "false");
	case 'n':
		return lit(v, "null");
	default:
		return jnumber(v);
	}
}

/* ---- expected strings ---- */

struct piece {
	const uint8_t *p;
	size_t n;
};

static size_t expect(const uint8_t *in, size_t n, char *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		size_t k = utf8_seq(in + i, in + n);

		if (!k) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, in + i, k);
			o += k;
			i += k;
		}
	}
	return o;
}

static void must_decode_to(const struct jv *v, int at, const uint8_t *in, size_t n)
{
	char *want = malloc(3 * n + 1);
	size_t wl;

	if (!want)
		abort();
	wl = expect(in, n, want);
	if (at >= v->n_dec || v->dec_len[at] != wl || memcmp(v->dec[at], want, wl))
		abort();
	free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct piece pc[MAX_STRINGS * 2];
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

		if (!key)
			abort();
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
			if (!z)
				abort();
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
	if (jb.oom || !jb.buf || strlen(jb.buf) != jb.len)
		abort();

	memset(&v, 0, sizeof(v));
	v.s = (const unsigned char *)jb.buf;
	v.end = v.s + jb.len;
	if (!jvalue(&v))
		abort();
	ws(&v);
	if (v.s != v.end)
		abort();
	/* decoded strings in order: key, value (or "b" after an array value) */
	for (size_t i = 0; i < n_pc && expect_at < v.n_dec; i += 2) {
		size_t kl = strnlen((const char *)pc[i].p, pc[i].n);
		size_t vl = pc[i + 1].n;

		must_decode_to(&v, expect_at++, pc[i].p, kl);
		if (opts & 0x40 && !(opts & 0x20 && i % 4 == 2) && i % 4 == 0)
			vl = strnlen((const char *)pc[i + 1].p, vl);
		must_decode_to(&v, expect_at++, pc[i + 1].p, vl);
		if (opts & 0x20 && i % 4 == 2)
			expect_at++;	/* the "b" key */
	}
	for (int i = 0; i < v.n_dec; i++)
		free(v.dec[i]);
	jb_free(&jb);
	return 0;
}
