/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The antenna ABI: what a broker module (memory, Redis, Kafka, NATS, or a
 * third party's) implements so that xraptor can carry pub/sub channels over
 * it. A module is a shared object exporting one symbol, xr_antenna_entry,
 * that returns a const table of function pointers. The host checks `abi`
 * and refuses a mismatch with a clear message.
 *
 * Rules every module keeps:
 * - All I/O happens on the event base the host passes to create(); a module
 *   that owns threads hands their results to that loop (an fd or an event),
 *   and calls the host's callbacks only from the loop's thread.
 * - Channel names and message bodies are opaque bytes, carried exactly:
 *   nodes of the Python X-raptor share channels by name and body.
 * - Per channel, messages from one publisher arrive in the order published.
 * - A broker that goes away is reconnected with back-off and every live
 *   channel is subscribed again; host->state() reports each change.
 * - Functions returning int return 0 (XR_OK) on success or a negative XR_E*
 *   code of xraptor/errors.h (XR_EINVAL for a bad URL or argument,
 *   XR_ENOMEM, XR_EANTENNA while the broker is down or refuses) and never
 *   block.
 *
 * Versions: `abi` is the major version, XR_ANTENNA_ABI: the host refuses
 * any other. Within a major, tables only grow at their end: `minor` and
 * `size` say how far the module's table goes, and members added after
 * minor 0 are optional (NULL, or beyond `size`: absent). A module built
 * against an older minor keeps loading; one built against a newer minor
 * loads too, its newer members unused. The host's table carries its
 * `size` the same way: use a host member added after minor 0 only through
 * XR_ANTENNA_HOST_HAS().
 *
 * Writing a module: copy antennas/memory (its own configure.ac finds this
 * header through `pkg-config xraptor`), rename the scheme, install the .so
 * as $(libdir)/xraptor/<scheme>.so. See xraptor-antenna(7).
 */
#ifndef XRAPTOR_ANTENNA_H
#define XRAPTOR_ANTENNA_H

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>

#include <xraptor/errors.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

#define XR_ANTENNA_ABI 2        /* major: changes nobody built before can follow */
#define XR_ANTENNA_ABI_MINOR 8  /* members appended within the major */

/* The levels of host->log(), as in xraptor.h. */
#define XR_ANTENNA_LOG_ERROR 0
#define XR_ANTENNA_LOG_WARN 1
#define XR_ANTENNA_LOG_INFO 2
#define XR_ANTENNA_LOG_DEBUG 3

/* A set of names (channel names: bytes that come from peers), each with
 * a value of the module's, kept by the host (minor 4). */
typedef struct xr_antenna_names xr_antenna_names;

/* Where a walk through a set stands: start from {0}; each step fills
 * name, len and value. */
typedef struct xr_antenna_cursor {
    size_t slot;
    const void *at;
    const char *name;       /* NUL-terminated copy, valid while in the set */
    size_t len;
    void *value;
} xr_antenna_cursor;

typedef struct xr_antenna_host {
    size_t size;            /* sizeof(xr_antenna_host) as the host was built */
    /* A message arrived on a subscribed channel. Bytes are valid only
     * during the call. */
    void (*message)(void *host, const char *channel, size_t clen,
                    const char *msg, size_t mlen);
    /* The broker connection went up (1) or down (0); detail says why. */
    void (*state)(void *host, int connected, const char *detail);
    void (*log)(void *host, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    void *host;

    /* ---- minor 3: use through XR_ANTENNA_HOST_HAS() ---- */

    /* The host's keyed hash (SipHash-1-3 under a per-process secret key),
     * for a module's own sets of channel names: names come from peers,
     * and with an unkeyed hash they can be made to collide on purpose. */
    unsigned long long (*hash)(const void *data, size_t len);

    /* ---- minor 4: use through XR_ANTENNA_HOST_HAS() ---- */

    /* The host's monotonic clock, in milliseconds. */
    unsigned long long (*now_ms)(void);
    /* Reconnect back-off: the delay to wait now, in ms; *state_ms moves on
     * (doubled from min_ms up to max_ms; 0 starts at min_ms). The delay is
     * *state_ms less up to a quarter at random, so that nodes cut off
     * together do not all come back in the same millisecond. Set
     * *state_ms to 0 once connected. */
    unsigned (*backoff)(unsigned *state_ms, unsigned min_ms, unsigned max_ms);
    /* A wake-up for the threads a broker's client library runs: a
     * non-blocking descriptor any thread may write bytes to, after which
     * fn(arg) runs on the loop's thread (once for all the bytes written
     * meanwhile; a full pipe means a wake-up is pending already). The
     * host closes it after destroy() returns. -1 when none can be made. */
    int (*wakeup)(void *host, void (*fn)(void *arg), void *arg);
    /* Sets of names hashed with the keyed hash above. names_new: NULL when
     * out of memory. names_find: the value's slot, or NULL. names_put:
     * adds or replaces, 0 or XR_ENOMEM. names_del: the value it held, or
     * NULL. names_next: 1 and the next name in *c, 0 at the end; the set
     * may lose c's current name during a walk, nothing else. names_free:
     * the names go, the values are the module's. */
    xr_antenna_names *(*names_new)(void);
    void **(*names_find)(const xr_antenna_names *s, const char *name, size_t len);
    int (*names_put)(xr_antenna_names *s, const char *name, size_t len, void *value);
    void *(*names_del)(xr_antenna_names *s, const char *name, size_t len);
    size_t (*names_count)(const xr_antenna_names *s);
    int (*names_next)(const xr_antenna_names *s, xr_antenna_cursor *c);
    void (*names_free)(xr_antenna_names *s);

    /* ---- minor 5: use through XR_ANTENNA_HOST_HAS() ---- */

    /* Presence: how long a node's members outlive it (ms) when it stops
     * refreshing them (killed, cut off); 0 when the host uses no presence. */
    unsigned long long presence_ttl_ms;
    /* A member of a node that died was removed by this node (one node of
     * all, once): the host announces the leave. info as it was stored. */
    void (*presence_gone)(void *host, const char *room, size_t rlen, const char *user,
                          size_t ulen, const char *info, size_t ilen);

    /* ---- minor 6: use through XR_ANTENNA_HOST_HAS() ---- */

    /* A message of a channel with history, with its position: offset
     * (1, 2, 3, ... one more per message within the epoch) and epoch (a
     * name for the history it belongs to, new whenever that history was
     * lost). Bytes are valid only during the call. */
    void (*message_at)(void *host, const char *channel, size_t clen, const char *msg,
                       size_t mlen, unsigned long long offset, const char *epoch, size_t elen);
} xr_antenna_host;

typedef void (*xr_antenna_alive_cb)(int alive, void *arg);

/* One part of a broker that has parts (a Redis Cluster's shards), as
 * parts() reports it (minor 2). The struct grows at its end like the
 * tables: the host reads only the first `size` bytes. */
typedef struct xr_antenna_part {
    size_t size;               /* sizeof(xr_antenna_part) as the module was built */
    const char *name;          /* "127.0.0.1:7001"; valid during the call */
    int up;                    /* connected and serving */
    size_t channels;           /* this node's channels held there */
    unsigned long long published;       /* posts sent to it */
    unsigned long long publish_errors;  /* posts refused or lost with its connection */
    unsigned long long received;        /* messages it delivered to this node */
    unsigned long long reconnects;      /* times it came back */
} xr_antenna_part;

typedef void (*xr_antenna_part_cb)(void *arg, const xr_antenna_part *part);

/* Presence answers (minor 5). count: after presence_add, the user's
 * connections in the room over every node (0: the user is gone); or a
 * negative XR_E* when the broker could not be asked. */
typedef void (*xr_antenna_count_cb)(void *arg, long long count);

/* History (minor 6): one message kept, as history() reports it; valid
 * during the call. */
typedef struct xr_antenna_kept {
    unsigned long long offset;
    const char *msg;
    size_t mlen;
} xr_antenna_kept;

/* history()'s answer: rc 0 or a negative XR_E*; v[0..n) the messages
 * after `since`, oldest first; complete 1 when they are every message
 * after since (none expired, trimmed or past the limit); top and epoch
 * the channel's position now (top 0: nothing published in this epoch). */
typedef void (*xr_antenna_history_cb)(void *arg, int rc, const xr_antenna_kept *v, size_t n,
                                      int complete, unsigned long long top, const char *epoch,
                                      size_t elen);

/* publish_kept_at's answer (minor 7): rc 0 and the position the post was
 * given (epoch valid during the call), or a negative XR_E* when it was
 * refused or lost with its connection. */
typedef void (*xr_antenna_kept_cb)(void *arg, int rc, unsigned long long offset,
                                   const char *epoch, size_t elen);

/* One member of a room, as presence_get reports it; valid during the call. */
typedef struct xr_antenna_member {
    const char *user;
    size_t ulen;
    long long connections;      /* over every node */
    const char *info;           /* JSON text the application gave, or NULL */
    size_t ilen;
} xr_antenna_member;

/* rc XR_OK with the counts (and the members when asked for), or a
 * negative XR_E*. */
typedef void (*xr_antenna_presence_cb)(void *arg, int rc, long long users,
                                       long long connections,
                                       const xr_antenna_member *members, size_t n);

typedef struct xr_antenna_ops {
    int abi;                   /* XR_ANTENNA_ABI */
    int minor;                 /* XR_ANTENNA_ABI_MINOR as the module was built */
    size_t size;               /* sizeof(xr_antenna_ops) as the module was built */
    const char *scheme;        /* URL scheme it serves: "memory", "redis" */
    const char *description;   /* one line for listings */

    /* Parses url ("redis://host:6379/0"), starts connecting (never waits
     * for it). On failure returns NULL with the reason in err. The host
     * struct stays valid until destroy(). */
    void *(*create)(struct event_base *base, const char *url,
                    const xr_antenna_host *host, char *err, size_t errlen);
    /* Unsubscribes, closes, frees. Every call still waiting for its
     * answer is called back before it returns (is_alive with "alive",
     * presence and history calls with XR_EANTENNA), so no caller's closure is lost;
     * no callback runs after it returns. */
    void (*destroy)(void *self);

    /* Subscriptions are per process: the host calls subscribe once for a
     * channel's first local receiver and unsubscribe after its last. */
    int (*subscribe)(void *self, const char *channel, size_t len);
    int (*unsubscribe)(void *self, const char *channel, size_t len);
    int (*publish)(void *self, const char *channel, size_t clen,
                   const char *msg, size_t mlen);

    /* Answers later, through done(alive, arg) on the loop, whether any node
     * still listens on the channel; returns an error instead of calling
     * done when the question cannot be asked now. */
    int (*is_alive)(void *self, const char *channel, size_t len,
                    xr_antenna_alive_cb done, void *arg);

    /* 1 while the broker connection is up. */
    int (*connected)(void *self);

    /* Checks a URL's syntax without connecting, so a bad --antenna flag is
     * refused before start-up. 0, or XR_EINVAL with the reason in err. */
    int (*check_url)(const char *url, char *err, size_t errlen);

    /* ---- minor 1: optional (NULL when not provided) ---- */

    /* One line on the broker connection for /health ("redis at h:6379,
     * 12 channels"), NUL-terminated in buf; returns its length. */
    size_t (*describe)(void *self, char *buf, size_t len);

    /* ---- minor 2: optional ---- */

    /* Calls each(arg, part) once per part of the broker, now, for /health
     * and /metrics. connected() stays 1 while any part is up. */
    void (*parts)(void *self, xr_antenna_part_cb each, void *arg);

    /* ---- minor 5: optional; presence (both or neither) ---- */

    /* Adds delta (+1 or -1) to this node's connections of user in room,
     * storing info (JSON text, may be NULL) on +1, atomically with the
     * count over every node, which done() receives. The module keeps its
     * node's members alive in the broker (refreshing them within
     * host->presence_ttl_ms) and removes those of nodes that stopped,
     * reporting each user so gone through host->presence_gone. */
    int (*presence_add)(void *self, const char *room, size_t rlen, const char *user,
                        size_t ulen, const char *info, size_t ilen, int delta,
                        xr_antenna_count_cb done, void *arg);
    /* The room's users and connections over every node, in one broker
     * round trip for the counts; with members, the list too. */
    int (*presence_get)(void *self, const char *room, size_t rlen, int members,
                        xr_antenna_presence_cb done, void *arg);

    /* ---- minor 6: optional; history (both or neither) ---- */

    /* Publishes like publish() and keeps the message in the channel's
     * history (the newest `keep` messages, none older than ttl_ms): the
     * next offset, the keeping and the delivery are one atomic step in the
     * broker, so the positions of concurrent publishers never interleave.
     * Every node's subscribers get it through host->message_at. */
    int (*publish_kept)(void *self, const char *channel, size_t clen, const char *msg,
                        size_t mlen, size_t keep, unsigned long long ttl_ms);
    /* Reads the newest `limit` messages with offsets after since and not
     * older than ttl_ms (the channel's setting), and the position now;
     * done() answers on the loop. The read sees every
     * message published after the subscriptions the host asked for before
     * the call took effect (a module whose subscribe completes later
     * reads after it has), so the host can merge it with the live stream
     * without a gap. */
    int (*history)(void *self, const char *channel, size_t clen, unsigned long long since,
                   size_t limit, unsigned long long ttl_ms, xr_antenna_history_cb done,
                   void *arg);

    /* ---- minor 7: optional ---- */

    /* publish_kept, and done() told the position the post was given, on
     * the loop, never inside this call; destroy() answers every one still
     * waiting with XR_EANTENNA. */
    int (*publish_kept_at)(void *self, const char *channel, size_t clen, const char *msg,
                           size_t mlen, size_t keep, unsigned long long ttl_ms,
                           xr_antenna_kept_cb done, void *arg);

    /* ---- minor 8: optional ---- */

    /* Nonzero when the module's offsets grow but not by one: Kafka's
     * partition offsets, which every channel of a partition shares. The
     * host then takes no jump in a live stream's offsets for a hole (such
     * a module keeps its live stream whole itself), counts what a
     * recovery missed by the messages history() returned rather than by
     * the difference of offsets (so history() sets complete only when v
     * holds every message after since), and asks for no more than the
     * channel's size. */
    int history_sparse;
} xr_antenna_ops;

/* Whether a module's table has an optional member (within its size and
 * set); the host's table the same way. */
#define XR_ANTENNA_HAS(ops, member) \
    ((ops)->size >= offsetof(xr_antenna_ops, member) + sizeof((ops)->member) && (ops)->member)
#define XR_ANTENNA_HOST_HAS(host, member) \
    ((host)->size >= offsetof(xr_antenna_host, member) + sizeof((host)->member) && (host)->member)

/* For a module that uses every host member this header declares: 0 when
 * the host has them all, else XR_EINVAL with the reason in err. Call it
 * first in create(). */
static inline int xr_antenna_host_complete(const xr_antenna_host *host, char *err, size_t errlen)
{
    if (XR_ANTENNA_HOST_HAS(host, names_free))
        return 0;
    snprintf(err, errlen, "this module needs a libxraptor with antenna ABI %d.%d or later",
             XR_ANTENNA_ABI, XR_ANTENNA_ABI_MINOR);
    return XR_EINVAL;
}

/* Wakes the loop through a descriptor from host->wakeup(): one byte, from
 * any thread. A full pipe means a wake-up is pending already. */
static inline void xr_antenna_wake(int fd)
{
    while (write(fd, "1", 1) < 0 && errno == EINTR)
        ;
}

/* The one symbol a module exports. */
typedef const xr_antenna_ops *(*xr_antenna_entry_fn)(void);
const xr_antenna_ops *xr_antenna_entry(void);

/* A module's table and its xr_antenna_entry(), from functions named as the
 * members (create, destroy, subscribe, unsubscribe, publish, is_alive,
 * connected, check_url): the scheme, the description, then any optional
 * members as designators:
 *   XR_ANTENNA_MODULE("redis", "Redis pub/sub", .describe = describe)
 * Built with -fvisibility=hidden, the entry stays the one visible symbol. */
#define XR_ANTENNA_MODULE(scheme_, ...)                                       \
    static const xr_antenna_ops xr_antenna_ops_ = {                          \
        .abi = XR_ANTENNA_ABI,                                               \
        .minor = XR_ANTENNA_ABI_MINOR,                                       \
        .size = sizeof(xr_antenna_ops),                                      \
        .scheme = scheme_,                                                   \
        .create = create,                                                    \
        .destroy = destroy,                                                  \
        .subscribe = subscribe,                                              \
        .unsubscribe = unsubscribe,                                          \
        .publish = publish,                                                  \
        .is_alive = is_alive,                                                \
        .connected = connected,                                              \
        .check_url = check_url,                                              \
        .description = __VA_ARGS__};                                         \
    __attribute__((visibility("default"))) const xr_antenna_ops *xr_antenna_entry(void) \
    {                                                                        \
        return &xr_antenna_ops_;                                             \
    }

#ifdef __cplusplus
}
#endif

#endif /* XRAPTOR_ANTENNA_H */
