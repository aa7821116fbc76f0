// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

struct loader {
	struct obs_bpf *skel;
	int ncpus;
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
	if (l->cons_pos) {
		munmap((void *)l->cons_pos, l->page);
		munmap((void *)l->prod_pos, l->page);
	}
	obs_bpf__destroy(l->skel);
	free(l);
}
