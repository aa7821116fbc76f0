// SPDX-License-Identifier: MIT
/*
 * http1 — incremental HTTP/1.x parser. The contract is http1.h.
 *
 * One state machine per direction. A head that arrives whole in one segment
 * is parsed where it lies; a split head is copied into p->buf and searched
 * for its end only from where the previous search stopped (p->scan_off).
 * Bodies are counted, never copied. A gap (uncaptured bytes) is consumed
 * against a known length when there is one; otherwise the framing is
 * inferred from the captured tail, or the bytes are reported lost or
 * skipped. Every byte fed ends up in exactly one place: a message's bytes,
 * skipped_bytes, or the message in progress (msg_bytes).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "proto/http1.h"

#define H1_NUM_MAX	(1ULL << 62)	/* largest Content-Length or chunk size */
#define H1_PEEK_METHOD	16		/* resync: longest method a segment may start with */
#define H1_BUF_MIN	1024		/* first allocation of the partial-head buffer */

enum h1_state {
	ST_IDLE = 0,	/* before a start line; empty lines are allowed here */
	ST_HEAD,	/* in a head; the part seen so far is in p->buf */
	ST_RESYNC,	/* skipping until a segment starts like a message */
	ST_STOPPED,	/* H1_BODY_STOP: everything is ignored */
	/* from here on the head of the current message has been reported */
	ST_BODY_CL,	/* body_left bytes of Content-Length body to go */
	ST_BODY_EOF,	/* body delimited by close */
	ST_CHUNK_SIZE,	/* in a chunk-size line */
	ST_CHUNK_DATA,	/* body_left bytes of chunk data to go */
	ST_CHUNK_CRLF,	/* the CRLF after chunk data */
	ST_TRAILER,	/* trailer section after the last chunk */
	ST_CHUNK_LOST,	/* chunk framing lost in a gap: waiting for the tail's end */
};

/* p->line_flags; which ones mean something depends on the state */
enum {
	LF_CR		= 1u << 0,	/* a CR was seen, LF must follow */
	LF_DIGITS	= 1u << 1,	/* chunk-size: at least one hex digit */
	LF_WS		= 1u << 2,	/* chunk-size: whitespace after the digits */
	LF_EXT		= 1u << 3,	/* chunk-size: in a chunk extension */
	LF_MIDLINE	= 1u << 4,	/* trailer: inside a non-empty line */
	LF_LASTCHUNK	= 1u << 5,	/* chunk-lost: the last chunk was already seen */
};

/* Character classes (RFC 9110 tchar, field-value bytes, request-target bytes). */
enum { C_TCHAR = 1, C_VALUE = 2, C_TARGET = 4 };

#define C_T (C_TCHAR | C_VALUE | C_TARGET)
#define C_V (C_VALUE | C_TARGET)

static const uint8_t ctab[256] = {
	['\t'] = C_VALUE,
	[' '] = C_VALUE,
	['!'] = C_T,
	['"'] = C_V,
	['#' ... '\''] = C_T,
	['(' ... ')'] = C_V,
	['*' ... '+'] = C_T,
	[','] = C_V,
	['-' ... '.'] = C_T,
	['/'] = C_V,
	['0' ... '9'] = C_T,
	[':' ... '@'] = C_V,
	['A' ... 'Z'] = C_T,
	['[' ... ']'] = C_V,
	['^' ... 'z'] = C_T,
	['{'] = C_V,
	['|'] = C_T,
	['}'] = C_V,
	['~'] = C_T,
	[0x80 ... 0xff] = C_V,
};

/* The header fields the parser extracts. */
enum field_id {
	F_HOST, F_UA, F_REQID, F_TRACEPARENT, F_TRACESTATE, F_CTYPE,
	F_CL, F_TE, F_CONN, F_UPGRADE, F_EXPECT,
};

struct field {
	const char *name;	/* lower case */
	uint8_t len;
	uint8_t id;		/* enum field_id */
	uint16_t off;		/* string fields: offset of the buffer in struct h1_head */
	uint16_t cap;		/* string fields: size of that buffer; 0 otherwise */
};

#define STR_FIELD(n, i, m) \
	{ n, sizeof(n) - 1, i, offsetof(struct h1_head, m), sizeof(((struct h1_head *)0)->m) }
#define OTHER_FIELD(n, i) { n, sizeof(n) - 1, i, 0, 0 }

static const struct field fields[] = {
	STR_FIELD("host", F_HOST, host),
	STR_FIELD("user-agent", F_UA, user_agent),
	STR_FIELD("x-request-id", F_REQID, x_request_id),
	STR_FIELD("traceparent", F_TRACEPARENT, traceparent),
	STR_FIELD("tracestate", F_TRACESTATE, tracestate),
	STR_FIELD("content-type", F_CTYPE, content_type),
	OTHER_FIELD("content-length", F_CL),
	OTHER_FIELD("transfer-encoding", F_TE),
	OTHER_FIELD("connection", F_CONN),
	STR_FIELD("upgrade", F_UPGRADE, upgrade),
	OTHER_FIELD("expect", F_EXPECT),
};

/* What a head's header lines said beyond what struct h1_head holds. */
struct head_scan {
	uint32_t seen;		/* 1 << field_id for each field met: first one wins */
	bool te_chunked;	/* the last transfer-coding so far is chunked */
	bool conn_close;
	bool conn_keep;
	bool conn_upgrade;
};

static inline uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? c | 0x20 : c;
}

