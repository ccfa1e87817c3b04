# SPDX-License-Identifier: Apache-2.0
"""History and recovery on redis-cluster:// with a real Redis Cluster (3
masters, 3 replicas): a post is one script on the master that owns the
channel's slot (offset, stream entry and SPUBLISH at once), its keys
carry the slot's tag so that they sit where the SPUBLISH goes whatever
braces the name holds; a client recovers on another node what was posted
on the first, rooms on every master; recoveries racing a publisher have
no gap and no duplicate; a flushed master is a new epoch; a node whose
subscriber connection broke fills the hole from the history."""
import asyncio
import binascii
import json
import shutil
import time

import websockets

from histtest import (HISTORY, answer, deliveries, position, positions_told, post, publisher,
                      racing, sub, subscribed, text)
from rcluster import REDIS, REDIS_CLI, RedisCluster, slot_of
from xrtest import (CHAT, Relay, Server, health, metrics, no_message, recv_json, request, resp,
                    run, skip_all, test, wait_until)

DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def tag_of(slot):
    """The slot's tag as the module names it: the first of 0..9, a..z, 00,
    01, ... that hashes to the slot (an independent implementation: the
    keys in Redis must keep these names across versions)."""
    length = 1
    while True:
        for i in range(36 ** length):
            t, x = "", i
            for _ in range(length):
                t = DIGITS[x % 36] + t
                x //= 36
            if binascii.crc_hqx(t.encode(), 0) % 16384 == slot:
                return t
        length += 1


def node(cluster, *args):
    srv = Server("--antenna", f"redis-cluster://127.0.0.1:{cluster.seed()}", *(args or HISTORY),
                 binary=CHAT)
    wait_until(lambda: health(srv.port)[0] == 200 and health(srv.port)[1]["status"] == "ok", 15,
               "every shard up")
    return srv


def rooms_on_each_master(cluster):
    """A room per master, each with braces of its own that hash it
    elsewhere than its name inside braces would: its keys cannot take the
    name as their hash tag."""
    want, i = {port: None for port in cluster.masters()}, 0
    while None in want.values():
        name = f"room}}{{{i * 7919}"     # spread: tags of unlike letters
        i += 1
        assert slot_of(name) != slot_of(f"{{{name}}}")
        if want[cluster.owner(name)] is None:
            want[cluster.owner(name)] = name
    return want


def relayed(cluster, room):
    """A relay in front of the master that owns room, which the cluster
    then announces in place of the master's own port: nodes started after
    this reach it through the relay, those started before do not."""
    port = cluster.owner(room)
    relay = Relay(port, b"SSUBSCRIBE")
    resp(port, "CONFIG", "SET", "cluster-announce-port", str(relay.port))

    def announced():
        return all(any(r[2][1] == relay.port for r in resp(n.port, "CLUSTER", "SLOTS"))
                   for n in cluster.live())
    wait_until(announced, 15, "every node announces the relay")
    return relay


@test
async def test_a_client_recovers_on_another_node_rooms_on_every_master():
    cluster = RedisCluster()
    with node(cluster) as a, node(cluster) as b:
        assert "keeps none" not in a.log(), a.log()
        rooms = rooms_on_each_master(cluster)
        async with websockets.connect(b.url()) as pub:
            for port, room in rooms.items():
                c = await websockets.connect(a.url(), max_queue=None)
                first = await subscribed(c, "c", room)
                assert first["header"]["offset"] == 1 and first["header"]["epoch"], first
                await publisher(pub, room, 20, 0)
                seen = [await recv_json(c) for _ in range(5)]
                await c.close()
                since = position(seen[-1])
                await publisher(pub, room, 30, 0, first=20)
                d = await websockets.connect(b.url(), max_queue=None)
                await d.send(sub("d", room, since))
                h = await answer(d, "d")
                assert h == {"recovered": True, "offset": 51, "epoch": since["epoch"]}, (room, h)
                await pub.send(post("live", room, "live"))
                got = await deliveries(d, "live")
                assert [m["header"]["offset"] for m in got] == list(range(7, 53)), (room, got)
                assert [text(m) for m in got] == [f"m{i}" for i in range(5, 50)] + ["live"]
                assert await no_message(d, 0.2), "a message twice"
                await d.close()
                # The history lives where the channel's SPUBLISH goes: on
                # its slot's master, under the slot's tag.
                key = f"xr.h.{{{tag_of(slot_of(room))}}}{room}"
                assert resp(port, "XLEN", key + ".s") == 52, (room, key)
                assert resp(port, "HGET", key + ".m", "o") == "52", (room, key)
            print(f"# recovered on every master of {len(rooms)}: {sorted(rooms.values())}")


