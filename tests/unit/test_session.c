/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The connection state machine driven by scripts, as wslay's
 * tests/wslay_event_test.c drives its session: the test is the client on
 * the other end of an in-memory socket pair, writes scripted bytes, turns
 * the loop, and compares the exact bytes the transport wrote and the hooks
 * it called. It links the transport, codec and util libraries only (no
 * protocol, no server): a call from the transport upward would not link.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "transport/internal.h"
#include "util/clock.h"
#include "tap.h"

static const uint8_t MASK[4] = {0x11, 0x22, 0x33, 0x44};

/* ---- what the hooks saw ------------------------------------------------- */

typedef struct session {
    struct event_base *base;
    xr_transport *t;
    xr_options o;
    xr_logger log;
    int peer;                   /* the client's end */
    xr_conn *conn;
    int opens, messages, closes, gones;
    int close_code;
    char close_reason[128];
    char msg[4096];
    size_t msg_len;
    int in_send;                /* inside a call into the transport */
    int hook_inside_send;       /* a hook ran while in_send was set */
    int written_inside_send;    /* the peer could read during a send */
    /* what the message hook does */
    enum { H_NONE, H_ECHO, H_CLOSE, H_FLOOD, H_AS_TEXT } on_message;
    int send_rc[4];
    uint8_t out[1 << 16];       /* bytes the transport wrote, unread */
    size_t out_len;
} session;

static int readable(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
}

static void hook_open(xr_conn *c, void *ud)
{
    session *s = ud;
    s->hook_inside_send |= s->in_send;
    s->opens++;
    s->conn = c;
}

static void hook_message(xr_conn *c, xr_msg_type type, const char *data, size_t len, void *ud)
{
    session *s = ud;
    s->hook_inside_send |= s->in_send;
    s->messages++;
    s->msg_len = len < sizeof s->msg ? len : sizeof s->msg;
    memcpy(s->msg, data, s->msg_len);
    s->in_send = 1;
    switch (s->on_message) {
    case H_ECHO:
        s->send_rc[0] = xr_conn_send(c, type, data, len);
        /* Queued, not written: the peer sees nothing until we return. */
        s->written_inside_send |= readable(s->peer);
        break;
    case H_CLOSE:
        s->send_rc[0] = xr_conn_close(c, 4000, "app says bye");
        s->send_rc[1] = xr_conn_send(c, XR_TEXT, "late", 4);
        break;
    case H_FLOOD: {
        static char big[1000];
        memset(big, 'b', sizeof big);
        for (int i = 0; i < 4; i++)
            s->send_rc[i] = xr_conn_send(c, XR_BINARY, big, sizeof big);
        break;
    }
    case H_AS_TEXT:
        /* The bytes of a binary message sent back as text, then as
         * binary: a text frame must be UTF-8 (RFC 6455 8.1), so the first
         * is refused and nothing of it queued. */
        s->send_rc[0] = xr_conn_send(c, XR_TEXT, data, len);
        s->send_rc[1] = xr_conn_send(c, XR_BINARY, data, len);
        break;
    case H_NONE:
        break;
    }
    s->in_send = 0;
}

static void hook_close(xr_conn *c, int code, const char *reason, size_t len, void *ud)
{
    (void)c;
    session *s = ud;
    s->hook_inside_send |= s->in_send;
    s->closes++;
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%.*s", (int)len, reason);
}

static void hook_gone(xr_conn *c, void *ud)
{
    session *s = ud;
    s->hook_inside_send |= s->in_send;
    if (c == s->conn)
        s->conn = NULL;
    s->gones++;
}

/* ---- the script's verbs ------------------------------------------------- */

static void session_new(session *s, size_t max_output, unsigned ping_ms)
{
    memset(s, 0, sizeof *s);
    memset(&s->o, 0, sizeof s->o);
    s->o.max_message_size = 1 << 16;
    s->o.max_frame_size = 1 << 16;
    s->o.max_output_buffer = max_output;
    s->o.max_header_size = 8192;
    s->o.max_connections = 10;
    s->o.handshake_timeout_ms = 5000;
    s->o.ping_interval_ms = ping_ms;
    s->o.ping_timeout_ms = ping_ms;
    s->o.close_timeout_ms = 2000;
    s->log.level = XR_LOG_ERROR;
    s->base = event_base_new();
    char err[256];
    xr_transport_hooks h = {.open = hook_open, .message = hook_message, .close = hook_close,
                            .gone = hook_gone};
    s->t = xr_transport_new(s->base, &s->o, &s->log, &h, s, err, sizeof err);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    s->peer = sv[1];
    xr_conn_accept(s->t, sv[0], 0, 0, NULL, 0);
}

