// SPDX-License-Identifier: GPL-2.0
/*
 * obs kernel side: track accepted TCP connections of target processes, keep
 * only those whose first bytes look like HTTP/1, and copy a bounded prefix
 * (and a short suffix) of every read/write on them into the ring buffer.
 * Everything else — parsing, matching, timing — is userspace's job.
 *
 * Hooks are syscall and sock/tcp/sched tracepoints only (no kprobes/fentry
 * here). Every drop is counted in the per-CPU "counters" map.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "obs.h"

#define AF_INET		2
#define AF_INET6	10
#define IPPROTO_TCP	6
#define MSG_PEEK	2
#define TCP_ESTABLISHED	1
#define TCP_SYN_RECV	3
#define TCP_CLOSE	7
#define TCP_CLOSE_WAIT	8
#define CAP_MASK	(2 * OBS_CAP_MAX - 1)
#define TAIL_MASK	(2 * OBS_TAIL_MAX - 1)

char LICENSE[] SEC("license") = "GPL";

/* Configuration, set by the loader between open and load. */
const volatile __u32 cap_bytes = OBS_CAP_DEFAULT;
const volatile __u64 wakeup_bytes = OBS_RINGBUF_DEFAULT / 8;
const volatile __u32 self_tgid = 0;	/* obsd/obsctl itself: never observed */
const volatile bool filter_pids = false;
const volatile __u64 loop_block_ns = OBS_LOOP_BLOCK_DEFAULT;
const volatile bool filter_ports = false;
const volatile __u32 n_comms = 0;
const volatile char comms[OBS_MAX_COMMS][OBS_COMM_LEN] = {};

/* Next connection id; the loader seeds it so ids are not reused across runs. */
__u64 next_conn_id = 1;

enum io_kind { IO_BUF = 1, IO_IOV = 2, IO_MSG = 3, IO_SENDFILE = 4 };

/* A data syscall between its enter and exit, keyed by pid_tgid. */
struct io_args {
	__u64 ptr;	/* buffer, iovec array or msghdr */
	__u32 fd;
	__u32 iovcnt;
	__u8 kind;
	__u8 dir;
	__u8 log;	/* a write to stdout/stderr of an observed process */
};

/* The data record under construction: header plus room for masked copies. */
struct data_scratch {
	struct obs_ev_data ev;
	__u8 buf[3 * OBS_CAP_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, OBS_RINGBUF_DEFAULT);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OBS_MAX_CONNS);
	__type(key, struct obs_conn_key);
	__type(value, struct obs_conn);
} conns SEC(".maps");

/* struct sock * -> its connection, for sock/tcp tracepoints. Kept after the
 * fd's close() until the socket reaches TCP_CLOSE, so that a RST answering
 * the last response still reaches userspace. */
struct sock_ref {
	struct obs_conn_key k;
	__u64 conn_id;
	__u32 closed;	/* the fd was closed; conns has no entry any more */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, OBS_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct sock_ref);
} socks SEC(".maps");

/* First data arrival on sockets not accepted yet (no struct socket): sk -> ns.
 * accept() moves it into the connection: queue time of a first request. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} early SEC(".maps");

/* Processes that own (or owned) tracked connections: tgid -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OBS_MAX_CONNS);
	__type(key, __u32);
	__type(value, __u8);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct io_args);
} args SEC(".maps");

/* The TLS connection each thread last read or wrote ciphertext on: tid -> key. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct obs_conn_key);
} last_tls SEC(".maps");

/* --pid targets and their followed children: tgid -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OBS_MAX_TARGETS);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

/* --port: server local port (host order) -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OBS_MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OBS_MAX_LOOPS);
	__type(key, __u32);
	__type(value, struct obs_loop);
} loops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OBS_C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct data_scratch);
} scratch SEC(".maps");

static __always_inline bool is_http(const struct obs_conn *c)
{
	return c->proto == OBS_PROTO_HTTP1 || c->proto == OBS_PROTO_TLS_HTTP1 ||
	       c->proto == OBS_PROTO_HTTP2 || c->proto == OBS_PROTO_TLS_HTTP2;
}

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		(*v)++;
}

static __always_inline __u64 rb_flags(void)
{
	return bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									  : BPF_RB_NO_WAKEUP;
}

static __always_inline int rb_out(void *data, __u64 size)
{
	if (bpf_ringbuf_output(&rb, data, size, rb_flags())) {
		count(OBS_C_LOST_RINGBUF);
		return -1;
	}
	count(OBS_C_EVENTS);
	return 0;
}

static __always_inline void fill_hdr(struct obs_ev_hdr *h, struct obs_conn_key *k,
				     struct obs_conn *c, __u32 type)
{
	__u64 id = bpf_get_current_pid_tgid();

	h->ts_ns = bpf_ktime_get_ns();
	h->conn_id = c->conn_id;
	h->seq = __sync_fetch_and_add(&c->seq, 1) + 1;
	h->type = type;
	h->pid = k->tgid;
	h->tid = (__u32)id;
	h->fd = k->fd;
	h->pad = 0;
}

/* Is this process one we watch? Cheap checks first. */
static __always_inline bool is_target(__u32 tgid)
{
	if (tgid == self_tgid)
		return false;
	if (filter_pids && !bpf_map_lookup_elem(&targets, &tgid))
		return false;
	if (n_comms) {
		char comm[OBS_COMM_LEN];
		bool hit = false;

		bpf_get_current_comm(comm, sizeof(comm));
		for (__u32 i = 0; i < OBS_MAX_COMMS && i < n_comms; i++) {
			bool same = true;

			for (int j = 0; j < OBS_COMM_LEN; j++) {
				if (comm[j] != comms[i][j]) {
					same = false;
					break;
				}
				if (!comm[j])
					break;
			}
			if (same) {
				hit = true;
				break;
			}
		}
		if (!hit)
			return false;
	}
	return true;
}