@test
async def test_recoveries_racing_a_publisher_have_no_gap_and_no_duplicate():
    cluster = RedisCluster()
    with node(cluster) as a, node(cluster) as b:
        n = 300
        took, sent = await racing(a, b, n, pace=0.001)
        print(f"# {n} recoveries on one node racing a publisher on the other in {took:.1f} s, "
              f"{sent} posts, no gap, no duplicate")


@test
async def test_a_recovery_reads_only_once_its_ssubscribe_took_effect():
    # Node a's subscriber connection to the room's master is slow (a relay
    # holds what it sends): the room's SSUBSCRIBE waits while node b posts.
    # Read before the SSUBSCRIBE took effect, that post would be in neither
    # the read nor the live stream; read after it, it is recovered.
    cluster = RedisCluster()
    with node(cluster) as b:
        relay = relayed(cluster, "r")
        with node(cluster) as a:
            async with websockets.connect(a.url()) as warm, websockets.connect(b.url()) as pub, \
                    websockets.connect(b.url()) as watch:
                await subscribed(warm, "w", "{r}warm")  # marks a's subscriber on r's master
                since = position(await subscribed(watch, "w", "r"))
                for k in range(3):
                    relay.hold()
                    c = await websockets.connect(a.url())
                    try:
                        await c.send(sub("c", "r", since))
                        wait_until(lambda: b"$10\r\nSSUBSCRIBE" in relay.held_bytes(), 10,
                                   "the room's SSUBSCRIBE held")
                        deadline = time.monotonic() + 1     # a read sent at once ran by then
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
                            ("the post made while the SSUBSCRIBE was on its way is lost", k, got)
                        assert (await recv_json(pub))["request_id"] == "p"
                        since = position(got[-1])
                        assert text(await recv_json(watch)) == f"after{k}"
                    finally:
                        relay.release()
                        await c.close()
                    await asyncio.sleep(0.2)    # the room left on node a: subscribed anew


@test
async def test_a_recovery_answers_only_once_what_it_read_came_in_live():
    # The read is held on its way to the master while node b posts, and the
    # post's live copy to node a is held behind it: the read returns the
    # post before node a has it live. Answered then, the live copy would go
    # out after the answer, twice; answered after the second PING, once.
    cluster = RedisCluster()
    with node(cluster) as b:
        relay = relayed(cluster, "r")
        with node(cluster) as a:
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
                        relay.hold(sending=False, marked=True)  # what the master sends node a
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
                        assert [text(await recv_json(warm)) for _ in range(2)] == \
                            [f"read{k}", f"after{k}"]
                        since = position(got[-1])
                    finally:
                        relay.release()
                        await c.close()


@test
async def test_posts_on_two_nodes_are_told_their_positions_and_read_back():
    # The position comes back from the master's script: posts racing on
    # two nodes each learn the one their deliveries carry, none twice; the
    # history read gives the newest of them back.
    cluster = RedisCluster()
    with node(cluster) as a, node(cluster) as b:
        async with websockets.connect(a.url()) as pa, websockets.connect(b.url()) as pb, \
                websockets.connect(a.url()) as w:
            first = position(await subscribed(w, "w", "{x}r"))
            told = await positions_told([pa, pb], w, "{x}r", 100)
            assert sorted(o for o, _ in told.values()) == list(range(2, 202))
            assert {e for _, e in told.values()} == {first["epoch"]}
            await pa.send(request("h", "/chat_history", "GET",
                                  json.dumps({"chat_id": "{x}r", "limit": 3})))
            m = await recv_json(pa)
            body = json.loads(m["payload"])
            assert body["offset"] == 201 and body["epoch"] == first["epoch"], body
            assert [k["offset"] for k in body["messages"]] == [199, 200, 201], body
            by_offset = {o: rid for rid, (o, _) in told.items()}
            assert [json.loads(k["payload"])["message"] for k in body["messages"]] == \
                [by_offset[o] for o in (199, 200, 201)], body


@test
async def test_a_flushed_master_is_a_new_epoch_never_an_old_message():
    cluster = RedisCluster()
    with node(cluster) as srv:
        async with websockets.connect(srv.url()) as pub, websockets.connect(srv.url()) as w, \
                websockets.connect(srv.url()) as b:
            since = position(await subscribed(w, "w", "r"))
            await publisher(pub, "r", 3, 0)
            await deliveries(w, "m2")
            resp(cluster.owner("r"), "FLUSHALL")
            await pub.send(post("after", "r", "after"))
            await b.send(sub("b", "r", since))
            h = await answer(b, "b")
            assert h["recovered"] is False and h["epoch"] != since["epoch"], h
            assert h["offset"] == 1, ("offsets start again in the new epoch", h)
            assert await no_message(b, 0.3), "a message of another history"


