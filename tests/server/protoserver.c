/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xraptor-protoserver: routes and middleware for the protocol integration
 * tests, on the real library and the memory antenna.
 *   GET|POST|PUT /echo        answers its payload
 *   POST /fail                handler error
 *   POST /later               answers 200 ms later (async reply)
 *   POST /publish             payload "CHANNEL|MESSAGE" -> xr_publish
 *   SUB /stream, UNSUB /stream
 *   POST /room/join, /room/leave  payload "ROOM|MEMBER"
 *   GET /room/size            payload ROOM
 *   GET /api/secret           guarded by a token middleware (^/api/)
 *   GET /order                answers the order its middlewares ran in
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <xraptor.h>

static char trace[64];

static int echo(xr_request *r, void *ud)
{
    (void)ud;
    size_t n;
    const char *p = xr_request_payload(r, &n);
    return xr_reply(r, p, n);
}

/* The connection's user, from its token (--jwt-key), or "-". */
static int whoami(xr_request *r, void *ud)
{
    (void)ud;
    const char *u = xr_conn_user(xr_request_conn(r));
    return xr_reply(r, u ? u : "-", strlen(u ? u : "-"));
}

static int fail(xr_request *r, void *ud)
{
    (void)r, (void)ud;
    return -1;
}

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    xr_request *r = arg;
    int rc = xr_reply(r, "{\"message\": \"later\"}", 20);
    xr_server_log(xr_request_server(r), XR_LOG_INFO, "test: late reply: %s", xr_strerror(rc));
    xr_request_unref(r);
}

static int later(xr_request *r, void *ud)
{
    (void)ud;
    struct timeval tv = {0, 200000};
    xr_request_ref(r);
    return event_base_once(xr_server_base(xr_request_server(r)), -1, EV_TIMEOUT, later_cb, r, &tv);
}

/* Splits "A|B" into two NUL-terminated strings in buf. */
static int split(xr_request *r, char *buf, size_t cap, char **b)
{
    size_t n;
    const char *p = xr_request_payload(r, &n);
    if (n >= cap)
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *bar = strchr(buf, '|');
    if (!bar)
        return -1;
    *bar = '\0';
    *b = bar + 1;
    return 0;
}

static int publish(xr_request *r, void *ud)
{
    (void)ud;
    char buf[4096], *msg;
    if (split(r, buf, sizeof buf, &msg) < 0)
        return -1;
    if (xr_publish(xr_request_server(r), buf, strlen(buf), msg, strlen(msg)) < 0)
        return -1;
    return xr_reply(r, "published", 9);
}

static int stream_sub(xr_request *r, void *ud)
{
    (void)ud;
    return xr_reply(r, "{\"message\": \"subscribed\"}", 25);
}

static int stream_unsub(xr_request *r, void *ud)
{
    (void)ud;
    return xr_reply(r, "bye", 3);
}

static int room(xr_request *r, void *ud)
{
    char buf[1024], *member;
    if (split(r, buf, sizeof buf, &member) < 0)
        return -1;
    int rc = ud ? xr_room_join(xr_request_server(r), buf, member)
                : xr_room_leave(xr_request_server(r), buf, member);
    return rc < 0 ? rc : xr_reply(r, "ok", 2);
}

static int room_size(xr_request *r, void *ud)
{
    (void)ud;
    char out[32];
    int n = snprintf(out, sizeof out, "%zu", xr_room_size(xr_request_server(r), xr_request_payload(r, NULL)));
    return xr_reply(r, out, (size_t)n);
}

static int secret(xr_request *r, void *ud)
{
    (void)ud;
    return xr_reply(r, "secret", 6);
}

static int order(xr_request *r, void *ud)
{
    (void)ud;
    strcat(trace, "H");
    int rc = xr_reply(r, trace, strlen(trace));
    trace[0] = '\0';
    return rc;
}

/* Reads member "x" of the payload (of the header when ud is set) every
 * way there is, and answers what each call gave:
 * {"type": T, "str": [rc, s], "int": [rc, i], "num": [rc, d], "bool": [rc, b], "raw": [rc, json]} */
