/* SPDX-License-Identifier: Apache-2.0 */
/*
 * redis-cluster:// — channels over Redis Cluster's sharded pub/sub
 * (SSUBSCRIBE / SPUBLISH, Redis 7). A channel lives on the master that owns
 * its hash slot, CRC16(name) mod 16384 with {hash tags} honoured, so its
 * traffic stays on one shard instead of being broadcast to every node of
 * the cluster. Channel names and bodies are the ones redis:// uses.
 *
 * Why RESP is spoken here rather than through hiredis: hiredis 0.14 knows
 * nothing of clusters, and its async context asserts on an "smessage" it
 * did not expect (it only knows SUBSCRIBE's subscriber mode). So each
 * connection is a socket on the server's loop with a RESP writer and a
 * parser that never allocates per reply.
 *
 * Two connections per master, as on redis:// (RESP2: a connection that
 * subscribed can no longer publish): `sub` carries SSUBSCRIBE and the
 * messages, `cmd` carries SPUBLISH, PUBSUB SHARDNUMSUB and CLUSTER SLOTS,
 * pipelined, each command kept until its reply so that a -MOVED or -ASK
 * can send it on to the right master.
 *
 * The slot map comes from CLUSTER SLOTS asked of any reachable node (a
 * seed from the URL at first; a replica answers too). It is asked again
 * when a reply says MOVED, when a master pushes "sunsubscribe" because a
 * slot left it, and when a master's connection drops (every 100 ms to 1 s
 * until its slots have a reachable owner: a replica's promotion). After
 * each change every channel is moved to its owner.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <xraptor/antenna.h>

#include "kept.h"
#include "stall.h"
#include "resp.h"
#include "userinfo.h"

#define N_SLOTS RESP_SLOTS
#define MAX_SEEDS 16
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define REFRESH_MAX_MS 1000     /* a failover is noticed within this */
#define CONNECT_TIMEOUT_MS 3000

typedef struct seed {
    char host[256];
    int port;
} seed;

typedef struct config {
    seed seeds[MAX_SEEDS];
    int n_seeds;
    char user[128];
    char password[256];
} config;

enum { K_AUTH, K_ASKING, K_PUBLISH, K_SLOTS, K_NUMSUB, K_PING, K_SCRIPT };

/* A K_SCRIPT reply, or a K_PUBLISH one when the post is a script (NULL
 * when the connection went first). */
typedef void (*script_cb)(void *arg, const resp_val *v, size_t nv);
#define F_SENT_ON 1             /* redirected already: its MOVED is expected */

/* A command on a cmd connection waiting for its reply. */
typedef struct pending {
    size_t off, len;            /* its bytes in conn.out */
    xr_antenna_alive_cb done;   /* K_NUMSUB */
    script_cb reply;            /* K_SCRIPT; K_PUBLISH of a kept post */
    void *arg;
    uint16_t slot;
    uint8_t kind, flags;
} pending;

struct node;

typedef struct conn {
    struct node *node;
    int is_sub, fd, ready, closing;
    /* A command connection has had a reply: the node answers, not just its
     * kernel (a stopped node's backlog accepts). Posts wait for this, as
     * redis:// waits for its PING. */
    int answered;
    struct event *rd, *wr;
    char *in;
    size_t in_len, in_cap;
    resp_reader reader;         /* its own: a reply may be cut between reads */
    stall replies;              /* for the watchdog (stall.h) */
    /* out[done, sent) was written and awaits replies (cmd) or is gone (sub);
     * out[sent, len) is still to write. */
    char *out;
    size_t out_len, out_sent, out_done, out_cap;
    pending *q;
    size_t q_head, q_len, q_cap;
} conn;

typedef struct node {
    struct cluster *cl;
    char host[256];
    int port;
    char name[270];             /* host:port */
    conn *cmd, *sub;
    int up, ever_up;
    int failing;                /* connect failures since it was last up */
    redis_kept_fifo syncs;      /* history reads waiting for sub's PING */
    int slots;                  /* how many it owns in the map */
    unsigned backoff_ms;
    struct event *retry;
    unsigned long long published, publish_errors, received, reconnects;
} node;

typedef struct cluster {
    struct event_base *base;
    xr_antenna_host host;
    config cfg;
    node **nodes;
    size_t n_nodes, cap_nodes;
    node *owner[N_SLOTS];
    node *next_owner[N_SLOTS];  /* apply_slots' scratch */
    xr_antenna_names *chans;        /* name -> chan, the host's keyed set */
    struct event *refresh_ev, *tidy_ev, *watchdog;
    node *refreshing;           /* where a CLUSTER SLOTS is in flight */
    /* presence: this node's id; the rooms it holds members in (value: how
     * many connections), refreshed and reaped every quarter of the TTL */
    char node_id[33];
    xr_antenna_names *prooms;
    struct event *pres_timer;
    node *ask_first;            /* the node that just said a slot moved */
    int refresh_again;
    unsigned refresh_ms;
    size_t next_ask;            /* round robin over seeds and nodes */
    int up, destroying;
    unsigned long long malformed;   /* messages dropped for a bad position */
    unsigned long long kept_refused;
} cluster;

/* A live channel: the slot that places it and the master it is
 * subscribed on now (NULL: none yet). */
typedef struct chan {
    uint16_t slot;
    void *at;
    size_t len;
    char name[];
} chan;

static chan *chan_find(const cluster *cl, const char *name, size_t len)
{
    void **v = cl->host.names_find(cl->chans, name, len);
    return v ? *v : NULL;
}

/* Every live channel; the loop's body may not add or remove one. */
#define EACH_CHAN(cl, ch)                                                     \
    for (xr_antenna_cursor cur_ = {0}; (cl)->host.names_next((cl)->chans, &cur_);) \
        for (chan *ch = cur_.value; ch; ch = NULL)

static void conn_close(conn *c, const char *why);
static void conn_drop_pending(conn *c);
static void schedule_refresh(cluster *cl, unsigned ms);
static void node_connect(node *n);
static int is_sync(const resp_val *v, size_t nv);
static void synced(node *n);
static void sync_fail_all(node *n);
static void kept_drop(conn *c);

/* ---- URL ------------------------------------------------------------------ */

static int parse_hostport(const char *p, size_t n, seed *s, const char *url, char *err, size_t errlen)
{
    const char *colon = NULL;
    if (n && p[0] == '[') {             /* [::1]:7000 */
        const char *rb = memchr(p, ']', n);
        if (!rb || rb - p - 1 <= 0 || (size_t)(rb - p - 1) >= sizeof s->host)
            goto bad;
        memcpy(s->host, p + 1, (size_t)(rb - p - 1));
        s->host[rb - p - 1] = '\0';
        colon = rb + 1 < p + n && rb[1] == ':' ? rb + 1 : NULL;
        if (!colon && rb + 1 != p + n)
            goto bad;
    } else {
        colon = memchr(p, ':', n);
        size_t hl = colon ? (size_t)(colon - p) : n;
        if (hl == 0 || hl >= sizeof s->host)
            goto bad;
        memcpy(s->host, p, hl);
        s->host[hl] = '\0';
    }
    s->port = 6379;
    if (colon) {
        int64_t port;
        if (resp_int(colon + 1, p + n, &port) < 0 || port < 1 || port > 65535)
            goto bad;
        s->port = (int)port;
    }
    return 0;
bad:
    snprintf(err, errlen, "redis-cluster antenna: bad host:port '%.*s' in '%s'", (int)n, p, url);
    return XR_EINVAL;
}

