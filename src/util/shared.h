/* SPDX-License-Identifier: Apache-2.0 */
/* Bytes shared by many outgoing frames (fan-out): refcounted, immutable once
 * filled. Every receiver's output holds a reference until its bytes are sent,
 * so a fan-out to N receivers keeps one copy. */
#ifndef XR_UTIL_SHARED_H
#define XR_UTIL_SHARED_H

#include <stddef.h>

typedef struct xr_shared {
    unsigned refs;
    size_t size;                    /* the block's, for the pool */
    size_t len;
    char data[];
} xr_shared;

/* data NULL: the caller fills the len bytes. One reference. Blocks come
 * from the pool (util/pool.h): a warm fan-out allocates nothing. */
xr_shared *xr_shared_new(const void *data, size_t len);
static inline xr_shared *xr_shared_ref(xr_shared *s) { s->refs++; return s; }
void xr_shared_unref(xr_shared *s);

#endif
