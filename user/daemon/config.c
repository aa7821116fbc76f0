// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "daemon/config.h"

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define MAX_KEYS	64
#define KEY_NAME_MAX	64	/* bytes of a key quoted in a message */

_Static_assert(OPTIONS_MAX <= MAX_KEYS, "raise MAX_KEYS");

const struct option_def *config_key_find(const char *name)
{
	const struct option_def *o = option_find(name);

	return o && o->kind != CONFIG_NONE ? o : NULL;
}

const char *config_env_override(const char *key)
{
	const struct option_def *k = config_key_find(key);

	for (size_t i = 0; k && i < ARRAY_SIZE(k->env) && k->env[i]; i++) {
		const char *v = getenv(k->env[i]);

		if (v && *v)
			return k->env[i];
	}
	return NULL;
}

/* ---- parsing ---- */

struct state {
	const char *name;		/* file name for messages */
	const char *text;		/* the whole input (reader errors give an offset) */
	size_t len;
	yaml_parser_t yp;
	config_apply_fn apply;
	void *ctx;
	bool check_only;		/* first pass: the whole file's shape, no apply() */
	char *err;
	size_t err_len;
	char key[KEY_NAME_MAX + 1];	/* the key being read or last read, "" before the first */
	bool in_value;			/* between a key and the end of its value */
	int seen_line[MAX_KEYS];	/* line of each key already given, 0: not given */
};

/* Record the first problem as "NAME:LINE: <where>: message"; returns -EINVAL. */
static int __attribute__((format(printf, 3, 4))) fail(struct state *st, int line,
						       const char *fmt, ...)
{
	size_t n;
	va_list ap;

	if (!st->err_len)
		return -EINVAL;
	if (!st->key[0])
		n = snprintf(st->err, st->err_len, "%s:%d: ", st->name, line);
	else
		n = snprintf(st->err, st->err_len, "%s:%d: %skey '%s': ", st->name, line,
			     st->in_value ? "" : "after ", st->key);
	if (n < st->err_len) {
		va_start(ap, fmt);
		vsnprintf(st->err + n, st->err_len - n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* A value fit for a one-line message: control characters as '?', long ones cut. */
static void quote_value(const char *v, char *out, size_t out_len)
{
	size_t n = 0;

	for (; *v && n + 4 < out_len && n < CONFIG_ERR_VALUE_MAX; v++)
		out[n++] = (unsigned char)*v < 0x20 || *v == 0x7f ? '?' : *v;
	if (*v)
		n += snprintf(out + n, out_len - n, "...");
	out[n] = 0;
}

static int line_of_offset(const struct state *st, size_t off)
{
	int line = 1;

	for (size_t i = 0; i < off && i < st->len; i++)
		line += st->text[i] == '\n';
	return line;
}

static int syntax_error(struct state *st)
{
	const yaml_parser_t *p = &st->yp;
	const char *what = p->problem ? p->problem : "unknown error";

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return fail(st, (int)p->mark.line + 1, "out of memory");
	case YAML_READER_ERROR:
		return fail(st, line_of_offset(st, p->problem_offset),
			    "not UTF-8 text: %s at byte %zu", what, p->problem_offset);
	default:
		break;
	}
	if (p->context)
		return fail(st, (int)p->problem_mark.line + 1, "syntax error: %s (%s at line %d)",
			    what, p->context, (int)p->context_mark.line + 1);
	return fail(st, (int)p->problem_mark.line + 1, "syntax error: %s", what);
}

/* The next event; aliases are refused (no anchors-and-aliases bombs, no surprises). */
static int next(struct state *st, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&st->yp, ev))
		return syntax_error(st);
	if (ev->type == YAML_ALIAS_EVENT) {
		int line = (int)ev->start_mark.line + 1;

		yaml_event_delete(ev);
		return fail(st, line, "aliases (*name) are not supported");
	}
	return 0;
}

static int line_of(const yaml_event_t *ev)
{
	return (int)ev->start_mark.line + 1;
}

static const char *scalar(const yaml_event_t *ev)
{
	return (const char *)ev->data.scalar.value;
}

static bool is_null(const yaml_event_t *ev)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };

	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
		if (!strcmp(scalar(ev), nulls[i]))
			return true;
	return false;
}

/* YAML 1.1 booleans: 1 true, 0 false, -1 neither. */
static int boolean(const char *v)
{
	static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On",
					   "ON" };
	static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off",
					  "Off", "OFF" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcmp(v, yes[i]))
			return 1;
		if (!strcmp(v, no[i]))
			return 0;
	}
	return -1;
}

