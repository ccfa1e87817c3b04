# SPDX-License-Identifier: Apache-2.0
"""Flags: --help, --version, bad flags and values, start-up errors, the
antenna loader's refusals, listener forms, log levels."""
import os
import signal
import socket
import subprocess
import tempfile

import websockets

from xrtest import (CHAT, ECHO, Server, client_ctx, echo_ok, free_port, get, health,
                    make_cert, read_frame, run, test, wait_port, ws_open)

MODULES = os.environ.get("XRAPTOR_TEST_MODULES", "")
ANTENNA_PATH = os.environ.get("XRAPTOR_ANTENNA_PATH", "")
MEMORY_DIR = next((d for d in ANTENNA_PATH.split(":") if d.endswith("memory/.libs")), "")


def echo(*args, timeout=10):
    return subprocess.run([ECHO, *args], capture_output=True, text=True, timeout=timeout)


@test
def test_help_lists_every_common_flag():
    r = echo("--help")
    assert r.returncode == 0 and r.stderr == ""
    for flag in ("--listen", "--tls-cert", "--tls-key", "--max-message-size", "--max-connections",
                 "--max-output-buffer", "--handshake-timeout", "--ping-interval", "--ping-timeout",
                 "--log-level", "--log-format", "--help", "--version"):
        assert flag in r.stdout, flag


@test
def test_version():
    r = echo("--version")
    assert r.returncode == 0 and r.stdout.startswith("xraptor-echo (xraptor) "), r.stdout


