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
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "capture/loader.h"
#include "base/log.h"
#include "obs.skel.h"

#define TRACEFS "/sys/kernel/tracing"
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define TLS_MAX_LIBS	32	/* distinct libssl files probed */

/* ELF files already looked at for a probe, by device and inode. */
struct file_set {
	struct {
		dev_t dev;
		ino_t ino;
	} f[TLS_MAX_LIBS];
	int n;
};

struct loader {
	struct obs_bpf *skel;
	int ncpus;
	bool sys_tps;		/* syscall tracepoints loaded: tracefs is there, --syscall-hooks not off */
	/* The BPF flags asking for the close() tracepoint and for the write()
	 * and epoll tracepoints (mmapped .bss), or no_lazy_hook once they are
	 * attached, failed, or cannot be (no tracefs, or --syscall-hooks off). */
	const volatile __u32 *close_wanted, *sys_wanted;
	struct file_set ssl_libs;
	struct bpf_link *ssl_links[TLS_MAX_LIBS * 8];
	int n_ssl_links;

	/* The ring's consumer and producer positions, mapped read-only. */
	const volatile unsigned long *cons_pos, *prod_pos;
	size_t page;
};

/* What close_wanted points at when there is nothing (more) to attach. */
static const volatile __u32 no_lazy_hook;

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
	[OBS_C_CLIENT_CONNS] = "client_conns",
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

/*
 * Syscall tracepoints need tracefs; a fresh host may leave it unmounted and
 * the DaemonSet's capabilities cannot mount it. Everything essential attaches
 * by BTF (tp_btf) without it: the syscall tracepoints are extras.
 */
static bool have_tracefs(void)
{
	struct stat st;

	if (stat(TRACEFS "/events", &st) == 0)
		return true;
	if (mount("nodev", TRACEFS, "tracefs", 0, NULL) && errno != EBUSY) {
		pr_info("loader: no tracefs (%s on mounting it): log lines, event-loop timing and prompt close of UNIX connections are off (docs/deploy.md)",
			strerror(errno));
		return false;
	}
	pr_info("loader: mounted tracefs on %s", TRACEFS);
	return stat(TRACEFS "/events", &st) == 0;
}

/* Does the kernel have this raw tracepoint (tp_btf attach by BTF name)? */
static bool raw_tp_exists(const char *name)
{
	static struct btf *vmlinux;
	char type[128];

	if (!vmlinux)
		vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux)
		return false;
	snprintf(type, sizeof(type), "btf_trace_%s", name);
	return btf__find_by_name_kind(vmlinux, type, BTF_KIND_TYPEDEF) >= 0;
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

/* The highest tgid plus one (kernel.pid_max), which sizes the "procs" bits. */
static unsigned long pid_max(void)
{
	unsigned long n = 0;
	FILE *fp = fopen("/proc/sys/kernel/pid_max", "r");

	if (fp) {
		if (fscanf(fp, "%lu", &n) != 1)
			n = 0;
		fclose(fp);
	}
	return n >= 32 && n <= (1ul << 30) ? n : OBS_PID_MAX_DEFAULT;
}

/*
 * A Python interpreter running on the node (a process whose executable's
 * name starts "python"): its pid, or 0. A process whose executable cannot be
 * read counts as one: the hooks are then attached at start, as before they
 * were lazy. Without /proc, obsd's own pid stands for "cannot tell".
 */
static __u32 python_running(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	__u32 found = 0;

	if (!d)
		return getpid();
	while (!found && (e = readdir(d))) {
		char path[64], exe[PATH_MAX];
		const char *base;
		bool python;
		ssize_t n;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/exe", e->d_name);
		n = readlink(path, exe, sizeof(exe) - 1);
		if (n >= 0) {
			exe[n] = 0;
			base = strrchr(exe, '/');
			python = !strncmp(base ? base + 1 : exe, "python", 6);
		} else {	/* kernel threads have none; a process gone, neither */
			python = errno == EACCES || errno == EPERM;
		}
		if (python)
			found = strtoul(e->d_name, NULL, 10);
	}
	closedir(d);
	return found;
}

