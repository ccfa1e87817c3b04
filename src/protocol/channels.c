/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Channels on top of the antenna. A channel is a name (a SUB's request_id)
 * with local receivers; the process holds one antenna subscription per
 * channel however many receivers it has. What the antenna delivers waits
 * in one queue for the loop's drain, which gathers each message's
 * receivers, its channel's and (rooms.c) its room's members', and hands
 * them to the transport's fan-out in one call.
 */
#include "protocol/channels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "codec/jwt.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/shared.h"

/* ---- antenna host callbacks ------------------------------------------- */

static int antenna_publish(xr_proto *p, const char *ch, size_t clen,
                           const char *msg, size_t mlen, int kept);

/*
 * The tail every SUB delivery of one message shares:
 *   <escaped msg>","header":{},"method":"SUB"}
 * Each channel adds only its prefix {"request_id":"<name>","payload":"
 */
static xr_shared *sub_tail(xr_proto *p, const char *msg, size_t mlen)
{
    static const char end[] = "\",\"header\":{},\"method\":\"SUB\"}";
    p->scratch.len = 0;
    if (xr_buf_json_escaped(&p->scratch, msg, mlen) < 0 ||
        xr_buf_add(&p->scratch, end, sizeof end - 1) < 0)
        return NULL;
    return xr_shared_new(p->scratch.p, p->scratch.len);
}

static int enqueue_at(xr_proto *p, unsigned to, const char *name, size_t len, xr_shared *tail,
                      unsigned long long offset, const char *epoch, size_t elen)
{
    if (xr_array_room(&p->pending, &p->cap_pending, p->n_pending + 1, sizeof *p->pending) < 0)
        return XR_ENOMEM;
    size_t off = p->pending_names.len;
    if (xr_buf_add(&p->pending_names, name, len) < 0 ||
        (elen && xr_buf_add(&p->pending_names, epoch, elen) < 0))
        return XR_ENOMEM;
    if (p->n_pending == 0)
        event_active(p->drain_ev, EV_TIMEOUT, 0);
    p->pending[p->n_pending++] =
        (xr_pending){to, off, len, off + len, elen, offset, xr_shared_ref(tail)};
    return XR_OK;
}

static int enqueue(xr_proto *p, unsigned to, const char *name, size_t len, xr_shared *tail)
{
    return enqueue_at(p, to, name, len, tail, 0, NULL, 0);
}

/* The receivers of ch as fan-out targets, after those already in
 * p->targets; a recovering receiver holds the run instead. XR_ENOMEM
 * when out of memory. */
static int add_targets(xr_proto *p, const xr_channel *ch, const xr_pending *run, size_t n)
{
    for (const xr_receiver *r = ch->head; r; r = r->next) {
        if (r->rec) {
            for (size_t k = 0; k < n; k++)
                xr_recovery_hold(r->rec, p->pending_names.p + run[k].noff, run[k].nlen,
                                 run[k].offset, p->pending_names.p + run[k].eoff, run[k].elen,
                                 run[k].tail);
            continue;
        }
        if (xr_array_room(&p->targets, &p->cap_targets, p->n_targets + 1, sizeof *p->targets) < 0)
            return XR_ENOMEM;
        p->targets[p->n_targets++] = (xr_fanout_target){r->pc->conn, ch->prefix, ch->plen};
    }
    return 0;
}

/* The run's messages to every target gathered: the transport frames them. */
static void fan_out(xr_proto *p, const xr_pending *run, size_t n)
{
    if (xr_array_room(&p->bodies, &p->cap_bodies, n, sizeof *p->bodies) < 0)
        return;
    for (size_t k = 0; k < n; k++)
        p->bodies[k] = run[k].tail;
    if (p->n_targets)
        p->stats.deliveries += xr_fanout(xr_conn_transport(p->targets[0].conn), p->targets,
                                         p->n_targets, p->bodies, n);
}

static int same_target(const xr_proto *p, const xr_pending *a, const xr_pending *b)
{
    return a->to == b->to && a->nlen == b->nlen &&
           memcmp(p->pending_names.p + a->noff, p->pending_names.p + b->noff, a->nlen) == 0;
}

/* After the callback that queued them: runs of messages for one target,
 * in the order they came, so each channel keeps its order. */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_proto *p = arg;
    for (size_t i = 0, j; i < p->n_pending; i = j) {
        xr_pending *run = &p->pending[i];
        for (j = i + 1; j < p->n_pending && same_target(p, run, &p->pending[j]); j++)
            ;
        const char *name = p->pending_names.p + run->noff;
        /* Who receives: a channel's receivers, or a room's members on this
         * node (no broker round trip), each with its own prefix. */
        p->n_targets = 0;
        int ok = 0;
        if (run->to == TO_CHANNEL) {
            xr_channel *ch = xr_map_get(&p->channels, name, run->nlen);
            ok = ch && add_targets(p, ch, run, j - i) == 0;
        } else {
            /* A room's members; for its presence events, those that asked. */
            xr_room *room = xr_map_get(&p->rooms, name, run->nlen);
            ok = room != NULL;
            for (size_t m = 0; ok && m < room->n; m++)
                if (room->v[m].ch && (run->to == TO_ROOM || room->v[m].ch->events))
                    ok = add_targets(p, room->v[m].ch, run, j - i) == 0;
        }
        if (ok)
            fan_out(p, run, j - i);
    }
    for (size_t i = 0; i < p->n_pending; i++)
        xr_shared_unref(p->pending[i].tail);
    p->n_pending = 0;
    p->pending_names.len = 0;
}

