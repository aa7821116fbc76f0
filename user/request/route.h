/* SPDX-License-Identifier: MIT */
/*
 * route — turn a request path into a low-cardinality route.
 *
 * 1. User patterns (`--route /users/{id}`), in the order given: a pattern
 *    matches a path with the same number of segments where every literal
 *    segment is equal and every "{name}" segment is non-empty; a final
 *    "{name...}" segment matches the rest of the path.
 * 2. Otherwise heuristics: segments that look like identifiers (decimal
 *    numbers, UUIDs, hex strings of 16+ characters with a digit, opaque
 *    tokens of 20+ characters mixing letters and digits) become "{id}".
 * 3. Per service, at most `cap` distinct routes; later new ones collapse into
 *    ROUTE_OVERFLOW and are counted.
 * The query string and fragment never reach a route.
 */
#ifndef OBS_ROUTE_H
#define OBS_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#define ROUTE_OVERFLOW		"__overflow__"
#define ROUTE_CAP_DEFAULT	200
#define ROUTE_MAX_PATTERNS	256
#define ROUTE_LEN_MAX		256

/* Heuristic template of path into out (size n, always terminated). */
void route_template(const char *path, char *out, size_t n);

struct routes;

/* NULL with errno set. cap 0 means ROUTE_CAP_DEFAULT. */
struct routes *routes__new(unsigned cap);

/* Set the per-service cap (before any route is resolved); returns rt. */
struct routes *routes__with_cap(struct routes *rt, unsigned cap);

/* Add a user pattern (must start with '/'). 0, -EINVAL or -E2BIG. */
int routes__add_pattern(struct routes *rt, const char *pattern);

/* Route of path for service into out (size ROUTE_LEN_MAX). */
void routes__resolve(struct routes *rt, const char *service, const char *path, char *out);

/* Paths collapsed into ROUTE_OVERFLOW for service so far, and over all services. */
uint64_t routes__collapsed(const struct routes *rt, const char *service);

/* Visit each service's collapsed count (for metrics). */
void routes__foreach_service(const struct routes *rt,
			     void (*fn)(void *ctx, const char *service, uint64_t collapsed,
					unsigned distinct),
			     void *ctx);

void routes__free(struct routes *rt);

#endif
