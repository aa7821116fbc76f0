// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/base/cgroup.c: /proc/PID/cgroup files as containerd, CRI-O,
 * docker and podman leave them (cgroup v1, v2 and hybrid; systemd and
 * cgroupfs drivers; guaranteed, burstable and besteffort pods), hosts'
 * own processes, malformed ids, every truncation point, and the pid cache
 * over a fake /proc. Inputs are copied into heap blocks of exactly their
 * size (no NUL) so AddressSanitizer catches a read past them.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cgroup.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#include "check.h"

/* Container ids and pod UIDs as runtimes and the kubelet generate them. */
#define ID1 "ddfe7146e6314a0e701dff07b8d47c25862b595cac26d03028cdab6d03445eab"
#define ID2 "1e6e8e2db8aaf57d0f4dc08e50a19896be2304e41c4f162de6031f20ac0681a7"
#define ID3 "79fbda193c6233662da0addeae2f9520bcc69f0194d78df11f6181047b7e1f27"
#define ID4 "d6bb8fb562fd737f4df66140caa99185069f3f85aa0173bcf4baef4e0e82603f"
#define UID1 "524634d1-d169-4e3d-a52d-4c5554ad0812"
#define UID1_ "524634d1_d169_4e3d_a52d_4c5554ad0812"
#define UID2 "43def8bf-3f40-42fc-8e06-fbc90ccb13c4"
#define UID2_ "43def8bf_3f40_42fc_8e06_fbc90ccb13c4"
#define STATIC_UID "7c1b087ae19d7323edac096d83f40b9f"	/* static pod: manifest hash */

/* cgroup v1 controllers of a typical node, each with the same path. */
#define V1(path)                                                                      \
	"12:hugetlb:" path "\n11:freezer:" path "\n10:cpuset:" path "\n9:devices:" path   \
	"\n8:memory:" path "\n7:net_cls,net_prio:" path "\n6:perf_event:" path            \
	"\n5:blkio:" path "\n4:cpu,cpuacct:" path "\n3:pids:" path "\n2:rdma:/\n"          \
	"1:name=systemd:" path "\n"

struct file_case {
	const char *name;
	const char *text;
	const char *id;		/* expected container id, "" for none */
	const char *pod;	/* expected pod UID, "" for none */
	enum cgroup_runtime rt;
};

