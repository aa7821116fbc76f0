// SPDX-License-Identifier: MIT
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/json.h"

void jb_init(struct jbuf *jb)
{
	memset(jb, 0, sizeof(*jb));
}

void jb_free(struct jbuf *jb)
{
	free(jb->buf);
	jb_init(jb);
}

void jb_reset(struct jbuf *jb)
{
	jb->len = 0;
	jb->need_comma = false;
	jb->oom = false;
	if (jb->buf)
		jb->buf[0] = 0;
}

static bool reserve(struct jbuf *jb, size_t n)
{
	size_t cap;
	char *p;

	if (jb->oom)
		return false;
	if (jb->len + n + 1 <= jb->cap)
		return true;
	cap = jb->cap ? jb->cap : 256;
	while (cap < jb->len + n + 1)
		cap *= 2;
	p = realloc(jb->buf, cap);
	if (!p) {
		jb->oom = true;
		return false;
	}
	jb->buf = p;
	jb->cap = cap;
	return true;
}

void jb_raw(struct jbuf *jb, const char *s, size_t n)
{
	if (!reserve(jb, n))
		return;
	memcpy(jb->buf + jb->len, s, n);
	jb->len += n;
	jb->buf[jb->len] = 0;
}

void jb_printf(struct jbuf *jb, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !reserve(jb, n))
		return;
	va_start(ap, fmt);
	vsnprintf(jb->buf + jb->len, n + 1, fmt, ap);
	va_end(ap);
	jb->len += n;
}

static void sep(struct jbuf *jb)
{
	if (jb->need_comma)
		jb_raw(jb, ",", 1);
	jb->need_comma = true;
}

/* Length of a valid UTF-8 sequence at s (max n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned cp;

	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
	if (len > n)
		return 0;
	cp = s[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

static void quote(struct jbuf *jb, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	jb_raw(jb, "\"", 1);
	while (i < n) {
		size_t run = i;
		char esc[8];

		while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' &&
		       p[run] != '\\')
			run++;
		jb_raw(jb, s + i, run - i);
		i = run;
		if (i >= n)
			break;
		if (p[i] == '"' || p[i] == '\\') {
			esc[0] = '\\';
			esc[1] = p[i];
			jb_raw(jb, esc, 2);
			i++;
		} else if (p[i] < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
			jb_raw(jb, esc, 6);
			i++;
		} else {
			size_t l = utf8_len(p + i, n - i);

			if (l) {
				jb_raw(jb, s + i, l);
				i += l;
			} else {
				jb_raw(jb, "\xef\xbf\xbd", 3);
				i++;
			}
		}
	}
	jb_raw(jb, "\"", 1);
}

void jb_key(struct jbuf *jb, const char *key)
{
	sep(jb);
	if (key) {
		quote(jb, key, strlen(key));
		jb_raw(jb, ":", 1);
	}
}

void jb_obj_open(struct jbuf *jb)
{
	if (jb->len && jb->buf[jb->len - 1] != ':')
		sep(jb);
	jb_raw(jb, "{", 1);
	jb->need_comma = false;
}

void jb_obj_close(struct jbuf *jb)
{
	jb_raw(jb, "}", 1);
	jb->need_comma = true;
}

void jb_arr_open(struct jbuf *jb, const char *key)
{
	jb_key(jb, key);
	jb_raw(jb, "[", 1);
	jb->need_comma = false;
}

void jb_arr_close(struct jbuf *jb)
{
	jb_raw(jb, "]", 1);
	jb->need_comma = true;
}

void jb_strn(struct jbuf *jb, const char *key, const char *val, size_t n)
{
	jb_key(jb, key);
	quote(jb, val, n);
}

void jb_str(struct jbuf *jb, const char *key, const char *val)
{
	jb_strn(jb, key, val ? val : "", val ? strlen(val) : 0);
}

void jb_u64(struct jbuf *jb, const char *key, uint64_t v)
{
	char b[24];

	jb_key(jb, key);
	jb_raw(jb, b, snprintf(b, sizeof(b), "%llu", (unsigned long long)v));
}

void jb_i64(struct jbuf *jb, const char *key, int64_t v)
{
	char b[24];

	jb_key(jb, key);
	jb_raw(jb, b, snprintf(b, sizeof(b), "%lld", (long long)v));
}

void jb_dbl(struct jbuf *jb, const char *key, double v)
{
	char b[32];

	jb_key(jb, key);
	if (!isfinite(v)) {	/* JSON has no NaN or infinity */
		jb_raw(jb, "null", 4);
		return;
	}
	jb_raw(jb, b, snprintf(b, sizeof(b), "%.6f", v));
}

void jb_bool(struct jbuf *jb, const char *key, bool v)
{
	jb_key(jb, key);
	jb_raw(jb, v ? "true" : "false", v ? 4 : 5);
}
