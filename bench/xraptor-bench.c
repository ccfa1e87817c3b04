/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xraptor-bench: a load generator for WebSocket servers, on libevent, one
 * process, many connections. The client side is done as a browser would:
 * every frame masked with a fresh key, handshake accept key checked, TLS
 * when the URL says wss://, permessage-deflate when asked.
 *
 *   xraptor-bench SCENARIO --url URL [flags]
 *
 * Scenarios: echo, tcp (the length-prefixed baseline), route, chat, fanout,
 * connections, handshakes. See --help and BENCHMARKS.md.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

/* The project's own codec, handshake and deflate helpers (libxrcore). */
#include "codec/deflate.h"
#include "codec/http.h"
#include "codec/ws_frame.h"

typedef enum { SC_ECHO, SC_TCP, SC_ROUTE, SC_FANOUT, SC_CONNECTIONS, SC_HANDSHAKES, SC_CHAT } scenario;
static const char *const sc_names[] = {"echo", "tcp", "route", "fanout", "connections", "handshakes",
                                       "chat"};
#define N_SCENARIOS (sizeof sc_names / sizeof sc_names[0])

/* connections: opened before RSS is first read, and not counted. */
#define XR_BENCH_WARM 16

typedef struct cfg {
    scenario sc;
    char host[256];
    int port, tls, tcp;
    char path[1024];    /* with a query: a token for --jwt-key servers */
    int conns;          /* connections (fanout: subscribers) */
    size_t size;        /* message payload bytes */
    int pipeline;       /* messages in flight per connection */
    double duration, warmup;
    int json, compression;
    long pid;           /* server pid, for RSS (connections) */
    int concurrency;    /* handshakes in flight */
    int mode;           /* fanout: FM_CHANNEL, FM_ROOM or FM_PEER */
} cfg;

/* fanout: one channel every subscriber SUBscribes; a room each subscriber
 * joins with a channel of its own; or a peer that subscribes every
 * connection itself on open (the uWebSockets pub/sub peer), so subscribers
 * send nothing and the publisher's text is delivered as it is. */
enum { FM_CHANNEL, FM_ROOM, FM_PEER };
static const char *const fm_names[] = {"channel", "room", "peer"};

/* ---- latency histogram: log2 buckets with 16 linear steps each --------- */

#define H_SUB 16
#define H_BUCKETS (64 * H_SUB)

typedef struct hist {
    uint64_t n[H_BUCKETS];
    uint64_t count;
} hist;

static unsigned h_index(uint64_t v)
{
    if (v < H_SUB)
        return (unsigned)v;
    unsigned msb = 63 - (unsigned)__builtin_clzll(v);
    unsigned sub = (unsigned)(v >> (msb - 4)) & (H_SUB - 1);
    return (msb - 3) * H_SUB + sub;
}

static uint64_t h_value(unsigned i)
{
    if (i < H_SUB)
        return i;
    unsigned msb = i / H_SUB + 3, sub = i % H_SUB;
    uint64_t lo = ((uint64_t)(H_SUB + sub)) << (msb - 4);
    return lo + ((uint64_t)1 << (msb - 4)) / 2;    /* middle of the bucket */
}

static void h_add(hist *h, uint64_t ns)
{
    h->n[h_index(ns)]++;
    h->count++;
}

static double h_pct(const hist *h, double p)
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)ceil(p * (double)h->count), seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->n[i];
        if (seen >= want && h->n[i])
            return (double)h_value(i) / 1000.0;
    }
    return 0;
}

/* ---- state -------------------------------------------------------------- */

enum { PH_WARMUP, PH_MEASURE, PH_DONE };
enum { ROLE_CLIENT, ROLE_SUBSCRIBER, ROLE_PUBLISHER };
enum { CS_CONNECTING, CS_UPGRADING, CS_OPEN, CS_CLOSED };

#define RING 1024

struct bench;

typedef struct conn {
    struct bench *b;
    struct bufferevent *bev;
    int state, role, deflate;
    int inflight;
    unsigned head, tail;
    xr_ws_decoder dec;      /* server frames: unmasked */
    uint64_t sent[RING];
    char key[25];
} conn;

typedef struct bench {
    cfg c;
    struct event_base *base;
    SSL_CTX *ssl;
    conn **conns;
    int n_conns, n_open, n_failed, n_started;
    int phase;
    uint64_t t0, t_measure, t_end;
    uint64_t msgs, bytes, errors, pubs_sent, pubs_acked, deliveries_total;
    uint64_t handshakes;
    hist lat;
    uint8_t *payload;       /* what each message carries, unmasked */
    size_t payload_len;
    xr_buf zpayload;        /* the same, deflated, when compressing */
    z_stream *inflater;
    xr_buf inflated;
    uint32_t rng;
    long rss_before, rss_after;
    conn *publisher;
    struct event *tick, *settle;
    char error[256];
} bench;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t rnd(bench *b)
{
    /* xorshift32: mask keys need to vary, not to be secret, on loopback. */
    uint32_t x = b->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return b->rng = x;
}

