/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The X-raptor request path: parse, middleware chain, route table, handler,
 * response. Channels opened by SUB and closed by UNSUB live in channels.c.
 */
#include "protocol/internal.h"
#include "util/clock.h"

#include "codec/jsonf.h"

#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct xr_route_entry {
    xr_handler fn;
    void *ud;
} xr_route_entry;

struct xr_request {
    unsigned refs;
    int replied;
    xr_proto *pr;
    xr_pconn *h;
    struct xr_request *next_free;   /* in pr->free_requests */
    xr_wire_request p;
    xr_json_fields payload, header; /* xr_payload_*, xr_header_*: indexed when asked */
};

static void request_free(xr_request *r)
{
    xr_wire_request_free(&r->p);
    xr_json_fields_free(&r->payload);
    xr_json_fields_free(&r->header);
    free(r);
}

/* Finished requests are kept for the next ones, their parse store and
 * all: a warm server allocates nothing per request. */
#define XR_FREE_REQUESTS 64

static const char NOT_REGISTERED[] = "{\"message\": \"Not registered\"}";
static const char FAIL[] = "{\"message\": \"fail\"}";

/* 0..4 for GET..UNSUB; 5 when the method could not be read. */
static int method_index(unsigned m)
{
    int i = 0;
    if (!m)
        return 5;
    while (m > 1) {
        m >>= 1;
        i++;
    }
    return i < 5 ? i : 5;
}

/* "route\nBIT" keys one handler per route and method. */
static size_t route_key(char *out, size_t cap, const char *route, size_t rlen, unsigned bit)
{
    if (rlen + 4 > cap)
        return 0;
    memcpy(out, route, rlen);
    out[rlen] = '\n';
    out[rlen + 1] = (char)('0' + method_index(bit));
    return rlen + 2;
}

int xr_proto_route(xr_proto *pr, const char *route, unsigned methods, xr_handler fn, void *ud)
{
    if (!pr || !route || !fn || !methods || (methods & ~31u))
        return XR_EINVAL;
    size_t rlen = strlen(route);
    char key[1024];
    for (unsigned bit = 1; bit <= XR_UNSUB; bit <<= 1) {
        size_t kl;
        if ((methods & bit) && (!(kl = route_key(key, sizeof key, route, rlen, bit))))
            return XR_EINVAL;
        if ((methods & bit) && xr_map_get(&pr->routes, key, kl))
            return XR_EEXIST;
    }
    for (unsigned bit = 1; bit <= XR_UNSUB; bit <<= 1) {
        if (!(methods & bit))
            continue;
        xr_route_entry *e = malloc(sizeof *e);
        size_t kl = route_key(key, sizeof key, route, rlen, bit);
        if (!e || !xr_map_put(&pr->routes, key, kl, e)) {
            free(e);
            return XR_ENOMEM;
        }
        e->fn = fn;
        e->ud = ud;
    }
    return XR_OK;
}

int xr_proto_middleware(xr_proto *pr, int priority, const char *regex, xr_middleware_fn fn, void *ud)
{
    if (!pr || !fn)
        return XR_EINVAL;
    for (size_t i = 0; i < pr->n_mws; i++)
        if (pr->mws[i].priority == priority)
            return XR_EEXIST;
    struct xr_mw mw = {.priority = priority, .fn = fn, .ud = ud};
    if (regex) {
        /* Anchored at the start, as Python's re.match is. */
        size_t n = strlen(regex);
        char *anchored = malloc(n + 4);
        if (!anchored)
            return XR_ENOMEM;
        snprintf(anchored, n + 4, "^(%s)", regex);
        int rc = regcomp(&mw.re, anchored, REG_EXTENDED | REG_NOSUB);
        free(anchored);
        if (rc != 0)
            return XR_EINVAL;
        mw.has_re = 1;
    }
    struct xr_mw *v = realloc(pr->mws, (pr->n_mws + 1) * sizeof *v);
    if (!v) {
        if (mw.has_re)
            regfree(&mw.re);
        return XR_ENOMEM;
    }
    pr->mws = v;
    size_t i = pr->n_mws++;
    while (i > 0 && v[i - 1].priority > priority) {
        v[i] = v[i - 1];
        i--;
    }
    v[i] = mw;
    return XR_OK;
}

