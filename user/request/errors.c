// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "request/errors.h"
#include "base/ids.h"

enum tb_state {
	TB_IDLE,	/* not inside a traceback */
	TB_FRAMES,	/* after "Traceback (most recent call last):" */
	TB_AFTER_EXC,	/* after the exception line: a chain may follow */
	TB_CHAIN,	/* after a chain marker: waiting for the next "Traceback" */
};

struct stream {
	uint32_t pid;		/* 0: free slot */
	int fd;
	uint32_t tid;
	uint64_t last_ns;	/* last write seen */
	enum tb_state st;
	struct exc_info *exc;	/* being built, owned */
	size_t len;
	bool overflow;		/* current line longer than ERR_LINE_MAX: tail dropped */
	char line[ERR_LINE_MAX];
};

struct held {
	struct record r;
	struct exc_info *exc;	/* owned */
};

struct errors {
	err_event_fn on_event;
	err_release_fn release;
	void *ctx;
	struct stream streams[ERR_STREAMS_MAX];
	struct held *held[ERR_PENDING_MAX];	/* in arrival order */
	size_t n_held;
	struct exc_info *tbs[ERR_TB_PENDING_MAX];	/* recognised, not joined yet */
	size_t n_tbs;
	struct err_stats st;
};

static const char TB_START[] = "Traceback (most recent call last):";
static const char CHAIN_CONTEXT[] = "During handling of the above exception, another exception occurred:";
static const char CHAIN_CAUSE[] = "The above exception was the direct cause of the following exception:";

bool record_is_error(const struct record *r)
{
	return r->outcome != REC_OK || r->status >= 500;
}

struct errors *errors__new(err_event_fn on_event, err_release_fn release, void *ctx)
{
	struct errors *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->on_event = on_event;
	e->release = release;
	e->ctx = ctx;
	return e;
}

/* ---- traceback recognition ---- */

static void text_add(struct exc_info *x, const char *line, size_t n)
{
	size_t room = EXC_TEXT_MAX - 1 - x->text_len;

	if (n + 1 > room)
		n = room ? room - 1 : 0;
	memcpy(x->text + x->text_len, line, n);
	x->text_len += n;
	if (x->text_len < EXC_TEXT_MAX - 1)
		x->text[x->text_len++] = '\n';
	x->text[x->text_len] = 0;
}

static void copy_trunc(char *dst, size_t n, const char *src, size_t len)
{
	if (len >= n)
		len = n - 1;
	memcpy(dst, src, len);
	dst[len] = 0;
}

/* '  File "path", line 12, in func' */
static bool parse_frame(const char *line, struct exc_frame *f)
{
	const char *p = line + 8, *q = strstr(p, "\", line ");
	const char *in;
	size_t fl;

	if (strncmp(line, "  File \"", 8) || !q)
		return false;
	fl = q - p;
	if (fl >= sizeof(f->file))
		fl = sizeof(f->file) - 1;
	memcpy(f->file, p, fl);
	f->file[fl] = 0;
	f->line = atoi(q + 8);
	in = strstr(q + 8, ", in ");
	copy_trunc(f->function, sizeof(f->function), in ? in + 5 : "", in ? strlen(in + 5) : 0);
	return true;
}

/* "pkg.ValueError: msg" or "KeyboardInterrupt": type is a dotted identifier. */
static void parse_exc_line(const char *line, struct exc_info *x)
{
	size_t i = 0;

	while (line[i] && (isalnum((unsigned char)line[i]) || line[i] == '_' || line[i] == '.'))
		i++;
	if (i && (line[i] == ':' || !line[i])) {
		const char *msg = line[i] == ':' ? line + i + (line[i + 1] == ' ' ? 2 : 1) : "";

		copy_trunc(x->type, sizeof(x->type), line, i);
		copy_trunc(x->message, sizeof(x->message), msg, strlen(msg));
	} else {
		strcpy(x->type, "Exception");
		copy_trunc(x->message, sizeof(x->message), line, strlen(line));
	}
}

static void tb_finish(struct errors *e, struct stream *s)
{
	struct exc_info *x = s->exc;

	s->exc = NULL;
	s->st = TB_IDLE;
	if (!x)
		return;
	if (!x->type[0]) {	/* never reached its exception line */
		free(x);
		return;
	}
	e->st.tracebacks++;
	if (e->n_tbs >= ERR_TB_PENDING_MAX) {
		e->st.dropped++;
		free(x);
		return;
	}
	e->tbs[e->n_tbs++] = x;
}

