// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "conn/conn.h"
#include "proto/h2.h"

#define CONN_BUCKETS_MIN	1024
#define CONN_FIN_HELD_MAX	8	/* responses written after the client's FIN, held */
#define CONN_CLOSING_MAX	1024	/* closed connections waiting for a late RST */
#define CONN_LINGER_NS		(200ull * 1000000ull)
#define PEER_CACHE		64	/* UNIX peer names remembered, by pid */

_Static_assert(REC_SERVER_MAX >= OBS_UNIX_PATH_LEN, "a UNIX socket path must fit record.server");
#define REC_POOL_MAX		64	/* finished records kept for reuse */
#define CONN_POOL_MAX		64	/* closed connections kept for reuse */

/* conn.flags */
enum {
	CONN_PEER_FIN	= 1u << 0,
	CONN_RESET	= 1u << 1,
	CONN_NO_OPEN	= 1u << 2,
	CONN_UPGRADED	= 1u << 3,
	CONN_TOLD_GONE	= 1u << 4,	/* DISCONNECTED already reported */
	CONN_SRV_FIN	= 1u << 5,	/* outgoing call: the server half-closed */
	CONN_SRV_RESET	= 1u << 6,	/* outgoing call: the server reset */
};

struct conn {
	struct conn *next;		/* hash chain */
	struct conn_table *t;
	uint64_t id;
	uint64_t ino;			/* the socket's inode, 0 if its open event was lost */
	uint64_t last_ns;		/* last event, CLOCK_MONOTONIC */
	uint32_t pid, fd, last_seq, flags;
	uint32_t seg_tid;		/* thread of the segment being fed */
	uint16_t lport;
	uint8_t transport;		/* enum rec_transport */
	uint32_t peer_pid;		/* UNIX: the client process */
	bool tls;
	bool h2_from_start;		/* prior knowledge / ALPN h2: no HTTP/1 at all */
	bool outgoing;			/* the client end of an outgoing call (OBS_OPEN_CLIENT):
					   requests are written, responses read */
	bool seq_broken;		/* request order unsure once: conn_seq is 0 from then on */
	uint32_t n_req;			/* request heads numbered so far (record.conn_seq) */
	uint64_t pair;			/* record.pair of its requests */
	/* Request bytes were skipped or lost: unseen requests may sit in the
	 * pipeline, so responses cannot be paired by order until it drains. */
	bool req_desync;
	bool loss_one;			/* exactly one event was lost, direction unknown yet */
	uint32_t owed;			/* answers that may still come for requests given up */
	uint64_t seg_ts;		/* time of the segment being fed */
	uint64_t msg_start[2];		/* first-byte time of the message in progress, [dir] */
	uint64_t seg_arrival;		/* arrival of the request segment being fed (0: unknown) */
	uint64_t msg_arrival;		/* arrival of the request in progress's first byte */
	struct record **q;		/* requests awaiting their final response, FIFO */
	size_t q_head, q_len, q_cap;
	struct record *cur_req;		/* request whose head is parsed, body still arriving */
	struct record *cur_resp;	/* record whose final response is being written */
	/* Responses completed after the client's FIN: delivered only if no RST
	 * answers them (a client that closed instead of half-closing resets). */
	struct record *fin_held[CONN_FIN_HELD_MAX];
	int n_fin_held;
	const char *close_why;		/* set while closing: waiting for a late RST */
	uint64_t close_deadline;
	char comm[OBS_COMM_LEN];
	uint8_t client_addr[16];	/* v4-mapped for IPv4 */
	char client[REC_ADDR_MAX];
	char server[REC_SERVER_MAX];
	char ident[CONN_IDENT_MAX];	/* comm, client, server packed for events */
	uint8_t ident_len;
	struct h1_parser p[2];		/* [OBS_DIR_IN] requests, [OBS_DIR_OUT] responses */
	/* HTTP/2 (prior knowledge, ALPN h2, or h2c after a 101): */
	struct h2_conn *h2;
	struct h2_stream_rec {
		uint32_t id;
		struct record *r;
	} *streams;			/* records of open streams, unordered */
	size_t n_streams, streams_cap;
	bool h2c_pending;		/* a 101 answering "Upgrade: h2c" is being written */
};

struct conn_table {
	struct conn **buckets;
	size_t n_buckets, n_conns;
	struct conn *closing[CONN_CLOSING_MAX];	/* closed, answers held for a RST */
	size_t n_closing;
	conn_event_fn fn;
	void *ctx;
	struct conn_stats st;
	struct peer_name {		/* UNIX peers' names, direct-mapped by pid */
		uint32_t pid;
		uint64_t read_ns;	/* when /proc/PID/comm was read */
		char name[REC_ADDR_MAX];
	} peers[PEER_CACHE];
	struct record *pool[REC_POOL_MAX];	/* finished records, for reuse */
	size_t n_pool;
	struct conn *conn_pool[CONN_POOL_MAX];	/* closed connections, for reuse */
	size_t n_conn_pool;
};

static const struct h1_callbacks req_cb, resp_cb;
static const struct h2_callbacks h2_cb;
static bool stream_put(struct conn *c, uint32_t id, struct record *r);

/* ---- hash table ---- */

static size_t bucket_of(const struct conn_table *t, uint64_t id)
{
	id ^= id >> 33;
	id *= 0xff51afd7ed558ccdull;
	id ^= id >> 33;
	return id & (t->n_buckets - 1);
}

static struct conn *conn_find(struct conn_table *t, uint64_t id)
{
	struct conn *c;

