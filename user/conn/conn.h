/* SPDX-License-Identifier: MIT */
/*
 * conn — per-connection byte streams and request/response matching.
 *
 * Each tracked connection has a request parser (bytes the server read) and a
 * response parser (bytes it wrote): HTTP/1 (http1.h) until an h2c upgrade or
 * the HTTP/2 preface, then HTTP/2 (h2.h, one record per stream). HTTP/1
 * request heads queue up in arrival order; responses complete them in the
 * same order (pipelining). A request whose response never completes — the
 * connection closed, was reset, its process died, or its events were lost —
 * is completed as failed with a reason; nothing is invented. A request whose
 * record cannot be made (no memory, too many HTTP/2 streams) is counted in
 * conn_stats.records_dropped, never silently lost.
 *
 * Everything that happens is reported through one callback as a conn_event,
 * in stream order: a connection opened, a request started (its head was
 * read), a request is done (completed or failed), the client went away while
 * requests were in flight, the connection closed. The callback may modify the
 * record of REQ_STARTED and REQ_DONE (ids, route); the same record object is
 * passed to both. Pointers are valid only during the call.
 */
#ifndef OBS_CONN_H
#define OBS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "proto/http1.h"
#include "obs.h"
#include "base/pack.h"
#include "conn/record.h"

enum conn_ev_type {
	CONN_EV_OPENED,		/* first HTTP bytes of a connection (1.x or 2) */
	CONN_EV_REQ_STARTED,	/* a request head was read (r) */
	CONN_EV_REQ_DONE,	/* r completed or failed */
	CONN_EV_DISCONNECTED,	/* the client sent FIN or RST with requests in flight */
	CONN_EV_CLOSED,		/* the connection is gone (reason) */
};

struct conn_event {
	enum conn_ev_type type;
	uint64_t ts_ns;			/* CLOCK_MONOTONIC */
	uint64_t conn_id;
	uint32_t pid;
	uint16_t lport;
	uint8_t transport;		/* enum rec_transport */
	const char *comm, *client, *server;	/* in arrays of OBS_COMM_LEN,
						   REC_ADDR_MAX and REC_SERVER_MAX bytes */
	const char *ident;		/* comm, client, server packed (pack.h), as */
	size_t ident_len;		/* conn_ident_pack() packs them: ident_len bytes */
	struct record *r;		/* REQ_STARTED, REQ_DONE */
	const char *reason;		/* DISCONNECTED: "fin"/"reset"; CLOSED: close reason */
	bool outgoing;			/* an outgoing call's connection (records are REC_CLIENT):
					   no lifecycle events, not in the in-flight sets */
	size_t in_flight;		/* requests without a complete response */
};

typedef void (*conn_event_fn)(void *ctx, const struct conn_event *e);

/* Room for what conn_ident_pack writes. */
#define CONN_IDENT_MAX	(OBS_COMM_LEN + REC_ADDR_MAX + REC_SERVER_MAX + PACK_SLACK)

/*
 * A connection's comm, client and server (arrays of OBS_COMM_LEN,
 * REC_ADDR_MAX and REC_SERVER_MAX bytes) packed one after another into out[CONN_IDENT_MAX];
 * returns the packed size. Done once per connection, copied by every
 * lifecycle event of it.
 */
size_t conn_ident_pack(char *out, const char *comm, const char *client, const char *server);

/* Failure reasons (record.error). */
#define ERR_CLIENT_CLOSED	"client_closed"		/* client half-closed, then the connection ended */
#define ERR_CLIENT_RESET	"client_reset"		/* client sent a TCP reset */
#define ERR_SERVER_CLOSED	"server_closed"		/* server closed without a complete response */
#define ERR_PROCESS_EXIT	"process_exit"		/* the server process died */
#define ERR_LOST		"lost"			/* events of the connection were lost */
#define ERR_RESP_INCOMPLETE	"response_incomplete"	/* response started, ended early */
#define ERR_STREAM_RESET	"stream_reset"		/* HTTP/2 RST_STREAM before the end */
#define ERR_SERVER_RESET	"server_reset"		/* outgoing call: the server reset it */

/* Why a request record was not made (its request is then not reported). */
enum conn_drop {
	CONN_DROP_NO_MEMORY,	/* the record or its queue slot could not be allocated */
	CONN_DROP_H2_STREAMS,	/* an HTTP/2 connection already has H2_MAX_STREAMS open */
	CONN_DROP_MAX
};

struct conn_stats {
	uint64_t events[OBS_EV_EXIT + 1];	/* decoded, by type */
	uint64_t bad_events;			/* malformed ring records */
	uint64_t seq_gaps;			/* connections that noticed lost events */
	uint64_t orphan_events;			/* events for connections never opened */
	uint64_t parse_errors[2][H1E_MAX];	/* [dir][error] */
	uint64_t records_ok, records_failed;
	uint64_t incomplete_requests;		/* partial request heads at close: no record */
	uint64_t conns_opened, conns_closed;
	uint64_t requests_in_flight;		/* request heads awaiting their response (served,
						   not outgoing calls) */
	uint64_t h2_errors;			/* HTTP/2 connections that could not be parsed */
	uint64_t records_dropped[CONN_DROP_MAX];	/* requests not reported, by reason */
	uint64_t bytes_in, bytes_out;
};

struct conn_table;

/* NULL with errno set on allocation failure. */
struct conn_table *conn_table__new(conn_event_fn fn, void *ctx);

/* Decode and apply one ring-buffer record. Malformed records are counted. */
void conn_table__event(struct conn_table *t, const void *data, size_t size);

/* Finish closed connections whose wait for a late RST is over. Call after
 * each ring drain (cheap when none wait). */
void conn_table__expire(struct conn_table *t, uint64_t now_ns);

/*
 * Close connections whose last event is at or before idle_before_ns
 * (CLOCK_MONOTONIC; UINT64_MAX: every one) for which alive(pid, fd, ino,
 * conn_id) says the socket is gone (its close was lost). Pending requests
 * fail with "server_closed".
 */
void conn_table__sweep(struct conn_table *t, uint64_t idle_before_ns,
		       bool (*alive)(void *ctx, uint32_t pid, uint32_t fd, uint64_t ino,
				     uint64_t conn_id),
		       void *ctx);

const struct conn_stats *conn_table__stats(const struct conn_table *t);
size_t conn_table__active(const struct conn_table *t);

/*
 * UNIX connections name their client by the peer process, "comm[pid]" (or
 * "[pid]" when /proc/PID/comm cannot be read, "" when the kernel could not
 * tell the pid). The comm is read from /proc once per connection open, and
 * kept per pid for PEER_NAME_TTL_NS so a proxy opening many connections costs
 * one read. Exposed for unit tests.
 */
#define PEER_NAME_TTL_NS	(2ull * 1000000000ull)
void conn_peer_name(char *out, size_t n, uint32_t pid, const char *comm);

/* What a visitor sees of one open connection. */
struct conn_view {
	uint32_t pid;
	uint16_t lport;
	uint8_t transport;	/* enum rec_transport */
	const char *comm;
	size_t in_flight;	/* requests read whose response is not complete */
};

void conn_table__foreach(const struct conn_table *t,
			 void (*fn)(void *ctx, const struct conn_view *v), void *ctx);

/* Visit the records of pid's connections still waiting for their response
 * (requests it serves: its outgoing calls are not visited). */
void conn_table__foreach_pending(const struct conn_table *t, uint32_t pid,
				 void (*fn)(void *ctx, const struct record *r), void *ctx);

/* Free everything; requests still in flight are dropped, not reported. NULL-safe. */
void conn_table__free(struct conn_table *t);

#endif
