/*
 * The server: owns the event loop, the listeners, the TLS context, signals
 * and the graceful drain. Connections live in connection.c.
 */
#include "internal.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/listener.h>

#define XR_DEFAULT_LISTEN "127.0.0.1:8765"

static unsigned n_servers;      /* alive in this process */

uint64_t xr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

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

static void on_hs_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_conn_expire_handshakes(arg);
}

static void drop_all(xr_server *srv)
{
    xr_conn *c = srv->conns, *next;
    for (; c; c = next) {
        next = xr_conn_next(c);
        xr_conn_free(c);
    }
}

static void on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_server *srv = arg;
    XR_WARN(srv, "drain timeout after %u ms: dropping %zu connection(s)",
            srv->opts.drain_timeout_ms, srv->n_open + srv->n_pending);
    drop_all(srv);
    event_base_loopexit(srv->base, NULL);
}

static void listeners_enable(xr_server *srv, int on)
{
    for (size_t k = 0; k < srv->n_listeners; k++)
        if (srv->listeners[k].ev)
            (on ? evconnlistener_enable : evconnlistener_disable)(srv->listeners[k].ev);
}

static void on_resume_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_server *srv = arg;
    if (!srv->draining)
        listeners_enable(srv, 1);
}

static void listeners_free(xr_server *srv)
{
    for (size_t k = 0; k < srv->n_listeners; k++) {
        if (srv->listeners[k].ev)
            evconnlistener_free(srv->listeners[k].ev);
        srv->listeners[k].ev = NULL;
        free(srv->listeners[k].spec);
        srv->listeners[k].spec = NULL;
    }
    srv->n_listeners = 0;
}

void xr_server_conn_gone(xr_server *srv)
{
    if (srv->draining && !srv->conns)
        event_base_loopexit(srv->base, NULL);
}

xr_server *xr_server_new(const xr_options *o, char *err, size_t errlen)
{
    if (!o) {
        snprintf(err, errlen, "no options given");
        return NULL;
    }
    if (xr_options_check(o, err, errlen) < 0)
        return NULL;
    xr_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    xr_pool_install();
    n_servers++;
    srv->opts = *o;
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
#undef OWN
    if (!so->n_listen) {
        so->listen[0] = XR_DEFAULT_LISTEN;
        so->n_listen = 1;
    }
    if (!so->max_frame_size || so->max_frame_size > so->max_message_size)
        so->max_frame_size = so->max_message_size;

    srv->base = ok ? event_base_new() : NULL;
    if (!srv->base) {
        snprintf(err, errlen, ok ? "cannot create the event loop" : "out of memory");
        xr_server_free(srv);
        return NULL;
    }
    if (so->tls_cert) {
        srv->tls = xr_tls_ctx_new(so->tls_cert, so->tls_key, so->tls_ciphers, err, errlen);
        if (!srv->tls) {
            xr_server_free(srv);
            return NULL;
        }
    }
    srv->hs_timer = evtimer_new(srv->base, on_hs_timer, srv);
    srv->drain_timer = evtimer_new(srv->base, on_drain_timer, srv);
    srv->resume_timer = evtimer_new(srv->base, on_resume_timer, srv);
    /* Common timeouts: thousands of connections share one timeout value, so
     * libevent queues them in O(1) instead of a heap of thousands. */
    struct timeval tv;
#define COMMON(dst, ms) do { \
        tv.tv_sec = (ms) / 1000; tv.tv_usec = ((ms) % 1000) * 1000; \
        (dst) = event_base_init_common_timeout(srv->base, &tv); } while (0)
    if (so->ping_interval_ms) {
        COMMON(srv->ping_tv, so->ping_interval_ms);
        COMMON(srv->pong_tv, so->ping_timeout_ms);
    }
    COMMON(srv->close_tv, so->close_timeout_ms ? so->close_timeout_ms : 1);
#undef COMMON
    if (!srv->hs_timer || !srv->drain_timer || !srv->resume_timer || !srv->close_tv ||
        (so->ping_interval_ms && (!srv->ping_tv || !srv->pong_tv))) {
        snprintf(err, errlen, "out of memory");
        xr_server_free(srv);
        return NULL;
    }
    xr_map_init(&srv->routes);
    xr_map_init(&srv->per_ip);
    xr_channels_maps_init(srv);
    srv->started_ms = xr_now_ms();
    return srv;
}