static void tb_line(struct errors *e, struct stream *s, const char *line, size_t n, uint64_t ts)
{
	bool blank = n == 0 || strspn(line, " \t") == n;

	switch (s->st) {
	case TB_AFTER_EXC:
	case TB_CHAIN:
		if (blank) {
			text_add(s->exc, line, n);
			return;
		}
		if (!strcmp(line, CHAIN_CONTEXT) || !strcmp(line, CHAIN_CAUSE)) {
			text_add(s->exc, line, n);
			s->st = TB_CHAIN;
			return;
		}
		if (s->st == TB_CHAIN && !strcmp(line, TB_START)) {
			text_add(s->exc, line, n);
			s->exc->n_frames = 0;	/* the frames of the last exception count */
			s->exc->type[0] = 0;
			s->exc->chain++;
			s->st = TB_FRAMES;
			return;
		}
		tb_finish(e, s);
		__attribute__((fallthrough));	/* the line may start another traceback */
	case TB_IDLE:
		if (strcmp(line, TB_START))
			return;
		s->exc = calloc(1, sizeof(*s->exc));
		if (!s->exc) {
			e->st.dropped++;
			return;
		}
		s->exc->pid = s->pid;
		s->exc->tid = s->tid;
		s->exc->chain = 1;
		text_add(s->exc, line, n);
		s->st = TB_FRAMES;
		return;
	case TB_FRAMES:
		text_add(s->exc, line, n);
		if (!strncmp(line, "  File \"", 8)) {
			if (s->exc->n_frames < EXC_FRAMES_MAX &&
			    parse_frame(line, &s->exc->frames[s->exc->n_frames]))
				s->exc->n_frames++;
		} else if (n && line[0] != ' ' && line[0] != '\t') {
			parse_exc_line(line, s->exc);
			s->exc->ts_ns = ts;
			s->st = TB_AFTER_EXC;
		}
		return;
	}
}

static struct stream *stream_of(struct errors *e, uint32_t pid, int fd, uint64_t ts)
{
	struct stream *free_slot = NULL, *oldest = NULL;

	for (int i = 0; i < ERR_STREAMS_MAX; i++) {
		struct stream *s = &e->streams[i];

		if (s->pid == pid && s->fd == fd)
			return s;
		if (!s->pid && !free_slot)
			free_slot = s;
		if (s->pid && (!oldest || s->last_ns < oldest->last_ns))
			oldest = s;
	}
	if (!free_slot) {	/* evict the stream silent the longest */
		tb_finish(e, oldest);
		free_slot = oldest;
	}
	memset(free_slot, 0, sizeof(*free_slot) - sizeof(free_slot->line));
	free_slot->pid = pid;
	free_slot->fd = fd;
	free_slot->last_ns = ts;
	return free_slot;
}

static void feed_lines(struct errors *e, struct stream *s, const uint8_t *data, size_t cap,
		       uint64_t ts_ns)
{
	for (size_t i = 0; i < cap; i++) {
		char ch = data[i];

		if (ch == '\n') {
			while (s->len && s->line[s->len - 1] == '\r')
				s->len--;
			s->line[s->len] = 0;
			tb_line(e, s, s->line, s->len, ts_ns);
			s->len = 0;
			s->overflow = false;
		} else if (s->len < ERR_LINE_MAX - 1) {
			s->line[s->len++] = ch;
		} else {
			s->overflow = true;
		}
	}
}

void errors__log(struct errors *e, uint32_t pid, uint32_t tid, int fd, uint64_t ts_ns,
		 const uint8_t *data, size_t cap, uint64_t gap, const uint8_t *tail,
		 size_t tail_len)
{
	struct stream *s = stream_of(e, pid, fd, ts_ns);
	const uint8_t *nl;

	e->st.log_bytes += cap + gap + tail_len;
	s->last_ns = ts_ns;
	s->tid = tid;
	feed_lines(e, s, data, cap, ts_ns);
	if (!gap && !tail_len)
		return;
	/* Lines in the gap are unknown: drop the partial line, and resume at the
	 * first whole line of the tail (the exception line, for a traceback). */
	s->len = 0;
	nl = memchr(tail, '\n', tail_len);
	if (nl)
		feed_lines(e, s, nl + 1, tail - nl - 1 + tail_len, ts_ns);
}