void xr_proto_drain(xr_proto *p)
{
    on_drain(-1, 0, p);
}

static void message_at(xr_proto *p, const char *name, size_t clen, const char *msg, size_t mlen,
                       unsigned long long offset, const char *epoch, size_t elen);

static void on_antenna_message(void *host, const char *name, size_t clen,
                               const char *msg, size_t mlen)
{
    message_at(host, name, clen, msg, mlen, 0, NULL, 0);
}

static void on_antenna_message_at(void *host, const char *name, size_t clen, const char *msg,
                                  size_t mlen, unsigned long long offset, const char *epoch,
                                  size_t elen)
{
    /* A position is a positive offset and an epoch a client can send back. */
    if (!offset || !elen || elen > XR_EPOCH_MAX)
        offset = 0, elen = 0;
    message_at(host, name, clen, msg, mlen, offset, epoch, elen);
}

/* A message from the broker, with its position when its channel keeps
 * history: built once into the tail every receiver shares. */
static void message_at(xr_proto *p, const char *name, size_t clen, const char *msg, size_t mlen,
                       unsigned long long offset, const char *epoch, size_t elen)
{
    p->stats.antenna_messages++;
    if (clen > 2 && name[0] == '\x01' && name[1] == 'p') {
        xr_shared *ev;
        if (xr_map_get(&p->rooms, name + 2, clen - 2) &&
            xr_presence_event(p, name, clen, msg, mlen, &ev) == XR_OK) {
            enqueue(p, TO_EVENTS, name + 2, clen - 2, ev);
            xr_shared_unref(ev);
        }
        return;
    }
    if ((offset || p->streams.count) && (xr_map_get(&p->channels, name, clen) ||
                                         xr_map_get(&p->rooms, name, clen)) &&
        !xr_stream_check(p, name, clen, msg, mlen, offset, epoch, elen))
        return;
    xr_deliver_at(p, name, clen, msg, mlen, offset, epoch, elen);
}

void xr_deliver_at(xr_proto *p, const char *name, size_t clen, const char *msg, size_t mlen,
                   unsigned long long offset, const char *epoch, size_t elen)
{
    xr_channel *ch = xr_map_get(&p->channels, name, clen);
    xr_room *room = xr_map_get(&p->rooms, name, clen);
    if (!ch && !room)
        return;
    xr_shared *tail = offset ? xr_history_tail(p, msg, mlen, offset, epoch, elen)
                             : sub_tail(p, msg, mlen);
    if (!tail)
        return;
    if (ch)
        enqueue_at(p, TO_CHANNEL, name, clen, tail, offset, epoch, elen);
    if (room) {
        enqueue_at(p, TO_ROOM, name, clen, tail, offset, epoch, elen);
        /* Members elsewhere hear it through the broker (as a plain
         * message: a member channel's own history is its own). */
        for (size_t i = 0; room->n_remote && i < room->n; i++)
            if (!room->v[i].ch)
                antenna_publish(p, room->v[i].name, room->v[i].len, msg, mlen, 0);
    }
    xr_shared_unref(tail);
}

