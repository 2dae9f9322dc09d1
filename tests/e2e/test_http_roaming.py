"""Boundary of MCP sessions in NATS: any `serve --transport http` process serves any request of any session (real
processes on one nats-server, raw 2025-11-25 requests, the SDK clients through a round-robin proxy)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2
import nats
import pytest

from nats_mcp.bus.directget import last_per_subject
from nats_mcp.bus.layout import Layout
from tests.support.http_server import INIT, MCP_HEADERS, api_key, http_client, mcp_client, policy_file, serving
from tests.support.lbproxy import round_robin
from tests.support.natsserver import NatsServer, wait_for
from tests.support.resend import answer, call
from tests.support.stdio import ok
from tests.support.ts_client import TsClient
from tests.support.work_tools import broadcast, claim, register

pytestmark = pytest.mark.slow

VERSION = "2025-11-25"


def structured(answer: dict[str, Any]) -> dict[str, Any]:
    result = answer["result"]
    assert not result.get("isError"), result
    found: dict[str, Any] = result["structuredContent"]
    return found


class Session:
    """A raw 2025-11-25 client's session, each request sent to the server the test names."""

    def __init__(self, hc: httpx2.AsyncClient, session: str) -> None:
        self.hc = hc
        self.id = session
        self.headers = dict(MCP_HEADERS, **{"mcp-session-id": session, "mcp-protocol-version": VERSION})
        self.next_id = 10

    @classmethod
    async def open(cls, hc: httpx2.AsyncClient, url: str) -> Session:
        opened = await hc.post(url, json=INIT, headers=MCP_HEADERS)
        assert opened.status_code == 200, opened.text
        session = cls(hc, opened.headers["mcp-session-id"])
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await hc.post(url, json=initialized, headers=session.headers)).status_code == 202
        return session

    async def post(self, url: str, method: str, **params: Any) -> httpx2.Response:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        return await self.hc.post(url, json=body, headers=self.headers)

    async def tool(self, url: str, name: str, **arguments: Any) -> dict[str, Any]:
        return structured(answer(await self.post(url, "tools/call", name=name, arguments=arguments)))


async def status_of(client: Any, guid: str) -> str | None:
    found = await ok(client, "warp_registry_discover", includeOffline=True)
    return next((a["status"] for a in found["agents"] if a["guid"] == guid), None)


