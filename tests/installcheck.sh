#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# After `make install`: compiles examples/hello/hello.c against the installed
# library with nothing but `cc hello.c $(pkg-config --cflags --libs xraptor)`,
# runs it, and talks to it with a real WebSocket client.
#   installcheck.sh DESTDIR PREFIX LIBDIR HELLO.C PYTHON3
set -eu
destdir=$1 prefix=$2 libdir=$3 src=$4 python=$5
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

PKG_CONFIG_PATH="$destdir$libdir/pkgconfig"
export PKG_CONFIG_PATH
# With DESTDIR the .pc file still names the final prefix; the sysroot
# variable maps its -I and -L into the staging tree.
if [ -n "$destdir" ]; then PKG_CONFIG_SYSROOT_DIR=$destdir; export PKG_CONFIG_SYSROOT_DIR; fi

echo "installcheck: pkg-config xraptor $(pkg-config --modversion xraptor)"
test -f "$destdir$prefix/include/xraptor.h"
${CC:-cc} -Wall -Wextra -Werror "$src" $(pkg-config --cflags --libs xraptor) -o "$tmp/hello"

LD_LIBRARY_PATH="$destdir$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
"$tmp/hello" --listen 127.0.0.1:0 2>"$tmp/log" &
pid=$!
i=0
port=""
while [ -z "$port" ] && [ $i -lt 100 ]; do
    sleep 0.1
    port=$(sed -n 's/.*listening on ws:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/log")
    i=$((i + 1))
done
[ -n "$port" ] || { echo "installcheck: hello did not start"; cat "$tmp/log"; exit 1; }

"$python" - "$port" <<'PY'
import asyncio, sys
import websockets
async def main():
    async with websockets.connect(f"ws://127.0.0.1:{sys.argv[1]}") as ws:
        assert await asyncio.wait_for(ws.recv(), 5) == "hello from xraptor"
        await ws.send("installed")
        assert await asyncio.wait_for(ws.recv(), 5) == "installed"
asyncio.run(main())
PY
kill -TERM "$pid"
wait "$pid"
pid=""
echo "installcheck: hello built with pkg-config, served a WebSocket client, exited 0"
