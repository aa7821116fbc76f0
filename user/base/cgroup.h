/* SPDX-License-Identifier: MIT */
/*
 * cgroup — which container and which Kubernetes pod a process runs in, read
 * from /proc/PID/cgroup (cgroup v1, v2 and hybrid layouts).
 *
 * The container id is the 64-hex id the runtime put in the process's cgroup
 * path; the pod UID is the kubelet's pod<uid> path component. Recognised:
 *
 *   containerd  .../cri-containerd-<id>.scope          (systemd driver)
 *               .../kubepods/<qos>/pod<uid>/<id>       (cgroupfs driver)
 *               ...pod<uid>.slice:cri-containerd:<id>  (driver mismatch)
 *   CRI-O       .../crio-<id>.scope, .../crio-<id>
 *   docker      .../docker-<id>.scope, /docker/<id>
 *   podman      .../libpod-<id>.scope, /libpod_parent/libpod-<id>
 *   other       a bare <id> component (runtime unknown)
 *
 * The innermost (last) id in a path wins (docker in docker); conmon scopes
 * (crio-conmon-<id>, libpod-conmon-<id>) are not containers. The pod UID is
 * found only when the path contains "kubepods": systemd driver
 * kubepods[-<qos>]-pod<uid with '_'>.slice, cgroupfs driver pod<uid>; it is
 * returned with '-' separators, or as the 32-hex config hash of static pods.
 * Paths relative to a cgroup namespace ("/../../kubepods-…") parse the same.
 *
 * Parsing is pure (no I/O, no allocation); the cache reads /proc under a
 * given root and remembers each pid's answer for CGROUP_TTL_NS.
 */
#ifndef OBS_CGROUP_H
#define OBS_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CGROUP_ID_LEN		64	/* hex digits of a container id */
#define CGROUP_POD_UID_MAX	36	/* "8-4-4-4-12" */
#define CGROUP_FILE_MAX		8192	/* bytes of /proc/PID/cgroup read */
#define CGROUP_CACHE_SLOTS	1024	/* pids remembered (power of two) */
#define CGROUP_CACHE_PROBE	8	/* slots searched per pid before evicting */
#define CGROUP_TTL_NS		(30ull * 1000000000ull)	/* re-read a pid after this */

enum cgroup_runtime {
	CGROUP_RT_NONE = 0,	/* no container id, or the runtime is unknown */
	CGROUP_RT_CONTAINERD,
	CGROUP_RT_CRIO,
	CGROUP_RT_DOCKER,
	CGROUP_RT_PODMAN,
};

/* The identity of one process; all strings "" when not found. */
struct cgroup_ident {
	char container_id[CGROUP_ID_LEN + 1];	/* 64 lowercase hex */
	char pod_uid[CGROUP_POD_UID_MAX + 1];	/* lowercase, '-' separated */
	enum cgroup_runtime runtime;
};

/*
 * Parse one cgroup path (the part after the second ':' of a line). Fills id
 * with what the path holds, the rest zeroed. Returns true when a container
 * id was found.
 */
bool cgroup_parse_path(const char *path, size_t len, struct cgroup_ident *id);

/*
 * Parse the whole text of /proc/PID/cgroup (not NUL-terminated; len bytes).
 * The cgroup v2 line ("0::/…") is tried first, then the v1 lines in order;
 * the first line holding a container id gives the id and its runtime, and
 * the pod UID comes from that line or, failing that, the first line with
 * one. An incomplete last line is ignored. Returns true when a container id
 * was found; id is zeroed otherwise except for a pod UID.
 */
bool cgroup_parse_file(const char *text, size_t len, struct cgroup_ident *id);

/* "containerd", "cri-o", "docker", "podman", or "" for CGROUP_RT_NONE. */
const char *cgroup_runtime_name(enum cgroup_runtime rt);

struct cgroup_stats {
	uint64_t lookups;	/* cgroup_cache__lookup calls */
	uint64_t reads;		/* /proc/PID/cgroup files read (misses and expiries) */
	uint64_t read_errors;	/* the file could not be read (process gone, no /proc) */
	uint64_t evictions;	/* live entries dropped to make room */
};

struct cgroup_cache;

/*
 * A cache of identities by pid, reading proc_root/PID/cgroup (proc_root NULL:
 * "/proc"; the string is copied). NULL with errno set.
 */
struct cgroup_cache *cgroup_cache__new(const char *proc_root);

/*
 * The identity of pid at now_ns (CLOCK_MONOTONIC): from the cache when read
 * less than CGROUP_TTL_NS ago, else read again. Never NULL: a process that
 * cannot be read has an all-empty identity (cached too). The pointer is
 * valid until the next call on c; copy what you keep.
 */
const struct cgroup_ident *cgroup_cache__lookup(struct cgroup_cache *c, uint32_t pid,
						uint64_t now_ns);

/* The process exited: forget it (its pid may be reused by another process). */
void cgroup_cache__forget(struct cgroup_cache *c, uint32_t pid);

const struct cgroup_stats *cgroup_cache__stats(const struct cgroup_cache *c);

/* NULL-safe. */
void cgroup_cache__free(struct cgroup_cache *c);

#endif
