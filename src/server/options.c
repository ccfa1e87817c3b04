/* SPDX-License-Identifier: Apache-2.0 */
#include "server/server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* Every default lives here and only here. */
/* The size of the first xr_options (0.1): a smaller one was not made by
 * xr_options_init(). */
#define XR_OPTIONS_V1_SIZE (offsetof(xr_options, workers) + sizeof(unsigned))

void xr_options_init_size(xr_options *caller, size_t size)
{
    /* The defaults are written whole here, then as much as the caller's
     * struct holds is copied out: its members beyond are not ours. */
    xr_options full, *o = &full;
    memset(o, 0, sizeof *o);
    o->max_message_size = 1u << 20;
    o->max_frame_size = 0;
    o->max_output_buffer = 4u << 20;
    o->max_header_size = 8u << 10;
    o->max_connections = 10000;
    o->handshake_timeout_ms = 10000;
    o->ping_interval_ms = 20000;
    o->ping_timeout_ms = 20000;
    o->close_timeout_ms = 5000;
    o->drain_timeout_ms = 10000;
    o->log_level = XR_LOG_INFO;
    o->log_format = XR_LOG_TEXT;
    o->health_path = "/health";
    o->metrics_path = "/metrics";
    o->antenna = NULL;  /* memory:// */
    o->room_check_ms = 7000;
    o->compression_min_size = 128;
    o->compression_window_bits = 12;
    o->compression_level = 6;
    o->workers = 1;
    o->max_name_length = 256;
    o->max_channels_per_conn = 128;
    o->max_rooms_per_member = 128;
    o->max_pending_requests = 64;
    o->jwt_leeway_ms = 30000;
    o->jwt_grace_ms = 10000;
    o->api_idempotency_ms = 60000;
    o->presence_grace_ms = 3000;
    o->presence_ttl_ms = 30000;
    o->presence_max_info = 1024;
    o->history_max_recover = 1000;
    if (!caller || size < sizeof(size_t))
        return;
    memcpy(caller, o, size < sizeof *o ? size : sizeof *o);
    caller->size = size;
}

int xr_options_full(xr_options *dst, const xr_options *src, char *err, size_t errlen)
{
    if (!src || src->size < XR_OPTIONS_V1_SIZE) {
        snprintf(err, errlen, "options were not set up with xr_options_init()");
        return XR_EINVAL;
    }
    xr_options_init(dst);
    memcpy(dst, src, src->size < sizeof *dst ? src->size : sizeof *dst);
    dst->size = sizeof *dst;
    return XR_OK;
}

int xr_parse_size(const char *s, size_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return XR_EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return XR_EINVAL;
    unsigned shift = 0;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return XR_EINVAL;
        }
        end++;
        if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
            end += strlen(end);
        if (*end)
            return XR_EINVAL;
    }
    /* 4 GiB is far beyond any sane per-connection limit; refusing more
     * keeps size arithmetic free of overflow everywhere else. */
    if (v > (UINT64_C(4) << 30) >> shift)
        return XR_EINVAL;
    *out = (size_t)(v << shift);
    return 0;
}

int xr_parse_duration(const char *s, unsigned *ms)
{
    char *end;
    if (!s || ((*s < '0' || *s > '9') && *s != '.'))
        return XR_EINVAL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s)
        return XR_EINVAL;
    if (strcmp(end, "ms") == 0)
        v /= 1000.0;
    else if (*end && strcmp(end, "s") != 0)
        return XR_EINVAL;
    if (!(v >= 0.0) || v > 86400.0)
        return XR_EINVAL;
    *ms = (unsigned)(v * 1000.0 + 0.5);
    return 0;
}

typedef enum { F_HELP, F_VERSION, F_CONFIG, F_BOOL, F_STR, F_LIST, F_SIZE, F_COUNT, F_TIME, F_LEVEL, F_FORMAT,
               F_WORKERS } ftype;

typedef struct flag {
    const char *name;
    ftype type;
    size_t off;        /* field in xr_options */
    size_t count_off;  /* F_LIST: its counter */
    size_t max;        /* F_LIST: capacity */
    const char *arg;
    const char *help;
} flag;

