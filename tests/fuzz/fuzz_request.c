/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the X-raptor request parser and the response writer.
 * Invariants: an accepted request has one method bit and its strings; an
 * error has a message; json-c in strict mode accepts every request we accept
 * and reads the same id, route, payload, method and header values from it
 * (the last of repeated names wins in both; a header whose last value is
 * not a string has no string value); the response
 * written for it parses back (json-c) to the same request_id, payload and
 * method: escaping is exact. The request is reused from input to input, as
 * the server reuses them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "codec/request.h"
#include "jsonc_quirk.h"
#include "xraptor.h"

#define MAX_DEPTH_REF 128

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

/* Set per input: json-c's strings cannot be the reference (jsonc_quirk.h). */
static int quirky;

static int same(json_object *o, const char *key, const char *s, size_t n)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) &&
           (quirky || ((size_t)json_object_get_string_len(v) == n &&
                       memcmp(json_object_get_string(v), s, n) == 0));
}

/* The last header of that name (as xr_wire_header_get finds it), or NULL. */
static const xr_wire_header *header(const xr_wire_request *r, const char *name, size_t n)
{
    for (size_t k = r->n_headers; k-- > 0;)
        if (r->headers[k].name_len == n && memcmp(r->headers[k].name, name, n) == 0)
            return &r->headers[k];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static xr_wire_request r;
    char err[160] = "";
    int rc = xr_wire_parse((const char *)data, size, &r, err, sizeof err);
    if (rc < 0) {
        ASSERT(err[0]);
        return 0;
    }
    quirky = jsonc_quirky(data, size);
    unsigned m = r.method;
    ASSERT(m && (m & (m - 1)) == 0 && m <= XR_UNSUB);
    ASSERT(r.id && r.route && r.payload && r.n_headers <= XR_WIRE_MAX_HEADERS);
    ASSERT(r.route[r.route_len] == '\0' && r.id[r.id_len] == '\0');
    /* A reference reading: json-c, strict. */
    json_tokener *strict = json_tokener_new_ex(MAX_DEPTH_REF);
    json_tokener_set_flags(strict, JSON_TOKENER_STRICT);
    json_object *ref = size <= 0x7fffffff
                       ? json_tokener_parse_ex(strict, (const char *)data, (int)size) : NULL;
    ASSERT(ref && json_object_is_type(ref, json_type_object));
    ASSERT(same(ref, "request_id", r.id, r.id_len));
    ASSERT(same(ref, "route", r.route, r.route_len));
    ASSERT(same(ref, "payload", r.payload, r.payload_len));
    json_object *jm, *jh;
    ASSERT(json_object_object_get_ex(ref, "method", &jm) && json_object_is_type(jm, json_type_string));
    ASSERT(strcasecmp(json_object_get_string(jm), xr_wire_method_name(m)) == 0);
    /* Names with a NUL cannot be looked up by json-c's C-string keys. */
    int plain_names = 1;
    for (size_t k = 0; k < r.n_headers; k++)
        plain_names &= strlen(r.headers[k].name) == r.headers[k].name_len;
    /* With the json-c quirk its header names may differ from ours too. */
    if (!quirky && json_object_object_get_ex(ref, "header", &jh) && plain_names) {
        ASSERT(json_object_is_type(jh, json_type_object));
        size_t distinct = 0;
        json_object_object_foreach(jh, key, val) {
            const xr_wire_header *h = header(&r, key, strlen(key));
            ASSERT(h && xr_wire_header_get(&r, key) == h->value);
            if (!json_object_is_type(val, json_type_string)) {
                ASSERT(!h->value);  /* the last is not a string: no string value */
                distinct++;
                continue;
            }
            ASSERT(h->value && (quirky ||
                                ((size_t)json_object_get_string_len(val) == h->value_len &&
                                 memcmp(json_object_get_string(val), h->value, h->value_len) == 0)));
            distinct++;
        }
        /* Every name we read is one json-c has (duplicates counted once). */
        for (size_t k = 0; k < r.n_headers; k++) {
            json_object *v;
            ASSERT(json_object_object_get_ex(jh, r.headers[k].name, &v));
        }
        ASSERT(distinct <= r.n_headers);
    }
    json_object_put(ref);
    json_tokener_free(strict);
    xr_buf out = {0};
    ASSERT(xr_wire_response(&out, r.id, r.id_len, r.payload, r.payload_len, NULL, m) == 0);
    json_tokener *t2 = json_tokener_new();
    json_object *back = json_tokener_parse_ex(t2, out.p, (int)out.len);
    ASSERT(back && json_tokener_get_error(t2) == json_tokener_success);
    ASSERT(same(back, "request_id", r.id, r.id_len));
    ASSERT(same(back, "payload", r.payload, r.payload_len));
    ASSERT(same(back, "method", xr_wire_method_name(m), strlen(xr_wire_method_name(m))));
    json_object_put(back);
    json_tokener_free(t2);
    xr_buf_free(&out);
    return 0;
}
