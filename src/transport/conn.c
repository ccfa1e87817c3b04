/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One client socket from accept to close: TLS and HTTP handshake, WebSocket
 * frames in and out, keepalive, close handshake, limits. A bare libevent
 * event per socket (no bufferevent): reads land in the transport's shared
 * buffer and only an incomplete frame is kept; output is queued in pooled
 * blocks and written once per callback, EV_WRITE armed only when the kernel
 * did not take it all.
 */
#include "transport/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>

#include "util/clock.h"
#include "util/pool.h"

enum {
    ST_HANDSHAKE, /* TLS and/or HTTP request head not complete yet */
    ST_OPEN,      /* WebSocket open */
    ST_CLOSING,   /* we sent a close frame and wait for the peer's */
    ST_FLUSH      /* last bytes going out, then lingering close */
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
    unsigned notify : 1;          /* a close notice waits for the loop */
    unsigned slow : 1;            /* output over max_output_buffer: close 1008 */
    unsigned ping_out : 1;        /* a keepalive ping awaits its pong */
    unsigned busy : 1;            /* inside our event callback: destroy later */
    unsigned dead : 1;            /* destroyed while busy */
    unsigned paused : 1;          /* reading stopped by output backlog */
    unsigned shut : 1;            /* write side shut down, lingering */
    unsigned in_hs : 1;           /* linked in the handshake list */
    unsigned deflate : 1;         /* permessage-deflate negotiated */
    unsigned tls_wants_write : 1; /* SSL_read needs the socket writable */
    unsigned held : 1;            /* whole frames wait in c->in for the backlog */
    unsigned broken : 1;          /* a write failed: destroyed at the flush step */
};

static void on_io(evutil_socket_t fd, short what, void *arg);

static size_t pause_at(const xr_conn *c)
{
    size_t max = c->t->o->max_output_buffer;
    return max < XR_PAUSE_BYTES ? max : XR_PAUSE_BYTES;
}

/* ---- output queue ----------------------------------------------------- */

static xr_seg *seg_link(xr_conn *c, xr_seg *s)
{
    s->next = NULL;
    if (c->out.tail)
        c->out.tail->next = s;
    else
        c->out.head = s;
    c->out.tail = s;
    return s;
}

/* Copies n bytes to the end of the queue, filling the last block first. */
/* Free bytes at the end of the block being filled (0: none, or bytes by
 * reference). */
static size_t tail_room(const xr_conn *c)
{
    const xr_seg *s = c->out.tail;
    return s && !s->ref ? s->size - sizeof *s - s->off - s->len : 0;
}

static int out_add(xr_conn *c, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        xr_seg *s = c->out.tail;
        size_t room = tail_room(c);
        if (!room) {
            /* Blocks double with the backlog: a burst stays a few blocks. */
            size_t want = n > c->out.len ? n : c->out.len;
            size_t size = xr_pool_size(want + sizeof *s);
            if (!(s = xr_pool_get(size)))
                return XR_ENOMEM;
            s->ref = NULL;
            s->off = s->len = 0;
            s->size = size;
            seg_link(c, s);
            room = size - sizeof *s;
        }
        size_t k = n < room ? n : room;
        memcpy(s->data + s->off + s->len, p, k);
        s->len += k;
        c->out.len += k;
        p += k;
        n -= k;
    }
    return XR_OK;
}

/* Queues shared bytes by reference. */
static int out_ref(xr_conn *c, xr_shared *sh)
{
    xr_seg *s = xr_pool_get(XR_POOL_MIN);
    if (!s)
        return XR_ENOMEM;
    s->ref = xr_shared_ref(sh);
    s->off = 0;
    s->len = sh->len;
    s->size = XR_POOL_MIN;
    seg_link(c, s);
    c->out.len += sh->len;
    return XR_OK;
}

static void seg_free(xr_seg *s)
{
    xr_shared_unref(s->ref);
    xr_pool_put(s, s->size);
}

/* Drops n sent bytes from the front of the queue. */
static void out_consume(xr_conn *c, size_t n)
{
    c->out.len -= n;
    while (n) {
        xr_seg *s = c->out.head;
        if (n < s->len) {
            s->off += n;
            s->len -= n;
            return;
        }
        n -= s->len;
        c->out.head = s->next;
        if (!c->out.head)
            c->out.tail = NULL;
        seg_free(s);
    }
    /* A segment emptied exactly may still head the queue. */
    while (c->out.head && !c->out.head->len) {
        xr_seg *s = c->out.head;
        c->out.head = s->next;
        if (!c->out.head)
            c->out.tail = NULL;
        seg_free(s);
    }
}

static void out_clear(xr_conn *c)
{
    while (c->out.head) {
        xr_seg *s = c->out.head;
        c->out.head = s->next;
        seg_free(s);
    }
    c->out.tail = NULL;
    c->out.len = 0;
}

static const char *seg_bytes(const xr_seg *s)
{
    return (s->ref ? s->ref->data : s->data) + s->off;
}

/* Writes what the kernel takes: 1 when the queue is empty, 0 when the
 * socket is full, -1 when the connection is broken. */
