/* SPDX-License-Identifier: MIT */
/*
 * h2 — HTTP/2 (RFC 9113) as one server-side connection sees it: frames in both
 * directions, header blocks decoded with nghttp2's HPACK inflater (one per
 * direction), one request per stream.
 *
 * Input arrives as segments exactly like http1.h: captured head bytes, an
 * uncaptured gap of known length, captured tail bytes. Frame lengths are
 * always known from the 9-byte frame header, so DATA payloads may fall in
 * gaps without losing sync; a gap that hides a frame header, or any part of a
 * HEADERS/CONTINUATION/PUSH_PROMISE payload (HPACK state would diverge), makes
 * the connection lost: streams in progress end with H2S_LOST and nothing more
 * is parsed on it (h2__lost() has the same effect).
 *
 * The client's connection preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") is
 * expected first on the request direction unless h2__new() is told it was
 * already consumed (h2c upgrade: after HTTP/1.1 101, the server's first
 * frames answer stream 1, the request carried by the upgrade).
 *
 * Callbacks run synchronously inside h2__feed()/h2__eof()/h2__lost(), in
 * stream order. Pointers passed to them are valid only during the call.
 */
#ifndef OBS_H2_H
#define OBS_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "proto/http1.h"

#define H2_MAX_STREAMS		1024	/* concurrent streams tracked per connection */
#define H2_HEADER_BLOCK_MAX	65536	/* a longer header block is an error */

enum h2_dir { H2_FROM_CLIENT = 0, H2_FROM_SERVER = 1 };

/* h2_stream_result.flags */
enum {
	H2S_RESET	= 1u << 0,	/* RST_STREAM (either side) before the response ended */
	H2S_LOST	= 1u << 1,	/* the connection lost sync (gap, h2__lost) */
	H2S_EOF		= 1u << 2,	/* the connection ended with the stream open */
	H2S_GOAWAY	= 1u << 3,	/* stream id above a GOAWAY's last-stream-id */
};

struct h2_stream_result {
	uint32_t stream_id;
	int status;		/* :status of the final response, 0 if none */
	int grpc_status;	/* grpc-status from trailers (or headers), -1 if none */
	uint64_t bytes_in;	/* frame bytes (headers + payload) of this stream from the client */
	uint64_t bytes_out;	/* same from the server */
	uint32_t flags;		/* H2S_* */
	uint32_t rst_code;	/* RST_STREAM error code when H2S_RESET */
};

struct h2_callbacks {
	/* A request's header block is complete. h is filled like an HTTP/1 head:
	 * method (:method), target (:path), host (:authority or host),
	 * user_agent, x_request_id, traceparent, tracestate, content_type;
	 * version_minor = 0 and flags H1F_HEAD_TRUNC never set. */
	void (*on_request)(void *ctx, uint32_t stream_id, const struct h1_head *h);
	/* The first response HEADERS with a final :status (1xx skipped). */
	void (*on_response)(void *ctx, uint32_t stream_id, int status);
	/* The stream is over: response END_STREAM, reset, lost or EOF. Exactly
	 * once per stream that had on_request (or a response without request). */
	void (*on_stream_done)(void *ctx, const struct h2_stream_result *res);
	/* Protocol error on the connection (bad preface, bad frame, HPACK error):
	 * streams in progress are ended with H2S_LOST first. */
	void (*on_error)(void *ctx, const char *why);
};

struct h2_conn;

/* NULL with errno set. preface_done: the client preface was already consumed
 * (h2c via Upgrade). ctx is passed to every callback. */
struct h2_conn *h2__new(const struct h2_callbacks *cb, void *ctx, bool preface_done);

void h2__feed(struct h2_conn *c, enum h2_dir dir, const uint8_t *head, size_t head_len,
	      uint64_t gap, const uint8_t *tail, size_t tail_len);

/* Bytes of unknown content were lost before the next segment (either side). */
void h2__lost(struct h2_conn *c);

/* The connection ended: open streams end with H2S_EOF. */
void h2__eof(struct h2_conn *c);

/* NULL-safe. */
void h2__free(struct h2_conn *c);

/* Streams not tracked because H2_MAX_STREAMS were open (never reset). */
uint64_t h2__streams_ignored(const struct h2_conn *c);

/* True if p (n bytes) starts with (a prefix of) the client connection preface. */
bool h2_preface_prefix(const uint8_t *p, size_t n);

#endif /* OBS_H2_H */
