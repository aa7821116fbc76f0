/* SPDX-License-Identifier: MIT */
/*
 * events — lifecycle events, Pounce's model, one stream: ConnectionOpened,
 * RequestStarted, ResponseCompleted, RequestFailed, ClientDisconnected,
 * ConnectionClosed. Each has ts, conn_id, pid and, where they apply, the
 * request's fields. A keep-alive connection carrying three requests is
 * exactly: Opened, 3 x (Started, Completed), Closed. ClientDisconnected is
 * only reported when the client leaves (FIN or RST) with requests in flight.
 */
#ifndef OBS_EVENTS_H
#define OBS_EVENTS_H

#include <stdint.h>
#include "conn.h"
#include "json.h"

enum life_type {
	LIFE_CONNECTION_OPENED,
	LIFE_REQUEST_STARTED,
	LIFE_RESPONSE_COMPLETED,
	LIFE_REQUEST_FAILED,
	LIFE_CLIENT_DISCONNECTED,
	LIFE_CONNECTION_CLOSED,
};

struct life_event {
	enum life_type type;
	uint64_t wall_ns;		/* CLOCK_REALTIME, epoch ns */
	const struct conn_event *ce;	/* conn, pid, addresses, reason */
	const char *service;
};

const char *life_type_name(enum life_type t);

/* Append e as one JSON object: {"type":"RequestStarted","ts":…,…}. */
void life_event_json(const struct life_event *e, struct jbuf *jb);

#endif
