// SPDX-License-Identifier: MIT
/*
 * Unit tests of user/base/pace.c against the running kernel: pacing puts the
 * calling thread at nice 19 with a 100 us slice (where the kernel takes one),
 * a fill of PACE_RAISE gives it nice 0 and the default slice back once, a fill
 * between PACE_LOWER and PACE_RAISE changes nothing either way, and a fill
 * below PACE_LOWER lowers it again. Each case runs in a thread of its own, so
 * the test's own thread keeps its priority. As root (make unit); without
 * CAP_SYS_NICE pace__start() must refuse and leave the thread alone.
 * main() returns 1 if any check failed.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "base/pace.h"
#include "check.h"

struct attr {	/* the kernel's struct sched_attr, first version */
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};

/* The calling thread's nice and slice (0 when the kernel reports none). */
static void now(int *nice, uint64_t *slice)
{
	struct attr a = { 0 };

	*nice = -100;
	*slice = 0;
	if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0))
		return;
	*nice = a.nice;
	*slice = a.runtime;
}

static bool slice_taken;	/* the first case learns whether the kernel has custom slices */

static void *cycle(void *arg)
{
	struct pace pc;
	uint64_t slice, def_slice;
	int nice, err;

	begin("raise and lower");
	now(&nice, &def_slice);
	CHECK_U(nice, 0);
	err = pace__start(&pc);
	if (!CHECK(!err && pc.on))
		return NULL;
	slice_taken = pc.slice;
	now(&nice, &slice);
	CHECK_U(nice, 19);
	if (pc.slice)
		CHECK_U(slice, 100000);
	pace__fill(&pc, PACE_LOWER);		/* between: stays low */
	now(&nice, &slice);
	CHECK_U(nice, 19);
	CHECK(!pc.raised);
	pace__fill(&pc, PACE_RAISE);		/* falling behind: fair share */
	now(&nice, &slice);
	CHECK_U(nice, 0);
	CHECK_U(slice, def_slice);
	CHECK(pc.raised);
	CHECK_U(pc.raises, 1);
	pace__fill(&pc, PACE_RAISE + 0.1);	/* still behind: no second raise */
	pace__fill(&pc, PACE_LOWER);		/* between: stays raised */
	now(&nice, &slice);
	CHECK_U(nice, 0);
	CHECK_U(pc.raises, 1);
	pace__fill(&pc, PACE_LOWER - 0.01);	/* caught up: low again */
	now(&nice, &slice);
	CHECK_U(nice, 19);
	if (pc.slice)
		CHECK_U(slice, 100000);
	CHECK(!pc.raised);
	pace__fill(&pc, 1.0);
	CHECK_U(pc.raises, 2);
	return NULL;
}

/* A policy pacing does not apply to: refused, the thread left alone. */
static void *idle_policy(void *arg)
{
	struct sched_param sp = { 0 };
	struct pace pc;
	int nice;
	uint64_t slice;

	begin("idle policy refused");
	if (!CHECK(!sched_setscheduler(0, SCHED_IDLE, &sp)))
		return NULL;
	CHECK_U(-pace__start(&pc), EINVAL);
	CHECK(!pc.on);
	pace__fill(&pc, 1.0);
	CHECK_U(pc.raises, 0);
	now(&nice, &slice);
	CHECK_U(nice, 0);
	return NULL;
}

static void run(void *(*fn)(void *))
{
	pthread_t t;

	if (CHECK(!pthread_create(&t, NULL, fn, NULL)))
		pthread_join(t, NULL);
}

int main(void)
{
	run(cycle);
	run(idle_policy);
	printf("test_pace: %d cases, %d checks, %d failed (custom slice %s)\n", n_cases,
	       n_checks, n_failed, slice_taken ? "taken" : "not taken by this kernel");
	return n_failed ? 1 : 0;
}