static int out_write(xr_conn *c)
{
    xr_transport *t = c->t;
    while (c->out.len) {
        if (c->ssl) {
            xr_seg *s = c->out.head;
            const char *p = seg_bytes(s);
            size_t len = s->len;
            if (s->next && len < XR_TLS_RECORD) {
                /* One record for what several segments hold: each
                 * SSL_write is a record and a write() of its own. The
                 * same bytes are gathered again if OpenSSL asks for a
                 * retry (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). */
                len = 0;
                for (; s && len < XR_TLS_RECORD; s = s->next) {
                    size_t k = s->len < XR_TLS_RECORD - len ? s->len : XR_TLS_RECORD - len;
                    memcpy(t->tls_wbuf + len, seg_bytes(s), k);
                    len += k;
                }
                p = t->tls_wbuf;
            }
            ERR_clear_error();
            int w = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
            if (w > 0) {
                out_consume(c, (size_t)w);
                continue;
            }
            int e = SSL_get_error(c->ssl, w);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                return 0;
            XR_DEBUG(t->log, "TLS write failed (error %d): closing", e);
            return -1;
        }
        struct iovec iov[XR_IOV];
        int n = 0;
        for (xr_seg *s = c->out.head; s && n < XR_IOV; s = s->next) {
            iov[n].iov_base = (void *)seg_bytes(s);
            iov[n].iov_len = s->len;
            n++;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            XR_DEBUG(t->log, "write failed: %s", strerror(errno));
            return -1;
        }
        size_t total = 0;
        for (int k = 0; k < n; k++)
            total += iov[k].iov_len;
        out_consume(c, (size_t)w);
        if ((size_t)w < total)
            return 0;
    }
    return 1;
}

/* ---- events ----------------------------------------------------------- */

static const struct timeval *tmo_tv(const xr_conn *c, int tmo)
{
    switch (tmo) {
    case TMO_PING: return c->t->ping_tv;
    case TMO_PONG: return c->t->pong_tv;
    case TMO_CLOSE: return c->t->close_tv;
    default: return NULL;
    }
}

/* Changes the socket's event only when what it waits for changed: the
 * common case (read, with the keepalive timeout) costs nothing per message. */
static void watch(xr_conn *c, short what, int tmo)
{
    if (c->added && c->watching == what && c->tmo == tmo)
        return;
    if (c->added)
        event_del(&c->ev);
    c->added = 0;
    c->watching = (uint8_t)what;
    c->tmo = (uint8_t)tmo;
    const struct timeval *tv = tmo_tv(c, tmo);
    if (!what && !tv)
        return;
    event_assign(&c->ev, c->t->base, c->fd, what | EV_PERSIST, on_io, c);
    if (event_add(&c->ev, tv) == 0)
        c->added = 1;
}

/* What the socket waits for follows from the state and the queue. */
static void rewatch(xr_conn *c)
{
    xr_transport *t = c->t;
    short w = c->out.len || c->tls_wants_write ? EV_WRITE : 0;
    switch (c->state) {
    case ST_HANDSHAKE:
        watch(c, EV_READ | w, TMO_NONE);
        break;
    case ST_OPEN:
        watch(c, (c->paused ? 0 : EV_READ) | w,
              !t->ping_tv ? TMO_NONE : c->ping_out ? TMO_PONG : TMO_PING);
        break;
    case ST_CLOSING:
        watch(c, EV_READ | w, TMO_CLOSE);
        break;
    case ST_FLUSH:
        /* A peer that never reads must not hold the socket forever. */
        watch(c, c->shut ? EV_READ : w, TMO_CLOSE);
        break;
    }
}

void xr_transport_mark(xr_transport *t, xr_conn *c)
{
    if (c->dirty)
        return;
    if (t->n_dirty == t->cap_dirty) {
        size_t cap = t->cap_dirty ? t->cap_dirty * 2 : 64;
        xr_conn **v = realloc(t->dirty, cap * sizeof *v);
        if (!v)
            return;     /* written when its own socket next wakes it */
        t->dirty = v;
        t->cap_dirty = cap;
    }
    if (t->n_dirty == 0)
        event_active(t->flush_ev, EV_WRITE, 0);
    t->dirty[t->n_dirty++] = c;
    c->dirty = (uint32_t)t->n_dirty;
}

static void unmark(xr_conn *c)
{
    if (c->dirty) {
        c->t->dirty[c->dirty - 1] = NULL;
        c->dirty = 0;
    }
}

/* ---- shared state: compressors, counters ----------------------------- */

/* The process-wide compressor for a window (9..15), made on first use. */
static z_stream *deflater_for(xr_transport *t, int bits)
{
    if (bits < 9 || bits > 15)
        return NULL;
    if (!t->deflaters[bits])
        t->deflaters[bits] = xr_zdeflate_new(bits, (int)t->o->compression_level);
    return t->deflaters[bits];
}

static void close_counted(xr_transport *t, unsigned code)
{
    t->stats.closes[code >= 1000 && code < 1000 + XR_CLOSE_SLOTS - 1
                    ? code - 1000 : XR_CLOSE_SLOTS - 1]++;
}

/* ---- lists and lifetime ---------------------------------------------- */

static void hs_arm(xr_transport *t)
{
    if (!t->hs_head)
        return;
    uint64_t now = xr_now_ms(), at = t->hs_head->hs_deadline;
    uint64_t ms = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(t->hs_timer, &tv);
}

static void hs_remove(xr_conn *c)
{
    xr_transport *t = c->t;
    if (!c->in_hs)
        return;
    if (c->hs_prev)
        c->hs_prev->hs_next = c->hs_next;
    else
        t->hs_head = c->hs_next;
    if (c->hs_next)
        c->hs_next->hs_prev = c->hs_prev;
    else
        t->hs_tail = c->hs_prev;
    c->in_hs = 0;
    t->stats.n_pending--;
}

static void notify_close(xr_conn *c, unsigned code, const char *reason, size_t len)
{
    xr_transport *t = c->t;
    if (!c->upgraded || c->closed_cb)
        return;
    c->closed_cb = 1;
    close_counted(t, code);
    if (t->hooks.close)
        t->hooks.close(c, (int)code, reason ? reason : "", len, t->ud);
}

