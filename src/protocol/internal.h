/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the files of the protocol layer; nothing above includes it. */
#ifndef XR_PROTOCOL_INTERNAL_H
#define XR_PROTOCOL_INTERNAL_H

#include <regex.h>

#include "protocol/proto.h"
#include "codec/position.h"
#include "codec/request.h"
#include "codec/utf8.h"
#include "codec/ws_frame.h"
#include "transport/transport.h"
#include "util/bucket.h"
#include "util/map.h"

struct xr_mw {
    int priority;
    int has_re;
    regex_t re;             /* anchored at the start of the route */
    xr_middleware_fn fn;
    void *ud;
};

/* The protocol's slot of one connection, and the weak reference requests
 * hold to it: after the connection has gone, conn is NULL. */
typedef struct xr_pconn {
    xr_conn *conn;
    unsigned refs;
    struct xr_receiver *receivers;  /* channels this connection SUBscribed */
    size_t n_receivers;             /* at most o->max_channels_per_conn */
    /* --rate-limit, --rate-limit-bytes, and the refused requests that
     * close the connection when they pile up (--rate-limit-strikes) */
    xr_bucket requests, bytes, strikes;
} xr_pconn;

struct xr_proto {
    struct event_base *base;
    const xr_options *o;
    const xr_logger *log;
    void *owner;
    xr_proto_stats stats;

    /* router */
    xr_map routes;                  /* "route\nMETHOD" -> struct xr_route_entry */
    struct xr_mw *mws;              /* sorted by priority */
    size_t n_mws;
    struct xr_request *free_requests;   /* finished, kept for reuse */
    size_t n_free_requests;
    xr_buf scratch;                 /* responses are built here, then framed */
    xr_buf fmt;                     /* xr_replyf's and xr_publishf's text */
    /* The connection whose request a middleware or handler is running
     * for (NULL between requests): xr_publish and xr_room_join check its
     * token's grants, and set denied when they refuse. */
    xr_conn *acting;
    int denied;

    /* channels, rooms, antenna */
    xr_map channels;                /* name -> struct xr_channel (local receivers) */
    xr_map rooms;                   /* name -> struct xr_room */
    xr_map memberships;             /* member -> struct xr_membership */
    xr_map subs;                    /* name -> antenna subscription count */
    struct event *room_timer;
    /* Channel and room messages from the antenna wait here until the
     * current callback ends, then go out receiver by receiver (every
     * message of a burst to one receiver at once, then the next). */
    struct xr_pending *pending;
    size_t n_pending, cap_pending;
    xr_buf pending_names;           /* their targets' names, back to back */
    /* who receives one run, and its bodies: xr_fanout's arguments, reused */
    xr_fanout_target *targets;
    size_t n_targets, cap_targets;
    struct xr_shared **bodies;
    size_t cap_bodies;
    struct event *drain_ev;
    const xr_antenna_ops *antenna;
    void *antenna_self;
    void *antenna_dl;
    xr_antenna_host antenna_host;
    struct xr_wakeup *wakeups;      /* the antenna's, closed after it is destroyed */
    int antenna_up, antenna_was_up;
    char *antenna_url;

    /* presence (presence.c) */
    xr_map presence;                /* "room\0user" -> struct xr_pres */
    char **presence_patterns;       /* xr_presence_enable's */
    int stopping;                   /* the antenna is being destroyed */
    size_t presence_cut;            /* counts it cut short meanwhile */
    size_t n_presence_patterns;
    xr_presence_fn presence_fn;
    void *presence_ud;
    /* history */
    struct xr_history_rule *history_rules;  /* xr_history_enable's, latest last */
    size_t n_history_rules;
    struct xr_recovery *recoveries; /* reads in flight, for the free */
    xr_map streams;                 /* name -> its last position here (streams.c) */
};

/* router.c */
void xr_router_free(xr_proto *p);
void xr_pconn_release(xr_pconn *pc);

/* antenna_host.c: what the host table lends modules (ABI minor 4) */
typedef struct xr_wakeup xr_wakeup;
void xr_antenna_host_services(xr_antenna_host *h);
/* The write end of a new wake-up pipe whose bytes make fn(arg) run on
 * base's loop; -1 with errno. */
int xr_wakeup_new(struct event_base *base, xr_wakeup **list, void (*fn)(void *), void *arg);
void xr_wakeups_free(xr_wakeup **list);

/* Whether c's token lets it use name as kind (an XR_GRANT_*): 1 or 0.
 * Without a connection or a token, 1. */
int xr_granted(const xr_conn *c, char kind, const char *name, size_t len);

/* presence.c: what this node holds of each user in each room */
typedef struct xr_pres xr_pres;
int xr_presence_on(const xr_proto *p, const char *room, size_t len);
int xr_presence_any(const xr_proto *p);
/* "\x01p" and the room into buf: the room's presence channel; 0 when it
 * does not fit. */
size_t xr_presence_channel(const char *room, size_t len, char *buf, size_t cap);
/* A member channel of user joined room here: counted (the broker told on
 * the first), or NULL when out of memory. */
xr_pres *xr_presence_hold(xr_proto *p, const char *room, size_t rlen, const char *user,
                          size_t ulen, const char *info, size_t ilen);
/* That member channel left: the user's last one here starts the grace. */
void xr_presence_release(xr_proto *p, xr_pres *pr);
/* A message of a presence channel: the tail its deliveries share, in
 * *tail; the C callback has run. */
