# SPDX-License-Identifier: Apache-2.0
"""History and recovery on kafka:// with a real Kafka-protocol broker
(librdkafka's mock cluster): the topic is the history, a position is the
message's offset in its partition plus one (offsets skip: the partition's
other channels and the presence heartbeats take the numbers between), the
epoch names the cluster, the topic, the partition and the partition
count. A client recovers on another node what was posted on the first,
recoveries racing a publisher on the other node have no gap and no
duplicate, posts on two nodes are each told their position, the size and
the TTL are applied as the log is read, a log truncated past a position
is never recovered across, another cluster is another epoch, and the
history read. Through xraptor-chat: the room is the stream recovered."""
import asyncio
import json
import os

import websockets

from histtest import (HISTORY, answer, deliveries, position, post, publisher,
                      racing, recovers_on_another_node, sub, subscribed, text, told_on_two_nodes)
from kafkamock import MOCK, KafkaMock
from xrtest import CHAT, Server, healthy, no_message, recv_json, request, run, skip_all, test, \
    wait_until


def node(broker, *args):
    srv = Server("--antenna", f"kafka://{broker.bootstrap}/xraptor", *(args or HISTORY),
                 binary=CHAT)
    wait_until(lambda: healthy(srv.port), 30, "antenna connected")
    return srv


async def away(srv, pub, room, posts, since=None):
    """A member leaves at since (or after a probe), `posts` go out and
    reach the node, it comes back: the answer, and the texts up to a live
    post after it."""
    async with websockets.connect(srv.url()) as a:
        probe = position(await subscribed(a, "a", room))
        since = since or probe
        for m in posts:
            await pub.send(post("p", room, m))
            assert json.loads((await recv_json(pub))["payload"])["message"] == "Message sent"
        # A post is answered once it is on its way: missed only once here.
        if posts:
            await deliveries(a, posts[-1])
    async with websockets.connect(srv.url()) as b:
        await b.send(sub("b", room, since))
        h = await answer(b, "b")
        await pub.send(post("live", room, "live"))
        await recv_json(pub)
        got = await deliveries(b, "live")
        assert [m["header"]["offset"] for m in got] == \
            sorted({m["header"]["offset"] for m in got}), "offsets that do not grow"
        return h, since, [text(m) for m in got]


@test
async def test_a_client_recovers_on_another_node_what_was_posted_meanwhile():
    # Deliveries through Kafka lag the posts (a fetch waits up to 10 ms):
    # the member that stopped at m99 missed more than the 0.2 s it was
    # away, so the size is more than the other antennas' 300.
    kafka = KafkaMock()
    sized = ("--history-size", "1000", "--history-ttl", "300")
    with node(kafka, *sized) as a, node(kafka, *sized) as b:
        assert "keeps none" not in a.log(), a.log()
        missed, got = await recovers_on_another_node(a, b, dense=False)
        print(f"# recovered {missed} missed on the other node, {got} in all without a gap")


@test
async def test_recoveries_racing_a_publisher_on_another_node_have_no_gap_and_no_duplicate():
    kafka = KafkaMock()
    with node(kafka) as a, node(kafka) as b:
        n = 300
        took, sent = await racing(a, b, n, dense=False)
        print(f"# {n} recoveries on one node racing a publisher on the other in {took:.1f} s, "
              f"{sent} posts, no gap, no duplicate")


@test
async def test_posts_on_two_nodes_are_told_their_positions():
    # A post's position is its offset, told by the broker's acknowledgement:
    # posts racing on two nodes each learn the one its deliveries carry.
    kafka = KafkaMock()
    with node(kafka) as a, node(kafka) as b:
        await told_on_two_nodes(a, b, dense=False)


