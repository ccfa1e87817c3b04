/* SPDX-License-Identifier: Apache-2.0 */
/* The request parser and response writer (pure), and the registries of the
 * router and rooms through the protocol layer alone: this test links the
 * protocol, transport, codec and util libraries, not the server's. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>
#include <xraptor.h>

#include "protocol/internal.h"
#include "tap.h"

static const xr_logger quiet = {.level = XR_LOG_ERROR, .format = XR_LOG_TEXT};

/* The protocol reads only the antenna options; the rest stay zero (the
 * server layer, which fills defaults, is not linked here). */
static void options(xr_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_name_length = 256;
    o->max_channels_per_conn = 128;
    o->max_rooms_per_member = 128;
    o->max_pending_requests = 64;
}

static int parse(const char *s, xr_wire_request *r, char *err)
{
    memset(r, 0, sizeof *r);
    return xr_wire_parse(s, strlen(s), r, err, 160);
}

#define GOOD_TAIL ",\"route\":\"/r\",\"payload\":\"p\",\"method\":\"GET\",\"header\":{}}"

static void test_strings_unescaped_and_unknown_members_skipped(void)
{
    xr_wire_request r;
    char err[160];
    CHECK_EQ(parse(" {\"x\":[1,-2.5e+3,{\"a\":[true,false,null]},\"s\\\"\"],"
                   "\"request_id\":\"a\\u00e9\\ud83d\\ude00\\n\\/\\\"\","
                   "\"payload\":\"caf\xc3\xa9 \\u0000!\",\"header\":{\"k\":\"1\",\"k\":\"2\",\"t\":\"x\"},"
                   "\"route\":\"/old\",\"route\":\"/new\",\"method\":\"post\",\"y\":0}\r\n", &r, err), 0);
    CHECK_EQ(r.id_len, 10);
    CHECK(memcmp(r.id, "a\xc3\xa9\xf0\x9f\x98\x80\n/\"", 10) == 0);
    CHECK_EQ(r.payload_len, 8);
    CHECK(memcmp(r.payload, "caf\xc3\xa9 \0!", 8) == 0);
    CHECK_STR(r.route, "/new");              /* the last repeated member wins */
    CHECK_STR(xr_wire_header_get(&r, "k"), "2");
    CHECK_STR(xr_wire_header_get(&r, "t"), "x");
    CHECK(xr_wire_header_get(&r, "nope") == NULL);
    CHECK_EQ(r.method, XR_POST);
    /* Parsing again into the same request reuses its store. */
    char *store = r.store.p;
    size_t cap = r.store.cap;
    for (int i = 0; i < 100; i++)
        CHECK_EQ(xr_wire_parse("{\"request_id\":\"b\"" GOOD_TAIL,
                                strlen("{\"request_id\":\"b\"" GOOD_TAIL), &r, err, 160), 0);
    CHECK(r.store.p == store && r.store.cap == cap);
    CHECK_STR(r.id, "b");
    xr_wire_request_free(&r);
}

static void test_strict_json_refused(void)
{
    static const char *const bad[] = {
        "{\"request_id\":\"a\",}",                  /* trailing comma */
        "{'request_id':\"a\"}",                     /* single quotes */
        "{\"request_id\":\"a\\x\"}",               /* bad escape */
        "{\"request_id\":\"\\ud800\"}",            /* lone high surrogate */
        "{\"request_id\":\"\\udc00\"}",            /* lone low surrogate */
        "{\"request_id\":\"a\tb\"}",                /* raw control character */
        "{\"x\":01}", "{\"x\":1.}", "{\"x\":-}", "{\"x\":.5}", "{\"x\":1e}",
        "{\"x\":NaN}", "{\"x\":tru}", "{\"x\" 1}", "{\"x\":1 \"y\":2}",
        "{\"request_id\":\"a\"", "{", "", "   ",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        xr_wire_request r;
        char err[160];
        if (parse(bad[k], &r, err) != XR_EJSON || !strstr(err, "not valid JSON"))
            printf("#   accepted or misreported %s: %s\n", bad[k], err), tap_cur_failed = 1;
        xr_wire_request_free(&r);
    }
    /* Deep nesting is refused, not recursed into without end. */
    char deep[400];
    memset(deep, '[', sizeof deep);
    memcpy(deep, "{\"x\":", 5);
    deep[sizeof deep - 1] = '\0';
    xr_wire_request r;
    char err[160];
    CHECK_EQ(parse(deep, &r, err), XR_EJSON);
    CHECK(strstr(err, "nested too deep") != NULL);
    xr_wire_request_free(&r);
    /* At most XR_WIRE_MAX_HEADERS headers. */
    char many[4096] = "{\"request_id\":\"a\",\"route\":\"/\",\"payload\":\"\",\"method\":\"GET\",\"header\":{";
    for (int i = 0; i <= XR_WIRE_MAX_HEADERS; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s\"h%d\":\"v\"", i ? "," : "", i);
    strcat(many, "}}");
    CHECK_EQ(parse(many, &r, err), XR_EJSON);
    CHECK(strstr(err, "more than 32 headers") != NULL);
    CHECK_STR(r.id, "a");
    xr_wire_request_free(&r);
}

