// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for what of user/daemon/api.c is reachable without a socket:
 * api_query_get(), which reads the query string of every /api/... request
 * from any local client. (The request-line handling, handle(), is static;
 * see docs/robustness.md for what would have to be exposed to fuzz it.)
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iuser -Itests/unit \
 *         tests/fuzz/fuzz_api.c user/daemon/api.c user/base/json.c user/base/log.c -o build/fuzz_api
 *
 * Input: byte 0 = output size (1..32) and which key; the rest is the query
 * (NUL-terminated, exact-size heap copy). The answer is compared with a
 * reference: the value of the first '&'-separated "key=value" whose name is
 * exactly key, truncated to fit, in an exact-size output buffer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/api.h"

#define CHECK_ABORT	/* a failed check aborts: libFuzzer keeps the input */
#include "check.h"

static int ref_query_get(const char *q, const char *key, char *out, size_t n)
{
	size_t kl = strlen(key);

	while (*q) {
		size_t seg = strcspn(q, "&");

		if (seg > kl && !memcmp(q, key, kl) && q[kl] == '=') {
			size_t vl = seg - kl - 1 < n - 1 ? seg - kl - 1 : n - 1;

			memcpy(out, q + kl + 1, vl);
			out[vl] = 0;
			return 0;
		}
		q += seg;
		if (*q)
			q++;
	}
	return -ENOENT;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const keys[] = { "limit", "since", "a", "", "limit=", "x&y" };
	const char *key;
	char *q, *out, want[64];
	size_t n;
	int got, ref;

	if (size < 1)
		return 0;
	n = 1 + (data[0] & 31);
	key = keys[(data[0] >> 5) % (sizeof(keys) / sizeof(keys[0]))];
	q = malloc(size);
	out = malloc(n);
	CHECK(q && out);
	memcpy(q, data + 1, size - 1);
	q[size - 1] = 0;
	memset(out, 'Z', n);
	got = api_query_get(q, key, out, n);
	ref = ref_query_get(q, key, want, n);
	CHECK(got == ref);
	CHECK(got || (memchr(out, 0, n) && !strcmp(out, want)));
	free(q);
	free(out);
	return 0;
}
