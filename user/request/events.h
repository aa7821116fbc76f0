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
#include "conn/conn.h"
#include "base/json.h"

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
	const char *service;		/* in an array of SERVICE_NAME_MAX bytes */
};

/*
 * A lifecycle event copied for later (obsd keeps recent ones): rendering JSON
 * for every event as it happens cost most of obsd's instructions per request,
 * so it is done when /api/events is read. Kept packed (life_pack): the
 * numbers, then the strings without their unused bytes (pack.h).
 */
struct life_rec {
	enum life_type type;
	uint64_t wall_ns, conn_id, in_flight;
	uint32_t pid;
	int status;
	bool has_req, failed;
	bool on_unix;			/* transport REC_UNIX */
	uint64_t duration_us, bytes_in, bytes_out;
	uint8_t trace_id[16], span_id[8];
	const char *error;		/* static string */
	/* From here on, only strings (see life_pack). */
	char comm[16];
	char service[64];
	char client[REC_ADDR_MAX], server[REC_SERVER_MAX];
	char reason[24];
	char request_id[H1_REQID_MAX];
	char method[H1_METHOD_MAX];
	char path[REC_PATH_MAX];
	char route[REC_ROUTE_MAX];
};

const char *life_type_name(enum life_type t);

/*
 * Pack e into out (at most sizeof(struct life_rec) + PACK_SLACK bytes
 * written); returns the packed size. life_unpack gives back the event as a
 * life_rec.
 */
size_t life_pack(const struct life_event *e, void *out);
void life_unpack(const void *in, struct life_rec *lr);
void life_rec_json(const struct life_rec *lr, struct jbuf *jb);

/* Append e as one JSON object: {"type":"RequestStarted","ts":…,…}. */
void life_event_json(const struct life_event *e, struct jbuf *jb);

#endif
