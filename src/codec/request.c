/* SPDX-License-Identifier: Apache-2.0 */
#include "codec/request.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/jsonf.h"
#include "codec/jsonparse.h"
#include "xraptor.h"

static const struct { const char *name; size_t len; unsigned bit; } methods[] = {
    {"GET", 3, XR_GET}, {"POST", 4, XR_POST}, {"PUT", 3, XR_PUT}, {"SUB", 3, XR_SUB},
    {"UNSUB", 5, XR_UNSUB},
};

unsigned xr_wire_method(const char *name, size_t len)
{
    /* As nearly every client writes them: compares of a constant size. */
    switch (len) {
    case 3:
        if (memcmp(name, "GET", 3) == 0) return XR_GET;
        if (memcmp(name, "PUT", 3) == 0) return XR_PUT;
        if (memcmp(name, "SUB", 3) == 0) return XR_SUB;
        break;
    case 4:
        if (memcmp(name, "POST", 4) == 0) return XR_POST;
        break;
    case 5:
        if (memcmp(name, "UNSUB", 5) == 0) return XR_UNSUB;
        break;
    default:
        return 0;
    }
    /* Any case, as the Python X-raptor takes it: letters folded to upper. */
    char up[6];
    for (size_t k = 0; k < len; k++)
        up[k] = (char)(name[k] >= 'a' && name[k] <= 'z' ? name[k] - 32 : name[k]);
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++)
        if (methods[k].len == len && memcmp(methods[k].name, up, len) == 0)
            return methods[k].bit;
    return 0;
}

/* A method's name as on the wire and its length; "" for none. */
static const char *method_name(unsigned method, size_t *len)
{
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++)
        if (methods[k].bit == method) {
            *len = methods[k].len;
            return methods[k].name;
        }
    *len = 0;
    return "";
}

const char *xr_wire_method_name(unsigned method)
{
    size_t len;
    return method_name(method, &len);
}

enum { F_ID, F_ROUTE, F_PAYLOAD, F_METHOD, F_HEADER, F_N };
static const char *const field_names[F_N] = {"request_id", "route", "payload", "method", "header"};

/* Which of the five a member name is (F_N: none), by length first: each
 * compare then has a constant size the compiler inlines. */
static int field_of(const char *n, size_t len)
{
    switch (len) {
    case 5: return memcmp(n, "route", 5) == 0 ? F_ROUTE : F_N;
    case 6: return memcmp(n, "method", 6) == 0 ? F_METHOD : memcmp(n, "header", 6) == 0 ? F_HEADER : F_N;
    case 7: return memcmp(n, "payload", 7) == 0 ? F_PAYLOAD : F_N;
    case 10: return memcmp(n, "request_id", 10) == 0 ? F_ID : F_N;
    default: return F_N;
    }
}

/* known_field's outcomes besides a field: the general path reads the
 * name, or the text is already wrong there. */
enum { FIELD_OTHER = -1, FIELD_BAD = -2 };

/* The five names as they nearly always come, quotes included, read at s
 * straight from the text: the field, *after past its ':'; FIELD_OTHER for
 * an escaped or unknown name, or one too near the end. */
static int known_field(parser *p, const unsigned char *s, const unsigned char **after)
{
    int k;
    size_t n;
    if (p->end - s < 13)
        return FIELD_OTHER;
    switch (s[1]) {
    case 'r':
        if (memcmp(s, "\"request_id\"", 12) == 0)
            k = F_ID, n = 12;
        else if (memcmp(s, "\"route\"", 7) == 0)
            k = F_ROUTE, n = 7;
        else
            return FIELD_OTHER;
        break;
    case 'p':
        if (memcmp(s, "\"payload\"", 9) != 0)
            return FIELD_OTHER;
        k = F_PAYLOAD, n = 9;
        break;
    case 'm':
        if (memcmp(s, "\"method\"", 8) != 0)
            return FIELD_OTHER;
        k = F_METHOD, n = 8;
        break;
    case 'h':
        if (memcmp(s, "\"header\"", 8) != 0)
            return FIELD_OTHER;
        k = F_HEADER, n = 8;
        break;
    default:
        return FIELD_OTHER;
    }
    if (!(*after = colon(p, s + n)))
        return FIELD_BAD;
    return k;
}

typedef struct fields {
    signed char seen[F_N];      /* 0 absent, 1 good, -1 wrong type */
    size_t off[F_N], len[F_N];
    const unsigned char *header_start, *header_end;    /* the header object in the input */
    int too_many;
} fields;

/* The "header" object at s: names and string values into the store; a
 * value of another type is checked and left to xr_header_* (read from the
 * whole object's text), its entry says NULL, so that the last of repeated
 * names wins whatever their types. */
