# SPDX-License-Identifier: Apache-2.0
"""Limits: connections, output buffers, timeouts, keepalive."""
import asyncio
import socket
import time

import websockets

from xrtest import (TESTSERVER, Server, connect, echo_ok, frame, get, http_request, metrics,
                    read_close, read_frame, run, test, upgrade_request, wait_eof, wait_until,
                    ws_open)


@test
def test_max_connections_refused_with_503_others_keep_working():
    with Server("--max-connections", "2") as srv:
        a, b = ws_open(srv.port), ws_open(srv.port)
        status, _, body = http_request(srv.port, upgrade_request())
        assert status == 503 and b"max_connections" in body, (status, body)
        # Health stays reachable when full, and the two keep working.
        assert get(srv.port, "/health")[0] == 200
        for s in (a, b):
            s.sendall(frame(1, "ok"))
            assert read_frame(s) == (True, 1, b"ok")
        a.close()
        deadline = time.monotonic() + 5
        while metrics(srv.port)["xraptor_connections_active"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert echo_ok(srv.port)
        assert metrics(srv.port)["xraptor_connections_refused_total"] == 1
        b.close()


@test
def test_sockets_in_handshake_capped_at_max_connections():
    # Three sockets that never send a byte fill the cap; a fourth is closed
    # at accept, so a flood of idle sockets cannot grow memory.
    with Server("--max-connections", "3", "--handshake-timeout", "20") as srv:
        idle = [connect(srv.port) for _ in range(3)]
        over = connect(srv.port)
        assert wait_eof(over, 3), "a socket beyond the handshake cap was kept"
        idle.pop().close()
        def serves():
            try:
                return echo_ok(srv.port)
            except (AssertionError, OSError, EOFError):
                return False
        wait_until(serves, 5, "a freed handshake slot")
        assert metrics(srv.port)["xraptor_connections_refused_total"] >= 1
        for s in idle:
            s.close()


@test
def test_frame_over_max_frame_size_gets_1009_message_of_smaller_frames_passes():
    with Server("--max-frame-size", "1k", "--max-message-size", "64k") as srv:
        s = ws_open(srv.port)
        parts = [frame(1, "a" * 1024, fin=False), frame(0, "b" * 1024, fin=False),
                 frame(0, "c" * 1000)]
        s.sendall(b"".join(parts))
        assert read_frame(s) == (True, 1, b"a" * 1024 + b"b" * 1024 + b"c" * 1000)
        s.sendall(frame(2, b"x" * 1025))
        code, reason = read_close(s)
        assert code == 1009 and "frame" in reason, (code, reason)
        s.close()


@test
def test_ping_interval_0_never_pings():
    with Server("--ping-interval", "0", "--ping-timeout", "0.2") as srv:
        s = ws_open(srv.port)
        s.settimeout(1.5)
        try:
            data = s.recv(64)
            raise AssertionError(f"the server sent {data!r} to a silent client")
        except socket.timeout:
            pass
        s.settimeout(5)
        s.sendall(frame(1, "still open"))
        assert read_frame(s) == (True, 1, b"still open")
        assert metrics(srv.port)["xraptor_pings_sent_total"] == 0
        s.close()


@test
def test_connections_per_ip_limited_others_unaffected():
    with Server("--max-connections-per-ip", "3") as srv:
        held = [ws_open(srv.port) for _ in range(2)]
        pending = connect(srv.port)              # a third socket, mid-handshake
        over = connect(srv.port)                 # the fourth: closed at once
        assert wait_eof(over, 3), "fourth socket from one address was kept"
        for s in held:
            s.sendall(frame(1, "fine"))
            assert read_frame(s) == (True, 1, b"fine")
        pending.close()
        held[0].close()
        deadline = time.monotonic() + 5
        while True:  # a freed slot is usable again
            try:
                assert echo_ok(srv.port)
                break
            except (AssertionError, OSError, EOFError):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert metrics_with_retry(srv.port)["xraptor_connections_refused_per_ip_total"] >= 1
        held[1].close()


def metrics_with_retry(port):
    """/metrics is a connection too: retry while the per-IP limit is full."""
    for _ in range(100):
        try:
            return metrics(port)
        except (AssertionError, OSError):
            time.sleep(0.05)
    return metrics(port)


@test
def test_slow_reader_closed_with_1008_memory_bounded():
    with Server("--max-output-buffer", "256k", "--close-timeout", "1", binary=TESTSERVER) as srv:
        rss0 = srv.rss_kib()
        s = ws_open(srv.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # 4000 x 64 KiB = 250 MiB pushed at a client that reads nothing.
        s.sendall(frame(1, "flood 4000 65536"))
        srv.wait_log(r"flood stopped after \d+: limit reached")
        srv.wait_log(r"on_close id=\d+ code=1008 reason=output buffer exceeds max_output_buffer")
        assert srv.rss_kib() - rss0 < 16 * 1024, (rss0, srv.rss_kib())
        # The socket is dropped once the close timeout passes unread.
        assert wait_eof_or_data_ends(s, 10)
        assert echo_ok(srv.port)
        m = metrics(srv.port)
        assert m["xraptor_slow_reader_closes_total"] == 1
        assert m['xraptor_closes_total{code="1008"}'] == 1
        s.close()


def wait_eof_or_data_ends(s, timeout):
    s.settimeout(timeout)
    try:
        while s.recv(1 << 20):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


@test
def test_fast_sender_slow_reader_is_paused_not_grown():
    with Server("--max-output-buffer", "64k") as srv:
        rss0 = srv.rss_kib()
        s = ws_open(srv.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        msg = frame(2, b"z" * 16384)
        sent = 0
        rest = b""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and sent < 20000:
            try:
                # A non-blocking send may take part of a frame: the rest
                # goes next, so the server always sees well-formed frames.
                rest = rest[s.send(rest or msg):] if rest else msg[s.send(msg):]
                if not rest:
                    sent += 1
            except BlockingIOError:
                time.sleep(0.01)
        # TCP pushed back long before 20000 messages went out.
        assert sent < 20000, sent
        assert srv.rss_kib() - rss0 < 16 * 1024, (rss0, srv.rss_kib())
        assert echo_ok(srv.port)
        # Paused, not dropped: the connection is still open (it counts as
        # active) and was not closed as a slow reader, though far more than
        # --max-output-buffer was sent to a client that reads nothing.
        m = metrics(srv.port)
        assert m.get("xraptor_slow_reader_closes_total", 0) == 0, m
        assert m["xraptor_connections_active"] >= 1, m
        assert sent * 16384 > 4 * 65536, sent
        s.close()


@test
def test_idle_handshake_and_slowloris_freed_at_timeout():
    with Server("--handshake-timeout", "1") as srv:
        idle = connect(srv.port)
        slow = connect(srv.port)
        t0 = time.monotonic()
        req = upgrade_request()
        i = 0
        closed = False
        while time.monotonic() - t0 < 4:
            try:
                slow.send(req[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            i += 1
            slow.settimeout(0.2)
            try:
                if slow.recv(100) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                # Closed with a byte of ours unread: the kernel says RST.
                closed = True
                break
        assert closed, "slowloris survived the handshake timeout"
        assert time.monotonic() - t0 < 3
        assert wait_eof(idle, 3), "idle handshake survived"
        assert echo_ok(srv.port)
        assert metrics(srv.port)["xraptor_handshake_failures_total"] >= 2


@test
def test_silent_client_pinged_then_closed_1011():
    with Server("--ping-interval", "0.3", "--ping-timeout", "0.3") as srv:
        s = ws_open(srv.port)
        t0 = time.monotonic()
        fin, op, payload = read_frame(s)
        assert op == 9, f"expected a ping, got opcode {op}"
        code, reason = read_close(s)
        assert code == 1011 and "ping" in reason, (code, reason)
        assert time.monotonic() - t0 < 3
        s.close()
        m = metrics(srv.port)
        assert m["xraptor_ping_timeouts_total"] == 1 and m["xraptor_pings_sent_total"] >= 1


@test
async def test_client_that_answers_pings_stays_connected():
    with Server("--ping-interval", "0.2", "--ping-timeout", "0.3") as srv:
        async with websockets.connect(srv.url(), ping_interval=None) as ws:
            await asyncio.sleep(1.5)
            await ws.send("still here")
            assert await ws.recv() == "still here"
        assert metrics(srv.port)["xraptor_pings_sent_total"] >= 3


@test
def test_close_handshake_times_out_on_silent_peer():
    with Server("--close-timeout", "0.5", binary=TESTSERVER) as srv:
        s = ws_open(srv.port)
        s.sendall(frame(1, "close 1000 done"))
        assert read_close(s) == (1000, "done")
        t0 = time.monotonic()
        # We never answer the close: the server gives up after the timeout,
        # not before (it waits for our close frame that long).
        assert wait_eof(s, 3)
        waited = time.monotonic() - t0
        assert 0.4 <= waited <= 2.5, waited
        s.close()



@test
def test_new_connections_per_address_paced_at_the_rate_all_get_in():
    # 50 a second from one address for 10 s against a limit of 50 a
    # second: every one upgraded, none lost to a refill that rounds away
    # (>= 490 of 500 allowed for the machine's own jitter).
    with Server("--rate-limit-connections", "50") as srv:
        start, ok = time.monotonic(), 0
        for i in range(500):
            delay = start + 0.02 * i - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            s = connect(srv.port)
            try:
                s.sendall(upgrade_request())
                s.settimeout(5)
                head = b""
                while b"\r\n" not in head:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                ok += head.startswith(b"HTTP/1.1 101")
            except (ConnectionResetError, BrokenPipeError):
                pass
            finally:
                s.close()
        assert ok >= 490, ok
        time.sleep(1.1)     # /metrics is a connection too: a full bucket first
        m = metrics(srv.port)
        assert m["xraptor_connections_refused_rate_total"] == 500 - ok, m

if __name__ == "__main__":
    run()
