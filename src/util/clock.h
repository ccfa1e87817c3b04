/* SPDX-License-Identifier: Apache-2.0 */
/* The monotonic clock every timer and deadline is measured on. */
#ifndef XR_UTIL_CLOCK_H
#define XR_UTIL_CLOCK_H

#include <stdint.h>
#include <sys/time.h>

uint64_t xr_now_ms(void);

/* A span in milliseconds as libevent's timers take it. */
static inline struct timeval xr_timeval_ms(uint64_t ms)
{
    return (struct timeval){(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
}

#endif