static void on_antenna_state(void *host, int connected, const char *detail)
{
    xr_proto *p = host;
    if (connected != p->antenna_up) {
        xr_log(p->log, connected ? XR_LOG_INFO : XR_LOG_WARN, "antenna %s: %s",
               connected ? "connected" : "down", detail ? detail : "");
        if (connected && p->antenna_was_up)
            p->stats.antenna_reconnects++;
        if (connected)
            p->antenna_was_up = 1;
    }
    p->antenna_up = connected;
}

__attribute__((format(printf, 3, 4)))
static void on_antenna_log(void *host, int level, const char *fmt, ...)
{
    xr_proto *p = host;
    va_list ap;
    va_start(ap, fmt);
    xr_vlog(p->log, level < 0 ? XR_LOG_ERROR : level > 3 ? XR_LOG_DEBUG : (xr_log_level)level,
            fmt, ap);
    va_end(ap);
}

static unsigned long long host_hash(const void *data, size_t len)
{
    return xr_hash(data, len);
}

static int host_wakeup(void *host, void (*fn)(void *arg), void *arg)
{
    xr_proto *p = host;
    return xr_wakeup_new(p->base, &p->wakeups, fn, arg);
}

/* Every post to the broker goes through here, so both counters see it;
 * kept: into the channel's history when it keeps one. */
static int antenna_publish(xr_proto *p, const char *ch, size_t clen,
                           const char *msg, size_t mlen, int kept)
{
    unsigned keep;
    unsigned long long ttl;
    p->stats.publishes++;
    int rc = kept && XR_ANTENNA_HAS(p->antenna, publish_kept) &&
                     xr_history_of(p, ch, clen, &keep, &ttl)
                 ? p->antenna->publish_kept(p->antenna_self, ch, clen, msg, mlen, keep, ttl)
                 : p->antenna->publish(p->antenna_self, ch, clen, msg, mlen);
    if (rc < 0) {
        p->stats.publish_errors++;
        return XR_EANTENNA;
    }
    return XR_OK;
}

/* A name can be both a channel with receivers and a room: the antenna gets
 * one subscription for it, held until neither needs it. */
void xr_sub_ref(xr_proto *p, const char *name, size_t len)
{
    uintptr_t n = (uintptr_t)xr_map_get(&p->subs, name, len);
    if (!xr_map_put(&p->subs, name, len, (void *)(n + 1)))
        return;
    if (n == 0 && p->antenna->subscribe(p->antenna_self, name, len) < 0)
        xr_log(p->log, XR_LOG_WARN, "antenna refused to subscribe %.*s",
               (int)(len > 64 ? 64 : len), name);
}

void xr_sub_unref(xr_proto *p, const char *name, size_t len)
{
    uintptr_t n = (uintptr_t)xr_map_get(&p->subs, name, len);
    if (n > 1) {
        xr_map_put(&p->subs, name, len, (void *)(n - 1));
        return;
    }
    if (n == 1) {
        xr_map_del(&p->subs, name, len);
        xr_stream_forget(p, name, len);
        p->antenna->unsubscribe(p->antenna_self, name, len);
    }
}

/* ---- channels ---------------------------------------------------------- */

static xr_channel *channel_new(xr_proto *p, const char *name, size_t len)
{
    static const char a[] = "{\"request_id\":\"", b[] = "\",\"payload\":\"";
    xr_buf pre = {0};
    xr_channel *ch = calloc(1, sizeof *ch);
    if (!ch || xr_buf_add(&pre, a, sizeof a - 1) < 0 ||
        xr_buf_json_escaped(&pre, name, len) < 0 || xr_buf_add(&pre, b, sizeof b - 1) < 0 ||
        !(ch->e = xr_map_put(&p->channels, name, len, ch))) {
        xr_buf_free(&pre);
        free(ch);
        return NULL;
    }
    ch->prefix = pre.p;
    ch->plen = pre.len;
    return ch;
}

static void channel_free(xr_channel *ch)
{
    free(ch->prefix);
    free(ch);
}

int xr_granted(const xr_conn *c, char kind, const char *name, size_t len)
{
    const char *g = c ? xr_conn_grants(c) : NULL;
    return !g || xr_jwt_grants_allow(g, kind, name, len);
}

