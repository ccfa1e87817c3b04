/* SPDX-License-Identifier: Apache-2.0 */
#include "codec/ws_frame.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

void xr_ws_decoder_init(xr_ws_decoder *d, uint64_t max_frame,
                        uint64_t max_message, int expect_mask)
{
    memset(d, 0, sizeof *d);
    d->max_frame = max_frame;
    d->max_message = max_message;
    d->expect_mask = expect_mask ? 1 : 0;
    xr_utf8_init(&d->utf8);
}

__attribute__((format(printf, 3, 4)))
static xr_ws_status fail(xr_ws_frame *f, uint16_t code, const char *fmt, ...)
{
    va_list ap;
    f->error_code = code;
    va_start(ap, fmt);
    vsnprintf(f->error, sizeof f->error, fmt, ap);
    va_end(ap);
    return XR_WS_ERROR;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

int xr_ws_close_code_valid(unsigned code)
{
    /* 1004-1006 and 1015 are reserved and must never be sent (7.4.1);
     * 1012-1014 are registered with IANA since; 3000-4999 belong to
     * libraries and applications; anything else is undefined. */
    if (code >= 1000 && code <= 1003)
        return 1;
    if (code >= 1007 && code <= 1014)
        return 1;
    return code >= 3000 && code <= 4999;
}

int xr_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], size_t offset)
{
    uint8_t m[8];
    uint64_t m64, high = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Byte i of the word is mask[(offset + i) & 3]: the mask rotated. */
    uint32_t m32;
    memcpy(&m32, mask, 4);
    unsigned r = (unsigned)(offset & 3) * 8;
    if (r)
        m32 = m32 >> r | m32 << (32 - r);
    m64 = (uint64_t)m32 << 32 | m32;
    memcpy(m, &m64, 8);
#else
    for (int i = 0; i < 8; i++)
        m[i] = mask[(offset + i) & 3];
    memcpy(&m64, m, 8);
#endif
    size_t i = 0;
#if defined(__SSE2__)
    __m128i m128 = _mm_set1_epi64x((long long)m64), acc = _mm_setzero_si128();
    for (; i + 16 <= len; i += 16) {
        __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(const void *)(data + i)), m128);
        _mm_storeu_si128((__m128i *)(void *)(data + i), v);
        acc = _mm_or_si128(acc, v);
    }
    high = (uint64_t)_mm_movemask_epi8(acc);
#endif
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, 8);
        w ^= m64;
        memcpy(data + i, &w, 8);
        high |= w & UINT64_C(0x8080808080808080);
    }
    for (; i < len; i++) {
        data[i] ^= m[i & 7];
        high |= data[i] & 0x80;
    }
    return high != 0;
}

/* Text bytes just unmasked, fed to the UTF-8 check; high: unmasking saw a
 * byte >= 0x80. All ASCII between code points has nothing to check. */
static int text_ok(xr_ws_decoder *d, int high, const uint8_t *p, size_t n)
{
    return (!high && xr_utf8_complete(&d->utf8)) || xr_utf8_feed(&d->utf8, p, n);
}