#define OFF(f) offsetof(xr_options, f)
static const flag flags[] = {
    {"listen", F_LIST, OFF(listen), OFF(n_listen), XR_MAX_LISTENERS, "ADDR",
     "listen on HOST:PORT, [IPv6]:PORT or :PORT; prefix ws:// or wss:// to\n"
     "force plain or TLS (repeatable; default 127.0.0.1:8765)"},
    {"tls-cert", F_STR, OFF(tls_cert), 0, 0, "FILE", "PEM certificate chain: listeners serve wss://"},
    {"tls-key", F_STR, OFF(tls_key), 0, 0, "FILE", "PEM private key of --tls-cert"},
    {"tls-ciphers", F_STR, OFF(tls_ciphers), 0, 0, "LIST", "OpenSSL cipher list for TLS 1.2 (default: ECDHE with AEAD)"},
    {"max-message-size", F_SIZE, OFF(max_message_size), 0, 0, "SIZE", "largest message after reassembly; bigger gets close 1009 (1MiB)"},
    {"max-frame-size", F_SIZE, OFF(max_frame_size), 0, 0, "SIZE", "largest single frame (default: --max-message-size)"},
    {"max-output-buffer", F_SIZE, OFF(max_output_buffer), 0, 0, "SIZE", "queued output per connection before a slow reader\nis closed with 1008 (4MiB)"},
    {"max-header-size", F_SIZE, OFF(max_header_size), 0, 0, "SIZE", "largest HTTP request head; bigger gets 431 (8KiB)"},
    {"max-connections", F_COUNT, OFF(max_connections), 0, 0, "N", "open WebSocket connections; beyond it upgrades get 503 (10000)"},
    {"max-connections-per-ip", F_COUNT, OFF(max_connections_per_ip), 0, 0, "N",
     "sockets one client address may hold in the whole server (all\n--workers); beyond, new ones are closed at once (0: no limit,\nthe default)"},
    {"max-name-length", F_COUNT, OFF(max_name_length), 0, 0, "N",
     "longest channel, room or member name in bytes, 1-1024 (256)"},
    {"max-channels-per-connection", F_COUNT, OFF(max_channels_per_conn), 0, 0, "N",
     "channels one connection may SUB to; beyond, SUB gets an\nerror answer (128)"},
    {"max-rooms-per-member", F_COUNT, OFF(max_rooms_per_member), 0, 0, "N",
     "rooms one member may be in; beyond, xr_room_join fails (128)"},
    {"max-pending-requests", F_COUNT, OFF(max_pending_requests), 0, 0, "N",
     "requests of one connection still held by handlers; beyond,\nnew ones get an error answer (64)"},
    {"rate-limit", F_COUNT, OFF(rate_limit), 0, 0, "N",
     "requests one connection may make a second; beyond, they get\n"
     "{\"error\": \"rate_limited\", \"retry_after\": S} (0: no limit, the default)"},
    {"rate-limit-burst", F_COUNT, OFF(rate_limit_burst), 0, 0, "N",
     "requests of --rate-limit that may come at once (default: the rate)"},
    {"rate-limit-bytes", F_SIZE, OFF(rate_limit_bytes), 0, 0, "SIZE",
     "request bytes one connection may send a second, a second's\nworth at once (0: no limit, the default)"},
    {"rate-limit-strikes", F_COUNT, OFF(rate_limit_strikes), 0, 0, "N",
     "refused requests piled up (draining at --rate-limit a second)\n"
     "that close the connection with 1008 (default: ten bursts)"},
    {"rate-limit-connections", F_COUNT, OFF(rate_limit_connections), 0, 0, "N",
     "new connections one client address may open a second in the\n"
     "whole server (all --workers); beyond, closed at accept before\n"
     "any TLS handshake (0: no limit, the default; at most 16000)"},
    {"rate-limit-connections-burst", F_COUNT, OFF(rate_limit_connections_burst), 0, 0, "N",
     "connections of --rate-limit-connections that may come at once\n(default: the rate)"},
    {"jwt-key", F_LIST, OFF(jwt_keys), OFF(n_jwt_keys), XR_MAX_LIST, "[KID=]FILE",
     "connections need a JWT signed by this key: an HMAC secret, a PEM\n"
     "public key (RSA, EC P-256/P-384, Ed25519) or a JWK set (JSON, each\n"
     "key with its own kid); repeatable; SIGHUP rereads"},
    {"jwt-audience", F_STR, OFF(jwt_audience), 0, 0, "AUD", "tokens' aud must name this"},
    {"jwt-issuer", F_STR, OFF(jwt_issuer), 0, 0, "ISS", "tokens' iss must be this"},
    {"jwt-leeway", F_TIME, OFF(jwt_leeway_ms), 0, 0, "SECS", "clock skew allowed on exp and nbf (30)"},
    {"jwt-grace", F_TIME, OFF(jwt_grace_ms), 0, 0, "SECS",
     "a connection whose token expired is closed 4001 this long after,\n"
     "unless it sent a fresh one (PUT /xraptor/token) (10)"},
    {"api-key-file", F_STR, OFF(api_key_file), 0, 0, "FILE",
     "turn on POST /api/publish and /api/broadcast for callers that send\n"
     "'Authorization: apikey KEY' with the key in FILE (off without it)"},
    {"api-listen", F_STR, OFF(api_listen), 0, 0, "ADDR",
     "serve the publish API on this address only (HOST:PORT, http:// or\n"
     "https://), not on the WebSocket port (off: the API shares --listen)"},
    {"presence", F_BOOL, OFF(presence), 0, 0, NULL,
     "keep presence (who is in the room, join and leave events) for every room\n"
     "(memory://, redis://, redis-cluster://, nats:// with JetStream)"},
    {"presence-room", F_LIST, OFF(presence_rooms), OFF(n_presence_rooms), XR_MAX_LIST, "PATTERN",
     "keep presence for rooms matching PATTERN ('*' any run; repeatable)"},
    {"presence-grace", F_TIME, OFF(presence_grace_ms), 0, 0, "SECS",
     "a user's leave waits this long for a reconnect (3)"},
    {"presence-ttl", F_TIME, OFF(presence_ttl_ms), 0, 0, "SECS",
     "a stopped node's members are gone everywhere within this (30)"},
    {"presence-max-info", F_SIZE, OFF(presence_max_info), 0, 0, "SIZE",
     "largest info (JSON) a member may carry (1K)"},
    {"history-size", F_COUNT, OFF(history_size), 0, 0, "N",
     "every channel and room keeps its newest N messages (with --history-ttl;\n"
     "0: off, the default) for a SUB with 'since' to recover what it missed"},
    {"history-ttl", F_TIME, OFF(history_ttl_ms), 0, 0, "SECS",
     "a kept message goes after this long (with --history-size; 0: off)"},
    {"history-room", F_LIST, OFF(history_rooms), OFF(n_history_rooms), XR_MAX_LIST,
     "'PATTERN N SECS'", "keep history for channels and rooms matching PATTERN ('*' any\n"
     "run): the newest N messages for SECS (repeatable)"},
    {"history-max-recover", F_COUNT, OFF(history_max_recover), 0, 0, "N",
     "a SUB that missed more is told recovered: false, nothing replayed (1000)"},
    {"api-idempotency-window", F_TIME, OFF(api_idempotency_ms), 0, 0, "SECS",
     "an API call's Idempotency-Key publishes once within this (60)"},
    {"handshake-timeout", F_TIME, OFF(handshake_timeout_ms), 0, 0, "SECS", "TLS + HTTP upgrade must complete within (10)"},
    {"ping-interval", F_TIME, OFF(ping_interval_ms), 0, 0, "SECS", "ping a client silent for this long; 0 disables (20)"},
    {"ping-timeout", F_TIME, OFF(ping_timeout_ms), 0, 0, "SECS", "close with 1011 when the pong is this late (20)"},
    {"close-timeout", F_TIME, OFF(close_timeout_ms), 0, 0, "SECS", "wait this long for the peer's close frame (5)"},
    {"drain-timeout", F_TIME, OFF(drain_timeout_ms), 0, 0, "SECS", "on SIGTERM/SIGINT, wait this long for clients (10)"},
    {"subprotocol", F_LIST, OFF(subprotocols), OFF(n_subprotocols), XR_MAX_LIST, "NAME", "accept this subprotocol (repeatable, in preference order)"},
    {"allow-origin", F_LIST, OFF(allowed_origins), OFF(n_allowed_origins), XR_MAX_LIST, "ORIGIN", "accept upgrades only from this Origin (repeatable);\nothers get 403"},
    {"health-path", F_STR, OFF(health_path), 0, 0, "PATH", "JSON health endpoint, \"\" disables (/health)"},
    {"metrics-path", F_STR, OFF(metrics_path), 0, 0, "PATH", "Prometheus endpoint, \"\" disables (/metrics)"},
    {"antenna", F_STR, OFF(antenna), 0, 0, "URL", "broker behind channels: memory:// (default), redis://HOST:PORT,\n"
     "redis-cluster://HOST:PORT[,HOST:PORT...], nats://HOST:PORT,\n"
     "kafka://HOST:PORT/TOPIC, or a module .so"},
    {"antenna-dir", F_STR, OFF(antenna_dir), 0, 0, "DIR", "where antenna modules are (default: " XR_ANTENNA_DIR ")"},
    {"room-check-interval", F_TIME, OFF(room_check_ms), 0, 0, "SECS", "ask the antenna which remote room members still\nlisten; 0 disables (7)"},
    {"static-dir", F_LIST, OFF(static_dirs), OFF(n_static_dirs), XR_MAX_LIST, "DIR",
     "serve files under DIR on plain GET (repeatable)"},
    {"compression", F_BOOL, OFF(compression), 0, 0, NULL, "offer permessage-deflate (RFC 7692) to clients that ask"},
    {"compression-min-size", F_SIZE, OFF(compression_min_size), 0, 0, "SIZE", "messages smaller than this go out uncompressed (128)"},
    {"compression-window-bits", F_COUNT, OFF(compression_window_bits), 0, 0, "N",
     "largest LZ77 window (2^N bytes, 9-15) a client may use when it\nlets the server choose; it costs 2^N + 7KiB per client (12)"},
    {"compression-level", F_COUNT, OFF(compression_level), 0, 0, "N", "zlib level 1 (fast) to 9 (small) for outgoing messages (6)"},
    {"compression-no-context-takeover", F_BOOL, OFF(compression_no_context), 0, 0, NULL,
     "ask clients to compress each message on its own: no\ninflate state per connection, somewhat larger messages"},
    {"workers", F_WORKERS, OFF(workers), 0, 0, "N|auto",
     "serve with N processes sharing the port (SO_REUSEPORT) under a\n"
     "supervisor; auto: one per core. Channels then need a broker\nantenna (1)"},
    {"log-level", F_LEVEL, OFF(log_level), 0, 0, "LEVEL", "error, warn, info or debug (info)"},
    {"log-format", F_FORMAT, OFF(log_format), 0, 0, "FMT", "text or json (text)"},
    {"config", F_CONFIG, 0, 0, 0, "FILE", "read flags from FILE first: 'name = value' lines (every long\n"
     "flag; repeatable ones repeated), '#' comments; the command\nline wins"},
    {"help", F_HELP, 0, 0, 0, NULL, "show this help and exit"},
    {"version", F_VERSION, 0, 0, 0, NULL, "show the version and exit"},
};
#define N_FLAGS (sizeof flags / sizeof flags[0])

