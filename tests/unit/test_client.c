// SPDX-License-Identifier: MIT
/*
 * Outgoing calls: the connection table's client ends (reversed direction,
 * close reasons, the pair key both ends share, request order) and the
 * request layer's links and stitching (request/client.c), and the CLIENT
 * span's attributes (request/client_span.c).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "check.h"
#include "base/ids.h"
#include "conn/conn.h"
#include "request/client.h"
#include "request/span.h"

#define MAX_RECS 16

static struct record recs[MAX_RECS];	/* REQ_DONE copies */
static int n_recs, n_started, n_life, n_pending;
static struct record *started[MAX_RECS];	/* REQ_STARTED records (live until done) */

static void on_event(void *ctx, const struct conn_event *e)
{
	if (e->type == CONN_EV_REQ_STARTED && n_started < MAX_RECS)
		started[n_started++] = e->r;
	if (e->type == CONN_EV_REQ_DONE && n_recs < MAX_RECS)
		recs[n_recs++] = *e->r;
	if (!e->outgoing)
		n_life++;
}

static void reset(void)
{
	n_recs = n_started = n_life = n_pending = 0;
}

struct sconn {
	uint64_t id;
	uint32_t seq;
};

static uint64_t now = 1000000;

static void hdr(struct obs_ev_hdr *h, struct sconn *c, uint32_t type)
{
	h->ts_ns = (now += 1000);
	h->conn_id = c->id;
	h->seq = ++c->seq;
	h->type = type;
	h->pid = 77;
	h->tid = 78;
	h->fd = 9;
}

static void open4(struct conn_table *t, struct sconn *c, bool client, const char *l, uint16_t lp,
		  const char *r, uint16_t rp)
{
	struct obs_ev_open o;

	memset(&o, 0, sizeof(o));
	hdr(&o.h, c, OBS_EV_OPEN);
	o.family = AF_INET;
	inet_pton(AF_INET, l, o.laddr);
	inet_pton(AF_INET, r, o.raddr);
	o.lport = lp;
	o.rport = rp;
	o.flags = client ? OBS_OPEN_CLIENT : 0;
	memcpy(o.comm, "python3", 8);
	conn_table__event(t, &o, sizeof(o));
}

static void open_unix(struct conn_table *t, struct sconn *c, bool client, uint64_t me,
		      uint64_t peer)
{
	struct obs_ev_open o;

	memset(&o, 0, sizeof(o));
	hdr(&o.h, c, OBS_EV_OPEN);
	o.family = AF_UNIX;
	memcpy(o.laddr, &me, 8);
	memcpy(o.raddr, &peer, 8);
	strcpy(o.path, "/run/app.sock");
	o.flags = client ? OBS_OPEN_CLIENT : 0;
	memcpy(o.comm, "nginx", 6);
	conn_table__event(t, &o, sizeof(o));
}

static void data(struct conn_table *t, struct sconn *c, int dir, const char *s, bool client)
{
	size_t n = strlen(s);
	struct obs_ev_data *d = calloc(1, sizeof(*d) + n);

	hdr(&d->h, c, OBS_EV_DATA);
	d->len = d->cap = n;
	d->dir = dir;
	d->flags = client ? OBS_DF_CLIENT : 0;
	memcpy(d->data, s, n);
	conn_table__event(t, d, sizeof(*d) + n);
	free(d);
}

static void simple(struct conn_table *t, struct sconn *c, uint32_t type, uint32_t what)
{
	struct obs_ev_state s;

	memset(&s, 0, sizeof(s));
	hdr(&s.h, c, type);
	s.what = what;
	conn_table__event(t, &s, type == OBS_EV_CLOSE ? sizeof(struct obs_ev_close) : sizeof(s));
}

static void count_pending(void *ctx, const struct record *r)
{
	n_pending++;
}

static const char req[] = "GET /back/x?secret=1 HTTP/1.1\r\nHost: back:8001\r\n\r\n";
static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

