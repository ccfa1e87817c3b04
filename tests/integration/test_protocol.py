# SPDX-License-Identifier: Apache-2.0
"""The X-raptor wire protocol through the real library: routes, bad
requests, middleware, SUB/UNSUB channels, rooms, async replies."""
import asyncio
import json
import time

import websockets

from xrtest import (PROTOSERVER, Server, metrics, no_message, recv_json, request, run, test,
                    wait_until)


def proto(*args):
    return Server(*args, binary=PROTOSERVER)


@test
async def test_routes_answer_with_id_and_upper_case_method():
    with proto() as srv:
        async with websockets.connect(srv.url()) as ws:
            for method in ("get", "Post", "PUT"):
                await ws.send(request("r-" + method, "/echo", method, '{"x": 1}'))
                r = await recv_json(ws)
                assert r == {"request_id": "r-" + method, "payload": '{"x": 1}', "header": {},
                             "method": method.upper()}, r


@test
async def test_unregistered_route_and_method_answer_not_registered():
    with proto() as srv:
        async with websockets.connect(srv.url()) as ws:
            await ws.send(request("a", "/nowhere", "GET"))
            assert (await recv_json(ws))["payload"] == '{"message": "Not registered"}'
            await ws.send(request("b", "/fail", "GET"))  # route exists, not for GET
            r = await recv_json(ws)
            assert r["payload"] == '{"message": "Not registered"}' and r["method"] == "GET"


@test
async def test_handler_error_answers_fail():
    with proto() as srv:
        async with websockets.connect(srv.url()) as ws:
            await ws.send(request("f1", "/fail", "POST"))
            r = await recv_json(ws)
            assert r == {"request_id": "f1", "payload": '{"message": "fail"}', "header": {},
                         "method": "POST"}, r


@test
async def test_bad_requests_say_what_is_wrong_and_keep_the_connection():
    good = {"request_id": "id7", "payload": "", "header": {}, "route": "/echo", "method": "GET"}
    cases = [
        ("not json at all", "", "not valid JSON"),
        ('{"request_id": "id7"', "", "not valid JSON"),
        ("[1, 2]", "", "must be a JSON object"),
        (json.dumps({k: v for k, v in good.items() if k != "request_id"}), "", "missing field 'request_id'"),
        (json.dumps({**good, "request_id": 7}), "", "field 'request_id' must be a string"),
        (json.dumps({k: v for k, v in good.items() if k != "route"}), "id7", "missing field 'route'"),
        (json.dumps({**good, "payload": {"a": 1}}), "id7", "field 'payload' must be a string"),
        (json.dumps({**good, "header": []}), "id7", "field 'header' must be an object"),
        (json.dumps({**good, "method": "DELETE"}), "id7", "unknown method 'DELETE'"),
        (json.dumps(good) + " trailing", "", "not valid JSON"),
    ]
    with proto() as srv:
        async with websockets.connect(srv.url()) as ws:
            for raw, rid, words in cases:
                await ws.send(raw)
                r = await recv_json(ws)
                assert r["header"] == {"error": "bad_request"}, (raw, r)
                assert r["request_id"] == rid, (raw, r)
                assert words in json.loads(r["payload"])["message"], (raw, r)
            await ws.send(b"\xff\xfe")
            r = await recv_json(ws)
            assert "UTF-8" in json.loads(r["payload"])["message"]
            # Still open, still served.
            await ws.send(json.dumps(good))
            assert (await recv_json(ws))["request_id"] == "id7"
        m = metrics(srv.port)
        assert m["xraptor_request_errors_total"] == len(cases) + 1, m


