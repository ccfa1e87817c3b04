/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The live channels of a Redis antenna: a chained hash set, kept so that
 * every channel can be subscribed again after a reconnect (redis://) or on
 * the shard that owns it now (redis-cluster://).
 */
#ifndef XR_REDIS_CHANSET_H
#define XR_REDIS_CHANSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct chan {
    struct chan *next;
    uint32_t hash;
    uint16_t slot;           /* redis-cluster: its hash slot */
    void *at;                /* redis-cluster: the node it is subscribed on */
    size_t len;
    char name[];
} chan;

/* The host's keyed hash (xr_antenna_host.hash): names come from peers. */
typedef unsigned long long (*chanset_hash_fn)(const void *data, size_t len);

typedef struct chanset {
    chan **buckets;
    size_t n_buckets, count;
    chanset_hash_fn hash;
} chanset;

int chanset_init(chanset *s, chanset_hash_fn hash);
void chanset_free(chanset *s);
chan *chanset_find(const chanset *s, const char *name, size_t len);
/* The channel, *fresh set when it was not there; NULL when out of memory. */
chan *chanset_add(chanset *s, const char *name, size_t len, int *fresh);
void chanset_del(chanset *s, const char *name, size_t len);

#define CHANSET_EACH(s, c)                                   \
    for (size_t _b = 0; _b < (s)->n_buckets; _b++)           \
        for (chan *c = (s)->buckets[_b]; c; c = c->next)

#endif