int xr_presence_event(xr_proto *p, const char *name, size_t clen, const char *msg, size_t mlen,
                      struct xr_shared **tail);
void xr_presence_gone(void *host, const char *room, size_t rlen, const char *user, size_t ulen,
                      const char *info, size_t ilen);
/* After the antenna: refuses presence on an antenna without it; routes. */
int xr_presence_start(xr_proto *p, char *err, size_t errlen);
void xr_presence_free(xr_proto *p);

/* history.c: which names keep history, positions, recovery on SUB */
typedef struct xr_recovery xr_recovery;
/* 1 and the name's setting when it keeps history, else 0. */
int xr_history_of(const xr_proto *p, const char *name, size_t len, unsigned *keep,
                  unsigned long long *ttl_ms);
/* The tail a delivery with a position shares (as sub_tail, with header
 * {"offset":N,"epoch":"E"}), or NULL when out of memory. */
struct xr_shared *xr_history_tail(xr_proto *p, const char *msg, size_t mlen,
                                  unsigned long long offset, const char *epoch, size_t elen);
/* A SUB's header "since": 0 none; 1 with the position (epoch into a
 * buffer of XR_EPOCH_MAX + 1); XR_EINVAL with why (a malformed one). */
#define XR_EPOCH_MAX XR_POSITION_EPOCH_MAX
/* Whether the antenna's offsets skip (ABI minor 8): no hole is seen in a
 * jump, and a recovery counts what it read. */
static inline int xr_history_sparse(const xr_proto *p)
{
    return p->antenna && XR_ANTENNA_HAS(p->antenna, history_sparse);
}
int xr_history_since(struct xr_request *r, unsigned long long *offset, char *epoch,
                     size_t *elen, const char **why);
/* Holds what the receiver of pc on channel name would get from now on,
 * until xr_recovery_read's answer is out: XR_OK, XR_ENOMEM. */
int xr_recovery_begin(xr_proto *p, xr_pconn *pc, const char *name, size_t len,
                      unsigned long long since, const char *epoch, size_t elen);
/* After the SUB's handler: reads the history of the room it joined (or
 * its own channel) and answers. */
void xr_recovery_read(xr_proto *p, xr_pconn *pc, const char *name, size_t len);
/* A message for a recovering receiver, kept until the replay is out. */
void xr_recovery_hold(xr_recovery *rec, const char *stream, size_t slen,
                      unsigned long long offset, const char *epoch, size_t elen,
                      struct xr_shared *tail);
/* Its receiver went: the answer, when it comes, goes nowhere. */
void xr_recovery_cancel(xr_recovery *rec);
/* Says once, at start, when history is asked of an antenna without it. */
void xr_history_start(xr_proto *p);
void xr_history_free(xr_proto *p);
/* A broker's answer to a query: to the route's held request (replied,
 * then let go), else to the C caller's done; rc not XR_OK answers
 * "unavailable" / XR_EANTENNA. (presence.c, history.c) */
void xr_answer_json(xr_request *req, void (*done)(int rc, const char *json, size_t len, void *ud),
                    void *ud, int rc, const xr_buf *json);

/* streams.c: a node's own gap in a stream with history, repaired */
/* Whether the antenna's message goes out now (1) or waits for a repair
 * or was delivered already (0). */
int xr_stream_check(xr_proto *p, const char *name, size_t len, const char *msg, size_t mlen,
                    unsigned long long offset, const char *epoch, size_t elen);
/* The antenna subscription of name ended: its position is forgotten. */
void xr_stream_forget(xr_proto *p, const char *name, size_t len);
void xr_streams_free(xr_proto *p);

/* channels.c */
/* A message of the antenna out to name's receivers and members, built once. */
void xr_deliver_at(xr_proto *p, const char *name, size_t len, const char *msg, size_t mlen,
                   unsigned long long offset, const char *epoch, size_t elen);
/* The receiver of pc on channel name, for history.c: its recovery slot
 * (NULL when there is no such receiver). */
xr_recovery **xr_receiver_recovery(xr_proto *p, xr_pconn *pc, const char *name, size_t len);
/* Sends bodies (tails) to pc's receiver of channel name alone. */
void xr_receiver_send(xr_proto *p, xr_pconn *pc, const char *name, size_t len,
                      struct xr_shared *const *bodies, size_t n);
/* The stream a recovering SUB reads: the first room with history that
 * member is in, else the member's channel when it has history; 0 when
 * none has. */
int xr_member_stream(xr_proto *p, const char *member, size_t len, const char **name,
                     size_t *nlen);
/* Delivers now what the antenna handed over and waits for the loop. */
void xr_proto_drain(xr_proto *p);

/* channels.c */
/* The SUB's channel asked for presence events ({"presence": true}). */
void xr_channel_wants_events(xr_proto *p, const char *name, size_t len);
/* XR_EINVAL for a name outside the name policy (xr_name_check), XR_ELIMIT
 * when pc holds max_channels_per_conn already, XR_EPERM when pc's token
 * grants neither the channel nor every room it is a member of here. */
int xr_channel_open(xr_proto *p, xr_pconn *pc, const char *name, size_t len);
void xr_channel_close(xr_proto *p, xr_pconn *pc, const char *name, size_t len);
void xr_channels_conn_gone(xr_proto *p, xr_pconn *pc);
void xr_channels_maps_init(xr_proto *p);
int xr_channels_init(xr_proto *p, char *err, size_t errlen);
void xr_channels_free(xr_proto *p);

#endif