@test
async def test_payload_and_header_members_read_without_a_json_library():
    # What each xr_payload_*/xr_header_* call gives for member "x", as the
    # protoserver's /fields routes answer it: [return code, value].
    OK, ENOENT, ETYPE, EJSON = 0, -12, -13, -14
    MISSING, NULL, BOOL, NUMBER, STRING, ARRAY, OBJECT = range(7)
    with proto() as srv:
        async with websockets.connect(srv.url()) as ws:
            async def read(payload=None, header=None):
                where = "header" if header is not None else "payload"
                await ws.send(request("f", f"/fields/{where}", "GET",
                                      payload if payload is not None else "",
                                      header=header if header is not None else {}))
                r = await recv_json(ws)
                assert r["request_id"] == "f", r
                return json.loads(r["payload"])
            text = 'ol\u00e1 "a"\n\t\\/ \U0001F600 \u0000 end'
            got = await read(json.dumps({"x": text, "y": 1}))
            assert got["type"] == STRING and got["str"] == [OK, text], got
            assert got["int"][0] == ETYPE and got["bool"][0] == ETYPE, got
            assert got["raw"] == [OK, text], got
            got = await read('{"x": 1, "x": "last wins"}')
            assert got["str"] == [OK, "last wins"], got
            got = await read('{"x": -9007199254740993}')
            assert got["type"] == NUMBER and got["int"] == [OK, -9007199254740993], got
            assert got["str"][0] == ETYPE, got
            got = await read('{"x": 2.5e3}')
            assert got["int"][0] == ETYPE and got["num"] == [OK, 2500.0], got
            got = await read('{"x": 99999999999999999999}')
            assert got["int"][0] == ETYPE and got["num"] == [OK, 1e20], got
            got = await read('{"x": true}')
            assert got["type"] == BOOL and got["bool"] == [OK, True], got
            got = await read('{"x": null}')
            assert got["type"] == NULL and got["str"][0] == ETYPE and got["raw"] == [OK, None], got
            got = await read('{"x": {"deep": [1, {"a": null}]}}')
            assert got["type"] == OBJECT and got["raw"] == [OK, {"deep": [1, {"a": None}]}], got
            got = await read('{"y": 1}')
            assert got["type"] == MISSING and got["str"][0] == ENOENT and got["raw"][0] == ENOENT, got
            for bad in ("not json", "[1]", '{"x": 1', '{"x": 1} extra', r'{"x": "\ud800"}',
                        "[" * 70 + "]" * 70, '{"x": ' + "[" * 70 + "]" * 70 + "}"):
                got = await read(bad)
                assert got["type"] == EJSON and got["str"][0] == EJSON, (bad, got)
            # The header object: members of any type (a string one is also
            # what xr_request_header gives).
            got = await read(header={"x": 5, "token": "t"})
            assert got["type"] == NUMBER and got["int"] == [OK, 5], got
            got = await read(header={"x": "v\u00e9"})
            assert got["str"] == [OK, "v\u00e9"], got
            got = await read(header={"x": [1, 2]})
            assert got["type"] == ARRAY and got["raw"] == [OK, [1, 2]], got


@test
async def test_middleware_order_regex_and_short_circuit():
    with proto() as srv:
        async with websockets.connect(srv.url()) as ws:
            await ws.send(request("o", "/order", "GET"))
            # 10 (all) then 20 (^/ord); 40 "rder" never matches mid-route.
            assert (await recv_json(ws))["payload"] == "ABH"
            await ws.send(request("s1", "/api/secret", "GET"))
            assert (await recv_json(ws))["payload"] == '{"error": "unauthorized"}'
            await ws.send(request("s2", "/api/secret", "GET", header={"token": "t0ken"}))
            assert (await recv_json(ws))["payload"] == "secret"
            await ws.send(request("b", "/boom", "GET"))
            assert (await recv_json(ws))["payload"] == '{"message": "fail"}'


@test
async def test_several_requests_in_flight_answer_by_id():
    with proto() as srv:
        async with websockets.connect(srv.url()) as ws:
            await ws.send(request("slow", "/later", "POST"))
            await ws.send(request("fast", "/echo", "POST", "now"))
            first, second = await recv_json(ws), await recv_json(ws, 3)
            assert first["request_id"] == "fast" and first["payload"] == "now"
            assert second["request_id"] == "slow" and second["payload"] == '{"message": "later"}'