/* ---- joining and release ---- */

static void release_held(struct errors *e, size_t i)
{
	struct held *h = e->held[i];

	e->st.events++;
	h->r.exc = h->exc;
	e->on_event(e->ctx, &h->r, h->exc);
	e->release(e->ctx, &h->r);
	free(h->exc);
	free(h);
	memmove(&e->held[i], &e->held[i + 1], (e->n_held - i - 1) * sizeof(e->held[0]));
	e->n_held--;
}

void errors__record(struct errors *e, const struct record *r)
{
	struct held *h;

	if (!record_is_error(r)) {
		e->release(e->ctx, r);
		return;
	}
	if (e->n_held >= ERR_PENDING_MAX)
		release_held(e, 0);	/* oldest goes out early, without waiting */
	h = calloc(1, sizeof(*h));
	if (!h) {
		e->st.dropped++;
		e->st.events++;
		e->on_event(e->ctx, r, NULL);
		e->release(e->ctx, r);
		return;
	}
	h->r = *r;
	e->held[e->n_held++] = h;
}

static uint64_t dist(uint64_t a, uint64_t b)
{
	return a > b ? a - b : b - a;
}

/*
 * The error requests of best's process that ended within ERR_TIE_NS of best,
 * or of one another (transitively): time cannot tell their tracebacks apart,
 * so each of their events lists them all. Written into x's candidates.
 */
static void cluster_of(struct errors *e, const struct held *best, struct exc_info *x)
{
	bool in[ERR_PENDING_MAX] = { false }, grew = true;

	for (size_t i = 0; i < e->n_held; i++)
		in[i] = e->held[i] == best;
	while (grew) {
		grew = false;
		for (size_t i = 0; i < e->n_held; i++) {
			if (in[i] || e->held[i]->r.pid != best->r.pid)
				continue;
			for (size_t j = 0; j < e->n_held && !in[i]; j++)
				if (in[j] && dist(e->held[i]->r.end_ns, e->held[j]->r.end_ns) <=
						     ERR_TIE_NS)
					in[i] = grew = true;
		}
	}
	x->n_candidates = 0;
	for (size_t i = 0; i < e->n_held && x->n_candidates < EXC_CANDIDATES_MAX; i++)
		if (in[i])
			memcpy(x->candidates[x->n_candidates++], e->held[i]->r.request_id,
			       H1_REQID_MAX);
}

/* Attach x to the closest error request of its process; false if none. */
static bool join(struct errors *e, struct exc_info *x)
{
	struct held *best = NULL;
	uint64_t best_d = 0;

	for (size_t i = 0; i < e->n_held; i++) {
		struct held *h = e->held[i];
		uint64_t d = dist(h->r.end_ns, x->ts_ns);

		if (h->r.pid != x->pid || h->exc || d > ERR_JOIN_WINDOW_NS)
			continue;
		if (!best || d < best_d) {
			best = h;
			best_d = d;
		}
	}
	if (!best)
		return false;
	cluster_of(e, best, x);
	x->ambiguous = x->n_candidates > 1;
	if (x->ambiguous)
		e->st.ambiguous++;
	e->st.joined++;
	best->exc = x;
	return true;
}

void errors__tick(struct errors *e, uint64_t now_ns)
{
	for (int i = 0; i < ERR_STREAMS_MAX; i++) {
		struct stream *s = &e->streams[i];

		if (s->pid && s->st >= TB_AFTER_EXC && now_ns - s->last_ns > ERR_TB_IDLE_NS)
			tb_finish(e, s);
		else if (s->pid && s->st == TB_FRAMES && now_ns - s->last_ns > ERR_HOLD_NS)
			tb_finish(e, s);	/* cut short: dropped, it never ended */
	}
	for (size_t i = 0; i < e->n_tbs;) {
		struct exc_info *x = e->tbs[i];

		if (now_ns < x->ts_ns + ERR_JOIN_WINDOW_NS) {
			i++;
			continue;
		}
		if (!join(e, x)) {	/* no request: still an error event */
			e->st.unjoined++;
			e->st.events++;
			e->on_event(e->ctx, NULL, x);
			free(x);
		}
		e->tbs[i] = e->tbs[--e->n_tbs];
	}
	for (size_t i = 0; i < e->n_held;) {
		if (now_ns >= e->held[i]->r.end_ns + ERR_HOLD_NS)
			release_held(e, i);
		else
			i++;
	}
}

