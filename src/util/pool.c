/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fan-out and pipelined replies fill one output block per connection per
 * burst and give it back as soon as the kernel took the bytes: a malloc and
 * a free per connection per burst without this cache, and with glibc handing
 * the top of its heap back to the kernel between bursts, page faults again
 * every burst.
 */
#include "util/pool.h"

#include <stdlib.h>

#define POOL_MIN_SHIFT 10
#define POOL_CLASSES 7

/* Kept at most, per class: 8 MiB of 1 and 2 KiB blocks (one per receiver
 * of a fan-out burst), 2 MiB of each larger size. An idle server holds at
 * most 26 MiB here, and xr_pool_trim() gives it back. */
#define POOL_CLASS_BYTES(k) ((k) < 2 ? 8u << 20 : 2u << 20)

typedef struct block { struct block *next; } block;

static __thread block *free_list[POOL_CLASSES];
static __thread unsigned free_count[POOL_CLASSES];

/* Under AddressSanitizer the cache would hide a use after free of a cached
 * block from it: sanitized builds allocate every block. */
#if defined(__SANITIZE_ADDRESS__)
#define XR_POOL_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XR_POOL_OFF 1
#endif
#endif

size_t xr_pool_size(size_t need)
{
    if (need > XR_POOL_MAX)
        return need;
    size_t s = XR_POOL_MIN;
    while (s < need)
        s <<= 1;
    return s;
}

__attribute__((unused)) static int class_of(size_t size)
{
    if (size < XR_POOL_MIN || size > XR_POOL_MAX || (size & (size - 1)))
        return -1;
    return __builtin_ctzl(size) - POOL_MIN_SHIFT;
}

void *xr_pool_get(size_t size)
{
#ifndef XR_POOL_OFF
    int k = class_of(size);
    if (k >= 0 && free_list[k]) {
        block *b = free_list[k];
        free_list[k] = b->next;
        free_count[k]--;
        return b;
    }
#endif
    return malloc(size);
}

void xr_pool_put(void *p, size_t size)
{
    if (!p)
        return;
#ifdef XR_POOL_OFF
    (void)size;
#else
    int k = class_of(size);
    if (k >= 0 && free_count[k] < POOL_CLASS_BYTES(k) >> (POOL_MIN_SHIFT + k)) {
        block *b = p;
        b->next = free_list[k];
        free_list[k] = b;
        free_count[k]++;
        return;
    }
#endif
    free(p);
}

void xr_pool_trim(void)
{
    for (int k = 0; k < POOL_CLASSES; k++) {
        while (free_list[k]) {
            block *b = free_list[k];
            free_list[k] = b->next;
            free(b);
        }
        free_count[k] = 0;
    }
}
