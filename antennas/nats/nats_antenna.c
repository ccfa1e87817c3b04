/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nats:// — channels over NATS subjects (cnats).
 *
 * Threads: cnats reads, reconnects and calls back on threads of its own.
 * Its libevent adapter would move the socket onto our loop, but it needs a
 * lock-enabled libevent (evthread_use_pthreads before the server's event
 * base exists), which would put a mutex on every event operation of every
 * WebSocket connection. So cnats keeps its threads, and every callback it
 * makes is turned into an item on a mutex-protected queue and a byte on
 * the host's wake-up; the server's loop drains the queue and only then
 * calls the host.
 * No cnats thread ever touches xraptor state.
 *
 * Subjects: a channel made only of [A-Za-z0-9_-] is "xr.c.<name>"; any
 * other is "xr.b.<base64url(name)>", since NATS gives '.', '*', '>' and
 * white space meaning. is_alive is a presence probe: every node answers
 * requests on "xr.p.<...>" for the channels it subscribes; the server's
 * "no responders" status, or no answer within 1 s, means nobody listens.
 */
#define _GNU_SOURCE 1   /* dladdr */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <nats/nats.h>
#include <xraptor/antenna.h>

#if XR_ANTENNA_ABI_MINOR >= 5
#include "presence.h"
#endif
#include "history.h"

#define PROBE_TIMEOUT_MS 1000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

enum { IT_MSG, IT_UP, IT_DOWN, IT_PROBE_REPLY, IT_ERROR, IT_SYNC, IT_MALFORMED };

typedef struct item {
    struct item *next;
    int kind;
    uint64_t seq;            /* IT_PROBE_REPLY, IT_SYNC */
    int alive;
    size_t clen, mlen, elen; /* elen: a kept message's epoch */
    unsigned long long offset;
    char data[];             /* IT_MSG: channel, message, epoch; IT_ERROR: text */
} item;

/* A live channel's subscriptions: its messages, its kept messages (those
 * with history, published on the kept subject) and presence probes. */
typedef struct chan {
    natsSubscription *sub, *kept, *probe;
} chan;

/* The longest channel name carried: its subject, base64url-encoded, stays
 * well inside nats-server's 4096-byte control line (a longer SUB or PUB
 * line makes the server drop the connection, and cnats gives it up). */
#define NAME_MAX_BYTES 2048

#define WRITE_DEADLINE_MS 250
#define PING_INTERVAL_MS 2000

typedef struct probe {
    struct probe *next;
    struct nats_ant *owner;
    uint64_t seq;
    xr_antenna_alive_cb done;
    void *arg;
    struct event *timer;
} probe;

typedef struct nats_ant {
    struct event_base *base;
    xr_antenna_host host;
    natsOptions *opts;
    natsConnection *nc;
    int up;
    /* cnats threads -> loop */
    int wake_fd;             /* the host's wake-up */
    pthread_mutex_t mu;
    item *head, *tail;
    int closing;
    /* loop only */
    xr_antenna_names *chans; /* name -> chan, the host's keyed set */
    natsInbox *inbox;
    natsSubscription *inbox_sub;
    probe *probes;
    uint64_t seq;
    char server[256];
    char last_error[256];    /* logged once until the next connect */
#if XR_ANTENNA_ABI_MINOR >= 5
    nats_presence *pres;     /* made at the first presence call */
#endif
#if XR_ANTENNA_ABI_MINOR >= 7
    nats_history *hist;      /* made at the first history call */
#endif
    unsigned long long malformed;   /* kept messages dropped for a bad position */
} nats_ant;

/* ---- URL and subjects ------------------------------------------------------ */

#define MAX_SERVERS 16

/*
 * nats://[user:password@]host[:port][,host[:port]]...: the servers of one
 * cluster, tried in turn (cnats fails over between them and learns the
 * rest of the cluster from the one it reaches). Fills servers with one
 * full URL each, credentials repeated, when given room.
 */
