/* SPDX-License-Identifier: Apache-2.0 */
#include "util/shared.h"

#include <stdlib.h>
#include <string.h>

#include "util/pool.h"

xr_shared *xr_shared_new(const void *data, size_t len)
{
    size_t size = xr_pool_size(sizeof(xr_shared) + len);
    xr_shared *s = xr_pool_get(size);
    if (!s)
        return NULL;
    s->size = size;
    s->refs = 1;
    s->len = len;
    if (data && len)
        memcpy(s->data, data, len);
    return s;
}

void xr_shared_unref(xr_shared *s)
{
    if (s && --s->refs == 0)
        xr_pool_put(s, s->size);
}
