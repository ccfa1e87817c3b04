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
#include <time.h>

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
#if XR_ANTENNA_ABI_MINOR >= 6
    xr_antenna_history_cb history_cb;
#endif
#if XR_ANTENNA_ABI_MINOR >= 7
    xr_antenna_kept_cb kept_cb;     /* a kept message whose poster wants its position */
#endif
    void *done_arg;
    long long count;
    int members;
    unsigned long long offset;      /* a kept message's position; 0: none */
    struct kept_ring *ring;         /* where a kept message goes when delivered */
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
#if XR_ANTENNA_ABI_MINOR >= 6
    /* History: channel -> struct kept_ring; the epoch is new each start,
     * since nothing of it outlives the process. */
    xr_antenna_names *kept;
    char epoch[17];
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

#if XR_ANTENNA_ABI_MINOR >= 6
struct kept_ring;
static void keep_now(struct memory *m, struct kept_ring *r, const char *msg, size_t mlen,
                     unsigned long long offset, unsigned long long ttl_ms);
#endif

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
#if XR_ANTENNA_ABI_MINOR >= 6
            if (it->ring)
                keep_now(m, it->ring, data + it->clen, it->mlen, it->offset,
                         (unsigned long long)it->count);
#endif
#if XR_ANTENNA_ABI_MINOR >= 7
            if (it->kept_cb)
                it->kept_cb(it->done_arg, 0, it->offset, m->epoch, strlen(m->epoch));
#endif
            int found;
            find(m, data, it->clen, &found);
            if (!found)
                continue;
#if XR_ANTENNA_ABI_MINOR >= 6
            if (it->offset) {
                m->host.message_at(m->host.host, data, it->clen, data + it->clen, it->mlen,
                                   it->offset, m->epoch, strlen(m->epoch));
                continue;
            }
#endif
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
    it->offset = 0;
    it->ring = NULL;
#if XR_ANTENNA_ABI_MINOR >= 5
    it->count_cb = NULL;
    it->presence_cb = NULL;
#endif
#if XR_ANTENNA_ABI_MINOR >= 6
    it->history_cb = NULL;
#endif
#if XR_ANTENNA_ABI_MINOR >= 7
    it->kept_cb = NULL;
#endif
    event_active(m->ev, EV_TIMEOUT, 0);
    return it;
}

#if XR_ANTENNA_ABI_MINOR >= 5
/* A question about one name, answered from the loop by answer() with
 * arg, like every other call: the caller sets its callback and fields. */
static item *enqueue_question(memory *m, const char *key, size_t len,
                              void (*answer)(memory *m, item *it), void *arg)
{
    item *it = enqueue(m, len, 0);
    if (!it)
        return NULL;
    memcpy(it + 1, key, len);
    it->answer = answer;
    it->done_arg = arg;
    return it;
}
#endif

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
#if XR_ANTENNA_ABI_MINOR >= 6
    unsigned long long t = host->now_ms ? host->now_ms() : 0;
    snprintf(m->epoch, sizeof m->epoch, "%016llx",
             (host->hash ? host->hash(&m, sizeof m) : 0) ^ (t << 20) ^ (unsigned long long)time(NULL));
#endif
    return m;
}

#if XR_ANTENNA_ABI_MINOR >= 5
static void presence_free(memory *m);
#endif
#if XR_ANTENNA_ABI_MINOR >= 6
static void history_free(memory *m);
#endif

/* The answers still queued are given, cut short: no caller's closure is
 * lost (the ABI's rule for destroy). */
static void answer_pending(memory *m)
{
    queue q = m->q;
    m->q = (queue){0};
    for (size_t off = 0; off < q.len;) {
        item *it = (item *)(q.p + off);
        off += item_size(it->clen, it->mlen);
        if (it->alive_cb)
            it->alive_cb(1, it->alive_arg);
#if XR_ANTENNA_ABI_MINOR >= 5
        else if (it->answer && it->count_cb)
            it->count_cb(it->done_arg, XR_EANTENNA);
        else if (it->answer && it->presence_cb)
            it->presence_cb(it->done_arg, XR_EANTENNA, 0, 0, NULL, 0);
#endif
#if XR_ANTENNA_ABI_MINOR >= 6
        else if (it->answer && it->history_cb)
            it->history_cb(it->done_arg, XR_EANTENNA, NULL, 0, 0, 0, m->epoch, strlen(m->epoch));
#endif
#if XR_ANTENNA_ABI_MINOR >= 7
        else if (it->kept_cb)
            it->kept_cb(it->done_arg, XR_EANTENNA, 0, NULL, 0);
#endif
    }
    free(q.p);
}

