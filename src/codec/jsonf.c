/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON out without a JSON library: a printf whose %Q quotes a string the
 * way json.dumps would (RFC 8259 escapes, UTF-8 kept, invalid UTF-8 made
 * U+FFFD as Python's bytes.decode("utf-8", "replace") does), and whose
 * numbers never depend on the locale. Pure: writes into the caller's
 * memory only.
 */
#include "codec/jsonf.h"
#include "codec/jsonscan.h"
#include "codec/utf8.h"

#include "xraptor.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/*
 * Where the text goes: a caller's fixed buffer, where what does not fit is
 * only counted (snprintf's contract), or an xr_buf, grown as it is written
 * so that a warm buffer costs one pass.
 */
typedef struct out {
    char *p;
    size_t cap, len;           /* len counts what did not fit too */
    xr_buf *b;                 /* growable when set */
    int oom;
    int esc;                   /* the text escaped as the inside of a JSON string (b only) */
} out;

/* Whether n more bytes can be written at o->p + o->len. */
static int grow(out *o, size_t n)
{
    if (!o->b || o->oom)
        return 0;
    o->b->len = o->len;
    if (xr_buf_reserve(o->b, n) < 0) {
        o->oom = 1;
        return 0;
    }
    o->p = o->b->p;
    o->cap = o->b->cap;
    return 1;
}

static inline int room(out *o, size_t n)
{
    return (o->len <= o->cap && o->cap - o->len >= n) || grow(o, n);
}

static inline void put(out *o, const char *s, size_t n)
{
    if (room(o, n)) {
        xr_copy_small((unsigned char *)o->p + o->len, (const unsigned char *)s, n);
    } else if (o->len < o->cap) {
        size_t left = o->cap - o->len;
        memcpy(o->p + o->len, s, n < left ? n : left);
    }
    o->len += n;
}

static inline void put_c(out *o, char c)
{
    if (room(o, 1))
        o->p[o->len] = c;
    o->len++;
}

/* Text, escaped in esc mode (which has a growable buffer). */
static void put_text(out *o, const char *s, size_t n)
{
    if (!o->esc) {
        put(o, s, n);
        return;
    }
    size_t max = xr_json_escape_max(n);
    if (max == SIZE_MAX || !room(o, max)) {
        o->oom = 1;
        return;
    }
    o->len = (size_t)(xr_json_escape(o->p + o->len, s, n) - o->p);
}

/*
 * The valid UTF-8 sequence at p: its length, or 0 with *bad set to the
 * bytes that one U+FFFD replaces (the lead and the continuation bytes that
 * were still possible: Unicode's "maximal subpart", as Python does). The
 * transport's own validator decides, a byte at a time.
 */
static size_t utf8_seq(const unsigned char *p, size_t n, size_t *bad)
{
    xr_utf8 u;
    xr_utf8_init(&u);
    for (size_t k = 0; k < n; k++) {
        if (!xr_utf8_feed(&u, p + k, 1)) {
            *bad = k ? k : 1;
            return 0;
        }
        if (xr_utf8_complete(&u))
            return k + 1;
    }
    *bad = n;
    return 0;
}

/* The escape of c (a '"', a '\\' or a control character) at w, as
 * json.dumps writes it; the end of it. */
static char *escape_char(char *w, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    static const char letter[32] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r',
                                    ['\t'] = 't'};
    *w++ = '\\';
    if (c == '"' || c == '\\') {
        *w++ = (char)c;
    } else if (c < 32 && letter[c]) {
        *w++ = letter[c];
    } else {
        memcpy(w, "u00", 3);
        w[3] = hex[c >> 4];
        w[4] = hex[c & 15];
        w += 5;
    }
    return w;
}

/* Input bytes quoted per pass: what one pass writes at most (6 bytes for
 * each, a whole UTF-8 sequence past the end, the copy slack) fits in QBUF. */
#define QCHUNK 1024
#define QBUF (6 * QCHUNK + 6 + XR_JSON_COPY_SLACK)

/* Escapes p[*i..] into w until *i reaches limit (a UTF-8 sequence begun
 * before it is finished); the bytes written. */
static size_t quote_some(char *w, const unsigned char *p, size_t n, size_t *i, size_t limit)
{
    char *w0 = w;
    size_t k = *i;
    while (k < limit) {
        size_t run = xr_json_copy_run_ascii((unsigned char *)w, p + k, limit - k);
        w += run;
        k += run;
        if (k == limit)
            break;
        unsigned char c = p[k];
        if (c >= 0x80) {
            size_t bad, len = utf8_seq(p + k, n - k, &bad);
            if (len) {
                memcpy(w, p + k, len);
                w += len;
                k += len;
            } else {
                memcpy(w, "\\ufffd", 6);
                w += 6;
                k += bad;
            }
            continue;
        }
        w = escape_char(w, c);
        k++;
    }
    *i = k;
    return (size_t)(w - w0);
}

static void quoted(out *o, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    /* Most strings need no escape: one run, copied between its quotes
     * (each \" in esc mode). */
    static const char mark[] = "\\\"";     /* its last byte, or both escaped */
    size_t q = o->esc ? 2 : 1;
    if (n <= QCHUNK && room(o, n + 2 * q + XR_JSON_COPY_SLACK)) {
        char *w = o->p + o->len;
        size_t run = xr_json_copy_run_ascii((unsigned char *)w + q, p, n);
        if (run == n) {
            memcpy(w, mark + 2 - q, q);
            memcpy(w + q + n, mark + 2 - q, q);
            o->len += n + 2 * q;
            return;
        }
    }
    put_text(o, "\"", 1);
    for (size_t i = 0; i < n;) {
        size_t limit = n - i > QCHUNK ? i + QCHUNK : n;
        if (!o->esc && room(o, QBUF)) {
            o->len += quote_some(o->p + o->len, p, n, &i, limit);
        } else {
            char tmp[QBUF];
            put_text(o, tmp, quote_some(tmp, p, n, &i, limit));
        }
    }
    put_text(o, "\"", 1);
}

/* ---- the inside of a JSON string -------------------------------------- */

char *xr_json_escape(char *o, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    for (;;) {
        /* As the parser's string loop: blocks while they fit, then bytes;
         * the stops of a block, once known, are walked without scanning
         * it again (a '"' after another is the common case). */
#if defined(__SSE2__)
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
            _mm_storeu_si128((__m128i *)(void *)o, v);
            unsigned stop = xr_json_stops16(v, 0);
            if (!stop) {
                p += 16;
                o += 16;
                continue;
            }
            unsigned k = (unsigned)__builtin_ctz(stop);
            p += k;
            o += k;
            while (*p == '"') {
                *o++ = '\\';
                *o++ = '"';
                p++;
                stop >>= k + 1;
                if (!stop || end - p < 16)
                    break;
                _mm_storeu_si128((__m128i *)(void *)o,
                                 _mm_loadu_si128((const __m128i *)(const void *)p));
                k = (unsigned)__builtin_ctz(stop);
                p += k;
                o += k;
            }
            if (p < end && *p != '"' && !xr_json_plain(*p))
                goto stopped;
        }
#endif
        size_t run = xr_json_tail_run(p, end, (const unsigned char *)s);
        xr_copy_small((unsigned char *)o, p, run);
        o += run;
        p += run;
        if (p == end)
            return o;
#if defined(__SSE2__)
    stopped:
#endif
        o = escape_char(o, *p++);
    }
}

