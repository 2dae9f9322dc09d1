"""OAuth 2 token introspection (RFC 7662) against a real local authorization server that counts requests: active and
inactive tokens, exp/aud checks, client authentication, the cache (hit, expiry, bound) and no token in any log.

Time is a fake clock handed to the introspector: no sleeps.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import SecretStr

from nats_mcp.config.security import IntrospectionSettings
from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.introspection import Introspector
from nats_mcp.security.errors import AuthenticationError
from tests.support.introspection import CLIENT_ID, CLIENT_SECRET, NOW, RESOURCE, AuthServer, active


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def introspector(server: AuthServer, clock: Clock, secret: str = CLIENT_SECRET, **cfg: Any) -> Introspector:
    settings = IntrospectionSettings(
        url=server.url, client_id=CLIENT_ID, client_secret=SecretStr(secret), **{"cache_s": 30.0, **cfg}
    )
    return Introspector(settings, clock=clock, resource_urls=[RESOURCE])


async def reason(intro: Introspector, token: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        await intro.verify(token)
    assert not token or token not in str(info.value)
    return info.value.reason


async def test_an_active_token_maps_to_a_principal_and_is_cached(auth_server: AuthServer) -> None:
    auth_server.answers["opaque-1"] = active(scope="mcp:tools mcp:read", roles=["agent"], client_id="cli")
    intro = introspector(auth_server, Clock())
    try:
        principal = await intro.authenticate(Credentials(bearer="opaque-1", agent="w", peer="::1"))
        assert principal.subject == "carol"
        assert principal.issuer == "introspection:https://as.example.test"  # its own namespace (issue 19 #5)
        assert principal.method == "introspection"
        assert principal.scopes == {"mcp:tools", "mcp:read"}
        assert principal.groups == {"agent"}
        assert principal.agent == "w" and principal.peer == "::1"
        for _ in range(5):
            assert (await intro.verify("opaque-1")).subject == "carol"
        assert auth_server.hits == 1 and intro.requests == 1
        assert auth_server.query_strings == [""]  # the token travels in the form body only
    finally:
        await intro.aclose()


async def test_an_inactive_token_is_refused_and_not_cached(auth_server: AuthServer) -> None:
    intro = introspector(auth_server, Clock())
    try:
        assert await reason(intro, "revoked-token") == "inactive"
        assert await reason(intro, "revoked-token") == "inactive"
        assert auth_server.hits == 2 and intro.cached == 0
        auth_server.answers["odd"] = {"active": "true", "sub": "x"}  # not the JSON true: not active
        assert await reason(intro, "odd") == "inactive"
    finally:
        await intro.aclose()


async def test_cache_entries_expire_after_cache_s(auth_server: AuthServer) -> None:
    auth_server.answers["opaque-token-t"] = active()
    clock = Clock()
    intro = introspector(auth_server, clock, cache_s=30.0)
    try:
        await intro.verify("opaque-token-t")
        clock.now += 29
        await intro.verify("opaque-token-t")
        assert auth_server.hits == 1
        clock.now += 2
        auth_server.answers["opaque-token-t"] = {"active": False}  # revoked at the AS meanwhile
        assert await reason(intro, "opaque-token-t") == "inactive"
        assert auth_server.hits == 2
    finally:
        await intro.aclose()


async def test_a_token_is_never_cached_past_its_exp(auth_server: AuthServer) -> None:
    auth_server.answers["short"] = active(exp=NOW + 10)
    clock = Clock()
    intro = introspector(auth_server, clock, cache_s=300.0)
    try:
        await intro.verify("short")
        clock.now += 9
        await intro.verify("short")
        assert auth_server.hits == 1
        clock.now += 2  # past exp: the cached answer is gone, and the AS's stale "active" is not believed
        assert await reason(intro, "short") == "expired"
        assert auth_server.hits == 2
    finally:
        await intro.aclose()


async def test_the_cache_is_bounded_and_evicts_the_oldest(auth_server: AuthServer) -> None:
    for i in range(5):
        auth_server.answers[f"tok-{i}"] = active(sub=f"user-{i}")
    intro = introspector(auth_server, Clock(), cache_max=3)
    try:
        for i in range(5):
            await intro.verify(f"tok-{i}")
        assert intro.cached == 3 and auth_server.hits == 5
        await intro.verify("tok-4")  # recent: cached
        assert auth_server.hits == 5
        await intro.verify("tok-0")  # oldest: evicted, asked again
        assert auth_server.hits == 6 and intro.cached == 3
        assert all(f"tok-{i}".encode() not in key for key in intro._cache for i in range(5))  # hashes only
    finally:
        await intro.aclose()


async def test_audience_is_checked_when_configured(auth_server: AuthServer) -> None:
    aud = "https://mcp.example.test/mcp"
    auth_server.answers["ours"] = active(aud=[aud, "other"])
    auth_server.answers["theirs"] = active(aud="https://other.example.test")
    auth_server.answers["no-aud"] = {k: v for k, v in active().items() if k != "aud"}
    intro = introspector(auth_server, Clock(), audience=aud)
    try:
        assert (await intro.verify("ours")).subject == "carol"
        assert await reason(intro, "theirs") == "bad_audience"
        assert await reason(intro, "no-aud") == "bad_audience"  # fails closed
    finally:
        await intro.aclose()


async def test_expired_not_yet_valid_and_subjectless_answers_are_refused(auth_server: AuthServer) -> None:
    auth_server.answers["old"] = active(exp=NOW - 1)
    auth_server.answers["future"] = active(nbf=NOW + 100)
    auth_server.answers["nobody"] = {"active": True, "exp": NOW + 100, "aud": RESOURCE}
    auth_server.answers["weird-exp"] = active(exp="tomorrow")
    auth_server.answers["client"] = {"active": True, "client_id": "svc-1", "exp": NOW + 100, "aud": RESOURCE}
    intro = introspector(auth_server, Clock())
    try:
        assert await reason(intro, "old") == "expired"
        assert await reason(intro, "future") == "not_yet_valid"
        assert await reason(intro, "nobody") == "malformed"
        assert await reason(intro, "weird-exp") == "malformed"
        assert (await intro.verify("client")).subject == "client:svc-1"  # client-credentials token: its own kind
    finally:
        await intro.aclose()


async def test_authorization_server_failures_are_unavailable(auth_server: AuthServer) -> None:
    auth_server.answers["opaque-token-t"] = active()
    intro = introspector(auth_server, Clock(), secret="wrong-secret-value")
    try:
        assert await reason(intro, "opaque-token-t") == "unavailable"  # our client credentials refused (HTTP 401)
    finally:
        await intro.aclose()
    auth_server.status = 500
    intro = introspector(auth_server, Clock())
    try:
        assert await reason(intro, "opaque-token-t") == "unavailable"
    finally:
        await intro.aclose()


async def test_an_unreachable_authorization_server_is_unavailable(auth_server: AuthServer) -> None:
    url = auth_server.url
    gone = AuthServer(url=url.replace("/introspect", "/nowhere"))  # 404/405 from the live server
    intro = introspector(gone, Clock())
    try:
        assert await reason(intro, "opaque-token-t") == "unavailable"
    finally:
        await intro.aclose()


async def test_oversize_tokens_are_refused_unsent(auth_server: AuthServer) -> None:
    intro = introspector(auth_server, Clock())
    try:
        assert await reason(intro, "x" * 20_000) == "malformed"
        assert await reason(intro, "") == "malformed"
        assert auth_server.hits == 0
    finally:
        await intro.aclose()


async def test_no_token_or_client_secret_in_logs(auth_server: AuthServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = ["secret-opaque-token-AAAA", "secret-opaque-token-BBBB", "secret-opaque-token-CCCC"]
    auth_server.answers[tokens[1]] = active(exp=NOW - 5)
    auth_server.answers[tokens[2]] = active(aud="elsewhere")
    intro = introspector(auth_server, Clock(), audience="here")
    try:
        for tok in tokens:
            await reason(intro, tok)
    finally:
        await intro.aclose()
    intro = introspector(auth_server, Clock(), secret="another-secret-value-xyz")
    try:
        await reason(intro, tokens[0])
    finally:
        await intro.aclose()
    assert caplog.records
    for secret in (*tokens, CLIENT_SECRET, "another-secret-value-xyz"):
        assert secret not in caplog.text


def test_the_endpoint_must_be_https_off_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        Introspector(IntrospectionSettings(url="http://as.example.test/introspect"))
    with pytest.raises(ValueError, match="not set"):
        Introspector(IntrospectionSettings())


async def test_audience_defaults_to_this_servers_resource_url(auth_server: AuthServer) -> None:
    # issue 19 #4: a token the authorization server issued for another API is not accepted here (no passthrough)
    auth_server.answers["for-us"] = active()
    auth_server.answers["for-another-api"] = active(aud="https://billing.example.test/api")
    auth_server.answers["for-nobody"] = {k: v for k, v in active().items() if k != "aud"}
    intro = introspector(auth_server, Clock())
    try:
        assert intro.audiences == {RESOURCE}
        assert (await intro.verify("for-us")).subject == "carol"
        assert await reason(intro, "for-another-api") == "bad_audience"
        assert await reason(intro, "for-nobody") == "bad_audience"
    finally:
        await intro.aclose()
    with pytest.raises(ValueError, match="audience"):  # nothing to compare with: refused at start, not open
        Introspector(IntrospectionSettings(url=auth_server.url))


async def test_subjects_and_issuers_of_answers_never_collide_with_another_kind_or_provider(
    auth_server: AuthServer,
) -> None:
    # issue 19 #5: a client-only token "alice" is not the user "alice"; iss "apikey" is not the API key "alice"
    auth_server.answers["user"] = active(sub="alice")
    auth_server.answers["client-only"] = {**active(), "client_id": "alice"} | {"sub": None}
    auth_server.answers["username-only"] = {**active(), "username": "alice"} | {"sub": None}
    auth_server.answers["as-apikey"] = active(sub="alice", iss="apikey")
    auth_server.answers["as-mtls"] = active(sub="spiffe://example.org/agent/alice", iss="mtls")
    auth_server.answers["prefixed-sub"] = active(sub="client:alice")
    auth_server.answers["no-iss"] = {k: v for k, v in active(sub="alice").items() if k != "iss"}
    intro = introspector(auth_server, Clock())
    try:
        user = await intro.verify("user")
        client = await intro.verify("client-only")
        username = await intro.verify("username-only")
        assert (user.subject, client.subject, username.subject) == ("alice", "client:alice", "username:alice")
        assert len({user.key, client.key, username.key}) == 3
        apikey = await intro.verify("as-apikey")
        assert apikey.issuer == "introspection:apikey" and apikey.method == "introspection"
        assert (await intro.verify("as-mtls")).issuer == "introspection:mtls"
        assert (await intro.verify("no-iss")).issuer == "introspection:" + auth_server.url
        # a sub spelled like another kind could not be told apart from it: refused, and not cached
        assert await reason(intro, "prefixed-sub") == "malformed"
    finally:
        await intro.aclose()
    from nats_mcp.security.principal import Principal

    key = Principal(subject="alice", issuer="apikey", method="apikey")
    assert all(p.key != key.key for p in (user, client, username, apikey))
