# SPDX-License-Identifier: Apache-2.0
"""A real Redis Cluster for the tests (redis-server --cluster-enabled yes,
redis-cli --cluster create), on free ports, torn down by run() like a
server; and Redis Cluster's hash slot of a name."""
import binascii
import os
import shutil
import subprocess
import tempfile

from xrtest import Broker, _servers, free_port, resp, wait_until

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def slot_of(name):
    """Redis Cluster's hash slot (CRC16-XMODEM, {hash tags})."""
    b = name.encode()
    i = b.find(b"{")
    if i >= 0:
        j = b.find(b"}", i + 1)
        if j > i + 1:
            b = b[i + 1:j]
    return binascii.crc_hqx(b, 0) % 16384


class RedisCluster:
    def __init__(self, masters=3, replicas=1, password=None):
        self.dir = tempfile.mkdtemp(prefix="xraptor-rcluster-")
        self.auth = (password,) if password else ()
        secret = ["--requirepass", password, "--masterauth", password] if password else []
        self.nodes = []
        for i in range(masters * (1 + replicas)):
            d = os.path.join(self.dir, str(i))
            os.makedirs(d)
            bus = free_port()
            # A short node timeout and no replica-validity limit: a replica
            # takes over about two seconds after its master dies.
            self.nodes.append(Broker(lambda port, d=d, bus=bus: [
                REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
                "--cluster-enabled", "yes", "--cluster-port", str(bus),
                "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
                "--cluster-replica-validity-factor", "0", "--save", "", "--appendonly", "no",
                *secret]))
        subprocess.run([REDIS_CLI, *(["-a", password, "--no-auth-warning"] if password else []),
                        "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
                        "--cluster-replicas", str(replicas), "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        self.wait_ok()
        self.next_seed = 0
        _servers.append(self)

    def live(self):
        return [n for n in self.nodes if n.proc and n.proc.poll() is None]

    def wait_ok(self, timeout=30):
        def ok():
            try:
                return all("cluster_state:ok" in resp(n.port, "CLUSTER", "INFO", auth=self.auth)
                           for n in self.live())
            except (AssertionError, OSError):
                return False
        wait_until(ok, timeout, "cluster_state:ok on every node")

    def seed(self):
        """Each call another node (masters and replicas alike)."""
        n = self.nodes[self.next_seed % len(self.nodes)]
        self.next_seed += 1
        return n.port

    def masters(self):
        """{port: (node id, [slot ranges])} of the masters the cluster sees now."""
        out = {}
        for line in resp(self.live()[0].port, "CLUSTER", "NODES").splitlines():
            f = line.split()
            if "master" in f[2] and "fail" not in f[2]:
                ranges = [tuple(map(int, r.split("-"))) if "-" in r else (int(r), int(r))
                          for r in f[8:] if not r.startswith("[")]
                if ranges:
                    out[int(f[1].split("@")[0].split(":")[1])] = (f[0], ranges)
        return out

    def owner(self, name):
        s = slot_of(name)
        for port, (_, ranges) in self.masters().items():
            if any(a <= s <= b for a, b in ranges):
                return port
        raise AssertionError(f"no master owns slot {s}")

    def node(self, port):
        return next(n for n in self.nodes if n.port == port)

    def subscribed(self, names):
        """Whether every channel has its count of shard subscribers, asked
        of the master that owns it."""
        try:
            for name, count in names.items():
                if resp(self.owner(name), "PUBSUB", "SHARDNUMSUB", name)[1] < count:
                    return False
            return True
        except (AssertionError, OSError):
            return False

    def down(self):
        for n in self.nodes:
            n.stop()

    def up(self):
        # Each node comes back from its nodes.conf: same ids, slots, roles.
        for n in self.nodes:
            n.start()
        self.wait_ok()

    def stop(self):
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)

    # Torn down by run() like a server: its nodes are brokers of their own.
    def kill(self):
        self.stop()

    def log(self):
        return ""

    def remove_log(self):
        pass
