/* SPDX-License-Identifier: Apache-2.0 */
#include <stddef.h>
#include <string.h>

#include <xraptor.h>

#include "server/server.h"
#include "tap.h"

static int parse(xr_options *o, char *err, int argc, char **argv)
{
    xr_options_init(o);
    return xr_options_parse(o, argc, argv, err, 256);
}

#define ARGS(...) ((char *[]){"prog", __VA_ARGS__})
#define NARGS(...) (int)(sizeof((char *[]){"prog", __VA_ARGS__}) / sizeof(char *))
#define PARSE(o, err, ...) parse(o, err, NARGS(__VA_ARGS__), ARGS(__VA_ARGS__))

static void test_defaults(void)
{
    xr_options o;
    xr_options_init(&o);
    CHECK_EQ(o.max_message_size, 1 << 20);
    CHECK_EQ(o.handshake_timeout_ms, 10000);
    CHECK_EQ(o.ping_interval_ms, 20000);
    CHECK_EQ(o.ping_timeout_ms, 20000);
    CHECK_STR(o.health_path, "/health");
}

static void test_flags_parsed_both_forms(void)
{
    xr_options o;
    char err[256];
    CHECK_EQ(PARSE(&o, err, "--listen", "127.0.0.1:1", "--listen=[::1]:2",
                   "--max-message-size", "64M", "--max-output-buffer=512k",
                   "--ping-interval", "0.5", "--ping-timeout=250ms",
                   "--max-connections", "7", "--log-level", "debug", "--log-format=json",
                   "--subprotocol", "a", "--allow-origin", "http://x"), XR_OK);
    CHECK_EQ(o.n_listen, 2);
    CHECK_STR(o.listen[1], "[::1]:2");
    CHECK_EQ(o.max_message_size, 64 << 20);
    CHECK_EQ(o.max_output_buffer, 512 << 10);
    CHECK_EQ(o.ping_interval_ms, 500);
    CHECK_EQ(o.ping_timeout_ms, 250);
    CHECK_EQ(o.max_connections, 7);
    CHECK_EQ(o.log_level, XR_LOG_DEBUG);
    CHECK_EQ(o.log_format, XR_LOG_JSON);
    CHECK_EQ(o.n_subprotocols, 1);
    CHECK_EQ(o.n_allowed_origins, 1);
}

static void test_bad_flags_name_the_flag(void)
{
    xr_options o;
    char err[256];
    CHECK_EQ(PARSE(&o, err, "--bogus"), XR_EUSAGE);
    CHECK(strstr(err, "--bogus") != NULL);
    CHECK_EQ(PARSE(&o, err, "--max-message-size", "lots"), XR_EUSAGE);
    CHECK(strstr(err, "--max-message-size") && strstr(err, "lots"));
    CHECK_EQ(PARSE(&o, err, "--ping-interval", "-1"), XR_EUSAGE);
    CHECK(strstr(err, "--ping-interval") != NULL);
    CHECK_EQ(PARSE(&o, err, "--listen"), XR_EUSAGE);
    CHECK(strstr(err, "needs a value") != NULL);
    CHECK_EQ(PARSE(&o, err, "--listen", "nope"), XR_EUSAGE);
    CHECK_EQ(PARSE(&o, err, "--listen", "1.2.3.4:99999"), XR_EUSAGE);
    CHECK_EQ(PARSE(&o, err, "--log-level", "loud"), XR_EUSAGE);
    CHECK_EQ(PARSE(&o, err, "stray"), XR_EUSAGE);
    CHECK_EQ(PARSE(&o, err, "--tls-cert", "c.pem"), XR_EUSAGE);
    CHECK(strstr(err, "--tls-key") != NULL);
    CHECK_EQ(PARSE(&o, err, "--listen", "wss://127.0.0.1:1"), XR_EUSAGE);
    CHECK_EQ(PARSE(&o, err, "--max-connections", "0"), XR_EUSAGE);
    CHECK_EQ(PARSE(&o, err, "--health-path", "health"), XR_EUSAGE);
    CHECK_EQ(PARSE(&o, err, "--max-message-size", "5G"), XR_EUSAGE);
}