static void session_free(session *s)
{
    xr_transport_free(s->t);
    event_base_free(s->base);
    close(s->peer);
}

/* Turns the loop until nothing is left to do (or 2 s): every callback,
 * the flush after it, timers due. */
static void turn(session *s, int ms)
{
    uint64_t end = xr_now_ms() + (uint64_t)ms;
    do {
        event_base_loop(s->base, EVLOOP_NONBLOCK);
        ssize_t n;
        while (s->out_len < sizeof s->out &&
               (n = read(s->peer, s->out + s->out_len, sizeof s->out - s->out_len)) > 0)
            s->out_len += (size_t)n;
        if (ms)
            usleep(1000);
    } while (xr_now_ms() < end);
}

static void put(session *s, const void *p, size_t n)
{
    CHECK_EQ(write(s->peer, p, n), (long long)n);
    turn(s, 0);
    turn(s, 0);
}

/* A client frame: masked, as a browser sends it. */
static size_t frame(uint8_t *out, int fin, unsigned op, const void *payload, size_t len)
{
    size_t h = xr_ws_header(out, op, fin, len, MASK);
    if (len)
        memcpy(out + h, payload, len);
    xr_ws_mask(out + h, len, MASK, 0);
    return h + len;
}

static void send_frame(session *s, int fin, unsigned op, const void *payload, size_t len)
{
    uint8_t buf[4200];
    put(s, buf, frame(buf, fin, op, payload, len));
}

/* Takes n written bytes off the front and checks them. */
static int expect(session *s, const void *want, size_t n)
{
    int ok = s->out_len >= n && memcmp(s->out, want, n) == 0;
    if (!ok) {
        printf("#   expected %zu bytes:", n);
        for (size_t i = 0; i < n && i < 24; i++)
            printf(" %02x", ((const uint8_t *)want)[i]);
        printf("\n#   got %zu bytes:", s->out_len);
        for (size_t i = 0; i < s->out_len && i < 24; i++)
            printf(" %02x", s->out[i]);
        printf("\n");
        return 0;
    }
    memmove(s->out, s->out + n, s->out_len - n);
    s->out_len -= n;
    return 1;
}

/* A server frame (unmasked) as it must appear on the wire. */
static int expect_frame(session *s, unsigned op, const void *payload, size_t len)
{
    uint8_t want[4200];
    size_t h = xr_ws_header(want, op, 1, len, NULL);
    if (len)
        memcpy(want + h, payload, len);
    return expect(s, want, h + len);
}

static int expect_close(session *s, unsigned code, const char *reason)
{
    uint8_t p[125];
    size_t n = xr_ws_close_payload(p, code, reason, reason ? strlen(reason) : 0);
    return expect_frame(s, XR_WS_OP_CLOSE, p, n);
}

static void open_session(session *s, size_t max_output, unsigned ping_ms)
{
    session_new(s, max_output, ping_ms);
    static const char req[] =
        "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    put(s, req, sizeof req - 1);
    /* RFC 6455 section 1.3's own example key and answer. */
    static const char resp[] =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    CHECK(expect(s, resp, sizeof resp - 1));
    CHECK_EQ(s->opens, 1);
}

/* ---- the scripts -------------------------------------------------------- */

static void test_handshake_then_echo_is_queued_and_written_after_the_hook(void)
{
    session s;
    open_session(&s, 1 << 20, 0);
    s.on_message = H_ECHO;
    send_frame(&s, 1, XR_WS_OP_TEXT, "hello", 5);
    CHECK_EQ(s.messages, 1);
    CHECK_EQ(s.send_rc[0], XR_OK);
    CHECK_EQ(s.written_inside_send, 0);
    CHECK(expect_frame(&s, XR_WS_OP_TEXT, "hello", 5));
    CHECK_EQ(s.out_len, 0);
    session_free(&s);
}

