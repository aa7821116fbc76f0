// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel's floor (`make bench`, section 3b): what the primitives every
 * obs record is made of cost on this machine, each program measured alone on
 * sock:sock_recv_length (one run per socket read, the server's and the load
 * generator's) with kernel.bpf_stats_enabled=1, as obsd's programs are.
 *   f_empty   a run that returns at once: the tracepoint's price of a run
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

__u64 shared;

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_empty, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_clock, struct sock *sk, int ret, int flags)
{
	return bpf_ktime_get_ns() == 1;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_atomic, struct sock *sk, int ret, int flags)
{
	__sync_fetch_and_add(&shared, 1);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_ring, struct sock *sk, int ret, int flags)
{
	__u64 *p = bpf_ringbuf_reserve(&rb, 256, 0);

	if (!p)
		return 0;
	for (int i = 0; i < 8; i++)
		p[i] = i;
	bpf_ringbuf_submit(p, BPF_RB_NO_WAKEUP);
	return 0;
}
