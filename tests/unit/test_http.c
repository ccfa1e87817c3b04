/* SPDX-License-Identifier: Apache-2.0 */
#include "codec/http.h"
#include "tap.h"

#define UPGRADE_HEAD \
    "GET /chat?room=1 HTTP/1.1\r\n" \
    "Host: 127.0.0.1:8765\r\n" \
    "Upgrade: websocket\r\n" \
    "Connection: keep-alive, Upgrade\r\n" \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" \
    "Sec-WebSocket-Version: 13\r\n"

static long parse(const char *s, xr_http_request *req, xr_http_error *err)
{
    return xr_http_parse(s, strlen(s), req, err);
}

static int status_of(const char *s)
{
    xr_http_request req;
    xr_http_error err = {0, NULL};
    return parse(s, &req, &err) < 0 ? err.status : 0;
}

static const char *reason_of(const char *s)
{
    xr_http_request req;
    xr_http_error err = {0, NULL};
    return parse(s, &req, &err) < 0 && err.reason ? err.reason : "";
}

/* Classifies a complete head; returns the kind, or the status if REJECT. */
static int classify(const char *s, const char *const *sub, size_t nsub,
                    const char *const *orig, size_t norig, xr_ws_handshake *hs)
{
    xr_http_request req;
    xr_http_error err;
    if (parse(s, &req, &err) <= 0)
        return -1;
    xr_http_kind k = xr_http_classify(&req, sub, nsub, orig, norig, hs, &err);
    return k == XR_HTTP_REJECT ? err.status : (int)k;
}

static void test_upgrade_request_parsed(void)
{
    const char *s = UPGRADE_HEAD "\r\nleftover";
    xr_http_request req;
    xr_http_error err;
    long n = parse(s, &req, &err);
    CHECK_EQ(n, (long)strlen(s) - 8);
    CHECK_EQ(req.method_len, 3);
    CHECK_EQ(req.minor, 1);
    CHECK_EQ(req.n_headers, 5);
    CHECK_EQ(xr_http_path_len(&req), 5);
    const xr_http_header *h = xr_http_find(&req, "sec-websocket-key");
    CHECK(h && h->value_len == 24);
    h = xr_http_find(&req, "CONNECTION");
    CHECK(h && xr_http_has_token(h->value, h->value_len, "upgrade"));
    CHECK(!xr_http_has_token(h->value, h->value_len, "close"));
}

static void test_every_prefix_needs_more(void)
{
    const char *s = UPGRADE_HEAD "\r\n";
    size_t n = strlen(s);
    for (size_t cut = 0; cut < n; cut++) {
        xr_http_request req;
        xr_http_error err;
        CHECK_EQ(xr_http_parse(s, cut, &req, &err), 0);
    }
}

