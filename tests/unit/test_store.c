// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/sinks/store.c, record__pack/record__unpack (user/conn/record.c) and
 * life_pack/life_unpack (user/request/events.c): a record or an event comes back
 * exactly as it went in, strings of every length up to their array's size
 * (longer ones cut as snprintf cuts them), and the ring keeps the newest N.
 * Records are packed from exact-size heap copies so that AddressSanitizer
 * catches a read past a record.
 * main() returns 1 if any check failed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request/events.h"
#include "conn/record.h"
#include "request/service.h"
#include "sinks/store.h"
#include "check.h"



/* Every string of a record: offset and array size. */
#define STR(m)	{ #m, offsetof(struct record, m), sizeof(((struct record *)0)->m) }

static const struct {
	const char *name;
	size_t off, size;
} strs[] = {
	STR(request_id), STR(comm), STR(service), STR(container.container_id),
	STR(container.pod_uid), STR(method), STR(path), STR(route), STR(client), STR(server),
	STR(host), STR(user_agent), STR(content_type), STR(x_request_id), STR(traceparent),
	STR(tracestate),
};

#define N_STRS	(sizeof(strs) / sizeof(strs[0]))

static uint64_t seed = 88172645463325252ull;

static uint64_t rnd(void)
{
	seed ^= seed << 13;
	seed ^= seed >> 7;
	seed ^= seed << 17;
	return seed;
}

/* A record with every number set and string k of length lens[k] (bytes past
 * the NUL are garbage, as in a reused record). */
static void fill(struct record *r, const size_t *lens)
{
	memset(r, 0xa5, sizeof(*r));
	r->conn_id = rnd();
	r->start_ns = rnd();
	r->end_ns = rnd();
	r->resp_start_ns = rnd();
	r->wall_start_ns = rnd();
	r->queue_ns = (int64_t)rnd();
	r->bytes_in = rnd();
	r->bytes_out = rnd();
	r->pid = rnd();
	r->tid = rnd();
	r->flags = rnd();
	r->lport = rnd();
	for (int i = 0; i < 16; i++)
		r->client_addr[i] = rnd();
	r->status = (int)rnd();
	r->version_minor = 1;
	r->outcome = REC_FAILED;
	r->error = "lost";
	r->sampled = true;
	r->has_parent = false;
	r->tls = true;
	r->http2 = false;
	r->grpc_status = 7;
	r->behind_gap = true;
	for (int i = 0; i < 16; i++)
		r->trace_id[i] = rnd();
	for (int i = 0; i < 8; i++)
		r->span_id[i] = rnd(), r->parent_span_id[i] = rnd();
	r->container.runtime = CGROUP_RT_DOCKER;
	for (size_t k = 0; k < N_STRS; k++) {
		char *s = (char *)r + strs[k].off;

		for (size_t i = 0; i < lens[k]; i++)
			s[i] = 'a' + (k + i) % 26;
		if (lens[k] < strs[k].size)
			s[lens[k]] = 0;	/* else: no NUL at all, cut at size - 1 */
	}
	r->exc = (const struct exc_info *)r;
}

/* b is a as it should come back from the store. */
static void expect_same(const struct record *a, const struct record *b, const size_t *lens)
{
	CHECK(!memcmp(a, b, offsetof(struct record, request_id)));
	CHECK(a->container.runtime == b->container.runtime);
	CHECK(b->exc == NULL);
	for (size_t k = 0; k < N_STRS; k++) {
		const char *sa = (const char *)a + strs[k].off, *sb = (const char *)b + strs[k].off;
		size_t want = lens[k] < strs[k].size ? lens[k] : strs[k].size - 1;

		if (!check(strlen(sb) == want && !memcmp(sa, sb, want), __FILE__, __LINE__,
			   "%s: length %zu, want %zu", strs[k].name, strlen(sb), want))
			return;
	}
}

static void test_pack_lengths(void)
{
	struct record *in = malloc(sizeof(*in)), out;
	char *packed = malloc(sizeof(struct record) + PACK_SLACK);
	size_t lens[N_STRS];

	begin("pack_lengths");
	if (!in || !packed)
		abort();
	/* each string alone at every length 0 .. size (size: no NUL in the array) */
	for (size_t k = 0; k < N_STRS; k++) {
		for (size_t l = 0; l <= strs[k].size; l++) {
			size_t n;

			memset(lens, 0, sizeof(lens));
			lens[k] = l;
			fill(in, lens);
			n = record__pack(in, packed);
			CHECK(n <= sizeof(struct record));
			memset(&out, 0x5a, sizeof(out));
			record__unpack(packed, &out);
			expect_same(in, &out, lens);
		}
	}
	/* all at once, random lengths, and all at their longest */
	for (int round = 0; round < 2000; round++) {
		for (size_t k = 0; k < N_STRS; k++)
			lens[k] = round ? rnd() % (strs[k].size + 1) : strs[k].size;
		fill(in, lens);
		CHECK(record__pack(in, packed) <= sizeof(struct record));
		record__unpack(packed, &out);
		expect_same(in, &out, lens);
	}
	free(in);
	free(packed);
}

