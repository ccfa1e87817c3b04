# SPDX-License-Identifier: Apache-2.0
"""Connection tokens (--jwt-key): tokens minted by python3-jwt, an
implementation that is not ours, accepted or refused at the upgrade;
expiry while connected (4001) and refresh (PUT /xraptor/token)."""
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import tempfile
import time

import jwt
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from xrtest import (CHAT, PROTOSERVER, Server, connect, get, metrics, no_message, recv_json, request,
                    run, skip_all, test, upgrade_request)

SECRET = b"s3cret-s3cret-s3cret-s3cret-s3cret!"


class Keys:
    """A directory of keys: an HMAC secret, RSA, EC P-256 and Ed25519."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="xraptor-jwt-")
        self.priv = {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
                     "ec": ec.generate_private_key(ec.SECP256R1()),
                     "ed": ed25519.Ed25519PrivateKey.generate()}
        self.files = {"hs": self.write("hs.key", SECRET + b"\n")}
        for name, k in self.priv.items():
            pem = k.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
            self.files[name] = self.write(f"{name}.pem", pem)

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def pem(self, name):
        with open(self.files[name], "rb") as f:
            return f.read()

    def args(self, *names, kid=False):
        out = []
        for n in names:
            out += ["--jwt-key", f"{n}={self.files[n]}" if kid else self.files[n]]
        return out

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def claims(**kw):
    now = int(time.time())
    c = {"sub": "alice", "exp": now + 300, "iat": now}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def mint(keys, alg, headers=None, **kw):
    key = {"HS256": SECRET, "RS256": keys.priv["rsa"], "ES256": keys.priv["ec"],
           "EdDSA": keys.priv["ed"]}[alg]
    return jwt.encode(claims(**kw), key, algorithm=alg, headers=headers)


def status_of(port, path="/", extra=""):
    """The status of an upgrade request, and the whole answer."""
    s = connect(port)
    try:
        s.sendall(upgrade_request(path, extra))
        s.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1]) if data else 0, data
    finally:
        s.close()


def hs_with(secret, header, body):
    """An HS256 token made by hand (PyJWT refuses a PEM key as a secret)."""
    import hashlib
    import hmac
    signing = (b64(header) + "." + b64(body)).encode()
    return signing.decode() + "." + b64(hmac.new(secret, signing, hashlib.sha256).digest())


def b64(obj):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def whoami(srv, token):
    async with websockets.connect(srv.url(f"/?token={token}")) as ws:
        await ws.send(request("w", "/whoami", "GET"))
        return (await recv_json(ws))["payload"]


@test
async def test_hs256_rs256_es256_eddsa_tokens_accepted_and_sub_is_the_user():
    keys = Keys()
    try:
        with Server(*keys.args("hs", "rsa", "ec", "ed"), "--log-level", "debug",
                    binary=PROTOSERVER) as srv:
            for alg in ("HS256", "RS256", "ES256", "EdDSA"):
                assert await whoami(srv, mint(keys, alg, sub=f"user-{alg}")) == f"user-{alg}", alg
            # The user is in the connection's log lines.
            srv.wait_log(r"connection 127\.0\.0\.1:\d+ open, user user-EdDSA")
            srv.wait_log(r"connection 127\.0\.0\.1:\d+ closed \(1000\), user user-EdDSA")
            # Authorization: Bearer works too (for clients that can set headers).
            tok = mint(keys, "ES256")
            status, _ = status_of(srv.port, "/", f"Authorization: Bearer {tok}\r\n")
            assert status == 101, status
            # A token without sub: let in, no user.
            assert await whoami(srv, mint(keys, "HS256", sub=None)) == "-"
    finally:
        keys.close()


@test
def test_bad_tokens_refused_401_with_a_log_line_and_never_logged():
    keys = Keys()
    try:
        # At debug level: no line of any level may hold a token.
        with Server(*keys.args("hs", "rsa", kid=True), "--jwt-audience", "chat",
                    "--jwt-issuer", "https://auth.example", "--jwt-leeway", "0",
                    "--log-level", "debug", binary=PROTOSERVER) as srv:
            good = dict(aud="chat", iss="https://auth.example")
            ok = mint(keys, "HS256", headers={"kid": "hs"}, **good)
            assert status_of(srv.port, f"/?token={ok}")[0] == 101
            now = int(time.time())
            hs_body = b64(claims(**good))
            rsa_pem = keys.pem("rsa")
            cases = {
                "none": b64({"alg": "none", "typ": "JWT"}) + "." + hs_body + ".",
                # HS256 "signed" with the RSA public key's text, kid of the RSA key
                "confusion": hs_with(rsa_pem, {"alg": "HS256", "kid": "rsa"}, claims(**good)),
                "expired": mint(keys, "HS256", exp=now - 10, **good),
                "nbf": mint(keys, "HS256", nbf=now + 600, **good),
                "aud": mint(keys, "HS256", aud="other", iss=good["iss"]),
                "iss": mint(keys, "HS256", aud="chat", iss="https://evil.example"),
                "signature": ok[:-4] + ("AAAA" if not ok.endswith("AAAA") else "BBBB"),
                "kid": mint(keys, "HS256", headers={"kid": "nope"}, **good),
                "base64": ok.replace(".", ".*", 1),
                "json": b64(b"{not json") + "." + hs_body + "." + ok.split(".")[2],
                "missing": None,
            }
            for name, tok in cases.items():
                path = "/" if tok is None else f"/?token={tok}"
                status, answer = status_of(srv.port, path)
                assert status == 401, (name, status, answer[:200])
                assert b"WWW-Authenticate: Bearer" in answer, name
            log = srv.log()
            for why in ("algorithm not accepted", "algorithm not allowed for the key",
                        "token expired", "token not valid yet", "wrong audience", "wrong issuer",
                        "bad signature", "unknown kid", "malformed base64url",
                        "header is not a JSON object", "a token is required"):
                assert f"refused (401): {why}" in log, (why, log[-2000:])
            # No token, nor its signature, is ever written to the log.
            for tok in [ok, *cases.values()]:
                if tok:
                    assert tok not in log and tok.rsplit(".", 1)[-1][:16] not in log.replace(" ", "") \
                        or not tok.rsplit(".", 1)[-1], tok
            # A 64 KiB token does not even fit the head: 431.
            assert status_of(srv.port, "/?token=" + "a" * 65536)[0] == 431
            assert metrics(srv.port)["xraptor_connections_refused_auth_total"] == len(cases)
    finally:
        keys.close()


@test
async def test_expired_token_closes_4001_after_the_grace_and_refresh_keeps_it():
    keys = Keys()
    try:
        with Server(*keys.args("hs"), "--jwt-grace", "1", "--jwt-leeway", "0",
                    binary=PROTOSERVER) as srv:
            # Not refreshed: closed 4001 within expiry + grace (+ slack).
            t0 = time.monotonic()
            tok = mint(keys, "HS256", exp=int(time.time()) + 2)
            async with websockets.connect(srv.url(f"/?token={tok}")) as ws:
                try:
                    await asyncio.wait_for(ws.recv(), 6)
                except websockets.ConnectionClosed:
                    pass
                assert ws.close_code == 4001 and ws.close_reason == "token expired", (
                    ws.close_code, ws.close_reason)
                assert 1.0 < time.monotonic() - t0 < 4.5, time.monotonic() - t0
            # Refreshed before the end: stays, and its subscription delivers.
            tok = mint(keys, "HS256", exp=int(time.time()) + 2)
            async with websockets.connect(srv.url(f"/?token={tok}")) as ws, \
                    websockets.connect(srv.url(f"/?token={mint(keys, 'HS256', sub='bob')}")) as pub:
                await ws.send(request("chan-a", "/stream", "SUB"))
                assert (await recv_json(ws))["payload"] == '{"message": "subscribed"}'
                # Another user's token is refused, and changes nothing.
                await ws.send(request("r0", "/xraptor/token", "PUT",
                                      json.dumps({"token": mint(keys, "HS256", sub="mallory")})))
                r = await recv_json(ws)
                assert r["header"] == {"error": "forbidden"}, r
                await ws.send(request("r1", "/xraptor/token", "PUT",
                                      json.dumps({"token": mint(keys, "HS256", exp=int(time.time()) + 60)})))
                r = await recv_json(ws)
                assert r["header"] == {} and "refreshed" in r["payload"], r
                await asyncio.sleep(4)
                await pub.send(request("p", "/publish", "POST", "chan-a|still here"))
                got = [await recv_json(ws), await recv_json(pub)]
                assert any(m["request_id"] == "chan-a" and "still here" in m["payload"] for m in got), got
                # A bad token in a refresh is told so.
                await ws.send(request("r2", "/xraptor/token", "PUT", json.dumps({"token": "x.y.z"})))
                r = await recv_json(ws)
                assert r["header"] == {"error": "unauthorized"}, r
            m = metrics(srv.port)
            assert m["xraptor_connections_expired_total"] == 1, m
    finally:
        keys.close()


def chat(rid, method, room, **more):
    route = "/send_message_to_chat_room" if method == "POST" else "/chat_messages"
    return request(rid, route, method, json.dumps({"chat_id": room, **more}))


def say(rid, room, text):
    return chat(rid, "POST", room, client_id="c", message=text)


async def answer(ws, rid):
    """The answer to request rid, skipping room deliveries."""
    for _ in range(20):
        m = await recv_json(ws)
        if m["request_id"] == rid and m["method"] != "POST" or m["request_id"] == rid and \
                "origin" not in m["payload"]:
            return m
    raise AssertionError(f"no answer to {rid}")


@test
async def test_grants_restrict_channels_rooms_and_posts():
    # The token's "xraptor" claim: rooms chat.a and team.*, posts to chat.a
    # only. Refusals are "forbidden", and leave no channel behind.
    keys = Keys()
    try:
        with Server(*keys.args("hs"), binary=CHAT) as srv:
            limited = mint(keys, "HS256", sub="carol",
                           xraptor={"rooms": ["chat.a", "team.*"], "publish": ["chat.a"]})
            free = mint(keys, "HS256", sub="admin")
            async with websockets.connect(srv.url(f"/?token={limited}")) as lw, \
                    websockets.connect(srv.url(f"/?token={free}")) as fw:
                await lw.send(chat("l-b", "SUB", "chat.b"))
                r = await answer(lw, "l-b")
                assert r["header"]["error"] == "forbidden" and r["method"] == "SUB", r
                await lw.send(chat("l-a", "SUB", "chat.a"))
                await lw.send(chat("l-t", "SUB", "team.x"))
                await fw.send(chat("shared", "SUB", "chat.b"))
                await fw.send(chat("f-a", "SUB", "chat.a"))
                # Posting to a room not granted: refused, nothing delivered.
                await lw.send(say("p1", "chat.b", "not mine"))
                r = await answer(lw, "p1")
                assert r["header"]["error"] == "forbidden", r
                assert await no_message(fw), "a refused post was delivered"
                # Granted: sent, and both members of chat.a get it.
                await lw.send(say("p2", "chat.a", "hello a"))
                got = [await recv_json(lw) for _ in range(2)]
                assert {m["request_id"] for m in got} == {"p2", "l-a"}, got
                assert json.loads((await recv_json(fw))["payload"])["message"] == "hello a"
                # team.* matched team.x; chat.b's traffic never reaches l-b.
                await fw.send(say("p3", "team.x", "hello team"))
                await fw.send(say("p4", "chat.b", "hello b"))
                got = [await recv_json(lw, 3)]
                assert got[0]["request_id"] == "l-t" and "hello team" in got[0]["payload"], got
                assert await no_message(lw), "the refused SUB kept a channel"
                # Subscribing with another's request_id, a member of chat.b:
                # refused, or it would receive chat.b.
                await lw.send(chat("shared", "SUB", "chat.a"))
                r = await answer(lw, "shared")
                assert r["header"]["error"] == "forbidden", r
                await fw.send(say("p5", "chat.b", "still b"))
                assert await no_message(lw), "chat.b reached a connection not granted it"
            # "channels": the SUB's own request_id.
            pinned = mint(keys, "HS256", sub="dave", xraptor={"channels": ["dave.*"]})
            async with websockets.connect(srv.url(f"/?token={pinned}")) as pw:
                await pw.send(chat("other", "SUB", "chat.a"))
                r = await answer(pw, "other")
                assert r["header"]["error"] == "forbidden", r
                await pw.send(chat("dave.1", "SUB", "chat.a"))
                await pw.send(say("p6", "chat.a", "to dave"))
                got = [await recv_json(pw) for _ in range(2)]
                assert {m["request_id"] for m in got} == {"p6", "dave.1"}, got
            # A claim of the wrong shape is a bad token.
            for bad in ({"rooms": "chat.a"}, {"rooms": [1]}, "chat.a",
                        {"publish": [f"r{i}" for i in range(65)]}):
                status, _ = status_of(srv.port, f"/?token={mint(keys, 'HS256', xraptor=bad)}")
                assert status == 401, (bad, status)
            m = metrics(srv.port)
            assert m["xraptor_requests_forbidden_total"] == 4, m
    finally:
        keys.close()


@test
def test_bad_keys_stop_start_up_and_sighup_rereads_them():
    keys = Keys()
    try:
        short = keys.write("short.key", b"too short\n")
        with Server("--jwt-key", short, binary=PROTOSERVER, expect_start=False) as srv:
            assert srv.wait(5) != 0
            assert "at least 32 bytes" in srv.log(), srv.log()
        priv = keys.write("priv.pem", keys.priv["rsa"].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        with Server("--jwt-key", priv, binary=PROTOSERVER, expect_start=False) as srv:
            assert srv.wait(5) != 0
            assert "not a PEM public key" in srv.log(), srv.log()
        with Server("--jwt-key", os.path.join(keys.dir, "missing"), binary=PROTOSERVER,
                    expect_start=False) as srv:
            assert srv.wait(5) != 0
            assert "missing" in srv.log(), srv.log()
        with Server(*keys.args("hs"), binary=PROTOSERVER) as srv:
            old = mint(keys, "HS256")
            assert status_of(srv.port, f"/?token={old}")[0] == 101
            global SECRET
            saved, SECRET = SECRET, b"another-secret-another-secret-another!"
            try:
                keys.write("hs.key", SECRET)
                srv.signal(signal.SIGHUP)
                srv.expected_exit = False
                srv.wait_log(r"token keys reloaded")
                assert status_of(srv.port, f"/?token={mint(keys, 'HS256')}")[0] == 101
                assert status_of(srv.port, f"/?token={old}")[0] == 401
            finally:
                SECRET = saved
    finally:
        keys.close()


def jwk(key, **more):
    """python3-jwt's own JWK of a key, with members added."""
    from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm
    if isinstance(key, bytes):
        text = HMACAlgorithm.to_jwk(key)
    elif isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        text = RSAAlgorithm.to_jwk(key)
    elif isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        text = ECAlgorithm.to_jwk(key)
    else:
        text = OKPAlgorithm.to_jwk(key)
    return {**json.loads(text), **more}