static inline bool is_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static inline bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static int hex_val(uint8_t c)
{
	if (is_digit(c))
		return c - '0';
	c = lower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Case-insensitive equality of s[0..n) with the lower-case string ref. */
static bool ci_eq(const uint8_t *s, size_t n, const char *ref)
{
	size_t i;

	if (n != strlen(ref))
		return false;
	for (i = 0; i < n; i++)
		if (lower(s[i]) != (uint8_t)ref[i])
			return false;
	return true;
}

/* Copy s[0..n) into dst[cap] as a NUL-terminated string, truncated. */
static void str_copy(char *dst, size_t cap, const uint8_t *s, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	if (n)
		memcpy(dst, s, n);
	dst[n] = '\0';
}

static uint32_t clamp32(uint64_t v)
{
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* Does b[0..n) end with an empty line (LF CRLF or LF LF)? */
static bool ends_blank(const uint8_t *b, size_t n)
{
	if (n < 2 || b[n - 1] != '\n')
		return false;
	if (b[n - 2] == '\n')
		return true;
	return n >= 3 && b[n - 2] == '\r' && b[n - 3] == '\n';
}

static void head_reset(struct h1_head *h)
{
	h->content_length = 0;
	h->flags = 0;
	h->head_bytes = 0;
	h->version_minor = 0;
	h->status = 0;
	h->method[0] = '\0';
	h->target[0] = '\0';
	h->reason[0] = '\0';
	h->host[0] = '\0';
	h->user_agent[0] = '\0';
	h->x_request_id[0] = '\0';
	h->traceparent[0] = '\0';
	h->tracestate[0] = '\0';
	h->content_type[0] = '\0';
	h->upgrade[0] = '\0';
}

/*
 * A parser holds a head only while a message is in progress (from its start
 * line to its end), so that an idle keep-alive connection does not carry two
 * of them (3.2 KB). Heads are recycled through a small per-thread cache.
 */
#define HEAD_CACHE_MAX	32

static __thread struct h1_head *head_cache[HEAD_CACHE_MAX];
static __thread unsigned int n_head_cache;

/* The parser's head, emptied; NULL when memory is short. */
static struct h1_head *head_get(struct h1_parser *p)
{
	if (!p->head)
		p->head = n_head_cache ? head_cache[--n_head_cache] : malloc(sizeof(*p->head));
	if (p->head)
		head_reset(p->head);
	return p->head;
}

static void head_put(struct h1_parser *p)
{
	if (!p->head)
		return;
	if (n_head_cache < HEAD_CACHE_MAX)
		head_cache[n_head_cache++] = p->head;
	else
		free(p->head);
	p->head = NULL;
}

static void buf_free(struct h1_parser *p)
{
	free(p->buf);
	p->buf = NULL;
	p->buf_len = 0;
	p->buf_cap = 0;
	p->scan_off = 0;
}

/* Make room for need bytes of partial head (need <= H1_HEAD_MAX). */
static bool buf_reserve(struct h1_parser *p, size_t need)
{
	size_t cap = p->buf_cap ? p->buf_cap : H1_BUF_MIN;
	char *nb;

	if (need <= p->buf_cap)
		return true;
	while (cap < need)
		cap *= 2;
	if (cap > H1_HEAD_MAX)
		cap = H1_HEAD_MAX;
	nb = realloc(p->buf, cap);
	if (!nb)
		return false;
	p->buf = nb;
	p->buf_cap = cap;
	return true;
}

/* Forget the current message (not the counters, not the head buffer). */
static void msg_reset(struct h1_parser *p)
{
	p->state = ST_IDLE;
	p->resynced = false;
	p->mflags = 0;
	p->msg_bytes = 0;
	p->body_left = 0;
	p->line_len = 0;
	p->line_flags = 0;
	head_put(p);
}

static bool head_reported(const struct h1_parser *p)
{
	return p->state >= ST_BODY_CL;
}

/* The current message ended: report it and get ready for the next one. */
static void msg_complete(struct h1_parser *p)
{
	if (p->cb->on_message)
		p->cb->on_message(p->ctx, p->head, p->msg_bytes, p->mflags);
	p->messages++;
	msg_reset(p);
}

/* The current message ended with its head and HTTP/1 ends with it. */
static void msg_stop(struct h1_parser *p)
{
	msg_complete(p);
	p->state = ST_STOPPED;
	p->stopped = true;
}

/*
 * The stream cannot be parsed. A reported message ends with H1M_LOST; the
 * bytes of one not reported yet are skipped. Then resync. The caller counts
 * the rest of the segment as skipped.
 */
static void msg_fail(struct h1_parser *p, enum h1_error err)
{
	if (head_reported(p)) {
		p->mflags |= H1M_LOST;
		msg_complete(p);
	} else {
		p->skipped_bytes += p->msg_bytes;
		msg_reset(p);
	}
	buf_free(p);
	if (p->cb->on_error)
		p->cb->on_error(p->ctx, err);
	p->state = ST_RESYNC;
}

static const char *const known_methods[] = { "GET ",	   "HEAD ",  "POST ",    "PUT ",
					     "DELETE ",  "PATCH ", "OPTIONS ", "CONNECT ",
					     "TRACE " };

static bool known_method(const char *m)
{
	size_t l = strlen(m);

	for (size_t i = 0; i < sizeof(known_methods) / sizeof(known_methods[0]); i++)
		if (strlen(known_methods[i]) == l + 1 && !memcmp(known_methods[i], m, l))
			return true;
	return false;
}

/*
 * Could a segment starting with d[0..n) be the start of a message? After bytes
 * were lost, a segment may start anywhere inside a message ("ET /x" of a split
 * "GET /x"), so only the RFC 9110 methods (or a prefix of one, when the
 * segment is that short) count as a request's start here.
 */
static bool looks_like_start(enum h1_dir dir, const uint8_t *d, size_t n)
{
	if (!n)
		return false;
	if (dir == H1_RESPONSE)
		return !memcmp(d, "HTTP/1.", n < 7 ? n : 7);
	for (size_t i = 0; i < sizeof(known_methods) / sizeof(known_methods[0]); i++) {
		size_t ml = strlen(known_methods[i]);

		if (!memcmp(d, known_methods[i], n < ml ? n : ml))
			return true;
	}
	return false;
}

/*
 * Search b[0..len) for the empty line that ends a head, from *off on.
 * Returns the head's length, or 0 with *off set where the next search must
 * resume (an LF whose following bytes have not arrived yet).
 */
static size_t head_find_end(const uint8_t *b, size_t len, size_t *off)
{
	size_t i = *off;
	const uint8_t *lf;

	while (i < len) {
		lf = memchr(b + i, '\n', len - i);
		if (!lf) {
			i = len;
			break;
		}
		i = lf - b;
		if (i + 1 >= len)
			break;
		if (b[i + 1] == '\n')
			return i + 2;
		if (b[i + 1] == '\r') {
			if (i + 2 >= len)
				break;
			if (b[i + 2] == '\n')
				return i + 3;
		}
		i++;
	}
	*off = i;
	return 0;
}

/*
 * Next line of b[0..n) from *pos: its length without CR LF; *pos moves past
 * the LF (or to n: the rest of b is the line). *lf says whether it ended in
 * one.
 */
static inline __attribute__((always_inline)) size_t line_next(const uint8_t *b, size_t n,
							    size_t *pos, const uint8_t **line,
							    bool *lf)
{
	const uint8_t *nl = memchr(b + *pos, '\n', n - *pos);
	size_t end = nl ? (size_t)(nl - b) : n;
	size_t len = end - *pos;

	*line = b + *pos;
	*pos = nl ? end + 1 : n;
	*lf = nl != NULL;
	if (len && (*line)[len - 1] == '\r')
		len--;
	return len;
}

/* "HTTP/1.0" or "HTTP/1.1" at v[0..8). */
static int version_parse(struct h1_head *h, const uint8_t *v, size_t n)
{
	if (n < 8 || memcmp(v, "HTTP/1.", 7) || (v[7] != '0' && v[7] != '1'))
		return -H1E_BAD_START;
	h->version_minor = v[7] - '0';
	return 0;
}

/* METHOD SP request-target SP HTTP-version */
static int start_request(struct h1_head *h, const uint8_t *l, size_t n)
{
	size_t i = 0, t;

	while (i < n && (ctab[l[i]] & C_TCHAR))
		i++;
	if (!i || i == n || l[i] != ' ')
		return -H1E_BAD_START;
	str_copy(h->method, sizeof(h->method), l, i);
	t = ++i;
	while (i < n && (ctab[l[i]] & C_TARGET))
		i++;
	if (i == t || i == n || l[i] != ' ')
		return -H1E_BAD_START;
	if (i - t >= sizeof(h->target))
		h->flags |= H1F_TARGET_TRUNC;
	str_copy(h->target, sizeof(h->target), l + t, i - t);
	i++;
	if (n - i != 8)
		return -H1E_BAD_START;
	return version_parse(h, l + i, n - i);
}

/* HTTP-version SP 3DIGIT [SP reason-phrase] */
static int start_response(struct h1_head *h, const uint8_t *l, size_t n)
{
	size_t i;

	if (n < 12 || version_parse(h, l, n) || l[8] != ' ')
		return -H1E_BAD_START;
	if (l[9] < '1' || l[9] > '9' || !is_digit(l[10]) || !is_digit(l[11]))
		return -H1E_BAD_START;
	h->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	if (n == 12)
		return 0;
	if (l[12] != ' ')
		return -H1E_BAD_START;
	for (i = 13; i < n; i++)
		if (!(ctab[l[i]] & C_VALUE))
			return -H1E_BAD_START;
	str_copy(h->reason, sizeof(h->reason), l + 13, n - 13);
	return 0;
}

/* Next element of the comma list v[*pos..n), OWS trimmed; *pos moves past it. */
static size_t list_next(const uint8_t *v, size_t n, size_t *pos, const uint8_t **el)
{
	const uint8_t *comma = memchr(v + *pos, ',', n - *pos);
	size_t i = *pos, end = comma ? (size_t)(comma - v) : n;

	*pos = comma ? end + 1 : n;
	while (i < end && is_ows(v[i]))
		i++;
	while (end > i && is_ows(v[end - 1]))
		end--;
	*el = v + i;
	return end - i;
}

static int cl_store(struct h1_head *h, const struct head_scan *s, const uint8_t *v, size_t n)
{
	uint64_t x = 0;
	unsigned int d;
	size_t i;

	if (!n)
		return -H1E_BAD_CL;
	for (i = 0; i < n; i++) {
		d = v[i] - '0';
		if (d > 9 || x > (H1_NUM_MAX - d) / 10)
			return -H1E_BAD_CL;
		x = x * 10 + d;
	}
	if ((s->seen & (1u << F_CL)) && x != h->content_length)
		return -H1E_BAD_CL;
	h->content_length = x;
	h->flags |= H1F_HAS_CL;
	return 0;
}

static void te_store(struct head_scan *s, const uint8_t *v, size_t n)
{
	const uint8_t *el;
	size_t pos = 0, len;

	while (pos < n) {
		len = list_next(v, n, &pos, &el);
		if (len)
			s->te_chunked = ci_eq(el, len, "chunked");
	}
}

static void conn_store(struct head_scan *s, const uint8_t *v, size_t n)
{
	const uint8_t *el;
	size_t pos = 0, len;

	while (pos < n) {
		len = list_next(v, n, &pos, &el);
		if (ci_eq(el, len, "close"))
			s->conn_close = true;
		else if (ci_eq(el, len, "keep-alive"))
			s->conn_keep = true;
		else if (ci_eq(el, len, "upgrade"))
			s->conn_upgrade = true;
	}
}

/* Record the value v[0..n) (OWS trimmed) of an extracted field. */
static int field_store(struct h1_head *h, struct head_scan *s, const struct field *f,
		       const uint8_t *v, size_t n)
{
	int err = 0;

	switch (f->id) {
	case F_CL:
		err = cl_store(h, s, v, n);
		break;
	case F_TE:
		te_store(s, v, n);
		break;
	case F_CONN:
		conn_store(s, v, n);
		break;
	case F_EXPECT:
		if (ci_eq(v, n, "100-continue"))
			h->flags |= H1F_EXPECT_CONTINUE;
		break;
	default:
		if (!(s->seen & (1u << f->id)))
			str_copy((char *)h + f->off, f->cap, v, n);
		break;
	}
	s->seen |= 1u << f->id;
	return err;
}

/* The extracted fields by name length, as field_id + 1 (0 ends a list;
 * fields[] is in field_id order), so that a header line is compared with at
 * most three names. */
#define FIELD_NAME_MIN	4	/* name_eq needs at least 4 bytes */
#define FIELD_NAME_MAX	17

static const uint8_t fields_by_len[FIELD_NAME_MAX + 1][4] = {
	[4] = { F_HOST + 1 },
	[6] = { F_EXPECT + 1 },
	[7] = { F_UPGRADE + 1 },
	[10] = { F_UA + 1, F_TRACESTATE + 1, F_CONN + 1 },
	[11] = { F_TRACEPARENT + 1 },
	[12] = { F_REQID + 1, F_CTYPE + 1 },
	[14] = { F_CL + 1 },
	[17] = { F_TE + 1 },
};

/*
 * Is the header name s[0..n) (tchar bytes only) the lower-case ref, whose
 * length is n? No tchar byte but an upper-case letter turns into a letter or
 * '-' when 0x20 is OR-ed in, so names are lowered that way, a word at a time
 * (the last word may overlap the one before). n is at least 4.
 */
static bool name_eq8(const uint8_t *s, const char *ref)
{
	uint64_t a, b;

	memcpy(&a, s, 8);
	memcpy(&b, ref, 8);
	return (a | 0x2020202020202020ull) == b;
}

static bool name_eq(const uint8_t *s, size_t n, const char *ref)	/* n >= 4 */
{
	size_t i = 0;

	if (n < 8) {	/* two words of four, overlapping */
		uint32_t a, b, c, d;

		memcpy(&a, s, 4);
		memcpy(&b, ref, 4);
		memcpy(&c, s + n - 4, 4);
		memcpy(&d, ref + n - 4, 4);
		return (a | 0x20202020u) == b && (c | 0x20202020u) == d;
	}
	for (; i + 8 <= n; i += 8)
		if (!name_eq8(s + i, ref + i))
			return false;
	return i == n || name_eq8(s + n - 8, ref + n - 8);	/* the last word overlaps */
}

static const struct field *field_find(const uint8_t *name, size_t n)
{
	const uint8_t *id;

	if (n < FIELD_NAME_MIN || n > FIELD_NAME_MAX)
		return NULL;
	for (id = fields_by_len[n]; *id; id++) {
		const struct field *f = &fields[*id - 1];

		if (name_eq(name, n, f->name))
			return f;
	}
	return NULL;
}

/*
 * The bytes of the eight at w that are below 0x20 (CTL, CR, LF, HTAB) or
 * 0x7f (DEL): 0 when none. Its lowest set bit is exactly the first such byte
 * (bit 8k + 7 for byte k, little-endian); bits above it may be wrong.
 */
static inline uint64_t word_special(const uint8_t *w)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	uint64_t x, del;

	memcpy(&x, w, 8);
	del = x ^ (0x7f * ones);
	return ((x - 0x20 * ones) & ~x & highs) | ((del - ones) & ~del & highs);
}

#ifdef __SSE2__
/* Sixteen bytes at a time (SSE2 is in every x86-64): a bit per byte of the
 * sixteen at p, lowest first. */
static inline unsigned int block_bits(__m128i hit)
{
	return (unsigned int)_mm_movemask_epi8(hit);
}

/* Bytes that are not a letter, a digit or '-', the bytes of nearly every
 * header name (other tchars are checked a byte at a time). */
static inline unsigned int block_not_name(const uint8_t *p)
{
	__m128i x = _mm_loadu_si128((const __m128i *)p);
	__m128i a = _mm_sub_epi8(_mm_or_si128(x, _mm_set1_epi8(0x20)), _mm_set1_epi8('a'));
	__m128i d = _mm_sub_epi8(x, _mm_set1_epi8('0'));
	__m128i ok = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(a, _mm_set1_epi8(25)), a),
				  _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d));

	ok = _mm_or_si128(ok, _mm_cmpeq_epi8(x, _mm_set1_epi8('-')));
	return ~block_bits(ok) & 0xffffu;
}

