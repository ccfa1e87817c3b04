# SPDX-License-Identifier: Apache-2.0
"""Allocation counts on the hot paths, once warm (not timed: it counts).

xraptor-echo and the protocol server run with an LD_PRELOAD shim that
counts malloc/calloc/realloc calls; the test reads the count before and
after 10 000 messages and requires a small constant bound, whatever the
number of messages."""
import asyncio
import os
import signal
import tempfile
import time

import websockets

from xrtest import CHAT, PROTOSERVER, Server, metrics, request, run, skip_all, test, wait_until

SHIM = os.environ.get("XRAPTOR_ALLOC_SHIM", "")
MESSAGES = 10000
BOUND = 100      # whatever the count of messages: a warm path allocates nothing


class Counted(Server):
    def __init__(self, *args, **kw):
        self.count_file = tempfile.NamedTemporaryFile(prefix="xraptor-alloc-", delete=False).name
        super().__init__(*args, env={"LD_PRELOAD": SHIM, "XR_ALLOC_COUNT_FILE": self.count_file},
                         **kw)

    def allocations(self):
        open(self.count_file, "w").close()
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(self.count_file) as f:
                s = f.read()
            if s.endswith("\n"):
                return int(s)
            time.sleep(0.01)
        raise AssertionError("the allocation shim did not answer")


async def exchange(ws, make, expect, n, window=32):
    """n messages, window in flight, each answer checked."""
    sent = got = 0
    while got < n:
        while sent < n and sent - got < window:
            await ws.send(make(sent))
            sent += 1
        reply = await asyncio.wait_for(ws.recv(), 10)
        assert expect(got, reply), reply
        got += 1


@test
async def test_echo_allocates_nothing_per_message_once_warm():
    with Counted() as srv:
        async with websockets.connect(srv.url(), compression=None) as ws:
            msg = lambda i: "message %06d " % i + "x" * 50
            await exchange(ws, msg, lambda i, r: r == msg(i), 2000)
            before = srv.allocations()
            await exchange(ws, msg, lambda i, r: r == msg(i), MESSAGES)
            after = srv.allocations()
            # also binary, bigger, one at a time
            await exchange(ws, lambda i: bytes(3000), lambda i, r: r == bytes(3000), 2000, 1)
            before2 = srv.allocations()
            await exchange(ws, lambda i: bytes(3000), lambda i, r: r == bytes(3000), MESSAGES, 1)
            after2 = srv.allocations()
        print(f"# echo: {after - before} allocations over {MESSAGES} pipelined messages, "
              f"{after2 - before2} over {MESSAGES} one at a time")
        assert after - before <= BOUND, after - before
        assert after2 - before2 <= BOUND, after2 - before2


@test
async def test_route_allocates_nothing_per_request_once_warm():
    # The protocol path: parse, route, handler, JSON response.
    with Counted(binary=PROTOSERVER) as srv:
        async with websockets.connect(srv.url(), compression=None) as ws:
            def req(i):
                return request(f"r{i % 50}", "/echo", "POST", "hello \u00e9 %d" % i,
                               {"token": "t%d" % (i % 7)})

            def ok(i, reply):
                return f'"payload":"hello \u00e9 {i}"' in reply
            await exchange(ws, req, ok, 2000)
            before = srv.allocations()
            await exchange(ws, req, ok, MESSAGES)
            after = srv.allocations()
        print(f"# route: {after - before} allocations over {MESSAGES} requests")
        assert after - before <= BOUND, after - before


@test
async def test_chat_post_allocates_nothing_per_request_once_warm():
    # xraptor-chat's POST: the payload's members read (xr_payload_str), a
    # message built (xr_publishf) and published to a room with a member,
    # the answer (xr_replyf), the member's delivery.
    import json
    with Counted(binary=CHAT) as srv:
        async with websockets.connect(srv.url(), compression=None) as member, \
                websockets.connect(srv.url(), compression=None) as ws:
            await member.send(request("m", "/chat_messages", "SUB", json.dumps({"chat_id": "r"})))
            wait_until(lambda: metrics(srv.port)["xraptor_rooms"] == 1, 10, "joined")

            def req(i):
                return request(f"p{i % 50}", "/send_message_to_chat_room", "POST",
                               json.dumps({"chat_id": "r", "client_id": "c\u00e9",
                                           "message": 'say "%d"\n' % i}))

            def ok(i, reply):
                return '"payload":"{\\"message\\": \\"Message sent\\"}"' in reply

            async def heard(n):
                for i in range(n):
                    r = json.loads(await asyncio.wait_for(member.recv(), 10))
                    assert json.loads(r["payload"]) == {"origin": "c\u00e9",
                                                        "message": 'say "%d"\n' % i}, r
            listener = asyncio.create_task(heard(2000 + MESSAGES))
            await exchange(ws, req, ok, 2000)
            before = srv.allocations()
            await exchange(ws, lambda i: req(i + 2000), ok, MESSAGES)
            after = srv.allocations()
            await listener
        print(f"# chat POST: {after - before} allocations over {MESSAGES} requests")
        assert after - before <= BOUND, after - before


@test
async def test_room_fanout_allocates_nothing_per_message_once_warm():
    # A room of 20 members (SUB channels of their own), one publisher: the
    # antenna, the room walk, the shared frames and the writes, per message.
    members, warm, n = 20, 300, 3000
    with Counted(binary=PROTOSERVER) as srv:
        pub = await websockets.connect(srv.url(), compression=None)
        subs = []
        for i in range(members):
            ws = await websockets.connect(srv.url(), compression=None)
            await ws.send(request(f"m{i}", "/stream", "SUB"))
            assert "subscribed" in await asyncio.wait_for(ws.recv(), 5)
            await pub.send(request("j", "/room/join", "POST", f"fan|m{i}"))
            assert '"payload":"ok"' in await asyncio.wait_for(pub.recv(), 5)
            subs.append(ws)

        async def receive(ws, count, first):
            for k in range(first, first + count):
                got = await asyncio.wait_for(ws.recv(), 10)
                assert f'"payload":"hello {k}"' in got, (k, got)

        async def publish(first, count):
            readers = [asyncio.create_task(receive(ws, count, first)) for ws in subs]
            for k in range(first, first + count):
                await pub.send(request("p", "/publish", "POST", f"fan|hello {k}"))
                assert '"payload":"published"' in await asyncio.wait_for(pub.recv(), 5)
            await asyncio.gather(*readers)
        await publish(0, warm)
        before = srv.allocations()
        await publish(warm, n)
        after = srv.allocations()
        for ws in subs + [pub]:
            await ws.close()
    print(f"# room fan-out: {after - before} allocations over {n} messages "
          f"to {members} members ({n * members} deliveries)")
    assert after - before <= BOUND, after - before


@test
async def test_shim_counts_for_real():
    # The same counter must see allocations that do happen: 1000 new
    # connections each allocate (connection state, buffers).
    with Counted() as srv:
        before = srv.allocations()
        for _ in range(50):
            async with websockets.connect(srv.url(), compression=None) as ws:
                await ws.send("x")
                await ws.recv()
        assert srv.allocations() - before >= 50 * 3


if __name__ == "__main__":
    if os.environ.get("XRAPTOR_SANITIZED") == "yes":
        # ASan owns malloc there; the counting shim cannot sit beside it, and
        # sanitized builds keep libevent on plain malloc anyway.
        skip_all("allocation counting needs a build without --enable-sanitizers")
    if not SHIM or not os.path.exists(SHIM):
        skip_all("XRAPTOR_ALLOC_SHIM not built (make check builds tests/alloc/libcountalloc.so)")
    run()