static const struct file_case file_cases[] = {
	/* containerd */
	{ "containerd systemd v2 burstable",
	  "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID1_
	  ".slice/cri-containerd-" ID1 ".scope\n", ID1, UID1, CGROUP_RT_CONTAINERD },
	{ "containerd systemd v2 besteffort",
	  "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID2_
	  ".slice/cri-containerd-" ID2 ".scope\n", ID2, UID2, CGROUP_RT_CONTAINERD },
	{ "containerd systemd v2 guaranteed",
	  "0::/kubepods.slice/kubepods-pod" UID1_ ".slice/cri-containerd-" ID3 ".scope\n",
	  ID3, UID1, CGROUP_RT_CONTAINERD },
	{ "containerd systemd v1 multi-controller",
	  V1("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID2_
	     ".slice/cri-containerd-" ID4 ".scope") "0::/\n",
	  ID4, UID2, CGROUP_RT_CONTAINERD },
	{ "containerd cgroupfs v1 burstable (GKE, k3s)",
	  V1("/kubepods/burstable/pod" UID1 "/" ID1), ID1, UID1, CGROUP_RT_NONE },
	{ "containerd cgroupfs v1 besteffort",
	  V1("/kubepods/besteffort/pod" UID2 "/" ID2), ID2, UID2, CGROUP_RT_NONE },
	{ "containerd cgroupfs v2 guaranteed",
	  "0::/kubepods/pod" UID1 "/" ID3 "\n", ID3, UID1, CGROUP_RT_NONE },
	{ "containerd systemd/cgroupfs driver mismatch",
	  "0::/system.slice/containerd.service/kubepods-burstable-pod" UID2_
	  ".slice:cri-containerd:" ID4 "\n", ID4, UID2, CGROUP_RT_CONTAINERD },
	{ "containerd seen from a private cgroup namespace",
	  "0::/../../../kubepods-besteffort.slice/kubepods-besteffort-pod" UID1_
	  ".slice/cri-containerd-" ID1 ".scope\n", ID1, UID1, CGROUP_RT_CONTAINERD },
	{ "static pod (UID is a hash)",
	  V1("/kubepods/burstable/pod" STATIC_UID "/" ID2), ID2, STATIC_UID, CGROUP_RT_NONE },
	{ "static pod, systemd driver",
	  "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" STATIC_UID
	  ".slice/cri-containerd-" ID2 ".scope\n", ID2, STATIC_UID, CGROUP_RT_CONTAINERD },
	/* CRI-O */
	{ "cri-o systemd v2 burstable (OpenShift)",
	  "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID2_
	  ".slice/crio-" ID3 ".scope\n", ID3, UID2, CGROUP_RT_CRIO },
	{ "cri-o systemd v1",
	  V1("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID1_
	     ".slice/crio-" ID4 ".scope"), ID4, UID1, CGROUP_RT_CRIO },
	{ "cri-o cgroupfs v1",
	  V1("/kubepods/burstable/pod" UID2 "/crio-" ID1), ID1, UID2, CGROUP_RT_CRIO },
	{ "cri-o conmon is not the container",
	  "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID2_
	  ".slice/crio-conmon-" ID3 ".scope\n", "", UID2, CGROUP_RT_NONE },
	/* docker */
	{ "docker systemd v2",
	  "0::/system.slice/docker-" ID2 ".scope\n", ID2, "", CGROUP_RT_DOCKER },
	{ "docker cgroupfs v1 (hybrid host)",
	  V1("/docker/" ID3) "0::/system.slice/containerd.service\n", ID3, "", CGROUP_RT_DOCKER },
	{ "docker in docker: the innermost",
	  "0::/docker/" ID1 "/docker/" ID4 "\n", ID4, "", CGROUP_RT_DOCKER },
	{ "kubernetes with docker, systemd driver",
	  V1("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID1_
	     ".slice/docker-" ID2 ".scope"), ID2, UID1, CGROUP_RT_DOCKER },
	/* podman */
	{ "podman rootful systemd v2",
	  "0::/machine.slice/libpod-" ID4 ".scope\n", ID4, "", CGROUP_RT_PODMAN },
	{ "podman rootless v2 (container subgroup)",
	  "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" ID1
	  ".scope/container\n", ID1, "", CGROUP_RT_PODMAN },
	{ "podman cgroupfs v1",
	  V1("/libpod_parent/libpod-" ID3), ID3, "", CGROUP_RT_PODMAN },
	{ "podman conmon is not the container",
	  "0::/machine.slice/libpod-conmon-" ID3 ".scope\n", "", "", CGROUP_RT_NONE },
	/* other runtimes: a bare id */
	{ "ECS task (bare id)",
	  V1("/ecs/" STATIC_UID "/" ID2), ID2, "", CGROUP_RT_NONE },
	/* not containers */
	{ "host service", "0::/system.slice/sshd.service\n", "", "", CGROUP_RT_NONE },
	{ "host session", "0::/user.slice/user-0.slice/session-3.scope\n", "", "", CGROUP_RT_NONE },
	{ "host root v2", "0::/\n", "", "", CGROUP_RT_NONE },
	{ "host v1 with a 32-hex group",
	  "9:name=systemd:/\n4:memory:/process_api/81895baaf75964a9974f88d4e09a0b09\n0::/\n",
	  "", "", CGROUP_RT_NONE },
	{ "kubelet itself", "0::/system.slice/kubelet.service\n", "", "", CGROUP_RT_NONE },
	{ "empty file", "", "", "", CGROUP_RT_NONE },
	/* malformed ids and uids */
	{ "uppercase hex is no id",
	  "0::/system.slice/docker-DDFE7146E6314A0E701DFF07B8D47C25862B595CAC26D03028CDAB6D03445EAB"
	  ".scope\n", "", "", CGROUP_RT_NONE },
	{ "63 hex digits",
	  "0::/system.slice/docker-"
	  "ddfe7146e6314a0e701dff07b8d47c25862b595cac26d03028cdab6d03445ea.scope\n", "", "",
	  CGROUP_RT_NONE },
	{ "65 hex digits", "0::/docker/" ID1 "0\n", "", "", CGROUP_RT_NONE },
	{ "pod without kubepods is no pod",
	  "0::/custom/pod" UID1 "/" ID1 "\n", ID1, "", CGROUP_RT_NONE },
	{ "mixed separators are no uid",
	  "0::/kubepods/burstable/pod524634d1-d169_4e3d-a52d-4c5554ad0812/" ID1 "\n", ID1, "",
	  CGROUP_RT_NONE },
	{ "xpod is no pod",
	  "0::/kubepods/burstable/xpod" UID1 "/" ID1 "\n", ID1, "", CGROUP_RT_NONE },
	{ "incomplete last line ignored",
	  "0::/system.slice/docker-" ID1 ".scope", "", "", CGROUP_RT_NONE },
	{ "garbage lines ignored",
	  "no colons here\n:\n\n0::/system.slice/docker-" ID2 ".scope\n", ID2, "",
	  CGROUP_RT_DOCKER },
	/* which line wins */
	{ "v2 line before v1 lines",
	  "3:pids:/docker/" ID1 "\n0::/system.slice/docker-" ID2 ".scope\n", ID2, "",
	  CGROUP_RT_DOCKER },
	{ "first v1 line with an id",
	  "5:cpu:/\n4:memory:/docker/" ID3 "\n3:pids:/docker/" ID4 "\n0::/\n", ID3, "",
	  CGROUP_RT_DOCKER },
	{ "pod uid from another line",
	  "4:memory:/kubepods/besteffort/pod" UID2 "\n3:pids:/docker/" ID1 "\n", ID1, UID2,
	  CGROUP_RT_DOCKER },
	{ "pod uid only (pod cgroup, no container)",
	  "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID1_ ".slice\n",
	  "", UID1, CGROUP_RT_NONE },
};

