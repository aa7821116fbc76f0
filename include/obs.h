/* SPDX-License-Identifier: MIT */
/*
 * Records the kernel side (bpf/obs.bpf.c) writes into the ring buffer, and the
 * maps both sides share. Flat structs, fixed-width fields, widest first, no
 * pointers. Every record starts with struct obs_ev_hdr.
 */
#ifndef OBS_H
#define OBS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define OBS_CAP_MAX		8192	/* max bytes captured from the start of a syscall */
#define OBS_CAP_DEFAULT		2048
#define OBS_TAIL_MAX		64	/* bytes captured from the end of a long syscall */
#define OBS_MAX_IOV		1024	/* iovecs walked per readv/writev/msghdr (UIO_MAXIOV) */
#define OBS_MAX_CONNS		65536	/* connection table entries */
#define OBS_MAX_TARGETS		1024	/* --pid entries (incl. followed children) */
#define OBS_MAX_PORTS		64	/* --port entries */
#define OBS_COMM_LEN		16
#define OBS_MAX_COMMS		8	/* --comm entries */
#define OBS_RINGBUF_DEFAULT	(8u << 20)	/* mapped twice into obsd: 16 MB of its RSS */
#define OBS_UNIX_PATH_LEN	108	/* sun_path */
#define OBS_MAX_UNIX		64	/* --unix entries */

enum obs_ev_type {
	OBS_EV_OPEN = 1,	/* a tracked connection proved to speak HTTP (1.x or 2) */
	OBS_EV_DATA = 2,	/* one socket read/write's bytes */
	OBS_EV_CLOSE = 3,	/* the server closed a tracked connection */
	OBS_EV_STATE = 4,	/* TCP state change or reset on a tracked connection */
	OBS_EV_EXIT = 5,	/* a process that owned tracked connections exited */
	OBS_EV_LOG = 6,		/* a write to fd 1 or 2 of such a process (obs_ev_data,
				   conn_id 0, dir = the fd) */
	OBS_EV_LOOP = 7,	/* an event-loop iteration ran longer than the threshold */
	OBS_EV_WAKE = 8,	/* a Python interpreter started: a header only, waking
				   obsd to attach the syscall tracepoints */
};

enum obs_dir {
	OBS_DIR_IN = 0,		/* the server read (request bytes); client end: the response */
	OBS_DIR_OUT = 1,	/* the server wrote (response bytes); client end: the request */
};

/* obs_ev_data.flags */
enum {
	OBS_DF_SENDFILE = 1 << 0,	/* bytes from sendfile(): never captured */
	OBS_DF_IOV_SHORT = 1 << 1,	/* more iovecs than OBS_MAX_IOV: capture stopped early */
	OBS_DF_UNDECODED = 1 << 2,	/* a call obs cannot decode (io_uring, splice, ...): not captured */
	OBS_DF_CLIENT = 1 << 3,		/* the connection is an outgoing call (OBS_OPEN_CLIENT) */
};

/* obs_ev_state.what */
enum {
	OBS_ST_PEER_FIN = 1,	/* ESTABLISHED -> CLOSE_WAIT: the client half-closed */
	OBS_ST_RESET = 2,	/* the client sent a RST (tcp_receive_reset) */
	OBS_ST_CLOSED = 3,	/* socket reached TCP_CLOSE while still open in the process */
	OBS_ST_SHUTDOWN = 4,	/* the server called shutdown() (arg = how) */
};

struct obs_ev_hdr {
	__u64 ts_ns;		/* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 conn_id;		/* never reused while obsd runs, 0 for EXIT */
	__u32 seq;		/* per-connection event number, 1-based; a gap = loss */
	__u32 type;		/* enum obs_ev_type */
	__u32 pid;		/* tgid */
	__u32 tid;
	__u32 fd;
	__u32 flags;		/* OBS_HF_* */
};

/* The record is the network's doing (the peer's FIN or reset), written where
 * the packet was processed, maybe on another CPU while the process writes on
 * the socket: it takes no number of its own and carries the connection's last
 * one. Userspace checks no gap on it; a lost one is counted in lost_ringbuf. */
#define OBS_HF_UNNUMBERED	1u