__attribute__((format(printf, 3, 4)))
static int usage_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return XR_EUSAGE;
}

/* How far into xr_options a flag writes. */
static size_t flag_end(const flag *f)
{
    switch (f->type) {
    case F_STR: return f->off + sizeof(const char *);
    case F_LIST: {
        size_t a = f->off + f->max * sizeof(const char *), b = f->count_off + sizeof(size_t);
        return a > b ? a : b;
    }
    case F_SIZE: return f->off + sizeof(size_t);
    case F_BOOL: return f->off + sizeof(int);
    case F_LEVEL: return f->off + sizeof(xr_log_level);
    case F_FORMAT: return f->off + sizeof(xr_log_format);
    case F_COUNT: case F_TIME: case F_WORKERS: return f->off + sizeof(unsigned);
    default: return 0;
    }
}

static int set(xr_options *o, const flag *f, const char *v, char *err, size_t errlen)
{
    char *field = (char *)o + f->off;
    /* A program built against an older xraptor has a shorter struct. */
    if (flag_end(f) > o->size)
        return usage_error(err, errlen, "--%s: this program was built against an older "
                           "libxraptor that has no such option", f->name);
    switch (f->type) {
    case F_BOOL:
        *(int *)field = 1;
        return XR_OK;
    case F_STR:
        *(const char **)field = v;
        return XR_OK;
    case F_LIST: {
        size_t *n = (size_t *)((char *)o + f->count_off);
        if (*n == f->max)
            return usage_error(err, errlen, "--%s: at most %zu allowed", f->name, f->max);
        if (!*v)
            return usage_error(err, errlen, "--%s: empty value", f->name);
        ((const char **)field)[(*n)++] = v;
        return XR_OK;
    }
    case F_SIZE: {
        size_t sz;
        if (xr_parse_size(v, &sz) < 0)
            return usage_error(err, errlen, "--%s: '%s' is not a size (bytes, or with k, M, G; at most 4G)",
                               f->name, v);
        *(size_t *)field = sz;
        return XR_OK;
    }
    case F_COUNT: {
        char *end;
        errno = 0;
        unsigned long n = strtoul(v, &end, 10);
        if (errno || end == v || *end || *v == '-' || n > 10000000)
            return usage_error(err, errlen, "--%s: '%s' is not a count from 0 to 10000000",
                               f->name, v);
        *(unsigned *)field = (unsigned)n;
        return XR_OK;
    }
    case F_TIME:
        if (xr_parse_duration(v, (unsigned *)field) < 0)
            return usage_error(err, errlen, "--%s: '%s' is not a duration (seconds, e.g. 20, 0.5 or 250ms; at most 86400)",
                               f->name, v);
        return XR_OK;
    case F_LEVEL: {
        static const char *const names[] = {"error", "warn", "info", "debug"};
        for (int k = 0; k < 4; k++)
            if (strcmp(v, names[k]) == 0) {
                *(xr_log_level *)field = (xr_log_level)k;
                return XR_OK;
            }
        return usage_error(err, errlen, "--%s: '%s' is not one of error, warn, info, debug", f->name, v);
    }
    case F_WORKERS: {
        if (strcmp(v, "auto") == 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            *(unsigned *)field = n < 1 ? 1 : n > XR_MAX_WORKERS ? XR_MAX_WORKERS : (unsigned)n;
            return XR_OK;
        }
        char *end;
        errno = 0;
        unsigned long n = strtoul(v, &end, 10);
        if (errno || end == v || *end || *v == '-' || n < 1 || n > XR_MAX_WORKERS)
            return usage_error(err, errlen, "--%s: '%s' is not auto or a count from 1 to %d",
                               f->name, v, XR_MAX_WORKERS);
        *(unsigned *)field = (unsigned)n;
        return XR_OK;
    }
    case F_FORMAT:
        if (strcmp(v, "text") == 0 || strcmp(v, "json") == 0) {
            *(xr_log_format *)field = v[0] == 't' ? XR_LOG_TEXT : XR_LOG_JSON;
            return XR_OK;
        }
        return usage_error(err, errlen, "--%s: '%s' is not text or json", f->name, v);
    default:
        return XR_EINVAL;
    }
}