/* Bytes below 0x20 (CTL, CR, LF, HTAB) or 0x7f (DEL), as word_special. */
static inline unsigned int block_special(const uint8_t *p)
{
	__m128i x = _mm_loadu_si128((const __m128i *)p);
	__m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);

	return block_bits(_mm_or_si128(ctl, _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f))));
}
#endif

/*
 * The header line at l[0..m) (m: the bytes left in the head): name ":" OWS
 * value OWS, then CR LF or LF. The value is checked (C_VALUE) and the line's
 * end found in the same pass, eight bytes at a time: a word with no byte
 * below 0x20 and none 0x7f holds neither a line end nor a bad byte, and in
 * one that does the first such byte is found from its mask. Returns
 * 0 with *used set to the line's bytes, LF included, and *lf whether there
 * was one (if not, the line is the rest of l, as line_next takes it), or
 * -H1E_BAD_HEADER.
 */
static int header_line(struct h1_head *h, struct head_scan *s, const uint8_t *l, size_t m,
		       size_t *used, bool *lf)
{
	const struct field *f;
	size_t i = 0, j, v, e;

	/* the name: sixteen, then four bytes at a time while the line has them */
#ifdef __SSE2__
	{
		unsigned int other = 0;

		while (i + 16 <= m && !(other = block_not_name(l + i)))
			i += 16;
		if (other)
			i += __builtin_ctz(other);	/* the first other byte */
	}
#endif
	while (i + 4 <= m &&
	       (ctab[l[i]] & ctab[l[i + 1]] & ctab[l[i + 2]] & ctab[l[i + 3]] & C_TCHAR))
		i += 4;
	while (i < m && (ctab[l[i]] & C_TCHAR))
		i++;
	if (!i || i == m || l[i] != ':')
		return -H1E_BAD_HEADER;
	for (j = i + 1;; j++) {		/* the value, up to the line's end */
		uint64_t sp = 0;
		unsigned int sp16 = 0;

#ifdef __SSE2__
		while (j + 16 <= m && !(sp16 = block_special(l + j)))
			j += 16;
		if (sp16)
			j += __builtin_ctz(sp16);	/* the first special byte */
#endif
		if (!sp16) {	/* the rest, under sixteen bytes */
			while (j + 8 <= m && !(sp = word_special(l + j)))
				j += 8;
			if (sp && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
				j += __builtin_ctzll(sp) / 8;	/* the first special byte */
			while (j < m && l[j] >= 0x20 && l[j] != 0x7f)
				j++;
		}
		if (j == m || l[j] == '\n' || (l[j] == '\r' && (j + 1 == m || l[j + 1] == '\n')))
			break;
		if (l[j] != '\t')
			return -H1E_BAD_HEADER;
	}
	*lf = j < m && !(l[j] == '\r' && j + 1 == m);	/* else a CR ending what there is */
	*used = *lf ? j + 1 + (l[j] == '\r') : m;
	f = field_find(l, i);
	if (!f)
		return 0;
	v = i + 1;
	e = j;
	while (v < e && is_ows(l[v]))
		v++;
	while (e > v && is_ows(l[e - 1]))
		e--;
	return field_store(h, s, f, l + v, e - v);
}

/* Flags that depend on several fields. */
static void head_finish(struct h1_head *h, const struct head_scan *s)
{
	if (s->seen & (1u << F_TE))
		h->flags |= s->te_chunked ? H1F_CHUNKED : H1F_TE_OTHER;
	if (s->conn_close || (!h->version_minor && !s->conn_keep))
		h->flags |= H1F_CONN_CLOSE;
	if (s->conn_upgrade && (s->seen & (1u << F_UPGRADE)))
		h->flags |= H1F_UPGRADE;
}

/* The start line: request or status line. */
static int start_line(struct h1_parser *p, const uint8_t *l, size_t n)
{
	int err;

	if (p->dir == H1_REQUEST)
		err = start_request(p->head, l, n);
	else
		err = start_response(p->head, l, n);
	/* Resynced on a method prefix ("O" of OPTIONS): the whole method must be
	 * a known one, or it was the middle of something ("OST" of POST). */
	if (!err && p->resynced && p->dir == H1_REQUEST && !known_method(p->head->method))
		err = -H1E_BAD_START;
	return err;
}

/* head_parse: the end of the head is not in the bytes given (yet). */
#define HEAD_INCOMPLETE	1

/*
 * Parse a head into p->head (taken now): a start line, then header lines,
 * each ending in LF, up to the first empty line.
 *
 * end == NULL: b[0..n) is the head: complete (ending with its empty line),
 * or truncated by a gap (ending with its last whole line). Returns 0 or
 * -H1E_*.
 *
 * end != NULL: the head starts at b and may end anywhere in b[0..n) or
 * beyond: it is parsed as its lines are found, in one pass (no separate
 * search for its end). Returns 0 with *end set past the empty line;
 * HEAD_INCOMPLETE when b holds no end (then nothing counts: the head is parsed
 * again once complete); or -H1E_* for the first bad line of a complete head,
 * the error head_find_end and then head_parse would have found.
 */
static int head_parse(struct h1_parser *p, const uint8_t *b, size_t n, size_t *end)
{
	struct head_scan s = { 0 };
	size_t pos = 0, off = 0, len;
	bool blank = false, lf;
	const uint8_t *line;
	int err;

	len = line_next(b, n, &pos, &line, &lf);
	if (end && !lf)
		return HEAD_INCOMPLETE;
	if (!head_get(p))
		err = -H1E_HEAD_TOO_LARGE;	/* out of memory: as for the head buffer */
	else
		err = start_line(p, line, len);
	while (!err && pos < n) {
		const uint8_t *l = b + pos;

		/* an empty line: LF, CR LF, or a CR that ends what there is */
		if (l[0] == '\n' || (l[0] == '\r' && (pos + 1 == n || l[1] == '\n'))) {
			lf = l[0] == '\n' || pos + 1 < n;
			pos += lf ? 1 + (l[0] == '\r') : 1;
			blank = lf;
			break;
		}
		err = header_line(p->head, &s, l, n - pos, &len, &lf);
		if (!err && end && !lf)
			break;		/* a line still to come */
		pos += len;
	}
	if (end && (err ? !head_find_end(b, n, &off) : !blank))
		return HEAD_INCOMPLETE;
	if (err)
		return err;
	if (end)
		*end = pos;
	head_finish(p->head, &s);
	return 0;
}

static void chunk_begin(struct h1_parser *p)
{
	p->state = ST_CHUNK_SIZE;
	p->body_left = 0;
	p->line_len = 0;
	p->line_flags = 0;
}

static bool body_allowed(const struct h1_parser *p)
{
	int st = p->head->status;

	return p->dir == H1_REQUEST || (st >= 200 && st != 204 && st != 304);
}

/*
 * The head is parsed: report it, then frame the body (RFC 9112 §6.3). With
 * inferred set the head's end was guessed from a gap: a message with no
 * framing header then ends with the head. A request whose transfer-coding
 * is not chunked cannot be framed: it is reported, then lost (H1E_BAD_TE).
 */
static void head_done(struct h1_parser *p, bool inferred)
{
	enum h1_body_hint hint = H1_BODY_DEFAULT;
	const struct h1_head *h = p->head;

	if (p->cb->on_head)
		hint = p->cb->on_head(p->ctx, h);
	if (hint == H1_BODY_STOP) {
		msg_stop(p);
	} else if (hint == H1_BODY_NONE || !body_allowed(p)) {
		msg_complete(p);
	} else if (h->flags & H1F_CHUNKED) {
		chunk_begin(p);
	} else if (h->flags & H1F_TE_OTHER) {
		p->state = ST_BODY_EOF;
		if (p->dir == H1_REQUEST)
			msg_fail(p, H1E_BAD_TE);
	} else if (h->flags & H1F_HAS_CL) {
		p->body_left = h->content_length;
		p->state = ST_BODY_CL;
		if (!p->body_left)
			msg_complete(p);
	} else if (p->dir == H1_REQUEST || inferred) {
		msg_complete(p);
	} else {
		p->state = ST_BODY_EOF;
	}
}

/* A complete head of e bytes was parsed (err: 0 or -H1E_*); add bytes to the
 * message on success. Returns false after an error. */
static bool head_parsed(struct h1_parser *p, int err, size_t e, size_t add)
{
	buf_free(p);
	if (err) {
		msg_fail(p, -err);
		return false;
	}
	p->head->head_bytes = e;
	p->msg_bytes += add;
	head_done(p, false);
	return true;
}

/*
 * Parse the complete head b[0..e) (in place or in p->buf); add bytes to the
 * message on success. Returns false after an error.
 */
static bool head_complete(struct h1_parser *p, const uint8_t *b, size_t e, size_t add)
{
	return head_parsed(p, head_parse(p, b, e, NULL), e, add);
}

/* Empty lines before a start line. */
static size_t idle_feed(struct h1_parser *p, const uint8_t *d, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (d[i] == '\n') {
			p->line_flags = 0;
			continue;
		}
		if (p->line_flags & LF_CR)
			break;
		if (d[i] != '\r') {
			p->state = ST_HEAD;
			break;
		}
		p->line_flags = LF_CR;
	}
	p->msg_bytes += i;
	if (p->state == ST_IDLE && i < n) {
		msg_fail(p, H1E_BAD_START);
	} else if (p->msg_bytes > H1_HEAD_MAX) {
		msg_fail(p, H1E_HEAD_TOO_LARGE);
	} else if (p->state == ST_HEAD) {
		p->line_flags = 0;
		p->scan_off = 0;
	}
	return i;
}

