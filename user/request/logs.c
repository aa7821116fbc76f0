// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "request/logs.h"

#define CLEAN_MAX	(LOG_LINE_MAX + 512)	/* a redacted line may grow a little */
#define UTF8_MAX	(3 * CLEAN_MAX)		/* every byte may become U+FFFD */
#define THREAD_PROBE	8

/* A (pid, fd) whose last write ended mid-line, or inside an uncaptured gap. */
struct stream {
	uint32_t pid;		/* 0: free slot */
	int fd;
	uint32_t tid;
	uint64_t ts_ns, wall_ns;	/* of the write that began the line */
	uint64_t last_ns;		/* last write seen */
	struct log_link link;	/* merged over the line's writes */
	bool skip;		/* drop bytes up to the next '\n' (rest of a cut line) */
	bool truncated;		/* longer than LOG_LINE_MAX: the rest is dropped */
	char service[64];
	char comm[16];
	struct cgroup_ident container;
	size_t len;
	char line[LOG_LINE_MAX];
};

/*
 * A thread on which a request finished. Until the thread is seen doing socket
 * I/O again (moved_on), what it writes may be that request's post-response
 * code. A moved-on thread is like one never seen, so its slot may be reused.
 */
struct thread_slot {
	uint32_t pid, tid;	/* tid 0: free */
	bool moved_on;
};

struct logs {
	struct {
		log_sink_fn fn;
		void *ctx;
	} sinks[LOG_SINKS_MAX];
	int n_sinks;
	struct stream streams[LOG_STREAMS_MAX];
	struct thread_slot threads[LOG_THREADS_MAX];
	bool risky_evicted;		/* a not-moved-on thread was forgotten: unknown
					   threads are not trusted from then on */
	struct log_stats st;
	char ansi[LOG_LINE_MAX];
	char clean[CLEAN_MAX];
	char utf8[UTF8_MAX];
};

static const char *const link_names[LOG_LINK_KINDS] = {
	[LOG_LINKED] = "linked", [LOG_NO_REQUEST] = "no_request",
	[LOG_AMBIGUOUS] = "ambiguous", [LOG_BUFFERED] = "buffered",
};

const char *log_link_name(enum log_link_kind k)
{
	return k < LOG_LINK_KINDS ? link_names[k] : "unknown";
}

struct logs *logs__new(void)
{
	return calloc(1, sizeof(struct logs));
}

int logs__add_sink(struct logs *l, log_sink_fn fn, void *ctx)
{
	if (l->n_sinks >= LOG_SINKS_MAX)
		return -E2BIG;
	l->sinks[l->n_sinks].fn = fn;
	l->sinks[l->n_sinks++].ctx = ctx;
	return 0;
}

/* ---- linking ---- */

void log_inflight_visit(void *ctx, const struct record *r)
{
	struct log_inflight *f = ctx;

	if (r->tid != f->tid)
		return;
	if (!f->n++) {
		memcpy(f->first.trace_id, r->trace_id, sizeof(r->trace_id));
		memcpy(f->first.span_id, r->span_id, sizeof(r->span_id));
		f->first.sampled = r->sampled;
	}
}

static size_t thread_hash(uint32_t pid, uint32_t tid)
{
	return ((uint64_t)tid * 2654435761u ^ pid) % LOG_THREADS_MAX;
}

static struct thread_slot *thread_find(const struct logs *l, uint32_t pid, uint32_t tid)
{
	size_t h = thread_hash(pid, tid);

	for (int i = 0; i < THREAD_PROBE; i++) {
		const struct thread_slot *s = &l->threads[(h + i) % LOG_THREADS_MAX];

		if (s->tid == tid && s->pid == pid)
			return (struct thread_slot *)s;
	}
	return NULL;
}

/* Has the thread moved on since its last finished request? */
static bool thread_moved_on(const struct logs *l, uint32_t pid, uint32_t tid)
{
	const struct thread_slot *s = thread_find(l, pid, tid);

	return s ? s->moved_on : !l->risky_evicted;
}

