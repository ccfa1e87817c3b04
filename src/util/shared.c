#include "util/shared.h"

#include <stdlib.h>
#include <string.h>

xr_shared *xr_shared_new(const void *data, size_t len)
{
    xr_shared *s = malloc(sizeof *s + len);
    if (!s)
        return NULL;
    s->refs = 1;
    s->deflate_tried = 0;
    s->deflated = NULL;
    s->len = len;
    if (data && len)
        memcpy(s->data, data, len);
    return s;
}

void xr_shared_unref(xr_shared *s)
{
    if (s && --s->refs == 0) {
        xr_shared_unref(s->deflated);
        free(s);
    }
}