/* A heap copy of exactly n bytes: reading past it is an ASan error. */
static char *exact_copy(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	if (!p)
		abort();
	memcpy(p, s, n);
	return p;
}

static void test_files(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(file_cases); i++) {
		const struct file_case *c = &file_cases[i];
		size_t n = strlen(c->text);
		char *buf = exact_copy(c->text, n);
		struct cgroup_ident id;
		bool found;

		cur_case = c->name;
		memset(&id, 0xa5, sizeof(id));
		found = cgroup_parse_file(buf, n, &id);
		CHECK(found == (c->id[0] != 0));
		CHECK_S(id.container_id, c->id);
		CHECK_S(id.pod_uid, c->pod);
		CHECK_U(id.runtime, c->rt);
		free(buf);
	}
}

/*
 * Every prefix of every file: no read past it, an incomplete last line is
 * never taken, and the id found is one the text holds.
 */
static void test_truncations(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(file_cases); i++) {
		const struct file_case *c = &file_cases[i];
		size_t n = strlen(c->text);

		cur_case = c->name;
		for (size_t k = 0; k <= n; k++) {
			char *buf = exact_copy(c->text, k);
			struct cgroup_ident id;
			const char *hit;

			if (cgroup_parse_file(buf, k, &id)) {
				hit = memmem(buf, k, id.container_id, CGROUP_ID_LEN);
				CHECK(hit && memchr(hit, '\n', buf + k - hit));
			} else {
				CHECK_S(id.container_id, "");
			}
			CHECK(strlen(id.pod_uid) == 0 || strlen(id.pod_uid) == 32 ||
			      strlen(id.pod_uid) == 36);
			free(buf);
		}
	}
}

struct path_case {
	const char *name;
	const char *path;
	const char *id;
	const char *pod;
	enum cgroup_runtime rt;
};

