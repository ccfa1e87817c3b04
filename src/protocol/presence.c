/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Presence: who is in a room, over every node. The broker keeps the counts
 * (the antenna's presence_add / presence_get, atomic there); this file
 * keeps what this node holds — how many of its member channels are each
 * user's in each room, the grace before a user's last one counts as gone —
 * and turns the broker's answers into join and leave events. An event goes
 * through the antenna on the room's presence channel ("\x01p" and the
 * room: a name no client can use, control bytes being outside the name
 * policy), so every node's members hear it once, from its publisher.
 */
#include "protocol/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "util/clock.h"
#include "util/glob.h"

struct xr_pres {
    xr_proto *p;
    xr_map_entry *e;            /* key: room, NUL, user */
    size_t rlen;
    unsigned conns;             /* member channels of the user here */
    unsigned counted;           /* connections the broker counts for us */
    struct event *grace;        /* the last one went: the leave waits */
    char *info;                 /* JSON, or NULL */
    size_t ilen;
};

/* What a broker answer needs, kept apart from the xr_pres (which may be
 * gone when the answer comes). */
typedef struct pres_call {
    xr_proto *p;
    int delta;
    size_t rlen, ulen, ilen;
    char text[];                /* room, user, info */
} pres_call;

static const char *key_room(const xr_pres *pr) { return pr->e->key; }
static const char *key_user(const xr_pres *pr) { return pr->e->key + pr->rlen + 1; }
static size_t key_ulen(const xr_pres *pr) { return pr->e->klen - pr->rlen - 1; }

static int matches_any(const char *const *pats, size_t n, const char *room, size_t len)
{
    for (size_t k = 0; k < n; k++)
        if (xr_glob_match(pats[k], strlen(pats[k]), room, len))
            return 1;
    return 0;
}

/* The flags' patterns, then xr_presence_enable's. */
int xr_presence_on(const xr_proto *p, const char *room, size_t len)
{
    return p->o->presence ||
           matches_any(p->o->presence_rooms, p->o->n_presence_rooms, room, len) ||
           matches_any((const char *const *)p->presence_patterns, p->n_presence_patterns, room,
                       len);
}

int xr_presence_any(const xr_proto *p)
{
    return p->o->presence || p->o->n_presence_rooms || p->n_presence_patterns;
}

int xr_proto_presence_enable(xr_proto *p, const char *pattern)
{
    if (!pattern || !*pattern)
        return XR_EINVAL;
    if (p->antenna)
        return XR_ESTATE;
    char **v = realloc(p->presence_patterns, (p->n_presence_patterns + 1) * sizeof *v);
    if (!v)
        return XR_ENOMEM;
    p->presence_patterns = v;
    if (!(v[p->n_presence_patterns] = strdup(pattern)))
        return XR_ENOMEM;
    p->n_presence_patterns++;
    return XR_OK;
}

size_t xr_presence_channel(const char *room, size_t len, char *buf, size_t cap)
{
    if (len + 2 > cap)
        return 0;
    buf[0] = '\x01';
    buf[1] = 'p';
    memcpy(buf + 2, room, len);
    return len + 2;
}

/* Announces a join or leave on the room's presence channel:
 * 'j' or 'l', then the delivery's payload {"user": U, "info": I}. */
static void announce(xr_proto *p, int joined, const char *room, size_t rlen, const char *user,
                     size_t ulen, const char *info, size_t ilen)
{
    char ch[XR_MAX_NAME + 2];
    size_t cl = xr_presence_channel(room, rlen, ch, sizeof ch);
    xr_buf b = {0};
    static const char a[] = "{\"user\": \"", c[] = "\", \"info\": ";
    int ok = cl && xr_buf_add(&b, joined ? "j" : "l", 1) == 0 &&
             xr_buf_add(&b, a, sizeof a - 1) == 0 && xr_buf_json_escaped(&b, user, ulen) == 0 &&
             xr_buf_add(&b, c, sizeof c - 1) == 0 &&
             xr_buf_add(&b, info && ilen ? info : "null", info && ilen ? ilen : 4) == 0 &&
             xr_buf_add(&b, "}", 1) == 0;
    if (ok && p->antenna->publish(p->antenna_self, ch, cl, b.p, b.len) < 0)
        XR_WARN(p->log, "presence: the %s of a user could not be announced (antenna down)",
                joined ? "join" : "leave");
    xr_buf_free(&b);
}