static int configure(struct loader *l, const struct obs_filter *f)
{
	struct obs_bpf *skel = l->skel;
	struct obs_bpf__rodata *ro = skel->rodata;
	struct bpf_program *syscall_tps[] = {
		skel->progs.enter_close, skel->progs.enter_write, skel->progs.enter_epoll_wait,
		skel->progs.exit_epoll_wait,
		skel->progs.enter_epoll_pwait, skel->progs.exit_epoll_pwait,
	};

	/* One program run per socket operation: the kernel must say so. */
	if (!raw_tp_exists("sock_recv_length") || !raw_tp_exists("sock_send_length")) {
		pr_warn("loader: this kernel lacks the sock:sock_recv_length/sock_send_length tracepoints (Linux >= 6.3): obs cannot observe here");
		return -EOPNOTSUPP;
	}
	ro->cap_bytes = f->cap_bytes ? f->cap_bytes : OBS_CAP_DEFAULT;
	if (ro->cap_bytes > OBS_CAP_MAX)
		ro->cap_bytes = OBS_CAP_MAX;
	ro->self_tgid = getpid();
	if (f->loop_block_ns)
		ro->loop_block_ns = f->loop_block_ns;
	ro->filter_pids = f->n_pids > 0;
	ro->filter_ports = f->n_ports > 0;
	ro->filter_unix = f->n_unix > 0;
	ro->n_comms = f->n_comms;
	for (int i = 0; i < f->n_comms; i++)
		memcpy((void *)ro->comms[i], f->comms[i], OBS_COMM_LEN);
	/* Connection ids stay unique across restarts: seconds since the epoch in the
	 * high bits. */
	skel->data->next_conn_id = ((__u64)time(NULL) << 24) + 1;
	bpf_map__set_max_entries(skel->maps.procs,
				 (pid_max() + OBS_PF_PER_WORD - 1) / OBS_PF_PER_WORD);
	if (!f->n_pids)
		bpf_program__set_autoload(skel->progs.fork, false);
	if (!raw_tp_exists("tcp_receive_reset"))
		bpf_program__set_autoload(skel->progs.tcp_rst, false);
	if (!raw_tp_exists("tcp_destroy_sock"))
		bpf_program__set_autoload(skel->progs.tcp_destroy, false);
	/* Queue time: a run per data arrival on every socket, ~0.5 us of
	 * kernel time per request (docs/bench.md): opt-in. */
	ro->queue_time = f->queue_time && raw_tp_exists("sk_data_ready");
	if (!ro->queue_time)
		bpf_program__set_autoload(skel->progs.data_ready, false);
	if (f->no_syscall_hooks)
		pr_info("loader: syscall-hooks off: log lines, event-loop timing and prompt close of UNIX connections are off, and no syscall on the node takes the tracing path");
	l->sys_tps = !f->no_syscall_hooks && have_tracefs();
	ro->track_fds = l->sys_tps;
	/* Attached by loader__lazy_hooks when wanted: while one syscall
	 * tracepoint is attached every syscall on the node pays (docs/bench.md).
	 * close() once a UNIX connection is followed; write() and epoll_wait()
	 * once a Python process or an HTTP server is seen (exec watches for the
	 * first Python start). */
	for (size_t i = 0; i < ARRAY_SIZE(syscall_tps); i++) {
		if (!l->sys_tps)
			bpf_program__set_autoload(syscall_tps[i], false);
		bpf_program__set_autoattach(syscall_tps[i], false);
	}
	if (!l->sys_tps)
		bpf_program__set_autoload(skel->progs.exec, false);
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
	for (int i = 0; i < f->n_unix; i++) {
		char path[OBS_UNIX_PATH_LEN] = {};

		memcpy(path, f->unix_paths[i], sizeof(path) - 1);
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.unix_paths), path, &one, BPF_ANY))
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

