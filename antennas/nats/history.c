/* SPDX-License-Identifier: Apache-2.0 */
/*
 * History on nats://: one JetStream stream, XRAPTOR_HISTORY (file
 * storage), shared by every node. A post with history goes to the
 * channel's kept subject xr.k.c.NAME (xr.k.b.BASE64), the stream's; once
 * stored the stream republishes it on xr.r.c.NAME (xr.r.b.BASE64), which
 * every node subscribes to with the channel. So only what the stream
 * stored reaches anyone, in the order it stored it.
 *
 * A channel's positions are carried by its messages: header Xr-Offset,
 * Xr-Epoch, and Xr-Prev, the stream sequence of the message before it.
 * An offset is given by compare-and-set: a post reads the subject's last
 * message (offset O, sequence S) and publishes O + 1 with
 * Nats-Expected-Last-Subject-Sequence S; the stream refuses it when
 * another post came in between (and a refused post is republished to no
 * one), and the post reads again. So publishers on many nodes never give
 * one offset twice, and offsets grow by one. A subject without a message
 * (never used, its messages gone past the stream's age, the stream
 * deleted, or its last message not one of ours) starts a new epoch; a
 * read opens it with a mark at offset 0, so a quiet channel keeps its
 * position.
 *
 * A read walks back from the last message along Xr-Prev, newest first,
 * until since, the limit, a message past the TTL or one trimmed away. It
 * is answered once a sync message has come in live: the node publishes it
 * into the stream (xr.k.s.NODE) after the read, and the stream
 * republishes in the order it stored, so every message the read saw was
 * republished before it; the module has every subscription delivered on
 * one thread (cnats' global delivery, a pool of one), in the order the
 * connection received them. A message stored after the read comes in
 * live, after the SUB the host sent before asking (one connection, in
 * order). Against one nats-server; on a cluster the stream's republish
 * and the read's answer travel different routes (README: what nats://
 * proves complete).
 *
 * cnats' JetStream calls block on a request to the server: they run on
 * one worker thread, in order (one node's posts keep their order), and
 * results are queued for the loop, which the host's wake-up brings them to.
 */
#include "history.h"

#if XR_ANTENNA_ABI_MINOR >= 7
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define STREAM "XRAPTOR_HISTORY"
#define MAX_JOBS 100000         /* queued calls; past it they fail at once */
#define CAS_TRIES 1000          /* posts racing on one channel read again */
#define WAIT_MS 2000            /* a JetStream request's answer */
#define SYNC_WAIT_S 10          /* a read's sync message, at most */
#define DAY_NS (86400LL * 1000000000LL)

enum { J_POST, J_READ };

typedef struct job {
    struct job *next;
    int kind;
    char *subj, *msg;           /* copies, after the struct */
    size_t mlen, keep, limit;
    unsigned long long ttl_ms, since;
    xr_antenna_kept_cb posted;
    xr_antenna_history_cb read;
    void *arg;
    /* results */
    int rc, complete;
    unsigned long long offset;  /* J_POST: given; J_READ: top */
    char epoch[NATS_HIST_EPOCH_MAX + 1];
    size_t elen;
    xr_antenna_kept *v;         /* J_READ: oldest first */
    size_t n;
    uint64_t token;             /* J_READ: its sync message */
    time_t at;                  /* loop: when it began waiting for it */
    char err[200];
} job;

struct nats_history {
    xr_antenna_host host;
    natsConnection *nc;
    char sync_subj[64];         /* where this node's sync messages go */
    natsSubscription *sync_sub; /* where they come back, republished */
    int wake_fd;
    struct event *timer;
    /* loop <-> worker */
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *todo, **todo_tail, *done, **done_tail;
    size_t queued;
    int stop, stopped;
    /* worker only */
    jsCtx *js;
    int64_t stream_keep;        /* 0: the stream is to be found or made */
    uint64_t next_token;
    char node[13];
    /* loop only */
    job *waiting, **waiting_tail;   /* reads answered by the worker, in token order */
    uint64_t synced;                /* the newest sync message come in */
    char last_err[200];
};

