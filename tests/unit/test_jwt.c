/* SPDX-License-Identifier: Apache-2.0 */
/* The token codec's edges (the integration test has python3-jwt's tokens):
 * base64url strictness, crit, time bounds at the leeway, aud arrays, the
 * subject's bytes, a key's own algorithms. Tokens are made here with
 * OpenSSL's HMAC. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/hmac.h>

#include "codec/jwt.h"
#include "util/glob.h"
#include "xraptor.h"
#include "tap.h"

static const char secret[] = "0123456789abcdef0123456789abcdef!";

static void b64(const void *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = a[v >> 18], out[o++] = a[(v >> 12) & 63], out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        out[o++] = a[p[i] >> 2], out[o++] = a[(p[i] & 3) << 4];
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 8 | p[i + 1];
        out[o++] = a[v >> 10], out[o++] = a[(v >> 4) & 63], out[o++] = a[(v & 15) << 2];
    }
    out[o] = '\0';
}

/* header.body.HMAC-SHA256(secret) */
static char *token(const char *header, const char *body)
{
    static char t[12288];
    char h[1024], b[8192];
    b64(header, strlen(header), h);
    b64(body, strlen(body), b);
    snprintf(t, sizeof t, "%s.%s", h, b);
    unsigned char mac[32];
    unsigned ml = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)t, strlen(t), mac, &ml);
    size_t n = strlen(t);
    t[n] = '.';
    b64(mac, ml, t + n + 1);
    return t;
}

static xr_jwt_key key = {"", XR_JWT_HMAC, (unsigned char *)secret, sizeof secret - 1, NULL};
static const char *HS = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static const char *check(const char *tok, const xr_jwt_policy *pol, double now, xr_jwt_claims *c)
{
    const char *why = NULL;
    int rc = xr_jwt_verify(tok, strlen(tok), &key, 1, pol, now, c, &why);
    return rc == XR_OK ? "ok" : why;
}

static void test_times_at_the_leeway(void)
{
    xr_jwt_policy pol = {NULL, NULL, 30};
    xr_jwt_claims c;
    const char *t = token(HS, "{\"sub\":\"ann\",\"exp\":1000,\"nbf\":900}");
    CHECK_STR(check(t, &pol, 1030, &c), "ok");
    CHECK_STR(c.sub, "ann");
    CHECK(c.has_exp && c.exp == 1000);
    CHECK_STR(check(t, &pol, 1030.5, &c), "token expired");
    CHECK_STR(check(t, &pol, 870, &c), "ok");
    CHECK_STR(check(t, &pol, 869.5, &c), "token not valid yet (nbf)");
    CHECK_STR(check(token(HS, "{\"exp\":\"soon\"}"), &pol, 0, &c), "exp is not a number");
    CHECK_STR(check(token(HS, "{}"), &pol, 1e12, &c), "ok");     /* no exp: no end */
    CHECK(!c.has_exp && c.sub[0] == '\0');
}

static void test_audience_and_issuer(void)
{
    xr_jwt_policy pol = {"chat", "me", 0};
    xr_jwt_claims c;
    CHECK_STR(check(token(HS, "{\"aud\":[\"x\",\"chat\"],\"iss\":\"me\"}"), &pol, 0, &c), "ok");
    CHECK_STR(check(token(HS, "{\"aud\":\"chat\",\"iss\":\"me\"}"), &pol, 0, &c), "ok");
    CHECK_STR(check(token(HS, "{\"aud\":[\"x\",\"chatroom\"],\"iss\":\"me\"}"), &pol, 0, &c),
              "wrong audience");
    CHECK_STR(check(token(HS, "{\"aud\":[1,{\"chat\":1}],\"iss\":\"me\"}"), &pol, 0, &c),
              "wrong audience");
    CHECK_STR(check(token(HS, "{\"iss\":\"me\"}"), &pol, 0, &c), "wrong audience");
    CHECK_STR(check(token(HS, "{\"aud\":\"chat\",\"iss\":\"mee\"}"), &pol, 0, &c), "wrong issuer");
    CHECK_STR(check(token(HS, "{\"aud\":\"chat\"}"), &pol, 0, &c), "wrong issuer");
}