static int parse_url(const char *url, config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    if (strncmp(url, "redis-cluster://", 16) != 0) {
        snprintf(err, errlen, "redis-cluster antenna: '%s' is not "
                 "redis-cluster://[[user]:password@]host:port[,host:port...]", url);
        return XR_EINVAL;
    }
    const char *p = url + 16, *at = strrchr(p, '@');
    if (at) {
        if (redis_userinfo(p, at, c->user, sizeof c->user, c->password, sizeof c->password) < 0) {
            snprintf(err, errlen, "redis-cluster antenna: credentials too long in URL");
            return XR_EINVAL;
        }
        p = at + 1;
    }
    if (strchr(p, '/')) {
        snprintf(err, errlen, "redis-cluster antenna: no database or path in '%s': "
                 "a cluster has only database 0", url);
        return XR_EINVAL;
    }
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (c->n_seeds == MAX_SEEDS) {
            snprintf(err, errlen, "redis-cluster antenna: more than %d seed nodes in '%s'",
                     MAX_SEEDS, url);
            return XR_EINVAL;
        }
        int rc = parse_hostport(p, n, &c->seeds[c->n_seeds], url, err, errlen);
        if (rc < 0)
            return rc;
        c->n_seeds++;
        p += n + (comma ? 1 : 0);
        if (comma && !*p)
            break;
    }
    if (c->n_seeds == 0) {
        snprintf(err, errlen, "redis-cluster antenna: no seed node in '%s' "
                 "(redis-cluster://host:7000,host:7001)", url);
        return XR_EINVAL;
    }
    return 0;
}

static int check_url(const char *url, char *err, size_t errlen)
{
    config c;
    return parse_url(url, &c, err, errlen);
}

/* ---- connections -------------------------------------------------------------- */

static int out_reserve(conn *c, size_t more)
{
    if (c->out_done && c->out_done == c->out_len) {
        c->out_len = c->out_sent = c->out_done = 0;
    } else if (c->out_done > c->out_cap / 2) {
        /* Shift the unanswered commands down: their offsets move with them. */
        memmove(c->out, c->out + c->out_done, c->out_len - c->out_done);
        for (size_t k = c->q_head; k < c->q_len; k++)
            c->q[k].off -= c->out_done;
        c->out_len -= c->out_done;
        c->out_sent -= c->out_done;
        c->out_done = 0;
    }
    if (c->out_len + more <= c->out_cap)
        return 0;
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + more)
        cap *= 2;
    char *o = realloc(c->out, cap);
    if (!o)
        return -1;
    c->out = o;
    c->out_cap = cap;
    return 0;
}

static char *put_num(char *o, char kind, size_t n)
{
    char tmp[24];
    int k = 0;
    do
        tmp[k++] = (char)('0' + n % 10);
    while ((n /= 10));
    *o++ = kind;
    while (k)
        *o++ = tmp[--k];
    *o++ = '\r';
    *o++ = '\n';
    return o;
}

static void want_write(conn *c)
{
    if (c->ready && c->out_sent < c->out_len && !event_pending(c->wr, EV_WRITE, NULL))
        event_add(c->wr, NULL);
}

/* Appends one command in RESP; its offset in out through *off. */
static int put_cmd(conn *c, int argc, const char *const *argv, const size_t *lens, size_t *off)
{
    size_t need = 16;
    for (int i = 0; i < argc; i++)
        need += lens[i] + 16;
    if (out_reserve(c, need) < 0)
        return XR_ENOMEM;
    char *o = c->out + c->out_len;
    *off = c->out_len;
    o = put_num(o, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        o = put_num(o, '$', lens[i]);
        memcpy(o, argv[i], lens[i]);
        o += lens[i];
        *o++ = '\r';
        *o++ = '\n';
    }
    c->out_len = (size_t)(o - c->out);
    want_write(c);
    return 0;
}

static pending *q_push(conn *c)
{
    if (c->q_head && c->q_head == c->q_len)
        c->q_head = c->q_len = 0;
    if (c->q_len == c->q_cap) {
        if (c->q_head > c->q_cap / 2) {
            memmove(c->q, c->q + c->q_head, (c->q_len - c->q_head) * sizeof *c->q);
            c->q_len -= c->q_head;
            c->q_head = 0;
        } else {
            size_t n = c->q_cap ? c->q_cap * 2 : 64;
            pending *q = realloc(c->q, n * sizeof *q);
            if (!q)
                return NULL;
            c->q = q;
            c->q_cap = n;
        }
    }
    pending *e = &c->q[c->q_len++];
    memset(e, 0, sizeof *e);
    return e;
}

/* A command on a cmd connection, remembered until its reply. */
static int cmd_send(conn *c, int kind, uint16_t slot, int argc, const char *const *argv,
                    const size_t *lens, xr_antenna_alive_cb done, void *arg)
{
    size_t off;
    pending *e = q_push(c);
    if (!e || put_cmd(c, argc, argv, lens, &off) < 0) {
        if (e)
            c->q_len--;
        return XR_ENOMEM;
    }
    e->off = off;
    e->len = c->out_len - off;
    e->kind = (uint8_t)kind;
    e->slot = slot;
    e->done = done;
    e->arg = arg;
    return 0;
}

/* Sends a command already written for another connection (a redirect). */
static int cmd_copy(conn *to, const conn *from, const pending *e)
{
    pending *n = q_push(to);
    if (!n)
        return XR_ENOMEM;
    if (out_reserve(to, e->len) < 0) {
        to->q_len--;
        return XR_ENOMEM;
    }
    *n = *e;
    n->flags = 0;
    n->off = to->out_len;
    memcpy(to->out + to->out_len, from->out + e->off, e->len);
    to->out_len += e->len;
    want_write(to);
    return 0;
}

static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_read(evutil_socket_t fd, short what, void *arg);

