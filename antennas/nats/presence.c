/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Presence on nats://: one JetStream key-value bucket, XRAPTOR_PRESENCE
 * (memory storage, one revision a key), shared by every node:
 *
 *   m.<hex room>.<hex user>  one line "<node> <connections>" per node that
 *                            holds the user, an empty line, then the info
 *   c.<hex room>             "<users> <connections>" over every node
 *   n.<node>                 the node's --presence-ttl in ms, put again
 *                            every quarter of it while the node lives
 *
 * Every change is a compare-and-set on the key's revision (the server
 * refuses a write whose revision moved on, and the writer reads again), so
 * the change that takes a user from none to one connection, or from one
 * to none, is made by exactly one node however many change it at once:
 * that node's caller tells the join or leave. Counts are a second
 * compare-and-set, on c.<room>: a query of counts is one read however big
 * the room. A node's age is read off the server's own timestamps (the
 * time each n.<node> was written, against this node's write of a moment
 * ago), so no two clocks are compared; one unrefreshed for three quarters
 * of its TTL is dead, and whichever node first removes a dead node's share
 * of a user (again a compare-and-set) reports the user gone if none is
 * left. Keys are hex, so a name is never read as a subject token; a room
 * and user of more than 1000 bytes together are refused.
 *
 * cnats' key-value calls block on a request to the server: they run on
 * one worker thread, in order; results are queued for the loop and the
 * host's wake-up brings them there.
 */
#include "presence.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define BUCKET "XRAPTOR_PRESENCE"
#define NODE_LEN 32
#define KEY_MAX 2048
#define MAX_JOBS 10000          /* queued calls; past it they fail at once */
#define CAS_TRIES 100
#define WAIT_MS 2000            /* a key-value request's answer */

enum { J_ADD, J_GET, J_TICK };

typedef struct gone {
    struct gone *next;
    size_t rlen, ulen, ilen;
    char data[];                /* room, user, info */
} gone;

typedef struct job {
    struct job *next;
    int kind, delta, members, has_info;
    size_t rlen, ulen, ilen;
    char *room, *user, *info;   /* copies in one block, after the struct */
    xr_antenna_count_cb counted;        /* J_ADD */
    xr_antenna_presence_cb got;         /* J_GET */
    void *arg;
    /* results */
    int rc;
    long long count, users, conns;
    xr_antenna_member *mv;
    size_t mn;
    gone *gone;
    char err[200];
} job;

struct nats_presence {
    struct event_base *base;
    xr_antenna_host host;
    natsConnection *nc;
    char node[NODE_LEN + 1];
    int wake_fd;
    struct event *timer;
    int used, ticking;
    char last_err[200];         /* logged once until it changes */
    /* loop <-> worker */
    pthread_t thread, beat;
    int started, beating;
    pthread_mutex_t mu;
    pthread_cond_t cv, beat_cv;  /* beat_cv waits on CLOCK_MONOTONIC */
    job *todo, **todo_tail, *done, **done_tail;
    size_t queued;
    int stop;
    int registered;             /* under mu: the beat may start */
    /* worker only */
    jsCtx *js;
    kvStore *kv;
};

/* ---- values ------------------------------------------------------------- */

static void hex(char *out, const char *s, size_t n)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[(unsigned char)s[i] >> 4];
        out[2 * i + 1] = d[(unsigned char)s[i] & 15];
    }
    out[2 * n] = '\0';
}

static int unhex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* n hex digits into n / 2 bytes; -1 when they are not. */
static int unhex(char *out, const char *s, size_t n)
{
    if (n % 2)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = unhex_digit(s[i]), lo = unhex_digit(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (char)(hi << 4 | lo);
    }
    return 0;
}

/* A user's value, as written by nodes: shares, then the info. */
typedef struct shares {
    struct { char node[NODE_LEN + 1]; long long n; } *v;
    size_t n, cap;
    long long total;
    const char *info;
    size_t ilen;
} shares;

