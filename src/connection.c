/*
 * One client socket from accept to close: TLS and HTTP handshake, WebSocket
 * frames in and out, keepalive, close handshake, limits. Knows bufferevents
 * and the frame codec; knows nothing of JSON or routes.
 */
#include "internal.h"
#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>

enum {
    ST_HANDSHAKE, /* TLS and/or HTTP request head not complete yet */
    ST_OPEN,      /* WebSocket open */
    ST_CLOSING,   /* we sent a close frame and wait for the peer's */
    ST_FLUSH      /* last bytes going out, then lingering close */
};

/* Reading pauses while this much output is queued, so a client that sends
 * faster than it reads is slowed by TCP instead of growing our buffers. */
#define XR_PAUSE_BYTES (256u << 10)

/* Shared fan-out frames smaller than this are copied, not referenced. */
#define XR_SHARE_MIN 512

struct xr_conn {
    xr_server *srv;
    struct bufferevent *bev;
    xr_conn *prev, *next;         /* srv->conns */
    xr_conn *hs_prev, *hs_next;   /* srv->hs_head while in handshake */
    uint64_t hs_deadline;
    struct evbuffer *msg;         /* fragments of the message being reassembled */
    void *data;
    const char *protocol;
    struct xr_receiver *receivers;  /* channels this connection SUBscribed */
    struct xr_handle *handle;     /* weak reference lent to requests */
    xr_map_entry *ip;             /* per-address count, when limited */
    z_stream *inflater;           /* client context taken over: its own window */
    xr_ws_decoder dec;
    xr_pmd pmd;                   /* permessage-deflate terms, when deflate */
    uint8_t state;
    unsigned tls : 1;
    unsigned upgraded : 1;        /* counted in n_open */
    unsigned closed_cb : 1;       /* on_close has run */
    unsigned ping_out : 1;        /* a keepalive ping awaits its pong */
    unsigned busy : 1;            /* inside our read callback: free later */
    unsigned dead : 1;            /* freed while busy */
    unsigned paused : 1;          /* reading stopped by output backlog */
    unsigned watermark : 1;       /* read low-watermark set for a big frame */
    unsigned shut : 1;            /* write side shut down, lingering */
    unsigned in_hs : 1;           /* linked in the handshake list */
    unsigned deflate : 1;         /* permessage-deflate negotiated */
};

/* ---- lists and lifetime ---------------------------------------------- */

static void hs_arm(xr_server *srv)
{
    if (!srv->hs_head)
        return;
    uint64_t now = xr_now_ms(), at = srv->hs_head->hs_deadline;
    uint64_t ms = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(srv->hs_timer, &tv);
}

static void hs_remove(xr_conn *c)
{
    xr_server *srv = c->srv;
    if (!c->in_hs)
        return;
    if (c->hs_prev)
        c->hs_prev->hs_next = c->hs_next;
    else
        srv->hs_head = c->hs_next;
    if (c->hs_next)
        c->hs_next->hs_prev = c->hs_prev;
    else
        srv->hs_tail = c->hs_prev;
    c->in_hs = 0;
    srv->n_pending--;
}

static void notify_close(xr_conn *c, unsigned code, const char *reason, size_t len)
{
    xr_server *srv = c->srv;
    if (!c->upgraded || c->closed_cb)
        return;
    c->closed_cb = 1;
    xr_metrics_close(&srv->metrics, code);
    if (srv->handlers.on_close)
        srv->handlers.on_close(c, (int)code, reason ? reason : "", len, srv->ud);
}

void xr_conn_free(xr_conn *c)
{
    if (c->busy) {
        c->dead = 1;
        return;
    }
    xr_server *srv = c->srv;
    notify_close(c, XR_CLOSE_ABNORMAL, NULL, 0);
    xr_channels_conn_gone(srv, c);
    if (c->handle) {
        /* Requests still held by the application now see a closed peer. */
        c->handle->conn = NULL;
        xr_handle_release(c->handle);
    }
    hs_remove(c);
    if (c->ip) {
        uintptr_t n = (uintptr_t)c->ip->value - 1;
        if (n)
            c->ip->value = (void *)n;
        else
            xr_map_del(&srv->per_ip, c->ip->key, c->ip->klen);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->upgraded)
        srv->n_open--;
    bufferevent_free(c->bev);
    if (c->msg)
        evbuffer_free(c->msg);
    xr_zinflate_free(c->inflater);
    free(c);
    xr_server_conn_gone(srv);
}

