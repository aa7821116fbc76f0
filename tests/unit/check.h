/* SPDX-License-Identifier: MIT */
/*
 * The unit tests' and fuzz harnesses' check framework: CHECK(cond),
 * CHECK_U(a, b) (unsigned), CHECK_I(a, b) (signed) and CHECK_S(a, b)
 * (strings) count a check and, when it fails, print the case, file and line
 * (the first CHECK_MAX_PRINTED failures); each evaluates its arguments once
 * and returns whether it held. begin(name) starts a case. A test's main()
 * prints n_cases, n_checks, n_failed and returns 1 if any check failed.
 * CHECK_NUL(s, cap): s is a NUL-terminated string within cap bytes.
 *
 * A fuzz harness defines CHECK_ABORT before including it: a failed check
 * prints where and aborts, so that libFuzzer keeps the input as a crash.
 *
 * Included by one .c file per test binary (the state is static).
 */
#ifndef OBS_TEST_CHECK_H
#define OBS_TEST_CHECK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_MAX_PRINTED	200

static const char *cur_case __attribute__((unused)) = "";
static int n_checks, n_failed, n_cases __attribute__((unused));

static bool check(bool ok, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static bool check(bool ok, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	n_checks++;
	if (ok)
		return true;
	if (++n_failed <= CHECK_MAX_PRINTED) {
		fprintf(stderr, "FAIL [%s] %s:%d: ", cur_case, file, line);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
#ifdef CHECK_ABORT
	abort();
#endif
	return false;
}

static __attribute__((unused)) bool check_u(uint64_t a, uint64_t b, const char *file, int line,
					    const char *sa, const char *sb)
{
	return check(a == b, file, line, "%s == %s: %llu != %llu", sa, sb, (unsigned long long)a,
		     (unsigned long long)b);
}

static __attribute__((unused)) bool check_i(long long a, long long b, const char *file, int line,
					    const char *sa, const char *sb)
{
	return check(a == b, file, line, "%s == %s: %lld != %lld", sa, sb, a, b);
}

static __attribute__((unused)) bool check_s(const char *a, const char *b, const char *file,
					    int line, const char *sa, const char *sb)
{
	return check(a && b && !strcmp(a, b), file, line, "%s == %s: \"%s\" != \"%s\"", sa, sb,
		     a ? a : "(null)", b ? b : "(null)");
}

#define CHECK(c) check((c), __FILE__, __LINE__, "%s", #c)
#define CHECK_U(a, b) check_u((a), (b), __FILE__, __LINE__, #a, #b)
#define CHECK_I(a, b) check_i((a), (b), __FILE__, __LINE__, #a, #b)
#define CHECK_S(a, b) check_s((a), (b), __FILE__, __LINE__, #a, #b)
#define CHECK_NUL(s, cap) check(memchr((s), '\0', (cap)) != NULL, __FILE__, __LINE__, \
				"%s: no NUL in %zu bytes", #s, (size_t)(cap))

static __attribute__((unused)) void begin(const char *name)
{
	cur_case = name;
	n_cases++;
}

#endif
