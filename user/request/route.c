// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "request/route.h"

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return n > 0;
}

static bool is_uuid(const char *s, size_t n)
{
	if (n != 36)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

static bool is_long_hex(const char *s, size_t n)
{
	bool digit = false;

	if (n < 16)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return false;
		digit |= isdigit((unsigned char)s[i]);
	}
	return digit;
}

static bool is_token(const char *s, size_t n)
{
	bool alpha = false, digit = false;

	if (n < 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];

		if (!isalnum(c) && c != '-' && c != '_')
			return false;
		alpha |= isalpha(c);
		digit |= isdigit(c);
	}
	return alpha && digit;
}

static bool is_id(const char *s, size_t n)
{
	return all_digits(s, n) || is_uuid(s, n) || is_long_hex(s, n) || is_token(s, n);
}

/* Bytes that end a path segment (1), of which those that end the path (2). */
static const uint8_t seg_end[256] = { [0] = 3, ['?'] = 3, ['#'] = 3, ['/'] = 1 };

void route_template(const char *path, char *out, size_t n)
{
	size_t o = 0;
	const char *p = path;

	if (!n)
		return;
	while (!(seg_end[(uint8_t)*p] & 2)) {
		const char *seg = p;
		const char *rep;
		size_t len, rlen;

		while (!seg_end[(uint8_t)*p])
			p++;
		len = p - seg;
		/* only digits make an id shorter than 16 bytes: most segments stop here */
		rep = (len >= 16 || (len && seg[0] >= '0' && seg[0] <= '9')) && is_id(seg, len) ?
			      "{id}" : seg;
		rlen = rep == seg ? len : 4;
		if (o + rlen >= n)
			break;
		if (rlen)
			memcpy(out + o, rep, rlen);
		o += rlen;
		if (*p == '/') {
			if (o + 1 >= n)
				break;
			out[o++] = '/';
			p++;
		}
	}
	out[o] = 0;
	if (!o && n > 1)
		strcpy(out, n > 1 ? "/" : "");
}

/* ---- user patterns and per-service caps ---- */

struct route_set {		/* one service's distinct routes */
	struct route_set *next;
	char service[64];
	char **routes;		/* open addressing, cap * 2 slots */
	unsigned n, slots;
	uint64_t collapsed;
};

struct routes {
	char *patterns[ROUTE_MAX_PATTERNS];
	int n_patterns;
	unsigned cap;
	struct route_set *sets;
};

struct routes *routes__new(unsigned cap)
{
	struct routes *rt = calloc(1, sizeof(*rt));

	if (rt)
		rt->cap = cap ? cap : ROUTE_CAP_DEFAULT;
	return rt;
}

struct routes *routes__with_cap(struct routes *rt, unsigned cap)
{
	rt->cap = cap ? cap : ROUTE_CAP_DEFAULT;
	return rt;
}

int routes__add_pattern(struct routes *rt, const char *pattern)
{
	if (pattern[0] != '/' || strlen(pattern) >= ROUTE_LEN_MAX || strpbrk(pattern, "?#"))
		return -EINVAL;
	if (rt->n_patterns >= ROUTE_MAX_PATTERNS)
		return -E2BIG;
	rt->patterns[rt->n_patterns] = strdup(pattern);
	if (!rt->patterns[rt->n_patterns])
		return -ENOMEM;
	rt->n_patterns++;
	return 0;
}

static size_t seg_len(const char *s)
{
	return strcspn(s, "/");
}

static bool pattern_match(const char *pat, const char *path, size_t path_len)
{
	const char *pe = path + path_len;

	while (*pat && path < pe) {
		size_t pl = seg_len(pat), sl = strcspn(path, "/");
		bool param = pl >= 2 && pat[0] == '{' && pat[pl - 1] == '}';

		if (path + sl > pe)
			sl = pe - path;
		if (param && pl >= 5 && !strncmp(pat + pl - 4, "...}", 4))
			return sl > 0;	/* rest-of-path parameter */
		if (param ? sl == 0 : (pl != sl || strncmp(pat, path, pl)))
			return false;
		pat += pl;
		path += sl;
		if ((*pat == '/') != (path < pe && *path == '/'))
			return false;
		if (*pat == '/') {
			pat++;
			path++;
		}
	}
	return !*pat && path >= pe;
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

static struct route_set *set_of(struct routes *rt, const char *service)
{
	struct route_set *s;

	for (s = rt->sets; s; s = s->next)
		if (!strcmp(s->service, service))
			return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->slots = rt->cap * 2;
	s->routes = calloc(s->slots, sizeof(*s->routes));
	if (!s->routes) {
		free(s);
		return NULL;
	}
	snprintf(s->service, sizeof(s->service), "%s", service);
	s->next = rt->sets;
	rt->sets = s;
	return s;
}

/* Admit route into the service's set, or say it must collapse. */
static bool admit(struct routes *rt, const char *service, const char *route)
{
	struct route_set *s = set_of(rt, service);
	size_t i;

	if (!s)
		return false;
	for (i = hash_str(route) % s->slots; s->routes[i]; i = (i + 1) % s->slots)
		if (!strcmp(s->routes[i], route))
			return true;
	if (s->n >= rt->cap || !(s->routes[i] = strdup(route))) {
		s->collapsed++;
		return false;
	}
	s->n++;
	return true;
}

void routes__resolve(struct routes *rt, const char *service, const char *path, char *out)
{
	size_t plen = rt->n_patterns ? strcspn(path, "?#") : 0;
	int i;

	for (i = 0; i < rt->n_patterns; i++) {
		if (pattern_match(rt->patterns[i], path, plen)) {
			snprintf(out, ROUTE_LEN_MAX, "%s", rt->patterns[i]);
			break;
		}
	}
	if (i == rt->n_patterns)
		route_template(path, out, ROUTE_LEN_MAX);
	if (!admit(rt, service, out))
		strcpy(out, ROUTE_OVERFLOW);
}

uint64_t routes__collapsed(const struct routes *rt, const char *service)
{
	uint64_t n = 0;

	for (const struct route_set *s = rt->sets; s; s = s->next)
		if (!service || !strcmp(s->service, service))
			n += s->collapsed;
	return n;
}

void routes__foreach_service(const struct routes *rt,
			     void (*fn)(void *ctx, const char *service, uint64_t collapsed,
					unsigned distinct),
			     void *ctx)
{
	for (const struct route_set *s = rt->sets; s; s = s->next)
		fn(ctx, s->service, s->collapsed, s->n);
}

void routes__free(struct routes *rt)
{
	struct route_set *s, *next;

	if (!rt)
		return;
	for (int i = 0; i < rt->n_patterns; i++)
		free(rt->patterns[i]);
	for (s = rt->sets; s; s = next) {
		next = s->next;
		for (unsigned i = 0; i < s->slots; i++)
			free(s->routes[i]);
		free(s->routes);
		free(s);
	}
	free(rt);
}
