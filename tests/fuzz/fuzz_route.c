// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for user/request/route.c.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iuser -Itests/unit \
 *         tests/fuzz/fuzz_route.c user/request/route.c -o build/fuzz_route
 *
 * Input: byte 0 = number of user patterns (low 2 bits) and route cap (high
 * bits), then lines: the patterns first, the last line is the request path.
 * Checked:
 *  - route_template() into every output size up to 40 and ROUTE_LEN_MAX
 *    (exact-size heap buffers): always terminated inside the buffer, never
 *    a '?' or '#', a prefix of the full-size result cut at a segment (or "/"
 *    when not even the first segment fits), and idempotent (a route
 *    templated again is itself);
 *  - routes__resolve() equals a reference: the first added pattern that
 *    matches by segments (literal equal, {name} non-empty, {name...} the
 *    non-empty rest), else the template; then ROUTE_OVERFLOW beyond the cap,
 *    and the number of distinct routes of a service never exceeds the cap.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request/route.h"

#define CHECK_ABORT	/* a failed check aborts: libFuzzer keeps the input */
#include "check.h"

#define MAX_PATTERNS	3
#define MAX_SEGS	64

static char *template_n(const char *path, size_t n)
{
	char *out = malloc(n);

	CHECK(out);
	route_template(path, out, n);
	CHECK(memchr(out, 0, n));
	return out;
}

static void check_template(const char *path)
{
	char *full = template_n(path, ROUTE_LEN_MAX), *again;
	size_t fl = strlen(full);

	CHECK(!(strpbrk(full, "?#") || fl >= ROUTE_LEN_MAX));
	again = template_n(full, ROUTE_LEN_MAX);
	CHECK(!strcmp(again, full));
	free(again);
	for (size_t n = 1; n <= 40; n++) {
		char *o = template_n(path, n);
		size_t ol = strlen(o);

		CHECK(ol < n);
		if (!strcmp(o, "/")) {	/* nothing fitted: the root route */
			free(o);
			continue;
		}
		CHECK(!strncmp(o, full, ol));
		/* cut between segments: the next char of the full route is '/' or its end */
		CHECK(!(ol && ol < fl && full[ol] != '/' && o[ol - 1] != '/'));
		free(o);
	}
	free(full);
}

/* Split s[0..n) at '/' into segs (pointer, length); returns the count. */
static int split(const char *s, size_t n, const char *seg[], size_t len[])
{
	int k = 0;
	size_t start = 0;

	for (size_t i = 0; i <= n && k < MAX_SEGS; i++) {
		if (i == n || s[i] == '/') {
			seg[k] = s + start;
			len[k++] = i - start;
			start = i + 1;
		}
	}
	return k;
}

/* 1 if pat matches path, 0 if not, -1 if beyond the reference's table. */
static int ref_match(const char *pat, const char *path)
{
	const char *ps[MAX_SEGS], *xs[MAX_SEGS];
	size_t pl[MAX_SEGS], xl[MAX_SEGS];
	size_t n = strcspn(path, "?#");
	int np = split(pat, strlen(pat), ps, pl), nx = split(path, n, xs, xl);

	if (np == MAX_SEGS || nx == MAX_SEGS)
		return -1;
	for (int i = 0; i < np; i++) {
		bool param = pl[i] >= 2 && ps[i][0] == '{' && ps[i][pl[i] - 1] == '}';

		if (i >= nx)
			return 0;
		if (param && pl[i] >= 5 && !memcmp(ps[i] + pl[i] - 4, "...}", 4))
			return xl[i] > 0;
		if (param ? !xl[i] : (pl[i] != xl[i] || memcmp(ps[i], xs[i], pl[i])))
			return 0;
	}
	return np == nx;
}

static void cap_check(void *ctx, const char *service, uint64_t collapsed, unsigned distinct)
{
	CHECK(distinct <= *(const unsigned *)ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *lines[MAX_PATTERNS + 1], *pats[MAX_PATTERNS], *path, out[ROUTE_LEN_MAX];
	char want[ROUTE_LEN_MAX];
	unsigned npat, cap, n_lines = 0, n_added = 0;
	struct routes *rt;

	if (size < 1)
		return 0;
	npat = data[0] & 3;
	cap = 1 + (data[0] >> 2);
	buf = malloc(size);
	CHECK(buf);
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = 0;
	/* patterns are lines; the path is the rest (it may hold newlines) */
	lines[0] = buf;
	for (char *p = buf; n_lines < npat && (p = strchr(p, '\n')); ) {
		*p++ = 0;
		lines[++n_lines] = p;
	}
	path = lines[n_lines];
	check_template(path);

	rt = routes__new(cap);
	CHECK(rt);
	for (unsigned i = 0; i < n_lines; i++)
		if (!routes__add_pattern(rt, lines[i]))
			pats[n_added++] = lines[i];
	for (int svc = 0; svc < 2; svc++) {
		const char *service = svc ? "b" : "a";
		unsigned i;
		int m = 0;

		routes__resolve(rt, service, path, out);
		CHECK(memchr(out, 0, sizeof(out)));
		if (!strcmp(out, ROUTE_OVERFLOW))
			continue;
		for (i = 0; i < n_added && !(m = ref_match(pats[i], path)); i++)
			;
		if (m < 0)
			continue;
		if (i < n_added)
			snprintf(want, sizeof(want), "%s", pats[i]);
		else
			route_template(path, want, sizeof(want));
		check(!strcmp(out, want), __FILE__, __LINE__,
		      "\"%s\" resolved to \"%s\", reference \"%s\"", path, out, want);
	}
	/* more paths into a tiny cap: distinct routes stay within it */
	for (unsigned k = 0; k < 8; k++) {
		char p2[64];

		snprintf(p2, sizeof(p2), "/x%u%.20s", k, path);
		routes__resolve(rt, "a", p2, out);
	}
	routes__foreach_service(rt, cap_check, &cap);
	routes__free(rt);
	free(buf);
	return 0;
}
