"""The Kafka antenna against a real Kafka-protocol broker (librdkafka's mock
cluster, 4 partitions): multi-node rooms, order per channel, broker loss and
recovery, presence heartbeats for is_alive (see multinode.py)."""
import os
import subprocess

from multinode import register
from xrtest import _servers, run, skip_all

MOCK = os.environ.get("XRAPTOR_KAFKA_MOCK", "xraptor-kafka-mock")


class KafkaMock:
    def __init__(self):
        self.proc = subprocess.Popen([MOCK, "xraptor", "4"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.bootstrap = self.proc.stdout.readline().strip()
        assert self.bootstrap, "mock cluster printed no address"
        _servers.append(self)

    def command(self, what):
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def subscribed(self, names):
        # One topic for every channel: a node's subscription is a filter of
        # its own, in place once its consumer is assigned (health 200).
        return True

    def down(self):
        self.command("down")

    def up(self):
        self.command("up")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    stop = kill

    def log(self):
        return ""

    def remove_log(self):
        pass


register(KafkaMock, lambda b: f"kafka://{b.bootstrap}/xraptor")

if __name__ == "__main__":
    if not os.access(MOCK, os.X_OK):
        skip_all(f"no {MOCK} (the Kafka antenna was not built: apt-get install librdkafka-dev)")
    run()
