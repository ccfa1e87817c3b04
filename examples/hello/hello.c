/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The smallest xraptor server: greets each client, then echoes. Built by
 * `make installcheck` against the installed library with only
 *     cc hello.c $(pkg-config --cflags --libs xraptor)
 */
#include <stdio.h>
#include <string.h>

#include <xraptor.h>

static void on_open(xr_conn *conn, void *ud)
{
    (void)ud;
    xr_conn_send(conn, XR_TEXT, "hello from xraptor", strlen("hello from xraptor"));
}

static void on_message(xr_conn *conn, xr_msg_type type, const char *data, size_t len, void *ud)
{
    (void)ud;
    xr_conn_send(conn, type, data, len);
}

int main(int argc, char **argv)
{
    xr_options opts;
    xr_options_init(&opts);
    int rc = xr_options_from_args(&opts, argc, argv, "hello", "A greeting WebSocket server.");
    if (rc != XR_GO_ON)
        return rc;
    char err[256];
    xr_server *srv = xr_server_new(&opts, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "hello: %s\n", err);
        return 1;
    }
    xr_handlers h = {.on_open = on_open, .on_message = on_message};
    xr_server_set_handlers(srv, &h, NULL);
    rc = xr_server_run(srv);
    if (rc < 0)
        fprintf(stderr, "hello: %s\n", xr_server_error(srv));
    xr_server_free(srv);
    return rc < 0 ? 1 : 0;
}
