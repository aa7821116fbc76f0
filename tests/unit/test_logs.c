// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/request/logs.c: redaction, severity and JSON parsing, line
 * assembly over writes (partial lines, gaps, truncation, buffered flushes;
 * byte-at-a-time feeding must equal one-shot feeding) and the linking rule.
 * main() returns 1 if any check failed.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request/logs.h"

#define MAX_PRINTED	200
#define MAX_GOT		128

#include "check.h"

/* ---- redaction ---- */

static const char *redact(const char *in)
{
	static char out[1024];

	log_redact(in, strlen(in), out, sizeof(out), NULL);
	return out;
}

static void test_redact(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "INFO:     127.0.0.1:5555 - \"GET /text?q=SECRET&t=1 HTTP/1.1\" 200 OK",
		  "INFO:     127.0.0.1:5555 - \"GET /text?[redacted] HTTP/1.1\" 200 OK" },
		{ "fetching https://api.example.com/v1/x?token=abc done",
		  "fetching https://api.example.com/v1/x?[redacted] done" },
		{ "{\"path\": \"/a/b?key=1\", \"n\": 1}", "{\"path\": \"/a/b?[redacted]\", \"n\": 1}" },
		{ "what? no slash here?", "what? no slash here?" },
		{ "Authorization: Bearer abc.def", "Authorization: [redacted]" },
		{ "headers {'authorization': 'Basic eHl6', 'host': 'h'}",
		  "headers {'authorization': '[redacted]', 'host': 'h'}" },
		{ "[(b'cookie', b'sid=SECRET'), (b'host', b'x')]",
		  "[(b'cookie', b'[redacted]'), (b'host', b'x')]" },
		{ "{\"Cookie\": \"a=1; b=2\", \"x\": 1}", "{\"Cookie\": \"[redacted]\", \"x\": 1}" },
		{ "Set-Cookie: id=SECRET; Path=/", "Set-Cookie: [redacted]" },
		{ "token is Bearer xyz123 ok", "token is Bearer [redacted] ok" },
		{ "cookie consent shown", "cookie consent shown" },
		{ "auth=ok authorization=abc def", "auth=ok authorization=[redacted]" },
		{ "", "" },
	};

	cur_case = "redact";
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++, n_cases++)
		CHECK_S(redact(cases[i].in), cases[i].want);
}

static void test_redact_bounded(void)
{
	char in[600], out[64];
	bool cut = false;
	size_t n;

	cur_case = "redact bounded";
	n_cases++;
	memset(in, 'a', sizeof(in));
	n = log_redact(in, sizeof(in), out, sizeof(out), &cut);
	CHECK(cut);
	CHECK_I(n, sizeof(out) - 1);
	CHECK_I(strlen(out), n);
	cut = false;
	n = log_redact("/p?x", 4, out, 8, &cut);	/* "/p?[redacted]" does not fit */
	CHECK(cut);
	CHECK_I(strlen(out), n);
}

/* ---- parsing ---- */

struct pcase {
	const char *line;
	int sev;
	const char *sev_text;
	const char *body;	/* NULL: the whole line */
};

