/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The server: owns the event loop, signals and the graceful drain, and puts
 * the layers together. The transport reaches up only through the hook table
 * made here: the raw layer's handlers, or the X-raptor protocol, plus
 * /health, /metrics and static files for plain HTTP requests.
 */
#include "server/server.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "util/clock.h"
#include "util/pool.h"

#define XR_DEFAULT_LISTEN "127.0.0.1:8765"

static unsigned n_servers;      /* alive in this process */

/* Copies a borrowed option string into the server; NULL when out of memory. */
static const char *own(xr_server *srv, const char *s)
{
    if (srv->n_owned == sizeof srv->owned / sizeof srv->owned[0])
        return NULL;
    char *d = strdup(s);
    if (d)
        srv->owned[srv->n_owned++] = d;
    return d;
}

/* ---- the hook table the transport is handed ----------------------------- */

/* A connection's debug line, as it opens (code 0) or closes: its peer
 * and its token's user (never the token). */
static void conn_line(xr_server *srv, xr_conn *c, int code)
{
    if (srv->log.level < XR_LOG_DEBUG)
        return;
    char peer[64] = "?", what[32] = "open";
    xr_conn_peer(c, peer, sizeof peer);
    if (code)
        snprintf(what, sizeof what, "closed (%d)", code);
    const char *user = xr_conn_user(c);
    XR_DEBUG(&srv->log, "connection %s %s%s%s", peer, what, user ? ", user " : "",
             user ? user : "");
}

static void on_open(xr_conn *c, void *ud)
{
    xr_server *srv = ud;
    conn_line(srv, c, 0);
    if (srv->handlers.on_open)
        srv->handlers.on_open(c, srv->ud);
}

static void on_raw_message(xr_conn *c, xr_msg_type type, const char *data, size_t len, void *ud)
{
    xr_server *srv = ud;
    srv->handlers.on_message(c, type, data, len, srv->ud);
}

static void on_request(xr_conn *c, xr_msg_type type, const char *data, size_t len, void *ud)
{
    xr_server *srv = ud;
    xr_proto_message(srv->proto, c, type, data, len);
}

static void on_close(xr_conn *c, int code, const char *reason, size_t len, void *ud)
{
    xr_server *srv = ud;
    conn_line(srv, c, code);
    if (srv->handlers.on_close)
        srv->handlers.on_close(c, code, reason, len, srv->ud);
}

static void on_gone(xr_conn *c, void *ud)
{
    xr_server *srv = ud;
    xr_proto_conn_gone(srv->proto, c);
    if (srv->draining && srv->running && xr_transport_sockets(srv->t) == 0)
        event_base_loopexit(srv->base, NULL);
}

static int path_is(const xr_http_request *req, const char *path)
{
    size_t n = xr_http_path_len(req);
    return path && path[0] && strlen(path) == n && memcmp(req->target, path, n) == 0;
}

static void plain_error(xr_http_reply *rep, int status, const char *why, const char *extra)
{
    rep->status = status;
    rep->ctype = "text/plain; charset=utf-8";
    rep->extra = extra;
    rep->body->len = 0;
    xr_buf_printf(rep->body, "%s\n", why);
}

static void on_http(const xr_http_request *req, xr_http_reply *rep, void *ud)
{
    xr_server *srv = ud;
    int health = path_is(req, srv->opts.health_path);
    int metrics = !health && path_is(req, srv->opts.metrics_path);
    int head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    int get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    if (xr_api_serve(srv, req, rep))
        return;
    /* The API's own address serves /health besides the API, nothing else
     * (the transport answers 404). */
    if (req->api && !health)
        return;
    if (!health && !metrics && !srv->opts.n_static_dirs)
        return;     /* the transport answers 426 */
    if (!head && !get) {
        plain_error(rep, 405, "only GET and HEAD are served here", "Allow: GET, HEAD\r\n");
        return;
    }
    rep->status = 200;
    rep->ctype = "application/json";
    if (health) {
        xr_health_write(srv, rep->body, &rep->status);
    } else if (metrics) {
        xr_metrics_write(srv, rep->body);
        rep->ctype = "text/plain; version=0.0.4; charset=utf-8";
    } else if (xr_static_find(srv, req->target, xr_http_path_len(req), &rep->file,
                              &rep->ctype) < 0) {
        plain_error(rep, 404, "not found", NULL);
        return;
    }
    snprintf(srv->http_extra, sizeof srv->http_extra,
             "X-Content-Type-Options: nosniff\r\nX-Xraptor-Worker: %u\r\n", srv->worker);
    rep->extra = srv->http_extra;
}

