# SPDX-License-Identifier: Apache-2.0
"""History and recovery on nats:// with a real nats-server (JetStream on):
positions given by compare-and-set on the channel's last message in the
stream, a client recovers on another node what was posted on the first,
recoveries racing a publisher on the other node have no gap and no
duplicate, posts racing on two nodes are each told their own position, a
deleted stream is a new epoch and never an old message, the window and
the TTL, the history read, and a malformed position from the broker is
dropped. Through xraptor-chat: the room is the stream recovered."""
import json
import os
import shutil
import socket
import tempfile

import websockets

from histtest import (HISTORY, answer, away_for, busy_past_ttl, deliveries, position, post,
                      publisher, quiet_past_ttl, racing, read_back_newest, recovers_on_another_node,
                      sub, subscribed, text, told_on_two_nodes)
from xrtest import (CHAT, Broker, Server, healthy, no_message, recv_json, run, skip_all,
                    test, wait_until)

NATS = shutil.which("nats-server") or "/usr/bin/nats-server"
STREAM = "XRAPTOR_HISTORY"


def nats():
    store = tempfile.mkdtemp(prefix="xraptor-js-")
    return Broker(lambda port: [NATS, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store])


def node(broker, *args):
    srv = Server("--antenna", f"nats://127.0.0.1:{broker.port}", *(args or HISTORY), binary=CHAT)
    wait_until(lambda: healthy(srv.port), 15, "antenna connected")
    return srv


