/* SPDX-License-Identifier: Apache-2.0 */
#include "chanset.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash(const chanset *s, const char *name, size_t n)
{
    unsigned long long h = s->hash(name, n);
    return (uint32_t)(h ^ h >> 32);
}

int chanset_init(chanset *s, chanset_hash_fn fn)
{
    s->hash = fn;
    s->count = 0;
    s->buckets = calloc(64, sizeof *s->buckets);
    s->n_buckets = s->buckets ? 64 : 0;
    return s->buckets ? 0 : -1;
}

void chanset_free(chanset *s)
{
    for (size_t i = 0; i < s->n_buckets; i++)
        for (chan *c = s->buckets[i], *next; c; c = next) {
            next = c->next;
            free(c);
        }
    free(s->buckets);
    s->buckets = NULL;
    s->n_buckets = s->count = 0;
}

static chan **find(const chanset *s, const char *name, size_t len, uint32_t h)
{
    chan **p = &s->buckets[h % s->n_buckets];
    while (*p && !((*p)->hash == h && (*p)->len == len && memcmp((*p)->name, name, len) == 0))
        p = &(*p)->next;
    return p;
}

chan *chanset_find(const chanset *s, const char *name, size_t len)
{
    return *find(s, name, len, hash(s, name, len));
}

chan *chanset_add(chanset *s, const char *name, size_t len, int *fresh)
{
    uint32_t h = hash(s, name, len);
    chan *c = *find(s, name, len, h);
    *fresh = 0;
    if (c)
        return c;
    if (s->count >= s->n_buckets) {
        size_t n = s->n_buckets * 2;
        chan **b = calloc(n, sizeof *b);
        if (!b)
            return NULL;
        for (size_t i = 0; i < s->n_buckets; i++)
            for (chan *x = s->buckets[i], *next; x; x = next) {
                next = x->next;
                x->next = b[x->hash % n];
                b[x->hash % n] = x;
            }
        free(s->buckets);
        s->buckets = b;
        s->n_buckets = n;
    }
    c = calloc(1, sizeof *c + len);
    if (!c)
        return NULL;
    c->hash = h;
    c->len = len;
    memcpy(c->name, name, len);
    chan **p = &s->buckets[h % s->n_buckets];
    c->next = *p;
    *p = c;
    s->count++;
    *fresh = 1;
    return c;
}

void chanset_del(chanset *s, const char *name, size_t len)
{
    chan **p = find(s, name, len, hash(s, name, len));
    if (*p) {
        chan *c = *p;
        *p = c->next;
        free(c);
        s->count--;
    }
}
