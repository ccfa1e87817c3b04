/* SPDX-License-Identifier: Apache-2.0 */
#include "util/map.h"

#include "util/hash.h"

#include <xraptor/errors.h>

#include <stdlib.h>
#include <string.h>

/* Keys are names a peer chose: the keyed hash keeps them from colliding
 * on purpose (util/hash.h). */
static uint32_t hash(const char *k, size_t n)
{
    uint64_t h = xr_hash(k, n);
    return (uint32_t)(h ^ h >> 32);
}

void xr_map_init(xr_map *m)
{
    m->slots = NULL;
    m->n_slots = 0;
    m->count = 0;
}

void xr_map_clear(xr_map *m)
{
    for (size_t i = 0; i < m->n_slots; i++) {
        xr_map_entry *e = m->slots[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(m->slots);
    xr_map_init(m);
}

static xr_map_entry **find(const xr_map *m, const char *key, size_t klen, uint32_t h)
{
    if (!m->n_slots)
        return NULL;
    xr_map_entry **p = &m->slots[h & (m->n_slots - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == h && (*p)->klen == klen && memcmp((*p)->key, key, klen) == 0)
            return p;
    return p;
}

xr_map_entry *xr_map_find(const xr_map *m, const char *key, size_t klen)
{
    xr_map_entry **p = find(m, key, klen, hash(key, klen));
    return p ? *p : NULL;
}

void *xr_map_get(const xr_map *m, const char *key, size_t klen)
{
    xr_map_entry *e = xr_map_find(m, key, klen);
    return e ? e->value : NULL;
}

static int grow(xr_map *m)
{
    size_t n = m->n_slots ? m->n_slots * 2 : 16;
    xr_map_entry **slots = calloc(n, sizeof *slots);
    if (!slots)
        return XR_ENOMEM;
    for (size_t i = 0; i < m->n_slots; i++) {
        xr_map_entry *e = m->slots[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n;
    return 0;
}

xr_map_entry *xr_map_put(xr_map *m, const char *key, size_t klen, void *value)
{
    if (klen > UINT32_MAX)
        return NULL;
    uint32_t h = hash(key, klen);
    xr_map_entry **p = find(m, key, klen, h);
    if (p && *p) {
        (*p)->value = value;
        return *p;
    }
    if (m->count + 1 > m->n_slots * 3 / 4) {
        if (grow(m) < 0)
            return NULL;
    }
    xr_map_entry *e = malloc(sizeof *e + klen + 1);
    if (!e)
        return NULL;
    e->hash = h;
    e->klen = (uint32_t)klen;
    e->value = value;
    memcpy(e->key, key, klen);
    e->key[klen] = '\0';
    e->next = m->slots[h & (m->n_slots - 1)];
    m->slots[h & (m->n_slots - 1)] = e;
    m->count++;
    return e;
}

void *xr_map_del(xr_map *m, const char *key, size_t klen)
{
    xr_map_entry **p = find(m, key, klen, hash(key, klen));
    if (!p || !*p)
        return NULL;
    xr_map_entry *e = *p;
    void *v = e->value;
    *p = e->next;
    free(e);
    m->count--;
    return v;
}

xr_map_entry *xr_map_first(const xr_map *m, size_t *it)
{
    for (*it = 0; *it < m->n_slots; (*it)++)
        if (m->slots[*it])
            return m->slots[*it];
    return NULL;
}

xr_map_entry *xr_map_next(const xr_map *m, const xr_map_entry *e, size_t *it)
{
    if (e->next)
        return e->next;
    for ((*it)++; *it < m->n_slots; (*it)++)
        if (m->slots[*it])
            return m->slots[*it];
    return NULL;
}
