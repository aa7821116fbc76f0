// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for user/conn/conn.c: per-connection stream reassembly from
 * kernel records.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iuser -Itests/unit \
 *         tests/fuzz/fuzz_conn.c user/conn/conn.c user/proto/http1.c user/proto/h2.c user/conn/record.c \
 *         user/base/json.c user/base/ids.c -lnghttp2 -o build/fuzz_conn      (or: make fuzz)
 *
 * The input is a program. Each op appends HTTP/1 pieces (a table of real
 * requests and responses, or raw input bytes) to the byte stream of one of
 * four connections and one direction, or turns those streams into the
 * records the kernel would write: OPEN (also right before a connection's
 * first DATA, as the kernel does), DATA (cut anywhere, captured in full
 * or like the kernel: the first 2048 or 64 bytes plus a 64-byte tail, or not
 * at all as for sendfile or a read fault), STATE (FIN, RST, closed,
 * shutdown), CLOSE, EXIT; or it
 * drops a record (a sequence gap), sends an event after a connection's end,
 * sends a malformed record (short, cap beyond len, bad direction, unknown
 * type, random bytes), expires lingering connections or sweeps idle ones.
 *
 * Checked after every record: each request record is started once and done
 * once (no double report, none left behind once every connection is gone),
 * records_ok + records_failed equals the records reported, requests in
 * flight never exceed the records started and not done, every record is
 * sane (terminated strings, a final status when ok, an unmatched response
 * never names a request, byte counts within what the connection moved,
 * end >= start), and each failure reason has a cause the harness fed: lost
 * needs a dropped record or bytes obs could not capture or parse,
 * process_exit an EXIT of the pid, client_reset a RST, client_closed a FIN
 * or RST. At the end every connection is closed, the table must be empty,
 * and LeakSanitizer checks that everything was freed.
 *
 * Pairing oracle: most requests are written by the harness's own client as
 * "/k<n>-<kind>" and answered, in order and only once their head was read, by
 * its own server with status 200 + n % 100 (101 to an upgrade). On a
 * connection that carried nothing else, a record naming /k<n> must have its
 * method and no status but its own: obs must never pair a request with
 * another one's response or make up a request from a fragment, whatever was
 * lost or left uncaptured. FUZZ_CONN_KNOWN=1 turns violations on connections
 * with losses or capture gaps into printed warnings (to look for other bugs
 * while such an issue is open); FUZZ_CONN_TRACE=1 prints every record fed and
 * every request reported (to explain a reproducer).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn/conn.h"

#define CHECK_ABORT	/* a failed check aborts: libFuzzer keeps the input */
#include "check.h"

#define NSLOT		4
#define STREAM_MAX	(1u << 20)	/* bytes queued per stream */
#define MAX_IDS		8192		/* connection ids the harness tracks */
#define MAX_LIVE	65536		/* records started, not done */
#define BASE_PID	100

/* conn_info.flags: what the harness fed a connection */
enum {
	CI_GAP		= 1u << 0,	/* a dropped record (sequence gap) */
	CI_FIN		= 1u << 1,
	CI_RESET	= 1u << 2,
	CI_EXIT		= 1u << 3,	/* EXIT of its pid */
	CI_OUT_ODD	= 1u << 4,	/* response bytes uncaptured or unparseable */
	CI_TAINTED	= 1u << 5,	/* bytes not from the oracle's client and server */
	CI_IN_ODD	= 1u << 6,	/* request bytes uncaptured or unparseable */
};

/* What makes a wrong oracle pairing a known issue rather than a new bug. */
#define CI_KNOWN	(CI_GAP | CI_IN_ODD | CI_OUT_ODD)

/* Oracle exchanges: a request "/k<n>" of a kind, answered by the harness's server. */
enum kind { K_GET, K_POST_CL, K_POST_CHUNKED, K_HEAD, K_CONTINUE, K_BIG, K_UPGRADE, K_MAX };
#define PEND_MAX	256

struct conn_info {
	uint64_t id;
	uint32_t flags;
	uint64_t bytes[2];	/* bytes moved, [dir] */
};

struct stream {
	uint8_t *b;
	size_t len;
};

struct pend {			/* a request the harness's server has not answered */
	uint32_t n;
	uint8_t kind;
	uint64_t head_end;	/* IN stream offset where its head ends */
};

struct slot {
	uint64_t id, old_id;	/* old_id: the previous connection of the slot */
	uint32_t seq, pid, fd;
	bool opened;
	struct stream s[2];
	uint64_t appended[2], taken[2];	/* stream bytes ever appended / turned into records */
	struct pend pend[PEND_MAX];
	size_t n_pend;
	uint32_t next_n;
	bool upgraded;		/* the oracle server switched protocols */
};

