/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Outgoing calls: the client end of connections that a process serving HTTP
 * opens itself (httpx, aiohttp, requests in a handler; nginx's upstreams).
 * Included by obs.bpf.c after the record helpers; only the hooks below are
 * called from there.
 *
 * Which sockets: only processes marked OBS_PF_SERVES (one of their followed
 * server connections proved to speak HTTP) are followed, so a load generator
 * or curl never is, whatever the filters; their sockets cost what they cost
 * before (one storage lookup per operation once ignored).
 *   TCP:  marked at connect(), when the socket enters SYN_SENT (process
 *         context, the connecting task is current): the socket gets its state
 *         then, flagged OBS_CF_CLIENT. An accepted socket never passes
 *         SYN_SENT, so a server that writes first is never mistaken for one.
 *   UNIX: at the first write on a socket without state: a stream socket
 *         without an address of its own whose peer has one (the listener's
 *         child) is the client end. A server's accepted socket has the
 *         listener's address, a socketpair neither.
 * The first bytes written decide: an HTTP/1 request line follows the
 * connection (OPEN with OBS_OPEN_CLIENT, then data flagged OBS_DF_CLIENT:
 * requests written, responses read); anything else (TLS, a database
 * protocol, HTTP/2) is OTHER and never reported.
 */
#ifndef OBS_CLIENT_BPF_H
#define OBS_CLIENT_BPF_H

/* A server connection proved to speak HTTP: the process serves; its calls
 * are followed from now on. */
static __always_inline void client_mark_serving(__u32 tgid)
{
	if (!(proc_flags(tgid) & OBS_PF_SERVES))
		proc_set(tgid, OBS_PF_SERVES);
}

/* One inlined load: the process bits (obs.bpf.c, map "procs"). */
static __always_inline bool client_serving(__u32 tgid)
{
	return proc_flags(tgid) & OBS_PF_SERVES;
}

/* Both ends of a UNIX connection into laddr/raddr: this end's struct sock
 * and its peer's, so that obsd can match the two ends. */
static __always_inline void client_unix_pair(__u8 *laddr, __u8 *raddr, struct sock *sk)
{
	__u64 me = (__u64)sk, peer = (__u64)BPF_CORE_READ((struct unix_sock *)sk, peer);

	__builtin_memset(laddr, 0, 16);
	__builtin_memset(raddr, 0, 16);
	__builtin_memcpy(laddr, &me, 8);
	__builtin_memcpy(raddr, &peer, 8);
}

/* Hook of sock_state: a TCP socket of a serving process is connecting. Its
 * addresses are read at the first write (the port is bound after SYN_SENT). */
static __always_inline void client_connect(struct sock *sk)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct obs_conn c = {};

	if (!client_serving(tgid) || tgid == self_tgid)
		return;
	if (bpf_sk_storage_get(&store, sk, 0, 0))
		return;	/* a socket connecting again: keep what it has */
	c.conn_id = __sync_fetch_and_add(&next_conn_id, 1);
	c.accept_ts_ns = bpf_ktime_get_ns();
	c.sk = (__u64)sk;
	c.tgid = tgid;
	c.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	c.flags = OBS_CF_CLIENT;
	if (!bpf_sk_storage_get(&store, sk, &c, BPF_SK_STORAGE_GET_F_CREATE))
		count(OBS_C_STORE_FULL);
}

static __always_inline void client_tcp_addrs(struct obs_conn *c, struct sock *sk)
{
	c->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (c->family == AF_INET) {
		BPF_CORE_READ_INTO(&c->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO(&c->raddr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&c->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&c->raddr, sk, __sk_common.skc_v6_daddr);
	}
}

/* Bytes moved on an outgoing connection: the first write decides, then
 * every read and write is reported like a server's, flagged. */
static __always_inline int client_io(struct obs_conn *c, struct io_args *a, long ret)
{
	__u32 zero = 0, cap, tail, iovcnt = a->iovcnt;
	const struct iovec *iov = NULL;
	struct data_scratch *s;

	if (c->proto != OBS_PROTO_UNKNOWN && c->proto != OBS_PROTO_HTTP1)
		return 0;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	if (!io_vec(a, &iov, &iovcnt))
		return 0;
	capture(s, a->kind, a->ptr, iov, iovcnt, ret, cap_bytes, &cap, &tail);
	if (c->proto == OBS_PROTO_UNKNOWN) {
		if (a->dir != OBS_DIR_OUT || !cap || !looks_http1(s->ev.data, cap)) {
			c->proto = OBS_PROTO_OTHER;	/* not an HTTP/1 call */
			return 0;
		}
		c->proto = OBS_PROTO_HTTP1;
		c->fd = a->fd;
		if (c->family != AF_UNIX)
			client_tcp_addrs(c, (struct sock *)c->sk);
		emit_open(c);
		emit_early_state(c);
		count(OBS_C_CLIENT_CONNS);
	}
	s->ev.flags |= OBS_DF_CLIENT;
	emit_data(c, s, ret, cap, tail, a->dir);
	return 0;
}

/*
 * Hook of sock_io: the first write on a socket without state. TCP client
 * sockets already have theirs (client_connect); a UNIX one is adopted here
 * when it is the client end and its process serves. Costs other writes two
 * loads (family, type) and, on UNIX stream sockets, one lookup.
 */
static __always_inline int client_first_write(struct sock *sk, long ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct obs_conn c = {}, *sc;
	struct obs_conn_key k;
	struct sock *peer;
	struct io_args a;

	if (BPF_CORE_READ(sk, __sk_common.skc_family) != AF_UNIX ||
	    BPF_CORE_READ(sk, sk_type) != SOCK_STREAM || !client_serving(tgid) ||
	    tgid == self_tgid)
		return 0;
	if (BPF_CORE_READ((struct unix_sock *)sk, addr))
		return 0;	/* bound: a server's end (or a bound client) */
	peer = BPF_CORE_READ((struct unix_sock *)sk, peer);
	if (!peer || !BPF_CORE_READ((struct unix_sock *)peer, addr))
		return 0;	/* not connected to a listener (socketpair) */
	io_from_regs(&a, OBS_DIR_OUT);
	c.conn_id = __sync_fetch_and_add(&next_conn_id, 1);
	c.accept_ts_ns = bpf_ktime_get_ns();
	c.sk = (__u64)sk;
	c.tgid = tgid;
	c.fd = a.fd;
	c.family = AF_UNIX;
	c.flags = OBS_CF_CLIENT | OBS_CF_HASHED;
	/* like a UNIX server end: state in hconns, close() finds it by fd */
	if (bpf_map_update_elem(&hconns, &c.conn_id, &c, BPF_NOEXIST)) {
		count(OBS_C_LOST_CONNS_FULL);
		return 0;
	}
	sc = bpf_sk_storage_get(&store, sk, &c, BPF_SK_STORAGE_GET_F_CREATE);
	if (!sc) {
		count(OBS_C_STORE_FULL);
		bpf_map_delete_elem(&hconns, &c.conn_id);
		return 0;
	}
	if (track_fds) {
		k.tgid = tgid;
		k.fd = a.fd;
		bpf_map_update_elem(&fds, &k, &c.conn_id, BPF_ANY);
	}
	if (!(proc_flags(tgid) & OBS_PF_UNIX))
		proc_set(tgid, OBS_PF_UNIX);	/* close() looks only in such processes */
	want_close();
	sc = bpf_map_lookup_elem(&hconns, &c.conn_id);
	if (!sc)
		return 0;
	return client_io(sc, &a, ret);
}

#endif /* OBS_CLIENT_BPF_H */
