// SPDX-License-Identifier: MIT
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include "base/pace.h"

#define PACE_NICE	19
#define PACE_SLICE_NS	(100ull * 1000ull)	/* the least the kernel takes */
#define CAP_SYS_NICE_BIT 23

/* The first version of the kernel's struct sched_attr (glibc 2.36 has none). */
struct sched_attr0 {
	uint32_t size;
	uint32_t policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime;	/* fair policies, Linux 6.12+: the slice */
	uint64_t deadline;
	uint64_t period;
};

static int set(int nice, uint64_t slice_ns)
{
	struct sched_attr0 a = {
		.size = sizeof(a), .policy = sched_getscheduler(0), .nice = nice,
		.runtime = slice_ns,
	};

	return syscall(SYS_sched_setattr, 0, &a, 0) ? -errno : 0;
}

/* Can this thread go back to nice 0 once at 19? */
static bool may_raise(void)
{
	char line[256];
	unsigned long long caps = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &caps) == 1)
			break;
	fclose(f);
	return caps >> CAP_SYS_NICE_BIT & 1;
}

int pace__start(struct pace *pc)
{
	int policy = sched_getscheduler(0), err;

	memset(pc, 0, sizeof(*pc));
	if (policy != SCHED_OTHER && policy != SCHED_BATCH)
		return -EINVAL;
	if (!may_raise())
		return -EPERM;
	err = set(PACE_NICE, PACE_SLICE_NS);
	pc->slice = !err;
	if (err == -EINVAL)	/* before 6.12: a fair policy takes no runtime */
		err = set(PACE_NICE, 0);
	pc->on = !err;
	return err;
}

void pace__fill(struct pace *pc, double fill)
{
	if (!pc->on)
		return;
	if (!pc->raised && fill >= PACE_RAISE) {
		if (!set(0, 0)) {
			pc->raised = true;
			pc->raises++;
		}
	} else if (pc->raised && fill < PACE_LOWER) {
		if (!set(PACE_NICE, pc->slice ? PACE_SLICE_NS : 0))
			pc->raised = false;
	}
}
