/* SPDX-License-Identifier: Apache-2.0 */
#include "codec/jwt.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>

#include "codec/request.h"
#include "util/glob.h"

static int b64digit(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
         : c >= '0' && c <= '9' ? c - '0' + 52 : c == '-' ? 62 : c == '_' ? 63 : -1;
}

long xr_b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1 || n / 4 * 3 + 3 > cap)
        return XR_EINVAL;
    size_t o = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < n; i++) {
        int d = b64digit((unsigned char)s[i]);
        if (d < 0)
            return XR_EINVAL;
        acc = acc << 6 | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return acc ? XR_EINVAL : (long)o;
}

static const struct {
    const char *name;
    xr_jwt_kind kind;
    const char *md;              /* NULL: EdDSA hashes inside */
    size_t ec_half;              /* ES*: bytes of r and of s */
} algs[] = {
    {"HS256", XR_JWT_HMAC, "SHA256", 0}, {"HS384", XR_JWT_HMAC, "SHA384", 0},
    {"HS512", XR_JWT_HMAC, "SHA512", 0}, {"RS256", XR_JWT_RSA, "SHA256", 0},
    {"RS384", XR_JWT_RSA, "SHA384", 0},  {"RS512", XR_JWT_RSA, "SHA512", 0},
    {"ES256", XR_JWT_P256, "SHA256", 32}, {"ES384", XR_JWT_P384, "SHA384", 48},
    {"EdDSA", XR_JWT_ED25519, NULL, 0},
};

const char *xr_jwt_kind_algs(xr_jwt_kind kind)
{
    switch (kind) {
    case XR_JWT_HMAC: return "HS256, HS384, HS512";
    case XR_JWT_RSA: return "RS256, RS384, RS512";
    case XR_JWT_P256: return "ES256";
    case XR_JWT_P384: return "ES384";
    default: return "EdDSA";
    }
}

/* The signature over input by key with alg k: 1 valid, 0 not. */
static int sig_ok(const xr_jwt_key *key, size_t k, const char *input, size_t n,
                  const unsigned char *sig, size_t slen)
{
    if (key->kind == XR_JWT_HMAC) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned mlen = 0;
        const EVP_MD *md = EVP_get_digestbyname(algs[k].md);
        if (!md || !HMAC(md, key->secret, (int)key->secret_len, (const unsigned char *)input, n,
                         mac, &mlen))
            return 0;
        /* Constant time: how much of a forged MAC matched must not show. */
        return slen == mlen && CRYPTO_memcmp(mac, sig, mlen) == 0;
    }
    unsigned char der[160];
    const unsigned char *s = sig;
    size_t sl = slen;
    if (algs[k].ec_half) {
        /* JWS carries R || S; OpenSSL verifies DER. */
        if (slen != 2 * algs[k].ec_half)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)algs[k].ec_half, NULL);
        BIGNUM *t = BN_bin2bn(sig + algs[k].ec_half, (int)algs[k].ec_half, NULL);
        unsigned char *p = der;
        int dl = 0;
        if (es && r && t && ECDSA_SIG_set0(es, r, t) == 1) {
            r = t = NULL;   /* es owns them */
            if (i2d_ECDSA_SIG(es, NULL) <= (int)sizeof der)
                dl = i2d_ECDSA_SIG(es, &p);
        }
        BN_free(r);
        BN_free(t);
        ECDSA_SIG_free(es);
        if (dl <= 0)
            return 0;
        s = der;
        sl = (size_t)dl;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const EVP_MD *md = algs[k].md ? EVP_get_digestbyname(algs[k].md) : NULL;
    int ok = ctx && (!algs[k].md || md) &&
             EVP_DigestVerifyInit(ctx, NULL, md, NULL, key->pkey) == 1 &&
             EVP_DigestVerify(ctx, s, sl, (const unsigned char *)input, n) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* A number member: 1 and its value, 0 when missing, XR_ETYPE otherwise. */
static int num_member(xr_json_fields *f, const char *name, double *v)
{
    int st;
    xr_json_member *m = xr_json_fields_get(f, name, strlen(name), &st);
    if (!m)
        return 0;
    return xr_json_member_double(f, m, v) < 0 ? XR_ETYPE : 1;
}