static __always_inline struct sock *sock_of_fd(__u32 fd)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(t, files, fdt, fd);
	struct file *f = NULL;
	struct socket *so;

	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	so = BPF_CORE_READ(f, private_data);
	if (!so)
		return NULL;
	return BPF_CORE_READ(so, sk);
}

/* accept()/accept4() returned fd: start tracking it if it is a target's TCP socket. */
static __always_inline int on_accept(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct obs_conn_key k = { .tgid = id >> 32, .fd = (__u32)ret };
	struct obs_conn c = {};
	struct sock *sk;
	struct sock_ref ref = {};
	struct obs_loop loop_z = {};
	__u64 *arrival, skp;
	__u32 tid = (__u32)id;
	__u8 one = 1;

	if (ret < 0 || !is_target(k.tgid))
		return 0;
	sk = sock_of_fd(k.fd);
	if (!sk)
		return 0;
	c.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if ((c.family != AF_INET && c.family != AF_INET6) ||
	    BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	c.lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (filter_ports && !bpf_map_lookup_elem(&ports, &c.lport))
		return 0;
	c.rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (c.family == AF_INET) {
		BPF_CORE_READ_INTO(&c.laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO(&c.raddr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&c.laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&c.raddr, sk, __sk_common.skc_v6_daddr);
	}
	/* The client may have sent its request and FIN before accept() returned. */
	if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE_WAIT)
		c.early |= 1 << OBS_ST_PEER_FIN;
	skp = (__u64)sk;
	arrival = bpf_map_lookup_elem(&early, &skp);
	if (arrival) {
		c.arrival_ns = *arrival;
		bpf_map_delete_elem(&early, &skp);
	}
	c.conn_id = __sync_fetch_and_add(&next_conn_id, 1);
	c.accept_ts_ns = bpf_ktime_get_ns();
	c.sk = (__u64)sk;
	skp = c.sk;
	/* A stale entry means a close we never saw: the new socket replaces it. */
	if (bpf_map_update_elem(&conns, &k, &c, BPF_ANY)) {
		count(OBS_C_LOST_CONNS_FULL);
		return 0;
	}
	ref.k = k;
	ref.conn_id = c.conn_id;
	bpf_map_update_elem(&socks, &skp, &ref, BPF_ANY);
	bpf_map_update_elem(&procs, &k.tgid, &one, BPF_ANY);
	/* The accepting thread runs the event loop (asyncio, uvloop): start
	 * timing it now, so a block in the very first request counts too. */
	loop_z.tgid = k.tgid;
	loop_z.last_exit_ns = c.accept_ts_ns;
	bpf_map_update_elem(&loops, &tid, &loop_z, BPF_NOEXIST);
	count(OBS_C_CONNS_OPENED);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx->ret);
}

/* Remember a data syscall's arguments when its fd is a connection we follow. */
static __always_inline int enter_io(__u32 fd, __u64 ptr, __u32 iovcnt, __u8 kind, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct obs_conn_key k = { .tgid = id >> 32, .fd = fd };
	struct obs_conn *c = bpf_map_lookup_elem(&conns, &k);
	struct io_args a = { .ptr = ptr, .fd = fd, .iovcnt = iovcnt, .kind = kind, .dir = dir };

	if (!c) {
		/* stdout/stderr of a process serving HTTP: tracebacks, logs */
		if (fd > 2 || fd == 0 || dir != OBS_DIR_OUT || kind == IO_SENDFILE ||
		    !bpf_map_lookup_elem(&procs, &k.tgid))
			return 0;
		a.log = 1;
	} else if (c->proto == OBS_PROTO_OTHER || c->proto == OBS_PROTO_TLS_OTHER) {
		return 0;
	}
	if (bpf_map_update_elem(&args, &id, &a, BPF_ANY))
		count(OBS_C_LOST_ARGS_FULL);
	return 0;
}

/*
 * iovec walks run under bpf_loop(): the callback is verified once, so
 * OBS_MAX_IOV can be as large as the kernel's UIO_MAXIOV (gRPC writes a
 * header block as dozens of small iovecs).
 */
