// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for user/request/logs.c: whatever a server writes to its
 * stdout/stderr, cut into writes of any size, with uncaptured gaps and tails,
 * on two fds and with changing links. Every record must be NUL-free valid
 * UTF-8 of at most what was kept, its body and attribute spans inside the
 * line, its JSON strings unescapable; nothing may leak or crash.
 *
 * Input: byte 0 seeds the cutting; the rest is the text written.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request/logs.h"

#define CHECK_ABORT	/* a failed check aborts: libFuzzer keeps the input */
#include "check.h"

static bool valid_utf8(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		size_t l = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;

		if (!l || !c || i + l > n)
			return false;
		for (size_t k = 1; k < l; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
		i += l;
	}
	return true;
}

static void sink(void *ctx, const struct log_rec *r)
{
	char *tmp = malloc(r->len + 1);

	CHECK(tmp);
	CHECK(strlen(r->line) == r->len);
	CHECK(valid_utf8((const unsigned char *)r->line, r->len));
	CHECK(r->p.body_off + r->p.body_len <= r->len && r->p.n_attrs <= LOG_ATTRS_MAX);
	for (int i = 0; i < r->p.n_attrs; i++) {
		const struct log_attr *a = &r->p.attrs[i];

		CHECK(a->key_off + a->key_len <= r->len && a->val_off + a->val_len <= r->len);
		CHECK(log_json_unescape(r->line + a->val_off, a->val_len, tmp) <= a->val_len);
	}
	CHECK(log_json_unescape(r->line + r->p.body_off, r->p.body_len, tmp) <= r->p.body_len);
	free(tmp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct logs *l;	/* one instance (1 MB): inputs end by flushing */
	unsigned seed;
	size_t i = 1;
	uint64_t ts = 1;

	if (size < 1)
		return 0;
	seed = data[0] * 2654435761u + 1;
	if (!l) {
		l = logs__new();
		CHECK(l);
		logs__add_sink(l, sink, NULL);
	}
	while (i < size) {
		struct log_link k = { .kind = (enum log_link_kind)(seed % LOG_LINK_KINDS) };
		struct log_src src = { .pid = 1, .tid = 1 + (seed >> 3) % 2, .fd = 1 + (seed >> 5) % 2 };
		size_t n = 1 + (seed >> 7) % 97, cap, tail = 0;
		uint64_t gap = 0;

		if (n > size - i)
			n = size - i;
		cap = n;
		if ((seed >> 13) % 5 == 0 && n > 2) {	/* a long write: head, gap, tail */
			tail = (seed >> 17) % (n / 2 + 1);
			cap = n - tail;
			gap = 1 + (seed >> 9) % 9000;
		}
		src.ts_ns = ts;
		k.span_id[0] = seed >> 21;
		logs__write(l, &src, &k, data + i, cap, gap, data + i + cap, tail);
		i += n;
		ts += (seed >> 11) % 3 ? 1000 : LOG_PARTIAL_IDLE_NS + 1;
		logs__tick(l, ts);
		seed = seed * 1103515245u + 12345u;
	}
	logs__forget(l, 1);	/* partial lines out: the next input starts clean */
	return 0;
}
