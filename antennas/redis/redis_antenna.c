/* SPDX-License-Identifier: Apache-2.0 */
/*
 * redis:// — channels over Redis pub/sub, wire-compatible with the Python
 * X-raptor's RedisAntenna: channel names are the raw request_id / room id and
 * bodies are the posted text, so nodes of both can share one Redis.
 *
 * Two connections on the server's libevent loop: one in subscriber mode
 * carries every channel, the other publishes (hiredis' async context and
 * adapter) with a bounded number of posts awaiting replies. Either
 * dropping marks the antenna down; both are re-made with capped
 * exponential back-off and every live channel is subscribed again.
 *
 * The subscriber is a plain hiredis context driven by our own events, not
 * an async one: hiredis' async subscriber keeps every channel in a dict
 * under an unkeyed hash of the name, and names come from peers (a few
 * thousand made to collide cost seconds of CPU). Replies are read with
 * hiredis' reader and dispatched by us; the names live in the host's set.
 * Both readers are bounded (bound.h): a broken or hostile Redis gets its
 * connection dropped, not gigabytes of the node's memory.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <xraptor/antenna.h>

#include "bound.h"
#include "kept.h"
#include "stall.h"
#include "userinfo.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define SUBSCRIBE_BATCH 512

typedef struct config {
    char host[256];
    int port;
    char path[256];          /* unix socket, or "" */
    char user[128];
    char password[256];
    int db;
} config;

typedef struct redis {
    struct event_base *base;
    xr_antenna_host host;
    config cfg;
    redisAsyncContext *pub;
    redisContext *sub;              /* subscriber: our events, hiredis' reader */
    redis_bound pub_bound, sub_bound;   /* each connection's replies bounded */
    struct event *sub_rd, *sub_wr;
    int sub_connected;              /* TCP connect finished */
    int sub_ready, pub_ready, up;
    struct event *retry;
    unsigned backoff_ms;
    int destroying;
    xr_antenna_names *chans;        /* live channels, the host's keyed set */
    /* posts sent and not answered yet, and the watchdog over them */
    size_t pend_n, pend_bytes;
    stall replies;
    struct event *watchdog;
    /* presence: this node's id, and the timer that keeps its members
     * alive and removes those of nodes that stopped */
    char node[33];
    struct event *pres_timer;
    int pres_used;
    /* history reads waiting for the subscriber's PING, in send order */
    redis_kept_fifo syncs;
    unsigned long long kept_refused;    /* kept posts Redis refused */
    unsigned long long malformed;       /* messages dropped for a bad position */
} redis;

/* ---- URL ---------------------------------------------------------------- */

static int parse_url(const char *url, config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->port = 6379;
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "redis antenna: '%s' is not redis://[[user]:password@]host[:port][/db] "
                 "or redis://[[user]:password@]/path/to/redis.sock", url);
        return XR_EINVAL;
    }
    const char *p = url + 8, *at = url[8] == '/' ? NULL : strrchr(p, '@'), *slash;
    if (at) {
        if (redis_userinfo(p, at, c->user, sizeof c->user, c->password, sizeof c->password) < 0) {
            snprintf(err, errlen, "redis antenna: credentials too long in URL");
            return XR_EINVAL;
        }
        p = at + 1;
    }
    if (*p == '/') {
        /* redis:///run/redis/redis.sock (or redis://:pw@/run/…): a unix
         * socket, no host. */
        if (strlen(p) >= sizeof c->path) {
            snprintf(err, errlen, "redis antenna: socket path too long in '%s'", url);
            return XR_EINVAL;
        }
        strcpy(c->path, p);
        return 0;
    }
    slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = memchr(p, ':', hl);
    size_t nl = colon ? (size_t)(colon - p) : hl;
    if (nl == 0 || nl >= sizeof c->host) {
        snprintf(err, errlen, "redis antenna: no host in '%s' (redis://host:6379)", url);
        return XR_EINVAL;
    }
    memcpy(c->host, p, nl);
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != p + hl || port < 1 || port > 65535) {
            snprintf(err, errlen, "redis antenna: bad port in '%s'", url);
            return XR_EINVAL;
        }
        c->port = (int)port;
    }
    if (slash && slash[1]) {
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 100000) {
            snprintf(err, errlen, "redis antenna: bad database number in '%s'", url);
            return XR_EINVAL;
        }
        c->db = (int)db;
    }
    return 0;
}

static int check_url(const char *url, char *err, size_t errlen)
{
    config c;
    return parse_url(url, &c, err, errlen);
}

/* ---- connections ----------------------------------------------------------- */

static void connect_both(redis *r);

static void set_state(redis *r)
{
    int up = r->sub_ready && r->pub_ready;
    if (up == r->up)
        return;
    r->up = up;
    char detail[300];
    if (r->cfg.path[0])
        snprintf(detail, sizeof detail, "redis at %s", r->cfg.path);
    else
        snprintf(detail, sizeof detail, "redis at %s:%d", r->cfg.host, r->cfg.port);
    r->host.state(r->host.host, up, detail);
}

