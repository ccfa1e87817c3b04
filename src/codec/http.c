/* SPDX-License-Identifier: Apache-2.0 */
#include "codec/http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <xraptor/errors.h>

/* RFC 7230 tchar: the characters of a method or header name. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar, SP, HTAB and obs-text: what a header value may hold. */
static int is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7F);
}

static long bad(xr_http_error *err, int status, const char *reason)
{
    err->status = status;
    err->reason = reason;
    return XR_EINVAL;
}

long xr_http_parse(const char *buf, size_t len, xr_http_request *req,
                   xr_http_error *err)
{
    const unsigned char *p = (const unsigned char *)buf;
    size_t i = 0;
    req->n_headers = 0;

    /* Request line: method SP target SP HTTP/1.x CRLF */
    req->method = buf;
    while (i < len && is_tchar(p[i]))
        i++;
    if (i == len)
        return 0;
    if (i == 0 || p[i] != ' ')
        return bad(err, 400, "malformed request line: bad method");
    req->method_len = i++;

    req->target = buf + i;
    size_t t0 = i;
    while (i < len && p[i] > 0x20 && p[i] < 0x7F)
        i++;
    if (i == len)
        return 0;
    if (i == t0 || p[i] != ' ')
        return bad(err, 400, "malformed request line: bad request target");
    req->target_len = i - t0;
    if (req->target[0] != '/')
        return bad(err, 400, "request target must be an absolute path");
    i++;

    static const char proto[] = "HTTP/1.";
    for (size_t k = 0; k < sizeof proto - 1; i++, k++) {
        if (i == len)
            return 0;
        if (p[i] != (unsigned char)proto[k])
            return bad(err, k < 5 ? 400 : 505,
                       k < 5 ? "malformed request line: bad protocol"
                             : "HTTP version not supported");
    }
    if (i == len)
        return 0;
    if (p[i] < '0' || p[i] > '9')
        return bad(err, 505, "HTTP version not supported");
    req->minor = p[i++] - '0';
    if (i == len)
        return 0;
    if (p[i] != '\r')
        return bad(err, 400, "malformed request line: expected CRLF");
    if (++i == len)
        return 0;
    if (p[i++] != '\n')
        return bad(err, 400, "malformed request line: expected CRLF");

    /* Header fields until the empty line. */
    for (;;) {
        if (i == len)
            return 0;
        if (p[i] == '\r') {
            if (++i == len)
                return 0;
            if (p[i] != '\n')
                return bad(err, 400, "malformed header: expected CRLF");
            return (long)(i + 1);
        }
        /* 3.2.4: obsolete line folding is rejected, as is a space before
         * the colon (a request-smuggling vector). */
        if (p[i] == ' ' || p[i] == '\t')
            return bad(err, 400, "obsolete header line folding");
        size_t n0 = i;
        while (i < len && is_tchar(p[i]))
            i++;
        if (i == len)
            return 0;
        if (i == n0 || p[i] != ':')
            return bad(err, 400, "malformed header name");
        if (req->n_headers == XR_HTTP_MAX_HEADERS)
            return bad(err, 431, "too many header fields");
        xr_http_header *h = &req->headers[req->n_headers];
        h->name = buf + n0;
        h->name_len = i - n0;
        i++;
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        size_t v0 = i;
        while (i < len && is_value_char(p[i]))
            i++;
        if (i == len)
            return 0;
        if (p[i] != '\r')
            return bad(err, 400, "malformed header value");
        size_t v1 = i;
        while (v1 > v0 && (p[v1 - 1] == ' ' || p[v1 - 1] == '\t'))
            v1--;
        h->value = buf + v0;
        h->value_len = v1 - v0;
        if (++i == len)
            return 0;
        if (p[i++] != '\n')
            return bad(err, 400, "malformed header: expected CRLF");
        req->n_headers++;
    }
}

