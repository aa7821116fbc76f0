// SPDX-License-Identifier: GPL-2.0
/*
 * obs kernel side: follow the server side of stream sockets (TCP and UNIX)
 * that observed processes read HTTP (1.x or 2, plain or TLS) from, and copy a
 * bounded prefix (and a short suffix) of every read/write on them into the
 * ring buffer. Everything else — parsing, matching, timing — is userspace's.
 *
 * The cost rule: a process that does no socket I/O runs nothing of ours, and
 * a socket operation runs one short program. Socket I/O is seen once per
 * operation by sock:sock_recv_length/sock_send_length (tp_btf: no tracefs);
 * the user buffer comes from the syscall's saved registers. Per-socket state
 * lives in socket storage, so a socket we do not follow costs one lookup.
 * Sockets are adopted lazily, at their first read: no accept() hook, and
 * connections open before obsd started are found the same way.
 *
 * Syscall tracepoints (they need tracefs) are extras: close() of UNIX
 * sockets (TCP closes come from the TCP state machine; attached only once a
 * UNIX connection is followed), epoll_wait timing of Python event loops, and
 * servers' writes to stdout/stderr (log lines). Every drop is counted in the
 * per-CPU "counters" map.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "obs.h"
#include "sysregs.h"

#define AF_UNIX		1
#define AF_INET		2
#define AF_INET6	10
#define SOCK_STREAM	1
#define IPPROTO_TCP	6
#define MSG_PEEK	2
#define EPIPE		32
#define ECONNRESET	104
#define PF_EXITING	0x00000004
#define TCP_ESTABLISHED	1
#define TCP_SYN_RECV	3
#define TCP_FIN_WAIT1	4
#define TCP_CLOSE	7
#define TCP_CLOSE_WAIT	8
#define TCP_LAST_ACK	9
#define CAP_MASK	(2 * OBS_CAP_MAX - 1)
#define TAIL_MASK	(2 * OBS_TAIL_MAX - 1)
#define SNIFF_MAX	8	/* reads of a connection first seen mid-stream before giving up */

char LICENSE[] SEC("license") = "GPL";

/* Configuration, set by the loader between open and load. */
const volatile __u32 cap_bytes = OBS_CAP_DEFAULT;
const volatile __u64 wakeup_bytes = OBS_RINGBUF_DEFAULT / 8;
const volatile __u32 self_tgid = 0;	/* obsd/obsctl itself: never observed */
const volatile bool filter_pids = false;
const volatile __u64 loop_block_ns = OBS_LOOP_BLOCK_DEFAULT;
const volatile bool filter_ports = false;	/* TCP servers only on listed ports */
const volatile bool filter_unix = false;	/* UNIX servers only on listed paths */
const volatile bool track_fds = false;		/* the syscall tracepoints are loaded (tracefs) */
const volatile bool queue_time = false;		/* sk_data_ready is attached */
const volatile __u32 n_comms = 0;
const volatile char comms[OBS_MAX_COMMS][OBS_COMM_LEN] = {};

/* Next connection id; the loader seeds it so ids are not reused across runs. */
__u64 next_conn_id = 1;

/*
 * A UNIX connection is followed: the close() tracepoint is wanted. The loader
 * loads enter_close but attaches it only once this is set (it reads the flag
 * through the mmapped .bss at every drain), so that until then the close()
 * of every process on the node runs nothing of ours. Set once, by a plain
 * store; never cleared.
 */
__u32 want_close_hook = 0;

/*
 * The write() and epoll_wait()/epoll_pwait() tracepoints (log lines, loop
 * health) are wanted: set, to the tgid that asked, when a Python interpreter
 * starts (exec) or a process is found serving HTTP. While any syscall
 * tracepoint is attached, every syscall of every process on the node takes
 * the kernel's tracing path (docs/bench.md, the dd figure), so the loader
 * attaches these only then, as it does enter_close. Set once, never cleared.
 */
__u32 want_sys_hooks = 0;

enum io_kind { IO_NONE = 0, IO_BUF = 1, IO_IOV = 2, IO_MSG = 3, IO_SENDFILE = 4 };

/* What a socket operation's syscall moved, from its registers. */
struct io_args {
	__u64 ptr;	/* buffer, iovec array or msghdr */
	__u32 fd;
	__u32 iovcnt;
	__u8 kind;	/* enum io_kind; IO_NONE: not decodable, bytes are a gap */
	__u8 dir;
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

/* Per-socket state: a followed connection, or OBS_PROTO_IGNORED. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct obs_conn);
} store SEC(".maps");

/* Connections programs without socket storage reach: conn_id -> state. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OBS_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct obs_conn);
} hconns SEC(".maps");

/* (tgid, fd) -> conn_id of hashed UNIX connections, for close(). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OBS_MAX_CONNS);
	__type(key, struct obs_conn_key);
	__type(value, __u64);
} fds SEC(".maps");

/* First data arrival on sockets not read yet (--queue-time): sk -> ns. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} early SEC(".maps");

/*
 * Processes that own (or owned) followed connections: OBS_PF_* as four bits
 * per tgid, 16 tgids to a word (the loader sizes it from pid_max). The
 * syscall tracepoints run for every process on the node; an array lookup is
 * inlined by the verifier, so a process we do not follow is told apart by
 * one load, no hashing.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, OBS_PID_MAX_DEFAULT / OBS_PF_PER_WORD);
	__type(key, __u32);
	__type(value, __u64);
} procs SEC(".maps");

/* The TLS connection each thread last read or wrote ciphertext on: tid -> conn_id. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
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

/* --unix: listening socket path (zero-padded) -> 1. */
struct unix_path {
	char p[OBS_UNIX_PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OBS_MAX_UNIX);
	__type(key, struct unix_path);
	__type(value, __u8);
} unix_paths SEC(".maps");

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

/* A zero-padded UNIX path (room for any masked read length). */
struct path_buf {
	char p[128];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_buf);
} path_scratch SEC(".maps");

static __always_inline bool is_http(const struct obs_conn *c)
{
	return c->proto == OBS_PROTO_HTTP1 || c->proto == OBS_PROTO_TLS_HTTP1 ||
	       c->proto == OBS_PROTO_HTTP2 || c->proto == OBS_PROTO_TLS_HTTP2;
}

static __always_inline bool is_tls(const struct obs_conn *c)
{
	return c->proto == OBS_PROTO_TLS || c->proto == OBS_PROTO_TLS_HTTP1 ||
	       c->proto == OBS_PROTO_TLS_OTHER || c->proto == OBS_PROTO_TLS_HTTP2;
}

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		(*v)++;
}

