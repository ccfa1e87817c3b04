/* SPDX-License-Identifier: Apache-2.0 */
#include "util/buf.h"

#include <xraptor/errors.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int xr_buf_grow(xr_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return XR_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > ((size_t)-1) / 2)
            return XR_ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return XR_ENOMEM;
    b->p = p;
    b->cap = cap;
    return XR_OK;
}

int xr_buf_printf(xr_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->cap > b->len ? b->p + b->len : NULL, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return XR_EINVAL;
    if ((size_t)n >= b->cap - b->len) {
        /* Did not fit: grow (room for the NUL too) and format again. */
        if (xr_buf_reserve(b, (size_t)n + 1) < 0)
            return XR_ENOMEM;
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return XR_OK;
}

void xr_buf_free(xr_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int xr_array_room(void *v, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return XR_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > ((size_t)-1) / 2)
            return XR_ENOMEM;
        c *= 2;
    }
    if (c > ((size_t)-1) / elem)
        return XR_ENOMEM;
    void **pv = v;
    void *q = realloc(*pv, c * elem);
    if (!q)
        return XR_ENOMEM;
    *pv = q;
    *cap = c;
    return XR_OK;
}
