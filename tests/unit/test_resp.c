/* SPDX-License-Identifier: Apache-2.0 */
/* The redis-cluster antenna's pure part: RESP2 replies, key slots,
 * CLUSTER SLOTS and MOVED/ASK (antennas/redis/resp.c). */
#include <stdlib.h>

#include "../../antennas/redis/resp.h"
#include "tap.h"

static resp_reader rd;

/* Parses s whole: the bytes taken, with every proper prefix "need more". */
static long parse_all(const char *s, size_t len, size_t *nv)
{
    for (size_t k = 0; k < len; k++) {
        size_t n;
        long r = resp_parse(&rd, s, k, &n);
        if (r != 0)
            return -100 - (long)k;      /* a prefix was taken or refused */
    }
    return resp_parse(&rd, s, len, nv);
}

static void test_key_slots_as_redis_computes_them(void)
{
    /* Redis Cluster's specification: CRC16-XMODEM of "123456789" is 0x31C3. */
    CHECK_EQ(resp_key_slot("123456789", 9), 0x31C3 & 16383);
    /* Values CLUSTER KEYSLOT gives. */
    CHECK_EQ(resp_key_slot("room", 4), 15960);
    CHECK_EQ(resp_key_slot("foo", 3), 12182);
    CHECK_EQ(resp_key_slot("", 0), 0);
    /* Hash tags: the first {...} that is not empty. */
    CHECK_EQ(resp_key_slot("{user1000}.following", 20), resp_key_slot("user1000", 8));
    CHECK_EQ(resp_key_slot("{user1000}.followers", 20), resp_key_slot("user1000", 8));
    CHECK_EQ(resp_key_slot("foo{}{bar}", 10), resp_key_slot("foo{}{bar}", 10));
    CHECK(resp_key_slot("foo{}{bar}", 10) != resp_key_slot("bar", 3));
    CHECK_EQ(resp_key_slot("foo{{bar}}zap", 13), resp_key_slot("{bar", 4));
    CHECK_EQ(resp_key_slot("foo{bar}{zap}", 13), resp_key_slot("bar", 3));
    CHECK_EQ(resp_key_slot("{unclosed", 9), resp_key_slot("{unclosed", 9));
}

static void test_replies_of_every_type(void)
{
    size_t nv;
    const char *msg = "*3\r\n$8\r\nsmessage\r\n$4\r\nroom\r\n$5\r\nh\r\ni!\r\n";
    CHECK_EQ(parse_all(msg, strlen(msg), &nv), (long)strlen(msg));
    CHECK_EQ(nv, 4);
    CHECK(resp_is(&rd.vals[1], "smessage"));
    CHECK_EQ(rd.vals[3].n, 5);
    CHECK(memcmp(rd.vals[3].s, "h\r\ni!", 5) == 0);   /* bulk strings are binary */
    CHECK_EQ(resp_skip(rd.vals, 0), 4);
    const char *misc = "*5\r\n+OK\r\n-ERR no\r\n:-42\r\n$-1\r\n*0\r\n";
    CHECK_EQ(parse_all(misc, strlen(misc), &nv), (long)strlen(misc));
    CHECK_EQ(nv, 6);
    CHECK(resp_is(&rd.vals[1], "OK"));
    CHECK_EQ(rd.vals[2].type, '-');
    CHECK_EQ(rd.vals[3].n, -42);
    CHECK_EQ(rd.vals[4].type, 0);
    CHECK_EQ(rd.vals[5].type, '*');
    /* Two replies back to back: one at a time. */
    CHECK_EQ(resp_parse(&rd, ":1\r\n:2\r\n", 8, &nv), 4);
}

static void test_bytes_that_are_not_resp_are_refused(void)
{
    size_t nv;
    const char *bad[] = {"?x\r\n", ":12a\r\n", ":\r\n", "$3\r\nabcd\r\n", "$-2\r\n", "*-2\r\n",
                         "+OK\rx", "$999999999999\r\n", "*2000000\r\n",
                         ":99999999999999999999\r\n",
                         "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        if (resp_parse(&rd, bad[k], strlen(bad[k]), &nv) != -1) {
            printf("#   not refused: %s\n", bad[k]);
            CHECK(0);
        }
    /* Eight levels are fine. */
    const char *deep = "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n";
    CHECK_EQ(resp_parse(&rd, deep, strlen(deep), &nv), (long)strlen(deep));
}

typedef struct got {
    int n, start[4], end[4], port[4];
    char host[4][32];
} got;