/* OBS_PF_* of process tgid (0: not followed). */
static __always_inline __u32 proc_flags(__u32 tgid)
{
	__u32 w = tgid / OBS_PF_PER_WORD;
	__u64 *v = bpf_map_lookup_elem(&procs, &w);

	return v ? (*v >> (tgid % OBS_PF_PER_WORD * OBS_PF_BITS)) & OBS_PF_MASK : 0;
}

static __always_inline void proc_set(__u32 tgid, __u32 pf)
{
	__u32 w = tgid / OBS_PF_PER_WORD;
	__u64 *v = bpf_map_lookup_elem(&procs, &w);

	if (v)
		__sync_fetch_and_or(v, (__u64)pf << (tgid % OBS_PF_PER_WORD * OBS_PF_BITS));
	else
		count(OBS_C_LOST_TARGETS_FULL);	/* tgid above the pid_max we sized for */
}

static __always_inline void proc_clear(__u32 tgid)
{
	__u32 w = tgid / OBS_PF_PER_WORD;
	__u64 *v = bpf_map_lookup_elem(&procs, &w);

	if (v)
		__sync_fetch_and_and(v, ~((__u64)OBS_PF_MASK << (tgid % OBS_PF_PER_WORD * OBS_PF_BITS)));
}

/* A UNIX connection is followed (server or client end): ask the loader for
 * the close() tracepoint. Its closes until then (one drain, <= 50 ms) are not
 * seen; userspace finds such connections gone when they are idle. */
static __always_inline void want_close(void)
{
	if (track_fds && !want_close_hook)
		want_close_hook = 1;
}

/* Ask the loader for the write() and epoll tracepoints. True the first time:
 * the caller's record then wakes obsd at once, so that they are attached
 * within a drain rather than up to 50 ms later. */
static __always_inline bool want_syscalls(__u32 tgid)
{
	if (!track_fds || want_sys_hooks || !tgid)
		return false;
	want_sys_hooks = tgid;
	return true;
}

/*
 * Counts a record written and says whether to wake obsd. Reading the ring's
 * fill means reading the consumer position obsd writes from another CPU (a
 * cache miss, ~150 ns here, as much as the rest of the record): it is read
 * every RB_CHECK_EVERY records per CPU only, and obsd drains the ring on a
 * short timer anyway (its LOOP_TIMEOUT_MS).
 */
#define RB_CHECK_EVERY	64
/* Data records leave the ring's last RB_HEADROOM bytes to the small records
 * that open, mark and end connections: a connection whose data overflowed
 * the ring still reports its close, and with it the gap in its sequence, so
 * that its requests are reported failed "lost" rather than never. */
#define RB_HEADROOM	(256u << 10)

/* Set while the ring is over half full (obsd is behind): then the fill is
 * read at every record, and data records check their room. One writer at a
 * time in practice; a stale value costs one late check. */
__u32 rb_high = 0;

static __always_inline __u64 rb_flags(void)
{
	__u32 idx = OBS_C_EVENTS, high;
	__u64 *v = bpf_map_lookup_elem(&counters, &idx), avail;

	if (!v)
		return BPF_RB_NO_WAKEUP;
	if (++*v % RB_CHECK_EVERY && !rb_high)
		return BPF_RB_NO_WAKEUP;
	avail = bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA);
	high = avail >= OBS_RINGBUF_DEFAULT / 2;
	if (high != rb_high)
		rb_high = high;
	return avail >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* May a data record of size bytes of connection c (NULL: a log line) take
 * ring room now? When not, it is counted lost and takes its sequence number,
 * as a record the ring refused. */
static __always_inline bool data_room(struct obs_conn *c, __u64 size)
{
	if (!rb_high ||
	    bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA) + size + RB_HEADROOM <= OBS_RINGBUF_DEFAULT)
		return true;
	count(OBS_C_LOST_RINGBUF);
	if (c)
		c->seq++;
	return false;
}

static __always_inline int rb_out(void *data, __u64 size)
{
	if (bpf_ringbuf_output(&rb, data, size, rb_flags())) {
		__u32 idx = OBS_C_EVENTS;
		__u64 *v = bpf_map_lookup_elem(&counters, &idx);

		if (v)
			(*v)--;	/* counted by rb_flags(), not written */
		count(OBS_C_LOST_RINGBUF);
		return -1;
	}
	return 0;
}

/* Reserve a fixed-size record of connection c in the ring (written in place,
 * no copy). When the ring is full the event still takes its sequence number,
 * so that userspace sees the gap on this connection. */
static __always_inline void *rb_reserve(struct obs_conn *c, __u64 size)
{
	void *p = bpf_ringbuf_reserve(&rb, size, 0);

	if (!p) {
		count(OBS_C_LOST_RINGBUF);
		if (c)
			c->seq++;
	}
	return p;
}

static __always_inline void rb_submit(void *p)
{
	bpf_ringbuf_submit(p, rb_flags());
}

/* Submit and wake obsd now, whatever the ring's fill (counted as any record). */
static __always_inline void rb_submit_wake(void *p)
{
	rb_flags();
	bpf_ringbuf_submit(p, BPF_RB_FORCE_WAKEUP);
}

/* The header of a record of a process, not of a connection (no id, no
 * sequence). */
static __always_inline void proc_hdr(struct obs_ev_hdr *h, __u32 type, __u32 tgid, __u32 tid,
				     __u32 fd)
{
	h->ts_ns = bpf_ktime_get_ns();
	h->conn_id = 0;
	h->seq = 0;
	h->type = type;
	h->pid = tgid;
	h->tid = tid;
	h->fd = fd;
	h->flags = 0;
}

/*
 * A connection's records are numbered without an atomic add: a locked add
 * costs tens of ns on the 2-CPU VM of docs/bench.md (~45 ns less BPF time
 * per request without it), and it would not make two CPUs' records of one
 * connection safe anyway, since their order in the ring
 * is that of their reservations, not of their numbers. Two threads writing
 * on one socket at once may show userspace a gap, which it counts
 * (seq_gaps). The peer's FIN or reset, which the peer's CPU may write during
 * a write of this one (a client that read the response and closed at once),
 * takes no number (peer: OBS_HF_UNNUMBERED).
 */
