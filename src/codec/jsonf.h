/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON out without a JSON library (jsonf.c): printf-like formatting where
 * %Q quotes a string for JSON. Pure.
 *
 * Conversions: %Q (a NUL-terminated string, quoted and escaped; %.*Q takes
 * an int length first), %s and %.*s (text inserted as it is: JSON made
 * elsewhere), %d %i %u with l, ll or z, %g (a double; the shortest form that
 * reads back the same; NaN and infinities become null), %b (an int: true or
 * false), %%. Anything else is an error, not output.
 */
#ifndef XR_CODEC_JSONF_H
#define XR_CODEC_JSONF_H

#include <locale.h>
#include <stdarg.h>
#include <stddef.h>

#include "util/buf.h"

#define XR_JSONF_EFORMAT (-1)   /* a conversion this formatter does not know */
#define XR_JSONF_EARG (-2)      /* a NULL string or a negative length */
#define XR_JSONF_ENOMEM (-3)

/* Writes at most cap bytes (NUL-terminated when cap > 0) and sets *len to
 * the whole length, as snprintf does; 0 or an XR_JSONF_E* code. */
int xr_jsonf_v(char *dst, size_t cap, size_t *len, const char *fmt, va_list ap);
/* Appends to b (NUL kept after it, not counted). */
int xr_buf_jsonf_v(xr_buf *b, const char *fmt, va_list ap);

/* As xr_buf_jsonf_v, the text escaped as the inside of a JSON string: a
 * reply formatted straight into the response around it. */
int xr_buf_jsonf_escaped_v(xr_buf *b, const char *fmt, va_list ap);

/*
 * The inside of a JSON string (no quotes): '"', '\\' and control
 * characters escaped, other bytes as they are (UTF-8 is the caller's to
 * check). xr_json_escape writes at o, which must have room for
 * xr_json_escape_max(len) bytes (SIZE_MAX: too long), and returns the end.
 */
char *xr_json_escape(char *o, const char *s, size_t len);
size_t xr_json_escape_max(size_t len);
/* Appends s escaped: 0, or -1 when out of memory. */
int xr_buf_json_escaped(xr_buf *b, const char *s, size_t len);

/* The "C" numeric locale, for parsing and printing numbers whatever
 * locale the application chose; (locale_t)0 if it cannot be made. */
locale_t xr_c_locale(void);

#endif
