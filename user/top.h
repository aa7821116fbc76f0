/* SPDX-License-Identifier: MIT */
/*
 * top — `obsctl top`: a live latency table with one row per (service, method,
 * route): requests/s, p50/p90/p99/max latency, error %, requests in flight
 * and bytes/s over a sliding window, with a header of totals.
 *
 * Data comes from the probes, loaded by obsctl itself (standalone, needs root
 * or CAP_BPF + CAP_PERFMON), or from a running obsd (`--daemon ADDR:PORT`,
 * polling /api/requests?since=, /health and /metrics).
 *
 * Each row keeps one log-linear latency histogram of its window (32 linear
 * sub-buckets per power of two of microseconds: a percentile is reported
 * within 1/64 of its true value) and, per second of the window, the sparse
 * part of it that falls out when that second leaves the window. Rows are
 * bounded (TOP_MAX_ROWS); requests of routes beyond that are counted, not
 * shown.
 *
 * Output: an ncurses screen (sort, filter, pause, help, per-route detail with
 * a histogram, status codes and the slowest recent requests), or plain-text
 * frames (`--batch`), or one JSON object per frame (`--json`).
 */
#ifndef OBS_TOP_H
#define OBS_TOP_H

/* The `obsctl top` command: argv[0] is "top". Returns the exit code. */
int top_main(int argc, char **argv);

#endif
