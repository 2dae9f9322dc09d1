"""Boundary of a rolling restart: 3 `serve --transport http` processes behind a round-robin proxy, 20 agents posting
through it, each process replaced in turn; no call fails, nothing acknowledged is lost, nothing is doubled.

The agents are raw 2025-11-25 clients (a session each) that resend a call the way a client does after a cut
connection: the same request, with the same JSON-RPC id, in the same session, a bounded number of times (counted
and reported). The proxy takes a process out of its rotation before the process is stopped, as a load balancer does
once its readiness check fails; requests already sent to it finish there. Then one process is killed (SIGKILL) while
still in the rotation: the calls it had taken are resent by their clients to the others, which answer each with its
first outcome (resend deduplication), never a second effect. ``NATS_MCP_ROLLING_AGENTS`` and
``NATS_MCP_ROLLING_CYCLES`` (restarts of all three) make the long form.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.http_server import INIT, MCP_HEADERS, HttpServer, api_key, http_client, launch, policy_file
from tests.support.lbproxy import RoundRobin, round_robin
from tests.support.natsserver import NatsServer, wait_for

pytestmark = pytest.mark.slow

AGENTS = int(os.environ.get("NATS_MCP_ROLLING_AGENTS", "20"))
CYCLES = int(os.environ.get("NATS_MCP_ROLLING_CYCLES", "1"))
MAX_RESENDS = 8
"""Resends of one call before it counts as failed: a call cut by a graceful restart is resent once or twice at
most; one cut by a killed process waits out the dead attempt's lease (30 s) in a few 10 s answers."""
CHANNEL = "parallel-work"
RATES = {
    f"NATS_MCP_SECURITY_RATE_PER_{who}_{what}": value
    for who in ("PRINCIPAL", "ADDRESS")
    for what, value in (("RATE_PER_S", "100000"), ("BURST", "100000"))
}


@dataclass
class Tally:
    acked: list[str] = field(default_factory=list)
    resends: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class Agent:
    name: str
    hc: httpx2.AsyncClient
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    next_id: int = 0

    async def open(self) -> None:
        opened = await self.hc.post(self.url, json=INIT, headers=MCP_HEADERS)
        assert opened.status_code == 200, opened.text
        self.headers = dict(MCP_HEADERS, **{"mcp-session-id": opened.headers["mcp-session-id"]})
        self.headers["mcp-protocol-version"] = "2025-11-25"
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await self.hc.post(self.url, json=note, headers=self.headers)).status_code == 202

    async def call(self, tally: Tally, tool: str, **arguments: Any) -> dict[str, Any] | None:
        """One tool call, resent as it was (same id) while the answer is a transport failure; None if it failed."""
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call"}
        body["params"] = {"name": tool, "arguments": arguments}
        problem = ""
        for attempt in range(1 + MAX_RESENDS):
            if attempt:
                tally.resends += 1
            try:
                response = await self.hc.post(self.url, json=body, headers=self.headers)
            except httpx2.TransportError as exc:
                problem = repr(exc)
                continue
            if response.status_code in (502, 503):  # the process it reached went away, or is draining
                problem = f"{response.status_code} {response.text[:200]}"
                continue
            answer = _answer(response)
            if answer is None and response.status_code == 200:  # the stream was cut before the answer: resend
                problem = f"stream cut: {response.text[:200]}"
                continue
            if answer is None:
                problem = f"{response.status_code} {response.text[:300]}"
                break
            result = answer.get("result")
            wait = _retry_after(result)
            if wait is not None:  # the first attempt is still running (or its process died): as told, later
                problem = json.dumps(answer)[:300]
                await asyncio.sleep(wait)  # the server's own back-off, not a synchronisation
                continue
            if result is None or result.get("isError"):
                problem = json.dumps(answer)[:300]
                break
            found: dict[str, Any] = result["structuredContent"]
            return found
        tally.failures.append(f"{self.name} {tool} #{self.next_id}: {problem}")
        return None


def _retry_after(result: dict[str, Any] | None) -> float | None:
    """The wait a retryable refusal (``conflict`` of a call still running elsewhere) asks for, else None."""
    error = (result or {}).get("_meta", {}).get("io.nats-mcp/error") if (result or {}).get("isError") else None
    if not isinstance(error, dict) or error.get("code") != "conflict" or "retryAfterS" not in error:
        return None
    return float(error["retryAfterS"])


def _answer(response: httpx2.Response) -> dict[str, Any] | None:
    if response.status_code != 200:
        return None
    if response.headers.get("content-type", "").startswith("application/json"):  # a quick call's plain answer
        plain: dict[str, Any] = response.json()
        return plain
    datas = [ln[5:].strip() for ln in response.text.splitlines() if ln.startswith("data:") and ln[5:].strip()]
    if not datas:
        return None
    found: dict[str, Any] = json.loads(datas[-1])
    return found


