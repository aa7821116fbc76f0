/* SPDX-License-Identifier: MIT */
/*
 * trust — the peers whose X-Request-ID obs honours (`--trusted-proxy CIDR`).
 * Default: none; every request id is generated unless the server's own
 * response carries one.
 *
 * A UNIX-socket peer has no address: no CIDR ever matches it (not even
 * ::/0). `--trusted-proxy unix` trusts every peer of every observed UNIX
 * socket (who may connect is the socket file's permissions): the usual
 * nginx-in-front set-up.
 */
#ifndef OBS_TRUST_H
#define OBS_TRUST_H

#include <stdbool.h>
#include <stdint.h>

#define TRUST_MAX	64

struct trust {
	struct {
		uint8_t addr[16];	/* IPv4 as v4-mapped IPv6 */
		int bits;		/* prefix length over the 128-bit form */
	} nets[TRUST_MAX];
	int n;
	bool unix_peers;		/* "unix": trust peers of UNIX sockets */
};

/* Add "10.0.0.0/8", "::1/128", a bare address, or "unix". 0, -EINVAL or -E2BIG. */
int trust_add(struct trust *t, const char *cidr);

/* Is addr (16 bytes, IPv4 v4-mapped) inside one of the networks? t may be NULL. */
bool trust_match(const struct trust *t, const uint8_t addr[16]);

/* Are peers of UNIX sockets trusted? t may be NULL. */
bool trust_unix(const struct trust *t);

/* An X-Request-ID worth keeping: 1..128 bytes of [A-Za-z0-9._:+/=-]. */
bool request_id_valid(const char *s);

#endif
