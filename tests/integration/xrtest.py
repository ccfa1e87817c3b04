# SPDX-License-Identifier: Apache-2.0
"""Helpers for xraptor's integration tests.

Starts the real server binaries on 127.0.0.1 with an OS-chosen port (read
back from the server's own log line), speaks raw WebSocket over sockets for
malformed input, and reports each test as a TAP line for automake's
tap-driver. Every wait is bounded; every server started is killed.
"""
import asyncio
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback

ECHO = os.environ.get("XRAPTOR_ECHO", "xraptor-echo")
TESTSERVER = os.environ.get("XRAPTOR_TESTSERVER", "xraptor-testserver")
PROTOSERVER = os.environ.get("XRAPTOR_PROTOSERVER", "xraptor-protoserver")
CHAT = os.environ.get("XRAPTOR_CHAT", "xraptor-chat")
WEB_DIRS = [d for d in os.environ.get("XRAPTOR_WEB", "").split(":") if d]
OPENSSL = os.environ.get("XRAPTOR_OPENSSL") or "openssl"
TEST_TIMEOUT = 60

_servers = []


class Server:
    """A server process listening on 127.0.0.1:<free port>."""

    def __init__(self, *args, binary=None, tls=False, expect_start=True, env=None, port=None,
                 listen=True):
        self.binary = binary or ECHO
        self.logf = tempfile.NamedTemporaryFile(prefix="xraptor-test-", suffix=".log", delete=False)
        # Nothing may reach stdout (a library that prints would corrupt an
        # application's own output): teardown fails a test that finds any.
        self.outf = tempfile.NamedTemporaryFile(prefix="xraptor-test-", suffix=".out", delete=False)
        # listen=False: the listeners come from args (a config file); give port.
        self.args = [self.binary, *(["--listen", f"127.0.0.1:{port or 0}"] if listen else []), *args]
        # env: variables added to ours for this server only (None removes one)
        if env:
            env = {k: v for k, v in dict(os.environ, **env).items() if v is not None}
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=self.outf, stderr=self.logf, env=env)
        _servers.append(self)
        self.port = None
        self.tls = tls
        # Set once a test has stopped, signalled or waited for the server
        # itself: any other exit before teardown is a crash and fails it.
        self.expected_exit = not expect_start
        if expect_start and port:
            # A port given (a log level that hides the "listening" line).
            wait_port(port)
            self.port = port
        elif expect_start:
            self.port = self.wait_log(r"listening on wss?://127\.0\.0\.1:(\d+)", 10)
            self.port = int(self.port.group(1))

    def log(self):
        with open(self.logf.name, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        m = re.search(pattern, self.log())
        if m:
            return m
        raise AssertionError(f"log never matched {pattern!r}; exit={self.proc.poll()} log:\n{self.log()}")

    def url(self, path="/"):
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}{path}"

    def signal(self, sig):
        if sig != signal.SIGUSR2:
            self.expected_exit = True
        self.proc.send_signal(sig)

    def wait(self, timeout=15):
        self.expected_exit = True
        return self.proc.wait(timeout)

    def stop(self, timeout=15):
        self.expected_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self):
        """Teardown: a graceful stop (SIGTERM; a second one drops the
        clients still there), so the exit runs the frees that leak checkers
        look at. Returns why the teardown failed, or None: the server died
        before (a crash after the test's last assertion), did not stop
        cleanly (exit status, or a SIGKILL after 20 s), or wrote to stdout."""
        if not hasattr(self, "_why"):
            self._why = self._stop_gracefully()
            if not self._why and self.stdout():
                self._why = f"the server wrote to stdout: {self.stdout()[:200]!r}"
        return self._why

    def stdout(self):
        with open(self.outf.name, errors="replace") as f:
            return f.read()

    def _stop_gracefully(self):
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            return None if self.expected_exit else f"the server exited early (status {rc})"
        self.expected_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(0.3)
        except subprocess.TimeoutExpired:
            # The second SIGTERM drops clients still draining; once the
            # loop has stopped (modules being unloaded: librdkafka may take
            # a while) it would only kill the process mid-cleanup.
            if not re.search(r"info +(\[worker \d+\] )?stopped$", self.log(), re.M):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "the server did not stop within 20 s of SIGTERM"
        rc = self.proc.returncode
        return None if rc == 0 else f"the server's graceful stop exited with status {rc}"

    def remove_log(self):
        for f in (self.logf, self.outf):
            try:
                os.unlink(f.name)
            except OSError:
                pass

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


