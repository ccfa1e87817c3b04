/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON Web Key Sets as --jwt-key files: what identity providers publish
 * (Auth0, Keycloak, Google) can be saved and used as it is. OpenSSL builds
 * the keys from their parameters; the JSON is our strict reader.
 */
#include "codec/jwt.h"

#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/param_build.h>

#include "codec/request.h"

#define JWKS_MAX_KEYS 64
#define JWK_MAX_BYTES 1024       /* an RSA modulus of 8192 bits */

void xr_jwt_key_clear(xr_jwt_key *key)
{
    if (key->secret)
        OPENSSL_cleanse(key->secret, key->secret_len);
    free(key->secret);
    EVP_PKEY_free(key->pkey);
    memset(key, 0, sizeof *key);
}

/* A base64url member decoded into out (at most cap bytes): its length,
 * or XR_EINVAL. */
static long jwk_bytes(xr_json_fields *f, const char *name, unsigned char *out, size_t cap)
{
    unsigned char tmp[JWK_MAX_BYTES + 4];
    const char *s;
    size_t n;
    if (xr_json_fields_str(f, name, &s, &n) != 1)
        return XR_EINVAL;
    /* the decoder asks for room for whole groups of three */
    long got = xr_b64url_decode(s, n, tmp, sizeof tmp);
    if (got <= 0 || (size_t)got > cap)
        got = XR_EINVAL;
    else
        memcpy(out, tmp, (size_t)got);
    OPENSSL_cleanse(tmp, sizeof tmp);
    return got;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = bld ? OSSL_PARAM_BLD_to_param(bld) : NULL;
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    EVP_PKEY *pkey = NULL;
    if (ctx && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static const char *rsa_key(xr_json_fields *f, xr_jwt_key *key)
{
    unsigned char n[JWK_MAX_BYTES], e[16];
    long nl = jwk_bytes(f, "n", n, sizeof n), el = jwk_bytes(f, "e", e, sizeof e);
    if (nl < 0 || el < 0)
        return "an RSA key needs n and e in base64url";
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1)
        key->pkey = from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    if (!key->pkey)
        return "an RSA key OpenSSL does not take";
    if (EVP_PKEY_get_bits(key->pkey) < 2048)
        return "an RSA key of fewer than 2048 bits";
    key->kind = XR_JWT_RSA;
    return NULL;
}

static const char *ec_key(xr_json_fields *f, xr_jwt_key *key)
{
    const char *crv;
    size_t cl;
    if (xr_json_fields_str(f, "crv", &crv, &cl) != 1)
        return "an EC key needs crv";
    size_t half;
    const char *group;
    if (cl == 5 && memcmp(crv, "P-256", 5) == 0)
        half = 32, group = "P-256", key->kind = XR_JWT_P256;
    else if (cl == 5 && memcmp(crv, "P-384", 5) == 0)
        half = 48, group = "P-384", key->kind = XR_JWT_P384;
    else
        return "an EC curve other than P-256 and P-384";
    /* The point uncompressed: 04 || x || y. RFC 7518 wants each coordinate
     * at the curve's full size, but python3-jwt before 2.8 (Debian 12's)
     * writes them as integers without leading zero bytes, one key in about
     * 128: a shorter coordinate is the same number, so it is padded back. */
    unsigned char pt[1 + 2 * 48], c[48];
    pt[0] = 4;
    for (int i = 0; i < 2; i++) {
        long got = jwk_bytes(f, i ? "y" : "x", c, half);
        if (got < 0)
            return "an EC key's x and y must be base64url of at most the curve's size";
        unsigned char *at = pt + 1 + (size_t)i * half;
        memset(at, 0, half - (size_t)got);
        memcpy(at + half - (size_t)got, c, (size_t)got);
    }
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * half) == 1)
        key->pkey = from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    /* A point off the curve would make verifying meaningless. */
    EVP_PKEY_CTX *ctx = key->pkey ? EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL) : NULL;
    int on_curve = ctx && EVP_PKEY_public_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);
    return on_curve ? NULL : "an EC key whose point is not on its curve";
}

static const char *okp_key(xr_json_fields *f, xr_jwt_key *key)
{
    const char *crv;
    size_t cl;
    unsigned char x[32];
    if (xr_json_fields_str(f, "crv", &crv, &cl) != 1 || cl != 7 || memcmp(crv, "Ed25519", 7) != 0)
        return "an OKP key other than Ed25519";
    if (jwk_bytes(f, "x", x, sizeof x) != 32)
        return "an Ed25519 key's x must be 32 bytes of base64url";
    key->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, sizeof x);
    key->kind = XR_JWT_ED25519;
    return key->pkey ? NULL : "an Ed25519 key OpenSSL does not take";
}

