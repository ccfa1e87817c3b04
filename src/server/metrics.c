/* SPDX-License-Identifier: Apache-2.0 */
#include "server/server.h"

#include <stdio.h>
#include <stdarg.h>
#include <string.h>

#include <inttypes.h>
#include <unistd.h>

#include "codec/request.h"
#include "util/clock.h"

static double uptime(const xr_server *srv)
{
    return (double)(xr_now_ms() - srv->started_ms) / 1000.0;
}

static void metric(xr_buf *out, const char *name, const char *type,
                   const char *help, uint64_t v)
{
    xr_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n",
                        name, help, name, type, name, v);
}

#define MAX_PARTS 64

/* A Prometheus label value: backslash, quote and newline escaped. */
static void label(xr_buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            xr_buf_printf(out, "\\%c", *v);
        else if (*v == '\n')
            xr_buf_add(out, "\\n", 2);
        else
            xr_buf_add(out, v, 1);
    }
}

/* Per part of the broker (a Redis Cluster's shards): one series each. */
static void part_metrics(const xr_server *srv, xr_buf *out)
{
    xr_proto_part parts[MAX_PARTS];
    size_t n = xr_proto_antenna_parts(srv->proto, parts, MAX_PARTS);
    static const struct {
        const char *name, *type, *help;
    } m[6] = {
        {"xraptor_antenna_part_up", "gauge", "1 while this part of the broker (a shard) is connected."},
        {"xraptor_antenna_part_channels", "gauge", "This node's channels held on the part."},
        {"xraptor_antenna_part_publishes_total", "counter", "Messages posted to the part."},
        {"xraptor_antenna_part_publish_errors_total", "counter",
         "Posts the part refused or lost with its connection."},
        {"xraptor_antenna_part_messages_total", "counter", "Messages received from the part."},
        {"xraptor_antenna_part_reconnects_total", "counter", "Times the part's connection came back."},
    };
    for (int k = 0; k < 6 && n; k++) {
        xr_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name, m[k].type);
        for (size_t i = 0; i < n; i++) {
            const xr_proto_part *p = &parts[i];
            uint64_t v = k == 0 ? (uint64_t)p->up : k == 1 ? p->channels : k == 2 ? p->published
                       : k == 3 ? p->publish_errors : k == 4 ? p->received : p->reconnects;
            xr_buf_printf(out, "%s{part=\"", m[k].name);
            label(out, p->name);
            xr_buf_printf(out, "\"} %" PRIu64 "\n", v);
        }
    }
}