/* 0, or -1 for bytes no node writes (the value is then taken as empty). */
static int shares_parse(shares *s, const char *p, size_t len)
{
    const char *end = p + len;
    s->n = 0;
    s->total = 0;
    s->info = NULL;
    s->ilen = 0;
    while (p < end && *p != '\n') {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl || nl - p < NODE_LEN + 2 || p[NODE_LEN] != ' ')
            return -1;
        long long n = 0;
        for (const char *d = p + NODE_LEN + 1; d < nl; d++) {
            if (*d < '0' || *d > '9' || n > 1000000000)
                return -1;
            n = n * 10 + (*d - '0');
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 8;
            void *v = realloc(s->v, cap * sizeof *s->v);
            if (!v)
                return -1;
            s->v = v;
            s->cap = cap;
        }
        memcpy(s->v[s->n].node, p, NODE_LEN);
        s->v[s->n].node[NODE_LEN] = '\0';
        s->v[s->n++].n = n;
        s->total += n;
        p = nl + 1;
    }
    if (p < end) {              /* the empty line, then the info */
        s->info = p + 1;
        s->ilen = (size_t)(end - p - 1);
    }
    return 0;
}

/* The shares of s but those for which drop(node) says 1, own's set to
 * own_n (0: none), then the info: a malloc'd value in *out. */
static char *shares_write(const shares *s, const char *own, long long own_n,
                          int (*drop)(const char *node, void *arg), void *arg,
                          const char *info, size_t ilen, size_t *out_len)
{
    size_t cap = (s->n + 1) * (NODE_LEN + 24) + 1 + ilen, n = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (size_t i = 0; i < s->n; i++) {
        if ((own && strcmp(s->v[i].node, own) == 0) || (drop && drop(s->v[i].node, arg)))
            continue;
        n += (size_t)snprintf(out + n, cap - n, "%s %lld\n", s->v[i].node, s->v[i].n);
    }
    if (own && own_n > 0)
        n += (size_t)snprintf(out + n, cap - n, "%s %lld\n", own, own_n);
    out[n++] = '\n';
    if (info && ilen) {
        memcpy(out + n, info, ilen);
        n += ilen;
    }
    *out_len = n;
    return out;
}

/* ---- the worker's key-value calls --------------------------------------- */

static void fail(job *j, int rc, const char *what, natsStatus s)
{
    j->rc = rc;
    if (!j->err[0])
        snprintf(j->err, sizeof j->err, "%s: %s", what, natsStatus_GetText(s));
}

static int ensure_kv(nats_presence *p, job *j)
{
    if (p->kv)
        return 0;
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = WAIT_MS;
    natsStatus s = p->js ? NATS_OK : natsConnection_JetStream(&p->js, p->nc, &o);
    if (s == NATS_OK) {
        s = js_KeyValue(&p->kv, p->js, BUCKET);
        if (s == NATS_NOT_FOUND) {
            kvConfig c;
            kvConfig_Init(&c);
            c.Bucket = BUCKET;
            c.Description = "xraptor presence";
            c.History = 1;
            c.StorageType = js_MemoryStorage;
            s = js_CreateKeyValue(&p->kv, p->js, &c);
        }
    }
    if (s != NATS_OK) {
        fail(j, XR_EANTENNA, "presence needs JetStream on the server (nats-server -js), and "
             "its bucket " BUCKET " could not be opened", s);
        p->kv = NULL;
        return -1;
    }
    return 0;
}

/* The value of key and its revision (0 when there is none). */
static natsStatus get(nats_presence *p, const char *key, kvEntry **e, uint64_t *rev)
{
    natsStatus s = kvStore_Get(e, p->kv, key);
    if (s == NATS_NOT_FOUND) {
        *e = NULL;
        *rev = 0;
        return NATS_OK;
    }
    if (s == NATS_OK)
        *rev = kvEntry_Revision(*e);
    return s;
}

