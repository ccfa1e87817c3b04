/* SPDX-License-Identifier: Apache-2.0 */
/*
 * History and recovery (docs/ARCHITECTURE.md section 5). Which names keep
 * history is decided here (the options' setting and patterns, then
 * xr_history_enable's); the antenna keeps it and gives each message its
 * position. A SUB whose header carries "since" recovers: from before its
 * handler runs, what its receiver would get is held; after the handler,
 * the history of the room it joined (or of its own channel) after since
 * is read, the answer goes out, then the messages read, then the held
 * ones that the read did not hold already (by offset, in the same epoch).
 * The module reads only after every subscription asked for before the
 * read took effect (the ABI's rule), so the live stream starts no later
 * than the read ends: no gap, and the offsets make duplicates visible.
 */
#include "protocol/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/jsonf.h"
#include "util/glob.h"
#include "util/shared.h"

#define HELD_MAX 65536          /* messages held for one recovering receiver */

typedef struct xr_history_rule {
    char *pattern;
    unsigned size, ttl_ms;
} xr_history_rule;

typedef struct held {
    unsigned long long offset;  /* 0: no position */
    xr_shared *tail;
    char *pos;                  /* the stream's name, NUL, its epoch */
    size_t slen, elen;
} held;

struct xr_recovery {
    xr_proto *p;
    xr_pconn *pc;               /* a reference: the answer's connection */
    xr_recovery **slot;         /* the receiver's; NULL once it went */
    xr_recovery *next, **prev;  /* p->recoveries */
    unsigned long long since;
    char epoch[XR_EPOCH_MAX + 1];
    size_t elen;
    char *stream;               /* the name read; NULL before the read */
    size_t slen;
    held *v;
    size_t n, cap;
    int overflow;               /* more arrived than HELD_MAX */
    size_t most;                /* the most a recovery may miss */
    size_t nlen;
    char name[];                /* the SUB's channel (its request_id) */
};

/* ---- which names keep history -------------------------------------------- */

int xr_history_spec(const char *spec, size_t *plen, unsigned *size, unsigned *ttl_ms, char *why,
                    size_t wlen)
{
    const char *end = spec + strlen(spec), *b = end, *a;
    while (b > spec && b[-1] == ' ')
        b--;
    const char *ttl_at = b;
    while (ttl_at > spec && ttl_at[-1] != ' ')
        ttl_at--;
    a = ttl_at;
    while (a > spec && a[-1] == ' ')
        a--;
    const char *size_at = a;
    while (size_at > spec && size_at[-1] != ' ')
        size_at--;
    const char *pend = size_at;
    while (pend > spec && pend[-1] == ' ')
        pend--;
    char n1[16], n2[16];
    if (pend == spec || a - size_at == 0 || b - ttl_at == 0 || (size_t)(a - size_at) >= sizeof n1 ||
        (size_t)(b - ttl_at) >= sizeof n2) {
        snprintf(why, wlen, "not 'PATTERN N SECS' (e.g. 'chat.* 300 300')");
        return XR_EINVAL;
    }
    memcpy(n1, size_at, (size_t)(a - size_at));
    n1[a - size_at] = '\0';
    memcpy(n2, ttl_at, (size_t)(b - ttl_at));
    n2[b - ttl_at] = '\0';
    char *e1, *e2;
    unsigned long n = strtoul(n1, &e1, 10), t = strtoul(n2, &e2, 10);
    if (*e1 || *e2 || n1[0] == '-' || n2[0] == '-' || n < 1 || n > 1000000 || t < 1 ||
        t > 4000000) {
        snprintf(why, wlen, "N must be a count from 1 to 1000000 and SECS whole seconds from 1");
        return XR_EINVAL;
    }
    *plen = (size_t)(pend - spec);
    *size = (unsigned)n;
    *ttl_ms = (unsigned)(t * 1000);
    return XR_OK;
}

int xr_proto_history_enable(xr_proto *p, const char *pattern, unsigned size, unsigned ttl_ms)
{
    if (!p || !pattern || !*pattern || !size || size > 1000000 || !ttl_ms)
        return XR_EINVAL;
    xr_history_rule *v = realloc(p->history_rules, (p->n_history_rules + 1) * sizeof *v);
    if (!v)
        return XR_ENOMEM;
    p->history_rules = v;
    if (!(v[p->n_history_rules].pattern = strdup(pattern)))
        return XR_ENOMEM;
    v[p->n_history_rules].size = size;
    v[p->n_history_rules].ttl_ms = ttl_ms;
    p->n_history_rules++;
    return XR_OK;
}

