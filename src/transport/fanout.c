/* SPDX-License-Identifier: Apache-2.0 */
/* The fan-out primitive: one message to many connections, framed here
 * once. The layer above decides who receives; how the bytes go out
 * (whole frames shared, a body compressed once, each receiver written at
 * once) is decided here. */
#include "transport/internal.h"

#include <stdlib.h>
#include <string.h>

/* Room for n messages' frames and compressed bodies: XR_OK or XR_ENOMEM. */
static int scratch(xr_transport *t, size_t n)
{
    if (xr_array_room(&t->fan_frames, &t->cap_frames, n, sizeof *t->fan_frames) < 0 ||
        xr_array_room(&t->fan_z, &t->cap_z, n, sizeof *t->fan_z) < 0)
        return XR_ENOMEM;
    return XR_OK;
}

/* Header, prefix and body of each message as one frame, for receivers
 * that take the very same bytes (NULL where out of memory). */
static void build_frames(xr_transport *t, const char *prefix, size_t plen,
                         xr_shared *const *bodies, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        size_t len = plen + bodies[k]->len;
        uint8_t h[XR_WS_MAX_HEADER];
        size_t hl = xr_ws_header(h, XR_WS_OP_TEXT, 1, len, NULL);
        xr_shared *f = t->fan_frames[k] = xr_shared_new(NULL, hl + len);
        if (f) {
            memcpy(f->data, h, hl);
            memcpy(f->data + hl, prefix, plen);
            memcpy(f->data + hl + plen, bodies[k]->data, bodies[k]->len);
        }
    }
}

size_t xr_fanout(xr_transport *t, const xr_fanout_target *to, size_t n_to,
                 xr_shared *const *bodies, size_t n)
{
    if (!n || !n_to || scratch(t, n) < 0)
        return 0;
    memset(t->fan_z, 0, n * sizeof *t->fan_z);
    size_t sent = 0;
    for (size_t i = 0, j; i < n_to; i = j) {
        for (j = i + 1; j < n_to && to[j].prefix == to[i].prefix && to[j].plen == to[i].plen; j++)
            ;
        /* One receiver gets prefix and body as they are: no frame to share. */
        int whole = j - i > 1;
        if (whole)
            build_frames(t, to[i].prefix, to[i].plen, bodies, n);
        for (size_t r = i; r < j; r++) {
            xr_conn *c = to[r].conn;
            for (size_t k = 0; k < n; k++) {
                size_t len = to[r].plen + bodies[k]->len;
                int rc = whole && t->fan_frames[k] && !xr_conn_wants_deflate(c, len)
                         ? xr_conn_send_frame(c, t->fan_frames[k], len)
                         : xr_conn_send_shared(c, to[r].prefix, to[r].plen, bodies[k],
                                               &t->fan_z[k]);
                sent += rc == XR_OK;
            }
            xr_conn_uncork(c);
        }
        if (whole)
            for (size_t k = 0; k < n; k++)
                xr_shared_unref(t->fan_frames[k]);
    }
    for (size_t k = 0; k < n; k++)
        xr_shared_unref(t->fan_z[k].z);
    return sent;
}