@test
async def test_a_node_whose_subscriber_connection_broke_fills_the_hole_from_the_history():
    # Node a's subscriber connection to the room's master is cut, and its
    # new one's SSUBSCRIBE held while node b posts: those posts never reach
    # node a live. The first one after shows the hole by its offset; node a
    # reads the rest from the history. Node b keeps 5: a hole of more is
    # told by the jump.
    cluster = RedisCluster()
    with node(cluster, "--history-size", "5", "--history-ttl", "300") as b:
        relay = relayed(cluster, "r")
        with node(cluster) as a:
            async with websockets.connect(a.url()) as c, websockets.connect(b.url()) as pub, \
                    websockets.connect(b.url()) as watch:
                await subscribed(watch, "w", "r")
                last = position(await subscribed(c, "c", "r"))["offset"]
                assert text(await recv_json(watch)) == "probe"
                for k, missed in enumerate((3, 4, 1, 9)):
                    relay.hold(sending=True, marked=True)
                    relay.cut()
                    wait_until(lambda: b"$10\r\nSSUBSCRIBE" in relay.held_bytes(), 15,
                               "the new SSUBSCRIBE held")
                    for i in range(missed):
                        await pub.send(post("p", "r", f"gap{k}.{i}"))
                        assert (await recv_json(pub))["request_id"] == "p"
                        assert text(await recv_json(watch)) == f"gap{k}.{i}"
                    relay.release()
                    wait_until(lambda: health(a.port)[1]["status"] == "ok", 15, "node a's shards up")
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


def replica_of(cluster, port):
    mid = cluster.masters()[port][0]
    for line in resp(port, "CLUSTER", "NODES").splitlines():
        f = line.split()
        if "slave" in f[2] and f[3] == mid:
            return int(f[1].split("@")[0].split(":")[1])
    raise AssertionError(f"no replica of {port}")


def repl(port, field):
    info = resp(port, "INFO", "replication")
    return next(line.split(":", 1)[1] for line in info.splitlines() if line.startswith(field + ":"))


def owned_by(cluster, room, port):
    try:
        return cluster.owner(room) == port
    except (AssertionError, OSError):
        return False        # the failed master's slots have no owner yet


async def post_until_taken(ws, room, message, timeout=20):
    """A post sent again until the cluster takes it (a failover refuses
    posts until a replica is promoted and the node has seen it)."""
    deadline = time.monotonic() + timeout
    while True:
        await ws.send(post("p", room, message))
        m = await recv_json(ws, 10)
        if json.loads(m["payload"]).get("message") == "Message sent":
            return
        assert time.monotonic() < deadline, ("never taken", m)
        await asyncio.sleep(0.2)


@test
async def test_a_failover_that_lost_posts_is_a_new_epoch_never_offsets_given_twice():
    # The room's master replicates to its replica through a relay that then
    # holds what the master sends: two posts reach the clients (offsets 4
    # and 5) but never the replica. The master is killed and the replica,
    # promoted, has the room's history up to 3. Going on in that epoch
    # would give 4 and 5 again to other messages, which node a would drop
    # as delivered and a client at 5 would take as seen. A new epoch.
    cluster = RedisCluster()
    room = "failover-room"
    master = cluster.owner(room)
    replica = replica_of(cluster, master)
    relay = Relay(master, b"PSYNC")
    resp(master, "CONFIG", "SET", "cluster-announce-port", str(relay.port))
    wait_until(lambda: repl(replica, "master_port") == str(relay.port) and
               repl(replica, "master_link_status") == "up", 20, "the replica syncs through the relay")
    with node(cluster) as a, node(cluster) as b:
        async with websockets.connect(a.url()) as c, websockets.connect(b.url()) as pub:
            await c.send(sub("c", room))
            wait_until(lambda: cluster.subscribed({room: 1}), 10, "subscribed")
            for i in range(3):
                await pub.send(post("p", room, f"kept{i}"))
                assert (await recv_json(pub))["request_id"] == "p"
            got = await deliveries(c, "kept2")
            old = position(got[-1])
            assert old["offset"] == 3, got
            wait_until(lambda: int(repl(replica, "master_repl_offset")) >=
                       int(repl(master, "master_repl_offset")), 10, "the replica has them")
            relay.hold(sending=False, marked=True)
            for i in range(2):
                await pub.send(post("p", room, f"lost{i}"))
                assert (await recv_json(pub))["request_id"] == "p"
            got = await deliveries(c, "lost1")
            assert [m["header"]["offset"] for m in got] == [4, 5], got
            assert b"lost1" in relay.held_bytes(sending=False, marked=True)
            cluster.node(master).kill()
            wait_until(lambda: owned_by(cluster, room, replica), 20, "the replica took over")
            wait_until(lambda: cluster.subscribed({room: 1}), 20, "node a subscribed on it")
            await post_until_taken(pub, room, "after")
            got = await deliveries(c, "after", 10)
            assert [text(m) for m in got] == ["after"], got
            new = position(got[0])
            assert new["epoch"] != old["epoch"] and new["offset"] == 1, (old, new)
            # A client that saw 5, and one that saw only 3: neither is
            # recovered, neither gets a message of the lost history.
            for k, since in enumerate(({"offset": 5, "epoch": old["epoch"]}, old)):
                async with websockets.connect(b.url()) as d:
                    await d.send(sub(f"d{k}", room, since))
                    h = await answer(d, f"d{k}")
                    assert h["recovered"] is False and h["epoch"] == new["epoch"], h
                    assert h["offset"] == 1, h
                    assert await no_message(d, 0.3), "a message of another history"
    print(f"# master {master} killed with 2 posts not replicated: replica {replica} "
          f"took over, epoch {old['epoch']} -> {new['epoch']}")