void logs__request_done(struct logs *l, const struct record *r)
{
	size_t h = thread_hash(r->pid, r->tid);
	struct thread_slot *s = thread_find(l, r->pid, r->tid), *victim = NULL;

	for (int i = 0; i < THREAD_PROBE && !s; i++) {
		struct thread_slot *c = &l->threads[(h + i) % LOG_THREADS_MAX];

		if (!c->tid || c->moved_on)	/* free, or as good as free */
			s = c;
		else if (!victim)
			victim = c;
	}
	if (!s) {	/* forgetting a thread that has not moved on: trust no unknown one */
		l->risky_evicted = true;
		s = victim;
	}
	s->pid = r->pid;
	s->tid = r->tid;
	s->moved_on = false;
}

void logs__io(struct logs *l, uint32_t pid, uint32_t tid)
{
	struct thread_slot *s = thread_find(l, pid, tid);

	if (s)
		s->moved_on = true;
}

void logs__link(const struct logs *l, uint32_t pid, const struct log_inflight *f,
		struct log_link *out)
{
	memset(out, 0, sizeof(*out));
	if (!f->n)
		out->kind = LOG_NO_REQUEST;
	else if (f->n > 1 || !thread_moved_on(l, pid, f->tid))
		out->kind = LOG_AMBIGUOUS;
	else
		*out = f->first, out->kind = LOG_LINKED;
}

/* The link of a line written over several writes. */
static void link_merge(struct log_link *a, const struct log_link *b)
{
	enum log_link_kind k;

	if (a->kind == b->kind &&
	    (a->kind != LOG_LINKED || !memcmp(a->span_id, b->span_id, sizeof(a->span_id))))
		return;
	k = a->kind == LOG_BUFFERED || b->kind == LOG_BUFFERED ? LOG_BUFFERED : LOG_AMBIGUOUS;
	memset(a, 0, sizeof(*a));
	a->kind = k;
}

/* ---- cleaning ---- */

/* Drop ANSI CSI sequences ("\x1b[32m"): colour codes are not content. */
static size_t strip_ansi(const char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i] == 0x1b && i + 1 < n && in[i + 1] == '[') {
			size_t j = i + 2;

			while (j < n && (unsigned char)in[j] >= 0x20 && (unsigned char)in[j] <= 0x3f)
				j++;
			if (j < n && (unsigned char)in[j] >= 0x40 && (unsigned char)in[j] <= 0x7e) {
				i = j;
				continue;
			}
		}
		out[o++] = in[i];
	}
	return o;
}

static size_t utf8_seq(const unsigned char *p, size_t n)
{
	size_t len;
	uint32_t cp;

	if (p[0] < 0x80)
		return p[0] ? 1 : 0;
	if ((p[0] & 0xe0) == 0xc0)
		len = 2, cp = p[0] & 0x1f;
	else if ((p[0] & 0xf0) == 0xe0)
		len = 3, cp = p[0] & 0x0f;
	else if ((p[0] & 0xf8) == 0xf0)
		len = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/* Valid UTF-8 only (OTLP strings must be): bad bytes and NULs become U+FFFD. */
static size_t utf8_clean(const char *in, size_t n, char *out)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq(p + i, n - i);

		if (l) {
			memcpy(out + o, in + i, l);
			o += l;
			i += l;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	out[o] = 0;
	return o;
}

/* ---- redaction ---- */

#define REDACTED	"[redacted]"

struct rbuf {
	char *out;
	size_t cap, len;
	bool cut;
};

static void rput(struct rbuf *b, const char *s, size_t n)
{
	if (b->len + n >= b->cap) {
		n = b->cap - 1 - b->len;
		b->cut = true;
	}
	memcpy(b->out + b->len, s, n);
	b->len += n;
}

static bool is_quote(char c)
{
	return c == '"' || c == '\'';
}

/* Characters that end a URL or path token. */
static bool is_delim(char c)
{
	return isspace((unsigned char)c) || strchr("\"'<>()[]{},=", c) || !c;
}

/*
 * At in[i], a header name whose value is secret ("authorization", "cookie",
 * also inside "proxy-authorization", "set-cookie")? Then the name and its
 * separator are copied, the value replaced, and the index after it returned;
 * 0 otherwise. Shapes: "Name: v", "name=v", "'name': 'v'", "(b'name', b'v')".
 */
static size_t redact_header(const char *in, size_t n, size_t i, struct rbuf *b)
{
	static const char *const keys[] = { "authorization", "cookie" };
	size_t j = 0, kl = 0, k;

	for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		kl = strlen(keys[k]);
		if (n - i >= kl && !strncasecmp(in + i, keys[k], kl))
			break;
	}
	if (k == sizeof(keys) / sizeof(keys[0]))
		return 0;
	j = i + kl;
	while (j < n && (is_quote(in[j]) || in[j] == ' '))
		j++;
	if (j >= n || !strchr(":=,", in[j]))
		return 0;
	j++;
	while (j < n && in[j] == ' ')
		j++;
	if (j + 1 < n && in[j] == 'b' && is_quote(in[j + 1]))
		j++;
	rput(b, in + i, j - i);
	if (j < n && is_quote(in[j])) {	/* quoted: up to the closing quote */
		char q = in[j];

		rput(b, in + j, 1);
		for (j++; j < n && !(in[j] == q && in[j - 1] != '\\'); j++)
			;
	} else {			/* bare: the rest of the line */
		j = n;
	}
	rput(b, REDACTED, strlen(REDACTED));
	return j;
}