static void test_request_parsed_and_method_case_insensitive(void)
{
    xr_wire_request r;
    char err[160];
    CHECK_EQ(parse("{\"request_id\":\"r1\",\"payload\":\"{}\",\"header\":{\"token\":\"t\"},"
                   "\"route\":\"/x\",\"method\":\"unsub\"}", &r, err), 0);
    CHECK_EQ(r.method, XR_UNSUB);
    CHECK_EQ(r.id_len, 2);
    CHECK_STR(r.route, "/x");
    xr_wire_request_free(&r);
}

static void test_bad_requests_explained(void)
{
    static const struct { const char *in, *words; int has_id; } cases[] = {
        {"nope", "not valid JSON", 0},
        {"\"str\"", "must be a JSON object", 0},
        {"{}", "missing field 'request_id'", 0},
        {"{\"request_id\":1}", "must be a string", 0},
        {"{\"request_id\":\"a\"}", "missing field 'route'", 1},
        {"{\"request_id\":\"a\",\"route\":\"/\",\"payload\":\"\",\"method\":\"GET\"}", "missing field 'header'", 1},
        {"{\"request_id\":\"a\",\"route\":\"/\",\"payload\":\"\",\"method\":\"GET\",\"header\":{\"k\":[}}",
         "not valid JSON", 0},
        {"{\"request_id\":\"a\",\"route\":\"/\",\"payload\":\"\",\"method\":\"PATCH\",\"header\":{}}",
         "unknown method 'PATCH'", 1},
        {"{\"request_id\":\"a\",\"route\":\"/\",\"payload\":\"\",\"method\":\"GET\",\"header\":{}} x",
         "data after the object", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        xr_wire_request r;
        char err[160];
        CHECK_EQ(parse(cases[i].in, &r, err), XR_EJSON);
        if (!strstr(err, cases[i].words))
            printf("#   case %zu: expected \"%s\" in \"%s\"\n", i, cases[i].words, err), tap_cur_failed = 1;
        CHECK_EQ(r.id != NULL, cases[i].has_id);
        xr_wire_request_free(&r);
    }
}

static void test_response_escapes_and_upper_cases(void)
{
    xr_buf b = {0};
    CHECK_EQ(xr_wire_response(&b, "i\"d", 3, "a\nb\x01", 4, NULL, XR_SUB), 0);
    CHECK_EQ(xr_buf_add(&b, "", 1), 0);
    CHECK_STR(b.p, "{\"request_id\":\"i\\\"d\",\"payload\":\"a\\nb\\u0001\",\"header\":{},\"method\":\"SUB\"}");
    xr_buf_free(&b);
}

static int noop(xr_request *r, void *ud) { (void)r; (void)ud; return 0; }

static void test_routes_unique_per_method(void)
{
    xr_options o;
    options(&o);
    xr_proto *srv = xr_proto_new(NULL, &o, &quiet, NULL);
    CHECK(srv != NULL);
    CHECK_EQ(xr_proto_route(srv, "/a", XR_GET | XR_POST, noop, NULL), XR_OK);
    CHECK_EQ(xr_proto_route(srv, "/a", XR_PUT, noop, NULL), XR_OK);
    CHECK_EQ(xr_proto_route(srv, "/a", XR_POST, noop, NULL), XR_EEXIST);
    CHECK_EQ(xr_proto_route(srv, "/a", 0, noop, NULL), XR_EINVAL);
    CHECK_EQ(xr_proto_route(srv, "/a", 64, noop, NULL), XR_EINVAL);
    CHECK_EQ(srv->routes.count, 3);
    xr_proto_free(srv);
}

static void test_middleware_sorted_unique_and_regex_checked(void)
{
    xr_options o;
    options(&o);
    xr_proto *srv = xr_proto_new(NULL, &o, &quiet, NULL);
    static const int prio[] = {30, 10, 20, -5};
    for (int i = 0; i < 4; i++)
        CHECK_EQ(xr_proto_middleware(srv, prio[i], i == 2 ? "^/api/" : NULL, (xr_middleware_fn)noop, NULL), XR_OK);
    CHECK_EQ(xr_proto_middleware(srv, 10, NULL, (xr_middleware_fn)noop, NULL), XR_EEXIST);
    CHECK_EQ(xr_proto_middleware(srv, 99, "(unclosed", (xr_middleware_fn)noop, NULL), XR_EINVAL);
    CHECK_EQ(srv->n_mws, 4);
    for (size_t i = 1; i < srv->n_mws; i++)
        CHECK(srv->mws[i - 1].priority < srv->mws[i].priority);
    CHECK_EQ(srv->mws[0].priority, -5);
    xr_proto_free(srv);
}

static void test_room_refcounts_one_subscription_per_name(void)
{
    xr_options o;
    char err[256];
    options(&o);
    struct event_base *base = event_base_new();
    xr_proto *srv = xr_proto_new(base, &o, &quiet, NULL);
    /* Rooms need the antenna (normally loaded by xr_server_run). */
    CHECK_EQ(xr_proto_room_join(srv, "r", "m"), XR_ESTATE);
    CHECK_EQ(xr_proto_start(srv, err, sizeof err), XR_OK);
    CHECK_EQ(xr_proto_room_join(srv, "r", "m1"), XR_OK);
    CHECK_EQ(xr_proto_room_join(srv, "r", "m1"), XR_OK);   /* idempotent */
    CHECK_EQ(xr_proto_room_join(srv, "r", "m2"), XR_OK);
    CHECK_EQ(xr_proto_room_join(srv, "q", "m1"), XR_OK);
    CHECK_EQ(xr_proto_room_size(srv, "r"), 2);
    CHECK_EQ(srv->subs.count, 2);                      /* "r" and "q" once each */
    CHECK_EQ((uintptr_t)xr_map_get(&srv->subs, "r", 1), 1);
    CHECK_EQ(xr_proto_room_leave(srv, "r", "m1"), XR_OK);
    CHECK_EQ(xr_proto_room_leave(srv, "r", "m1"), XR_EINVAL);
    CHECK_EQ(xr_proto_room_leave(srv, "r", "m2"), XR_OK);
    CHECK_EQ(xr_proto_room_size(srv, "r"), 0);
    CHECK_EQ(srv->rooms.count, 1);                     /* only "q" left open */
    CHECK_EQ(srv->subs.count, 1);
    CHECK(xr_map_get(&srv->memberships, "m2", 2) == NULL);
    /* A member whose channel closes here leaves every room it was in. */
    xr_pconn pc = {.conn = NULL, .refs = 1};
    CHECK_EQ(xr_proto_room_join(srv, "q", "m3"), XR_OK);
    CHECK_EQ(xr_channel_open(srv, &pc, "m1", 2), XR_OK);
    CHECK_EQ(xr_channel_open(srv, &pc, "m1", 2), XR_OK);   /* the same SUB twice */
    CHECK_EQ(srv->channels.count, 1);
    CHECK_EQ(xr_proto_room_size(srv, "q"), 2);
    xr_channels_conn_gone(srv, &pc);
    CHECK_EQ(xr_proto_room_size(srv, "q"), 1);
    CHECK_EQ(srv->channels.count, 0);
    CHECK_EQ(xr_proto_room_leave(srv, "q", "m3"), XR_OK);
    CHECK_EQ(srv->rooms.count, 0);
    CHECK_EQ(srv->subs.count, 0);
    xr_proto_free(srv);
    event_base_free(base);
}

/* Finding 2 of the attack review: a NUL in a SUB's id made a channel
 * "A\0" whose room member was "A" (C strings), which no channel had: two
 * such rooms re-posted each other's messages for ever. */
static void test_names_outside_the_policy_refused(void)
{
    xr_options o;
    char err[256], name[300];
    options(&o);
    struct event_base *base = event_base_new();
    xr_proto *p = xr_proto_new(base, &o, &quiet, NULL);
    CHECK_EQ(xr_proto_start(p, err, sizeof err), XR_OK);
    xr_pconn pc = {.conn = NULL, .refs = 1};
    CHECK_EQ(xr_channel_open(p, &pc, "A\0", 2), XR_EINVAL);
    CHECK_EQ(xr_channel_open(p, &pc, "a\nb", 3), XR_EINVAL);
    CHECK_EQ(xr_channel_open(p, &pc, "\x1b[31m", 5), XR_EINVAL);
    CHECK_EQ(xr_channel_open(p, &pc, "a\x7f", 2), XR_EINVAL);
    CHECK_EQ(xr_channel_open(p, &pc, "\xff", 1), XR_EINVAL);
    CHECK_EQ(xr_channel_open(p, &pc, "", 0), XR_EINVAL);
    memset(name, 'n', sizeof name);
    CHECK_EQ(xr_channel_open(p, &pc, name, 257), XR_EINVAL);
    CHECK_EQ(p->channels.count, 0);
    CHECK_EQ(p->subs.count, 0);
    CHECK_EQ(xr_channel_open(p, &pc, name, 256), XR_OK);
    CHECK_EQ(xr_channel_open(p, &pc, "caf\xc3\xa9", 5), XR_OK);
    CHECK_EQ(p->channels.count, 2);
    CHECK_EQ(xr_proto_publish(p, "A\0", 2, "x", 1), XR_EINVAL);
    CHECK_EQ(xr_proto_publish(p, name, 257, "x", 1), XR_EINVAL);
    CHECK_EQ(xr_proto_publish(p, name, 256, "x", 1), XR_OK);
    CHECK_EQ(xr_proto_room_join(p, "r\n", "m"), XR_EINVAL);
    CHECK_EQ(xr_proto_room_join(p, "r", "m\x1b"), XR_EINVAL);
    name[256] = '\0';
    CHECK_EQ(xr_proto_room_join(p, name, "m"), XR_OK);
    name[256] = 'n';
    name[257] = '\0';
    CHECK_EQ(xr_proto_room_join(p, name, "m"), XR_EINVAL);
    CHECK_EQ(xr_proto_room_join(p, "r", name), XR_EINVAL);
    CHECK(xr_map_get(&p->memberships, name, 257) == NULL);
    xr_channels_conn_gone(p, &pc);
    xr_proto_free(p);
    event_base_free(base);
}

/* A member that is a room here would get the room's messages posted back
 * to the room itself; names of rooms and members are kept apart. */
static void test_rooms_cannot_feed_each_other(void)
{
    xr_options o;
    char err[256];
    options(&o);
    struct event_base *base = event_base_new();
    xr_proto *p = xr_proto_new(base, &o, &quiet, NULL);
    CHECK_EQ(xr_proto_start(p, err, sizeof err), XR_OK);
    CHECK_EQ(xr_proto_room_join(p, "A", "B"), XR_OK);
    CHECK_EQ(xr_proto_room_join(p, "B", "A"), XR_EINVAL);   /* B is a member, A a room */
    CHECK_EQ(xr_proto_room_join(p, "C", "A"), XR_EINVAL);   /* A is a room */
    CHECK_EQ(xr_proto_room_join(p, "A", "A"), XR_EINVAL);
    CHECK_EQ(p->rooms.count, 1);
    CHECK_EQ(xr_proto_room_size(p, "A"), 1);
    CHECK_EQ(xr_proto_room_leave(p, "A", "B"), XR_OK);
    CHECK_EQ(xr_proto_room_join(p, "B", "A"), XR_OK);       /* apart again: fine */
    xr_proto_free(p);
    event_base_free(base);
}

/* Finding 4: what one connection can make a node hold is capped. */
static void test_per_connection_and_member_caps(void)
{
    xr_options o;
    char err[256], name[16];
    options(&o);
    o.max_channels_per_conn = 3;
    o.max_rooms_per_member = 2;
    struct event_base *base = event_base_new();
    xr_proto *p = xr_proto_new(base, &o, &quiet, NULL);
    CHECK_EQ(xr_proto_start(p, err, sizeof err), XR_OK);
    xr_pconn pc = {.conn = NULL, .refs = 1}, other = {.conn = NULL, .refs = 1};
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "c%d", i);
        CHECK_EQ(xr_channel_open(p, &pc, name, strlen(name)), XR_OK);
    }
    CHECK_EQ(xr_channel_open(p, &pc, "c3", 2), XR_ELIMIT);
    CHECK_EQ(xr_channel_open(p, &pc, "c1", 2), XR_OK);        /* held already */
    CHECK_EQ(pc.n_receivers, 3);
    CHECK_EQ(xr_channel_open(p, &other, "c3", 2), XR_OK);     /* per connection */
    xr_channel_close(p, &pc, "c0", 2);
    CHECK_EQ(pc.n_receivers, 2);
    CHECK_EQ(xr_channel_open(p, &pc, "c3", 2), XR_OK);
    CHECK_EQ(xr_proto_room_join(p, "r1", "c1"), XR_OK);
    CHECK_EQ(xr_proto_room_join(p, "r2", "c1"), XR_OK);
    CHECK_EQ(xr_proto_room_join(p, "r3", "c1"), XR_ELIMIT);
    CHECK_EQ(xr_proto_room_join(p, "r1", "c1"), XR_OK);      /* in it already */
    CHECK(xr_map_get(&p->rooms, "r3", 2) == NULL);
    CHECK_EQ(xr_proto_room_join(p, "r3", "c2"), XR_OK);
    xr_channels_conn_gone(p, &pc);
    xr_channels_conn_gone(p, &other);
    CHECK_EQ(pc.n_receivers, 0);
    CHECK_EQ(p->rooms.count, 0);
    xr_proto_free(p);
    event_base_free(base);
}