/* Remember an ELF file once: 0 if new, 1 if seen before, or -errno. */
static int file_set__add(struct file_set *s, const char *path)
{
	struct stat st;

	if (stat(path, &st))
		return -errno;
	for (int i = 0; i < s->n; i++)
		if (s->f[i].dev == st.st_dev && s->f[i].ino == st.st_ino)
			return 1;
	if (s->n >= TLS_MAX_LIBS)
		return -E2BIG;
	s->f[s->n].dev = st.st_dev;
	s->f[s->n++].ino = st.st_ino;
	return 0;
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
	int attached = 0, err = file_set__add(&l->ssl_libs, path);

	if (err)
		return err == 1 ? 0 : err;
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

			if (!p)
				continue;
			p[strcspn(p, "\n")] = 0;
			snprintf(lib, sizeof(lib), "/proc/%d/root%s", pid, p);
			if (strstr(p, "/libssl.so"))
				attach_ssl_lib(l, lib);
		}
		fclose(fp);
	}
	if (d)
		closedir(d);
}

struct loader *loader__open(const struct obs_filter *f)
{
	struct loader *l = calloc(1, sizeof(*l));
	int err;

	if (!l)
		return NULL;
	libbpf_set_print(libbpf_log);
	l->ncpus = libbpf_num_possible_cpus();
	l->skel = obs_bpf__open();
	if (!l->skel) {
		err = -errno;
		pr_warn("loader: cannot open BPF object: %s", strerror(errno));
		goto out_free;
	}
	err = configure(l, f);
	if (err)
		goto out_destroy;
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
	l->close_wanted = l->sys_tps ? &l->skel->bss->want_close_hook : &no_lazy_hook;
	l->sys_wanted = l->sys_tps ? &l->skel->bss->want_sys_hooks : &no_lazy_hook;
	if (l->sys_tps && (l->skel->bss->want_sys_hooks = python_running()))
		loader__lazy_hooks(l);
	map_positions(l);
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

void loader__forget_conn(const struct loader *l, uint64_t conn_id)
{
	bpf_map_delete_elem(bpf_map__fd(l->skel->maps.hconns), &conn_id);
}

/* Attach the close() tracepoint, once. Its link is the skeleton's, which
 * loader__free (obs_bpf__destroy) detaches. */
static void attach_close(struct loader *l)
{
	struct bpf_link *link = bpf_program__attach(l->skel->progs.enter_close);

	l->close_wanted = &no_lazy_hook;	/* attached or failed: not again */
	if (!link) {
		pr_warn("loader: cannot attach the close() tracepoint: %s (closes of UNIX connections are found when they are idle)",
			strerror(errno));
		return;
	}
	l->skel->links.enter_close = link;
	pr_info("loader: a UNIX connection is followed: close() tracepoint attached");
}

/* The write() and epoll tracepoints, once; then exec has nothing to ask. */
static void attach_sys_hooks(struct loader *l)
{
	struct obs_bpf *skel = l->skel;
	struct {
		struct bpf_program *prog;
		struct bpf_link **link;
	} hooks[] = {
		{ skel->progs.enter_write, &skel->links.enter_write },
		{ skel->progs.enter_epoll_wait, &skel->links.enter_epoll_wait },
		{ skel->progs.exit_epoll_wait, &skel->links.exit_epoll_wait },
		{ skel->progs.enter_epoll_pwait, &skel->links.enter_epoll_pwait },
		{ skel->progs.exit_epoll_pwait, &skel->links.exit_epoll_pwait },
	};
	__u32 asker = *l->sys_wanted;
	int n = 0;

	l->sys_wanted = &no_lazy_hook;	/* attached or failed: not again */
	for (size_t i = 0; i < ARRAY_SIZE(hooks); i++) {
		*hooks[i].link = bpf_program__attach(hooks[i].prog);
		if (*hooks[i].link)
			n++;
		else
			pr_warn("loader: cannot attach %s: %s", bpf_program__name(hooks[i].prog),
				strerror(errno));
	}
	bpf_link__destroy(skel->links.exec);
	skel->links.exec = NULL;
	pr_info("loader: a Python process or an HTTP server is on the node (pid %u): write() and epoll_wait() tracepoints attached (%d of %zu)",
		asker, n, ARRAY_SIZE(hooks));
}

void loader__lazy_hooks(struct loader *l)
{
	if (*l->close_wanted)
		attach_close(l);
	if (*l->sys_wanted)
		attach_sys_hooks(l);
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
