/* SPDX-License-Identifier: Apache-2.0 */
#include "bound.h"

#include <string.h>

#include <xraptor/errors.h>

/* Each value of a reply is made by one of these, its root first (the only
 * one without a parent): the counts start over there. NULL makes hiredis
 * fail the reader, and with it the connection. */
static redis_bound *count(const redisReadTask *t, size_t values, size_t bytes)
{
    redis_bound *b = t->privdata;
    if (!t->parent)
        b->values = b->bytes = 0;
    if (values > RESP_MAX_VALUES - b->values) {
        b->why = "a reply of more than 2^20 values";
        return NULL;
    }
    if (bytes > RESP_MAX_REPLY - b->bytes) {
        b->why = "a reply of more than 64 MiB";
        return NULL;
    }
    b->values += values;
    b->bytes += bytes;
    return b;
}

static void *string(const redisReadTask *t, char *s, size_t len)
{
    redis_bound *b = count(t, 1, len);
    return b ? b->inner->createString(t, s, len) : NULL;
}

/* An array's slots are allocated from its header: its elements are
 * counted here, before hiredis makes room for them. */
static void *array(const redisReadTask *t, int n)
{
    redis_bound *b = count(t, 1 + (n > 0 ? (size_t)n : 0), 0);
    if (!b)
        return NULL;
    b->values -= n > 0 ? (size_t)n : 0;   /* each is counted again when made */
    return b->inner->createArray(t, n);
}

static void *integer(const redisReadTask *t, long long v)
{
    redis_bound *b = count(t, 1, 0);
    return b ? b->inner->createInteger(t, v) : NULL;
}

static void *nil(const redisReadTask *t)
{
    redis_bound *b = count(t, 1, 0);
    return b ? b->inner->createNil(t) : NULL;
}

void redis_bound_attach(redis_bound *b, redisReader *rd)
{
    b->inner = rd->fn;
    b->fn = (redisReplyObjectFunctions){string, array, integer, nil, rd->fn->freeObject};
    b->values = b->bytes = 0;
    b->why = NULL;
    rd->fn = &b->fn;
    rd->privdata = b;
}

/* hiredis consumes a value only once it is whole, so what is unread starts
 * at a value's first line: that line must end soon, and a bulk string's
 * bytes, all waiting there until the last one comes, must fit the bound. */
int redis_bound_check(redis_bound *b, const redisReader *rd)
{
    size_t unread = rd->len - rd->pos;
    if (unread > RESP_MAX_REPLY) {
        b->why = "more than 64 MiB of a reply waiting";
        return XR_ELIMIT;
    }
    if (unread > RESP_MAX_LINE && !memchr(rd->buf + rd->pos, '\n', RESP_MAX_LINE)) {
        b->why = "a line of more than 64 KiB";
        return XR_ELIMIT;
    }
    return 0;
}
