# SPDX-License-Identifier: Apache-2.0
"""The attack review's findings, replayed end to end against the chat as
it ships: each of these once crashed a node, grew it by gigabytes or cut
it off its broker. A finding's test at a lower layer names it too."""
import asyncio
import json
import os
import shutil
import socket
import tempfile
import time

import websockets

from xrtest import (CHAT, WEB_DIRS, Server, get, metrics, recv_json, request, run, test,
                    wait_until)


def chat(*args, web=None):
    dirs = web if web is not None else WEB_DIRS
    return Server(*[a for d in dirs for a in ("--static-dir", d)], *args, binary=CHAT)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def sub(rid, chat_id):
    return request(rid, "/chat_messages", "SUB", json.dumps({"chat_id": chat_id}))


@test
def test_static_paths_at_every_length_up_to_the_limit_and_beyond():
    # Finding 1: "/" + 510 x "a" + "/" wrote index.html past the stack
    # buffer (SIGABRT under _FORTIFY_SOURCE, what Debian ships). Every
    # length from 1 to past the 512-byte limit, ending in "/" or not.
    web = tempfile.mkdtemp(prefix="xraptor-static-")
    try:
        with open(os.path.join(web, "index.html"), "w") as f:
            f.write("<p>root</p>")
        with chat(web=[web]) as srv:
            for n in range(1, 530):
                for tail in ("/", "x"):
                    path = "/" + "a" * n + tail
                    status, _, body = get(srv.port, path)
                    assert status in (404, 431), (len(path), status)
            status, _, body = get(srv.port, "/")
            assert (status, body) == (200, b"<p>root</p>")
            assert srv.proc.poll() is None
    finally:
        shutil.rmtree(web)


@test
def test_static_file_is_shared_not_copied_per_client():
    # Finding 7: each plain-HTTP reply was copied whole into its socket's
    # queue: 100 unread GETs of a 16 MiB file held 1.6 GiB.
    web = tempfile.mkdtemp(prefix="xraptor-static-")
    socks = []
    try:
        with open(os.path.join(web, "big.bin"), "wb") as f:
            f.write(os.urandom(4 << 20))
        with open(os.path.join(web, "huge.bin"), "wb") as f:
            f.write(b"h" * (5 << 20))
        with chat("--max-output-buffer", "4M", web=[web]) as srv:
            status, headers, body = get(srv.port, "/big.bin")
            assert status == 200 and len(body) == 4 << 20
            before = rss_kib(srv.proc.pid)
            for _ in range(100):
                s = socket.create_connection(("127.0.0.1", srv.port))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                socks.append(s)
            time.sleep(1.0)
            grown = rss_kib(srv.proc.pid) - before
            # one copy of the file at most (4 MiB), not a hundred
            assert grown < 24 * 1024, f"RSS grew by {grown} KiB for 100 unread replies"
            # over --max-output-buffer: not served at all
            status, _, _ = get(srv.port, "/huge.bin")
            assert status == 404
            for s in socks:
                s.close()
            socks.clear()
            status, _, body = get(srv.port, "/big.bin")
            assert status == 200 and len(body) == 4 << 20
    finally:
        for s in socks:
            s.close()
        shutil.rmtree(web)


@test
async def test_nul_in_a_sub_id_opens_no_channel_and_rooms_do_not_loop():
    # Finding 2: ids "A\0" and "B\0" in rooms B and A made every post
    # circle between the two rooms, doubling (3.6 GiB in 11 s).
    with chat() as srv:
        async with websockets.connect(srv.url()) as a, websockets.connect(srv.url()) as b:
            await a.send(sub("A\u0000", "B"))
            await b.send(sub("B\u0000", "A"))
            for ws in (a, b):
                r = await recv_json(ws)
                assert r["header"] == {"error": "bad_request"}, r
                assert "control character" in json.loads(r["payload"])["message"], r
            m = metrics(srv.port)
            assert m["xraptor_channels"] == 0 and m["xraptor_rooms"] == 0, m
            await a.send(request("p", "/send_message_to_chat_room", "POST",
                                 json.dumps({"chat_id": "A", "client_id": "a", "message": "hi"})))
            assert (await recv_json(a))["request_id"] == "p"
            await asyncio.sleep(0.5)
            m = metrics(srv.port)
            assert m["xraptor_antenna_messages_total"] <= 1, m
            # the same connection still works with a proper id
            await a.send(sub("A", "room"))
            wait_until(lambda: metrics(srv.port)["xraptor_rooms"] == 1, 5, "joined")


@test
async def test_names_have_a_length_limit_and_a_byte_policy():
    with chat("--max-name-length", "64") as srv:
        async with websockets.connect(srv.url()) as ws:
            await ws.send(sub("x" * 65, "r"))
            r = await recv_json(ws)
            assert r["header"] == {"error": "bad_request"}
            assert "--max-name-length" in json.loads(r["payload"])["message"]
            await ws.send(sub("log\nforged\u001b[31m", "r"))
            r = await recv_json(ws)
            assert r["header"] == {"error": "bad_request"}
            await ws.send(sub("x" * 64, "r"))
            wait_until(lambda: metrics(srv.port)["xraptor_channels"] == 1, 5, "subscribed")
    assert "\x1b" not in srv.log() and "forged" not in srv.log()


@test
async def test_channels_per_connection_are_capped_and_others_unaffected():
    # Finding 4: 30 000 SUBs on one connection cost seconds of CPU and
    # memory six times what was sent.
    with chat("--max-channels-per-connection", "50") as srv:
        async with websockets.connect(srv.url()) as ws, websockets.connect(srv.url()) as other:
            t0 = time.monotonic()
            for i in range(300):
                await ws.send(sub(f"id-{i}", f"room-{i}"))
            limited = 0
            for _ in range(250):
                r = await recv_json(ws)
                assert r["header"] == {"error": "limit"}, r
                limited += 1
            assert limited == 250
            assert time.monotonic() - t0 < 10
            m = metrics(srv.port)
            assert m["xraptor_channels"] == 50 and m["xraptor_rooms"] == 50, m
            await other.send(sub("other", "room-0"))
            wait_until(lambda: metrics(srv.port)["xraptor_channels"] == 51, 5, "other joined")
        wait_until(lambda: metrics(srv.port)["xraptor_channels"] == 0, 5, "all closed")
        assert metrics(srv.port)["xraptor_rooms"] == 0


run()