def nats_say(port, subject, payload=b"", headers=None, reply=True, timeout=5):
    """One message to a real nats-server in its own protocol (headers as
    HPUB), and with reply the answer's body (JetStream's API answers so)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        f = s.makefile("rb")
        f.readline()                                    # INFO
        s.sendall(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\nSUB _t.r 1\r\n')
        to = b" _t.r" if reply else b""
        if headers:
            hdr = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers) + b"\r\n"
            s.sendall(b"HPUB %s%s %d %d\r\n%s%s\r\n" % (subject.encode(), to, len(hdr),
                                                        len(hdr) + len(payload), hdr, payload))
        else:
            s.sendall(b"PUB %s%s %d\r\n%s\r\n" % (subject.encode(), to, len(payload), payload))
        s.sendall(b"PING\r\n")
        while True:
            line = f.readline()
            assert line, "nats-server closed the connection"
            if line.startswith(b"PONG") and not reply:
                return None
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG "):
                body = f.read(int(line.split()[-1]) + 2)[:-2]
                return json.loads(body) if body else None
            elif line.startswith(b"HMSG "):
                w = line.split()
                data = f.read(int(w[-1]) + 2)[:-2]
                body = data[int(w[-2]):]
                return json.loads(body) if body else data[:int(w[-2])].decode()
            elif line.startswith(b"-ERR"):
                raise AssertionError(line.decode())
    finally:
        s.close()


def kept_in(port, subject):
    """How many messages the stream holds on one kept subject."""
    info = nats_say(port, f"$JS.API.STREAM.INFO.{STREAM}", json.dumps(
        {"subjects_filter": subject}).encode())
    return (info["state"].get("subjects") or {}).get(subject, 0)


@test
async def test_a_client_recovers_on_another_node_what_was_posted_meanwhile():
    with nats() as broker, node(broker) as a, node(broker) as b:
        assert "keeps none" not in a.log(), a.log()
        missed, got = await recovers_on_another_node(a, b)
        assert kept_in(broker.port, "xr.k.c.r") == 300, "JetStream keeps the newest 300"
        print(f"# recovered {missed} missed on the other node, {got} in all without a gap")


@test
async def test_recoveries_racing_a_publisher_on_another_node_have_no_gap_and_no_duplicate():
    with nats() as broker, node(broker) as a, node(broker) as b:
        n = 300
        took, sent = await racing(a, b, n)
        print(f"# {n} recoveries on one node racing a publisher on the other in {took:.1f} s, "
              f"{sent} posts, no gap, no duplicate")


@test
async def test_posts_on_two_nodes_are_told_their_positions():
    # Each post reads the channel's last message and is stored only if
    # none came in meanwhile: posts racing on two nodes each learn the
    # position its deliveries carry, none twice.
    with nats() as broker, node(broker) as a, node(broker) as b:
        await told_on_two_nodes(a, b)


@test
async def test_a_deleted_stream_is_a_new_epoch_never_an_old_message():
    with nats() as broker, node(broker) as srv:
        async with websockets.connect(srv.url()) as pub, websockets.connect(srv.url()) as w, \
                websockets.connect(srv.url()) as b:
            since = position(await subscribed(w, "w", "r"))
            await publisher(pub, "r", 3, 0)
            await deliveries(w, "m2")
            assert nats_say(broker.port, f"$JS.API.STREAM.DELETE.{STREAM}")["success"] is True
            await pub.send(post("after", "r", "after"))
            assert json.loads((await recv_json(pub))["payload"])["message"] == "Message sent"
            m = await recv_json(w)
            assert text(m) == "after" and m["header"]["epoch"] != since["epoch"], m
            assert m["header"]["offset"] == 1, ("offsets start again in the new epoch", m)
            await b.send(sub("b", "r", since))
            h = await answer(b, "b")
            assert h["recovered"] is False and h["epoch"] == m["header"]["epoch"], h
            assert h["offset"] == 1, h
            assert await no_message(b, 0.3), "a message of another history"


@test
async def test_the_window_and_the_ttl_are_kept():
    with nats() as broker:
        with node(broker, "--history-size", "5", "--history-ttl", "300") as srv:
            async with websockets.connect(srv.url()) as pub:
                h, since, got = await away_for(srv, pub, "r", 5, 0)
                assert h["recovered"] is True and h["offset"] == since["offset"] + 5, h
                assert got == [f"m{i}" for i in range(5)] + ["live"], got
                h, since, got = await away_for(srv, pub, "r", 6, 10)
                assert h["recovered"] is False and h["offset"] == since["offset"] + 6, h
                assert got == ["live"], got
        assert kept_in(broker.port, "xr.k.c.r") == 5, "JetStream keeps the newest 5"
        with node(broker, "--history-room", "q* 100 1", "--history-room", "b* 100 3") as srv:
            async with websockets.connect(srv.url()) as pub:
                b, _ = await quiet_past_ttl(srv, pub)
                await b.close()
                # A message past its TTL (3 s for b*) is still in the stream
                # but is not handed out.
                await busy_past_ttl(srv, pub, lambda: kept_in(broker.port, "xr.k.c.busy"))


@test
async def test_the_newest_messages_are_read_back():
    with nats() as broker, node(broker, "--history-size", "5", "--history-ttl", "300") as srv:
        async with websockets.connect(srv.url()) as ws:
            read = await read_back_newest(ws)
            # The read opened the quiet channel's epoch: a later one has it.
            first = await read({"channel": "quiet"})
            assert (await read({"channel": "quiet"}))["epoch"] == first["epoch"]


@test
async def test_a_malformed_position_from_the_broker_is_dropped():
    with nats() as broker, node(broker) as srv:
        async with websockets.connect(srv.url()) as ws:
            first = position(await subscribed(ws, "w", "r"))
            bad = ((b"x", b"e"), (b"-1", b"e"), (b"01", b"e"), (b"1", b""), (b"1", b"e\x1b[31m"),
                   (b"9" * 21, b"e"), (b"1", b"e" * 65))
            # Straight to where the stream republishes (anyone may publish
            # there), with a malformed position or none: each dropped.
            for off, epoch in bad:
                nats_say(broker.port, "xr.r.c.r", json.dumps({"message": "bad"}).encode(),
                         [(b"Xr-Offset", off), (b"Xr-Epoch", epoch)], reply=False)
            nats_say(broker.port, "xr.r.c.r", json.dumps({"message": "bad"}).encode(), reply=False)
            nats_say(broker.port, "xr.c.r", json.dumps({"message": "plain"}).encode(), reply=False)
            m = await recv_json(ws)
            assert text(m) == "plain" and m["header"] == {}, m
            await ws.send(post("p", "r", "kept"))
            assert (await recv_json(ws))["request_id"] == "p"
            m = await recv_json(ws)
            assert text(m) == "kept" and m["header"] == {"offset": 2, "epoch": first["epoch"]}, m
            # Into the stream itself: what its last message follows cannot
            # be told, so the next post starts a new epoch after it.
            nats_say(broker.port, "xr.k.c.r", json.dumps({"message": "bad"}).encode(),
                     [(b"Xr-Offset", b"x"), (b"Xr-Epoch", b"e")], reply=False)
            await ws.send(post("p", "r", "after"))
            assert (await recv_json(ws))["request_id"] == "p"
            m = await recv_json(ws)
            assert text(m) == "after" and m["header"]["offset"] == 1, m
            assert m["header"]["epoch"] != first["epoch"], m
            assert await no_message(ws, 0.3)
        assert "position is malformed" in srv.log(), srv.log()


if __name__ == "__main__":
    if not os.path.exists(NATS):
        skip_all("nats-server not installed (apt-get install nats-server)")
    run()