struct fz {
	struct conn_table *t;
	const uint8_t *in;
	size_t n;
	uint64_t now;
	uint64_t next_id;
	struct slot sl[NSLOT];
	struct conn_info ids[MAX_IDS];
	size_t n_ids;
	const struct record *live[MAX_LIVE];
	size_t n_live;
	uint64_t started, done;
	uint64_t cur_id;	/* connection of the record being delivered */
};

static struct fz F;
static bool trace;	/* FUZZ_CONN_TRACE=1: print every record fed and reported */
static bool known_ok;	/* FUZZ_CONN_KNOWN=1: see oracle_check() */

static bool env_on(const char *name)
{
	const char *v = getenv(name);

	return v && *v && strcmp(v, "0");
}

static void trace_bytes(const uint8_t *b, size_t n)
{
	if (n > 200) {
		trace_bytes(b, 120);
		fprintf(stderr, "[...%zu bytes...]", n - 180);
		trace_bytes(b + n - 60, 60);
		return;
	}
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\' ? "%c" : "\\x%02x", b[i]);
}

static void trace_record(const void *p, size_t size)
{
	static const char *const names[] = { "?", "OPEN", "DATA", "CLOSE", "STATE", "EXIT" };
	const struct obs_ev_hdr *h = p;
	const struct obs_ev_data *d = p;

	if (size < sizeof(*h)) {
		fprintf(stderr, "  feed %zu bytes (short)\n", size);
		return;
	}
	fprintf(stderr, "  feed %s conn=%llu seq=%u pid=%u size=%zu", h->type <= 5 ? names[h->type] : "?",
		(unsigned long long)h->conn_id, h->seq, h->pid, size);
	if (h->type == OBS_EV_DATA && size >= sizeof(*d)) {
		fprintf(stderr, " %s len=%llu cap=%u tail=%u \"", d->dir ? "OUT" : "IN",
			(unsigned long long)d->len, d->cap, d->tail);
		if (size >= sizeof(*d) + d->cap + d->tail)
			trace_bytes(d->data, d->cap + d->tail);
		fprintf(stderr, "\"");
	} else if (h->type == OBS_EV_STATE && size >= sizeof(struct obs_ev_state)) {
		fprintf(stderr, " what=%u", ((const struct obs_ev_state *)p)->what);
	}
	fprintf(stderr, "\n");
}

static const char *const pieces[] = {
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	("GET /users/42?x=1 HTTP/1.1\r\nUser-Agent: fz\r\nX-Request-ID: r-1\r\n"
	 "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"),
	"HEAD /h HTTP/1.1\r\n\r\n",
	"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
	"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
	"abc",
	"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	"CONNECT h:443 HTTP/1.1\r\n\r\n",
	"GET /old HTTP/1.0\r\n\r\n",
	"PUT /big HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
	"\r\n",
	"GET /bad\x01 HTTP/1.1\r\n\r\n",
	"POST /te HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"HTTP/1.0 200 OK\r\n\r\nbody until close",
	"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100000\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Request-ID: srv-1\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 11\r\n\r\nBad Request",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n",
	"\r\n0\r\n\r\n",
	"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
	"0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
	"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
};

/* ---- input ----------------------------------------------------------------- */

static uint8_t u8(void)
{
	uint8_t v = 0;

	if (F.n) {
		v = *F.in++;
		F.n--;
	}
	return v;
}

static uint32_t u16(void)
{
	return u8() | (uint32_t)u8() << 8;
}

/* ---- bookkeeping ------------------------------------------------------------- */

static struct conn_info *info(uint64_t id)
{
	for (size_t i = 0; i < F.n_ids; i++)
		if (F.ids[i].id == id)
			return &F.ids[i];
	if (F.n_ids == MAX_IDS)
		return NULL;
	F.ids[F.n_ids] = (struct conn_info){ .id = id };
	return &F.ids[F.n_ids++];
}

static struct conn_info *info_find(uint64_t id)
{
	for (size_t i = 0; i < F.n_ids; i++)
		if (F.ids[i].id == id)
			return &F.ids[i];
	return NULL;
}

static const char *const kind_method[K_MAX] = {
	"GET", "POST", "POST", "HEAD", "PUT", "GET", "GET",
};

static int oracle_status(uint32_t n, unsigned kind)
{
	return kind == K_UPGRADE ? 101 : 200 + n % 100;
}

/*
 * On a connection that carried only oracle traffic, a record naming request
 * /k<n> must carry its method, and may only carry the status the server
 * answered /k<n> with (or none, when it failed before its response head).
 * A violation aborts; with FUZZ_CONN_KNOWN=1 violations on connections that
 * lost records or had uncaptured bytes (the known pairing-after-loss issue,
 * see docs/robustness.md) are only counted and printed.
 */
