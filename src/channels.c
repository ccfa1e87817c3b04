/*
 * Channels and rooms on top of the antenna. A channel is a name (a SUB's
 * request_id) with local receivers; the process holds one antenna
 * subscription per channel however many receivers it has. A room is a
 * channel whose messages are re-posted to each member channel: members with
 * a receiver here directly, others through the antenna (DESIGN section 4).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

typedef struct xr_receiver {
    xr_conn *conn;
    struct xr_channel *ch;
    struct xr_receiver *prev, *next;            /* in the channel */
    struct xr_receiver *conn_prev, *conn_next;  /* in the connection */
} xr_receiver;

typedef struct xr_channel {
    xr_map_entry *e;        /* name and length live in the map entry */
    xr_receiver *head;
    size_t n;
} xr_channel;

typedef struct xr_room {
    xr_map_entry *e;
    xr_map members;         /* member name -> (void *)1 */
} xr_room;

/* The rooms one member is in, so a closing channel leaves them all. */
typedef struct xr_membership {
    size_t n, cap;
    xr_room **rooms;
} xr_membership;

/* data NULL: the caller fills the len bytes. */
xr_shared *xr_shared_new(const void *data, size_t len)
{
    xr_shared *s = malloc(sizeof *s + len);
    if (!s)
        return NULL;
    s->refs = 1;
    s->deflate_tried = 0;
    s->deflated = NULL;
    s->len = len;
    if (data)
        memcpy(s->data, data, len);
    return s;
}

void xr_shared_unref(xr_shared *s)
{
    if (s && --s->refs == 0) {
        xr_shared_unref(s->deflated);
        free(s);
    }
}

/* ---- antenna host callbacks ------------------------------------------- */

static int antenna_publish(xr_server *srv, const char *ch, size_t clen,
                           const char *msg, size_t mlen);

/*
 * The tail every SUB delivery of one message shares:
 *   <escaped msg>","header":{},"method":"SUB"}
 * Each channel adds only its prefix {"request_id":"<name>","payload":"
 */
static xr_shared *sub_tail(xr_server *srv, const char *msg, size_t mlen)
{
    static const char end[] = "\",\"header\":{},\"method\":\"SUB\"}";
    srv->scratch.len = 0;
    if (xr_buf_json_escaped(&srv->scratch, msg, mlen) < 0 ||
        xr_buf_add(&srv->scratch, end, sizeof end - 1) < 0)
        return NULL;
    return xr_shared_new(srv->scratch.p, srv->scratch.len);
}

static void deliver(xr_server *srv, xr_channel *ch, xr_shared *tail)
{
    static const char a[] = "{\"request_id\":\"", b[] = "\",\"payload\":\"";
    /* Its own buffer: a send that closes a slow reader runs the
     * application's on_close, which may reply and so reuse scratch. */
    xr_buf *pre = &srv->fanout;
    pre->len = 0;
    if (xr_buf_add(pre, a, sizeof a - 1) < 0 ||
        xr_buf_json_escaped(pre, ch->e->key, ch->e->klen) < 0 ||
        xr_buf_add(pre, b, sizeof b - 1) < 0)
        return;
    /* Every receiver of one channel gets the same bytes: with several, the
     * whole frame is built once and each output references it. Otherwise
     * (and for compressing receivers) the prefix is copied per frame and
     * the tail referenced. Step ahead before sending: a send may close. */
    size_t plen = pre->len + tail->len;
    xr_shared *frame = NULL;
    if (ch->head && ch->head->next) {
        uint8_t h[XR_WS_MAX_HEADER];
        size_t hl = xr_ws_header(h, XR_WS_OP_TEXT, 1, plen, NULL);
        if ((frame = xr_shared_new(NULL, hl + plen))) {
            memcpy(frame->data, h, hl);
            memcpy(frame->data + hl, pre->p, pre->len);
            memcpy(frame->data + hl + pre->len, tail->data, tail->len);
        }
    }
    xr_receiver *r = ch->head, *next;
    for (; r; r = next) {
        next = r->next;
        int rc = frame && !xr_conn_wants_deflate(r->conn, plen)
                 ? xr_conn_send_frame(r->conn, frame, plen)
                 : xr_conn_send_shared(r->conn, pre->p, pre->len, tail);
        if (rc == XR_OK)
            srv->metrics.deliveries++;
    }
    xr_shared_unref(frame);
}

