#include "internal.h"

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

void xr_vlog(const xr_server *srv, xr_log_level level, const char *fmt, va_list ap)
{
    if (srv && level > srv->opts.log_level)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);

    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);

    /* One fprintf per line keeps concurrent writers' lines whole. */
    if (srv && srv->opts.log_format == XR_LOG_JSON) {
        flockfile(stderr);
        fprintf(stderr, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",", when,
                ts.tv_nsec / 1000000, level_names[level]);
        if (srv->worker)
            fprintf(stderr, "\"worker\":%u,", srv->worker);
        fputs("\"msg\":\"", stderr);
        json_escaped(stderr, msg);
        fputs("\"}\n", stderr);
        funlockfile(stderr);
    } else if (srv && srv->worker) {
        fprintf(stderr, "%s.%03ldZ %-5s [worker %u] %s\n", when, ts.tv_nsec / 1000000,
                level_names[level], srv->worker, msg);
    } else {
        fprintf(stderr, "%s.%03ldZ %-5s %s\n", when, ts.tv_nsec / 1000000,
                level_names[level], msg);
    }
    fflush(stderr);
}

void xr_log(const xr_server *srv, xr_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    xr_vlog(srv, level, fmt, ap);
    va_end(ap);
}

void xr_server_log(xr_server *srv, xr_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    xr_vlog(srv, level, fmt, ap);
    va_end(ap);
}
