/* SPDX-License-Identifier: MIT */
/*
 * client — outgoing calls (REC_CLIENT records) in the trace of the request
 * that made them, and the callee's request in the caller's trace when both
 * ends are observed here (docs/context.md).
 *
 * Parent. A call gets the trace id of the SERVER request it was made for,
 * that span as its parent, only when that owner is certain by the rule the
 * log records use (logs.h: the single request of the process in flight on
 * the calling thread, which has moved on since its last finished request).
 * Otherwise the link is left out and counted ("no_request", "ambiguous"):
 * the call starts a trace of its own, never a wrong one. A traceparent the
 * caller sent itself (an SDK in the app) is respected: the call takes its
 * trace id and parent id as its own ids, so the callee's span, which
 * continues that header, is its child.
 *
 * Stitching. Both ends of a same-node connection carry the same record.pair
 * and number their requests alike (record.conn_seq): the n-th call written
 * on a connection is the n-th request the callee read from it. When the
 * callee's request starts without a valid traceparent of its own, it takes
 * the call's trace id, the call's span as its parent and the call's
 * sampling decision. Both orders are handled: the callee's read can reach
 * obsd before the caller's write (two CPUs); then the callee's request waits
 * in a table until the call shows up, while it is still in flight ("late"),
 * and its own span is exported as it is if the call never comes. Both
 * tables are bounded (CLIENT_TABLE_MAX, CLIENT_PROBE probes) and hold only
 * requests in flight; overflows are counted, nothing is held for export.
 * A method/path mismatch between the ends refuses the match (counted).
 *
 * Peers. The first CLIENT_PEERS_MAX distinct callees (record.server) name
 * their calls' metric series; later ones are marked peer_other and counted,
 * as routes collapse past their cap.
 */
#ifndef OBS_CLIENT_H
#define OBS_CLIENT_H

#include <stdint.h>
#include "base/counters.h"
#include "conn/record.h"
#include "request/logs.h"
#include "request/sampler.h"

#define CLIENT_TABLE_MAX	1024	/* calls (and callee requests) waiting for their other end:
					   small, so that lookups stay in cache */
#define CLIENT_PROBE		32	/* slots probed per lookup */
#define CLIENT_PEERS_MAX	256	/* distinct callees named in metric labels; the rest
					   are "_other" (record.peer_other) */

enum client_stitch {
	STITCH_OK,		/* the callee's request continued the call's trace */
	STITCH_LATE,		/* ... after it started (the caller's write came second) */
	STITCH_TRACEPARENT,	/* the callee's request had a traceparent of its own: it wins */
	STITCH_MISMATCH,	/* method or path differ at the two ends: refused */
	STITCH_NO_CALLER,	/* a same-node peer whose call was not seen */
	STITCH_NO_CALLEE,	/* a call to a same-node server that is not observed */
	STITCH_KINDS
};

struct client_stats {
	uint64_t calls[REC_LINK_KINDS];		/* CLIENT records by link */
	uint64_t own_context;			/* calls with the caller's own traceparent */
	uint64_t stitch[STITCH_KINDS];
	uint64_t table_full[2];			/* [0] calls, [1] callee requests not kept */
	uint64_t pending[2];			/* now in the tables */
	uint64_t peers_collapsed;		/* calls whose peer label is "_other" */
};

struct clients;

/* NULL with errno set. */
struct clients *clients__new(void);

/*
 * A CLIENT record r started (its request head was written): link is what
 * logs__link says of the calling thread at that moment. Sets r's link,
 * trace id, span id, parent and sampling, and peer_other; stitches a callee
 * request that started first.
 */
void clients__start(struct clients *cl, struct record *r, const struct log_link *link,
		    const struct sampler *s);

/* A CLIENT record is done: it no longer waits for its callee. */
void clients__done(struct clients *cl, const struct record *r);

/* A SERVER record r started (start_record done): continue its caller's
 * trace when the call is known, else wait for it. Costs nothing when
 * r->pair is 0 (a peer on another node). */
void clients__server_start(struct clients *cl, struct record *r);

/* A SERVER record is done: r stops waiting (it must, before it is freed). */
void clients__server_done(struct clients *cl, const struct record *r);

const struct client_stats *clients__stats(const struct clients *cl);

/* The obs_client_* and obs_stitch_* families (counters.h) of a stats copy. */
void client_stats__counters(const struct client_stats *st, struct counter_visit *v);

/* NULL-safe. */
void clients__free(struct clients *cl);

#endif
