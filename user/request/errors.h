/* SPDX-License-Identifier: MIT */
/*
 * errors — error events: requests that ended in 5xx or failed, joined with the
 * Python traceback the server wrote to its stdout/stderr.
 *
 * Log bytes arrive per process and fd (kernel OBS_EV_LOG records) and are cut
 * into lines. A traceback is "Traceback (most recent call last):", frame
 * lines ('  File "f", line N, in fn' plus indented source), and the exception
 * line ("ValueError: kaboom"); chains ("During handling of the above
 * exception…", "The above exception was the direct cause…") are followed and
 * the last exception is the one reported, the whole text kept. Its time is
 * the write of its exception line.
 *
 * Joining: a traceback belongs to the error request of the same process whose
 * end is closest in time (and has no traceback yet), within
 * ERR_JOIN_WINDOW_NS. Servers write a traceback a few milliseconds before or
 * after their 500, so error requests that ended within ERR_TIE_NS of each
 * other (transitively) cannot be told apart by time: every traceback joined
 * to one of them says "ambiguous" and lists them all as candidates instead of
 * guessing silently. Error requests are held ERR_HOLD_NS after
 * they end (so a traceback written just after the response can still join);
 * other requests are never delayed.
 */
#ifndef OBS_ERRORS_H
#define OBS_ERRORS_H

#include <stdbool.h>
#include <stdint.h>
#include "base/json.h"
#include "conn/record.h"

#define ERR_JOIN_WINDOW_NS	(100ull * 1000000ull)
#define ERR_TIE_NS		(10ull * 1000000ull)
#define ERR_HOLD_NS		(300ull * 1000000ull)
#define ERR_TB_IDLE_NS		(50ull * 1000000ull)	/* a traceback ends when its stream pauses */
#define ERR_LINE_MAX		4096
#define ERR_STREAMS_MAX		256	/* (pid, fd) log streams followed */
#define ERR_PENDING_MAX		1024	/* error requests held at once */
#define ERR_TB_PENDING_MAX	256
#define EXC_FRAMES_MAX		64
#define EXC_TEXT_MAX		8192
#define EXC_CANDIDATES_MAX	16

struct exc_frame {
	char file[256];
	char function[128];
	int line;
};

struct exc_info {
	char type[128];
	char message[512];
	struct exc_frame frames[EXC_FRAMES_MAX];	/* of the last exception, outermost first */
	int n_frames;
	int chain;					/* exceptions in the chain, >= 1 */
	char text[EXC_TEXT_MAX];			/* the traceback as written */
	size_t text_len;
	uint64_t ts_ns;					/* CLOCK_MONOTONIC of the exception line */
	uint32_t pid, tid;
	bool ambiguous;
	int n_candidates;
	char candidates[EXC_CANDIDATES_MAX][H1_REQID_MAX];
};

struct err_stats {
	uint64_t events;		/* error events emitted */
	uint64_t tracebacks;		/* tracebacks recognised */
	uint64_t joined, ambiguous;
	uint64_t unjoined;		/* tracebacks with no error request close enough */
	uint64_t dropped;		/* held requests or tracebacks beyond the bounds */
	uint64_t log_bytes;
};

/*
 * Called for every error request once its traceback (if any) is settled: exc
 * may be NULL. Then the record goes on to the normal sinks.
 */
typedef void (*err_event_fn)(void *ctx, const struct record *r, const struct exc_info *exc);
/* A record released to the normal sinks (held or not). */
typedef void (*err_release_fn)(void *ctx, const struct record *r);

struct errors;

struct errors *errors__new(err_event_fn on_event, err_release_fn release, void *ctx);

/* Bytes a process wrote to fd 1 or 2: the first cap, then gap bytes not
 * captured, then the last tail_len (a long write's final lines, where the
 * exception line of a traceback is). */
void errors__log(struct errors *e, uint32_t pid, uint32_t tid, int fd, uint64_t ts_ns,
		 const uint8_t *data, size_t cap, uint64_t gap, const uint8_t *tail,
		 size_t tail_len);

/* A finished record: released at once, or held when it is an error. */
void errors__record(struct errors *e, const struct record *r);

/* Settle what is due at now_ns (CLOCK_MONOTONIC): end idle tracebacks, join,
 * release held records. Call after each ring drain. */
void errors__tick(struct errors *e, uint64_t now_ns);

/* A process exited: its log streams go (a traceback in progress is ended). */
void errors__forget(struct errors *e, uint32_t pid);

/* A traceback without a request: called with r == NULL by the event fn. */

const struct err_stats *errors__stats(const struct errors *e);

/* Release everything held (shutdown) and free. NULL-safe. */
void errors__free(struct errors *e);

/* Is r an error request (5xx, or no complete response)? */
bool record_is_error(const struct record *r);

/* Append the error event JSON of r (may be NULL) and exc (may be NULL). */
void error_event_json(const struct record *r, const struct exc_info *exc, const char *event_id,
		      struct jbuf *jb);

#endif