void xr_conn_expire_handshakes(xr_server *srv)
{
    uint64_t now = xr_now_ms();
    while (srv->hs_head && srv->hs_head->hs_deadline <= now) {
        xr_conn *c = srv->hs_head;
        srv->metrics.handshake_failures_total++;
        XR_DEBUG(srv, "handshake timeout after %u ms: closing", srv->opts.handshake_timeout_ms);
        hs_remove(c);
        xr_conn_free(c);
    }
    hs_arm(srv);
}

/* ---- writing ---------------------------------------------------------- */

static int write_frame(xr_conn *c, unsigned op, const void *data, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    uint8_t h[XR_WS_MAX_HEADER];
    size_t hl = xr_ws_header(h, op, 1, len, NULL);
    if (evbuffer_add(out, h, hl) < 0 || (len && evbuffer_add(out, data, len) < 0))
        return XR_ENOMEM;
    return XR_OK;
}

/* The compressed form of a message for this connection, in srv->zout, or
 * NULL when it goes out as it is: compression off, too small to gain, or
 * not smaller once compressed. a then b are one message. */
static const char *deflated(xr_conn *c, const void *a, size_t alen, const void *b,
                            size_t blen, size_t *zlen)
{
    xr_server *srv = c->srv;
    if (!xr_conn_wants_deflate(c, alen + blen))
        return NULL;
    z_stream *z = xr_server_deflater(srv, c->pmd.server_bits);
    srv->zout.len = 0;
    if (!z || xr_zdeflate(z, a, alen, b, blen, &srv->zout) != XR_Z_OK ||
        srv->zout.len >= alen + blen)
        return NULL;
    *zlen = srv->zout.len;
    return srv->zout.p;
}

static void count_deflated(xr_server *srv, size_t raw, size_t wire)
{
    srv->metrics.z_out++;
    srv->metrics.z_raw_out += raw;
    srv->metrics.z_wire_out += wire;
}

/* A data message, compressed when that was agreed and pays off. */
static int write_message(xr_conn *c, unsigned op, const void *data, size_t len)
{
    size_t zlen;
    const char *z = deflated(c, data, len, NULL, 0, &zlen);
    if (!z)
        return write_frame(c, op, data, len);
    count_deflated(c->srv, len, zlen);
    return write_frame(c, op | XR_WS_RSV1, z, zlen);
}

/* Lingering close: the peer may still be sending (a close frame, the rest of
 * a message). Closing now would make the kernel answer with RST and could
 * destroy our last bytes in flight, so we half-close and read until EOF. */
static void linger(xr_conn *c)
{
    c->shut = 1;
    if (c->tls)
        SSL_shutdown(bufferevent_openssl_get_ssl(c->bev));
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    bufferevent_set_timeouts(c->bev, c->srv->close_tv, c->srv->close_tv);
    bufferevent_enable(c->bev, EV_READ);
}

/* Undoes the read low-watermark set while a big frame was arriving. */
static void clear_watermark(xr_conn *c)
{
    if (c->watermark) {
        bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
        c->watermark = 0;
    }
}

/* Sends what is queued, then closes. */
static void finish(xr_conn *c)
{
    c->state = ST_FLUSH;
    c->paused = 0;
    clear_watermark(c);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        linger(c);
    } else {
        /* A peer that never reads must not hold the socket forever. */
        bufferevent_disable(c->bev, EV_READ);
        bufferevent_set_timeouts(c->bev, NULL, c->srv->close_tv);
    }
}