static int parse_url(const char *url, char (*servers)[300], int *n, char *err, size_t errlen)
{
    if (strncmp(url, "nats://", 7) != 0 || !url[7] || strlen(url) > 1024) {
        snprintf(err, errlen, "nats antenna: '%s' is not nats://[user:password@]host[:port]"
                 "[,host[:port]...]", url);
        return XR_EINVAL;
    }
    const char *at = strrchr(url + 7, '@'), *h = at ? at + 1 : url + 7;
    size_t credlen = at ? (size_t)(at + 1 - (url + 7)) : 0;
    int count = 0;
    while (1) {
        size_t hl = strcspn(h, ",");
        const char *colon = memchr(h, ':', hl);
        if (hl == 0 || colon == h || memchr(h, '/', hl) || memchr(h, '@', hl)) {
            snprintf(err, errlen, "nats antenna: no host in '%.*s' of '%s' (nats://host:4222)",
                     (int)hl, h, url);
            return XR_EINVAL;
        }
        if (colon) {
            char *end;
            long port = strtol(colon + 1, &end, 10);
            if (end != h + hl || port < 1 || port > 65535) {
                snprintf(err, errlen, "nats antenna: bad port in '%.*s' of '%s'", (int)hl, h, url);
                return XR_EINVAL;
            }
        }
        if (count == MAX_SERVERS) {
            snprintf(err, errlen, "nats antenna: more than %d servers in '%s'", MAX_SERVERS, url);
            return XR_EINVAL;
        }
        if (servers)
            snprintf(servers[count], sizeof servers[count], "nats://%.*s%.*s", (int)credlen,
                     url + 7, (int)hl, h);
        count++;
        if (!h[hl])
            break;
        h += hl + 1;
    }
    if (n)
        *n = count;
    return 0;
}

static int check_url(const char *url, char *err, size_t errlen)
{
    return parse_url(url, NULL, NULL, err, errlen);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int plain_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

/* kind 'c' (channel), 'p' (presence probe), 'k' (where a post with
 * history goes: the stream's subject) or 'r' (where the stream hands it
 * on, once stored, to every node: history.c); returns a malloc'd subject. */
static char *subject(char kind, const char *name, size_t len)
{
    int plain = len > 0;
    for (size_t i = 0; i < len && plain; i++)
        plain = plain_char(name[i]);
    char *s = malloc(10 + (len / 3 + 1) * 4 + 1);
    if (!s)
        return NULL;
    char *o = s;
    if (kind == 'k' || kind == 'r')
        o += sprintf(s, "xr.%c.%c.", kind, plain ? 'c' : 'b');
    else
        o += sprintf(s, "xr.%c%s.", kind, plain ? "" : "b");
    if (plain) {
        memcpy(o, name, len);
        o += len;
    } else {
        const uint8_t *p = (const uint8_t *)name;
        for (size_t i = 0; i < len; i += 3) {
            uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0) |
                         (i + 2 < len ? p[i + 2] : 0);
            *o++ = b64[v >> 18];
            *o++ = b64[(v >> 12) & 63];
            if (i + 1 < len) *o++ = b64[(v >> 6) & 63];
            if (i + 2 < len) *o++ = b64[v & 63];
        }
    }
    *o = '\0';
    return s;
}

/* The channel a message subject ('c' or 'r') names; returns its length
 * in out. */
static size_t channel_of(const char *subj, char *out, size_t cap)
{
    const char *plain = strncmp(subj, "xr.c.", 5) == 0     ? subj + 5
                        : strncmp(subj, "xr.r.c.", 7) == 0 ? subj + 7 : NULL;
    if (plain) {
        size_t n = strlen(plain);
        if (n > cap)
            return 0;
        memcpy(out, plain, n);
        return n;
    }
    const char *b = strncmp(subj, "xr.cb.", 6) == 0    ? subj + 6
                    : strncmp(subj, "xr.r.b.", 7) == 0 ? subj + 7 : NULL;
    if (!b)
        return 0;
    size_t n = 0;
    uint32_t v = 0;
    int bits = 0;
    for (const char *p = b; *p && n < cap; p++) {
        const char *q = strchr(b64, *p);
        if (!q)
            return 0;
        v = v << 6 | (uint32_t)(q - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)(v >> bits);
        }
    }
    return n;
}

