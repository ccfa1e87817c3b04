/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One client socket from accept to close: TLS, keepalive, frames in, the
 * close handshake, limits. A bare libevent event per socket (no
 * bufferevent): reads land in the transport's shared buffer and only an
 * incomplete frame is kept. The output queue and sending are in out.c,
 * the HTTP head in handshake.c.
 */
#include "transport/conn.h"

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

static void on_io(evutil_socket_t fd, short what, void *arg);

size_t xr_conn_pause_at(const xr_conn *c)
{
    size_t max = c->t->o->max_output_buffer;
    return max < XR_PAUSE_BYTES ? max : XR_PAUSE_BYTES;
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
void xr_conn_rewatch(xr_conn *c)
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
        watch(c, w, TMO_CLOSE);
        break;
    case ST_LINGER:
        watch(c, EV_READ, TMO_CLOSE);
        break;
    default:
        break;  /* broken or dead: destroyed next */
    }
}

void xr_transport_mark(xr_transport *t, xr_conn *c)
{
    if (c->dirty)
        return;
    if (xr_array_room(&t->dirty, &t->cap_dirty, t->n_dirty + 1, sizeof *t->dirty) < 0)
        return;         /* written when its own socket next wakes it */
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
    struct timeval tv = xr_timeval_ms(ms);
    evtimer_add(t->hs_timer, &tv);
}

void xr_conn_hs_remove(xr_conn *c)
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
        c->state = ST_DEAD;
        return;
    }
    xr_transport *t = c->t;
    notify_close(c, XR_CLOSE_ABNORMAL, NULL, 0);
    unmark(c);
    xr_conn_hs_remove(c);
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
    xr_out_clear(c);
    free(c->in);
    xr_buf_free(&c->msg);
    xr_zinflate_free(c->inflater);
    free(c->close_reason);
    free(c->user);
    if (c->expiry)
        event_free(c->expiry);
    free(c);
}

void xr_conn_expire_handshakes(xr_transport *t)
{
    uint64_t now = xr_now_ms();
    while (t->hs_head && t->hs_head->hs_deadline <= now) {
        xr_conn *c = t->hs_head;
        t->stats.handshake_failures_total++;
        XR_DEBUG(t->log, "handshake timeout after %u ms: closing", t->o->handshake_timeout_ms);
        xr_conn_hs_remove(c);
        xr_conn_destroy(c);
    }
    hs_arm(t);
}

xr_conn *xr_conn_next(const xr_conn *c)
{
    return c->next;
}

/* Lingering close: the peer may still be sending (a close frame, the rest of
 * a message). Closing now would make the kernel answer with RST and could
 * destroy our last bytes in flight, so we half-close and read until EOF. */
static void linger(xr_conn *c)
{
    c->state = ST_LINGER;
    if (c->ssl) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
    }
    shutdown(c->fd, SHUT_WR);
}

/* Sends what is queued, then closes. */
void xr_conn_finish(xr_conn *c)
{
    if (c->state > ST_FLUSH)
        return;     /* lingering, broken or dead already */
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
    xr_out_frame(c, XR_WS_OP_CLOSE, p, n);
    xr_buf_free(&c->msg);
    c->state = ST_CLOSING;
    notify_close(c, code, (const char *)p + 2, n - 2);
    if (fail)
        xr_conn_finish(c);
}

/* The flush step: a close decided inside a send, a close notice, then the
 * queued bytes. Runs from the loop only. */