size_t xr_json_escape_max(size_t len)
{
    return len > (SIZE_MAX - XR_JSON_COPY_SLACK) / 6 ? SIZE_MAX : len * 6 + XR_JSON_COPY_SLACK;
}

int xr_buf_json_escaped(xr_buf *b, const char *s, size_t len)
{
    size_t max = xr_json_escape_max(len);
    if (max == SIZE_MAX || xr_buf_reserve(b, max) < 0)
        return XR_ENOMEM;
    b->len = (size_t)(xr_json_escape(b->p + b->len, s, len) - b->p);
    return 0;
}

/* Numbers in the "C" locale whatever the application set: a German
 * locale's decimal comma is not JSON. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

locale_t xr_c_locale(void)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale;
}

/* The shortest %.Ng that reads back as the same double. */
static void number(out *o, double d)
{
    if (!isfinite(d)) {
        put(o, "null", 4);  /* JSON has no NaN or infinity */
        return;
    }
    char buf[40];
    locale_t c = xr_c_locale(), old = c ? uselocale(c) : (locale_t)0;
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (prec == 17 || strtod(buf, NULL) == d)
            break;
    }
    if (c)
        uselocale(old);
    put(o, buf, (size_t)n);
}

static int format(out *o, const char *fmt, va_list ap)
{
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            const char *pct = strchrnul(f, '%');
            put_text(o, f, (size_t)(pct - f));
            f = pct - 1;
            continue;
        }
        f++;
        int prec = -1;
        if (f[0] == '.' && f[1] == '*') {
            prec = va_arg(ap, int);
            if (prec < 0)
                return XR_JSONF_EARG;
            f += 2;
        }
        int lmod = 0, zmod = 0;
        if (*f == 'z') {
            zmod = 1;
            f++;
        } else {
            while (*f == 'l' && lmod < 2) {
                lmod++;
                f++;
            }
        }
        char num[32];
        switch (*f) {
        case '%':
            put_c(o, '%');
            break;
        case 's':
        case 'Q': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                return XR_JSONF_EARG;
            size_t n = prec >= 0 ? (size_t)prec : strlen(s);
            if (*f == 's')
                put_text(o, s, n);
            else
                quoted(o, s, n);
            break;
        }
        case 'd':
        case 'i':
            if (zmod)
                snprintf(num, sizeof num, "%zd", va_arg(ap, ssize_t));
            else if (lmod == 2)
                snprintf(num, sizeof num, "%lld", va_arg(ap, long long));
            else if (lmod == 1)
                snprintf(num, sizeof num, "%ld", va_arg(ap, long));
            else
                snprintf(num, sizeof num, "%d", va_arg(ap, int));
            put(o, num, strlen(num));
            break;
        case 'u':
            if (zmod)
                snprintf(num, sizeof num, "%zu", va_arg(ap, size_t));
            else if (lmod == 2)
                snprintf(num, sizeof num, "%llu", va_arg(ap, unsigned long long));
            else if (lmod == 1)
                snprintf(num, sizeof num, "%lu", va_arg(ap, unsigned long));
            else
                snprintf(num, sizeof num, "%u", va_arg(ap, unsigned));
            put(o, num, strlen(num));
            break;
        case 'g':
            if (lmod || zmod)
                return XR_JSONF_EFORMAT;
            number(o, va_arg(ap, double));
            break;
        case 'b':
            if (lmod || zmod)
                return XR_JSONF_EFORMAT;
            if (va_arg(ap, int))
                put(o, "true", 4);
            else
                put(o, "false", 5);
            break;
        default:
            return XR_JSONF_EFORMAT;
        }
        if (prec >= 0 && *f != 's' && *f != 'Q')
            return XR_JSONF_EFORMAT;
    }
    return o->oom ? XR_JSONF_ENOMEM : 0;
}

