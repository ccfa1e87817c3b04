#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""make bench: every xraptor-bench scenario on loopback against servers
started here, the raw TCP echo baseline measured in the same run, and a
table of results and ratios printed and written to bench/results.md.

  run.py BUILDDIR [--seconds S] [--idle N] [--fanout N] [--out FILE]
         [--peer DIR] [--syscalls]

Servers run pinned to CPU 0 and the load generator to CPU 1 when there are
two or more CPUs, so "per core" means one core. Each server's own CPU time
is read from /proc during the measured window: when the one load generator
is the bottleneck (it often is on two cores), "per server CPU second" still
compares servers. --peer DIR runs the uWebSockets peers built by
shared/peers/build-uws.sh (uws-echo, uws-echo-tls, uws-fanout) in the same
run with the same client; --syscalls counts the servers' syscalls in the
measured window with perf (per message or delivery). Exits non-zero if a
scenario produced no numbers.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("build")
ap.add_argument("--seconds", type=float, default=10)
ap.add_argument("--idle", type=int, default=15000, help="idle connections for the memory scenario")
ap.add_argument("--fanout", type=int, default=10000, help="fan-out subscribers")
ap.add_argument("--out", default=None)
ap.add_argument("--peer", default=None, help="directory with the uWebSockets peers")
ap.add_argument("--syscalls", action="store_true", help="count server syscalls with perf")
ap.add_argument("--turns", type=int, default=5,
                help="echo/chat measured in turns, for their ratio (default 5)")
args = ap.parse_args()
if args.turns < 1:
    ap.error("--turns must be at least 1")
B = os.path.abspath(args.build)
BENCH = os.path.join(B, "xraptor-bench")
OUT = args.out or os.path.join(B, "bench", "results.md")
ENV = dict(os.environ)
ENV.setdefault("XRAPTOR_ANTENNA_PATH", ":".join(
    os.path.join(B, "antennas", a, ".libs") for a in ("memory", "redis", "nats", "kafka")))

# Room for 15 000 connections on each side.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = max(soft, min(hard if hard != resource.RLIM_INFINITY else 1 << 20, 1 << 17))
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
except (ValueError, OSError):
    pass

CPUS = os.cpu_count() or 1
PIN = shutil.which("taskset") and CPUS >= 2
procs = []


def pinned(cpu, argv):
    return ["taskset", "-c", str(cpu), *argv] if PIN else argv


def start(argv, pattern=r"listening on (?:wss?|tcp)://127\.0\.0\.1:(\d+)"):
    log = tempfile.NamedTemporaryFile(prefix="xraptor-bench-", suffix=".log", delete=False)
    p = subprocess.Popen(pinned(0, argv), stdout=subprocess.DEVNULL, stderr=log, env=ENV)
    procs.append((p, log.name))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        m = re.search(pattern, open(log.name, errors="replace").read())
        if m:
            return p, int(m.group(1))
        if p.poll() is not None:
            break
        time.sleep(0.05)
    sys.exit(f"bench: {argv[0]} did not start:\n{open(log.name).read()}")


def stop_all():
    for p, log in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        try:
            os.unlink(log)
        except OSError:
            pass
    procs.clear()


