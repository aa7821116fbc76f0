/* SPDX-License-Identifier: MIT */
/*
 * http1 — incremental HTTP/1.0 / HTTP/1.1 message parser for ONE direction of
 * one connection (requests a server reads, or responses it writes).
 *
 * Input arrives as "segments": the bytes of one read/write syscall as the
 * kernel captured them. A segment is described by
 *
 *     head[0 .. head_len)            the first bytes of the syscall, captured
 *     gap                            bytes the syscall moved but were not
 *                                    captured (length known, content unknown)
 *     tail[0 .. tail_len)            the last bytes of the syscall, captured
 *
 * so that the syscall's real byte count is head_len + gap + tail_len. A segment
 * fully captured has gap == 0 and tail_len == 0. Uncaptured bytes are counted
 * exactly; they are never guessed at, and a message whose framing could not be
 * followed through a gap is reported with H1M_INFERRED or H1M_LOST, never
 * silently misparsed.
 *
 * A head that arrives whole in one segment is parsed in place. A head split
 * across segments is copied into a buffer owned by the parser (at most
 * H1_HEAD_MAX bytes, freed once the head is parsed and by h1__free()). The
 * parsed head (struct h1_head) is held only while its message is in progress;
 * heads are recycled, so the common path does not allocate, and a parser
 * between messages is small. Running out of memory for either is reported as
 * H1E_HEAD_TOO_LARGE.
 *
 * Callbacks run synchronously inside h1__feed()/h1__eof()/h1__lost(), in stream
 * order. The struct h1_head passed to them is owned by the parser and valid only
 * during the callback.
 */
#ifndef OBS_HTTP1_H
#define OBS_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define H1_HEAD_MAX		16384	/* bytes; a longer head is an error */
#define H1_CHUNK_LINE_MAX	1024	/* chunk-size line incl. extensions */
#define H1_METHOD_MAX		16
#define H1_TARGET_MAX		512	/* request-target, truncated beyond */
#define H1_HOST_MAX		128
#define H1_UA_MAX		256
#define H1_REQID_MAX		130	/* 128 characters + 1 to detect longer ids + NUL */
#define H1_TRACEPARENT_MAX	64
#define H1_TRACESTATE_MAX	256
#define H1_CTYPE_MAX		128
#define H1_REASON_MAX		64
#define H1_UPGRADE_MAX		32

enum h1_dir {
	H1_REQUEST = 0,		/* parse requests (bytes the server read) */
	H1_RESPONSE = 1,	/* parse responses (bytes the server wrote) */
};

/* h1_head.flags */
enum {
	H1F_CHUNKED		= 1u << 0,  /* Transfer-Encoding ends in chunked */
	H1F_HAS_CL		= 1u << 1,  /* Content-Length present and valid */
	H1F_CONN_CLOSE		= 1u << 2,  /* Connection: close, or 1.0 without keep-alive */
	H1F_UPGRADE		= 1u << 3,  /* Connection: upgrade with an Upgrade header */
	H1F_EXPECT_CONTINUE	= 1u << 4,  /* Expect: 100-continue */
	H1F_TARGET_TRUNC	= 1u << 5,  /* target longer than H1_TARGET_MAX-1 */
	H1F_HEAD_TRUNC		= 1u << 6,  /* head not fully captured (gap inside it):
					       fields after the gap are unknown */
	H1F_TE_OTHER		= 1u << 7,  /* Transfer-Encoding present, not ending in chunked */
};

/*
 * The parsed head of one message. Strings are NUL-terminated, truncated to
 * their buffer (the interesting headers are matched case-insensitively; the
 * first occurrence wins). Absent headers are "".
 */
struct h1_head {
	uint64_t content_length;	/* valid when H1F_HAS_CL */
	uint32_t flags;			/* H1F_* */
	uint32_t head_bytes;		/* bytes of request/status line + headers + blank line */
	int version_minor;		/* 0 or 1 (HTTP/1.x) */
	int status;			/* responses: 100..999; requests: 0 */
	char method[H1_METHOD_MAX];	/* requests: "GET"; responses: "" */
	char target[H1_TARGET_MAX];	/* requests: raw request-target incl. query */
	char reason[H1_REASON_MAX];	/* responses: reason phrase */
	char host[H1_HOST_MAX];
	char user_agent[H1_UA_MAX];
	char x_request_id[H1_REQID_MAX];
	char traceparent[H1_TRACEPARENT_MAX];
	char tracestate[H1_TRACESTATE_MAX];
	char content_type[H1_CTYPE_MAX];
	char upgrade[H1_UPGRADE_MAX];	/* Upgrade header ("h2c", "websocket") */
};

/* What the on_head callback tells the parser about the message's body. */
enum h1_body_hint {
	H1_BODY_DEFAULT = 0,	/* frame the body from the head (RFC 9112 §6.3) */
	H1_BODY_NONE	= 1,	/* no body whatever the head says (response to HEAD) */
	H1_BODY_STOP	= 2,	/* message ends with its head, then the connection
				   stops being HTTP/1 (101 Switching Protocols, 2xx to
				   CONNECT): every later byte is ignored */
};

