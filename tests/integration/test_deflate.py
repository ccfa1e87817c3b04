# SPDX-License-Identifier: Apache-2.0
"""permessage-deflate (RFC 7692) against real clients: python3-websockets
with its default settings (it offers compression), raw sockets with
hand-made compressed frames for the rules and the bombs."""
import asyncio
import json
import os
import struct
import zlib

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from xrtest import (CHAT, WEB_DIRS, Server, connect, echo_ok, frame, metrics,
                    parse_response, read_close, recv_exact, recv_until, request, run, test,
                    upgrade_request)

DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


def compress(data, wbits=15):
    """A message as a client sends it: raw DEFLATE, sync-flushed, trailer cut."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(data, wbits=15):
    return zlib.decompressobj(-wbits).decompress(data + b"\x00\x00\xff\xff")


def raw_open(port, extra=DEFLATE):
    """A raw WebSocket and the 101's headers."""
    s = connect(port)
    s.sendall(upgrade_request(extra=extra))
    status, headers, rest = parse_response(recv_until(s, b"\r\n\r\n"))
    assert status == 101 and rest == b"", status
    return s, headers


def read_frame_rsv(sock):
    """(b0, payload) of one server frame, RSV bits kept."""
    b0, b1 = recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(sock, 8))[0]
    return b0, recv_exact(sock, n)