/* Writes key if its revision is still rev (0: if it does not exist).
 * NATS_ERR from the server means it moved on: read again. */
static natsStatus cas(nats_presence *p, const char *key, const char *v, size_t len, uint64_t rev)
{
    uint64_t nrev;
    return rev ? kvStore_Update(&nrev, p->kv, key, v, (int)len, rev)
               : kvStore_Create(&nrev, p->kv, key, v, (int)len);
}

static int register_node(nats_presence *p, job *j)
{
    char key[8 + NODE_LEN], ttl[24];
    snprintf(key, sizeof key, "n.%s", p->node);
    snprintf(ttl, sizeof ttl, "%llu", p->host.presence_ttl_ms);
    uint64_t rev;
    natsStatus s = kvStore_PutString(&rev, p->kv, key, ttl);
    if (s != NATS_OK) {
        fail(j, XR_EANTENNA, "presence: this node's entry", s);
        return -1;
    }
    pthread_mutex_lock(&p->mu);
    if (!p->registered) {
        p->registered = 1;
        pthread_cond_signal(&p->beat_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* A room's counts from its entry (none: 0 and 0), which goes. */
static void counts_of(kvEntry *e, long long *users, long long *conns)
{
    *users = *conns = 0;
    if (!e)
        return;
    char v[64];
    snprintf(v, sizeof v, "%.*s", kvEntry_ValueLen(e), (const char *)kvEntry_Value(e));
    if (sscanf(v, "%lld %lld", users, conns) != 2)
        *users = *conns = 0;
    kvEntry_Destroy(e);
}

/* Adds du users and dc connections to the room's counts (room in hex). */
static int add_counts(nats_presence *p, job *j, const char *hroom, long long du, long long dc)
{
    if (!du && !dc)
        return 0;
    char key[KEY_MAX + 8];
    snprintf(key, sizeof key, "c.%s", hroom);
    for (int t = 0; t < CAS_TRIES; t++) {
        kvEntry *e;
        uint64_t rev;
        natsStatus s = get(p, key, &e, &rev);
        if (s != NATS_OK) {
            fail(j, XR_EANTENNA, "presence: a room's counts", s);
            return -1;
        }
        long long u, c;
        counts_of(e, &u, &c);
        u = u + du < 0 ? 0 : u + du;
        c = c + dc < 0 ? 0 : c + dc;
        char v[64];
        int n = snprintf(v, sizeof v, "%lld %lld", u, c);
        s = cas(p, key, v, (size_t)n, rev);
        if (s == NATS_OK)
            return 0;
        if (s != NATS_ERR) {
            fail(j, XR_EANTENNA, "presence: a room's counts", s);
            return -1;
        }
    }
    fail(j, XR_EANTENNA, "presence: a room's counts kept changing", NATS_ERR);
    return -1;
}

static void run_add(nats_presence *p, job *j)
{
    pthread_mutex_lock(&p->mu);
    int registered = p->registered;
    pthread_mutex_unlock(&p->mu);
    if (ensure_kv(p, j) < 0 || (!registered && register_node(p, j) < 0))
        return;
    char *hroom = malloc(2 * j->rlen + 1), *key = malloc(2 * (j->rlen + j->ulen) + 8);
    shares sh = {0};
    if (!hroom || !key) {
        j->rc = XR_ENOMEM;
        goto out;
    }
    hex(hroom, j->room, j->rlen);
    int k = sprintf(key, "m.%s.", hroom);
    hex(key + k, j->user, j->ulen);
    for (int t = 0; t < CAS_TRIES; t++) {
        kvEntry *e;
        uint64_t rev;
        natsStatus s = get(p, key, &e, &rev);
        if (s != NATS_OK) {
            fail(j, XR_EANTENNA, "presence: a member", s);
            goto out;
        }
        if (!e || shares_parse(&sh, kvEntry_Value(e), (size_t)kvEntry_ValueLen(e)) < 0)
            sh.n = 0, sh.total = 0, sh.info = NULL, sh.ilen = 0;
        long long own = 0;
        for (size_t i = 0; i < sh.n; i++)
            if (strcmp(sh.v[i].node, p->node) == 0)
                own = sh.v[i].n;
        long long was = sh.total, mine = own + j->delta < 0 ? 0 : own + j->delta;
        long long now = was - own + mine;
        const char *info = j->delta > 0 && j->has_info ? j->info : sh.info;
        size_t ilen = j->delta > 0 && j->has_info ? j->ilen : sh.ilen;
        size_t vlen;
        char *v = shares_write(&sh, p->node, mine, NULL, NULL, now > 0 ? info : NULL, ilen, &vlen);
        if (e)
            kvEntry_Destroy(e);
        if (!v) {
            j->rc = XR_ENOMEM;
            goto out;
        }
        s = cas(p, key, v, vlen, rev);
        free(v);
        if (s == NATS_OK) {
            j->count = now;
            add_counts(p, j, hroom, (now > 0) - (was > 0), now - was);
            goto out;
        }
        if (s != NATS_ERR) {
            fail(j, XR_EANTENNA, "presence: a member", s);
            goto out;
        }
    }
    fail(j, XR_EANTENNA, "presence: a member kept changing", NATS_ERR);
out:
    free(sh.v);
    free(hroom);
    free(key);
}

/* Every value under a key pattern, as entries (the caller destroys them). */
static int watch_all(nats_presence *p, job *j, const char *keys, kvEntry ***out, size_t *n)
{
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    o.IgnoreDeletes = true;
    kvWatcher *w;
    natsStatus s = kvStore_Watch(&w, p->kv, keys, &o);
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    while (s == NATS_OK) {
        kvEntry *e = NULL;
        s = kvWatcher_Next(&e, w, WAIT_MS);
        if (s != NATS_OK || !e)
            break;      /* NULL: every value that was there has come */
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            kvEntry **v = realloc(*out, cap * sizeof *v);
            if (!v) {
                kvEntry_Destroy(e);
                s = NATS_NO_MEMORY;
                break;
            }
            *out = v;
        }
        (*out)[(*n)++] = e;
    }
    if (w) {
        /* cnats 3.4 (Debian 12) frees a stopped watcher's subscription
         * while its read loop may still hold it for a message in flight
         * (nats.c #637, fixed in 3.6): unsubscribed first, a PING answered
         * proves the read loop past it, then it goes. */
        kvWatcher_Stop(w);
        natsConnection_FlushTimeout(p->nc, WAIT_MS);
        kvWatcher_Destroy(w);
    }
    if (s != NATS_OK) {
        for (size_t i = 0; i < *n; i++)
            kvEntry_Destroy((*out)[i]);
        free(*out);
        *out = NULL;
        *n = 0;
        fail(j, XR_EANTENNA, "presence: reading the bucket", s);
        return -1;
    }
    return 0;
}

static void free_entries(kvEntry **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kvEntry_Destroy(v[i]);
    free(v);
}

static void run_get(nats_presence *p, job *j)
{
    if (ensure_kv(p, j) < 0)
        return;
    char *hroom = malloc(2 * j->rlen + 1), *key = malloc(2 * j->rlen + 8);
    if (!hroom || !key) {
        j->rc = XR_ENOMEM;
        goto out;
    }
    hex(hroom, j->room, j->rlen);
    sprintf(key, "c.%s", hroom);
    kvEntry *e;
    uint64_t rev;
    natsStatus s = get(p, key, &e, &rev);
    if (s != NATS_OK) {
        fail(j, XR_EANTENNA, "presence: a room's counts", s);
        goto out;
    }
    counts_of(e, &j->users, &j->conns);
    if (!j->members)
        goto out;
    sprintf(key, "m.%s.*", hroom);
    kvEntry **v;
    size_t n;
    if (watch_all(p, j, key, &v, &n) < 0)
        goto out;
    j->mv = n ? calloc(n, sizeof *j->mv) : NULL;
    shares sh = {0};
    size_t skip = 2 + 2 * j->rlen + 1;
    for (size_t i = 0; i < n && j->mv; i++) {
        const char *k = kvEntry_Key(v[i]);
        size_t kl = strlen(k);
        if (kl <= skip || shares_parse(&sh, kvEntry_Value(v[i]), (size_t)kvEntry_ValueLen(v[i])) < 0 ||
            sh.total <= 0)
            continue;
        size_t ulen = (kl - skip) / 2;
        char *m = malloc(ulen + sh.ilen + 1);
        if (!m || unhex(m, k + skip, kl - skip) < 0) {
            free(m);
            continue;
        }
        memcpy(m + ulen, sh.info ? sh.info : "", sh.ilen);
        j->mv[j->mn++] = (xr_antenna_member){m, ulen, sh.total, sh.ilen ? m + ulen : NULL, sh.ilen};
    }
    if (n && !j->mv)
        j->rc = XR_ENOMEM;
    free(sh.v);
    free_entries(v, n);
out:
    free(hroom);
    free(key);
}

/* The nodes found dead by one tick. */
typedef struct dead {
    char (*node)[NODE_LEN + 1];
    size_t n;
} dead;

static int is_dead(const char *node, void *arg)
{
    const dead *d = arg;
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->node[i], node) == 0)
            return 1;
    return 0;
}