struct obs_ev_open {
	struct obs_ev_hdr h;
	__u64 accept_ts_ns;	/* when accept() returned */
	__u8 laddr[16];		/* this end's address (IPv4 in the first 4 bytes); AF_UNIX:
				   this end's struct sock address (__u64, first 8 bytes) */
	__u8 raddr[16];		/* the other end's; AF_UNIX: the peer's struct sock address.
				   Both ends of one connection see the same pair swapped:
				   obsd matches a call to the request it made (docs/context.md) */
	__u64 ino;		/* the socket's inode (/proc/PID/fd/FD -> socket:[ino]) */
	__u32 peer_pid;		/* AF_UNIX: the process at the other end (SO_PEERCRED), 0 if unknown */
	__u16 family;		/* AF_INET / AF_INET6 / AF_UNIX */
	__u16 lport;		/* host byte order; 0 for AF_UNIX (client end: its own port) */
	__u16 rport;
	__u16 flags;		/* OBS_OPEN_* */
	char comm[OBS_COMM_LEN];
	char path[OBS_UNIX_PATH_LEN];	/* AF_UNIX: the socket path the server listens on
					   ("@name" for the abstract namespace), else "";
					   client end: the path it connected to */
	__u32 pad2;
};

/* obs_ev_open.flags */
enum {
	OBS_OPEN_TLS = 1 << 0,	/* the bytes are TLS plaintext (https) */
	OBS_OPEN_H2 = 1 << 1,	/* HTTP/2 from the first byte (prior knowledge or ALPN h2) */
	OBS_OPEN_CLIENT = 1 << 2,/* the client end of a connection a serving process opened (an
				   outgoing call): requests are written (OBS_DIR_OUT), responses
				   read; peer_pid and path name the server */
};

struct obs_ev_data {
	struct obs_ev_hdr h;
	__u64 len;		/* bytes the syscall really moved (its return value) */
	__u64 arrival_ns;	/* reads: when the first unread bytes reached the socket
				   (sock:sk_data_ready), 0 when unknown */
	__u32 cap;		/* bytes captured from the start: data[0 .. cap) */
	__u16 tail;		/* bytes captured from the end: data[cap .. cap + tail) */
	__u8 dir;		/* enum obs_dir */
	__u8 flags;		/* OBS_DF_* */
	__u8 data[];		/* cap + tail bytes; len - cap - tail were not captured */
};

struct obs_ev_close {
	struct obs_ev_hdr h;
};

struct obs_ev_state {
	struct obs_ev_hdr h;
	__u32 what;		/* OBS_ST_* */
	__u32 arg;
};

struct obs_ev_exit {
	struct obs_ev_hdr h;
	__s32 exit_code;
	__u32 pad;
};

/* A long event-loop iteration: the thread returned from epoll_wait at
 * start_ns and did not wait again for busy_ns. */
struct obs_ev_loop {
	struct obs_ev_hdr h;
	__u64 start_ns;
	__u64 busy_ns;
	__u64 cpu_wait_ns;	/* of busy_ns, time spent runnable but waiting for a CPU */
};

#define OBS_LOOP_BUCKETS	26	/* log2 buckets of busy time: [2^i, 2^(i+1)) us */
#define OBS_MAX_LOOPS		4096	/* threads followed */
#define OBS_LOOP_BLOCK_DEFAULT	(50ull * 1000000ull)

/* Per-thread event-loop statistics (map "loops", key tid). */
struct obs_loop {
	__u64 last_exit_ns;	/* 0: inside epoll_wait or not seen yet */
	__u64 count;		/* busy periods measured */
	__u64 sum_ns;
	__u64 blocked;		/* periods held >= the blocked threshold (CPU waits excluded) */
	__u64 exit_run_delay;	/* sched_info.run_delay at the last return */
	__u64 buckets[OBS_LOOP_BUCKETS];
	__u32 tgid;
	__u32 pad;
};

/* (tgid, fd) of a connection: map "fds", for the close() tracepoint. */
struct obs_conn_key {
	__u32 tgid;
	__u32 fd;
};

enum obs_proto {
	OBS_PROTO_UNKNOWN = 0,	/* no bytes seen yet */
	OBS_PROTO_HTTP1 = 1,	/* first bytes read looked like an HTTP/1 request */
	OBS_PROTO_OTHER = 2,	/* not HTTP: no data events */
	OBS_PROTO_TLS = 3,	/* TLS: ciphertext ignored, plaintext not seen yet */
	OBS_PROTO_TLS_HTTP1 = 4,/* TLS carrying HTTP/1: data from SSL_read/SSL_write */
	OBS_PROTO_TLS_OTHER = 5,/* TLS carrying something else */
	OBS_PROTO_HTTP2 = 6,	/* first bytes read were the HTTP/2 client preface (h2c) */
	OBS_PROTO_TLS_HTTP2 = 7,/* TLS carrying HTTP/2 (ALPN h2) */
	OBS_PROTO_IGNORED = 8,	/* a socket obs does not follow (filters, client side, ...) */
};

