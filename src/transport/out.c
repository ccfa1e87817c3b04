/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A connection's output: the queue of pooled blocks and shared references,
 * written once per callback (EV_WRITE armed only when the kernel did not
 * take it all), framing and compression of what is sent, and the sending
 * calls the layers above use. Sends only queue.
 */
#include "transport/conn.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <openssl/err.h>

#include "util/pool.h"

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

int xr_out_add(xr_conn *c, const void *data, size_t n)
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
int xr_out_ref(xr_conn *c, xr_shared *sh)
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

void xr_out_clear(xr_conn *c)
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
int xr_out_write(xr_conn *c)
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
                return XR_OUT_FULL;
            XR_DEBUG(t->log, "TLS write failed (error %d): closing", e);
            return XR_OUT_BROKEN;
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
                return XR_OUT_FULL;
            XR_DEBUG(t->log, "write failed: %s", strerror(errno));
            return XR_OUT_BROKEN;
        }
        size_t total = 0;
        for (int k = 0; k < n; k++)
            total += iov[k].iov_len;
        out_consume(c, (size_t)w);
        if ((size_t)w < total)
            return XR_OUT_FULL;
    }
    return XR_OUT_DONE;
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
/* ---- writing ---------------------------------------------------------- */

int xr_out_frame(xr_conn *c, unsigned op, const void *data, size_t len)
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
    } else if (xr_out_add(c, h, hl) < 0 || (len && xr_out_add(c, data, len) < 0)) {
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
int xr_out_message(xr_conn *c, unsigned op, const void *data, size_t len)
{
    size_t zlen;
    const char *z = deflated(c, data, len, NULL, 0, &zlen);
    if (!z)
        return xr_out_frame(c, op, data, len);
    count_deflated(c->t, len, zlen);
    return xr_out_frame(c, op | XR_WS_RSV1, z, zlen);
}

/* ---- sending ---------------------------------------------------------- */

/*
 * Whether c takes one more message: XR_OK, XR_ECLOSED, or XR_ELIMIT when
 * what is already queued exceeds max_output_buffer (so one message of any
 * allowed size always fits). The slow reader is then closed with 1008 from
 * the loop, after this call has returned.
 */
static int sendable(xr_conn *c)
{
    if (!xr_conn_may_send(c))
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
    if (!xr_conn_may_send(c))
        return XR_ECLOSED;
    if (type == XR_TEXT && !xr_utf8_valid(data, len))
        return XR_EINVAL;
    int rc = sendable(c);
    if (rc < 0)
        return rc;
    return counted(c, xr_out_message(c, type == XR_TEXT ? XR_WS_OP_TEXT : XR_WS_OP_BINARY,
                                  data, len), len);
}

int xr_conn_close(xr_conn *c, int code, const char *reason)
{
    if (!c || code < 0 || !xr_ws_close_code_valid((unsigned)code))
        return XR_EINVAL;
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > XR_WS_MAX_CONTROL - 2 || !xr_utf8_valid((const uint8_t *)reason, rlen))
        return XR_EINVAL;
    if (!xr_conn_may_send(c))
        return XR_ECLOSED;
    uint8_t p[XR_WS_MAX_CONTROL];
    size_t n = xr_ws_close_payload(p, (unsigned)code, reason, rlen);
    if (rlen && !(c->close_reason = strndup(reason, rlen)))
        return XR_ENOMEM;
    xr_out_frame(c, XR_WS_OP_CLOSE, p, n);
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
    return s->len < XR_SHARE_MIN ? xr_out_add(c, s->data, s->len) : xr_out_ref(c, s);
}

/* send_shared_deflated's outcome besides XR_OK and XR_E*. */
enum { SEND_PLAIN = 1 };

/*
 * prefix + tail compressed for c: a stored (uncompressed) DEFLATE block with
 * the prefix, then the shared compressed tail. Receivers with a smaller
 * window get their own compression. SEND_PLAIN: it does not shrink.
 */
static int send_shared_deflated(xr_conn *c, const char *prefix, size_t plen, xr_shared *tail,
                                xr_zbody *zb)
{
    xr_transport *t = c->t;
    uint8_t h[XR_WS_MAX_HEADER + XR_Z_STORED_HEADER];
    xr_shared *z = NULL;
    if (c->pmd.server_bits == 15 && plen <= 0xFFFF) {
        if (!(z = deflated_body(t, tail, zb)))
            return SEND_PLAIN;               /* does not shrink: plain for everyone */
    } else {
        size_t zlen;
        const char *d = deflated(c, prefix, plen, tail->data, tail->len, &zlen);
        if (!d)
            return SEND_PLAIN;
        int rc = xr_out_frame(c, XR_WS_OP_TEXT | XR_WS_RSV1, d, zlen);
        if (rc == XR_OK)
            count_deflated(t, plen + tail->len, zlen);
        return rc;
    }
    size_t zlen = XR_Z_STORED_HEADER + plen + z->len;
    size_t hl = xr_ws_header(h, XR_WS_OP_TEXT | XR_WS_RSV1, 1, zlen, NULL);
    xr_zstored_header(h + hl, plen);
    if (xr_out_add(c, h, hl + XR_Z_STORED_HEADER) < 0 || (plen && xr_out_add(c, prefix, plen) < 0) ||
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
        (rc = send_shared_deflated(c, prefix, plen, tail, zb)) != SEND_PLAIN)
        return counted(c, rc, len);
    uint8_t h[XR_WS_MAX_HEADER];
    size_t hl = xr_ws_header(h, XR_WS_OP_TEXT, 1, len, NULL);
    if (xr_out_add(c, h, hl) < 0 || (plen && xr_out_add(c, prefix, plen) < 0) ||
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

