// SPDX-License-Identifier: MIT
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "base/ids.h"
#include "base/log.h"
#include "base/pack.h"
#include "request/pipeline.h"
#include "request/route.h"
#include "request/client.h"
#include "request/errors.h"
#include "request/events.h"
#include "request/logs.h"
#include "request/loops.h"

#define SWEEP_IDLE_NS	(30ull * 1000000000ull)
#define MAX_PROCS	4096	/* observed processes remembered */
#define TLS_RESCAN_TICKS 30	/* ticks (seconds) between libssl scans */

struct proc {
	uint32_t pid;		/* 0: free */
	uint16_t lport;
	char comm[OBS_COMM_LEN];
	uint64_t first_seen_ns;
};

struct pipeline {
	struct loader *l;
	struct ring_buffer *rb;
	struct conn_table *ct;
	struct services *svc, *own_svc;
	struct routes *rt, *own_rt;
	const struct sampler *sampler;
	const struct trust *trust;
	struct cgroup_cache *cgroups;
	uint64_t traceparent_invalid;
	double fill, fill_peak;
	struct proc procs[MAX_PROCS];	/* small unordered set */
	size_t n_procs;
	struct errors *errs;
	struct logs *logs;
	struct loops *loops;
	struct clients *calls;		/* outgoing calls: links and stitching (client.h) */
	struct {
		block_sink_fn fn;
		void *ctx;
	} block_sinks[PIPELINE_MAX_SINKS];
	int n_block_sinks;
	struct {
		sink_fn fn;
		void *ctx;
	} sinks[PIPELINE_MAX_SINKS];
	struct {
		error_sink_fn fn;
		void *ctx;
	} err_sinks[PIPELINE_MAX_SINKS];
	struct {
		life_sink_fn fn;
		void *ctx;
	} life_sinks[PIPELINE_MAX_SINKS];
	int n_sinks, n_err_sinks, n_life_sinks;
	int64_t wall_offset_ns;		/* CLOCK_REALTIME - CLOCK_MONOTONIC */
	FILE *rec;			/* --record */
	FILE *replay;			/* --replay: no loader, no ring */
	uint64_t replay_now;		/* time of the last replayed record */
	uint64_t ticks;
	uint64_t last_consume_ns;
	uint64_t kc[OBS_C_MAX];
};

static const char *loop_service(void *ctx, uint32_t pid);

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

/* May the request's peer set its X-Request-ID? (trust.h) */
static bool peer_trusted(const struct pipeline *p, const struct record *r)
{
	if (r->transport == REC_UNIX)
		return trust_unix(p->trust);
	return trust_match(p->trust, r->client_addr);
}

/* A request head was read: its ids, trace context, sampling, service, route. */
static void start_record(struct pipeline *p, struct record *r)
{
	bool parent_sampled = false;

	r->wall_start_ns = r->start_ns + p->wall_offset_ns;
	if (r->x_request_id[0] && peer_trusted(p, r) && request_id_valid(r->x_request_id))
		memcpy(r->request_id, r->x_request_id, sizeof(r->request_id));
	else
		ids_uuid4_hex(r->request_id);	/* the server's own id replaces it later */
	if (r->traceparent[0] && ids_parse_traceparent(r->traceparent, r->trace_id,
						       r->parent_span_id, &parent_sampled)) {
		r->has_parent = true;
	} else {
		if (r->traceparent[0])
			p->traceparent_invalid++;
		r->tracestate[0] = 0;	/* only kept with a valid traceparent */
		ids_random(r->trace_id, sizeof(r->trace_id));
	}
	r->sampled = sampler_decide(p->sampler, r->trace_id, r->has_parent, parent_sampled);
	ids_random(r->span_id, sizeof(r->span_id));
	/* services__of's names are SERVICE_NAME_MAX arrays: a word at a time */
	_Static_assert(sizeof(r->service) == SERVICE_NAME_MAX, "service names fit records");
	pack_arr(r->service, services__of(p->svc, r->pid, r->comm, r->lport), sizeof(r->service));
	r->container = *pipeline__container_of(p, r->pid);
	if (r->flags & RECF_UNMATCHED)
		strcpy(r->route, "");
	else
		routes__resolve(p->rt, r->service, r->path, r->route);
}