/* The first bytes of a head: parse in place if the head is whole, else buffer them. */
static size_t head_feed_direct(struct h1_parser *p, const uint8_t *d, size_t n)
{
	size_t off = 0, e = 0;
	int err;

	if (n >= H1_HEAD_MAX) {		/* its end may be past the limit */
		e = head_find_end(d, n, &off);
		if (!e || e > H1_HEAD_MAX) {
			msg_fail(p, H1E_HEAD_TOO_LARGE);
			return 0;
		}
		return head_complete(p, d, e, e) ? e : 0;
	}
	err = head_parse(p, d, n, &e);	/* a whole head: found and parsed in one pass */
	if (err != HEAD_INCOMPLETE)
		return head_parsed(p, err, e, e) ? e : 0;
	head_find_end(d, n, &off);	/* where the search for its end resumes */
	if (!buf_reserve(p, n)) {
		msg_fail(p, H1E_HEAD_TOO_LARGE);
		return 0;
	}
	memcpy(p->buf, d, n);
	p->buf_len = n;
	p->scan_off = off;
	p->msg_bytes += n;
	return n;
}

/* More bytes of a head already buffered. */
static size_t head_feed_buffered(struct h1_parser *p, const uint8_t *d, size_t n)
{
	size_t old = p->buf_len, room = H1_HEAD_MAX - old, k = n < room ? n : room;
	size_t off = p->scan_off, e;

	if (!buf_reserve(p, old + k)) {
		msg_fail(p, H1E_HEAD_TOO_LARGE);
		return 0;
	}
	memcpy(p->buf + old, d, k);
	p->buf_len = old + k;
	e = head_find_end((const uint8_t *)p->buf, p->buf_len, &off);
	p->scan_off = off;
	if (e)
		return head_complete(p, (const uint8_t *)p->buf, e, e - old) ? e - old : 0;
	if (p->buf_len == H1_HEAD_MAX) {
		msg_fail(p, H1E_HEAD_TOO_LARGE);
		return 0;
	}
	p->msg_bytes += k;
	return k;
}