@test
async def test_default_client_talks_compressed_both_ways():
    with Server("--compression", "--max-message-size", "4M") as srv:
        async with websockets.connect(srv.url(), max_size=None) as ws:
            ext = ws.response_headers["Sec-WebSocket-Extensions"]
            assert ext == "permessage-deflate; server_no_context_takeover; client_max_window_bits=12", ext
            assert [type(e).__name__ for e in ws.extensions] == ["PerMessageDeflate"]
            for n in (0, 1, 127, 128, 129, 1000, 65535, 65536, 300000, 3 << 20):
                text = ("caf\u00e9 " * (n // 6 + 1))[:n]
                await ws.send(text)
                assert await ws.recv() == text, f"text of {n} chars"
                data = os.urandom(n // 2) + bytes(n - n // 2)
                await ws.send(data)
                assert await ws.recv() == data, f"binary of {n} bytes"
        m = metrics(srv.port)
        # Both directions really were compressed, and it paid off.
        assert m["xraptor_deflate_messages_received_total"] >= 14, m
        assert m["xraptor_deflate_messages_sent_total"] >= 14, m
        assert m["xraptor_deflate_sent_wire_bytes_total"] < m["xraptor_deflate_sent_raw_bytes_total"] / 2, m


@test
async def test_off_by_default_and_declined_cleanly():
    with Server() as srv:
        async with websockets.connect(srv.url()) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response_headers
            await ws.send("x" * 1000)
            assert await ws.recv() == "x" * 1000
        # RSV1 without an agreement is still a protocol error.
        s, headers = raw_open(srv.port)
        assert "sec-websocket-extensions" not in headers
        s.sendall(frame(1, compress(b"hello"), rsv=4))
        assert read_close(s)[0] == 1002
        s.close()


@test
async def test_fragmented_compressed_messages_and_context_takeover():
    with Server("--compression") as srv:
        async with websockets.connect(srv.url()) as ws:
            # websockets keeps its compression context across messages, so
            # the later ones refer back to the earlier ones.
            for i in range(50):
                msg = f"message {i}: " + "the same words again and again " * 20
                await ws.send([msg[:7], msg[7:300], msg[300:]])
                assert await ws.recv() == msg
                await ws.send([msg.encode()[:100], msg.encode()[100:]])
                assert await ws.recv() == msg.encode()
        # By hand: RSV1 on the first fragment only, a ping in between.
        s, _ = raw_open(srv.port)
        body = compress("fragmented \u00e9 ".encode() * 50)
        s.sendall(frame(1, body[:10], fin=False, rsv=4) + frame(9, b"p") +
                  frame(0, body[10:20], fin=False) + frame(0, body[20:]))
        b0, pong = read_frame_rsv(s)
        assert b0 == 0x8A and pong == b"p", (b0, pong)
        b0, payload = read_frame_rsv(s)
        assert b0 == 0xC1, hex(b0)   # FIN, RSV1, text
        assert inflate(payload) == "fragmented \u00e9 ".encode() * 50
        s.close()


@test
async def test_frame_rules_give_1002():
    with Server("--compression") as srv:
        for frames in ([frame(2, b"ab", fin=False), frame(0, b"cd", rsv=4)],  # RSV1 on continuation
                       [frame(9, b"", rsv=4)],                                # compressed ping
                       [frame(1, compress(b"x"), rsv=2)],                     # RSV2
                       [frame(1, compress(b"x"), rsv=1)]):                    # RSV3
            s, _ = raw_open(srv.port)
            s.sendall(b"".join(frames))
            assert read_close(s)[0] == 1002, frames
            s.close()
        assert echo_ok(srv.port)


@test
async def test_bomb_gets_1009_and_others_unharmed():
    with Server("--compression", "--max-message-size", "1M") as srv:
        async with websockets.connect(srv.url()) as bystander:
            rss0 = srv.rss_kib()
            bomb = compress(bytes(64 << 20))           # 64 MiB of zeros
            assert len(bomb) < 128 << 10, len(bomb)
            for fragmented in (False, True):
                s, _ = raw_open(srv.port)
                if fragmented:
                    half = len(bomb) // 2
                    s.sendall(frame(2, bomb[:half], fin=False, rsv=4) + frame(0, bomb[half:]))
                else:
                    s.sendall(frame(2, bomb, rsv=4))
                code, reason = read_close(s)
                assert code == 1009 and "max_message_size" in reason, (code, reason)
                s.close()
            # Exactly at the limit is fine; the compressed form is tiny.
            s, _ = raw_open(srv.port)
            s.sendall(frame(2, compress(bytes(1 << 20)), rsv=4))
            b0, payload = read_frame_rsv(s)
            assert b0 == 0xC2 and inflate(payload) == bytes(1 << 20)
            s.close()
            # The process never held the 64 MiB.
            assert srv.rss_kib() - rss0 < 16 * 1024, (rss0, srv.rss_kib())
            await bystander.send("still here")
            assert await bystander.recv() == "still here"
        m = metrics(srv.port)
        assert m["xraptor_deflate_errors_total"] == 2, m
        assert m["xraptor_closes_total{code=\"1009\"}"] == 2, m


@test
async def test_corrupt_data_and_bad_utf8_give_1007():
    with Server("--compression") as srv:
        for payload, op in ((b"\xff\xff\xff\xff\x00", 1),          # reserved block type
                            (compress(b"ok \xc3\x28 not utf-8"), 1),  # inflates to bad UTF-8
                            (compress(b"x")[:-1] + b"\x07garbage", 2)):
            s, _ = raw_open(srv.port)
            s.sendall(frame(op, payload, rsv=4))
            assert read_close(s)[0] == 1007, payload
            s.close()
        assert echo_ok(srv.port)


@test
async def test_small_messages_go_out_plain_and_windows_are_honoured():
    with Server("--compression", "--compression-min-size", "100") as srv:
        s, headers = raw_open(srv.port, "Sec-WebSocket-Extensions: permessage-deflate; "
                                        "server_max_window_bits=9; client_max_window_bits=10\r\n")
        assert headers["sec-websocket-extensions"] == ("permessage-deflate; server_no_context_takeover; "
                                                       "server_max_window_bits=9; client_max_window_bits=10")
        s.sendall(frame(1, b"short", rsv=0))
        assert read_frame_rsv(s) == (0x81, b"short")
        # A long text with repeats further apart than 512 bytes: a 9-bit
        # inflater fails if the server used a bigger window.
        text = os.urandom(3000).hex().encode()
        text = text + text
        s.sendall(frame(1, compress(text, 10), rsv=4))
        b0, payload = read_frame_rsv(s)
        assert b0 == 0xC1, hex(b0)
        assert inflate(payload, 9) == text
        # Random bytes do not shrink: they go out plain (RSV1 clear), not
        # as a compressed frame larger than the message.
        noise = os.urandom(2000)
        s.sendall(frame(2, compress(noise, 10), rsv=4))
        assert read_frame_rsv(s) == (0x82, noise)
        s.close()
        # server_max_window_bits=8: accepted, and we send uncompressed.
        s, headers = raw_open(srv.port, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n")
        assert "server_max_window_bits=8" in headers["sec-websocket-extensions"]
        s.sendall(frame(1, compress(b"y" * 500), rsv=4))
        assert read_frame_rsv(s) == (0x81, b"y" * 500)
        s.close()


@test
async def test_no_context_takeover_required():
    with Server("--compression", "--compression-no-context-takeover") as srv:
        async with websockets.connect(srv.url()) as a, websockets.connect(srv.url()) as b:
            assert "client_no_context_takeover" in a.response_headers["Sec-WebSocket-Extensions"]
            # Two clients interleaved through the one shared inflater.
            for i in range(20):
                for ws, who in ((a, "a"), (b, "b")):
                    msg = f"{who}{i} " + who * 400
                    await ws.send(msg)
                    assert await ws.recv() == msg


@test
async def test_room_fanout_compresses_once_for_all():
    web = [a for d in WEB_DIRS for a in ("--static-dir", d)]
    with Server(*web, "--compression", binary=CHAT) as srv:
        small_window = ClientPerMessageDeflateFactory(server_max_window_bits=10,
                                                      client_max_window_bits=True)
        clients = [await websockets.connect(srv.url()) for _ in range(5)]
        clients.append(await websockets.connect(srv.url(), extensions=[small_window]))
        clients.append(await websockets.connect(srv.url(), compression=None))
        try:
            for k, ws in enumerate(clients):
                await ws.send(request(f"sub{k}", "/chat_messages", "SUB", json.dumps({"chat_id": "z"})))
            for _ in range(100):
                if metrics(srv.port)["xraptor_channels"] == len(clients):
                    break
                await asyncio.sleep(0.02)
            text = "compress me " * 200
            before = metrics(srv.port)
            await clients[0].send(request("m", "/send_message_to_chat_room", "POST",
                                          json.dumps({"chat_id": "z", "client_id": "c0", "message": text})))
            got = {}
            while len(got) < len(clients):
                for k, ws in enumerate(clients):
                    if k in got:
                        continue
                    r = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if r["method"] == "SUB":
                        got[k] = r
            for k, r in got.items():
                assert r["request_id"] == f"sub{k}", r
                assert json.loads(r["payload"]) == {"origin": "c0", "message": text}
            m = metrics(srv.port)
            sent = m["xraptor_deflate_messages_sent_total"] - before["xraptor_deflate_messages_sent_total"]
            runs = m["xraptor_deflate_compressions_total"] - before["xraptor_deflate_compressions_total"]
            # Six receivers got it compressed; the compressor ran twice: once
            # for the five with a 15-bit window (one shared tail), once for
            # the one that asked for a 1 KiB window.
            assert sent == 6 and runs == 2, (sent, runs)
        finally:
            for ws in clients:
                await ws.close()


@test
async def test_flags_checked():
    for args, words in ((["--compression-window-bits", "8"], "between 9 and 15"),
                        (["--compression-level", "0"], "between 1 and 9"),
                        (["--compression=yes"], "takes no value")):
        srv = Server(*args, expect_start=False)
        assert srv.wait() == 2
        assert words in srv.log(), srv.log()


if __name__ == "__main__":
    run()
