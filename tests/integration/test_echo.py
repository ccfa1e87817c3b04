# SPDX-License-Identifier: Apache-2.0
"""xraptor-echo driven by a real WebSocket client (python3-websockets)."""
import asyncio

import websockets

from xrtest import TESTSERVER, Server, metrics, run, test, wait_until


@test
async def test_text_and_binary_of_every_length_class_echoed():
    with Server() as srv:
        async with websockets.connect(srv.url(), max_size=None) as ws:
            for n in (0, 1, 125, 126, 65535, 65536, 1 << 20):
                text = ("ab\u00e9\u20ac" * (n // 4 + 1)).encode()[:n].decode("utf-8", "ignore")
                await ws.send(text)
                assert await ws.recv() == text, f"text of {n} bytes"
                data = bytes(i % 251 for i in range(n))
                await ws.send(data)
                got = await ws.recv()
                assert isinstance(got, bytes) and got == data, f"binary of {n} bytes"


@test
async def test_fragmented_message_comes_back_whole():
    with Server() as srv:
        async with websockets.connect(srv.url()) as ws:
            await ws.send(["frag", "ment", "ed \u00e9", ""])
            assert await ws.recv() == "fragmented \u00e9"
            await ws.send([b"\x00\x01", b"\x02" * 70000])
            assert await ws.recv() == b"\x00\x01" + b"\x02" * 70000


@test
async def test_ping_answered_with_pong():
    with Server() as srv:
        async with websockets.connect(srv.url()) as ws:
            waiter = await ws.ping(b"are you there")
            await asyncio.wait_for(waiter, 5)


@test
async def test_client_close_code_echoed_and_counted():
    with Server() as srv:
        ws = await websockets.connect(srv.url())
        await ws.send("hi")
        assert await ws.recv() == "hi"
        await ws.close(4001, "bye now")
        assert ws.close_code == 4001, ws.close_code
        ws = await websockets.connect(srv.url())
        await ws.close()
        assert ws.close_code == 1000
        wait_until(lambda: metrics(srv.port)["xraptor_connections_active"] == 0, 10, "closed")
        m = metrics(srv.port)
        assert m['xraptor_closes_total{code="other"}'] == 1, m
        assert m['xraptor_closes_total{code="1000"}'] == 1, m
        assert m["xraptor_messages_received_total"] == 1
        assert m["xraptor_messages_sent_total"] == 1
        assert m["xraptor_connections_total"] == 2
        assert m["xraptor_connections_active"] == 0


@test
async def test_many_clients_each_get_their_own_echo():
    with Server() as srv:
        async def client(k):
            async with websockets.connect(srv.url()) as ws:
                for i in range(50):
                    msg = f"client {k} message {i}"
                    await ws.send(msg)
                    assert await ws.recv() == msg
        await asyncio.wait_for(asyncio.gather(*(client(k) for k in range(40))), 30)
        assert metrics(srv.port)["xraptor_messages_received_total"] == 2000


@test
async def test_pipelined_messages_keep_order():
    with Server() as srv:
        async with websockets.connect(srv.url()) as ws:
            for i in range(2000):
                await ws.send(str(i))
            for i in range(2000):
                assert await ws.recv() == str(i)


@test
async def test_subprotocol_negotiated_in_server_order():
    with Server("--subprotocol", "xraptor.v1", "--subprotocol", "chat", binary=TESTSERVER) as srv:
        async with websockets.connect(srv.url(), subprotocols=["chat", "xraptor.v1"]) as ws:
            assert ws.subprotocol == "xraptor.v1"
            await ws.send("proto")
            assert await ws.recv() == "xraptor.v1"
        async with websockets.connect(srv.url()) as ws:
            assert ws.subprotocol is None
            await ws.send("proto")
            assert await ws.recv() == "-"


@test
async def test_server_close_api_sends_code_and_reason():
    with Server(binary=TESTSERVER) as srv:
        async with websockets.connect(srv.url()) as ws:
            await ws.send("close 4003 going now")
            try:
                await asyncio.wait_for(ws.recv(), 5)
                raise AssertionError("expected the server to close")
            except websockets.ConnectionClosed:
                pass
            assert ws.close_code == 4003 and ws.close_reason == "going now"
        srv.wait_log(r"on_close id=\d+ code=4003 reason=going now")
        assert "send after close was accepted" not in srv.log()
        async with websockets.connect(srv.url()) as ws:
            await ws.send("close 1005 reserved")
            assert await ws.recv() == "invalid argument"
            await ws.send("peer")
            assert (await ws.recv()).startswith("127.0.0.1:")


@test
async def test_on_close_reports_1006_for_dropped_client():
    with Server(binary=TESTSERVER) as srv:
        ws = await websockets.connect(srv.url())
        srv.wait_log(r"on_open")
        ws.transport.abort()
        await ws.wait_closed()  # our loop runs the abort: the socket is closed now
        srv.wait_log(r"on_close id=\d+ code=1006")


@test
async def test_on_close_runs_exactly_once_whatever_ends_the_connection():
    import re
    import socket
    from xrtest import close_payload, frame, read_close, ws_open
    with Server("--max-output-buffer", "64k", "--close-timeout", "0.5",
                binary=TESTSERVER) as srv:
        ends = 0
        async with websockets.connect(srv.url()) as ws:         # the client closes
            await ws.send("x")
            await ws.recv()
        ends += 1
        async with websockets.connect(srv.url()) as ws:         # the server closes
            await ws.send("close 4000 bye")
            await ws.wait_closed()
        ends += 1
        ws = await websockets.connect(srv.url())                # dropped
        ws.transport.abort()
        await ws.wait_closed()
        ends += 1
        s = ws_open(srv.port)                                   # protocol error
        s.sendall(frame(1, "unmasked", mask=False))
        assert read_close(s)[0] == 1002
        s.close()
        ends += 1
        s = ws_open(srv.port)                                   # both close at once
        s.sendall(frame(1, "close 4001 crossing") + frame(8, close_payload(1000)))
        read_close(s)
        s.close()
        ends += 1
        s = ws_open(srv.port)                                   # slow reader
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(frame(1, "flood 1000 65536"))
        srv.wait_log(r"code=1008")
        s.close()
        ends += 1
        live = await websockets.connect(srv.url())              # the server stops
        await live.send("y")
        await live.recv()
        ends += 1
        srv.wait_log(rf"on_close id={ends - 1} ")
        srv.wait_log(rf"on_open id={ends}")
        assert srv.stop() == 0
        log = srv.log()
        ids = re.findall(r"on_close id=(\d+) ", log)
        assert sorted(map(int, ids)) == list(range(1, ends + 1)), ids
        assert "twice" not in log and f"opened {ends}, closed {ends}" in log, log[-2000:]


if __name__ == "__main__":
    run()
