// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/conn/conn.c: connection streams rebuilt from synthetic kernel
 * records (include/obs.h), exactly as the ring buffer would deliver them.
 * Every record is built in a heap block of exactly its size, so that
 * AddressSanitizer catches a read past it. A failing check prints the case
 * name; main() returns 1 if any failed.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn/conn.h"

#define MAX_PRINTED	200
#define MAX_EVENTS	4096

#include "check.h"

/* ---- what the table reports ---------------------------------------------- */

struct seen {
	enum conn_ev_type type;
	uint64_t conn_id, ts_ns;
	uint32_t pid;
	size_t in_flight;
	char reason[32];
	const struct record *ptr;	/* identity of the record object */
	struct record r;		/* copy at the time of the event */
};

static struct seen seen[MAX_EVENTS];	/* the first MAX_EVENTS events */
static int n_seen;
static int type_count[CONN_EV_CLOSED + 1];	/* all events, by type */
static int n_started_open;	/* REQ_STARTED minus REQ_DONE */

static void on_event(void *ctx, const struct conn_event *e)
{
	struct seen *s;

	type_count[e->type]++;
	if (e->type == CONN_EV_REQ_STARTED)
		n_started_open++;
	if (e->type == CONN_EV_REQ_DONE)
		n_started_open--;
	if (n_seen == MAX_EVENTS)
		return;
	s = &seen[n_seen++];
	memset(s, 0, sizeof(*s));
	s->type = e->type;
	s->conn_id = e->conn_id;
	s->ts_ns = e->ts_ns;
	s->pid = e->pid;
	s->in_flight = e->in_flight;
	snprintf(s->reason, sizeof(s->reason), "%s", e->reason ? e->reason : "");
	if (e->r) {
		s->ptr = e->r;
		s->r = *e->r;
	}
}

/* The i-th REQ_DONE record, or NULL. */
static const struct record *done(int i)
{
	for (int k = 0; k < n_seen; k++)
		if (seen[k].type == CONN_EV_REQ_DONE && !i--)
			return &seen[k].r;
	return NULL;
}

static int count(enum conn_ev_type type)
{
	return type_count[type];
}

/* REQ_DONE records of requests obs parsed (not flagged unmatched). */
static int count_matched(void)
{
	int n = 0;

	for (int k = 0; k < n_seen; k++)
		n += seen[k].type == CONN_EV_REQ_DONE && !(seen[k].r.flags & RECF_UNMATCHED);
	return n;
}

/* The REQ_DONE record with this path (matched requests), or NULL. */
static const struct record *done_path(const char *path)
{
	for (int k = 0; k < n_seen; k++)
		if (seen[k].type == CONN_EV_REQ_DONE && !strcmp(seen[k].r.path, path) &&
		    !(seen[k].r.flags & RECF_UNMATCHED))
			return &seen[k].r;
	return NULL;
}

/* ---- synthetic kernel records -------------------------------------------- */

struct sim {
	struct conn_table *t;
	uint64_t ts;		/* CLOCK_MONOTONIC of the next record */
};

struct sconn {
	uint64_t id;
	uint32_t seq, pid, tid, fd;
};

static void hdr(struct sim *s, struct obs_ev_hdr *h, const struct sconn *c, uint32_t type,
		uint32_t seq)
{
	s->ts += 1000;
	h->ts_ns = s->ts;
	h->conn_id = c ? c->id : 0;
	h->seq = seq;
	h->type = type;
	h->pid = c ? c->pid : 0;
	h->tid = c ? c->tid : 0;
	h->fd = c ? c->fd : 0;
}

/* Hand size bytes at p to the table from an exact-size heap copy. */
static void deliver(struct sim *s, const void *p, size_t size)
{
	void *b = malloc(size ? size : 1);

	if (!b)
		abort();
	memcpy(b, p, size);
	conn_table__event(s->t, b, size);
	free(b);
}

static void ev_open4(struct sim *s, struct sconn *c, const char *laddr, uint16_t lport,
		     const char *raddr, uint16_t rport, const char *comm)
{
	struct obs_ev_open o;

	memset(&o, 0, sizeof(o));
	hdr(s, &o.h, c, OBS_EV_OPEN, ++c->seq);
	o.accept_ts_ns = s->ts - 500;
	o.family = AF_INET;
	inet_pton(AF_INET, laddr, o.laddr);
	inet_pton(AF_INET, raddr, o.raddr);
	o.lport = lport;
	o.rport = rport;
	snprintf(o.comm, sizeof(o.comm), "%s", comm);
	deliver(s, &o, sizeof(o));
}

static void ev_open6(struct sim *s, struct sconn *c, const char *laddr, uint16_t lport,
		     const char *raddr, uint16_t rport)
{
	struct obs_ev_open o;

	memset(&o, 0, sizeof(o));
	hdr(s, &o.h, c, OBS_EV_OPEN, ++c->seq);
	o.family = AF_INET6;
	inet_pton(AF_INET6, laddr, o.laddr);
	inet_pton(AF_INET6, raddr, o.raddr);
	o.lport = lport;
	o.rport = rport;
	memcpy(o.comm, "python3", 8);
	deliver(s, &o, sizeof(o));
}

/* An AF_UNIX connection accepted on path, from the process peer_pid. */
static void ev_open_unix(struct sim *s, struct sconn *c, const char *path, size_t path_len,
			 uint32_t peer_pid)
{
	struct obs_ev_open o;

	memset(&o, 0, sizeof(o));
	hdr(s, &o.h, c, OBS_EV_OPEN, ++c->seq);
	o.accept_ts_ns = s->ts - 500;
	o.family = AF_UNIX;
	o.peer_pid = peer_pid;
	o.ino = 4242;
	memcpy(o.path, path, path_len);
	memcpy(o.comm, "gunicorn", 9);
	deliver(s, &o, sizeof(o));
}

static void ev_open(struct sim *s, struct sconn *c)
{
	ev_open4(s, c, "127.0.0.1", 8000, "10.1.2.3", 40000, "uvicorn");
}

/*
 * One read (dir IN) or write (OUT) of len bytes whose content is d[0..len):
 * the kernel captured the first cap and the last tail of them.
 */
static void ev_data_cap(struct sim *s, struct sconn *c, int dir, const void *d, uint64_t len,
			uint32_t cap, uint16_t tail, uint8_t flags)
{
	size_t size = sizeof(struct obs_ev_data) + cap + tail;
	struct obs_ev_data *e = calloc(1, size);

	if (!e)
		abort();
	hdr(s, &e->h, c, OBS_EV_DATA, ++c->seq);
	e->len = len;
	e->cap = cap;
	e->tail = tail;
	e->dir = dir;
	e->flags = flags;
	if (cap)
		memcpy(e->data, d, cap);
	if (tail)
		memcpy(e->data + cap, (const uint8_t *)d + len - tail, tail);
	conn_table__event(s->t, e, size);
	free(e);
}

static void ev_data(struct sim *s, struct sconn *c, int dir, const void *d, size_t len)
{
	ev_data_cap(s, c, dir, d, len, len, 0, 0);
}

static void ev_in(struct sim *s, struct sconn *c, const char *str)
{
	ev_data(s, c, OBS_DIR_IN, str, strlen(str));
}

static void ev_out(struct sim *s, struct sconn *c, const char *str)
{
	ev_data(s, c, OBS_DIR_OUT, str, strlen(str));
}

static void ev_state_as(struct sim *s, struct sconn *c, uint32_t what, uint32_t seq,
			uint32_t flags)
{
	struct obs_ev_state e;

	memset(&e, 0, sizeof(e));
	hdr(s, &e.h, c, OBS_EV_STATE, seq);
	e.h.flags = flags;
	e.what = what;
	deliver(s, &e, sizeof(e));
}

