// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/request/route.c: the heuristic templater, user patterns and the
 * per-service cap. Outputs go to exact-size heap buffers so that
 * AddressSanitizer catches a write past the size given. main() returns 1 if
 * any check failed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request/route.h"

#define MAX_PRINTED	200

#include "check.h"


/* route_template of path into an n-byte heap buffer; the result, owned by the caller. */
static char *tmpl(const char *path, size_t n)
{
	char *in = strdup(path), *out = malloc(n ? n : 1);

	if (!in || !out)
		abort();
	if (!n)
		out[0] = 'Z';
	route_template(in, out, n);
	free(in);
	return out;
}

static void test_template(void)
{
	static const struct {
		const char *path, *want;
	} cases[] = {
		{ "/users/123", "/users/{id}" },
		{ "/users/123/posts/456", "/users/{id}/posts/{id}" },
		{ "/users/123?sort=desc&x=1", "/users/{id}" },
		{ "/users/123#frag", "/users/{id}" },
		{ "/items/550e8400-e29b-41d4-a716-446655440000", "/items/{id}" },
		{ "/items/550E8400-E29B-41D4-A716-446655440000/x", "/items/{id}/x" },
		{ "/items/550e8400e29b41d4a716446655440000", "/items/{id}" },	/* 32 hex */
		{ "/c/0123456789abcdef", "/c/{id}" },				/* 16 hex, digits */
		{ "/c/0123456789abcde", "/c/0123456789abcde" },		/* 15: too short */
		{ "/c/deadbeefdeadbeef", "/c/deadbeefdeadbeef" },		/* no digit */
		{ "/t/aB3dE5gH7jK9mN1pQ3sT", "/t/{id}" },			/* token 20+ */
		{ "/t/abcdefghijklmnopqrstuvwxyz", "/t/abcdefghijklmnopqrstuvwxyz" },
		{ "/t/a_b-c_d-e_f-g_h-i_j-1", "/t/{id}" },
		{ "/t/aB3dE5gH7jK9mN1pQ3s.", "/t/aB3dE5gH7jK9mN1pQ3s." },
		{ "/v1/api/health", "/v1/api/health" },
		{ "/", "/" },
		{ "", "/" },
		{ "?q=1", "/" },
		{ "#x", "/" },
		{ "//", "//" },
		{ "/a//b/", "/a//b/" },
		{ "/0", "/{id}" },
		{ "/-1", "/-1" },
		{ "*", "*" },
		{ "users/7", "users/{id}" },
		{ "/%31%32", "/%31%32" },
		{ "/caf\xc3\xa9/9", "/caf\xc3\xa9/{id}" },
	};

	begin("template");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = tmpl(cases[i].path, ROUTE_LEN_MAX);

		check(!strcmp(out, cases[i].want), __FILE__, __LINE__, "\"%s\" -> \"%s\", want \"%s\"",
		      cases[i].path, out, cases[i].want);
		free(out);
	}
}

/* Every output size: always terminated inside it, a prefix cut at a segment. */
static void test_template_sizes(void)
{
	static const char *const paths[] = {
		"/users/12345/orders/550e8400-e29b-41d4-a716-446655440000/items/abcdefabcdef0123",
		"/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z",
		"/0/1/2/3/4/5/6/7/8/9",
		"////////////",
		"/averyveryveryverylongsegmentwithoutanydigitsinitatall",
	};

	begin("template_sizes");
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		char *full = tmpl(paths[i], ROUTE_LEN_MAX);

		for (size_t n = 0; n < strlen(full) + 3; n++) {
			char *out = tmpl(paths[i], n);

			if (!n) {
				CHECK(out[0] == 'Z');	/* nothing written */
			} else if (CHECK(memchr(out, 0, n))) {
				check(!strncmp(out, full, strlen(out)), __FILE__, __LINE__,
				      "size %zu: \"%s\" is not a prefix of \"%s\"", n, out, full);
			}
			free(out);
		}
		free(full);
	}
}

/* A path far longer than a route. */
static void test_template_long(void)
{
	size_t n = 100000;
	char *p = malloc(n + 1), *out;

	begin("template_long");
	for (size_t i = 0; i < n; i++)
		p[i] = i % 7 ? 'a' + i % 26 : '/';
	p[n] = 0;
	out = tmpl(p, ROUTE_LEN_MAX);
	CHECK(strlen(out) < ROUTE_LEN_MAX);
	free(out);
	memset(p, '1', n);
	p[0] = '/';
	out = tmpl(p, ROUTE_LEN_MAX);
	CHECK_S(out, "/{id}");
	free(out);
	free(p);
}

static void resolve(struct routes *rt, const char *svc, const char *path, char *out)
{
	char *in = strdup(path);

	if (!in)
		abort();
	routes__resolve(rt, svc, in, out);
	free(in);
}

