/* SPDX-License-Identifier: Apache-2.0 */
#include "kept.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The epoch, made when the hash is missing: whatever the stream still
 * holds belongs to a history that was lost and goes with it. Lua 5.1
 * prints numbers past 10^14 in exponent form, so the clock is printed in
 * hex and the offsets stay far below that.
 *
 * The hash also names (r) the replication history of the master that
 * last wrote it. A replica promoted over that master (Redis Cluster
 * failover) has it as master_replid2, and replication is asynchronous:
 * the old master may have given offsets past what reached the replica,
 * and clients and nodes saw them. Continuing the epoch would give those
 * offsets again to other messages, which a client would take as seen.
 * So such a history is a new epoch (the promoted replica cannot tell
 * whether it lost anything). A hash that came with its slot from another
 * master (a reshard: MIGRATE moves it whole) names a history that is
 * neither, and keeps its epoch. */
#define EPOCH_LUA(seed, meta)                                                            \
    "local rep = redis.call('INFO', 'replication')\n"                                   \
    "local id = string.match(rep, 'master_replid:(%x+)')\n"                             \
    "local h = redis.call('HMGET', KEYS[2], 'e', 'r')\n"                               \
    "local e = h[1]\n"                                                                  \
    "if e and h[2] and h[2] ~= id and h[2] == string.match(rep, 'master_replid2:(%x+)') then\n" \
    "  e = false\n"                                                                     \
    "end\n"                                                                             \
    "if not e then\n"                                                                   \
    "  local t = redis.call('TIME')\n"                                                  \
    "  e = ARGV[" seed "] .. string.format('.%x.%x', tonumber(t[1]), tonumber(t[2]))\n"      \
    "  redis.call('DEL', KEYS[1])\n"                                                    \
    "  redis.call('HSET', KEYS[2], 'e', e, 'o', 0, 'r', id)\n"                           \
    "elseif h[2] ~= id then\n"                                                          \
    "  redis.call('HSET', KEYS[2], 'r', id)\n"                                          \
    "end\n"                                                                             \
    "redis.call('PEXPIRE', KEYS[2], ARGV[" meta "])\n"                                       \
    "local t = redis.call('TIME')\n"                                                    \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

#define PUBLISH_LUA(verb)                                                                \
    EPOCH_LUA("5", "6")                                                                  \
    "local o = redis.call('HINCRBY', KEYS[2], 'o', 1)\n"                                  \
    "redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], o .. '-0', 't', now, 'm', ARGV[2])\n"  \
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"                                           \
    "redis.call('" verb "', ARGV[1], '\\0xr1 ' .. o .. ' ' .. e .. '\\n' .. ARGV[2])\n"   \
    "return {o, e}\n"

const char redis_kept_publish_lua[] = PUBLISH_LUA("PUBLISH");
const size_t redis_kept_publish_lua_len = sizeof redis_kept_publish_lua - 1;
const char redis_kept_spublish_lua[] = PUBLISH_LUA("SPUBLISH");
const size_t redis_kept_spublish_lua_len = sizeof redis_kept_spublish_lua - 1;

/* Newest first, so COUNT keeps the newest `limit`; the first entry past
 * the TTL ends the list (entries are in time order). */
const char redis_kept_read_lua[] =
    EPOCH_LUA("4", "5")
    "local out = {e, redis.call('HGET', KEYS[2], 'o')}\n"
    "local old = now - tonumber(ARGV[3])\n"
    "local v = redis.call('XREVRANGE', KEYS[1], '+', '(' .. ARGV[1] .. '-0', 'COUNT', ARGV[2])\n"
    "for i = 1, #v do\n"
    "  local f = v[i][2]\n"
    "  if tonumber(f[2]) < old then break end\n"
    "  out[#out + 1] = v[i][1]\n"
    "  out[#out + 1] = f[4]\n"
    "end\n"
    "return out\n";
const size_t redis_kept_read_lua_len = sizeof redis_kept_read_lua - 1;

int redis_kept_keys_of(const char *ch, size_t clen, const char *tag, redis_kept_keys *out)
{
    static const char pre[] = "xr.h.", *const suf[2] = {".s", ".m"};
    size_t t = tag ? strlen(tag) + 2 : 0;
    if (sizeof pre - 1 + t + clen + 2 > sizeof out->k[0])
        return -1;
    for (int k = 0; k < 2; k++) {
        char *o = out->k[k];
        memcpy(o, pre, sizeof pre - 1);
        o += sizeof pre - 1;
        if (tag) {
            *o++ = '{';
            memcpy(o, tag, t - 2);
            o += t - 2;
            *o++ = '}';
        }
        memcpy(o, ch, clen);
        o += clen;
        memcpy(o, suf[k], 2);
        out->l[k] = (size_t)(o + 2 - out->k[k]);
    }
    return 0;
}