static void test_parse_text(void)
{
	static const struct pcase cases[] = {
		{ "WARNING:myapp:disk almost full", 13, "WARNING", NULL },
		{ "INFO:     Started server process [42]", 9, "INFO", NULL },
		{ "ERROR:    Exception in ASGI application", 17, "ERROR", NULL },
		{ "INFO:     127.0.0.1:1 - \"GET / HTTP/1.1\" 200 OK", 9, "INFO", NULL },
		{ "[2024-01-01 12:00:00 +0000] [123] [INFO] Booting worker with pid: 123", 9, "INFO",
		  NULL },
		{ "[2024-01-01 12:00:00 +0000] [123] [CRITICAL] WORKER TIMEOUT (pid:7)", 21,
		  "CRITICAL", NULL },
		{ "2024-01-01 12:00:00,123 DEBUG sqlalchemy: select 1", 5, "DEBUG", NULL },
		{ "2024-01-01 12:00:00 - app - ERROR - boom", 17, "ERROR", NULL },
		{ "Traceback (most recent call last):", 0, "", NULL },
		{ "info about nothing", 0, "", NULL },
		{ "INFORMATION: not a level", 0, "", NULL },
		{ "{\"event\": \"hi\", \"level\": \"warning\"}", 13, "warning", "hi" },
		{ "{\"message\": \"m\", \"levelname\": \"ERROR\", \"name\": \"x\"}", 17, "ERROR", "m" },
		{ "{\"msg\": \"only msg\"}", 0, "", "only msg" },
		{ "{\"a\": 1} trailing", 0, "", NULL },
		{ "{\"a\": 01}", 0, "", NULL },
		{ "{\"a\": [1, {\"b\": \"}\"}], \"event\": \"e\"}", 0, "", "e" },
	};

	cur_case = "parse";
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++, n_cases++) {
		const struct pcase *c = &cases[i];
		struct log_parsed p;
		char body[256];

		log_parse(c->line, strlen(c->line), &p);
		check(p.severity == c->sev, __FILE__, __LINE__, "'%s': severity %d, want %d",
		      c->line, p.severity, c->sev);
		CHECK_S(p.severity_text, c->sev_text);
		snprintf(body, sizeof(body), "%.*s", p.body_len, c->line + p.body_off);
		CHECK_S(body, c->body ? c->body : c->line);
	}
}

static void test_parse_json_attrs(void)
{
	const char *l = "{\"event\": \"work done\", \"request_id\": \"r\\u00e9\\\"1\", \"n\": 42, "
			"\"ratio\": -0.5e1, \"ok\": true, \"none\": null, \"obj\": {\"k\": [1]}, "
			"\"level\": \"info\", \"timestamp\": \"2024-01-01T00:00:00Z\"}";
	struct log_parsed p;
	char key[64], val[64];
	const struct {
		const char *key;
		int type;
		const char *raw;
	} want[] = {
		{ "request_id", LOGV_STR, "r\\u00e9\\\"1" }, { "n", LOGV_INT, "42" },
		{ "ratio", LOGV_DBL, "-0.5e1" }, { "ok", LOGV_BOOL, "true" },
		{ "obj", LOGV_JSON, "{\"k\": [1]}" }, { "timestamp", LOGV_STR, "2024-01-01T00:00:00Z" },
	};

	cur_case = "json attributes";
	n_cases++;
	log_parse(l, strlen(l), &p);
	CHECK(p.flags & LOGF_JSON);
	CHECK(p.flags & LOGF_BODY_JSON);
	CHECK_I(p.severity, 9);
	if (!CHECK_I(p.n_attrs, sizeof(want) / sizeof(want[0])))
		return;
	for (int i = 0; i < p.n_attrs; i++) {
		snprintf(key, sizeof(key), "%.*s", p.attrs[i].key_len, l + p.attrs[i].key_off);
		snprintf(val, sizeof(val), "%.*s", p.attrs[i].val_len, l + p.attrs[i].val_off);
		CHECK_S(key, want[i].key);
		CHECK_I(p.attrs[i].type, want[i].type);
		CHECK_S(val, want[i].raw);
	}
	log_json_unescape(l + p.attrs[0].val_off, p.attrs[0].val_len, val);
	CHECK_S(val, "r\xc3\xa9\"1");
}

static void test_unescape(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "a\\nb\\t\\\\\\/", "a\nb\t\\/" },
		{ "\\ud83d\\ude00", "\xf0\x9f\x98\x80" },	/* surrogate pair */
		{ "\\ud83d", "\xef\xbf\xbd" },			/* lone surrogate */
		{ "\\u0000", "\xef\xbf\xbd" },			/* no NULs in C strings */
		{ "\\uZZZZ", "\\uZZZZ" },
		{ "end\\", "end\\" },
	};
	char out[64];

	cur_case = "unescape";
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++, n_cases++) {
		log_json_unescape(cases[i].in, strlen(cases[i].in), out);
		CHECK_S(out, cases[i].want);
	}
}

/* ---- line assembly ---- */

struct got {
	int n;
	char line[MAX_GOT][LOG_LINE_MAX + 1];
	uint32_t flags[MAX_GOT];
	enum log_link_kind kind[MAX_GOT];
	uint8_t span0[MAX_GOT];
	uint64_t ts[MAX_GOT];
};

