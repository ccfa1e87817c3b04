/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kafka://host:port[,host:port]/topic — channels carried on one topic.
 *
 * The message key is the channel and the value the posted text, so
 * thousands of channels need no thousands of topics; the price is that every
 * node reads every message of the topic and drops those it has no receiver
 * for (see xraptor-antenna(7)). Same key, same partition: per-channel order
 * holds.
 *
 * Every node consumes all partitions from the end (live pub/sub, no replay)
 * in a consumer group of its own. librdkafka's threads do the broker I/O;
 * its queues signal the host's wake-up (rd_kafka_queue_io_event_enable) and the
 * server's loop serves them with non-blocking polls, so every callback —
 * messages, delivery reports, rebalances, statistics — runs on the loop.
 *
 * is_alive: Kafka cannot say who listens. Each node posts a presence
 * heartbeat (a message with header "xraptor-presence" listing its channels)
 * every 2 s and after a subscribe; a channel is alive while some node named
 * it within the last 6 s. A node that has not yet listened for 6 s (or is
 * cut off) answers "alive": it does not know enough to prune.
 *
 * History (history.c): a channel's position is its message's offset in
 * the partition. The live consumer knows, per partition, the offset it
 * delivers next; a new assignment resumes there rather than at the end,
 * so the live stream of a channel with history has no hole of its own.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"

#define HEARTBEAT_MS 2000
#define PRESENCE_TTL_MS (3 * HEARTBEAT_MS)
#define POLL_BUDGET 10000
#define PRESENCE_HEADER "xraptor-presence"

/* ---- URL ------------------------------------------------------------------ */

static int parse_url(const char *url, char *servers, size_t slen, char *topic, size_t tlen,
                     char *err, size_t errlen)
{
    const char *p = url + 8, *slash;
    if (strncmp(url, "kafka://", 8) != 0 || !(slash = strchr(p, '/')) || slash == p ||
        !slash[1]) {
        snprintf(err, errlen, "kafka antenna: '%s' is not kafka://host:port[,host:port]/topic", url);
        return XR_EINVAL;
    }
    if ((size_t)(slash - p) >= slen || strlen(slash + 1) >= tlen) {
        snprintf(err, errlen, "kafka antenna: URL too long");
        return XR_EINVAL;
    }
    for (const char *t = slash + 1; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
              *t == '.' || *t == '_' || *t == '-')) {
            snprintf(err, errlen, "kafka antenna: topic '%s' may hold only letters, digits, '.', '_', '-'",
                     slash + 1);
            return XR_EINVAL;
        }
    for (const char *s = p; s < slash; s++)
        if (*s == ' ' || *s == '@') {
            snprintf(err, errlen, "kafka antenna: bad broker list in '%s'", url);
            return XR_EINVAL;
        }
    memcpy(servers, p, (size_t)(slash - p));
    servers[slash - p] = '\0';
    strcpy(topic, slash + 1);
    return 0;
}

static int check_url(const char *url, char *err, size_t errlen)
{
    char s[512], t[250];
    return parse_url(url, s, sizeof s, t, sizeof t, err, errlen);
}

/* ---- state ------------------------------------------------------------------ */

/* The cluster's id, for epochs: known once metadata came, never waited for. */
static void learn_cluster(kafka *k)
{
    if (k->cluster[0])
        return;
    char *id = rd_kafka_clusterid(k->cons, 0);
    if (id) {
        snprintf(k->cluster, sizeof k->cluster, "%s", id);
        rd_kafka_mem_free(k->cons, id);
    }
}

static void update_state(kafka *k, const char *why)
{
    learn_cluster(k);
    /* Up once every partition's place is known: a read ends there. */
    int up = k->broker_up && k->assigned && k->known == k->nparts && k->cluster[0];
    if (up == k->up)
        return;
    k->up = up;
    if (up)
        k->up_since_ms = k->host.now_ms();
    char detail[1400];
    snprintf(detail, sizeof detail, "kafka at %s, topic %s%s%s", k->servers, k->topic,
             why ? ": " : "", why ? why : "");
    k->host.state(k->host.host, up, detail);
}

