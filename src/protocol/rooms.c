/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rooms: a room is a channel whose messages are re-posted to each member
 * channel, members with a receiver here directly, others through the
 * antenna (docs/ARCHITECTURE.md section 5). A room keeps its members in an
 * array, each with its local channel when there is one, so a room message
 * costs no lookup per member; remote members are checked now and then and
 * pruned when no node holds them any more.
 */
#include "protocol/channels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "util/clock.h"

/* ---- rooms ------------------------------------------------------------- */

void xr_membership_free(xr_membership *ms)
{
    free(ms->rooms);
    free(ms);
}

static void membership_drop(xr_proto *p, const char *member, size_t len, xr_room *room)
{
    xr_membership *ms = xr_map_get(&p->memberships, member, len);
    if (!ms)
        return;
    for (size_t i = 0; i < ms->n; i++)
        if (ms->rooms[i] == room) {
            ms->rooms[i] = ms->rooms[--ms->n];
            break;
        }
    if (!ms->n) {
        xr_map_del(&p->memberships, member, len);
        xr_membership_free(ms);
    }
}

static xr_member *room_member(xr_room *room, const char *name, size_t len)
{
    uintptr_t i = (uintptr_t)xr_map_get(&room->index, name, len);
    return i ? &room->v[i - 1] : NULL;
}

void xr_room_free(xr_room *room)
{
    xr_map_clear(&room->index);
    free(room->v);
    free(room);
}

/* A room with presence hears its events on its presence channel while it
 * has members here. */
static void presence_sub(xr_proto *p, const xr_room *room, int on)
{
    char ch[XR_MAX_NAME + 2];
    size_t cl;
    if (!xr_presence_on(p, room->e->key, room->e->klen) ||
        !(cl = xr_presence_channel(room->e->key, room->e->klen, ch, sizeof ch)))
        return;
    if (on)
        xr_sub_ref(p, ch, cl);
    else
        xr_sub_unref(p, ch, cl);
}

/* Closes a room that has no members left. */
static void room_close_if_empty(xr_proto *p, xr_room *room)
{
    if (room->n)
        return;
    presence_sub(p, room, 0);
    xr_sub_unref(p, room->e->key, room->e->klen);
    xr_map_del(&p->rooms, room->e->key, room->e->klen);
    xr_room_free(room);
}

static void room_leave(xr_proto *p, xr_room *room, const char *member, size_t len)
{
    uintptr_t i = (uintptr_t)xr_map_get(&room->index, member, len);
    if (!i)
        return;
    membership_drop(p, member, len, room);
    if (!room->v[i - 1].ch)
        room->n_remote--;
    xr_presence_release(p, room->v[i - 1].pres);
    /* The last member takes the leaver's place. */
    size_t last = room->n - 1;
    if (i - 1 != last) {
        room->v[i - 1] = room->v[last];
        xr_map_put(&room->index, room->v[i - 1].name, room->v[i - 1].len, (void *)i);
    }
    room->n--;
    xr_map_del(&room->index, member, len);
    room_close_if_empty(p, room);
}

/* Who a member counts as in a room with presence: its connection's token
 * user, else the one given. XR_OK and *user (NULL: no presence for it),
 * or XR_EINVAL. */
static int presence_user(xr_proto *p, const char *room, size_t rl, const xr_channel *mch,
                         const char **user, const char *info)
{
    const char *given = *user;
    *user = NULL;
    if (!mch || !xr_presence_on(p, room, rl))
        return XR_OK;
    const char *tok = xr_conn_user(mch->head->pc->conn);
    *user = tok ? tok : given;
    if (!*user || xr_name_check(*user, strlen(*user), p->o->max_name_length) != XR_NAME_OK)
        return XR_EINVAL;
    if (info && (strlen(info) > p->o->presence_max_info || !xr_json_valid(info, strlen(info))))
        return XR_EINVAL;
    return XR_OK;
}

/*
 * A room re-posts its messages to members it has no channel for, through
 * the broker; a member that is itself a room here would post them back to
 * this room's own subscription, round after round (and answer "alive" for
 * itself, so it would never be pruned). Names of rooms and members are
 * therefore kept apart on a node.
 */
int xr_proto_room_join(xr_proto *p, const char *name, const char *member)
{
    return xr_proto_room_join_as(p, name, member, NULL, NULL);
}