static void on_antenna_message(void *host, const char *name, size_t clen,
                               const char *msg, size_t mlen)
{
    xr_server *srv = host;
    srv->metrics.antenna_messages++;
    xr_channel *ch = xr_map_get(&srv->channels, name, clen);
    xr_room *room = xr_map_get(&srv->rooms, name, clen);
    if (!ch && !room)
        return;
    xr_shared *tail = sub_tail(srv, msg, mlen);
    if (!tail)
        return;
    if (ch)
        deliver(srv, ch, tail);
    if (room) {
        size_t it;
        xr_map_entry *e, *next;
        for (e = xr_map_first(&room->members, &it); e; e = next) {
            next = xr_map_next(&room->members, e, &it);
            xr_channel *mch = xr_map_get(&srv->channels, e->key, e->klen);
            if (mch)
                deliver(srv, mch, tail);  /* here: no broker round trip */
            else
                antenna_publish(srv, e->key, e->klen, msg, mlen);
        }
    }
    xr_shared_unref(tail);
}

static void on_antenna_state(void *host, int connected, const char *detail)
{
    xr_server *srv = host;
    if (connected != srv->antenna_up) {
        xr_log(srv, connected ? XR_LOG_INFO : XR_LOG_WARN, "antenna %s: %s",
               connected ? "connected" : "down", detail ? detail : "");
        if (connected && srv->antenna_was_up)
            srv->metrics.antenna_reconnects++;
        if (connected)
            srv->antenna_was_up = 1;
    }
    srv->antenna_up = connected;
}

__attribute__((format(printf, 3, 4)))
static void on_antenna_log(void *host, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    xr_vlog(host, level < 0 ? XR_LOG_ERROR : level > 3 ? XR_LOG_DEBUG : (xr_log_level)level,
            fmt, ap);
    va_end(ap);
}

/* Every post to the broker goes through here, so both counters see it. */
static int antenna_publish(xr_server *srv, const char *ch, size_t clen,
                           const char *msg, size_t mlen)
{
    srv->metrics.publishes++;
    if (srv->antenna->publish(srv->antenna_self, ch, clen, msg, mlen) < 0) {
        srv->metrics.publish_errors++;
        return XR_EANTENNA;
    }
    return XR_OK;
}

/* A name can be both a channel with receivers and a room: the antenna gets
 * one subscription for it, held until neither needs it. */
static void sub_ref(xr_server *srv, const char *name, size_t len)
{
    uintptr_t n = (uintptr_t)xr_map_get(&srv->subs, name, len);
    if (!xr_map_put(&srv->subs, name, len, (void *)(n + 1)))
        return;
    if (n == 0 && srv->antenna->subscribe(srv->antenna_self, name, len) < 0)
        xr_log(srv, XR_LOG_WARN, "antenna refused to subscribe %.*s",
               (int)(len > 64 ? 64 : len), name);
}

static void sub_unref(xr_server *srv, const char *name, size_t len)
{
    uintptr_t n = (uintptr_t)xr_map_get(&srv->subs, name, len);
    if (n > 1) {
        xr_map_put(&srv->subs, name, len, (void *)(n - 1));
        return;
    }
    if (n == 1) {
        xr_map_del(&srv->subs, name, len);
        srv->antenna->unsubscribe(srv->antenna_self, name, len);
    }
}

/* ---- rooms ------------------------------------------------------------- */

static void membership_drop(xr_server *srv, const char *member, size_t len, xr_room *room)
{
    xr_membership *ms = xr_map_get(&srv->memberships, member, len);
    if (!ms)
        return;
    for (size_t i = 0; i < ms->n; i++)
        if (ms->rooms[i] == room) {
            ms->rooms[i] = ms->rooms[--ms->n];
            break;
        }
    if (!ms->n) {
        xr_map_del(&srv->memberships, member, len);
        free(ms->rooms);
        free(ms);
    }
}

/* Closes a room that has no members left. */
static void room_close_if_empty(xr_server *srv, xr_room *room)
{
    if (room->members.count)
        return;
    sub_unref(srv, room->e->key, room->e->klen);
    xr_map_clear(&room->members);
    xr_map_del(&srv->rooms, room->e->key, room->e->klen);
    free(room);
}

static void room_leave(xr_server *srv, xr_room *room, const char *member, size_t len)
{
    if (!xr_map_del(&room->members, member, len))
        return;
    membership_drop(srv, member, len, room);
    room_close_if_empty(srv, room);
}

