/* SPDX-License-Identifier: Apache-2.0 */
#include "resp.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 8             /* CLUSTER SLOTS needs 3 */
#define MAX_BULK (512u << 20)   /* Redis' own proto-max-bulk-len */
#define MAX_ELEMS (1 << 20)

int resp_int(const char *p, const char *end, int64_t *out)
{
    int neg = p < end && *p == '-';
    int64_t v = 0;
    p += neg;
    if (p == end)
        return -1;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*p - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

static resp_val *slot(resp_reader *r, size_t i)
{
    if (i >= r->cap) {
        size_t n = r->cap ? r->cap * 2 : 64;
        resp_val *v = realloc(r->vals, n * sizeof *v);
        if (!v)
            return NULL;
        r->vals = v;
        r->cap = n;
    }
    return &r->vals[i];
}

void resp_reader_free(resp_reader *r)
{
    free(r->vals);
    r->vals = NULL;
    r->cap = 0;
}

long resp_parse(resp_reader *r, const char *p, size_t len, size_t *nvals)
{
    size_t i = 0, nv = 0;
    int64_t left[MAX_DEPTH];
    int depth = 0;
    do {
        if (i + 1 >= len)
            return 0;
        const char *line = p + i + 1, *cr = memchr(line, '\r', len - i - 1);
        if (!cr || cr + 1 >= p + len)
            return 0;
        if (cr[1] != '\n')
            return -1;
        resp_val *v = slot(r, nv++);
        if (!v)
            return -1;
        v->type = p[i];
        v->s = line;
        v->n = cr - line;
        i = (size_t)(cr + 2 - p);
        int whole = 1;
        switch (v->type) {
        case '+':
        case '-':
            break;
        case ':':
            if (resp_int(line, cr, &v->n) < 0)
                return -1;
            break;
        case '$':
            if (resp_int(line, cr, &v->n) < 0 || v->n < -1 || v->n > (int64_t)MAX_BULK)
                return -1;
            if (v->n == -1) {
                v->type = 0;
                break;
            }
            if (len - i < (size_t)v->n + 2)
                return 0;
            v->s = p + i;
            i += (size_t)v->n;
            if (p[i] != '\r' || p[i + 1] != '\n')
                return -1;
            i += 2;
            break;
        case '*':
            if (resp_int(line, cr, &v->n) < 0 || v->n < -1 || v->n > MAX_ELEMS)
                return -1;
            if (v->n == -1) {
                v->type = 0;
            } else if (v->n > 0) {
                if (depth == MAX_DEPTH)
                    return -1;
                left[depth++] = v->n;
                whole = 0;
            }
            break;
        default:
            return -1;
        }
        if (whole)
            while (depth > 0 && --left[depth - 1] == 0)
                depth--;
    } while (depth > 0);
    *nvals = nv;
    return (long)i;
}

size_t resp_skip(const resp_val *v, size_t i)
{
    size_t todo = 1;
    while (todo) {
        todo--;
        if (v[i].type == '*')
            todo += (size_t)v[i].n;
        i++;
    }
    return i;
}

int resp_is(const resp_val *v, const char *s)
{
    size_t n = strlen(s);
    return (v->type == '$' || v->type == '+') && (size_t)v->n == n && memcmp(v->s, s, n) == 0;
}

static uint16_t crc16(const char *p, size_t n)
{
    uint16_t crc = 0;
    while (n--) {
        crc ^= (uint16_t)((uint8_t)*p++ << 8);
        for (int i = 0; i < 8; i++)
            crc = crc & 0x8000 ? (uint16_t)(crc << 1 ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

uint16_t resp_key_slot(const char *name, size_t len)
{
    const char *open = memchr(name, '{', len);
    if (open) {
        const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - name));
        if (close && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) & (RESP_SLOTS - 1);
    }
    return crc16(name, len) & (RESP_SLOTS - 1);
}

int resp_slot_ranges(const resp_val *v, size_t nv, resp_range_fn each, void *arg)
{
    if (nv == 0 || v[0].type != '*')
        return -1;
    size_t i = 1;
    for (int64_t r = 0; r < v[0].n; r++) {
        if (i >= nv)
            return -1;
        size_t next = resp_skip(v, i);
        const resp_val *e = &v[i];
        /* Tested in order: each test makes the next element exist. */
        if (e->type != '*' || e->n < 3 || e[1].type != ':' || e[2].type != ':' ||
            e[3].type != '*' || e[3].n < 2 || e[4].type != '$' || e[5].type != ':' ||
            e[1].n < 0 || e[2].n >= RESP_SLOTS || e[1].n > e[2].n || e[5].n < 1 ||
            e[5].n > 65535)
            return -1;
        if (each(arg, (int)e[1].n, (int)e[2].n, e[4].s, (size_t)e[4].n, (int)e[5].n) < 0)
            return -1;
        i = next;
    }
    return 0;
}

int resp_redirect(const resp_val *err, int *ask, uint16_t *slotp, const char **host, size_t *hlen,
                  int *port)
{
    if (err->type != '-')
        return -1;
    const char *p = err->s, *end = err->s + err->n;
    if (err->n > 6 && memcmp(p, "MOVED ", 6) == 0) {
        *ask = 0;
        p += 6;
    } else if (err->n > 4 && memcmp(p, "ASK ", 4) == 0) {
        *ask = 1;
        p += 4;
    } else {
        return -1;
    }
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    int64_t s, pt;
    if (!sp || resp_int(p, sp, &s) < 0 || s < 0 || s >= RESP_SLOTS)
        return -1;
    const char *addr = sp + 1, *colon = NULL;
    for (const char *q = addr; q < end; q++)
        if (*q == ':')
            colon = q;          /* the last: an IPv6 address has several */
    if (!colon || resp_int(colon + 1, end, &pt) < 0 || pt < 1 || pt > 65535)
        return -1;
    *slotp = (uint16_t)s;
    *host = addr;
    *hlen = (size_t)(colon - addr);
    *port = (int)pt;
    return 0;
}