void errors__forget(struct errors *e, uint32_t pid)
{
	for (int i = 0; i < ERR_STREAMS_MAX; i++) {
		if (e->streams[i].pid == pid) {
			if (e->streams[i].st >= TB_AFTER_EXC)
				tb_finish(e, &e->streams[i]);
			free(e->streams[i].exc);
			e->streams[i].exc = NULL;
			e->streams[i].pid = 0;
		}
	}
}

const struct err_stats *errors__stats(const struct errors *e)
{
	return &e->st;
}

void errors__free(struct errors *e)
{
	if (!e)
		return;
	errors__tick(e, UINT64_MAX / 2);
	while (e->n_held)
		release_held(e, 0);
	for (size_t i = 0; i < e->n_tbs; i++)
		free(e->tbs[i]);
	for (int i = 0; i < ERR_STREAMS_MAX; i++)
		free(e->streams[i].exc);
	free(e);
}

/* ---- JSON ---- */

static void exc_json(const struct exc_info *x, struct jbuf *jb)
{
	jb_key(jb, "exception");
	jb_obj_open(jb);
	jb_str(jb, "type", x->type);
	jb_str(jb, "message", x->message);
	jb_u64(jb, "chain", x->chain);
	jb_arr_open(jb, "frames");
	for (int i = 0; i < x->n_frames; i++) {
		jb_obj_open(jb);
		jb_str(jb, "file", x->frames[i].file);
		jb_u64(jb, "line", x->frames[i].line);
		jb_str(jb, "function", x->frames[i].function);
		jb_obj_close(jb);
	}
	jb_arr_close(jb);
	jb_strn(jb, "stacktrace", x->text, x->text_len);
	jb_str(jb, "join", x->ambiguous ? "ambiguous" : "closest");
	jb_arr_open(jb, "candidates");
	for (int i = 0; i < x->n_candidates; i++)
		jb_str(jb, NULL, x->candidates[i]);
	jb_arr_close(jb);
	jb_obj_close(jb);
}

void error_event_json(const struct record *r, const struct exc_info *exc, const char *event_id,
		      struct jbuf *jb)
{
	char hex[33];

	jb_obj_open(jb);
	jb_str(jb, "event_id", event_id);
	if (r) {
		jb_u64(jb, "ts_ns", r->wall_start_ns + (r->end_ns - r->start_ns));
		jb_str(jb, "reason", r->outcome != REC_OK ? r->error : "status_5xx");
		jb_u64(jb, "pid", r->pid);
		jb_str(jb, "comm", r->comm);
		jb_str(jb, "service", r->service);
		jb_key(jb, "request");
		jb_obj_open(jb);
		jb_str(jb, "request_id", r->request_id);
		ids_hex(hex, r->trace_id, 16);
		jb_str(jb, "trace_id", hex);
		ids_hex(hex, r->span_id, 8);
		jb_str(jb, "span_id", hex);
		jb_str(jb, "method", r->method);
		jb_str(jb, "route", r->route);
		jb_str(jb, "path", r->path);
		jb_i64(jb, "status", r->status);
		jb_str(jb, "outcome", r->outcome == REC_OK ? "ok" : "failed");
		jb_u64(jb, "duration_us", record__duration_us(r));
		jb_str(jb, "client", r->client);
		jb_str(jb, "server", r->server);
		/* Only these headers are ever kept: Authorization, Cookie and the
		 * query string are never captured into a record. */
		jb_key(jb, "headers");
		jb_obj_open(jb);
		if (r->host[0])
			jb_str(jb, "host", r->host);
		if (r->user_agent[0])
			jb_str(jb, "user-agent", r->user_agent);
		if (r->content_type[0])
			jb_str(jb, "content-type", r->content_type);
		jb_obj_close(jb);
		jb_obj_close(jb);
	} else {
		jb_str(jb, "reason", "traceback_without_request");
		jb_u64(jb, "pid", exc ? exc->pid : 0);
	}
	if (exc)
		exc_json(exc, jb);
	jb_obj_close(jb);
}