static void on_counted(void *arg, long long count)
{
    pres_call *call = arg;
    xr_proto *p = call->p;
    const char *room = call->text, *user = room + call->rlen, *info = user + call->ulen;
    if (count < 0 && p->stopping) {
        p->presence_cut++;         /* told once, by xr_channels_free */
    } else if (count < 0) {
        XR_WARN(p->log, "presence: the broker did not count a %s (%s)",
                call->delta > 0 ? "join" : "leave",
                count == XR_ENOMEM ? "out of memory" : "no answer");
    } else if (call->delta > 0 ? count == 1 : count == 0) {
        /* The user's first connection anywhere, or its last one gone. */
        announce(p, call->delta > 0, room, call->rlen, user, call->ulen, info, call->ilen);
    }
    free(call);
}

static int count(xr_proto *p, xr_pres *pr, int delta)
{
    size_t ul = key_ulen(pr);
    pres_call *call = malloc(sizeof *call + pr->rlen + ul + pr->ilen);
    if (!call)
        return XR_ENOMEM;
    *call = (pres_call){p, delta, pr->rlen, ul, pr->ilen};
    memcpy(call->text, key_room(pr), pr->rlen);
    memcpy(call->text + pr->rlen, key_user(pr), ul);
    if (pr->ilen)
        memcpy(call->text + pr->rlen + ul, pr->info, pr->ilen);
    int rc = p->antenna->presence_add(p->antenna_self, key_room(pr), pr->rlen, key_user(pr), ul,
                                      pr->info, pr->ilen, delta, on_counted, call);
    if (rc < 0) {
        free(call);
        XR_WARN(p->log, "presence: a %s could not be counted (%s)", delta > 0 ? "join" : "leave",
                rc == XR_ENOMEM ? "out of memory" : "the broker is down");
        return rc;
    }
    pr->counted = delta > 0 ? pr->counted + 1 : pr->counted - 1;
    return XR_OK;
}

static void pres_destroy(xr_pres *pr)
{
    if (pr->grace)
        event_free(pr->grace);
    free(pr->info);
    free(pr);
}

static void pres_free(xr_proto *p, xr_pres *pr)
{
    xr_map_del(&p->presence, pr->e->key, pr->e->klen);
    pres_destroy(pr);
}

/* The grace is over and the user did not come back to this node. */
static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_pres *pr = arg;
    xr_proto *p = pr->p;
    if (pr->conns)
        return;
    while (pr->counted && count(p, pr, -1) == XR_OK)
        ;
    pres_free(p, pr);
}

xr_pres *xr_presence_hold(xr_proto *p, const char *room, size_t rlen, const char *user,
                          size_t ulen, const char *info, size_t ilen)
{
    char key[2 * XR_MAX_NAME + 2];
    if (rlen + 1 + ulen > sizeof key)
        return NULL;
    memcpy(key, room, rlen);
    key[rlen] = '\0';
    memcpy(key + rlen + 1, user, ulen);
    size_t kl = rlen + 1 + ulen;
    xr_pres *pr = xr_map_get(&p->presence, key, kl);
    if (!pr) {
        if (!(pr = calloc(1, sizeof *pr)) || !(pr->e = xr_map_put(&p->presence, key, kl, pr))) {
            free(pr);
            return NULL;
        }
        pr->p = p;
        pr->rlen = rlen;
    }
    /* The latest info given is the one shown. */
    if (info) {
        char *copy = malloc(ilen ? ilen : 1);
        if (copy) {
            memcpy(copy, info, ilen);
            free(pr->info);
            pr->info = copy;
            pr->ilen = ilen;
        }
    }
    /* Back within the grace: its last connection is still counted, and
     * stands for this one; nothing is told. */
    if (pr->conns == 0 && pr->counted && pr->grace && evtimer_pending(pr->grace, NULL)) {
        evtimer_del(pr->grace);
        pr->conns = 1;
        return pr;
    }
    pr->conns++;
    count(p, pr, +1);
    return pr;
}

void xr_presence_release(xr_proto *p, xr_pres *pr)
{
    if (!pr || !pr->conns)
        return;
    /* Not the user's last connection here: counted down now. */
    if (--pr->conns) {
        if (pr->counted)
            count(p, pr, -1);
        return;
    }
    if (!pr->grace && !(pr->grace = evtimer_new(p->base, on_grace, pr))) {
        on_grace(-1, 0, pr);
        return;
    }
    struct timeval tv = xr_timeval_ms(p->o->presence_grace_ms);
    evtimer_add(pr->grace, &tv);
}

