// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "loader.h"
#include "log.h"
#include "obs.skel.h"

#define TRACEFS "/sys/kernel/tracing"
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define TLS_MAX_LIBS	32	/* distinct libssl files probed */

struct loader {
	struct obs_bpf *skel;
	int ncpus;
	struct {
		dev_t dev;
		ino_t ino;
	} ssl_libs[TLS_MAX_LIBS];
	int n_ssl_libs;
	struct bpf_link *ssl_links[TLS_MAX_LIBS * 8];
	int n_ssl_links;
	/* The ring's consumer and producer positions, mapped read-only. */
	const volatile unsigned long *cons_pos, *prod_pos;
	size_t page;
};

static const char *const counter_names[OBS_C_MAX] = {
	[OBS_C_EVENTS] = "events",
	[OBS_C_LOST_RINGBUF] = "lost_ringbuf",
	[OBS_C_LOST_CONNS_FULL] = "lost_conns_full",
	[OBS_C_LOST_ARGS_FULL] = "lost_args_full",
	[OBS_C_LOST_TARGETS_FULL] = "lost_targets_full",
	[OBS_C_TRUNCATED] = "truncated",
	[OBS_C_CONNS_OPENED] = "conns_opened",
	[OBS_C_CONNS_NOT_HTTP] = "conns_not_http",
	[OBS_C_READ_FAULT] = "read_fault",
	[OBS_C_LOG_WRITES] = "log_writes",
	[OBS_C_ADOPT_SKIPPED] = "adopt_skipped",
	[OBS_C_TLS_UNMAPPED] = "tls_unmapped",
	[OBS_C_UNDECODED] = "undecoded",
	[OBS_C_STORE_FULL] = "store_full",
};

const char *obs_counter_name(enum obs_counter c)
{
	return c < OBS_C_MAX && counter_names[c] ? counter_names[c] : "unknown";
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max || s[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

int obs_filter__add_pid(struct obs_filter *f, const char *s)
{
	unsigned long v;

	if (parse_uint(s, INT_MAX, &v) || v == 0)
		return -EINVAL;
	if (f->n_pids >= OBS_MAX_TARGETS)
		return -E2BIG;
	f->pids[f->n_pids++] = (pid_t)v;
	return 0;
}

int obs_filter__add_comm(struct obs_filter *f, const char *s)
{
	if (!*s || strlen(s) >= OBS_COMM_LEN)
		return -EINVAL;
	if (f->n_comms >= OBS_MAX_COMMS)
		return -E2BIG;
	strcpy(f->comms[f->n_comms++], s);
	return 0;
}

int obs_filter__add_port(struct obs_filter *f, const char *s)
{
	unsigned long v;

	if (parse_uint(s, 65535, &v) || v == 0)
		return -EINVAL;
	if (f->n_ports >= OBS_MAX_PORTS)
		return -E2BIG;
	f->ports[f->n_ports++] = (uint16_t)v;
	return 0;
}

int obs_filter__add_unix(struct obs_filter *f, const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= OBS_UNIX_PATH_LEN)
		return -EINVAL;
	if (f->n_unix >= OBS_MAX_UNIX)
		return -E2BIG;
	memset(f->unix_paths[f->n_unix], 0, OBS_UNIX_PATH_LEN);
	memcpy(f->unix_paths[f->n_unix++], s, n);
	return 0;
}

static int libbpf_log(enum libbpf_print_level lvl, const char *fmt, va_list ap)
{
	if (lvl == LIBBPF_DEBUG && log_level < LOG_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* Syscall tracepoints need tracefs; some hosts leave it unmounted. */
static int ensure_tracefs(void)
{
	struct stat st;

	if (stat(TRACEFS "/events", &st) == 0)
		return 0;
	if (mount("nodev", TRACEFS, "tracefs", 0, NULL) && errno != EBUSY) {
		pr_warn("loader: cannot mount tracefs on %s: %s", TRACEFS, strerror(errno));
		return -errno;
	}
	pr_info("loader: mounted tracefs on %s", TRACEFS);
	return 0;
}

static bool tracepoint_exists(const char *cat, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), TRACEFS "/events/%s/%s", cat, name);
	return access(path, F_OK) == 0;
}

/* Add the descendants of every --pid target that already exist (forks after
 * load are followed in the kernel). */
static void add_children(int map_fd, pid_t root)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	__u8 one = 1;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[64], buf[512], *p;
		int pid, ppid;
		FILE *fp;

		pid = atoi(de->d_name);
		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		fp = fopen(path, "r");
		if (!fp)
			continue;
		p = fgets(buf, sizeof(buf), fp) ? strrchr(buf, ')') : NULL;
		fclose(fp);
		if (!p || sscanf(p + 2, "%*c %d", &ppid) != 1 || ppid != root)
			continue;
		bpf_map_update_elem(map_fd, &pid, &one, BPF_ANY);
		add_children(map_fd, pid);
	}
	closedir(d);
}

