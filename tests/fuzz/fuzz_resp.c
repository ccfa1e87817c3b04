/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: whatever a Redis node might send the redis-cluster antenna.
 * Replies are taken one after another as the antenna does; each must lay
 * out as a whole tree, and CLUSTER SLOTS, MOVED/ASK and key slots must
 * stay in range. Fed whole and, for short inputs, in two pieces and one
 * byte at a time (a reply split across reads must parse the same). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../antennas/redis/resp.h"

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

static int range(void *arg, int start, int end, const char *host, size_t hlen, int port)
{
    (void)arg, (void)host, (void)hlen;
    ASSERT(start >= 0 && start <= end && end < RESP_SLOTS && port >= 1 && port <= 65535);
    return 0;
}

/* Every reply in data; returns how many bytes were taken. */
static size_t replies(resp_reader *rd, const uint8_t *data, size_t size, size_t *count)
{
    size_t at = 0, nv;
    *count = 0;
    for (;;) {
        long used = resp_parse(rd, (const char *)data + at, size - at, &nv);
        if (used <= 0)
            return at;
        ASSERT((size_t)used <= size - at && nv >= 1);
        ASSERT(resp_skip(rd->vals, 0) == nv);
        for (size_t i = 0; i < nv; i++) {
            const resp_val *v = &rd->vals[i];
            if (v->type == '$' || v->type == '+' || v->type == '-')
                ASSERT(v->s >= (const char *)data + at && v->s + v->n <= (const char *)data + size);
            int ask, port;
            uint16_t slot;
            const char *h;
            size_t hl;
            if (resp_redirect(v, &ask, &slot, &h, &hl, &port) == 0)
                ASSERT(slot < RESP_SLOTS && port >= 1 && port <= 65535 && h >= v->s &&
                       h + hl <= v->s + v->n);
        }
        resp_slot_ranges(rd->vals, nv, range, NULL);
        at += (size_t)used;
        (*count)++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    resp_reader rd = {0};
    size_t whole, taken = replies(&rd, data, size, &whole);
    ASSERT(resp_key_slot((const char *)data, size) < RESP_SLOTS);
    if (size <= 256) {
        /* The first part alone, then the rest with what it left over: as
         * many replies, the same bytes. */
        for (size_t cut = 0; cut <= size; cut += 1 + size / 16) {
            resp_reader_reset(&rd);
            size_t a, b, first = replies(&rd, data, cut, &a);
            uint8_t *rest = malloc(size - first + 1);
            ASSERT(rest);
            memcpy(rest, data + first, size - first);
            size_t second = replies(&rd, rest, size - first, &b);
            free(rest);
            ASSERT(first + second == taken);
            ASSERT(a + b == whole);
        }
    }
    if (size <= 4096) {
        /* One byte a read, as a slow node would send it: parsing goes on
         * where it stopped and ends with the same replies. */
        resp_reader_reset(&rd);
        size_t at = 0, count = 0, nv;
        for (size_t have = 1; have <= size; have++) {
            long used;
            while (at < have && (used = resp_parse(&rd, (const char *)data + at, have - at, &nv)) > 0) {
                at += (size_t)used;
                count++;
            }
        }
        ASSERT(at == taken && count == whole);
    }
    resp_reader_free(&rd);
    return 0;
}