static void sink(void *ctx, const struct log_rec *r)
{
	struct got *g = ctx;

	if (g->n >= MAX_GOT)
		return;
	memcpy(g->line[g->n], r->line, r->len + 1);
	g->flags[g->n] = r->flags;
	g->kind[g->n] = r->link.kind;
	g->span0[g->n] = r->link.span_id[0];
	g->ts[g->n] = r->ts_ns;
	g->n++;
}

static struct logs *new_logs(struct got *g)
{
	struct logs *l = logs__new();

	memset(g, 0, sizeof(*g));
	logs__add_sink(l, sink, g);
	return l;
}

static struct log_link linked(uint8_t span)
{
	struct log_link k = { .kind = LOG_LINKED };

	k.span_id[0] = span;
	return k;
}

static void write_str(struct logs *l, uint32_t pid, int fd, uint64_t ts, const struct log_link *k,
		      const char *s)
{
	struct log_src src = { .pid = pid, .tid = pid, .fd = fd, .ts_ns = ts };

	logs__write(l, &src, k, (const uint8_t *)s, strlen(s), 0, NULL, 0);
}

static void test_lines(void)
{
	struct log_link a = linked(1), b = linked(2), none = { .kind = LOG_NO_REQUEST };
	static struct got g;
	struct logs *l = new_logs(&g);

	cur_case = "lines";
	n_cases++;
	write_str(l, 10, 2, 100, &a, "one\r\ntwo\n\nthree");	/* partial "three" waits */
	CHECK_I(g.n, 2);
	write_str(l, 11, 2, 101, &b, "other\n");		/* another pid: not glued */
	write_str(l, 10, 1, 102, &b, "stdout\n");		/* another fd: not glued */
	write_str(l, 10, 2, 103, &a, " end\n");			/* same request: linked */
	write_str(l, 10, 2, 104, &a, "four");
	write_str(l, 10, 2, 105, &b, "!\n");			/* two requests: ambiguous */
	write_str(l, 10, 2, 106, &none, "x");
	write_str(l, 10, 2, 107, &none, "y\n");			/* no request twice: no_request */
	write_str(l, 10, 2, 108, &a, "idle");
	logs__tick(l, 108 + LOG_PARTIAL_IDLE_NS);	/* not idle long enough yet */
	CHECK_I(g.n, 7);
	logs__tick(l, 109 + LOG_PARTIAL_IDLE_NS);
	if (!CHECK_I(g.n, 8))
		goto out;
	CHECK_S(g.line[0], "one");
	CHECK_S(g.line[1], "two");
	CHECK_S(g.line[2], "other");
	CHECK_S(g.line[3], "stdout");
	CHECK_S(g.line[4], "three end");
	CHECK_I(g.kind[4], LOG_LINKED);
	CHECK_I(g.span0[4], 1);
	CHECK_I(g.ts[4], 100);			/* the write that began it */
	CHECK_S(g.line[5], "four!");
	CHECK_I(g.kind[5], LOG_AMBIGUOUS);
	CHECK_S(g.line[6], "xy");
	CHECK_I(g.kind[6], LOG_NO_REQUEST);
	CHECK_S(g.line[7], "idle");
	CHECK_I(g.kind[7], LOG_LINKED);
	CHECK_I(g.kind[0], LOG_LINKED);		/* whole lines carry their write's link */
out:
	logs__free(l);
}

/* Feeding a text byte by byte gives the lines of feeding it at once. */
static void test_bytewise(void)
{
	const char *text = "INFO:a:x\n{\"event\": \"e\", \"k\": 1}\nlast line\n";
	struct log_link a = linked(7);
	static struct got one, many;
	struct logs *l1 = new_logs(&one), *l2 = new_logs(&many);
	char b[2] = { 0 };

	cur_case = "bytewise";
	n_cases++;
	write_str(l1, 5, 1, 1, &a, text);
	for (size_t i = 0; text[i]; i++) {
		b[0] = text[i];
		write_str(l2, 5, 1, 1 + i, &a, b);
	}
	if (CHECK_I(many.n, one.n) && CHECK_I(one.n, 3))
		for (int i = 0; i < one.n; i++) {
			CHECK_S(many.line[i], one.line[i]);
			CHECK_I(many.kind[i], LOG_LINKED);
		}
	logs__free(l1);
	logs__free(l2);
}