static void test_ring(void)
{
	struct store *s = store__new(5);
	struct record *in = malloc(sizeof(*in)), tmp;
	size_t lens[N_STRS];

	begin("ring");
	if (!s || !in)
		abort();
	CHECK(!store__get(s, 0, &tmp));
	CHECK(!store__new(0));
	for (uint64_t i = 0; i < 23; i++) {
		for (size_t k = 0; k < N_STRS; k++)	/* slots grow and shrink */
			lens[k] = (i * 37 + k) % strs[k].size;
		fill(in, lens);
		in->conn_id = i;
		store__push(s, in);
		CHECK_U(store__total(s), i + 1);
		CHECK_U(store__count(s), i + 1 < 5 ? i + 1 : 5);
		for (size_t j = 0; j < store__count(s); j++) {
			const struct record *r = store__get(s, j, &tmp);

			if (CHECK(r == &tmp))
				CHECK_U(r->conn_id, i - j);
		}
		CHECK(store__get(s, 0, &tmp));
		expect_same(in, &tmp, lens);
		CHECK(!store__get(s, store__count(s), &tmp));
	}
	CHECK_U(s->slots.dropped, 0);
	store__free(s);
	free(in);
}

/* A string of length l (cut at size - 1) in a heap array of exactly size bytes. */
static char *arr(size_t size, size_t l, char base)
{
	char *a = malloc(size);

	if (!a)
		abort();
	for (size_t i = 0; i < size; i++)
		a[i] = base + i % 20;
	if (l < size)
		a[l] = 0;
	return a;
}

static bool str_is(const char *got, const char *src, size_t size)
{
	size_t want = strnlen(src, size - 1);

	return strlen(got) == want && !memcmp(got, src, want);
}

/* Lifecycle events come back from life_pack/life_unpack as they went in. */
static void test_life(void)
{
	char *packed = malloc(sizeof(struct life_rec) + PACK_SLACK);
	struct record *r = malloc(sizeof(*r));
	struct life_rec lr;
	size_t lens[N_STRS];

	begin("life");
	if (!packed || !r)
		abort();
	for (int round = 0; round < 600; round++) {
		size_t lc = round % 17, la = round % 57, ls = round % 65;
		char *comm = arr(OBS_COMM_LEN, lc, 'a'), *client = arr(REC_ADDR_MAX, la, 'b');
		char *server = arr(REC_SERVER_MAX, REC_SERVER_MAX - 1 - la, 'c');
		char *service = arr(SERVICE_NAME_MAX, ls, 'd');
		char ident[CONN_IDENT_MAX];
		struct conn_event ce = {
			.conn_id = rnd(), .pid = rnd(), .comm = comm, .client = client,
			.server = server, .reason = round % 3 ? "reset" : NULL, .in_flight = round,
			.r = round % 4 ? r : NULL, .ident = ident,
			.ident_len = conn_ident_pack(ident, comm, client, server),
		};
		struct life_event e = {
			.type = round % 6, .wall_ns = rnd(), .ce = &ce, .service = service,
		};

		for (size_t k = 0; k < N_STRS; k++)
			lens[k] = (round * 13 + k * 7) % (strs[k].size + 1);
		fill(r, lens);
		memset(&lr, 0x5a, sizeof(lr));
		CHECK(life_pack(&e, packed) <= sizeof(struct life_rec));
		life_unpack(packed, &lr);
		CHECK(lr.type == e.type && lr.wall_ns == e.wall_ns && lr.conn_id == ce.conn_id &&
		      lr.pid == ce.pid && lr.in_flight == ce.in_flight && lr.has_req == !!ce.r);
		CHECK(str_is(lr.comm, comm, OBS_COMM_LEN) &&
		      str_is(lr.client, client, REC_ADDR_MAX) &&
		      str_is(lr.server, server, REC_SERVER_MAX) &&
		      str_is(lr.service, service, SERVICE_NAME_MAX));
		CHECK(!strcmp(lr.reason, ce.reason ? ce.reason : ""));
		if (ce.r) {
			CHECK(str_is(lr.request_id, r->request_id, sizeof(r->request_id)) &&
			      str_is(lr.method, r->method, sizeof(r->method)) &&
			      str_is(lr.path, r->path, sizeof(r->path)) &&
			      str_is(lr.route, r->route, sizeof(r->route)));
			CHECK(lr.status == r->status && lr.bytes_in == r->bytes_in &&
			      lr.bytes_out == r->bytes_out && lr.failed && lr.error == r->error &&
			      lr.duration_us == record__duration_us(r) &&
			      !memcmp(lr.trace_id, r->trace_id, 16) &&
			      !memcmp(lr.span_id, r->span_id, 8));
		} else {
			CHECK(!lr.request_id[0] && !lr.method[0] && !lr.path[0] && !lr.route[0]);
		}
		free(comm);
		free(client);
		free(server);
		free(service);
	}
	free(packed);
	free(r);
}

int main(void)
{
	test_pack_lengths();
	test_ring();
	test_life();
	printf("test_store: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