/* A record left the error stage: every record sink. */
static void release_record(void *ctx, const struct record *r)
{
	struct pipeline *p = ctx;

	loops__remember(p->loops, r);
	for (int i = 0; i < p->n_sinks; i++)
		p->sinks[i].fn(p->sinks[i].ctx, r);
}

static void error_event(void *ctx, const struct record *r, const struct exc_info *exc)
{
	struct pipeline *p = ctx;

	for (int i = 0; i < p->n_err_sinks; i++)
		p->err_sinks[i].fn(p->err_sinks[i].ctx, r, exc);
}

static void life(struct pipeline *p, enum life_type type, const struct conn_event *ce)
{
	struct life_event e = {
		.type = type, .wall_ns = ce->ts_ns + p->wall_offset_ns, .ce = ce,
		.service = ce->r ? ce->r->service
				 : services__of(p->svc, ce->pid, ce->comm, ce->lport),
	};

	for (int i = 0; i < p->n_life_sinks; i++)
		p->life_sinks[i].fn(p->life_sinks[i].ctx, &e);
}

static const struct proc *proc_find(const struct pipeline *p, uint32_t pid);

/*
 * An outgoing call (client.h): at its start, its owner by the log records'
 * rule (the requests of the calling thread in flight now: same-thread
 * events arrive in program order); when done, straight to the record sinks.
 * No lifecycle events, errors, log or loop bookkeeping: those are the
 * served requests'.
 */
static void client_event(struct pipeline *p, const struct conn_event *ce)
{
	struct record *r = ce->r;

	if (ce->type == CONN_EV_REQ_STARTED) {
		const struct proc *pr = proc_find(p, r->pid);
		struct log_inflight f = { .tid = r->tid };
		struct log_link link;

		conn_table__foreach_pending(p->ct, r->pid, log_inflight_visit, &f);
		logs__link(p->logs, r->pid, &f, &link);
		r->wall_start_ns = r->start_ns + p->wall_offset_ns;
		pack_arr(r->service, services__of(p->svc, r->pid, r->comm, pr ? pr->lport : 0),
			 sizeof(r->service));
		r->container = *pipeline__container_of(p, r->pid);
		clients__start(p->calls, r, &link, p->sampler);
	} else if (ce->type == CONN_EV_REQ_DONE) {
		clients__done(p->calls, r);
		for (int i = 0; i < p->n_sinks; i++)
			p->sinks[i].fn(p->sinks[i].ctx, r);
	}
}

static void on_conn_event(void *ctx, const struct conn_event *ce)
{
	struct pipeline *p = ctx;

	if (ce->outgoing) {
		client_event(p, ce);
		return;
	}
	switch (ce->type) {
	case CONN_EV_OPENED:
		life(p, LIFE_CONNECTION_OPENED, ce);
		break;
	case CONN_EV_REQ_STARTED:
		start_record(p, ce->r);
		clients__server_start(p->calls, ce->r);
		life(p, LIFE_REQUEST_STARTED, ce);
		break;
	case CONN_EV_REQ_DONE:
		clients__server_done(p->calls, ce->r);
		life(p, ce->r->outcome == REC_OK ? LIFE_RESPONSE_COMPLETED : LIFE_REQUEST_FAILED, ce);
		logs__request_done(p->logs, ce->r);
		errors__record(p->errs, ce->r);
		break;
	case CONN_EV_DISCONNECTED:
		life(p, LIFE_CLIENT_DISCONNECTED, ce);
		break;
	case CONN_EV_CLOSED:
		life(p, LIFE_CONNECTION_CLOSED, ce);
		break;
	}
}

static void proc_add(struct pipeline *p, const struct obs_ev_open *o)
{
	for (size_t i = 0; i < p->n_procs; i++)
		if (p->procs[i].pid == o->h.pid)
			return;
	if (p->n_procs >= MAX_PROCS)
		return;
	p->procs[p->n_procs].pid = o->h.pid;
	p->procs[p->n_procs].lport = o->lport;
	memcpy(p->procs[p->n_procs].comm, o->comm, OBS_COMM_LEN);
	p->procs[p->n_procs].comm[OBS_COMM_LEN - 1] = 0;
	p->procs[p->n_procs].first_seen_ns = o->h.ts_ns;
	p->n_procs++;
}