@test
async def test_a_slot_resharded_under_traffic_loses_nothing_and_keeps_its_epoch():
    # Posts go on while the room's slot moves to another master: its
    # history moves with it (MIGRATE), the epoch stays, node a fills from
    # it what reached the new owner before its SSUBSCRIBE did, and a
    # client recovers across the move.
    cluster = RedisCluster()
    masters = cluster.masters()
    src, dst = sorted(masters)[:2]
    first = min(lo for lo, _ in masters[src][1])     # redis-cli moves the lowest first
    room = next(f"reshard-{i}" for i in range(10 ** 6) if slot_of(f"reshard-{i}") == first)
    # Kept and recoverable: every post of the run (about 500 a second).
    keep = ("--history-size", "20000", "--history-ttl", "300", "--history-max-recover", "20000")
    with node(cluster, *keep) as a, node(cluster, *keep) as b:
        async with websockets.connect(a.url()) as c, websockets.connect(b.url()) as pub, \
                websockets.connect(b.url()) as late:
            start = position(await subscribed(c, "c", room))
            sent, answered, got = 0, 0, []
            stop = asyncio.Event()

            async def poster():
                nonlocal sent
                while not stop.is_set():
                    while sent - answered >= 32 and not stop.is_set():
                        await asyncio.sleep(0.001)
                    sent += 1
                    await pub.send(post(f"p{sent}", room, str(sent)))
                    await asyncio.sleep(0.002)

            async def answers():
                nonlocal answered
                while True:
                    m = await recv_json(pub, 30)
                    assert json.loads(m["payload"])["message"] == "Message sent", m
                    answered += 1

            async def hear():
                while True:
                    m = await recv_json(c, 30)
                    got.append((int(text(m)), position(m)))
            tasks = [asyncio.create_task(answers()), asyncio.create_task(hear())]
            posting = asyncio.create_task(poster())
            await asyncio.sleep(0.2)
            move = await asyncio.create_subprocess_exec(
                REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{src}", "--cluster-from",
                masters[src][0], "--cluster-to", masters[dst][0], "--cluster-slots", "1",
                "--cluster-yes", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            await move.wait()
            assert move.returncode == 0, (await move.stderr.read()).decode()
            assert cluster.owner(room) == dst
            wait_until(lambda: room in resp(dst, "PUBSUB", "SHARDCHANNELS"), 10,
                       "the subscription followed its slot")
            during = sent
            await asyncio.sleep(0.3)
            stop.set()
            await posting
            for _ in range(200):
                if answered == sent and got and got[-1][0] == sent:
                    break
                await asyncio.sleep(0.05)
            for t in tasks:
                t.cancel()
            assert sent - during >= 10, (sent, during)
            assert answered == sent, (answered, sent)
            assert [n for n, _ in got] == list(range(1, sent + 1)), \
                ("lost or twice across the move", [n for n, _ in got][:5], sent)
            assert [p["offset"] for _, p in got] == \
                list(range(start["offset"] + 1, start["offset"] + sent + 1))
            assert {p["epoch"] for _, p in got} == {start["epoch"]}, "a new epoch for a move"
            assert int(resp(dst, "XLEN", f"xr.h.{{{tag_of(first)}}}{room}.s")) == sent + 1
            await late.send(sub("late", room, start))
            h = await answer(late, "late")
            assert h["recovered"] is True and h["epoch"] == start["epoch"], h
            assert h["offset"] == start["offset"] + sent, h
            replay = [int(text(await recv_json(late, 5))) for _ in range(sent)]
            assert replay == list(range(1, sent + 1))
            m = metrics(a.port)
            assert m["xraptor_history_gaps_unrepaired_total"] == 0, m
    print(f"# slot {first} moved {src} -> {dst} under {sent} posts: all heard once in order "
          f"({m['xraptor_history_gaps_repaired_total']} holes filled), epoch kept, "
          f"recovered across the move")

if __name__ == "__main__":
    if not shutil.which(REDIS) or not shutil.which(REDIS_CLI):
        skip_all("redis-server / redis-cli not installed (apt-get install redis-server)")
    run()