static void schedule_retry(redis *r)
{
    if (r->destroying || evtimer_pending(r->retry, NULL))
        return;
    unsigned ms = r->host.backoff(&r->backoff_ms, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(r->retry, &tv);
}

/* ---- the subscriber connection ------------------------------------------ */

static void resubscribe_all(redis *r);

static void sync_fail_all(redis *r);

static void sub_close(redis *r)
{
    sync_fail_all(r);
    if (!r->sub)
        return;
    event_free(r->sub_rd);
    event_free(r->sub_wr);
    redisFree(r->sub);
    r->sub = NULL;
    r->sub_rd = r->sub_wr = NULL;
    r->sub_connected = r->sub_ready = 0;
}

static void sub_failed(redis *r, const char *why)
{
    r->host.log(r->host.host, XR_ANTENNA_LOG_WARN, "redis antenna: subscriber connection lost: %s", why);
    sub_close(r);
    /* One gone means both are re-made: simpler than half a view. */
    if (r->pub)
        redisAsyncDisconnect(r->pub);
    set_state(r);
    schedule_retry(r);
}

static int sub_send(redis *r, int argc, const char **argv, const size_t *argl)
{
    if (redisAppendCommandArgv(r->sub, argc, argv, argl) != REDIS_OK)
        return XR_ENOMEM;
    if (r->sub_connected)
        event_add(r->sub_wr, NULL);
    return 0;
}

/* One SUBSCRIBE (or UNSUBSCRIBE) command for up to SUBSCRIBE_BATCH names. */
static int send_batch(redis *r, const char *verb, const char **names, const size_t *lens, int n)
{
    const char *argv[SUBSCRIBE_BATCH + 1];
    size_t argl[SUBSCRIBE_BATCH + 1];
    argv[0] = verb;
    argl[0] = strlen(verb);
    memcpy(argv + 1, names, (size_t)n * sizeof *names);
    memcpy(argl + 1, lens, (size_t)n * sizeof *lens);
    return sub_send(r, n + 1, argv, argl);
}

static void resubscribe_all(redis *r)
{
    const char *names[SUBSCRIBE_BATCH];
    size_t lens[SUBSCRIBE_BATCH];
    int n = 0;
    for (xr_antenna_cursor c = {0}; r->host.names_next(r->chans, &c);) {
        names[n] = c.name;
        lens[n++] = c.len;
        if (n == SUBSCRIBE_BATCH) {
            send_batch(r, "SUBSCRIBE", names, lens, n);
            n = 0;
        }
    }
    if (n)
        send_batch(r, "SUBSCRIBE", names, lens, n);
}

/* ---- history's meeting points on the subscriber ------------------------
 *
 * A read must see every message published after the channel's SUBSCRIBE
 * took effect, and every message the read returns must have reached the
 * host before its answer (the host drops the live copies of what the read
 * held, and only those that arrived before the answer). Both are a PING on
 * the subscriber connection: its reply comes after everything Redis did
 * for that connection before it, the SUBSCRIBE and the messages published
 * until then. So a read is PING, the script on the publisher, PING, answer. */

#if XR_ANTENNA_ABI_MINOR >= 6
static int is_sync(const char *s, size_t len)
{
    return len == REDIS_KEPT_SYNC_LEN && memcmp(s, REDIS_KEPT_SYNC, len) == 0;
}

static void sync_fail_all(redis *r)
{
    redis_kept_fail_all(&r->syncs);
}

/* Queues q behind a PING on the subscriber; XR_EANTENNA when it is down. */
static int sync_after(redis *r, redis_kept_q *q)
{
    static const char *const argv[2] = {"PING", REDIS_KEPT_SYNC};
    static const size_t argl[2] = {4, REDIS_KEPT_SYNC_LEN};
    if (!r->sub || !r->sub_ready || sub_send(r, 2, (const char **)argv, argl) < 0)
        return XR_EANTENNA;
    redis_kept_push(&r->syncs, q);
    return 0;
}

static void read_kept(redis *r, redis_kept_q *q);

static void synced(redis *r)
{
    redis_kept_q *q = redis_kept_synced(&r->syncs);
    if (q)
        read_kept(r, q);
}

#else
static int is_sync(const char *s, size_t len) { (void)s, (void)len; return 0; }
static void synced(redis *r) { (void)r; }
static void sync_fail_all(redis *r) { (void)r; }
#endif

/* Subscriber replies, in order: +OK (AUTH), +PONG (ready), then
 * ["subscribe", ch, n] and ["message", ch, body] arrays. 0, or -1 when
 * the connection must go. */
static int sub_reply(redis *r, const redisReply *rep)
{
    if (rep->type == REDIS_REPLY_ERROR) {
        r->host.log(r->host.host, XR_ANTENNA_LOG_ERROR, "redis antenna: subscriber refused: %s", rep->str);
        return -1;
    }
    if (rep->type == REDIS_REPLY_STRING && is_sync(rep->str, (size_t)rep->len)) {
        synced(r);      /* PING's answer outside subscribed mode */
        return 0;
    }
    if (rep->type == REDIS_REPLY_STATUS) {
        if (!r->sub_ready && strcmp(rep->str, "PONG") == 0) {
            r->sub_ready = 1;
            resubscribe_all(r);
            if (r->pub_ready)
                r->backoff_ms = 0;
            set_state(r);
        }
        return 0;
    }
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING && rep->element[0]->len == 4 &&
        memcmp(rep->element[0]->str, "pong", 4) == 0 && rep->element[1]->type == REDIS_REPLY_STRING &&
        is_sync(rep->element[1]->str, (size_t)rep->element[1]->len)) {
        synced(r);      /* the same in subscribed mode */
        return 0;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return 0;
    redisReply *kind = rep->element[0], *ch = rep->element[1], *body = rep->element[2];
    if (kind->type == REDIS_REPLY_STRING && kind->len == 7 && memcmp(kind->str, "message", 7) == 0 &&
        ch->type == REDIS_REPLY_STRING && body->type == REDIS_REPLY_STRING)
        redis_kept_deliver(&r->host, "redis", &r->malformed, ch->str, (size_t)ch->len, body->str,
                           (size_t)body->len);
    return 0;
}

static void on_sub_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    redis *r = arg;
    if (redisBufferRead(r->sub) != REDIS_OK) {
        sub_failed(r, r->sub->err ? r->sub->errstr : "closed");
        return;
    }
    void *reply;
    int rc;
    while ((rc = redisGetReplyFromReader(r->sub, &reply)) == REDIS_OK && reply) {
        int bad = sub_reply(r, reply);
        freeReplyObject(reply);
        if (bad < 0) {
            sub_failed(r, "an error reply");
            return;
        }
        if (!r->sub)
            return;
    }
    if (rc != REDIS_OK)
        sub_failed(r, r->sub_bound.why ? r->sub_bound.why
                      : r->sub->errstr[0] ? r->sub->errstr : "not a RESP reply");
    else if (redis_bound_check(&r->sub_bound, r->sub->reader) < 0)
        sub_failed(r, r->sub_bound.why);
}

