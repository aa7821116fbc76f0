// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/base/ids.c (random ids, W3C traceparent) and user/request/trust.c
 * (trusted proxies, X-Request-ID validation). Strings are parsed from
 * exact-size heap copies so that AddressSanitizer catches a read past the
 * terminating NUL. main() returns 1 if any check failed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/ids.h"
#include "request/trust.h"

#define MAX_PRINTED	200

#include "check.h"


static char *dup_exact(const char *s, size_t n)
{
	char *b = malloc(n + 1);

	if (!b)
		abort();
	memcpy(b, s, n);
	b[n] = 0;
	return b;
}

/* ids_parse_traceparent on an exact-size copy of s[0..n). */
static bool tp_parse_n(const char *s, size_t n, uint8_t tid[16], uint8_t pid[8], bool *sampled)
{
	char *b = dup_exact(s, n);
	bool ok = ids_parse_traceparent(b, tid, pid, sampled);

	free(b);
	return ok;
}

static bool tp_parse(const char *s)
{
	uint8_t tid[16], pid[8];
	bool sampled;

	return tp_parse_n(s, strlen(s), tid, pid, &sampled);
}

#define TP_TRACE	"0af7651916cd43dd8448eb211c80319c"
#define TP_PARENT	"b7ad6b7169203331"
#define TP_VALID	"00-" TP_TRACE "-" TP_PARENT "-01"

static void test_traceparent_valid(void)
{
	static const uint8_t want_tid[16] = { 0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd,
					      0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c };
	static const uint8_t want_pid[8] = { 0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31 };
	uint8_t tid[16], pid[8];
	bool sampled = false;

	begin("traceparent_valid");
	CHECK(tp_parse_n(TP_VALID, strlen(TP_VALID), tid, pid, &sampled));
	CHECK(!memcmp(tid, want_tid, 16));
	CHECK(!memcmp(pid, want_pid, 8));
	CHECK(sampled);
	CHECK(tp_parse_n("00-" TP_TRACE "-" TP_PARENT "-00", 55, tid, pid, &sampled));
	CHECK(!sampled);
	CHECK(tp_parse_n("00-" TP_TRACE "-" TP_PARENT "-03", 55, tid, pid, &sampled));
	CHECK(sampled);	/* only bit 0 means sampled; other bits are ignored */
	CHECK(tp_parse_n("00-" TP_TRACE "-" TP_PARENT "-fe", 55, tid, pid, &sampled));
	CHECK(!sampled);
	/* later versions: the same prefix, then the end or '-' and more */
	CHECK(tp_parse("01-" TP_TRACE "-" TP_PARENT "-01"));
	CHECK(tp_parse("cc-" TP_TRACE "-" TP_PARENT "-01-what-ever"));
	CHECK(tp_parse("fe-" TP_TRACE "-" TP_PARENT "-01-"));
	/* the smallest non-zero ids */
	CHECK(tp_parse("00-00000000000000000000000000000001-0000000000000001-01"));
}

static void test_traceparent_invalid(void)
{
	static const char *const bad[] = {
		"",
		"00",
		"00-" TP_TRACE "-" TP_PARENT "-0",			/* 54 chars */
		"00-" TP_TRACE "-" TP_PARENT "-01-",			/* v00 must end */
		"00-" TP_TRACE "-" TP_PARENT "-01x",
		"00-" TP_TRACE "-" TP_PARENT "-011",
		"ff-" TP_TRACE "-" TP_PARENT "-01",			/* version ff */
		"01-" TP_TRACE "-" TP_PARENT "-01x",			/* later: '-' must follow */
		"0g-" TP_TRACE "-" TP_PARENT "-01",
		"0A-" TP_TRACE "-" TP_PARENT "-01",			/* uppercase */
		"00-0AF7651916CD43DD8448EB211C80319C-" TP_PARENT "-01",
		"00-" TP_TRACE "-B7AD6B7169203331-01",
		"00-" TP_TRACE "-" TP_PARENT "-0F",
		"00-00000000000000000000000000000000-" TP_PARENT "-01",	/* zero trace id */
		"00-" TP_TRACE "-0000000000000000-01",			/* zero parent id */
		"00_" TP_TRACE "-" TP_PARENT "-01",
		"00-" TP_TRACE "_" TP_PARENT "-01",
		"00-" TP_TRACE "-" TP_PARENT "_01",
		"00-" TP_TRACE "-" TP_PARENT "-01\n",
		" 00-" TP_TRACE "-" TP_PARENT "-01",
		"00-" TP_TRACE "0-" TP_PARENT "-01",
		"00-" TP_TRACE "-" TP_PARENT "0-01",
	};

	begin("traceparent_invalid");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check(!tp_parse(bad[i]), __FILE__, __LINE__, "accepted \"%s\"", bad[i]);
}

