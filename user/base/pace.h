/* SPDX-License-Identifier: MIT */
#ifndef OBS_PACE_H
#define OBS_PACE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * The drain thread's share of the CPU (docs/design.md, "Pacing").
 *
 * While the ring buffer has room, the thread that drains it runs at nice 19
 * with a 100 us slice: a server that wakes on the same CPU gets it back
 * within one short slice, and obsd takes a small share of a busy CPU (all of
 * an idle one). When a drain starts with the ring PACE_RAISE full, obsd is
 * falling behind: the thread gets a fair share (nice 0, the default slice)
 * until a drain starts below PACE_LOWER. Both moves are one system call.
 *
 * The short slice needs Linux 6.12 (EEVDF's sched_runtime); older kernels
 * keep nice 19 and their default slice. Without CAP_SYS_NICE the thread could
 * not come back to nice 0, so pacing stays off.
 */
#define PACE_RAISE	0.375
#define PACE_LOWER	0.25

struct pace {
	bool on;		/* pace__start() succeeded */
	bool raised;		/* at a fair share now */
	bool slice;		/* the kernel took the short slice */
	uint64_t raises;	/* times the ring's fill raised the drain */
};

/* The calling thread starts low. 0, or -errno (pacing stays off). */
int pace__start(struct pace *pc);

/* At a drain's start, the ring's fill (0..1): raise or lower the thread. */
void pace__fill(struct pace *pc, double fill);

#endif