/* Statistics (every 500 ms) carry each broker connection's state. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk, (void)len;
    kafka *k = opaque;
    k->broker_up = strstr(json, "\"state\":\"UP\"") != NULL;
    update_state(k, k->broker_up ? NULL : "no broker reachable");
    return 0;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    kafka *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT) {
        k->broker_up = 0;
        update_state(k, reason);
    }
    k->host.log(k->host.host, XR_ANTENNA_LOG_DEBUG, "kafka antenna: %s", reason);
}

/* librdkafka's own log lines, routed through its main queue so that they
 * arrive here on the loop (log.queue) and go to the server's log. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    kafka *k = rd_kafka_opaque(rk);
    /* syslog levels: 0-3 errors, 4 warning, 5-6 notice/info, 7 debug */
    k->host.log(k->host.host, level <= 3 ? XR_ANTENNA_LOG_WARN : XR_ANTENNA_LOG_DEBUG, "kafka antenna: %s: %s", fac, buf);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kafka *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* A group of its own gets every partition of the one topic. */
        if (parts->cnt != k->nparts) {
            long long *next = malloc((size_t)(parts->cnt ? parts->cnt : 1) * sizeof *next);
            if (!next) {
                k->host.log(k->host.host, XR_ANTENNA_LOG_ERROR, "kafka antenna: out of memory");
                return;
            }
            for (int i = 0; i < parts->cnt; i++)
                next[i] = -1;
            free(k->next);
            k->next = next;
            k->nparts = parts->cnt;
            k->known = 0;
        }
        /* Live pub/sub starts at the end, never a replay of old messages;
         * assigned again, it resumes where it stood, never skipping. */
        for (int i = 0; i < parts->cnt; i++) {
            int p = parts->elems[i].partition;
            parts->elems[i].offset =
                p >= 0 && p < k->nparts && k->next[p] >= 0 ? k->next[p] : RD_KAFKA_OFFSET_END;
        }
        rd_kafka_assign(rk, parts);
        k->assigned = parts->cnt > 0;
    } else {
        rd_kafka_assign(rk, NULL);
        k->assigned = 0;
    }
    update_state(k, k->assigned ? NULL : "partitions revoked");
}

/* ---- consuming ------------------------------------------------------------ */

static void on_presence(kafka *k, const uint8_t *p, size_t n)
{
    uint64_t now = k->host.now_ms();
    size_t i = 0;
    while (i + 4 <= n) {
        uint32_t len = (uint32_t)p[i] << 24 | (uint32_t)p[i + 1] << 16 | (uint32_t)p[i + 2] << 8 | p[i + 3];
        i += 4;
        if (len > n - i)
            return;  /* malformed: ignore the rest */
        void **seen = k->host.names_find(k->presence, (const char *)p + i, len);
        uint64_t *ms = seen ? *seen : malloc(sizeof *ms);
        if (ms && !seen && k->host.names_put(k->presence, (const char *)p + i, len, ms) < 0) {
            free(ms);
            ms = NULL;
        }
        if (ms)
            *ms = now;
        i += len;
    }
}

/* The live consumer passed offset `next` of partition p. */
static void moved_to(kafka *k, int p, long long next)
{
    if (p < 0 || p >= k->nparts || next <= k->next[p])
        return;
    int first = k->next[p] < 0;
    k->next[p] = next;
    if (first && ++k->known == k->nparts)
        update_state(k, NULL);
}

