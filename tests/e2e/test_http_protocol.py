"""Boundary of the HTTP protocol gate: versions, batches per revision and sessions per principal, on real processes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.http_server import INIT, MCP_HEADERS, api_key, http_client, mcp_client, policy_file, serving
from tests.support.natsserver import NatsServer, wait_for
from tests.support.node import node22
from tests.support.resend import call
from tests.support.sse import sse_events
from tests.support.ts_client import SUCCESS_CALL, TsClient
from tests.support.work_tools import broadcast, register

pytestmark = pytest.mark.slow

EVENT_ID = r"[0-9a-f]{32}-[0-9a-f]{8}-[0-9]+"


def count(event_id: str) -> int:
    """Where an event is among those one process stored for its session (ids are ``<stream>-<origin>-<n>``)."""
    return int(event_id.rpartition("-")[2])


OLD_INIT: dict[str, Any] = dict(INIT, params=dict(INIT["params"], protocolVersion="2025-03-26"))


def messages(response: httpx2.Response) -> list[Any]:
    """The JSON-RPC messages of a response: its JSON body, or each SSE event's data."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:") and line[5:]]
    return [response.json()]


async def open_session(hc: httpx2.AsyncClient, url: str, body: dict[str, Any] = INIT) -> httpx2.Response:
    return await hc.post(url, json=body, headers=MCP_HEADERS)