int redis_kept_number(const char *p, size_t len, unsigned long long *v)
{
    if (!len || len > 20 || (p[0] == '0' && len > 1))
        return -1;
    *v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (*v > (~0ULL - d) / 10)
            return -1;
        *v = *v * 10 + d;
    }
    return 0;
}

/* An offset: a number from 1, or 0 when it is not one. */
static unsigned long long number(const char *p, size_t len)
{
    unsigned long long v;
    return redis_kept_number(p, len, &v) < 0 ? 0 : v;
}

static int epoch_byte(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '.' || c == ':' || c == '_' || c == '-';
}

int redis_kept_parse(const char *body, size_t len, unsigned long long *offset,
                     const char **epoch, size_t *elen, const char **msg, size_t *mlen)
{
    if (len < REDIS_KEPT_MAGIC_LEN || memcmp(body, REDIS_KEPT_MAGIC, REDIS_KEPT_MAGIC_LEN) != 0) {
        *msg = body;
        *mlen = len;
        return 0;
    }
    const char *p = body + REDIS_KEPT_MAGIC_LEN, *end = body + len;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp || !(*offset = number(p, (size_t)(sp - p))))
        return -1;
    const char *e = sp + 1, *nl = memchr(e, '\n', (size_t)(end - e));
    if (!nl || nl == e || nl - e > REDIS_KEPT_EPOCH_MAX)
        return -1;
    for (const char *q = e; q < nl; q++)
        if (!epoch_byte(*q))
            return -1;
    *epoch = e;
    *elen = (size_t)(nl - e);
    *msg = nl + 1;
    *mlen = (size_t)(end - nl - 1);
    return 1;
}

unsigned long long redis_kept_id(const char *id, size_t len)
{
    if (len < 3 || id[len - 2] != '-' || id[len - 1] != '0')
        return 0;
    return number(id, len - 2);
}

int redis_kept_complete(unsigned long long since, unsigned long long top,
                        unsigned long long oldest, size_t n)
{
    if (since > top)
        return 0;
    return since == top || (n && oldest == since + 1);
}

#if XR_ANTENNA_ABI_MINOR >= 6
int redis_kept_take(redis_kept_read *rd, const void *reply, size_t nelem, redis_kept_str str)
{
    size_t el, tl;
    const char *e = nelem >= 2 && nelem % 2 == 0 ? str(reply, 0, &el) : NULL;
    const char *top = e ? str(reply, 1, &tl) : NULL;
    if (!top || el < 1 || el > REDIS_KEPT_EPOCH_MAX || redis_kept_number(top, tl, &rd->top) < 0)
        return XR_EANTENNA;
    rd->n = (nelem - 2) / 2;
    size_t bytes = 0, len;
    for (size_t i = 0; i < rd->n; i++) {
        if (!str(reply, 2 + 2 * i, &len) || !str(reply, 3 + 2 * i, &len))
            return XR_EANTENNA;
        bytes += len;
    }
    if (!(rd->epoch = malloc(el)) ||
        (rd->n && (!(rd->v = calloc(rd->n, sizeof *rd->v)) || !(rd->data = malloc(bytes ? bytes : 1)))))
        return XR_ENOMEM;
    rd->elen = el;
    memcpy(rd->epoch, e, el);
    char *o = rd->data;
    unsigned long long prev = rd->top + 1;
    for (size_t i = 0; i < rd->n; i++) {
        xr_antenna_kept *k = &rd->v[rd->n - 1 - i];
        const char *id = str(reply, 2 + 2 * i, &len);
        k->offset = redis_kept_id(id, len);
        /* Offsets after since, at most the top, each below the one before. */
        if (k->offset <= rd->since || k->offset >= prev)
            return XR_EANTENNA;
        prev = k->offset;
        const char *m = str(reply, 3 + 2 * i, &len);
        memcpy(o, m, len);
        k->msg = o;
        k->mlen = len;
        o += len;
    }
    return 0;
}