/* A token's grants hold for what its channel receives: the channel, and
 * every room here the channel is already a member of (a second SUB with
 * another's request_id would otherwise receive that room's messages). */
static int open_granted(xr_proto *p, const xr_conn *c, const char *name, size_t len)
{
    if (!xr_conn_grants(c))
        return 1;
    if (!xr_granted(c, XR_GRANT_CHANNEL, name, len))
        return 0;
    xr_membership *ms = xr_map_get(&p->memberships, name, len);
    for (size_t i = 0; ms && i < ms->n; i++)
        if (!xr_granted(c, XR_GRANT_ROOM, ms->rooms[i]->e->key, ms->rooms[i]->e->klen))
            return 0;
    return 1;
}

int xr_channel_open(xr_proto *p, xr_pconn *pc, const char *name, size_t len)
{
    if (xr_name_check(name, len, p->o->max_name_length) != XR_NAME_OK)
        return XR_EINVAL;
    if (!open_granted(p, pc->conn, name, len))
        return XR_EPERM;
    /* The walk is bounded by the cap below. */
    for (xr_receiver *r = pc->receivers; r; r = r->conn_next)
        if (r->ch->e->klen == len && memcmp(r->ch->e->key, name, len) == 0)
            return XR_OK;  /* the same SUB twice: still one receiver */
    if (pc->n_receivers >= p->o->max_channels_per_conn)
        return XR_ELIMIT;
    xr_channel *ch = xr_map_get(&p->channels, name, len);
    int fresh = !ch;
    if (fresh && !(ch = channel_new(p, name, len)))
        return XR_ENOMEM;
    xr_receiver *r = calloc(1, sizeof *r);
    if (!r) {
        if (fresh) {
            xr_map_del(&p->channels, name, len);
            channel_free(ch);
        }
        return XR_ENOMEM;
    }
    r->pc = pc;
    r->ch = ch;
    r->next = ch->head;
    if (ch->head)
        ch->head->prev = r;
    ch->head = r;
    ch->n++;
    r->conn_next = pc->receivers;
    if (pc->receivers)
        pc->receivers->conn_prev = r;
    pc->receivers = r;
    pc->n_receivers++;
    if (fresh) {
        xr_sub_ref(p, name, len);
        xr_member_here(p, ch);
    }
    return XR_OK;
}

static void receiver_remove(xr_proto *p, xr_pconn *pc, xr_receiver *r)
{
    xr_channel *ch = r->ch;
    if (r->prev) r->prev->next = r->next; else ch->head = r->next;
    if (r->next) r->next->prev = r->prev;
    if (r->conn_prev) r->conn_prev->conn_next = r->conn_next; else pc->receivers = r->conn_next;
    if (r->conn_next) r->conn_next->conn_prev = r->conn_prev;
    pc->n_receivers--;
    if (r->rec)
        xr_recovery_cancel(r->rec);
    free(r);
    if (--ch->n)
        return;
    /* Its last receiver here: leave the rooms (which hold it), drop the
     * subscription, then the channel. */
    xr_member_gone(p, ch->e->key, ch->e->klen);
    xr_sub_unref(p, ch->e->key, ch->e->klen);
    xr_map_del(&p->channels, ch->e->key, ch->e->klen);
    channel_free(ch);
}

void xr_channel_wants_events(xr_proto *p, const char *name, size_t len)
{
    xr_channel *ch = xr_map_get(&p->channels, name, len);
    if (ch)
        ch->events = 1;
}

void xr_channel_close(xr_proto *p, xr_pconn *pc, const char *name, size_t len)
{
    for (xr_receiver *r = pc->receivers; r; r = r->conn_next)
        if (r->ch->e->klen == len && memcmp(r->ch->e->key, name, len) == 0) {
            receiver_remove(p, pc, r);
            return;
        }
}

static xr_receiver *receiver_of(xr_pconn *pc, const char *name, size_t len)
{
    for (xr_receiver *r = pc->receivers; r; r = r->conn_next)
        if (r->ch->e->klen == len && memcmp(r->ch->e->key, name, len) == 0)
            return r;
    return NULL;
}

xr_recovery **xr_receiver_recovery(xr_proto *p, xr_pconn *pc, const char *name, size_t len)
{
    (void)p;
    xr_receiver *r = receiver_of(pc, name, len);
    return r ? &r->rec : NULL;
}