/* Content-Length body or chunk data, captured or not. */
static uint64_t data_feed(struct h1_parser *p, uint64_t n)
{
	uint64_t k = n < p->body_left ? n : p->body_left;

	p->msg_bytes += k;
	p->body_left -= k;
	if (p->body_left)
		return k;
	if (p->state == ST_BODY_CL) {
		msg_complete(p);
	} else {
		p->state = ST_CHUNK_CRLF;
		p->line_flags = 0;
	}
	return k;
}

/* One byte of a chunk-size line: 1 when the line ended, 0 to go on, -1 if malformed. */
static int chunk_size_byte(struct h1_parser *p, uint8_t c)
{
	uint8_t f = p->line_flags;
	int x;

	if (f & LF_CR)
		return c == '\n' ? 1 : -1;
	if (c == '\n' || c == '\r') {
		if (!(f & LF_DIGITS))
			return -1;
		p->line_flags |= LF_CR;
		return c == '\n';
	}
	if (f & LF_EXT)
		return (c >= 0x20 && c != 0x7f) || c == '\t' ? 0 : -1;
	x = hex_val(c);
	if (x >= 0 && !(f & LF_WS)) {
		if (p->body_left > (H1_NUM_MAX - x) >> 4)
			return -1;
		p->body_left = p->body_left << 4 | x;
		p->line_flags |= LF_DIGITS;
		return 0;
	}
	if (!(f & LF_DIGITS))
		return -1;
	p->line_flags |= c == ';' ? LF_EXT : LF_WS;
	return c == ';' || is_ows(c) ? 0 : -1;
}

