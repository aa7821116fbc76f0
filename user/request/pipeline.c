// SPDX-License-Identifier: MIT
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "base/clock.h"
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
#include "request/sink.h"
#include "request/stats.h"

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
	/* the sinks' callbacks, one array per event (sink.h): no NULL checks
	 * per event */
	struct {
		void (*fn)(void *ctx, const struct record *r);
		void *ctx;
	} sinks[SINKS_MAX];
	struct {
		void (*fn)(void *ctx, const struct record *r, const struct exc_info *exc);
		void *ctx;
	} err_sinks[SINKS_MAX];
	struct {
		void (*fn)(void *ctx, const struct life_event *e);
		void *ctx;
	} life_sinks[SINKS_MAX];
	struct {
		void (*fn)(void *ctx, const struct loop_block *b);
		void *ctx;
	} block_sinks[SINKS_MAX];
	int n_sinks, n_err_sinks, n_life_sinks, n_block_sinks;
	int64_t wall_offset_ns;		/* CLOCK_REALTIME - CLOCK_MONOTONIC */
	FILE *rec;			/* --record */
	FILE *replay;			/* --replay: no loader, no ring */
	uint64_t replay_now;		/* time of the last replayed record */
	uint64_t ticks;
	uint64_t last_consume_ns;
	uint64_t last_expire_ns;	/* holds and timeouts last run (CLOCK_MONOTONIC) */
	uint64_t chunk_ns;		/* CLOCK_MONOTONIC at the current drain chunk's start
					   (replay: the record's time) */
	unsigned chunk_n;		/* records of the current drain chunk */
	uint64_t kc[OBS_C_MAX];
};

static const char *loop_service(void *ctx, uint32_t pid);

/* The container and pod of a process (cgroup.h); all "" without a cache. The
 * clock is the drain chunk's: reading it per request cost 2 % of obsd's CPU. */
static const struct cgroup_ident *container_of(struct pipeline *p, uint32_t pid)
{
	static const struct cgroup_ident none;

	return p->cgroups ? cgroup_cache__lookup(p->cgroups, pid, p->chunk_ns) : &none;
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
		ids_uuid4_hex(r->request_id);	/* the server's own replaces it when done */
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
	r->container = *container_of(p, r->pid);
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
		r->container = *container_of(p, r->pid);
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
		if (ce->r->flags & RECF_SERVER_REQID)	/* the server's own id wins */
			memcpy(ce->r->request_id, ce->r->x_request_id, sizeof(ce->r->request_id));
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

#define REC_MAGIC	"OBSREC2\n"	/* then records: u32 size, u32 0, bytes, padding to 8 */

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
		.container = container_of(p, h->pid),
	};

	conn_table__foreach_pending(p->ct, h->pid, log_inflight_visit, &f);
	logs__link(p->logs, h->pid, &f, &link);
	logs__write(p->logs, &src, &link, d->data, d->cap, d->len - d->cap - d->tail,
		    d->data + d->cap, d->tail);
}

static int on_ring(void *ctx, void *data, size_t size);

/*
 * The ring's callback: a drain stops every RING_CHUNK records (libbpf has
 * consumed the record when a callback returns an error) to look at the
 * clock: after each DRAIN_SLICE_NS of draining obsd yields the CPU. As
 * SCHED_BATCH it then lets a server that shares its CPU run, and a long
 * backlog becomes short stalls rather than one long one. The slice trades
 * the servers' p99 for obsd's CPU: with 1 ms, a busy drain (every 20 ms)
 * rarely yields, obsd spends ~0.1 us less per request in context switches,
 * and uvicorn's p99 is ~150 us longer (docs/bench.md, fourth round). The
 * servers' latency comes first.
 */
#define RING_CHUNK	128
#define DRAIN_SLICE_NS	(100ull * 1000ull)

static int ring_cb(void *ctx, void *data, size_t size)
{
	struct pipeline *p = ctx;

	on_ring(p, data, size);
	return ++p->chunk_n >= RING_CHUNK ? -EAGAIN : 0;
}