const xr_http_header *xr_http_find(const xr_http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t k = 0; k < req->n_headers; k++) {
        const xr_http_header *h = &req->headers[k];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0)
            return h;
    }
    return NULL;
}

int xr_http_has_token(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
            return 1;
    }
    return 0;
}

size_t xr_http_path_len(const xr_http_request *req)
{
    const char *q = memchr(req->target, '?', req->target_len);
    return q ? (size_t)(q - req->target) : req->target_len;
}

static int is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* 4.1: the key is 16 random bytes in base64: 22 characters and "==". */
static int key_ok(const xr_http_header *h)
{
    if (h->value_len != 24 || h->value[22] != '=' || h->value[23] != '=')
        return 0;
    for (int i = 0; i < 22; i++)
        if (!is_b64((unsigned char)h->value[i]))
            return 0;
    /* The last character before "==" carries 2 bits; the rest must be 0. */
    return strchr("AQgw", h->value[21]) != NULL;
}

static int offers(const xr_http_request *req, const char *proto)
{
    for (size_t k = 0; k < req->n_headers; k++) {
        const xr_http_header *h = &req->headers[k];
        if (h->name_len == 22 && strncasecmp(h->name, "Sec-WebSocket-Protocol", 22) == 0 &&
            xr_http_has_token(h->value, h->value_len, proto))
            return 1;
    }
    return 0;
}

long xr_http_content_length(const xr_http_request *req)
{
    const xr_http_header *h = NULL;
    for (size_t k = 0; k < req->n_headers; k++) {
        const xr_http_header *x = &req->headers[k];
        if (x->name_len == 14 && strncasecmp(x->name, "Content-Length", 14) == 0) {
            if (h)
                return XR_EINVAL;   /* two lengths: smuggling's first step */
            h = x;
        }
    }
    if (!h)
        return XR_ENOENT;
    if (h->value_len == 0 || h->value_len > 10)
        return XR_EINVAL;
    long n = 0;
    for (size_t k = 0; k < h->value_len; k++) {
        if (h->value[k] < '0' || h->value[k] > '9')
            return XR_EINVAL;
        n = n * 10 + (h->value[k] - '0');
    }
    return n > 0x7fffffffL ? XR_EINVAL : n;
}

static xr_http_kind reject(xr_http_error *err, int status, const char *reason)
{
    bad(err, status, reason);
    return XR_HTTP_REJECT;
}

xr_http_kind xr_http_classify(const xr_http_request *req,
                              const char *const *subprotocols, size_t n_sub,
                              const char *const *origins, size_t n_origins,
                              xr_ws_handshake *hs, xr_http_error *err)
{
    const xr_http_header *h;

    /* We never read a body, so one would be taken for the next request. */
    if (xr_http_find(req, "Transfer-Encoding"))
        return reject(err, 400, "request bodies are not accepted");
    h = xr_http_find(req, "Content-Length");
    if (h && !(h->value_len == 1 && h->value[0] == '0'))
        return reject(err, 400, "request bodies are not accepted");

    h = xr_http_find(req, "Upgrade");
    if (!h || !xr_http_has_token(h->value, h->value_len, "websocket"))
        return XR_HTTP_PLAIN;

    if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0)
        return reject(err, 400, "a WebSocket upgrade must use GET");
    if (req->minor < 1)
        return reject(err, 400, "a WebSocket upgrade needs HTTP/1.1");
    if (!xr_http_find(req, "Host"))
        return reject(err, 400, "missing Host header");
    h = xr_http_find(req, "Connection");
    if (!h || !xr_http_has_token(h->value, h->value_len, "upgrade"))
        return reject(err, 400, "Connection header must include Upgrade");
    h = xr_http_find(req, "Sec-WebSocket-Version");
    if (!h)
        return reject(err, 400, "missing Sec-WebSocket-Version header");
    if (h->value_len != 2 || memcmp(h->value, "13", 2) != 0)
        return reject(err, 426, "unsupported Sec-WebSocket-Version: only 13 is spoken");
    const xr_http_header *key = xr_http_find(req, "Sec-WebSocket-Key");
    if (!key || !key_ok(key))
        return reject(err, 400, "Sec-WebSocket-Key must be 16 bytes in base64");

    if (n_origins) {
        h = xr_http_find(req, "Origin");
        size_t k = 0;
        for (; h && k < n_origins; k++)
            if (strlen(origins[k]) == h->value_len &&
                strncasecmp(origins[k], h->value, h->value_len) == 0)
                break;
        if (!h || k == n_origins)
            return reject(err, 403, "origin not allowed");
    }

    hs->protocol = NULL;
    for (size_t k = 0; k < n_sub && !hs->protocol; k++)
        if (offers(req, subprotocols[k]))
            hs->protocol = subprotocols[k];

    xr_ws_accept_key(key->value, key->value_len, hs->accept);
    return XR_HTTP_UPGRADE;
}