@test
async def test_requests_held_by_handlers_are_capped_per_connection():
    # A handler that answers later holds its request: one connection may
    # have --max-pending-requests of them at once; beyond, an error answer
    # at once, and the connection and the others go on.
    with proto("--max-pending-requests", "3") as srv:
        async with websockets.connect(srv.url()) as ws, websockets.connect(srv.url()) as other:
            for i in range(5):
                await ws.send(request(f"slow{i}", "/later", "POST"))
            await other.send(request("o", "/later", "POST"))
            got = [await recv_json(ws, 3) for _ in range(5)]
            refused = [r for r in got if r["header"] == {"error": "limit"}]
            assert sorted(r["request_id"] for r in refused) == ["slow3", "slow4"], got
            assert "in progress" in json.loads(refused[0]["payload"])["message"]
            later = [r["request_id"] for r in got if r["payload"] == '{"message": "later"}']
            assert sorted(later) == ["slow0", "slow1", "slow2"], got
            assert (await recv_json(other, 3))["payload"] == '{"message": "later"}'
            # answered: room again
            await ws.send(request("again", "/later", "POST"))
            assert (await recv_json(ws, 3))["payload"] == '{"message": "later"}'


@test
async def test_rate_limit_burst_retry_after_and_sustained_abuse_closed_1008():
    # 10 requests/s, bursts of 10: 100 sent at once get 10 (+-1) answers
    # and 90 "rate_limited" with the wait; after it, the next one goes
    # through; another client is untouched; a client that keeps sending
    # at 10x the rate is closed with 1008.
    with proto("--rate-limit", "10", "--rate-limit-burst", "10") as srv:
        # close_timeout: a mutant that never closes must fail fast, not
        # wait for a close handshake the paused server cannot read
        async with websockets.connect(srv.url(), close_timeout=1) as ws, \
                websockets.connect(srv.url(), close_timeout=1) as other:
            for i in range(100):
                await ws.send(request(f"b{i}", "/echo", "GET", "x"))
            got = [await recv_json(ws, 5) for _ in range(100)]
            ok = [r for r in got if r["header"] == {}]
            limited = [r for r in got if r["header"].get("error") == "rate_limited"]
            assert 9 <= len(ok) <= 11 and len(ok) + len(limited) == 100, got[:12]
            assert [r["request_id"] for r in ok[:9]] == [f"b{i}" for i in range(9)]
            waits = [r["header"]["retry_after"] for r in limited]
            assert all(0 < w <= 0.1 for w in waits), waits[:5]
            assert "retry_after" in json.loads(limited[0]["payload"])["message"]
            await other.send(request("o", "/echo", "GET", "y"))
            assert (await recv_json(other))["header"] == {}
            await asyncio.sleep(max(waits) + 0.02)
            await ws.send(request("after", "/echo", "GET", "z"))
            assert (await recv_json(ws))["header"] == {}
            m = metrics(srv.port)
            assert m["xraptor_requests_rate_limited_total"] == len(limited), m
            # Sustained abuse: 100 a second, told to wait each time and never
            # reading the answers: closed 1008 within a few seconds.
            code, deadline = None, time.monotonic() + 6
            while code is None and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(ws.send(request("a", "/echo", "GET", "x")), 1)
                    await asyncio.sleep(0.01)
                except websockets.ConnectionClosed as e:
                    code = e.rcvd.code if e.rcvd else None
                    break
                except asyncio.TimeoutError:
                    break       # not read from any more: see below
            if code is None:
                try:
                    await asyncio.wait_for(ws.wait_closed(), 3)
                except asyncio.TimeoutError:
                    pass
                code = ws.close_code
            assert code == 1008, code
            assert ws.close_reason == "rate limit exceeded", ws.close_reason
            assert metrics(srv.port)["xraptor_rate_limit_closes_total"] == 1
            await other.send(request("o2", "/echo", "GET", "y"))
            assert (await recv_json(other))["header"] == {}


