/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The publish API for backends (--api-key-file): POST /api/publish and
 * POST /api/broadcast on the WebSocket port, a key in "Authorization:
 * apikey KEY" compared in constant time, a JSON body published exactly as
 * xr_publish() would, so subscribers on every node receive it. Without a
 * key the API is off (its paths are not even routes). An Idempotency-Key
 * header makes a retried call publish once within the window (on this
 * node: a load balancer should send one key's retries to one node).
 */
#include "server/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "codec/request.h"
#include "util/clock.h"

#define API_KEY_MIN 16
#define IDEM_MAX_KEY 128
#define IDEM_MAX 100000          /* keys remembered at once */
#define BROADCAST_MAX 1000       /* channels of one broadcast */

int xr_api_load(xr_server *srv, char *err, size_t errlen)
{
    const char *path = srv->opts.api_key_file;
    if (!path || !path[0])
        return XR_OK;
    size_t n;
    char *buf = xr_file_read(path, &n);
    if (!buf) {
        snprintf(err, errlen, "--api-key-file %s: %s", path, strerror(errno));
        return XR_EIO;
    }
    size_t got = n;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n < API_KEY_MIN || n > 1024) {
        OPENSSL_cleanse(buf, got);
        free(buf);
        snprintf(err, errlen, "--api-key-file %s: the key must have %d to 1024 bytes", path,
                 API_KEY_MIN);
        return XR_EINVAL;
    }
    /* The file's own buffer keeps the key: nothing else to copy and wipe. */
    srv->api_key = buf;
    srv->api_key_len = n;
    return XR_OK;
}

void xr_api_free(xr_server *srv)
{
    if (srv->api_key)
        OPENSSL_cleanse(srv->api_key, srv->api_key_len);
    free(srv->api_key);
    srv->api_key = NULL;
    size_t it;
    for (xr_map_entry *e = xr_map_first(&srv->idem, &it); e; e = xr_map_next(&srv->idem, e, &it))
        free(e->value);
    xr_map_clear(&srv->idem);
}

/* 1 publish, 2 broadcast, 0 not the API's (also: the API has an address
 * of its own, --api-listen, and this request came to another). */
static int api_path(const xr_server *srv, const xr_http_request *req)
{
    if (!srv->api_key || (srv->opts.api_listen && !req->api))
        return 0;
    size_t n = xr_http_path_len(req);
    if (n == 12 && memcmp(req->target, "/api/publish", 12) == 0)
        return 1;
    if (n == 14 && memcmp(req->target, "/api/broadcast", 14) == 0)
        return 2;
    return 0;
}

size_t xr_api_body_limit(const xr_http_request *req, void *ud)
{
    xr_server *srv = ud;
    if (!api_path(srv, req) || req->method_len != 4 || memcmp(req->method, "POST", 4) != 0)
        return 0;
    return srv->opts.max_message_size < (1u << 20) ? srv->opts.max_message_size : (1u << 20);
}

static void answer(xr_http_reply *rep, int status, const char *json)
{
    rep->status = status;
    rep->ctype = "application/json";
    rep->body->len = 0;
    xr_buf_printf(rep->body, "%s\n", json);
}

static void fail(xr_http_reply *rep, int status, const char *why)
{
    char json[160];
    /* why is our own static text: nothing of the request is echoed */
    snprintf(json, sizeof json, "{\"error\": \"%s\"}", why);
    answer(rep, status, json);
}

static int key_ok(const xr_server *srv, const xr_http_request *req)
{
    const xr_http_header *h = xr_http_find(req, "Authorization");
    if (!h || h->value_len < 7 || strncasecmp(h->value, "apikey ", 7) != 0)
        return 0;
    /* Constant time over the key's bytes; only the length can show. */
    return h->value_len - 7 == srv->api_key_len &&
           CRYPTO_memcmp(h->value + 7, srv->api_key, srv->api_key_len) == 0;
}

/* The idempotency key: 1 new (remembered), 0 seen in the window,
 * XR_EINVAL bad, XR_ELIMIT too many remembered. No header: 1. */
static int idem_check(xr_server *srv, const xr_http_request *req)
{
    const xr_http_header *h = xr_http_find(req, "Idempotency-Key");
    if (!h)
        return 1;
    if (!h->value_len || h->value_len > IDEM_MAX_KEY)
        return XR_EINVAL;
    uint64_t now = xr_now_ms(), *until = xr_map_get(&srv->idem, h->value, h->value_len);
    if (until && *until > now)
        return 0;
    if (!until && srv->idem.count >= IDEM_MAX) {
        /* Forget what the window has passed, then look again. */
        size_t it;
        for (xr_map_entry *e = xr_map_first(&srv->idem, &it); e;) {
            xr_map_entry *next = xr_map_next(&srv->idem, e, &it);
            if (*(uint64_t *)e->value <= now) {
                free(e->value);
                xr_map_del(&srv->idem, e->key, e->klen);
            }
            e = next;
        }
        if (srv->idem.count >= IDEM_MAX)
            return XR_ELIMIT;
    }
    if (!until) {
        if (!(until = malloc(sizeof *until)))
            return XR_ELIMIT;
        if (!xr_map_put(&srv->idem, h->value, h->value_len, until)) {
            free(until);
            return XR_ELIMIT;
        }
    }
    *until = now + srv->opts.api_idempotency_ms;
    return 1;
}