/*
 * Closes with a close frame. fail=1 is "Fail the WebSocket Connection"
 * (7.1.7): we stop reading frames at once. fail=0 is a clean close: we keep
 * reading until the peer answers with its own close frame.
 */
static void ws_close(xr_conn *c, unsigned code, const char *reason, int fail)
{
    if (c->state != ST_OPEN)
        return;
    size_t rlen = reason ? strlen(reason) : 0;
    uint8_t p[XR_WS_MAX_CONTROL];
    size_t n = xr_ws_close_payload(p, code, reason, rlen);
    write_frame(c, XR_WS_OP_CLOSE, p, n);
    if (c->msg)
        evbuffer_drain(c->msg, evbuffer_get_length(c->msg));
    notify_close(c, code, (const char *)p + 2, n - 2);
    if (fail) {
        finish(c);
    } else {
        c->state = ST_CLOSING;
        bufferevent_set_timeouts(c->bev, c->srv->close_tv, c->srv->close_tv);
        bufferevent_enable(c->bev, EV_READ);
    }
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
static void http_reply(xr_conn *c, int status, const char *ctype, const char *extra,
                       struct evbuffer *body, int head_only)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    c->srv->metrics.http_requests_total++;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                        status, status_text(status), ctype, evbuffer_get_length(body),
                        extra ? extra : "");
    if (!head_only)
        evbuffer_add_buffer(out, body);
    evbuffer_drain(bufferevent_get_input(c->bev), (size_t)-1);
    finish(c);
}

static void http_error(xr_conn *c, int status, const char *reason)
{
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        xr_conn_free(c);
        return;
    }
    /* reason is always our own static text, never request bytes. */
    evbuffer_add_printf(body, "%s\n", reason);
    c->srv->metrics.handshake_failures_total++;
    XR_DEBUG(c->srv, "HTTP %d: %s", status, reason);
    http_reply(c, status, "text/plain; charset=utf-8",
               status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
               : status == 405 ? "Allow: GET, HEAD\r\n" : NULL,
               body, 0);
    evbuffer_free(body);
}

static int path_is(const xr_http_request *req, const char *path)
{
    size_t n = xr_http_path_len(req);
    return path && path[0] && strlen(path) == n && memcmp(req->target, path, n) == 0;
}

static void serve_plain(xr_conn *c, const xr_http_request *req)
{
    xr_server *srv = c->srv;
    int health = path_is(req, srv->opts.health_path);
    int metrics = !health && path_is(req, srv->opts.metrics_path);
    int head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    int get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    if (!health && !metrics && !srv->opts.n_static_dirs) {
        http_error(c, 426, "this is a WebSocket endpoint: send a GET with Upgrade: websocket");
        return;
    }
    if (!head && !get) {
        http_error(c, 405, "only GET and HEAD are served here");
        return;
    }
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        xr_conn_free(c);
        return;
    }
    int status = 200;
    const char *ctype = "application/json";
    if (health) {
        xr_health_write(srv, body, &status);
    } else if (metrics) {
        xr_metrics_write(srv, body);
        ctype = "text/plain; version=0.0.4; charset=utf-8";
    } else if (xr_static_find(srv, req->target, xr_http_path_len(req), body, &ctype) < 0) {
        evbuffer_free(body);
        http_error(c, 404, "not found");
        return;
    }
    char extra[96];
    snprintf(extra, sizeof extra, "X-Content-Type-Options: nosniff\r\nX-Xraptor-Worker: %u\r\n",
             srv->worker);
    http_reply(c, status, ctype, extra, body, head);
    evbuffer_free(body);
}