/* ---- the worker ------------------------------------------------------------ */

static void fail(job *j, const char *what, natsStatus s, jsErrCode jerr)
{
    j->rc = XR_EANTENNA;
    if (!j->err[0])
        snprintf(j->err, sizeof j->err, "history: %s: %s (JetStream error %d)", what,
                 natsStatus_GetText(s), (int)jerr);
}

/* The stream, made when missing, its per-subject limit raised to keep. */
static int ensure_stream(nats_history *h, job *j, int64_t keep, unsigned long long ttl_ms)
{
    jsErrCode jerr = 0;
    natsStatus s = NATS_OK;
    if (!h->js) {
        jsOptions o;
        jsOptions_Init(&o);
        o.Wait = WAIT_MS;
        if ((s = natsConnection_JetStream(&h->js, h->nc, &o)) != NATS_OK) {
            h->js = NULL;
            fail(j, "no JetStream context", s, 0);
            return -1;
        }
    }
    if (h->stream_keep >= keep)
        return 0;
    jsStreamInfo *si = NULL;
    s = js_GetStreamInfo(&si, h->js, STREAM, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        static const char *subjects[1] = {"xr.k.>"};
        jsRePublish rp;
        jsRePublish_Init(&rp);
        rp.Source = "xr.k.>";
        rp.Destination = "xr.r.>";
        jsStreamConfig c;
        jsStreamConfig_Init(&c);
        c.Name = STREAM;
        c.Description = "xraptor channel history";
        c.Subjects = subjects;
        c.SubjectsLen = 1;
        c.RePublish = &rp;
        c.Storage = js_FileStorage;
        c.MaxMsgsPerSubject = keep;
        /* A quiet channel's last message (and so its position) lives a
         * day at least, as on redis://. */
        c.MaxAge = (int64_t)ttl_ms * 1000000LL > DAY_NS ? (int64_t)ttl_ms * 1000000LL : DAY_NS;
        jerr = 0;
        s = js_AddStream(&si, h->js, &c, NULL, &jerr);
        if (s == NATS_OK)
            h->stream_keep = keep;
    } else if (s == NATS_OK) {
        h->stream_keep = si->Config->MaxMsgsPerSubject;
        if (h->stream_keep >= 0 && h->stream_keep < keep) {
            jsStreamInfo *ui = NULL;
            si->Config->MaxMsgsPerSubject = keep;
            jerr = 0;
            s = js_UpdateStream(&ui, h->js, si->Config, NULL, &jerr);
            if (s == NATS_OK)
                h->stream_keep = keep;
            jsStreamInfo_Destroy(ui);
        } else if (h->stream_keep < 0) {
            h->stream_keep = INT64_MAX;
        }
    }
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        h->stream_keep = 0;
        fail(j, "the stream " STREAM " could not be opened (nats-server needs -js)", s, jerr);
        return -1;
    }
    return 0;
}

static int epoch_byte(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '.' || c == ':' || c == '_' || c == '-';
}

static int number(const char *p, unsigned long long *v)
{
    if (!p || !*p || strlen(p) > 20 || (p[0] == '0' && p[1]))
        return -1;
    *v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (*v > (~0ULL - d) / 10)
            return -1;
        *v = *v * 10 + d;
    }
    return 0;
}

int nats_history_position(natsMsg *msg, unsigned long long *offset, const char **epoch,
                          size_t *elen)
{
    const char *o = NULL, *e = NULL;
    natsStatus s = natsMsgHeader_Get(msg, NATS_HIST_OFFSET, &o);
    if (s == NATS_NOT_FOUND)
        return 0;
    if (s != NATS_OK)
        return -1;      /* headers cnats could not read */
    if (number(o, offset) < 0 || natsMsgHeader_Get(msg, NATS_HIST_EPOCH, &e) != NATS_OK)
        return -1;
    size_t n = strlen(e);
    if (!n || n > NATS_HIST_EPOCH_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!epoch_byte(e[i]))
            return -1;
    *epoch = e;
    *elen = n;
    return 1;
}

