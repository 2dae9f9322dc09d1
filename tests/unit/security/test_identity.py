"""Credentials -> one request identity (principal, agent, credential kind), resolved once, carried with the request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.config.security import SecuritySettings
from nats_mcp.config.settings import Settings
from nats_mcp.coord.errors import Forbidden, NotRegistered
from nats_mcp.security import identity
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.apikeys import KEY_PREFIX, ApiKeys
from nats_mcp.security.authn.chain import Authenticator
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.guard import Guard
from nats_mcp.security.identity import Caller, Identity, Resolver, local_principal
from nats_mcp.security.policy import Policy
from nats_mcp.security.principal import Principal, agent_guid
from nats_mcp.transports.http.auth import AGENT_HEADER, GatewayVerifier, RequestFacts, gateway_caller
from tests.support.env import settings_for


class Records:
    def __init__(self) -> None:
        self.seen: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.seen.append(event)


class Counting:
    """A provider that accepts any bearer as subject ``alice`` and counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    async def authenticate(self, credentials: Credentials) -> Principal:
        self.calls += 1
        return Principal(
            subject="alice",
            issuer="test",
            method="jwt",
            roles=frozenset({"agent"}),
            agent=credentials.agent,
            peer=credentials.peer,
        )


class Presence:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.left: list[str] = []

    def __call__(self, caller: Caller) -> None:
        self.seen.append(caller.guid)

    async def leave(self, caller: Caller) -> None:
        self.left.append(caller.guid)


def guard_with(records: Records, settings: Settings) -> Guard:
    return Guard(settings.security, Policy.load(None), records)  # type: ignore[arg-type]


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def chain(tmp_path: Path) -> Authenticator:
    """The real chain with API keys on (a connection never started: a malformed key is refused before any read)."""
    return Authenticator(apikeys=ApiKeys(NatsConnection(settings_for(tmp_path, NATS_URL="nats://127.0.0.1:1"))))


async def test_resolve_authenticates_once_and_binds_the_agent(settings: Settings) -> None:
    records, provider = Records(), Counting()
    resolver = Resolver.from_settings(guard_with(records, settings), settings, "http")
    found = await resolver.resolve(provider, Credentials(bearer="a.b.c", peer="10.0.0.7", agent="bot"))
    assert provider.calls == 1
    assert (found.transport, found.credential, found.peer, found.refusal) == ("http", "jwt", "10.0.0.7", None)
    assert found.principal.agent == "bot"
    caller = found.acting()
    assert caller.guid == agent_guid(found.principal, "bot")
    assert (caller.namespace, caller.project_id) == (settings.resolved_namespace, settings.resolved_project_id)
    assert records.seen == []  # a success leaves no authentication record (the calls are audited by the guard)


async def test_an_agent_name_the_policy_refuses_is_a_forbidden_identity_not_an_authentication_failure(
    settings: Settings,
) -> None:
    resolver = Resolver.from_settings(guard_with(Records(), settings), settings, "grpc")
    found = await resolver.resolve(Counting(), Credentials(bearer="opaque", agent="not a name!"))
    assert found.caller is None
    assert found.refusal is not None and "agent name" in found.refusal
    with pytest.raises(Forbidden) as refused:
        found.acting()
    assert refused.value.code == "forbidden"
    assert refused.value.message == found.refusal


@pytest.mark.parametrize(
    ("credentials", "reason", "method"),
    [
        (Credentials(api_key=KEY_PREFIX + "not-a-key"), "malformed", "api_key"),  # malformed key
        (Credentials(bearer=KEY_PREFIX + "0123456789ab_short"), "malformed", "api_key"),  # a key sent as bearer
        (Credentials(bearer="nmx_0123456789ab_" + "A" * 43), "malformed", "bearer"),  # wrong prefix: opaque
        (Credentials(bearer=""), "missing_credentials", "none"),  # empty bearer
        (Credentials(bearer="eyJub3Qi.anNvbg.c2ln"), "malformed", "jwt"),  # JWT-looking garbage, no verifier
    ],
)
async def test_refused_credentials_raise_once_audited(
    settings: Settings, chain: Authenticator, credentials: Credentials, reason: str, method: str
) -> None:
    records = Records()
    resolver = Resolver.from_settings(guard_with(records, settings), settings, "http")
    with pytest.raises(AuthenticationError) as refused:
        await resolver.resolve(chain, credentials)
    assert refused.value.reason == reason
    assert [(e.kind, e.reason, e.method) for e in records.seen] == [("auth_failure", reason, method)]