/* Flags of a completed message (on_message). */
enum {
	H1M_TRUNCATED	= 1u << 0,  /* head had a gap; fields may be missing */
	H1M_INFERRED	= 1u << 1,  /* framing lost in a gap; the end was inferred from
				       the captured tail ("0\r\n\r\n" of a chunked body,
				       or a head ending at the segment end) */
	H1M_LOST	= 1u << 2,  /* bytes were lost (h1__lost) or could not be framed;
				       the message was ended where the loss was noticed */
	H1M_EOF		= 1u << 3,  /* body delimited by connection close */
};

/* Parse errors (on_error reason). */
enum h1_error {
	H1E_BAD_START = 1,	/* request/status line malformed */
	H1E_BAD_HEADER,		/* header line malformed, bad name, CTL in value, obs-fold */
	H1E_HEAD_TOO_LARGE,	/* head beyond H1_HEAD_MAX */
	H1E_BAD_CL,		/* Content-Length not digits, overflow, or conflicting */
	H1E_BAD_TE,		/* request with Transfer-Encoding not ending in chunked */
	H1E_BAD_CHUNK,		/* chunk-size line malformed or too long, missing CRLF */
	H1E_GAP_IN_HEAD,	/* a gap hid the start line; the message cannot be named */
	H1E_MAX
};

/*
 * Callbacks. ctx is the pointer given to h1__init().
 *
 * on_head: a message head is complete (or as complete as the capture allows,
 *   H1F_HEAD_TRUNC). Returns an h1_body_hint. Called exactly once per message,
 *   always before on_message for that message.
 * on_message: the message ended: at its last body byte, or on EOF when its body
 *   is delimited by close. bytes = all bytes of the message (head + body framing
 *   + body, including uncaptured bytes). mflags = H1M_*.
 * on_error: the stream could not be parsed. The parser then skips input until a
 *   segment starts with something that looks like the start of a message
 *   (requests: an uppercase token and a space; responses: "HTTP/1."); bytes
 *   skipped are counted in h1_parser.skipped_bytes. A message whose head was
 *   already reported gets on_message with H1M_LOST before on_error is called.
 * on_incomplete: h1__eof() found a message in progress (head reported, body not
 *   complete) or a partial head (head not reported; h == NULL). bytes = bytes of
 *   it seen so far.
 */
struct h1_callbacks {
	enum h1_body_hint (*on_head)(void *ctx, const struct h1_head *h);
	void (*on_message)(void *ctx, const struct h1_head *h, uint64_t bytes, unsigned mflags);
	void (*on_error)(void *ctx, enum h1_error err);
	void (*on_incomplete)(void *ctx, const struct h1_head *h, uint64_t bytes);
};

/* Parser state for one direction. Zero-filled then h1__init() before use. */
struct h1_parser {
	const struct h1_callbacks *cb;
	void *ctx;
	enum h1_dir dir;
	int state;			/* internal */
	uint32_t mflags;		/* H1M_* accumulated for the current message */
	uint64_t msg_bytes;		/* bytes of the current message so far */
	uint64_t body_left;		/* Content-Length / chunk data bytes to go */
	uint64_t skipped_bytes;		/* bytes skipped while resyncing (never reset) */
	uint64_t messages;		/* messages completed (never reset) */
	uint32_t line_len;		/* chunk-size / trailer line bytes so far */
	uint8_t line_flags;		/* internal */
	bool stopped;			/* H1_BODY_STOP seen: input is ignored */
	bool resynced;			/* internal: the message began at a resync point */
	char *buf;			/* partial head, owned; NULL when none */
	uint32_t buf_len, buf_cap;
	uint32_t scan_off;		/* internal: partial head bytes already searched for its end */
	struct h1_head *head;		/* head of the current message, from its start
					   line to its end; NULL between messages */
};

/* Prepare p (whose memory the caller owns). Never fails. */
void h1__init(struct h1_parser *p, enum h1_dir dir, const struct h1_callbacks *cb, void *ctx);

/*
 * Feed one segment (see top of file). head may be NULL when head_len == 0,
 * tail may be NULL when tail_len == 0. All callbacks for messages this segment
 * completes run before it returns.
 */
void h1__feed(struct h1_parser *p, const uint8_t *head, size_t head_len, uint64_t gap,
	      const uint8_t *tail, size_t tail_len);

/*
 * An unknown number of bytes was lost before the next segment (a ring-buffer
 * drop). A message in progress is ended with H1M_LOST (if its head was reported)
 * and the parser resyncs at the next segment that looks like a message start.
 */
void h1__lost(struct h1_parser *p);

/* The connection ended. Completes a close-delimited body, or reports
 * on_incomplete for a message in progress. The parser may be fed again after
 * (it starts fresh), but normally h1__free() follows. */
void h1__eof(struct h1_parser *p);

/* Free what the parser owns (the partial-head buffer). NULL-safe. */
void h1__free(struct h1_parser *p);

/* Static name of an h1_error ("bad_start", …) for counters and logs. */
const char *h1_error_name(enum h1_error err);

#endif /* OBS_HTTP1_H */
