/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The keyed hash of every map whose keys a peer chooses (channels, rooms,
 * members, client addresses), and of the antennas' name sets through the
 * host table: SipHash (Aumasson and Bernstein) with a secret key drawn
 * from the kernel once per process, so nobody outside can make names
 * collide on purpose and turn a map into a list.
 */
#ifndef XR_UTIL_HASH_H
#define XR_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-c-d of data under key k (16 bytes): the reference algorithm,
 * for the unit test against the published vectors. */
uint64_t xr_siphash(const uint8_t k[16], unsigned c, unsigned d, const void *data, size_t len);

/* SipHash-1-3 under this process's secret key (made on first use; a
 * forked worker keeps its parent's). */
uint64_t xr_hash(const void *data, size_t len);

#endif