static const unsigned char *header_object(parser *p, const unsigned char *s, xr_wire_request *r,
                                          fields *f)
{
    r->n_headers = 0;
    f->too_many = 0;
    f->header_start = s;
    int more;
    s = list_open(p, s, &more);
    while (more) {
        const char *name;
        size_t nlen, noff, voff = 0, vlen = 0;
        int raw;
        char *mark = p->o;
        if (!(s = member_name(p, s, &name, &nlen, &raw)))
            return NULL;
        if (raw) {
            /* Names are kept NUL-terminated in the store. */
            memcpy(p->o, name, nlen);
            p->o[nlen] = '\0';
            noff = (size_t)(p->o - p->base);
            p->o += nlen + 1;
        } else {
            noff = (size_t)(name - p->base);
        }
        int str = s < p->end && *s == '"';
        if (!(s = str ? string_kept(p, s, &voff, &vlen) : value(p, s, 2)) ||
            !(s = list_next(p, s, '}', &more)))
            return NULL;
        if (r->n_headers == XR_WIRE_MAX_HEADERS) {
            f->too_many = 1;
            p->o = mark;
            continue;
        }
        xr_wire_header *h = &r->headers[r->n_headers++];
        h->name = p->base + noff;
        h->name_len = nlen;
        h->value = str ? p->base + voff : NULL;
        h->value_len = vlen;
    }
    f->header_end = s;
    return s;
}

/* The members of the request object: the five fields are kept (the last
 * of repeated ones wins), anything else is checked and skipped. */
static const unsigned char *request_object(parser *p, const unsigned char *s, xr_wire_request *r,
                                           fields *f)
{
    int more;
    s = list_open(p, s, &more);
    while (more) {
        const unsigned char *v;
        int k = s < p->end && *s == '"' ? known_field(p, s, &v) : FIELD_OTHER;
        if (k == FIELD_BAD)
            return NULL;
        if (k < 0) {
            const char *name;
            size_t nlen;
            int raw;
            char *mark = p->o;
            if (!(v = member_name(p, s, &name, &nlen, &raw)))
                return NULL;
            k = field_of(name, nlen);
            p->o = mark;        /* an escaped name was copied: not kept */
        }
        int c = v < p->end ? *v : -1;
        if (k < F_HEADER && c == '"') {
            f->seen[k] = 1;
            s = string_kept(p, v, &f->off[k], &f->len[k]);
        } else if (k == F_HEADER && c == '{') {
            f->seen[k] = 1;
            s = header_object(p, v, r, f);
        } else {
            if (k < F_N)
                f->seen[k] = -1;
            s = value(p, v, 1);
        }
        if (!s || !(s = list_next(p, s, '}', &more)))
            return NULL;
    }
    return s;
}

int xr_wire_parse(const char *data, size_t len, xr_wire_request *r,
                   char *err, size_t errlen)
{
    /* Only what a previous parse left matters; the header slots are
     * governed by n_headers, so they are not cleared. */
    r->store.len = 0;
    r->id = r->route = r->payload = NULL;
    r->id_len = r->route_len = r->payload_len = 0;
    r->n_headers = 0;
    r->method = 0;
    r->header_json = "{}";
    r->header_json_len = 2;
    parser p;
    fields f;
    /* Only what is read before it is written: a memset of the whole
     * struct (rep stos) cost an eighth of a request's parse. */
    memset(f.seen, 0, sizeof f.seen);
    f.too_many = 0;
    f.header_start = f.header_end = NULL;
    /* The header object's text is copied after the strings: room for it too. */
    if (parser_start(&p, data, len, &r->store, len + 1) < 0) {
        snprintf(err, errlen, "out of memory");
        return XR_ENOMEM;
    }
    const unsigned char *s = skip_ws(p.start, p.end);
    if (s == p.end) {
        snprintf(err, errlen, "request is not valid JSON: unexpected end of input");
        return XR_EJSON;
    }
    if (*s != '{') {
        /* Valid JSON but not an object, or not JSON at all. */
        if ((s = value(&p, s, 0))) {
            if (skip_ws(s, p.end) == p.end) {
                snprintf(err, errlen, "request must be a JSON object");
                return XR_EJSON;
            }
            p.why = "data after the value";
        }
        snprintf(err, errlen, "request is not valid JSON: %s", p.why);
        return XR_EJSON;
    }
    if ((s = request_object(&p, s, r, &f)) && skip_ws(s, p.end) != p.end)
        p.why = "data after the object";
    if (p.why) {
        snprintf(err, errlen, "request is not valid JSON: %s", p.why);
        return XR_EJSON;
    }
    const char *base = p.base;
    if (f.seen[F_ID] == 1) {
        r->id = base + f.off[F_ID];
        r->id_len = f.len[F_ID];
    }
    for (int k = 0; k < F_HEADER; k++) {
        if (!f.seen[k]) {
            snprintf(err, errlen, "missing field '%s'", field_names[k]);
            return XR_EJSON;
        }
        if (f.seen[k] < 0) {
            snprintf(err, errlen, "field '%s' must be a string", field_names[k]);
            return XR_EJSON;
        }
    }
    r->route = base + f.off[F_ROUTE];
    r->route_len = f.len[F_ROUTE];
    r->payload = base + f.off[F_PAYLOAD];
    r->payload_len = f.len[F_PAYLOAD];
    if (!f.seen[F_HEADER]) {
        snprintf(err, errlen, "missing field 'header'");
        return XR_EJSON;
    }
    if (f.seen[F_HEADER] < 0) {
        snprintf(err, errlen, "field 'header' must be an object");
        return XR_EJSON;
    }
    /* The header object's text, kept for its members of other types, in
     * the room reserved for it. */
    size_t hlen = (size_t)(f.header_end - f.header_start);
    memcpy(p.o, f.header_start, hlen);
    p.o[hlen] = '\0';
    r->header_json = p.o;
    r->header_json_len = hlen;
    p.o += hlen + 1;
    r->store.len = (size_t)(p.o - base);
    if (f.too_many) {
        snprintf(err, errlen, "more than %d headers", XR_WIRE_MAX_HEADERS);
        return XR_EJSON;
    }
    const char *mname = base + f.off[F_METHOD];
    r->method = xr_wire_method(mname, f.len[F_METHOD]);
    if (!r->method) {
        snprintf(err, errlen, "unknown method '%.16s' (expected GET, POST, PUT, SUB or UNSUB)",
                 mname);
        return XR_EJSON;
    }
    return 0;
}

