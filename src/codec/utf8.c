/* SPDX-License-Identifier: Apache-2.0 */
#include "codec/utf8.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/*
 * Byte ranges from Unicode table 3-7 (well-formed UTF-8). The second byte
 * of E0, ED, F0 and F4 sequences has a narrower range: that is what rules
 * out overlong forms, UTF-16 surrogates (U+D800..DFFF) and code points above
 * U+10FFFF, all of which RFC 3629 forbids and Autobahn case 6.* probes.
 */
static int lead(xr_utf8 *u, uint8_t b)
{
    if (b >= 0xC2 && b <= 0xDF) { u->need = 1; u->lo = 0x80; u->hi = 0xBF; return 1; }
    if (b == 0xE0)              { u->need = 2; u->lo = 0xA0; u->hi = 0xBF; return 1; }
    if (b >= 0xE1 && b <= 0xEC) { u->need = 2; u->lo = 0x80; u->hi = 0xBF; return 1; }
    if (b == 0xED)              { u->need = 2; u->lo = 0x80; u->hi = 0x9F; return 1; }
    if (b >= 0xEE && b <= 0xEF) { u->need = 2; u->lo = 0x80; u->hi = 0xBF; return 1; }
    if (b == 0xF0)              { u->need = 3; u->lo = 0x90; u->hi = 0xBF; return 1; }
    if (b >= 0xF1 && b <= 0xF3) { u->need = 3; u->lo = 0x80; u->hi = 0xBF; return 1; }
    if (b == 0xF4)              { u->need = 3; u->lo = 0x80; u->hi = 0x8F; return 1; }
    return 0;
}

int xr_utf8_feed(xr_utf8 *u, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (u->need == 0) {
            /* Most chat text is ASCII: test sixteen or eight bytes at a time. */
#if defined(__SSE2__)
            while (i + 16 <= n &&
                   !_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + i))))
                i += 16;
#endif
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            if (i == n)
                break;
            uint8_t b = p[i++];
            if (b < 0x80)
                continue;
            if (!lead(u, b))
                return 0;
        } else {
            uint8_t b = p[i++];
            if (b < u->lo || b > u->hi)
                return 0;
            u->need--;
            u->lo = 0x80;
            u->hi = 0xBF;
        }
    }
    return 1;
}

int xr_utf8_valid(const uint8_t *p, size_t n)
{
#if defined(__SSE2__)
    /* Most text is ASCII: sixteen bytes a test, the tail as the last
     * sixteen (overlapping), and nothing else to do. */
    if (n >= 16) {
        size_t i = 0;
        __m128i high = _mm_setzero_si128();
        for (; i + 16 <= n; i += 16)
            high = _mm_or_si128(high, _mm_loadu_si128((const __m128i *)(const void *)(p + i)));
        high = _mm_or_si128(high, _mm_loadu_si128((const __m128i *)(const void *)(p + n - 16)));
        if (!_mm_movemask_epi8(high))
            return 1;
    }
#endif
    xr_utf8 u;
    xr_utf8_init(&u);
    return xr_utf8_feed(&u, p, n) && xr_utf8_complete(&u);
}
