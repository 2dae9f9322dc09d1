"""The differential test of issue 22's own ``tools/call``: generated requests through the SDK's dispatch and through
api/direct.py (stdio's own dispatch), each against a real nats-server with the same state, must be answered alike.

Two in-process servers, each as ``nats-mcp serve`` builds it on stdio (the runtime, the guard with a policy that
refuses some calls, the audit log), in two namespaces of one nats-server prepared alike, each served over os pipes by
transports/stdio.py: one with ``own_dispatch=False`` (every request through the SDK's dispatcher and kernel), one
with it on. The same script of raw JSON-RPC lines goes to both, in each protocol revision (2025-11-25 after the
handshake, 2026-07-28 with the per-request envelope): every tool with arguments generated from its input schema
(Hypothesis, derandomized), with one thing wrong of each kind, unknown tools, params of the wrong shapes, ids of both
JSON types, a request without an id, calls the policy refuses, tool errors, ``_meta.progressToken`` with and without
progress sent, calls in flight together, a cancelled call (never answered, and it took nothing), and a call still
waiting at the end of input (answered ``Connection closed``). The answers are compared after :func:`normalised`, which
names every field that legitimately differs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server

from nats_mcp.api.server import build_server, local_security
from nats_mcp.runtime import Runtime
from nats_mcp.security.policy import Policy, parse_policy
from tests.support.differential import CAPABILITIES, CLOSED, ENVELOPE, POLICY, generated_calls, normalised
from tests.support.env import settings_for
from tests.support.natsserver import NatsServer
from tests.support.stdio_pipes import LineClient, piped

NAMESPACES = {"sdk": "diff-sdk", "own": "diff-own"}


class Script:
    """One side's session: sends the script's requests, numbering them alternately with int and str ids."""

    def __init__(self, client: LineClient, modern: bool) -> None:
        self.client, self.modern, self.next = client, modern, 0
        self.ids: list[Any] = []
        self.running: Any = None
        """The call left running when the input ends."""

    def new_id(self) -> Any:
        self.next += 1
        request_id = self.next if self.next % 2 else f"r-{self.next}"
        self.ids.append(request_id)
        return request_id

    def params(self, params: dict[str, Any] | None, progress: Any = None) -> dict[str, Any] | None:
        meta = dict(ENVELOPE) if self.modern else {}
        if progress is not None:
            meta["progressToken"] = progress
        if not meta:
            return params
        return {**(params or {}), "_meta": {**((params or {}).get("_meta") or {}), **meta}}

    async def request(self, method: str, params: Any = None, *, progress: Any = None, wait: bool = True) -> Any:
        request_id = self.new_id()
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        shaped = self.params(params, progress) if isinstance(params, dict) or params is None else params
        if shaped is not None:
            message["params"] = shaped
        await self.client.send(message)
        if wait:
            await self.client.answer(request_id)
        return request_id

    async def call(self, tool: str, args: Any = None, **kw: Any) -> Any:
        params: dict[str, Any] = {"name": tool}
        if args is not None:
            params["arguments"] = args
        return await self.request("tools/call", params, **kw)

    async def result(self, request_id: Any) -> dict[str, Any]:
        answer = await self.client.answer(request_id)
        assert "structuredContent" in answer.get("result", {}), answer
        structured: dict[str, Any] = answer["result"]["structuredContent"]
        return structured


async def run_script(client: LineClient, modern: bool, calls: list[tuple[str, Any]]) -> Script:
    s = Script(client, modern)
    if not modern:
        await s.call("warp_handle_get")  # before the handshake: the SDK's gate answers, on both sides
        await s.request(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": ENVELOPE[types.CLIENT_INFO_META_KEY]},
        )
        await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    await s.request("ping")
    await s.request("ping", {"_meta": {"progressToken": 3}})
    await s.request("tools/list")
    # The domain: an agent, a channel post, work to claim and complete; and a tool error and policy refusals.
    await s.call("warp_registry_register", {"agentType": "differ", "capabilities": CAPABILITIES}, progress="p-1")
    await s.call("warp_channels_send", {"channel": "roadmap", "message": "hello"})
    await s.call("warp_channels_read", {"channel": "roadmap", "limit": 5}, progress=7)
    await s.call("warp_channels_read", {"channel": "no-such-channel"})  # a tool error (isError)
    await s.call("warp_channels_send", {"channel": "errors", "message": "x"})  # refused by the policy
    await s.call("warp_dlq_discard", {"itemId": "00000000-0000-4000-8000-000000000000"})  # a denied tool
    broadcast = await s.call("warp_work_broadcast", {"taskId": "t1", "description": "d", "requiredCapability": "diff"})
    item = (await s.result(broadcast))["workItemId"]
    claimed = await s.call("warp_work_claim", {"capability": "diff", "timeout": 0})
    assert (await s.result(claimed))["workItem"]["id"] == item
    await s.call("warp_work_complete", {"workItemId": item, "result": {"ok": True}})
    # A waiting claim with a progress token: a progress notification, then "no work".
    await s.call("warp_work_claim", {"capability": "idle", "timeout": 400}, progress="wait-1")
    # Unknown tools and params of the wrong shapes: JSON-RPC errors (or, where the envelope itself is bad, nothing).
    await s.call("warp_no_such_tool", {})
    await s.call("x" * 200)
    for params in (
        {},
        {"name": 5},
        {"name": "warp_handle_get", "arguments": "str"},
        {"name": "warp_handle_get", "arguments": None},
    ):
        await s.request("tools/call", params)
    await s.request("tools/call", {"name": "warp_handle_get", "_meta": {"progressToken": True}})
    await s.request("tools/call", None)
    for raw in (
        '{"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": {"name": "warp_handle_get"}}',
        '{"jsonrpc": "2.0", "id": "", "method": "ping"}',
        '{"jsonrpc": "2.0", "id": 9007199254740993, "method": "ping"}',
    ):
        await client.send(
            raw
            if not modern
            else json.dumps({**json.loads(raw), "params": {**json.loads(raw).get("params", {}), "_meta": ENVELOPE}})
        )
    await client.send({"jsonrpc": "2.0", "id": [1], "method": "tools/call", "params": {"name": "warp_handle_get"}})
    await client.send({"jsonrpc": "2.0", "method": "tools/call", "params": s.params({"name": "warp_handle_get"})})
    if modern:  # a malformed envelope, and the handshake on a 2026-07-28 connection: the SDK's refusals
        await client.send(
            {
                "jsonrpc": "2.0",
                "id": "bad-env",
                "method": "tools/call",
                "params": {"name": "warp_handle_get", "_meta": {types.PROTOCOL_VERSION_META_KEY: "2026-07-28"}},
            }
        )
        await client.send(
            {
                "jsonrpc": "2.0",
                "id": "late-init",
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "x", "version": "1"},
                },
            }
        )
    else:  # an enveloped call on a handshake connection
        await client.send(
            {
                "jsonrpc": "2.0",
                "id": "env-on-legacy",
                "method": "tools/call",
                "params": {"name": "warp_handle_get", "_meta": ENVELOPE},
            }
        )
    # Generated calls, five at a time in flight.
    batch: list[Any] = []
    for tool, args in calls:
        batch.append(await s.call(tool, args, progress=len(batch) if len(s.ids) % 3 == 0 else None, wait=False))
        if len(batch) == 5:
            for request_id in batch:
                await client.answer(request_id)
            batch = []
    for request_id in batch:
        await client.answer(request_id)
    # A cancelled claim is never answered and takes nothing: the item broadcast after it goes to the next claim.
    await s.call("warp_registry_register", {"agentType": "differ", "capabilities": CAPABILITIES})  # as generated
    cancelled = await s.call("warp_work_claim", {"capability": "late", "timeout": 10_000}, wait=False)
    await client.send(
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": cancelled, "reason": "test"}}
    )
    await s.request("ping")
    late = await s.call("warp_work_broadcast", {"taskId": "t2", "description": "d", "requiredCapability": "late"})
    late_item = (await s.result(late))["workItemId"]
    again = await s.call("warp_work_claim", {"capability": "late", "timeout": 0})
    assert (await s.result(again))["workItem"]["id"] == late_item
    assert client.answer_of(cancelled) is None
    # A call still waiting when the input ends is answered "Connection closed".
    s.running = await s.call("warp_messages_read_direct", {"waitMs": 10_000}, wait=False)
    await s.request("ping")  # the read is in flight by now (requests are read in order)
    return s


@contextlib.asynccontextmanager
async def sides(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[dict[str, Server[Any]]]:
    """The two servers, as `nats-mcp serve` builds them on stdio, each in its own namespace."""
    policy = Policy(parse_policy(POLICY))
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, Server[Any]] = {}
        for side, namespace in NAMESPACES.items():
            home = tmp_path / side
            home.mkdir()
            config = settings_for(  # one project directory: the same project id on both sides
                home,
                NATS_URL=nats_server.url,
                NATS_MCP_NAMESPACE=namespace,
                MCP_PROJECT_PATH=str(tmp_path),
                NATS_MCP_SECURITY_AUDIT_FILE=str(home / "audit.jsonl"),
            )
            runtime = await stack.enter_async_context(
                Runtime(config, policy, transport="stdio", local_agent=True, observe=False)
            )
            assert await runtime.conn.wait_connected(10)
            coordinator = runtime.coordinator
            security = local_security(runtime.guard, config.security, namespace)
            servers[side] = build_server(coordinator, coordinator.local_caller, "warp_", security)
        yield servers


async def test_own_dispatch_answers_as_the_sdk_does(tmp_path: Path, nats_server: NatsServer) -> None:
    calls = generated_calls()
    async with sides(tmp_path, nats_server) as servers:
        for modern in (False, True):
            transcripts: dict[str, tuple[LineClient, Script]] = {}
            for side, own in (("sdk", False), ("own", True)):
                async with piped(servers[side], own_dispatch=own) as client:
                    script = await run_script(client, modern, calls)
                    direct = client.stream.direct
                assert (direct is not None and direct.taken > len(calls)) if own else direct is None
                cut_short = client.answer_of(script.running)
                assert cut_short is not None and cut_short.get("error") == CLOSED, cut_short
                transcripts[side] = (client, script)
            compare(transcripts, modern)


def compare(transcripts: dict[str, tuple[LineClient, Script]], modern: bool) -> None:
    answers: dict[str, dict[str, Any]] = {}
    notes: dict[str, list[str]] = {}
    for side, (client, _) in transcripts.items():
        ns = NAMESPACES[side]
        answers[side] = {json.dumps(line["id"]): normalised(line, ns) for line in client.lines if "method" not in line}
        notes[side] = sorted(
            json.dumps(normalised(line, ns), sort_keys=True) for line in client.lines if "method" in line
        )
    era = "2026-07-28" if modern else "2025-11-25"
    assert answers["sdk"].keys() == answers["own"].keys(), era
    differ = [
        f"{key}:\n  sdk {json.dumps(expected)[:600]}\n  own {json.dumps(answers['own'][key])[:600]}"
        for key, expected in answers["sdk"].items()
        if answers["own"][key] != expected
    ]
    assert not differ, f"{era}: {len(differ)} answers differ:\n" + "\n".join(differ[:8])
    assert notes["own"] == notes["sdk"], era
    assert any("notifications/progress" in note for note in notes["own"]), era  # the waiting claim reported


async def test_own_answers_are_the_sdks_bytes() -> None:
    """The answers api/direct.py writes without building the envelope's model are the SDK writer's bytes exactly
    (the field order, the escaping, the number forms): ``ping`` and a tool call answered through the whole handler
    (a server without coordination services answers its ``internal`` tool error, with the era's serverInfo stamp),
    ids of both JSON types, both eras."""
    server = build_server()
    arguments = {"text": 'héllo \u2028 "q" \\ \x00', "n": 1.5, "big": 10**20}
    for modern in (False, True):
        raw: dict[bool, list[bytes]] = {}
        for own in (False, True):
            async with piped(server, own_dispatch=own) as client:
                if not modern:
                    init = {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "b", "version": "1"},
                    }
                    await client.send({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": init})
                    await client.answer("init")
                    await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
                meta = {"_meta": ENVELOPE} if modern else {}
                requests = [
                    (1, "ping", {**meta}),
                    ("two", "tools/call", {"name": "warp_handle_get", "arguments": arguments, **meta}),
                    (3, "tools/call", {"name": "warp_channels_send", "arguments": {}, **meta}),
                ]
                for rid, method, params in requests:
                    await client.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
                    await client.answer(rid)
                taken = client.stream.direct.taken if client.stream.direct is not None else 0
                assert taken == (len(requests) if own else 0)
                raw[own] = [line for line in client.raw if b'"id":"init"' not in line]
        assert raw[True] == raw[False] and len(raw[True]) == 3
