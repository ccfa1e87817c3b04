#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The layers of docs/ARCHITECTURE.md section 2, checked on what the build produced: each
# layer's library, whole, may use only its own symbols and those of the
# layers below it. An xr_ symbol that a layer needs and only a layer above
# defines is an upward call, and fails here. TAP output.
#   layers.sh BUILDDIR
set -u
b=${1:-.}
nm=${NM:-nm}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
layers="util codec transport proto"
n=0 failed=0
defined() { "$nm" -g --defined-only "$b/.libs/libxr$1.a" 2>/dev/null | awk 'NF == 3 {print $3}'; }
for l in $layers; do
    [ -f "$b/.libs/libxr$l.a" ] || { echo "Bail out! $b/.libs/libxr$l.a is missing"; exit 1; }
done
below=""
for l in $layers; do
    n=$((n + 1))
    below="$below $l"
    : > "$tmp/have"
    for d in $below; do defined "$d" >> "$tmp/have"; done
    sort -u "$tmp/have" -o "$tmp/have"
    "$nm" -g --undefined-only "$b/.libs/libxr$l.a" | awk '{print $NF}' | grep '^xr_' | sort -u > "$tmp/need"
    up=$(comm -23 "$tmp/need" "$tmp/have")
    if [ -n "$up" ]; then
        failed=$((failed + 1))
        echo "not ok $n - layer $l calls only itself and the layers below ($below )"
        echo "$up" | sed 's/^/#   needs from above: /'
    else
        echo "ok $n - layer $l calls only itself and the layers below ($below )"
    fi
done
# The top: libxraptor exports exactly what include/xraptor.h declares.
n=$((n + 1))
so=$(ls "$b"/.libs/libxraptor.so.* 2>/dev/null | head -1)
if [ -z "$so" ]; then
    echo "ok $n - exported symbols # SKIP no shared library built"
else
    "$nm" -D --defined-only "$so" | awk '{print $3}' | grep '^xr_' | sort -u > "$tmp/versioned"
    sed 's/@.*//' "$tmp/versioned" > "$tmp/exported"
    hdr=$(dirname "$0")/../include/xraptor.h
    bad=$(while read -r s; do grep -q "\\b$s\\b" "$hdr" || echo "$s"; done < "$tmp/exported")
    # Every one carries a version node of libxraptor.map.
    bad="$bad$(grep -v '@@XRAPTOR_' "$tmp/versioned" | sed 's/$/ (no XRAPTOR_ version)/')"
    if [ -n "$bad" ]; then
        echo "not ok $n - libxraptor exports only the public API"
        echo "$bad" | sed 's/^/#   not in xraptor.h: /'
        failed=$((failed + 1))
    else
        echo "ok $n - libxraptor exports only the public API ($(wc -l < "$tmp/exported") symbols)"
    fi
fi
echo "1..$n"
[ "$failed" -eq 0 ]
