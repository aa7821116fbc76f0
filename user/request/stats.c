// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include "proto/http1.h"
#include "request/stats.h"

void pipeline_stats__fini(struct pipeline_stats *st)
{
	if (!st)
		return;
	free(st->procs);
	free(st->loops);
	free(st->routes);
	st->procs = NULL;
	st->loops = NULL;
	st->routes = NULL;
	st->n_procs = st->n_observed = st->n_loops = st->n_routes = 0;
}

static void obs_events(struct counter_visit *v, const uint64_t *kc)
{
	static const struct {
		enum obs_counter c;
		const char *reason;
	} lost[] = {
		{ OBS_C_LOST_RINGBUF, "ringbuf_full" },	   { OBS_C_LOST_CONNS_FULL, "conn_table_full" },
		{ OBS_C_LOST_ARGS_FULL, "args_table_full" }, { OBS_C_LOST_TARGETS_FULL, "targets_full" },
		{ OBS_C_READ_FAULT, "read_fault" },	   { OBS_C_STORE_FULL, "socket_storage_full" },
		{ OBS_C_TLS_UNMAPPED, "tls_unmapped" },
	};
	static const struct {
		enum obs_counter c;
		const char *name, *help;
	} kernel[] = {
		{ OBS_C_UNDECODED, "obs_capture_undecoded_total",
		  "Socket reads/writes through calls obs cannot decode (io_uring, splice, recvmmsg): exact-length gaps" },
		{ OBS_C_ADOPT_SKIPPED, "obs_adopt_skipped_reads_total",
		  "Reads on connections first seen mid-stream, before a request start" },
		{ OBS_C_LOG_WRITES, "obs_log_writes_total",
		  "stdout/stderr writes of observed processes captured" },
	};

	counter_family(v, "obs_events_total", "counter", "Kernel records written to the ring buffer");
	counter_u64(v, kc[OBS_C_EVENTS], NULL, NULL, NULL, NULL);
	counter_family(v, "obs_events_lost_total", "counter",
		   "Kernel records or captures lost, by reason");
	for (size_t i = 0; i < sizeof(lost) / sizeof(lost[0]); i++)
		counter_u64(v, kc[lost[i].c], "reason", lost[i].reason, NULL, NULL);
	counter_family(v, "obs_capture_truncated_total", "counter",
		   "Reads/writes longer than the capture (bytes counted, not all copied)");
	counter_u64(v, kc[OBS_C_TRUNCATED], NULL, NULL, NULL, NULL);
	for (size_t i = 0; i < sizeof(kernel) / sizeof(kernel[0]); i++) {
		counter_family(v, kernel[i].name, "counter", kernel[i].help);
		counter_u64(v, kc[kernel[i].c], NULL, NULL, NULL, NULL);
	}
}

static void obs_parsing(struct counter_visit *v, const struct conn_stats *st)
{
	counter_family(v, "obs_parse_errors_total", "counter",
		   "HTTP/1 parse errors by direction and kind");
	for (int d = 0; d < 2; d++)
		for (int e = 1; e < H1E_MAX; e++)
			counter_u64(v, st->parse_errors[d][e], "direction", d ? "response" : "request",
				"error", h1_error_name(e));
	counter_family(v, "obs_connections_lost_events_total", "counter",
		   "Connections on which lost kernel records were noticed");
	counter_u64(v, st->seq_gaps, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_events_malformed_total", "counter",
		       "Ring-buffer records too short or of an unknown type (ignored)");
	counter_u64(v, st->bad_events, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_events_orphan_total", "counter",
		       "Kernel records of no followed connection (open lost, or after its end): ignored");
	counter_u64(v, st->orphan_events, NULL, NULL, NULL, NULL);
}

