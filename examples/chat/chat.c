/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xraptor-chat: the X-raptor chat example, route for route as the Python
 * X-raptor's, so its clients work unchanged:
 *   SUB   /chat_messages            {"chat_id"}  join room chat_id (no answer);
 *         with presence on (--presence), also "client_id" (who the member is,
 *         unless the connection's token says) and an optional "info" (JSON)
 *   UNSUB /chat_messages            {"chat_id"}  leave it: {"message": "tchau!"}
 *   POST  /send_message_to_chat_room {"chat_id", "client_id", "message"}
 *         posts {"origin": client_id, "message": message} to the room:
 *         {"message": "Message sent"}; with header {"position": true} and
 *         history on for the room, also its "offset" and "epoch"
 *   GET   /chat_history             {"chat_id", "limit"?}  the room's newest
 *         messages kept (--history-*), as GET /xraptor/history answers
 * A payload that is not JSON or lacks a key gets {"message": "fail"}.
 * The web page (web/) and xraptor.js are served from the same port.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xraptor.h>

static int join_room(xr_request *req, void *ud)
{
    (void)ud;
    const char *chat_id, *client_id = NULL, *raw;
    size_t rlen;
    char *info = NULL;
    if (xr_payload_str(req, "chat_id", &chat_id, NULL) != XR_OK)
        return -1;
    /* Who the member is in the room's presence (a token's user wins). */
    xr_payload_str(req, "client_id", &client_id, NULL);
    if (xr_payload_raw(req, "info", &raw, &rlen) == XR_OK && (info = malloc(rlen + 1))) {
        memcpy(info, raw, rlen);
        info[rlen] = '\0';
    }
    int rc = xr_room_join_as(xr_request_server(req), chat_id, xr_request_id(req, NULL),
                             client_id, info);
    free(info);
    if (rc == XR_EINVAL) {
        xr_replyf(req, "{\"message\": \"fail\", \"reason\": %Q}",
                  "cannot join: a bad chat_id, or this room keeps presence and needs a "
                  "client_id (a name) and an info of JSON within --presence-max-info");
        return -1;      /* the SUB's channel closes */
    }
    return rc;
}

static int leave_room(xr_request *req, void *ud)
{
    (void)ud;
    const char *chat_id;
    if (xr_payload_str(req, "chat_id", &chat_id, NULL) != XR_OK)
        return -1;
    /* Leaving a room one is not in is still a goodbye. */
    xr_room_leave(xr_request_server(req), chat_id, xr_request_id(req, NULL));
    return xr_replyf(req, "{\"message\": \"tchau!\"}");
}

/* The answer of a post that asked for its position, once the broker gave it. */
static void message_sent(int rc, unsigned long long offset, const char *epoch, size_t elen,
                         void *ud)
{
    xr_request *req = ud;
    if (rc == XR_OK)
        xr_replyf(req, "{\"message\": \"Message sent\", \"offset\": %llu, \"epoch\": %.*Q}",
                  offset, (int)elen, epoch);
    else
        xr_replyf(req, "{\"message\": \"fail\", \"reason\": %Q}", "the broker lost the post");
    xr_request_unref(req);
}

/* With header {"position": true} and a room that keeps history, the answer
 * waits for the post's position: {"message": "Message sent", "offset": N,
 * "epoch": "E"} (a client can then tell its own message in the stream). */
static int send_at(xr_request *req, const char *chat_id, size_t chat_len, const char *msg,
                   size_t len)
{
    int rc = xr_publish_at(xr_request_server(req), chat_id, chat_len, msg, len, message_sent,
                           xr_request_ref(req));
    if (rc == XR_OK)
        return XR_OK;
    xr_request_unref(req);
    if (rc != XR_ESTATE || xr_publish(xr_request_server(req), chat_id, chat_len, msg, len) != XR_OK)
        return -1;
    return xr_replyf(req, "{\"message\": \"Message sent\"}");
}

static int send_message(xr_request *req, void *ud)
{
    (void)ud;
    const char *chat_id, *client_id, *message;
    size_t chat_len, client_len, message_len;
    int at = 0;
    if (xr_payload_str(req, "chat_id", &chat_id, &chat_len) != XR_OK ||
        xr_payload_str(req, "client_id", &client_id, &client_len) != XR_OK ||
        xr_payload_str(req, "message", &message, &message_len) != XR_OK)
        return -1;
    if (xr_header_bool(req, "position", &at) == XR_OK && at) {
        /* Spaced as Python's json.dumps writes it, for mixed clusters. */
        static const char fmt[] = "{\"origin\": %.*Q, \"message\": %.*Q}";
        char small[1024], *buf = small;
        size_t len;
        if (xr_jsonf(small, sizeof small, &len, fmt, (int)client_len, client_id,
                     (int)message_len, message) != XR_OK)
            return -1;
        if (len >= sizeof small &&
            (!(buf = malloc(len + 1)) || xr_jsonf(buf, len + 1, &len, fmt, (int)client_len,
                                                  client_id, (int)message_len, message) != XR_OK)) {
            free(buf);
            return -1;
        }
        int rc = send_at(req, chat_id, chat_len, buf, len);
        if (buf != small)
            free(buf);
        return rc;
    }
    if (xr_publishf(xr_request_server(req), chat_id, chat_len,
                    "{\"origin\": %.*Q, \"message\": %.*Q}",
                    (int)client_len, client_id, (int)message_len, message) != XR_OK)
        return -1;
    return xr_replyf(req, "{\"message\": \"Message sent\"}");
}

/* The C side of "load earlier messages": the request is held until the
 * antenna answers, then answered with the history's JSON as it is. */
static void history_read(int rc, const char *json, size_t len, void *ud)
{
    xr_request *req = ud;
    if (rc == XR_OK)
        xr_reply(req, json, len);
    else
        xr_replyf(req, "{\"message\": \"fail\", \"reason\": %Q}", "the broker could not answer");
    xr_request_unref(req);
}

static int chat_history(xr_request *req, void *ud)
{
    (void)ud;
    const char *chat_id;
    long long limit = 50;
    int has = xr_payload_int(req, "limit", &limit);
    if (xr_payload_str(req, "chat_id", &chat_id, NULL) != XR_OK ||
        (has != XR_OK && has != XR_ENOENT) || limit < 1)
        return -1;
    int rc = xr_history_read(xr_request_server(req), chat_id, (size_t)limit, history_read,
                             xr_request_ref(req));
    if (rc < 0) {
        xr_replyf(req, "{\"message\": \"fail\", \"reason\": %Q}",
                  rc == XR_ESTATE ? "this room keeps no history"
                                  : "bad chat_id or limit (1 to --history-max-recover)");
        xr_request_unref(req);
    }
    return XR_OK;
}

int main(int argc, char **argv)
{
    xr_options opts;
    xr_options_init(&opts);
    /* The page and xraptor.js, as installed; --static-dir overrides. */
    opts.static_dirs[0] = XR_CHAT_WEB_DIR;
    opts.static_dirs[1] = XR_JS_DIR;
    opts.n_static_dirs = 2;
    int rc = xr_options_from_args(&opts, argc, argv, "xraptor-chat",
                                  "xraptor-chat: the X-raptor chat example; open http://HOST:PORT/ for its page.");
    if (rc != XR_GO_ON)
        return rc;
    char err[512];
    xr_server *srv = xr_server_new(&opts, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "xraptor-chat: %s\n", err);
        return 1;
    }
    if (xr_route(srv, "/chat_messages", XR_SUB, join_room, NULL) < 0 ||
        xr_route(srv, "/chat_messages", XR_UNSUB, leave_room, NULL) < 0 ||
        xr_route(srv, "/send_message_to_chat_room", XR_POST, send_message, NULL) < 0 ||
        xr_route(srv, "/chat_history", XR_GET, chat_history, NULL) < 0) {
        fprintf(stderr, "xraptor-chat: cannot register routes\n");
        xr_server_free(srv);
        return 1;
    }
    rc = xr_server_run(srv);
    if (rc < 0)
        fprintf(stderr, "xraptor-chat: %s\n", xr_server_error(srv));
    xr_server_free(srv);
    return rc < 0 ? 1 : 0;
}
