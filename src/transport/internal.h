/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the files of the transport; nothing above includes it. */
#ifndef XR_TRANSPORT_INTERNAL_H
#define XR_TRANSPORT_INTERNAL_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>

#include "transport/transport.h"
#include "util/iplimit.h"
#include "util/iprate.h"
#include "codec/deflate.h"
#include "codec/ws_frame.h"
#include "util/map.h"

/*
 * Queued output: a list of segments, each either bytes copied into a pool
 * block (small frames go next to the ones before them, so a burst is one
 * contiguous write) or a reference to shared bytes (large fan-out payloads).
 * Nothing is allocated while nothing is queued.
 */
typedef struct xr_seg {
    struct xr_seg *next;
    xr_shared *ref;          /* referenced bytes, or NULL: data[] holds them */
    size_t off, len;         /* unsent bytes: [off, off + len) */
    size_t size;             /* the block's size, for the pool */
    char data[];
} xr_seg;

typedef struct xr_out {
    xr_seg *head, *tail;
    size_t len;
} xr_out;

typedef struct xr_listener {
    xr_transport *t;
    struct evconnlistener *ev;
    int tls;
    int api;                 /* --api-listen: plain HTTP requests only */
    char *spec;              /* as given, for messages */
} xr_listener;

struct xr_transport {
    struct event_base *base;
    const xr_options *o;
    const xr_logger *log;
    xr_transport_hooks hooks;
    void *ud;
    SSL_CTX *tls;

    xr_listener listeners[XR_MAX_LISTENERS + 1];
    size_t n_listeners;
    struct event *resume_timer;     /* re-enables listeners after EMFILE */

    xr_conn *conns;                 /* every connection */
    xr_conn *hs_head, *hs_tail;     /* in handshake, oldest first */
    struct event *hs_timer;
    const struct timeval *ping_tv, *pong_tv, *close_tv;

    /* Connections with output or a close to act on once the current
     * callback ends; slots of destroyed ones are NULL. */
    xr_conn **dirty;
    size_t n_dirty, cap_dirty;
    struct event *flush_ev;
    struct event *drain_ev;
    int draining;

    xr_iplimit *per_ip;             /* sockets per address, all workers; or NULL */
    unsigned ip_table;              /* this process's table in it */
    xr_iprate *per_ip_rate;         /* new connections a second per address, all
                                     * workers; or NULL */
    xr_transport_stats stats;

    /* Every read lands here first; only an incomplete frame or head is
     * kept by its connection, so idle connections hold no input buffer. */
    uint8_t *rbuf;
    size_t rbuf_cap;
    char *tls_wbuf;                 /* a record's worth of small segments */

    /* permessage-deflate, shared by every connection */
    z_stream *deflaters[16];        /* by window bits, made on first use */
    z_stream *inflater;             /* clients without context takeover */
    xr_buf zout, zin;
    xr_buf http;                    /* body of a plain HTTP answer */

    /* xr_fanout's scratch, reused: whole frames and compressed bodies */
    struct xr_shared **fan_frames;
    struct xr_zbody *fan_z;
    size_t cap_frames, cap_z;
};

/* A fan-out body compressed once for every receiver with a 15-bit window:
 * tried, and z when it shrank. Held for the length of one xr_fanout. */
typedef struct xr_zbody {
    xr_shared *z;
    int tried;
} xr_zbody;

/* conn.c */
/* Puts c on the list the flush step walks when the current callback ends. */
void xr_transport_mark(xr_transport *t, xr_conn *c);
/* ip (iplen bytes), when given, was counted in t->per_ip for this socket. */
void xr_conn_accept(xr_transport *t, int fd, int tls, int api, const void *ip, size_t iplen);
void xr_conn_destroy(xr_conn *c);
void xr_conn_expire_handshakes(xr_transport *t);
void xr_conn_drain(xr_conn *c);
/* Writes what c has queued and acts on a pending close (flush step). */
void xr_conn_flush(xr_conn *c);
xr_conn *xr_conn_next(const xr_conn *c);
/* The parts of xr_fanout (fanout.c). One text frame: prefix then body (a
 * large body referenced, not copied; compressed through zb when c
 * compresses with a 15-bit window). */
int xr_conn_send_shared(xr_conn *c, const char *prefix, size_t plen, xr_shared *body,
                        xr_zbody *zb);
/* A whole frame, header included, that other receivers share. */
int xr_conn_send_frame(xr_conn *c, xr_shared *frame, size_t payload_len);
/* Writes what is queued for c now; never calls back, never destroys. */
void xr_conn_uncork(xr_conn *c);
/* Whether a message of len bytes goes to c compressed. */
int xr_conn_wants_deflate(const xr_conn *c, size_t len);

/* tls.c */
SSL_CTX *xr_tls_ctx_new(const char *cert, const char *key, const char *ciphers,
                        char *err, size_t errlen);

/* listener.c */
void xr_listeners_enable(xr_transport *t, int on);

#endif