__attribute__((format(printf, 2, 3), noreturn))
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("xraptor-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static long rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    fclose(f);
    return v;
}

/* ---- sending ------------------------------------------------------------ */

/* One client frame: FIN, opcode (| XR_WS_RSV1), fresh mask, payload. */
static void send_frame(conn *c, unsigned op, const uint8_t *p, size_t n)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct evbuffer_iovec v;
    uint32_t m = rnd(c->b);
    uint8_t h[XR_WS_MAX_HEADER];
    size_t hl = xr_ws_header(h, op, 1, n, (const uint8_t *)&m);
    if (evbuffer_reserve_space(out, (ev_ssize_t)(hl + n), &v, 1) < 1)
        return;
    uint8_t *o = v.iov_base;
    memcpy(o, h, hl);
    memcpy(o + hl, p, n);
    xr_ws_mask(o + hl, n, (const uint8_t *)&m, 0);
    v.iov_len = hl + n;
    evbuffer_commit_space(out, &v, 1);
}

static void send_message(conn *c)
{
    bench *b = c->b;
    if (b->c.tcp) {
        uint8_t h[4] = {(uint8_t)(b->payload_len >> 24), (uint8_t)(b->payload_len >> 16),
                        (uint8_t)(b->payload_len >> 8), (uint8_t)b->payload_len};
        struct evbuffer *out = bufferevent_get_output(c->bev);
        evbuffer_add(out, h, 4);
        evbuffer_add(out, b->payload, b->payload_len);
    } else if (c->deflate && b->zpayload.len) {
        send_frame(c, XR_WS_RSV1 | XR_WS_OP_BINARY, (const uint8_t *)b->zpayload.p, b->zpayload.len);
    } else {
        send_frame(c, b->c.sc == SC_ECHO ? 0x2 : 0x1, b->payload, b->payload_len);
    }
    c->sent[c->head++ % RING] = now_ns();
    c->inflight++;
}

/* fanout: "fanout <send time ns> <padding>" keeps the latency in the payload. */
static void send_publish(conn *c)
{
    bench *b = c->b;
    char msg[160 + 65536];
    size_t pad = b->c.size > 64 ? b->c.size - 40 : 24;
    if (pad > 65536)
        pad = 65536;
    int n = snprintf(msg, 160, "{\"request_id\":\"p\",\"payload\":\"%s %020" PRIu64 " ",
                     b->c.mode == FM_ROOM ? "fanroom" : "fanout", now_ns());
    memset(msg + n, 'x', pad);
    n += (int)pad;
    n += snprintf(msg + n, 160, "\",\"header\":{},\"route\":\"/publish\",\"method\":\"POST\"}");
    send_frame(c, 0x1, (const uint8_t *)msg, (size_t)n);
    c->inflight++;
    b->pubs_sent++;
}

/* Publishes go in bursts of --pipeline, the next burst once the previous
 * one is acknowledged and its deliveries have arrived: the server sees a
 * burst in one read (as from a busy publisher) and its queues stay bounded,
 * whatever the subscribers' speed. */
static void publish_more(bench *b)
{
    conn *p = b->publisher;
    if (!p || p->state != CS_OPEN || b->phase == PH_DONE || p->inflight)
        return;
    uint64_t subs = (uint64_t)b->n_conns - 1;
    if (b->deliveries_total < b->pubs_sent * subs)
        return;
    for (int i = 0; i < b->c.pipeline; i++)
        send_publish(p);
}

/* ---- receiving ---------------------------------------------------------- */

static void conn_close(conn *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->state == CS_OPEN)
        c->b->n_open--;
    c->state = CS_CLOSED;
}

static void start_one(bench *b, conn *c);

static void fail(conn *c, const char *why)
{
    bench *b = c->b;
    if (b->phase != PH_DONE) {
        b->errors++;
        if (!b->error[0])
            snprintf(b->error, sizeof b->error, "%s", why);
    }
    conn_close(c);
}