static int configure(struct obs_bpf *skel, const struct obs_filter *f)
{
	struct obs_bpf__rodata *ro = skel->rodata;

	ro->cap_bytes = f->cap_bytes ? f->cap_bytes : OBS_CAP_DEFAULT;
	if (ro->cap_bytes > OBS_CAP_MAX)
		ro->cap_bytes = OBS_CAP_MAX;
	ro->self_tgid = getpid();
	if (f->loop_block_ns)
		ro->loop_block_ns = f->loop_block_ns;
	ro->filter_pids = f->n_pids > 0;
	ro->filter_ports = f->n_ports > 0;
	ro->n_comms = f->n_comms;
	for (int i = 0; i < f->n_comms; i++)
		memcpy((void *)ro->comms[i], f->comms[i], OBS_COMM_LEN);
	/* Connection ids stay unique across restarts: seconds since the epoch in the
	 * high bits. */
	skel->data->next_conn_id = ((__u64)time(NULL) << 24) + 1;
	if (!f->n_pids)
		bpf_program__set_autoload(skel->progs.fork, false);
	if (!tracepoint_exists("tcp", "tcp_receive_reset"))
		bpf_program__set_autoload(skel->progs.tcp_rst, false);
	if (!tracepoint_exists("sock", "sk_data_ready"))	/* kernel >= 6.3 */
		bpf_program__set_autoload(skel->progs.data_ready, false);
	if (!tracepoint_exists("sock", "inet_sock_set_state"))
		bpf_program__set_autoload(skel->progs.sock_state, false);
	return 0;
}

static int fill_maps(struct obs_bpf *skel, const struct obs_filter *f)
{
	int tfd = bpf_map__fd(skel->maps.targets), pfd = bpf_map__fd(skel->maps.ports);
	__u8 one = 1;

	for (int i = 0; i < f->n_pids; i++) {
		__u32 pid = f->pids[i];

		if (kill(f->pids[i], 0) && errno == ESRCH)
			pr_warn("loader: --pid %d: no such process (watching for it anyway)", pid);
		if (bpf_map_update_elem(tfd, &pid, &one, BPF_ANY))
			return -errno;
		add_children(tfd, f->pids[i]);
	}
	for (int i = 0; i < f->n_ports; i++) {
		__u16 port = f->ports[i];

		if (bpf_map_update_elem(pfd, &port, &one, BPF_ANY))
			return -errno;
	}
	return 0;
}

static void map_positions(struct loader *l)
{
	int fd = bpf_map__fd(l->skel->maps.rb);
	void *c, *p;

	l->page = sysconf(_SC_PAGESIZE);
	c = mmap(NULL, l->page, PROT_READ, MAP_SHARED, fd, 0);
	p = mmap(NULL, l->page, PROT_READ, MAP_SHARED, fd, l->page);
	if (c == MAP_FAILED || p == MAP_FAILED) {
		pr_warn("loader: cannot map ring buffer positions: %s (fill not reported)",
			strerror(errno));
		if (c != MAP_FAILED)
			munmap(c, l->page);
		if (p != MAP_FAILED)
			munmap(p, l->page);
		return;
	}
	l->cons_pos = c;
	l->prod_pos = p;
}

double loader__ringbuf_fill(const struct loader *l)
{
	if (!l->cons_pos)
		return 0;
	return (double)(*l->prod_pos - *l->cons_pos) / bpf_map__max_entries(l->skel->maps.rb);
}

/* ---- TLS: uprobes on OpenSSL ---- */

/* Attach the SSL_read/SSL_write(_ex) probes to one libssl file (all processes
 * mapping it, now and later). Returns 0 or -errno. */
