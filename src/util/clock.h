/* SPDX-License-Identifier: Apache-2.0 */
/* The monotonic clock every timer and deadline is measured on. */
#ifndef XR_UTIL_CLOCK_H
#define XR_UTIL_CLOCK_H

#include <stdint.h>

uint64_t xr_now_ms(void);

#endif