static void got_message(conn *c, int rsv1, const uint8_t *p, size_t n)
{
    bench *b = c->b;
    uint64_t t = now_ns();
    if (c->role == ROLE_SUBSCRIBER) {
        b->deliveries_total++;
        /* {"request_id":"<id>","payload":"[<channel> ]<20 digits> ... */
        static const char pre[] = "\"payload\":\"";
        if (b->phase == PH_MEASURE) {
            b->msgs++;
            b->bytes += n;
            const char *q = !rsv1 && n > 64 ? memmem(p, 48, pre, sizeof pre - 1) : NULL;
            if (q) {
                q += sizeof pre - 1;
                if (*q == 'f')      /* the peer delivers the post as it was sent */
                    q = memchr(q, ' ', 16);
                uint64_t sent = q ? strtoull(q + (*q == ' '), NULL, 10) : 0;
                if (sent && sent <= t)
                    h_add(&b->lat, t - sent);
            }
        }
        publish_more(b);
        return;
    }
    if (c->role == ROLE_PUBLISHER) {
        c->inflight--;
        b->pubs_acked++;
        publish_more(b);
        return;
    }
    if (rsv1) {
        /* Inflate what came back, as a real client must, and check it. */
        b->inflated.len = 0;
        int r = xr_zinflate(b->inflater, p, n, b->payload_len, 1, &b->inflated);
        if (r != XR_Z_OK && r != XR_Z_TOO_BIG) {
            fail(c, "server sent corrupt compressed data");
            return;
        }
        n = r == XR_Z_OK ? b->inflated.len : b->payload_len + 1;
    }
    if (b->c.sc == SC_ECHO && n != b->payload_len) {
        fail(c, "echo came back with a different length");
        return;
    }
    c->inflight--;
    if (b->phase == PH_MEASURE) {
        b->msgs++;
        b->bytes += n;
        h_add(&b->lat, t - c->sent[c->tail % RING]);
    }
    c->tail++;
    if (b->phase != PH_DONE)
        send_message(c);
}

static void read_frames(conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 2 || c->state != CS_OPEN)
            return;
        if (c->b->c.tcp) {
            uint8_t h[4];
            evbuffer_copyout(in, h, 4);
            if (avail < 4)
                return;
            size_t n = ((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
            if (avail < 4 + n)
                return;
            evbuffer_drain(in, 4);
            if (n != c->b->payload_len) {
                fail(c, "tcp echo came back with a different length");
                return;
            }
            evbuffer_drain(in, n);
            got_message(c, 0, NULL, n);
            continue;
        }
        /* The server's frames through the library's own decoder (client
         * side: unmasked frames, UTF-8 of text checked): decoded where they
         * lie when the first chunk holds them, else pulled up. */
        size_t n = evbuffer_get_contiguous_space(in);
        if (n < XR_WS_MAX_HEADER)
            n = avail < XR_WS_MAX_HEADER ? avail : XR_WS_MAX_HEADER;
        uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
        xr_ws_frame f;
        xr_ws_status st = xr_ws_decode(&c->dec, p, n, &f);
        if (st == XR_WS_NEED_MORE) {
            if (f.size > avail)
                return;
            p = evbuffer_pullup(in, (ev_ssize_t)f.size);
            st = xr_ws_decode(&c->dec, p, f.size, &f);
        }
        if (st == XR_WS_ERROR) {
            fail(c, f.error);
            return;
        }
        if (f.opcode == XR_WS_OP_CLOSE) {
            fail(c, "server closed the connection");
            return;
        }
        if (f.opcode == XR_WS_OP_PING || f.opcode == XR_WS_OP_PONG) {
            evbuffer_drain(in, f.size);
            continue;
        }
        if (!f.fin || f.opcode == XR_WS_OP_CONT) {
            fail(c, "fragmented server message (not expected here)");
            return;
        }
        got_message(c, f.compressed, f.payload, (size_t)f.len);
        if (!c->bev)
            return;
        evbuffer_drain(in, f.size);
    }
}

static void open_done(conn *c);