static int collect(void *arg, int start, int end, const char *host, size_t hlen, int port)
{
    got *g = arg;
    if (g->n == 4 || hlen >= sizeof g->host[0])
        return -1;
    g->start[g->n] = start;
    g->end[g->n] = end;
    g->port[g->n] = port;
    memcpy(g->host[g->n], host, hlen);
    g->host[g->n][hlen] = '\0';
    g->n++;
    return 0;
}

static void test_cluster_slots(void)
{
    /* As Redis 7.0 answers: the master's id, then a map of extra
     * networking fields; a replica after it. */
    const char *r =
        "*2\r\n"
        "*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7001\r\n$40\r\n"
        "460fdbc0b31fe2fc8ac503e9876f0a943a8ea519\r\n*0\r\n"
        "*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$3\r\nabc\r\n"
        "*3\r\n:5461\r\n:16383\r\n*2\r\n$0\r\n\r\n:7002\r\n";
    size_t nv;
    got g = {0};
    CHECK_EQ(parse_all(r, strlen(r), &nv), (long)strlen(r));
    CHECK_EQ(resp_slot_ranges(rd.vals, nv, collect, &g), 0);
    CHECK_EQ(g.n, 2);
    CHECK_EQ(g.start[0], 0);
    CHECK_EQ(g.end[0], 5460);
    CHECK_STR(g.host[0], "127.0.0.1");
    CHECK_EQ(g.port[0], 7001);
    CHECK_EQ(g.start[1], 5461);
    CHECK_EQ(g.end[1], 16383);
    CHECK_STR(g.host[1], "");             /* "the node asked" */
    CHECK_EQ(g.port[1], 7002);
    /* Empty (a cluster not set up yet): no range, no error. */
    g.n = 0;
    CHECK_EQ(parse_all("*0\r\n", 4, &nv), 4);
    CHECK_EQ(resp_slot_ranges(rd.vals, nv, collect, &g), 0);
    CHECK_EQ(g.n, 0);
    /* Out of range, reversed, wrong types, a port of 0: refused. */
    const char *bad[] = {
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",
        "*1\r\n*3\r\n:9\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n",
        "*1\r\n*3\r\n:-1\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n",
        "*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n:1\r\n:1\r\n",
        "*1\r\n*3\r\n:0\r\n:3\r\n*1\r\n$1\r\nh\r\n",
        "*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n:0\r\n",
        "*1\r\n*2\r\n:0\r\n:3\r\n",
        "*1\r\n:5\r\n",
        "+OK\r\n",
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        CHECK(resp_parse(&rd, bad[k], strlen(bad[k]), &nv) > 0);
        g.n = 0;
        if (resp_slot_ranges(rd.vals, nv, collect, &g) != -1) {
            printf("#   not refused: %zu\n", k);
            CHECK(0);
        }
    }
}

static int redirect(const char *text, int *ask, uint16_t *slot, char *host, int *port)
{
    resp_val v = {'-', text, (int64_t)strlen(text), 0};
    const char *h;
    size_t hl;
    if (resp_redirect(&v, ask, slot, &h, &hl, port) < 0)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    return 0;
}

