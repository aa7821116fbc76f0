// SPDX-License-Identifier: MIT
/*
 * bench-floor OBJ PROGS PID: attach the programs PROGS (comma-separated) of
 * the BPF object OBJ (floor.bpf.c), acting on the socket I/O of process PID,
 * drain the ring every 20 ms until SIGINT/SIGTERM, then print a line
 * "PROG RUNS RUN_TIME_NS" per program and "hits HITS" (the runs that acted);
 * kernel.bpf_stats_enabled must be 1 for the run time. Part of `make bench`
 * (scripts/bench.sh, section 3b).
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
}

static int on_record(void *ctx, void *data, size_t size)
{
	return 0;
}

#define MAX_PROGS	8

int main(int argc, char **argv)
{
	struct timespec tick = { .tv_nsec = 20 * 1000 * 1000 };
	struct bpf_program *progs[MAX_PROGS];
	struct bpf_map *map, *ro, *bss;
	__u64 bss_val[1] = { 0 };
	struct bpf_object *obj;
	struct ring_buffer *rb;
	const void *ro_init;
	int n = 0, err = 0;
	char *names, *name;
	__u32 zero = 0;
	size_t ro_size;
	__u32 tgid;

	if (argc != 4) {
		fprintf(stderr, "usage: %s OBJ PROG[,PROG...] PID\n", argv[0]);
		return 2;
	}
	tgid = strtoul(argv[3], NULL, 10);
	obj = bpf_object__open_file(argv[1], NULL);
	ro = obj ? bpf_object__find_map_by_name(obj, ".rodata") : NULL;
	ro_init = ro ? bpf_map__initial_value(ro, &ro_size) : NULL;
	/* target_tgid is alone in .rodata */
	if (!ro_init || ro_size != sizeof(tgid) || bpf_map__set_initial_value(ro, &tgid, sizeof(tgid))) {
		fprintf(stderr, "bench-floor: cannot open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "bench-floor: cannot load %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	map = bpf_object__find_map_by_name(obj, "rb");
	rb = map ? ring_buffer__new(bpf_map__fd(map), on_record, NULL, NULL) : NULL;
	if (!rb) {
		fprintf(stderr, "bench-floor: %s: no ring: %s\n", argv[1], strerror(errno));
		return 1;
	}
	names = strdup(argv[2]);
	for (name = strtok(names, ","); name && n < MAX_PROGS; name = strtok(NULL, ",")) {
		progs[n] = bpf_object__find_program_by_name(obj, name);
		if (!progs[n] || !bpf_program__attach(progs[n])) {
			fprintf(stderr, "bench-floor: cannot attach %s: %s\n", name, strerror(errno));
			return 1;
		}
		n++;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	fprintf(stderr, "bench-floor: %s attached, acting on pid %u\n", argv[2], tgid);
	while (!stop) {
		nanosleep(&tick, NULL);
		ring_buffer__consume(rb);
	}
	for (int i = 0; i < n; i++) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (bpf_obj_get_info_by_fd(bpf_program__fd(progs[i]), &info, &len)) {
			err = 1;
			continue;
		}
		printf("%s %llu %llu\n", bpf_program__name(progs[i]),
		       (unsigned long long)info.run_cnt, (unsigned long long)info.run_time_ns);
	}
	bss = bpf_object__find_map_by_name(obj, ".bss");
	if (!bss || bpf_map_lookup_elem(bpf_map__fd(bss), &zero, bss_val))
		err = 1;
	printf("hits %llu\n", (unsigned long long)bss_val[0]);
	if (err)
		fprintf(stderr, "bench-floor: no program info: %s\n", strerror(errno));
	ring_buffer__free(rb);
	bpf_object__close(obj);	/* detaches: the links are the object's */
	free(names);
	return err;
}
