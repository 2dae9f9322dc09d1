"""API keys in a real nats-server's KV: only salted scrypt hashes stored; wrong, unknown, malformed, expired and
revoked keys refused; one scrypt per first use (the unknown-id path too), none after; records looked up in a watched
copy, not read per call; revocation takes effect on the next call of the revoking process and on every other process
as soon as its watch delivers it; a copy that is not live (NATS away) is never trusted."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.apikeys import APIKEYS_BUCKET, ApiKeyError, ApiKeyRecord, ApiKeys, parse_key
from nats_mcp.security.errors import AuthenticationError
from tests.support.env import connected
from tests.support.natsserver import NatsServer, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def refused(keys: ApiKeys, key: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as info:
        await keys.verify(key)
    assert len(key) < 8 or key not in str(info.value)
    return info.value


async def test_a_created_key_authenticates_and_only_its_hash_is_stored(nats_conn: NatsConnection) -> None:
    keys = ApiKeys(nats_conn)
    key, record = await keys.create("ci-runner", ["agent", "reader"], namespaces=["proj-a"], ttl_s=3600)
    parsed = parse_key(key)
    assert parsed is not None and parsed[0] == record.id
    secret = parsed[1]
    principal = await keys.authenticate(Credentials(api_key=key, peer="10.0.0.9", agent="bot"))
    assert principal.subject == "ci-runner"
    assert principal.issuer == "apikey" and principal.method == "apikey"
    assert principal.roles == {"agent", "reader"}
    assert principal.namespaces == {"proj-a"}
    assert principal.key_id == record.id
    assert principal.peer == "10.0.0.9" and principal.agent == "bot"
    assert key not in repr(principal) and secret not in repr(principal)

    raw = (await (await nats_conn.jetstream.key_value(APIKEYS_BUCKET)).get(record.id)).value
    assert raw is not None
    assert secret.encode() not in raw and key.encode() not in raw
    stored = ApiKeyRecord.decode(raw)
    assert len(stored.salt) == 16 and len(stored.hash) == 32
    assert (stored.n, stored.r, stored.p) == (2**14, 8, 1)


async def test_a_valid_key_costs_one_scrypt_then_none(nats_conn: NatsConnection) -> None:
    keys = ApiKeys(nats_conn)
    key, _ = await keys.create("svc", ["agent"])
    for _ in range(5):
        await keys.verify(key)
    assert keys.derivations == 1


async def test_concurrent_checks_of_one_key_share_one_scrypt_when_its_cache_entry_lapses(
    nats_conn: NatsConnection,
) -> None:
    now = [1_000_000.0]
    keys = ApiKeys(nats_conn, cache_ttl_s=60.0, clock=lambda: now[0])
    key, record = await keys.create("svc", ["agent"])
    await keys.verify(key)
    assert keys.derivations == 1
    now[0] += 61  # the verification cache entry lapses while 50 agents of the key are calling
    wrong = key[:-5] + ("AAAAA" if not key.endswith("AAAAA") else "BBBBB")
    results = await asyncio.gather(*(keys.verify(key) for _ in range(50)), refused(keys, wrong), refused(keys, wrong))
    assert all(p.key_id == record.id for p in results[:50])
    assert results[50].reason == results[51].reason == "bad_signature"
    # One derivation for the 50 right ones, one shared by the two identical wrong ones: never 52.
    assert keys.derivations == 1 + 2
    await keys.verify(key)
    assert keys.derivations == 3  # cached again


async def test_wrong_secret_and_unknown_id_are_refused_alike(nats_conn: NatsConnection) -> None:
    keys = ApiKeys(nats_conn)
    key, record = await keys.create("svc", ["agent"])
    wrong_secret = key[:-5] + ("AAAAA" if not key.endswith("AAAAA") else "BBBBB")
    unknown_id = f"nmk_ffffffffffff{key[16:]}"  # same secret, an id that does not exist
    assert parse_key(wrong_secret) and parse_key(unknown_id)
    before = keys.derivations
    a = await refused(keys, wrong_secret)
    b = await refused(keys, unknown_id)
    assert a.reason == b.reason == "bad_signature"
    assert a.detail == b.detail
    # The constant-time path: the unknown id cost a full scrypt too (on the dummy record).
    assert keys.derivations == before + 2
    # A wrong secret never lands in the cache: the next try costs a scrypt again.
    await refused(keys, wrong_secret)
    assert keys.derivations == before + 3
    assert (await keys.verify(key)).key_id == record.id


async def test_malformed_keys_are_refused_without_a_lookup(nats_conn: NatsConnection) -> None:
    keys = ApiKeys(nats_conn)
    for key in (
        "",
        "nmk_",
        "nmk_xyz_abc",
        "nmk_0123456789AB_" + "a" * 43,
        "nmk_0123456789ab_" + "a" * 42,
        "nmk_0123456789ab_" + "a" * 42 + "!",
        "sk_live_0123",
        "nmk_0123456789ab_" + "a" * 500,
    ):
        assert (await refused(keys, key)).reason == "malformed"
    assert keys.derivations == 0


async def test_revocation_takes_effect_on_the_next_call_on_every_process(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with (
        connected(tmp_path / "a", nats_server.url) as conn_a,
        connected(tmp_path / "b", nats_server.url) as conn_b,
    ):
        admin, server = ApiKeys(conn_a), ApiKeys(conn_b)
        try:
            key, record = await admin.create("laptop", ["agent"])
            assert (await server.verify(key)).subject == "laptop"  # made elsewhere a moment ago: read through
            assert (await server.verify(key)).subject == "laptop"  # now in server's scrypt cache
            reads = server.reads
            for _ in range(5):
                await server.verify(key)
            assert server.reads == reads, "checks of a known key read the watched copy, not the bucket"
            assert server.derivations == 1
            revoked, changed = await admin.revoke(record.id)
            assert changed and revoked.revoked and revoked.revoked_at is not None
            assert (await refused(admin, key)).reason == "revoked"  # the revoking process: at once

            async def server_refuses() -> bool:
                try:
                    await server.verify(key)
                except AuthenticationError as exc:
                    return exc.reason == "revoked"  # anything else fails the wait, and the assertion below
                return False

            await wait_for(server_refuses, 10, message="the other process never saw the revocation")
            assert (await refused(server, key)).reason == "revoked"
            assert server.reads == reads
            again, changed = await admin.revoke(record.id)
            assert not changed and again.revoked
        finally:
            await admin.aclose()
            await server.aclose()


async def test_an_expired_key_is_refused(nats_conn: NatsConnection) -> None:
    clock = Clock()
    keys = ApiKeys(nats_conn, clock=clock)
    key, record = await keys.create("temp", ["agent"], ttl_s=3600)
    assert record.expires == clock.now + 3600
    assert await keys.verify(key)
    clock.now += 3601
    assert (await refused(keys, key)).reason == "expired"
    assert (await keys.get(record.id)) is not None
    assert (await keys.get(record.id)).status(clock.now) == "expired"  # type: ignore[union-attr]


async def test_listing_never_shows_secrets_or_hashes(nats_conn: NatsConnection) -> None:
    keys = ApiKeys(nats_conn)
    assert await keys.records() == []
    key1, r1 = await keys.create("one", ["agent"])
    key2, r2 = await keys.create("two", ["admin"], namespaces=["ops"])
    await keys.revoke(r1.id)
    listed = [r.public() for r in await keys.records()]
    assert [row["id"] for row in listed] == [r1.id, r2.id]
    assert [row["status"] for row in listed] == ["revoked", "active"]
    text = repr(listed)
    for secret in (key1, key2, key1[17:], key2[17:]):
        assert secret not in text
    assert all("hash" not in row and "salt" not in row for row in listed)


async def test_bad_requests_are_refused(nats_conn: NatsConnection) -> None:
    keys = ApiKeys(nats_conn)
    with pytest.raises(ApiKeyError, match="no API key"):
        await keys.revoke("0123456789ab")
    with pytest.raises(ApiKeyError, match="no API key"):
        await keys.revoke("not-an-id")
    with pytest.raises(ApiKeyError, match="invalid key name"):
        await keys.create("bad name", ["agent"])
    with pytest.raises(ApiKeyError, match="at least one role"):
        await keys.create("ok", [])
    with pytest.raises(ApiKeyError, match="invalid role"):
        await keys.create("ok", ["a b"])
    with pytest.raises(ApiKeyError, match="namespace"):
        await keys.create("ok", ["agent"], namespaces=["Bad.NS"])


async def test_nats_down_is_unavailable(tmp_path: Path, nats_server: NatsServer) -> None:
    async with connected(tmp_path, nats_server.url) as conn:
        keys = ApiKeys(conn)
        try:
            key, _ = await keys.create("svc", ["agent"])
            assert await keys.verify(key)  # the watched copy holds it, its secret is in the scrypt cache
            nats_server.stop()
            await wait_for(lambda: not conn.connected, 10, message="the client never noticed the server is gone")
            # The copy may be stale now (a revocation could be stored on another server): never trusted.
            assert (await refused(keys, key)).reason == "unavailable"
            nats_server.start()
            await wait_for(lambda: conn.connected, 30, message="no reconnection")
            assert await keys.verify(key)  # read through while the watch reloads

            async def served_from_the_copy() -> bool:
                before = keys.reads
                await keys.verify(key)
                return keys.reads == before

            await wait_for(served_from_the_copy, 30, message="the watch never resumed")
        finally:
            await keys.aclose()


async def test_nothing_secret_in_logs(nats_conn: NatsConnection, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    keys = ApiKeys(nats_conn, clock=clock)
    key, record = await keys.create("audited", ["agent"], ttl_s=60)
    attempts = [key, key[:-3] + "xyz", f"nmk_aaaaaaaaaaaa{key[16:]}", key + "junk"]
    await keys.verify(key)
    for attempt in attempts[1:]:
        await refused(keys, attempt)
    clock.now += 61
    await refused(keys, key)
    await keys.revoke(record.id)
    await refused(keys, key)
    assert "API key refused" in caplog.text and record.id in caplog.text
    for attempt in attempts:
        assert attempt not in caplog.text
        assert attempt[17:] not in caplog.text  # the secret part alone