static __always_inline void fill_hdr(struct obs_ev_hdr *h, struct obs_conn *c, __u32 type,
				     bool peer)
{
	h->ts_ns = bpf_ktime_get_ns();
	h->conn_id = c->conn_id;
	h->seq = peer ? c->seq : ++c->seq;
	h->type = type;
	h->pid = c->tgid;
	h->tid = (__u32)bpf_get_current_pid_tgid();
	h->fd = c->fd;
	h->flags = peer ? OBS_HF_UNNUMBERED : 0;
}

/* Is this process one we watch? Cheap checks first. */
static __always_inline bool is_target(__u32 tgid)
{
	if (tgid == self_tgid || !tgid)
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
	if (kind == IO_SENDFILE || kind == IO_NONE) {
		s->ev.flags |= kind == IO_NONE ? OBS_DF_UNDECODED : OBS_DF_SENDFILE;
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

/* ---- adoption: a socket's first read decides whether it is followed ---- */

/* The path a UNIX server socket listens on (an accepted socket shares its
 * listener's address), zero-padded, "@name" for the abstract namespace, in
 * the per-CPU path scratch. NULL when it has none: the client end, or a
 * socketpair. */
static __always_inline struct unix_path *unix_path_of(struct sock *sk)
{
	struct unix_address *a = BPF_CORE_READ((struct unix_sock *)sk, addr);
	struct path_buf *b;
	__u32 zero = 0;
	int len;

	if (!a)
		return NULL;
	len = BPF_CORE_READ(a, len) - 2;	/* minus sun_family */
	if (len <= 0 || len >= OBS_UNIX_PATH_LEN)
		return NULL;
	b = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!b)
		return NULL;
	__builtin_memset(b, 0, sizeof(*b));
	if (bpf_probe_read_kernel(b->p, len & 0x7f, &a->name[0].sun_path))
		return NULL;
	if (!b->p[0])
		b->p[0] = '@';
	return (struct unix_path *)b;
}

static __always_inline bool unix_wanted(struct sock *sk)
{
	struct unix_path *p = unix_path_of(sk);

	if (!p)
		return false;
	if (filter_ports && !filter_unix)
		return false;
	return !filter_unix || bpf_map_lookup_elem(&unix_paths, p);
}

/* A TCP socket: addresses into c; false when the filters leave it out. */
static __always_inline bool tcp_wanted(struct sock *sk, struct obs_conn *c, long ret)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u64 consumed;

	c->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (filter_unix && !filter_ports)
		return false;
	if (filter_ports && !bpf_map_lookup_elem(&ports, &c->lport))
		return false;
	c->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (c->family == AF_INET) {
		BPF_CORE_READ_INTO(&c->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO(&c->raddr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&c->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&c->raddr, sk, __sk_common.skc_v6_daddr);
	}
	/* The client may have sent its request and FIN before the first read. */
	if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE_WAIT)
		c->early |= 1 << OBS_ST_PEER_FIN;
	/* Bytes read so far, this read included: more than it moved means the
	 * connection was open before we saw it (obsd started meanwhile). */
	consumed = BPF_CORE_READ(tp, bytes_received) -
		   (__u32)(BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq));
	if (consumed != (__u64)ret)
		c->flags |= OBS_CF_ADOPTED;
	return true;
}

/* Is the current process a Python interpreter (its event loop gets timed)? */
static __always_inline bool is_python(void)
{
	struct task_struct *t = bpf_get_current_task_btf();
	const unsigned char *name = BPF_CORE_READ(t, mm, exe_file, f_path.dentry, d_name.name);
	char b[8] = {};

	if (!name || bpf_probe_read_kernel(b, 6, name))
		return false;
	return b[0] == 'p' && b[1] == 'y' && b[2] == 't' && b[3] == 'h' && b[4] == 'o' &&
	       b[5] == 'n';
}

static __always_inline void ignore_sock(struct sock *sk, struct obs_conn *c)
{
	c->proto = OBS_PROTO_IGNORED;
	if (!bpf_sk_storage_get(&store, sk, c, BPF_SK_STORAGE_GET_F_CREATE))
		count(OBS_C_STORE_FULL);
}

/*
 * First read on a socket without state: follow it if it is the server end of
 * a stream socket of a target process. Returns the connection's state (in
 * "store" or, for UNIX sockets, in "hconns"), or NULL.
 */
static __always_inline struct obs_conn *adopt(struct sock *sk, long ret, __u32 fd,
					      bool *in_store)
{
	__u64 id = bpf_get_current_pid_tgid(), skp = (__u64)sk, *arrival;
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct obs_conn c = {};
	struct obs_conn *sc;
	__u8 pf = OBS_PF_CONNS;
	bool wanted;

	if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM)
		return NULL;
	c.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (c.family == AF_INET || c.family == AF_INET6) {
		if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
			return NULL;
	} else if (c.family != AF_UNIX) {
		return NULL;
	}
	wanted = is_target(tgid) &&
		 (c.family == AF_UNIX ? unix_wanted(sk) : tcp_wanted(sk, &c, ret));
	if (!wanted) {
		ignore_sock(sk, &c);
		return NULL;
	}
	c.conn_id = __sync_fetch_and_add(&next_conn_id, 1);
	c.accept_ts_ns = bpf_ktime_get_ns();
	c.sk = skp;
	c.tgid = tgid;
	c.fd = fd;
	if (queue_time) {
		arrival = bpf_map_lookup_elem(&early, &skp);
		if (arrival) {
			c.arrival_ns = *arrival;
			bpf_map_delete_elem(&early, &skp);
		}
	}
	if (is_python()) {
		c.flags |= OBS_CF_PYTHON;
		pf |= OBS_PF_LOOP;
	}
	*in_store = c.family != AF_UNIX;
	if (!*in_store) {	/* close() finds it by (tgid, fd) */
		struct obs_conn_key k = { .tgid = tgid, .fd = fd };

		pf |= OBS_PF_UNIX;
		if (bpf_map_update_elem(&hconns, &c.conn_id, &c, BPF_NOEXIST)) {
			count(OBS_C_LOST_CONNS_FULL);
			ignore_sock(sk, &c);
			return NULL;
		}
		if (track_fds)
			bpf_map_update_elem(&fds, &k, &c.conn_id, BPF_ANY);
		want_close();
		c.flags |= OBS_CF_HASHED;
	}
	sc = bpf_sk_storage_get(&store, sk, &c, BPF_SK_STORAGE_GET_F_CREATE);
	if (!sc) {
		count(OBS_C_STORE_FULL);
		bpf_map_delete_elem(&hconns, &c.conn_id);
		return NULL;
	}
	if ((proc_flags(tgid) & pf) != pf)
		proc_set(tgid, pf);
	if (pf & OBS_PF_LOOP) {
		/* The reading thread runs the event loop (asyncio, uvloop): time
		 * it from now, so a block in the very first request counts too. */
		struct obs_loop z = { .tgid = tgid, .last_exit_ns = c.accept_ts_ns };

		bpf_map_update_elem(&loops, &tid, &z, BPF_NOEXIST);
	}
	count(OBS_C_CONNS_OPENED);
	return *in_store ? sc : bpf_map_lookup_elem(&hconns, &c.conn_id);
}