xr_ws_status xr_ws_decode(xr_ws_decoder *d, uint8_t *buf, size_t len,
                          xr_ws_frame *f)
{
    f->size = 2;
    f->error_code = 0;
    f->error[0] = '\0';
    if (len < 2)
        return XR_WS_NEED_MORE;

    unsigned fin = buf[0] >> 7;
    unsigned rsv = (buf[0] >> 4) & 7;
    unsigned op = buf[0] & 0x0F;
    unsigned masked = buf[1] >> 7;
    uint64_t plen = buf[1] & 0x7F;

    int control = (op & 0x8) != 0;
    /* 5.2: RSV bits are only for negotiated extensions. The one we speak,
     * permessage-deflate, uses RSV1 on the first frame of a data message
     * only (RFC 7692 section 6). */
    if (rsv & 3)
        return fail(f, 1002, "reserved bits 0x%x set with no extension using them", rsv);
    if (rsv & 4) {
        if (!d->rsv1_ok)
            return fail(f, 1002, "RSV1 set but permessage-deflate was not negotiated");
        if (control)
            return fail(f, 1002, "RSV1 set on a control frame (opcode 0x%x)", op);
        if (op == XR_WS_OP_CONT)
            return fail(f, 1002, "RSV1 set on a continuation frame");
    }
    if (op != XR_WS_OP_CONT && op != XR_WS_OP_TEXT && op != XR_WS_OP_BINARY &&
        op != XR_WS_OP_CLOSE && op != XR_WS_OP_PING && op != XR_WS_OP_PONG)
        return fail(f, 1002, "reserved opcode 0x%x", op);
    /* 5.5: control frames are never fragmented and carry at most 125 bytes. */
    if (control && !fin)
        return fail(f, 1002, "fragmented control frame (opcode 0x%x)", op);
    if (control && plen > XR_WS_MAX_CONTROL)
        return fail(f, 1002, "control frame payload of %llu bytes exceeds %d",
                    (unsigned long long)plen, XR_WS_MAX_CONTROL);
    /* 5.1: a server closes on an unmasked client frame, a client on a
     * masked server frame. */
    if (masked != d->expect_mask)
        return fail(f, 1002, "%s", d->expect_mask ? "client frame is not masked"
                                                  : "server frame is masked");

    size_t hdr = 2;
    if (plen == 126) {
        hdr = 4;
        if (len < hdr) { f->size = hdr; return XR_WS_NEED_MORE; }
        plen = be(buf + 2, 2);
    } else if (plen == 127) {
        hdr = 10;
        if (len < hdr) { f->size = hdr; return XR_WS_NEED_MORE; }
        plen = be(buf + 2, 8);
        /* 5.2: the most significant bit of a 64-bit length must be 0. */
        if (plen >> 63)
            return fail(f, 1002, "64-bit payload length has its top bit set");
    }
    const uint8_t *mask = NULL;
    if (masked) {
        mask = buf + hdr;
        hdr += 4;
    }

    /* 5.4: fragments of one message are never interleaved with another. */
    if (!control) {
        if (op == XR_WS_OP_CONT && !d->frag_opcode)
            return fail(f, 1002, "continuation frame with no message to continue");
        if (op != XR_WS_OP_CONT && d->frag_opcode)
            return fail(f, 1002, "new message (opcode 0x%x) before the fragmented one ended", op);
    }
    if (plen > d->max_frame)
        return fail(f, 1009, "frame of %llu bytes exceeds max_frame_size %llu",
                    (unsigned long long)plen, (unsigned long long)d->max_frame);
    if (!control) {
        uint64_t total = (op == XR_WS_OP_CONT ? d->msg_len : 0) + plen;
        if (total > d->max_message)
            return fail(f, 1009, "message of %llu bytes exceeds max_message_size %llu",
                        (unsigned long long)total, (unsigned long long)d->max_message);
    }
    uint8_t *payload = buf + hdr;
    /* Cannot overflow: plen <= max_frame, which the caller keeps sane. */
    if (len < hdr || len - hdr < plen) {
        f->size = hdr + (size_t)plen;
        if (d->stream && len > hdr && !control && !(rsv & 4) &&
            (op == XR_WS_OP_TEXT || (op == XR_WS_OP_CONT && d->frag_opcode == XR_WS_OP_TEXT &&
                                     !d->frag_compressed))) {
            size_t have = len - hdr, from = (size_t)d->done;
            if (from == 0 && op != XR_WS_OP_CONT)
                xr_utf8_init(&d->utf8);
            int high = mask ? xr_ws_mask(payload + from, have - from, mask, from) : 1;
            d->done = have;
            if (!text_ok(d, high, payload + from, have - from))
                return fail(f, 1007, "text message is not valid UTF-8");
        }
        return XR_WS_NEED_MORE;
    }

    /* Bytes already unmasked and checked while the frame was arriving. */
    size_t from = (size_t)d->done;
    d->done = 0;
    int high = 1;
    if (mask) {
        uint8_t m[4];
        memcpy(m, mask, 4);
        high = xr_ws_mask(payload + from, (size_t)plen - from, m, from);
    }
    f->size = hdr + (size_t)plen;
    f->opcode = (uint8_t)op;
    f->fin = (uint8_t)fin;
    f->payload = payload;
    f->len = plen;
    f->msg_opcode = 0;
    f->compressed = 0;

    if (!control) {
        unsigned mop = op == XR_WS_OP_CONT ? d->frag_opcode : op;
        f->msg_opcode = (uint8_t)mop;
        f->compressed = op == XR_WS_OP_CONT ? d->frag_compressed : (rsv & 4) != 0;
        /* Compressed text is checked once inflated, by the caller. */
        if (mop == XR_WS_OP_TEXT && !f->compressed) {
            /* 8.1: invalid UTF-8 fails the connection at the first frame
             * that shows it, not at the end of the message. */
            if (op != XR_WS_OP_CONT && from == 0)
                xr_utf8_init(&d->utf8);
            if (!text_ok(d, high, payload + from, (size_t)plen - from))
                return fail(f, 1007, "text message is not valid UTF-8");
            if (fin && !xr_utf8_complete(&d->utf8))
                return fail(f, 1007, "text message ends inside a UTF-8 sequence");
        }
        if (fin) {
            d->frag_opcode = 0;
            d->frag_compressed = 0;
            d->msg_len = 0;
        } else {
            d->frag_opcode = (uint8_t)mop;
            d->frag_compressed = f->compressed;
            d->msg_len += plen;
        }
    } else if (op == XR_WS_OP_CLOSE) {
        f->close_code = 1005;
        f->reason = payload;
        f->reason_len = 0;
        if (plen == 1)
            return fail(f, 1002, "close frame with a 1-byte payload");
        if (plen >= 2) {
            unsigned code = (unsigned)be(payload, 2);
            if (!xr_ws_close_code_valid(code))
                return fail(f, 1002, "invalid close code %u", code);
            f->close_code = (uint16_t)code;
            f->reason = payload + 2;
            f->reason_len = (size_t)plen - 2;
            if (!xr_utf8_valid(f->reason, f->reason_len))
                return fail(f, 1007, "close reason is not valid UTF-8");
        }
    }
    return XR_WS_FRAME;
}

size_t xr_ws_header(uint8_t out[XR_WS_MAX_HEADER], unsigned opcode, int fin,
                    uint64_t len, const uint8_t *mask)
{
    size_t n = 2;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & (XR_WS_RSV1 | 0x0F)));
    uint8_t mbit = mask ? 0x80 : 0;
    if (len < 126) {
        out[1] = (uint8_t)(mbit | len);
    } else if (len <= 0xFFFF) {
        out[1] = mbit | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = mbit | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

size_t xr_ws_close_payload(uint8_t out[XR_WS_MAX_CONTROL], unsigned code,
                           const char *reason, size_t reason_len)
{
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (!reason)
        reason_len = 0;
    if (reason_len > XR_WS_MAX_CONTROL - 2) {
        /* Cut on a code point boundary so the reason stays valid UTF-8. */
        reason_len = XR_WS_MAX_CONTROL - 2;
        while (reason_len > 0 && ((uint8_t)reason[reason_len] & 0xC0) == 0x80)
            reason_len--;
    }
    if (reason_len)
        memcpy(out + 2, reason, reason_len);
    return 2 + reason_len;
}
