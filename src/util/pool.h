/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Blocks of 2^k bytes (1 KiB .. 64 KiB) kept for reuse: the transport's
 * output segments come from here, so a warm server sends without calling
 * malloc. Per process and per thread (no locks): only the loop's thread
 * uses it.
 */
#ifndef XR_UTIL_POOL_H
#define XR_UTIL_POOL_H

#include <stddef.h>

#define XR_POOL_MIN 1024u
#define XR_POOL_MAX 65536u

/* The block size that holds need bytes: a class size, or need itself when
 * it is beyond XR_POOL_MAX (such blocks are plain malloc). */
size_t xr_pool_size(size_t need);
/* A block of exactly size bytes (a value of xr_pool_size()), or NULL. */
void *xr_pool_get(size_t size);
void xr_pool_put(void *p, size_t size);
/* Frees every cached block. */
void xr_pool_trim(void);

#endif