void xr_ws_accept_key(const char *key, size_t key_len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char buf[64 + sizeof guid];
    if (key_len > 64)
        key_len = 64;
    memcpy(buf, key, key_len);
    memcpy(buf + key_len, guid, sizeof guid - 1);
    EVP_Digest(buf, key_len + sizeof guid - 1, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

/* ---- permessage-deflate negotiation (RFC 7692 section 7) -------------- */

static size_t skip_ows(const char *v, size_t i, size_t n)
{
    while (i < n && (v[i] == ' ' || v[i] == '\t'))
        i++;
    return i;
}

static size_t skip_token(const char *v, size_t i, size_t n)
{
    while (i < n && is_tchar((unsigned char)v[i]))
        i++;
    return i;
}

/* Window bits are 8..15 written without leading zeros (7.1.2.1). */
static int window_value(const char *v, size_t len)
{
    if (len == 1 && v[0] >= '8' && v[0] <= '9')
        return v[0] - '0';
    if (len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + v[1] - '0';
    return XR_EINVAL;
}

typedef struct pmd_offer {
    int server_no_context, client_no_context;
    int server_bits;          /* 0: not offered */
    int client_bits;          /* 0: not offered, 16: offered with no value */
} pmd_offer;

enum { P_SNC, P_CNC, P_SMWB, P_CMWB, P_N };

/* One parameter of a permessage-deflate offer; -1 declines the offer. */
static int offer_param(pmd_offer *o, unsigned *seen, const char *name, size_t nlen,
                       const char *val, size_t vlen, int has_val)
{
    static const char *const names[P_N] = {
        "server_no_context_takeover", "client_no_context_takeover",
        "server_max_window_bits", "client_max_window_bits"};
    int k = 0;
    while (k < P_N && !(strlen(names[k]) == nlen && strncasecmp(names[k], name, nlen) == 0))
        k++;
    if (k == P_N || (*seen & (1u << k)))
        return XR_EINVAL;                 /* unknown or repeated (7: decline) */
    *seen |= 1u << k;
    int bits = has_val ? window_value(val, vlen) : 0;
    switch (k) {
    case P_SNC:
        if (has_val)
            return XR_EINVAL;
        o->server_no_context = 1;
        return 0;
    case P_CNC:
        if (has_val)
            return XR_EINVAL;
        o->client_no_context = 1;
        return 0;
    case P_SMWB:
        if (bits < 0 || !has_val)
            return XR_EINVAL;
        o->server_bits = bits;
        return 0;
    default:
        if (bits < 0)
            return XR_EINVAL;
        o->client_bits = has_val ? bits : 16;
        return 0;
    }
}

/*
 * Parses one extension of a header value starting at *pos:
 *   token *( OWS ";" OWS token [ "=" ( token / quoted-string ) ] ) OWS
 * Returns 1 for a permessage-deflate offer we can take (in *o), 0 for
 * another extension or one we decline, XR_EINVAL when the header is malformed (the
 * rest of it is then ignored).
 */
static int parse_extension(const char *v, size_t n, size_t *pos, pmd_offer *o)
{
    size_t i = skip_ows(v, *pos, n);
    size_t name0 = i;
    i = skip_token(v, i, n);
    if (i == name0)
        return XR_EINVAL;
    int ours = i - name0 == 18 && strncasecmp(v + name0, "permessage-deflate", 18) == 0;
    int ok = ours;
    unsigned seen = 0;
    memset(o, 0, sizeof *o);
    for (;;) {
        i = skip_ows(v, i, n);
        if (i == n || v[i] != ';')
            break;
        i = skip_ows(v, i + 1, n);
        size_t p0 = i;
        i = skip_token(v, i, n);
        if (i == p0)
            return XR_EINVAL;
        size_t p1 = i;
        const char *val = NULL;
        size_t vlen = 0;
        int has_val = 0;
        i = skip_ows(v, i, n);
        if (i < n && v[i] == '=') {
            has_val = 1;
            i = skip_ows(v, i + 1, n);
            if (i < n && v[i] == '"') {
                /* A quoted value must still be a token once unquoted
                 * (9.1 of RFC 6455); ours never need escapes. */
                size_t q0 = ++i;
                while (i < n && v[i] != '"' && is_tchar((unsigned char)v[i]))
                    i++;
                if (i == n || v[i] != '"' || i == q0)
                    return XR_EINVAL;
                val = v + q0;
                vlen = i - q0;
                i++;
            } else {
                size_t q0 = i;
                i = skip_token(v, i, n);
                if (i == q0)
                    return XR_EINVAL;
                val = v + q0;
                vlen = i - q0;
            }
        }
        if (ok && offer_param(o, &seen, v + p0, p1 - p0, val, vlen, has_val) < 0)
            ok = 0;
    }
    if (i < n && v[i] != ',')
        return XR_EINVAL;
    *pos = i < n ? i + 1 : n;
    return ok;
}

int xr_pmd_negotiate(const xr_http_request *req, unsigned window_bits,
                     int require_no_context, xr_pmd *out, char *resp, size_t cap)
{
    if (window_bits < 9 || window_bits > 15)
        window_bits = 15;
    for (size_t k = 0; k < req->n_headers; k++) {
        const xr_http_header *h = &req->headers[k];
        if (h->name_len != 24 || strncasecmp(h->name, "Sec-WebSocket-Extensions", 24) != 0)
            continue;
        size_t pos = 0;
        while (skip_ows(h->value, pos, h->value_len) < h->value_len) {
            pmd_offer o;
            int r = parse_extension(h->value, h->value_len, &pos, &o);
            if (r < 0)
                break;
            if (r == 0)
                continue;
            /* Accepted. Our own window: what the client allows, at most 15. */
            out->server_bits = (unsigned char)(o.server_bits ? o.server_bits : 15);
            /* The client's: only when it lets us choose (7.1.2.2) do we
             * name one, and then not above our cap. */
            unsigned cb = 15;
            if (o.client_bits)
                cb = o.client_bits == 16 || (unsigned)o.client_bits > window_bits
                     ? window_bits : (unsigned)o.client_bits;
            out->client_bits = (unsigned char)cb;
            out->client_no_context = (unsigned char)(o.client_no_context || require_no_context);
            char sb[40] = "", cbuf[40] = "";
            if (o.server_bits)
                snprintf(sb, sizeof sb, "; server_max_window_bits=%d", o.server_bits);
            if (o.client_bits)
                snprintf(cbuf, sizeof cbuf, "; client_max_window_bits=%u", cb);
            int len = snprintf(resp, cap, "permessage-deflate; server_no_context_takeover%s%s%s",
                               out->client_no_context ? "; client_no_context_takeover" : "",
                               sb, cbuf);
            return len > 0 && (size_t)len < cap;
        }
    }
    return 0;
}