static void on_sub_write(evutil_socket_t fd, short what, void *arg)
{
    redis *r = arg;
    if (!r->sub_connected) {
        int err = 0;
        socklen_t len = sizeof err;
        if ((what & EV_TIMEOUT) || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            r->host.log(r->host.host, XR_ANTENNA_LOG_WARN, "redis antenna: cannot connect: %s",
                        (what & EV_TIMEOUT) ? "timed out" : strerror(err));
            sub_close(r);
            schedule_retry(r);
            return;
        }
        r->sub_connected = 1;
        event_add(r->sub_rd, NULL);
    }
    int done = 0;
    if (redisBufferWrite(r->sub, &done) != REDIS_OK) {
        sub_failed(r, r->sub->errstr);
        return;
    }
    if (!done)
        event_add(r->sub_wr, NULL);
}

/* Connects without waiting; AUTH and PING are queued behind the connect,
 * and the subscriber is ready when PING is answered. */
static void sub_open(redis *r)
{
    redisContext *c = r->cfg.path[0] ? redisConnectUnixNonBlock(r->cfg.path)
                                     : redisConnectNonBlock(r->cfg.host, r->cfg.port);
    if (!c || c->err) {
        r->host.log(r->host.host, XR_ANTENNA_LOG_WARN, "redis antenna: cannot connect: %s",
                    c ? c->errstr : "out of memory");
        redisFree(c);
        return;
    }
    r->sub = c;
    redis_bound_attach(&r->sub_bound, c->reader);
    r->sub_rd = event_new(r->base, c->fd, EV_READ | EV_PERSIST, on_sub_read, r);
    r->sub_wr = event_new(r->base, c->fd, EV_WRITE, on_sub_write, r);
    struct timeval tv = {BACKOFF_MAX_MS / 1000, 0};
    if (!r->sub_rd || !r->sub_wr || event_add(r->sub_wr, &tv) < 0) {
        if (r->sub_rd)
            event_free(r->sub_rd);
        if (r->sub_wr)
            event_free(r->sub_wr);
        r->sub_rd = r->sub_wr = NULL;
        redisFree(c);
        r->sub = NULL;
        return;
    }
    const char *argv[3];
    size_t argl[3];
    int argc = redis_auth_argv(r->cfg.user, r->cfg.password, argv, argl);
    if (argc)
        redisAppendCommandArgv(c, argc, argv, argl);
    const char *ping = "PING";
    size_t pingl = 4;
    redisAppendCommandArgv(c, 1, &ping, &pingl);
}

/* ---- the publisher connection ----------------------------------------- */

static void on_auth(redisAsyncContext *ac, void *reply, void *arg)
{
    redis *r = arg;
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        r->host.log(r->host.host, XR_ANTENNA_LOG_ERROR, "redis antenna: publisher refused: %s", rep->str);
        redisAsyncDisconnect(ac);
    }
}

static void on_pong(redisAsyncContext *ac, void *reply, void *arg);

static void on_connect(const redisAsyncContext *ac, int status)
{
    redis *r = ac->data;
    if (status != REDIS_OK) {
        r->host.log(r->host.host, XR_ANTENNA_LOG_WARN, "redis antenna: cannot connect: %s", ac->errstr);
        /* hiredis frees the context after this callback. */
        r->pub = NULL;
        schedule_retry(r);
        return;
    }
    redisAsyncContext *c = (redisAsyncContext *)ac;
    if (r->cfg.password[0]) {
        if (r->cfg.user[0])
            redisAsyncCommand(c, on_auth, r, "AUTH %s %s", r->cfg.user, r->cfg.password);
        else
            redisAsyncCommand(c, on_auth, r, "AUTH %s", r->cfg.password);
    }
    if (r->cfg.db)
        redisAsyncCommand(c, on_auth, r, "SELECT %d", r->cfg.db);
    /* A TCP connect says only that the kernel took it (a stopped server's
     * backlog does): the connection is ready when Redis answers. */
    redisAsyncCommand(c, on_pong, r, "PING");
}

