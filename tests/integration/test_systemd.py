# SPDX-License-Identifier: Apache-2.0
"""systemd integration without systemd as the init: readiness datagrams to a
NOTIFY_SOCKET the test owns (sd_notify's protocol), and socket activation
by the real systemd-socket-activate (LISTEN_FDS), alone and with workers."""
import os
import shutil
import signal
import socket
import struct
import tempfile

import websockets

from xrtest import (ECHO, Server, client_ctx, echo_ok, free_port, get, make_cert, run,
                    skip_all, test, wait_until)

ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"


class Notify:
    """A notify socket as systemd makes one: datagrams, sender credentials."""

    def __init__(self, d, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            name = f"xraptor-test-{os.getpid()}-{free_port()}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            self.env = os.path.join(d, "notify")
            self.sock.bind(self.env)

    def recv(self, timeout=10):
        """(state lines as a dict, sender pid)."""
        self.sock.settimeout(timeout)
        msg, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", data[:12])[0]
        return dict(line.split("=", 1) for line in msg.decode().split("\n")), pid

    def nothing(self, timeout=0.5):
        try:
            return not self.recv(timeout)
        except socket.timeout:
            return True

    def close(self):
        self.sock.close()


@test
def test_readiness_reload_and_stop_are_notified():
    with tempfile.TemporaryDirectory() as d:
        cert, key = make_cert(d)
        for abstract in (False, True):
            n = Notify(d, abstract)
            port = free_port()
            srv = Server("--tls-cert", cert, "--tls-key", key, port=port, tls=True,
                         expect_start=False, env={"NOTIFY_SOCKET": n.env})
            state, pid = n.recv()
            assert state.get("READY") == "1" and pid == srv.proc.pid, (state, pid)
            # READY means serving: the port takes a TLS echo at once.
            assert echo_ok(port, tls_ctx=client_ctx(cert))
            srv.port = port
            srv.proc.send_signal(signal.SIGHUP)
            state, _ = n.recv()
            assert state.get("RELOADING") == "1" and int(state["MONOTONIC_USEC"]) > 0, state
            state, _ = n.recv()
            assert state.get("READY") == "1", state
            srv.proc.send_signal(signal.SIGTERM)
            state, _ = n.recv()
            assert state.get("STOPPING") == "1", state
            assert srv.wait() == 0
            n.close()


@test
def test_with_workers_only_the_supervisor_notifies():
    with tempfile.TemporaryDirectory() as d:
        n = Notify(d)
        port = free_port()
        srv = Server("--workers", "2", port=port, expect_start=False, env={"NOTIFY_SOCKET": n.env})
        state, pid = n.recv()
        assert state.get("READY") == "1" and pid == srv.proc.pid, (state, pid, srv.proc.pid)
        srv.wait_log(r"\[worker 2\] listening on")
        srv.wait_log(r"\[worker 1\] listening on")
        assert n.nothing(1.0), "a worker notified too"
        assert echo_ok(port)
        srv.proc.send_signal(signal.SIGTERM)
        state, pid = n.recv()
        assert state.get("STOPPING") == "1" and pid == srv.proc.pid, (state, pid)
        assert srv.wait() == 0
        n.close()


def activated(*args, fdname=None, port=None):
    """xraptor-echo under systemd-socket-activate: it listens, and on the
    first connection execs the server with the socket as fd 3."""
    port = port or free_port()
    names = [f"--fdname={fdname}"] if fdname else []
    srv = Server("-l", f"127.0.0.1:{port}", *names, ECHO, *args, binary=ACTIVATE, listen=False,
                 port=port)
    return srv, port


@test
async def test_socket_activation_serves_the_passed_socket():
    srv, port = activated()
    # Woken by a first connection (activated() waits for the port); then
    # every connection is served by the exec'd server on the same socket.
    async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send("woken")
        assert await ws.recv() == "woken"
    srv.wait_log(rf"listening on ws://127\.0\.0\.1:{port} \(socket passed as fd 3\)")
    assert get(port, "/health")[0] == 200
    assert "cannot listen" not in srv.log()


@test
async def test_socket_activation_shared_by_workers():
    srv, port = activated("--workers", "2")
    clients = [await websockets.connect(f"ws://127.0.0.1:{port}/") for _ in range(20)]
    for k, ws in enumerate(clients):
        await ws.send(f"m{k}")
        assert await ws.recv() == f"m{k}"
        await ws.close()
    for w in (1, 2):
        srv.wait_log(rf"\[worker {w}\] listening on ws://127\.0\.0\.1:{port} \(socket passed")
    assert "cannot listen" not in srv.log()


@test
def test_socket_named_wss_is_served_with_tls():
    with tempfile.TemporaryDirectory() as d:
        cert, key = make_cert(d)
        srv, port = activated("--tls-cert", cert, "--tls-key", key, fdname="wss")
        wait_until(lambda: _tls_echo(port, cert), 10, "TLS on the passed socket")
        srv.wait_log(rf"listening on wss://127\.0\.0\.1:{port} \(socket passed as fd 3\)")
        srv, port = activated(fdname="wss")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            pass
        srv.wait_log(r"named wss but no --tls-cert")
        assert srv.wait() == 1


def _tls_echo(port, cert):
    try:
        return echo_ok(port, tls_ctx=client_ctx(cert))
    except (OSError, AssertionError):
        return False


@test
def test_passed_fd_that_is_not_a_listening_socket_is_refused():
    # LISTEN_PID/LISTEN_FDS as a service manager would set them, fd 3 a file.
    srv = Server("-c", f'exec 3</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "{ECHO}"',
                 binary="/bin/sh", listen=False, expect_start=False)
    assert srv.wait() == 1
    assert "fd 3 is not a listening stream socket" in srv.log(), srv.log()


if __name__ == "__main__":
    if not os.access(ACTIVATE, os.X_OK):
        skip_all("no systemd-socket-activate (apt-get install systemd)")
    run()