static int attach_ssl_lib(struct loader *l, const char *path)
{
	static const struct {
		const char *fn;
		bool ret;
	} fns[] = {
		{ "SSL_read", false }, { "SSL_read", true }, { "SSL_read_ex", false },
		{ "SSL_read_ex", true }, { "SSL_write", false }, { "SSL_write", true },
		{ "SSL_write_ex", false }, { "SSL_write_ex", true },
	};
	struct bpf_program *progs[] = {
		l->skel->progs.ssl_read_enter, l->skel->progs.ssl_read_exit,
		l->skel->progs.ssl_read_ex_enter, l->skel->progs.ssl_read_ex_exit,
		l->skel->progs.ssl_write_enter, l->skel->progs.ssl_write_exit,
		l->skel->progs.ssl_write_ex_enter, l->skel->progs.ssl_write_ex_exit,
	};
	struct stat st;
	int attached = 0;

	if (stat(path, &st))
		return -errno;
	for (int i = 0; i < l->n_ssl_libs; i++)
		if (l->ssl_libs[i].dev == st.st_dev && l->ssl_libs[i].ino == st.st_ino)
			return 0;
	if (l->n_ssl_libs >= TLS_MAX_LIBS)
		return -E2BIG;
	l->ssl_libs[l->n_ssl_libs].dev = st.st_dev;
	l->ssl_libs[l->n_ssl_libs++].ino = st.st_ino;
	for (size_t i = 0; i < ARRAY_SIZE(fns); i++) {
		LIBBPF_OPTS(bpf_uprobe_opts, o, .func_name = fns[i].fn, .retprobe = fns[i].ret);
		struct bpf_link *link = bpf_program__attach_uprobe_opts(progs[i], -1, path, 0, &o);

		if (!link) {
			pr_debug("loader: %s in %s: %s", fns[i].fn, path, strerror(errno));
			continue;
		}
		l->ssl_links[l->n_ssl_links++] = link;
		attached++;
	}
	pr_info("loader: TLS plaintext probes on %s (%d of %zu)", path, attached, ARRAY_SIZE(fns));
	return attached ? 0 : -ENOENT;
}

/* libssl files mapped by running processes (containers included, through
 * /proc/PID/root), plus the system's. Processes started later that map an
 * already probed file are covered; new files are found by the next scan. */
void loader__scan_tls(struct loader *l)
{
	static const char *const system_libs[] = {
		"/lib/x86_64-linux-gnu/libssl.so.3", "/lib/aarch64-linux-gnu/libssl.so.3",
		"/usr/lib64/libssl.so.3", "/usr/lib/libssl.so.3",
	};
	struct dirent *de;
	DIR *d;

	for (size_t i = 0; i < ARRAY_SIZE(system_libs); i++)
		if (!access(system_libs[i], R_OK))
			attach_ssl_lib(l, system_libs[i]);
	d = opendir("/proc");
	while (d && (de = readdir(d))) {
		char path[64], line[512], lib[PATH_MAX + 64];
		int pid = atoi(de->d_name);
		FILE *fp;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/maps", pid);
		fp = fopen(path, "r");
		if (!fp)
			continue;
		while (fgets(line, sizeof(line), fp)) {
			char *p = strchr(line, '/');

			if (!p || !strstr(p, "/libssl.so"))
				continue;
			p[strcspn(p, "\n")] = 0;
			snprintf(lib, sizeof(lib), "/proc/%d/root%s", pid, p);
			attach_ssl_lib(l, lib);
			break;
		}
		fclose(fp);
	}
	if (d)
		closedir(d);
}

/* ---- connections open before we started ---- */

#define ADOPT_MAX_SOCKS	65536

struct tcp_sock_info {
	unsigned long inode;
	uint16_t family, lport, rport;
	uint8_t laddr[16], raddr[16];
	bool listen;
};

static int hexbytes(const char *s, uint8_t *out, int n)
{
	for (int i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = v;
	}
	return 0;
}

/* /proc/net/tcp{,6} address "0100007F:1F90": 32-bit words in host order. */
static int parse_addr(const char *s, int v6, uint8_t *addr, uint16_t *port)
{
	int words = v6 ? 4 : 1;
	unsigned p;

	for (int w = 0; w < words; w++) {
		uint8_t b[4];

		if (hexbytes(s + 8 * w, b, 4))
			return -1;
		for (int i = 0; i < 4; i++)	/* little-endian words on x86/arm64 */
			addr[4 * w + i] = b[3 - i];
	}
	if (s[8 * words] != ':' || sscanf(s + 8 * words + 1, "%4x", &p) != 1)
		return -1;
	*port = p;
	return 0;
}

