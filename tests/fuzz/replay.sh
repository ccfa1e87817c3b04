#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Replays every committed fuzz corpus (tests/fuzz/corpus/NAME) through the
# target NAME built without libFuzzer (tests/fuzz/replay_NAME). TAP.
set -u
src=$(cd "$(dirname "$0")" && pwd)
n=0 failed=0
for dir in "$src"/corpus/*/; do
    name=$(basename "$dir")
    bin=./tests/fuzz/replay_$name
    n=$((n + 1))
    files=$(ls "$dir" | wc -l)
    if [ ! -x "$bin" ]; then
        echo "not ok $n - corpus $name: no $bin"
        failed=$((failed + 1))
    elif [ "$files" -eq 0 ]; then
        echo "not ok $n - corpus $name is empty"
        failed=$((failed + 1))
    elif out=$("$bin" "$dir"* 2>&1); then
        echo "ok $n - corpus $name: $files inputs replayed"
    else
        echo "not ok $n - corpus $name: the target failed on $(printf '%s\n' "$out" | grep -c '^ok') of $files inputs passed"
        printf '%s\n' "$out" | tail -3 | sed 's/^/#   /'
        failed=$((failed + 1))
    fi
done
echo "1..$n"
[ "$failed" -eq 0 ]