void xr_conn_flush(xr_conn *c)
{
    xr_transport *t = c->t;
    unmark(c);
    if (c->state == ST_BROKEN) {
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
    if (c->out.len && xr_out_write(c) == XR_OUT_BROKEN) {
        xr_conn_destroy(c);
        return;
    }
    if (c->state == ST_FLUSH && !c->out.len)
        linger(c);
    /* A reader this far behind is not read from until it catches up. */
    int resume = 0;
    if (c->state == ST_OPEN && c->out.len > xr_conn_pause_at(c)) {
        c->paused = 1;
    } else if (c->paused && c->out.len <= xr_conn_pause_at(c) / 2) {
        c->paused = 0;
        resume = 1;
    }
    xr_conn_rewatch(c);
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
    if (!c->dirty || c->busy || !c->out.len || !xr_conn_may_send(c) || c->paused ||
        (c->watching & EV_WRITE))
        return;
    int r = xr_out_write(c);
    if (r == XR_OUT_BROKEN)
        c->state = ST_BROKEN;
    else if (r == XR_OUT_DONE)
        unmark(c);
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
            xr_out_frame(c, XR_WS_OP_PONG, f->payload, (size_t)f->len);
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
            xr_out_frame(c, XR_WS_OP_CLOSE, p, n);
            c->state = ST_CLOSING;
            notify_close(c, f->close_code, (const char *)f->reason, f->reason_len);
        }
        xr_conn_finish(c);
        return;
    }
}

/* Frames from p: the bytes taken; an incomplete frame is left. */
static size_t handle_frames(xr_conn *c, uint8_t *p, size_t n)
{
    size_t off = 0;
    /* A reader this far behind gets no more of its frames handled (they
     * wait in c->in) until it has read what is queued for it. */
    while (off < n && xr_conn_reads_frames(c) &&
           c->out.len <= xr_conn_pause_at(c)) {
        xr_ws_frame f;
        xr_ws_status st = xr_ws_decode(&c->dec, p + off, n - off, &f);
        if (st == XR_WS_NEED_MORE)
            break;
        if (st == XR_WS_ERROR) {
            XR_DEBUG(c->t->log, "closing with %u: %s", f.error_code, f.error);
            if (c->state == ST_OPEN)
                ws_close(c, f.error_code, f.error, 1);
            else
                xr_conn_finish(c);
            return n;
        }
        on_frame(c, &f);
        off += f.size;
    }
    if (!xr_conn_reads_frames(c))
        return n;
    if (off < n && c->out.len > xr_conn_pause_at(c))
        c->held = 1;
    return off;
}

/* Acts on n bytes at p: the bytes taken. */
static size_t consume(xr_conn *c, uint8_t *p, size_t n)
{
    size_t off = 0;
    if (c->state == ST_HANDSHAKE) {
        off = xr_conn_head(c, p, n);
        if (c->state == ST_HANDSHAKE)
            return off;     /* 0: head incomplete; else answered */
    }
    if (xr_conn_reads_frames(c))
        return off + handle_frames(c, p + off, n - off);
    return n;               /* flushing or lingering: input is discarded */
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
                return XR_ENOMEM;
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
    if (xr_conn_reads_frames(c)) {
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
        return XR_ENOMEM;
    c->in = q;
    c->in_cap = want;
    return 0;
}

/* sock_read's outcomes besides bytes (> 0) and EOF (0). */
enum { READ_AGAIN = -1, READ_FAILED = -2 };

/* One read: bytes, 0 at EOF, READ_AGAIN when nothing is there, READ_FAILED. */
static ssize_t sock_read(xr_conn *c, uint8_t *p, size_t cap)
{
    xr_transport *t = c->t;
    if (!c->ssl) {
        ssize_t n = recv(c->fd, p, cap, 0);
        if (n >= 0)
            return n;
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? READ_AGAIN
                                                                          : READ_FAILED;
    }
    ERR_clear_error();
    int n = SSL_read(c->ssl, p, cap > INT_MAX ? INT_MAX : (int)cap);
    if (n > 0)
        return n;
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_READ:
        return READ_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->tls_wants_write = 1;
        return READ_AGAIN;
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
        return READ_FAILED;
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
        if (c->state == ST_DEAD)
            return;
        if (keep(c, c->in + used, c->in_len - used) < 0) {
            xr_conn_destroy(c);
            return;
        }
    }
    while (c->state != ST_DEAD && total < XR_READ_BUDGET && c->out.len <= xr_conn_pause_at(c)) {
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
        if (n == READ_AGAIN)
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
        if (c->state == ST_DEAD)
            return;
        if (keep(c, start + used, len - used) < 0) {
            xr_conn_destroy(c);
            return;
        }
        if ((size_t)n < cap && !(c->ssl && SSL_has_pending(c->ssl)))
            return;
    }
    /* Budget spent: the socket (or TLS) still has bytes; later. */
    if (c->state != ST_DEAD && c->ssl && SSL_has_pending(c->ssl))
        event_active(&c->ev, EV_READ, 1);
}

