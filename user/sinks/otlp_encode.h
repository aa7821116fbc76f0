/* SPDX-License-Identifier: MIT */
/*
 * otlp_encode — pack request records into one OTLP ExportTraceServiceRequest.
 * Records of the same (service, pid) share a ResourceSpans; resource
 * attributes: service.name, process.pid, process.executable.name, host.name,
 * telemetry.sdk.{name,language,version}. Exposed separately so unit tests can
 * decode what is sent.
 */
#ifndef OBS_OTLP_ENCODE_H
#define OBS_OTLP_ENCODE_H

#include <stddef.h>
#include <stdint.h>
#include "conn/record.h"

#define OBS_VERSION	"0.1.0"

/*
 * Encode n records (pointers) into a malloc'd buffer (*out, *len).
 * service_name overrides every record's service when non-empty.
 * Returns 0 or -ENOMEM.
 */
int otlp_encode(const struct record *const *recs, size_t n, const char *service_name,
		uint8_t **out, size_t *len);

#endif