struct iov_walk {
	const struct iovec *iov;
	__u32 iovcnt;
	__u32 want;	/* head: bytes wanted */
	__u32 off;	/* head: bytes copied; range: bytes of the range copied */
	__u64 pos;	/* range: stream offset of iov[i] */
	__u64 from;	/* range: first stream byte wanted */
	__u64 end;	/* range: one past the last */
	bool fault;
};

static long iov_head_cb(__u32 i, struct iov_walk *w)
{
	__u32 zero = 0;
	struct data_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	struct iovec v;
	__u64 n;

	if (!s || i >= w->iovcnt || w->off >= w->want || w->off >= OBS_CAP_MAX)
		return 1;
	if (bpf_probe_read_user(&v, sizeof(v), &w->iov[i]))
		return 1;
	n = v.iov_len;
	if (n > w->want - w->off)
		n = w->want - w->off;
	/* off < OBS_CAP_MAX, n <= CAP_MASK: inside the scratch buffer */
	if (bpf_probe_read_user(s->ev.data + (w->off & (OBS_CAP_MAX - 1)), n & CAP_MASK,
				v.iov_base))
		return 1;
	w->off += n;
	return 0;
}

/* Copy up to want bytes from an iovec array into the scratch record's data. */
static __always_inline __u32 copy_iov_head(const struct iovec *iov, __u32 iovcnt, __u32 want)
{
	struct iov_walk w = { .iov = iov, .iovcnt = iovcnt, .want = want };

	bpf_loop(OBS_MAX_IOV, iov_head_cb, &w, 0);
	return w.off;
}

static long iov_range_cb(__u32 i, struct iov_walk *w)
{
	__u32 zero = 0;
	struct data_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	struct iovec v;
	__u64 a, b;

	if (!s || i >= w->iovcnt || w->pos >= w->end)
		return 1;
	if (bpf_probe_read_user(&v, sizeof(v), &w->iov[i])) {
		w->fault = true;
		return 1;
	}
	a = w->pos > w->from ? w->pos : w->from;
	b = w->pos + v.iov_len < w->end ? w->pos + v.iov_len : w->end;
	if (a < b && bpf_probe_read_user(s->ev.data + ((w->want + (a - w->from)) & CAP_MASK),
					 (b - a) & TAIL_MASK, v.iov_base + (a - w->pos))) {
		w->fault = true;
		return 1;
	}
	w->pos += v.iov_len;
	return 0;
}

/* Copy stream bytes [from, from + n) of an iovec array to the scratch data at
 * offset at; returns success. */
static __always_inline bool copy_iov_range(__u32 at, const struct iovec *iov, __u32 iovcnt,
					   __u64 from, __u32 n)
{
	struct iov_walk w = { .iov = iov, .iovcnt = iovcnt, .want = at, .from = from,
			      .end = from + n };

	bpf_loop(OBS_MAX_IOV, iov_range_cb, &w, 0);
	return !w.fault && w.pos >= w.end;
}

/* Does a server's first read look like an HTTP/1 request line? */
static __always_inline bool looks_http1(const __u8 *p, __u32 n)
{
	__u32 i;

	if (n >= 4 && p[0] == 'P' && p[1] == 'R' && p[2] == 'I' && p[3] == ' ')
		return false; /* HTTP/2 prior-knowledge preface */
	for (i = 0; i < 17 && i < n; i++) {
		if (p[i] == ' ')
			return i > 0;
		if (p[i] < 'A' || p[i] > 'Z')
			return false;
	}
	return i == n && i < 17; /* all uppercase so far: let userspace decide */
}

static __always_inline void emit_open(struct obs_conn_key *k, struct obs_conn *c)
{
	struct obs_ev_open o = {};

	fill_hdr(&o.h, k, c, OBS_EV_OPEN);
	o.accept_ts_ns = c->accept_ts_ns;
	__builtin_memcpy(o.laddr, c->laddr, 16);
	__builtin_memcpy(o.raddr, c->raddr, 16);
	o.family = c->family;
	o.lport = c->lport;
	o.rport = c->rport;
	o.flags = (c->proto == OBS_PROTO_TLS_HTTP1 || c->proto == OBS_PROTO_TLS_HTTP2 ?
			   OBS_OPEN_TLS : 0) |
		  (c->proto == OBS_PROTO_HTTP2 || c->proto == OBS_PROTO_TLS_HTTP2 ? OBS_OPEN_H2 : 0);
	bpf_get_current_comm(o.comm, sizeof(o.comm));
	rb_out(&o, sizeof(o));
}

static __always_inline void emit_simple(struct obs_conn_key *k, struct obs_conn *c, __u32 type,
					__u32 what, __u32 arg)
{
	struct obs_ev_state e = {};

	fill_hdr(&e.h, k, c, type);
	e.what = what;
	e.arg = arg;
	rb_out(&e, type == OBS_EV_STATE ? sizeof(e) : sizeof(struct obs_ev_close));
}

