// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/cgroup.h"

#define UUID_LEN	36
#define STATIC_UID_LEN	32	/* static pods: the manifest's hash as UID */

struct slot {
	uint32_t pid;		/* 0 = free */
	uint64_t read_ns;	/* when id was read */
	struct cgroup_ident id;
};

struct cgroup_cache {
	char proc_root[256];
	struct slot slots[CGROUP_CACHE_SLOTS];
	struct cgroup_stats st;
};

/* One token of a path: a '/' component, or a ':' part of one. */
struct tok {
	const char *s;
	size_t n;
};

static const struct {
	const char *prefix;
	enum cgroup_runtime rt;
} id_prefixes[] = {
	{ "cri-containerd-", CGROUP_RT_CONTAINERD },
	{ "crio-", CGROUP_RT_CRIO },
	{ "docker-", CGROUP_RT_DOCKER },
	{ "libpod-", CGROUP_RT_PODMAN },
};

/* A bare id's runtime, from the token before it ("…:cri-containerd:<id>", "/docker/<id>"). */
static const struct {
	const char *parent;
	enum cgroup_runtime rt;
} id_parents[] = {
	{ "cri-containerd", CGROUP_RT_CONTAINERD },
	{ "crio", CGROUP_RT_CRIO },
	{ "docker", CGROUP_RT_DOCKER },
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

const char *cgroup_runtime_name(enum cgroup_runtime rt)
{
	switch (rt) {
	case CGROUP_RT_CONTAINERD:
		return "containerd";
	case CGROUP_RT_CRIO:
		return "cri-o";
	case CGROUP_RT_DOCKER:
		return "docker";
	case CGROUP_RT_PODMAN:
		return "podman";
	case CGROUP_RT_NONE:
		break;
	}
	return "";
}

static bool is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool tok_is(const struct tok *t, const char *s)
{
	return t->n == strlen(s) && !memcmp(t->s, s, t->n);
}

static size_t strip_suffix(const struct tok *t, const char *suffix)
{
	size_t l = strlen(suffix);

	if (t->n > l && !memcmp(t->s + t->n - l, suffix, l))
		return t->n - l;
	return t->n;
}

/* The runtime of a container-id token, given the token before it; false if it is none. */
static bool match_id(const struct tok *t, const struct tok *prev, struct cgroup_ident *id)
{
	size_t n = strip_suffix(t, ".scope");
	enum cgroup_runtime rt = CGROUP_RT_NONE;
	const char *hex = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(id_prefixes); i++) {
		size_t pl = strlen(id_prefixes[i].prefix);

		if (n == pl + CGROUP_ID_LEN && !memcmp(t->s, id_prefixes[i].prefix, pl)) {
			hex = t->s + pl;
			rt = id_prefixes[i].rt;
			break;
		}
	}
	if (!hex && n == CGROUP_ID_LEN) {
		hex = t->s;
		for (size_t i = 0; prev && i < ARRAY_SIZE(id_parents); i++)
			if (tok_is(prev, id_parents[i].parent))
				rt = id_parents[i].rt;
	}
	if (!hex || !is_hex(hex, CGROUP_ID_LEN))
		return false;
	memcpy(id->container_id, hex, CGROUP_ID_LEN);
	id->container_id[CGROUP_ID_LEN] = 0;
	id->runtime = rt;
	return true;
}

/* 8-4-4-4-12 lowercase hex with sep ('-' or '_') between the groups. */
static bool is_uuid(const char *s, char sep)
{
	static const int dash_at[] = { 8, 13, 18, 23 };
	int d = 0;

	for (int i = 0; i < UUID_LEN; i++) {
		if (d < 4 && i == dash_at[d]) {
			if (s[i] != sep)
				return false;
			d++;
		} else if (!is_hex(s + i, 1)) {
			return false;
		}
	}
	return true;
}

/* The ul-character UID ending a token of n bytes after "pod" (token start or "-pod"), or NULL. */
static const char *uid_at(const struct tok *t, size_t n, size_t ul)
{
	const char *uid;

	if (n < ul + 3)
		return NULL;
	uid = t->s + n - ul;
	if (memcmp(uid - 3, "pod", 3) || (uid - 3 != t->s && uid[-4] != '-'))
		return NULL;
	if (ul == STATIC_UID_LEN)
		return is_hex(uid, ul) ? uid : NULL;
	return is_uuid(uid, '-') || is_uuid(uid, '_') ? uid : NULL;
}

/* "pod<uid>", "kubepods-pod<uid>.slice", "kubepods-burstable-pod<u_i_d>.slice". */
static bool match_pod(const struct tok *t, char *out)
{
	size_t n = strip_suffix(t, ".slice"), ul = UUID_LEN;
	const char *uid = uid_at(t, n, ul);

	if (!uid) {
		ul = STATIC_UID_LEN;
		uid = uid_at(t, n, ul);
	}
	if (!uid)
		return false;
	for (size_t i = 0; i < ul; i++)
		out[i] = uid[i] == '_' ? '-' : uid[i];
	out[ul] = 0;
	return true;
}

static bool has_kubepods(const char *s, size_t n)
{
	return memmem(s, n, "kubepods", 8) != NULL;
}

