#include "protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xraptor.h"

int xr_buf_reserve(xr_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > ((size_t)-1) / 2)
            return -1;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int xr_buf_add(xr_buf *b, const void *data, size_t len)
{
    if (xr_buf_reserve(b, len) < 0)
        return -1;
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

void xr_buf_free(xr_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int xr_buf_json_escaped(xr_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX. */
    if (len > ((size_t)-1) / 6 || xr_buf_reserve(b, len * 6) < 0)
        return -1;
    char *o = b->p + b->len;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
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

static const struct { const char *name; unsigned bit; } methods[] = {
    {"GET", XR_GET}, {"POST", XR_POST}, {"PUT", XR_PUT}, {"SUB", XR_SUB}, {"UNSUB", XR_UNSUB},
};

unsigned xr_proto_method(const char *name, size_t len)
{
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++)
        if (strlen(methods[k].name) == len && strncasecmp(methods[k].name, name, len) == 0)
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

/* A required string field; returns 0 or -1 with err set. */
static int string_field(json_object *root, const char *name, const char **s, size_t *len,
                        char *err, size_t errlen)
{
    json_object *v;
    if (!json_object_object_get_ex(root, name, &v)) {
        snprintf(err, errlen, "missing field '%s'", name);
        return -1;
    }
    if (!json_object_is_type(v, json_type_string)) {
        snprintf(err, errlen, "field '%s' must be a string", name);
        return -1;
    }
    *s = json_object_get_string(v);
    *len = (size_t)json_object_get_string_len(v);
    return 0;
}

int xr_proto_parse(json_tokener *tok, const char *data, size_t len,
                   xr_proto_request *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (len > 0x7fffffff) {
        snprintf(err, errlen, "request too large");
        return -1;
    }
    json_tokener_reset(tok);
    r->root = json_tokener_parse_ex(tok, data, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (!r->root || jerr != json_tokener_success) {
        if (r->root) {
            json_object_put(r->root);
            r->root = NULL;
        }
        snprintf(err, errlen, "request is not valid JSON: %s",
                 jerr == json_tokener_continue ? "unexpected end of input"
                                               : json_tokener_error_desc(jerr));
        return -1;
    }
    /* Only white space may follow the object. */
    for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
        if (!strchr(" \t\r\n", data[i])) {
            snprintf(err, errlen, "request is not valid JSON: data after the object");
            return -1;
        }
    if (!json_object_is_type(r->root, json_type_object)) {
        snprintf(err, errlen, "request must be a JSON object");
        return -1;
    }
    if (string_field(r->root, "request_id", &r->id, &r->id_len, err, errlen) < 0) {
        r->id = NULL;
        return -1;
    }
    const char *mname;
    size_t mlen;
    if (string_field(r->root, "route", &r->route, &r->route_len, err, errlen) < 0 ||
        string_field(r->root, "payload", &r->payload, &r->payload_len, err, errlen) < 0 ||
        string_field(r->root, "method", &mname, &mlen, err, errlen) < 0)
        return -1;
    if (!json_object_object_get_ex(r->root, "header", &r->header)) {
        snprintf(err, errlen, "missing field 'header'");
        return -1;
    }
    if (!json_object_is_type(r->header, json_type_object)) {
        snprintf(err, errlen, "field 'header' must be an object");
        return -1;
    }
    json_object_object_foreach(r->header, key, val) {
        if (!json_object_is_type(val, json_type_string)) {
            snprintf(err, errlen, "header '%.40s' must be a string", key);
            return -1;
        }
    }
    r->method = xr_proto_method(mname, mlen);
    if (!r->method) {
        snprintf(err, errlen, "unknown method '%.16s' (expected GET, POST, PUT, SUB or UNSUB)",
                 mname);
        return -1;
    }
    return 0;
}

void xr_proto_request_free(xr_proto_request *r)
{
    if (r->root)
        json_object_put(r->root);
    r->root = NULL;
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