static void upgrade(xr_conn *c, const xr_ws_handshake *hs, const char *ext,
                    size_t head_len)
{
    xr_server *srv = c->srv;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s%s%s%s\r\n",
                        hs->accept, hs->protocol ? "Sec-WebSocket-Protocol: " : "",
                        hs->protocol ? hs->protocol : "", hs->protocol ? "\r\n" : "",
                        ext ? "Sec-WebSocket-Extensions: " : "", ext ? ext : "",
                        ext ? "\r\n" : "");
    /* Bytes after the head are the client's first frames. */
    evbuffer_drain(bufferevent_get_input(c->bev), head_len);
    hs_remove(c);
    c->state = ST_OPEN;
    c->upgraded = 1;
    c->protocol = hs->protocol;
    srv->n_open++;
    srv->metrics.connections_total++;
    xr_ws_decoder_init(&c->dec, srv->opts.max_frame_size, srv->opts.max_message_size, 1);
    c->dec.rsv1_ok = c->deflate;
    if (srv->ping_tv)
        bufferevent_set_timeouts(c->bev, srv->ping_tv, NULL);
    if (srv->handlers.on_open)
        srv->handlers.on_open(c, srv->ud);
}

static void handle_head(xr_conn *c)
{
    xr_server *srv = c->srv;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < srv->opts.max_header_size ? avail : srv->opts.max_header_size;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    xr_http_request req;
    xr_http_error err;
    long r = xr_http_parse(p, n, &req, &err);
    if (r == 0) {
        if (avail >= srv->opts.max_header_size)
            http_error(c, 431, "request head exceeds max_header_size");
        return;
    }
    if (r < 0) {
        http_error(c, err.status, err.reason);
        return;
    }
    xr_ws_handshake hs;
    switch (xr_http_classify(&req, srv->opts.subprotocols, srv->opts.n_subprotocols,
                             srv->opts.allowed_origins, srv->opts.n_allowed_origins,
                             &hs, &err)) {
    case XR_HTTP_REJECT:
        http_error(c, err.status, err.reason);
        return;
    case XR_HTTP_PLAIN:
        serve_plain(c, &req);
        return;
    case XR_HTTP_UPGRADE:
        if (srv->draining) {
            http_error(c, 503, "server is shutting down");
        } else if (srv->n_open >= srv->opts.max_connections) {
            srv->metrics.refused_total++;
            http_error(c, 503, "too many connections: max_connections reached");
        } else {
            char ext[XR_PMD_RESPONSE_MAX];
            c->deflate = srv->opts.compression &&
                         xr_pmd_negotiate(&req, srv->opts.compression_window_bits,
                                          srv->opts.compression_no_context, &c->pmd,
                                          ext, sizeof ext);
            upgrade(c, &hs, c->deflate ? ext : NULL, (size_t)r);
        }
        return;
    }
}

/* ---- WebSocket frames ------------------------------------------------- */

static void deliver(xr_conn *c, unsigned op, const uint8_t *data, size_t len)
{
    xr_server *srv = c->srv;
    srv->metrics.messages_in++;
    srv->metrics.bytes_in += len;
    xr_msg_type type = op == XR_WS_OP_TEXT ? XR_TEXT : XR_BINARY;
    if (srv->handlers.on_message)
        srv->handlers.on_message(c, type, (const char *)data, len, srv->ud);
    else
        xr_proto_dispatch(c, type, (const char *)data, len);
}

/* A compressed message: inflated into srv->zin within max_message_size
 * (a bomb gets 1009), checked as UTF-8 when text, then delivered. */