static void read_upgrade(conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (e.pos < 0) {
        if (evbuffer_get_length(in) > 8192)
            fail(c, "handshake response head too long");
        return;
    }
    size_t hl = (size_t)e.pos + 4;
    char *head = (char *)evbuffer_pullup(in, (ev_ssize_t)hl);
    char saved = head[hl - 1];
    head[hl - 1] = '\0';
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        char why[160];
        snprintf(why, sizeof why, "upgrade refused: %.100s", head);
        *strchr(why, '\r') = '\0';
        head[hl - 1] = saved;
        fail(c, why);
        return;
    }
    /* Sec-WebSocket-Accept must be base64(SHA-1(key + GUID)). */
    char want[29];
    xr_ws_accept_key(c->key, strlen(c->key), want);
    const char *acc = strcasestr(head, "\r\nSec-WebSocket-Accept: ");
    int ok = acc && strncmp(acc + 24, want, 28) == 0 && acc[24 + 28] == '\r';
    c->deflate = strcasestr(head, "\r\nSec-WebSocket-Extensions: permessage-deflate") != NULL;
    head[hl - 1] = saved;
    evbuffer_drain(in, hl);
    if (!ok) {
        fail(c, "bad Sec-WebSocket-Accept");
        return;
    }
    /* Client side: server frames are unmasked; limits far above a bench's. */
    xr_ws_decoder_init(&c->dec, (uint64_t)1 << 30, (uint64_t)1 << 30, 0);
    c->dec.rsv1_ok = (uint8_t)c->deflate;
    if (c->b->c.compression && !c->deflate) {
        fail(c, "--compression: the server did not accept permessage-deflate");
        return;
    }
    open_done(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn *c = arg;
    if (c->state == CS_UPGRADING)
        read_upgrade(c);
    if (c->state == CS_OPEN)
        read_frames(c);
}

static void send_upgrade(conn *c)
{
    bench *b = c->b;
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = rnd(b);
        memcpy(raw + i, &r, 4);
    }
    EVP_EncodeBlock((unsigned char *)c->key, raw, 16);
    evbuffer_add_printf(bufferevent_get_output(c->bev),
                        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\n%s\r\n",
                        b->c.path, b->c.host, b->c.port, c->key,
                        b->c.compression ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                           "client_no_context_takeover\r\n" : "");
    c->state = CS_UPGRADING;
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (c->b->c.tcp)
            open_done(c);
        else
            send_upgrade(c);
        return;
    }
    char why[160];
    unsigned long e = c->b->c.tls ? bufferevent_get_openssl_error(c->bev) : 0;
    if (e)
        ERR_error_string_n(e, why, sizeof why);
    else
        snprintf(why, sizeof why, "%s", (what & BEV_EVENT_EOF) ? "server closed the connection"
                                        : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    bench *b = c->b;
    if (c->state < CS_OPEN)
        b->n_failed++;
    fail(c, why);
    if (b->c.sc == SC_CONNECTIONS && b->n_started < b->n_conns)
        start_one(b, b->conns[b->n_started]);
}

static void start_one(bench *b, conn *c)
{
    c->b = b;
    c->state = CS_CONNECTING;
    c->inflight = 0;
    c->head = c->tail = 0;
    b->n_started++;
    if (b->c.tls) {
        SSL *ssl = SSL_new(b->ssl);
        SSL_set_tlsext_host_name(ssl, b->c.host);
        c->bev = bufferevent_openssl_socket_new(b->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
    } else {
        c->bev = bufferevent_socket_new(b->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev)
        die(1, "out of memory");
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)b->c.port);
    if (inet_pton(AF_INET, b->c.host, &sin.sin_addr) != 1)
        die(2, "--url: host must be an IPv4 address (loopback): %s", b->c.host);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sin, sizeof sin) < 0) {
        b->n_failed++;
        fail(c, "connect failed");
    }
}

/* ---- scenarios ---------------------------------------------------------- */

static void measure_start(bench *b)
{
    b->phase = PH_MEASURE;
    b->t_measure = now_ns();
    b->msgs = b->bytes = 0;
    b->handshakes = 0;
    memset(&b->lat, 0, sizeof b->lat);
}

static void open_done(conn *c)
{
    bench *b = c->b;
    c->state = CS_OPEN;
    b->n_open++;
    switch (b->c.sc) {
    case SC_ECHO: case SC_TCP: case SC_ROUTE: case SC_CHAT:
        for (int i = 0; i < b->c.pipeline; i++)
            send_message(c);
        break;
    case SC_FANOUT:
        if (c->role == ROLE_SUBSCRIBER && b->c.mode == FM_CHANNEL) {
            static const char sub[] = "{\"request_id\":\"fanout\",\"payload\":\"\",\"header\":{},"
                                      "\"route\":\"/fanout\",\"method\":\"SUB\"}";
            send_frame(c, 0x1, (const uint8_t *)sub, sizeof sub - 1);
        } else if (c->role == ROLE_SUBSCRIBER && b->c.mode == FM_ROOM) {
            char sub[160];
            int k = snprintf(sub, sizeof sub, "{\"request_id\":\"m%u\",\"payload\":\"\","
                             "\"header\":{},\"route\":\"/room\",\"method\":\"SUB\"}",
                             b->n_open);
            send_frame(c, 0x1, (const uint8_t *)sub, (size_t)k);
        }
        break;
    case SC_CONNECTIONS:
        if (b->n_open == XR_BENCH_WARM && b->rss_before == 0) {
            /* The first connections paid what a process pays once (code
             * paged in, libcrypto's set-up for the handshake's SHA-1, the
             * loop's arrays): count from here, then go a few hundred at
             * a time. */
            b->rss_before = rss_kib(b->c.pid);
            for (int i = 0; i < 256 && b->n_started < b->n_conns; i++)
                start_one(b, b->conns[b->n_started]);
        } else if (b->n_started < b->n_conns && b->n_open > XR_BENCH_WARM) {
            start_one(b, b->conns[b->n_started]);
        }
        break;
    case SC_HANDSHAKES:
        if (b->phase == PH_MEASURE)
            b->handshakes++;
        conn_close(c);
        if (b->phase != PH_DONE)
            start_one(b, c);
        break;
    }
}