static void oracle_check(const struct record *r, const struct conn_info *ci)
{
	static uint64_t known;
	unsigned n, kind;
	int len = 0;
	bool bad;

	if (!ci || (ci->flags & CI_TAINTED) || (r->flags & RECF_UNMATCHED))
		return;
	if (sscanf(r->path, "/k%u-%u%n", &n, &kind, &len) != 2 || r->path[len] || kind >= K_MAX) {
		bad = true;	/* a request the oracle's client never sent */
		n = kind = 0;
	} else {
		bad = strcmp(r->method, kind_method[kind]) ||
		      (r->status && r->status != oracle_status(n, kind));
	}
	if (!bad)
		return;
	fprintf(stderr, "fuzz_conn: record \"%s %s\" status %d, but the oracle's client sent "
		"\"%s /k%u-%u\" answered %d (outcome %d, error \"%s\", flags %#x, conn %#x)\n",
		r->method, r->path, r->status, kind_method[kind], n, kind, oracle_status(n, kind),
		r->outcome, r->error, r->flags, ci->flags);
	if ((ci->flags & CI_KNOWN) && known_ok) {
		known++;
		if (!(known & (known - 1)))
			fprintf(stderr, "fuzz_conn: %llu known-issue pairings so far\n",
				(unsigned long long)known);
		return;
	}
	check(false, __FILE__, __LINE__, "a pairing the oracle's client never saw");
}

static void record_check(const struct record *r, uint64_t conn_id)
{
	const struct conn_info *ci = info_find(r->conn_id);
	const char *e = r->error;
	uint32_t f = ci ? ci->flags : 0;

	CHECK(r->conn_id == conn_id);
	CHECK_NUL(r->request_id, sizeof(r->request_id));
	CHECK_NUL(r->comm, sizeof(r->comm));
	CHECK_NUL(r->method, sizeof(r->method));
	CHECK_NUL(r->path, sizeof(r->path));
	CHECK_NUL(r->client, sizeof(r->client));
	CHECK_NUL(r->server, sizeof(r->server));
	CHECK_NUL(r->host, sizeof(r->host));
	CHECK_NUL(r->user_agent, sizeof(r->user_agent));
	CHECK_NUL(r->content_type, sizeof(r->content_type));
	CHECK_NUL(r->x_request_id, sizeof(r->x_request_id));
	CHECK_NUL(r->traceparent, sizeof(r->traceparent));
	CHECK_NUL(r->tracestate, sizeof(r->tracestate));
	CHECK(!(r->flags & RECF_UNMATCHED ? r->method[0] || r->path[0] : !r->method[0]));
	CHECK(!(r->status && (r->status < 100 || r->status > 999)));
	CHECK(r->end_ns >= r->start_ns);
	if (r->outcome == REC_OK) {
		CHECK(!(!e || e[0] || r->status < 101 || (r->status < 200 && r->status != 101)));
	} else if (!CHECK(r->outcome == REC_FAILED && e)) {
		return;
	} else if (!strcmp(e, ERR_LOST)) {
		/* records dropped, or bytes skipped: a pairing obs cannot be sure of */
		CHECK(!ci || f & (CI_GAP | CI_OUT_ODD | CI_IN_ODD));
		CHECK(r->flags & RECF_LOST);
	} else if (!strcmp(e, ERR_PROCESS_EXIT)) {
		CHECK(!ci || f & CI_EXIT);
	} else if (!strcmp(e, ERR_CLIENT_RESET)) {
		CHECK(!ci || f & CI_RESET);
	} else if (!strcmp(e, ERR_CLIENT_CLOSED)) {
		CHECK(!ci || f & (CI_FIN | CI_RESET));
	} else if (!strcmp(e, ERR_RESP_INCOMPLETE)) {
		CHECK(r->status);
	} else {
		CHECK_S(e, ERR_SERVER_CLOSED);
	}
	CHECK(!ci || (r->bytes_in <= ci->bytes[0] && r->bytes_out <= ci->bytes[1]));
	oracle_check(r, ci);
}