void xr_conn_destroy(xr_conn *c)
{
    if (c->busy) {
        c->dead = 1;
        return;
    }
    xr_transport *t = c->t;
    notify_close(c, XR_CLOSE_ABNORMAL, NULL, 0);
    unmark(c);
    hs_remove(c);
    if (c->ip) {
        xr_iplimit_put(t->per_ip, t->ip_table, c->ip + 1, c->ip[0]);
        free(c->ip);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->upgraded)
        t->stats.n_open--;
    if (c->added)
        event_del(&c->ev);
    /* Last, so the layer above sees the counts without this connection. */
    if (t->hooks.gone)
        t->hooks.gone(c, t->ud);
    if (c->ssl)
        SSL_free(c->ssl);
    evutil_closesocket(c->fd);
    out_clear(c);
    free(c->in);
    xr_buf_free(&c->msg);
    xr_zinflate_free(c->inflater);
    free(c->close_reason);
    free(c);
}

void xr_conn_expire_handshakes(xr_transport *t)
{
    uint64_t now = xr_now_ms();
    while (t->hs_head && t->hs_head->hs_deadline <= now) {
        xr_conn *c = t->hs_head;
        t->stats.handshake_failures_total++;
        XR_DEBUG(t->log, "handshake timeout after %u ms: closing", t->o->handshake_timeout_ms);
        hs_remove(c);
        xr_conn_destroy(c);
    }
    hs_arm(t);
}

xr_conn *xr_conn_next(const xr_conn *c)
{
    return c->next;
}

/* ---- writing ---------------------------------------------------------- */

static int out_frame(xr_conn *c, unsigned op, const void *data, size_t len)
{
    uint8_t h[XR_WS_MAX_HEADER];
    size_t hl = xr_ws_header(h, op, 1, len, NULL);
    if (tail_room(c) >= hl + len) {
        /* Both in the block being filled: one copy each, no loop. */
        xr_seg *s = c->out.tail;
        char *o = s->data + s->off + s->len;
        memcpy(o, h, hl);
        if (len)
            memcpy(o + hl, data, len);
        s->len += hl + len;
        c->out.len += hl + len;
    } else if (out_add(c, h, hl) < 0 || (len && out_add(c, data, len) < 0)) {
        return XR_ENOMEM;
    }
    xr_transport_mark(c->t, c);
    return XR_OK;
}

/* The compressed form of a message for this connection, in t->zout, or
 * NULL when it goes out as it is: compression off, too small to gain, or
 * not smaller once compressed. a then b are one message. */
static const char *deflated(xr_conn *c, const void *a, size_t alen, const void *b,
                            size_t blen, size_t *zlen)
{
    xr_transport *t = c->t;
    if (!xr_conn_wants_deflate(c, alen + blen))
        return NULL;
    z_stream *z = deflater_for(t, c->pmd.server_bits);
    t->zout.len = 0;
    t->stats.z_runs += z != NULL;
    if (!z || xr_zdeflate(z, a, alen, b, blen, &t->zout) != XR_Z_OK ||
        t->zout.len >= alen + blen)
        return NULL;
    *zlen = t->zout.len;
    return t->zout.p;
}

static void count_deflated(xr_transport *t, size_t raw, size_t wire)
{
    t->stats.z_out++;
    t->stats.z_raw_out += raw;
    t->stats.z_wire_out += wire;
}

/* A data message, compressed when that was agreed and pays off. */
static int out_message(xr_conn *c, unsigned op, const void *data, size_t len)
{
    size_t zlen;
    const char *z = deflated(c, data, len, NULL, 0, &zlen);
    if (!z)
        return out_frame(c, op, data, len);
    count_deflated(c->t, len, zlen);
    return out_frame(c, op | XR_WS_RSV1, z, zlen);
}

/* Lingering close: the peer may still be sending (a close frame, the rest of
 * a message). Closing now would make the kernel answer with RST and could
 * destroy our last bytes in flight, so we half-close and read until EOF. */
static void linger(xr_conn *c)
{
    c->shut = 1;
    if (c->ssl) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
    }
    shutdown(c->fd, SHUT_WR);
}

/* Sends what is queued, then closes. */
static void finish(xr_conn *c)
{
    c->state = ST_FLUSH;
    c->paused = 0;
    xr_buf_free(&c->msg);
    xr_transport_mark(c->t, c);
}

/*
 * Closes with a close frame and tells the layer above; only from the loop
 * (a read, a timeout, the flush step), never from inside a send. fail=1 is
 * "Fail the WebSocket Connection" (7.1.7): we stop reading frames at once.
 * fail=0 is a clean close: we keep reading until the peer's close frame.
 */
static void ws_close(xr_conn *c, unsigned code, const char *reason, int fail)
{
    if (c->state != ST_OPEN)
        return;
    size_t rlen = reason ? strlen(reason) : 0;
    uint8_t p[XR_WS_MAX_CONTROL];
    size_t n = xr_ws_close_payload(p, code, reason, rlen);
    out_frame(c, XR_WS_OP_CLOSE, p, n);
    xr_buf_free(&c->msg);
    c->state = ST_CLOSING;
    notify_close(c, code, (const char *)p + 2, n - 2);
    if (fail)
        finish(c);
}

/* The flush step: a close decided inside a send, a close notice, then the
 * queued bytes. Runs from the loop only. */