/* "Bearer TOKEN" anywhere: the token goes. */
static size_t redact_bearer(const char *in, size_t n, size_t i, struct rbuf *b)
{
	size_t j = i + 7;

	if (n - i < 8 || strncasecmp(in + i, "bearer ", 7) || is_delim(in[j]))
		return 0;
	rput(b, in + i, 7);
	while (j < n && !is_delim(in[j]))
		j++;
	rput(b, REDACTED, strlen(REDACTED));
	return j;
}

size_t log_redact(const char *in, size_t n, char *out, size_t cap, bool *cut)
{
	struct rbuf b = { .out = out, .cap = cap };
	bool slash = false;	/* the current token holds a '/': a path or URL */

	for (size_t i = 0; i < n && !b.cut;) {
		size_t j = 0;

		if (i == 0 || !isalnum((unsigned char)in[i - 1]))
			j = redact_header(in, n, i, &b) ?: redact_bearer(in, n, i, &b);
		if (j) {
			i = j;
			slash = false;
			continue;
		}
		if (in[i] == '?' && slash && i + 1 < n && !is_delim(in[i + 1])) {
			rput(&b, "?" REDACTED, strlen(REDACTED) + 1);
			for (i++; i < n && !isspace((unsigned char)in[i]) && !strchr("\"'<>", in[i]);
			     i++)
				;
			slash = false;
			continue;
		}
		if (in[i] == '/')
			slash = true;
		else if (is_delim(in[i]))
			slash = false;
		rput(&b, in + i, 1);
		i++;
	}
	out[b.len] = 0;
	if (cut)
		*cut = b.cut;
	return b.len;
}

/* ---- parsing ---- */

int log_severity_of(const char *name, size_t n)
{
	static const struct {
		const char *name;
		int sev;
	} levels[] = {
		{ "trace", 1 }, { "debug", 5 }, { "info", 9 }, { "notice", 10 },
		{ "warn", 13 }, { "warning", 13 }, { "error", 17 }, { "err", 17 },
		{ "exception", 17 }, { "critical", 21 }, { "fatal", 21 }, { "crit", 21 },
		{ "panic", 21 },
	};

	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (strlen(levels[i].name) == n && !strncasecmp(name, levels[i].name, n))
			return levels[i].sev;
	return 0;
}

static bool all_upper(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isupper((unsigned char)s[i]))
			return false;
	return n > 0;
}

static void set_level(struct log_parsed *p, const char *s, size_t n, int sev)
{
	p->severity = sev;
	if (n >= sizeof(p->severity_text))
		n = sizeof(p->severity_text) - 1;
	memcpy(p->severity_text, s, n);
	p->severity_text[n] = 0;
}

