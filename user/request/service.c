// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "request/service.h"

enum rule_kind { RULE_PID, RULE_PORT, RULE_COMM };

struct rule {
	enum rule_kind kind;
	uint32_t num;
	char comm[16];
	char name[SERVICE_NAME_MAX];
};

struct entry {
	uint32_t pid;		/* 0 = free slot */
	char name[SERVICE_NAME_MAX];
};

struct services {
	struct rule rules[SERVICE_MAX_RULES];
	int n_rules;
	struct entry cache[SERVICE_CACHE];	/* open addressing by pid */
	size_t used;
};

struct services *services__new(void)
{
	return calloc(1, sizeof(struct services));
}

void services__free(struct services *s)
{
	free(s);
}

int services__add_rule(struct services *s, const char *spec)
{
	const char *colon = strchr(spec, ':'), *eq = strchr(spec, '=');
	struct rule r = {};
	char *end;
	size_t kl;

	if (!colon || !eq || eq < colon || !eq[1] || strlen(eq + 1) >= SERVICE_NAME_MAX)
		return -EINVAL;
	if (s->n_rules >= SERVICE_MAX_RULES)
		return -E2BIG;
	kl = colon - spec;
	if (kl == 4 && !strncmp(spec, "comm", 4)) {
		r.kind = RULE_COMM;
		if (eq - colon - 1 < 1 || eq - colon - 1 >= (long)sizeof(r.comm))
			return -EINVAL;
		memcpy(r.comm, colon + 1, eq - colon - 1);
	} else if ((kl == 3 && !strncmp(spec, "pid", 3)) || (kl == 4 && !strncmp(spec, "port", 4))) {
		r.kind = kl == 3 ? RULE_PID : RULE_PORT;
		r.num = strtoul(colon + 1, &end, 10);
		if (end != eq || !r.num)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	strcpy(r.name, eq + 1);
	s->rules[s->n_rules++] = r;
	return 0;
}

static bool ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '.';
}

/* "module.sub:attr" or "module:factory()", not "host:8000". */
static bool is_app_arg(const char *a)
{
	const char *colon = strchr(a, ':'), *p;
	bool digits_only = true;

	if (!colon || colon == a || !(isalpha((unsigned char)a[0]) || a[0] == '_'))
		return false;
	for (p = a; p < colon; p++)
		if (!ident_char(*p))
			return false;
	if (!colon[1])
		return false;
	for (p = colon + 1; *p; p++) {
		if (!ident_char(*p) && *p != '(' && *p != ')')
			return false;
		digits_only &= isdigit((unsigned char)*p) != 0;
	}
	return !digits_only;
}

const char *service_app_arg(const char *cmdline, size_t len)
{
	const char *p = cmdline, *end = cmdline + len;

	while (p < end) {
		size_t l = strnlen(p, end - p);

		if (p[0] != '-' && l < SERVICE_NAME_MAX && p + l < end && is_app_arg(p))
			return p;
		p += l + 1;
	}
	return NULL;
}

static int read_file(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	size_t got;

	if (!f)
		return -1;
	got = fread(buf, 1, n - 1, f);
	fclose(f);
	buf[got] = 0;
	return (int)got;
}

static uint32_t parent_of(uint32_t pid)
{
	char path[64], buf[512], *p;
	int ppid = 0;

	snprintf(path, sizeof(path), "/proc/%u/stat", pid);
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %d", &ppid) != 1)
		return 0;
	return ppid > 1 ? (uint32_t)ppid : 0;
}

/* Does pid run another program than the one before it (its exe)? Unknown: no. */
static bool other_program(uint32_t pid, char *exe, size_t n)
{
	char path[64], cur[512];
	ssize_t l;

	snprintf(path, sizeof(path), "/proc/%u/exe", pid);
	l = readlink(path, cur, sizeof(cur) - 1);
	if (l <= 0)
		return false;
	cur[l] = 0;
	if (exe[0] && strcmp(exe, cur))
		return true;
	snprintf(exe, n, "%s", cur);
	return false;
}

/* Derive from the command line of pid or its parents running the same
 * program (workers of one server: a parent of another program, the shell or
 * test runner that started the server, names nothing); false if none has one. */
static bool derive(uint32_t pid, char *out)
{
	char exe[512] = "";

	for (int depth = 0; pid && depth <= SERVICE_PARENT_DEPTH; depth++) {
		char path[64], cmd[4096];
		const char *app;
		int n;

		if (other_program(pid, exe, sizeof(exe)))
			return false;
		snprintf(path, sizeof(path), "/proc/%u/cmdline", pid);
		n = read_file(path, cmd, sizeof(cmd));
		if (n > 0 && (app = service_app_arg(cmd, n))) {
			snprintf(out, SERVICE_NAME_MAX, "%s", app);
			return true;
		}
		pid = parent_of(pid);
	}
	return false;
}

static struct entry *slot(struct services *s, uint32_t pid)
{
	size_t i = (pid * 2654435761u) % SERVICE_CACHE;

	while (s->cache[i].pid && s->cache[i].pid != pid)
		i = (i + 1) % SERVICE_CACHE;
	return &s->cache[i];
}

const char *services__of(struct services *s, uint32_t pid, const char *comm, uint16_t lport)
{
	struct entry *e;

	for (int i = 0; i < s->n_rules; i++) {
		const struct rule *r = &s->rules[i];

		if ((r->kind == RULE_PID && r->num == pid) ||
		    (r->kind == RULE_PORT && r->num == lport) ||
		    (r->kind == RULE_COMM && !strncmp(r->comm, comm, sizeof(r->comm))))
			return r->name;
	}
	if (s->used >= SERVICE_CACHE * 3 / 4) {
		memset(s->cache, 0, sizeof(s->cache));
		s->used = 0;
	}
	e = slot(s, pid);
	if (e->pid)
		return e->name;
	if (!derive(pid, e->name))
		snprintf(e->name, sizeof(e->name), "%s", comm[0] ? comm : "unknown");
	e->pid = pid;
	s->used++;
	return e->name;
}

void services__forget(struct services *s, uint32_t pid)
{
	struct entry *e = slot(s, pid);
	size_t i, j;

	if (!e->pid)
		return;
	/* Backward-shift deletion keeps linear probing chains intact. */
	i = e - s->cache;
	e->pid = 0;
	s->used--;
	for (j = (i + 1) % SERVICE_CACHE; s->cache[j].pid; j = (j + 1) % SERVICE_CACHE) {
		size_t home = (s->cache[j].pid * 2654435761u) % SERVICE_CACHE;

		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			s->cache[i] = s->cache[j];
			s->cache[j].pid = 0;
			i = j;
		}
	}
}
