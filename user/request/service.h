/* SPDX-License-Identifier: MIT */
/*
 * service — the identity of an observed server, the `service` label.
 *
 * Default: the ASGI/WSGI app argument of the process's command line
 * ("main:app" from `uvicorn main:app`, `gunicorn -k … main:app`, `hypercorn
 * main:app`, `daphne main:app`); a process without one (uvicorn --workers
 * spawns workers with a multiprocessing command line) takes its parent's, up
 * to SERVICE_PARENT_DEPTH levels up while the parent runs the same program
 * (/proc/PID/exe: nginx's workers never take the name of whatever started
 * nginx); else its comm. So every worker of one
 * server is one service with no set-up. Overrides (`--service`) match by pid,
 * local port or comm and win over the default, in the order given.
 */
#ifndef OBS_SERVICE_H
#define OBS_SERVICE_H

#include <stdint.h>

#define SERVICE_NAME_MAX	64
#define SERVICE_MAX_RULES	32
#define SERVICE_CACHE		4096	/* pids remembered; the cache is flushed when full */
#define SERVICE_PARENT_DEPTH	3

struct services;

/* NULL with errno set on allocation failure. */
struct services *services__new(void);

/*
 * Add an override "pid:1234=name", "port:8000=name" or "comm:gunicorn=name".
 * Returns 0, -EINVAL (bad syntax; nothing added) or -E2BIG.
 */
int services__add_rule(struct services *s, const char *spec);

/* The service of a process (cached); never NULL, never "". It is held in
 * an array of SERVICE_NAME_MAX bytes (which may be read whole). */
const char *services__of(struct services *s, uint32_t pid, const char *comm, uint16_t lport);

/* The process exited: forget its cached identity. */
void services__forget(struct services *s, uint32_t pid);

void services__free(struct services *s);

/* Exposed for unit tests: the app argument in a NUL-separated cmdline, or NULL. */
const char *service_app_arg(const char *cmdline, size_t len);

#endif
