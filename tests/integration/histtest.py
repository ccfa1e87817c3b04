# SPDX-License-Identifier: Apache-2.0
"""What the history tests share (test_history.py on memory://,
test_history_redis.py on redis://): xraptor-chat's requests, a publisher,
and the reads of a recovery."""
import asyncio
import json
import time

import websockets

from xrtest import recv_json, request

HISTORY = ("--history-size", "300", "--history-ttl", "300")


def sub(rid, room, since=None):
    return request(rid, "/chat_messages", "SUB", json.dumps({"chat_id": room}),
                   {"since": since} if since is not None else None)


def post(rid, room, message):
    return request(rid, "/send_message_to_chat_room", "POST",
                   json.dumps({"chat_id": room, "client_id": "pub", "message": message}))


def text(m):
    return json.loads(m["payload"])["message"]


def position(m):
    return {"offset": m["header"]["offset"], "epoch": m["header"]["epoch"]}


async def publisher(ws, room, n, every=0.001, first=0):
    """Posts m<first>..m<first+n-1>, about one per `every` seconds; the
    answers are read by a reader of their own."""
    async def drain():
        for _ in range(n):
            await recv_json(ws, 10)
    reader = asyncio.ensure_future(drain())
    for i in range(first, first + n):
        await ws.send(post(f"p{i}", room, f"m{i}"))
        await asyncio.sleep(every)
    await reader


async def answer(ws, rid, timeout=5):
    """The recovery answer of SUB rid: its header; nothing may come first."""
    m = await recv_json(ws, timeout)
    assert m["request_id"] == rid and m["payload"] == "" and "recovered" in m["header"], m
    return m["header"]


async def deliveries(ws, until, timeout=10):
    """Deliveries up to and including message `until`."""
    out, deadline = [], time.monotonic() + timeout
    while not out or text(out[-1]) != until:
        out.append(await recv_json(ws, max(0.1, deadline - time.monotonic())))
    return out


async def subscribed(ws, rid, room):
    """A plain SUB, known to hold once a post of its own came back."""
    await ws.send(sub(rid, room))
    await ws.send(post("probe", room, "probe"))
    assert (await recv_json(ws))["request_id"] == "probe"
    m = await recv_json(ws)
    assert text(m) == "probe", m
    return m


async def away_for(srv, pub, room, n, first):
    """A member at the newest position leaves, n posts go out, it comes
    back: the answer and every message up to a live one after it."""
    a = await websockets.connect(srv.url())
    since = position(await subscribed(a, "a", room))
    await a.close()
    await publisher(pub, room, n, 0, first=first)
    b = await websockets.connect(srv.url())
    await b.send(sub("b", room, since))
    h = await answer(b, "b")
    await pub.send(post("live", room, "live"))
    got = [text(m) for m in await deliveries(b, "live")]
    await b.close()
    return h, since, got


def post_at(rid, room, message):
    """A post that asks for its position in the answer."""
    return request(rid, "/send_message_to_chat_room", "POST",
                   json.dumps({"chat_id": room, "client_id": "pub", "message": message}),
                   {"position": True})


async def positions_told(pubs, watch, room, n):
    """n posts with their position asked, spread over the connections in
    pubs, all in flight at once: each answer's position is the one its
    message's delivery carries, and together they are every offset once."""
    async def one(ws, tag):
        # 32 in flight at a time: a connection holds at most 64 requests
        # waiting for their answers.
        told = {}
        for first in range(0, n, 32):
            batch = range(first, min(n, first + 32))
            for i in batch:
                await ws.send(post_at(f"{tag}{i}", room, f"{tag}{i}"))
            for _ in batch:
                m = await recv_json(ws, 10)
                body = json.loads(m["payload"])
                assert body["message"] == "Message sent", m
                told[m["request_id"]] = (body["offset"], body["epoch"])
        return told
    told = {}
    for part in await asyncio.gather(*(one(ws, f"t{k}.") for k, ws in enumerate(pubs))):
        told.update(part)
    seen = {}
    while len(seen) < len(told):
        m = await recv_json(watch, 10)
        seen[text(m)] = (m["header"]["offset"], m["header"]["epoch"])
    assert seen == told, ("a post told another position than its delivery carried",
                          sorted(set(seen.items()) ^ set(told.items()))[:5])
    offsets = sorted(o for o, _ in told.values())
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), "a gap or a duplicate"
    return told
