# SPDX-License-Identifier: Apache-2.0
"""What the history tests share (test_history.py on memory://,
test_history_redis.py on redis://): xraptor-chat's requests, a publisher,
and the reads of a recovery."""
import asyncio
import json
import time

import websockets

from xrtest import no_message, recv_json, request, wait_until

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


async def positions_told(pubs, watch, room, n, dense=True):
    """n posts with their position asked, spread over the connections in
    pubs, all in flight at once: each answer's position is the one its
    message's delivery carries, and together they are every offset once
    (dense) or n offsets, none twice (kafka://: offsets that skip)."""
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
    if dense:
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), "a gap or a duplicate"
    assert len(set(offsets)) == len(offsets), "an offset told twice"
    return told


class Throttled:
    """A publisher in the background: m0, m1, ... to room, one every
    `pace` seconds, its answers read. It stays within `ahead` posts of
    `floor`, the position the next recovery starts from, so that however
    slow a loaded machine makes a turn, no recovery misses more than is
    kept: each must be recovered, none excused. Post m<i> has offset
    i + first_offset."""

    def __init__(self, ws, room, floor, first_offset=2, pace=0.0005, ahead=200):
        self.ws, self.room, self.floor = ws, room, floor
        self.first_offset, self.pace, self.ahead = first_offset, pace, ahead
        self.sent, self.stop = 0, False

    async def _post(self):
        while not self.stop:
            if self.sent + self.first_offset - self.floor >= self.ahead:
                await asyncio.sleep(0.001)
                continue
            await self.ws.send(post(f"p{self.sent}", self.room, f"m{self.sent}"))
            self.sent += 1
            await asyncio.sleep(self.pace)

    async def _drain(self):
        # Waits only for an answer owed: one read past the last would wait
        # for nothing.
        answered = 0
        while not self.stop or answered < self.sent:
            if answered == self.sent:
                await asyncio.sleep(0.001)
                continue
            await recv_json(self.ws, 10)
            answered += 1

    async def __aenter__(self):
        self.tasks = [asyncio.ensure_future(self._post()), asyncio.ensure_future(self._drain())]
        return self

    async def __aexit__(self, *exc):
        self.stop = True
        await asyncio.gather(*self.tasks)


def index(m):
    """The publisher's number of a message m<i>."""
    return int(text(m)[1:])


async def recovers_racing(url, rid, room, since, throttle, back=100, dense=True):
    """A SUB from since = (a position, the publisher's number of the
    message there) on a new connection while throttle posts: it must be
    recovered, and get every post after since up to two past the answer's
    position, each once, in order (the replay and the live stream joined),
    with offsets one apart (dense) or only growing (kafka://). Returns the
    position `back` posts before the newest, where the next recovery
    starts; the throttle's floor moves there."""
    since, at = since
    # Unbounded: a client that stops reading (max_queue full) while the
    # publisher goes on would leave its close frame unread behind a server
    # that pauses reading a reader that far behind, for close_timeout.
    async with websockets.connect(url, max_queue=None) as c:
        await c.send(sub(rid, room, since))
        h = await answer(c, rid, 10)
        assert h["recovered"] is True, (rid, since, h)
        if dense:   # the newest post is known: the publisher may go on
            throttle.floor = max(since["offset"], h["offset"] - back)
        got = []
        while len([o for o, _ in got if o > h["offset"]]) < 2:
            m = await recv_json(c, 10)
            got.append((m["header"]["offset"], index(m)))
            if not dense:   # the newest post is known once here
                throttle.floor = max(throttle.floor, index(m) + throttle.first_offset - back)
        offsets, posts = [o for o, _ in got], [i for _, i in got]
        assert posts == list(range(at + 1, at + 1 + len(got))), (rid, since, h, got)
        assert offsets == sorted(set(offsets)) and offsets[0] > since["offset"], (rid, since, got)
        if dense:
            assert offsets == list(range(since["offset"] + 1, since["offset"] + 1 + len(got))), \
                (rid, since, h, got)
    o, i = got[max(0, len(got) - 2 - back)]
    throttle.floor = i + throttle.first_offset
    return ({"offset": o, "epoch": h["epoch"]}, i)


async def quiet_past_ttl(srv, pub):
    """Room "quiet" (a TTL of 1 s) gets two posts, then nothing for 1.5 s:
    a member at the newest position is recovered with nothing to replay,
    one from before what expired is not. Returns the connection those
    recoveries used, still open, and the first position."""
    a = await websockets.connect(srv.url())
    first = position(await subscribed(a, "a", "quiet"))
    await publisher(pub, "quiet", 2, 0)
    newest = {"offset": 3, "epoch": first["epoch"]}
    await a.close()
    await asyncio.sleep(1.5)
    b = await websockets.connect(srv.url())
    await b.send(sub("b", "quiet", newest))
    assert await answer(b, "b") == {"recovered": True, **newest}
    assert await no_message(b, 0.3)
    await b.send(sub("c", "quiet", first))
    assert await answer(b, "c") == {"recovered": False, **newest}
    assert await no_message(b, 0.3)
    return b, first


