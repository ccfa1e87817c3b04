/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The top-level members of a JSON object (xr_payload_*, xr_header_*):
 * indexed on the first question, with the request parser's steps.
 */
#include "codec/request.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/jsonparse.h"

void xr_json_fields_reset(xr_json_fields *f, const char *json, size_t len)
{
    f->json = json;
    f->len = len;
    f->n = 0;
    f->state = 0;
    f->store.len = 0;
}

/*
 * The index reads a copy of the text at the start of the store, so that a
 * name or string without escapes is ended with a NUL where its closing
 * quote was: found, not copied. One with escapes is unescaped into the
 * rest of the store. Raw values (numbers, nested JSON) are read from the
 * caller's text, which stays as it was.
 */
static const unsigned char *index_members(parser *p, const unsigned char *s, xr_json_fields *f)
{
    char *text = p->base;       /* the copy, p->start */
    int more;
    s = list_open(p, s, &more);
    while (more) {
        if (f->n == f->cap) {
            size_t cap = f->cap ? 2 * f->cap : 8;
            xr_json_member *m = realloc(f->m, cap * sizeof *m);
            if (!m)
                return fail(p, "out of memory");
            f->m = m;
            f->cap = cap;
        }
        xr_json_member *m = &f->m[f->n];
        const char *name;
        int raw;
        if (!(s = member_name(p, s, &name, &m->name_len, &raw)))
            return NULL;
        m->name_off = (size_t)(name - text);
        if (raw)
            text[m->name_off + m->name_len] = '\0';
        int c = s < p->end ? *s : 0;
        m->type = c == '"' ? XR_JSON_STRING : c == '{' ? XR_JSON_OBJECT : c == '[' ? XR_JSON_ARRAY
                : c == 't' || c == 'f' ? XR_JSON_BOOL : c == 'n' ? XR_JSON_NULL : XR_JSON_NUMBER;
        m->raw_off = (size_t)(s - p->start);
        m->str_off = SIZE_MAX;
        m->str_len = 0;
        if (m->type == XR_JSON_STRING) {
            const unsigned char *after = plain_string(p, s, &m->str_len);
            if (after) {
                m->str_off = (size_t)(s + 1 - p->start);
                text[m->str_off + m->str_len] = '\0';
                s = after;
            } else {
                s = string_kept(p, s, &m->str_off, &m->str_len);
            }
        } else {
            s = value(p, s, 1);
        }
        if (!s)
            return NULL;
        m->raw_len = (size_t)(s - p->start) - m->raw_off;
        f->n++;
        if (!(s = list_next(p, s, '}', &more)))
            return NULL;
    }
    return s;
}

/* FIELDS_READ, or XR_ENOMEM / XR_EJSON: the state the index keeps (0:
 * not read yet). */
enum { FIELDS_READ = 1 };

static int fields_index(xr_json_fields *f)
{
    /* Names and strings are ended or unescaped in the store here, once: no
     * pointer into it is handed out before the index is complete. The
     * copy, its NUL, then room for every string unescaped. */
    f->store.len = 0;
    if (f->len > ((size_t)-1 - XR_JSON_COPY_SLACK - 2) / 3 ||
        xr_buf_reserve(&f->store, 2 * f->len + 2 + XR_JSON_COPY_SLACK) < 0)
        return XR_ENOMEM;
    memcpy(f->store.p, f->json, f->len);
    f->store.p[f->len] = '\0';
    f->store.len = f->len + 1;
    parser p;
    if (parser_start(&p, f->store.p, f->len, &f->store, 0) < 0)
        return XR_ENOMEM;
    const unsigned char *s = skip_ws(p.start, p.end);
    if (s == p.end || *s != '{' || !(s = index_members(&p, s, f)))
        return XR_EJSON;
    f->store.len = (size_t)(p.o - p.base);
    return skip_ws(s, p.end) == p.end ? FIELDS_READ : XR_EJSON;
}

xr_json_member *xr_json_fields_get(xr_json_fields *f, const char *name, size_t nlen, int *state)
{
    if (!f->state)
        f->state = fields_index(f);
    *state = f->state;
    if (f->state < 0)
        return NULL;
    for (size_t k = f->n; k-- > 0;) {
        xr_json_member *m = &f->m[k];
        const char *mn = xr_json_member_name(f, m);
        /* The first byte before a call: most names differ there or in length. */
        if (m->name_len == nlen && (!nlen || (mn[0] == name[0] && memcmp(mn, name, nlen) == 0)))
            return m;
    }
    return NULL;
}

