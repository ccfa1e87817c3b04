/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.1 request-head parser and the WebSocket opening handshake
 * (RFC 7230 section 3, RFC 6455 section 4.2). Pure functions over bytes: the
 * parsed request points into the caller's buffer; nothing is allocated.
 */
#ifndef XR_HTTP_H
#define XR_HTTP_H

#include <stddef.h>

#define XR_HTTP_MAX_HEADERS 48

typedef struct xr_http_header {
    const char *name;
    size_t name_len;
    const char *value;       /* without surrounding whitespace */
    size_t value_len;
} xr_http_header;

typedef struct xr_http_request {
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    int minor;               /* HTTP/1.<minor> */
    size_t n_headers;
    xr_http_header headers[XR_HTTP_MAX_HEADERS];
    const char *body;        /* a body the layer above asked for, else NULL */
    size_t body_len;
    int api;                 /* came to the API's own address (the transport sets it) */
} xr_http_request;

typedef struct xr_http_error {
    int status;              /* the HTTP status to answer with */
    const char *reason;      /* static text saying what is wrong */
} xr_http_error;

/*
 * Parses the request head at the start of buf (request line, headers, empty
 * line; CRLF line ends only). Returns the head's length when complete, 0 when
 * more bytes are needed (the caller enforces its size limit), or XR_EINVAL with err
 * set. Line folding, bare LF, control bytes and malformed tokens are errors.
 */
long xr_http_parse(const char *buf, size_t len, xr_http_request *req,
                   xr_http_error *err);

/* The first header of that name (case-insensitive), or NULL. */
const xr_http_header *xr_http_find(const xr_http_request *req, const char *name);

/* Whether a comma-separated header value lists token (case-insensitive). */
int xr_http_has_token(const char *value, size_t len, const char *token);

/* Content-Length: its value, XR_ENOENT when absent, XR_EINVAL when not
 * one plain decimal number (repeated, signed, spaced, over 2^31). */
long xr_http_content_length(const xr_http_request *req);

/* The path of the target without its query, as a length. */
size_t xr_http_path_len(const xr_http_request *req);

/* What to do with a parsed request. */
typedef enum {
    XR_HTTP_UPGRADE,         /* valid WebSocket upgrade: answer 101 */
    XR_HTTP_PLAIN,           /* ordinary request: route it by path */
    XR_HTTP_REJECT           /* answer err.status with err.reason */
} xr_http_kind;

typedef struct xr_ws_handshake {
    char accept[29];         /* Sec-WebSocket-Accept, NUL-terminated */
    const char *protocol;    /* chosen subprotocol (one of ours), or NULL */
} xr_ws_handshake;

/*
 * Classifies a request and, for an upgrade, validates it: GET, HTTP/1.1,
 * Host, Upgrade: websocket, Connection: upgrade, a 16-byte base64 key and
 * Sec-WebSocket-Version 13 (else 426). If origins is non-empty the Origin
 * header must equal one of them (403). The first of our subprotocols that
 * the client offers is chosen. A request with a body is refused (400).
 */
xr_http_kind xr_http_classify(const xr_http_request *req,
                              const char *const *subprotocols, size_t n_sub,
                              const char *const *origins, size_t n_origins,
                              xr_ws_handshake *hs, xr_http_error *err);

/* The longest response xr_pmd_negotiate() writes, with its NUL: every
 * parameter, two-digit windows. */
#define XR_PMD_RESPONSE_MAX 136

/* permessage-deflate (RFC 7692) as agreed for one connection. */
typedef struct xr_pmd {
    unsigned char server_bits;   /* our LZ77 window: 9..15, or 8 = we never
                                  * compress (zlib cannot make 256-byte windows) */
    unsigned char client_bits;   /* the client's window: our inflater's */
    unsigned char client_no_context; /* the client resets its compressor per message */
} xr_pmd;

/*
 * Picks the first permessage-deflate offer among the request's
 * Sec-WebSocket-Extensions headers that we can accept (RFC 7692 section 7):
 * an offer with an unknown or repeated parameter or a bad value is declined
 * and the next one tried. window_bits (9..15) caps the client's window when
 * it lets us choose; require_no_context asks the client to reset its context
 * per message. We always compress each message on its own and say so with
 * server_no_context_takeover. Returns 1 and writes the response header value
 * (NUL-terminated) to resp, or 0 when nothing is accepted (or resp is too
 * small; XR_PMD_RESPONSE_MAX bytes always suffice).
 */
int xr_pmd_negotiate(const xr_http_request *req, unsigned window_bits,
                     int require_no_context, xr_pmd *out, char *resp, size_t cap);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)). */
void xr_ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif
