// SPDX-License-Identifier: MIT
/*
 * bench-floor OBJ PROG PID: attach program PROG of the BPF object OBJ
 * (floor.bpf.c) alone, acting on the reads of process PID, drain its ring
 * every 20 ms until SIGINT/SIGTERM, then print "PROG RUNS RUN_TIME_NS HITS"
 * (kernel.bpf_stats_enabled must be 1 for the run time; HITS: the runs that
 * acted). Part of `make bench` (scripts/bench.sh, section 3b).
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

int main(int argc, char **argv)
{
	struct timespec tick = { .tv_nsec = 20 * 1000 * 1000 };
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct ring_buffer *rb;
	struct bpf_link *link;
	struct bpf_map *map, *ro, *bss;
	__u64 bss_val[1] = { 0 };
	__u32 zero = 0;
	__u32 tgid = strtoul(argc > 3 ? argv[3] : "0", NULL, 10);
	const void *ro_init;
	size_t ro_size;

	if (argc != 4) {
		fprintf(stderr, "usage: %s OBJ PROG PID\n", argv[0]);
		return 2;
	}
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
	prog = bpf_object__find_program_by_name(obj, argv[2]);
	map = bpf_object__find_map_by_name(obj, "rb");
	if (!prog || !map) {
		fprintf(stderr, "bench-floor: %s: no program %s or map rb\n", argv[1], argv[2]);
		return 1;
	}
	rb = ring_buffer__new(bpf_map__fd(map), on_record, NULL, NULL);
	link = bpf_program__attach(prog);
	if (!rb || !link) {
		fprintf(stderr, "bench-floor: cannot attach %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	fprintf(stderr, "bench-floor: %s attached\n", argv[2]);
	while (!stop) {
		nanosleep(&tick, NULL);
		ring_buffer__consume(rb);
	}
	bss = bpf_object__find_map_by_name(obj, ".bss");
	if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) || !bss ||
	    bpf_map_lookup_elem(bpf_map__fd(bss), &zero, bss_val)) {
		fprintf(stderr, "bench-floor: no program info: %s\n", strerror(errno));
		return 1;
	}
	printf("%s %llu %llu %llu\n", argv[2], (unsigned long long)info.run_cnt,
	       (unsigned long long)info.run_time_ns, (unsigned long long)bss_val[0]);
	bpf_link__destroy(link);
	ring_buffer__free(rb);
	bpf_object__close(obj);
	return 0;
}