static void finish(bench *b)
{
    if (b->phase == PH_DONE)
        return;
    b->t_end = now_ns();
    if (b->phase != PH_MEASURE)
        b->t_measure = b->t_end;
    b->phase = PH_DONE;
    if (b->c.sc == SC_CONNECTIONS && b->c.pid > 0)
        b->rss_after = rss_kib(b->c.pid);
    event_base_loopexit(b->base, NULL);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    bench *b = arg;
    uint64_t t = now_ns();
    double el = (double)(t - b->t0) / 1e9;
    if (b->c.sc == SC_CONNECTIONS) {
        if (isatty(2))
            fprintf(stderr, "\r[connections] %d/%d open, %d failed   ", b->n_open, b->n_conns,
                    b->n_failed);
        if (b->n_open + b->n_failed >= b->n_conns && b->phase == PH_WARMUP) {
            measure_start(b);   /* all open: let the server settle a second */
        } else if (b->phase == PH_MEASURE && t - b->t_measure >= 1000000000u) {
            finish(b);
        } else if (el > b->c.duration + 120) {
            snprintf(b->error, sizeof b->error, "only %d of %d connections opened in time",
                     b->n_open, b->n_conns);
            finish(b);
        }
        return;
    }
    /* A run with connections that never opened measures nothing useful. */
    if (b->n_failed && b->c.sc != SC_CONNECTIONS && b->c.sc != SC_HANDSHAKES) {
        finish(b);
        return;
    }
    if (b->c.sc == SC_FANOUT && !b->publisher && b->n_open + b->n_failed >= b->n_conns - 1) {
        /* Every subscriber is in: give the server a moment to register
         * the SUBs, then the publisher starts. */
        conn *p = b->conns[b->n_conns - 1];
        p->role = ROLE_PUBLISHER;
        b->publisher = p;
        start_one(b, p);
        b->t0 = t;
        return;
    }
    if (b->c.sc == SC_FANOUT && b->publisher && b->publisher->state == CS_OPEN && !b->pubs_sent) {
        publish_more(b);
        b->t0 = t;
        return;
    }
    if (b->c.sc == SC_FANOUT && !b->pubs_sent)
        return;
    if (b->phase == PH_WARMUP && el >= b->c.warmup) {
        measure_start(b);
        return;
    }
    if (b->phase == PH_MEASURE) {
        double m = (double)(t - b->t_measure) / 1e9;
        if (isatty(2))
            fprintf(stderr, "\r[%s] %.0f/%.0f s  %.0f %s/s   ", sc_names[b->c.sc], m, b->c.duration,
                    (double)(b->c.sc == SC_HANDSHAKES ? b->handshakes : b->msgs) / (m > 0 ? m : 1),
                    b->c.sc == SC_HANDSHAKES ? "handshakes" : "msg");
        if (m >= b->c.duration)
            finish(b);
    }
    if (b->n_open == 0 && b->phase == PH_MEASURE && b->c.sc != SC_HANDSHAKES) {
        snprintf(b->error + strlen(b->error), sizeof b->error - strlen(b->error),
                 "%sno connection left open", b->error[0] ? "; " : "");
        finish(b);
    }
}

