/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The X-raptor protocol on top of the transport: requests routed to
 * handlers through middleware, SUB channels, rooms, and the antenna that
 * carries channels between nodes. The server layer creates it, registers
 * it as the transport's message and gone hooks, and reads its counters.
 */
#ifndef XR_PROTOCOL_PROTO_H
#define XR_PROTOCOL_PROTO_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "xraptor.h"
#include "xraptor/antenna.h"
#include "util/log.h"

struct event_base;

typedef struct xr_proto xr_proto;

/* Request outcomes, for /metrics and for fail answers. */
enum { XR_OUT_OK, XR_OUT_NOT_REGISTERED, XR_OUT_FAIL, XR_OUT_BAD_REQUEST };

typedef struct xr_proto_stats {
    uint64_t requests[6][4];        /* [GET..UNSUB, unknown][outcome] */
    uint64_t publishes, publish_errors, deliveries, antenna_messages;
    uint64_t room_pruned, antenna_reconnects;
    uint64_t rate_limited, rate_limit_closes;
    uint64_t forbidden;             /* refused for the token's grants */
    uint64_t gaps_repaired, gaps_unrepaired;    /* the antenna's live stream broke */
} xr_proto_stats;

/* owner is what xr_request_server() hands back (the server). */
xr_proto *xr_proto_new(struct event_base *base, const xr_options *opts,
                       const xr_logger *log, void *owner);
void xr_proto_free(xr_proto *p);
/* Loads and starts the antenna; before the loop runs. */
int xr_proto_start(xr_proto *p, char *err, size_t errlen);

/* Transport hooks: a message is a request; a connection gone closes its
 * channels and leaves its rooms. */
void xr_proto_message(xr_proto *p, xr_conn *c, xr_msg_type type, const char *data, size_t len);
void xr_proto_conn_gone(xr_proto *p, xr_conn *c);

const xr_proto_stats *xr_proto_stats_get(const xr_proto *p);
/* The antenna's scheme and state (NULL before it is loaded). */
const char *xr_proto_antenna(const xr_proto *p, int *connected);
/* The module's own line on its broker connection (minor 1's describe), or
 * "" and 0 when it has none. */
size_t xr_proto_antenna_detail(const xr_proto *p, char *buf, size_t len);
/* One part of the broker (a cluster's shard), copied from the module. */
typedef struct xr_proto_part {
    char name[96];
    int up;
    size_t channels;
    uint64_t published, publish_errors, received, reconnects;
} xr_proto_part;
/* Fills up to max parts and returns how many it filled: 0 for a module
 * without parts (minor 2). */
size_t xr_proto_antenna_parts(const xr_proto *p, xr_proto_part *out, size_t max);
size_t xr_proto_channels(const xr_proto *p);
size_t xr_proto_rooms(const xr_proto *p);
/* Whether any route or middleware was registered. */
int xr_proto_has_routes(const xr_proto *p);

/* What the public xr_route() ... xr_room_size() do, on the protocol. */
int xr_proto_route(xr_proto *p, const char *route, unsigned methods, xr_handler fn, void *ud);
int xr_proto_middleware(xr_proto *p, int priority, const char *regex, xr_middleware_fn fn,
                        void *ud);
int xr_proto_publish(xr_proto *p, const char *ch, size_t clen, const char *msg, size_t mlen);
int xr_proto_publish_at(xr_proto *p, const char *ch, size_t clen, const char *msg, size_t mlen,
                        xr_publish_cb done, void *ud);
/* xr_publishf: the message formatted by xr_jsonf's rules, then published. */
int xr_proto_publishv(xr_proto *p, const char *ch, size_t clen, const char *fmt, va_list ap);
int xr_proto_room_join(xr_proto *p, const char *room, const char *member);
int xr_proto_room_join_as(xr_proto *p, const char *room, const char *member, const char *user,
                          const char *info);
int xr_proto_presence_enable(xr_proto *p, const char *pattern);
int xr_proto_presence_query(xr_proto *p, const char *room, int members, xr_presence_cb done,
                            void *ud);
void xr_proto_on_presence(xr_proto *p, xr_presence_fn fn, void *ud);
int xr_proto_history_enable(xr_proto *p, const char *pattern, unsigned size, unsigned ttl_ms);
int xr_proto_history_read(xr_proto *p, const char *name, size_t limit, xr_history_cb done,
                          void *ud);
/* A history_rooms entry "PATTERN N SECS": the pattern is spec's first
 * *plen bytes. XR_OK, or XR_EINVAL with why. Pure. */
int xr_history_spec(const char *spec, size_t *plen, unsigned *size, unsigned *ttl_ms, char *why,
                    size_t wlen);
int xr_proto_room_leave(xr_proto *p, const char *room, const char *member);
size_t xr_proto_room_size(const xr_proto *p, const char *room);

/* ---- antenna modules (antenna.c) -------------------------------------- */

/* The scheme of an --antenna URL into out: its length, 0 for a path to a
 * .so, XR_EINVAL for neither. Pure. */
int xr_antenna_scheme(const char *url, char *out, size_t cap);
/* Resolves and loads the module for url; on success fills ops and dl, and
 * use with the URL to give the module's create() (url itself, or
 * "<scheme>://" for a module named by its path). */
int xr_antenna_open(const char *url, const char *dir, const xr_antenna_ops **ops,
                    void **dl, char *use, size_t uselen, char *err, size_t errlen);
void xr_antenna_close(void *dl);

/* Answers r with header {"error": kind} and payload {"message": why}
 * (the protocol's own refusals' form), for built-in routes above. */
int xr_proto_reply_error(xr_request *r, const char *kind, const char *why);

#endif
