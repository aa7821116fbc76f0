// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel's floor (`make bench`, section 3b): what the primitives every
 * obs record is made of cost on this machine, each program measured alone on
 * sock:sock_recv_length (one run per socket read, the server's and the load
 * generator's) with kernel.bpf_stats_enabled=1, as obsd's programs are. Like
 * obsd, each acts on the server's reads only (target_tgid) and returns at
 * once on the others; "hits" counts the runs that acted.
 *   f_empty   acts with nothing: the tracepoint's price of a run
 *   f_clock   bpf_ktime_get_ns(): every record's timestamp, every loop hook
 *   f_atomic  one locked add on a shared counter
 *   f_ring    bpf_ringbuf_reserve() of 256 bytes, 64 written, submit: a record
 * The loader (floor.c) drains the ring every 20 ms, as obsd does.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);	/* as obsd's (OBS_RINGBUF_DEFAULT) */
} rb SEC(".maps");

const volatile __u32 target_tgid = 0;
__u64 hits;		/* the only variable in .bss: floor.c reads it at offset 0 */
__u64 shared = 1;	/* .data */

/* A run on the server's read acts: count it; any other returns at once. */
#define ACT()								\
	do {								\
		if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)	\
			return 0;					\
		hits++;							\
	} while (0)

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_empty, struct sock *sk, int ret, int flags)
{
	ACT();
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_clock, struct sock *sk, int ret, int flags)
{
	ACT();
	return bpf_ktime_get_ns() == 1;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_atomic, struct sock *sk, int ret, int flags)
{
	ACT();
	__sync_fetch_and_add(&shared, 1);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_ring, struct sock *sk, int ret, int flags)
{
	__u64 *p;

	ACT();
	p = bpf_ringbuf_reserve(&rb, 256, 0);
	if (!p)
		return 0;
	for (int i = 0; i < 8; i++)
		p[i] = i;
	bpf_ringbuf_submit(p, BPF_RB_NO_WAKEUP);
	return 0;
}