	for (c = t->buckets[bucket_of(t, id)]; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

static void table_grow(struct conn_table *t)
{
	size_t old_n = t->n_buckets;
	struct conn **old = t->buckets, **nb = calloc(old_n * 2, sizeof(*nb));

	if (!nb)
		return;	/* keep the longer chains; still correct */
	t->buckets = nb;
	t->n_buckets = old_n * 2;
	for (size_t i = 0; i < old_n; i++) {
		struct conn *c = old[i], *next;

		for (; c; c = next) {
			size_t b = bucket_of(t, c->id);

			next = c->next;
			c->next = nb[b];
			nb[b] = c;
		}
	}
	free(old);
}

static void table_unlink(struct conn_table *t, struct conn *c)
{
	struct conn **pp = &t->buckets[bucket_of(t, c->id)];

	for (; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			t->n_conns--;
			return;
		}
	}
}

/* ---- request queue ---- */

static bool q_push(struct conn *c, struct record *r)
{
	if (c->q_len == c->q_cap) {
		size_t cap = c->q_cap ? c->q_cap * 2 : 4;
		struct record **q = malloc(cap * sizeof(*q));

		if (!q) {
			c->t->st.records_dropped[CONN_DROP_NO_MEMORY]++;
			return false;
		}
		for (size_t i = 0; i < c->q_len; i++)
			q[i] = c->q[(c->q_head + i) % c->q_cap];
		free(c->q);
		c->q = q;
		c->q_cap = cap;
		c->q_head = 0;
	}
	c->q[(c->q_head + c->q_len) % c->q_cap] = r;
	c->q_len++;
	c->t->st.requests_in_flight += !c->outgoing;	/* served requests only */
	return true;
}

static struct record *q_front(struct conn *c)
{
	return c->q_len ? c->q[c->q_head] : NULL;
}

static void q_pop(struct conn *c)
{
	c->q_head = (c->q_head + 1) % c->q_cap;
	c->q_len--;
	c->t->st.requests_in_flight -= !c->outgoing;
}

/* ---- events ---- */

static void emit(struct conn *c, enum conn_ev_type type, struct record *r, const char *reason)
{
	struct conn_event e = {
		.type = type, .ts_ns = c->seg_ts, .conn_id = c->id, .pid = c->pid,
		.lport = c->lport, .transport = c->transport, .comm = c->comm,
		.client = c->client, .server = c->server,
		.ident = c->ident, .ident_len = c->ident_len,
		.r = r, .reason = reason, .in_flight = c->q_len + (c->cur_resp ? 1 : 0),
		.outgoing = c->outgoing,
	};

	if (c->t->fn)
		c->t->fn(c->t->ctx, &e);
}

/* ---- records ---- */

size_t conn_ident_pack(char *out, const char *comm, const char *client, const char *server)
{
	char *o = out;

	o = pack_arr(o, comm, OBS_COMM_LEN);
	o = pack_arr(o, client, REC_ADDR_MAX);
	o = pack_arr(o, server, REC_SERVER_MAX);
	return o - out;
}

/* comm, client or server changed: pack them again for the events. */
static void conn_ident(struct conn *c)
{
	_Static_assert(sizeof(c->comm) == OBS_COMM_LEN && sizeof(c->client) == REC_ADDR_MAX &&
		       sizeof(c->server) == REC_SERVER_MAX, "conn_ident_pack's arrays");
	c->ident_len = conn_ident_pack(c->ident, c->comm, c->client, c->server);
}

/* The two decimal digits of 0 to 99, in order. */
static const char digits2[201] =
	"000102030405060708091011121314151617181920212223242526272829"
	"303132333435363738394041424344454647484950515253545556575859"
	"606162636465666768697071727374757677787980818283848586878889"
	"90919293949596979899";

/* Decimal v at o; returns the end. Two digits at a time from digits2. */
static char *put_u16(char *o, unsigned int v)
{
	if (v < 10) {
		*o = '0' + v;
		return o + 1;
	}
	if (v < 100) {
		memcpy(o, digits2 + 2 * v, 2);
		return o + 2;
	}
	if (v < 1000) {
		*o = '0' + v / 100;
		memcpy(o + 1, digits2 + 2 * (v % 100), 2);
		return o + 3;
	}
	if (v >= 10000) {
		*o++ = '0' + v / 10000;
		v %= 10000;
		memcpy(o, digits2 + 2 * (v / 100), 2);
		memcpy(o + 2, digits2 + 2 * (v % 100), 2);
		return o + 4;
	}
	memcpy(o, digits2 + 2 * (v / 100), 2);
	memcpy(o + 2, digits2 + 2 * (v % 100), 2);
	return o + 4;
}

/* "a.b.c.d" of the IPv4 address at a, as inet_ntop writes it; returns the end. */
static char *put_ipv4(char *o, const uint8_t *a)
{
	for (int i = 0; i < 4; i++) {
		if (i)
			*o++ = '.';
		o = put_u16(o, a[i]);
	}
	return o;
}

/*
 * "ip:port", or "[ipv6]:port", into out[REC_ADDR_MAX]. IPv4 is written by
 * hand: inet_ntop and snprintf cost a connection more than 5,000
 * instructions, a third of what obsd did for a connection per request.
 */
_Static_assert(REC_ADDR_MAX >= 1 + INET6_ADDRSTRLEN + sizeof("]:65535") - 1,
	       "an address and its port fit");

static void format_addr(char *out, uint16_t family, const uint8_t *addr, uint16_t port)
{
	static const uint8_t v4mapped[12] = { [10] = 0xff, [11] = 0xff };
	char ip[INET6_ADDRSTRLEN] = "?", *o = out;

	if (family == AF_INET || !memcmp(addr, v4mapped, 12)) {
		o = put_ipv4(o, family == AF_INET ? addr : addr + 12);
	} else {
		inet_ntop(AF_INET6, addr, ip, sizeof(ip));
		*o++ = '[';
		o = stpcpy(o, ip);
		*o++ = ']';
	}
	*o++ = ':';
	o = put_u16(o, port);
	*o = 0;
}

/* A cleared record: from the pool when it has one (no allocation, and only
 * the first byte of each string written, see record__clear). */
static struct record *record_alloc(struct conn_table *t)
{
	struct record *r = t->n_pool ? t->pool[--t->n_pool] : malloc(sizeof(*r));

	if (r)
		record__clear(r);
	return r;
}

static void record_free(struct conn_table *t, struct record *r)
{
	if (r && t->n_pool < REC_POOL_MAX)
		t->pool[t->n_pool++] = r;
	else
		free(r);
}

static struct record *record_new(struct conn *c, uint64_t start_ns)
{
	struct record *r = record_alloc(c->t);