/*
 * Copy the first cap_bytes and, of longer transfers, the last OBS_TAIL_MAX
 * bytes of a transfer of ret bytes into s->ev.data. Sets cap/tail.
 */
static __always_inline void capture(struct data_scratch *s, __u8 kind, __u64 ptr,
				    const struct iovec *iov, __u32 iovcnt, __u64 ret, __u32 limit,
				    __u32 *capp, __u32 *tailp)
{
	__u32 cap = 0, tail = 0;

	s->ev.flags = 0;
	if (kind == IO_SENDFILE) {
		s->ev.flags |= OBS_DF_SENDFILE;
		goto out;
	}
	cap = ret < limit ? (__u32)ret : limit;
	if (cap > OBS_CAP_MAX)
		cap = OBS_CAP_MAX;
	if (kind == IO_BUF) {
		if (bpf_probe_read_user(s->ev.data, cap & CAP_MASK, (void *)ptr)) {
			count(OBS_C_READ_FAULT);
			cap = 0;
		}
	} else {
		__u32 got = copy_iov_head(iov, iovcnt, cap);

		if (got < cap)
			s->ev.flags |= OBS_DF_IOV_SHORT;
		cap = got;
	}
	if (ret > cap) {
		__u64 t = ret - cap, from;

		tail = t < OBS_TAIL_MAX ? t : OBS_TAIL_MAX;
		from = ret - tail;
		if (kind == IO_BUF) {
			if (bpf_probe_read_user(s->ev.data + (cap & CAP_MASK), tail & TAIL_MASK,
						(void *)(ptr + from)))
				tail = 0;
		} else if (!copy_iov_range(cap, iov, iovcnt, from, tail)) {
			tail = 0;
		}
		count(OBS_C_TRUNCATED);
	}
out:
	*capp = cap;
	*tailp = tail;
}

/* The HTTP/2 client preface "PRI * HTTP/2.0\r\n" (its first 16 bytes, or all
 * of a shorter first read). */
static __always_inline bool looks_h2(const __u8 *p, __u32 n)
{
	const char pri[] = "PRI * HTTP/2.0\r\n";

	if (n < 4)
		return false;
	for (int i = 0; i < 16; i++) {
		if (i >= n)
			return true;
		if (p[i] != pri[i])
			return false;
	}
	return true;
}

/* A TLS ClientHello: handshake record, version 3.x. */
static __always_inline bool looks_tls(const __u8 *p, __u32 n)
{
	return n >= 3 && p[0] == 0x16 && p[1] == 0x03 && p[2] <= 0x04;
}

static __always_inline void emit_early_state(struct obs_conn_key *k, struct obs_conn *c)
{
	if (c->early & (1 << OBS_ST_PEER_FIN))
		emit_simple(k, c, OBS_EV_STATE, OBS_ST_PEER_FIN, 0);
	if (c->early & (1 << OBS_ST_RESET))
		emit_simple(k, c, OBS_EV_STATE, OBS_ST_RESET, 0);
}

/* Emit the captured bytes of s as a data record of connection c. */
static __always_inline void emit_data(struct obs_conn_key *k, struct obs_conn *c,
				      struct data_scratch *s, __u64 ret, __u32 cap, __u32 tail,
				      __u8 dir)
{
	fill_hdr(&s->ev.h, k, c, OBS_EV_DATA);
	s->ev.arrival_ns = 0;
	if (dir == OBS_DIR_IN) {	/* queue time: arrival -> this read */
		s->ev.arrival_ns = c->arrival_ns;
		c->arrival_ns = 0;
	}
	s->ev.len = ret;
	s->ev.cap = cap;
	s->ev.tail = tail;
	s->ev.dir = dir;
	rb_out(&s->ev, sizeof(s->ev) + (cap & CAP_MASK) + (tail & TAIL_MASK));
}

static __always_inline void emit_log(struct obs_conn_key *k, struct data_scratch *s, __u64 ret,
				     __u32 cap, __u32 tail)
{
	s->ev.h.ts_ns = bpf_ktime_get_ns();
	s->ev.h.conn_id = 0;
	s->ev.h.seq = 0;
	s->ev.h.type = OBS_EV_LOG;
	s->ev.h.pid = k->tgid;
	s->ev.h.tid = (__u32)bpf_get_current_pid_tgid();
	s->ev.h.fd = k->fd;
	s->ev.len = ret;
	s->ev.cap = cap;
	s->ev.tail = tail;
	s->ev.dir = k->fd;
	count(OBS_C_LOG_WRITES);
	rb_out(&s->ev, sizeof(s->ev) + (cap & CAP_MASK) + (tail & TAIL_MASK));
}

