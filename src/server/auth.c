/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection tokens (--jwt-key): the keys read from their files, the check
 * of every WebSocket upgrade, and PUT /xraptor/token, by which a client
 * hands in a fresh token before its first one ends. Verifying a token is
 * the codec's (src/codec/jwt.c); this file knows files, time and
 * connections. A token is never written to a log line.
 */
#include "server/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/pem.h>

#include "codec/jwt.h"
#include "util/clock.h"

static void keys_free(xr_jwt_key *keys, size_t n)
{
    for (size_t k = 0; k < n; k++)
        xr_jwt_key_clear(&keys[k]);
    free(keys);
}

void xr_auth_free(xr_server *srv)
{
    keys_free(srv->jwt_keys, srv->n_jwt_keys);
    srv->jwt_keys = NULL;
    srv->n_jwt_keys = 0;
}

char *xr_file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    char *b = malloc(cap + 1);
    if (b)
        n = fread(b, 1, cap + 1, f);
    int bad = !b || ferror(f) || n > cap;
    fclose(f);
    if (bad) {
        free(b);
        errno = b ? EFBIG : ENOMEM;
        return NULL;
    }
    b[n] = '\0';
    *len = n;
    return b;
}

/* The keys being loaded: a whole new set replaces the old one, or none. */
typedef struct key_list {
    xr_jwt_key *v;
    size_t n, cap;
} key_list;

/* The list takes key over; XR_ENOMEM when it cannot (key is cleared). */
static int keys_add(key_list *l, xr_jwt_key *key)
{
    if (xr_array_room(&l->v, &l->cap, l->n + 1, sizeof *l->v) < 0) {
        xr_jwt_key_clear(key);
        return XR_ENOMEM;
    }
    l->v[l->n++] = *key;
    return XR_OK;
}

/* A JWK set file's keys, added to l. */
static int set_load(const char *path, const char *text, size_t len, key_list *l, char *err,
                    size_t errlen)
{
    xr_jwt_key *got;
    size_t count;
    char why[256];
    int rc = xr_jwks_parse(text, len, &got, &count, why, sizeof why);
    if (rc < 0) {
        snprintf(err, errlen, "--jwt-key %s: %s", path, why);
        return rc;
    }
    for (size_t k = 0; k < count; k++)
        if (rc == XR_OK)
            rc = keys_add(l, &got[k]);
        else
            xr_jwt_key_clear(&got[k]);
    free(got);
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

/* A file of one key (PEM public key or HMAC secret; text is the file's,
 * taken over) into key. */
static int one_load(const char *path, char *text, size_t len, xr_jwt_key *key, char *err,
                    size_t errlen)
{
    if (strstr(text, "-----BEGIN")) {
        BIO *bio = BIO_new_mem_buf(text, (int)len);
        key->pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        free(text);
        char group[32] = "";
        size_t gl = 0;
        if (!key->pkey) {
            snprintf(err, errlen, "--jwt-key %s: not a PEM public key (a private key or "
                     "certificate is not taken: give its public key)", path);
            return XR_EINVAL;
        }
        switch (EVP_PKEY_get_base_id(key->pkey)) {
        case EVP_PKEY_RSA:
            if (EVP_PKEY_get_bits(key->pkey) < 2048) {
                snprintf(err, errlen, "--jwt-key %s: an RSA key of fewer than 2048 bits", path);
                return XR_EINVAL;
            }
            key->kind = XR_JWT_RSA;
            return XR_OK;
        case EVP_PKEY_ED25519:
            key->kind = XR_JWT_ED25519;
            return XR_OK;
        case EVP_PKEY_EC:
            EVP_PKEY_get_utf8_string_param(key->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof group, &gl);
            if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0) {
                key->kind = XR_JWT_P256;
                return XR_OK;
            }
            if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0) {
                key->kind = XR_JWT_P384;
                return XR_OK;
            }
            break;
        }
        snprintf(err, errlen, "--jwt-key %s: not an RSA, EC P-256/P-384 or Ed25519 key", path);
        return XR_EINVAL;
    }
    /* An HMAC secret: the file's bytes, one line end dropped. */
    if (len && text[len - 1] == '\n')
        len--;
    if (len && text[len - 1] == '\r')
        len--;
    if (len < 32) {
        OPENSSL_cleanse(text, len);
        free(text);
        snprintf(err, errlen, "--jwt-key %s: an HMAC secret must have at least 32 bytes "
                 "(RFC 7518 3.2)", path);
        return XR_EINVAL;
    }
    key->kind = XR_JWT_HMAC;
    key->secret = (unsigned char *)text;
    key->secret_len = len;
    return XR_OK;
}

/* One --jwt-key: "[KID=]FILE" of one key, or FILE of a JWK set; its keys
 * are added to l. */