static void on_timeout(xr_conn *c)
{
    xr_transport *t = c->t;
    if (c->state == ST_OPEN && c->tmo == TMO_PING) {
        /* Silent for ping_interval: ask for a sign of life. */
        c->ping_out = 1;
        t->stats.pings_sent++;
        xr_out_frame(c, XR_WS_OP_PING, NULL, 0);
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
        if ((what & EV_WRITE) && c->out.len && xr_out_write(c) == XR_OUT_BROKEN)
            xr_conn_destroy(c);
        if (c->state != ST_DEAD && ((what & EV_READ) || c->tls_wants_write))
            read_some(c);
    }
    c->busy = 0;
    if (c->state == ST_DEAD) {
        xr_conn_destroy(c);
        return;
    }
    /* Uncork: what this callback queued goes out now, in one write. */
    xr_conn_flush(c);
}

/* ---- accept and drain ------------------------------------------------- */

void xr_conn_accept(xr_transport *t, int fd, int tls, int api, const void *ip, size_t iplen)
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
    c->api = api != 0;
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
    xr_conn_rewatch(c);
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

/* ---- accessors -------------------------------------------------------- */

xr_transport *xr_conn_transport(const xr_conn *c) { return c->t; }
void *xr_conn_slot(const xr_conn *c) { return c->slot; }
void xr_conn_set_slot(xr_conn *c, void *slot) { c->slot = slot; }
void xr_conn_set_data(xr_conn *c, void *data) { c->data = data; }
void *xr_conn_data(const xr_conn *c) { return c->data; }
const char *xr_conn_subprotocol(const xr_conn *c) { return c->protocol; }
const char *xr_conn_user(const xr_conn *c) { return c && c->user && *c->user ? c->user : NULL; }

const char *xr_conn_grants(const xr_conn *c)
{
    const char *g = c && c->user ? c->user + strlen(c->user) + 1 : NULL;
    return g && *g ? g : NULL;
}

/* The credentials ended (no fresh token in the grace period): a clean
 * close with 4001, from the loop. */
static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_conn *c = arg;
    if (c->state != ST_OPEN)
        return;
    c->t->stats.expired_total++;
    XR_DEBUG(c->t->log, "credentials of %s ended: closing with 4001",
             xr_conn_user(c) ? c->user : "(no user)");
    ws_close(c, 4001, "token expired", 0);
    xr_conn_flush(c);
}

int xr_conn_auth(xr_conn *c, const char *user, const char *grants, size_t glen,
                 uint64_t expires_ms)
{
    char *u = NULL;
    size_t ul = user ? strlen(user) : 0;
    if ((ul || glen) && !(u = malloc(ul + glen + 2)))
        return XR_ENOMEM;
    if (u) {
        memcpy(u, user ? user : "", ul + 1);
        if (glen)
            memcpy(u + ul + 1, grants, glen);
        u[ul + 1 + glen] = '\0';
    }
    if (expires_ms && !c->expiry && !(c->expiry = evtimer_new(c->t->base, on_expiry, c))) {
        free(u);
        return XR_ENOMEM;
    }
    free(c->user);
    c->user = u;
    if (c->expiry) {
        evtimer_del(c->expiry);
        if (expires_ms) {
            uint64_t now = xr_now_ms(), ms = expires_ms > now ? expires_ms - now : 0;
            struct timeval tv = xr_timeval_ms(ms);
            evtimer_add(c->expiry, &tv);
        }
    }
    return XR_OK;
}

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