/* An adopted connection (open before we started) gets its socket on first use. */
static __always_inline void adopt_sock(struct obs_conn_key *k, struct obs_conn *c)
{
	struct sock_ref ref = { .k = *k, .conn_id = c->conn_id };
	__u64 skp;

	if (c->sk)
		return;
	c->sk = (__u64)sock_of_fd(k->fd);
	skp = c->sk;
	if (skp)
		bpf_map_update_elem(&socks, &skp, &ref, BPF_ANY);
}

static __always_inline int exit_io(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct io_args *ap = bpf_map_lookup_elem(&args, &id);
	struct obs_conn_key k;
	struct data_scratch *s;
	struct obs_conn *c;
	const struct iovec *iov = NULL;
	struct io_args a;
	__u32 zero = 0, cap, tail, iovcnt, tid = (__u32)id;

	if (!ap)
		return 0;
	a = *ap;
	bpf_map_delete_elem(&args, &id);
	if (ret <= 0)
		return 0;
	k.tgid = id >> 32;
	k.fd = a.fd;
	c = a.log ? NULL : bpf_map_lookup_elem(&conns, &k);
	if (c && c->proto >= OBS_PROTO_TLS && c->proto != OBS_PROTO_HTTP2) {
		/* ciphertext: the SSL_read/SSL_write probes report the plaintext;
		 * remember which connection this thread just used */
		bpf_map_update_elem(&last_tls, &tid, &k, BPF_ANY);
		return 0;
	}
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s || (!c && !a.log))
		return 0;
	iovcnt = a.iovcnt;
	if (a.kind == IO_MSG) {
		struct user_msghdr m;

		if (bpf_probe_read_user(&m, sizeof(m), (void *)a.ptr)) {
			count(OBS_C_READ_FAULT);
			return 0;
		}
		iov = m.msg_iov;
		iovcnt = m.msg_iovlen;
	} else if (a.kind == IO_IOV) {
		iov = (const struct iovec *)a.ptr;
	}
	/* a traceback is one write of several KB: logs get the whole capture */
	capture(s, a.kind, a.ptr, iov, iovcnt, ret, a.log ? OBS_CAP_MAX : cap_bytes, &cap, &tail);
	if (!c) {
		emit_log(&k, s, ret, cap, tail);
		return 0;
	}
	if (c->proto == OBS_PROTO_UNKNOWN && (c->early & OBS_CONN_ADOPTED)) {
		/* open before we started: wait for the next request's first byte */
		if (a.dir != OBS_DIR_IN || !looks_http1(s->ev.data, cap)) {
			count(OBS_C_ADOPT_SKIPPED);
			return 0;
		}
		adopt_sock(&k, c);
	}
	if (c->proto == OBS_PROTO_UNKNOWN) {
		if (a.dir == OBS_DIR_IN && looks_tls(s->ev.data, cap)) {
			c->proto = OBS_PROTO_TLS;
			bpf_map_update_elem(&last_tls, &tid, &k, BPF_ANY);
			return 0;
		}
		/* the client's first bytes decide: an HTTP/2 server (gRPC) sends its
		 * SETTINGS before reading anything */
		if (a.dir == OBS_DIR_OUT)
			return 0;
		if (looks_h2(s->ev.data, cap)) {
			c->proto = OBS_PROTO_HTTP2;
		} else if (!looks_http1(s->ev.data, cap)) {
			c->proto = OBS_PROTO_OTHER;
			count(OBS_C_CONNS_NOT_HTTP);
			return 0;
		} else {
			c->proto = OBS_PROTO_HTTP1;
		}
		emit_open(&k, c);
		emit_early_state(&k, c);
	} else if (c->proto != OBS_PROTO_HTTP1 && c->proto != OBS_PROTO_HTTP2) {
		return 0;
	}
	emit_data(&k, c, s, ret, cap, tail, a.dir);
	return 0;
}

/* ---- TLS: OpenSSL's SSL_read/SSL_write(_ex), plaintext side ---- */

struct ssl_args {
	__u64 ssl;
	__u64 buf;
	__u64 bytes_ptr;	/* _ex: size_t *readbytes / *written */
	__u8 dir;
	__u8 ex;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ssl_args);
} ssl_calls SEC(".maps");

/* SSL * -> connection, learnt from the thread's last ciphertext syscall. SSL
 * objects and fds are reused, so the connection id must still match. */
struct ssl_ref {
	struct obs_conn_key k;
	__u64 conn_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, OBS_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct ssl_ref);
} ssl_conns SEC(".maps");

static __always_inline int ssl_enter(__u64 ssl, __u64 buf, __u64 bytes_ptr, __u8 dir, __u8 ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct ssl_args a = { .ssl = ssl, .buf = buf, .bytes_ptr = bytes_ptr, .dir = dir, .ex = ex };

	if (!bpf_map_lookup_elem(&procs, &tgid))
		return 0;	/* not a process serving tracked connections */
	bpf_map_update_elem(&ssl_calls, &id, &a, BPF_ANY);
	return 0;
}

