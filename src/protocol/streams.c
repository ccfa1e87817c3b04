/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A node's own gap, repaired (docs/ARCHITECTURE.md section 5). The
 * antenna's live stream of a channel with history can break without the
 * host asking anything: Redis drops the subscriber connection, a Cluster
 * slot moves, and what was posted before the SUBSCRIBE took effect again
 * reaches nobody here. Offsets only grow by one within an epoch, so the
 * first message after such a hole shows it: its offset is past the last
 * one this node delivered. Then the stream's messages wait, the history
 * after the last delivered is read (the antenna answers only once what it
 * read has come in live, as for a recovering SUB), and what the hole
 * swallowed goes out before the waiting ones, each once. When the broker
 * no longer has it all (trimmed, expired, another epoch), the waiting
 * messages go out as they are and the jump in their offsets tells every
 * client, which recovers on its own or is told `recovered: false`.
 */
#include "protocol/internal.h"

#include <stdlib.h>
#include <string.h>

#define WAIT_MAX 65536          /* messages one stream holds while repairing */

typedef struct waiting {
    unsigned long long offset;  /* 0: a message without a position */
    char *msg;                  /* the message, NUL, its epoch */
    size_t mlen, elen;
} waiting;

typedef struct stream {
    xr_proto *p;
    int reading;                /* a read is out: messages wait */
    int gone;                   /* unsubscribed meanwhile: the answer frees */
    unsigned long long last;    /* the newest offset delivered here */
    char epoch[XR_EPOCH_MAX + 1];
    size_t elen;
    waiting *v;
    size_t n, cap;
    size_t nlen;
    char name[];
} stream;

static void stream_free(stream *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].msg);
    free(s->v);
    free(s);
}

/* Whether a message at (offset, epoch) goes out after s->last: 1, and s
 * moves on; 0 for one delivered already. A new epoch starts over. */
static int advance(stream *s, unsigned long long offset, const char *epoch, size_t elen)
{
    if (elen != s->elen || memcmp(epoch, s->epoch, elen) != 0) {
        memcpy(s->epoch, epoch, elen);
        s->elen = elen;
    } else if (offset <= s->last) {
        return 0;
    }
    s->last = offset;
    return 1;
}

static int wait_add(stream *s, const char *msg, size_t mlen, unsigned long long offset,
                    const char *epoch, size_t elen)
{
    if (s->n == WAIT_MAX)
        return XR_ELIMIT;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        waiting *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return XR_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    char *copy = malloc(mlen + 1 + elen);
    if (!copy)
        return XR_ENOMEM;
    memcpy(copy, msg, mlen);
    copy[mlen] = '\0';
    memcpy(copy + mlen + 1, epoch, elen);
    s->v[s->n++] = (waiting){offset, copy, mlen, elen};
    return XR_OK;
}

/* The waiting messages, in the order they came, past what went out. */
static void flush(stream *s)
{
    xr_proto *p = s->p;
    for (size_t i = 0; i < s->n; i++) {
        waiting *w = &s->v[i];
        const char *epoch = w->msg + w->mlen + 1;
        if (!w->offset || advance(s, w->offset, epoch, w->elen))
            xr_deliver_at(p, s->name, s->nlen, w->msg, w->mlen, w->offset, epoch, w->elen);
        free(w->msg);
    }
    s->n = 0;
}

static void on_repair(void *arg, int rc, const xr_antenna_kept *v, size_t n, int complete,
                      unsigned long long top, const char *epoch, size_t elen)
{
    stream *s = arg;
    xr_proto *p = s->p;
    s->reading = 0;
    if (s->gone || p->stopping) {
        if (s->gone)
            stream_free(s);
        return;
    }
    unsigned long long since = s->last;
    int same = rc == XR_OK && epoch && elen == s->elen && memcmp(epoch, s->epoch, elen) == 0;
    if (same && complete && since <= top && top - since <= p->o->history_max_recover) {
        for (size_t i = 0; i < n; i++)
            if (advance(s, v[i].offset, epoch, elen))
                xr_deliver_at(p, s->name, s->nlen, v[i].msg, v[i].mlen, v[i].offset, epoch, elen);
        p->stats.gaps_repaired++;
        xr_log(p->log, XR_LOG_INFO, "history: %.*s: %llu message(s) the antenna's live stream "
               "missed delivered from the history", (int)(s->nlen > 64 ? 64 : s->nlen), s->name,
               top - since);
    } else {
        p->stats.gaps_unrepaired++;
        xr_log(p->log, XR_LOG_WARN, "history: %.*s: the antenna's live stream missed messages "
               "after offset %llu that %s; clients see the jump in offsets",
               (int)(s->nlen > 64 ? 64 : s->nlen), s->name, since,
               rc != XR_OK ? "the broker could not be asked for"
               : !same     ? "belong to an epoch that is gone"
                           : "the history no longer holds");
    }
    flush(s);
}

/* Reads what the hole before (offset, epoch) swallowed; the message waits
 * for the answer. 0 when it does, 1 when it goes out now instead. */
static int repair(stream *s, const char *msg, size_t mlen, unsigned long long offset,
                  const char *epoch, size_t elen)
{
    xr_proto *p = s->p;
    unsigned keep;
    unsigned long long ttl;
    if (!XR_ANTENNA_HAS(p->antenna, history) || !xr_history_of(p, s->name, s->nlen, &keep, &ttl) ||
        wait_add(s, msg, mlen, offset, epoch, elen) < 0)
        return 1;
    s->reading = 1;
    if (p->antenna->history(p->antenna_self, s->name, s->nlen, s->last,
                            p->o->history_max_recover + 1, ttl, on_repair, s) < 0) {
        /* Said why once on the answer path: here, out as it is. */
        s->reading = 0;
        s->n--;
        free(s->v[s->n].msg);
        p->stats.gaps_unrepaired++;
        return 1;
    }
    return 0;
}

int xr_stream_check(xr_proto *p, const char *name, size_t len, const char *msg, size_t mlen,
                    unsigned long long offset, const char *epoch, size_t elen)
{
    stream *s = xr_map_get(&p->streams, name, len);
    if (!s) {
        if (!offset || !(s = calloc(1, sizeof *s + len + 1)))
            return 1;
        s->p = p;
        memcpy(s->name, name, len);
        s->nlen = len;
        if (!xr_map_put(&p->streams, name, len, s)) {
            free(s);
            return 1;
        }
        advance(s, offset, epoch, elen);
        return 1;
    }
    if (s->reading) {
        if (wait_add(s, msg, mlen, offset, epoch, elen) == XR_OK)
            return 0;
        /* Too many waiting: they go out now, and so does this one. */
        flush(s);
        return !offset || advance(s, offset, epoch, elen);
    }
    if (!offset)
        return 1;
    int same = elen == s->elen && memcmp(epoch, s->epoch, elen) == 0;
    if (same && offset > s->last + 1 && s->last && !xr_history_sparse(p))
        return repair(s, msg, mlen, offset, epoch, elen);
    return advance(s, offset, epoch, elen);
}

void xr_stream_forget(xr_proto *p, const char *name, size_t len)
{
    stream *s = xr_map_del(&p->streams, name, len);
    if (!s)
        return;
    if (s->reading)
        s->gone = 1;
    else
        stream_free(s);
}

void xr_streams_free(xr_proto *p)
{
    size_t it;
    xr_map_entry *e;
    /* The antenna is gone and answered every read: none is out. */
    for (e = xr_map_first(&p->streams, &it); e; e = xr_map_next(&p->streams, e, &it))
        stream_free(e->value);
    xr_map_clear(&p->streams);
}