	if (!r) {
		c->t->st.records_dropped[CONN_DROP_NO_MEMORY]++;
		return NULL;
	}
	r->conn_id = c->id;
	r->pid = c->pid;
	r->tid = c->seg_tid;
	r->start_ns = start_ns;
	r->queue_ns = -1;
	r->grpc_status = -1;
	r->error = "";
	if (c->flags & CONN_NO_OPEN)
		r->flags |= RECF_NO_OPEN;
	memcpy(r->comm, c->comm, sizeof(r->comm));
	r->lport = c->lport;
	r->transport = c->transport;
	r->peer_pid = c->peer_pid;
	r->tls = c->tls;
	r->kind = c->outgoing ? REC_CLIENT : REC_SERVER;
	r->pair = c->pair;
	memcpy(r->client_addr, c->client_addr, sizeof(r->client_addr));
	memcpy(r->client, c->client, sizeof(r->client));
	memcpy(r->server, c->server, sizeof(r->server));
	return r;
}

static uint32_t mflags_to_rec(unsigned mflags)
{
	return (mflags & H1M_TRUNCATED ? RECF_TRUNCATED : 0) |
	       (mflags & H1M_INFERRED ? RECF_INFERRED : 0) | (mflags & H1M_LOST ? RECF_LOST : 0);
}

/* Hand r to the sink and free it. r must be out of the queue already. */
static void record_done(struct conn *c, struct record *r, enum rec_outcome outcome,
			const char *error)
{
	r->outcome = outcome;
	r->error = outcome == REC_OK ? "" : error;
	if (outcome != REC_OK && !strcmp(error, ERR_LOST))
		r->flags |= RECF_LOST;
	if (!r->end_ns)
		r->end_ns = c->seg_ts;
	if (outcome == REC_OK)
		c->t->st.records_ok++;
	else
		c->t->st.records_failed++;
	if (c->cur_req == r)
		c->cur_req = NULL;
	if (c->cur_resp == r)
		c->cur_resp = NULL;
	emit(c, CONN_EV_REQ_DONE, r, NULL);
	record_free(c->t, r);
}

/* Settle responses written after the client's FIN: a RST since means the
 * client had closed and never read them. */
static void settle_fin_held(struct conn *c)
{
	for (int i = 0; i < c->n_fin_held; i++) {
		if (c->flags & CONN_RESET)
			record_done(c, c->fin_held[i], REC_FAILED, ERR_CLIENT_CLOSED);
		else
			record_done(c, c->fin_held[i], REC_OK, "");
	}
	c->n_fin_held = 0;
}

/* Fail every request still waiting for its response. */
static void fail_pending(struct conn *c, const char *why)
{
	struct record *r;

	settle_fin_held(c);
	while ((r = q_front(c))) {
		q_pop(c);
		record_done(c, r, REC_FAILED, why);
		c->owed++;	/* its answer may still be written */
	}
	if (c->cur_resp) {	/* an unmatched response in progress */
		r = c->cur_resp;
		record_done(c, r, REC_FAILED, why);
	}
}

static const char *close_reason(const struct conn *c)
{
	if (c->outgoing)	/* an outgoing call: the peer is the server */
		return c->flags & CONN_SRV_RESET ? ERR_SERVER_RESET :
		       c->flags & CONN_SRV_FIN	 ? ERR_SERVER_CLOSED : ERR_CLIENT_CLOSED;
	if (c->flags & CONN_RESET)
		return ERR_CLIENT_RESET;
	if (c->flags & CONN_PEER_FIN)
		return ERR_CLIENT_CLOSED;
	return ERR_SERVER_CLOSED;
}

/* A response written to a client that had reset: after a FIN, the client had
 * closed and its kernel answered the response with RST. */
static const char *close_reason_written(const struct conn *c)
{
	return c->flags & CONN_PEER_FIN ? ERR_CLIENT_CLOSED : ERR_CLIENT_RESET;
}

/* ---- request parser callbacks ---- */

static enum h1_body_hint req_on_head(void *ctx, const struct h1_head *h)
{
	struct conn *c = ctx;
	struct record *r = record_new(c, c->msg_start[OBS_DIR_IN]);

	if (!r)
		return H1_BODY_DEFAULT;
	if (c->msg_arrival && c->msg_arrival <= r->start_ns)
		r->queue_ns = (int64_t)(r->start_ns - c->msg_arrival);
	record__from_head(r, h);
	/* the n-th request on each end of a connection is the same one, as long
	 * as neither end lost or skipped any (calls are matched by it) */
	if (c->req_desync || (c->flags & CONN_NO_OPEN))
		c->seq_broken = true;
	r->conn_seq = c->seq_broken ? 0 : ++c->n_req;
	if (!q_push(c, r)) {
		record_free(c->t, r);
		return H1_BODY_DEFAULT;
	}
	c->cur_req = r;
	r->behind_gap = c->req_desync;
	emit(c, CONN_EV_REQ_STARTED, r, NULL);
	return H1_BODY_DEFAULT;
}

static void req_on_message(void *ctx, const struct h1_head *h, uint64_t bytes, unsigned mflags)
{
	struct conn *c = ctx;

	c->msg_start[OBS_DIR_IN] = c->seg_ts;
	c->msg_arrival = c->seg_arrival;
	/* A head whose end was guessed in uncaptured bytes: more requests may
	 * hide there, so later ones cannot be paired by order for sure. */
	if (mflags & (H1M_INFERRED | H1M_TRUNCATED | H1M_LOST))
		c->req_desync = true;
	if (!c->cur_req)
		return;
	c->cur_req->bytes_in = bytes;
	c->cur_req->flags |= mflags_to_rec(mflags);
	c->cur_req = NULL;
}

static void req_on_error(void *ctx, enum h1_error err)
{
	struct conn *c = ctx;

	if (err < H1E_MAX)
		c->t->st.parse_errors[OBS_DIR_IN][err]++;
	c->req_desync = true;
	c->msg_start[OBS_DIR_IN] = c->seg_ts;
	c->msg_arrival = c->seg_arrival;
}

static void req_on_incomplete(void *ctx, const struct h1_head *h, uint64_t bytes)
{
	struct conn *c = ctx;

	if (!h)
		c->t->st.incomplete_requests++;
	else if (c->cur_req)	/* stays queued and fails with the connection */
		c->cur_req->bytes_in = bytes;
}

/* ---- response parser callbacks ---- */

static enum h1_body_hint resp_on_head(void *ctx, const struct h1_head *h)
{
	struct conn *c = ctx;
	struct record *r = q_front(c);
	uint64_t first = c->msg_start[OBS_DIR_OUT];