static void proc_del(struct pipeline *p, uint32_t pid)
{
	for (size_t i = 0; i < p->n_procs; i++) {
		if (p->procs[i].pid == pid) {
			p->procs[i] = p->procs[--p->n_procs];
			return;
		}
	}
}

#define REC_MAGIC	"OBSREC1\n"

/* Now, for timeouts: the records' own clock when replaying. */
static uint64_t now_ns(const struct pipeline *p)
{
	return p->replay ? p->replay_now : mono_ns();
}

static void blame_pending(void *ctx, const struct record *r)
{
	loop_block__add(ctx, r, true);
}

/* A long loop iteration: name the requests of that worker it overlapped. */
static void on_loop(struct pipeline *p, const struct obs_ev_loop *e)
{
	struct loop_block b = {
		.pid = e->h.pid, .tid = e->h.tid, .start_ns = e->start_ns, .busy_ns = e->busy_ns,
		.cpu_wait_ns = e->cpu_wait_ns,
		.wall_start_ns = e->start_ns + p->wall_offset_ns,
	};

	b.service = services__of(p->svc, b.pid, "", 0);
	conn_table__foreach_pending(p->ct, b.pid, blame_pending, &b);
	loops__blame_recent(p->loops, &b);
	for (int i = 0; i < p->n_block_sinks; i++)
		p->block_sinks[i].fn(p->block_sinks[i].ctx, &b);
}

static const struct proc *proc_find(const struct pipeline *p, uint32_t pid)
{
	for (size_t i = 0; i < p->n_procs; i++)
		if (p->procs[i].pid == pid)
			return &p->procs[i];
	return NULL;
}

/* A write to stdout/stderr: linked by the requests of its thread in flight
 * now (same-thread events reach the ring in program order), then cut into
 * log records (logs.h). */
static void on_log(struct pipeline *p, const struct obs_ev_data *d)
{
	const struct obs_ev_hdr *h = &d->h;
	const struct proc *pr = proc_find(p, h->pid);
	const char *comm = pr ? pr->comm : "";
	struct log_inflight f = { .tid = h->tid };
	struct log_link link;
	struct log_src src = {
		.pid = h->pid, .tid = h->tid, .fd = h->fd, .ts_ns = h->ts_ns,
		.wall_ns = h->ts_ns + p->wall_offset_ns, .comm = comm,
		.service = services__of(p->svc, h->pid, comm, pr ? pr->lport : 0),
		.container = pipeline__container_of(p, h->pid),
	};

	conn_table__foreach_pending(p->ct, h->pid, log_inflight_visit, &f);
	logs__link(p->logs, h->pid, &f, &link);
	logs__write(p->logs, &src, &link, d->data, d->cap, d->len - d->cap - d->tail,
		    d->data + d->cap, d->tail);
}

static int on_ring(void *ctx, void *data, size_t size)
{
	struct pipeline *p = ctx;
	const struct obs_ev_hdr *h = data;

	if (p->rec) {
		uint32_t sz = size;

		if (fwrite(&sz, sizeof(sz), 1, p->rec) != 1 || fwrite(data, size, 1, p->rec) != 1) {
			pr_warn("pipeline: recording failed: %s; recording stopped", strerror(errno));
			fclose(p->rec);
			p->rec = NULL;
		}
	}
	if (size >= sizeof(struct obs_ev_data) && h->type == OBS_EV_LOG) {
		const struct obs_ev_data *d = data;

		if (size >= sizeof(*d) + d->cap + d->tail && d->cap + d->tail <= d->len) {
			errors__log(p->errs, h->pid, h->tid, h->fd, h->ts_ns, d->data, d->cap,
				    d->len - d->cap - d->tail, d->data + d->cap, d->tail);
			on_log(p, d);
		}
		return 0;
	}
	if (size >= sizeof(struct obs_ev_loop) && h->type == OBS_EV_LOOP) {
		on_loop(p, data);
		return 0;
	}
	if (size >= sizeof(struct obs_ev_data) && h->type == OBS_EV_DATA &&
	    !(((const struct obs_ev_data *)data)->flags & OBS_DF_CLIENT))
		logs__io(p->logs, h->pid, h->tid);	/* a call is no sign of moving on */
	conn_table__event(p->ct, data, size);
	if (size >= sizeof(struct obs_ev_open) && h->type == OBS_EV_OPEN)
		proc_add(p, data);
	if (size >= sizeof(*h) && h->type == OBS_EV_EXIT) {
		services__forget(p->svc, h->pid);
		errors__forget(p->errs, h->pid);
		logs__forget(p->logs, h->pid);
		if (p->cgroups)
			cgroup_cache__forget(p->cgroups, h->pid);
		proc_del(p, h->pid);
	}
	return 0;
}

