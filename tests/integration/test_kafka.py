# SPDX-License-Identifier: Apache-2.0
"""The Kafka antenna against a real Kafka-protocol broker (librdkafka's mock
cluster, 4 partitions): multi-node rooms, order per channel, broker loss and
recovery, presence heartbeats for is_alive (see multinode.py)."""
import json
import os

import websockets

from kafkamock import MOCK, KafkaMock
from multinode import post, register, streaming, sub
from xrtest import (CHAT, Server, free_port, health, metrics, recv_json, run, skip_all,
                    test, wait_until)

register(KafkaMock, lambda b: f"kafka://{b.bootstrap}/xraptor")


@test
async def test_several_bootstrap_hosts_one_of_them_dead():
    # A reserved port nobody listens on, first in one node's list and last
    # in the other's: each finds the live broker and they share a room.
    kafka = KafkaMock()
    dead = f"127.0.0.1:{free_port()}"
    a = Server("--antenna", f"kafka://{dead},{kafka.bootstrap}/xraptor", binary=CHAT)
    b = Server("--antenna", f"kafka://{kafka.bootstrap},{dead}/xraptor", binary=CHAT)
    for node in (a, b):
        wait_until(lambda: health(node.port)[0] == 200, 30, "connected past the dead host")
    async with websockets.connect(a.url()) as wa, websockets.connect(b.url()) as wb:
        await wa.send(sub("far", "k-room"))
        wait_until(lambda: metrics(a.port)["xraptor_channels"] == 1, 10, "SUB registered")
        await wb.send(post("p", "k-room", "b", "through one of two hosts"))
        assert (await recv_json(wb))["payload"] == '{"message": "Message sent"}'
        r = await recv_json(wa, 15)
        assert r["request_id"] == "far", r
        assert json.loads(r["payload"]) == {"origin": "b", "message": "through one of two hosts"}

@test
async def test_three_brokers_one_taken_down_delivery_goes_on():
    import time
    kafka = KafkaMock(brokers=3)
    assert kafka.bootstrap.count(",") == 2, kafka.bootstrap
    url = f"kafka://{kafka.bootstrap}/xraptor"
    async with streaming(url, url, "k3-room") as (a, b, stream):
        await stream.until(30, 400)
        # Broker 1 goes: as a real cluster would, its partitions get new
        # leaders (the mock does it) and the nodes' consumer groups a new
        # coordinator (told to the mock: it never moves one itself).
        for node in (a, b):
            group = node.wait_log(r"consumer group (\S+)").group(1)
            kafka.command(f"coordinator {group} 2")
        kafka.command("down 1")
        t0 = time.monotonic()
        await stream.until(len(stream.got) + 30, stream.sent + 600)
        print(f"# broker 1 down: deliveries resumed within {time.monotonic() - t0:.2f} s; "
              f"{stream.sent} posted, {len(stream.refused)} refused, {len(stream.got)} heard")
        stream.check()
        kafka.command("up 1")


if __name__ == "__main__":
    if not os.access(MOCK, os.X_OK):
        skip_all(f"no {MOCK} (the Kafka antenna was not built: apt-get install librdkafka-dev)")
    run()