static void test_client_end(void)
{
	struct conn_table *t = conn_table__new(on_event, NULL);
	struct sconn cl = { .id = 1 }, sv = { .id = 2 };
	uint64_t pair;

	begin("client end: request written, response read");
	reset();
	open4(t, &cl, true, "127.0.0.1", 40000, "127.0.0.1", 8001);
	data(t, &cl, OBS_DIR_OUT, req, true);
	CHECK_U(n_started, 1);
	CHECK_U(started[0]->kind, REC_CLIENT);
	CHECK_U(started[0]->conn_seq, 1);
	CHECK(started[0]->pair != 0);
	pair = started[0]->pair;
	conn_table__foreach_pending(t, 77, count_pending, NULL);
	CHECK_U(n_pending, 0);	/* a call is not a request in flight */
	data(t, &cl, OBS_DIR_IN, resp, true);
	CHECK_U(n_recs, 1);
	CHECK(!strcmp(recs[0].path, "/back/x") && recs[0].status == 200);
	CHECK(recs[0].outcome == REC_OK);
	CHECK(!strcmp(recs[0].server, "127.0.0.1:8001") && !strcmp(recs[0].client, "127.0.0.1:40000"));
	CHECK(recs[0].end_ns > recs[0].start_ns);
	CHECK_U(n_life, 0);	/* no lifecycle events for calls */

	begin("server end of the same connection: same pair, same order");
	open4(t, &sv, false, "127.0.0.1", 8001, "127.0.0.1", 40000);
	data(t, &sv, OBS_DIR_IN, req, false);
	CHECK_U(started[1]->kind, REC_SERVER);
	CHECK_U(started[1]->pair, pair);
	CHECK_U(started[1]->conn_seq, 1);
	data(t, &sv, OBS_DIR_OUT, resp, false);
	data(t, &cl, OBS_DIR_OUT, req, true);
	CHECK_U(started[2]->conn_seq, 2);

	begin("client end: the server resets / closes");
	simple(t, &cl, OBS_EV_STATE, OBS_ST_RESET);
	simple(t, &cl, OBS_EV_CLOSE, 0);
	CHECK(!strcmp(recs[n_recs - 1].error, ERR_SERVER_RESET));
	conn_table__free(t);

	t = conn_table__new(on_event, NULL);
	reset();
	cl = (struct sconn){ .id = 3 };
	open4(t, &cl, true, "10.0.0.1", 40000, "10.0.0.2", 80);
	data(t, &cl, OBS_DIR_OUT, req, true);
	CHECK_U(started[0]->pair, 0);	/* another node's server: no stitching work */
	simple(t, &cl, OBS_EV_STATE, OBS_ST_PEER_FIN);
	data(t, &cl, OBS_DIR_IN, "HTTP/1.0 200 OK\r\n\r\nbody", true);
	simple(t, &cl, OBS_EV_CLOSE, 0);
	CHECK_U(n_recs, 1);
	CHECK(recs[0].outcome == REC_OK && recs[0].bytes_out == 23);	/* close-delimited */
	data(t, &cl, OBS_DIR_OUT, req, true);
	conn_table__free(t);

	begin("client end: the caller gives up");
	t = conn_table__new(on_event, NULL);
	reset();
	cl = (struct sconn){ .id = 4 };
	open4(t, &cl, true, "127.0.0.1", 40001, "127.0.0.1", 8001);
	data(t, &cl, OBS_DIR_OUT, req, true);
	simple(t, &cl, OBS_EV_CLOSE, 0);
	CHECK(n_recs == 1 && !strcmp(recs[0].error, ERR_CLIENT_CLOSED));

	begin("UNIX: both ends share the socket pair");
	reset();
	cl = (struct sconn){ .id = 5 };
	sv = (struct sconn){ .id = 6 };
	open_unix(t, &cl, true, 0xaaa0, 0xbbb0);
	open_unix(t, &sv, false, 0xbbb0, 0xaaa0);
	data(t, &cl, OBS_DIR_OUT, req, true);
	data(t, &sv, OBS_DIR_IN, req, false);
	CHECK(started[0]->pair && started[0]->pair == started[1]->pair);
	CHECK(!strcmp(started[0]->server, "/run/app.sock"));
	conn_table__free(t);
}

static struct record *mk(enum rec_kind kind, uint64_t pair, uint32_t seq, const char *path)
{
	struct record *r = calloc(1, sizeof(*r));

	r->kind = kind;
	r->pair = pair;
	r->conn_seq = seq;
	strcpy(r->method, "GET");
	strcpy(r->path, path);
	ids_random(r->trace_id, 16);
	ids_random(r->span_id, 8);
	return r;
}

