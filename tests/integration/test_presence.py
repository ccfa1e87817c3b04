# SPDX-License-Identifier: Apache-2.0
"""Presence (--presence): one join per user, one leave after its last
connection and the grace, none for a reconnect within the grace, queries,
a killed node's members gone from every node through a real Redis, and
bad input refused. Through xraptor-chat, whose SUB payload's client_id
names the member."""
import asyncio
import json
import os
import shutil
import signal
import tempfile
import time

import websockets

from rcluster import REDIS_CLI, RedisCluster
from xrtest import (CHAT, Broker, Server, healthy, no_message, recv_json, run, skip_all, test,
                    wait_until)

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
NATS = shutil.which("nats-server") or "/usr/bin/nats-server"


def sub(rid, room, user=None, events=False, info=None):
    p = {"chat_id": room}
    if user is not None:
        p["client_id"] = user
    if info is not None:
        p["info"] = info
    return json.dumps({"request_id": rid, "payload": json.dumps(p),
                       "header": {"presence": True} if events else {},
                       "route": "/chat_messages", "method": "SUB"})


def query(rid, room, route="/xraptor/presence"):
    return json.dumps({"request_id": rid, "payload": json.dumps({"room": room}), "header": {},
                       "route": route, "method": "GET"})


async def events(ws, n, timeout=5):
    """The next n presence events: [(kind, user, info)]."""
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n:
        m = await recv_json(ws, max(0.1, deadline - time.monotonic()))
        if "event" in m["header"]:
            p = json.loads(m["payload"])
            out.append((m["header"]["event"], p["user"], p["info"]))
    return out


async def counted(ws, connections, timeout=5):
    """Waits until the room r counts that many connections."""
    deadline = time.monotonic() + timeout
    while True:
        await ws.send(query("c", "r", "/xraptor/presence_stats"))
        if json.loads((await answer(ws, "c"))["payload"])["connections"] == connections:
            return
        assert time.monotonic() < deadline, f"never {connections} connections"
        await asyncio.sleep(0.05)


async def answer(ws, rid, timeout=5):
    """The answer to request rid; an event meanwhile is one too many."""
    deadline = time.monotonic() + timeout
    while True:
        m = await recv_json(ws, max(0.1, deadline - time.monotonic()))
        assert "event" not in m["header"], f"an event nobody expected: {m}"
        if m["request_id"] == rid:
            return m


def redis():
    return Broker(lambda port: [REDIS, "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no"])