static void on_message(kafka *k, rd_kafka_message_t *m)
{
    if (m->err) {
        /* The end reached: where a read of the partition stops. */
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            moved_to(k, m->partition, m->offset);
        else
            k->host.log(k->host.host, XR_ANTENNA_LOG_WARN, "kafka antenna: consume: %s", rd_kafka_message_errstr(m));
        return;
    }
    moved_to(k, m->partition, m->offset + 1);
    rd_kafka_headers_t *hdrs;
    const void *v;
    size_t vlen;
    int has = rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (has && rd_kafka_header_get_last(hdrs, PRESENCE_HEADER, &v, &vlen) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        on_presence(k, m->payload, m->len);
        return;
    }
    /* Every node reads the whole topic; only our channels go further. */
    if (!m->key || !k->host.names_find(k->subs, m->key, m->key_len))
        return;
    const char *body = m->payload ? m->payload : "";
    if (has && rd_kafka_header_get_last(hdrs, KAFKA_KEPT_HEADER, &v, &vlen) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        char epoch[KAFKA_EPOCH_BUF];
        size_t elen = kafka_epoch(k, m->partition, epoch, sizeof epoch);
        k->host.message_at(k->host.host, m->key, m->key_len, body, m->len,
                           (unsigned long long)m->offset + 1, epoch, elen);
    } else {
        k->host.message(k->host.host, m->key, m->key_len, body, m->len);
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kafka_history_delivered(opaque, m);
}

static void on_wake(void *arg)
{
    kafka *k = arg;
    rd_kafka_poll(k->prod, 0);
    int budget = POLL_BUDGET;
    rd_kafka_message_t *m;
    while (budget-- > 0 && (m = rd_kafka_consumer_poll(k->cons, 0))) {
        on_message(k, m);
        rd_kafka_message_destroy(m);
    }
    while (budget-- > 0 && (m = rd_kafka_consumer_poll(k->reader, 0))) {
        kafka_history_message(k, m);
        rd_kafka_message_destroy(m);
    }
    /* More waiting: come back next iteration instead of starving the loop
     * (the pipe only signals an empty queue becoming non-empty). */
    if (budget < 0)
        xr_antenna_wake(k->wake_fd);
}

/* ---- presence heartbeats -------------------------------------------------- */

static void send_presence(kafka *k, const uint8_t *buf, size_t n)
{
    if (n)
        rd_kafka_producev(k->prod, RD_KAFKA_V_TOPIC(k->topic), RD_KAFKA_V_VALUE((void *)buf, n),
                          RD_KAFKA_V_HEADER(PRESENCE_HEADER, "1", 1),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
}

static void heartbeat(kafka *k)
{
    uint64_t now = k->host.now_ms();
    /* Forget what nobody announced for a while. */
    for (xr_antenna_cursor c = {0}; k->host.names_next(k->presence, &c);)
        if (now - *(uint64_t *)c.value > PRESENCE_TTL_MS)
            free(k->host.names_del(k->presence, c.name, c.len));
    if (!k->up || !k->host.names_count(k->subs))
        return;
    /* Names, each with a 4-byte length, in messages of at most 64 KiB. */
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return;
    for (xr_antenna_cursor e = {0}; k->host.names_next(k->subs, &e);) {
        if (4 + e.len > cap)
            continue;  /* a name that long cannot be announced */
        if (n + 4 + e.len > cap) {
            send_presence(k, buf, n);
            n = 0;
        }
        buf[n++] = (uint8_t)(e.len >> 24);
        buf[n++] = (uint8_t)(e.len >> 16);
        buf[n++] = (uint8_t)(e.len >> 8);
        buf[n++] = (uint8_t)e.len;
        memcpy(buf + n, e.name, e.len);
        n += e.len;
    }
    send_presence(k, buf, n);
    free(buf);
}

static void on_beat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    heartbeat(arg);
}

/* ---- the ops -------------------------------------------------------------- */

static void destroy(void *self);

enum role { PRODUCER, LIVE, READER };

static rd_kafka_t *client(kafka *k, enum role role, char *err, size_t errlen)
{
    char errstr[512], group[128];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
#define SET(key, val) if (rd_kafka_conf_set(conf, key, val, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) goto fail
    SET("bootstrap.servers", k->servers);
    SET("client.id", "xraptor");
    SET("log.queue", "true");
    SET("reconnect.backoff.ms", "100");
    SET("reconnect.backoff.max.ms", "5000");
    if (role != READER) {
        /* The broker's state, and (the live consumer's) where each
         * partition's log starts now. */
        rd_kafka_conf_set_stats_cb(conf, on_stats);
        SET("statistics.interval.ms", "500");
    }
    if (role == READER) {
        /* History reads: assigned one partition at a time, never in a
         * group's rebalance; a start the log dropped resets to its
         * beginning, which the read sees and reports. */
        snprintf(group, sizeof group, "xraptor-read-%ld-%lx", (long)getpid(),
                 (unsigned long)(uintptr_t)k);
        SET("group.id", group);
        SET("enable.auto.commit", "false");
        SET("enable.auto.offset.store", "false");
        SET("auto.offset.reset", "earliest");
        SET("enable.partition.eof", "true");
        SET("fetch.wait.max.ms", "10");
        SET("fetch.error.backoff.ms", "50");
    } else if (role == PRODUCER) {
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        SET("linger.ms", "1");
        SET("message.timeout.ms", "10000");
        /* A bounded local queue: a slow broker fails publishes, never
         * grows memory without end. */
        SET("queue.buffering.max.messages", "100000");
        SET("queue.buffering.max.kbytes", "16384");     /* 16 MiB, not librdkafka's 1 GiB */
    } else {
        /* A group of its own: this node gets every partition. */
        snprintf(group, sizeof group, "xraptor-%ld-%lx", (long)getpid(), (unsigned long)(uintptr_t)k);
        SET("group.id", group);
        /* Named in the log: an operator (or a test) finding the group's
         * coordinator on the cluster needs it. */
        k->host.log(k->host.host, XR_ANTENNA_LOG_INFO, "kafka antenna: consumer group %s", group);
        SET("enable.auto.commit", "false");
        SET("auto.offset.reset", "latest");
        /* The end reached tells where a history read stops. */
        SET("enable.partition.eof", "true");
        SET("fetch.wait.max.ms", "10");
        SET("fetch.error.backoff.ms", "50");
        SET("session.timeout.ms", "6000");
        SET("heartbeat.interval.ms", "500");
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    }
#undef SET
    rd_kafka_t *rk = rd_kafka_new(role == PRODUCER ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf,
                                  errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);  /* rd_kafka_new takes it only on success */
        snprintf(err, errlen, "kafka antenna: %s", errstr);
        return NULL;
    }
    rd_kafka_set_log_queue(rk, NULL);
    return rk;
fail:
    rd_kafka_conf_destroy(conf);
    snprintf(err, errlen, "kafka antenna: %s", errstr);
    return NULL;
}