static void deliver_deflated(xr_conn *c, unsigned op, const uint8_t *data, size_t len)
{
    xr_server *srv = c->srv;
    z_stream *z;
    int shared = c->pmd.client_no_context;
    if (shared) {
        if (!srv->inflater)
            srv->inflater = xr_zinflate_new(15);
        z = srv->inflater;
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
    srv->zin.len = 0;
    int rc = xr_zinflate(z, data, len, srv->opts.max_message_size, shared, &srv->zin);
    if (rc != XR_Z_OK) {
        srv->metrics.z_errors += rc != XR_Z_NOMEM;
        ws_close(c, rc == XR_Z_TOO_BIG ? XR_CLOSE_TOO_BIG
                    : rc == XR_Z_NOMEM ? XR_CLOSE_INTERNAL : XR_CLOSE_INVALID_DATA,
                 rc == XR_Z_TOO_BIG ? "inflated message exceeds max_message_size"
                 : rc == XR_Z_NOMEM ? "out of memory" : "invalid compressed data", 1);
    } else if (op == XR_WS_OP_TEXT && !xr_utf8_valid((const uint8_t *)srv->zin.p, srv->zin.len)) {
        ws_close(c, XR_CLOSE_INVALID_DATA, "text message is not valid UTF-8", 1);
    } else {
        srv->metrics.z_in++;
        deliver(c, op, (const uint8_t *)srv->zin.p, srv->zin.len);
    }
    /* One huge message must not pin its buffer for the process's life. */
    if (srv->zin.cap > (1u << 20))
        xr_buf_free(&srv->zin);
}

static void on_frame(xr_conn *c, xr_ws_frame *f)
{
    xr_server *srv = c->srv;
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
        if (!c->msg && !(c->msg = evbuffer_new())) {
            ws_close(c, XR_CLOSE_INTERNAL, "out of memory", 1);
            return;
        }
        if (evbuffer_add(c->msg, f->payload, (size_t)f->len) < 0) {
            ws_close(c, XR_CLOSE_INTERNAL, "out of memory", 1);
            return;
        }
        if (f->fin) {
            size_t n = evbuffer_get_length(c->msg);
            (f->compressed ? deliver_deflated : deliver)(c, f->msg_opcode,
                                                         evbuffer_pullup(c->msg, -1), n);
            if (c->msg)
                evbuffer_drain(c->msg, n);
        }
        return;
    case XR_WS_OP_PING:
        if (c->state == ST_OPEN)
            write_frame(c, XR_WS_OP_PONG, f->payload, (size_t)f->len);
        return;
    case XR_WS_OP_PONG:
        if (c->ping_out) {
            c->ping_out = 0;
            if (c->state == ST_OPEN)
                bufferevent_set_timeouts(c->bev, srv->ping_tv, NULL);
        }
        return;
    case XR_WS_OP_CLOSE:
        if (c->state == ST_OPEN) {
            /* 5.5.1: answer with a close frame echoing the status code. */
            uint8_t p[XR_WS_MAX_CONTROL];
            size_t n = f->close_code == XR_CLOSE_NO_STATUS ? 0
                       : xr_ws_close_payload(p, f->close_code, NULL, 0);
            write_frame(c, XR_WS_OP_CLOSE, p, n);
            notify_close(c, f->close_code, (const char *)f->reason, f->reason_len);
        }
        finish(c);
        return;
    }
}

static void handle_frames(xr_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    clear_watermark(c);
    while (!c->dead && (c->state == ST_OPEN || c->state == ST_CLOSING)) {
        size_t avail = evbuffer_get_length(in);
        if (!avail)
            return;
        /* Decode from the first chunk when it holds the frame (the usual
         * case: no copy); otherwise pull up exactly the frame's bytes. */
        size_t n = evbuffer_get_contiguous_space(in);
        if (n < XR_WS_MAX_HEADER)
            n = avail < XR_WS_MAX_HEADER ? avail : XR_WS_MAX_HEADER;
        uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
        xr_ws_frame f;
        xr_ws_status st = xr_ws_decode(&c->dec, p, n, &f);
        if (st == XR_WS_NEED_MORE) {
            if (f.size > avail) {
                /* Not called again until the whole frame is here. */
                bufferevent_setwatermark(c->bev, EV_READ, f.size, 0);
                c->watermark = 1;
                return;
            }
            p = evbuffer_pullup(in, (ev_ssize_t)f.size);
            st = xr_ws_decode(&c->dec, p, f.size, &f);
        }
        if (st == XR_WS_ERROR) {
            XR_DEBUG(c->srv, "closing with %u: %s", f.error_code, f.error);
            if (c->state == ST_OPEN)
                ws_close(c, f.error_code, f.error, 1);
            else
                finish(c);
            return;
        }
        on_frame(c, &f);
        evbuffer_drain(in, f.size);
    }
}

/* ---- bufferevent callbacks ------------------------------------------- */

