/* libxraptor internals: shared by the files of src/, never installed. */
#ifndef XR_INTERNAL_H
#define XR_INTERNAL_H

#include <regex.h>
#include <stdarg.h>
#include <stdint.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "xraptor.h"
#include "xraptor/antenna.h"
#include "map.h"
#include "protocol.h"
#include "ws_frame.h"
#include "deflate.h"

/* ---- metrics ---- */

/* Close codes 1000..1015 get their own counter, everything else shares one. */
#define XR_CLOSE_SLOTS 17

typedef struct xr_metrics {
    uint64_t connections_total;     /* WebSocket connections opened */
    uint64_t tcp_accepted_total;    /* sockets accepted (any protocol) */
    uint64_t handshake_failures_total;
    uint64_t refused_total;         /* turned away by max_connections */
    uint64_t refused_per_ip_total;  /* turned away by max_connections_per_ip */
    uint64_t http_requests_total;   /* plain HTTP (health, metrics, errors) */
    uint64_t messages_in, messages_out;
    uint64_t bytes_in, bytes_out;   /* message payload bytes */
    uint64_t pings_sent, ping_timeouts, slow_reader_closes;
    uint64_t closes[XR_CLOSE_SLOTS];/* by the code that closed it */
    /* protocol: [GET..UNSUB, unknown][outcome] */
    uint64_t requests[6][4];
    uint64_t publishes, publish_errors, deliveries, antenna_messages;
    uint64_t room_pruned, antenna_reconnects;
    /* permessage-deflate: messages, and payload bytes before and after */
    uint64_t z_in, z_out, z_raw_out, z_wire_out;
    uint64_t z_errors;              /* corrupt or oversized compressed input */
} xr_metrics;

enum { XR_OUT_OK, XR_OUT_NOT_REGISTERED, XR_OUT_FAIL, XR_OUT_BAD_REQUEST };

void xr_metrics_close(xr_metrics *m, unsigned code);
struct evbuffer;
void xr_metrics_write(const xr_server *srv, struct evbuffer *out);
void xr_health_write(const xr_server *srv, struct evbuffer *out, int *status);

/* ---- server ---- */

struct xr_mw {
    int priority;
    int has_re;
    regex_t re;             /* anchored at the start of the route */
    xr_middleware_fn fn;
    void *ud;
};

typedef struct xr_listener {
    xr_server *srv;
    struct evconnlistener *ev;
    int tls;
    char *spec;                     /* as given, for messages */
} xr_listener;

struct xr_server {
    xr_options opts;                /* strings below are owned copies */
    char *owned[2 * XR_MAX_LIST + XR_MAX_LISTENERS + 6];
    size_t n_owned;

    struct event_base *base;
    SSL_CTX *tls;
    xr_handlers handlers;
    void *ud;

    xr_listener listeners[XR_MAX_LISTENERS];
    size_t n_listeners;

    xr_conn *conns;                 /* every connection */
    xr_conn *hs_head, *hs_tail;     /* in handshake, oldest first */
    struct event *hs_timer;
    struct event *drain_timer;
    struct event *resume_timer;     /* re-enables listeners after EMFILE */
    struct event *signals[3];
    const struct timeval *ping_tv, *pong_tv, *close_tv;

    /* workers: the port each listener spec resolved to in the parent (so
     * workers share it even when 0 was asked), and which worker we are */
    int ports[XR_MAX_LISTENERS];
    unsigned worker;                /* 0: single process or the supervisor */

    size_t n_open;                  /* WebSocket connections open */
    size_t n_pending;               /* sockets not yet upgraded */
    int draining, running;
    uint64_t started_ms;
    xr_metrics metrics;
    char error[256];

    /* protocol */
    xr_map routes;                  /* "route\nMETHOD" -> struct xr_route_entry */
    struct xr_mw *mws;              /* sorted by priority */
    size_t n_mws;
    struct xr_request *free_requests;   /* finished, kept for reuse */
    size_t n_free_requests;
    xr_buf scratch;                 /* responses are built here, then framed */
    xr_buf fanout;                  /* per-channel prefix of a SUB delivery */

    /* permessage-deflate */
    z_stream *deflaters[16];        /* by window bits, made on first use */
    z_stream *inflater;             /* for clients without context takeover */
    xr_buf zout;                    /* a compressed message, then framed */
    xr_buf zin;                     /* an inflated message being delivered */

    /* channels, rooms, antenna */
    xr_map channels;                /* name -> struct xr_channel (local receivers) */
    xr_map rooms;                   /* name -> struct xr_room */
    xr_map memberships;             /* member -> struct xr_membership */
    xr_map subs;                    /* name -> antenna subscription count */
    xr_map per_ip;                  /* address bytes -> sockets open from it */
    struct event *room_timer;
    const xr_antenna_ops *antenna;
    void *antenna_self;
    void *antenna_dl;
    xr_antenna_host antenna_host;
    int antenna_up, antenna_was_up;
    char *antenna_url;
};

/* Bytes shared by many outgoing frames (fan-out): refcounted, immutable. */
typedef struct xr_shared {
    unsigned refs;
    unsigned deflate_tried : 1;
    struct xr_shared *deflated;     /* the same bytes compressed, window 15 */
    size_t len;
    char data[];
} xr_shared;