@test
async def test_rate_limit_at_the_rate_is_never_refused_and_bytes_are_limited():
    with proto("--rate-limit", "10", "--rate-limit-burst", "2") as srv:
        async with websockets.connect(srv.url()) as ws:
            # Paced at 8 a second for 2 s: every one answered.
            for i in range(16):
                await ws.send(request(f"p{i}", "/echo", "GET", "x"))
                assert (await recv_json(ws))["header"] == {}, i
                await asyncio.sleep(0.125)
    with proto("--rate-limit-bytes", "1k") as srv:
        async with websockets.connect(srv.url()) as ws:
            big = "x" * 600
            for i in range(3):
                await ws.send(request(f"k{i}", "/echo", "GET", big))
            got = [await recv_json(ws) for _ in range(3)]
            assert got[0]["header"] == {}, got[0]["header"]
            assert [r["header"].get("error") for r in got[1:]] == ["rate_limited"] * 2
            wait = got[1]["header"]["retry_after"]
            assert 0.2 < wait < 0.7, wait
            await asyncio.sleep(wait + 0.05)
            await ws.send(request("k3", "/echo", "GET", big))
            assert (await recv_json(ws))["header"] == {}


@test
async def test_rate_limit_flags_checked():
    for args, word in ((["--rate-limit-burst", "5"], "--rate-limit-burst"),
                       (["--rate-limit-strikes", "5"], "--rate-limit-strikes"),
                       (["--rate-limit-bytes", "1k", "--rate-limit-burst", "5"], "needs --rate-limit"),
                       (["--rate-limit", "ten"], "--rate-limit")):
        with Server(*args, binary=PROTOSERVER, expect_start=False) as srv:
            assert srv.wait(5) == 2, args
            assert word in srv.log(), (args, srv.log())


@test
async def test_async_reply_after_client_left_is_a_no_op():
    with proto() as srv:
        ws = await websockets.connect(srv.url())
        await ws.send(request("gone", "/later", "POST"))
        await ws.close()
        srv.wait_log(r"late reply: connection closed")
        async with websockets.connect(srv.url()) as ws:
            await ws.send(request("e", "/echo", "GET", "alive"))
            assert (await recv_json(ws))["payload"] == "alive"


@test
async def test_sub_then_publish_reaches_client_until_unsub():
    with proto() as srv:
        async with websockets.connect(srv.url()) as sub, websockets.connect(srv.url()) as pub:
            await sub.send(request("chan-1", "/stream", "SUB"))
            assert (await recv_json(sub))["payload"] == '{"message": "subscribed"}'
            for i in range(3):
                await pub.send(request(f"p{i}", "/publish", "POST", f"chan-1|message {i}"))
                assert (await recv_json(pub))["payload"] == "published"
            for i in range(3):
                r = await recv_json(sub)
                assert r == {"request_id": "chan-1", "payload": f"message {i}", "header": {},
                             "method": "SUB"}, r
            await sub.send(request("chan-1", "/stream", "UNSUB"))
            r = await recv_json(sub)
            assert r["payload"] == "bye" and r["method"] == "UNSUB"
            await pub.send(request("p9", "/publish", "POST", "chan-1|after unsub"))
            await recv_json(pub)
            assert await no_message(sub)
            assert metrics(srv.port)["xraptor_channels"] == 0


@test
async def test_sub_delivery_escapes_the_request_id_and_payload():
    # The channel's id and the message are written into every delivery:
    # an id with a quote or a backslash must stay one JSON string, never
    # break the frame or inject members.
    ids = ['q"uote', "back\\slash", 'x","method":"GET', "caf\u00e9 \u2603"]
    with proto() as srv:
        async with websockets.connect(srv.url()) as sub, websockets.connect(srv.url()) as pub:
            for rid in ids:
                await sub.send(request(rid, "/stream", "SUB"))
                r = await recv_json(sub)
                assert r["request_id"] == rid and r["payload"] == '{"message": "subscribed"}', r
            for rid in ids:
                await pub.send(request("p", "/publish", "POST", f'{rid}|said "hi" \\ there'))
                assert (await recv_json(pub))["payload"] == "published"
                r = await recv_json(sub)
                assert r == {"request_id": rid, "payload": 'said "hi" \\ there', "header": {},
                             "method": "SUB"}, r