static int resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *sl)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* Cluster replies carry addresses; only a seed may be a name, resolved
     * by the system as hiredis does for redis://. */
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, ps, &hints, &ai) != 0) {
        hints.ai_flags = AI_NUMERICSERV;
        if (getaddrinfo(host, ps, &hints, &ai) != 0)
            return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sl = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* Said once per outage (at warn); the retries after it at debug. */
static void connect_failed(node *n, int err)
{
    n->cl->host.log(n->cl->host.host, n->failing++ ? XR_ANTENNA_LOG_DEBUG : XR_ANTENNA_LOG_WARN,
                    "redis-cluster antenna: cannot connect to %s: %s", n->name, strerror(err));
}

static conn *conn_open(node *n, int is_sub)
{
    cluster *cl = n->cl;
    struct sockaddr_storage ss;
    socklen_t sl;
    if (resolve(n->host, n->port, &ss, &sl) < 0) {
        cl->host.log(cl->host.host, n->failing++ ? XR_ANTENNA_LOG_DEBUG : XR_ANTENNA_LOG_WARN, "redis-cluster antenna: cannot resolve %s",
                     n->host);
        return NULL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
        connect_failed(n, errno);
        close(fd);
        return NULL;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->node = n;
    c->is_sub = is_sub;
    c->fd = fd;
    c->rd = event_new(cl->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wr = event_new(cl->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    struct timeval tv = {CONNECT_TIMEOUT_MS / 1000, 0};
    if (!c->rd || !c->wr || event_add(c->wr, &tv) < 0) {
        if (c->rd)
            event_free(c->rd);
        if (c->wr)
            event_free(c->wr);
        close(fd);
        free(c);
        return NULL;
    }
    /* AUTH [user] password goes first; what is queued while connecting
     * follows it. */
    const char *argv[3];
    size_t lens[3], off;
    int argc = redis_auth_argv(cl->cfg.user, cl->cfg.password, argv, lens);
    if (argc) {
        if (is_sub)
            put_cmd(c, argc, argv, lens, &off);
        else
            cmd_send(c, K_AUTH, 0, argc, argv, lens, NULL, NULL);
    }
    if (!is_sub) {
        const char *ping[1] = {"PING"};
        size_t plen[1] = {4};
        cmd_send(c, K_PING, 0, 1, ping, plen, NULL, NULL);
    }
    return c;
}

/* ---- node and cluster state ------------------------------------------------------ */

/* The masters of the map: how many, how many up. */
static int shards_up(const cluster *cl, int *total)
{
    int up = 0;
    *total = 0;
    for (size_t i = 0; i < cl->n_nodes; i++)
        if (cl->nodes[i]->slots) {
            (*total)++;
            up += cl->nodes[i]->up;
        }
    return up;
}

static void report(cluster *cl)
{
    int total, up = shards_up(cl, &total), any = up > 0;
    if (any == cl->up)
        return;
    cl->up = any;
    char detail[128];
    snprintf(detail, sizeof detail, "redis cluster, %d of %d shard(s) up", up, total);
    cl->host.state(cl->host.host, any, detail);
}

static void node_state(node *n)
{
    cluster *cl = n->cl;
    int up = n->cmd && n->cmd->answered && n->sub && n->sub->ready;
    if (up == n->up)
        return;
    n->up = up;
    if (n->slots)
        cl->host.log(cl->host.host, up ? XR_ANTENNA_LOG_INFO : XR_ANTENNA_LOG_WARN, "redis-cluster antenna: shard %s %s (%d slots)",
                     n->name, up ? "up" : "down", n->slots);
    if (up) {
        n->reconnects += n->ever_up;
        n->ever_up = 1;
        n->failing = 0;
        n->backoff_ms = 0;
    }
    report(cl);
}

static void node_retry_later(node *n)
{
    if (n->cl->destroying || evtimer_pending(n->retry, NULL))
        return;
    unsigned ms = n->cl->host.backoff(&n->backoff_ms, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(n->retry, &tv);
}

static void send_sub(conn *c, const char *verb, const chan *ch)
{
    const char *argv[2] = {verb, ch->name};
    size_t lens[2] = {strlen(verb), ch->len}, off;
    put_cmd(c, 2, argv, lens, &off);
}

/* A channel onto the master that owns its slot now; with no owner or no
 * connection yet it waits for the map or the connection. */
static void place(cluster *cl, chan *ch)
{
    node *o = cl->owner[ch->slot], *at = ch->at;
    if (at == o)
        return;
    if (at && at->sub)
        send_sub(at->sub, "SUNSUBSCRIBE", ch);
    ch->at = NULL;
    if (o && o->sub) {
        send_sub(o->sub, "SSUBSCRIBE", ch);
        ch->at = o;
    }
    cl->host.log(cl->host.host, XR_ANTENNA_LOG_DEBUG, "redis-cluster antenna: channel %.*s (slot %u) %s -> %s",
                 (int)ch->len, ch->name, ch->slot, at ? at->name : "none",
                 ch->at ? ((node *)ch->at)->name : "none");
}

static void reconcile(cluster *cl)
{
    EACH_CHAN(cl, ch)
        place(cl, ch);
}

/* Channels subscribed on n are no longer (its subscriber is gone). */
static void forget_channels(cluster *cl, const node *n)
{
    EACH_CHAN(cl, ch)
        if (ch->at == n)
            ch->at = NULL;
}

static void node_connect(node *n)
{
    /* Backing off after a failure: its timer comes back here. */
    if (evtimer_pending(n->retry, NULL))
        return;
    if (!n->cmd) {
        n->cmd = conn_open(n, 0);
        if (!n->cmd)
            node_retry_later(n);
    }
    /* Only a master holds channels; a seed that is a replica only answers
     * CLUSTER SLOTS. */
    if (n->slots && !n->sub) {
        n->sub = conn_open(n, 1);
        if (n->sub)
            reconcile(n->cl);
        else
            node_retry_later(n);
    }
}

static void on_node_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    node *n = arg;
    node_connect(n);
}

static node *node_find(cluster *cl, const char *host, int port)
{
    for (size_t i = 0; i < cl->n_nodes; i++)
        if (cl->nodes[i]->port == port && strcmp(cl->nodes[i]->host, host) == 0)
            return cl->nodes[i];
    return NULL;
}

static node *node_get(cluster *cl, const char *host, size_t hlen, int port)
{
    char h[256];
    if (hlen >= sizeof h)
        return NULL;
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    node *n = node_find(cl, h, port);
    if (n)
        return n;
    if (cl->n_nodes == cl->cap_nodes) {
        size_t cap = cl->cap_nodes ? cl->cap_nodes * 2 : 8;
        node **v = realloc(cl->nodes, cap * sizeof *v);
        if (!v)
            return NULL;
        cl->nodes = v;
        cl->cap_nodes = cap;
    }
    n = calloc(1, sizeof *n);
    if (!n || !(n->retry = evtimer_new(cl->base, on_node_retry, n))) {
        free(n);
        return NULL;
    }
    n->cl = cl;
    memcpy(n->host, h, hlen + 1);
    n->port = port;
    snprintf(n->name, sizeof n->name, strchr(h, ':') ? "[%s]:%d" : "%s:%d", h, port);
    cl->nodes[cl->n_nodes++] = n;
    return n;
}

static void conn_free(conn *c)
{
    event_free(c->rd);
    event_free(c->wr);
    close(c->fd);
    free(c->in);
    resp_reader_free(&c->reader);
    free(c->out);
    free(c->q);
    free(c);
}

static void node_free(node *n)
{
    sync_fail_all(n);
    if (n->cmd) {
        kept_drop(n->cmd);
        conn_free(n->cmd);
    }
    if (n->sub)
        conn_free(n->sub);
    event_free(n->retry);
    free(n);
}

static void set_owner(cluster *cl, uint16_t slot, node *n)
{
    if (cl->owner[slot])
        cl->owner[slot]->slots--;
    cl->owner[slot] = n;
    if (n)
        n->slots++;
}

/* Frees nodes that own nothing, outside any of their callbacks. */
static void on_tidy(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    cluster *cl = arg;
    reconcile(cl);
    size_t k = 0;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        node *n = cl->nodes[i];
        if (n->slots || n == cl->refreshing) {
            cl->nodes[k++] = n;
            continue;
        }
        forget_channels(cl, n);
        if (n->cmd)
            conn_drop_pending(n->cmd);
        if (cl->ask_first == n)
            cl->ask_first = NULL;
        node_free(n);
    }
    cl->n_nodes = k;
    report(cl);
}

/* ---- the slot map ------------------------------------------------------------------ */

static void ask_slots(cluster *cl)
{
    if (cl->refreshing) {
        cl->refresh_again = 1;
        return;
    }
    /* The node that said a slot moved knows where it went, when others
     * may not have heard yet (a reshard tells the masters one by one); else
     * a master that answers now, else the next seed or known node. */
    node *via = cl->ask_first && cl->ask_first->cmd && cl->ask_first->cmd->ready ? cl->ask_first
                                                                                 : NULL;
    cl->ask_first = NULL;
    for (size_t i = 0; i < cl->n_nodes && !via; i++)
        if (cl->nodes[i]->up)
            via = cl->nodes[i];
    size_t candidates = (size_t)cl->cfg.n_seeds + cl->n_nodes;
    for (size_t k = 0; k < candidates && !via; k++) {
        size_t i = cl->next_ask++ % candidates;
        node *n;
        if (i < (size_t)cl->cfg.n_seeds) {
            const seed *s = &cl->cfg.seeds[i];
            n = node_get(cl, s->host, strlen(s->host), s->port);
        } else {
            n = cl->nodes[i - (size_t)cl->cfg.n_seeds];
        }
        if (n && (n->cmd || !evtimer_pending(n->retry, NULL))) {
            node_connect(n);
            via = n->cmd ? n : NULL;
        }
    }
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    size_t lens[2] = {7, 5};
    if (!via || cmd_send(via->cmd, K_SLOTS, 0, 2, argv, lens, NULL, NULL) < 0) {
        schedule_refresh(cl, cl->refresh_ms);
        return;
    }
    cl->refreshing = via;
    cl->host.log(cl->host.host, XR_ANTENNA_LOG_DEBUG, "redis-cluster antenna: CLUSTER SLOTS asked of %s", via->name);
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    ask_slots(arg);
}

static unsigned grow(unsigned ms)
{
    return ms * 2 > REFRESH_MAX_MS ? REFRESH_MAX_MS : ms * 2;
}

/* Asks the map again after the back-off, which grows (to REFRESH_MAX_MS)
 * until a map is whole and answering. */
static void refresh_later(cluster *cl)
{
    schedule_refresh(cl, cl->refresh_ms);
    cl->refresh_ms = grow(cl->refresh_ms);
}

static void schedule_refresh(cluster *cl, unsigned ms)
{
    if (cl->destroying)
        return;
    if (cl->refreshing) {
        cl->refresh_again = 1;
        return;
    }
    /* "Now" wins over a later refresh already planned (re-adding a
     * pending timer moves it); a later one never delays an earlier. */
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (ms == 0 || !evtimer_pending(cl->refresh_ev, NULL))
        evtimer_add(cl->refresh_ev, &tv);
}

typedef struct ranges_ctx {
    cluster *cl;
    node *via;
} ranges_ctx;

static int take_range(void *arg, int start, int end, const char *host, size_t hlen, int port)
{
    ranges_ctx *x = arg;
    /* An empty or "?" address means "the node you asked". */
    if (hlen == 0 || (hlen == 1 && host[0] == '?')) {
        host = x->via->host;
        hlen = strlen(host);
    }
    node *n = node_get(x->cl, host, hlen, port);
    if (!n)
        return -1;
    for (int s = start; s <= end; s++)
        x->cl->next_owner[s] = n;
    return 0;
}

/* A CLUSTER SLOTS reply: the new map, then every channel onto it. */
static void apply_slots(cluster *cl, node *via, const resp_val *v, size_t nv)
{
    node **map = cl->next_owner;
    memset(map, 0, sizeof cl->next_owner);
    ranges_ctx x = {cl, via};
    if (resp_slot_ranges(v, nv, take_range, &x) < 0) {
        cl->host.log(cl->host.host, XR_ANTENNA_LOG_WARN, "redis-cluster antenna: %s: CLUSTER SLOTS reply not "
                     "understood (or out of memory); asking again", via->name);
        refresh_later(cl);
        return;
    }
    int changed = 0, uncovered = 0;
    for (int s = 0; s < N_SLOTS; s++) {
        if (map[s] != cl->owner[s]) {
            set_owner(cl, (uint16_t)s, map[s]);
            changed = 1;
        }
        uncovered += !map[s];
    }
    /* Connecting for the first time is fine; failing is not. */
    int all_up = !uncovered;
    for (size_t k = 0; k < cl->n_nodes; k++) {
        node *n = cl->nodes[k];
        if (n->slots) {
            node_connect(n);
            all_up &= n->up || (n->cmd && n->sub && !n->failing);
        }
    }
    if (changed)
        event_active(cl->tidy_ev, 0, 0);
    /* Until every slot has a master that answers, look again: a failover
     * shows up here within REFRESH_MAX_MS of its promotion. */
    if (all_up)
        cl->refresh_ms = BACKOFF_MIN_MS;
    else
        refresh_later(cl);
    report(cl);
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ...": the node named, or NULL. */
static node *redirect_target(cluster *cl, const conn *from, const resp_val *err, int *ask,
                             uint16_t *slot)
{
    const char *h;
    size_t hl;
    int port;
    if (resp_redirect(err, ask, slot, &h, &hl, &port) < 0)
        return NULL;
    if (hl == 0) {
        h = from->node->host;
        hl = strlen(h);
    }
    return node_get(cl, h, hl, port);
}

/* A post of c sent on to another master, counted where it went; a kept
 * post that cannot go is answered lost (the copy answers otherwise). */
static void send_on(conn *c, node *to, const pending *e)
{
    if (cmd_copy(to->cmd, c, e) < 0) {
        c->node->publish_errors++;
        if (e->reply)
            e->reply(e->arg, NULL, 0);
    } else {
        to->published++;
    }
}

/* A publish answered MOVED or ASK: sent on to the node named. On MOVED the
 * later posts of the same slot still in flight on this connection go with
 * it, now, in order, so that the ones posted from now on (routed by the
 * updated map) cannot overtake them. */
static void publish_redirected(conn *c, const pending *e, const resp_val *v)
{
    cluster *cl = c->node->cl;
    node *from = c->node;
    int ask;
    uint16_t slot;
    node *to = redirect_target(cl, c, v, &ask, &slot);
    if (!to || to == from) {
        from->publish_errors++;
        cl->host.log(cl->host.host, XR_ANTENNA_LOG_WARN, "redis-cluster antenna: %s refused a post: %.*s",
                     from->name, (int)v->n, v->s);
        if (e->reply)
            e->reply(e->arg, v, 1);
        schedule_refresh(cl, 0);
        return;
    }
    cl->host.log(cl->host.host, XR_ANTENNA_LOG_DEBUG, "redis-cluster antenna: post %s by %s: %.*s",
                 ask ? "asked elsewhere" : "moved", from->name, (int)v->n, v->s);
    if (!ask)
        set_owner(cl, slot, to);
    node_connect(to);
    if (!to->cmd) {
        from->publish_errors++;
        if (e->reply)
            e->reply(e->arg, NULL, 0);
        return;
    }
    if (ask) {
        const char *argv[1] = {"ASKING"};
        size_t lens[1] = {6};
        cmd_send(to->cmd, K_ASKING, 0, 1, argv, lens, NULL, NULL);
    }
    send_on(c, to, e);
    if (!ask) {
        for (size_t k = c->q_head; k < c->q_len; k++) {
            pending *x = &c->q[k];
            if (x->kind == K_PUBLISH && x->slot == slot && !(x->flags & F_SENT_ON)) {
                x->flags |= F_SENT_ON;
                send_on(c, to, x);
            }
        }
        cl->ask_first = from;
        schedule_refresh(cl, 0);
    }
}

static void on_cmd_reply(conn *c, const resp_val *v, size_t nv)
{
    cluster *cl = c->node->cl;
    if (c->q_head == c->q_len) {
        cl->host.log(cl->host.host, XR_ANTENNA_LOG_WARN, "redis-cluster antenna: %s: a reply nobody asked for",
                     c->node->name);
        c->closing = 1;
        return;
    }
    pending e = c->q[c->q_head++];
    c->out_done = e.off + e.len;
    c->replies.replies++;
    if (!c->answered) {
        c->answered = 1;
        node_state(c->node);
    }
    switch (e.kind) {
    case K_PING:
        break;
    case K_AUTH:
        if (v->type == '-') {
            cl->host.log(cl->host.host, XR_ANTENNA_LOG_ERROR, "redis-cluster antenna: %s refused: %.*s",
                         c->node->name, (int)v->n, v->s);
            c->closing = 1;
        }
        break;
    case K_ASKING:
        break;
    case K_PUBLISH:
        /* One sent on already answers through its copy. */
        if (v->type == '-' && !(e.flags & F_SENT_ON))
            publish_redirected(c, &e, v);
        else if (e.reply && !(e.flags & F_SENT_ON))
            e.reply(e.arg, v, nv);
        break;
    case K_SLOTS:
        cl->refreshing = NULL;
        if (v->type == '*') {
            apply_slots(cl, c->node, v, nv);
        } else {
            cl->host.log(cl->host.host, XR_ANTENNA_LOG_WARN, "redis-cluster antenna: %s: CLUSTER SLOTS: %.*s",
                         c->node->name, v->type == '-' ? (int)v->n : 0, v->s);
            refresh_later(cl);
        }
        if (cl->refresh_again) {
            cl->refresh_again = 0;
            schedule_refresh(cl, 0);
        }
        break;
    case K_NUMSUB: {
        /* ["channel", n]; anything else counts as alive, so a cluster in
         * trouble never empties rooms. */
        int alive = 1;
        if (v->type == '*' && v->n == 2 && nv == 3 && v[2].type == ':')
            alive = v[2].n > 0;
        else if (v->type == '-')
            schedule_refresh(cl, 0);
        e.done(alive, e.arg);
        break;
    }
    case K_SCRIPT:
        /* MOVED or ASK: the room's slot went elsewhere; this answer fails
         * and the map is asked again for the next. */
        if (v->type == '-')
            schedule_refresh(cl, 0);
        e.reply(e.arg, v, nv);
        break;
    }
}

static void on_sub_reply(conn *c, const resp_val *v, size_t nv)
{
    node *n = c->node;
    cluster *cl = n->cl;
    if (is_sync(v, nv)) {
        synced(n);
        return;
    }
    if (v->type == '*' && nv == 4 && v[1].type == '$') {
        if (resp_is(&v[1], "smessage") && v[2].type == '$' && v[3].type == '$') {
            n->received++;
            redis_kept_deliver(&cl->host, "redis-cluster", &cl->malformed, v[2].s, (size_t)v[2].n,
                               v[3].s, (size_t)v[3].n);
        } else if (resp_is(&v[1], "sunsubscribe") && v[2].type == '$') {
            /* Pushed when the channel's slot left this master (a reshard,
             * a failover): where it went is in the next slot map. */
            chan *ch = chan_find(cl, v[2].s, (size_t)v[2].n);
            cl->host.log(cl->host.host, XR_ANTENNA_LOG_DEBUG, "redis-cluster antenna: %s unsubscribed %.*s%s",
                         n->name, (int)v[2].n, v[2].s, ch && ch->at == n ? "" : " (asked)");
            if (ch && ch->at == n) {
                ch->at = NULL;
                cl->ask_first = n;
                schedule_refresh(cl, 0);
            }
        }
        return;
    }
    if (v->type == '-') {
        int ask;
        uint16_t slot;
        node *to = redirect_target(cl, c, v, &ask, &slot);
        if (to && !ask) {
            set_owner(cl, slot, to);
            node_connect(to);
            reconcile(cl);
            cl->ask_first = n;
            schedule_refresh(cl, 0);
        } else {
            /* A refused AUTH leaves the connection useless: closed, retried. */
            int auth = v->n >= 6 && (memcmp(v->s, "WRONGP", 6) == 0 ||
                                     memcmp(v->s, "NOAUTH", 6) == 0);
            cl->host.log(cl->host.host, auth ? XR_ANTENNA_LOG_ERROR : XR_ANTENNA_LOG_WARN,
                         "redis-cluster antenna: %s (subscriber) refused: %.*s", n->name,
                         (int)v->n, v->s);
            c->closing = auth;
        }
    }
}

/* Posts in flight are lost with their connection (as on redis://);
 * questions get an answer: alive, so a cluster in trouble never empties
 * rooms. */
static void conn_drop_pending(conn *c)
{
    node *n = c->node;
    for (size_t k = c->q_head; k < c->q_len; k++) {
        pending *e = &c->q[k];
        if (e->kind == K_PUBLISH && !(e->flags & F_SENT_ON)) {
            n->publish_errors++;
            if (e->reply)
                e->reply(e->arg, NULL, 0);
        }
        else if (e->kind == K_NUMSUB)
            e->done(1, e->arg);
        else if (e->kind == K_SCRIPT)
            e->reply(e->arg, NULL, 0);
        else if (e->kind == K_SLOTS && n->cl->refreshing == n)
            n->cl->refreshing = NULL;
    }
    c->q_head = c->q_len = 0;
}

static void conn_close(conn *c, const char *why)
{
    node *n = c->node;
    cluster *cl = n->cl;
    if (c == n->cmd)
        n->cmd = NULL;
    else
        n->sub = NULL;
    if (why && n->slots)
        cl->host.log(cl->host.host, XR_ANTENNA_LOG_WARN, "redis-cluster antenna: %s: %s", n->name, why);
    if (c->is_sub) {
        forget_channels(cl, n);
        sync_fail_all(n);
    } else {
        int was_refreshing = cl->refreshing == n;
        conn_drop_pending(c);
        if (was_refreshing)
            cl->refresh_ms = grow(cl->refresh_ms);
    }
    conn_free(c);
    node_state(n);
    node_retry_later(n);
    /* A master gone may be a failover under way. */
    schedule_refresh(cl, cl->refresh_ms);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    if (!c->ready) {
        int err = 0;
        socklen_t el = sizeof err;
        if (what & EV_TIMEOUT)
            err = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err) {
            connect_failed(c->node, err);
            conn_close(c, NULL);
            return;
        }
        c->ready = 1;
        event_del(c->wr);
        event_add(c->rd, NULL);
        node_state(c->node);
        want_write(c);
        return;
    }
    while (c->out_sent < c->out_len) {
        ssize_t w = write(fd, c->out + c->out_sent, c->out_len - c->out_sent);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            conn_close(c, strerror(errno));
            return;
        }
        c->out_sent += (size_t)w;
    }
    if (c->is_sub)
        c->out_done = c->out_sent;
    event_del(c->wr);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    conn *c = arg;
    if (c->in_cap - c->in_len < 16384) {
        size_t cap = c->in_cap ? c->in_cap * 2 : 65536;
        char *in = realloc(c->in, cap);
        if (!in) {
            conn_close(c, "out of memory");
            return;
        }
        c->in = in;
        c->in_cap = cap;
    }
    ssize_t r = read(fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c, r == 0 ? "connection closed" : strerror(errno));
        return;
    }
    c->in_len += (size_t)r;
    size_t at = 0;
    while (at < c->in_len && !c->closing) {
        size_t nv;
        long used = resp_parse(&c->reader, c->in + at, c->in_len - at, &nv);
        if (used == 0)
            break;
        if (used < 0) {
            conn_close(c, "not a RESP reply: protocol error");
            return;
        }
        if (c->is_sub)
            on_sub_reply(c, c->reader.vals, nv);
        else
            on_cmd_reply(c, c->reader.vals, nv);
        at += (size_t)used;
    }
    if (c->closing) {
        conn_close(c, "closed after an error reply");
        return;
    }
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
}

/* ---- the ops ------------------------------------------------------------------------- */

static void destroy(void *self);

/* Commands waiting and no reply at all for REPLY_TIMEOUT_MS: the shard is
 * hung; its connection goes and is made again with back-off. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    cluster *cl = arg;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        conn *c = cl->nodes[i]->cmd;
        if (c && stall_tick(&c->replies, c->ready && c->q_head != c->q_len))
            conn_close(c, "no reply for 5 s with commands waiting: reconnecting");
    }
}

static void *create(struct event_base *base, const char *url, const xr_antenna_host *host,
                    char *err, size_t errlen)
{
    if (xr_antenna_host_complete(host, err, errlen) < 0)
        return NULL;
    cluster *cl = calloc(1, sizeof *cl);
    if (!cl) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (parse_url(url, &cl->cfg, err, errlen) < 0) {
        free(cl);
        return NULL;
    }
    cl->base = base;
    cl->host = *host;
    cl->refresh_ms = BACKOFF_MIN_MS;
    redis_node_id(cl->node_id);
    cl->refresh_ev = evtimer_new(base, on_refresh, cl);
    cl->tidy_ev = event_new(base, -1, 0, on_tidy, cl);
    cl->watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, cl);
    struct timeval wd = {0, WATCHDOG_MS * 1000};
    if (!(cl->chans = host->names_new()) || !cl->refresh_ev || !cl->tidy_ev ||
        !cl->watchdog || event_add(cl->watchdog, &wd) < 0) {
        destroy(cl);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ask_slots(cl);
    return cl;
}

static void destroy(void *self)
{
    cluster *cl = self;
    cl->destroying = 1;
    for (size_t i = 0; i < cl->n_nodes; i++)
        node_free(cl->nodes[i]);
    free(cl->nodes);
    if (cl->refresh_ev)
        event_free(cl->refresh_ev);
    if (cl->tidy_ev)
        event_free(cl->tidy_ev);
    if (cl->watchdog)
        event_free(cl->watchdog);
    if (cl->pres_timer)
        event_free(cl->pres_timer);
    if (cl->prooms)
        cl->host.names_free(cl->prooms);
    if (cl->chans)
        EACH_CHAN(cl, ch)
            free(ch);
    cl->host.names_free(cl->chans);
    free(cl);
}

static int subscribe(void *self, const char *name, size_t len)
{
    cluster *cl = self;
    if (chan_find(cl, name, len))
        return 0;
    chan *ch = calloc(1, sizeof *ch + len + 1);
    if (!ch || cl->host.names_put(cl->chans, name, len, ch) < 0) {
        free(ch);
        return XR_ENOMEM;
    }
    memcpy(ch->name, name, len);
    ch->len = len;
    ch->slot = resp_key_slot(name, len);
    place(cl, ch);
    return 0;
}

static int unsubscribe(void *self, const char *name, size_t len)
{
    cluster *cl = self;
    chan *ch = chan_find(cl, name, len);
    if (!ch)
        return 0;
    node *at = ch->at;
    if (at && at->sub)
        send_sub(at->sub, "SUNSUBSCRIBE", ch);
    cl->host.names_del(cl->chans, name, len);
    free(ch);
    return 0;
}

/* The master a post of `bytes` to slot goes to, or NULL: its shard down
 * or unknown, or too far behind (fail now rather than queue without
 * bound). */
static node *post_target(cluster *cl, uint16_t slot, size_t bytes)
{
    node *o = cl->owner[slot];
    if (!o || !o->cmd || !o->cmd->answered || o->cmd->q_len - o->cmd->q_head >= MAX_PENDING_POSTS ||
        o->cmd->out_len - o->cmd->out_done + bytes > MAX_PENDING_BYTES) {
        if (o)
            o->publish_errors++;
        else
            schedule_refresh(cl, 0);
        return NULL;
    }
    return o;
}

static int publish(void *self, const char *ch, size_t clen, const char *msg, size_t mlen)
{
    cluster *cl = self;
    uint16_t slot = resp_key_slot(ch, clen);
    node *o = post_target(cl, slot, clen + mlen);
    if (!o)
        return XR_EANTENNA;
    const char *argv[3] = {"SPUBLISH", ch, msg};
    size_t lens[3] = {8, clen, mlen};
    int rc = cmd_send(o->cmd, K_PUBLISH, slot, 3, argv, lens, NULL, NULL);
    if (rc == 0)
        o->published++;
    return rc;
}

static int is_alive(void *self, const char *ch, size_t len, xr_antenna_alive_cb done, void *arg)
{
    cluster *cl = self;
    uint16_t slot = resp_key_slot(ch, len);
    node *o = cl->owner[slot];
    if (!o || !o->cmd || !o->cmd->answered)
        return XR_EANTENNA;
    const char *argv[3] = {"PUBSUB", "SHARDNUMSUB", ch};
    size_t lens[3] = {6, 11, len};
    return cmd_send(o->cmd, K_NUMSUB, slot, 3, argv, lens, done, arg);
}

static int connected(void *self)
{
    return ((cluster *)self)->up;
}

static size_t describe(void *self, char *buf, size_t len)
{
    cluster *cl = self;
    int total, up = shards_up(cl, &total);
    int n = snprintf(buf, len, "redis cluster, %d of %d shard(s) up, %zu channel(s)", up, total,
                     cl->host.names_count(cl->chans));
    return n < 0 ? 0 : (size_t)n;
}

static void parts(void *self, xr_antenna_part_cb each, void *arg)
{
    cluster *cl = self;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        node *n = cl->nodes[i];
        if (!n->slots)
            continue;
        xr_antenna_part p = {.size = sizeof p, .name = n->name, .up = n->up,
                             .published = n->published, .publish_errors = n->publish_errors,
                             .received = n->received, .reconnects = n->reconnects};
        EACH_CHAN(cl, ch)
            p.channels += ch->at == n;
        each(arg, &p);
    }
}