void xr_router_free(xr_proto *pr)
{
    size_t it;
    for (xr_map_entry *e = xr_map_first(&pr->routes, &it); e; e = xr_map_next(&pr->routes, e, &it))
        free(e->value);
    xr_map_clear(&pr->routes);
    for (size_t i = 0; i < pr->n_mws; i++)
        if (pr->mws[i].has_re)
            regfree(&pr->mws[i].re);
    free(pr->mws);
    pr->mws = NULL;
    pr->n_mws = 0;
    while (pr->free_requests) {
        xr_request *r = pr->free_requests;
        pr->free_requests = r->next_free;
        request_free(r);
    }
    pr->n_free_requests = 0;
    xr_buf_free(&pr->scratch);
    xr_buf_free(&pr->fmt);
}

/* ---- requests ----------------------------------------------------------- */

void xr_pconn_release(xr_pconn *pc)
{
    if (pc && --pc->refs == 0)
        free(pc);
}

const char *xr_request_id(const xr_request *r, size_t *len)
{
    if (len)
        *len = r->p.id_len;
    return r->p.id;
}

const char *xr_request_route(const xr_request *r) { return r->p.route; }
xr_method xr_request_method(const xr_request *r) { return (xr_method)r->p.method; }
xr_server *xr_request_server(const xr_request *r) { return r->pr->owner; }
xr_conn *xr_request_conn(const xr_request *r) { return r->h ? r->h->conn : NULL; }

const char *xr_request_payload(const xr_request *r, size_t *len)
{
    if (len)
        *len = r->p.payload_len;
    return r->p.payload;
}

const char *xr_request_header(const xr_request *r, const char *name)
{
    return name ? xr_wire_header_get(&r->p, name) : NULL;
}

/* ---- members of the payload and header objects ------------------------ */

static xr_json_member *member(xr_json_fields *f, const char *name, int *rc)
{
    int state;
    if (!name) {
        *rc = XR_EINVAL;
        return NULL;
    }
    xr_json_member *m = xr_json_fields_get(f, name, strlen(name), &state);
    *rc = state < 0 ? state : m ? XR_OK : XR_ENOENT;
    return m;
}

static int field_type(xr_json_fields *f, const char *name)
{
    int rc;
    xr_json_member *m = member(f, name, &rc);
    return m ? m->type : rc == XR_ENOENT ? XR_JSON_MISSING : rc;
}

static int field_str(xr_json_fields *f, const char *name, const char **s, size_t *len)
{
    int rc;
    xr_json_member *m = member(f, name, &rc);
    if (!m)
        return rc;
    return xr_json_member_str(f, m, s, len);
}

static int field_int(xr_json_fields *f, const char *name, long long *v)
{
    int rc;
    xr_json_member *m = member(f, name, &rc);
    return !m ? rc : xr_json_member_int(f, m, v);
}

static int field_num(xr_json_fields *f, const char *name, double *v)
{
    int rc;
    xr_json_member *m = member(f, name, &rc);
    return !m ? rc : xr_json_member_double(f, m, v);
}

static int field_bool(xr_json_fields *f, const char *name, int *v)
{
    int rc;
    xr_json_member *m = member(f, name, &rc);
    if (!m)
        return rc;
    if (m->type != XR_JSON_BOOL)
        return XR_ETYPE;
    *v = f->json[m->raw_off] == 't';
    return XR_OK;
}

static int field_raw(xr_json_fields *f, const char *name, const char **json, size_t *len)
{
    int rc;
    xr_json_member *m = member(f, name, &rc);
    if (!m)
        return rc;
    *json = f->json + m->raw_off;
    if (len)
        *len = m->raw_len;
    return XR_OK;
}

int xr_payload_type(xr_request *r, const char *name) { return field_type(&r->payload, name); }
int xr_header_type(xr_request *r, const char *name) { return field_type(&r->header, name); }

int xr_payload_str(xr_request *r, const char *name, const char **s, size_t *len)
{
    return field_str(&r->payload, name, s, len);
}

