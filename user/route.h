/* SPDX-License-Identifier: MIT */
/*
 * route — turn a request path into a low-cardinality route template:
 * segments that look like identifiers (decimal numbers, UUIDs, hex strings of
 * 16+ characters, opaque tokens of 20+ characters mixing letters and digits)
 * become "{id}". The query string never reaches a route.
 */
#ifndef OBS_ROUTE_H
#define OBS_ROUTE_H

#include <stddef.h>

/* Write the template of path (no query) into out (size n, always terminated). */
void route_template(const char *path, char *out, size_t n);

#endif
