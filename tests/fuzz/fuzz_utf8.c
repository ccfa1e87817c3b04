/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the UTF-8 validator against a plain reference decoder, whole
 * and fed in two pieces at every split point of short inputs. */
#include <stdint.h>
#include <stdlib.h>

#include "codec/utf8.h"

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

/* Decodes code points the slow way: RFC 3629 scalar values only. */
static int reference(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = p[i];
        int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + (size_t)len > n)
            return 0;
        if (len > 1)
            c &= 0x3F >> (len - 1);
        for (int k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            c = c << 6 | (p[i + k] & 0x3F);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return 0;
        i += (size_t)len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int want = reference(data, size);
    ASSERT(xr_utf8_valid(data, size) == want);
    if (size <= 64) {
        for (size_t cut = 0; cut <= size; cut++) {
            xr_utf8 u;
            xr_utf8_init(&u);
            int ok = xr_utf8_feed(&u, data, cut) && xr_utf8_feed(&u, data + cut, size - cut) &&
                     xr_utf8_complete(&u);
            ASSERT(ok == want);
        }
    }
    return 0;
}
