/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the application API's JSON reader and writer.
 * Reader: every object we index, json-c in strict mode accepts too, and
 * each member we found (the last of a name) has json-c's type, and for
 * strings its exact bytes. Writer: any bytes quoted with %.*Q are valid
 * UTF-8, read back by our reader and by json-c as the same string, which
 * is the input itself when the input was UTF-8. The fields are reused
 * from input to input, as requests are. */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "codec/jsonf.h"
#include "codec/request.h"
#include "codec/utf8.h"
#include "jsonc_quirk.h"
#include "xraptor.h"

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

static int type_of(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null: return XR_JSON_NULL;
    case json_type_boolean: return XR_JSON_BOOL;
    case json_type_double:
    case json_type_int: return XR_JSON_NUMBER;
    case json_type_string: return XR_JSON_STRING;
    case json_type_array: return XR_JSON_ARRAY;
    default: return XR_JSON_OBJECT;
    }
}

static void reader(const uint8_t *data, size_t size)
{
    static xr_json_fields f;
    xr_json_fields_reset(&f, (const char *)data, size);
    int state;
    xr_json_fields_get(&f, "x", 1, &state);
    if (state < 0)
        return;
    json_tokener *strict = json_tokener_new_ex(128);
    json_tokener_set_flags(strict, JSON_TOKENER_STRICT);
    json_object *ref = size <= 0x7fffffff
                       ? json_tokener_parse_ex(strict, (const char *)data, (int)size) : NULL;
    ASSERT(ref && json_object_is_type(ref, json_type_object));
    /* json-c's names and strings are no reference for such an input. */
    for (size_t k = 0; k < f.n && !jsonc_quirky(data, size); k++) {
        xr_json_member *m = &f.m[k];
        char name[4096];
        if (m->name_len >= sizeof name || memchr(xr_json_member_name(&f, m), 0, m->name_len))
            continue;           /* json-c keys are C strings */
        memcpy(name, xr_json_member_name(&f, m), m->name_len);
        name[m->name_len] = '\0';
        int st;
        xr_json_member *last = xr_json_fields_get(&f, name, m->name_len, &st);
        ASSERT(last && st == 1 && last >= m);
        json_object *v;
        ASSERT(json_object_object_get_ex(ref, name, &v));
        ASSERT(type_of(v) == last->type);
        if (last->type == XR_JSON_STRING) {
            const char *s;
            size_t len;
            ASSERT(xr_json_member_str(&f, last, &s, &len) == 0 && s[len] == '\0');
            ASSERT((size_t)json_object_get_string_len(v) == len &&
                   memcmp(json_object_get_string(v), s, len) == 0);
        }
        long long i;
        if (last->type == XR_JSON_NUMBER && xr_json_member_int(&f, last, &i) == 0 &&
            json_object_is_type(v, json_type_int))
            ASSERT(json_object_get_int64(v) == i || i == INT64_MIN || i == INT64_MAX);
        double d;
        if (last->type == XR_JSON_NUMBER && xr_json_member_double(&f, last, &d) == 0 &&
            json_object_is_type(v, json_type_double))
            ASSERT(json_object_get_double(v) == d);
    }
    json_object_put(ref);
    json_tokener_free(strict);
}

static int buf_jsonf(xr_buf *b, int escaped, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = escaped ? xr_buf_jsonf_escaped_v(b, fmt, ap) : xr_buf_jsonf_v(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* The growing writer says what the fixed one says; its escaped mode says
 * that escaped (a reply written straight into its response), whatever the
 * input: literal text, quoted and inserted strings alike. */
static void writer_modes(const uint8_t *data, size_t size, const char *fixed, size_t flen)
{
    static xr_buf a, b, c;
    a.len = b.len = c.len = 0;
    ASSERT(buf_jsonf(&a, 0, "%.*Q", (int)size, (const char *)data) == 0);
    ASSERT(a.len == flen && memcmp(a.p, fixed, flen) == 0 && a.p[a.len] == '\0');
    const char *fmt = "{\"q\": %.*Q, \"s\": \"%.*s\", \"n\": %d}";
    int half = (int)(size / 2);
    a.len = 0;
    ASSERT(buf_jsonf(&a, 0, fmt, (int)size, (const char *)data, half, (const char *)data, 7) == 0);
    ASSERT(buf_jsonf(&b, 1, fmt, (int)size, (const char *)data, half, (const char *)data, 7) == 0);
    ASSERT(xr_buf_json_escaped(&c, a.p, a.len) == 0);
    ASSERT(b.len == c.len && memcmp(b.p, c.p, c.len) == 0 && b.p[b.len] == '\0');
}

static void writer(const uint8_t *data, size_t size)
{
    static xr_buf out;
    static xr_json_fields f;
    if (size > 0x7fffffff)
        return;
    out.len = 0;
    ASSERT(xr_buf_add(&out, "{\"v\": ", 6) == 0);
    size_t start = out.len;
    char *tmp = NULL;
    size_t len;
    ASSERT(xr_jsonf(NULL, 0, &len, "%.*Q", (int)size, (const char *)data) == 0);
    tmp = malloc(len + 1);
    ASSERT(tmp && xr_jsonf(tmp, len + 1, &len, "%.*Q", (int)size, (const char *)data) == 0);
    ASSERT(strlen(tmp) == len && xr_buf_add(&out, tmp, len) == 0 && xr_buf_add(&out, "}", 1) == 0);
    writer_modes(data, size, tmp, len);
    free(tmp);
    ASSERT(xr_utf8_valid((const uint8_t *)out.p, out.len));
    xr_json_fields_reset(&f, out.p, out.len);
    int state;
    xr_json_member *m = xr_json_fields_get(&f, "v", 1, &state);
    const char *s;
    size_t slen;
    ASSERT(m && state == 1 && xr_json_member_str(&f, m, &s, &slen) == 0);
    if (xr_utf8_valid(data, size))
        ASSERT(slen == size && memcmp(s, data, size) == 0);
    json_tokener *t = json_tokener_new();
    json_object *ref = json_tokener_parse_ex(t, out.p + start, (int)(out.len - start - 1));
    ASSERT(ref && json_object_is_type(ref, json_type_string));
    /* Our writer escapes nothing above U+001F: no surrogate escapes here. */
    ASSERT((size_t)json_object_get_string_len(ref) == slen &&
           memcmp(json_object_get_string(ref), s, slen) == 0);
    json_object_put(ref);
    json_tokener_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader(data, size);
    writer(data, size);
    return 0;
}
