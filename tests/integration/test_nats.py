"""The NATS antenna with a real nats-server: multi-node rooms, order,
broker loss and recovery, presence probes (see multinode.py)."""
import shutil

from multinode import register
from xrtest import Broker, run, skip_all

NATS = shutil.which("nats-server") or "/usr/bin/nats-server"


class Nats(Broker):
    def __init__(self):
        super().__init__(lambda port: [NATS, "-a", "127.0.0.1", "-p", str(port)])

    def down(self):
        self.stop()

    def up(self):
        self.start()


register(Nats, lambda b: f"nats://127.0.0.1:{b.port}")

if __name__ == "__main__":
    if not shutil.which(NATS):
        skip_all("nats-server not installed (apt-get install nats-server)")
    run()
