#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# CI's package stage: builds the Debian packages from a clean copy of the
# tree, checks them with lintian, installs them with dpkg -i, verifies the
# systemd unit, runs the installed xraptor-chat with the packaged Redis
# antenna against a real redis-server (a room message across two
# connections), and purges them. Needs root (dpkg); run from the source
# tree: tests/package.sh
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
redis_pid= chat_pid=
cleanup() {
    [ -n "$chat_pid" ] && kill "$chat_pid" 2>/dev/null
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null
    apt-get purge -y -qq libxraptor1 libxraptor-dev xraptor xraptor-antenna-redis \
        xraptor-antenna-nats xraptor-antenna-kafka >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "# build (dpkg-buildpackage -us -uc -b) from a clean copy"
git -C "$src" archive --format=tar HEAD 2>/dev/null | (mkdir -p "$work/xraptor" && tar -x -C "$work/xraptor") \
    || cp -a "$src" "$work/xraptor"
(cd "$work/xraptor" && dpkg-buildpackage -us -uc -b -j"$(nproc)" >"$work/build.log" 2>&1) \
    || { tail -40 "$work/build.log"; echo "dpkg-buildpackage failed"; exit 1; }
cd "$work"
ls ./*.deb

echo "# lintian: no error, no warning"
lintian --fail-on error,warning ./*.changes

echo "# install with dpkg -i (apt-get -f install brings what a package needs)"
debs="./libxraptor1_*.deb ./libxraptor-dev_*.deb ./xraptor_*.deb ./xraptor-antenna-redis_*.deb
      ./xraptor-antenna-nats_*.deb ./xraptor-antenna-kafka_*.deb"
# shellcheck disable=SC2086
if ! dpkg -i $debs >"$work/dpkg.log" 2>&1; then
    apt-get install -f -y -qq >>"$work/dpkg.log" 2>&1 || { tail -20 "$work/dpkg.log"; exit 1; }
fi
dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' libxraptor1 libxraptor-dev xraptor \
    xraptor-antenna-redis xraptor-antenna-nats xraptor-antenna-kafka | grep -v '^ii ' \
    && { echo "a package is not installed"; exit 1; }
test -f /etc/xraptor/chat.conf
dpkg -L xraptor-antenna-redis | grep -q '/xraptor/redis-cluster\.so$' \
    || { echo "xraptor-antenna-redis lacks redis-cluster.so"; exit 1; }
test -f /lib/systemd/system/xraptor-chat.service
# The library and the programs pull no broker client library.
for p in libxraptor1 xraptor; do
    if dpkg-query -W -f='${Depends}\n' "$p" | grep -Eq 'hiredis|rdkafka|libnats'; then
        echo "$p depends on a broker client library"; exit 1
    fi
done

echo "# systemd-analyze verify"
systemd-analyze verify /lib/systemd/system/xraptor-chat.service

echo "# the installed xraptor-chat, the packaged redis antenna, a real redis-server"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port) cport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
redis_pid=$!
# From its installed paths only: no XRAPTOR_ANTENNA_PATH.
env -u XRAPTOR_ANTENNA_PATH /usr/bin/xraptor-chat --config /etc/xraptor/chat.conf \
    --listen "127.0.0.1:$cport" --antenna "redis://127.0.0.1:$rport" >"$work/chat.out" 2>"$work/chat.log" &
chat_pid=$!
/usr/bin/python3 - "$cport" <<'PY'
import asyncio, json, sys, time, urllib.request
import websockets
port = int(sys.argv[1])
deadline = time.monotonic() + 15
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            h = json.load(r)
            if h["status"] == "ok" and h["antenna"]["scheme"] == "redis":
                break
    except OSError:
        pass
    assert time.monotonic() < deadline, "the installed xraptor-chat never became healthy"
    time.sleep(0.1)
with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
    assert b"<html" in r.read(), "the packaged chat page is not served"
# The attack review's finding 1: this GET killed the packaged server
# (_FORTIFY_SOURCE turned a stack overflow into SIGABRT). Every length.
import socket
for n in range(1, 530):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /" + b"a" * n + b"/ HTTP/1.1\r\nHost: x\r\n\r\n")
    head = s.recv(64)
    s.close()
    assert head.startswith(b"HTTP/1.1 404") or head.startswith(b"HTTP/1.1 431"), (n, head)
def req(rid, route, method, payload):
    return json.dumps({"request_id": rid, "payload": json.dumps(payload), "header": {},
                       "route": route, "method": method})
async def main():
    async with websockets.connect(f"ws://127.0.0.1:{port}/") as a, \
            websockets.connect(f"ws://127.0.0.1:{port}/") as b:
        await a.send(req("a", "/chat_messages", "SUB", {"chat_id": "pkg"}))
        for _ in range(100):
            await b.send(req("p", "/send_message_to_chat_room", "POST",
                             {"chat_id": "pkg", "client_id": "b", "message": "from the package"}))
            assert json.loads(await asyncio.wait_for(b.recv(), 5))["payload"] == '{"message": "Message sent"}'
            try:
                r = json.loads(await asyncio.wait_for(a.recv(), 0.5))
                assert json.loads(r["payload"])["message"] == "from the package", r
                print("# delivered through the packaged redis antenna")
                return
            except asyncio.TimeoutError:
                continue
        raise AssertionError("no delivery")
asyncio.run(main())
PY
kill -TERM "$chat_pid"
wait "$chat_pid"
chat_pid=
test ! -s "$work/chat.out"
grep -q "antenna connected: redis at 127.0.0.1:$rport" "$work/chat.log"

echo "# purge"
apt-get purge -y -qq libxraptor1 libxraptor-dev xraptor xraptor-antenna-redis \
    xraptor-antenna-nats xraptor-antenna-kafka >/dev/null
test ! -e /usr/bin/xraptor-chat && test ! -e /etc/xraptor/chat.conf
echo "# packages built, checked, installed, run and purged"