bool cgroup_parse_path(const char *path, size_t len, struct cgroup_ident *id)
{
	bool kube = has_kubepods(path, len), found = false;
	struct tok prev = { NULL, 0 }, t;
	const char *p = path, *end = path + len;

	memset(id, 0, sizeof(*id));
	while (p < end) {
		const char *q = p;

		while (q < end && *q != '/' && *q != ':')
			q++;
		t.s = p;
		t.n = q - p;
		if (t.n) {
			found |= match_id(&t, prev.s ? &prev : NULL, id);
			if (kube)
				match_pod(&t, id->pod_uid);
			prev = t;
		}
		p = q + 1;
	}
	return found;
}

/* Split one line "ID:controllers:path"; false when it is not of that form. */
static bool split_line(const char *l, size_t n, bool *v2, const char **path, size_t *plen)
{
	const char *c1 = memchr(l, ':', n), *c2;

	if (!c1)
		return false;
	c2 = memchr(c1 + 1, ':', l + n - c1 - 1);
	if (!c2)
		return false;
	*v2 = c1 - l == 1 && l[0] == '0' && c2 == c1 + 1;
	*path = c2 + 1;
	*plen = l + n - c2 - 1;
	return true;
}

bool cgroup_parse_file(const char *text, size_t len, struct cgroup_ident *id)
{
	char pod[CGROUP_POD_UID_MAX + 1] = "";
	struct cgroup_ident cur;

	memset(id, 0, sizeof(*id));
	for (int pass = 0; pass < 2; pass++) {	/* 0: the v2 line, 1: v1 lines */
		const char *p = text, *end = text + len;

		while (p < end) {
			const char *nl = memchr(p, '\n', end - p), *path;
			size_t plen;
			bool v2;

			if (!nl)
				break;	/* incomplete last line */
			if (split_line(p, nl - p, &v2, &path, &plen) && v2 == (pass == 0)) {
				bool has_id = cgroup_parse_path(path, plen, &cur);

				if (!pod[0] && cur.pod_uid[0])
					memcpy(pod, cur.pod_uid, sizeof(pod));
				if (has_id) {
					*id = cur;
					if (!id->pod_uid[0])
						memcpy(id->pod_uid, pod, sizeof(pod));
					return true;
				}
			}
			p = nl + 1;
		}
	}
	memcpy(id->pod_uid, pod, sizeof(pod));
	return false;
}

/* ---- cache ---- */

struct cgroup_cache *cgroup_cache__new(const char *proc_root)
{
	struct cgroup_cache *c;

	if (!proc_root)
		proc_root = "/proc";
	if (strlen(proc_root) >= sizeof(c->proc_root)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		strcpy(c->proc_root, proc_root);
	return c;
}

void cgroup_cache__free(struct cgroup_cache *c)
{
	free(c);
}

const struct cgroup_stats *cgroup_cache__stats(const struct cgroup_cache *c)
{
	return &c->st;
}

/* Read proc_root/PID/cgroup into buf (NUL-terminated); bytes read or -errno. */
static ssize_t read_cgroup_file(const struct cgroup_cache *c, uint32_t pid, char *buf, size_t n)
{
	char path[sizeof(c->proc_root) + 32];
	size_t got = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%u/cgroup", c->proc_root, pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (got < n - 1) {
		ssize_t r = read(fd, buf + got, n - 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			r = -errno;
			close(fd);
			return r;
		}
		if (r == 0)
			break;
		got += r;
	}
	close(fd);
	buf[got] = 0;
	return got;
}

static void fill(struct cgroup_cache *c, struct slot *s, uint32_t pid, uint64_t now_ns)
{
	char buf[CGROUP_FILE_MAX];
	ssize_t n;

	c->st.reads++;
	s->pid = pid;
	s->read_ns = now_ns;
	n = read_cgroup_file(c, pid, buf, sizeof(buf));
	if (n < 0) {
		c->st.read_errors++;
		memset(&s->id, 0, sizeof(s->id));
		return;
	}
	cgroup_parse_file(buf, n, &s->id);
}

const struct cgroup_ident *cgroup_cache__lookup(struct cgroup_cache *c, uint32_t pid,
						uint64_t now_ns)
{
	static const struct cgroup_ident none;
	size_t h = (pid * 2654435761u) & (CGROUP_CACHE_SLOTS - 1);
	struct slot *free_slot = NULL, *oldest = NULL;

	c->st.lookups++;
	if (!pid)
		return &none;
	for (size_t i = 0; i < CGROUP_CACHE_PROBE; i++) {
		struct slot *s = &c->slots[(h + i) & (CGROUP_CACHE_SLOTS - 1)];

		if (s->pid == pid) {
			if (now_ns - s->read_ns >= CGROUP_TTL_NS)
				fill(c, s, pid, now_ns);
			return &s->id;
		}
		if (!s->pid && !free_slot)
			free_slot = s;
		if (s->pid && (!oldest || s->read_ns < oldest->read_ns))
			oldest = s;
	}
	if (!free_slot) {
		free_slot = oldest;
		c->st.evictions++;
	}
	fill(c, free_slot, pid, now_ns);
	return &free_slot->id;
}

void cgroup_cache__forget(struct cgroup_cache *c, uint32_t pid)
{
	size_t h = (pid * 2654435761u) & (CGROUP_CACHE_SLOTS - 1);

	for (size_t i = 0; pid && i < CGROUP_CACHE_PROBE; i++) {
		struct slot *s = &c->slots[(h + i) & (CGROUP_CACHE_SLOTS - 1)];

		if (s->pid == pid)
			s->pid = 0;
	}
}
