/* SPDX-License-Identifier: Apache-2.0 */
/* What channels.c (channels, the antenna's deliveries, the fan-out queue)
 * and rooms.c (rooms and their members) share inside the protocol layer. */
#ifndef XR_PROTOCOL_CHANNELS_H
#define XR_PROTOCOL_CHANNELS_H

#include "protocol/internal.h"

#include <event2/util.h>

typedef struct xr_receiver {
    xr_pconn *pc;
    struct xr_channel *ch;
    struct xr_receiver *prev, *next;            /* in the channel */
    struct xr_receiver *conn_prev, *conn_next;  /* in the connection */
    xr_recovery *rec;       /* recovering: what it gets is held (history.c) */
} xr_receiver;

typedef struct xr_channel {
    xr_map_entry *e;        /* name and length live in the map entry */
    xr_receiver *head;
    size_t n;
    /* {"request_id":"<name>","payload":" — every delivery starts so */
    size_t plen;
    char *prefix;
    int events;             /* its SUB asked for presence events */
} xr_channel;

typedef struct xr_member {
    const char *name;       /* the key of its entry in room->index */
    size_t len;
    xr_channel *ch;         /* its channel on this node, or NULL */
    xr_pres *pres;          /* what it counts in the room's presence, or NULL */
} xr_member;

typedef struct xr_room {
    xr_map_entry *e;
    xr_map index;           /* member name -> position + 1 in v */
    xr_member *v;
    size_t n, cap;
    size_t n_remote;        /* members with no channel here */
} xr_room;

/* A message for a channel or a room, waiting for the drain. Targets are
 * found again by name then: they may have gone meanwhile. */
enum { TO_CHANNEL, TO_ROOM, TO_EVENTS };    /* a pending message's target */

typedef struct xr_pending {
    unsigned to : 2;
    size_t noff, nlen;      /* in p->pending_names */
    size_t eoff, elen;      /* its epoch, after the name */
    unsigned long long offset;  /* its position (0: none) */
    xr_shared *tail;
} xr_pending;

/* The rooms one member is in, so a closing channel leaves them all and a
 * new one is found by them. */
typedef struct xr_membership {
    size_t n, cap;
    xr_room **rooms;
} xr_membership;

/* channels.c: the antenna subscription a name holds while a channel or a
 * room needs it (one for both). */
void xr_sub_ref(xr_proto *p, const char *name, size_t len);
void xr_sub_unref(xr_proto *p, const char *name, size_t len);

/* rooms.c */
void xr_room_free(xr_room *room);
void xr_membership_free(xr_membership *ms);
/* A member's channel came to this node, or left it. */
void xr_member_here(xr_proto *p, xr_channel *ch);
void xr_member_gone(xr_proto *p, const char *member, size_t len);
/* The room timer: remote members no node holds any more are pruned. */
void xr_rooms_check(evutil_socket_t fd, short what, void *arg);

#endif