/* The latest C call first, then the flags' patterns, then the flags'
 * setting for every name. */
int xr_history_of(const xr_proto *p, const char *name, size_t len, unsigned *keep,
                  unsigned long long *ttl_ms)
{
    for (size_t k = p->n_history_rules; k-- > 0;) {
        const xr_history_rule *r = &p->history_rules[k];
        if (xr_glob_match(r->pattern, strlen(r->pattern), name, len)) {
            *keep = r->size;
            *ttl_ms = r->ttl_ms;
            return 1;
        }
    }
    for (size_t k = 0; k < p->o->n_history_rooms; k++) {
        size_t plen;
        unsigned n, t;
        char why[8];
        if (xr_history_spec(p->o->history_rooms[k], &plen, &n, &t, why, sizeof why) == XR_OK &&
            xr_glob_match(p->o->history_rooms[k], plen, name, len)) {
            *keep = n;
            *ttl_ms = t;
            return 1;
        }
    }
    if (p->o->history_size && p->o->history_ttl_ms) {
        *keep = p->o->history_size;
        *ttl_ms = p->o->history_ttl_ms;
        return 1;
    }
    return 0;
}

/* ---- positions on the wire ----------------------------------------------- */

/* <escaped msg>","header":{"offset":N,"epoch":"E"},"method":"SUB"} */
static int tail_into(xr_buf *b, const char *msg, size_t mlen, unsigned long long offset,
                     const char *epoch, size_t elen)
{
    static const char end[] = "\"},\"method\":\"SUB\"}";
    char head[64];
    int n = snprintf(head, sizeof head, "\",\"header\":{\"offset\":%llu,\"epoch\":\"", offset);
    b->len = 0;
    return xr_buf_json_escaped(b, msg, mlen) < 0 || xr_buf_add(b, head, (size_t)n) < 0 ||
                   xr_buf_json_escaped(b, epoch, elen) < 0 ||
                   xr_buf_add(b, end, sizeof end - 1) < 0
               ? XR_ENOMEM
               : XR_OK;
}

xr_shared *xr_history_tail(xr_proto *p, const char *msg, size_t mlen, unsigned long long offset,
                           const char *epoch, size_t elen)
{
    if (tail_into(&p->scratch, msg, mlen, offset, epoch, elen) < 0)
        return NULL;
    return xr_shared_new(p->scratch.p, p->scratch.len);
}

int xr_history_since(xr_request *r, unsigned long long *offset, char *epoch, size_t *elen,
                     const char **why)
{
    const char *json;
    size_t len;
    int type = xr_header_type(r, "since");
    if (type == XR_EJSON) {
        *why = "the header is not a JSON object";
        return XR_EINVAL;
    }
    if (type == XR_JSON_MISSING || type == XR_JSON_NULL || type < 0)
        return 0;
    if (type != XR_JSON_OBJECT || xr_header_raw(r, "since", &json, &len) != XR_OK) {
        *why = "since must be an object {\"offset\": N, \"epoch\": \"E\"}";
        return XR_EINVAL;
    }
    int rc = xr_position_parse(json, len, offset, epoch, elen, why);
    return rc < 0 ? rc : 1;
}

/* ---- recovery -------------------------------------------------------------- */

static void rec_free(xr_recovery *rec)
{
    if (rec->slot)
        *rec->slot = NULL;
    if (rec->prev) {
        *rec->prev = rec->next;
        if (rec->next)
            rec->next->prev = rec->prev;
    }
    for (size_t i = 0; i < rec->n; i++) {
        xr_shared_unref(rec->v[i].tail);
        free(rec->v[i].pos);
    }
    free(rec->v);
    free(rec->stream);
    xr_pconn_release(rec->pc);
    free(rec);
}

