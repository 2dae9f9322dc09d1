"""The differential test of the own 2026-07-28 HTTP path (transports/http/modern.py): generated stateless requests
POSTed to two ``/mcp`` apps, one answering the hot requests through api/direct.py and one through the SDK's
single-exchange entry, must be answered alike (status, content type, body).

Two in-process servers, each as ``nats-mcp serve --transport http --insecure-dev`` builds it (the runtime, the guard
with a policy that refuses some calls, the audit log, the gate, uvicorn on a loopback socket), in two namespaces of
one nats-server prepared alike: one with ``own_dispatch=False``, one with it on. The same requests go to both: every
tool with arguments generated from its input schema (tests/support/differential.py, as on stdio), valid calls, tool
errors, policy refusals, unknown tools, params of the wrong shapes, ids of several JSON types and invalid ones, bad
envelopes, mismatched and duplicated routing headers, a mismatched ``Mcp-Param-*`` header, a foreign Origin, the
wrong ``Accept``; and requests the own path leaves to the SDK (a progress token, ``tools/list``, a notification).
Then the Python SDK client, which speaks 2026-07-28, calls a tool that fails and one that does not exist through
the own path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.routing import Route

from nats_mcp.api.server import Security, build_server
from nats_mcp.runtime import Runtime
from nats_mcp.security.authn.apikeys import ApiKeys
from nats_mcp.security.authn.chain import Authenticator
from nats_mcp.security.policy import Policy, parse_policy
from nats_mcp.transports.http.app import (
    GatewayVerifier,
    InsecureDev,
    PrincipalSource,
    QuietServer,
    build_http_app,
    gateway_caller,
)
from nats_mcp.transports.http.modern import ModernCalls
from nats_mcp.transports.http.protocol import ProtocolGate
from tests.support.differential import CAPABILITIES, ENVELOPE, POLICY, generated_calls, normalised
from tests.support.env import settings_for
from tests.support.http_server import mcp_client
from tests.support.natsserver import NatsServer
from tests.support.sse import sse_events

NAMESPACES = {"sdk": "hdiff-sdk", "own": "hdiff-own", "keyed": "hdiff-keyed", "roam": "hdiff-own"}
"""``roam``: a second process of ``own``'s namespace, which restores ``own``'s sessions from NATS."""
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
UNLIMITED = {
    f"NATS_MCP_SECURITY_RATE_PER_{who}_{what}": value
    for who in ("PRINCIPAL", "ADDRESS")
    for what, value in (("RATE_PER_S", "1000000"), ("BURST", "10000000"))
}


def modern_of(app: Starlette) -> ModernCalls | None:
    """The own path's wrapper inside ``/mcp``'s protocol gate, if the app has one."""
    for route in app.router.routes:
        if isinstance(route, Route) and isinstance(route.endpoint, ProtocolGate):
            inner = route.endpoint.app
            return inner if isinstance(inner, ModernCalls) else None
    raise AssertionError("no protocol gate on /mcp")


def modern_of_keyed(app: Starlette) -> ModernCalls:
    """The own path inside the bearer check and the protocol gate of an authenticated app."""
    for route in app.router.routes:
        if isinstance(route, Route) and isinstance(route.endpoint, RequireAuthMiddleware):
            gate = route.endpoint.app
            assert isinstance(gate, ProtocolGate) and isinstance(gate.app, ModernCalls)
            return gate.app
    raise AssertionError("no bearer check on /mcp")


@contextlib.asynccontextmanager
async def side(
    tmp_path: Path, nats_server: NatsServer, name: str, own: bool, keys: list[str] | None = None
) -> AsyncIterator[tuple[str, Starlette]]:
    """One server as ``serve --transport http --insecure-dev`` builds it: (its /mcp URL, its app); with ``keys``, as
    ``serve --transport http`` does, with an API key (role ``agent``) created into ``keys``."""
    home = tmp_path / name
    home.mkdir()
    config = settings_for(  # one project directory: the same project id on both sides
        home,
        NATS_URL=nats_server.url,
        NATS_MCP_NAMESPACE=NAMESPACES[name],
        MCP_PROJECT_PATH=str(tmp_path),
        NATS_MCP_SECURITY_AUDIT_FILE=str(home / "audit.jsonl"),
        **UNLIMITED,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    async with Runtime(config, Policy(parse_policy(POLICY)), transport="http", observe=False) as runtime:
        assert await runtime.conn.wait_connected(10)
        coordinator = runtime.coordinator
        url = f"http://127.0.0.1:{port}/mcp"
        source: PrincipalSource = InsecureDev(runtime.guard, config)
        verifier = None
        authenticator = None
        if keys is not None:
            keys.append((await ApiKeys(runtime.conn).create("differ", ["agent"]))[0])
            authenticator = Authenticator.from_settings(config, runtime.conn, dev_audiences=[url])
            source = verifier = GatewayVerifier(runtime.guard, authenticator, url, config)
        security = Security(runtime.guard, source.current, "http", coordinator.layout.namespace)
        server = build_server(coordinator, gateway_caller(source, coordinator.touch), "warp_", security)
        nats = (runtime.conn, coordinator.layout)
        app = build_http_app(server, config, port, verifier, runtime.guard.audit, nats=nats, own_dispatch=own)
        web = QuietServer(uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False))
        serving = asyncio.create_task(web.serve(sockets=[sock]))
        try:
            await asyncio.wait_for(web.listening.wait(), 30)
            yield url, app
        finally:
            web.stop()
            await serving
            if authenticator is not None:
                await authenticator.aclose()


def enveloped(params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(params or {}), "_meta": {**((params or {}).get("_meta") or {}), **ENVELOPE}}


def call(request_id: Any, tool: str, args: Any = None, **meta: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool}
    if args is not None:
        params["arguments"] = args
    shaped = enveloped(params)
    shaped["_meta"].update(meta)
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": shaped}


Post = tuple[str, Any, list[tuple[str, str]]]
"""(label, body: a JSON value or raw text, extra headers)."""


def script() -> list[Post]:
    """The requests, in order; the domain ones first (their answers depend on what came before)."""
    posts: list[Post] = []
    n = 0

    def add(label: str, body: Any, *headers: tuple[str, str]) -> None:
        posts.append((label, body, list(headers)))

    def rid() -> Any:
        nonlocal n
        n += 1
        return n if n % 2 else f"r-{n}"

    add("ping", {"jsonrpc": "2.0", "id": rid(), "method": "ping", "params": enveloped()})
    add(
        "ping+progress",
        {"jsonrpc": "2.0", "id": rid(), "method": "ping", "params": enveloped({"_meta": {"progressToken": 3}})},
    )
    add("tools/list", {"jsonrpc": "2.0", "id": rid(), "method": "tools/list", "params": enveloped()})
    add("register", call(rid(), "warp_registry_register", {"agentType": "differ", "capabilities": CAPABILITIES}))
    add("send", call(rid(), "warp_channels_send", {"channel": "roadmap", "message": "hello"}))
    add("read", call(rid(), "warp_channels_read", {"channel": "roadmap", "limit": 5}))
    add("tool error", call(rid(), "warp_channels_read", {"channel": "no-such-channel"}))
    add("policy refusal", call(rid(), "warp_channels_send", {"channel": "errors", "message": "x"}))
    add("denied tool", call(rid(), "warp_dlq_discard", {"itemId": "00000000-0000-4000-8000-000000000000"}))
    add(
        "broadcast",
        call(rid(), "warp_work_broadcast", {"taskId": "t1", "description": "d", "requiredCapability": "diff"}),
    )
    add("claim", call(rid(), "warp_work_claim", {"capability": "diff", "timeout": 0}))
    add("waiting claim", call(rid(), "warp_work_claim", {"capability": "idle", "timeout": 300}))
    add("unknown tool", call(rid(), "warp_no_such_tool", {}))
    add("long name", call(rid(), "x" * 200))
    for i, params in enumerate(
        (
            {},
            {"name": 5},
            {"name": "warp_handle_get", "arguments": "str"},
            {"name": "warp_handle_get", "arguments": None},
        )
    ):
        add(f"bad params {i}", {"jsonrpc": "2.0", "id": rid(), "method": "tools/call", "params": enveloped(params)})
    handle = enveloped({"name": "warp_handle_get"})
    for i, request_id in enumerate((0, "", 9007199254740993, -1.5, [1], None, {"a": 1}, True)):
        add(f"id {i}", {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": handle})
    add("params a list", {"jsonrpc": "2.0", "id": rid(), "method": "tools/call", "params": [1]})
    add("no params", {"jsonrpc": "2.0", "id": rid(), "method": "tools/call"})
    add("no envelope", {"jsonrpc": "2.0", "id": rid(), "method": "tools/call", "params": {"name": "warp_handle_get"}})
    version_only = {"name": "warp_handle_get", "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}}
    add("envelope short", {"jsonrpc": "2.0", "id": rid(), "method": "tools/call", "params": version_only})
    other = {**ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2025-11-25"}
    add("envelope other era", {"jsonrpc": "2.0", "id": rid(), "method": "ping", "params": {"_meta": other}})
    add("no jsonrpc", {"id": rid(), "method": "ping", "params": enveloped()})
    add("method header", call(rid(), "warp_handle_get"), ("mcp-method", "tools/list"))
    add("name header", call(rid(), "warp_handle_get"), ("mcp-name", "warp_other"))
    add("twice", call(rid(), "warp_handle_get"), ("+mcp-protocol-version", MODERN))
    add(
        "param header",
        call(rid(), "warp_channels_send", {"channel": "roadmap", "message": "m"}),
        ("mcp-param-channel", "x"),
    )
    add("origin", call(rid(), "warp_handle_get"), ("origin", "http://evil.example"))
    add("json only", call(rid(), "warp_handle_get"), ("accept", "application/json"))
    add("sse only", call(rid(), "warp_handle_get"), ("accept", "text/event-stream"))
    add("text body", call(rid(), "warp_handle_get"), ("content-type", "text/plain"))
    add("notification", {"jsonrpc": "2.0", "method": "tools/call", "params": handle})
    add("raw", '{"jsonrpc": "2.0", "id": 77, "method": "ping", "params": {"_meta": ' + json.dumps(ENVELOPE) + "}}")
    for tool, args in generated_calls():
        add(f"generated {tool}", call(rid(), tool, args))
    return posts


def routing(body: Any) -> dict[str, str]:
    """The routing headers a 2026-07-28 client sends for ``body`` (``Mcp-Method``, and ``Mcp-Name`` of a call)."""
    if not isinstance(body, dict) or not isinstance(body.get("method"), str):
        return {}
    found = {"mcp-method": body["method"]}
    params = body.get("params")
    if body["method"] == "tools/call" and isinstance(params, dict) and isinstance(params.get("name"), str):
        found["mcp-name"] = params["name"]
    return found


async def post(hc: httpx2.AsyncClient, url: str, item: Post, session: str | None = None) -> dict[str, Any]:
    """One POST; its answer as compared: status, content type, body (JSON, the SSE events' data, or the text).

    Extra headers replace the usual ones of their name; a name starting with ``+`` is sent besides them.
    ``session``: a 2025-11-25 session's id (no routing headers then)."""
    _, body, extra = item
    if session is not None:
        usual = {**HEADERS, "mcp-protocol-version": LEGACY, "mcp-session-id": session}
    else:
        usual = {
            **HEADERS,
            "mcp-protocol-version": MODERN,
            **routing(body if not isinstance(body, str) else json.loads(body)),
        }
    replaced = {k for k, _ in extra if not k.startswith("+")}
    headers = [(k, v) for k, v in usual.items() if k not in replaced] + [(k.lstrip("+"), v) for k, v in extra]
    content = body if isinstance(body, str) else json.dumps(body)
    response = await hc.post(url, content=content.encode(), headers=headers)
    kind = response.headers.get("content-type", "")
    answer: Any = response.text
    if kind.startswith("application/json") and response.text:
        answer = response.json()
    elif kind.startswith("text/event-stream"):
        answer = [json.loads(e["data"]) for e in sse_events(response.text) if e.get("data")]
    session = response.headers.get("mcp-session-id")
    return {"status": response.status_code, "type": kind.split(";")[0], "body": answer, "session": session}


async def test_own_http_path_answers_as_the_sdk_does(tmp_path: Path, nats_server: NatsServer) -> None:
    posts = script()
    async with (
        side(tmp_path, nats_server, "sdk", own=False) as (sdk_url, sdk_app),
        side(tmp_path, nats_server, "own", own=True) as (own_url, own_app),
        httpx2.AsyncClient(timeout=30, trust_env=False) as hc,
    ):
        assert modern_of(sdk_app) is None
        own = modern_of(own_app)
        assert own is not None

        async def run(url: str, namespace: str) -> list[Any]:
            return [normalised(await post(hc, url, item), namespace) for item in posts]

        sdk_answers, own_answers = await asyncio.gather(
            run(sdk_url, NAMESPACES["sdk"]), run(own_url, NAMESPACES["own"])
        )
        differ = [
            f"{label}:\n  sdk {json.dumps(a)[:600]}\n  own {json.dumps(b)[:600]}"
            for (label, _, _), a, b in zip(posts, sdk_answers, own_answers, strict=True)
            if a != b
        ]
        assert not differ, f"{len(differ)} answers differ:\n" + "\n".join(differ[:8])
        hot = [p for p in posts if isinstance(p[1], dict) and p[1].get("method") in ("tools/call", "ping")]
        assert own.taken >= len(hot) - 6, (own.taken, len(hot))  # all but the progress token and the id-less ones
        errors = [a for a in own_answers if a["status"] != 200]
        assert len(errors) >= 10, "the script's refusals reached the checks"
        assert any(isinstance(a["body"], dict) and a["body"].get("result", {}).get("isError") for a in own_answers)

        # The Python SDK client (2026-07-28) through the own path: a tool error, an unknown tool.
        before = own.taken
        async with mcp_client(own_url) as client:
            failed = await client.call_tool("warp_channels_read", {"channel": "no-such-channel"})
            assert failed.is_error and "no-such-channel" in json.dumps(failed.model_dump(mode="json"))
            with pytest.raises(MCPError, match="warp_no_such_tool"):
                await client.call_tool("warp_no_such_tool", {})
        assert own.taken >= before + 2


async def test_authentication_stays_in_front_of_the_own_path(tmp_path: Path, nats_server: NatsServer) -> None:
    keys: list[str] = []
    async with (
        side(tmp_path, nats_server, "keyed", own=True, keys=keys) as (url, app),
        httpx2.AsyncClient(timeout=30, trust_env=False) as hc,
    ):
        own = modern_of_keyed(app)
        handle = ("set", call(1, "warp_handle_set", {"handle": "keyed"}), [])
        for credential in (None, "nmk_000000000000_" + "A" * 43):  # none; a well-formed key that does not exist
            extra = [("authorization", f"Bearer {credential}")] if credential else []
            refused = await post(hc, url, (handle[0], handle[1], extra))
            assert refused["status"] == 401, refused
        assert own.taken == 0  # refused before the own path saw anything
        bearer = [("authorization", f"Bearer {keys[0]}")]
        assert (await post(hc, url, ("set", handle[1], bearer)))["status"] == 200
        got = await post(hc, url, ("get", call(2, "warp_handle_get"), bearer))
        assert got["body"]["result"]["structuredContent"]["handle"] == "keyed"  # the key's agent, via the guard
        assert own.taken == 2
        foreign = await post(hc, url, ("origin", call(3, "warp_handle_get"), [*bearer, ("origin", "http://x.example")]))
        assert foreign["status"] == 403 and own.taken == 3  # taken, then refused by the SDK's Host/Origin check


def session_script() -> list[Post]:
    """The requests of a 2025-11-25 session (no envelope), in order, the domain ones first."""
    posts: list[Post] = []
    n = 0

    def add(label: str, body: Any, *headers: tuple[str, str]) -> None:
        posts.append((label, body, list(headers)))

    def rid() -> Any:
        nonlocal n
        n += 1
        return n if n % 2 else f"s-{n}"

    def tool(request_id: Any, name: str, args: Any = None, **meta: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name}
        if args is not None:
            params["arguments"] = args
        if meta:
            params["_meta"] = meta
        return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}

    add("ping", {"jsonrpc": "2.0", "id": rid(), "method": "ping"})
    add("ping+progress", {"jsonrpc": "2.0", "id": rid(), "method": "ping", "params": {"_meta": {"progressToken": 3}}})
    add("tools/list", {"jsonrpc": "2.0", "id": rid(), "method": "tools/list"})
    add("register", tool(rid(), "warp_registry_register", {"agentType": "differ", "capabilities": CAPABILITIES}))
    add("send", tool(rid(), "warp_channels_send", {"channel": "roadmap", "message": "hello"}))
    add("read", tool(rid(), "warp_channels_read", {"channel": "roadmap", "limit": 5}))
    add("tool error", tool(rid(), "warp_channels_read", {"channel": "no-such-channel"}))
    add("policy refusal", tool(rid(), "warp_channels_send", {"channel": "errors", "message": "x"}))
    add("denied tool", tool(rid(), "warp_dlq_discard", {"itemId": "00000000-0000-4000-8000-000000000000"}))
    add(
        "broadcast",
        tool(rid(), "warp_work_broadcast", {"taskId": "t", "description": "d", "requiredCapability": "diff"}),
    )
    add("claim", tool(rid(), "warp_work_claim", {"capability": "diff", "timeout": 0}))
    add("waiting claim", tool(rid(), "warp_work_claim", {"capability": "idle", "timeout": 300}))
    add("claim past the hold", tool(rid(), "warp_work_claim", {"capability": "late", "timeout": 900}))  # SSE
    add("unknown tool", tool(rid(), "warp_no_such_tool", {}))
    add("long name", tool(rid(), "x" * 200))
    add("meta", tool(rid(), "warp_handle_get", None, custom={"a": 1}))
    add("envelope", tool(rid(), "warp_handle_get", None, **ENVELOPE))  # left to the SDK
    for i, params in enumerate(({}, {"name": 5}, {"name": "warp_handle_get", "arguments": "str"}, [1])):
        add(f"bad params {i}", {"jsonrpc": "2.0", "id": rid(), "method": "tools/call", "params": params})
    for i, request_id in enumerate((0, "", 9007199254740993, -1.5, [1], None, {"a": 1}, True)):
        add(f"id {i}", tool(request_id, "warp_handle_get"))
    add("no params", {"jsonrpc": "2.0", "id": rid(), "method": "tools/call"})
    add("no jsonrpc", {"id": rid(), "method": "ping"})
    add("origin", tool(rid(), "warp_handle_get"), ("origin", "http://evil.example"))
    add("json only", tool(rid(), "warp_handle_get"), ("accept", "application/json"))
    add("sse only", tool(rid(), "warp_handle_get"), ("accept", "text/event-stream"))
    add("text body", tool(rid(), "warp_handle_get"), ("content-type", "text/plain"))
    add("no session", tool(rid(), "warp_handle_get"), ("mcp-session-id", "0" * 32))
    add("notification", {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1}})
    add("raw", '{"jsonrpc": "2.0", "id": 77, "method": "ping"}')
    for name, args in generated_calls():
        add(f"generated {name}", tool(rid(), name, args))
    return posts


