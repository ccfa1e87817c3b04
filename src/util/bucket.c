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
        /* rate tokens a second is rate thousandths a millisecond; the
         * elapsed time is capped where the bucket would be full anyway,
         * so the product cannot overflow. */
        uint64_t dt = now_ms - b->at_ms, full = (cap - b->milli + rate - 1) / rate;
        b->milli = dt >= full ? cap : b->milli + dt * rate;
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