static void test_moved_and_ask(void)
{
    int ask, port;
    uint16_t slot;
    char host[64];
    CHECK_EQ(redirect("MOVED 3999 127.0.0.1:6381", &ask, &slot, host, &port), 0);
    CHECK_EQ(ask, 0);
    CHECK_EQ(slot, 3999);
    CHECK_STR(host, "127.0.0.1");
    CHECK_EQ(port, 6381);
    CHECK_EQ(redirect("ASK 16383 ::1:7000", &ask, &slot, host, &port), 0);
    CHECK_EQ(ask, 1);
    CHECK_STR(host, "::1");
    CHECK_EQ(port, 7000);
    CHECK_EQ(redirect("MOVED 1 :7000", &ask, &slot, host, &port), 0);
    CHECK_STR(host, "");
    const char *bad[] = {"MOVED", "MOVED 16384 h:1", "MOVED x h:1", "MOVED 1 h", "MOVED 1 h:0",
                         "MOVED 1 h:99999", "ASK 1", "ERR MOVED 1 h:1", "CLUSTERDOWN"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        CHECK_EQ(redirect(bad[k], &ask, &slot, host, &port), -1);
}

/* Finding 6 of the attack review: an unfinished reply was parsed again
 * from its first byte on every read, and nothing bounded it: an endless
 * CLUSTER SLOTS reply took 3.5 GiB and 73 s of CPU. */
static void test_a_reply_cut_anywhere_goes_on_where_it_stopped(void)
{
    const char *msg = "*3\r\n$8\r\nsmessage\r\n$4\r\nroom\r\n$5\r\nh\r\ni!\r\n";
    size_t len = strlen(msg), nv;
    /* Two pieces, cut at every byte, the second in a buffer of its own
     * (the caller's buffer moves between reads): the same reply. */
    for (size_t cut = 0; cut <= len; cut++) {
        char *moved = malloc(len);
        resp_reader_reset(&rd);
        long first = resp_parse(&rd, msg, cut, &nv);
        CHECK_EQ(first, cut == len ? (long)len : 0);
        if (cut == len) {
            free(moved);
            continue;
        }
        memcpy(moved, msg, len);
        CHECK_EQ(resp_parse(&rd, moved, len, &nv), (long)len);
        CHECK_EQ(nv, 4);
        CHECK(resp_is(&rd.vals[2], "room"));
        CHECK(rd.vals[3].s == moved + len - 7);
        free(moved);
    }
    /* What was read is not read again: after whole values, the reader
     * stands past them. */
    resp_reader_reset(&rd);
    CHECK_EQ(resp_parse(&rd, msg, 30, &nv), 0);
    CHECK_EQ(rd.pos, 28);                       /* *3, smessage, room */
    CHECK_EQ(rd.nv, 3);
    /* A line without its end yet: its search goes on past what was seen. */
    resp_reader_reset(&rd);
    CHECK_EQ(resp_parse(&rd, "+abcdef", 7, &nv), 0);
    CHECK_EQ(rd.scan, 7);
    CHECK_EQ(resp_parse(&rd, "+abcdef\r\n", 9, &nv), 9);
    CHECK_EQ(rd.scan, 0);
}

static void test_replies_are_bounded(void)
{
    size_t nv;
    /* Arrays nested past RESP_MAX_DEPTH: refused. */
    size_t n = 4 * (RESP_MAX_VALUES + 16) + 64, at = 0;
    char *big = malloc(n);
    for (int d = 0; d < RESP_MAX_DEPTH + 1; d++)
        at += (size_t)sprintf(big + at, "*1\r\n");
    at += (size_t)sprintf(big + at, ":1\r\n");
    resp_reader_reset(&rd);
    CHECK_EQ(resp_parse(&rd, big, at, &nv), -1);
    /* More values than RESP_MAX_VALUES in one reply (an array of 2^20
     * arrays is allowed by the per-array limit): refused. */
    at = (size_t)sprintf(big, "*%u\r\n", 1u << 20);
    for (unsigned k = 0; k < (1u << 20); k++) {
        memcpy(big + at, ":1\r\n", 4);
        at += 4;
    }
    resp_reader_reset(&rd);
    CHECK_EQ(resp_parse(&rd, big, at, &nv), -1);
    /* One value fewer fits. */
    at = (size_t)sprintf(big, "*%u\r\n", (1u << 20) - 1);
    for (unsigned k = 0; k < (1u << 20) - 1; k++) {
        memcpy(big + at, ":1\r\n", 4);
        at += 4;
    }
    resp_reader_reset(&rd);
    CHECK_EQ(resp_parse(&rd, big, at, &nv), (long)at);
    CHECK_EQ(nv, 1u << 20);
    free(big);
    /* A reply longer than RESP_MAX_REPLY never completes: refused as soon
     * as that many bytes are here, whatever its shape. */
    size_t m = RESP_MAX_REPLY + 16;
    char *line = malloc(m);
    memset(line, 'x', m);
    line[0] = '+';
    resp_reader_reset(&rd);
    CHECK_EQ(resp_parse(&rd, line, RESP_MAX_REPLY, &nv), 0);
    CHECK_EQ(resp_parse(&rd, line, m, &nv), -1);
    sprintf(line, "$%u\r\n", RESP_MAX_REPLY + 1);
    resp_reader_reset(&rd);
    CHECK_EQ(resp_parse(&rd, line, strlen(line), &nv), -1);
    free(line);
    /* After a refusal the reader starts afresh. */
    CHECK_EQ(resp_parse(&rd, ":7\r\n", 4, &nv), 4);
    CHECK_EQ(rd.vals[0].n, 7);
}

int main(void)
{
    RUN(test_key_slots_as_redis_computes_them);
    RUN(test_replies_of_every_type);
    RUN(test_bytes_that_are_not_resp_are_refused);
    RUN(test_cluster_slots);
    RUN(test_moved_and_ask);
    RUN(test_a_reply_cut_anywhere_goes_on_where_it_stopped);
    RUN(test_replies_are_bounded);
    resp_reader_free(&rd);
    return tap_done();
}
