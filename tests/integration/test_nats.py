# SPDX-License-Identifier: Apache-2.0
"""The NATS antenna with a real nats-server: multi-node rooms, order,
broker loss and recovery, presence probes (see multinode.py)."""
import shutil

from multinode import register
import json
import urllib.request

import websockets

from multinode import sub
from xrtest import CHAT, Broker, Server, free_port, health, run, skip_all, test, wait_until

NATS = shutil.which("nats-server") or "/usr/bin/nats-server"


class Nats(Broker):
    def __init__(self, *extra):
        self.monitor = free_port()
        super().__init__(lambda port: [NATS, "-a", "127.0.0.1", "-p", str(port),
                                       "-m", str(self.monitor), *extra])

    def subscribed(self, names):
        """Whether every channel has its count of subscriptions (subject
        xr.c.<name>), read from the server's monitoring port."""
        url = f"http://127.0.0.1:{self.monitor}/subsz?subs=1&limit=100000"
        with urllib.request.urlopen(url, timeout=5) as r:
            subs = json.load(r).get("subscriptions_list") or []
        have = {}
        for x in subs:
            have[x["subject"]] = have.get(x["subject"], 0) + 1
        return all(have.get(f"xr.c.{n}", 0) >= c for n, c in names.items())

    def down(self):
        self.stop()

    def up(self):
        self.start()


register(Nats, lambda b: f"nats://127.0.0.1:{b.port}")


@test
async def test_cluster_of_two_servers_a_node_fails_over_when_its_server_dies():
    import time
    from multinode import streaming
    from xrtest import metrics
    c1, c2 = free_port(), free_port()

    def member(cport, other):
        return lambda port: [NATS, "-a", "127.0.0.1", "-p", str(port), "--cluster_name", "xr",
                             "--cluster", f"nats://127.0.0.1:{cport}",
                             "--routes", f"nats://127.0.0.1:{other}"]
    s1, s2 = Broker(member(c1, c2)), Broker(member(c2, c1))
    # Servers are tried in the order written: A starts on s1, B on s2.
    async with streaming(f"nats://127.0.0.1:{s1.port},127.0.0.1:{s2.port}",
                         f"nats://127.0.0.1:{s2.port},127.0.0.1:{s1.port}",
                         "cluster-room") as (a, b, stream):
        await stream.until(50, 450)       # across the route: B -> s2 -> s1 -> A
        s1.kill()
        t0 = time.monotonic()
        wait_until(lambda: health(a.port)[0] == 200 and
                   metrics(a.port)["xraptor_antenna_reconnects_total"] >= 1, 20,
                   "A back on s2")
        failover = time.monotonic() - t0
        await stream.until(len(stream.got) + 50, stream.sent + 450)
        stream.check()
        print(f"# A failed over from s1 to s2 in {failover:.2f} s; {stream.sent} posted, "
              f"{len(stream.refused)} refused, {len(stream.got)} heard")
    assert "nats at 127.0.0.1" in a.log()


@test
async def test_credentials_in_the_url():
    nats = Nats("--user", "xr", "--pass", "s3cret")
    with Server("--antenna", f"nats://xr:s3cret@127.0.0.1:{nats.port}", binary=CHAT) as node:
        wait_until(lambda: health(node.port)[0] == 200, 10, "connected with credentials")
        async with websockets.connect(node.url()) as ws:
            await ws.send(sub("creds", "creds-room"))
            wait_until(lambda: nats.subscribed({"creds-room": 1}), 10, "SUB reached NATS")
    with Server("--antenna", f"nats://xr:wrong@127.0.0.1:{nats.port}", binary=CHAT) as node:
        node.wait_log(r"nats antenna: .*gave up: .*user:password", 15)
        assert health(node.port)[0] == 503, node.log()

if __name__ == "__main__":
    if not shutil.which(NATS):
        skip_all("nats-server not installed (apt-get install nats-server)")
    run()