static const flag *find_flag(const char *name, size_t nlen)
{
    for (size_t k = 0; k < N_FLAGS; k++)
        if (strlen(flags[k].name) == nlen && memcmp(flags[k].name, name, nlen) == 0)
            return &flags[k];
    return NULL;
}

/*
 * One setting from one source. The first value the command line gives a
 * repeatable flag replaces the values the config file gave it; what the
 * program itself put there before parsing (base[], e.g. xraptor-chat's
 * page directories) stays first. seen[] is per source.
 */
static int apply(xr_options *o, const flag *f, const char *v, unsigned char *seen,
                 const size_t *base, char *err, size_t errlen)
{
    if (f->type == F_LIST && !seen[f - flags] && flag_end(f) <= o->size) {
        *(size_t *)((char *)o + f->count_off) = base[f - flags];
        seen[f - flags] = 1;
    }
    return set(o, f, v, err, errlen);
}

/* The program's own entries of each repeatable flag, before any source. */
static void list_bases(const xr_options *o, size_t *base)
{
    for (size_t k = 0; k < N_FLAGS; k++)
        base[k] = flags[k].type == F_LIST && flag_end(&flags[k]) <= o->size
                  ? *(const size_t *)((const char *)o + flags[k].count_off) : 0;
}

/* Config files read by this process: the options point into them, so they
 * stay for the process's life (reachable, not leaked). */