int xr_json_member_str(xr_json_fields *f, xr_json_member *m, const char **s, size_t *len)
{
    if (m->type != XR_JSON_STRING)
        return XR_ETYPE;
    *s = f->store.p + m->str_off;
    if (len)
        *len = m->str_len;
    return 0;
}

/* The number's text NUL-terminated in buf, or XR_ETYPE if it is not a
 * number or longer than any double needs (JSON allows any length). */
static int number_text(const xr_json_fields *f, const xr_json_member *m, char *buf, size_t cap)
{
    if (m->type != XR_JSON_NUMBER || m->raw_len >= cap)
        return XR_ETYPE;
    memcpy(buf, f->json + m->raw_off, m->raw_len);
    buf[m->raw_len] = '\0';
    return 0;
}

int xr_json_fields_str(xr_json_fields *f, const char *name, const char **s, size_t *len)
{
    int st;
    xr_json_member *m = xr_json_fields_get(f, name, strlen(name), &st);
    if (!m)
        return 0;
    return xr_json_member_str(f, m, s, len) < 0 ? XR_ETYPE : 1;
}

int xr_json_member_int(const xr_json_fields *f, const xr_json_member *m, long long *v)
{
    char buf[32];
    if (m->type != XR_JSON_NUMBER)
        return XR_ETYPE;
    if (number_text(f, m, buf, sizeof buf) < 0 || strpbrk(buf, ".eE"))
        return XR_ETYPE;
    errno = 0;
    long long n = strtoll(buf, NULL, 10);
    if (errno)
        return XR_ETYPE;
    *v = n;
    return 0;
}

int xr_json_member_double(const xr_json_fields *f, const xr_json_member *m, double *v)
{
    char buf[400];
    if (m->type != XR_JSON_NUMBER)
        return XR_ETYPE;
    if (number_text(f, m, buf, sizeof buf) < 0)
        return XR_ETYPE;
    locale_t c = xr_c_locale();
    double d = c ? strtod_l(buf, NULL, c) : strtod(buf, NULL);
    if (!isfinite(d))
        return XR_ETYPE;
    *v = d;
    return 0;
}

void xr_json_fields_free(xr_json_fields *f)
{
    xr_buf_free(&f->store);
    free(f->m);
    f->m = NULL;
    f->n = f->cap = 0;
    f->state = 0;
}

/* The items of a JSON array: strings kept unescaped in the store (offs
 * into it), or any values as their text (offs into json). */
static int array_walk(const char *json, size_t len, xr_buf *store, int strings, size_t *offs,
                      size_t *lens, size_t cap, size_t *n)
{
    parser p;
    int more;
    *n = 0;
    store->len = 0;
    if (parser_start(&p, json, len, store, 0) < 0)
        return XR_ENOMEM;
    const unsigned char *s = skip_ws(p.start, p.end);
    if (s == p.end || *s != '[')
        return XR_EJSON;
    s = list_open(&p, s, &more);
    while (s && more) {
        if (strings && (s == p.end || *s != '"'))
            return XR_ETYPE;
        if (*n == cap)
            return XR_ELIMIT;
        const unsigned char *at = s;
        if (strings) {
            s = string_kept(&p, s, &offs[*n], &lens[*n]);
        } else if ((s = value(&p, s, 1))) {
            offs[*n] = (size_t)(at - p.start);
            lens[*n] = (size_t)(s - at);
        }
        if (!s)
            break;
        (*n)++;
        s = list_next(&p, s, ']', &more);
    }
    if (!s || skip_ws(s, p.end) != p.end)
        return XR_EJSON;
    if (strings)
        store->len = (size_t)(p.o - p.base);
    return XR_OK;
}

int xr_json_array_strings(const char *json, size_t len, xr_buf *store, size_t *offs,
                          size_t *lens, size_t cap, size_t *n)
{
    return array_walk(json, len, store, 1, offs, lens, cap, n);
}

int xr_json_array_items(const char *json, size_t len, xr_buf *store, size_t *offs, size_t *lens,
                        size_t cap, size_t *n)
{
    return array_walk(json, len, store, 0, offs, lens, cap, n);
}

int xr_json_valid(const char *json, size_t len)
{
    xr_buf store = {0};
    parser p;
    int ok = 0;
    if (parser_start(&p, json, len, &store, 0) == 0) {
        const unsigned char *s = value(&p, skip_ws(p.start, p.end), 1);
        ok = s && skip_ws(s, p.end) == p.end;
    }
    xr_buf_free(&store);
    return ok;
}

