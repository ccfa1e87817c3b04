/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The hot loop of JSON strings: how many bytes from s need no escaping
 * (not '"', not '\\', not a control character; with ascii_only, not >= 0x80
 * either), sixteen bytes at a time where SSE2 is (every x86-64), eight
 * elsewhere. Pure.
 */
#ifndef XR_CODEC_JSONSCAN_H
#define XR_CODEC_JSONSCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define XR_ONES 0x0101010101010101ull
#define XR_HIGH 0x8080808080808080ull

/* High bit set in each byte of v that is zero. */
static inline uint64_t xr_zero_bytes(uint64_t v)
{
    return (v - XR_ONES) & ~v & XR_HIGH;
}

/* High bit set in each byte of v that ends a plain run. */
static inline uint64_t xr_json_stops(uint64_t v, int ascii_only)
{
    /* Bytes < 0x20: (v - 0x20..) borrows into the high bit, unless the
     * byte was >= 0x80 already (~v). A borrow can only flag bytes above a
     * true hit, so the lowest flag is exact. */
    uint64_t stop = xr_zero_bytes(v ^ (XR_ONES * '"')) | xr_zero_bytes(v ^ (XR_ONES * '\\')) |
                    ((v - XR_ONES * 0x20) & ~v & XR_HIGH);
    return ascii_only ? stop | (v & XR_HIGH) : stop;
}

static inline int xr_json_plain(unsigned char c)
{
    return c >= 0x20 && c != '"' && c != '\\';
}

#if defined(__SSE2__)
/* A bit per byte of the 16 at s that ends a plain run, bit k for s[k]. */
static inline unsigned xr_json_stops16(__m128i v, int ascii_only)
{
    __m128i stop = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
    /* A byte below 0x20 is its own unsigned minimum with 0x1f. */
    stop = _mm_or_si128(stop, _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v));
    unsigned m = (unsigned)_mm_movemask_epi8(stop);
    return ascii_only ? m | (unsigned)_mm_movemask_epi8(v) : m;
}
#endif

static inline size_t xr_json_plain_run(const unsigned char *s, size_t n, int ascii_only)
{
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 16 <= n; i += 16) {
        unsigned stop = xr_json_stops16(_mm_loadu_si128((const __m128i *)(const void *)(s + i)),
                                        ascii_only);
        if (stop)
            return i + (size_t)__builtin_ctz(stop);
    }
#endif
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        uint64_t stop = xr_json_stops(v, ascii_only);
        if (stop) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return i + (size_t)__builtin_ctzll(stop) / 8;   /* the first byte is the lowest */
#else
            break;
#endif
        }
    }
    while (i < n && xr_json_plain(s[i]) && (!ascii_only || s[i] < 0x80))
        i++;
    return i;
}

/*
 * The plain run at s when fewer than 16 bytes are left before end: found
 * in the 16 bytes that end at end when they are readable (lo, where the
 * readable text starts, is at least 16 before end), so that a short tail
 * costs one block, not a loop a byte.
 */
static inline size_t xr_json_tail_run(const unsigned char *s, const unsigned char *end,
                                      const unsigned char *lo)
{
    size_t rem = (size_t)(end - s), i = 0;
#if defined(__SSE2__)
    if (end - lo >= 16 && rem < 16) {
        unsigned stop = xr_json_stops16(_mm_loadu_si128((const __m128i *)(const void *)(end - 16)), 0)
                        >> (16 - rem);
        return stop ? (size_t)__builtin_ctz(stop) : rem;
    }
#else
    (void)lo;
#endif
    while (i < rem && xr_json_plain(s[i]))
        i++;
    return i;
}

/* n bytes copied; up to 16 without a call: two moves that overlap. */
static inline void xr_copy_small(unsigned char *d, const unsigned char *s, size_t n)
{
    if (n > 16) {
        memcpy(d, s, n);
    } else if (n >= 8) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    }
}

/* What a block copy (xr_json_copy_run_ascii, the parser's and the escaper's loops)
 * may write past the bytes it keeps. */
#define XR_JSON_COPY_SLACK 16

/*
 * The ASCII plain run (xr_json_plain_run with ascii_only: a writer that
 * checks UTF-8 stops at bytes >= 0x80), copied to d as it is found: each
 * block is stored whole, so a short run costs no memcpy call. d must have
 * room for the run plus XR_JSON_COPY_SLACK bytes.
 */
static inline size_t xr_json_copy_run_ascii(unsigned char *d, const unsigned char *s, size_t n)
{
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        _mm_storeu_si128((__m128i *)(void *)(d + i), v);
        unsigned stop = xr_json_stops16(v, 1);
        if (stop)
            return i + (size_t)__builtin_ctz(stop);
    }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        memcpy(d + i, &v, 8);
        uint64_t stop = xr_json_stops(v, 1);
        if (stop)
            return i + (size_t)__builtin_ctzll(stop) / 8;
    }
#endif
    for (; i < n && xr_json_plain(s[i]) && s[i] < 0x80; i++)
        d[i] = s[i];
    return i;
}

#endif
