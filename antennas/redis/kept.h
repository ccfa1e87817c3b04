/* SPDX-License-Identifier: Apache-2.0 */
/* Channel history in Redis, as both Redis modules keep it.
 *
 * Per channel C: a stream xr.h.C.s whose entry IDs are the offsets
 * ("<offset>-0", fields t: server time in ms, m: the message), trimmed to
 * the newest `keep` and expiring ttl after the last post; and a hash
 * xr.h.C.m with the epoch (e), the last offset given (o) and the
 * replication ID of the master that last wrote it (r: a replica promoted
 * over that master starts a new epoch, kept.c says why), which
 * outlives the stream (REDIS_KEPT_META_MS at least) so that a quiet
 * channel keeps its position after its messages expired. A post is one
 * script: the offset, the entry and the PUBLISH happen at once, so the
 * positions of concurrent publishers never interleave. The epoch is made
 * (from the node's id and Redis' clock) by whichever script first finds
 * no hash: a flushed, restarted-without-persistence or evicted history is
 * a new epoch, never old offsets read as new ones.
 *
 * The PUBLISH carries the position before the message:
 * "\0xr1 <offset> <epoch>\n<message>". A plain message never starts with
 * NUL (X-raptor messages are JSON text), so the two cannot be confused;
 * a Python X-raptor node on a channel with history would forward the
 * prefix to its clients, which is why history is off by default and
 * documented as xraptor-only per channel.
 */
#ifndef XR_REDIS_KEPT_H
#define XR_REDIS_KEPT_H

#include <stddef.h>

#include <xraptor/antenna.h>

#define REDIS_KEPT_MAGIC "\0xr1 "
#define REDIS_KEPT_MAGIC_LEN 5
#define REDIS_KEPT_EPOCH_MAX 64
/* The position's hash lives at least a day after the channel's last post. */
#define REDIS_KEPT_META_MS 86400000ULL

/* KEYS: stream, hash. ARGV: channel, message, keep, ttl_ms, epoch seed,
 * hash ttl_ms. Returns {offset, epoch}. The second publishes with
 * SPUBLISH (Redis Cluster: the keys must share the channel's slot). */
extern const char redis_kept_publish_lua[];
extern const size_t redis_kept_publish_lua_len;
extern const char redis_kept_spublish_lua[];
extern const size_t redis_kept_spublish_lua_len;
/* KEYS: stream, hash. ARGV: since, limit, ttl_ms, epoch seed, hash ttl_ms.
 * Returns {epoch, top, id1, msg1, id2, msg2, ...}, newest first. */
extern const char redis_kept_read_lua[];
extern const size_t redis_kept_read_lua_len;

typedef struct redis_kept_keys {
    char k[2][1100];
    size_t l[2];
} redis_kept_keys;

/* The channel's two keys: xr.h.C.s and xr.h.C.m, or with a tag
 * xr.h.{TAG}C.s and xr.h.{TAG}C.m, which hash to TAG's slot whatever
 * braces C holds. 0, or -1 when the name does not fit. */
int redis_kept_keys_of(const char *ch, size_t clen, const char *tag, redis_kept_keys *out);

/* A published body: 1 and its position and message when it carries one,
 * 0 for a plain message (msg/mlen the whole body), -1 when it starts like
 * one and is malformed (an offset that is not a number from 1, an epoch
 * empty, too long or of other bytes than [0-9a-zA-Z.:_-]). */
int redis_kept_parse(const char *body, size_t len, unsigned long long *offset,
                     const char **epoch, size_t *elen, const char **msg, size_t *mlen);

/* A decimal number as Redis returns it (digits, no sign, no leading
 * zero): 0 and *v, or -1. */
int redis_kept_number(const char *p, size_t len, unsigned long long *v);

/* An entry ID "<offset>-0" as Redis returns it: the offset, or 0. */
unsigned long long redis_kept_id(const char *id, size_t len);

/* Whether v[0..n), offsets oldest first and all after since, are every
 * message after since up to top. */
int redis_kept_complete(unsigned long long since, unsigned long long top,
                        unsigned long long oldest, size_t n);

