// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "ids.h"
#include "log.h"
#include "pipeline.h"
#include "route.h"

#define SWEEP_IDLE_NS	(30ull * 1000000000ull)

struct pipeline {
	struct loader *l;
	struct ring_buffer *rb;
	struct conn_table *ct;
	struct {
		sink_fn fn;
		void *ctx;
	} sinks[PIPELINE_MAX_SINKS];
	int n_sinks;
	int64_t wall_offset_ns;		/* CLOCK_REALTIME - CLOCK_MONOTONIC */
	uint64_t last_consume_ns;
	uint64_t kc[OBS_C_MAX];
};

uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int64_t wall_offset(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec - (int64_t)mono_ns();
}

/* Ids, trace context, route and wall-clock time; then every sink. */
static void finish_record(void *ctx, struct record *r)
{
	struct pipeline *p = ctx;

	r->wall_start_ns = r->start_ns + p->wall_offset_ns;
	if (!r->request_id[0])
		ids_uuid4_hex(r->request_id);
	if (r->traceparent[0] &&
	    ids_parse_traceparent(r->traceparent, r->trace_id, r->parent_span_id, &r->sampled)) {
		r->has_parent = true;
	} else {
		ids_random(r->trace_id, sizeof(r->trace_id));
		r->sampled = true;
	}
	ids_random(r->span_id, sizeof(r->span_id));
	if (r->flags & RECF_UNMATCHED)
		strcpy(r->route, "");
	else
		route_template(r->path, r->route, sizeof(r->route));
	for (int i = 0; i < p->n_sinks; i++)
		p->sinks[i].fn(p->sinks[i].ctx, r);
}

static int on_ring(void *ctx, void *data, size_t size)
{
	struct pipeline *p = ctx;

	conn_table__event(p->ct, data, size);
	return 0;
}

struct pipeline *pipeline__open(const struct obs_filter *f)
{
	struct pipeline *p = calloc(1, sizeof(*p));
	int err = 0;

	if (!p)
		return NULL;
	ids_seed();
	p->wall_offset_ns = wall_offset();
	p->ct = conn_table__new(finish_record, p);
	if (!p->ct) {
		err = -errno;
		goto out_free;
	}
	p->l = loader__open(f);
	if (!p->l) {
		err = -errno;
		goto out_table;
	}
	p->rb = ring_buffer__new(loader__ringbuf_fd(p->l), on_ring, p, NULL);
	if (!p->rb) {
		err = -errno;
		pr_warn("pipeline: cannot open ring buffer: %s", strerror(errno));
		goto out_loader;
	}
	p->last_consume_ns = mono_ns();
	return p;

out_loader:
	loader__free(p->l);
out_table:
	conn_table__free(p->ct);
out_free:
	free(p);
	errno = -err;
	return NULL;
}

int pipeline__add_sink(struct pipeline *p, sink_fn fn, void *ctx)
{
	if (p->n_sinks >= PIPELINE_MAX_SINKS)
		return -E2BIG;
	p->sinks[p->n_sinks].fn = fn;
	p->sinks[p->n_sinks].ctx = ctx;
	p->n_sinks++;
	return 0;
}

int pipeline__fd(const struct pipeline *p)
{
	return ring_buffer__epoll_fd(p->rb);
}

int pipeline__consume(struct pipeline *p)
{
	int n = ring_buffer__consume(p->rb);

	p->last_consume_ns = mono_ns();
	return n;
}

/* Does the kernel still track (pid, fd) as this connection? */
static bool kernel_has_conn(void *ctx, uint32_t pid, uint32_t fd, uint64_t conn_id)
{
	struct pipeline *p = ctx;
	struct obs_conn_key k = { .tgid = pid, .fd = fd };
	struct obs_conn c;

	if (bpf_map_lookup_elem(loader__conns_fd(p->l), &k, &c))
		return false;
	return c.conn_id == conn_id;
}

void pipeline__tick(struct pipeline *p)
{
	uint64_t now = mono_ns();

	p->wall_offset_ns = wall_offset();
	loader__counters(p->l, p->kc);
	if (now > SWEEP_IDLE_NS)
		conn_table__sweep(p->ct, now - SWEEP_IDLE_NS, kernel_has_conn, p);
}

const uint64_t *pipeline__kcounters(const struct pipeline *p)
{
	return p->kc;
}

const struct conn_stats *pipeline__stats(const struct pipeline *p)
{
	return conn_table__stats(p->ct);
}

size_t pipeline__active_conns(const struct pipeline *p)
{
	return conn_table__active(p->ct);
}

size_t pipeline__processes(const struct pipeline *p)
{
	return conn_table__processes(p->ct);
}

uint64_t pipeline__last_consume_ns(const struct pipeline *p)
{
	return p->last_consume_ns;
}

uint64_t pipeline__events_lost(const struct pipeline *p)
{
	return p->kc[OBS_C_LOST_RINGBUF] + p->kc[OBS_C_LOST_CONNS_FULL] +
	       p->kc[OBS_C_LOST_ARGS_FULL] + p->kc[OBS_C_LOST_TARGETS_FULL];
}

void pipeline__free(struct pipeline *p)
{
	if (!p)
		return;
	if (p->rb)
		ring_buffer__consume(p->rb);
	ring_buffer__free(p->rb);
	loader__free(p->l);
	conn_table__free(p->ct);
	free(p);
}