void xr_conn_flush(xr_conn *c)
{
    xr_transport *t = c->t;
    unmark(c);
    if (c->broken) {
        xr_conn_destroy(c);
        return;
    }
    if (c->slow) {
        c->slow = 0;
        t->stats.slow_reader_closes++;
        XR_DEBUG(t->log, "slow reader: output exceeds max_output_buffer %zu, closing",
                 t->o->max_output_buffer);
        /* Its backlog is what it failed to read: the close frame goes out
         * after it or not at all, bounded by close_timeout. */
        ws_close(c, XR_CLOSE_POLICY, "output buffer exceeds max_output_buffer", 1);
    }
    if (c->notify) {
        c->notify = 0;
        char *r = c->close_reason;
        c->close_reason = NULL;
        notify_close(c, c->close_code, r, r ? strlen(r) : 0);
        free(r);
    }
    if (c->out.len && out_write(c) < 0) {
        xr_conn_destroy(c);
        return;
    }
    if (c->state == ST_FLUSH && !c->out.len && !c->shut)
        linger(c);
    /* A reader this far behind is not read from until it catches up. */
    int resume = 0;
    if (c->state == ST_OPEN && c->out.len > pause_at(c)) {
        c->paused = 1;
    } else if (c->paused && c->out.len <= pause_at(c) / 2) {
        c->paused = 0;
        resume = 1;
    }
    rewatch(c);
    /* Frames kept while paused, or bytes TLS decrypted already, are
     * announced by no readiness event. */
    if ((resume || c->held) && !c->paused && c->added &&
        (c->in_len || (c->ssl && SSL_has_pending(c->ssl)))) {
        c->held = 0;
        event_active(&c->ev, EV_READ, 1);
    }
}

void xr_conn_uncork(xr_conn *c)
{
    /* Anything beyond plain bytes to write (a close to act on, a socket
     * that was full) is left to the flush step. */
    if (!c->dirty || c->broken || c->slow || c->notify || c->busy || !c->out.len ||
        c->state != ST_OPEN || c->paused || (c->watching & EV_WRITE))
        return;
    int r = out_write(c);
    if (r < 0)
        c->broken = 1;
    else if (r == 1)
        unmark(c);
}

/* ---- HTTP ------------------------------------------------------------- */

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Every plain HTTP answer closes the connection: the port exists for
 * WebSocket, and one request per socket keeps the handshake path simple. */
/* The body is body's bytes (copied: short texts) or file's (queued by
 * reference: one copy however many clients fetch it). */
static void http_reply(xr_conn *c, int status, const char *ctype, const char *extra,
                       const xr_buf *body, xr_shared *file, int head_only)
{
    xr_transport *t = c->t;
    char head[512];
    size_t blen = file ? file->len : body->len;
    t->stats.http_requests_total++;
    if (status >= 400)
        t->stats.handshake_failures_total++;
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                     status, status_text(status), ctype, blen, extra ? extra : "");
    int rc = n < 0 || (size_t)n >= sizeof head ? XR_EINVAL : out_add(c, head, (size_t)n);
    if (rc == XR_OK && !head_only && blen)
        rc = file ? out_ref(c, file) : out_add(c, body->p, body->len);
    xr_shared_unref(file);
    if (rc < 0) {
        xr_conn_destroy(c);
        return;
    }
    finish(c);
}

static void http_error(xr_conn *c, int status, const char *reason)
{
    xr_transport *t = c->t;
    /* reason is always our own static text, never request bytes. */
    t->http.len = 0;
    xr_buf_printf(&t->http, "%s\n", reason);
    XR_DEBUG(t->log, "HTTP %d: %s", status, reason);
    http_reply(c, status, "text/plain; charset=utf-8",
               status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
               : status == 405 ? "Allow: GET, HEAD\r\n" : NULL,
               &t->http, NULL, 0);
}

static void serve_plain(xr_conn *c, const xr_http_request *req)
{
    xr_transport *t = c->t;
    t->http.len = 0;
    xr_http_reply reply = {.status = 0, .ctype = "text/plain; charset=utf-8", .body = &t->http};
    if (t->hooks.http)
        t->hooks.http(req, &reply, t->ud);
    if (!reply.status) {
        xr_shared_unref(reply.file);
        http_error(c, 426, "this is a WebSocket endpoint: send a GET with Upgrade: websocket");
        return;
    }
    int head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    http_reply(c, reply.status, reply.ctype, reply.extra, &t->http, reply.file, head);
    if (t->http.cap > (1u << 20))
        xr_buf_free(&t->http);
}

static void upgrade(xr_conn *c, const xr_ws_handshake *hs, const char *ext)
{
    xr_transport *t = c->t;
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s%s%s%s\r\n",
                     hs->accept, hs->protocol ? "Sec-WebSocket-Protocol: " : "",
                     hs->protocol ? hs->protocol : "", hs->protocol ? "\r\n" : "",
                     ext ? "Sec-WebSocket-Extensions: " : "", ext ? ext : "", ext ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head || out_add(c, head, (size_t)n) < 0) {
        xr_conn_destroy(c);
        return;
    }
    xr_transport_mark(t, c);
    hs_remove(c);
    c->state = ST_OPEN;
    c->upgraded = 1;
    c->protocol = hs->protocol;
    t->stats.n_open++;
    t->stats.connections_total++;
    xr_ws_decoder_init(&c->dec, t->o->max_frame_size, t->o->max_message_size, 1);
    c->dec.rsv1_ok = c->deflate;
    c->dec.stream = 1;
    if (t->hooks.open)
        t->hooks.open(c, t->ud);
}

