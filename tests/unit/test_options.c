/* SPDX-License-Identifier: Apache-2.0 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <xraptor.h>

#include "server/server.h"
#include "util/shared.h"
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
    CHECK_EQ(xr_parse_size("1x", &sz), XR_EINVAL);
    CHECK_EQ(xr_parse_size("", &sz), XR_EINVAL);
    CHECK_EQ(xr_parse_size("-1", &sz), XR_EINVAL);
    CHECK_EQ(xr_parse_duration("20", &ms), 0); CHECK_EQ(ms, 20000);
    CHECK_EQ(xr_parse_duration("0", &ms), 0); CHECK_EQ(ms, 0);
    CHECK_EQ(xr_parse_duration("1.5s", &ms), 0); CHECK_EQ(ms, 1500);
    CHECK_EQ(xr_parse_duration("nan", &ms), XR_EINVAL);
    CHECK_EQ(xr_parse_duration("1e9", &ms), XR_EINVAL);
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
    CHECK_EQ(xr_listen_spec("::1:80", 0, host, sizeof host, &port), XR_EINVAL);
    CHECK_EQ(xr_listen_spec("host", 0, host, sizeof host, &port), XR_EINVAL);
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
    if (!srv) {
        printf("#   %s\n", err);
        return;
    }
    /* Kept: every value, as the server's own copy (the caller's strings
     * may go once xr_server_new returns). */
    const xr_options *so = &srv->opts;
    CHECK_EQ(so->n_listen, XR_MAX_LIST);
    CHECK_EQ(so->n_allowed_origins, XR_MAX_LIST);
    CHECK_EQ(so->n_subprotocols, XR_MAX_LIST);
    CHECK_EQ(so->n_static_dirs, XR_MAX_LIST);
    int same = 1, copied = 1;
    for (int k = 0; k < XR_MAX_LIST; k++) {
        same &= strcmp(so->listen[k], names[0][k]) == 0 &&
                strcmp(so->allowed_origins[k], names[1][k]) == 0 &&
                strcmp(so->subprotocols[k], names[2][k]) == 0 &&
                strcmp(so->static_dirs[k], names[3][k]) == 0;
        copied &= so->listen[k] != names[0][k] && so->allowed_origins[k] != names[1][k] &&
                  so->subprotocols[k] != names[2][k] && so->static_dirs[k] != names[3][k];
    }
    CHECK(same);
    CHECK(copied);
    CHECK_STR(so->tls_ciphers, "HIGH");
    CHECK_STR(so->health_path, "/h");
    CHECK_STR(so->metrics_path, "/m");
    CHECK_STR(so->antenna, "memory://");
    CHECK_STR(so->antenna_dir, "/tmp");
    CHECK(so->tls_ciphers != o.tls_ciphers && so->antenna_dir != o.antenna_dir);
    xr_server_free(srv);
}

/* Finding 1 of the attack review: "/" + 510 x "a" + "/" passed the path
 * check, then "index.html" was appended past the stack buffer. Every
 * length up to the limit and past it, ending in "/" or not. */
static void test_static_lookup_at_every_path_length(void)
{
    char dir[] = "/tmp/xraptor-static-XXXXXX", file[1200], path[700];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(file, sizeof file, "%s/index.html", dir);
    FILE *f = fopen(file, "w");
    fputs("root", f);
    fclose(f);
    /* A directory whose name, with "/index.html" appended, nears the limit. */
    char deep[600];
    memset(deep, 'd', 501);
    deep[250] = '/';        /* a name has at most 255 bytes: two levels */
    deep[501] = '\0';
    snprintf(file, sizeof file, "%s/%.250s", dir, deep);
    CHECK(mkdir(file, 0700) == 0);
    snprintf(file, sizeof file, "%s/%s", dir, deep);
    CHECK(mkdir(file, 0700) == 0);
    snprintf(file, sizeof file, "%s/%s/index.html", dir, deep);
    f = fopen(file, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("deep", f);
    fclose(f);
    xr_options o;
    char err[256];
    xr_options_init(&o);
    o.static_dirs[0] = dir;
    o.n_static_dirs = 1;
    xr_server *srv = xr_server_new(&o, err, sizeof err);
    CHECK(srv != NULL);
    int wrong = 0;
    for (size_t n = 1; n <= XR_STATIC_PATH + 8; n++) {
        for (int slash = 0; slash < 2; slash++) {
            memset(path, 'a', n);
            path[0] = '/';
            if (slash)
                path[n - 1] = '/';
            xr_shared *body = NULL;
            const char *ctype;
            int rc = xr_static_find(srv, path, n, &body, &ctype);
            int want = n == 1 || (n == 2 && slash) ? XR_OK : XR_ENOENT;   /* "/" and "//" */
            wrong += rc != want;
            xr_shared_unref(body);
        }
        CHECK_EQ(xr_static_path_ok(path, n), n <= XR_STATIC_PATH);
    }
    CHECK_EQ(wrong, 0);
    snprintf(path, sizeof path, "/%s/", deep);
    xr_shared *body = NULL;
    const char *ctype;
    CHECK_EQ(xr_static_find(srv, path, strlen(path), &body, &ctype), 0);
    CHECK(body && body->len == 4 && memcmp(body->data, "deep", 4) == 0);
    xr_shared_unref(body);
    xr_server_free(srv);
    snprintf(file, sizeof file, "rm -rf '%s'", dir);
    CHECK_EQ(system(file), 0);
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
    RUN(test_static_lookup_at_every_path_length);
    RUN(test_raw_handler_and_routes_refused_together);
    return tap_done();
}
