/* SPDX-License-Identifier: Apache-2.0 */
/* Listening sockets: accept, the per-address limit, pausing on EMFILE. */
#include "transport/internal.h"
#include "util/clock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/listener.h>

/* Splits a listener spec; returns 1 for TLS, 0 plain, XR_EINVAL. host is
 * written without brackets; port must be numeric. */
int xr_listen_spec(const char *spec, int tls_default, char *host, size_t hostlen,
                   int *port)
{
    int tls = tls_default;
    if (strncmp(spec, "ws://", 5) == 0 || strncmp(spec, "http://", 7) == 0) {
        tls = 0;
        spec += spec[0] == 'w' ? 5 : 7;
    } else if (strncmp(spec, "wss://", 6) == 0 || strncmp(spec, "https://", 8) == 0) {
        tls = 1;
        spec += spec[0] == 'w' ? 6 : 8;
    }
    const char *colon;
    size_t hl;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':')
            return XR_EINVAL;
        hl = (size_t)(close - spec - 1);
        memcpy(host, spec + 1, hl < hostlen ? hl : 0);
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon || memchr(spec, ':', (size_t)(colon - spec)))
            return XR_EINVAL;
        hl = (size_t)(colon - spec);
        memcpy(host, spec, hl < hostlen ? hl : 0);
    }
    if (hl >= hostlen)
        return XR_EINVAL;
    host[hl] = '\0';
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535 || colon[1] == '-' || colon[1] == '+')
        return XR_EINVAL;
    *port = (int)p;
    return tls;
}

int xr_listen_resolve(const char *spec, int tls_default, int port, char host[256],
                      int *tls, struct evutil_addrinfo **ai, char *err, size_t errlen)
{
    char portstr[8];
    int p;
    *ai = NULL;
    *tls = xr_listen_spec(spec, tls_default, host, 256, &p);
    if (*tls < 0) {
        snprintf(err, errlen, "cannot listen on %s: not HOST:PORT", spec);
        return XR_ELISTEN;
    }
    snprintf(portstr, sizeof portstr, "%d", port ? port : p);
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV | EVUTIL_AI_ADDRCONFIG;
    int gai = evutil_getaddrinfo(host[0] ? host : NULL, portstr, &hints, ai);
    if (gai != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", spec, evutil_gai_strerror(gai));
        return XR_ELISTEN;
    }
    return XR_OK;
}

