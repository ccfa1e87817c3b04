/*
 * A cache of libevent's buffer blocks. libevent gives each burst of output
 * (and each referenced fan-out payload) a buffer chain of 2^k bytes, k >= 10,
 * and frees it as soon as the bytes are written: one malloc/free pair per
 * message per connection. Under a fan-out to thousands, glibc also hands the
 * top of its heap back to the kernel between bursts, so every burst pays
 * page faults again. Blocks of those sizes are kept here for reuse instead.
 *
 * Every block is still a plain malloc() block, so the cache can be installed
 * after libevent has allocated (blocks from before are freed into it, or with
 * free(), alike). Lists are per thread: no locks, and a thread other than
 * the loop's never takes a block the loop is using.
 */
#include "internal.h"

#include <malloc.h>
#include <stdlib.h>

#define POOL_MIN_SHIFT 10               /* 1 KiB: libevent's smallest chain */
#define POOL_CLASSES 7                  /* up to 64 KiB */
/* Kept at most, per class: 8 MiB of 1 KiB blocks (a fan-out references
 * its payload from one such chain per receiver), 2 MiB of each larger size
 * (read and write bursts). An idle server holds at most 20 MiB here. */
#define POOL_CLASS_BYTES(k) ((k) == 0 ? 8u << 20 : 2u << 20)

typedef struct block { struct block *next; } block;

static __thread block *free_list[POOL_CLASSES];
static __thread unsigned free_count[POOL_CLASSES];

static void *pool_malloc(size_t size)
{
    /* Exactly 2^k: the sizes libevent asks for its chains. */
    if (size >= (1u << POOL_MIN_SHIFT) && !(size & (size - 1))) {
        int k = __builtin_ctzl(size) - POOL_MIN_SHIFT;
        if (k < POOL_CLASSES && free_list[k]) {
            block *b = free_list[k];
            free_list[k] = b->next;
            free_count[k]--;
            return b;
        }
    }
    return malloc(size);
}

static void *pool_realloc(void *p, size_t size)
{
    return realloc(p, size);
}

static void pool_free(void *p)
{
    if (!p)
        return;
    /* The class a block can serve follows from its real size. */
    size_t usable = malloc_usable_size(p);
    if (usable >= (1u << POOL_MIN_SHIFT)) {
        int k = 63 - __builtin_clzl(usable) - POOL_MIN_SHIFT;
        if (k < POOL_CLASSES &&
            free_count[k] < POOL_CLASS_BYTES(k) >> (POOL_MIN_SHIFT + k)) {
            block *b = p;
            b->next = free_list[k];
            free_list[k] = b;
            free_count[k]++;
            return;
        }
    }
    free(p);
}

/* Under AddressSanitizer the cache would hide a use after free of a cached
 * block from it: sanitized builds keep plain malloc. */
#if defined(__SANITIZE_ADDRESS__)
#define XR_POOL_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XR_POOL_OFF 1
#endif
#endif

void xr_pool_install(void)
{
#ifdef XR_POOL_OFF
    (void)pool_malloc;
    (void)pool_realloc;
    (void)pool_free;
    return;
#endif
    static int done;
    if (!done) {
        done = 1;
        event_set_mem_functions(pool_malloc, pool_realloc, pool_free);
    }
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