@test
async def test_the_size_and_the_ttl_are_applied_as_the_log_is_read():
    kafka = KafkaMock()
    with node(kafka, "--history-size", "5", "--history-ttl", "300",
              "--history-room", "q* 100 1") as srv:
        async with websockets.connect(srv.url()) as pub:
            h, since, got = await away(srv, pub, "r", [f"m{i}" for i in range(5)])
            assert h["recovered"] is True and h["offset"] > since["offset"], h
            assert got == [f"m{i}" for i in range(5)] + ["live"], got
            # Six missed of a size of five: the log has them all, the
            # history does not.
            h, since, got = await away(srv, pub, "r", [f"n{i}" for i in range(6)])
            assert h["recovered"] is False and h["epoch"] == since["epoch"], h
            assert got == ["live"], got
            # A quiet room past its TTL (1 s): at the newest position,
            # recovered with nothing to replay; from before what expired, not.
            async with websockets.connect(srv.url()) as a:
                first = position(await subscribed(a, "a", "quiet"))
                await publisher(pub, "quiet", 2, 0)
                newest = position((await deliveries(a, "m1"))[-1])
            await asyncio.sleep(1.5)
            async with websockets.connect(srv.url()) as b:
                await b.send(sub("b", "quiet", newest))
                h = await answer(b, "b")
                assert h["recovered"] is True and h["epoch"] == newest["epoch"], h
                assert h["offset"] >= newest["offset"], h
                assert await no_message(b, 0.3)
                await b.send(sub("c", "quiet", first))
                h = await answer(b, "c")
                assert h["recovered"] is False, h
                assert await no_message(b, 0.3)


@test
async def test_a_log_truncated_past_a_position_is_never_recovered_across():
    # The mock keeps 5 MiB a partition: 8 posts of 800 kB to another room
    # of the one partition push the log's start past the member's position.
    kafka = KafkaMock(partitions=1)
    with node(kafka) as srv:
        async with websockets.connect(srv.url()) as pub:
            h, since, got = await away(srv, pub, "r", ["kept"])
            assert h["recovered"] is True and got == ["kept", "live"], (h, got)
            big = "x" * 800_000
            for _ in range(8):
                await pub.send(post("big", "other", big))
                assert json.loads((await recv_json(pub, 20))["payload"])["message"] == \
                    "Message sent"
            h, _, got = await away(srv, pub, "r", ["lost"], since)
            assert h["recovered"] is False and h["epoch"] == since["epoch"], h
            assert got == ["live"], ("an old message, or one across the hole", got)


@test
async def test_another_cluster_is_another_epoch():
    # Offsets start again on a cluster that lost everything (or another
    # one): the cluster's id is in the epoch, so no position carries over.
    one, two = KafkaMock(), KafkaMock()
    with node(one) as a, node(two) as b:
        async with websockets.connect(a.url()) as wa, websockets.connect(b.url()) as wb:
            pa = position(await subscribed(wa, "a", "r"))
            pb = position(await subscribed(wb, "b", "r"))
            assert pa["epoch"] != pb["epoch"], (pa, pb)
            await wb.send(sub("c", "r", pa))
            h = await answer(wb, "c")
            assert h["recovered"] is False and h["epoch"] == pb["epoch"], h
            assert await no_message(wb, 0.3), "a message of another history"


@test
async def test_the_newest_messages_are_read_back_for_load_earlier():
    kafka = KafkaMock()
    with node(kafka, "--history-size", "5", "--history-ttl", "300") as srv:
        async with websockets.connect(srv.url()) as ws:
            await subscribed(ws, "w", "r")
            async with websockets.connect(srv.url()) as pub:
                await publisher(pub, "r", 7)
            sent = {text(m): m["header"]["offset"] for m in await deliveries(ws, "m6")}

            async def read(payload):
                await ws.send(request("h", "/xraptor/history", "GET", json.dumps(payload)))
                return json.loads((await recv_json(ws))["payload"])

            got = await read({"channel": "r", "limit": 3})
            assert [(x["offset"], text(x)) for x in got["messages"]] == \
                [(sent[m], m) for m in ("m4", "m5", "m6")], got
            assert got["offset"] >= sent["m6"], got
            # The size (5) bounds a read as it bounds a recovery.
            got = await read({"channel": "r", "limit": 1000})
            assert [text(x) for x in got["messages"]] == ["m2", "m3", "m4", "m5", "m6"], got
            got = await read({"channel": "quiet"})
            assert got["messages"] == [] and got["epoch"], got


if __name__ == "__main__":
    if not os.access(MOCK, os.X_OK):
        skip_all(f"no {MOCK} (the Kafka antenna was not built: apt-get install librdkafka-dev)")
    run()
