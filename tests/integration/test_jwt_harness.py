"""Boundary check of the JWT (operator/account/user, creds file) harness: Python-made JWTs against nats-server."""

from __future__ import annotations

import base64
import os
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nacl.signing
import nats
import nats.errors
import nkeys
import pytest
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig

from tests.support.jwtauth import (
    JwtNatsServer,
    NKeyPair,
    claims_id,
    decode_jwt,
    make_jwt_auth,
    new_account,
    new_operator,
    new_user,
    user_jwt,
    write_creds,
)

pytestmark = pytest.mark.timeout(60)


async def _quiet(_: Exception) -> None:
    """error_cb that keeps nats-py from logging expected failures as tracebacks."""


@asynccontextmanager
async def connected(url: str, creds: Path) -> AsyncIterator[Client]:
    nc = await nats.connect(url, user_credentials=str(creds), error_cb=_quiet)
    try:
        yield nc
    finally:
        await nc.close()


async def connect_once(url: str, creds: Path) -> Client:
    """Single connection attempt, no reconnects: for negative tests."""
    return await nats.connect(
        url,
        user_credentials=str(creds),
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=2,
        error_cb=_quiet,
    )


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _verify_signature(token: str) -> None:
    """Check the ed25519 signature against the ``iss`` public key, independently of the server."""
    header_b64, claims_b64, sig_b64 = token.split(".")
    issuer = decode_jwt(token)[1]["iss"]
    raw = base64.b32decode(issuer + "=" * (-len(issuer) % 8))
    key = nacl.signing.VerifyKey(raw[1:-2])  # strip the prefix byte and the crc16
    key.verify(f"{header_b64}.{claims_b64}".encode(), _b64decode(sig_b64))


# ---- material, no server ----------------------------------------------------------------------------------


