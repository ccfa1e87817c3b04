/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Channel history on nats://, kept in one JetStream stream (see
 * history.c). cnats' JetStream calls block on a request to the server, so
 * they run on a worker thread of the module's own; answers come back to
 * the loop through a host wake-up, and every callback runs there.
 *
 * Subjects: a post with history goes to xr.k.c.NAME (xr.k.b.BASE64), the
 * stream's; once stored, the stream republishes it on xr.r.c.NAME
 * (xr.r.b.BASE64), which every node subscribes to with the channel.
 */
#ifndef XR_NATS_HISTORY_H
#define XR_NATS_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <nats/nats.h>
#include <xraptor/antenna.h>

#if XR_ANTENNA_ABI_MINOR >= 7
typedef struct nats_history nats_history;

/* The headers a kept message carries: its offset in the channel's
 * history, the history's epoch, and the stream sequence of the message
 * before it (0 for the first). */
#define NATS_HIST_OFFSET "Xr-Offset"
#define NATS_HIST_EPOCH "Xr-Epoch"
#define NATS_HIST_PREV "Xr-Prev"
#define NATS_HIST_EPOCH_MAX 64

/* Starts the worker and subscribes this node's sync subject, whose
 * messages go to on_sync (their body: a read's token, for
 * nats_history_synced() in the order they arrive among the channels'
 * messages). NULL (err says why) when a thread, a wake-up or the
 * subscription cannot be made. */
nats_history *nats_history_new(struct event_base *base, natsConnection *nc,
                               const xr_antenna_host *host, natsMsgHandler on_sync, void *arg,
                               char *err, size_t errlen);
/* Stops the worker (a call under way finishes first) and answers every
 * call with XR_EANTENNA: no callback runs after it returns. Before the
 * connection closes, so that the call under way is answered. */
void nats_history_stop(nats_history *h);
/* Stops it if still running and frees it; after the connection closed
 * (cnats 3.4 must not free a subscription its read loop may be using). */
void nats_history_free(nats_history *h);

/* publish_kept_at and history, on the channel's kept subject. */
int nats_history_post(nats_history *h, const char *subj, const char *msg, size_t mlen,
                      size_t keep, unsigned long long ttl_ms, xr_antenna_kept_cb done,
                      void *arg);
int nats_history_read(nats_history *h, const char *subj, unsigned long long since,
                      size_t limit, unsigned long long ttl_ms, xr_antenna_history_cb done,
                      void *arg);
/* A sync message came in live: every message the read of that token
 * returned has come in before it. */
void nats_history_synced(nats_history *h, uint64_t token);

/* A live message's position: 1 and its offset and epoch (valid while msg
 * is), 0 when it carries none, -1 when it is malformed. Offset 0 is the
 * epoch's opening mark, never a message. */
int nats_history_position(natsMsg *msg, unsigned long long *offset, const char **epoch,
                          size_t *elen);
#endif

#endif
