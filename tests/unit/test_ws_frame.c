/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>

#include "codec/ws_frame.h"
#include "tap.h"

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* A client frame as a browser sends it: masked unless told otherwise. */
static size_t mkframe(uint8_t *out, int fin, unsigned rsv, unsigned op,
                      const void *payload, size_t len, int masked)
{
    size_t h = xr_ws_header(out, op, fin, len, masked ? MASK : NULL);
    out[0] |= (uint8_t)(rsv << 4);
    memcpy(out + h, payload, len);
    if (masked)
        xr_ws_mask(out + h, len, MASK, 0);
    return h + len;
}

static xr_ws_decoder dec(void)
{
    xr_ws_decoder d;
    xr_ws_decoder_init(&d, 1 << 20, 1 << 20, 1);
    return d;
}

static int decode_error(uint8_t *buf, size_t n)
{
    xr_ws_decoder d = dec();
    xr_ws_frame f;
    return xr_ws_decode(&d, buf, n, &f) == XR_WS_ERROR ? f.error_code : 0;
}

static void test_lengths_7_16_64_bit_round_trip(void)
{
    static const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 200000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        uint8_t *payload = malloc(n + 1), *buf = malloc(n + XR_WS_MAX_HEADER);
        for (size_t i = 0; i < n; i++)
            payload[i] = (uint8_t)('a' + i % 26);
        size_t total = mkframe(buf, 1, 0, XR_WS_OP_BINARY, payload, n, 1);
        CHECK_EQ(total - n, n < 126 ? 6 : n <= 65535 ? 8 : 14);
        xr_ws_decoder d = dec();
        xr_ws_frame f;
        CHECK_EQ(xr_ws_decode(&d, buf, total, &f), XR_WS_FRAME);
        CHECK_EQ(f.size, total);
        CHECK_EQ(f.len, n);
        CHECK_EQ(f.opcode, XR_WS_OP_BINARY);
        CHECK(n == 0 || memcmp(f.payload, payload, n) == 0);
        free(payload);
        free(buf);
    }
}

static void test_every_prefix_needs_more(void)
{
    uint8_t payload[300], buf[400];
    memset(payload, 'x', sizeof payload);
    size_t total = mkframe(buf, 1, 0, XR_WS_OP_TEXT, payload, sizeof payload, 1);
    for (size_t cut = 0; cut < total; cut++) {
        xr_ws_decoder d = dec();
        xr_ws_frame f;
        CHECK_EQ(xr_ws_decode(&d, buf, cut, &f), XR_WS_NEED_MORE);
        CHECK(f.size > cut && f.size <= total);
    }
}

static void test_unmasked_client_frame_is_1002(void)
{
    uint8_t buf[32];
    size_t n = mkframe(buf, 1, 0, XR_WS_OP_TEXT, "hi", 2, 0);
    CHECK_EQ(decode_error(buf, n), 1002);
}

static void test_masked_server_frame_is_1002_for_clients(void)
{
    uint8_t buf[32];
    size_t n = mkframe(buf, 1, 0, XR_WS_OP_TEXT, "hi", 2, 1);
    xr_ws_decoder d;
    xr_ws_decoder_init(&d, 100, 100, 0);
    xr_ws_frame f;
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_ERROR);
    CHECK_EQ(f.error_code, 1002);
}

static void test_reserved_bits_are_1002(void)
{
    for (unsigned rsv = 1; rsv < 8; rsv++) {
        uint8_t buf[32];
        size_t n = mkframe(buf, 1, rsv, XR_WS_OP_TEXT, "hi", 2, 1);
        CHECK_EQ(decode_error(buf, n), 1002);
    }
}

static void test_reserved_opcodes_are_1002(void)
{
    static const unsigned ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        uint8_t buf[32];
        size_t n = mkframe(buf, 1, 0, ops[k], "", 0, 1);
        CHECK_EQ(decode_error(buf, n), 1002);
    }
}

static void test_control_frame_rules(void)
{
    uint8_t buf[256], big[126];
    memset(big, 'p', sizeof big);
    size_t n = mkframe(buf, 0, 0, XR_WS_OP_PING, "x", 1, 1);
    CHECK_EQ(decode_error(buf, n), 1002);            /* fragmented ping */
    n = mkframe(buf, 1, 0, XR_WS_OP_PING, big, 126, 1);
    CHECK_EQ(decode_error(buf, 4), 1002);            /* caught from the header */
    n = mkframe(buf, 1, 0, XR_WS_OP_PONG, big, 125, 1);
    xr_ws_decoder d = dec();
    xr_ws_frame f;
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
    CHECK_EQ(f.len, 125);
}