static void on_event(void *ctx, const struct conn_event *e)
{
	size_t i;

	CHECK(e->type <= CONN_EV_CLOSED && e->comm && e->client && e->server);
	CHECK_NUL(e->comm, OBS_COMM_LEN);
	if (e->type == CONN_EV_REQ_STARTED) {
		CHECK(e->r);
		for (i = 0; i < F.n_live; i++)
			CHECK(F.live[i] != e->r);	/* started twice */
		CHECK(F.n_live != MAX_LIVE);
		F.live[F.n_live++] = e->r;
		F.started++;
	} else if (e->type == CONN_EV_REQ_DONE) {
		CHECK(e->r);
		if (trace)
			fprintf(stderr, "    -> record conn=%llu %s %s status=%d outcome=%d error=%s "
				"flags=%#x in=%llu out=%llu\n", (unsigned long long)e->conn_id,
				e->r->method, e->r->path, e->r->status, e->r->outcome, e->r->error,
				e->r->flags, (unsigned long long)e->r->bytes_in,
				(unsigned long long)e->r->bytes_out);
		for (i = 0; i < F.n_live && F.live[i] != e->r; i++)
			;
		CHECK(i != F.n_live);	/* done without start, or done twice */
		F.live[i] = F.live[--F.n_live];
		F.done++;
		record_check(e->r, e->conn_id);
	} else {
		CHECK(!e->r);
	}
	CHECK(e->in_flight <= F.n_live);
}

static void stats_check(void)
{
	const struct conn_stats *st = conn_table__stats(F.t);

	CHECK(st->records_ok + st->records_failed == F.done);
	CHECK(st->requests_in_flight <= F.n_live);
	CHECK(st->conns_closed <= st->conns_opened);
	CHECK(conn_table__active(F.t) == st->conns_opened - st->conns_closed);
}

static uint64_t parse_errors(int dir)
{
	const struct conn_stats *st = conn_table__stats(F.t);
	uint64_t n = 0;

	for (int e = 0; e < H1E_MAX; e++)
		n += st->parse_errors[dir][e];
	return n;
}

/* Hand a record to the table from an exact-size heap copy. */
static void deliver(const void *p, size_t size, uint64_t conn_id)
{
	void *b = malloc(size ? size : 1);
	struct conn_info *ci = info_find(conn_id);
	uint64_t in_before = parse_errors(OBS_DIR_IN), out_before = parse_errors(OBS_DIR_OUT);

	CHECK(b);
	memcpy(b, p, size);
	if (trace)
		trace_record(b, size);
	F.cur_id = conn_id;
	conn_table__event(F.t, b, size);
	free(b);
	if (ci && parse_errors(OBS_DIR_OUT) != out_before)
		ci->flags |= CI_OUT_ODD;
	if (ci && parse_errors(OBS_DIR_IN) != in_before)
		ci->flags |= CI_IN_ODD;
	stats_check();
}

/* ---- records ---------------------------------------------------------------- */

static void hdr(struct obs_ev_hdr *h, const struct slot *s, uint32_t type, uint32_t seq)
{
	F.now += 1 + u8() * 1000ull;
	memset(h, 0, sizeof(*h));
	h->ts_ns = F.now;
	h->conn_id = s->id;
	h->seq = seq;
	h->type = type;
	h->pid = s->pid;
	h->tid = s->pid + 1;
	h->fd = s->fd;
}

static void slot_renew(struct slot *s)
{
	s->old_id = s->id;
	s->id = F.next_id++;
	s->seq = 0;
	s->opened = false;
	s->s[0].len = s->s[1].len = 0;
	s->appended[0] = s->appended[1] = s->taken[0] = s->taken[1] = 0;
	s->n_pend = 0;
	s->next_n = 0;
	s->upgraded = false;
	info(s->id);
}

static void op_open(struct slot *s)
{
	struct obs_ev_open o;
	uint8_t v = u8();

	memset(&o, 0, sizeof(o));
	hdr(&o.h, s, OBS_EV_OPEN, ++s->seq);
	o.family = v & 1 ? 10 : 2;	/* AF_INET6 : AF_INET */
	for (int i = 0; i < 16; i++) {
		o.laddr[i] = v * i;
		o.raddr[i] = v + i;
	}
	if (v & 2) {	/* v4-mapped */
		memset(o.raddr, 0, 10);
		o.raddr[10] = o.raddr[11] = 0xff;
	}
	o.lport = 8000;
	o.rport = u16();
	if ((v & 0x0c) == 0x0c) {	/* AF_UNIX: a path without a NUL, a peer pid */
		o.family = 1;
		o.lport = o.rport = 0;
		for (int i = 0; i < OBS_UNIX_PATH_LEN; i++)
			o.path[i] = v & 0x10 ? '/' + (v + i) % 64 : (char)(v * i);
		o.peer_pid = v & 0x20 ? (uint32_t)getpid() : v;
	}
	for (int i = 0; i < OBS_COMM_LEN; i++)	/* not terminated: conn.c must cope */
		o.comm[i] = 'a' + (v + i) % 26;
	s->opened = true;
	deliver(&o, sizeof(o), s->id);
}