static void test_malformed_heads_rejected(void)
{
    CHECK_EQ(status_of("GE(T / HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ(status_of(" GET / HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET chat HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET  / HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET / HTTX/1.1\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET / HTTP/2.0\r\n\r\n"), 505);
    CHECK_EQ(status_of("GET / HTTP/1.1\n\r\n"), 400);            /* bare LF */
    CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: a\n\r\n"), 400);
    CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"), 400); /* folding */
    CHECK_STR(reason_of("GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n"), "obsolete header line folding");
    CHECK_STR(reason_of("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), "malformed header name");
    CHECK_EQ(status_of("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET / HTTP/1.1\r\n: a\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET /\x7f HTTP/1.1\r\n\r\n"), 400);
}

static void test_too_many_headers_is_431(void)
{
    char buf[4096] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i <= XR_HTTP_MAX_HEADERS; i++)
        strcat(buf, "X-A: b\r\n");
    strcat(buf, "\r\n");
    CHECK_EQ(status_of(buf), 431);
}

static void test_valid_upgrade_gets_rfc_accept_key(void)
{
    xr_ws_handshake hs;
    CHECK_EQ(classify(UPGRADE_HEAD "\r\n", NULL, 0, NULL, 0, &hs), XR_HTTP_UPGRADE);
    /* The worked example of RFC 6455 section 1.3. */
    CHECK_STR(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK(hs.protocol == NULL);
}

static void test_bad_upgrades_rejected_with_status(void)
{
    xr_ws_handshake hs;
    CHECK_EQ(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
                      NULL, 0, NULL, 0, &hs), 426);
    CHECK_EQ(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                      NULL, 0, NULL, 0, &hs), 400);
    CHECK_EQ(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n", NULL, 0, NULL, 0, &hs), 400);
    CHECK_EQ(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
                      NULL, 0, NULL, 0, &hs), 400);
    CHECK_EQ(classify("POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                      NULL, 0, NULL, 0, &hs), 400);
    CHECK_EQ(classify("GET / HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                      NULL, 0, NULL, 0, &hs), 400);
    CHECK_EQ(classify("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                      NULL, 0, NULL, 0, &hs), 400);
    CHECK_EQ(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                      NULL, 0, NULL, 0, &hs), 400);
    CHECK_EQ(classify(UPGRADE_HEAD "Content-Length: 5\r\n\r\n", NULL, 0, NULL, 0, &hs), 400);
    CHECK_EQ(classify(UPGRADE_HEAD "Transfer-Encoding: chunked\r\n\r\n", NULL, 0, NULL, 0, &hs), 400);
}

static void test_plain_requests_classified_plain(void)
{
    xr_ws_handshake hs;
    CHECK_EQ(classify("GET /health HTTP/1.1\r\nHost: a\r\n\r\n", NULL, 0, NULL, 0, &hs), XR_HTTP_PLAIN);
    CHECK_EQ(classify("HEAD /metrics HTTP/1.0\r\n\r\n", NULL, 0, NULL, 0, &hs), XR_HTTP_PLAIN);
    CHECK_EQ(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n", NULL, 0, NULL, 0, &hs), XR_HTTP_PLAIN);
}

static void test_origin_allow_list(void)
{
    const char *origins[] = {"https://chat.example", "http://localhost:8080"};
    xr_ws_handshake hs;
    CHECK_EQ(classify(UPGRADE_HEAD "Origin: http://localhost:8080\r\n\r\n", NULL, 0, origins, 2, &hs),
             XR_HTTP_UPGRADE);
    CHECK_EQ(classify(UPGRADE_HEAD "Origin: https://evil.example\r\n\r\n", NULL, 0, origins, 2, &hs), 403);
    CHECK_EQ(classify(UPGRADE_HEAD "\r\n", NULL, 0, origins, 2, &hs), 403);
    /* Whole origins only: a page on a host that starts or ends like an
     * allowed one is another site (cross-site WebSocket hijacking). */
    CHECK_EQ(classify(UPGRADE_HEAD "Origin: https://chat.example.evil.test\r\n\r\n", NULL, 0, origins, 2,
                      &hs), 403);
    CHECK_EQ(classify(UPGRADE_HEAD "Origin: https://chat.exampl\r\n\r\n", NULL, 0, origins, 2, &hs), 403);
    CHECK_EQ(classify(UPGRADE_HEAD "Origin: \r\n\r\n", NULL, 0, origins, 2, &hs), 403);
    CHECK_EQ(classify(UPGRADE_HEAD "Origin: null\r\n\r\n", NULL, 0, origins, 2, &hs), 403);
    /* Scheme and host compare without case (RFC 6454 4). */
    CHECK_EQ(classify(UPGRADE_HEAD "Origin: HTTPS://Chat.Example\r\n\r\n", NULL, 0, origins, 2, &hs),
             XR_HTTP_UPGRADE);
    /* No list: any origin, or none. */
    CHECK_EQ(classify(UPGRADE_HEAD "Origin: https://evil.example\r\n\r\n", NULL, 0, NULL, 0, &hs),
             XR_HTTP_UPGRADE);
}

static void test_subprotocol_chosen_by_server_preference(void)
{
    const char *ours[] = {"xraptor.v1", "chat"};
    xr_ws_handshake hs;
    CHECK_EQ(classify(UPGRADE_HEAD "Sec-WebSocket-Protocol: chat, xraptor.v1\r\n\r\n", ours, 2, NULL, 0, &hs),
             XR_HTTP_UPGRADE);
    CHECK_STR(hs.protocol, "xraptor.v1");
    CHECK_EQ(classify(UPGRADE_HEAD "Sec-WebSocket-Protocol: other\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
                      ours, 2, NULL, 0, &hs), XR_HTTP_UPGRADE);
    CHECK_STR(hs.protocol, "chat");
    CHECK_EQ(classify(UPGRADE_HEAD "Sec-WebSocket-Protocol: other\r\n\r\n", ours, 2, NULL, 0, &hs),
             XR_HTTP_UPGRADE);
    CHECK(hs.protocol == NULL);
}

int main(void)
{
    RUN(test_upgrade_request_parsed);
    RUN(test_every_prefix_needs_more);
    RUN(test_malformed_heads_rejected);
    RUN(test_too_many_headers_is_431);
    RUN(test_valid_upgrade_gets_rfc_accept_key);
    RUN(test_bad_upgrades_rejected_with_status);
    RUN(test_plain_requests_classified_plain);
    RUN(test_origin_allow_list);
    RUN(test_subprotocol_chosen_by_server_preference);
    return tap_done();
}