/* The one place that chooses between the raw layer and the protocol. */
static xr_transport_hooks hooks_for(const xr_server *srv)
{
    xr_transport_hooks h = {
        .open = on_open,
        .message = srv->handlers.on_message ? on_raw_message : on_request,
        .close = on_close,
        .gone = on_gone,
        .http = on_http,
        .authorize = srv->n_jwt_keys ? xr_auth_authorize : NULL,
        .body_limit = srv->api_key ? xr_api_body_limit : NULL,
    };
    return h;
}

/* ---- life cycle --------------------------------------------------------- */

static void on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_server *srv = arg;
    XR_WARN(&srv->log, "drain timeout after %u ms: dropping %zu connection(s)",
            srv->opts.drain_timeout_ms, xr_transport_sockets(srv->t));
    xr_transport_drop_all(srv->t);
    event_base_loopexit(srv->base, NULL);
}

xr_server *xr_server_new(const xr_options *o, char *err, size_t errlen)
{
    if (!o) {
        snprintf(err, errlen, "no options given");
        return NULL;
    }
    xr_options full;
    if (xr_options_full(&full, o, err, errlen) < 0 || xr_options_check(&full, err, errlen) < 0)
        return NULL;
    xr_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n_servers++;
    srv->opts = full;
    xr_options *so = &srv->opts;
    int ok = 1;
#define OWN(field) do { if (so->field && !(so->field = own(srv, so->field))) ok = 0; } while (0)
    OWN(tls_cert);
    OWN(tls_key);
    OWN(tls_ciphers);
    OWN(health_path);
    OWN(metrics_path);
    OWN(antenna);
    OWN(antenna_dir);
    for (size_t k = 0; k < so->n_listen; k++)
        OWN(listen[k]);
    for (size_t k = 0; k < so->n_subprotocols; k++)
        OWN(subprotocols[k]);
    for (size_t k = 0; k < so->n_allowed_origins; k++)
        OWN(allowed_origins[k]);
    for (size_t k = 0; k < so->n_static_dirs; k++)
        OWN(static_dirs[k]);
    for (size_t k = 0; k < so->n_jwt_keys; k++)
        OWN(jwt_keys[k]);
    for (size_t k = 0; k < so->n_presence_rooms; k++)
        OWN(presence_rooms[k]);
    OWN(jwt_audience);
    OWN(jwt_issuer);
    OWN(api_key_file);
    OWN(api_listen);
#undef OWN
    if (!so->n_listen) {
        so->listen[0] = XR_DEFAULT_LISTEN;
        so->n_listen = 1;
    }
    if (!so->max_frame_size || so->max_frame_size > so->max_message_size)
        so->max_frame_size = so->max_message_size;
    srv->log.level = so->log_level;
    srv->log.format = so->log_format;
    /* A key that cannot be read stops start-up, naming its file. */
    if (ok && (xr_auth_load(srv, err, errlen) < 0 || xr_api_load(srv, err, errlen) < 0)) {
        xr_server_free(srv);
        return NULL;
    }

    /* With the changelist, arming and disarming EV_WRITE within one turn of
     * the loop costs no epoll_ctl at all. */
    struct event_config *cfg = ok ? event_config_new() : NULL;
    if (cfg) {
        event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        srv->base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    if (!srv->base) {
        snprintf(err, errlen, ok ? "cannot create the event loop" : "out of memory");
        xr_server_free(srv);
        return NULL;
    }
    xr_transport_hooks none = {0};
    srv->t = xr_transport_new(srv->base, so, &srv->log, &none, srv, err, errlen);
    if (!srv->t) {
        xr_server_free(srv);
        return NULL;
    }
    srv->proto = xr_proto_new(srv->base, so, &srv->log, srv);
    srv->drain_timer = evtimer_new(srv->base, on_drain_timer, srv);
    if (!srv->proto || !srv->drain_timer) {
        snprintf(err, errlen, "out of memory");
        xr_server_free(srv);
        return NULL;
    }
    srv->started_ms = xr_now_ms();
    return srv;
}

void xr_server_free(xr_server *srv)
{
    if (!srv)
        return;
    srv->draining = 0; /* no loopexit from the frees below */
    xr_transport_free(srv->t);
    xr_proto_free(srv->proto);
    xr_static_free(srv);
    xr_auth_free(srv);
    xr_api_free(srv);
    for (int k = 0; k < 3; k++)
        if (srv->signals[k])
            event_free(srv->signals[k]);
    if (srv->drain_timer)
        event_free(srv->drain_timer);
    if (srv->base)
        event_base_free(srv->base);
    for (size_t k = 0; k < srv->n_owned; k++)
        free(srv->owned[k]);
    free(srv);
    /* The last server gone: give cached blocks back (leak checkers and
     * programs that go on without a server are better for it). */
    if (--n_servers == 0)
        xr_pool_trim();
}

void xr_server_set_handlers(xr_server *srv, const xr_handlers *h, void *ud)
{
    if (h)
        srv->handlers = *h;
    else
        memset(&srv->handlers, 0, sizeof srv->handlers);
    srv->ud = ud;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    xr_server *srv = arg;
    if (sig == SIGHUP) {
        xr_server_reload_tls(srv);
        if (srv->n_jwt_keys) {
            char err[256];
            if (xr_auth_load(srv, err, sizeof err) < 0)
                XR_ERROR(&srv->log, "token keys not reloaded, keeping the current ones: %s",
                         err);
            else
                XR_INFO(&srv->log, "token keys reloaded (%zu)", srv->n_jwt_keys);
        }
        return;
    }
    if (srv->draining) {
        XR_WARN(&srv->log, "second %s: exiting without waiting",
                sig == SIGINT ? "SIGINT" : "SIGTERM");
        xr_transport_drop_all(srv->t);
        event_base_loopexit(srv->base, NULL);
        return;
    }
    XR_INFO(&srv->log, "%s received: draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
    xr_server_stop(srv);
}

int xr_server_run(xr_server *srv)
{
    if (srv->running) {
        snprintf(srv->error, sizeof srv->error, "xr_server_run: already running");
        return XR_ESTATE;
    }
    srv->error[0] = '\0';
    if (srv->draining)
        return XR_OK; /* stopped before it started */
    int raw = srv->handlers.on_message != NULL;
    if (raw && xr_proto_has_routes(srv->proto)) {
        snprintf(srv->error, sizeof srv->error,
                 "routes or middleware were registered but on_message is set: the raw layer "
                 "receives every message and no route would ever run");
        XR_ERROR(&srv->log, "%s", srv->error);
        return XR_EUSAGE;
    }
    /* Sockets from systemd, before any fork: the workers inherit them. */
    if (!srv->worker && !srv->n_sd) {
        int n = xr_sd_listen_fds(srv->sd_fds, srv->sd_tls, XR_MAX_LISTENERS, srv->error,
                                 sizeof srv->error);
        if (n < 0) {
            XR_ERROR(&srv->log, "%s", srv->error);
            return n;
        }
        srv->n_sd = n;
    }
    if (srv->opts.workers > 1 && !srv->worker) {
        char scheme[32];
        if (!raw && (!srv->opts.antenna ||
                     (xr_antenna_scheme(srv->opts.antenna, scheme, sizeof scheme) > 0 &&
                      strcmp(scheme, "memory") == 0))) {
            snprintf(srv->error, sizeof srv->error,
                     "--workers %u needs a broker antenna: memory:// delivers only inside one "
                     "process, so channels and rooms would not reach clients of other workers; "
                     "use --antenna redis://, nats:// or kafka://", srv->opts.workers);
            XR_ERROR(&srv->log, "%s", srv->error);
            return XR_EUSAGE;
        }
        int rc = xr_workers_run(srv);
        if (rc != 1)
            return rc;      /* the supervisor is done */
        /* A worker: serve like a single process from here on. */
    }
    /* An application's own /xraptor/token (XR_EEXIST) is its business. */
    int trc = !raw && srv->n_jwt_keys ? xr_auth_routes(srv) : XR_OK;
    if (trc < 0 && trc != XR_EEXIST) {
        snprintf(srv->error, sizeof srv->error, "cannot add the route /xraptor/token");
        XR_ERROR(&srv->log, "%s", srv->error);
        return XR_ENOMEM;
    }
    /* The protocol needs its antenna; a raw-layer server never loads one. */
    if (!raw) {
        int rc = xr_proto_start(srv->proto, srv->error, sizeof srv->error);
        if (rc < 0) {
            XR_ERROR(&srv->log, "%s", srv->error);
            return rc;
        }
    }
    xr_transport_hooks h = hooks_for(srv);
    xr_transport_set_hooks(srv->t, &h);
    /* A peer that vanishes mid-write must give EPIPE, not kill us (our own
     * sends say MSG_NOSIGNAL; OpenSSL's writes do not). */
    signal(SIGPIPE, SIG_IGN);
    /* Handled before the first socket listens (and "listening on" is
     * logged): a SIGTERM that follows the port opening at once is a drain,
     * never the default death. */
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    sigset_t handled;
    sigemptyset(&handled);
    for (int k = 0; k < 3; k++) {
        if (!srv->signals[k])
            srv->signals[k] = evsignal_new(srv->base, sigs[k], on_signal, srv);
        if (srv->signals[k])
            evsignal_add(srv->signals[k], NULL);
        sigaddset(&handled, sigs[k]);
    }
    int rc = srv->n_sd
             ? xr_transport_adopt(srv->t, srv->sd_fds, srv->sd_tls, (size_t)srv->n_sd, srv->error,
                                  sizeof srv->error)
             : xr_transport_listen(srv->t, srv->ports, srv->worker != 0, srv->error,
                                   sizeof srv->error);
    /* Socket activation passes the WebSocket sockets; the API's own
     * address is bound here (port 0 stays shared by the workers: the
     * supervisor probed it). */
    if (rc == XR_OK && srv->n_sd)
        rc = xr_transport_listen_api(srv->t, srv->ports[srv->opts.n_listen], srv->worker != 0,
                                     srv->error, sizeof srv->error);
    if (rc < 0) {
        XR_ERROR(&srv->log, "%s", srv->error);
        for (int k = 0; k < 3; k++)
            if (srv->signals[k])
                evsignal_del(srv->signals[k]);
        return rc;
    }
    /* A worker was forked with them blocked (workers.c): those that came
     * meanwhile are delivered now, to the loop. */
    if (srv->worker)
        sigprocmask(SIG_UNBLOCK, &handled, NULL);
    /* Listening, signals handled: the service manager may send traffic and
     * signals (Type=notify). A worker's supervisor says it for all. */
    if (!srv->worker)
        xr_sd_notify("READY=1\nSTATUS=serving");
    srv->running = 1;
    rc = event_base_dispatch(srv->base);
    srv->running = 0;
    for (int k = 0; k < 3; k++)
        if (srv->signals[k])
            evsignal_del(srv->signals[k]);
    xr_transport_unlisten(srv->t);
    srv->draining = 0;
    xr_transport_drop_all(srv->t);
    evtimer_del(srv->drain_timer);
    if (rc < 0) {
        snprintf(srv->error, sizeof srv->error, "event loop failed");
        return XR_EIO;
    }
    XR_INFO(&srv->log, "stopped");
    return XR_OK;
}

void xr_server_stop(xr_server *srv)
{
    if (srv->draining)
        return;
    srv->draining = 1;
    if (!srv->worker)
        xr_sd_notify("STOPPING=1\nSTATUS=draining");
    if (!srv->running)
        return;
    XR_INFO(&srv->log, "closing %zu connection(s), waiting up to %u ms",
            xr_transport_stats_get(srv->t)->n_open, srv->opts.drain_timeout_ms);
    xr_transport_drain(srv->t);
    if (xr_transport_sockets(srv->t) == 0) {
        event_base_loopexit(srv->base, NULL);
    } else {
        struct timeval tv = xr_timeval_ms(srv->opts.drain_timeout_ms);
        evtimer_add(srv->drain_timer, &tv);
    }
}

int xr_server_reload_tls(xr_server *srv)
{
    if (!srv->worker)
        xr_sd_notify_reloading();
    int rc = xr_transport_reload_tls(srv->t, srv->error, sizeof srv->error);
    if (!srv->worker)
        xr_sd_notify("READY=1\nSTATUS=serving");
    if (rc == XR_ESTATE)
        XR_INFO(&srv->log, "SIGHUP: %s, nothing to reload", srv->error);
    else if (rc < 0)
        XR_ERROR(&srv->log, "TLS reload failed, keeping the current certificate: %s",
                 srv->error);
    else
        XR_INFO(&srv->log, "TLS certificate reloaded from %s", srv->opts.tls_cert);
    return rc;
}

struct event_base *xr_server_base(xr_server *srv) { return srv->base; }
unsigned xr_server_worker(const xr_server *srv) { return srv->worker; }
const char *xr_server_error(const xr_server *srv) { return srv->error; }
size_t xr_server_connections(const xr_server *srv) { return xr_transport_stats_get(srv->t)->n_open; }
int xr_server_port(const xr_server *srv, size_t n) { return xr_transport_port(srv->t, n); }

void xr_server_log(xr_server *srv, xr_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    xr_vlog(&srv->log, level, fmt, ap);
    va_end(ap);
}

void xr_server_set_log(xr_server *srv, xr_log_fn fn, void *ud)
{
    if (!srv)
        return;
    srv->log.fn = fn;
    srv->log.fn_ud = ud;
}

xr_server *xr_conn_server(const xr_conn *c)
{
    return xr_transport_ud(xr_conn_transport(c));
}

/* ---- the protocol's public face ---------------------------------------- */

int xr_route(xr_server *srv, const char *route, unsigned methods, xr_handler fn, void *ud)
{
    return srv ? xr_proto_route(srv->proto, route, methods, fn, ud) : XR_EINVAL;
}

int xr_middleware(xr_server *srv, int priority, const char *regex, xr_middleware_fn fn, void *ud)
{
    return srv ? xr_proto_middleware(srv->proto, priority, regex, fn, ud) : XR_EINVAL;
}

int xr_publish(xr_server *srv, const char *channel, size_t clen, const char *msg, size_t mlen)
{
    return srv ? xr_proto_publish(srv->proto, channel, clen, msg, mlen) : XR_EINVAL;
}

int xr_publish_at(xr_server *srv, const char *channel, size_t clen, const char *msg, size_t mlen,
                  xr_publish_cb done, void *ud)
{
    return srv ? xr_proto_publish_at(srv->proto, channel, clen, msg, mlen, done, ud) : XR_EINVAL;
}

int xr_publishf(xr_server *srv, const char *channel, size_t clen, const char *fmt, ...)
{
    if (!srv)
        return XR_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    int rc = xr_proto_publishv(srv->proto, channel, clen, fmt, ap);
    va_end(ap);
    return rc;
}

int xr_room_join(xr_server *srv, const char *room, const char *member)
{
    return srv ? xr_proto_room_join(srv->proto, room, member) : XR_EINVAL;
}

int xr_room_join_as(xr_server *srv, const char *room, const char *member, const char *user,
                    const char *info)
{
    return srv ? xr_proto_room_join_as(srv->proto, room, member, user, info) : XR_EINVAL;
}

int xr_history_enable(xr_server *srv, const char *pattern, unsigned size, unsigned ttl_ms)
{
    return srv ? xr_proto_history_enable(srv->proto, pattern, size, ttl_ms) : XR_EINVAL;
}

int xr_history_read(xr_server *srv, const char *name, size_t limit, xr_history_cb done,
                    void *ud)
{
    return srv ? xr_proto_history_read(srv->proto, name, limit, done, ud) : XR_EINVAL;
}

int xr_presence_enable(xr_server *srv, const char *pattern)
{
    return srv ? xr_proto_presence_enable(srv->proto, pattern) : XR_EINVAL;
}

int xr_presence_query(xr_server *srv, const char *room, int members, xr_presence_cb done,
                      void *ud)
{
    return srv ? xr_proto_presence_query(srv->proto, room, members, done, ud) : XR_EINVAL;
}

void xr_server_on_presence(xr_server *srv, xr_presence_fn fn, void *ud)
{
    if (srv)
        xr_proto_on_presence(srv->proto, fn, ud);
}

int xr_room_leave(xr_server *srv, const char *room, const char *member)
{
    return srv ? xr_proto_room_leave(srv->proto, room, member) : XR_EINVAL;
}

size_t xr_room_size(const xr_server *srv, const char *room)
{
    return srv && room ? xr_proto_room_size(srv->proto, room) : 0;
}