	if (h->status >= 100 && h->status < 200 && h->status != 101) {
		if (r && !r->resp_start_ns && !r->behind_gap)
			r->resp_start_ns = first;
		return H1_BODY_DEFAULT;	/* interim: the final response follows */
	}
	if (r && r->behind_gap) {
		/* This may answer a request we never saw: pairing it (or any later
		 * one) by order could be wrong. Give up on those, honestly. */
		while ((r = q_front(c)) && r->behind_gap) {
			q_pop(c);
			record_done(c, r, REC_FAILED, ERR_LOST);
			c->owed++;
		}
		r = q_front(c);
	}
	if (!r) {	/* this answer may be one owed to a request given up */
		if (c->owed)
			c->owed--;
		if (!c->owed)	/* the pipeline drained: order is certain again */
			c->req_desync = false;
	}
	if (r) {
		q_pop(c);
	} else {
		/* A response to a request we could not parse: report it, flagged. */
		r = record_new(c, first);
		if (!r)
			return H1_BODY_DEFAULT;
		r->flags |= RECF_UNMATCHED;
		r->version_minor = h->version_minor;
		emit(c, CONN_EV_REQ_STARTED, r, NULL);
	}
	c->cur_resp = r;
	r->status = h->status;
	if (!r->resp_start_ns)
		r->resp_start_ns = first;
	if (h->x_request_id[0]) {	/* the server's own: the pipeline makes it the id */
		memcpy(r->x_request_id, h->x_request_id, sizeof(r->x_request_id));
		r->flags |= RECF_SERVER_REQID;
	}
	c->h2c_pending = h->status == 101 && !strcasecmp(h->upgrade, "h2c");
	if (h->status == 101 || (!strcmp(r->method, "CONNECT") && h->status < 300)) {
		c->flags |= CONN_UPGRADED;
		c->p[OBS_DIR_IN].stopped = true;
		return H1_BODY_STOP;
	}
	if (!strcmp(r->method, "HEAD"))
		return H1_BODY_NONE;
	return H1_BODY_DEFAULT;
}

static void resp_on_message(void *ctx, const struct h1_head *h, uint64_t bytes, unsigned mflags)
{
	struct conn *c = ctx;
	struct record *r = c->cur_resp;

	c->msg_start[OBS_DIR_OUT] = c->seg_ts;
	if (!r) {	/* an interim 1xx: its bytes belong to the waiting request */
		r = q_front(c);
		if (r)
			r->bytes_out += bytes;
		return;
	}
	r->bytes_out += bytes;
	r->flags |= mflags_to_rec(mflags);
	r->end_ns = c->seg_ts;
	if (c->h2c_pending && !c->h2) {
		/* h2c: the request goes on as stream 1 of the HTTP/2 connection */
		c->h2 = h2__new(&h2_cb, c, false);
		c->cur_resp = NULL;
		r->status = 0;
		r->http2 = true;
		if (c->h2 && stream_put(c, 1, r))
			return;
	}
	if (r == c->cur_req) {	/* answered before its body was read */
		r->bytes_in = c->p[OBS_DIR_IN].msg_bytes;
		c->cur_req = NULL;
	}
	if ((mflags & (H1M_INFERRED | H1M_LOST)) && c->q_len) {
		/* Its end was guessed in uncaptured bytes, which may also hold the
		 * answers to the requests queued behind it: pairing by order is
		 * unsure until the pipeline drains. */
		struct record *q;

		while ((q = q_front(c))) {
			q_pop(c);
			record_done(c, q, REC_FAILED, ERR_LOST);
		}
		c->req_desync = true;
	}
	if (mflags & H1M_LOST) {
		record_done(c, r, REC_FAILED, ERR_LOST);
	} else if (c->flags & CONN_RESET) {
		/* On loopback the peer's RST to this very write is seen before it. */
		record_done(c, r, REC_FAILED, close_reason_written(c));
	} else if ((c->flags & CONN_PEER_FIN) && c->n_fin_held < CONN_FIN_HELD_MAX) {
		c->cur_resp = NULL;
		c->fin_held[c->n_fin_held++] = r;
	} else {
		record_done(c, r, REC_OK, "");
	}
}

static void resp_on_error(void *ctx, enum h1_error err)
{
	struct conn *c = ctx;

	if (err < H1E_MAX)
		c->t->st.parse_errors[OBS_DIR_OUT][err]++;
	c->msg_start[OBS_DIR_OUT] = c->seg_ts;
}

static void resp_on_incomplete(void *ctx, const struct h1_head *h, uint64_t bytes)
{
	struct conn *c = ctx;
	struct record *r = c->cur_resp;

	if (!r || !h)
		return;
	r->bytes_out += bytes;
	record_done(c, r, REC_FAILED, ERR_RESP_INCOMPLETE);
}

static const struct h1_callbacks req_cb = {
	.on_head = req_on_head,
	.on_message = req_on_message,
	.on_error = req_on_error,
	.on_incomplete = req_on_incomplete,
};

static const struct h1_callbacks resp_cb = {
	.on_head = resp_on_head,
	.on_message = resp_on_message,
	.on_error = resp_on_error,
	.on_incomplete = resp_on_incomplete,
};

/* ---- HTTP/2 streams ---- */

static struct record **stream_slot(struct conn *c, uint32_t id)
{
	for (size_t i = 0; i < c->n_streams; i++)
		if (c->streams[i].id == id)
			return &c->streams[i].r;
	return NULL;
}

static bool stream_put(struct conn *c, uint32_t id, struct record *r)
{
	if (c->n_streams == c->streams_cap) {
		size_t cap = c->streams_cap ? c->streams_cap * 2 : 8;
		struct h2_stream_rec *s;

		if (cap > H2_MAX_STREAMS) {
			c->t->st.records_dropped[CONN_DROP_H2_STREAMS]++;
			return false;
		}
		s = realloc(c->streams, cap * sizeof(*s));
		if (!s) {
			c->t->st.records_dropped[CONN_DROP_NO_MEMORY]++;
			return false;
		}
		c->streams = s;
		c->streams_cap = cap;
	}
	c->streams[c->n_streams].id = id;
	c->streams[c->n_streams++].r = r;
	c->t->st.requests_in_flight++;
	return true;
}

static struct record *stream_take(struct conn *c, uint32_t id)
{
	for (size_t i = 0; i < c->n_streams; i++) {
		if (c->streams[i].id == id) {
			struct record *r = c->streams[i].r;

			c->streams[i] = c->streams[--c->n_streams];
			c->t->st.requests_in_flight--;
			return r;
		}
	}
	return NULL;
}

static void h2_on_request(void *ctx, uint32_t sid, const struct h1_head *h)
{
	struct conn *c = ctx;
	struct record *r = record_new(c, c->seg_ts);

	if (!r)
		return;
	record__from_head(r, h);
	r->http2 = true;
	r->version_minor = 1;
	if (c->seg_arrival && c->seg_arrival <= r->start_ns)
		r->queue_ns = (int64_t)(r->start_ns - c->seg_arrival);
	if (!stream_put(c, sid, r)) {
		record_free(c->t, r);
		return;
	}
	emit(c, CONN_EV_REQ_STARTED, r, NULL);
}

static void h2_on_response(void *ctx, uint32_t sid, int status)
{
	struct conn *c = ctx;
	struct record **rp = stream_slot(c, sid);
	struct record *r;

	if (!rp) {	/* no request seen for it: report it, flagged */
		r = record_new(c, c->seg_ts);
		if (!r || !stream_put(c, sid, r)) {
			record_free(c->t, r);
			return;
		}
		r->flags |= RECF_UNMATCHED;
		r->http2 = true;
		emit(c, CONN_EV_REQ_STARTED, r, NULL);
		rp = stream_slot(c, sid);
	}
	r = *rp;
	r->status = status;
	if (!r->resp_start_ns)
		r->resp_start_ns = c->seg_ts;
}

static void h2_on_stream_done(void *ctx, const struct h2_stream_result *res)
{
	struct conn *c = ctx;
	struct record *r = stream_take(c, res->stream_id);

	if (!r)
		return;
	r->bytes_in += res->bytes_in;
	r->bytes_out += res->bytes_out;
	if (res->status)
		r->status = res->status;
	r->grpc_status = res->grpc_status;
	r->end_ns = c->seg_ts;
	if (res->flags & H2S_LOST)
		record_done(c, r, REC_FAILED, ERR_LOST);
	else if (res->flags & H2S_RESET)
		record_done(c, r, REC_FAILED, ERR_STREAM_RESET);
	else if (res->flags & (H2S_EOF | H2S_GOAWAY))
		record_done(c, r, REC_FAILED, close_reason(c));
	else
		record_done(c, r, REC_OK, "");
}

static void h2_on_error(void *ctx, const char *why)
{
	struct conn *c = ctx;

	c->t->st.h2_errors++;
}

static const struct h2_callbacks h2_cb = {
	.on_request = h2_on_request,
	.on_response = h2_on_response,
	.on_stream_done = h2_on_stream_done,
	.on_error = h2_on_error,
};

/* ---- connection lifecycle ---- */

/*
 * A zeroed connection: a closed one from the pool when there is one (it
 * keeps its request queue's array, empty), so that a connection per request
 * does not cost a calloc, a malloc and two frees.
 */
static struct conn *conn_alloc(struct conn_table *t)
{
	struct record **q;
	struct conn *c;
	size_t q_cap;

