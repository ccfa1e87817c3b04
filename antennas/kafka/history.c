/* SPDX-License-Identifier: Apache-2.0 */
/*
 * History on kafka:// (docs/ARCHITECTURE.md section 5): the topic is the
 * history. Kafka gives no per-key sequence and no conditional append, so
 * a position is the message's offset in its partition, plus one (offsets
 * skip: the partition's other channels and presence heartbeats take the
 * numbers between; the module says so through history_sparse). The epoch
 * names the cluster, the topic, the partition and the partition count.
 *
 * A read of a channel scans its partition with a consumer of its own,
 * from the offset after since up to where the node's live consumer stands
 * at the time of the call: everything before that point has passed the
 * live consumer (whatever it did with it), everything from it on will
 * reach the channel's receivers live. So the read and the live stream meet
 * without a gap and without waiting. Complete means the log still starts
 * at or before since, no message of the channel after since is past its
 * TTL, and no more than `limit` came after since.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"

#define READ_WAIT_S 10        /* a read that does not end: the broker is away */
#define SCAN_MAX 1000000      /* messages of a partition one read looks through */

struct kafka_read {
    kafka_read *next;
    int p;
    long long start, top;       /* the offsets read: [start, top) */
    unsigned long long since;   /* 0: a read of the newest, not a recovery */
    long long cutoff_ms;        /* wall clock: older messages are past the TTL */
    int scanning, seen, complete;
    int failed;                 /* decided without a scan: the broker refused it */
    xr_antenna_history_cb done;
    void *arg;
    xr_antenna_kept *v;         /* a ring of the newest `limit`, oldest at `head` */
    size_t n, head, cap, limit;
    size_t clen;
    char ch[];
};

struct kafka_post {
    kafka_post *next, **prev;
    xr_antenna_kept_cb done;
    void *arg;
};