async def post_until(agent: Agent, tally: Tally, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        text = f"{agent.name} {n}"
        if await agent.call(tally, "warp_channels_send", channel=CHANNEL, message=text) is not None:
            tally.acked.append(text)


async def restart(
    proxy: RoundRobin, server: HttpServer, tmp_path: Path, nats_url: str, env: dict[str, str]
) -> HttpServer:
    """Take ``server`` out of the rotation, stop it (SIGTERM: requests it took finish), start its successor."""
    proxy.backends.remove(server.base)
    assert await server.stop() == 0, server.stderr()[-2000:]
    successor = await launch(tmp_path, f"{server.name}+", nats_url, **env)
    proxy.backends.append(successor.base)
    return successor


async def read_all(agent: Agent, tally: Tally) -> list[str]:
    """Every message of the channel, oldest first (pages of 1,000 back from the newest)."""
    texts: list[str] = []
    cursor = None
    while True:
        args: dict[str, Any] = {"channel": CHANNEL, "limit": 1000}
        if cursor is not None:
            args["cursor"] = cursor
        page = await agent.call(tally, "warp_channels_read", **args)
        assert page is not None, tally.failures
        texts = [m["message"] for m in page["messages"]] + texts
        cursor = page.get("nextCursor")
        if not page.get("hasMore") or cursor is None:
            return texts


@pytest.mark.timeout(240 + 150 * CYCLES)  # a restart of three processes, then a kill whose resends wait out a lease
async def test_a_rolling_restart_under_load_loses_nothing_acknowledged_and_doubles_nothing(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    env = {"NATS_MCP_NAMESPACE": "team-roll", "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path), **RATES}
    keys = [(await api_key(tmp_path, nats_server.url, f"team{i}", "agent"))[0] for i in range(4)]
    servers = [await launch(tmp_path, f"p{i}", nats_server.url, **env) for i in range(3)]
    tally, stop = Tally(), asyncio.Event()
    try:
        async with round_robin([s.base for s in servers]) as (base, proxy), contextlib.AsyncExitStack() as stack:
            agents = []
            for i in range(AGENTS):
                hc = await stack.enter_async_context(http_client(keys[i % len(keys)], agent=f"poster-{i}"))
                agent = Agent(f"poster-{i}", hc, f"{base}/mcp")
                await agent.open()
                assert await agent.call(tally, "warp_handle_set", handle=f"poster-{i}") is not None
                agents.append(agent)
            load = [asyncio.ensure_future(post_until(a, tally, stop)) for a in agents]
            try:
                for _ in range(CYCLES):
                    for i in range(len(servers)):
                        before = len(tally.acked)
                        await wait_for(lambda b=before: len(tally.acked) >= b + AGENTS, 60, message="no load")  # type: ignore[misc]
                        servers[i] = await restart(proxy, servers[i], tmp_path, nats_server.url, env)
                # then one process dies under load (SIGKILL, still in the rotation): calls in flight there are resent
                before = len(tally.acked)
                await wait_for(lambda: len(tally.acked) >= before + AGENTS, 60, message="no load")
                servers[0].proc.kill()
                await servers[0].proc.wait()
                proxy.backends.remove(servers[0].base)
                servers[0] = await launch(tmp_path, f"{servers[0].name}+", nats_server.url, **env)
                proxy.backends.append(servers[0].base)
                before = len(tally.acked)
                await wait_for(lambda: len(tally.acked) >= before + AGENTS * 3, 90, message="no load after the kill")
            finally:
                stop.set()
                await asyncio.gather(*load)
            stored = await read_all(agents[0], tally)
        counted = Counter(stored)
        doubled = sorted(t for t, n in counted.items() if n > 1)
        lost = sorted(set(tally.acked) - set(counted))
        print(
            f"rolling restart: {AGENTS} agents, {CYCLES} cycle(s): {len(tally.acked)} calls acknowledged, "
            f"{tally.resends} resends, {len(tally.failures)} failed, {len(doubled)} doubled, {len(lost)} lost; "
            f"proxy: {dict(proxy.served)}, connection retries {proxy.retried}, unanswered {len(proxy.failed)}"
        )
        assert tally.failures == [], tally.failures[:5]
        assert lost == [], lost[:5]
        assert doubled == [], doubled[:5]
        # resends stay the exception: the calls cut by the kill (at most one per agent), each a few times
        assert tally.resends <= AGENTS * MAX_RESENDS, tally.resends
    finally:
        for server in servers:
            if server.proc.returncode is None:
                await server.stop()
