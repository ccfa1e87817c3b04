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