/*
 * A followed connection. Kept in the socket's own storage (map "store", it
 * lives and dies with the socket) or, for connections that programs without
 * socket storage must reach (TLS uprobes, the close() tracepoint for UNIX
 * sockets), in map "hconns" keyed by conn_id, with a stub in "store".
 */
struct obs_conn {
	__u64 conn_id;
	__u64 accept_ts_ns;	/* first seen */
	__u64 arrival_ns;	/* first bytes not read yet arrived (sk_data_ready), 0: none */
	__u64 sk;		/* struct sock * */
	__u64 ssl;		/* TLS: the SSL * whose plaintext is this connection's */
	__u8 laddr[16];
	__u8 raddr[16];
	__u32 seq;		/* last event number handed out */
	__u32 tgid;		/* the process that first read from it */
	__u32 fd;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u8 proto;		/* enum obs_proto */
	__u8 early;		/* OBS_ST_* bits seen before the first bytes (reported after OPEN) */
	__u8 flags;		/* OBS_CF_* */
	__u8 sniffs;		/* reads that did not start a request yet (mid-stream adoption) */
	__u16 pad;
};

/* obs_conn.flags */
enum {
	OBS_CF_HASHED = 1 << 0,	/* "store" holds a stub: the state is hconns[conn_id] */
	OBS_CF_ADOPTED = 1 << 1,/* first seen mid-stream (open before obsd started) */
	OBS_CF_CLOSED = 1 << 2,	/* the server closed it: only a late reset is reported */
	OBS_CF_EOF = 1 << 3,	/* the peer's end of stream was reported (UNIX) */
	OBS_CF_PYTHON = 1 << 4,	/* owned by a Python process (event-loop timing) */
	OBS_CF_CLIENT = 1 << 5,	/* the client end of an outgoing call (bpf/client.bpf.h) */
};

/* Map "procs": OBS_PF_* of processes that own followed connections, four bits
 * per tgid (16 to a __u64 word, tgid / 16 the key); sized from pid_max. */
#define OBS_PID_MAX_DEFAULT	4194304
#define OBS_PF_BITS		4
#define OBS_PF_PER_WORD		16
#define OBS_PF_MASK		0xf
enum {
	OBS_PF_CONNS = 1 << 0,
	OBS_PF_LOOP = 1 << 1,	/* a Python event loop: epoll_wait is timed */
	OBS_PF_UNIX = 1 << 2,	/* has followed UNIX connections: close() is looked at */
	OBS_PF_SERVES = 1 << 3,	/* serves HTTP on a followed connection: its outgoing calls
				   are followed too */
};

/* Per-CPU counters (map "counters"), summed by userspace. */
enum obs_counter {
	OBS_C_EVENTS,		/* records written to the ring buffer */
	OBS_C_LOST_RINGBUF,	/* records dropped: ring buffer full */
	OBS_C_LOST_CONNS_FULL,	/* accepted connections not tracked: table full */
	OBS_C_LOST_ARGS_FULL,	/* TLS calls not captured: in-flight SSL call table full */
	OBS_C_LOST_TARGETS_FULL,/* forked children not followed: target table full */
	OBS_C_TRUNCATED,	/* data records with bytes beyond the capture */
	OBS_C_CONNS_OPENED,	/* connections that entered the table */
	OBS_C_CONNS_NOT_HTTP,	/* adopted connections whose first bytes were not HTTP (1.x,
				   the h2 preface or a TLS ClientHello) */
	OBS_C_READ_FAULT,	/* user memory that could not be read */
	OBS_C_LOG_WRITES,	/* stdout/stderr writes of observed processes captured */
	OBS_C_ADOPT_SKIPPED,	/* reads on connections first seen mid-stream, before a request start */
	OBS_C_TLS_UNMAPPED,	/* TLS plaintext whose connection could not be told */
	OBS_C_UNDECODED,	/* I/O on a tracked socket through a call obs cannot decode
				   (io_uring, recvmmsg/sendmmsg, splice): its bytes are a gap */
	OBS_C_STORE_FULL,	/* sockets not followed: per-socket state could not be created */
	OBS_C_CLIENT_CONNS,	/* outgoing connections of serving processes that spoke HTTP/1 */
	OBS_C_MAX
};

#endif /* OBS_H */
