/* SPDX-License-Identifier: Apache-2.0 */
#include "codec/deflate.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t trailer[4] = {0x00, 0x00, 0xff, 0xff};

/* zlib's default memLevel 8 clears a 64 KiB hash on every reset, which
 * outweighs compressing a small message; 6 clears 16 KiB. */
#define XR_Z_MEMLEVEL 6

z_stream *xr_zdeflate_new(int bits, int level)
{
    z_stream *z = calloc(1, sizeof *z);
    if (z && deflateInit2(z, level, Z_DEFLATED, -bits, XR_Z_MEMLEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        z = NULL;
    }
    return z;
}

z_stream *xr_zinflate_new(int bits)
{
    z_stream *z = calloc(1, sizeof *z);
    if (z && inflateInit2(z, -bits) != Z_OK) {
        free(z);
        z = NULL;
    }
    return z;
}

void xr_zdeflate_free(z_stream *z)
{
    if (z) {
        deflateEnd(z);
        free(z);
    }
}

void xr_zinflate_free(z_stream *z)
{
    if (z) {
        inflateEnd(z);
        free(z);
    }
}

static int deflate_part(z_stream *z, const void *p, size_t len, int flush, xr_buf *out)
{
    z->next_in = (Bytef *)(uintptr_t)p;
    z->avail_in = (uInt)len;
    do {
        if (xr_buf_reserve(out, 4096) < 0)
            return XR_Z_NOMEM;
        size_t room = out->cap - out->len;
        z->next_out = (Bytef *)out->p + out->len;
        z->avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
        int r = deflate(z, flush);
        out->len += (size_t)((char *)z->next_out - (out->p + out->len));
        if (r != Z_OK && r != Z_BUF_ERROR)
            return XR_Z_CORRUPT;
    } while (z->avail_in || z->avail_out == 0);
    return XR_Z_OK;
}

int xr_zdeflate(z_stream *z, const void *a, size_t alen, const void *b, size_t blen,
                xr_buf *out)
{
    /* Messages are far below 4 GiB (max_message_size), so avail_in fits. */
    if (alen > UINT_MAX || blen > UINT_MAX)
        return XR_Z_CORRUPT;
    deflateReset(z);
    size_t start = out->len;
    if (xr_buf_reserve(out, deflateBound(z, (uLong)(alen + blen)) + 16) < 0)
        return XR_Z_NOMEM;
    int rc = deflate_part(z, a, alen, blen ? Z_NO_FLUSH : Z_SYNC_FLUSH, out);
    if (rc == XR_Z_OK && blen)
        rc = deflate_part(z, b, blen, Z_SYNC_FLUSH, out);
    if (rc != XR_Z_OK)
        return rc;
    /* A sync flush ends in the empty stored block the wire leaves out. */
    if (out->len - start < 4 || memcmp(out->p + out->len - 4, trailer, 4) != 0)
        return XR_Z_CORRUPT;
    out->len -= 4;
    return XR_Z_OK;
}

int xr_zinflate(z_stream *z, const void *in, size_t len, size_t limit, int reset,
                xr_buf *out)
{
    if (len > UINT_MAX)
        return XR_Z_TOO_BIG;
    size_t start = out->len;
    int rc = XR_Z_OK, tail = 0, full = 0;
    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)len;
    for (;;) {
        /* Input used up and the last call had room: nothing is pending. */
        if (z->avail_in == 0 && !full) {
            if (tail)
                break;
            /* 7.2.2: the receiver appends the 4 bytes the sender cut. */
            z->next_in = (Bytef *)(uintptr_t)trailer;
            z->avail_in = 4;
            tail = 1;
        }
        /* Grow by chunks, never far past the limit. */
        size_t allowed = limit - (out->len - start) + 1;
        if (out->cap - out->len == 0 &&
            xr_buf_reserve(out, allowed < 65536 ? allowed : 65536) < 0) {
            rc = XR_Z_NOMEM;
            break;
        }
        size_t room = out->cap - out->len;
        if (room > allowed)
            room = allowed;
        z->next_out = (Bytef *)out->p + out->len;
        z->avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
        int r = inflate(z, Z_SYNC_FLUSH);
        out->len += (size_t)((char *)z->next_out - (out->p + out->len));
        full = z->avail_out == 0;
        if (out->len - start > limit) {
            rc = XR_Z_TOO_BIG;
            break;
        }
        if (r == Z_STREAM_END) {
            /* The peer ended the stream (BFINAL): a new one starts with
             * its next message. Anything after the end is not ours. */
            inflateReset(z);
            if (!tail && z->avail_in)
                rc = XR_Z_CORRUPT;
            return rc;
        }
        if (r == Z_BUF_ERROR && (full || z->avail_in == 0))
            continue;               /* no progress possible: grow or next input */
        if (r != Z_OK) {
            rc = r == Z_MEM_ERROR ? XR_Z_NOMEM : XR_Z_CORRUPT;
            break;
        }
    }
    if (rc != XR_Z_OK || reset)
        inflateReset(z);
    return rc;
}

void xr_zstored_header(uint8_t out[XR_Z_STORED_HEADER], size_t len)
{
    out[0] = 0x00;                  /* BFINAL 0, BTYPE 00, padding */
    out[1] = (uint8_t)len;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)~len;
    out[4] = (uint8_t)(~len >> 8);
}