size_t kafka_epoch(const kafka *k, int p, char *buf, size_t len)
{
    /* FNV-1a of the topic: its name may be longer than an epoch. */
    uint32_t h = 2166136261u;
    for (const char *t = k->topic; *t; t++)
        h = (h ^ (unsigned char)*t) * 16777619u;
    int n = snprintf(buf, len, "%.32s.%08x.%d.%d", k->cluster, (unsigned)h, p, k->nparts);
    return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

int kafka_partition(const kafka *k, const char *ch, size_t len)
{
    return rd_kafka_msg_partitioner_consistent(NULL, ch, len, k->nparts, NULL, NULL);
}

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- kept posts ------------------------------------------------------------ */

int kafka_publish_kept_at(void *self, const char *ch, size_t clen, const char *msg, size_t mlen,
                          size_t keep, unsigned long long ttl_ms, xr_antenna_kept_cb done,
                          void *arg)
{
    /* The topic's retention keeps it: keep and ttl_ms are applied as the
     * history is read. */
    (void)keep, (void)ttl_ms;
    kafka *k = self;
    if (!k->up || !k->nparts || k->closing)
        return XR_EANTENNA;
    kafka_post *post = NULL;
    if (done) {
        if (!(post = calloc(1, sizeof *post)))
            return XR_ENOMEM;
        post->done = done;
        post->arg = arg;
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        k->prod, RD_KAFKA_V_TOPIC(k->topic), RD_KAFKA_V_PARTITION(kafka_partition(k, ch, clen)),
        RD_KAFKA_V_KEY(ch, clen), RD_KAFKA_V_VALUE((void *)msg, mlen),
        RD_KAFKA_V_HEADER(KAFKA_KEPT_HEADER, "1", 1), RD_KAFKA_V_OPAQUE(post),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e) {
        free(post);
        return XR_EANTENNA;
    }
    if (post) {
        post->next = k->posts;
        if (post->next)
            post->next->prev = &post->next;
        post->prev = &k->posts;
        k->posts = post;
    }
    return 0;
}

int kafka_publish_kept(void *self, const char *ch, size_t clen, const char *msg, size_t mlen,
                       size_t keep, unsigned long long ttl_ms)
{
    return kafka_publish_kept_at(self, ch, clen, msg, mlen, keep, ttl_ms, NULL, NULL);
}

static void post_unlink(kafka_post *post)
{
    *post->prev = post->next;
    if (post->next)
        post->next->prev = post->prev;
}

void kafka_history_delivered(kafka *k, const rd_kafka_message_t *m)
{
    kafka_post *post = m->_private;
    /* Past stop, every post was answered and freed already. */
    if (!post || k->closing)
        return;
    post_unlink(post);
    if (m->err) {
        post->done(post->arg, XR_EANTENNA, 0, NULL, 0);
    } else {
        char epoch[KAFKA_EPOCH_BUF];
        size_t elen = kafka_epoch(k, m->partition, epoch, sizeof epoch);
        post->done(post->arg, 0, (unsigned long long)m->offset + 1, epoch, elen);
    }
    free(post);
}

/* ---- reads ----------------------------------------------------------------- */

static void read_free(kafka_read *r)
{
    for (size_t i = 0; i < r->n; i++)
        free((void *)r->v[(r->head + i) % r->cap].msg);
    free(r->v);
    free(r);
}

/* The head read ends: answered, gone, and the next begins. */
static void read_begin(kafka *k);

static void read_end(kafka *k, int rc)
{
    kafka_read *r = k->reads;
    if (r->scanning)
        rd_kafka_assign(k->reader, NULL);
    evtimer_del(k->read_ev);
    if (!(k->reads = r->next))
        k->reads_tail = &k->reads;
    /* Oldest first, as the ABI hands them. */
    xr_antenna_kept *v = NULL;
    if (rc == 0 && r->n && !(v = malloc(r->n * sizeof *v)))
        rc = XR_ENOMEM;
    for (size_t i = 0; v && i < r->n; i++)
        v[i] = r->v[(r->head + i) % r->cap];
    char epoch[KAFKA_EPOCH_BUF];
    size_t elen = kafka_epoch(k, r->p, epoch, sizeof epoch);
    r->done(r->arg, rc, v, rc == 0 ? r->n : 0, r->complete, (unsigned long long)r->top, epoch,
            elen);
    free(v);
    read_free(r);
    if (k->reads && !k->closing)
        read_begin(k);
}

/* Answered now, from the loop: never inside the call that asked. */
static void read_decided(kafka *k)
{
    struct timeval now = {0, 0};
    evtimer_add(k->read_ev, &now);
}

static void read_begin(kafka *k)
{
    kafka_read *r = k->reads;
    if (r->since) {
        /* Whether the log still starts there, its first message tells. */
        r->start = (long long)r->since;
        if (r->top - r->start > SCAN_MAX)
            r->complete = 0;        /* too far back to look through */
    } else {
        /* The newest: from where the log starts, as the live consumer's
         * fetches last told (an older start resets to the real one). */
        int64_t lo = -1, hi = -1;
        rd_kafka_get_watermark_offsets(k->cons, k->topic, r->p, &lo, &hi);
        r->start = r->top > SCAN_MAX ? r->top - SCAN_MAX : 0;
        if (lo > r->start)
            r->start = lo;
    }
    if (!r->complete || r->start >= r->top) {
        read_decided(k);
        return;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, k->topic, r->p)->offset = r->start;
    rd_kafka_resp_err_t e = rd_kafka_assign(k->reader, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        k->host.log(k->host.host, XR_ANTENNA_LOG_WARN, "kafka antenna: history read: %s",
                    rd_kafka_err2str(e));
        r->failed = 1;
        read_decided(k);
        return;
    }
    r->scanning = 1;
    struct timeval wait = {READ_WAIT_S, 0};
    evtimer_add(k->read_ev, &wait);
}

static void on_read_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    kafka *k = arg;
    kafka_read *r = k->reads;
    if (!r)
        return;
    if (r->scanning)
        k->host.log(k->host.host, XR_ANTENNA_LOG_WARN,
                    "kafka antenna: a history read of partition %d did not end in %d s", r->p,
                    READ_WAIT_S);
    read_end(k, r->scanning || r->failed ? XR_EANTENNA : 0);
}

