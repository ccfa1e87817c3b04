/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kafka:// module's state, shared by kafka_antenna.c (connections,
 * live pub/sub) and history.c (positions and reads of the log).
 */
#ifndef XRAPTOR_KAFKA_H
#define XRAPTOR_KAFKA_H

#include <stdint.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <xraptor/antenna.h>

/* Set on the posts of channels with history: only those have a position
 * (a Python X-raptor node's posts carry none). */
#define KAFKA_KEPT_HEADER "xraptor-kept"
#define KAFKA_EPOCH_BUF 65      /* an epoch is at most 64 bytes */

typedef struct kafka_read kafka_read;
typedef struct kafka_post kafka_post;

typedef struct kafka {
    struct event_base *base;
    xr_antenna_host host;
    rd_kafka_t *prod, *cons;
    char topic[250];
    char servers[512];
    int wake_fd;             /* the host's wake-up, written by librdkafka */
    struct event *beat, *beat_soon;
    /* The host's keyed sets of names: */
    xr_antenna_names *subs;      /* channels subscribed on this node */
    xr_antenna_names *presence;  /* channels any node announced -> uint64_t ms last seen */
    int broker_up, assigned, up;
    uint64_t up_since_ms;    /* presence is only known a TTL after this */

    /* The live stream's place in each partition: the offset it delivers
     * next (-1 until known), so that history reads end where it starts
     * and a new assignment resumes there instead of skipping. */
    int nparts;
    long long *next;
    int known;               /* partitions whose next offset is known */
    char cluster[128];       /* the cluster's id: part of every epoch */

    /* History reads, one at a time, through a consumer of their own. */
    rd_kafka_t *reader;
    kafka_read *reads, **reads_tail;
    struct event *read_ev;   /* the read's deadline, or its answer now */
    kafka_post *posts;       /* kept posts waiting for their delivery report */
    int closing;
} kafka;

/* The epoch of partition p: the cluster, the topic, the partition and how
 * many the topic has (more partitions move channels). */
size_t kafka_epoch(const kafka *k, int p, char *buf, size_t len);
/* The partition a channel's posts go to (librdkafka's default for keys). */
int kafka_partition(const kafka *k, const char *ch, size_t len);

int kafka_history_init(kafka *k, char *err, size_t errlen);
/* A message of the reader's consumer, on the loop. */
void kafka_history_message(kafka *k, rd_kafka_message_t *m);
/* A post's delivery report, on the loop. */
void kafka_history_delivered(kafka *k, const rd_kafka_message_t *m);
/* Answers every read and post still waiting with XR_EANTENNA. */
void kafka_history_stop(kafka *k);
void kafka_history_free(kafka *k);

int kafka_publish_kept_at(void *self, const char *ch, size_t clen, const char *msg, size_t mlen,
                          size_t keep, unsigned long long ttl_ms, xr_antenna_kept_cb done,
                          void *arg);
int kafka_publish_kept(void *self, const char *ch, size_t clen, const char *msg, size_t mlen,
                       size_t keep, unsigned long long ttl_ms);
int kafka_history(void *self, const char *ch, size_t clen, unsigned long long since, size_t limit,
                  unsigned long long ttl_ms, xr_antenna_history_cb done, void *arg);

#endif
