# SPDX-License-Identifier: Apache-2.0
"""A real Kafka-protocol broker for the tests: librdkafka's own mock
cluster, run by xraptor-kafka-mock (antennas/kafka/kafka_mock.c)."""
import os
import subprocess

from xrtest import _servers

MOCK = os.environ.get("XRAPTOR_KAFKA_MOCK", "xraptor-kafka-mock")


class KafkaMock:
    def __init__(self, brokers=1, partitions=4):
        self.proc = subprocess.Popen([MOCK, "xraptor", str(partitions), str(brokers)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.bootstrap = self.proc.stdout.readline().strip()
        assert self.bootstrap, "mock cluster printed no address"
        _servers.append(self)

    def command(self, what):
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def cluster_id(self):
        self.proc.stdin.write("id\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

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
