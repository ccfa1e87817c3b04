/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A token bucket: `rate` tokens a second up to `burst`, full at first.
 * The refill is computed from the time since the last take, in
 * thousandths of a token, never rounded away per call: a client that asks
 * every few milliseconds gets exactly rate x seconds + burst over any
 * span (the refill bug other servers shipped came from truncating each
 * step's share to whole tokens). Pure: the caller passes the clock.
 */
#ifndef XR_UTIL_BUCKET_H
#define XR_UTIL_BUCKET_H

#include <stdint.h>

/* The level (tokens x 1000) of a bucket that held milli at at_ms, now:
 * rate thousandths a millisecond, never above cap (tokens x 1000). The
 * elapsed time is capped where the bucket would be full anyway, so the
 * product cannot overflow. Shared by the per-connection bucket and the
 * per-address one in shared memory (iprate.c). */
static inline uint64_t xr_bucket_level(uint64_t milli, uint64_t at_ms, uint64_t now_ms,
                                       uint64_t rate, uint64_t cap)
{
    if (now_ms <= at_ms)
        return milli;
    uint64_t dt = now_ms - at_ms, full = (cap - milli + rate - 1) / rate;
    return dt >= full ? cap : milli + dt * rate;
}

typedef struct xr_bucket {
    uint64_t milli;      /* tokens x 1000 */
    uint64_t at_ms;      /* when milli was last brought up to date; 0: never */
} xr_bucket;

/*
 * Takes cost tokens if the bucket holds them: 1 taken, 0 not, and then
 * *wait_ms says how long until it would (a cost over burst never fits:
 * UINT64_MAX). rate and burst are per second and in tokens, both > 0.
 */
int xr_bucket_take(xr_bucket *b, uint64_t rate, uint64_t burst, uint64_t cost, uint64_t now_ms,
                   uint64_t *wait_ms);

#endif