static struct config_text {
    struct config_text *next;
    char text[];
} *config_texts;

#define XR_CONFIG_MAX (1u << 20)

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

__attribute__((format(printf, 5, 6)))
static int config_error(char *err, size_t errlen, const char *path, unsigned line,
                        const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (line)
        snprintf(err, errlen, "%s:%u: %s", path, line, what);
    else
        snprintf(err, errlen, "--config %s: %s", path, what);
    return XR_EUSAGE;
}

/* Every line of path: "name = value", "name" (a switch), '#' comments,
 * values in double quotes kept as they are (spaces, '#'). */
static int load_config(xr_options *o, const char *path, const size_t *base, char *err,
                       size_t errlen)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return config_error(err, errlen, path, 0, "cannot open: %s", strerror(errno));
    struct config_text *t = malloc(sizeof *t + XR_CONFIG_MAX + 1);
    size_t n = t ? fread(t->text, 1, XR_CONFIG_MAX + 1, in) : 0;
    int bad = ferror(in);
    fclose(in);
    if (!t)
        return config_error(err, errlen, path, 0, "out of memory");
    if (bad || n > XR_CONFIG_MAX) {
        free(t);
        return config_error(err, errlen, path, 0, bad ? "cannot read it" : "larger than 1 MiB");
    }
    t->text[n] = '\0';
    /* Kept for the process's life: only as large as the file. */
    struct config_text *small = realloc(t, sizeof *t + n + 1);
    if (small)
        t = small;
    t->next = config_texts;
    config_texts = t;
    if (strlen(t->text) != n)
        return config_error(err, errlen, path, 0, "contains a NUL byte");
    unsigned char seen[N_FLAGS] = {0};
    unsigned line = 0;
    for (char *p = t->text, *next; p && *p; p = next) {
        line++;
        next = strchr(p, '\n');
        if (next)
            *next++ = '\0';
        char *s = trim(p);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '='), *v = NULL;
        if (eq) {
            *eq = '\0';
            v = trim(eq + 1);
            if (*v == '"') {
                char *close = strchr(v + 1, '"');
                const char *after = close ? trim(close + 1) : NULL;
                if (!close || (*after && *after != '#'))
                    return config_error(err, errlen, path, line, "unterminated quoted value");
                *close = '\0';
                v++;
            } else {
                /* An unquoted value ends at a comment. */
                for (char *c = v; *c; c++)
                    if (*c == '#' && (c == v || c[-1] == ' ' || c[-1] == '\t')) {
                        *c = '\0';
                        break;
                    }
                v = trim(v);
            }
        }
        char *name = trim(s);
        if (name[0] == '-' && name[1] == '-')
            name += 2;
        const flag *f = find_flag(name, strlen(name));
        if (!f)
            return config_error(err, errlen, path, line, "unknown option '%s' (see --help)", name);
        if (f->type == F_HELP || f->type == F_VERSION || f->type == F_CONFIG)
            return config_error(err, errlen, path, line, "'%s' cannot be set in a config file",
                                name);
        if (f->type == F_BOOL) {
            int on = !v || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "1") == 0;
            if (!on && strcmp(v, "false") && strcmp(v, "no") && strcmp(v, "0"))
                return config_error(err, errlen, path, line, "%s is a switch: true or false, "
                                    "not '%s'", name, v);
            if (flag_end(f) > o->size)
                return config_error(err, errlen, path, line, "%s: this program was built "
                                    "against an older libxraptor", name);
            *(int *)((char *)o + f->off) = on;
            continue;
        }
        if (!v || !*v)
            return config_error(err, errlen, path, line, "%s needs a value (%s = %s)", name,
                                name, f->arg);
        char why[512];
        int rc = apply(o, f, v, seen, base, why, sizeof why);
        if (rc < 0)
            return config_error(err, errlen, path, line, "%s", why);
    }
    return XR_OK;
}

