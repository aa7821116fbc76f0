/* SPDX-License-Identifier: MIT */
/*
 * json — append-only JSON text builder on a growable buffer. Keys and string
 * values are escaped (control bytes as \u00XX, invalid UTF-8 replaced by
 * U+FFFD), so hostile bytes from the wire cannot break the document. Commas
 * are inserted automatically. Allocation failure sets jb->oom and makes every
 * later call a no-op; the caller checks jb->oom once at the end.
 */
#ifndef OBS_JSON_H
#define OBS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jbuf {
	char *buf;		/* NUL-terminated text, owned */
	size_t len, cap;
	bool need_comma;	/* internal */
	bool oom;
};

void jb_init(struct jbuf *jb);
void jb_free(struct jbuf *jb);
void jb_reset(struct jbuf *jb);		/* keep the buffer, drop the text */
void jb_raw(struct jbuf *jb, const char *s, size_t n);
/* Append formatted text verbatim (no escaping, no comma handling). */
void jb_printf(struct jbuf *jb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jb_obj_open(struct jbuf *jb);
void jb_obj_close(struct jbuf *jb);
void jb_arr_open(struct jbuf *jb, const char *key);	/* key NULL inside arrays */
void jb_arr_close(struct jbuf *jb);
void jb_key(struct jbuf *jb, const char *key);
void jb_str(struct jbuf *jb, const char *key, const char *val);
void jb_strn(struct jbuf *jb, const char *key, const char *val, size_t n);
void jb_u64(struct jbuf *jb, const char *key, uint64_t v);
void jb_i64(struct jbuf *jb, const char *key, int64_t v);
void jb_dbl(struct jbuf *jb, const char *key, double v);
void jb_bool(struct jbuf *jb, const char *key, bool v);

#endif