static __always_inline int ssl_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid(), len;
	struct ssl_args *ap = bpf_map_lookup_elem(&ssl_calls, &id);
	struct obs_conn_key *kp, k;
	struct ssl_ref *ref, nref;
	struct data_scratch *s;
	struct obs_conn *c;
	struct ssl_args a;
	__u32 zero = 0, tid = (__u32)id, cap, tail;

	if (!ap)
		return 0;
	a = *ap;
	bpf_map_delete_elem(&ssl_calls, &id);
	if (ret <= 0)
		return 0;
	len = ret;
	if (a.ex && bpf_probe_read_user(&len, sizeof(len), (void *)a.bytes_ptr))
		return 0;
	if (!len)
		return 0;
	ref = bpf_map_lookup_elem(&ssl_conns, &a.ssl);
	c = ref ? bpf_map_lookup_elem(&conns, &ref->k) : NULL;
	if (c && c->conn_id == ref->conn_id) {
		k = ref->k;
	} else {	/* new (or reused) SSL object: the connection this thread just used */
		kp = bpf_map_lookup_elem(&last_tls, &tid);
		if (!kp)
			return 0;
		k = *kp;
		c = bpf_map_lookup_elem(&conns, &k);
		if (!c)
			return 0;
		if (c->ssl && c->ssl != a.ssl) {
			/* that connection has its SSL object: this one's connection is
			 * unknown (concurrent handshakes on one thread) — drop, never
			 * mix two connections' bytes */
			count(OBS_C_TLS_UNMAPPED);
			return 0;
		}
		c->ssl = a.ssl;
		nref.k = k;
		nref.conn_id = c->conn_id;
		bpf_map_update_elem(&ssl_conns, &a.ssl, &nref, BPF_ANY);
	}
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!c || !s || c->proto < OBS_PROTO_TLS || c->proto == OBS_PROTO_HTTP2)
		return 0;
	capture(s, IO_BUF, a.buf, NULL, 0, len, cap_bytes, &cap, &tail);
	if (c->proto == OBS_PROTO_TLS) {
		/* An HTTP/2 server sends its SETTINGS as soon as the handshake is
		 * done: the client's first plaintext decides. */
		if (a.dir == OBS_DIR_OUT)
			return 0;
		if (looks_h2(s->ev.data, cap)) {
			c->proto = OBS_PROTO_TLS_HTTP2;
		} else if (a.dir != OBS_DIR_IN || !looks_http1(s->ev.data, cap)) {
			c->proto = OBS_PROTO_TLS_OTHER;
			count(OBS_C_CONNS_NOT_HTTP);
			return 0;
		} else {
			c->proto = OBS_PROTO_TLS_HTTP1;
		}
		emit_open(&k, c);
		emit_early_state(&k, c);
	} else if (c->proto != OBS_PROTO_TLS_HTTP1 && c->proto != OBS_PROTO_TLS_HTTP2) {
		return 0;
	}
	emit_data(&k, c, s, len, cap, tail, a.dir);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{
	return ssl_enter((__u64)ssl, (__u64)buf, 0, OBS_DIR_IN, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_read_exit, int ret)
{
	return ssl_exit(ret);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	return ssl_enter((__u64)ssl, (__u64)buf, (__u64)readbytes, OBS_DIR_IN, 1);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_read_ex_exit, int ret)
{
	return ssl_exit(ret);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter, void *ssl, const void *buf, int num)
{
	return ssl_enter((__u64)ssl, (__u64)buf, 0, OBS_DIR_OUT, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_write_exit, int ret)
{
	return ssl_exit(ret);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, const void *buf, size_t num, size_t *written)
{
	return ssl_enter((__u64)ssl, (__u64)buf, (__u64)written, OBS_DIR_OUT, 1);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_write_ex_exit, int ret)
{
	return ssl_exit(ret);
}

#define ENTER(name, fdarg, ptrarg, cnt, kind, dir)                                       \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                      \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)                          \
	{                                                                                \
		return enter_io(ctx->args[fdarg], ctx->args[ptrarg], cnt, kind, dir);    \
	}                                                                                \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                       \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)                            \
	{                                                                                \
		return exit_io(ctx->ret);                                                \
	}

ENTER(read, 0, 1, 0, IO_BUF, OBS_DIR_IN)
ENTER(write, 0, 1, 0, IO_BUF, OBS_DIR_OUT)
ENTER(sendto, 0, 1, 0, IO_BUF, OBS_DIR_OUT)
ENTER(sendmsg, 0, 1, 0, IO_MSG, OBS_DIR_OUT)
ENTER(sendfile64, 0, 1, 0, IO_SENDFILE, OBS_DIR_OUT)

SEC("tracepoint/syscalls/sys_enter_readv")
int enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(ctx->args[0], ctx->args[1], ctx->args[2], IO_IOV, OBS_DIR_IN);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io(ctx->args[0], ctx->args[1], ctx->args[2], IO_IOV, OBS_DIR_OUT);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(ctx->ret);
}

