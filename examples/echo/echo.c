/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xraptor-echo: sends every message back unchanged, text as text and binary
 * as binary; a fragmented message comes back whole. This is what the
 * Autobahn conformance suite and the echo benchmark drive.
 */
#include <stdio.h>

#include <xraptor.h>

static void on_message(xr_conn *conn, xr_msg_type type, const char *data,
                       size_t len, void *ud)
{
    (void)ud;
    /* A failed send already closed the connection (slow reader); nothing
     * more to do here. */
    (void)xr_conn_send(conn, type, data, len);
}

int main(int argc, char **argv)
{
    xr_options opts;
    xr_options_init(&opts);
    int rc = xr_options_from_args(&opts, argc, argv, "xraptor-echo",
                                  "xraptor-echo: a WebSocket server that echoes every message.");
    if (rc != XR_GO_ON)
        return rc;

    char err[512];
    xr_server *srv = xr_server_new(&opts, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "xraptor-echo: %s\n", err);
        return 1;
    }
    xr_handlers h = {.on_message = on_message};
    xr_server_set_handlers(srv, &h, NULL);
    rc = xr_server_run(srv);
    if (rc < 0)
        fprintf(stderr, "xraptor-echo: %s\n", xr_server_error(srv));
    xr_server_free(srv);
    return rc < 0 ? 1 : 0;
}
