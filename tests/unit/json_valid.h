/* SPDX-License-Identifier: MIT */
/*
 * The unit tests' and fuzz harnesses' strict JSON validator (RFC 8259:
 * numbers with fraction and exponent, strict UTF-8 per RFC 3629, nesting up
 * to JV_DEPTH_MAX), shaped after what user/base/json.c writes: a \u escape
 * beyond U+007F (json.c escapes only control bytes) is refused.
 *
 *   json_valid(s, n)          is s[0..n) exactly one value, whitespace around?
 *   jv_string(&v, out, &len)  one string at v.s, decoded (UTF-8) into out
 *   json_expected_text()      what json.c makes of raw bytes: invalid UTF-8
 *                             as U+FFFD per byte
 *
 * A struct jv with on_string set also hands every string of the document
 * (keys included, in document order) decoded to on_string. Included by one
 * .c file per binary (everything is static).
 */
#ifndef OBS_TEST_JSON_VALID_H
#define OBS_TEST_JSON_VALID_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define JV_DEPTH_MAX	64

struct jv {
	const unsigned char *s, *end;
	int depth;
	/* optional: every string decoded, in document order */
	void (*on_string)(void *ctx, const char *s, size_t n);
	void *ctx;
};

/* Length of the valid UTF-8 sequence at p (RFC 3629), 0 if invalid. */
static size_t jv_utf8_seq(const unsigned char *p, const unsigned char *end)
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

static void jv_ws(struct jv *v)
{
	while (v->s < v->end && (*v->s == ' ' || *v->s == '\t' || *v->s == '\r' || *v->s == '\n'))
		v->s++;
}

static bool jv_lit(struct jv *v, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(v->end - v->s) < n || memcmp(v->s, w, n))
		return false;
	v->s += n;
	return true;
}

static int jv_hex4(const unsigned char *p)
{
	int x = 0;

	for (int i = 0; i < 4; i++) {
		int c = p[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
				  c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

		if (d < 0)
			return -1;
		x = x << 4 | d;
	}
	return x;
}

/* The string at v->s; its decoded bytes (UTF-8) go to out when not NULL
 * (at most as many bytes as the string's JSON text). */
static bool jv_decode(struct jv *v, char *out, size_t *out_len)
{
	size_t o = 0;

	if (v->s >= v->end || *v->s != '"')
		return false;
	v->s++;
	while (v->s < v->end && *v->s != '"') {
		unsigned c = *v->s;
		size_t n;
		int x;

		if (c < 0x20)
			return false;
		if (c != '\\') {
			n = jv_utf8_seq(v->s, v->end);
			if (!n)
				return false;
			if (out)
				memcpy(out + o, v->s, n);
			o += n;
			v->s += n;
			continue;
		}
		if (v->end - v->s < 2)
			return false;
		c = v->s[1];
		v->s += 2;
		if (c == 'u') {
			if (v->end - v->s < 4 || (x = jv_hex4(v->s)) < 0)
				return false;
			v->s += 4;
			if (x >= 0xd800 && x <= 0xdfff)
				return false;	/* json.c never writes surrogates */
			if (x >= 0x80)
				return false;	/* nor escapes beyond control bytes */
			if (out)
				out[o] = (char)x;
			o++;
			continue;
		}
		if (!c || !strchr("\"\\/bfnrt", c))
			return false;
		if (out)
			out[o] = c == 'b' ? '\b' : c == 'f' ? '\f' : c == 'n' ? '\n' :
				 c == 'r' ? '\r' : c == 't' ? '\t' : (char)c;
		o++;
	}
	if (v->s >= v->end)
		return false;
	v->s++;
	if (out_len)
		*out_len = o;
	return true;
}

/* A string of the document: decoded to v->on_string when it is set. */
static bool jv_string(struct jv *v, char *out, size_t *out_len)
{
	size_t n;
	char *buf;
	bool ok;

	if (out || !v->on_string)
		return jv_decode(v, out, out_len);
	buf = malloc(v->end - v->s + 1);
	if (!buf)
		abort();
	ok = jv_decode(v, buf, &n);
	if (ok)
		v->on_string(v->ctx, buf, n);
	free(buf);
	return ok;
}

static bool jv_digits(struct jv *v)
{
	if (v->s >= v->end || *v->s < '0' || *v->s > '9')
		return false;
	while (v->s < v->end && *v->s >= '0' && *v->s <= '9')
		v->s++;
	return true;
}

/* number = [ minus ] int [ frac ] [ exp ] (RFC 8259, section 6) */
static bool jv_number(struct jv *v)
{
	if (v->s < v->end && *v->s == '-')
		v->s++;
	if (v->s < v->end && *v->s == '0')
		v->s++;
	else if (v->s >= v->end || *v->s < '1' || !jv_digits(v))
		return false;
	if (v->s < v->end && *v->s == '.') {
		v->s++;
		if (!jv_digits(v))
			return false;
	}
	if (v->s < v->end && (*v->s == 'e' || *v->s == 'E')) {
		v->s++;
		if (v->s < v->end && (*v->s == '+' || *v->s == '-'))
			v->s++;
		if (!jv_digits(v))
			return false;
	}
	return true;
}

static bool jv_value(struct jv *v);

static bool jv_container(struct jv *v, char close, bool keys)
{
	v->s++;
	if (++v->depth > JV_DEPTH_MAX)
		return false;
	jv_ws(v);
	if (v->s < v->end && *v->s == close) {
		v->s++;
		v->depth--;
		return true;
	}
	for (;;) {
		jv_ws(v);
		if (keys) {
			if (!jv_string(v, NULL, NULL))
				return false;
			jv_ws(v);
			if (v->s >= v->end || *v->s != ':')
				return false;
			v->s++;
		}
		if (!jv_value(v))
			return false;
		jv_ws(v);
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

static bool jv_value(struct jv *v)
{
	jv_ws(v);
	if (v->s >= v->end)
		return false;
	switch (*v->s) {
	case '{':
		return jv_container(v, '}', true);
	case '[':
		return jv_container(v, ']', false);
	case '"':
		return jv_string(v, NULL, NULL);
	case 't':
		return jv_lit(v, "true");
	case 'f':
		return jv_lit(v, "false");
	case 'n':
		return jv_lit(v, "null");
	default:
		return jv_number(v);
	}
}

/* Is v's text exactly one JSON value (with optional whitespace around)? */
static __attribute__((unused)) bool jv_document(struct jv *v)
{
	if (!jv_value(v))
		return false;
	jv_ws(v);
	return v->s == v->end;
}

/* Is s[0..n) exactly one JSON value (with optional whitespace around)? */
static __attribute__((unused)) bool json_valid(const char *s, size_t n)
{
	struct jv v = { (const unsigned char *)s, (const unsigned char *)s + n };

	return jv_document(&v);
}

/* What json.c makes of in[0..n): the bytes, invalid UTF-8 as U+FFFD each;
 * out holds 3 * n bytes. Returns the length. */
static __attribute__((unused)) size_t json_expected_text(const unsigned char *in, size_t n,
							 char *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		size_t k = jv_utf8_seq(in + i, in + n);

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

#endif
