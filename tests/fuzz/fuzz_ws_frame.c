/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the frame codec over a stream of frames. Invariants: sizes stay
 * inside the input; NEED_MORE asks for more than is there and leaves the
 * decoder untouched; an error carries a close code the server may send; a
 * frame it accepts re-encodes to the same bytes when minimally encoded
 * (RSV1 included, when permessage-deflate is on); RSV1 is accepted only on
 * the first frame of a data message. RFC 6455 as accepted: frames are masked
 * exactly on the server side, no reserved opcode, control frames unfragmented
 * and at most 125 bytes, a message within its limit, and a whole uncompressed
 * text message is UTF-8. The same bytes fed in small pieces to
 * a streaming decoder (as the transport does: partial text frames unmasked
 * and UTF-8-checked as they arrive) give the same frames, payloads and
 * final error, except that invalid UTF-8 may be found before its frame is
 * complete. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/ws_frame.h"

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* First byte: which side decodes, small limits to reach 1009, and
     * whether permessage-deflate was negotiated. */
    int server = data[0] & 1;
    int deflate = (data[0] & 4) != 0;
    uint64_t max = (data[0] & 2) ? 64 : (1u << 20);
    uint8_t *buf = malloc(size - 1 ? size - 1 : 1), *orig = malloc(size - 1 ? size - 1 : 1);
    size_t len = size - 1;
    memcpy(buf, data + 1, len);
    memcpy(orig, data + 1, len);
    xr_ws_decoder d;
    xr_ws_decoder_init(&d, max, max * 2, server);
    d.rsv1_ok = (uint8_t)deflate;
    size_t off = 0;
    uint8_t *text = malloc(len ? len : 1);   /* the text message so far */
    size_t text_len = 0, msg_len = 0;
    int in_text = 0;
    while (off <= len) {
        xr_ws_decoder before = d;
        xr_ws_frame f;
        memset(&f, 0, sizeof f);
        xr_ws_status st = xr_ws_decode(&d, buf + off, len - off, &f);
        if (st == XR_WS_NEED_MORE) {
            ASSERT(f.size > len - off);
            ASSERT(memcmp(&before, &d, sizeof d) == 0);
            ASSERT(memcmp(buf + off, orig + off, len - off) == 0);
            break;
        }
        if (st == XR_WS_ERROR) {
            ASSERT(f.error_code == 1002 || f.error_code == 1007 || f.error_code == 1009);
            ASSERT(f.error[0] != '\0');
            break;
        }
        ASSERT(st == XR_WS_FRAME);
        ASSERT(f.size >= 2 && f.size <= len - off);
        ASSERT(f.payload >= buf + off && f.payload + f.len == buf + off + f.size);
        ASSERT(f.len <= max);
        int rsv1 = (orig[off] & XR_WS_RSV1) != 0;
        ASSERT(!rsv1 || (deflate && f.opcode != XR_WS_OP_CONT && !(f.opcode & 8)));
        ASSERT(!f.compressed || deflate);
        /* A shorter prefix of an accepted frame must ask for more. */
        xr_ws_decoder again = before;
        xr_ws_frame g;
        ASSERT(xr_ws_decode(&again, orig + off, f.size - 1, &g) == XR_WS_NEED_MORE);
        /* Re-encode: header for the same opcode/fin/length, and the payload
         * masked again with the frame's own key, give the original bytes. */
        uint8_t h[XR_WS_MAX_HEADER], mask[4];
        int masked = orig[off + 1] >> 7;
        size_t hl = f.size - (size_t)f.len;
        if (masked)
            memcpy(mask, orig + off + hl - 4, 4);
        size_t eh = xr_ws_header(h, f.opcode | (rsv1 ? XR_WS_RSV1 : 0), f.fin, f.len,
                                 masked ? mask : NULL);
        if (eh == hl) {
            ASSERT(memcmp(h, orig + off, hl) == 0);
            uint8_t *p = malloc(f.len ? f.len : 1);
            memcpy(p, f.payload, f.len);
            if (masked)
                xr_ws_mask(p, f.len, mask, 0);
            ASSERT(memcmp(p, orig + off + hl, f.len) == 0);
            free(p);
        }
        /* RFC 6455 5.1, 5.2, 5.4, 5.5, 8.1 on what was accepted. */
        ASSERT((orig[off + 1] >> 7) == server);
        ASSERT(f.opcode <= 2 || (f.opcode >= 8 && f.opcode <= 10));
        if (f.opcode & 8)
            ASSERT(f.fin && f.len <= 125);
        else {
            msg_len = (f.opcode == XR_WS_OP_CONT ? msg_len : 0) + f.len;
            ASSERT(msg_len <= max * 2);
            if (f.opcode != XR_WS_OP_CONT) {
                in_text = f.opcode == XR_WS_OP_TEXT && !f.compressed;
                text_len = 0;
            }
            if (in_text) {
                memcpy(text + text_len, f.payload, f.len);
                text_len += f.len;
                if (f.fin)
                    ASSERT(xr_utf8_valid(text, text_len));
            }
        }
        if (f.opcode == XR_WS_OP_CLOSE && f.close_code != 1005)
            ASSERT(xr_ws_close_code_valid(f.close_code) && xr_utf8_valid(f.reason, f.reason_len));
        off += f.size;
    }
    /* Where the whole-buffer pass ended, and how. */
    xr_ws_decoder w;
    xr_ws_decoder_init(&w, max, max * 2, server);
    w.rsv1_ok = (uint8_t)deflate;
    size_t end = 0, frames = 0;
    int last = XR_WS_NEED_MORE, code = 0;
    memcpy(buf, orig, len);
    for (;;) {
        xr_ws_frame f;
        memset(&f, 0, sizeof f);
        last = xr_ws_decode(&w, buf + end, len - end, &f);
        if (last != XR_WS_FRAME) {
            code = f.error_code;
            break;
        }
        end += f.size;
        frames++;
    }
    /* The streaming pass: pieces of 1 + data[0] / 8 bytes. */
    size_t piece = 1 + (data[0] >> 3);
    uint8_t *sbuf = malloc(len ? len : 1);
    memcpy(sbuf, orig, len);
    xr_ws_decoder sd;
    xr_ws_decoder_init(&sd, max, max * 2, server);
    sd.rsv1_ok = (uint8_t)deflate;
    sd.stream = 1;
    size_t soff = 0, sframes = 0, have = 0;
    int slast = XR_WS_NEED_MORE, scode = 0;
    for (;;) {
        have = have + piece < len ? have + piece : len;
        xr_ws_frame f;
        memset(&f, 0, sizeof f);
        slast = xr_ws_decode(&sd, sbuf + soff, have - soff, &f);
        if (slast == XR_WS_FRAME) {
            soff += f.size;
            sframes++;
            have = soff;
            continue;
        }
        if (slast == XR_WS_ERROR) {
            scode = f.error_code;
            break;
        }
        if (have == len)
            break;
    }
    ASSERT(sframes == frames && soff == end);
    ASSERT(memcmp(sbuf, buf, end) == 0);
    if (last == XR_WS_ERROR)
        ASSERT(slast == XR_WS_ERROR && scode == code);
    else
        ASSERT(slast == XR_WS_NEED_MORE || (slast == XR_WS_ERROR && scode == 1007));
    free(sbuf);
    free(text);
    free(buf);
    free(orig);
    return 0;
}
