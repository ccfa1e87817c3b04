/* SPDX-License-Identifier: Apache-2.0 */
/* redis://'s bounds around hiredis' reader (antennas/redis/bound.c): fed
 * the bytes a broken or hostile Redis could send, the way the antenna
 * reads them (16 KiB at a time, checked after each read). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "../../antennas/redis/bound.h"
#include "tap.h"

#define CHUNK 16384

/* Feeds len bytes in reads of at most chunk bytes, taking every whole
 * reply after each as the antenna does: the replies taken, or -1 when the
 * reader failed, or -2 when the check refused what waits. */
static long feed(redis_bound *b, redisReader *rd, const char *p, size_t len, size_t chunk)
{
    long taken = 0;
    for (size_t at = 0; at < len;) {
        size_t n = len - at < chunk ? len - at : chunk;
        if (redisReaderFeed(rd, p + at, n) != REDIS_OK)
            return -1;
        at += n;
        void *reply;
        int rc;
        while ((rc = redisReaderGetReply(rd, &reply)) == REDIS_OK && reply) {
            freeReplyObject(reply);
            taken++;
        }
        if (rc != REDIS_OK)
            return -1;
        if (redis_bound_check(b, rd) < 0)
            return -2;
    }
    return taken;
}

static redisReader *fresh(redis_bound *b)
{
    redisReader *rd = redisReaderCreate();
    redis_bound_attach(b, rd);
    return rd;
}

/* "*n\r\n" and n times ":1\r\n". */
static char *ints(size_t n, size_t *len)
{
    char *s = malloc(32 + 4 * n);
    int h = snprintf(s, 32, "*%zu\r\n", n);
    for (size_t i = 0; i < n; i++)
        memcpy(s + h + 4 * i, ":1\r\n", 4);
    *len = (size_t)h + 4 * n;
    return s;
}

static void test_ordinary_replies_pass_cut_at_every_byte(void)
{
    const char msg[] = "*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$5\r\nhello\r\n:1\r\n+PONG\r\n$-1\r\n"
                       "-ERR wrong\r\n*2\r\n*1\r\n:2\r\n$0\r\n\r\n";
    for (size_t chunk = 1; chunk <= sizeof msg; chunk++) {
        redis_bound b;
        redisReader *rd = fresh(&b);
        CHECK_EQ(feed(&b, rd, msg, sizeof msg - 1, chunk), 6);
        CHECK(b.why == NULL);
        redisReaderFree(rd);
    }
}

static void test_values_a_reply_are_bounded(void)
{
    redis_bound b;
    size_t len;
    /* 2^20 values in all (the array and its elements): the most taken */
    char *s = ints(RESP_MAX_VALUES - 1, &len);
    redisReader *rd = fresh(&b);
    CHECK_EQ(feed(&b, rd, s, len, CHUNK), 1);
    /* the count starts over with each reply */
    CHECK_EQ(feed(&b, rd, s, len, CHUNK), 1);
    redisReaderFree(rd);
    free(s);
    /* one more: refused, and from the header, before the slots are made */
    rd = fresh(&b);
    CHECK_EQ(feed(&b, rd, "*1048576\r\n", 10, CHUNK), -1);
    CHECK(b.why && strstr(b.why, "2^20"));
    redisReaderFree(rd);
    /* a header past any bound: the same */
    rd = fresh(&b);
    CHECK_EQ(feed(&b, rd, "*2000000000\r\n", 13, CHUNK), -1);
    CHECK(b.why && strstr(b.why, "2^20"));
    redisReaderFree(rd);
    /* values counted across nested arrays: 2^19 arrays of one value */
    size_t n = RESP_MAX_VALUES / 2;
    char *nest = malloc(32 + 8 * n);
    int h = snprintf(nest, 32, "*%zu\r\n", n);
    for (size_t i = 0; i < n; i++)
        memcpy(nest + h + 8 * i, "*1\r\n:1\r\n", 8);
    rd = fresh(&b);
    CHECK_EQ(feed(&b, rd, nest, (size_t)h + 8 * n, CHUNK), -1);   /* 2^20 + 1 values */
    CHECK(b.why && strstr(b.why, "2^20"));
    redisReaderFree(rd);
    free(nest);
}

static void test_bytes_waiting_and_lines_are_bounded(void)
{
    redis_bound b;
    /* a bulk string of 64 MiB and one byte, whole: refused */
    size_t big = RESP_MAX_REPLY + 1;
    char *s = malloc(big + 2 * CHUNK);
    int h = snprintf(s, 32, "$%zu\r\n", big);
    memset(s + h, 'x', big);
    memcpy(s + h + big, "\r\n", 2);
    redisReader *rd = fresh(&b);
    CHECK_EQ(feed(&b, rd, s, (size_t)h + big + 2, CHUNK), -1);
    CHECK(b.why && strstr(b.why, "64 MiB"));
    redisReaderFree(rd);
    /* one that says 2 GB: refused once 64 MiB wait, not when all came */
    h = snprintf(s, 32, "$%u\r\n", 2000000000u);
    memset(s + h, 'x', RESP_MAX_REPLY + CHUNK - (size_t)h);
    rd = fresh(&b);
    CHECK_EQ(feed(&b, rd, s, RESP_MAX_REPLY + CHUNK, CHUNK), -2);
    CHECK(b.why && strstr(b.why, "64 MiB"));
    redisReaderFree(rd);
    /* one of 1 MiB (a large message) passes */
    h = snprintf(s, 32, "$%u\r\n", 1u << 20);
    memset(s + h, 'y', 1u << 20);
    memcpy(s + h + (1u << 20), "\r\n", 2);
    rd = fresh(&b);
    CHECK_EQ(feed(&b, rd, s, (size_t)h + (1u << 20) + 2, CHUNK), 1);
    redisReaderFree(rd);
    /* a line that does not end: refused past 64 KiB */
    s[0] = '+';
    memset(s + 1, 'z', 4 * RESP_MAX_LINE);
    rd = fresh(&b);
    CHECK_EQ(feed(&b, rd, s, 1 + 4 * RESP_MAX_LINE, CHUNK), -2);
    CHECK(b.why && strstr(b.why, "64 KiB"));
    redisReaderFree(rd);
    /* an error text just under it that ends passes */
    s[0] = '-';
    memset(s + 1, 'e', RESP_MAX_LINE - 8);
    memcpy(s + RESP_MAX_LINE - 7, "\r\n", 2);
    rd = fresh(&b);
    CHECK_EQ(feed(&b, rd, s, RESP_MAX_LINE - 5, CHUNK), 1);
    redisReaderFree(rd);
    free(s);
}

int main(void)
{
    RUN(test_ordinary_replies_pass_cut_at_every_byte);
    RUN(test_values_a_reply_are_bounded);
    RUN(test_bytes_waiting_and_lines_are_bounded);
    return tap_done();
}