void xr_listeners_enable(xr_transport *t, int on)
{
    for (size_t k = 0; k < t->n_listeners; k++)
        if (t->listeners[k].ev)
            (on ? evconnlistener_enable : evconnlistener_disable)(t->listeners[k].ev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    (void)l, (void)salen;
    xr_listener *li = arg;
    xr_transport *t = li->t;
    t->stats.tcp_accepted_total++;
    /* Handshakes in flight are capped like open connections: a flood of
     * sockets that never finish their handshake cannot exhaust memory. */
    if (t->draining || t->stats.n_pending >= t->o->max_connections) {
        t->stats.refused_total++;
        evutil_closesocket(fd);
        return;
    }
    const void *addr = NULL;
    size_t alen = 0;
    /* Keyed by the raw address bytes, port left out; counted for the
     * whole server, every worker's sockets included. */
    const void *sa_addr = sa->sa_family == AF_INET6
                              ? (const void *)&((struct sockaddr_in6 *)sa)->sin6_addr
                              : (const void *)&((struct sockaddr_in *)sa)->sin_addr;
    size_t sa_len = sa->sa_family == AF_INET6 ? 16 : 4;
    if (t->per_ip_rate) {
        /* Before anything is spent on the socket, a TLS handshake least. */
        int r = xr_iprate_take(t->per_ip_rate, sa_addr, sa_len, xr_now_ms());
        if (r == XR_IPRATE_REFUSED) {
            t->stats.refused_rate_total++;
            evutil_closesocket(fd);
            return;
        }
        if (r == XR_IPRATE_UNTRACKED)
            t->stats.rate_untracked_total++;
    }
    if (t->per_ip) {
        addr = sa_addr;
        alen = sa_len;
        if (!xr_iplimit_take(t->per_ip, t->ip_table, addr, alen,
                             t->o->max_connections_per_ip)) {
            t->stats.refused_per_ip_total++;
            evutil_closesocket(fd);
            return;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    xr_conn_accept(t, fd, li->tls, li->api, addr, alen);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)l;
    xr_listener *li = arg;
    xr_transport *t = li->t;
    int e = EVUTIL_SOCKET_ERROR();
    /* Out of descriptors: the pending socket stays in the backlog and would
     * wake us in a busy loop; pause accepting for a moment instead. */
    XR_WARN(t->log, "accept on %s failed: %s; pausing accepts for 1 s", li->spec,
            evutil_socket_error_to_string(e));
    xr_listeners_enable(t, 0);
    struct timeval tv = {1, 0};
    evtimer_add(t->resume_timer, &tv);
}

/* The start-up line tests and operators look for, for the newest listener. */
static void log_listening(xr_transport *t, int tls, int api, const char *host, const char *how)
{
    int v6 = strchr(host, ':') != NULL;
    XR_INFO(t->log, "%s on %s://%s%s%s:%d%s", api ? "publish API" : "listening",
            api ? (tls ? "https" : "http") : (tls ? "wss" : "ws"), v6 ? "[" : "", host,
            v6 ? "]" : "", xr_transport_port(t, t->n_listeners - 1), how);
}

size_t xr_transport_n_specs(const xr_options *o)
{
    return o->n_listen + (o->api_listen != NULL);
}

const char *xr_transport_spec(const xr_options *o, size_t k, int *api)
{
    *api = k >= o->n_listen;
    return *api ? o->api_listen : o->listen[k];
}

static int listen_one(xr_transport *t, size_t k, int port, int reuseport, char *err,
                      size_t errlen)
{
    int api;
    const char *spec = xr_transport_spec(t->o, k, &api);
    char host[256];
    int tls;
    struct evutil_addrinfo *ai;
    if (xr_listen_resolve(spec, t->tls != NULL, port, host, &tls, &ai, err, errlen) < 0)
        return XR_ELISTEN;
    xr_listener *li = &t->listeners[t->n_listeners];
    li->t = t;
    li->tls = tls;
    li->api = api;
    li->ev = evconnlistener_new_bind(t->base, on_accept, li,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                     LEV_OPT_CLOSE_ON_EXEC |
                                     (reuseport ? LEV_OPT_REUSEABLE_PORT : 0),
                                     1024, ai->ai_addr, (int)ai->ai_addrlen);
    int e = errno;
    evutil_freeaddrinfo(ai);
    if (!li->ev) {
        snprintf(err, errlen, "cannot listen on %s: %s", spec, strerror(e));
        return XR_ELISTEN;
    }
    li->spec = strdup(spec);
    t->n_listeners++;
    evconnlistener_set_error_cb(li->ev, on_accept_error);
    log_listening(t, tls, api, host[0] ? host : "0.0.0.0", "");
    return XR_OK;
}

int xr_transport_adopt(xr_transport *t, const int *fds, const int *tls, size_t n, char *err,
                       size_t errlen)
{
    for (size_t k = 0; k < n && k < XR_MAX_LISTENERS; k++) {
        int use_tls = tls[k] >= 0 ? tls[k] : t->tls != NULL;
        if (use_tls && !t->tls) {
            snprintf(err, errlen, "socket fd %d is named wss but no --tls-cert was given", fds[k]);
            xr_transport_unlisten(t);
            return XR_ELISTEN;
        }
        xr_listener *li = &t->listeners[t->n_listeners];
        li->t = t;
        li->tls = use_tls;
        li->api = 0;
        evutil_make_socket_nonblocking(fds[k]);
        /* Backlog 0: it listens already (the service manager did it). */
        li->ev = evconnlistener_new(t->base, on_accept, li,
                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fds[k]);
        if (!li->ev) {
            snprintf(err, errlen, "cannot serve the socket passed as fd %d", fds[k]);
            xr_transport_unlisten(t);
            return XR_ELISTEN;
        }
        char spec[32];
        snprintf(spec, sizeof spec, "fd %d", fds[k]);
        li->spec = strdup(spec);
        t->n_listeners++;
        evconnlistener_set_error_cb(li->ev, on_accept_error);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char host[INET6_ADDRSTRLEN] = "?";
        if (getsockname(fds[k], (struct sockaddr *)&ss, &sl) == 0)
            evutil_inet_ntop(ss.ss_family, ss.ss_family == AF_INET6
                             ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                             : (void *)&((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
        char how[48];
        snprintf(how, sizeof how, " (socket passed as fd %d)", fds[k]);
        log_listening(t, use_tls, 0, host, how);
    }
    return XR_OK;
}

int xr_transport_listen_api(xr_transport *t, int port, int reuseport, char *err, size_t errlen)
{
    if (!t->o->api_listen)
        return XR_OK;
    int rc = listen_one(t, t->o->n_listen, port, reuseport, err, errlen);
    if (rc < 0)
        xr_transport_unlisten(t);
    return rc;
}

int xr_transport_listen(xr_transport *t, const int *ports, int reuseport, char *err,
                        size_t errlen)
{
    for (size_t k = 0; k < xr_transport_n_specs(t->o); k++) {
        int rc = listen_one(t, k, ports ? ports[k] : 0, reuseport, err, errlen);
        if (rc < 0) {
            xr_transport_unlisten(t);
            return rc;
        }
    }
    return XR_OK;
}

void xr_transport_unlisten(xr_transport *t)
{
    for (size_t k = 0; k < t->n_listeners; k++) {
        if (t->listeners[k].ev)
            evconnlistener_free(t->listeners[k].ev);
        t->listeners[k].ev = NULL;
        free(t->listeners[k].spec);
        t->listeners[k].spec = NULL;
    }
    t->n_listeners = 0;
}

int xr_transport_port(const xr_transport *t, size_t n)
{
    if (n >= t->n_listeners || !t->listeners[n].ev)
        return XR_EINVAL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evconnlistener_get_fd(t->listeners[n].ev), (struct sockaddr *)&ss, &sl) != 0)
        return XR_EINVAL;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}