void xr_receiver_send(xr_proto *p, xr_pconn *pc, const char *name, size_t len,
                      xr_shared *const *bodies, size_t n)
{
    xr_receiver *r = receiver_of(pc, name, len);
    if (!r || !pc->conn)
        return;
    xr_fanout_target t = {pc->conn, r->ch->prefix, r->ch->plen};
    p->stats.deliveries += xr_fanout(xr_conn_transport(pc->conn), &t, 1, bodies, n);
}

int xr_member_stream(xr_proto *p, const char *member, size_t len, const char **name,
                     size_t *nlen)
{
    unsigned keep;
    unsigned long long ttl;
    xr_membership *ms = xr_map_get(&p->memberships, member, len);
    for (size_t i = 0; ms && i < ms->n; i++) {
        const xr_map_entry *e = ms->rooms[i]->e;
        if (xr_history_of(p, e->key, e->klen, &keep, &ttl)) {
            *name = e->key;
            *nlen = e->klen;
            return 1;
        }
    }
    if (!xr_history_of(p, member, len, &keep, &ttl))
        return 0;
    *name = member;
    *nlen = len;
    return 1;
}

void xr_channels_conn_gone(xr_proto *p, xr_pconn *pc)
{
    while (pc->receivers)
        receiver_remove(p, pc, pc->receivers);
}

/* What every post is checked for: a name, an antenna, the acting
 * request's grant. */
static int may_publish(xr_proto *p, const char *channel, size_t clen, const char *msg,
                       size_t mlen)
{
    if (!p || !channel || (mlen && !msg) ||
        xr_name_check(channel, clen, p->o->max_name_length) != XR_NAME_OK)
        return XR_EINVAL;
    if (!p->antenna)
        return XR_ESTATE;
    if (!xr_granted(p->acting, XR_GRANT_PUBLISH, channel, clen)) {
        p->denied = 1;
        return XR_EPERM;
    }
    return XR_OK;
}

int xr_proto_publish(xr_proto *p, const char *channel, size_t clen, const char *msg, size_t mlen)
{
    int rc = may_publish(p, channel, clen, msg, mlen);
    return rc < 0 ? rc : antenna_publish(p, channel, clen, msg ? msg : "", mlen, 1);
}

/* xr_publish_at: the application's callback, called when the antenna
 * tells the post's position (always on the loop, never inside a send). */
typedef struct publish_at {
    xr_publish_cb done;
    void *ud;
} publish_at;

static void on_position(void *arg, int rc, unsigned long long offset, const char *epoch,
                        size_t elen)
{
    publish_at *pa = arg;
    pa->done(rc < 0 ? XR_EANTENNA : XR_OK, offset, epoch, elen, pa->ud);
    free(pa);
}

int xr_proto_publish_at(xr_proto *p, const char *channel, size_t clen, const char *msg,
                        size_t mlen, xr_publish_cb done, void *ud)
{
    unsigned keep;
    unsigned long long ttl;
    int rc = done ? may_publish(p, channel, clen, msg, mlen) : XR_EINVAL;
    if (rc < 0)
        return rc;
    if (!XR_ANTENNA_HAS(p->antenna, publish_kept_at) || !xr_history_of(p, channel, clen, &keep, &ttl))
        return XR_ESTATE;
    publish_at *pa = malloc(sizeof *pa);
    if (!pa)
        return XR_ENOMEM;
    *pa = (publish_at){done, ud};
    p->stats.publishes++;
    if (p->antenna->publish_kept_at(p->antenna_self, channel, clen, msg ? msg : "", mlen, keep,
                                    ttl, on_position, pa) < 0) {
        free(pa);
        p->stats.publish_errors++;
        return XR_EANTENNA;
    }
    return XR_OK;
}

/* ---- set-up ------------------------------------------------------------ */

void xr_channels_maps_init(xr_proto *p)
{
    xr_map_init(&p->channels);
    xr_map_init(&p->rooms);
    xr_map_init(&p->memberships);
    xr_map_init(&p->subs);
    xr_map_init(&p->presence);
    xr_map_init(&p->streams);
}