xr_shared *xr_shared_new(const void *data, size_t len);
void xr_shared_unref(xr_shared *s);

uint64_t xr_now_ms(void);
void xr_server_conn_gone(xr_server *srv);

/* ---- buffer block cache (pool.c) ---- */

/* Routes libevent's allocations through the cache; once per process. */
void xr_pool_install(void);
/* Frees what this thread's cache holds. */
void xr_pool_trim(void);

/* ---- workers ---- */

/*
 * With opts.workers > 1: forks and supervises the workers. Returns 1 in a
 * worker (which then runs the server as usual), or the supervisor's final
 * result (0 or XR_E*) in the parent.
 */
int xr_workers_run(xr_server *srv);

/* The address of listener k (the supervisor's port when there is one): 0,
 * or XR_ELISTEN with srv->error set. Free *ai with evutil_freeaddrinfo. */
struct evutil_addrinfo;
int xr_listen_resolve(xr_server *srv, size_t k, char host[256], int *tls,
                      struct evutil_addrinfo **ai);

/* ---- connection ---- */

void xr_conn_accept(xr_server *srv, int fd, int tls, xr_map_entry *ip);
/* The process-wide compressor for a window (9..15), made on first use. */
z_stream *xr_server_deflater(xr_server *srv, int bits);
void xr_conn_drain(xr_conn *c);      /* graceful stop: close 1001 */
void xr_conn_free(xr_conn *c);
xr_conn *xr_conn_next(const xr_conn *c);
void xr_conn_expire_handshakes(xr_server *srv);
/* One text frame whose payload is prefix then tail (tail shared, not copied). */
int xr_conn_send_shared(xr_conn *c, const char *prefix, size_t plen, xr_shared *tail);
/* A whole frame (header included) shared by reference: the fan-out of one
 * channel to its receivers, which all get the very same bytes. */
int xr_conn_send_frame(xr_conn *c, xr_shared *frame, size_t payload_len);
/* Whether a message of len bytes goes to c compressed. */
int xr_conn_wants_deflate(const xr_conn *c, size_t len);
struct xr_receiver **xr_conn_receivers(xr_conn *c);
struct xr_handle *xr_conn_handle(xr_conn *c);

/* ---- protocol, channels, antenna ---- */

/* A weak reference to a connection: requests that outlive it see NULL. */
struct xr_handle {
    xr_conn *conn;
    unsigned refs;
};

/* Fills body with the file for a request path; 0, or -1 when none. */
int xr_static_find(const xr_server *srv, const char *path, size_t len,
                   struct evbuffer *body, const char **ctype);

void xr_proto_dispatch(xr_conn *c, xr_msg_type type, const char *data, size_t len);
void xr_router_free(xr_server *srv);
void xr_handle_release(struct xr_handle *h);

int xr_channel_open(xr_server *srv, xr_conn *c, const char *name, size_t len);
void xr_channel_close(xr_server *srv, xr_conn *c, const char *name, size_t len);
void xr_channels_conn_gone(xr_server *srv, xr_conn *c);
void xr_channels_maps_init(xr_server *srv);
/* Loads and starts the antenna: done by xr_server_run() unless the server
 * speaks only the raw layer. */
int xr_channels_init(xr_server *srv, char *err, size_t errlen);
void xr_channels_free(xr_server *srv);
void xr_channels_metrics(const xr_server *srv, struct evbuffer *out);

/* The scheme of an --antenna URL into out: its length, 0 for a path to a
 * .so, -1 for neither. Pure. */
int xr_antenna_scheme(const char *url, char *out, size_t cap);
/* Resolves and loads the module for url; on success fills ops and dl. */
int xr_antenna_open(const char *url, const char *dir, const xr_antenna_ops **ops,
                    void **dl, char *err, size_t errlen);
void xr_antenna_close(void *dl);

/* ---- tls ---- */

SSL_CTX *xr_tls_ctx_new(const char *cert, const char *key, const char *ciphers,
                        char *err, size_t errlen);

/* ---- log ---- */

void xr_vlog(const xr_server *srv, xr_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void xr_log(const xr_server *srv, xr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define XR_ERROR(s, ...) xr_log((s), XR_LOG_ERROR, __VA_ARGS__)
#define XR_WARN(s, ...)  xr_log((s), XR_LOG_WARN, __VA_ARGS__)
#define XR_INFO(s, ...)  xr_log((s), XR_LOG_INFO, __VA_ARGS__)
#define XR_DEBUG(s, ...) \
    do { if ((s)->opts.log_level >= XR_LOG_DEBUG) xr_log((s), XR_LOG_DEBUG, __VA_ARGS__); } while (0)

/* ---- options ---- */

/* Parses "123", "64k", "1M", "1MiB", "2G" into bytes. */
int xr_parse_size(const char *s, size_t *out);
/* Parses seconds ("20", "0.5", "250ms", "20s") into milliseconds. */
int xr_parse_duration(const char *s, unsigned *ms);

int xr_options_check(const xr_options *o, char *err, size_t errlen);
int xr_listen_spec(const char *spec, int tls_default, char *host, size_t hostlen,
                   int *port);

#endif