/* Names and types of the Python X-raptor are kept so its dashboards work. */
void xr_metrics_write(const xr_server *srv, xr_buf *out)
{
    const xr_transport_stats *m = xr_transport_stats_get(srv->t);
    const xr_proto_stats *ps = xr_proto_stats_get(srv->proto);
    metric(out, "xraptor_connections_total", "counter",
           "WebSocket connections opened since start.", m->connections_total);
    metric(out, "xraptor_connections_active", "gauge",
           "WebSocket connections open now.", m->n_open);
    metric(out, "xraptor_connections_pending", "gauge",
           "Sockets still in the TLS or HTTP handshake.", m->n_pending);
    metric(out, "xraptor_tcp_accepted_total", "counter",
           "Sockets accepted on all listeners.", m->tcp_accepted_total);
    metric(out, "xraptor_handshake_failures_total", "counter",
           "Upgrade requests refused or handshakes that timed out or broke.",
           m->handshake_failures_total);
    metric(out, "xraptor_connections_refused_total", "counter",
           "Upgrades refused with 503 because max_connections was reached.",
           m->refused_total);
    metric(out, "xraptor_connections_refused_per_ip_total", "counter",
           "Sockets closed at accept because their address had max_connections_per_ip.",
           m->refused_per_ip_total);
    metric(out, "xraptor_connections_refused_rate_total", "counter",
           "Sockets closed at accept because their address opened more than "
           "rate_limit_connections a second.",
           m->refused_rate_total);
    metric(out, "xraptor_connections_refused_auth_total", "counter",
           "Upgrades refused 401 for a missing or invalid token (--jwt-key).",
           m->refused_auth_total);
    metric(out, "xraptor_connections_expired_total", "counter",
           "Connections closed 4001 when their token ended without a fresh one.",
           m->expired_total);
    metric(out, "xraptor_connections_rate_untracked_total", "counter",
           "Sockets let in untracked: every slot their address could use was busy.",
           m->rate_untracked_total);
    metric(out, "xraptor_http_requests_total", "counter",
           "Plain HTTP requests answered (health, metrics, errors).",
           m->http_requests_total);
    metric(out, "xraptor_messages_received_total", "counter",
           "Whole WebSocket messages received.", m->messages_in);
    metric(out, "xraptor_messages_sent_total", "counter",
           "Whole WebSocket messages sent.", m->messages_out);
    metric(out, "xraptor_received_bytes_total", "counter",
           "Payload bytes of messages received.", m->bytes_in);
    metric(out, "xraptor_sent_bytes_total", "counter",
           "Payload bytes of messages sent.", m->bytes_out);
    metric(out, "xraptor_pings_sent_total", "counter",
           "Keepalive pings sent to silent clients.", m->pings_sent);
    metric(out, "xraptor_ping_timeouts_total", "counter",
           "Connections closed because a pong did not come.", m->ping_timeouts);
    metric(out, "xraptor_slow_reader_closes_total", "counter",
           "Connections closed because their output exceeded max_output_buffer.",
           m->slow_reader_closes);
    if (srv->opts.compression) {
        metric(out, "xraptor_deflate_messages_received_total", "counter",
               "Compressed messages received and inflated.", m->z_in);
        metric(out, "xraptor_deflate_messages_sent_total", "counter",
               "Messages sent compressed.", m->z_out);
        metric(out, "xraptor_deflate_sent_raw_bytes_total", "counter",
               "Payload bytes of the messages sent compressed, before compression.",
               m->z_raw_out);
        metric(out, "xraptor_deflate_sent_wire_bytes_total", "counter",
               "Payload bytes of the messages sent compressed, as sent.", m->z_wire_out);
        metric(out, "xraptor_deflate_errors_total", "counter",
               "Connections failed for corrupt or oversized compressed input.", m->z_errors);
        metric(out, "xraptor_deflate_compressions_total", "counter",
               "Times the compressor ran; a fan-out compresses its message once.", m->z_runs);
    }
    xr_buf_printf(out,
                        "# HELP xraptor_closes_total WebSocket connections closed, by close code.\n"
                        "# TYPE xraptor_closes_total counter\n");
    for (int k = 0; k < XR_CLOSE_SLOTS; k++) {
        if (!m->closes[k])
            continue;
        if (k == XR_CLOSE_SLOTS - 1)
            xr_buf_printf(out, "xraptor_closes_total{code=\"other\"} %" PRIu64 "\n",
                                m->closes[k]);
        else
            xr_buf_printf(out, "xraptor_closes_total{code=\"%d\"} %" PRIu64 "\n",
                                1000 + k, m->closes[k]);
    }
    static const char *const mnames[6] = {"GET", "POST", "PUT", "SUB", "UNSUB", "unknown"};
    static const char *const onames[4] = {"ok", "not_registered", "fail", "bad_request"};
    uint64_t total = 0, errors = 0;
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 4; k++) {
            total += ps->requests[i][k];
            if (k >= XR_OUT_FAIL)
                errors += ps->requests[i][k];
        }
    metric(out, "xraptor_requests_total", "counter", "X-raptor requests received.", total);
    metric(out, "xraptor_request_errors_total", "counter",
           "Requests answered with fail or bad_request.", errors);
    xr_buf_printf(out, "# HELP xraptor_requests_by_outcome_total Requests by method and outcome.\n"
                             "# TYPE xraptor_requests_by_outcome_total counter\n");
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 4; k++)
            if (ps->requests[i][k])
                xr_buf_printf(out, "xraptor_requests_by_outcome_total{method=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
                                    mnames[i], onames[k], ps->requests[i][k]);
    int up;
    const char *scheme = xr_proto_antenna(srv->proto, &up);
    xr_buf_printf(out,
        "# HELP xraptor_channels Channels with receivers on this node.\n"
        "# TYPE xraptor_channels gauge\nxraptor_channels %zu\n"
        "# HELP xraptor_rooms Rooms open on this node.\n"
        "# TYPE xraptor_rooms gauge\nxraptor_rooms %zu\n"
        "# HELP xraptor_antenna_connected 1 while the broker connection is up.\n"
        "# TYPE xraptor_antenna_connected gauge\nxraptor_antenna_connected %d\n",
        xr_proto_channels(srv->proto), xr_proto_rooms(srv->proto), scheme ? up : 0);
    metric(out, "xraptor_antenna_publishes_total", "counter", "Messages posted to the antenna.",
           ps->publishes);
    metric(out, "xraptor_antenna_publish_errors_total", "counter",
           "Posts the antenna refused.", ps->publish_errors);
    metric(out, "xraptor_antenna_messages_total", "counter",
           "Messages received from the antenna.", ps->antenna_messages);
    metric(out, "xraptor_deliveries_total", "counter", "Channel messages sent to clients.",
           ps->deliveries);
    metric(out, "xraptor_antenna_reconnects_total", "counter",
           "Times the broker connection came back.", ps->antenna_reconnects);
    metric(out, "xraptor_room_members_pruned_total", "counter",
           "Room members removed for no longer listening.", ps->room_pruned);
    metric(out, "xraptor_history_gaps_repaired_total", "counter",
           "Holes in the antenna's live stream of a channel with history filled from the history.",
           ps->gaps_repaired);
    metric(out, "xraptor_history_gaps_unrepaired_total", "counter",
           "Holes in the antenna's live stream the history no longer covered (clients see the jump).",
           ps->gaps_unrepaired);
    metric(out, "xraptor_requests_forbidden_total", "counter",
           "Requests answered forbidden: a channel, room or publish the token does not grant.",
           ps->forbidden);
    metric(out, "xraptor_requests_rate_limited_total", "counter",
           "Requests answered rate_limited (--rate-limit, --rate-limit-bytes).",
           ps->rate_limited);
    metric(out, "xraptor_rate_limit_closes_total", "counter",
           "Connections closed 1008 for refused requests past --rate-limit-strikes.",
           ps->rate_limit_closes);
    part_metrics(srv, out);
    /* With --workers each answer covers one worker: this says which. */
    xr_buf_printf(out, "# HELP xraptor_worker_info The process that answered: worker number "
                             "(0 without --workers) and pid.\n"
                             "# TYPE xraptor_worker_info gauge\n"
                             "xraptor_worker_info{worker=\"%u\",pid=\"%ld\"} 1\n",
                        srv->worker, (long)getpid());
    xr_buf_printf(out, "# HELP xraptor_uptime_seconds Seconds since the server started.\n"
                             "# TYPE xraptor_uptime_seconds gauge\n"
                             "xraptor_uptime_seconds %.3f\n", uptime(srv));
}

