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

/* ---- the parser: strict JSON, one pass, no allocation once warm -------- */

#define MAX_DEPTH 64

/* The small steps between tokens: inlined into each loop, where the cursor
 * stays in a register (a call would spill it and the registers around it). */
#define STEP static inline __attribute__((always_inline))

/*
 * One pass over a text, the cursor handed from step to step (each returns
 * where it stopped, NULL on an error it has named in why). Strings that are
 * kept are unescaped into a store whose room for all of them was reserved
 * before the pass (unescaping never grows a string): the store does not
 * move while parsing, and no string costs a capacity check.
 */
typedef struct parser {
    const unsigned char *start, *end;
    char *base, *o;             /* the store, and where the next kept string goes */
    const char *why;            /* the syntax error, when there is one */
} parser;

/* Room for every string of an n-byte text unescaped with its NUL, the slack
 * of whole-block copies, and extra bytes the caller adds after them. */
static int parser_start(parser *p, const char *s, size_t n, xr_buf *store, size_t extra)
{
    p->start = (const unsigned char *)s;
    p->end = p->start + n;
    p->why = NULL;
    if (n > ((size_t)-1 - XR_JSON_COPY_SLACK - 1) / 2 ||
        xr_buf_reserve(store, n + 1 + XR_JSON_COPY_SLACK + extra) < 0)
        return XR_ENOMEM;
    p->base = store->p;
    p->o = store->p + store->len;
    return 0;
}

static const unsigned char *fail(parser *p, const char *why)
{
    if (!p->why)
        p->why = why;
    return NULL;
}

static const unsigned char *eoi(parser *p)
{
    return fail(p, "unexpected end of input");
}

static const unsigned char *skip_ws_run(const unsigned char *s, const unsigned char *end)
{
    while (s < end && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t'))
        s++;
    return s;
}

STEP const unsigned char *skip_ws(const unsigned char *s, const unsigned char *end)
{
    /* Compact JSON has none: one compare says so (a byte above ' ' is no
     * whitespace); json.dumps writes one space, two compares more. */
    if (s == end || *s > ' ')
        return s;
    if (*s == ' ' && end - s > 1 && s[1] > ' ')
        return s + 1;
    return skip_ws_run(s, end);
}

/* Whether s starts with four hex digits; their value in *v. */
static int hex4(const unsigned char *s, unsigned *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = s[k], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        *v = *v << 4 | d;
    }
    return 1;
}

/* A \u escape, s after the 'u': one code point (a surrogate pair joined)
 * written as UTF-8 at *o (o NULL: only checked). */
static const unsigned char *unicode_escape(parser *p, const unsigned char *s, char **o)
{
    unsigned cp, lo;
    if (p->end - s < 4)
        return eoi(p);
    if (!hex4(s, &cp))
        return fail(p, "invalid \\u escape");
    s += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail(p, "invalid \\u escape (lone low surrogate)");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (p->end - s < 2 || s[0] != '\\' || s[1] != 'u')
            return fail(p, "invalid \\u escape (lone high surrogate)");
        if (p->end - s < 6)
            return eoi(p);
        if (!hex4(s + 2, &lo))
            return fail(p, "invalid \\u escape");
        if (lo < 0xDC00 || lo > 0xDFFF)
            return fail(p, "invalid \\u escape (lone high surrogate)");
        s += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (!o)
        return s;
    /* At most 4 bytes for the 6 or 12 of the escape. */
    char *w = *o;
    if (cp < 0x80) {
        *w++ = (char)cp;
    } else if (cp < 0x800) {
        *w++ = (char)(0xC0 | cp >> 6);
        *w++ = (char)(0x80 | (cp & 63));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xE0 | cp >> 12);
        *w++ = (char)(0x80 | ((cp >> 6) & 63));
        *w++ = (char)(0x80 | (cp & 63));
    } else {
        *w++ = (char)(0xF0 | cp >> 18);
        *w++ = (char)(0x80 | ((cp >> 12) & 63));
        *w++ = (char)(0x80 | ((cp >> 6) & 63));
        *w++ = (char)(0x80 | (cp & 63));
    }
    *o = w;
    return s;
}