/* MSG_PEEK reads leave the bytes in the socket: they will be read again. */
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[3] & MSG_PEEK)
		return 0;
	return enter_io(ctx->args[0], ctx->args[1], 0, IO_BUF, OBS_DIR_IN);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[2] & MSG_PEEK)
		return 0;
	return enter_io(ctx->args[0], ctx->args[1], 0, IO_MSG, OBS_DIR_IN);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct obs_conn_key k = { .tgid = id >> 32, .fd = ctx->args[0] };
	struct obs_conn *c = bpf_map_lookup_elem(&conns, &k);
	__u64 sk;

	if (!c)
		return 0;
	sk = c->sk;
	if (is_http(c))
		emit_simple(&k, c, OBS_EV_CLOSE, 0, 0);
	if (is_http(c) &&
	    BPF_CORE_READ((struct sock *)sk, __sk_common.skc_state) != TCP_CLOSE) {
		struct sock_ref ref = { .k = k, .conn_id = c->conn_id, .closed = 1 };

		bpf_map_update_elem(&socks, &sk, &ref, BPF_EXIST);
	} else {
		bpf_map_delete_elem(&socks, &sk);
	}
	bpf_map_delete_elem(&conns, &k);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_shutdown")
int enter_shutdown(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct obs_conn_key k = { .tgid = id >> 32, .fd = ctx->args[0] };
	struct obs_conn *c = bpf_map_lookup_elem(&conns, &k);

	if (c && is_http(c))
		emit_simple(&k, c, OBS_EV_STATE, OBS_ST_SHUTDOWN, ctx->args[1]);
	return 0;
}

/* TCP state of a tracked socket changed (may run in softirq: no current task). */
static __always_inline void on_sock(const void *skaddr, __u32 what)
{
	__u64 sk = (__u64)skaddr;
	struct sock_ref *ref = bpf_map_lookup_elem(&socks, &sk);
	struct obs_conn_key k;
	struct obs_conn *c;

	if (!ref)
		return;
	k = ref->k;
	if (ref->closed) {
		/* After close(): only a reset matters (the client never read the
		 * last response); seq 0 marks an event past the connection's end. */
		if (what == OBS_ST_RESET) {
			struct obs_ev_state e = {};

			e.h.ts_ns = bpf_ktime_get_ns();
			e.h.conn_id = ref->conn_id;
			e.h.type = OBS_EV_STATE;
			e.h.pid = k.tgid;
			e.h.fd = k.fd;
			e.what = what;
			rb_out(&e, sizeof(e));
		} else if (what == OBS_ST_CLOSED) {
			bpf_map_delete_elem(&socks, &sk);
		}
		return;
	}
	c = bpf_map_lookup_elem(&conns, &k);
	if (!c || c->sk != sk)
		return;
	if (is_http(c))
		emit_simple(&k, c, OBS_EV_STATE, what, 0);
	else if (c->proto == OBS_PROTO_UNKNOWN || c->proto == OBS_PROTO_TLS)
		c->early |= 1 << what;	/* e.g. request + FIN before the first read */
}

SEC("tracepoint/sock/inet_sock_set_state")
int sock_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->newstate == TCP_ESTABLISHED && ctx->oldstate == TCP_SYN_RECV) {
		__u64 sk = (__u64)ctx->skaddr;	/* a new server socket: no stale arrival */

		bpf_map_delete_elem(&early, &sk);
		return 0;
	}
	if (ctx->newstate == TCP_CLOSE_WAIT)
		on_sock(ctx->skaddr, OBS_ST_PEER_FIN);
	else if (ctx->newstate == TCP_CLOSE)
		on_sock(ctx->skaddr, OBS_ST_CLOSED);
	return 0;
}