static void test_text_sent_must_be_utf8(void)
{
    static const struct { const char *bytes; size_t len; int rc; } cases[] = {
        {"\xff\xfe", 2, XR_EINVAL},           /* never in UTF-8 */
        {"caf\xc3", 4, XR_EINVAL},             /* cut inside a character */
        {"\xc0\x80", 2, XR_EINVAL},           /* overlong NUL */
        {"\xed\xa0\x80", 3, XR_EINVAL},       /* a UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 4, XR_EINVAL},   /* past U+10FFFF */
        {"caf\xc3\xa9 \xe2\x98\x83", 9, XR_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        session s;
        open_session(&s, 1 << 20, 0);
        s.on_message = H_AS_TEXT;
        send_frame(&s, 1, XR_WS_OP_BINARY, cases[i].bytes, cases[i].len);
        CHECK_EQ(s.send_rc[0], cases[i].rc);
        CHECK_EQ(s.send_rc[1], XR_OK);
        if (cases[i].rc == XR_OK)
            CHECK(expect_frame(&s, XR_WS_OP_TEXT, cases[i].bytes, cases[i].len));
        CHECK(expect_frame(&s, XR_WS_OP_BINARY, cases[i].bytes, cases[i].len));
        CHECK_EQ(s.out_len, 0);
        session_free(&s);
    }
}

static void test_pipelined_messages_answered_in_one_burst_in_order(void)
{
    session s;
    open_session(&s, 1 << 20, 0);
    s.on_message = H_ECHO;
    uint8_t buf[4096];
    size_t n = 0;
    char m[8];
    for (int i = 0; i < 16; i++) {
        snprintf(m, sizeof m, "m%02d", i);
        n += frame(buf + n, 1, XR_WS_OP_TEXT, m, 3);
    }
    put(&s, buf, n);
    CHECK_EQ(s.messages, 16);
    for (int i = 0; i < 16; i++) {
        snprintf(m, sizeof m, "m%02d", i);
        CHECK(expect_frame(&s, XR_WS_OP_TEXT, m, 3));
    }
    session_free(&s);
}

static void test_fragments_reassembled_with_a_ping_between(void)
{
    session s;
    open_session(&s, 1 << 20, 0);
    send_frame(&s, 0, XR_WS_OP_TEXT, "frag", 4);
    send_frame(&s, 1, XR_WS_OP_PING, "p1", 2);
    /* The pong goes out at once, in the middle of the message. */
    CHECK(expect_frame(&s, XR_WS_OP_PONG, "p1", 2));
    CHECK_EQ(s.messages, 0);
    send_frame(&s, 0, XR_WS_OP_CONT, "men", 3);
    send_frame(&s, 1, XR_WS_OP_CONT, "ted", 3);
    CHECK_EQ(s.messages, 1);
    CHECK_EQ(s.msg_len, 10);
    CHECK(memcmp(s.msg, "fragmented", 10) == 0);
    session_free(&s);
}

static void test_frame_split_across_reads_byte_by_byte(void)
{
    session s;
    open_session(&s, 1 << 20, 0);
    uint8_t buf[512];
    char text[300];
    memset(text, 'x', sizeof text);
    size_t n = frame(buf, 1, XR_WS_OP_BINARY, text, sizeof text);
    for (size_t i = 0; i < n; i++)
        put(&s, buf + i, 1);
    CHECK_EQ(s.messages, 1);
    CHECK_EQ(s.msg_len, sizeof text);
    CHECK(memcmp(s.msg, text, sizeof text) == 0);
    session_free(&s);
}

static void test_client_close_echoed_then_half_closed(void)
{
    session s;
    open_session(&s, 1 << 20, 0);
    uint8_t p[XR_WS_MAX_CONTROL];
    /* Not 1000: the answer carries the peer's own code (5.5.1). */
    size_t n = xr_ws_close_payload(p, 3000, "bye", 3);
    send_frame(&s, 1, XR_WS_OP_CLOSE, p, n);
    CHECK(expect_close(&s, 3000, NULL));
    CHECK_EQ(s.closes, 1);
    CHECK_EQ(s.close_code, 3000);
    CHECK_STR(s.close_reason, "bye");
    /* Lingering: our side shut down its writes (EOF for the client), and
     * the connection goes when the client closes too. */
    char c;
    CHECK_EQ(read(s.peer, &c, 1), 0);
    CHECK_EQ(s.gones, 0);
    shutdown(s.peer, SHUT_WR);
    turn(&s, 0);
    CHECK_EQ(s.gones, 1);
    CHECK_EQ(s.closes, 1);
    session_free(&s);
}

static void test_app_close_deferred_to_the_loop(void)
{
    session s;
    open_session(&s, 1 << 20, 0);
    s.on_message = H_CLOSE;
    send_frame(&s, 1, XR_WS_OP_TEXT, "x", 1);
    CHECK_EQ(s.send_rc[0], XR_OK);
    CHECK_EQ(s.send_rc[1], XR_ECLOSED);     /* closing: no more messages */
    CHECK_EQ(s.hook_inside_send, 0);        /* the close hook ran after */
    CHECK_EQ(s.closes, 1);
    CHECK_EQ(s.close_code, 4000);
    CHECK_STR(s.close_reason, "app says bye");
    CHECK(expect_close(&s, 4000, "app says bye"));
    /* The client answers; the server finishes and lets go. */
    uint8_t p[XR_WS_MAX_CONTROL];
    size_t n = xr_ws_close_payload(p, 4000, NULL, 0);
    send_frame(&s, 1, XR_WS_OP_CLOSE, p, n);
    shutdown(s.peer, SHUT_WR);
    turn(&s, 0);
    CHECK_EQ(s.gones, 1);
    CHECK_EQ(s.closes, 1);
    session_free(&s);
}

static void test_slow_reader_closed_1008_from_the_loop_not_inside_the_send(void)
{
    session s;
    open_session(&s, 1500, 0);
    s.on_message = H_FLOOD;
    send_frame(&s, 1, XR_WS_OP_TEXT, "go", 2);
    CHECK_EQ(s.send_rc[0], XR_OK);          /* 1004 bytes queued */
    CHECK_EQ(s.send_rc[1], XR_OK);          /* 1004 <= 1500: one more fits */
    CHECK_EQ(s.send_rc[2], XR_ELIMIT);      /* 2008 queued > 1500: closed */
    CHECK_EQ(s.send_rc[3], XR_ECLOSED);
    CHECK_EQ(s.hook_inside_send, 0);
    CHECK_EQ(s.closes, 1);
    CHECK_EQ(s.close_code, 1008);
    char big[1000];
    memset(big, 'b', sizeof big);
    CHECK(expect_frame(&s, XR_WS_OP_BINARY, big, sizeof big));
    CHECK(expect_frame(&s, XR_WS_OP_BINARY, big, sizeof big));
    CHECK(expect_close(&s, 1008, "output buffer exceeds max_output_buffer"));
    session_free(&s);
}

static void test_invalid_utf8_fails_before_the_frame_is_complete(void)
{
    session s;
    open_session(&s, 1 << 20, 0);
    /* A 1000-byte text frame whose 6th byte can never be UTF-8; only its
     * first 20 bytes arrive. */
    uint8_t buf[1100];
    char text[1000];
    memset(text, 'a', sizeof text);
    text[5] = (char)0xFF;
    size_t n = frame(buf, 1, XR_WS_OP_TEXT, text, sizeof text);
    put(&s, buf, n - 980);
    CHECK_EQ(s.closes, 1);
    CHECK_EQ(s.close_code, 1007);
    CHECK(expect_close(&s, 1007, "text message is not valid UTF-8"));
    session_free(&s);
}

static void test_unmasked_client_frame_is_a_protocol_error(void)
{
    session s;
    open_session(&s, 1 << 20, 0);
    uint8_t buf[16];
    size_t n = xr_ws_header(buf, XR_WS_OP_TEXT, 1, 2, NULL);
    memcpy(buf + n, "hi", 2);
    put(&s, buf, n + 2);
    CHECK_EQ(s.messages, 0);
    CHECK_EQ(s.close_code, 1002);
    CHECK(expect_close(&s, 1002, "client frame is not masked"));
    session_free(&s);
}

static void test_silent_peer_pinged_then_closed_1011(void)
{
    session s;
    open_session(&s, 1 << 20, 100);
    turn(&s, 150);
    CHECK(expect_frame(&s, XR_WS_OP_PING, NULL, 0));
    send_frame(&s, 1, XR_WS_OP_PONG, NULL, 0);
    CHECK_EQ(s.closes, 0);
    turn(&s, 150);                          /* silent again: pinged again */
    CHECK(expect_frame(&s, XR_WS_OP_PING, NULL, 0));
    turn(&s, 250);                          /* no pong this time */
    CHECK_EQ(s.closes, 1);
    CHECK_EQ(s.close_code, 1011);
    CHECK(expect_close(&s, 1011, "keepalive ping timeout"));
    session_free(&s);
}

static void test_destroyed_connection_reports_1006_then_gone(void)
{
    session s;
    open_session(&s, 1 << 20, 0);
    close(s.peer);
    s.peer = open("/dev/null", O_RDONLY);
    turn(&s, 0);
    CHECK_EQ(s.closes, 1);
    CHECK_EQ(s.close_code, 1006);
    CHECK_EQ(s.gones, 1);
    CHECK_EQ(xr_transport_sockets(s.t), 0);
    session_free(&s);
}

int main(void)
{
    RUN(test_handshake_then_echo_is_queued_and_written_after_the_hook);
    RUN(test_pipelined_messages_answered_in_one_burst_in_order);
    RUN(test_fragments_reassembled_with_a_ping_between);
    RUN(test_frame_split_across_reads_byte_by_byte);
    RUN(test_client_close_echoed_then_half_closed);
    RUN(test_app_close_deferred_to_the_loop);
    RUN(test_slow_reader_closed_1008_from_the_loop_not_inside_the_send);
    RUN(test_invalid_utf8_fails_before_the_frame_is_complete);
    RUN(test_text_sent_must_be_utf8);
    RUN(test_unmasked_client_frame_is_a_protocol_error);
    RUN(test_silent_peer_pinged_then_closed_1011);
    RUN(test_destroyed_connection_reports_1006_then_gone);
    return tap_done();
}
