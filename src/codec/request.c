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
#include "codec/jsonscan.h"
#include "xraptor.h"

int xr_buf_json_escaped(xr_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX; 8 more for whole-word copies. */
    if (len > ((size_t)-1) / 6 - 8 || xr_buf_reserve(b, len * 6 + 8) < 0)
        return -1;
    char *o = b->p + b->len;
    for (size_t i = 0; i < len; i++) {
        size_t run = xr_json_copy_run((unsigned char *)o, (const unsigned char *)s + i, len - i);
        o += run;
        i += run;
        if (i == len)
            break;
        unsigned char c = (unsigned char)s[i];
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u'; *o++ = '0'; *o++ = '0';
            *o++ = hex[c >> 4]; *o++ = hex[c & 15];
        }
    }
    b->len = (size_t)(o - b->p);
    return 0;
}

static const struct { const char *name; size_t len; unsigned bit; } methods[] = {
    {"GET", 3, XR_GET}, {"POST", 4, XR_POST}, {"PUT", 3, XR_PUT}, {"SUB", 3, XR_SUB},
    {"UNSUB", 5, XR_UNSUB},
};

unsigned xr_proto_method(const char *name, size_t len)
{
    /* Any case, as the Python X-raptor takes it: letters folded to upper. */
    char up[6];
    if (len < 3 || len > 5)
        return 0;
    for (size_t k = 0; k < len; k++)
        up[k] = (char)(name[k] >= 'a' && name[k] <= 'z' ? name[k] - 32 : name[k]);
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++)
        if (methods[k].len == len && memcmp(methods[k].name, up, len) == 0)
            return methods[k].bit;
    return 0;
}

const char *xr_proto_method_name(unsigned method)
{
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++)
        if (methods[k].bit == method)
            return methods[k].name;
    return "";
}

/* ---- the request parser: strict JSON, no allocation once warm ---------- */

#define MAX_DEPTH 64

typedef struct parser {
    const unsigned char *s;
    size_t n, i;
    xr_buf *out;
    const char *why;            /* the syntax error, when there is one */
    const char *name;           /* list(): the current member's name */
} parser;

static void skip_ws(parser *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' ||
                           p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int syntax(parser *p, const char *why)
{
    if (!p->why)
        p->why = why;
    return -1;
}

static int hex4(parser *p, unsigned *v)
{
    if (p->n - p->i < 4)
        return syntax(p, "unexpected end of input");
    *v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = p->s[p->i++], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return syntax(p, "invalid \\u escape");
        *v = *v << 4 | d;
    }
    return 0;
}

/*
 * A string at p->i (its opening quote): appended unescaped to p->out with
 * a NUL after it, or (out NULL) only checked; off and len say where it is.
 * Unescaped is never longer than escaped: the room is reserved once and
 * written directly.
 */