static void ev_state(struct sim *s, struct sconn *c, uint32_t what)
{
	ev_state_as(s, c, what, ++c->seq, 0);
}

static void ev_close(struct sim *s, struct sconn *c)
{
	struct obs_ev_close e;

	memset(&e, 0, sizeof(e));
	hdr(s, &e.h, c, OBS_EV_CLOSE, ++c->seq);
	deliver(s, &e, sizeof(e));
}

static void ev_exit(struct sim *s, uint32_t pid)
{
	struct obs_ev_exit e;

	memset(&e, 0, sizeof(e));
	hdr(s, &e.h, NULL, OBS_EV_EXIT, 0);
	e.h.pid = pid;
	e.h.tid = pid;
	e.exit_code = 9;
	deliver(s, &e, sizeof(e));
}

/* An event of the connection was dropped by the kernel (ring full). */
static void ev_lose(struct sconn *c)
{
	c->seq++;
}

static void begin_sim(const char *name, struct sim *s)
{
	begin(name);
	n_seen = 0;
	n_started_open = 0;
	memset(type_count, 0, sizeof(type_count));
	s->ts = 1000000;
	s->t = conn_table__new(on_event, NULL);
	if (!s->t)
		abort();
}

/* Every started record was done exactly once; free the table. */
static void end(struct sim *s)
{
	const struct conn_stats *st = conn_table__stats(s->t);

	CHECK_U(n_started_open, 0);
	CHECK_U(st->records_ok + st->records_failed, count(CONN_EV_REQ_DONE));
	conn_table__free(s->t);
	s->t = NULL;
}

static bool has_flag(const struct record *r, uint32_t f)
{
	return r && (r->flags & f) == f;
}

/* ---- tests ----------------------------------------------------------------- */