static void obs_connections(struct counter_visit *v, const struct pipeline_stats *st,
			    const uint64_t *kc)
{
	counter_family(v, "obs_connections_tracked", "gauge", "HTTP connections (TCP and UNIX) followed right now");
	counter_u64(v, st->active_conns, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_connections_opened_total", "counter", "Server-side connections (TCP and UNIX) adopted at their first read");
	counter_u64(v, kc[OBS_C_CONNS_OPENED], NULL, NULL, NULL, NULL);
	counter_family(v, "obs_connections_not_http_total", "counter",
		   "Adopted connections whose first bytes were not HTTP");
	counter_u64(v, kc[OBS_C_CONNS_NOT_HTTP], NULL, NULL, NULL, NULL);
}

static void obs_requests(struct counter_visit *v, const struct conn_stats *st)
{
	counter_family(v, "obs_requests_total", "counter", "Request records completed, by outcome");
	counter_u64(v, st->records_ok, "outcome", "ok", NULL, NULL);
	counter_u64(v, st->records_failed, "outcome", "failed", NULL, NULL);
	counter_family(v, "obs_incomplete_requests_total", "counter",
		   "Connections that ended inside a request head (no request to report)");
	counter_u64(v, st->incomplete_requests, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_requests_dropped_total", "counter",
		       "Requests read but not reported, by reason");
	counter_u64(v, st->records_dropped[CONN_DROP_NO_MEMORY], "reason", "no_memory", NULL, NULL);
	counter_u64(v, st->records_dropped[CONN_DROP_H2_STREAMS], "reason", "h2_streams_full",
		    NULL, NULL);
	counter_family(v, "obs_h2_errors_total", "counter",
		       "HTTP/2 connections that could not be parsed (followed no further)");
	counter_u64(v, st->h2_errors, NULL, NULL, NULL, NULL);
}

/* Tracebacks joined to requests, error events (errors.h). */
static void obs_errors(struct counter_visit *v, const struct err_stats *es)
{
	counter_family(v, "obs_error_events_total", "counter", "Error events emitted");
	counter_u64(v, es->events, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_tracebacks_total", "counter",
		       "Python tracebacks recognised, by join result");
	counter_u64(v, es->joined - es->ambiguous, "join", "closest", NULL, NULL);
	counter_u64(v, es->ambiguous, "join", "ambiguous", NULL, NULL);
	counter_u64(v, es->unjoined, "join", "none", NULL, NULL);
	counter_family(v, "obs_error_events_dropped_total", "counter",
		       "Error requests or tracebacks dropped: more held than the bounds allow");
	counter_u64(v, es->dropped, NULL, NULL, NULL, NULL);
}

/* Log records cut from stdout/stderr (logs.h). */
static void obs_logs(struct counter_visit *v, const struct log_stats *ls)
{
	counter_family(v, "obs_log_records_total", "counter",
		       "Log lines of observed servers turned into records");
	counter_u64(v, ls->records, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_log_records_linked_total", "counter",
		       "Log records linked to their request's trace");
	counter_u64(v, ls->unlinked[LOG_LINKED], NULL, NULL, NULL, NULL);
	counter_family(v, "obs_log_records_unlinked_total", "counter",
		       "Log records without trace ids, by reason");
	for (int k = LOG_NO_REQUEST; k < LOG_LINK_KINDS; k++)
		counter_u64(v, ls->unlinked[k], "reason", log_link_name(k), NULL, NULL);
	counter_family(v, "obs_log_records_truncated_total", "counter",
		       "Log records cut short (line longer than captured)");
	counter_u64(v, ls->truncated, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_log_bytes_uncaptured_total", "counter",
		       "Bytes of long stdout/stderr writes not captured (their lines are lost)");
	counter_u64(v, ls->bytes_uncaptured, NULL, NULL, NULL, NULL);
	counter_family(v, "obs_log_lines_dropped_total", "counter",
		       "Log lines not turned into records, by reason");
	counter_u64(v, ls->dropped_nomem, "reason", "no_memory", NULL, NULL);
}

void pipeline_stats__counters(const struct pipeline_stats *st, struct counter_visit *v)
{
	obs_events(v, st->kc);
	obs_parsing(v, &st->conns);
	obs_connections(v, st, st->kc);
	obs_requests(v, &st->conns);
	counter_family(v, "obs_ringbuf_fill_ratio", "gauge", "Ring buffer fill before the last drain");
	counter_ratio(v, st->fill);
	counter_family(v, "obs_ringbuf_fill_peak_ratio", "gauge", "Highest ring buffer fill seen");
	counter_ratio(v, st->fill_peak);
	counter_family(v, "obs_routes_collapsed_total", "counter",
		       "Paths reported as the overflow route because the service hit its route cap");
	counter_none(v);	/* announced even before any service has a route table */
	for (size_t i = 0; i < st->n_routes; i++)
		counter_u64(v, st->routes[i].collapsed, "service", st->routes[i].service, NULL, NULL);
	counter_family(v, "obs_traceparent_invalid_total", "counter",
		       "Incoming traceparent headers ignored as invalid");
	counter_u64(v, st->traceparent_invalid, NULL, NULL, NULL, NULL);
	obs_errors(v, &st->errors);
	obs_logs(v, &st->logs);
	client_stats__counters(&st->calls, v);
}