/* The subject's last message with its position: 0, or *m NULL when it
 * has none; 1 when its position is not one of ours (anyone who may
 * publish on the subject put it there: what it follows cannot be told,
 * so a new epoch starts after it); 2 when the stream is gone (deleted:
 * the caller tries again, which makes it anew); -1 (j failed) when the
 * server could not say. */
static int last_of(nats_history *h, job *j, const char *subj, natsMsg **m,
                   unsigned long long *offset, const char **epoch, size_t *elen)
{
    jsErrCode jerr = 0;
    natsStatus s = js_GetLastMsg(m, h->js, STREAM, subj, NULL, &jerr);
    if (jerr == JSStreamNotFoundErr) {
        h->stream_keep = 0;     /* deleted meanwhile: made again on the next try */
        *m = NULL;
        return 2;
    }
    if (s == NATS_NOT_FOUND) {
        *m = NULL;
        return 0;
    }
    if (s != NATS_OK) {
        fail(j, "reading the last message", s, jerr);
        return -1;
    }
    return nats_history_position(*m, offset, epoch, elen) == 1 ? 0 : 1;
}

/* Publishes data at offset in epoch after the message at sequence prev (0:
 * the subject must have none). 1 when another post came first. */
static int put(nats_history *h, job *j, const char *subj, const char *data, size_t len,
               unsigned long long offset, const char *epoch, uint64_t prev)
{
    char o[24], p[24];
    natsMsg *m = NULL;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    if (prev)
        po.ExpectLastSubjectSeq = prev;
    else
        po.ExpectNoMessage = true;
    snprintf(o, sizeof o, "%llu", offset);
    snprintf(p, sizeof p, "%" PRIu64, prev);
    natsStatus s = natsMsg_Create(&m, subj, NULL, data, (int)len);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, NATS_HIST_OFFSET, o);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, NATS_HIST_EPOCH, epoch);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, NATS_HIST_PREV, p);
    if (s == NATS_OK) s = js_PublishMsg(&pa, h->js, m, &po, &jerr);
    natsMsg_Destroy(m);
    jsPubAck_Destroy(pa);
    if (jerr == JSStreamWrongLastSequenceErr)
        return 1;
    if (s != NATS_OK) {
        if (s == NATS_NO_RESPONDERS)
            h->stream_keep = 0;
        fail(j, "publishing", s, jerr);
        return -1;
    }
    return 0;
}

static void new_epoch(nats_history *h, char *out)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    snprintf(out, NATS_HIST_EPOCH_MAX + 1, "%s.%llx.%lx", h->node, (unsigned long long)t.tv_sec,
             (long)(t.tv_nsec / 1000));
}

static void run_post(nats_history *h, job *j)
{
    for (int tries = 0; tries < CAS_TRIES; tries++) {
        natsMsg *last = NULL;
        unsigned long long o = 0;
        const char *e = NULL;
        size_t el = 0;
        int bad;
        if (ensure_stream(h, j, (int64_t)j->keep, j->ttl_ms) < 0 ||
            (bad = last_of(h, j, j->subj, &last, &o, &e, &el)) < 0)
            return;
        if (bad == 2)
            continue;
        if (last && !bad) {
            memcpy(j->epoch, e, el);
            j->elen = el;
        } else {
            new_epoch(h, j->epoch);
            j->elen = strlen(j->epoch);
            o = 0;
        }
        j->epoch[j->elen] = '\0';
        uint64_t prev = last ? natsMsg_GetSequence(last) : 0;
        natsMsg_Destroy(last);
        int r = put(h, j, j->subj, j->msg, j->mlen, o + 1, j->epoch, prev);
        if (r < 0)
            return;
        if (r == 0) {
            j->offset = o + 1;
            return;
        }
    }
    j->rc = XR_EANTENNA;
    snprintf(j->err, sizeof j->err, "history: %s: %d posts in a row came first", j->subj,
             CAS_TRIES);
}

