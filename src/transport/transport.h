/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transport: WebSocket connections (ws:// and wss://), listeners, TLS
 * and per-connection deflate, on one libevent loop. It knows sockets, HTTP
 * heads and frames, nothing of routes, channels or metrics: it reaches the
 * layer above only through the hook table it is handed, and keeps one
 * opaque slot per connection for that layer.
 *
 * Sends only queue. A connection touched during a callback is written once
 * when that callback ends (or when the loop's current batch of events ends),
 * EV_WRITE is armed only when the kernel did not take everything, and no
 * hook runs from inside a send: closing a slow reader, and telling the layer
 * above about any close, happen from the loop afterwards.
 */
#ifndef XR_TRANSPORT_H
#define XR_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "xraptor.h"
#include "codec/http.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/shared.h"

struct event_base;
#include <event2/util.h>

typedef struct xr_transport xr_transport;

/* Close codes 1000..1015 get their own counter, everything else shares one. */
#define XR_CLOSE_SLOTS 17

typedef struct xr_transport_stats {
    uint64_t connections_total;     /* WebSocket connections opened */
    uint64_t tcp_accepted_total;    /* sockets accepted (any protocol) */
    uint64_t handshake_failures_total;
    uint64_t refused_total;         /* turned away by max_connections */
    uint64_t refused_per_ip_total;  /* turned away by max_connections_per_ip */
    uint64_t refused_rate_total;    /* turned away by rate_limit_connections */
    uint64_t refused_auth_total;    /* upgrades refused by the authorize hook */
    uint64_t expired_total;         /* closed 4001: credentials ended */
    uint64_t rate_untracked_total;  /* let in: no slot for the address */
    uint64_t http_requests_total;   /* plain HTTP (health, metrics, errors) */
    uint64_t messages_in, messages_out;
    uint64_t bytes_in, bytes_out;   /* message payload bytes */
    uint64_t pings_sent, ping_timeouts, slow_reader_closes;
    uint64_t closes[XR_CLOSE_SLOTS];/* by the code that closed it */
    /* permessage-deflate: messages, and payload bytes before and after */
    uint64_t z_in, z_out, z_raw_out, z_wire_out;
    uint64_t z_errors;              /* corrupt or oversized compressed input */
    uint64_t z_runs;                /* times the compressor ran (a fan-out: once) */
    size_t n_open;                  /* WebSocket connections open */
    size_t n_pending;               /* sockets not yet upgraded */
} xr_transport_stats;

/* The answer to a plain HTTP request, filled by the http hook. */
typedef struct xr_http_reply {
    int status;                     /* 0: not ours, the transport answers 426 */
    const char *ctype;
    const char *extra;              /* more header lines, each ending in CRLF */
    xr_buf *body;                   /* the transport's buffer: append to it */
    xr_shared *file;                /* or a shared body, queued by reference
                                     * (the transport takes this reference) */
} xr_http_reply;

/*
 * What the layer above is told. Any hook may be NULL. close runs once for
 * every connection that open saw (code as sent or received, 1005/1006
 * otherwise); gone runs for every connection, upgraded or not, when it is
 * destroyed, after which the xr_conn must not be touched. Hooks run from the
 * loop, never from inside a call into the transport (sends, closes).
 */
typedef struct xr_transport_hooks {
    void (*open)(xr_conn *c, void *ud);
    void (*message)(xr_conn *c, xr_msg_type type, const char *data, size_t len, void *ud);
    void (*close)(xr_conn *c, int code, const char *reason, size_t len, void *ud);
    void (*gone)(xr_conn *c, void *ud);
    void (*http)(const xr_http_request *req, xr_http_reply *reply, void *ud);
    /* An upgrade about to be accepted: 0 lets it in (the hook may call
     * xr_conn_auth), else the HTTP status to refuse it with and *why, a
     * static text. */
    int (*authorize)(xr_conn *c, const xr_http_request *req, const char **why, void *ud);
    /* A plain request that may carry a body (a POST to an API): its
     * largest, or 0 (bodies are refused, as for every other request). */
    size_t (*body_limit)(const xr_http_request *req, void *ud);
} xr_transport_hooks;

/* opts must outlive the transport (the server's own copy). With tls_cert
 * set, the TLS context is made here. NULL with err on failure. */
xr_transport *xr_transport_new(struct event_base *base, const xr_options *opts,
                               const xr_logger *log, const xr_transport_hooks *hooks,
                               void *ud, char *err, size_t errlen);
/* Destroys every connection (close and gone hooks run) and listener. */
void xr_transport_free(xr_transport *t);
void *xr_transport_ud(const xr_transport *t);
/* Replaces the hook table (before the loop runs). */
void xr_transport_set_hooks(xr_transport *t, const xr_transport_hooks *hooks);

/* The listeners opts asks for: --listen's, then --api-listen's (*api 1:
 * plain HTTP for the API, no WebSocket). */
size_t xr_transport_n_specs(const xr_options *o);
const char *xr_transport_spec(const xr_options *o, size_t k, int *api);

/* Binds every spec; ports[k] != 0 overrides the k-th listener's port
 * (workers share the supervisor's). reuseport: SO_REUSEPORT. */
int xr_transport_listen(xr_transport *t, const int *ports, int reuseport,
                        char *err, size_t errlen);
/* Serves listening sockets made by someone else (systemd's socket
 * activation): tls[k] 1 or 0, or -1 to follow the TLS configuration. */
int xr_transport_adopt(xr_transport *t, const int *fds, const int *tls, size_t n, char *err,
                       size_t errlen);
/* With adopted sockets: binds --api-listen's address too (port as for
 * xr_transport_listen's last one). No-op without it. */
int xr_transport_listen_api(xr_transport *t, int port, int reuseport, char *err, size_t errlen);
void xr_transport_unlisten(xr_transport *t);
/* The port the n-th listener is bound to, or XR_EINVAL. */
int xr_transport_port(const xr_transport *t, size_t n);

/* --workers: which worker (1..N) this process is, after its fork; and, in
 * the supervisor, that worker N died (its sockets' counts go). */
void xr_transport_set_worker(xr_transport *t, unsigned worker);
void xr_transport_worker_gone(xr_transport *t, unsigned worker);

/* Graceful stop, from the loop: no new connections, handshakes dropped,
 * close 1001 to every open connection. */
void xr_transport_drain(xr_transport *t);
/* Destroys every connection now. */
void xr_transport_drop_all(xr_transport *t);
/* Sockets held: open connections and handshakes. */
size_t xr_transport_sockets(const xr_transport *t);
const xr_transport_stats *xr_transport_stats_get(const xr_transport *t);
/* Loads the certificate and key again for new connections. */
int xr_transport_reload_tls(xr_transport *t, char *err, size_t errlen);

/* "HOST:PORT", "[v6]:PORT", ":PORT", with an optional ws:// or wss://
 * (http://, https://) prefix: 1 for TLS, 0 for plain, XR_EINVAL when
 * malformed. Pure. */
int xr_listen_spec(const char *spec, int tls_default, char *host, size_t hostlen, int *port);
/* The address for a listener spec (port overrides it when non-zero):
 * 0, or XR_ELISTEN with err set. Free *ai with evutil_freeaddrinfo. */
int xr_listen_resolve(const char *spec, int tls_default, int port, char host[256],
                      int *tls, struct evutil_addrinfo **ai, char *err, size_t errlen);

/* ---- connections, for the layer above -------------------------------- */

xr_transport *xr_conn_transport(const xr_conn *c);
/* The layer above's per-connection state (NULL until it sets one). */
void *xr_conn_slot(const xr_conn *c);
void xr_conn_set_slot(xr_conn *c, void *slot);
/*
 * Fan-out: n text messages, each a target's own prefix then a body shared
 * by every target (bodies[k]), to n_to targets. Each target gets all n,
 * then is written at once, so one output block, hot in the cache, serves
 * target after target. Targets in a row with the same prefix (one
 * channel's receivers) share each whole frame, built once; a body is
 * compressed once for every target with a 15-bit window (the prefix goes
 * in front as a stored DEFLATE block), others compress their own. Sends
 * only queue: nothing is called back and no connection is destroyed here
 * (a broken socket goes at the next flush step). Only from a callback of
 * the loop's own. Returns the messages queued.
 */
typedef struct xr_fanout_target {
    xr_conn *conn;
    const char *prefix;
    size_t plen;
} xr_fanout_target;

size_t xr_fanout(xr_transport *t, const xr_fanout_target *to, size_t n_to,
                 xr_shared *const *bodies, size_t n);

/* The connection's user (NULL: none), what its token grants (glen bytes
 * the server packed, opaque here; none when glen is 0), and when its
 * credentials end (monotonic ms, 0: never): then it is closed with 4001
 * "token expired". Called again, all three are replaced. XR_ENOMEM, or
 * XR_OK. */
int xr_conn_auth(xr_conn *c, const char *user, const char *grants, size_t glen,
                 uint64_t expires_ms);
/* Those grants, NUL-terminated after their glen bytes, or NULL. */
const char *xr_conn_grants(const xr_conn *c);

#endif