int xr_recovery_begin(xr_proto *p, xr_pconn *pc, const char *name, size_t len,
                      unsigned long long since, const char *epoch, size_t elen)
{
    xr_recovery **slot = xr_receiver_recovery(p, pc, name, len);
    if (!slot)
        return XR_ESTATE;
    if (*slot)
        return XR_OK;   /* the same SUB again while recovering: one answer */
    xr_recovery *rec = calloc(1, sizeof *rec + len + 1);
    if (!rec)
        return XR_ENOMEM;
    rec->p = p;
    rec->pc = pc;
    pc->refs++;
    rec->slot = slot;
    rec->since = since;
    memcpy(rec->epoch, epoch, elen);
    rec->elen = elen;
    memcpy(rec->name, name, len);
    rec->nlen = len;
    *slot = rec;
    return XR_OK;
}

void xr_recovery_cancel(xr_recovery *rec)
{
    rec->slot = NULL;
    if (!rec->prev)     /* no read in flight: nothing will call back */
        rec_free(rec);
}

void xr_recovery_hold(xr_recovery *rec, const char *stream, size_t slen,
                      unsigned long long offset, const char *epoch, size_t elen, xr_shared *tail)
{
    if (rec->n == HELD_MAX) {
        rec->overflow = 1;
        return;
    }
    if (rec->n == rec->cap) {
        size_t cap = rec->cap ? rec->cap * 2 : 16;
        held *v = realloc(rec->v, cap * sizeof *v);
        if (!v) {
            rec->overflow = 1;
            return;
        }
        rec->v = v;
        rec->cap = cap;
    }
    char *pos = NULL;
    if (offset && !(pos = malloc(slen + elen + 1))) {
        rec->overflow = 1;
        return;
    }
    if (pos) {
        memcpy(pos, stream, slen);
        pos[slen] = '\0';
        memcpy(pos + slen + 1, epoch, elen);
    }
    rec->v[rec->n++] = (held){offset, xr_shared_ref(tail), pos, slen, elen};
}

static void send_answer(xr_recovery *rec, int recovered, int known, unsigned long long top,
                        const char *epoch, size_t elen)
{
    xr_proto *p = rec->p;
    xr_conn *c = rec->pc->conn;
    if (!c)
        return;
    xr_buf h = {0};
    int ok = xr_buf_printf(&h, "{\"recovered\":%s", recovered ? "true" : "false") == 0;
    if (ok && known)
        ok = xr_buf_printf(&h, ",\"offset\":%llu,\"epoch\":\"", top) == 0 &&
             xr_buf_json_escaped(&h, epoch, elen) == 0 && xr_buf_add(&h, "\"", 1) == 0;
    ok = ok && xr_buf_add(&h, "}", 2) == 0;
    p->scratch.len = 0;
    if (ok && xr_wire_response(&p->scratch, rec->name, rec->nlen, "", 0, h.p, XR_SUB) == 0)
        xr_conn_send(c, XR_TEXT, p->scratch.p, p->scratch.len);
    xr_buf_free(&h);
}

/* The answer, the messages read, then the held ones past them. */
static void finish(xr_recovery *rec, int rc, const xr_antenna_kept *v, size_t n, int complete,
                   unsigned long long top, const char *epoch, size_t elen)
{
    xr_proto *p = rec->p;
    int same = rc == XR_OK && elen == rec->elen && memcmp(epoch, rec->epoch, elen) == 0;
    /* Offsets that skip count nothing: then what was read is the count. */
    unsigned long long missed = xr_history_sparse(p) ? n : top - rec->since;
    int recovered = same && complete && rec->since <= top && !rec->overflow &&
                    missed <= rec->most;
    send_answer(rec, recovered, rc == XR_OK, top, epoch, elen);
    if (!rec->pc->conn || !rec->slot) {
        rec_free(rec);
        return;
    }
    xr_shared *one[1];
    for (size_t i = 0; recovered && i < n; i++) {
        if (v[i].offset <= rec->since)
            continue;
        xr_shared *t = xr_history_tail(p, v[i].msg, v[i].mlen, v[i].offset, epoch, elen);
        if (!t)
            break;
        one[0] = t;
        xr_receiver_send(p, rec->pc, rec->name, rec->nlen, one, 1);
        xr_shared_unref(t);
    }
    /* Held messages of the stream read in its epoch at or before the top
     * were in the read (or, not recovered, before the position told). */
    for (size_t i = 0; i < rec->n; i++) {
        held *h = &rec->v[i];
        if (rc == XR_OK && h->offset && h->offset <= top && h->slen == rec->slen &&
            memcmp(h->pos, rec->stream, h->slen) == 0 && h->elen == elen &&
            memcmp(h->pos + h->slen + 1, epoch, elen) == 0)
            continue;
        one[0] = h->tail;
        xr_receiver_send(p, rec->pc, rec->name, rec->nlen, one, 1);
    }
    rec_free(rec);
}