/* Request bytes reached a tracked socket: remember the first arrival before a read. */
SEC("tracepoint/sock/sk_data_ready")
int data_ready(struct trace_event_raw_sk_data_ready *ctx)
{
	__u64 sk = (__u64)ctx->skaddr;
	struct sock_ref *ref = bpf_map_lookup_elem(&socks, &sk);
	struct obs_conn *c;

	if (!ref) {
		__u64 now;

		if (ctx->protocol != IPPROTO_TCP ||
		    BPF_CORE_READ((struct sock *)ctx->skaddr, sk_socket) ||
		    BPF_CORE_READ((struct sock *)ctx->skaddr, __sk_common.skc_state) !=
			    TCP_ESTABLISHED)
			return 0;	/* only sockets still waiting in an accept queue */
		now = bpf_ktime_get_ns();
		bpf_map_update_elem(&early, &sk, &now, BPF_NOEXIST);
		return 0;
	}
	if (ref->closed)
		return 0;
	c = bpf_map_lookup_elem(&conns, &ref->k);
	if (c && c->sk == sk && !c->arrival_ns && c->proto != OBS_PROTO_OTHER)
		c->arrival_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("tracepoint/tcp/tcp_receive_reset")
int tcp_rst(struct trace_event_raw_tcp_event_sk *ctx)
{
	on_sock(ctx->skaddr, OBS_ST_RESET);
	return 0;
}

/* ---- event-loop iterations (asyncio, uvloop: epoll_wait per iteration) ---- */

static __always_inline __u32 log2_us(__u64 ns)
{
	__u64 us = ns / 1000;
	__u32 b = 0;

	for (int i = 0; i < OBS_LOOP_BUCKETS - 1; i++) {
		if (us < 2)
			break;
		us >>= 1;
		b++;
	}
	return b;
}

/* Nanoseconds this thread has waited on a run queue, ever (sched_info). */
static __always_inline __u64 run_delay(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();

	if (!bpf_core_field_exists(t->sched_info))
		return 0;
	return BPF_CORE_READ(t, sched_info.run_delay);
}

/* Entering a wait ends the busy period that began at the previous return. */
static __always_inline int loop_enter(void)
{
	__u64 id = bpf_get_current_pid_tgid(), now, busy, wait;
	__u32 tgid = id >> 32, tid = (__u32)id, b;
	struct obs_loop *l;

	if (!bpf_map_lookup_elem(&procs, &tgid))
		return 0;
	l = bpf_map_lookup_elem(&loops, &tid);
	if (!l) {
		struct obs_loop z = { .tgid = tgid };

		bpf_map_update_elem(&loops, &tid, &z, BPF_NOEXIST);
		return 0;
	}
	if (!l->last_exit_ns)
		return 0;
	now = bpf_ktime_get_ns();
	busy = now - l->last_exit_ns;
	/* Time runnable but without a CPU is the machine's doing, not the
	 * loop's: it is lag, but it does not make the iteration "blocked". */
	wait = run_delay() - l->exit_run_delay;
	if (wait > busy)
		wait = busy;
	b = log2_us(busy);
	if (b < OBS_LOOP_BUCKETS)
		__sync_fetch_and_add(&l->buckets[b], 1);
	l->count++;
	l->sum_ns += busy;
	if (busy - wait >= loop_block_ns) {
		struct obs_ev_loop e = {};

		l->blocked++;
		e.h.ts_ns = now;
		e.h.type = OBS_EV_LOOP;
		e.h.pid = tgid;
		e.h.tid = tid;
		e.start_ns = l->last_exit_ns;
		e.busy_ns = busy;
		e.cpu_wait_ns = wait;
		rb_out(&e, sizeof(e));
	}
	l->last_exit_ns = 0;
	return 0;
}

static __always_inline int loop_exit(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct obs_loop *l = bpf_map_lookup_elem(&loops, &tid);

	if (l) {
		l->last_exit_ns = bpf_ktime_get_ns();
		l->exit_run_delay = run_delay();
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_epoll_wait")
int enter_epoll_wait(void *ctx)
{
	return loop_enter();
}

SEC("tracepoint/syscalls/sys_exit_epoll_wait")
int exit_epoll_wait(void *ctx)
{
	return loop_exit();
}

SEC("tracepoint/syscalls/sys_enter_epoll_pwait")
int enter_epoll_pwait(void *ctx)
{
	return loop_enter();
}

SEC("tracepoint/syscalls/sys_exit_epoll_pwait")
int exit_epoll_pwait(void *ctx)
{
	return loop_exit();
}

/* Follow forks of --pid targets (gunicorn and uvicorn --workers spawn workers). */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	__u8 one = 1;

	if (!filter_pids || ptgid == ctgid || !bpf_map_lookup_elem(&targets, &ptgid))
		return 0;
	if (bpf_map_update_elem(&targets, &ctgid, &one, BPF_ANY))
		count(OBS_C_LOST_TARGETS_FULL);
	return 0;
}

static long drop_conn(struct bpf_map *map, struct obs_conn_key *k, struct obs_conn *c,
		      __u32 *tgid)
{
	__u64 sk = c->sk;

	if (k->tgid == *tgid) {
		bpf_map_delete_elem(&socks, &sk);
		bpf_map_delete_elem(map, k);
	}
	return 0;
}

/* A process with tracked connections exited: its fds closed without close(). */
SEC("tracepoint/sched/sched_process_exit")
int proc_exit(struct trace_event_raw_sched_process_template *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct task_struct *t;
	struct obs_ev_exit e = {};

	bpf_map_delete_elem(&loops, &tid);
	if ((__u32)id != tgid)
		return 0;
	bpf_map_delete_elem(&targets, &tgid);
	if (!bpf_map_lookup_elem(&procs, &tgid))
		return 0;
	bpf_map_delete_elem(&procs, &tgid);
	bpf_for_each_map_elem(&conns, drop_conn, &tgid, 0);
	t = (struct task_struct *)bpf_get_current_task();
	e.h.ts_ns = bpf_ktime_get_ns();
	e.h.type = OBS_EV_EXIT;
	e.h.pid = tgid;
	e.h.tid = tgid;
	e.exit_code = BPF_CORE_READ(t, exit_code);
	rb_out(&e, sizeof(e));
	return 0;
}
