/* SPDX-License-Identifier: Apache-2.0 */
#include "util/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* JSON string body: control characters and quotes escaped. */
static void json_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
}

/*
 * Log lines carry names a peer chose (channels, paths, broker replies): a
 * control byte in one would forge a line or drive the reader's terminal.
 * Every message is made printable here, once, for every sink: bytes below
 * 0x20 and DEL become \xNN (a backslash itself stays, it is harmless).
 */
static size_t printable(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (; *src && n + 5 <= cap; src++) {
        unsigned char c = (unsigned char)*src;
        if (c < 0x20 || c == 0x7f) {
            dst[n++] = '\\';
            dst[n++] = 'x';
            dst[n++] = hex[c >> 4];
            dst[n++] = hex[c & 15];
        } else {
            dst[n++] = (char)c;
        }
    }
    dst[n] = '\0';
    return n;
}

void xr_vlog(const xr_logger *log, xr_log_level level, const char *fmt, va_list ap)
{
    if (log && level > log->level)
        return;
    char raw[1024], msg[4 * sizeof raw + 1];
    vsnprintf(raw, sizeof raw, fmt, ap);
    printable(msg, sizeof msg, raw);
    if (log && log->fn) {
        log->fn(level, log->worker, msg, log->fn_ud);
        return;
    }

    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);

    /* One fprintf per line keeps concurrent writers' lines whole. */
    if (log && log->format == XR_LOG_JSON) {
        flockfile(stderr);
        fprintf(stderr, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",", when,
                ts.tv_nsec / 1000000, level_names[level]);
        if (log->worker)
            fprintf(stderr, "\"worker\":%u,", log->worker);
        fputs("\"msg\":\"", stderr);
        json_escaped(stderr, msg);
        fputs("\"}\n", stderr);
        funlockfile(stderr);
    } else if (log && log->worker) {
        fprintf(stderr, "%s.%03ldZ %-5s [worker %u] %s\n", when, ts.tv_nsec / 1000000,
                level_names[level], log->worker, msg);
    } else {
        fprintf(stderr, "%s.%03ldZ %-5s %s\n", when, ts.tv_nsec / 1000000,
                level_names[level], msg);
    }
    fflush(stderr);
}

void xr_log(const xr_logger *log, xr_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    xr_vlog(log, level, fmt, ap);
    va_end(ap);
}
