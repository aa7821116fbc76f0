// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/ids.h"
#include "request/client.h"
#include "request/trust.h"

/* One end waiting for the other, keyed by (pair, conn_seq). */
struct slot {
	uint64_t pair;
	uint32_t seq;
	uint8_t state;		/* SLOT_* */
	bool sampled;
	uint64_t what;		/* hash of method and path, to refuse a mismatch */
	uint8_t trace_id[16];	/* calls: the call's ids */
	uint8_t span_id[8];
	struct record *r;	/* callee requests: the record, valid until server_done */
};

enum { SLOT_EMPTY = 0, SLOT_USED = 1 };
enum { T_CALLS = 0, T_WAITS = 1 };

#define PEER_SLOTS	(2 * CLIENT_PEERS_MAX)

#define CALLER_SLOTS	1024	/* direct-mapped: connections with an observed caller */

struct clients {
	struct slot t[2][CLIENT_TABLE_MAX];	/* [T_CALLS] calls, [T_WAITS] callee requests */
	uint64_t callers[CALLER_SLOTS];		/* pair keys whose client end made a call */
	char peers[PEER_SLOTS][REC_SERVER_MAX];	/* distinct callees, open addressing */
	int n_peers;
	struct client_stats st;
};

_Static_assert((CLIENT_TABLE_MAX & (CLIENT_TABLE_MAX - 1)) == 0, "a power of two");

struct clients *clients__new(void)
{
	return calloc(1, sizeof(struct clients));
}

void clients__free(struct clients *cl)
{
	free(cl);
}

const struct client_stats *clients__stats(const struct clients *cl)
{
	return &cl->st;
}

static size_t slot_hash(uint64_t pair, uint32_t seq)
{
	uint64_t h = pair ^ ((uint64_t)seq * 0x9e3779b97f4a7c15ull);

	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ull;
	h ^= h >> 32;
	return h & (CLIENT_TABLE_MAX - 1);
}