/* ---- records ---- */

static __always_inline void client_mark_serving(__u32 tgid);
static __always_inline void client_unix_pair(__u8 *laddr, __u8 *raddr, struct sock *sk);

/* OPEN of a server end, or of a call's client end (OBS_CF_CLIENT,
 * bpf/client.bpf.h). */
static __always_inline void emit_open(struct obs_conn *c)
{
	struct obs_ev_open *o = rb_reserve(c, sizeof(*o));
	struct sock *sk = (struct sock *)c->sk;
	bool client = c->flags & OBS_CF_CLIENT;

	if (!o)
		return;
	fill_hdr(&o->h, c, OBS_EV_OPEN, false);
	o->accept_ts_ns = c->accept_ts_ns;
	__builtin_memcpy(o->laddr, c->laddr, 16);
	__builtin_memcpy(o->raddr, c->raddr, 16);
	o->ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	o->peer_pid = 0;
	o->family = c->family;
	o->lport = c->lport;
	o->rport = c->rport;
	if (client)
		o->flags = OBS_OPEN_CLIENT;
	else
		o->flags = (c->proto == OBS_PROTO_TLS_HTTP1 || c->proto == OBS_PROTO_TLS_HTTP2 ?
				    OBS_OPEN_TLS : 0) |
			   (c->proto == OBS_PROTO_HTTP2 || c->proto == OBS_PROTO_TLS_HTTP2 ?
				    OBS_OPEN_H2 : 0);
	o->pad2 = 0;
	bpf_get_current_comm(o->comm, sizeof(o->comm));
	__builtin_memset(o->path, 0, sizeof(o->path));
	if (c->family == AF_UNIX) {
		/* the listening path: this end's, or for a call its peer's */
		struct sock *lsk = client ? BPF_CORE_READ((struct unix_sock *)sk, peer) : sk;
		struct unix_path *up = lsk ? unix_path_of(lsk) : NULL;

		if (up)
			__builtin_memcpy(o->path, up->p, sizeof(o->path));
		o->peer_pid = BPF_CORE_READ(sk, sk_peer_pid, numbers[0].nr);
		client_unix_pair(o->laddr, o->raddr, sk);	/* obsd matches the two ends */
	}
	if (client) {
		rb_submit(o);
		return;
	}
	client_mark_serving(c->tgid);	/* the process serves: its calls are followed from now on */
	/* an HTTP server: its log lines are wanted (a Python one's were asked
	 * for at its exec, before it could serve) */
	if (want_syscalls(c->tgid))
		rb_submit_wake(o);
	else
		rb_submit(o);
}

/* A state or close record; peer: the peer's doing, unnumbered (fill_hdr). */
static __always_inline void emit_simple(struct obs_conn *c, __u32 type, __u32 what, bool peer)
{
	struct obs_ev_state *e = rb_reserve(peer ? NULL : c, sizeof(*e));

	if (!e)
		return;
	fill_hdr(&e->h, c, type, peer);
	e->what = what;
	e->arg = 0;
	rb_submit(e);
}

/* After the server's close only a reset matters (the client never read the
 * last response); seq 0 marks an event past the connection's end. */
static __always_inline void emit_late_reset(struct obs_conn *c)
{
	struct obs_ev_state *e = rb_reserve(NULL, sizeof(*e));

	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->h.ts_ns = bpf_ktime_get_ns();
	e->h.conn_id = c->conn_id;
	e->h.type = OBS_EV_STATE;
	e->h.pid = c->tgid;
	e->h.fd = c->fd;
	e->what = OBS_ST_RESET;
	rb_submit(e);
}

static __always_inline void emit_early_state(struct obs_conn *c)
{
	if (c->early & (1 << OBS_ST_PEER_FIN))
		emit_simple(c, OBS_EV_STATE, OBS_ST_PEER_FIN, false);
	if (c->early & (1 << OBS_ST_RESET))
		emit_simple(c, OBS_EV_STATE, OBS_ST_RESET, false);
}

/* The fields of a data record of connection c other than its bytes and flags. */
static __always_inline void data_fields(struct obs_ev_data *e, struct obs_conn *c, __u64 ret,
					__u32 cap, __u32 tail, __u8 dir)
{
	fill_hdr(&e->h, c, OBS_EV_DATA, false);
	e->arrival_ns = 0;
	if (dir == OBS_DIR_IN) {	/* queue time: arrival -> this read */
		e->arrival_ns = c->arrival_ns;
		c->arrival_ns = 0;
	}
	e->len = ret;
	e->cap = cap;
	e->tail = tail;
	e->dir = dir;
}

/* Emit the captured bytes of s as a data record of connection c. */
static __always_inline void emit_data(struct obs_conn *c, struct data_scratch *s, __u64 ret,
				      __u32 cap, __u32 tail, __u8 dir)
{
	__u64 size = sizeof(s->ev) + (cap & CAP_MASK) + (tail & TAIL_MASK);

	if (!data_room(c, size))
		return;
	data_fields(&s->ev, c, ret, cap, tail, dir);
	rb_out(&s->ev, size);
}

/*
 * The steady state of a followed connection, a plain read/write of one
 * buffer: the record is reserved in the ring and the bytes are copied
 * straight into it (no scratch copy). The reservation is a size class (K
 * captured bytes plus the tail) so the verifier knows every copy's bound.
 * Returns false when the ring had no room, so that the caller takes the
 * scratch path, which counts the loss.
 */