int xr_room_join(xr_server *srv, const char *name, const char *member)
{
    if (!srv || !name || !member || !*name || !*member)
        return XR_EINVAL;
    if (!srv->antenna)
        return XR_ESTATE;
    size_t nl = strlen(name), ml = strlen(member);
    xr_room *room = xr_map_get(&srv->rooms, name, nl);
    if (!room) {
        room = calloc(1, sizeof *room);
        if (!room || !(room->e = xr_map_put(&srv->rooms, name, nl, room))) {
            free(room);
            return XR_ENOMEM;
        }
        xr_map_init(&room->members);
        sub_ref(srv, name, nl);
    }
    if (xr_map_get(&room->members, member, ml))
        return XR_OK;
    xr_membership *ms = xr_map_get(&srv->memberships, member, ml);
    if (!ms) {
        ms = calloc(1, sizeof *ms);
        if (!ms || !xr_map_put(&srv->memberships, member, ml, ms)) {
            free(ms);
            ms = NULL;
        }
    }
    if (ms && ms->n == ms->cap) {
        size_t cap = ms->cap ? ms->cap * 2 : 2;
        xr_room **v = realloc(ms->rooms, cap * sizeof *v);
        if (v) {
            ms->rooms = v;
            ms->cap = cap;
        }
    }
    if (!ms || ms->n == ms->cap || !xr_map_put(&room->members, member, ml, (void *)1)) {
        if (ms && !ms->n) {
            xr_map_del(&srv->memberships, member, ml);
            free(ms->rooms);
            free(ms);
        }
        room_close_if_empty(srv, room);
        return XR_ENOMEM;
    }
    ms->rooms[ms->n++] = room;
    return XR_OK;
}

int xr_room_leave(xr_server *srv, const char *name, const char *member)
{
    if (!srv || !name || !member)
        return XR_EINVAL;
    xr_room *room = xr_map_get(&srv->rooms, name, strlen(name));
    if (!room || !xr_map_get(&room->members, member, strlen(member)))
        return XR_EINVAL;
    room_leave(srv, room, member, strlen(member));
    return XR_OK;
}

size_t xr_room_size(const xr_server *srv, const char *name)
{
    xr_room *room = xr_map_get(&srv->rooms, name, strlen(name));
    return room ? room->members.count : 0;
}

/* A member whose last local receiver went leaves every room at once. */
static void member_gone(xr_server *srv, const char *member, size_t len)
{
    xr_membership *ms;
    while ((ms = xr_map_get(&srv->memberships, member, len)) && ms->n)
        room_leave(srv, ms->rooms[ms->n - 1], member, len);
}

/* Pruning: members with no receiver here are asked about through the
 * antenna (Redis: PUBSUB NUMSUB), like the Python X-raptor every 7 s. */
typedef struct alive_check {
    xr_server *srv;
    size_t rlen;
    size_t mlen;
    char names[];           /* room NUL member NUL */
} alive_check;

static void on_alive(int alive, void *arg)
{
    alive_check *ac = arg;
    if (!alive) {
        xr_server *srv = ac->srv;
        xr_room *room = xr_map_get(&srv->rooms, ac->names, ac->rlen);
        const char *member = ac->names + ac->rlen + 1;
        /* It may have come back here since the question was asked. */
        if (room && !xr_map_get(&srv->channels, member, ac->mlen) &&
            xr_map_get(&room->members, member, ac->mlen)) {
            srv->metrics.room_pruned++;
            XR_DEBUG(srv, "room %.64s: member %.64s no longer listens, removed",
                     ac->names, member);
            room_leave(srv, room, member, ac->mlen);
        }
    }
    free(ac);
}

static void on_room_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_server *srv = arg;
    size_t it, jt;
    for (xr_map_entry *r = xr_map_first(&srv->rooms, &it); r; r = xr_map_next(&srv->rooms, r, &it)) {
        xr_room *room = r->value;
        for (xr_map_entry *m = xr_map_first(&room->members, &jt); m;
             m = xr_map_next(&room->members, m, &jt)) {
            if (xr_map_get(&srv->channels, m->key, m->klen))
                continue;
            alive_check *ac = malloc(sizeof *ac + r->klen + m->klen + 2);
            if (!ac)
                continue;
            ac->srv = srv;
            ac->rlen = r->klen;
            ac->mlen = m->klen;
            memcpy(ac->names, r->key, r->klen + 1);
            memcpy(ac->names + r->klen + 1, m->key, m->klen + 1);
            /* The answer comes later, through the loop, never from here:
             * the maps are not changed under this iteration. */
            if (srv->antenna->is_alive(srv->antenna_self, m->key, m->klen, on_alive, ac) < 0)
                free(ac);
        }
    }
}