/* "aud" names want: a string equal to it, or an array holding it. */
static int aud_has(xr_json_fields *f, const char *want)
{
    int st;
    xr_json_member *m = xr_json_fields_get(f, "aud", 3, &st);
    if (!m)
        return 0;
    const char *s;
    size_t n, wl = strlen(want);
    if (m->type == XR_JSON_STRING)
        return xr_json_member_str(f, m, &s, &n) == XR_OK && n == wl && memcmp(s, want, n) == 0;
    if (m->type != XR_JSON_ARRAY)
        return 0;
    xr_buf store = {0};
    size_t offs[32], lens[32], count = 0;
    int found = 0;
    if (xr_json_array_strings(f->json + m->raw_off, m->raw_len, &store, offs, lens, 32,
                              &count) == XR_OK)
        for (size_t k = 0; k < count && !found; k++)
            found = lens[k] == wl && memcmp(store.p + offs[k], want, wl) == 0;
    xr_buf_free(&store);
    return found;
}

/*
 * The "xraptor" claim's lists packed into claims->grants: XR_OK, or
 * XR_EINVAL with *why.
 */
static int grants_pack(xr_json_fields *body, xr_jwt_claims *claims, const char **why)
{
    static const struct { const char *name; char kind; } lists[] = {
        {"channels", XR_GRANT_CHANNEL}, {"rooms", XR_GRANT_ROOM}, {"publish", XR_GRANT_PUBLISH},
    };
    int st, rc = XR_OK;
    xr_json_member *m = xr_json_fields_get(body, "xraptor", 7, &st);
    if (!m)
        return XR_OK;
    if (m->type != XR_JSON_OBJECT) {
        *why = "the xraptor claim is not an object";
        return XR_EINVAL;
    }
    xr_json_fields x = {0};
    xr_buf store = {0};
    xr_json_fields_reset(&x, body->json + m->raw_off, m->raw_len);
    size_t used = 0;
    for (size_t l = 0; l < sizeof lists / sizeof lists[0] && rc == XR_OK; l++) {
        xr_json_member *lm = xr_json_fields_get(&x, lists[l].name, strlen(lists[l].name), &st);
        if (st < 0) {
            *why = "the xraptor claim is not an object";
            rc = XR_EINVAL;
            break;
        }
        if (!lm)
            continue;
        size_t offs[XR_JWT_MAX_PATTERNS], lens[XR_JWT_MAX_PATTERNS], count = 0;
        store.len = 0;
        if (lm->type != XR_JSON_ARRAY ||
            xr_json_array_strings(x.json + lm->raw_off, lm->raw_len, &store, offs, lens,
                                  XR_JWT_MAX_PATTERNS, &count) != XR_OK) {
            *why = "an xraptor grant list is not an array of at most 64 strings";
            rc = XR_EINVAL;
            break;
        }
        /* An empty list still says "this kind is restricted". */
        if (!count)
            offs[0] = lens[0] = 0, count = 1;
        for (size_t k = 0; k < count; k++) {
            const char *pat = store.p ? store.p + offs[k] : "";
            if (memchr(pat, '\0', lens[k])) {
                *why = "an xraptor grant pattern holds a NUL";
                rc = XR_EINVAL;
                break;
            }
            /* kind, pattern, NUL; and room for the caller's final 0 */
            if (used + lens[k] + 3 > sizeof claims->grants) {
                *why = "the xraptor claim's patterns are too long";
                rc = XR_EINVAL;
                break;
            }
            claims->grants[used++] = lists[l].kind;
            memcpy(claims->grants + used, pat, lens[k]);
            used += lens[k];
            claims->grants[used++] = '\0';
        }
    }
    xr_buf_free(&store);
    xr_json_fields_free(&x);
    if (rc == XR_OK)
        claims->grants_len = used;
    return rc;
}

int xr_jwt_grants_allow(const char *grants, char kind, const char *name, size_t len)
{
    int restricted = 0;
    for (const char *g = grants; g && *g; g += strlen(g + 1) + 2) {
        if (*g != kind)
            continue;
        restricted = 1;
        if (xr_glob_match(g + 1, strlen(g + 1), name, len))
            return 1;
    }
    return !restricted;
}

#define FAIL(text) do { *why = (text); goto out; } while (0)

