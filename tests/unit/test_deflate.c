/* SPDX-License-Identifier: Apache-2.0 */
/* permessage-deflate: offer negotiation (RFC 7692 section 7), the zlib
 * helpers, and the frame rules for RSV1 (section 6). */
#include <stdlib.h>

#include "codec/deflate.h"
#include "codec/http.h"
#include "codec/ws_frame.h"
#include "tap.h"

#define HEAD "GET / HTTP/1.1\r\nHost: x\r\n"

/* Negotiates the offers in head with window cap bits; returns the
 * response header value, or "" when nothing was accepted. */
static const char *nego(const char *ext_lines, unsigned bits, int no_ctx, xr_pmd *pmd)
{
    static char head[1024], resp[XR_PMD_RESPONSE_MAX];
    snprintf(head, sizeof head, HEAD "%s\r\n", ext_lines);
    xr_http_request req;
    xr_http_error err;
    if (xr_http_parse(head, strlen(head), &req, &err) <= 0)
        return "(unparsed)";
    xr_pmd dummy;
    if (!xr_pmd_negotiate(&req, bits, no_ctx, pmd ? pmd : &dummy, resp, sizeof resp))
        return "";
    return resp;
}

static void test_negotiate_defaults(void)
{
    xr_pmd p;
    /* Python websockets' and Chrome's offer. */
    CHECK_STR(nego("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n", 12, 0, &p),
              "permessage-deflate; server_no_context_takeover; client_max_window_bits=12");
    CHECK_EQ(p.server_bits, 15);
    CHECK_EQ(p.client_bits, 12);
    CHECK_EQ(p.client_no_context, 0);
    /* Firefox's: no client_max_window_bits, so we may not name one. */
    CHECK_STR(nego("Sec-WebSocket-Extensions: permessage-deflate\r\n", 12, 0, &p),
              "permessage-deflate; server_no_context_takeover");
    CHECK_EQ(p.client_bits, 15);
    /* No offer, another extension only, or the feature asked of us. */
    CHECK_STR(nego("", 12, 0, NULL), "");
    CHECK_STR(nego("Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n", 12, 0, NULL), "");
    CHECK_STR(nego("Sec-WebSocket-Extensions: PerMessage-Deflate\r\n", 12, 1, &p),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    CHECK_EQ(p.client_no_context, 1);
}

static void test_negotiate_parameters(void)
{
    xr_pmd p;
    CHECK_STR(nego("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; "
                   "client_max_window_bits=9; client_no_context_takeover; server_no_context_takeover\r\n",
                   12, 0, &p),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "server_max_window_bits=10; client_max_window_bits=9");
    CHECK_EQ(p.server_bits, 10);
    CHECK_EQ(p.client_bits, 9);
    CHECK_EQ(p.client_no_context, 1);
    /* The longest response there is (Autobahn 13.4 and 13.6 offer it). */
    CHECK_STR(nego("Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; "
                   "client_max_window_bits; server_max_window_bits=15\r\n", 12, 0, &p),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "server_max_window_bits=15; client_max_window_bits=12");
    CHECK_EQ(strlen("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                    "server_max_window_bits=15; client_max_window_bits=15") + 1 <= XR_PMD_RESPONSE_MAX, 1);
    /* A client window above our cap is lowered; quoted values are tokens. */
    CHECK_STR(nego("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\"15\"\r\n", 11, 0, &p),
              "permessage-deflate; server_no_context_takeover; client_max_window_bits=11");
    /* 8 is legal: we then never compress, but still accept. */
    CHECK_STR(nego("Sec-WebSocket-Extensions: permessage-deflate;server_max_window_bits=8\r\n", 12, 0, &p),
              "permessage-deflate; server_no_context_takeover; server_max_window_bits=8");
    CHECK_EQ(p.server_bits, 8);
}

static void test_negotiate_declines(void)
{
    /* Each of these offers must be declined (7: unknown, repeated, bad value). */
    static const char *const bad[] = {
        "permessage-deflate; foo",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=0x9",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; =1",
        "permessage-deflate; client_max_window_bits=\"1 0\"",
        "permessage-deflate;",
        "permessage-deflate; client_max_window_bits=10 x",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char line[256];
        snprintf(line, sizeof line, "Sec-WebSocket-Extensions: %s\r\n", bad[k]);
        const char *r = nego(line, 12, 0, NULL);
        if (strcmp(r, "") != 0) {
            printf("#   accepted bad offer '%s' as '%s'\n", bad[k], r);
            tap_cur_failed = 1;
        }
    }
    /* A declined offer is skipped for the next one, in any header line. */
    CHECK_STR(nego("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=20, "
                   "permessage-deflate; client_no_context_takeover\r\n", 12, 0, NULL),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    CHECK_STR(nego("Sec-WebSocket-Extensions: foo; a=b\r\n"
                   "Sec-WebSocket-Extensions: permessage-deflate\r\n", 12, 0, NULL),
              "permessage-deflate; server_no_context_takeover");
}

static const char text[] =
    "{\"request_id\":\"r1\",\"payload\":\"hello hello hello hello hello\","
    "\"header\":{},\"route\":\"/echo\",\"method\":\"POST\"}";

static void test_round_trip(void)
{
    z_stream *d = xr_zdeflate_new(15, 6), *i = xr_zinflate_new(15);
    xr_buf z = {0}, out = {0};
    CHECK(d && i);
    for (int round = 0; round < 3; round++) {
        z.len = out.len = 0;
        CHECK_EQ(xr_zdeflate(d, text, 20, text + 20, sizeof text - 21, &z), XR_Z_OK);
        CHECK(z.len < sizeof text - 1);
        /* Context kept across messages (reset = 0) must work too. */
        CHECK_EQ(xr_zinflate(i, z.p, z.len, 1 << 20, 0, &out), XR_Z_OK);
        CHECK_EQ(out.len, sizeof text - 1);
        CHECK(out.len == sizeof text - 1 && memcmp(out.p, text, out.len) == 0);
    }
    /* An empty message compresses to a few bytes and back to nothing. */
    z.len = out.len = 0;
    CHECK_EQ(xr_zdeflate(d, "", 0, NULL, 0, &z), XR_Z_OK);
    CHECK_EQ(xr_zinflate(i, z.p, z.len, 10, 1, &out), XR_Z_OK);
    CHECK_EQ(out.len, 0);
    xr_zdeflate_free(d);
    xr_zinflate_free(i);
    xr_buf_free(&z);
    xr_buf_free(&out);
}

static void test_stored_prefix(void)
{
    /* A stored block with a prefix, then a tail compressed on its own:
     * one valid message (what a fan-out sends). */
    static const char prefix[] = "{\"request_id\":\"room-7\",\"payload\":\"";
    static const char tail[] = "0123456789 0123456789 0123456789 0123456789\"}";
    z_stream *d = xr_zdeflate_new(15, 6), *i = xr_zinflate_new(15);
    xr_buf msg = {0}, out = {0};
    uint8_t h[XR_Z_STORED_HEADER];
    xr_zstored_header(h, sizeof prefix - 1);
    xr_buf_add(&msg, h, sizeof h);
    xr_buf_add(&msg, prefix, sizeof prefix - 1);
    CHECK_EQ(xr_zdeflate(d, tail, sizeof tail - 1, NULL, 0, &msg), XR_Z_OK);
    CHECK_EQ(xr_zinflate(i, msg.p, msg.len, 1 << 20, 1, &out), XR_Z_OK);
    CHECK_EQ(out.len, sizeof prefix + sizeof tail - 2);
    CHECK(out.len > 30 && memcmp(out.p, prefix, sizeof prefix - 1) == 0 &&
          memcmp(out.p + sizeof prefix - 1, tail, sizeof tail - 1) == 0);
    xr_zdeflate_free(d);
    xr_zinflate_free(i);
    xr_buf_free(&msg);
    xr_buf_free(&out);
}

static void test_bomb_and_garbage(void)
{
    /* 16 MiB of zeros compress to ~16 KiB; a 1 MiB limit stops it having
     * allocated little more than the limit. */
    size_t big = 16u << 20;
    char *zeros = calloc(1, big);
    z_stream *d = xr_zdeflate_new(15, 9), *i = xr_zinflate_new(15);
    xr_buf z = {0}, out = {0};
    CHECK_EQ(xr_zdeflate(d, zeros, big, NULL, 0, &z), XR_Z_OK);
    CHECK(z.len < 64 * 1024);
    CHECK_EQ(xr_zinflate(i, z.p, z.len, 1u << 20, 0, &out), XR_Z_TOO_BIG);
    CHECK(out.cap <= (1u << 21));
    /* After an error the stream is usable again. */
    out.len = 0;
    xr_buf small = {0};
    CHECK_EQ(xr_zdeflate(d, text, sizeof text - 1, NULL, 0, &small), XR_Z_OK);
    CHECK_EQ(xr_zinflate(i, small.p, small.len, 1 << 20, 0, &out), XR_Z_OK);
    CHECK_EQ(out.len, sizeof text - 1);
    /* Exactly at the limit is fine; one byte under the size is not. */
    out.len = 0;
    CHECK_EQ(xr_zinflate(i, small.p, small.len, sizeof text - 1, 0, &out), XR_Z_OK);
    out.len = 0;
    CHECK_EQ(xr_zinflate(i, small.p, small.len, sizeof text - 2, 0, &out), XR_Z_TOO_BIG);
    /* Not DEFLATE at all (BTYPE 11 is reserved). */
    out.len = 0;
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x00};
    CHECK_EQ(xr_zinflate(i, junk, sizeof junk, 1 << 20, 0, &out), XR_Z_CORRUPT);
    free(zeros);
    xr_zdeflate_free(d);
    xr_zinflate_free(i);
    xr_buf_free(&z);
    xr_buf_free(&small);
    xr_buf_free(&out);
}

/* A masked client frame with the given first byte and payload. */
static size_t frame(uint8_t *buf, uint8_t b0, const char *p, size_t n)
{
    static const uint8_t mask[4] = {1, 2, 3, 4};
    size_t hl = xr_ws_header(buf, b0 & 0x4F, b0 >> 7, n, mask);
    memcpy(buf + hl, p, n);
    xr_ws_mask(buf + hl, n, mask, 0);
    return hl + n;
}

static void test_rsv1_rules(void)
{
    uint8_t buf[64];
    xr_ws_frame f;
    xr_ws_decoder d;

    /* Not negotiated: RSV1 is a protocol error. */
    xr_ws_decoder_init(&d, 1000, 1000, 1);
    size_t n = frame(buf, 0x80 | XR_WS_RSV1 | XR_WS_OP_TEXT, "\xff", 1);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_ERROR);
    CHECK_EQ(f.error_code, 1002);

    xr_ws_decoder_init(&d, 1000, 1000, 1);
    d.rsv1_ok = 1;
    /* Compressed text is not UTF-8-checked before inflating. */
    n = frame(buf, 0x80 | XR_WS_RSV1 | XR_WS_OP_TEXT, "\xff\xfe", 2);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
    CHECK_EQ(f.compressed, 1);
    /* First fragment compressed: the continuation inherits it... */
    n = frame(buf, XR_WS_RSV1 | XR_WS_OP_BINARY, "ab", 2);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
    CHECK_EQ(f.compressed, 1);
    /* ...a ping in between is never compressed... */
    n = frame(buf, 0x80 | XR_WS_RSV1 | XR_WS_OP_PING, "", 0);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_ERROR);
    CHECK_EQ(f.error_code, 1002);
    xr_ws_decoder_init(&d, 1000, 1000, 1);
    d.rsv1_ok = 1;
    n = frame(buf, XR_WS_RSV1 | XR_WS_OP_BINARY, "ab", 2);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
    n = frame(buf, 0x80 | XR_WS_OP_CONT, "cd", 2);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
    CHECK_EQ(f.compressed, 1);
    /* ...and RSV1 on a continuation is an error. */
    n = frame(buf, XR_WS_OP_BINARY, "ab", 2);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
    CHECK_EQ(f.compressed, 0);
    n = frame(buf, 0x80 | XR_WS_RSV1 | XR_WS_OP_CONT, "cd", 2);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_ERROR);
    CHECK_EQ(f.error_code, 1002);
    /* RSV2 and RSV3 stay errors. */
    xr_ws_decoder_init(&d, 1000, 1000, 1);
    d.rsv1_ok = 1;
    n = frame(buf, 0x80 | XR_WS_OP_TEXT, "a", 1);
    buf[0] |= 0x20;
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_ERROR);
    /* The header writer carries RSV1. */
    uint8_t h[XR_WS_MAX_HEADER];
    xr_ws_header(h, XR_WS_OP_TEXT | XR_WS_RSV1, 1, 5, NULL);
    CHECK_EQ(h[0], 0xC1);
}

int main(void)
{
    RUN(test_negotiate_defaults);
    RUN(test_negotiate_parameters);
    RUN(test_negotiate_declines);
    RUN(test_round_trip);
    RUN(test_stored_prefix);
    RUN(test_bomb_and_garbage);
    RUN(test_rsv1_rules);
    return tap_done();
}