@test
async def test_a_jwk_set_file_gives_every_key_with_its_kid():
    keys = Keys()
    try:
        pub = {n: k.public_key() for n, k in keys.priv.items()}
        # Another key meant for encryption: left out, not an error.
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwks = {"keys": [jwk(pub["rsa"], kid="r1", alg="RS256", use="sig"),
                         jwk(pub["ec"], kid="e1"), jwk(pub["ed"], kid="d1"),
                         jwk(SECRET, kid="h1", alg="HS256"),
                         jwk(other.public_key(), kid="enc", use="enc")]}
        path = keys.write("set.json", json.dumps(jwks, indent=1).encode())
        with Server("--jwt-key", path, binary=PROTOSERVER) as srv:
            for alg, kid in (("RS256", "r1"), ("ES256", "e1"), ("EdDSA", "d1"), ("HS256", "h1")):
                tok = mint(keys, alg, headers={"kid": kid}, sub=f"u-{kid}")
                assert await whoami(srv, tok) == f"u-{kid}", (alg, kid)
            # A kid naming another family's key, or the encryption key.
            assert status_of(srv.port, f"/?token={mint(keys, 'RS256', headers={'kid': 'e1'})}")[0] == 401
            tok = jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "enc"})
            assert status_of(srv.port, f"/?token={tok}")[0] == 401
            srv.wait_log(r"unknown kid")
        # Sets that cannot be used stop start-up, naming the key and why.
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        off_curve = jwk(pub["ec"])
        off_curve["y"] = off_curve["x"]
        for bad, why in (({"keys": [jwk(keys.priv["rsa"])]}, "key 1: a private key"),
                         ({"keys": [jwk(pub["ed"]), jwk(weak.public_key())]},
                          "key 2: an RSA key of fewer than 2048 bits"),
                         ({"keys": [off_curve]}, "not on its curve"),
                         ({"keys": [jwk(pub["ec"], alg="RS256")]}, "an alg its kty does not verify"),
                         ({"keys": [jwk(b"short")]}, "at least 32 bytes"),
                         ({"keys": [{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}]},
                          "other than P-256 and P-384"),
                         ({"keys": [jwk(pub["ed"], use="enc")]}, "no key for signatures"),
                         ({"keys": "x"}, "not a JWK set"),
                         ({"keys": [jwk(SECRET)] * 65}, "more than 64 keys"),
                         ({"keys": [{"kty": "RSA", "n": "a+b", "e": "AQAB"}]}, "needs n and e"),
                         ({"nokeys": []}, "not a JWK set")):
            f = keys.write("bad.json", json.dumps(bad).encode())
            with Server("--jwt-key", f, binary=PROTOSERVER, expect_start=False) as srv:
                assert srv.wait(5) != 0, bad
                assert why in srv.log(), (why, srv.log())
        with Server("--jwt-key", f"x={path}", binary=PROTOSERVER, expect_start=False) as srv:
            assert srv.wait(5) != 0
            assert "names its keys itself" in srv.log(), srv.log()
    finally:
        keys.close()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@test
