"""xraptor-echo driven by a real WebSocket client (python3-websockets)."""
import asyncio

import websockets

from xrtest import ECHO, TESTSERVER, Server, metrics, run, test


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
        await asyncio.sleep(0.2)
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
        srv.wait_log(r"on_close code=4003 reason=going now")
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
        await asyncio.sleep(0.1)  # the loop must run for the socket to close
        srv.wait_log(r"on_close code=1006")


if __name__ == "__main__":
    run()
