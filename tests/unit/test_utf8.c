/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include "codec/utf8.h"
#include "tap.h"

static int valid(const char *s) { return xr_utf8_valid((const uint8_t *)s, strlen(s)); }

static void test_ascii_and_multibyte_accepted(void)
{
    CHECK(valid(""));
    CHECK(valid("hello, world; long enough for the 8-byte fast path"));
    CHECK(valid("\xc2\xa9 caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    CHECK(valid("\xed\x9f\xbf"));          /* U+D7FF, just below surrogates */
    CHECK(valid("\xf4\x8f\xbf\xbf"));      /* U+10FFFF, the last code point */
    CHECK(valid("\xef\xbf\xbf"));          /* U+FFFF is allowed */
}

static void test_overlong_forms_rejected(void)
{
    CHECK(!valid("\xc0\xaf"));
    CHECK(!valid("\xc1\xbf"));
    CHECK(!valid("\xe0\x80\xaf"));
    CHECK(!valid("\xe0\x9f\xbf"));
    CHECK(!valid("\xf0\x8f\xbf\xbf"));
}

static void test_surrogates_and_beyond_max_rejected(void)
{
    CHECK(!valid("\xed\xa0\x80"));         /* U+D800 */
    CHECK(!valid("\xed\xbf\xbf"));         /* U+DFFF */
    CHECK(!valid("\xf4\x90\x80\x80"));     /* U+110000 */
    CHECK(!valid("\xf5\x80\x80\x80"));
    CHECK(!valid("\xff"));
    CHECK(!valid("\xfe"));
}

static void test_truncated_and_stray_continuation_rejected(void)
{
    CHECK(!valid("\xe2\x82"));
    CHECK(!valid("abc\xf0\x9f\x98"));
    CHECK(!valid("\x80"));
    CHECK(!valid("a\xbfz"));
    CHECK(!valid("\xc2\x41"));
}

static void test_incremental_across_split_points(void)
{
    const char *s = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x98\x80 hello";
    size_t n = strlen(s);
    for (size_t cut = 0; cut <= n; cut++) {
        xr_utf8 u;
        xr_utf8_init(&u);
        CHECK(xr_utf8_feed(&u, (const uint8_t *)s, cut));
        CHECK(xr_utf8_feed(&u, (const uint8_t *)s + cut, n - cut));
        CHECK(xr_utf8_complete(&u));
    }
    /* A prefix that ends mid-sequence is valid so far but not complete. */
    xr_utf8 u;
    xr_utf8_init(&u);
    CHECK(xr_utf8_feed(&u, (const uint8_t *)"\xf0\x9f", 2));
    CHECK(!xr_utf8_complete(&u));
    /* Failure is reported at the first impossible byte (fail fast). */
    xr_utf8_init(&u);
    CHECK(!xr_utf8_feed(&u, (const uint8_t *)"\xed\xa0", 2));
}

/* Long text takes a sixteen-byte ASCII test first: a bad byte or a good
 * sequence anywhere, the tail included, must still be seen. */
static void test_one_byte_anywhere_in_long_text(void)
{
    uint8_t b[64];
    for (size_t n = 16; n <= 48; n++) {
        memset(b, 'a', n);
        CHECK(xr_utf8_valid(b, n));
        for (size_t at = 0; at < n; at++) {
            memset(b, 'a', n);
            b[at] = 0xff;
            CHECK(!xr_utf8_valid(b, n));
            if (at + 1 < n) {
                b[at] = 0xc3;
                b[at + 1] = 0xa9;
                CHECK(xr_utf8_valid(b, n));
            }
            b[at] = 0xe2;               /* cut at the end, or followed by ASCII */
            CHECK(!xr_utf8_valid(b, at + 1));
        }
    }
}

int main(void)
{
    RUN(test_ascii_and_multibyte_accepted);
    RUN(test_one_byte_anywhere_in_long_text);
    RUN(test_overlong_forms_rejected);
    RUN(test_surrogates_and_beyond_max_rejected);
    RUN(test_truncated_and_stray_continuation_rejected);
    RUN(test_incremental_across_split_points);
    return tap_done();
}