static __always_inline bool emit_buf_class(struct obs_conn *c, __u64 ptr, __u64 ret,
					   __u32 cap, __u32 tail, __u8 dir, const __u32 K)
{
	struct obs_ev_data *e;

	if (cap > K || tail > OBS_TAIL_MAX)
		return false;
	if (!data_room(c, sizeof(*e) + K + OBS_TAIL_MAX))
		return true;	/* counted lost */
	e = bpf_ringbuf_reserve(&rb, sizeof(*e) + K + OBS_TAIL_MAX, 0);
	if (!e)
		return false;
	e->flags = 0;
	if (bpf_probe_read_user(e->data, cap, (void *)ptr)) {
		count(OBS_C_READ_FAULT);
		cap = 0;
	}
	if (tail && bpf_probe_read_user(e->data + cap, tail, (void *)(ptr + ret - tail)))
		tail = 0;
	if (ret > cap)
		count(OBS_C_TRUNCATED);
	data_fields(e, c, ret, cap, tail, dir);
	rb_submit(e);
	return true;
}

static __always_inline bool emit_buf(struct obs_conn *c, __u64 ptr, __u64 ret, __u8 dir)
{
	__u32 cap = ret < cap_bytes ? (__u32)ret : cap_bytes, tail = 0;

	if (cap > OBS_CAP_MAX)
		cap = OBS_CAP_MAX;
	if (ret > cap)
		tail = ret - cap < OBS_TAIL_MAX ? ret - cap : OBS_TAIL_MAX;
	if (cap <= 256)
		return emit_buf_class(c, ptr, ret, cap, tail, dir, 256);
	if (cap <= 1024)
		return emit_buf_class(c, ptr, ret, cap, tail, dir, 1024);
	if (cap <= 2048)
		return emit_buf_class(c, ptr, ret, cap, tail, dir, 2048);
	return emit_buf_class(c, ptr, ret, cap, tail, dir, OBS_CAP_MAX);
}

/* A short gather/scatter transfer (writev, sendmsg, recvmsg: nginx writes
 * its response heads so, uvloop every response) of at most IOV_K bytes in at
 * most IOV_N pieces, copied straight into the ring; anything larger takes the
 * scratch path. The iovec array is read in one copy, and the record is
 * reserved by size class K (K bytes, plus K of slack that bounds the
 * verifier's view of the last piece's copy). */
#define IOV_N	4
#define IOV_K	512

static __always_inline bool emit_iov_class(struct obs_conn *c, const struct iovec *iov,
					   __u32 iovcnt, __u64 ret, __u8 dir, const __u32 K)
{
	struct iovec v[IOV_N];
	struct obs_ev_data *e;
	__u32 off = 0;

	if (!data_room(c, sizeof(*e) + 2 * K))
		return true;	/* counted lost */
	asm volatile("" : "+r"(iovcnt));	/* the caller's check, again, for the verifier */
	if (iovcnt > IOV_N)
		iovcnt = IOV_N;
	if (bpf_probe_read_user(v, iovcnt * sizeof(v[0]), iov))
		return false;	/* the scratch path counts the fault, reports the length */
	e = bpf_ringbuf_reserve(&rb, sizeof(*e) + 2 * K, 0);
	if (!e)
		return false;
	e->flags = 0;
	for (int i = 0; i < IOV_N; i++) {
		__u64 n;

		if (i >= iovcnt || off >= ret || off > K)
			break;
		n = v[i].iov_len < ret - off ? v[i].iov_len : ret - off;
		if (n > K || bpf_probe_read_user(e->data + off, n, v[i].iov_base))
			break;
		off += n;
	}
	if (off < ret)
		e->flags |= OBS_DF_IOV_SHORT;
	data_fields(e, c, ret, off, 0, dir);
	rb_submit(e);
	return true;
}

static __always_inline bool emit_iov(struct obs_conn *c, const struct iovec *iov, __u32 iovcnt,
				     __u64 ret, __u8 dir)
{
	if (ret > IOV_K || ret > cap_bytes || !iovcnt || iovcnt > IOV_N)
		return false;
	if (ret <= 256)
		return emit_iov_class(c, iov, iovcnt, ret, dir, 256);
	return emit_iov_class(c, iov, iovcnt, ret, dir, IOV_K);
}

/* A transfer whose bytes are not captured (sendfile, or a call obs cannot
 * decode): a record of its length only. */
static __always_inline bool emit_gap(struct obs_conn *c, __u64 ret, __u8 dir, __u8 kind)
{
	struct obs_ev_data *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);

	if (!e)
		return false;
	e->flags = kind == IO_NONE ? OBS_DF_UNDECODED : OBS_DF_SENDFILE;
	data_fields(e, c, ret, 0, 0, dir);
	rb_submit(e);
	return true;
}

/* ---- socket I/O ---- */

/* The syscall behind a socket operation, from the task's saved registers. */
static __always_inline void io_from_regs(struct io_args *a, __u8 dir)
{
	struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	long nr = SYSCALL_NR(r);

	a->dir = dir;
	a->fd = SYSCALL_ARG1(r);
	a->ptr = SYSCALL_ARG2(r);
	a->iovcnt = 0;
	a->kind = IO_NONE;
	if (dir == OBS_DIR_IN) {
		if (nr == NR_read || nr == NR_recvfrom)
			a->kind = IO_BUF;
		else if (nr == NR_readv)
			a->kind = IO_IOV;
		else if (nr == NR_recvmsg)
			a->kind = IO_MSG;
	} else {
		if (nr == NR_write || nr == NR_sendto)
			a->kind = IO_BUF;
		else if (nr == NR_writev)
			a->kind = IO_IOV;
		else if (nr == NR_sendmsg)
			a->kind = IO_MSG;
		else if (nr == NR_sendfile)
			a->kind = IO_SENDFILE;
	}
	if (a->kind == IO_IOV)
		a->iovcnt = SYSCALL_ARG3(r);
	if (a->kind == IO_NONE)
		count(OBS_C_UNDECODED);
}

/* A plain TCP connection turned out to be TLS: its state moves to hconns,
 * where the SSL_read/SSL_write uprobes can reach it. */
static __always_inline void to_tls(struct obs_conn *c, bool in_store)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	c->proto = OBS_PROTO_TLS;
	if (in_store) {
		if (bpf_map_update_elem(&hconns, &c->conn_id, c, BPF_NOEXIST)) {
			count(OBS_C_LOST_CONNS_FULL);
			c->proto = OBS_PROTO_TLS_OTHER;
			return;
		}
		c->flags |= OBS_CF_HASHED;
	}
	bpf_map_update_elem(&last_tls, &tid, &c->conn_id, BPF_ANY);
}

/* The iovec array of a gather/scatter transfer (readv/writev: the argument;
 * recvmsg/sendmsg: from the msghdr), left NULL for the others. False on a
 * fault reading the msghdr (counted). */