static size_t read_tcp_table(const char *path, int v6, struct tcp_sock_info *out, size_t n,
			     size_t max)
{
	char line[512], la[64], ra[64];
	unsigned st;
	unsigned long inode;
	FILE *fp = fopen(path, "r");

	if (!fp)
		return n;
	while (n < max && fgets(line, sizeof(line), fp)) {
		struct tcp_sock_info *t = &out[n];

		if (sscanf(line, " %*d: %63s %63s %x %*s %*s %*s %*d %*d %lu", la, ra, &st, &inode) != 4)
			continue;
		if ((st != 0x01 && st != 0x0A) || !inode)	/* ESTABLISHED, LISTEN */
			continue;
		memset(t, 0, sizeof(*t));
		if (parse_addr(la, v6, t->laddr, &t->lport) || parse_addr(ra, v6, t->raddr, &t->rport))
			continue;
		t->family = v6 ? AF_INET6 : AF_INET;
		t->inode = inode;
		t->listen = st == 0x0A;
		n++;
	}
	fclose(fp);
	return n;
}

static const struct tcp_sock_info *sock_by_inode(const struct tcp_sock_info *t, size_t n,
						 unsigned long inode)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].inode == inode)
			return &t[i];
	return NULL;
}

static bool want_process(const struct loader *l, const struct obs_filter *f, int pid)
{
	char path[64], comm[32] = "";
	FILE *fp;

	if (pid == getpid())
		return false;
	if (f->n_pids) {
		__u32 k = pid;
		__u8 v;

		if (bpf_map_lookup_elem(bpf_map__fd(l->skel->maps.targets), &k, &v))
			return false;
	}
	if (!f->n_comms)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	fp = fopen(path, "r");
	if (!fp)
		return false;
	if (!fgets(comm, sizeof(comm), fp))
		comm[0] = 0;
	fclose(fp);
	comm[strcspn(comm, "\n")] = 0;
	for (int i = 0; i < f->n_comms; i++)
		if (!strncmp(comm, f->comms[i], OBS_COMM_LEN - 1))
			return true;
	return false;
}

static bool port_wanted(const struct obs_filter *f, uint16_t port)
{
	if (!f->n_ports)
		return true;
	for (int i = 0; i < f->n_ports; i++)
		if (f->ports[i] == port)
			return true;
	return false;
}

/* One process: its server-side sockets are ESTABLISHED ones whose local port
 * it also listens on. Returns connections adopted. */
static int adopt_process(struct loader *l, const struct obs_filter *f, int pid,
			 const struct tcp_sock_info *socks, size_t n)
{
	struct { int fd; const struct tcp_sock_info *s; } est[1024];
	uint16_t lports[64];
	int n_est = 0, n_l = 0, adopted = 0;
	char path[64], link[64];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		unsigned long inode;
		const struct tcp_sock_info *s;
		char fdpath[64 + 256];
		ssize_t ll;

		snprintf(fdpath, sizeof(fdpath), "%s/%s", path, de->d_name);
		ll = readlink(fdpath, link, sizeof(link) - 1);
		if (ll <= 0)
			continue;
		link[ll] = 0;
		if (sscanf(link, "socket:[%lu]", &inode) != 1 || !(s = sock_by_inode(socks, n, inode)))
			continue;
		if (s->listen && n_l < (int)ARRAY_SIZE(lports))
			lports[n_l++] = s->lport;
		else if (!s->listen && n_est < (int)ARRAY_SIZE(est))
			est[n_est++] = (typeof(est[0])){ atoi(de->d_name), s };
	}
	closedir(d);
	for (int i = 0; i < n_est; i++) {
		struct obs_conn_key k = { .tgid = pid, .fd = est[i].fd };
		const struct tcp_sock_info *s = est[i].s;
		struct obs_conn c = {};
		bool server_side = false;
		__u8 one = 1;

		for (int j = 0; j < n_l; j++)
			server_side |= lports[j] == s->lport;
		if (!server_side || !port_wanted(f, s->lport))
			continue;
		c.conn_id = __atomic_fetch_add(&l->skel->data->next_conn_id, 1, __ATOMIC_SEQ_CST);
		c.family = s->family;
		c.lport = s->lport;
		c.rport = s->rport;
		memcpy(c.laddr, s->laddr, 16);
		memcpy(c.raddr, s->raddr, 16);
		c.early = OBS_CONN_ADOPTED;
		if (bpf_map_update_elem(bpf_map__fd(l->skel->maps.conns), &k, &c, BPF_NOEXIST))
			continue;	/* accepted meanwhile, or the table is full */
		bpf_map_update_elem(bpf_map__fd(l->skel->maps.procs), &k.tgid, &one, BPF_ANY);
		pr_debug("loader: adopted pid %d fd %d port %u", pid, k.fd, s->lport);
		adopted++;
	}
	return adopted;
}

