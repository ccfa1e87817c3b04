"""The Redis antenna with a real redis-server: multi-node rooms, order,
broker loss and recovery (see multinode.py)."""
import shutil

from multinode import register
from xrtest import Broker, resp, run, skip_all

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

if __name__ == "__main__":
    if not shutil.which(REDIS):
        skip_all("redis-server not installed (apt-get install redis-server)")
    run()
