/* SPDX-License-Identifier: Apache-2.0 */
/* Minimal TAP producer for the unit tests: one "ok"/"not ok" per test
 * function, with what was expected and what came instead on failure. */
#ifndef XR_TAP_H
#define XR_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed, tap_cur_failed;

#define CHECK(cond) do { if (!(cond)) { \
    printf("#   %s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
    tap_cur_failed = 1; } } while (0)
#define CHECK_EQ(got, want) do { long long g_ = (long long)(got), w_ = (long long)(want); \
    if (g_ != w_) { printf("#   %s:%d: %s: expected %lld, got %lld\n", \
    __FILE__, __LINE__, #got, w_, g_); tap_cur_failed = 1; } } while (0)
#define CHECK_STR(got, want) do { const char *g_ = (got), *w_ = (want); \
    if (!g_ || strcmp(g_, w_) != 0) { printf("#   %s:%d: %s: expected \"%s\", got \"%s\"\n", \
    __FILE__, __LINE__, #got, w_, g_ ? g_ : "(null)"); tap_cur_failed = 1; } } while (0)

#define RUN(fn) do { tap_cur_failed = 0; fn(); tap_n++; \
    if (tap_cur_failed) tap_failed++; \
    printf("%s %d - %s\n", tap_cur_failed ? "not ok" : "ok", tap_n, #fn); } while (0)

static inline int tap_done(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif
