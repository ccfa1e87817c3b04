/* libFuzzer: the X-raptor request parser and the response writer.
 * Invariants: an accepted request has one method bit and its strings; an
 * error has a message; the response written for it parses back (json-c) to
 * the same request_id, payload and method: escaping is exact. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/protocol.h"
#include "xraptor.h"

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

static int same(json_object *o, const char *key, const char *s, size_t n)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) &&
           (size_t)json_object_get_string_len(v) == n && memcmp(json_object_get_string(v), s, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_tokener *tok;
    if (!tok)
        tok = json_tokener_new_ex(32);
    xr_proto_request r;
    char err[160];
    int rc = xr_proto_parse(tok, (const char *)data, size, &r, err, sizeof err);
    if (rc < 0) {
        ASSERT(err[0]);
        xr_proto_request_free(&r);
        return 0;
    }
    unsigned m = r.method;
    ASSERT(m && (m & (m - 1)) == 0 && m <= XR_UNSUB);
    ASSERT(r.id && r.route && r.payload && r.header);
    xr_buf out = {0};
    ASSERT(xr_proto_response(&out, r.id, r.id_len, r.payload, r.payload_len, NULL, m) == 0);
    json_tokener *t2 = json_tokener_new();
    json_object *back = json_tokener_parse_ex(t2, out.p, (int)out.len);
    ASSERT(back && json_tokener_get_error(t2) == json_tokener_success);
    ASSERT(same(back, "request_id", r.id, r.id_len));
    ASSERT(same(back, "payload", r.payload, r.payload_len));
    ASSERT(same(back, "method", xr_proto_method_name(m), strlen(xr_proto_method_name(m))));
    json_object_put(back);
    json_tokener_free(t2);
    xr_buf_free(&out);
    xr_proto_request_free(&r);
    return 0;
}