/* What a one-letter escape stands for; 0: not one. */
static const unsigned char unescaped[256] = {
    ['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b', ['f'] = '\f', ['n'] = '\n',
    ['r'] = '\r', ['t'] = '\t',
};

/* The escape whose backslash is before s, written at *o (o NULL: only
 * checked). */
static const unsigned char *escape(parser *p, const unsigned char *s, char **o)
{
    if (s == p->end)
        return eoi(p);
    unsigned char c = *s++;
    if (unescaped[c]) {
        if (o)
            *(*o)++ = (char)unescaped[c];
        return s;
    }
    if (c != 'u')
        return fail(p, "invalid escape in a string");
    return unicode_escape(p, s, o);
}

/* The string whose opening quote is at s, checked. */
static const unsigned char *string_checked(parser *p, const unsigned char *s)
{
    const unsigned char *end = p->end;
    s++;
    for (;;) {
        s += xr_json_plain_run(s, (size_t)(end - s), 0);
        if (s == end)
            return eoi(p);
        unsigned char c = *s++;
        if (c == '"')
            return s;
        if (c != '\\')
            return fail(p, "control character in a string");
        if (!(s = escape(p, s, NULL)))
            return NULL;
    }
}

/*
 * The string whose opening quote is at s, unescaped into the store with a
 * NUL after it: *off and *len say where. The hot loop of the parser: a
 * JSON-in-JSON payload stops it at every \" , so a stop must cost little.
 */
STEP const unsigned char *string_kept(parser *p, const unsigned char *s, size_t *off, size_t *len)
{
    const unsigned char *end = p->end;
    char *o = p->o;
    s++;
    for (;;) {
#if defined(__SSE2__)
        /* stop: the stops of the block scanned last, bit j for s[j - k]. */
        unsigned stop = 0, k = 0;
        while (end - s >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
            _mm_storeu_si128((__m128i *)(void *)o, v);
            stop = xr_json_stops16(v, 0);
            if (stop) {
                k = (unsigned)__builtin_ctz(stop);
                s += k;
                o += k;
                goto stopped;
            }
            s += 16;
            o += 16;
        }
#endif
        while (s < end && xr_json_plain(*s))
            *o++ = (char)*s++;
        if (s == end)
            return eoi(p);
#if defined(__SSE2__)
    stopped:
#endif
        if (*s == '"')
            break;
        if (*s++ != '\\')
            return fail(p, "control character in a string");
        if (s < end && *s == '"') {     /* the escape of JSON in JSON */
            *o++ = '"';
            s++;
#if defined(__SSE2__)
            /* The block's other stops are known: copy on to the next one
             * without scanning again. */
            while (end - s >= 16) {
                stop = stop >> (k + 2);
                if (!stop)
                    break;
                _mm_storeu_si128((__m128i *)(void *)o,
                                 _mm_loadu_si128((const __m128i *)(const void *)s));
                k = (unsigned)__builtin_ctz(stop);
                s += k;
                o += k;
                if (*s != '\\' || s + 1 == end || s[1] != '"')
                    goto stopped;
                *o++ = '"';
                s += 2;
            }
#endif
        } else {
            char *w = o;        /* o's address is not taken: it stays in a register */
            if (!(s = escape(p, s, &w)))
                return NULL;
            o = w;
        }
    }
    *off = (size_t)(p->o - p->base);
    *len = (size_t)(o - p->o);
    *o = '\0';
    p->o = o + 1;
    return s + 1;
}

static const unsigned char *digits(parser *p, const unsigned char *s)
{
    const unsigned char *s0 = s;
    while (s < p->end && *s >= '0' && *s <= '9')
        s++;
    return s > s0 ? s : fail(p, "malformed number");
}

static const unsigned char *number(parser *p, const unsigned char *s)
{
    const unsigned char *end = p->end;
    if (*s == '-')
        s++;
    if (s < end && *s == '0')
        s++;
    else if (!(s = digits(p, s)))
        return NULL;
    if (s < end && *s == '.' && !(s = digits(p, s + 1)))
        return NULL;
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < end && (*s == '+' || *s == '-'))
            s++;
        if (!(s = digits(p, s)))
            return NULL;
    }
    return s;
}

static const unsigned char *literal(parser *p, const unsigned char *s, const char *word, size_t n)
{
    size_t left = (size_t)(p->end - s);
    if (left < n || memcmp(s, word, n) != 0)
        return fail(p, left < n && memcmp(s, word, left) == 0 ? "unexpected end of input"
                                                             : "unexpected character");
    return s + n;
}