async def open_session(hc: httpx2.AsyncClient, url: str) -> str:
    """A 2025-11-25 session opened as a client opens it (initialize, then its notification): its id."""
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "differ", "version": "1"}},
    }
    opened = await hc.post(url, json=init, headers=HEADERS)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    done = ("initialized", {"jsonrpc": "2.0", "method": "notifications/initialized"}, [])
    assert (await post(hc, url, done, session))["status"] == 202
    return session


async def test_own_session_path_answers_as_the_sdk_does(tmp_path: Path, nats_server: NatsServer) -> None:
    """2025-11-25 sessions (transports/http/session_calls.py): the same requests in a session on each app, answered
    alike; the session restored on another process answered by the path there; the Python SDK client through it."""
    posts = session_script()
    async with (
        side(tmp_path, nats_server, "sdk", own=False) as (sdk_url, sdk_app),
        side(tmp_path, nats_server, "own", own=True) as (own_url, own_app),
        httpx2.AsyncClient(timeout=30, trust_env=False) as hc,
    ):
        assert getattr(sdk_app.state, "session_hot", None) is None
        hot = own_app.state.session_hot
        sessions = {sdk_url: await open_session(hc, sdk_url), own_url: await open_session(hc, own_url)}

        async def run(url: str, namespace: str) -> list[Any]:
            return [normalised(await post(hc, url, item, sessions[url]), namespace) for item in posts]

        sdk_answers, own_answers = await asyncio.gather(
            run(sdk_url, NAMESPACES["sdk"]), run(own_url, NAMESPACES["own"])
        )
        differ = [
            f"{label}:\n  sdk {json.dumps(a)[:600]}\n  own {json.dumps(b)[:600]}"
            for (label, _, _), a, b in zip(posts, sdk_answers, own_answers, strict=True)
            if a != b
        ]
        assert not differ, f"{len(differ)} answers differ:\n" + "\n".join(differ[:8])
        hot_posts = [p for p in posts if isinstance(p[1], dict) and p[1].get("method") in ("tools/call", "ping")]
        assert hot.taken >= len(hot_posts) - 16, (hot.taken, len(hot_posts))  # all but those refused before it
        streamed = own_answers[[p[0] for p in posts].index("claim past the hold")]
        assert streamed["type"] == "text/event-stream" and streamed["status"] == 200, streamed
        assert any(isinstance(a["body"], dict) and a["body"].get("result", {}).get("isError") for a in own_answers)

        # The session on a second process of the same namespace: restored from NATS, answered by the path there.
        async with side(tmp_path, nats_server, "roam", own=True) as (roam_url, roam_app):
            read = ("read", posts[[p[0] for p in posts].index("read")][1], [])
            here = normalised(await post(hc, own_url, read, sessions[own_url]), NAMESPACES["own"])
            there = normalised(await post(hc, roam_url, read, sessions[own_url]), NAMESPACES["own"])
            assert there == here and there["status"] == 200, (here, there)
            assert roam_app.state.session_hot.taken == 1

        # The Python SDK client in a 2025-11-25 session through the path: a tool error, an unknown tool.
        before = hot.taken
        async with mcp_client(own_url, mode="legacy") as client:
            failed = await client.call_tool("warp_channels_read", {"channel": "no-such-channel"})
            assert failed.is_error and "no-such-channel" in json.dumps(failed.model_dump(mode="json"))
            with pytest.raises(MCPError, match="warp_no_such_tool"):
                await client.call_tool("warp_no_such_tool", {})
        assert hot.taken >= before + 2