static void test_patterns(void)
{
	static const struct {
		const char *path, *want;
	} cases[] = {
		{ "/users/42", "/users/{id}" },
		{ "/users/alice", "/users/{id}" },
		{ "/users/42?x=1", "/users/{id}" },
		{ "/users/", "/users/" },			/* a parameter is never empty */
		{ "/users", "/users" },
		{ "/users/42/", "/users/{id}/" },		/* heuristics: one more segment */
		{ "/users/42/orders/7", "/users/{uid}/orders/{oid}" },
		{ "/users/42/orders/", "/users/{id}/orders/" },
		{ "/files/a", "/files/{path...}" },
		{ "/files/a/b/c.txt", "/files/{path...}" },
		{ "/files/", "/files/" },
		{ "/files", "/files" },
		{ "/", "/" },
		{ "/static/app.js", "/static/app.js" },
		{ "/Users/42", "/Users/{id}" },		/* literals are case-sensitive */
		{ "/a/b", "/a/{x}" },
		{ "/a/b/", "/a/b/" },
	};
	struct routes *rt = routes__new(0);
	char out[ROUTE_LEN_MAX], pat[ROUTE_LEN_MAX + 8];

	begin("patterns");
	if (!CHECK(rt))
		return;
	CHECK(!routes__add_pattern(rt, "/users/{id}"));
	CHECK(!routes__add_pattern(rt, "/users/{uid}/orders/{oid}"));
	CHECK(!routes__add_pattern(rt, "/users/{shadowed}"));
	CHECK(!routes__add_pattern(rt, "/files/{path...}"));
	CHECK(!routes__add_pattern(rt, "/a/{x}"));
	CHECK(routes__add_pattern(rt, "users/{id}") == -EINVAL);
	CHECK(routes__add_pattern(rt, "") == -EINVAL);
	CHECK(routes__add_pattern(rt, "/q?x={id}") == -EINVAL);
	CHECK(routes__add_pattern(rt, "/q#{id}") == -EINVAL);
	memset(pat, 'p', sizeof(pat));
	pat[0] = '/';
	pat[ROUTE_LEN_MAX] = 0;
	CHECK(routes__add_pattern(rt, pat) == -EINVAL);	/* does not fit a route */
	pat[ROUTE_LEN_MAX - 1] = 0;
	CHECK(!routes__add_pattern(rt, pat));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		resolve(rt, "svc", cases[i].path, out);
		check(!strcmp(out, cases[i].want), __FILE__, __LINE__, "\"%s\" -> \"%s\", want \"%s\"",
		      cases[i].path, out, cases[i].want);
	}
	resolve(rt, "svc", pat, out);
	CHECK_S(out, pat);
	routes__free(rt);

	/* the pattern table is bounded */
	rt = routes__new(0);
	for (int i = 0; i < ROUTE_MAX_PATTERNS; i++) {
		snprintf(pat, sizeof(pat), "/p%d/{id}", i);
		CHECK(!routes__add_pattern(rt, pat));
	}
	CHECK(routes__add_pattern(rt, "/one/more") == -E2BIG);
	resolve(rt, "svc", "/p255/x", out);
	CHECK_S(out, "/p255/{id}");
	routes__free(rt);
}

struct svc_seen {
	char names[8][64];
	uint64_t collapsed[8];
	unsigned distinct[8];
	int n;
};

static void on_service(void *ctx, const char *service, uint64_t collapsed, unsigned distinct)
{
	struct svc_seen *s = ctx;

	if (s->n < 8) {
		snprintf(s->names[s->n], 64, "%s", service);
		s->collapsed[s->n] = collapsed;
		s->distinct[s->n] = distinct;
		s->n++;
	}
}

static void test_cap(void)
{
	struct routes *rt = routes__with_cap(routes__new(0), 3);
	struct svc_seen seen = { 0 };
	char out[ROUTE_LEN_MAX], path[64], svc[200];

	begin("cap");
	if (!CHECK(rt))
		return;
	for (int i = 0; i < 5; i++) {
		snprintf(path, sizeof(path), "/page%c", 'a' + i);
		resolve(rt, "web", path, out);
		CHECK_S(out, i < 3 ? path : ROUTE_OVERFLOW);
	}
	resolve(rt, "web", "/pagea", out);	/* admitted before: still itself */
	CHECK_S(out, "/pagea");
	resolve(rt, "web", "/pageb/", out);
	CHECK_S(out, ROUTE_OVERFLOW);
	CHECK_U(routes__collapsed(rt, "web"), 3);
	resolve(rt, "api", "/pagee", out);	/* another service has its own cap */
	CHECK_S(out, "/pagee");
	CHECK_U(routes__collapsed(rt, "api"), 0);
	CHECK_U(routes__collapsed(rt, NULL), 3);
	/* ids never use up the cap */
	for (int i = 0; i < 1000; i++) {
		snprintf(path, sizeof(path), "/orders/%d", i);
		resolve(rt, "api", path, out);
		CHECK_S(out, "/orders/{id}");
	}
	/* a service name longer than the set's buffer */
	memset(svc, 's', sizeof(svc) - 1);
	svc[sizeof(svc) - 1] = 0;
	resolve(rt, svc, "/x", out);
	CHECK_S(out, "/x");
	routes__foreach_service(rt, on_service, &seen);
	CHECK_U(seen.n, 3);
	for (int i = 0; i < seen.n; i++) {
		if (!strcmp(seen.names[i], "web")) {
			CHECK_U(seen.collapsed[i], 3);
			CHECK_U(seen.distinct[i], 3);
		} else if (!strcmp(seen.names[i], "api")) {
			CHECK_U(seen.distinct[i], 2);
		}
	}
	routes__free(rt);
	routes__free(NULL);

	/* cap 1, many distinct routes: the open-addressing set never fills up */
	rt = routes__new(1);
	for (int i = 0; i < 5000; i++) {
		snprintf(path, sizeof(path), "/r%d", i);
		resolve(rt, "web", path, out);
		CHECK_S(out, i ? ROUTE_OVERFLOW : "/r0");
	}
	CHECK_U(routes__collapsed(rt, "web"), 4999);
	routes__free(rt);
}

int main(void)
{
	test_template();
	test_template_sizes();
	test_template_long();
	test_patterns();
	test_cap();
	printf("test_route: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