/* The request head: the bytes it took, or 0 while incomplete. */
static size_t handle_head(xr_conn *c, const uint8_t *p, size_t avail)
{
    xr_transport *t = c->t;
    const xr_options *o = t->o;
    size_t n = avail < o->max_header_size ? avail : o->max_header_size;
    xr_http_request req;
    xr_http_error err;
    long r = xr_http_parse((const char *)p, n, &req, &err);
    if (r == 0) {
        if (avail >= o->max_header_size) {
            http_error(c, 431, "request head exceeds max_header_size");
            return avail;
        }
        return 0;
    }
    if (r < 0) {
        http_error(c, err.status, err.reason);
        return avail;
    }
    xr_ws_handshake hs;
    switch (xr_http_classify(&req, o->subprotocols, o->n_subprotocols, o->allowed_origins,
                             o->n_allowed_origins, &hs, &err)) {
    case XR_HTTP_REJECT:
        http_error(c, err.status, err.reason);
        return avail;
    case XR_HTTP_PLAIN:
        serve_plain(c, &req);
        return avail;
    case XR_HTTP_UPGRADE:
        break;
    }
    if (t->draining) {
        http_error(c, 503, "server is shutting down");
        return avail;
    }
    if (t->stats.n_open >= o->max_connections) {
        t->stats.refused_total++;
        http_error(c, 503, "too many connections: max_connections reached");
        return avail;
    }
    char ext[XR_PMD_RESPONSE_MAX];
    c->deflate = o->compression &&
                 xr_pmd_negotiate(&req, o->compression_window_bits, o->compression_no_context,
                                  &c->pmd, ext, sizeof ext);
    upgrade(c, &hs, c->deflate ? ext : NULL);
    /* Bytes after the head are the client's first frames. */
    return (size_t)r;
}

/* ---- WebSocket frames ------------------------------------------------- */

static void deliver(xr_conn *c, unsigned op, const uint8_t *data, size_t len)
{
    xr_transport *t = c->t;
    t->stats.messages_in++;
    t->stats.bytes_in += len;
    if (t->hooks.message)
        t->hooks.message(c, op == XR_WS_OP_TEXT ? XR_TEXT : XR_BINARY, (const char *)data, len,
                         t->ud);
}

/* A compressed message: inflated into t->zin within max_message_size
 * (a bomb gets 1009), checked as UTF-8 when text, then delivered. */
static void deliver_deflated(xr_conn *c, unsigned op, const uint8_t *data, size_t len)
{
    xr_transport *t = c->t;
    z_stream *z;
    int shared = c->pmd.client_no_context;
    if (shared) {
        if (!t->inflater)
            t->inflater = xr_zinflate_new(15);
        z = t->inflater;
    } else {
        /* 9 at least: a peer's zlib turns 8 into 9 (zlib deflateInit2). */
        if (!c->inflater)
            c->inflater = xr_zinflate_new(c->pmd.client_bits < 9 ? 9 : c->pmd.client_bits);
        z = c->inflater;
    }
    if (!z) {
        ws_close(c, XR_CLOSE_INTERNAL, "out of memory", 1);
        return;
    }
    t->zin.len = 0;
    int rc = xr_zinflate(z, data, len, t->o->max_message_size, shared, &t->zin);
    if (rc != XR_Z_OK) {
        t->stats.z_errors += rc != XR_Z_NOMEM;
        ws_close(c, rc == XR_Z_TOO_BIG ? XR_CLOSE_TOO_BIG
                    : rc == XR_Z_NOMEM ? XR_CLOSE_INTERNAL : XR_CLOSE_INVALID_DATA,
                 rc == XR_Z_TOO_BIG ? "inflated message exceeds max_message_size"
                 : rc == XR_Z_NOMEM ? "out of memory" : "invalid compressed data", 1);
    } else if (op == XR_WS_OP_TEXT && !xr_utf8_valid((const uint8_t *)t->zin.p, t->zin.len)) {
        ws_close(c, XR_CLOSE_INVALID_DATA, "text message is not valid UTF-8", 1);
    } else {
        t->stats.z_in++;
        deliver(c, op, (const uint8_t *)t->zin.p, t->zin.len);
    }
    /* One huge message must not pin its buffer for the process's life. */
    if (t->zin.cap > (1u << 20))
        xr_buf_free(&t->zin);
}

static void on_frame(xr_conn *c, xr_ws_frame *f)
{
    switch (f->opcode) {
    case XR_WS_OP_TEXT:
    case XR_WS_OP_BINARY:
    case XR_WS_OP_CONT:
        if (c->state != ST_OPEN)
            return; /* after our close frame, data is discarded (5.5.1) */
        if (f->fin && f->opcode != XR_WS_OP_CONT) {
            /* Unfragmented: hand out the unmasked bytes where they lie. */
            (f->compressed ? deliver_deflated : deliver)(c, f->msg_opcode, f->payload,
                                                         (size_t)f->len);
            return;
        }
        if (xr_buf_add(&c->msg, f->payload, (size_t)f->len) < 0) {
            ws_close(c, XR_CLOSE_INTERNAL, "out of memory", 1);
            return;
        }
        if (f->fin) {
            (f->compressed ? deliver_deflated : deliver)(c, f->msg_opcode,
                                                         (const uint8_t *)c->msg.p, c->msg.len);
            /* Fragmented messages are rare: no buffer held while idle. */
            xr_buf_free(&c->msg);
        }
        return;
    case XR_WS_OP_PING:
        if (c->state == ST_OPEN)
            out_frame(c, XR_WS_OP_PONG, f->payload, (size_t)f->len);
        return;
    case XR_WS_OP_PONG:
        c->ping_out = 0;
        return;
    case XR_WS_OP_CLOSE:
        if (c->state == ST_OPEN) {
            /* 5.5.1: answer with a close frame echoing the status code. */
            uint8_t p[XR_WS_MAX_CONTROL];
            size_t n = f->close_code == XR_CLOSE_NO_STATUS ? 0
                       : xr_ws_close_payload(p, f->close_code, NULL, 0);
            out_frame(c, XR_WS_OP_CLOSE, p, n);
            c->state = ST_CLOSING;
            notify_close(c, f->close_code, (const char *)f->reason, f->reason_len);
        }
        finish(c);
        return;
    }
}

