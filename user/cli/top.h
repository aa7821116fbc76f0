/* SPDX-License-Identifier: MIT */
/*
 * top — `obsctl top`: a live latency table with one row per (service, method,
 * route): requests/s, p50/p90/p99/max latency, error %, requests in flight
 * and bytes/s over a sliding window, with a header of totals and the event
 * loops of the workers.
 *
 * Data comes from the probes, loaded by obsctl itself (standalone, needs root
 * or CAP_BPF + CAP_PERFMON), or from a running obsd (`--daemon ADDR:PORT`,
 * its /api/stats once a frame). Output: an ncurses screen (sort, filter,
 * pause, help, per-route detail with a histogram, status codes and, standalone,
 * the slowest recent requests), or plain-text frames (`--batch`), or one JSON
 * object per frame (`--json`). The parts are described in top.c.
 */
#ifndef OBS_TOP_H
#define OBS_TOP_H

/* The `obsctl top` command: argv[0] is "top". Returns the exit code. */
int top_main(int argc, char **argv);

#endif
