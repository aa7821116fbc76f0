// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/request/span.c: the attributes of a request's span over TCP and
 * over a UNIX socket (network.transport, server.address, no port or client
 * address for UNIX, the peer process as obs.peer.*). main() returns 1 if any
 * check failed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "request/span.h"

#include "check.h"

static const struct span_attr *attr(const struct span_view *v, const char *key)
{
	for (int i = 0; i < v->n_attrs; i++)
		if (!strcmp(v->attrs[i].key, key))
			return &v->attrs[i];
	return NULL;
}

static bool has_str(const struct span_view *v, const char *key, const char *want)
{
	const struct span_attr *a = attr(v, key);

	return check(a && a->type == SPAN_STR && !strcmp(a->str, want), __FILE__, __LINE__,
		     "%s: want \"%s\", got %s%s%s", key, want, a ? "\"" : "(absent)",
		     a && a->type == SPAN_STR ? a->str : "", a ? "\"" : "");
}

static bool has_int(const struct span_view *v, const char *key, int64_t want)
{
	const struct span_attr *a = attr(v, key);

	return check(a && a->type == SPAN_INT && a->i == want, __FILE__, __LINE__,
		     "%s: want %lld, got %lld%s", key, (long long)want, a ? (long long)a->i : 0LL,
		     a ? "" : " (absent)");
}

static bool absent(const struct span_view *v, const char *key)
{
	return check(!attr(v, key), __FILE__, __LINE__, "%s: present, want absent", key);
}

static void base_record(struct record *r)
{
	memset(r, 0, sizeof(*r));
	r->queue_ns = -1;
	r->grpc_status = -1;
	r->error = "";
	r->status = 200;
	r->version_minor = 1;
	strcpy(r->method, "GET");
	strcpy(r->path, "/users/7");
	strcpy(r->route, "/users/{id}");
	strcpy(r->request_id, "0123456789abcdef0123456789abcdef");
}

static void test_tcp(void)
{
	struct record r;
	struct span_view v;

	cur_case = "tcp";
	n_cases++;
	base_record(&r);
	strcpy(r.client, "10.1.2.3:40000");
	strcpy(r.server, "127.0.0.1:8000");
	span_view(&v, &r);
	has_str(&v, "network.transport", "tcp");
	has_str(&v, "server.address", "127.0.0.1");
	has_int(&v, "server.port", 8000);
	has_str(&v, "client.address", "10.1.2.3");
	has_int(&v, "client.port", 40000);
	has_int(&v, "net.host.port", 8000);
	absent(&v, "network.local.address");
	absent(&v, "obs.peer.pid");
	strcpy(r.host, "api.example:8000");	/* the Host names the server */
	span_view(&v, &r);
	has_str(&v, "server.address", "api.example");
}

static void test_unix(void)
{
	struct record r;
	struct span_view v;

	cur_case = "unix";
	n_cases++;
	base_record(&r);
	r.transport = REC_UNIX;
	r.peer_pid = 1234;
	strcpy(r.client, "nginx[1234]");
	strcpy(r.server, "/run/app/gunicorn.sock");
	strcpy(r.host, "app_upstream");		/* what nginx sends by default */
	span_view(&v, &r);
	has_str(&v, "network.transport", "unix");
	has_str(&v, "server.address", "/run/app/gunicorn.sock");
	has_str(&v, "network.local.address", "/run/app/gunicorn.sock");
	has_int(&v, "obs.peer.pid", 1234);
	has_str(&v, "obs.peer.name", "nginx");
	has_str(&v, "http.host", "app_upstream");
	has_str(&v, "http.route", "/users/{id}");
	has_int(&v, "http.response.status_code", 200);
	absent(&v, "server.port");
	absent(&v, "client.address");
	absent(&v, "client.port");
	absent(&v, "net.host.port");
	absent(&v, "net.peer.ip");
	CHECK(!strcmp(v.name, "GET /users/{id}"));

	/* a peer whose comm could not be read, and an unknown one */
	strcpy(r.client, "[1234]");
	span_view(&v, &r);
	has_int(&v, "obs.peer.pid", 1234);
	absent(&v, "obs.peer.name");
	r.peer_pid = 0;
	strcpy(r.client, "");
	strcpy(r.server, "@abstract");
	span_view(&v, &r);
	absent(&v, "obs.peer.pid");
	absent(&v, "obs.peer.name");
	has_str(&v, "server.address", "@abstract");
}

int main(void)
{
	test_tcp();
	test_unix();
	printf("test_span: %d cases, %d checks, %d failed\n", n_cases, n_checks, n_failed);
	return n_failed ? 1 : 0;
}