void redis_kept_clear(redis_kept_read *rd)
{
    free(rd->v);
    free(rd->epoch);
    free(rd->data);
    rd->v = NULL;
    rd->epoch = rd->data = NULL;
    rd->n = 0;
}

void redis_kept_answer(redis_kept_read *rd, xr_antenna_history_cb done, void *arg)
{
    done(arg, XR_OK, rd->v, rd->n,
         redis_kept_complete(rd->since, rd->top, rd->n ? rd->v[0].offset : 0, rd->n), rd->top,
         rd->epoch, rd->elen);
    redis_kept_clear(rd);
}

redis_kept_q *redis_kept_q_new(void *owner, void *at, const char *ch, size_t clen,
                               unsigned long long since, size_t limit, unsigned long long ttl_ms,
                               xr_antenna_history_cb done, void *arg)
{
    redis_kept_q *q = calloc(1, sizeof *q + clen);
    if (!q)
        return NULL;
    *q = (redis_kept_q){.owner = owner, .at = at, .done = done, .arg = arg, .ttl_ms = ttl_ms,
                        .limit = limit, .rd = {.since = since}, .clen = clen};
    memcpy(q->ch, ch, clen);
    return q;
}

void redis_kept_push(redis_kept_fifo *f, redis_kept_q *q)
{
    q->next = NULL;
    if (f->tail)
        f->tail->next = q;
    else
        f->head = q;
    f->tail = q;
}

redis_kept_q *redis_kept_synced(redis_kept_fifo *f)
{
    redis_kept_q *q = f->head;
    if (!q)
        return NULL;
    if (!(f->head = q->next))
        f->tail = NULL;
    if (!q->read)
        return q;
    redis_kept_answer(&q->rd, q->done, q->arg);
    free(q);
    return NULL;
}

void redis_kept_fail(redis_kept_q *q, int rc)
{
    q->done(q->arg, rc, NULL, 0, 0, 0, NULL, 0);
    redis_kept_clear(&q->rd);
    free(q);
}

void redis_kept_fail_all(redis_kept_fifo *f)
{
    redis_kept_q *q = f->head;
    f->head = f->tail = NULL;
    while (q) {
        redis_kept_q *next = q->next;
        redis_kept_fail(q, XR_EANTENNA);
        q = next;
    }
}

void redis_kept_read_args(const redis_kept_q *q, const redis_kept_keys *k, const char *seed,
                          size_t seedlen, redis_kept_args *a)
{
    unsigned long long meta_ms = q->ttl_ms > REDIS_KEPT_META_MS ? q->ttl_ms : REDIS_KEPT_META_MS;
    const char *argv[10] = {"EVAL", redis_kept_read_lua, "2", k->k[0], k->k[1], a->since,
                            a->limit, a->ttl, seed, a->meta};
    size_t lens[10] = {4, redis_kept_read_lua_len, 1, k->l[0], k->l[1],
                       (size_t)snprintf(a->since, sizeof a->since, "%llu", q->rd.since),
                       (size_t)snprintf(a->limit, sizeof a->limit, "%zu", q->limit ? q->limit : 1),
                       (size_t)snprintf(a->ttl, sizeof a->ttl, "%llu", q->ttl_ms), seedlen,
                       (size_t)snprintf(a->meta, sizeof a->meta, "%llu", meta_ms)};
    memcpy(a->argv, argv, sizeof argv);
    memcpy(a->lens, lens, sizeof lens);
}
#endif

void redis_kept_deliver(const xr_antenna_host *h, const char *who, unsigned long long *malformed,
                        const char *ch, size_t clen, const char *body, size_t len)
{
    unsigned long long offset = 0;
    const char *epoch = NULL, *msg;
    size_t elen = 0, mlen;
    int kept = redis_kept_parse(body, len, &offset, &epoch, &elen, &msg, &mlen);
    if (kept < 0) {
        if ((*malformed)++ % 1000 == 0)
            h->log(h->host, XR_ANTENNA_LOG_WARN,
                   "%s antenna: dropped a message whose position is malformed (%llu so far)", who,
                   *malformed);
        return;
    }
#if XR_ANTENNA_ABI_MINOR >= 6
    if (kept && XR_ANTENNA_HOST_HAS(h, message_at)) {
        h->message_at(h->host, ch, clen, msg, mlen, offset, epoch, elen);
        return;
    }
#endif
    h->message(h->host, ch, clen, msg, mlen);
}