static void test_form_and_header(void)
{
    xr_jwt_policy pol = {NULL, NULL, 0};
    xr_jwt_claims c;
    char t[8192];
    snprintf(t, sizeof t, "%s", token(HS, "{\"sub\":\"a\"}"));
    CHECK_STR(check(t, &pol, 0, &c), "ok");
    /* one bit of the signature */
    char *sig = strrchr(t, '.') + 1;
    sig[3] = sig[3] == 'A' ? 'B' : 'A';
    CHECK_STR(check(t, &pol, 0, &c), "bad signature");
    /* padding, other alphabets, stray bits */
    snprintf(t, sizeof t, "%s=", token(HS, "{\"sub\":\"a\"}"));
    CHECK_STR(check(t, &pol, 0, &c), "malformed base64url");
    snprintf(t, sizeof t, "%s", token(HS, "{\"sub\":\"a\"}"));
    t[2] = '+';
    CHECK_STR(check(t, &pol, 0, &c), "malformed base64url");
    CHECK_STR(check("eyJ.eyJ9.x", &pol, 0, &c), "malformed base64url");  /* 'J' leaves bits */
    CHECK_STR(check("a.b", &pol, 0, &c), "not a signed token (three base64url parts)");
    CHECK_STR(check("a.b.c.d", &pol, 0, &c), "not a signed token (three base64url parts)");
    CHECK_STR(check(token("{\"alg\":\"none\"}", "{}"), &pol, 0, &c), "algorithm not accepted");
    CHECK_STR(check(token("{\"alg\":\"HS256\",\"crit\":[\"b64\"]}", "{}"), &pol, 0, &c),
              "header has crit extensions");
    CHECK_STR(check(token("{\"alg\":\"RS256\"}", "{}"), &pol, 0, &c),
              "algorithm not allowed for the key");
    CHECK_STR(check(token("{\"alg\":\"HS256\",\"kid\":\"k2\"}", "{}"), &pol, 0, &c),
              "unknown kid");
    CHECK_STR(check(token("[1]", "{}"), &pol, 0, &c), "header is not a JSON object");
    CHECK_STR(check(token(HS, "[1]"), &pol, 0, &c), "claims are not a JSON object");
    char big[XR_JWT_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_STR(check(big, &pol, 0, &c), "token too long");
}

static void test_subject_bytes(void)
{
    xr_jwt_policy pol = {NULL, NULL, 0};
    xr_jwt_claims c;
    CHECK_STR(check(token(HS, "{\"sub\":\"a\\nb\"}"), &pol, 0, &c), "sub holds a control character");
    CHECK_STR(check(token(HS, "{\"sub\":\"\"}"), &pol, 0, &c), "sub is empty or too long");
    CHECK_STR(check(token(HS, "{\"sub\":7}"), &pol, 0, &c), "sub is not a string");
    char body[600];
    snprintf(body, sizeof body, "{\"sub\":\"%0257d\"}", 0);
    CHECK_STR(check(token(HS, body), &pol, 0, &c), "sub is empty or too long");
    snprintf(body, sizeof body, "{\"sub\":\"%0256d\"}", 0);
    CHECK_STR(check(token(HS, body), &pol, 0, &c), "ok");
    CHECK_STR(check(token(HS, "{\"sub\":\"caf\\u00e9\"}"), &pol, 0, &c), "ok");
    CHECK_STR(c.sub, "caf\xc3\xa9");
}

static int glob(const char *pat, const char *name)
{
    return xr_glob_match(pat, strlen(pat), name, strlen(name));
}

static void test_patterns(void)
{
    CHECK(glob("chat.a", "chat.a"));
    CHECK(!glob("chat.a", "chat.ab"));
    CHECK(!glob("chat.a", "chat.b"));
    CHECK(!glob("chat.a", "chat."));
    CHECK(glob("chat.*", "chat.a"));
    CHECK(glob("chat.*", "chat."));
    CHECK(!glob("chat.*", "chat"));
    CHECK(!glob("chat.*", "xchat.a"));
    CHECK(glob("*", ""));
    CHECK(glob("*", "anything/at.all"));
    CHECK(glob("*.log", "a.b.log"));
    CHECK(!glob("*.log", "a.log.x"));
    CHECK(glob("a*b*c", "aXbYbZc"));
    CHECK(!glob("a*b*c", "aXbYbZ"));
    CHECK(glob("a**", "a"));
    CHECK(!glob("", "a"));
    CHECK(glob("", ""));
    /* a star retried at every byte stays linear-ish: 4 KiB of near misses */
    char name[4097];
    memset(name, 'a', 4096);
    name[4096] = '\0';
    CHECK(!glob("*a*a*a*a*b", name));
}

static void test_grants(void)
{
    xr_jwt_policy pol = {NULL, NULL, 0};
    xr_jwt_claims c;
    CHECK_STR(check(token(HS, "{\"sub\":\"u\"}"), &pol, 0, &c), "ok");
    CHECK_EQ(c.grants_len, 0);
    CHECK_STR(check(token(HS, "{\"xraptor\":{\"rooms\":[\"chat.*\",\"x\"],"
                              "\"publish\":[]}}"), &pol, 0, &c), "ok");
    c.grants[c.grants_len] = '\0';
    /* rooms restricted to the two patterns, publish to none, channels free */
    CHECK(xr_jwt_grants_allow(c.grants, XR_GRANT_ROOM, "chat.b", 6));
    CHECK(xr_jwt_grants_allow(c.grants, XR_GRANT_ROOM, "x", 1));
    CHECK(!xr_jwt_grants_allow(c.grants, XR_GRANT_ROOM, "y", 1));
    CHECK(!xr_jwt_grants_allow(c.grants, XR_GRANT_PUBLISH, "x", 1));
    CHECK(!xr_jwt_grants_allow(c.grants, XR_GRANT_PUBLISH, "", 0) ||
          !xr_jwt_grants_allow(c.grants, XR_GRANT_PUBLISH, "chat.b", 6));
    CHECK(xr_jwt_grants_allow(c.grants, XR_GRANT_CHANNEL, "any", 3));
    CHECK(xr_jwt_grants_allow(NULL, XR_GRANT_PUBLISH, "any", 3));
    CHECK_STR(check(token(HS, "{\"xraptor\":[]}"), &pol, 0, &c),
              "the xraptor claim is not an object");
    CHECK_STR(check(token(HS, "{\"xraptor\":{\"rooms\":\"a\"}}"), &pol, 0, &c),
              "an xraptor grant list is not an array of at most 64 strings");
    CHECK_STR(check(token(HS, "{\"xraptor\":{\"rooms\":[\"a\\u0000b\"]}}"), &pol, 0, &c),
              "an xraptor grant pattern holds a NUL");
    /* 3 x 64 patterns of 20 bytes: past the packed size */
    char body[8192], *p = body;
    p += sprintf(p, "{\"xraptor\":{");
    for (int l = 0; l < 3; l++) {
        p += sprintf(p, "%s\"%s\":[", l ? "," : "", l == 0 ? "rooms" : l == 1 ? "channels" : "publish");
        for (int k = 0; k < 64; k++)
            p += sprintf(p, "%s\"%020d\"", k ? "," : "", k);
        p += sprintf(p, "]");
    }
    sprintf(p, "}}");
    CHECK_STR(check(token(HS, body), &pol, 0, &c), "the xraptor claim's patterns are too long");
}

int main(void)
{
    RUN(test_times_at_the_leeway);
    RUN(test_audience_and_issuer);
    RUN(test_form_and_header);
    RUN(test_subject_bytes);
    RUN(test_patterns);
    RUN(test_grants);
    return tap_done();
}