/* Frames from p: the bytes taken; an incomplete frame is left. */
static size_t handle_frames(xr_conn *c, uint8_t *p, size_t n)
{
    size_t off = 0;
    /* A reader this far behind gets no more of its frames handled (they
     * wait in c->in) until it has read what is queued for it. */
    while (off < n && !c->dead && (c->state == ST_OPEN || c->state == ST_CLOSING) &&
           c->out.len <= pause_at(c)) {
        xr_ws_frame f;
        xr_ws_status st = xr_ws_decode(&c->dec, p + off, n - off, &f);
        if (st == XR_WS_NEED_MORE)
            break;
        if (st == XR_WS_ERROR) {
            XR_DEBUG(c->t->log, "closing with %u: %s", f.error_code, f.error);
            if (c->state == ST_OPEN)
                ws_close(c, f.error_code, f.error, 1);
            else
                finish(c);
            return n;
        }
        on_frame(c, &f);
        off += f.size;
    }
    if (!(c->state == ST_OPEN || c->state == ST_CLOSING))
        return n;
    if (off < n && c->out.len > pause_at(c))
        c->held = 1;
    return off;
}

/* Acts on n bytes at p: the bytes taken. */
static size_t consume(xr_conn *c, uint8_t *p, size_t n)
{
    size_t off = 0;
    if (c->state == ST_HANDSHAKE) {
        off = handle_head(c, p, n);
        if (c->state == ST_HANDSHAKE)
            return off;     /* 0: head incomplete; else answered */
    }
    if (c->state == ST_OPEN || c->state == ST_CLOSING)
        return off + handle_frames(c, p + off, n - off);
    return n;               /* flushing: input is discarded */
}

/* Keeps the n unconsumed bytes at p for the next read. */
static int keep(xr_conn *c, const uint8_t *p, size_t n)
{
    if (!n) {
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = 0;
        return 0;
    }
    if (p != c->in) {
        if (n > c->in_cap) {
            size_t cap = n < 4096 ? 4096 : n;
            uint8_t *q = malloc(cap);
            if (!q)
                return -1;
            free(c->in);
            c->in = q;
            c->in_cap = cap;
        }
        memmove(c->in, p, n);
    }
    c->in_len = n;
    return 0;
}

/* Room for the next read into c->in: enough for the pending frame, which
 * the decoder bounded by max_frame_size. */
static int in_room(xr_conn *c)
{
    size_t want = c->in_len + 16384;
    if (c->state == ST_OPEN || c->state == ST_CLOSING) {
        xr_ws_frame f;
        /* Only the header is read: a partial frame's bytes are not
         * touched again until it is complete. */
        xr_ws_decoder probe = c->dec;
        probe.stream = 0;
        if (xr_ws_decode(&probe, c->in, c->in_len < XR_WS_MAX_HEADER ? c->in_len : XR_WS_MAX_HEADER,
                         &f) == XR_WS_NEED_MORE && f.size > want)
            want = f.size;
    }
    if (want <= c->in_cap)
        return 0;
    uint8_t *q = realloc(c->in, want);
    if (!q)
        return -1;
    c->in = q;
    c->in_cap = want;
    return 0;
}

/* One read: > 0 bytes, 0 at EOF, -1 when nothing is there, -2 on error. */
static ssize_t sock_read(xr_conn *c, uint8_t *p, size_t cap)
{
    xr_transport *t = c->t;
    if (!c->ssl) {
        ssize_t n = recv(c->fd, p, cap, 0);
        if (n >= 0)
            return n;
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
    }
    ERR_clear_error();
    int n = SSL_read(c->ssl, p, cap > INT_MAX ? INT_MAX : (int)cap);
    if (n > 0)
        return n;
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_READ:
        return -1;
    case SSL_ERROR_WANT_WRITE:
        c->tls_wants_write = 1;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default: {
        if (c->state == ST_HANDSHAKE) {
            unsigned long e = ERR_peek_last_error();
            char buf[160] = "connection reset";
            if (e)
                ERR_error_string_n(e, buf, sizeof buf);
            XR_DEBUG(t->log, "TLS handshake failed: %s", buf);
        }
        ERR_clear_error();
        return -2;
    }
    }
}

static void read_some(xr_conn *c)
{
    xr_transport *t = c->t;
    size_t total = 0;
    c->tls_wants_write = 0;
    /* Frames left whole in c->in while reading was paused come first. */
    if (c->in_len && c->state != ST_HANDSHAKE) {
        size_t used = consume(c, c->in, c->in_len);
        if (c->dead)
            return;
        if (keep(c, c->in + used, c->in_len - used) < 0) {
            xr_conn_destroy(c);
            return;
        }
    }
    while (!c->dead && total < XR_READ_BUDGET && c->out.len <= pause_at(c)) {
        uint8_t *p;
        size_t cap;
        if (c->in_len) {
            if (in_room(c) < 0) {
                xr_conn_destroy(c);
                return;
            }
            p = c->in + c->in_len;
            cap = c->in_cap - c->in_len;
        } else {
            p = t->rbuf;
            cap = t->rbuf_cap;
        }
        ssize_t n = sock_read(c, p, cap);
        if (n == -1)
            return;
        if (n <= 0) {
            /* EOF or error: a handshake that broke counts as failed. */
            if (c->state == ST_HANDSHAKE)
                t->stats.handshake_failures_total++;
            xr_conn_destroy(c);
            return;
        }
        total += (size_t)n;
        uint8_t *start = c->in_len ? c->in : p;
        size_t len = c->in_len ? c->in_len + (size_t)n : (size_t)n;
        size_t used = consume(c, start, len);
        if (c->dead)
            return;
        if (keep(c, start + used, len - used) < 0) {
            xr_conn_destroy(c);
            return;
        }
        if ((size_t)n < cap && !(c->ssl && SSL_has_pending(c->ssl)))
            return;
    }
    /* Budget spent: the socket (or TLS) still has bytes; later. */
    if (!c->dead && c->ssl && SSL_has_pending(c->ssl))
        event_active(&c->ev, EV_READ, 1);
}

