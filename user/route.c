// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include "route.h"

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

void route_template(const char *path, char *out, size_t n)
{
	size_t o = 0;
	const char *p = path;

	if (!n)
		return;
	while (*p && *p != '?' && *p != '#') {
		const char *seg = p;
		const char *rep;
		size_t len, rlen;

		while (*p && *p != '/' && *p != '?' && *p != '#')
			p++;
		len = p - seg;
		rep = is_id(seg, len) ? "{id}" : seg;
		rlen = rep == seg ? len : 4;
		if (o + rlen >= n)
			break;
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