/* Takes the dead nodes' shares out of one member's value, once: the first
 * write wins and a node that lost the race finds nothing left to take. */
static void reap_member(nats_presence *p, job *j, const dead *d, const char *key, kvEntry *first)
{
    shares sh = {0};
    kvEntry *e = first;
    uint64_t rev = kvEntry_Revision(first);
    for (int t = 0; t < CAS_TRIES; t++) {
        if (!e || shares_parse(&sh, kvEntry_Value(e), (size_t)kvEntry_ValueLen(e)) < 0)
            break;
        long long took = 0;
        for (size_t i = 0; i < sh.n; i++)
            if (is_dead(sh.v[i].node, (void *)d))
                took += sh.v[i].n;
        if (!took)
            break;
        long long was = sh.total, now = was - took;
        size_t vlen;
        char *v = shares_write(&sh, NULL, 0, is_dead, (void *)d, now > 0 ? sh.info : NULL,
                               sh.ilen, &vlen);
        if (!v)
            break;
        natsStatus s = cas(p, key, v, vlen, rev);
        free(v);
        if (s == NATS_OK) {
            /* key is m.<hex room>.<hex user> */
            const char *dot = strchr(key + 2, '.');
            size_t hr = (size_t)(dot - key - 2), hu = strlen(dot + 1);
            char *hroom = strndup(key + 2, hr);
            if (hroom)
                add_counts(p, j, hroom, (now > 0) - (was > 0), now - was);
            free(hroom);
            gone *g = now > 0 ? NULL : malloc(sizeof *g + hr / 2 + hu / 2 + sh.ilen);
            if (g && unhex(g->data, key + 2, hr) == 0 &&
                unhex(g->data + hr / 2, dot + 1, hu) == 0) {
                g->rlen = hr / 2;
                g->ulen = hu / 2;
                g->ilen = sh.ilen;
                memcpy(g->data + g->rlen + g->ulen, sh.info ? sh.info : "", sh.ilen);
                g->next = j->gone;
                j->gone = g;
            } else {
                free(g);
            }
            break;
        }
        if (s != NATS_ERR)
            break;
        if (e != first)
            kvEntry_Destroy(e);
        e = NULL;
        if (get(p, key, &e, &rev) != NATS_OK)
            break;
    }
    if (e && e != first)
        kvEntry_Destroy(e);
    free(sh.v);
}