static void on_pong(redisAsyncContext *ac, void *reply, void *arg)
{
    redis *r = arg;
    redisReply *rep = reply;
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        return;     /* gone, or refused (on_auth disconnects) */
    if (ac == r->pub)
        r->pub_ready = 1;
    if (r->sub_ready && r->pub_ready)
        r->backoff_ms = 0;
    set_state(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    redis *r = ac->data;
    r->pub = NULL;
    r->pub_ready = 0;
    if (r->destroying)
        return;
    if (status != REDIS_OK)
        r->host.log(r->host.host, XR_ANTENNA_LOG_WARN, "redis antenna: connection lost: %s",
                    r->pub_bound.why ? r->pub_bound.why : ac->errstr);
    /* One gone means both are re-made: simpler than half a view. */
    sub_close(r);
    set_state(r);
    schedule_retry(r);
}

static void pub_drop(redis *r, const char *why);

/* The publisher's events: hiredis' libevent adapter, but for a look at the
 * reader's bounds before each read (it cannot be hooked after one). */
typedef struct pub_events {
    redis *r;
    redisAsyncContext *ac;
    struct event *rd, *wr;
} pub_events;

static void on_pub_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    pub_events *e = arg;
    if (redis_bound_check(&e->r->pub_bound, e->ac->c.reader) < 0)
        pub_drop(e->r, e->r->pub_bound.why);
    else
        redisAsyncHandleRead(e->ac);
}

static void on_pub_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    redisAsyncHandleWrite(((pub_events *)arg)->ac);
}

static void pub_add_read(void *p) { event_add(((pub_events *)p)->rd, NULL); }
static void pub_del_read(void *p) { event_del(((pub_events *)p)->rd); }
static void pub_add_write(void *p) { event_add(((pub_events *)p)->wr, NULL); }
static void pub_del_write(void *p) { event_del(((pub_events *)p)->wr); }

static void pub_cleanup(void *p)
{
    pub_events *e = p;
    event_free(e->rd);
    event_free(e->wr);
    free(e);
}

static int pub_attach(redis *r, redisAsyncContext *ac)
{
    pub_events *e = calloc(1, sizeof *e);
    if (!e)
        return XR_ENOMEM;
    *e = (pub_events){r, ac, event_new(r->base, ac->c.fd, EV_READ, on_pub_read, e),
                      event_new(r->base, ac->c.fd, EV_WRITE, on_pub_write, e)};
    if (!e->rd || !e->wr) {
        if (e->rd)
            event_free(e->rd);
        if (e->wr)
            event_free(e->wr);
        free(e);
        return XR_ENOMEM;
    }
    ac->ev.data = e;
    ac->ev.addRead = pub_add_read;
    ac->ev.delRead = pub_del_read;
    ac->ev.addWrite = pub_add_write;
    ac->ev.delWrite = pub_del_write;
    ac->ev.cleanup = pub_cleanup;
    redis_bound_attach(&r->pub_bound, ac->c.reader);
    /* Connecting: writable says the connect is done. */
    event_add(e->wr, NULL);
    return 0;
}

