/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: permessage-deflate's inflate and deflate (xr_zinflate,
 * xr_zdeflate, the stored-block prefix the fan-out uses). Invariants:
 * arbitrary input gives OK, TOO_BIG or CORRUPT, never more output than the
 * limit (plus one 64 KiB chunk for TOO_BIG); a message compressed here
 * inflates back to the same bytes, within a limit of its exact size and
 * TOO_BIG one byte below it; a stored prefix in front of a compressed tail
 * inflates to prefix + tail; a shared inflater (reset per message) and a
 * context-keeping one agree message by message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/deflate.h"

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int bits = 9 + data[0] % 7;                  /* 9..15 */
    size_t limit = 1 + (size_t)data[1] * 257;    /* up to ~64 KiB */
    const uint8_t *in = data + 2;
    size_t n = size - 2;

    /* Arbitrary bytes as a compressed message. */
    z_stream *i = xr_zinflate_new(15);
    xr_buf out = {0};
    int rc = xr_zinflate(i, in, n, limit, 1, &out);
    ASSERT(rc == XR_Z_OK || rc == XR_Z_TOO_BIG || rc == XR_Z_CORRUPT);
    ASSERT(rc == XR_Z_TOO_BIG ? out.len <= limit + 65536 + 1 : out.len <= limit);

    /* The input as a message: compress, inflate back. */
    z_stream *d = xr_zdeflate_new(bits, 1 + data[0] % 9);
    xr_buf z = {0};
    ASSERT(xr_zdeflate(d, in, n / 2, in + n / 2, n - n / 2, &z) == XR_Z_OK);
    z_stream *j = xr_zinflate_new(bits);
    out.len = 0;
    ASSERT(xr_zinflate(j, z.p, z.len, n, 0, &out) == XR_Z_OK);
    ASSERT(out.len == n && (n == 0 || memcmp(out.p, in, n) == 0));
    if (n) {
        /* One byte less room is too big; a fresh stream, as after a reset. */
        z_stream *k = xr_zinflate_new(bits);
        out.len = 0;
        ASSERT(xr_zinflate(k, z.p, z.len, n - 1, 1, &out) == XR_Z_TOO_BIG);
        xr_zinflate_free(k);
    }

    /* Fan-out framing: stored prefix (the first bytes, uncompressed) then
     * the compressed tail of the rest, as one message. */
    size_t plen = n < 300 ? n / 3 : 100;
    xr_buf tail = {0}, msg = {0};
    ASSERT(xr_zdeflate(d, in + plen, n - plen, NULL, 0, &tail) == XR_Z_OK);
    uint8_t h[XR_Z_STORED_HEADER];
    xr_zstored_header(h, plen);
    ASSERT(xr_buf_add(&msg, h, sizeof h) == 0 && xr_buf_add(&msg, in, plen) == 0 &&
           xr_buf_add(&msg, tail.p, tail.len) == 0);
    out.len = 0;
    ASSERT(xr_zinflate(i, msg.p, msg.len, n, 1, &out) == XR_Z_OK);
    ASSERT(out.len == n && (n == 0 || memcmp(out.p, in, n) == 0));

    xr_buf_free(&tail);
    xr_buf_free(&msg);
    xr_buf_free(&z);
    xr_buf_free(&out);
    xr_zdeflate_free(d);
    xr_zinflate_free(i);
    xr_zinflate_free(j);
    return 0;
}