int xr_options_parse(xr_options *o, int argc, char **argv, char *err, size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    xr_options full;
    int rc = xr_options_full(&full, o, err, errlen);
    if (rc < 0)
        return rc;
    /* Config files first, wherever --config stands: the command line wins. */
    size_t base[N_FLAGS];
    list_bases(o, base);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0 && i + 1 < argc)
            rc = load_config(o, argv[++i], base, err, errlen);
        else if (strncmp(a, "--config=", 9) == 0)
            rc = load_config(o, a + 9, base, err, errlen);
        if (rc < 0)
            return rc;
    }
    unsigned char seen[N_FLAGS] = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] != '-' || !a[2])
            return usage_error(err, errlen, "unexpected argument '%s' (flags start with --; see --help)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const flag *f = find_flag(name, nlen);
        if (!f)
            return usage_error(err, errlen, "unknown flag '--%.*s' (see --help)", (int)nlen, name);
        if (f->type == F_HELP || f->type == F_VERSION || f->type == F_BOOL) {
            if (eq)
                return usage_error(err, errlen, "--%s takes no value", f->name);
            if (f->type != F_BOOL)
                return f->type == F_HELP ? XR_OPTIONS_HELP : XR_OPTIONS_VERSION;
            rc = set(o, f, NULL, err, errlen);
            if (rc < 0)
                return rc;
            continue;
        }
        const char *v;
        if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc)
                return usage_error(err, errlen, "--%s needs a value (%s)", f->name, f->arg);
            v = argv[++i];
        }
        if (f->type == F_CONFIG)
            continue;           /* read above */
        rc = apply(o, f, v, seen, base, err, errlen);
        if (rc < 0)
            return rc;
    }
    xr_options_full(&full, o, err, errlen);
    return xr_options_check(&full, err, errlen);
}