struct pipeline *pipeline__open(const struct pipeline_opts *o)
{
	struct pipeline *p = calloc(1, sizeof(*p));
	int err = 0;

	if (!p)
		return NULL;
	p->svc = o->svc ? o->svc : (p->own_svc = services__new());
	p->rt = o->rt ? o->rt : (p->own_rt = routes__new(0));
	p->sampler = o->sampler;
	p->trust = o->trust;
	p->cgroups = o->cgroups;
	if (!p->svc || !p->rt) {
		err = -ENOMEM;
		goto out_free;
	}
	if (o->replay_path)
		ids_seed_fixed(1);
	else
		ids_seed();
	p->wall_offset_ns = wall_offset();
	p->errs = errors__new(error_event, release_record, p);
	p->ct = conn_table__new(on_conn_event, p);
	p->loops = loops__new();
	p->logs = logs__new();
	p->calls = clients__new();
	if (!p->ct || !p->errs || !p->loops || !p->logs || !p->calls) {
		err = -errno;
		goto out_free;
	}
	if (o->replay_path) {
		char magic[8];

		p->replay = fopen(o->replay_path, "r");
		if (!p->replay || fread(magic, 8, 1, p->replay) != 1 || memcmp(magic, REC_MAGIC, 8)) {
			err = p->replay ? -EINVAL : -errno;
			pr_warn("pipeline: cannot replay %s: %s", o->replay_path,
				p->replay ? "not an obs recording" : strerror(errno));
			if (p->replay)
				fclose(p->replay);
			goto out_table;
		}
		return p;
	}
	if (o->record_path) {
		p->rec = fopen(o->record_path, "w");
		if (!p->rec || fwrite(REC_MAGIC, 8, 1, p->rec) != 1) {
			err = -errno;
			pr_warn("pipeline: cannot record to %s: %s", o->record_path, strerror(errno));
			goto out_table;
		}
	}
	p->l = loader__open(&o->filter);
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
	if (p->rec)
		fclose(p->rec);
	conn_table__free(p->ct);
	errors__free(p->errs);
	loops__free(p->loops);
	logs__free(p->logs);
	clients__free(p->calls);
out_free:
	services__free(p->own_svc);
	routes__free(p->own_rt);
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

int pipeline__add_error_sink(struct pipeline *p, error_sink_fn fn, void *ctx)
{
	if (p->n_err_sinks >= PIPELINE_MAX_SINKS)
		return -E2BIG;
	p->err_sinks[p->n_err_sinks].fn = fn;
	p->err_sinks[p->n_err_sinks++].ctx = ctx;
	return 0;
}

int pipeline__add_life_sink(struct pipeline *p, life_sink_fn fn, void *ctx)
{
	if (p->n_life_sinks >= PIPELINE_MAX_SINKS)
		return -E2BIG;
	p->life_sinks[p->n_life_sinks].fn = fn;
	p->life_sinks[p->n_life_sinks++].ctx = ctx;
	return 0;
}

int pipeline__add_log_sink(struct pipeline *p, log_sink_fn fn, void *ctx)
{
	return logs__add_sink(p->logs, fn, ctx);
}

const struct log_stats *pipeline__log_stats(const struct pipeline *p)
{
	return logs__stats(p->logs);
}

const struct err_stats *pipeline__err_stats(const struct pipeline *p)
{
	return errors__stats(p->errs);
}

int pipeline__fd(const struct pipeline *p)
{
	return p->rb ? ring_buffer__epoll_fd(p->rb) : -1;
}

int pipeline__consume(struct pipeline *p)
{
	int n;

	if (!p->rb)
		return 0;
	p->fill = loader__ringbuf_fill(p->l);
	if (p->fill > p->fill_peak)
		p->fill_peak = p->fill;
	n = ring_buffer__consume(p->rb);
	conn_table__expire(p->ct, now_ns(p));
	errors__tick(p->errs, now_ns(p));
	logs__tick(p->logs, now_ns(p));

	p->last_consume_ns = mono_ns();
	return n;
}

/* Is this connection's socket still open in its process? An idle connection
 * whose close was not seen (UNIX sockets without tracefs, say) is found by
 * /proc/PID/fd/FD no longer naming its socket inode; the kernel forgets it. */
static bool conn_alive(void *ctx, uint32_t pid, uint32_t fd, uint64_t ino, uint64_t conn_id)
{
	struct pipeline *p = ctx;
	char path[64], link[64], want[40];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%u/fd/%u", pid, fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n >= 0) {
		link[n] = 0;
		snprintf(want, sizeof(want), "socket:[%llu]", (unsigned long long)ino);
		if (!ino || !strcmp(link, want))
			return true;
	} else if (errno != ENOENT) {
		return true;	/* cannot tell: keep it */
	}
	loader__forget_conn(p->l, conn_id);
	return false;
}