static int string(parser *p, xr_buf *out, size_t *off, size_t *len)
{
    p->i++;                     /* the quote */
    /* The text, its NUL, and 8 for whole-word copies. */
    if (out && xr_buf_reserve(out, p->n - p->i + 9) < 0)
        return syntax(p, "out of memory");
    char *o = out ? out->p + out->len : NULL;
    const unsigned char *s = p->s;
    for (;;) {
        if (o) {
            size_t run = xr_json_copy_run((unsigned char *)o, s + p->i, p->n - p->i);
            o += run;
            p->i += run;
        } else {
            p->i += xr_json_plain_run(s + p->i, p->n - p->i, 0);
        }
        if (p->i == p->n)
            return syntax(p, "unexpected end of input");
        unsigned char c = s[p->i++];
        if (c == '"')
            break;
        if (c < 0x20)
            return syntax(p, "control character in a string");
        if (p->i == p->n)
            return syntax(p, "unexpected end of input");
        char e = (char)s[p->i++], one;
        unsigned cp;
        switch (e) {
        case '"': one = '"'; break;
        case '\\': one = '\\'; break;
        case '/': one = '/'; break;
        case 'b': one = '\b'; break;
        case 'f': one = '\f'; break;
        case 'n': one = '\n'; break;
        case 'r': one = '\r'; break;
        case 't': one = '\t'; break;
        case 'u':
            if (hex4(p, &cp) < 0)
                return -1;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return syntax(p, "invalid \\u escape (lone low surrogate)");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (p->n - p->i < 2 || s[p->i] != '\\' || s[p->i + 1] != 'u')
                    return syntax(p, "invalid \\u escape (lone high surrogate)");
                p->i += 2;
                if (hex4(p, &lo) < 0)
                    return -1;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return syntax(p, "invalid \\u escape (lone high surrogate)");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            /* At most 4 bytes for the 6 or 12 of the escape. */
            if (o) {
                if (cp < 0x80) {
                    *o++ = (char)cp;
                } else if (cp < 0x800) {
                    *o++ = (char)(0xC0 | cp >> 6);
                    *o++ = (char)(0x80 | (cp & 63));
                } else if (cp < 0x10000) {
                    *o++ = (char)(0xE0 | cp >> 12);
                    *o++ = (char)(0x80 | ((cp >> 6) & 63));
                    *o++ = (char)(0x80 | (cp & 63));
                } else {
                    *o++ = (char)(0xF0 | cp >> 18);
                    *o++ = (char)(0x80 | ((cp >> 12) & 63));
                    *o++ = (char)(0x80 | ((cp >> 6) & 63));
                    *o++ = (char)(0x80 | (cp & 63));
                }
            }
            continue;
        default:
            return syntax(p, "invalid escape in a string");
        }
        if (o)
            *o++ = one;
    }
    if (out) {
        *off = out->len;
        *len = (size_t)(o - (out->p + out->len));
        *o = '\0';
        out->len += *len + 1;
    }
    return 0;
}

static int digits(parser *p)
{
    size_t s0 = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
        p->i++;
    return p->i > s0 ? 0 : syntax(p, "malformed number");
}

static int number(parser *p)
{
    if (p->s[p->i] == '-')
        p->i++;
    if (p->i < p->n && p->s[p->i] == '0')
        p->i++;
    else if (digits(p) < 0)
        return -1;
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        if (digits(p) < 0)
            return -1;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        if (digits(p) < 0)
            return -1;
    }
    return 0;
}

static int value(parser *p, int depth);

/* One element of an object or array, at its value (after the member name
 * and ':' in an object; the name is at name_off in the names buffer). */
typedef int (*element_fn)(parser *p, size_t name_off, size_t name_len, void *ctx);

/*
 * The object or array at p->i: the brackets, the elements between commas.
 * Member names are unescaped into names (NULL: only checked); fn reads
 * each value.
 */
static int list(parser *p, xr_buf *names, int raw, element_fn fn, void *ctx)
{
    unsigned char close = p->s[p->i] == '{' ? '}' : ']';
    p->i++;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
        return 0;
    }
    for (;;) {
        size_t noff = 0, nlen = 0;
        skip_ws(p);
        if (close == '}') {
            if (p->i == p->n || p->s[p->i] != '"')
                return syntax(p, p->i == p->n ? "unexpected end of input" : "expected a member name");
            /* raw: a name without escapes is handed over where it stands
             * (p->name, noff SIZE_MAX), not copied. */
            size_t q = p->i + 1, run = raw ? xr_json_plain_run(p->s + q, p->n - q, 0) : 0;
            if (raw && q + run < p->n && p->s[q + run] == '"') {
                p->name = (const char *)p->s + q;
                noff = SIZE_MAX;
                nlen = run;
                p->i = q + run + 1;
            } else {
                if (string(p, names, &noff, &nlen) < 0)
                    return -1;
                p->name = names ? names->p + noff : NULL;
            }
            skip_ws(p);
            if (p->i == p->n || p->s[p->i] != ':')
                return syntax(p, p->i == p->n ? "unexpected end of input" : "expected ':'");
            p->i++;
            skip_ws(p);
        }
        if (fn(p, noff, nlen, ctx) < 0)
            return -1;
        skip_ws(p);
        if (p->i == p->n)
            return syntax(p, "unexpected end of input");
        if (p->s[p->i] == close) {
            p->i++;
            return 0;
        }
        if (p->s[p->i] != ',')
            return syntax(p, close == '}' ? "expected ',' or the end of the object"
                                          : "expected ',' or the end of the array");
        p->i++;
    }
}

static int skip_element(parser *p, size_t name_off, size_t name_len, void *ctx)
{
    (void)name_off, (void)name_len;
    return value(p, *(int *)ctx + 1);
}

