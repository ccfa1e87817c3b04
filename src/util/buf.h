/* SPDX-License-Identifier: Apache-2.0 */
/* A growable byte buffer, reused from message to message. */
#ifndef XR_UTIL_BUF_H
#define XR_UTIL_BUF_H

#include <stddef.h>
#include <string.h>

#include <xraptor/errors.h>

typedef struct xr_buf {
    char *p;
    size_t len, cap;
} xr_buf;

/* The slow path of xr_buf_reserve: XR_OK, or XR_ENOMEM. */
int xr_buf_grow(xr_buf *b, size_t extra);

/* Room for extra more bytes: XR_OK, or XR_ENOMEM (b is then unchanged).
 * Inline: the hot paths call it per string and nearly always have the
 * room already. */
static inline int xr_buf_reserve(xr_buf *b, size_t extra)
{
    return b->cap - b->len >= extra ? XR_OK : xr_buf_grow(b, extra);
}

static inline int xr_buf_add(xr_buf *b, const void *data, size_t len)
{
    if (xr_buf_reserve(b, len) < 0)
        return XR_ENOMEM;
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    return XR_OK;
}
int xr_buf_printf(xr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void xr_buf_free(xr_buf *b);

/* Room for need elements (elem bytes each) in the array *v of *cap: the
 * capacity doubles from 64 until it is enough. XR_OK, or XR_ENOMEM (*v and
 * *cap unchanged). */
int xr_array_room(void *v, size_t *cap, size_t need, size_t elem);

#endif