	if (!t->n_conn_pool)
		return calloc(1, sizeof(*c));
	c = t->conn_pool[--t->n_conn_pool];
	q = c->q;
	q_cap = c->q_cap;
	memset(c, 0, sizeof(*c));
	c->q = q;
	c->q_cap = q_cap;
	return c;
}

static void conn_release(struct conn_table *t, struct conn *c)
{
	if (t->n_conn_pool < CONN_POOL_MAX) {
		t->conn_pool[t->n_conn_pool++] = c;
		return;
	}
	free(c->q);
	free(c);
}

static struct conn *conn_new(struct conn_table *t, const struct obs_ev_hdr *h)
{
	struct conn *c = conn_alloc(t);
	size_t b;

	if (!c)
		return NULL;
	c->t = t;
	c->id = h->conn_id;
	c->pid = h->pid;
	c->fd = h->fd;
	c->last_ns = h->ts_ns;
	c->msg_start[0] = c->msg_start[1] = h->ts_ns;
	strcpy(c->client, "");
	strcpy(c->server, "");
	conn_ident(c);
	h1__init(&c->p[OBS_DIR_IN], H1_REQUEST, &req_cb, c);
	h1__init(&c->p[OBS_DIR_OUT], H1_RESPONSE, &resp_cb, c);
	if (t->n_conns >= t->n_buckets)
		table_grow(t);
	b = bucket_of(t, c->id);
	c->next = t->buckets[b];
	t->buckets[b] = c;
	t->n_conns++;
	t->st.conns_opened++;
	return c;
}

/* The connection is gone: finish what can be finished, fail the rest, free. */
static void conn_close(struct conn_table *t, struct conn *c, const char *why)
{
	/* Responses written after the client's FIN are delivered unless a RST
	 * answers them, which can come after the server's close(): wait. */
	if (t->fn && c->n_fin_held && !c->close_why && !(c->flags & CONN_RESET) &&
	    t->n_closing < CONN_CLOSING_MAX) {
		c->close_why = why;
		c->close_deadline = c->seg_ts + CONN_LINGER_NS;
		t->closing[t->n_closing++] = c;
		return;
	}
	for (size_t i = 0; i < t->n_closing; i++) {
		if (t->closing[i] == c) {
			t->closing[i] = t->closing[--t->n_closing];
			break;
		}
	}
	h1__eof(&c->p[OBS_DIR_IN]);
	h1__eof(&c->p[OBS_DIR_OUT]);
	if (c->h2) {
		h2__eof(c->h2);
		while (c->n_streams) {	/* streams h2 did not report (none, normally) */
			struct record *r = stream_take(c, c->streams[0].id);

			record_done(c, r, REC_FAILED, why);
		}
	}
	fail_pending(c, why);
	emit(c, CONN_EV_CLOSED, NULL, why);
	h1__free(&c->p[OBS_DIR_IN]);
	h1__free(&c->p[OBS_DIR_OUT]);
	table_unlink(t, c);
	t->st.conns_closed++;
	if (c->h2)	/* streams the HTTP/2 parser did not track: not reported */
		t->st.records_dropped[CONN_DROP_H2_STREAMS] += h2__streams_ignored(c->h2);
	h2__free(c->h2);
	free(c->streams);
	conn_release(t, c);
}

/* Events between the last one seen and this one were dropped. */
static void conn_lost(struct conn *c, uint32_t n_lost)
{
	c->t->st.seq_gaps++;
	if (c->h2)
		h2__lost(c->h2);
	h1__lost(&c->p[OBS_DIR_OUT]);
	h1__lost(&c->p[OBS_DIR_IN]);
	fail_pending(c, ERR_LOST);
	c->req_desync = true;
	c->loss_one = n_lost == 1;
	c->msg_start[0] = c->msg_start[1] = c->seg_ts;
}

static void inet_addresses(struct conn *c, const struct obs_ev_open *o)
{
	c->transport = REC_TCP;
	c->peer_pid = 0;
	if (o->family == AF_INET) {
		memset(c->client_addr, 0, 10);
		c->client_addr[10] = c->client_addr[11] = 0xff;
		memcpy(c->client_addr + 12, o->raddr, 4);
	} else {
		memcpy(c->client_addr, o->raddr, 16);
	}
	format_addr(c->client, o->family, o->raddr, o->rport);
	format_addr(c->server, o->family, o->laddr, o->lport);
}

void conn_peer_name(char *out, size_t n, uint32_t pid, const char *comm)
{
	if (!pid)
		snprintf(out, n, "%s", "");
	else
		snprintf(out, n, "%s[%u]", comm, pid);
}

/* /proc/PID/comm without its newline; "" when it cannot be read. */
static void read_comm(uint32_t pid, char *out, size_t n)
{
	char path[32];
	ssize_t got;
	int fd;

	out[0] = 0;
	snprintf(path, sizeof(path), "/proc/%u/comm", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	got = read(fd, out, n - 1);
	close(fd);
	if (got <= 0)
		got = 0;
	out[got] = 0;
	out[strcspn(out, "\n")] = 0;
	for (char *p = out; *p; p++)	/* a comm is any 15 bytes: keep it printable */
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '[' || *p == ']')
			*p = '?';
}

/* The UNIX peer's "comm[pid]", from the cache when read recently. */
static void peer_name(struct conn_table *t, uint32_t pid, uint64_t now_ns, char *out, size_t n)
{
	struct peer_name *e = &t->peers[pid % PEER_CACHE];
	char comm[OBS_COMM_LEN];

	if (!pid) {
		out[0] = 0;
		return;
	}
	if (e->pid != pid || now_ns < e->read_ns || now_ns - e->read_ns >= PEER_NAME_TTL_NS) {
		read_comm(pid, comm, sizeof(comm));
		conn_peer_name(e->name, sizeof(e->name), pid, comm);
		e->pid = pid;
		e->read_ns = now_ns;
	}
	snprintf(out, n, "%s", e->name);
}

/* AF_UNIX: the server is the socket path, the client the peer process. */
static void unix_addresses(struct conn_table *t, struct conn *c, const struct obs_ev_open *o)
{
	size_t l = strnlen(o->path, sizeof(c->server) - 1);	/* the kernel's may lack a NUL */

	c->transport = REC_UNIX;
	c->peer_pid = o->peer_pid;
	memset(c->client_addr, 0, sizeof(c->client_addr));
	memcpy(c->server, o->path, l);
	c->server[l] = 0;
	peer_name(t, o->peer_pid, o->h.ts_ns, c->client, sizeof(c->client));
}

/* An outgoing call: server names the callee (its ip:port, or the socket
 * path the kernel put in path), client this end (ip:port, or comm[pid]). */
static void client_addresses(struct conn *c, const struct obs_ev_open *o)
{
	if (o->family == AF_UNIX) {
		conn_peer_name(c->client, sizeof(c->client), o->h.pid, c->comm);
		return;
	}
	format_addr(c->client, o->family, o->laddr, o->lport);
	format_addr(c->server, o->family, o->raddr, o->rport);
	if (o->family == AF_INET) {
		memset(c->client_addr, 0, 10);
		c->client_addr[10] = c->client_addr[11] = 0xff;
		memcpy(c->client_addr + 12, o->laddr, 4);
	} else {
		memcpy(c->client_addr, o->laddr, 16);
	}
}

/* addr as IPv6 (IPv4 mapped). */
static void addr16(uint8_t out[16], uint16_t family, const uint8_t *addr)
{
	if (family == AF_INET) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, addr, 4);
	} else {
		memcpy(out, addr, 16);
	}
}