static int keep_add(job *j, size_t *cap, natsMsg *m, unsigned long long offset)
{
    if (j->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        xr_antenna_kept *v = realloc(j->v, nc * sizeof *v);
        if (!v)
            return -1;
        j->v = v;
        *cap = nc;
    }
    int len = natsMsg_GetDataLength(m);
    char *copy = malloc(len > 0 ? (size_t)len : 1);
    if (!copy)
        return -1;
    memcpy(copy, natsMsg_GetData(m), (size_t)len);
    j->v[j->n++] = (xr_antenna_kept){.offset = offset, .msg = copy, .mlen = (size_t)len};
    return 0;
}

/* The subject's messages of j's epoch with offsets past floor, oldest
 * first, none older than the TTL: a consumer of the stream filtered on
 * the subject, from its first message to top_seq, the last read. One
 * request and the messages streamed, where a walk back would take a
 * request a message. */
static int read_after(nats_history *h, job *j, unsigned long long floor, uint64_t top_seq)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t old = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec - (int64_t)j->ttl_ms * 1000000LL;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = STREAM;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckPolicy = js_AckNone;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&sub, h->js, j->subj, NULL, &so, &jerr);
    size_t cap = 0;
    while (s == NATS_OK) {
        natsMsg *m = NULL;
        jsMsgMetaData *meta = NULL;
        if ((s = natsSubscription_NextMsg(&m, sub, WAIT_MS)) != NATS_OK)
            break;
        if ((s = natsMsg_GetMetaData(&meta, m)) != NATS_OK) {
            natsMsg_Destroy(m);
            break;
        }
        unsigned long long off;
        const char *e;
        size_t el;
        int done = meta->Sequence.Stream >= top_seq || !meta->NumPending;
        if (nats_history_position(m, &off, &e, &el) == 1 && el == j->elen &&
            !memcmp(e, j->epoch, el) && off > floor && off <= j->offset && meta->Timestamp >= old &&
            keep_add(j, &cap, m, off) < 0)
            s = NATS_NO_MEMORY;
        jsMsgMetaData_Destroy(meta);
        natsMsg_Destroy(m);
        if (done)
            break;
    }
    if (sub) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    if (s != NATS_OK) {
        fail(j, "reading the kept messages", s, jerr);
        return -1;
    }
    return 0;
}

static void run_read(nats_history *h, job *j)
{
    natsMsg *cur = NULL;
    unsigned long long o = 0;
    const char *e = NULL;
    size_t el = 0;
    for (int tries = 0;; tries++) {
        int bad = 0;
        if (tries == CAS_TRIES || ensure_stream(h, j, 1, j->ttl_ms) < 0 ||
            (bad = last_of(h, j, j->subj, &cur, &o, &e, &el)) < 0) {
            if (!j->rc)
                fail(j, "opening an epoch", NATS_ERR, 0);
            return;
        }
        if (bad == 2)
            continue;
        if (cur && !bad)
            break;
        /* Nothing kept (or nothing of ours last): this read opens the
         * epoch, or another post or read did a moment ago and the mark is
         * refused; read again. */
        char epoch[NATS_HIST_EPOCH_MAX + 1];
        uint64_t prev = cur ? natsMsg_GetSequence(cur) : 0;
        natsMsg_Destroy(cur);
        cur = NULL;
        new_epoch(h, epoch);
        if (put(h, j, j->subj, "", 0, 0, epoch, prev) < 0)
            return;
    }
    memcpy(j->epoch, e, el);
    j->elen = el;
    j->offset = o;
    uint64_t top_seq = natsMsg_GetSequence(cur);
    natsMsg_Destroy(cur);
    /* The newest `limit` after since: offsets past floor. */
    unsigned long long floor = o > j->limit && o - j->limit > j->since ? o - j->limit : j->since;
    if (o > floor && read_after(h, j, floor, top_seq) < 0)
        return;
    /* Only a run of offsets that ends at the newest is the channel's
     * history: a message not of ours breaks it, the TTL cuts its oldest. */
    size_t first = j->n;
    if (j->n && j->v[j->n - 1].offset == o)
        for (first = j->n - 1; first && j->v[first - 1].offset + 1 == j->v[first].offset;)
            first--;
    for (size_t i = 0; i < first; i++)
        free((char *)j->v[i].msg);
    if (first) {
        memmove(j->v, j->v + first, (j->n - first) * sizeof *j->v);
        j->n -= first;
    }
    j->complete = j->since <= o && (j->since == o || (j->n && j->v[0].offset == j->since + 1));
    char token[24];
    j->token = ++h->next_token;
    int tl = snprintf(token, sizeof token, "%" PRIu64, j->token);
    natsStatus s = natsConnection_Publish(h->nc, h->sync_subj, token, tl);
    if (s != NATS_OK)
        fail(j, "sending the sync message", s, 0);
}

