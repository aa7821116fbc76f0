// SPDX-License-Identifier: MIT
/*
 * bench-floor OBJ PROG: attach program PROG of the BPF object OBJ
 * (floor.bpf.c) alone, drain its ring every 20 ms until SIGINT/SIGTERM, then
 * print "PROG RUNS RUN_TIME_NS" (kernel.bpf_stats_enabled must be 1 for the
 * run time). Part of `make bench` (scripts/bench.sh, section 3b).
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
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
	struct bpf_map *map;

	if (argc != 3) {
		fprintf(stderr, "usage: %s OBJ PROG\n", argv[0]);
		return 2;
	}
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || bpf_object__load(obj)) {
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
	if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len)) {
		fprintf(stderr, "bench-floor: no program info: %s\n", strerror(errno));
		return 1;
	}
	printf("%s %llu %llu\n", argv[2], (unsigned long long)info.run_cnt,
	       (unsigned long long)info.run_time_ns);
	bpf_link__destroy(link);
	ring_buffer__free(rb);
	bpf_object__close(obj);
	return 0;
}