static bool addr_loopback(const uint8_t a[16])
{
	static const uint8_t v4mapped[12] = { [10] = 0xff, [11] = 0xff };
	static const uint8_t v6lo[16] = { [15] = 1 };

	return (!memcmp(a, v4mapped, 12) && a[12] == 127) || !memcmp(a, v6lo, 16);
}

static uint64_t mix64(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 29;
	return h;
}

/*
 * The key both ends of a same-node connection compute alike: TCP, the
 * (client ip, client port, server ip, server port) 4-tuple; UNIX, the
 * (client sock, server sock) pair the kernel reports. 0 when the peer is not
 * on this node (a TCP peer that is neither loopback nor this end's own
 * address): such requests cost nothing more.
 */
static uint64_t conn_pair(const struct obs_ev_open *o, bool client)
{
	const uint8_t *cl = client ? o->laddr : o->raddr, *sv = client ? o->raddr : o->laddr;
	uint16_t clp = client ? o->lport : o->rport, svp = client ? o->rport : o->lport;
	uint8_t c16[16], s16[16];
	uint64_t h = o->family, w;

	if (o->family == AF_UNIX) {
		memcpy(&w, cl, 8);
		h = mix64(h, w);
		memcpy(&w, sv, 8);
		h = mix64(h, w);
		return h ? h : 1;
	}
	addr16(c16, o->family, cl);
	addr16(s16, o->family, sv);
	if (!addr_loopback(s16) && memcmp(c16, s16, 16))
		return 0;
	h = 6;	/* same key for AF_INET and a v4-mapped AF_INET6 end */
	for (int i = 0; i < 16; i += 8) {
		memcpy(&w, c16 + i, 8);
		h = mix64(h, w);
		memcpy(&w, s16 + i, 8);
		h = mix64(h, w);
	}
	h = mix64(h, (uint64_t)clp << 16 | svp);
	return h ? h : 1;
}

