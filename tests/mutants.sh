#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make mutants: applies each mutation of tests/mutants.txt to the source
# tree in turn, rebuilds the build tree incrementally, runs the tests the
# line names, and restores the file. A mutant the tests survive, a pattern
# that is not in its file exactly once, or a mutant that does not build
# fails the run. One line per mutant; the last says how many were killed.
#   mutants.sh BUILDDIR SRCDIR [FILTER]   (FILTER: only lines containing it,
#                                          or numbers as make mutants prints them: 12,40)
# MUTANT_JOBS (default: the CPUs, at most 4) mutants run at once, each
# shard in a copy of the tree of its own (make distdir, configured as
# BUILDDIR was): a mutant changes a source file, which no other shard
# may see. One shard's builds and tests leave a CPU idle often enough
# (tests wait on timeouts and brokers) for two to gain about 15 %.
#   mutants.sh BUILDDIR SRCDIR FILTER SHARD SHARDS COUNTS   (one shard: internal)
set -u
build=$1 src=$2 filter=${3:-}
py=${PYTHON3:-/usr/bin/python3}
jobs=$(nproc 2>/dev/null || echo 2)

if [ $# -lt 6 ]; then
    shards=${MUTANT_JOBS:-$jobs}
    [ "$shards" -gt 4 ] && shards=4
    [ "$shards" -lt 1 ] && shards=1
    # The copies have no node_modules: without this the browser test of a
    # shard other than 0 skips, and its mutants pass for survivors.
    if [ -z "${XRAPTOR_PLAYWRIGHT_DIR:-}" ] && [ -d "$src/tests/browser/node_modules" ]; then
        XRAPTOR_PLAYWRIGHT_DIR=$(cd "$src/tests/browser" && pwd)
        export XRAPTOR_PLAYWRIGHT_DIR
    fi
    work=$(mktemp -d /tmp/xraptor-mutants.XXXXXX)
    trap 'rm -rf "$work"' EXIT INT TERM
    make -s -j"$jobs" -C "$build" all >/dev/null 2>&1 || { echo "mutants: the unmutated tree does not build"; exit 1; }
    # Shard 0 is the tree itself; the others are copies, configured here
    # and built by their shard while shard 0 already runs mutants.
    trees="$build|$src"
    args=$(cd "$build" && ./config.status --config)
    # distdir makes the copy in the build tree (its subdirectories are
    # reached by relative paths), under a name no other run uses.
    copy=mutants-tree-$$
    if [ "$shards" -gt 1 ] && ! { make -s -C "$build" distdir distdir="$copy" >"$work/prep.log" 2>&1 \
            && mv "$build/$copy" "$work/tree"; }; then
        tail -20 "$work/prep.log"
        rm -rf "${build:?}/$copy"
        echo "mutants: make distdir failed"
        exit 1
    fi
    i=1
    while [ "$i" -lt "$shards" ]; do
        if ! { cp -a "$work/tree" "$work/src$i" && mkdir "$work/build$i" \
               && (cd "$work/build$i" && eval "\"$work/src$i/configure\" $args" >>"$work/prep$i.log" 2>&1); }; then
            tail -20 "$work/prep$i.log"
            echo "mutants: shard $i's tree could not be made"
            exit 1
        fi
        trees="$trees $work/build$i|$work/src$i"
        i=$((i + 1))
    done
    # The shards print to this output (a line is one write: lines do not
    # mix) and leave their counts in a file each.
    pids="" i=0
    for t in $trees; do
        sh "$0" "${t%%|*}" "${t#*|}" "$filter" "$i" "$shards" "$work/counts$i" &
        pids="$pids $!"
        i=$((i + 1))
    done
    trap 'kill $pids 2>/dev/null; wait; rm -rf "$work"; exit 1' INT TERM
    for pid in $pids; do
        wait "$pid"
    done
    n=0 killed=0 bad=0 i=0
    while [ "$i" -lt "$shards" ]; do
        set -- $(cat "$work/counts$i" 2>/dev/null)
        if [ $# -ne 3 ]; then
            echo "mutants: shard $i did not finish"
            bad=$((bad + 1))
        else
            n=$((n + $1)) killed=$((killed + $2)) bad=$((bad + $3))
        fi
        i=$((i + 1))
    done
    echo "mutants: $killed of $n killed, $bad survived or broken ($shards shards)"
    [ "$bad" -eq 0 ] && [ "$n" -gt 0 ]
    exit $?
fi

shard=$4 shards=$5 counts=$6
list="$src/tests/mutants.txt"
backup=$(mktemp)
current=""
restore() {
    [ -n "$current" ] && cp "$backup" "$current"
    current=""
}
trap 'restore; rm -f "$backup"' EXIT
trap 'exit 1' INT TERM
# A copy's first build; the tree itself is built already.
make -s -j"$jobs" -C "$build" all >/dev/null 2>&1 || { echo "mutants: the unmutated tree does not build"; exit 1; }
n=0 killed=0 bad=0 index=0
# Fields are separated by " | "; "\n" inside a field is a newline.
while IFS= read -r line; do
    case $line in ''|'#'*) continue ;; esac
    index=$((index + 1))
    case $filter in
        '') ;;
        *[!0-9,]*) case $line in *"$filter"*) ;; *) continue ;; esac ;;
        *) case ",$filter," in *",$index,"*) ;; *) continue ;; esac ;;
    esac
    [ $(((index - 1) % shards)) -eq "$shard" ] || continue
    n=$((n + 1))
    t0=$(date +%s)
    file=$(printf '%s' "$line" | awk -F' [|] ' '{print $1}')
    tests=$(printf '%s' "$line" | awk -F' [|] ' '{print $4}')
    only=$(printf '%s' "$line" | awk -F' [|] ' '{print $5}')
    cp "$src/$file" "$backup"
    current="$src/$file"
    if ! LINE="$line" "$py" - "$src/$file" <<'PY'