int xr_jwt_verify(const char *token, size_t len, const xr_jwt_key *keys, size_t n_keys,
                  const xr_jwt_policy *policy, double now, xr_jwt_claims *claims,
                  const char **why)
{
    int rc = XR_EINVAL;
    xr_json_fields head = {0}, body = {0};
    unsigned char *buf = NULL;
    claims->sub[0] = '\0';
    claims->has_exp = 0;
    claims->exp = 0;
    claims->grants_len = 0;
    if (len > XR_JWT_MAX) {
        *why = "token too long";
        return XR_EINVAL;
    }
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) {
        *why = "not a signed token (three base64url parts)";
        return XR_EINVAL;
    }
    /* Decoded parts are no longer than the token. */
    buf = malloc(3 * (len + 4));
    if (!buf) {
        *why = "out of memory";
        return XR_ENOMEM;
    }
    unsigned char *hb = buf, *pb = buf + len + 4, *sb = buf + 2 * (len + 4);
    long hl = xr_b64url_decode(token, (size_t)(d1 - token), hb, len + 4);
    long pl = xr_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), pb, len + 4);
    long sl = xr_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), sb, len + 4);
    if (hl < 0 || pl < 0 || sl < 0)
        FAIL("malformed base64url");
    xr_json_fields_reset(&head, (const char *)hb, (size_t)hl);
    xr_json_fields_reset(&body, (const char *)pb, (size_t)pl);
    const char *alg, *kid = NULL, *s;
    size_t alen, kidlen = 0, n;
    int st;
    if (xr_json_fields_get(&head, "alg", 3, &st), st < 0)
        FAIL("header is not a JSON object");
    if (xr_json_fields_str(&head, "alg", &alg, &alen) != 1)
        FAIL("header has no alg");
    if (xr_json_fields_str(&head, "kid", &kid, &kidlen) < 0)
        FAIL("kid is not a string");
    /* A critical extension we cannot know must not be ignored (7515 4.1.11). */
    if (xr_json_fields_get(&head, "crit", 4, &st))
        FAIL("header has crit extensions");
    size_t k = 0;
    while (k < sizeof algs / sizeof algs[0] &&
           !(strlen(algs[k].name) == alen && memcmp(algs[k].name, alg, alen) == 0))
        k++;
    if (k == sizeof algs / sizeof algs[0])
        FAIL("algorithm not accepted");
    int kid_found = 0, candidates = 0, good = 0;
    for (size_t i = 0; i < n_keys && !good; i++) {
        if (kid && !(strlen(keys[i].kid) == kidlen && memcmp(keys[i].kid, kid, kidlen) == 0))
            continue;
        kid_found = 1;
        /* A key verifies its own family's algorithms only. */
        if (keys[i].kind != algs[k].kind)
            continue;
        candidates++;
        good = sig_ok(&keys[i], k, token, (size_t)(d2 - token), sb, (size_t)sl);
    }
    if (!good) {
        if (kid && !kid_found)
            FAIL("unknown kid");
        if (!candidates)
            FAIL("algorithm not allowed for the key");
        FAIL("bad signature");
    }
    if (xr_json_fields_get(&body, "exp", 3, &st), st < 0)
        FAIL("claims are not a JSON object");
    double t;
    if ((st = num_member(&body, "exp", &t)) < 0)
        FAIL("exp is not a number");
    if (st == 1) {
        if (now > t + policy->leeway)
            FAIL("token expired");
        claims->has_exp = 1;
        claims->exp = t;
    }
    if ((st = num_member(&body, "nbf", &t)) < 0)
        FAIL("nbf is not a number");
    if (st == 1 && now + policy->leeway < t)
        FAIL("token not valid yet (nbf)");
    if (policy->audience && policy->audience[0] && !aud_has(&body, policy->audience))
        FAIL("wrong audience");
    if (policy->issuer && policy->issuer[0] &&
        !(xr_json_fields_str(&body, "iss", &s, &n) == 1 && n == strlen(policy->issuer) &&
          memcmp(s, policy->issuer, n) == 0))
        FAIL("wrong issuer");
    if ((st = xr_json_fields_str(&body, "sub", &s, &n)) < 0)
        FAIL("sub is not a string");
    if (st == 1) {
        if (n == 0 || n > XR_JWT_MAX_SUB)
            FAIL("sub is empty or too long");
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                FAIL("sub holds a control character");
        memcpy(claims->sub, s, n);
        claims->sub[n] = '\0';
    }
    if (grants_pack(&body, claims, why) < 0)
        goto out;
    rc = XR_OK;
out:
    xr_json_fields_free(&head);
    xr_json_fields_free(&body);
    free(buf);
    return rc;
}
