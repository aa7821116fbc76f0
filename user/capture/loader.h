/* SPDX-License-Identifier: MIT */
/*
 * loader — open, configure, load and attach the kernel side; read its counters.
 * Everything here needs root, or CAP_BPF + CAP_PERFMON (+ CAP_SYS_PTRACE and
 * CAP_DAC_READ_SEARCH for /proc); tracefs is optional (docs/deploy.md).
 */
#ifndef OBS_LOADER_H
#define OBS_LOADER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "obs.h"

/* Target selection and capture settings. Any combination; all empty = every process. */
struct obs_filter {
	pid_t pids[OBS_MAX_TARGETS];
	int n_pids;
	char comms[OBS_MAX_COMMS][OBS_COMM_LEN];
	int n_comms;
	uint16_t ports[OBS_MAX_PORTS];
	int n_ports;
	char unix_paths[OBS_MAX_UNIX][OBS_UNIX_PATH_LEN];	/* --unix: listening socket paths */
	int n_unix;
	uint32_t cap_bytes;		/* bytes captured per syscall, <= OBS_CAP_MAX */
	uint64_t loop_block_ns;		/* event-loop iterations this long are "blocked" */
	bool queue_time;		/* --queue-time: time how long requests waited in the socket */
	bool no_syscall_hooks;		/* --syscall-hooks off: never attach a syscall tracepoint */
};

struct loader;

/*
 * Mount tracefs if possible, open the BPF object, apply f, load, seed, attach.
 * On error, NULL is returned with errno set and the reason logged; nothing is
 * left attached.
 */
struct loader *loader__open(const struct obs_filter *f);

/* Ring buffer map fd. */
int loader__ringbuf_fd(const struct loader *l);
/* Userspace found a connection gone (its close was not seen): drop the
 * kernel's state for it, if any. */
void loader__forget_conn(const struct loader *l, uint64_t conn_id);
/* At each drain: attach close() once a UNIX connection is followed (else one read). */
void loader__lazy_hooks(struct loader *l);
int loader__loops_fd(const struct loader *l);

/* Fraction (0..1) of the ring buffer holding unconsumed records right now. */
double loader__ringbuf_fill(const struct loader *l);

/* Sum the per-CPU counters into out[OBS_C_MAX]. Returns 0 or -errno. */
int loader__counters(const struct loader *l, uint64_t out[OBS_C_MAX]);

/* Number of programs attached, and their ids (for bpf_stats). */
int loader__prog_ids(const struct loader *l, uint32_t *ids, int max);

/* Find libssl files mapped by processes and probe the new ones (TLS plaintext).
 * Called at open and then periodically. */
void loader__scan_tls(struct loader *l);

/* Detach and free. NULL-safe. */
void loader__free(struct loader *l);

/* Parse "a,b" style helpers for flags: add one target. Return 0 or -EINVAL/-E2BIG. */
int obs_filter__add_pid(struct obs_filter *f, const char *s);
int obs_filter__add_comm(struct obs_filter *f, const char *s);
int obs_filter__add_port(struct obs_filter *f, const char *s);
/* --unix PATH: a UNIX socket path a server listens on ("@name": abstract). */
int obs_filter__add_unix(struct obs_filter *f, const char *s);

/* Static name of a counter for logs, JSON and metrics ("lost_ringbuf", …). */
const char *obs_counter_name(enum obs_counter c);

#endif
