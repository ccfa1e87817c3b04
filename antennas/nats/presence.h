/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Presence on nats://, kept in a JetStream key-value bucket (see
 * presence.c). cnats' key-value calls block on a request to the server, so
 * they run on a worker thread of the module's own; answers come back to
 * the loop through a host wake-up, and every callback runs there.
 */
#ifndef XR_NATS_PRESENCE_H
#define XR_NATS_PRESENCE_H

#include <stddef.h>

#include <event2/event.h>
#include <nats/nats.h>
#include <xraptor/antenna.h>

typedef struct nats_presence nats_presence;

/* Starts the worker and the refresh timer: NULL (err says why) when the
 * host keeps no presence or a thread or a wake-up cannot be made. */
nats_presence *nats_presence_new(struct event_base *base, natsConnection *nc,
                                 const xr_antenna_host *host, char *err, size_t errlen);
/* Joins the worker and the beat (a call under way finishes first): no
 * request of theirs is in flight after it returns. */
void nats_presence_stop(nats_presence *p);
/* Stops them if still running; every call is answered, no callback runs
 * after it returns. */
void nats_presence_free(nats_presence *p);

/* The antenna ops (xraptor/antenna.h), answered later on the loop. */
int nats_presence_add(nats_presence *p, const char *room, size_t rlen, const char *user,
                      size_t ulen, const char *info, size_t ilen, int delta,
                      xr_antenna_count_cb done, void *arg);
int nats_presence_get(nats_presence *p, const char *room, size_t rlen, int members,
                      xr_antenna_presence_cb done, void *arg);

#endif