static void *worker(void *arg)
{
    nats_history *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->stop && !h->todo)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->stop)
            break;
        job *j = h->todo;
        if (!(h->todo = j->next))
            h->todo_tail = &h->todo;
        pthread_mutex_unlock(&h->mu);
        j->next = NULL;
        if (j->kind == J_POST)
            run_post(h, j);
        else
            run_read(h, j);
        pthread_mutex_lock(&h->mu);
        *h->done_tail = j;
        h->done_tail = &j->next;
        xr_antenna_wake(h->wake_fd);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* ---- the loop's side ------------------------------------------------------- */

static void job_free(job *j)
{
    for (size_t i = 0; i < j->n; i++)
        free((char *)j->v[i].msg);
    free(j->v);
    free(j);
}

static void answer(job *j, int rc)
{
    if (j->kind == J_POST) {
        if (j->posted)
            j->posted(j->arg, rc, j->offset, j->epoch, j->elen);
    } else if (rc < 0) {
        j->read(j->arg, rc, NULL, 0, 0, 0, NULL, 0);
    } else {
        j->read(j->arg, 0, j->v, j->n, j->complete, j->offset, j->epoch, j->elen);
    }
    job_free(j);
}

/* Reads whose sync message came in are answered, oldest first. */
static void answer_synced(nats_history *h)
{
    while (h->waiting && h->waiting->token <= h->synced) {
        job *j = h->waiting;
        if (!(h->waiting = j->next))
            h->waiting_tail = &h->waiting;
        answer(j, 0);
    }
}

static void on_done(void *arg)
{
    nats_history *h = arg;
    pthread_mutex_lock(&h->mu);
    job *j = h->done, *next;
    h->done = NULL;
    h->done_tail = &h->done;
    pthread_mutex_unlock(&h->mu);
    for (; j; j = next) {
        next = j->next;
        pthread_mutex_lock(&h->mu);
        h->queued--;
        pthread_mutex_unlock(&h->mu);
        if (j->err[0] && strcmp(j->err, h->last_err) != 0) {
            snprintf(h->last_err, sizeof h->last_err, "%s", j->err);
            h->host.log(h->host.host, XR_ANTENNA_LOG_WARN, "nats antenna: %s", j->err);
        } else if (!j->err[0]) {
            h->last_err[0] = '\0';
        }
        if (j->kind == J_READ && !j->rc) {
            j->next = NULL;
            j->at = time(NULL);
            *h->waiting_tail = j;
            h->waiting_tail = &j->next;
        } else {
            answer(j, j->rc);
        }
    }
    answer_synced(h);
}

void nats_history_synced(nats_history *h, uint64_t token)
{
    if (token > h->synced)
        h->synced = token;
    answer_synced(h);
}

/* A sync message lost with the connection would hold its read for ever:
 * past SYNC_WAIT_S it fails (the client is told recovered false). */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    nats_history *h = arg;
    time_t now = time(NULL);
    while (h->waiting && now - h->waiting->at > SYNC_WAIT_S) {
        job *j = h->waiting;
        if (!(h->waiting = j->next))
            h->waiting_tail = &h->waiting;
        answer(j, XR_EANTENNA);
    }
}

