#!/bin/sh
# The echo, chat and compression integration tests once more, every server under
# valgrind memcheck, stopped gracefully so that its leak check runs.
# Fails on any memcheck error or any leak "definitely lost".
#   valgrind.sh TOP_BUILDDIR TOP_SRCDIR PYTHON3
set -u
build=$1 src=$2 python=$3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for prog in xraptor-echo xraptor-chat; do
    cat > "$out/$prog" <<W
#!/bin/sh
exec "$build/libtool" --mode=execute valgrind -q --leak-check=full --errors-for-leak-kinds=definite \\
    --suppressions="$src/tests/valgrind.supp" --log-file="$out/vg.%p.log" "$build/$prog" "\$@"
W
    chmod +x "$out/$prog"
done
status=0
for t in test_echo test_chat test_deflate; do
    XR_GRACEFUL_STOP=1 XRAPTOR_ECHO="$out/xraptor-echo" XRAPTOR_CHAT="$out/xraptor-chat" \
    XRAPTOR_TESTSERVER="$build/tests/server/xraptor-testserver" \
    XRAPTOR_ANTENNA_PATH="$build/antennas/memory/.libs:$build/antennas/redis/.libs:$build/antennas/nats/.libs:$build/antennas/kafka/.libs" \
    XRAPTOR_WEB="$src/examples/chat/web:$src/js" PYTHONPATH="$src/tests/integration" \
        "$python" "$src/tests/integration/$t.py" > "$out/$t.tap" 2>&1 || status=1
    echo "valgrind: $t: $(grep -c '^ok' "$out/$t.tap") ok, $(grep -c '^not ok' "$out/$t.tap") not ok"
done
# With -q memcheck writes only its reports: any non-empty log is one.
reports=$(find "$out" -name 'vg.*.log' -size +0 | wc -l)
runs=$(ls "$out"/vg.*.log 2>/dev/null | wc -l)
if [ "$reports" -ne 0 ] || [ "$status" -ne 0 ]; then
    cat "$out"/vg.*.log 2>/dev/null | head -80
    grep -h '^not ok\|^#' "$out"/*.tap | head -40
    echo "valgrind: FAILED ($runs server runs, $reports reports)"
    exit 1
fi
echo "valgrind: $runs server runs, 0 errors, 0 bytes definitely lost"