/* This node lives on; the shares of nodes that stopped go. */
static void run_tick(nats_presence *p, job *j)
{
    if (ensure_kv(p, j) < 0 || register_node(p, j) < 0)
        return;
    kvEntry **nodes;
    size_t nn;
    if (watch_all(p, j, "n.*", &nodes, &nn) < 0)
        return;
    int64_t me = 0;
    for (size_t i = 0; i < nn; i++)
        if (strcmp(kvEntry_Key(nodes[i]) + 2, p->node) == 0)
            me = kvEntry_Created(nodes[i]);
    dead d = {calloc(nn ? nn : 1, sizeof *d.node), 0};
    for (size_t i = 0; me && d.node && i < nn; i++) {
        const char *id = kvEntry_Key(nodes[i]) + 2;
        char v[32];
        snprintf(v, sizeof v, "%.*s", kvEntry_ValueLen(nodes[i]),
                 (const char *)kvEntry_Value(nodes[i]));
        long long ttl = atoll(v);
        /* The server's clock on both sides: its time of our write of a
         * moment ago against its time of theirs. */
        if (strlen(id) == NODE_LEN && ttl > 0 &&
            me - kvEntry_Created(nodes[i]) > ttl * 3 / 4 * 1000000LL)
            snprintf(d.node[d.n++], NODE_LEN + 1, "%s", id);
    }
    free_entries(nodes, nn);
    if (d.n) {
        kvEntry **m;
        size_t mn;
        if (watch_all(p, j, "m.>", &m, &mn) == 0) {
            for (size_t i = 0; i < mn; i++)
                reap_member(p, j, &d, kvEntry_Key(m[i]), m[i]);
            free_entries(m, mn);
            for (size_t i = 0; i < d.n; i++) {
                char key[8 + NODE_LEN];
                snprintf(key, sizeof key, "n.%s", d.node[i]);
                kvStore_Delete(p->kv, key);
            }
        }
    }
    free(d.node);
}