/* An upper-case level word s[0..n): sets the severity; false if it is none. */
static bool text_level(struct log_parsed *p, const char *s, size_t n)
{
	int sev = all_upper(s, n) ? log_severity_of(s, n) : 0;

	if (sev)
		set_level(p, s, n, sev);
	return sev;
}

/* "[2024-01-01 12:00:00 +0000] [123] [INFO] msg" (gunicorn). */
static bool parse_gunicorn(const char *s, size_t n, struct log_parsed *p)
{
	const char *a, *b, *end = s + n;

	if (s[0] != '[' || !(a = memmem(s, n, "] [", 3)) ||
	    !(a = memmem(a + 3, end - a - 3, "] [", 3)))
		return false;
	a += 3;
	b = memchr(a, ']', end - a);
	return b && text_level(p, a, b - a);
}

/* A level word among the first few tokens ("2024-… 12:00:00,123 INFO app: x",
 * "- WARNING -", "[ERROR]", "INFO:"). Upper case only: "info" in prose is not. */
static bool parse_level_token(const char *s, size_t n, struct log_parsed *p)
{
	size_t i = 0;

	if (n > 96)
		n = 96;
	for (int tok = 0; tok < 6 && i < n; tok++) {
		size_t j;

		while (i < n && (isspace((unsigned char)s[i]) || strchr("[]-|:", s[i])))
			i++;
		for (j = i; j < n && isalpha((unsigned char)s[j]); j++)
			;
		if (j > i && (j == n || strchr(" []:|", s[j])) && text_level(p, s + i, j - i))
			return true;
		while (j < n && !isspace((unsigned char)s[j]))
			j++;
		i = j;
	}
	return false;
}

/* ---- JSON objects ---- */

struct jcur {
	const char *s;
	size_t n, i;
};

static void jws(struct jcur *c)
{
	while (c->i < c->n && strchr(" \t\r\n", c->s[c->i]))
		c->i++;
}

/* At '"': the string's body span (escapes validated loosely). */
static bool jstring(struct jcur *c, size_t *off, size_t *len)
{
	size_t i = c->i + 1;

	if (c->i >= c->n || c->s[c->i] != '"')
		return false;
	for (; i < c->n && c->s[i] != '"'; i++) {
		if ((unsigned char)c->s[i] < 0x20)
			return false;
		if (c->s[i] == '\\' && ++i >= c->n)
			return false;
	}
	if (i >= c->n)
		return false;
	*off = c->i + 1;
	*len = i - c->i - 1;
	c->i = i + 1;
	return true;
}

/* A JSON number (RFC 8259 grammar); *is_int when it has no fraction or exponent. */
static bool jnumber(struct jcur *c, bool *is_int)
{
	const char *s = c->s;
	size_t i = c->i, d;

	*is_int = true;
	if (i < c->n && s[i] == '-')
		i++;
	for (d = i; i < c->n && isdigit((unsigned char)s[i]); i++)
		;
	if (i == d || (s[d] == '0' && i - d > 1))
		return false;
	if (i < c->n && s[i] == '.') {
		*is_int = false;
		for (d = ++i; i < c->n && isdigit((unsigned char)s[i]); i++)
			;
		if (i == d)
			return false;
	}
	if (i < c->n && (s[i] == 'e' || s[i] == 'E')) {
		*is_int = false;
		if (++i < c->n && (s[i] == '+' || s[i] == '-'))
			i++;
		for (d = i; i < c->n && isdigit((unsigned char)s[i]); i++)
			;
		if (i == d)
			return false;
	}
	if (*is_int && i - c->i > 18)	/* may not fit int64: keep it as a double */
		*is_int = false;
	c->i = i;
	return true;
}

static bool jvalue(struct jcur *c, int depth, struct log_attr *a);

/* An object or array, skipped (depth-limited). */
static bool jcontainer(struct jcur *c, int depth)
{
	char close = c->s[c->i] == '{' ? '}' : ']';
	bool first = true;

	if (depth > 32)
		return false;
	c->i++;
	for (;;) {
		size_t off, len;

		jws(c);
		if (c->i < c->n && c->s[c->i] == close && first) {
			c->i++;
			return true;
		}
		if (close == '}') {
			if (!jstring(c, &off, &len))
				return false;
			jws(c);
			if (c->i >= c->n || c->s[c->i++] != ':')
				return false;
			jws(c);
		}
		if (!jvalue(c, depth + 1, NULL))
			return false;
		jws(c);
		if (c->i >= c->n)
			return false;
		if (c->s[c->i] == close) {
			c->i++;
			return true;
		}
		if (c->s[c->i++] != ',')
			return false;
		first = false;
	}
}

