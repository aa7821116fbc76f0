/* SPDX-License-Identifier: MIT */
/*
 * record — one HTTP request as obs rebuilt it, from its first request byte to
 * its last response byte (or to the moment it failed). Fixed size, no pointers
 * to elsewhere: records are copied into the store and handed to sinks by
 * const pointer, valid only during the call.
 */
#ifndef OBS_RECORD_H
#define OBS_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/cgroup.h"
#include "proto/http1.h"
#include "base/pack.h"

struct exc_info;

#define REC_ADDR_MAX	56	/* "[v6 address]:port", or "comm[pid]" of a UNIX peer */
#define REC_SERVER_MAX	108	/* "[v6 address]:port" or a UNIX socket path (sun_path) */
#define REC_PATH_MAX	H1_TARGET_MAX
#define REC_ROUTE_MAX	256

/* record.flags */
enum {
	RECF_TRUNCATED	= 1u << 0,	/* a head was not fully captured */
	RECF_INFERRED	= 1u << 1,	/* a message end was inferred, not framed */
	RECF_LOST	= 1u << 2,	/* events of this connection were lost */
	RECF_UNMATCHED	= 1u << 3,	/* a response without a request we could parse */
	RECF_NO_OPEN	= 1u << 4,	/* connection's open event lost: no addresses */
	RECF_PATH_TRUNC	= 1u << 5,	/* path longer than REC_PATH_MAX-1 */
	RECF_SERVER_REQID = 1u << 6,	/* x_request_id is the response's (the server's own) */
};

/* record.transport */
enum rec_transport {
	REC_TCP = 0,		/* client and server are "address:port" */
	REC_UNIX = 1,		/* AF_UNIX stream: server is the socket path, client the
				   peer process "comm[pid]" (docs/records.md) */
};

/* record.kind */
enum rec_kind {
	REC_SERVER = 0,		/* a request the process served */
	REC_CLIENT = 1,		/* an outgoing call it made (docs/context.md): start_ns is its
				   first request byte written, end_ns its last response byte
				   read; bytes_in the request's bytes, bytes_out the response's;
				   server names the callee, client this end */
};

/* record.link of a CLIENT record: how its parent SERVER span was found. */
enum rec_link {
	REC_LINK_NONE = 0,	/* not decided (SERVER records) */
	REC_LINKED,		/* the single request in flight on the calling thread */
	REC_LINK_NO_REQUEST,	/* no request of the process in flight on that thread */
	REC_LINK_AMBIGUOUS,	/* several could have made it: left out (logs.h's rule) */
	REC_LINK_KINDS
};

enum rec_outcome {
	REC_OK = 0,		/* the response was written completely */
	REC_FAILED = 1,		/* no complete response; see record.error */
};

struct record {
	uint64_t conn_id;
	uint64_t start_ns;		/* CLOCK_MONOTONIC: first request byte read */
	uint64_t end_ns;		/* last response byte written, or failure time */
	uint64_t resp_start_ns;		/* first byte of the final response (0: none) */
	uint64_t wall_start_ns;		/* start_ns on CLOCK_REALTIME (epoch ns) */
	int64_t queue_ns;		/* first byte arrived at the socket -> read; -1 unknown */
	uint64_t bytes_in;		/* request bytes incl. body, as the server read them */
	uint64_t bytes_out;		/* response bytes incl. interim 1xx and framing */
	uint32_t pid, tid;
	uint32_t flags;			/* RECF_* */
	uint16_t lport;			/* server's local port (0 when unknown or UNIX) */
	uint8_t transport;		/* enum rec_transport */
	uint32_t peer_pid;		/* UNIX: the client process (0: unknown) */
	uint8_t client_addr[16];	/* peer address, IPv4 as v4-mapped IPv6; zero for UNIX */
	int status;			/* final status; 0 when no response head */
	int version_minor;
	enum rec_outcome outcome;
	const char *error;		/* static string; "" when outcome is REC_OK */
	bool sampled;
	bool has_parent;
	bool tls;			/* served over TLS (https) */
	bool http2;			/* an HTTP/2 stream */
	int grpc_status;		/* gRPC status from the trailers, -1 when none */
	bool behind_gap;		/* internal (conn.c): read after requests that may
					   have been missed; its pairing is unsure */
	uint8_t kind;			/* enum rec_kind */
	uint8_t link;			/* CLIENT: enum rec_link */
	bool own_context;		/* CLIENT: the caller sent its own traceparent (an SDK) */
	bool peer_other;		/* CLIENT: past the distinct-peer cap, its peer label is
					   "_other" (client.h) */
	uint32_t conn_seq;		/* 1-based index of the request on its connection; 0 when
					   the order is unsure (loss, resync) */
	uint64_t pair;			/* same-node connections: equal at both ends (the TCP
					   4-tuple, the UNIX socket pair); 0 when the peer is
					   not local */
	/* From here on, only ids and strings (see record__clear). */
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t parent_span_id[8];
	char request_id[H1_REQID_MAX];
	char comm[16];
	char service[64];		/* see service.h */
	struct cgroup_ident container;	/* from /proc/PID/cgroup (cgroup.h); "" when none */
	char method[H1_METHOD_MAX];
	char path[REC_PATH_MAX];	/* request-target without query/fragment */
	char route[REC_ROUTE_MAX];
	char client[REC_ADDR_MAX];
	char server[REC_SERVER_MAX];
	char host[H1_HOST_MAX];
	char user_agent[H1_UA_MAX];
	char content_type[H1_CTYPE_MAX];
	char x_request_id[H1_REQID_MAX];	/* the request's X-Request-ID as received (honoured
						   only from trusted peers); with
						   RECF_SERVER_REQID, the response's */
	char traceparent[H1_TRACEPARENT_MAX];
	char tracestate[H1_TRACESTATE_MAX];
	const struct exc_info *exc;	/* joined traceback (errors.h), only while sinks run */
};

/*
 * Make r what calloc would give, cheaply: every number, flag and id zero, every
 * string empty (only its first byte is written: what follows the NUL is left
 * as it was), exc NULL. Records are reused per request, and zeroing all of one
 * cost more than anything else obsd did per request.
 */
void record__clear(struct record *r);

/*
 * A record packed for keeping (store.h): its numbers and ids as they are, its
 * strings one after another without their unused bytes, exc dropped. A
 * typical record packs into a few hundred of its 2.3 KB. record__pack returns
 * the packed size, at most sizeof(struct record), but may write up to
 * PACK_SLACK (pack.h) bytes beyond it; record__unpack gives back the record
 * (exc NULL).
 */
size_t record__pack(const struct record *r, void *out);
void record__unpack(const void *in, struct record *r);

/* Fill r's request fields from a parsed request head (path without query). */
void record__from_head(struct record *r, const struct h1_head *h);

/* Duration and time-to-first-byte in microseconds (0 when unknown). */
uint64_t record__duration_us(const struct record *r);
uint64_t record__ttfb_us(const struct record *r);

/* RFC 3339 UTC with microseconds: "2026-11-22T19:30:00.123456Z". */
void rfc3339(char *out, size_t n, uint64_t epoch_ns);

/* "linked", "no_request", "ambiguous"; "" for REC_LINK_NONE. */
const char *record_link_name(unsigned link);

struct jbuf;
/* Append r as one JSON object (fields per docs/records.md). */
void record__json(const struct record *r, struct jbuf *jb);

#endif