static void destroy(void *self)
{
    memory *m = self;
    answer_pending(m);
#if XR_ANTENNA_ABI_MINOR >= 5
    presence_free(m);
#endif
#if XR_ANTENNA_ABI_MINOR >= 6
    history_free(m);
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
    item *it = enqueue_question(self, room, rlen, presence_answer, arg);
    if (!it)
        return XR_ENOMEM;
    it->presence_cb = done;
    it->members = members;
    return 0;
}
#endif

/* ---- history: a ring per channel, in the process ---------------------- */
#if XR_ANTENNA_ABI_MINOR >= 6

typedef struct kept_msg {
    unsigned long long offset, at_ms;
    char *msg;
    size_t mlen, cap;               /* the buffer stays for the next message */
} kept_msg;

typedef struct kept_ring {
    unsigned long long top;         /* offset of the newest message delivered */
    unsigned long long next;        /* offset of the newest message published */
    kept_msg *v;                    /* the ring: v[(first + i) % size] */
    size_t size, first, n;
} kept_ring;

static void history_free(memory *m)
{
    if (!m->kept)
        return;
    xr_antenna_cursor c = {0};
    while (m->host.names_next(m->kept, &c)) {
        kept_ring *r = c.value;
        for (size_t i = 0; i < r->size; i++)
            free(r->v[i].msg);
        free(r->v);
        free(r);
    }
    m->host.names_free(m->kept);
    m->kept = NULL;
}

/* Messages past their time go from the old end. */
static void expire(kept_ring *r, unsigned long long now, unsigned long long ttl_ms)
{
    while (r->n && now - r->v[r->first].at_ms >= ttl_ms) {
        r->first = (r->first + 1) % r->size;
        r->n--;
    }
}

static kept_ring *ring_of(memory *m, const char *ch, size_t clen, size_t keep)
{
    xr_antenna_host *h = &m->host;
    if (!m->kept && !(m->kept = h->names_new()))
        return NULL;
    void **slot = h->names_find(m->kept, ch, clen);
    kept_ring *r = slot ? *slot : NULL;
    if (r && r->size != keep) {
        /* The channel's setting changed: the newest messages move to a
         * ring of the new size, the offsets go on. */
        kept_msg *v = calloc(keep, sizeof *v);
        if (!v)
            return NULL;
        size_t n = r->n < keep ? r->n : keep;
        for (size_t i = 0; i < r->size; i++) {
            size_t age = (i + r->size - r->first) % r->size;    /* 0: oldest */
            if (age < r->n && age >= r->n - n)
                v[age - (r->n - n)] = r->v[i];
            else
                free(r->v[i].msg);
        }
        free(r->v);
        r->v = v;
        r->size = keep;
        r->first = 0;
        r->n = n;
        return r;
    }
    if (r)
        return r;
    if (!(r = calloc(1, sizeof *r)) || !(r->v = calloc(keep, sizeof *r->v)) ||
        h->names_put(m->kept, ch, clen, r) < 0) {
        if (r)
            free(r->v);
        free(r);
        return NULL;
    }
    r->size = keep;
    return r;
}

/* A message's turn in the ring. Without memory for it the ring empties
 * rather than keep a hole: a reader behind it is then told "not
 * recovered" instead of being handed a gap. */
static void keep_now(memory *m, kept_ring *r, const char *msg, size_t mlen,
                     unsigned long long offset, unsigned long long ttl_ms)
{
    unsigned long long now = m->host.now_ms();
    expire(r, now, ttl_ms);
    r->top = offset;
    kept_msg *k = &r->v[(r->first + r->n) % r->size];
    size_t want = mlen ? mlen : 1;
    /* Grown to fit, or shrunk so one huge message does not pin its size
     * in every later slot. */
    if (!k->msg || k->cap < mlen || k->cap > 4 * (mlen + 256)) {
        char *p = realloc(k->msg, want);
        if (!p) {
            r->n = 0;
            return;
        }
        k->msg = p;
        k->cap = want;
    }
    memcpy(k->msg, msg, mlen);
    k->mlen = mlen;
    k->offset = offset;
    k->at_ms = now;
    if (r->n == r->size)
        r->first = (r->first + 1) % r->size;
    else
        r->n++;
}