static size_t chunk_fail(struct h1_parser *p, size_t consumed)
{
	p->msg_bytes += consumed;
	msg_fail(p, H1E_BAD_CHUNK);
	return consumed;
}

static size_t chunk_size_feed(struct h1_parser *p, const uint8_t *d, size_t n)
{
	size_t i;
	int r;

	for (i = 0; i < n; i++) {
		if (++p->line_len > H1_CHUNK_LINE_MAX)
			return chunk_fail(p, i);
		r = chunk_size_byte(p, d[i]);
		if (r < 0)
			return chunk_fail(p, i);
		if (!r)
			continue;
		p->msg_bytes += i + 1;
		p->state = p->body_left ? ST_CHUNK_DATA : ST_TRAILER;
		p->line_len = 0;
		p->line_flags = 0;
		return i + 1;
	}
	p->msg_bytes += n;
	return n;
}

static size_t chunk_crlf_feed(struct h1_parser *p, uint8_t c)
{
	if (c == '\n') {
		p->msg_bytes++;
		chunk_begin(p);
		return 1;
	}
	if (c == '\r' && !(p->line_flags & LF_CR)) {
		p->msg_bytes++;
		p->line_flags |= LF_CR;
		return 1;
	}
	return chunk_fail(p, 0);
}

/* Trailer section: lines up to an empty one, at most H1_HEAD_MAX bytes in all. */
static size_t trailer_feed(struct h1_parser *p, const uint8_t *d, size_t n)
{
	const uint8_t *lf;
	size_t i = 0, k;

	while (i < n) {
		if (p->line_flags & LF_MIDLINE) {
			lf = memchr(d + i, '\n', n - i);
			k = lf ? (size_t)(lf - d) + 1 - i : n - i;
			if (p->line_len + k > H1_HEAD_MAX) {
				p->msg_bytes += i;
				msg_fail(p, H1E_HEAD_TOO_LARGE);
				return i;
			}
			p->line_len += k;
			i += k;
			if (lf)
				p->line_flags = 0;
		} else if (d[i] == '\n') {
			p->msg_bytes += i + 1;
			msg_complete(p);
			return i + 1;
		} else if (p->line_flags & LF_CR) {
			return chunk_fail(p, i);
		} else if (d[i] == '\r') {
			p->line_flags = LF_CR;
			i++;
		} else {
			p->line_flags = LF_MIDLINE;
		}
	}
	p->msg_bytes += n;
	return n;
}