int xr_header_str(xr_request *r, const char *name, const char **s, size_t *len)
{
    return field_str(&r->header, name, s, len);
}

int xr_payload_int(xr_request *r, const char *name, long long *v)
{
    return field_int(&r->payload, name, v);
}

int xr_header_int(xr_request *r, const char *name, long long *v)
{
    return field_int(&r->header, name, v);
}

int xr_payload_num(xr_request *r, const char *name, double *v)
{
    return field_num(&r->payload, name, v);
}

int xr_header_num(xr_request *r, const char *name, double *v)
{
    return field_num(&r->header, name, v);
}

int xr_payload_bool(xr_request *r, const char *name, int *v)
{
    return field_bool(&r->payload, name, v);
}

int xr_header_bool(xr_request *r, const char *name, int *v)
{
    return field_bool(&r->header, name, v);
}

int xr_payload_raw(xr_request *r, const char *name, const char **json, size_t *len)
{
    return field_raw(&r->payload, name, json, len);
}

int xr_header_raw(xr_request *r, const char *name, const char **json, size_t *len)
{
    return field_raw(&r->header, name, json, len);
}

/* fmt's text into pr->fmt, by xr_jsonf's rules. */
static int format(xr_proto *pr, const char *fmt, va_list ap)
{
    if (!fmt)
        return XR_EINVAL;
    pr->fmt.len = 0;
    int rc = xr_buf_jsonf_v(&pr->fmt, fmt, ap);
    return rc == 0 ? XR_OK : rc == XR_JSONF_ENOMEM ? XR_ENOMEM : XR_EINVAL;
}

int xr_replyf(xr_request *r, const char *fmt, ...)
{
    if (!r || !fmt)
        return XR_EINVAL;
    /* Formatted straight into the response, escaped as its payload string:
     * one pass, no payload copy. */
    xr_buf *b = &r->pr->scratch;
    b->len = 0;
    va_list ap;
    va_start(ap, fmt);
    int rc = xr_wire_response_head(b, r->p.id, r->p.id_len) < 0 ? XR_JSONF_ENOMEM
           : xr_buf_jsonf_escaped_v(b, fmt, ap);
    va_end(ap);
    if (rc == 0 && xr_wire_response_tail(b, NULL, r->p.method) < 0)
        rc = XR_JSONF_ENOMEM;
    if (rc < 0)
        return rc == XR_JSONF_ENOMEM ? XR_ENOMEM : XR_EINVAL;
    r->replied = 1;
    xr_conn *c = xr_request_conn(r);
    return c ? xr_conn_send(c, XR_TEXT, b->p, b->len) : XR_ECLOSED;
}

int xr_proto_publishv(xr_proto *pr, const char *ch, size_t clen, const char *fmt, va_list ap)
{
    int rc = format(pr, fmt, ap);
    return rc < 0 ? rc : xr_proto_publish(pr, ch, clen, pr->fmt.p, pr->fmt.len);
}

xr_request *xr_request_ref(xr_request *r)
{
    r->refs++;
    return r;
}

static void request_recycle(xr_proto *pr, xr_request *r)
{
    /* One huge request must not pin its store for the process's life. */
    if (pr->n_free_requests < XR_FREE_REQUESTS && r->p.store.cap <= (64u << 10) &&
        r->payload.store.cap <= (256u << 10)) {
        r->next_free = pr->free_requests;
        pr->free_requests = r;
        pr->n_free_requests++;
    } else {
        request_free(r);
    }
}

static xr_request *request_new(xr_proto *pr)
{
    xr_request *r = pr->free_requests;
    if (r) {
        pr->free_requests = r->next_free;
        pr->n_free_requests--;
        /* The parse sets every field of r->p it reads. */
        r->refs = 0;
        r->replied = 0;
        r->pr = NULL;
        r->h = NULL;
        r->next_free = NULL;
        return r;
    }
    return calloc(1, sizeof *r);
}

void xr_request_unref(xr_request *r)
{
    if (!r || --r->refs)
        return;
    xr_pconn_release(r->h);
    request_recycle(r->pr, r);
}