static void stream_add(struct stream *st, const void *d, size_t n)
{
	if (st->len + n > STREAM_MAX)
		n = STREAM_MAX - st->len;
	if (!n)
		return;
	if (!st->b) {
		st->b = malloc(STREAM_MAX);
		CHECK(st->b);
	}
	memcpy(st->b + st->len, d, n);
	st->len += n;
}

static void slot_add(struct slot *s, int dir, const void *d, size_t n)
{
	stream_add(&s->s[dir], d, n);
	s->appended[dir] += n;
}

static void taint(struct slot *s)
{
	struct conn_info *ci = info(s->id);

	if (ci)
		ci->flags |= CI_TAINTED;
}

/* The oracle's client writes request /k<n> of some kind. */
static void op_oracle_request(struct slot *s)
{
	uint8_t v = u8();
	unsigned kind = v % K_MAX;
	char head[256];
	int hl;

	if (s->n_pend == PEND_MAX)
		return;
	switch (kind) {
	case K_POST_CL:
		hl = snprintf(head, sizeof(head), "POST /k%u-%u HTTP/1.1\r\nContent-Length: %u\r\n\r\n",
			      s->next_n, kind, v);
		break;
	case K_POST_CHUNKED:
		hl = snprintf(head, sizeof(head), "POST /k%u-%u HTTP/1.1\r\nHost: o\r\n"
			      "Transfer-Encoding: chunked\r\n\r\n", s->next_n, kind);
		break;
	case K_CONTINUE:
		hl = snprintf(head, sizeof(head), "PUT /k%u-%u HTTP/1.1\r\nExpect: 100-continue\r\n"
			      "Content-Length: 4\r\n\r\n", s->next_n, kind);
		break;
	case K_UPGRADE:
		hl = snprintf(head, sizeof(head), "GET /k%u-%u HTTP/1.1\r\nConnection: Upgrade\r\n"
			      "Upgrade: websocket\r\n\r\n", s->next_n, kind);
		break;
	default:
		hl = snprintf(head, sizeof(head), "%s /k%u-%u HTTP/1.1\r\nUser-Agent: oracle\r\n\r\n",
			      kind_method[kind], s->next_n, kind);
		break;
	}
	slot_add(s, OBS_DIR_IN, head, hl);
	s->pend[s->n_pend++] = (struct pend){ s->next_n++, kind, s->appended[OBS_DIR_IN] };
	if (kind == K_POST_CL) {
		for (unsigned i = 0; i < v; i++)
			slot_add(s, OBS_DIR_IN, "b", 1);
	} else if (kind == K_POST_CHUNKED) {
		static const char body[] = "3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\n\r\n";

		slot_add(s, OBS_DIR_IN, body, sizeof(body) - 1);
	} else if (kind == K_CONTINUE) {
		slot_add(s, OBS_DIR_IN, "body", 4);
	}
}

