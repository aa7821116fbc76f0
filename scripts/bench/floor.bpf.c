// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel's floor (`make bench`, section 3b). Programs on
 * sock:sock_recv_length and sock:sock_send_length (one run per socket read or
 * write of any process), measured with kernel.bpf_stats_enabled=1 as obsd's
 * are, acting on the server's I/O only (target_tgid) and returning at once on
 * any other process's, as obsd ignores the load generator's sockets:
 *   f_recv_empty, f_send_empty   act with nothing: the price of the runs
 *   f_recv_min, f_send_min       a minimal observer: a 256-byte ring record
 *                                (reserve, timestamp, length, submit) per
 *                                read and write of the server, no socket
 *                                state, no bytes copied
 *   f_recv_copy, f_send_copy     a minimal reader of bytes: the same record
 *                                with the first 256 bytes moved, copied from
 *                                the syscall's buffer or iovec pieces (the
 *                                task's saved registers, as obsd finds them):
 *                                what any observer that reads HTTP must do
 *   f_recv_state, f_send_state   the reader of bytes keeping per-socket state:
 *                                first, on every socket operation (wrk's
 *                                too), the socket's local storage, as obsd
 *                                finds a connection's state (created at a
 *                                socket's first operation, 8 bytes)
 * "hits" counts the runs that acted. The loader (floor.c) drains the ring
 * every 20 ms, as obsd does.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "../../bpf/sysregs.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);	/* as obsd's (OBS_RINGBUF_DEFAULT) */
} rb SEC(".maps");

const volatile __u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} state SEC(".maps");

__u64 hits;		/* the only variable in .bss: floor.c reads it at offset 0 */

/* A run on the server's I/O acts: count it; any other returns at once. */
#define ACT()								\
	do {								\
		if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)	\
			return 0;					\
		hits++;							\
	} while (0)

static __always_inline int record(int ret, int dir)
{
	__u64 *p = bpf_ringbuf_reserve(&rb, 256, 0);

	if (!p)
		return 0;
	p[0] = bpf_ktime_get_ns();
	p[1] = ret;
	p[2] = dir;
	bpf_ringbuf_submit(p, BPF_RB_NO_WAKEUP);
	return 0;
}

#define COPY_K	256
#define COPY_N	4

/* The record with the bytes: up to COPY_K of the ret bytes moved, from the
 * buffer of read/recvfrom/write/sendto or the first COPY_N pieces of the
 * iovec of readv/writev/recvmsg/sendmsg (sendfile: none). */
static __always_inline int record_copy(int ret, int dir)
{
	struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	long nr = SYSCALL_NR(r);
	__u64 ptr = SYSCALL_ARG2(r), *p;
	struct iovec v[COPY_N];
	__u32 cnt = 0, off = 0;
	__u8 *d;

	if (nr == NR_readv || nr == NR_writev) {
		cnt = SYSCALL_ARG3(r);
	} else if (nr == NR_recvmsg || nr == NR_sendmsg) {
		struct user_msghdr m;

		if (bpf_probe_read_user(&m, sizeof(m), (void *)ptr))
			return 0;
		ptr = (__u64)m.msg_iov;
		cnt = m.msg_iovlen;
	}
	p = bpf_ringbuf_reserve(&rb, 3 * sizeof(__u64) + 2 * COPY_K, 0);
	if (!p)
		return 0;
	p[0] = bpf_ktime_get_ns();
	p[1] = ret;
	p[2] = dir;
	d = (__u8 *)&p[3];
	if (!cnt) {
		if (nr != NR_sendfile)
			bpf_probe_read_user(d, ret < COPY_K ? ret : COPY_K, (void *)ptr);
		bpf_ringbuf_submit(p, BPF_RB_NO_WAKEUP);
		return 0;
	}
	if (cnt > COPY_N)
		cnt = COPY_N;
	if (bpf_probe_read_user(v, cnt * sizeof(v[0]), (void *)ptr))
		cnt = 0;
	for (int i = 0; i < COPY_N; i++) {
		__u64 n;

		if (i >= cnt || off >= ret || off >= COPY_K)
			break;
		n = v[i].iov_len < ret - off ? v[i].iov_len : ret - off;
		if (n > COPY_K || bpf_probe_read_user(d + off, n, v[i].iov_base))
			break;
		off += n;
	}
	bpf_ringbuf_submit(p, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_recv_empty, struct sock *sk, int ret, int flags)
{
	ACT();
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(f_send_empty, struct sock *sk, int ret, int flags)
{
	ACT();
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_recv_min, struct sock *sk, int ret, int flags)
{
	ACT();
	return ret > 0 ? record(ret, 0) : 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(f_send_min, struct sock *sk, int ret, int flags)
{
	ACT();
	return ret > 0 ? record(ret, 1) : 0;
}

/* Per-socket state: the socket's storage, made at its first operation. True
 * when the socket is one to pass over (never here: the lookup is the cost). */
static __always_inline bool state_skip(struct sock *sk)
{
	__u64 *v = bpf_sk_storage_get(&state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	return v && *v;
}

/* The reader of bytes on one socket operation of ret bytes in direction dir. */
static __always_inline int copy_run(int ret, int dir)
{
	ACT();
	return ret > 0 ? record_copy(ret, dir) : 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_recv_copy, struct sock *sk, int ret, int flags)
{
	return copy_run(ret, 0);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(f_send_copy, struct sock *sk, int ret, int flags)
{
	return copy_run(ret, 1);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f_recv_state, struct sock *sk, int ret, int flags)
{
	return state_skip(sk) ? 0 : copy_run(ret, 0);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(f_send_state, struct sock *sk, int ret, int flags)
{
	return state_skip(sk) ? 0 : copy_run(ret, 1);
}

/*
 * The syscall tracepoints obsd attaches on every node (write for log lines,
 * epoll_wait/epoll_pwait for loop health), doing nothing: what a process
 * that does no socket I/O pays while any syscall tracepoint is attached
 * (every syscall takes the kernel's tracing path). Section 2 times dd with
 * these loaded.
 */
SEC("tracepoint/syscalls/sys_enter_write")
int f_sys_write(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_epoll_wait")
int f_sys_epoll_enter(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_epoll_wait")
int f_sys_epoll_exit(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_epoll_pwait")
int f_sys_epoll_penter(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_epoll_pwait")
int f_sys_epoll_pexit(void *ctx)
{
	return 0;
}