/* ---- channels ---------------------------------------------------------- */

int xr_channel_open(xr_server *srv, xr_conn *c, const char *name, size_t len)
{
    xr_receiver **list = xr_conn_receivers(c);
    for (xr_receiver *r = *list; r; r = r->conn_next)
        if (r->ch->e->klen == len && memcmp(r->ch->e->key, name, len) == 0)
            return XR_OK;  /* the same SUB twice: still one receiver */
    xr_channel *ch = xr_map_get(&srv->channels, name, len);
    int fresh = !ch;
    if (fresh) {
        ch = calloc(1, sizeof *ch);
        if (!ch || !(ch->e = xr_map_put(&srv->channels, name, len, ch))) {
            free(ch);
            return XR_ENOMEM;
        }
    }
    xr_receiver *r = calloc(1, sizeof *r);
    if (!r) {
        if (fresh) {
            xr_map_del(&srv->channels, name, len);
            free(ch);
        }
        return XR_ENOMEM;
    }
    r->conn = c;
    r->ch = ch;
    r->next = ch->head;
    if (ch->head)
        ch->head->prev = r;
    ch->head = r;
    ch->n++;
    r->conn_next = *list;
    if (*list)
        (*list)->conn_prev = r;
    *list = r;
    if (fresh)
        sub_ref(srv, name, len);
    return XR_OK;
}

static void receiver_remove(xr_server *srv, xr_conn *c, xr_receiver *r)
{
    xr_channel *ch = r->ch;
    xr_receiver **list = xr_conn_receivers(c);
    if (r->prev) r->prev->next = r->next; else ch->head = r->next;
    if (r->next) r->next->prev = r->prev;
    if (r->conn_prev) r->conn_prev->conn_next = r->conn_next; else *list = r->conn_next;
    if (r->conn_next) r->conn_next->conn_prev = r->conn_prev;
    free(r);
    if (--ch->n)
        return;
    /* Its last receiver here: drop the subscription, leave the rooms. */
    sub_unref(srv, ch->e->key, ch->e->klen);
    char *name = strndup(ch->e->key, ch->e->klen);
    size_t len = ch->e->klen;
    xr_map_del(&srv->channels, ch->e->key, len);
    free(ch);
    if (name) {
        member_gone(srv, name, len);
        free(name);
    }
}

void xr_channel_close(xr_server *srv, xr_conn *c, const char *name, size_t len)
{
    for (xr_receiver *r = *xr_conn_receivers(c); r; r = r->conn_next)
        if (r->ch->e->klen == len && memcmp(r->ch->e->key, name, len) == 0) {
            receiver_remove(srv, c, r);
            return;
        }
}

void xr_channels_conn_gone(xr_server *srv, xr_conn *c)
{
    xr_receiver **list = xr_conn_receivers(c);
    while (*list)
        receiver_remove(srv, c, *list);
}

int xr_publish(xr_server *srv, const char *channel, size_t clen, const char *msg, size_t mlen)
{
    if (!srv || !channel || !clen || (mlen && !msg))
        return XR_EINVAL;
    if (!srv->antenna)
        return XR_ESTATE;
    return antenna_publish(srv, channel, clen, msg ? msg : "", mlen);
}

/* ---- set-up ------------------------------------------------------------ */

void xr_channels_maps_init(xr_server *srv)
{
    xr_map_init(&srv->channels);
    xr_map_init(&srv->rooms);
    xr_map_init(&srv->memberships);
    xr_map_init(&srv->subs);
}

int xr_channels_init(xr_server *srv, char *err, size_t errlen)
{
    const char *url = srv->opts.antenna ? srv->opts.antenna : "memory://";
    int rc = xr_antenna_open(url, srv->opts.antenna_dir, &srv->antenna, &srv->antenna_dl,
                             err, errlen);
    if (rc < 0)
        return rc;
    srv->antenna_url = strdup(url);
    srv->antenna_host.message = on_antenna_message;
    srv->antenna_host.state = on_antenna_state;
    srv->antenna_host.log = on_antenna_log;
    srv->antenna_host.host = srv;
    char aerr[256] = "";
    srv->antenna_self = srv->antenna->create(srv->base, url, &srv->antenna_host, aerr, sizeof aerr);
    if (!srv->antenna_self) {
        snprintf(err, errlen, "antenna %s: %s", url, aerr);
        /* Leave no half-loaded antenna behind for a later attempt. */
        xr_antenna_close(srv->antenna_dl);
        srv->antenna_dl = NULL;
        srv->antenna = NULL;
        return XR_EANTENNA;
    }
    srv->antenna_up = srv->antenna->connected(srv->antenna_self);
    srv->antenna_was_up = srv->antenna_up;
    srv->room_timer = event_new(srv->base, -1, EV_PERSIST, on_room_timer, srv);
    if (!srv->room_timer || !srv->antenna_url) {
        snprintf(err, errlen, "out of memory");
        return XR_ENOMEM;
    }
    if (srv->opts.room_check_ms) {
        struct timeval tv = {srv->opts.room_check_ms / 1000, (srv->opts.room_check_ms % 1000) * 1000};
        event_add(srv->room_timer, &tv);
    }
    return XR_OK;
}