@test
def test_bad_flags_exit_2_naming_the_flag():
    for args, words in ((["--nope"], "--nope"),
                        (["--max-message-size", "big"], "--max-message-size"),
                        (["--ping-interval=soon"], "--ping-interval"),
                        (["--listen"], "--listen"),
                        (["--listen", "no-port"], "--listen"),
                        (["--log-format", "xml"], "--log-format"),
                        (["--tls-cert", "/tmp/x.pem"], "--tls-key"),
                        (["positional"], "positional")):
        r = echo(*args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert words in r.stderr and r.stdout == "", (args, r.stderr)


@test
def test_port_in_use_exits_1_with_message():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        r = echo("--listen", f"127.0.0.1:{port}")
        assert r.returncode == 1, r.returncode
        assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "in use" in r.stderr, r.stderr
    finally:
        blocker.close()


@test
def test_unreadable_certificate_exits_1_naming_the_file():
    r = echo("--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem")
    assert r.returncode == 1 and "/nonexistent/cert.pem" in r.stderr, r.stderr


@test
def test_json_log_format():
    import json
    from xrtest import Server, wait_until
    with Server("--log-format", "json") as srv:
        # The port answers before the line is written: wait for the line.
        wait_until(lambda: "\n" in srv.log(), 10, "the first log line")
        line = srv.log().splitlines()[0]
        rec = json.loads(line)
        assert rec["level"] == "info" and "listening on" in rec["msg"], rec


def chat(*args, env=None, timeout=10):
    return subprocess.run([CHAT, "--listen", "127.0.0.1:0", *args], capture_output=True,
                          text=True, timeout=timeout,
                          env=dict(os.environ, **env) if env else None)


@test
def test_antenna_by_path_loads_it_with_its_own_scheme():
    with Server("--antenna", os.path.join(MEMORY_DIR, "memory.so"), binary=CHAT) as srv:
        status, h = health(srv.port)
        assert status == 200 and h["antenna"]["connected"] is True, h


@test
def test_modules_of_another_abi_or_missing_functions_are_refused():
    r = chat("--antenna", os.path.join(MODULES, "wrongabi.so"))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "speaks antenna ABI 3, this xraptor speaks 2" in r.stderr, r.stderr
    assert "rebuild the module" in r.stderr and r.stdout == "", r.stderr
    r = chat("--antenna", os.path.join(MODULES, "missingops.so"))
    assert r.returncode == 2 and "required function is_alive" in r.stderr, r.stderr
    r = chat("--antenna", "/nonexistent/thing.so")
    assert r.returncode == 2 and "cannot load /nonexistent/thing.so" in r.stderr, r.stderr


@test
async def test_module_built_for_the_previous_abi_minor_still_loads_and_serves():
    import json
    import websockets
    from multinode import post, sub
    from xrtest import metrics, recv_json, wait_until
    # tests/antenna/oldmemory.so: the memory antenna compiled against the
    # antenna ABI 2.0 header, whose table ends before minor 1's describe.
    with Server("--antenna", os.path.join(MODULES, "oldmemory.so"), binary=CHAT) as srv:
        status, h = health(srv.port)
        assert status == 200 and h["antenna"]["connected"] is True, h
        assert "detail" not in h["antenna"], h
        async with websockets.connect(srv.url()) as a, websockets.connect(srv.url()) as b:
            await a.send(sub("in-old", "old-room"))
            wait_until(lambda: metrics(srv.port)["xraptor_channels"] == 1, 10, "joined")
            await b.send(post("p", "old-room", "b", "through a minor-0 module"))
            assert (await recv_json(b))["payload"] == '{"message": "Message sent"}'
            r = await recv_json(a)
            assert json.loads(r["payload"])["message"] == "through a minor-0 module", r
    # The current module has minor 1's describe: /health shows its line.
    with Server("--antenna", os.path.join(MEMORY_DIR, "memory.so"), binary=CHAT) as srv:
        h = health(srv.port)[1]
        assert h["antenna"]["detail"] == "in-process, 0 channel(s) subscribed", h


@test
def test_antenna_dir_is_where_modules_are_looked_for():
    # --antenna-dir wins over XRAPTOR_ANTENNA_PATH (here: a directory
    # without the module).
    with tempfile.TemporaryDirectory() as empty:
        with Server("--antenna-dir", MEMORY_DIR, binary=CHAT,
                    env={"XRAPTOR_ANTENNA_PATH": empty}) as srv:
            assert health(srv.port)[0] == 200
        r = chat("--antenna-dir", empty, "--antenna", "memory://",
                 env={"XRAPTOR_ANTENNA_PATH": MEMORY_DIR})
        assert r.returncode == 2, r.stderr
        assert "no module for 'memory://'" in r.stderr and f"looked in {empty}" in r.stderr, r.stderr


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@test
async def test_ipv6_listener_serves_websocket():
    if not ipv6_loopback():
        raise AssertionError("this machine has no IPv6 loopback (::1)")
    with Server("--listen", "[::1]:0") as srv:
        port = int(srv.wait_log(r"listening on ws://\[::1\]:(\d+)").group(1))
        async with websockets.connect(f"ws://[::1]:{port}/") as ws:
            await ws.send("over six")
            assert await ws.recv() == "over six"


@test
def test_scheme_prefix_forces_plain_or_tls_per_listener():
    with tempfile.TemporaryDirectory() as d:
        cert, key = make_cert(d)
        with Server("--tls-cert", cert, "--tls-key", key, "--listen", "ws://127.0.0.1:0",
                    tls=True) as srv:
            plain = int(srv.wait_log(r"listening on ws://127\.0\.0\.1:(\d+)").group(1))
            assert plain != srv.port
            assert echo_ok(plain)                          # plain on the ws:// one
            assert echo_ok(srv.port, tls_ctx=client_ctx(cert))  # TLS on the other
        r = subprocess.run([ECHO, "--listen", "wss://127.0.0.1:0"], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 2 and "needs --tls-cert and --tls-key" in r.stderr, r.stderr


@test
def test_log_level_hides_and_shows_what_it_says():
    # error: not even the "listening" line; debug: the reason of an HTTP
    # refusal, which info leaves out.
    port = free_port()
    with Server("--log-level", "error", port=port) as srv:
        assert get(port, "/nowhere")[0] == 426
        assert srv.stop() == 0
        assert srv.log() == "", srv.log()
    with Server("--log-level", "debug") as srv:
        assert get(srv.port, "/nowhere")[0] == 426
        srv.wait_log(r"debug +HTTP 426")
    with Server() as srv:
        assert get(srv.port, "/nowhere")[0] == 426
        assert srv.stop() == 0
        assert " info " in srv.log() and "HTTP 426" not in srv.log(), srv.log()


@test
async def test_config_file_every_flag_comments_and_the_command_line_wins():
    with tempfile.TemporaryDirectory() as d:
        conf = os.path.join(d, "echo.conf")
        a, b, c = free_port(), free_port(), free_port()
        with open(conf, "w") as f:
            f.write(f"""# xraptor-echo settings
listen = 127.0.0.1:{a}
listen = 127.0.0.1:{b}     # repeated: both
max-message-size = 1k
subprotocol = "v2#beta"   # quoted: "#" is part of the value
--subprotocol = v1
compression

ping-interval = 200ms
""")
        # The file alone: both listeners, its limits, its subprotocols in
        # its order, its switch, its ping interval.
        srv = Server("--config", conf, port=a, listen=False)
        wait_port(b)
        assert echo_ok(a)
        async with websockets.connect(f"ws://127.0.0.1:{b}/", subprotocols=["v1", "v2#beta"],
                                      max_size=None) as ws:
            assert ws.subprotocol == "v2#beta", ws.subprotocol
            assert "permessage-deflate" in ws.response_headers.get("Sec-WebSocket-Extensions", "")
            await ws.send("x" * 1024)
            assert await ws.recv() == "x" * 1024
            await ws.send("x" * 1025)
            try:
                await ws.recv()
                raise AssertionError("a message over the file's max-message-size was echoed")
            except websockets.ConnectionClosed as e:
                assert e.rcvd.code == 1009, e
        raw = ws_open(a)
        raw.settimeout(2)
        assert read_frame(raw)[1] == 0x9, "no ping after the file's ping-interval"
        raw.close()
        srv.stop()
        # The command line wins: its --listen replaces the file's list, its
        # --max-message-size the file's.
        srv = Server("--config", conf, "--listen", f"127.0.0.1:{c}", "--max-message-size", "4k",
                     port=c, listen=False)
        async with websockets.connect(f"ws://127.0.0.1:{c}/", max_size=None) as ws:
            await ws.send("y" * 4096)
            assert await ws.recv() == "y" * 4096
        for p in (a, b):
            try:
                socket.create_connection(("127.0.0.1", p), timeout=1).close()
                raise AssertionError(f"the file's listener {p} is open though --listen was given")
            except OSError:
                pass
        srv.stop()
        # A bad line: FILE:LINE: what, exit 2, before anything starts.
        for text, words in (("listen = 127.0.0.1:1\nmax-message-size = lots\n",
                             f"{conf}:2: --max-message-size: 'lots' is not a size"),
                            ("\n\nnope = 1\n", f"{conf}:3: unknown option 'nope'"),
                            ("max-connections\n", f"{conf}:1: max-connections needs a value"),
                            ("compression = maybe\n", f"{conf}:1: compression is a switch"),
                            ('subprotocol = "open\n', f"{conf}:1: unterminated quoted value"),
                            ("config = other.conf\n", f"{conf}:1: 'config' cannot be set")):
            with open(conf, "w") as f:
                f.write(text)
            r = echo("--config", conf)
            assert r.returncode == 2 and words in r.stderr and r.stdout == "", (text, r.stderr)
        r = echo("--config", os.path.join(d, "missing.conf"))
        assert r.returncode == 2 and "missing.conf: cannot open" in r.stderr, r.stderr


@test
def test_log_callback_receives_the_lines_instead_of_stderr():
    from xrtest import TESTSERVER
    port = free_port()
    with Server("--log-level", "warn", binary=TESTSERVER, port=port,
                env={"XR_TEST_LOG_CALLBACK": "1"}) as srv:
        # A second SIGTERM while a client is still draining is a warn
        # line; the first ("draining") is info.
        from xrtest import read_close, ws_open
        held = ws_open(port)
        srv.signal(signal.SIGTERM)
        assert read_close(held)[0] == 1001
        srv.signal(signal.SIGTERM)
        srv.wait()
        held.close()
        log = srv.log().splitlines()
        lines = [x for x in log if not x.startswith("xraptor-testserver: opened")]
        assert lines and all(x.startswith("app-log/") for x in lines), log
        assert any(x.startswith("app-log/1/0: second SIGTERM") for x in lines), log
        assert not any("draining" in x for x in lines), log   # info: below warn
    with Server(binary=TESTSERVER, env={"XR_TEST_LOG_CALLBACK": "1"}) as srv:
        pass
    # The "listening" line (info) came through the callback, not stderr's format.
    assert "app-log/2/0: listening on ws://127.0.0.1:" in srv.log(), srv.log()


@test
def test_bad_pem_and_mismatched_key_stop_start_up_naming_the_file():
    with tempfile.TemporaryDirectory() as d:
        cert, key = make_cert(d)
        cert2, key2 = make_cert(d, "other")
        garbage = os.path.join(d, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        for args, words in (((garbage, key), garbage), ((cert, garbage), garbage),
                            ((cert, key2), "mismatch")):
            r = echo("--listen", "127.0.0.1:0", "--tls-cert", args[0], "--tls-key", args[1])
            assert r.returncode == 1, (args, r.returncode, r.stderr)
            assert words in r.stderr and r.stdout == "", (args, r.stderr)


if __name__ == "__main__":
    run()
