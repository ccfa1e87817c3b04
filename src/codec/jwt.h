/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON Web Tokens (RFC 7519) in JWS compact form (RFC 7515), verified:
 * HS256/384/512 with a shared secret, RS256/384/512 with an RSA key,
 * ES256 and ES384 with P-256 and P-384 keys, EdDSA with Ed25519. Every
 * key verifies only its own family's algorithms, so "none" and an HS
 * token signed with an RSA public key's text are refused by construction.
 * The cryptography is OpenSSL's; the JSON is our strict reader. Pure: the
 * caller passes the keys, the policy and the time.
 */
#ifndef XR_CODEC_JWT_H
#define XR_CODEC_JWT_H

#include <stddef.h>

#include <openssl/evp.h>

#define XR_JWT_MAX 8192          /* longest token taken */
#define XR_JWT_MAX_SUB 256       /* longest subject (the connection's user) */
#define XR_JWT_MAX_GRANTS 4096   /* bytes of the "xraptor" claim's patterns, packed */
#define XR_JWT_MAX_PATTERNS 64   /* patterns in one list of that claim */

typedef enum { XR_JWT_HMAC, XR_JWT_RSA, XR_JWT_P256, XR_JWT_P384, XR_JWT_ED25519 } xr_jwt_kind;

typedef struct xr_jwt_key {
    char kid[64];                /* "" when the key has no id */
    xr_jwt_kind kind;
    unsigned char *secret;       /* HMAC */
    size_t secret_len;
    EVP_PKEY *pkey;              /* the others */
} xr_jwt_key;

typedef struct xr_jwt_policy {
    const char *audience;        /* required in "aud" when set */
    const char *issuer;          /* required as "iss" when set */
    double leeway;               /* seconds allowed either side of exp and nbf */
} xr_jwt_policy;

typedef struct xr_jwt_claims {
    char sub[XR_JWT_MAX_SUB + 1];    /* "" when the token names none */
    int has_exp;
    double exp;                  /* Unix seconds */
    /* The "xraptor" claim's lists, packed as grants (below); grants_len 0
     * when the token restricts nothing. */
    char grants[XR_JWT_MAX_GRANTS];
    size_t grants_len;
} xr_jwt_claims;

/*
 * Grants: what a token lets its connection name, from its claim
 *   "xraptor": {"channels": [...], "rooms": [...], "publish": [...]}
 * each list a set of patterns (util/glob.h). Packed as records, each a
 * kind byte (XR_GRANT_CHANNEL, _ROOM or _PUBLISH), the pattern and a NUL;
 * a list given empty packs one record with an empty pattern, so it is
 * present and matches no name. A list that is absent restricts nothing.
 * The packed text ends at a kind byte of 0 (the caller appends it).
 */
/* 1 when grants (NULL or packed as above, ending in a 0 kind) let name be
 * used as kind, else 0. */
int xr_jwt_grants_allow(const char *grants, char kind, const char *name, size_t len);

/*
 * Verifies token (len bytes) with keys at now (Unix seconds): XR_OK and
 * *claims, or XR_EINVAL with *why, a static text that never quotes the
 * token.
 */
int xr_jwt_verify(const char *token, size_t len, const xr_jwt_key *keys, size_t n_keys,
                  const xr_jwt_policy *policy, double now, xr_jwt_claims *claims,
                  const char **why);

/* base64url without padding (RFC 7515 2), strictly: no '=', no other
 * alphabet, no stray bits in the last character. The decoded length (at
 * most cap bytes written), or XR_EINVAL. */
long xr_b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap);

/*
 * A JSON Web Key Set (RFC 7517; RFC 7518 6, RFC 8037) read as verification
 * keys: "RSA" (n of 2048 bits or more, e), "EC" (P-256 or P-384, x and y,
 * on the curve), "OKP" (Ed25519, x) and "oct" (k, 32 bytes or more). A
 * key whose "use" is not "sig" is left out; one with private parts ("d"),
 * an "alg" outside its family, an unknown kty or curve is an error, as is
 * a set without a usable key. XR_OK with *keys (free each with
 * xr_jwt_key_clear, then the array) and *n, or XR_EINVAL / XR_ENOMEM with
 * a message naming the key (its position from 1) in err.
 */
int xr_jwks_parse(const char *json, size_t len, xr_jwt_key **keys, size_t *n, char *err,
                  size_t errlen);
/* Releases what one key holds (the secret wiped). */
void xr_jwt_key_clear(xr_jwt_key *key);

/* The algorithms a kind of key verifies, for messages: "HS256, HS384, HS512". */
const char *xr_jwt_kind_algs(xr_jwt_kind kind);

#endif