static int on_ring(void *ctx, void *data, size_t size)
{
	struct pipeline *p = ctx;
	const struct obs_ev_hdr *h = data;

	if (p->rec) {
		/* size, then the record, padded to 8 bytes: replayed in place */
		uint32_t hdr[2] = { size, 0 };
		static const uint8_t zero[8];
		size_t pad = (8 - size % 8) % 8;

		if (fwrite(hdr, sizeof(hdr), 1, p->rec) != 1 || fwrite(data, size, 1, p->rec) != 1 ||
		    (pad && fwrite(zero, pad, 1, p->rec) != 1)) {
			pr_warn("pipeline: recording failed: %s; recording stopped", strerror(errno));
			fclose(p->rec);
			p->rec = NULL;
		}
	}
	if (size >= sizeof(*h) && h->type == OBS_EV_WAKE)
		return 0;	/* its work was waking obsd: loader__lazy_hooks attaches */
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

/* Each sink's event callbacks into the per-event arrays. 0 or -E2BIG. */
static int take_sinks(struct pipeline *p, const struct sinks *ss)
{
	for (int i = 0; ss && i < ss->n; i++) {
		const struct sink_ops *o = ss->s[i].ops;
		void *ctx = ss->s[i].ctx;

		if (o->record) {
			p->sinks[p->n_sinks].fn = o->record;
			p->sinks[p->n_sinks++].ctx = ctx;
		}
		if (o->error) {
			p->err_sinks[p->n_err_sinks].fn = o->error;
			p->err_sinks[p->n_err_sinks++].ctx = ctx;
		}
		if (o->life) {
			p->life_sinks[p->n_life_sinks].fn = o->life;
			p->life_sinks[p->n_life_sinks++].ctx = ctx;
		}
		if (o->block) {
			p->block_sinks[p->n_block_sinks].fn = o->block;
			p->block_sinks[p->n_block_sinks++].ctx = ctx;
		}
		if (o->log && logs__add_sink(p->logs, o->log, ctx))
			return -E2BIG;
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
	p->wall_offset_ns = wall_offset_ns();
	p->errs = errors__new(error_event, release_record, p);
	p->ct = conn_table__new(on_conn_event, p);
	p->loops = loops__new();
	p->logs = logs__new();
	p->calls = clients__new();
	if (!p->ct || !p->errs || !p->loops || !p->logs || !p->calls) {
		err = -errno;
		goto out_table;
	}
	err = take_sinks(p, o->sinks);
	if (err) {
		pr_warn("pipeline: too many sinks");
		goto out_table;
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
	p->rb = ring_buffer__new(loader__ringbuf_fd(p->l), ring_cb, p, NULL);
	if (!p->rb) {
		err = -errno;
		pr_warn("pipeline: cannot open ring buffer: %s", strerror(errno));
		goto out_loader;
	}
	p->last_consume_ns = p->chunk_ns = mono_ns();
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

int pipeline__fd(const struct pipeline *p)
{
	return p->rb ? ring_buffer__epoll_fd(p->rb) : -1;
}

#define EXPIRE_EVERY_NS	(50ull * 1000000ull)

int pipeline__consume(struct pipeline *p)
{
	uint64_t now;
	int n = 0, r;

	if (!p->rb)
		return 0;	/* replay: no loader */
	/* close() is attached at the first followed UNIX connection: closes
	 * before this drain are not seen, conn_alive finds them when idle */
	loader__lazy_hooks(p->l);
	p->fill = loader__ringbuf_fill(p->l);
	if (p->fill > p->fill_peak)
		p->fill_peak = p->fill;
	now = mono_ns();
	for (uint64_t slice = now;;) {	/* RING_CHUNK records at a time */
		p->chunk_n = 0;
		p->chunk_ns = now;
		r = ring_buffer__consume(p->rb);
		if (r != -EAGAIN) {
			n += r > 0 ? r : 0;
			break;
		}
		n += RING_CHUNK;
		now = mono_ns();
		if (now - slice >= DRAIN_SLICE_NS) {
			sched_yield();
			slice = now = mono_ns();
		}
	}
	now = mono_ns();
	/* the holds and timeouts need no finer grain than the idle drain: the
	 * busy drains (every few ms) do not pay for them each time */
	if (now - p->last_expire_ns >= EXPIRE_EVERY_NS) {
		conn_table__expire(p->ct, now_ns(p));
		errors__tick(p->errs, now_ns(p));
		logs__tick(p->logs, now_ns(p));
		p->last_expire_ns = now;
	}
	p->last_consume_ns = now;
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
	p->wall_offset_ns = wall_offset_ns();
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

/*
 * The recording, read a chunk at a time and replayed in place, as the ring
 * buffer is live: copying each record out would cost the replay more
 * instructions than some of the pipeline stages it measures.
 */
#define REPLAY_CHUNK	(1 << 20)

struct replay_in {
	FILE *f;
	uint8_t *chunk;		/* 8-byte aligned, as every record in it */
	size_t len, off;	/* bytes in chunk, bytes of them consumed */
};

/* The next n (<= REPLAY_CHUNK) bytes of the recording, contiguous in the
 * chunk; NULL at its end. */
static const uint8_t *replay_next(struct replay_in *in, size_t n)
{
	const uint8_t *at;

	if (in->len - in->off < n) {	/* keep the rest, read more after it */
		memmove(in->chunk, in->chunk + in->off, in->len - in->off);
		in->len -= in->off;
		in->off = 0;
		in->len += fread(in->chunk + in->len, 1, REPLAY_CHUNK - in->len, in->f);
		if (in->len < n)
			return NULL;
	}
	at = in->chunk + in->off;
	in->off += n;
	return at;
}

long pipeline__replay(struct pipeline *p)
{
	struct replay_in in = { .f = p->replay, .chunk = malloc(REPLAY_CHUNK) };
	const uint32_t *hdr;
	long n = 0;

	if (!p->replay || !in.chunk) {
		free(in.chunk);
		return -EINVAL;
	}
	while ((hdr = (const uint32_t *)replay_next(&in, 8))) {
		uint32_t sz = hdr[0];
		void *rec;

		if (sz < sizeof(struct obs_ev_hdr) || sz > sizeof(struct obs_ev_data) + 3 * OBS_CAP_MAX ||
		    !(rec = (void *)replay_next(&in, (sz + 7) & ~7u))) {
			pr_warn("pipeline: replay: truncated or corrupt record %ld", n);
			break;
		}
		p->replay_now = p->chunk_ns = ((struct obs_ev_hdr *)rec)->ts_ns;
		on_ring(p, rec, sz);
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
	free(in.chunk);
	return n;
}

static const char *loop_service(void *ctx, uint32_t pid)
{
	struct pipeline *p = ctx;

	return services__of(p->svc, pid, "", 0);
}

/* ---- the snapshot (stats.h) ---- */

struct snap {
	struct pipeline *p;
	struct pipeline_stats *st;
	size_t cap_procs, cap_loops, cap_routes;
	int err;
};

/* Grow *arr (n used, *cap allocated, elements of size sz) by one; NULL on ENOMEM. */
static void *snap_slot(struct snap *w, void **arr, size_t *n, size_t *cap, size_t sz)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		void *a = realloc(*arr, c * sz);

		if (!a) {
			w->err = -ENOMEM;
			return NULL;
		}
		*arr = a;
		*cap = c;
	}
	return (char *)*arr + (*n)++ * sz;
}

static struct stats_proc *snap_proc(struct snap *w, uint32_t pid, const char *comm,
				    uint16_t lport, uint64_t first_seen_ns)
{
	struct pipeline_stats *st = w->st;
	struct stats_proc *sp = snap_slot(w, (void **)&st->procs, &st->n_procs, &w->cap_procs,
					  sizeof(*sp));

	if (!sp)
		return NULL;
	memset(sp, 0, sizeof(*sp));
	sp->pid = pid;
	sp->lport = lport;
	snprintf(sp->comm, sizeof(sp->comm), "%s", comm);
	snprintf(sp->service, sizeof(sp->service), "%s", services__of(w->p->svc, pid, comm, lport));
	sp->container = *container_of(w->p, pid);
	sp->first_seen_ns = first_seen_ns;
	return sp;
}

static int proc_cmp(const void *a, const void *b)
{
	const struct stats_proc *x = a, *y = b;

	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/* A connection counts for its process (added after the observed ones when it
 * is not one of them: the process table was full). */
static void snap_conn(void *ctx, const struct conn_view *v)
{
	struct snap *w = ctx;
	struct pipeline_stats *st = w->st;
	struct stats_proc key = { .pid = v->pid }, *sp;

	sp = bsearch(&key, st->procs, st->n_observed, sizeof(key), proc_cmp);
	for (size_t i = st->n_observed; !sp && i < st->n_procs; i++)
		if (st->procs[i].pid == v->pid)
			sp = &st->procs[i];
	if (!sp)
		sp = snap_proc(w, v->pid, v->comm, v->lport, 0);
	if (sp) {
		sp->conns++;
		sp->in_flight += v->in_flight;
	}
}

static void snap_loop(void *ctx, uint32_t pid, const char *service, const struct loop_stats *s)
{
	struct snap *w = ctx;
	struct pipeline_stats *st = w->st;
	struct stats_loop *sl = snap_slot(w, (void **)&st->loops, &st->n_loops, &w->cap_loops,
					  sizeof(*sl));

	if (!sl)
		return;
	sl->pid = pid;
	snprintf(sl->service, sizeof(sl->service), "%s", service);
	sl->s = *s;
}

static void snap_routes(void *ctx, const char *service, uint64_t collapsed, unsigned distinct)
{
	struct snap *w = ctx;
	struct pipeline_stats *st = w->st;
	struct stats_routes *sr = snap_slot(w, (void **)&st->routes, &st->n_routes,
					    &w->cap_routes, sizeof(*sr));

	if (!sr)
		return;
	snprintf(sr->service, sizeof(sr->service), "%s", service);
	sr->collapsed = collapsed;
	sr->distinct = distinct;
}

int pipeline__snapshot(struct pipeline *p, struct pipeline_stats *st)
{
	struct snap w = { .p = p, .st = st };

	memset(st, 0, sizeof(*st));
	st->now_ns = mono_ns();
	memcpy(st->kc, p->kc, sizeof(st->kc));
	st->conns = *conn_table__stats(p->ct);
	st->active_conns = conn_table__active(p->ct);
	st->events_lost = p->kc[OBS_C_LOST_RINGBUF] + p->kc[OBS_C_LOST_CONNS_FULL] +
			  p->kc[OBS_C_LOST_ARGS_FULL] + p->kc[OBS_C_LOST_TARGETS_FULL];
	st->fill = p->fill;
	st->fill_peak = p->fill_peak;
	st->last_consume_ns = p->last_consume_ns;
	st->traceparent_invalid = p->traceparent_invalid;
	st->errors = *errors__stats(p->errs);
	st->logs = *logs__stats(p->logs);
	st->calls = *clients__stats(p->calls);
	for (size_t i = 0; i < p->n_procs; i++)
		snap_proc(&w, p->procs[i].pid, p->procs[i].comm, p->procs[i].lport,
			  p->procs[i].first_seen_ns);
	if (st->n_procs)
		qsort(st->procs, st->n_procs, sizeof(*st->procs), proc_cmp);
	st->n_observed = st->n_procs;
	conn_table__foreach(p->ct, snap_conn, &w);
	if (p->l)	/* fresh: a scrape right after a block sees it */
		loops__refresh(p->loops, loader__loops_fd(p->l));
	loops__name(p->loops, loop_service, p);
	loops__foreach(p->loops, snap_loop, &w);
	routes__foreach_service(p->rt, snap_routes, &w);
	if (w.err)
		pipeline_stats__fini(st);
	return w.err;
}