/* ---- presence -------------------------------------------------------------
 *
 * Everything of a room R lives in R's slot (the keys carry {R} as their
 * hash tag), so one script changes it atomically on the shard that owns
 * the room, and it moves with the slot: hash xr.p.{R}.u (user ->
 * connections), xr.p.{R}.i (user -> info), counter xr.p.{R}.n, hash
 * xr.pn.{R} ("node\0user" -> that node's connections) and sorted set
 * xr.pz.{R} (node -> the time its share there expires). A node pushes its
 * expiry forward in each room it holds members in every quarter of the
 * TTL, and in the same script removes, once, the share of every node
 * whose time passed; a query does the same first. (A room whose name
 * starts with '}' has no usable hash tag: its keys would span slots, and
 * its presence fails.)
 */
#if XR_ANTENNA_ABI_MINOR >= 5
static const char ADD_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local d = tonumber(ARGV[3])\n"
    "local c = redis.call('HINCRBY', KEYS[1], ARGV[1], d)\n"
    "if redis.call('INCRBY', KEYS[3], d) <= 0 then redis.call('DEL', KEYS[3]) end\n"
    "local f = ARGV[4] .. '\\0' .. ARGV[1]\n"
    "if redis.call('HINCRBY', KEYS[4], f, d) <= 0 then redis.call('HDEL', KEYS[4], f) end\n"
    "if c <= 0 then\n"
    "  redis.call('HDEL', KEYS[1], ARGV[1]); redis.call('HDEL', KEYS[2], ARGV[1]); c = 0\n"
    "elseif d > 0 and ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end\n"
    "redis.call('ZADD', KEYS[5], now + tonumber(ARGV[5]), ARGV[4])\n"
    "return c\n";