static void on_timeout(xr_conn *c)
{
    xr_transport *t = c->t;
    if (c->state == ST_OPEN && c->tmo == TMO_PING) {
        /* Silent for ping_interval: ask for a sign of life. */
        c->ping_out = 1;
        t->stats.pings_sent++;
        out_frame(c, XR_WS_OP_PING, NULL, 0);
        return;
    }
    if (c->state == ST_OPEN && c->tmo == TMO_PONG) {
        if (c->ping_out) {
            t->stats.ping_timeouts++;
            ws_close(c, XR_CLOSE_INTERNAL, "keepalive ping timeout", 1);
        }
        return;
    }
    /* No close frame or EOF in time, or output that never drained. */
    xr_conn_destroy(c);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    xr_conn *c = arg;
    c->busy = 1;
    if (what & EV_TIMEOUT) {
        on_timeout(c);
    } else {
        if ((what & EV_WRITE) && c->out.len && out_write(c) < 0)
            xr_conn_destroy(c);
        if (!c->dead && ((what & EV_READ) || c->tls_wants_write))
            read_some(c);
    }
    c->busy = 0;
    if (c->dead) {
        xr_conn_destroy(c);
        return;
    }
    /* Uncork: what this callback queued goes out now, in one write. */
    xr_conn_flush(c);
}

/* ---- accept and drain ------------------------------------------------- */

void xr_conn_accept(xr_transport *t, int fd, int tls, const void *ip, size_t iplen)
{
    xr_conn *c = calloc(1, sizeof *c);
    /* The counted address is kept aside, not in every connection: only a
     * limited server pays for it. */
    if (!c || (ip && !(c->ip = malloc(1 + iplen))))
        goto fail;
    if (ip) {
        c->ip[0] = (uint8_t)iplen;
        memcpy(c->ip + 1, ip, iplen);
    }
    c->t = t;
    c->fd = fd;
    if (tls) {
        c->ssl = SSL_new(t->tls);
        if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
            XR_WARN(t->log, "out of memory accepting a TLS connection");
            goto fail;
        }
        SSL_set_accept_state(c->ssl);
    }

    c->next = t->conns;
    if (t->conns)
        t->conns->prev = c;
    t->conns = c;

    /* Every handshake has the same timeout, so appending keeps the list
     * sorted by deadline and one timer for the oldest serves them all. */
    c->hs_deadline = xr_now_ms() + t->o->handshake_timeout_ms;
    c->in_hs = 1;
    c->hs_prev = t->hs_tail;
    if (t->hs_tail)
        t->hs_tail->hs_next = c;
    else
        t->hs_head = c;
    t->hs_tail = c;
    t->stats.n_pending++;
    if (t->hs_head == c)
        hs_arm(t);
    rewatch(c);
    return;
fail:
    /* Out of memory: the socket goes, and its address's count with it. */
    if (c) {
        if (c->ssl)
            SSL_free(c->ssl);
        free(c->ip);
        free(c);
    }
    if (ip)
        xr_iplimit_put(t->per_ip, t->ip_table, ip, iplen);
    evutil_closesocket(fd);
}

void xr_conn_drain(xr_conn *c)
{
    if (c->state == ST_HANDSHAKE)
        xr_conn_destroy(c);
    else if (c->state == ST_OPEN)
        ws_close(c, XR_CLOSE_GOING_AWAY, "server shutting down", 0);
}

/* ---- sending ---------------------------------------------------------- */

/* Closing, or a close is pending for the loop: no more messages. */
static int closing(const xr_conn *c)
{
    return c->state != ST_OPEN || c->closed_cb || c->slow || c->notify;
}

/*
 * Whether c takes one more message: XR_OK, XR_ECLOSED, or XR_ELIMIT when
 * what is already queued exceeds max_output_buffer (so one message of any
 * allowed size always fits). The slow reader is then closed with 1008 from
 * the loop, after this call has returned.
 */
static int sendable(xr_conn *c)
{
    if (closing(c))
        return XR_ECLOSED;
    if (c->out.len <= c->t->o->max_output_buffer)
        return XR_OK;
    c->slow = 1;
    xr_transport_mark(c->t, c);
    return XR_ELIMIT;
}

/* Counts a message of len payload bytes that went out (rc XR_OK). */
static int counted(xr_conn *c, int rc, size_t len)
{
    if (rc == XR_OK) {
        c->t->stats.messages_out++;
        c->t->stats.bytes_out += len;
    }
    return rc;
}

int xr_conn_send(xr_conn *c, xr_msg_type type, const void *data, size_t len)
{
    if (!c || (type != XR_TEXT && type != XR_BINARY) || (len && !data))
        return XR_EINVAL;
    if (closing(c))
        return XR_ECLOSED;
    if (type == XR_TEXT && !xr_utf8_valid(data, len))
        return XR_EINVAL;
    int rc = sendable(c);
    if (rc < 0)
        return rc;
    return counted(c, out_message(c, type == XR_TEXT ? XR_WS_OP_TEXT : XR_WS_OP_BINARY,
                                  data, len), len);
}