/*
 * Walking an object or array: list_open() at its bracket says whether an
 * element follows; after each element list_next() eats the ',' (*more 1)
 * or the closing bracket (*more 0). Both leave s past any whitespace.
 */
STEP const unsigned char *list_open(parser *p, const unsigned char *s, int *more)
{
    unsigned char close = *s == '{' ? '}' : ']';
    s = skip_ws(s + 1, p->end);
    *more = !(s < p->end && *s == close);
    return *more ? s : s + 1;
}

STEP const unsigned char *list_next(parser *p, const unsigned char *s, unsigned char close,
                                             int *more)
{
    s = skip_ws(s, p->end);
    if (s == p->end)
        return eoi(p);
    if (*s == ',') {
        *more = 1;
        return skip_ws(s + 1, p->end);
    }
    if (*s == close) {
        *more = 0;
        return s + 1;
    }
    return fail(p, close == '}' ? "expected ',' or the end of the object"
                                : "expected ',' or the end of the array");
}

/* The ':' after a member name, and the whitespace around it. */
STEP const unsigned char *colon(parser *p, const unsigned char *s)
{
    if (s < p->end && *s == ':')
        return skip_ws(s + 1, p->end);
    s = skip_ws(s, p->end);
    if (s == p->end)
        return eoi(p);
    if (*s != ':')
        return fail(p, "expected ':'");
    return skip_ws(s + 1, p->end);
}

/* The string whose opening quote is at s when it has no escape: its length
 * in *len and where it ends (past the closing quote); NULL when it has one,
 * or a control character, or no end. */
STEP const unsigned char *plain_string(const parser *p, const unsigned char *s, size_t *len)
{
    const unsigned char *q = s + 1;
    size_t run = xr_json_plain_run(q, (size_t)(p->end - q), 0);
    if (q + run == p->end || q[run] != '"')
        return NULL;
    *len = run;
    return q + run + 1;
}

/*
 * A member's name at s and its ':', returning where the value starts. A
 * name without escapes is handed over where it stands in the text (*raw 1);
 * else it is unescaped into the store (*raw 0; the caller may take the
 * room back).
 */
STEP const unsigned char *member_name(parser *p, const unsigned char *s, const char **name,
                                               size_t *len, int *raw)
{
    if (s == p->end)
        return eoi(p);
    if (*s != '"')
        return fail(p, "expected a member name");
    const unsigned char *after = plain_string(p, s, len);
    if (after) {
        *name = (const char *)s + 1;
        *raw = 1;
        s = after;
    } else {
        size_t off;
        if (!(s = string_kept(p, s, &off, len)))
            return NULL;
        *name = p->base + off;
        *raw = 0;
    }
    return colon(p, s);
}

static const unsigned char *value(parser *p, const unsigned char *s, int depth);

/* An object or array at s, checked and thrown away; an escaped name takes
 * room in the store only while it is checked. */
static const unsigned char *container(parser *p, const unsigned char *s, int depth)
{
    if (depth > MAX_DEPTH)
        return fail(p, "nested too deep");
    unsigned char close = *s == '{' ? '}' : ']';
    int more;
    s = list_open(p, s, &more);
    while (more) {
        if (close == '}') {
            char *mark = p->o;
            const char *name;
            size_t len;
            int raw;
            if (!(s = member_name(p, s, &name, &len, &raw)))
                return NULL;
            p->o = mark;
        }
        if (!(s = value(p, s, depth + 1)) || !(s = list_next(p, s, close, &more)))
            return NULL;
    }
    return s;
}

/* Any value at s (whitespace skipped), checked and thrown away. */
static const unsigned char *value(parser *p, const unsigned char *s, int depth)
{
    if (s == p->end)
        return eoi(p);
    switch (*s) {
    case '"': return string_checked(p, s);
    case '{': case '[': return container(p, s, depth);
    case 't': return literal(p, s, "true", 4);
    case 'f': return literal(p, s, "false", 5);
    case 'n': return literal(p, s, "null", 4);
    default:
        if (*s == '-' || (*s >= '0' && *s <= '9'))
            return number(p, s);
        return fail(p, "unexpected character");
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

/* ---- the members of a JSON object -------------------------------------- */

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