/* A superset of the Python X-raptor's /health, so its probes keep working. */
void xr_health_write(const xr_server *srv, xr_buf *out, int *status)
{
    /* A raw-layer server has no antenna, so none can be down. */
    int up;
    const char *scheme = xr_proto_antenna(srv->proto, &up);
    int antenna_down = scheme && !up;
    xr_proto_part parts[MAX_PARTS];
    size_t n_parts = xr_proto_antenna_parts(srv->proto, parts, MAX_PARTS), parts_down = 0;
    for (size_t i = 0; i < n_parts; i++)
        parts_down += !parts[i].up;
    /* No "draining" state: a graceful stop closes the listeners and every
     * plain-HTTP connection first, so no health check reaches a draining
     * server; it is refused at connect, which probes read as down. */
    /* Some shards down, some up: still serving (200), but said. */
    const char *state = antenna_down ? "antenna_down" : parts_down ? "degraded" : "ok";
    const xr_transport_stats *m = xr_transport_stats_get(srv->t);
    *status = antenna_down ? 503 : 200;
    char detail[256];
    size_t dlen = xr_proto_antenna_detail(srv->proto, detail, sizeof detail);
    xr_buf_printf(out,
                  "{\"status\":\"%s\",\"uptime_seconds\":%.3f,"
                  "\"active_connections\":%zu,\"pending_connections\":%zu,"
                  "\"antenna\":{\"scheme\":\"%s\",\"connected\":%s",
                  state, uptime(srv), m->n_open, m->n_pending, scheme ? scheme : "",
                  scheme && up ? "true" : "false");
    if (dlen) {
        xr_buf_add(out, ",\"detail\":\"", 11);
        xr_buf_json_escaped(out, detail, dlen);
        xr_buf_add(out, "\"", 1);
    }
    if (n_parts) {
        xr_buf_add(out, ",\"parts\":[", 10);
        for (size_t i = 0; i < n_parts; i++) {
            const xr_proto_part *p = &parts[i];
            xr_buf_add(out, i ? ",{\"name\":\"" : "{\"name\":\"", i ? 10 : 9);
            xr_buf_json_escaped(out, p->name, strlen(p->name));
            xr_buf_printf(out, "\",\"up\":%s,\"channels\":%zu,\"published\":%" PRIu64
                          ",\"publish_errors\":%" PRIu64 ",\"received\":%" PRIu64
                          ",\"reconnects\":%" PRIu64 "}",
                          p->up ? "true" : "false", p->channels, p->published,
                          p->publish_errors, p->received, p->reconnects);
        }
        xr_buf_add(out, "]", 1);
    }
    xr_buf_printf(out, "},\"worker\":%u,\"workers\":%u,\"pid\":%ld,\"version\":\"%s\"}\n",
                  srv->worker, srv->opts.workers, (long)getpid(), xr_version());
}
