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

typedef struct out {
    char *p;
    size_t cap, len;           /* len counts what did not fit too */
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->len < o->cap) {
        size_t room = o->cap - o->len;
        memcpy(o->p + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void put_c(out *o, char c)
{
    if (o->len < o->cap)
        o->p[o->len] = c;
    o->len++;
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

static void quoted(out *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    put_c(o, '"');
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        i += xr_json_plain_run(p + i, n - i, 1);
        put(o, s + run, i - run);
        if (i == n)
            break;
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t bad, k = utf8_seq(p + i, n - i, &bad);
            if (k) {
                put(o, s + i, k);
                i += k;
            } else {
                put(o, "\\ufffd", 6);
                i += bad;
            }
            continue;
        }
        char e[6] = {'\\', 0};
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        default:
            put(o, "\\u00", 4);
            e[0] = hex[c >> 4];
            e[1] = hex[c & 15];
            put(o, e, 2);
            i++;
            continue;
        }
        put(o, e, 2);
        i++;
    }
    put_c(o, '"');
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

int xr_jsonf_v(char *dst, size_t cap, size_t *len, const char *fmt, va_list ap)
{
    out o = {dst, cap, 0};
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            const char *pct = strchr(f, '%');
            size_t n = pct ? (size_t)(pct - f) : strlen(f);
            put(&o, f, n);
            f += n - 1;
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
            put_c(&o, '%');
            break;
        case 's':
        case 'Q': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                return XR_JSONF_EARG;
            size_t n = prec >= 0 ? (size_t)prec : strlen(s);
            if (*f == 's')
                put(&o, s, n);
            else
                quoted(&o, s, n);
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
            put(&o, num, strlen(num));
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
            put(&o, num, strlen(num));
            break;
        case 'g':
            if (lmod || zmod)
                return XR_JSONF_EFORMAT;
            number(&o, va_arg(ap, double));
            break;
        case 'b':
            if (lmod || zmod)
                return XR_JSONF_EFORMAT;
            if (va_arg(ap, int))
                put(&o, "true", 4);
            else
                put(&o, "false", 5);
            break;
        default:
            return XR_JSONF_EFORMAT;
        }
        if (prec >= 0 && *f != 's' && *f != 'Q')
            return XR_JSONF_EFORMAT;
    }
    if (o.len < cap)
        dst[o.len] = '\0';
    else if (cap)
        dst[cap - 1] = '\0';
    *len = o.len;
    return 0;
}

int xr_buf_jsonf_v(xr_buf *b, const char *fmt, va_list ap)
{
    size_t len;
    va_list again;
    va_copy(again, ap);
    int rc = xr_jsonf_v(b->p ? b->p + b->len : NULL, b->cap - b->len, &len, fmt, ap);
    if (rc == 0 && len >= b->cap - b->len) {
        if (xr_buf_reserve(b, len + 1) < 0)
            rc = XR_JSONF_ENOMEM;
        else
            rc = xr_jsonf_v(b->p + b->len, b->cap - b->len, &len, fmt, again);
    }
    va_end(again);
    if (rc == 0)
        b->len += len;
    return rc;
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
