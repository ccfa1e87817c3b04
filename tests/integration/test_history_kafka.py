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
is never recovered across, a position of another cluster is another
epoch, a node taken out of its consumer group resumes where it stood, and
the history read. Through xraptor-chat: the room is the stream
recovered."""
import asyncio
import json
import os
import signal

import websockets

from histtest import (HISTORY, answer, deliveries, position, post, publisher,
                      racing, recovers_on_another_node, sub, subscribed, text, told_on_two_nodes)
from kafkamock import MOCK, KafkaMock
from xrtest import CHAT, Server, healthy, metrics, no_message, recv_json, request, run, skip_all, \
    test, wait_until


def node(broker, *args):
    srv = Server("--antenna", f"kafka://{broker.bootstrap}/xraptor", *(args or HISTORY),
                 binary=CHAT)
    wait_until(lambda: healthy(srv.port), 30, "antenna connected")
    return srv


def no_hole_read(*nodes):
    """Offsets that skip are no hole: no node read its history for one."""
    for n in nodes:
        m = metrics(n.port)
        assert m["xraptor_history_gaps_repaired_total"] == 0 and \
            m["xraptor_history_gaps_unrepaired_total"] == 0, m


async def away(srv, pub, room, posts, since=None, other=None):
    """A member leaves at since (or after a probe), `posts` go out (each
    followed by one to room `other`, if given) and reach the node, it comes
    back: the answer, and the texts up to a live post after it."""
    async with websockets.connect(srv.url()) as a:
        probe = position(await subscribed(a, "a", room))
        since = since or probe
        for m in posts:
            for r in (room, other) if other else (room,):
                await pub.send(post("p", r, m))
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
        no_hole_read(a, b)
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
    # One partition: the posts of room "o" between take offsets, so the
    # five missed are counted as five, not by the offsets' difference.
    kafka = KafkaMock(partitions=1)
    with node(kafka, "--history-size", "5", "--history-ttl", "300",
              "--history-room", "q* 100 1") as srv:
        async with websockets.connect(srv.url()) as pub:
            h, since, got = await away(srv, pub, "r", [f"m{i}" for i in range(5)], other="o")
            assert h["recovered"] is True and h["offset"] > since["offset"] + 5, h
            assert got == [f"m{i}" for i in range(5)] + ["live"], got
            # The member that stayed got m0..m4 two offsets apart.
            no_hole_read(srv)
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
async def test_a_position_of_another_cluster_is_never_recovered():
    # Offsets start again on a cluster that lost everything (or on another
    # one): the epoch names the cluster (Kafka's id for it), so a position
    # from another is another epoch, never taken for this one's.
    kafka = KafkaMock()
    cluster = kafka.cluster_id()
    assert cluster and cluster != "unknown", cluster
    with node(kafka) as srv:
        async with websockets.connect(srv.url()) as w, websockets.connect(srv.url()) as b:
            first = position(await subscribed(w, "w", "r"))
            assert first["epoch"].startswith(cluster + "."), (cluster, first)
            other = {"offset": first["offset"],
                     "epoch": "another" + first["epoch"][len(cluster):]}
            await b.send(sub("b", "r", other))
            h = await answer(b, "b")
            assert h["recovered"] is False and h["epoch"] == first["epoch"], h
            assert await no_message(b, 0.3), "a message of another history"
            await b.send(sub("c", "r", first))
            assert (await answer(b, "c"))["recovered"] is True


@test
async def test_a_node_taken_out_of_its_group_resumes_where_it_stood():
    # A node stopped past its session timeout loses its partitions; given
    # them again, it goes on from the offset it had reached, not from the
    # end: what was posted meanwhile reaches its members, once, in order.
    kafka = KafkaMock(partitions=1)
    with node(kafka) as a, node(kafka) as b:
        async with websockets.connect(a.url(), ping_interval=None) as w, \
                websockets.connect(b.url()) as pub:
            await subscribed(w, "w", "r")
            os.kill(a.proc.pid, signal.SIGSTOP)
            try:
                await publisher(pub, "r", 5, 0)
                await asyncio.sleep(8)      # the group's session timeout is 6 s
            finally:
                os.kill(a.proc.pid, signal.SIGCONT)
            a.wait_log(r"antenna down: .*partitions revoked", 15)
            wait_until(lambda: healthy(a.port), 30, "assigned again")
            await publisher(pub, "r", 1, 0, first=5)
            got = await deliveries(w, "m5", 20)
            assert [text(m) for m in got] == [f"m{i}" for i in range(6)], [text(m) for m in got]


@test
async def test_the_newest_messages_are_read_back_for_load_earlier():
    # One partition: room "o"'s posts lie between and are none of r's.
    kafka = KafkaMock(partitions=1)
    with node(kafka, "--history-size", "5", "--history-ttl", "300") as srv:
        async with websockets.connect(srv.url()) as ws:
            await subscribed(ws, "w", "r")
            async with websockets.connect(srv.url()) as pub:
                for i in range(7):
                    await publisher(pub, "r", 1, first=i)
                    await publisher(pub, "o", 1, first=i)
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