int xr_conn_close(xr_conn *c, int code, const char *reason)
{
    if (!c || code < 0 || !xr_ws_close_code_valid((unsigned)code))
        return XR_EINVAL;
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > XR_WS_MAX_CONTROL - 2 || !xr_utf8_valid((const uint8_t *)reason, rlen))
        return XR_EINVAL;
    if (c->state != ST_OPEN || c->closed_cb || c->notify)
        return XR_ECLOSED;
    uint8_t p[XR_WS_MAX_CONTROL];
    size_t n = xr_ws_close_payload(p, (unsigned)code, reason, rlen);
    if (rlen && !(c->close_reason = strndup(reason, rlen)))
        return XR_ENOMEM;
    out_frame(c, XR_WS_OP_CLOSE, p, n);
    xr_buf_free(&c->msg);
    c->state = ST_CLOSING;
    /* The close hook runs from the loop, not inside this call. */
    c->notify = 1;
    c->close_code = (uint16_t)code;
    xr_transport_mark(c->t, c);
    return XR_OK;
}

/* The body compressed once for every receiver with a 15-bit window. */
static xr_shared *deflated_body(xr_transport *t, xr_shared *body, xr_zbody *zb)
{
    if (!zb->tried) {
        zb->tried = 1;
        z_stream *z = deflater_for(t, 15);
        t->zout.len = 0;
        t->stats.z_runs += z != NULL;
        if (z && xr_zdeflate(z, body->data, body->len, NULL, 0, &t->zout) == XR_Z_OK &&
            t->zout.len < body->len)
            zb->z = xr_shared_new(t->zout.p, t->zout.len);
    }
    return zb->z;
}

/* Shared bytes: copied when small, referenced when large. */
static int out_shared(xr_conn *c, xr_shared *s)
{
    return s->len < XR_SHARE_MIN ? out_add(c, s->data, s->len) : out_ref(c, s);
}

/*
 * prefix + tail compressed for c: a stored (uncompressed) DEFLATE block with
 * the prefix, then the shared compressed tail. Receivers with a smaller
 * window get their own compression. 1: send it plain.
 */
static int send_shared_deflated(xr_conn *c, const char *prefix, size_t plen, xr_shared *tail,
                                xr_zbody *zb)
{
    xr_transport *t = c->t;
    uint8_t h[XR_WS_MAX_HEADER + XR_Z_STORED_HEADER];
    xr_shared *z = NULL;
    if (c->pmd.server_bits == 15 && plen <= 0xFFFF) {
        if (!(z = deflated_body(t, tail, zb)))
            return 1;               /* does not shrink: plain for everyone */
    } else {
        size_t zlen;
        const char *d = deflated(c, prefix, plen, tail->data, tail->len, &zlen);
        if (!d)
            return 1;
        int rc = out_frame(c, XR_WS_OP_TEXT | XR_WS_RSV1, d, zlen);
        if (rc == XR_OK)
            count_deflated(t, plen + tail->len, zlen);
        return rc;
    }
    size_t zlen = XR_Z_STORED_HEADER + plen + z->len;
    size_t hl = xr_ws_header(h, XR_WS_OP_TEXT | XR_WS_RSV1, 1, zlen, NULL);
    xr_zstored_header(h + hl, plen);
    if (out_add(c, h, hl + XR_Z_STORED_HEADER) < 0 || (plen && out_add(c, prefix, plen) < 0) ||
        out_shared(c, z) < 0)
        return XR_ENOMEM;
    xr_transport_mark(t, c);
    count_deflated(t, plen + tail->len, zlen);
    return XR_OK;
}

int xr_conn_send_shared(xr_conn *c, const char *prefix, size_t plen, xr_shared *tail,
                        xr_zbody *zb)
{
    int rc = sendable(c);
    if (rc < 0)
        return rc;
    size_t len = plen + tail->len;
    if (xr_conn_wants_deflate(c, len) &&
        (rc = send_shared_deflated(c, prefix, plen, tail, zb)) <= 0)
        return counted(c, rc, len);
    uint8_t h[XR_WS_MAX_HEADER];
    size_t hl = xr_ws_header(h, XR_WS_OP_TEXT, 1, len, NULL);
    if (out_add(c, h, hl) < 0 || (plen && out_add(c, prefix, plen) < 0) ||
        out_shared(c, tail) < 0)
        return XR_ENOMEM;
    xr_transport_mark(c->t, c);
    return counted(c, XR_OK, len);
}

int xr_conn_wants_deflate(const xr_conn *c, size_t len)
{
    return c->deflate && len >= c->t->o->compression_min_size;
}

int xr_conn_send_frame(xr_conn *c, xr_shared *frame, size_t payload_len)
{
    int rc = sendable(c);
    if (rc < 0)
        return rc;
    rc = out_shared(c, frame);
    if (rc == XR_OK)
        xr_transport_mark(c->t, c);
    return counted(c, rc, payload_len);
}

/* ---- accessors -------------------------------------------------------- */

xr_transport *xr_conn_transport(const xr_conn *c) { return c->t; }
void *xr_conn_slot(const xr_conn *c) { return c->slot; }
void xr_conn_set_slot(xr_conn *c, void *slot) { c->slot = slot; }
void xr_conn_set_data(xr_conn *c, void *data) { c->data = data; }
void *xr_conn_data(const xr_conn *c) { return c->data; }
const char *xr_conn_subprotocol(const xr_conn *c) { return c->protocol; }

int xr_conn_peer(const xr_conn *c, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[64];
    if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) != 0)
        return XR_EIO;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        evutil_inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%u", host, ntohs(a->sin6_port));
    } else if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        evutil_inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%u", host, ntohs(a->sin_port));
    } else {
        return XR_EIO;
    }
    return XR_OK;
}
