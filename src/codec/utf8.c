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

/*
 * The one byte policy for names (channels, rooms, members): they reach
 * brokers as subjects and keys, maps as keys and logs as text, so each
 * is 1..max bytes of UTF-8 with no control character (C0, DEL) and in
 * particular no NUL, which C strings on the way would cut short.
 */
int xr_name_check(const char *name, size_t n, size_t max)
{
    if (n == 0)
        return XR_NAME_EMPTY;
    if (n > max)
        return XR_NAME_LONG;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f)
            return XR_NAME_CONTROL;
    }
    return xr_utf8_valid((const uint8_t *)name, n) ? XR_NAME_OK : XR_NAME_UTF8;
}

const char *xr_name_problem(int rc)
{
    switch (rc) {
    case XR_NAME_EMPTY: return "is empty";
    case XR_NAME_LONG: return "is longer than --max-name-length";
    case XR_NAME_CONTROL: return "holds a control character (NUL, newline, ESC, ...)";
    case XR_NAME_UTF8: return "is not UTF-8";
    default: return "is fine";
    }
}
