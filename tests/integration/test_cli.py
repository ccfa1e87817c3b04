"""Flags: --help, --version, bad flags and values, start-up errors."""
import socket
import subprocess

from xrtest import ECHO, run, test


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
    from xrtest import Server
    with Server("--log-format", "json") as srv:
        line = srv.log().splitlines()[0]
        rec = json.loads(line)
        assert rec["level"] == "info" and "listening on" in rec["msg"], rec


if __name__ == "__main__":
    run()
