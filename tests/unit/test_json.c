// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/base/json.c. Every document built is checked by a strict
 * RFC 8259 validator (UTF-8 included); every string written is decoded back
 * and compared with what was given: equal bytes for valid UTF-8, U+FFFD for
 * each byte that is not. main() returns 1 if any check failed.
 */
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

#include "check.h"
#include "json_valid.h"

/* Write in[0..n) as a JSON string, validate it, decode it, compare. */
static bool roundtrip(const void *in, size_t n)
{
	struct jbuf jb;
	struct jv v;
	char *want = malloc(3 * n + 1), *got = malloc(3 * n + 1);
	size_t wl, gl = 0;
	bool ok;

	if (!want || !got)
		abort();
	jb_init(&jb);
	jb_strn(&jb, NULL, in, n);
	ok = check(!jb.oom && jb.buf && strlen(jb.buf) == jb.len, __FILE__, __LINE__,
		   "buffer state");
	ok = ok && check(json_valid(jb.buf, jb.len), __FILE__, __LINE__, "invalid JSON: %s",
			 jb.buf);
	if (ok) {
		v = (struct jv){ (const unsigned char *)jb.buf,
				 (const unsigned char *)jb.buf + jb.len };
		ok = CHECK(jv_string(&v, got, &gl));
		wl = json_expected_text(in, n, want);
		ok = ok && check(gl == wl && !memcmp(got, want, wl), __FILE__, __LINE__,
				 "decoded text differs for %zu input bytes: %s", n, jb.buf);
	}
	jb_free(&jb);
	free(want);
	free(got);
	return ok;
}

static void test_escapes(void)
{
	struct jbuf jb;
	char c[2] = { 0, 0 };

	begin("escapes");
	jb_init(&jb);
	jb_str(&jb, NULL, "a\"b\\c/d\n\t\x01\x1f\x7f");
	CHECK_S(jb.buf, "\"a\\\"b\\\\c/d\\u000a\\u0009\\u0001\\u001f\x7f\"");
	jb_reset(&jb);
	jb_strn(&jb, NULL, "x\0y", 3);
	CHECK_S(jb.buf, "\"x\\u0000y\"");
	jb_reset(&jb);
	jb_str(&jb, NULL, NULL);
	CHECK_S(jb.buf, "\"\"");
	jb_free(&jb);
	for (int b = 0; b < 256; b++) {
		c[0] = (char)b;
		if (!roundtrip(c, 1))
			fprintf(stderr, "  (byte %#x)\n", b);
	}
}

static void test_utf8(void)
{
	static const struct {
		const char *s, *want;
	} cases[] = {
		{ "caf\xc3\xa9", "\"caf\xc3\xa9\"" },
		{ "\xe2\x82\xac", "\"\xe2\x82\xac\"" },				/* € */
		{ "\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"" },			/* emoji */
		{ "\xef\xbf\xbf", "\"\xef\xbf\xbf\"" },				/* U+FFFF */
		{ "\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"" },			/* U+10FFFF */
		{ "\xc0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\"" },			/* overlong NUL */
		{ "\xe0\x80\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" },	/* overlong / */
		{ "\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" },	/* surrogate */
		{ "\xf4\x90\x80\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" },
		{ "\xe2\x82", "\"\xef\xbf\xbd\xef\xbf\xbd\"" },			/* truncated */
		{ "\x80x", "\"\xef\xbf\xbdx\"" },				/* lone continuation */
		{ "\xff\xfe", "\"\xef\xbf\xbd\xef\xbf\xbd\"" },
		{ "\xe2\x82\"", "\"\xef\xbf\xbd\xef\xbf\xbd\\\"\"" },		/* quote inside */
		{ "\xc3\x00", "\"\xef\xbf\xbd\\u0000\"" },
	};
	struct jbuf jb;

	begin("utf8");
	jb_init(&jb);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = strlen(cases[i].s);

		if (i == sizeof(cases) / sizeof(cases[0]) - 1)
			n = 2;
		jb_reset(&jb);
		jb_strn(&jb, NULL, cases[i].s, n);
		check(!strcmp(jb.buf, cases[i].want), __FILE__, __LINE__, "case %zu: %s", i,
		      jb.buf);
		roundtrip(cases[i].s, n);
	}
	jb_free(&jb);
}

/* Random byte strings, biased towards the troublesome bytes. */
static void test_random_strings(void)
{
	static const unsigned char pool[] = { 0x00, 0x01, 0x1f, '"', '\\', '/', 0x7f, 0x80, 0xbf,
					      0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4,
					      0xf5, 0xff, 'a', 0xa0, 0x9f, 0x8f, 0x90 };
	uint64_t x = 0x9e3779b97f4a7c15ull;
	unsigned char buf[64];

	begin("random_strings");
	for (int it = 0; it < 50000; it++) {
		size_t n;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		n = x % sizeof(buf);
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x & 1 ? pool[(x >> 1) % sizeof(pool)] : (unsigned char)(x >> 8);
		}
		if (!roundtrip(buf, n))
			break;
	}
}

