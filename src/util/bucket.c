/* SPDX-License-Identifier: Apache-2.0 */
#include "util/bucket.h"

int xr_bucket_take(xr_bucket *b, uint64_t rate, uint64_t burst, uint64_t cost, uint64_t now_ms,
                   uint64_t *wait_ms)
{
    uint64_t cap = burst * 1000;
    if (!b->at_ms) {
        b->milli = cap;
        b->at_ms = now_ms;
    } else if (now_ms > b->at_ms) {
        b->milli = xr_bucket_level(b->milli, b->at_ms, now_ms, rate, cap);
        b->at_ms = now_ms;
    }
    uint64_t need = cost * 1000;
    if (need <= b->milli) {
        b->milli -= need;
        *wait_ms = 0;
        return 1;
    }
    *wait_ms = need > cap ? UINT64_MAX : (need - b->milli + rate - 1) / rate;
    return 0;
}