static void report(bench *b)
{
    double secs = (double)(b->t_end - b->t_measure) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    const cfg *c = &b->c;
    double rate = (double)(c->sc == SC_HANDSHAKES ? b->handshakes : b->msgs) / secs;
    double mbs = (double)b->bytes / secs / 1e6;
    double per_conn = -1;
    int counted = b->n_open - XR_BENCH_WARM;
    if (c->sc == SC_CONNECTIONS && b->rss_before > 0 && b->rss_after > 0 && counted > 0)
        per_conn = (double)(b->rss_after - b->rss_before) * 1024.0 / counted;
    if (isatty(2))
        fputc('\n', stderr);
    if (c->json) {
        printf("{\"scenario\":\"%s\",\"url\":\"%s://%s:%d%s\",\"connections\":%d,\"size\":%zu,"
               "\"pipeline\":%d,\"compression\":%s,\"seconds\":%.3f,",
               sc_names[c->sc], c->tcp ? "tcp" : c->tls ? "wss" : "ws", c->host, c->port,
               c->tcp ? "" : c->path, c->conns, c->size, c->pipeline,
               c->compression ? "true" : "false", secs);
        if (c->sc == SC_CONNECTIONS)
            printf("\"open\":%d,\"failed\":%d,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,"
                   "\"bytes_per_connection\":%.0f,", counted > 0 ? counted : 0, b->n_failed, b->rss_before,
                   b->rss_after, per_conn);
        else
            printf("\"count\":%" PRIu64 ",\"per_second\":%.1f,\"mb_per_second\":%.2f,"
                   "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,",
                   c->sc == SC_HANDSHAKES ? b->handshakes : b->msgs, rate, mbs,
                   h_pct(&b->lat, 0.5), h_pct(&b->lat, 0.99), h_pct(&b->lat, 0.999));
        printf("\"errors\":%" PRIu64 ",\"error\":\"", b->errors);
        for (const char *p = b->error; *p; p++)
            if (*p >= 0x20 && *p != '"' && *p != '\\')
                putchar(*p);
        printf("\"}\n");
        return;
    }
    printf("scenario     %s (%s://%s:%d%s)\n", sc_names[c->sc], c->tcp ? "tcp" : c->tls ? "wss" : "ws",
           c->host, c->port, c->tcp ? "" : c->path);
    if (c->sc == SC_CONNECTIONS) {
        printf("connections  %d open, %d failed (and %d opened first, not counted)\n",
               b->n_open > XR_BENCH_WARM ? b->n_open - XR_BENCH_WARM : 0, b->n_failed,
               XR_BENCH_WARM);
        printf("server RSS   %ld KiB -> %ld KiB: %.0f bytes per connection\n", b->rss_before,
               b->rss_after, per_conn);
    } else {
        printf("load         %d connections, %zu-byte messages, %d in flight each%s\n", c->conns,
               c->size, c->pipeline, c->compression ? ", permessage-deflate" : "");
        printf("measured     %.2f s after %.1f s warm-up\n", secs, c->warmup);
        if (c->sc == SC_HANDSHAKES)
            printf("rate         %.0f handshakes/s\n", rate);
        else
            printf("rate         %.0f %s/s, %.1f MB/s\n", rate,
                   c->sc == SC_FANOUT ? "deliveries" : "msgs", mbs);
        if (c->sc != SC_HANDSHAKES)
            printf("latency      p50 %.1f us, p99 %.1f us, p99.9 %.1f us\n", h_pct(&b->lat, 0.5),
                   h_pct(&b->lat, 0.99), h_pct(&b->lat, 0.999));
    }
    if (b->errors)
        printf("errors       %" PRIu64 " (first: %s)\n", b->errors, b->error);
}

/* ---- command line ------------------------------------------------------- */

static void usage(FILE *out)
{
    fputs("Usage: xraptor-bench SCENARIO --url URL [flags]\n\n"
          "Scenarios:\n"
          "  echo         messages echoed by xraptor-echo: msgs/s, MB/s, latency\n"
          "  tcp          the same against xraptor-bench-baseline (tcp://, length-prefixed)\n"
          "  route        X-raptor POST /echo requests (xraptor-bench-server): req/s, latency\n"
          "  chat         xraptor-chat's POST /send_message_to_chat_room: the payload's three\n"
          "               fields read, a message published, an answer: req/s, latency\n"
          "  fanout       --connections subscribers, one publisher (xraptor-bench-server):\n"
          "               deliveries/s, publish-to-receive latency; --mode says how\n"
          "  connections  open --connections idle connections, report the server's RSS\n"
          "               growth per connection (needs --pid)\n"
          "  handshakes   new (TLS +) WebSocket connections per second\n\n"
          "Flags:\n"
          "  --url URL          ws://IP:PORT/PATH, wss://… or tcp://IP:PORT (loopback IPv4)\n"
          "  --connections N    connections, or subscribers for fanout (100)\n"
          "  --size BYTES       message payload size (64)\n"
          "  --pipeline N       messages in flight per connection (16; max 1024)\n"
          "  --duration SECS    measured time (10)\n"
          "  --warmup SECS      unmeasured time first (1)\n"
          "  --concurrency N    handshakes in flight (32)\n"
          "  --compression      offer permessage-deflate and send compressed (echo)\n"
          "  --mode MODE        fanout: channel (every subscriber SUBs one request_id,\n"
          "                     default), room (each joins room \"fanroom\" with its own\n"
          "                     request_id: SUB /room), peer (subscribers send nothing:\n"
          "                     a server that subscribes on open, e.g. uWebSockets)\n"
          "  --pid PID          the server's pid (connections: RSS from /proc)\n"
          "  --json             one JSON object instead of the table\n"
          "  --help             this text\n"
          "TLS certificates are not verified: this is a loopback load tool.\n", out);
}