static __always_inline bool io_vec(const struct io_args *a, const struct iovec **iov,
				   __u32 *iovcnt)
{
	if (a->kind == IO_MSG) {
		struct user_msghdr m;

		if (bpf_probe_read_user(&m, sizeof(m), (void *)a->ptr)) {
			count(OBS_C_READ_FAULT);
			return false;
		}
		*iov = m.msg_iov;
		*iovcnt = m.msg_iovlen;
	} else if (a->kind == IO_IOV) {
		*iov = (const struct iovec *)a->ptr;
	}
	return true;
}

/* ret bytes moved on connection c as a described: sniff, capture, emit. */
static __always_inline int handle_io(struct obs_conn *c, struct io_args *a, long ret,
				     bool in_store)
{
	__u32 zero = 0, cap, tail, iovcnt = a->iovcnt, tid = (__u32)bpf_get_current_pid_tgid();
	const struct iovec *iov = NULL;
	struct data_scratch *s;

	if (is_tls(c)) {
		/* ciphertext: the SSL_read/SSL_write probes report the plaintext;
		 * remember which connection this thread just used */
		bpf_map_update_elem(&last_tls, &tid, &c->conn_id, BPF_ANY);
		return 0;
	}
	if (c->proto != OBS_PROTO_UNKNOWN && c->proto != OBS_PROTO_HTTP1 &&
	    c->proto != OBS_PROTO_HTTP2)
		return 0;
	/* the client's first bytes decide: an HTTP/2 server (gRPC) sends its
	 * SETTINGS before reading anything */
	if (c->proto == OBS_PROTO_UNKNOWN && a->dir == OBS_DIR_OUT)
		return 0;
	if (!io_vec(a, &iov, &iovcnt))
		return 0;
	/* the steady state: the record is written in place in the ring */
	if (c->proto != OBS_PROTO_UNKNOWN) {
		if (a->kind == IO_BUF) {
			if (emit_buf(c, a->ptr, ret, a->dir))
				return 0;
		} else if (a->kind == IO_IOV || a->kind == IO_MSG) {
			if (emit_iov(c, iov, iovcnt, ret, a->dir))
				return 0;
		} else if (emit_gap(c, ret, a->dir, a->kind)) {
			return 0;
		}
	}
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	capture(s, a->kind, a->ptr, iov, iovcnt, ret, cap_bytes, &cap, &tail);
	if (c->proto == OBS_PROTO_UNKNOWN) {
		if (!cap)
			return 0;	/* nothing to judge by */
		if (looks_tls(s->ev.data, cap)) {
			to_tls(c, in_store);
			return 0;
		}
		if (looks_h2(s->ev.data, cap)) {
			c->proto = OBS_PROTO_HTTP2;
		} else if (looks_http1(s->ev.data, cap)) {
			c->proto = OBS_PROTO_HTTP1;
		} else if ((c->flags & OBS_CF_ADOPTED) && ++c->sniffs < SNIFF_MAX) {
			/* open before we started: wait for a request's first byte */
			count(OBS_C_ADOPT_SKIPPED);
			return 0;
		} else {
			c->proto = OBS_PROTO_OTHER;
			count(OBS_C_CONNS_NOT_HTTP);
			return 0;
		}
		emit_open(c);
		emit_early_state(c);
	}
	emit_data(c, s, ret, cap, tail, a->dir);
	return 0;
}

/* The state of a socket with storage: the stub's hconns entry if hashed. */
static __always_inline struct obs_conn *state_of(struct obs_conn *st)
{
	if (!(st->flags & OBS_CF_HASHED))
		return st;
	return bpf_map_lookup_elem(&hconns, &st->conn_id);
}

#include "client.bpf.h"

static __always_inline int sock_io(struct sock *sk, long ret, __u8 dir)
{
	struct obs_conn *c = bpf_sk_storage_get(&store, sk, 0, 0);
	bool in_store = true;
	struct io_args a;

	if (!c) {
		if (dir != OBS_DIR_IN)	/* adopted at its first read, or a call */
			return client_first_write(sk, ret);
		io_from_regs(&a, dir);
		c = adopt(sk, ret, a.fd, &in_store);
		if (!c)
			return 0;
	} else {
		if (c->proto == OBS_PROTO_IGNORED || (c->flags & OBS_CF_CLOSED))
			return 0;
		in_store = !(c->flags & OBS_CF_HASHED);
		c = state_of(c);
		if (!c)
			return 0;
		io_from_regs(&a, dir);
		if (c->flags & OBS_CF_CLIENT)
			return client_io(c, &a, ret);
	}
	return handle_io(c, &a, ret, in_store);
}

/* A UNIX peer ended its stream (read 0) or vanished (EPIPE, ECONNRESET):
 * TCP reports these through its state machine, UNIX sockets only here. */
static __always_inline int sock_end(struct sock *sk, long ret)
{
	struct obs_conn *st = bpf_sk_storage_get(&store, sk, 0, 0), *c;

	if (!st || st->proto == OBS_PROTO_IGNORED || st->family != AF_UNIX ||
	    (st->flags & OBS_CF_CLOSED))
		return 0;
	c = state_of(st);
	if (!c || (c->flags & OBS_CF_EOF))
		return 0;
	c->flags |= OBS_CF_EOF;
	if (is_http(c))
		emit_simple(c, OBS_EV_STATE, ret ? OBS_ST_RESET : OBS_ST_PEER_FIN, false);
	else if (c->proto == OBS_PROTO_UNKNOWN)
		c->early |= 1 << (ret ? OBS_ST_RESET : OBS_ST_PEER_FIN);
	return 0;
}

/* Once per socket read (any socket, any syscall), after it completed. */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv, struct sock *sk, int ret, int flags)
{
	if (ret > 0)
		return flags & MSG_PEEK ? 0 : sock_io(sk, ret, OBS_DIR_IN);
	if (ret == 0 || ret == -ECONNRESET)
		return sock_end(sk, ret);
	return 0;
}

/* Once per socket write (write, send*, sendfile's pieces). */
SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send, struct sock *sk, int ret, int flags)
{
	if (ret > 0)
		return sock_io(sk, ret, OBS_DIR_OUT);
	if (ret == -EPIPE || ret == -ECONNRESET)
		return sock_end(sk, ret);
	return 0;
}

/* ---- connection state: TCP state machine, close ---- */

