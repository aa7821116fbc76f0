/* SPDX-License-Identifier: MIT */
/*
 * logs — the log lines of observed servers as log records, linked to the
 * request they were written for only when that is certain.
 *
 * Input: the bytes a process wrote to fd 1 or 2 (kernel OBS_EV_LOG records,
 * one per write(): the first cap bytes, an uncaptured gap, the last tail
 * bytes). Each write may hold several lines or part of one. A line is cut at
 * '\n' ("\r\n" too); a line longer than LOG_LINE_MAX, or running into the
 * uncaptured part of a write, is emitted with what was captured and marked
 * truncated (never glued to the next line); lines wholly inside a gap are
 * lost (their bytes are counted). A partial line at the end of a write is
 * joined with the next write of the same (pid, fd) only; nobody completing
 * it within LOG_PARTIAL_IDLE_NS, it is emitted as it is.
 *
 * Each line is redacted (log_redact: Authorization and Cookie values, Bearer
 * tokens, query strings of URLs and paths), cleaned (ANSI colour codes out,
 * invalid UTF-8 replaced) and parsed (log_parse): severity from Python
 * logging's default "LEVEL:name:msg", uvicorn's "LEVEL:     msg", gunicorn's
 * "[date] [pid] [LEVEL] msg", a bare level word among the first tokens
 * ("2024-… INFO name: msg"), and JSON objects (structlog's JSONRenderer,
 * python-json-logger): their top-level fields become attributes,
 * "event"/"message"/"msg" the body, "level"/"levelname" the severity.
 *
 * Linking (the caller decides per write with logs__link, the rule being
 * here): a write is linked to request R when R is the only request of that
 * process in flight (head read, response not complete) on the writing thread
 * AND, if another request of that thread finished before, the thread has
 * done socket I/O since (it "moved on"). The second half matters for asyncio
 * servers: code that runs right after a response is complete (hypercorn's
 * and daphne's access log, ASGI middleware that logs after the last send)
 * writes while the next request may already be the only one in flight; until
 * the thread is seen doing something else, a line could be the finished
 * request's, so it is ambiguous. A line joined from writes with different
 * decisions is ambiguous. A write of at least LOG_FLUSH_MIN
 * bytes that ends mid-line is a stdio buffer flush (block-buffered stdout):
 * its lines were produced earlier, at unknown times, so none is linked
 * ("buffered"). Everything not linked is counted by reason.
 */
#ifndef OBS_LOGS_H
#define OBS_LOGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/cgroup.h"
#include "proto/http1.h"
#include "conn/record.h"

#define LOG_LINE_MAX		4096	/* bytes of one line kept (before redaction) */
#define LOG_STREAMS_MAX		256	/* (pid, fd) streams holding a partial line */
#define LOG_PARTIAL_IDLE_NS	(500ull * 1000000ull)
#define LOG_FLUSH_MIN		4096
#define LOG_ATTRS_MAX		32	/* JSON fields kept as attributes; more are counted */
#define LOG_THREADS_MAX		4096	/* threads remembered until they move on */
#define LOG_SINKS_MAX		4

enum log_link_kind {
	LOG_LINKED,
	LOG_NO_REQUEST,		/* no request of the process in flight on that thread */
	LOG_AMBIGUOUS,		/* several could have written it */
	LOG_BUFFERED,		/* part of a stdio buffer flush: written at an unknown time */
	LOG_LINK_KINDS
};

/* The request a line belongs to, or why it has none. Only the ids fixed when
 * the request starts: a request id can still change with the response. */
struct log_link {
	enum log_link_kind kind;
	bool sampled;
	uint8_t trace_id[16];
	uint8_t span_id[8];
};

/* Requests of one thread in flight at a write: filled by log_inflight_visit. */
struct log_inflight {
	uint32_t tid;		/* set by the caller */
	size_t n;		/* requests of that thread in flight */
	struct log_link first;	/* the ids of the first one */
};

/* conn_table__foreach_pending() visitor: counts records of f->tid. */
void log_inflight_visit(void *ctx, const struct record *r);

/* Attribute types (values are spans of log_rec.line). */
enum log_val_type { LOGV_STR, LOGV_INT, LOGV_DBL, LOGV_BOOL, LOGV_JSON /* object or array */ };

struct log_attr {
	uint16_t key_off, key_len;	/* the key's JSON string, quotes excluded */
	uint16_t val_off, val_len;	/* strings: quotes excluded, still escaped */
	uint8_t type;			/* enum log_val_type */
};

/* record.flags */
enum {
	LOGF_TRUNCATED	= 1u << 0,	/* the line was longer than what was captured or kept */
	LOGF_JSON	= 1u << 1,	/* a JSON object: attrs and body_* are set */
	LOGF_BODY_JSON	= 1u << 2,	/* the body is a JSON string span (unescape it) */
};

