/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xraptor — real-time WebSocket servers: fast as a WebSocket, easy as HTTP.
 *
 * This is the whole application API. Types are opaque; every *_new has a
 * *_free; functions that can fail return 0 or a negative XR_E* code (or
 * NULL with a message in a caller-supplied buffer), and xr_strerror() turns
 * a code into words. The library never writes to stdout and never exits.
 *
 * One event loop per server, one thread: every callback below runs on the
 * loop that xr_server_run() drives, and every xr_* function taking a server
 * or connection must be called from that thread.
 *
 * Sends only queue. xr_conn_send(), xr_reply(), xr_publish() and
 * xr_conn_close() never write to a socket and never call the application
 * back: what a callback queued for a connection is written once that
 * callback (or the loop's current batch of callbacks) ends, and a close
 * they cause (a slow reader, an explicit close) runs on_close from the
 * loop afterwards, never from inside the call that caused it.
 */
#ifndef XRAPTOR_H
#define XRAPTOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; what is declared here is
 * its whole exported interface. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

struct event_base;

/* ---- errors: XR_OK and the negative XR_E* codes ------------------------ */

#include <xraptor/errors.h>

const char *xr_strerror(int err);
/* Library version, e.g. "0.1.0". */
const char *xr_version(void);

/* ---- options ---------------------------------------------------------- */

typedef enum { XR_LOG_ERROR, XR_LOG_WARN, XR_LOG_INFO, XR_LOG_DEBUG } xr_log_level;
typedef enum { XR_LOG_TEXT, XR_LOG_JSON } xr_log_format;

#define XR_MAX_LISTENERS 16
#define XR_MAX_LIST 16
#define XR_MAX_WORKERS 256
#define XR_MAX_NAME 1024        /* the most --max-name-length allows */

/*
 * Server options. xr_options_init() fills in every default; the strings are
 * borrowed until xr_server_new() returns (the server copies what it keeps).
 * Sizes are bytes, times are milliseconds; 0 disables a timer.
 *
 * The struct grows at its end from one release to the next without
 * breaking built programs: xr_options_init() records in `size` how large
 * the struct was when the program was compiled, and the library reads
 * only that much (members added since keep their defaults). So always
 * start from xr_options_init(), never from memset or an initializer.
 */
typedef struct xr_options {
    size_t size;                 /* set by xr_options_init(); do not touch */

    /* "HOST:PORT", "[v6]:PORT" or ":PORT"; a "ws://" or "wss://" prefix
     * forces plain or TLS, otherwise TLS is used when tls_cert is set.
     * Default: one listener on 127.0.0.1:8765. */
    const char *listen[XR_MAX_LISTENERS];
    size_t n_listen;

    const char *tls_cert;        /* PEM certificate chain */
    const char *tls_key;         /* PEM private key */
    const char *tls_ciphers;     /* TLS <= 1.2 cipher list (OpenSSL syntax) */

    size_t max_message_size;     /* whole message after reassembly: 1 MiB */
    size_t max_frame_size;       /* one frame; 0 = max_message_size */
    size_t max_output_buffer;    /* queued output per connection: 4 MiB */
    size_t max_header_size;      /* HTTP request head: 8 KiB */
    unsigned max_connections;    /* open WebSocket connections: 10000 */
    unsigned max_connections_per_ip; /* sockets from one address; 0: no limit */

    unsigned handshake_timeout_ms; /* TLS + HTTP upgrade must finish: 10 s */
    unsigned ping_interval_ms;     /* ping after this much silence: 20 s */
    unsigned ping_timeout_ms;      /* close if no pong by then: 20 s */
    unsigned close_timeout_ms;     /* wait for the peer's close frame: 5 s */
    unsigned drain_timeout_ms;     /* graceful shutdown limit: 10 s */

    xr_log_level log_level;      /* XR_LOG_INFO */
    xr_log_format log_format;    /* XR_LOG_TEXT */

    /* Subprotocols we speak, in order of preference; none by default. */
    const char *subprotocols[XR_MAX_LIST];
    size_t n_subprotocols;
    /* If any are set, an upgrade's Origin must equal one of them (403). */
    const char *allowed_origins[XR_MAX_LIST];
    size_t n_allowed_origins;

    const char *health_path;     /* "/health"; NULL or "" disables */
    const char *metrics_path;    /* "/metrics"; NULL or "" disables */

    /* Broker behind channels: "memory://" (default), "redis://host:6379",
     * … or a path to a module .so. Modules are looked up in antenna_dir
     * (default: the installed $(libdir)/xraptor, or $XRAPTOR_ANTENNA_PATH). */
    const char *antenna;
    const char *antenna_dir;
    /* Plain GET/HEAD of files under these directories, searched in order
     * ("/" serves index.html); none by default. */
    const char *static_dirs[XR_MAX_LIST];
    size_t n_static_dirs;
    unsigned room_check_ms;      /* prune dead room members every 7 s */

    /* permessage-deflate (RFC 7692), off by default. Outgoing messages are
     * compressed each on its own (server_no_context_takeover), so the
     * compressor is shared by the whole process; a client that keeps its
     * context costs one inflater: about 2^window_bits + 7 KiB. */
    int compression;
    size_t compression_min_size;       /* smaller messages go out plain: 128 */
    unsigned compression_window_bits;  /* cap on the client's window, 9..15: 12 */
    unsigned compression_level;        /* zlib level 1..9: 6 */
    int compression_no_context;        /* require client_no_context_takeover:
                                        * no inflate state per connection */

    /* Processes serving the listeners (SO_REUSEPORT), each with its own
     * loop, under a supervising parent: 1 (default) is no fork at all.
     * Channels then reach across processes only through a broker antenna,
     * so the protocol layer refuses memory:// with more than one. */
    unsigned workers;

    /* What one peer can make the server hold (SECURITY.md lists each).
     * Names of channels (a SUB's request_id), rooms and members are 1 to
     * max_name_length bytes of UTF-8 without control characters; others
     * are refused with an error answer (xr_publish, xr_room_join:
     * XR_EINVAL). */
    unsigned max_name_length;        /* 256 bytes, at most 1024 */
    unsigned max_channels_per_conn;  /* SUBs one connection holds: 128 */
    unsigned max_rooms_per_member;   /* rooms one member is in: 128 */
    unsigned max_pending_requests;   /* one connection's requests still in
                                      * handlers (xr_request_ref): 64 */
    /* Requests one connection may make, off (0) by default: rate_limit a
     * second with bursts of rate_limit_burst (0: rate_limit), and
     * rate_limit_bytes of request text a second (a second's worth at
     * once). A request over either is answered with header {"error":
     * "rate_limited", "retry_after": SECONDS} and not handled; refused
     * requests that pile up past rate_limit_strikes (0: ten bursts; they
     * drain at rate_limit a second, or one a second) close the connection
     * with 1008. */
    unsigned rate_limit;
    unsigned rate_limit_burst;
    size_t rate_limit_bytes;
    unsigned rate_limit_strikes;
    /* New connections one client address may open a second, in the whole
     * server (every worker), bursts of rate_limit_connections_burst (0:
     * the rate); beyond, a socket is closed at accept, before any TLS
     * handshake. 0 (the default): no limit. At most 16000. */
    unsigned rate_limit_connections;
    unsigned rate_limit_connections_burst;
    /* Connection tokens (JWT, RFC 7519). With any key, a WebSocket upgrade
     * must carry a token (query parameter "token", or "Authorization:
     * Bearer") signed by one of them, or is answered 401. A key is a file:
     * an HMAC secret (its bytes, one trailing newline dropped, at least 32)
     * or a PEM public key (RSA of 2048 bits or more, EC P-256 or P-384,
     * Ed25519), "KID=FILE" to give it the id a token's "kid" picks;
     * SIGHUP reads them again. exp and nbf hold with jwt_leeway_ms either
     * side; aud and iss must match when set; sub is the connection's user
     * (xr_conn_user). A connection whose token expires is closed with 4001
     * jwt_grace_ms later unless a fresh token for the same sub came first
     * (PUT /xraptor/token, payload {"token": "..."}). */
    const char *jwt_keys[XR_MAX_LIST];
    size_t n_jwt_keys;
    const char *jwt_audience;
    const char *jwt_issuer;
    unsigned jwt_leeway_ms;          /* 30 s */
    unsigned jwt_grace_ms;           /* 10 s */
    /* The publish API for backends: with a key (a file of 16 to 1024
     * bytes, one trailing newline dropped), POST /api/publish {"channel":
     * C, "data": D} and POST /api/broadcast {"channels": [...], "data": D}
     * publish D (a string as its text, any other JSON as its JSON) like
     * xr_publish(), for callers sending "Authorization: apikey KEY"; an
     * Idempotency-Key header publishes once within
     * api_idempotency_ms. No key: no API. */
    const char *api_key_file;
    unsigned api_idempotency_ms;     /* 60 s */
    /* With api_key_file: the API on this address alone ("HOST:PORT",
     * http:// or https://), never on the WebSocket listeners; nothing but
     * the API and /health is served there. NULL: the API shares them. */
    const char *api_listen;
    /* Presence (see xr_room_join_as): kept for every room with presence
     * set, else for rooms matching a presence_rooms pattern ('*' any run
     * of bytes). A user's last connection gone, the leave waits
     * presence_grace_ms for it to come back; a node that stops (killed)
     * loses its members everywhere within presence_ttl_ms. The info an
     * application gives a member is JSON of at most presence_max_info
     * bytes. Needs an antenna with presence (memory://, redis://,
     * redis-cluster://). */
    int presence;
    const char *presence_rooms[XR_MAX_LIST];
    size_t n_presence_rooms;
    unsigned presence_grace_ms;      /* 3 s */
    unsigned presence_ttl_ms;        /* 30 s */
    size_t presence_max_info;        /* 1 KiB */
    /* History (see xr_history_enable): channels and rooms keep their
     * newest history_size messages for history_ttl_ms (both 0: off, the
     * default; both or neither), or per pattern: history_rooms entries are
     * "PATTERN SIZE SECS". A SUB whose header carries "since" gets what it
     * missed, at most history_max_recover messages, else recovered false. */
    unsigned history_size;
    unsigned history_ttl_ms;
    const char *history_rooms[XR_MAX_LIST];
    size_t n_history_rooms;
    unsigned history_max_recover;    /* 1000 */
    /* New members go here, at the end. */
} xr_options;

void xr_options_init_size(xr_options *opts, size_t size);
#define xr_options_init(opts) xr_options_init_size((opts), sizeof(xr_options))

/* Return values of xr_options_parse() besides XR_OK and XR_EUSAGE. */
#define XR_OPTIONS_HELP 1
#define XR_OPTIONS_VERSION 2

/*
 * Parses the common flags (see xr_options_usage()) from argv[1..argc-1] into
 * opts, which must have been initialised. Returns XR_OK, XR_OPTIONS_HELP,
 * XR_OPTIONS_VERSION, or XR_EUSAGE with a message naming the flag in err.
 * Strings in opts then point into argv.
 */
int xr_options_parse(xr_options *opts, int argc, char **argv, char *err, size_t errlen);

/* Writes the flag reference to out (for --help). */
void xr_options_usage(FILE *out, const char *prog);

/*
 * The usual main(): parse, and on --help/--version/bad flag print to
 * stdout/stderr. Returns XR_GO_ON to go on, or the exit status the program
 * should return now (0 after help or version, 2 after a bad flag or any
 * other failure): it never returns an XR_E* code.
 */
#define XR_GO_ON (-1)
int xr_options_from_args(xr_options *opts, int argc, char **argv,
                         const char *prog, const char *summary);

/* ---- server ----------------------------------------------------------- */

typedef struct xr_server xr_server;
typedef struct xr_conn xr_conn;

typedef enum { XR_TEXT = 1, XR_BINARY = 2 } xr_msg_type;

/* Close codes the library itself uses (RFC 6455 section 7.4.1). */
enum {
    XR_CLOSE_NORMAL = 1000,
    XR_CLOSE_GOING_AWAY = 1001,
    XR_CLOSE_PROTOCOL_ERROR = 1002,
    XR_CLOSE_UNSUPPORTED = 1003,
    XR_CLOSE_NO_STATUS = 1005,     /* reported to on_close, never sent */
    XR_CLOSE_ABNORMAL = 1006,      /* reported to on_close, never sent */
    XR_CLOSE_INVALID_DATA = 1007,
    XR_CLOSE_POLICY = 1008,
    XR_CLOSE_TOO_BIG = 1009,
    XR_CLOSE_INTERNAL = 1011,
    XR_CLOSE_TRY_AGAIN = 1013
};

/*
 * The raw layer: for programs that speak their own message format. Any
 * callback may be NULL. data passed to on_message is valid only during the
 * call. on_close runs once for every connection that on_open saw, with the
 * close code sent or received (or 1005/1006), always from the loop (never
 * inside an xr_* call of yours); after it sends fail with XR_ECLOSED, and
 * the xr_conn is freed once the close handshake is over. With on_message
 * set every message goes to it and routes never run: xr_server_run()
 * refuses (XR_EUSAGE) a server that has both.
 */
typedef struct xr_handlers {
    void (*on_open)(xr_conn *conn, void *ud);
    void (*on_message)(xr_conn *conn, xr_msg_type type,
                       const char *data, size_t len, void *ud);
    void (*on_close)(xr_conn *conn, int code,
                     const char *reason, size_t reason_len, void *ud);
} xr_handlers;

/* Creates a server; nothing listens until xr_server_run(). On failure
 * returns NULL and writes why into err. */
xr_server *xr_server_new(const xr_options *opts, char *err, size_t errlen);
void xr_server_free(xr_server *srv);

/* Handlers and their user data (never freed by the library). */
void xr_server_set_handlers(xr_server *srv, const xr_handlers *h, void *ud);

/*
 * Binds every listener and runs the loop until a graceful stop (SIGINT,
 * SIGTERM or xr_server_stop()) has drained. SIGHUP reloads the TLS
 * certificate; SIGPIPE is ignored. Returns 0, or an XR_E* code with the
 * reason in xr_server_error().
 *
 * With workers > 1 the calling process forks them and supervises: it
 * forwards SIGTERM/SIGINT/SIGHUP, restarts a worker that dies, and returns
 * once all have drained. Each worker returns from this call too, when its
 * own loop ends; xr_server_worker() tells them apart. Events added to
 * xr_server_base() before the call live on in every worker.
 */
int xr_server_run(xr_server *srv);

/* 0 in a single-process server and in the supervising parent; 1..N in a
 * worker. */
unsigned xr_server_worker(const xr_server *srv);

/* Starts a graceful stop: listeners close, every client gets close 1001,
 * the loop ends when all have gone or drain_timeout passed. */
void xr_server_stop(xr_server *srv);

/* Loads tls_cert/tls_key again for new connections; live ones keep theirs.
 * On error the old pair stays in use. */
int xr_server_reload_tls(xr_server *srv);

/* The server's event loop, to add timers or other events of your own. */
struct event_base *xr_server_base(xr_server *srv);

/* The message of the last failure of xr_server_run()/reload, or "". */
const char *xr_server_error(const xr_server *srv);

/* Open WebSocket connections right now. */
size_t xr_server_connections(const xr_server *srv);

/* The port the n-th listener is bound to (useful with port 0), or XR_EINVAL. */
int xr_server_port(const xr_server *srv, size_t n);

/* Logs through the server's logger (level and format from the options). */
void xr_server_log(xr_server *srv, xr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Sends the server's log lines (those at --log-level or more important) to
 * fn instead of stderr, as libevent's event_set_log_callback does: msg is
 * one line without a newline, timestamp or level, valid during the call;
 * worker is the worker's number with --workers, else 0. fn runs on the
 * loop's thread (and in each worker process). NULL restores stderr. Lines
 * written before this call (start-up errors of xr_server_new) went to
 * stderr.
 */
typedef void (*xr_log_fn)(xr_log_level level, unsigned worker, const char *msg, void *ud);
void xr_server_set_log(xr_server *srv, xr_log_fn fn, void *ud);

/* ---- the X-raptor protocol --------------------------------------------- */

/*
 * Unless on_message is set (the raw layer), every text message is an
 * X-raptor request {request_id, payload, header, route, method} and gets
 * responses {request_id, payload, header, method} (docs/ARCHITECTURE.md section 1).
 */
typedef enum { XR_GET = 1, XR_POST = 2, XR_PUT = 4, XR_SUB = 8, XR_UNSUB = 16 } xr_method;

typedef struct xr_request xr_request;

/*
 * A route handler. It may answer now (xr_reply), later (xr_request_ref,
 * then xr_reply and xr_request_unref from any later callback), or never.
 * Returning a negative value makes the server answer {"message": "fail"}
 * (unless the handler already replied). For SUB the request_id is already a
 * live channel of this connection when the handler runs; for UNSUB the
 * channel is closed after the handler's answer.
 */
typedef int (*xr_handler)(xr_request *req, void *ud);

/* Registers fn for route and each method bit in methods; one handler per
 * route and method (XR_EEXIST otherwise). */
int xr_route(xr_server *srv, const char *route, unsigned methods, xr_handler fn, void *ud);

/* Middleware results. */
#define XR_NEXT 0  /* go on to the next middleware, then the handler */
#define XR_DONE 1  /* the middleware answered (or drops the request) */

/*
 * Runs fn before the handlers of routes matching regex (POSIX extended,
 * anchored at the start of the route like Python's re.match; NULL for all).
 * Lower priority runs first; priorities are unique (XR_EEXIST). A negative
 * return answers {"message": "fail"}.
 */
typedef int (*xr_middleware_fn)(xr_request *req, void *ud);
int xr_middleware(xr_server *srv, int priority, const char *regex,
                  xr_middleware_fn fn, void *ud);

const char *xr_request_id(const xr_request *req, size_t *len);
const char *xr_request_route(const xr_request *req);
xr_method xr_request_method(const xr_request *req);
const char *xr_request_payload(const xr_request *req, size_t *len);
/* A header whose value is a string, or NULL (other types: xr_header_*). */
const char *xr_request_header(const xr_request *req, const char *name);
/* The connection it came on, or NULL once that has closed. */
xr_conn *xr_request_conn(const xr_request *req);
xr_server *xr_request_server(const xr_request *req);

/*
 * What a connection's token grants (see jwt_keys): its claim
 *   "xraptor": {"channels": [...], "rooms": [...], "publish": [...]}
 * lists patterns ('*' any run of bytes) of the channels a SUB's request_id
 * may name, the rooms xr_room_join may put its channels in, and the
 * channels and rooms xr_publish may post to from a handler of its
 * requests. A list the token leaves out restricts nothing; without auth
 * nothing is restricted. The server checks the three by itself: a SUB to
 * a channel not granted (or to a channel that is already a member of a
 * room not granted) is refused before its handler; xr_room_join and
 * xr_publish return XR_EPERM, and a handler that then fails answers
 * {"error": "forbidden"} instead of "fail". xr_request_allowed asks the
 * same question for a handler's own decisions, and for a publish made
 * after the handler returned (the server's own check knows the request
 * only while its handler runs).
 */
typedef enum { XR_GRANT_CHANNEL = 'C', XR_GRANT_ROOM = 'R', XR_GRANT_PUBLISH = 'P' } xr_grant;
/* 1 when req's connection may use name (len bytes) as kind, else 0 (also
 * once the connection has gone). */
int xr_request_allowed(const xr_request *req, xr_grant kind, const char *name, size_t len);

/* Answers with payload (any text, usually JSON) and the request's id and
 * method. After the client left it does nothing and returns XR_ECLOSED. */
int xr_reply(xr_request *req, const char *payload, size_t len);

/* Keeps a request (and its strings) alive past the handler's return. */
xr_request *xr_request_ref(xr_request *req);
void xr_request_unref(xr_request *req);

/*
 * Reading the payload as JSON, as json.loads(request.payload)["chat_id"]
 * does in Python, without a JSON library. Each call reads one top-level
 * member of the payload object by name (the last one when a name repeats,
 * as Python keeps); the payload is parsed once, on the first call, strictly
 * (RFC 8259, nesting depth 64). The xr_header_* calls read the request's
 * "header" object the same way, whatever the type of its members.
 *
 * Returns XR_OK, XR_ENOENT (no such member), XR_ETYPE (a member of another
 * type; for _int, a number that is not an integer or does not fit),
 * XR_EJSON (the payload is not one JSON object) or XR_ENOMEM; *out is set
 * only on XR_OK. Strings are unescaped (every escape, surrogate pairs
 * joined), NUL-terminated, with their length in *len (may be NULL; a \u0000
 * makes it longer than strlen), valid until the handler returns, or until
 * xr_request_unref when the request is kept. _raw gives any member's JSON
 * text as it is (objects, arrays). Numbers ignore the locale. Once warm
 * none of this allocates.
 */
typedef enum {
    XR_JSON_MISSING = 0, XR_JSON_NULL, XR_JSON_BOOL, XR_JSON_NUMBER, XR_JSON_STRING,
    XR_JSON_ARRAY, XR_JSON_OBJECT
} xr_json_type;

/* The member's xr_json_type (XR_JSON_MISSING when absent), or XR_EJSON. */
int xr_payload_type(xr_request *req, const char *name);
int xr_payload_str(xr_request *req, const char *name, const char **s, size_t *len);
int xr_payload_int(xr_request *req, const char *name, long long *v);
int xr_payload_num(xr_request *req, const char *name, double *v);
int xr_payload_bool(xr_request *req, const char *name, int *v);
int xr_payload_raw(xr_request *req, const char *name, const char **json, size_t *len);
int xr_header_type(xr_request *req, const char *name);
int xr_header_str(xr_request *req, const char *name, const char **s, size_t *len);
int xr_header_int(xr_request *req, const char *name, long long *v);
int xr_header_num(xr_request *req, const char *name, double *v);
int xr_header_bool(xr_request *req, const char *name, int *v);
int xr_header_raw(xr_request *req, const char *name, const char **json, size_t *len);

/*
 * Writing JSON without a JSON library: printf-like, where %Q writes a
 * string quoted and escaped as json.dumps would (quotes, backslashes and
 * control characters escaped, other UTF-8 kept as it is; bytes that are not
 * UTF-8 become U+FFFD, as Python's bytes.decode("utf-8", "replace") does).
 *   %Q     a NUL-terminated string, quoted     %.*Q  an int length, then the string
 *   %s     text inserted as it is (JSON made elsewhere); %.*s with a length
 *   %d %i %u, with l, ll or z                  %g    a double, shortest exact
 *   %b     an int: true or false               %%    a percent sign
 * (%g writes null for NaN and infinities, which JSON lacks.) Any other
 * conversion, a NULL string or a negative length fails with XR_EINVAL and
 * sends nothing. The text is built in a buffer the server reuses.
 *
 *   xr_replyf(req, "{\"origin\": %Q, \"message\": %Q}", client, text);
 */
int xr_replyf(xr_request *req, const char *fmt, ...);
int xr_publishf(xr_server *srv, const char *channel, size_t clen, const char *fmt, ...);
/* The same into buf, as snprintf: at most cap bytes, NUL-terminated when
 * cap > 0, *len set to the whole length (retry with more when >= cap). */
int xr_jsonf(char *buf, size_t cap, size_t *len, const char *fmt, ...);

/* ---- channels and rooms ------------------------------------------------ */

/* Posts msg to a channel through the antenna: every SUB on that channel, on
 * any node, receives it. */
int xr_publish(xr_server *srv, const char *channel, size_t clen,
               const char *msg, size_t mlen);
/* xr_publish to a channel or room with history, and the position the post
 * was given (the offset and epoch its deliveries carry), told to done
 * later, on the loop: XR_OK with it, or XR_EANTENNA when the broker refused
 * the post or lost it with its connection (then nobody received it).
 * Returns XR_OK, XR_EINVAL (a bad name, no done), XR_ESTATE (the name keeps
 * no history, or the antenna cannot tell positions: every shipped one
 * can), XR_EPERM (the acting request's token does not grant it),
 * XR_EANTENNA (the broker is down or too far behind), XR_ENOMEM; done is
 * not called then. */
typedef void (*xr_publish_cb)(int rc, unsigned long long offset, const char *epoch, size_t elen,
                              void *ud);
int xr_publish_at(xr_server *srv, const char *channel, size_t clen, const char *msg, size_t mlen,
                  xr_publish_cb done, void *ud);

/*
 * Rooms (the Python X-raptor's Broadcast): a message posted to the room's
 * channel goes to every member channel. The first join subscribes the room,
 * the last leave unsubscribes it. Members whose channel closes leave all
 * their rooms; members on other nodes that stopped listening are pruned.
 */
int xr_room_join(xr_server *srv, const char *room, const char *member);
int xr_room_leave(xr_server *srv, const char *room, const char *member);
/* Members of a room on this node, or 0. */
size_t xr_room_size(const xr_server *srv, const char *room);

/*
 * Presence (options presence, presence_rooms; xr_presence_enable): a room
 * that keeps it knows its users over every node. xr_room_join_as joins
 * like xr_room_join and counts the member, when its channel is on this
 * node, as a connection of a user: the connection's token user
 * (xr_conn_user) when it has one, else user. info (JSON text of at most
 * presence_max_info, or NULL) is what the room shows of that user. A
 * user's first connection in the room is a join, the end of its last one
 * (after presence_grace_ms, in case it comes back) a leave: delivered to
 * the room's members whose SUB's header asked {"presence": true}, with
 * header {"event": "join"|"leave"} and payload {"user": U, "info": I},
 * and to the callback of xr_server_on_presence. XR_EINVAL when the room
 * keeps presence and there is no user, the user is not a valid name, or
 * info is not JSON or too long; nothing is joined then.
 */
int xr_room_join_as(xr_server *srv, const char *room, const char *member, const char *user,
                    const char *info);
/*
 * History and recovery (options history_*; xr_history_enable): a channel
 * or room with history gives each message a position, an offset that
 * grows by one per message and an epoch that changes whenever the
 * history was lost; its deliveries carry both in their header
 * ({"offset": N, "epoch": "E"}). A SUB whose header has
 * "since": {"offset": N, "epoch": "E"} gets, for the room its handler
 * joined it to (the first with history; else its own channel), one answer
 * with header {"recovered": true|false, "offset": N, "epoch": "E"} (the
 * position now), then every message after since in order if recovered,
 * then the live ones: no gap, no duplicate. Needs an antenna with history
 * (memory://, and redis:// whose history every node shares); with another,
 * the log says so once at start, deliveries carry no position and every
 * recovery is recovered false.
 */
/* Keeps the newest size messages, for ttl_ms, of channels and rooms
 * matching pattern ('*' any run of bytes); the latest call for a name wins
 * over the options. XR_EINVAL (a bad pattern, size or ttl 0), XR_ENOMEM. */
int xr_history_enable(xr_server *srv, const char *pattern, unsigned size, unsigned ttl_ms);
/* The newest limit messages kept for a channel or room, for "load earlier
 * messages", as GET /xraptor/history {"channel": NAME, "limit": N} answers
 * them: {"offset": TOP, "epoch": "E", "messages": [{"offset": N,
 * "payload": "M"}, ...]}, oldest first, TOP the position now. done runs
 * later, on the loop, with XR_OK and the JSON, or XR_EANTENNA (the broker
 * could not answer, or the server is being freed). Returns XR_OK, XR_EINVAL
 * (a bad name, limit 0 or over history_max_recover), XR_ESTATE (the name
 * keeps no history, or the antenna keeps none), XR_ENOMEM. */
typedef void (*xr_history_cb)(int rc, const char *json, size_t len, void *ud);
int xr_history_read(xr_server *srv, const char *name, size_t limit, xr_history_cb done,
                    void *ud);

/* Turns presence on for rooms matching pattern ('*' any run of bytes),
 * before xr_server_run. */
int xr_presence_enable(xr_server *srv, const char *pattern);
/* The room's presence, as GET /xraptor/presence answers it:
 * {"users": N, "connections": M, "members": [{"user": U, "connections": k,
 * "info": I}, ...]} (no "members" unless asked for). done runs later, on the
 * loop, with XR_OK and the JSON, or XR_EINVAL (the room keeps no
 * presence), XR_EANTENNA (the broker could not answer). */
typedef void (*xr_presence_cb)(int rc, const char *json, size_t len, void *ud);
int xr_presence_query(xr_server *srv, const char *room, int members, xr_presence_cb done,
                      void *ud);
/* Every join (joined 1) and leave (0) of a room with members on this node. */
typedef void (*xr_presence_fn)(xr_server *srv, const char *room, const char *user,
                               const char *info, int joined, void *ud);
void xr_server_on_presence(xr_server *srv, xr_presence_fn fn, void *ud);

/* ---- connections ------------------------------------------------------ */

/*
 * Queues one whole message; it is written when the current callback ends.
 * Fails with XR_ECLOSED once the connection is closing, XR_EINVAL for a
 * text message that is not UTF-8, and XR_ELIMIT when the queued output
 * already exceeds max_output_buffer: the slow reader is then closed with
 * 1008 from the loop (its on_close runs after this call has returned).
 */
int xr_conn_send(xr_conn *conn, xr_msg_type type, const void *data, size_t len);

/* Starts the close handshake: queues the close frame; on_close follows
 * from the loop. reason is UTF-8, at most 123 bytes. */
int xr_conn_close(xr_conn *conn, int code, const char *reason);

void xr_conn_set_data(xr_conn *conn, void *data);
void *xr_conn_data(const xr_conn *conn);
xr_server *xr_conn_server(const xr_conn *conn);
/* The negotiated subprotocol, or NULL. */
const char *xr_conn_subprotocol(const xr_conn *conn);
/* The user its connection token named ("sub", see jwt_keys), or NULL. */
const char *xr_conn_user(const xr_conn *conn);
/* The peer's address as "IP:PORT" into buf; returns 0 or XR_EIO. */
int xr_conn_peer(const xr_conn *conn, char *buf, size_t len);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* XRAPTOR_H */