/* A state change seen on a followed socket (may run in softirq). */
static __always_inline void sock_event(struct sock *sk, __u32 what)
{
	struct obs_conn *st = bpf_sk_storage_get(&store, sk, 0, 0), *c;

	if (!st || st->proto == OBS_PROTO_IGNORED)
		return;
	if (st->flags & OBS_CF_CLOSED) {
		if (what == OBS_ST_RESET && st->proto != OBS_PROTO_OTHER)
			emit_late_reset(st);
		return;
	}
	c = state_of(st);
	if (!c)
		return;
	if (is_http(c))
		emit_simple(c, OBS_EV_STATE, what, true);
	else if (c->proto == OBS_PROTO_UNKNOWN || c->proto == OBS_PROTO_TLS)
		c->early |= 1 << what;	/* e.g. request + FIN before the first read */
}

/* The server closed the socket (or its process is exiting): report once. */
static __always_inline void sock_close(struct sock *sk)
{
	struct obs_conn *st = bpf_sk_storage_get(&store, sk, 0, 0), *c;
	struct task_struct *t = bpf_get_current_task_btf();
	bool exiting;

	if (!st || st->proto == OBS_PROTO_IGNORED || (st->flags & OBS_CF_CLOSED))
		return;
	st->flags |= OBS_CF_CLOSED;
	c = state_of(st);
	if (!c)
		return;
	/* the exit event closes an exiting process's connections */
	exiting = (BPF_CORE_READ(t, flags) & PF_EXITING) && BPF_CORE_READ(t, tgid) == c->tgid;
	if (is_http(c) && !exiting)
		emit_simple(c, OBS_EV_CLOSE, 0, false);
	if (c != st) {
		st->proto = c->proto;	/* a late reset is reported if it was HTTP */
		bpf_map_delete_elem(&hconns, &st->conn_id);
	}
}

/* Is the process closing this socket? inet_release() detaches the socket
 * before the protocol's close; shutdown() leaves it attached. */
static __always_inline bool closing(struct sock *sk)
{
	struct socket *so = BPF_CORE_READ(sk, sk_socket);

	return !so || BPF_CORE_READ(so, sk) != sk;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(sock_state, struct sock *sk, int oldstate, int newstate)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_CLOSE_WAIT) {
		sock_event(sk, OBS_ST_PEER_FIN);
	} else if (newstate == TCP_ESTABLISHED) {
		__u64 skp = (__u64)sk;	/* a new socket: no stale arrival */

		if (queue_time)
			bpf_map_delete_elem(&early, &skp);
	} else if (newstate == TCP_SYN_SENT) {
		client_connect(sk);
	} else if (newstate != TCP_SYN_RECV && closing(sk)) {
		sock_close(sk);
	}
	return 0;
}

/* The socket is gone (a close after a reset changes no state). */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(tcp_destroy, struct sock *sk)
{
	sock_close(sk);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcp_rst, struct sock *sk)
{
	sock_event(sk, OBS_ST_RESET);
	return 0;
}

/* close() of a followed UNIX socket (needs tracefs; TCP closes come from the
 * state machine above). Attached lazily, at the first followed UNIX
 * connection on the node (want_close_hook). */
SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), cid, *idp;
	struct obs_conn_key k = { .tgid = id >> 32, .fd = ctx->args[0] };
	struct obs_conn *c;

	if (!(proc_flags(k.tgid) & OBS_PF_UNIX))
		return 0;	/* no followed UNIX connection in this process */
	idp = bpf_map_lookup_elem(&fds, &k);
	if (!idp)
		return 0;
	cid = *idp;
	bpf_map_delete_elem(&fds, &k);
	c = bpf_map_lookup_elem(&hconns, &cid);
	if (!c)
		return 0;
	if (is_http(c) && !(c->flags & OBS_CF_CLOSED))
		emit_simple(c, OBS_EV_CLOSE, 0, false);
	bpf_map_delete_elem(&hconns, &cid);
	return 0;
}

/* Request bytes reached a socket (--queue-time): remember the first arrival
 * before a read. */
SEC("tp_btf/sk_data_ready")
int BPF_PROG(data_ready, struct sock *sk)
{
	struct obs_conn *st = bpf_sk_storage_get(&store, sk, 0, 0), *c;
	__u64 skp = (__u64)sk, now;

	if (!st) {
		if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
		    BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_ESTABLISHED)
			return 0;
		now = bpf_ktime_get_ns();
		bpf_map_update_elem(&early, &skp, &now, BPF_NOEXIST);
		return 0;
	}
	if (st->proto == OBS_PROTO_IGNORED || (st->flags & OBS_CF_CLOSED))
		return 0;
	c = state_of(st);
	if (c && !c->arrival_ns && c->proto != OBS_PROTO_OTHER)
		c->arrival_ns = bpf_ktime_get_ns();
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
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ssl_args);
} ssl_calls SEC(".maps");

/* SSL * -> conn_id, learnt from the thread's last ciphertext operation. SSL
 * objects are reused, so the connection must still exist. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, OBS_MAX_CONNS);
	__type(key, __u64);
	__type(value, __u64);
} ssl_conns SEC(".maps");

static __always_inline int ssl_enter(__u64 ssl, __u64 buf, __u64 bytes_ptr, __u8 dir, __u8 ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct ssl_args a = { .ssl = ssl, .buf = buf, .bytes_ptr = bytes_ptr, .dir = dir, .ex = ex };

	if (!proc_flags(tgid))
		return 0;	/* not a process serving followed connections */
	if (bpf_map_update_elem(&ssl_calls, &id, &a, BPF_ANY))
		count(OBS_C_LOST_ARGS_FULL);
	return 0;
}

/* The connection an SSL object's plaintext belongs to, or NULL. */
static __always_inline struct obs_conn *ssl_conn(__u64 ssl, __u32 tid)
{
	__u64 *idp = bpf_map_lookup_elem(&ssl_conns, &ssl), cid;
	struct obs_conn *c = idp ? bpf_map_lookup_elem(&hconns, idp) : NULL;

	if (c && c->ssl == ssl)
		return c;
	/* new (or reused) SSL object: the connection this thread just used */
	idp = bpf_map_lookup_elem(&last_tls, &tid);
	if (!idp)
		return NULL;
	cid = *idp;
	c = bpf_map_lookup_elem(&hconns, &cid);
	if (!c)
		return NULL;
	if (c->ssl && c->ssl != ssl) {
		/* that connection has its SSL object: this one's connection is
		 * unknown (concurrent handshakes on one thread) — drop, never
		 * mix two connections' bytes */
		count(OBS_C_TLS_UNMAPPED);
		return NULL;
	}
	c->ssl = ssl;
	bpf_map_update_elem(&ssl_conns, &ssl, &cid, BPF_ANY);
	return c;
}