static int key_load(const char *spec, key_list *l, char *err, size_t errlen)
{
    xr_jwt_key key = {0};
    const char *eq = strchr(spec, '=');
    const char *path = spec;
    if (eq && (size_t)(eq - spec) < sizeof key.kid && !memchr(spec, '/', (size_t)(eq - spec))) {
        memcpy(key.kid, spec, (size_t)(eq - spec));
        key.kid[eq - spec] = '\0';
        path = eq + 1;
    }
    size_t len;
    char *text = xr_file_read(path, &len);
    if (!text) {
        snprintf(err, errlen, "--jwt-key %s: %s", path, strerror(errno));
        return XR_EIO;
    }
    if (text[strspn(text, " \t\r\n")] == '{') {
        int rc = key.kid[0] ? XR_EINVAL : set_load(path, text, len, l, err, errlen);
        if (key.kid[0])
            snprintf(err, errlen, "--jwt-key %s: a JWK set names its keys itself (kid): "
                     "drop the KID= prefix", path);
        OPENSSL_cleanse(text, len);
        free(text);
        return rc;
    }
    int rc = one_load(path, text, len, &key, err, errlen);
    if (rc < 0) {
        xr_jwt_key_clear(&key);
        return rc;
    }
    rc = keys_add(l, &key);
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

int xr_auth_load(xr_server *srv, char *err, size_t errlen)
{
    if (!srv->opts.n_jwt_keys)
        return XR_OK;
    key_list l = {0};
    for (size_t k = 0; k < srv->opts.n_jwt_keys; k++) {
        int rc = key_load(srv->opts.jwt_keys[k], &l, err, errlen);
        if (rc < 0) {
            keys_free(l.v, l.n);
            return rc;
        }
    }
    /* Only a whole new set replaces the old one. */
    xr_auth_free(srv);
    srv->jwt_keys = l.v;
    srv->n_jwt_keys = l.n;
    return XR_OK;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* admit()'s outcome when the token is good but names another user. */
enum { OTHER_USER = 1 };

/* Verifies a token and gives the connection its user and end: XR_OK,
 * XR_EINVAL (a bad token), OTHER_USER or XR_ENOMEM. */
static int admit(xr_server *srv, xr_conn *c, const char *tok, size_t len, const char *same_user,
                 const char **why)
{
    xr_jwt_policy pol = {srv->opts.jwt_audience, srv->opts.jwt_issuer,
                         srv->opts.jwt_leeway_ms / 1000.0};
    xr_jwt_claims cl;
    double now = wall_now();
    if (xr_jwt_verify(tok, len, srv->jwt_keys, srv->n_jwt_keys, &pol, now, &cl, why) < 0)
        return XR_EINVAL;
    if (same_user && strcmp(same_user, cl.sub) != 0) {
        *why = "the fresh token names another user";
        return OTHER_USER;
    }
    uint64_t ends = 0;
    if (cl.has_exp) {
        /* The token's end on the monotonic clock, plus the grace. */
        double left = (cl.exp - now) * 1000.0 + srv->opts.jwt_grace_ms;
        uint64_t mono = xr_now_ms();
        ends = left <= 0 ? mono : mono + (uint64_t)left;
        if (!ends)
            ends = 1;
    }
    if (xr_conn_auth(c, cl.sub[0] ? cl.sub : NULL, cl.grants, cl.grants_len, ends) < 0) {
        *why = "out of memory";
        return XR_ENOMEM;
    }
    return XR_OK;
}

/* The token of an upgrade: "?token=" in the target, or "Authorization:
 * Bearer". */
static const char *token_of(const xr_http_request *req, size_t *len)
{
    const char *q = memchr(req->target, '?', req->target_len);
    const char *end = req->target + req->target_len;
    for (const char *p = q; p && p < end;) {
        p++;
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if (stop - p > 6 && memcmp(p, "token=", 6) == 0) {
            *len = (size_t)(stop - p - 6);
            return p + 6;
        }
        p = amp;
    }
    const xr_http_header *h = xr_http_find(req, "Authorization");
    if (h && h->value_len > 7 && strncasecmp(h->value, "Bearer ", 7) == 0) {
        *len = h->value_len - 7;
        return h->value + 7;
    }
    return NULL;
}

int xr_auth_authorize(xr_conn *c, const xr_http_request *req, const char **why, void *ud)
{
    xr_server *srv = ud;
    size_t len = 0;
    const char *tok = token_of(req, &len);
    int rc;
    if (!tok) {
        *why = "a token is required (query parameter token, or Authorization: Bearer)";
        rc = XR_EINVAL;
    } else {
        rc = admit(srv, c, tok, len, NULL, why);
    }
    if (rc == XR_OK)
        return 0;
    char peer[64] = "?";
    xr_conn_peer(c, peer, sizeof peer);
    XR_INFO(&srv->log, "upgrade from %s refused (401): %s", peer, *why);
    return rc == XR_ENOMEM ? 503 : 401;
}

/* PUT /xraptor/token {"token": "..."}: the connection's credentials go on
 * to the fresh token's end; it must name the same user. */
static int refresh(xr_request *r, void *ud)
{
    xr_server *srv = ud;
    xr_conn *c = xr_request_conn(r);
    const char *tok, *why = "payload must be {\"token\": \"...\"}";
    size_t len;
    if (!c)
        return XR_OK;
    if (xr_payload_str(r, "token", &tok, &len) < 0)
        return xr_proto_reply_error(r, "bad_request", why);
    const char *user = xr_conn_user(c);
    int rc = admit(srv, c, tok, len, user ? user : "", &why);
    if (rc != XR_OK) {
        XR_INFO(&srv->log, "token refresh refused: %s", why);
        return xr_proto_reply_error(r, rc == OTHER_USER ? "forbidden" : "unauthorized", why);
    }
    return xr_reply(r, "{\"message\": \"token refreshed\"}", 31);
}

int xr_auth_routes(xr_server *srv)
{
    return xr_route(srv, "/xraptor/token", XR_PUT, refresh, srv);
}
