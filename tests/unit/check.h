/* SPDX-License-Identifier: MIT */
/*
 * The unit tests' check framework: CHECK(cond) and CHECK_U(a, b) count a
 * check and, when it fails, print the case, file and line (the first
 * CHECK_MAX_PRINTED failures). begin(name) starts a case. A test's main()
 * prints n_cases, n_checks, n_failed and returns 1 if any check failed.
 * Included by one .c file per test binary (the state is static).
 */
#ifndef OBS_TEST_CHECK_H
#define OBS_TEST_CHECK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CHECK_MAX_PRINTED	200

static const char *cur_case = "";
static int n_checks, n_failed, n_cases;

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
	return false;
}

#define CHECK(c) check((c), __FILE__, __LINE__, "%s", #c)
#define CHECK_U(a, b)                                                                   \
	check((uint64_t)(a) == (uint64_t)(b), __FILE__, __LINE__, "%s == %s: %llu != %llu", \
	      #a, #b, (unsigned long long)(a), (unsigned long long)(b))

static void begin(const char *name)
{
	cur_case = name;
	n_cases++;
}

#endif