void xr_presence_free(xr_proto *p)
{
    size_t it;
    for (xr_map_entry *e = xr_map_first(&p->presence, &it); e;
         e = xr_map_next(&p->presence, e, &it))
        pres_destroy(e->value);
    xr_map_clear(&p->presence);
    for (size_t k = 0; k < p->n_presence_patterns; k++)
        free(p->presence_patterns[k]);
    free(p->presence_patterns);
    p->presence_patterns = NULL;
    p->n_presence_patterns = 0;
}

/* A dead node's user, removed by this node: told like any leave. */
void xr_presence_gone(void *host, const char *room, size_t rlen, const char *user, size_t ulen,
                      const char *info, size_t ilen)
{
    xr_proto *p = host;
    announce(p, 0, room, rlen, user, ulen, info, ilen);
}

int xr_presence_event(xr_proto *p, const char *name, size_t clen, const char *msg, size_t mlen,
                      xr_shared **tail)
{
    static const char join[] = "\",\"header\":{\"event\":\"join\"},\"method\":\"SUB\"}";
    static const char leave[] = "\",\"header\":{\"event\":\"leave\"},\"method\":\"SUB\"}";
    *tail = NULL;
    if (clen < 3 || mlen < 2 || (msg[0] != 'j' && msg[0] != 'l'))
        return XR_EINVAL;
    int joined = msg[0] == 'j';
    const char *room = name + 2, *json = msg + 1;
    size_t rlen = clen - 2, jlen = mlen - 1;
    if (p->presence_fn) {
        xr_json_fields f = {0};
        int st;
        const char *user = NULL, *info = NULL;
        size_t ul = 0;
        xr_json_fields_reset(&f, json, jlen);
        xr_json_member *m = xr_json_fields_get(&f, "user", 4, &st);
        xr_json_member *i = xr_json_fields_get(&f, "info", 4, &st);
        char rbuf[XR_MAX_NAME + 1], *ibuf = NULL;
        if (m && xr_json_member_str(&f, m, &user, &ul) == XR_OK && rlen <= XR_MAX_NAME) {
            if (i && i->type != XR_JSON_NULL && (ibuf = malloc(i->raw_len + 1))) {
                memcpy(ibuf, f.json + i->raw_off, i->raw_len);
                ibuf[i->raw_len] = '\0';
                info = ibuf;
            }
            memcpy(rbuf, room, rlen);
            rbuf[rlen] = '\0';
            p->presence_fn(p->owner, rbuf, user, info, joined, p->presence_ud);
        }
        free(ibuf);
        xr_json_fields_free(&f);
    }
    p->scratch.len = 0;
    if (xr_buf_json_escaped(&p->scratch, json, jlen) < 0 ||
        xr_buf_add(&p->scratch, joined ? join : leave, (joined ? sizeof join : sizeof leave) - 1) < 0)
        return XR_ENOMEM;
    *tail = xr_shared_new(p->scratch.p, p->scratch.len);
    return *tail ? XR_OK : XR_ENOMEM;
}

/* ---- queries ----------------------------------------------------------- */

typedef struct query {
    xr_proto *p;
    xr_request *req;            /* the route's, held; or NULL */
    xr_presence_cb done;        /* the C call's */
    void *ud;
    int members;
} query;

static void on_presence(void *arg, int rc, long long users, long long conns,
                        const xr_antenna_member *v, size_t n)
{
    query *q = arg;
    xr_buf b = {0};
    char num[64];
    if (rc == XR_OK) {
        int bad = 0;
        snprintf(num, sizeof num, "{\"users\": %lld, \"connections\": %lld", users, conns);
        bad |= xr_buf_add(&b, num, strlen(num));
        if (q->members)
            bad |= xr_buf_add(&b, ", \"members\": [", 14);
        for (size_t k = 0; q->members && v && k < n; k++) {
            bad |= xr_buf_add(&b, k ? ", {\"user\": \"" : "{\"user\": \"", k ? 12 : 10);
            bad |= xr_buf_json_escaped(&b, v[k].user, v[k].ulen);
            snprintf(num, sizeof num, "\", \"connections\": %lld, \"info\": ", v[k].connections);
            bad |= xr_buf_add(&b, num, strlen(num));
            bad |= xr_buf_add(&b, v[k].info && v[k].ilen ? v[k].info : "null",
                              v[k].info && v[k].ilen ? v[k].ilen : 4);
            bad |= xr_buf_add(&b, "}", 1);
        }
        if (q->members)
            bad |= xr_buf_add(&b, "]", 1);
        bad |= xr_buf_add(&b, "}", 1);
        if (bad)
            rc = XR_ENOMEM;
    }
    xr_answer_json(q->req, q->done, q->ud, rc, &b);
    xr_buf_free(&b);
    free(q);
}