/* One value; a (when not NULL) gets its type and span. Nulls: type 0xff. */
static bool jvalue(struct jcur *c, int depth, struct log_attr *a)
{
	size_t start = c->i, off = 0, len = 0;
	uint8_t type;
	bool is_int;

	if (c->i >= c->n)
		return false;
	switch (c->s[c->i]) {
	case '"':
		if (!jstring(c, &off, &len))
			return false;
		type = LOGV_STR;
		break;
	case '{':
	case '[':
		if (!jcontainer(c, depth))
			return false;
		type = LOGV_JSON;
		break;
	case 't':
	case 'f':
	case 'n': {
		const char *w = c->s[c->i] == 't' ? "true" : c->s[c->i] == 'f' ? "false" : "null";
		size_t wl = strlen(w);

		if (c->n - c->i < wl || memcmp(c->s + c->i, w, wl))
			return false;
		c->i += wl;
		type = w[0] == 'n' ? 0xff : LOGV_BOOL;
		break;
	}
	default:
		if (!jnumber(c, &is_int))
			return false;
		type = is_int ? LOGV_INT : LOGV_DBL;
	}
	if (a) {
		a->type = type;
		a->val_off = type == LOGV_STR ? off : start;
		a->val_len = type == LOGV_STR ? len : c->i - start;
	}
	return true;
}

static bool key_is(const char *s, const struct log_attr *a, const char *k)
{
	return a->key_len == strlen(k) && !memcmp(s + a->key_off, k, a->key_len);
}

/* Which field is the body and which the level: index into fields, or -1. */
static int pick(const char *s, const struct log_attr *f, int n, const char *const *names)
{
	for (int k = 0; names[k]; k++)
		for (int i = 0; i < n; i++)
			if (f[i].type == LOGV_STR && key_is(s, &f[i], names[k]))
				return i;
	return -1;
}

/* A whole line that is one JSON object: fields, body, level. */
static bool parse_json(const char *s, size_t n, struct log_parsed *p)
{
	static const char *const body_keys[] = { "event", "message", "msg", NULL };
	static const char *const level_keys[] = { "level", "levelname", NULL };
	struct log_attr f[LOG_ATTRS_MAX + 2];
	struct jcur c = { .s = s, .n = n };
	int nf = 0, body, level;
	uint32_t extra = 0;

	jws(&c);
	if (c.i >= n || s[c.i] != '{')
		return false;
	c.i++;
	jws(&c);
	if (c.i < n && s[c.i] == '}')
		c.i++;
	else for (;;) {
		struct log_attr a = { 0 }, *slot = nf < (int)(sizeof(f) / sizeof(f[0])) ? &f[nf] : &a;
		size_t off, len;

		jws(&c);
		if (!jstring(&c, &off, &len))
			return false;
		slot->key_off = off;
		slot->key_len = len;
		jws(&c);
		if (c.i >= n || s[c.i++] != ':')
			return false;
		jws(&c);
		if (!jvalue(&c, 1, slot))
			return false;
		if (slot->type != 0xff) {
			if (slot == &a)
				extra++;
			else
				nf++;
		}
		jws(&c);
		if (c.i < n && s[c.i] == ',') {
			c.i++;
			continue;
		}
		if (c.i < n && s[c.i] == '}') {
			c.i++;
			break;
		}
		return false;
	}
	jws(&c);
	if (c.i != n)
		return false;
	p->flags |= LOGF_JSON;
	body = pick(s, f, nf, body_keys);
	level = pick(s, f, nf, level_keys);
	if (body >= 0) {
		p->flags |= LOGF_BODY_JSON;
		p->body_off = f[body].val_off;
		p->body_len = f[body].val_len;
	}
	if (level >= 0)
		set_level(p, s + f[level].val_off, f[level].val_len,
			  log_severity_of(s + f[level].val_off, f[level].val_len));
	for (int i = 0; i < nf; i++) {
		if (i == body || i == level)
			continue;
		if (p->n_attrs < LOG_ATTRS_MAX)
			p->attrs[p->n_attrs++] = f[i];
		else
			extra++;
	}
	p->attrs_dropped = extra;
	return true;
}