void xr_channels_free(xr_server *srv)
{
    size_t it;
    xr_map_entry *e;
    /* The antenna first: its last callbacks (answers cut short) may still
     * look rooms up. Connections are gone by now. */
    if (srv->antenna && srv->antenna_self)
        srv->antenna->destroy(srv->antenna_self);
    srv->antenna_self = NULL;
    for (e = xr_map_first(&srv->rooms, &it); e; e = xr_map_next(&srv->rooms, e, &it)) {
        xr_room *room = e->value;
        xr_map_clear(&room->members);
        free(room);
    }
    for (e = xr_map_first(&srv->memberships, &it); e; e = xr_map_next(&srv->memberships, e, &it)) {
        xr_membership *ms = e->value;
        free(ms->rooms);
        free(ms);
    }
    for (e = xr_map_first(&srv->channels, &it); e; e = xr_map_next(&srv->channels, e, &it))
        free(e->value);
    xr_map_clear(&srv->rooms);
    xr_map_clear(&srv->memberships);
    xr_map_clear(&srv->channels);
    xr_map_clear(&srv->subs);
    xr_buf_free(&srv->fanout);
    if (srv->room_timer)
        event_free(srv->room_timer);
    srv->room_timer = NULL;
    xr_antenna_close(srv->antenna_dl);
    srv->antenna_dl = NULL;
    free(srv->antenna_url);
    srv->antenna_url = NULL;
}

void xr_channels_metrics(const xr_server *srv, struct evbuffer *out)
{
    const xr_metrics *m = &srv->metrics;
    evbuffer_add_printf(out,
        "# HELP xraptor_channels Channels with receivers on this node.\n"
        "# TYPE xraptor_channels gauge\nxraptor_channels %zu\n"
        "# HELP xraptor_rooms Rooms open on this node.\n"
        "# TYPE xraptor_rooms gauge\nxraptor_rooms %zu\n"
        "# HELP xraptor_antenna_connected 1 while the broker connection is up.\n"
        "# TYPE xraptor_antenna_connected gauge\nxraptor_antenna_connected %d\n"
        "# HELP xraptor_antenna_publishes_total Messages posted to the antenna.\n"
        "# TYPE xraptor_antenna_publishes_total counter\nxraptor_antenna_publishes_total %llu\n"
        "# HELP xraptor_antenna_publish_errors_total Posts the antenna refused.\n"
        "# TYPE xraptor_antenna_publish_errors_total counter\nxraptor_antenna_publish_errors_total %llu\n"
        "# HELP xraptor_antenna_messages_total Messages received from the antenna.\n"
        "# TYPE xraptor_antenna_messages_total counter\nxraptor_antenna_messages_total %llu\n"
        "# HELP xraptor_deliveries_total Channel messages sent to clients.\n"
        "# TYPE xraptor_deliveries_total counter\nxraptor_deliveries_total %llu\n"
        "# HELP xraptor_antenna_reconnects_total Times the broker connection came back.\n"
        "# TYPE xraptor_antenna_reconnects_total counter\nxraptor_antenna_reconnects_total %llu\n"
        "# HELP xraptor_room_members_pruned_total Room members removed for no longer listening.\n"
        "# TYPE xraptor_room_members_pruned_total counter\nxraptor_room_members_pruned_total %llu\n",
        srv->channels.count, srv->rooms.count, srv->antenna ? srv->antenna_up : 0,
        (unsigned long long)m->publishes, (unsigned long long)m->publish_errors,
        (unsigned long long)m->antenna_messages, (unsigned long long)m->deliveries,
        (unsigned long long)m->antenna_reconnects, (unsigned long long)m->room_pruned);
}