static void on_read(struct bufferevent *bev, void *arg)
{
    xr_conn *c = arg;
    c->busy = 1;
    if (c->state == ST_HANDSHAKE)
        handle_head(c);
    if (c->state == ST_OPEN || c->state == ST_CLOSING)
        handle_frames(c);
    if (c->state == ST_FLUSH)
        evbuffer_drain(bufferevent_get_input(bev), (size_t)-1);
    c->busy = 0;
    if (c->dead) {
        xr_conn_free(c);
        return;
    }
    size_t pause_at = c->srv->opts.max_output_buffer < XR_PAUSE_BYTES
                      ? c->srv->opts.max_output_buffer : XR_PAUSE_BYTES;
    if (c->state == ST_OPEN &&
        evbuffer_get_length(bufferevent_get_output(bev)) > pause_at) {
        c->paused = 1;
        bufferevent_disable(bev, EV_READ);
    }
}

static void on_write(struct bufferevent *bev, void *arg)
{
    xr_conn *c = arg;
    if (c->state == ST_FLUSH) {
        if (!c->shut)
            linger(c);
    } else if (c->paused) {
        c->paused = 0;
        bufferevent_enable(bev, EV_READ);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    xr_conn *c = arg;
    xr_server *srv = c->srv;
    if (what & BEV_EVENT_CONNECTED)
        return; /* TLS handshake done; the request head comes next */
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && c->state == ST_OPEN) {
        if (!c->ping_out) {
            /* Silent for ping_interval: ask for a sign of life. */
            c->ping_out = 1;
            srv->metrics.pings_sent++;
            write_frame(c, XR_WS_OP_PING, NULL, 0);
            bufferevent_set_timeouts(bev, srv->pong_tv, NULL);
            bufferevent_enable(bev, EV_READ);
        } else {
            srv->metrics.ping_timeouts++;
            ws_close(c, XR_CLOSE_INTERNAL, "keepalive ping timeout", 1);
        }
        return;
    }
    if (c->state == ST_HANDSHAKE) {
        srv->metrics.handshake_failures_total++;
        if (c->tls && (what & BEV_EVENT_ERROR)) {
            unsigned long e = bufferevent_get_openssl_error(bev);
            char buf[160] = "connection reset";
            if (e)
                ERR_error_string_n(e, buf, sizeof buf);
            XR_DEBUG(srv, "TLS handshake failed: %s", buf);
        }
    }
    /* EOF, error, or a close/flush timeout. */
    xr_conn_free(c);
}

/* ---- accept and drain ------------------------------------------------- */

void xr_conn_accept(xr_server *srv, int fd, int tls, xr_map_entry *ip)
{
    xr_conn *c = calloc(1, sizeof *c);
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->srv = srv;
    c->tls = tls ? 1 : 0;
    if (tls) {
        SSL *ssl = SSL_new(srv->tls);
        if (ssl) {
            c->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl,
                                                    BUFFEREVENT_SSL_ACCEPTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
            if (c->bev)
                /* Browsers often just drop the TCP connection; that is an
                 * EOF for us, not an error worth a log line. */
                bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
            else
                SSL_free(ssl);
        }
    } else {
        c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) {
        XR_WARN(srv, "out of memory accepting a connection");
        evutil_closesocket(fd);
        free(c);
        return;
    }
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ);
    if ((c->ip = ip))
        ip->value = (void *)((uintptr_t)ip->value + 1);

    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;

    /* Every handshake has the same timeout, so appending keeps the list
     * sorted by deadline and one timer for the oldest serves them all. */
    c->hs_deadline = xr_now_ms() + srv->opts.handshake_timeout_ms;
    c->in_hs = 1;
    c->hs_prev = srv->hs_tail;
    if (srv->hs_tail)
        srv->hs_tail->hs_next = c;
    else
        srv->hs_head = c;
    srv->hs_tail = c;
    srv->n_pending++;
    if (srv->hs_head == c)
        hs_arm(srv);
}