def cpu_seconds(pid):
    """user + system CPU seconds of a process so far."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


SYSCALLS = ["read", "recvfrom", "readv", "write", "writev", "sendto", "sendmsg",
            "epoll_wait", "epoll_ctl", "ioctl"]


def bench(scenario, url, *extra, timeout=None, pid=None):
    """Runs the load generator; with pid, the server's CPU time (and with
    --syscalls its syscalls) over the middle of the measured window."""
    warm = 1.0
    argv = pinned(1 if PIN else 0, [BENCH, scenario, "--url", url, "--json", "--warmup", str(warm),
                                    "--duration", str(args.seconds), *map(str, extra)])
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    cpu = sc = None
    if pid and scenario != "connections":
        # The measured window starts after the connections and the warm-up.
        time.sleep(warm + 0.3 + (2 if "--connections" in extra else 0))
        w = max(0.5, args.seconds - 1.0)
        perf = None
        if args.syscalls and shutil.which("perf"):
            evs = ",".join(f"syscalls:sys_enter_{n}" for n in SYSCALLS)
            perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", evs, "-p", str(pid),
                                     "--", "sleep", str(w)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        a, ta = cpu_seconds(pid), time.monotonic()
        time.sleep(w)
        b, tb = cpu_seconds(pid), time.monotonic()
        if a is not None and b is not None:
            cpu = (b - a) / (tb - ta)
        if perf:
            out = perf.communicate()[1]
            sc = {}
            for line in out.splitlines():
                f = line.split(",")
                if len(f) > 2 and f[0].strip().isdigit():
                    sc[f[2].split("sys_enter_")[-1]] = int(f[0])
            sc["_seconds"] = w
    try:
        out, err = p.communicate(timeout=timeout or args.seconds * 3 + 180)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        res = {"scenario": scenario, "error": (err or out).strip()[:300], "errors": 1}
    res["exit"] = p.returncode
    if cpu is not None:
        res["server_cpu"] = cpu
    if sc:
        res["syscalls"] = sc
    return res


rows, failures = [], []


def per_cpu(res, v):
    """The rate per second of server CPU time (None when not measured)."""
    c = res.get("server_cpu")
    return v / c if v and c and c > 0.02 else None


def syscalls_per(res, v):
    sc = res.get("syscalls")
    if not sc or not v:
        return ""
    n = v * sc["_seconds"]
    parts = [f"{k} {c / n:.3f}" for k, c in sorted(sc.items(), key=lambda kv: -kv[1] if kv[0] != "_seconds" else 0)
             if k != "_seconds" and c / n >= 0.001]
    return "syscalls per unit: " + ", ".join(parts) if parts else ""


def row(name, res, value_key, unit, baseline=None, note="", peer=None):
    """peer: the uWebSockets result of the same scenario (ratio by raw rate
    and by rate per server CPU second)."""
    v = res.get(value_key)
    ok = res.get("exit") == 0 and v not in (None, 0) and not res.get("errors")
    if not ok:
        failures.append(f"{name}: {res.get('error') or 'no numbers'}")
    ratio = f"{v / baseline:.2f}x" if ok and baseline else ""
    lat = ""
    if ok and res.get("p50_us"):
        lat = f"{res['p50_us']:.0f} / {res['p99_us']:.0f} / {res['p999_us']:.0f}"
    value = (f"{v:,.0f}" if v >= 100 else f"{v:.3g}") if ok else "FAILED"
    pc = per_cpu(res, v) if ok else None
    cpu = f"{pc:,.0f} ({res['server_cpu'] * 100:.0f}% CPU)" if pc else ""
    vs = ""
    if ok and peer:
        pv = peer.get(value_key)
        ppc = per_cpu(peer, pv)
        if pv and "B/conn" in unit:
            vs = f"{v / pv:.2f}x its bytes"
        elif pv:
            vs = f"{v / pv:.2f}x rate" + (f", {pc / ppc:.2f}x per CPU" if pc and ppc else "")
    sc = syscalls_per(res, v) if ok else ""
    note = "; ".join(x for x in (note, sc) if x)
    rows.append((name, value, unit, ratio, cpu, vs, lat, note))
    print(f"{name:<52} {value:>12} {unit:<13} {ratio:>6} {cpu:>22} {vs:>24}  {lat}"
          + (f"\n{'':<52} {sc}" if sc else ""), flush=True)
    return v if ok else None


def hs256(secret, claims):
    """A JWT for the auth scenarios (the tests use python3-jwt's; the
    bench needs no module beyond the standard library)."""
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    head = enc(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = enc(json.dumps(claims).encode())
    sig = enc(hmac.new(secret, head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


def presence_calls(port, members, counts=200, lists=10):
    """A room of `members` users (one connection holding them all), then
    sequential queries: the mean time of a counts call and of a full list
    call, in ms. A row each, like the others (exit 0 and a value)."""
    import asyncio
    try:
        import websockets
    except ImportError:
        return None, None

    def req(rid, route, method, payload, header=None):
        return json.dumps({"request_id": rid, "payload": json.dumps(payload),
                           "header": header or {}, "route": route, "method": method})

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None,
                                      max_queue=None) as ws:
            for i in range(members):
                await ws.send(req(f"m{i}", "/chat_messages", "SUB",
                                  {"chat_id": "bench-room", "client_id": f"u{i}"}))
            # every member counted before the clock starts (nats:// counts
            # about 300 joins a second: four key-value round trips each)
            for _ in range(2400):
                await ws.send(req("w", "/xraptor/presence_stats", "GET", {"room": "bench-room"}))
                while True:
                    m = json.loads(await ws.recv())
                    if m["request_id"] == "w":
                        break
                if json.loads(m["payload"]).get("users") == members:
                    break
                await asyncio.sleep(0.05)
            else:
                return None
            out = []
            for route, n in (("/xraptor/presence_stats", counts), ("/xraptor/presence", lists)):
                t0 = time.perf_counter()
                for k in range(n):
                    await ws.send(req(f"q{k}", route, "GET", {"room": "bench-room"}))
                    while (m := json.loads(await ws.recv()))["request_id"] != f"q{k}":
                        pass
                    if json.loads(m["payload"]).get("users") != members:
                        return None

                out.append((time.perf_counter() - t0) / n * 1000)
            return out
    return asyncio.run(run())


def recovery_times(port, n=300, rounds=15):
    """A member leaves a room, n posts go out, it comes back with its
    position: the median time from its SUB to the answer (recovered) and
    to the last of the n replayed, in ms, over `rounds` rooms. None when
    a recovery fails."""
    import asyncio
    try:
        import websockets
    except ImportError:
        return None

    def req(rid, route, method, payload, header=None):
        return json.dumps({"request_id": rid, "payload": json.dumps(payload),
                           "header": header or {}, "route": route, "method": method})

    def post(room, i):
        return req(f"p{i}", "/send_message_to_chat_room", "POST",
                   {"chat_id": room, "client_id": "bench", "message": f"m{i}"})

    async def one(url, pub, room):
        async with websockets.connect(url) as a:
            await a.send(req("a", "/chat_messages", "SUB", {"chat_id": room}))
            await a.send(post(room, "probe"))
            while "offset" not in (m := json.loads(await a.recv()))["header"]:
                pass
            since = {"offset": m["header"]["offset"], "epoch": m["header"]["epoch"]}
        # The clock starts once every post was delivered (a post is
        # answered when it is sent to the antenna, not when it is kept).
        async with websockets.connect(url, max_queue=None) as w:
            await w.send(req("w", "/chat_messages", "SUB", {"chat_id": room}))
            for i in range(n):
                await pub.send(post(room, i))
            for _ in range(n):
                await pub.recv()
            while True:
                m = json.loads(await w.recv())
                try:
                    if json.loads(m["payload"]).get("message") == f"m{n - 1}":
                        break
                except (ValueError, AttributeError):
                    pass
        async with websockets.connect(url, max_queue=None) as b:
            t0 = time.perf_counter()
            await b.send(req("b", "/chat_messages", "SUB", {"chat_id": room}, {"since": since}))
            h = json.loads(await b.recv())
            answered = time.perf_counter() - t0
            if h["request_id"] != "b" or h["header"].get("recovered") is not True:
                return None
            for _ in range(n):
                await b.recv()
            return answered * 1000, (time.perf_counter() - t0) * 1000

    async def run():
        url = f"ws://127.0.0.1:{port}/"
        out = []
        async with websockets.connect(url) as pub:
            for k in range(rounds):
                r = await one(url, pub, f"bench-recovery-{k}")
                if r is None:
                    return None
                out.append(r)
        return sorted(a for a, _ in out)[rounds // 2], sorted(z for _, z in out)[rounds // 2]
    try:
        return asyncio.run(asyncio.wait_for(run(), 120))
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException):
        return None


def cert_pair(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


t_start = time.monotonic()
print(f"xraptor bench: {args.seconds:g} s per scenario, servers on CPU 0, load on CPU 1"
      if PIN else f"xraptor bench: {args.seconds:g} s per scenario (one CPU: not pinned)")
print(f"{'scenario':<52} {'result':>12} {'unit':<13} {'vs tcp':>6} {'per server CPU s':>22} "
      f"{'vs uWebSockets':>24}  latency p50/p99/p99.9 us")
try:
    tmp = tempfile.mkdtemp(prefix="xraptor-bench-")
    cert, key = cert_pair(tmp)
    common = ["--max-connections", "100000", "--listen", "127.0.0.1:0"]

    def baseline(label, size):
        _, port = start([os.path.join(B, "bench", "xraptor-bench-baseline"), "--listen", "127.0.0.1:0"])
        v = row(label, bench("tcp", f"tcp://127.0.0.1:{port}", "--size", size), "per_second", "msgs/s")
        stop_all()
        return v

    def peer(name, extra_env=None):
        """A uWebSockets peer from --peer DIR on a free port, or None."""
        if not args.peer:
            return None, None
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        env = dict(ENV, PORT=str(port), **(extra_env or {}))
        p = subprocess.Popen(pinned(0, [os.path.join(args.peer, name)]), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append((p, "/nonexistent"))
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return p, port
            except OSError:
                time.sleep(0.05)
        sys.exit(f"bench: peer {name} did not start")

    # The baseline runs before and after the runs it is compared with; the
    # ratio is against the mean of the two (a shared machine drifts).
    base1 = baseline("tcp baseline: echo 64 B, 100 conns, pipelined", 64)
    base1k = baseline("tcp baseline: echo 1 KiB, 100 conns", 1024)

    # The chat's target is a ratio to the echo: they are measured in turns
    # (echo, chat, echo, chat), each chat beside the echo it is compared
    # with, so that a machine that drifts between scenarios moves both.
    # Auth on: every upgrade carries a token (HS256) whose claim grants
    # rooms and publishing by pattern, so each chat POST runs the grant
    # check, and every request the rate limit's buckets (set far above
    # the load: they count, they never refuse).
    secret = b"bench-secret-bench-secret-bench-secret!"
    with open(os.path.join(tmp, "jwt.key"), "wb") as f:
        f.write(secret)
    token = hs256(secret, {"sub": "bench", "exp": int(time.time()) + 86400,
                           "xraptor": {"rooms": ["*"], "publish": ["bench*", "*"]}})
    auth = ["--jwt-key", os.path.join(tmp, "jwt.key"), "--rate-limit", "10000000",
            "--rate-limit-bytes", "1G"]
    p, port = start([os.path.join(B, "xraptor-echo"), *common])
    pc_, cport = start([os.path.join(B, "xraptor-chat"), *common])
    pa, aport = start([os.path.join(B, "xraptor-chat"), *common, *auth])
    turns, auth_turns = [], []
    for _ in range(args.turns):
        e = bench("echo", f"ws://127.0.0.1:{port}/", pid=p.pid)
        turns.append((e, bench("chat", f"ws://127.0.0.1:{cport}/", pid=pc_.pid)))
        auth_turns.append(bench("chat", f"ws://127.0.0.1:{aport}/?token={token}", pid=pa.pid))
    echo64, chat = turns[0]
    echo1k = bench("echo", f"ws://127.0.0.1:{port}/", "--size", 1024, pid=p.pid)
    stop_all()
    p, port = start([os.path.join(B, "xraptor-echo"), *common, "--jwt-key",
                     os.path.join(tmp, "jwt.key")])
    echo_auth = bench("echo", f"ws://127.0.0.1:{port}/?token={token}", pid=p.pid)
    hs_auth = bench("handshakes", f"ws://127.0.0.1:{port}/?token={token}", pid=p.pid)
    stop_all()
    p, port = start([os.path.join(B, "xraptor-echo"), *common, "--tls-cert", cert, "--tls-key", key])
    echotls = bench("echo", f"wss://127.0.0.1:{port}/", pid=p.pid)
    stop_all()
    p, port = start([os.path.join(B, "xraptor-echo"), *common, "--compression"])
    echoz = bench("echo", f"ws://127.0.0.1:{port}/", "--size", 1024, "--compression", pid=p.pid)
    stop_all()
    p, port = start([os.path.join(B, "bench", "xraptor-bench-server"), *common])
    route = bench("route", f"ws://127.0.0.1:{port}/", pid=p.pid)
    fan = bench("fanout", f"ws://127.0.0.1:{port}/", "--connections", args.fanout, pid=p.pid)
    stop_all()
    p, port = start([os.path.join(B, "bench", "xraptor-bench-server"), *common])
    room = bench("fanout", f"ws://127.0.0.1:{port}/", "--connections", args.fanout, "--mode", "room",
                 pid=p.pid)
    stop_all()
    u_echo = u_tls = u_fan = None
    if args.peer:
        p, port = peer("uws-echo")
        u_echo = bench("echo", f"ws://127.0.0.1:{port}/", pid=p.pid)
        stop_all()
        p, port = peer("uws-echo-tls", {"CERT": cert, "KEY": key})
        u_tls = bench("echo", f"wss://127.0.0.1:{port}/", pid=p.pid)
        stop_all()
        p, port = peer("uws-fanout")
        u_fan = bench("fanout", f"ws://127.0.0.1:{port}/", "--connections", args.fanout,
                      "--mode", "peer", pid=p.pid)
        stop_all()
    base2 = baseline("tcp baseline again: echo 64 B", 64)
    base = (base1 + base2) / 2 if base1 and base2 else base1 or base2
    row("echo 64 B, 100 conns x 16 in flight", echo64, "per_second", "msgs/s", base, peer=u_echo)
    if u_echo:
        row("  uWebSockets EchoServer, same load", u_echo, "per_second", "msgs/s", base)
    row("wss echo 64 B, 100 conns x 16 in flight", echotls, "per_second", "msgs/s", base, peer=u_tls)
    if u_tls:
        row("  uWebSockets echo over TLS, same load", u_tls, "per_second", "msgs/s", base)
    row("echo 1 KiB, 100 conns", echo1k, "per_second", "msgs/s", base1k)
    row("echo 1 KiB, permessage-deflate", echoz, "per_second", "msgs/s", base1k)
    row("route: POST /echo 64 B, 100 conns", route, "per_second", "req/s", base)
    row("chat: POST /send_message_to_chat_room, 64 B", chat, "per_second", "req/s", base)
    ratios = []
    for e, c in turns:
        ev = e.get("per_second") if e.get("exit") == 0 else None
        cv = c.get("per_second") if c.get("exit") == 0 and not c.get("errors") else None
        if ev and cv:
            ratios.append(cv / ev)
    if ratios:
        each = " ".join(f"{r:.2f}" for r in ratios)
        turns_ = f"{len(ratios)} turns" if len(ratios) > 1 else "1 turn"
        print(f"{'':<52} chat POST / echo 64 B = {statistics.median(ratios):.2f}x, median of "
              f"{turns_} ({each}; target >= 0.8x)")
    chat_auth = auth_turns[0]
    row("chat with auth on (token, grants, rate limit)", chat_auth, "per_second", "req/s", base)
    on_off = []
    for (_, c), a in zip(turns, auth_turns):
        cv = c.get("per_second") if c.get("exit") == 0 and not c.get("errors") else None
        av = a.get("per_second") if a.get("exit") == 0 and not a.get("errors") else None
        if cv and av:
            on_off.append(av / cv)
    if on_off:
        print(f"{'':<52} chat auth on / off = {statistics.median(on_off):.2f}x, median of "
              f"{len(on_off)} ({' '.join(f'{r:.2f}' for r in on_off)})")
    row("echo 64 B with auth on (token at the upgrade)", echo_auth, "per_second", "msgs/s", base,
        peer=u_echo)
    row(f"fanout: room of {args.fanout} members, 1 publisher x 16", room, "per_second",
        "deliveries/s", peer=u_fan)
    row(f"fanout: one channel, {args.fanout} subscribers", fan, "per_second", "deliveries/s",
        peer=u_fan)
    if u_fan:
        row(f"  uWebSockets pub/sub, {args.fanout} subscribers", u_fan, "per_second",
            "deliveries/s")

    def loopback_port():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def broker_node(argv_of_port):
        port = loopback_port()
        rp = subprocess.Popen(argv_of_port(port), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        procs.append((rp, "/nonexistent"))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        return port

    def redis_node(*extra):
        return broker_node(lambda port: ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", *extra])

    def nats_node():
        store = tempfile.mkdtemp(prefix="xraptor-bench-js-")
        return broker_node(lambda port: ["nats-server", "-a", "127.0.0.1", "-p", str(port),
                                         "-js", "-sd", store])

    def redis_fanout(label, url, *extra):
        _, port = start([os.path.join(B, "bench", "xraptor-bench-server"), *common,
                         "--antenna", url, *extra])
        time.sleep(0.5)
        res = row(label, bench("fanout", f"ws://127.0.0.1:{port}/", "--connections",
                               args.fanout, "--mode", "room"),
                  "per_second", "deliveries/s")
        stop_all()
        return res

    if shutil.which("redis-server"):
        single = redis_fanout(f"fanout: room of {args.fanout} members, redis",
                              f"redis://127.0.0.1:{redis_node()}")
        # redis:// history: each post one script (offset, stream entry,
        # PUBLISH with its position) in place of a PUBLISH, back to back.
        kept_redis = redis_fanout(f"fanout: room of {args.fanout} members, redis, history 300",
                                  f"redis://127.0.0.1:{redis_node()}",
                                  "--history-size", "300", "--history-ttl", "300")
        if single and kept_redis:
            print(f"{'':<52} redis history on / off = {kept_redis / single:.2f}x "
                  f"(target >= 0.9x)")
    else:
        single = None
        print("fanout through redis: skipped (no redis-server)")

    # History: the same room with and without it, back to back; each
    # delivery then carries its position (built per receiver prefix, the
    # body shared) and memory:// keeps each message in its ring.
    plain = redis_fanout(f"fanout: room of {args.fanout} members, memory, no history", "memory://")
    kept = redis_fanout(f"fanout: room of {args.fanout} members, memory, history 300",
                        "memory://", "--history-size", "300", "--history-ttl", "300")
    if plain and kept:
        print(f"{'':<52} history on / off = {kept / plain:.2f}x (target >= 0.9x)")

    # Recovery: a member away while 300 posts went out comes back with its
    # position; the time from its SUB to the answer and to the last replayed.
    def recovery(label, url):
        _, port = start([os.path.join(B, "xraptor-chat"), *common, "--antenna", url,
                         "--history-size", "300", "--history-ttl", "300"])
        # Connected first: kafka:// joins its consumer group for seconds.
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        times = recovery_times(port)
        stop_all()
        for what, i in (("answered", 0), ("last replayed", 1)):
            row(f"recovery of 300, {what}: {label}",
                {"exit": 0, "ms": times[i]} if times else {"error": "not recovered"}, "ms", "ms")

    recovery("memory", "memory://")
    if shutil.which("redis-server"):
        recovery("redis", f"redis://127.0.0.1:{redis_node()}")
    if shutil.which("nats-server"):
        recovery("nats", f"nats://127.0.0.1:{nats_node()}")
    # kafka:// against librdkafka's mock cluster (4 partitions), as the tests.
    mock = os.path.join(B, "antennas", "kafka", "xraptor-kafka-mock")
    if os.access(mock, os.X_OK):
        kp = subprocess.Popen([mock, "xraptor", "4"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
        procs.append((kp, "/nonexistent"))
        recovery("kafka (mock cluster)", f"kafka://{kp.stdout.readline().strip()}/xraptor")

    # Presence: a room of --fanout members; the counts are one broker round
    # trip whatever the size, the list grows with it.
    urls = {"memory": lambda: "memory://",
            "redis": lambda: f"redis://127.0.0.1:{redis_node()}",
            "nats": lambda: f"nats://127.0.0.1:{nats_node()}"}
    for label, url_of in urls.items():
        if label != "memory" and not shutil.which(f"{label}-server"):
            print(f"presence through {label}: skipped (no {label}-server)")
            continue
        if not any(os.path.exists(os.path.join(d, f"{label}.so"))
                   for d in ENV["XRAPTOR_ANTENNA_PATH"].split(":")):
            print(f"presence through {label}: skipped (its antenna module was not built)")
            continue
        # (stop_all stops the broker too: each run starts its own)
        url = url_of()
        _, port = start([os.path.join(B, "xraptor-chat"), *common, "--antenna", url, "--presence",
                         "--max-channels-per-connection", str(args.fanout)])
        counts_ms, list_ms = presence_calls(port, args.fanout) or (None, None)
        stop_all()
        for what, ms in (("counts", counts_ms), ("full list", list_ms)):
            name = f"presence {what}: room of {args.fanout} members, {label}"
            row(name, {"exit": 0, "per_call_ms": ms} if ms else {"error": "no answer"},
                "per_call_ms", "ms per call")

    # The same room through a Redis Cluster of 3 masters (sharded pub/sub:
    # the room's channel lives on the one master that owns its slot).
    cluster_dirs = []

    def redis_cluster():
        """The first port of a new cluster of 3 masters, or None (its nodes
        stop with the next stop_all)."""
        cdir = tempfile.mkdtemp(prefix="xraptor-bench-cluster-")
        cluster_dirs.append(cdir)
        ports = []
        for i in range(3):
            d = os.path.join(cdir, str(i))
            os.makedirs(d)
            ports.append(redis_node("--cluster-enabled", "yes", "--dir", d,
                                    "--cluster-port", str(loopback_port())))
        made = subprocess.run(["redis-cli", "--cluster", "create",
                               *[f"127.0.0.1:{p}" for p in ports], "--cluster-yes"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(200):
            info = subprocess.run(["redis-cli", "-p", str(ports[0]), "cluster", "info"],
                                  capture_output=True, text=True).stdout
            if made.returncode == 0 and "cluster_state:ok" in info:
                return ports[0]
            time.sleep(0.05)
        print(f"a redis cluster did not form: {made.stderr[-200:]}")
        return None

    if shutil.which("redis-server") and shutil.which("redis-cli"):
        seed = redis_cluster()
        if seed:
            clustered = redis_fanout(f"fanout: room of {args.fanout} members, redis cluster",
                                     f"redis-cluster://127.0.0.1:{seed}")
            if clustered and single:
                print(f"{'':<52} redis cluster / single redis = {clustered / single:.2f}x")
        seed = redis_cluster()
        if seed:
            recovery("redis cluster", f"redis-cluster://127.0.0.1:{seed}")
        stop_all()
        for d in cluster_dirs:
            shutil.rmtree(d, ignore_errors=True)
    else:
        print("fanout through a redis cluster: skipped (no redis-server / redis-cli)")

    def idle(label, server_argv, url, peer_res=None, note=""):
        p, port = server_argv()
        res = bench("connections", url(port), "--connections", args.idle, "--pid", p.pid)
        row(label, res, "bytes_per_connection", "B/conn RSS", note=note, peer=peer_res)
        stop_all()
        return res

    u_idle = u_idle_tls = None
    if args.peer:
        u_idle = idle(f"  uWebSockets: idle ws:// connections: {args.idle}",
                      lambda: peer("uws-echo"), lambda port: f"ws://127.0.0.1:{port}/")
        u_idle_tls = idle(f"  uWebSockets: idle wss:// connections: {args.idle}",
                          lambda: peer("uws-echo-tls", {"CERT": cert, "KEY": key}),
                          lambda port: f"wss://127.0.0.1:{port}/")
    idle(f"idle ws:// connections: {args.idle}",
         lambda: start([os.path.join(B, "xraptor-echo"), *common, "--ping-interval", "0"]),
         lambda port: f"ws://127.0.0.1:{port}/", u_idle, note="target <= 512")
    idle(f"idle wss:// connections: {args.idle}",
         lambda: start([os.path.join(B, "xraptor-echo"), *common, "--ping-interval", "0",
                        "--tls-cert", cert, "--tls-key", key]),
         lambda port: f"wss://127.0.0.1:{port}/", u_idle_tls, note="target <= 8192")
    p, port = start([os.path.join(B, "xraptor-echo"), *common, "--tls-cert", cert, "--tls-key", key])
    row("handshakes: TLS 1.3 + WebSocket, 32 at a time",
        bench("handshakes", f"wss://127.0.0.1:{port}/", pid=p.pid), "per_second", "handshakes/s")
    stop_all()
    p, port = start([os.path.join(B, "xraptor-echo"), *common])
    hs_res = bench("handshakes", f"ws://127.0.0.1:{port}/", pid=p.pid)
    hs_plain = row("handshakes: plain WebSocket, 32 at a time", hs_res, "per_second",
                   "handshakes/s")
    hs_tok = row("handshakes: plain WebSocket with an HS256 token", hs_auth, "per_second",
                 "handshakes/s")
    if hs_plain and hs_tok:
        cp, ct = per_cpu(hs_res, hs_plain), per_cpu(hs_auth, hs_tok)
        print(f"{'':<52} with the token check: {hs_tok / hs_plain:.2f}x the handshake rate"
              + (f", {ct / cp:.2f}x per server CPU second" if cp and ct else ""))
finally:
    stop_all()

elapsed = time.monotonic() - t_start
uname = platform.uname()
cpu_model = ""
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
with open(OUT, "w") as f:
    f.write(f"# xraptor bench results\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{CPUS} CPU ({cpu_model}), {uname.system} {uname.release}; "
            f"{args.seconds:g} s per scenario, {'servers pinned to CPU 0, load to CPU 1' if PIN else 'not pinned'}; "
            f"whole run {elapsed:.0f} s.\n\n")
    f.write("| scenario | result | unit | vs tcp baseline | per server CPU second | vs uWebSockets "
            "| latency p50 / p99 / p99.9 (µs) | note |\n")
    f.write("|---|---:|---|---:|---:|---|---|---|\n")
    for r in rows:
        f.write("| " + " | ".join(r) + " |\n")
print(f"\nwritten to {OUT} ({elapsed:.0f} s)")
if failures:
    print("FAILED: " + "; ".join(failures))
    sys.exit(1)
