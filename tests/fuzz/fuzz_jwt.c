/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the token verifier (src/codec/jwt.c) on any bytes, with an
 * HMAC key whose valid tokens seed the corpus. What it accepts must carry
 * a signature that one changed byte breaks, and a subject within the
 * policy; what it refuses, it says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/jwt.h"
#include "xraptor.h"

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

static const char secret[] = "fuzz-secret-fuzz-secret-fuzz-secret!";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    xr_jwt_key keys[2] = {{"k1", XR_JWT_HMAC, (unsigned char *)secret, sizeof secret - 1, NULL},
                          {"", XR_JWT_HMAC, (unsigned char *)secret, 32, NULL}};
    /* The first byte picks the policy and the time. */
    xr_jwt_policy pol = {data[0] & 1 ? "chat" : NULL, data[0] & 2 ? "me" : NULL,
                         (double)(data[0] >> 4)};
    double now = data[0] & 4 ? 1.7e9 : 0;
    const char *tok = (const char *)data + 1;
    size_t len = size - 1;
    xr_jwt_claims c;
    const char *why = NULL;
    int rc = xr_jwt_verify(tok, len, keys, 2, &pol, now, &c, &why);
    ASSERT(rc == XR_OK || rc == XR_EINVAL || rc == XR_ENOMEM);
    if (rc != XR_OK) {
        ASSERT(why && why[0]);
        return 0;
    }
    size_t sl = strlen(c.sub);
    ASSERT(sl <= XR_JWT_MAX_SUB);
    for (size_t i = 0; i < sl; i++)
        ASSERT((unsigned char)c.sub[i] >= 0x20 && c.sub[i] != 0x7f);
    ASSERT(!c.has_exp || now <= c.exp + pol.leeway);
    /* Any one byte of the signed part changed: refused. */
    char *copy = malloc(len ? len : 1);
    ASSERT(copy);
    memcpy(copy, tok, len);
    const char *dot = memchr(copy, '.', len);
    ASSERT(dot);
    size_t at = (size_t)(dot - copy) / 2;
    copy[at] = copy[at] == 'A' ? 'B' : 'A';
    ASSERT(xr_jwt_verify(copy, len, keys, 2, &pol, now, &c, &why) != XR_OK);
    free(copy);
    return 0;
}
