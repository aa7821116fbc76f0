/* SPDX-License-Identifier: MIT */
/*
 * span — what a request record looks like as an OpenTelemetry server span:
 * its name, status and attributes, in one neutral form that the OTLP encoder
 * and the JSON of /api/traces both use.
 *
 * Attributes: the stable HTTP semantic conventions (http.request.method,
 * url.path, url.scheme, server.address, server.port, client.address,
 * client.port, http.response.status_code, http.route, user_agent.original,
 * network.protocol.version) and the older names dashboards still query
 * (http.method, http.target, http.scheme, http.host, http.status_code,
 * http.flavor, http.user_agent, net.host.port, net.peer.ip), plus
 * request.id and obs.* (bytes, outcome, error). http.target carries the path
 * only: query strings never leave obsd. network.transport is "tcp" or "unix";
 * over a UNIX socket server.address and network.local.address are its path,
 * there is no port and no client address, and the peer process is
 * obs.peer.pid / obs.peer.name.
 */
#ifndef OBS_SPAN_H
#define OBS_SPAN_H

#include <stdbool.h>
#include <stdint.h>
#include "conn/record.h"

#define SPAN_MAX_ATTRS		40
#define SPAN_NAME_MAX		(H1_METHOD_MAX + REC_ROUTE_MAX + 2)

enum span_attr_type { SPAN_STR, SPAN_INT };

struct span_attr {
	const char *key;
	enum span_attr_type type;
	const char *str;	/* points into the record or the span_view */
	int64_t i;
};

enum span_status { SPAN_STATUS_UNSET = 0, SPAN_STATUS_OK = 1, SPAN_STATUS_ERROR = 2 };

struct span_view {
	char name[SPAN_NAME_MAX];
	enum span_status status;
	const char *status_message;
	struct span_attr attrs[SPAN_MAX_ATTRS];
	int n_attrs;
	/* storage for derived strings */
	char server_host[H1_HOST_MAX];
	char client_ip[REC_ADDR_MAX];
	char server_ip[REC_ADDR_MAX];
	char peer_name[REC_ADDR_MAX];	/* UNIX: the peer process's comm */
	char flavor[4];
	char rpc_service[REC_PATH_MAX];
	char url_full[16 + H1_HOST_MAX + REC_PATH_MAX];	/* CLIENT: scheme://host/path */
};

/* Fill v from r; v keeps pointers into r, so r must outlive v. */
void span_view(struct span_view *v, const struct record *r);

/*
 * An outgoing call (REC_CLIENT) as a CLIENT span (client_span.c): name
 * "{METHOD}", http.request.method, url.full (scheme, Host header or the
 * peer, path: never the query), server.address/server.port (the Host
 * header's name, else the peer; a UNIX server's socket path, no port),
 * network.peer.address/port, http.response.status_code, error.type, and
 * obs.link (how its parent was found). Status ERROR on 5xx and failures.
 */
void client_span_view(struct span_view *v, const struct record *r);

/* For the views above: an attribute (a string only if non-empty; both only
 * while there is room), and "ip:port" / "[v6]:port" split into ip (buf, ""
 * without a port) and port (0). */
void span_add_str(struct span_view *v, const char *key, const char *val);
void span_add_int(struct span_view *v, const char *key, int64_t val);
int span_split_addr(const char *addr, char *buf, size_t n);

#endif
