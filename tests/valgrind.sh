#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The echo, chat, compression and Redis Cluster integration tests once more,
# every server under valgrind memcheck, stopped gracefully so that its leak check runs.
# Fails on any memcheck error or any leak "definitely lost", and on a run
# that checked nothing: every server's log must end with memcheck's error
# and leak summaries (so it exited through its own frees), each test file
# must have run its whole plan without skips, and there must be at least
# MIN_RUNS server runs.
#   valgrind.sh TOP_BUILDDIR TOP_SRCDIR PYTHON3
set -u
build=$1 src=$2 python=$3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for prog in xraptor-echo xraptor-chat tests/server/xraptor-protoserver; do
    cat > "$out/${prog##*/}" <<W
#!/bin/sh
exec "$build/libtool" --mode=execute valgrind --leak-check=full --errors-for-leak-kinds=definite \\
    --suppressions="$src/tests/valgrind.supp" --log-file="$out/vg.%p.log" "$build/$prog" "\$@"
W
    chmod +x "$out/${prog##*/}"
done
status=0
MIN_RUNS=20
TESTS="test_echo test_chat test_deflate test_redis_cluster"
# Side by side: the cluster test mostly waits on Redis (start-up, failover).
for t in $TESTS; do
    XRAPTOR_ECHO="$out/xraptor-echo" XRAPTOR_CHAT="$out/xraptor-chat" \
    XRAPTOR_TESTSERVER="$build/tests/server/xraptor-testserver" \
    XRAPTOR_PROTOSERVER="$out/xraptor-protoserver" \
    XRAPTOR_ANTENNA_PATH="$build/antennas/memory/.libs:$build/antennas/redis/.libs:$build/antennas/nats/.libs:$build/antennas/kafka/.libs" \
    XRAPTOR_WEB="$src/examples/chat/web:$src/js" PYTHONPATH="$src/tests/integration" \
        "$python" "$src/tests/integration/$t.py" > "$out/$t.tap" 2>&1 &
done
wait
for t in $TESTS; do
    plan=$(sed -n 's/^1\.\.\([0-9]*\).*/\1/p' "$out/$t.tap")
    oks=$(grep -c '^ok' "$out/$t.tap")
    echo "valgrind: $t: $oks ok, $(grep -c '^not ok' "$out/$t.tap") not ok (plan ${plan:-none})"
    if [ -z "$plan" ] || [ "$plan" -eq 0 ] || [ "$oks" -ne "$plan" ] || grep -q '# SKIP' "$out/$t.tap"; then
        echo "valgrind: $t did not run its whole plan"
        status=1
    fi
done
runs=0 bad=0
for log in "$out"/vg.*.log; do
    [ -e "$log" ] || continue
    runs=$((runs + 1))
    # A server killed before its exit has no summaries: that checked nothing.
    if ! grep -q 'ERROR SUMMARY: 0 errors' "$log" ||
       ! grep -q 'definitely lost: 0 bytes\|All heap blocks were freed' "$log"; then
        bad=$((bad + 1))
        echo "valgrind: $log:"
        grep -v '^==[0-9]*== *$' "$log" | head -60
    fi
done
if [ "$bad" -ne 0 ] || [ "$status" -ne 0 ] || [ "$runs" -lt "$MIN_RUNS" ]; then
    grep -h '^not ok\|^#' "$out"/*.tap | head -40
    echo "valgrind: FAILED ($runs server runs, at least $MIN_RUNS wanted; $bad without clean summaries)"
    exit 1
fi
echo "valgrind: $runs server runs, each with 0 errors and 0 bytes definitely lost"