static void on_open(struct conn_table *t, const struct obs_ev_open *o)
{
	struct conn *c = conn_find(t, o->h.conn_id);

	if (c)	/* duplicate open: keep the connection, refresh its identity */
		c->flags &= ~CONN_NO_OPEN;
	else
		c = conn_new(t, &o->h);
	if (!c)
		return;
	c->last_seq = o->h.seq;
	memcpy(c->comm, o->comm, sizeof(c->comm));
	c->comm[sizeof(c->comm) - 1] = 0;
	c->seg_ts = o->h.ts_ns;
	c->lport = o->lport;
	c->ino = o->ino;
	c->tls = o->flags & OBS_OPEN_TLS;
	c->h2_from_start = o->flags & OBS_OPEN_H2;
	if (c->h2_from_start && !c->h2)
		c->h2 = h2__new(&h2_cb, c, false);
	c->outgoing = o->flags & OBS_OPEN_CLIENT;
	if (o->family == AF_UNIX) {
		unix_addresses(t, c, o);
	} else {
		inet_addresses(c, o);
	}
	if (c->outgoing)
		client_addresses(c, o);
	c->pair = conn_pair(o, c->outgoing);
	conn_ident(c);
	emit(c, CONN_EV_OPENED, NULL, NULL);
}

static void on_data(struct conn *c, const struct obs_ev_data *d)
{
	/* [OBS_DIR_IN] is the request side: what a server reads, what a
	 * client (an outgoing call) writes */
	uint8_t dir = d->dir ^ c->outgoing;
	struct h1_parser *p = &c->p[dir];
	uint64_t skipped;

	c->seg_ts = d->h.ts_ns;
	c->seg_tid = d->h.tid;
	if (dir == OBS_DIR_IN)
		c->seg_arrival = d->arrival_ns;
	if (p->msg_bytes == 0 && !p->buf_len) {	/* a new message starts in this segment */
		c->msg_start[dir] = d->h.ts_ns;
		if (dir == OBS_DIR_IN)
			c->msg_arrival = d->arrival_ns;
	}
	if (dir == OBS_DIR_IN)
		c->t->st.bytes_in += d->len;
	else
		c->t->st.bytes_out += d->len;
	if (c->h2) {
		h2__feed(c->h2, dir == OBS_DIR_IN ? H2_FROM_CLIENT : H2_FROM_SERVER, d->data,
			 d->cap, d->len - d->cap - d->tail, d->data + d->cap, d->tail);
		return;
	}
	skipped = p->skipped_bytes;
	h1__feed(p, d->data, d->cap, d->len - d->cap - d->tail, d->data + d->cap, d->tail);
	if (dir == OBS_DIR_IN && p->skipped_bytes != skipped)
		c->req_desync = true;	/* requests may hide in what was skipped */
	if (c->loss_one && dir == OBS_DIR_OUT) {
		/* The one lost event was this direction's if its data resumes
		 * mid-message: then no request was lost. */
		if (p->skipped_bytes != skipped) {
			c->req_desync = false;
			c->owed = 0;
		}
		c->loss_one = false;
	} else if (dir == OBS_DIR_IN) {
		c->loss_one = false;
	}
}

static void on_state(struct conn *c, const struct obs_ev_state *s)
{
	if (c->outgoing) {	/* the server of an outgoing call left: a close reason */
		if (s->what == OBS_ST_PEER_FIN)
			c->flags |= CONN_SRV_FIN;
		else if (s->what == OBS_ST_RESET)
			c->flags |= CONN_SRV_RESET;
		return;
	}
	if (s->what == OBS_ST_PEER_FIN)
		c->flags |= CONN_PEER_FIN;
	else if (s->what == OBS_ST_RESET)
		c->flags |= CONN_RESET;
	else
		return;
	/* Only a client leaving with requests in flight (or answered after it
	 * left) is a disconnect; closing an idle keep-alive connection is the
	 * normal end. */
	if (!(c->flags & CONN_TOLD_GONE) &&
	    (c->q_len || c->cur_resp || ((c->flags & CONN_RESET) && c->n_fin_held))) {
		c->flags |= CONN_TOLD_GONE;
		emit(c, CONN_EV_DISCONNECTED, NULL, s->what == OBS_ST_RESET ? "reset" : "fin");
	}
	if (c->flags & CONN_RESET)
		settle_fin_held(c);
}

static void on_exit_pid(struct conn_table *t, uint32_t pid, uint64_t ts)
{
	for (size_t b = 0; b < t->n_buckets; b++) {
		struct conn *c = t->buckets[b], *next;

		for (; c; c = next) {
			next = c->next;
			if (c->pid == pid) {
				c->seg_ts = ts;
				conn_close(t, c, ERR_PROCESS_EXIT);
			}
		}
	}
}

static size_t ev_min_size(uint32_t type)
{
	switch (type) {
	case OBS_EV_OPEN:
		return sizeof(struct obs_ev_open);
	case OBS_EV_DATA:
		return sizeof(struct obs_ev_data);
	case OBS_EV_CLOSE:
		return sizeof(struct obs_ev_close);
	case OBS_EV_STATE:
		return sizeof(struct obs_ev_state);
	case OBS_EV_EXIT:
		return sizeof(struct obs_ev_exit);
	}
	return 0;
}