/* Parse result of one line (log_parse). */
struct log_parsed {
	int severity;			/* OpenTelemetry SeverityNumber, 0 = unknown */
	char severity_text[16];		/* as written ("WARNING", "info") */
	uint32_t flags;			/* LOGF_JSON, LOGF_BODY_JSON */
	uint16_t body_off, body_len;	/* the whole line unless a JSON message field */
	int n_attrs;
	uint32_t attrs_dropped;
	struct log_attr attrs[LOG_ATTRS_MAX];
};

/* One log record. Allocated with its line; handed to sinks by const pointer,
 * valid only during the call (log_rec_dup keeps one). */
struct log_rec {
	uint64_t ts_ns;			/* CLOCK_MONOTONIC of the write that began the line */
	uint64_t wall_ns;		/* ts_ns on CLOCK_REALTIME */
	uint64_t observed_wall_ns;	/* when obsd emitted it */
	uint32_t pid, tid;
	int fd;				/* 1 stdout, 2 stderr */
	uint32_t flags;			/* LOGF_* */
	struct log_link link;
	char service[64];
	char comm[16];
	struct cgroup_ident container;
	struct log_parsed p;
	uint32_t len;
	char line[];			/* redacted, valid UTF-8, NUL-terminated */
};

/* Who wrote, for the records of a write. */
struct log_src {
	uint32_t pid, tid;
	int fd;
	uint64_t ts_ns, wall_ns;
	const char *service, *comm;
	const struct cgroup_ident *container;	/* may be NULL */
};

struct log_stats {
	uint64_t writes, bytes;
	uint64_t bytes_uncaptured;	/* in gaps of long writes: their lines are lost */
	uint64_t records;		/* emitted */
	uint64_t unlinked[LOG_LINK_KINDS];	/* [LOG_LINKED] = linked */
	uint64_t truncated;
	uint64_t partial_timeouts;	/* partial lines emitted after LOG_PARTIAL_IDLE_NS */
	uint64_t streams_evicted;	/* partial lines emitted early: too many streams */
	uint64_t dropped_nomem;
};

typedef void (*log_sink_fn)(void *ctx, const struct log_rec *r);

struct logs;

/* NULL with errno set. */
struct logs *logs__new(void);

/* Add a sink; 0 or -E2BIG. */
int logs__add_sink(struct logs *l, log_sink_fn fn, void *ctx);

/*
 * The link of a write on thread tid of pid at ts_ns, from the requests of
 * that thread in flight (f, filled by log_inflight_visit) and the finished
 * requests logs__request_done was told about.
 */
void logs__link(const struct logs *l, uint32_t pid, const struct log_inflight *f,
		struct log_link *out);

/* A request is complete (or failed): its thread has not moved on yet. */
void logs__request_done(struct logs *l, const struct record *r);

/* Socket I/O of a followed connection on thread tid (call before the event
 * is applied, so the completion it may cause comes after). */
void logs__io(struct logs *l, uint32_t pid, uint32_t tid);

/* One write to fd 1 or 2 (see the top of this file for data/cap/gap/tail). */
void logs__write(struct logs *l, const struct log_src *src, const struct log_link *link,
		 const uint8_t *data, size_t cap, uint64_t gap, const uint8_t *tail,
		 size_t tail_len);

/* Emit partial lines idle since LOG_PARTIAL_IDLE_NS. Call after each drain. */
void logs__tick(struct logs *l, uint64_t now_ns);

/* A process exited: emit its partial lines; its threads run nothing any more. */
void logs__forget(struct logs *l, uint32_t pid);

const struct log_stats *logs__stats(const struct logs *l);

/* Emit what is pending and free. NULL-safe. */
void logs__free(struct logs *l);

/* ---- pure helpers (unit-tested) ---- */

/* Redact secrets from in[0..n) into out (cap bytes, NUL-terminated);
 * returns the length written. *cut is set when out was too small. */
size_t log_redact(const char *in, size_t n, char *out, size_t cap, bool *cut);

/* Parse line[0..n) (redacted, clean). */
void log_parse(const char *line, size_t n, struct log_parsed *p);

/* OpenTelemetry SeverityNumber of a level name (any case), 0 if unknown. */
int log_severity_of(const char *name, size_t n);

/* Unescape a JSON string body s[0..n) into out (>= n + 1 bytes); returns
 * the length (UTF-8, NUL-terminated; invalid escapes kept verbatim). */
size_t log_json_unescape(const char *s, size_t n, char *out);

/* A malloc'd copy of r (NULL when memory is short). */
struct log_rec *log_rec_dup(const struct log_rec *r);

/* "linked", "no_request", "ambiguous", "buffered". */
const char *log_link_name(enum log_link_kind k);

#endif
