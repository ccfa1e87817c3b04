/* SPDX-License-Identifier: Apache-2.0 */
/* What the host lends every antenna module (ABI minor 4): the clock, the
 * reconnect back-off, wake-ups from a client library's threads, and sets
 * of names under the keyed hash. Each module used to carry its own copy. */
#include "protocol/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "util/clock.h"
#include "util/hash.h"
#include "util/map.h"

struct xr_wakeup {
    struct xr_wakeup *next;
    int fd[2];
    struct event *ev;
    void (*fn)(void *arg);
    void *arg;
};

static void on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    xr_wakeup *w = arg;
    char buf[256];
    /* Every byte written so far is served by this one call. */
    while (read(fd, buf, sizeof buf) > 0)
        ;
    w->fn(w->arg);
}

int xr_wakeup_new(struct event_base *base, xr_wakeup **list, void (*fn)(void *), void *arg)
{
    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    xr_wakeup *w = calloc(1, sizeof *w);
    if (!w) {
        errno = ENOMEM;
        return -1;
    }
    w->fn = fn;
    w->arg = arg;
    if (pipe2(w->fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(w);
        return -1;
    }
    if (!(w->ev = event_new(base, w->fd[0], EV_READ | EV_PERSIST, on_wakeup, w)) ||
        event_add(w->ev, NULL) != 0) {
        if (w->ev)
            event_free(w->ev);
        close(w->fd[0]);
        close(w->fd[1]);
        free(w);
        errno = ENOMEM;
        return -1;
    }
    w->next = *list;
    *list = w;
    return w->fd[1];
}

void xr_wakeups_free(xr_wakeup **list)
{
    for (xr_wakeup *w = *list, *next; w; w = next) {
        next = w->next;
        event_free(w->ev);
        close(w->fd[0]);
        close(w->fd[1]);
        free(w);
    }
    *list = NULL;
}

/* ---- clock and back-off --------------------------------------------------- */

static unsigned long long host_now_ms(void)
{
    return xr_now_ms();
}

static unsigned host_backoff(unsigned *state, unsigned min_ms, unsigned max_ms)
{
    static unsigned counter;
    unsigned d = *state < min_ms ? min_ms : *state > max_ms ? max_ms : *state;
    *state = d > max_ms / 2 ? max_ms : d * 2;
    /* Up to a quarter off, from the keyed hash of a counter: unpredictable
     * enough to spread nodes, and no state of its own to seed. */
    counter++;
    unsigned quarter = d / 4;
    return quarter ? d - (unsigned)(xr_hash(&counter, sizeof counter) % (quarter + 1)) : d;
}

/* ---- sets of names ------------------------------------------------------- */

struct xr_antenna_names {
    xr_map map;
};

static xr_antenna_names *names_new(void)
{
    xr_antenna_names *s = malloc(sizeof *s);
    if (s)
        xr_map_init(&s->map);
    return s;
}

static void **names_find(const xr_antenna_names *s, const char *name, size_t len)
{
    xr_map_entry *e = xr_map_find(&s->map, name, len);
    return e ? &e->value : NULL;
}

static int names_put(xr_antenna_names *s, const char *name, size_t len, void *value)
{
    return xr_map_put(&s->map, name, len, value) ? XR_OK : XR_ENOMEM;
}

static void *names_del(xr_antenna_names *s, const char *name, size_t len)
{
    return xr_map_del(&s->map, name, len);
}

static size_t names_count(const xr_antenna_names *s)
{
    return s->map.count;
}

/* c->at is the entry the next step returns (found before the current one
 * is handed out, so that the caller may delete the current one). */
static int names_next(const xr_antenna_names *s, xr_antenna_cursor *c)
{
    const xr_map *m = &s->map;
    const xr_map_entry *e = c->at;
    if (!e) {
        while (c->slot < m->n_slots && !(e = m->slots[c->slot]))
            c->slot++;
        if (!e)
            return 0;
    }
    c->name = e->key;
    c->len = e->klen;
    c->value = e->value;
    c->at = e->next;
    if (!e->next)
        c->slot++;
    return 1;
}

static void names_free(xr_antenna_names *s)
{
    if (s) {
        xr_map_clear(&s->map);
        free(s);
    }
}

void xr_antenna_host_services(xr_antenna_host *h)
{
    h->now_ms = host_now_ms;
    h->backoff = host_backoff;
    h->names_new = names_new;
    h->names_find = names_find;
    h->names_put = names_put;
    h->names_del = names_del;
    h->names_count = names_count;
    h->names_next = names_next;
    h->names_free = names_free;
}