/* A write longer than the capture: head lines, the cut line truncated, the
 * gap's lines lost, tail lines after its first '\n'. */
static void test_gap(void)
{
	struct log_link a = linked(1);
	struct log_src src = { .pid = 3, .tid = 3, .fd = 2, .ts_ns = 1 };
	const char *head = "first\nsecond-cut-he", *tail = "ail-of-a-line\nlast one\n";
	static struct got g;
	struct logs *l = new_logs(&g);

	cur_case = "gap";
	n_cases++;
	logs__write(l, &src, &a, (const uint8_t *)head, strlen(head), 5000,
		    (const uint8_t *)tail, strlen(tail));
	write_str(l, 3, 2, 2, &a, "after\n");
	if (CHECK_I(g.n, 4)) {
		CHECK_S(g.line[0], "first");
		CHECK(!(g.flags[0] & LOGF_TRUNCATED));
		CHECK_S(g.line[1], "second-cut-he");
		CHECK(g.flags[1] & LOGF_TRUNCATED);
		CHECK_S(g.line[2], "last one");
		CHECK_I(g.kind[2], LOG_LINKED);	/* ends with '\n': not a buffer flush */
		CHECK_S(g.line[3], "after");
	}
	/* a tail without '\n': the rest of that line, in the next write, is dropped */
	logs__write(l, &src, &a, (const uint8_t *)"x\nyy", 4, 5000, (const uint8_t *)"zz", 2);
	write_str(l, 3, 2, 3, &a, "rest of the long line\nnext\n");
	if (CHECK_I(g.n, 7)) {
		CHECK_S(g.line[4], "x");
		CHECK_S(g.line[5], "yy");
		CHECK(g.flags[5] & LOGF_TRUNCATED);
		CHECK_S(g.line[6], "next");
	}
	logs__free(l);
}

/* A long write ending mid-line is a stdio buffer flush: nothing in it is linked. */
static void test_buffered(void)
{
	struct log_link a = linked(1);
	char *buf = malloc(LOG_FLUSH_MIN + 128);
	static struct got g;
	struct logs *l = new_logs(&g);
	size_t n = 0;

	cur_case = "buffered";
	n_cases++;
	while (n < LOG_FLUSH_MIN)
		n += sprintf(buf + n, "a line of some length, as logging writes it %zu\n", n);
	n += sprintf(buf + n, "cut");
	write_str(l, 4, 1, 1, &a, buf);
	write_str(l, 4, 1, 2, &a, " here\n");
	CHECK(g.n > 50 && g.n < MAX_GOT);
	for (int i = 0; i < g.n; i++)
		CHECK_I(g.kind[i], LOG_BUFFERED);
	CHECK_S(g.line[g.n - 1], "cut here");
	free(buf);
	logs__free(l);
}

static void test_truncated(void)
{
	struct log_link a = linked(1);
	char *big = malloc(LOG_LINE_MAX * 2 + 2);
	static struct got g;
	struct logs *l = new_logs(&g);

	cur_case = "truncated";
	n_cases++;
	memset(big, 'b', LOG_LINE_MAX * 2);
	strcpy(big + LOG_LINE_MAX * 2, "");
	for (int i = 0; i < 4; i++)	/* a long line over several writes */
		write_str(l, 6, 1, i, &a, big + LOG_LINE_MAX * 2 - LOG_LINE_MAX / 2);
	write_str(l, 6, 1, 9, &a, "tail\nnext\n");
	if (CHECK_I(g.n, 2)) {
		CHECK_I(strlen(g.line[0]), LOG_LINE_MAX);
		CHECK(g.flags[0] & LOGF_TRUNCATED);
		CHECK_S(g.line[1], "next");
	}
	free(big);
	logs__free(l);
}

static void test_clean(void)
{
	struct log_link a = linked(1);
	static struct got g;
	struct logs *l = new_logs(&g);

	cur_case = "clean";
	n_cases++;
	write_str(l, 8, 2, 1, &a, "\x1b[32mINFO\x1b[0m:     hi\n");
	write_str(l, 8, 2, 2, &a, "bad \xff byte\n");
	if (CHECK_I(g.n, 2)) {
		CHECK_S(g.line[0], "INFO:     hi");
		CHECK_S(g.line[1], "bad \xef\xbf\xbd byte");
	}
	logs__free(l);
}

