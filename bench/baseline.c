/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xraptor-bench-baseline: the floor xraptor is measured against. A raw TCP
 * echo server on the same libevent loop and bufferevents, with the least
 * framing that still has message boundaries: a 4-byte big-endian length,
 * then the bytes. No WebSocket, no TLS, no JSON.
 *   xraptor-bench-baseline [--listen HOST:PORT]   (default 127.0.0.1:0)
 * Prints "listening on tcp://HOST:PORT" on standard error.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev), *out = bufferevent_get_output(bev);
    for (;;) {
        uint8_t h[4];
        if (evbuffer_copyout(in, h, 4) < 4)
            return;
        size_t n = ((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
        if (evbuffer_get_length(in) < 4 + n)
            return;
        /* Whole message, moved (not copied) to the output like an echo. */
        evbuffer_remove_buffer(in, out, 4 + n);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what, (void)arg;
    bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l, (void)sa, (void)salen;
    struct event_base *base = arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
    bufferevent_enable(bev, EV_READ);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what;
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else {
            fprintf(stderr, "usage: xraptor-bench-baseline [--listen HOST:PORT]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    struct sockaddr_in ss;
    int sl = sizeof ss;
    char host[64];
    const char *colon = strrchr(listen, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    memset(&ss, 0, sizeof ss);
    ss.sin_family = AF_INET;
    if (!colon || (size_t)(colon - listen) >= sizeof host || *end || port < 0 || port > 65535 ||
        (snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen),
         evutil_inet_pton(AF_INET, host, &ss.sin_addr) != 1)) {
        fprintf(stderr, "xraptor-bench-baseline: --listen: '%s' is not IPv4:PORT\n", listen);
        return 2;
    }
    ss.sin_port = htons((uint16_t)port);
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    struct evconnlistener *l = base ? evconnlistener_new_bind(base, on_accept, base,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024, (struct sockaddr *)&ss, sl) : NULL;
    if (!l) {
        fprintf(stderr, "xraptor-bench-baseline: cannot listen on %s\n", listen);
        return 1;
    }
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &len);
    evutil_inet_ntop(AF_INET, &sin.sin_addr, host, sizeof host);
    fprintf(stderr, "listening on tcp://%s:%d\n", host, ntohs(sin.sin_port));
    struct event *t = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *i = evsignal_new(base, SIGINT, on_signal, base);
    evsignal_add(t, NULL);
    evsignal_add(i, NULL);
    event_base_dispatch(base);
    event_free(t);
    event_free(i);
    evconnlistener_free(l);
    event_base_free(base);
    return 0;
}
