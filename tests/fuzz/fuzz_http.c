/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the HTTP request-head parser and upgrade validation.
 * Invariants: a complete head's length is within the input and parsing just
 * that prefix gives the same; every shorter prefix needs more or fails; the
 * parsed fields point inside the input; a rejection has a 4xx/5xx status and
 * a reason; an accepted upgrade has a 28-character accept key; an accepted
 * permessage-deflate offer gives windows within 8..15 and a response that
 * names the extension and fits in XR_PMD_RESPONSE_MAX. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http.h"

#define ASSERT(c) do { if (!(c)) abort(); } while (0)
#define INSIDE(p, n) ((const char *)(p) >= in && (const char *)(p) + (n) <= in + size)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    xr_http_request req;
    xr_http_error err = {0, NULL};
    long r = xr_http_parse(in, size, &req, &err);
    if (r < 0) {
        ASSERT(err.status >= 400 && err.status < 600 && err.reason && err.reason[0]);
        return 0;
    }
    if (r == 0)
        return 0;
    ASSERT((size_t)r <= size);
    ASSERT(INSIDE(req.method, req.method_len) && INSIDE(req.target, req.target_len));
    ASSERT(req.target_len > 0 && req.target[0] == '/');
    ASSERT(req.n_headers <= XR_HTTP_MAX_HEADERS);
    for (size_t i = 0; i < req.n_headers; i++) {
        ASSERT(req.headers[i].name_len > 0);
        ASSERT(INSIDE(req.headers[i].name, req.headers[i].name_len));
        ASSERT(INSIDE(req.headers[i].value, req.headers[i].value_len));
    }
    xr_http_request again;
    ASSERT(xr_http_parse(in, (size_t)r, &again, &err) == r);
    ASSERT(xr_http_parse(in, (size_t)r - 1, &again, &err) <= 0);
    static const char *const protos[] = {"chat", "xraptor.v1"};
    static const char *const origins[] = {"https://a.example"};
    xr_ws_handshake hs;
    xr_http_kind k = xr_http_classify(&req, protos, 2, size & 1 ? origins : NULL, size & 1,
                                      &hs, &err);
    if (k == XR_HTTP_REJECT)
        ASSERT(err.status >= 400 && err.status < 500 && err.reason);
    if (k == XR_HTTP_UPGRADE) {
        ASSERT(strlen(hs.accept) == 28);
        ASSERT(!hs.protocol || hs.protocol == protos[0] || hs.protocol == protos[1]);
    }
    xr_pmd pmd;
    char resp[XR_PMD_RESPONSE_MAX];
    unsigned bits = 9 + (unsigned)(size % 7);
    /* The documented buffer size is always enough: same answer as a huge one. */
    char big[1024];
    xr_pmd pmd2;
    int accepted = xr_pmd_negotiate(&req, bits, (int)(size & 2), &pmd, resp, sizeof resp);
    ASSERT(accepted == xr_pmd_negotiate(&req, bits, (int)(size & 2), &pmd2, big, sizeof big));
    ASSERT(!accepted || strcmp(resp, big) == 0);
    if (accepted) {
        ASSERT(strncmp(resp, "permessage-deflate; server_no_context_takeover", 46) == 0);
        ASSERT(strlen(resp) < sizeof resp);
        ASSERT(pmd.server_bits >= 8 && pmd.server_bits <= 15);
        ASSERT(pmd.client_bits >= 8 && pmd.client_bits <= 15);
        ASSERT(pmd.client_bits <= bits || pmd.client_bits == 15);
        ASSERT(!(size & 2) || pmd.client_no_context);
    }
    return 0;
}