static job *job_new(int kind, const char *subj, const char *msg, size_t mlen)
{
    size_t sl = strlen(subj);
    job *j = calloc(1, sizeof *j + sl + 1 + mlen);
    if (!j)
        return NULL;
    j->kind = kind;
    j->subj = (char *)(j + 1);
    memcpy(j->subj, subj, sl + 1);
    j->msg = j->subj + sl + 1;
    if (mlen)
        memcpy(j->msg, msg, mlen);
    j->mlen = mlen;
    return j;
}

static int submit(nats_history *h, job *j)
{
    pthread_mutex_lock(&h->mu);
    if (h->queued >= MAX_JOBS) {
        pthread_mutex_unlock(&h->mu);
        free(j);
        return XR_EANTENNA;
    }
    h->queued++;
    *h->todo_tail = j;
    h->todo_tail = &j->next;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

nats_history *nats_history_new(struct event_base *base, natsConnection *nc,
                               const xr_antenna_host *host, natsMsgHandler on_sync, void *arg,
                               char *err, size_t errlen)
{
    nats_history *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->host = *host;
    h->nc = nc;
    h->todo_tail = &h->todo;
    h->done_tail = &h->done;
    h->waiting_tail = &h->waiting;
    unsigned char r[6];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        for (size_t i = 0; i < sizeof r; i++)
            r[i] = (unsigned char)rand();
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(h->node + 2 * i, 3, "%02x", r[i]);
    char back[64];
    snprintf(h->sync_subj, sizeof h->sync_subj, "xr.k.s.%s", h->node);
    snprintf(back, sizeof back, "xr.r.s.%s", h->node);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    struct timeval second = {1, 0};
    if ((h->wake_fd = host->wakeup(host->host, on_done, h)) < 0 ||
        !(h->timer = event_new(base, -1, EV_PERSIST, on_timer, h)) ||
        event_add(h->timer, &second) < 0 ||
        natsConnection_Subscribe(&h->sync_sub, nc, back, on_sync, arg) != NATS_OK ||
        !(h->started = !pthread_create(&h->thread, NULL, worker, h))) {
        snprintf(err, errlen, "cannot start history: %s", strerror(errno ? errno : ENOMEM));
        nats_history_free(h);
        return NULL;
    }
    return h;
}

void nats_history_stop(nats_history *h)
{
    if (!h || h->stopped)
        return;
    h->stopped = 1;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (h->started)
        pthread_join(h->thread, NULL);
    if (h->timer)
        event_free(h->timer);
    h->timer = NULL;
    /* Every caller hears back, as the ABI asks of destroy(). */
    on_done(h);
    for (job *j = h->waiting, *next; j; j = next) {
        next = j->next;
        answer(j, XR_EANTENNA);
    }
    for (job *j = h->todo, *next; j; j = next) {
        next = j->next;
        answer(j, XR_EANTENNA);
    }
    h->todo = NULL;
    h->waiting = NULL;
}

void nats_history_free(nats_history *h)
{
    if (!h)
        return;
    nats_history_stop(h);
    natsSubscription_Destroy(h->sync_sub);
    if (h->js)
        jsCtx_Destroy(h->js);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

int nats_history_post(nats_history *h, const char *subj, const char *msg, size_t mlen,
                      size_t keep, unsigned long long ttl_ms, xr_antenna_kept_cb done,
                      void *arg)
{
    if (!keep || !ttl_ms || mlen > INT32_MAX)
        return XR_EINVAL;
    job *j = job_new(J_POST, subj, msg, mlen);
    if (!j)
        return XR_ENOMEM;
    j->keep = keep;
    j->ttl_ms = ttl_ms;
    j->posted = done;
    j->arg = arg;
    return submit(h, j);
}

int nats_history_read(nats_history *h, const char *subj, unsigned long long since,
                      size_t limit, unsigned long long ttl_ms, xr_antenna_history_cb done,
                      void *arg)
{
    job *j = job_new(J_READ, subj, NULL, 0);
    if (!j)
        return XR_ENOMEM;
    j->since = since;
    j->limit = limit ? limit : 1;
    j->ttl_ms = ttl_ms;
    j->read = done;
    j->arg = arg;
    return submit(h, j);
}
#endif
