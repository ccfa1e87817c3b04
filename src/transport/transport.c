/* SPDX-License-Identifier: Apache-2.0 */
/* The transport object: its loop events, the flush step, drain, counters
 * and the compressors every connection shares. */
#include "transport/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/listener.h>

#define XR_RBUF (64u << 10)

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_transport *t = arg;
    /* Marks made meanwhile (a close hook that sends) are appended and
     * taken in the same pass. */
    for (size_t i = 0; i < t->n_dirty; i++)
        if (t->dirty[i])
            xr_conn_flush(t->dirty[i]);
    t->n_dirty = 0;
    /* A fan-out burst to many thousands sized this once; give it back. */
    if (t->cap_dirty > 4096) {
        free(t->dirty);
        t->dirty = NULL;
        t->cap_dirty = 0;
    }
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_transport *t = arg;
    xr_conn *c = t->conns, *next;
    for (; c; c = next) {
        next = xr_conn_next(c);
        xr_conn_drain(c);
    }
}

static void on_hs_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_conn_expire_handshakes(arg);
}

static void on_resume_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_transport *t = arg;
    if (!t->draining)
        xr_listeners_enable(t, 1);
}

xr_transport *xr_transport_new(struct event_base *base, const xr_options *o,
                               const xr_logger *log, const xr_transport_hooks *hooks,
                               void *ud, char *err, size_t errlen)
{
    xr_transport *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->base = base;
    t->o = o;
    t->log = log;
    if (hooks)
        t->hooks = *hooks;
    t->ud = ud;
    /* Made before any worker forks, so that all of them share it: at most
     * every socket of one worker (handshakes and open ones) per table. */
    if (o->max_connections_per_ip &&
        !(t->per_ip = xr_iplimit_new(2 * (size_t)o->max_connections, o->workers))) {
        snprintf(err, errlen, "out of memory for the per-address counts");
        xr_transport_free(t);
        return NULL;
    }
    if (o->rate_limit_connections &&
        !(t->per_ip_rate = xr_iprate_new(o->rate_limit_connections,
                                         o->rate_limit_connections_burst
                                             ? o->rate_limit_connections_burst
                                             : o->rate_limit_connections))) {
        snprintf(err, errlen, "out of memory for the per-address connection rates");
        xr_transport_free(t);
        return NULL;
    }
    if (o->tls_cert && !(t->tls = xr_tls_ctx_new(o->tls_cert, o->tls_key, o->tls_ciphers,
                                                 err, errlen))) {
        xr_transport_free(t);
        return NULL;
    }
    t->rbuf_cap = XR_RBUF;
    t->rbuf = malloc(t->rbuf_cap);
    if (t->tls && !(t->tls_wbuf = malloc(16384))) {
        snprintf(err, errlen, "out of memory");
        xr_transport_free(t);
        return NULL;
    }
    t->hs_timer = evtimer_new(base, on_hs_timer, t);
    t->resume_timer = evtimer_new(base, on_resume_timer, t);
    t->flush_ev = event_new(base, -1, 0, on_flush, t);
    t->drain_ev = event_new(base, -1, 0, on_drain, t);
    /* Common timeouts: thousands of connections share one timeout value, so
     * libevent queues them in O(1) instead of a heap of thousands. */
    struct timeval tv;
#define COMMON(dst, ms) do { \
        tv.tv_sec = (ms) / 1000; tv.tv_usec = ((ms) % 1000) * 1000; \
        (dst) = event_base_init_common_timeout(base, &tv); } while (0)
    if (o->ping_interval_ms) {
        COMMON(t->ping_tv, o->ping_interval_ms);
        COMMON(t->pong_tv, o->ping_timeout_ms);
    }
    COMMON(t->close_tv, o->close_timeout_ms ? o->close_timeout_ms : 1);
#undef COMMON
    if (!t->rbuf || !t->hs_timer || !t->resume_timer || !t->flush_ev || !t->drain_ev ||
        !t->close_tv || (o->ping_interval_ms && (!t->ping_tv || !t->pong_tv))) {
        snprintf(err, errlen, "out of memory");
        xr_transport_free(t);
        return NULL;
    }
    return t;
}

void xr_transport_drop_all(xr_transport *t)
{
    xr_conn *c = t->conns, *next;
    for (; c; c = next) {
        next = xr_conn_next(c);
        xr_conn_destroy(c);
    }
}

void xr_transport_set_worker(xr_transport *t, unsigned worker)
{
    t->ip_table = worker ? worker - 1 : 0;
}

void xr_transport_worker_gone(xr_transport *t, unsigned worker)
{
    if (t->per_ip && worker)
        xr_iplimit_reset(t->per_ip, worker - 1);
}

void xr_transport_free(xr_transport *t)
{
    if (!t)
        return;
    xr_transport_drop_all(t);
    xr_transport_unlisten(t);
    xr_iplimit_free(t->per_ip);
    xr_iprate_free(t->per_ip_rate);
    xr_buf_free(&t->zout);
    xr_buf_free(&t->zin);
    xr_buf_free(&t->http);
    free(t->fan_frames);
    free(t->fan_z);
    for (int k = 0; k < 16; k++)
        xr_zdeflate_free(t->deflaters[k]);
    xr_zinflate_free(t->inflater);
    struct event *evs[4] = {t->hs_timer, t->resume_timer, t->flush_ev, t->drain_ev};
    for (int k = 0; k < 4; k++)
        if (evs[k])
            event_free(evs[k]);
    if (t->tls)
        SSL_CTX_free(t->tls);
    free(t->dirty);
    free(t->rbuf);
    free(t->tls_wbuf);
    free(t);
}

void *xr_transport_ud(const xr_transport *t) { return t->ud; }

void xr_transport_set_hooks(xr_transport *t, const xr_transport_hooks *hooks)
{
    t->hooks = *hooks;
}

void xr_transport_drain(xr_transport *t)
{
    if (t->draining)
        return;
    t->draining = 1;
    xr_transport_unlisten(t);
    /* From the loop: the close hooks must not run inside the caller. */
    event_active(t->drain_ev, EV_TIMEOUT, 0);
}

size_t xr_transport_sockets(const xr_transport *t)
{
    /* Every socket is either in its handshake or upgraded until destroyed. */
    return t->stats.n_open + t->stats.n_pending;
}

const xr_transport_stats *xr_transport_stats_get(const xr_transport *t) { return &t->stats; }

int xr_transport_reload_tls(xr_transport *t, char *err, size_t errlen)
{
    if (!t->o->tls_cert) {
        snprintf(err, errlen, "no TLS certificate configured");
        return XR_ESTATE;
    }
    SSL_CTX *ctx = xr_tls_ctx_new(t->o->tls_cert, t->o->tls_key, t->o->tls_ciphers, err, errlen);
    if (!ctx)
        return XR_ETLS;
    /* Live connections hold a reference to the old context. */
    SSL_CTX_free(t->tls);
    t->tls = ctx;
    return XR_OK;
}
