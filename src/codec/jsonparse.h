/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The strict JSON parser's steps (RFC 8259), shared by the request envelope
 * (request.c) and the member index of payloads and headers (fields.c).
 * Everything is static inline: the steps are inlined into each caller's
 * loop with the cursor in a register, which separate files behind calls
 * would lose. Pure; nothing but the caller's store is written.
 */
#ifndef XR_CODEC_JSONPARSE_H
#define XR_CODEC_JSONPARSE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "codec/jsonf.h"
#include "codec/jsonscan.h"
#include "util/buf.h"
#include "xraptor.h"

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
static inline int parser_start(parser *p, const char *s, size_t n, xr_buf *store, size_t extra)
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

static inline const unsigned char *fail(parser *p, const char *why)
{
    if (!p->why)
        p->why = why;
    return NULL;
}

static inline const unsigned char *eoi(parser *p)
{
    return fail(p, "unexpected end of input");
}

static inline const unsigned char *skip_ws_run(const unsigned char *s, const unsigned char *end)
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
static inline int hex4(const unsigned char *s, unsigned *v)
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
static inline const unsigned char *unicode_escape(parser *p, const unsigned char *s, char **o)
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
static inline const unsigned char *escape(parser *p, const unsigned char *s, char **o)
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
static inline const unsigned char *string_checked(parser *p, const unsigned char *s)
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

static inline const unsigned char *digits(parser *p, const unsigned char *s)
{
    const unsigned char *s0 = s;
    while (s < p->end && *s >= '0' && *s <= '9')
        s++;
    return s > s0 ? s : fail(p, "malformed number");
}

static inline const unsigned char *number(parser *p, const unsigned char *s)
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

static inline const unsigned char *literal(parser *p, const unsigned char *s, const char *word, size_t n)
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

static inline const unsigned char *value(parser *p, const unsigned char *s, int depth);

/* An object or array at s, checked and thrown away; an escaped name takes
 * room in the store only while it is checked. */
static inline const unsigned char *container(parser *p, const unsigned char *s, int depth)
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
static inline const unsigned char *value(parser *p, const unsigned char *s, int depth)
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

#endif
