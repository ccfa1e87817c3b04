/* SPDX-License-Identifier: Apache-2.0 */
/* Log lines to stderr, text or JSON, one write per line, or to the
 * application's callback. Every layer logs through the xr_logger it was
 * handed; the server owns it. */
#ifndef XR_UTIL_LOG_H
#define XR_UTIL_LOG_H

#include <stdarg.h>

#include "xraptor.h"

typedef struct xr_logger {
    xr_log_level level;
    xr_log_format format;
    unsigned worker;        /* 0: no worker tag */
    xr_log_fn fn;           /* the application's sink instead of stderr, or NULL */
    void *fn_ud;
} xr_logger;

void xr_vlog(const xr_logger *log, xr_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void xr_log(const xr_logger *log, xr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define XR_ERROR(l, ...) xr_log((l), XR_LOG_ERROR, __VA_ARGS__)
#define XR_WARN(l, ...)  xr_log((l), XR_LOG_WARN, __VA_ARGS__)
#define XR_INFO(l, ...)  xr_log((l), XR_LOG_INFO, __VA_ARGS__)
#define XR_DEBUG(l, ...) \
    do { if ((l)->level >= XR_LOG_DEBUG) xr_log((l), XR_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
