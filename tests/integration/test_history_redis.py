# SPDX-License-Identifier: Apache-2.0
"""History and recovery on redis:// with a real redis-server: positions
given by Redis (one script: offset, stream entry and PUBLISH at once), a
client recovers on another node what was posted on the first, recoveries
racing a publisher on the other node have no gap and no duplicate, a
flushed Redis is a new epoch and never an old message, the window and the
TTL are kept by Redis, the history read, and a malformed position from
the broker is dropped, not delivered. The two windows of a recovery (the
read before its SUBSCRIBE took effect, the answer before the read's
messages came in live) are forced open by a relay that holds one
connection's bytes. Through xraptor-chat: the room is the stream
recovered."""
import asyncio
import json
import shutil
import time

import websockets

from histtest import (HISTORY, Throttled, answer, away_for, busy_past_ttl, deliveries, position,
                      post, publisher, quiet_past_ttl, racing, read_back_newest,
                      recovers_on_another_node, sub, subscribed, text, told_on_two_nodes)
from xrtest import (CHAT, Broker, Server, frame, healthy, metrics, no_message, read_frame, recv_json,
                    Relay, resp, run, skip_all, test, wait_until, ws_open)

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def redis():
    return Broker(lambda port: [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"])


def node(broker, *args, port=None):
    srv = Server("--antenna", f"redis://127.0.0.1:{port or broker.port}", *(args or HISTORY),
                 binary=CHAT)
    wait_until(lambda: healthy(srv.port), 15, "antenna connected")
    return srv


@test
async def test_a_client_recovers_on_another_node_what_was_posted_meanwhile():
    with redis() as broker, node(broker) as a, node(broker) as b:
        assert "keeps none" not in a.log(), a.log()
        missed, got = await recovers_on_another_node(a, b)
        print(f"# recovered {missed} missed on the other node, {got} in all without a gap")


@test
async def test_recoveries_racing_a_publisher_on_another_node_have_no_gap_and_no_duplicate():
    with redis() as broker, node(broker) as a, node(broker) as b:
        n = 300
        took, sent = await racing(a, b, n)
        print(f"# {n} recoveries on one node racing a publisher on the other in {took:.1f} s, "
              f"{sent} posts, no gap, no duplicate")


@test
async def test_a_recovery_behind_a_burst_of_subscriptions_misses_nothing():
    # The read must follow the SUBSCRIBE into effect: here 2000 other
    # subscriptions go out ahead of it on the subscriber connection, while
    # the other node posts; a read run before the room's SUBSCRIBE took
    # effect would miss what was posted in between (neither read nor live).
    limits = ("--max-channels-per-connection", "5000", "--max-rooms-per-member", "5000")
    with redis() as broker, node(broker, *HISTORY, *limits) as a, node(broker) as b:
        # Nobody on node a is in the room between turns: each recovery's
        # SUBSCRIBE is a new one.
        async with websockets.connect(b.url()) as pub, websockets.connect(b.url()) as w:
            since = position(await subscribed(w, "w", "r"))
            loop = asyncio.get_running_loop()
            async with Throttled(pub, "r", since["offset"], pace=0.0003) as posting:
                for k in range(10):
                    s = ws_open(a.port)
                    try:
                        s.settimeout(20)
                        burst = b"".join(frame(1, sub(f"x{i}", f"room{k}.{i}")) for i in range(2000))
                        s.sendall(burst + frame(1, sub("c", "r", since)))
                        h, got = None, []
                        while h is None or not got or got[-1] < h["offset"] + 2:
                            fin, op, data = await loop.run_in_executor(None, read_frame, s)
                            if op == 9:
                                continue        # the server's keepalive
                            assert fin and op == 1, (k, op, data)
                            m = json.loads(data)
                            if m["request_id"] != "c":
                                continue
                            if m["payload"] == "":
                                h = m["header"]
                                assert h["recovered"] is True, (k, since, h)
                                # The publisher may go on past the answer.
                                posting.floor = max(since["offset"], h["offset"] - 100)
                            else:
                                got.append(m["header"]["offset"])
                        assert got == list(range(since["offset"] + 1, got[-1] + 1)), \
                            ("a gap or a duplicate", k, since, h, got)
                        since = {"offset": posting.floor, "epoch": h["epoch"]}
                    finally:
                        s.close()


@test
async def test_a_recovery_reads_only_once_its_subscribe_took_effect():
    # Node a's subscriber connection is slow (a relay holds what it sends):
    # the room's SUBSCRIBE waits while the other node posts. Read before
    # the SUBSCRIBE took effect, that post would be in neither the read
    # nor the live stream; read after it, the post is recovered.
    with redis() as broker, Relay(broker.port, b"SUBSCRIBE") as relay, \
            node(broker, port=relay.port) as a, node(broker) as b:
        async with websockets.connect(a.url()) as warm, websockets.connect(b.url()) as pub, \
                websockets.connect(b.url()) as watch:
            await subscribed(warm, "w", "warm")     # the relay learns which connection subscribes
            since = position(await subscribed(watch, "w", "r"))
            for k in range(3):
                relay.hold()
                c = await websockets.connect(a.url())
                try:
                    await c.send(sub("c", "r", since))
                    wait_until(lambda: b"$9\r\nSUBSCRIBE" in relay.held_bytes(), 10,
                               "the room's SUBSCRIBE held")
                    # A read sent at once has run within this second.
                    deadline = time.monotonic() + 1
                    while relay.passed_bytes(False, False) == 0 and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                    await pub.send(post("p", "r", f"missed{k}"))
                    assert (await recv_json(pub))["request_id"] == "p"
                    assert text(await recv_json(watch)) == f"missed{k}"
                    relay.release()
                    h = await answer(c, "c", 10)
                    assert h["recovered"] is True, h
                    await pub.send(post("p", "r", f"after{k}"))
                    got = await deliveries(c, f"after{k}")
                    assert [text(m) for m in got] == [f"missed{k}", f"after{k}"], \
                        ("the post made while the SUBSCRIBE was on its way is lost", k, got)
                    assert [m["header"]["offset"] for m in got] == \
                        [since["offset"] + 1, since["offset"] + 2], got
                    assert (await recv_json(pub))["request_id"] == "p"
                    since = position(got[-1])
                    assert text(await recv_json(watch)) == f"after{k}"
                finally:
                    relay.release()
                    await c.close()
                # Nobody on node a is in the room now: the next SUB subscribes anew.
                await asyncio.sleep(0.2)


@test
async def test_a_recovery_answers_only_once_what_it_read_came_in_live():
    # The read is held on its way to Redis while the other node posts, and
    # the post's live copy to node a is held behind it: the read returns the
    # post before node a has it live. Answered then, the live copy would
    # come after the answer and go out twice; answered after the second
    # PING, it is merged and goes out once.
    with redis() as broker, Relay(broker.port, b"SUBSCRIBE") as relay, \
            node(broker, port=relay.port) as a, node(broker) as b:
        async with websockets.connect(a.url()) as warm, websockets.connect(b.url()) as pub, \
                websockets.connect(b.url()) as watch:
            await subscribed(watch, "w", "r")
            since = position(await subscribed(warm, "w", "r"))
            assert text(await recv_json(watch)) == "probe"
            for k in range(3):
                relay.hold(sending=True, marked=False)      # node a's commands
                c = await websockets.connect(a.url())
                try:
                    await c.send(sub("c", "r", since))
                    wait_until(lambda: b"XREVRANGE" in relay.held_bytes(True, False), 10,
                               "the history read held")
                    relay.hold(sending=False, marked=True)  # what Redis publishes to node a
                    await pub.send(post("p", "r", f"read{k}"))
                    assert (await recv_json(pub))["request_id"] == "p"
                    assert text(await recv_json(watch)) == f"read{k}"
                    relay.release(sending=True, marked=False)
                    wait_until(lambda: relay.passed_bytes(False, False) > 0, 10,
                               "the read's reply back at node a")
                    await asyncio.sleep(0.1)    # an answer sent at once is out by now
                    relay.release()
                    h = await answer(c, "c", 10)
                    assert h["recovered"] is True, h
                    await pub.send(post("p", "r", f"after{k}"))
                    got = await deliveries(c, f"after{k}")
                    assert [text(m) for m in got] == [f"read{k}", f"after{k}"], \
                        ("what the read returned went out twice", k, got)
                    assert (await recv_json(pub))["request_id"] == "p"
                    assert text(await recv_json(watch)) == f"after{k}"
                    assert [text(await recv_json(warm)) for _ in range(2)] == [f"read{k}", f"after{k}"]
                    since = position(got[-1])
                finally:
                    relay.release()
                    await c.close()


@test
async def test_a_node_whose_subscriber_connection_broke_delivers_what_it_missed():
    # Node a's subscriber connection to Redis is cut, and its new one's
    # SUBSCRIBE held while node b posts: those posts never come to node a
    # live. The first one after shows the hole by its offset; node a reads
    # the rest from the history and its client gets every message once, in
    # order. Node b keeps 5: a hole of more is told by the jump.
    with redis() as broker, Relay(broker.port, b"SUBSCRIBE") as relay, \
            node(broker, port=relay.port) as a, \
            node(broker, "--history-size", "5", "--history-ttl", "300") as b:
        async with websockets.connect(a.url()) as c, websockets.connect(b.url()) as pub, \
                websockets.connect(b.url()) as watch:
            await subscribed(watch, "w", "r")
            last = position(await subscribed(c, "c", "r"))["offset"]
            assert text(await recv_json(watch)) == "probe"
            for k, missed in enumerate((3, 4, 1, 9)):
                relay.hold(sending=True, marked=True)
                relay.cut()
                wait_until(lambda: b"$9\r\nSUBSCRIBE" in relay.held_bytes(), 15,
                           "the new SUBSCRIBE held")
                for i in range(missed):
                    await pub.send(post("p", "r", f"gap{k}.{i}"))
                    assert (await recv_json(pub))["request_id"] == "p"
                    assert text(await recv_json(watch)) == f"gap{k}.{i}"
                relay.release()
                wait_until(lambda: healthy(a.port), 15, "node a's antenna back")
                await pub.send(post("p", "r", f"after{k}"))
                assert (await recv_json(pub))["request_id"] == "p"
                got = await deliveries(c, f"after{k}")
                offsets = [m["header"]["offset"] for m in got]
                if missed + 1 <= 5:     # the hole and the post that shows it
                    assert [text(m) for m in got] == [f"gap{k}.{i}" for i in range(missed)] + \
                        [f"after{k}"], ("a hole in node a's stream", k, got)
                    assert offsets == list(range(last + 1, last + missed + 2)), (k, offsets)
                else:
                    # Not kept any more: the jump tells; nothing old, nothing twice.
                    assert [text(m) for m in got] == [f"after{k}"], (k, got)
                    assert offsets == [last + missed + 1], (k, offsets)
                last = offsets[-1]
                assert text(await recv_json(watch)) == f"after{k}"
            assert await no_message(c, 0.3), "a message twice"
            m = metrics(a.port)
            assert m["xraptor_history_gaps_repaired_total"] == 3, m
            assert m["xraptor_history_gaps_unrepaired_total"] == 1, m
            assert "delivered from the history" in a.log(), a.log()
            assert "the history no longer holds" in a.log(), a.log()


@test
async def test_a_post_read_with_the_recovery_goes_out_once():
    # A post and a recovering SUB in one write: the post is in the read
    # and comes back on the subscriber connection too; one copy goes out.
    with redis() as broker, node(broker) as srv:
        async with websockets.connect(srv.url()) as pub:
            since = position(await subscribed(pub, "w", "r"))
            await publisher(pub, "r", 3, 0)
            for _ in range(3):
                await recv_json(pub)
            for k in range(20):
                s = ws_open(srv.port)
                try:
                    s.settimeout(5)
                    s.sendall(frame(1, post("p", "r", f"both{k}")) + frame(1, sub("c", "r", since)))
                    loop = asyncio.get_running_loop()

                    async def one():
                        fin, op, data = await loop.run_in_executor(None, read_frame, s)
                        assert fin and op == 1, (fin, op, data)
                        return json.loads(data)
                    got = [await one() for _ in range(2)]
                    await pub.send(post("l", "r", f"live{k}"))
                    while not got[-1]["payload"] or text(got[-1]) != f"live{k}":
                        got.append(await one())
                        assert len(got) <= 2 * k + 12, ("more than owed", got)
                finally:
                    s.close()
                h = [m for m in got if m["request_id"] == "c" and m["payload"] == ""]
                assert len(h) == 1 and h[0]["header"]["recovered"] is True, got
                offsets = [m["header"]["offset"] for m in got if m["request_id"] == "c" and m["payload"]]
                assert offsets == list(range(since["offset"] + 1, since["offset"] + 1 + len(offsets))), \
                    ("a gap or a duplicate", k, offsets)


@test
async def test_posts_on_two_nodes_are_told_their_positions():
    # The position comes back from Redis' script: posts racing on two
    # nodes each learn the one its deliveries carry, none twice.
    with redis() as broker, node(broker) as a, node(broker) as b:
        await told_on_two_nodes(a, b)


@test
async def test_a_flushed_redis_is_a_new_epoch_never_an_old_message():
    with redis() as broker, node(broker) as srv:
        async with websockets.connect(srv.url()) as pub, websockets.connect(srv.url()) as w, \
                websockets.connect(srv.url()) as b:
            since = position(await subscribed(w, "w", "r"))
            await publisher(pub, "r", 3, 0)
            await deliveries(w, "m2")       # Redis ran all three
            resp(broker.port, "FLUSHALL")
            await pub.send(post("after", "r", "after"))
            await b.send(sub("b", "r", since))
            h = await answer(b, "b")
            assert h["recovered"] is False and h["epoch"] != since["epoch"], h
            assert h["offset"] == 1, ("offsets start again in the new epoch", h)
            assert await no_message(b, 0.3), "a message of another history"
            await pub.send(post("live", "r", "live"))
            m = await recv_json(b)
            assert text(m) == "live" and m["header"] == {"offset": 2, "epoch": h["epoch"]}, m


@test
async def test_the_window_and_the_ttl_are_kept_by_redis():
    with redis() as broker:
        with node(broker, "--history-size", "5", "--history-ttl", "300") as srv:
            async with websockets.connect(srv.url()) as pub:
                h, since, got = await away_for(srv, pub, "r", 5, 0)
                assert h["recovered"] is True and h["offset"] == since["offset"] + 5, h
                assert got == [f"m{i}" for i in range(5)] + ["live"], got
                h, since, got = await away_for(srv, pub, "r", 6, 10)
                assert h["recovered"] is False and h["offset"] == since["offset"] + 6, h
                assert got == ["live"], got
        stream = resp(broker.port, "XLEN", "xr.h.r.s")
        assert stream == 5, ("Redis keeps the newest 5", stream)
        with node(broker, "--history-room", "q* 100 1", "--history-room", "b* 100 3") as srv:
            async with websockets.connect(srv.url()) as pub:
                b, _ = await quiet_past_ttl(srv, pub)
                await b.close()
                # A busy channel keeps its stream alive: a message past its
                # TTL (3 s for b*) is still in Redis but is not handed out.
                await busy_past_ttl(srv, pub, lambda: resp(broker.port, "XLEN", "xr.h.busy.s"))


@test
async def test_the_newest_messages_are_read_back_from_redis():
    with redis() as broker, node(broker, "--history-size", "5", "--history-ttl", "300") as srv:
        async with websockets.connect(srv.url()) as ws:
            await read_back_newest(ws)


@test
async def test_a_malformed_position_from_the_broker_is_dropped():
    with redis() as broker, node(broker) as srv:
        async with websockets.connect(srv.url()) as ws:
            await subscribed(ws, "w", "r")
            for bad in (b"\0xr1 x e\nhello", b"\0xr1 0 e\nhello", b"\0xr1 1 \nhello",
                        b"\0xr1 1 e\x1b[31m\nhello", b"\0xr1 1 e", b"\0xr1 " + b"9" * 21 + b" e\nh"):
                resp(broker.port, "PUBLISH", "r", bad)
            resp(broker.port, "PUBLISH", "r", json.dumps({"message": "plain"}))
            m = await recv_json(ws)
            assert text(m) == "plain" and m["header"] == {}, m
            await ws.send(post("p", "r", "kept"))
            assert (await recv_json(ws))["request_id"] == "p"
            m = await recv_json(ws)
            assert text(m) == "kept" and m["header"]["offset"] == 2, m
        # Said once, not once each: a flood would fill the log.
        assert srv.log().count("position is malformed (1 so far)") == 1, srv.log()
        assert srv.log().count("position is malformed") == 1, srv.log()


if __name__ == "__main__":
    if not shutil.which(REDIS):
        skip_all("redis-server not installed (apt-get install redis-server)")
    run()