static void *worker(void *arg)
{
    nats_presence *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !p->todo)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        job *j = p->todo;
        if (!(p->todo = j->next))
            p->todo_tail = &p->todo;
        pthread_mutex_unlock(&p->mu);
        j->next = NULL;
        if (j->kind == J_ADD)
            run_add(p, j);
        else if (j->kind == J_GET)
            run_get(p, j);
        else
            run_tick(p, j);
        pthread_mutex_lock(&p->mu);
        *p->done_tail = j;
        p->done_tail = &j->next;
        xr_antenna_wake(p->wake_fd);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* This node's entry, put again every quarter of the TTL on a thread and a
 * bucket handle of its own: on the worker it would wait behind the queue,
 * and a node busy with a thousand joins would look dead to the others,
 * which would reap members it still holds. Put before the worker first
 * registered it, it would make the bucket on a node that keeps no one. */
static void *beater(void *arg)
{
    nats_presence *p = arg;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    char key[8 + NODE_LEN], ttl[24];
    snprintf(key, sizeof key, "n.%s", p->node);
    snprintf(ttl, sizeof ttl, "%llu", p->host.presence_ttl_ms);
    unsigned long long q = p->host.presence_ttl_ms / 4;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if (p->registered) {
            pthread_mutex_unlock(&p->mu);
            jsOptions o;
            jsOptions_Init(&o);
            o.Wait = WAIT_MS;
            if (!js && natsConnection_JetStream(&js, p->nc, &o) != NATS_OK)
                js = NULL;
            if (js && !kv && js_KeyValue(&kv, js, BUCKET) != NATS_OK)
                kv = NULL;
            uint64_t rev;
            /* A failed put is the worker's to tell: its next call fails
             * the same way, and the TTL is what the others wait for. */
            if (kv)
                kvStore_PutString(&rev, kv, key, ttl);
            pthread_mutex_lock(&p->mu);
        }
        struct timespec at;
        clock_gettime(CLOCK_MONOTONIC, &at);
        at.tv_sec += (time_t)(q / 1000);
        at.tv_nsec += (long)(q % 1000) * 1000000L;
        if (at.tv_nsec >= 1000000000L)
            at.tv_sec++, at.tv_nsec -= 1000000000L;
        while (!p->stop && pthread_cond_timedwait(&p->beat_cv, &p->mu, &at) == 0 &&
               !p->registered)
            ;
    }
    pthread_mutex_unlock(&p->mu);
    if (kv)
        kvStore_Destroy(kv);
    if (js)
        jsCtx_Destroy(js);
    return NULL;
}