/* ARGV: node, ttl, mode ("0": refresh and reap; "1": reap, counts; "2":
 * reap, counts and members). Returns {leaves, (user, info) x leaves,
 * [users, connections, (user, connections, info) x members]}. */
static const char SYNC_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "if ARGV[3] == '0' then redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), ARGV[1]) end\n"
    "local out = {0}\n"
    "for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)) do\n"
    "  if n ~= ARGV[1] then\n"
    "    local h, pre = redis.call('HGETALL', KEYS[4]), n .. '\\0'\n"
    "    for k = 1, #h, 2 do\n"
    "      if string.sub(h[k], 1, #pre) == pre then\n"
    "        local user, cnt = string.sub(h[k], #pre + 1), tonumber(h[k + 1])\n"
    "        redis.call('HDEL', KEYS[4], h[k])\n"
    "        if redis.call('DECRBY', KEYS[3], cnt) <= 0 then redis.call('DEL', KEYS[3]) end\n"
    "        if redis.call('HINCRBY', KEYS[1], user, -cnt) <= 0 then\n"
    "          out[#out + 1] = user; out[#out + 1] = redis.call('HGET', KEYS[2], user) or ''\n"
    "          redis.call('HDEL', KEYS[1], user); redis.call('HDEL', KEYS[2], user)\n"
    "          out[1] = out[1] + 1\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    redis.call('ZREM', KEYS[5], n)\n"
    "  end\n"
    "end\n"
    "if ARGV[3] ~= '0' then\n"
    "  out[#out + 1] = redis.call('HLEN', KEYS[1])\n"
    "  out[#out + 1] = tonumber(redis.call('GET', KEYS[3]) or '0')\n"
    "  if ARGV[3] == '2' then\n"
    "    local h = redis.call('HGETALL', KEYS[1])\n"
    "    for k = 1, #h, 2 do\n"
    "      out[#out + 1] = h[k]; out[#out + 1] = tonumber(h[k + 1])\n"
    "      out[#out + 1] = redis.call('HGET', KEYS[2], h[k]) or ''\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";


