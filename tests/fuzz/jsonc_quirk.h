/* SPDX-License-Identifier: Apache-2.0 */
/*
 * json-c 0.16 (Debian 12), the fuzzers' reference reader, decodes a
 * surrogate-pair escape whose code point's low 16 bits look like a
 * surrogate (U+xD800..U+xDFFF, e.g. "\ud837\ude00" = U+1DE00) as U+FFFD
 * (json-c pull request #893). Python reads them right, and so do we (a
 * unit test pins it). For an input holding such an escape, the fuzzers
 * cannot take json-c's strings as the reference: jsonc_quirky() says so.
 */
#ifndef XR_JSONC_QUIRK_H
#define XR_JSONC_QUIRK_H

#include <stddef.h>
#include <stdint.h>

static int jsonc_hex4(const uint8_t *p, unsigned *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = p[k], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        *v = *v << 4 | d;
    }
    return 1;
}

static int jsonc_quirky(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i + 12 <= n; i++) {
        unsigned hi, lo;
        if (s[i] == '\\' && s[i + 1] == 'u' && jsonc_hex4(s + i + 2, &hi) &&
            hi >= 0xD800 && hi <= 0xDBFF && s[i + 6] == '\\' && s[i + 7] == 'u' &&
            jsonc_hex4(s + i + 8, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            unsigned cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            if ((cp & 0xF800) == 0xD800)
                return 1;
        }
    }
    return 0;
}

#endif