/* ---- the loop's side ------------------------------------------------------ */

static void job_free(job *j)
{
    for (size_t i = 0; i < j->mn; i++)
        free((char *)j->mv[i].user);
    free(j->mv);
    for (gone *g = j->gone, *next; g; g = next) {
        next = g->next;
        free(g);
    }
    free(j);
}

static void on_done(void *arg)
{
    nats_presence *p = arg;
    pthread_mutex_lock(&p->mu);
    job *j = p->done, *next;
    p->done = NULL;
    p->done_tail = &p->done;
    pthread_mutex_unlock(&p->mu);
    for (; j; j = next) {
        next = j->next;
        pthread_mutex_lock(&p->mu);
        p->queued--;
        pthread_mutex_unlock(&p->mu);
        if (j->err[0] && strcmp(j->err, p->last_err) != 0) {
            snprintf(p->last_err, sizeof p->last_err, "%s", j->err);
            p->host.log(p->host.host, XR_ANTENNA_LOG_WARN, "nats antenna: %s", j->err);
        } else if (!j->err[0] && j->kind != J_TICK) {
            p->last_err[0] = '\0';
        }
        if (j->kind == J_ADD) {
            j->counted(j->arg, j->rc < 0 ? j->rc : j->count);
        } else if (j->kind == J_GET) {
            j->got(j->arg, j->rc, j->users, j->conns, j->mv, j->mn);
        } else {
            p->ticking = 0;
            for (gone *g = j->gone; g; g = g->next)
                p->host.presence_gone(p->host.host, g->data, g->rlen, g->data + g->rlen, g->ulen,
                                      g->ilen ? g->data + g->rlen + g->ulen : NULL, g->ilen);
        }
        job_free(j);
    }
}

static job *job_new(int kind, const char *room, size_t rlen, const char *user, size_t ulen,
                    const char *info, size_t ilen)
{
    job *j = calloc(1, sizeof *j + rlen + ulen + ilen + 3);
    if (!j)
        return NULL;
    j->kind = kind;
    j->room = (char *)(j + 1);
    j->user = j->room + rlen + 1;
    j->info = j->user + ulen + 1;
    memcpy(j->room, room, rlen);
    j->rlen = rlen;
    if (user)
        memcpy(j->user, user, ulen);
    j->ulen = ulen;
    if (info)
        memcpy(j->info, info, ilen);
    j->ilen = ilen;
    j->has_info = info && ilen;
    return j;
}

static int submit(nats_presence *p, job *j)
{
    pthread_mutex_lock(&p->mu);
    if (p->queued >= MAX_JOBS) {
        pthread_mutex_unlock(&p->mu);
        free(j);
        return XR_EANTENNA;
    }
    p->queued++;
    *p->todo_tail = j;
    p->todo_tail = &j->next;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    nats_presence *p = arg;
    if (!p->used || p->ticking)
        return;
    job *j = job_new(J_TICK, "", 0, NULL, 0, NULL, 0);
    if (j && submit(p, j) == 0)
        p->ticking = 1;
}

