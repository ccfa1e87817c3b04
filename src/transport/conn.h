/* SPDX-License-Identifier: Apache-2.0 */
/* One connection's state, shared by the files that make up its life:
 * conn.c (events, frames in, close, lifetime), out.c (the output queue and
 * the sending calls), handshake.c (the HTTP head: plain answers and the
 * upgrade). Nothing outside the transport includes it. */
#ifndef XR_TRANSPORT_CONN_H
#define XR_TRANSPORT_CONN_H

#include "transport/internal.h"

/*
 * A connection's life, one state at a time:
 *
 *   HANDSHAKE -> OPEN -> CLOSING -> FLUSH -> LINGER -> freed
 *   HANDSHAKE -> FLUSH            (a plain HTTP answer, a refused upgrade)
 *   any -> BROKEN                 (a write failed: freed at the flush step)
 *   any -> DEAD                   (destroyed inside its own event callback:
 *                                  freed when the callback unwinds)
 *
 * The state answers the three questions every path asks: may the layer
 * above send (xr_conn_may_send), are frames read and handed up
 * (xr_conn_reads_frames), and may a hook run (only OPEN and CLOSING call
 * the message hook; the close hook runs once, closed_cb). Two pieces of
 * work a send may decide but never does itself wait for the flush step
 * beside the state: slow (close 1008) and notify (the application's close:
 * run the close hook).
 */
enum {
    ST_HANDSHAKE, /* TLS and/or HTTP request head not complete yet */
    ST_OPEN,      /* WebSocket open */
    ST_CLOSING,   /* we sent a close frame and wait for the peer's */
    ST_FLUSH,     /* last bytes going out, input discarded */
    ST_LINGER,    /* write side shut down; reading until EOF or close_timeout */
    ST_BROKEN,    /* a write failed */
    ST_DEAD       /* destroyed while busy */
};

/* Which timeout the socket's event carries. */
enum { TMO_NONE, TMO_PING, TMO_PONG, TMO_CLOSE };

/* Reading pauses while this much output is queued, so a client that sends
 * faster than it reads is slowed by TCP instead of growing our buffers. */
#define XR_PAUSE_BYTES (256u << 10)

/* Shared payloads smaller than this are copied next to what is queued: a
 * reference is a segment of its own and an iovec of its own. */
#define XR_SHARE_MIN (8u << 10)

/* Bytes read per readiness event before other sockets get their turn. */
#define XR_READ_BUDGET (256u << 10)

#define XR_IOV 64

/* The largest TLS record's plaintext (RFC 8446 5.1). */
#define XR_TLS_RECORD 16384

struct xr_conn {
    xr_transport *t;
    struct event ev;              /* the socket; flags and timeout in watching/tmo */
    xr_conn *prev, *next;         /* t->conns */
    xr_conn *hs_prev, *hs_next;   /* t->hs_head while in handshake */
    SSL *ssl;                     /* wss:// */
    xr_out out;
    uint8_t *in;                  /* an incomplete head or frame, kept between reads */
    size_t in_len, in_cap;
    xr_buf msg;                   /* fragments of the message being reassembled */
    void *data;                   /* the application's (xr_conn_set_data) */
    void *slot;                   /* the layer above's */
    const char *protocol;
    uint8_t *ip;                  /* length byte, then the address counted in
                                   * t->per_ip; NULL when not limited */
    z_stream *inflater;           /* client context taken over: its own window */
    char *close_reason;           /* pending close notice (xr_conn_close) */
    /* xr_conn_auth, in one block: the token's sub (maybe ""), its NUL,
     * then the grants and a final NUL; NULL without a token */
    char *user;
    struct event *expiry;         /* xr_conn_auth: when the token ends, or NULL */
    uint64_t hs_deadline;
    xr_ws_decoder dec;
    xr_pmd pmd;                   /* permessage-deflate terms, when deflate */
    uint32_t dirty;               /* index + 1 in t->dirty, 0 when not there */
    int fd;
    uint16_t close_code;          /* pending close notice */
    uint8_t state;
    uint8_t watching;             /* EV_READ | EV_WRITE as added */
    uint8_t tmo;
    unsigned added : 1;           /* ev is pending */
    unsigned upgraded : 1;        /* counted in n_open */
    unsigned closed_cb : 1;       /* the close hook has run */
    unsigned notify : 1;          /* flush step: run the close hook (app's close) */
    unsigned slow : 1;            /* flush step: output over max_output_buffer, 1008 */
    unsigned ping_out : 1;        /* a keepalive ping awaits its pong */
    unsigned busy : 1;            /* inside our event callback: destroy later */
    unsigned paused : 1;          /* reading stopped by output backlog */
    unsigned in_hs : 1;           /* linked in the handshake list */
    unsigned deflate : 1;         /* permessage-deflate negotiated */
    unsigned tls_wants_write : 1; /* SSL_read needs the socket writable */
    unsigned held : 1;            /* whole frames wait in c->in for the backlog */
    unsigned api : 1;             /* accepted on --api-listen: plain HTTP only */
};

/* The layer above may queue a message: open, and no close decided. */
static inline int xr_conn_may_send(const xr_conn *c)
{
    return c->state == ST_OPEN && !c->closed_cb && !c->slow && !c->notify;
}

/* Frames are read and handled: open, or waiting for the peer's close. */
static inline int xr_conn_reads_frames(const xr_conn *c)
{
    return c->state == ST_OPEN || c->state == ST_CLOSING;
}

/* conn.c */
size_t xr_conn_pause_at(const xr_conn *c);
void xr_conn_rewatch(xr_conn *c);
void xr_conn_hs_remove(xr_conn *c);
/* Everything is queued: write it, then close (lingering). */
void xr_conn_finish(xr_conn *c);

/* out.c */
int xr_out_add(xr_conn *c, const void *data, size_t n);
int xr_out_ref(xr_conn *c, xr_shared *sh);
void xr_out_clear(xr_conn *c);
/* Writes what the kernel takes: XR_OUT_DONE when the queue is empty,
 * XR_OUT_FULL when the socket is full, XR_OUT_BROKEN. */
enum { XR_OUT_BROKEN = -1, XR_OUT_FULL = 0, XR_OUT_DONE = 1 };
int xr_out_write(xr_conn *c);
int xr_out_frame(xr_conn *c, unsigned op, const void *data, size_t len);
/* A data message, compressed when that was agreed and pays off. */
int xr_out_message(xr_conn *c, unsigned op, const void *data, size_t len);

/* handshake.c */
/* Reads an HTTP head from p (avail bytes): answers a plain request or
 * upgrades; returns the bytes used, 0 while the head is incomplete. */
size_t xr_conn_head(xr_conn *c, const uint8_t *p, size_t avail);
void xr_conn_http_error(xr_conn *c, int status, const char *reason);

#endif