async def busy_past_ttl(srv, pub, kept):
    """Room "busy" (a TTL of 3 s) gets a post every 2 s, so the broker
    keeps them all (kept() counts them there), but a message past its TTL
    is not handed out."""
    first = position(await subscribed(pub, "pb", "busy"))     # offset 1
    await publisher(pub, "busy", 1, 0, first=0)        # 2
    await asyncio.sleep(2)
    await publisher(pub, "busy", 1, 0, first=1)        # 3
    await asyncio.sleep(2)
    await publisher(pub, "busy", 1, 0, first=2)        # 4
    wait_until(lambda: kept() == 4, 5, "all kept")
    async with websockets.connect(srv.url()) as c:
        await c.send(sub("d", "busy", {"offset": 2, "epoch": first["epoch"]}))
        assert await answer(c, "d") == {"recovered": True, "offset": 4, "epoch": first["epoch"]}
        got = [await recv_json(c), await recv_json(c)]
        assert [(text(m), m["header"]["offset"]) for m in got] == [("m1", 3), ("m2", 4)], got
        await c.send(sub("c", "busy", {"offset": 1, "epoch": first["epoch"]}))
        m = await recv_json(c)
        assert m["request_id"] == "c" and m["header"] == \
            {"recovered": False, "offset": 4, "epoch": first["epoch"]}, m
        assert await no_message(c, 0.3)


async def read_back_newest(ws):
    """On a node keeping 5: 7 posts, then the history read (GET
    /xraptor/history) gives the newest back, oldest first; a channel
    never posted to has none. Returns the read, for more."""
    await subscribed(ws, "w", "r")
    await publisher(ws, "r", 7)
    await deliveries(ws, "m6")

    async def read(payload):
        await ws.send(request("h", "/xraptor/history", "GET", json.dumps(payload)))
        return json.loads((await recv_json(ws))["payload"])

    got = await read({"channel": "r", "limit": 3})
    assert [(x["offset"], text({"payload": x["payload"]})) for x in got["messages"]] == \
        [(6, "m4"), (7, "m5"), (8, "m6")] and got["offset"] == 8, got
    assert [x["offset"] for x in (await read({"channel": "r", "limit": 1000}))["messages"]] \
        == [4, 5, 6, 7, 8]
    got = await read({"channel": "quiet"})
    assert got["messages"] == [] and got["offset"] == 0 and got["epoch"], got
    return read


async def recovers_on_another_node(a, b, dense=True):
    """A member on node a reads 100 of 600 posts made through node b,
    leaves, and 0.2 s later comes back on node b: it is recovered, and
    gets every post after its last once, in order, to the end, with
    offsets one apart (dense) or only growing. Returns how many posts it
    missed and how many it got after it."""
    async with websockets.connect(b.url()) as pub:
        c = await websockets.connect(a.url(), max_queue=None)
        first = await subscribed(c, "c", "r")
        assert first["header"]["offset"] == 1 or not dense, first
        assert first["header"]["epoch"], first
        posting = asyncio.ensure_future(publisher(pub, "r", 600))
        seen = []
        while len(seen) < 100:
            seen.append(await recv_json(c))
        await c.close()
        await asyncio.sleep(0.2)
        since = position(seen[-1])
        async with websockets.connect(b.url(), max_queue=None) as d:
            await d.send(sub("d", "r", since))
            h = await answer(d, "d")
            assert h["recovered"] is True and h["epoch"] == since["epoch"], h
            rest = await deliveries(d, "m599", 30)
            await posting
            offsets = [m["header"]["offset"] for m in rest]
            missed = len([o for o in offsets if o <= h["offset"]])
            assert missed > 1, "nothing was missed: the test proves nothing"
            assert [text(m) for m in rest] == [f"m{i}" for i in range(index(seen[-1]) + 1, 600)], \
                "a gap or a duplicate"
            assert offsets == sorted(set(offsets)) and offsets[0] > since["offset"], offsets
            if dense:
                assert offsets == list(range(since["offset"] + 1, since["offset"] + 1 + len(rest)))
            assert await no_message(d, 0.3), "a message twice"
    return missed, len(rest)


async def racing(a, b, n, pace=0.0005, dense=True):
    """n recoveries one after another on node a while a throttled
    publisher posts through node b (a and b may be one server): each
    recovered, none with a gap or a duplicate. Returns the seconds taken
    and how many were posted."""
    async with websockets.connect(b.url()) as pub, \
            websockets.connect(a.url(), max_queue=None) as watch:
        # The probe comes just before post m0.
        since = (position(await subscribed(watch, "w", "r")), -1)
        t0 = time.monotonic()
        async with Throttled(pub, "r", 1, pace=pace) as posting:
            for k in range(n):
                since = await recovers_racing(a.url(), f"c{k}", "r", since, posting, dense=dense)
        return time.monotonic() - t0, posting.sent


async def told_on_two_nodes(a, b, dense=True):
    """150 posts on each node at once, each asking its position: every
    offset from 2 to 301 once (dense; else 300 past the first), each as its
    delivery carried it, in the epoch of the first."""
    async with websockets.connect(a.url()) as pa, websockets.connect(b.url()) as pb, \
            websockets.connect(a.url()) as w:
        first = position(await subscribed(w, "w", "r"))
        told = await positions_told([pa, pb], w, "r", 150, dense)
        offsets = sorted(o for o, _ in told.values())
        assert offsets == list(range(2, 302)) if dense else offsets[0] > first["offset"], offsets
        assert {e for _, e in told.values()} == {first["epoch"]}