static redisAsyncContext *open_one(redis *r)
{
    redisAsyncContext *ac = r->cfg.path[0] ? redisAsyncConnectUnix(r->cfg.path)
                                           : redisAsyncConnect(r->cfg.host, r->cfg.port);
    if (!ac)
        return NULL;
    if (ac->err) {
        r->host.log(r->host.host, XR_ANTENNA_LOG_WARN, "redis antenna: cannot connect: %s", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = r;
    if (pub_attach(r, ac) < 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

static void connect_both(redis *r)
{
    if (!r->sub)
        sub_open(r);
    if (!r->pub)
        r->pub = open_one(r);
    if (!r->sub || !r->pub)
        schedule_retry(r);
}

/* Makes whichever connection is missing; one still closing is made again
 * by the retry its own disconnect schedules. */
static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    connect_both(arg);
}

/* ---- the ops ------------------------------------------------------------- */

static void on_watchdog(evutil_socket_t fd, short what, void *arg);

static void *create(struct event_base *base, const char *url, const xr_antenna_host *host,
                    char *err, size_t errlen)
{
    if (xr_antenna_host_complete(host, err, errlen) < 0)
        return NULL;
    redis *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (parse_url(url, &r->cfg, err, errlen) < 0) {
        free(r);
        return NULL;
    }
    r->base = base;
    r->host = *host;
    redis_node_id(r->node);
    r->retry = evtimer_new(base, on_retry, r);
    r->watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, r);
    struct timeval wd = {0, WATCHDOG_MS * 1000};
    if (!(r->chans = host->names_new()) || !r->retry || !r->watchdog ||
        event_add(r->watchdog, &wd) < 0) {
        host->names_free(r->chans);
        if (r->retry)
            event_free(r->retry);
        if (r->watchdog)
            event_free(r->watchdog);
        free(r);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    connect_both(r);
    return r;
}

static void destroy(void *self)
{
    redis *r = self;
    r->destroying = 1;
    if (r->pres_timer)
        event_free(r->pres_timer);
    /* Free, not disconnect: no callback may run after destroy returns. */
    sub_close(r);
    if (r->pub)
        redisAsyncFree(r->pub);
    event_free(r->retry);
    if (r->watchdog)
        event_free(r->watchdog);
    r->host.names_free(r->chans);
    free(r);
}

static int subscribe(void *self, const char *ch, size_t len)
{
    redis *r = self;
    if (r->host.names_find(r->chans, ch, len))
        return 0;
    if (r->host.names_put(r->chans, ch, len, NULL) < 0)
        return XR_ENOMEM;
    /* While down it is only remembered: the reconnect subscribes it. */
    if (r->sub_ready)
        return send_batch(r, "SUBSCRIBE", &ch, &len, 1);
    return 0;
}

static int unsubscribe(void *self, const char *ch, size_t len)
{
    redis *r = self;
    r->host.names_del(r->chans, ch, len);
    if (r->sub_ready)
        return send_batch(r, "UNSUBSCRIBE", &ch, &len, 1);
    return 0;
}

/* A post's reply, or NULL when its connection went first: either way it
 * no longer waits. */
static void on_published(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)reply;
    redis *r = ac->data;
    r->pend_n--;
    r->pend_bytes -= (size_t)(uintptr_t)arg;
    r->replies.replies++;
}

static int publish(void *self, const char *ch, size_t clen, const char *msg, size_t mlen)
{
    redis *r = self;
    /* Down, or too far behind: fail now rather than queue without bound. */
    if (!r->pub_ready || r->pend_n >= MAX_PENDING_POSTS ||
        r->pend_bytes + clen + mlen > MAX_PENDING_BYTES)
        return XR_EANTENNA;
    const char *argv[3] = {"PUBLISH", ch, msg};
    size_t argl[3] = {7, clen, mlen};
    if (redisAsyncCommandArgv(r->pub, on_published, (void *)(uintptr_t)(clen + mlen), 3, argv,
                              argl) != REDIS_OK)
        return XR_EANTENNA;
    r->pend_n++;
    r->pend_bytes += clen + mlen;
    return 0;
}

/* Posts waiting and no reply at all for REPLY_TIMEOUT_MS: the broker is
 * hung. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    redis *r = arg;
    if (!stall_tick(&r->replies, r->pend_n > 0) || !r->pub)
        return;
    char why[96];
    snprintf(why, sizeof why, "no reply for %u ms with %zu posts waiting", REPLY_TIMEOUT_MS,
             r->pend_n);
    pub_drop(r, why);
}

/* Free, not disconnect: hiredis would wait for the replies first. */
static void pub_drop(redis *r, const char *why)
{
    r->host.log(r->host.host, XR_ANTENNA_LOG_WARN, "redis antenna: %s: reconnecting", why);
    int connected = r->pub_ready;
    r->pub_bound.why = NULL;    /* said here: the disconnect callback says no more */
    redisAsyncFree(r->pub);     /* its disconnect callback runs when it was connected */
    if (!connected) {
        r->pub = NULL;
        schedule_retry(r);
    }
}

typedef struct alive_q {
    xr_antenna_alive_cb done;
    void *arg;
} alive_q;

static void on_numsub(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)ac;
    alive_q *q = arg;
    redisReply *rep = reply;
    /* ["channel", n]; no answer (connection lost) counts as alive, so a
     * broker outage never empties rooms. */
    int alive = 1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[1]->type == REDIS_REPLY_INTEGER)
        alive = rep->element[1]->integer > 0;
    q->done(alive, q->arg);
    free(q);
}

static int is_alive(void *self, const char *ch, size_t len, xr_antenna_alive_cb done, void *arg)
{
    redis *r = self;
    if (!r->pub_ready)
        return XR_EANTENNA;
    alive_q *q = malloc(sizeof *q);
    if (!q)
        return XR_ENOMEM;
    q->done = done;
    q->arg = arg;
    const char *argv[3] = {"PUBSUB", "NUMSUB", ch};
    size_t argl[3] = {6, 6, len};
    if (redisAsyncCommandArgv(r->pub, on_numsub, q, 3, argv, argl) != REDIS_OK) {
        free(q);
        return XR_EANTENNA;
    }
    return 0;
}

#if XR_ANTENNA_ABI_MINOR >= 1
/* /health's line: where, and how many channels this node holds there. */
static size_t describe(void *self, char *buf, size_t len)
{
    redis *r = self;
    int n = r->cfg.path[0]
            ? snprintf(buf, len, "redis at %s, %zu channel(s)", r->cfg.path, r->host.names_count(r->chans))
            : snprintf(buf, len, "redis at %s:%d, %zu channel(s)", r->cfg.host, r->cfg.port,
                       r->host.names_count(r->chans));
    return n < 0 ? 0 : (size_t)n;
}
#endif

static int connected(void *self)
{
    return ((redis *)self)->up;
}

/* ---- presence ------------------------------------------------------------
 *
 * Per room R: hash xr.p.R.u (user -> connections over every node), hash
 * xr.p.R.i (user -> info), counter xr.p.R.n (connections). Per node N: hash
 * xr.pn.N ("R\0user" -> its connections), key xr.pa.N while it lives, and
 * N in the set xr.pnodes. Each change is one script, so counts and events
 * agree however many nodes change them at once. Every quarter of the TTL
 * a node refreshes its own key (living three quarters) and runs the
 * reaper, which undoes, once, what a node whose key expired held: at most
 * the TTL after a node stopped, every node has lost its members.
 * (Standalone Redis: the scripts reach keys they do not declare.)
 */
#if XR_ANTENNA_ABI_MINOR >= 5
static const char ADD_LUA[] =
    "local d = tonumber(ARGV[3])\n"
    "local c = redis.call('HINCRBY', KEYS[1], ARGV[1], d)\n"
    "if redis.call('INCRBY', KEYS[3], d) <= 0 then redis.call('DEL', KEYS[3]) end\n"
    "if redis.call('HINCRBY', KEYS[4], ARGV[4], d) <= 0 then redis.call('HDEL', KEYS[4], ARGV[4]) end\n"
    "if c <= 0 then\n"
    "  redis.call('HDEL', KEYS[1], ARGV[1]); redis.call('HDEL', KEYS[2], ARGV[1]); c = 0\n"
    "elseif d > 0 and ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end\n"
    "redis.call('SET', KEYS[5], '1', 'PX', ARGV[6])\n"
    "redis.call('SADD', KEYS[6], ARGV[5])\n"
    "return c\n";

