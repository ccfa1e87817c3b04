/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bounds around hiredis' reader, for redis://'s two connections.
 *
 * hiredis holds whatever a reply asks for: a bulk string's bytes until the
 * whole string is there, an array's slots as soon as its header declares
 * them, and it looks for a line's end from the line's start on every read
 * (an endless line costs its length squared). A broken or hostile Redis
 * could make a node grow by gigabytes. These are the bounds resp.c puts on
 * redis-cluster:// (64 MiB a reply, 2^20 values), applied from outside:
 * the reader's reply functions are wrapped to count each reply's values
 * and string bytes, and what sits unread in its buffer is checked after
 * each read (a line ends within RESP_MAX_LINE bytes, at most
 * RESP_MAX_REPLY bytes wait).
 */
#ifndef XR_REDIS_BOUND_H
#define XR_REDIS_BOUND_H

#include <stddef.h>

#include <hiredis/read.h>

#include "resp.h"

/* A status or error line, or a length: Redis' longest are error texts. */
#define RESP_MAX_LINE (64u << 10)

typedef struct redis_bound {
    redisReplyObjectFunctions fn, *inner;
    size_t values, bytes;       /* of the reply being read */
    const char *why;            /* the bound a reply broke, or NULL */
} redis_bound;

/* Puts b's counting functions in front of rd's (b outlives rd). */
void redis_bound_attach(redis_bound *b, redisReader *rd);
/* 0 while what rd holds unread is within the bounds, else b->why is set
 * and XR_ELIMIT returned: the connection must go. */
int redis_bound_check(redis_bound *b, const redisReader *rd);

#endif
