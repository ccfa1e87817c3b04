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

/* Bounds on one reply: bytes (a bulk string included), values, nesting. */
#define RESP_MAX_REPLY (64u << 20)
#define RESP_MAX_VALUES (1u << 20)
#define RESP_MAX_DEPTH 8        /* CLUSTER SLOTS needs 3 */

/* A reply value. Values are laid out in pre-order: an array's elements
 * follow it. Strings point into the parsed bytes. */
typedef struct resp_val {
    char type;                  /* + - : $ *, or 0 for a null */
    const char *s;              /* + - $: the text */
    int64_t n;                  /* + - $: its length; *: elements; :: the value */
    size_t off;                 /* s as an offset from the reply's start */
} resp_val;

/* The values of the last reply, reused from reply to reply, and how far a
 * reply not yet whole was read: one reader per connection. */
typedef struct resp_reader {
    resp_val *vals;
    size_t cap;
    size_t pos, nv;             /* the reply in progress: bytes and values read */
    size_t scan;                /* its next line's end not before this offset */
    int depth;
    int64_t left[RESP_MAX_DEPTH];
} resp_reader;

/* One whole reply from p[0, len) into r->vals: the bytes it took (nvals
 * values), 0 when more bytes are needed, -1 when they are not RESP, break
 * a bound above, or memory ran out. After 0, call again with the same
 * reply's bytes (p may have moved) and more of them: parsing goes on
 * where it stopped. */
long resp_parse(resp_reader *r, const char *p, size_t len, size_t *nvals);
/* Forgets a reply in progress (a new connection). */
void resp_reader_reset(resp_reader *r);
void resp_reader_free(resp_reader *r);
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