void conn_table__event(struct conn_table *t, const void *data, size_t size)
{
	const struct obs_ev_hdr *h = data;
	const struct obs_ev_data *d = data;
	size_t min;
	struct conn *c;
	bool unnumbered;

	if (size < sizeof(*h) || !(min = ev_min_size(h->type)) || size < min ||
	    (h->type == OBS_EV_DATA && (d->dir > OBS_DIR_OUT || d->cap + d->tail > d->len ||
					size < min + d->cap + d->tail))) {
		t->st.bad_events++;
		return;
	}
	t->st.events[h->type]++;
	/* the peer's FIN or reset: no number of its own, no gap check (obs.h) */
	unnumbered = h->type == OBS_EV_STATE && (h->flags & OBS_HF_UNNUMBERED);
	if (h->type == OBS_EV_EXIT) {
		on_exit_pid(t, h->pid, h->ts_ns);
		return;
	}
	if (h->type == OBS_EV_OPEN) {
		on_open(t, data);
		return;
	}
	c = conn_find(t, h->conn_id);
	if (c && c->close_why) {	/* closed, waiting for a late RST */
		if (h->type == OBS_EV_STATE && ((const struct obs_ev_state *)data)->what == OBS_ST_RESET) {
			c->flags |= CONN_RESET;
			c->seg_ts = h->ts_ns;
			conn_close(t, c, c->close_why);
		}
		return;
	}
	if (!c || h->seq == 0) {	/* seq 0: an event after the connection's end */
		if (c || h->seq == 0)
			return;
		t->st.orphan_events++;
		if (h->type == OBS_EV_CLOSE)
			return;
		/* Its open event was lost: follow it anyway, without addresses. */
		c = conn_new(t, h);
		if (!c)
			return;
		c->flags |= CONN_NO_OPEN;
		c->outgoing = h->type == OBS_EV_DATA && (d->flags & OBS_DF_CLIENT);
		c->last_seq = unnumbered ? h->seq : h->seq - 1;
		c->seg_ts = h->ts_ns;
		t->st.seq_gaps++;
		if (c->last_seq > 1) {	/* more than the OPEN (seq 1) was lost */
			/* its start is unknown: wait for a message start */
			h1__lost(&c->p[OBS_DIR_IN]);
			h1__lost(&c->p[OBS_DIR_OUT]);
			c->req_desync = true;
		}
		emit(c, CONN_EV_OPENED, NULL, NULL);
	}
	c->last_ns = h->ts_ns;
	c->seg_ts = h->ts_ns;
	if (!unnumbered) {
		if (h->seq != c->last_seq + 1)
			conn_lost(c, h->seq - c->last_seq - 1);
		c->last_seq = h->seq;
	}
	if (c->n_fin_held && h->type == OBS_EV_DATA)
		settle_fin_held(c);	/* the connection went on: they were delivered */
	switch (h->type) {
	case OBS_EV_DATA:
		if (c->h2 || !(c->flags & CONN_UPGRADED))
			on_data(c, data);
		break;
	case OBS_EV_STATE:
		on_state(c, data);
		break;
	case OBS_EV_CLOSE:
		conn_close(t, c, close_reason(c));
		break;
	}
}

/* ---- table ---- */

struct conn_table *conn_table__new(conn_event_fn fn, void *ctx)
{
	struct conn_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->n_buckets = CONN_BUCKETS_MIN;
	t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
	if (!t->buckets) {
		free(t);
		return NULL;
	}
	t->fn = fn;
	t->ctx = ctx;
	return t;
}

void conn_table__expire(struct conn_table *t, uint64_t now_ns)
{
	for (size_t i = 0; i < t->n_closing;) {
		struct conn *c = t->closing[i];

		if (now_ns >= c->close_deadline)
			conn_close(t, c, c->close_why);	/* removes it from closing[] */
		else
			i++;
	}
}

void conn_table__sweep(struct conn_table *t, uint64_t idle_before_ns,
		       bool (*alive)(void *ctx, uint32_t pid, uint32_t fd, uint64_t ino,
				     uint64_t conn_id),
		       void *ctx)
{
	for (size_t b = 0; b < t->n_buckets; b++) {
		struct conn *c = t->buckets[b], *next;

		for (; c; c = next) {
			next = c->next;
			if (c->last_ns <= idle_before_ns && !alive(ctx, c->pid, c->fd, c->ino, c->id))
				conn_close(t, c, close_reason(c));
		}
	}
}

const struct conn_stats *conn_table__stats(const struct conn_table *t)
{
	return &t->st;
}

size_t conn_table__active(const struct conn_table *t)
{
	return t->n_conns;
}

void conn_table__foreach(const struct conn_table *t,
			 void (*fn)(void *ctx, const struct conn_view *v), void *ctx)
{
	for (size_t b = 0; b < t->n_buckets; b++) {
		for (struct conn *c = t->buckets[b]; c; c = c->next) {
			if (c->outgoing)
				continue;
			struct conn_view v = {
				.pid = c->pid, .lport = c->lport, .transport = c->transport,
				.comm = c->comm,
				.in_flight = c->q_len + (c->cur_resp ? 1 : 0) + c->n_streams,
			};

			fn(ctx, &v);
		}
	}
}

void conn_table__foreach_pending(const struct conn_table *t, uint32_t pid,
				 void (*fn)(void *ctx, const struct record *r), void *ctx)
{
	for (size_t b = 0; b < t->n_buckets; b++) {
		for (struct conn *c = t->buckets[b]; c; c = c->next) {
			if (c->pid != pid || c->outgoing)
				continue;
			for (size_t i = 0; i < c->q_len; i++)
				fn(ctx, c->q[(c->q_head + i) % c->q_cap]);
			if (c->cur_resp)
				fn(ctx, c->cur_resp);
			for (size_t i = 0; i < c->n_streams; i++)
				fn(ctx, c->streams[i].r);
		}
	}
}

void conn_table__free(struct conn_table *t)
{
	if (!t)
		return;
	t->fn = NULL;	/* shutting down: in-flight requests are not failures */
	t->n_closing = 0;	/* no waiting: conn_close below frees them all */
	for (size_t b = 0; b < t->n_buckets; b++) {
		while (t->buckets[b])
			conn_close(t, t->buckets[b], ERR_SERVER_CLOSED);
	}
	while (t->n_pool)
		free(t->pool[--t->n_pool]);
	while (t->n_conn_pool) {
		struct conn *c = t->conn_pool[--t->n_conn_pool];

		free(c->q);
		free(c);
	}
	free(t->buckets);
	free(t);
}