/* An object or array at p->i, members checked and thrown away. */
static int container(parser *p, int depth)
{
    if (depth > MAX_DEPTH)
        return syntax(p, "nested too deep");
    return list(p, NULL, 0, skip_element, &depth);
}

static int literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->n - p->i < n || memcmp(p->s + p->i, word, n) != 0)
        return syntax(p, p->n - p->i < n && memcmp(p->s + p->i, word, p->n - p->i) == 0
                         ? "unexpected end of input" : "unexpected character");
    p->i += n;
    return 0;
}

/* Any value at p->i, checked and thrown away. */
static int value(parser *p, int depth)
{
    skip_ws(p);
    if (p->i == p->n)
        return syntax(p, "unexpected end of input");
    switch (p->s[p->i]) {
    case '"': return string(p, NULL, NULL, NULL);
    case '{': case '[': return container(p, depth);
    case 't': return literal(p, "true");
    case 'f': return literal(p, "false");
    case 'n': return literal(p, "null");
    default:
        if (p->s[p->i] == '-' || (p->s[p->i] >= '0' && p->s[p->i] <= '9'))
            return number(p);
        return syntax(p, "unexpected character");
    }
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

typedef struct fields {
    int seen[F_N];              /* 0 absent, 1 good, -1 wrong type */
    size_t off[F_N], len[F_N];
    size_t header_start, header_end;    /* the header object in the input */
    int too_many;
} fields;

typedef struct request_ctx {
    xr_proto_request *r;
    fields f;
    size_t hoffs[4 * XR_PROTO_MAX_HEADERS];
} request_ctx;

/* A member of the "header" object: its name, and a string value, into the
 * store; a value of another type is checked and left to xr_header_* (read
 * from the whole object's text), its entry says NULL, so that the last of
 * repeated names wins whatever their types. */
static int header_member(parser *p, size_t noff, size_t nlen, void *ctx)
{
    request_ctx *c = ctx;
    xr_proto_request *r = c->r;
    size_t voff = SIZE_MAX, vlen = 0;
    int rc = p->i < p->n && p->s[p->i] == '"' ? string(p, p->out, &voff, &vlen) : value(p, 2);
    if (rc < 0)
        return -1;
    if (r->n_headers == XR_PROTO_MAX_HEADERS) {
        c->f.too_many = 1;
    } else {
        size_t k = r->n_headers++;
        c->hoffs[4 * k] = noff, c->hoffs[4 * k + 1] = nlen;
        c->hoffs[4 * k + 2] = voff, c->hoffs[4 * k + 3] = vlen;
    }
    return 0;
}

/* A member of the request object: the five fields are kept (the last of
 * repeated ones wins), anything else is checked and skipped. */
static int request_member(parser *p, size_t koff, size_t klen, void *ctx)
{
    request_ctx *c = ctx;
    xr_proto_request *r = c->r;
    fields *f = &c->f;
    int k = field_of(p->name, klen);
    if (koff != SIZE_MAX)
        r->store.len = koff;    /* an escaped name was copied: not kept */
    int more = p->i < p->n;
    if (k < F_HEADER && more && p->s[p->i] == '"') {
        f->seen[k] = 1;
        return string(p, &r->store, &f->off[k], &f->len[k]);
    }
    if (k == F_HEADER && more && p->s[p->i] == '{') {
        f->seen[k] = 1;
        r->n_headers = 0;
        f->too_many = 0;
        f->header_start = p->i;
        int rc = list(p, &r->store, 0, header_member, c);
        f->header_end = p->i;
        return rc;
    }
    if (k < F_N)
        f->seen[k] = -1;
    return value(p, 1);
}

int xr_proto_parse(const char *data, size_t len, xr_proto_request *r,
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
    parser p = {(const unsigned char *)data, len, 0, &r->store, NULL, NULL};
    request_ctx ctx;
    ctx.r = r;
    memset(&ctx.f, 0, sizeof ctx.f);
    const fields *f = &ctx.f;

    skip_ws(&p);
    if (p.i == p.n) {
        snprintf(err, errlen, "request is not valid JSON: unexpected end of input");
        return -1;
    }
    if (p.s[p.i] != '{') {
        /* Valid JSON but not an object, or not JSON at all. */
        if (value(&p, 0) == 0) {
            skip_ws(&p);
            if (p.i == p.n) {
                snprintf(err, errlen, "request must be a JSON object");
                return -1;
            }
            p.why = "data after the value";
        }
        snprintf(err, errlen, "request is not valid JSON: %s", p.why);
        return -1;
    }
    if (list(&p, &r->store, 1, request_member, &ctx) == 0) {
        skip_ws(&p);
        if (p.i < p.n)
            p.why = "data after the object";
    }
    if (p.why) {
        snprintf(err, errlen, "request is not valid JSON: %s", p.why);
        return -1;
    }
    /* The header object's text, kept for its members of other types. */
    size_t hoff = r->store.len;
    if (f->seen[F_HEADER] == 1 &&
        (xr_buf_add(&r->store, data + f->header_start, f->header_end - f->header_start) < 0 ||
         xr_buf_add(&r->store, "", 1) < 0)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* The store is final now: turn offsets into pointers. */
    const char *base = r->store.p;
    if (f->seen[F_ID] == 1) {
        r->id = base + f->off[F_ID];
        r->id_len = f->len[F_ID];
    }
    for (int k = 0; k < F_HEADER; k++) {
        if (!f->seen[k]) {
            snprintf(err, errlen, "missing field '%s'", field_names[k]);
            return -1;
        }
        if (f->seen[k] < 0) {
            snprintf(err, errlen, "field '%s' must be a string", field_names[k]);
            return -1;
        }
    }
    r->route = base + f->off[F_ROUTE];
    r->route_len = f->len[F_ROUTE];
    r->payload = base + f->off[F_PAYLOAD];
    r->payload_len = f->len[F_PAYLOAD];
    if (!f->seen[F_HEADER]) {
        snprintf(err, errlen, "missing field 'header'");
        return -1;
    }
    if (f->seen[F_HEADER] < 0) {
        snprintf(err, errlen, "field 'header' must be an object");
        return -1;
    }
    r->header_json = base + hoff;
    r->header_json_len = f->header_end - f->header_start;
    if (f->too_many) {
        snprintf(err, errlen, "more than %d headers", XR_PROTO_MAX_HEADERS);
        return -1;
    }
    for (size_t k = 0; k < r->n_headers; k++) {
        r->headers[k].name = base + ctx.hoffs[4 * k];
        r->headers[k].name_len = ctx.hoffs[4 * k + 1];
        r->headers[k].value = ctx.hoffs[4 * k + 2] == SIZE_MAX ? NULL : base + ctx.hoffs[4 * k + 2];
        r->headers[k].value_len = ctx.hoffs[4 * k + 3];
    }
    const char *mname = base + f->off[F_METHOD];
    r->method = xr_proto_method(mname, f->len[F_METHOD]);
    if (!r->method) {
        snprintf(err, errlen, "unknown method '%.16s' (expected GET, POST, PUT, SUB or UNSUB)",
                 mname);
        return -1;
    }
    return 0;
}

const char *xr_proto_header_get(const xr_proto_request *r, const char *name)
{
    size_t n = strlen(name);
    /* The last of repeated names wins, as in a JSON object. */
    for (size_t k = r->n_headers; k-- > 0;)
        if (r->headers[k].name_len == n && memcmp(r->headers[k].name, name, n) == 0)
            return r->headers[k].value;
    return NULL;
}

void xr_proto_request_free(xr_proto_request *r)
{
    xr_buf_free(&r->store);
}

int xr_proto_response(xr_buf *out, const char *id, size_t id_len,
                      const char *payload, size_t payload_len,
                      const char *header_json, unsigned method)
{
    static const char a[] = "{\"request_id\":\"", b[] = "\",\"payload\":\"",
                      c[] = "\",\"header\":", d[] = ",\"method\":\"", e[] = "\"}";
    const char *m = xr_proto_method_name(method);
    if (!header_json)
        header_json = "{}";
    if (xr_buf_add(out, a, sizeof a - 1) < 0 ||
        xr_buf_json_escaped(out, id, id_len) < 0 ||
        xr_buf_add(out, b, sizeof b - 1) < 0 ||
        xr_buf_json_escaped(out, payload, payload_len) < 0 ||
        xr_buf_add(out, c, sizeof c - 1) < 0 ||
        xr_buf_add(out, header_json, strlen(header_json)) < 0 ||
        xr_buf_add(out, d, sizeof d - 1) < 0 ||
        xr_buf_add(out, m, strlen(m)) < 0 ||
        xr_buf_add(out, e, sizeof e - 1) < 0)
        return -1;
    return 0;
}

/* ---- the members of a JSON object -------------------------------------- */

void xr_json_fields_reset(xr_json_fields *f, const char *json, size_t len)
{
    f->json = json;
    f->len = len;
    f->n = 0;
    f->state = 0;
    f->store.len = 0;
}

static int index_member(parser *p, size_t noff, size_t nlen, void *ctx)
{
    xr_json_fields *f = ctx;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 8;
        xr_json_member *m = realloc(f->m, cap * sizeof *m);
        if (!m)
            return syntax(p, "out of memory");
        f->m = m;
        f->cap = cap;
    }
    xr_json_member *m = &f->m[f->n];
    unsigned char c = p->i < p->n ? p->s[p->i] : 0;
    m->type = c == '"' ? XR_JT_STRING : c == '{' ? XR_JT_OBJECT : c == '[' ? XR_JT_ARRAY
            : c == 't' || c == 'f' ? XR_JT_BOOL : c == 'n' ? XR_JT_NULL : XR_JT_NUMBER;
    m->name_raw = noff == SIZE_MAX;
    m->name_off = m->name_raw ? (size_t)(p->name - f->json) : noff;
    m->name_len = nlen;
    m->raw_off = p->i;
    m->str_off = SIZE_MAX;
    m->str_len = 0;
    /* Strings are unescaped now, in the same pass that checks them. */
    if ((m->type == XR_JT_STRING ? string(p, &f->store, &m->str_off, &m->str_len)
                                 : value(p, 1)) < 0)
        return -1;
    m->raw_len = p->i - m->raw_off;
    f->n++;
    return 0;
}

static int fields_index(xr_json_fields *f)
{
    /* Names and strings are unescaped into the store here, once: no
     * pointer into it is handed out before the index is complete. */
    f->store.len = 0;
    parser p = {(const unsigned char *)f->json, f->len, 0, &f->store, NULL, NULL};
    skip_ws(&p);
    if (p.i == p.n || p.s[p.i] != '{' || list(&p, &f->store, 1, index_member, f) < 0)
        return -1;
    skip_ws(&p);
    return p.i == p.n ? 1 : -1;
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
        if (m->name_len == nlen && memcmp(xr_json_member_name(f, m), name, nlen) == 0)
            return m;
    }
    return NULL;
}

