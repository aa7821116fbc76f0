// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for the header-value parsers of user/base/ids.c and
 * user/request/trust.c: ids_parse_traceparent(), request_id_valid(), trust_add() and
 * trust_match(). The input, NUL-terminated in an exact-size heap copy, is
 * given to each; the answers are compared with small independent reference
 * implementations written from the W3C Trace Context and docs/records.md
 * rules, and what the parsers fill in is checked against the text.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iuser -Itests/unit \
 *         tests/fuzz/fuzz_ids.c user/base/ids.c user/request/trust.c -o build/fuzz_ids
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/ids.h"
#include "request/trust.h"

#define CHECK_ABORT	/* a failed check aborts: libFuzzer keeps the input */
#include "check.h"

static bool lhex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool all_lhex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!lhex(s[i]))
			return false;
	return true;
}

static bool all_char(const char *s, size_t n, char c)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != c)
			return false;
	return true;
}

/* version "-" trace-id "-" parent-id "-" flags, per W3C Trace Context level 1. */
static bool ref_traceparent(const char *s)
{
	size_t n = strlen(s);

	if (n < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
		return false;
	if (!all_lhex(s, 2) || !all_lhex(s + 3, 32) || !all_lhex(s + 36, 16) ||
	    !all_lhex(s + 53, 2))
		return false;
	if (!memcmp(s, "ff", 2) || all_char(s + 3, 32, '0') || all_char(s + 36, 16, '0'))
		return false;
	if (!memcmp(s, "00", 2))
		return n == 55;
	return n == 55 || s[55] == '-';
}

static bool ref_request_id(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c && strchr("._:+/=-", c))))
			return false;
	}
	return true;
}

static void check_traceparent(const char *s)
{
	uint8_t tid[16], pid[8];
	char hex[33];
	bool sampled = false, ok = ids_parse_traceparent(s, tid, pid, &sampled);

	CHECK(ok == ref_traceparent(s));
	if (!ok)
		return;
	ids_hex(hex, tid, 16);
	CHECK(!memcmp(hex, s + 3, 32));
	ids_hex(hex, pid, 8);
	CHECK(!memcmp(hex, s + 36, 16));
	CHECK(sampled == ((s[54] - (s[54] <= '9' ? '0' : 'a' - 10)) & 1));
}

/* Does addr lie in the prefix of net? bit by bit. */
static bool ref_prefix(const uint8_t net[16], int bits, const uint8_t addr[16])
{
	for (int i = 0; i < bits; i++)
		if ((net[i / 8] ^ addr[i / 8]) & (0x80 >> (i % 8)))
			return false;
	return true;
}

static void check_trust(const char *s, const uint8_t probe[16])
{
	struct trust t = { 0 };
	int err = trust_add(&t, s);
	bool in;

	CHECK(!err || err == -EINVAL);
	if (err) {
		CHECK(!(t.n || trust_match(&t, probe)));
		return;
	}
	if (!strcmp(s, "unix")) {	/* UNIX peers: no network, no address matches */
		CHECK(!(t.n || !trust_unix(&t) || trust_match(&t, probe)));
		return;
	}
	CHECK(!(trust_unix(&t) || t.n != 1 || t.nets[0].bits < 0 || t.nets[0].bits > 128));
	/* an IPv4 network is a v4-mapped prefix of at least 96 bits */
	CHECK(!(!strchr(s, ':') && (t.nets[0].bits < 96 || t.nets[0].addr[10] != 0xff)));
	CHECK(trust_match(&t, t.nets[0].addr));
	in = ref_prefix(t.nets[0].addr, t.nets[0].bits, probe);
	CHECK(trust_match(&t, probe) == in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t probe[16] = { [10] = 0xff, [11] = 0xff };
	char *s = malloc(size + 1);

	CHECK(s);
	memcpy(s, data, size);
	s[size] = 0;
	check_traceparent(s);
	CHECK(request_id_valid(s) == ref_request_id(s));
	/* the last bytes also make the address probed: IPv6, or IPv4 v4-mapped */
	if (size >= 16)
		memcpy(probe, data + size - 16, 16);
	else if (size >= 4)
		memcpy(probe + 12, data + size - 4, 4);
	check_trust(s, probe);
	free(s);
	return 0;
}