/* The offset is taken at publish (in one process that is the atomic
 * step) and the message kept when it is delivered: a history read queued
 * between the two must not hand out what is still on its way, or the
 * reader would get it twice, read and then live. */
static item *kept_item(memory *m, const char *ch, size_t clen, const char *msg, size_t mlen,
                       size_t keep, unsigned long long ttl_ms, int *rc)
{
    *rc = XR_EINVAL;
    if (!keep || !ttl_ms || !XR_ANTENNA_HOST_HAS(&m->host, names_free))
        return NULL;
    *rc = XR_ENOMEM;
    kept_ring *r = ring_of(m, ch, clen, keep);
    item *it = r ? enqueue(m, clen, mlen) : NULL;
    if (!it)
        return NULL;
    char *data = (char *)(it + 1);
    memcpy(data, ch, clen);
    if (mlen)
        memcpy(data + clen, msg, mlen);
    it->offset = ++r->next;
    it->ring = r;
    it->count = (long long)ttl_ms;
    *rc = 0;
    return it;
}

static int publish_kept(void *self, const char *ch, size_t clen, const char *msg, size_t mlen,
                        size_t keep, unsigned long long ttl_ms)
{
    int rc;
    kept_item(self, ch, clen, msg, mlen, keep, ttl_ms, &rc);
    return rc;
}

#if XR_ANTENNA_ABI_MINOR >= 7
/* The position is told when the message is delivered, from the loop. */
static int publish_kept_at(void *self, const char *ch, size_t clen, const char *msg, size_t mlen,
                           size_t keep, unsigned long long ttl_ms, xr_antenna_kept_cb done,
                           void *arg)
{
    int rc;
    item *it = kept_item(self, ch, clen, msg, mlen, keep, ttl_ms, &rc);
    if (!it)
        return rc;
    it->kept_cb = done;
    it->done_arg = arg;
    return 0;
}
#endif

static void history_answer(memory *m, item *it)
{
    const char *ch = (const char *)(it + 1);
    xr_antenna_history_cb done = it->history_cb;
    unsigned long long since = it->offset, ttl = (unsigned long long)it->count;
    size_t limit = (size_t)it->members;
    void **slot = m->kept ? m->host.names_find(m->kept, ch, it->clen) : NULL;
    kept_ring *r = slot ? *slot : NULL;
    if (!r) {
        done(it->done_arg, XR_OK, NULL, 0, since == 0, 0, m->epoch, strlen(m->epoch));
        return;
    }
    if (ttl)
        expire(r, m->host.now_ms(), ttl);
    /* The messages after since that are still here, the newest limit. */
    size_t after = 0;
    while (after < r->n && r->v[(r->first + r->n - 1 - after) % r->size].offset > since)
        after++;
    size_t n = after < limit ? after : limit;
    xr_antenna_kept *v = n ? malloc(n * sizeof *v) : NULL;
    if (n && !v) {
        done(it->done_arg, XR_ENOMEM, NULL, 0, 0, r->top, m->epoch, strlen(m->epoch));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const kept_msg *k = &r->v[(r->first + r->n - n + i) % r->size];
        v[i] = (xr_antenna_kept){k->offset, k->msg, k->mlen};
    }
    /* Complete when nothing after since is missing: since is the top, or
     * the oldest message kept follows it, and the limit cut nothing. */
    int complete = since <= r->top && n == after &&
                   (since == r->top || (after && r->v[(r->first + r->n - after) % r->size].offset
                                                     == since + 1));
    done(it->done_arg, XR_OK, v, n, complete, r->top, m->epoch, strlen(m->epoch));
    free(v);
}

/* Answered from the loop like every other call; ttl_ms rides in count. */
static int history(void *self, const char *ch, size_t clen, unsigned long long since,
                   size_t limit, unsigned long long ttl_ms, xr_antenna_history_cb done,
                   void *arg)
{
    item *it = enqueue_question(self, ch, clen, history_answer, arg);
    if (!it)
        return XR_ENOMEM;
    it->history_cb = done;
    it->offset = since;
    it->members = (int)(limit > 1000000 ? 1000000 : limit);
    it->count = (long long)ttl_ms;
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
#if XR_ANTENNA_ABI_MINOR >= 6
    .publish_kept = publish_kept,
    .history = history,
#endif
#if XR_ANTENNA_ABI_MINOR >= 7
    .publish_kept_at = publish_kept_at,
#endif
};

EXPORT const xr_antenna_ops *xr_antenna_entry(void)
{
    return &ops;
}
