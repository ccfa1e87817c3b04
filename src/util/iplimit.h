/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sockets per client address, counted for the whole server however many
 * worker processes it has (--max-connections-per-ip). The counts live in
 * one shared anonymous mapping made before the workers fork: a table per
 * worker that only that worker writes, read by all under a sequence lock,
 * so accepting never waits on a lock another process could die holding.
 * A dead worker's table is emptied by the supervisor (its sockets died
 * with it). A take counts the socket first and then sums every table, so
 * workers accepting the same address at the same instant see each other
 * and the limit is never passed; at the edge both may refuse. A table
 * whose writer stays inside a change (preempted, or died there until the
 * supervisor empties it) cannot be read: takes are refused meanwhile.
 */
#ifndef XR_UTIL_IPLIMIT_H
#define XR_UTIL_IPLIMIT_H

#include <stddef.h>

typedef struct xr_iplimit xr_iplimit;

/* Room for the addresses of `sockets` sockets per worker, `workers`
 * tables. NULL when out of memory. */
xr_iplimit *xr_iplimit_new(size_t sockets, unsigned workers);
void xr_iplimit_free(xr_iplimit *l);
/* One more socket from addr (4 or 16 bytes) in worker's table, unless
 * the whole server holds max from it already: 1 taken, 0 refused. */
int xr_iplimit_take(xr_iplimit *l, unsigned worker, const void *addr, size_t alen,
                    unsigned max);
/* That socket closed. */
void xr_iplimit_put(xr_iplimit *l, unsigned worker, const void *addr, size_t alen);
/* Sockets from addr over all workers. */
unsigned xr_iplimit_count(const xr_iplimit *l, const void *addr, size_t alen);
/* Worker's sockets are gone (it died): its table is emptied. */
void xr_iplimit_reset(xr_iplimit *l, unsigned worker);

#endif
