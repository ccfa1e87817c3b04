/* SPDX-License-Identifier: Apache-2.0 */
/* A growable byte buffer, reused from message to message. */
#ifndef XR_UTIL_BUF_H
#define XR_UTIL_BUF_H

#include <stddef.h>

typedef struct xr_buf {
    char *p;
    size_t len, cap;
} xr_buf;

/* 0, or -1 when out of memory (b is then unchanged). */
int xr_buf_reserve(xr_buf *b, size_t extra);
int xr_buf_add(xr_buf *b, const void *data, size_t len);
int xr_buf_printf(xr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void xr_buf_free(xr_buf *b);

#endif