static double num(const char *flag, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi))
        die(2, "%s: '%s' is not a number from %g to %g", flag, v, lo, hi);
    return d;
}

static void parse_url(cfg *c, const char *url)
{
    const char *p;
    if (strncmp(url, "ws://", 5) == 0) {
        p = url + 5;
    } else if (strncmp(url, "wss://", 6) == 0) {
        p = url + 6;
        c->tls = 1;
    } else if (strncmp(url, "tcp://", 6) == 0) {
        p = url + 6;
        c->tcp = 1;
    } else {
        die(2, "--url: '%s' must start with ws://, wss:// or tcp://", url);
    }
    const char *colon = strchr(p, ':');
    if (!colon || (size_t)(colon - p) >= sizeof c->host)
        die(2, "--url: '%s' needs HOST:PORT", url);
    memcpy(c->host, p, (size_t)(colon - p));
    c->host[colon - p] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (port < 1 || port > 65535 || (*end && *end != '/'))
        die(2, "--url: bad port in '%s'", url);
    c->port = (int)port;
    snprintf(c->path, sizeof c->path, "%s", *end ? end : "/");
}

int main(int argc, char **argv)
{
    static bench bb;
    bench *b = &bb;
    cfg *c = &b->c;
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    int sc = -1;
    for (size_t k = 0; k < N_SCENARIOS; k++)
        if (strcmp(argv[1], sc_names[k]) == 0)
            sc = (int)k;
    if (sc < 0)
        die(2, "unknown scenario '%s' (echo, tcp, route, chat, fanout, connections, handshakes)",
            argv[1]);
    c->sc = (scenario)sc;
    c->conns = 100;
    c->size = 64;
    c->pipeline = 16;
    c->duration = 10;
    c->warmup = 1;
    c->concurrency = 32;
    const char *url = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VAL() do { if (!v) die(2, "%s needs a value", a); i++; } while (0)
        if (strcmp(a, "--url") == 0) { VAL(); url = v; }
        else if (strcmp(a, "--connections") == 0) { VAL(); c->conns = (int)num(a, v, 1, 200000); }
        else if (strcmp(a, "--size") == 0) { VAL(); c->size = (size_t)num(a, v, 1, 16 << 20); }
        else if (strcmp(a, "--pipeline") == 0) { VAL(); c->pipeline = (int)num(a, v, 1, RING); }
        else if (strcmp(a, "--duration") == 0) { VAL(); c->duration = num(a, v, 0.1, 3600); }
        else if (strcmp(a, "--warmup") == 0) { VAL(); c->warmup = num(a, v, 0, 600); }
        else if (strcmp(a, "--concurrency") == 0) { VAL(); c->concurrency = (int)num(a, v, 1, 10000); }
        else if (strcmp(a, "--pid") == 0) { VAL(); c->pid = (long)num(a, v, 1, 1e9); }
        else if (strcmp(a, "--compression") == 0) c->compression = 1;
        else if (strcmp(a, "--mode") == 0) {
            VAL();
            c->mode = -1;
            for (int k = 0; k < 3; k++)
                if (strcmp(v, fm_names[k]) == 0)
                    c->mode = k;
            if (c->mode < 0)
                die(2, "--mode: '%s' is not channel, room or peer", v);
        }
        else if (strcmp(a, "--json") == 0) c->json = 1;
        else if (strcmp(a, "--help") == 0) { usage(stdout); return 0; }
        else die(2, "unknown flag '%s' (see --help)", a);
#undef VAL
    }
    if (!url)
        die(2, "--url is required (see --help)");
    parse_url(c, url);
    if (c->tcp != (c->sc == SC_TCP))
        die(2, "the tcp scenario, and only it, takes a tcp:// URL");
    if (c->sc == SC_CONNECTIONS && !c->pid)
        die(2, "connections needs --pid of the server (its RSS is what is measured)");
    if (c->compression && c->sc != SC_ECHO)
        die(2, "--compression applies to the echo scenario");

    /* Enough descriptors for the connections asked for. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    if (RAND_bytes((unsigned char *)&b->rng, sizeof b->rng) != 1 || !b->rng)
        b->rng = 2463534242u;

    /* The message every connection sends. */
    if (c->sc == SC_ROUTE) {
        size_t cap = c->size + 128;
        b->payload = malloc(cap);
        int n = snprintf((char *)b->payload, cap, "{\"request_id\":\"r\",\"payload\":\"");
        memset(b->payload + n, 'x', c->size);
        n += (int)c->size;
        n += snprintf((char *)b->payload + n, cap - (size_t)n,
                      "\",\"header\":{},\"route\":\"/echo\",\"method\":\"POST\"}");
        b->payload_len = (size_t)n;
    } else if (c->sc == SC_CHAT) {
        /* The chat's POST, its message --size bytes, to a room nobody is in:
         * the request path itself, not a fan-out. */
        size_t cap = c->size + 256;
        b->payload = malloc(cap);
        int n = snprintf((char *)b->payload, cap, "{\"request_id\":\"r\",\"payload\":"
                         "\"{\\\"chat_id\\\": \\\"bench\\\", \\\"client_id\\\": \\\"c\\\", "
                         "\\\"message\\\": \\\"");
        memset(b->payload + n, 'x', c->size);
        n += (int)c->size;
        n += snprintf((char *)b->payload + n, cap - (size_t)n,
                      "\\\"}\",\"header\":{},\"route\":\"/send_message_to_chat_room\","
                      "\"method\":\"POST\"}");
        b->payload_len = (size_t)n;
    } else {
        b->payload = malloc(c->size);
        /* Text-like bytes, so compression has something to work with. */
        static const char words[] = "the quick brown fox jumps over the lazy dog 0123456789 ";
        for (size_t i = 0; i < c->size; i++)
            b->payload[i] = (uint8_t)words[(i * 7 + i / 61) % (sizeof words - 1)];
        b->payload_len = c->size;
    }
    if (c->compression) {
        z_stream *z = xr_zdeflate_new(15, 6);
        b->inflater = xr_zinflate_new(15);
        if (!z || !b->inflater || xr_zdeflate(z, b->payload, b->payload_len, NULL, 0,
                                              &b->zpayload) != XR_Z_OK)
            die(1, "cannot set up zlib");
        xr_zdeflate_free(z);
    }
    if (c->tls) {
        b->ssl = SSL_CTX_new(TLS_client_method());
        if (!b->ssl)
            die(1, "cannot create a TLS context");
        SSL_CTX_set_verify(b->ssl, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(b->ssl, SSL_MODE_RELEASE_BUFFERS);
    }
    b->base = event_base_new();
    if (!b->base)
        die(1, "cannot create the event loop");

    int n = c->sc == SC_FANOUT        ? c->conns + 1
            : c->sc == SC_HANDSHAKES  ? c->concurrency
            : c->sc == SC_CONNECTIONS ? c->conns + XR_BENCH_WARM
                                      : c->conns;
    b->n_conns = n;
    b->conns = calloc((size_t)n, sizeof *b->conns);
    for (int i = 0; i < n; i++) {
        b->conns[i] = calloc(1, sizeof(conn));
        b->conns[i]->role = c->sc == SC_FANOUT ? ROLE_SUBSCRIBER : ROLE_CLIENT;
    }
    if (c->sc == SC_CONNECTIONS && rss_kib(c->pid) < 0)
        die(1, "cannot read /proc/%ld/status: is --pid the server's?", c->pid);
    b->t0 = now_ns();
    /* The fanout publisher is the last connection, started once every
     * subscriber is in; connections go a few hundred at a time. */
    int first = c->sc == SC_FANOUT ? n - 1 : c->sc == SC_CONNECTIONS ? XR_BENCH_WARM : n;
    for (int i = 0; i < first; i++)
        start_one(b, b->conns[i]);
    struct timeval tick = {0, 100000};
    b->tick = event_new(b->base, -1, EV_PERSIST, on_tick, b);
    event_add(b->tick, &tick);
    event_base_dispatch(b->base);
    report(b);
    int bad = b->errors > 0 || b->error[0] ||
              (c->sc != SC_CONNECTIONS && (c->sc == SC_HANDSHAKES ? b->handshakes : b->msgs) == 0);
    for (int i = 0; i < n; i++) {
        conn_close(b->conns[i]);
        free(b->conns[i]);
    }
    free(b->conns);
    event_free(b->tick);
    event_base_free(b->base);
    if (b->ssl)
        SSL_CTX_free(b->ssl);
    if (c->compression) {
        xr_zinflate_free(b->inflater);
        xr_buf_free(&b->inflated);
        xr_buf_free(&b->zpayload);
    }
    free(b->payload);
    return bad ? 1 : 0;
}