static __always_inline int ssl_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid(), len;
	struct ssl_args *ap = bpf_map_lookup_elem(&ssl_calls, &id);
	struct data_scratch *s;
	struct obs_conn *c;
	struct ssl_args a;
	__u32 zero = 0, cap, tail;

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
	c = ssl_conn(a.ssl, (__u32)id);
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!c || !s || !is_tls(c) || (c->flags & OBS_CF_CLOSED))
		return 0;
	capture(s, IO_BUF, a.buf, NULL, 0, len, cap_bytes, &cap, &tail);
	if (c->proto == OBS_PROTO_TLS) {
		/* An HTTP/2 server sends its SETTINGS as soon as the handshake is
		 * done: the client's first plaintext decides. */
		if (a.dir == OBS_DIR_OUT)
			return 0;
		if (looks_h2(s->ev.data, cap)) {
			c->proto = OBS_PROTO_TLS_HTTP2;
		} else if (!looks_http1(s->ev.data, cap)) {
			c->proto = OBS_PROTO_TLS_OTHER;
			count(OBS_C_CONNS_NOT_HTTP);
			return 0;
		} else {
			c->proto = OBS_PROTO_TLS_HTTP1;
		}
		emit_open(c);
		emit_early_state(c);
	} else if (c->proto != OBS_PROTO_TLS_HTTP1 && c->proto != OBS_PROTO_TLS_HTTP2) {
		return 0;
	}
	emit_data(c, s, len, cap, tail, a.dir);
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

/* ---- log lines: writes to stdout/stderr ---- */

/*
 * What a server process writes to fd 1 or 2 (logging, tracebacks) may go to a
 * pipe or a file, which no socket tracepoint sees: the write() syscall
 * tracepoint does (it needs tracefs). Other processes pay one compare when
 * they write to another fd, and one lookup when they write to stdout/stderr.
 */
SEC("tracepoint/syscalls/sys_enter_write")
int enter_write(struct trace_event_raw_sys_enter *ctx)
{
	__u64 fd = ctx->args[0], buf = ctx->args[1], n = ctx->args[2];
	__u32 tgid, zero = 0, cap, tail;
	struct data_scratch *s;
	__u64 id;

	if (fd - 1 > 1)
		return 0;	/* not stdout/stderr: the common case, first */
	id = bpf_get_current_pid_tgid();
	tgid = id >> 32;
	if (!n || !proc_flags(tgid))
		return 0;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	/* a traceback is one write of several KB: logs get the whole capture */
	capture(s, IO_BUF, buf, NULL, 0, n, OBS_CAP_MAX, &cap, &tail);
	proc_hdr(&s->ev.h, OBS_EV_LOG, tgid, (__u32)id, fd);
	s->ev.arrival_ns = 0;
	s->ev.len = n;
	s->ev.cap = cap;
	s->ev.tail = tail;
	s->ev.dir = fd;
	count(OBS_C_LOG_WRITES);
	if (data_room(NULL, sizeof(s->ev) + (cap & CAP_MASK) + (tail & TAIL_MASK)))
		rb_out(&s->ev, sizeof(s->ev) + (cap & CAP_MASK) + (tail & TAIL_MASK));
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

/* Nanoseconds this thread has waited on a run queue, ever (sched_info): a
 * direct load through the task's BTF pointer. */
static __always_inline __u64 run_delay(void)
{
	struct task_struct *t = bpf_get_current_task_btf();

	if (!bpf_core_field_exists(t->sched_info))
		return 0;
	return t->sched_info.run_delay;
}

/* Entering a wait ends the busy period that began at the previous return. */
static __always_inline int loop_enter(void)
{
	__u64 id = bpf_get_current_pid_tgid(), now, busy, wait;
	__u32 tgid = id >> 32, tid = (__u32)id, b;
	struct obs_loop *l;

	if (!(proc_flags(tgid) & OBS_PF_LOOP))
		return 0;	/* only Python event loops are timed */
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
		l->buckets[b]++;	/* only this thread writes its entry */
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
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct obs_loop *l;

	if (!(proc_flags(id >> 32) & OBS_PF_LOOP))
		return 0;
	l = bpf_map_lookup_elem(&loops, &tid);
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

/* ---- processes ---- */

/* A Python interpreter starts: ask for the write() and epoll tracepoints now,
 * long before it can serve (imports take hundreds of ms), and wake obsd with
 * a record it ignores. Attached only with tracefs, detached once they are. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct obs_ev_hdr *h;

	if (!is_python() || !want_syscalls(p->tgid))
		return 0;
	h = rb_reserve(NULL, sizeof(*h));
	if (!h)
		return 0;
	proc_hdr(h, OBS_EV_WAKE, p->tgid, p->pid, 0);
	rb_submit_wake(h);
	return 0;
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

static long drop_hconn(struct bpf_map *map, __u64 *id, struct obs_conn *c, __u32 *tgid)
{
	if (c->tgid == *tgid)
		bpf_map_delete_elem(map, id);
	return 0;
}

static long drop_fd(struct bpf_map *map, struct obs_conn_key *k, __u64 *id, __u32 *tgid)
{
	if (k->tgid == *tgid)
		bpf_map_delete_elem(map, k);
	return 0;
}

/* A process with followed connections exited: its sockets close without a
 * report of their own (sock_close sees it exiting). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(proc_exit, struct task_struct *p)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct task_struct *t = bpf_get_current_task_btf();
	struct obs_ev_exit *e;

	bpf_map_delete_elem(&loops, &tid);
	if (tid != tgid)
		return 0;
	bpf_map_delete_elem(&targets, &tgid);
	if (!proc_flags(tgid))
		return 0;
	proc_clear(tgid);
	bpf_for_each_map_elem(&hconns, drop_hconn, &tgid, 0);
	if (track_fds)
		bpf_for_each_map_elem(&fds, drop_fd, &tgid, 0);
	e = rb_reserve(NULL, sizeof(*e));
	if (!e)
		return 0;
	proc_hdr(&e->h, OBS_EV_EXIT, tgid, tgid, 0);
	e->exit_code = BPF_CORE_READ(t, exit_code);
	e->pad = 0;
	rb_submit(e);
	return 0;
}
