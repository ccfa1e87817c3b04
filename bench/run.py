#!/usr/bin/python3
"""make bench: every xraptor-bench scenario on loopback against servers
started here, the raw TCP echo baseline measured in the same run, and a
table of results and ratios printed and written to bench/results.md.

  run.py BUILDDIR [--seconds S] [--idle N] [--fanout N] [--out FILE]

Servers run pinned to CPU 0 and the load generator to CPU 1 when there are
two or more CPUs, so "per core" means one core. Exits non-zero if a
scenario produced no numbers.
"""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("build")
ap.add_argument("--seconds", type=float, default=10)
ap.add_argument("--idle", type=int, default=15000, help="idle connections for the memory scenario")
ap.add_argument("--fanout", type=int, default=10000, help="fan-out subscribers")
ap.add_argument("--out", default=None)
args = ap.parse_args()
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


def bench(scenario, url, *extra, timeout=None):
    argv = pinned(1 if PIN else 0, [BENCH, scenario, "--url", url, "--json",
                                    "--duration", str(args.seconds), *map(str, extra)])
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV,
                       timeout=timeout or args.seconds * 3 + 180)
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        res = {"scenario": scenario, "error": (r.stderr or r.stdout).strip()[:300], "errors": 1}
    res["exit"] = r.returncode
    return res


rows, failures = [], []


def row(name, res, value_key, unit, baseline=None, note=""):
    v = res.get(value_key)
    ok = res.get("exit") == 0 and v not in (None, 0) and not res.get("errors")
    if not ok:
        failures.append(f"{name}: {res.get('error') or 'no numbers'}")
    ratio = f"{v / baseline:.2f}x" if ok and baseline else ""
    lat = ""
    if ok and res.get("p50_us"):
        lat = f"{res['p50_us']:.0f} / {res['p99_us']:.0f} / {res['p999_us']:.0f}"
    value = (f"{v:,.0f}" if ok else "FAILED")
    rows.append((name, value, unit, ratio, lat, note))
    print(f"{name:<44} {value:>12} {unit:<15} {ratio:>7}  {lat}", flush=True)
    return v if ok else None


def cert_pair(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


t_start = time.monotonic()
print(f"xraptor bench: {args.seconds:g} s per scenario, servers on CPU 0, load on CPU 1"
      if PIN else f"xraptor bench: {args.seconds:g} s per scenario (one CPU: not pinned)")
print(f"{'scenario':<44} {'result':>12} {'unit':<15} {'ratio':>7}  latency p50/p99/p99.9 us")
try:
    tmp = tempfile.mkdtemp(prefix="xraptor-bench-")
    cert, key = cert_pair(tmp)
    common = ["--max-connections", "100000", "--listen", "127.0.0.1:0"]

    def baseline(label, size):
        _, port = start([os.path.join(B, "bench", "xraptor-bench-baseline"), "--listen", "127.0.0.1:0"])
        v = row(label, bench("tcp", f"tcp://127.0.0.1:{port}", "--size", size), "per_second", "msgs/s")
        stop_all()
        return v

    # The baseline runs before and after the runs it is compared with; the
    # ratio is against the mean of the two (a shared machine drifts).
    base1 = baseline("tcp baseline: echo 64 B, 100 conns, pipelined", 64)
    base1k = baseline("tcp baseline: echo 1 KiB, 100 conns", 1024)

    _, port = start([os.path.join(B, "xraptor-echo"), *common])
    echo64 = bench("echo", f"ws://127.0.0.1:{port}/")
    echo1k = bench("echo", f"ws://127.0.0.1:{port}/", "--size", 1024)
    stop_all()
    _, port = start([os.path.join(B, "xraptor-echo"), *common, "--compression"])
    echoz = bench("echo", f"ws://127.0.0.1:{port}/", "--size", 1024, "--compression")
    stop_all()
    _, port = start([os.path.join(B, "bench", "xraptor-bench-server"), *common])
    route = bench("route", f"ws://127.0.0.1:{port}/")
    fan = bench("fanout", f"ws://127.0.0.1:{port}/", "--connections", args.fanout)
    stop_all()
    base2 = baseline("tcp baseline again: echo 64 B", 64)
    base = (base1 + base2) / 2 if base1 and base2 else base1 or base2
    row("echo 64 B, 100 conns, pipelined (target 0.8x)", echo64, "per_second", "msgs/s", base)
    row("echo 1 KiB, 100 conns", echo1k, "per_second", "msgs/s", base1k)
    row("echo 1 KiB, permessage-deflate", echoz, "per_second", "msgs/s", base1k)
    row("route: POST /echo 64 B, 100 conns (target 0.5x)", route, "per_second", "req/s", base)
    row(f"fanout: 1 publisher -> {args.fanout} subscribers, memory", fan, "per_second",
        "deliveries/s", note="target 3,000,000")

    redis = shutil.which("redis-server")
    if redis:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        rport = s.getsockname()[1]
        s.close()
        rp = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append((rp, "/nonexistent"))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", rport), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        _, port = start([os.path.join(B, "bench", "xraptor-bench-server"), *common,
                         "--antenna", f"redis://127.0.0.1:{rport}"])
        time.sleep(0.5)
        row(f"fanout: 1 publisher -> {args.fanout} subscribers, redis",
            bench("fanout", f"ws://127.0.0.1:{port}/", "--connections", args.fanout),
            "per_second", "deliveries/s")
        stop_all()
    else:
        print("fanout through redis: skipped (no redis-server)")

    p, port = start([os.path.join(B, "xraptor-echo"), *common, "--ping-interval", "0"])
    res = bench("connections", f"ws://127.0.0.1:{port}/", "--connections", args.idle, "--pid", p.pid)
    row(f"idle ws:// connections: {args.idle}", res, "bytes_per_connection", "B/conn RSS",
        note="target <= 2048")
    stop_all()
    p, port = start([os.path.join(B, "xraptor-echo"), *common, "--ping-interval", "0",
                     "--tls-cert", cert, "--tls-key", key])
    res = bench("connections", f"wss://127.0.0.1:{port}/", "--connections", args.idle, "--pid", p.pid)
    row(f"idle wss:// connections: {args.idle}", res, "bytes_per_connection", "B/conn RSS",
        note="target <= 16384")
    row("handshakes: TLS 1.3 + WebSocket, 32 at a time",
        bench("handshakes", f"wss://127.0.0.1:{port}/"), "per_second", "handshakes/s")
    stop_all()
    _, port = start([os.path.join(B, "xraptor-echo"), *common])
    row("handshakes: plain WebSocket, 32 at a time",
        bench("handshakes", f"ws://127.0.0.1:{port}/"), "per_second", "handshakes/s")
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
    f.write("| scenario | result | unit | vs tcp baseline | latency p50 / p99 / p99.9 (µs) | note |\n")
    f.write("|---|---:|---|---:|---|---|\n")
    for r in rows:
        f.write("| " + " | ".join(r) + " |\n")
print(f"\nwritten to {OUT} ({elapsed:.0f} s)")
if failures:
    print("FAILED: " + "; ".join(failures))
    sys.exit(1)