static int send_response(xr_proto *pr, xr_conn *c, const char *id, size_t id_len,
                         const char *payload, size_t len, const char *header, unsigned method)
{
    pr->scratch.len = 0;
    if (xr_wire_response(&pr->scratch, id, id_len, payload, len, header, method) < 0)
        return XR_ENOMEM;
    return xr_conn_send(c, XR_TEXT, pr->scratch.p, pr->scratch.len);
}

int xr_reply(xr_request *r, const char *payload, size_t len)
{
    if (!r || (len && !payload))
        return XR_EINVAL;
    r->replied = 1;
    xr_conn *c = xr_request_conn(r);
    if (!c)
        return XR_ECLOSED;
    return send_response(r->pr, c, r->p.id, r->p.id_len, payload ? payload : "", len,
                         NULL, r->p.method);
}

/* An answer that refuses a request: header {"error": kind}, the reason in
 * the payload's message. kind is "bad_request" or "limit". */
/* An error answer: header {"error": kind, ...extra} (extra: more members,
 * from its comma, or ""), payload {"message": why}. */
static void refuse_with(xr_proto *pr, xr_conn *c, const xr_wire_request *p, const char *kind,
                        const char *extra, const char *why)
{
    xr_buf msg = {0};
    char header[96];
    static const char a[] = "{\"message\": \"", b[] = "\"}";
    pr->stats.requests[method_index(p->method)][XR_OUT_BAD_REQUEST]++;
    XR_DEBUG(pr->log, "request refused (%s): %s", kind, why);
    snprintf(header, sizeof header, "{\"error\":\"%s\"%s}", kind, extra);
    if (xr_buf_add(&msg, a, sizeof a - 1) == 0 &&
        xr_buf_json_escaped(&msg, why, strlen(why)) == 0 &&
        xr_buf_add(&msg, b, sizeof b - 1) == 0)
        send_response(pr, c, p->id ? p->id : "", p->id ? p->id_len : 0, msg.p, msg.len,
                      header, p->method);
    xr_buf_free(&msg);
}

static void refuse(xr_proto *pr, xr_conn *c, const xr_wire_request *p, const char *kind,
                   const char *why)
{
    refuse_with(pr, c, p, kind, "", why);
}

int xr_proto_reply_error(xr_request *r, const char *kind, const char *why)
{
    xr_conn *c = xr_request_conn(r);
    if (!c || r->replied)
        return XR_ECLOSED;
    r->replied = 1;
    refuse_with(r->pr, c, &r->p, kind, "", why);
    return XR_OK;
}

/*
 * --rate-limit and --rate-limit-bytes: 1 when the request of len bytes
 * may go on; else it has been answered "rate_limited" with the wait, or
 * the connection, whose refusals piled up past --rate-limit-strikes, is
 * closing with 1008.
 */
static int rate_ok(xr_proto *pr, xr_pconn *h, const xr_wire_request *p, size_t len)
{
    const xr_options *o = pr->o;
    uint64_t now = xr_now_ms(), wait = 0, w;
    unsigned burst = o->rate_limit_burst ? o->rate_limit_burst : o->rate_limit;
    int ok = 1;
    if (o->rate_limit && !xr_bucket_take(&h->requests, o->rate_limit, burst, 1, now, &w))
        ok = 0, wait = w;
    /* A request bigger than a second's worth would never fit: it waits
     * for a full bucket instead. */
    if (ok && o->rate_limit_bytes) {
        uint64_t cost = len < o->rate_limit_bytes ? len : o->rate_limit_bytes;
        if (!xr_bucket_take(&h->bytes, o->rate_limit_bytes, o->rate_limit_bytes, cost, now, &w)) {
            ok = 0, wait = w;
            /* the request token it took is given back: nothing was done */
            if (o->rate_limit)
                h->requests.milli += 1000;
        }
    }
    if (ok)
        return 1;
    pr->stats.rate_limited++;
    unsigned strikes = o->rate_limit_strikes ? o->rate_limit_strikes
                       : 10 * (o->rate_limit ? burst : 1);
    if (!xr_bucket_take(&h->strikes, o->rate_limit ? o->rate_limit : 1, strikes, 1, now, &w)) {
        pr->stats.rate_limit_closes++;
        XR_DEBUG(pr->log, "rate limit: refused requests piled up past %u, closing", strikes);
        xr_conn_close(h->conn, XR_CLOSE_POLICY, "rate limit exceeded");
        return 0;
    }
    char extra[48];
    snprintf(extra, sizeof extra, ",\"retry_after\":%.3f", (double)wait / 1000.0);
    refuse_with(pr, h->conn, p, "rate_limited", extra,
                "too many requests: wait retry_after seconds");
    return 0;
}