/* Connections open before obsd started (after a restart, say): follow them
 * from their next request. Best effort; runs once, after attach. */
static void adopt_existing(struct loader *l, const struct obs_filter *f)
{
	struct tcp_sock_info *socks = calloc(ADOPT_MAX_SOCKS, sizeof(*socks));
	size_t n = 0;
	int total = 0;
	struct dirent *de;
	DIR *d;

	if (!socks)
		return;
	n = read_tcp_table("/proc/net/tcp", 0, socks, n, ADOPT_MAX_SOCKS);
	n = read_tcp_table("/proc/net/tcp6", 1, socks, n, ADOPT_MAX_SOCKS);
	d = opendir("/proc");
	while (d && (de = readdir(d))) {
		int pid = atoi(de->d_name);

		if (pid > 0 && want_process(l, f, pid))
			total += adopt_process(l, f, pid, socks, n);
	}
	if (d)
		closedir(d);
	free(socks);
	pr_debug("loader: %zu TCP sockets in /proc/net, %d connection(s) adopted", n, total);
	if (total)
		pr_info("loader: following %d connection(s) opened before start, from their next request",
			total);
}

struct loader *loader__open(const struct obs_filter *f)
{
	struct loader *l = calloc(1, sizeof(*l));
	int err;

	if (!l)
		return NULL;
	libbpf_set_print(libbpf_log);
	err = ensure_tracefs();
	if (err)
		goto out_free;
	l->ncpus = libbpf_num_possible_cpus();
	l->skel = obs_bpf__open();
	if (!l->skel) {
		err = -errno;
		pr_warn("loader: cannot open BPF object: %s", strerror(errno));
		goto out_free;
	}
	configure(l->skel, f);
	err = obs_bpf__load(l->skel);
	if (err) {
		pr_warn("loader: cannot load BPF programs: %s%s", strerror(-err),
			err == -EPERM ? " (obs needs root, or CAP_BPF and CAP_PERFMON)" : "");
		goto out_destroy;
	}
	err = fill_maps(l->skel, f);
	if (err) {
		pr_warn("loader: cannot fill filter maps: %s", strerror(-err));
		goto out_destroy;
	}
	err = obs_bpf__attach(l->skel);
	if (err) {
		pr_warn("loader: cannot attach BPF programs: %s", strerror(-err));
		goto out_destroy;
	}
	map_positions(l);
	adopt_existing(l, f);
	loader__scan_tls(l);
	return l;

out_destroy:
	obs_bpf__destroy(l->skel);
out_free:
	free(l);
	errno = -err;
	return NULL;
}

int loader__ringbuf_fd(const struct loader *l)
{
	return bpf_map__fd(l->skel->maps.rb);
}

int loader__conns_fd(const struct loader *l)
{
	return bpf_map__fd(l->skel->maps.conns);
}

int loader__loops_fd(const struct loader *l)
{
	return bpf_map__fd(l->skel->maps.loops);
}

int loader__counters(const struct loader *l, uint64_t out[OBS_C_MAX])
{
	int fd = bpf_map__fd(l->skel->maps.counters);
	__u64 vals[l->ncpus];

	for (__u32 i = 0; i < OBS_C_MAX; i++) {
		out[i] = 0;
		if (bpf_map_lookup_elem(fd, &i, vals))
			return -errno;
		for (int c = 0; c < l->ncpus; c++)
			out[i] += vals[c];
	}
	return 0;
}

int loader__prog_ids(const struct loader *l, uint32_t *ids, int max)
{
	struct bpf_program *p;
	int n = 0;

	bpf_object__for_each_program(p, l->skel->obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (n >= max || bpf_program__fd(p) < 0)
			continue;
		if (!bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len))
			ids[n++] = info.id;
	}
	return n;
}

void loader__free(struct loader *l)
{
	if (!l)
		return;
	for (int i = 0; i < l->n_ssl_links; i++)
		bpf_link__destroy(l->ssl_links[i]);
	if (l->cons_pos) {
		munmap((void *)l->cons_pos, l->page);
		munmap((void *)l->prod_pos, l->page);
	}
	obs_bpf__destroy(l->skel);
	free(l);
}
