"""The lockout as an attacker aims it (issue 19 #6): failures count per sender address, never per claimed identity,
so forged JWTs naming a victim or wrong secrets for a victim's key id slow the sender and never shut out the victim's
working credential; a sender over the limit is refused before any verification. Pure logic, fake clock, no sleeps.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nats_mcp.config.security import JwtIssuerSettings, SecuritySettings
from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.jwt import JwtVerifier, TrustedIssuer
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.guard import Guard, address_key
from nats_mcp.security.policy import Policy
from nats_mcp.security.principal import Principal
from tests.support.guard import Clock, Recorder

ISS = "https://idp.example.test"
AUD = "https://mcp.example.test/mcp"
NAT = "198.51.100.7"
"""The shared address (a NAT, an ingress) the attacker and the victim both come from."""
VICTIM_KEY = "nmk_0123456789ab_" + "V" * 43


class Keys:
    """Stands in for the API-key store: ``checks`` counts the verifications (each one an scrypt there)."""

    def __init__(self) -> None:
        self.checks = 0

    async def authenticate(self, credentials: Credentials) -> Principal:
        self.checks += 1
        if credentials.api_key != VICTIM_KEY:
            raise AuthenticationError("bad_signature", subject="0123456789ab")
        return Principal(subject="victim", issuer="apikey", method="apikey", peer=credentials.peer)


def guard(clock: Clock, recorder: Recorder, **lockout: float) -> Guard:
    settings = SecuritySettings.model_validate(
        {"lockout": {"max_failures": 5, "base_s": 30, "max_s": 900, "window_s": 900, **lockout}}
    )
    return Guard(settings, Policy.load(None), recorder, clock=clock)


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    victims_idp = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attackers = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return victims_idp, attackers


def verifier(tmp_path: Path, idp: rsa.RSAPrivateKey) -> JwtVerifier:
    pem = tmp_path / "idp.pem"
    pem.write_bytes(idp.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1))
    return JwtVerifier(
        [TrustedIssuer.from_settings(JwtIssuerSettings(issuer=ISS, audience=AUD, public_key_files=[pem]))]
    )


def token(key: rsa.RSAPrivateKey, sub: str = "victim", **extra: Any) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISS, "aud": AUD, "sub": sub, "exp": now + 600, **extra}, key, algorithm="RS256")


async def refused(g: Guard, provider: Any, credentials: Credentials) -> str:
    with pytest.raises(AuthenticationError) as info:
        await g.authenticate(provider, credentials, "http")
    return info.value.reason


async def test_forged_jwts_naming_the_victim_never_lock_out_the_victims_token(
    tmp_path: Path, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    idp, attackers = keys
    clock, rec = Clock(), Recorder()
    g, v = guard(clock, rec), verifier(tmp_path, idp)
    victims = token(idp)
    try:
        assert (await g.authenticate(v, Credentials(bearer=victims, peer=NAT), "http")).subject == "victim"
        # six tokens naming the victim's issuer and subject, signed by the attacker's own key, from the shared address
        forged = [token(attackers, jti=str(n)) for n in range(6)]
        reasons = [await refused(g, v, Credentials(bearer=f, peer=NAT)) for f in forged]
        assert reasons[:5] == ["bad_signature"] * 5 and reasons[5] == "locked_out"  # the sender is slowed
        # the victim still gets in: from the same shared address, and from another one
        assert (await g.authenticate(v, Credentials(bearer=victims, peer=NAT), "http")).subject == "victim"
        assert (await g.authenticate(v, Credentials(bearer=victims, peer="203.0.113.9"), "http")).subject == "victim"
        # ...while the attacker's next forgery is refused before it is looked at, and audited
        assert await refused(g, v, Credentials(bearer=token(attackers, jti="x"), peer=NAT)) == "locked_out"
    finally:
        await v.aclose()
    kinds = [(r["kind"], r.get("reason")) for r in rec.records]
    assert kinds.count(("auth_failure", "bad_signature")) == 4
    assert ("auth_failure", "bad_signature+locked") in kinds
    assert kinds.count(("locked_out", "locked_out")) == 2
    assert all(r["peer"] == NAT and r["principal"] is None for r in rec.records)
    assert all(victims not in str(r) and not any(f in str(r) for f in forged) for r in rec.records)


async def test_wrong_secrets_for_the_victims_key_id_slow_the_sender_before_any_scrypt() -> None:
    clock, rec, k = Clock(), Recorder(), Keys()
    g = guard(clock, rec)
    assert await g.authenticate(k, Credentials(api_key=VICTIM_KEY, peer=NAT), "http")
    guesses = [f"nmk_0123456789ab_{'G' * 42}{n}" for n in range(6)]
    for guess in guesses[:5]:
        assert await refused(g, k, Credentials(api_key=guess, peer=NAT)) == "bad_signature"
    checks = k.checks
    # over the limit: refused before any verification (no scrypt), however many more guesses come
    for guess in guesses[5:] * 50:
        assert await refused(g, k, Credentials(api_key=guess, peer=NAT)) == "locked_out"
    assert k.checks == checks
    # the victim's key, verified before, still gets in from the same address and from another
    assert (await g.authenticate(k, Credentials(api_key=VICTIM_KEY, peer=NAT), "http")).subject == "victim"
    assert (await g.authenticate(k, Credentials(api_key=VICTIM_KEY, peer="203.0.113.9"), "http")).subject == "victim"
    assert VICTIM_KEY not in str(rec.records) and not any(guess in str(rec.records) for guess in guesses)


async def test_a_success_does_not_reset_the_address_and_a_revoked_key_loses_its_pass() -> None:
    clock, rec, k = Clock(), Recorder(), Keys()
    g = guard(clock, rec, max_failures=3)
    mine = Credentials(api_key=VICTIM_KEY, peer=NAT)
    for n in range(2):  # an attacker interleaving its own working key with guesses gains no fresh budget
        assert await refused(g, k, Credentials(api_key=f"nmk_0123456789ab_{'G' * 42}{n}", peer=NAT)) == "bad_signature"
        assert await g.authenticate(k, mine, "http")
    assert await refused(g, k, Credentials(api_key="nmk_0123456789ab_" + "G" * 43, peer=NAT)) == "bad_signature"
    assert await refused(g, k, Credentials(api_key="nmk_0123456789ab_" + "H" * 43, peer=NAT)) == "locked_out"
    # a credential never seen to verify waits out the lock at that address (it cannot be told from a guess unchecked)
    stranger = Credentials(api_key="nmk_fedcba987654_" + "S" * 43, peer=NAT)
    assert await refused(g, k, stranger) == "locked_out"
    # the working key is revoked meanwhile: its first failure drops its pass, the next try waits like any other
    k.authenticate = _always_revoked  # type: ignore[method-assign]
    assert await refused(g, k, mine) == "revoked"
    assert await refused(g, k, mine) == "locked_out"
    clock.now += 901  # the lock and the window run out
    assert await refused(g, k, mine) == "revoked"


async def _always_revoked(credentials: Credentials) -> Principal:
    raise AuthenticationError("revoked")


async def test_a_stale_genuine_credential_slows_only_itself_not_its_address() -> None:
    clock, rec = Clock(), Recorder()
    g = guard(clock, rec, max_failures=2)

    class Stale:
        checks = 0

        async def authenticate(self, credentials: Credentials) -> Principal:
            Stale.checks += 1
            raise AuthenticationError("expired")

    # a client behind the NAT retrying its expired token: that token is slowed (then refused unchecked)...
    reasons = [await refused(g, Stale(), Credentials(bearer="expired-token", peer=NAT)) for _ in range(20)]
    assert reasons[:2] == ["expired", "expired"] and set(reasons[2:]) == {"locked_out"}
    assert Stale.checks == 2
    # ...and nobody else behind the same address is: a credential never seen before gets in
    assert (await g.authenticate(Keys(), Credentials(api_key=VICTIM_KEY, peer=NAT), "http")).subject == "victim"
    assert "expired-token" not in str(rec.records)


def test_ipv6_senders_are_counted_per_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:198.51.100.7") == address_key(NAT) == NAT
    assert address_key(None) == "-"


async def test_one_ipv6_host_cannot_rotate_addresses_for_a_fresh_budget() -> None:
    clock, rec, k = Clock(), Recorder(), Keys()
    g = guard(clock, rec, max_failures=3)
    for n in range(3):
        await refused(g, k, Credentials(api_key=f"nmk_0123456789ab_{'G' * 42}{n}", peer=f"2001:db8::{n + 1:x}"))
    checks = k.checks
    assert await refused(g, k, Credentials(api_key="nmk_0123456789ab_" + "Z" * 43, peer="2001:db8::ff")) == "locked_out"
    assert k.checks == checks