static void bad_request(xr_proto *pr, xr_conn *c, const xr_wire_request *p, const char *why)
{
    refuse(pr, c, p, "bad_request", why);
}

/* The outcome of one request, for /metrics and for fail answers. */
static void outcome(xr_request *r, int out, int answer_fail)
{
    r->pr->stats.requests[method_index(r->p.method)][out]++;
    if (answer_fail && !r->replied)
        xr_reply(r, FAIL, sizeof FAIL - 1);
}

static void forbidden(xr_proto *pr, xr_conn *c, const xr_wire_request *p, const char *why)
{
    pr->stats.forbidden++;
    refuse(pr, c, p, "forbidden", why);
}

/* A middleware's or handler's result rc: a failure after a grant check
 * refused (XR_EPERM returned, or passed on as any failure) is answered
 * forbidden, any other failure "fail". */
static void handled(xr_request *r, int rc)
{
    xr_proto *pr = r->pr;
    xr_conn *c = xr_request_conn(r);
    if (rc < 0 && (rc == XR_EPERM || pr->denied) && !r->replied && c) {
        r->replied = 1;
        forbidden(pr, c, &r->p, "not granted by the connection's token");
        return;
    }
    outcome(r, rc < 0 ? XR_OUT_FAIL : XR_OUT_OK, rc < 0);
}

int xr_request_allowed(const xr_request *r, xr_grant kind, const char *name, size_t len)
{
    xr_conn *c = r ? xr_request_conn(r) : NULL;
    return c && name && xr_granted(c, (char)kind, name, len);
}

/* The protocol's slot of c: made on the first request; the connection
 * holds one reference, each live request another. */
static xr_pconn *pconn_of(xr_conn *c)
{
    xr_pconn *pc = xr_conn_slot(c);
    if (!pc && (pc = calloc(1, sizeof *pc))) {
        pc->conn = c;
        pc->refs = 1;
        xr_conn_set_slot(c, pc);
    }
    return pc;
}

static void dispatch(xr_proto *pr, xr_request *r, xr_conn *c, xr_pconn *h);

void xr_proto_message(xr_proto *pr, xr_conn *c, xr_msg_type type, const char *data, size_t len)
{
    char err[160];
    xr_request *r = request_new(pr);
    xr_pconn *h = pconn_of(c);
    if (!r || !h) {
        free(r);
        xr_conn_close(c, XR_CLOSE_INTERNAL, "out of memory");
        return;
    }
    r->pr = pr;
    /* Binary frames may carry requests too, but the answer is text. */
    if (type == XR_BINARY && !xr_utf8_valid((const uint8_t *)data, len)) {
        r->p.id = NULL;
        r->p.method = 0;
        bad_request(pr, c, &r->p, "request is not UTF-8 text");
        request_recycle(pr, r);
        return;
    }
    int parsed = xr_wire_parse(data, len, &r->p, err, sizeof err);
    /* Counted whether it parses or not: garbage is no cheaper to send. */
    if ((pr->o->rate_limit || pr->o->rate_limit_bytes) && !rate_ok(pr, h, &r->p, len)) {
        request_recycle(pr, r);
        return;
    }
    if (parsed < 0) {
        bad_request(pr, c, &r->p, err);
        request_recycle(pr, r);
        return;
    }
    /* Requests a handler keeps (xr_request_ref) hold memory until it
     * answers: a connection may have only so many at once. */
    if (h->refs - 1 >= pr->o->max_pending_requests) {
        refuse(pr, c, &r->p, "limit", "too many requests in progress on this connection");
        request_recycle(pr, r);
        return;
    }
    xr_json_fields_reset(&r->payload, r->p.payload, r->p.payload_len);
    xr_json_fields_reset(&r->header, r->p.header_json, r->p.header_json_len);
    r->refs = 1;
    r->h = h;
    h->refs++;

    /* The grant checks of xr_publish and xr_room_join know whose request
     * runs. */
    pr->acting = c;
    pr->denied = 0;
    dispatch(pr, r, c, h);
    pr->acting = NULL;
}

