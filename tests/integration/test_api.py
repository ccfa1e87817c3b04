# SPDX-License-Identifier: Apache-2.0
"""The publish API for backends (--api-key-file): POST /api/publish and
/api/broadcast with an API key, delivered to subscribers on every node
through a real Redis; refusals publish nothing; an idempotency key
publishes once."""
import asyncio
import json
import os
import shutil
import socket
import tempfile

import websockets

from xrtest import (PROTOSERVER, Broker, Server, connect, free_port, get, no_message, recv_json,
                    request, run, test, upgrade_request, wait_port)

KEY = "backend-key-0123456789"


def post(port, path, body, key=KEY, extra=""):
    """An HTTP POST: (status, parsed JSON body or raw bytes)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n"
            + (f"Authorization: apikey {key}\r\n" if key is not None else "") + extra + "\r\n")
    s = connect(port)
    try:
        s.sendall(head.encode() + data)
        s.settimeout(5)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


class KeyFile:
    def __init__(self, key=KEY):
        self.dir = tempfile.mkdtemp(prefix="xraptor-api-")
        self.path = os.path.join(self.dir, "api.key")
        with open(self.path, "w") as f:
            f.write(key + "\n")

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


async def subscribed(srv, rid):
    ws = await websockets.connect(srv.url())
    await ws.send(request(rid, "/stream", "SUB"))
    assert (await recv_json(ws))["payload"] == '{"message": "subscribed"}'
    return ws


@test
async def test_publish_reaches_subscribers_on_two_nodes_through_redis():
    kf = KeyFile()
    try:
        redis = Broker(lambda p: ["redis-server", "--port", str(p), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no"])
        url = f"redis://127.0.0.1:{redis.port}"
        with Server("--antenna", url, "--api-key-file", kf.path, binary=PROTOSERVER) as a, \
                Server("--antenna", url, binary=PROTOSERVER) as b:
            wa, wb = await subscribed(a, "news"), await subscribed(b, "news")
            await asyncio.sleep(0.3)
            status, out = post(a.port, "/api/publish", {"channel": "news", "data": "hello"})
            assert (status, out) == (200, {"published": 1}), (status, out)
            for ws in (wa, wb):
                m = await recv_json(ws)
                assert (m["request_id"], m["payload"]) == ("news", "hello"), m
            # Any other JSON value goes out as its JSON text.
            status, out = post(a.port, "/api/publish",
                               b'{"channel": "news", "data": {"n": 1, "s": "x"}}')
            assert status == 200, out
            assert json.loads((await recv_json(wb))["payload"]) == {"n": 1, "s": "x"}
            await recv_json(wa)
            # Broadcast: several channels at once.
            wc = await subscribed(b, "sport")
            await asyncio.sleep(0.3)
            status, out = post(a.port, "/api/broadcast",
                               {"channels": ["news", "sport"], "data": "both"})
            assert (status, out) == (200, {"published": 2, "refused": 0}), out
            assert (await recv_json(wc))["payload"] == "both"
            assert (await recv_json(wb))["payload"] == "both"
            # Node b has no key: no API, and a body is refused as anywhere.
            assert post(b.port, "/api/publish", {"channel": "news", "data": "x"})[0] == 400
            for ws in (wa, wb, wc):
                await ws.close()
    finally:
        kf.close()


@test
async def test_refusals_publish_nothing():
    kf = KeyFile()
    try:
        with Server("--api-key-file", kf.path, "--max-message-size", "64k",
                    binary=PROTOSERVER) as srv:
            ws = await subscribed(srv, "news")
            good = {"channel": "news", "data": "x"}
            cases = [
                (post(srv.port, "/api/publish", good, key=None), 401),
                (post(srv.port, "/api/publish", good, key=KEY + "x"), 401),
                (post(srv.port, "/api/publish", good, key=KEY[:-1]), 401),
                (post(srv.port, "/api/publish", good, key=KEY[:-1] + "!"), 401),   # same length
                (post(srv.port, "/api/publish", b"not json"), 400),
                (post(srv.port, "/api/publish", {"data": "x"}), 400),
                (post(srv.port, "/api/publish", {"channel": "news"}), 400),
                (post(srv.port, "/api/publish", {"channel": 7, "data": "x"}), 400),
                (post(srv.port, "/api/publish", {"channel": "a\u0000b", "data": "x"}), 400),
                (post(srv.port, "/api/broadcast", {"channels": "news", "data": "x"}), 400),
                (post(srv.port, "/api/broadcast", {"channels": ["news", 1], "data": "x"}), 400),
                (post(srv.port, "/api/publish", {"channel": "news", "data": "y" * 70000}), 413),
            ]
            for (status, out), want in cases:
                assert status == want, (status, out, want)
                assert isinstance(out, dict) and "error" in out or status == 413, out
            # Chunked bodies and doubled lengths are refused, GET is not POST.
            s = connect(srv.port)
            s.sendall(b"POST /api/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      b"Authorization: apikey " + KEY.encode() + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            answer = s.recv(4096)
            assert answer.startswith(b"HTTP/1.1 411") and b"not chunked" in answer, answer
            s.close()
            s = connect(srv.port)
            s.sendall(b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                      b"Content-Length: 2\r\n\r\n{}")
            answer = s.recv(4096)
            assert answer.startswith(b"HTTP/1.1 400") and b"bad Content-Length" in answer, answer
            s.close()
            assert get(srv.port, "/api/publish")[0] == 405
            assert await no_message(ws, 0.5), "a refused call published"
            # Bodies stay refused everywhere else.
            status, _ = post(srv.port, "/health", {"x": 1})
            assert status == 400, status
            await ws.close()
    finally:
        kf.close()


@test
async def test_same_idempotency_key_publishes_once():
    kf = KeyFile()
    try:
        with Server("--api-key-file", kf.path, "--api-idempotency-window", "2",
                    binary=PROTOSERVER) as srv:
            ws = await subscribed(srv, "news")
            body = {"channel": "news", "data": "once"}
            first = post(srv.port, "/api/publish", body, extra="Idempotency-Key: k-1\r\n")
            again = post(srv.port, "/api/publish", body, extra="Idempotency-Key: k-1\r\n")
            other = post(srv.port, "/api/publish", body, extra="Idempotency-Key: k-2\r\n")
            assert first == (200, {"published": 1}), first
            assert again == (200, {"published": 0, "duplicate": True}), again
            assert other == (200, {"published": 1}), other
            assert (await recv_json(ws))["payload"] == "once"
            assert (await recv_json(ws))["payload"] == "once"
            assert await no_message(ws, 0.5), "the retried call published twice"
            # After the window, the key is new again.
            await asyncio.sleep(2.2)
            assert post(srv.port, "/api/publish", body,
                        extra="Idempotency-Key: k-1\r\n") == (200, {"published": 1})
            assert (await recv_json(ws))["payload"] == "once"
            await ws.close()
    finally:
        kf.close()


@test
def test_bad_key_file_stops_start_up():
    kf = KeyFile("short")
    try:
        with Server("--api-key-file", kf.path, binary=PROTOSERVER, expect_start=False) as srv:
            assert srv.wait(5) != 0
            assert "16 to 1024 bytes" in srv.log(), srv.log()
    finally:
        kf.close()


@test
async def test_api_listen_serves_the_api_on_its_own_address_only():
    kf = KeyFile()
    try:
        with Server("--api-key-file", kf.path, "--api-listen", "http://127.0.0.1:0",
                    binary=PROTOSERVER) as srv:
            api = int(srv.wait_log(r"publish API on http://127\.0\.0\.1:(\d+)").group(1))
            assert api != srv.port
            ws = await subscribed(srv, "news")
            status, out = post(api, "/api/publish", {"channel": "news", "data": "via api port"})
            assert (status, out) == (200, {"published": 1}), (status, out)
            m = await recv_json(ws)
            assert m["payload"] == "via api port", m
            # Not on the WebSocket port any more: refused, nothing published.
            status, out = post(srv.port, "/api/publish", {"channel": "news", "data": "via ws port"})
            assert status >= 400, (status, out)
            assert await no_message(ws), "the WebSocket port still publishes"
            # The API's address: /health, the API, nothing else.
            assert get(api, "/health")[0] == 200
            assert get(api, "/")[0] == 404
            s = connect(api)
            try:
                s.sendall(upgrade_request())
                s.settimeout(5)
                assert s.recv(4096).startswith(b"HTTP/1.1 404"), "a WebSocket on the API address"
            finally:
                s.close()
            await ws.close()
        with Server("--api-listen", "127.0.0.1:0", binary=PROTOSERVER, expect_start=False) as srv:
            assert srv.wait(5) == 2
            assert "--api-listen needs --api-key-file" in srv.log(), srv.log()
        with Server("--api-key-file", kf.path, "--api-listen", "nonsense", binary=PROTOSERVER,
                    expect_start=False) as srv:
            assert srv.wait(5) == 2
            assert "--api-listen: 'nonsense'" in srv.log(), srv.log()
    finally:
        kf.close()


if __name__ == "__main__":
    run()