static const char GET_LUA[] =
    "local out = {redis.call('HLEN', KEYS[1]), tonumber(redis.call('GET', KEYS[3]) or '0')}\n"
    "if ARGV[1] == '1' then\n"
    "  local h = redis.call('HGETALL', KEYS[1])\n"
    "  for k = 1, #h, 2 do\n"
    "    out[#out + 1] = h[k]; out[#out + 1] = tonumber(h[k + 1])\n"
    "    out[#out + 1] = redis.call('HGET', KEYS[2], h[k]) or ''\n"
    "  end\n"
    "end\n"
    "return out\n";

static const char REAP_LUA[] =
    "local out = {}\n"
    "for _, n in ipairs(redis.call('SMEMBERS', 'xr.pnodes')) do\n"
    "  if n ~= ARGV[1] and redis.call('EXISTS', 'xr.pa.' .. n) == 0 then\n"
    "    local h = redis.call('HGETALL', 'xr.pn.' .. n)\n"
    "    for k = 1, #h, 2 do\n"
    "      local f, cnt = h[k], tonumber(h[k + 1])\n"
    "      local z = string.find(f, '\\0', 1, true)\n"
    "      local room, user = string.sub(f, 1, z - 1), string.sub(f, z + 1)\n"
    "      local p = 'xr.p.' .. room\n"
    "      if redis.call('DECRBY', p .. '.n', cnt) <= 0 then redis.call('DEL', p .. '.n') end\n"
    "      if redis.call('HINCRBY', p .. '.u', user, -cnt) <= 0 then\n"
    "        local info = redis.call('HGET', p .. '.i', user) or ''\n"
    "        redis.call('HDEL', p .. '.u', user); redis.call('HDEL', p .. '.i', user)\n"
    "        out[#out + 1] = room; out[#out + 1] = user; out[#out + 1] = info\n"
    "      end\n"
    "    end\n"
    "    redis.call('DEL', 'xr.pn.' .. n); redis.call('SREM', 'xr.pnodes', n)\n"
    "  end\n"
    "end\n"
    "return out\n";

static void on_reaped(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)arg;
    redis *r = ac->data;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t k = 0; k + 2 < rep->elements; k += 3) {
        redisReply **e = rep->element + k;
        if (e[0]->type != REDIS_REPLY_STRING || e[1]->type != REDIS_REPLY_STRING ||
            e[2]->type != REDIS_REPLY_STRING)
            continue;
        r->host.presence_gone(r->host.host, e[0]->str, e[0]->len, e[1]->str, e[1]->len,
                              e[2]->len ? e[2]->str : NULL, e[2]->len);
    }
}

/* This node lives on; the members of those that stopped go. */
static void on_pres_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    redis *r = arg;
    if (!r->pub_ready || !r->pres_used)
        return;
    char alive[48], ttl[24];
    snprintf(alive, sizeof alive, "xr.pa.%s", r->node);
    snprintf(ttl, sizeof ttl, "%llu", r->host.presence_ttl_ms * 3 / 4);
    const char *set[5] = {"SET", alive, "1", "PX", ttl};
    redisAsyncCommandArgv(r->pub, NULL, NULL, 5, set, NULL);
    const char *sadd[3] = {"SADD", "xr.pnodes", r->node};
    redisAsyncCommandArgv(r->pub, NULL, NULL, 3, sadd, NULL);
    const char *reap[4] = {"EVAL", REAP_LUA, "0", r->node};
    redisAsyncCommandArgv(r->pub, on_reaped, NULL, 4, reap, NULL);
}

static int pres_start(redis *r)
{
    if (r->pres_timer)
        return 0;
    if (!XR_ANTENNA_HOST_HAS(&r->host, presence_gone) || !r->host.presence_ttl_ms)
        return XR_EINVAL;
    unsigned long long q = r->host.presence_ttl_ms / 4;
    struct timeval tv = {(time_t)(q / 1000), (suseconds_t)(q % 1000) * 1000};
    if (!(r->pres_timer = event_new(r->base, -1, EV_PERSIST, on_pres_timer, r)) ||
        event_add(r->pres_timer, &tv) < 0)
        return XR_ENOMEM;
    return 0;
}

typedef struct count_q {
    xr_antenna_count_cb done;
    void *arg;
} count_q;

static void on_counted(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)ac;
    count_q *q = arg;
    redisReply *rep = reply;
    q->done(q->arg, rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : XR_EANTENNA);
    free(q);
}

