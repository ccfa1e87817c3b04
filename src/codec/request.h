/*
 * The X-raptor wire format (DESIGN section 1): request JSON in, response JSON
 * out. Pure: the caller owns the tokener and the output buffer; nothing here
 * touches a socket.
 */
#ifndef XR_CODEC_REQUEST_H
#define XR_CODEC_REQUEST_H

#include <stddef.h>

#include "util/buf.h"

/* Appends s as the inside of a JSON string (no quotes). */
int xr_buf_json_escaped(xr_buf *b, const char *s, size_t len);

#define XR_PROTO_MAX_HEADERS 32

typedef struct xr_proto_header {
    const char *name, *value;    /* NUL-terminated, in store */
    size_t name_len, value_len;
} xr_proto_header;

/*
 * A parsed request. The strings are unescaped and NUL-terminated in store,
 * which keeps its memory from request to request: parsing a request into a
 * reused xr_proto_request allocates nothing once store is large enough.
 */
typedef struct xr_proto_request {
    xr_buf store;
    const char *id;              /* NULL when it could not be read */
    size_t id_len;
    const char *route;
    size_t route_len;
    const char *payload;
    size_t payload_len;
    size_t n_headers;            /* the "header" object, all strings */
    xr_proto_header headers[XR_PROTO_MAX_HEADERS];
    unsigned method;             /* one XR_GET..XR_UNSUB bit */
} xr_proto_request;

/* Method names as on the wire (upper case) and their bits. */
unsigned xr_proto_method(const char *name, size_t len);
const char *xr_proto_method_name(unsigned method);

/*
 * Parses one request: strict JSON (RFC 8259), one object, members in any
 * order, unknown members skipped, the last of repeated members kept.
 * Returns 0, or -1 with a message saying exactly what is wrong in err;
 * r->id is set when the id could be read. r may be reused without freeing.
 */
int xr_proto_parse(const char *data, size_t len, xr_proto_request *r,
                   char *err, size_t errlen);
/* The value of a header, or NULL. */
const char *xr_proto_header_get(const xr_proto_request *r, const char *name);
/* Frees the store; r may be parsed into again. */
void xr_proto_request_free(xr_proto_request *r);

/*
 * Appends a response: {"request_id":…,"payload":…,"header":{…},"method":…}.
 * header_json is a JSON object text ("{}" when NULL).
 */
int xr_proto_response(xr_buf *out, const char *id, size_t id_len,
                      const char *payload, size_t payload_len,
                      const char *header_json, unsigned method);

#endif