static const struct path_case path_cases[] = {
	{ "scope suffix optional for crio", "/kubepods/pod" UID1 "/crio-" ID1, ID1, UID1,
	  CGROUP_RT_CRIO },
	{ "docker parent gives runtime", "/docker/" ID2, ID2, "", CGROUP_RT_DOCKER },
	{ "relative path", "../" ID3, ID3, "", CGROUP_RT_NONE },
	{ "trailing slash", "/system.slice/docker-" ID4 ".scope/", ID4, "", CGROUP_RT_DOCKER },
	{ "empty path", "", "", "", CGROUP_RT_NONE },
	{ "root", "/", "", "", CGROUP_RT_NONE },
	{ "only separators", "//::/", "", "", CGROUP_RT_NONE },
	{ "prefix without id", "/system.slice/docker-.scope", "", "", CGROUP_RT_NONE },
	{ "id-shaped .slice is no container", "/docker-" ID1 ".slice", "", "", CGROUP_RT_NONE },
	{ "pod and kubepods in one component", "/kubepods-pod" UID2_ ".slice", "", UID2,
	  CGROUP_RT_NONE },
};

static void test_paths(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(path_cases); i++) {
		const struct path_case *c = &path_cases[i];
		size_t n = strlen(c->path);
		char *buf = exact_copy(c->path, n);
		struct cgroup_ident id;

		cur_case = c->name;
		CHECK(cgroup_parse_path(buf, n, &id) == (c->id[0] != 0));
		CHECK_S(id.container_id, c->id);
		CHECK_S(id.pod_uid, c->pod);
		CHECK_U(id.runtime, c->rt);
		/* every prefix of the path: no crash, no read past it */
		for (size_t k = 0; k < n; k++) {
			char *pre = exact_copy(c->path, k);

			cgroup_parse_path(pre, k, &id);
			free(pre);
		}
		free(buf);
	}
}

static void test_runtime_names(void)
{
	cur_case = "runtime names";
	CHECK_S(cgroup_runtime_name(CGROUP_RT_CONTAINERD), "containerd");
	CHECK_S(cgroup_runtime_name(CGROUP_RT_CRIO), "cri-o");
	CHECK_S(cgroup_runtime_name(CGROUP_RT_DOCKER), "docker");
	CHECK_S(cgroup_runtime_name(CGROUP_RT_PODMAN), "podman");
	CHECK_S(cgroup_runtime_name(CGROUP_RT_NONE), "");
}

/* ---- the cache, over a fake /proc in a temporary directory ---- */

static char proc_root[64];

static void write_cgroup(uint32_t pid, const char *text)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%u", proc_root, pid);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%u/cgroup", proc_root, pid);
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f)) {
		perror(path);
		exit(1);
	}
}

#define SEC 1000000000ull

static void test_cache(void)
{
	const struct cgroup_ident *id;
	struct cgroup_cache *c;
	uint64_t t = 1000 * SEC;

	cur_case = "cache";
	snprintf(proc_root, sizeof(proc_root), "/tmp/obs-test-cgroup.XXXXXX");
	if (!mkdtemp(proc_root)) {
		perror("mkdtemp");
		exit(1);
	}
	c = cgroup_cache__new(proc_root);
	if (!CHECK(c != NULL))
		return;
	write_cgroup(100, "0::/system.slice/docker-" ID1 ".scope\n");
	id = cgroup_cache__lookup(c, 100, t);
	CHECK_S(id->container_id, ID1);
	CHECK_U(cgroup_cache__stats(c)->reads, 1);

	/* cached: a change of the file is not seen before the TTL */
	write_cgroup(100, "0::/system.slice/docker-" ID2 ".scope\n");
	id = cgroup_cache__lookup(c, 100, t + CGROUP_TTL_NS - 1);
	CHECK_S(id->container_id, ID1);
	CHECK_U(cgroup_cache__stats(c)->reads, 1);
	/* expired: read again */
	id = cgroup_cache__lookup(c, 100, t + CGROUP_TTL_NS);
	CHECK_S(id->container_id, ID2);
	CHECK_U(cgroup_cache__stats(c)->reads, 2);

	/* forget (process exit, pid reused): read at once */
	write_cgroup(100, "0::/user.slice/user-0.slice/session-1.scope\n");
	cgroup_cache__forget(c, 100);
	id = cgroup_cache__lookup(c, 100, t + CGROUP_TTL_NS + 1);
	CHECK_S(id->container_id, "");
	CHECK_U(cgroup_cache__stats(c)->reads, 3);

	/* a process that is gone: empty, counted, and cached */
	id = cgroup_cache__lookup(c, 424242, t);
	CHECK_S(id->container_id, "");
	CHECK_S(id->pod_uid, "");
	CHECK_U(cgroup_cache__stats(c)->read_errors, 1);
	cgroup_cache__lookup(c, 424242, t + 1);
	CHECK_U(cgroup_cache__stats(c)->read_errors, 1);

	/* pid 0 is nobody */
	CHECK_S(cgroup_cache__lookup(c, 0, t)->container_id, "");
	cgroup_cache__free(c);
}