# ---- raw WebSocket over sockets ------------------------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def connect(port, timeout=5, tls_ctx=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls_ctx:
        s = tls_ctx.wrap_socket(s, server_hostname="127.0.0.1")
    return s


def recv_until(sock, marker, limit=1 << 16):
    buf = b""
    while marker not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            break
    return buf


def http_request(port, raw, tls_ctx=None):
    """Sends raw bytes, returns (status, headers dict lower-cased, body)."""
    s = connect(port, tls_ctx=tls_ctx)
    try:
        s.sendall(raw)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return parse_response(data)


def parse_response(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/1.1 "):
        raise AssertionError(f"not an HTTP response: {data[:200]!r}")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def get(port, path, method="GET", tls_ctx=None):
    return http_request(port, f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(), tls_ctx)


def upgrade_request(path="/", extra=""):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def ws_open(port, extra="", tls_ctx=None, timeout=5):
    """A raw WebSocket: returns the socket after a 101."""
    s = connect(port, timeout=timeout, tls_ctx=tls_ctx)
    s.sendall(upgrade_request(extra=extra))
    head = recv_until(s, b"\r\n\r\n")
    status, headers, rest = parse_response(head)
    assert status == 101, f"expected 101, got {status}: {head!r}"
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert rest == b"", "server sent frames before any request"
    return s


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return hdr + key + masked


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def read_frame(sock):
    """(fin, opcode, payload) of one server frame; server frames are unmasked."""
    b0, b1 = recv_exact(sock, 2)
    assert not (b1 & 0x80), "server frame is masked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(sock, 8))[0]
    return bool(b0 & 0x80), b0 & 0x0F, recv_exact(sock, n)


def read_close(sock, skip_data=True):
    """Reads frames until a close frame; returns (code, reason), (None, "")
    for a close frame without a status code (never (1005, ""): 1005 must
    not be sent, and a test must be able to tell), or None on EOF."""
    try:
        while True:
            fin, op, payload = read_frame(sock)
            if op == 8:
                if len(payload) >= 2:
                    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()
                assert not payload, f"a close payload of one byte: {payload!r}"
                return None, ""
            if not skip_data:
                raise AssertionError(f"expected a close frame, got opcode {op}")
    except (EOFError, ConnectionResetError):
        return None


def wait_eof(sock, timeout):
    """True if the server closes the socket within timeout seconds."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except (socket.timeout, TimeoutError):
        return False


def metrics(port, tls_ctx=None):
    status, _, body = get(port, "/metrics", tls_ctx=tls_ctx)
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def echo_ok(port, tls_ctx=None):
    """The server still serves: a raw client gets its echo back."""
    s = ws_open(port, tls_ctx=tls_ctx)
    try:
        s.sendall(frame(1, "still alive"))
        fin, op, payload = read_frame(s)
        assert (fin, op, payload) == (True, 1, b"still alive"), (fin, op, payload)
        s.sendall(frame(8, close_payload(1000)))
        assert read_close(s) == (1000, "")
    finally:
        s.close()
    return True


# ---- the X-raptor protocol ---------------------------------------------------

def request(rid, route, method, payload="", header=None):
    import json
    return json.dumps({"request_id": rid, "payload": payload, "header": header or {},
                       "route": route, "method": method})


async def recv_json(ws, timeout=5):
    import json
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def no_message(ws, wait=0.3):
    """True if nothing arrives within wait seconds."""
    try:
        await asyncio.wait_for(ws.recv(), wait)
        return False
    except asyncio.TimeoutError:
        return True


# ---- brokers ------------------------------------------------------------------

_port_locks = []


def free_port():
    """A loopback port that stays ours for this process's life, so a broker
    can be stopped and started again on it. Taken below the kernel's
    ephemeral range (no outgoing connection is ever given it) and reserved
    with a lock file (no other test process under make -j picks it)."""
    import fcntl
    import random
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    lo, hi = max(1024, low - 12000), low - 1
    lockdir = os.path.join(tempfile.gettempdir(), "xraptor-test-ports")
    os.makedirs(lockdir, exist_ok=True)
    for _ in range(200):
        port = random.randint(lo, hi)
        fd = os.open(os.path.join(lockdir, str(port)), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            continue
        finally:
            s.close()
        _port_locks.append(fd)
        return port
    raise AssertionError(f"no free port in {lo}-{hi}")


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


class Broker:
    """A real broker process on a loopback port, killed by run() at the end."""

    def __init__(self, argv_for_port, port=None, ready=None):
        self.argv_for_port = argv_for_port
        self.port = port or free_port()
        self.ready = ready or (lambda: wait_port(self.port))
        self.proc = None
        self.start()
        _servers.append(self)

    def start(self):
        self.logf = tempfile.NamedTemporaryFile(prefix="xraptor-broker-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.argv_for_port(self.port), stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf)
        self.ready()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    kill = stop

    def log(self):
        with open(self.logf.name, errors="replace") as f:
            return f.read()

    def remove_log(self):
        try:
            os.unlink(self.logf.name)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Relay:
    """A TCP relay on a loopback port in front of a real broker, to stand
    for a slow network: connections that carried a marker from the node
    (b"SUBSCRIBE": Redis' subscriber connection) are "marked". hold(sending,
    marked) keeps one direction (node to broker when sending) of the marked
    connections or of the others waiting, in order, until release(). Every
    byte is the node's and the broker's own; nothing is answered here."""

    def __init__(self, upstream, marker):
        import selectors
        import threading
        self.upstream, self.marker = upstream, marker
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ)
        self.lock = threading.Lock()
        self.peer, self.down, self.marked = {}, set(), set()
        self.holds, self.queue, self.held = set(), [], {}
        self.passed = {}
        self.cuts = self.cut_wanted = 0
        self.closing = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        _servers.append(self)

    def hold(self, sending=True, marked=True):
        """From now on, hold that direction; held() and passed() count anew."""
        with self.lock:
            key = (sending, marked)
            self.holds.add(key)
            self.held[key] = b""
            self.passed = {(a, b): 0 for a in (True, False) for b in (True, False)}

    def release(self, sending=None, marked=None):
        """Lets go what one hold kept (every hold when none is named)."""
        with self.lock:
            keys = set(self.holds) if sending is None else {(sending, marked)}
            self.holds -= keys
            kept = []
            for key, sock, data in self.queue:
                if key in keys:
                    sock.sendall(data)
                else:
                    kept.append((key, sock, data))
            self.queue = kept

    def cut(self, timeout=5):
        """Closes the marked connections, both ends, as a network that
        broke would; returns once done."""
        with self.lock:
            self.cut_wanted, done = 1, self.cuts
        deadline = time.monotonic() + timeout
        while self.cuts == done:
            if time.monotonic() > deadline:
                raise AssertionError("the relay did not cut its connections")
            time.sleep(0.01)

    def _close(self, x):
        if x is not None and x in self.peer:
            self.sel.unregister(x)
            x.close()
            self.peer.pop(x, None)

    def held_bytes(self, sending=True, marked=True):
        with self.lock:
            return self.held.get((sending, marked), b"")

    def passed_bytes(self, sending=True, marked=False):
        """Bytes let through in that direction since the last hold()."""
        with self.lock:
            return self.passed.get((sending, marked), 0)

    def _run(self):
        import selectors
        while not self.closing:
            with self.lock:
                if self.cut_wanted:
                    for x in list(self.marked):
                        self._close(self.peer.get(x))
                        self._close(x)
                    self.marked.clear()
                    self.queue = [q for q in self.queue if q[1] in self.peer]
                    self.cut_wanted, self.cuts = 0, self.cuts + 1
            for key, _ in self.sel.select(0.05):
                s = key.fileobj
                if s is self.lsock:
                    c, _ = s.accept()
                    try:
                        u = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                    except OSError:
                        c.close()       # the broker is gone: so is the relay's side
                        continue
                    self.peer[c], self.peer[u] = u, c
                    self.down.add(c)
                    for x in (c, u):
                        self.sel.register(x, selectors.EVENT_READ)
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                with self.lock:
                    if s not in self.peer:
                        continue        # cut in this round
                    if not data:
                        peer = self.peer.get(s)
                        self._close(s)
                        self._close(peer)
                        continue
                    sending = s in self.down
                    node = s if sending else self.peer[s]
                    if sending and self.marker in data:
                        self.marked.add(node)
                    k = (sending, node in self.marked)
                    if k in self.holds:
                        self.queue.append((k, self.peer[s], data))
                        self.held[k] += data
                        continue
                    self.passed[k] = self.passed.get(k, 0) + len(data)
                    self.peer[s].sendall(data)

    def kill(self):
        self.closing = True
        self.thread.join(5)
        for x in list(self.peer) + [self.lsock]:
            x.close()
        self.peer.clear()

    stop = kill

    def log(self):
        return f"relay to port {self.upstream}: {len(self.queue)} chunks held"

    def remove_log(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def resp(port, *args, unix=None, timeout=5, auth=()):
    """One command to a real redis-server on 127.0.0.1:port (or a unix
    socket) in RESP, after AUTH *auth when given; the reply as Python
    values (an error reply raises)."""
    if unix:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(unix)
    else:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        f = s.makefile("rb")

        def command(*words):
            out = b"*%d\r\n" % len(words)
            for w in words:
                w = w if isinstance(w, bytes) else str(w).encode()
                out += b"$%d\r\n%s\r\n" % (len(w), w)
            s.sendall(out)
            return value()

        def value():
            line = f.readline()
            if not line:
                raise AssertionError("redis closed the connection")
            kind, rest = line[:1], line[1:-2]
            if kind == b"+":
                return rest.decode()
            if kind == b"-":
                raise AssertionError(f"redis: {rest.decode()}")
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2].decode(errors="replace")
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [value() for _ in range(n)]
            raise AssertionError(f"redis: unexpected reply {line!r}")
        if auth:
            command("AUTH", *auth)
        return command(*args)
    finally:
        s.close()


def health(port):
    import json
    status, _, body = get(port, "/health")
    return status, json.loads(body)


def healthy(port):
    """Every part of the antenna is up: /health's 200 also covers "degraded"
    (a shard or node down while the rest serve)."""
    status, body = health(port)
    return status == 200 and body.get("status") == "ok"


def wait_until(pred, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---- TLS ------------------------------------------------------------------

def make_cert(dirname, name="cert", cn="127.0.0.1"):
    cert = os.path.join(dirname, f"{name}.pem")
    key = os.path.join(dirname, f"{name}-key.pem")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={cn}", "-addext", f"subjectAltName=IP:{cn}",
                    "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def client_ctx(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


# ---- running tests ---------------------------------------------------------

_tests = []


def test(fn):
    _tests.append(fn)
    return fn


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout(f"test exceeded {TEST_TIMEOUT} s")


def skip_all(why):
    print(f"1..0 # SKIP {why}")
    sys.exit(0)


def run():
    """Runs every @test in order; prints TAP; exits 1 if any failed."""
    failed = 0
    signal.signal(signal.SIGALRM, _alarm)
    only = os.environ.get("XR_TEST")
    # make mutants only asks whether anything fails: the first failure ends
    # the file (TAP's "Bail out!" is an ERROR to the driver).
    fail_fast = os.environ.get("XR_FAIL_FAST") == "1"
    tests = [t for t in _tests if not only or only in t.__name__]
    if only:
        print(f"# XR_TEST={only}: {len(tests)} of {len(_tests)} tests")
    for n, fn in enumerate(tests, 1):
        signal.alarm(TEST_TIMEOUT)
        try:
            if asyncio.iscoroutinefunction(fn):
                asyncio.run(fn())
            else:
                fn()
            ok = True
        except BaseException:
            ok = False
            for line in traceback.format_exc().splitlines():
                print("# " + line)
        finally:
            signal.alarm(0)
            for s in list(_servers):
                why = s.kill()
                if why:
                    ok = False
                    print(f"# teardown: {why}")
                if not ok:
                    print("# server log:")
                    for line in s.log().splitlines()[-20:]:
                        print("#   " + line)
                s.remove_log()
            _servers.clear()
        if not ok:
            failed += 1
        print(f"{'ok' if ok else 'not ok'} {n} - {fn.__name__}", flush=True)
        if failed and fail_fast:
            print(f"Bail out! XR_FAIL_FAST: {fn.__name__} failed", flush=True)
            sys.exit(1)
    print(f"1..{len(tests)}")
    sys.exit(1 if failed else 0)