/* Feed captured bytes d[0..n) through the state machine. */
static void feed_bytes(struct h1_parser *p, const uint8_t *d, size_t n)
{
	size_t k;

	while (n) {
		switch (p->state) {
		case ST_IDLE:
			k = idle_feed(p, d, n);
			break;
		case ST_HEAD:
			if (p->buf_len)
				k = head_feed_buffered(p, d, n);
			else
				k = head_feed_direct(p, d, n);
			break;
		case ST_BODY_CL:
		case ST_CHUNK_DATA:
			k = data_feed(p, n);
			break;
		case ST_BODY_EOF:
		case ST_CHUNK_LOST:
			p->msg_bytes += n;
			return;
		case ST_CHUNK_SIZE:
			k = chunk_size_feed(p, d, n);
			break;
		case ST_CHUNK_CRLF:
			k = chunk_crlf_feed(p, d[0]);
			break;
		case ST_TRAILER:
			k = trailer_feed(p, d, n);
			break;
		case ST_RESYNC:
			p->skipped_bytes += n;
			return;
		default:
			return;
		}
		d += k;
		n -= k;
	}
}

/* Chunk framing was lost in a gap: the message goes on until the tail ends it. */
static void chunk_lose(struct h1_parser *p)
{
	bool size_zero = p->state == ST_CHUNK_SIZE && !p->body_left &&
			 (p->line_flags & (LF_WS | LF_EXT | LF_CR));

	p->mflags |= H1M_INFERRED;
	p->line_flags = p->state == ST_TRAILER || size_zero ? LF_LASTCHUNK : 0;
	p->state = ST_CHUNK_LOST;
}

/* A gap in a Content-Length body or in chunk data. */
static void body_gap(struct h1_parser *p, uint64_t gap)
{
	if (gap <= p->body_left) {
		data_feed(p, gap);
	} else if (p->state == ST_CHUNK_DATA) {
		chunk_lose(p);
		p->msg_bytes += gap;
	} else {
		gap -= p->body_left;
		p->msg_bytes += p->body_left;
		msg_complete(p);
		p->skipped_bytes += gap;
		p->state = ST_RESYNC;
	}
}

/*
 * A gap inside a head whose first p->buf_len bytes are buffered. The head is
 * taken to end with the segment when the tail ends with an empty line;
 * otherwise the message is reported lost. Consumes the gap and the tail.
 */
static void head_gap(struct h1_parser *p, uint64_t gap, const uint8_t *tail, size_t tail_len)
{
	uint64_t lead = p->msg_bytes - p->buf_len;
	size_t end = p->buf_len;
	enum h1_body_hint hint = H1_BODY_DEFAULT;
	int err;

	p->msg_bytes += gap + tail_len;
	while (end && p->buf[end - 1] != '\n')
		end--;
	if (!end) {
		msg_fail(p, H1E_GAP_IN_HEAD);
		return;
	}
	err = head_parse(p, (const uint8_t *)p->buf, end, NULL);
	buf_free(p);
	if (err) {
		msg_fail(p, -err);
		return;
	}
	p->head->flags |= H1F_HEAD_TRUNC;
	p->head->head_bytes = clamp32(p->msg_bytes - lead);
	p->mflags |= H1M_TRUNCATED;
	if (ends_blank(tail, tail_len)) {
		p->mflags |= H1M_INFERRED;
		head_done(p, true);
		return;
	}
	if (p->cb->on_head)
		hint = p->cb->on_head(p->ctx, p->head);
	p->mflags |= H1M_LOST;
	if (hint == H1_BODY_STOP) {
		msg_stop(p);
		return;
	}
	msg_complete(p);
	p->state = ST_RESYNC;
}

