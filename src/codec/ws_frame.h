/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RFC 6455 frame codec. Pure functions over caller-owned bytes: no I/O, no
 * allocation, no globals, so it can be unit-tested with byte arrays and
 * fuzzed. The decoder is total: any input gives NEED_MORE, a frame, or an
 * error carrying the close code to send.
 */
#ifndef XR_WS_FRAME_H
#define XR_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "codec/utf8.h"

enum {
    XR_WS_OP_CONT = 0x0,
    XR_WS_OP_TEXT = 0x1,
    XR_WS_OP_BINARY = 0x2,
    XR_WS_OP_CLOSE = 0x8,
    XR_WS_OP_PING = 0x9,
    XR_WS_OP_PONG = 0xA
};

#define XR_WS_MAX_HEADER 14      /* 2 + 8 (64-bit length) + 4 (mask) */
#define XR_WS_RSV1 0x40          /* or-ed into an opcode: "per-message compressed" */
#define XR_WS_MAX_CONTROL 125    /* section 5.5 */

/* Per-connection decoder state: the message being reassembled. */
typedef struct xr_ws_decoder {
    uint64_t max_frame;      /* payload bytes of one frame */
    uint64_t max_message;    /* payload bytes of one whole message */
    uint64_t msg_len;        /* bytes of the current fragmented message */
    uint8_t frag_opcode;     /* TEXT/BINARY while a message is open, else 0 */
    uint8_t expect_mask;     /* 1: frames must be masked (server side) */
    uint8_t rsv1_ok;         /* 1: permessage-deflate negotiated (RFC 7692) */
    uint8_t frag_compressed; /* the open fragmented message is compressed */
    uint8_t stream;          /* 1: see xr_ws_decode on partial frames */
    uint64_t done;           /* stream: payload bytes of the partial frame
                              * already unmasked and checked */
    xr_utf8 utf8;            /* carries across fragments of a text message */
} xr_ws_decoder;

typedef enum {
    XR_WS_NEED_MORE = 0,     /* frame.size = bytes needed for this frame */
    XR_WS_FRAME = 1,         /* frame.size = bytes consumed */
    XR_WS_ERROR = -1         /* frame.error_code / frame.error say why */
} xr_ws_status;

typedef struct xr_ws_frame {
    size_t size;
    uint8_t opcode;          /* as on the wire (CONT for continuations) */
    uint8_t fin;
    uint8_t msg_opcode;      /* data frames: TEXT or BINARY of the message */
    uint8_t compressed;      /* data frames: the message has RSV1 (deflated);
                              * its text is then not UTF-8-checked here */
    uint8_t *payload;        /* unmasked in place, inside the input */
    uint64_t len;
    /* CLOSE frames: code (1005 when absent) and reason (validated UTF-8). */
    uint16_t close_code;
    const uint8_t *reason;
    size_t reason_len;
    /* XR_WS_ERROR: the close code to fail the connection with and why. */
    uint16_t error_code;
    char error[96];
} xr_ws_frame;

void xr_ws_decoder_init(xr_ws_decoder *d, uint64_t max_frame,
                        uint64_t max_message, int expect_mask);

/*
 * Decodes the frame at the start of buf. On XR_WS_FRAME the payload was
 * unmasked in place (so a buffer must be decoded once), the decoder moved to
 * the next frame, and text was checked as UTF-8 so far. Header errors are
 * reported as soon as the header is readable, before the payload arrives.
 *
 * With d->stream set, a partial text frame is unmasked and checked as far as
 * it has arrived (invalid UTF-8 fails at the first bad byte, RFC 6455 8.1,
 * however large the frame), so the caller must hand back the same bytes,
 * as this call left them, plus more, until the frame is complete.
 */
xr_ws_status xr_ws_decode(xr_ws_decoder *d, uint8_t *buf, size_t len,
                          xr_ws_frame *frame);

/* Writes a frame header for a payload of len bytes; mask (4 bytes) is for
 * clients, NULL for servers. opcode may carry XR_WS_RSV1. Returns the header
 * length. */
size_t xr_ws_header(uint8_t out[XR_WS_MAX_HEADER], unsigned opcode, int fin,
                    uint64_t len, const uint8_t *mask);

/* XORs data with the 4-byte mask; offset is the byte's position in the
 * payload (for masking in pieces). Nonzero when a byte it wrote is not
 * ASCII (so text needs its UTF-8 checked). */
int xr_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], size_t offset);

/* Whether a code may appear in a close frame on the wire (section 7.4). */
int xr_ws_close_code_valid(unsigned code);

/* Builds a close payload: 2-byte code then reason, cut to fit 125 bytes on
 * a UTF-8 boundary. Returns its length. */
size_t xr_ws_close_payload(uint8_t out[XR_WS_MAX_CONTROL], unsigned code,
                           const char *reason, size_t reason_len);

#endif