void pipeline__tick(struct pipeline *p)
{
	uint64_t now = mono_ns();

	if (!p->l)
		return;
	p->wall_offset_ns = wall_offset();
	loader__counters(p->l, p->kc);
	loops__refresh(p->loops, loader__loops_fd(p->l));
	loops__name(p->loops, loop_service, p);	/* while the workers are alive */
	for (size_t i = 0; i < p->n_procs; i++) {	/* exits whose event was lost */
		if (kill(p->procs[i].pid, 0) && errno == ESRCH) {
			services__forget(p->svc, p->procs[i].pid);
			logs__forget(p->logs, p->procs[i].pid);
			if (p->cgroups)
				cgroup_cache__forget(p->cgroups, p->procs[i].pid);
			proc_del(p, p->procs[i--].pid);
		}
	}
	if (now > SWEEP_IDLE_NS)
		conn_table__sweep(p->ct, now - SWEEP_IDLE_NS, conn_alive, p);
	if (++p->ticks % TLS_RESCAN_TICKS == 0)	/* libssl files of new processes */
		loader__scan_tls(p->l);
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
	return p->n_procs;
}

void pipeline__foreach_proc(const struct pipeline *p,
			    void (*fn)(void *ctx, const struct proc_view *v), void *ctx)
{
	for (size_t i = 0; i < p->n_procs; i++) {
		struct proc_view v = {
			.pid = p->procs[i].pid, .lport = p->procs[i].lport,
			.comm = p->procs[i].comm, .first_seen_ns = p->procs[i].first_seen_ns,
		};

		fn(ctx, &v);
	}
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
	if (p->rec)
		fclose(p->rec);
	if (p->replay)
		fclose(p->replay);
	ring_buffer__free(p->rb);
	loader__free(p->l);
	conn_table__free(p->ct);
	errors__free(p->errs);	/* releases held error requests to the sinks */
	logs__free(p->logs);	/* emits partial lines */
	loops__free(p->loops);
	clients__free(p->calls);
	services__free(p->own_svc);
	routes__free(p->own_rt);
	free(p);
}

const struct cgroup_ident *pipeline__container_of(struct pipeline *p, uint32_t pid)
{
	static const struct cgroup_ident none;

	return p->cgroups ? cgroup_cache__lookup(p->cgroups, pid, mono_ns()) : &none;
}

const char *pipeline__service_of(struct pipeline *p, uint32_t pid, const char *comm,
				 uint16_t lport)
{
	return services__of(p->svc, pid, comm, lport);
}

void pipeline__foreach_conn(const struct pipeline *p,
			    void (*fn)(void *ctx, const struct conn_view *v), void *ctx)
{
	conn_table__foreach(p->ct, fn, ctx);
}