static int keep_one(kafka_read *r, const rd_kafka_message_t *m)
{
    if (r->n == r->limit) {
        /* More than asked for: the oldest goes, and the read is not all. */
        free((void *)r->v[r->head].msg);
        r->head = (r->head + 1) % r->cap;
        r->n--;
        r->complete = 0;
    } else if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        if (cap > r->limit)
            cap = r->limit;
        xr_antenna_kept *v = malloc(cap * sizeof *v);
        if (!v)
            return XR_ENOMEM;
        for (size_t i = 0; i < r->n; i++)
            v[i] = r->v[(r->head + i) % r->cap];
        free(r->v);
        r->v = v;
        r->cap = cap;
        r->head = 0;
    }
    char *copy = malloc(m->len + 1);
    if (!copy)
        return XR_ENOMEM;
    if (m->len)
        memcpy(copy, m->payload, m->len);
    copy[m->len] = '\0';
    r->v[(r->head + r->n) % r->cap] =
        (xr_antenna_kept){(unsigned long long)m->offset + 1, copy, m->len};
    r->n++;
    return 0;
}

static int kept_of(const kafka_read *r, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs;
    const void *v;
    size_t vlen;
    return m->key && m->key_len == r->clen && memcmp(m->key, r->ch, r->clen) == 0 &&
           rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
           rd_kafka_header_get_last(hdrs, KAFKA_KEPT_HEADER, &v, &vlen) ==
               RD_KAFKA_RESP_ERR_NO_ERROR;
}

void kafka_history_message(kafka *k, rd_kafka_message_t *m)
{
    kafka_read *r = k->reads;
    /* What an earlier read's assignment still fetched is not this one's. */
    if (!r || !r->scanning || m->partition != r->p || m->offset < r->start)
        return;
    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->offset >= r->top)
                read_end(k, 0);
        } else {
            k->host.log(k->host.host, XR_ANTENNA_LOG_WARN, "kafka antenna: history read: %s",
                        rd_kafka_message_errstr(m));
        }
        return;
    }
    if (!r->seen++ && m->offset > r->start && r->since) {
        /* The log no longer starts at or before since. */
        r->complete = 0;
        read_end(k, 0);
        return;
    }
    if (m->offset >= r->top) {
        read_end(k, 0);
        return;
    }
    if (kept_of(r, m)) {
        rd_kafka_timestamp_type_t type;
        long long ts = rd_kafka_message_timestamp(m, &type);
        if (ts >= 0 && ts < r->cutoff_ms) {
            r->complete &= !r->since;   /* one missed is past its TTL */
        } else if (keep_one(r, m) < 0) {
            read_end(k, XR_ENOMEM);
            return;
        }
    }
    if (m->offset == r->top - 1)
        read_end(k, 0);
}

int kafka_history(void *self, const char *ch, size_t clen, unsigned long long since, size_t limit,
                  unsigned long long ttl_ms, xr_antenna_history_cb done, void *arg)
{
    kafka *k = self;
    if (!k->up || !k->nparts || !limit || k->closing)
        return XR_EANTENNA;
    int p = kafka_partition(k, ch, clen);
    if (k->next[p] < 0)
        return XR_EANTENNA;
    kafka_read *r = calloc(1, sizeof *r + clen);
    if (!r)
        return XR_ENOMEM;
    r->p = p;
    r->top = k->next[p];
    r->since = since;
    r->cutoff_ms = wall_ms() - (long long)ttl_ms;
    r->complete = 1;
    r->limit = limit;
    r->done = done;
    r->arg = arg;
    r->clen = clen;
    memcpy(r->ch, ch, clen);
    *k->reads_tail = r;
    k->reads_tail = &r->next;
    if (k->reads == r)
        read_begin(k);
    return 0;
}

int kafka_history_init(kafka *k, char *err, size_t errlen)
{
    k->reads_tail = &k->reads;
    if (!(k->read_ev = evtimer_new(k->base, on_read_ev, k))) {
        snprintf(err, errlen, "kafka antenna: out of memory");
        return XR_ENOMEM;
    }
    return 0;
}

void kafka_history_stop(kafka *k)
{
    while (k->reads) {
        /* Each answer may ask again: refused once closing. */
        k->closing = 1;
        read_end(k, XR_EANTENNA);
    }
    k->closing = 1;
    while (k->posts) {
        kafka_post *post = k->posts;
        post_unlink(post);
        post->done(post->arg, XR_EANTENNA, 0, NULL, 0);
        free(post);
    }
}

void kafka_history_free(kafka *k)
{
    if (k->read_ev)
        event_free(k->read_ev);
}
