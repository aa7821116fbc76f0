// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "request/trust.h"

int trust_add(struct trust *t, const char *cidr)
{
	char ip[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(cidr, '/');
	size_t l = slash ? (size_t)(slash - cidr) : strlen(cidr);
	uint8_t a[16] = { [10] = 0xff, [11] = 0xff };
	int bits, max;
	char *end;

	if (!strcmp(cidr, "unix")) {
		t->unix_peers = true;
		return 0;
	}
	if (t->n >= TRUST_MAX)
		return -E2BIG;
	if (!l || l >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, cidr, l);
	ip[l] = 0;
	if (inet_pton(AF_INET, ip, a + 12) == 1)
		max = 32;
	else if (inet_pton(AF_INET6, ip, a) == 1)
		max = 128;
	else
		return -EINVAL;
	bits = max;
	if (slash) {
		bits = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || bits < 0 || bits > max)
			return -EINVAL;
	}
	memcpy(t->nets[t->n].addr, a, 16);
	t->nets[t->n].bits = bits + 128 - max;
	t->n++;
	return 0;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, int bits)
{
	int full = bits / 8, rest = bits % 8;

	if (memcmp(a, b, full))
		return false;
	return !rest || ((a[full] ^ b[full]) & (0xff << (8 - rest))) == 0;
}

bool trust_match(const struct trust *t, const uint8_t addr[16])
{
	for (int i = 0; t && i < t->n; i++)
		if (prefix_eq(t->nets[i].addr, addr, t->nets[i].bits))
			return true;
	return false;
}

bool trust_unix(const struct trust *t)
{
	return t && t->unix_peers;
}

bool request_id_valid(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && !strchr("._:+/=-", s[n]))
			return false;
	return n > 0 && n <= 128;
}