/* A scalar usable as a value: not null, no NUL byte, not too long. */
static int check_scalar(struct state *st, const yaml_event_t *ev)
{
	if (is_null(ev))
		return fail(st, line_of(ev), "no value (write the value, or remove the key)");
	if (strlen(scalar(ev)) != ev->data.scalar.length)
		return fail(st, line_of(ev), "value contains a NUL byte");
	if (ev->data.scalar.length > CONFIG_VALUE_MAX)
		return fail(st, line_of(ev), "value longer than %d bytes", CONFIG_VALUE_MAX);
	return 0;
}

static int apply(struct state *st, const struct option_def *k, const char *v, int line)
{
	char q[CONFIG_ERR_VALUE_MAX + 8];
	int err;

	if (st->check_only)
		return 0;
	err = st->apply(st->ctx, k->name, v, st->name, line);
	if (!err)
		return 0;
	quote_value(v, q, sizeof(q));
	if (err == -E2BIG)
		return fail(st, line, "too many values: '%s' is one over the limit", q);
	if (err == -ENOENT)
		return fail(st, line, "not supported by this obsd");
	return fail(st, line, "invalid value '%s'", q);
}

static int apply_scalar(struct state *st, const struct option_def *k, const yaml_event_t *ev)
{
	int b;

	if (check_scalar(st, ev))
		return -EINVAL;
	if (k->kind != CONFIG_FLAG)
		return apply(st, k, scalar(ev), line_of(ev));
	b = boolean(scalar(ev));
	if (b < 0)
		return fail(st, line_of(ev), "expects true or false, not '%.*s'",
			    CONFIG_ERR_VALUE_MAX, scalar(ev));
	return apply(st, k, b ? "true" : "false", line_of(ev));
}

/* The elements of a list, after its SEQUENCE_START: applied one by one, or joined. */
static int apply_list(struct state *st, const struct option_def *k, int start_line)
{
	char joined[CONFIG_VALUE_MAX + 1] = "";
	size_t jl = 0;
	yaml_event_t ev;
	int err;

	for (;;) {
		if (next(st, &ev))
			return -EINVAL;
		if (ev.type == YAML_SEQUENCE_END_EVENT)
			break;
		if (ev.type != YAML_SCALAR_EVENT) {
			err = fail(st, line_of(&ev), "list elements must be values, not %s",
				   ev.type == YAML_MAPPING_START_EVENT ? "mappings" : "lists");
			yaml_event_delete(&ev);
			return err;
		}
		err = check_scalar(st, &ev);
		if (!err && k->kind == CONFIG_LIST) {
			err = apply(st, k, scalar(&ev), line_of(&ev));
		} else if (!err) {
			if (jl + !!jl + ev.data.scalar.length > CONFIG_VALUE_MAX)
				err = fail(st, line_of(&ev), "list longer than %d bytes",
					   CONFIG_VALUE_MAX);
			else
				jl += sprintf(joined + jl, "%s%s", jl ? "," : "", scalar(&ev));
		}
		yaml_event_delete(&ev);
		if (err)
			return err;
	}
	yaml_event_delete(&ev);
	if (k->kind == CONFIG_CSV) {
		if (!jl)
			return fail(st, start_line, "empty list");
		return apply(st, k, joined, start_line);
	}
	return 0;
}

static int value(struct state *st, const struct option_def *k)
{
	yaml_event_t ev;
	int err = 0;

	if (next(st, &ev))
		return -EINVAL;
	switch (ev.type) {
	case YAML_SCALAR_EVENT:
		err = apply_scalar(st, k, &ev);
		break;
	case YAML_SEQUENCE_START_EVENT:
		if (k->kind == CONFIG_LIST || k->kind == CONFIG_CSV)
			err = apply_list(st, k, line_of(&ev));
		else
			err = fail(st, line_of(&ev), "takes one value, not a list");
		break;
	default:
		err = fail(st, line_of(&ev), "expects a value, not a mapping");
		break;
	}
	yaml_event_delete(&ev);
	return err;
}

/* One "key: value" pair, from its key event. */
static int pair(struct state *st, const yaml_event_t *kev)
{
	const struct option_def *k;
	size_t i;

	snprintf(st->key, sizeof(st->key), "%s", scalar(kev));
	st->in_value = true;
	k = config_key_find(scalar(kev));
	if (!k)
		return fail(st, line_of(kev), "unknown key (obsd --help lists the option names)");
	i = k - options;
	if (st->seen_line[i])
		return fail(st, line_of(kev), "given twice (first at line %d)", st->seen_line[i]);
	st->seen_line[i] = line_of(kev);
	if (value(st, k))
		return -EINVAL;
	st->in_value = false;
	return 0;
}

