/* SPDX-License-Identifier: Apache-2.0 */
/* The server layer's own state: shared by server.c, workers.c, metrics.c,
 * static.c and options.c; nothing below includes it. */
#ifndef XR_SERVER_H
#define XR_SERVER_H

#include <stdint.h>

#include "xraptor.h"
#include "protocol/proto.h"
#include "transport/transport.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/map.h"

struct event;

struct xr_server {
    xr_options opts;                /* strings below are owned copies */
    /* every string option: listeners, five lists, ten single ones */
    char *owned[XR_MAX_LISTENERS + 6 * XR_MAX_LIST + 12];
    size_t n_owned;
    xr_logger log;

    struct event_base *base;
    xr_transport *t;
    xr_proto *proto;
    xr_handlers handlers;
    void *ud;

    /* workers: the port each listener spec resolved to in the parent (so
     * workers share it even when 0 was asked), and which worker we are */
    int ports[XR_MAX_LISTENERS + 1];   /* --listen's, then --api-listen's */
    unsigned worker;                /* 0: single process or the supervisor */
    /* Listening sockets passed by systemd (LISTEN_FDS), served instead of
     * binding --listen; every worker serves the same ones. */
    int sd_fds[XR_MAX_LISTENERS], sd_tls[XR_MAX_LISTENERS];
    int n_sd;

    int draining, running;
    uint64_t started_ms;
    struct event *drain_timer;
    struct event *signals[3];
    char http_extra[96];            /* headers of plain HTTP answers */
    xr_map static_cache;            /* file path -> its body (static.c) */
    size_t static_cached;           /* bytes held there */
    char error[256];
    struct xr_jwt_key *jwt_keys;    /* --jwt-key, read (auth.c) */
    size_t n_jwt_keys;
    char *api_key;                  /* --api-key-file's key (api.c), or NULL */
    size_t api_key_len;
    xr_map idem;                    /* Idempotency-Key -> until (ms) */
};

/* With opts.workers > 1: forks and supervises the workers. Returns 1 in a
 * worker (which then runs the server as usual), or the supervisor's final
 * result (0 or XR_E*) in the parent. */
int xr_workers_run(xr_server *srv);

/* systemd.c: the service manager's protocols, without libsystemd. */
/* Sends state ("READY=1") to $NOTIFY_SOCKET: 1 sent, 0 no socket, < 0 error. */
int xr_sd_notify(const char *state);
int xr_sd_notify_reloading(void);
/* Sockets passed to this process ($LISTEN_PID/$LISTEN_FDS, fds 3..): their
 * count (0: none), or XR_ELISTEN with err; the variables are then unset. */
int xr_sd_listen_fds(int *fds, int *tls, size_t max, char *err, size_t errlen);

/* /metrics and /health bodies. */
void xr_metrics_write(const xr_server *srv, xr_buf *out);
void xr_health_write(const xr_server *srv, xr_buf *out, int *status);
/* static.c. Request paths longer than XR_STATIC_PATH are refused; files
 * over XR_STATIC_MAX (or --max-output-buffer) are not served; the cache of
 * file bodies holds at most XR_STATIC_CACHE bytes in XR_STATIC_CACHE_FILES. */
#define XR_STATIC_PATH 512
#define XR_STATIC_MAX (16u << 20)
#define XR_STATIC_CACHE (64u << 20)
#define XR_STATIC_CACHE_FILES 1024
/* Whether a request path may name a file: [A-Za-z0-9._-/], no segment
 * starting with '.', 1..XR_STATIC_PATH bytes. */
int xr_static_path_ok(const char *p, size_t n);
/* The body of the file for a request path (a reference for the caller) and
 * its type; XR_OK, or XR_ENOENT when there is none. */
int xr_static_find(xr_server *srv, const char *path, size_t len, struct xr_shared **body,
                   const char **ctype);
void xr_static_free(xr_server *srv);

/* options.c */
/* Parses "123", "64k", "1M", "1MiB", "2G" into bytes. */
int xr_parse_size(const char *s, size_t *out);
/* Parses seconds ("20", "0.5", "250ms", "20s") into milliseconds. */
int xr_parse_duration(const char *s, unsigned *ms);
int xr_options_check(const xr_options *o, char *err, size_t errlen);
/* dst: the caller's options at this library's full size, the members the
 * caller's (older, shorter) struct lacks at their defaults. */
int xr_options_full(xr_options *dst, const xr_options *src, char *err, size_t errlen);

/* auth.c: connection tokens. Reads every --jwt-key (again on SIGHUP:
 * only a whole good set replaces the one in use). */
int xr_auth_load(xr_server *srv, char *err, size_t errlen);
void xr_auth_free(xr_server *srv);
/* The transport's authorize hook. */
int xr_auth_authorize(xr_conn *c, const xr_http_request *req, const char **why, void *ud);
/* PUT /xraptor/token, for protocol servers. */
int xr_auth_routes(xr_server *srv);

/* api.c: the publish API. Reads --api-key-file (none: the API is off). */
int xr_api_load(xr_server *srv, char *err, size_t errlen);
void xr_api_free(xr_server *srv);
/* The transport's body_limit hook. */
size_t xr_api_body_limit(const xr_http_request *req, void *ud);
/* Answers an API request in rep: 1, or 0 when req is not the API's. */
int xr_api_serve(xr_server *srv, const xr_http_request *req, xr_http_reply *rep);

/* A key or secret file whole (at most 1 MiB), NUL-terminated, to free;
 * NULL with errno (EFBIG when larger). */
char *xr_file_read(const char *path, size_t *len);

#endif
