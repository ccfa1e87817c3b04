# SPDX-License-Identifier: Apache-2.0
"""wss:// with certificates made by the test: echo, health, bad clients,
certificate reload on SIGHUP."""
import shutil
import signal
import ssl
import tempfile
import time
import warnings

import websockets

from xrtest import (Server, client_ctx, connect, echo_ok, get, make_cert, run, test,
                    wait_eof)


class TlsServer(Server):
    def __init__(self, *args, **kw):
        self.dir = tempfile.mkdtemp(prefix="xraptor-tls-")
        self.cert, self.key = make_cert(self.dir)
        super().__init__("--tls-cert", self.cert, "--tls-key", self.key, *args, tls=True, **kw)
        self.ctx = client_ctx(self.cert)

    def kill(self):
        why = super().kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        return why


@test
async def test_wss_echo_with_a_generated_certificate():
    with TlsServer() as srv:
        async with websockets.connect(srv.url(), ssl=srv.ctx, max_size=None) as ws:
            for msg in ("hello", b"\x00" * 70000, "x" * (1 << 20)):
                await ws.send(msg)
                assert await ws.recv() == msg
            tls = ws.transport.get_extra_info("ssl_object")
            assert tls.version() == "TLSv1.3", tls.version()


@test
def test_tls12_accepted_and_health_served_over_https():
    with TlsServer() as srv:
        ctx = client_ctx(srv.cert)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        status, _, body = get(srv.port, "/health", tls_ctx=ctx)
        assert status == 200 and b'"status":"ok"' in body
        assert echo_ok(srv.port, tls_ctx=ctx)


@test
def test_tls12_default_suites_are_forward_secret_aead_only():
    # SECURITY.md: for TLS 1.2, ECDHE with AES-GCM or ChaCha20-Poly1305
    # only. Every TLS 1.2 suite this OpenSSL knows is offered alone: the
    # server must take exactly the allowed ones its RSA certificate can
    # serve, and refuse every other (RSA or DH key exchange, CBC, PSK...).
    allowed = {"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
               "ECDHE-RSA-CHACHA20-POLY1305"}
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    # PSK and SRP suites need a secret the client does not have: it cannot
    # offer them at all.
    suites = sorted({c["name"] for c in probe.get_ciphers()
                     if c["protocol"] != "TLSv1.3" and "PSK" not in c["name"]
                     and "SRP" not in c["name"]})
    assert len(suites) > 30 and allowed <= set(suites), suites
    with TlsServer() as srv:
        def offer(suite):
            ctx = client_ctx(srv.cert)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(suite + ":@SECLEVEL=0")
            try:
                s = connect(srv.port, tls_ctx=ctx)
            except ssl.SSLError as e:
                assert "HANDSHAKE_FAILURE" in str(e) or "NO_SHARED_CIPHER" in str(e), (suite, e)
                return None
            got = s.cipher()[0]
            s.close()
            return got
        taken = {suite for suite in suites if offer(suite) == suite}
        assert taken == allowed, f"TLS 1.2 took {sorted(taken - allowed)}, refused {sorted(allowed - taken)}"
        assert echo_ok(srv.port, tls_ctx=srv.ctx)


@test
def test_tls11_client_refused_with_a_protocol_version_alert():
    # Ciphers as permissive as OpenSSL allows (also --tls-ciphers' first
    # test): what refuses TLS 1.1 here is the TLS 1.2 minimum alone.
    with TlsServer("--tls-ciphers", "ALL:@SECLEVEL=0") as srv:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        try:
            connect(srv.port, tls_ctx=ctx).close()
            raise AssertionError("a TLS 1.1 handshake succeeded")
        except ssl.SSLError as e:
            assert e.reason == "TLSV1_ALERT_PROTOCOL_VERSION", e
        assert echo_ok(srv.port, tls_ctx=srv.ctx)


@test
def test_failed_and_plaintext_handshakes_do_not_disturb_others():
    with TlsServer() as srv:
        # A client that does not trust our certificate aborts its handshake.
        untrusting = ssl.create_default_context()
        try:
            connect(srv.port, tls_ctx=untrusting).close()
            raise AssertionError("handshake should fail verification")
        except ssl.SSLCertVerificationError:
            pass
        # Plain HTTP to the TLS port, and random bytes.
        for junk in (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 4):
            s = connect(srv.port)
            s.sendall(junk)
            assert wait_eof(s, 5), "server kept a broken TLS socket"
            s.close()
        assert echo_ok(srv.port, tls_ctx=srv.ctx)


@test
def test_idle_tls_handshake_freed_at_timeout():
    with TlsServer("--handshake-timeout", "1") as srv:
        s = connect(srv.port)
        t0 = time.monotonic()
        assert wait_eof(s, 4)
        assert time.monotonic() - t0 < 3
        s.close()


def peer_cert(port, ctx):
    s = connect(port, tls_ctx=ctx)
    der = s.getpeercert(binary_form=True)
    s.close()
    return der


@test
async def test_sighup_reloads_certificate_keeping_live_connections():
    with TlsServer() as srv:
        first = peer_cert(srv.port, srv.ctx)
        ws = await websockets.connect(srv.url(), ssl=srv.ctx)
        # A new pair under the same file names, then SIGHUP.
        new_cert, new_key = make_cert(srv.dir, name="next")
        shutil.copy(new_cert, srv.cert)
        shutil.copy(new_key, srv.key)
        srv.signal(signal.SIGHUP)
        srv.wait_log(r"TLS certificate reloaded")
        second = peer_cert(srv.port, client_ctx(srv.cert))
        assert second != first, "new connections still get the old certificate"
        await ws.send("survived the reload")
        assert await ws.recv() == "survived the reload"
        # A broken pair is refused and the current one stays in use.
        with open(srv.cert, "w") as f:
            f.write("not a certificate\n")
        srv.signal(signal.SIGHUP)
        srv.wait_log(r"TLS reload failed, keeping the current certificate")
        assert peer_cert(srv.port, client_ctx(new_cert)) == second
        await ws.send("still alive")
        assert await ws.recv() == "still alive"
        await ws.close()



@test
def test_connection_rate_refuses_at_accept_before_any_tls_handshake():
    # 5 a second per address; 40 sockets at once: about 5 complete a TLS
    # handshake, the others are closed at accept without the server
    # spending a handshake on them (no handshake failure counted).
    with TlsServer("--rate-limit-connections", "5") as srv:
        socks = [connect(srv.port) for _ in range(40)]
        done = 0
        for s in socks:
            try:
                t = srv.ctx.wrap_socket(s, server_hostname="127.0.0.1")
                t.close()
                done += 1
            except (ssl.SSLError, OSError):
                s.close()
        assert 5 <= done <= 7, done
        time.sleep(1.2)
        _, _, body = get(srv.port, "/metrics", tls_ctx=srv.ctx)
        m = dict(l.rsplit(" ", 1) for l in body.decode().splitlines() if l and l[0] != "#")
        assert float(m["xraptor_connections_refused_rate_total"]) == 40 - done, m
        # the only handshakes begun were the ones let in (they closed
        # without an upgrade, which counts as a failed one)
        assert float(m["xraptor_handshake_failures_total"]) == done, m
        assert echo_ok(srv.port, tls_ctx=srv.ctx)

if __name__ == "__main__":
    run()