xr_conn *xr_conn_next(const xr_conn *c)
{
    return c->next;
}

void xr_conn_drain(xr_conn *c)
{
    if (c->state == ST_HANDSHAKE)
        xr_conn_free(c);
    else if (c->state == ST_OPEN)
        ws_close(c, XR_CLOSE_GOING_AWAY, "server shutting down", 0);
}

/* ---- public ----------------------------------------------------------- */

/* The limit applies to what is already queued, so one message of any allowed
 * size always fits; a reader that falls further behind is closed (1008). */
static int slow_reader(xr_conn *c)
{
    xr_server *srv = c->srv;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) <= srv->opts.max_output_buffer)
        return 0;
    srv->metrics.slow_reader_closes++;
    XR_DEBUG(srv, "slow reader: output exceeds max_output_buffer %zu, closing",
             srv->opts.max_output_buffer);
    ws_close(c, XR_CLOSE_POLICY, "output buffer exceeds max_output_buffer", 1);
    return 1;
}

/* Whether c takes one more message: XR_OK, XR_ECLOSED, or XR_ELIMIT once
 * a slow reader has been closed. */
static int sendable(xr_conn *c)
{
    if (c->state != ST_OPEN || c->closed_cb)
        return XR_ECLOSED;
    return slow_reader(c) ? XR_ELIMIT : XR_OK;
}

/* Counts a message of len payload bytes that went out (rc XR_OK). */
static int counted(xr_conn *c, int rc, size_t len)
{
    if (rc == XR_OK) {
        c->srv->metrics.messages_out++;
        c->srv->metrics.bytes_out += len;
    }
    return rc;
}

static void shared_done(const void *data, size_t len, void *arg)
{
    (void)data, (void)len;
    xr_shared_unref(arg);
}

/* Appends s by reference: the output holds a reference until it is sent. */
static int add_shared(struct evbuffer *out, xr_shared *s)
{
    s->refs++;
    if (evbuffer_add_reference(out, s->data, s->len, shared_done, s) < 0) {
        s->refs--;
        return XR_ENOMEM;
    }
    return XR_OK;
}

int xr_conn_send(xr_conn *c, xr_msg_type type, const void *data, size_t len)
{
    if (!c || (type != XR_TEXT && type != XR_BINARY) || (len && !data))
        return XR_EINVAL;
    if (c->state != ST_OPEN || c->closed_cb)
        return XR_ECLOSED;
    if (type == XR_TEXT && !xr_utf8_valid(data, len))
        return XR_EINVAL;
    int rc = sendable(c);
    if (rc < 0)
        return rc;
    return counted(c, write_message(c, type == XR_TEXT ? XR_WS_OP_TEXT : XR_WS_OP_BINARY,
                                    data, len), len);
}

int xr_conn_close(xr_conn *c, int code, const char *reason)
{
    if (!c || code < 0 || !xr_ws_close_code_valid((unsigned)code))
        return XR_EINVAL;
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > XR_WS_MAX_CONTROL - 2 || !xr_utf8_valid((const uint8_t *)reason, rlen))
        return XR_EINVAL;
    if (c->state != ST_OPEN || c->closed_cb)
        return XR_ECLOSED;
    ws_close(c, (unsigned)code, reason, 0);
    return XR_OK;
}

/* The tail compressed once for every receiver with a 15-bit window. */
static xr_shared *deflated_tail(xr_server *srv, xr_shared *tail)
{
    if (!tail->deflate_tried) {
        tail->deflate_tried = 1;
        z_stream *z = xr_server_deflater(srv, 15);
        srv->zout.len = 0;
        if (z && xr_zdeflate(z, tail->data, tail->len, NULL, 0, &srv->zout) == XR_Z_OK &&
            srv->zout.len < tail->len)
            tail->deflated = xr_shared_new(srv->zout.p, srv->zout.len);
    }
    return tail->deflated;
}

/*
 * prefix + tail compressed for c: a stored (uncompressed) DEFLATE block with
 * the prefix, then the shared compressed tail by reference. Receivers with a
 * smaller window get their own compression.
 */