const char *xr_wire_header_get(const xr_wire_request *r, const char *name)
{
    size_t n = strlen(name);
    /* The last of repeated names wins, as in a JSON object. */
    for (size_t k = r->n_headers; k-- > 0;)
        if (r->headers[k].name_len == n && memcmp(r->headers[k].name, name, n) == 0)
            return r->headers[k].value;
    return NULL;
}

void xr_wire_request_free(xr_wire_request *r)
{
    xr_buf_free(&r->store);
}

/* The response's pieces around its payload: the head ends inside the
 * payload string, the tail closes it. */
static const char head_a[] = "{\"request_id\":\"", head_b[] = "\",\"payload\":\"",
                  tail_a[] = "\",\"header\":", tail_b[] = ",\"method\":\"", tail_c[] = "\"}";

int xr_wire_response_head(xr_buf *out, const char *id, size_t id_len)
{
    size_t max = xr_json_escape_max(id_len);
    if (max == SIZE_MAX || max > SIZE_MAX - sizeof head_a - sizeof head_b ||
        xr_buf_reserve(out, max + sizeof head_a + sizeof head_b) < 0)
        return XR_ENOMEM;
    char *o = out->p + out->len;
    memcpy(o, head_a, sizeof head_a - 1);
    o = xr_json_escape(o + sizeof head_a - 1, id, id_len);
    memcpy(o, head_b, sizeof head_b - 1);
    out->len = (size_t)(o + sizeof head_b - 1 - out->p);
    return 0;
}

int xr_wire_response_tail(xr_buf *out, const char *header_json, unsigned method)
{
    size_t mlen, hlen = 2;
    const char *m = method_name(method, &mlen);
    if (header_json)
        hlen = strlen(header_json);
    else
        header_json = "{}";
    if (xr_buf_reserve(out, sizeof tail_a + sizeof tail_b + sizeof tail_c + hlen + mlen) < 0)
        return XR_ENOMEM;
    char *o = out->p + out->len;
    memcpy(o, tail_a, sizeof tail_a - 1);
    o += sizeof tail_a - 1;
    xr_copy_small((unsigned char *)o, (const unsigned char *)header_json, hlen);
    o += hlen;
    memcpy(o, tail_b, sizeof tail_b - 1);
    o += sizeof tail_b - 1;
    xr_copy_small((unsigned char *)o, (const unsigned char *)m, mlen);
    o += mlen;
    memcpy(o, tail_c, sizeof tail_c - 1);
    out->len = (size_t)(o + sizeof tail_c - 1 - out->p);
    return 0;
}

int xr_wire_response(xr_buf *out, const char *id, size_t id_len,
                      const char *payload, size_t payload_len,
                      const char *header_json, unsigned method)
{
    if (xr_wire_response_head(out, id, id_len) < 0 ||
        xr_buf_json_escaped(out, payload, payload_len) < 0 ||
        xr_wire_response_tail(out, header_json, method) < 0)
        return XR_ENOMEM;
    return 0;
}