/* ---- linking rule ---- */

static void test_link_rule(void)
{
	struct logs *l = logs__new();
	struct record r1 = { .pid = 1, .tid = 1 }, r2 = { .pid = 1, .tid = 1 };
	struct record other = { .pid = 1, .tid = 2 };
	struct log_inflight f = { .tid = 1 };
	struct log_link k;

	cur_case = "link rule";
	n_cases++;
	r1.span_id[0] = 1;
	r2.span_id[0] = 2;
	logs__link(l, 1, &f, &k);
	CHECK_I(k.kind, LOG_NO_REQUEST);
	log_inflight_visit(&f, &other);		/* another thread: not counted */
	log_inflight_visit(&f, &r1);
	logs__link(l, 1, &f, &k);
	CHECK_I(k.kind, LOG_LINKED);
	CHECK_I(k.span_id[0], 1);
	log_inflight_visit(&f, &r2);
	logs__link(l, 1, &f, &k);
	CHECK_I(k.kind, LOG_AMBIGUOUS);
	/* r1 finished; r2 alone in flight, but the thread may still run r1's code */
	logs__io(l, 1, 1);
	logs__request_done(l, &r1);
	f = (struct log_inflight){ .tid = 1 };
	log_inflight_visit(&f, &r2);
	logs__link(l, 1, &f, &k);
	CHECK_I(k.kind, LOG_AMBIGUOUS);
	logs__io(l, 1, 2);			/* another thread's I/O: no news */
	logs__link(l, 1, &f, &k);
	CHECK_I(k.kind, LOG_AMBIGUOUS);
	logs__io(l, 1, 1);			/* the thread moved on */
	logs__link(l, 1, &f, &k);
	CHECK_I(k.kind, LOG_LINKED);
	CHECK_I(k.span_id[0], 2);
	/* the same tid in another process is another thread */
	logs__request_done(l, &r2);
	logs__link(l, 9, &f, &k);
	CHECK_I(k.kind, LOG_LINKED);
	logs__link(l, 1, &f, &k);
	CHECK_I(k.kind, LOG_AMBIGUOUS);
	logs__forget(l, 1);			/* the process exited: a new one with its pid */
	logs__link(l, 1, &f, &k);		/* has no finished request's code to run */
	CHECK_I(k.kind, LOG_LINKED);
	logs__free(l);
}

/* Many threads: moved-on ones are forgotten losslessly; forgetting one that
 * has not moved on makes every unknown thread untrusted. */
static void test_link_evict(void)
{
	struct logs *l = logs__new();
	struct record r = { .pid = 1 };
	struct log_inflight f;
	struct log_link k;

	cur_case = "link evict";
	n_cases++;
	for (uint32_t t = 1; t <= LOG_THREADS_MAX * 4; t++) {
		r.tid = t;
		logs__request_done(l, &r);
		logs__io(l, 1, t);
	}
	f = (struct log_inflight){ .tid = 77 };
	r.tid = 77;
	log_inflight_visit(&f, &r);
	logs__link(l, 1, &f, &k);
	CHECK_I(k.kind, LOG_LINKED);
	for (uint32_t t = 1; t <= LOG_THREADS_MAX * 2; t++) {
		r.tid = t;
		logs__request_done(l, &r);	/* none moves on */
	}
	for (uint32_t t = 1; t <= LOG_THREADS_MAX * 3; t += 7) {
		r.tid = t;
		f = (struct log_inflight){ .tid = t };
		log_inflight_visit(&f, &r);
		logs__link(l, 1, &f, &k);
		check(k.kind == LOG_AMBIGUOUS, __FILE__, __LINE__, "tid %u linked", t);
	}
	logs__free(l);
}

int main(void)
{
	test_redact();
	test_redact_bounded();
	test_parse_text();
	test_parse_json_attrs();
	test_unescape();
	test_lines();
	test_bytewise();
	test_gap();
	test_buffered();
	test_truncated();
	test_clean();
	test_link_rule();
	test_link_evict();
	printf("test_logs: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