int xr_json_member_str(xr_json_fields *f, xr_json_member *m, const char **s, size_t *len)
{
    if (m->type != XR_JT_STRING)
        return -1;
    *s = f->store.p + m->str_off;
    if (len)
        *len = m->str_len;
    return 0;
}

/* The number's text NUL-terminated in buf, or -1 if it is not a number or
 * longer than any double needs (JSON allows any length). */
static int number_text(const xr_json_fields *f, const xr_json_member *m, char *buf, size_t cap)
{
    if (m->type != XR_JT_NUMBER || m->raw_len >= cap)
        return -1;
    memcpy(buf, f->json + m->raw_off, m->raw_len);
    buf[m->raw_len] = '\0';
    return 0;
}

int xr_json_member_int(const xr_json_fields *f, const xr_json_member *m, long long *v)
{
    char buf[32];
    if (m->type != XR_JT_NUMBER)
        return -1;
    if (number_text(f, m, buf, sizeof buf) < 0 || strpbrk(buf, ".eE"))
        return -2;
    errno = 0;
    long long n = strtoll(buf, NULL, 10);
    if (errno)
        return -2;
    *v = n;
    return 0;
}

int xr_json_member_double(const xr_json_fields *f, const xr_json_member *m, double *v)
{
    char buf[400];
    if (m->type != XR_JT_NUMBER)
        return -1;
    if (number_text(f, m, buf, sizeof buf) < 0)
        return -2;
    locale_t c = xr_c_locale();
    double d = c ? strtod_l(buf, NULL, c) : strtod(buf, NULL);
    if (!isfinite(d))
        return -2;
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