static void on_history(void *arg, int rc, const xr_antenna_kept *v, size_t n, int complete,
                       unsigned long long top, const char *epoch, size_t elen)
{
    /* What the antenna delivered before this answer may still wait for
     * the loop's fan-out: held now, so the read and the held messages
     * meet here, or a message in both would go out twice. */
    xr_recovery *rec = arg;
    xr_proto_drain(rec->p);
    finish(arg, rc, v, n, complete, top, epoch ? epoch : "", epoch ? elen : 0);
}

void xr_recovery_read(xr_proto *p, xr_pconn *pc, const char *name, size_t len)
{
    xr_recovery **slot = xr_receiver_recovery(p, pc, name, len);
    xr_recovery *rec = slot ? *slot : NULL;
    if (!rec || rec->prev || rec->stream)
        return;     /* none, or read already */
    const char *s;
    size_t sl;
    unsigned keep;
    unsigned long long ttl;
    if (!p->antenna || !XR_ANTENNA_HAS(p->antenna, history) ||
        !xr_member_stream(p, name, len, &s, &sl) || !xr_history_of(p, s, sl, &keep, &ttl) ||
        !(rec->stream = malloc(sl + 1))) {
        /* Nothing to recover from: said so, and what was held goes. */
        finish(rec, XR_ESTATE, NULL, 0, 0, 0, "", 0);
        return;
    }
    memcpy(rec->stream, s, sl);
    rec->slen = sl;
    rec->next = p->recoveries;
    if (rec->next)
        rec->next->prev = &rec->next;
    rec->prev = &p->recoveries;
    p->recoveries = rec;
    /* A module with offsets that skip cannot trim to the size: asked for
     * one more than the size, it shows a recovery that missed more. */
    rec->most = p->o->history_max_recover;
    if (xr_history_sparse(p) && keep < rec->most)
        rec->most = keep;
    size_t limit = rec->most + 1;
    if (p->antenna->history(p->antenna_self, s, sl, rec->since, limit, ttl, on_history, rec) < 0) {
        *rec->prev = rec->next;
        if (rec->next)
            rec->next->prev = rec->prev;
        rec->prev = NULL;
        finish(rec, XR_EANTENNA, NULL, 0, 0, 0, "", 0);
    }
}

/* ---- reading: "load earlier messages" ------------------------------------ */

typedef struct reading {
    xr_request *req;            /* the route's, held; or NULL */
    xr_history_cb done;    /* the C call's */
    void *ud;
} reading;

/* {"offset": TOP, "epoch": "E", "messages": [{"offset": N, "payload": "M"}, ...]},
 * oldest first, each payload as a delivery carries it. */
static void on_read(void *arg, int rc, const xr_antenna_kept *v, size_t n, int complete,
                    unsigned long long top, const char *epoch, size_t elen)
{
    (void)complete;     /* fewer than asked for is what there is */
    reading *rd = arg;
    xr_buf b = {0};
    if (rc == XR_OK) {
        char num[64];
        int bad = 0;
        snprintf(num, sizeof num, "{\"offset\": %llu, \"epoch\": \"", top);
        bad |= xr_buf_add(&b, num, strlen(num));
        bad |= xr_buf_json_escaped(&b, epoch ? epoch : "", epoch ? elen : 0);
        bad |= xr_buf_add(&b, "\", \"messages\": [", strlen("\", \"messages\": ["));
        for (size_t k = 0; k < n; k++) {
            snprintf(num, sizeof num, "%s{\"offset\": %llu, \"payload\": \"", k ? ", " : "",
                     v[k].offset);
            bad |= xr_buf_add(&b, num, strlen(num));
            bad |= xr_buf_json_escaped(&b, v[k].msg, v[k].mlen);
            bad |= xr_buf_add(&b, "\"}", 2);
        }
        bad |= xr_buf_add(&b, "]}", 2);
        if (bad)
            rc = XR_ENOMEM;
    }
    xr_answer_json(rd->req, rd->done, rd->ud, rc, &b);
    xr_buf_free(&b);
    free(rd);
}

