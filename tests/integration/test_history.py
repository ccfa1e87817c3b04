# SPDX-License-Identifier: Apache-2.0
"""History and recovery (--history-size, --history-ttl, --history-room):
positions on every delivery, a client away for a moment gets exactly what
it missed once and in order then the live stream, recovered: false (and
nothing replayed) when too much was missed, the history expired or was
lost (a new epoch), a quiet channel past its TTL recovers with nothing,
recovery racing a publisher has no gap and no duplicate, and malformed
positions are refused with the connection kept. Through xraptor-chat,
whose SUB joins the room chat_id: the room is the stream recovered."""
import asyncio
import json
import os
import tempfile
import time

import jwt

import websockets

from histtest import (HISTORY, answer, away_for, deliveries, position, positions_told, post,
                      post_at, publisher, quiet_past_ttl, racing, sub, subscribed, text)
from xrtest import (CHAT, Server, frame, no_message, read_frame, recv_json, request, run, test,
                    ws_open)

@test
async def test_deliveries_carry_their_position():
    with Server(*HISTORY, binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as ws:
            first = await subscribed(ws, "s", "r")
            assert first["header"]["offset"] == 1 and first["header"]["epoch"], first
            await ws.send(post("p", "r", "two"))
            await recv_json(ws)
            m = await recv_json(ws)
            assert m["header"] == {"offset": 2, "epoch": first["header"]["epoch"]}, m
    # Without history the wire is as it was: header {}.
    with Server(binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as ws:
            assert (await subscribed(ws, "s", "r"))["header"] == {}


@test
async def test_a_client_away_gets_exactly_what_it_missed_then_live():
    with Server(*HISTORY, binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as pub:
            a = await websockets.connect(srv.url(), max_queue=None)
            await subscribed(a, "a", "r")
            posting = asyncio.ensure_future(publisher(pub, "r", 1000))
            seen = []
            while len(seen) < 300:
                seen.append(await recv_json(a))
            await a.close()
            await asyncio.sleep(0.2)
            b = await websockets.connect(srv.url(), max_queue=None)
            since = position(seen[-1])
            await b.send(sub("b", "r", since))
            h = await answer(b, "b")
            assert h["recovered"] is True and h["epoch"] == since["epoch"], h
            assert h["offset"] > since["offset"] + 1, "nothing was missed: the test proves nothing"
            rest = await deliveries(b, "m999", 15)
            await posting
            offsets = [m["header"]["offset"] for m in rest]
            assert offsets == list(range(since["offset"] + 1, since["offset"] + 1 + len(rest))), \
                "a gap or a duplicate"
            # The probe was offset 1, m<i> is offset i + 2.
            assert [text(m) for m in rest] == [f"m{o - 2}" for o in offsets]
            assert await no_message(b, 0.3), "a message twice"
            await b.close()
            print(f"# recovered {h['offset'] - since['offset']} missed of 1000, "
                  f"{len(rest)} in all without a gap")


@test
async def test_more_missed_than_kept_is_not_recovered_and_nothing_replayed():
    with Server(*HISTORY, "--history-max-recover", "50", binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as pub:
            a = await websockets.connect(srv.url())
            since = position(await subscribed(a, "a", "r"))
            await a.close()
            # 60 missed: past --history-max-recover (50), within the 300 kept.
            await publisher(pub, "r", 60, 0)
            b = await websockets.connect(srv.url())
            await b.send(sub("b", "r", since))
            h = await answer(b, "b")
            assert h == {"recovered": False, "offset": 61, "epoch": since["epoch"]}, h
            assert await no_message(b, 0.3), "replayed although not recovered"
            # 400 missed: past the 300 kept.
            await publisher(pub, "r", 400, 0, first=60)
            await b.send(sub("c", "r", {"offset": 61, "epoch": since["epoch"]}))
            # b's channel b gets the posts live meanwhile: only c's answer counts.
            while True:
                m = await recv_json(b)
                if m["request_id"] == "c":
                    break
                assert m["request_id"] == "b", m
            assert m["header"] == {"recovered": False, "offset": 461, "epoch": since["epoch"]}, m
            await pub.send(post("live", "r", "live"))
            # Both of b's channels are in the room: read until each has it.
            got = {"b": [], "c": []}
            while [text(m) for m in got["b"]][-1:] != ["live"] or \
                    [text(m) for m in got["c"]][-1:] != ["live"]:
                m = await recv_json(b)
                got[m["request_id"]].append(m)
            assert [text(m) for m in got["c"]] == ["live"], ("c got more than the live stream", got["c"])
            await b.close()


@test
async def test_the_window_edges_are_exact():
    # Exactly as many missed as kept (or as --history-max-recover allows)
    # recovers them all; one more is "not recovered", nothing replayed.
    with Server("--history-size", "5", "--history-ttl", "300",
                "--history-max-recover", "8", binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as pub:
            h, since, got = await away_for(srv, pub, "r", 5, 0)
            assert h["recovered"] is True and h["offset"] == since["offset"] + 5, h
            assert got == [f"m{i}" for i in range(5)] + ["live"], got
            h, since, got = await away_for(srv, pub, "r", 6, 10)
            assert h["recovered"] is False and h["offset"] == since["offset"] + 6, h
            assert got == ["live"], got
    with Server("--history-size", "300", "--history-ttl", "300",
                "--history-max-recover", "8", binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as pub:
            h, since, got = await away_for(srv, pub, "r", 8, 0)
            assert h["recovered"] is True, h
            assert got == [f"m{i}" for i in range(8)] + ["live"], got
            h, since, got = await away_for(srv, pub, "r", 9, 10)
            assert h["recovered"] is False, h
            assert got == ["live"], got


@test
async def test_a_lost_history_is_a_new_epoch_never_an_old_message():
    with Server(*HISTORY, binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as a:
            since = position(await subscribed(a, "a", "r"))
            await publisher(a, "r", 0)
    # memory:// keeps history in the process: a restart loses it.
    with Server(*HISTORY, binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as pub, websockets.connect(srv.url()) as b:
            await publisher(pub, "r", 3, 0)
            await b.send(sub("b", "r", since))
            h = await answer(b, "b")
            assert h["recovered"] is False and h["epoch"] != since["epoch"] and h["offset"] == 3, h
            assert await no_message(b, 0.3), "a message of another history"
            await pub.send(post("live", "r", "live"))
            m = await recv_json(b)
            assert text(m) == "live" and m["header"]["offset"] == 4, m


@test
async def test_a_quiet_channel_past_its_ttl_recovers_at_the_newest_position():
    with Server("--history-room", "q* 100 1", binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as pub:
            b, first = await quiet_past_ttl(srv, pub)
            # Rooms the pattern leaves out keep no history.
            await b.send(sub("d", "other", first))
            assert await answer(b, "d") == {"recovered": False}
            await b.close()


@test
async def test_recovery_racing_a_publisher_has_no_gap_and_no_duplicate():
    with Server(*HISTORY, binary=CHAT) as srv:
        n = 1000
        took, sent = await racing(srv, srv, n)
        print(f"# {n} recoveries racing a publisher in {took:.1f} s, "
              f"{sent} posts, none with a gap or a duplicate")


@test
async def test_a_post_read_with_the_recovery_goes_out_once():
    # A post and a recovering SUB in one TCP write are read in one turn:
    # the post reaches the antenna before the history question, so it is
    # both in the read and delivered to the recovering channel while the
    # read is answered. Every time, not by the luck of a race.
    with Server(*HISTORY, binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as pub:
            since = position(await subscribed(pub, "w", "r"))
            await publisher(pub, "r", 3, 0)
            for _ in range(3):
                await recv_json(pub)
            s = ws_open(srv.port)
            try:
                s.settimeout(5)
                s.sendall(frame(1, post("p", "r", "both")) + frame(1, sub("c", "r", since)))
                loop = asyncio.get_running_loop()

                async def one():
                    fin, op, data = await loop.run_in_executor(None, read_frame, s)
                    assert fin and op == 1, (fin, op, data)
                    return json.loads(data)
                got = [await one() for _ in range(2 + 4)]
                await pub.send(post("l", "r", "live"))
                while got[-1]["payload"] == "" or text(got[-1]) != "live":
                    got.append(await one())
                    assert len(got) <= 12, ("more than owed", got)
            finally:
                s.close()
    rids = [m["request_id"] for m in got]
    assert rids[0] == "p" and rids[1] == "c" and got[1]["header"]["recovered"] is True, got[:2]
    offsets = [m["header"]["offset"] for m in got[2:]]
    assert offsets == list(range(since["offset"] + 1, since["offset"] + 1 + len(offsets))), \
        ("a gap or a duplicate", offsets)
    assert [text(m) for m in got[2:]] == ["m0", "m1", "m2", "both", "live"], got[2:]


@test
async def test_a_post_is_told_its_position():
    # xr_publish_at, through the chat's POST with header {"position": true}.
    with Server("--history-room", "r* 300 300", binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as pub, websockets.connect(srv.url()) as w:
            first = position(await subscribed(w, "w", "r"))
            told = await positions_told([pub], w, "r", 200)
            assert sorted(o for o, _ in told.values()) == list(range(2, 202))
            assert {e for _, e in told.values()} == {first["epoch"]}
            # A room without history: the answer as always, no position.
            await pub.send(post_at("plain", "other", "x"))
            m = await recv_json(pub)
            assert json.loads(m["payload"]) == {"message": "Message sent"}, m


@test
async def test_malformed_positions_are_refused_and_the_connection_stays():
    with Server(*HISTORY, binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as ws:
            for k, since in enumerate((5, "1", [], {"offset": "1", "epoch": "e"},
                                       {"offset": 1.5, "epoch": "e"}, {"offset": -1, "epoch": "e"},
                                       {"offset": 2 ** 53, "epoch": "e"}, {"offset": 1},
                                       {"epoch": "e"}, {"offset": 1, "epoch": ""},
                                       {"offset": 1, "epoch": 7},
                                       {"offset": 1, "epoch": "e" * 10240})):
                await ws.send(sub(f"bad{k}", "r", since))
                m = await recv_json(ws)
                assert m["request_id"] == f"bad{k}" and m["header"] == {"error": "bad_request"}, m
                assert "since" in json.loads(m["payload"])["message"], m
            # Refused SUBs hold nothing, and the connection works on.
            first = await subscribed(ws, "ok", "r")
            assert first["header"]["offset"] == 1 and first["request_id"] == "ok"
            assert await no_message(ws, 0.3)


@test
async def test_the_newest_messages_are_read_back_for_load_earlier():
    # GET /xraptor/history: the newest N kept, oldest first, each payload
    # as its delivery carried it, and the position now; the read is
    # bounded and checked like any request.
    with Server("--history-size", "5", "--history-ttl", "300", binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as ws:
            await subscribed(ws, "w", "r")          # the probe is message 1
            await publisher(ws, "r", 7)             # m0..m6: offsets 2..8
            await deliveries(ws, "m6")

            async def read(payload):
                await ws.send(request("h", "/xraptor/history", "GET", json.dumps(payload)))
                return await recv_json(ws)

            m = await read({"channel": "r", "limit": 3})
            got = json.loads(m["payload"])
            assert m["request_id"] == "h" and got["offset"] == 8 and got["epoch"], m
            assert [(x["offset"], text({"payload": x["payload"]})) for x in got["messages"]] == \
                [(6, "m4"), (7, "m5"), (8, "m6")], got
            # More than kept: what is kept, the newest 5.
            got = json.loads((await read({"channel": "r", "limit": 1000}))["payload"])
            assert [x["offset"] for x in got["messages"]] == [4, 5, 6, 7, 8], got
            # The default is 100: all 5 again.
            got = json.loads((await read({"channel": "r"}))["payload"])
            assert len(got["messages"]) == 5, got
            # A channel with history but nothing posted: empty, offset 0.
            got = json.loads((await read({"channel": "quiet"}))["payload"])
            assert got["messages"] == [] and got["offset"] == 0, got
            # The chat's own route, through the C call xr_history_read.
            await ws.send(request("c", "/chat_history", "GET",
                                  json.dumps({"chat_id": "r", "limit": 2})))
            m = await recv_json(ws)
            got = json.loads(m["payload"])
            assert m["request_id"] == "c" and got["offset"] == 8, m
            assert [text({"payload": x["payload"]}) for x in got["messages"]] == ["m5", "m6"], got
            await ws.send(request("c", "/chat_history", "GET",
                                  json.dumps({"chat_id": "r", "limit": 1001})))
            m = await recv_json(ws)
            assert "limit" in json.loads(m["payload"])["reason"], m
            for bad in ({"channel": "r", "limit": 0}, {"channel": "r", "limit": 1001},
                        {"channel": "r", "limit": "3"}, {"limit": 3}, {"channel": ""},
                        {"channel": "a\nb"}):
                m = await read(bad)
                assert m["header"] == {"error": "bad_request"}, (bad, m)
            assert await no_message(ws, 0.2)
    # A token's grants bound what may be read: rooms chat.* only.
    with tempfile.TemporaryDirectory() as d:
        key = os.path.join(d, "hs.key")
        with open(key, "wb") as f:
            f.write(b"history-test-secret-of-32-bytes!")
        token = jwt.encode({"sub": "ana", "exp": int(time.time()) + 300,
                            "xraptor": {"rooms": ["chat.*"]}},
                           b"history-test-secret-of-32-bytes!", algorithm="HS256")
        with Server("--jwt-key", key, *HISTORY, binary=CHAT) as srv:
            async with websockets.connect(srv.url(f"/?token={token}")) as ws:
                for room, want in (("chat.a", None), ("other", "forbidden")):
                    await ws.send(request("h", "/xraptor/history", "GET",
                                          json.dumps({"channel": room})))
                    m = await recv_json(ws)
                    assert m["header"].get("error") == want, (room, m)
    # Without history for the name: said so.
    with Server("--history-room", "chat.* 5 300", binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as ws:
            await ws.send(request("h", "/xraptor/history", "GET", json.dumps({"channel": "r"})))
            m = await recv_json(ws)
            assert m["header"] == {"error": "bad_request"} and "no history" in m["payload"], m
            await ws.send(request("c", "/chat_history", "GET", json.dumps({"chat_id": "r"})))
            m = await recv_json(ws)
            assert json.loads(m["payload"])["reason"] == "this room keeps no history", m


@test
async def test_an_antenna_without_history_says_so_and_never_claims_a_recovery():
    # tests/antenna/oldmemory.so: the memory antenna built against the ABI
    # 2.0 header, without the history members (a third-party module of an
    # older minor): the node starts, says so once, and a recovery is
    # answered "not recovered" instead of replaying nothing as if nothing
    # had been missed.
    old = os.path.join(os.environ.get("XRAPTOR_TEST_MODULES", ""), "oldmemory.so")
    with Server("--antenna", old, *HISTORY, binary=CHAT) as srv:
        assert srv.log().count("keeps none") == 1, srv.log()
        async with websockets.connect(srv.url()) as ws:
            m = await subscribed(ws, "w", "r")
            assert "offset" not in m["header"], m
            await ws.send(sub("again", "r", {"offset": 1, "epoch": "e"}))
            h = await answer(ws, "again")
            assert h["recovered"] is False, h
            assert await no_message(ws, 0.3)


@test
def test_history_flags_are_checked():
    for args, why in ((("--history-size", "10"), "go together"),
                      (("--history-ttl", "10"), "go together"),
                      (("--history-room", "chat.*"), "PATTERN N SECS"),
                      (("--history-room", "chat.* 0 10"), "from 1"),
                      (("--history-room", "chat.* 10 -1"), "from 1"),
                      (("--history-size", "10", "--history-ttl", "5", "--history-max-recover",
                        "0"), "at least 1")):
        s = Server(*args, binary=CHAT, expect_start=False)
        assert s.proc.wait(10) != 0, args
        assert why in s.log(), (args, s.log())


@test
async def test_a_room_left_and_joined_again_replays_nothing_nobody_asked_for():
    # The node forgets a stream's position when nobody here listens any
    # more: posts made meanwhile are no hole to repair for the next SUB.
    with Server(*HISTORY, binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as pub:
            for k in range(3):
                async with websockets.connect(srv.url()) as c:
                    await subscribed(c, "c", "r")
                await asyncio.sleep(0.1)
                for i in range(4):
                    await pub.send(post("p", "r", f"away{k}.{i}"))
                    assert (await recv_json(pub))["request_id"] == "p"
                async with websockets.connect(srv.url()) as d:
                    m = await subscribed(d, "d", "r")
                    assert text(m) == "probe", m
                    await pub.send(post("p", "r", f"now{k}"))
                    assert (await recv_json(pub))["request_id"] == "p"
                    assert text(await recv_json(d)) == f"now{k}"
                    assert await no_message(d, 0.2)


if __name__ == "__main__":
    run()
