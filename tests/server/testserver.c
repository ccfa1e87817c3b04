/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xraptor-testserver: a real server on the raw API for the integration
 * tests, driven by text commands so tests can reach what an echo never does:
 *   flood N SIZE   push N binary messages of SIZE bytes (slow-reader limit)
 *   close CODE WHY xr_conn_close(CODE, WHY)
 *   peer           answer with xr_conn_peer()
 *   proto          answer with the negotiated subprotocol, or "-"
 * Anything else is echoed. Every on_open/on_close is logged at info level
 * with the connection's number; a second on_close for one connection is
 * logged as an error, and the totals are logged at exit (on_close exactly
 * once per on_open, whatever ended the connection).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xraptor.h>

struct counts {
    unsigned long opened, closed;
};

/* Each connection's data is its number; the low bit marks "closed". */
static void on_open(xr_conn *c, void *ud)
{
    struct counts *n = ud;
    n->opened++;
    xr_conn_set_data(c, (void *)(uintptr_t)(n->opened << 1));
    xr_server_log(xr_conn_server(c), XR_LOG_INFO, "test: on_open id=%lu", n->opened);
}

static void on_close(xr_conn *c, int code, const char *reason, size_t len, void *ud)
{
    struct counts *n = ud;
    uintptr_t tag = (uintptr_t)xr_conn_data(c);
    if (tag & 1)
        xr_server_log(xr_conn_server(c), XR_LOG_ERROR, "test: on_close twice for id=%lu",
                      (unsigned long)(tag >> 1));
    xr_conn_set_data(c, (void *)(tag | 1));
    n->closed++;
    xr_server_log(xr_conn_server(c), XR_LOG_INFO, "test: on_close id=%lu code=%d reason=%.*s",
                  (unsigned long)(tag >> 1), code, (int)len, reason);
    /* Sending after on_close must be refused, not crash. */
    if (xr_conn_send(c, XR_TEXT, "late", 4) != XR_ECLOSED)
        xr_server_log(xr_conn_server(c), XR_LOG_ERROR, "test: send after close was accepted");
}

static void on_message(xr_conn *c, xr_msg_type type, const char *data, size_t len, void *ud)
{
    (void)ud;
    char cmd[160];
    if (type == XR_TEXT && len < sizeof cmd) {
        memcpy(cmd, data, len);
        cmd[len] = '\0';
        unsigned long n, size;
        int code;
        char why[128];
        if (sscanf(cmd, "flood %lu %lu", &n, &size) == 2 && size <= (1ul << 20)) {
            char *buf = calloc(1, size ? size : 1);
            int rc = XR_OK;
            unsigned long sent = 0;
            for (; buf && sent < n && rc == XR_OK; sent++)
                rc = xr_conn_send(c, XR_BINARY, buf, size);
            free(buf);
            xr_server_log(xr_conn_server(c), XR_LOG_INFO, "test: flood stopped after %lu: %s",
                          sent, xr_strerror(rc));
            return;
        }
        if (sscanf(cmd, "close %d %127[^\n]", &code, why) == 2) {
            int rc = xr_conn_close(c, code, why);
            if (rc != XR_OK) {
                const char *e = xr_strerror(rc);
                xr_conn_send(c, XR_TEXT, e, strlen(e));
            }
            return;
        }
        if (strcmp(cmd, "peer") == 0) {
            char peer[80];
            if (xr_conn_peer(c, peer, sizeof peer) == XR_OK)
                xr_conn_send(c, XR_TEXT, peer, strlen(peer));
            return;
        }
        if (strcmp(cmd, "proto") == 0) {
            const char *p = xr_conn_subprotocol(c);
            xr_conn_send(c, XR_TEXT, p ? p : "-", strlen(p ? p : "-"));
            return;
        }
    }
    xr_conn_send(c, type, data, len);
}

/* XR_TEST_LOG_CALLBACK set: the server's lines come through here. */
static void log_line(xr_log_level level, unsigned worker, const char *msg, void *ud)
{
    fprintf(stderr, "%s/%d/%u: %s\n", (const char *)ud, (int)level, worker, msg);
}

int main(int argc, char **argv)
{
    xr_options opts;
    xr_options_init(&opts);
    int rc = xr_options_from_args(&opts, argc, argv, "xraptor-testserver", NULL);
    if (rc != XR_GO_ON)
        return rc;
    char err[512];
    xr_server *srv = xr_server_new(&opts, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "xraptor-testserver: %s\n", err);
        return 1;
    }
    xr_handlers h = {.on_open = on_open, .on_message = on_message, .on_close = on_close};
    struct counts n = {0, 0};
    xr_server_set_handlers(srv, &h, &n);
    if (getenv("XR_TEST_LOG_CALLBACK"))
        xr_server_set_log(srv, log_line, "app-log");
    rc = xr_server_run(srv);
    if (rc < 0)
        fprintf(stderr, "xraptor-testserver: %s\n", xr_server_error(srv));
    xr_server_free(srv);
    fprintf(stderr, "xraptor-testserver: opened %lu, closed %lu\n", n.opened, n.closed);
    return rc < 0 ? 1 : 0;
}