/* Every prefix, and every hex digit replaced by each non-hex byte, is invalid. */
static void test_traceparent_mutations(void)
{
	uint8_t tid[16], pid[8];
	bool sampled;
	char b[56];

	begin("traceparent_mutations");
	for (size_t n = 0; n < 55; n++)
		check(!tp_parse_n(TP_VALID, n, tid, pid, &sampled), __FILE__, __LINE__,
		      "accepted the %zu-byte prefix", n);
	for (size_t i = 0; i < 55; i++) {
		if (i == 2 || i == 35 || i == 52)
			continue;
		for (int c = 1; c < 256; c++) {
			bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');

			memcpy(b, TP_VALID, 56);
			b[i] = (char)c;
			if (hex)
				continue;
			if (!check(!tp_parse_n(b, 55, tid, pid, &sampled), __FILE__, __LINE__,
				   "accepted byte %#x at %zu", c, i))
				return;
		}
	}
	/* and every other hex digit at every position is valid (ids stay non-zero) */
	for (size_t i = 3; i < 55; i++) {
		if (i == 35 || i == 52)
			continue;
		for (const char *h = "0123456789abcdef"; *h; h++) {
			memcpy(b, TP_VALID, 56);
			b[i] = *h;
			check(tp_parse_n(b, 55, tid, pid, &sampled), __FILE__, __LINE__,
			      "rejected \"%s\"", b);
		}
	}
}