static int presence_add(void *self, const char *room, size_t rlen, const char *user, size_t ulen,
                        const char *info, size_t ilen, int delta, xr_antenna_count_cb done,
                        void *arg)
{
    redis *r = self;
    redis_room_keys rk;
    char field[2200], node[48], alive[48], d[4], ttl[24];
    if (redis_room_keys_of(room, rlen, 0, &rk) < 0 || rlen + 1 + ulen > sizeof field ||
        (delta != 1 && delta != -1))
        return XR_EINVAL;
    int rc = pres_start(r);
    if (rc < 0)
        return rc;
    if (!r->pub_ready)
        return XR_EANTENNA;
    count_q *q = malloc(sizeof *q);
    if (!q)
        return XR_ENOMEM;
    *q = (count_q){done, arg};
    memcpy(field, room, rlen);
    field[rlen] = '\0';
    memcpy(field + rlen + 1, user, ulen);
    snprintf(node, sizeof node, "xr.pn.%s", r->node);
    snprintf(alive, sizeof alive, "xr.pa.%s", r->node);
    snprintf(d, sizeof d, "%d", delta);
    snprintf(ttl, sizeof ttl, "%llu", r->host.presence_ttl_ms * 3 / 4);
    const char *argv[15] = {"EVAL", ADD_LUA, "6", rk.k[0], rk.k[1], rk.k[2], node, alive,
                            "xr.pnodes", user, info ? info : "", d, field, r->node, ttl};
    size_t argl[15] = {4, sizeof ADD_LUA - 1, 1, rk.l[0], rk.l[1], rk.l[2], strlen(node),
                       strlen(alive), 9,
                       ulen, info ? ilen : 0, strlen(d), rlen + 1 + ulen, strlen(r->node),
                       strlen(ttl)};
    if (redisAsyncCommandArgv(r->pub, on_counted, q, 15, argv, argl) != REDIS_OK) {
        free(q);
        return XR_EANTENNA;
    }
    r->pres_used = 1;
    return 0;
}

typedef struct get_q {
    xr_antenna_presence_cb done;
    void *arg;
} get_q;

static void on_got(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)ac;
    get_q *q = arg;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER || rep->element[1]->type != REDIS_REPLY_INTEGER) {
        q->done(q->arg, XR_EANTENNA, 0, 0, NULL, 0);
        free(q);
        return;
    }
    size_t n = (rep->elements - 2) / 3, k = 0;
    xr_antenna_member *v = n ? calloc(n, sizeof *v) : NULL;
    for (size_t i = 2; v && i + 2 < rep->elements; i += 3) {
        redisReply **e = rep->element + i;
        if (e[0]->type != REDIS_REPLY_STRING || e[1]->type != REDIS_REPLY_INTEGER ||
            e[2]->type != REDIS_REPLY_STRING)
            continue;
        v[k++] = (xr_antenna_member){e[0]->str, e[0]->len, e[1]->integer,
                                     e[2]->len ? e[2]->str : NULL, e[2]->len};
    }
    if (n && !v)
        q->done(q->arg, XR_ENOMEM, 0, 0, NULL, 0);
    else
        q->done(q->arg, XR_OK, rep->element[0]->integer, rep->element[1]->integer, v, k);
    free(v);
    free(q);
}

static int presence_get(void *self, const char *room, size_t rlen, int members,
                        xr_antenna_presence_cb done, void *arg)
{
    redis *r = self;
    redis_room_keys rk;
    if (redis_room_keys_of(room, rlen, 0, &rk) < 0)
        return XR_EINVAL;
    if (!r->pub_ready)
        return XR_EANTENNA;
    get_q *q = malloc(sizeof *q);
    if (!q)
        return XR_ENOMEM;
    *q = (get_q){done, arg};
    const char *argv[7] = {"EVAL", GET_LUA, "3", rk.k[0], rk.k[1], rk.k[2], members ? "1" : "0"};
    size_t argl[7] = {4, sizeof GET_LUA - 1, 1, rk.l[0], rk.l[1], rk.l[2], 1};
    if (redisAsyncCommandArgv(r->pub, on_got, q, 7, argv, argl) != REDIS_OK) {
        free(q);
        return XR_EANTENNA;
    }
    return 0;
}
#endif

/* ---- history (kept.h says how it is kept) ----------------------------- */
#if XR_ANTENNA_ABI_MINOR >= 6

/* Epochs begin with this much of the node's random id: two nodes making
 * one at the same microsecond still make different ones. */
#define EPOCH_SEED_LEN 12

/* A kept post's reply: an error is a post lost (a key of another type,
 * Redis out of memory, a Redis older than 6.2), said, not hidden. */
static void on_kept(redisAsyncContext *ac, void *reply, void *arg)
{
    redis *r = ac->data;
    redisReply *rep = reply;
    on_published(ac, reply, arg);
    if (rep && rep->type == REDIS_REPLY_ERROR && r->kept_refused++ % 1000 == 0)
        r->host.log(r->host.host, XR_ANTENNA_LOG_ERROR,
                    "redis antenna: a post with history was refused (%llu so far): %s",
                    r->kept_refused, rep->str);
}

/* A post told its position when Redis answers (publish_kept_at). */
typedef struct kept_at {
    size_t cost;
    xr_antenna_kept_cb done;
    void *arg;
} kept_at;

static void on_kept_at(redisAsyncContext *ac, void *reply, void *arg)
{
    kept_at *k = arg;
    const redisReply *rep = reply;
    on_kept(ac, reply, (void *)(uintptr_t)k->cost);
    unsigned long long offset = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer > 0 &&
        rep->element[1]->type == REDIS_REPLY_STRING && rep->element[1]->len >= 1 &&
        rep->element[1]->len <= REDIS_KEPT_EPOCH_MAX) {
        offset = (unsigned long long)rep->element[0]->integer;
        k->done(k->arg, 0, offset, rep->element[1]->str, (size_t)rep->element[1]->len);
    } else {
        k->done(k->arg, XR_EANTENNA, 0, NULL, 0);
    }
    free(k);
}