/* More pids than slots: bounded, evicts, and every answer is still right. */
static void test_cache_bounded(void)
{
	const uint32_t n = CGROUP_CACHE_SLOTS * 2;
	struct cgroup_cache *c = cgroup_cache__new(proc_root);
	uint64_t t = 5 * SEC;
	char text[256];
	bool all_ok = true;

	cur_case = "cache bounded";
	if (!CHECK(c != NULL))
		return;
	for (uint32_t pid = 1000; pid < 1000 + n; pid++) {
		snprintf(text, sizeof(text), "0::/kubepods/besteffort/pod" UID1 "/%064x\n", pid);
		write_cgroup(pid, text);
	}
	for (int round = 0; round < 2; round++) {
		for (uint32_t pid = 1000; pid < 1000 + n; pid++) {
			const struct cgroup_ident *id = cgroup_cache__lookup(c, pid, t++);
			char want[CGROUP_ID_LEN + 1];

			snprintf(want, sizeof(want), "%064x", pid);
			all_ok &= !strcmp(id->container_id, want) && !strcmp(id->pod_uid, UID1);
		}
	}
	CHECK(all_ok);
	CHECK(cgroup_cache__stats(c)->evictions > 0);
	CHECK_U(cgroup_cache__stats(c)->lookups, 2 * n);
	cgroup_cache__free(c);
}

/* The real /proc/self/cgroup: the cache answers what the parser says. */
static void test_self(void)
{
	struct cgroup_cache *c = cgroup_cache__new(NULL);
	struct cgroup_ident want;
	char buf[CGROUP_FILE_MAX];
	FILE *f = fopen("/proc/self/cgroup", "r");
	size_t n;

	cur_case = "/proc/self/cgroup";
	if (!CHECK(c != NULL) || !CHECK(f != NULL))
		goto out;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	cgroup_parse_file(buf, n, &want);
	CHECK_S(cgroup_cache__lookup(c, getpid(), 1)->container_id, want.container_id);
	CHECK_U(cgroup_cache__stats(c)->read_errors, 0);
out:
	if (f)
		fclose(f);
	cgroup_cache__free(c);
}

static void test_long_root(void)
{
	char root[512];

	cur_case = "proc root too long";
	memset(root, 'x', sizeof(root) - 1);
	root[0] = '/';
	root[sizeof(root) - 1] = 0;
	errno = 0;
	CHECK(cgroup_cache__new(root) == NULL);
	CHECK_U(errno, ENAMETOOLONG);
}

static void rm_fake_proc(void)
{
	char cmd[128];

	if (proc_root[0] && !strncmp(proc_root, "/tmp/obs-test-cgroup.", 21)) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", proc_root);
		if (system(cmd))
			fprintf(stderr, "cannot remove %s\n", proc_root);
	}
}

int main(void)
{
	test_files();
	test_truncations();
	test_paths();
	test_runtime_names();
	test_cache();
	test_cache_bounded();
	test_self();
	rm_fake_proc();
	test_long_root();
	printf("test_cgroup: %d checks, %d failed\n", n_checks, n_failed);
	return n_failed ? 1 : 0;
}
