# SPDX-License-Identifier: Apache-2.0
"""The Redis antenna with a real redis-server: multi-node rooms, order,
broker loss and recovery (see multinode.py)."""
import os
import shutil
import tempfile

import websockets

from multinode import register, sub
from xrtest import CHAT, Broker, Server, health, resp, run, skip_all, test, wait_until

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class Redis(Broker):
    def __init__(self):
        super().__init__(lambda port: [REDIS, "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"])

    def subscribed(self, names):
        """Whether every channel has at least its count of subscribers."""
        r = resp(self.port, "PUBSUB", "NUMSUB", *names)
        have = dict(zip(r[::2], r[1::2]))
        return all(have.get(n, 0) >= c for n, c in names.items())

    def down(self):
        self.stop()

    def up(self):
        self.start()


register(Redis, lambda b: f"redis://127.0.0.1:{b.port}")


def clients(port, auth, **kw):
    """CLIENT LIST of the Redis on port, as dicts, our own connection left out."""
    out = []
    for line in resp(port, "CLIENT", "LIST", auth=auth, **kw).splitlines():
        c = dict(f.split("=", 1) for f in line.split(" ") if "=" in f)
        if c.get("cmd") != "client|list":
            out.append(c)
    return out


@test
async def test_url_forms_password_user_database_and_unix_socket():
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "redis.sock")
        redis = Broker(lambda port: [REDIS, "--port", str(port), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no",
                                     "--requirepass", "secret", "--unixsocket", sock,
                                     "--unixsocketperm", "700",
                                     "--user", "alice", "on", ">alice-pw", "~*", "&*", "+@all"])
        root = ("secret",)
        # Pub/sub ignores the database: only the publisher SELECTs it.
        for url, want, n in ((f"redis://:secret@127.0.0.1:{redis.port}/3", {"db": "3"}, 1),
                             (f"redis://alice:alice-pw@127.0.0.1:{redis.port}", {"user": "alice"}, 2),
                             (f"redis://:secret@{sock}", {"flags": "U"}, 2)):
            with Server("--antenna", url, binary=CHAT) as node:
                wait_until(lambda: health(node.port)[0] == 200, 10, f"{url} connected")
                # The node's connections (subscriber, publisher) in the form
                # the URL asked for, and a SUB reaches Redis.
                wait_until(lambda: sum(all(c.get(k) == v for k, v in want.items())
                                       for c in clients(redis.port, root)) == n,
                           10, f"{n} connection(s) with {want}")
                async with websockets.connect(node.url()) as ws:
                    await ws.send(sub("via-url", "url-room"))
                    wait_until(lambda: resp(redis.port, "PUBSUB", "NUMSUB", "url-room",
                                            auth=root)[1] == 1, 10, "SUB through " + url)
            wait_until(lambda: clients(redis.port, root) == [], 10, "node gone")
        # A wrong password is logged as Redis's refusal, not hidden.
        with Server("--antenna", f"redis://:wrong@127.0.0.1:{redis.port}", binary=CHAT) as node:
            node.wait_log(r"redis antenna: (subscriber|publisher) refused: WRONGPASS", 10)
        redis.stop()
        # redis:///path with no password, on a Redis that has no TCP port.
        plain = os.path.join(d, "plain.sock")
        bare = Broker(lambda port: [REDIS, "--port", "0", "--save", "", "--appendonly", "no",
                                    "--unixsocket", plain], port=1,
                      ready=lambda: wait_until(lambda: os.path.exists(plain), 10, "redis socket"))
        with Server("--antenna", f"redis://{plain}", binary=CHAT) as node:
            wait_until(lambda: health(node.port)[0] == 200, 10, "connected over the socket")
            async with websockets.connect(node.url()) as ws:
                await ws.send(sub("bare", "bare-room"))
                wait_until(lambda: resp(0, "PUBSUB", "NUMSUB", "bare-room", unix=plain)[1] == 1,
                           10, "SUB over the unix socket")
        bare.stop()

if __name__ == "__main__":
    if not shutil.which(REDIS):
        skip_all("redis-server not installed (apt-get install redis-server)")
    run()