/* After MAPPING_START of the document: every pair up to MAPPING_END. */
static int mapping(struct state *st)
{
	yaml_event_t ev;
	int err;

	for (;;) {
		if (next(st, &ev))
			return -EINVAL;
		if (ev.type == YAML_MAPPING_END_EVENT)
			break;
		if (ev.type == YAML_SCALAR_EVENT)
			err = pair(st, &ev);
		else
			err = fail(st, line_of(&ev), "keys must be option names, not %s",
				   ev.type == YAML_MAPPING_START_EVENT ? "mappings" : "lists");
		yaml_event_delete(&ev);
		if (err)
			return err;
	}
	yaml_event_delete(&ev);
	return 0;
}

/* After DOCUMENT_START: an empty document, or one mapping; then DOCUMENT_END. */
static int document(struct state *st)
{
	yaml_event_t ev;
	int err = 0;

	if (next(st, &ev))
		return -EINVAL;
	if (ev.type == YAML_MAPPING_START_EVENT)
		err = mapping(st);
	else if (ev.type != YAML_SCALAR_EVENT || !is_null(&ev))
		err = fail(st, line_of(&ev), "the file must be a mapping of option: value");
	yaml_event_delete(&ev);
	if (err)
		return err;
	if (next(st, &ev))
		return -EINVAL;
	yaml_event_delete(&ev);	/* DOCUMENT_END: the parser allows nothing else here */
	return 0;
}

static int stream(struct state *st)
{
	yaml_event_t ev;
	bool had_doc = false;

	if (next(st, &ev))	/* STREAM_START */
		return -EINVAL;
	yaml_event_delete(&ev);
	for (;;) {
		if (next(st, &ev))
			return -EINVAL;
		if (ev.type == YAML_STREAM_END_EVENT)
			break;
		if (had_doc) {
			st->key[0] = 0;
			fail(st, line_of(&ev),
			     "more than one document (---): put every option in one");
			yaml_event_delete(&ev);
			return -EINVAL;
		}
		yaml_event_delete(&ev);	/* DOCUMENT_START */
		if (document(st))
			return -EINVAL;
		had_doc = true;
	}
	yaml_event_delete(&ev);
	return 0;
}

/* One pass over the text; fresh parser state each time. */
static int run_pass(struct state *st)
{
	int ret;

	st->key[0] = 0;
	st->in_value = false;
	memset(st->seen_line, 0, sizeof(st->seen_line));
	if (!yaml_parser_initialize(&st->yp)) {
		if (st->err_len)
			snprintf(st->err, st->err_len, "%s: out of memory", st->name);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&st->yp, (const unsigned char *)st->text, st->len);
	ret = stream(st);
	yaml_parser_delete(&st->yp);
	return ret;
}

/*
 * Two passes: the first checks syntax, keys and shapes, so that a broken
 * file applies nothing; the second applies (only apply() can fail then).
 */
int config_parse(const char *name, const char *text, size_t len, config_apply_fn apply,
		 void *ctx, char *err, size_t err_len)
{
	struct state *st = calloc(1, sizeof(*st));
	int ret;

	if (!st) {
		if (err_len)
			snprintf(err, err_len, "%s: out of memory", name);
		return -ENOMEM;
	}
	if (err_len)
		err[0] = 0;
	st->name = name;
	st->text = text;
	st->len = len;
	st->apply = apply;
	st->ctx = ctx;
	st->err = err;
	st->err_len = err_len;
	st->check_only = true;
	ret = run_pass(st);
	if (!ret) {
		st->check_only = false;
		ret = run_pass(st);
	}
	free(st);
	return ret;
}

int config_load(const char *path, config_apply_fn apply, void *ctx, char *err, size_t err_len)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;
	int ret;

	if (!f) {
		ret = -errno;
		if (err_len)
			snprintf(err, err_len, "%s: cannot open: %s", path, strerror(-ret));
		return ret;
	}
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (!buf) {
		fclose(f);
		if (err_len)
			snprintf(err, err_len, "%s: out of memory", path);
		return -ENOMEM;
	}
	n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
	if (ferror(f)) {
		ret = -EIO;
		if (err_len)
			snprintf(err, err_len, "%s: cannot read: %s", path, strerror(EIO));
	} else if (n > CONFIG_FILE_MAX) {
		ret = -EFBIG;
		if (err_len)
			snprintf(err, err_len, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
	} else {
		buf[n] = 0;
		ret = config_parse(path, buf, n, apply, ctx, err, err_len);
	}
	fclose(f);
	free(buf);
	return ret;
}
