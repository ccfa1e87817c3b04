/* SPDX-License-Identifier: Apache-2.0 */
#include "util/clock.h"

#include <time.h>

uint64_t xr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