static int fields(xr_request *r, void *ud)
{
    int h = ud != NULL;
    const char *s = NULL, *raw = NULL;
    size_t slen = 0, rawlen = 0;
    long long i = 0;
    double d = 0;
    int b = 0;
    int type = (h ? xr_header_type : xr_payload_type)(r, "x");
    int rs = (h ? xr_header_str : xr_payload_str)(r, "x", &s, &slen);
    int ri = (h ? xr_header_int : xr_payload_int)(r, "x", &i);
    int rd = (h ? xr_header_num : xr_payload_num)(r, "x", &d);
    int rb = (h ? xr_header_bool : xr_payload_bool)(r, "x", &b);
    int rr = (h ? xr_header_raw : xr_payload_raw)(r, "x", &raw, &rawlen);
    return xr_replyf(r, "{\"type\": %d, \"str\": [%d, %.*Q], \"int\": [%d, %lld], "
                        "\"num\": [%d, %g], \"bool\": [%d, %b], \"raw\": [%d, %.*s]}",
                     type, rs, (int)slen, s ? s : "", ri, i, rd, d, rb, b, rr,
                     raw ? (int)rawlen : 4, raw ? raw : "null");
}

static int mw_token(xr_request *r, void *ud)
{
    (void)ud;
    const char *t = xr_request_header(r, "token");
    if (t && strcmp(t, "t0ken") == 0)
        return XR_NEXT;
    xr_reply(r, "{\"error\": \"unauthorized\"}", 25);
    return XR_DONE;
}

static int mw_mark(xr_request *r, void *ud)
{
    (void)r;
    if (strlen(trace) + 2 < sizeof trace)
        strcat(trace, ud);
    return XR_NEXT;
}

static int mw_boom(xr_request *r, void *ud)
{
    (void)ud;
    return strcmp(xr_request_route(r), "/boom") == 0 ? -1 : XR_NEXT;
}

int main(int argc, char **argv)
{
    xr_options opts;
    xr_options_init(&opts);
    int rc = xr_options_from_args(&opts, argc, argv, "xraptor-protoserver", NULL);
    if (rc != XR_GO_ON)
        return rc;
    char err[512];
    xr_server *srv = xr_server_new(&opts, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "xraptor-protoserver: %s\n", err);
        return 1;
    }
    int ok = xr_route(srv, "/echo", XR_GET | XR_POST | XR_PUT, echo, NULL) == 0 &&
             xr_route(srv, "/fail", XR_POST, fail, NULL) == 0 &&
             xr_route(srv, "/whoami", XR_GET, whoami, NULL) == 0 &&
             xr_route(srv, "/later", XR_POST, later, NULL) == 0 &&
             xr_route(srv, "/publish", XR_POST, publish, NULL) == 0 &&
             xr_route(srv, "/stream", XR_SUB, stream_sub, NULL) == 0 &&
             xr_route(srv, "/stream", XR_UNSUB, stream_unsub, NULL) == 0 &&
             xr_route(srv, "/room/join", XR_POST, room, "join") == 0 &&
             xr_route(srv, "/room/leave", XR_POST, room, NULL) == 0 &&
             xr_route(srv, "/room/size", XR_GET, room_size, NULL) == 0 &&
             xr_route(srv, "/api/secret", XR_GET, secret, NULL) == 0 &&
             xr_route(srv, "/order", XR_GET, order, NULL) == 0 &&
             xr_route(srv, "/fields/payload", XR_GET, fields, NULL) == 0 &&
             xr_route(srv, "/fields/header", XR_GET, fields, "header") == 0 &&
             /* Registered out of order: priority decides. */
             xr_middleware(srv, 20, "/ord", mw_mark, "B") == 0 &&
             xr_middleware(srv, 10, NULL, mw_mark, "A") == 0 &&
             xr_middleware(srv, 30, "/api/", mw_token, NULL) == 0 &&
             xr_middleware(srv, 40, "rder", mw_mark, "X") == 0 &&   /* anchored: never matches */
             xr_middleware(srv, 50, NULL, mw_boom, NULL) == 0;
    /* The rules that must refuse. */
    int refusals = xr_route(srv, "/echo", XR_POST, echo, NULL) == XR_EEXIST &&
                   xr_middleware(srv, 10, NULL, mw_mark, "C") == XR_EEXIST &&
                   xr_middleware(srv, 60, "([", mw_mark, "D") == XR_EINVAL;
    if (!ok || !refusals) {
        fprintf(stderr, "xraptor-protoserver: registration rules broken (ok=%d refusals=%d)\n", ok, refusals);
        xr_server_free(srv);
        return 1;
    }
    rc = xr_server_run(srv);
    if (rc < 0)
        fprintf(stderr, "xraptor-protoserver: %s\n", xr_server_error(srv));
    xr_server_free(srv);
    return rc < 0 ? 1 : 0;
}
