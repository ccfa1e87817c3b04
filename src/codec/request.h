/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The X-raptor wire format (docs/ARCHITECTURE.md section 1): request JSON in, response JSON
 * out. Pure: the caller owns the tokener and the output buffer; nothing here
 * touches a socket.
 */
#ifndef XR_CODEC_REQUEST_H
#define XR_CODEC_REQUEST_H

#include <stddef.h>

#include "codec/jsonf.h"
#include "util/buf.h"
#include "xraptor.h"

#define XR_WIRE_MAX_HEADERS 32

typedef struct xr_wire_header {
    const char *name, *value;    /* NUL-terminated, in store; value NULL: not a string */
    size_t name_len, value_len;
} xr_wire_header;

/*
 * A parsed request. The strings are unescaped and NUL-terminated in store,
 * which keeps its memory from request to request: parsing a request into a
 * reused xr_wire_request allocates nothing once store is large enough.
 */
/* ---- the members of a JSON object (xr_payload_*, xr_header_*) ---------- */

/* A member's type is an xr_json_type (xraptor.h). */

typedef struct xr_json_member {
    size_t name_off, name_len;   /* NUL-terminated in the store */
    size_t raw_off, raw_len;     /* the value's JSON text in the indexed text */
    size_t str_off, str_len;     /* a string, unescaped in the store while indexing */
    int type;
} xr_json_member;

/*
 * The top-level members of one JSON object text, indexed when first asked
 * for and kept until reset: the store holds a copy of the text, where names
 * and string values without escapes end with a NUL in place of their
 * closing quote, and the others unescaped after it; pointers into it stay
 * valid until the next reset; a reused xr_json_fields allocates nothing
 * once large enough.
 */
typedef struct xr_json_fields {
    xr_buf store;
    xr_json_member *m;
    size_t n, cap;
    const char *json;            /* the text (not owned) */
    size_t len;
    int state;                   /* 0 not indexed, 1 indexed, or XR_EJSON / XR_ENOMEM */
} xr_json_fields;

/* Sets the text to read; nothing is parsed yet. */
void xr_json_fields_reset(xr_json_fields *f, const char *json, size_t len);
/* The member called name (the last one when repeated, as Python's json
 * keeps), NULL when missing; *state is XR_EJSON when the text is not one
 * strict JSON object (XR_ENOMEM when memory ran out), else 1. */
xr_json_member *xr_json_fields_get(xr_json_fields *f, const char *name, size_t nlen, int *state);
/* A member's name (name_len bytes; not NUL-terminated). */
static inline const char *xr_json_member_name(const xr_json_fields *f, const xr_json_member *m)
{
    return f->store.p + m->name_off;
}
/* A string member unescaped (NUL-terminated, in the store); XR_ETYPE if not a string. */
int xr_json_member_str(xr_json_fields *f, xr_json_member *m, const char **s, size_t *len);
/* The string member called name: 1 and its text, 0 when missing (or the
 * text is not an object), XR_ETYPE when it is not a string. */
int xr_json_fields_str(xr_json_fields *f, const char *name, const char **s, size_t *len);
/* Numbers in the "C" locale: XR_ETYPE when not a number (for _int: not an
 * integer that fits). */
int xr_json_member_int(const xr_json_fields *f, const xr_json_member *m, long long *v);
int xr_json_member_double(const xr_json_fields *f, const xr_json_member *m, double *v);
void xr_json_fields_free(xr_json_fields *f);

/* The strings of a JSON array text (["a", "b"]), unescaped and
 * NUL-terminated in store at offs[k] (lens[k] bytes): XR_OK and *n, or
 * XR_EJSON (not one array), XR_ETYPE (an item is not a string), XR_ELIMIT
 * (more than cap), XR_ENOMEM. */
int xr_json_array_strings(const char *json, size_t len, xr_buf *store, size_t *offs,
                          size_t *lens, size_t cap, size_t *n);
/* 1 when text is one strict JSON value (any type), else 0. */
int xr_json_valid(const char *json, size_t len);
/* The items of a JSON array text, any type, checked: each one's JSON text
 * at json + offs[k], lens[k] bytes. XR_OK and *n, or XR_EJSON, XR_ELIMIT
 * (more than cap), XR_ENOMEM. store is scratch. */
int xr_json_array_items(const char *json, size_t len, xr_buf *store, size_t *offs, size_t *lens,
                        size_t cap, size_t *n);

typedef struct xr_wire_request {
    xr_buf store;
    const char *id;              /* NULL when it could not be read */
    size_t id_len;
    const char *route;
    size_t route_len;
    const char *payload;
    size_t payload_len;
    size_t n_headers;            /* the "header" object's string members */
    xr_wire_header headers[XR_WIRE_MAX_HEADERS];
    const char *header_json;     /* the whole "header" object, any member type */
    size_t header_json_len;
    unsigned method;             /* one XR_GET..XR_UNSUB bit */
} xr_wire_request;

/* Method names as on the wire (upper case) and their bits. */
unsigned xr_wire_method(const char *name, size_t len);
const char *xr_wire_method_name(unsigned method);

/*
 * Parses one request: strict JSON (RFC 8259), one object, members in any
 * order, unknown members skipped, the last of repeated members kept.
 * Returns 0, or -1 with a message saying exactly what is wrong in err;
 * r->id is set when the id could be read. r may be reused without freeing.
 */
int xr_wire_parse(const char *data, size_t len, xr_wire_request *r,
                   char *err, size_t errlen);
/* The value of a header, or NULL. */
const char *xr_wire_header_get(const xr_wire_request *r, const char *name);
/* Frees the store; r may be parsed into again. */
void xr_wire_request_free(xr_wire_request *r);

/*
 * Appends a response: {"request_id":…,"payload":…,"header":{…},"method":…}.
 * header_json is a JSON object text ("{}" when NULL). The head ends inside
 * the payload string and the tail closes it, so a payload can be written
 * escaped between them (xr_buf_jsonf_escaped_v).
 */
int xr_wire_response_head(xr_buf *out, const char *id, size_t id_len);
int xr_wire_response_tail(xr_buf *out, const char *header_json, unsigned method);
int xr_wire_response(xr_buf *out, const char *id, size_t id_len,
                      const char *payload, size_t payload_len,
                      const char *header_json, unsigned method);

#endif