async def test_an_ec_jwk_whose_coordinates_lost_leading_zeros_still_verifies():
    """python3-jwt before 2.8 writes x and y as integers, so one P-256 key
    in about 128 has a coordinate of 31 bytes: the same point."""
    keys = Keys()
    try:
        for _ in range(5000):
            k = ec.generate_private_key(ec.SECP256R1())
            n = k.public_key().public_numbers()
            if n.x < 1 << 248 or n.y < 1 << 248:
                break
        else:
            raise AssertionError("no P-256 key with a short coordinate in 5000")
        short = lambda v: b64url(v.to_bytes((v.bit_length() + 7) // 8, "big"))
        full = lambda v: b64url(v.to_bytes(32, "big"))
        tok = jwt.encode(claims(sub="short"), k, algorithm="ES256", headers={"kid": "s"})
        for coord in (short, full):
            jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "s",
                              "x": coord(n.x), "y": coord(n.y)}]}
            path = keys.write("short.json", json.dumps(jwks).encode())
            with Server("--jwt-key", path, binary=PROTOSERVER) as srv:
                assert await whoami(srv, tok) == "short", coord
        # A coordinate longer than the curve's is not the same point.
        jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": b64url(b"\1" + n.x.to_bytes(32, "big")),
                          "y": full(n.y)}]}
        path = keys.write("long.json", json.dumps(jwks).encode())
        with Server("--jwt-key", path, binary=PROTOSERVER, expect_start=False) as srv:
            assert srv.wait(5) != 0
            assert "at most the curve's size" in srv.log(), srv.log()
    finally:
        keys.close()


if __name__ == "__main__":
    run()
