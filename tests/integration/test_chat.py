# SPDX-License-Identifier: Apache-2.0
"""xraptor-chat answers exactly as the Python X-raptor chat example does,
to a client that speaks only the wire format."""
import json
import os
import shutil
import tempfile

import websockets

from xrtest import (CHAT, WEB_DIRS, Server, get, metrics, no_message, recv_json, request, run,
                    test, wait_until)


def chat(*args):
    web = [a for d in WEB_DIRS for a in ("--static-dir", d)]
    return Server(*web, *args, binary=CHAT)


def post(rid, chat_id, client, message):
    return request(rid, "/send_message_to_chat_room", "POST",
                   json.dumps({"chat_id": chat_id, "client_id": client, "message": message}))


@test
async def test_two_clients_in_a_room_exchange_messages():
    with chat() as srv:
        async with websockets.connect(srv.url()) as ana, websockets.connect(srv.url()) as bia:
            await ana.send(request("ana-sub", "/chat_messages", "SUB", json.dumps({"chat_id": "42"})))
            await bia.send(request("bia-sub", "/chat_messages", "SUB", json.dumps({"chat_id": "42"})))
            # SUB has no answer of its own; wait until both joined.
            wait_until(lambda: metrics(srv.port)["xraptor_channels"] == 2, 10, "both joined")
            await bia.send(post("m1", "42", "bia", "ol\u00e1 \"ana\""))
            assert await recv_json(bia) == {"request_id": "m1", "payload": '{"message": "Message sent"}',
                                            "header": {}, "method": "POST"}
            for ws, rid in ((ana, "ana-sub"), (bia, "bia-sub")):
                r = await recv_json(ws)
                assert r["request_id"] == rid and r["method"] == "SUB" and r["header"] == {}, r
                assert r["payload"] == '{"origin": "bia", "message": "ol\u00e1 \\"ana\\""}', r["payload"]
                assert json.loads(r["payload"]) == {"origin": "bia", "message": "ol\u00e1 \"ana\""}


@test
async def test_unsub_says_tchau_and_stops_delivery():
    with chat() as srv:
        async with websockets.connect(srv.url()) as ana, websockets.connect(srv.url()) as bia:
            body = json.dumps({"chat_id": "room"})
            await ana.send(request("s", "/chat_messages", "SUB", body))
            wait_until(lambda: metrics(srv.port)["xraptor_rooms"] == 1, 10, "joined")
            await ana.send(request("s", "/chat_messages", "UNSUB", body))
            assert await recv_json(ana) == {"request_id": "s", "payload": '{"message": "tchau!"}',
                                            "header": {}, "method": "UNSUB"}
            await bia.send(post("m", "room", "bia", "anyone?"))
            await recv_json(bia)
            assert await no_message(ana)
            assert metrics(srv.port)["xraptor_rooms"] == 0


@test
async def test_bad_payloads_get_fail_never_a_crash():
    with chat() as srv:
        async with websockets.connect(srv.url()) as ws:
            for route, method, payload in (
                    ("/send_message_to_chat_room", "POST", "not json"),
                    ("/send_message_to_chat_room", "POST", json.dumps({"chat_id": "1"})),
                    ("/send_message_to_chat_room", "POST", json.dumps({"chat_id": 1, "client_id": "a", "message": "m"})),
                    ("/chat_messages", "SUB", "[]"),
                    ("/chat_messages", "UNSUB", "{}")):
                await ws.send(request("x", route, method, payload))
                r = await recv_json(ws)
                assert r["payload"] == '{"message": "fail"}' and r["method"] == method, r
            await ws.send(request("y", "/nope", "GET", ""))
            assert (await recv_json(ws))["payload"] == '{"message": "Not registered"}'


@test
async def test_disconnect_leaves_the_room():
    with chat() as srv:
        ws = await websockets.connect(srv.url())
        await ws.send(request("s", "/chat_messages", "SUB", json.dumps({"chat_id": "r"})))
        wait_until(lambda: metrics(srv.port)["xraptor_rooms"] == 1, 10, "joined")
        await ws.close()
        wait_until(lambda: metrics(srv.port)["xraptor_connections_active"] == 0, 10, "closed")
        m = metrics(srv.port)
        assert m["xraptor_rooms"] == 0 and m["xraptor_channels"] == 0, m


@test
def test_page_and_client_module_served_from_the_same_port():
    with chat() as srv:
        status, headers, body = get(srv.port, "/")
        assert status == 200 and headers["content-type"].startswith("text/html"), status
        assert b"xraptor" in body
        status, headers, body = get(srv.port, "/xraptor.js")
        assert status == 200 and headers["content-type"].startswith("text/javascript")
        assert b"export class XRaptor" in body
        assert get(srv.port, "/missing.html")[0] == 404
        # Files that exist beside and above the static root (web/ is in
        # examples/chat/, next to chat.c), by every spelling of "go up":
        # never served.
        web = WEB_DIRS[0]
        assert os.path.exists(os.path.join(web, "..", "chat.c"))
        assert os.path.exists(os.path.join(web, "..", "..", "..", "README.md"))
        for path in ("/../chat.c", "/../../../README.md", "/%2e%2e/chat.c",
                     "/%2E%2E/%2E%2E/%2E%2E/README.md", "/..%2fchat.c", "/./../chat.c",
                     "//../chat.c", "/xraptor.js/../../chat.c"):
            status, _, body = get(srv.port, path)
            assert status != 200 and b"xr_route" not in body and b"# xraptor" not in body, \
                (path, status, body[:80])


@test
def test_static_files_never_serve_dot_files_or_what_is_outside_the_root():
    root = tempfile.mkdtemp(prefix="xraptor-static-")
    os.makedirs(os.path.join(root, "www", "sub"))
    for name, text in (("www/index.html", "<p>home</p>"), ("www/.env", "SECRET=dot"),
                       ("www/sub/.git", "SECRET=dotdir"), ("outside.txt", "SECRET=outside")):
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    try:
        with Server("--static-dir", os.path.join(root, "www")) as srv:
            assert get(srv.port, "/")[0] == 200
            for path in ("/.env", "/sub/.git", "/../outside.txt", "/%2e%2e/outside.txt",
                         "/sub/../../outside.txt", "/sub/%2e%2e/%2e%2e/outside.txt"):
                status, _, body = get(srv.port, path)
                assert status != 200 and b"SECRET" not in body, (path, status, body[:80])
    finally:
        shutil.rmtree(root, ignore_errors=True)


@test
def test_bad_antenna_flag_exits_2_listing_modules():
    import subprocess
    r = subprocess.run([CHAT, "--antenna", "nosuch://x"], capture_output=True, text=True, timeout=10)
    # The list of installed modules, not the path (which may say "memory").
    assert r.returncode == 2 and "nosuch" in r.stderr and \
        "installed antennas: " in r.stderr and \
        "memory" in r.stderr.split("installed antennas: ", 1)[1], r.stderr
    r = subprocess.run([CHAT, "--antenna", "memory://extra"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "memory://" in r.stderr, r.stderr
    r = subprocess.run([CHAT, "--antenna", "not a url"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r.stderr
    # Each broker module checks its URL before start-up.
    for url, words in (("redis://", "no host"), ("redis://h:99999", "bad port"),
                       ("redis://h/db", "database"), ("nats://", "not nats://"),
                       ("nats://:4222", "no host"), ("kafka://h:9092", "not kafka://"),
                       ("kafka://h:9092/bad topic!", "topic")):
        r = subprocess.run([CHAT, "--antenna", url], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and words in r.stderr, (url, r.returncode, r.stderr)


if __name__ == "__main__":
    run()