static void *create(struct event_base *base, const char *url, const xr_antenna_host *host,
                    char *err, size_t errlen)
{
    if (xr_antenna_host_complete(host, err, errlen) < 0)
        return NULL;
    kafka *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    k->base = base;
    k->host = *host;
    if (parse_url(url, k->servers, sizeof k->servers, k->topic, sizeof k->topic, err, errlen) < 0 ||
        !(k->subs = host->names_new()) || !(k->presence = host->names_new())) {
        destroy(k);
        return NULL;
    }
    if (kafka_history_init(k, err, errlen) < 0) {
        destroy(k);
        return NULL;
    }
    if ((k->wake_fd = host->wakeup(host->host, on_wake, k)) < 0 ||
        !(k->beat = event_new(base, -1, EV_PERSIST, on_beat, k)) ||
        !(k->beat_soon = evtimer_new(base, on_beat, k))) {
        snprintf(err, errlen, "kafka antenna: cannot set up: %s", strerror(errno));
        destroy(k);
        return NULL;
    }
    if (!(k->prod = client(k, PRODUCER, err, errlen)) ||
        !(k->cons = client(k, LIVE, err, errlen)) ||
        !(k->reader = client(k, READER, err, errlen))) {
        destroy(k);
        return NULL;
    }
    rd_kafka_poll_set_consumer(k->cons);
    rd_kafka_poll_set_consumer(k->reader);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, k->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(k->cons, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        snprintf(err, errlen, "kafka antenna: subscribe %s: %s", k->topic, rd_kafka_err2str(e));
        destroy(k);
        return NULL;
    }
    /* librdkafka writes a byte on the wake-up whenever a queue gets work. */
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(k->prod);
    rd_kafka_queue_io_event_enable(q, k->wake_fd, "1", 1);
    rd_kafka_queue_destroy(q);
    q = rd_kafka_queue_get_consumer(k->cons);
    rd_kafka_queue_io_event_enable(q, k->wake_fd, "1", 1);
    rd_kafka_queue_destroy(q);
    q = rd_kafka_queue_get_consumer(k->reader);
    rd_kafka_queue_io_event_enable(q, k->wake_fd, "1", 1);
    rd_kafka_queue_destroy(q);
    struct timeval tv = {HEARTBEAT_MS / 1000, (HEARTBEAT_MS % 1000) * 1000};
    event_add(k->beat, &tv);
    /* Serve anything queued before the fd was set. */
    xr_antenna_wake(k->wake_fd);
    return k;
}