int xr_jsonf_v(char *dst, size_t cap, size_t *len, const char *fmt, va_list ap)
{
    out o = {dst, cap, 0, NULL, 0, 0};
    int rc = format(&o, fmt, ap);
    if (rc < 0)
        return rc;
    if (o.len < cap)
        dst[o.len] = '\0';
    else if (cap)
        dst[cap - 1] = '\0';
    *len = o.len;
    return 0;
}

static int buf_format(xr_buf *b, int esc, const char *fmt, va_list ap)
{
    out o = {b->p, b->cap, b->len, b, 0, esc};
    int rc = format(&o, fmt, ap);
    /* The NUL after the text, not counted. */
    if (rc == 0 && !room(&o, 1))
        rc = XR_JSONF_ENOMEM;
    if (rc < 0)
        return rc;
    o.p[o.len] = '\0';
    b->len = o.len;
    return 0;
}

int xr_buf_jsonf_v(xr_buf *b, const char *fmt, va_list ap)
{
    return buf_format(b, 0, fmt, ap);
}

int xr_buf_jsonf_escaped_v(xr_buf *b, const char *fmt, va_list ap)
{
    return buf_format(b, 1, fmt, ap);
}

int xr_jsonf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if ((!buf && cap) || !len || !fmt)
        return XR_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    int rc = xr_jsonf_v(buf, cap, len, fmt, ap);
    va_end(ap);
    return rc < 0 ? XR_EINVAL : XR_OK;
}