static int send_kept(redis *r, const char *ch, size_t clen, const char *msg, size_t mlen,
                     size_t keep, unsigned long long ttl_ms, xr_antenna_kept_cb done, void *arg)
{
    redis_kept_keys k;
    if (!keep || !ttl_ms || redis_kept_keys_of(ch, clen, NULL, &k) < 0)
        return XR_EINVAL;
    size_t cost = clen + mlen + redis_kept_publish_lua_len;
    if (!r->pub_ready || r->pend_n >= MAX_PENDING_POSTS || r->pend_bytes + cost > MAX_PENDING_BYTES)
        return XR_EANTENNA;
    char keeps[24], ttl[24], meta[24];
    unsigned long long meta_ms = ttl_ms > REDIS_KEPT_META_MS ? ttl_ms : REDIS_KEPT_META_MS;
    const char *av[11] = {"EVAL", redis_kept_publish_lua, "2", k.k[0], k.k[1], ch, msg,
                          keeps, ttl, r->node, meta};
    size_t al[11] = {4, redis_kept_publish_lua_len, 1, k.l[0], k.l[1], clen, mlen,
                     (size_t)snprintf(keeps, sizeof keeps, "%zu", keep),
                     (size_t)snprintf(ttl, sizeof ttl, "%llu", ttl_ms), EPOCH_SEED_LEN,
                     (size_t)snprintf(meta, sizeof meta, "%llu", meta_ms)};
    kept_at *ka = NULL;
    if (done) {
        if (!(ka = malloc(sizeof *ka)))
            return XR_ENOMEM;
        *ka = (kept_at){cost, done, arg};
    }
    if (redisAsyncCommandArgv(r->pub, ka ? on_kept_at : on_kept,
                              ka ? (void *)ka : (void *)(uintptr_t)cost, 11, av, al) != REDIS_OK) {
        free(ka);
        return XR_EANTENNA;
    }
    r->pend_n++;
    r->pend_bytes += cost;
    return 0;
}

static int publish_kept(void *self, const char *ch, size_t clen, const char *msg, size_t mlen,
                        size_t keep, unsigned long long ttl_ms)
{
    return send_kept(self, ch, clen, msg, mlen, keep, ttl_ms, NULL, NULL);
}

#if XR_ANTENNA_ABI_MINOR >= 7
static int publish_kept_at(void *self, const char *ch, size_t clen, const char *msg, size_t mlen,
                           size_t keep, unsigned long long ttl_ms, xr_antenna_kept_cb done,
                           void *arg)
{
    return done ? send_kept(self, ch, clen, msg, mlen, keep, ttl_ms, done, arg) : XR_EINVAL;
}
#endif

/* Element i of the read script's reply, for redis_kept_take. */
static const char *reply_str(const void *reply, size_t i, size_t *len)
{
    const redisReply *e = ((const redisReply *)reply)->element[i];
    if (e->type != REDIS_REPLY_STRING)
        return NULL;
    *len = (size_t)e->len;
    return e->str;
}

static void on_kept_read(redisAsyncContext *ac, void *reply, void *arg)
{
    redis *r = ac->data;
    redis_kept_q *q = arg;
    const redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        r->host.log(r->host.host, XR_ANTENNA_LOG_WARN, "redis antenna: a history read was refused: %s",
                    rep->str);
    int rc = rep && rep->type == REDIS_REPLY_ARRAY
                 ? redis_kept_take(&q->rd, rep, rep->elements, reply_str) : XR_EANTENNA;
    q->read = 1;
    if (rc < 0 || r->destroying || (rc = sync_after(r, q)) < 0)
        redis_kept_fail(q, rc);
}

static void read_kept(redis *r, redis_kept_q *q)
{
    redis_kept_keys k;
    redis_kept_args a;
    if (!r->pub_ready || redis_kept_keys_of(q->ch, q->clen, NULL, &k) < 0) {
        redis_kept_fail(q, XR_EANTENNA);
        return;
    }
    redis_kept_read_args(q, &k, r->node, EPOCH_SEED_LEN, &a);
    if (redisAsyncCommandArgv(r->pub, on_kept_read, q, 10, a.argv, a.lens) != REDIS_OK)
        redis_kept_fail(q, XR_EANTENNA);
}

static int history(void *self, const char *ch, size_t clen, unsigned long long since,
                   size_t limit, unsigned long long ttl_ms, xr_antenna_history_cb done,
                   void *arg)
{
    redis *r = self;
    redis_kept_keys k;
    if (redis_kept_keys_of(ch, clen, NULL, &k) < 0)
        return XR_EINVAL;
    if (!r->pub_ready || !r->sub_ready)
        return XR_EANTENNA;
    redis_kept_q *q = redis_kept_q_new(r, NULL, ch, clen, since, limit, ttl_ms, done, arg);
    if (!q)
        return XR_ENOMEM;
    if (sync_after(r, q) < 0) {
        free(q);
        return XR_EANTENNA;
    }
    return 0;
}
#endif

XR_ANTENNA_MODULE("redis",
                  "Redis pub/sub (hiredis); shares channels with Python X-raptor nodes",
                  .describe = describe
#if XR_ANTENNA_ABI_MINOR >= 5
                  , .presence_add = presence_add, .presence_get = presence_get
#endif
#if XR_ANTENNA_ABI_MINOR >= 6
                  , .publish_kept = publish_kept, .history = history
#endif
#if XR_ANTENNA_ABI_MINOR >= 7
                  , .publish_kept_at = publish_kept_at
#endif
                  )
