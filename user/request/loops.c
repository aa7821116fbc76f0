// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include "request/loops.h"

struct thread_snap {
	uint32_t tid;		/* 0: free */
	uint32_t tgid;
	bool seen;		/* present in the last refresh */
	struct loop_stats s;
};

struct worker {
	uint32_t pid;		/* 0: free */
	char service[64];	/* named once while alive: series keep their labels */
	struct loop_stats retired;	/* threads that exited */
};

struct recent {
	uint32_t pid;
	uint64_t start_ns, end_ns;
	char request_id[H1_REQID_MAX];
	char method[H1_METHOD_MAX];
	char route[REC_ROUTE_MAX];
};

struct loops {
	struct thread_snap threads[OBS_MAX_LOOPS];
	struct worker workers[LOOPS_MAX_WORKERS];
	struct recent recent[LOOPS_RECENT];
	size_t recent_next;
};

struct loops *loops__new(void)
{
	return calloc(1, sizeof(struct loops));
}

void loops__free(struct loops *l)
{
	free(l);
}

static void stats_add(struct loop_stats *to, const struct loop_stats *from)
{
	to->count += from->count;
	to->sum_ns += from->sum_ns;
	to->blocked += from->blocked;
	for (int i = 0; i < OBS_LOOP_BUCKETS; i++)
		to->buckets[i] += from->buckets[i];
}

static struct worker *worker_of(struct loops *l, uint32_t pid)
{
	struct worker *free_w = NULL;

	for (int i = 0; i < LOOPS_MAX_WORKERS; i++) {
		if (l->workers[i].pid == pid)
			return &l->workers[i];
		if (!l->workers[i].pid && !free_w)
			free_w = &l->workers[i];
	}
	if (free_w)
		free_w->pid = pid;
	return free_w;
}

static struct thread_snap *thread_of(struct loops *l, uint32_t tid)
{
	struct thread_snap *free_t = NULL;

	for (int i = 0; i < OBS_MAX_LOOPS; i++) {
		if (l->threads[i].tid == tid)
			return &l->threads[i];
		if (!l->threads[i].tid && !free_t)
			free_t = &l->threads[i];
	}
	if (free_t)
		free_t->tid = tid;
	return free_t;
}

void loops__refresh(struct loops *l, int map_fd)
{
	uint32_t key, next, *prev = NULL;
	struct thread_snap *t;
	struct obs_loop v;

	for (int i = 0; i < OBS_MAX_LOOPS; i++)
		l->threads[i].seen = false;
	while (!bpf_map_get_next_key(map_fd, prev, &next)) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(map_fd, &key, &v))
			continue;
		t = thread_of(l, key);
		if (!t)
			continue;
		if (t->tgid && t->tgid != v.tgid)	/* tid reused by another process */
			memset(&t->s, 0, sizeof(t->s));
		t->tgid = v.tgid;
		t->seen = true;
		t->s.count = v.count;
		t->s.sum_ns = v.sum_ns;
		t->s.blocked = v.blocked;
		memcpy(t->s.buckets, v.buckets, sizeof(t->s.buckets));
		worker_of(l, v.tgid);
	}
	for (int i = 0; i < OBS_MAX_LOOPS; i++) {	/* exited threads: keep their counts */
		struct worker *w;

		t = &l->threads[i];
		if (!t->tid || t->seen)
			continue;
		w = worker_of(l, t->tgid);
		if (w)
			stats_add(&w->retired, &t->s);
		memset(t, 0, sizeof(*t));
	}
}

void loops__name(struct loops *l, const char *(*name)(void *ctx, uint32_t pid), void *ctx)
{
	for (int i = 0; i < LOOPS_MAX_WORKERS; i++)
		if (l->workers[i].pid && !l->workers[i].service[0])
			snprintf(l->workers[i].service, sizeof(l->workers[i].service), "%s",
				 name(ctx, l->workers[i].pid));
}

void loops__foreach(const struct loops *l,
		    void (*fn)(void *ctx, uint32_t pid, const char *service,
			       const struct loop_stats *s),
		    void *ctx)
{
	for (int i = 0; i < LOOPS_MAX_WORKERS; i++) {
		const struct worker *w = &l->workers[i];
		struct loop_stats sum;

		if (!w->pid)
			continue;
		sum = w->retired;
		for (int j = 0; j < OBS_MAX_LOOPS; j++)
			if (l->threads[j].tid && l->threads[j].tgid == w->pid)
				stats_add(&sum, &l->threads[j].s);
		fn(ctx, w->pid, w->service, &sum);
	}
}

void loops__remember(struct loops *l, const struct record *r)
{
	struct recent *e = &l->recent[l->recent_next++ % LOOPS_RECENT];

	e->pid = r->pid;
	e->start_ns = r->start_ns;
	e->end_ns = r->end_ns;
	memcpy(e->request_id, r->request_id, sizeof(e->request_id));
	memcpy(e->method, r->method, sizeof(e->method));
	memcpy(e->route, r->route, sizeof(e->route));
}

static void blame_add(struct loop_block *b, const char *id, const char *method, const char *route,
		      bool in_flight)
{
	for (int i = 0; i < b->n; i++)
		if (!strcmp(b->reqs[i].request_id, id))
			return;
	if (b->n >= LOOP_BLAME_MAX)
		return;
	snprintf(b->reqs[b->n].request_id, sizeof(b->reqs[0].request_id), "%s", id);
	snprintf(b->reqs[b->n].method, sizeof(b->reqs[0].method), "%s", method);
	snprintf(b->reqs[b->n].route, sizeof(b->reqs[0].route), "%s", route);
	b->reqs[b->n].in_flight = in_flight;
	b->n++;
}

void loop_block__add(struct loop_block *b, const struct record *r, bool in_flight)
{
	if (r->start_ns <= b->start_ns + b->busy_ns)
		blame_add(b, r->request_id, r->method, r->route, in_flight);
}

void loops__blame_recent(const struct loops *l, struct loop_block *b)
{
	uint64_t end = b->start_ns + b->busy_ns;

	for (size_t i = 0; i < LOOPS_RECENT; i++) {
		const struct recent *e = &l->recent[i];

		if (e->pid == b->pid && e->request_id[0] && e->start_ns <= end &&
		    e->end_ns >= b->start_ns)
			blame_add(b, e->request_id, e->method, e->route, false);
	}
}

void loop_block_json(const struct loop_block *b, struct jbuf *jb)
{
	jb_obj_open(jb);
	jb_str(jb, "type", "LoopBlocked");
	jb_u64(jb, "ts_ns", b->wall_start_ns);
	jb_u64(jb, "pid", b->pid);
	jb_u64(jb, "tid", b->tid);
	jb_str(jb, "service", b->service);
	jb_dbl(jb, "busy_ms", b->busy_ns / 1e6);
	jb_dbl(jb, "cpu_wait_ms", b->cpu_wait_ns / 1e6);
	jb_arr_open(jb, "requests");
	for (int i = 0; i < b->n; i++) {
		jb_obj_open(jb);
		jb_str(jb, "request_id", b->reqs[i].request_id);
		jb_str(jb, "method", b->reqs[i].method);
		jb_str(jb, "route", b->reqs[i].route);
		jb_bool(jb, "in_flight", b->reqs[i].in_flight);
		jb_obj_close(jb);
	}
	jb_arr_close(jb);
	jb_obj_close(jb);
}