void xr_options_usage(FILE *out, const char *prog)
{
    fprintf(out, "Usage: %s [FLAG VALUE | --FLAG=VALUE]...\n\nFlags:\n", prog);
    for (size_t k = 0; k < N_FLAGS; k++) {
        const flag *f = &flags[k];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", f->name, f->arg ? " " : "", f->arg ? f->arg : "");
        fprintf(out, "  %-26s ", left);
        for (const char *h = f->help; *h; h++) {
            fputc(*h, out);
            if (*h == '\n')
                fprintf(out, "  %-26s ", "");
        }
        fputc('\n', out);
    }
    fputs("\nSIZE takes k, M or G (powers of 1024); SECS may be fractional or end in ms.\n"
          "Signals: SIGTERM/SIGINT drain and exit 0, SIGHUP reloads the TLS certificate.\n",
          out);
}

int xr_options_from_args(xr_options *o, int argc, char **argv,
                         const char *prog, const char *summary)
{
    char err[1024];
    int rc = xr_options_parse(o, argc, argv, err, sizeof err);
    if (rc == XR_OPTIONS_HELP) {
        if (summary)
            printf("%s\n\n", summary);
        xr_options_usage(stdout, prog);
        return 0;
    }
    if (rc == XR_OPTIONS_VERSION) {
        printf("%s (xraptor) %s\n", prog, xr_version());
        return 0;
    }
    if (rc == XR_OK && o->antenna) {
        /* A bad --antenna is a usage error too: refuse it before start-up,
         * naming the installed modules. */
        const xr_antenna_ops *ops;
        void *dl;
        char use[1024];
        rc = xr_antenna_open(o->antenna, o->antenna_dir, &ops, &dl, use, sizeof use,
                             err, sizeof err);
        if (rc == XR_OK)
            xr_antenna_close(dl);
    }
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 2;
    }
    return XR_GO_ON;
}

const char *xr_version(void)
{
    return PACKAGE_VERSION;
}

const char *xr_strerror(int err)
{
    switch (err) {
    case XR_OK: return "success";
    case XR_ENOMEM: return "out of memory";
    case XR_EINVAL: return "invalid argument";
    case XR_EUSAGE: return "invalid option";
    case XR_ETLS: return "TLS error";
    case XR_ELISTEN: return "cannot listen";
    case XR_ECLOSED: return "connection closed";
    case XR_ELIMIT: return "limit reached";
    case XR_ESTATE: return "not allowed in this state";
    case XR_EIO: return "I/O error";
    case XR_EEXIST: return "already registered";
    case XR_EANTENNA: return "antenna error";
    case XR_ENOENT: return "no such member";
    case XR_ETYPE: return "member of another type";
    case XR_EJSON: return "not a JSON object";
    case XR_EPERM: return "not granted by the connection's token";
    default: return "unknown error";
    }
}

/* One listener address given to --name: XR_OK, or XR_EUSAGE with the reason. */
static int listen_ok(const xr_options *o, const char *name, const char *spec, char *err,
                     size_t errlen)
{
    char host[256];
    int port, tls = xr_listen_spec(spec, o->tls_cert != NULL, host, sizeof host, &port);
    if (tls < 0)
        return usage_error(err, errlen, "--%s: '%s' is not HOST:PORT, [IPv6]:PORT or :PORT",
                           name, spec);
    if (tls && !o->tls_cert)
        return usage_error(err, errlen, "--%s: '%s' needs --tls-cert and --tls-key", name, spec);
    return XR_OK;
}