static bool all_zero(const uint8_t *b, int n)
{
	for (int i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static void test_random(void)
{
	uint8_t a[16], b[16];
	char uuid[33], hex[17];
	int same = 0;

	begin("random_ids");
	ids_seed_fixed(42);
	ids_random(a, 16);
	ids_seed_fixed(42);
	ids_random(b, 16);
	CHECK(!memcmp(a, b, 16));	/* a fixed seed replays */
	ids_seed_fixed(43);
	ids_random(b, 16);
	CHECK(memcmp(a, b, 16));
	ids_seed();
	/* one byte at a time: zero would come 1 in 256 times; never returned */
	for (int i = 0; i < 20000; i++) {
		uint8_t one;

		ids_random(&one, 1);
		if (!CHECK(one != 0))
			break;
	}
	for (int i = 0; i < 1000; i++) {
		ids_random(a, 8);
		ids_random(b, 8);
		CHECK(!all_zero(a, 8));
		same += !memcmp(a, b, 8);
	}
	CHECK_U(same, 0);
	for (int i = 0; i < 1000; i++) {
		ids_uuid4_hex(uuid);
		CHECK_U(strlen(uuid), 32);
		CHECK(strspn(uuid, "0123456789abcdef") == 32);
		CHECK(uuid[12] == '4');				/* version 4 */
		CHECK(strchr("89ab", uuid[16]) != NULL);	/* RFC 4122 variant */
	}
	ids_hex(hex, (const uint8_t *)"\x00\x01\xab\xff\x10\x7f\x80\x09", 8);
	CHECK_S(hex, "0001abff107f8009");
	ids_hex(hex, a, 0);
	CHECK_S(hex, "");
	for (int b = 0; b < 256; b++) {	/* every byte value */
		uint8_t in = b;
		char want[3];

		snprintf(want, sizeof(want), "%02x", b);
		ids_hex(hex, &in, 1);
		CHECK_S(hex, want);
	}
}

static void test_request_id(void)
{
	char id[200];

	begin("request_id_valid");
	CHECK(request_id_valid("a"));
	CHECK(request_id_valid("0123456789-abcdef_ABC.xyz:1+2/3=4"));
	CHECK(!request_id_valid(""));
	memset(id, 'x', sizeof(id));
	for (size_t n = 1; n < sizeof(id); n++) {
		char *b = dup_exact(id, n);

		check(request_id_valid(b) == (n <= 128), __FILE__, __LINE__,
		      "%zu-character id: %d", n, request_id_valid(b));
		free(b);
	}
	for (int c = 1; c < 256; c++) {
		bool allowed = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			       (c >= 'A' && c <= 'Z') || strchr("._:+/=-", c);
		char s[4] = { 'a', (char)c, 'b', 0 };
		char *b = dup_exact(s, 3);

		check(request_id_valid(b) == allowed, __FILE__, __LINE__, "byte %#x: %d", c,
		      request_id_valid(b));
		free(b);
	}
}

static void addr4(uint8_t out[16], uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	memset(out, 0, 16);
	out[10] = out[11] = 0xff;
	out[12] = a;
	out[13] = b;
	out[14] = c;
	out[15] = d;
}

static void test_trust(void)
{
	static const char *const bad[] = {
		"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8x", "10.0.0/8",
		"::1/129", "not-an-address", "10.0.0.0/8/8", "1.2.3.4.5",
		"0000:0000:0000:0000:0000:0000:0000:0000:0000/8",
		"[::1]", "10.0.0.1 ", "fe80::1%eth0",
	};
	struct trust t = { 0 };
	uint8_t a[16] = { 0 };

	begin("trust");
	CHECK(!trust_match(NULL, a));
	CHECK(!trust_match(&t, a));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check(trust_add(&t, bad[i]) == -EINVAL, __FILE__, __LINE__, "accepted \"%s\"",
		      bad[i]);
	CHECK_U(t.n, 0);
	CHECK(!trust_add(&t, "10.0.0.0/8"));
	CHECK(!trust_add(&t, "192.168.1.7"));
	CHECK(!trust_add(&t, "2001:db8::/32"));
	CHECK(!trust_add(&t, "172.16.0.0/12"));
	addr4(a, 10, 200, 3, 4);
	CHECK(trust_match(&t, a));
	addr4(a, 11, 0, 0, 1);
	CHECK(!trust_match(&t, a));
	addr4(a, 192, 168, 1, 7);
	CHECK(trust_match(&t, a));
	addr4(a, 192, 168, 1, 8);
	CHECK(!trust_match(&t, a));
	addr4(a, 172, 31, 255, 255);
	CHECK(trust_match(&t, a));	/* /12: 172.16 .. 172.31 */
	addr4(a, 172, 32, 0, 0);
	CHECK(!trust_match(&t, a));
	memset(a, 0, 16);
	a[0] = 0x20;
	a[1] = 0x01;
	a[2] = 0x0d;
	a[3] = 0xb8;
	a[15] = 1;
	CHECK(trust_match(&t, a));
	a[3] = 0xb9;
	CHECK(!trust_match(&t, a));

	/* 0.0.0.0/0 is every IPv4 peer, and no IPv6 one */
	memset(&t, 0, sizeof(t));
	CHECK(!trust_add(&t, "0.0.0.0/0"));
	addr4(a, 1, 2, 3, 4);
	CHECK(trust_match(&t, a));
	memset(a, 0, 16);
	a[15] = 1;
	CHECK(!trust_match(&t, a));
	CHECK(!trust_add(&t, "::/0"));
	CHECK(trust_match(&t, a));

	/* the table is bounded */
	memset(&t, 0, sizeof(t));
	for (int i = 0; i < TRUST_MAX; i++)
		CHECK(!trust_add(&t, "10.0.0.1/32"));
	CHECK(trust_add(&t, "10.0.0.1/32") == -E2BIG);
	CHECK_U(t.n, TRUST_MAX);
	CHECK(!trust_unix(&t));
	CHECK(!trust_add(&t, "unix"));	/* no table slot: still room for it */
	CHECK(trust_unix(&t));
}

/* UNIX peers are trusted only by "unix", never by a CIDR. */
static void test_trust_unix(void)
{
	struct trust t = { 0 };

	begin("trust unix");
	CHECK(!trust_unix(NULL));
	CHECK(!trust_unix(&t));
	CHECK(!trust_add(&t, "::/0"));
	CHECK(!trust_add(&t, "0.0.0.0/0"));
	CHECK(!trust_unix(&t));
	CHECK(trust_add(&t, "unix/8") == -EINVAL);
	CHECK(trust_add(&t, "UNIX") == -EINVAL);
	CHECK(trust_add(&t, "unix:") == -EINVAL);
	CHECK(!trust_unix(&t));
	CHECK(!trust_add(&t, "unix"));
	CHECK(trust_unix(&t));
	CHECK_U(t.n, 2);
}

int main(void)
{
	test_traceparent_valid();
	test_traceparent_invalid();
	test_traceparent_mutations();
	test_random();
	test_request_id();
	test_trust();
	test_trust_unix();
	printf("test_ids: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
