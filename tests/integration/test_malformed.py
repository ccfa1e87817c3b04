# SPDX-License-Identifier: Apache-2.0
"""Malformed bytes on raw sockets: each gets the right status or close code,
and the server keeps serving everyone else."""

from xrtest import (Server, close_payload, connect, echo_ok, frame, http_request,
                    metrics, read_close, read_frame, run, test, upgrade_request, wait_eof,
                    wait_until, ws_open)


def expect_close(srv, data, code, *, open_first=True):
    s = ws_open(srv.port)
    try:
        s.sendall(data)
        got = read_close(s)
        assert got and got[0] == code, f"expected close {code}, got {got}"
        # The server then closes TCP (it fails the connection).
        assert wait_eof(s, 5), "server kept the socket open"
    finally:
        s.close()
    assert echo_ok(srv.port)
    return got


@test
def test_empty_close_answered_without_a_status_code():
    # RFC 6455 7.4.1: 1005 means "no status code" and must never be sent;
    # a close without one is answered with one without one.
    with Server() as srv:
        s = ws_open(srv.port)
        s.sendall(frame(8, b""))
        assert read_close(s) == (None, "")
        s.close()
        s = ws_open(srv.port)
        s.sendall(frame(8, close_payload(1000, b"bye")))
        assert read_close(s) == (1000, "")
        s.close()


@test
def test_unmasked_frame_gets_1002():
    with Server() as srv:
        code, reason = expect_close(srv, frame(1, "hi", mask=False), 1002)
        assert "not masked" in reason, reason


@test
def test_reserved_opcode_gets_1002():
    with Server() as srv:
        for op in (3, 7, 0xB, 0xF):
            expect_close(srv, frame(op, "x"), 1002)


@test
def test_rsv_bits_get_1002():
    with Server() as srv:
        for rsv in (1, 2, 4):
            expect_close(srv, frame(1, "x", rsv=rsv), 1002)


@test
def test_invalid_utf8_gets_1007_even_mid_message():
    with Server() as srv:
        expect_close(srv, frame(1, b"\xed\xa0\x80"), 1007)
        # The first fragment already proves it: no need to wait for the rest.
        s = ws_open(srv.port)
        s.sendall(frame(1, b"caf\xc3", fin=False) + frame(0, b"\x28", fin=False))
        assert read_close(s)[0] == 1007
        s.close()


@test
def test_oversize_message_gets_1009():
    with Server("--max-message-size", "1000") as srv:
        # Refused from the header alone, before the payload is sent.
        s = ws_open(srv.port)
        s.sendall(frame(2, b"", length=5000)[:8])
        code, reason = read_close(s)
        assert code == 1009 and "5000" in reason and "1000" in reason, reason
        s.close()
        # Fragments each under the limit, together over it.
        expect_close(srv, frame(2, b"a" * 600, fin=False) + frame(0, b"b" * 600), 1009)
        assert echo_ok(srv.port)


@test
def test_oversize_control_frame_gets_1002():
    with Server() as srv:
        expect_close(srv, frame(9, b"p" * 126), 1002)
        expect_close(srv, frame(9, b"p", fin=False), 1002)


@test
def test_protocol_sequence_errors_get_1002():
    with Server() as srv:
        expect_close(srv, frame(0, b"orphan continuation"), 1002)
        expect_close(srv, frame(1, b"a", fin=False) + frame(1, b"b"), 1002)
        expect_close(srv, frame(8, b"\x03"), 1002)
        expect_close(srv, frame(8, close_payload(1005)), 1002)
        expect_close(srv, frame(8, close_payload(999)), 1002)
        expect_close(srv, frame(8, close_payload(1000, b"\xff")), 1007)


@test
def test_ping_inside_fragmented_message_is_answered():
    with Server() as srv:
        s = ws_open(srv.port)
        s.sendall(frame(1, "hel", fin=False) + frame(9, "p1") + frame(0, "lo"))
        assert read_frame(s) == (True, 10, b"p1")
        assert read_frame(s) == (True, 1, b"hello")
        s.close()


@test
def test_truncated_frame_then_disconnect_leaves_server_healthy():
    with Server() as srv:
        for cut in (1, 2, 5, 9, 50):
            s = ws_open(srv.port)
            s.sendall(frame(1, "x" * 100)[:cut])
            s.close()
        # Mid-handshake too.
        s = connect(srv.port)
        s.sendall(upgrade_request()[:30])
        s.close()
        wait_until(lambda: metrics(srv.port)["xraptor_connections_active"] == 0 and
                   metrics(srv.port)['xraptor_closes_total{code="1006"}'] == 5, 10, "closes seen")
        assert echo_ok(srv.port)
        m = metrics(srv.port)
        assert m["xraptor_connections_active"] == 0, m
        assert m['xraptor_closes_total{code="1006"}'] == 5, m


@test
def test_bad_handshakes_get_400_with_reason():
    with Server() as srv:
        cases = [
            (b"GARBAGE\r\n\r\n", 400, b"request line"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n", 400, b"Sec-WebSocket-Key"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n", 400, b"Sec-WebSocket-Key"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400, b"header"),
            (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505, b"version"),
            (upgrade_request(extra="Content-Length: 10\r\n"), 400, b"bodies"),
        ]
        for raw, status, words in cases:
            got, headers, body = http_request(srv.port, raw)
            assert got == status and words in body, (raw, got, body)
            assert headers["connection"] == "close"
        assert echo_ok(srv.port)


@test
def test_wrong_version_gets_426_naming_13():
    with Server() as srv:
        raw = upgrade_request().replace(b"Version: 13", b"Version: 8")
        status, headers, body = http_request(srv.port, raw)
        assert status == 426, status
        assert headers["sec-websocket-version"] == "13"


@test
def test_reason_is_never_reflected_from_the_request():
    with Server() as srv:
        evil = b"<script>alert(1)</script>"
        status, _, body = http_request(srv.port, b"GET /" + evil + b" HTTP/1.1\r\n\r\n")
        assert status == 426 and evil not in body, (status, body)


@test
def test_frames_pipelined_with_the_handshake_are_served():
    with Server() as srv:
        s = connect(srv.port)
        s.sendall(upgrade_request() + frame(1, "early") + frame(2, b"\x00bin"))
        data = b""
        while data.count(b"early") == 0 or b"\x00bin" not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 101")
        s.close()


if __name__ == "__main__":
    run()