void log_parse(const char *s, size_t n, struct log_parsed *p)
{
	size_t lv;

	memset(p, 0, sizeof(*p));
	p->body_off = 0;
	p->body_len = n;
	if (!n || parse_json(s, n, p))
		return;
	/* "INFO:     msg" (uvicorn) and "INFO:name:msg" (logging's default) */
	for (lv = 0; lv < n && isupper((unsigned char)s[lv]); lv++)
		;
	if (lv < n && s[lv] == ':' && text_level(p, s, lv))
		return;
	if (parse_gunicorn(s, n, p))
		return;
	parse_level_token(s, n, p);
}

static void put_utf8(char *out, size_t *o, uint32_t cp)
{
	if (cp < 0x80) {
		out[(*o)++] = cp;
	} else if (cp < 0x800) {
		out[(*o)++] = 0xc0 | cp >> 6;
		out[(*o)++] = 0x80 | (cp & 0x3f);
	} else if (cp < 0x10000) {
		out[(*o)++] = 0xe0 | cp >> 12;
		out[(*o)++] = 0x80 | (cp >> 6 & 0x3f);
		out[(*o)++] = 0x80 | (cp & 0x3f);
	} else {
		out[(*o)++] = 0xf0 | cp >> 18;
		out[(*o)++] = 0x80 | (cp >> 12 & 0x3f);
		out[(*o)++] = 0x80 | (cp >> 6 & 0x3f);
		out[(*o)++] = 0x80 | (cp & 0x3f);
	}
}

static int hex4(const char *s, size_t n, uint32_t *v)
{
	*v = 0;
	if (n < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return -1;
		*v = *v << 4 | (isdigit((unsigned char)s[i]) ? s[i] - '0'
							    : (tolower((unsigned char)s[i]) - 'a' + 10));
	}
	return 0;
}

size_t log_json_unescape(const char *s, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t cp, lo;

		if (s[i] != '\\' || i + 1 >= n) {
			out[o++] = s[i];
			continue;
		}
		switch (s[++i]) {
		case 'n': out[o++] = '\n'; continue;
		case 't': out[o++] = '\t'; continue;
		case 'r': out[o++] = '\r'; continue;
		case 'b': out[o++] = '\b'; continue;
		case 'f': out[o++] = '\f'; continue;
		case 'u':
			if (hex4(s + i + 1, n - i - 1, &cp))
				break;
			i += 4;
			if (cp >= 0xd800 && cp < 0xdc00 && i + 6 < n && s[i + 1] == '\\' &&
			    s[i + 2] == 'u' && !hex4(s + i + 3, n - i - 3, &lo) && lo >= 0xdc00 &&
			    lo < 0xe000) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				i += 6;
			} else if (cp >= 0xd800 && cp < 0xe000) {
				cp = 0xfffd;	/* a lone surrogate */
			}
			if (!cp)
				cp = 0xfffd;
			put_utf8(out, &o, cp);
			continue;
		default:	/* \" \\ \/ */
			out[o++] = s[i];
			continue;
		}
		out[o++] = '\\';	/* invalid \u: verbatim */
		out[o++] = 'u';
	}
	out[o] = 0;
	return o;
}

/* ---- records ---- */

struct log_rec *log_rec_dup(const struct log_rec *r)
{
	size_t sz = sizeof(*r) + r->len + 1;
	struct log_rec *c = malloc(sz);

	if (c)
		memcpy(c, r, sz);
	return c;
}