static int send_shared_deflated(xr_conn *c, const char *prefix, size_t plen, xr_shared *tail)
{
    xr_server *srv = c->srv;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    uint8_t h[XR_WS_MAX_HEADER + XR_Z_STORED_HEADER];
    xr_shared *z = NULL;
    if (c->pmd.server_bits == 15 && plen <= 0xFFFF) {
        if (!(z = deflated_tail(srv, tail)))
            return 1;               /* does not shrink: plain for everyone */
    } else {
        size_t zlen;
        const char *d = deflated(c, prefix, plen, tail->data, tail->len, &zlen);
        if (!d)
            return 1;
        int rc = write_frame(c, XR_WS_OP_TEXT | XR_WS_RSV1, d, zlen);
        if (rc == XR_OK)
            count_deflated(srv, plen + tail->len, zlen);
        return rc;
    }
    size_t zlen = XR_Z_STORED_HEADER + plen + z->len;
    size_t hl = xr_ws_header(h, XR_WS_OP_TEXT | XR_WS_RSV1, 1, zlen, NULL);
    xr_zstored_header(h + hl, plen);
    if (evbuffer_add(out, h, hl + XR_Z_STORED_HEADER) < 0 ||
        (plen && evbuffer_add(out, prefix, plen) < 0) || add_shared(out, z) < 0)
        return XR_ENOMEM;
    count_deflated(srv, plen + tail->len, zlen);
    return XR_OK;
}

int xr_conn_send_shared(xr_conn *c, const char *prefix, size_t plen, xr_shared *tail)
{
    int rc = sendable(c);
    if (rc < 0)
        return rc;
    size_t len = plen + tail->len;
    if (xr_conn_wants_deflate(c, len) && (rc = send_shared_deflated(c, prefix, plen, tail)) <= 0)
        return counted(c, rc, len);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    uint8_t h[XR_WS_MAX_HEADER];
    size_t hl = xr_ws_header(h, XR_WS_OP_TEXT, 1, len, NULL);
    /* Header and the small per-receiver prefix are copied; the tail is
     * referenced, so a fan-out to N receivers holds one copy of it. */
    if (evbuffer_add(out, h, hl) < 0 || (plen && evbuffer_add(out, prefix, plen) < 0) ||
        add_shared(out, tail) < 0)
        return XR_ENOMEM;
    return counted(c, XR_OK, len);
}

int xr_conn_wants_deflate(const xr_conn *c, size_t len)
{
    return c->deflate && len >= c->srv->opts.compression_min_size;
}

int xr_conn_send_frame(xr_conn *c, xr_shared *frame, size_t payload_len)
{
    int rc = sendable(c);
    if (rc < 0)
        return rc;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    /* libevent describes a reference with a chain of its own, a 1 KiB
     * block: a small frame costs less copied next to the ones before it. */
    if (frame->len < XR_SHARE_MIN)
        rc = evbuffer_add(out, frame->data, frame->len) < 0 ? XR_ENOMEM : XR_OK;
    else
        rc = add_shared(out, frame);
    return counted(c, rc, payload_len);
}

struct xr_receiver **xr_conn_receivers(xr_conn *c) { return &c->receivers; }

/* Made on the first request; the connection holds one reference. */
struct xr_handle *xr_conn_handle(xr_conn *c)
{
    if (!c->handle && (c->handle = malloc(sizeof *c->handle))) {
        c->handle->conn = c;
        c->handle->refs = 1;
    }
    return c->handle;
}

void xr_conn_set_data(xr_conn *c, void *data) { c->data = data; }
void *xr_conn_data(const xr_conn *c) { return c->data; }
xr_server *xr_conn_server(const xr_conn *c) { return c->srv; }
const char *xr_conn_subprotocol(const xr_conn *c) { return c->protocol; }

int xr_conn_peer(const xr_conn *c, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[64];
    if (getpeername(bufferevent_getfd(c->bev), (struct sockaddr *)&ss, &sl) != 0)
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