int xr_options_check(const xr_options *o, char *err, size_t errlen)
{
    if (!o->tls_cert != !o->tls_key)
        return usage_error(err, errlen, "--tls-cert and --tls-key must be given together");
    for (size_t k = 0; k < o->n_listen; k++)
        if (listen_ok(o, "listen", o->listen[k], err, errlen) < 0)
            return XR_EUSAGE;
    if (o->api_listen) {
        if (listen_ok(o, "api-listen", o->api_listen, err, errlen) < 0)
            return XR_EUSAGE;
        if (!o->api_key_file)
            return usage_error(err, errlen, "--api-listen needs --api-key-file (the API is off "
                               "without a key)");
    }
    if ((o->presence || o->n_presence_rooms) &&
        (o->presence_ttl_ms < 1000 || o->presence_max_info > 65536 ||
         o->presence_grace_ms > o->presence_ttl_ms))
        return usage_error(err, errlen, "presence: --presence-ttl must be at least 1 s and at "
                           "least --presence-grace, --presence-max-info at most 64K");
    if (!o->history_size != !o->history_ttl_ms)
        return usage_error(err, errlen, "history: --history-size and --history-ttl go together "
                           "(both 0: off)");
    if (o->history_size > 1000000 || o->history_max_recover < 1 ||
        o->history_max_recover > 1000000)
        return usage_error(err, errlen, "history: --history-size and --history-max-recover must "
                           "be at most 1000000, --history-max-recover at least 1");
    for (size_t k = 0; k < o->n_history_rooms; k++) {
        char why[160];
        size_t plen;
        unsigned n, ttl;
        if (xr_history_spec(o->history_rooms[k], &plen, &n, &ttl, why, sizeof why) < 0)
            return usage_error(err, errlen, "--history-room '%s': %s", o->history_rooms[k], why);
    }
    if (o->max_message_size == 0)
        return usage_error(err, errlen, "--max-message-size must be at least 1 byte");
    if (o->max_header_size < 256 || o->max_header_size > (1u << 20))
        return usage_error(err, errlen, "--max-header-size must be between 256 bytes and 1M");
    if (o->max_connections == 0)
        return usage_error(err, errlen, "--max-connections must be at least 1");
    if (o->max_name_length < 1 || o->max_name_length > XR_MAX_NAME)
        return usage_error(err, errlen, "--max-name-length must be between 1 and %d", XR_MAX_NAME);
    if (o->max_channels_per_conn == 0 || o->max_rooms_per_member == 0 ||
        o->max_pending_requests == 0)
        return usage_error(err, errlen, "--max-channels-per-connection, --max-rooms-per-member "
                           "and --max-pending-requests must be at least 1");
    if ((o->rate_limit_burst || o->rate_limit_strikes) && !o->rate_limit && !o->rate_limit_bytes)
        return usage_error(err, errlen, "--rate-limit-burst and --rate-limit-strikes need "
                           "--rate-limit or --rate-limit-bytes");
    if (o->rate_limit_burst && !o->rate_limit)
        return usage_error(err, errlen, "--rate-limit-burst needs --rate-limit");
    if (o->rate_limit_connections_burst && !o->rate_limit_connections)
        return usage_error(err, errlen, "--rate-limit-connections-burst needs "
                           "--rate-limit-connections");
    if (o->rate_limit_connections > 16000 || o->rate_limit_connections_burst > 16000)
        return usage_error(err, errlen, "--rate-limit-connections and its burst must be at "
                           "most 16000");
    if (!o->n_jwt_keys && ((o->jwt_audience && o->jwt_audience[0]) ||
                           (o->jwt_issuer && o->jwt_issuer[0])))
        return usage_error(err, errlen, "--jwt-audience and --jwt-issuer need --jwt-key");
    if (o->ping_interval_ms && !o->ping_timeout_ms)
        return usage_error(err, errlen, "--ping-timeout must be above 0 while --ping-interval is on");
    if (o->handshake_timeout_ms == 0)
        return usage_error(err, errlen, "--handshake-timeout must be above 0");
    if (o->workers < 1 || o->workers > XR_MAX_WORKERS)
        return usage_error(err, errlen, "--workers must be between 1 and %d", XR_MAX_WORKERS);
    if (o->compression_window_bits < 9 || o->compression_window_bits > 15)
        return usage_error(err, errlen, "--compression-window-bits must be between 9 and 15");
    if (o->compression_level < 1 || o->compression_level > 9)
        return usage_error(err, errlen, "--compression-level must be between 1 and 9");
    const char *paths[2] = {o->health_path, o->metrics_path};
    for (int k = 0; k < 2; k++)
        if (paths[k] && paths[k][0] && paths[k][0] != '/')
            return usage_error(err, errlen, "--%s: '%s' must start with /",
                               k ? "metrics-path" : "health-path", paths[k]);
    return XR_OK;
}