static const char *oct_key(xr_json_fields *f, xr_jwt_key *key)
{
    unsigned char k[JWK_MAX_BYTES];
    long kl = jwk_bytes(f, "k", k, sizeof k);
    if (kl < 32) {
        OPENSSL_cleanse(k, sizeof k);
        return kl < 0 ? "an oct key needs k in base64url"
                      : "an HMAC secret must have at least 32 bytes (RFC 7518 3.2)";
    }
    key->secret = malloc((size_t)kl);
    if (key->secret)
        memcpy(key->secret, k, (size_t)kl);
    OPENSSL_cleanse(k, sizeof k);
    key->secret_len = (size_t)kl;
    key->kind = XR_JWT_HMAC;
    return key->secret ? NULL : "out of memory";
}

/* One JWK into key: NULL, or why not; *skip when it is not for signatures. */
static const char *one_key(xr_json_fields *f, xr_jwt_key *key, int *skip)
{
    static const struct {
        const char *kty;
        const char *(*make)(xr_json_fields *, xr_jwt_key *);
    } kinds[] = {{"RSA", rsa_key}, {"EC", ec_key}, {"OKP", okp_key}, {"oct", oct_key}};
    const char *s;
    size_t n;
    int st;
    *skip = 0;
    if (xr_json_fields_get(f, "kty", 3, &st), st < 0)
        return "not a JSON object";
    if (xr_json_fields_str(f, "kty", &s, &n) != 1)
        return "no kty";
    size_t k = 0;
    while (k < sizeof kinds / sizeof kinds[0] &&
           !(strlen(kinds[k].kty) == n && memcmp(kinds[k].kty, s, n) == 0))
        k++;
    if (k == sizeof kinds / sizeof kinds[0])
        return "a kty other than RSA, EC, OKP and oct";
    if ((st = xr_json_fields_str(f, "use", &s, &n)) < 0)
        return "use is not a string";
    if (st == 1 && !(n == 3 && memcmp(s, "sig", 3) == 0)) {
        *skip = 1;
        return NULL;
    }
    if (k != 3 && xr_json_fields_get(f, "d", 1, &st))
        return "a private key (d): give the public keys only";
    if ((st = xr_json_fields_str(f, "kid", &s, &n)) < 0 || (st == 1 && n >= sizeof key->kid))
        return "kid is not a string of at most 63 bytes";
    if (st == 1) {
        memcpy(key->kid, s, n);
        key->kid[n] = '\0';
    }
    const char *why = kinds[k].make(f, key);
    if (why)
        return why;
    /* "alg", when given, must be one this key's family verifies. */
    if ((st = xr_json_fields_str(f, "alg", &s, &n)) < 0)
        return "alg is not a string";
    if (st == 1) {
        int found = 0;
        for (const char *at = xr_jwt_kind_algs(key->kind); at && !found;) {
            const char *comma = strchr(at, ',');
            size_t l = comma ? (size_t)(comma - at) : strlen(at);
            found = l == n && memcmp(at, s, n) == 0;
            at = comma ? comma + 2 : NULL;
        }
        if (!found)
            return "an alg its kty does not verify";
    }
    return NULL;
}

int xr_jwks_parse(const char *json, size_t len, xr_jwt_key **keys, size_t *n, char *err,
                  size_t errlen)
{
    xr_json_fields top = {0}, f = {0};
    xr_buf scratch = {0};
    size_t offs[JWKS_MAX_KEYS], lens[JWKS_MAX_KEYS], count = 0, got = 0;
    int st, rc = XR_EINVAL;
    xr_jwt_key *out = NULL;
    *keys = NULL;
    *n = 0;
    xr_json_fields_reset(&top, json, len);
    xr_json_member *m = xr_json_fields_get(&top, "keys", 4, &st);
    if (st < 0 || !m || m->type != XR_JSON_ARRAY) {
        snprintf(err, errlen, "not a JWK set (an object with a \"keys\" array)");
        goto out;
    }
    int ar = xr_json_array_items(json + m->raw_off, m->raw_len, &scratch, offs, lens,
                                 JWKS_MAX_KEYS, &count);
    if (ar < 0) {
        snprintf(err, errlen, ar == XR_ELIMIT ? "more than 64 keys" : "out of memory");
        rc = ar == XR_ELIMIT ? XR_EINVAL : XR_ENOMEM;
        goto out;
    }
    if (count && !(out = calloc(count, sizeof *out))) {
        snprintf(err, errlen, "out of memory");
        rc = XR_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < count; k++) {
        int skip;
        xr_json_fields_reset(&f, json + m->raw_off + offs[k], lens[k]);
        const char *why = one_key(&f, &out[got], &skip);
        if (why) {
            snprintf(err, errlen, "key %zu: %s", k + 1, why);
            xr_jwt_key_clear(&out[got]);
            goto out;
        }
        if (skip)
            xr_jwt_key_clear(&out[got]);
        else
            got++;
    }
    if (!got) {
        snprintf(err, errlen, "no key for signatures in the set");
        goto out;
    }
    *keys = out;
    *n = got;
    out = NULL;
    rc = XR_OK;
out:
    for (size_t k = 0; out && k < got; k++)
        xr_jwt_key_clear(&out[k]);
    free(out);
    xr_json_fields_free(&top);
    xr_json_fields_free(&f);
    xr_buf_free(&scratch);
    return rc;
}
