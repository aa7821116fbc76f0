/* SPDX-License-Identifier: MIT */
/* clock — the two clocks obs reads: CLOCK_MONOTONIC for timeouts and
 * durations (the kernel's bpf_ktime_get_ns, so records and timers agree) and
 * the realtime offset that turns it into wall-clock time. */
#ifndef OBS_CLOCK_H
#define OBS_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC now, in ns. */
uint64_t mono_ns(void);

/* CLOCK_REALTIME - CLOCK_MONOTONIC now, in ns: add it to a monotonic time. */
int64_t wall_offset_ns(void);

#endif