int xr_proto_room_join_as(xr_proto *p, const char *name, const char *member, const char *user,
                          const char *info)
{
    if (!p || !name || !member)
        return XR_EINVAL;
    size_t nl = strlen(name), ml = strlen(member);
    if (xr_name_check(name, nl, p->o->max_name_length) != XR_NAME_OK ||
        xr_name_check(member, ml, p->o->max_name_length) != XR_NAME_OK)
        return XR_EINVAL;
    if (!p->antenna)
        return XR_ESTATE;
    if (xr_map_get(&p->rooms, member, ml) || xr_map_get(&p->memberships, name, nl))
        return XR_EINVAL;
    /* Every connection that receives the member channel here must be
     * granted the room. */
    xr_channel *mch = xr_map_get(&p->channels, member, ml);
    for (xr_receiver *r = mch ? mch->head : NULL; r; r = r->next)
        if (!xr_granted(r->pc->conn, XR_GRANT_ROOM, name, nl)) {
            p->denied = 1;
            return XR_EPERM;
        }
    if (presence_user(p, name, nl, mch && mch->head ? mch : NULL, &user, info) < 0)
        return XR_EINVAL;
    xr_room *room = xr_map_get(&p->rooms, name, nl);
    if (room && room_member(room, member, ml))
        return XR_OK;
    xr_membership *ms = xr_map_get(&p->memberships, member, ml);
    if (ms && ms->n >= p->o->max_rooms_per_member)
        return XR_ELIMIT;
    if (!room) {
        room = calloc(1, sizeof *room);
        if (!room || !(room->e = xr_map_put(&p->rooms, name, nl, room))) {
            free(room);
            return XR_ENOMEM;
        }
        xr_map_init(&room->index);
        xr_sub_ref(p, name, nl);
        presence_sub(p, room, 1);
    }
    if (!ms) {
        ms = calloc(1, sizeof *ms);
        if (!ms || !xr_map_put(&p->memberships, member, ml, ms)) {
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
    if (room->n == room->cap) {
        size_t cap = room->cap ? room->cap * 2 : 4;
        xr_member *v = realloc(room->v, cap * sizeof *v);
        if (v) {
            room->v = v;
            room->cap = cap;
        }
    }
    xr_map_entry *e = NULL;
    if (!ms || ms->n == ms->cap || room->n == room->cap ||
        !(e = xr_map_put(&room->index, member, ml, (void *)(uintptr_t)(room->n + 1)))) {
        if (ms && !ms->n) {
            xr_map_del(&p->memberships, member, ml);
            xr_membership_free(ms);
        }
        room_close_if_empty(p, room);
        return XR_ENOMEM;
    }
    xr_pres *pres = user ? xr_presence_hold(p, name, nl, user, strlen(user), info,
                                            info ? strlen(info) : 0) : NULL;
    room->v[room->n] = (xr_member){e->key, ml, mch, pres};
    room->n_remote += !room->v[room->n++].ch;
    ms->rooms[ms->n++] = room;
    return XR_OK;
}

int xr_proto_room_leave(xr_proto *p, const char *name, const char *member)
{
    if (!p || !name || !member)
        return XR_EINVAL;
    xr_room *room = xr_map_get(&p->rooms, name, strlen(name));
    if (!room || !room_member(room, member, strlen(member)))
        return XR_EINVAL;
    room_leave(p, room, member, strlen(member));
    return XR_OK;
}

size_t xr_proto_room_size(const xr_proto *p, const char *name)
{
    xr_room *room = xr_map_get(&p->rooms, name, strlen(name));
    return room ? room->n : 0;
}

/* A member whose last local receiver went leaves every room at once. */
void xr_member_gone(xr_proto *p, const char *member, size_t len)
{
    xr_membership *ms;
    while ((ms = xr_map_get(&p->memberships, member, len)) && ms->n)
        room_leave(p, ms->rooms[ms->n - 1], member, len);
}

/* A channel opened here for a name that is a member somewhere: its rooms
 * deliver to it directly from now on. */
void xr_member_here(xr_proto *p, xr_channel *ch)
{
    xr_membership *ms = xr_map_get(&p->memberships, ch->e->key, ch->e->klen);
    for (size_t i = 0; ms && i < ms->n; i++) {
        xr_member *m = room_member(ms->rooms[i], ch->e->key, ch->e->klen);
        if (m && !m->ch) {
            m->ch = ch;
            ms->rooms[i]->n_remote--;
        }
    }
}

/* Pruning: members with no receiver here are asked about through the
 * antenna (Redis: PUBSUB NUMSUB), like the Python X-raptor every 7 s. */
typedef struct alive_check {
    xr_proto *p;
    size_t rlen;
    size_t mlen;
    char names[];           /* room NUL member NUL */
} alive_check;

static void on_alive(int alive, void *arg)
{
    alive_check *ac = arg;
    if (!alive) {
        xr_proto *p = ac->p;
        xr_room *room = xr_map_get(&p->rooms, ac->names, ac->rlen);
        const char *member = ac->names + ac->rlen + 1;
        /* It may have come back here since the question was asked. */
        if (room && !xr_map_get(&p->channels, member, ac->mlen) &&
            room_member(room, member, ac->mlen)) {
            p->stats.room_pruned++;
            XR_DEBUG(p->log, "room %.64s: member %.64s no longer listens, removed",
                     ac->names, member);
            room_leave(p, room, member, ac->mlen);
        }
    }
    free(ac);
}

void xr_rooms_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_proto *p = arg;
    size_t it;
    for (xr_map_entry *r = xr_map_first(&p->rooms, &it); r; r = xr_map_next(&p->rooms, r, &it)) {
        xr_room *room = r->value;
        for (size_t i = 0; i < room->n; i++) {
            xr_member *m = &room->v[i];
            if (m->ch)
                continue;
            alive_check *ac = malloc(sizeof *ac + r->klen + m->len + 2);
            if (!ac)
                continue;
            ac->p = p;
            ac->rlen = r->klen;
            ac->mlen = m->len;
            memcpy(ac->names, r->key, r->klen + 1);
            memcpy(ac->names + r->klen + 1, m->name, m->len + 1);
            /* The answer comes later, through the loop, never from here:
             * the room is not changed under this walk. */
            if (p->antenna->is_alive(p->antenna_self, m->name, m->len, on_alive, ac) < 0)
                free(ac);
        }
    }
}