async def test_any_process_serves_any_request_of_a_session_and_its_end_reaches_them_all(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    env = {"NATS_MCP_NAMESPACE": "team-roam", "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    worker, _ = await api_key(tmp_path, nats_server.url, "worker", "agent")
    boss, _ = await api_key(tmp_path, nats_server.url, "boss", "agent")
    async with (
        serving(tmp_path, "roam-a", nats_server.url, **env) as a,
        serving(tmp_path, "roam-b", nats_server.url, **env) as b,
        http_client(worker, agent="w1") as hc,
        http_client(boss) as intruder,
    ):
        session = await Session.open(hc, a.url)
        # many requests of the session reach B at once, before B holds it: B restores it once, and serves them all
        # (a request handed to the session while B was still restoring it answered 500)
        at_once = await asyncio.gather(*(session.post(b.url, "ping") for _ in range(10)))
        assert [r.status_code for r in at_once] == [200] * 10, [r.text[:200] for r in at_once]
        # the reproduction: initialize on A, tools/list on B (it answered 404 Session not found)
        listed = answer(await session.post(b.url, "tools/list"))
        assert any(t["name"] == "warp_registry_register" for t in listed["result"]["tools"])
        me = (await session.tool(b.url, "warp_registry_register", agentType="roamer"))["agent"]["guid"]
        # a log level set on A is the session's, in its record (B restores a session with it)
        assert "error" not in answer(await session.post(a.url, "logging/setLevel", level="warning"))
        assert (await recorded(nats_server, "team-roam", session.id))["level"] == "warning"
        assert (await session.tool(a.url, "warp_handle_get"))["agentGuid"] == me  # the same agent on both

        # another credential naming the session finds nothing on either process (as the SDK answers it)
        for url in (a.url, b.url):
            stolen = await intruder.post(url, json=call(5, "warp_handle_get"), headers=session.headers)
            assert stolen.status_code == 404, stolen.text

        # the client ends the session on B: A no longer serves it (once B's announcement reached it: a request that
        # races the announcement may still be served), and the agent reads offline
        assert (await hc.delete(b.url, headers=session.headers)).status_code == 200
        await wait_for(lambda: _gone(session, a.url), 10, message="A still serves the session B ended")
        async with mcp_client(a.url, boss, agent="observer") as observer:
            await wait_for(lambda: _is(observer, me, "offline"), 10, message="the agent did not go offline")


async def recorded(server: NatsServer, namespace: str, session: str) -> dict[str, Any]:
    """A session's record as NATS holds it (found by its id under whichever owner)."""
    nc = await nats.connect(server.url)
    try:
        bucket = Layout(namespace).sessions_bucket
        stored = await last_per_subject(nc, f"KV_{bucket}", f"$KV.{bucket}.*.{session}")
        assert len(stored) == 1, stored
        found: dict[str, Any] = json.loads(stored[0].data)
        return found
    finally:
        await nc.close()


async def _gone(session: Session, url: str) -> bool:
    return (await session.post(url, "tools/list")).status_code == 404


async def _is(client: Any, guid: str, status: str) -> bool:
    return await status_of(client, guid) == status


async def test_a_session_outlives_the_process_that_opened_it(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {"NATS_MCP_NAMESPACE": "team-outlive", "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    worker, _ = await api_key(tmp_path, nats_server.url, "worker", "agent")
    async with serving(tmp_path, "b", nats_server.url, **env) as b, http_client(worker) as hc:
        async with serving(tmp_path, "a", nats_server.url, **env) as a:
            session = await Session.open(hc, a.url)
            await session.tool(a.url, "warp_handle_set", handle="outliver")
            sent = await session.tool(a.url, "warp_channels_send", channel="roadmap", message="before")
            await a.stop()  # A stops (its copy of the session with it)
        after = await session.tool(b.url, "warp_channels_send", channel="roadmap", message="after")
        assert after["sequence"] > sent["sequence"]
        page = await session.tool(b.url, "warp_channels_read", channel="roadmap", limit=10)
        assert [m["message"] for m in page["messages"]][-2:] == ["before", "after"]


async def test_a_notification_made_on_one_process_reaches_the_stream_held_by_another(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    env = {"NATS_MCP_NAMESPACE": "team-notify", "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    worker, _ = await api_key(tmp_path, nats_server.url, "worker", "agent")
    async with (
        serving(tmp_path, "a", nats_server.url, **env) as a,
        serving(tmp_path, "b", nats_server.url, **env) as b,
        http_client(worker) as hc,
        http_client(worker) as listener,
    ):
        session = await Session.open(hc, a.url)
        await session.tool(a.url, "warp_handle_set", handle="notified")
        await session.tool(a.url, "warp_channels_send", channel="roadmap", message="first")
        uri = "nats-mcp://channels/roadmap"
        get = {k: v for k, v in session.headers.items() if k != "content-type"} | {"accept": "text/event-stream"}
        async with listener.stream("GET", b.url, headers=get) as stream:  # the client's stream is held by B
            assert stream.status_code == 200
            subscribed = answer(await session.post(a.url, "resources/subscribe", uri=uri))  # the feed runs on A
            assert "error" not in subscribed, subscribed
            await session.tool(b.url, "warp_channels_send", channel="roadmap", message="second")
            heard = await asyncio.wait_for(_next_notification(stream, "notifications/resources/updated"), 20)
        assert heard["params"]["uri"] == uri


async def _next_notification(stream: httpx2.Response, method: str) -> dict[str, Any]:
    async for line in stream.aiter_lines():
        if line.startswith("data:") and line[5:].strip():
            message = json.loads(line[5:])
            if message.get("method") == method:
                found: dict[str, Any] = message
                return found
    raise AssertionError(f"the stream ended without {method}")


async def test_the_session_bound_holds_across_processes(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {
        "NATS_MCP_NAMESPACE": "team-bound",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_HTTP_MAX_SESSIONS_PER_PRINCIPAL": "2",
    }
    worker, _ = await api_key(tmp_path, nats_server.url, "worker", "agent")
    other, _ = await api_key(tmp_path, nats_server.url, "other", "agent")
    async with (
        serving(tmp_path, "a", nats_server.url, **env) as a,
        serving(tmp_path, "b", nats_server.url, **env) as b,
        http_client(worker) as hc,
        http_client(other) as hc2,
    ):
        first = await Session.open(hc, a.url)
        await Session.open(hc, b.url)
        refused = await hc.post(a.url, json=INIT, headers=MCP_HEADERS)  # a third, on either process: over the bound
        assert refused.status_code == 429, refused.text
        assert (await hc2.post(b.url, json=INIT, headers=MCP_HEADERS)).status_code == 200  # another credential's own
        assert (await hc.delete(b.url, headers=first.headers)).status_code == 200  # one ends (on the other process)
        await wait_for(
            lambda: _opens(hc, a.url), 10, message="the bound did not free a place once a session ended elsewhere"
        )


async def _opens(hc: httpx2.AsyncClient, url: str) -> bool:
    return (await hc.post(url, json=INIT, headers=MCP_HEADERS)).status_code == 200


async def test_real_clients_through_a_round_robin_proxy_land_every_request_elsewhere(
    tmp_path: Path, nats_server: NatsServer, ts_client: TsClient
) -> None:
    env = {"NATS_MCP_NAMESPACE": "team-lb", "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    boss, _ = await api_key(tmp_path, nats_server.url, "boss", "agent")
    worker, _ = await api_key(tmp_path, nats_server.url, "worker", "agent")
    async with (
        serving(tmp_path, "lb1", nats_server.url, **env) as one,
        serving(tmp_path, "lb2", nats_server.url, **env) as two,
        serving(tmp_path, "lb3", nats_server.url, **env) as three,
        round_robin([one.base, two.base, three.base]) as (base, proxy),
    ):
        url = f"{base}/mcp"
        # the Python SDK (2025-11-25: a session) registers, posts, messages and hands out work
        async with (
            mcp_client(url, boss, agent="boss", mode="legacy") as b,
            mcp_client(url, worker, agent="worker", mode="legacy") as w,
        ):
            await register(b)
            worker_guid = await register(w, "python")
            sent = await ok(b, "warp_channels_send", channel="roadmap", message="through the proxy")
            await ok(b, "warp_messages_send_direct", recipientGuid=worker_guid, message="hello")
            inbox = await ok(w, "warp_messages_read_direct")
            assert [m["content"] for m in inbox["messages"]] == ["hello"]
            item = await broadcast(b, "lb task", "python")
            got = await claim(w, "python", timeout=5000)
            assert got is not None and got["id"] == item
            await ok(w, "warp_work_complete", workItemId=item, result="done")
            page = await ok(w, "warp_channels_read", channel="roadmap", limit=5)
            assert sent["id"] in [m["id"] for m in page["messages"]]
        # the 2026-07-28 revision (no sessions: every request stands alone) works through the proxy as it does direct
        async with mcp_client(url, boss, agent="modern") as modern:
            await ok(modern, "warp_handle_set", handle="modern")
            for n in range(3):
                await ok(modern, "warp_channels_send", channel="roadmap", message=f"modern {n}")
        # the TypeScript SDK (2025-11-25 with a session, as Claude Code, Cursor and VS Code speak)
        calls = [
            {"name": "warp_registry_register", "arguments": {"agentType": "ts"}},
            {"name": "warp_channels_send", "arguments": {"channel": "roadmap", "message": "from ts"}},
            {"name": "warp_channels_read", "arguments": {"channel": "roadmap", "limit": 5}},
            {"name": "warp_work_claim", "arguments": {"capability": "nobody-offers-this"}},
        ]
        spec = {"transport": "http", "url": url, "bearer": worker, "calls": calls}
        answer = await asyncio.to_thread(ts_client.run, tmp_path, spec)
        assert answer["connected"], answer
        results = [c.get("result") for c in answer["calls"]]
        assert all(r is not None and not r.get("isError") for r in results[:3]), answer["calls"]
        assert "from ts" in json.dumps(results[2])
        served = {backend: proxy.served[backend] for backend in (one.base, two.base, three.base)}
    assert min(served.values()) >= 5, served  # every process served a share of the same sessions