static uint64_t wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Clean, redact, parse and hand one line to the sinks. */
static void emit(struct logs *l, const struct log_src *src, const struct log_link *link,
		 const char *raw, size_t n, bool truncated)
{
	struct log_rec *r;
	size_t len;
	bool cut = false;

	while (n && raw[n - 1] == '\r')
		n--;
	if (n > LOG_LINE_MAX) {
		n = LOG_LINE_MAX;
		truncated = true;
	}
	len = strip_ansi(raw, n, l->ansi);
	if (!len)
		return;	/* blank lines are not records */
	len = log_redact(l->ansi, len, l->clean, sizeof(l->clean), &cut);
	len = utf8_clean(l->clean, len, l->utf8);
	r = malloc(sizeof(*r) + len + 1);
	if (!r) {
		l->st.dropped_nomem++;
		return;
	}
	memset(r, 0, sizeof(*r));
	r->ts_ns = src->ts_ns;
	r->wall_ns = src->wall_ns;
	r->observed_wall_ns = wall_now();
	r->pid = src->pid;
	r->tid = src->tid;
	r->fd = src->fd;
	r->flags = truncated || cut ? LOGF_TRUNCATED : 0;
	r->link = *link;
	snprintf(r->service, sizeof(r->service), "%s", src->service ? src->service : "");
	snprintf(r->comm, sizeof(r->comm), "%s", src->comm ? src->comm : "");
	if (src->container)
		r->container = *src->container;
	r->len = len;
	memcpy(r->line, l->utf8, len + 1);
	log_parse(r->line, len, &r->p);
	r->flags |= r->p.flags;
	l->st.records++;
	l->st.unlinked[link->kind < LOG_LINK_KINDS ? link->kind : LOG_AMBIGUOUS]++;
	if (r->flags & LOGF_TRUNCATED)
		l->st.truncated++;
	for (int i = 0; i < l->n_sinks; i++)
		l->sinks[i].fn(l->sinks[i].ctx, r);
	free(r);
}

/* ---- streams ---- */

static struct stream *stream_find(struct logs *l, uint32_t pid, int fd)
{
	for (int i = 0; i < LOG_STREAMS_MAX; i++)
		if (l->streams[i].pid == pid && l->streams[i].fd == fd)
			return &l->streams[i];
	return NULL;
}

static void stream_src(const struct stream *s, struct log_src *src)
{
	*src = (struct log_src){
		.pid = s->pid, .tid = s->tid, .fd = s->fd, .ts_ns = s->ts_ns,
		.wall_ns = s->wall_ns, .service = s->service, .comm = s->comm,
		.container = &s->container,
	};
}

/* Emit s's partial line (if any) and free the slot. */
static void stream_flush(struct logs *l, struct stream *s)
{
	struct log_src src;

	if (s->len) {
		stream_src(s, &src);
		emit(l, &src, &s->link, s->line, s->len, s->truncated);
	}
	s->pid = 0;
}

/* A slot for (src->pid, src->fd), starting a line at this write. */
static struct stream *stream_new(struct logs *l, const struct log_src *src,
				 const struct log_link *link)
{
	struct stream *s = NULL, *oldest = NULL;

	for (int i = 0; i < LOG_STREAMS_MAX && !s; i++) {
		if (!l->streams[i].pid)
			s = &l->streams[i];
		else if (!oldest || l->streams[i].last_ns < oldest->last_ns)
			oldest = &l->streams[i];
	}
	if (!s) {
		l->st.streams_evicted++;
		stream_flush(l, oldest);
		s = oldest;
	}
	s->pid = src->pid;
	s->fd = src->fd;
	s->tid = src->tid;
	s->ts_ns = s->last_ns = src->ts_ns;
	s->wall_ns = src->wall_ns;
	s->link = *link;
	s->skip = s->truncated = false;
	s->len = 0;
	snprintf(s->service, sizeof(s->service), "%s", src->service ? src->service : "");
	snprintf(s->comm, sizeof(s->comm), "%s", src->comm ? src->comm : "");
	memset(&s->container, 0, sizeof(s->container));
	if (src->container)
		s->container = *src->container;
	return s;
}

static void stream_append(struct stream *s, const uint8_t *p, size_t n)
{
	size_t room = LOG_LINE_MAX - s->len;

	if (n > room) {
		n = room;
		s->truncated = true;
	}
	memcpy(s->line + s->len, p, n);
	s->len += n;
}