static void test_structure(void)
{
	struct jbuf jb;

	begin("structure");
	jb_init(&jb);
	jb_obj_open(&jb);
	jb_str(&jb, "s", "v");
	jb_u64(&jb, "u", UINT64_MAX);
	jb_i64(&jb, "i", INT64_MIN);
	jb_dbl(&jb, "d", 1.5);
	jb_bool(&jb, "t", true);
	jb_bool(&jb, "f", false);
	jb_arr_open(&jb, "a");
	jb_str(&jb, NULL, "x");
	jb_u64(&jb, NULL, 0);
	jb_obj_open(&jb);
	jb_arr_open(&jb, "empty");
	jb_arr_close(&jb);
	jb_obj_close(&jb);
	jb_obj_open(&jb);
	jb_obj_close(&jb);
	jb_arr_close(&jb);
	jb_key(&jb, "o");
	jb_obj_open(&jb);
	jb_str(&jb, "k\"ey\n", "\xff");
	jb_obj_close(&jb);
	jb_obj_close(&jb);
	CHECK_S(jb.buf, "{\"s\":\"v\",\"u\":18446744073709551615,\"i\":-9223372036854775808,"
			"\"d\":1.500000,\"t\":true,\"f\":false,\"a\":[\"x\",0,{\"empty\":[]},{}],"
			"\"o\":{\"k\\\"ey\\u000a\":\"\xef\xbf\xbd\"}}");
	CHECK(json_valid(jb.buf, jb.len));
	/* an array of objects at the top */
	jb_reset(&jb);
	CHECK_U(jb.len, 0);
	jb_arr_open(&jb, NULL);
	for (int i = 0; i < 3; i++) {
		jb_obj_open(&jb);
		jb_u64(&jb, "n", i);
		jb_obj_close(&jb);
	}
	jb_arr_close(&jb);
	CHECK_S(jb.buf, "[{\"n\":0},{\"n\":1},{\"n\":2}]");
	jb_free(&jb);
	CHECK(jb.buf == NULL && jb.len == 0);
}

/* A big document grows the buffer; jb_printf appends verbatim. */
static void test_growth(void)
{
	struct jbuf jb;
	size_t n = 1 << 20;
	char *big = malloc(n + 1);

	begin("growth");
	memset(big, 'q', n);
	big[n] = 0;
	big[n / 2] = '\n';
	jb_init(&jb);
	jb_arr_open(&jb, NULL);
	jb_str(&jb, NULL, big);
	jb_printf(&jb, ",%d,\"%s\"", 42, "raw");
	jb_arr_close(&jb);
	CHECK(!jb.oom);
	CHECK_U(jb.len, n + 5 + 2 + 3 + 6 + 2);
	CHECK_U(strlen(jb.buf), jb.len);
	CHECK(json_valid(jb.buf, jb.len));
	CHECK(jb.cap >= jb.len + 1);
	jb_free(&jb);
	free(big);
}

/* After an allocation failure every call is a no-op. */
static void test_oom(void)
{
	struct jbuf jb;

	begin("oom");
	jb_init(&jb);
	jb_str(&jb, NULL, "before");
	jb.oom = true;
	jb_str(&jb, NULL, "after");
	jb_printf(&jb, "%s", "more");
	jb_u64(&jb, NULL, 1);
	CHECK_S(jb.buf, "\"before\"");
	jb_reset(&jb);
	CHECK(!jb.oom);
	jb_free(&jb);
}

/* The validator itself must reject what is not JSON. */
static void test_validator(void)
{
	static const char *const bad[] = {
		"", "\"", "\"\x01\"", "\"\\x\"", "\"\\u12\"", "{\"a\" 1}", "[1,]", "01", "1.",
		"-", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "nan", "{\"a\":1,}", "[1 2]", "tru",
	};

	begin("validator");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check(!json_valid(bad[i], strlen(bad[i])), __FILE__, __LINE__, "accepted %s",
		      bad[i]);
	{
		static const char good[] = "{\"a\":[1,-2.5e3,true,null,\"\\u0001\xe2\x82\xac\"]}";

		CHECK(json_valid(good, strlen(good)));
	}
}

int main(void)
{
	test_validator();
	test_escapes();
	test_utf8();
	test_random_strings();
	test_structure();
	test_growth();
	test_oom();
	printf("test_json: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
