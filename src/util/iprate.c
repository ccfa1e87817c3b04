/* SPDX-License-Identifier: Apache-2.0 */
#include "util/iprate.h"

#include <string.h>
#include <sys/mman.h>

#include "util/bucket.h"
#include "util/hash.h"

#define SLOTS 65536u         /* 1 MiB: a slot per address seen in the last second */
#define PROBES 16u
#define MILLI_BITS 24        /* up to 16 777 tokens */
#define MILLI_MASK ((1ull << MILLI_BITS) - 1)

typedef struct slot {
    uint64_t owner;         /* the address's keyed hash (never 0), or 0: never used */
    uint64_t state;         /* ms since the table was made << 24 | tokens x 1000 */
} slot;

struct xr_iprate {
    size_t map_len;
    uint64_t rate, burst;   /* per second; tokens */
    uint64_t epoch_ms;      /* the clock when made: state holds ms after it */
    slot slots[];
};

xr_iprate *xr_iprate_new(unsigned rate, unsigned burst)
{
    if (rate < 1 || burst < 1 || rate > 16000 || burst > 16000)
        return NULL;
    /* The key of the hash is made before any fork, like iplimit's. */
    (void)xr_hash("", 0);
    size_t len = sizeof(xr_iprate) + SLOTS * sizeof(slot);
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    xr_iprate *r = m;
    r->map_len = len;
    r->rate = rate;
    r->burst = burst;
    r->epoch_ms = 0;
    return r;
}

void xr_iprate_free(xr_iprate *r)
{
    if (r)
        munmap(r, r->map_len);
}

/* The bucket in word s at ms, brought up to date: tokens x 1000. */
static uint64_t tokens_at(const xr_iprate *r, uint64_t s, uint64_t ms)
{
    return xr_bucket_level(s & MILLI_MASK, s >> MILLI_BITS, ms, r->rate, r->burst * 1000);
}

int xr_iprate_take(xr_iprate *r, const void *addr, size_t alen, uint64_t now_ms)
{
    uint8_t b[17] = {0};
    memcpy(b, addr, alen > 16 ? 16 : alen);
    b[16] = (uint8_t)alen;
    uint64_t h = xr_hash(b, sizeof b) | 1;      /* never 0 */
    if (!__atomic_load_n(&r->epoch_ms, __ATOMIC_RELAXED)) {
        uint64_t zero = 0;
        __atomic_compare_exchange_n(&r->epoch_ms, &zero, now_ms ? now_ms : 1, 0,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    }
    uint64_t epoch = __atomic_load_n(&r->epoch_ms, __ATOMIC_RELAXED);
    uint64_t ms = now_ms > epoch ? now_ms - epoch : 0, cap = r->burst * 1000;
    size_t i = (size_t)(h >> 20) % SLOTS;
    for (unsigned p = 0; p < PROBES; p++, i = (i + 1) % SLOTS) {
        slot *s = &r->slots[i];
        uint64_t owner = __atomic_load_n(&s->owner, __ATOMIC_ACQUIRE);
        if (owner != h) {
            /* Another address's: take it over only when its bucket is full
             * again (nothing about it is left to remember). */
            uint64_t st = __atomic_load_n(&s->state, __ATOMIC_RELAXED);
            if (owner && tokens_at(r, st, ms) < cap)
                continue;
            if (!__atomic_compare_exchange_n(&s->owner, &owner, h, 0, __ATOMIC_ACQ_REL,
                                             __ATOMIC_ACQUIRE) && owner != h)
                continue;   /* another worker took it for another address */
        }
        for (;;) {
            uint64_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
            /* A slot just taken over still holds its old bucket, full by the
             * rule above: the same as a new one. */
            uint64_t milli = owner != h ? cap : tokens_at(r, st, ms);
            if (milli < 1000)
                return XR_IPRATE_REFUSED;
            uint64_t at = st >> MILLI_BITS > ms ? st >> MILLI_BITS : ms;
            uint64_t next = at << MILLI_BITS | (milli - 1000);
            if (__atomic_compare_exchange_n(&s->state, &st, next, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
                return XR_IPRATE_TAKEN;
            owner = h;      /* lost a race on the bucket: read it again */
        }
    }
    return XR_IPRATE_UNTRACKED;
}