/* The oracle's server answers the oldest request it has read the head of. */
static void op_oracle_response(struct slot *s)
{
	uint8_t v = u8();
	struct pend p;
	char head[256];
	int hl, status;

	if (!s->n_pend || s->upgraded || s->taken[OBS_DIR_IN] < s->pend[0].head_end)
		return;
	p = s->pend[0];
	memmove(s->pend, s->pend + 1, --s->n_pend * sizeof(s->pend[0]));
	status = oracle_status(p.n, p.kind);
	if (p.kind == K_CONTINUE)
		slot_add(s, OBS_DIR_OUT, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	if (p.kind == K_UPGRADE) {
		hl = snprintf(head, sizeof(head), "HTTP/1.1 101 Switching Protocols\r\n"
			      "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
		slot_add(s, OBS_DIR_OUT, head, hl);
		s->upgraded = true;
		s->n_pend = 0;
		return;
	}
	if (p.kind == K_BIG || ((v & 1) && p.kind != K_HEAD)) {
		size_t n = p.kind == K_BIG ? 3000 + v * 40 : v;

		hl = snprintf(head, sizeof(head), "HTTP/1.1 %d R\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "%zx\r\n", status, n);
		slot_add(s, OBS_DIR_OUT, head, hl);
		for (size_t i = 0; i < n; i++)
			slot_add(s, OBS_DIR_OUT, "c", 1);
		slot_add(s, OBS_DIR_OUT, n ? "\r\n0\r\n\r\n" : "\r\n", n ? 7 : 2);
		return;
	}
	hl = snprintf(head, sizeof(head), "HTTP/1.1 %d R\r\nContent-Length: %u\r\n\r\n", status,
		      v >> 1);
	slot_add(s, OBS_DIR_OUT, head, hl);
	if (p.kind != K_HEAD)
		for (unsigned i = 0; i < v >> 1u; i++)
			slot_add(s, OBS_DIR_OUT, "r", 1);
}

static void op_append_piece(struct slot *s)
{
	uint8_t v = u8();
	const char *p = pieces[(v >> 1) % (sizeof(pieces) / sizeof(pieces[0]))];

	taint(s);
	slot_add(s, v & 1, p, strlen(p));
}

static void op_append_raw(struct slot *s)
{
	uint8_t v = u8();
	size_t n = v >> 1;

	if (n > F.n)
		n = F.n;
	taint(s);
	slot_add(s, v & 1, F.in, n);
	F.in += n;
	F.n -= n;
}

static void op_append_fill(struct slot *s)
{
	uint8_t v = u8();
	size_t n = (size_t)u16() * (v & 0x80 ? 16 : 1);
	static uint8_t fill[1 << 16];

	if (!fill[0])
		memset(fill, 'x', sizeof(fill));
	taint(s);
	while (n) {
		size_t k = n < sizeof(fill) ? n : sizeof(fill);

		slot_add(s, v & 1, fill, k);
		n -= k;
	}
}

/* One read or write: the next k bytes of the stream, captured per mode. */
static void op_data(struct slot *s, bool lose)
{
	uint8_t v = u8(), mode = u8();
	int dir = v & 1;
	struct stream *st = &s->s[dir];
	uint64_t len;
	uint32_t cap, capmax;
	uint16_t tail = 0;
	size_t size;
	struct obs_ev_data *d;
	struct conn_info *ci;

	switch (v >> 1 & 3) {
	case 0:
		len = st->len;
		break;
	case 1:
		len = 1 + (v >> 3);
		break;
	case 2:
		len = 1 + u16();
		break;
	default:
		len = 1 + u16() * 64ull;	/* may be more than queued: unknown bytes */
		break;
	}
	if (!len)
		return;		/* the kernel reports nothing for ret <= 0 */
	if (!s->opened) {
		/* the kernel emits OPEN (seq 1) right before a connection's first
		 * data; the ring may drop it like any record */
		if (mode & 0x80) {
			s->seq++;
			s->opened = true;
			if (info(s->id))
				info(s->id)->flags |= CI_GAP;
		} else {
			op_open(s);
		}
	}
	switch (mode & 3) {
	case 0:
		capmax = len > OBS_CAP_MAX ? OBS_CAP_MAX : len;
		break;
	case 1:
		capmax = OBS_CAP_DEFAULT;
		break;
	case 2:
		capmax = 64;	/* the smallest --capture-bytes */
		break;
	default:
		capmax = 0;	/* sendfile */
		break;
	}
	cap = len < capmax ? len : capmax;
	if (len > cap && (mode & 3) != 3)
		tail = len - cap < OBS_TAIL_MAX ? len - cap : OBS_TAIL_MAX;
	size = sizeof(*d) + cap + tail;
	d = calloc(1, size);
	CHECK(d);
	hdr(&d->h, s, OBS_EV_DATA, ++s->seq);
	d->len = len;
	d->cap = cap;
	d->tail = tail;
	d->dir = dir;
	d->flags = (mode & 3) == 3 ? OBS_DF_SENDFILE : 0;
	/* captured bytes: from the stream where it has them, else zeros */
	for (uint32_t i = 0; i < cap && i < st->len; i++)
		d->data[i] = st->b[i];
	for (uint32_t i = 0; i < tail; i++) {
		uint64_t at = len - tail + i;

		d->data[cap + i] = at < st->len ? st->b[at] : 0;
	}
	if (len > st->len)
		taint(s);	/* bytes the oracle's peers never wrote */
	s->taken[dir] += len < st->len ? len : st->len;
	if (len >= st->len) {
		st->len = 0;
	} else {
		memmove(st->b, st->b + len, st->len - len);
		st->len -= len;
	}
	ci = info(s->id);
	if (lose) {	/* the ring was full: the record never arrives */
		if (ci)
			ci->flags |= CI_GAP;
		free(d);
		return;
	}
	if (ci) {
		ci->bytes[dir] += len;
		if (cap + tail < len)
			ci->flags |= dir == OBS_DIR_OUT ? CI_OUT_ODD : CI_IN_ODD;
	}
	deliver(d, size, s->id);
	free(d);
}

static void op_state(struct slot *s)
{
	struct obs_ev_state e;
	uint8_t v = u8();
	struct conn_info *ci = info(s->id);

	if (!s->opened)
		return;		/* kept by the kernel until the OPEN; not modelled */
	e.what = v % 6;		/* 0 and 5: unknown, ignored */
	if ((v & 0x80) && (e.what == OBS_ST_PEER_FIN || e.what == OBS_ST_RESET)) {
		/* written on the peer's CPU: unnumbered, the last number (obs.h) */
		hdr(&e.h, s, OBS_EV_STATE, s->seq);
		e.h.flags = OBS_HF_UNNUMBERED;
	} else {
		hdr(&e.h, s, OBS_EV_STATE, ++s->seq);
	}
	e.arg = v >> 4;
	if (ci && e.what == OBS_ST_PEER_FIN)
		ci->flags |= CI_FIN;
	if (ci && e.what == OBS_ST_RESET)
		ci->flags |= CI_RESET;
	deliver(&e, sizeof(e), s->id);
}

static void op_close(struct slot *s)
{
	struct obs_ev_close e;

	if (!s->opened) {	/* never spoke: the kernel just forgets it */
		slot_renew(s);
		return;
	}
	hdr(&e.h, s, OBS_EV_CLOSE, ++s->seq);
	deliver(&e, sizeof(e), s->id);
	slot_renew(s);
}

static void op_exit(uint32_t pid)
{
	struct obs_ev_exit e;
	struct slot none = { .pid = pid };

	for (int i = 0; i < NSLOT; i++) {
		struct conn_info *ci = info(F.sl[i].id);

		if (F.sl[i].pid == pid && ci)
			ci->flags |= CI_EXIT;
	}
	hdr(&e.h, &none, OBS_EV_EXIT, 0);
	e.exit_code = 137;
	e.pad = 0;
	deliver(&e, sizeof(e), 0);
	for (int i = 0; i < NSLOT; i++)
		if (F.sl[i].pid == pid)
			slot_renew(&F.sl[i]);
}

/* An event of a connection that already ended (seq 0), or of the slot's previous one. */
static void op_late(struct slot *s)
{
	struct obs_ev_data d;
	struct slot old = *s;
	uint8_t v = u8();

	old.id = s->old_id;
	hdr(&d.h, &old, v & 1 ? OBS_EV_DATA : OBS_EV_CLOSE, v & 2 ? 0 : 1 + (v >> 2));
	d.len = 0;
	d.cap = 0;
	d.tail = 0;
	d.dir = 0;
	d.flags = 0;
	if (v & 1) {
		d.len = 1;
		deliver(&d, sizeof(d), old.id);	/* DATA: cap 0, 1 uncaptured byte */
	} else {
		deliver(&d, sizeof(struct obs_ev_close), old.id);
	}
}

/* A record the kernel would never write; counted as bad or ignored. */
static void op_garbage(struct slot *s)
{
	static const size_t min_size[] = {
		[OBS_EV_OPEN] = sizeof(struct obs_ev_open),
		[OBS_EV_DATA] = sizeof(struct obs_ev_data),
		[OBS_EV_CLOSE] = sizeof(struct obs_ev_close),
		[OBS_EV_STATE] = sizeof(struct obs_ev_state),
		[OBS_EV_EXIT] = sizeof(struct obs_ev_exit),
	};
	uint8_t v = u8(), raw[sizeof(struct obs_ev_open) + 64];
	struct obs_ev_data *d = (struct obs_ev_data *)raw;
	size_t size = u8() % sizeof(raw);
	uint32_t type;

	memset(raw, 0, sizeof(raw));
	for (size_t i = 0; i < size; i++)
		raw[i] = u8();
	switch (v & 7) {
	case 0:		/* random bytes, random size: keep off the harness's ids and pids */
		d->h.conn_id |= 1ull << 62;
		d->h.pid |= 1u << 30;
		break;
	case 1:		/* DATA of a known connection in no direction */
		hdr(&d->h, s, OBS_EV_DATA, s->seq + 1);
		d->dir = 2 + (v >> 3);
		d->cap &= 63;
		d->tail = 0;
		d->len = d->cap;
		size = sizeof(*d) + d->cap;
		break;
	case 2:		/* DATA capturing more than the syscall moved */
		hdr(&d->h, s, OBS_EV_DATA, s->seq + 1);
		d->dir = v >> 3 & 1;
		d->cap = 1 + (d->cap & 63);
		d->tail = d->tail & 7;
		d->len = d->cap + d->tail - 1 - (v >> 4);
		if (d->len > (uint64_t)d->cap + d->tail)
			d->len = 0;
		size = sizeof(*d) + d->cap + d->tail;
		break;
	case 3:		/* DATA shorter than its captured bytes */
		hdr(&d->h, s, OBS_EV_DATA, s->seq + 1);
		d->dir = v >> 3 & 1;
		d->cap = 1 + (d->cap & 63);
		d->tail = d->tail & 7;
		d->len = d->cap + d->tail + (v >> 4);
		size = sizeof(*d) + d->cap + d->tail - 1 - (v >> 4 & 7);
		if (size < sizeof(*d))
			size = sizeof(*d) - 1;
		break;
	case 4:		/* a known type, one byte short */
		type = 1 + (v >> 3) % 5;
		hdr(&d->h, s, type, s->seq + 1);
		size = min_size[type] - 1;
		break;
	default:	/* an unknown type */
		hdr(&d->h, s, 6 + v, s->seq + 1);
		if (d->h.type == OBS_EV_LOG)
			d->h.type = 0;
		break;
	}
	deliver(raw, size, d->h.conn_id);
}

static bool never_alive(void *ctx, uint32_t pid, uint32_t fd, uint64_t ino, uint64_t conn_id)
{
	return false;
}

/* The kernel still tracks the slots' current connections; others maybe. */
static bool maybe_alive(void *ctx, uint32_t pid, uint32_t fd, uint64_t ino, uint64_t conn_id)
{
	for (int i = 0; i < NSLOT; i++)
		if (F.sl[i].id == conn_id)
			return true;
	return (conn_id ^ (uintptr_t)ctx) & 1;
}

static void op_sweep(void)
{
	uint8_t v = u8();

	if (trace)
		fprintf(stderr, "  sweep idle before now-%ums\n", v & 0x7f);

	conn_table__sweep(F.t, F.now - (v & 0x7f) * 1000ull, maybe_alive,
			  (void *)(uintptr_t)(v >> 7));
	stats_check();
}

static void op_expire(void)
{
	uint8_t v = u8();

	if (trace)
		fprintf(stderr, "  expire at now+%ums\n", v * 10);
	conn_table__expire(F.t, F.now + v * 10000000ull);
	stats_check();
}

/* ---- driver ----------------------------------------------------------------- */

static void run(void)
{
	while (F.n) {
		uint8_t op = u8();
		struct slot *s = &F.sl[op >> 5 & 3];

		switch (op & 31) {
		case 0:
		case 1:
			op_open(s);
			break;
		case 2: case 3: case 4:
			op_oracle_request(s);
			break;
		case 5: case 6:
			op_oracle_response(s);
			break;
		case 7:
			op_append_piece(s);
			break;
		case 8:
		case 9:
			op_append_raw(s);
			break;
		case 10:
			op_append_fill(s);
			break;
		case 11: case 12: case 13: case 14: case 15: case 16: case 17:
			op_data(s, false);
			break;
		case 18:
			op_data(s, true);
			break;
		case 19:
			if (!s->opened)
				break;	/* nothing is emitted before OPEN */
			s->seq++;	/* some record of this connection was dropped */
			if (info(s->id))
				info(s->id)->flags |= CI_GAP;
			break;
		case 20:
		case 21:
			op_state(s);
			break;
		case 22:
			op_close(s);
			break;
		case 23:
			op_exit(BASE_PID + (op >> 7));
			break;
		case 24:
			op_late(s);
			break;
		case 25:
		case 26:
			op_garbage(s);
			break;
		case 27:
			op_sweep();
			break;
		case 28:
			op_expire();
			break;
		default:
			op_data(s, false);
			break;
		}
	}
}

/* Close everything; nothing may be left. */
static void finish(void)
{
	const struct conn_stats *st;

	for (int i = 0; i < NSLOT; i++)
		if (F.sl[i].opened && (F.sl[i].id & 1))
			op_close(&F.sl[i]);
	conn_table__sweep(F.t, UINT64_MAX, never_alive, NULL);
	conn_table__expire(F.t, UINT64_MAX);
	stats_check();
	st = conn_table__stats(F.t);
	CHECK(!conn_table__active(F.t) && !F.n_live && !st->requests_in_flight &&
	      F.started == F.done && st->conns_opened == st->conns_closed);
	conn_table__free(F.t);
	F.t = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int i = 0; i < NSLOT; i++) {
		free(F.sl[i].s[0].b);
		free(F.sl[i].s[1].b);
	}
	memset(&F, 0, sizeof(F));
	F.in = data;
	F.n = size;
	F.now = 1000000000ull;
	F.next_id = 1000;
	trace = env_on("FUZZ_CONN_TRACE");
	known_ok = env_on("FUZZ_CONN_KNOWN");
	F.t = conn_table__new(on_event, NULL);
	CHECK(F.t);
	for (int i = 0; i < NSLOT; i++) {
		F.sl[i].pid = BASE_PID + (i & 1);
		F.sl[i].fd = 10 + i;
		slot_renew(&F.sl[i]);
	}
	run();
	finish();
	for (int i = 0; i < NSLOT; i++) {
		free(F.sl[i].s[0].b);
		free(F.sl[i].s[1].b);
		F.sl[i].s[0].b = F.sl[i].s[1].b = NULL;
	}
	return 0;
}
