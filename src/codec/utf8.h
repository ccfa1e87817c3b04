/* SPDX-License-Identifier: Apache-2.0 */
/* Incremental UTF-8 validator (RFC 3629): text frames and close reasons.
 * Pure: no I/O, no globals; state carries across fragments. */
#ifndef XR_UTF8_H
#define XR_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef struct xr_utf8 {
    uint8_t need;  /* continuation bytes still expected */
    uint8_t lo;    /* allowed range of the next continuation byte */
    uint8_t hi;
} xr_utf8;

static inline void xr_utf8_init(xr_utf8 *u) { u->need = 0; u->lo = 0x80; u->hi = 0xBF; }

/* Feeds n bytes; returns 1 while the input is a valid prefix, 0 as soon as
 * it cannot be (the state is then meaningless). */
int xr_utf8_feed(xr_utf8 *u, const uint8_t *p, size_t n);

/* True when everything fed so far ends on a whole code point. */
static inline int xr_utf8_complete(const xr_utf8 *u) { return u->need == 0; }

/* Whole-buffer check. */
int xr_utf8_valid(const uint8_t *p, size_t n);

/* Names of channels, rooms and members: 1..max bytes of UTF-8 without
 * control characters. XR_NAME_OK, or what is wrong (xr_name_problem()
 * says it in words, for an error answer). */
enum { XR_NAME_OK = 0, XR_NAME_EMPTY = -1, XR_NAME_LONG = -2, XR_NAME_CONTROL = -3,
       XR_NAME_UTF8 = -4 };
int xr_name_check(const char *name, size_t n, size_t max);
const char *xr_name_problem(int rc);

#endif