/* FNV-1a of method and path: the two ends parsed the same bytes. */
static uint64_t what_of(const struct record *r)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (const char *s = r->method; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	h = (h ^ ' ') * 0x100000001b3ull;
	for (const char *s = r->path; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h;
}

static struct slot *slot_find(struct clients *cl, int t, uint64_t pair, uint32_t seq)
{
	size_t h;

	/* an empty table: no probe at all (a random slot is a cache miss, and
	 * most requests of a same-node peer have nothing waiting for them) */
	if (!cl->st.pending[t])
		return NULL;
	h = slot_hash(pair, seq);

	for (int i = 0; i < CLIENT_PROBE; i++) {
		struct slot *s = &cl->t[t][(h + i) & (CLIENT_TABLE_MAX - 1)];

		if (s->state == SLOT_EMPTY)
			return NULL;
		if (s->state == SLOT_USED && s->pair == pair && s->seq == seq)
			return s;
	}
	return NULL;
}

/* A free slot for (pair, seq), or NULL (counted) when its probe run is full. */
static struct slot *slot_add(struct clients *cl, int t, uint64_t pair, uint32_t seq)
{
	size_t h = slot_hash(pair, seq);

	for (int i = 0; i < CLIENT_PROBE; i++) {
		struct slot *s = &cl->t[t][(h + i) & (CLIENT_TABLE_MAX - 1)];

		if (s->state == SLOT_EMPTY) {
			s->state = SLOT_USED;
			s->pair = pair;
			s->seq = seq;
			cl->st.pending[t]++;
			return s;
		}
	}
	cl->st.table_full[t]++;
	return NULL;
}

/*
 * Remove slot s: the entries after it in its run move back into the hole when
 * that brings them no farther from their home slot (backward-shift deletion).
 * No tombstones, so a lookup stops at the first empty slot: with tombstones
 * every lookup had come to probe CLIENT_PROBE slots once a table had turned
 * over (a tenth of obsd's CPU per request in make bench).
 */
static void slot_del(struct clients *cl, int t, struct slot *s)
{
	const size_t mask = CLIENT_TABLE_MAX - 1;
	struct slot *tab = cl->t[t];
	size_t hole = s - tab, j = hole;

	cl->st.pending[t]--;
	for (;;) {
		size_t home;

		j = (j + 1) & mask;
		if (tab[j].state != SLOT_USED)
			break;
		home = slot_hash(tab[j].pair, tab[j].seq);
		if (((j - home) & mask) >= ((j - hole) & mask)) {
			tab[hole] = tab[j];
			hole = j;
		}
	}
	memset(&tab[hole], 0, sizeof(tab[hole]));	/* SLOT_EMPTY */
}

/* The callee's request r continues the call's trace: its parent is the call. */
static void continue_call(struct record *r, const uint8_t trace_id[16], const uint8_t span_id[8],
			  bool sampled)
{
	memcpy(r->trace_id, trace_id, 16);
	memcpy(r->parent_span_id, span_id, 8);
	r->has_parent = true;
	r->sampled = sampled;
	r->tracestate[0] = 0;
}

/* The call's ids: its own traceparent, else its owner's trace, else a new one. */
static void call_ids(struct clients *cl, struct record *r, const struct log_link *link,
		     const struct sampler *smp)
{
	bool sampled = false;

	r->link = link->kind == LOG_LINKED	   ? REC_LINKED :
		  link->kind == LOG_NO_REQUEST ? REC_LINK_NO_REQUEST : REC_LINK_AMBIGUOUS;
	cl->st.calls[r->link]++;
	if (r->traceparent[0] &&
	    ids_parse_traceparent(r->traceparent, r->trace_id, r->span_id, &sampled)) {
		/* an SDK in the app made its own span: the callee sees its id
		 * as parent, so this call is that span */
		r->own_context = true;
		r->sampled = sampled;
		cl->st.own_context++;
		if (r->link == REC_LINKED && !memcmp(link->trace_id, r->trace_id, 16)) {
			memcpy(r->parent_span_id, link->span_id, 8);
			r->has_parent = true;
		}
		return;
	}
	r->tracestate[0] = 0;
	ids_random(r->span_id, sizeof(r->span_id));
	if (r->link == REC_LINKED) {
		memcpy(r->trace_id, link->trace_id, 16);
		memcpy(r->parent_span_id, link->span_id, 8);
		r->has_parent = true;
		r->sampled = link->sampled;
	} else {
		ids_random(r->trace_id, sizeof(r->trace_id));
		r->sampled = sampler_decide(smp, r->trace_id, false, false);
	}
}

/* Is peer one of the first CLIENT_PEERS_MAX distinct callees? */
static bool peer_known(struct clients *cl, const char *peer)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (const char *p = peer; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	for (int i = 0; i < PEER_SLOTS; i++) {
		char *e = cl->peers[(h + i) % PEER_SLOTS];

		if (!e[0]) {
			if (cl->n_peers >= CLIENT_PEERS_MAX)
				return false;
			snprintf(e, REC_SERVER_MAX, "%s", peer[0] ? peer : "?");
			cl->n_peers++;
			return true;
		}
		if (!strcmp(e, peer[0] ? peer : "?"))
			return true;
	}
	return false;
}

void clients__start(struct clients *cl, struct record *r, const struct log_link *link,
		    const struct sampler *smp)
{
	struct slot *s;

	r->peer_other = !peer_known(cl, r->server);
	cl->st.peers_collapsed += r->peer_other;

	if (r->x_request_id[0] && request_id_valid(r->x_request_id))
		memcpy(r->request_id, r->x_request_id, sizeof(r->request_id));
	else
		r->request_id[0] = 0;
	call_ids(cl, r, link, smp);
	if (!r->pair || !r->conn_seq)
		return;
	cl->callers[slot_hash(r->pair, 0) & (CALLER_SLOTS - 1)] = r->pair;
	s = slot_find(cl, T_WAITS, r->pair, r->conn_seq);
	if (s) {	/* the callee read it first: it is still in flight */
		if (s->what == what_of(r)) {
			continue_call(s->r, r->trace_id, r->span_id, r->sampled);
			cl->st.stitch[STITCH_LATE]++;
		} else {
			cl->st.stitch[STITCH_MISMATCH]++;
		}
		slot_del(cl, T_WAITS, s);
		return;
	}
	s = slot_add(cl, T_CALLS, r->pair, r->conn_seq);
	if (!s)
		return;
	s->what = what_of(r);
	s->sampled = r->sampled;
	memcpy(s->trace_id, r->trace_id, 16);
	memcpy(s->span_id, r->span_id, 8);
}

void clients__done(struct clients *cl, const struct record *r)
{
	struct slot *s;

	if (!r->pair || !r->conn_seq)
		return;
	s = slot_find(cl, T_CALLS, r->pair, r->conn_seq);
	if (s) {
		cl->st.stitch[STITCH_NO_CALLEE]++;
		slot_del(cl, T_CALLS, s);
	}
}

void clients__server_start(struct clients *cl, struct record *r)
{
	struct slot *s;

	if (!r->pair || !r->conn_seq)
		return;
	s = slot_find(cl, T_CALLS, r->pair, r->conn_seq);
	if (s) {
		if (r->has_parent)	/* an incoming traceparent wins */
			cl->st.stitch[STITCH_TRACEPARENT]++;
		else if (s->what != what_of(r))
			cl->st.stitch[STITCH_MISMATCH]++;
		else {
			continue_call(r, s->trace_id, s->span_id, s->sampled);
			cl->st.stitch[STITCH_OK]++;
		}
		slot_del(cl, T_CALLS, s);
		return;
	}
	if (r->has_parent)
		return;
	/* Only a connection's first request can see its call arrive late
	 * without an earlier call having shown the caller: a client obs does
	 * not observe (a load generator on this node) costs one wait per
	 * connection, not one per request. (A caller evicted from the cache
	 * by another costs a late stitch, counted on its side as no_callee.) */
	if (r->conn_seq > 1 &&
	    cl->callers[slot_hash(r->pair, 0) & (CALLER_SLOTS - 1)] != r->pair)
		return;
	s = slot_add(cl, T_WAITS, r->pair, r->conn_seq);
	if (s) {
		s->what = what_of(r);
		s->r = r;
	}
}

void clients__server_done(struct clients *cl, const struct record *r)
{
	struct slot *s;

	if (!r->pair || !r->conn_seq)
		return;
	s = slot_find(cl, T_WAITS, r->pair, r->conn_seq);
	if (s && s->r == r) {
		cl->st.stitch[STITCH_NO_CALLER]++;
		slot_del(cl, T_WAITS, s);
	}
}

void client_stats__counters(const struct client_stats *st, struct counter_visit *v)
{
	static const char *const stitch_names[STITCH_KINDS] = {
		[STITCH_OK] = "stitched", [STITCH_LATE] = "late",
		[STITCH_TRACEPARENT] = "traceparent", [STITCH_MISMATCH] = "mismatch",
		[STITCH_NO_CALLER] = "no_caller", [STITCH_NO_CALLEE] = "no_callee",
	};
	counter_family(v, "obs_client_spans_total", "counter",
		       "Outgoing HTTP calls (CLIENT spans), by how their parent request was found");
	for (int k = REC_LINKED; k < REC_LINK_KINDS; k++)
		counter_u64(v, st->calls[k], "link", record_link_name(k), NULL, NULL);
	counter_family(v, "obs_client_spans_own_context_total", "counter",
		       "Outgoing calls that carried the caller's own traceparent (respected)");
	counter_u64(v, st->own_context, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_stitch_total", "counter",
		       "Requests between two observed processes of this node, by how their traces were joined");
	for (int k = 0; k < STITCH_KINDS; k++)
		counter_u64(v, st->stitch[k], "result", stitch_names[k], NULL, NULL);
	counter_family(v, "obs_stitch_table_full_total", "counter",
		       "Calls or callee requests that could not wait for their other end: table full");
	counter_u64(v, st->table_full[T_CALLS], "table", "calls", NULL, NULL);
	counter_u64(v, st->table_full[T_WAITS], "table", "callees", NULL, NULL);
	counter_family(v, "obs_client_peers_collapsed_total", "counter",
		       "Outgoing calls counted as peer=\"_other\": past the distinct-peer cap");
	counter_u64(v, st->peers_collapsed, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_stitch_pending", "gauge",
		       "Calls and callee requests in flight waiting for their other end");
	counter_u64(v, st->pending[T_CALLS], "table", "calls", NULL, NULL);
	counter_u64(v, st->pending[T_WAITS], "table", "callees", NULL, NULL);
}
