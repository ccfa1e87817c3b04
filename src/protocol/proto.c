/* SPDX-License-Identifier: Apache-2.0 */
/* The protocol object: what the server layer creates, hooks into the
 * transport and reads for /health and /metrics. */
#include "protocol/internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

xr_proto *xr_proto_new(struct event_base *base, const xr_options *o, const xr_logger *log,
                       void *owner)
{
    xr_proto *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->base = base;
    p->o = o;
    p->log = log;
    p->owner = owner;
    xr_map_init(&p->routes);
    xr_channels_maps_init(p);
    return p;
}

void xr_proto_free(xr_proto *p)
{
    if (!p)
        return;
    xr_channels_free(p);
    xr_presence_free(p);
    xr_history_free(p);
    xr_streams_free(p);
    xr_router_free(p);
    free(p);
}

int xr_proto_start(xr_proto *p, char *err, size_t errlen)
{
    if (p->antenna)
        return XR_OK;
    int rc = xr_channels_init(p, err, errlen);
    if (rc == XR_OK)
        xr_history_start(p);
    return rc < 0 ? rc : xr_presence_start(p, err, errlen);
}

void xr_proto_conn_gone(xr_proto *p, xr_conn *c)
{
    xr_pconn *pc = xr_conn_slot(c);
    if (!pc)
        return;
    xr_conn_set_slot(c, NULL);
    xr_channels_conn_gone(p, pc);
    /* Requests still held by the application now see a closed peer. */
    pc->conn = NULL;
    xr_pconn_release(pc);
}

const xr_proto_stats *xr_proto_stats_get(const xr_proto *p) { return &p->stats; }
size_t xr_proto_channels(const xr_proto *p) { return p->channels.count; }
size_t xr_proto_rooms(const xr_proto *p) { return p->rooms.count; }
int xr_proto_has_routes(const xr_proto *p) { return p->routes.count || p->n_mws; }

const char *xr_proto_antenna(const xr_proto *p, int *connected)
{
    *connected = p->antenna ? p->antenna_up : 0;
    return p->antenna && p->antenna->scheme ? p->antenna->scheme : p->antenna ? "" : NULL;
}

typedef struct parts_acc {
    xr_proto_part *out;
    size_t max, n;
} parts_acc;

/* Reads only the fields the module's struct has (its size says). */
#define PART_HAS(pt, f) ((pt)->size >= offsetof(xr_antenna_part, f) + sizeof((pt)->f))

static void add_part(void *arg, const xr_antenna_part *pt)
{
    parts_acc *a = arg;
    /* Parts past max, or too old to say whether they are up, are left out. */
    if (a->n < a->max && pt && PART_HAS(pt, up)) {
        xr_proto_part *o = &a->out[a->n++];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", pt->name ? pt->name : "?");
        o->up = pt->up;
        if (PART_HAS(pt, channels))
            o->channels = pt->channels;
        if (PART_HAS(pt, published))
            o->published = pt->published;
        if (PART_HAS(pt, publish_errors))
            o->publish_errors = pt->publish_errors;
        if (PART_HAS(pt, received))
            o->received = pt->received;
        if (PART_HAS(pt, reconnects))
            o->reconnects = pt->reconnects;
    }
}

size_t xr_proto_antenna_parts(const xr_proto *p, xr_proto_part *out, size_t max)
{
    if (!p->antenna || !p->antenna_self || !XR_ANTENNA_HAS(p->antenna, parts))
        return 0;
    parts_acc a = {out, max, 0};
    p->antenna->parts(p->antenna_self, add_part, &a);
    return a.n;
}

size_t xr_proto_antenna_detail(const xr_proto *p, char *buf, size_t len)
{
    buf[0] = '\0';
    if (!p->antenna || !p->antenna_self || !XR_ANTENNA_HAS(p->antenna, describe) || len == 0)
        return 0;
    size_t n = p->antenna->describe(p->antenna_self, buf, len);
    buf[len - 1] = '\0';
    return n < len ? n : len - 1;
}
