/* SPDX-License-Identifier: Apache-2.0 */
#include "resp.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BULK RESP_MAX_REPLY
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
    resp_reader_reset(r);
}

void resp_reader_reset(resp_reader *r)
{
    r->pos = r->nv = r->scan = 0;
    r->depth = 0;
}

/*
 * Incremental: a reply cut short by the end of the bytes leaves its state
 * in the reader (the values so far, where the next one starts, the open
 * arrays), and the next call goes on from there instead of from the
 * reply's first byte, so a long reply costs its length once, not once per
 * read. Values hold offsets until the reply is whole (the caller's buffer
 * may move between reads), then pointers.
 */
long resp_parse(resp_reader *r, const char *p, size_t len, size_t *nvals)
{
    size_t i = r->pos, nv = r->nv;
    int depth = r->depth;
    int64_t *left = r->left;
    do {
        /* The value starting at i, if its line is all here: the search
         * for its end goes on from where the last call stopped. */
        size_t from = r->scan > i + 1 ? r->scan : i + 1;
        const char *line = p + i + 1, *cr = from < len ? memchr(p + from, '\r', len - from) : NULL;
        if (!cr || cr + 1 >= p + len) {
            r->scan = cr ? (size_t)(cr - p) : len;
            goto more;
        }
        r->scan = 0;
        if (cr[1] != '\n')
            goto bad;
        if (nv >= RESP_MAX_VALUES)
            goto bad;
        resp_val *v = slot(r, nv);
        if (!v)
            goto bad;
        v->type = p[i];
        v->off = i + 1;
        v->n = cr - line;
        size_t next = (size_t)(cr + 2 - p);
        int whole = 1;
        switch (v->type) {
        case '+':
        case '-':
            break;
        case ':':
            if (resp_int(line, cr, &v->n) < 0)
                goto bad;
            break;
        case '$':
            if (resp_int(line, cr, &v->n) < 0 || v->n < -1 || v->n > (int64_t)MAX_BULK)
                goto bad;
            if (v->n == -1) {
                v->type = 0;
                break;
            }
            if (len - next < (size_t)v->n + 2)
                goto more;
            v->off = next;
            next += (size_t)v->n;
            if (p[next] != '\r' || p[next + 1] != '\n')
                goto bad;
            next += 2;
            break;
        case '*':
            if (resp_int(line, cr, &v->n) < 0 || v->n < -1 || v->n > MAX_ELEMS)
                goto bad;
            if (v->n == -1) {
                v->type = 0;
            } else if (v->n > 0) {
                if (depth == RESP_MAX_DEPTH)
                    goto bad;
                left[depth++] = v->n;
                whole = 0;
            }
            break;
        default:
            goto bad;
        }
        nv++;
        i = next;
        if (i > RESP_MAX_REPLY)
            goto bad;
        if (whole)
            while (depth > 0 && --left[depth - 1] == 0)
                depth--;
    } while (depth > 0);
    for (size_t k = 0; k < nv; k++)
        r->vals[k].s = p + r->vals[k].off;
    *nvals = nv;
    resp_reader_reset(r);
    return (long)i;
more:
    /* A reply that is not whole within the bound never will be. */
    if (len > RESP_MAX_REPLY)
        goto bad;
    r->pos = i;
    r->nv = nv;
    r->depth = depth;
    return 0;
bad:
    resp_reader_reset(r);
    return -1;
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