/* Uncaptured bytes in the middle of a segment. Returns true if it consumed the tail too. */
static bool feed_gap(struct h1_parser *p, uint64_t gap, const uint8_t *tail, size_t tail_len)
{
	switch (p->state) {
	case ST_IDLE:
		p->skipped_bytes += p->msg_bytes + gap;
		msg_reset(p);
		p->state = ST_RESYNC;
		break;
	case ST_HEAD:
		head_gap(p, gap, tail, tail_len);
		return true;
	case ST_BODY_CL:
	case ST_CHUNK_DATA:
		body_gap(p, gap);
		break;
	case ST_CHUNK_SIZE:
	case ST_CHUNK_CRLF:
	case ST_TRAILER:
		chunk_lose(p);
		p->msg_bytes += gap;
		break;
	case ST_BODY_EOF:
	case ST_CHUNK_LOST:
		p->msg_bytes += gap;
		break;
	case ST_RESYNC:
		p->skipped_bytes += gap;
		break;
	default:
		break;
	}
	return false;
}

/*
 * The last captured bytes of a segment, at most 8, into last[8 - return ..
 * 8). Bytes of head count only when nothing was lost after them. *whole
 * says whether they are the entire segment.
 */
static size_t seg_last(const uint8_t *head, size_t head_len, uint64_t gap, const uint8_t *tail,
		       size_t tail_len, uint8_t last[8], bool *whole)
{
	size_t n = tail_len < 8 ? tail_len : 8, k;

	if (n)
		memcpy(last + 8 - n, tail + tail_len - n, n);
	if (!gap && n < 8) {
		k = head_len < 8 - n ? head_len : 8 - n;
		if (k)
			memcpy(last + 8 - n - k, head + head_len - k, k);
		n += k;
	}
	*whole = !gap && n == head_len + tail_len;
	return n;
}

/* In chunk-lost mode: does this segment end the chunked body? */
static bool seg_ends_chunked(struct h1_parser *p, const uint8_t *head, size_t head_len,
			     uint64_t gap, const uint8_t *tail, size_t tail_len)
{
	static const char term[] = "\r\n0\r\n\r\n";
	uint8_t last[8];
	bool whole;
	size_t n = seg_last(head, head_len, gap, tail, tail_len, last, &whole);
	const uint8_t *e = last + 8;

	if (n >= 7 && !memcmp(e - 7, term, 7))
		return true;
	if (whole && n == 5 && !memcmp(e - 5, term + 2, 5))
		return true;
	return (p->line_flags & LF_LASTCHUNK) && ends_blank(e - n, n);
}

void h1__init(struct h1_parser *p, enum h1_dir dir, const struct h1_callbacks *cb, void *ctx)
{
	memset(p, 0, sizeof(*p));
	p->cb = cb;
	p->ctx = ctx;
	p->dir = dir;
	msg_reset(p);
}

void h1__feed(struct h1_parser *p, const uint8_t *head, size_t head_len, uint64_t gap,
	      const uint8_t *tail, size_t tail_len)
{
	if (p->stopped)
		return;
	if (!head_len && !gap) {
		head = tail;
		head_len = tail_len;
		tail_len = 0;
	}
	if (!head_len && !gap && !tail_len)
		return;
	if (p->state == ST_RESYNC) {
		if (!looks_like_start(p->dir, head, head_len)) {
			p->skipped_bytes += head_len + gap + tail_len;
			return;
		}
		p->state = ST_IDLE;
		p->resynced = true;
	}
	feed_bytes(p, head, head_len);
	if (!gap || !feed_gap(p, gap, tail, tail_len))
		feed_bytes(p, tail, tail_len);
	if (p->state == ST_CHUNK_LOST &&
	    seg_ends_chunked(p, head, head_len, gap, tail, tail_len))
		msg_complete(p);
}

void h1__lost(struct h1_parser *p)
{
	if (p->stopped)
		return;
	if (head_reported(p)) {
		p->mflags |= H1M_LOST;
		msg_complete(p);
	} else {
		p->skipped_bytes += p->msg_bytes;
		msg_reset(p);
	}
	buf_free(p);
	p->state = ST_RESYNC;
}

void h1__eof(struct h1_parser *p)
{
	if (p->state == ST_BODY_EOF) {
		p->mflags |= H1M_EOF;
		msg_complete(p);
	} else if (head_reported(p)) {
		if (p->cb->on_incomplete)
			p->cb->on_incomplete(p->ctx, p->head, p->msg_bytes);
	} else if (p->state == ST_HEAD) {
		if (p->cb->on_incomplete)
			p->cb->on_incomplete(p->ctx, NULL, p->msg_bytes);
	} else if (p->state == ST_IDLE) {
		p->skipped_bytes += p->msg_bytes;
	}
	buf_free(p);
	msg_reset(p);
	p->stopped = false;
}

void h1__free(struct h1_parser *p)
{
	if (!p)
		return;
	buf_free(p);
	head_put(p);
}

const char *h1_error_name(enum h1_error err)
{
	static const char *const names[H1E_MAX] = {
		[H1E_BAD_START] = "bad_start",
		[H1E_BAD_HEADER] = "bad_header",
		[H1E_HEAD_TOO_LARGE] = "head_too_large",
		[H1E_BAD_CL] = "bad_cl",
		[H1E_BAD_TE] = "bad_te",
		[H1E_BAD_CHUNK] = "bad_chunk",
		[H1E_GAP_IN_HEAD] = "gap_in_head",
	};

	if ((unsigned int)err >= H1E_MAX || !names[err])
		return "unknown";
	return names[err];
}
