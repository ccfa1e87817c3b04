/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memory:// — the in-process broker. A message published here reaches the
 * subscribers of this process only, so it serves one node (and the tests);
 * several nodes need a broker antenna. It is loaded through the same dlopen
 * path as every other antenna and sees nothing of xraptor but the ABI.
 *
 * Delivery is deferred to the next loop iteration through one event: a
 * handler that publishes never re-enters the host from inside its own call,
 * and messages keep their publish order. Messages wait packed in one byte
 * queue, swapped with a second one while it is delivered: once both have
 * grown, publishing allocates nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <xraptor/antenna.h>

#define EXPORT __attribute__((visibility("default")))

/* One queued item, followed by its channel and message bytes. */
struct memory;

typedef struct item {
    xr_antenna_alive_cb alive_cb;   /* set: an is_alive answer, not a message */
    void *alive_arg;
    int alive;
    void (*answer)(struct memory *m, struct item *it);  /* set: a presence answer */
#if XR_ANTENNA_ABI_MINOR >= 5
    xr_antenna_count_cb count_cb;
    xr_antenna_presence_cb presence_cb;
#endif
    void *done_arg;
    long long count;
    int members;
    size_t clen, mlen;
} item;

typedef struct queue {
    char *p;
    size_t len, cap;
} queue;

typedef struct name {
    size_t len;
    char s[];
} name;

typedef struct memory {
    xr_antenna_host host;
#if XR_ANTENNA_ABI_MINOR >= 5
    /* Presence: room -> its users (a set: user -> struct pres_user). */
    xr_antenna_names *rooms;
#endif
    struct event *ev;
    queue q;                        /* filled by publish */
    queue run;                      /* being delivered */
    /* Subscribed channel names, sorted (length, then bytes) for bsearch. */
    name **subs;
    size_t n_subs, cap_subs;
} memory;

static int name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    if (al != bl)
        return al < bl ? -1 : 1;
    return memcmp(a, b, al);
}

/* Index of the channel, or where it would go (*found = 0). */
static size_t find(const memory *m, const char *ch, size_t len, int *found)
{
    size_t lo = 0, hi = m->n_subs;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(m->subs[mid]->s, m->subs[mid]->len, ch, len);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Items are padded to keep the next header aligned. */
static size_t item_size(size_t clen, size_t mlen)
{
    size_t n = sizeof(item) + clen + mlen;
    return (n + _Alignof(item) - 1) & ~(_Alignof(item) - 1);
}

static void run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    memory *m = arg;
    /* Take the queue as it is now; what handlers publish meanwhile waits for
     * the next round, so a publish loop cannot starve the server. */
    queue q = m->q;
    m->q = m->run;
    m->q.len = 0;
    m->run = q;
    for (size_t off = 0; off < q.len;) {
        item *it = (item *)(q.p + off);
        const char *data = (const char *)(it + 1);
        off += item_size(it->clen, it->mlen);
        if (it->answer) {
            it->answer(m, it);
        } else if (it->alive_cb) {
            it->alive_cb(it->alive, it->alive_arg);
        } else {
            int found;
            find(m, data, it->clen, &found);
            if (found)
                m->host.message(m->host.host, data, it->clen, data + it->clen, it->mlen);
        }
    }
    m->run.len = 0;
    /* One burst of huge messages must not pin its memory for good. */
    if (m->run.cap > (4u << 20)) {
        free(m->run.p);
        m->run = (queue){0};
    }
}

static item *enqueue(memory *m, size_t clen, size_t mlen)
{
    size_t n = item_size(clen, mlen);
    if (m->q.cap - m->q.len < n) {
        size_t cap = m->q.cap ? m->q.cap : 4096;
        while (cap - m->q.len < n)
            cap *= 2;
        char *p = realloc(m->q.p, cap);
        if (!p)
            return NULL;
        m->q.p = p;
        m->q.cap = cap;
    }
    item *it = (item *)(m->q.p + m->q.len);
    m->q.len += n;
    it->clen = clen;
    it->mlen = mlen;
    it->alive_cb = NULL;
    it->answer = NULL;
    event_active(m->ev, EV_TIMEOUT, 0);
    return it;
}

static int check_url(const char *url, char *err, size_t errlen)
{
    if (strcmp(url, "memory://") != 0 && strcmp(url, "memory:") != 0) {
        snprintf(err, errlen, "memory antenna takes no address: use 'memory://', not '%s'", url);
        return XR_EINVAL;
    }
    return 0;
}