/* What the host lends antenna modules (ABI 2.4). */
static int woken;
static void on_woken(void *arg)
{
    woken += *(int *)arg;
}

static void test_antenna_host_services(void)
{
    xr_antenna_host h;
    memset(&h, 0, sizeof h);
    xr_antenna_host_services(&h);
    /* Sets of names: put, find, replace, walk while deleting, count. */
    xr_antenna_names *s = h.names_new();
    CHECK(s != NULL);
    int v[100];
    char name[16];
    for (int i = 0; i < 100; i++) {
        v[i] = i;
        int n = snprintf(name, sizeof name, "ch\x01%d", i);   /* any bytes */
        CHECK_EQ(h.names_put(s, name, (size_t)n, &v[i]), XR_OK);
    }
    CHECK_EQ(h.names_count(s), 100);
    void **slot = h.names_find(s, "ch\x01" "42", 5);
    CHECK(slot && *slot == &v[42]);
    CHECK(h.names_find(s, "ch\x01" "420", 6) == NULL);
    int seen = 0, sum = 0;
    for (xr_antenna_cursor c = {0}; h.names_next(s, &c);) {
        seen++;
        sum += *(int *)c.value;
        CHECK(c.len == strlen(c.name));
        if (*(int *)c.value % 2)        /* the current one may go */
            CHECK(h.names_del(s, c.name, c.len) == c.value);
    }
    CHECK_EQ(seen, 100);
    CHECK_EQ(sum, 4950);
    CHECK_EQ(h.names_count(s), 50);
    CHECK(h.names_del(s, "nope", 4) == NULL);
    h.names_free(s);
    /* Back-off: from min, doubling to max, never more than the step and
     * at most a quarter less; 0 starts again. */
    unsigned st = 0, prev = 0;
    for (int i = 0; i < 12; i++) {
        unsigned step = st < 100 ? 100 : st;
        unsigned d = h.backoff(&st, 100, 5000);
        CHECK(d <= step && d >= step - step / 4);
        CHECK(st >= prev && st <= 5000);
        prev = st;
    }
    CHECK_EQ(st, 5000);
    st = 0;
    CHECK(h.backoff(&st, 100, 5000) <= 100);
    CHECK_EQ(st, 200);
    unsigned long long t0 = h.now_ms();
    CHECK(t0 > 0 && h.now_ms() >= t0);
    /* A wake-up: bytes from another thread (here this one) make one call
     * on the loop; the pipe goes with the list. */
    struct event_base *base = event_base_new();
    xr_wakeup *list = NULL;
    int one = 1;
    int fd = xr_wakeup_new(base, &list, on_woken, &one);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "abc", 3), 3);
    event_base_loop(base, EVLOOP_NONBLOCK);
    CHECK_EQ(woken, 1);
    event_base_loop(base, EVLOOP_NONBLOCK);
    CHECK_EQ(woken, 1);                 /* nothing written since */
    CHECK_EQ(write(fd, "d", 1), 1);
    event_base_loop(base, EVLOOP_NONBLOCK);
    CHECK_EQ(woken, 2);
    xr_wakeups_free(&list);
    CHECK(list == NULL);
    event_base_free(base);
}

int main(void)
{
    RUN(test_request_parsed_and_method_case_insensitive);
    RUN(test_bad_requests_explained);
    RUN(test_strings_unescaped_and_unknown_members_skipped);
    RUN(test_strict_json_refused);
    RUN(test_response_escapes_and_upper_cases);
    RUN(test_routes_unique_per_method);
    RUN(test_middleware_sorted_unique_and_regex_checked);
    RUN(test_room_refcounts_one_subscription_per_name);
    RUN(test_names_outside_the_policy_refused);
    RUN(test_rooms_cannot_feed_each_other);
    RUN(test_per_connection_and_member_caps);
    RUN(test_antenna_host_services);
    return tap_done();
}