async def test_unsupported_versions_and_batches_per_revision(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {"NATS_MCP_NAMESPACE": "team-proto", "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    key, _ = await api_key(tmp_path, nats_server.url, "proto", "agent")
    async with serving(tmp_path, "proto", nats_server.url, **env) as server, http_client(key) as hc:
        # an MCP-Protocol-Version this server does not speak: 400 naming the ones it does
        for method in ("POST", "GET"):
            refused = await hc.request(
                method,
                server.url,
                json=INIT if method == "POST" else None,
                headers=dict(MCP_HEADERS, **{"mcp-protocol-version": "1999-01-01"}),
            )
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["code"] == -32022
            assert error["data"] == {
                "supported": ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"],
                "requested": "1999-01-01",
            }
            assert "1999-01-01" in error["message"] and "2025-11-25" in error["message"]

        # a 2025-11-25 session: a batch is a clear Invalid Request, not a validation dump
        opened = await open_session(hc, server.url)
        assert opened.status_code == 200
        session = opened.headers["mcp-session-id"]
        new = dict(MCP_HEADERS, **{"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})
        ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
        refused = await hc.post(server.url, json=[ping], headers=new)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == -32600
        assert "batches are not part of MCP protocol revision 2025-11-25" in error["message"]
        assert "validation" not in refused.text.lower()

        # a 2025-03-26 session (its requests carry no version header): a batch is served, its answers in one array
        opened = await open_session(hc, server.url, OLD_INIT)
        assert opened.status_code == 200
        assert messages(opened)[0]["result"]["protocolVersion"] == "2025-03-26"
        old = dict(MCP_HEADERS, **{"mcp-session-id": opened.headers["mcp-session-id"]})
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await hc.post(server.url, json=[initialized], headers=old)).status_code == 202  # notifications only
        batch = [
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            {"jsonrpc": "2.0", "id": "p", "method": "ping"},
            {"jsonrpc": "2.0", "id": 4, "method": "no/such/method"},
        ]
        answered = await hc.post(server.url, json=batch, headers=old)
        assert answered.status_code == 200, answered.text
        assert answered.headers["content-type"].startswith("application/json")
        by_id = {m["id"]: m for m in answered.json()}
        assert set(by_id) == {2, "p", 4}
        assert any(t["name"].endswith("registry_register") for t in by_id[2]["result"]["tools"])
        assert by_id["p"]["result"] == {}
        assert by_id[4]["error"]["code"] == -32601
        # initialize may not be batched; an unknown session is still a 404
        refused = await hc.post(server.url, json=[OLD_INIT], headers=MCP_HEADERS)
        assert refused.status_code == 400 and "initialize must not be part" in refused.json()["error"]["message"]
        gone = await hc.post(server.url, json=batch, headers=dict(old, **{"mcp-session-id": "0" * 32}))
        assert gone.status_code == 404


async def test_sessions_are_bounded_per_principal_in_count_and_rate(tmp_path: Path, nats_server: NatsServer) -> None:
    trail = tmp_path / "audit.jsonl"
    env = {
        "NATS_MCP_NAMESPACE": "team-cap",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_SECURITY_AUDIT_FILE": str(trail),
        "NATS_MCP_HTTP_MAX_SESSIONS_PER_PRINCIPAL": "3",
        "NATS_MCP_HTTP_INITIALIZE_RATE_BURST": "5",
        "NATS_MCP_HTTP_INITIALIZE_RATE_RATE_PER_S": "0.001",
    }
    greedy, _ = await api_key(tmp_path, nats_server.url, "greedy", "agent")
    modest, _ = await api_key(tmp_path, nats_server.url, "modest", "agent")
    async with serving(tmp_path, "cap", nats_server.url, **env) as server, http_client(greedy) as hc:
        sessions = []
        for _ in range(3):
            opened = await open_session(hc, server.url)
            assert opened.status_code == 200, opened.text
            sessions.append(opened.headers["mcp-session-id"])
        # a fourth: refused, saying why; another key still initializes
        refused = await open_session(hc, server.url)
        assert refused.status_code == 429
        body = refused.json()
        assert body["id"] == 1 and body["error"]["data"]["code"] == "limit_exceeded"
        assert "3 open MCP sessions" in body["error"]["message"]
        async with http_client(modest) as other:
            assert (await open_session(other, server.url)).status_code == 200
        # the sessions still work; ending one makes room
        headers = dict(MCP_HEADERS, **{"mcp-session-id": sessions[0], "mcp-protocol-version": "2025-11-25"})
        assert (
            await hc.post(server.url, json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers=headers)
        ).status_code == 200
        assert (await hc.delete(server.url, headers=headers)).status_code == 200
        fourth = await open_session(hc, server.url)
        assert fourth.status_code == 200
        # the rate: a burst of 5 openings (the refused one spent none), then 429 with Retry-After
        ended = dict(headers, **{"mcp-session-id": fourth.headers["mcp-session-id"]})
        assert (await hc.delete(server.url, headers=ended)).status_code == 200
        assert (await open_session(hc, server.url)).status_code == 200
        refused = await open_session(hc, server.url)
        assert refused.status_code == 429
        assert refused.json()["error"]["data"]["code"] == "limit_exceeded"  # the count again: 3 open
        for sid in sessions[1:]:
            gone = dict(headers, **{"mcp-session-id": sid})
            assert (await hc.delete(server.url, headers=gone)).status_code == 200
        refused = await open_session(hc, server.url)
        assert refused.status_code == 429
        data = refused.json()["error"]["data"]
        assert data["code"] == "rate_limited" and data["retryAfterS"] > 0
        assert int(refused.headers["retry-after"]) >= 1
        async with http_client(modest) as other:
            assert (await open_session(other, server.url)).status_code == 200

        def audited() -> list[tuple[str, str, str]]:
            records = [json.loads(line) for line in trail.read_text().splitlines()] if trail.exists() else []
            return [
                (r["kind"], r["reason"], r["principal"]["subject"])
                for r in records
                if r["reason"] in ("too_many_sessions", "initialize_rate_limited")
            ]

        await wait_for(lambda: len(audited()) == 3, 15, message="the refusals were not audited")
        subjects = {s for _, _, s in audited()}
        assert len(subjects) == 1
        assert [(k, r) for k, r, _ in audited()] == [("limit_exceeded", "too_many_sessions")] * 2 + [
            ("rate_limited", "initialize_rate_limited")
        ]


async def events(response: httpx2.Response) -> AsyncIterator[dict[str, str]]:
    """The events of a streaming SSE response as they come (one pass: a response's lines can be read only once)."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line:
            lines.append(line)
        elif lines:
            yield sse_events("\n".join(lines))[0]
            lines = []


async def first_event(response: httpx2.Response) -> dict[str, str]:
    """Read a streaming SSE response up to the end of its first event."""
    async for event in events(response):
        return event
    raise AssertionError("the stream ended before its first event")


async def test_sse_streams_are_primed_and_resume_from_nats(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {
        "NATS_MCP_NAMESPACE": "team-sse",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_HTTP_SSE_RETRY_MS": "1500",
    }
    worker, _ = await api_key(tmp_path, nats_server.url, "worker", "agent")
    boss, _ = await api_key(tmp_path, nats_server.url, "boss", "agent")
    async with (
        serving(tmp_path, "sse-a", nats_server.url, **env) as a,
        serving(tmp_path, "sse-b", nats_server.url, **env) as b,
        http_client(worker, agent="w1") as hc,
    ):
        opened = await open_session(hc, a.url)
        session = opened.headers["mcp-session-id"]
        headers = dict(MCP_HEADERS, **{"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await hc.post(a.url, json=initialized, headers=headers)).status_code == 202

        # a quick call is answered as one JSON body (transports/http/plain.py): no stream, nothing to resume
        registered = await hc.post(
            a.url, json=call(2, "warp_registry_register", agentType="worker", capabilities=["python"]), headers=headers
        )
        assert registered.headers["content-type"].startswith("application/json"), registered.headers
        assert registered.json()["id"] == 2 and "result" in registered.json()

        # a claim that waits for work: its stream drops after the priming event
        async with hc.stream(
            "POST", a.url, json=call(3, "warp_work_claim", capability="python", timeout=30000), headers=headers
        ) as waiting:
            assert waiting.status_code == 200
            primed = await first_event(waiting)
        assert primed["data"] == "" and primed["retry"] == "1500" and re.fullmatch(EVENT_ID, primed["id"])

        # work arrives meanwhile; the client reconnects with Last-Event-ID and gets the claim's answer
        async with mcp_client(a.url, boss, agent="boss") as other:
            await register(other)
            await broadcast(other, "resume me", "python")
        resume = {
            "accept": "text/event-stream",
            "mcp-session-id": session,
            "mcp-protocol-version": "2025-11-25",
            "last-event-id": primed["id"],
        }
        async with hc.stream("GET", a.url, headers=resume) as resumed:
            assert resumed.status_code == 200
            async for answer in events(resumed):  # a replayed priming event, a ping: skipped
                if answer.get("data"):
                    break
        result = json.loads(answer["data"])
        assert result["id"] == 3, result
        assert "resume me" in json.dumps(result["result"])
        assert count(answer["id"]) > count(primed["id"])

        # the standalone stream (GET) starts with a priming event too, and resumes from it
        listen = {k: v for k, v in resume.items() if k != "last-event-id"}
        async with hc.stream("GET", a.url, headers=listen) as standalone:
            assert standalone.status_code == 200
            get_primed = await first_event(standalone)
        assert get_primed["data"] == "" and get_primed["retry"] == "1500" and re.fullmatch(EVENT_ID, get_primed["id"])
        async with hc.stream("GET", a.url, headers=dict(listen, **{"last-event-id": get_primed["id"]})) as again:
            assert again.status_code == 200
            reprimed = await first_event(again)
        assert reprimed["data"] == "" and count(reprimed["id"]) > count(get_primed["id"])

        # another session of the same credential cannot replay this session's events with their ids
        other_session = (await open_session(hc, a.url)).headers["mcp-session-id"]
        foreign = dict(resume, **{"mcp-session-id": other_session})
        replayed = await hc.get(a.url, headers=foreign)
        assert replayed.status_code == 200 and "data: {" not in replayed.text

        # the events and the session are in NATS: a reconnect to B replays the claim's finished stream as A would
        async with hc.stream("GET", b.url, headers=resume) as elsewhere:
            assert elsewhere.status_code == 200
            there = await first_event(elsewhere)
            while not there.get("data"):
                there = await first_event(elsewhere)
        assert there["id"] == answer["id"] and json.loads(there["data"]) == result


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


@pytest.fixture(scope="module")
def ts() -> TsClient:
    """Node 22 + the TypeScript SDK (tests/e2e/test_ts_client.py pins its version)."""
    return TsClient(node=node22(), modules=node22("--ts-sdk"))


async def test_real_clients_meet_the_session_bound(tmp_path: Path, nats_server: NatsServer, ts: TsClient) -> None:
    """What the SDK clients show a user whose key holds all its sessions: the reason, not a bare status."""
    env = {
        "NATS_MCP_NAMESPACE": "team-clients",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_HTTP_MAX_SESSIONS_PER_PRINCIPAL": "2",
    }
    full, _ = await api_key(tmp_path, nats_server.url, "full", "agent")
    free, _ = await api_key(tmp_path, nats_server.url, "free", "agent")
    async with serving(tmp_path, "clients", nats_server.url, **env) as server, http_client(full) as hc:
        for _ in range(2):
            assert (await open_session(hc, server.url)).status_code == 200
        spec = {"transport": "http", "url": server.url, "calls": [SUCCESS_CALL]}
        refused = await asyncio.to_thread(ts.run, tmp_path, dict(spec, bearer=full))
        assert refused["connected"] is False
        assert "2 open MCP sessions" in refused["error"]["message"], refused
        served = await asyncio.to_thread(ts.run, tmp_path, dict(spec, bearer=free))
        assert served["connected"] is True and "error" not in served["calls"][0], served

        with pytest.raises(BaseException) as python_refused:  # noqa: PT011 - the SDK's error type is not ours to pin
            async with mcp_client(server.url, full, mode="legacy"):
                pass
        assert any("2 open MCP sessions" in str(e) for e in leaves(python_refused.value)), python_refused.value
        async with mcp_client(server.url, free, mode="legacy") as client:  # its second session (the TS client's first)
            assert (await client.list_tools()).tools


def generated_requests(tools: list[dict[str, Any]], resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Requests of the methods answered plain (transports/http/plain.py): every read-only tool with no arguments
    and with arguments of the wrong type (most answer a validation error), an unknown tool, every resource and an
    unknown one, the lists and a ping."""
    out: list[dict[str, Any]] = [{"method": "tools/list"}, {"method": "ping"}]
    for tool in tools:
        if not (tool.get("annotations") or {}).get("readOnlyHint"):
            continue  # a second run of a write would differ (or be deduplicated): the comparison needs repeatable calls
        props = list((tool.get("inputSchema") or {}).get("properties") or {})
        out.append({"method": "tools/call", "params": {"name": tool["name"], "arguments": {}}})
        if props:
            wrong = {props[0]: {"not": ["what", "it", "takes"]}}
            out.append({"method": "tools/call", "params": {"name": tool["name"], "arguments": wrong}})
    out.append({"method": "tools/call", "params": {"name": "warp_no_such_tool", "arguments": {}}})
    out += [{"method": "resources/read", "params": {"uri": r["uri"]}} for r in resources]
    out.append({"method": "resources/read", "params": {"uri": "warp://no/such/resource"}})
    return out


async def test_plain_answers_match_the_sdk_streams(tmp_path: Path, nats_server: NatsServer) -> None:
    """Differential: each generated request answered plain (one JSON body) and through the SDK's SSE path (the same
    request with a progressToken, which keeps the SDK's stream) gives the same JSON-RPC response."""
    env = {"NATS_MCP_NAMESPACE": "team-plain", "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    # Every request goes twice, back to back: the default rate limit would answer some of them rate_limited
    # (with a retry time that differs between the two): what is compared is the answer, not the limiter.
    for who in ("PRINCIPAL", "ADDRESS"):
        env[f"NATS_MCP_SECURITY_RATE_PER_{who}_RATE_PER_S"] = "100000"
        env[f"NATS_MCP_SECURITY_RATE_PER_{who}_BURST"] = "100000"
    key, _ = await api_key(tmp_path, nats_server.url, "plain", "agent")
    async with serving(tmp_path, "plain", nats_server.url, **env) as server, http_client(key, agent="p1") as hc:
        session = (await open_session(hc, server.url)).headers["mcp-session-id"]
        headers = dict(MCP_HEADERS, **{"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await hc.post(server.url, json=initialized, headers=headers)).status_code == 202
        registered = await hc.post(server.url, json=call(2, "warp_registry_register", agentType="w"), headers=headers)
        assert "error" not in registered.json(), registered.text

        async def both(n: int, request: dict[str, Any]) -> tuple[Any, Any]:
            plain = await hc.post(server.url, json=dict(request, jsonrpc="2.0", id=n), headers=headers)
            assert plain.status_code == 200 and plain.headers["content-type"] == "application/json", plain.text
            assert plain.headers["mcp-session-id"] == session
            params = dict(request.get("params", {}), _meta={"progressToken": f"p{n}"})
            sdk = await hc.post(server.url, json=dict(request, jsonrpc="2.0", id=n + 1, params=params), headers=headers)
            assert sdk.headers["content-type"].startswith("text/event-stream"), sdk.text
            streamed = [json.loads(e["data"]) for e in sse_events(sdk.text) if e.get("data")]
            streamed = [m for m in streamed if m.get("id") == n + 1]
            assert len(streamed) == 1, sdk.text
            return {**plain.json(), "id": None}, {**streamed[0], "id": None}

        listed, _ = await both(10, {"method": "tools/list"})
        listing = await hc.post(
            server.url, json={"jsonrpc": "2.0", "id": 14, "method": "resources/list"}, headers=headers
        )
        found = [json.loads(e["data"]) for e in sse_events(listing.text) if e.get("data")]
        requests = generated_requests(listed["result"]["tools"], found[-1]["result"]["resources"])
        assert len(requests) > 20
        errors = 0
        for i, request in enumerate(requests):
            plain, sdk = await both(100 + 2 * i, request)
            assert plain == sdk, request
            errors += "error" in plain or bool(plain.get("result", {}).get("isError"))
        assert 0 < errors < len(requests)  # both kinds were compared

        # an envelope the SDK refuses reads the same as before: the gate leaves it to the SDK
        bad = await hc.post(server.url, json={"jsonrpc": "2.0", "id": 7, "method": "tools/call"}, headers=headers)
        assert bad.status_code in (200, 400) and '"error"' in bad.text