static void *create(struct event_base *base, const char *url, const xr_antenna_host *host,
                    char *err, size_t errlen)
{
    if (check_url(url, err, errlen) < 0)
        return NULL;
    memory *m = calloc(1, sizeof *m);
    if (!m || !(m->ev = event_new(base, -1, 0, run, m))) {
        free(m);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->host = *host;
    return m;
}

#if XR_ANTENNA_ABI_MINOR >= 5
static void presence_free(memory *m);
#endif

static void destroy(void *self)
{
    memory *m = self;
#if XR_ANTENNA_ABI_MINOR >= 5
    presence_free(m);
#endif
    free(m->q.p);
    free(m->run.p);
    for (size_t i = 0; i < m->n_subs; i++)
        free(m->subs[i]);
    free(m->subs);
    event_free(m->ev);
    free(m);
}

static int subscribe(void *self, const char *ch, size_t len)
{
    memory *m = self;
    int found;
    size_t at = find(m, ch, len, &found);
    if (found)
        return 0;
    if (m->n_subs == m->cap_subs) {
        size_t cap = m->cap_subs ? m->cap_subs * 2 : 64;
        name **v = realloc(m->subs, cap * sizeof *v);
        if (!v)
            return XR_ENOMEM;
        m->subs = v;
        m->cap_subs = cap;
    }
    name *n = malloc(sizeof *n + len);
    if (!n)
        return XR_ENOMEM;
    n->len = len;
    memcpy(n->s, ch, len);
    memmove(m->subs + at + 1, m->subs + at, (m->n_subs - at) * sizeof *m->subs);
    m->subs[at] = n;
    m->n_subs++;
    return 0;
}

static int unsubscribe(void *self, const char *ch, size_t len)
{
    memory *m = self;
    int found;
    size_t at = find(m, ch, len, &found);
    if (!found)
        return 0;
    free(m->subs[at]);
    memmove(m->subs + at, m->subs + at + 1, (m->n_subs - at - 1) * sizeof *m->subs);
    m->n_subs--;
    return 0;
}

static int publish(void *self, const char *ch, size_t clen, const char *msg, size_t mlen)
{
    item *it = enqueue(self, clen, mlen);
    if (!it)
        return XR_ENOMEM;
    char *data = (char *)(it + 1);
    memcpy(data, ch, clen);
    if (mlen)
        memcpy(data + clen, msg, mlen);
    return 0;
}

/* In one process "anyone listening" is exactly "subscribed here". */
static int is_alive(void *self, const char *ch, size_t len, xr_antenna_alive_cb done, void *arg)
{
    memory *m = self;
    int found;
    find(m, ch, len, &found);
    item *it = enqueue(m, 0, 0);
    if (!it)
        return XR_ENOMEM;
    it->alive_cb = done;
    it->alive_arg = arg;
    it->alive = found;
    return 0;
}

#if XR_ANTENNA_ABI_MINOR >= 1
/* /health's line: what this node listens to. */
static size_t describe(void *self, char *buf, size_t len)
{
    memory *m = self;
    int n = snprintf(buf, len, "in-process, %zu channel(s) subscribed", m->n_subs);
    return n < 0 ? 0 : (size_t)n;
}
#endif

static int connected(void *self)
{
    (void)self;
    return 1;
}

/* ---- presence: one process, so the counts are this node's ------------ */
#if XR_ANTENNA_ABI_MINOR >= 5

typedef struct pres_user {
    long long conns;
    char *info;
    size_t ilen;
} pres_user;

typedef struct pres_room {
    xr_antenna_names *users;
    long long conns;
} pres_room;

static void room_free(xr_antenna_host *h, pres_room *r)
{
    xr_antenna_cursor c = {0};
    while (h->names_next(r->users, &c)) {
        pres_user *u = c.value;
        free(u->info);
        free(u);
    }
    h->names_free(r->users);
    free(r);
}

static void presence_free(memory *m)
{
    if (!m->rooms)
        return;
    xr_antenna_cursor c = {0};
    while (m->host.names_next(m->rooms, &c))
        room_free(&m->host, c.value);
    m->host.names_free(m->rooms);
    m->rooms = NULL;
}

static void count_answer(memory *m, item *it)
{
    (void)m;
    it->count_cb(it->done_arg, it->count);
}

/* Counted now, answered from the loop like every other delivery. */
static int presence_add(void *self, const char *room, size_t rlen, const char *user, size_t ulen,
                        const char *info, size_t ilen, int delta, xr_antenna_count_cb done,
                        void *arg)
{
    memory *m = self;
    xr_antenna_host *h = &m->host;
    if (!XR_ANTENNA_HOST_HAS(h, names_free) || (delta != 1 && delta != -1))
        return XR_EINVAL;
    if (!m->rooms && !(m->rooms = h->names_new()))
        return XR_ENOMEM;
    void **slot = h->names_find(m->rooms, room, rlen);
    pres_room *r = slot ? *slot : NULL;
    if (!r) {
        if (delta < 0)
            return XR_EINVAL;
        if (!(r = calloc(1, sizeof *r)) || !(r->users = h->names_new()) ||
            h->names_put(m->rooms, room, rlen, r) < 0) {
            if (r && r->users)
                h->names_free(r->users);
            free(r);
            return XR_ENOMEM;
        }
    }
    slot = h->names_find(r->users, user, ulen);
    pres_user *u = slot ? *slot : NULL;
    if (!u && delta < 0)
        return XR_EINVAL;
    item *it = enqueue(m, 0, 0);
    if (!it || (!u && (!(u = calloc(1, sizeof *u)) || h->names_put(r->users, user, ulen, u) < 0))) {
        if (it)
            m->q.len -= item_size(0, 0);
        if (!slot)
            free(u);
        return XR_ENOMEM;
    }
    if (delta > 0 && info) {
        char *copy = malloc(ilen ? ilen : 1);
        if (copy) {
            memcpy(copy, info, ilen);
            free(u->info);
            u->info = copy;
            u->ilen = ilen;
        }
    }
    u->conns += delta;
    r->conns += delta;
    it->answer = count_answer;
    it->count_cb = done;
    it->done_arg = arg;
    it->count = u->conns;
    if (!u->conns) {
        h->names_del(r->users, user, ulen);
        free(u->info);
        free(u);
    }
    if (!h->names_count(r->users)) {
        h->names_del(m->rooms, room, rlen);
        room_free(h, r);
    }
    return 0;
}

static void presence_answer(memory *m, item *it)
{
    xr_antenna_presence_cb done = it->presence_cb;
    const char *room = (const char *)(it + 1);
    void **slot = m->rooms ? m->host.names_find(m->rooms, room, it->clen) : NULL;
    pres_room *r = slot ? *slot : NULL;
    if (!r) {
        done(it->done_arg, XR_OK, 0, 0, NULL, 0);
        return;
    }
    size_t n = m->host.names_count(r->users), k = 0;
    xr_antenna_member *v = it->members && n ? calloc(n, sizeof *v) : NULL;
    if (it->members && n && !v) {
        done(it->done_arg, XR_ENOMEM, 0, 0, NULL, 0);
        return;
    }
    xr_antenna_cursor c = {0};
    while (v && m->host.names_next(r->users, &c) && k < n) {
        pres_user *u = c.value;
        v[k++] = (xr_antenna_member){c.name, c.len, u->conns, u->info, u->ilen};
    }
    done(it->done_arg, XR_OK, (long long)n, r->conns, v, k);
    free(v);
}

static int presence_get(void *self, const char *room, size_t rlen, int members,
                        xr_antenna_presence_cb done, void *arg)
{
    memory *m = self;
    item *it = enqueue(m, rlen, 0);
    if (!it)
        return XR_ENOMEM;
    memcpy(it + 1, room, rlen);
    it->answer = presence_answer;
    it->presence_cb = done;
    it->done_arg = arg;
    it->members = members;
    return 0;
}
#endif

static const xr_antenna_ops ops = {
    .abi = XR_ANTENNA_ABI,
    .minor = XR_ANTENNA_ABI_MINOR,
    .size = sizeof(xr_antenna_ops),
    .scheme = "memory",
    .description = "in-process broker: one node only",
    .create = create,
    .destroy = destroy,
    .subscribe = subscribe,
    .unsubscribe = unsubscribe,
    .publish = publish,
    .is_alive = is_alive,
    .connected = connected,
    .check_url = check_url,
#if XR_ANTENNA_ABI_MINOR >= 1
    .describe = describe,
#endif
#if XR_ANTENNA_ABI_MINOR >= 5
    .presence_add = presence_add,
    .presence_get = presence_get,
#endif
};

EXPORT const xr_antenna_ops *xr_antenna_entry(void)
{
    return &ops;
}
