/* SPDX-License-Identifier: Apache-2.0 */
/*
 * New connections per client address and second, for the whole server
 * however many worker processes it has (--max-connections-per-ip-rate).
 * One table in a shared anonymous mapping made before the workers fork;
 * each address has a token bucket in one 64-bit word (tokens in
 * thousandths, and the millisecond it was brought up to date) that every
 * worker updates with compare-and-swap: no lock, so no process can die
 * holding one. A slot belongs to an address's keyed hash; a slot whose
 * bucket is full again (untouched for a second's worth) is as good as free
 * and is taken over. When every slot an address may use is held by
 * addresses seen this second (a spray of addresses), it is let in and
 * counted as untracked: the limit is for one address that hammers, and
 * failing closed would turn such a spray against everyone.
 */
#ifndef XR_UTIL_IPRATE_H
#define XR_UTIL_IPRATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct xr_iprate xr_iprate;

/* rate new connections a second per address, bursts of burst (both 1 to
 * 16000). NULL when out of memory. */
xr_iprate *xr_iprate_new(unsigned rate, unsigned burst);
void xr_iprate_free(xr_iprate *r);

enum { XR_IPRATE_REFUSED = 0, XR_IPRATE_TAKEN = 1, XR_IPRATE_UNTRACKED = 2 };
/* One more connection from addr (4 or 16 bytes) at now_ms (the monotonic
 * clock): XR_IPRATE_TAKEN, XR_IPRATE_REFUSED, or XR_IPRATE_UNTRACKED (let
 * in: no slot free for it). */
int xr_iprate_take(xr_iprate *r, const void *addr, size_t alen, uint64_t now_ms);

#endif
