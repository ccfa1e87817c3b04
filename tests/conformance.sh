#!/bin/sh
# RFC 6455 conformance: runs the Autobahn|Testsuite fuzzing client (cases
# 1-7, 9, 10) against xraptor-echo over ws:// and then wss:// with a
# certificate made here. Exits non-zero on any FAILED case.
#   conformance.sh PATH/TO/xraptor-echo
# AUTOBAHN=dir overrides where the suite is (default: ../shared/autobahn
# beside the source tree); AUTOBAHN_OUT=dir where the JSON reports go.
set -u
echo_bin=$1
here=$(cd "$(dirname "$0")" && pwd)
ab=${AUTOBAHN:-$here/../../shared/autobahn}
if [ ! -x "$ab/run.sh" ]; then
    echo "autobahn: skipped: no Autobahn|Testsuite at $ab (set AUTOBAHN=/path/to/autobahn)"
    exit 0
fi
ab=$(cd "$ab" && pwd)
out=${AUTOBAHN_OUT:-$(pwd)/autobahn-reports}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# Starts the echo server on a free port (in this shell, so cleanup can kill
# it) and sets $port from its log line.
start() {
    log=$1; shift
    "$echo_bin" --listen 127.0.0.1:0 --max-message-size 67108864 "$@" >/dev/null 2>"$log" &
    pids="$pids $!"
    i=0
    while [ $i -lt 100 ]; do
        port=$(sed -n 's/.*listening on wss*:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n 1)
        [ -n "$port" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    echo "conformance: xraptor-echo did not start:" >&2
    cat "$log" >&2
    exit 1
}

status=0
start "$tmp/ws.log"
printf 'ws://  '
"$ab/run.sh" "ws://127.0.0.1:$port" "$out/ws" || status=1
echo "  reports: $out/ws"

"${OPENSSL:-openssl}" req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1 || { echo "conformance: openssl failed"; exit 1; }
start "$tmp/wss.log" --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"
printf 'wss:// '
"$ab/run.sh" "wss://127.0.0.1:$port" "$out/wss" || status=1
echo "  reports: $out/wss"
exit $status