/* A script on the shard that owns room: argv[3..7] are its keys. */
static int script_send(cluster *cl, const char *script, size_t slen, const char *room, size_t rlen,
                       int nargs, const char *const *args, const size_t *argl, script_cb reply,
                       void *arg)
{
    redis_room_keys rk;
    if (redis_room_keys_of(room, rlen, 1, &rk) < 0 || nargs > 6)
        return XR_EINVAL;
    uint16_t slot = resp_key_slot(rk.k[0], rk.l[0]);
    node *o = cl->owner[slot];
    if (!o || !o->cmd || !o->cmd->answered) {
        if (!o)
            schedule_refresh(cl, 0);
        return XR_EANTENNA;
    }
    const char *argv[3 + REDIS_ROOM_KEYS + 6] = {"EVAL", script, "5"};
    size_t lens[3 + REDIS_ROOM_KEYS + 6] = {4, slen, 1};
    for (int k = 0; k < REDIS_ROOM_KEYS; k++) {
        argv[3 + k] = rk.k[k];
        lens[3 + k] = rk.l[k];
    }
    for (int k = 0; k < nargs; k++) {
        argv[3 + REDIS_ROOM_KEYS + k] = args[k];
        lens[3 + REDIS_ROOM_KEYS + k] = argl[k];
    }
    int rc = cmd_send(o->cmd, K_SCRIPT, slot, 3 + REDIS_ROOM_KEYS + nargs, argv, lens, NULL, arg);
    if (rc == 0)
        o->cmd->q[o->cmd->q_len - 1].reply = reply;
    return rc;
}

