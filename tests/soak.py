# SPDX-License-Identifier: Apache-2.0
"""make soak SOAK_SECONDS=600: mixed load with churn against xraptor-echo and
xraptor-protoserver on loopback; prints both servers' RSS every 10 s and ends
with a verdict: did RSS plateau (last sample within 5 % of the sample at one
third of the run, after warm-up)?  Exit 1 if not, or if a server died."""
import asyncio
import json
import os
import random
import sys
import time

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "integration"))
from xrtest import ECHO, PROTOSERVER, Server, metrics, request  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))


async def echo_client(url, stop, stats):
    rnd = random.Random()
    while not stop.is_set():
        try:
            async with websockets.connect(url) as ws:
                for _ in range(rnd.randrange(50, 500)):  # then churn: reconnect
                    msg = "e" * rnd.randrange(1, 4096)
                    await ws.send(msg)
                    assert await ws.recv() == msg
                    stats["echo"] += 1
                    if stop.is_set():
                        return
        except (OSError, websockets.WebSocketException):
            stats["errors"] += 1
            await asyncio.sleep(0.1)


async def route_client(url, stop, stats):
    rnd = random.Random()
    while not stop.is_set():
        try:
            async with websockets.connect(url) as ws:
                for i in range(rnd.randrange(50, 500)):
                    await ws.send(request(f"r{i}", "/echo", "POST", json.dumps({"i": i})))
                    r = json.loads(await ws.recv())
                    assert r["request_id"] == f"r{i}"
                    stats["route"] += 1
                    if stop.is_set():
                        return
        except (OSError, websockets.WebSocketException):
            stats["errors"] += 1
            await asyncio.sleep(0.1)


async def subscriber(url, n, stop, stats):
    rnd = random.Random()
    while not stop.is_set():
        try:
            async with websockets.connect(url) as ws:
                rid = f"sub{n}-{rnd.random()}"
                await ws.send(request(rid, "/stream", "SUB"))
                await ws.recv()
                await ws.send(request("j", "/room/join", "POST", f"soak|{rid}"))
                await ws.recv()
                end = time.monotonic() + rnd.uniform(2, 20)   # then churn
                while time.monotonic() < end and not stop.is_set():
                    try:
                        await asyncio.wait_for(ws.recv(), 1)
                        stats["fanout"] += 1
                    except asyncio.TimeoutError:
                        pass
        except (OSError, websockets.WebSocketException):
            stats["errors"] += 1
            await asyncio.sleep(0.1)


async def publisher(url, stop, stats):
    async with websockets.connect(url) as ws:
        i = 0
        while not stop.is_set():
            await ws.send(request(f"p{i}", "/publish", "POST", f"soak|tick {i}"))
            await ws.recv()
            i += 1
            await asyncio.sleep(0.005)


async def main():
    echo = Server("--ping-interval", "0", binary=ECHO)
    proto = Server("--ping-interval", "0", binary=PROTOSERVER)
    stop = asyncio.Event()
    stats = {"echo": 0, "route": 0, "fanout": 0, "errors": 0}
    tasks = [asyncio.create_task(echo_client(echo.url(), stop, stats)) for _ in range(20)]
    tasks += [asyncio.create_task(route_client(proto.url(), stop, stats)) for _ in range(20)]
    tasks += [asyncio.create_task(subscriber(proto.url(), n, stop, stats)) for n in range(50)]
    tasks.append(asyncio.create_task(publisher(proto.url(), stop, stats)))
    samples = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < SECONDS:
            await asyncio.sleep(min(10, SECONDS))
            for s in (echo, proto):
                assert s.proc.poll() is None, "a server died:\n" + s.log()[-2000:]
            sample = (echo.rss_kib(), proto.rss_kib())
            samples.append(sample)
            print(f"soak t={time.monotonic() - t0:5.0f}s rss echo={sample[0]} KiB proto={sample[1]} KiB "
                  f"echo={stats['echo']} route={stats['route']} fanout={stats['fanout']} "
                  f"errors={stats['errors']}", flush=True)
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        # A client that saw a wrong answer died with an exception: that is
        # a failure of the run, not something to count and forget.
        failures = [r for r in results if isinstance(r, BaseException)
                    and not isinstance(r, asyncio.CancelledError)]
        await asyncio.sleep(1)
        active = (metrics(echo.port)["xraptor_connections_active"],
                  metrics(proto.port)["xraptor_connections_active"])
        echo.kill()
        proto.kill()
    ok = True
    base = samples[len(samples) // 3] if len(samples) >= 3 else samples[0]
    for k, name in ((0, "echo"), (1, "proto")):
        growth = (samples[-1][k] - base[k]) / base[k] * 100
        plateau = growth <= 5.0
        ok &= plateau
        print(f"soak verdict {name}: RSS {base[k]} -> {samples[-1][k]} KiB ({growth:+.1f} %): "
              f"{'plateaued' if plateau else 'STILL GROWING'}")
    print(f"soak: {stats['echo']} echoes, {stats['route']} requests, {stats['fanout']} fan-out deliveries, "
          f"{stats['errors']} client errors, connections left {active}")
    for f in failures[:5]:
        print(f"soak: a client failed: {f!r}")
    # Clients close cleanly and servers never drop them: any error counts.
    if stats["errors"] or failures or active != (0, 0):
        print("soak verdict: FAILED (client errors, failed clients or connections left)")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