import os, sys
f = sys.argv[1]
parts = os.environ["LINE"].split(" | ")
old, new = (p.replace("\\n", "\n") for p in parts[1:3])
text = open(f).read()
if text.count(old) != 1:
    sys.exit(f"pattern found {text.count(old)} times, not once")
open(f, "w").write(text.replace(old, new))
PY
    then
        echo "mutant $index: $file: BAD PATTERN"
        bad=$((bad + 1))
        restore
        continue
    fi
    # Only what the named tests run is built again, and the tests run
    # without make check's walk through the whole tree: a unit test is its
    # own program; the integration tests run the programs and the test
    # servers (and, for a mutant inside an antenna, that antenna's
    # modules); anything else (layers.sh) needs the whole tree. Programs
    # left stale meanwhile are relinked at the end.
    servers="tests/server/xraptor-testserver tests/server/xraptor-protoserver"
    progs="" targets="" sub=""
    case $file in antennas/*/*) sub=$(printf '%s' "$file" | cut -d/ -f1-2) ;; esac
    for t in $tests; do
        case $t in
            tests/unit/*) progs="$progs $t" targets="$targets $t" ;;
            *.py|*.mjs) progs="$progs $servers" targets="$targets xraptor-echo xraptor-chat $servers" ;;
            *) targets="$targets all" sub="" ;;
        esac
    done
    if ! { make -s -j"$jobs" -C "$build" $targets \
           && { [ -z "$sub" ] || make -s -j"$jobs" -C "$build/$sub" all; }; } >"$build/mutant.log" 2>&1; then
        echo "mutant $index: $file: DOES NOT BUILD"
        tail -5 "$build/mutant.log"
        bad=$((bad + 1))
        restore
        continue
    fi
    # A hang is as red as a failure: the tests get 40 s (the slowest
    # honest run of one mutant's tests takes about 25).
    set -- check-TESTS TESTS="$tests" check_PROGRAMS="$progs"
    XR_FAIL_FAST=1 XRAPTOR_TEST_FILTER="$only" timeout 40 make -j"$jobs" -C "$build" "$@" \
        >"$build/mutant.log" 2>&1
    rc=$?
    if grep -q '^SKIP:' "$build/mutant.log"; then
        # A test that did not run killed nothing, whatever else passed or failed.
        echo "mutant $index: $file: NOT TESTED ($(grep -m1 '^SKIP:' "$build/mutant.log" | cut -c1-100))"
        bad=$((bad + 1))
    elif [ "$rc" -eq 0 ]; then
        echo "mutant $index: $file: SURVIVED ($tests all passed)"
        bad=$((bad + 1))
    else
        killed=$((killed + 1))
        why=$(grep -m1 '^FAIL:\|^ERROR:' "$build/mutant.log" | cut -c1-100)
        echo "mutant $index: $file: killed in $(($(date +%s) - t0)) s (${why:-the tests did not build or did not finish})"
    fi
    restore
done < "$list"
make -s -C "$build" all >/dev/null 2>&1
echo "$n $killed $bad" >"$counts"