/* A SYNC on its way: the room it is about, and for a query its answer. */
typedef struct sync_q {
    cluster *cl;
    xr_antenna_presence_cb done;    /* NULL: the timer's refresh */
    void *arg;
    size_t rlen;
    char room[];
} sync_q;

/* The leaves at the start of a SYNC reply: each told to the host. Returns
 * the index of the value after them, or 0 for a reply of another shape. */
static size_t told_leaves(const sync_q *q, const resp_val *v, size_t nv)
{
    if (!v || v->type != '*' || nv < 2 || v[1].type != ':' || v[1].n < 0 ||
        (size_t)v[1].n * 2 + 2 > nv)
        return 0;
    size_t i = 2;
    for (int64_t k = 0; k < v[1].n; k++, i += 2)
        if (v[i].type == '$' && v[i + 1].type == '$')
            q->cl->host.presence_gone(q->cl->host.host, q->room, q->rlen, v[i].s, (size_t)v[i].n,
                                      v[i + 1].n ? v[i + 1].s : NULL, (size_t)v[i + 1].n);
    return i;
}

static void on_synced(void *arg, const resp_val *v, size_t nv)
{
    sync_q *q = arg;
    size_t i = told_leaves(q, v, nv);
    if (q->done) {
        if (!i || i + 2 > nv || v[i].type != ':' || v[i + 1].type != ':') {
            q->done(q->arg, XR_EANTENNA, 0, 0, NULL, 0);
        } else {
            size_t n = (nv - i - 2) / 3, k = 0;
            xr_antenna_member *m = n ? calloc(n, sizeof *m) : NULL;
            for (size_t j = i + 2; m && j + 2 < nv; j += 3)
                if (v[j].type == '$' && v[j + 1].type == ':' && v[j + 2].type == '$')
                    m[k++] = (xr_antenna_member){v[j].s, (size_t)v[j].n, v[j + 1].n,
                                                 v[j + 2].n ? v[j + 2].s : NULL,
                                                 (size_t)v[j + 2].n};
            if (n && !m)
                q->done(q->arg, XR_ENOMEM, 0, 0, NULL, 0);
            else
                q->done(q->arg, XR_OK, v[i].n, v[i + 1].n, m, k);
            free(m);
        }
    }
    free(q);
}

static int sync_room(cluster *cl, const char *room, size_t rlen, char mode,
                     xr_antenna_presence_cb done, void *arg)
{
    sync_q *q = malloc(sizeof *q + rlen + 1);
    if (!q)
        return XR_ENOMEM;
    *q = (sync_q){cl, done, arg, rlen};
    memcpy(q->room, room, rlen);
    q->room[rlen] = '\0';
    char ttl[24], m[2] = {mode, 0};
    snprintf(ttl, sizeof ttl, "%llu", cl->host.presence_ttl_ms * 3 / 4);
    const char *args[3] = {cl->node_id, ttl, m};
    size_t argl[3] = {strlen(cl->node_id), strlen(ttl), 1};
    int rc = script_send(cl, SYNC_LUA, sizeof SYNC_LUA - 1, room, rlen, 3, args, argl, on_synced, q);
    if (rc < 0)
        free(q);
    return rc;
}

/* Every quarter of the TTL: this node's share lives on in each room it
 * holds members in; those of nodes that stopped go. */
static void on_pres_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    cluster *cl = arg;
    xr_antenna_cursor c = {0};
    while (cl->host.names_next(cl->prooms, &c))
        sync_room(cl, c.name, c.len, '0', NULL, NULL);
}

typedef struct add_q {
    xr_antenna_count_cb done;
    void *arg;
} add_q;

static void on_added(void *arg, const resp_val *v, size_t nv)
{
    (void)nv;
    add_q *q = arg;
    q->done(q->arg, v && v->type == ':' ? v->n : XR_EANTENNA);
    free(q);
}

static int presence_add(void *self, const char *room, size_t rlen, const char *user, size_t ulen,
                        const char *info, size_t ilen, int delta, xr_antenna_count_cb done,
                        void *arg)
{
    cluster *cl = self;
    xr_antenna_host *h = &cl->host;
    if ((delta != 1 && delta != -1) || !XR_ANTENNA_HOST_HAS(h, presence_gone) ||
        !h->presence_ttl_ms)
        return XR_EINVAL;
    if (!cl->prooms && !(cl->prooms = h->names_new()))
        return XR_ENOMEM;
    if (!cl->pres_timer) {
        unsigned long long q4 = h->presence_ttl_ms / 4;
        struct timeval tv = {(time_t)(q4 / 1000), (suseconds_t)(q4 % 1000) * 1000};
        if (!(cl->pres_timer = event_new(cl->base, -1, EV_PERSIST, on_pres_timer, cl)) ||
            event_add(cl->pres_timer, &tv) < 0)
            return XR_ENOMEM;
    }
    add_q *q = malloc(sizeof *q);
    if (!q)
        return XR_ENOMEM;
    *q = (add_q){done, arg};
    char d[4], ttl[24];
    snprintf(d, sizeof d, "%d", delta);
    snprintf(ttl, sizeof ttl, "%llu", h->presence_ttl_ms * 3 / 4);
    const char *args[5] = {user, info ? info : "", d, cl->node_id, ttl};
    size_t argl[5] = {ulen, info ? ilen : 0, strlen(d), strlen(cl->node_id), strlen(ttl)};
    int rc = script_send(cl, ADD_LUA, sizeof ADD_LUA - 1, room, rlen, 5, args, argl, on_added, q);
    if (rc < 0) {
        free(q);
        return rc;
    }
    /* The rooms this node holds members in, for the timer. */
    void **slot = h->names_find(cl->prooms, room, rlen);
    if (!slot && delta < 0)
        return 0;
    uintptr_t n = (slot ? (uintptr_t)*slot : 0) + (uintptr_t)(intptr_t)delta;
    if (!n)
        h->names_del(cl->prooms, room, rlen);
    else if (slot)
        *slot = (void *)n;
    else
        h->names_put(cl->prooms, room, rlen, (void *)n);
    return 0;
}

static int presence_get(void *self, const char *room, size_t rlen, int members,
                        xr_antenna_presence_cb done, void *arg)
{
    return sync_room(self, room, rlen, members ? '2' : '1', done, arg);
}
#endif

/* ---- history (kept.h says how it is kept) ---------------------------------
 *
 * A post with history is one script on the master that owns the channel's
 * slot: the offset, the stream entry and the SPUBLISH at once. Redis
 * Cluster lets a script touch only keys of one slot and SPUBLISH only a
 * channel of that slot, so a channel's keys carry its slot's tag
 * (xr.h.{TAG}C.s) rather than its name: a name with braces of its own
 * would hash elsewhere inside them. A read is the same dance as on
 * redis://, on the owner: PING on its subscriber (the SSUBSCRIBE took
 * effect), the read script on its command connection, PING again (what
 * the read returned came in live), answer. A slot that moves meanwhile
 * fails the read (recovered false) or leaves a hole in the live stream,
 * which the host fills from the history once the channel is subscribed
 * on the new owner.
 */
#if XR_ANTENNA_ABI_MINOR >= 6
#define EPOCH_SEED_LEN 12

/* Each slot's tag: the first name in the order 0..9, a..z, 00, 01, ...
 * that hashes to it. Every node computes the same table, and it must not
 * change between versions: it names the keys in Redis. */
static char slot_tag[N_SLOTS][5];

static void make_tags(void)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    static int made;
    if (made)
        return;
    size_t left = N_SLOTS;
    for (size_t len = 1; left && len <= 4; len++) {
        size_t total = 1;
        for (size_t k = 0; k < len; k++)
            total *= 36;
        for (size_t i = 0; left && i < total; i++) {
            char t[5] = {0};
            for (size_t k = 0, x = i; k < len; k++, x /= 36)
                t[len - 1 - k] = digits[x % 36];
            uint16_t slot = resp_key_slot(t, len);
            if (!slot_tag[slot][0]) {
                memcpy(slot_tag[slot], t, len + 1);
                left--;
            }
        }
    }
    made = 1;
}

