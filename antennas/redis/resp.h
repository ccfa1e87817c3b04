/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RESP2 as redis-cluster:// reads it, and Redis Cluster's key slots: pure
 * (bytes in, values out, no I/O), so a fuzzer and unit tests can feed it
 * whatever a broker might send.
 */
#ifndef XR_REDIS_RESP_H
#define XR_REDIS_RESP_H

#include <stddef.h>
#include <stdint.h>

#define RESP_SLOTS 16384

/* A reply value. Values are laid out in pre-order: an array's elements
 * follow it. Strings point into the parsed bytes. */
typedef struct resp_val {
    char type;                  /* + - : $ *, or 0 for a null */
    const char *s;              /* + - $: the text */
    int64_t n;                  /* + - $: its length; *: elements; :: the value */
} resp_val;

/* The values of the last reply, reused from reply to reply. */
typedef struct resp_reader {
    resp_val *vals;
    size_t cap;
} resp_reader;

/* One whole reply from p[0, len) into r->vals: the bytes it took (nvals
 * values), 0 when more bytes are needed, -1 when they are not RESP or out
 * of memory. Nesting deeper than 8, bulk strings over 512 MiB and arrays
 * over 2^20 elements are refused. */
long resp_parse(resp_reader *r, const char *p, size_t len, size_t *nvals);
void resp_reader_free(resp_reader *r);
/* The index just past value i and its elements. */
size_t resp_skip(const resp_val *v, size_t i);
/* Whether v is the simple or bulk string s. */
int resp_is(const resp_val *v, const char *s);
/* Decimal digits with an optional '-' between p and end. */
int resp_int(const char *p, const char *end, int64_t *out);

/* The hash slot of a key or channel: CRC16 (XMODEM) mod 16384 of the name,
 * or of the part inside its first {...} when that part is not empty. */
uint16_t resp_key_slot(const char *name, size_t len);

/* The ranges of a CLUSTER SLOTS reply, [[start, end, [host, port, ...],
 * replicas...], ...]: each(arg, start, end, host, hlen, port) for each, in
 * order (host may be empty: "the node asked"). 0, or -1 for a reply of
 * another shape or out of range (each may have run for earlier ranges). */
typedef int (*resp_range_fn)(void *arg, int start, int end, const char *host, size_t hlen,
                             int port);
int resp_slot_ranges(const resp_val *v, size_t nv, resp_range_fn each, void *arg);

/* An error reply "MOVED <slot> <host>:<port>" (*ask 0) or "ASK ..." (*ask
 * 1): 0 with its parts (host may be empty: "the node that answered"), or
 * -1 for any other text. */
int resp_redirect(const resp_val *err, int *ask, uint16_t *slot, const char **host, size_t *hlen,
                  int *port);

#endif