static void test_help_and_version(void)
{
    xr_options o;
    char err[256];
    CHECK_EQ(PARSE(&o, err, "--help"), XR_OPTIONS_HELP);
    CHECK_EQ(PARSE(&o, err, "--listen", ":1", "--version"), XR_OPTIONS_VERSION);
}

static void test_size_and_duration_units(void)
{
    size_t sz;
    unsigned ms;
    CHECK_EQ(xr_parse_size("1", &sz), 0); CHECK_EQ(sz, 1);
    CHECK_EQ(xr_parse_size("1k", &sz), 0); CHECK_EQ(sz, 1024);
    CHECK_EQ(xr_parse_size("1MiB", &sz), 0); CHECK_EQ(sz, 1 << 20);
    CHECK_EQ(xr_parse_size("4G", &sz), 0);
    CHECK_EQ(xr_parse_size("1x", &sz), -1);
    CHECK_EQ(xr_parse_size("", &sz), -1);
    CHECK_EQ(xr_parse_size("-1", &sz), -1);
    CHECK_EQ(xr_parse_duration("20", &ms), 0); CHECK_EQ(ms, 20000);
    CHECK_EQ(xr_parse_duration("0", &ms), 0); CHECK_EQ(ms, 0);
    CHECK_EQ(xr_parse_duration("1.5s", &ms), 0); CHECK_EQ(ms, 1500);
    CHECK_EQ(xr_parse_duration("nan", &ms), -1);
    CHECK_EQ(xr_parse_duration("1e9", &ms), -1);
}

static void test_listen_spec_forms(void)
{
    char host[64];
    int port;
    CHECK_EQ(xr_listen_spec("127.0.0.1:80", 0, host, sizeof host, &port), 0);
    CHECK_STR(host, "127.0.0.1"); CHECK_EQ(port, 80);
    CHECK_EQ(xr_listen_spec("[::1]:443", 1, host, sizeof host, &port), 1);
    CHECK_STR(host, "::1"); CHECK_EQ(port, 443);
    CHECK_EQ(xr_listen_spec(":0", 0, host, sizeof host, &port), 0);
    CHECK_STR(host, "");
    CHECK_EQ(xr_listen_spec("ws://localhost:1", 1, host, sizeof host, &port), 0);
    CHECK_EQ(xr_listen_spec("wss://localhost:1", 0, host, sizeof host, &port), 1);
    CHECK_EQ(xr_listen_spec("::1:80", 0, host, sizeof host, &port), -1);
    CHECK_EQ(xr_listen_spec("host", 0, host, sizeof host, &port), -1);
}