/* The middleware chain, then the route's handler; r is released. */
static void dispatch(xr_proto *pr, xr_request *r, xr_conn *c, xr_pconn *h)
{
    for (size_t i = 0; i < pr->n_mws; i++) {
        struct xr_mw *mw = &pr->mws[i];
        if (mw->has_re && regexec(&mw->re, r->p.route, 0, NULL, 0) != 0)
            continue;
        int rc = mw->fn(r, mw->ud);
        if (rc == XR_NEXT)
            continue;
        handled(r, rc);
        xr_request_unref(r);
        return;
    }

    char key[1024];
    size_t kl = route_key(key, sizeof key, r->p.route, r->p.route_len, r->p.method);
    xr_route_entry *e = kl ? xr_map_get(&pr->routes, key, kl) : NULL;
    if (!e) {
        outcome(r, XR_OUT_NOT_REGISTERED, 0);
        xr_reply(r, NOT_REGISTERED, sizeof NOT_REGISTERED - 1);
        xr_request_unref(r);
        return;
    }
    /* SUB: the id is a live channel before the handler runs, so nothing
     * published from inside the handler can be missed. */
    int recovering = 0;
    if (r->p.method == XR_SUB) {
        int rc = xr_channel_open(pr, h, r->p.id, r->p.id_len);
        if (rc == XR_EPERM) {
            forbidden(pr, c, &r->p, "the connection's token does not grant this channel "
                      "(or a room it is in)");
            xr_request_unref(r);
            return;
        }
        if (rc == XR_EINVAL || rc == XR_ELIMIT) {
            char why[128];
            if (rc == XR_EINVAL)
                snprintf(why, sizeof why, "request_id %s: it cannot name a channel",
                         xr_name_problem(xr_name_check(r->p.id, r->p.id_len,
                                                       pr->o->max_name_length)));
            refuse(pr, c, &r->p, rc == XR_EINVAL ? "bad_request" : "limit",
                   rc == XR_EINVAL ? why : "this connection holds as many channels as "
                   "--max-channels-per-connection allows");
            xr_request_unref(r);
            return;
        }
        if (rc < 0) {
            outcome(r, XR_OUT_FAIL, 1);
            xr_request_unref(r);
            return;
        }
        int events = 0;
        if (xr_presence_any(pr) && xr_header_bool(r, "presence", &events) == XR_OK && events)
            xr_channel_wants_events(pr, r->p.id, r->p.id_len);
        /* Recovery holds what the channel gets from before the handler
         * runs, so nothing it publishes slips between read and live. */
        unsigned long long since;
        char epoch[XR_EPOCH_MAX + 1];
        size_t elen;
        const char *why;
        int has = xr_history_since(r, &since, epoch, &elen, &why);
        if (has < 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "%s", why);
            refuse(pr, c, &r->p, "bad_request", msg);
            xr_channel_close(pr, h, r->p.id, r->p.id_len);
            xr_request_unref(r);
            return;
        }
        recovering = has && xr_recovery_begin(pr, h, r->p.id, r->p.id_len, since, epoch,
                                              elen) == XR_OK;
    }
    int rc = e->fn(r, e->ud);
    handled(r, rc);
    if (h->conn && (r->p.method == XR_UNSUB || (r->p.method == XR_SUB && rc < 0)))
        xr_channel_close(pr, h, r->p.id, r->p.id_len);
    else if (recovering && h->conn)
        xr_recovery_read(pr, h, r->p.id, r->p.id_len);
    xr_request_unref(r);
}