static void test_fragmented_text_reassembly_rules(void)
{
    uint8_t buf[512];
    size_t off = 0, n;
    /* "κόσμε" split inside a code point, with a ping in between. */
    const char *s = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    off += mkframe(buf + off, 0, 0, XR_WS_OP_TEXT, s, 3, 1);
    off += mkframe(buf + off, 1, 0, XR_WS_OP_PING, "p", 1, 1);
    off += mkframe(buf + off, 0, 0, XR_WS_OP_CONT, s + 3, 4, 1);
    off += mkframe(buf + off, 1, 0, XR_WS_OP_CONT, s + 7, strlen(s) - 7, 1);
    xr_ws_decoder d = dec();
    xr_ws_frame f;
    static const unsigned want_op[] = {XR_WS_OP_TEXT, XR_WS_OP_PING, XR_WS_OP_CONT, XR_WS_OP_CONT};
    size_t pos = 0;
    for (int k = 0; k < 4; k++) {
        CHECK_EQ(xr_ws_decode(&d, buf + pos, off - pos, &f), XR_WS_FRAME);
        CHECK_EQ(f.opcode, want_op[k]);
        if (k != 1)
            CHECK_EQ(f.msg_opcode, XR_WS_OP_TEXT);
        pos += f.size;
    }
    CHECK_EQ(pos, off);
    CHECK_EQ(d.frag_opcode, 0);

    /* Continuation with nothing to continue. */
    n = mkframe(buf, 1, 0, XR_WS_OP_CONT, "x", 1, 1);
    CHECK_EQ(decode_error(buf, n), 1002);
    /* A new message before the fragmented one ended. */
    d = dec();
    n = mkframe(buf, 0, 0, XR_WS_OP_TEXT, "a", 1, 1);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
    n = mkframe(buf, 1, 0, XR_WS_OP_BINARY, "b", 1, 1);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_ERROR);
    CHECK_EQ(f.error_code, 1002);
}

static void test_invalid_utf8_is_1007_at_the_bad_fragment(void)
{
    uint8_t buf[64];
    xr_ws_decoder d = dec();
    xr_ws_frame f;
    size_t n = mkframe(buf, 0, 0, XR_WS_OP_TEXT, "ok \xed\xa0", 5, 1);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_ERROR);
    CHECK_EQ(f.error_code, 1007);
    /* A text message that ends mid code point. */
    d = dec();
    n = mkframe(buf, 1, 0, XR_WS_OP_TEXT, "\xe2\x82", 2, 1);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_ERROR);
    CHECK_EQ(f.error_code, 1007);
    /* Binary is never checked. */
    d = dec();
    n = mkframe(buf, 1, 0, XR_WS_OP_BINARY, "\xff\xfe", 2, 1);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
}

/* Unmasking tells the decoder whether a text frame was all ASCII, which
 * lets it skip the UTF-8 check: never when a code point is still open. */
static void test_mask_reports_non_ascii_and_ascii_cannot_finish_a_code_point(void)
{
    /* Every length across the 16- and 8-byte blocks, the odd byte anywhere. */
    for (size_t n = 1; n <= 40; n++) {
        for (size_t at = 0; at <= n; at++) {
            uint8_t b[48];
            memset(b, 'a', n);
            if (at < n)
                b[at] = 0xC3;
            for (size_t off = 0; off < 4; off++) {
                uint8_t m[48];
                memcpy(m, b, n);
                xr_ws_mask(m, n, MASK, off);    /* masked, as RFC 6455 5.3 says */
                int same = 1;
                for (size_t i = 0; i < n; i++)
                    same &= m[i] == (uint8_t)(b[i] ^ MASK[(off + i) % 4]);
                CHECK(same);
                CHECK_EQ(xr_ws_mask(m, n, MASK, off) != 0, at < n);
                CHECK(memcmp(m, b, n) == 0);
            }
        }
    }
    /* A fragment that ends inside a code point, then ASCII: invalid. */
    uint8_t buf[64];
    xr_ws_decoder d = dec();
    xr_ws_frame f;
    size_t n = mkframe(buf, 0, 0, XR_WS_OP_TEXT, "caf\xc3", 4, 1);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
    n = mkframe(buf, 0, 0, XR_WS_OP_CONT, "e!", 2, 1);     /* at this fragment, not the last */
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_ERROR);
    CHECK_EQ(f.error_code, 1007);
    /* The same while the frame is still arriving (checked as it comes). */
    d = dec();
    d.stream = 1;
    n = mkframe(buf, 0, 0, XR_WS_OP_TEXT, "caf\xc3", 4, 1);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
    n = mkframe(buf, 1, 0, XR_WS_OP_CONT, "e! and more", 11, 1);
    CHECK_EQ(xr_ws_decode(&d, buf, n - 4, &f), XR_WS_ERROR);
    CHECK_EQ(f.error_code, 1007);
    /* And the good continuation passes. */
    d = dec();
    n = mkframe(buf, 0, 0, XR_WS_OP_TEXT, "caf\xc3", 4, 1);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
    n = mkframe(buf, 1, 0, XR_WS_OP_CONT, "\xa9!", 2, 1);
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
}