@test
async def test_disconnect_closes_channels_and_leaves_rooms():
    with proto() as srv:
        ws = await websockets.connect(srv.url())
        for i in range(5):
            await ws.send(request(f"c{i}", "/stream", "SUB"))
            await recv_json(ws)
            await ws.send(request(f"j{i}", "/room/join", "POST", f"room-{i % 2}|c{i}"))
            assert (await recv_json(ws))["payload"] == "ok"
        m = metrics(srv.port)
        assert m["xraptor_channels"] == 5 and m["xraptor_rooms"] == 2, m
        await ws.close()
        wait_until(lambda: metrics(srv.port)["xraptor_connections_active"] == 0, 10, "closed")
        m = metrics(srv.port)
        assert m["xraptor_channels"] == 0 and m["xraptor_rooms"] == 0, m


@test
async def test_room_delivers_to_members_only_and_prunes_dead_ones():
    with proto("--room-check-interval", "0.3") as srv:
        async with websockets.connect(srv.url()) as a, websockets.connect(srv.url()) as b:
            await a.send(request("ma", "/stream", "SUB")); await recv_json(a)
            await b.send(request("mb", "/stream", "SUB")); await recv_json(b)
            for rid, body in (("j1", "lobby|ma"), ("j2", "lobby|mb"), ("j3", "lobby|ghost"),
                              ("j4", "other|mb")):
                await a.send(request(rid, "/room/join", "POST", body))
                assert (await recv_json(a))["payload"] == "ok"
            await a.send(request("s", "/room/size", "GET", "lobby"))
            assert (await recv_json(a))["payload"] == "3"
            await a.send(request("p", "/publish", "POST", "lobby|hello room"))
            assert (await recv_json(a))["payload"] == "published"
            ra, rb = await recv_json(a), await recv_json(b)
            assert ra["request_id"] == "ma" and ra["payload"] == "hello room", ra
            assert rb["request_id"] == "mb" and rb["payload"] == "hello room", rb
            # "ghost" has no listener anywhere: pruned by the next check.
            wait_until(lambda: metrics(srv.port)["xraptor_room_members_pruned_total"] >= 1, 10,
                       "a room check")
            await a.send(request("s2", "/room/size", "GET", "lobby"))
            assert (await recv_json(a))["payload"] == "2"
            assert metrics(srv.port)["xraptor_room_members_pruned_total"] == 1
            await a.send(request("l", "/room/leave", "POST", "lobby|ma"))
            assert (await recv_json(a))["payload"] == "ok"
            await a.send(request("p2", "/publish", "POST", "lobby|second"))
            await recv_json(a)
            assert (await recv_json(b))["payload"] == "second"
            assert await no_message(a)


@test
async def test_many_rooms_many_members_each_get_their_room_only():
    rooms, members = 10, 8
    with proto() as srv:
        clients = []
        for r in range(rooms):
            for m in range(members):
                ws = await websockets.connect(srv.url())
                rid = f"r{r}m{m}"
                await ws.send(request(rid, "/stream", "SUB")); await recv_json(ws)
                await ws.send(request("j", "/room/join", "POST", f"room{r}|{rid}"))
                assert (await recv_json(ws))["payload"] == "ok"
                clients.append((r, ws))
        pub = clients[0][1]
        for r in range(rooms):
            await pub.send(request(f"p{r}", "/publish", "POST", f"room{r}|to room {r}"))
        got = 0
        for r, ws in clients:
            msgs = []
            # The publisher also gets one "published" per room.
            while len(msgs) < (rooms + 1 if ws is pub else 1):
                msgs.append(await recv_json(ws))
            sub = [x for x in msgs if x["method"] == "SUB"]
            assert len(sub) == 1 and sub[0]["payload"] == f"to room {r}", (r, msgs)
            got += 1
        assert got == rooms * members
        # Nothing more for anyone: a second delivery (or another room's
        # message) would be waiting by now.
        await asyncio.sleep(0.3)
        for r, ws in clients:
            assert await no_message(ws, 0.01), r
        for _, ws in clients:
            await ws.close()


if __name__ == "__main__":
    run()