@test
async def test_one_join_per_user_one_leave_after_its_last_connection():
    with Server("--presence", "--presence-grace", "0.5", binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as obs:
            await obs.send(sub("obs", "r", "observer", events=True))
            assert await events(obs, 1) == [("join", "observer", None)]
            tabs = [await websockets.connect(srv.url()) for _ in range(3)]
            # One tab after the other (each counted before the next joins),
            # so the info shown is the last tab's.
            for i, t in enumerate(tabs):
                await t.send(sub(f"ana{i}", "r", "ana", info={"tab": i}))
                if i == 0:
                    assert await events(obs, 1) == [("join", "ana", {"tab": 0})]
                await counted(obs, i + 2)
            assert await no_message(obs, 0.5), "a second join for the same user"
            await obs.send(query("q1", "r"))
            got = json.loads((await answer(obs, "q1"))["payload"])
            assert got["users"] == 2 and got["connections"] == 4, got
            assert sorted((m["user"], m["connections"]) for m in got["members"]) == \
                [("ana", 3), ("observer", 1)], got
            assert {m["user"]: m["info"] for m in got["members"]}["ana"] == {"tab": 2}, got
            await obs.send(query("q2", "r", "/xraptor/presence_stats"))
            assert json.loads((await answer(obs, "q2"))["payload"]) == \
                {"users": 2, "connections": 4}
            # Two of three tabs closed: still there, nothing told.
            await tabs[0].close()
            await tabs[1].close()
            assert await no_message(obs, 1.2), "a leave while a connection remained"
            await obs.send(query("q4", "r", "/xraptor/presence_stats"))
            assert json.loads((await answer(obs, "q4"))["payload"]) == \
                {"users": 2, "connections": 2}
            t0 = time.monotonic()
            await tabs[2].close()
            assert await events(obs, 1) == [("leave", "ana", {"tab": 2})]
            assert 0.4 < time.monotonic() - t0 < 2.5, time.monotonic() - t0
            assert await no_message(obs, 0.8)
            await obs.send(query("q3", "r", "/xraptor/presence_stats"))
            assert json.loads((await answer(obs, "q3"))["payload"]) == \
                {"users": 1, "connections": 1}


@test
async def test_a_reconnect_within_the_grace_tells_nothing():
    with Server("--presence", "--presence-grace", "2", binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as obs:
            await obs.send(sub("obs", "r", "observer", events=True))
            await events(obs, 1)
            a = await websockets.connect(srv.url())
            await a.send(sub("a1", "r", "ana"))
            assert await events(obs, 1) == [("join", "ana", None)]
            await a.close()
            await asyncio.sleep(0.2)
            b = await websockets.connect(srv.url())
            await b.send(sub("a2", "r", "ana"))
            assert await no_message(obs, 3), "a reconnect within the grace was told"
            await obs.send(query("q1", "r", "/xraptor/presence_stats"))
            assert json.loads((await answer(obs, "q1"))["payload"]) == \
                {"users": 2, "connections": 2}
            await b.close()
            assert await events(obs, 1, 5) == [("leave", "ana", None)]


def redis_url():
    return f"redis://127.0.0.1:{redis().port}"


def cluster_url():
    return f"redis-cluster://127.0.0.1:{RedisCluster(masters=3, replicas=0).seed()}"


def nats(jetstream=True):
    store = tempfile.mkdtemp(prefix="xraptor-js-")
    return Broker(lambda port: [NATS, "-a", "127.0.0.1", "-p", str(port),
                                *(["-js", "-sd", store] if jetstream else [])])


def nats_url():
    return f"nats://127.0.0.1:{nats().port}"


@test
async def test_a_member_that_moves_node_within_the_grace_tells_nothing():
    for url in (redis_url(), cluster_url(), nats_url()):
        await moves_node(url)


async def moves_node(url):
    with Server("--presence", "--presence-grace", "2", "--antenna", url, binary=CHAT) as a, \
            Server("--presence", "--presence-grace", "2", "--antenna", url, binary=CHAT) as b:
        wait_until(lambda: healthy(a.port) and healthy(b.port), 20, "every shard up")
        async with websockets.connect(a.url()) as obs:
            await obs.send(sub("obs", "r", "observer", events=True))
            assert await events(obs, 1) == [("join", "observer", None)]
            on_a = await websockets.connect(a.url())
            await on_a.send(sub("x1", "r", "ana"))
            assert await events(obs, 1) == [("join", "ana", None)]
            await on_a.close()
            on_b = await websockets.connect(b.url())
            await on_b.send(sub("x2", "r", "ana"))
            assert await no_message(obs, 3), "moving node within the grace was told"
            await on_b.close()
            assert await events(obs, 1, 5) == [("leave", "ana", None)]


@test
async def test_a_killed_node_loses_its_members_everywhere_each_left_once():
    for url in (redis_url(), cluster_url(), nats_url()):
        await killed_node(url)


async def killed_node(url):
    with Server("--presence", "--presence-ttl", "3", "--antenna", url, binary=CHAT) as a, \
            Server("--presence", "--presence-ttl", "3", "--antenna", url, binary=CHAT) as b:
        wait_until(lambda: healthy(a.port) and healthy(b.port), 20, "every shard up")
        async with websockets.connect(a.url(), max_queue=None) as obs:
            await obs.send(sub("obs", "r", "observer", events=True))
            await events(obs, 1)
            # 1000 users on node b: 10 connections of 100 members each.
            conns = [await websockets.connect(b.url()) for _ in range(10)]
            t_join = time.monotonic()
            for c, ws in enumerate(conns):
                for i in range(100):
                    await ws.send(sub(f"m{c}-{i}", "r", f"user{c}-{i}"))
            joins = await events(obs, 1000, 15)
            took_joins = time.monotonic() - t_join
            assert {e[1] for e in joins} == {f"user{c}-{i}" for c in range(10) for i in range(100)}
            await obs.send(query("q1", "r", "/xraptor/presence_stats"))
            assert json.loads((await answer(obs, "q1"))["payload"]) == \
                {"users": 1001, "connections": 1001}
            t0 = time.monotonic()
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait()
            b.expected_exit = True
            leaves = await events(obs, 1000, 3 + 3)
            took = time.monotonic() - t0
            assert sorted(e[1] for e in leaves) == sorted(e[1] for e in joins), "not each once"
            assert all(e[0] == "leave" for e in leaves)
            assert took < 3 + 1.5, f"the dead node's members went after {took:.1f} s"
            assert await no_message(obs, 2), "a leave told twice"
            await obs.send(query("q2", "r", "/xraptor/presence_stats"))
            assert json.loads((await answer(obs, "q2"))["payload"]) == \
                {"users": 1, "connections": 1}
            for ws in conns:
                await ws.close()
            print(f"# {url.split(':')[0]}: 1000 joins told in {took_joins:.2f} s; the killed "
                  f"node's members gone from the other in {took:.2f} s (ttl 3 s)")


@test
async def test_a_node_busy_with_joins_is_not_taken_for_dead():
    # nats:// writes a member with four blocking key-value calls on one
    # worker, and a node whose "I live" waited behind them would be reaped
    # by the other while it holds every member: the other reaps an entry
    # older than three quarters of the TTL and looks every quarter, so the
    # worker must stay busy for a whole TTL at least to tell. Two thousand
    # joins took about 2 s on a quiet machine, which let a broken heartbeat
    # pass as often as not; six thousand keep it busy three times longer,
    # and the test checks that they did rather than pass without having
    # tested. (A 1 s TTL left a loaded CI machine under ASan no margin for
    # the heartbeat thread's own turn.)
    url = nats_url()
    ttl = 2
    args = ("--presence", "--presence-ttl", str(ttl), "--presence-grace", "0", "--antenna", url)
    n = 6000
    with Server(*args, binary=CHAT) as a, Server(*args, binary=CHAT) as b:
        wait_until(lambda: healthy(a.port) and healthy(b.port), 20, "every shard up")
        async with websockets.connect(a.url(), max_queue=None) as obs:
            await obs.send(sub("obs", "r", "observer", events=True))
            await events(obs, 1)
            conns = [await websockets.connect(b.url()) for _ in range(n // 100)]
            t0 = time.monotonic()
            for c, ws in enumerate(conns):
                for i in range(100):
                    await ws.send(sub(f"m{c}-{i}", "r", f"user{c}-{i}"))
            joins = await events(obs, n, 180)
            took = time.monotonic() - t0
            assert took > 2 * ttl, \
                f"{n} joins took {took:.2f} s, too few to keep the worker busy for the TTL"
            want = sorted(f"user{c}-{i}" for c in range(n // 100) for i in range(100))
            got = sorted(e[1] for e in joins)
            assert got == want, ("not one join each", [e for e in joins if e[0] != "join"][:5],
                                 len(set(got)), took)
            assert all(e[0] == "join" for e in joins)
            assert await no_message(obs, 3), "a living node's members were reaped"
            await obs.send(query("q1", "r", "/xraptor/presence_stats"))
            assert json.loads((await answer(obs, "q1"))["payload"]) == \
                {"users": n + 1, "connections": n + 1}
            for ws in conns:
                await ws.close()
    # The leaves still queued when b stopped: one line for all, not one each.
    assert b.log().count("did not count") == 0, b.log()[-2000:]
    print(f"# nats: {n} joins in {took:.2f} s on a node of TTL 2 s, none reaped")


@test
async def test_bad_members_and_queries_are_refused_nothing_stored():
    with Server("--presence-room", "p.*", "--presence-max-info", "32", binary=CHAT) as srv:
        async with websockets.connect(srv.url()) as obs:
            await obs.send(sub("obs", "p.r", "observer", events=True))
            await events(obs, 1)
            for rid, bad in (("big", dict(user="ana", info={"x": "y" * 64})),
                             ("ctl", dict(user="an\na")), ("none", dict()),
                             ("long", dict(user="u" * 300))):
                async with websockets.connect(srv.url()) as ws:
                    await ws.send(sub(rid, "p.r", **bad))
                    m = await answer(ws, rid)
                    assert json.loads(m["payload"])["message"] == "fail", m
                    assert "presence" in json.loads(m["payload"])["reason"], m
            assert await no_message(obs, 0.5), "a refused member was told"
            await obs.send(query("q1", "p.r", "/xraptor/presence_stats"))
            assert json.loads((await answer(obs, "q1"))["payload"]) == \
                {"users": 1, "connections": 1}
            # A room without presence: joins as always, queries refused.
            async with websockets.connect(srv.url()) as ws:
                await ws.send(sub("plain", "q.r"))
                await ws.send(query("q2", "q.r"))
                m = await answer(ws, "q2")
                assert m["header"] == {"error": "bad_request"}, m
                assert "keeps no presence" in m["payload"], m
                await ws.send(query("q3", "p.r", "/xraptor/presence_stats").replace(
                    '{\\"room\\": \\"p.r\\"}', '{\\"room\\": 7}'))
                assert (await answer(ws, "q3"))["header"] == {"error": "bad_request"}
            # Without {"presence": true} no events come.
            async with websockets.connect(srv.url()) as quiet:
                await quiet.send(sub("quiet", "p.r", "quiet"))
                assert await events(obs, 1) == [("join", "quiet", None)]
                assert await no_message(quiet, 0.5), "events without asking"


@test
async def test_presence_on_nats_without_jetstream_says_so():
    # nats:// keeps presence in JetStream key-value: on a server without
    # it the channel still works, the log says what is missing (once), and
    # a query is answered "unavailable" rather than with made-up counts.
    broker = nats(jetstream=False)
    with Server("--presence", "--antenna", f"nats://127.0.0.1:{broker.port}",
                binary=CHAT) as srv:
        wait_until(lambda: healthy(srv.port), 15, "connected")
        async with websockets.connect(srv.url()) as ws:
            await ws.send(sub("s1", "r", "ana"))
            srv.wait_log(r"nats antenna: presence needs JetStream on the server "
                         r"\(nats-server -js\)")
            await ws.send(query("q1", "r", "/xraptor/presence_stats"))
            m = await answer(ws, "q1", 10)
            assert m["header"] == {"error": "unavailable"}, m
        assert srv.log().count("presence needs JetStream") == 1, srv.log()


@test
def test_presence_refused_on_an_antenna_without_it():
    # tests/antenna/oldmemory.so: a module built against the ABI 2.0 header
    # (no presence members); it loads without --presence (test_cli).
    old = os.path.join(os.environ.get("XRAPTOR_TEST_MODULES", ""), "oldmemory.so")
    s = Server("--presence", "--antenna", old, binary=CHAT, expect_start=False)
    assert s.wait(10) != 0
    assert "presence is not available on this memory antenna module" in s.log(), s.log()
    s = Server("--presence", "--presence-ttl", "0.5", binary=CHAT, expect_start=False)
    assert s.wait(5) == 2
    assert "--presence-ttl must be at least 1 s" in s.log(), s.log()


if __name__ == "__main__":
    if not shutil.which(REDIS) or not shutil.which(REDIS_CLI):
        skip_all("redis-server / redis-cli not installed (apt-get install redis-server)")
    run()