def test_material_chain_and_creds_files(tmp_path: Path) -> None:
    material = make_jwt_auth(tmp_path)
    header, op = decode_jwt(material.operator_jwt)
    _, acc = decode_jwt(material.account_jwt)
    _, usr = decode_jwt(material.user_jwt)
    assert header == {"typ": "JWT", "alg": "ed25519-nkey"}

    assert op["iss"] == op["sub"] == material.operator.public_key
    assert op["nats"] == {"system_account": material.system_account.public_key, "type": "operator", "version": 2}
    assert acc["iss"] == material.operator.public_key
    assert acc["sub"] == material.account.public_key
    assert acc["nats"]["limits"]["disk_storage"] == -1
    assert usr["iss"] == material.account.public_key
    assert usr["sub"] == material.user.public_key
    assert "exp" not in usr
    for token in (material.operator_jwt, material.system_account_jwt, material.account_jwt, material.user_jwt):
        _verify_signature(token)
        assert decode_jwt(token)[1]["jti"] == claims_id(decode_jwt(token)[1])

    for path in (material.creds_file, material.untrusted_creds_file, material.expired_creds_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = material.creds_file.read_text()
    assert f"-----BEGIN NATS USER JWT-----\n{material.user_jwt}\n------END NATS USER JWT------\n" in text
    assert f"-----BEGIN USER NKEY SEED-----\n{material.user.seed}\n------END USER NKEY SEED------\n" in text
    assert material.user.seed.startswith("SU")

    _, expired = decode_jwt(material.expired_creds_file.read_text().split("\n")[1])
    assert expired["exp"] < time.time()
    assert expired["iss"] == material.account.public_key
    _, stranger = decode_jwt(material.untrusted_creds_file.read_text().split("\n")[1])
    assert stranger["iss"] not in material.preload


def test_nkey_prefixes() -> None:
    assert new_operator().public_key.startswith("O")
    assert new_account().public_key.startswith("A")
    user = new_user()
    assert user.public_key.startswith("U")
    assert nkeys.from_seed(bytearray(user.seed.encode())).public_key.decode() == user.public_key


# ---- against the server -----------------------------------------------------------------------------------


async def test_creds_connect_and_jetstream(nats_jwt: JwtNatsServer) -> None:
    assert nats_jwt.user_public_key.startswith("U")
    async with connected(nats_jwt.url, nats_jwt.creds_file) as nc:
        js = nc.jetstream()
        info = await js.account_info()
        assert info.limits.max_storage == -1
        await js.add_stream(StreamConfig(name="JWT", subjects=["jwt.>"], storage=StorageType.FILE))
        ack = await js.publish("jwt.a", b"hello")
        assert ack.stream == "JWT"
        assert (await js.get_msg("JWT", ack.seq)).data == b"hello"

        async def handler(msg: Any) -> None:
            await msg.respond(b"pong:" + msg.data)

        sub = await nc.subscribe("echo.ping", cb=handler)
        await nc.flush()  # subscription is registered server-side before the request
        assert (await nc.request("echo.ping", b"ping", timeout=2)).data == b"pong:ping"
        await sub.unsubscribe()

        conns = nats_jwt.monitor("connz?auth=true")["connections"]
        mine = [c for c in conns if c.get("authorized_user") == nats_jwt.user_public_key]
        assert len(mine) == 1
        assert mine[0]["account"] == nats_jwt.account_public_key


async def test_untrusted_account_is_rejected(nats_jwt: JwtNatsServer) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect_once(nats_jwt.url, nats_jwt.untrusted_creds_file)


async def test_expired_user_jwt_is_rejected(nats_jwt: JwtNatsServer) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect_once(nats_jwt.url, nats_jwt.expired_creds_file)


def _creds_claiming(directory: Path, signer: NKeyPair, claimed_issuer: str, name: str) -> Path:
    """Creds whose user JWT names ``claimed_issuer`` as ``iss`` but is signed with ``signer``'s key."""
    user = new_user()
    header, claims, _ = user_jwt(signer, user, name=name).split(".")
    payload = _b64decode(claims).replace(signer.public_key.encode(), claimed_issuer.encode())
    signing_input = f"{header}.{_b64encode(payload)}"
    token = f"{signing_input}.{_b64encode(signer.sign(signing_input.encode()))}"
    assert decode_jwt(token)[1]["iss"] == claimed_issuer
    return write_creds(directory / f"{name}.creds", token, user.seed)


async def test_forged_user_jwt_is_rejected(nats_jwt: JwtNatsServer, tmp_path: Path) -> None:
    """Same claims, only the signing key differs: signed by the account it is accepted, by another key refused."""
    trusted = nats_jwt.account_public_key
    genuine = _creds_claiming(tmp_path, nats_jwt.material.account, trusted, "genuine")
    async with connected(nats_jwt.url, genuine) as nc:
        await nc.flush()
    forged = _creds_claiming(tmp_path, new_account(), trusted, "forged")
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect_once(nats_jwt.url, forged)


async def test_rejections_are_for_the_intended_reason(tmp_path: Path) -> None:
    """With debug logging the server says why it refused; each negative creds file must fail for its own reason.

    The server writes the reason before it sends -ERR, so it is in the log once connect() has raised. A JWT whose
    signature does not verify is logged by nats-server 2.15 as if no JWT had been sent.
    """
    with JwtNatsServer(tmp_path / "nats-jwt-debug", debug=True) as server:
        forged = _creds_claiming(tmp_path, new_account(), server.account_public_key, "forged")
        cases = [
            (server.untrusted_creds_file, "Account JWT lookup error: account missing"),
            (server.expired_creds_file, "User JWT no longer valid: &{Issues:[claim is expired]}"),
            (forged, "Authentication requires a user JWT"),
        ]
        for creds, reason in cases:
            before = len(server.log_text())
            with pytest.raises(nats.errors.Error, match="Authorization Violation"):
                await connect_once(server.url, creds)
            assert reason in server.log_text()[before:], server.log_text()[before:]