/*
 * Cut data[0..n) into lines. The first piece continues the stream's partial
 * line (or is the rest of a cut one); a last piece without '\n' is kept as
 * the stream's partial line, or, when ends_cut (an uncaptured gap follows),
 * emitted as truncated.
 */
static void feed(struct logs *l, const struct log_src *src, const struct log_link *link,
		 const uint8_t *data, size_t n, bool ends_cut)
{
	struct stream *s = stream_find(l, src->pid, src->fd);
	const uint8_t *p = data, *end = data + n;

	while (p < end) {
		const uint8_t *nl = memchr(p, '\n', end - p);
		size_t len = (nl ? nl : end) - p;

		if (s && s->skip) {
			if (nl)
				s->pid = 0, s = NULL;
		} else if (s) {		/* continues a partial line */
			stream_append(s, p, len);
			link_merge(&s->link, link);
			if (nl || ends_cut) {
				s->truncated |= !nl;
				stream_flush(l, s);
				s = NULL;
			}
		} else if (nl || ends_cut) {
			emit(l, src, link, (const char *)p, len, !nl);
		} else {
			s = stream_new(l, src, link);
			stream_append(s, p, len);
		}
		if (s)
			s->last_ns = src->ts_ns;
		p += len + (nl ? 1 : 0);
	}
}

/* Does the write end with '\n'? Unknown (gap, no tail) counts as no. */
static bool ends_with_newline(const uint8_t *data, size_t cap, uint64_t gap,
			      const uint8_t *tail, size_t tail_len)
{
	if (tail_len)
		return tail[tail_len - 1] == '\n';
	return !gap && cap && data[cap - 1] == '\n';
}

void logs__write(struct logs *l, const struct log_src *src, const struct log_link *link,
		 const uint8_t *data, size_t cap, uint64_t gap, const uint8_t *tail,
		 size_t tail_len)
{
	struct log_link lk = *link;
	const uint8_t *nl;
	struct stream *s;

	l->st.writes++;
	l->st.bytes += cap + gap + tail_len;
	if (cap + gap + tail_len >= LOG_FLUSH_MIN &&
	    !ends_with_newline(data, cap, gap, tail, tail_len)) {
		memset(&lk, 0, sizeof(lk));
		lk.kind = LOG_BUFFERED;
	}
	feed(l, src, &lk, data, cap, gap || tail_len);
	if (!gap && !tail_len)
		return;
	/* The gap's lines are unknown: resume after the tail's first '\n'; with
	 * none, the rest of this line (up to a later '\n') is dropped too. */
	l->st.bytes_uncaptured += gap;
	nl = memchr(tail, '\n', tail_len);
	if (nl) {
		feed(l, src, &lk, nl + 1, tail + tail_len - nl - 1, false);
		return;
	}
	s = stream_find(l, src->pid, src->fd) ?: stream_new(l, src, &lk);
	s->skip = true;
	s->len = 0;
}

void logs__tick(struct logs *l, uint64_t now_ns)
{
	for (int i = 0; i < LOG_STREAMS_MAX; i++) {
		struct stream *s = &l->streams[i];

		if (s->pid && now_ns > s->last_ns + LOG_PARTIAL_IDLE_NS) {
			if (s->len)
				l->st.partial_timeouts++;
			stream_flush(l, s);
		}
	}
}

void logs__forget(struct logs *l, uint32_t pid)
{
	for (int i = 0; i < LOG_STREAMS_MAX; i++)
		if (l->streams[i].pid == pid)
			stream_flush(l, &l->streams[i]);
	for (int i = 0; i < LOG_THREADS_MAX; i++)	/* no code of it runs any more */
		if (l->threads[i].tid && l->threads[i].pid == pid)
			l->threads[i].moved_on = true;
}

const struct log_stats *logs__stats(const struct logs *l)
{
	return &l->st;
}

void logs__free(struct logs *l)
{
	if (!l)
		return;
	for (int i = 0; i < LOG_STREAMS_MAX; i++)
		if (l->streams[i].pid)
			stream_flush(l, &l->streams[i]);
	free(l);
}
