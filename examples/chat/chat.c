/*
 * xraptor-chat: the X-raptor chat example, route for route as the Python
 * X-raptor's, so its clients work unchanged:
 *   SUB   /chat_messages            {"chat_id"}  join room chat_id (no answer)
 *   UNSUB /chat_messages            {"chat_id"}  leave it: {"message": "tchau!"}
 *   POST  /send_message_to_chat_room {"chat_id", "client_id", "message"}
 *         posts {"origin": client_id, "message": message} to the room:
 *         {"message": "Message sent"}
 * A payload that is not JSON or lacks a key gets {"message": "fail"}.
 * The web page (web/) and xraptor.js are served from the same port.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <xraptor.h>

/* Reads the string fields named in keys from the payload; the strings live
 * as long as *root. Returns 0, or -1 when the payload does not have them. */
static int fields(xr_request *req, json_object **root, const char *const *keys,
                  const char **out, int n)
{
    size_t len;
    const char *payload = xr_request_payload(req, &len);
    json_tokener *tok = json_tokener_new();
    *root = tok ? json_tokener_parse_ex(tok, payload, (int)len) : NULL;
    json_tokener_free(tok);
    if (!*root || !json_object_is_type(*root, json_type_object))
        return -1;
    for (int i = 0; i < n; i++) {
        json_object *v;
        if (!json_object_object_get_ex(*root, keys[i], &v) ||
            !json_object_is_type(v, json_type_string))
            return -1;
        out[i] = json_object_get_string(v);
    }
    return 0;
}

static int join_room(xr_request *req, void *ud)
{
    (void)ud;
    static const char *const keys[] = {"chat_id"};
    json_object *root;
    const char *chat_id;
    int rc = -1;
    if (fields(req, &root, keys, &chat_id, 1) == 0)
        rc = xr_room_join(xr_request_server(req), chat_id, xr_request_id(req, NULL));
    json_object_put(root);
    return rc;
}

static int leave_room(xr_request *req, void *ud)
{
    (void)ud;
    static const char *const keys[] = {"chat_id"};
    static const char bye[] = "{\"message\": \"tchau!\"}";
    json_object *root;
    const char *chat_id;
    int rc = -1;
    if (fields(req, &root, keys, &chat_id, 1) == 0) {
        /* Leaving a room one is not in is still a goodbye. */
        xr_room_leave(xr_request_server(req), chat_id, xr_request_id(req, NULL));
        xr_reply(req, bye, sizeof bye - 1);
        rc = 0;
    }
    json_object_put(root);
    return rc;
}

/* JSON text of a string, quoted and escaped; valid until o is released. */
static const char *quoted(json_object *o)
{
    return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static int send_message(xr_request *req, void *ud)
{
    (void)ud;
    static const char *const keys[] = {"chat_id", "client_id", "message"};
    static const char sent[] = "{\"message\": \"Message sent\"}";
    json_object *root;
    const char *f[3];
    int rc = -1;
    if (fields(req, &root, keys, f, 3) == 0) {
        json_object *origin = json_object_new_string(f[1]);
        json_object *text = json_object_new_string(f[2]);
        if (origin && text) {
            /* Spaced as Python's json.dumps writes it, for mixed clusters. */
            char *msg = NULL;
            int n = asprintf(&msg, "{\"origin\": %s, \"message\": %s}", quoted(origin), quoted(text));
            if (n >= 0 && xr_publish(xr_request_server(req), f[0], strlen(f[0]), msg, (size_t)n) == XR_OK) {
                xr_reply(req, sent, sizeof sent - 1);
                rc = 0;
            }
            free(msg);
        }
        json_object_put(origin);
        json_object_put(text);
    }
    json_object_put(root);
    return rc;
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
    if (rc >= 0)
        return rc;
    char err[512];
    xr_server *srv = xr_server_new(&opts, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "xraptor-chat: %s\n", err);
        return 1;
    }
    if (xr_route(srv, "/chat_messages", XR_SUB, join_room, NULL) < 0 ||
        xr_route(srv, "/chat_messages", XR_UNSUB, leave_room, NULL) < 0 ||
        xr_route(srv, "/send_message_to_chat_room", XR_POST, send_message, NULL) < 0) {
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