int xr_channels_init(xr_proto *p, char *err, size_t errlen)
{
    char url[1024];
    int rc = xr_antenna_open(p->o->antenna ? p->o->antenna : "memory://", p->o->antenna_dir,
                             &p->antenna, &p->antenna_dl, url, sizeof url, err, errlen);
    if (rc < 0)
        return rc;
    p->antenna_url = strdup(url);
    p->antenna_host.message = on_antenna_message;
    p->antenna_host.message_at = on_antenna_message_at;
    p->antenna_host.state = on_antenna_state;
    p->antenna_host.log = on_antenna_log;
    p->antenna_host.host = p;
    p->antenna_host.hash = host_hash;
    xr_antenna_host_services(&p->antenna_host);
    p->antenna_host.wakeup = host_wakeup;
    p->antenna_host.presence_ttl_ms = xr_presence_any(p) ? p->o->presence_ttl_ms : 0;
    p->antenna_host.presence_gone = xr_presence_gone;
    p->antenna_host.size = sizeof p->antenna_host;
    char aerr[256] = "";
    p->antenna_self = p->antenna->create(p->base, url, &p->antenna_host, aerr, sizeof aerr);
    if (!p->antenna_self) {
        snprintf(err, errlen, "antenna %s: %s", url, aerr);
        /* Leave no half-loaded antenna behind for a later attempt. */
        xr_wakeups_free(&p->wakeups);
        xr_antenna_close(p->antenna_dl);
        p->antenna_dl = NULL;
        p->antenna = NULL;
        return XR_EANTENNA;
    }
    p->antenna_up = p->antenna->connected(p->antenna_self);
    p->antenna_was_up = p->antenna_up;
    p->room_timer = event_new(p->base, -1, EV_PERSIST, xr_rooms_check, p);
    p->drain_ev = event_new(p->base, -1, 0, on_drain, p);
    if (!p->room_timer || !p->drain_ev || !p->antenna_url) {
        snprintf(err, errlen, "out of memory");
        return XR_ENOMEM;
    }
    if (p->o->room_check_ms) {
        struct timeval tv = xr_timeval_ms(p->o->room_check_ms);
        event_add(p->room_timer, &tv);
    }
    return XR_OK;
}

void xr_channels_free(xr_proto *p)
{
    size_t it;
    xr_map_entry *e;
    /* The antenna first: its last callbacks (answers cut short) may still
     * look rooms up. Connections are gone by now. */
    p->stopping = 1;
    if (p->antenna && p->antenna_self)
        p->antenna->destroy(p->antenna_self);
    p->antenna_self = NULL;
    /* One line, not one per member a stop left uncounted. */
    if (p->presence_cut)
        XR_WARN(p->log, "presence: the stop cut %zu join/leave count(s) short; the other "
                "nodes drop this node's members within --presence-ttl", p->presence_cut);
    /* Its threads are joined by now: nobody writes to these any more. */
    xr_wakeups_free(&p->wakeups);
    for (e = xr_map_first(&p->rooms, &it); e; e = xr_map_next(&p->rooms, e, &it))
        xr_room_free(e->value);
    for (e = xr_map_first(&p->memberships, &it); e; e = xr_map_next(&p->memberships, e, &it))
        xr_membership_free(e->value);
    for (e = xr_map_first(&p->channels, &it); e; e = xr_map_next(&p->channels, e, &it))
        channel_free(e->value);
    xr_map_clear(&p->rooms);
    xr_map_clear(&p->memberships);
    xr_map_clear(&p->channels);
    xr_map_clear(&p->subs);
    if (p->room_timer)
        event_free(p->room_timer);
    p->room_timer = NULL;
    if (p->drain_ev)
        event_free(p->drain_ev);
    p->drain_ev = NULL;
    for (size_t i = 0; i < p->n_pending; i++)
        xr_shared_unref(p->pending[i].tail);
    free(p->pending);
    p->pending = NULL;
    p->n_pending = p->cap_pending = 0;
    xr_buf_free(&p->pending_names);
    free(p->targets);
    p->targets = NULL;
    p->n_targets = p->cap_targets = 0;
    free(p->bodies);
    p->bodies = NULL;
    p->cap_bodies = 0;
    xr_antenna_close(p->antenna_dl);
    p->antenna_dl = NULL;
    free(p->antenna_url);
    p->antenna_url = NULL;
}