static void destroy(void *self)
{
    kafka *k = self;
    /* Shutdown only: give posts already made half a second to leave (and
     * be told their positions); what is left is answered as lost. */
    if (k->prod)
        rd_kafka_flush(k->prod, 500);
    kafka_history_stop(k);
    if (k->prod)
        rd_kafka_destroy(k->prod);
    /* Leaving a group politely can block; the groups are ours alone and
     * expire by themselves. */
    if (k->reader)
        rd_kafka_destroy_flags(k->reader, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    if (k->cons)
        rd_kafka_destroy_flags(k->cons, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    kafka_history_free(k);
    free(k->next);
    if (k->beat)
        event_free(k->beat);
    if (k->beat_soon)
        event_free(k->beat_soon);
    if (k->presence)
        for (xr_antenna_cursor c = {0}; k->host.names_next(k->presence, &c);)
            free(c.value);
    k->host.names_free(k->subs);
    k->host.names_free(k->presence);
    free(k);
}

static int subscribe(void *self, const char *ch, size_t len)
{
    kafka *k = self;
    if (k->host.names_find(k->subs, ch, len))
        return 0;
    if (k->host.names_put(k->subs, ch, len, NULL) < 0)
        return XR_ENOMEM;
    /* Announce it soon, so other nodes do not take it for dead. */
    struct timeval tv = {0, 50000};
    if (!evtimer_pending(k->beat_soon, NULL))
        evtimer_add(k->beat_soon, &tv);
    return 0;
}

static int unsubscribe(void *self, const char *ch, size_t len)
{
    kafka *k = self;
    k->host.names_del(k->subs, ch, len);
    return 0;
}

static int publish(void *self, const char *ch, size_t clen, const char *msg, size_t mlen)
{
    kafka *k = self;
    if (!k->up)
        return XR_EANTENNA;
    rd_kafka_resp_err_t e = rd_kafka_producev(k->prod, RD_KAFKA_V_TOPIC(k->topic),
                                              RD_KAFKA_V_KEY(ch, clen),
                                              RD_KAFKA_V_VALUE((void *)msg, mlen),
                                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                              RD_KAFKA_V_END);
    return e ? -1 : 0;
}

typedef struct alive_answer {
    xr_antenna_alive_cb done;
    void *arg;
    int alive;
} alive_answer;

static void answer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    alive_answer *a = arg;
    a->done(a->alive, a->arg);
    free(a);
}

static int is_alive(void *self, const char *ch, size_t len, xr_antenna_alive_cb done, void *arg)
{
    kafka *k = self;
    alive_answer *a = malloc(sizeof *a);
    if (!a)
        return XR_ENOMEM;
    void **seen = k->host.names_find(k->presence, ch, len);
    uint64_t now = k->host.now_ms();
    a->done = done;
    a->arg = arg;
    /* "Nobody listens" needs a full TTL of listening to the heartbeats;
     * before that, or while cut off, assume the best: never prune on
     * missing knowledge. */
    a->alive = k->host.names_find(k->subs, ch, len) ||
               (seen && now - *(uint64_t *)*seen <= PRESENCE_TTL_MS) ||
               !k->up || now - k->up_since_ms < PRESENCE_TTL_MS;
    struct timeval tv = {0, 0};
    if (event_base_once(k->base, -1, EV_TIMEOUT, answer, a, &tv) != 0) {
        free(a);
        return XR_EANTENNA;
    }
    return 0;
}

static int connected(void *self)
{
    return ((kafka *)self)->up;
}

XR_ANTENNA_MODULE("kafka",
                  "Kafka (librdkafka): one topic, channel = message key; presence heartbeats; "
                  "history in the topic",
                  .publish_kept = kafka_publish_kept, .history = kafka_history,
                  .publish_kept_at = kafka_publish_kept_at, .history_sparse = 1)