static int kept_keys(const char *ch, size_t clen, redis_kept_keys *k)
{
    make_tags();
    return redis_kept_keys_of(ch, clen, slot_tag[resp_key_slot(ch, clen)], k);
}

static int is_sync(const resp_val *v, size_t nv)
{
    if (v->type == '$' && nv == 1)      /* before the first SSUBSCRIBE */
        return resp_is(v, REDIS_KEPT_SYNC);
    return v->type == '*' && v->n == 2 && nv == 3 && v[1].type == '$' && resp_is(&v[1], "pong") &&
           v[2].type == '$' && resp_is(&v[2], REDIS_KEPT_SYNC);
}

static void sync_fail_all(node *n)
{
    redis_kept_fail_all(&n->syncs);
}

/* Queues q behind a PING on n's subscriber. */
static int sync_after(node *n, redis_kept_q *q)
{
    static const char *const argv[2] = {"PING", REDIS_KEPT_SYNC};
    static const size_t lens[2] = {4, REDIS_KEPT_SYNC_LEN};
    size_t off;
    if (n->cl->destroying || !n->sub || !n->sub->ready || put_cmd(n->sub, 2, argv, lens, &off) < 0)
        return XR_EANTENNA;
    redis_kept_push(&n->syncs, q);
    return 0;
}

static const char *val_str(const void *reply, size_t i, size_t *len)
{
    const resp_val *e = (const resp_val *)reply + 1 + i;
    if (e->type != '$' || e->n < 0)
        return NULL;
    *len = (size_t)e->n;
    return e->s;
}

static void on_kept_read(void *arg, const resp_val *v, size_t nv)
{
    redis_kept_q *q = arg;
    cluster *cl = q->owner;
    if (v && v->type == '-')
        cl->host.log(cl->host.host, XR_ANTENNA_LOG_WARN,
                     "redis-cluster antenna: a history read was refused: %.*s", (int)v->n, v->s);
    int rc = XR_EANTENNA;
    /* A flat array of strings: nv counts the array and its elements. */
    if (v && v->type == '*' && v->n >= 0 && (size_t)v->n + 1 == nv)
        rc = redis_kept_take(&q->rd, v, (size_t)v->n, val_str);
    q->read = 1;
    if (rc < 0 || (rc = sync_after(q->at, q)) < 0)
        redis_kept_fail(q, rc);
}

static void read_kept(node *n, redis_kept_q *q)
{
    redis_kept_keys k;
    redis_kept_args a;
    if (!n->cmd || !n->cmd->answered || kept_keys(q->ch, q->clen, &k) < 0) {
        redis_kept_fail(q, XR_EANTENNA);
        return;
    }
    redis_kept_read_args(q, &k, n->cl->node_id, EPOCH_SEED_LEN, &a);
    uint16_t slot = resp_key_slot(q->ch, q->clen);
    if (cmd_send(n->cmd, K_SCRIPT, slot, 10, a.argv, a.lens, NULL, q) < 0)
        redis_kept_fail(q, XR_EANTENNA);
    else
        n->cmd->q[n->cmd->q_len - 1].reply = on_kept_read;
}

static void synced(node *n)
{
    redis_kept_q *q = redis_kept_synced(&n->syncs);
    if (q)
        read_kept(n, q);
}

static int history(void *self, const char *ch, size_t clen, unsigned long long since,
                   size_t limit, unsigned long long ttl_ms, xr_antenna_history_cb done,
                   void *arg)
{
    cluster *cl = self;
    redis_kept_keys k;
    if (kept_keys(ch, clen, &k) < 0)
        return XR_EINVAL;
    node *o = cl->owner[resp_key_slot(ch, clen)];
    const chan *live = chan_find(cl, ch, clen);
    /* A channel subscribed here but not yet on its owner: the first PING
     * would not say its SSUBSCRIBE took effect. */
    if (!o || !o->cmd || !o->cmd->answered || (live && live->at != o))
        return XR_EANTENNA;
    redis_kept_q *q = redis_kept_q_new(cl, o, ch, clen, since, limit, ttl_ms, done, arg);
    if (!q)
        return XR_ENOMEM;
    if (sync_after(o, q) < 0) {
        free(q);
        return XR_EANTENNA;
    }
    return 0;
}

/* A kept post's reply; done is NULL for publish_kept (nobody waits). An
 * error is a post lost (a key of another type, a Redis out of memory),
 * said, not hidden. */
typedef struct kept_at {
    cluster *cl;
    xr_antenna_kept_cb done;
    void *arg;
} kept_at;

static void on_kept_post(void *arg, const resp_val *v, size_t nv)
{
    kept_at *k = arg;
    if (v && v->type == '-' && k->cl->kept_refused++ % 1000 == 0)
        k->cl->host.log(k->cl->host.host, XR_ANTENNA_LOG_ERROR,
                        "redis-cluster antenna: a post with history was refused (%llu so far): %.*s",
                        k->cl->kept_refused, (int)v->n, v->s);
    if (k->done) {
        if (v && v->type == '*' && v->n == 2 && nv == 3 && v[1].type == ':' && v[1].n > 0 &&
            v[2].type == '$' && v[2].n >= 1 && v[2].n <= REDIS_KEPT_EPOCH_MAX)
            k->done(k->arg, 0, (unsigned long long)v[1].n, v[2].s, (size_t)v[2].n);
        else
            k->done(k->arg, XR_EANTENNA, 0, NULL, 0);
    }
    free(k);
}

static int send_kept(cluster *cl, const char *ch, size_t clen, const char *msg, size_t mlen,
                     size_t keep, unsigned long long ttl_ms, xr_antenna_kept_cb done, void *arg)
{
    redis_kept_keys k;
    if (!keep || !ttl_ms || kept_keys(ch, clen, &k) < 0)
        return XR_EINVAL;
    uint16_t slot = resp_key_slot(ch, clen);
    node *o = post_target(cl, slot, clen + mlen + redis_kept_spublish_lua_len);
    if (!o)
        return XR_EANTENNA;
    kept_at *ka = malloc(sizeof *ka);
    if (!ka)
        return XR_ENOMEM;
    *ka = (kept_at){cl, done, arg};
    char keeps[24], ttl[24], meta[24];
    unsigned long long meta_ms = ttl_ms > REDIS_KEPT_META_MS ? ttl_ms : REDIS_KEPT_META_MS;
    const char *argv[11] = {"EVAL", redis_kept_spublish_lua, "2", k.k[0], k.k[1], ch, msg,
                            keeps, ttl, cl->node_id, meta};
    size_t lens[11] = {4, redis_kept_spublish_lua_len, 1, k.l[0], k.l[1], clen, mlen,
                       (size_t)snprintf(keeps, sizeof keeps, "%zu", keep),
                       (size_t)snprintf(ttl, sizeof ttl, "%llu", ttl_ms), EPOCH_SEED_LEN,
                       (size_t)snprintf(meta, sizeof meta, "%llu", meta_ms)};
    /* A K_PUBLISH, so a MOVED or ASK sends it on like any post. */
    if (cmd_send(o->cmd, K_PUBLISH, slot, 11, argv, lens, NULL, ka) < 0) {
        free(ka);
        return XR_ENOMEM;
    }
    o->cmd->q[o->cmd->q_len - 1].reply = on_kept_post;
    o->published++;
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

/* destroy(): reads and kept posts still waiting on c are answered. */
static void kept_drop(conn *c)
{
    for (size_t k = c->q_head; k < c->q_len; k++) {
        pending *e = &c->q[k];
        if ((e->reply == on_kept_read || e->reply == on_kept_post) &&
            !(e->kind == K_PUBLISH && (e->flags & F_SENT_ON))) {
            script_cb reply = e->reply;
            e->reply = NULL;
            reply(e->arg, NULL, 0);
        }
    }
}
#else
static int is_sync(const resp_val *v, size_t nv) { (void)v, (void)nv; return 0; }
static void synced(node *n) { (void)n; }
static void sync_fail_all(node *n) { (void)n; }
static void kept_drop(conn *c) { (void)c; }
#endif

XR_ANTENNA_MODULE("redis-cluster",
                  "Redis Cluster sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis >= 7)",
                  .describe = describe, .parts = parts
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
