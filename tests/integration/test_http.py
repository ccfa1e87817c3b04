# SPDX-License-Identifier: Apache-2.0
"""Plain HTTP on the WebSocket port: /health, /metrics, errors."""
import json

from xrtest import Server, get, http_request, metrics, run, test, ws_open, frame, read_frame


@test
def test_health_reports_status_uptime_and_connections():
    with Server() as srv:
        s = ws_open(srv.port)
        status, headers, body = get(srv.port, "/health")
        assert status == 200, status
        assert headers["content-type"] == "application/json"
        assert int(headers["content-length"]) == len(body)
        h = json.loads(body)
        assert h["status"] == "ok" and h["active_connections"] == 1, h
        assert h["uptime_seconds"] >= 0
        s.close()


@test
def test_metrics_are_prometheus_text_and_move():
    with Server() as srv:
        before = metrics(srv.port)
        for name in ("xraptor_connections_total", "xraptor_connections_active",
                     "xraptor_uptime_seconds", "xraptor_messages_received_total",
                     "xraptor_sent_bytes_total"):
            assert name in before, name
        s = ws_open(srv.port)
        s.sendall(frame(1, "12345"))
        assert read_frame(s) == (True, 1, b"12345")
        after = metrics(srv.port)
        assert after["xraptor_messages_received_total"] == before["xraptor_messages_received_total"] + 1
        assert after["xraptor_received_bytes_total"] == before["xraptor_received_bytes_total"] + 5
        assert after["xraptor_sent_bytes_total"] == before["xraptor_sent_bytes_total"] + 5
        assert after["xraptor_connections_active"] == 1
        status, headers, body = get(srv.port, "/metrics")
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        assert b"# TYPE xraptor_connections_total counter" in body
        s.close()


@test
def test_head_and_query_strings():
    with Server() as srv:
        status, headers, body = get(srv.port, "/health", method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        status, _, body = get(srv.port, "/health?probe=1")
        assert status == 200 and json.loads(body)["status"] == "ok"


@test
def test_other_methods_get_405_and_other_paths_426():
    with Server() as srv:
        status, headers, _ = get(srv.port, "/health", method="DELETE")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        status, headers, _ = get(srv.port, "/")
        assert status == 426 and headers["upgrade"] == "websocket"


@test
def test_paths_are_configurable_and_can_be_disabled():
    with Server("--health-path", "/healthz", "--metrics-path", "") as srv:
        assert get(srv.port, "/healthz")[0] == 200
        assert get(srv.port, "/health")[0] == 426
        assert get(srv.port, "/metrics")[0] == 426


@test
def test_origin_allow_list_refuses_others_with_403():
    from xrtest import upgrade_request
    with Server("--allow-origin", "https://chat.example") as srv:
        status, _, body = http_request(srv.port, upgrade_request(extra="Origin: https://evil.example\r\n"))
        assert status == 403 and b"origin" in body, (status, body)
        status, _, _ = http_request(srv.port, upgrade_request())
        assert status == 403
        for forged in ("https://chat.example.evil.test", "https://chat.exampl", ""):
            status, _, _ = http_request(srv.port, upgrade_request(extra=f"Origin: {forged}\r\n"))
            assert status == 403, (forged, status)
        s = ws_open(srv.port, extra="Origin: https://chat.example\r\n")
        s.close()


@test
def test_oversized_request_head_gets_431():
    with Server("--max-header-size", "1024") as srv:
        raw = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
        status, _, body = http_request(srv.port, raw)
        assert status == 431 and b"max_header_size" in body


if __name__ == "__main__":
    run()