static void test_stitch(void)
{
	struct clients *cl = clients__new();
	struct log_link linked = { .kind = LOG_LINKED, .sampled = true }, amb = { .kind = LOG_AMBIGUOUS };
	struct record *c, *s;

	ids_seed_fixed(7);
	memset(linked.trace_id, 0x11, 16);
	memset(linked.span_id, 0x22, 8);

	begin("linked call: its owner's trace, the owner as parent");
	c = mk(REC_CLIENT, 99, 1, "/b");
	clients__start(cl, c, &linked, NULL);
	CHECK(c->link == REC_LINKED && c->has_parent && c->sampled);
	CHECK(!memcmp(c->trace_id, linked.trace_id, 16) && !memcmp(c->parent_span_id, linked.span_id, 8));

	begin("callee after the call: stitched");
	s = mk(REC_SERVER, 99, 1, "/b");
	clients__server_start(cl, s);
	CHECK(s->has_parent && !memcmp(s->trace_id, c->trace_id, 16) &&
	      !memcmp(s->parent_span_id, c->span_id, 8));
	CHECK_U(clients__stats(cl)->stitch[STITCH_OK], 1);
	clients__server_done(cl, s);
	clients__done(cl, c);
	CHECK_U(clients__stats(cl)->pending[0] + clients__stats(cl)->pending[1], 0);
	free(c);
	free(s);

	begin("ambiguous call: a trace of its own, no parent");
	c = mk(REC_CLIENT, 98, 1, "/b");
	clients__start(cl, c, &amb, NULL);
	CHECK(c->link == REC_LINK_AMBIGUOUS && !c->has_parent);
	CHECK(memcmp(c->trace_id, linked.trace_id, 16));
	clients__done(cl, c);
	CHECK_U(clients__stats(cl)->stitch[STITCH_NO_CALLEE], 1);
	free(c);

	begin("callee first (read seen before the write): late, while in flight");
	s = mk(REC_SERVER, 97, 1, "/b");
	clients__server_start(cl, s);
	CHECK(!s->has_parent);
	c = mk(REC_CLIENT, 97, 1, "/b");
	clients__start(cl, c, &linked, NULL);
	CHECK(s->has_parent && !memcmp(s->parent_span_id, c->span_id, 8) &&
	      !memcmp(s->trace_id, c->trace_id, 16));
	CHECK_U(clients__stats(cl)->stitch[STITCH_LATE], 1);
	clients__server_done(cl, s);
	clients__done(cl, c);
	free(c);
	free(s);

	begin("a local client obs does not observe: only a connection's first request waits");
	s = mk(REC_SERVER, 96, 2, "/b");
	clients__server_start(cl, s);
	CHECK_U(clients__stats(cl)->pending[1], 0);
	clients__server_done(cl, s);
	free(s);
	begin("... but a later request waits once a call on its connection was seen");
	c = mk(REC_CLIENT, 95, 1, "/b");
	clients__start(cl, c, &linked, NULL);
	clients__done(cl, c);
	free(c);
	s = mk(REC_SERVER, 95, 2, "/b");
	clients__server_start(cl, s);
	CHECK_U(clients__stats(cl)->pending[1], 1);
	c = mk(REC_CLIENT, 95, 2, "/b");
	clients__start(cl, c, &linked, NULL);
	CHECK(s->has_parent && !memcmp(s->parent_span_id, c->span_id, 8));
	clients__server_done(cl, s);
	clients__done(cl, c);
	free(c);
	free(s);

	begin("method/path differ at the ends: refused");
	c = mk(REC_CLIENT, 96, 1, "/b");
	clients__start(cl, c, &linked, NULL);
	s = mk(REC_SERVER, 96, 1, "/other");
	clients__server_start(cl, s);
	CHECK(!s->has_parent);
	CHECK_U(clients__stats(cl)->stitch[STITCH_MISMATCH], 1);
	free(c);
	free(s);

	begin("an incoming traceparent wins; a caller's own traceparent is respected");
	c = mk(REC_CLIENT, 95, 1, "/b");
	strcpy(c->traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
	clients__start(cl, c, &linked, NULL);
	CHECK(c->own_context && !c->has_parent);	/* another trace than its owner's */
	CHECK(c->span_id[0] == 0x00 && c->span_id[1] == 0xf0 && c->trace_id[0] == 0x4b);
	s = mk(REC_SERVER, 95, 1, "/b");
	s->has_parent = true;
	memcpy(s->parent_span_id, c->span_id, 8);
	clients__server_start(cl, s);
	CHECK_U(clients__stats(cl)->stitch[STITCH_TRACEPARENT], 1);
	free(c);
	free(s);

	begin("bounded: a full probe run is counted, never overwritten");
	for (uint32_t i = 1; i <= CLIENT_TABLE_MAX + 10; i++) {
		c = mk(REC_CLIENT, 1000, i, "/b");
		clients__start(cl, c, &amb, NULL);
		free(c);
	}
	CHECK(clients__stats(cl)->table_full[0] >= 10);
	CHECK(clients__stats(cl)->pending[0] <= CLIENT_TABLE_MAX);
	clients__free(cl);
}

static const char *attr(const struct span_view *v, const char *k)
{
	for (int i = 0; i < v->n_attrs; i++)
		if (!strcmp(v->attrs[i].key, k))
			return v->attrs[i].type == SPAN_STR ? v->attrs[i].str : "(int)";
	return NULL;
}

static void test_span(void)
{
	struct record *r = mk(REC_CLIENT, 0, 0, "/back/x");
	struct span_view v;

	begin("CLIENT span: name, url.full without the query, peer, 5xx");
	strcpy(r->host, "back:8001");
	strcpy(r->server, "127.0.0.1:8001");
	r->status = 503;
	r->link = REC_LINKED;
	span_view(&v, r);
	CHECK(!strcmp(v.name, "GET"));
	CHECK(!strcmp(attr(&v, "url.full"), "http://back:8001/back/x"));
	CHECK(!strcmp(attr(&v, "server.address"), "back"));
	CHECK(!strcmp(attr(&v, "network.peer.address"), "127.0.0.1"));
	CHECK(!strcmp(attr(&v, "error.type"), "503") && v.status == SPAN_STATUS_ERROR);
	CHECK(!strcmp(attr(&v, "obs.link"), "linked"));
	free(r);
}

int main(void)
{
	test_client_end();
	test_stitch();
	test_span();
	printf("test_client: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