void xr_answer_json(xr_request *req, void (*done)(int rc, const char *json, size_t len, void *ud),
                    void *ud, int rc, const xr_buf *json)
{
    if (req) {
        if (rc == XR_OK)
            xr_reply(req, json->p, json->len);
        else
            xr_proto_reply_error(req, "unavailable", "the broker could not answer");
        xr_request_unref(req);
    } else {
        done(rc == XR_OK ? XR_OK : XR_EANTENNA, rc == XR_OK ? json->p : NULL,
             rc == XR_OK ? json->len : 0, ud);
    }
}

static int ask(xr_proto *p, const char *room, size_t rlen, query *q)
{
    if (!p->antenna || !XR_ANTENNA_HAS(p->antenna, presence_get))
        return XR_ESTATE;
    return p->antenna->presence_get(p->antenna_self, room, rlen, q->members, on_presence, q);
}

int xr_proto_presence_query(xr_proto *p, const char *room, int members, xr_presence_cb done,
                            void *ud)
{
    size_t rl = room ? strlen(room) : 0;
    if (!room || !done || xr_name_check(room, rl, p->o->max_name_length) != XR_NAME_OK ||
        !xr_presence_on(p, room, rl))
        return XR_EINVAL;
    query *q = calloc(1, sizeof *q);
    if (!q)
        return XR_ENOMEM;
    *q = (query){p, NULL, done, ud, members != 0};
    int rc = ask(p, room, rl, q);
    if (rc < 0)
        free(q);
    return rc;
}

/* GET /xraptor/presence and /xraptor/presence_stats {"room": R}. */
static int presence_route(xr_request *r, void *ud)
{
    xr_proto *p = ud;
    const char *room;
    size_t rl;
    if (xr_payload_str(r, "room", &room, &rl) != XR_OK ||
        xr_name_check(room, rl, p->o->max_name_length) != XR_NAME_OK)
        return xr_proto_reply_error(r, "bad_request", "payload must be {\"room\": \"...\"}");
    if (!xr_presence_on(p, room, rl))
        return xr_proto_reply_error(r, "bad_request", "this room keeps no presence");
    if (!xr_request_allowed(r, XR_GRANT_ROOM, room, rl))
        return xr_proto_reply_error(r, "forbidden", "not granted by the connection's token");
    query *q = calloc(1, sizeof *q);
    if (!q)
        return XR_ENOMEM;
    int members = strcmp(xr_request_route(r), "/xraptor/presence") == 0;
    *q = (query){p, xr_request_ref(r), NULL, NULL, members};
    int rc = ask(p, room, rl, q);
    if (rc < 0) {
        free(q);
        xr_proto_reply_error(r, "unavailable", "the broker could not answer");
        xr_request_unref(r);
    }
    return XR_OK;
}

int xr_presence_start(xr_proto *p, char *err, size_t errlen)
{
    if (!xr_presence_any(p))
        return XR_OK;
    if (!XR_ANTENNA_HAS(p->antenna, presence_add) || !XR_ANTENNA_HAS(p->antenna, presence_get)) {
        snprintf(err, errlen, "presence is not available on this %s antenna module (no presence "
                 "members of antenna ABI 2.5; xraptor's memory://, redis:// and "
                 "redis-cluster:// have them, kafka:// refuses presence by design)",
                 p->antenna->scheme);
        return XR_EUSAGE;
    }
    /* An application's own routes of these names are its business. */
    int rc = xr_proto_route(p, "/xraptor/presence", XR_GET, presence_route, p);
    if (rc == XR_OK || rc == XR_EEXIST)
        rc = xr_proto_route(p, "/xraptor/presence_stats", XR_GET, presence_route, p);
    if (rc < 0 && rc != XR_EEXIST) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    return XR_OK;
}

void xr_proto_on_presence(xr_proto *p, xr_presence_fn fn, void *ud)
{
    p->presence_fn = fn;
    p->presence_ud = ud;
}