static const char req_a[] = "GET /a HTTP/1.1\r\nHost: h\r\nUser-Agent: ua/1\r\n\r\n";
static const char resp_ok2[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

static void test_basic(void)
{
	struct sim s;
	struct sconn c = { .id = 7, .pid = 100, .tid = 101, .fd = 9 };
	const struct conn_stats *st;
	const struct record *r;
	uint64_t t_in, t_out;

	begin_sim("basic", &s);
	ev_open(&s, &c);
	c.tid = 102;
	ev_in(&s, &c, req_a);
	t_in = s.ts;
	ev_out(&s, &c, resp_ok2);
	t_out = s.ts;
	ev_close(&s, &c);
	CHECK_U(n_seen, 4);
	CHECK(seen[0].type == CONN_EV_OPENED && seen[1].type == CONN_EV_REQ_STARTED &&
	      seen[2].type == CONN_EV_REQ_DONE && seen[3].type == CONN_EV_CLOSED);
	CHECK(seen[1].ptr == seen[2].ptr);
	CHECK_S(seen[3].reason, ERR_SERVER_CLOSED);
	r = done(0);
	if (CHECK(r)) {
		CHECK_S(r->method, "GET");
		CHECK_S(r->path, "/a");
		CHECK_S(r->host, "h");
		CHECK_S(r->user_agent, "ua/1");
		CHECK_U(r->status, 200);
		CHECK_U(r->outcome, REC_OK);
		CHECK_S(r->error, "");
		CHECK_U(r->flags, 0);
		CHECK_U(r->conn_id, 7);
		CHECK_U(r->pid, 100);
		CHECK_U(r->tid, 102);
		CHECK_U(r->lport, 8000);
		CHECK_S(r->comm, "uvicorn");
		CHECK_S(r->client, "10.1.2.3:40000");
		CHECK_S(r->server, "127.0.0.1:8000");
		CHECK_U(r->client_addr[10], 0xff);
		CHECK_U(r->client_addr[12], 10);
		CHECK_U(r->bytes_in, strlen(req_a));
		CHECK_U(r->bytes_out, strlen(resp_ok2));
		CHECK_U(r->start_ns, t_in);
		CHECK_U(r->resp_start_ns, t_out);
		CHECK_U(r->end_ns, t_out);
		CHECK_U(record__duration_us(r), 1);
	}
	st = conn_table__stats(s.t);
	CHECK_U(st->conns_opened, 1);
	CHECK_U(st->conns_closed, 1);
	CHECK_U(st->records_ok, 1);
	CHECK_U(st->records_failed, 0);
	CHECK_U(st->requests_in_flight, 0);
	CHECK_U(st->bytes_in, strlen(req_a));
	CHECK_U(st->bytes_out, strlen(resp_ok2));
	CHECK_U(st->events[OBS_EV_DATA], 2);
	CHECK_U(st->bad_events, 0);
	CHECK_U(conn_table__active(s.t), 0);
	end(&s);
}

static void test_addresses(void)
{
	struct sim s;
	struct sconn a = { .id = 1, .pid = 1, .fd = 3 }, b = { .id = 2, .pid = 1, .fd = 4 };

	struct sconn c = { .id = 3, .pid = 1, .fd = 5 }, d = { .id = 4, .pid = 1, .fd = 6 };

	begin_sim("addresses", &s);
	ev_open6(&s, &a, "::1", 8443, "2001:db8::7", 51000);
	ev_open6(&s, &b, "::ffff:127.0.0.1", 8000, "::ffff:192.0.2.9", 51001);
	ev_open4(&s, &c, "0.0.0.0", 1, "255.255.255.255", 65535, "x");
	ev_open6(&s, &d, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535,
		 "1:203:405:607:809:a0b:c0d:e0f", 0);
	ev_in(&s, &a, req_a);
	ev_out(&s, &a, resp_ok2);
	ev_in(&s, &b, req_a);
	ev_out(&s, &b, resp_ok2);
	ev_in(&s, &c, req_a);
	ev_out(&s, &c, resp_ok2);
	ev_in(&s, &d, req_a);
	ev_out(&s, &d, resp_ok2);
	if (CHECK(done(0) && done(1) && done(2) && done(3))) {
		CHECK_S(done(0)->client, "[2001:db8::7]:51000");
		CHECK_S(done(0)->server, "[::1]:8443");
		CHECK_S(done(1)->client, "192.0.2.9:51001");	/* v4-mapped shown as IPv4 */
		CHECK_S(done(1)->server, "127.0.0.1:8000");
		CHECK_U(done(0)->client_addr[0], 0x20);
		CHECK_U(done(1)->client_addr[15], 9);
		CHECK_S(done(2)->client, "255.255.255.255:65535");
		CHECK_S(done(2)->server, "0.0.0.0:1");
		CHECK_S(done(3)->client, "[1:203:405:607:809:a0b:c0d:e0f]:0");
		CHECK_S(done(3)->server, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535");
	}
	CHECK_U(conn_table__active(s.t), 4);
	end(&s);
}

/* AF_UNIX: server = the socket path, client = "comm[pid]" of the peer. */
static void test_unix(void)
{
	struct sim s;
	struct sconn a = { .id = 1, .pid = 5, .fd = 3 }, b = { .id = 2, .pid = 5, .fd = 4 },
		     c = { .id = 3, .pid = 5, .fd = 5 }, d = { .id = 4, .pid = 5, .fd = 6 };
	char want[64], longest[OBS_UNIX_PATH_LEN];
	uint32_t me = getpid();
	const struct record *r;

	begin_sim("unix", &s);
	ev_open_unix(&s, &a, "/run/app/gunicorn.sock", 22, me);
	ev_open_unix(&s, &b, "@obs-abstract", 13, 0);
	ev_open_unix(&s, &c, "/x", 2, 4194305);	/* above any pid_max: no /proc entry */
	memset(longest, 'p', sizeof(longest));	/* no NUL at all: cut, never overrun */
	longest[0] = '/';
	ev_open_unix(&s, &d, longest, sizeof(longest), me);
	CHECK_U(seen[0].type, CONN_EV_OPENED);
	ev_in(&s, &a, req_a);
	ev_out(&s, &a, resp_ok2);
	ev_in(&s, &b, req_a);
	ev_out(&s, &b, resp_ok2);
	ev_in(&s, &c, req_a);
	ev_out(&s, &c, resp_ok2);
	ev_in(&s, &d, req_a);
	ev_out(&s, &d, resp_ok2);
	ev_close(&s, &a);
	snprintf(want, sizeof(want), "test_conn[%u]", me);
	if (CHECK((r = done(0)))) {
		CHECK_S(r->server, "/run/app/gunicorn.sock");
		CHECK_S(r->client, want);
		CHECK_U(r->transport, REC_UNIX);
		CHECK_U(r->peer_pid, me);
		CHECK_U(r->lport, 0);
		for (int i = 0; i < 16; i++)
			CHECK_U(r->client_addr[i], 0);
		CHECK_U(r->status, 200);
		CHECK_U(r->outcome, REC_OK);
		CHECK_U(r->bytes_in, strlen(req_a));
		CHECK_U(r->bytes_out, strlen(resp_ok2));
	}
	if (CHECK((r = done(1)))) {
		CHECK_S(r->server, "@obs-abstract");
		CHECK_S(r->client, "");		/* the kernel could not tell the peer */
		CHECK_U(r->peer_pid, 0);
	}
	if (CHECK((r = done(2))))
		CHECK_S(r->client, "[4194305]");	/* gone: its pid only */
	if (CHECK((r = done(3)))) {
		CHECK_U(strlen(r->server), REC_SERVER_MAX - 1);
		CHECK(!memcmp(r->server, longest, REC_SERVER_MAX - 1));
		CHECK_S(r->client, want);
	}
	end(&s);
}

static struct unix_closed {
	uint8_t transport;
	char client[REC_ADDR_MAX], server[REC_SERVER_MAX];
} unix_ev;

static void on_event_unix(void *ctx, const struct conn_event *e)
{
	on_event(ctx, e);
	if (e->type != CONN_EV_CLOSED)
		return;
	unix_ev.transport = e->transport;
	snprintf(unix_ev.client, sizeof(unix_ev.client), "%s", e->client);
	snprintf(unix_ev.server, sizeof(unix_ev.server), "%s", e->server);
}

/* Lifecycle events carry the transport and the UNIX names too; the peer's
 * name is read once per PEER_NAME_TTL_NS per pid. */
static void test_unix_events_and_names(void)
{
	struct sim s;
	struct sconn a = { .id = 1, .pid = 5, .fd = 3 }, b = { .id = 2, .pid = 5, .fd = 4 },
		     c = { .id = 3, .pid = 5, .fd = 5 }, d = { .id = 4, .pid = 5, .fd = 6 };
	char old[17] = "", want[64];
	uint32_t me = getpid();

	begin_sim("unix events and peer names", &s);
	conn_table__free(s.t);
	s.t = conn_table__new(on_event_unix, NULL);
	prctl(PR_GET_NAME, old);
	ev_open_unix(&s, &a, "/run/a.sock", 11, me);
	ev_close(&s, &a);
	CHECK_U(unix_ev.transport, REC_UNIX);
	CHECK_S(unix_ev.server, "/run/a.sock");
	snprintf(want, sizeof(want), "%s[%u]", old, me);
	CHECK_S(unix_ev.client, want);
	prctl(PR_SET_NAME, "renamed");
	ev_open_unix(&s, &b, "/run/a.sock", 11, me);	/* 2 us later: the cached name */
	ev_close(&s, &b);
	CHECK_S(unix_ev.client, want);
	s.ts += PEER_NAME_TTL_NS;
	ev_open_unix(&s, &c, "/run/a.sock", 11, me);	/* read again */
	ev_close(&s, &c);
	snprintf(want, sizeof(want), "renamed[%u]", me);
	CHECK_S(unix_ev.client, want);
	prctl(PR_SET_NAME, old);
	ev_open4(&s, &d, "127.0.0.1", 80, "127.0.0.2", 5000, "nginx");
	ev_close(&s, &d);
	CHECK_U(unix_ev.transport, REC_TCP);
	CHECK_S(unix_ev.server, "127.0.0.1:80");
	CHECK_S(unix_ev.client, "127.0.0.2:5000");
	end(&s);
}

/* Three pipelined requests and their responses, cut at every point. */
static const char pipe_in[] =
	"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n"
	"POST /p2 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
	"PUT /p3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
static const char *const pipe_in_msgs[] = {
	"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /p2 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
	"PUT /p3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
};
static const char pipe_out[] =
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nmade\r\n0\r\n\r\n"
	"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
static const char *const pipe_out_msgs[] = {
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nmade\r\n0\r\n\r\n",
	"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
};

static void check_pipelined(void)
{
	static const char *const paths[] = { "/p1", "/p2", "/p3" };
	static const char *const methods[] = { "GET", "POST", "PUT" };
	static const int status[] = { 200, 201, 404 };
	bool ok = CHECK_U(count(CONN_EV_REQ_DONE), 3);

	for (int i = 0; ok && i < 3; i++) {
		const struct record *r = done(i);

		ok &= CHECK_S(r->path, paths[i]) && CHECK_S(r->method, methods[i]) &&
		      CHECK_U(r->status, status[i]) && CHECK_U(r->outcome, REC_OK) &&
		      CHECK_U(r->bytes_in, strlen(pipe_in_msgs[i])) &&
		      CHECK_U(r->bytes_out, strlen(pipe_out_msgs[i])) && CHECK_U(r->flags, 0) &&
		      CHECK(r->start_ns <= r->resp_start_ns && r->resp_start_ns <= r->end_ns);
	}
}

static void test_pipelining_splits(void)
{
	size_t ni = strlen(pipe_in), no = strlen(pipe_out);
	int bad_before = n_failed;

	/* requests in two reads cut at i, responses in two writes cut at j */
	for (size_t i = 1; i < ni && n_failed == bad_before; i++) {
		for (size_t j = 1; j < no && n_failed == bad_before; j += 7) {
			struct sim s;
			struct sconn c = { .id = 11, .pid = 5, .fd = 5 };

			begin_sim("pipelining_splits", &s);
			ev_open(&s, &c);
			ev_data(&s, &c, OBS_DIR_IN, pipe_in, i);
			ev_data(&s, &c, OBS_DIR_IN, pipe_in + i, ni - i);
			ev_data(&s, &c, OBS_DIR_OUT, pipe_out, j);
			ev_data(&s, &c, OBS_DIR_OUT, pipe_out + j, no - j);
			check_pipelined();
			CHECK_U(conn_table__stats(s.t)->requests_in_flight, 0);
			ev_close(&s, &c);
			CHECK_U(count(CONN_EV_REQ_DONE), 3);
			end(&s);
			if (n_failed != bad_before)
				fprintf(stderr, "  (cut requests at %zu, responses at %zu)\n", i, j);
		}
	}
}

/* Responses interleaved with the reads: each answered before the next is read. */
static void test_pipelining_interleaved(void)
{
	struct sim s;
	struct sconn c = { .id = 12, .pid = 5, .fd = 5 };
	size_t l0 = strlen(pipe_in_msgs[0]);

	begin_sim("pipelining_interleaved", &s);
	ev_open(&s, &c);
	/* the first request and half of the second in one read */
	ev_data(&s, &c, OBS_DIR_IN, pipe_in, l0 + 10);
	CHECK_U(conn_table__stats(s.t)->requests_in_flight, 1);
	ev_out(&s, &c, pipe_out_msgs[0]);
	ev_data(&s, &c, OBS_DIR_IN, pipe_in + l0 + 10, strlen(pipe_in) - l0 - 10);
	CHECK_U(conn_table__stats(s.t)->requests_in_flight, 2);
	ev_out(&s, &c, pipe_out_msgs[1]);
	ev_out(&s, &c, pipe_out_msgs[2]);
	check_pipelined();
	end(&s);
}

/* One byte per read and per write. */
static void test_byte_at_a_time(void)
{
	struct sim s;
	struct sconn c = { .id = 13, .pid = 5, .fd = 5 };

	begin_sim("byte_at_a_time", &s);
	ev_open(&s, &c);
	for (size_t i = 0; pipe_in[i]; i++)
		ev_data(&s, &c, OBS_DIR_IN, pipe_in + i, 1);
	for (size_t i = 0; pipe_out[i]; i++)
		ev_data(&s, &c, OBS_DIR_OUT, pipe_out + i, 1);
	check_pipelined();
	end(&s);
}

/* The client read the response and closed at once: its FIN, written on its
 * CPU, took the connection's number before the server's last write, which
 * reserved its place in the ring first, took the next. Either order in the
 * ring is no gap, and the request is ok once no late RST came. */
static void test_peer_fin_races_write(void)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
	struct sim s;
	struct sconn c = { .id = 21, .pid = 5, .fd = 5 };
	const struct record *r;

	for (int fin_first = 0; fin_first < 2; fin_first++) {
		begin_sim(fin_first ? "peer_fin_races_write: FIN first" :
				      "peer_fin_races_write: write first", &s);
		ev_open(&s, &c);
		ev_in(&s, &c, req_a);
		ev_out(&s, &c, head);
		if (fin_first) {
			/* the peer's FIN as the kernel writes it: unnumbered, the
			 * connection's last number (obs.h) */
			ev_state_as(&s, &c, OBS_ST_PEER_FIN, c.seq, OBS_HF_UNNUMBERED);
			ev_out(&s, &c, "ok");
		} else {
			ev_out(&s, &c, "ok");
			ev_state_as(&s, &c, OBS_ST_PEER_FIN, c.seq - 1, OBS_HF_UNNUMBERED);
		}
		ev_close(&s, &c);
		conn_table__expire(s.t, s.ts + 1000000000ull);	/* no late RST (fin_held) */
		CHECK_U(conn_table__stats(s.t)->seq_gaps, 0);
		r = done_path("/a");
		if (CHECK(r)) {
			CHECK_U(r->outcome, REC_OK);
			CHECK_S(r->error, "");
			CHECK_U(r->bytes_out, strlen(head) + 2);
		}
		end(&s);
		c.seq = 0;
	}
}

/* A sequence gap: the request in flight fails "lost"; nothing is made up. */
static void test_loss_in_flight(void)
{
	struct sim s;
	struct sconn c = { .id = 20, .pid = 5, .fd = 5 };
	const struct record *r;

	begin_sim("loss_in_flight", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, req_a);
	ev_lose(&c);		/* e.g. the response head */
	ev_out(&s, &c, "ok");	/* the rest of the response body */
	r = done_path("/a");
	if (CHECK(r)) {
		CHECK_U(r->outcome, REC_FAILED);
		CHECK_S(r->error, ERR_LOST);
		CHECK(has_flag(r, RECF_LOST));
		CHECK_U(r->status, 0);
	}
	CHECK_U(conn_table__stats(s.t)->seq_gaps, 1);
	/* the connection goes on and is followed again */
	ev_in(&s, &c, "GET /b HTTP/1.1\r\n\r\n");
	ev_out(&s, &c, resp_ok2);
	r = done_path("/b");
	if (CHECK(r)) {
		CHECK_U(r->outcome, REC_OK);
		CHECK_U(r->status, 200);
		CHECK(!has_flag(r, RECF_LOST));
	}
	ev_close(&s, &c);
	CHECK_U(count(CONN_EV_REQ_DONE), 2);
	CHECK_U(count_matched(), 2);
	end(&s);
}

/* A lost read: the response to the request obs never saw is not paired with another. */
static void test_loss_of_request(void)
{
	struct sim s;
	struct sconn c = { .id = 21, .pid = 5, .fd = 5 };

	begin_sim("loss_of_request", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, req_a);
	ev_out(&s, &c, resp_ok2);
	ev_lose(&c);	/* the read of GET /b */
	ev_out(&s, &c, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
	ev_close(&s, &c);
	CHECK_U(count_matched(), 1);
	if (CHECK(done_path("/a")))
		CHECK_U(done_path("/a")->status, 200);
	/* the 201 can only be reported as a response without a request */
	for (int i = 0; done(i); i++)
		if (done(i)->status == 201)
			CHECK(has_flag(done(i), RECF_UNMATCHED) && !done(i)->method[0]);
	end(&s);
}

/*
 * Loss inside a pipelined stream: /1 was read, the read holding /2 was lost,
 * /3 was read; then the server answers 201, 202, 203 in order. No record may
 * say that /3 was answered 201 or 202: those were the answers to /1 and /2.
 */
static void test_loss_pipelined(void)
{
	struct sim s;
	struct sconn c = { .id = 22, .pid = 5, .fd = 5 };
	const struct record *r;

	begin_sim("loss_pipelined", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, "GET /1 HTTP/1.1\r\n\r\n");
	ev_lose(&c);	/* GET /2 */
	ev_in(&s, &c, "GET /3 HTTP/1.1\r\n\r\n");
	ev_out(&s, &c, "HTTP/1.1 201 A\r\nContent-Length: 0\r\n\r\n");
	ev_out(&s, &c, "HTTP/1.1 202 B\r\nContent-Length: 0\r\n\r\n");
	ev_out(&s, &c, "HTTP/1.1 203 C\r\nContent-Length: 0\r\n\r\n");
	ev_close(&s, &c);
	r = done_path("/1");
	if (CHECK(r))
		CHECK(r->outcome == REC_FAILED && !strcmp(r->error, ERR_LOST));
	r = done_path("/3");
	if (CHECK(r))
		check(r->status == 0 || r->status == 203, __FILE__, __LINE__,
		      "GET /3 reported with status %d: the answer to an earlier request "
		      "(outcome %d, error \"%s\")", r->status, r->outcome, r->error);
	end(&s);
}

/*
 * Pipelined requests partly in uncaptured bytes (a read longer than the
 * capture): /1 captured, /2 in the gap, /3 in the next read. The server
 * answers 201, 202, 203. /3 must not be paired with 202.
 */
static void test_gap_pipelined(void)
{
	static const char in1[] = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nX-Pad: "
				  "0123456789012345678901234567890123456789\r\n\r\n";
	struct sim s;
	struct sconn c = { .id = 23, .pid = 5, .fd = 5 };
	const struct record *r;
	size_t n1 = strlen(in1);

	begin_sim("gap_pipelined", &s);
	ev_open(&s, &c);
	ev_data_cap(&s, &c, OBS_DIR_IN, in1, n1, 24, 0, 0);	/* /2 not captured */
	ev_in(&s, &c, "GET /3 HTTP/1.1\r\n\r\n");
	ev_out(&s, &c, "HTTP/1.1 201 A\r\nContent-Length: 0\r\n\r\n");
	ev_out(&s, &c, "HTTP/1.1 202 B\r\nContent-Length: 0\r\n\r\n");
	ev_out(&s, &c, "HTTP/1.1 203 C\r\nContent-Length: 0\r\n\r\n");
	ev_close(&s, &c);
	r = done_path("/1");
	if (CHECK(r))
		CHECK_U(r->status, 201);
	r = done_path("/3");
	if (CHECK(r))
		check(r->status == 0 || r->status == 203, __FILE__, __LINE__,
		      "GET /3 reported with status %d: the answer to /2, hidden in a capture gap "
		      "(outcome %d, error \"%s\", flags %#x)", r->status, r->outcome, r->error,
		      r->flags);
	end(&s);
}

/*
 * A pipelined read longer than the capture ends inside a request line
 * ("...GET /41 HTTP/1.1\r\n\r\nG"); the next read starts "ET /42 HTTP/1.1".
 * That is the middle of a request, not a request with method "ET".
 */
static void test_gap_mid_request_line(void)
{
	char in1[4096], in2[256];
	size_t n1 = 0, n2;
	struct sim s;
	struct sconn c = { .id = 24, .pid = 5, .fd = 5 };
	int n;

	begin_sim("gap_mid_request_line", &s);
	ev_open(&s, &c);
	for (n = 0; n1 < 3000; n++)
		n1 += snprintf(in1 + n1, sizeof(in1) - n1, "GET /%d HTTP/1.1\r\n\r\n", n);
	in1[n1++] = 'G';
	n2 = snprintf(in2, sizeof(in2), "ET /%d HTTP/1.1\r\n\r\n", n);
	ev_data_cap(&s, &c, OBS_DIR_IN, in1, n1, OBS_CAP_DEFAULT, OBS_TAIL_MAX, 0);
	ev_data(&s, &c, OBS_DIR_IN, in2, n2);
	ev_close(&s, &c);
	for (int k = 0; done(k); k++)
		check(strcmp(done(k)->method, "ET") != 0, __FILE__, __LINE__,
		      "invented request \"%s %s\" from the middle of \"GET %s\" (outcome %d, "
		      "error \"%s\")", done(k)->method, done(k)->path, done(k)->path,
		      done(k)->outcome, done(k)->error);
	end(&s);
}

/*
 * The OPEN and the first records of a connection were lost: its first record
 * seen (seq 5) starts in the middle of a request body. Nothing in it may
 * become a request.
 */
static void test_orphan_mid_stream(void)
{
	struct sim s;
	struct sconn c = { .id = 25, .pid = 5, .fd = 5, .seq = 4 };

	begin_sim("orphan_mid_stream", &s);
	ev_in(&s, &c, "bbbbbbbb /k1 HTTP/1.1\r\n\r\n");
	ev_close(&s, &c);
	for (int k = 0; done(k); k++)
		check(strcmp(done(k)->method, "bbbbbbbb") != 0, __FILE__, __LINE__,
		      "invented request \"%s %s\" from a stream whose start was lost",
		      done(k)->method, done(k)->path);
	end(&s);
}

/*
 * A client writes its request a byte at a time; the read of "P" is lost.
 * The next reads, "O", "S", "T", ..., are the rest of POST, not OPTIONS or a
 * request with method "OST".
 */
static void test_loss_mid_method(void)
{
	static const char req[] = "POST /m HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
	struct sim s;
	struct sconn c = { .id = 26, .pid = 5, .fd = 5 };

	begin_sim("loss_mid_method", &s);
	ev_open(&s, &c);
	ev_lose(&c);	/* the read of "P" */
	for (size_t i = 1; req[i]; i++)
		ev_data(&s, &c, OBS_DIR_IN, req + i, 1);
	ev_out(&s, &c, resp_ok2);
	ev_close(&s, &c);
	for (int k = 0; done(k); k++)
		check(!done(k)->method[0] || !strcmp(done(k)->method, "POST"), __FILE__, __LINE__,
		      "invented request \"%s %s\" (status %d) from the rest of \"POST /m\"",
		      done(k)->method, done(k)->path, done(k)->status);
	end(&s);
}

/*
 * Pipelined responses coalesced into one write longer than the capture: the
 * uncaptured middle holds the end of the first (chunked) response and the
 * start of the second; the captured tail is the end of the second. The next
 * write is the third response. /2 was answered 202 and /3 203: no record may
 * say /2 got 203.
 */
static void test_gap_pipelined_responses(void)
{
	static char out[4096];
	struct sim s;
	struct sconn c = { .id = 27, .pid = 5, .fd = 5 };
	size_t n = 0;
	const struct record *r;

	begin_sim("gap_pipelined_responses", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n");
	n += snprintf(out + n, sizeof(out) - n,
		      "HTTP/1.1 201 A\r\nTransfer-Encoding: chunked\r\n\r\nbb8\r\n");
	memset(out + n, 'x', 3000);
	n += 3000;
	n += snprintf(out + n, sizeof(out) - n, "\r\n0\r\n\r\n"
		      "HTTP/1.1 202 B\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n");
	memset(out + n, 'y', 100);
	n += 100;
	n += snprintf(out + n, sizeof(out) - n, "\r\n0\r\n\r\n");
	ev_data_cap(&s, &c, OBS_DIR_OUT, out, n, OBS_CAP_DEFAULT, OBS_TAIL_MAX, 0);
	ev_out(&s, &c, "HTTP/1.1 203 C\r\nContent-Length: 0\r\n\r\n");
	ev_close(&s, &c);
	r = done_path("/1");
	if (CHECK(r))
		CHECK_U(r->status, 201);
	r = done_path("/2");
	if (CHECK(r))
		check(r->status == 0 || r->status == 202, __FILE__, __LINE__,
		      "GET /2 reported with status %d: the answer to /3 (outcome %d, error \"%s\", "
		      "flags %#x)", r->status, r->outcome, r->error, r->flags);
	r = done_path("/3");
	if (CHECK(r))
		check(r->status == 0 || r->status == 203, __FILE__, __LINE__,
		      "GET /3 reported with status %d", r->status);
	end(&s);
}

/*
 * A pipelined read longer than the capture whose captured head ends inside
 * a request's header lines: the uncaptured middle holds the rest of that
 * request and whole further requests, and the captured tail ends with a
 * blank line (the last request's end). The head's end is inferred there, so
 * requests were swallowed; the next read brings more. Every request /pN is
 * answered 200 + N in order: no record may carry another request's status.
 */
static void test_gap_inferred_head_pipelined(void)
{
	static char in1[8192], in2[512], pad[201];
	struct sim s;
	struct sconn c = { .id = 28, .pid = 5, .fd = 5 };
	size_t n1 = 0, n2 = 0, start = 0;
	int n = 0, first2;

	begin_sim("gap_inferred_head_pipelined", &s);
	memset(pad, 'a', sizeof(pad) - 1);
	while (n1 < 3000) {
		if (n1 <= OBS_CAP_DEFAULT)
			start = n1;
		n1 += snprintf(in1 + n1, sizeof(in1) - n1, "GET /p%d HTTP/1.1\r\nX-Pad: %s\r\n\r\n",
			       n, pad);
		n++;
	}
	/* the capture ends after the request line of the request at start */
	if (!CHECK(memchr(in1 + start, '\n', OBS_CAP_DEFAULT - start)))
		return;
	first2 = n;
	for (int i = 0; i < 2; i++, n++)
		n2 += snprintf(in2 + n2, sizeof(in2) - n2, "GET /p%d HTTP/1.1\r\n\r\n", n);
	ev_open(&s, &c);
	ev_data_cap(&s, &c, OBS_DIR_IN, in1, n1, OBS_CAP_DEFAULT, OBS_TAIL_MAX, 0);
	ev_data(&s, &c, OBS_DIR_IN, in2, n2);
	for (int i = 0; i < n; i++) {
		char resp[64];

		snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", 200 + i);
		ev_out(&s, &c, resp);
	}
	ev_close(&s, &c);
	for (int k = 0; done(k); k++) {
		const struct record *r = done(k);
		int p;

		if (sscanf(r->path, "/p%d", &p) != 1 || !r->status)
			continue;
		check(r->status == 200 + p, __FILE__, __LINE__,
		      "GET %s reported with status %d, the answer to /p%d (outcome %d, error \"%s\", "
		      "flags %#x; %d requests in the first read, %d in the second)", r->path, r->status,
		      r->status - 200, r->outcome, r->error, r->flags, first2, n - first2);
	}
	end(&s);
}

/*
 * Losses in a pipelined stream, then the server answers /1../4 in one write
 * while /5 and /6 are read but not answered yet; /7 and /8 are read; then
 * /5 is answered 205. Giving up on unsure pairs must not make /7 the owner
 * of /5's answer.
 */
static void test_loss_pipelined_drain(void)
{
	struct sim s;
	struct sconn c = { .id = 29, .pid = 5, .fd = 5 };
	char out[512];
	size_t n = 0;

	begin_sim("loss_pipelined_drain", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, "GET /p1 HTTP/1.1\r\n\r\n");
	ev_lose(&c);
	ev_in(&s, &c, "GET /p2 HTTP/1.1\r\n\r\n");
	ev_lose(&c);
	ev_in(&s, &c, "GET /p3 HTTP/1.1\r\n\r\nGET /p4 HTTP/1.1\r\n\r\n");
	ev_in(&s, &c, "GET /p5 HTTP/1.1\r\n\r\nGET /p6 HTTP/1.1\r\n\r\n");
	for (int i = 1; i <= 4; i++)
		n += snprintf(out + n, sizeof(out) - n, "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n",
			      200 + i);
	ev_data(&s, &c, OBS_DIR_OUT, out, n);
	ev_in(&s, &c, "GET /p7 HTTP/1.1\r\n\r\nGET /p8 HTTP/1.1\r\n\r\n");
	for (int i = 5; i <= 8; i++) {
		snprintf(out, sizeof(out), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", 200 + i);
		ev_out(&s, &c, out);
	}
	ev_close(&s, &c);
	for (int k = 0; done(k); k++) {
		const struct record *r = done(k);
		int p;

		if (sscanf(r->path, "/p%d", &p) != 1 || !r->status)
			continue;
		check(r->status == 200 + p, __FILE__, __LINE__,
		      "GET %s reported with status %d, the answer to /p%d (outcome %d, error \"%s\", "
		      "flags %#x)", r->path, r->status, r->status - 200, r->outcome, r->error, r->flags);
	}
	end(&s);
}

static void test_close_pending(void)
{
	static const struct {
		const char *name;
		uint32_t state;		/* 0: none */
		const char *error;
	} cases[] = {
		{ "close_pending_server", 0, ERR_SERVER_CLOSED },
		{ "close_pending_fin", OBS_ST_PEER_FIN, ERR_CLIENT_CLOSED },
		{ "close_pending_reset", OBS_ST_RESET, ERR_CLIENT_RESET },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sim s;
		struct sconn c = { .id = 30 + i, .pid = 5, .fd = 5 };
		const struct record *r;

		begin_sim(cases[i].name, &s);
		ev_open(&s, &c);
		ev_in(&s, &c, "GET /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n");
		CHECK_U(conn_table__stats(s.t)->requests_in_flight, 2);
		if (cases[i].state) {
			ev_state(&s, &c, cases[i].state);
			CHECK_U(count(CONN_EV_DISCONNECTED), 1);
		}
		ev_close(&s, &c);
		CHECK_U(count(CONN_EV_REQ_DONE), 2);
		for (int k = 0; (r = done(k)); k++) {
			CHECK_U(r->outcome, REC_FAILED);
			CHECK_S(r->error, cases[i].error);
			CHECK_U(r->status, 0);
			CHECK(r->end_ns == s.ts);	/* failed when the close was seen */
		}
		if (CHECK(done(0) && done(1)))
			CHECK(!strcmp(done(0)->path, "/x") && !strcmp(done(1)->path, "/y"));
		CHECK_U(conn_table__stats(s.t)->records_failed, 2);
		CHECK_U(conn_table__stats(s.t)->requests_in_flight, 0);
		CHECK_U(conn_table__active(s.t), 0);
		end(&s);
	}
}

/* A keep-alive connection closed while idle is not a disconnect. */
static void test_idle_fin(void)
{
	struct sim s;
	struct sconn c = { .id = 35, .pid = 5, .fd = 5 };

	begin_sim("idle_fin", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, req_a);
	ev_out(&s, &c, resp_ok2);
	ev_state(&s, &c, OBS_ST_PEER_FIN);
	ev_close(&s, &c);
	CHECK_U(count(CONN_EV_DISCONNECTED), 0);
	CHECK_U(count(CONN_EV_REQ_DONE), 1);
	CHECK_U(done(0)->outcome, REC_OK);
	end(&s);
}

static void test_partial_head(void)
{
	struct sim s;
	struct sconn c = { .id = 36, .pid = 5, .fd = 5 };

	begin_sim("partial_head", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, "GET /half HTT");
	ev_close(&s, &c);
	CHECK_U(count(CONN_EV_REQ_STARTED), 0);
	CHECK_U(count(CONN_EV_REQ_DONE), 0);
	CHECK_U(conn_table__stats(s.t)->incomplete_requests, 1);
	end(&s);
}

static void test_response_incomplete(void)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this";
	struct sim s;
	struct sconn c = { .id = 37, .pid = 5, .fd = 5 };
	const struct record *r;

	begin_sim("response_incomplete", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, req_a);
	ev_out(&s, &c, resp);
	ev_close(&s, &c);
	r = done(0);
	if (CHECK(r)) {
		CHECK_U(r->outcome, REC_FAILED);
		CHECK_S(r->error, ERR_RESP_INCOMPLETE);
		CHECK_U(r->status, 200);
		CHECK_U(r->bytes_out, strlen(resp));
	}
	CHECK_U(count(CONN_EV_REQ_DONE), 1);
	end(&s);
}

/* A close-delimited response completes at close. */
static void test_eof_body(void)
{
	struct sim s;
	struct sconn c = { .id = 38, .pid = 5, .fd = 5 };
	static const char resp[] = "HTTP/1.0 200 OK\r\n\r\nuntil close";

	begin_sim("eof_body", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, "GET /old HTTP/1.0\r\n\r\n");
	ev_out(&s, &c, resp);
	CHECK_U(count(CONN_EV_REQ_DONE), 0);
	ev_close(&s, &c);
	if (CHECK(done(0))) {
		CHECK_U(done(0)->outcome, REC_OK);
		CHECK_U(done(0)->bytes_out, strlen(resp));
		CHECK_U(done(0)->version_minor, 0);
	}
	end(&s);
}

static void test_process_exit(void)
{
	static const char up[] = "POST /up HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345";
	struct sim s;
	struct sconn a = { .id = 40, .pid = 100, .fd = 5 }, b = { .id = 41, .pid = 100, .fd = 6 };
	struct sconn other = { .id = 42, .pid = 200, .fd = 5 };

	begin_sim("process_exit", &s);
	ev_open(&s, &a);
	ev_open(&s, &b);
	ev_open(&s, &other);
	ev_in(&s, &a, "GET /slow HTTP/1.1\r\n\r\n");
	ev_in(&s, &b, up);
	ev_in(&s, &other, "GET /other HTTP/1.1\r\n\r\n");
	ev_exit(&s, 100);
	CHECK_U(count(CONN_EV_REQ_DONE), 2);
	for (int k = 0; done(k); k++) {
		CHECK_U(done(k)->outcome, REC_FAILED);
		CHECK_S(done(k)->error, ERR_PROCESS_EXIT);
		CHECK_U(done(k)->pid, 100);
	}
	if (CHECK(done_path("/up")))
		CHECK_U(done_path("/up")->bytes_in, strlen(up));
	CHECK_U(count(CONN_EV_CLOSED), 2);
	CHECK_U(conn_table__active(s.t), 1);
	CHECK_U(conn_table__stats(s.t)->requests_in_flight, 1);
	/* the kernel dropped the dead process's connections: a CLOSE may still come */
	ev_close(&s, &a);
	CHECK_U(conn_table__active(s.t), 1);
	ev_out(&s, &other, resp_ok2);
	CHECK_U(count(CONN_EV_REQ_DONE), 3);
	if (CHECK(done_path("/other")))
		CHECK_U(done_path("/other")->outcome, REC_OK);
	end(&s);
}

/* After 101 nothing on the connection is HTTP/1 any more. */
static void test_upgrade(void)
{
	static const char hs_in[] = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
				    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n";
	static const char hs_out[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
				     "Connection: Upgrade\r\n\r\n";
	struct sim s;
	struct sconn c = { .id = 50, .pid = 5, .fd = 5 };
	const struct conn_stats *st;

	begin_sim("upgrade", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, hs_in);
	ev_out(&s, &c, hs_out);
	CHECK_U(count(CONN_EV_REQ_DONE), 1);
	if (CHECK(done(0))) {
		CHECK_U(done(0)->status, 101);
		CHECK_U(done(0)->outcome, REC_OK);
		CHECK_U(done(0)->bytes_out, strlen(hs_out));
	}
	/* frames that happen to look like HTTP/1, and garbage */
	ev_in(&s, &c, "GET /not-http HTTP/1.1\r\n\r\n");
	ev_out(&s, &c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	ev_in(&s, &c, "\x81\x85\x01\x02\x03\x04garbage");
	ev_out(&s, &c, "\x81\x05hello");
	ev_close(&s, &c);
	st = conn_table__stats(s.t);
	CHECK_U(count(CONN_EV_REQ_STARTED), 1);
	CHECK_U(count(CONN_EV_REQ_DONE), 1);
	for (int d = 0; d < 2; d++)
		for (int e = 0; e < H1E_MAX; e++)
			CHECK_U(st->parse_errors[d][e], 0);
	CHECK_U(st->records_failed, 0);
	end(&s);
}

/* A 2xx to CONNECT is a tunnel: the same. */
static void test_connect_tunnel(void)
{
	struct sim s;
	struct sconn c = { .id = 51, .pid = 5, .fd = 5 };

	begin_sim("connect_tunnel", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
	ev_out(&s, &c, "HTTP/1.1 200 Connection established\r\n\r\n");
	ev_in(&s, &c, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
	ev_in(&s, &c, "GET / HTTP/1.1\r\n\r\n");
	ev_out(&s, &c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	ev_close(&s, &c);
	CHECK_U(count(CONN_EV_REQ_DONE), 1);
	if (CHECK(done(0))) {
		CHECK_S(done(0)->method, "CONNECT");
		CHECK_U(done(0)->status, 200);
		CHECK_U(done(0)->outcome, REC_OK);
	}
	end(&s);
}

/* The server answers before reading the whole request body (413, early 401). */
static void test_response_before_body(void)
{
	static const char head[] = "POST /up HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
	static const char resp[] = "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n";
	struct sim s;
	struct sconn c = { .id = 60, .pid = 5, .fd = 5 };
	const struct conn_stats *st;
	const struct record *r;

	begin_sim("response_before_body", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, "POST /up HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234");
	ev_out(&s, &c, resp);
	r = done(0);
	if (CHECK(r)) {
		CHECK_S(r->path, "/up");
		CHECK_U(r->status, 413);
		CHECK_U(r->outcome, REC_OK);
		CHECK_U(r->bytes_in, strlen(head) + 5);	/* as read when answered */
		CHECK_U(r->bytes_out, strlen(resp));
	}
	/* the rest of the body arrives; then the next request */
	ev_in(&s, &c, "56789");
	ev_in(&s, &c, "GET /next HTTP/1.1\r\n\r\n");
	ev_out(&s, &c, resp_ok2);
	ev_close(&s, &c);
	st = conn_table__stats(s.t);
	CHECK_U(count(CONN_EV_REQ_DONE), 2);
	if (CHECK(done_path("/next")))
		CHECK_U(done_path("/next")->status, 200);
	CHECK_U(st->parse_errors[OBS_DIR_IN][H1E_BAD_START], 0);
	CHECK_U(st->records_failed, 0);
	end(&s);
}

static void test_head_and_interim(void)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	static const char fin[] = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
	static const char head_resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n";
	struct sim s;
	struct sconn c = { .id = 61, .pid = 5, .fd = 5 };
	uint64_t t_cont;

	begin_sim("head_and_interim", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, "HEAD /h HTTP/1.1\r\n\r\n");
	ev_out(&s, &c, head_resp);	/* no body follows a response to HEAD */
	ev_in(&s, &c, "POST /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
	ev_out(&s, &c, cont);
	t_cont = s.ts;
	CHECK_U(count(CONN_EV_REQ_DONE), 1);	/* interim: not final */
	ev_in(&s, &c, "abc");
	ev_out(&s, &c, fin);
	ev_close(&s, &c);
	if (CHECK(done_path("/h"))) {
		CHECK_U(done_path("/h")->status, 200);
		CHECK_U(done_path("/h")->outcome, REC_OK);
		CHECK_U(done_path("/h")->bytes_out, strlen(head_resp));
	}
	if (CHECK(done_path("/c"))) {
		CHECK_U(done_path("/c")->status, 201);
		CHECK_U(done_path("/c")->bytes_out, strlen(cont) + strlen(fin));
		CHECK_U(done_path("/c")->resp_start_ns, t_cont);
	}
	CHECK_U(count(CONN_EV_REQ_DONE), 2);
	end(&s);
}

/* The server answers bytes obs could not parse: flagged, never given a request. */
static void test_unmatched(void)
{
	struct sim s;
	struct sconn c = { .id = 62, .pid = 5, .fd = 5 };
	const struct conn_stats *st;

	begin_sim("unmatched", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, "GET /bad\x01path HTTP/1.1\r\n\r\n");
	ev_out(&s, &c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	ev_close(&s, &c);
	st = conn_table__stats(s.t);
	CHECK_U(st->parse_errors[OBS_DIR_IN][H1E_BAD_START], 1);
	CHECK_U(count(CONN_EV_REQ_DONE), 1);
	if (CHECK(done(0))) {
		CHECK(has_flag(done(0), RECF_UNMATCHED));
		CHECK_S(done(0)->method, "");
		CHECK_S(done(0)->path, "");
		CHECK_U(done(0)->status, 400);
		CHECK_U(done(0)->outcome, REC_OK);
	}
	end(&s);
}

/* Records the kernel could never write are counted and change nothing. */
static void test_bad_records(void)
{
	struct sim s;
	struct sconn c = { .id = 70, .pid = 5, .fd = 5 };
	uint8_t raw[sizeof(struct obs_ev_open) + 16];
	struct obs_ev_data *d = (struct obs_ev_data *)raw;
	struct obs_ev_hdr h;
	const struct conn_stats *st;
	uint32_t seq;

	begin_sim("bad_records", &s);
	ev_open(&s, &c);
	seq = c.seq + 1;
	st = conn_table__stats(s.t);
	memset(raw, 0, sizeof(raw));
	hdr(&s, &d->h, &c, OBS_EV_DATA, seq);
	d->len = 16;
	d->cap = 16;
	memcpy(d->data, "GET / HTTP/1.1\r\n", 16);
	deliver(&s, raw, sizeof(struct obs_ev_data) + 15);	/* shorter than cap */
	d->cap = 17;
	deliver(&s, raw, sizeof(raw));				/* cap > len */
	d->cap = 8;
	d->tail = 9;
	deliver(&s, raw, sizeof(raw));				/* cap + tail > len */
	d->cap = 16;
	d->tail = 0;
	d->dir = 2;
	deliver(&s, raw, sizeof(raw));				/* no such direction */
	d->dir = 0;
	d->h.type = 99;
	deliver(&s, raw, sizeof(raw));				/* no such type */
	d->h.type = 0;
	deliver(&s, raw, sizeof(raw));
	d->h.type = OBS_EV_OPEN;
	deliver(&s, raw, sizeof(struct obs_ev_open) - 1);	/* short open */
	d->h.type = OBS_EV_STATE;
	deliver(&s, raw, sizeof(struct obs_ev_state) - 1);
	deliver(&s, raw, 0);
	deliver(&s, raw, sizeof(h) - 1);
	CHECK_U(st->bad_events, 10);
	CHECK_U(st->bytes_in, 0);
	CHECK_U(n_seen, 1);
	/* a good record with the same seq is then accepted, without a gap */
	d->h.type = OBS_EV_DATA;
	d->len = 16;
	deliver(&s, raw, sizeof(struct obs_ev_data) + 16);
	CHECK_U(st->seq_gaps, 0);
	CHECK_U(st->bytes_in, 16);
	end(&s);
}

/* Events of a connection whose OPEN was lost, and events after its end. */
static void test_orphans(void)
{
	struct sim s;
	struct sconn c = { .id = 80, .pid = 5, .fd = 5, .seq = 1 };	/* OPEN (seq 1) lost */
	struct sconn late = { .id = 81, .pid = 5, .fd = 6 };
	const struct conn_stats *st;

	begin_sim("orphans", &s);
	ev_in(&s, &c, req_a);
	ev_out(&s, &c, resp_ok2);
	st = conn_table__stats(s.t);
	CHECK_U(st->orphan_events, 1);
	if (CHECK(done(0))) {
		CHECK(has_flag(done(0), RECF_NO_OPEN));
		CHECK_U(done(0)->outcome, REC_OK);
		CHECK_S(done(0)->client, "");
	}
	ev_close(&s, &c);
	/* a CLOSE of an unknown connection creates nothing */
	ev_close(&s, &late);
	CHECK_U(conn_table__active(s.t), 0);
	/* seq 0: an event after the connection's end */
	late.seq = (uint32_t)-1;
	ev_in(&s, &late, req_a);
	CHECK_U(conn_table__active(s.t), 0);
	end(&s);
}

/* A response written after the client's FIN is delivered unless a RST answers it. */
static void test_fin_held(void)
{
	for (int reset = 0; reset < 2; reset++) {
		struct sim s;
		struct sconn c = { .id = 90, .pid = 5, .fd = 5 };
		uint64_t closed;

		begin_sim(reset ? "fin_held_reset" : "fin_held_delivered", &s);
		ev_open(&s, &c);
		ev_in(&s, &c, req_a);
		ev_state(&s, &c, OBS_ST_PEER_FIN);
		ev_out(&s, &c, resp_ok2);
		CHECK_U(count(CONN_EV_REQ_DONE), 0);	/* held */
		ev_close(&s, &c);
		closed = s.ts;
		CHECK_U(count(CONN_EV_REQ_DONE), 0);	/* waiting for a late RST */
		conn_table__expire(s.t, closed + 1000);
		CHECK_U(count(CONN_EV_REQ_DONE), 0);
		if (reset)
			ev_state(&s, &c, OBS_ST_RESET);
		else
			conn_table__expire(s.t, closed + 1000000000ull);
		CHECK_U(count(CONN_EV_REQ_DONE), 1);
		if (CHECK(done(0))) {
			CHECK_U(done(0)->status, 200);
			CHECK_U(done(0)->outcome, reset ? REC_FAILED : REC_OK);
			CHECK_S(done(0)->error, reset ? ERR_CLIENT_CLOSED : "");
		}
		CHECK_U(conn_table__active(s.t), 0);
		end(&s);
	}
}

static bool never_alive(void *ctx, uint32_t pid, uint32_t fd, uint64_t ino, uint64_t conn_id)
{
	return false;
}

static bool always_alive(void *ctx, uint32_t pid, uint32_t fd, uint64_t ino, uint64_t conn_id)
{
	return true;
}

static void test_sweep(void)
{
	struct sim s;
	struct sconn c = { .id = 95, .pid = 5, .fd = 5 };

	begin_sim("sweep", &s);
	ev_open(&s, &c);
	ev_in(&s, &c, req_a);
	conn_table__sweep(s.t, s.ts + 1, always_alive, NULL);
	CHECK_U(conn_table__active(s.t), 1);
	conn_table__sweep(s.t, s.ts - 1, never_alive, NULL);	/* not idle long enough */
	CHECK_U(conn_table__active(s.t), 1);
	conn_table__sweep(s.t, s.ts, never_alive, NULL);
	CHECK_U(conn_table__active(s.t), 0);
	if (CHECK(done(0))) {
		CHECK_U(done(0)->outcome, REC_FAILED);
		CHECK_S(done(0)->error, ERR_SERVER_CLOSED);
	}
	end(&s);
}

/* Many connections at once: the table grows; every one is found again. */
static void test_many_conns(void)
{
	enum { N = 5000 };
	static struct sconn c[N];
	struct sim s;

	begin_sim("many_conns", &s);
	for (int i = 0; i < N; i++) {
		c[i] = (struct sconn){ .id = (1ull << 40) + i * 4099ull, .pid = 5, .fd = 10 + i };
		ev_open(&s, &c[i]);
		ev_in(&s, &c[i], req_a);
	}
	CHECK_U(conn_table__active(s.t), N);
	CHECK_U(conn_table__stats(s.t)->requests_in_flight, N);
	for (int i = N - 1; i >= 0; i--)
		ev_out(&s, &c[i], resp_ok2);
	CHECK_U(count(CONN_EV_REQ_DONE), N);
	CHECK_U(conn_table__stats(s.t)->records_ok, N);
	CHECK_U(conn_table__stats(s.t)->seq_gaps, 0);
	for (int i = 0; i < N; i++)
		ev_close(&s, &c[i]);
	CHECK_U(conn_table__active(s.t), 0);
	end(&s);
}

/* Freeing a table with requests in flight reports nothing and leaks nothing. */
static void test_free_busy(void)
{
	struct sim s;
	struct sconn a = { .id = 98, .pid = 5, .fd = 5 }, b = { .id = 99, .pid = 5, .fd = 6 };

	begin_sim("free_busy", &s);
	ev_open(&s, &a);
	ev_open(&s, &b);
	ev_in(&s, &a, "GET /x HTTP/1.1\r\n\r\nGET /y HT");
	ev_in(&s, &b, req_a);
	ev_state(&s, &b, OBS_ST_PEER_FIN);
	ev_out(&s, &b, resp_ok2);	/* held */
	ev_close(&s, &b);		/* lingering */
	conn_table__free(s.t);
	CHECK_U(count(CONN_EV_REQ_DONE), 0);
}

int main(void)
{
	test_basic();
	test_addresses();
	test_unix();
	test_unix_events_and_names();
	test_pipelining_splits();
	test_pipelining_interleaved();
	test_byte_at_a_time();
	test_peer_fin_races_write();
	test_loss_in_flight();
	test_loss_of_request();
	test_loss_pipelined();
	test_gap_pipelined();
	test_gap_mid_request_line();
	test_orphan_mid_stream();
	test_loss_mid_method();
	test_gap_pipelined_responses();
	test_gap_inferred_head_pipelined();
	test_loss_pipelined_drain();
	test_close_pending();
	test_idle_fin();
	test_partial_head();
	test_response_incomplete();
	test_eof_body();
	test_process_exit();
	test_upgrade();
	test_connect_tunnel();
	test_response_before_body();
	test_head_and_interim();
	test_unmatched();
	test_bad_records();
	test_orphans();
	test_fin_held();
	test_sweep();
	test_many_conns();
	test_free_busy();
	printf("test_conn: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