static void test_server_new_reports_bad_tls_files(void)
{
    xr_options o;
    char err[256];
    xr_options_init(&o);
    o.tls_cert = "/nonexistent/cert.pem";
    o.tls_key = "/nonexistent/key.pem";
    CHECK(xr_server_new(&o, err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent/cert.pem") != NULL);
}

static void raw(xr_conn *c, xr_msg_type t, const char *d, size_t n, void *ud)
{
    (void)c, (void)t, (void)d, (void)n, (void)ud;
}

static int handler(xr_request *r, void *ud)
{
    (void)r, (void)ud;
    return 0;
}

static void test_every_string_option_at_its_maximum_is_kept(void)
{
    xr_options o;
    char err[256];
    static char names[4][XR_MAX_LIST][32];
    xr_options_init(&o);
    for (int k = 0; k < XR_MAX_LIST; k++) {
        snprintf(names[0][k], 32, "127.0.0.1:%d", 20000 + k);
        snprintf(names[1][k], 32, "https://o%d.example", k);
        snprintf(names[2][k], 32, "proto%d", k);
        snprintf(names[3][k], 32, "/tmp/static%d", k);
        o.listen[k] = names[0][k];
        o.allowed_origins[k] = names[1][k];
        o.subprotocols[k] = names[2][k];
        o.static_dirs[k] = names[3][k];
    }
    o.n_listen = o.n_allowed_origins = o.n_subprotocols = o.n_static_dirs = XR_MAX_LIST;
    o.tls_ciphers = "HIGH";
    o.health_path = "/h";
    o.metrics_path = "/m";
    o.antenna = "memory://";
    o.antenna_dir = "/tmp";
    xr_server *srv = xr_server_new(&o, err, sizeof err);
    CHECK(srv != NULL);
    if (!srv)
        printf("#   %s\n", err);
    xr_server_free(srv);
}

static void test_raw_handler_and_routes_refused_together(void)
{
    xr_options o;
    char err[256];
    xr_options_init(&o);
    o.listen[0] = "127.0.0.1:0";
    o.n_listen = 1;
    o.log_level = XR_LOG_ERROR;
    xr_server *srv = xr_server_new(&o, err, sizeof err);
    xr_handlers h = {.on_message = raw};
    xr_server_set_handlers(srv, &h, NULL);
    CHECK_EQ(xr_route(srv, "/r", XR_GET, handler, NULL), XR_OK);
    CHECK_EQ(xr_server_run(srv), XR_EUSAGE);
    CHECK(strstr(xr_server_error(srv), "on_message") != NULL);
    xr_server_free(srv);
}

/* A program built when xr_options was shorter: the library writes and
 * reads only its part, and options never set up by xr_options_init are
 * refused, not read as garbage. */
static void test_options_size_is_respected(void)
{
    struct { xr_options o; unsigned char guard[64]; } big;
    memset(&big, 0xAB, sizeof big);
    xr_options_init_size(&big.o, sizeof big.o);
    CHECK_EQ(big.o.size, sizeof(xr_options));
    CHECK_EQ(big.guard[0], 0xAB);
    CHECK_EQ(big.guard[63], 0xAB);
    /* Built against a library whose struct ended at `workers`. */
    union { xr_options o; unsigned char bytes[sizeof(xr_options) + 8]; } old;
    memset(&old, 0xCD, sizeof old);
    size_t v1 = offsetof(xr_options, workers) + sizeof(unsigned);
    xr_options_init_size(&old.o, v1);
    CHECK_EQ(old.o.size, v1);
    CHECK_EQ(old.o.workers, 1);
    for (size_t k = v1; k < sizeof old.bytes; k++)
        CHECK_EQ(old.bytes[k], 0xCD);
    char err[256] = "";
    char *argv[] = {"prog", "--workers", "2", "--ping-interval", "3"};
    CHECK_EQ(xr_options_parse(&old.o, 5, argv, err, sizeof err), XR_OK);
    CHECK_EQ(old.o.workers, 2);
    CHECK_EQ(old.o.ping_interval_ms, 3000);
    /* Never set up: refused by parse and by xr_server_new alike. */
    xr_options raw;
    memset(&raw, 0, sizeof raw);
    CHECK_EQ(xr_options_parse(&raw, 1, argv, err, sizeof err), XR_EINVAL);
    CHECK(strstr(err, "xr_options_init") != NULL);
    err[0] = '\0';
    CHECK(xr_server_new(&raw, err, sizeof err) == NULL);
    CHECK(strstr(err, "xr_options_init") != NULL);
}

int main(void)
{
    RUN(test_options_size_is_respected);
    RUN(test_defaults);
    RUN(test_flags_parsed_both_forms);
    RUN(test_bad_flags_name_the_flag);
    RUN(test_help_and_version);
    RUN(test_size_and_duration_units);
    RUN(test_listen_spec_forms);
    RUN(test_server_new_reports_bad_tls_files);
    RUN(test_every_string_option_at_its_maximum_is_kept);
    RUN(test_raw_handler_and_routes_refused_together);
    return tap_done();
}
