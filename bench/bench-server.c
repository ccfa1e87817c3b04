/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xraptor-bench-server: the protocol-side target of xraptor-bench.
 *   POST /echo      answers its payload (the "route" scenario)
 *   SUB  /fanout    the request_id becomes a channel (every subscriber of
 *                   the "fanout" scenario uses the same one)
 *   SUB  /room      joins room "fanroom" with the request_id as member
 *                   (the "fanout --mode room" scenario)
 *   POST /publish   payload "CHANNEL MESSAGE" -> xr_publish, answers "ok"
 * Takes the common flags (--antenna, --compression, --workers, ...).
 */
#include <stdio.h>
#include <string.h>

#include <xraptor.h>

static int echo(xr_request *r, void *ud)
{
    (void)ud;
    size_t n;
    const char *p = xr_request_payload(r, &n);
    return xr_reply(r, p, n);
}

static int sub(xr_request *r, void *ud)
{
    (void)r, (void)ud;
    return 0;   /* subscribed; no answer of its own */
}

static int join(xr_request *r, void *ud)
{
    (void)ud;
    char id[128];
    size_t n;
    const char *p = xr_request_id(r, &n);
    if (n >= sizeof id)
        return -1;
    memcpy(id, p, n);
    id[n] = '\0';
    return xr_room_join(xr_request_server(r), "fanroom", id);
}

static int publish(xr_request *r, void *ud)
{
    (void)ud;
    size_t n;
    const char *p = xr_request_payload(r, &n);
    const char *sp = memchr(p, ' ', n);
    if (!sp)
        return -1;
    size_t cl = (size_t)(sp - p);
    if (xr_publish(xr_request_server(r), p, cl, sp + 1, n - cl - 1) < 0)
        return -1;
    return xr_reply(r, "ok", 2);
}

int main(int argc, char **argv)
{
    xr_options opts;
    xr_options_init(&opts);
    int rc = xr_options_from_args(&opts, argc, argv, "xraptor-bench-server",
                                  "xraptor-bench-server: routes for xraptor-bench (POST /echo, "
                                  "SUB /fanout, SUB /room, POST /publish).");
    if (rc != XR_GO_ON)
        return rc;
    char err[512];
    xr_server *srv = xr_server_new(&opts, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "xraptor-bench-server: %s\n", err);
        return 1;
    }
    if (xr_route(srv, "/echo", XR_POST | XR_GET, echo, NULL) < 0 ||
        xr_route(srv, "/fanout", XR_SUB, sub, NULL) < 0 ||
        xr_route(srv, "/room", XR_SUB, join, NULL) < 0 ||
        xr_route(srv, "/publish", XR_POST, publish, NULL) < 0) {
        fprintf(stderr, "xraptor-bench-server: cannot register routes\n");
        xr_server_free(srv);
        return 1;
    }
    rc = xr_server_run(srv);
    if (rc < 0)
        fprintf(stderr, "xraptor-bench-server: %s\n", xr_server_error(srv));
    xr_server_free(srv);
    return rc < 0 ? 1 : 0;
}