static void forget(xr_server *srv, const xr_http_request *req)
{
    const xr_http_header *h = xr_http_find(req, "Idempotency-Key");
    uint64_t *until = h ? xr_map_get(&srv->idem, h->value, h->value_len) : NULL;
    if (until) {
        free(until);
        xr_map_del(&srv->idem, h->value, h->value_len);
    }
}

/* Publishes data to one channel: XR_OK or xr_publish's error. */
static int publish_one(xr_server *srv, xr_json_fields *f, xr_json_member *ch,
                       const char *data, size_t dlen)
{
    const char *name;
    size_t nlen;
    if (xr_json_member_str(f, ch, &name, &nlen) < 0)
        return XR_ETYPE;
    return xr_publish(srv, name, nlen, data, dlen);
}

int xr_api_serve(xr_server *srv, const xr_http_request *req, xr_http_reply *rep)
{
    int kind = api_path(srv, req);
    if (!kind)
        return 0;
    if (req->method_len != 4 || memcmp(req->method, "POST", 4) != 0) {
        fail(rep, 405, "only POST");
        rep->extra = "Allow: POST\r\n";
        return 1;
    }
    if (!key_ok(srv, req)) {
        fail(rep, 401, "missing or wrong API key (Authorization: apikey KEY)");
        rep->extra = "WWW-Authenticate: apikey\r\n";
        XR_INFO(&srv->log, "API call refused (401): missing or wrong API key");
        return 1;
    }
    xr_json_fields f = {0};
    xr_json_fields_reset(&f, req->body ? req->body : "", req->body_len);
    int st;
    xr_json_member *data = xr_json_fields_get(&f, "data", 4, &st);
    xr_json_member *ch = kind == 1 ? xr_json_fields_get(&f, "channel", 7, &st)
                                   : xr_json_fields_get(&f, "channels", 8, &st);
    const char *text;
    size_t tlen;
    if (st < 0) {
        fail(rep, 400, "the body is not one JSON object");
    } else if (!data) {
        fail(rep, 400, "missing data");
    } else if (!ch || (kind == 1 && ch->type != XR_JSON_STRING) ||
               (kind == 2 && ch->type != XR_JSON_ARRAY)) {
        fail(rep, 400, kind == 1 ? "channel must be a string" : "channels must be an array");
    } else {
        /* A string is published as its text; any other value as its JSON. */
        if (data->type == XR_JSON_STRING) {
            xr_json_member_str(&f, data, &text, &tlen);
        } else {
            text = f.json + data->raw_off;
            tlen = data->raw_len;
        }
        int idem = idem_check(srv, req);
        if (idem == XR_EINVAL) {
            fail(rep, 400, "Idempotency-Key must have 1 to 128 bytes");
        } else if (idem == XR_ELIMIT) {
            fail(rep, 429, "too many idempotency keys in the window");
        } else if (idem == 0) {
            answer(rep, 200, "{\"published\": 0, \"duplicate\": true}");
        } else if (kind == 1) {
            int rc = publish_one(srv, &f, ch, text, tlen);
            if (rc == XR_OK) {
                answer(rep, 200, "{\"published\": 1}");
            } else {
                forget(srv, req);   /* nothing went out: a retry may */
                fail(rep, rc == XR_EANTENNA ? 503 : 400,
                     rc == XR_EANTENNA ? "the broker refused the post"
                                       : "channel is not a valid name");
            }
        } else {
            size_t offs[BROADCAST_MAX], lens[BROADCAST_MAX], count = 0;
            xr_buf names = {0};
            int rc = xr_json_array_strings(f.json + ch->raw_off, ch->raw_len, &names, offs, lens,
                                           BROADCAST_MAX, &count);
            if (rc < 0 || !count) {
                forget(srv, req);
                fail(rep, rc == XR_ENOMEM ? 503 : 400,
                     rc == XR_ELIMIT ? "at most 1000 channels"
                     : rc == XR_ENOMEM ? "out of memory"
                                       : "channels must be a non-empty array of strings");
            } else {
                int published = 0, bad = 0, down = 0;
                for (size_t i = 0; i < count; i++) {
                    int r = xr_publish(srv, names.p + offs[i], lens[i], text, tlen);
                    published += r == XR_OK;
                    down += r == XR_EANTENNA;
                    bad += r < 0 && r != XR_EANTENNA;
                }
                if (!published) {
                    forget(srv, req);
                    fail(rep, down ? 503 : 400, down ? "the broker refused the posts"
                                                     : "no channel is a valid name");
                } else {
                    char out[96];
                    snprintf(out, sizeof out, "{\"published\": %d, \"refused\": %d}",
                             published, bad + down);
                    answer(rep, 200, out);
                }
            }
            xr_buf_free(&names);
        }
    }
    xr_json_fields_free(&f);
    return 1;
}