static void node_id(char out[NODE_LEN + 1])
{
    unsigned char r[NODE_LEN / 2];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        for (size_t i = 0; i < sizeof r; i++)
            r[i] = (unsigned char)rand();
    hex(out, (const char *)r, sizeof r);
}

nats_presence *nats_presence_new(struct event_base *base, natsConnection *nc,
                                 const xr_antenna_host *host, char *err, size_t errlen)
{
    if (!XR_ANTENNA_HOST_HAS(host, presence_gone) || !host->presence_ttl_ms) {
        snprintf(err, errlen, "the host keeps no presence");
        return NULL;
    }
    nats_presence *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->base = base;
    p->host = *host;
    p->nc = nc;
    p->todo_tail = &p->todo;
    p->done_tail = &p->done;
    node_id(p->node);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->beat_cv, &ca);
    pthread_condattr_destroy(&ca);
    unsigned long long q = host->presence_ttl_ms / 4;
    struct timeval tv = {(time_t)(q / 1000), (suseconds_t)(q % 1000) * 1000};
    if ((p->wake_fd = host->wakeup(host->host, on_done, p)) < 0 ||
        !(p->timer = event_new(base, -1, EV_PERSIST, on_timer, p)) ||
        event_add(p->timer, &tv) < 0 || !(p->started = !pthread_create(&p->thread, NULL, worker, p)) ||
        !(p->beating = !pthread_create(&p->beat, NULL, beater, p))) {
        snprintf(err, errlen, "cannot start presence: %s", strerror(errno ? errno : ENOMEM));
        nats_presence_free(p);
        return NULL;
    }
    return p;
}

void nats_presence_stop(nats_presence *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv);
    pthread_cond_signal(&p->beat_cv);
    pthread_mutex_unlock(&p->mu);
    if (p->started)
        pthread_join(p->thread, NULL);
    if (p->beating)
        pthread_join(p->beat, NULL);
    p->started = p->beating = 0;
}

void nats_presence_free(nats_presence *p)
{
    if (!p)
        return;
    nats_presence_stop(p);
    if (p->timer)
        event_free(p->timer);
    /* Every caller hears back, as the ABI asks of destroy(): answers the
     * worker finished, then the calls it never started, cut short. */
    on_done(p);
    for (job *j = p->todo, *next; j; j = next) {
        next = j->next;
        if (j->kind == J_ADD)
            j->counted(j->arg, XR_EANTENNA);
        else if (j->kind == J_GET)
            j->got(j->arg, XR_EANTENNA, 0, 0, NULL, 0);
        job_free(j);
    }
    if (p->kv)
        kvStore_Destroy(p->kv);
    if (p->js)
        jsCtx_Destroy(p->js);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->beat_cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* A room and user of more than this many bytes together would make a key
 * past what a subject may hold. */
#define NAMES_MAX ((KEY_MAX - 8) / 2)

int nats_presence_add(nats_presence *p, const char *room, size_t rlen, const char *user,
                      size_t ulen, const char *info, size_t ilen, int delta,
                      xr_antenna_count_cb done, void *arg)
{
    if (!rlen || !ulen || rlen + ulen > NAMES_MAX || (delta != 1 && delta != -1))
        return XR_EINVAL;
    job *j = job_new(J_ADD, room, rlen, user, ulen, info, info ? ilen : 0);
    if (!j)
        return XR_ENOMEM;
    j->delta = delta;
    j->counted = done;
    j->arg = arg;
    p->used = 1;
    return submit(p, j);
}

int nats_presence_get(nats_presence *p, const char *room, size_t rlen, int members,
                      xr_antenna_presence_cb done, void *arg)
{
    if (!rlen || rlen > NAMES_MAX)
        return XR_EINVAL;
    job *j = job_new(J_GET, room, rlen, NULL, 0, NULL, 0);
    if (!j)
        return XR_ENOMEM;
    j->members = members;
    j->got = done;
    j->arg = arg;
    return submit(p, j);
}
