/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A Redis that is up but does not answer (stopped, swapping, a network that
 * drops without a reset) must not make posts pile up in either Redis
 * module: posts fail past these bounds on what awaits replies, and a
 * connection with replies awaited and none for REPLY_TIMEOUT_MS is dropped
 * and made again.
 */
#ifndef XR_REDIS_STALL_H
#define XR_REDIS_STALL_H

#define MAX_PENDING_POSTS 10000
#define MAX_PENDING_BYTES (16u << 20)
#define REPLY_TIMEOUT_MS 5000
#define WATCHDOG_MS 500

/* Replies counted by the connection, and what the watchdog saw of them. */
typedef struct stall {
    unsigned long long replies, seen;
    unsigned ms;
} stall;

/* Every WATCHDOG_MS: 1 when replies are awaited and none came for
 * REPLY_TIMEOUT_MS (the count starts over), else 0. */
static inline int stall_tick(stall *s, int waiting)
{
    if (!waiting || s->replies != s->seen) {
        s->seen = s->replies;
        s->ms = 0;
        return 0;
    }
    if ((s->ms += WATCHDOG_MS) < REPLY_TIMEOUT_MS)
        return 0;
    s->ms = 0;
    return 1;
}

#endif
