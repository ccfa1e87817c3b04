/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The hot loop of JSON strings, eight bytes at a time: how many bytes from
 * s need no escaping (not '"', not '\\', not a control character; with
 * ascii_only, not >= 0x80 either). Pure.
 */
#ifndef XR_CODEC_JSONSCAN_H
#define XR_CODEC_JSONSCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

static inline size_t xr_json_plain_run(const unsigned char *s, size_t n, int ascii_only)
{
    size_t i = 0;
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
 * The plain run of xr_json_plain_run (any bytes >= 0x80 included), copied
 * to d as it is found: each word is stored whole, so a short run costs no
 * memcpy call. d must have room for the run plus 8 bytes.
 */
static inline size_t xr_json_copy_run(unsigned char *d, const unsigned char *s, size_t n)
{
    size_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        memcpy(d + i, &v, 8);
        uint64_t stop = xr_json_stops(v, 0);
        if (stop)
            return i + (size_t)__builtin_ctzll(stop) / 8;
    }
#endif
    for (; i < n && xr_json_plain(s[i]); i++)
        d[i] = s[i];
    return i;
}

#endif