/* Keeps this module (and so cnats) mapped when the host unloads it: a
 * library thread that outlived the close would otherwise run code that is
 * gone (a crash at exit under load, right after the broker went down). */
static void pin_module(void)
{
    Dl_info info;
    if (dladdr((void *)pin_module, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

/* ---- cnats threads: enqueue only ---------------------------------------------- */

static void push(nats_ant *a, item *it)
{
    int wake = 0;
    it->next = NULL;
    pthread_mutex_lock(&a->mu);
    if (a->closing) {
        pthread_mutex_unlock(&a->mu);
        free(it);
        return;
    }
    if (a->tail)
        a->tail->next = it;
    else {
        a->head = it;
        wake = 1;
    }
    a->tail = it;
    pthread_mutex_unlock(&a->mu);
    if (wake)
        xr_antenna_wake(a->wake_fd);
}

static void push_kind(nats_ant *a, int kind, uint64_t seq, int alive)
{
    item *it = calloc(1, sizeof *it);
    if (it) {
        it->kind = kind;
        it->seq = seq;
        it->alive = alive;
        push(a, it);
    }
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    nats_ant *a = closure;
    const char *subj = natsMsg_GetSubject(msg), *epoch = NULL;
    size_t cap = strlen(subj), mlen = (size_t)natsMsg_GetDataLength(msg), elen = 0;
    unsigned long long offset = 0;
    int kept = 0;
#if XR_ANTENNA_ABI_MINOR >= 7
    /* Everything the stream republishes carries a position. */
    if (subj[3] == 'r' && (kept = nats_history_position(msg, &offset, &epoch, &elen)) != 1) {
        push_kind(a, IT_MALFORMED, 0, 0);
        natsMsg_Destroy(msg);
        return;
    }
    /* Offset 0 opens an epoch (history.c); it is no message. */
    if (kept && !offset) {
        natsMsg_Destroy(msg);
        return;
    }
#endif
    item *it = malloc(sizeof *it + cap + mlen + elen);
    if (it) {
        it->kind = IT_MSG;
        it->clen = channel_of(subj, it->data, cap);
        it->mlen = mlen;
        it->offset = kept ? offset : 0;
        it->elen = elen;
        memcpy(it->data + it->clen, natsMsg_GetData(msg), mlen);
        if (elen)
            memcpy(it->data + it->clen + mlen, epoch, elen);
        if (it->clen)
            push(a, it);
        else
            free(it);
    }
    natsMsg_Destroy(msg);
}

/* A history read's sync message (history.c), in its place among the
 * channels' messages: its token is the body. */
static void on_sync(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    char token[24];
    int n = natsMsg_GetDataLength(msg);
    if (n > 0 && n < (int)sizeof token) {
        memcpy(token, natsMsg_GetData(msg), (size_t)n);
        token[n] = '\0';
        push_kind(closure, IT_SYNC, strtoull(token, NULL, 10), 0);
    }
    natsMsg_Destroy(msg);
}

/* Answered right here: it touches only NATS, never xraptor. */
static void on_probe(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub, (void)closure;
    const char *reply = natsMsg_GetReply(msg);
    if (reply)
        natsConnection_Publish(nc, reply, "", 0);
    natsMsg_Destroy(msg);
}

static void on_inbox(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    const char *dot = strrchr(natsMsg_GetSubject(msg), '.');
    /* The server itself answers "no responders" when nobody listens:
     * a no, at once, rather than a timeout. */
    if (dot)
        push_kind(closure, IT_PROBE_REPLY, strtoull(dot + 1, NULL, 10),
                  !natsMsg_IsNoResponders(msg));
    natsMsg_Destroy(msg);
}

static void on_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    push_kind(closure, IT_UP, 0, 0);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    push_kind(closure, IT_DOWN, 0, 0);
}

/* Why the last attempt failed ("authorization violation", "connection
 * refused"): without it a wrong password would look like a broker down. */
static void push_error(nats_ant *a, natsConnection *nc, int closed)
{
    const char *text = NULL;
    if (natsConnection_GetLastError(nc, &text) == NATS_OK || !text || !*text)
        return;
    size_t n = strlen(text);
    item *it = malloc(sizeof *it + n + 1);
    if (it) {
        it->kind = IT_ERROR;
        it->alive = closed;
        memcpy(it->data, text, n + 1);
        push(a, it);
    }
}

/* cnats gives up on a server that refuses our credentials: the connection
 * is closed for good, and the reason must reach the log. */
static void on_closed(natsConnection *nc, void *closure)
{
    push_error(closure, nc, 1);
    push_kind(closure, IT_DOWN, 0, 0);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
                           void *closure)
{
    (void)sub, (void)err;
    push_error(closure, nc, 0);
}

static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
    push_error(closure, nc, 0);
    int64_t ms = BACKOFF_MIN_MS;
    while (attempts-- > 1 && ms < BACKOFF_MAX_MS)
        ms *= 2;
    return ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms;
}

/* ---- the loop ------------------------------------------------------------------- */

static void finish_probe(nats_ant *a, probe *p, int alive)
{
    for (probe **pp = &a->probes; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    event_free(p->timer);
    xr_antenna_alive_cb done = p->done;
    void *arg = p->arg;
    free(p);
    done(alive, arg);
}

static void on_wake(void *arg)
{
    nats_ant *a = arg;
    pthread_mutex_lock(&a->mu);
    item *it = a->head, *next;
    a->head = a->tail = NULL;
    pthread_mutex_unlock(&a->mu);
    for (; it; it = next) {
        next = it->next;
        switch (it->kind) {
        case IT_MSG:
#if XR_ANTENNA_ABI_MINOR >= 7
            if (it->elen && XR_ANTENNA_HOST_HAS(&a->host, message_at)) {
                a->host.message_at(a->host.host, it->data, it->clen, it->data + it->clen,
                                   it->mlen, it->offset, it->data + it->clen + it->mlen, it->elen);
                break;
            }
#endif
            a->host.message(a->host.host, it->data, it->clen, it->data + it->clen, it->mlen);
            break;
        case IT_SYNC:
#if XR_ANTENNA_ABI_MINOR >= 7
            if (a->hist)
                nats_history_synced(a->hist, it->seq);
#endif
            break;
        case IT_MALFORMED:
            if (a->malformed++ % 1000 == 0)
                a->host.log(a->host.host, XR_ANTENNA_LOG_WARN, "nats antenna: dropped a message "
                            "whose position is malformed (%llu so far)", a->malformed);
            break;
        case IT_ERROR:
            if (strncmp(a->last_error, it->data, sizeof a->last_error - 1) != 0) {
                snprintf(a->last_error, sizeof a->last_error, "%s", it->data);
                if (it->alive)
                    a->host.log(a->host.host, XR_ANTENNA_LOG_ERROR, "nats antenna: %s: gave up: %s (cnats drops a "
                                "server that refuses the URL's user:password; fix it and "
                                "restart)", a->server, it->data);
                else
                    a->host.log(a->host.host, XR_ANTENNA_LOG_WARN, "nats antenna: %s: %s", a->server, it->data);
            }
            break;
        case IT_UP:
            a->last_error[0] = '\0';
            /* fall through */
        case IT_DOWN:
            if (a->up != (it->kind == IT_UP)) {
                a->up = it->kind == IT_UP;
                a->host.state(a->host.host, a->up, a->server);
            }
            break;
        case IT_PROBE_REPLY:
            for (probe *p = a->probes; p; p = p->next)
                if (p->seq == it->seq) {
                    finish_probe(a, p, it->alive);
                    break;
                }
            break;
        }
        free(it);
    }
}

static void on_probe_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    probe *p = arg;
    finish_probe(p->owner, p, 0);
}

/* ---- the ops -------------------------------------------------------------------- */

static void destroy(void *self);

static void *create(struct event_base *base, const char *url, const xr_antenna_host *host,
                    char *err, size_t errlen)
{
    if (check_url(url, err, errlen) < 0)
        return NULL;
    if (xr_antenna_host_complete(host, err, errlen) < 0)
        return NULL;
    nats_ant *a = calloc(1, sizeof *a);
    if (a && !(a->chans = host->names_new())) {
        free(a);
        a = NULL;
    }
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->base = base;
    a->host = *host;
    pthread_mutex_init(&a->mu, NULL);
    const char *h = strrchr(url + 7, '@');
    snprintf(a->server, sizeof a->server, "nats at %s", h ? h + 1 : url + 7);
    if ((a->wake_fd = host->wakeup(host->host, on_wake, a)) < 0) {
        snprintf(err, errlen, "nats antenna: cannot set up its wake-up: %s", strerror(errno));
        destroy(a);
        return NULL;
    }
    natsStatus s = natsOptions_Create(&a->opts);
    char servers[MAX_SERVERS][300];
    const char *list[MAX_SERVERS];
    int n_servers = 0;
    parse_url(url, servers, &n_servers, err, errlen);   /* checked above */
    for (int k = 0; k < n_servers; k++)
        list[k] = servers[k];
    if (s == NATS_OK) s = natsOptions_SetServers(a->opts, list, n_servers);
    /* In the order given: nodes of one deployment can list the cluster in
     * different orders to spread themselves. */
    if (s == NATS_OK) s = natsOptions_SetNoRandomize(a->opts, true);
    if (s == NATS_OK) s = natsOptions_SetName(a->opts, "xraptor");
    if (s == NATS_OK) s = natsOptions_SetTimeout(a->opts, 2000);
    /* cnats writes from the caller's thread, which for a publish is the
     * loop: with no deadline a server that stops reading (stopped, not
     * closed) would block the whole node. A write that cannot finish in
     * WRITE_DEADLINE_MS fails the connection instead (posts then fail
     * until it is back), and pings find a silent server in seconds. */
    if (s == NATS_OK) s = natsOptions_SetWriteDeadline(a->opts, WRITE_DEADLINE_MS);
    if (s == NATS_OK) s = natsOptions_SetPingInterval(a->opts, PING_INTERVAL_MS);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(a->opts, 2);
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(a->opts, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(a->opts, -1);
    if (s == NATS_OK) s = natsOptions_SetCustomReconnectDelay(a->opts, reconnect_delay, a);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(a->opts, on_disconnected, a);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(a->opts, on_connected, a);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(a->opts, on_closed, a);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(a->opts, on_async_error, a);
    /* Every subscription's messages on one thread, in the order they came
     * in: a history read's sync message then follows every message that
     * came before it (history.c). One thread in place of one per
     * subscription, too. */
    if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(a->opts, true);
    /* Start even when the server is not up yet; it connects later. */
    if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(a->opts, true, on_connected, a);
    if (s == NATS_OK) {
        s = natsConnection_Connect(&a->nc, a->opts);
        if (s == NATS_OK)
            push_kind(a, IT_UP, 0, 0);
        else if (s == NATS_NOT_YET_CONNECTED)
            s = NATS_OK;
    }
    if (s == NATS_OK) s = natsInbox_Create(&a->inbox);
    if (s == NATS_OK) {
        char subj[128];
        snprintf(subj, sizeof subj, "%s.*", (const char *)a->inbox);
        s = natsConnection_Subscribe(&a->inbox_sub, a->nc, subj, on_inbox, a);
        /* cnats' first attempt runs on its own thread and may already
         * have closed the connection for good (a server that refused our
         * credentials): on_closed tells why, and the node runs on down,
         * as it does when the refusal comes a moment later. */
        if (s == NATS_CONNECTION_CLOSED)
            s = NATS_OK;
    }
    if (s != NATS_OK) {
        snprintf(err, errlen, "nats antenna: %s", natsStatus_GetText(s));
        destroy(a);
        return NULL;
    }
    return a;
}

static void destroy(void *self)
{
    nats_ant *a = self;
    pthread_mutex_lock(&a->mu);
    a->closing = 1;
    pthread_mutex_unlock(&a->mu);
    /* cnats 3.4 (Debian 12) can free a subscription under its read loop
     * while a message for it is being handled (nats.c #637, fixed in
     * 3.6), and its close frees the request-reply one before it joins
     * that loop. So traffic stops first: presence's threads finish their
     * call while the connection still answers (when it is down, the close
     * comes first and fails their call at once), then the close joins the
     * read loop, and only then do our subscriptions go. */
#if XR_ANTENNA_ABI_MINOR >= 5
    if (a->nc && natsConnection_Status(a->nc) == NATS_CONN_STATUS_CONNECTED)
        nats_presence_stop(a->pres);
#endif
#if XR_ANTENNA_ABI_MINOR >= 7
    /* Its worker's call finishes while the connection still answers, and
     * every caller hears back. */
    nats_history_stop(a->hist);
#endif
    if (a->nc)
        natsConnection_Close(a->nc);
    for (xr_antenna_cursor k = {0}; a->chans && a->host.names_next(a->chans, &k);) {
        chan *c = k.value;
        natsSubscription_Destroy(c->sub);
        natsSubscription_Destroy(c->kept);
        natsSubscription_Destroy(c->probe);
        free(c);
    }
    if (a->chans)
        a->host.names_free(a->chans);
    natsSubscription_Destroy(a->inbox_sub);
#if XR_ANTENNA_ABI_MINOR >= 7
    nats_history_free(a->hist);
#endif
#if XR_ANTENNA_ABI_MINOR >= 5
    /* Answers every call left; a worker still running (the connection was
     * down) has had its request failed by the close. */
    nats_presence_free(a->pres);
#endif
    if (a->nc)
        natsConnection_Destroy(a->nc);
    natsOptions_Destroy(a->opts);
    natsInbox_Destroy(a->inbox);
    /* Questions still open get "alive": never prune on shutdown. */
    while (a->probes)
        finish_probe(a, a->probes, 1);
    for (item *it = a->head, *next; it; it = next) {
        next = it->next;
        free(it);
    }
    /* cnats keeps library-wide threads and state: release them, waiting
     * for its threads to end. Only then is `a` freed: a closed or
     * disconnected callback may still be on its way from one of those
     * threads (it finds `closing` set). When they do not end in time, the
     * module must not be unmapped under them: it pins itself. */
    natsStatus cs = nats_CloseAndWait(2000);
    if (cs != NATS_OK) {
        a->host.log(a->host.host, XR_ANTENNA_LOG_WARN, "nats antenna: cnats did not stop its "
                    "threads (%s): the module stays loaded", natsStatus_GetText(cs));
        pin_module();
    }
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static int subscribe(void *self, const char *name, size_t len)
{
    nats_ant *a = self;
    if (len == 0 || len > NAME_MAX_BYTES)
        return XR_EINVAL;
    if (a->host.names_find(a->chans, name, len))
        return 0;
    chan *c = calloc(1, sizeof *c);
    char *subj = subject('c', name, len), *psubj = subject('p', name, len);
    char *ksubj = subject('r', name, len);
    natsStatus s = c && subj && psubj && ksubj ? NATS_OK : NATS_NO_MEMORY;
    /* cnats keeps subscriptions across reconnects itself. */
    if (s == NATS_OK) s = natsConnection_Subscribe(&c->sub, a->nc, subj, on_msg, a);
    if (s == NATS_OK) s = natsConnection_Subscribe(&c->kept, a->nc, ksubj, on_msg, a);
    if (s == NATS_OK) s = natsConnection_Subscribe(&c->probe, a->nc, psubj, on_probe, a);
    free(subj);
    free(psubj);
    free(ksubj);
    if (s == NATS_OK && a->host.names_put(a->chans, name, len, c) < 0)
        s = NATS_NO_MEMORY;
    if (s != NATS_OK) {
        if (c) {
            natsSubscription_Destroy(c->sub);
            natsSubscription_Destroy(c->kept);
            natsSubscription_Destroy(c->probe);
            free(c);
        }
        return s == NATS_NO_MEMORY ? XR_ENOMEM : XR_EANTENNA;
    }
    return 0;
}

static int unsubscribe(void *self, const char *name, size_t len)
{
    nats_ant *a = self;
    chan *c = a->host.names_del(a->chans, name, len);
    if (!c)
        return 0;
    natsSubscription_Unsubscribe(c->sub);
    natsSubscription_Unsubscribe(c->kept);
    natsSubscription_Unsubscribe(c->probe);
    natsSubscription_Destroy(c->sub);
    natsSubscription_Destroy(c->kept);
    natsSubscription_Destroy(c->probe);
    free(c);
    return 0;
}

static int publish(void *self, const char *ch, size_t clen, const char *msg, size_t mlen)
{
    nats_ant *a = self;
    /* Down: fail now; cnats' reconnect buffer would hide the outage. */
    if (clen == 0 || clen > NAME_MAX_BYTES)
        return XR_EINVAL;
    if (!a->up || mlen > INT32_MAX)
        return XR_EANTENNA;
    char *subj = subject('c', ch, clen);
    natsStatus s = subj ? natsConnection_Publish(a->nc, subj, msg, (int)mlen) : NATS_NO_MEMORY;
    free(subj);
    return s == NATS_OK ? 0 : -1;
}

static int is_alive(void *self, const char *ch, size_t len, xr_antenna_alive_cb done, void *arg)
{
    nats_ant *a = self;
    if (len == 0 || len > NAME_MAX_BYTES)
        return XR_EINVAL;
    if (!a->up)
        return XR_EANTENNA;
    probe *p = calloc(1, sizeof *p);
    char *subj = subject('p', ch, len), reply[128];
    if (!p || !subj || !(p->timer = evtimer_new(a->base, on_probe_timeout, p))) {
        free(p);
        free(subj);
        return XR_ENOMEM;
    }
    p->owner = a;
    p->seq = ++a->seq;
    p->done = done;
    p->arg = arg;
    snprintf(reply, sizeof reply, "%s.%llu", (const char *)a->inbox, (unsigned long long)p->seq);
    natsStatus s = natsConnection_PublishRequest(a->nc, subj, reply, "", 0);
    free(subj);
    if (s != NATS_OK) {
        event_free(p->timer);
        free(p);
        return XR_EANTENNA;
    }
    struct timeval tv = {PROBE_TIMEOUT_MS / 1000, (PROBE_TIMEOUT_MS % 1000) * 1000};
    evtimer_add(p->timer, &tv);
    p->next = a->probes;
    a->probes = p;
    return 0;
}

static int connected(void *self)
{
    return ((nats_ant *)self)->up;
}

#if XR_ANTENNA_ABI_MINOR >= 5
static nats_presence *pres_of(nats_ant *a)
{
    if (!a->pres) {
        char err[200];
        if (!(a->pres = nats_presence_new(a->base, a->nc, &a->host, err, sizeof err)))
            a->host.log(a->host.host, XR_ANTENNA_LOG_ERROR, "nats antenna: %s", err);
    }
    return a->pres;
}

static int presence_add(void *self, const char *room, size_t rlen, const char *user, size_t ulen,
                        const char *info, size_t ilen, int delta, xr_antenna_count_cb done,
                        void *arg)
{
    nats_ant *a = self;
    if (!a->up)
        return XR_EANTENNA;
    nats_presence *p = pres_of(a);
    return p ? nats_presence_add(p, room, rlen, user, ulen, info, ilen, delta, done, arg)
             : XR_EINVAL;
}

static int presence_get(void *self, const char *room, size_t rlen, int members,
                        xr_antenna_presence_cb done, void *arg)
{
    nats_ant *a = self;
    if (!a->up)
        return XR_EANTENNA;
    nats_presence *p = pres_of(a);
    return p ? nats_presence_get(p, room, rlen, members, done, arg) : XR_EINVAL;
}
#endif

#if XR_ANTENNA_ABI_MINOR >= 7
static nats_history *hist_of(nats_ant *a)
{
    if (!a->hist) {
        char err[200];
        if (!(a->hist = nats_history_new(a->base, a->nc, &a->host, on_sync, a, err, sizeof err)))
            a->host.log(a->host.host, XR_ANTENNA_LOG_ERROR, "nats antenna: %s", err);
    }
    return a->hist;
}

/* The history and the kept subject (malloc'd) a post or read of ch
 * goes to: 0, or the XR_E* to return. */
static int kept_target(nats_ant *a, const char *ch, size_t clen, nats_history **h, char **subj)
{
    if (clen == 0 || clen > NAME_MAX_BYTES)
        return XR_EINVAL;
    if (!a->up || !(*h = hist_of(a)))
        return XR_EANTENNA;
    return (*subj = subject('k', ch, clen)) ? 0 : XR_ENOMEM;
}

/* done NULL: a post nobody waits for (publish_kept). */
static int send_kept(void *self, const char *ch, size_t clen, const char *msg, size_t mlen,
                     size_t keep, unsigned long long ttl_ms, xr_antenna_kept_cb done, void *arg)
{
    nats_history *h;
    char *subj;
    int rc = kept_target(self, ch, clen, &h, &subj);
    if (rc == 0) {
        rc = nats_history_post(h, subj, msg, mlen, keep, ttl_ms, done, arg);
        free(subj);
    }
    return rc;
}

static int publish_kept(void *self, const char *ch, size_t clen, const char *msg, size_t mlen,
                        size_t keep, unsigned long long ttl_ms)
{
    return send_kept(self, ch, clen, msg, mlen, keep, ttl_ms, NULL, NULL);
}

static int publish_kept_at(void *self, const char *ch, size_t clen, const char *msg, size_t mlen,
                           size_t keep, unsigned long long ttl_ms, xr_antenna_kept_cb done,
                           void *arg)
{
    return done ? send_kept(self, ch, clen, msg, mlen, keep, ttl_ms, done, arg) : XR_EINVAL;
}

static int history(void *self, const char *ch, size_t clen, unsigned long long since,
                   size_t limit, unsigned long long ttl_ms, xr_antenna_history_cb done,
                   void *arg)
{
    nats_history *h;
    char *subj;
    int rc = kept_target(self, ch, clen, &h, &subj);
    if (rc == 0) {
        rc = nats_history_read(h, subj, since, limit, ttl_ms, done, arg);
        free(subj);
    }
    return rc;
}
#endif

XR_ANTENNA_MODULE("nats",
                  "NATS subjects (cnats); presence probes for is_alive; presence in JetStream KV; "
                  "history in a JetStream stream"
#if XR_ANTENNA_ABI_MINOR >= 5
                  , .presence_add = presence_add, .presence_get = presence_get
#endif
#if XR_ANTENNA_ABI_MINOR >= 7
                  , .publish_kept = publish_kept, .history = history,
                  .publish_kept_at = publish_kept_at
#endif
                  )