/* History reads waiting for a subscriber connection's PONGs (below). */
typedef struct redis_kept_q redis_kept_q;
typedef struct redis_kept_fifo {
    redis_kept_q *head, *tail;
} redis_kept_fifo;

#if XR_ANTENNA_ABI_MINOR >= 6
/* A read's answer, held until the second PING says its messages came in
 * live: the messages oldest first, copied out of the reply. */
typedef struct redis_kept_read {
    unsigned long long since, top;
    size_t n, elen;
    xr_antenna_kept *v;
    char *epoch, *data;
} redis_kept_read;

/* Element i of a reply of either module's reader: its bytes when it is a
 * string, else NULL. */
typedef const char *(*redis_kept_str)(const void *reply, size_t i, size_t *len);

/* The read script's reply (nelem elements: epoch, top, then id and
 * message pairs newest first) taken into rd. 0; XR_EANTENNA for a reply of
 * another shape, an offset not after since or out of order; XR_ENOMEM. */
int redis_kept_take(redis_kept_read *rd, const void *reply, size_t nelem, redis_kept_str str);

/* Tells done what rd holds (complete when it is every message after
 * since), then frees what it held. */
void redis_kept_answer(redis_kept_read *rd, xr_antenna_history_cb done, void *arg);
void redis_kept_clear(redis_kept_read *rd);

/* A history read on its way, in both modules the same steps: a PING on
 * the subscriber connection (the channel's SUBSCRIBE is in effect once its
 * PONG is back), the read script on the command connection, a second PING
 * (every message the read returned has come in live once its PONG is
 * back), the answer. Each subscriber connection keeps its reads in the
 * order of its PINGs: a PONG is the head's. */
struct redis_kept_q {
    redis_kept_q *next;
    void *owner, *at;           /* the module's own: its state, where it reads */
    int read;                   /* the script answered: the second PING */
    xr_antenna_history_cb done;
    void *arg;
    unsigned long long ttl_ms;
    size_t limit;
    redis_kept_read rd;
    size_t clen;
    char ch[];
};

/* The token of the PINGs: a subscriber's PONG that carries it is a read's. */
#define REDIS_KEPT_SYNC "xr.sync"
#define REDIS_KEPT_SYNC_LEN 7

/* A read of ch after since, not yet queued; NULL when out of memory. */
redis_kept_q *redis_kept_q_new(void *owner, void *at, const char *ch, size_t clen,
                               unsigned long long since, size_t limit, unsigned long long ttl_ms,
                               xr_antenna_history_cb done, void *arg);
void redis_kept_push(redis_kept_fifo *f, redis_kept_q *q);
/* A PONG of the subscriber: the head read's, taken off. When it was the
 * second PING the read is answered and freed (NULL); else it is returned,
 * its script to be sent. */
redis_kept_q *redis_kept_synced(redis_kept_fifo *f);
/* Tells done rc (no messages) and frees q. */
void redis_kept_fail(redis_kept_q *q, int rc);
/* Every read queued, told XR_EANTENNA: their subscriber connection is gone. */
void redis_kept_fail_all(redis_kept_fifo *f);

/* The read script's arguments for q: argv/lens[0..10), EVAL to the
 * hash TTL, with the epoch seed (the node's id) and buffers of the
 * caller's. */
typedef struct redis_kept_args {
    const char *argv[10];
    size_t lens[10];
    char since[24], limit[24], ttl[24], meta[24];
} redis_kept_args;
void redis_kept_read_args(const redis_kept_q *q, const redis_kept_keys *k, const char *seed,
                          size_t seedlen, redis_kept_args *a);
#endif

/* A message the subscriber received, to the host: with its position
 * (message_at) when it carries one, as it is when it does not; one whose
 * position is malformed is dropped, counted in *malformed and logged
 * (the first, then one in a thousand: whoever can publish to the broker
 * could flood the log). */
void redis_kept_deliver(const xr_antenna_host *h, const char *who, unsigned long long *malformed,
                        const char *ch, size_t clen, const char *body, size_t len);

#endif