/* XR_EINVAL: a bad name, or limit 0 or past --history-max-recover;
 * XR_ESTATE: the name keeps no history or the antenna none. */
static int read_kept(xr_proto *p, const char *name, size_t len, size_t limit, reading *rd)
{
    unsigned keep;
    unsigned long long ttl;
    if (xr_name_check(name, len, p->o->max_name_length) != XR_NAME_OK || limit == 0 ||
        limit > p->o->history_max_recover)
        return XR_EINVAL;
    if (!xr_history_of(p, name, len, &keep, &ttl) || !p->antenna ||
        !XR_ANTENNA_HAS(p->antenna, history))
        return XR_ESTATE;
    if (xr_history_sparse(p) && limit > keep)
        limit = keep;   /* the newest `keep` are the history, whatever the log holds */
    return p->antenna->history(p->antenna_self, name, len, 0, limit, ttl, on_read, rd);
}

int xr_proto_history_read(xr_proto *p, const char *name, size_t limit, xr_history_cb done,
                          void *ud)
{
    if (!name || !done)
        return XR_EINVAL;
    reading *rd = calloc(1, sizeof *rd);
    if (!rd)
        return XR_ENOMEM;
    *rd = (reading){NULL, done, ud};
    int rc = read_kept(p, name, strlen(name), limit, rd);
    if (rc < 0)
        free(rd);
    return rc;
}

/* GET /xraptor/history {"channel": NAME, "limit": N}: the newest N kept. */
static int history_route(xr_request *r, void *ud)
{
    xr_proto *p = ud;
    const char *name;
    size_t len;
    long long limit = 100;
    int has = xr_payload_int(r, "limit", &limit);
    if (xr_payload_str(r, "channel", &name, &len) != XR_OK || (has != XR_OK && has != XR_ENOENT) ||
        limit < 1 || (unsigned long long)limit > p->o->history_max_recover)
        return xr_proto_reply_error(r, "bad_request",
                                    "payload must be {\"channel\": \"...\", \"limit\": N} with N "
                                    "from 1 to --history-max-recover");
    /* What a SUB to the channel and a join of the room would receive: a
     * token must grant both (a list it leaves out grants everything). */
    if (!xr_request_allowed(r, XR_GRANT_CHANNEL, name, len) ||
        !xr_request_allowed(r, XR_GRANT_ROOM, name, len))
        return xr_proto_reply_error(r, "forbidden", "not granted by the connection's token");
    reading *rd = calloc(1, sizeof *rd);
    if (!rd)
        return XR_ENOMEM;
    rd->req = xr_request_ref(r);
    int rc = read_kept(p, name, len, (size_t)limit, rd);
    if (rc < 0) {
        free(rd);
        if (rc == XR_EINVAL)
            xr_proto_reply_error(r, "bad_request", "not a valid channel name");
        else if (rc == XR_ESTATE)
            xr_proto_reply_error(r, "bad_request", "this channel keeps no history");
        else
            xr_proto_reply_error(r, "unavailable", "the broker could not answer");
        xr_request_unref(r);
    }
    return XR_OK;
}

/* Not refused, unlike presence: a module of an older minor keeps
 * loading, and its channels answer every recovery "not recovered". */
void xr_history_start(xr_proto *p)
{
    if (!p->n_history_rules && !p->o->n_history_rooms && !p->o->history_size)
        return;
    /* An application's own route of this name is its business. */
    if (xr_proto_route(p, "/xraptor/history", XR_GET, history_route, p) == XR_ENOMEM)
        xr_log(p->log, XR_LOG_ERROR, "history: out of memory: GET /xraptor/history not served");
    if (!XR_ANTENNA_HAS(p->antenna, publish_kept) || !XR_ANTENNA_HAS(p->antenna, history))
        xr_log(p->log, XR_LOG_WARN,
               "history: the %s antenna module keeps none (no history members of antenna "
               "ABI 2.6): deliveries carry no position and every recovery is answered "
               "\"recovered\": false", p->antenna->scheme);
}

void xr_history_free(xr_proto *p)
{
    /* The antenna answered every read before this (its destroy calls
     * them back); what is left never started. */
    while (p->recoveries)
        rec_free(p->recoveries);
    for (size_t k = 0; k < p->n_history_rules; k++)
        free(p->history_rules[k].pattern);
    free(p->history_rules);
    p->history_rules = NULL;
    p->n_history_rules = 0;
}