double pipeline__ringbuf_fill(const struct pipeline *p)
{
	return p->fill;
}

double pipeline__ringbuf_fill_peak(const struct pipeline *p)
{
	return p->fill_peak;
}

struct routes *pipeline__routes(const struct pipeline *p)
{
	return p->rt;
}

void pipeline__client_counters(const struct pipeline *p, struct counter_visit *v)
{
	clients__counters(p->calls, v);
}

uint64_t pipeline__traceparent_invalid(const struct pipeline *p)
{
	return p->traceparent_invalid;
}

/*
 * The recording, read a chunk at a time: two freads per record cost the
 * replay more instructions than some of the pipeline stages it measures.
 */
#define REPLAY_CHUNK	(1 << 20)

struct replay_in {
	FILE *f;
	uint8_t *chunk;
	size_t len, off;	/* bytes in chunk, bytes of them consumed */
};

/* The next n bytes of the recording into dst; false at its end. */
static inline bool replay_read(struct replay_in *in, void *dst, size_t n)
{
	uint8_t *d = dst;

	if (in->len - in->off >= n) {	/* all in the chunk */
		memcpy(d, in->chunk + in->off, n);
		in->off += n;
		return true;
	}
	while (n) {
		size_t k = in->len - in->off;

		if (!k) {
			in->len = fread(in->chunk, 1, REPLAY_CHUNK, in->f);
			in->off = 0;
			if (!in->len)
				return false;
			continue;
		}
		if (k > n)
			k = n;
		memcpy(d, in->chunk + in->off, k);
		in->off += k;
		d += k;
		n -= k;
	}
	return true;
}

long pipeline__replay(struct pipeline *p)
{
	uint8_t *buf = malloc(sizeof(struct obs_ev_data) + 3 * OBS_CAP_MAX);
	struct replay_in in = { .f = p->replay, .chunk = malloc(REPLAY_CHUNK) };
	long n = 0;
	uint32_t sz;

	if (!p->replay || !buf || !in.chunk) {
		free(buf);
		free(in.chunk);
		return -EINVAL;
	}
	while (replay_read(&in, &sz, sizeof(sz))) {
		if (sz < sizeof(struct obs_ev_hdr) || sz > sizeof(struct obs_ev_data) + 3 * OBS_CAP_MAX ||
		    !replay_read(&in, buf, sz)) {
			pr_warn("pipeline: replay: truncated or corrupt record %ld", n);
			break;
		}
		p->replay_now = ((struct obs_ev_hdr *)buf)->ts_ns;
		on_ring(p, buf, sz);
		if (++n % 256 == 0) {	/* what the 50 ms drain cadence does live */
			conn_table__expire(p->ct, p->replay_now);
			errors__tick(p->errs, p->replay_now);
			logs__tick(p->logs, p->replay_now);
		}
	}
	p->replay_now += 10ull * 1000000000ull;	/* let every hold and linger expire */
	conn_table__expire(p->ct, p->replay_now);
	errors__tick(p->errs, p->replay_now);
	logs__tick(p->logs, p->replay_now);
	free(buf);
	free(in.chunk);
	return n;
}

int pipeline__add_block_sink(struct pipeline *p, block_sink_fn fn, void *ctx)
{
	if (p->n_block_sinks >= PIPELINE_MAX_SINKS)
		return -E2BIG;
	p->block_sinks[p->n_block_sinks].fn = fn;
	p->block_sinks[p->n_block_sinks++].ctx = ctx;
	return 0;
}

static const char *loop_service(void *ctx, uint32_t pid)
{
	struct pipeline *p = ctx;

	return services__of(p->svc, pid, "", 0);
}

void pipeline__foreach_loop(struct pipeline *p,
			    void (*fn)(void *ctx, uint32_t pid, const char *service,
				       const struct loop_stats *s),
			    void *ctx)
{
	if (p->l)	/* fresh: a scrape right after a block sees it */
		loops__refresh(p->loops, loader__loops_fd(p->l));
	loops__name(p->loops, loop_service, p);
	loops__foreach(p->loops, fn, ctx);
}