void xr_server_free(xr_server *srv)
{
    if (!srv)
        return;
    srv->draining = 0; /* no loopexit from the frees below */
    drop_all(srv);
    listeners_free(srv);
    xr_channels_free(srv);
    xr_router_free(srv);
    xr_map_clear(&srv->per_ip);
    xr_buf_free(&srv->zout);
    xr_buf_free(&srv->zin);
    for (int k = 0; k < 16; k++)
        xr_zdeflate_free(srv->deflaters[k]);
    xr_zinflate_free(srv->inflater);
    for (int k = 0; k < 3; k++)
        if (srv->signals[k])
            event_free(srv->signals[k]);
    if (srv->hs_timer)
        event_free(srv->hs_timer);
    if (srv->drain_timer)
        event_free(srv->drain_timer);
    if (srv->resume_timer)
        event_free(srv->resume_timer);
    if (srv->tls)
        SSL_CTX_free(srv->tls);
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

z_stream *xr_server_deflater(xr_server *srv, int bits)
{
    if (bits < 9 || bits > 15)
        return NULL;
    if (!srv->deflaters[bits])
        srv->deflaters[bits] = xr_zdeflate_new(bits, (int)srv->opts.compression_level);
    return srv->deflaters[bits];
}

void xr_server_set_handlers(xr_server *srv, const xr_handlers *h, void *ud)
{
    if (h)
        srv->handlers = *h;
    else
        memset(&srv->handlers, 0, sizeof srv->handlers);
    srv->ud = ud;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    (void)l, (void)salen;
    xr_listener *li = arg;
    xr_server *srv = li->srv;
    srv->metrics.tcp_accepted_total++;
    /* Handshakes in flight are capped like open connections: a flood of
     * sockets that never finish their handshake cannot exhaust memory. */
    if (srv->draining || srv->n_pending >= srv->opts.max_connections) {
        srv->metrics.refused_total++;
        evutil_closesocket(fd);
        return;
    }
    xr_map_entry *ip = NULL;
    if (srv->opts.max_connections_per_ip) {
        /* Keyed by the raw address bytes, port left out. */
        const void *addr = sa->sa_family == AF_INET6
                           ? (const void *)&((struct sockaddr_in6 *)sa)->sin6_addr
                           : (const void *)&((struct sockaddr_in *)sa)->sin_addr;
        size_t alen = sa->sa_family == AF_INET6 ? 16 : 4;
        uintptr_t n = (uintptr_t)xr_map_get(&srv->per_ip, addr, alen);
        if (n >= srv->opts.max_connections_per_ip) {
            srv->metrics.refused_per_ip_total++;
            evutil_closesocket(fd);
            return;
        }
        if (!n && !(ip = xr_map_put(&srv->per_ip, addr, alen, (void *)0))) {
            evutil_closesocket(fd);
            return;
        }
        if (n)
            ip = xr_map_put(&srv->per_ip, addr, alen, (void *)n);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    xr_conn_accept(srv, fd, li->tls, ip);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)l;
    xr_listener *li = arg;
    xr_server *srv = li->srv;
    int e = EVUTIL_SOCKET_ERROR();
    /* Out of descriptors: the pending socket stays in the backlog and would
     * wake us in a busy loop; pause accepting for a moment instead. */
    XR_WARN(srv, "accept on %s failed: %s; pausing accepts for 1 s", li->spec,
            evutil_socket_error_to_string(e));
    listeners_enable(srv, 0);
    struct timeval tv = {1, 0};
    evtimer_add(srv->resume_timer, &tv);
}

int xr_listen_resolve(xr_server *srv, size_t k, char host[256], int *tls,
                      struct evutil_addrinfo **ai)
{
    const char *spec = srv->opts.listen[k];
    char portstr[8];
    int port;
    *tls = xr_listen_spec(spec, srv->tls != NULL, host, 256, &port);
    if (srv->ports[k])
        port = srv->ports[k];   /* resolved by the supervisor for all workers */
    snprintf(portstr, sizeof portstr, "%d", port);
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV | EVUTIL_AI_ADDRCONFIG;
    *ai = NULL;
    int gai = evutil_getaddrinfo(host[0] ? host : NULL, portstr, &hints, ai);
    if (gai != 0) {
        snprintf(srv->error, sizeof srv->error, "cannot listen on %s: %s", spec,
                 evutil_gai_strerror(gai));
        return XR_ELISTEN;
    }
    return XR_OK;
}

static int listen_one(xr_server *srv, size_t k)
{
    const char *spec = srv->opts.listen[k];
    char host[256];
    int tls;
    struct evutil_addrinfo *ai;
    if (xr_listen_resolve(srv, k, host, &tls, &ai) < 0)
        return XR_ELISTEN;
    xr_listener *li = &srv->listeners[srv->n_listeners];
    li->srv = srv;
    li->tls = tls;
    li->ev = evconnlistener_new_bind(srv->base, on_accept, li,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                     LEV_OPT_CLOSE_ON_EXEC |
                                     (srv->worker ? LEV_OPT_REUSEABLE_PORT : 0),
                                     1024, ai->ai_addr, (int)ai->ai_addrlen);
    int e = errno;
    evutil_freeaddrinfo(ai);
    if (!li->ev) {
        snprintf(srv->error, sizeof srv->error, "cannot listen on %s: %s", spec, strerror(e));
        return XR_ELISTEN;
    }
    li->spec = strdup(spec);
    srv->n_listeners++;
    evconnlistener_set_error_cb(li->ev, on_accept_error);
    XR_INFO(srv, "listening on %s://%s%s%s:%d", tls ? "wss" : "ws",
            strchr(host, ':') ? "[" : "", host[0] ? host : "0.0.0.0",
            strchr(host, ':') ? "]" : "", xr_server_port(srv, srv->n_listeners - 1));
    return XR_OK;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    xr_server *srv = arg;
    if (sig == SIGHUP) {
        xr_server_reload_tls(srv);
        return;
    }
    if (srv->draining) {
        XR_WARN(srv, "second %s: exiting without waiting", sig == SIGINT ? "SIGINT" : "SIGTERM");
        drop_all(srv);
        event_base_loopexit(srv->base, NULL);
        return;
    }
    XR_INFO(srv, "%s received: draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
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
    if (srv->opts.workers > 1 && !srv->worker) {
        char scheme[32];
        if (!srv->handlers.on_message &&
            (!srv->opts.antenna ||
             (xr_antenna_scheme(srv->opts.antenna, scheme, sizeof scheme) > 0 &&
              strcmp(scheme, "memory") == 0))) {
            snprintf(srv->error, sizeof srv->error,
                     "--workers %u needs a broker antenna: memory:// delivers only inside one "
                     "process, so channels and rooms would not reach clients of other workers; "
                     "use --antenna redis://, nats:// or kafka://", srv->opts.workers);
            XR_ERROR(srv, "%s", srv->error);
            return XR_EUSAGE;
        }
        int rc = xr_workers_run(srv);
        if (rc != 1)
            return rc;      /* the supervisor is done */
        /* A worker: serve like a single process from here on. */
    }
    /* The protocol needs its antenna; a raw-layer server never loads one. */
    if (!srv->handlers.on_message && !srv->antenna) {
        int rc = xr_channels_init(srv, srv->error, sizeof srv->error);
        if (rc < 0) {
            XR_ERROR(srv, "%s", srv->error);
            return rc;
        }
    }
    /* A peer that vanishes mid-write must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    for (size_t k = 0; k < srv->opts.n_listen; k++) {
        int rc = listen_one(srv, k);
        if (rc < 0) {
            XR_ERROR(srv, "%s", srv->error);
            listeners_free(srv);
            return rc;
        }
    }
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int k = 0; k < 3; k++) {
        if (!srv->signals[k])
            srv->signals[k] = evsignal_new(srv->base, sigs[k], on_signal, srv);
        if (srv->signals[k])
            evsignal_add(srv->signals[k], NULL);
    }
    srv->running = 1;
    int rc = event_base_dispatch(srv->base);
    srv->running = 0;
    for (int k = 0; k < 3; k++)
        if (srv->signals[k])
            evsignal_del(srv->signals[k]);
    listeners_free(srv);
    srv->draining = 0;
    drop_all(srv);
    evtimer_del(srv->drain_timer);
    evtimer_del(srv->hs_timer);
    if (rc < 0) {
        snprintf(srv->error, sizeof srv->error, "event loop failed");
        return XR_EIO;
    }
    XR_INFO(srv, "stopped");
    return XR_OK;
}

void xr_server_stop(xr_server *srv)
{
    if (srv->draining)
        return;
    srv->draining = 1;
    if (!srv->running)
        return;
    listeners_free(srv);
    XR_INFO(srv, "closing %zu connection(s), waiting up to %u ms", srv->n_open,
            srv->opts.drain_timeout_ms);
    xr_conn *c = srv->conns, *next;
    for (; c; c = next) {
        next = xr_conn_next(c);
        xr_conn_drain(c);
    }
    if (!srv->conns) {
        event_base_loopexit(srv->base, NULL);
    } else {
        struct timeval tv = {srv->opts.drain_timeout_ms / 1000,
                             (srv->opts.drain_timeout_ms % 1000) * 1000};
        evtimer_add(srv->drain_timer, &tv);
    }
}

int xr_server_reload_tls(xr_server *srv)
{
    if (!srv->opts.tls_cert) {
        snprintf(srv->error, sizeof srv->error, "no TLS certificate configured");
        XR_INFO(srv, "SIGHUP: %s, nothing to reload", srv->error);
        return XR_ESTATE;
    }
    SSL_CTX *ctx = xr_tls_ctx_new(srv->opts.tls_cert, srv->opts.tls_key,
                                  srv->opts.tls_ciphers, srv->error, sizeof srv->error);
    if (!ctx) {
        XR_ERROR(srv, "TLS reload failed, keeping the current certificate: %s", srv->error);
        return XR_ETLS;
    }
    /* Live connections hold a reference to the old context. */
    SSL_CTX_free(srv->tls);
    srv->tls = ctx;
    XR_INFO(srv, "TLS certificate reloaded from %s", srv->opts.tls_cert);
    return XR_OK;
}

struct event_base *xr_server_base(xr_server *srv) { return srv->base; }
unsigned xr_server_worker(const xr_server *srv) { return srv->worker; }
const char *xr_server_error(const xr_server *srv) { return srv->error; }
size_t xr_server_connections(const xr_server *srv) { return srv->n_open; }

int xr_server_port(const xr_server *srv, size_t n)
{
    if (n >= srv->n_listeners || !srv->listeners[n].ev)
        return -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evconnlistener_get_fd(srv->listeners[n].ev), (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}