async def test_a_denied_address_is_refused_before_any_provider_runs() -> None:
    records, provider = Records(), Counting()
    guard = Guard(SecuritySettings(ip_deny=["10.9.0.0/16"]), Policy.load(None), records)  # type: ignore[arg-type]
    resolver = Resolver(guard, "team", "0123456789abcdef", "grpc")
    with pytest.raises(AuthenticationError) as refused:
        await resolver.resolve(provider, Credentials(bearer="opaque", peer="10.9.1.2"))
    assert refused.value.reason == "address_denied"
    assert provider.calls == 0
    assert [(e.kind, e.reason) for e in records.seen] == [("denied", "address_denied")]


def test_anonymous_and_local_identities(settings: Settings) -> None:
    resolver = Resolver.from_settings(guard_with(Records(), settings), settings, "http")
    dev = resolver.anonymous("127.0.0.1", "bot")
    assert (dev.principal.subject, dev.principal.method, dev.principal.agent, dev.peer) == (
        "insecure-dev",
        "anonymous",
        "bot",
        "127.0.0.1",
    )
    assert dev.acting().guid == agent_guid(dev.principal, "bot")
    local = local_principal(settings.security)
    assert (local.subject, local.issuer, local.method) == (settings.security.local.subject, "local", "local")


async def test_current_is_the_entered_identity_of_this_context_only(settings: Settings) -> None:
    resolver = Resolver.from_settings(guard_with(Records(), settings), settings, "grpc")
    found = resolver.anonymous(None, None)

    async def inside() -> Identity:
        identity.enter(found)
        return identity.current()

    assert await asyncio.create_task(inside()) is found
    with pytest.raises(NotRegistered) as missing:
        identity.current("no call here")  # the task's entry did not leak into this context
    assert missing.value.message == "no call here"


# ---- the HTTP transport: one resolution per request -------------------------------------------------------------

Handler = Callable[[GatewayVerifier], Awaitable[Any]]


async def http_request(app: RequestFacts, agent: str | None = None) -> list[dict[str, Any]]:
    """One request through the outermost middleware, in its own task (as uvicorn runs each request)."""
    headers = [(AGENT_HEADER.encode(), agent.encode())] if agent else []
    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": headers, "client": ("10.1.2.3", 5)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
    return sent


def gateway(verifier: GatewayVerifier, token: str, work: Handler, out: list[Any]) -> RequestFacts:
    """RequestFacts around an app that checks ``token`` as the SDK does, then runs ``work`` as a tool handler."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        access = await verifier.verify_token(token)
        status = 401 if access is None else 200
        if access is not None:
            out.append(await work(verifier))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return RequestFacts(app, None)


async def test_an_http_request_is_authenticated_once_however_often_its_handlers_ask(settings: Settings) -> None:
    records, provider, presence = Records(), Counting(), Presence()
    verifier = GatewayVerifier(guard_with(records, settings), provider, "http://127.0.0.1:1/mcp", settings)
    caller = gateway_caller(verifier, presence)

    async def handler(v: GatewayVerifier) -> tuple[Principal, Principal, Caller, Caller]:
        return v.current(), v.current(), await caller(), await caller()

    out: list[Any] = []
    await http_request(gateway(verifier, "opaque-1", handler, out), agent="bot")
    first, again, acting, acting_again = out[0]
    assert provider.calls == 1  # one lookup per request, whatever reads the principal or the caller
    assert first is again and acting == acting_again
    assert (first.agent, first.peer) == ("bot", "10.1.2.3")
    assert acting.guid == agent_guid(first, "bot")
    assert presence.seen == [acting.guid, acting.guid]
    await http_request(gateway(verifier, "opaque-1", handler, out), agent="other")
    assert provider.calls == 2  # the next request resolves its own identity, with its own agent header
    assert out[1][0].agent == "other"
    with pytest.raises(NotRegistered) as missing:
        verifier.current()  # outside a request
    assert missing.value.message == "this request carries no verified credential"


@pytest.mark.parametrize(
    ("token", "description"),
    [
        (KEY_PREFIX + "nope", f"malformed API key (expected {KEY_PREFIX}<id>_<secret>)"),
        (
            "nmx_0123456789ab_" + "A" * 43,
            f"malformed bearer token (neither an {KEY_PREFIX} API key nor a token this server can check)",
        ),
        (
            "eyJub3Qi.anNvbg.c2ln",
            f"malformed bearer token (neither an {KEY_PREFIX} API key nor a token this server can check)",
        ),
    ],
)
async def test_a_refused_bearer_says_why_in_its_401_and_is_audited_once(
    settings: Settings, chain: Authenticator, token: str, description: str
) -> None:
    records = Records()
    verifier = GatewayVerifier(guard_with(records, settings), chain, "http://127.0.0.1:1/mcp", settings)
    from nats_mcp.transports.http import auth

    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert await verifier.verify_token(token) is None
        seen.append(auth.exchange().refusal)
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await http_request(RequestFacts(app, records))
    assert seen == [description]
    assert [(e.kind, e.reason, e.peer) for e in records.seen] == [("auth_failure", "malformed", "10.1.2.3")]
