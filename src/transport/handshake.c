/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP head of a new connection: a plain request answered (one per
 * socket), or the WebSocket upgrade checked and answered with 101. */
#include "transport/conn.h"

#include <stdio.h>
#include <string.h>

/* ---- HTTP ------------------------------------------------------------- */

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
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
    int rc = n < 0 || (size_t)n >= sizeof head ? XR_EINVAL : xr_out_add(c, head, (size_t)n);
    if (rc == XR_OK && !head_only && blen)
        rc = file ? xr_out_ref(c, file) : xr_out_add(c, body->p, body->len);
    xr_shared_unref(file);
    if (rc < 0) {
        xr_conn_destroy(c);
        return;
    }
    xr_conn_finish(c);
}

void xr_conn_http_error(xr_conn *c, int status, const char *reason)
{
    xr_transport *t = c->t;
    /* reason is always our own static text, never request bytes. */
    t->http.len = 0;
    xr_buf_printf(&t->http, "%s\n", reason);
    XR_DEBUG(t->log, "HTTP %d: %s", status, reason);
    http_reply(c, status, "text/plain; charset=utf-8",
               status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
               : status == 405 ? "Allow: GET, HEAD\r\n"
               : status == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL,
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
        if (c->api)
            xr_conn_http_error(c, 404, "not found: this address serves the publish API only");
        else
            xr_conn_http_error(c, 426, "this is a WebSocket endpoint: send a GET with Upgrade: websocket");
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
    if (n < 0 || (size_t)n >= sizeof head || xr_out_add(c, head, (size_t)n) < 0) {
        xr_conn_destroy(c);
        return;
    }
    xr_transport_mark(t, c);
    xr_conn_hs_remove(c);
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
size_t xr_conn_head(xr_conn *c, const uint8_t *p, size_t avail)
{
    xr_transport *t = c->t;
    const xr_options *o = t->o;
    size_t n = avail < o->max_header_size ? avail : o->max_header_size;
    xr_http_request req;
    xr_http_error err;
    long r = xr_http_parse((const char *)p, n, &req, &err);
    if (r == 0) {
        if (avail >= o->max_header_size) {
            xr_conn_http_error(c, 431, "request head exceeds max_header_size");
            return avail;
        }
        return 0;
    }
    if (r < 0) {
        xr_conn_http_error(c, err.status, err.reason);
        return avail;
    }
    req.body = NULL;
    req.body_len = 0;
    req.api = c->api;
    size_t limit = t->hooks.body_limit ? t->hooks.body_limit(&req, t->ud) : 0;
    if (limit) {
        /* The one kind of request with a body: Content-Length only (no
         * chunked coding, no two lengths), at most limit, read whole
         * before it is answered; the socket serves nothing after it. */
        if (xr_http_find(&req, "Transfer-Encoding")) {
            xr_conn_http_error(c, 411, "send the body with Content-Length, not chunked");
            return avail;
        }
        long cl = xr_http_content_length(&req);
        if (cl == XR_ENOENT) {
            xr_conn_http_error(c, 411, "Content-Length required");
            return avail;
        }
        if (cl < 0) {
            xr_conn_http_error(c, 400, "bad Content-Length");
            return avail;
        }
        if ((size_t)cl > limit) {
            xr_conn_http_error(c, 413, "request body too large");
            return avail;
        }
        if (avail - (size_t)r < (size_t)cl)
            return 0;       /* the rest of the body has not come yet */
        req.body = (const char *)p + r;
        req.body_len = (size_t)cl;
        serve_plain(c, &req);
        return avail;
    }
    /* The API's address serves plain requests only, never a WebSocket. */
    if (c->api) {
        serve_plain(c, &req);
        return avail;
    }
    xr_ws_handshake hs;
    switch (xr_http_classify(&req, o->subprotocols, o->n_subprotocols, o->allowed_origins,
                             o->n_allowed_origins, &hs, &err)) {
    case XR_HTTP_REJECT:
        xr_conn_http_error(c, err.status, err.reason);
        return avail;
    case XR_HTTP_PLAIN:
        serve_plain(c, &req);
        return avail;
    case XR_HTTP_UPGRADE:
        break;
    }
    if (t->draining) {
        xr_conn_http_error(c, 503, "server is shutting down");
        return avail;
    }
    if (t->stats.n_open >= o->max_connections) {
        t->stats.refused_total++;
        xr_conn_http_error(c, 503, "too many connections: max_connections reached");
        return avail;
    }
    if (t->hooks.authorize) {
        const char *why = "unauthorized";
        int status = t->hooks.authorize(c, &req, &why, t->ud);
        if (status) {
            t->stats.refused_auth_total++;
            xr_conn_http_error(c, status, why);
            return avail;
        }
    }
    char ext[XR_PMD_RESPONSE_MAX];
    c->deflate = o->compression &&
                 xr_pmd_negotiate(&req, o->compression_window_bits, o->compression_no_context,
                                  &c->pmd, ext, sizeof ext);
    upgrade(c, &hs, c->deflate ? ext : NULL);
    /* Bytes after the head are the client's first frames. */
    return (size_t)r;
}

