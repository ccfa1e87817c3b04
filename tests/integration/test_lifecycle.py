# SPDX-License-Identifier: Apache-2.0
"""Graceful shutdown: close 1001 to everyone, exit 0, bounded by the drain
timeout; new connections refused meanwhile."""
import asyncio
import signal
import subprocess
import time

import websockets

from xrtest import ECHO, Server, connect, frame, read_close, run, test, ws_open


@test
def test_sigterm_the_moment_it_listens_is_a_drain():
    # The signal sent as soon as "listening on" is read, 20 times: each a
    # drain that exits 0, never the default death (the handlers were once
    # set after the sockets listened; ASan's timing caught the gap).
    for k in range(20):
        p = subprocess.Popen([ECHO, "--listen", "127.0.0.1:0"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            line = ""
            deadline = time.monotonic() + 10
            while "listening on" not in line and time.monotonic() < deadline:
                line = p.stderr.readline()
                assert line, "exited before listening"
            p.send_signal(signal.SIGTERM)
            assert p.wait(10) == 0, (k, p.returncode)
            assert "stopped" in p.stderr.read()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stderr.close()


@test
async def test_sigterm_sends_1001_to_every_client_and_exits_0():
    with Server() as srv:
        clients = [await websockets.connect(srv.url()) for _ in range(20)]
        srv.signal(signal.SIGTERM)
        for ws in clients:
            try:
                await asyncio.wait_for(ws.recv(), 5)
                raise AssertionError("expected close")
            except websockets.ConnectionClosed:
                pass
            assert ws.close_code == 1001, ws.close_code
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, srv.wait, 10) == 0
        assert "stopped" in srv.log()


@test
def test_sigint_with_silent_client_exits_at_drain_timeout():
    with Server("--drain-timeout", "1", "--close-timeout", "30") as srv:
        s = ws_open(srv.port)
        t0 = time.monotonic()
        srv.signal(signal.SIGINT)
        assert read_close(s) == (1001, "server shutting down")
        # We never answer; the drain timeout ends it.
        assert srv.wait(10) == 0
        assert 0.8 < time.monotonic() - t0 < 5
        assert "drain timeout" in srv.log()
        s.close()


@test
def test_new_connections_refused_while_draining():
    with Server("--drain-timeout", "3") as srv:
        s = ws_open(srv.port)
        srv.signal(signal.SIGTERM)
        # The listener closes before the first 1001 goes out.
        assert read_close(s)[0] == 1001
        try:
            connect(srv.port, timeout=1).close()
            raise AssertionError("listener still open while draining")
        except (ConnectionRefusedError, ConnectionResetError):
            pass
        s.sendall(frame(8, b"\x03\xe9"))
        assert srv.wait(10) == 0


@test
def test_second_signal_exits_at_once():
    with Server("--drain-timeout", "30") as srv:
        s = ws_open(srv.port)
        srv.signal(signal.SIGTERM)
        assert read_close(s)[0] == 1001
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait(5) == 0
        assert time.monotonic() - t0 < 3
        s.close()


if __name__ == "__main__":
    run()
