/* SPDX-License-Identifier: Apache-2.0 */
/* A small string-keyed hash map (separate chaining, a keyed SipHash, doubling). Keys
 * are byte strings with a length; the map copies them. */
#ifndef XR_MAP_H
#define XR_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct xr_map_entry {
    struct xr_map_entry *next;
    void *value;
    uint32_t hash;
    uint32_t klen;
    char key[];   /* NUL-terminated copy */
} xr_map_entry;

typedef struct xr_map {
    xr_map_entry **slots;
    size_t n_slots;
    size_t count;
} xr_map;

void xr_map_init(xr_map *m);
/* Frees the entries (not the values). */
void xr_map_clear(xr_map *m);
void *xr_map_get(const xr_map *m, const char *key, size_t klen);
/* The entry of key, or NULL: its value may be changed in place. */
xr_map_entry *xr_map_find(const xr_map *m, const char *key, size_t klen);
/* Inserts or replaces; returns the entry (its key is stable) or NULL. */
xr_map_entry *xr_map_put(xr_map *m, const char *key, size_t klen, void *value);
/* Removes; returns the old value or NULL. */
void *xr_map_del(xr_map *m, const char *key, size_t klen);

/* Iteration: for (e = xr_map_first(m, &i); e; e = xr_map_next(m, e, &i)).
 * The current entry may be deleted only after moving past it. */
xr_map_entry *xr_map_first(const xr_map *m, size_t *it);
xr_map_entry *xr_map_next(const xr_map *m, const xr_map_entry *e, size_t *it);

#endif
