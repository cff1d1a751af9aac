/* testlib.h: a tiny TAP test harness for unit tests (meson test protocol: 'tap'). */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tl_failed, tl_count, tl_cur_failed;

/* Declare a test: TEST(name) { ... CHECK(...); } then RUN(name) from main. */
#define TEST(name) static void name(void)

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        printf("#   %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);        \
                        tl_cur_failed = 1;                                                         \
                }                                                                                  \
        } while (0)

#define CHECK_STREQ(a, b)                                                                          \
        do {                                                                                       \
                const char *_a = (a), *_b = (b);                                                   \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                                           \
                        printf("#   %s:%d: CHECK_STREQ failed: '%s' != '%s'\n", __FILE__,          \
                               __LINE__, _a ? _a : "(null)", _b ? _b : "(null)");                  \
                        tl_cur_failed = 1;                                                         \
                }                                                                                  \
        } while (0)

#define CHECK_INTEQ(a, b)                                                                          \
        do {                                                                                       \
                long long _a = (long long)(a), _b = (long long)(b);                                \
                if (_a != _b) {                                                                    \
                        printf("#   %s:%d: CHECK_INTEQ failed: %s = %lld, expected %lld\n",        \
                               __FILE__, __LINE__, #a, _a, _b);                                    \
                        tl_cur_failed = 1;                                                         \
                }                                                                                  \
        } while (0)

#define RUN(name)                                                                                  \
        do {                                                                                       \
                tl_cur_failed = 0;                                                                 \
                name();                                                                            \
                tl_count++;                                                                        \
                printf("%s %d - %s\n", tl_cur_failed ? "not ok" : "ok", tl_count, #name);          \
                if (tl_cur_failed)                                                                 \
                        tl_failed++;                                                               \
                fflush(stdout);                                                                    \
        } while (0)

#define TEST_DONE()                                                                                \
        do {                                                                                       \
                printf("1..%d\n", tl_count);                                                       \
                return tl_failed ? 1 : 0;                                                          \
        } while (0)