static void test_oversize_frame_and_message_are_1009(void)
{
    uint8_t buf[64];
    xr_ws_decoder d;
    xr_ws_frame f;
    xr_ws_decoder_init(&d, 100, 150, 1);
    /* The frame header alone is enough to refuse: no payload sent yet. */
    size_t h = xr_ws_header(buf, XR_WS_OP_BINARY, 1, 101, MASK);
    CHECK_EQ(xr_ws_decode(&d, buf, h, &f), XR_WS_ERROR);
    CHECK_EQ(f.error_code, 1009);
    CHECK_STR(f.error, "frame of 101 bytes exceeds max_frame_size 100");
    /* Two fragments under the frame limit that together exceed the message limit. */
    uint8_t *big = calloc(1, 300);
    xr_ws_decoder_init(&d, 100, 150, 1);
    size_t n = mkframe(big, 0, 0, XR_WS_OP_BINARY, big + 200, 80, 1);
    CHECK_EQ(xr_ws_decode(&d, big, n, &f), XR_WS_FRAME);
    h = xr_ws_header(buf, XR_WS_OP_CONT, 1, 80, MASK);
    CHECK_EQ(xr_ws_decode(&d, buf, h, &f), XR_WS_ERROR);
    CHECK_EQ(f.error_code, 1009);
    free(big);
}

static void test_64bit_length_top_bit_is_1002(void)
{
    uint8_t buf[14] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    CHECK_EQ(decode_error(buf, sizeof buf), 1002);
}

static void test_close_frame_validation(void)
{
    uint8_t buf[200], pl[130];
    xr_ws_decoder d;
    xr_ws_frame f;
    size_t n = mkframe(buf, 1, 0, XR_WS_OP_CLOSE, "", 0, 1);
    d = dec();
    CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
    CHECK_EQ(f.close_code, 1005);

    n = mkframe(buf, 1, 0, XR_WS_OP_CLOSE, "\x03", 1, 1);
    CHECK_EQ(decode_error(buf, n), 1002);

    static const unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        size_t pn = xr_ws_close_payload(pl, bad[k], NULL, 0);
        n = mkframe(buf, 1, 0, XR_WS_OP_CLOSE, pl, pn, 1);
        CHECK_EQ(decode_error(buf, n), 1002);
    }
    static const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        size_t pn = xr_ws_close_payload(pl, good[k], "bye", 3);
        n = mkframe(buf, 1, 0, XR_WS_OP_CLOSE, pl, pn, 1);
        d = dec();
        CHECK_EQ(xr_ws_decode(&d, buf, n, &f), XR_WS_FRAME);
        CHECK_EQ(f.close_code, good[k]);
        CHECK_EQ(f.reason_len, 3);
    }
    size_t pn = xr_ws_close_payload(pl, 1000, "\xce\xba\xed\xa0\x80", 5);
    n = mkframe(buf, 1, 0, XR_WS_OP_CLOSE, pl, pn, 1);
    CHECK_EQ(decode_error(buf, n), 1007);
}

static void test_close_reason_cut_on_utf8_boundary(void)
{
    char reason[200];
    uint8_t pl[XR_WS_MAX_CONTROL];
    /* 'a' then 2-byte characters: the cut at 123 falls inside one. */
    reason[0] = 'a';
    for (int i = 1; i < 199; i += 2) {
        reason[i] = (char)0xc3;
        reason[i + 1] = (char)0xa9;
    }
    size_t n = xr_ws_close_payload(pl, 1000, reason, 199);
    CHECK(n <= XR_WS_MAX_CONTROL);
    CHECK(xr_utf8_valid(pl + 2, n - 2));
    CHECK_EQ(n, 2 + 123);
}

static void test_server_header_encoding(void)
{
    uint8_t h[XR_WS_MAX_HEADER];
    CHECK_EQ(xr_ws_header(h, XR_WS_OP_TEXT, 1, 5, NULL), 2);
    CHECK_EQ(h[0], 0x81);
    CHECK_EQ(h[1], 5);
    CHECK_EQ(xr_ws_header(h, XR_WS_OP_BINARY, 1, 126, NULL), 4);
    CHECK_EQ(h[1], 126);
    CHECK_EQ((h[2] << 8) | h[3], 126);
    CHECK_EQ(xr_ws_header(h, XR_WS_OP_BINARY, 0, 65536, NULL), 10);
    CHECK_EQ(h[0], 0x02);
    CHECK_EQ(h[1], 127);
    CHECK_EQ(h[7], 1);
}

int main(void)
{
    RUN(test_lengths_7_16_64_bit_round_trip);
    RUN(test_every_prefix_needs_more);
    RUN(test_unmasked_client_frame_is_1002);
    RUN(test_masked_server_frame_is_1002_for_clients);
    RUN(test_reserved_bits_are_1002);
    RUN(test_reserved_opcodes_are_1002);
    RUN(test_control_frame_rules);
    RUN(test_fragmented_text_reassembly_rules);
    RUN(test_invalid_utf8_is_1007_at_the_bad_fragment);
    RUN(test_mask_reports_non_ascii_and_ascii_cannot_finish_a_code_point);
    RUN(test_oversize_frame_and_message_are_1009);
    RUN(test_64bit_length_top_bit_is_1002);
    RUN(test_close_frame_validation);
    RUN(test_close_reason_cut_on_utf8_boundary);
    RUN(test_server_header_encoding);
    return tap_done();
}
